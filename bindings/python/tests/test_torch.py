"""xent.torch against torch.nn.functional itself (run in float64 as the
reference, and in the test dtype for drop-in identity), values and gradients,
plus torch tensors in the array API (zero-copy, bf16, DLPack)."""

import numpy as np
import pytest

from conftest import have_torch

if not have_torch():  # the pyenv python3 has no torch; XENT_REQUIRE_TORCH=1 makes this an error
    pytest.skip("torch is not importable", allow_module_level=True)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import xent  # noqa: E402
import xent.torch as xF  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _tol(dtype):
    # (values rtol/atol, gradients atol): f32 per the header; bf16/f16 inputs
    # compute in f32 but the gradient is rounded to the dtype (1 ulp).
    return {torch.float32: (2e-6, 2e-6, 1e-6), torch.bfloat16: (2e-6, 2e-6, None), torch.float16: (2e-6, 2e-6, None)}[
        dtype
    ]


def check(got, ref, rtol, atol, what):
    got = got.detach().double()
    ref = ref.detach().double()
    assert got.shape == ref.shape, "%s: shape %s != %s" % (what, tuple(got.shape), tuple(ref.shape))
    nan_ok = torch.isnan(got) == torch.isnan(ref)
    assert bool(nan_ok.all()), "%s: NaN pattern differs" % what
    m = ~torch.isnan(ref)
    err = (got[m] - ref[m]).abs()
    lim = atol + rtol * ref[m].abs()
    assert bool((err <= lim).all()), "%s: max err %g (limit at worst %g)" % (
        what,
        float((err - lim).max() + lim[(err - lim).argmax()]) if err.numel() else 0.0,
        float(lim[(err - lim).argmax()]) if err.numel() else 0.0,
    )


def check_grad(got, ref, dtype, what, scale=1.0, ulps=1):
    """f32: the header's 1e-6 absolute (times `scale` for weighted losses);
    bf16/f16: `ulps` units in the last place of the dtype at the reference's
    magnitude (1 = the header's contract for the kernel's own output; the
    autograd backward's scaling by a per-row/element upstream gradient rounds
    once more in the dtype, so such results get 2)."""
    if dtype == torch.float32:
        check(got, ref, 0.0, 1e-6 * scale, what)
        return
    mant = 7 if dtype == torch.bfloat16 else 10
    r = ref.detach().double()
    e = torch.floor(torch.log2(r.abs().clamp_min(2.0**-24 if dtype == torch.float16 else 2.0**-126)))
    tol = ulps * 2.0 ** (e - mant) + 1e-6 * scale  # + the f32 absolute bound (header)
    err = (got.detach().double() - r).abs()
    assert bool((err <= tol).all()), "%s: %d values beyond 1 ulp, max err %g" % (
        what,
        int((err > tol).sum()),
        float(err.max()),
    )


def grads(fn, *tensors, upstream=None):
    out = fn(*tensors)
    up = torch.ones_like(out) if upstream is None else upstream
    gs = torch.autograd.grad(out, [t for t in tensors if t.requires_grad], up)
    return out, gs


def leaf(x, dtype=None):
    x = x.detach().clone()
    if dtype is not None:
        x = x.to(dtype)
    return x.requires_grad_(True)


# ---------------------------------------------------------------------------
CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(weight=True, reduction="none"),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.3, weight=True),
    dict(ignore_index=3),
    dict(label_smoothing=0.2, weight=True, reduction="sum"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: ",".join("%s=%s" % kv for kv in sorted(c.items())) or "mean")
@pytest.mark.parametrize("V", [3, 1000, 4097])
def test_cross_entropy_matches_torch(dtype, case, V):
    g = torch.Generator().manual_seed(V)
    B = 9
    x0 = torch.randn(B, V, generator=g) * 3
    t = torch.randint(0, V, (B,), generator=g)
    t[2] = case.get("ignore_index", -100)
    t[4] = 3 % V
    kw = dict(case)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(V, generator=g) + 0.25
    none = kw.get("reduction") == "none"
    # reduced losses: upstream 1 (loss.backward()); the f32 test below and
    # test_upstream_gradient_and_retain_graph cover other scalars.
    up = torch.rand(B, generator=g) + 0.5 if none else torch.tensor(1.0)
    x = leaf(x0, dtype)
    out, (gx,) = grads(lambda a: xF.cross_entropy(a, t, **kw), x, upstream=up.to(dtype))
    x64 = leaf(x.detach(), torch.float64)
    kw64 = dict(kw)
    if "weight" in kw:
        kw64["weight"] = kw["weight"].double()
    ref, (gref,) = grads(lambda a: F.cross_entropy(a, t, **kw64), x64, upstream=up.double())
    assert out.dtype == dtype and gx.dtype == dtype
    rtol, atol, _ = _tol(dtype)
    # the loss is returned in the input dtype (as torch): compare at its precision
    if dtype == torch.float32:
        check(out, ref, rtol, atol, "loss")
    else:
        check(out, ref.to(dtype).double(), 1e-2, 1e-2, "loss (%s)" % dtype)
    check_grad(
        gx, gref, dtype, "grad", scale=2 * float(kw["weight"].max()) if "weight" in kw else 2, ulps=2 if none else 1
    )
    if dtype == torch.float32:  # identical to torch in the same dtype, within f32 rounding
        ref32, (g32,) = grads(lambda a: F.cross_entropy(a, t, **kw), leaf(x0), upstream=up)
        check(out, ref32, 1e-5, 1e-5, "loss vs torch f32")
        check(gx, g32, 1e-4, 1e-6, "grad vs torch f32")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_probability_targets(reduction, smoothing):
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(6, 50, generator=g) * 2
    q = torch.softmax(torch.randn(6, 50, generator=g) * 3, -1)
    w = torch.rand(50, generator=g) + 0.5
    out, (gx,) = grads(
        lambda a: xF.cross_entropy(a, q, weight=w, reduction=reduction, label_smoothing=smoothing), leaf(x0)
    )
    ref, (gr,) = grads(
        lambda a: F.cross_entropy(a, q.double(), weight=w.double(), reduction=reduction, label_smoothing=smoothing),
        leaf(x0, torch.float64),
    )
    check(out, ref, 2e-6, 2e-6, "loss")
    check(gx, gr, 0, 2e-6, "grad")


def test_cross_entropy_shapes():
    g = torch.Generator().manual_seed(7)
    # (N, C, d1, d2) with class dim 1, as torch
    x0 = torch.randn(2, 11, 3, 4, generator=g)
    t = torch.randint(0, 11, (2, 3, 4), generator=g)
    for red in ("mean", "none"):
        out, (gx,) = grads(lambda a, red=red: xF.cross_entropy(a, t, reduction=red), leaf(x0))
        ref, (gr,) = grads(lambda a, red=red: F.cross_entropy(a, t, reduction=red), leaf(x0, torch.float64))
        check(out, ref, 2e-6, 2e-6, "loss N-d " + red)
        check(gx, gr, 0, 1e-6, "grad N-d " + red)
    # unbatched (C,)
    x1 = torch.randn(11, generator=g)
    check(xF.cross_entropy(x1, torch.tensor(4)), F.cross_entropy(x1.double(), torch.tensor(4)), 2e-6, 2e-6, "1-d")
    # (B, T, V) language-model logits flattened as usual
    x3 = torch.randn(2, 5, 40, generator=g)
    t3 = torch.randint(0, 40, (2, 5), generator=g)
    check(
        xF.cross_entropy(x3.view(-1, 40), t3.view(-1)),
        F.cross_entropy(x3.double().view(-1, 40), t3.view(-1)),
        2e-6,
        2e-6,
        "flattened",
    )
    with pytest.raises(ValueError, match="target of shape"):
        xF.cross_entropy(x3.view(-1, 40), t3)
    # legacy arguments
    check(
        xF.cross_entropy(x3.view(-1, 40), t3.view(-1), size_average=False),
        F.cross_entropy(x3.double().view(-1, 40), t3.view(-1), reduction="sum"),
        2e-6,
        2e-6,
        "size_average",
    )


def test_cross_entropy_edge_cases():
    x0 = torch.randn(6, 20)
    t = torch.randint(0, 20, (6,))
    x0[0, [1, 2]] = -float("inf")
    t[0] = 5
    x0[1, 3] = float("nan")
    t[2] = -100
    x0[3] += 1e4
    out, (gx,) = grads(lambda a: xF.cross_entropy(a, t, reduction="none"), leaf(x0))
    ref, (gr,) = grads(lambda a: F.cross_entropy(a, t, reduction="none"), leaf(x0, torch.float64))
    check(out, ref, 2e-6, 2e-6, "rows")
    ok = [0, 2, 3, 4, 5]
    check(gx[ok], gr[ok], 0, 1e-6, "grad")
    assert bool(torch.isnan(gx[1]).all())
    assert gx[0, 1] == 0 and gx[0, 2] == 0
    # all rows ignored: mean is NaN (torch too), gradient zero
    tt = torch.full((6,), -100)
    xa = leaf(torch.randn(6, 20))
    la = xF.cross_entropy(xa, tt)
    assert torch.isnan(la) and torch.isnan(F.cross_entropy(xa.detach(), tt))
    # empty batch
    xe = leaf(torch.randn(0, 20))
    assert torch.isnan(xF.cross_entropy(xe, torch.zeros(0, dtype=torch.long)))
    assert xF.cross_entropy(xe, torch.zeros(0, dtype=torch.long), reduction="sum") == 0


def test_cross_entropy_z_loss_and_softcap_match_composition():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(7, 300, generator=g) * 8
    t = torch.randint(0, 300, (7,), generator=g)
    t[1] = -100
    cap, zl = 10.0, 1e-3

    def ref_fn(a):
        z = cap * torch.tanh(a / cap)
        lse = torch.logsumexp(z, -1)
        keep = t != -100
        return F.cross_entropy(z, t) + zl * (lse[keep] ** 2).sum() / keep.sum()

    out, (gx,) = grads(lambda a: xF.cross_entropy(a, t, z_loss=zl, softcap=cap), leaf(x0))
    ref, (gr,) = grads(ref_fn, leaf(x0, torch.float64))
    check(out, ref, 2e-6, 2e-6, "loss")
    check(gx, gr, 0, 1e-6, "grad")


def test_upstream_gradient_and_retain_graph():
    x = leaf(torch.randn(4, 30))
    t = torch.randint(0, 30, (4,))
    loss = xF.cross_entropy(x, t)
    (2.5 * loss).backward(retain_graph=True)
    g1 = x.grad.clone()
    x.grad = None
    loss.backward()
    xr = leaf(x.detach(), torch.float64)
    F.cross_entropy(xr, t).backward()
    check(g1, 2.5 * xr.grad, 0, 2e-6, "scaled")
    check(x.grad, xr.grad, 0, 1e-6, "second backward")


def test_no_grad_and_detached():
    x = torch.randn(4, 30)
    t = torch.randint(0, 30, (4,))
    with torch.no_grad():
        v = xF.cross_entropy(x.requires_grad_(), t)
    assert not v.requires_grad
    check(v, F.cross_entropy(x.detach().double(), t), 2e-6, 2e-6, "no_grad")


def test_training_loop_is_a_drop_in():
    """The same model trained with F.cross_entropy and xent.torch.cross_entropy
    (and the nn.Module drop-in) ends where it should."""

    def run(loss_fn):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 50))
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        g = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(8):
            xb = torch.randn(64, 16, generator=g)
            yb = torch.randint(0, 50, (64,), generator=g)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, [p.detach().clone() for p in model.parameters()]

    lt, pt = run(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1))
    lx, px = run(lambda a, b: xF.cross_entropy(a, b, label_smoothing=0.1))
    lm, pm = run(xF.CrossEntropyLoss(label_smoothing=0.1))
    li, pi = run(lambda a, b: xF.cross_entropy(a, b, label_smoothing=0.1, inplace_backward=True))
    for ls, ps in ((lx, px), (lm, pm), (li, pi)):
        np.testing.assert_allclose(ls, lt, rtol=1e-5, atol=1e-6)
        for a, b in zip(ps, pt):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_inplace_backward_overwrites_logits_with_grad():
    x0 = torch.randn(5, 40)
    t = torch.randint(0, 40, (5,))
    w = leaf(torch.randn(40, 40))
    logits = x0 @ w
    loss = xF.cross_entropy(logits, t, inplace_backward=True)
    loss.backward()
    w2 = leaf(w.detach())
    F.cross_entropy(x0 @ w2, t).backward()
    check(w.grad, w2.grad, 1e-5, 1e-6, "weight grad through the in-place gradient")


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    g = torch.Generator().manual_seed(11)
    inp = torch.log_softmax(torch.randn(2, 3, 70, generator=g), -1)
    tg = torch.softmax(torch.randn(2, 3, 70, generator=g) * 2, -1)
    if log_target:
        tg = tg.log()
    up = torch.rand(2, 3, 70, generator=g) if reduction == "none" else torch.tensor(0.6)
    out, (gi, gt) = grads(
        lambda a, b: xF.kl_div(a, b, reduction=reduction, log_target=log_target), leaf(inp), leaf(tg), upstream=up
    )
    ref, (gir, gtr) = grads(
        lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
        leaf(inp, torch.float64),
        leaf(tg, torch.float64),
        upstream=up.double(),
    )
    check(out, ref, 2e-6, 2e-6, "loss")
    check(gi, gir, 0, 1e-6, "grad input")
    check(gt, gtr, 1e-5, 1e-6, "grad target")
    assert type(xF.KLDivLoss(reduction="batchmean")(inp, tg if not log_target else tg.exp())) is torch.Tensor


@pytest.mark.parametrize("T,t2", [(1.0, False), (3.0, True)])
def test_kl_div_logits(T, t2):
    g = torch.Generator().manual_seed(12)
    s0 = torch.randn(4, 6, 200, generator=g) * 2
    t0 = torch.randn(4, 6, 200, generator=g) * 2

    def ref_fn(s, t):
        r = F.kl_div(
            torch.log_softmax(s / T, -1).reshape(-1, 200),
            torch.log_softmax(t / T, -1).reshape(-1, 200),
            reduction="batchmean",
            log_target=True,
        )
        return r * (T * T if t2 else 1.0)

    out, (gs, gt) = grads(lambda s, t: xF.kl_div_logits(s, t, temperature=T, t2_scaling=t2), leaf(s0), leaf(t0))
    ref, (gsr, gtr) = grads(ref_fn, leaf(s0, torch.float64), leaf(t0, torch.float64))
    check(out, ref, 2e-6, 2e-6, "loss")
    check(gs, gsr, 0, 1e-6, "grad student")
    check(gt, gtr, 0, 1e-6, "grad teacher")
    rows = xF.kl_div_logits(s0, t0, temperature=T, reduction="none")
    assert rows.shape == (4, 6)


def _liger_jsd_ref(log_q, log_p, beta, labels=None, ignore_index=-100):
    """Liger-Kernel's jsd (batchmean over non-ignored rows) in torch ops."""
    q, p = log_q.exp(), log_p.exp()
    if beta == 0.0:
        el = p * (log_p - log_q)
    elif beta == 1.0:
        el = q * (log_q - log_p)
    else:
        m = beta * p + (1 - beta) * q
        lm = m.log()
        el = beta * p * (log_p - lm) + (1 - beta) * q * (log_q - lm)
    rows = el.sum(-1)
    if labels is not None:
        keep = labels != ignore_index
        return (rows * keep).sum() / keep.sum()
    return rows.sum() / rows.shape[0]


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("with_labels", [False, True])
def test_jsd_matches_liger_formula(beta, with_labels):
    g = torch.Generator().manual_seed(13)
    lq = torch.log_softmax(torch.randn(8, 500, generator=g), -1)
    lp = torch.log_softmax(torch.randn(8, 500, generator=g) * 2, -1)
    labels = torch.tensor([1, -100, 3, 4, -100, 6, 7, 8]) if with_labels else None
    out, (gq, gp) = grads(lambda a, b: xF.jsd(a, b, beta=beta, labels=labels), leaf(lq), leaf(lp))
    ref, (gqr, gpr) = grads(
        lambda a, b: _liger_jsd_ref(a, b, beta, labels), leaf(lq, torch.float64), leaf(lp, torch.float64)
    )
    check(out, ref, 2e-6, 2e-6, "loss")
    check(gq, gqr, 0, 1e-6, "grad student")
    check(gp, gpr, 0, 1e-6, "grad teacher")
    m = xF.JSDLoss(beta=beta)
    check(m(lq, lp, labels), ref, 2e-6, 2e-6, "module")


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("wkind", ["none", "class", "row", "full", "pos", "pos+class"])
def test_bce_with_logits(dtype, reduction, wkind):
    g = torch.Generator().manual_seed(17)
    x0 = torch.randn(3, 5, 33, generator=g) * 4
    y = torch.rand(3, 5, 33, generator=g)
    y[0] = (y[0] > 0.5).float()
    kw = {}
    if wkind in ("class", "pos+class"):
        kw["weight"] = torch.rand(33, generator=g) + 0.5
    if wkind == "row":
        kw["weight"] = torch.rand(3, 5, 1, generator=g) + 0.5
    if wkind == "full":
        kw["weight"] = torch.rand(3, 5, 33, generator=g) + 0.5
    if wkind in ("pos", "pos+class"):
        kw["pos_weight"] = torch.rand(33, generator=g) * 3
    up = torch.rand(3, 5, 33, generator=g) if reduction == "none" else torch.tensor(1.0)
    x = leaf(x0, dtype)
    out, (gx,) = grads(
        lambda a: xF.binary_cross_entropy_with_logits(a, y.to(dtype), reduction=reduction, **kw),
        x,
        upstream=up.to(dtype),
    )
    kw64 = {k: v.double() for k, v in kw.items()}
    ref, (gr,) = grads(
        lambda a: F.binary_cross_entropy_with_logits(a, y.to(dtype).double(), reduction=reduction, **kw64),
        leaf(x.detach(), torch.float64),
        upstream=up.double(),
    )
    assert out.dtype == dtype
    if dtype == torch.float32:
        check(out, ref, 2e-6, 1e-5, "loss")
    else:
        check(out, ref.to(dtype).double(), 1e-2, 1e-2, "loss")
    check_grad(gx, gr, dtype, "grad", scale=8, ulps=2 if reduction == "none" else 1)


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_and_log_softmax(dtype, log, dim):
    g = torch.Generator().manual_seed(19)
    x0 = torch.randn(6, 5, 300, generator=g) * 3
    x0[0, 0, 0] = -float("inf")
    up = torch.randn(6, 5, 300, generator=g)
    fx, fr = (xF.log_softmax, F.log_softmax) if log else (xF.softmax, F.softmax)
    x = leaf(x0, dtype)
    out, (gx,) = grads(lambda a: fx(a, dim), x, upstream=up.to(dtype))
    ref, (gr,) = grads(lambda a: fr(a, dim), leaf(x.detach(), torch.float64), upstream=up.to(dtype).double())
    assert out.dtype == dtype and out.is_contiguous()
    fin = torch.isfinite(ref)
    if dtype == torch.float32:
        check(out[fin], ref[fin], 2e-6, 2e-6, "values")
        check(gx, gr, 1e-5, 1e-5 if log else 2e-6, "grad")
    else:
        check_grad(out[fin], ref[fin], dtype, "values")
        # the backward reads the rounded forward output: a few ulps
        check(gx, gr, 2e-2, 2e-2, "grad")


def test_softmax_temperature_and_dtype_arg():
    x0 = torch.randn(4, 100)
    out, (gx,) = grads(lambda a: xF.softmax(a, -1, temperature=2.0), leaf(x0))
    ref, (gr,) = grads(lambda a: F.softmax(a / 2.0, -1), leaf(x0, torch.float64))
    check(out, ref, 2e-6, 2e-6, "values")
    check(gx, gr, 0, 1e-6, "grad")
    y = xF.log_softmax(x0.to(torch.bfloat16), -1, dtype=torch.float32)
    assert y.dtype == torch.float32
    with pytest.warns(UserWarning):
        xF.softmax(x0)


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("T,cap", [(1.0, None), (0.7, None), (1.0, 5.0), (1.3, 4.0)])
def test_token_logprobs(T, cap):
    g = torch.Generator().manual_seed(23)
    x0 = torch.randn(2, 4, 800, generator=g) * 3
    t = torch.randint(0, 800, (2, 4), generator=g)
    t[0, 1] = -100
    ulp, uent = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)

    def ref_fn(a):
        z = cap * torch.tanh(a / cap) if cap else a
        lp = torch.log_softmax(z / T, -1)
        keep = t != -100
        tok = lp.gather(-1, t.clamp_min(0).unsqueeze(-1)).squeeze(-1) * keep
        ent = -(lp.exp() * lp).sum(-1)
        return tok, ent

    x = leaf(x0)
    lp, ent = xF.token_logprobs(x, t, entropy=True, temperature=T, softcap=cap)
    (gx,) = torch.autograd.grad([lp, ent], [x], [ulp, uent])
    x64 = leaf(x0, torch.float64)
    rlp, rent = ref_fn(x64)
    (gr,) = torch.autograd.grad([rlp, rent], [x64], [ulp.double(), uent.double()])
    check(lp, rlp, 2e-6, 2e-6, "logprob")
    check(ent, rent, 2e-6, 2e-6, "entropy")
    check(gx, gr, 1e-5, 2e-6, "grad")
    assert lp[0, 1] == 0
    lp_only = xF.token_logprobs(x, t, temperature=T, softcap=cap)
    (g1,) = torch.autograd.grad(lp_only.sum(), [x])
    (g1r,) = torch.autograd.grad(ref_fn(x64)[0].sum(), [x64])
    check(g1, g1r, 1e-5, 2e-6, "grad logprob only")


# ---------------------------------------------------------------------------
def test_torch_tensors_in_the_array_api_zero_copy_bf16():
    x = (torch.randn(6, 90) * 2).to(torch.bfloat16)
    t = torch.randint(0, 90, (6,))
    ref = F.cross_entropy(x.double(), t, reduction="sum")
    x64 = leaf(x, torch.float64)
    F.cross_entropy(x64, t, reduction="sum").backward()
    y = x.clone()
    ptr = y.data_ptr()
    loss, g = xent.cross_entropy(y, t, reduction="sum", grad="inplace")
    assert g is y and y.data_ptr() == ptr and isinstance(loss, torch.Tensor)
    check(loss, ref, 2e-6, 2e-6, "loss")
    check_grad(y, x64.grad, torch.bfloat16, "in-place bf16 grad")
    # a strided view (every other row, a column window) is used where it is
    big = torch.randn(10, 128)
    v = big[::2, 8:100]
    r = xent.cross_entropy(v, torch.randint(0, 92, (5,)), reduction="none")
    assert r.shape == (5,)

    # DLPack from a foreign producer, bf16
    class DL:
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, stream=None):
            return torch.utils.dlpack.to_dlpack(self.t)

        def __dlpack_device__(self):
            return (1, 0)

    got = xent.cross_entropy(DL(x), t, reduction="sum")
    assert isinstance(got, np.float32)  # non-torch producers get numpy results
    check(torch.tensor(float(got)), ref, 2e-6, 2e-6, "dlpack bf16")
    lp = xent.log_softmax(x.float())
    assert isinstance(lp, torch.Tensor) and lp.dtype == torch.float32


def test_torch_errors():
    t = torch.randint(0, 10, (4,))
    with pytest.raises(TypeError, match="float64"):
        xF.cross_entropy(torch.randn(4, 10, dtype=torch.float64), t)
    with pytest.raises(ValueError, match="device"):
        xent.cross_entropy(torch.randn(4, 10, device="meta"), t)
    with pytest.raises(ValueError, match="device"):
        xF.cross_entropy(torch.randn(4, 10, device="meta"), t)
    with pytest.raises(ValueError, match="outside"):
        xF.cross_entropy(torch.randn(4, 10), torch.tensor([0, 1, 2, 10]))
    with pytest.raises(NotImplementedError):
        xF.cross_entropy(torch.randn(4, 10), torch.rand(4, 10).requires_grad_())
