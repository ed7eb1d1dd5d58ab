//! Token log-probabilities (`xent_token_logprobs`).

use xent_sys as sys;

use super::{init_args, out_ptr};
use crate::dtype::{Float, Index};
use crate::error::{check, Result};
use crate::matrix::{expect_len, Labels, Matrix, RawIn, RawLabels};
use crate::parallel::{threading_setters, Threading};

/// Per-row token log-probabilities, entropy and log-sum-exp without writing
/// anything `B x V` (RL fine-tuning, evaluation): with
/// `z = softcap(logits) / temperature` and `y = target[i]`,
/// `logprob[i] = z_y - logsumexp(z)` (0 for rows whose target is
/// `ignore_index`), `entropy[i] = H(softmax(z))`, `lse[i] = logsumexp(z)`.
/// At least one output is required.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Matrix, TokenLogprobs};
/// let logits = [0.0f32, 0.0, 0.0, 0.0];
/// let mut logprob = [0.0f32; 1];
/// TokenLogprobs::new().logprob(&mut logprob).run(Matrix::new(&logits, 1, 4)?, &[3i64])?;
/// assert!((logprob[0] + 4f32.ln()).abs() < 1e-5);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct TokenLogprobs<'a> {
    temperature: Option<f32>,
    softcap: Option<f32>,
    ignore_index: Option<i64>,
    logprob: Option<&'a mut [f32]>,
    entropy: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    threading: Threading<'a>,
}

impl Default for TokenLogprobs<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> TokenLogprobs<'a> {
    /// Temperature 1, no softcap, `ignore_index = -100`, all cores, no
    /// outputs yet.
    pub fn new() -> Self {
        TokenLogprobs {
            temperature: None,
            softcap: None,
            ignore_index: None,
            logprob: None,
            entropy: None,
            lse: None,
            threading: Threading::default(),
        }
    }

    /// Divides the (soft-capped) logits by `t` (`> 0`; default 1).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Soft-capping `c * tanh(logits / c)` applied first (`>= 0`; 0 = off).
    pub fn softcap(mut self, c: f32) -> Self {
        self.softcap = Some(c);
        self
    }

    /// Rows whose target equals this get logprob 0 (default -100).
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = Some(i);
        self
    }

    /// Writes the target tokens' log-probabilities (`B` values).
    pub fn logprob(mut self, out: &'a mut [f32]) -> Self {
        self.logprob = Some(out);
        self
    }

    /// Writes each row's entropy (`B` values).
    pub fn entropy(mut self, out: &'a mut [f32]) -> Self {
        self.entropy = Some(out);
        self
    }

    /// Writes each row's log-sum-exp (`B` values).
    pub fn lse(mut self, out: &'a mut [f32]) -> Self {
        self.lse = Some(out);
        self
    }

    threading_setters!();

    /// Computes the requested outputs for `target` (one class index per row).
    pub fn run<'t, T: Float, I: Index>(self, logits: Matrix<'_, T>, target: impl Into<Labels<'t, I>>) -> Result<()> {
        let t = target.into().raw();
        self.call(logits.raw(), Some(t))
    }

    /// Computes entropy and/or lse only (no targets; `logprob` must not be
    /// requested).
    pub fn run_without_target<T: Float>(self, logits: Matrix<'_, T>) -> Result<()> {
        self.call(logits.raw(), None)
    }

    fn call(mut self, logits: RawIn<'_>, target: Option<RawLabels<'_>>) -> Result<()> {
        let (b, v) = (logits.layout.rows(), logits.layout.cols());
        if let Some(t) = &target {
            t.expect_len("target", b)?;
        }
        for (name, o) in [("logprob", &self.logprob), ("entropy", &self.entropy), ("lse", &self.lse)] {
            if let Some(o) = o {
                expect_len(name, o.len(), b, "batch")?;
            }
        }

        let mut a = init_args!(xent_token_logprobs_args, xent_token_logprobs_args_init);
        a.batch = b;
        a.num_classes = v;
        a.logits = logits.ptr;
        a.logits_stride = logits.layout.stride();
        a.logits_dtype = logits.dtype.code();
        if let Some(t) = &target {
            a.target = t.ptr;
            a.target_dtype = t.dtype.code();
            a.target_stride = t.stride;
        }
        if let Some(i) = self.ignore_index {
            a.ignore_index = i;
        }
        if let Some(x) = self.temperature {
            a.temperature = x;
        }
        if let Some(x) = self.softcap {
            a.softcap = x;
        }
        a.logprob = out_ptr(&mut self.logprob);
        a.entropy = out_ptr(&mut self.entropy);
        a.lse = out_ptr(&mut self.lse);
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with (logits B x V with its
        // stride and dtype, B labels, B-value outputs, all exclusive).
        check(unsafe { sys::xent_token_logprobs(&a) })
    }
}
