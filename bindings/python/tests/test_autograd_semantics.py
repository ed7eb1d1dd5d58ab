"""xent.torch and autograd: the gradient handed over without a copy and
without a lingering reference, values bit-identical to the kernel's gradient
times the upstream gradient (as the drop-ins always computed them), and
autograd's semantics intact: accumulation, retain_graph, non-leaf logits,
inplace_backward on views and on tensors other ops saved, double backward,
no reference cycles or growth over many steps."""

import gc
import weakref

import numpy as np
import pytest

from conftest import have_torch

if not have_torch():
    pytest.skip("torch is not importable", allow_module_level=True)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import xent  # noqa: E402
import xent.torch as xF  # noqa: E402
from xent import _arrays, _buffers  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16]


def _leaf(x, dtype=torch.float32):
    return x.detach().to(dtype).clone().requires_grad_()


def _data(B=6, V=70, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, V, generator=g) * 3).to(dtype)
    t = torch.randint(0, V, (B,), generator=g)
    t[1] = -100
    return x, t, g


def _bits(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert torch.equal(a, b) or bool((a.isnan() == b.isnan()).all() and (a[~a.isnan()] == b[~b.isnan()]).all()), (
        "%s: gradients differ (max |diff| %g)" % (what, float((a.double() - b.double()).abs().max()))
    )


def _backward_ops(fn):
    """Names of the aten ops the backward of fn() runs."""
    out = fn()
    with torch.autograd.profiler.profile() as prof:
        out.backward()
    return [e.name for e in prof.function_events]


# ---------------------------------------------------------------------------
# Values: identical to the kernel's gradient times the upstream gradient.
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "reduction,upstream",
    [("mean", "one"), ("mean", "scalar"), ("sum", "one"), ("sum", "scalar"), ("none", "one"), ("none", "per-row")],
)
def test_cross_entropy_gradient_values(dtype, reduction, upstream):
    x0, t, g = _data(dtype=dtype)
    kw = dict(reduction=reduction, label_smoothing=0.05)
    _, kgrad = xent.cross_entropy(x0, t, grad=True, **kw)
    x = _leaf(x0, dtype)
    loss = xF.cross_entropy(x, t, **kw)
    if upstream == "one":
        up = torch.ones_like(loss)
        expected = kgrad
    elif upstream == "scalar":
        up = torch.tensor(2.5, dtype=loss.dtype)
        expected = kgrad * up.to(kgrad.dtype)
    else:
        up = (torch.rand(loss.shape, generator=g) + 0.5).to(loss.dtype)
        expected = kgrad * up.reshape(-1, 1).to(kgrad.dtype)
    loss.backward(up)
    _bits(x.grad, expected, "cross_entropy %s %s" % (reduction, upstream))


@pytest.mark.parametrize("reduction", ["batchmean", "none"])
def test_divergence_gradient_values(reduction):
    s0, _, g = _data(seed=2)
    t0 = torch.randn(s0.shape, generator=g) * 2
    _, kgi, kgt = xent.kl_div_logits(s0, t0, temperature=2.0, reduction=reduction, grad=True, grad_target=True)
    s, tt = _leaf(s0), _leaf(t0)
    loss = xF.kl_div_logits(s, tt, temperature=2.0, reduction=reduction)
    up = torch.rand(loss.shape, generator=g) + 0.5 if reduction == "none" else torch.tensor(0.75)
    loss.backward(up)
    scale = up.reshape(-1, 1) if reduction == "none" else up
    _bits(s.grad, kgi * scale, "kl_div_logits student")
    _bits(tt.grad, kgt * scale, "kl_div_logits teacher")
    # kl_div (elementwise 'none'), jsd, BCE: one-off checks of the same rule
    lq = torch.log_softmax(s0, -1)
    p = torch.softmax(t0, -1)
    _, kg = xent.kl_div(lq, p, reduction="none", grad=True)
    q = _leaf(lq)
    up = torch.rand(lq.shape, generator=g)
    xF.kl_div(q, p, reduction="none").backward(up)
    _bits(q.grad, kg * up, "kl_div none")
    _, kg = xent.jsd(lq, torch.log_softmax(t0, -1), beta=0.3, grad=True)
    q = _leaf(lq)
    xF.jsd(q, torch.log_softmax(t0, -1), beta=0.3).backward()
    _bits(q.grad, kg, "jsd")
    y = (torch.rand(s0.shape, generator=g) > 0.5).float()
    _, kg = xent.binary_cross_entropy_with_logits(s0, y, grad=True)
    b = _leaf(s0)
    (3 * xF.binary_cross_entropy_with_logits(b, y)).backward()
    _bits(b.grad, kg * torch.tensor(3.0), "bce")


@pytest.mark.parametrize("T,cap", [(1.0, None), (0.7, None), (1.0, 15.0), (1.6, 20.0)])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_token_logprobs_gradient_values(T, cap, dtype):
    x0, t, g = _data(seed=4, dtype=dtype)
    x = _leaf(x0, dtype)
    lp = xF.token_logprobs(x, t, temperature=T, softcap=cap)
    up = torch.rand(lp.shape, generator=g) - 0.5
    lp.backward(up)
    # as the drop-in always computed it: CE with row_scale = -g on logits / T (softcap / T), then / T
    xs = x0 if T == 1.0 else x0 / T
    expected = torch.empty_like(xs)
    xent.cross_entropy(
        xs, t, reduction="none", softcap=None if not cap else cap / T, row_scale=-up.float(), grad=expected
    )
    if T != 1.0:
        expected = expected / T
    _bits(x.grad, expected, "token_logprobs T=%g cap=%s" % (T, cap))


def _ours_and_after(ops):
    """The ops of xent's backward node and of everything after it
    (AccumulateGrad): a profiler event list starting at our node."""
    i = next(k for k, o in enumerate(ops) if o.startswith("_") and o.endswith("FnBackward"))
    return ops[i:]


def test_upstream_one_runs_no_pass_and_other_values_scale_in_place():
    x0, t, _ = _data(B=64, V=2000)
    x = _leaf(x0)
    ops = _ours_and_after(_backward_ops(lambda: xF.cross_entropy(x, t)))
    assert not [o for o in ops if o.startswith("aten::mul") or o in ("aten::clone", "aten::copy_")], ops
    x.grad = None
    ops = _ours_and_after(_backward_ops(lambda: 2.0 * xF.cross_entropy(x, t)))
    # one in-place pass over our own buffer, no copy anywhere (also not in AccumulateGrad)
    assert [o for o in ops if o.startswith("aten::mul")] == ["aten::mul_"], ops
    assert not [o for o in ops if o in ("aten::clone", "aten::copy_", "aten::empty_like")], ops
    x.grad = None
    ops = _ours_and_after(_backward_ops(lambda: xF.cross_entropy(x, t, reduction="none").sum()))
    assert not [o for o in ops if o.startswith("aten::mul") or o == "aten::copy_"], ops  # expanded ones: no pass


# ---------------------------------------------------------------------------
# No copy: AccumulateGrad takes the buffer the forward wrote.
@pytest.fixture
def recorded(monkeypatch):
    """Records (shape, address) of every result array xent allocates."""
    import xent._api as api

    seen = []
    real = _arrays.empty

    def empty(kind, shape, code):
        arr, ptr = real(kind, shape, code)
        seen.append((tuple(shape), ptr))
        return arr, ptr

    monkeypatch.setattr(_arrays, "empty", empty)
    monkeypatch.setattr(api, "empty", empty)
    if api._fast is not None:  # the compiled path allocates large results through the function it was bound to
        api._fast.bind(*_arrays.fast_bind_args(empty))
    try:
        yield seen
    finally:
        if api._fast is not None:
            api._fast.bind(*_arrays.fast_bind_args(real))


@pytest.mark.parametrize("op", ["cross_entropy", "kl_div_logits", "bce", "token_logprobs", "token_stats"])
def test_gradient_is_taken_without_a_copy(op, recorded):
    x0, t, g = _data(B=32, V=50000)  # 6.4 MB: from xent's buffers
    x = _leaf(x0)
    if op == "cross_entropy":
        loss = xF.cross_entropy(x, t)
    elif op == "kl_div_logits":
        loss = xF.kl_div_logits(x, torch.randn(x0.shape, generator=g))
    elif op == "bce":
        loss = xF.binary_cross_entropy_with_logits(x, torch.rand(x0.shape, generator=g))
    elif op == "token_logprobs":
        loss = xF.token_logprobs(x, t).sum()
    else:  # log p and entropy (the GRPO loss's statistics): one fused backward
        r = xF.token_stats(x, t, entropy=True)
        loss = r.logprob.sum() - 0.01 * r.entropy.sum()
    loss.backward()
    ptrs = [p for s, p in recorded if s == tuple(x0.shape)]
    assert ptrs and x.grad.data_ptr() == ptrs[-1], "x.grad is a copy of the gradient the drop-in produced"
    assert x.grad.data_ptr() % _buffers.HUGE_PAGE == 0


def test_shard_gradient_comes_from_the_buffers(recorded):
    # cross_entropy_shard_finish(grad=True): the shard's B x width gradient
    # from xent's huge-page advised buffers, as every large result.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(32, 50000, generator=g)
    t = torch.randint(0, 50000, (32,), generator=g)
    stats = xent.cross_entropy_shard_stats(x, t, num_classes=50000, class_offset=0)
    _, grad = xent.cross_entropy_shard_finish(x, t, stats, num_classes=50000, class_offset=0, grad=True)
    assert grad.data_ptr() in [p for s, p in recorded if s == (32, 50000)]
    assert grad.data_ptr() % _buffers.HUGE_PAGE == 0


def test_inplace_backward_allocates_nothing_b_by_v(recorded):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(64, 32, generator=g).requires_grad_()
    W = (torch.randn(20000, 32, generator=g) * 0.1).requires_grad_()  # 5 MB of logits: a B x V result
    t = torch.randint(0, 20000, (64,), generator=g)  # would come from the recorded allocator
    logits = F.linear(h, W)
    ptr = logits.data_ptr()
    xF.cross_entropy(logits, t, inplace_backward=True).backward()
    assert not [s for s, _ in recorded if len(s) == 2], recorded
    # the gradient is where the logits were; the weights' gradients are torch's, unchanged
    h2, W2 = h.detach().clone().requires_grad_(), W.detach().clone().requires_grad_()
    _, kg = xent.cross_entropy(F.linear(h2, W2).detach(), t, grad=True)
    assert torch.equal(logits, kg) and logits.data_ptr() == ptr
    torch.testing.assert_close(W.grad, kg.t() @ h2.detach(), rtol=1e-6, atol=1e-7)
    # on a leaf, x.grad is x's own memory (the documented alias)
    x = _leaf(torch.randn(8, 100, generator=g))
    xF.cross_entropy(x, t[:8] % 100, inplace_backward=True).backward()
    assert x.grad.data_ptr() == x.data_ptr()


# ---------------------------------------------------------------------------
# Autograd semantics.
def test_grad_accumulates_across_two_backward_calls():
    x0, t, _ = _data()
    _, k1 = xent.cross_entropy(x0, t, grad=True)
    _, k2 = xent.cross_entropy(x0, t, reduction="sum", label_smoothing=0.1, grad=True)
    x = _leaf(x0)
    xF.cross_entropy(x, t).backward()
    first = x.grad
    xF.cross_entropy(x, t, reduction="sum", label_smoothing=0.1).backward()
    _bits(x.grad, k1 + k2, "accumulated")
    assert x.grad is first or torch.equal(first, x.grad)  # accumulated in place (torch's choice)
    # and for the divergence / BCE drop-ins
    tch = torch.randn(x0.shape)
    s = _leaf(x0)
    xF.kl_div_logits(s, tch).backward()
    xF.kl_div_logits(s, tch).backward()
    _bits(s.grad, 2 * xent.kl_div_logits(x0, tch, grad=True)[1], "kl accumulated")


@pytest.mark.parametrize("op", ["cross_entropy", "cross_entropy_soft", "kl_div_logits", "bce"])
def test_retain_graph_twice(op):
    x0, t, g = _data(seed=9)
    other = torch.randn(x0.shape, generator=g)
    x = _leaf(x0)
    if op == "cross_entropy":
        loss = xF.cross_entropy(x, t, reduction="none")
    elif op == "cross_entropy_soft":
        loss = xF.cross_entropy(x, torch.softmax(other, -1), reduction="none", label_smoothing=0.1)
    elif op == "kl_div_logits":
        loss = xF.kl_div_logits(x, other, reduction="none")
    else:
        loss = xF.binary_cross_entropy_with_logits(x, other.sigmoid(), reduction="none")
    up = torch.rand(loss.shape, generator=g)
    grads = []
    for scale in (1.0, 2.0, 0.5):  # the first backward hands the buffer over; later ones recompute
        (gx,) = torch.autograd.grad(loss, x, up * scale, retain_graph=True)
        grads.append(gx)
    (last,) = torch.autograd.grad(loss, x, up, retain_graph=True)
    _bits(grads[1], grads[0] * 2, "second backward, upstream x 2")  # x 2 and x 0.5 are exact
    _bits(grads[2], grads[0] * 0.5, "third backward, upstream x 0.5")
    _bits(last, grads[0], "recomputed gradient")
    # loss.backward twice accumulates
    x.grad = None
    loss.backward(up, retain_graph=True)
    loss.backward(up)
    _bits(x.grad, grads[0] + grads[0], "two backward calls")


def test_non_leaf_logits():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(12, 16, generator=g).requires_grad_()
    W = torch.randn(16, 90, generator=g).requires_grad_()
    t = torch.randint(0, 90, (12,), generator=g)
    z = torch.tanh(h) @ W
    z.retain_grad()
    xF.cross_entropy(z, t, label_smoothing=0.1).backward()
    _, kz = xent.cross_entropy(z.detach(), t, label_smoothing=0.1, grad=True)
    _bits(z.grad, kz, "non-leaf grad")
    h2, W2 = h.detach().clone().requires_grad_(), W.detach().clone().requires_grad_()
    (torch.tanh(h2) @ W2).backward(kz)
    _bits(W.grad, W2.grad, "W through the non-leaf")
    _bits(h.grad, h2.grad, "h through the non-leaf")


def test_inplace_backward_on_a_view_is_safe():
    """Logits that are a view (here a row-strided column window of a larger
    output): the gradient is written over the window and flows back through
    the view to the base, as for any gradient of a view."""
    g = torch.Generator().manual_seed(6)
    h = torch.randn(10, 8, generator=g).requires_grad_()
    W = torch.randn(8, 120, generator=g).requires_grad_()
    t = torch.randint(0, 100, (10,), generator=g)
    out = h @ W
    view = out[:, :100]
    xF.cross_entropy(view, t, inplace_backward=True).backward()
    h2, W2 = h.detach().clone().requires_grad_(), W.detach().clone().requires_grad_()
    F.cross_entropy((h2 @ W2)[:, :100], t).backward()
    torch.testing.assert_close(W.grad, W2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-5, atol=1e-6)
    # a view xent cannot address in place (classes not contiguous) raises
    with pytest.raises(ValueError, match="last axis contiguous"):
        xF.cross_entropy((W.t() @ h.t()).t()[:, :100], t, inplace_backward=True)


def test_inplace_backward_on_a_saved_tensor_raises():
    """An op that saved the logits for its backward (tanh saves its output)
    would read the overwritten values: autograd raises its in-place error."""
    g = torch.Generator().manual_seed(7)
    h = torch.randn(10, 50, generator=g).requires_grad_()
    t = torch.randint(0, 50, (10,), generator=g)
    z = torch.tanh(h)
    loss = xF.cross_entropy(z, t, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # the same through a view of the saved tensor (the version counter is shared)
    z = torch.tanh(h)
    loss = xF.cross_entropy(z[:, :40], t % 40, inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_inplace_backward_second_backward_raises():
    x0, t, _ = _data()
    z = _leaf(x0) * 1.0
    loss = xF.cross_entropy(z, t, inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace_backward=True.*second time"):
        loss.backward()


@pytest.mark.parametrize(
    "op", ["cross_entropy", "kl_div_logits", "jsd", "bce", "log_softmax", "softmax", "token_logprobs"]
)
def test_double_backward_raises_a_clear_error(op):
    x0, t, g = _data()
    x = _leaf(x0)
    other = torch.randn(x0.shape, generator=g)
    fns = {
        "cross_entropy": lambda: xF.cross_entropy(x, t),
        "kl_div_logits": lambda: xF.kl_div_logits(x, other),
        "jsd": lambda: xF.jsd(x, other, input_kind="logits", target_kind="logits"),
        "bce": lambda: xF.binary_cross_entropy_with_logits(x, other.sigmoid()),
        "log_softmax": lambda: xF.log_softmax(x, -1).sum(),
        "softmax": lambda: (xF.softmax(x, -1) * other).sum(),
        "token_logprobs": lambda: xF.token_logprobs(x, t).sum(),
    }
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(fns[op](), x, create_graph=True)
    # first-order gradients still work
    (gx,) = torch.autograd.grad(fns[op](), x)
    assert gx.shape == x.shape


# ---------------------------------------------------------------------------
# Lifetime: nothing outlives the step, no cycles.
def test_no_reference_cycles_and_no_growth_over_many_steps():
    x0, t, g = _data(B=16, V=70000)  # 4.5 MB per B x V buffer: through the cache
    other = torch.randn(x0.shape, generator=g)
    h = torch.randn(16, 8, generator=g)
    W = (torch.randn(70000, 8, generator=g) * 0.1).requires_grad_()
    x = _leaf(x0)

    def step():
        x.grad = None
        W.grad = None
        xF.cross_entropy(x, t, label_smoothing=0.1).backward()
        xF.kl_div_logits(x, other, temperature=2.0).backward()
        xF.binary_cross_entropy_with_logits(x, other.sigmoid(), reduction="none").sum().backward()
        (xF.token_logprobs(x, t) * 0.3).sum().backward()
        xF.cross_entropy(F.linear(h, W), t, inplace_backward=True).backward()
        xF.log_softmax(x, -1)[:, 0].sum().backward()

    for _ in range(3):
        step()
    gc.collect()
    gc.disable()
    try:
        before = _buffers.stats()
        for _ in range(100):
            step()
        cyclic = gc.collect()
    finally:
        gc.enable()
    after = _buffers.stats()
    assert cyclic == 0, "%d objects in reference cycles after 100 steps" % cyclic
    assert after["allocated"] == before["allocated"], (before, after)  # every step reused the same blocks
    assert after["reused"] - before["reused"] >= 100
    # the graph keeps nothing once backward ran: the loss's node holds no gradient
    loss = xF.cross_entropy(x, t)
    loss.backward()
    ref = weakref.ref(x.grad)
    x.grad = None
    assert ref() is None, "the gradient is still referenced after backward (a lingering ctx attribute?)"
    del loss


# ---------------------------------------------------------------------------
# The buffer cache itself.
def test_buffer_cache_limits_and_empty_cache():
    old = _buffers.limit()
    try:
        xent.empty_cache()
        a = np.random.default_rng(0).standard_normal((64, 40000)).astype(np.float32)  # 10 MB
        t = np.zeros(64, np.int64)
        _, gr = xent.cross_entropy(a, t, grad=True)
        addr = gr.__array_interface__["data"][0]
        del gr
        s = xent.buffer_cache_stats()
        assert s["idle_blocks"] == 1 and s["idle_bytes"] >= a.nbytes
        _, gr = xent.cross_entropy(a, t, grad=True)
        assert gr.__array_interface__["data"][0] == addr  # the same block again
        del gr
        xent.empty_cache()
        assert xent.buffer_cache_stats()["idle_bytes"] == 0
        xent.set_buffer_cache_limit(0)  # no cache: every result maps fresh memory
        _, gr = xent.cross_entropy(a, t, grad=True)
        del gr
        assert xent.buffer_cache_stats()["idle_bytes"] == 0
        with pytest.raises(ValueError):
            xent.set_buffer_cache_limit(-1)
    finally:
        xent.set_buffer_cache_limit(old)
    assert _buffers._parse_bytes("512M") == 512 << 20 and _buffers._parse_bytes("2g") == 2 << 30
    assert _buffers._parse_bytes("0") == 0


def test_large_input_copies_come_from_the_buffers(recorded):
    """An input xent cannot address in place (here classes not contiguous) is
    copied into xent's buffers, not numpy's / torch's allocator."""
    a = np.random.default_rng(1).standard_normal((40000, 64)).astype(np.float32).T  # (64, 40000), column-major
    t = np.zeros(64, np.int64)
    ref = xent.cross_entropy(np.ascontiguousarray(a), t, reduction="none")
    assert np.array_equal(xent.cross_entropy(a, t, reduction="none"), ref)
    xt = torch.from_numpy(a)
    assert np.array_equal(xent.cross_entropy(xt, torch.from_numpy(t), reduction="none").numpy(), ref)
    copies = [s for s, _ in recorded if s == (64, 40000)]
    assert len(copies) == 2, recorded


def test_calls_without_a_graph_skip_autograd_with_the_same_values():
    x0, t, _ = _data(dtype=torch.bfloat16)
    x = _leaf(x0, torch.bfloat16)
    with_graph = (xF.cross_entropy(x, t, reduction="none"), xF.token_logprobs(x, t), xF.log_softmax(x, -1))
    assert all(v.grad_fn is not None for v in with_graph)
    for inputs in ((x0,), (x,)):
        with torch.no_grad():
            (z,) = inputs
            plain = (xF.cross_entropy(z, t, reduction="none"), xF.token_logprobs(z, t), xF.log_softmax(z, -1))
        for a, b in zip(with_graph, plain):
            assert b.grad_fn is None and not b.requires_grad and a.dtype == b.dtype
            assert torch.equal(a.detach(), b)
