#!/usr/bin/python3
"""PyTorch CPU peer for bench_xent: the same operations, shapes, dtypes and
thread counts, timed the way a PyTorch user runs them (fresh outputs each call,
autograd for the backward passes), written as Google Benchmark-style JSON.

Run with Debian's /usr/bin/python3 (python3-torch is only visible there).

  peer_torch.py --out torch.json [--ops ce_fwd,...] [--shapes 8192x32000,...]
                [--dtypes f32,bf16] [--threads 1,all] [--reps 3]

Operations (torch.nn.functional):
  ce_fwd          F.cross_entropy(x, y)                               (no_grad)
  ce_fwd_grad     F.cross_entropy(x, y).backward()                     (x.grad = None first)
  ce_softcap_fwd_grad F.cross_entropy(30 * torch.tanh(x / 30), y).backward()   (Gemma 2's softcap)
  kl_fwd_grad     F.kl_div(F.log_softmax(s), F.log_softmax(t), log_target=True,
                           reduction='batchmean').backward()           (grad wrt s only)
  jsd_fwd_grad    beta KL(P||M) + (1-beta) KL(Q||M), M = beta P + (1-beta) Q, beta 0.5,
                  from log_softmax of both, batchmean, .backward()
  kl_div_fwd_grad F.kl_div(x, t, reduction='batchmean').backward()    (x log-probs, t probabilities)
  token_logprobs  F.log_softmax(x).gather(1, y[:, None])               (no_grad)
  softmax         F.softmax(x, -1)                                     (no_grad)
  softmax_backward torch._softmax_backward_data(g, y, -1, dtype)       (no_grad)
  bce_fwd_grad    F.binary_cross_entropy_with_logits(x, t).backward()
ce_fwd_grad_inplace has no PyTorch equivalent (bench/report.py compares it
with ce_fwd_grad).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

from torch_common import config_value, error_row, skip_reason

# The byte model (B x V matrices read + written per call), as bench_xent's.
OPS = {
    "ce_fwd": (1, 0),
    "ce_fwd_grad": (1, 1),
    "ce_softcap_fwd_grad": (1, 1),
    "kl_fwd_grad": (2, 1),
    "jsd_fwd_grad": (2, 1),
    "kl_div_fwd_grad": (2, 1),
    "token_logprobs": (1, 0),
    "softmax": (1, 1),
    "softmax_backward": (2, 1),
    "bce_fwd_grad": (2, 1),
}
# Rough peak memory of a PyTorch call, in B x V tensors of the dtype (f32
# intermediates counted for bf16 too): used to skip shapes that do not fit.
PEAK_TENSORS = {
    "ce_fwd": 3,
    "ce_fwd_grad": 5,
    "ce_softcap_fwd_grad": 7,
    "kl_fwd_grad": 8,
    "jsd_fwd_grad": 12,
    "kl_div_fwd_grad": 5,
    "token_logprobs": 3,
    "softmax": 3,
    "softmax_backward": 4,
    "bce_fwd_grad": 6,
}
DEFAULT_SHAPES = "8192x32000,4096x128256,64x262144,1x262144,32768x4096"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ops", default="ce_fwd,ce_fwd_grad,kl_fwd_grad,token_logprobs,softmax")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--threads", default="1,all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--min-time", type=float, default=0.1, help="seconds per repetition for short calls (several calls averaged)"
    )
    ap.add_argument(
        "--mem-fraction",
        type=float,
        default=0.7,
        help="skip a case whose estimated peak exceeds this fraction of MemAvailable",
    )
    args = ap.parse_args()

    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"peer_torch: PyTorch not importable ({e}); skipping", file=sys.stderr)
        return 3

    all_threads = os.cpu_count() or 1
    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in OPS:
            ap.error(f"unknown op {o} (known: {', '.join(OPS)})")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    dtypes = [d for d in args.dtypes.split(",") if d]
    threads = [all_threads if t == "all" else int(t) for t in args.threads.split(",") if t]
    tdt = {"f32": torch.float32, "bf16": torch.bfloat16}
    esize = {"f32": 4, "bf16": 2}

    results = []
    context = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host_name": platform.node(),
        "executable": "peer_torch.py",
        "num_cpus": all_threads,
        "torch_version": torch.__version__,
        "torch_cpu_capability": config_value(torch.__config__.show(), "CPU capability usage"),
        "torch_parallel_backend": config_value(torch.__config__.parallel_info(), "parallel backend"),
        "load_avg": list(os.getloadavg()),
        "library_build_type": "release",
    }

    def emit(name, times, B, V, dt, op, nthreads, iters, error=None):
        reads, writes = OPS[op]
        bpl = esize[dt] * (reads + writes)
        base = {
            "name": name,
            "run_name": name,
            "family_index": 0,
            "per_family_instance_index": 0,
            "threads": 1,
            "time_unit": "ms",
            "label": f"torch {torch.__version__}",
        }
        if error is not None:
            results.append(error_row(base, error))
            return
        logits = B * V

        def measures(t):
            return dict(
                real_time=t * 1e3,
                cpu_time=t * 1e3,
                ns_per_logit=t * 1e9 / logits,
                GB_per_s=bpl * logits / t * 1e-9,
                bytes_per_logit=bpl,
                threads_used=nthreads,
                logits=logits,
            )

        for i, t in enumerate(times):
            results.append(
                dict(
                    base,
                    run_type="iteration",
                    repetitions=len(times),
                    repetition_index=i,
                    iterations=iters,
                    **measures(t),
                )
            )
        for agg, f in (("median", statistics.median), ("min", min)):
            results.append(
                dict(
                    base,
                    name=name + "_" + agg,
                    run_type="aggregate",
                    aggregate_name=agg,
                    repetitions=len(times),
                    iterations=len(times),
                    **measures(f(times)),
                )
            )

    def make_call(op, x, t, y, rows):
        xs = x[:rows]
        ts = t[:rows] if t is not None else None
        ys = y[:rows] if y is not None else None

        def no_grad(fn):
            def f():
                with torch.no_grad():
                    return fn()

            return f

        def fwd_grad(loss_fn):  # loss_fn on a leaf view of xs, then its backward (the grad wrt xs only)
            xr = xs.detach().requires_grad_(True)

            def f():
                xr.grad = None
                loss = loss_fn(xr)
                loss.backward()
                return loss

            return f

        def jsd(xr, beta=0.5):
            lq = F.log_softmax(xr, -1)
            lp = F.log_softmax(ts, -1)
            lm = torch.log(beta * lp.exp() + (1 - beta) * lq.exp())
            return (
                beta * F.kl_div(lm, lp, log_target=True, reduction="sum")
                + (1 - beta) * F.kl_div(lm, lq, log_target=True, reduction="sum")
            ) / xr.shape[0]

        if op == "ce_fwd":
            return no_grad(lambda: F.cross_entropy(xs, ys))
        if op == "ce_fwd_grad":
            return fwd_grad(lambda xr: F.cross_entropy(xr, ys))
        if op == "ce_softcap_fwd_grad":
            return fwd_grad(lambda xr: F.cross_entropy(30.0 * torch.tanh(xr / 30.0), ys))
        if op == "kl_fwd_grad":
            return fwd_grad(
                lambda xr: F.kl_div(
                    F.log_softmax(xr, -1), F.log_softmax(ts, -1), log_target=True, reduction="batchmean"
                )
            )
        if op == "jsd_fwd_grad":
            return fwd_grad(jsd)
        if op == "kl_div_fwd_grad":
            return fwd_grad(lambda xr: F.kl_div(xr, ts, reduction="batchmean"))
        if op == "token_logprobs":
            return no_grad(lambda: F.log_softmax(xs, -1).gather(1, ys[:, None]).squeeze(1))
        if op == "softmax":
            return no_grad(lambda: F.softmax(xs, -1))
        if op == "softmax_backward":
            return no_grad(lambda: torch._softmax_backward_data(ts, xs, -1, xs.dtype))
        if op == "bce_fwd_grad":
            return fwd_grad(lambda xr: F.binary_cross_entropy_with_logits(xr, ts))
        raise ValueError(op)

    gen = torch.Generator().manual_seed(0)
    for B, V in shapes:
        for dt in dtypes:
            x = t_logits = t_probs = t_small = t_signed = y = None
            for op in ops:
                name_base = f"torch/{op}/{dt}/{B}x{V}"
                skip = skip_reason(PEAK_TENSORS[op] * B * V * max(esize[dt], 4), args.mem_fraction)
                if skip:
                    for n in threads:
                        emit(f"{name_base}/threads:{n}", None, B, V, dt, op, n, 0, error=skip)
                    continue
                # Inputs, generated once per shape and dtype.
                if x is None:
                    x = ((torch.rand(B, V, generator=gen) + torch.rand(B, V, generator=gen) - 1) * 6).to(tdt[dt])
                    y = torch.randint(0, V, (B,), generator=gen)
                t = None
                if op in ("kl_fwd_grad", "jsd_fwd_grad"):
                    if t_logits is None:
                        t_logits = ((torch.rand(B, V, generator=gen) + torch.rand(B, V, generator=gen) - 1) * 6).to(
                            tdt[dt]
                        )
                    t = t_logits
                elif op == "kl_div_fwd_grad":
                    if t_small is None:
                        t_small = (torch.rand(B, V, generator=gen) * (2.0 / V)).to(tdt[dt])
                    t = t_small
                elif op == "bce_fwd_grad":
                    if t_probs is None:
                        t_probs = torch.rand(B, V, generator=gen).to(tdt[dt])
                    t = t_probs
                elif op == "softmax_backward":
                    if t_signed is None:
                        t_signed = (torch.rand(B, V, generator=gen) * 2 - 1).to(tdt[dt])
                    t = t_signed
                xin = x
                if op == "softmax_backward":
                    if t_small is None:
                        t_small = (torch.rand(B, V, generator=gen) * (2.0 / V)).to(tdt[dt])
                    xin = t_small
                for n in threads:
                    torch.set_num_threads(n)
                    name = f"{name_base}/threads:{n}"
                    try:
                        big = B * V > (1 << 22)
                        warm = make_call(op, xin, t, y, min(B, 64) if big else B)
                        warm()
                        f = make_call(op, xin, t, y, B)
                        times = []
                        iters = 1
                        if not big:  # several calls per repetition, averaged
                            t0 = time.perf_counter()
                            f()
                            one = max(time.perf_counter() - t0, 1e-6)
                            iters = max(1, int(args.min_time / one))
                        for _ in range(args.reps):
                            t0 = time.perf_counter()
                            for _ in range(iters):
                                f()
                            times.append((time.perf_counter() - t0) / iters)
                        emit(name, times, B, V, dt, op, n, iters)
                        print(
                            f"{name}: min {min(times) * 1e9 / (B * V):.3f} median "
                            f"{statistics.median(times) * 1e9 / (B * V):.3f} ns/logit",
                            file=sys.stderr,
                        )
                    except Exception as e:  # noqa: BLE001
                        emit(name, None, B, V, dt, op, n, 0, error=f"{type(e).__name__}: {e}")
                        print(f"{name}: ERROR {e}", file=sys.stderr)
                    del_f = None  # noqa: F841
            del x, t_logits, t_probs, t_small, t_signed, y

    with open(args.out, "w") as fh:
        json.dump({"context": context, "benchmarks": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
