//! Softmax cross-entropy (`xent_cross_entropy`).

use xent_sys as sys;

use super::{in_ptr, init_args, out_ptr};
use crate::dtype::{Float, Index};
use crate::error::{check, fail, Result, Status};
use crate::matrix::{expect_len, Labels, Matrix, MatrixMut, RawIn, RawLabels, RawOut};
use crate::options::Reduction;
use crate::parallel::{threading_setters, Threading};

/// The target of a cross-entropy: one class index per row ([`Labels`] of
/// `i32`/`i64`, or a slice of them), or a `B x V` matrix of probabilities (a
/// [`Matrix`] of `f32`, or of the logits' dtype).
#[derive(Clone, Copy)]
pub struct CeTarget<'a>(Inner<'a>);

#[derive(Clone, Copy)]
enum Inner<'a> {
    Indices(RawLabels<'a>),
    Probs(RawIn<'a>),
}

impl<'a, I: Index> From<Labels<'a, I>> for CeTarget<'a> {
    fn from(l: Labels<'a, I>) -> Self {
        CeTarget(Inner::Indices(l.raw()))
    }
}

impl<'a, I: Index> From<&'a [I]> for CeTarget<'a> {
    fn from(l: &'a [I]) -> Self {
        Labels::new(l).into()
    }
}

impl<'a, I: Index> From<&'a Vec<I>> for CeTarget<'a> {
    fn from(l: &'a Vec<I>) -> Self {
        Labels::new(l).into()
    }
}

impl<'a, I: Index, const N: usize> From<&'a [I; N]> for CeTarget<'a> {
    fn from(l: &'a [I; N]) -> Self {
        Labels::new(l).into()
    }
}

impl<'a, P: Float> From<Matrix<'a, P>> for CeTarget<'a> {
    fn from(m: Matrix<'a, P>) -> Self {
        CeTarget(Inner::Probs(m.raw()))
    }
}

/// Softmax cross-entropy over the classes of each row, with PyTorch's
/// options (class weights, `ignore_index`, label smoothing), PaLM's z-loss,
/// Gemma's logit soft-capping, and the gradient fused in.
///
/// With class-index targets, per row `i` with target `y != ignore_index`,
/// `z = softcap > 0 ? softcap * tanh(logits / softcap) : logits`,
/// `lse = log sum_c exp(z_c)`, `eps = label_smoothing`, `w` = weights:
///
/// ```text
/// row_loss[i] = (1 - eps) w_y (lse - z_y) + (eps / V) sum_c w_c (lse - z_c) + z_loss * lse^2
/// ```
///
/// and 0 for ignored rows. [`Reduction::Mean`] divides the sum by the total
/// weight `w_y` of non-ignored rows (NaN when there is none). With probability
/// targets `q`, `q' = (1 - eps) q + eps / V`,
/// `row_loss[i] = sum_c w_c q'_c (lse - z_c) + z_loss * lse^2` and `Mean`
/// divides by `B`. See `xent_cross_entropy` in `xent.h` for every rule.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{CrossEntropy, Matrix, MatrixMut};
/// let logits = [1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5];
/// let targets = [2i64, 0];
/// let mut grad = [0.0f32; 6];
/// let loss = CrossEntropy::new()
///     .grad(MatrixMut::new(&mut grad, 2, 3)?)
///     .num_threads(1)
///     .run(Matrix::new(&logits, 2, 3)?, &targets)?;
/// // mean of (logsumexp([1, 2, 3]) - 3) and ln 3
/// assert!((loss - 0.7531).abs() < 1e-4);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct CrossEntropy<'a> {
    reduction: Option<Reduction>,
    ignore_index: Option<i64>,
    label_smoothing: Option<f32>,
    z_loss: Option<f32>,
    softcap: Option<f32>,
    grad_scale: Option<f32>,
    weight: Option<&'a [f32]>,
    row_scale: Option<&'a [f32]>,
    row_loss: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    grad: Option<RawOut<'a>>,
    threading: Threading<'a>,
}

impl Default for CrossEntropy<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> CrossEntropy<'a> {
    /// The library's defaults: [`Reduction::Mean`], `ignore_index = -100`,
    /// no smoothing, z-loss or softcap, `grad_scale = 1`, all cores, no
    /// outputs but the returned loss.
    pub fn new() -> Self {
        CrossEntropy {
            reduction: None,
            ignore_index: None,
            label_smoothing: None,
            z_loss: None,
            softcap: None,
            grad_scale: None,
            weight: None,
            row_scale: None,
            row_loss: None,
            lse: None,
            grad: None,
            threading: Threading::default(),
        }
    }

    /// Reduction (default [`Reduction::Mean`]; `BatchMean` is invalid here).
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = Some(r);
        self
    }

    /// Rows whose class index equals this get loss 0 and a zero gradient
    /// (default -100). Does not apply to probability targets.
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = Some(i);
        self
    }

    /// Label smoothing `eps` in `[0, 1]` (default 0).
    pub fn label_smoothing(mut self, eps: f32) -> Self {
        self.label_smoothing = Some(eps);
        self
    }

    /// z-loss coefficient (`z_loss * lse^2` per row, finite, `>= 0`; default 0).
    pub fn z_loss(mut self, c: f32) -> Self {
        self.z_loss = Some(c);
        self
    }

    /// Logit soft-capping `softcap * tanh(logits / softcap)` (finite, `>= 0`;
    /// 0 = off, the default).
    pub fn softcap(mut self, c: f32) -> Self {
        self.softcap = Some(c);
        self
    }

    /// Multiplies the gradient (finite; default 1).
    pub fn grad_scale(mut self, s: f32) -> Self {
        self.grad_scale = Some(s);
        self
    }

    /// Class weights, `V` values.
    pub fn weight(mut self, w: &'a [f32]) -> Self {
        self.weight = Some(w);
        self
    }

    /// Per-row gradient multipliers, `B` values (the upstream gradient of a
    /// [`Reduction::None`] loss); losses are unaffected.
    pub fn row_scale(mut self, s: &'a [f32]) -> Self {
        self.row_scale = Some(s);
        self
    }

    /// Writes the per-row losses (`B` values).
    pub fn row_loss(mut self, out: &'a mut [f32]) -> Self {
        self.row_loss = Some(out);
        self
    }

    /// Writes each row's log-sum-exp of the (soft-capped) logits (`B` values).
    pub fn lse(mut self, out: &'a mut [f32]) -> Self {
        self.lse = Some(out);
        self
    }

    /// Writes `d(loss)/d(logits) * grad_scale` (`B x V`, `f32` or the logits'
    /// dtype). To overwrite the logits instead, use
    /// [`run_in_place`](Self::run_in_place).
    pub fn grad<G: Float>(mut self, grad: MatrixMut<'a, G>) -> Self {
        self.grad = Some(grad.raw());
        self
    }

    threading_setters!();

    /// Computes the loss (returned) and the requested outputs.
    pub fn run<'t, T: Float>(self, logits: Matrix<'_, T>, target: impl Into<CeTarget<'t>>) -> Result<f32> {
        self.call(logits.raw(), None, target.into())
    }

    /// Computes the loss and writes the gradient over the logits (the
    /// in-place form: no `B x V` buffer besides the logits).
    pub fn run_in_place<'t, T: Float>(self, logits: MatrixMut<'_, T>, target: impl Into<CeTarget<'t>>) -> Result<f32> {
        if self.grad.is_some() {
            return fail(Status::Aliasing, "run_in_place writes the gradient into the logits, but grad() is also set");
        }
        let g = logits.raw();
        self.call(g.as_input(), Some(g), target.into())
    }

    fn call(mut self, logits: RawIn<'_>, in_place: Option<RawOut<'_>>, target: CeTarget<'_>) -> Result<f32> {
        let (b, v) = (logits.layout.rows(), logits.layout.cols());
        match &target.0 {
            Inner::Indices(l) => l.expect_len("target", b)?,
            Inner::Probs(q) => q.expect_shape("target", b, v, "logits")?,
        }
        if let Some(w) = self.weight {
            expect_len("weight", w.len(), v, "num_classes")?;
        }
        if let Some(s) = self.row_scale {
            expect_len("row_scale", s.len(), b, "batch")?;
        }
        if let Some(o) = &self.row_loss {
            expect_len("row_loss", o.len(), b, "batch")?;
        }
        if let Some(o) = &self.lse {
            expect_len("lse", o.len(), b, "batch")?;
        }
        if let Some(g) = &self.grad {
            g.expect_shape("grad", b, v, "logits")?;
        }

        let mut a = init_args!(xent_cross_entropy_args, xent_cross_entropy_args_init);
        a.batch = b;
        a.num_classes = v;
        a.logits = logits.ptr;
        a.logits_stride = logits.layout.stride();
        a.logits_dtype = logits.dtype.code();
        match target.0 {
            Inner::Indices(l) => {
                a.target = l.ptr;
                a.target_dtype = l.dtype.code();
                a.target_stride = l.stride;
            }
            Inner::Probs(q) => {
                a.target = q.ptr;
                a.target_dtype = q.dtype.code();
                a.target_stride = q.layout.stride();
            }
        }
        a.weight = in_ptr(self.weight);
        a.row_scale = in_ptr(self.row_scale);
        if let Some(r) = self.reduction {
            a.reduction = r.code();
        }
        if let Some(i) = self.ignore_index {
            a.ignore_index = i;
        }
        if let Some(x) = self.label_smoothing {
            a.label_smoothing = x;
        }
        if let Some(x) = self.z_loss {
            a.z_loss = x;
        }
        if let Some(x) = self.softcap {
            a.softcap = x;
        }
        if let Some(x) = self.grad_scale {
            a.grad_scale = x;
        }
        let mut loss = f32::NAN;
        a.loss = &mut loss;
        a.row_loss = out_ptr(&mut self.row_loss);
        a.lse = out_ptr(&mut self.lse);
        if let Some(g) = self.grad.as_ref().or(in_place.as_ref()) {
            a.grad = g.ptr;
            a.grad_stride = g.layout.stride();
            a.grad_dtype = g.dtype.code();
        }
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with (B x V matrices with
        // their strides and dtypes, B or V vectors); outputs are exclusive
        // borrows, except the documented in-place pair (grad == logits, same
        // stride and dtype) built from one `&mut`; `loss` is a local.
        check(unsafe { sys::xent_cross_entropy(&a) })?;
        Ok(loss)
    }
}
