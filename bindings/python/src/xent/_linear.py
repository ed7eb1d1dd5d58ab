"""Fused linear cross-entropy over the C ABI (xent_linear_cross_entropy): the
loss of a language-model head, cross_entropy(input @ linear_weight.T +
linear_bias, target), and its gradients in the same call, without the
(rows x classes) logits in memory. numpy arrays, torch CPU tensors, DLPack
and buffer-protocol arrays, as the rest of the array API.
"""

from __future__ import annotations

import ctypes

from . import _lib as L
from ._arrays import EMPTY_PTR, empty, f32_vector, indices, matrix, scalar

__all__ = ["linear_cross_entropy", "blas_backend"]

_GRAD_NAMES = ("input", "weight", "bias")


def blas_backend() -> str:
    """The BLAS libxent was built with: 'openblas', 'blis' or 'none' (then
    linear_cross_entropy raises NotImplementedError)."""
    fn = getattr(L.lib, "xent_blas_backend", None)
    if fn is None:
        return "none"
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    return fn().decode()


def _reduction(reduction):
    r = L.REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if r is None or reduction == "batchmean":
        raise ValueError("reduction = %r is not one of 'none', 'mean', 'sum'" % (reduction,))
    return r


def _float(x, name):
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError("%s must be a real number, got %r" % (name, x)) from None


def _wanted(grad, has_bias):
    if grad is True:
        names = set(_GRAD_NAMES) if has_bias else {"input", "weight"}
    elif not grad:
        names = set()
    else:
        names = set(grad)
        bad = names - set(_GRAD_NAMES)
        if bad:
            raise ValueError("grad names %s are not among %s" % (sorted(bad), list(_GRAD_NAMES)))
    return names


def _out(spec, name, shape, kind, dtype_code, default_code):
    """A gradient output: None (allocate) or a caller's array (written or
    accumulated into). Returns (array, Mat)."""
    if spec is None:
        arr, _ = empty(kind, shape, dtype_code if dtype_code is not None else default_code)
        spec = arr
    m = matrix(spec, name, output=True)
    if m.shape != tuple(shape):
        raise ValueError("%s has shape %s; expected %s" % (name, m.shape, tuple(shape)))
    return spec, m


def linear_cross_entropy(
    input,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=-100,
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    grad=False,
    grad_dtype=None,
    out=None,
    accumulate=False,
    row_scale=None,
    grad_scale=1.0,
    return_lse=False,
    scratch_bytes=0,
    num_threads=None,
):
    """cross_entropy(input @ linear_weight.T + linear_bias, target) fused: the
    logits exist one block of rows at a time (at most ``scratch_bytes`` of
    scratch; 0 = libxent's default: 128 MiB, or min(512, ceil(N / 4)) rows
    of 4 * (V + H) bytes when larger). A 16-bit grad_linear_weight
    is summed in float32: a (V, H) float32 buffer within that budget, or, when
    it does not fit beside 256 rows, tiles of 2048 classes (one more logits
    product, no (V, H) buffer); see xent.h.

    input:          (..., H) float32 / bfloat16 / float16 (rows may be strided).
    linear_weight:  (V, H), the same dtype. linear_bias: (V,), optional,
                    float32 or that dtype.
    target:         (...) class indices; ``ignore_index`` rows give 0 loss and
                    zero gradient (and no GEMM work unless ``return_lse``).
    weight, reduction, label_smoothing: torch.nn.functional.cross_entropy's;
    z_loss (coefficient of lse^2), softcap (logits -> softcap tanh(logits /
    softcap)) as xent.cross_entropy.
    grad:           False, True (gradients of input, linear_weight and, when
                    given, linear_bias) or a subset of ("input", "weight", "bias").
    grad_dtype:     None (each gradient in its input's dtype; a 16-bit weight
                    gradient is still summed in float32 and rounded once) or
                    "float32".
    out:            optional dict {"input": array, "weight": array, "bias":
                    array} of gradient outputs to write, or with
                    ``accumulate=True`` to add the gradients to (in f32,
                    rounded once): gradient accumulation without a temporary.
    row_scale:      per-row multipliers of the gradient (the upstream gradient
                    of reduction "none"); grad_scale multiplies every gradient.
    Returns the loss (float32 scalar; per-row float32 array of input.shape[:-1]
    for "none"); with gradients, (loss, grad_input, grad_weight, grad_bias)
    (None for those not requested); with return_lse, lse (per row) appended.
    """
    x = matrix(input, "input")
    w = matrix(linear_weight, "linear_weight")
    if len(w.shape) != 2:
        raise ValueError("linear_weight must be 2-D (num_classes, hidden), got shape %s" % (w.shape,))
    V, H = w.shape
    if x.cols != H:
        raise ValueError("input has %d features (last axis); linear_weight has %d columns" % (x.cols, H))
    if x.code != w.code:
        raise TypeError("input and linear_weight have different dtypes (%s, %s)" % (x.v.dtype_name, w.v.dtype_name))
    t = indices(target, "target", x.lead)
    op = L.linear_cross_entropy_op
    a = op.args()
    a.batch, a.num_classes, a.hidden_size = x.rows, V, H
    a.hidden, a.hidden_stride, a.hidden_dtype = x.ptr, x.stride, x.code
    a.linear_weight, a.linear_weight_stride, a.linear_weight_dtype = w.ptr or EMPTY_PTR, w.stride, w.code
    keep = [x, w, t]
    b = None
    if linear_bias is not None:
        b = matrix(linear_bias, "linear_bias")
        if b.shape != (V,):
            raise ValueError("linear_bias has shape %s; expected (%d,)" % (b.shape, V))
        a.linear_bias, a.linear_bias_dtype = b.ptr, b.code
        keep.append(b)
    a.target, a.target_stride, a.target_dtype = t.ptr, t.stride, t.code
    a.weight, wk = f32_vector(weight, "weight", V)
    a.row_scale, rk = f32_vector(row_scale, "row_scale", x.rows)
    keep += [wk, rk]
    a.ignore_index = -100 if ignore_index is None else int(ignore_index)
    a.reduction = red = _reduction(reduction)
    a.label_smoothing = _float(label_smoothing, "label_smoothing")
    a.z_loss = _float(z_loss, "z_loss")
    a.softcap = 0.0 if softcap is None else _float(softcap, "softcap")
    a.grad_scale = _float(grad_scale, "grad_scale")
    a.scratch_bytes = int(scratch_bytes or 0)
    loss = ctypes.c_float()
    a.loss = ctypes.addressof(loss)
    rl = None
    if red == L.REDUCTION_NONE:
        rl, a.row_loss = empty(x.v.kind, x.lead, L.XENT_F32)
    lse = None
    if return_lse:
        lse, a.lse = empty(x.v.kind, x.lead, L.XENT_F32)

    names = _wanted(grad, b is not None) | set(out or ())
    if "bias" in names and b is None:
        raise ValueError("a bias gradient was requested but linear_bias is None")
    if grad_dtype not in (None, "float32", "f32"):
        raise ValueError("grad_dtype = %r: None (the inputs' dtypes) or 'float32'" % (grad_dtype,))
    f32 = grad_dtype is not None
    out = out or {}
    res = {}
    acc = 0
    if "input" in names:
        arr, m = _out(out.get("input"), "grad_input", x.shape, x.v.kind, L.XENT_F32 if f32 else None, x.code)
        a.grad_hidden, a.grad_hidden_stride, a.grad_hidden_dtype = m.ptr or EMPTY_PTR, m.stride, m.code
        res["input"] = arr
        acc |= L.XENT_ACCUMULATE_GRAD_HIDDEN
    if "weight" in names:
        arr, m = _out(out.get("weight"), "grad_weight", w.shape, w.v.kind, L.XENT_F32 if f32 else None, w.code)
        a.grad_linear_weight, a.grad_linear_weight_stride, a.grad_linear_weight_dtype = m.ptr, m.stride, m.code
        res["weight"] = arr
        acc |= L.XENT_ACCUMULATE_GRAD_LINEAR_WEIGHT
    if "bias" in names:
        arr, m = _out(out.get("bias"), "grad_bias", (V,), w.v.kind, L.XENT_F32 if f32 else None, w.code)
        a.grad_linear_bias, a.grad_linear_bias_dtype = m.ptr, m.code
        res["bias"] = arr
        acc |= L.XENT_ACCUMULATE_GRAD_LINEAR_BIAS
    if accumulate:
        missing = [n for n in res if n not in out]
        if missing:
            raise ValueError("accumulate=True needs the gradient outputs in `out` (missing: %s)" % ", ".join(missing))
        a.accumulate = acc
    a.num_threads = L.threads(num_threads)
    op(a)
    del keep
    value = rl if rl is not None else scalar(x.v.kind, loss.value)
    if not names:
        return (value, lse) if return_lse else value
    r = (value, res.get("input"), res.get("weight"), res.get("bias"))
    return r + (lse,) if return_lse else r
