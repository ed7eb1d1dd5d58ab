//! Per-token statistics for RL and evaluation: argmax, top-k and the
//! reference model's KL with log p(target) / entropy / lse
//! (`xent_token_logprobs`), their backward (`xent_token_logprobs_backward`)
//! and the per-token KL penalty estimators (`xent_kl_penalty`).

use xent_sys as sys;

use super::{init_args, out_ptr};
use crate::dtype::{Float, Index};
use crate::error::{check, fail, Result, Status};
use crate::matrix::{expect_len, Labels, Matrix, MatrixMut, RawIn, RawLabels, RawOut};
use crate::parallel::{threading_setters, Threading};

fn in_ptr(v: Option<&[f32]>) -> *const f32 {
    v.map_or(core::ptr::null(), |s| s.as_ptr())
}

fn idx_ptr(v: &mut Option<&mut [i64]>) -> *mut i64 {
    match v {
        Some(s) => s.as_mut_ptr(),
        None => core::ptr::null_mut(),
    }
}

/// One read of each row, nothing `B x V` written: with
/// `z = softcap(logits) / temperature`, `p = softmax(z)` and `y = target[i]`,
/// any of `logprob = log p_y` (0 for rows whose target is `ignore_index`),
/// the entropy, `lse`, the argmax (the largest logit, lowest index among
/// equal ones) and its log-probability, the top `k` classes (`k <= min(V,
/// 64)`, ordered by logit, equal logits by index) with their
/// log-probabilities and summed probability, and against a reference model's
/// logits `q`: `log q_y`, its `lse` and `KL(p || q)` per row.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Matrix, TokenStats};
/// let logits = [0.0f32, 2.0, 1.0, 2.0];
/// let (mut am, mut am_lp) = ([0i64; 1], [0.0f32; 1]);
/// let (mut top_lp, mut top_i) = ([0.0f32; 2], [0i64; 2]);
/// TokenStats::new()
///     .argmax(&mut am, &mut am_lp)
///     .topk(2, &mut top_lp, &mut top_i)
///     .run_without_target(Matrix::new(&logits, 1, 4)?)?;
/// assert_eq!(am[0], 1); // ties: the lower index
/// assert_eq!(top_i, [1, 3]);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct TokenStats<'a> {
    temperature: Option<f32>,
    softcap: Option<f32>,
    ignore_index: Option<i64>,
    logprob: Option<&'a mut [f32]>,
    entropy: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    argmax: Option<&'a mut [i64]>,
    argmax_logprob: Option<&'a mut [f32]>,
    k: usize,
    topk_logprobs: Option<&'a mut [f32]>,
    topk_indices: Option<&'a mut [i64]>,
    topk_mass: Option<&'a mut [f32]>,
    reference: Option<RawIn<'a>>,
    ref_logprob: Option<&'a mut [f32]>,
    ref_lse: Option<&'a mut [f32]>,
    kl: Option<&'a mut [f32]>,
    threading: Threading<'a>,
}

impl Default for TokenStats<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> TokenStats<'a> {
    /// Temperature 1, no softcap, `ignore_index = -100`, all cores, no
    /// outputs yet.
    pub fn new() -> Self {
        TokenStats {
            temperature: None,
            softcap: None,
            ignore_index: None,
            logprob: None,
            entropy: None,
            lse: None,
            argmax: None,
            argmax_logprob: None,
            k: 0,
            topk_logprobs: None,
            topk_indices: None,
            topk_mass: None,
            reference: None,
            ref_logprob: None,
            ref_lse: None,
            kl: None,
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

    /// Writes each row's argmax (`B` indices) and its log-probability.
    pub fn argmax(mut self, indices: &'a mut [i64], logprobs: &'a mut [f32]) -> Self {
        self.argmax = Some(indices);
        self.argmax_logprob = Some(logprobs);
        self
    }

    /// Writes the top `k` log-probabilities and classes of each row (`B x k`
    /// each, row `i` at `i * k`).
    pub fn topk(mut self, k: usize, logprobs: &'a mut [f32], indices: &'a mut [i64]) -> Self {
        self.k = k;
        self.topk_logprobs = Some(logprobs);
        self.topk_indices = Some(indices);
        self
    }

    /// Writes the summed probability of the top `k` classes (`B` values;
    /// needs [`topk`](Self::topk)).
    pub fn topk_mass(mut self, out: &'a mut [f32]) -> Self {
        self.topk_mass = Some(out);
        self
    }

    /// A reference model's logits (the logits' shape and dtype; the same
    /// temperature and softcap apply).
    pub fn reference<T: Float>(mut self, logits: Matrix<'a, T>) -> Self {
        self.reference = Some(logits.raw());
        self
    }

    /// Writes `log q(target)` under the reference (`B` values).
    pub fn ref_logprob(mut self, out: &'a mut [f32]) -> Self {
        self.ref_logprob = Some(out);
        self
    }

    /// Writes the reference's log-sum-exp (`B` values).
    pub fn ref_lse(mut self, out: &'a mut [f32]) -> Self {
        self.ref_lse = Some(out);
        self
    }

    /// Writes `KL(p || q)` per row (`B` values).
    pub fn kl(mut self, out: &'a mut [f32]) -> Self {
        self.kl = Some(out);
        self
    }

    threading_setters!();

    /// Computes the requested outputs for `target` (one class index per row).
    pub fn run<'t, T: Float, I: Index>(self, logits: Matrix<'_, T>, target: impl Into<Labels<'t, I>>) -> Result<()> {
        let t = target.into().raw();
        self.call(logits.raw(), Some(t))
    }

    /// Computes the outputs that need no target.
    pub fn run_without_target<T: Float>(self, logits: Matrix<'_, T>) -> Result<()> {
        self.call(logits.raw(), None)
    }

    fn call(mut self, logits: RawIn<'_>, target: Option<RawLabels<'_>>) -> Result<()> {
        let (b, v) = (logits.layout.rows(), logits.layout.cols());
        if let Some(t) = &target {
            t.expect_len("target", b)?;
        }
        for (name, o) in [
            ("logprob", &self.logprob),
            ("entropy", &self.entropy),
            ("lse", &self.lse),
            ("argmax_logprob", &self.argmax_logprob),
            ("topk_mass", &self.topk_mass),
            ("ref_logprob", &self.ref_logprob),
            ("ref_lse", &self.ref_lse),
            ("kl", &self.kl),
        ] {
            if let Some(o) = o {
                expect_len(name, o.len(), b, "batch")?;
            }
        }
        if let Some(o) = &self.argmax {
            expect_len("argmax", o.len(), b, "batch")?;
        }
        let bk = b.saturating_mul(self.k);
        if let Some(o) = &self.topk_logprobs {
            expect_len("topk_logprobs", o.len(), bk, "batch x k")?;
        }
        if let Some(o) = &self.topk_indices {
            expect_len("topk_indices", o.len(), bk, "batch x k")?;
        }
        if self.k > i32::MAX as usize {
            return fail(Status::InvalidValue, format!("topk = {} is too large", self.k));
        }
        if let Some(r) = &self.reference {
            r.expect_shape("reference logits", b, v, "logits")?;
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
        a.argmax = idx_ptr(&mut self.argmax);
        a.argmax_logprob = out_ptr(&mut self.argmax_logprob);
        a.topk = self.k as i32;
        a.topk_logprobs = out_ptr(&mut self.topk_logprobs);
        a.topk_indices = idx_ptr(&mut self.topk_indices);
        a.topk_mass = out_ptr(&mut self.topk_mass);
        if let Some(r) = &self.reference {
            a.ref_logits = r.ptr;
            a.ref_logits_stride = r.layout.stride();
            a.ref_logits_dtype = r.dtype.code();
        }
        a.ref_logprob = out_ptr(&mut self.ref_logprob);
        a.ref_lse = out_ptr(&mut self.ref_lse);
        a.kl = out_ptr(&mut self.kl);
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with (logits and reference
        // B x V with their stride and dtype, B labels, B or B x k outputs, all
        // exclusive borrows).
        check(unsafe { sys::xent_token_logprobs(&a) })
    }
}

/// The gradient of the per-token statistics with respect to the logits, in
/// one pass over them (`xent_token_logprobs_backward`): given upstream
/// per-row gradients `g_lp`, `g_H`, `g_kl` and `g_k[j]` at classes
/// `idx[j]`, writes `d/dlogits` of
/// `sum_i g_lp logprob + g_H entropy + sum_j g_k[j] log p[idx[j]] + g_kl KL`:
/// `(delta_c - p_c (g_lp + sum g_k) - g_H p_c (log p_c + H) + g_kl p_c (log
/// p_c - log q_c - KL)) dz_c/dlogits_c`. The forward's lse / entropy /
/// reference lse / KL may be passed (one read of each row), else they are
/// computed here. Rows whose upstream gradients are all zero get zeros.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{Matrix, MatrixMut, TokenStatsBackward};
/// let logits = [0.0f32; 4];
/// let mut grad = [0.0f32; 4];
/// TokenStatsBackward::new()
///     .grad_logprob(&[1.0])
///     .run(Matrix::new(&logits, 1, 4)?, &[2i64], MatrixMut::new(&mut grad, 1, 4)?)?;
/// assert!((grad[2] - 0.75).abs() < 1e-6 && (grad[0] + 0.25).abs() < 1e-6);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct TokenStatsBackward<'a> {
    temperature: Option<f32>,
    softcap: Option<f32>,
    ignore_index: Option<i64>,
    grad_logprob: Option<&'a [f32]>,
    grad_entropy: Option<&'a [f32]>,
    lse: Option<&'a [f32]>,
    entropy: Option<&'a [f32]>,
    k: usize,
    topk_indices: Option<&'a [i64]>,
    grad_topk: Option<&'a [f32]>,
    reference: Option<RawIn<'a>>,
    grad_kl: Option<&'a [f32]>,
    ref_lse: Option<&'a [f32]>,
    kl: Option<&'a [f32]>,
    threading: Threading<'a>,
}

impl Default for TokenStatsBackward<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> TokenStatsBackward<'a> {
    /// No upstream gradients yet (an all-zero gradient), the forward's
    /// defaults.
    pub fn new() -> Self {
        TokenStatsBackward {
            temperature: None,
            softcap: None,
            ignore_index: None,
            grad_logprob: None,
            grad_entropy: None,
            lse: None,
            entropy: None,
            k: 0,
            topk_indices: None,
            grad_topk: None,
            reference: None,
            grad_kl: None,
            ref_lse: None,
            kl: None,
            threading: Threading::default(),
        }
    }

    /// The forward's temperature (default 1).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// The forward's softcap (default 0 = off).
    pub fn softcap(mut self, c: f32) -> Self {
        self.softcap = Some(c);
        self
    }

    /// The forward's ignore_index (default -100): those rows have no
    /// log-probability term.
    pub fn ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = Some(i);
        self
    }

    /// Upstream gradient of the target log-probabilities (`B` values; needs
    /// `run` with a target).
    pub fn grad_logprob(mut self, g: &'a [f32]) -> Self {
        self.grad_logprob = Some(g);
        self
    }

    /// Upstream gradient of the entropies (`B` values).
    pub fn grad_entropy(mut self, g: &'a [f32]) -> Self {
        self.grad_entropy = Some(g);
        self
    }

    /// The forward's log-sum-exp and entropy (`B` values each; saves a read).
    pub fn stats(mut self, lse: &'a [f32], entropy: &'a [f32]) -> Self {
        self.lse = Some(lse);
        self.entropy = Some(entropy);
        self
    }

    /// Upstream gradients of the log-probabilities at `indices` (`B x k`
    /// each, any classes in `[0, V)`, e.g. the forward's top-k).
    pub fn grad_topk(mut self, k: usize, indices: &'a [i64], grads: &'a [f32]) -> Self {
        self.k = k;
        self.topk_indices = Some(indices);
        self.grad_topk = Some(grads);
        self
    }

    /// Upstream gradient of `KL(p || q)` against the reference logits.
    pub fn grad_kl<T: Float>(mut self, reference: Matrix<'a, T>, g: &'a [f32]) -> Self {
        self.reference = Some(reference.raw());
        self.grad_kl = Some(g);
        self
    }

    /// The forward's reference log-sum-exp and KL (`B` values each).
    pub fn kl_stats(mut self, ref_lse: &'a [f32], kl: &'a [f32]) -> Self {
        self.ref_lse = Some(ref_lse);
        self.kl = Some(kl);
        self
    }

    threading_setters!();

    /// Writes the gradient (`B x V`, `f32` or the logits' dtype).
    pub fn run<'t, T: Float, G: Float, I: Index>(
        self,
        logits: Matrix<'_, T>,
        target: impl Into<Labels<'t, I>>,
        grad: MatrixMut<'_, G>,
    ) -> Result<()> {
        let t = target.into().raw();
        self.call(logits.raw(), Some(t), grad.raw())
    }

    /// Writes the gradient without targets (no `grad_logprob`).
    pub fn run_without_target<T: Float, G: Float>(self, logits: Matrix<'_, T>, grad: MatrixMut<'_, G>) -> Result<()> {
        self.call(logits.raw(), None, grad.raw())
    }

    /// Writes the gradient over the logits.
    pub fn run_in_place<'t, T: Float, I: Index>(
        self,
        logits: MatrixMut<'_, T>,
        target: impl Into<Labels<'t, I>>,
    ) -> Result<()> {
        let t = target.into().raw();
        let g = logits.raw();
        self.call(g.as_input(), Some(t), g)
    }

    fn call(self, logits: RawIn<'_>, target: Option<RawLabels<'_>>, grad: RawOut<'_>) -> Result<()> {
        let (b, v) = (logits.layout.rows(), logits.layout.cols());
        grad.expect_shape("grad", b, v, "logits")?;
        if let Some(t) = &target {
            t.expect_len("target", b)?;
        }
        for (name, o) in [
            ("grad_logprob", self.grad_logprob),
            ("grad_entropy", self.grad_entropy),
            ("lse", self.lse),
            ("entropy", self.entropy),
            ("grad_kl", self.grad_kl),
            ("ref_lse", self.ref_lse),
            ("kl", self.kl),
        ] {
            if let Some(o) = o {
                expect_len(name, o.len(), b, "batch")?;
            }
        }
        let bk = b.saturating_mul(self.k);
        if let (Some(i), Some(g)) = (self.topk_indices, self.grad_topk) {
            expect_len("topk indices", i.len(), bk, "batch x k")?;
            expect_len("topk gradients", g.len(), bk, "batch x k")?;
        }
        if self.k > i32::MAX as usize {
            return fail(Status::InvalidValue, format!("k = {} is too large", self.k));
        }
        if let Some(r) = &self.reference {
            r.expect_shape("reference logits", b, v, "logits")?;
        }

        let mut a = init_args!(xent_token_logprobs_backward_args, xent_token_logprobs_backward_args_init);
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
        a.grad_logprob = in_ptr(self.grad_logprob);
        a.grad_entropy = in_ptr(self.grad_entropy);
        a.lse = in_ptr(self.lse);
        a.entropy = in_ptr(self.entropy);
        a.topk = self.k as i32;
        a.topk_indices = self.topk_indices.map_or(core::ptr::null(), |s| s.as_ptr());
        a.grad_topk_logprobs = in_ptr(self.grad_topk);
        if let Some(r) = &self.reference {
            a.ref_logits = r.ptr;
            a.ref_logits_stride = r.layout.stride();
            a.ref_logits_dtype = r.dtype.code();
        }
        a.grad_kl = in_ptr(self.grad_kl);
        a.ref_lse = in_ptr(self.ref_lse);
        a.kl = in_ptr(self.kl);
        a.grad = grad.ptr;
        a.grad_stride = grad.layout.stride();
        a.grad_dtype = grad.dtype.code();
        self.threading.apply(&mut a.num_threads, &mut a.parallel_for, &mut a.parallel_user)?;
        // Safety: every pointer in `a` comes from a live Rust borrow checked
        // above to hold the shape it is described with; grad is an exclusive
        // borrow, or (in place) the same `&mut` as the logits.
        check(unsafe { sys::xent_token_logprobs_backward(&a) })
    }
}

/// Per-token KL penalty estimators (`xent_kl_penalty`), with
/// `r = ref_logprob - logprob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KlEstimator {
    /// `-r = logprob - ref_logprob`.
    K1,
    /// `r^2 / 2`.
    K2,
    /// `exp(r) - r - 1` (low variance; verl's `low_var_kl`).
    K3,
    /// `|r|`.
    Abs,
}

impl KlEstimator {
    fn code(self) -> i32 {
        match self {
            KlEstimator::K1 => sys::XENT_KL_K1,
            KlEstimator::K2 => sys::XENT_KL_K2,
            KlEstimator::K3 => sys::XENT_KL_K3,
            KlEstimator::Abs => sys::XENT_KL_ABS,
        }
    }
}

/// The KL penalty between a policy's and a reference's log-probabilities of
/// the sampled tokens, and its gradient with respect to the policy's (the
/// reference's is its negative). `r` may be clamped to
/// `[-log_ratio_clamp, log_ratio_clamp]` and the estimate to
/// `[-value_clamp, value_clamp]` (verl: 20 and 10 for K3); a clamp that is
/// active zeroes the gradient; `straight_through` gives the K2 gradient.
///
/// ```
/// # fn main() -> xent::Result<()> {
/// use xent::{KlEstimator, KlPenalty};
/// let (mut pen, mut grad) = ([0.0f32; 2], [0.0f32; 2]);
/// KlPenalty::new(KlEstimator::K3).grad(&mut grad).run(&[-1.0, -2.0], &[-1.0, -1.0], &mut pen)?;
/// assert_eq!(pen[0], 0.0);
/// assert!((pen[1] - (1f32.exp() - 2.0)).abs() < 1e-6);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `run` is called"]
pub struct KlPenalty<'a> {
    estimator: KlEstimator,
    straight_through: bool,
    log_ratio_clamp: f32,
    value_clamp: f32,
    grad_output: Option<&'a [f32]>,
    grad: Option<&'a mut [f32]>,
}

impl<'a> KlPenalty<'a> {
    /// The estimator, no clamps, no gradient.
    pub fn new(estimator: KlEstimator) -> Self {
        KlPenalty {
            estimator,
            straight_through: false,
            log_ratio_clamp: 0.0,
            value_clamp: 0.0,
            grad_output: None,
            grad: None,
        }
    }

    /// Clamps `r` to `[-c, c]` (`c > 0`; 0 = off).
    pub fn log_ratio_clamp(mut self, c: f32) -> Self {
        self.log_ratio_clamp = c;
        self
    }

    /// Clamps the estimate to `[-c, c]` (`c > 0`; 0 = off).
    pub fn value_clamp(mut self, c: f32) -> Self {
        self.value_clamp = c;
        self
    }

    /// The K2 gradient whatever the estimator (verl's `k3+`).
    pub fn straight_through(mut self, on: bool) -> Self {
        self.straight_through = on;
        self
    }

    /// Writes `d penalty / d logprob` (times `grad_output` when given).
    pub fn grad(mut self, out: &'a mut [f32]) -> Self {
        self.grad = Some(out);
        self
    }

    /// The upstream gradient multiplying [`grad`](Self::grad).
    pub fn grad_output(mut self, g: &'a [f32]) -> Self {
        self.grad_output = Some(g);
        self
    }

    /// Computes the penalties of `n` tokens (all slices of `n` values).
    pub fn run(mut self, logprob: &[f32], ref_logprob: &[f32], penalty: &mut [f32]) -> Result<()> {
        let n = logprob.len();
        expect_len("ref_logprob", ref_logprob.len(), n, "logprob's length")?;
        expect_len("penalty", penalty.len(), n, "logprob's length")?;
        if let Some(g) = &self.grad {
            expect_len("grad", g.len(), n, "logprob's length")?;
        }
        if let Some(g) = self.grad_output {
            expect_len("grad_output", g.len(), n, "logprob's length")?;
        }
        let mut a = init_args!(xent_kl_penalty_args, xent_kl_penalty_args_init);
        a.batch = n;
        a.num_classes = 1;
        a.logprob = logprob.as_ptr();
        a.ref_logprob = ref_logprob.as_ptr();
        a.estimator = self.estimator.code();
        a.straight_through = i32::from(self.straight_through);
        a.log_ratio_clamp = self.log_ratio_clamp;
        a.value_clamp = self.value_clamp;
        a.grad_output = in_ptr(self.grad_output);
        a.penalty = penalty.as_mut_ptr();
        a.grad_logprob = out_ptr(&mut self.grad);
        // Safety: inputs are live borrows of n values, outputs exclusive
        // borrows of n values (checked above).
        check(unsafe { sys::xent_kl_penalty(&a) })
    }
}
