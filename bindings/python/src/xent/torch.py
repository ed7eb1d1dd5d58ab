"""torch autograd drop-ins for torch.nn.functional, backed by libxent.

    import xent.torch as xF
    loss = xF.cross_entropy(logits, target)        # was F.cross_entropy(...)
    loss.backward()

Same signatures, defaults, shapes and dtypes as torch.nn.functional (plus
keyword-only extras). Each forward computes the loss AND the gradient in one
kernel call (when the input requires grad and grad mode is on); backward only
scales that gradient by the upstream gradient (and returns it untouched when
the upstream gradient is 1, as for ``loss.backward()`` on a reduced loss).

Supported: CPU tensors of dtype float32, bfloat16 or float16 (other dtypes
raise TypeError, other devices ValueError). Class dimension: as torch (dim 1
for cross_entropy on >= 2-D inputs; layouts where the class axis is not the
contiguous last axis are copied once).
"""
from __future__ import annotations

import torch as _torch

from . import _api

__all__ = [
    "cross_entropy", "kl_div", "binary_cross_entropy_with_logits", "log_softmax", "softmax", "kl_div_logits", "jsd",
    "token_logprobs", "CrossEntropyLoss", "KLDivLoss", "BCEWithLogitsLoss", "JSDLoss",
]


def _legacy_reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        from torch.nn import _reduction
        return _reduction.legacy_get_string(size_average, reduce)
    return reduction


def _check_float(t, name):
    if not isinstance(t, _torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.dtype not in (_torch.float32, _torch.bfloat16, _torch.float16):
        raise TypeError("%s has dtype %s; xent.torch takes float32, bfloat16 or float16 (use .float())"
                        % (name, t.dtype))
    if t.device.type != "cpu":
        raise ValueError("%s is on device '%s'; xent runs on CPU tensors" % (name, t.device))


def _is_one(g):
    return g.numel() == 1 and bool(g == 1)


def _scale_reduced(grad, g):
    """grad * g for a scalar upstream gradient g (no pass when g == 1)."""
    if grad is None:
        return None
    if _is_one(g):
        return grad
    return grad * g.to(grad.dtype)


def _scale_rows(grad, g):
    """grad (rows x V) times a per-row upstream gradient g (rows)."""
    if grad is None:
        return None
    return grad * g.reshape(-1, 1).to(grad.dtype)


# ---------------------------------------------------------------------------
# cross_entropy
class _CrossEntropyFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, inplace,
                grad_enabled, num_threads):
        if ctx.needs_input_grad[1]:
            raise NotImplementedError("xent.torch.cross_entropy: gradients with respect to probability targets "
                                      "are not supported (detach the target)")
        want = grad_enabled and ctx.needs_input_grad[0]
        spec = ("inplace" if inplace else True) if want else None
        r = _api.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, grad=spec,
                               num_threads=num_threads)
        loss, grad = r if want else (r, None)
        ctx.grad = grad
        ctx.rows = reduction == "none"
        return loss.to(logits.dtype)

    @staticmethod
    def backward(ctx, g):
        grad = ctx.grad
        out = _scale_rows(grad, g) if ctx.rows else _scale_reduced(grad, g)
        return out, None, None, None, None, None, None, None, None, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None, inplace_backward=False, num_threads=None):
    """Drop-in for torch.nn.functional.cross_entropy (class-index or
    probability targets; input (C), (N, C) or (N, C, d1, ...)).

    Extras (keyword-only): ``z_loss`` (PaLM z-loss coefficient on lse^2),
    ``softcap`` (logits -> softcap * tanh(logits / softcap), Gemma 2),
    ``inplace_backward`` (write the gradient over ``input`` instead of a new
    buffer, as Liger-Kernel does: saves B x V memory and traffic, but ``input``
    is overwritten — only for logits nothing else reads afterwards, e.g. the
    output of a Linear layer), ``num_threads`` (0 = all cores).
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_float(input, "input")
    soft = target.is_floating_point()
    if input.dim() == 0:
        raise ValueError("cross_entropy: input must have at least 1 dimension (classes)")
    out_shape = None
    if input.dim() == 1:
        C = input.shape[0]
        exp_t = (C,) if soft else ()
        if tuple(target.shape) != exp_t:
            raise ValueError("cross_entropy: input of shape %s needs a target of shape %s, got %s"
                             % (tuple(input.shape), exp_t, tuple(target.shape)))
        x = input.reshape(1, C)
        t = target.reshape(1, C) if soft else target.reshape(1)
        out_shape = ()
    else:
        C = input.shape[1]
        exp_t = tuple(input.shape) if soft else (input.shape[0],) + tuple(input.shape[2:])
        if tuple(target.shape) != exp_t:
            raise ValueError("cross_entropy: input of shape %s needs a target of shape %s, got %s"
                             % (tuple(input.shape), exp_t, tuple(target.shape)))
        if input.dim() == 2:
            x, t = input, target
        else:
            if inplace_backward:
                raise ValueError("inplace_backward needs a 2-D (N, C) input")
            x = input.movedim(1, -1).reshape(-1, C)
            t = target.movedim(1, -1).reshape(-1, C) if soft else target.reshape(-1)
            out_shape = (input.shape[0],) + tuple(input.shape[2:])
    if soft and t.dtype != x.dtype and t.dtype != _torch.float32:
        t = t.to(_torch.float32)
    if weight is not None and weight.shape != (C,):
        raise ValueError("cross_entropy: weight has shape %s; expected (%d,)" % (tuple(weight.shape), C))
    loss = _CrossEntropyFn.apply(x, t, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                                 bool(inplace_backward), _torch.is_grad_enabled(), num_threads)
    if reduction == "none" and out_shape is not None:
        loss = loss.reshape(out_shape)
    return loss


# ---------------------------------------------------------------------------
# Divergences (kl_div, kl_div_logits, jsd)
class _DivergenceFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp, target, labels, fn, kwargs, elementwise, grad_enabled):
        want_i = grad_enabled and ctx.needs_input_grad[0]
        want_t = grad_enabled and ctx.needs_input_grad[1]
        r = fn(inp, target, labels=labels, grad=True if want_i else None, grad_target=True if want_t else None,
               **kwargs) if labels is not None else \
            fn(inp, target, grad=True if want_i else None, grad_target=True if want_t else None, **kwargs)
        gi = gt = None
        if want_t:
            loss, gi, gt = r
        elif want_i:
            loss, gi = r
        else:
            loss = r
        ctx.gi, ctx.gt = gi, gt
        ctx.none = kwargs.get("reduction") == "none"
        ctx.elementwise = elementwise
        return loss.to(inp.dtype)

    @staticmethod
    def backward(ctx, g):
        if ctx.none:
            if ctx.elementwise:
                gi = None if ctx.gi is None else ctx.gi * g.to(ctx.gi.dtype)
                gt = None if ctx.gt is None else ctx.gt * g.to(ctx.gt.dtype)
            else:
                gi, gt = _scale_rows(ctx.gi, g), _scale_rows(ctx.gt, g)
        else:
            gi, gt = _scale_reduced(ctx.gi, g), _scale_reduced(ctx.gt, g)
        return gi, gt, None, None, None, None, None


def _rows2d(x):
    """(N..., V) -> (rows, V) view (a copy only when the layout needs it)."""
    return x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False, *,
           num_threads=None):
    """Drop-in for torch.nn.functional.kl_div (input: log-probabilities;
    target: probabilities, or log-probabilities with log_target=True).
    Deviation: a zero target probability contributes exactly 0 even where
    torch gives NaN (log_target with target = -inf)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_float(input, "input")
    _check_float(target, "target")
    if target.shape != input.shape:
        target = target.expand(input.shape)
    kwargs = dict(reduction=reduction, log_target=log_target, num_threads=num_threads)
    return _DivergenceFn.apply(input, target, None, _api.kl_div, kwargs, True, _torch.is_grad_enabled())


def kl_div_logits(student, teacher, *, temperature=1.0, reduction="batchmean", t2_scaling=False, labels=None,
                  ignore_index=-100, num_threads=None):
    """Distillation KL(softmax(teacher/T) || softmax(student/T)) from logits
    (last axis = classes), fused; gradients for the student (and the teacher
    when it requires grad). 'none' gives per-row losses; 'batchmean' divides
    by the non-ignored rows (labels == ignore_index rows are ignored)."""
    _check_float(student, "student")
    _check_float(teacher, "teacher")
    kwargs = dict(temperature=temperature, reduction=reduction, t2_scaling=t2_scaling, ignore_index=ignore_index,
                  num_threads=num_threads)
    lead = student.shape[:-1]
    out = _DivergenceFn.apply(_rows2d(student), _rows2d(teacher), None if labels is None else labels.reshape(-1),
                              _api.kl_div_logits, kwargs, False, _torch.is_grad_enabled())
    return out.reshape(lead) if reduction == "none" else out


def jsd(input, target, *, beta=0.5, labels=None, ignore_index=-100, reduction="batchmean", input_kind="log_probs",
        target_kind="log_probs", temperature=1.0, num_threads=None):
    """Generalized Jensen-Shannon divergence as Liger-Kernel's LigerJSD:
    input = student log-probabilities (Q), target = teacher log-probabilities
    (P), beta * KL(P||M) + (1-beta) * KL(Q||M); ``labels`` with
    ``ignore_index`` masks rows (Liger's shift_labels); 'batchmean' divides by
    the non-ignored rows. ``input_kind``/``target_kind`` may be 'logits' or
    'probs' instead."""
    _check_float(input, "input")
    _check_float(target, "target")
    kwargs = dict(beta=beta, input_kind=input_kind, target_kind=target_kind, temperature=temperature,
                  reduction=reduction, ignore_index=ignore_index, num_threads=num_threads)
    lead = input.shape[:-1]
    out = _DivergenceFn.apply(_rows2d(input), _rows2d(target), None if labels is None else labels.reshape(-1),
                              _api.jsd, kwargs, False, _torch.is_grad_enabled())
    return out.reshape(lead) if reduction == "none" else out


# ---------------------------------------------------------------------------
# binary_cross_entropy_with_logits
class _BceFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp, target, weight, pos_weight, reduction, grad_enabled, num_threads):
        if any(ctx.needs_input_grad[1:4]):
            raise NotImplementedError("xent.torch.binary_cross_entropy_with_logits: gradients with respect to "
                                      "target, weight or pos_weight are not supported (detach them)")
        want = grad_enabled and ctx.needs_input_grad[0]
        r = _api.binary_cross_entropy_with_logits(inp, target, weight=weight, reduction=reduction,
                                                  pos_weight=pos_weight, grad=True if want else None,
                                                  num_threads=num_threads)
        loss, grad = r if want else (r, None)
        ctx.grad = grad
        ctx.none = reduction == "none"
        return loss.to(inp.dtype)

    @staticmethod
    def backward(ctx, g):
        if ctx.none:
            gi = None if ctx.grad is None else ctx.grad * g.to(ctx.grad.dtype)
        else:
            gi = _scale_reduced(ctx.grad, g)
        return gi, None, None, None, None, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None, *, num_threads=None):
    """Drop-in for torch.nn.functional.binary_cross_entropy_with_logits
    (any shape; pos_weight runs along the last dimension; weight broadcasts)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_float(input, "input")
    if not isinstance(target, _torch.Tensor) or target.shape != input.shape:
        raise ValueError("Target size (%s) must be the same as input size (%s)"
                         % (tuple(getattr(target, "shape", ())), tuple(input.shape)))
    if target.dtype != input.dtype and target.dtype != _torch.float32:
        target = target.to(input.dtype if input.dtype != _torch.float16 else _torch.float32)
    return _BceFn.apply(input, target, weight, pos_weight, reduction, _torch.is_grad_enabled(), num_threads)


# ---------------------------------------------------------------------------
# softmax / log_softmax
class _SoftmaxFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, log, temperature, num_threads):
        fn = _api.log_softmax if log else _api.softmax
        y = fn(x, -1, temperature=temperature, num_threads=num_threads)
        ctx.save_for_backward(y)
        ctx.log, ctx.temperature, ctx.num_threads = log, temperature, num_threads
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        fn = _api.log_softmax_backward if ctx.log else _api.softmax_backward
        if g.dtype != y.dtype:
            g = g.to(y.dtype)
        return fn(y, g, temperature=ctx.temperature, num_threads=ctx.num_threads), None, None, None


def _softmax_dim(ndim):
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_common(input, dim, dtype, log, temperature, num_threads):
    if dim is None:
        import warnings
        warnings.warn("Implicit dimension choice for %s has been deprecated. Change the call to include dim=X as "
                      "an argument." % ("log_softmax" if log else "softmax"), stacklevel=3)
        dim = _softmax_dim(input.dim())
    if dtype is not None:
        input = input.to(dtype)
    _check_float(input, "input")
    if input.dim() == 0:
        x, d = input.reshape(1, 1), None
    else:
        d = dim % input.dim()
        x = input if d == input.dim() - 1 else input.movedim(d, -1)
    y = _SoftmaxFn.apply(x, log, temperature, num_threads)
    if input.dim() == 0:
        return y.reshape(())
    return y if d == input.dim() - 1 else y.movedim(-1, d).contiguous()


def softmax(input, dim=None, _stacklevel=3, dtype=None, *, temperature=1.0, num_threads=None):
    """Drop-in for torch.nn.functional.softmax (extra: ``temperature``)."""
    return _softmax_common(input, dim, dtype, False, temperature, num_threads)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None, *, temperature=1.0, num_threads=None):
    """Drop-in for torch.nn.functional.log_softmax (extra: ``temperature``)."""
    return _softmax_common(input, dim, dtype, True, temperature, num_threads)


# ---------------------------------------------------------------------------
# token_logprobs
class _TokenLogprobsFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, want_entropy, temperature, softcap, ignore_index, num_threads):
        r = _api.token_logprobs(logits, target, entropy=want_entropy, temperature=temperature, softcap=softcap,
                                ignore_index=ignore_index, num_threads=num_threads)
        lp, ent = r if want_entropy else (r, None)
        ctx.save_for_backward(logits, target)
        ctx.args = (temperature, softcap, ignore_index, num_threads)
        if ent is None:
            return lp
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent=None):
        logits, target = ctx.saved_tensors
        T, cap, ignore_index, num_threads = ctx.args
        grad = None
        if g_lp is not None and bool((g_lp != 0).any()):
            # d logprob / d logits = -(d CE row loss / d logits): one fused CE
            # call with row_scale = -g; a temperature T is folded in as CE on
            # logits / T with softcap / T, times 1 / T.
            x = logits if T == 1.0 else logits / T
            grad = _torch.empty_like(x)
            _api.cross_entropy(x, target, reduction="none", softcap=None if not cap else cap / T,
                               ignore_index=ignore_index, row_scale=-g_lp.float().reshape(-1), grad=grad,
                               num_threads=num_threads)
            if T != 1.0:
                grad = grad / T
        if g_ent is not None and bool((g_ent != 0).any()):
            x = logits.float()
            if cap:
                th = _torch.tanh(x / cap)
                z = cap * th / T
            else:
                z = x / T
            logp = _torch.log_softmax(z, -1)
            p = logp.exp()
            h = -(p * logp).sum(-1, keepdim=True)
            gz = -p * (logp + h) * g_ent.float().reshape(-1, 1)
            gx = gz / T if not cap else gz * (1 - th * th) / T
            gx = gx.to(logits.dtype)
            grad = gx if grad is None else grad + gx
        if grad is None:
            grad = _torch.zeros_like(logits)
        return grad, None, None, None, None, None, None


def token_logprobs(logits, target, *, entropy=False, temperature=1.0, softcap=None, ignore_index=-100,
                   num_threads=None):
    """log softmax(z)[target] per row (z = softcap(logits) / temperature; the
    last axis is classes), differentiable; with entropy=True also the
    entropy of softmax(z) (differentiable too). Ignored rows give 0."""
    _check_float(logits, "logits")
    lead = logits.shape[:-1]
    x = _rows2d(logits)
    t = target.reshape(-1)
    r = _TokenLogprobsFn.apply(x, t, bool(entropy), float(temperature), softcap, ignore_index, num_threads)
    if entropy:
        return r[0].reshape(lead), r[1].reshape(lead)
    return r.reshape(lead)


# ---------------------------------------------------------------------------
# nn.Module drop-ins
class CrossEntropyLoss(_torch.nn.Module):
    """Drop-in for torch.nn.CrossEntropyLoss (extras: z_loss, softcap,
    inplace_backward, num_threads)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, z_loss=0.0, softcap=None, inplace_backward=False, num_threads=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.label_smoothing = label_smoothing
        self.z_loss, self.softcap, self.inplace_backward, self.num_threads = z_loss, softcap, inplace_backward, \
            num_threads

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                             softcap=self.softcap, inplace_backward=self.inplace_backward,
                             num_threads=self.num_threads)


class KLDivLoss(_torch.nn.Module):
    """Drop-in for torch.nn.KLDivLoss."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class BCEWithLogitsLoss(_torch.nn.Module):
    """Drop-in for torch.nn.BCEWithLogitsLoss."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = _legacy_reduction(size_average, reduce, reduction)

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class JSDLoss(_torch.nn.Module):
    """Liger-Kernel's LigerJSD: forward(log_q, log_p, shift_labels=None)."""

    def __init__(self, beta=0.5, ignore_index=-100):
        super().__init__()
        self.beta, self.ignore_index = beta, ignore_index

    def forward(self, log_q, log_p, shift_labels=None):
        return jsd(log_q, log_p, beta=self.beta, labels=shift_labels, ignore_index=self.ignore_index)


# ---------------------------------------------------------------------------
# Per-token statistics (src/xent/_token_stats_torch.py): token_logprobs is the
# fused version (one backward pass for log-prob and entropy together).
from ._token_stats_torch import kl_penalty, token_logprobs, token_stats, topk_logprobs  # noqa: E402, F811

__all__ += ["token_stats", "topk_logprobs", "kl_penalty"]
