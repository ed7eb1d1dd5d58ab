"""Per-token statistics (xent.token_stats / token_stats_backward /
kl_penalty, xent.torch.token_stats / token_logprobs / topk_logprobs /
kl_penalty) against float64 references: numpy for the array API, torch
autograd in float64 for the gradients, verl's formulas for the KL
estimators."""

import numpy as np
import pytest

import xent  # noqa: E402

from conftest import BF16, assert_close, f64, have_torch


def _ref_stats(x, y, T=1.0, cap=None, k=0, ref=None, ignore_index=-100):
    z = f64(x)
    if cap:
        z = cap * np.tanh(z / cap)
    z = z / T
    m = z.max(-1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(-1, keepdims=True))
    lp = z - lse
    p = np.exp(lp)
    ent = -(np.where(p > 0, p * lp, 0)).sum(-1)
    rows = np.arange(x.shape[0])
    ign = y == ignore_index
    out = dict(
        lse=lse[:, 0],
        entropy=ent,
        logprob=np.where(ign, 0.0, lp[rows, np.where(ign, 0, y)]),
        argmax=np.argmax(f64(x), -1),
    )
    order = np.argsort(-f64(x), -1, kind="stable")[:, :k]
    out["topk_indices"] = order
    out["topk_logprobs"] = np.take_along_axis(lp, order, -1)
    if ref is not None:
        zq = f64(ref)
        if cap:
            zq = cap * np.tanh(zq / cap)
        zq = zq / T
        mq = zq.max(-1, keepdims=True)
        lq = zq - (mq + np.log(np.exp(zq - mq).sum(-1, keepdims=True)))
        out["kl"] = np.where(p > 0, p * (lp - lq), 0).sum(-1)
        out["ref_logprob"] = np.where(ign, 0.0, lq[rows, np.where(ign, 0, y)])
    return out


@pytest.mark.parametrize("V", [1, 7, 300, 5000])
@pytest.mark.parametrize("T,cap", [(1.0, None), (0.7, 10.0)])
def test_numpy_stats_match_float64(rng, V, T, cap):
    x = (rng.standard_normal((6, V)) * 3).astype(np.float32)
    ref = (x + 0.3 * rng.standard_normal((6, V))).astype(np.float32)
    y = rng.integers(0, V, 6)
    y[2] = -100
    k = min(V, 5)
    s = xent.token_stats(
        x, y, entropy=True, lse=True, argmax=True, topk=k, topk_mass=True, ref_logits=ref, temperature=T, softcap=cap
    )
    r = _ref_stats(x, y, T, cap, k, ref)
    tol = dict(rtol=2e-6, atol=2e-5)
    for name in ("lse", "entropy", "logprob", "topk_logprobs", "kl", "ref_logprob"):
        assert_close(getattr(s, name), r[name], what=name, **tol)
    assert (s.argmax == r["argmax"]).all()
    assert (s.topk_indices == r["topk_indices"]).all()
    assert_close(s.topk_mass, np.exp(r["topk_logprobs"]).sum(-1), 2e-6, 2e-5, "topk_mass")
    assert s.logprob.dtype == np.float32 and s.topk_indices.dtype == np.int64


def test_ties_are_broken_by_the_lower_index():
    x = np.zeros((3, 100), np.float32)
    x[1, [5, 50, 99]] = 2.0
    x[2] = np.arange(100) % 4
    s = xent.token_stats(x, topk=10, argmax=True)
    want = np.argsort(-x, -1, kind="stable")[:, :10]
    assert (s.topk_indices == want).all()
    assert list(s.argmax) == [0, 5, 3]


@pytest.mark.skipif(BF16 is None, reason="ml_dtypes missing")
def test_bf16_logits_reach_f32_accuracy(rng):
    x = (rng.standard_normal((4, 32000)) * 4).astype(BF16)
    y = rng.integers(0, 32000, 4)
    s = xent.token_stats(x, y, entropy=True, topk=8)
    r = _ref_stats(x, y, k=8)  # float64 on the same bf16 values
    for name in ("logprob", "entropy", "topk_logprobs"):
        assert_close(getattr(s, name), r[name], 2e-6, 1e-5, name)
    assert (s.topk_indices == r["topk_indices"]).all()


def test_backward_matches_the_closed_form(rng):
    B, V = 5, 200
    x = (rng.standard_normal((B, V)) * 2).astype(np.float32)
    ref = (x + 0.5 * rng.standard_normal((B, V))).astype(np.float32)
    y = rng.integers(0, V, B)
    g_lp, g_h, g_kl = rng.standard_normal(B), rng.standard_normal(B), rng.standard_normal(B)
    g_lp[3] = g_h[3] = g_kl[3] = 0  # a zero row
    z = f64(x)
    lp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    lq = (
        f64(ref)
        - np.log(np.exp(f64(ref) - f64(ref).max(-1, keepdims=True)).sum(-1, keepdims=True))
        - f64(ref).max(-1, keepdims=True)
    )
    p = np.exp(lp)
    H = -(p * lp).sum(-1, keepdims=True)
    KL = (p * (lp - lq)).sum(-1, keepdims=True)
    onehot = np.eye(V)[y]
    want = g_lp[:, None] * (onehot - p) - g_h[:, None] * p * (lp + H) + g_kl[:, None] * p * (lp - lq - KL)
    for stats in (False, True):
        kw = {}
        if stats:
            s = xent.token_stats(x, y, entropy=True, lse=True, ref_logits=ref, ref_lse=True)
            kw = dict(lse=s.lse, entropy=s.entropy, ref_lse=s.ref_lse, kl=s.kl)
        g = xent.token_stats_backward(x, y, grad_logprob=g_lp, grad_entropy=g_h, ref_logits=ref, grad_kl=g_kl, **kw)
        assert_close(g, want, 2e-6, 2e-6, "grad (stats passed: %s)" % stats)
        assert (g[3] == 0).all()
    xi = x.copy()
    xent.token_stats_backward(xi, y, grad_logprob=g_lp, grad="inplace")
    assert_close(xi, g_lp[:, None] * (onehot - p), 2e-6, 2e-6, "in place")


@pytest.mark.parametrize("kind", ["k1", "k2", "k3", "abs", "low_var_kl", "k3+"])
def test_kl_penalty_matches_verl(rng, kind):
    lp = -np.abs(rng.standard_normal(64) * 3).astype(np.float32)
    ref = -np.abs(rng.standard_normal(64) * 3).astype(np.float32)
    ref[::7] *= 12  # some log-ratios beyond the clamp
    clamp = kind in ("low_var_kl", "k3+")
    pen, g = xent.kl_penalty(
        lp, ref, kind=kind, grad=True, log_ratio_clamp=20 if clamp else None, value_clamp=10 if clamp else None
    )
    d = f64(lp) - f64(ref)
    base = kind.rstrip("+")
    if base in ("k1", "kl"):
        v, gw = d, np.ones_like(d)
    elif base == "k2":
        v, gw = 0.5 * d * d, d
    elif base == "abs":
        v, gw = np.abs(d), np.sign(d)
    else:
        r = -d
        rc = np.clip(r, -20, 20) if clamp else r
        v = np.exp(rc) - rc - 1
        gw = np.where(np.abs(r) > 20, 0, 1 - np.exp(rc)) if clamp else 1 - np.exp(rc)
        if clamp:
            gw = np.where(v > 10, 0, gw)
            v = np.clip(v, -10, 10)
    if kind.endswith("+"):
        gw = d
    assert_close(pen, v, 2e-6, 2e-5, "penalty")
    assert_close(g, gw, 2e-6, 2e-5 * (1 + np.abs(gw)).max(), "gradient")


if have_torch():
    import torch

    import xent.torch as xF

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_torch_autograd_matches_torch_float64(rng, dtype):
        B, V, k = 6, 700, 4
        x0 = torch.tensor(rng.standard_normal((B, V)) * 3, dtype=dtype)
        ref = (x0.double() + 0.3 * torch.randn(B, V, dtype=torch.float64)).to(dtype)
        y = torch.tensor(rng.integers(0, V, B))
        y[1] = -100
        T = 0.8
        x = x0.clone().requires_grad_(True)
        s = xF.token_stats(x, y, entropy=True, argmax=True, topk=k, ref_logits=ref, temperature=T)
        w = torch.tensor(rng.standard_normal((5, B)))
        loss = (
            (w[0] * s.logprob.double()).sum()
            + (w[1] * s.entropy.double()).sum()
            + (w[2] * s.kl.double()).sum()
            + (w[3] * s.argmax_logprob.double()).sum()
            + (w[4][:, None] * s.topk_logprobs.double()).sum()
        )
        loss.backward()
        # float64 torch composition on the same values.
        xd = x0.double().requires_grad_(True)
        lp = torch.log_softmax(xd / T, -1)
        lq = torch.log_softmax(ref.double() / T, -1)
        p = lp.exp()
        keep = y != -100
        lpy = torch.where(keep, lp.gather(1, y.clamp(min=0)[:, None])[:, 0], torch.zeros(B, dtype=torch.float64))
        ent = -(p * lp).sum(-1)
        kl = (p * (lp - lq)).sum(-1)
        # (torch.topk leaves the order of equal values open: bf16 has ties.)
        topi = torch.sort(xd.detach(), stable=True, dim=-1, descending=True).indices[:, :k]
        top_lp = lp.gather(1, topi)
        ref_loss = (
            (w[0] * lpy).sum()
            + (w[1] * ent).sum()
            + (w[2] * kl).sum()
            + (w[3] * top_lp[:, 0]).sum()
            + (w[4][:, None] * top_lp).sum()
        )
        ref_loss.backward()
        assert torch.equal(s.topk_indices, topi) and torch.equal(s.argmax, topi[:, 0])
        assert torch.allclose(s.logprob.double(), lpy, rtol=2e-6, atol=2e-5)
        assert torch.allclose(s.kl.double(), kl, rtol=2e-6, atol=2e-5)
        atol = 2e-6 * 20 if dtype == torch.float32 else None
        if atol is not None:
            assert torch.allclose(x.grad.double(), xd.grad, rtol=2e-6, atol=atol)
        else:  # the f32 gradient rounded to bf16: within one bf16 ulp
            err = (x.grad.double() - xd.grad).abs()
            assert bool((err <= xd.grad.abs() * 2**-8 + 2e-5).all()), float(err.max())

    def test_torch_token_logprobs_and_topk_logprobs(rng):
        x = torch.tensor(rng.standard_normal((3, 4, 50)), dtype=torch.float32, requires_grad=True)
        y = torch.tensor(rng.integers(0, 50, (3, 4)))
        lp, ent = xF.token_logprobs(x, y, entropy=True)
        assert lp.shape == (3, 4) and ent.shape == (3, 4)
        (lp.sum() + ent.sum()).backward()
        xd = x.detach().double().requires_grad_(True)
        lq = torch.log_softmax(xd, -1)
        (lq.gather(-1, y[..., None]).sum() - (lq.exp() * lq).sum()).backward()
        assert torch.allclose(x.grad.double(), xd.grad, atol=1e-5)
        v, i = xF.topk_logprobs(x.detach(), 3)
        tv, ti = torch.log_softmax(x.detach().double(), -1).topk(3)
        assert v.shape == (3, 4, 3) and torch.equal(i, ti) and torch.allclose(v.double(), tv, atol=1e-5)

    def test_torch_kl_penalty_gradients(rng):
        lp = torch.tensor(-np.abs(rng.standard_normal(20)), dtype=torch.float32, requires_grad=True)
        rp = torch.tensor(-np.abs(rng.standard_normal(20)), dtype=torch.float32, requires_grad=True)
        for kind in ("k1", "k2", "k3"):
            lp.grad = rp.grad = None
            xF.kl_penalty(lp, rp, kind).sum().backward()
            ld, rd = lp.detach().double().requires_grad_(True), rp.detach().double().requires_grad_(True)
            r = rd - ld
            v = {"k1": -r, "k2": 0.5 * r * r, "k3": r.exp() - r - 1}[kind]
            v.sum().backward()
            assert torch.allclose(lp.grad.double(), ld.grad, atol=1e-5), kind
            assert torch.allclose(rp.grad.double(), rd.grad, atol=1e-5), kind
