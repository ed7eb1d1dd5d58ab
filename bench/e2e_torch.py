#!/usr/bin/python3
"""End-to-end suite: xent as a PyTorch / numpy user calls it, against PyTorch
eager and torch.compile of the same PyTorch, with xent's kernel on a caller
buffer in the same process (the ratio that shows what the wrappers cost).

  e2e_torch.py --out e2e.json [--workloads ce_fwd,...] [--shape 8192x32000]
               [--threads 1,all] [--reps 5] [--no-compile]

Needs torch and xent importable (bench/run stages xent next to its build).
Every variant of a case runs in this one process, with the same allocator
settings (the environment is recorded: THP_MEM_ALLOC_ENABLE, XENT_BUFFER_CACHE),
repetitions interleaved in a random order per repetition so that load from
other work hits every variant alike; min and median over repetitions.

Workloads (B x V logits; "fwd+bwd" = the loss and loss.backward(), x.grad set
to None first, as a training loop with zero_grad(set_to_none=True)):
  ce_fwd        cross-entropy forward, no grad, f32
  ce_fwd_bwd    cross-entropy forward + backward, f32 and bf16
  kl_fwd_bwd    distillation KL(softmax(t/T) || softmax(s/T)), T = 2, batchmean,
                forward + backward for the student, f32
  token_logprobs          log softmax(x)[y] per row, no grad, f32
  token_logprobs_fwd_bwd  policy-gradient style -(logprob * advantage).mean(),
                          forward + backward, f32
  rl_stats      the RL / evaluation per-token pass, no grad, f32: log p(y),
                entropy, argmax and the top-5 log-probs with their indices
                (torch: log_softmax + gather, entropy from exp(log p), argmax,
                topk, the composition verl / TRL / OpenRLHF use)
  rl_stats_fwd_bwd  GRPO-style -(log p(y) * advantage).mean() - 0.01 *
                entropy.mean(), forward + backward (xent: token_stats with
                entropy, one fused backward), f32
  train_step    linear LM head + cross-entropy, forward + backward
                (--train-shape BxVxH, default 4096x32000x256), f32
  small         per-call cost at B x V = --small-shape (default 1x32000),
                1 thread, us per call, wall time and this thread's CPU time
                (everything runs on it; the CPU time is what a quiet machine's
                wall time would be): the kernel alone (a prepared C call),
                the numpy API (compiled and Python paths), xent.torch forward
                and forward + backward, torch eager, and an empty
                torch.autograd.Function (torch's own fixed cost per call)

Variants: "xent kernel (caller buffer)" (the array API writing into a
pre-faulted caller buffer, or the prepared C call for "small"), "numpy
grad=True", "xent.torch", "xent.torch inplace_backward", "torch eager",
"torch.compile", and for train_step "torch linear_cross_entropy" (chunked,
PyTorch >= 2.13) and "xent kernel + GEMMs (caller buffers)".
"""

import argparse
import ctypes
import json
import os
import platform
import random
import statistics
import sys
import time
from functools import partial

from torch_common import config_value, error_row, skip_reason

WORKLOADS = [
    "small",
    "ce_fwd",
    "ce_fwd_bwd",
    "kl_fwd_bwd",
    "token_logprobs",
    "token_logprobs_fwd_bwd",
    "rl_stats",
    "rl_stats_fwd_bwd",
    "train_step",
]
# Rough peak of a case in B x V f32 tensors beyond the inputs already made
# (copies of the logits, caller buffers, PyTorch eager's temporaries), for
# skipping what does not fit.
PEAK = {
    "ce_fwd": 3,
    "ce_fwd_bwd": 6,
    "kl_fwd_bwd": 9,
    "token_logprobs": 3,
    "token_logprobs_fwd_bwd": 6,
    "rl_stats": 4,
    "rl_stats_fwd_bwd": 7,
    "train_step": 6,
    "small": 0,
}
KERNEL = "xent kernel (caller buffer)"


class Case:
    def __init__(self, workload, dtype, shape, threads, unit="ns"):
        self.workload, self.dtype, self.shape, self.threads, self.unit = workload, dtype, shape, threads, unit
        self.variants = []  # (name, fn, calls per timing)

    def add(self, name, fn, calls=1):
        self.variants.append((name, fn, calls))

    @property
    def logits(self):
        return self.shape[0] * self.shape[1]

    def name(self, variant):
        B, V = self.shape[:2]
        hidden = f"/hidden:{self.shape[2]}" if len(self.shape) > 2 else ""
        return f"e2e/{self.workload}/{self.dtype}/{B}x{V}{hidden}/threads:{self.threads}/variant:{variant}"


class Suite:
    """Builds the cases; every variant is a closure over the locals of one
    builder call (so nothing is rebound while it runs)."""

    def __init__(self, args, torch, F, np, xent, xF, api, L, gen, have_compile):
        self.torch, self.F, self.np, self.xent, self.xF, self.api, self.L = torch, F, np, xent, xF, api, L
        self.gen, self.have_compile = gen, have_compile
        self.compiled = {}
        self.data = {}

    def reset_compiled(self):
        if self.have_compile:
            self.torch._dynamo.reset()
        self.compiled.clear()

    def compiled_fn(self, key, fn):
        if key not in self.compiled:
            self.compiled[key] = self.torch.compile(fn)
        return self.compiled[key]

    def logits(self, b, v, scale=3.0):
        return (self.torch.rand(b, v, generator=self.gen) * 2 - 1) * scale

    def inputs(self, B, V, dt):
        """Logits (f32, or rounded to bf16) and targets, made once per shape."""
        torch = self.torch
        if (B, V) not in self.data:
            self.data = {(B, V): (self.logits(B, V), torch.randint(0, V, (B,), generator=self.gen))}
        x, t = self.data[(B, V)]
        return (x if dt == "f32" else x.to(torch.bfloat16)), t

    def prefaulted(self, shape, dtype):
        t = self.torch.empty(shape, dtype=dtype)
        t.fill_(0)
        return t

    @staticmethod
    def backward_loop(x, loss_fn):
        """A training step on leaf x. Every fwd+bwd variant has a leaf of its
        own (the torch ones share theirs): ``x.grad = None`` frees the
        previous step's gradient, and a shared leaf made a variant pay for
        freeing another's (torch's 1 GiB gradient is munmapped, xent's goes
        back to its cache: xent.torch measured 1.82x its kernel on a leaf
        shared with torch eager, 1.05x on its own)."""

        def f():
            x.grad = None
            loss_fn().backward()

        return f

    def no_grad(self, fn):
        torch = self.torch

        def f():
            with torch.no_grad():
                fn()

        return f

    def add_torch(self, case, key, fn, args, wrap):
        """The "torch eager" variant, fn(*args), and the "torch.compile" one,
        fn compiled (once per key), each as wrap makes it a timed call."""
        case.add("torch eager", wrap(lambda: fn(*args)))
        if self.have_compile:
            cf = self.compiled_fn(key, fn)
            case.add("torch.compile", wrap(lambda: cf(*args)))

    # -- small calls ---------------------------------------------------------
    def small(self, SB, SV):
        torch, F, np, xent, xF, api, L = self.torch, self.F, self.np, self.xent, self.xF, self.api, self.L
        case = Case("small", "f32", (SB, SV), 1, unit="us")
        xs = self.logits(SB, SV)
        ts = torch.randint(0, SV, (SB,), generator=self.gen)
        xn, tn = xs.numpy(), ts.numpy()
        gn = np.zeros_like(xn)
        op = L.cross_entropy_op
        a = op.args()
        a.batch, a.num_classes, a.logits, a.logits_dtype = SB, SV, xn.ctypes.data, L.XENT_F32
        a.target, a.target_dtype = tn.ctypes.data, L.XENT_I64
        loss_c = ctypes.c_float()
        a.loss = ctypes.addressof(loss_c)
        a.num_threads = 1
        ag = L.CrossEntropyArgs.from_buffer_copy(a)
        ag.grad = gn.ctypes.data
        fn_c, ra, rg = op.fn, ctypes.byref(a), ctypes.byref(ag)
        case.keep = (a, ag, loss_c)  # the structs the prepared calls point into
        calls = 200
        case.add("kernel fwd (prepared C call)", lambda: fn_c(ra), calls)
        case.add("kernel fwd+grad (prepared C call)", lambda: fn_c(rg), calls)
        case.add("numpy fwd", lambda: xent.cross_entropy(xn, tn), calls)
        case.add("numpy fwd+grad (caller buffer)", lambda: xent.cross_entropy(xn, tn, grad=gn), calls)
        case.add("numpy fwd+grad (grad=True)", lambda: xent.cross_entropy(xn, tn, grad=True), calls)
        fast = api._fast

        def python_path():
            api._fast = None
            try:
                xent.cross_entropy(xn, tn)
            finally:
                api._fast = fast

        case.add("numpy fwd (Python path)", python_path, calls)
        case.add("xent.torch fwd (no grad)", self.no_grad(lambda: xF.cross_entropy(xs, ts)), calls)
        xr = xs.clone().requires_grad_()
        case.add("xent.torch fwd+bwd", self.backward_loop(xr, lambda: xF.cross_entropy(xr, ts)), calls)
        case.add("torch eager fwd (no grad)", self.no_grad(lambda: F.cross_entropy(xs, ts)), calls)
        xe = xs.clone().requires_grad_()
        case.add("torch eager fwd+bwd", self.backward_loop(xe, lambda: F.cross_entropy(xe, ts)), calls)

        class _Empty(torch.autograd.Function):  # torch's own per-call cost of a custom Function
            @staticmethod
            def forward(ctx, x):
                ctx.g = torch.zeros_like(x)
                return x.new_zeros(())

            @staticmethod
            def backward(ctx, g):
                out, ctx.g = ctx.g, None
                return out

        xf = xs.clone().requires_grad_()
        case.add("autograd floor (empty Function fwd+bwd)", self.backward_loop(xf, lambda: _Empty.apply(xf)), calls)
        return case

    # -- B x V workloads -------------------------------------------------------
    def ce_fwd(self, dt, B, V, nthreads):
        F, xent, xF = self.F, self.xent, self.xF
        case = Case("ce_fwd", dt, (B, V), nthreads)
        x, t = self.inputs(B, V, dt)
        xn, tn = (x.numpy(), t.numpy()) if dt == "f32" else (x, t)
        case.add(KERNEL, lambda: xent.cross_entropy(xn, tn))
        case.add("xent.torch", self.no_grad(lambda: xF.cross_entropy(x, t)))
        self.add_torch(case, ("ce_fwd", dt), lambda a, b: F.cross_entropy(a, b), (x, t), self.no_grad)
        return case

    def ce_fwd_bwd(self, dt, B, V, nthreads):
        F, xent, xF = self.F, self.xent, self.xF
        case = Case("ce_fwd_bwd", dt, (B, V), nthreads)
        x, t = self.inputs(B, V, dt)
        xn, tn = (x.numpy(), t.numpy()) if dt == "f32" else (x, t)  # bf16: the array API on tensors
        g = self.prefaulted((B, V), x.dtype)
        gk = g.numpy() if dt == "f32" else g
        case.add(KERNEL, lambda: xent.cross_entropy(xn, tn, grad=gk))
        if dt == "f32":
            case.add("numpy grad=True", lambda: xent.cross_entropy(xn, tn, grad=True))
        xr = x.clone().requires_grad_()
        xi = x.clone().requires_grad_()  # its own copy: inplace_backward overwrites it
        case.add("xent.torch", self.backward_loop(xr, lambda: xF.cross_entropy(xr, t)))
        case.add(
            "xent.torch inplace_backward",
            self.backward_loop(xi, lambda: xF.cross_entropy(xi, t, inplace_backward=True)),
        )
        xe = x.clone().requires_grad_()
        self.add_torch(
            case, ("ce_fwd_bwd", dt), lambda a, b: F.cross_entropy(a, b), (xe, t), partial(self.backward_loop, xe)
        )
        return case

    def kl_fwd_bwd(self, dt, B, V, nthreads):
        torch, F, xent, xF = self.torch, self.F, self.xent, self.xF
        case = Case("kl_fwd_bwd", dt, (B, V), nthreads)
        T = 2.0
        x, _ = self.inputs(B, V, dt)
        if ("teacher", B, V) not in self.data:
            self.data[("teacher", B, V)] = self.logits(B, V)
        teacher = self.data[("teacher", B, V)]
        g = self.prefaulted((B, V), torch.float32)
        gn, xn, tchn = g.numpy(), x.numpy(), teacher.numpy()
        case.add(KERNEL, lambda: xent.kl_div_logits(xn, tchn, temperature=T, grad=gn))
        sr = x.clone().requires_grad_()
        case.add("xent.torch", self.backward_loop(sr, lambda: xF.kl_div_logits(sr, teacher, temperature=T)))

        def kl_eager(s, tt):
            return F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(tt / T, -1), reduction="batchmean", log_target=True)

        se = x.clone().requires_grad_()
        self.add_torch(case, ("kl", dt), kl_eager, (se, teacher), partial(self.backward_loop, se))
        return case

    def token_logprobs(self, dt, B, V, nthreads):
        torch, xent, xF = self.torch, self.xent, self.xF
        case = Case("token_logprobs", dt, (B, V), nthreads)
        x, t = self.inputs(B, V, dt)
        xn, tn = x.numpy(), t.numpy()

        def tlp_eager(a, b):
            return torch.log_softmax(a, -1).gather(-1, b[:, None]).squeeze(-1)

        case.add(KERNEL, lambda: xent.token_logprobs(xn, tn))
        case.add("xent.torch", self.no_grad(lambda: xF.token_logprobs(x, t)))
        self.add_torch(case, ("tlp", dt), tlp_eager, (x, t), self.no_grad)
        return case

    def token_logprobs_fwd_bwd(self, dt, B, V, nthreads):
        torch, xent, xF = self.torch, self.xent, self.xF
        case = Case("token_logprobs_fwd_bwd", dt, (B, V), nthreads)
        x, t = self.inputs(B, V, dt)
        xn, tn = x.numpy(), t.numpy()
        adv = torch.randn(B, generator=self.gen)
        scale = (-adv / B).numpy()
        g = self.prefaulted((B, V), torch.float32)
        gn = g.numpy()
        # the same gradient: CE's with row_scale = -advantage / B
        case.add(KERNEL, lambda: xent.cross_entropy(xn, tn, reduction="none", row_scale=scale, grad=gn))
        xr = x.clone().requires_grad_()
        case.add("xent.torch", self.backward_loop(xr, lambda: -(xF.token_logprobs(xr, t) * adv).mean()))

        def pg_eager(a, b, adv_):
            return -(torch.log_softmax(a, -1).gather(-1, b[:, None]).squeeze(-1) * adv_).mean()

        xe = x.clone().requires_grad_()
        self.add_torch(case, ("pg", dt), pg_eager, (xe, t, adv), partial(self.backward_loop, xe))
        return case

    def rl_stats(self, dt, B, V, nthreads):
        torch, xent, xF = self.torch, self.xent, self.xF
        case = Case("rl_stats", dt, (B, V), nthreads)
        x, t = self.inputs(B, V, dt)
        xn, tn = x.numpy(), t.numpy()

        def stats_eager(a, b):
            lp = torch.log_softmax(a, -1)
            logp = lp.gather(-1, b[:, None]).squeeze(-1)
            ent = -(lp.exp() * lp).sum(-1)
            top_v, top_i = lp.topk(5, dim=-1)
            return logp, ent, a.argmax(-1), top_v, top_i

        case.add(KERNEL, lambda: xent.token_stats(xn, tn, entropy=True, argmax=True, topk=5))
        case.add("xent.torch", self.no_grad(lambda: xF.token_stats(x, t, entropy=True, argmax=True, topk=5)))
        self.add_torch(case, ("rl_stats", dt), stats_eager, (x, t), self.no_grad)
        return case

    def rl_stats_fwd_bwd(self, dt, B, V, nthreads):
        torch, xent, xF = self.torch, self.xent, self.xF
        case = Case("rl_stats_fwd_bwd", dt, (B, V), nthreads)
        x, t = self.inputs(B, V, dt)
        xn, tn = x.numpy(), t.numpy()
        adv = torch.randn(B, generator=self.gen)
        beta = 0.01
        g = self.prefaulted((B, V), torch.float32)
        gn = g.numpy()
        g_lp = (-adv / B).numpy()
        g_h = self.np.full(B, -beta / B, dtype=self.np.float32)

        def kernel():  # the forward's statistics, then the fused backward into a caller buffer
            r = xent.token_stats(xn, tn, entropy=True, lse=True)
            xent.token_stats_backward(
                xn, tn, grad_logprob=g_lp, grad_entropy=g_h, lse=r.lse, entropy=r.entropy, grad=gn
            )

        case.add(KERNEL, kernel)
        xr = x.clone().requires_grad_()

        def loss_xent():
            r = xF.token_stats(xr, t, entropy=True)
            return -(r.logprob * adv).mean() - beta * r.entropy.mean()

        case.add("xent.torch", self.backward_loop(xr, loss_xent))

        def grpo_eager(a, b, adv_):
            lp = torch.log_softmax(a, -1)
            logp = lp.gather(-1, b[:, None]).squeeze(-1)
            ent = -(lp.exp() * lp).sum(-1)
            return -(logp * adv_).mean() - beta * ent.mean()

        xe = x.clone().requires_grad_()
        self.add_torch(case, ("grpo", dt), grpo_eager, (xe, t, adv), partial(self.backward_loop, xe))
        return case

    def train_step(self, TB, TV, TH, nthreads):
        torch, F, xent, xF = self.torch, self.F, self.xent, self.xF
        case = Case("train_step", "f32", (TB, TV, TH), nthreads)
        gen = self.gen
        h = torch.randn(TB, TH, generator=gen).requires_grad_()
        W = (torch.randn(TV, TH, generator=gen) * 0.05).requires_grad_()
        tt = torch.randint(0, TV, (TB,), generator=gen)

        def step(loss_fn):
            def f():
                h.grad = None
                W.grad = None
                loss_fn().backward()

            return f

        lbuf = self.prefaulted((TB, TV), torch.float32)
        gh, gW = self.prefaulted((TB, TH), torch.float32), self.prefaulted((TV, TH), torch.float32)

        def kernel_step():
            with torch.no_grad():
                torch.mm(h, W.t(), out=lbuf)
                xent.cross_entropy(lbuf, tt, grad="inplace")
                torch.mm(lbuf, W, out=gh)
                torch.mm(lbuf.t(), h, out=gW)

        case.add("xent kernel + GEMMs (caller buffers)", kernel_step)
        case.add("xent.torch", step(lambda: xF.cross_entropy(F.linear(h, W), tt)))
        case.add(
            "xent.torch inplace_backward", step(lambda: xF.cross_entropy(F.linear(h, W), tt, inplace_backward=True))
        )
        self.add_torch(case, "train", lambda a, w, b: F.cross_entropy(F.linear(a, w), b), (h, W, tt), step)
        if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
            opts = torch.nn.LinearCrossEntropyOptions()
            case.add(
                "torch linear_cross_entropy (chunked)", step(lambda: F.linear_cross_entropy(h, W, tt, options=opts))
            )
        return case


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--shape", default="8192x32000")
    ap.add_argument("--train-shape", default="4096x32000x256")
    ap.add_argument("--small-shape", default="1x32000")
    ap.add_argument("--threads", default="1,all")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--mem-fraction", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"e2e_torch: torch / numpy not importable ({e}); skipping", file=sys.stderr)
        return 3
    try:
        import xent
        import xent.torch as xF
        from xent import _api
        from xent import _lib as L
    except Exception as e:  # noqa: BLE001
        print(f"e2e_torch: xent not importable ({e}); skipping", file=sys.stderr)
        return 3

    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w} (known: {', '.join(WORKLOADS)})")
    all_threads = os.cpu_count() or 1
    threads = [all_threads if t == "all" else int(t) for t in args.threads.split(",") if t]
    B, V = (int(v) for v in args.shape.split("x"))
    TB, TV, TH = (int(v) for v in args.train_shape.split("x"))
    SB, SV = (int(v) for v in args.small_shape.split("x"))
    have_compile = hasattr(torch, "compile") and not args.no_compile
    compile_note = (
        "skipped (--no-compile)"
        if args.no_compile
        else "n/a: torch %s has no torch.compile" % torch.__version__
        if not hasattr(torch, "compile")
        else ""
    )
    rng = random.Random(args.seed)

    context = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host_name": platform.node(),
        "executable": "e2e_torch.py",
        "num_cpus": all_threads,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch_version": torch.__version__,
        "torch_cpu_capability": config_value(torch.__config__.show(), "CPU capability usage"),
        "numpy_version": np.__version__,
        "xent_library_version": xent.library_version(),
        "xent_library_path": xent.library_path,
        "xent_target": xent.active_target(),
        "xent_threading": xent.threading_backend(),
        "xent_compiled_path": _api._fast is not None,
        "allocator_env": {
            k: os.environ.get(k, "")
            for k in ("THP_MEM_ALLOC_ENABLE", "XENT_BUFFER_CACHE", "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD")
        },
        "thp_enabled": open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
        if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled")
        else "?",
        "torch_compile": "yes" if have_compile else compile_note,
        "load_avg": list(os.getloadavg()),
        "library_build_type": "release",
    }
    results = []

    def emit(case, variant, times, error=None, cpu=None):
        base = {
            "name": case.name(variant),
            "run_name": case.name(variant),
            "run_type": "iteration",
            "time_unit": "ms",
            "threads": 1,
            "threads_used": case.threads,
            "logits": case.logits,
            "label": f"torch {torch.__version__}",
            "unit": case.unit,
        }
        if error is not None:
            results.append(error_row(base, error))
            return
        for i, t in enumerate(times):
            c = cpu[i] if cpu else t
            row = dict(
                base,
                repetitions=len(times),
                repetition_index=i,
                iterations=1,
                real_time=t * 1e3,
                cpu_time=c * 1e3,
                ns_per_logit=t * 1e9 / case.logits,
                us_per_call=t * 1e6,
            )
            if cpu:
                row["us_per_call_thread_cpu"] = c * 1e6
            results.append(row)

    def run_case(case):
        torch.set_num_threads(case.threads)
        xent.set_num_threads(case.threads)
        live = []
        for name, fn, calls in case.variants:
            try:
                fn()  # warm-up: compiles, faults in buffers, fills caches
                live.append((name, fn, calls))
            except Exception as e:  # noqa: BLE001
                msg = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                print(f"  {case.name(name)}: ERROR {msg}", file=sys.stderr)
                emit(case, name, None, error=msg)
        times = {name: [] for name, _, _ in live}
        cpu = {name: [] for name, _, _ in live}  # this thread's CPU time: small calls run on it alone
        for _ in range(args.reps):
            order = list(live)
            rng.shuffle(order)
            for name, fn, calls in order:
                c0, t0 = time.thread_time(), time.perf_counter()
                for _ in range(calls):
                    fn()
                t1, c1 = time.perf_counter(), time.thread_time()
                times[name].append((t1 - t0) / calls)
                cpu[name].append((c1 - c0) / calls)
        for name, _, _ in live:
            ts = times[name]
            if case.unit == "us":
                cs = cpu[name]
                emit(case, name, ts, cpu=cs)
                print(
                    f"  {case.name(name)}: {min(ts) * 1e6:.2f} / {statistics.median(ts) * 1e6:.2f} us per call "
                    f"(thread CPU time {min(cs) * 1e6:.2f} / {statistics.median(cs) * 1e6:.2f})",
                    file=sys.stderr,
                )
            else:
                emit(case, name, ts)
                print(
                    f"  {case.name(name)}: {min(ts) * 1e9 / case.logits:.3f} / "
                    f"{statistics.median(ts) * 1e9 / case.logits:.3f} ns/logit",
                    file=sys.stderr,
                )

    def fits(workload, n):
        return skip_reason(PEAK[workload] * n * 4, args.mem_fraction)

    gen = torch.Generator().manual_seed(args.seed)
    suite = Suite(args, torch, F, np, xent, xF, _api, L, gen, have_compile)

    if "small" in workloads:
        print(f"[e2e] small calls {SB}x{SV}, 1 thread", file=sys.stderr)
        run_case(suite.small(SB, SV))

    big = [w for w in workloads if w not in ("small", "train_step")]
    for nthreads in threads:
        suite.reset_compiled()  # inductor's CPU kernels bake the thread count in: compile again per count
        for w in big:
            for dt in ["f32", "bf16"] if w == "ce_fwd_bwd" else ["f32"]:
                skip = fits(w, B * V)
                if skip:
                    emit(Case(w, dt, (B, V), nthreads), KERNEL, None, error=skip)
                    continue
                print(f"[e2e] {w} {dt} {B}x{V}, {nthreads} thread(s)", file=sys.stderr)
                run_case(getattr(suite, w)(dt, B, V, nthreads))  # the case (and its buffers) dies after the run
        if "train_step" in workloads:
            skip = fits("train_step", TB * TV)
            if skip:
                emit(Case("train_step", "f32", (TB, TV, TH), nthreads), "xent.torch", None, error=skip)
                continue
            print(f"[e2e] train_step {TB}x{TV} hidden {TH}, {nthreads} thread(s)", file=sys.stderr)
            run_case(suite.train_step(TB, TV, TH, nthreads))

    with open(args.out, "w") as fh:
        json.dump({"context": context, "benchmarks": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
