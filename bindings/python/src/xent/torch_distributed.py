"""xent.torch.distributed: vocab-parallel cross-entropy, token log-probs
(with entropy) and distillation KL over a torch.distributed process group
(the LM head's classes split into column shards, one per rank).

    import xent.torch
    loss = xent.torch.distributed.vocab_parallel_cross_entropy(logits_shard, target, group=tp_group)
    loss.backward()

Each rank holds all rows of its columns; rank r (its rank in ``group``) holds
the classes [class_offset_r, class_offset_r + width_r), the ranks tiling
[0, V) in rank order. The forward runs phase 1 (xent_cross_entropy_shard_stats:
a few float64 per row), gathers every rank's statistics with one all-gather
(plus a small all-gather of the shard widths first unless the caller gives
class_offset and num_classes), and runs phase 2 (xent_cross_entropy_shard_finish), which gives the loss and
this shard's gradient in the same call, the gradient kept for backward as in
xent.torch.cross_entropy (handed to autograd, scaled by the upstream gradient
unless it is 1). The loss has the same bits on every rank. Nothing is
communicated in backward.
"""

from __future__ import annotations

import struct
import zlib

import torch as _torch

from . import _api, _vocab_parallel
from ._lib import XentTypeError, XentValueError
from .torch import _bump_version, _Handoff, _needs_graph, _no_double_backward, _scale_, _second_backward_inplace

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_token_logprobs", "vocab_parallel_kl_div_logits"]

# Each rank's block of the stats all-gather ends with this many float64:
# [status, rows, class_offset, width, num_classes, target checksum, options
# checksum, message length, message bytes packed 6 to a float64 ...]. Every
# rank reads every rank's trailer before phase 2 and raises the same error
# when one is bad, so a rank's bad input never leaves the others waiting.
_MSG_DOUBLES = 16  # 96 bytes of the failing rank's error message
_TRAILER = 8 + _MSG_DOUBLES
_OK, _VALUE_ERROR, _TYPE_ERROR, _OTHER_ERROR = 0, 1, 2, 3
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def _dist():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "xent.torch.distributed: torch.distributed is not initialized (call "
            "torch.distributed.init_process_group first)"
        )
    return dist


def _all_gather(dist, t, group, world):
    """(world, n) tensor of every rank's (n,) tensor ``t``, in group rank
    order: all_gather_into_tensor where the backend has it (NCCL; torch >= 1.13),
    else all_gather into views of the result (gloo, whose ProcessGroup lacks
    the single-tensor form in older torch)."""
    out = t.new_empty((world, t.numel()))
    if world == 1:
        out[0].copy_(t)
        return out
    fn = getattr(dist, "all_gather_into_tensor", None)
    if fn is not None and dist.get_backend(group) != "gloo":
        fn(out, t, group=group)
    else:
        dist.all_gather(list(out.unbind(0)), t, group=group)
    return out


def _smoothing(kw):
    """1.0 when label smoothing is on (the statistics are then twice as
    large: the ranks must agree on it before they gather them), else 0.0."""
    try:
        return 1.0 if float(kw["label_smoothing"]) != 0.0 else 0.0
    except (TypeError, ValueError):  # rejected by phase 1, reported to every rank
        return 0.0


def _block_doubles(rows, smoothing):
    """float64 elements of one rank's statistics: 16 bytes per row (32 with
    label smoothing) and a 32-byte header (xent_cross_entropy_shard_stats_doubles)."""
    return _vocab_parallel.cross_entropy_shard_stats_doubles(rows, smoothing)


def _status_of(e):
    if isinstance(e, (TypeError, XentTypeError)):
        return _TYPE_ERROR
    if isinstance(e, (ValueError, XentValueError)):
        return _VALUE_ERROR
    return _OTHER_ERROR


def _pack_msg(msg):
    b = msg.encode("utf-8", "replace")[: 6 * _MSG_DOUBLES]
    vals = []
    for i in range(0, len(b), 6):
        vals.append(float(int.from_bytes(b[i : i + 6].ljust(6, b"\0"), "little")))  # < 2**48: exact in float64
    return len(b), vals


def _unpack_msg(row):
    n = int(row[7])
    b = b"".join(int(v).to_bytes(6, "little") for v in row[8 : 8 + (n + 5) // 6].tolist())
    return b[:n].decode("utf-8", "replace")


def _checksum(t):
    """An order-dependent O(B) digest of the targets, exact in float64, so a
    rank with other targets than rank 0 is reported instead of giving a
    wrong loss."""
    if t.numel() == 0:
        return 0.0
    t = t.reshape(-1).to(_torch.int64)
    k = _torch.arange(1, t.numel() + 1, dtype=_torch.int64) % 65521
    return float(int(((t % 1000003) * k).sum()) % (1 << 50))


def _options_digest(kw, loss_kw):
    softcap = kw["softcap"]
    packed = struct.pack(
        "<qddqd",
        int(kw["ignore_index"]),
        float(kw["label_smoothing"]),
        0.0 if softcap is None else float(softcap),
        _REDUCTIONS[loss_kw["reduction"]],
        float(loss_kw["z_loss"]),
    )
    return float(zlib.crc32(packed))


def _raise(rows, rank, world, what):
    """The error of the lowest failing rank, raised on every rank."""
    for r in range(world):
        st = int(rows[r, 0])
        if st == _OK:
            continue
        msg = _unpack_msg(rows[r])
        cls = {_VALUE_ERROR: ValueError, _TYPE_ERROR: TypeError}.get(st, RuntimeError)
        who = "this rank" if r == rank else "rank %d" % r
        raise cls("xent.torch.distributed.%s: %s of %d rejected its input: %s" % (what, who, world, msg))


class _VocabParallelCEFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, opts):
        group, num_classes, class_offset, kw, loss_kw, inplace, needs_grad = opts
        x, t = logits, target
        loss, grad, stats = _forward(x, t, weight, group, num_classes, class_offset, kw, loss_kw, inplace, needs_grad)
        if needs_grad:
            if inplace:
                _bump_version(logits)
                grad = grad.detach()
            else:
                ctx.save_for_backward(logits)
                ctx.target, ctx.stats = target, stats
                ctx.kw = dict(kw, **loss_kw, weight=weight, num_classes=num_classes[0], class_offset=class_offset[0])
            ctx.handoff = _Handoff(grad)
            ctx.inplace = inplace
            ctx.rows = loss_kw["reduction"] == "none"
        return loss

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("distributed.vocab_parallel_cross_entropy")
        h = ctx.handoff
        if not h.taken:
            (grad,) = h.take()
        elif ctx.inplace:
            raise _second_backward_inplace("distributed.vocab_parallel_cross_entropy")
        else:  # a second backward (retain_graph=True): phase 2 again from the saved stats, no communication
            (logits,) = ctx.saved_tensors
            grad = _vocab_parallel.cross_entropy_shard_finish(logits, ctx.target, ctx.stats, grad=True, **ctx.kw)[1]
        return _scale_(grad, g, ctx.rows), None, None, None


class _Stats:
    """What the gather needs to know of an operation's phase 1: its name, the
    flag that changes the statistics' size (label smoothing on, entropy
    wanted: the ranks must agree on it before the gather) and what its off
    state reads as ("label_smoothing is 0"), their
    size per rank, a digest of the options every rank must share (called
    after phase 1 succeeded), the options' names for the message, and phase
    1 itself (``run(V, class_offset)``, raising on bad input)."""

    def __init__(self, what, flag, flag_name, doubles, digest, options, run):
        self.what, self.flag, self.flag_name, self.doubles = what, flag, flag_name, doubles
        self.digest, self.options, self.run = digest, options, run


def _gather_stats(x, t, group, num_classes, class_offset, op, err=None, shape=None):
    """Phase 1 and the collective(s): every rank's statistics, gathered in
    rank order ((world, n) float64), with V and this rank's class_offset.
    num_classes / class_offset are one-element lists, filled in here when the
    caller gave None. ``err``: this rank's input was already found bad
    (``shape``: its (rows, width) as far as known): it takes part in the
    collectives and raises with the others."""
    dist = _dist()
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    what = op.what
    B, width = (x.shape[0], x.shape[1]) if err is None else shape
    if err is None and x.dtype not in (_torch.float32, _torch.bfloat16, _torch.float16):
        err = TypeError("logits_shard has dtype %s; xent takes float32, bfloat16 or float16" % x.dtype)
    if num_classes[0] is None or class_offset[0] is None:
        # The widths are not known: a small all-gather of (status, rows, width,
        # flag) first. A rank whose input is already known to be bad reports it here.
        head = _torch.zeros(4, dtype=_torch.int64)
        head[1], head[2], head[3] = B, width, int(op.flag)
        if err is not None:
            head[0] = _status_of(err)
        heads = _all_gather(dist, head, group, world)
        if bool((heads[:, 0] != 0).any()):
            bad = int((heads[:, 0] != 0).nonzero()[0])
            if bad == rank:
                raise err
            raise {1: ValueError, 2: TypeError}.get(int(heads[bad, 0]), RuntimeError)(
                "xent.torch.distributed.%s: rank %d of %d rejected its input (see its error)" % (what, bad, world)
            )
        if bool((heads[:, 1] != heads[0, 1]).any()):
            raise ValueError(
                "xent.torch.distributed.%s: the ranks' logits shards have different row counts %s"
                % (what, heads[:, 1].tolist())
            )
        if bool((heads[:, 3] != heads[0, 3]).any()):
            raise ValueError(
                "xent.torch.distributed.%s: %s on some ranks and not on others %s: every rank "
                "must pass the same" % (what, op.flag_name, heads[:, 3].tolist())
            )
        widths = heads[:, 2].tolist()
        if num_classes[0] is None:
            num_classes[0] = sum(widths)
        if class_offset[0] is None:
            class_offset[0] = sum(widths[:rank])
    V, off = int(num_classes[0]), int(class_offset[0])

    stats = None
    try:
        if err is not None:
            raise err
        stats = op.run(V, off)
    except Exception as e:  # reported to every rank through the gather below
        err = e
    # Every rank's block has the same size when the row counts agree (checked
    # by the first all-gather when the widths were gathered; with explicit
    # offsets the caller promises it).
    n = op.doubles(B)
    block = _torch.zeros(n + _TRAILER, dtype=_torch.float64)
    if stats is not None:
        block[: stats.numel()] = stats.reshape(-1)
    tr = block[n:]
    tr[1], tr[2], tr[3], tr[4] = B, off, width, V
    if err is None:
        tr[5], tr[6] = _checksum(t) if t is not None else -1.0, op.digest()
    else:
        tr[0] = _status_of(err)
        ln, vals = _pack_msg(str(err))
        tr[7] = ln
        if vals:
            tr[8 : 8 + len(vals)] = _torch.tensor(vals, dtype=_torch.float64)
    gathered = _all_gather(dist, block, group, world)
    rows = gathered[:, n:]
    # From here on every rank decides from the same gathered bytes.
    if err is not None:
        raise err
    _raise(rows, rank, world, what)
    if bool((rows[:, 1] != rows[0, 1]).any()) or bool((rows[:, 4] != rows[0, 4]).any()):
        raise ValueError(
            "xent.torch.distributed.%s: the ranks disagree on the rows %s or num_classes %s"
            % (what, rows[:, 1].long().tolist(), rows[:, 4].long().tolist())
        )
    if bool((rows[:, 5] != rows[0, 5]).any()) or bool((rows[:, 6] != rows[0, 6]).any()):
        raise ValueError(
            "xent.torch.distributed.%s: the ranks were given different targets or options (%s): every rank "
            "must pass the same" % (what, op.options)
        )
    ends = (rows[:, 2] + rows[:, 3]).long().tolist()
    starts = rows[:, 2].long().tolist()
    if starts[0] != 0 or ends[-1] != V or any(starts[r + 1] != ends[r] for r in range(world - 1)):
        raise ValueError(
            "xent.torch.distributed.%s: the shards [class_offset, class_offset + width) %s do not tile [0, %d) "
            "in rank order" % (what, list(zip(starts, ends)), V)
        )
    return gathered[:, : stats.numel()], V, off


def _forward(x, t, weight, group, num_classes, class_offset, kw, loss_kw, inplace, needs_grad, err=None, shape=None):
    """Cross-entropy: the statistics' gather, then phase 2."""
    B = x.shape[0] if err is None else shape[0]

    def run(V, off):
        if weight is not None and tuple(weight.shape) != (V,):
            raise ValueError("weight has shape %s; expected the global (%d,) class weights" % (tuple(weight.shape), V))
        if B == 0:  # no rows, no statistics (an empty tensor's storage is a NULL pointer to the C call)
            if tuple(t.shape) != (0,):
                raise ValueError("target has shape %s; expected (0,) for an empty logits_shard" % (tuple(t.shape),))
            return _torch.zeros(0, dtype=_torch.float64)
        return _vocab_parallel.cross_entropy_shard_stats(x, t, num_classes=V, class_offset=off, weight=weight, **kw)

    op = _Stats(
        "vocab_parallel_cross_entropy",
        _smoothing(kw),
        "label_smoothing is 0",
        lambda rows: _block_doubles(rows, _smoothing(kw)),
        lambda: _options_digest(kw, loss_kw),
        "ignore_index, label_smoothing, softcap, reduction",
        run,
    )
    all_stats, V, off = _gather_stats(x, t, group, num_classes, class_offset, op, err, shape)
    grad = None
    if B == 0:  # xent.torch.cross_entropy of an empty batch (mean: nan, sum: 0, none: empty)
        loss = _api.cross_entropy(x.new_empty((0, V)), t, weight=weight, **kw, **loss_kw)
        if needs_grad:
            grad = x if inplace else _torch.empty_like(x)
    elif needs_grad:
        loss, grad = _vocab_parallel.cross_entropy_shard_finish(
            x,
            t,
            all_stats,
            num_classes=V,
            class_offset=off,
            weight=weight,
            grad="inplace" if inplace else True,
            **kw,
            **loss_kw,
        )
    else:
        loss = _vocab_parallel.cross_entropy_shard_finish(
            x, t, all_stats, num_classes=V, class_offset=off, weight=weight, **kw, **loss_kw
        )
    if loss.dtype != x.dtype:
        loss = loss.to(x.dtype)
    return loss, grad, all_stats


def _check_args(logits, target, reduction, inplace_backward):
    """What is wrong with this rank's arguments before phase 1, or None."""
    if not isinstance(logits, _torch.Tensor) or not isinstance(target, _torch.Tensor):
        return TypeError("logits_shard and target must be torch tensors")
    if target.is_floating_point():
        return TypeError("target must hold class indices (an integer tensor), got %s" % target.dtype)
    if logits.dim() == 0:
        return ValueError("logits_shard must have a class axis")
    if not logits.is_cpu:
        return ValueError("logits_shard is on device '%s'; xent runs on CPU tensors" % logits.device)
    if reduction not in _REDUCTIONS:
        return ValueError("reduction = %r is not one of 'none', 'mean', 'sum'" % (reduction,))
    if inplace_backward and logits.dim() != 2:
        return ValueError("inplace_backward needs a 2-D (N, width) logits_shard")
    return None


def vocab_parallel_cross_entropy(
    logits_shard,
    target,
    *,
    group=None,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    inplace_backward=False,
    class_offset=None,
    num_classes=None,
    num_threads=None,
):
    """Cross-entropy of the (N, V) logits whose columns are split over the
    ranks of ``group`` (default: the default process group), from this
    rank's (N, width) shard; xent.torch.cross_entropy's result on the
    concatenated logits (class-index targets).

    logits_shard: (N, width) or (..., width), classes on the LAST axis
                  (Megatron's layout), float32 / bfloat16 / float16, CPU.
    target:       (N,) or (...) GLOBAL class indices in [0, V) or
                  ignore_index, the same on every rank.
    weight:       the global (V,) class weights, the same on every rank.
    reduction:    'mean' (over the weight of the non-ignored rows, as torch),
                  'sum' or 'none' ((...) per-row losses). The loss is the
                  same (bits) on every rank.
    label_smoothing, z_loss, softcap, inplace_backward, num_threads: as
                  xent.torch.cross_entropy.
    class_offset, num_classes: this shard's first class and V. When both are
                  given, the forward makes one all-gather (the statistics);
                  when either is None, they come from the ranks' widths in
                  rank order (rank r starts where rank r - 1 ends) with one
                  more small all-gather of the widths before it.

    Bit-identical to xent.torch.cross_entropy on the whole logits when every
    shard but the last is 4096 * 2**k wide (see xent.h); other splits agree
    within its accuracy contract.

    Errors: a rank whose input is bad (dtype, shape, target out of range,
    weight shape, a class range that does not tile [0, V), targets or options
    that differ from rank 0's) still takes part in the all-gather(s), and
    then every rank raises: the failing rank its own error, the others a
    ValueError / TypeError naming the lowest failing rank and quoting its
    message (up to 96 bytes); the process group stays usable. Row counts: a
    collective needs the same byte count from every rank, so when the widths
    are gathered the first all-gather (4 int64 per rank) also compares the
    row counts and whether label smoothing is on (which doubles the
    statistics), and every rank raises on a mismatch; with explicit
    class_offset and num_classes nothing is exchanged before the statistics,
    and a rank with another N, or with label_smoothing = 0 where the others'
    is not, makes the statistics' all-gather fail in the backend (gloo aborts
    a process: "op.preamble.length <= op.nbytes") — leave them None unless
    both are the same everywhere by construction. Every rank must make the same calls in the same order, as
    for any collective.
    """
    kw = dict(ignore_index=ignore_index, label_smoothing=label_smoothing, softcap=softcap, num_threads=num_threads)
    loss_kw = dict(reduction=reduction, z_loss=z_loss)
    err = _check_args(logits_shard, target, reduction, inplace_backward)
    if err is not None:  # raised on every rank, after the collectives the others are in
        shape = (0, 0)
        if isinstance(logits_shard, _torch.Tensor) and logits_shard.dim() > 0:
            shape = (logits_shard.numel() // max(logits_shard.shape[-1], 1), logits_shard.shape[-1])
        _forward(None, None, None, group, [num_classes], [class_offset], kw, loss_kw, False, False, err, shape)
    lead = tuple(logits_shard.shape[:-1])
    width = logits_shard.shape[-1]
    x = logits_shard.reshape(-1, width) if logits_shard.dim() != 2 else logits_shard
    # A target of another shape goes on as it is: phase 1 rejects it and
    # every rank hears of it in the all-gather.
    t = target.reshape(-1) if tuple(target.shape) == lead else target
    needs_grad = _needs_graph(logits_shard)
    opts = (group, [num_classes], [class_offset], kw, loss_kw, bool(inplace_backward), needs_grad)
    if needs_grad:
        loss = _VocabParallelCEFn.apply(x, t, weight, opts)
    else:
        loss = _forward(x, t, weight, group, [num_classes], [class_offset], kw, loss_kw, False, False)[0]
    if reduction == "none" and len(lead) != 1:
        loss = loss.reshape(lead)
    return loss


# ---------------------------------------------------------------------------
# Token log-probs and entropy (RL, evaluation).


def _tok_digest(kw):
    softcap = kw["softcap"]
    packed = struct.pack(
        "<qdd", int(kw["ignore_index"]), float(kw["temperature"]), 0.0 if softcap is None else float(softcap)
    )
    return float(zlib.crc32(packed))


def _tok_forward(x, t, group, num_classes, class_offset, kw, entropy, err=None, shape=None):
    """Token log-probs: the statistics' gather, then phase 2 (the same on
    every rank). Returns (logprob, entropy or None, lse, V, class_offset)."""
    B = x.shape[0] if err is None else shape[0]

    def run(V, off):
        if B == 0:
            if t is not None and tuple(t.shape) != (0,):
                raise ValueError("target has shape %s; expected (0,) for an empty logits_shard" % (tuple(t.shape),))
            return _torch.zeros(0, dtype=_torch.float64)
        return _vocab_parallel.token_logprobs_shard_stats(x, t, num_classes=V, class_offset=off, entropy=entropy, **kw)

    op = _Stats(
        "vocab_parallel_token_logprobs",
        1.0 if entropy else 0.0,
        "entropy is False",
        lambda rows: _vocab_parallel.token_logprobs_shard_stats_doubles(rows, entropy),
        lambda: _tok_digest(kw),
        "ignore_index, temperature, softcap",
        run,
    )
    all_stats, V, off = _gather_stats(x, t, group, num_classes, class_offset, op, err, shape)
    if B == 0:
        empty = _torch.zeros(0, dtype=_torch.float32)
        return empty, (empty if entropy else None), empty, V, off
    lp, ent, lse = _vocab_parallel.token_logprobs_shard_finish(
        all_stats, t, rows=B, num_classes=V, entropy=entropy, ignore_index=kw["ignore_index"]
    )
    return lp, ent, lse, V, off


class _VocabParallelTokenFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, opts):
        group, num_classes, class_offset, kw, entropy = opts
        lp, ent, lse, V, off = _tok_forward(logits, target, group, num_classes, class_offset, kw, entropy)
        ctx.save_for_backward(logits, target, lse, ent if ent is not None else lse)
        ctx.V, ctx.off, ctx.kw, ctx.entropy = V, off, kw, entropy
        return lp, (ent if ent is not None else lse.new_zeros(lse.shape))

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        _no_double_backward("distributed.vocab_parallel_token_logprobs")
        logits, target, lse, ent = ctx.saved_tensors
        if logits.shape[0] == 0:
            return _torch.zeros_like(logits), None, None
        has_lp = g_lp is not None and bool((g_lp != 0).any())
        has_h = ctx.entropy and g_ent is not None and bool((g_ent != 0).any())
        kw = dict(ctx.kw)
        grad = _vocab_parallel.token_logprobs_shard_backward(
            logits,
            target,
            lse,
            num_classes=ctx.V,
            class_offset=ctx.off,
            grad_logprob=g_lp.float() if has_lp else None,
            grad_entropy=g_ent.float() if has_h else None,
            entropy=ent if has_h else None,
            **kw,
        )
        return grad, None, None


def vocab_parallel_token_logprobs(
    logits_shard,
    target,
    *,
    group=None,
    entropy=False,
    temperature=1.0,
    softcap=None,
    ignore_index=-100,
    class_offset=None,
    num_classes=None,
    num_threads=None,
):
    """log softmax(z)[target] per row of the (N, V) logits whose columns are
    split over the ranks of ``group``, from this rank's (N, width) shard (z =
    softcap(logits) / temperature), differentiable; with entropy=True also the
    entropy of softmax(z) (differentiable too): xent.torch.token_logprobs on
    the concatenated logits. The PPO / GRPO policy-gradient and entropy-bonus
    statistics of a tensor-parallel LM head.

    logits_shard: (N, width) or (..., width), classes on the last axis,
                  float32 / bfloat16 / float16, CPU.
    target:       (N,) or (...) GLOBAL class indices or ignore_index (log-prob
                  0), the same on every rank.
    class_offset, num_classes: as in vocab_parallel_cross_entropy (None: from
                  the ranks' widths, one more small all-gather).

    One all-gather of 16 bytes per row and rank (24 with entropy) in the
    forward, nothing in backward (each rank's gradient needs only the merged
    lse and entropy, which every rank holds). The results have the same bits
    on every rank, and xent.torch.token_logprobs' bits when every shard but
    the last is 4096 * 2**k wide. Errors as vocab_parallel_cross_entropy:
    every rank raises, naming the lowest failing rank.
    """
    kw = dict(temperature=temperature, softcap=softcap, ignore_index=ignore_index, num_threads=num_threads)
    err = _check_args(logits_shard, target, "mean", False)
    if err is not None:
        shape = (0, 0)
        if isinstance(logits_shard, _torch.Tensor) and logits_shard.dim() > 0:
            shape = (logits_shard.numel() // max(logits_shard.shape[-1], 1), logits_shard.shape[-1])
        _tok_forward(None, None, group, [num_classes], [class_offset], kw, bool(entropy), err, shape)
    lead = tuple(logits_shard.shape[:-1])
    width = logits_shard.shape[-1]
    x = logits_shard.reshape(-1, width) if logits_shard.dim() != 2 else logits_shard
    t = target.reshape(-1) if tuple(target.shape) == lead else target
    opts = (group, [num_classes], [class_offset], kw, bool(entropy))
    if _needs_graph(logits_shard):
        lp, ent = _VocabParallelTokenFn.apply(x, t, opts)
    else:
        lp, ent, _, _, _ = _tok_forward(x, t, group, [num_classes], [class_offset], kw, bool(entropy))
    lp = lp.reshape(lead)  # float32 whatever the logits' dtype, as xent.torch.token_logprobs
    if entropy:
        return lp, ent.reshape(lead)
    return lp


# ---------------------------------------------------------------------------
# Distillation KL between a student's and a teacher's logits sharded alike.


def _kl_digest(kw, labels_sum):
    packed = struct.pack(
        "<dqqdd",
        float(kw["temperature"]),
        _REDUCTIONS_KL[kw["reduction"]],
        int(bool(kw["t2_scaling"])),
        float(kw["ignore_index"]),
        labels_sum,
    )
    return float(zlib.crc32(packed))


_REDUCTIONS_KL = {"none": 0, "mean": 1, "sum": 2, "batchmean": 3}


def _kl_forward(s, t, labels, group, num_classes, class_offset, kw, needs_grad, err=None, shape=None):
    """Distillation KL: the statistics' gather, then phase 2 (with this
    shard's gradient when needs_grad). Returns (loss, grad, stats, V, off)."""
    B = s.shape[0] if err is None else shape[0]
    T, nt = kw["temperature"], kw["num_threads"]

    def run(V, off):
        if tuple(t.shape) != tuple(s.shape):
            raise ValueError("teacher_shard has shape %s; expected the student's %s" % (tuple(t.shape), tuple(s.shape)))
        if t.dtype != s.dtype:
            raise TypeError("teacher_shard has dtype %s; expected the student's %s" % (t.dtype, s.dtype))
        if B == 0:
            return _torch.zeros(0, dtype=_torch.float64)
        return _vocab_parallel.kl_div_logits_shard_stats(
            s, t, num_classes=V, class_offset=off, temperature=T, num_threads=nt
        )

    op = _Stats(
        "vocab_parallel_kl_div_logits",
        0.0,
        "",
        lambda rows: _vocab_parallel.kl_div_logits_shard_stats_doubles(rows),
        lambda: _kl_digest(kw, -1.0 if labels is None else _checksum(labels)),
        "temperature, reduction, t2_scaling, labels, ignore_index",
        run,
    )
    all_stats, V, off = _gather_stats(s, None, group, num_classes, class_offset, op, err, shape)
    fkw = dict(kw, labels=labels)
    grad = None
    if B == 0:
        loss = _api.kl_div_logits(s.new_empty((0, V)), s.new_empty((0, V)), **fkw)
        if needs_grad:
            grad = _torch.empty_like(s)
    elif needs_grad:
        loss, grad = _vocab_parallel.kl_div_logits_shard_finish(
            s, t, all_stats, num_classes=V, class_offset=off, grad=True, **fkw
        )
    else:
        loss = _vocab_parallel.kl_div_logits_shard_finish(s, t, all_stats, num_classes=V, class_offset=off, **fkw)
    if loss.dtype != s.dtype:
        loss = loss.to(s.dtype)
    return loss, grad, all_stats, V, off


class _VocabParallelKlFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, labels, opts):
        group, num_classes, class_offset, kw = opts
        loss, grad, stats, V, off = _kl_forward(student, teacher, labels, group, num_classes, class_offset, kw, True)
        ctx.save_for_backward(student, teacher)
        ctx.labels, ctx.stats, ctx.V, ctx.off, ctx.kw = labels, stats, V, off, kw
        ctx.handoff = _Handoff(grad)
        ctx.rows = kw["reduction"] == "none"
        return loss

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("distributed.vocab_parallel_kl_div_logits")
        h = ctx.handoff
        if not h.taken:
            (grad,) = h.take()
        else:  # a second backward (retain_graph=True): phase 2 again from the saved stats, no communication
            student, teacher = ctx.saved_tensors
            grad = _vocab_parallel.kl_div_logits_shard_finish(
                student,
                teacher,
                ctx.stats,
                num_classes=ctx.V,
                class_offset=ctx.off,
                grad=True,
                labels=ctx.labels,
                **ctx.kw,
            )[1]
        return _scale_(grad, g, ctx.rows), None, None, None


def vocab_parallel_kl_div_logits(
    student_shard,
    teacher_shard,
    *,
    group=None,
    temperature=1.0,
    reduction="batchmean",
    t2_scaling=False,
    labels=None,
    ignore_index=-100,
    class_offset=None,
    num_classes=None,
    num_threads=None,
):
    """Distillation KL(softmax(teacher / T) || softmax(student / T)) of the
    (N, V) logits of two models whose columns are split over the ranks of
    ``group`` alike (rank r holds the same columns of both), from this rank's
    (N, width) shards: xent.torch.kl_div_logits on the concatenated logits,
    differentiable in the student (the teacher is a constant: a teacher
    shard that requires grad is an error).

    reduction, t2_scaling, labels / ignore_index (a row mask), temperature:
    as xent.torch.kl_div_logits. class_offset, num_classes: as in
    vocab_parallel_cross_entropy.

    One all-gather of 32 bytes per row and rank in the forward, which also
    writes this shard's gradient (one more read of both shards); nothing is
    communicated in backward. The loss has the same bits on every rank and
    agrees with xent.torch.kl_div_logits within its accuracy contract for any
    split (each shard's KL is taken against its own lse, then merged exactly:
    not bit for bit). Errors as vocab_parallel_cross_entropy.
    """
    kw = dict(
        temperature=temperature,
        reduction=reduction,
        t2_scaling=t2_scaling,
        ignore_index=ignore_index,
        num_threads=num_threads,
    )
    err = None
    if not isinstance(student_shard, _torch.Tensor) or not isinstance(teacher_shard, _torch.Tensor):
        err = TypeError("student_shard and teacher_shard must be torch tensors")
    elif student_shard.dim() == 0:
        err = ValueError("student_shard must have a class axis")
    elif not student_shard.is_cpu or not teacher_shard.is_cpu:
        err = ValueError("student_shard and teacher_shard must be CPU tensors")
    elif reduction not in _REDUCTIONS_KL:
        err = ValueError("reduction = %r is not one of 'none', 'mean', 'sum', 'batchmean'" % (reduction,))
    elif teacher_shard.requires_grad and _torch.is_grad_enabled():
        err = ValueError(
            "teacher_shard requires grad: the vocab-parallel KL differentiates the student only (detach the "
            "teacher's logits, or compute them under torch.no_grad())"
        )
    elif labels is not None and (not isinstance(labels, _torch.Tensor) or labels.is_floating_point()):
        err = TypeError("labels must be an integer tensor (the row mask)")
    if err is not None:  # raised on every rank, after the collectives the others are in
        shape = (0, 0)
        if isinstance(student_shard, _torch.Tensor) and student_shard.dim() > 0:
            shape = (student_shard.numel() // max(student_shard.shape[-1], 1), student_shard.shape[-1])
        _kl_forward(None, None, None, group, [num_classes], [class_offset], kw, False, err, shape)
    lead = tuple(student_shard.shape[:-1])
    width = student_shard.shape[-1]
    s = student_shard.reshape(-1, width) if student_shard.dim() != 2 else student_shard
    t = teacher_shard.reshape(-1, teacher_shard.shape[-1]) if teacher_shard.dim() != 2 else teacher_shard
    lab = None if labels is None else (labels.reshape(-1) if tuple(labels.shape) == lead else labels)
    opts = (group, [num_classes], [class_offset], kw)
    if _needs_graph(student_shard):
        loss = _VocabParallelKlFn.apply(s, t.detach(), lab, opts)
    else:
        loss = _kl_forward(s, t, lab, group, [num_classes], [class_offset], kw, False)[0]
    if reduction == "none" and len(lead) != 1:
        loss = loss.reshape(lead)
    return loss
