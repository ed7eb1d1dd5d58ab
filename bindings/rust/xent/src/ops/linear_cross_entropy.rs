//! Fused linear cross-entropy (`xent_linear_cross_entropy`).

use core::ffi::c_void;
use core::marker::PhantomData;

use xent_sys as sys;

use super::{in_ptr, init_args, out_ptr};
use crate::dtype::{DType, Float, Index};
use crate::error::{check, fail, Result, Status};
use crate::matrix::{expect_len, Labels, Matrix, MatrixMut, RawOut};
use crate::options::Reduction;
use crate::parallel::{threading_setters, Threading};

/// A type-erased vector of `V` floats borrowed for `'a` (the bias).
#[derive(Clone, Copy)]
struct RawVec<'a> {
    ptr: *const c_void,
    len: usize,
    dtype: DType,
    _p: PhantomData<&'a [u8]>,
}

/// A type-erased writable vector (the bias gradient).
struct RawVecMut<'a> {
    ptr: *mut c_void,
    len: usize,
    dtype: DType,
    _p: PhantomData<&'a mut [u8]>,
}

/// The loss of a language-model head, `cross_entropy(hidden * weight^T +
/// bias, target)`, and its gradients with respect to `hidden`, `weight` and
/// `bias`, in one call and without the `B x V` logits in memory: libxent
/// computes them a block of rows at a time (at most
/// [`scratch_bytes`](Self::scratch_bytes) of scratch) with the BLAS and runs
/// [`CrossEntropy`](crate::CrossEntropy)'s kernel on each block. Every option
/// of [`CrossEntropy`](crate::CrossEntropy) with class-index targets applies.
///
/// `hidden` is `B x H`, `weight` is `V x H` (same element type: `f32`,
/// [`half::bf16`] or [`half::f16`]); gradients are `f32` or that type (a 16-bit
/// weight gradient is summed over all rows in `f32` and rounded once).
/// Results are bit-identical for every thread count. Needs a libxent built
/// with a BLAS ([`blas_backend`](crate::blas_backend)), else
/// [`Status::Unsupported`].
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{LinearCrossEntropy, Matrix, MatrixMut};
/// # if xent::blas_backend() == "none" { return Ok(()); }
/// let hidden = [1.0f32, 0.0, 0.0, 1.0]; // 2 rows x 2 features
/// let weight = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3 classes x 2 features
/// let targets = [0i64, 2];
/// let mut grad_hidden = [0.0f32; 4];
/// let mut grad_weight = [0.0f32; 6];
/// let loss = LinearCrossEntropy::new()
///     .grad_hidden(MatrixMut::new(&mut grad_hidden, 2, 2)?)
///     .grad_weight(MatrixMut::new(&mut grad_weight, 3, 2)?)
///     .run(Matrix::new(&hidden, 2, 2)?, Matrix::new(&weight, 3, 2)?, &targets)?;
/// // logits [1, 0, 1] and [0, 1, 1]: mean of (ln(2e + 1) - 1) and (ln(2e + 1) - 1)
/// assert!((loss - ((2.0f32 * 1f32.exp() + 1.0).ln() - 1.0)).abs() < 1e-5);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct LinearCrossEntropy<'a> {
    reduction: Option<Reduction>,
    ignore_index: Option<i64>,
    label_smoothing: Option<f32>,
    z_loss: Option<f32>,
    softcap: Option<f32>,
    grad_scale: Option<f32>,
    scratch_bytes: Option<usize>,
    accumulate: i32,
    weight: Option<&'a [f32]>,
    row_scale: Option<&'a [f32]>,
    bias: Option<RawVec<'a>>,
    row_loss: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    grad_hidden: Option<RawOut<'a>>,
    grad_weight: Option<RawOut<'a>>,
    grad_bias: Option<RawVecMut<'a>>,
    threading: Threading<'a>,
}

impl Default for LinearCrossEntropy<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> LinearCrossEntropy<'a> {
    /// The library's defaults: [`Reduction::Mean`], `ignore_index = -100`, no
    /// bias, smoothing, z-loss or softcap, `grad_scale = 1`, the default
    /// scratch budget, gradients overwritten, all cores, no outputs but the
    /// returned loss.
    pub fn new() -> Self {
        LinearCrossEntropy {
            reduction: None,
            ignore_index: None,
            label_smoothing: None,
            z_loss: None,
            softcap: None,
            grad_scale: None,
            scratch_bytes: None,
            accumulate: 0,
            weight: None,
            row_scale: None,
            bias: None,
            row_loss: None,
            lse: None,
            grad_hidden: None,
            grad_weight: None,
            grad_bias: None,
            threading: Threading::default(),
        }
    }

    /// Reduction (default [`Reduction::Mean`]; `BatchMean` is invalid here).
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = Some(r);
        self
    }

    /// Rows whose target equals this get loss 0 and no gradient (default -100).
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = Some(i);
        self
    }

    /// Label smoothing `eps` in `[0, 1]` (default 0).
    pub fn label_smoothing(mut self, eps: f32) -> Self {
        self.label_smoothing = Some(eps);
        self
    }

    /// z-loss coefficient (`z_loss * lse^2` per row; default 0).
    pub fn z_loss(mut self, c: f32) -> Self {
        self.z_loss = Some(c);
        self
    }

    /// Logit soft-capping `softcap * tanh(logits / softcap)` (0 = off).
    pub fn softcap(mut self, c: f32) -> Self {
        self.softcap = Some(c);
        self
    }

    /// Multiplies every gradient (default 1).
    pub fn grad_scale(mut self, s: f32) -> Self {
        self.grad_scale = Some(s);
        self
    }

    /// Scratch budget in bytes for the block of logits and the widened hidden
    /// rows, and a 16-bit grad_linear_weight's f32 `V x H` accumulator (when
    /// it does not fit, tiles of classes: no accumulator, one more logits
    /// product; see xent.h) (default: `XENT_LINEAR_CE_DEFAULT_SCRATCH_BYTES`,
    /// 128 MiB, or `min(512, ceil(B / 4))` rows of `4 (V + H)` bytes when
    /// larger).
    pub fn scratch_bytes(mut self, bytes: usize) -> Self {
        self.scratch_bytes = Some(bytes);
        self
    }

    /// Class weights, `V` values.
    pub fn weight(mut self, w: &'a [f32]) -> Self {
        self.weight = Some(w);
        self
    }

    /// Per-row gradient multipliers, `B` values (the upstream gradient of a
    /// [`Reduction::None`] loss).
    pub fn row_scale(mut self, s: &'a [f32]) -> Self {
        self.row_scale = Some(s);
        self
    }

    /// The linear layer's bias, `V` values (`f32` or the weight's type).
    pub fn bias<T: Float>(mut self, b: &'a [T]) -> Self {
        self.bias = Some(RawVec { ptr: b.as_ptr().cast(), len: b.len(), dtype: T::DTYPE, _p: PhantomData });
        self
    }

    /// Writes the per-row losses (`B` values).
    pub fn row_loss(mut self, out: &'a mut [f32]) -> Self {
        self.row_loss = Some(out);
        self
    }

    /// Writes each row's log-sum-exp of its logits (`B` values). Rows whose
    /// target is `ignore_index` then cost GEMM work too.
    pub fn lse(mut self, out: &'a mut [f32]) -> Self {
        self.lse = Some(out);
        self
    }

    /// Writes `d(loss)/d(hidden)` (`B x H`, `f32` or hidden's type).
    pub fn grad_hidden<G: Float>(mut self, g: MatrixMut<'a, G>) -> Self {
        self.grad_hidden = Some(g.raw());
        self
    }

    /// Writes `d(loss)/d(weight)` (`V x H`, `f32` or the weight's type).
    pub fn grad_weight<G: Float>(mut self, g: MatrixMut<'a, G>) -> Self {
        self.grad_weight = Some(g.raw());
        self
    }

    /// Writes `d(loss)/d(bias)` (`V` values, `f32` or the weight's type).
    pub fn grad_bias<G: Float>(mut self, g: &'a mut [G]) -> Self {
        self.grad_bias = Some(RawVecMut { ptr: g.as_mut_ptr().cast(), len: g.len(), dtype: G::DTYPE, _p: PhantomData });
        self
    }

    /// Adds the gradient of `hidden` to what its output holds instead of
    /// overwriting it (in `f32`, rounded once).
    pub fn accumulate_grad_hidden(mut self, on: bool) -> Self {
        self.set_accumulate(sys::XENT_ACCUMULATE_GRAD_HIDDEN, on);
        self
    }

    /// Adds the gradient of `weight` to its output (gradient accumulation
    /// over micro-batches without a temporary).
    pub fn accumulate_grad_weight(mut self, on: bool) -> Self {
        self.set_accumulate(sys::XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT, on);
        self
    }

    /// Adds the gradient of the bias to its output.
    pub fn accumulate_grad_bias(mut self, on: bool) -> Self {
        self.set_accumulate(sys::XENT_ACCUMULATE_GRAD_LINEAR_BIAS, on);
        self
    }

    fn set_accumulate(&mut self, bit: i32, on: bool) {
        if on {
            self.accumulate |= bit;
        } else {
            self.accumulate &= !bit;
        }
    }

    threading_setters!();

    /// Computes the loss (returned) and the requested outputs.
    pub fn run<'t, T: Float, I: Index>(
        mut self,
        hidden: Matrix<'_, T>,
        weight: Matrix<'_, T>,
        target: impl Into<Labels<'t, I>>,
    ) -> Result<f32> {
        let (h, w) = (hidden.raw(), weight.raw());
        let target = target.into().raw();
        let (b, hs, v) = (h.layout.rows(), h.layout.cols(), w.layout.rows());
        if w.layout.cols() != hs {
            return fail(
                Status::InvalidShape,
                format!("weight is {} x {}, expected {} columns (hidden's)", v, w.layout.cols(), hs),
            );
        }
        target.expect_len("target", b)?;
        if let Some(x) = self.weight {
            expect_len("weight", x.len(), v, "num_classes")?;
        }
        if let Some(x) = self.row_scale {
            expect_len("row_scale", x.len(), b, "batch")?;
        }
        if let Some(x) = &self.bias {
            expect_len("bias", x.len, v, "num_classes")?;
        }
        if let Some(o) = &self.row_loss {
            expect_len("row_loss", o.len(), b, "batch")?;
        }
        if let Some(o) = &self.lse {
            expect_len("lse", o.len(), b, "batch")?;
        }
        if let Some(g) = &self.grad_hidden {
            g.expect_shape("grad_hidden", b, hs, "hidden")?;
        }
        if let Some(g) = &self.grad_weight {
            g.expect_shape("grad_weight", v, hs, "weight")?;
        }
        if let Some(g) = &self.grad_bias {
            expect_len("grad_bias", g.len, v, "num_classes")?;
        }

        let mut a = init_args!(xent_linear_cross_entropy_args, xent_linear_cross_entropy_args_init);
        a.batch = b;
        a.num_classes = v;
        a.hidden_size = hs;
        a.hidden = h.ptr;
        a.hidden_stride = h.layout.stride();
        a.hidden_dtype = h.dtype.code();
        a.linear_weight = w.ptr;
        a.linear_weight_stride = w.layout.stride();
        a.linear_weight_dtype = w.dtype.code();
        if let Some(x) = &self.bias {
            a.linear_bias = x.ptr;
            a.linear_bias_dtype = x.dtype.code();
        }
        a.target = target.ptr;
        a.target_dtype = target.dtype.code();
        a.target_stride = target.stride;
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
        if let Some(x) = self.scratch_bytes {
            a.scratch_bytes = x;
        }
        a.accumulate = self.accumulate;
        let mut loss = f32::NAN;
        a.loss = &mut loss;
        a.row_loss = out_ptr(&mut self.row_loss);
        a.lse = out_ptr(&mut self.lse);
        if let Some(g) = &self.grad_hidden {
            a.grad_hidden = g.ptr;
            a.grad_hidden_stride = g.layout.stride();
            a.grad_hidden_dtype = g.dtype.code();
        }
        if let Some(g) = &self.grad_weight {
            a.grad_linear_weight = g.ptr;
            a.grad_linear_weight_stride = g.layout.stride();
            a.grad_linear_weight_dtype = g.dtype.code();
        }
        if let Some(g) = &self.grad_bias {
            a.grad_linear_bias = g.ptr;
            a.grad_linear_bias_dtype = g.dtype.code();
        }
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with (hidden B x H, weight
        // V x H and the gradient matrices with their strides and dtypes;
        // B- and V-vectors; B labels); outputs are exclusive borrows, so no
        // output aliases an input or another output; `loss` is a local.
        check(unsafe { sys::xent_linear_cross_entropy(&a) })?;
        Ok(loss)
    }
}
