"""Fused linear cross-entropy: the numpy API against a float64 numpy
computation of the same formula, and xent.torch.linear_cross_entropy /
LinearCrossEntropyLoss against torch's linear + cross_entropy in float64
(values and gradients through autograd)."""

import numpy as np
import pytest

import xent

from conftest import BF16, have_torch

pytestmark = pytest.mark.skipif(xent.blas_backend() == "none", reason="libxent built without a BLAS")


def ref_f64(
    h, w, t, b=None, cw=None, reduction="mean", ignore_index=-100, eps=0.0, z_loss=0.0, softcap=None, with_g=False
):
    """Loss, row losses and the gradients of h, w, b in float64 (and the
    logits' gradient G when with_g)."""
    h, w = h.astype(np.float64), w.astype(np.float64)
    N, V = h.shape[0], w.shape[0]
    x = h @ w.T + (0.0 if b is None else b.astype(np.float64))
    z = softcap * np.tanh(x / softcap) if softcap else x
    m = z.max(axis=1, keepdims=True)
    s = np.exp(z - m).sum(axis=1, keepdims=True)
    lse = (m + np.log(s))[:, 0]
    p = np.exp(z - m) / s
    cwv = np.ones(V) if cw is None else cw.astype(np.float64)
    keep = t != ignore_index
    ty = np.where(keep, t, 0)
    wy = cwv[ty] * keep
    nll = lse - z[np.arange(N), ty]
    smooth = (cwv[None, :] * (lse[:, None] - z)).sum(axis=1) / V
    rows = keep * ((1 - eps) * wy * nll + eps * smooth + z_loss * lse**2)
    div = wy.sum() if reduction == "mean" else 1.0
    loss = rows.sum() / div if reduction != "none" else rows
    onehot = np.zeros_like(z)
    onehot[np.arange(N), ty] = 1.0
    g = (
        (1 - eps) * wy[:, None] * (p - onehot)
        + eps / V * (cwv.sum() * p - cwv[None, :])
        + 2 * z_loss * lse[:, None] * p
    )
    g = g * keep[:, None] / div
    if softcap:
        g = g * (1 - (z / softcap) ** 2)
    if with_g:
        return loss, rows, g @ w, g.T @ h, g.sum(axis=0), g
    return loss, rows, g @ w, g.T @ h, g.sum(axis=0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [{}, {"eps": 0.1, "cw": True}, {"z_loss": 1e-3, "softcap": 5.0}])
def test_numpy_matches_float64(rng, reduction, opts):
    N, H, V = 37, 48, 1500
    h = rng.standard_normal((N, H)).astype(np.float32)
    w = (rng.standard_normal((V, H)) / np.sqrt(H)).astype(np.float32)
    b = (rng.standard_normal(V) * 0.3).astype(np.float32)
    t = rng.integers(0, V, N)
    t[::5] = -100
    cw = rng.uniform(0.5, 1.5, V).astype(np.float32) if opts.get("cw") else None
    eps, z, cap = opts.get("eps", 0.0), opts.get("z_loss", 0.0), opts.get("softcap")
    loss, gh, gw, gb = xent.linear_cross_entropy(
        h,
        w,
        t,
        linear_bias=b,
        weight=cw,
        reduction=reduction,
        label_smoothing=eps,
        z_loss=z,
        softcap=cap,
        grad=True,
        scratch_bytes=8 * (V + H) * 4,
    )
    rl, rrows, rgh, rgw, rgb = ref_f64(h, w, t, b, cw, reduction, eps=eps, z_loss=z, softcap=cap)
    np.testing.assert_allclose(loss, rl, rtol=2e-5, atol=2e-5)
    # Gradients: f32 GEMM sums of a few hundred terms, relative to the largest.
    for got, want, name in ((gh, rgh, "grad_input"), (gw, rgw, "grad_weight"), (gb, rgb, "grad_bias")):
        assert got.dtype == np.float32
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale + 1e-7, err_msg=name)


def test_numpy_dtypes_outputs_and_accumulate(rng):
    if BF16 is None:
        pytest.skip("ml_dtypes not installed")
    N, H, V = 20, 32, 700
    h = rng.standard_normal((N, H)).astype(BF16)
    w = (rng.standard_normal((V, H)) / np.sqrt(H)).astype(BF16)
    t = rng.integers(0, V, N)
    loss, gh, gw, gb = xent.linear_cross_entropy(h, w, t, grad=True)
    assert gh.dtype == BF16 and gw.dtype == BF16 and gb is None
    hf, wf = h.astype(np.float32), w.astype(np.float32)
    rl, _, rgh, rgw, _, g = ref_f64(hf, wf, t, with_g=True)
    np.testing.assert_allclose(loss, rl, rtol=1e-5)
    # bf16 outputs: the f32 result rounded (1 bf16 ulp = 2^-8 relative) + the GEMM error; where
    # libxent runs bf16 GEMMs (oneDNN, AVX512_BF16) G is rounded to bf16 first: up to 2^-8 of the
    # sum of the terms' magnitudes (xent.h).
    ag = np.abs(g)
    for got, want, terms in ((gh, rgh, ag @ np.abs(wf)), (gw, rgw, ag.T @ np.abs(hf))):
        err = np.abs(got.astype(np.float64) - want)
        assert np.all(err <= 2**-8 * np.abs(want) + 2**-8 * terms + 1e-5 * np.abs(want).max())
    # f32 gradients of bf16 inputs, accumulated into caller arrays.
    out = {"input": np.ones((N, H), np.float32), "weight": np.full((V, H), 0.5, np.float32)}
    r = xent.linear_cross_entropy(h, w, t, grad=("input", "weight"), grad_dtype="float32", out=out, accumulate=True)
    assert r[1] is out["input"] and r[2] is out["weight"]
    np.testing.assert_allclose(out["input"], 1.0 + rgh, rtol=0, atol=1e-5 * np.abs(rgh).max() + 1e-7)
    np.testing.assert_allclose(out["weight"], 0.5 + rgw, rtol=0, atol=1e-5 * np.abs(rgw).max() + 1e-7)


def test_numpy_bad_input(rng):
    h = np.zeros((4, 8), np.float32)
    w = np.zeros((10, 8), np.float32)
    with pytest.raises(ValueError, match="target"):
        xent.linear_cross_entropy(h, w, np.array([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="features"):
        xent.linear_cross_entropy(h, np.zeros((10, 7), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="scratch_bytes"):
        xent.linear_cross_entropy(h, w, np.zeros(4, np.int64), scratch_bytes=16)
    with pytest.raises(TypeError):
        xent.linear_cross_entropy(h, w.astype(np.float16), np.zeros(4, np.int64))


# ---------------------------------------------------------------------------
# torch
if have_torch():
    import torch
    import torch.nn.functional as F

    import xent.torch as xF


def _torch_case(N, H, V, dtype, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, H, generator=g).to(dtype).requires_grad_()
    w = (torch.randn(V, H, generator=g) / H**0.5).to(dtype).requires_grad_()
    b = (torch.randn(V, generator=g) * 0.2).to(dtype).requires_grad_() if bias else None
    t = torch.randint(0, V, (N,), generator=g)
    t[::6] = -100
    return h, w, b, t


def _grads(fn, params):
    for p in params:
        if p is not None:
            p.grad = None
    out = fn()
    out.backward(torch.ones_like(out) if out.dim() else None)
    return out.detach(), [None if p is None else p.grad for p in params]


@pytest.mark.skipif(not have_torch(), reason="torch is not importable")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [False, True])
def test_torch_matches_float64(dtype, reduction, bias):
    dt = getattr(torch, dtype)
    N, H, V = 29, 40, 1200
    h, w, b, t = _torch_case(N, H, V, dt, bias)
    kw = dict(reduction=reduction, label_smoothing=0.05)
    up = torch.rand(N) if reduction == "none" else None
    loss, gs = _grads(
        lambda: (
            (xF.linear_cross_entropy(h, w, t, linear_bias=b, **kw) * (up if up is not None else 1)).sum()
            if reduction == "none"
            else xF.linear_cross_entropy(h, w, t, linear_bias=b, **kw)
        ),
        [h, w, b],
    )
    params64 = [p.detach().double().requires_grad_() if p is not None else None for p in (h, w, b)]
    h64, w64, b64 = params64

    def ref():
        r = F.cross_entropy(F.linear(h64, w64, b64), t, **kw)
        return (r * up.double()).sum() if up is not None else r

    rloss, rgs = _grads(ref, params64)
    lt = 2e-5 if dtype == "float32" else 2e-2
    assert abs(float(loss) - float(rloss)) <= lt * max(1.0, abs(float(rloss)))
    for got, want, name in zip(gs, rgs, ("input", "weight", "bias")):
        if want is None:
            assert got is None
            continue
        assert got.dtype == dt, name
        scale = float(want.abs().max())
        tol = (2e-5 if dtype == "float32" else 2**-7) * scale + 1e-7
        err = float((got.double() - want).abs().max())
        assert err <= tol, "%s: max err %g > %g" % (name, err, tol)


@pytest.mark.skipif(not have_torch(), reason="torch is not importable")
def test_torch_module_and_upstream_scale():
    torch.manual_seed(0)
    m = xF.LinearCrossEntropyLoss(16, 300, bias=True)
    ref = torch.nn.Linear(16, 300, bias=True)
    ref.load_state_dict(m.linear.state_dict())
    x = torch.randn(3, 5, 16, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    t = torch.randint(0, 300, (3, 5))
    (m(x, t) * 2.5).backward()
    (F.cross_entropy(ref(x2).reshape(-1, 300), t.reshape(-1)) * 2.5).backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m.linear.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m.linear.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert m(x, t).requires_grad is False
    with pytest.raises(NotImplementedError):
        xF.LinearCrossEntropyLoss(16, 300, out_features=(2,))
