"""One rank of test_torch_distributed.py: python dist_worker.py RANK WORLD PORT.

Joins a gloo process group on 127.0.0.1:PORT, runs every scenario below
against single-process xent.torch.cross_entropy on the whole logits (which
every rank builds from the same seed), and prints one JSON line: scenario ->
"ok" or what went wrong. A scenario that should fail records the error it
raised on this rank."""

import datetime
import json
import os
import sys
import traceback

import torch
import torch.distributed as dist

import xent.torch as xF
from xent.torch.distributed import (
    vocab_parallel_cross_entropy,
    vocab_parallel_kl_div_logits,
    vocab_parallel_token_logprobs,
)

RANK, WORLD, PORT = (int(a) for a in sys.argv[1:4])
B = 6


def problem(V, dtype, seed, ignore=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, V, generator=g) * 3).to(dtype)
    y = torch.randint(0, V, (B,), generator=g)
    if ignore:
        y[1::3] = -100  # ignored rows: rows 1 and 4
    w = torch.rand(V, generator=g) + 0.25
    return x, y, w


def aligned_bounds(V):
    """Every shard but the last 4096 wide: xent.cross_entropy's bits."""
    return [min(r * 4096, V) for r in range(WORLD)] + [V]


def uneven_bounds(V):
    cuts = [1, 37, 300][: WORLD - 1]
    return [0] + cuts + [V]


def run(x, y, bounds, upstream=None, inplace=False, explicit=False, **kw):
    """(loss, full-logits gradient columns of this rank) from the
    distributed call, and the same from xent.torch.cross_entropy."""
    a, b = bounds[RANK], bounds[RANK + 1]
    shard = x[:, a:b].clone().requires_grad_(not inplace)
    leaf = shard
    if inplace:  # the gradient written over a non-leaf's memory (as the output of a Linear)
        leaf = shard.detach().clone().requires_grad_()
        shard = leaf * 1
    extra = dict(class_offset=a, num_classes=x.shape[1]) if explicit else {}
    loss = vocab_parallel_cross_entropy(shard, y, inplace_backward=inplace, **extra, **kw)
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    xr = x.clone().requires_grad_()
    want = xF.cross_entropy(xr, y, **kw)
    want.backward(torch.ones_like(want) if upstream is None else upstream)
    return loss.detach(), leaf.grad, want.detach(), xr.grad[:, a:b]


def same_bits(got, want, what):
    assert got.dtype == want.dtype, "%s: dtype %s != %s" % (what, got.dtype, want.dtype)
    assert torch.equal(got, want), "%s: not the same bits: max |diff| %g" % (
        what,
        (got.double() - want.double()).abs().max(),
    )


def close(got, want, what, tol):
    d = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    assert d <= tol, "%s: max |diff| %g > %g" % (what, d, tol)


def loss_everywhere_same(loss):
    """The loss bits of every rank (one more all-gather, for the test)."""
    t = loss.detach().float().reshape(-1)
    out = [torch.empty_like(t) for _ in range(WORLD)]
    dist.all_gather(out, t)
    assert all(torch.equal(o, out[0]) for o in out), "ranks' losses differ: %s" % out


def aligned_f32():
    x, y, w = problem((WORLD - 1) * 4096 + 1000, torch.float32, 1)
    kw = dict(weight=w, label_smoothing=0.1, z_loss=1e-3)
    loss, g, want, gw = run(x, y, aligned_bounds(x.shape[1]), **kw)
    same_bits(loss, want, "loss")
    same_bits(g, gw, "grad")
    loss_everywhere_same(loss)
    a, b = aligned_bounds(x.shape[1])[RANK : RANK + 2]
    with torch.no_grad():  # no autograd node: the same loss
        same_bits(vocab_parallel_cross_entropy(x[:, a:b], y, **kw), want, "no_grad loss")


def aligned_bf16_rows_upstream():
    x, y, _ = problem((WORLD - 1) * 4096 + 513, torch.bfloat16, 2)
    up = torch.linspace(-2, 3, B).to(torch.bfloat16)
    loss, g, want, gw = run(x, y, aligned_bounds(x.shape[1]), reduction="none", upstream=up, softcap=30.0)
    same_bits(loss, want, "row losses")
    same_bits(g, gw, "grad")


def aligned_inplace_sum():
    x, y, _ = problem((WORLD - 1) * 4096 + 77, torch.float32, 3)
    loss, g, want, gw = run(x, y, aligned_bounds(x.shape[1]), inplace=True, reduction="sum", upstream=torch.tensor(0.5))
    same_bits(loss, want, "loss")
    same_bits(g, gw, "grad")


def second_backward():
    # retain_graph=True: the second backward reruns phase 2 from the saved statistics, no collective.
    x, y, w = problem((WORLD - 1) * 4096 + 300, torch.float32, 12)
    a, b = aligned_bounds(x.shape[1])[RANK : RANK + 2]
    shard = x[:, a:b].clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(shard, y, weight=w, label_smoothing=0.05)
    loss.backward(retain_graph=True)
    first = shard.grad.clone()
    shard.grad = None
    (loss * 2).backward()
    same_bits(shard.grad, first * 2, "second backward")


def empty_batch_and_3d():
    bounds = uneven_bounds(1000)
    a, b = bounds[RANK], bounds[RANK + 1]
    x = torch.zeros(0, b - a, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    loss = vocab_parallel_cross_entropy(x, y, reduction="sum")
    loss.backward()
    assert loss.item() == 0 and x.grad.shape == x.shape
    assert vocab_parallel_cross_entropy(x, y).isnan()  # mean of nothing, as torch
    # (..., width) logits, classes last: per-row losses in the leading shape.
    x3, y3, _ = problem(1000, torch.float32, 13, ignore=False)
    x3, y3 = x3.reshape(2, 3, 1000), y3.reshape(2, 3)
    got = vocab_parallel_cross_entropy(x3[..., a:b], y3, reduction="none")
    want = xF.cross_entropy(x3.reshape(6, 1000), y3.reshape(6), reduction="none").reshape(2, 3)
    close(got, want, "3-D row losses", 1e-5)


def uneven_smoothing_weights_no_target():
    # Every target in rank 0's single column or ignored: the other ranks hold no target.
    x, y, w = problem(1000, torch.float32, 4)
    y[:] = 0
    y[2] = -100
    kw = dict(weight=w, label_smoothing=0.2)
    loss, g, want, gw = run(x, y, uneven_bounds(1000), explicit=True, upstream=torch.tensor(-1.5), **kw)
    close(loss, want, "loss", 2e-6 * abs(want.item()) + 1e-6)
    close(g, gw, "grad", 4e-6)
    loss_everywhere_same(loss)


def uneven_f16_mean():
    x, y, w = problem(1000, torch.float16, 5)
    loss, g, want, gw = run(x, y, uneven_bounds(1000), weight=w, softcap=20.0)
    close(loss, want, "loss", 2e-3 * abs(want.item()) + 1e-3)
    close(g, gw, "grad", 1e-4)
    loss_everywhere_same(loss)


def expect_error(cls, pattern, fn):
    try:
        fn()
    except cls as e:
        assert pattern in str(e), "error %r does not mention %r" % (str(e), pattern)
        return
    raise AssertionError("no %s raised" % cls.__name__)


def bad_target_on_last_rank():
    x, y, _ = problem(1000, torch.float32, 6)
    bounds = uneven_bounds(1000)
    if RANK == WORLD - 1:
        y[0] = 1000  # out of [0, V)
    shard = x[:, bounds[RANK] : bounds[RANK + 1]].clone().requires_grad_()
    want = "rank" if RANK != WORLD - 1 else "target"
    expect_error(ValueError, want, lambda: vocab_parallel_cross_entropy(shard, y))


def bad_dtype_on_last_rank():
    x, y, _ = problem(1000, torch.float32, 7)
    bounds = uneven_bounds(1000)
    shard = x[:, bounds[RANK] : bounds[RANK + 1]].clone()
    if RANK == WORLD - 1:
        shard = shard.double()
    want = "rank %d" % (WORLD - 1) if RANK != WORLD - 1 else "float64"
    expect_error(TypeError, want, lambda: vocab_parallel_cross_entropy(shard, y))


def bad_option_on_last_rank():
    # Rejected before phase 1 (an unknown reduction), still reported to every rank.
    x, y, _ = problem(1000, torch.float32, 10)
    bounds = uneven_bounds(1000)
    red = "avg" if RANK == WORLD - 1 else "mean"
    want = "rank %d" % (WORLD - 1) if RANK != WORLD - 1 else "avg"
    expect_error(
        ValueError, want, lambda: vocab_parallel_cross_entropy(x[:, bounds[RANK] : bounds[RANK + 1]], y, reduction=red)
    )


def rows_differ():
    x, y, _ = problem(1000, torch.float32, 11)
    bounds = uneven_bounds(1000)
    n = B - 1 if RANK == WORLD - 1 else B
    fn = lambda: vocab_parallel_cross_entropy(x[:n, bounds[RANK] : bounds[RANK + 1]], y[:n])  # noqa: E731
    if WORLD == 1:
        fn()
    else:
        expect_error(ValueError, "different row counts", fn)


def bad_offsets():
    # Explicit offsets that do not tile [0, V) (every rank claims to start at 0).
    x, y, _ = problem(1000, torch.float32, 8)
    bounds = uneven_bounds(1000)
    shard = x[:, bounds[RANK] : bounds[RANK + 1]]
    fn = lambda: vocab_parallel_cross_entropy(shard, y, class_offset=0, num_classes=1000)  # noqa: E731
    if WORLD == 1:
        fn()  # one rank holding all classes: fine
    else:
        expect_error(ValueError, "do not tile", fn)


def different_targets():
    x, y, _ = problem(1000, torch.float32, 9)
    bounds = uneven_bounds(1000)
    if RANK == WORLD - 1:
        y[3] = (y[3] + 1) % 1000
    fn = lambda: vocab_parallel_cross_entropy(x[:, bounds[RANK] : bounds[RANK + 1]], y)  # noqa: E731
    if WORLD == 1:
        fn()
    else:
        expect_error(ValueError, "different targets", fn)


def different_smoothing():
    # The stats of a smoothed shard are twice as large: the first all-gather
    # (the widths) finds the disagreement before the statistics' one.
    x, y, _ = problem(1000, torch.float32, 12)
    bounds = uneven_bounds(1000)
    ls = 0.1 if RANK == WORLD - 1 else 0.0
    fn = lambda: vocab_parallel_cross_entropy(x[:, bounds[RANK] : bounds[RANK + 1]], y, label_smoothing=ls)  # noqa: E731
    if WORLD == 1:
        fn()
    else:
        expect_error(ValueError, "label_smoothing is 0 on some ranks", fn)


def token_run(x, y, bounds, entropy=True, explicit=False, **kw):
    """(logprob, entropy, this rank's gradient columns) of the distributed
    call, the same from xent.torch.token_logprobs on the whole logits, and
    the float64 autograd gradient's columns; backward through g_lp * logprob +
    g_h * entropy with the same upstream weights."""
    a, b = bounds[RANK], bounds[RANK + 1]
    shard = x[:, a:b].clone().requires_grad_()
    extra = dict(class_offset=a, num_classes=x.shape[1]) if explicit else {}
    g = torch.Generator().manual_seed(77)
    g_lp, g_h = torch.randn(B, generator=g), torch.randn(B, generator=g)
    if not entropy:
        g_h = torch.zeros(B)
    got = vocab_parallel_token_logprobs(shard, y, entropy=entropy, **extra, **kw)
    want = xF.token_logprobs(x, y, entropy=entropy, **kw)
    if not entropy:
        got, want = (got, torch.zeros(B)), (want, torch.zeros(B))
    (got[0].float() * g_lp + got[1].float() * g_h).sum().backward()
    # float64 reference: z = softcap(x) / T, d(g_lp log p[y] + g_h H)/dx.
    xd = x.double().requires_grad_()
    cap, T = kw.get("softcap"), kw.get("temperature", 1.0)
    z = (cap * torch.tanh(xd / cap) if cap else xd) / T
    logp = torch.log_softmax(z, 1)
    keep = y != -100
    lp = logp.gather(1, y.clamp(min=0)[:, None])[:, 0] * keep
    H = -(logp.exp() * logp).sum(1)
    (lp * g_lp.double() + H * g_h.double()).sum().backward()
    return got[0].detach(), got[1].detach(), shard.grad, want[0], want[1], xd.grad[:, a:b]


def token_logprobs_aligned():
    # xent.torch.token_logprobs' bits for shards of 4096 columns, f32 and bf16,
    # temperature and softcap; the same on every rank; the gradient against
    # float64 autograd. (Every collective before any assert: a rank that
    # fails must not leave the others in a collective.)
    runs = []
    for dtype, kw in ((torch.float32, dict(temperature=0.7)), (torch.bfloat16, dict(softcap=20.0))):
        x, y, _ = problem((WORLD - 1) * 4096 + 900, dtype, 21)
        r = token_run(x, y, aligned_bounds(x.shape[1]), **kw)
        loss_everywhere_same(torch.cat([r[0].float(), r[1].float()]))
        runs.append((dtype, r))
    for dtype, (lp, ent, g, wlp, went, gw) in runs:
        same_bits(lp, wlp, "logprob %s" % dtype)
        same_bits(ent, went, "entropy %s" % dtype)
        close(g, gw, "grad %s" % dtype, 4e-6 if dtype == torch.float32 else 1e-2)


def token_logprobs_uneven():
    # Uneven shards (1 and 37 columns; a rank holding no target), ignored
    # rows, explicit offsets, no entropy: within the accuracy contract.
    x, y, _ = problem(1000, torch.float32, 22)
    r1 = token_run(x, y, uneven_bounds(1000), explicit=True, entropy=False)
    r2 = token_run(x, y, uneven_bounds(1000), temperature=2.0)
    lp, _, g, wlp, _, gw = r1
    close(lp, wlp, "logprob", 1e-5)
    close(g, gw, "grad", 4e-6)
    assert bool((lp[1::3] == 0).all()), "ignored rows give 0"
    _, ent2, g2, _, went2, gw2 = r2
    close(ent2, went2, "entropy", 1e-5)
    close(g2, gw2, "grad with entropy", 4e-6)


def token_logprobs_bad_target_on_last_rank():
    x, y, _ = problem(1000, torch.float32, 23)
    bounds = uneven_bounds(1000)
    if RANK == WORLD - 1:
        y = y.clone()
        y[0] = 1000
    fn = lambda: vocab_parallel_token_logprobs(x[:, bounds[RANK] : bounds[RANK + 1]], y)  # noqa: E731
    pattern = "target[0] = 1000 is outside" if RANK == WORLD - 1 else "rank %d of %d rejected" % (WORLD - 1, WORLD)
    expect_error(ValueError, pattern, fn)


def token_logprobs_different_options():
    # A rank with another temperature: every rank hears of it (options digest);
    # entropy on some ranks only: the widths' all-gather finds it.
    x, y, _ = problem(1000, torch.float32, 24)
    bounds = uneven_bounds(1000)
    shard = x[:, bounds[RANK] : bounds[RANK + 1]]
    T = 2.0 if RANK == WORLD - 1 else 1.0
    fn = lambda: vocab_parallel_token_logprobs(shard, y, temperature=T)  # noqa: E731
    ent = RANK == WORLD - 1
    fn2 = lambda: vocab_parallel_token_logprobs(shard, y, entropy=ent)  # noqa: E731
    if WORLD == 1:
        fn()
        fn2()
    else:
        expect_error(ValueError, "different targets or options (ignore_index, temperature, softcap)", fn)
        expect_error(ValueError, "entropy is False on some ranks", fn2)


def kl_run(s, t, bounds, upstream=None, explicit=False, **kw):
    """(loss, this rank's student gradient columns) of the distributed call
    and of xent.torch.kl_div_logits on the whole logits."""
    a, b = bounds[RANK], bounds[RANK + 1]
    shard = s[:, a:b].clone().requires_grad_()
    extra = dict(class_offset=a, num_classes=s.shape[1]) if explicit else {}
    loss = vocab_parallel_kl_div_logits(shard, t[:, a:b], **extra, **kw)
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    sr = s.clone().requires_grad_()
    want = xF.kl_div_logits(sr, t, **kw)
    want.backward(torch.ones_like(want) if upstream is None else upstream)
    return loss.detach(), shard.grad, want.detach(), sr.grad[:, a:b]


def kl_student_teacher(V, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, V, generator=g) * 2
    t = s + torch.randn(B, V, generator=g) * 0.5
    return s.to(dtype), t.to(dtype)


def kl_div_logits_splits():
    # Aligned and uneven shards, every reduction, T^2 scaling, a row mask,
    # bf16; the loss the same on every rank, within the contract of the
    # single-process call (not bits: each shard's KL uses its own lse).
    runs = []
    for k, (red, bounds_of, dtype) in enumerate(
        (
            ("batchmean", aligned_bounds, torch.float32),
            ("none", uneven_bounds, torch.float32),
            ("sum", uneven_bounds, torch.bfloat16),
            ("mean", aligned_bounds, torch.float32),
        )
    ):
        s, t = kl_student_teacher((WORLD - 1) * 4096 + 700, dtype, 30 + k)
        labels = torch.tensor([1, -100, 3, 4, 5, -100]) if k % 2 else None
        up = torch.linspace(-1, 2, B) if red == "none" else None
        r = kl_run(
            s,
            t,
            bounds_of(s.shape[1]),
            upstream=up,
            explicit=k == 1,
            temperature=2.0,
            t2_scaling=k < 2,
            reduction=red,
            labels=labels,
        )
        loss_everywhere_same(r[0])
        runs.append((red, dtype, r))
    for red, dtype, (loss, g, want, gw) in runs:
        bf = dtype == torch.bfloat16
        close(loss, want, "loss %s" % red, (2e-2 if bf else 2e-5) * max(1.0, want.abs().max().item()))
        close(g, gw, "grad %s" % red, (2e-3 if bf else 2e-6) * max(1.0, gw.abs().max().item()))


def kl_div_logits_errors():
    s, t = kl_student_teacher(1000, torch.float32, 40)
    bounds = uneven_bounds(1000)
    a, b = bounds[RANK], bounds[RANK + 1]
    last = RANK == WORLD - 1
    other = "rank %d of %d rejected" % (WORLD - 1, WORLD)
    # The teacher requires grad on the last rank only.
    tt = t[:, a:b].clone().requires_grad_(last)
    fn = lambda: vocab_parallel_kl_div_logits(s[:, a:b].clone().requires_grad_(), tt)  # noqa: E731
    expect_error(ValueError, "teacher_shard requires grad" if last else other, fn)
    # Another temperature on the last rank.
    T = 3.0 if last else 1.0
    fn = lambda: vocab_parallel_kl_div_logits(s[:, a:b], t[:, a:b], temperature=T)  # noqa: E731
    if WORLD == 1:
        fn()
    else:
        expect_error(ValueError, "different targets or options (temperature, reduction", fn)
    # A teacher shard of another width on the last rank (its width is > 1).
    tb = t[:, a : b - 1] if last else t[:, a:b]
    fn = lambda: vocab_parallel_kl_div_logits(s[:, a:b], tb)  # noqa: E731
    expect_error(ValueError, "teacher_shard has shape" if last else other, fn)
    # An empty batch.
    e = torch.zeros(0, b - a, requires_grad=True)
    loss = vocab_parallel_kl_div_logits(e, torch.zeros(0, b - a), reduction="sum")
    loss.backward()
    assert loss.item() == 0 and e.grad.shape == e.shape


SCENARIOS = [
    aligned_f32,
    bad_target_on_last_rank,
    aligned_bf16_rows_upstream,
    bad_dtype_on_last_rank,
    aligned_inplace_sum,
    second_backward,
    empty_batch_and_3d,
    bad_offsets,
    bad_option_on_last_rank,
    rows_differ,
    uneven_smoothing_weights_no_target,
    different_targets,
    different_smoothing,
    token_logprobs_aligned,
    token_logprobs_bad_target_on_last_rank,
    token_logprobs_uneven,
    token_logprobs_different_options,
    kl_div_logits_splits,
    kl_div_logits_errors,
    uneven_f16_mean,  # after the bad inputs: the group still works
]


def main():
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(PORT))
    dist.init_process_group("gloo", rank=RANK, world_size=WORLD, timeout=datetime.timedelta(seconds=30))
    results = {}
    for fn in SCENARIOS:
        try:
            fn()
            results[fn.__name__] = "ok"
        except Exception:
            results[fn.__name__] = traceback.format_exc(limit=3)
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps({"rank": RANK, "results": results}), flush=True)


if __name__ == "__main__":
    main()
