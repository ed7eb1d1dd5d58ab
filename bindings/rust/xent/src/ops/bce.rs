//! Binary cross-entropy with logits (`xent_bce_with_logits`).

use xent_sys as sys;

use super::{in_ptr, init_args, out_ptr};
use crate::dtype::Float;
use crate::error::{check, fail, Result, Status};
use crate::matrix::{expect_len, Matrix, MatrixMut, RawIn, RawOut};
use crate::options::Reduction;
use crate::parallel::{threading_setters, Threading};

#[derive(Clone, Copy)]
enum Weight<'a> {
    PerClass(&'a [f32]),
    Full(RawIn<'a>),
}

/// Elementwise binary cross-entropy with logits over `B x V` (PyTorch's
/// `binary_cross_entropy_with_logits`): with `y` = target, `pw` = pos_weight
/// of the class, `w` = weight,
///
/// ```text
/// l = w * [ pw * y * softplus(-x) + (1 - y) * softplus(x) ]
/// ```
///
/// computed stably. [`Reduction::Mean`] divides the sum by `B * V`,
/// [`Reduction::BatchMean`] by `B`.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Bce, Matrix};
/// let logits = [0.0f32, 2.0];
/// let target = [1.0f32, 0.0];
/// let loss = Bce::new().run(Matrix::new(&logits, 1, 2)?, Matrix::new(&target, 1, 2)?)?;
/// // (softplus(0) + softplus(2)) / 2
/// assert!((loss - 1.4100).abs() < 1e-3);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct Bce<'a> {
    reduction: Option<Reduction>,
    grad_scale: Option<f32>,
    weight: Option<Weight<'a>>,
    pos_weight: Option<&'a [f32]>,
    row_loss: Option<&'a mut [f32]>,
    elem_loss: Option<RawOut<'a>>,
    grad: Option<RawOut<'a>>,
    threading: Threading<'a>,
}

impl Default for Bce<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Bce<'a> {
    /// The library's defaults ([`Reduction::Mean`], `grad_scale = 1`, no
    /// weights, all cores).
    pub fn new() -> Self {
        Bce {
            reduction: None,
            grad_scale: None,
            weight: None,
            pos_weight: None,
            row_loss: None,
            elem_loss: None,
            grad: None,
            threading: Threading::default(),
        }
    }

    /// Reduction (default [`Reduction::Mean`]).
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = Some(r);
        self
    }

    /// Multiplies the gradient (default 1).
    pub fn grad_scale(mut self, s: f32) -> Self {
        self.grad_scale = Some(s);
        self
    }

    /// One weight per class (`V` values), the same for every row.
    pub fn class_weight(mut self, w: &'a [f32]) -> Self {
        self.weight = Some(Weight::PerClass(w));
        self
    }

    /// One weight per element (`B x V`).
    pub fn weight(mut self, w: Matrix<'a, f32>) -> Self {
        self.weight = Some(Weight::Full(w.raw()));
        self
    }

    /// Weight of the positive term per class (`V` values).
    pub fn pos_weight(mut self, pw: &'a [f32]) -> Self {
        self.pos_weight = Some(pw);
        self
    }

    /// Writes per-row sums of the elementwise losses (`B` values).
    pub fn row_loss(mut self, out: &'a mut [f32]) -> Self {
        self.row_loss = Some(out);
        self
    }

    /// Writes the elementwise losses (`B x V`, `f32`).
    pub fn elem_loss(mut self, out: MatrixMut<'a, f32>) -> Self {
        self.elem_loss = Some(out.raw());
        self
    }

    /// Writes the gradient (`B x V`, `f32` or the logits' dtype).
    pub fn grad<G: Float>(mut self, grad: MatrixMut<'a, G>) -> Self {
        self.grad = Some(grad.raw());
        self
    }

    threading_setters!();

    /// Computes the loss (returned) and the requested outputs.
    pub fn run<T: Float, U: Float>(self, logits: Matrix<'_, T>, target: Matrix<'_, U>) -> Result<f32> {
        self.call(logits.raw(), None, target.raw())
    }

    /// Computes the loss and writes the gradient over the logits.
    pub fn run_in_place<T: Float, U: Float>(self, logits: MatrixMut<'_, T>, target: Matrix<'_, U>) -> Result<f32> {
        if self.grad.is_some() {
            return fail(Status::Aliasing, "run_in_place writes the gradient into the logits, but grad() is also set");
        }
        let g = logits.raw();
        self.call(g.as_input(), Some(g), target.raw())
    }

    fn call(mut self, logits: RawIn<'_>, in_place: Option<RawOut<'_>>, target: RawIn<'_>) -> Result<f32> {
        let (b, v) = (logits.layout.rows(), logits.layout.cols());
        target.expect_shape("target", b, v, "logits")?;
        match &self.weight {
            Some(Weight::PerClass(w)) => expect_len("weight", w.len(), v, "num_classes")?,
            Some(Weight::Full(w)) => w.expect_shape("weight", b, v, "logits")?,
            None => {}
        }
        if let Some(pw) = self.pos_weight {
            expect_len("pos_weight", pw.len(), v, "num_classes")?;
        }
        if let Some(o) = &self.row_loss {
            expect_len("row_loss", o.len(), b, "batch")?;
        }
        if let Some(e) = &self.elem_loss {
            e.expect_shape("elem_loss", b, v, "logits")?;
        }
        if let Some(g) = &self.grad {
            g.expect_shape("grad", b, v, "logits")?;
        }

        let mut a = init_args!(xent_bce_args, xent_bce_args_init);
        a.batch = b;
        a.num_classes = v;
        a.logits = logits.ptr;
        a.logits_stride = logits.layout.stride();
        a.logits_dtype = logits.dtype.code();
        a.target = target.ptr;
        a.target_stride = target.layout.stride();
        a.target_dtype = target.dtype.code();
        match self.weight {
            Some(Weight::PerClass(w)) => {
                a.weight = w.as_ptr();
                a.weight_stride = 0;
            }
            Some(Weight::Full(w)) => {
                a.weight = w.ptr.cast();
                a.weight_stride = w.layout.stride();
            }
            None => {}
        }
        a.pos_weight = in_ptr(self.pos_weight);
        if let Some(r) = self.reduction {
            a.reduction = r.code();
        }
        if let Some(x) = self.grad_scale {
            a.grad_scale = x;
        }
        let mut loss = f32::NAN;
        a.loss = &mut loss;
        a.row_loss = out_ptr(&mut self.row_loss);
        if let Some(e) = &self.elem_loss {
            a.elem_loss = e.ptr.cast();
            a.elem_loss_stride = e.layout.stride();
        }
        if let Some(g) = self.grad.as_ref().or(in_place.as_ref()) {
            a.grad = g.ptr;
            a.grad_stride = g.layout.stride();
            a.grad_dtype = g.dtype.code();
        }
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with (weight: V values with
        // stride 0, or B x V with its stride; elem_loss is f32 by its type);
        // outputs are exclusive borrows, except the documented in-place pair
        // (grad == logits, same stride and dtype); `loss` is a local.
        check(unsafe { sys::xent_bce_with_logits(&a) })?;
        Ok(loss)
    }
}
