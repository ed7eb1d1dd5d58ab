//! KL divergence and generalized Jensen-Shannon (`xent_divergence`).

use xent_sys as sys;

use super::{init_args, out_ptr};
use crate::dtype::{Float, Index};
use crate::error::{check, fail, Result, Status};
use crate::matrix::{expect_len, Labels, Matrix, MatrixMut, RawIn, RawLabels, RawOut};
use crate::options::{DistKind, Reduction};
use crate::parallel::{threading_setters, Threading};

/// KL divergence or generalized Jensen-Shannon divergence per row between
/// `P` = target (teacher) and `Q` = input (student), each given as logits,
/// log-probabilities or probabilities.
///
/// * KL: `KL(P || Q) = sum_c p_c (log p_c - log q_c)` (`0 log 0 = 0`).
/// * JSD(beta): `beta KL(P || M) + (1 - beta) KL(Q || M)`,
///   `M = beta P + (1 - beta) Q`; `beta = 0` is `KL(P || Q)` and `beta = 1`
///   is `KL(Q || P)`.
///
/// Sides given as [`DistKind::Logits`] use `softmax(x / temperature)`.
/// [`Reduction::Mean`] divides the sum by `rows * V` (PyTorch's elementwise
/// mean), [`Reduction::BatchMean`] by `rows`, where `rows` counts the rows
/// not ignored through [`labels`](Self::labels). The defaults match PyTorch's
/// `kl_div(input, target)`: input as log-probabilities, target as
/// probabilities, elementwise mean.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Divergence, DistKind, Matrix, MatrixMut, Reduction};
/// let student = [1.0f32, 2.0, 3.0];
/// let teacher = [3.0f32, 2.0, 1.0];
/// let mut grad = [0.0f32; 3];
/// let kl = Divergence::kl()
///     .input_kind(DistKind::Logits)
///     .target_kind(DistKind::Logits)
///     .reduction(Reduction::BatchMean)
///     .grad_input(MatrixMut::new(&mut grad, 1, 3)?)
///     .run(Matrix::new(&student, 1, 3)?, Matrix::new(&teacher, 1, 3)?)?;
/// assert!(kl > 0.0);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct Divergence<'a> {
    divergence: i32,
    beta: Option<f32>,
    input_kind: Option<DistKind>,
    target_kind: Option<DistKind>,
    temperature: Option<f32>,
    t2_scaling: Option<bool>,
    reduction: Option<Reduction>,
    grad_scale: Option<f32>,
    labels: Option<RawLabels<'a>>,
    ignore_index: Option<i64>,
    row_loss: Option<&'a mut [f32]>,
    elem_loss: Option<RawOut<'a>>,
    grad_input: Option<RawOut<'a>>,
    grad_target: Option<RawOut<'a>>,
    threading: Threading<'a>,
}

impl<'a> Divergence<'a> {
    fn with_kind(divergence: i32, beta: Option<f32>) -> Self {
        Divergence {
            divergence,
            beta,
            input_kind: None,
            target_kind: None,
            temperature: None,
            t2_scaling: None,
            reduction: None,
            grad_scale: None,
            labels: None,
            ignore_index: None,
            row_loss: None,
            elem_loss: None,
            grad_input: None,
            grad_target: None,
            threading: Threading::default(),
        }
    }

    /// `KL(P || Q)`, P = target, Q = input.
    pub fn kl() -> Self {
        Self::with_kind(sys::XENT_DIVERGENCE_KL, None)
    }

    /// Generalized Jensen-Shannon with weight `beta` in `[0, 1]`.
    pub fn jsd(beta: f32) -> Self {
        Self::with_kind(sys::XENT_DIVERGENCE_JSD, Some(beta))
    }

    /// How the input `Q` is given (default [`DistKind::LogProbs`]).
    pub fn input_kind(mut self, k: DistKind) -> Self {
        self.input_kind = Some(k);
        self
    }

    /// How the target `P` is given (default [`DistKind::Probs`]).
    pub fn target_kind(mut self, k: DistKind) -> Self {
        self.target_kind = Some(k);
        self
    }

    /// Temperature of the sides given as logits (finite, `> 0`; default 1).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Multiply losses and gradients by `temperature^2` (Hinton et al.'s
    /// distillation convention; default off).
    pub fn t2_scaling(mut self, on: bool) -> Self {
        self.t2_scaling = Some(on);
        self
    }

    /// Reduction (default [`Reduction::Mean`]).
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = Some(r);
        self
    }

    /// Multiplies the gradients (default 1).
    pub fn grad_scale(mut self, s: f32) -> Self {
        self.grad_scale = Some(s);
        self
    }

    /// One label per row: rows whose label equals
    /// [`ignore_index`](Self::ignore_index) contribute 0 and get zero
    /// gradients, and are not counted by the mean reductions.
    pub fn labels<I: Index>(mut self, labels: impl Into<Labels<'a, I>>) -> Self {
        self.labels = Some(labels.into().raw());
        self
    }

    /// The label value of ignored rows (default -100).
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = Some(i);
        self
    }

    /// Writes per-row losses (`B` values).
    pub fn row_loss(mut self, out: &'a mut [f32]) -> Self {
        self.row_loss = Some(out);
        self
    }

    /// Writes the elementwise terms (`B x V`, `f32`).
    pub fn elem_loss(mut self, out: MatrixMut<'a, f32>) -> Self {
        self.elem_loss = Some(out.raw());
        self
    }

    /// Writes `d(loss)/d(input)` (`B x V`, `f32` or the input's dtype), with
    /// respect to the input as given (logits, log-probabilities or
    /// probabilities).
    pub fn grad_input<G: Float>(mut self, g: MatrixMut<'a, G>) -> Self {
        self.grad_input = Some(g.raw());
        self
    }

    /// Writes `d(loss)/d(target)` (`B x V`, `f32` or the target's dtype).
    pub fn grad_target<G: Float>(mut self, g: MatrixMut<'a, G>) -> Self {
        self.grad_target = Some(g.raw());
        self
    }

    threading_setters!();

    /// Computes the loss (returned) and the requested outputs.
    pub fn run<T: Float, U: Float>(self, input: Matrix<'_, T>, target: Matrix<'_, U>) -> Result<f32> {
        self.call(input.raw(), None, target.raw())
    }

    /// Computes the loss and writes `d(loss)/d(input)` over the input.
    pub fn run_in_place<T: Float, U: Float>(self, input: MatrixMut<'_, T>, target: Matrix<'_, U>) -> Result<f32> {
        if self.grad_input.is_some() {
            return fail(
                Status::Aliasing,
                "run_in_place writes grad_input into the input, but grad_input() is also set",
            );
        }
        let g = input.raw();
        self.call(g.as_input(), Some(g), target.raw())
    }

    fn call(mut self, input: RawIn<'_>, in_place: Option<RawOut<'_>>, target: RawIn<'_>) -> Result<f32> {
        let (b, v) = (input.layout.rows(), input.layout.cols());
        target.expect_shape("target", b, v, "input")?;
        if let Some(l) = &self.labels {
            l.expect_len("labels", b)?;
        }
        if let Some(o) = &self.row_loss {
            expect_len("row_loss", o.len(), b, "batch")?;
        }
        if let Some(e) = &self.elem_loss {
            e.expect_shape("elem_loss", b, v, "input")?;
        }
        if let Some(g) = &self.grad_input {
            g.expect_shape("grad_input", b, v, "input")?;
        }
        if let Some(g) = &self.grad_target {
            g.expect_shape("grad_target", b, v, "input")?;
        }

        let mut a = init_args!(xent_divergence_args, xent_divergence_args_init);
        a.batch = b;
        a.num_classes = v;
        a.input = input.ptr;
        a.input_stride = input.layout.stride();
        a.input_dtype = input.dtype.code();
        a.target = target.ptr;
        a.target_stride = target.layout.stride();
        a.target_dtype = target.dtype.code();
        a.divergence = self.divergence;
        if let Some(x) = self.beta {
            a.beta = x;
        }
        if let Some(k) = self.input_kind {
            a.input_kind = k.code();
        }
        if let Some(k) = self.target_kind {
            a.target_kind = k.code();
        }
        if let Some(x) = self.temperature {
            a.temperature = x;
        }
        if let Some(x) = self.t2_scaling {
            a.t2_scaling = i32::from(x);
        }
        if let Some(r) = self.reduction {
            a.reduction = r.code();
        }
        if let Some(x) = self.grad_scale {
            a.grad_scale = x;
        }
        if let Some(l) = &self.labels {
            a.labels = l.ptr;
            a.labels_stride = l.stride;
            a.labels_dtype = l.dtype.code();
        }
        if let Some(i) = self.ignore_index {
            a.ignore_index = i;
        }
        let mut loss = f32::NAN;
        a.loss = &mut loss;
        a.row_loss = out_ptr(&mut self.row_loss);
        if let Some(e) = &self.elem_loss {
            a.elem_loss = e.ptr.cast();
            a.elem_loss_stride = e.layout.stride();
        }
        if let Some(g) = self.grad_input.as_ref().or(in_place.as_ref()) {
            a.grad_input = g.ptr;
            a.grad_input_stride = g.layout.stride();
            a.grad_input_dtype = g.dtype.code();
        }
        if let Some(g) = &self.grad_target {
            a.grad_target = g.ptr;
            a.grad_target_stride = g.layout.stride();
            a.grad_target_dtype = g.dtype.code();
        }
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with; outputs are exclusive
        // borrows, except the documented in-place pair (grad_input == input,
        // same stride and dtype) built from one `&mut`; `loss` is a local.
        check(unsafe { sys::xent_divergence(&a) })?;
        Ok(loss)
    }
}
