"""float64 numpy references for every xent operation, written from the
documented semantics in include/xent/xent.h (not from the kernels).

All take 2-D float64 arrays (rows x classes) and return float64 results.
"""

import numpy as np

NEG_INF = -np.inf


def _lse(z):
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(z, axis=-1, keepdims=True) if z.shape[-1] else np.zeros(z.shape[:-1] + (1,))
        m_safe = np.where(np.isfinite(m), m, 0.0)
        s = np.sum(np.exp(z - m_safe), axis=-1)
        with np.errstate(divide="ignore"):
            out = np.log(s) + m_safe[..., 0]
    # +inf anywhere -> NaN (softmax undefined); NaN propagates.
    out = np.where(np.any(z == np.inf, axis=-1), np.nan, out)
    out = np.where(np.any(np.isnan(z), axis=-1), np.nan, out)
    return out


def log_softmax(z, T=1.0):
    z = z / T
    lse = _lse(z)
    with np.errstate(invalid="ignore"):
        return z - lse[:, None], lse


def softmax(z, T=1.0):
    lp, lse = log_softmax(z, T)
    with np.errstate(invalid="ignore"):
        return np.exp(lp), lse


def entropy(z, T=1.0):
    lp, _ = log_softmax(z, T)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        t = np.where(p > 0, p * lp, 0.0)
    t = np.where(np.isnan(lp), np.nan, t)
    return -t.sum(-1)


def softcap_fn(x, cap):
    if not cap:
        return x, np.ones_like(x)
    th = np.tanh(x / cap)
    return cap * th, 1.0 - th * th


def cross_entropy(
    x,
    target,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    grad_scale=1.0,
    row_scale=None,
):
    """Returns (loss, row_loss, lse, grad); loss is the SUM for 'none'."""
    B, V = x.shape
    z, dz = softcap_fn(x, softcap)
    w = np.ones(V) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    lp, lse = log_softmax(z)
    p = np.exp(lp)
    soft = target.ndim == 2
    with np.errstate(invalid="ignore"):
        if soft:
            q = (1 - eps) * target + eps / V
            wq = w[None, :] * q
            # 0 * log 0 = 0: zero target mass contributes nothing.
            nll = np.where(wq != 0, wq * (lse[:, None] - z), 0.0)
            row = nll.sum(-1) + z_loss * lse**2
            g = wq.sum(-1, keepdims=True) * p - wq + 2 * z_loss * lse[:, None] * p
            active = np.ones(B, bool)
            denom = float(B)
        else:
            t = np.asarray(target, np.int64)
            active = t != ignore_index
            ts = np.where(active, t, 0)
            wy = w[ts]
            zy = z[np.arange(B), ts]
            nll = (1 - eps) * wy * (lse - zy)
            smooth = (eps / V) * np.sum(w[None, :] * (lse[:, None] - z), axis=-1) if eps else 0.0
            row = nll + smooth + z_loss * lse**2
            onehot = np.zeros((B, V))
            onehot[np.arange(B), ts] = 1.0
            g = (
                (1 - eps) * wy[:, None] * (p - onehot)
                + (eps / V) * (w.sum() * p - w[None, :])
                + 2 * z_loss * lse[:, None] * p
            )
            row = np.where(active, row, 0.0)
            g = np.where(active[:, None], g, 0.0)
            denom = float(np.sum(np.where(active, wy, 0.0)))
        # A masked (-inf) class has p = 0, so its softmax part of the gradient
        # is exactly 0; target mass placed on it (index target, probability
        # target or smoothing) keeps its -q term, as PyTorch (the loss is +inf).
        g = g * dz
    total = row.sum()
    if reduction == "mean":
        loss = total / denom if denom != 0 else np.nan
        gs = 1.0 / denom if denom != 0 else np.nan
    else:
        loss = total
        gs = 1.0
    rs = np.ones(B) if row_scale is None else np.asarray(row_scale, np.float64)
    with np.errstate(invalid="ignore"):
        grad = g * gs * grad_scale * rs[:, None]
    # ignored rows have all-zero gradients, even when every row is ignored and
    # the mean is NaN (as torch)
    grad = np.where(active[:, None], grad, 0.0)
    return loss, row, lse, grad


def bce(x, y, *, weight=None, weight_rowwise=False, pos_weight=None, reduction="mean", grad_scale=1.0):
    """weight: None, a (V,) row broadcast, or a (B, V) matrix. Returns
    (loss, row_loss, elem_loss, grad)."""
    B, V = x.shape
    w = np.ones((B, V)) if weight is None else np.broadcast_to(np.asarray(weight, np.float64), (B, V))
    pw = np.ones(V) if pos_weight is None else np.asarray(pos_weight, np.float64)
    sp_pos = np.logaddexp(0.0, x)  # softplus(x)
    sp_neg = np.logaddexp(0.0, -x)  # softplus(-x)
    el = w * (pw[None, :] * y * sp_neg + (1 - y) * sp_pos)
    sig = 1.0 / (1.0 + np.exp(-x))
    g = w * (-pw[None, :] * y * (1 - sig) + (1 - y) * sig)
    total = el.sum()
    if reduction == "mean":
        d = B * V
    elif reduction == "batchmean":
        d = B
    else:
        d = 1
    loss = total / d if d else np.nan
    grad = g / d * grad_scale if d else g * np.nan
    return loss, el.sum(-1), el, grad


def _as_logp(x, kind, T):
    """(log-probabilities, a function mapping dL/d(logp) to dL/dx)."""
    if kind == "logits":
        lp, _ = log_softmax(x, T)
        p = np.exp(lp)
        return lp, lambda g: (g - p * g.sum(-1, keepdims=True)) / T
    if kind == "log_probs":
        return x, lambda g: g
    with np.errstate(divide="ignore"):
        lp = np.log(x)
    return lp, lambda g: np.where(x > 0, g / np.where(x > 0, x, 1.0), 0.0)


def divergence(
    inp,
    tgt,
    *,
    input_kind="log_probs",
    target_kind="probs",
    divergence="kl",
    beta=0.5,
    temperature=1.0,
    t2_scaling=False,
    reduction="mean",
    labels=None,
    ignore_index=-100,
    grad_scale=1.0,
):
    """Returns (loss, row_loss, elem_loss, grad_input, grad_target)."""
    B, V = inp.shape
    b, to_x_in = _as_logp(inp, input_kind, temperature)  # log q
    a, to_x_tg = _as_logp(tgt, target_kind, temperature)  # log p
    p, q = np.exp(a), np.exp(b)
    with np.errstate(invalid="ignore", divide="ignore"):

        def xlogy_diff(w, u, v):  # w * (u - v) with 0 where w == 0
            return np.where(w > 0, w * (u - v), 0.0)

        if divergence == "kl" or beta == 0.0:
            el = xlogy_diff(p, a, b)
            ga = np.where(p > 0, p * (a - b + 1), 0.0)
            gb = -p
        elif beta == 1.0:
            el = xlogy_diff(q, b, a)
            gb = np.where(q > 0, q * (b - a + 1), 0.0)
            ga = -q
        else:
            M = beta * p + (1 - beta) * q
            m = np.log(M)
            el = beta * xlogy_diff(p, a, m) + (1 - beta) * xlogy_diff(q, b, m)
            ga = beta * np.where(p > 0, p * (a - m), 0.0)
            gb = (1 - beta) * np.where(q > 0, q * (b - m), 0.0)
    scale = temperature**2 if t2_scaling else 1.0
    el = el * scale
    active = np.ones(B, bool) if labels is None else (np.asarray(labels) != ignore_index)
    el = np.where(active[:, None], el, 0.0)
    ga = np.where(active[:, None], ga, 0.0) * scale
    gb = np.where(active[:, None], gb, 0.0) * scale
    rows = int(active.sum())
    total = el.sum()
    d = {"mean": rows * V, "batchmean": rows, "sum": 1, "none": 1}[reduction]
    loss = total / d if d else np.nan
    f = (1.0 / d if d else np.nan) * grad_scale
    gi = to_x_in(gb) * f
    gt = to_x_tg(ga) * f
    return loss, el.sum(-1), el, gi, gt


def softmax_backward(y, g, kind="probs", T=1.0):
    if kind == "probs":
        return y * (g - (g * y).sum(-1, keepdims=True)) / T
    return (g - np.exp(y) * g.sum(-1, keepdims=True)) / T


def token_logprobs(x, target, *, temperature=1.0, softcap=None, ignore_index=-100):
    z, _ = softcap_fn(x, softcap)
    lp, lse = log_softmax(z, temperature)
    B = x.shape[0]
    t = np.asarray(target, np.int64)
    active = t != ignore_index
    ts = np.where(active, t, 0)
    out = np.where(active, lp[np.arange(B), ts], 0.0)
    return out, entropy(z, temperature), lse
