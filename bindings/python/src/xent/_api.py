"""The array API: torch.nn.functional names over the C ABI, for numpy arrays,
torch CPU tensors and any DLPack / buffer-protocol array.

Layout: classes are the LAST axis (rows x classes, the layout the kernels
stream); leading axes are flattened into rows. Results come back in the
caller's array library (torch tensors for torch inputs, numpy otherwise);
reduced losses are numpy float32 scalars (0-d tensors for torch inputs).
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import _arrays
from . import _lib as L
from ._arrays import EMPTY_PTR, FLOAT_CODES, Mat, empty, f32_vector, indices, is_torch, matrix, scalar, view

try:  # the per-call path in C (_fast.c); without it, everything runs through the Python path below
    from . import _fast
except ImportError:  # pragma: no cover - a source tree without the built extension
    _fast = None
if _fast is not None:
    _fast.bind(*_arrays.fast_bind_args(empty))
    _arrays.on_torch_import(
        lambda torch: _fast.bind_torch(
            torch.Tensor,
            torch.strided,
            (torch.float32, torch.bfloat16, torch.float16, torch.int32, torch.int64),
            torch.empty,
        )
    )

__all__ = [
    "cross_entropy",
    "kl_div",
    "kl_div_logits",
    "jsd",
    "binary_cross_entropy_with_logits",
    "softmax",
    "log_softmax",
    "logsumexp",
    "entropy",
    "token_logprobs",
    "softmax_backward",
    "log_softmax_backward",
]


def _reduction(reduction, allowed):
    r = L.REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if r is None or reduction not in allowed:
        raise ValueError("reduction = %r is not one of %s" % (reduction, ", ".join(repr(a) for a in allowed)))
    return r


def _kind(kind, name):
    k = L.DIST_KINDS.get(kind) if isinstance(kind, str) else None
    if k is None:
        raise ValueError("%s = %r is not one of 'logits', 'log_probs', 'probs'" % (name, kind))
    return k


def _float(x, name):
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError("%s must be a real number, got %r" % (name, x)) from None


class _Out:
    """An optional B x V output: None, True (allocate), an array, or 'inplace'
    (only where the C ABI allows it: over the given input)."""

    __slots__ = ("obj", "ptr", "stride", "code")

    def __init__(self, spec, name, like: Mat, inplace_ok: bool):
        self.obj = None
        self.ptr = None
        self.stride = 0
        self.code = L.XENT_DTYPE_AUTO
        if spec is None or spec is False:
            return
        if isinstance(spec, str):
            if spec != "inplace" or not inplace_ok:
                raise ValueError(
                    "%s = %r: expected None, True, an array%s" % (name, spec, " or 'inplace'" if inplace_ok else "")
                )
            if not like.v.writable:
                raise ValueError("%s = 'inplace' needs a writable input" % name)
            self.obj, self.ptr, self.stride, self.code = like.v.obj, like.ptr, like.stride, like.code
            return
        if spec is True:
            self.obj, self.ptr = empty(like.v.kind, like.shape, like.code)
            return
        m = matrix(spec, name, output=True)
        if m.shape != like.shape:
            raise ValueError("%s has shape %s; expected %s" % (name, m.shape, like.shape))
        self.obj, self.ptr, self.stride, self.code = spec, m.ptr, m.stride, m.code

    @property
    def wanted(self):
        return self.obj is not None


def _input(x, name, inplace):
    """An input matrix; when its gradient is to be written over it, it must be
    addressable as is (no copy)."""
    return matrix(x, name, output=inplace, allow_copy=not inplace)


def _rows_out(m: Mat):
    return empty(m.v.kind, m.lead, L.XENT_F32)


def _ptr(p):
    return p if p else EMPTY_PTR


# ---------------------------------------------------------------------------
def cross_entropy(
    logits,
    target,
    *,
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
    """Softmax cross-entropy, torch.nn.functional.cross_entropy's semantics,
    with classes on the LAST axis.

    logits:  (..., V) float32 / float16 / bfloat16 (numpy, torch CPU, DLPack,
             buffer). Rows may be strided (padded, sliced): read in place.
    target:  (...) integer class indices (int32/int64 zero-copy), or (..., V)
             probabilities (float32 or the logits' dtype).
    weight:  (V,) class weights. ignore_index: rows with this target give 0
             loss and zero gradient (index targets only).
    reduction: "mean" (divides by the summed weight of non-ignored rows, NaN
             when there are none), "sum", or "none" (per-row float32 losses of
             shape logits.shape[:-1]).
    label_smoothing: in [0, 1], PyTorch's formula. z_loss: coefficient of
             lse^2 per row (PaLM). softcap: logits -> softcap*tanh(logits/softcap).
    grad:    None (no gradient), True (returns (loss, grad) with a new array in
             the logits' dtype), an array (written there: float32 or the logits'
             dtype, same shape, any row stride), or "inplace" (over logits).
             The gradient is d(loss)/d(logits) * grad_scale, row i times
             row_scale[i] when given (the upstream gradient of "none").
    num_threads: None = the xent.set_num_threads() default (0 = all cores).

    Returns the loss (numpy float32 scalar, or a 0-d float32 tensor for torch
    inputs; a per-row array for "none"), or (loss, grad). Errors raise
    TypeError (dtype) / ValueError (shape, value, range) with libxent's message.
    """
    if _fast is not None and weight is None and row_scale is None:
        r = _fast.cross_entropy(
            logits,
            target,
            ignore_index,
            reduction,
            label_smoothing,
            z_loss,
            softcap,
            grad,
            grad_scale,
            L._default_threads if num_threads is None else num_threads,
        )
        if r is not NotImplemented:
            return r
    inplace = isinstance(grad, str) and grad == "inplace"
    m = _input(logits, "logits", inplace)
    op = L.cross_entropy_op
    a = op.args()
    a.batch, a.num_classes = m.rows, m.cols
    a.logits, a.logits_stride, a.logits_dtype = m.ptr, m.stride, m.code
    tv = view(target, "target")
    keep = [tv]
    if tv.code in FLOAT_CODES:
        t = matrix(tv, "target")
        if t.shape != m.shape:
            raise ValueError("target has shape %s; probability targets need the logits' shape %s" % (t.shape, m.shape))
        a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
        keep.append(t)
    else:
        t = indices(tv, "target", m.lead)
        a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
        keep.append(t)
    a.weight, wk = f32_vector(weight, "weight", m.cols)
    a.row_scale, rk = f32_vector(row_scale, "row_scale", m.rows)
    a.ignore_index = int(ignore_index)
    a.reduction = red = _reduction(reduction, ("none", "mean", "sum"))
    a.label_smoothing = _float(label_smoothing, "label_smoothing")
    a.z_loss = _float(z_loss, "z_loss")
    a.softcap = 0.0 if softcap is None else _float(softcap, "softcap")
    a.grad_scale = _float(grad_scale, "grad_scale")
    loss = ctypes.c_float()
    a.loss = ctypes.addressof(loss)
    rl = None
    if red == L.REDUCTION_NONE:
        rl, a.row_loss = _rows_out(m)
    g = _Out(grad, "grad", m, True)
    if g.wanted:
        a.grad, a.grad_stride, a.grad_dtype = g.ptr, g.stride, g.code
    a.num_threads = L.threads(num_threads)
    op(a)
    del keep, wk, rk
    out = rl if rl is not None else scalar(m.v.kind, loss.value)
    return (out, g.obj) if g.wanted else out


# ---------------------------------------------------------------------------
def _divergence(
    inp,
    target,
    *,
    input_kind,
    target_kind,
    divergence,
    beta,
    temperature,
    t2_scaling,
    reduction,
    labels,
    ignore_index,
    grad,
    grad_target,
    num_threads,
    none_is_elementwise,
    batchmean_dim0,
):
    inplace = isinstance(grad, str) and grad == "inplace"
    im = _input(inp, "input", inplace)
    tm = matrix(target, "target")
    if tm.shape != im.shape:
        raise ValueError("target has shape %s; expected the input's shape %s" % (tm.shape, im.shape))
    op = L.divergence_op
    a = op.args()
    a.batch, a.num_classes = im.rows, im.cols
    a.input, a.input_stride, a.input_dtype, a.input_kind = im.ptr, im.stride, im.code, input_kind
    a.target, a.target_stride, a.target_dtype, a.target_kind = tm.ptr, tm.stride, tm.code, target_kind
    a.divergence = divergence
    a.beta = _float(beta, "beta")
    a.temperature = _float(temperature, "temperature")
    a.t2_scaling = 1 if t2_scaling else 0
    allowed = ("none", "mean", "sum", "batchmean")
    red = _reduction(reduction, allowed)
    scale = 1.0
    if red == L.REDUCTION_BATCHMEAN and batchmean_dim0:
        # torch's kl_div batchmean divides by input.size(0), whatever the rank.
        red = L.REDUCTION_SUM
        n0 = im.shape[0] if len(im.shape) > 0 else 1
        scale = 1.0 / n0 if n0 else float("nan")
    a.reduction = red
    a.grad_scale = scale if scale == scale else 1.0
    lv = None
    if labels is not None:
        lv = indices(labels, "labels", im.lead)
        a.labels, a.labels_stride, a.labels_dtype = lv.ptr, lv.stride, lv.code
    a.ignore_index = int(ignore_index)
    loss = ctypes.c_float()
    a.loss = ctypes.addressof(loss)
    res = None
    if red == L.REDUCTION_NONE:
        if none_is_elementwise:
            res, a.elem_loss = empty(im.v.kind, im.shape, L.XENT_F32)
        else:
            res, a.row_loss = _rows_out(im)
    g = _Out(grad, "grad", im, True)
    if g.wanted:
        a.grad_input, a.grad_input_stride, a.grad_input_dtype = g.ptr, g.stride, g.code
    gt = _Out(grad_target, "grad_target", tm, False)
    if gt.wanted:
        a.grad_target, a.grad_target_stride, a.grad_target_dtype = gt.ptr, gt.stride, gt.code
    a.num_threads = L.threads(num_threads)
    op(a)
    if res is None:
        value = loss.value * scale if scale == scale else float("nan")
        res = scalar(im.v.kind, value)
    if gt.wanted:
        return res, g.obj, gt.obj
    return (res, g.obj) if g.wanted else res


def kl_div(input, target, *, reduction="mean", log_target=False, grad=None, grad_target=None, num_threads=None):
    """torch.nn.functional.kl_div: `input` holds log-probabilities of Q, `target`
    probabilities of P (log-probabilities when log_target). Elementwise
    p (log p - log q) with 0 log 0 = 0; 'mean' divides by the element count,
    'batchmean' by input.shape[0] (as torch), 'none' is elementwise."""
    return _divergence(
        input,
        target,
        input_kind=L.DIST_LOG_PROBS,
        target_kind=L.DIST_LOG_PROBS if log_target else L.DIST_PROBS,
        divergence=L.DIVERGENCE_KL,
        beta=0.5,
        temperature=1.0,
        t2_scaling=False,
        reduction=reduction,
        labels=None,
        ignore_index=-100,
        grad=grad,
        grad_target=grad_target,
        num_threads=num_threads,
        none_is_elementwise=True,
        batchmean_dim0=True,
    )


def kl_div_logits(
    student,
    teacher,
    *,
    temperature=1.0,
    reduction="batchmean",
    t2_scaling=False,
    labels=None,
    ignore_index=-100,
    grad=None,
    grad_target=None,
    num_threads=None,
):
    """Distillation loss KL(softmax(teacher / T) || softmax(student / T)) per
    row, from two logit batches, fused (no B x V intermediate)."""
    return _divergence(
        student,
        teacher,
        input_kind=L.DIST_LOGITS,
        target_kind=L.DIST_LOGITS,
        divergence=L.DIVERGENCE_KL,
        beta=0.5,
        temperature=temperature,
        t2_scaling=t2_scaling,
        reduction=reduction,
        labels=labels,
        ignore_index=ignore_index,
        grad=grad,
        grad_target=grad_target,
        num_threads=num_threads,
        none_is_elementwise=False,
        batchmean_dim0=False,
    )


def jsd(
    input,
    target,
    *,
    beta=0.5,
    input_kind="log_probs",
    target_kind="log_probs",
    temperature=1.0,
    reduction="batchmean",
    labels=None,
    ignore_index=-100,
    grad=None,
    grad_target=None,
    num_threads=None,
):
    """Generalized Jensen-Shannon divergence (Liger-Kernel's jsd): input = Q
    (student), target = P (teacher), beta * KL(P||M) + (1 - beta) * KL(Q||M),
    M = beta P + (1 - beta) Q; beta = 0 is KL(P||Q), beta = 1 is KL(Q||P).
    'batchmean' divides by the non-ignored rows (rows whose label is
    ignore_index when `labels` is given)."""
    return _divergence(
        input,
        target,
        input_kind=_kind(input_kind, "input_kind"),
        target_kind=_kind(target_kind, "target_kind"),
        divergence=L.DIVERGENCE_JSD,
        beta=beta,
        temperature=temperature,
        t2_scaling=False,
        reduction=reduction,
        labels=labels,
        ignore_index=ignore_index,
        grad=grad,
        grad_target=grad_target,
        num_threads=num_threads,
        none_is_elementwise=False,
        batchmean_dim0=False,
    )


# ---------------------------------------------------------------------------
def _bce_weight(weight, im: Mat):
    """(pointer, row stride, keep) of a weight broadcast to the input."""
    if weight is None:
        return None, 0, None
    V = im.cols
    if is_torch(weight):
        import torch

        w = weight.detach()
        if w.device.type != "cpu":
            raise ValueError("weight is on device '%s'; xent runs on CPU tensors" % w.device)
        shape = tuple(w.shape)
        if w.numel() == V and all(d == 1 for d in shape[:-1]) and (not shape or shape[-1] == V or V == 1):
            w = w.to(torch.float32).contiguous().reshape(-1)
            return w.data_ptr(), 0, w
        w = w.to(torch.float32).expand(im.shape if im.shape else (1,)).contiguous()
        return _ptr(w.data_ptr()), V, w
    w = np.asarray(weight)
    if w.dtype.kind not in "fiub":
        raise TypeError("weight has dtype %s; expected real numbers" % w.dtype)
    shape = w.shape
    if w.size == V and all(d == 1 for d in shape[:-1]) and (not shape or shape[-1] == V or V == 1):
        w = np.ascontiguousarray(w, dtype=np.float32).reshape(-1)
        return w.__array_interface__["data"][0], 0, w
    try:
        w = np.ascontiguousarray(np.broadcast_to(w, im.shape if im.shape else (1,)), dtype=np.float32)
    except ValueError:
        raise ValueError("weight of shape %s does not broadcast to the input's shape %s" % (shape, im.shape)) from None
    return _ptr(w.__array_interface__["data"][0]), V, w


def binary_cross_entropy_with_logits(
    input, target, *, weight=None, reduction="mean", pos_weight=None, grad=None, grad_scale=1.0, num_threads=None
):
    """Elementwise BCE with logits (torch semantics; the last axis is the
    class axis that pos_weight runs along). 'none' is elementwise."""
    inplace = isinstance(grad, str) and grad == "inplace"
    im = _input(input, "input", inplace)
    tm = matrix(target, "target")
    if tm.shape != im.shape:
        raise ValueError("target has shape %s; expected the input's shape %s" % (tm.shape, im.shape))
    op = L.bce_op
    a = op.args()
    a.batch, a.num_classes = im.rows, im.cols
    a.logits, a.logits_stride, a.logits_dtype = im.ptr, im.stride, im.code
    a.target, a.target_stride, a.target_dtype = tm.ptr, tm.stride, tm.code
    a.weight, a.weight_stride, wk = _bce_weight(weight, im)
    pk = None
    if pos_weight is not None:
        pw = pos_weight.detach().reshape(-1) if is_torch(pos_weight) else np.asarray(pos_weight).reshape(-1)
        if pw.shape[0] == 1 and im.cols != 1:
            pw = pw.expand(im.cols) if is_torch(pw) else np.broadcast_to(pw, (im.cols,))
        a.pos_weight, pk = f32_vector(pw, "pos_weight", im.cols)
    a.reduction = red = _reduction(reduction, ("none", "mean", "sum", "batchmean"))
    a.grad_scale = _float(grad_scale, "grad_scale")
    loss = ctypes.c_float()
    a.loss = ctypes.addressof(loss)
    res = None
    if red == L.REDUCTION_NONE:
        res, a.elem_loss = empty(im.v.kind, im.shape, L.XENT_F32)
    g = _Out(grad, "grad", im, True)
    if g.wanted:
        a.grad, a.grad_stride, a.grad_dtype = g.ptr, g.stride, g.code
    a.num_threads = L.threads(num_threads)
    op(a)
    del wk, pk
    if res is None:
        res = scalar(im.v.kind, loss.value)
    return (res, g.obj) if g.wanted else res


# ---------------------------------------------------------------------------
# Softmax family.
def _moved(x, dim, name):
    """(array with `dim` moved last, ndim, normalized dim)."""
    ndim = len(x.shape) if hasattr(x, "shape") else np.ndim(x)
    if ndim == 0:
        if dim not in (0, -1, None):
            raise IndexError("dim %r is out of range for a 0-d %s" % (dim, name))
        return x, 0, -1
    d = int(dim)
    if d < -ndim or d >= ndim:
        raise IndexError("dim %d is out of range for %s with %d dimensions" % (d, name, ndim))
    d %= ndim
    if d == ndim - 1:
        return x, ndim, d
    if is_torch(x):
        return x.movedim(d, -1), ndim, d
    return np.moveaxis(np.asarray(x) if not isinstance(x, np.ndarray) else x, d, -1), ndim, d


def _move_back(y, ndim, d):
    if ndim == 0 or d == ndim - 1:
        return y
    if is_torch(y):
        return y.movedim(-1, d).contiguous()
    return np.ascontiguousarray(np.moveaxis(y, -1, d))


def _softmax(
    x, dim, temperature, *, probs=False, log_probs=False, lse=False, entropy=False, out=None, num_threads=None
):
    xm, ndim, d = _moved(x, dim, "input")
    if out is not None and d != ndim - 1 and ndim:
        raise ValueError("out= is supported for the last dimension only")
    inplace = out is not None and out is x
    m = _input(xm, "input", inplace)
    op = L.softmax_op
    a = op.args()
    a.batch, a.num_classes = m.rows, m.cols
    a.logits, a.logits_stride, a.logits_dtype = m.ptr, m.stride, m.code
    a.temperature = _float(temperature, "temperature")
    res = []
    if probs or log_probs:
        if out is None:
            o = _Out(True, "out", m, False)
        elif inplace:
            o = _Out("inplace", "out", m, True)
        else:
            o = _Out(out, "out", m, False)
        if probs:
            a.probs, a.probs_stride, a.probs_dtype = o.ptr, o.stride, o.code
        else:
            a.log_probs, a.log_probs_stride, a.log_probs_dtype = o.ptr, o.stride, o.code
        res.append(o.obj)
    if lse:
        r, a.lse = _rows_out(m)
        res.append(r)
    if entropy:
        r, a.entropy = _rows_out(m)
        res.append(r)
    a.num_threads = L.threads(num_threads)
    op(a)
    return res, ndim, d


def softmax(input, dim=-1, *, temperature=1.0, out=None, num_threads=None):
    """softmax(input / temperature) along `dim` (the last axis by default; other
    axes are moved last, at the price of a copy). `out` may be `input`."""
    if _fast is not None and out is None and dim in (-1, getattr(input, "ndim", 0) - 1):
        r = _fast.softmax(input, False, temperature, L._default_threads if num_threads is None else num_threads)
        if r is not NotImplemented:
            return r
    (p,), ndim, d = _softmax(input, dim, temperature, probs=True, out=out, num_threads=num_threads)
    return p if out is not None else _move_back(p, ndim, d)


def log_softmax(input, dim=-1, *, temperature=1.0, out=None, num_threads=None):
    """log_softmax(input / temperature) along `dim`; `out` may be `input`."""
    if _fast is not None and out is None and dim in (-1, getattr(input, "ndim", 0) - 1):
        r = _fast.softmax(input, True, temperature, L._default_threads if num_threads is None else num_threads)
        if r is not NotImplemented:
            return r
    (p,), ndim, d = _softmax(input, dim, temperature, log_probs=True, out=out, num_threads=num_threads)
    return p if out is not None else _move_back(p, ndim, d)


def _keepdim(r, keepdim, ndim, d):
    if not keepdim or ndim == 0:
        return r
    return r.unsqueeze(d) if is_torch(r) else np.expand_dims(r, d)


def logsumexp(input, dim=-1, *, keepdim=False, temperature=1.0, num_threads=None):
    """log sum exp(input / temperature) along `dim`, as float32."""
    (r,), ndim, d = _softmax(input, dim, temperature, lse=True, num_threads=num_threads)
    return _keepdim(r, keepdim, ndim, d)


def entropy(input, dim=-1, *, keepdim=False, temperature=1.0, num_threads=None):
    """Entropy -sum p log p of softmax(input / temperature) along `dim`, as float32."""
    (r,), ndim, d = _softmax(input, dim, temperature, entropy=True, num_threads=num_threads)
    return _keepdim(r, keepdim, ndim, d)


def _softmax_backward(output, grad_output, kind, temperature, out, num_threads):
    om = matrix(output, "output")
    inplace = out is not None and out is grad_output
    gm = _input(grad_output, "grad_output", inplace)
    if gm.shape != om.shape:
        raise ValueError("grad_output has shape %s; expected the output's shape %s" % (gm.shape, om.shape))
    op = L.softmax_backward_op
    a = op.args()
    a.batch, a.num_classes = om.rows, om.cols
    a.output, a.output_stride, a.output_dtype, a.output_kind = om.ptr, om.stride, om.code, kind
    a.grad_output, a.grad_output_stride, a.grad_output_dtype = gm.ptr, gm.stride, gm.code
    a.temperature = _float(temperature, "temperature")
    o = _Out("inplace" if inplace else (True if out is None else out), "out", gm, True)
    a.grad_input, a.grad_input_stride, a.grad_input_dtype = o.ptr, o.stride, o.code
    a.num_threads = L.threads(num_threads)
    op(a)
    return o.obj


def softmax_backward(output, grad_output, *, temperature=1.0, out=None, num_threads=None):
    """dL/dlogits from y = softmax(logits / T) and g = dL/dy (last axis)."""
    return _softmax_backward(output, grad_output, L.DIST_PROBS, temperature, out, num_threads)


def log_softmax_backward(output, grad_output, *, temperature=1.0, out=None, num_threads=None):
    """dL/dlogits from y = log_softmax(logits / T) and g = dL/dy (last axis)."""
    return _softmax_backward(output, grad_output, L.DIST_LOG_PROBS, temperature, out, num_threads)


# ---------------------------------------------------------------------------
def token_logprobs(
    logits, target, *, entropy=False, temperature=1.0, softcap=None, ignore_index=-100, num_threads=None
):
    """log softmax(z)[target] per row with z = softcap(logits) / temperature,
    without writing anything B x V; rows whose target is ignore_index get 0.
    With entropy=True returns (logprob, entropy)."""
    if _fast is not None:
        r = _fast.token_logprobs(
            logits,
            target,
            entropy,
            temperature,
            softcap,
            ignore_index,
            L._default_threads if num_threads is None else num_threads,
        )
        if r is not NotImplemented:
            return r
    m = matrix(logits, "logits")
    t = indices(target, "target", m.lead)
    op = L.token_logprobs_op
    a = op.args()
    a.batch, a.num_classes = m.rows, m.cols
    a.logits, a.logits_stride, a.logits_dtype = m.ptr, m.stride, m.code
    a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
    a.ignore_index = int(ignore_index)
    a.temperature = _float(temperature, "temperature")
    a.softcap = 0.0 if softcap is None else _float(softcap, "softcap")
    lp, a.logprob = _rows_out(m)
    ent = None
    if entropy:
        ent, a.entropy = _rows_out(m)
    a.num_threads = L.threads(num_threads)
    op(a)
    return (lp, ent) if entropy else lp
