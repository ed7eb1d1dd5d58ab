"""torch autograd drop-ins for torch.nn.functional.linear_cross_entropy and
torch.nn.LinearCrossEntropyLoss (PyTorch >= 2.13), backed by
xent_linear_cross_entropy. Re-exported by :mod:`xent.torch`.

The forward computes the loss and the gradients of input, linear_weight and
linear_bias in one fused call (logits one block of rows at a time); backward
returns them, scaled by the upstream gradient when it is not 1. With
reduction='none' the gradients depend on the per-row upstream gradient, so
backward runs the fused call again with it (as Liger-Kernel's FLCE does).
"""

from __future__ import annotations

import torch as _torch

from . import _linear

__all__ = ["linear_cross_entropy", "LinearCrossEntropyLoss"]


def _check(t, name):
    if not isinstance(t, _torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.device.type != "cpu":
        raise ValueError("%s is on device '%s'; xent runs on CPU tensors" % (name, t.device))
    if t.dtype not in (_torch.float32, _torch.bfloat16, _torch.float16):
        raise TypeError("%s has dtype %s; xent.torch takes float32, bfloat16 or float16" % (name, t.dtype))


def _scaled(g, s):
    if g is None or s is None:
        return g
    return g * s.to(g.dtype)


class _LinearCrossEntropyFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, target, kwargs, grad_enabled):
        need = ctx.needs_input_grad
        names = []
        if grad_enabled:
            if need[0]:
                names.append("input")
            if need[1]:
                names.append("weight")
            if b is not None and need[2]:
                names.append("bias")
        none = kwargs["reduction"] == "none"
        ctx.none = none
        ctx.kwargs = kwargs
        ctx.names = names
        if none or not names:
            loss = _linear.linear_cross_entropy(x, w, target, linear_bias=b, **kwargs)
            if none and names:
                ctx.save_for_backward(x, w, b, target)
            ctx.grads = None
        else:
            loss, gx, gw, gb = _linear.linear_cross_entropy(x, w, target, linear_bias=b, grad=names, **kwargs)
            ctx.grads = (gx, gw, gb)
        return loss.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        if ctx.none:
            x, w, b, target = ctx.saved_tensors
            _, gx, gw, gb = _linear.linear_cross_entropy(
                x, w, target, linear_bias=b, grad=ctx.names, row_scale=g.reshape(-1).float(), **ctx.kwargs
            )
        else:
            gx, gw, gb = ctx.grads if ctx.grads is not None else (None, None, None)
            ctx.grads = None  # autograd takes the buffers without a copy
            if not (g.numel() == 1 and bool(g == 1)):
                gx, gw, gb = _scaled(gx, g), _scaled(gw, g), _scaled(gb, g)
        return gx, gw, gb, None, None, None


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
    options=None,
    z_loss=0.0,
    softcap=None,
    scratch_bytes=0,
    num_threads=None,
):
    """Drop-in for torch.nn.functional.linear_cross_entropy (PyTorch >= 2.13):
    cross_entropy(input @ linear_weight.T + linear_bias, target) with class-index
    targets, fused (no (N, C) logits tensor).

    input (..., H) or (H,), linear_weight (C, H), linear_bias (C,), target
    (...) class indices (int64 or int32); float32, bfloat16 or float16, CPU.
    ``ignore_index=None`` means -100 (PyTorch's mapping). ``options``
    (PyTorch's chunking options) is accepted and ignored: xent always works in
    blocks of rows within ``scratch_bytes`` (0 = 128 MiB, or
    min(512, ceil(N / 4)) rows of 4 * (C + H) bytes when larger).
    Extras (keyword-only): ``z_loss`` (lse^2 coefficient), ``softcap``
    (logits -> softcap * tanh(logits / softcap)), ``scratch_bytes``,
    ``num_threads`` (0 = all cores). Gradients of bfloat16 / float16 weights
    are summed over all rows in float32 and rounded once: that takes a
    float32 (C, H) buffer, counted in ``scratch_bytes``; when it does not fit
    beside a block of 256 rows, xent works in tiles of 2048 classes instead
    (one more logits product, ~4/3 of the time, no (C, H) buffer). A budget
    of 4*C*H bytes plus ~128 MiB picks the faster order (e.g. C=32000,
    H=1024: ``scratch_bytes=256 << 20``).
    """
    del options
    _check(input, "input")
    _check(linear_weight, "linear_weight")
    if linear_bias is not None:
        _check(linear_bias, "linear_bias")
    if linear_weight.dim() != 2:
        raise ValueError("linear_weight must be 2-D (C, H), got shape %s" % (tuple(linear_weight.shape),))
    if input.dim() == 0:
        raise ValueError("input must have at least one dimension (features)")
    lead = tuple(input.shape[:-1])
    if tuple(target.shape) != lead:
        raise ValueError(
            "input of shape %s needs a target of shape %s, got %s" % (tuple(input.shape), lead, tuple(target.shape))
        )
    if target.is_floating_point():
        raise NotImplementedError("xent.torch.linear_cross_entropy takes class-index targets only")
    if input.dtype != linear_weight.dtype:
        raise TypeError(
            "input (%s) and linear_weight (%s) must have the same dtype" % (input.dtype, linear_weight.dtype)
        )
    x = input.reshape(-1, input.shape[-1]) if input.dim() != 2 else input
    t = target.reshape(-1)
    kwargs = dict(
        weight=weight,
        reduction=reduction,
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        scratch_bytes=scratch_bytes,
        num_threads=num_threads,
    )
    loss = _LinearCrossEntropyFn.apply(x, linear_weight, linear_bias, t, kwargs, _torch.is_grad_enabled())
    if reduction == "none":
        loss = loss.reshape(lead)
    return loss


class LinearCrossEntropyLoss(_torch.nn.Module):
    """Drop-in for torch.nn.LinearCrossEntropyLoss: a Linear(in_features,
    num_classes, bias) whose logits go straight into cross-entropy, fused.
    ``forward(input, target)``. K-dimensional targets (``out_features``) are
    not supported; ``options`` is accepted and ignored. Extras: z_loss, softcap,
    scratch_bytes, num_threads."""

    def __init__(
        self,
        in_features,
        num_classes,
        *,
        out_features=(),
        bias=False,
        device=None,
        dtype=None,
        reduction="mean",
        weight=None,
        ignore_index=None,
        label_smoothing=0.0,
        options=None,
        z_loss=0.0,
        softcap=None,
        scratch_bytes=0,
        num_threads=None,
    ):
        super().__init__()
        if tuple(out_features):
            raise NotImplementedError(
                "xent.torch.LinearCrossEntropyLoss: out_features (K-dimensional loss) is not supported"
            )
        self.linear = _torch.nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.ignore_index = -100 if ignore_index is None else ignore_index
        self.label_smoothing = label_smoothing
        self.options = options
        self.z_loss, self.softcap, self.scratch_bytes, self.num_threads = z_loss, softcap, scratch_bytes, num_threads

    def forward(self, input, target):
        return linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            linear_bias=self.linear.bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            scratch_bytes=self.scratch_bytes,
            num_threads=self.num_threads,
        )
