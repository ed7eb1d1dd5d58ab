//! The softmax family (`xent_softmax`) and its backward
//! (`xent_softmax_backward`).

use xent_sys as sys;

use super::{init_args, out_ptr};
use crate::dtype::Float;
use crate::error::{check, fail, Result, Status};
use crate::matrix::{expect_len, Matrix, MatrixMut, RawIn, RawOut};
use crate::options::DistKind;
use crate::parallel::{threading_setters, Threading};

/// Which output [`Softmax::run_in_place`] writes over the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InPlace {
    /// `softmax(z)` replaces the logits.
    Probs,
    /// `log_softmax(z)` replaces the logits.
    LogProbs,
}

/// One pass over each row computing any subset (at least one) of, with
/// `z = logits / temperature`: `probs = softmax(z)`,
/// `log_probs = log_softmax(z)`, `lse = logsumexp(z)` and
/// `entropy = -sum_c p_c log p_c`.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Matrix, MatrixMut, Softmax};
/// let logits = [0.0f32, 0.0, 0.0, 0.0];
/// let mut probs = [0.0f32; 4];
/// let mut entropy = [0.0f32; 1];
/// Softmax::new()
///     .probs(MatrixMut::new(&mut probs, 1, 4)?)
///     .entropy(&mut entropy)
///     .run(Matrix::new(&logits, 1, 4)?)?;
/// assert!((probs[0] - 0.25).abs() < 1e-6);
/// assert!((entropy[0] - 4f32.ln()).abs() < 1e-5);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct Softmax<'a> {
    temperature: Option<f32>,
    probs: Option<RawOut<'a>>,
    log_probs: Option<RawOut<'a>>,
    lse: Option<&'a mut [f32]>,
    entropy: Option<&'a mut [f32]>,
    threading: Threading<'a>,
}

impl Default for Softmax<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Softmax<'a> {
    /// Temperature 1, all cores, no outputs yet.
    pub fn new() -> Self {
        Softmax {
            temperature: None,
            probs: None,
            log_probs: None,
            lse: None,
            entropy: None,
            threading: Threading::default(),
        }
    }

    /// Divides the logits by `t` (finite, `> 0`; default 1).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Writes `softmax(z)` (`B x V`, `f32` or the logits' dtype).
    pub fn probs<G: Float>(mut self, out: MatrixMut<'a, G>) -> Self {
        self.probs = Some(out.raw());
        self
    }

    /// Writes `log_softmax(z)` (`B x V`, `f32` or the logits' dtype).
    pub fn log_probs<G: Float>(mut self, out: MatrixMut<'a, G>) -> Self {
        self.log_probs = Some(out.raw());
        self
    }

    /// Writes `logsumexp(z)` per row (`B` values).
    pub fn lse(mut self, out: &'a mut [f32]) -> Self {
        self.lse = Some(out);
        self
    }

    /// Writes the entropy of `softmax(z)` per row (`B` values).
    pub fn entropy(mut self, out: &'a mut [f32]) -> Self {
        self.entropy = Some(out);
        self
    }

    threading_setters!();

    /// Computes the requested outputs.
    pub fn run<T: Float>(self, logits: Matrix<'_, T>) -> Result<()> {
        self.call(logits.raw(), None)
    }

    /// Computes the requested outputs and writes `which` over the logits.
    pub fn run_in_place<T: Float>(self, logits: MatrixMut<'_, T>, which: InPlace) -> Result<()> {
        let taken = match which {
            InPlace::Probs => self.probs.is_some(),
            InPlace::LogProbs => self.log_probs.is_some(),
        };
        if taken {
            return fail(
                Status::Aliasing,
                format!("run_in_place writes {which:?} into the logits, but that output is also set"),
            );
        }
        let g = logits.raw();
        self.call(g.as_input(), Some((g, which)))
    }

    fn call(mut self, logits: RawIn<'_>, in_place: Option<(RawOut<'_>, InPlace)>) -> Result<()> {
        let (b, v) = (logits.layout.rows(), logits.layout.cols());
        if let Some(o) = &self.probs {
            o.expect_shape("probs", b, v, "logits")?;
        }
        if let Some(o) = &self.log_probs {
            o.expect_shape("log_probs", b, v, "logits")?;
        }
        if let Some(o) = &self.lse {
            expect_len("lse", o.len(), b, "batch")?;
        }
        if let Some(o) = &self.entropy {
            expect_len("entropy", o.len(), b, "batch")?;
        }

        let mut a = init_args!(xent_softmax_args, xent_softmax_args_init);
        a.batch = b;
        a.num_classes = v;
        a.logits = logits.ptr;
        a.logits_stride = logits.layout.stride();
        a.logits_dtype = logits.dtype.code();
        if let Some(t) = self.temperature {
            a.temperature = t;
        }
        let (mut probs, mut log_probs) = (self.probs.as_ref(), self.log_probs.as_ref());
        match &in_place {
            Some((g, InPlace::Probs)) => probs = Some(g),
            Some((g, InPlace::LogProbs)) => log_probs = Some(g),
            None => {}
        }
        if let Some(o) = probs {
            a.probs = o.ptr;
            a.probs_stride = o.layout.stride();
            a.probs_dtype = o.dtype.code();
        }
        if let Some(o) = log_probs {
            a.log_probs = o.ptr;
            a.log_probs_stride = o.layout.stride();
            a.log_probs_dtype = o.dtype.code();
        }
        a.lse = out_ptr(&mut self.lse);
        a.entropy = out_ptr(&mut self.entropy);
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with; outputs are exclusive
        // borrows, except the documented in-place pair (probs or log_probs ==
        // logits, same stride and dtype) built from one `&mut`.
        check(unsafe { sys::xent_softmax(&a) })
    }
}

/// Backward of softmax / log-softmax (for autograd wrappers): from the
/// forward output `y` and the upstream gradient `g`, writes
/// `grad_input = dL/d(logits)`:
///
/// ```text
/// Probs:    (y * (g - sum_c g_c y_c)) / temperature
/// LogProbs: (g - exp(y) * sum_c g_c) / temperature
/// ```
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Matrix, MatrixMut, SoftmaxBackward};
/// let y = [0.25f32; 4];
/// let g = [1.0f32, 0.0, 0.0, 0.0];
/// let mut dx = [0.0f32; 4];
/// SoftmaxBackward::new().run(Matrix::new(&y, 1, 4)?, Matrix::new(&g, 1, 4)?, MatrixMut::new(&mut dx, 1, 4)?)?;
/// assert!((dx[0] - 0.1875).abs() < 1e-6);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct SoftmaxBackward<'a> {
    output_kind: Option<DistKind>,
    temperature: Option<f32>,
    threading: Threading<'a>,
}

impl Default for SoftmaxBackward<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> SoftmaxBackward<'a> {
    /// Backward of softmax ([`DistKind::Probs`]), temperature 1, all cores.
    pub fn new() -> Self {
        SoftmaxBackward { output_kind: None, temperature: None, threading: Threading::default() }
    }

    /// What the forward output `y` is: [`DistKind::Probs`] (default) or
    /// [`DistKind::LogProbs`].
    pub fn output_kind(mut self, k: DistKind) -> Self {
        self.output_kind = Some(k);
        self
    }

    /// The forward's temperature (default 1).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    threading_setters!();

    /// Writes `grad_input` (`B x V`; `f32` or the grad_output's dtype).
    pub fn run<T: Float, U: Float, G: Float>(
        self,
        output: Matrix<'_, T>,
        grad_output: Matrix<'_, U>,
        grad_input: MatrixMut<'_, G>,
    ) -> Result<()> {
        self.call(output.raw(), grad_output.raw(), grad_input.raw())
    }

    /// Overwrites the upstream gradient with `grad_input`.
    pub fn run_in_place<T: Float, U: Float>(self, output: Matrix<'_, T>, grad: MatrixMut<'_, U>) -> Result<()> {
        let g = grad.raw();
        self.call(output.raw(), g.as_input(), g)
    }

    fn call(self, output: RawIn<'_>, grad_output: RawIn<'_>, grad_input: RawOut<'_>) -> Result<()> {
        let (b, v) = (output.layout.rows(), output.layout.cols());
        grad_output.expect_shape("grad_output", b, v, "output")?;
        grad_input.expect_shape("grad_input", b, v, "output")?;

        let mut a = init_args!(xent_softmax_backward_args, xent_softmax_backward_args_init);
        a.batch = b;
        a.num_classes = v;
        a.output = output.ptr;
        a.output_stride = output.layout.stride();
        a.output_dtype = output.dtype.code();
        if let Some(k) = self.output_kind {
            a.output_kind = k.code();
        }
        a.grad_output = grad_output.ptr;
        a.grad_output_stride = grad_output.layout.stride();
        a.grad_output_dtype = grad_output.dtype.code();
        if let Some(t) = self.temperature {
            a.temperature = t;
        }
        a.grad_input = grad_input.ptr;
        a.grad_input_stride = grad_input.layout.stride();
        a.grad_input_dtype = grad_input.dtype.code();
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to be B x V with its stride and dtype; grad_input is an
        // exclusive borrow, or (in place) the same `&mut` as grad_output.
        check(unsafe { sys::xent_softmax_backward(&a) })
    }
}
