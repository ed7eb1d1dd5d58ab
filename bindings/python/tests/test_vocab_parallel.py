"""xent.cross_entropy_shard_stats / _finish: ranks simulated in one process
(stats per shard, stacked in rank order as an all-gather would, finish per
shard) against xent.cross_entropy (bits, for shards of 4096 * 2**k columns)
and the float64 reference (any split)."""

import numpy as np
import pytest

import xent

from conftest import have_torch
from reference import cross_entropy as ref_ce


def _sharded(x, y, bounds, **kw):
    V = x.shape[-1]
    opts = {k: kw[k] for k in ("weight", "ignore_index", "label_smoothing", "softcap") if k in kw}
    stats = np.stack(
        [
            xent.cross_entropy_shard_stats(x[..., a:b], y, num_classes=V, class_offset=a, **opts)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
    )
    out = [
        xent.cross_entropy_shard_finish(x[..., a:b], y, stats, num_classes=V, class_offset=a, grad=True, **kw)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    losses = [o[0] for o in out]
    return losses, np.concatenate([o[1] for o in out], axis=-1)


def _problem(B, V, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, V)).astype(np.float32) * 2
    y = rng.integers(0, V, size=B)
    y[1::3] = -100
    w = rng.uniform(0.25, 2.0, size=V).astype(np.float32)
    return x, y, w


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bounds", [[0, 8192, 16384, 20000], [0, 4096, 8192, 12288, 16384, 20000]])
def test_aligned_shards_give_cross_entropys_bits(reduction, bounds):
    x, y, w = _problem(7, 20000, 1)
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1, z_loss=1e-3)
    want, gwant = xent.cross_entropy(x, y, grad=True, **kw)
    losses, g = _sharded(x, y, bounds, **kw)
    for loss in losses:
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(want))
    np.testing.assert_array_equal(g, gwant)


def test_any_split_matches_the_reference():
    x, y, w = _problem(5, 5000, 2)
    kw = dict(weight=w, label_smoothing=0.2, softcap=20.0)
    losses, g = _sharded(x, y, [0, 1, 1234, 4999, 5000], **kw)
    loss, _, _, grad = ref_ce(x.astype(np.float64), y, weight=w.astype(np.float64), label_smoothing=0.2, softcap=20.0)
    assert all(np.float32(v).tobytes() == np.float32(losses[0]).tobytes() for v in losses)
    np.testing.assert_allclose(losses[0], loss, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(g, grad, rtol=0, atol=4e-6)


def test_inplace_and_errors():
    x, y, _ = _problem(3, 300, 3)
    stats = np.stack(
        [
            xent.cross_entropy_shard_stats(x[:, a:b], y, num_classes=300, class_offset=a)
            for a, b in ((0, 100), (100, 300))
        ]
    )
    shard = np.ascontiguousarray(x[:, 100:])
    want = xent.cross_entropy_shard_finish(shard.copy(), y, stats, num_classes=300, class_offset=100, grad=True)
    loss, g = xent.cross_entropy_shard_finish(shard, y, stats, num_classes=300, class_offset=100, grad="inplace")
    assert g is shard and loss == want[0]
    np.testing.assert_array_equal(shard, want[1])
    with pytest.raises(ValueError, match=r"class_offset \(150\) \+ shard_classes \(200\) exceeds num_classes \(300\)"):
        xent.cross_entropy_shard_stats(x[:, 100:], y, num_classes=300, class_offset=150)
    with pytest.raises(ValueError, match="rank 0"):
        xent.cross_entropy_shard_finish(x[:, 100:], y, stats[::-1], num_classes=300, class_offset=100)
    with pytest.raises(ValueError, match="expected"):
        xent.cross_entropy_shard_finish(x[:, 100:], y, stats[:, :2], num_classes=300, class_offset=100)
    # A flat all-gather works as the stacked one.
    flat = xent.cross_entropy_shard_finish(x[:, 100:], y, stats.reshape(-1), num_classes=300, class_offset=100)
    assert flat == want[0]
    with pytest.raises(ValueError, match="expected"):
        xent.cross_entropy_shard_finish(x[:, 100:], y, stats, num_classes=300, class_offset=100, label_smoothing=0.1)
    with pytest.raises(TypeError, match="float64"):
        xent.cross_entropy_shard_finish(
            x[:, 100:], y, np.zeros(stats.shape, np.float32), num_classes=300, class_offset=100
        )


@pytest.mark.skipif(not have_torch(), reason="torch not installed")
def test_torch_tensors():
    import torch

    x, y, _ = _problem(4, 9000, 4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    stats = torch.stack(
        [
            xent.cross_entropy_shard_stats(xt[:, a:b], yt, num_classes=9000, class_offset=a)
            for a, b in ((0, 8192), (8192, 9000))
        ]
    )
    assert stats.dtype == torch.float64 and stats.shape == (2, 4 + 4 * 2)
    loss, g = xent.cross_entropy_shard_finish(xt[:, 8192:], yt, stats, num_classes=9000, class_offset=8192, grad=True)
    want, gw = xent.cross_entropy(xt, yt, grad=True)
    assert torch.equal(loss, want) and torch.equal(g, gw[:, 8192:])


def test_stats_size():
    # 16 bytes per row (32 with label smoothing) and a 4-double header per rank.
    assert xent.cross_entropy_shard_stats_doubles(10) == 4 + 2 * 10
    assert xent.cross_entropy_shard_stats_doubles(10, 0.1) == 4 + 4 * 10
    x, y, _ = _problem(6, 50, 5)
    s = xent.cross_entropy_shard_stats(x.reshape(2, 3, 50), y.reshape(2, 3), num_classes=50, class_offset=0)
    assert s.shape == (4 + 2 * 6,) and s.dtype == np.float64
    s = xent.cross_entropy_shard_stats(x, y, num_classes=50, class_offset=0, label_smoothing=0.1)
    assert s.shape == (4 + 4 * 6,)


# ---------------------------------------------------------------------------
# Token log-probs and entropy (token_logprobs_shard_stats / _finish / _backward).


def _tok_sharded(x, y, bounds, entropy=True, **kw):
    V = x.shape[-1]
    stats = np.stack(
        [
            xent.token_logprobs_shard_stats(x[:, a:b], y, num_classes=V, class_offset=a, entropy=entropy, **kw)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
    )
    return xent.token_logprobs_shard_finish(stats, y, rows=x.shape[0], num_classes=V, entropy=entropy)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("bounds", [[0, 8192, 16384, 20000], [0, 4096, 8192, 12288, 16384, 20000]])
def test_token_logprobs_aligned_shards_give_the_whole_calls_bits(dtype, bounds):
    x, y, _ = _problem(7, 20000, 3)
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        x = x.astype(ml_dtypes.bfloat16)
    kw = dict(temperature=0.8, softcap=30.0)
    want = xent.token_stats(x, y, entropy=True, lse=True, **kw)
    lp, ent, lse = _tok_sharded(x, y, bounds, **kw)
    np.testing.assert_array_equal(lp, want.logprob)
    np.testing.assert_array_equal(ent, want.entropy)
    np.testing.assert_array_equal(lse, want.lse)
    # The gradient: each shard's columns of the whole backward, bit for bit.
    rng = np.random.default_rng(4)
    g_lp = rng.standard_normal(7).astype(np.float32)
    g_h = rng.standard_normal(7).astype(np.float32)
    gwant = xent.token_stats_backward(x, y, grad_logprob=g_lp, grad_entropy=g_h, lse=lse, entropy=ent, grad=True, **kw)
    for a, b in zip(bounds[:-1], bounds[1:]):
        g = xent.token_logprobs_shard_backward(
            x[:, a:b].copy(),
            y,
            lse,
            num_classes=20000,
            class_offset=a,
            grad_logprob=g_lp,
            grad_entropy=g_h,
            entropy=ent,
            **kw,
        )
        np.testing.assert_array_equal(g, gwant[:, a:b])


def test_token_logprobs_any_split_matches_the_reference():
    x, y, _ = _problem(5, 5000, 5)
    lp, ent, lse = _tok_sharded(x, y, [0, 1, 1234, 4999, 5000], temperature=2.0)
    z = x.astype(np.float64) / 2.0
    ref_lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    logp = z - ref_lse[:, None]
    ref_ent = -(np.exp(logp) * logp).sum(1)
    ok = y != -100
    ref_lp = np.where(ok, logp[np.arange(5), np.where(ok, y, 0)], 0.0)
    np.testing.assert_allclose(lse, ref_lse, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(ent, ref_ent, rtol=2e-6, atol=4e-6)
    np.testing.assert_allclose(lp, ref_lp, rtol=2e-6, atol=4e-6)


def test_token_logprobs_shard_errors_name_the_argument():
    x, y, _ = _problem(3, 300, 6)
    stats = np.stack(
        [
            xent.token_logprobs_shard_stats(x[:, a:b], y, num_classes=300, class_offset=a)
            for a, b in ((0, 100), (100, 300))
        ]
    )
    with pytest.raises(ValueError, match="entropy = True"):  # the stats have no entropy sums: other size
        xent.token_logprobs_shard_finish(stats, y, rows=3, num_classes=300, entropy=True)
    with pytest.raises(ValueError, match="class_offset \\(201\\) \\+ shard_classes \\(100\\) exceeds"):
        xent.token_logprobs_shard_stats(x[:, :100], y, num_classes=300, class_offset=201)
    other = y.copy()
    other[0] = 50 if y[0] >= 100 or y[0] < 0 else 150
    with pytest.raises(ValueError, match="different targets"):
        xent.token_logprobs_shard_finish(stats, other, rows=3, num_classes=300)
    with pytest.raises(ValueError, match="lse"):
        xent.token_logprobs_shard_backward(x[:, :100], y, np.zeros(2, np.float32), num_classes=300, class_offset=0)


# ---------------------------------------------------------------------------
# Distillation KL (kl_div_logits_shard_stats / _finish).


def _kl_sharded(s, t, bounds, **kw):
    V = s.shape[-1]
    T = kw.get("temperature", 1.0)
    stats = np.stack(
        [
            xent.kl_div_logits_shard_stats(s[:, a:b], t[:, a:b], num_classes=V, class_offset=a, temperature=T)
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
    )
    out = [
        xent.kl_div_logits_shard_finish(s[:, a:b], t[:, a:b], stats, num_classes=V, class_offset=a, grad=True, **kw)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    return [o[0] for o in out], np.concatenate([o[1] for o in out], axis=-1)


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
def test_kl_div_logits_any_split_matches_the_whole_call(reduction):
    rng = np.random.default_rng(7)
    s = rng.standard_normal((6, 9000)).astype(np.float32) * 2
    t = (s + rng.standard_normal((6, 9000)).astype(np.float32) * 0.5).astype(np.float32)
    labels = np.array([1, -100, 3, 4, -100, 6])
    kw = dict(temperature=2.0, t2_scaling=True, reduction=reduction, labels=labels)
    want, gwant = xent.kl_div_logits(s, t, grad=True, **kw)
    losses, g = _kl_sharded(s, t, [0, 1, 4096, 5000, 9000], **kw)
    for loss in losses:  # the same bits on every rank
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(losses[0]))
    np.testing.assert_allclose(np.asarray(losses[0]), np.asarray(want), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(g, gwant, rtol=1e-5, atol=1e-8)


def test_kl_div_logits_shard_errors_name_the_argument():
    rng = np.random.default_rng(8)
    s = rng.standard_normal((3, 300)).astype(np.float32)
    with pytest.raises(ValueError, match="teacher has shape"):
        xent.kl_div_logits_shard_stats(s[:, :100], s[:, :99], num_classes=300, class_offset=0)
    stats = xent.kl_div_logits_shard_stats(s[:, :100], s[:, :100], num_classes=300, class_offset=0)
    with pytest.raises(ValueError, match="cover classes \\[0, 100\\), not num_classes = 300"):
        xent.kl_div_logits_shard_finish(s[:, :100], s[:, :100], stats, num_classes=300, class_offset=0)
