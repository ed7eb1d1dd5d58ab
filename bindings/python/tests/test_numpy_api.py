"""The array API against the float64 references (tests/reference.py) on
numpy inputs: values, gradients, options, edge cases, layouts, errors."""

import array

import numpy as np
import pytest

import xent

import reference as R
from conftest import BF16, assert_close, assert_low_precision, f64

ROW_RTOL, ROW_ATOL = 2e-6, 2e-6  # per-row values (header contract)
LOSS_RTOL, LOSS_ATOL = 2e-6, 2e-6  # reduced losses
GRAD_ATOL = 1e-6  # f32 gradients

FLOAT_DTYPES = [np.float32, np.float16] + ([BF16] if BF16 is not None else [])


def _dt_id(d):
    return np.dtype(d).name


def logits_of(rng, B, V, dtype=np.float32, scale=3.0):
    return (rng.standard_normal((B, V)) * scale).astype(dtype)


def check_grad(got, ref, dtype, scale=1.0, what="grad"):
    if np.dtype(dtype) == np.float32:
        assert_close(got, ref, 0.0, GRAD_ATOL * scale, what)
    else:
        assert_low_precision(got, ref, dtype, what)


# ---------------------------------------------------------------------------
# cross_entropy
CE_OPTIONS = [
    {},
    {"weight": True},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2, "weight": True},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"softcap": 2.0, "z_loss": 1e-2, "label_smoothing": 0.05, "weight": True},
    {"label_smoothing": 1.0},
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_dt_id)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", CE_OPTIONS, ids=lambda o: ",".join(sorted(o)) or "plain")
@pytest.mark.parametrize("B,V", [(5, 1), (7, 37), (3, 4099)])
def test_cross_entropy_index_targets(rng, dtype, reduction, opts, B, V):
    x = logits_of(rng, B, V, dtype)
    t = rng.integers(0, V, size=B)
    if B > 2:
        t[1] = -100
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = rng.uniform(0.2, 2.0, V).astype(np.float32)
    out, g = xent.cross_entropy(x, t, reduction=reduction, grad=True, **kw)
    loss, row, _, gref = R.cross_entropy(f64(x), t, reduction=reduction, **kw)
    wmax = float(np.max(kw.get("weight", [1.0])))
    if reduction == "none":
        assert out.dtype == np.float32 and out.shape == (B,)
        assert_close(out, row, ROW_RTOL, ROW_ATOL * wmax, "row_loss")
    else:
        assert isinstance(out, np.float32)
        assert_close(out, loss, LOSS_RTOL, LOSS_ATOL, "loss")
    assert g.dtype == np.dtype(dtype) and g.shape == x.shape
    check_grad(g, gref, dtype, wmax)


@pytest.mark.parametrize("tdtype", [np.int32, np.int64, np.uint8, np.int16])
def test_cross_entropy_index_dtypes(rng, tdtype):
    x = logits_of(rng, 6, 40)
    t = rng.integers(0, 40, size=6).astype(tdtype)
    assert_close(xent.cross_entropy(x, t), R.cross_entropy(f64(x), t.astype(np.int64))[0], LOSS_RTOL, LOSS_ATOL)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_dt_id)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "opts",
    [{}, {"weight": True, "label_smoothing": 0.1}, {"z_loss": 1e-3, "softcap": 4.0}],
    ids=lambda o: ",".join(sorted(o)) or "plain",
)
def test_cross_entropy_probability_targets(rng, dtype, reduction, opts):
    B, V = 6, 300
    x = logits_of(rng, B, V, dtype)
    q = rng.random((B, V)) ** 4
    q[:, 5] = 0.0
    q = (q / q.sum(1, keepdims=True)).astype(np.float32)
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = rng.uniform(0.2, 2.0, V).astype(np.float32)
    for qq in [q] + ([q.astype(dtype)] if np.dtype(dtype) != np.float32 else []):
        out, g = xent.cross_entropy(x, qq, reduction=reduction, grad=True, **kw)
        loss, row, _, gref = R.cross_entropy(f64(x), f64(qq), reduction=reduction, **kw)
        if reduction == "none":
            assert_close(out, row, ROW_RTOL, ROW_ATOL * 2, "row_loss")
        else:
            assert_close(out, loss, LOSS_RTOL, LOSS_ATOL, "loss")
        check_grad(g, gref, dtype, 2.0)


def test_cross_entropy_grad_scale_and_row_scale(rng):
    x = logits_of(rng, 5, 70)
    t = rng.integers(0, 70, size=5)
    rs = rng.uniform(-2, 2, 5).astype(np.float32)
    out, g = xent.cross_entropy(x, t, reduction="none", grad=True, grad_scale=0.5, row_scale=rs)
    _, row, _, gref = R.cross_entropy(f64(x), t, reduction="none", grad_scale=0.5, row_scale=rs)
    assert_close(out, row, ROW_RTOL, ROW_ATOL, "row_loss unaffected by scales")
    assert_close(g, gref, 0, GRAD_ATOL, "grad")


def test_cross_entropy_edge_cases(rng):
    V = 50
    x = logits_of(rng, 8, V)
    t = rng.integers(0, V, size=8)
    x[0, [3, 9]] = -np.inf  # masked classes
    t[0] = 4
    x[1, 7] = np.nan  # NaN row
    x[2, 0] = np.inf  # +inf row -> NaN
    x[3, :] += 1e4  # large offset: stable
    x[4, :] = -np.inf  # entirely masked row: lse = -inf, loss NaN
    t[5] = -100  # ignored row
    rows, g = xent.cross_entropy(x, t, reduction="none", grad=True)
    _, rref, _, gref = R.cross_entropy(f64(x), t, reduction="none")
    assert np.isnan(rows[1]) and np.all(np.isnan(g[1]))
    assert np.isnan(rows[2])
    assert np.isnan(rows[4])
    assert rows[5] == 0 and np.all(g[5] == 0)
    assert g[0, 3] == 0 and g[0, 9] == 0
    ok = [0, 3, 5, 6, 7]
    assert_close(rows[ok], rref[ok], ROW_RTOL, ROW_ATOL, "finite rows")
    assert_close(g[ok], gref[ok], 0, GRAD_ATOL, "finite grads")
    lse = xent.logsumexp(x)
    assert lse[4] == -np.inf


def test_target_mass_on_a_masked_class_is_torch_parity():
    """Loss +inf; the masked class's gradient is -q (index target: -1), as
    PyTorch (the header's "gradient exactly 0" holds for classes without
    target mass)."""
    x = np.array([[-np.inf, 0.5, 1.0]], np.float32)
    loss, g = xent.cross_entropy(x, np.array([0]), grad=True)
    assert loss == np.inf and g[0, 0] == -1.0
    loss, g = xent.cross_entropy(x, np.array([[0.5, 0.25, 0.25]], np.float32), grad=True)
    assert loss == np.inf and g[0, 0] == -0.5
    loss, g = xent.cross_entropy(x, np.array([1]), grad=True)
    assert np.isfinite(loss) and g[0, 0] == 0.0


def test_cross_entropy_all_ignored_and_empty(rng):
    x = logits_of(rng, 3, 10)
    t = np.full(3, -100)
    assert np.isnan(xent.cross_entropy(x, t))
    loss, g = xent.cross_entropy(x, t, reduction="sum", grad=True)
    assert loss == 0 and np.all(g == 0)
    e = np.zeros((0, 10), np.float32)
    te = np.zeros(0, np.int64)
    assert np.isnan(xent.cross_entropy(e, te))
    assert xent.cross_entropy(e, te, reduction="sum") == 0
    r, g = xent.cross_entropy(e, te, reduction="none", grad=True)
    assert r.shape == (0,) and g.shape == (0, 10)


def test_cross_entropy_custom_ignore_index(rng):
    x = logits_of(rng, 4, 9)
    t = np.array([1, 3, 3, 8])
    got = xent.cross_entropy(x, t, ignore_index=3, reduction="none")
    assert got[1] == 0 and got[2] == 0 and got[0] > 0


def test_cross_entropy_unbatched_and_nd(rng):
    x = logits_of(rng, 1, 33)[0]
    assert_close(
        xent.cross_entropy(x, np.int64(4)),
        R.cross_entropy(f64(x)[None], np.array([4]))[0],
        LOSS_RTOL,
        LOSS_ATOL,
        "unbatched",
    )
    x3 = (rng.standard_normal((2, 3, 33)) * 2).astype(np.float32)
    t3 = rng.integers(0, 33, size=(2, 3))
    r, g = xent.cross_entropy(x3, t3, reduction="none", grad=True)
    assert r.shape == (2, 3) and g.shape == (2, 3, 33)
    _, rref, _, gref = R.cross_entropy(f64(x3).reshape(6, 33), t3.reshape(6), reduction="none")
    assert_close(r.reshape(6), rref, ROW_RTOL, ROW_ATOL)
    assert_close(g.reshape(6, 33), gref, 0, GRAD_ATOL)


# ---------------------------------------------------------------------------
# Layouts: zero-copy strided views, copies, outputs.
def _layouts(rng):
    base = logits_of(rng, 12, 80)
    yield "row slice", base[::3]  # row stride 240
    yield "column slice (padded rows)", base[:, 5:66]
    yield "negative rows (copied)", base[::-2]
    yield "transposed (copied)", np.ascontiguousarray(base[:, :12].T).T
    yield "broadcast rows (copied)", np.broadcast_to(base[0], (4, 80))
    yield "fortran (copied)", np.asfortranarray(base[:5, :7])
    yield "3-d sliced", base.reshape(3, 4, 80)[:, 1:3]


def test_layouts(rng):
    for name, x in _layouts(rng):
        B = int(np.prod(x.shape[:-1]))
        V = x.shape[-1]
        t = rng.integers(0, V, size=x.shape[:-1])
        r, g = xent.cross_entropy(x, t, reduction="none", grad=True)
        _, rref, _, gref = R.cross_entropy(f64(x).reshape(B, V), t.reshape(B), reduction="none")
        assert_close(r.reshape(B), rref, ROW_RTOL, ROW_ATOL, name)
        assert_close(g.reshape(B, V), gref, 0, GRAD_ATOL, name)


def test_zero_copy_on_strided_views(rng):
    """A row-sliced / column-sliced view is read where it is: the in-place
    gradient lands in the parent array."""
    base = logits_of(rng, 6, 40)
    orig = base.copy()
    view = base[1::2, 3:30]
    t = rng.integers(0, 27, size=3)
    _, g = xent.cross_entropy(view, t, reduction="sum", grad="inplace")
    assert g is view
    _, _, _, gref = R.cross_entropy(f64(orig[1::2, 3:30]), t, reduction="sum")
    assert_close(base[1::2, 3:30], gref, 0, GRAD_ATOL, "in-place grad")
    untouched = np.ones_like(base, bool)
    untouched[1::2, 3:30] = False
    assert np.array_equal(base[untouched], orig[untouched]), "bytes outside the view were written"


def test_grad_into_given_arrays(rng):
    x = logits_of(rng, 4, 50)
    t = rng.integers(0, 50, size=4)
    _, _, _, gref = R.cross_entropy(f64(x), t)
    padded = np.full((4, 64), 7.0, np.float32)
    out = padded[:, :50]
    loss, g = xent.cross_entropy(x, t, grad=out)
    assert g is out
    assert_close(out, gref, 0, GRAD_ATOL)
    assert np.all(padded[:, 50:] == 7.0)
    if BF16 is not None:
        xb = x.astype(BF16)
        g32 = np.empty((4, 50), np.float32)
        xent.cross_entropy(xb, t, grad=g32)
        assert_close(g32, R.cross_entropy(f64(xb), t)[3], 0, GRAD_ATOL, "f32 grad of bf16 logits")


def test_inplace_grad(rng):
    for dtype in FLOAT_DTYPES:
        x = logits_of(rng, 5, 300, dtype)
        t = rng.integers(0, 300, size=5)
        ref = R.cross_entropy(f64(x), t)
        loss, g = xent.cross_entropy(x, t, grad="inplace")
        assert g is x
        assert_close(loss, ref[0], LOSS_RTOL, LOSS_ATOL)
        check_grad(x, ref[3], dtype)


def test_buffer_protocol_and_dlpack(rng):
    V = 16
    x = logits_of(rng, 3, V)
    t = rng.integers(0, V, size=3)
    ref = R.cross_entropy(f64(x), t)[0]
    buf = array.array("f", x.ravel().tolist())
    got = xent.cross_entropy(np.frombuffer(memoryview(buf), np.float32).reshape(3, V), t)
    assert_close(got, ref, LOSS_RTOL, LOSS_ATOL, "buffer protocol")
    # memoryview directly (1 row)
    mv = memoryview(array.array("f", x[0].tolist()))
    assert_close(
        xent.cross_entropy(mv, np.int64(t[0])),
        R.cross_entropy(f64(x[:1]), t[:1])[0],
        LOSS_RTOL,
        LOSS_ATOL,
        "memoryview",
    )

    class DL:  # a foreign DLPack producer
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, stream=None):
            return self.a.__dlpack__()

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    if hasattr(x, "__dlpack__"):
        assert_close(xent.cross_entropy(DL(x), DL(t)), ref, LOSS_RTOL, LOSS_ATOL, "dlpack")
        assert_close(
            xent.cross_entropy(DL(x[::2]), t[::2]),
            R.cross_entropy(f64(x[::2]), t[::2])[0],
            LOSS_RTOL,
            LOSS_ATOL,
            "dlpack strided",
        )


# ---------------------------------------------------------------------------
# Errors carry the C ABI's message.
def test_errors(rng):
    x = logits_of(rng, 4, 10)
    t = rng.integers(0, 10, size=4)
    with pytest.raises(TypeError, match="float64"):
        xent.cross_entropy(x.astype(np.float64), t)
    with pytest.raises(TypeError):
        xent.cross_entropy(x.astype(np.int32), t)
    with pytest.raises(ValueError, match="shape"):
        xent.cross_entropy(x, t[:3])
    with pytest.raises(ValueError, match=r"target\[2\] = 10 is outside \[0, 10\)") as ei:
        xent.cross_entropy(x, np.array([0, 1, 10, 2]))
    assert isinstance(ei.value, xent.XentError) and ei.value.status == 4
    with pytest.raises(ValueError, match="label_smoothing"):
        xent.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="z_loss"):
        xent.cross_entropy(x, t, z_loss=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        xent.cross_entropy(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="reduction"):
        xent.cross_entropy(x, t, reduction="avg")
    with pytest.raises(TypeError, match="grad_dtype"):
        xent.cross_entropy(x, t, grad=np.empty((4, 10), np.float16))
    with pytest.raises(ValueError, match="overlaps"):
        q = np.full((4, 10), 0.1, np.float32)
        xent.cross_entropy(x, q, grad=q)
    with pytest.raises(ValueError, match="inplace|contiguous|stride"):
        xent.cross_entropy(np.asfortranarray(x), t, grad="inplace")
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only|writable"):
        xent.cross_entropy(ro, t, grad="inplace")
    with pytest.raises(ValueError, match="num_classes = 0"):
        xent.cross_entropy(np.zeros((2, 0), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="weight"):
        xent.cross_entropy(x, t, weight=np.ones(3))
    with pytest.raises(ValueError, match="num_threads"):
        xent.cross_entropy(x, t, num_threads=-1)
    # A failed call leaves outputs untouched.
    g = np.full((4, 10), 3.0, np.float32)
    with pytest.raises(ValueError):
        xent.cross_entropy(x, np.array([0, 1, 99, 2]), grad=g)
    assert np.all(g == 3.0)


# ---------------------------------------------------------------------------
# Softmax family
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_dt_id)
@pytest.mark.parametrize("T", [1.0, 0.7])
@pytest.mark.parametrize("B,V", [(3, 1), (4, 77), (2, 5000)])
def test_softmax_family(rng, dtype, T, B, V):
    x = logits_of(rng, B, V, dtype)
    if V > 1:
        x[0, 0] = -np.inf
    p_ref, lse_ref = R.softmax(f64(x), T)
    lp_ref, _ = R.log_softmax(f64(x), T)
    p = xent.softmax(x, temperature=T)
    lp = xent.log_softmax(x, temperature=T)
    assert p.dtype == np.dtype(dtype) and lp.dtype == np.dtype(dtype)
    if np.dtype(dtype) == np.float32:
        assert_close(p, p_ref, 0, GRAD_ATOL, "softmax")
        assert_close(lp, lp_ref, ROW_RTOL, ROW_ATOL, "log_softmax")
    else:
        assert_low_precision(p, p_ref, dtype, "softmax")
        assert_low_precision(lp[np.isfinite(lp_ref)], lp_ref[np.isfinite(lp_ref)], dtype, "log_softmax")
    if V > 1:
        assert p[0, 0] == 0 and lp[0, 0] == -np.inf
    assert_close(xent.logsumexp(x, temperature=T), lse_ref, ROW_RTOL, ROW_ATOL, "logsumexp")
    assert_close(xent.entropy(x, temperature=T), R.entropy(f64(x), T), ROW_RTOL, ROW_ATOL, "entropy")


def test_softmax_dims_out_and_inplace(rng):
    x = logits_of(rng, 4, 6)
    assert_close(xent.softmax(x, dim=0), R.softmax(f64(x).T)[0].T, 0, GRAD_ATOL, "dim=0")
    assert_close(xent.logsumexp(x, 0, keepdim=True), R.log_softmax(f64(x).T)[1][None, :], ROW_RTOL, ROW_ATOL)
    assert xent.logsumexp(x, keepdim=True).shape == (4, 1)
    out = np.empty((4, 6), np.float32)
    assert xent.log_softmax(x, out=out) is out
    assert_close(out, R.log_softmax(f64(x))[0], ROW_RTOL, ROW_ATOL)
    y = x.copy()
    assert xent.softmax(y, out=y) is y
    assert_close(y, R.softmax(f64(x))[0], 0, GRAD_ATOL, "in place")
    with pytest.raises(ValueError, match="temperature"):
        xent.softmax(x, temperature=0.0)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_softmax_backward(rng, T):
    x = logits_of(rng, 5, 90)
    g = rng.standard_normal((5, 90)).astype(np.float32)
    p = xent.softmax(x, temperature=T)
    lp = xent.log_softmax(x, temperature=T)
    assert_close(
        xent.softmax_backward(p, g, temperature=T),
        R.softmax_backward(f64(p), f64(g), "probs", T),
        0,
        GRAD_ATOL,
        "softmax_backward",
    )
    assert_close(
        xent.log_softmax_backward(lp, g, temperature=T),
        R.softmax_backward(f64(lp), f64(g), "log_probs", T),
        0,
        4 * GRAD_ATOL,
        "log_softmax_backward",
    )
    g2 = g.copy()
    assert xent.softmax_backward(p, g2, temperature=T, out=g2) is g2


# ---------------------------------------------------------------------------
# token_logprobs
@pytest.mark.parametrize(
    "opts",
    [{}, {"temperature": 0.8}, {"softcap": 3.0}, {"softcap": 3.0, "temperature": 1.5}],
    ids=lambda o: ",".join(sorted(o)) or "plain",
)
def test_token_logprobs(rng, opts):
    x = logits_of(rng, 7, 4100)
    t = rng.integers(0, 4100, size=7)
    t[3] = -100
    lp, ent = xent.token_logprobs(x, t, entropy=True, **opts)
    ref_lp, ref_ent, _ = R.token_logprobs(f64(x), t, **opts)
    assert lp[3] == 0
    assert_close(lp, ref_lp, ROW_RTOL, ROW_ATOL, "logprob")
    assert_close(ent, ref_ent, ROW_RTOL, ROW_ATOL, "entropy")
    assert_close(xent.token_logprobs(x, t, **opts), ref_lp, ROW_RTOL, ROW_ATOL, "logprob only")
    with pytest.raises(ValueError, match="outside"):
        xent.token_logprobs(x, np.full(7, 4100))


# ---------------------------------------------------------------------------
# Divergences
def _dist(rng, B, V, kind, T=1.0):
    z = rng.standard_normal((B, V)) * 2
    if kind == "logits":
        return z.astype(np.float32)
    lp, _ = R.log_softmax(z)
    return (lp if kind == "log_probs" else np.exp(lp)).astype(np.float32)


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(rng, reduction, log_target):
    B, V = 6, 130
    inp = _dist(rng, B, V, "log_probs")
    tgt = _dist(rng, B, V, "log_probs" if log_target else "probs")
    tgt[0, :3] = -np.inf if log_target else 0.0  # zero target mass: contributes 0
    out, gi, gt = xent.kl_div(inp, tgt, reduction=reduction, log_target=log_target, grad=True, grad_target=True)
    loss, _, el, gir, gtr = R.divergence(
        f64(inp),
        f64(tgt),
        input_kind="log_probs",
        target_kind="log_probs" if log_target else "probs",
        reduction=reduction,
    )
    if reduction == "none":
        assert out.shape == (B, V)
        assert_close(out, el, ROW_RTOL, ROW_ATOL, "elementwise")
    else:
        assert_close(out, loss, LOSS_RTOL, LOSS_ATOL, "loss")
    assert_close(gi, gir, 0, GRAD_ATOL, "grad_input")
    assert_close(gt, gtr, 1e-5, GRAD_ATOL, "grad_target")
    assert np.all(np.isfinite(gt))


def test_kl_div_batchmean_is_torch_dim0(rng):
    inp = _dist(rng, 6, 20, "log_probs").reshape(2, 3, 20)
    tgt = _dist(rng, 6, 20, "probs").reshape(2, 3, 20)
    s = xent.kl_div(inp, tgt, reduction="sum")
    assert_close(xent.kl_div(inp, tgt, reduction="batchmean"), s / 2, LOSS_RTOL, LOSS_ATOL)


@pytest.mark.parametrize("T,t2", [(1.0, False), (2.0, False), (2.0, True)])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
def test_kl_div_logits(rng, T, t2, reduction):
    B, V = 5, 4500
    s = _dist(rng, B, V, "logits")
    te = _dist(rng, B, V, "logits")
    labels = np.array([1, -100, 3, 4, 5])
    out, gi, gt = xent.kl_div_logits(
        s, te, temperature=T, t2_scaling=t2, reduction=reduction, labels=labels, grad=True, grad_target=True
    )
    loss, rows, _, gir, gtr = R.divergence(
        f64(s),
        f64(te),
        input_kind="logits",
        target_kind="logits",
        temperature=T,
        t2_scaling=t2,
        reduction=reduction,
        labels=labels,
    )
    if reduction == "none":
        assert_close(out, rows, ROW_RTOL, ROW_ATOL * T * T, "rows")
    else:
        assert_close(out, loss, LOSS_RTOL, LOSS_ATOL, "loss")
    assert np.all(gi[1] == 0)
    assert_close(gi, gir, 0, GRAD_ATOL * T * T, "grad student")
    assert_close(gt, gtr, 0, GRAD_ATOL * T * T, "grad teacher")


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("kinds", [("log_probs", "log_probs"), ("logits", "logits"), ("probs", "log_probs")])
def test_jsd(rng, beta, kinds):
    B, V = 6, 257
    inp = _dist(rng, B, V, kinds[0])
    tgt = _dist(rng, B, V, kinds[1])
    labels = np.array([0, 1, -100, 3, 4, -100])
    out, gi, gt = xent.jsd(
        inp, tgt, beta=beta, input_kind=kinds[0], target_kind=kinds[1], labels=labels, grad=True, grad_target=True
    )
    loss, _, _, gir, gtr = R.divergence(
        f64(inp),
        f64(tgt),
        input_kind=kinds[0],
        target_kind=kinds[1],
        divergence="jsd",
        beta=beta,
        reduction="batchmean",
        labels=labels,
    )
    assert_close(out, loss, LOSS_RTOL, LOSS_ATOL, "jsd loss")
    gscale = 1.0 if kinds[0] != "probs" else 50.0  # d/dq of probabilities is ~1/q
    assert_close(gi, gir, 1e-5, GRAD_ATOL * gscale, "grad input")
    assert_close(gt, gtr, 1e-5, GRAD_ATOL, "grad target")
    rows = xent.jsd(inp, tgt, beta=beta, input_kind=kinds[0], target_kind=kinds[1], reduction="none")
    _, rref, _, _, _ = R.divergence(
        f64(inp), f64(tgt), input_kind=kinds[0], target_kind=kinds[1], divergence="jsd", beta=beta, reduction="none"
    )
    assert_close(rows, rref, ROW_RTOL, ROW_ATOL, "jsd rows")


def test_divergence_errors(rng):
    a = _dist(rng, 3, 8, "log_probs")
    with pytest.raises(ValueError, match="beta"):
        xent.jsd(a, a.copy(), beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        xent.kl_div_logits(a, a.copy(), temperature=-1.0)
    with pytest.raises(ValueError, match="shape"):
        xent.kl_div(a, a[:2])
    with pytest.raises(ValueError, match="input_kind"):
        xent.jsd(a, a, input_kind="logit")


# ---------------------------------------------------------------------------
# BCE with logits
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_dt_id)
@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean", "none"])
@pytest.mark.parametrize("opts", ["plain", "pos_weight", "row_weight", "full_weight", "both"])
def test_bce_with_logits(rng, dtype, reduction, opts):
    B, V = 5, 67
    x = (rng.standard_normal((B, V)) * 4).astype(dtype)
    x[0, 0] = 40.0
    x[0, 1] = -40.0
    y = rng.random((B, V)).astype(np.float32)
    y[1] = y[1] > 0.5
    kw, rkw = {}, {}
    if opts in ("pos_weight", "both"):
        kw["pos_weight"] = rkw["pos_weight"] = rng.uniform(0.5, 3, V).astype(np.float32)
    if opts in ("row_weight", "both"):
        kw["weight"] = rkw["weight"] = rng.uniform(0.5, 2, V).astype(np.float32)
    if opts == "full_weight":
        kw["weight"] = rkw["weight"] = rng.uniform(0.5, 2, (B, V)).astype(np.float32)
    out, g = xent.binary_cross_entropy_with_logits(x, y, reduction=reduction, grad=True, **kw)
    loss, _, el, gref = R.bce(f64(x), f64(y), reduction=reduction, **rkw)
    if reduction == "none":
        assert out.shape == (B, V)
        assert_close(out, el, ROW_RTOL, ROW_ATOL * 6, "elementwise")
    else:
        assert_close(out, loss, LOSS_RTOL, LOSS_ATOL, "loss")
    check_grad(g, gref, dtype, 6.0)


def test_bce_weight_broadcasts(rng):
    x = logits_of(rng, 4, 6)
    y = rng.random((4, 6)).astype(np.float32)
    w = rng.uniform(0.5, 2, (4, 1)).astype(np.float32)  # per-row weight, copied to full
    got = xent.binary_cross_entropy_with_logits(x, y, weight=w, reduction="sum")
    assert_close(
        got, R.bce(f64(x), f64(y), weight=np.broadcast_to(w, (4, 6)), reduction="sum")[0], LOSS_RTOL, LOSS_ATOL
    )
    got = xent.binary_cross_entropy_with_logits(x[0, 0], y[0, 0])  # 0-d
    assert_close(got, R.bce(f64(x[:1, :1]), f64(y[:1, :1]))[0], LOSS_RTOL, LOSS_ATOL)
    with pytest.raises(ValueError, match="broadcast"):
        xent.binary_cross_entropy_with_logits(x, y, weight=np.ones(5))


def test_bce_accuracy_for_large_logits():
    """Per-element BCE within the header's 2e-6 relative + 2e-6 absolute where
    no cancellation is inherent: l = y * softplus(-x) + (1 - y) * softplus(x)
    is a sum of two non-negative terms (found by test_bce_property)."""
    x = np.array([[-68.96943, 61.227573, -76.66995, 30.0, -30.0]], np.float32)
    y = np.array([[0.0022375858, 0.001, 0.999, 0.5, 0.01]], np.float32)
    got = xent.binary_cross_entropy_with_logits(x, y, reduction="none")
    _, _, ref, _ = R.bce(f64(x), f64(y), reduction="none")
    assert_close(got, ref, ROW_RTOL, ROW_ATOL, "elementwise BCE")
    assert_close(
        xent.binary_cross_entropy_with_logits(x, y, reduction="sum"), ref.sum(), LOSS_RTOL, LOSS_ATOL, "summed BCE"
    )
