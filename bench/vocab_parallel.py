#!/usr/bin/python3
"""Vocab-parallel losses on P gloo processes (localhost): per-rank time and
bytes communicated per training step (forward + backward) of
xent.torch.distributed against torch implementations in the same run,
interleaved:
  --op ce     vocab_parallel_cross_entropy vs Megatron-style (three
              all-reduces: row max, sum of exps, target logit);
  --op token  vocab_parallel_token_logprobs(entropy=True), backward of
              g_lp logprob + g_H entropy (GRPO's policy gradient + entropy
              bonus), vs the torch composition over
              torch.distributed.nn.all_reduce (max, sum of exps, target logit,
              sum of p z: four all-reduces, autograd through them);
  --op kl     vocab_parallel_kl_div_logits (T = 2, batchmean) vs the torch
              composition (max and sum of exps of both models, the KL sum:
              five all-reduces).

  bench/vocab_parallel.py [--op ce] [--ranks 1,2,4] [--batch 1024] [--vocab-per-rank 16384]
                          [--vocab 65536] [--reps 7] [--dtype f32]

Two scalings per P: fixed V / P (--vocab-per-rank; weak scaling, per-rank
work constant) and fixed V (--vocab; strong scaling). Each rank runs one
thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)): P processes need P
cores for the times to mean anything. Needs torch and xent importable (e.g.
PYTHONPATH of a staged package and XENT_LIBRARY=build/libxent.so.1).

Bytes are what one rank puts on the wire per step (a ring all-gather sends
(P - 1) blocks, a ring all-reduce of n bytes 2 (P - 1) / P n), computed from
the tensors' sizes, not measured: xent's statistics all-gather (plus its
trailer) and the widths all-gather (3 int64) when class_offset is not given
(the benchmark gives it), the peers' float32 all-reduces of B values (token:
four in the forward, two more in its backward; kl: five).
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import time


def megatron_ce(logits, target, group):
    """Megatron-LM's _VocabParallelCrossEntropy (forward and backward) on
    this rank's (B, V / P) shard, reduction mean over all rows."""
    import torch
    import torch.distributed as dist

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            rank = dist.get_rank(group)
            w = x.shape[-1]
            lo = rank * w  # even shards
            xf = x.float()
            m = xf.max(dim=-1)[0]
            dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
            xf = xf - m.unsqueeze(-1)
            mask = (y < lo) | (y >= lo + w)
            yl = (y - lo).masked_fill(mask, 0)
            pred = xf.gather(-1, yl.unsqueeze(-1)).squeeze(-1).masked_fill(mask, 0.0)
            dist.all_reduce(pred, group=group)
            e = xf.exp_()
            s = e.sum(dim=-1)
            dist.all_reduce(s, group=group)
            loss = (s.log() - pred).mean()
            e.div_(s.unsqueeze(-1))  # softmax
            ctx.save_for_backward(e, yl, mask)
            return loss

        @staticmethod
        def backward(ctx, g):
            p, yl, mask = ctx.saved_tensors
            rows = torch.arange(p.shape[0])
            p[rows, yl] -= (~mask).float()
            return p.mul_(g / p.shape[0]).to(torch.float32), None

    return Fn.apply(logits, target)


def torch_token(x, y, g_lp, g_h, group):
    """log p(y) and entropy of a column-sharded (B, V / P) logits shard with
    torch ops and differentiable all-reduces (torch.distributed.nn), the way a
    user writes it without xent; backward of g_lp logprob + g_H entropy."""
    import torch.distributed as dist
    import torch.distributed.nn as dnn

    rank, w = dist.get_rank(group), x.shape[-1]
    lo = rank * w
    xf = x.float()
    m = xf.detach().max(dim=-1)[0]
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
    z = xf - m.unsqueeze(-1)
    e = z.exp()
    s = dnn.all_reduce(e.sum(-1), group=group)
    mask = (y < lo) | (y >= lo + w)
    yl = (y - lo).masked_fill(mask, 0)
    zy = dnn.all_reduce(z.gather(-1, yl.unsqueeze(-1)).squeeze(-1).masked_fill(mask, 0.0), group=group)
    ls = s.log()
    lp = zy - ls
    ez = dnn.all_reduce((e * z).sum(-1), group=group)
    H = ls - ez / s
    (lp * g_lp + H * g_h).sum().backward()
    return lp.detach(), H.detach()


def torch_kl(xs, xt, T, group):
    """Distillation KL(softmax(t / T) || softmax(s / T)), batchmean, of
    column-sharded student / teacher logits with torch ops and differentiable
    all-reduces; backward into the student."""
    import torch.distributed as dist
    import torch.distributed.nn as dnn

    zs, zt = xs.float() / T, xt.float() / T
    ms, mt = zs.detach().max(-1)[0], zt.max(-1)[0]
    dist.all_reduce(ms, op=dist.ReduceOp.MAX, group=group)
    dist.all_reduce(mt, op=dist.ReduceOp.MAX, group=group)
    es, et = (zs - ms.unsqueeze(-1)).exp(), (zt - mt.unsqueeze(-1)).exp()
    lse_s = dnn.all_reduce(es.sum(-1), group=group).log() + ms
    st = et.sum(-1)
    dist.all_reduce(st, group=group)
    lse_t = st.log() + mt
    p = et / st.unsqueeze(-1)
    kl = dnn.all_reduce((p * (zt - zs)).sum(-1), group=group) - lse_t + lse_s
    loss = kl.mean()
    loss.backward()
    return loss.detach()


def worker(rank, world, port, args):
    import torch
    import torch.distributed as dist

    from xent.torch.distributed import (
        vocab_parallel_cross_entropy,
        vocab_parallel_kl_div_logits,
        vocab_parallel_token_logprobs,
    )

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    B = args.batch
    out = []
    for scaling, V in (("fixed V/P", args.vocab_per_rank * world), ("fixed V", args.vocab)):
        w = V // world
        V = w * world
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, V, (B,), generator=g)
        x = torch.randn(B, w, generator=torch.Generator().manual_seed(1 + rank)).to(dtype)

        g_lp, g_h = torch.randn(B, generator=g), torch.randn(B, generator=g) * 0.01
        xt = (x.float() + torch.randn(B, w, generator=torch.Generator().manual_seed(99 + rank))).to(dtype)
        off = rank * w

        if args.op == "ce":

            def step_xent(x=x, y=y, V=V, off=off):
                xs = x.detach().requires_grad_()
                return vocab_parallel_cross_entropy(xs, y, class_offset=off, num_classes=V).backward()

            def step_megatron(x=x, y=y):
                xs = x.detach().float().requires_grad_()
                megatron_ce(xs, y, None).backward()

            a = vocab_parallel_cross_entropy(x, y, class_offset=off, num_classes=V).float().item()
            b = megatron_ce(x.float(), y, None).item()
        elif args.op == "token":

            def step_xent(x=x, y=y, V=V, off=off, g_lp=g_lp, g_h=g_h):
                xs = x.detach().requires_grad_()
                lp, H = vocab_parallel_token_logprobs(xs, y, entropy=True, class_offset=off, num_classes=V)
                (lp * g_lp + H * g_h).sum().backward()
                return lp.sum().item() + H.sum().item()

            def step_megatron(x=x, y=y, g_lp=g_lp, g_h=g_h):
                xs = x.detach().float().requires_grad_()
                lp, H = torch_token(xs, y, g_lp, g_h, None)
                return lp.sum().item() + H.sum().item()

            a, b = step_xent(), step_megatron()
        else:

            def step_xent(x=x, V=V, off=off, xt=xt):
                xs = x.detach().requires_grad_()
                loss = vocab_parallel_kl_div_logits(xs, xt, temperature=2.0, class_offset=off, num_classes=V)
                loss.backward()
                return loss.item()

            def step_megatron(x=x, xt=xt):
                return torch_kl(x.detach().float().requires_grad_(), xt.float(), 2.0, None).item()

            a, b = step_xent(), step_megatron()
        # The two implementations compute the same values (checked once).
        if abs(a - b) > 1e-3 * max(abs(b), 1.0):
            raise SystemExit("rank %d: xent's %.7g != the torch implementation's %.7g" % (rank, a, b))
        times = {"xent": [], "megatron": []}
        for fn in (step_xent, step_megatron):  # warm-up
            fn()
        for _ in range(args.reps):
            for name, fn in (("xent", step_xent), ("megatron", step_megatron)):
                dist.barrier()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        from xent import _vocab_parallel as _vp
        from xent import torch_distributed as td

        doubles = {
            "ce": lambda: td._block_doubles(B, 0.0),
            "token": lambda: _vp.token_logprobs_shard_stats_doubles(B, True),
            "kl": lambda: _vp.kl_div_logits_shard_stats_doubles(B),
        }[args.op]()
        block = (doubles + td._TRAILER) * 8
        peer_reduces = {"ce": 3, "token": 6, "kl": 5}[args.op]
        out.append(
            {
                "scaling": scaling,
                "P": world,
                "B": B,
                "V": V,
                "xent_ms": sorted(t * 1e3 for t in times["xent"]),
                "megatron_ms": sorted(t * 1e3 for t in times["megatron"]),
                "xent_bytes_sent": (world - 1) * block,
                "megatron_bytes_sent": peer_reduces * int(2 * (world - 1) / world * B * 4),
                "op": args.op,
            }
        )
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", default="ce", choices=["ce", "token", "kl"])
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--vocab-per-rank", type=int, default=16384)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args)
        return
    rows = []
    for world in (int(p) for p in args.ranks.split(",")):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
        argv = [a for a in sys.argv[1:]]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, *argv, "--worker", str(r), str(world), str(port)],
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            for r in range(world)
        ]
        outs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            sys.exit("a rank failed for P = %d" % world)
        rows += json.loads(outs[0].strip().splitlines()[-1])
    peer = {"ce": "megatron", "token": "torch", "kl": "torch"}[args.op]
    peers = {
        "ce": "Megatron-style CE (3 all-reduces)",
        "token": "torch ops + torch.distributed.nn all-reduces (6)",
        "kl": "torch ops + all-reduces (5)",
    }
    print("op %s: xent.torch.distributed vs %s" % (args.op, peers[args.op]))
    print(
        "%-10s %2s %6s %7s  %12s %12s  %12s %12s"
        % ("scaling", "P", "B", "V", "xent ms", peer + " ms", "xent B/step", peer + " B/step")
    )
    for r in sorted(rows, key=lambda r: (r["scaling"], r["P"])):
        med = lambda v: v[len(v) // 2]  # noqa: E731
        print(
            "%-10s %2d %6d %7d  %5.2f (%5.2f) %5.2f (%5.2f)  %12d %12d"
            % (
                r["scaling"], r["P"], r["B"], r["V"],
                r["xent_ms"][0], med(r["xent_ms"]), r["megatron_ms"][0], med(r["megatron_ms"]),
                r["xent_bytes_sent"], r["megatron_bytes_sent"],
            )
        )  # fmt: skip
    print("ms per step (forward + backward) on rank 0: min (median); bytes one rank sends per step")


if __name__ == "__main__":
    main()
