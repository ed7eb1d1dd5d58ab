"""torch autograd for the per-token statistics (re-exported by xent.torch):
token_stats, token_logprobs, topk_logprobs and kl_penalty.

The forward is one xent_token_logprobs call (one read of each row, nothing
B x V kept but the logits themselves, as torch keeps them); it also returns
each row's lse and entropy, saved for the backward, which is then one
xent_token_logprobs_backward pass over the logits for all the statistics
together (the PPO/GRPO policy-gradient + entropy-bonus + KL backward).
"""

from __future__ import annotations

import torch as _torch
from torch.autograd.function import once_differentiable as _once_differentiable

from . import _token_stats as _ts

__all__ = ["token_stats", "token_logprobs", "topk_logprobs", "kl_penalty"]

# Outputs with a gradient w.r.t. the logits, in the order _TokenStatsFn
# returns them (after which come the others).
_DIFF = ("logprob", "entropy", "argmax_logprob", "topk_logprobs", "kl")


def _check_float(t, name):
    if not isinstance(t, _torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.dtype not in (_torch.float32, _torch.bfloat16, _torch.float16):
        raise TypeError("%s has dtype %s; xent.torch takes float32, bfloat16 or float16" % (name, t.dtype))
    if t.device.type != "cpu":
        raise ValueError("%s is on device '%s'; xent runs on CPU tensors" % (name, t.device))


class _TokenStatsFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, ref_logits, target, kw, names):
        # names: the requested outputs; the forward adds lse and entropy (the
        # backward's statistics) and ref_lse with kl.
        want = set(names)
        r = _ts.token_stats(
            logits,
            target,
            logprob="logprob" in want,
            entropy=True,
            lse=True,
            argmax="argmax" in want,
            topk=kw["topk"],
            topk_mass="topk_mass" in want,
            ref_logits=ref_logits,
            ref_logprob="ref_logprob" in want,
            ref_lse=ref_logits is not None and "kl" in want,
            kl="kl" in want,
            temperature=kw["temperature"],
            softcap=kw["softcap"],
            ignore_index=kw["ignore_index"],
            num_threads=kw["num_threads"],
        )
        ctx.kw = kw
        ctx.names = names
        ctx.save_for_backward(logits, ref_logits, target, r.lse, r.entropy, r.argmax, r.topk_indices, r.ref_lse, r.kl)
        outs = tuple(getattr(r, n) for n in names)
        ctx.mark_non_differentiable(*[o for n, o in zip(names, outs) if n not in _DIFF])
        return outs

    @staticmethod
    @_once_differentiable
    def backward(ctx, *grads):
        logits, ref_logits, target, lse, entropy, argmax, topk_i, ref_lse, kl = ctx.saved_tensors
        kw = ctx.kw
        g = {n: gr for n, gr in zip(ctx.names, grads) if n in _DIFF and gr is not None}
        # Log-probabilities at classes: the top-k and the argmax, as one list.
        idx, gidx = [], []
        if "topk_logprobs" in g:
            idx.append(topk_i)
            gidx.append(g["topk_logprobs"])
        if "argmax_logprob" in g:
            idx.append(argmax.unsqueeze(-1))
            gidx.append(g["argmax_logprob"].unsqueeze(-1))
        grad = _ts.token_stats_backward(
            logits,
            target,
            grad_logprob=g.get("logprob"),
            grad_entropy=g.get("entropy"),
            lse=lse,
            entropy=entropy,
            topk_indices=_torch.cat(idx, -1) if idx else None,
            grad_topk_logprobs=_torch.cat(gidx, -1) if gidx else None,
            ref_logits=ref_logits if "kl" in g else None,
            grad_kl=g.get("kl"),
            ref_lse=ref_lse,
            kl=kl,
            temperature=kw["temperature"],
            softcap=kw["softcap"],
            ignore_index=kw["ignore_index"],
            num_threads=kw["num_threads"],
        )
        return grad, None, None, None, None


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
    """Per-token statistics of z = softcap(logits) / temperature (classes on
    the last axis), one read of each row: see xent.token_stats for the fields.
    Differentiable w.r.t. logits: logprob, entropy, argmax_logprob,
    topk_logprobs and kl (the reference logits are a constant; gradients
    w.r.t. them are not supported). The backward of everything requested is
    one fused pass over the logits. Results are float32 (int64 indices).
    """
    _check_float(logits, "logits")
    if ref_logits is not None:
        _check_float(ref_logits, "ref_logits")
        if ref_logits.requires_grad and _torch.is_grad_enabled():
            raise NotImplementedError(
                "xent.torch.token_stats: gradients with respect to ref_logits are not supported (detach them)"
            )
        ref_logits = ref_logits.detach()
    if logprob is None:
        logprob = target is not None
    if ref_logprob is None:
        ref_logprob = ref_logits is not None and target is not None
    if kl is None:
        kl = ref_logits is not None
    names = [
        n
        for n, on in (
            ("logprob", logprob),
            ("entropy", entropy),
            ("lse", lse),
            ("argmax", argmax),
            ("argmax_logprob", argmax),
            ("topk_logprobs", topk > 0),
            ("topk_indices", topk > 0),
            ("topk_mass", topk_mass),
            ("ref_logprob", ref_logprob),
            ("ref_lse", ref_lse),
            ("kl", kl),
        )
        if on
    ]
    V = logits.shape[-1] if logits.dim() else 1
    lead = logits.shape[:-1]
    x = logits.reshape(-1, V) if logits.dim() != 2 else logits
    t = None if target is None else target.reshape(-1)
    r = None if ref_logits is None else (ref_logits.reshape(-1, V) if ref_logits.dim() != 2 else ref_logits)
    kw = dict(
        topk=int(topk),
        temperature=float(temperature),
        softcap=softcap,
        ignore_index=int(ignore_index),
        num_threads=num_threads,
    )
    if _torch.is_grad_enabled() and logits.requires_grad:
        outs = _TokenStatsFn.apply(x, r, t, kw, tuple(names))
        res = dict(zip(names, outs))
    else:  # no autograd node
        s = _ts.token_stats(
            x,
            t,
            logprob=logprob,
            entropy=entropy,
            lse=lse,
            argmax=argmax,
            topk=topk,
            topk_mass=topk_mass,
            ref_logits=r,
            ref_logprob=ref_logprob,
            ref_lse=ref_lse,
            kl=kl,
            temperature=temperature,
            softcap=softcap,
            ignore_index=ignore_index,
            num_threads=num_threads,
        )
        res = {n: getattr(s, n) for n in names}
    for n, v in res.items():
        res[n] = v.reshape(tuple(lead) + ((int(topk),) if n.startswith("topk_") and n != "topk_mass" else ()))
    return _ts.TokenStats(**res)


def token_logprobs(
    logits, target, *, entropy=False, temperature=1.0, softcap=None, ignore_index=-100, num_threads=None
):
    """log softmax(z)[target] per row (z = softcap(logits) / temperature; the
    last axis is classes), differentiable; with entropy=True also the entropy
    of softmax(z), differentiable too (both backwards in one fused pass).
    Ignored rows give 0."""
    s = token_stats(
        logits,
        target,
        entropy=entropy,
        temperature=temperature,
        softcap=softcap,
        ignore_index=ignore_index,
        num_threads=num_threads,
    )
    return (s.logprob, s.entropy) if entropy else s.logprob


def topk_logprobs(logits, k, *, temperature=1.0, softcap=None, num_threads=None):
    """The k largest log-probabilities of softmax(softcap(logits) /
    temperature) per row and their class indices, as torch.topk(log_softmax(
    ...), k) (largest first; equal logits by lower index), without the B x V
    log_softmax. Values are float32 and differentiable w.r.t. logits."""
    s = token_stats(logits, None, topk=k, temperature=temperature, softcap=softcap, num_threads=num_threads)
    return s.topk_logprobs, s.topk_indices


class _KlPenaltyFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logprob, ref_logprob, kw, need_grad):
        if need_grad:
            pen, g = _ts.kl_penalty(logprob, ref_logprob, grad=True, **kw)
            ctx.save_for_backward(g)
        else:
            pen = _ts.kl_penalty(logprob, ref_logprob, **kw)
        ctx.dtypes = (logprob.dtype, ref_logprob.dtype)
        return pen

    @staticmethod
    @_once_differentiable
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        gl = d * g.to(d.dtype)
        g0 = gl.to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        g1 = (-gl).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return g0, g1, None, None


def kl_penalty(logprob, ref_logprob, kind="k3", *, log_ratio_clamp=None, value_clamp=None, straight_through=False):
    """Per-token KL penalty estimator between policy and reference
    log-probabilities of the sampled tokens (verl's kl_penalty, TRL / OpenRLHF
    k3), elementwise, float32, differentiable w.r.t. both: kind "k1" ("kl"),
    "k2" ("mse"), "k3" ("low_var_kl"), "abs"; a trailing "+" gives the kind's
    value with the k2 gradient (verl's "k3+"). verl clamps low_var_kl with
    log_ratio_clamp=20, value_clamp=10 (off by default here, as TRL)."""
    kw = dict(kind=kind, straight_through=straight_through, log_ratio_clamp=log_ratio_clamp, value_clamp=value_clamp)
    need = _torch.is_grad_enabled() and (
        getattr(logprob, "requires_grad", False) or getattr(ref_logprob, "requires_grad", False)
    )
    if not need:
        return _ts.kl_penalty(logprob, ref_logprob, **kw)
    return _KlPenaltyFn.apply(logprob, ref_logprob, kw, True)
