"""Per-token statistics for RL and evaluation over the C ABI (numpy, torch
CPU tensors, DLPack / buffer arrays), classes on the LAST axis:

- token_stats: log p(target), entropy, lse, argmax (+ its log-prob), top-k
  log-probs / indices / mass, and against a reference model's logits its
  log p(target), lse and the full KL(p || q) -- one read of each row, nothing
  B x V written (xent_token_logprobs);
- token_stats_backward: d/dlogits of any combination of those statistics
  given their upstream gradients, in one pass (xent_token_logprobs_backward);
- kl_penalty: the per-token KL estimators k1 / k2 / k3 / abs of RL
  frameworks (verl, TRL, OpenRLHF) and their gradient (xent_kl_penalty).
"""

from __future__ import annotations

import collections

import numpy as np

from . import _arrays
from . import _lib as L
from ._arrays import EMPTY_PTR, indices, is_torch, matrix

__all__ = ["TokenStats", "token_stats", "token_stats_backward", "kl_penalty", "KL_ESTIMATORS"]

#: Per-row results of token_stats; a field is None when it was not requested.
TokenStats = collections.namedtuple(
    "TokenStats",
    [
        "logprob",
        "entropy",
        "lse",
        "argmax",
        "argmax_logprob",
        "topk_logprobs",
        "topk_indices",
        "topk_mass",
        "ref_logprob",
        "ref_lse",
        "kl",
    ],
    defaults=(None,) * 11,
)

#: kind names of kl_penalty (verl's spellings included) -> xent_kl_estimator.
KL_ESTIMATORS = {
    "k1": L.XENT_KL_K1,
    "kl": L.XENT_KL_K1,
    "k2": L.XENT_KL_K2,
    "mse": L.XENT_KL_K2,
    "k3": L.XENT_KL_K3,
    "low_var_kl": L.XENT_KL_K3,
    "abs": L.XENT_KL_ABS,
}


def _float(x, name):
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError("%s must be a real number, got %r" % (name, x)) from None


def _empty(kind, shape, dtype):
    """(array, pointer) of a new float32 or int64 result."""
    if kind == "torch":
        import torch

        t = torch.empty(shape, dtype=torch.float32 if dtype == "f32" else torch.int64)
        return t, (t.data_ptr() or EMPTY_PTR)
    a = np.empty(shape, dtype=np.float32 if dtype == "f32" else np.int64)
    return a, (a.__array_interface__["data"][0] or EMPTY_PTR)


def _packed(x, name, shape, dtype):
    """A packed float32 / int64 copy-if-needed of x with exactly `shape`;
    returns (pointer, keep)."""
    if x is None:
        return None, None
    if is_torch(x):
        import torch

        t = x.detach()
        if t.device.type != "cpu":
            raise ValueError("%s is on device '%s'; xent runs on CPU tensors" % (name, t.device))
        if dtype == "i64" and (t.is_floating_point() or t.is_complex()):
            raise TypeError("%s has dtype %s; class indices must be integers" % (name, t.dtype))
        t = t.to(torch.float32 if dtype == "f32" else torch.int64).contiguous()
        if tuple(t.shape) != tuple(shape):
            raise ValueError("%s has shape %s; expected %s" % (name, tuple(t.shape), tuple(shape)))
        return (t.data_ptr() or EMPTY_PTR), t
    a = np.asarray(x)
    if dtype == "i64" and a.dtype.kind not in "iu":
        raise TypeError("%s has dtype %s; class indices must be integers" % (name, a.dtype))
    if dtype == "f32" and a.dtype.kind not in "fiub":
        raise TypeError("%s has dtype %s; expected real numbers" % (name, a.dtype))
    a = np.ascontiguousarray(a, dtype=np.float32 if dtype == "f32" else np.int64)
    if a.shape != tuple(shape):
        raise ValueError("%s has shape %s; expected %s" % (name, a.shape, tuple(shape)))
    return (a.__array_interface__["data"][0] or EMPTY_PTR), a


def _ref_matrix(ref_logits, m):
    r = matrix(ref_logits, "ref_logits")
    if r.shape != m.shape:
        raise ValueError("ref_logits has shape %s; expected the logits' shape %s" % (r.shape, m.shape))
    return r


def token_stats(
    logits,
    target=None,
    *,
    logprob=None,
    entropy=False,
    lse=False,
    argmax=False,
    topk=0,
    topk_mass=False,
    ref_logits=None,
    ref_logprob=None,
    ref_lse=False,
    kl=None,
    temperature=1.0,
    softcap=None,
    ignore_index=-100,
    num_threads=None,
):
    """Per-token statistics of z = softcap(logits) / temperature in one read
    of each row (classes on the last axis; float32 / bfloat16 / float16).

    logprob:   log softmax(z)[target] (default: when `target` is given); rows
               whose target is ignore_index give 0.
    entropy, lse: H(softmax(z)), logsumexp(z).
    argmax:    the index of the largest logit (ties: the lowest index) and
               its log-probability (argmax, argmax_logprob).
    topk:      k > 0 gives topk_logprobs (..., k) and topk_indices (..., k),
               ordered by logit, equal logits by index; topk_mass=True their
               summed probability. k <= min(V, 64).
    ref_logits: a reference model's logits (same shape, dtype, temperature,
               softcap): ref_logprob (default: when target is given), ref_lse,
               and kl = KL(p || q) per row (default True).

    Returns a TokenStats named tuple (float32 / int64 arrays of the leading
    shape, in the caller's array library); unrequested fields are None.
    Nothing here is differentiable: see xent.torch.token_stats for autograd,
    token_stats_backward for the gradient.
    """
    m = matrix(logits, "logits")
    op = L.token_logprobs_op
    a = op.args()
    a.batch, a.num_classes = m.rows, m.cols
    a.logits, a.logits_stride, a.logits_dtype = m.ptr, m.stride, m.code
    kind = m.v.kind
    keep = []
    if logprob is None:
        logprob = target is not None
    have_ref = ref_logits is not None
    if ref_logprob is None:
        ref_logprob = have_ref and target is not None
    if kl is None:
        kl = have_ref
    if (ref_logprob or ref_lse or kl) and not have_ref:
        raise ValueError("ref_logprob, ref_lse and kl need ref_logits")
    if (logprob or ref_logprob) and target is None:
        raise ValueError("logprob and ref_logprob need target")
    if target is not None:
        t = indices(target, "target", m.lead)
        a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
        keep.append(t)
    a.ignore_index = int(ignore_index)
    a.temperature = _float(temperature, "temperature")
    a.softcap = 0.0 if softcap is None else _float(softcap, "softcap")
    out = {}

    def rows(name):
        arr, ptr = _empty(kind, m.lead, "f32")
        out[name] = arr
        return ptr

    if logprob:
        a.logprob = rows("logprob")
    if entropy:
        a.entropy = rows("entropy")
    if lse:
        a.lse = rows("lse")
    if argmax:
        out["argmax"], a.argmax = _empty(kind, m.lead, "i64")
        a.argmax_logprob = rows("argmax_logprob")
    k = int(topk)
    if k < 0 or k > L.XENT_TOPK_MAX or (k > m.cols and m.rows > 0):
        raise ValueError("topk = %d is outside [0, min(V = %d, %d)]" % (k, m.cols, L.XENT_TOPK_MAX))
    if k > 0:
        a.topk = k
        out["topk_logprobs"], a.topk_logprobs = _empty(kind, m.lead + (k,), "f32")
        out["topk_indices"], a.topk_indices = _empty(kind, m.lead + (k,), "i64")
        if topk_mass:
            a.topk_mass = rows("topk_mass")
    elif topk_mass:
        raise ValueError("topk_mass needs topk > 0")
    if have_ref:
        r = _ref_matrix(ref_logits, m)
        a.ref_logits, a.ref_logits_stride, a.ref_logits_dtype = r.ptr, r.stride, r.code
        keep.append(r)
        if ref_logprob:
            a.ref_logprob = rows("ref_logprob")
        if ref_lse:
            a.ref_lse = rows("ref_lse")
        if kl:
            a.kl = rows("kl")
    if not out:
        raise ValueError("token_stats: no output requested")
    a.num_threads = L.threads(num_threads)
    op(a)
    del keep
    return TokenStats(**out)


def token_stats_backward(
    logits,
    target=None,
    *,
    grad_logprob=None,
    grad_entropy=None,
    lse=None,
    entropy=None,
    topk_indices=None,
    grad_topk_logprobs=None,
    ref_logits=None,
    grad_kl=None,
    ref_lse=None,
    kl=None,
    temperature=1.0,
    softcap=None,
    ignore_index=-100,
    grad=None,
    num_threads=None,
):
    """d/dlogits of sum(grad_logprob * logprob + grad_entropy * entropy +
    grad_topk_logprobs * log p[topk_indices] + grad_kl * kl) in one pass over
    the logits, nothing else B x V. The statistics are those of token_stats
    with the same temperature / softcap / ignore_index. lse, entropy, ref_lse
    and kl are the forward's values (optional: computed here when missing, at
    one more read of each row). topk_indices may be any classes (..., k).

    grad: None / True (a new array in the logits' dtype), an array (float32 or
    the logits' dtype, the logits' shape), or "inplace" (over logits).
    Rows whose upstream gradients are all 0 get exact zeros. Returns grad.
    """
    inplace = isinstance(grad, str) and grad == "inplace"
    if isinstance(grad, str) and not inplace:
        raise ValueError("grad = %r: expected None, True, an array or 'inplace'" % grad)
    m = matrix(logits, "logits", output=inplace, allow_copy=not inplace)
    op = L.token_logprobs_backward_op
    a = op.args()
    a.batch, a.num_classes = m.rows, m.cols
    a.logits, a.logits_stride, a.logits_dtype = m.ptr, m.stride, m.code
    keep = []
    if grad_logprob is not None:
        if target is None:
            raise ValueError("grad_logprob needs target")
        t = indices(target, "target", m.lead)
        a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
        keep.append(t)
    a.ignore_index = int(ignore_index)
    a.temperature = _float(temperature, "temperature")
    a.softcap = 0.0 if softcap is None else _float(softcap, "softcap")
    for name, val in (
        ("grad_logprob", grad_logprob),
        ("grad_entropy", grad_entropy),
        ("lse", lse),
        ("entropy", entropy),
        ("grad_kl", grad_kl),
        ("ref_lse", ref_lse),
        ("kl", kl),
    ):
        ptr, k = _packed(val, name, m.lead, "f32")
        setattr(a, name, ptr)
        keep.append(k)
    if grad_topk_logprobs is not None:
        if topk_indices is None:
            raise ValueError("grad_topk_logprobs needs topk_indices")
        shape = tuple(getattr(topk_indices, "shape", np.shape(topk_indices)))
        if len(shape) != len(m.lead) + 1 or shape[:-1] != m.lead:
            raise ValueError("topk_indices has shape %s; expected %s + (k,)" % (shape, m.lead))
        k = shape[-1]
        a.topk = k
        a.topk_indices, ki = _packed(topk_indices, "topk_indices", shape, "i64")
        a.grad_topk_logprobs, kg = _packed(grad_topk_logprobs, "grad_topk_logprobs", shape, "f32")
        keep += [ki, kg]
    if grad_kl is not None:
        if ref_logits is None:
            raise ValueError("grad_kl needs ref_logits")
        r = _ref_matrix(ref_logits, m)
        a.ref_logits, a.ref_logits_stride, a.ref_logits_dtype = r.ptr, r.stride, r.code
        keep.append(r)
    if inplace:
        g_obj, a.grad, a.grad_stride, a.grad_dtype = m.v.obj, m.ptr, m.stride, m.code
    elif grad is None or grad is True:
        # A large gradient comes from xent's huge-page advised, recycled
        # buffers (no 4 KiB page faults on first touch), as CE's does.
        g_obj, ptr = _arrays.empty("torch" if kind_is_torch(m) else "numpy", m.shape, m.code)
        a.grad = ptr or EMPTY_PTR
        a.grad_dtype = m.code
    else:
        gm = matrix(grad, "grad", output=True)
        if gm.shape != m.shape:
            raise ValueError("grad has shape %s; expected %s" % (gm.shape, m.shape))
        g_obj, a.grad, a.grad_stride, a.grad_dtype = grad, gm.ptr, gm.stride, gm.code
    a.num_threads = L.threads(num_threads)
    op(a)
    del keep
    return g_obj


def kind_is_torch(m):
    return m.v.kind == "torch"


def kl_penalty(
    logprob,
    ref_logprob,
    *,
    kind="k3",
    straight_through=False,
    log_ratio_clamp=None,
    value_clamp=None,
    grad=False,
    grad_output=None,
):
    """Per-token KL penalty between a policy's and a reference's
    log-probabilities of the sampled tokens (any shape, float32 results):
    with r = ref_logprob - logprob (clamped to +-log_ratio_clamp),
    "k1"/"kl": -r, "k2"/"mse": r^2 / 2, "k3"/"low_var_kl": exp(r) - r - 1,
    "abs": |r|; then clamped to +-value_clamp. verl's low_var_kl is k3 with
    log_ratio_clamp=20, value_clamp=10; a kind ending in "+" (verl's "k3+")
    is straight_through: the kind's value with the k2 gradient.

    grad=True returns (penalty, d penalty / d logprob [* grad_output]); the
    gradient with respect to ref_logprob is its negative.
    """
    if not isinstance(kind, str):
        raise TypeError("kind must be a string, got %r" % (kind,))
    name = kind
    if name.endswith("+"):
        straight_through, name = True, name[:-1]
    est = KL_ESTIMATORS.get(name)
    if est is None:
        raise ValueError(
            "kind = %r is not one of %s (optionally ending in '+')" % (kind, ", ".join(repr(k) for k in KL_ESTIMATORS))
        )
    lk = is_torch(logprob) or is_torch(ref_logprob)
    shape = tuple(getattr(logprob, "shape", np.shape(logprob)))
    if tuple(getattr(ref_logprob, "shape", np.shape(ref_logprob))) != shape:
        raise ValueError(
            "ref_logprob has shape %s; expected logprob's %s"
            % (tuple(getattr(ref_logprob, "shape", np.shape(ref_logprob))), shape)
        )
    n = int(np.prod(shape)) if shape else 1
    op = L.kl_penalty_op
    a = op.args()
    a.batch, a.num_classes = n, 1
    a.logprob, k1 = _packed(logprob, "logprob", shape, "f32")
    a.ref_logprob, k2 = _packed(ref_logprob, "ref_logprob", shape, "f32")
    a.grad_output, k3 = _packed(grad_output, "grad_output", shape, "f32")
    a.estimator = est
    a.straight_through = 1 if straight_through else 0
    a.log_ratio_clamp = 0.0 if log_ratio_clamp is None else _float(log_ratio_clamp, "log_ratio_clamp")
    a.value_clamp = 0.0 if value_clamp is None else _float(value_clamp, "value_clamp")
    kind_ = "torch" if lk else "numpy"
    pen, a.penalty = _empty(kind_, shape, "f32")
    g = None
    if grad:
        g, a.grad_logprob = _empty(kind_, shape, "f32")
    op(a)
    del k1, k2, k3
    return (pen, g) if grad else pen
