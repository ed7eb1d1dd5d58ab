"""torch autograd drop-ins for torch.nn.functional, backed by libxent.

    import xent.torch as xF
    loss = xF.cross_entropy(logits, target)        # was F.cross_entropy(...)
    loss.backward()

Same signatures, defaults, shapes and dtypes as torch.nn.functional (plus
keyword-only extras). Each forward computes the loss AND the gradient in one
kernel call (when the input requires grad and grad mode is on); the first
backward hands that buffer to autograd without keeping a reference (x.grad is
that buffer, not a copy), scaled in place by the upstream gradient, or
untouched when it is 1 (``loss.backward()``). A second backward through the
same graph (retain_graph=True) recomputes it; double backward
(create_graph=True) raises RuntimeError.

Supported: CPU tensors of dtype float32, bfloat16 or float16 (other dtypes
raise TypeError, other devices ValueError). Class dimension: as torch (dim 1
for cross_entropy on >= 2-D inputs; layouts where the class axis is not the
contiguous last axis are copied once).
"""

from __future__ import annotations

import torch as _torch

from . import _api, _arrays
from ._torch_linear import LinearCrossEntropyLoss, linear_cross_entropy

_arrays._torch_code_map(_torch)  # the C fast path recognizes tensors from now on

__all__ = [
    "cross_entropy",
    "kl_div",
    "binary_cross_entropy_with_logits",
    "log_softmax",
    "softmax",
    "kl_div_logits",
    "jsd",
    "token_logprobs",
    "CrossEntropyLoss",
    "KLDivLoss",
    "BCEWithLogitsLoss",
    "JSDLoss",
    "linear_cross_entropy",
    "LinearCrossEntropyLoss",
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
        raise TypeError(
            "%s has dtype %s; xent.torch takes float32, bfloat16 or float16 (use .float())" % (name, t.dtype)
        )
    if not t.is_cpu:
        raise ValueError("%s is on device '%s'; xent runs on CPU tensors" % (name, t.device))


def _needs_graph(*tensors):
    """Whether autograd records this call: grad mode on and some tensor
    argument requiring grad."""
    return _torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _bump_version(t):
    """Tells autograd that ``t`` was written in place (by the kernel, which
    torch cannot see): an op that saved ``t`` (or its base) for its backward
    then raises torch's usual "modified by an inplace operation" error
    instead of computing with the overwritten values."""
    if _increment_version is not None:
        _increment_version(t)
    elif t.dim() > 0:
        t.narrow(0, 0, 0).zero_()  # an in-place op on an empty view bumps the shared version counter
    else:
        t.reshape(-1).narrow(0, 0, 0).zero_()


_increment_version = getattr(getattr(_torch.autograd, "graph", None), "increment_version", None)


def _no_double_backward(name):
    if _torch.is_grad_enabled():
        raise RuntimeError(
            "xent.torch.%s: double backward is not supported: backward ran with create_graph=True (for "
            "higher-order gradients), but the gradient comes out of xent's fused forward kernel and is not "
            "itself differentiable. Use torch.nn.functional for higher-order gradients." % name
        )


def _uniform(g):
    """The value of ``g`` when all its elements are one value without reading
    them all (a 1-element tensor or an expanded scalar, as
    ``loss.sum().backward()`` passes), else None."""
    if g.dim() == 0:
        return g.item()
    if g.numel() == 1:
        return g.reshape(()).item()
    if g.dim() and all(s == 0 for s in g.stride()):
        return g[(0,) * g.dim()].item()
    return None


def _scale_(grad, g, rows=False):
    """``grad`` (this function's own buffer, which autograd receives next)
    times the upstream gradient ``g``, in place; no pass at all when g is 1.
    ``rows``: g holds one value per row of grad (reduction 'none' of a row
    loss); otherwise g is a scalar or has grad's shape (elementwise losses).
    The arithmetic is the one of ``grad * g.to(grad.dtype)``."""
    if grad is None:
        return None
    u = _uniform(g)
    if u == 1.0:
        return grad
    if rows:
        if u is None and g.numel() and bool((g == 1).all()):  # O(rows): cheaper than the O(rows x V) product
            return grad
        return grad.mul_(g.reshape(-1, 1).to(grad.dtype))
    return grad.mul_(g.to(grad.dtype))


class _Handoff:
    """The gradient buffers a forward computed, handed to autograd by the
    first backward without keeping a reference (so AccumulateGrad takes them
    as ``x.grad`` instead of copying, and nothing B x V outlives the
    backward). A second backward through the same graph (retain_graph=True)
    recomputes them from the saved inputs, or raises when the gradient was
    written over the input (inplace_backward)."""

    __slots__ = ("grads", "taken")

    def __init__(self, *grads):
        self.grads = grads
        self.taken = False

    def take(self):
        grads, self.grads, self.taken = self.grads, None, True
        return grads


def _second_backward_inplace(name):
    return RuntimeError(
        "xent.torch.%s(inplace_backward=True): backward ran a second time through the same graph "
        "(retain_graph=True), but the gradient was written over the logits and handed to autograd by the first "
        "backward, so it cannot be produced again. Use inplace_backward=False to backward more than once." % name
    )


# ---------------------------------------------------------------------------
# cross_entropy
class _CrossEntropyFn(_torch.autograd.Function):
    # Options travel as one tuple: every argument of apply() costs per call.
    @staticmethod
    def forward(ctx, logits, target, weight, opts):
        if ctx.needs_input_grad[1]:
            raise NotImplementedError(
                "xent.torch.cross_entropy: gradients with respect to probability targets "
                "are not supported (detach the target)"
            )
        ignore_index, reduction, label_smoothing, z_loss, softcap, inplace, num_threads = opts
        kw = dict(
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            num_threads=num_threads,
        )
        if not ctx.needs_input_grad[0]:
            loss = _api.cross_entropy(logits, target, **kw)
            return loss if loss.dtype == logits.dtype else loss.to(logits.dtype)
        loss, grad = _api.cross_entropy(logits, target, grad="inplace" if inplace else True, **kw)
        if inplace:
            _bump_version(logits)
            grad = grad.detach()  # an alias of logits of its own, which autograd can take without a copy
        else:
            # For a second backward (retain_graph=True) only; the engine drops them after the last one.
            # Class indices (B values) are kept as they are: one saved tensor less per call.
            if target.is_floating_point():
                ctx.save_for_backward(logits, target)
                ctx.target = None
            else:
                ctx.save_for_backward(logits)
                ctx.target = target
            ctx.kw = kw
        ctx.handoff = _Handoff(grad)
        ctx.inplace = inplace
        ctx.rows = reduction == "none"
        return loss if loss.dtype == logits.dtype else loss.to(logits.dtype)

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("cross_entropy")
        h = ctx.handoff
        if not h.taken:
            (grad,) = h.take()
        elif ctx.inplace:
            raise _second_backward_inplace("cross_entropy")
        else:
            saved = ctx.saved_tensors
            target = saved[1] if ctx.target is None else ctx.target
            grad = _api.cross_entropy(saved[0], target, grad=True, **ctx.kw)[1]
        return _scale_(grad, g, ctx.rows), None, None, None


def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
    *,
    z_loss=0.0,
    softcap=None,
    inplace_backward=False,
    num_threads=None,
):
    """Drop-in for torch.nn.functional.cross_entropy (class-index or
    probability targets; input (C), (N, C) or (N, C, d1, ...)).

    Extras (keyword-only): ``z_loss`` (PaLM z-loss coefficient on lse^2),
    ``softcap`` (logits -> softcap * tanh(logits / softcap), Gemma 2),
    ``inplace_backward`` (write the gradient over ``input`` instead of a new
    buffer, as Liger-Kernel does: saves B x V memory and traffic, but ``input``
    is overwritten — only for logits nothing else reads afterwards, e.g. the
    output of a Linear layer; an op that saved ``input`` for its backward
    then raises autograd's in-place error; a view is safe, the gradient flows
    to its base; on a leaf, x.grad is x's memory; a second backward through
    the graph raises), ``num_threads`` (0 = all cores).
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
            raise ValueError(
                "cross_entropy: input of shape %s needs a target of shape %s, got %s"
                % (tuple(input.shape), exp_t, tuple(target.shape))
            )
        x = input.reshape(1, C)
        t = target.reshape(1, C) if soft else target.reshape(1)
        out_shape = ()
    else:
        C = input.shape[1]
        exp_t = tuple(input.shape) if soft else (input.shape[0],) + tuple(input.shape[2:])
        if tuple(target.shape) != exp_t:
            raise ValueError(
                "cross_entropy: input of shape %s needs a target of shape %s, got %s"
                % (tuple(input.shape), exp_t, tuple(target.shape))
            )
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
    if _needs_graph(input, target, weight):
        loss = _CrossEntropyFn.apply(
            x,
            t,
            weight,
            (ignore_index, reduction, label_smoothing, z_loss, softcap, bool(inplace_backward), num_threads),
        )
    else:  # nothing to differentiate (evaluation, no_grad): no autograd node and its per-call cost
        loss = _api.cross_entropy(
            x,
            t,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            num_threads=num_threads,
        )
        if loss.dtype != x.dtype:
            loss = loss.to(x.dtype)
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
        if labels is not None:
            kwargs = dict(kwargs, labels=labels)
        r = fn(inp, target, grad=True if want_i else None, grad_target=True if want_t else None, **kwargs)
        gi = gt = None
        if want_t:
            loss, gi, gt = r
        elif want_i:
            loss, gi = r
        else:
            return r.to(inp.dtype)
        ctx.save_for_backward(inp, target)  # read only by a second backward (retain_graph=True)
        ctx.fn, ctx.kw, ctx.want = fn, kwargs, (want_i, want_t)
        ctx.handoff = _Handoff(gi, gt)
        ctx.none = kwargs.get("reduction") == "none"
        ctx.elementwise = elementwise
        return loss.to(inp.dtype)

    @staticmethod
    def backward(ctx, g):
        _no_double_backward(ctx.fn.__name__)
        h = ctx.handoff
        if not h.taken:
            gi, gt = h.take()
        else:
            inp, target = ctx.saved_tensors
            want_i, want_t = ctx.want
            r = ctx.fn(inp, target, grad=True if want_i else None, grad_target=True if want_t else None, **ctx.kw)
            gi, gt = (r[1], r[2]) if want_t else (r[1], None)
        rows = ctx.none and not ctx.elementwise
        return _scale_(gi, g, rows), _scale_(gt, g, rows), None, None, None, None, None


def _empty_like(x):
    """A new uninitialized tensor like the 2-D ``x``, from xent's buffers
    (huge-page advised and recycled when large)."""
    return _arrays.empty("torch", tuple(x.shape), _arrays.torch_code(x.dtype))[0]


def _rows2d(x):
    """(N..., V) -> (rows, V) view (a copy only when the layout needs it)."""
    return x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False, *, num_threads=None):
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


def kl_div_logits(
    student,
    teacher,
    *,
    temperature=1.0,
    reduction="batchmean",
    t2_scaling=False,
    labels=None,
    ignore_index=-100,
    num_threads=None,
):
    """Distillation KL(softmax(teacher/T) || softmax(student/T)) from logits
    (last axis = classes), fused; gradients for the student (and the teacher
    when it requires grad). 'none' gives per-row losses; 'batchmean' divides
    by the non-ignored rows (labels == ignore_index rows are ignored)."""
    _check_float(student, "student")
    _check_float(teacher, "teacher")
    kwargs = dict(
        temperature=temperature,
        reduction=reduction,
        t2_scaling=t2_scaling,
        ignore_index=ignore_index,
        num_threads=num_threads,
    )
    lead = student.shape[:-1]
    out = _DivergenceFn.apply(
        _rows2d(student),
        _rows2d(teacher),
        None if labels is None else labels.reshape(-1),
        _api.kl_div_logits,
        kwargs,
        False,
        _torch.is_grad_enabled(),
    )
    return out.reshape(lead) if reduction == "none" else out


def jsd(
    input,
    target,
    *,
    beta=0.5,
    labels=None,
    ignore_index=-100,
    reduction="batchmean",
    input_kind="log_probs",
    target_kind="log_probs",
    temperature=1.0,
    num_threads=None,
):
    """Generalized Jensen-Shannon divergence as Liger-Kernel's LigerJSD:
    input = student log-probabilities (Q), target = teacher log-probabilities
    (P), beta * KL(P||M) + (1-beta) * KL(Q||M); ``labels`` with
    ``ignore_index`` masks rows (Liger's shift_labels); 'batchmean' divides by
    the non-ignored rows. ``input_kind``/``target_kind`` may be 'logits' or
    'probs' instead."""
    _check_float(input, "input")
    _check_float(target, "target")
    kwargs = dict(
        beta=beta,
        input_kind=input_kind,
        target_kind=target_kind,
        temperature=temperature,
        reduction=reduction,
        ignore_index=ignore_index,
        num_threads=num_threads,
    )
    lead = input.shape[:-1]
    out = _DivergenceFn.apply(
        _rows2d(input),
        _rows2d(target),
        None if labels is None else labels.reshape(-1),
        _api.jsd,
        kwargs,
        False,
        _torch.is_grad_enabled(),
    )
    return out.reshape(lead) if reduction == "none" else out


# ---------------------------------------------------------------------------
# binary_cross_entropy_with_logits
class _BceFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp, target, weight, pos_weight, reduction, grad_enabled, num_threads):
        if grad_enabled and any(ctx.needs_input_grad[1:4]):  # (under no_grad nothing is differentiated)
            raise NotImplementedError(
                "xent.torch.binary_cross_entropy_with_logits: gradients with respect to "
                "target, weight or pos_weight are not supported (detach them)"
            )
        want = grad_enabled and ctx.needs_input_grad[0]
        kw = dict(weight=weight, reduction=reduction, pos_weight=pos_weight, num_threads=num_threads)
        if not want:
            return _api.binary_cross_entropy_with_logits(inp, target, **kw).to(inp.dtype)
        loss, grad = _api.binary_cross_entropy_with_logits(inp, target, grad=True, **kw)
        ctx.save_for_backward(inp, target)  # read only by a second backward (retain_graph=True)
        ctx.kw = kw
        ctx.handoff = _Handoff(grad)
        return loss.to(inp.dtype)

    @staticmethod
    def backward(ctx, g):
        _no_double_backward("binary_cross_entropy_with_logits")
        h = ctx.handoff
        if not h.taken:
            (grad,) = h.take()
        else:
            inp, target = ctx.saved_tensors
            grad = _api.binary_cross_entropy_with_logits(inp, target, grad=True, **ctx.kw)[1]
        return _scale_(grad, g), None, None, None, None, None, None


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None, *, num_threads=None
):
    """Drop-in for torch.nn.functional.binary_cross_entropy_with_logits
    (any shape; pos_weight runs along the last dimension; weight broadcasts)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_float(input, "input")
    if not isinstance(target, _torch.Tensor) or target.shape != input.shape:
        raise ValueError(
            "Target size (%s) must be the same as input size (%s)"
            % (tuple(getattr(target, "shape", ())), tuple(input.shape))
        )
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
        _no_double_backward("log_softmax" if ctx.log else "softmax")
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

        warnings.warn(
            "Implicit dimension choice for %s has been deprecated. Change the call to include dim=X as "
            "an argument." % ("log_softmax" if log else "softmax"),
            stacklevel=3,
        )
        dim = _softmax_dim(input.dim())
    if dtype is not None:
        input = input.to(dtype)
    _check_float(input, "input")
    if input.dim() == 0:
        x, d = input.reshape(1, 1), None
    else:
        d = dim % input.dim()
        x = input if d == input.dim() - 1 else input.movedim(d, -1)
    if _needs_graph(x):
        y = _SoftmaxFn.apply(x, log, temperature, num_threads)
    else:  # no autograd node
        y = (_api.log_softmax if log else _api.softmax)(x, -1, temperature=temperature, num_threads=num_threads)
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
        r = _api.token_logprobs(
            logits,
            target,
            entropy=want_entropy,
            temperature=temperature,
            softcap=softcap,
            ignore_index=ignore_index,
            num_threads=num_threads,
        )
        lp, ent = r if want_entropy else (r, None)
        ctx.save_for_backward(logits, target)
        ctx.args = (temperature, softcap, ignore_index, num_threads)
        if ent is None:
            return lp
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent=None):
        _no_double_backward("token_logprobs")
        logits, target = ctx.saved_tensors
        T, cap, ignore_index, num_threads = ctx.args
        grad = None
        if g_lp is not None and bool((g_lp != 0).any()):
            # d logprob / d logits = -(d CE row loss / d logits): one fused CE
            # call with row_scale = -g; a temperature T is folded in as CE on
            # logits / T with softcap / T, times 1 / T (the gradient written
            # over that scaled copy, then divided in place).
            kw = dict(
                reduction="none",
                softcap=None if not cap else cap / T,
                ignore_index=ignore_index,
                row_scale=-g_lp.float().reshape(-1),
                num_threads=num_threads,
            )
            if T == 1.0:
                grad = _api.cross_entropy(logits, target, grad=True, **kw)[1]
            else:
                grad = _torch.div(logits, T, out=_empty_like(logits))
                _api.cross_entropy(grad, target, grad="inplace", **kw)
                grad.div_(T)
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
            grad = gx if grad is None else grad.add_(gx)
        if grad is None:
            grad = _torch.zeros_like(logits)
        return grad, None, None, None, None, None, None


def token_logprobs(
    logits, target, *, entropy=False, temperature=1.0, softcap=None, ignore_index=-100, num_threads=None
):
    """log softmax(z)[target] per row (z = softcap(logits) / temperature; the
    last axis is classes), differentiable; with entropy=True also the
    entropy of softmax(z) (differentiable too). Ignored rows give 0."""
    _check_float(logits, "logits")
    lead = logits.shape[:-1]
    x = _rows2d(logits)
    t = target.reshape(-1)
    if _needs_graph(logits):
        r = _TokenLogprobsFn.apply(x, t, bool(entropy), float(temperature), softcap, ignore_index, num_threads)
    else:  # no autograd node
        r = _api.token_logprobs(
            x,
            t,
            entropy=bool(entropy),
            temperature=float(temperature),
            softcap=softcap,
            ignore_index=ignore_index,
            num_threads=num_threads,
        )
    if entropy:
        return r[0].reshape(lead), r[1].reshape(lead)
    return r.reshape(lead)


# ---------------------------------------------------------------------------
# nn.Module drop-ins
class CrossEntropyLoss(_torch.nn.Module):
    """Drop-in for torch.nn.CrossEntropyLoss (extras: z_loss, softcap,
    inplace_backward, num_threads)."""

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        label_smoothing=0.0,
        *,
        z_loss=0.0,
        softcap=None,
        inplace_backward=False,
        num_threads=None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.label_smoothing = label_smoothing
        self.z_loss, self.softcap, self.inplace_backward, self.num_threads = (
            z_loss,
            softcap,
            inplace_backward,
            num_threads,
        )

    def forward(self, input, target):
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            inplace_backward=self.inplace_backward,
            num_threads=self.num_threads,
        )


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
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class JSDLoss(_torch.nn.Module):
    """Liger-Kernel's LigerJSD: forward(log_q, log_p, shift_labels=None)."""

    def __init__(self, beta=0.5, ignore_index=-100):
        super().__init__()
        self.beta, self.ignore_index = beta, ignore_index

    def forward(self, log_q, log_p, shift_labels=None):
        return jsd(log_q, log_p, beta=self.beta, labels=shift_labels, ignore_index=self.ignore_index)


# ---------------------------------------------------------------------------
# Per-token statistics (src/xent/_token_stats_torch.py). token_logprobs stays
# the one above (its per-call C path, gradient handed to autograd without a
# copy, double backward refused: tests/test_autograd_semantics.py).
from ._token_stats_torch import kl_penalty, token_stats, topk_logprobs  # noqa: E402

__all__ += ["token_stats", "topk_logprobs", "kl_penalty"]

# xent.torch.distributed (vocab-parallel cross-entropy over a process group):
# a module of its own, torch_distributed.py, importable under this name.
# Importing it costs nothing: torch.distributed is touched only by its calls.
import sys as _sys  # noqa: E402

from . import torch_distributed as distributed  # noqa: E402

_sys.modules[__name__ + ".distributed"] = distributed
