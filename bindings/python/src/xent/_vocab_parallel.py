"""Vocab-parallel cross-entropy and token log-probs over the C ABI
(xent_cross_entropy_shard_stats / _finish, xent_token_logprobs_shard_stats /
_finish / _backward): the classes of the logits split into column shards held by
different ranks. xent does no communication: each rank calls
cross_entropy_shard_stats on its shard, gathers every rank's statistics in
rank order with its own collective (e.g. torch.distributed.all_gather_into_tensor
of the 1-D float64 stats into a (num_shards, n) tensor), and calls
cross_entropy_shard_finish. The stats are opaque: n =
cross_entropy_shard_stats_doubles(rows, label_smoothing) float64 per rank, 16
bytes per row (32 with label smoothing) plus a 32-byte header. Token
log-probs: token_logprobs_shard_stats_doubles(rows, entropy), 16 bytes per row
(24 with the entropy) plus the header; their gradient needs no communication
(token_logprobs_shard_backward from finish's lse and entropy). Distillation
KL between two logit batches sharded alike: kl_div_logits_shard_stats_doubles
(rows), 32 bytes per row plus the header.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import _arrays
from . import _lib as L
from ._arrays import _torch, f32_vector, indices, is_torch, matrix, scalar

__all__ = [
    "cross_entropy_shard_stats",
    "cross_entropy_shard_finish",
    "cross_entropy_shard_stats_doubles",
    "token_logprobs_shard_stats",
    "token_logprobs_shard_finish",
    "token_logprobs_shard_backward",
    "token_logprobs_shard_stats_doubles",
    "kl_div_logits_shard_stats",
    "kl_div_logits_shard_finish",
    "kl_div_logits_shard_stats_doubles",
]


def cross_entropy_shard_stats_doubles(rows, label_smoothing=0.0):
    """The float64 elements of one rank's cross_entropy_shard_stats for `rows`
    rows (the product of the logits' leading dimensions) and this
    label_smoothing; the gathered stats hold num_shards times as many."""
    n = L.lib.xent_cross_entropy_shard_stats_doubles(int(rows), float(label_smoothing))
    if n == 0:
        raise ValueError("rows = %d: the shard statistics' size overflows size_t" % rows)
    return n


def token_logprobs_shard_stats_doubles(rows, entropy=False):
    """The float64 elements of one rank's token_logprobs_shard_stats for
    `rows` rows, with or without the entropy sums."""
    n = L.lib.xent_token_logprobs_shard_stats_doubles(int(rows), 1 if entropy else 0)
    if n == 0:
        raise ValueError("rows = %d: the shard statistics' size overflows size_t" % rows)
    return n


def _stats_out(kind, rows, label_smoothing, n=None):
    shape = (cross_entropy_shard_stats_doubles(rows, label_smoothing) if n is None else n,)
    if kind == "torch":
        t = _torch().empty(shape, dtype=_torch().float64)
        return t, t.data_ptr()
    a = np.empty(shape, dtype=np.float64)
    return a, a.__array_interface__["data"][0]


def _stats_in(stats, rows, label_smoothing, n=None, what=None):
    """The gathered stats as a contiguous array and num_shards: (num_shards, n)
    (e.g. np.stack of the ranks' stats) or (num_shards * n,) (a flat
    all-gather), n = cross_entropy_shard_stats_doubles(rows, label_smoothing)
    unless given (with `what`, the phase 1 and its flag, for the message)."""
    a = stats.detach().cpu().numpy() if is_torch(stats) else np.asarray(stats)
    if a.dtype != np.float64:
        raise TypeError("stats has dtype %s; the shard statistics are float64" % a.dtype)
    if n is None:
        n = cross_entropy_shard_stats_doubles(rows, float(label_smoothing))
        what = "cross_entropy_shard_stats of %d rows (label_smoothing = %g)" % (rows, label_smoothing)
    shards = a.size // n
    if a.ndim == 0 or a.size == 0 or a.size % n or (a.ndim > 1 and a.shape[0] != shards):
        raise ValueError(
            "stats has shape %s; expected (num_shards, %d) or (num_shards * %d,): every rank's "
            "%s stacked in rank order" % (a.shape, n, n, what)
        )
    return np.ascontiguousarray(a), shards


def _common(a, x, t, num_classes, class_offset, weight, ignore_index, label_smoothing, softcap):
    a.batch, a.num_classes, a.shard_classes, a.class_offset = x.rows, int(num_classes), x.cols, int(class_offset)
    a.logits, a.logits_stride, a.logits_dtype = x.ptr, x.stride, x.code
    a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
    a.weight, wk = f32_vector(weight, "weight", int(num_classes))
    a.ignore_index = int(ignore_index)
    a.label_smoothing = float(label_smoothing)
    a.softcap = 0.0 if softcap is None else float(softcap)
    return wk


def cross_entropy_shard_stats(
    logits,
    target,
    *,
    num_classes,
    class_offset,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    softcap=None,
    num_threads=None,
):
    """Phase 1 on this rank: per-row statistics of its column shard.

    logits:      (..., shard_classes) float32 / bfloat16 / float16: the
                 columns [class_offset, class_offset + shard_classes) of the
                 (..., num_classes) logits.
    target:      (...) GLOBAL class indices. weight: the GLOBAL (num_classes,)
                 class weights, the same on every rank.
    Returns a 1-D float64 array (numpy, or a torch tensor for torch logits)
    of cross_entropy_shard_stats_doubles(rows, label_smoothing) elements to
    gather across ranks as it is (opaque bytes); pass the same target, weight,
    ignore_index, label_smoothing and softcap to cross_entropy_shard_finish.
    """
    x = matrix(logits, "logits")
    t = indices(target, "target", x.lead)
    op = L.cross_entropy_shard_stats_op
    a = op.args()
    wk = _common(a, x, t, num_classes, class_offset, weight, ignore_index, label_smoothing, softcap)
    out, a.stats = _stats_out(x.v.kind, x.rows, label_smoothing)
    a.num_threads = L.threads(num_threads)
    op(a)
    del wk
    return out


def cross_entropy_shard_finish(
    logits,
    target,
    stats,
    *,
    num_classes,
    class_offset,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    grad=None,
    grad_scale=1.0,
    row_scale=None,
    num_threads=None,
):
    """Phase 2 on this rank: xent.cross_entropy of the whole (...,
    num_classes) logits from every rank's statistics.

    stats:       float64, the ranks' cross_entropy_shard_stats in rank order
                 (the same on every rank): (num_shards, n) or flat.
    grad:        None, True (returns (loss, grad) with this shard's gradient in
                 the logits' dtype) or "inplace" (written over logits).
    Other arguments as xent.cross_entropy (weight: the global class weights;
    label smoothing uses num_classes). Every rank gets the same loss bits; with
    shards of 4096 * 2**k columns (the last shorter) the loss and gradient are
    xent.cross_entropy's bits.
    """
    inplace = isinstance(grad, str) and grad == "inplace"
    x = matrix(logits, "logits", output=inplace, allow_copy=not inplace)
    t = indices(target, "target", x.lead)
    s, shards = _stats_in(stats, x.rows, label_smoothing)
    op = L.cross_entropy_shard_finish_op
    a = op.args()
    wk = _common(a, x, t, num_classes, class_offset, weight, ignore_index, label_smoothing, softcap)
    a.row_scale, rk = f32_vector(row_scale, "row_scale", x.rows)
    red = L.REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if red is None or reduction == "batchmean":
        raise ValueError("reduction = %r is not one of 'none', 'mean', 'sum'" % (reduction,))
    a.reduction = red
    a.z_loss = float(z_loss)
    a.grad_scale = float(grad_scale)
    a.stats, a.num_shards = s.ctypes.data, shards
    loss = ctypes.c_float()
    a.loss = ctypes.addressof(loss)
    rl = None
    if red == L.REDUCTION_NONE:
        rl = np.empty(x.lead, np.float32)
        a.row_loss = rl.ctypes.data
    g = None
    if inplace:
        a.grad, a.grad_stride = x.ptr, x.stride
        g = logits
    elif grad is True:
        g = _arrays.empty("torch" if x.v.kind == "torch" else "numpy", x.shape, x.code)[0]  # huge pages when large
        gm = matrix(g, "grad", output=True)
        a.grad, a.grad_stride, a.grad_dtype = gm.ptr, gm.stride, gm.code
    elif grad is not None:
        raise ValueError("grad = %r: None, True or 'inplace'" % (grad,))
    a.num_threads = L.threads(num_threads)
    op(a)
    del wk, rk
    if rl is not None:
        value = _torch().from_numpy(rl) if x.v.kind == "torch" else rl
    else:
        value = scalar(x.v.kind, loss.value)
    return value if g is None else (value, g)


# ---------------------------------------------------------------------------
# Token log-probs (and entropy).


def _tok_common(a, x, t, num_classes, class_offset, temperature, softcap, ignore_index):
    a.batch, a.num_classes, a.shard_classes, a.class_offset = x.rows, int(num_classes), x.cols, int(class_offset)
    a.logits, a.logits_stride, a.logits_dtype = x.ptr, x.stride, x.code
    if t is not None:
        a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
    a.ignore_index = int(ignore_index)
    a.temperature = float(temperature)
    a.softcap = 0.0 if softcap is None else float(softcap)


def token_logprobs_shard_stats(
    logits,
    target=None,
    *,
    num_classes,
    class_offset,
    entropy=False,
    temperature=1.0,
    softcap=None,
    ignore_index=-100,
    num_threads=None,
):
    """Phase 1 of vocab-parallel token log-probs on this rank.

    logits:  (..., shard_classes) float32 / bfloat16 / float16, the columns
             [class_offset, class_offset + shard_classes) of the (...,
             num_classes) logits. target: (...) GLOBAL class indices, or
             None (entropy / lse only). entropy: include the entropy sums.
    Returns a 1-D float64 array (numpy, or a torch tensor for torch logits)
    of token_logprobs_shard_stats_doubles(rows, entropy) elements to gather
    across ranks as it is.
    """
    x = matrix(logits, "logits")
    t = None if target is None else indices(target, "target", x.lead)
    op = L.token_logprobs_shard_stats_op
    a = op.args()
    _tok_common(a, x, t, num_classes, class_offset, temperature, softcap, ignore_index)
    a.with_entropy = 1 if entropy else 0
    out, a.stats = _stats_out(x.v.kind, x.rows, 0.0, token_logprobs_shard_stats_doubles(x.rows, entropy))
    a.num_threads = L.threads(num_threads)
    op(a)
    return out


def token_logprobs_shard_finish(stats, target=None, *, rows, num_classes, entropy=False, ignore_index=-100):
    """Phase 2: xent.token_logprobs of the whole (rows, num_classes) logits
    from every rank's statistics (float64, rank order, (num_shards, n) or
    flat). Returns (logprob, entropy, lse), float32 (rows,) arrays (torch
    tensors when stats is one); logprob is None without target, entropy None
    unless entropy=True (the stats must have been computed with the same
    flag and targets). The same bits on every rank; xent.token_logprobs'
    bits for shards of 4096 * 2**k columns (the last shorter)."""
    rows = int(rows)
    n = token_logprobs_shard_stats_doubles(rows, entropy)
    s, shards = _stats_in(
        stats, rows, 0.0, n, "token_logprobs_shard_stats of %d rows (entropy = %s)" % (rows, bool(entropy))
    )
    t = None if target is None else indices(target, "target", (rows,))
    op = L.token_logprobs_shard_finish_op
    a = op.args()
    a.batch, a.num_classes = rows, int(num_classes)
    if t is not None:
        a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
    a.ignore_index = int(ignore_index)
    a.with_entropy = 1 if entropy else 0
    a.stats, a.num_shards = s.ctypes.data, shards
    out = np.empty((3, rows), np.float32)
    lp = out[0] if t is not None else None
    ent = out[1] if entropy else None
    lse = out[2]
    if rows:
        a.logprob = lp.ctypes.data if lp is not None else None
        a.entropy = ent.ctypes.data if ent is not None else None
        a.lse = lse.ctypes.data
        op(a)
    if is_torch(stats):
        torch = _torch()
        return tuple(None if v is None else torch.from_numpy(v) for v in (lp, ent, lse))
    return lp, ent, lse


def token_logprobs_shard_backward(
    logits,
    target,
    lse,
    *,
    num_classes,
    class_offset,
    grad_logprob=None,
    grad_entropy=None,
    entropy=None,
    temperature=1.0,
    softcap=None,
    ignore_index=-100,
    grad=True,
    num_threads=None,
):
    """This shard's columns of d(sum g_lp logprob + g_H entropy)/dlogits from
    finish's lse (and entropy, with grad_entropy): no communication. grad:
    True (a new array in the logits' dtype) or "inplace" (over logits).
    target: GLOBAL class indices (needed with grad_logprob)."""
    inplace = isinstance(grad, str) and grad == "inplace"
    if not inplace and grad is not True:
        raise ValueError("grad = %r: True or 'inplace'" % (grad,))
    x = matrix(logits, "logits", output=inplace, allow_copy=not inplace)
    t = None if target is None else indices(target, "target", x.lead)
    op = L.token_logprobs_shard_backward_op
    a = op.args()
    _tok_common(a, x, t, num_classes, class_offset, temperature, softcap, ignore_index)
    a.lse, k1 = f32_vector(lse, "lse", x.rows)
    a.entropy, k2 = f32_vector(entropy, "entropy", x.rows)
    a.grad_logprob, k3 = f32_vector(grad_logprob, "grad_logprob", x.rows)
    a.grad_entropy, k4 = f32_vector(grad_entropy, "grad_entropy", x.rows)
    if inplace:
        a.grad, a.grad_stride = x.ptr, x.stride
        g = logits
    else:
        g = _arrays.empty("torch" if x.v.kind == "torch" else "numpy", x.shape, x.code)[0]
        gm = matrix(g, "grad", output=True)
        a.grad, a.grad_stride, a.grad_dtype = gm.ptr, gm.stride, gm.code
    a.num_threads = L.threads(num_threads)
    op(a)
    del k1, k2, k3, k4
    return g


# ---------------------------------------------------------------------------
# Distillation KL between two logit batches sharded alike.


def kl_div_logits_shard_stats_doubles(rows):
    """The float64 elements of one rank's kl_div_logits_shard_stats."""
    n = L.lib.xent_kl_div_logits_shard_stats_doubles(int(rows))
    if n == 0:
        raise ValueError("rows = %d: the shard statistics' size overflows size_t" % rows)
    return n


def _kl_common(a, s, t, num_classes, class_offset, temperature):
    a.batch, a.num_classes, a.shard_classes, a.class_offset = s.rows, int(num_classes), s.cols, int(class_offset)
    a.input, a.input_stride, a.input_dtype = s.ptr, s.stride, s.code
    a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
    a.temperature = float(temperature)


def _kl_pair(student, teacher, grad=False):
    s = matrix(student, "student", output=grad == "inplace", allow_copy=grad != "inplace")
    t = matrix(teacher, "teacher")
    if tuple(t.shape) != tuple(s.shape):
        raise ValueError("teacher has shape %s; expected the student's %s" % (tuple(t.shape), tuple(s.shape)))
    return s, t


def kl_div_logits_shard_stats(student, teacher, *, num_classes, class_offset, temperature=1.0, num_threads=None):
    """Phase 1 of the vocab-parallel distillation KL on this rank: student and
    teacher are the same columns [class_offset, class_offset + width) of the
    (..., num_classes) logits of each model (same shape and dtype). Returns a
    1-D float64 array (a torch tensor for torch logits) of
    kl_div_logits_shard_stats_doubles(rows) elements to gather as it is."""
    s, t = _kl_pair(student, teacher)
    op = L.kl_div_logits_shard_stats_op
    a = op.args()
    _kl_common(a, s, t, num_classes, class_offset, temperature)
    out, a.stats = _stats_out(s.v.kind, s.rows, 0.0, kl_div_logits_shard_stats_doubles(s.rows))
    a.num_threads = L.threads(num_threads)
    op(a)
    return out


def kl_div_logits_shard_finish(
    student,
    teacher,
    stats,
    *,
    num_classes,
    class_offset,
    temperature=1.0,
    reduction="batchmean",
    t2_scaling=False,
    labels=None,
    ignore_index=-100,
    grad=None,
    grad_scale=1.0,
    num_threads=None,
):
    """Phase 2: xent.kl_div_logits of the whole logits from every rank's
    statistics (float64, rank order). grad: None, True (returns (loss, grad),
    this student shard's gradient in its dtype) or "inplace" (over student).
    The same loss bits on every rank; within xent.kl_div_logits' accuracy
    contract (not bit for bit: each shard's KL is taken against its own lse)."""
    inplace = isinstance(grad, str) and grad == "inplace"
    s, t = _kl_pair(student, teacher, "inplace" if inplace else False)
    rows = s.rows
    st, shards = _stats_in(
        stats, rows, 0.0, kl_div_logits_shard_stats_doubles(rows), "kl_div_logits_shard_stats of %d rows" % rows
    )
    op = L.kl_div_logits_shard_finish_op
    a = op.args()
    _kl_common(a, s, t, num_classes, class_offset, temperature)
    red = L.REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if red is None:
        raise ValueError("reduction = %r is not one of 'none', 'mean', 'sum', 'batchmean'" % (reduction,))
    a.reduction = red
    a.t2_scaling = 1 if t2_scaling else 0
    a.grad_scale = float(grad_scale)
    lv = None
    if labels is not None:
        lv = indices(labels, "labels", s.lead)
        a.labels, a.labels_stride, a.labels_dtype = lv.ptr, lv.stride, lv.code
    a.ignore_index = int(ignore_index)
    a.stats, a.num_shards = st.ctypes.data, shards
    loss = ctypes.c_float()
    a.loss = ctypes.addressof(loss)
    rl = None
    if red == L.REDUCTION_NONE:
        rl = np.empty(s.lead, np.float32)
        a.row_loss = rl.ctypes.data
    g = None
    if inplace:
        a.grad_input, a.grad_input_stride = s.ptr, s.stride
        g = student
    elif grad is True:
        g = _arrays.empty("torch" if s.v.kind == "torch" else "numpy", s.shape, s.code)[0]
        gm = matrix(g, "grad", output=True)
        a.grad_input, a.grad_input_stride, a.grad_input_dtype = gm.ptr, gm.stride, gm.code
    elif grad is not None:
        raise ValueError("grad = %r: None, True or 'inplace'" % (grad,))
    a.num_threads = L.threads(num_threads)
    op(a)
    del lv
    if rl is not None:
        value = _torch().from_numpy(rl) if s.v.kind == "torch" else rl
    else:
        value = scalar(s.v.kind, loss.value)
    return value if g is None else (value, g)
