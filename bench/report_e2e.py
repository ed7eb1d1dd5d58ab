"""The end-to-end section of bench/report.py: xent.torch and the numpy API
against PyTorch eager and torch.compile (bench/e2e_torch.py's results), as a
table and a plot."""

import statistics
import sys
from collections import defaultdict

from report_common import fmt, table

# ---------------------------------------------------------------------------
# End to end (bench/e2e_torch.py): what PyTorch / numpy users see.
E2E_ORDER = [
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
E2E_TITLES = {
    "small": "small calls (us per call)",
    "ce_fwd": "CE forward",
    "ce_fwd_bwd": "CE forward + backward",
    "kl_fwd_bwd": "KL distillation fwd + bwd (T = 2)",
    "token_logprobs": "token log-probs (no grad)",
    "token_logprobs_fwd_bwd": "token log-probs fwd + bwd (policy gradient)",
    "rl_stats": "RL / eval per-token pass: log p, entropy, argmax, top-5 (no grad)",
    "rl_stats_fwd_bwd": "GRPO-style policy gradient + entropy bonus fwd + bwd",
    "train_step": "training step: Linear head + CE fwd + bwd",
}
E2E_KERNEL = "xent kernel (caller buffer)"
E2E_VARIANT_ORDER = [
    E2E_KERNEL,
    "xent kernel + GEMMs (caller buffers)",
    "numpy grad=True",
    "xent.torch",
    "xent.torch inplace_backward",
    "torch eager",
    "torch.compile",
    "torch linear_cross_entropy (chunked)",
]
# The end-to-end targets (1 thread, 8192x32000): (description, kind, a, b, limit)
#   ratio_le: min(a) / min(b) <= limit;  speedup_ge: min(b) / min(a) >= limit (a = xent side);
#   overhead_le: us(a) - us(b) <= limit (small calls).
E2E_TARGETS = [
    (
        "xent.torch CE fwd+bwd f32 / kernel with a caller buffer",
        "ratio_le",
        ("ce_fwd_bwd", "f32", "xent.torch"),
        ("ce_fwd_bwd", "f32", E2E_KERNEL),
        1.3,
    ),
    (
        "xent.torch CE fwd+bwd f32 vs torch.compile",
        "speedup_ge",
        ("ce_fwd_bwd", "f32", "xent.torch"),
        ("ce_fwd_bwd", "f32", "torch.compile"),
        3.0,
    ),
    (
        "xent.torch CE fwd+bwd bf16 vs torch.compile",
        "speedup_ge",
        ("ce_fwd_bwd", "bf16", "xent.torch"),
        ("ce_fwd_bwd", "bf16", "torch.compile"),
        3.0,
    ),
    (
        "xent.torch KL distillation fwd+bwd vs torch.compile",
        "speedup_ge",
        ("kl_fwd_bwd", "f32", "xent.torch"),
        ("kl_fwd_bwd", "f32", "torch.compile"),
        3.0,
    ),
    (
        "xent.torch RL per-token pass (log p, entropy, argmax, top-5) vs the torch eager composition",
        "speedup_ge",
        ("rl_stats", "f32", "xent.torch"),
        ("rl_stats", "f32", "torch eager"),
        10.0,
    ),
    (
        "xent.torch GRPO-style fwd+bwd (log p + entropy) vs the torch eager composition",
        "speedup_ge",
        ("rl_stats_fwd_bwd", "f32", "xent.torch"),
        ("rl_stats_fwd_bwd", "f32", "torch eager"),
        10.0,
    ),
    (
        "numpy grad=True / kernel with a caller buffer (CE f32)",
        "ratio_le",
        ("ce_fwd_bwd", "f32", "numpy grad=True"),
        ("ce_fwd_bwd", "f32", E2E_KERNEL),
        1.2,
    ),
    (
        "small calls: numpy CE overhead (us per call over the kernel)",
        "overhead_le",
        ("small", "f32", "numpy fwd"),
        ("small", "f32", "kernel fwd (prepared C call)"),
        5.0,
    ),
    (
        "small calls: xent.torch CE fwd+bwd overhead (us per call over the kernel)",
        "overhead_le",
        ("small", "f32", "xent.torch fwd+bwd"),
        ("small", "f32", "kernel fwd+grad (prepared C call)"),
        15.0,
    ),
    (
        "  of which PyTorch's own: an empty autograd.Function fwd+bwd (informational)",
        "value",
        ("small", "f32", "autograd floor (empty Function fwd+bwd)"),
        None,
        None,
    ),
]


def _e2e_runs(runs):
    """{(workload, dtype, shape, threads, torch): {variant: run}}"""
    out = defaultdict(dict)
    for k, r in runs.items():
        if k[0] == "e2e":
            _, op, dt, shape, thr, variant, tv = k
            out[(op, dt, shape, thr, tv)][variant] = r
    return out


def e2e_section(runs, contexts, p):
    groups = _e2e_runs(runs)
    if not groups:
        return
    p("## End to end: xent.torch and the numpy API vs PyTorch (bench/e2e_torch.py)")
    p("")
    for _, c in contexts:
        if c.get("executable") != "e2e_torch.py":
            continue
        env = ", ".join(f"{k}={v or 'unset'}" for k, v in c.get("allocator_env", {}).items() if k != "LD_PRELOAD")
        p(
            f"torch {c.get('torch_version')} ({c.get('torch_cpu_capability', '?')}; torch.compile: "
            f"{c.get('torch_compile', '?')}), Python {c.get('python', '?')} ({c.get('python_executable', '?')}), "
            f"numpy {c.get('numpy_version', '?')}; xent {c.get('xent_library_version', '?')} "
            f"({c.get('xent_target', '?')}, {c.get('xent_threading', '?')}; compiled per-call path: "
            f"{'yes' if c.get('xent_compiled_path') else 'NO (Python path)'}). One process, the same allocator "
            f"settings for every variant: {env}; THP {c.get('thp_enabled', '?')}. Load average at the start "
            f"{(c.get('load_avg') or [0])[0]:.2f}."
        )
    p("")

    def val(r, f, us=False):
        if not r:
            return None
        xs = (r.get("us_cpu") or r.get("us")) if us == "cpu" else r.get("us") if us else r["ns"]
        return f(xs) if xs else None

    def find(workload, dt, variant, thr=1):
        for (op, d, shape, t, tv), vs in groups.items():
            if op == workload and d == dt and t == thr and variant in vs and (op == "small" or shape == "8192x32000"):
                return vs[variant], tv
        return None, None

    rows = []
    for desc, kind, a, b, limit in E2E_TARGETS:
        ra, tva = find(*a)
        if kind == "value":
            if ra and ra.get("us"):
                rows.append(
                    [
                        desc,
                        f"{val(ra, min, 'cpu'):.1f} us ({val(ra, min, True):.1f})",
                        f"{val(ra, statistics.median, 'cpu'):.1f} us ({val(ra, statistics.median, True):.1f})",
                        "-",
                        "-",
                        tva,
                    ]
                )
            continue
        rb, _ = find(*b)
        if not (ra and rb and (ra["ns"] or ra.get("us")) and (rb["ns"] or rb.get("us"))):
            err = (ra or {}).get("error") or (rb or {}).get("error") or "not measured"
            rows.append([desc, "-", "-", "-", "n/a: " + str(err)[:60], "-"])
            continue
        if kind == "overhead_le":  # on this thread's CPU time (wall time in parentheses)
            vmin = val(ra, min, "cpu") - val(rb, min, "cpu")
            vmed = val(ra, statistics.median, "cpu") - val(rb, statistics.median, "cpu")
            wmin = val(ra, min, True) - val(rb, min, True)
            wmed = val(ra, statistics.median, True) - val(rb, statistics.median, True)
            lim = f"<= {limit:g} us"
            ok_med, ok_min = vmed <= limit, vmin <= limit
            fm = (f"{vmin:.1f} us ({wmin:.1f})", f"{vmed:.1f} us ({wmed:.1f})")
        elif kind == "ratio_le":
            vmin, vmed = val(ra, min) / val(rb, min), val(ra, statistics.median) / val(rb, statistics.median)
            lim = f"<= {limit:g}x"
            ok_med, ok_min = vmed <= limit, vmin <= limit
            fm = (f"{vmin:.2f}x", f"{vmed:.2f}x")
        else:
            vmin, vmed = val(rb, min) / val(ra, min), val(rb, statistics.median) / val(ra, statistics.median)
            lim = f">= {limit:g}x"
            ok_med, ok_min = vmed >= limit, vmin >= limit
            fm = (f"{vmin:.2f}x", f"{vmed:.2f}x")
        status = "met" if ok_med else ("met (min only)" if ok_min else "MISSED")
        rows.append([desc, fm[0], fm[1], lim, status, tva])
    p("### Targets of the end-to-end issue (1 thread, 8192x32000; small calls 1x32000)")
    p("")
    p(table(rows, ["target", "min", "median", "target", "status", "torch"]))
    p("")
    p("Ratios are min / min and median / median of the two rows, measured in the same process; status is judged")
    p("on the median. Small-call overhead = us per call minus the kernel alone (a prepared C call), on the calling")
    p("thread's CPU time (everything runs on it; on a shared machine wall time also counts waiting for a CPU), wall")
    p("time in parentheses.")
    p("")

    p("### Every end-to-end row")
    p("")
    detail = []
    keys = sorted(
        groups, key=lambda k: (E2E_ORDER.index(k[0]) if k[0] in E2E_ORDER else 99, k[1] != "f32", k[3], k[2], k[4])
    )
    for key in keys:
        op, dt, shape, thr, tv = key
        vs = groups[key]
        us = op == "small"
        kern = (
            vs.get(E2E_KERNEL)
            or vs.get("xent kernel + GEMMs (caller buffers)")
            or vs.get("kernel fwd+grad (prepared C call)")
        )
        eager, comp = vs.get("torch eager"), vs.get("torch.compile")
        order = sorted(vs, key=lambda v: (E2E_VARIANT_ORDER.index(v) if v in E2E_VARIANT_ORDER else 50, v))
        for v in order:
            r = vs[v]
            if r["error"] and not r["ns"]:
                detail.append([E2E_TITLES.get(op, op), dt, shape, thr, tv, v, "n/a: " + r["error"][:50]] + [""] * 5)
                continue
            mn, md = val(r, min, us), val(r, statistics.median, us)
            cpu_s = f"{fmt(val(r, min, 'cpu'))} / {fmt(val(r, statistics.median, 'cpu'))}" if r.get("us_cpu") else "-"
            k_mn = val(kern, min, us) if kern and not us else None
            e_mn = val(eager, min, us) if eager else None
            c_mn = val(comp, min, us) if comp else None
            detail.append(
                [
                    E2E_TITLES.get(op, op),
                    dt,
                    shape,
                    thr,
                    tv,
                    v,
                    fmt(mn),
                    fmt(md),
                    cpu_s,
                    f"{mn / k_mn:.2f}x" if k_mn else "-",
                    f"{e_mn / mn:.1f}x" if e_mn else "-",
                    f"{c_mn / mn:.2f}x" if c_mn else ("n/a" if not us and "torch.compile" not in vs else "-"),
                ]
            )
    p(
        table(
            detail,
            [
                "workload",
                "dtype",
                "BxV",
                "thr",
                "torch",
                "variant",
                "min",
                "median",
                "thread CPU min / median",
                "/ kernel",
                "x eager",
                "x compile",
            ],
        )
    )
    p("")
    p("ns per logit (small calls: us per call, also on the calling thread's CPU time), min and median over")
    p("repetitions; '/ kernel' = this row's min over")
    p("the min of xent's kernel on a caller buffer in the same case (the wrapper's cost); 'x eager', 'x compile' =")
    p("the min of PyTorch eager / torch.compile over this row's min (speed-up of this row). fwd+bwd rows set")
    p("x.grad = None before each step; inplace_backward overwrites its own copy of the logits.")
    p("")


def plot_e2e(runs, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        print(f"report: matplotlib not available ({e}); no end-to-end plot", file=sys.stderr)
        return
    groups = _e2e_runs(runs)
    panels = sorted(
        {(op, dt, shape, tv) for op, dt, shape, _, tv in groups},
        key=lambda k: (E2E_ORDER.index(k[0]) if k[0] in E2E_ORDER else 99, k[1] != "f32", k[3]),
    )
    if not panels:
        return
    ncol = 3
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 3.9 * nrow), squeeze=False)
    colors = {
        E2E_KERNEL: "tab:green",
        "xent kernel + GEMMs (caller buffers)": "tab:green",
        "numpy grad=True": "tab:olive",
        "xent.torch": "tab:blue",
        "xent.torch inplace_backward": "tab:cyan",
        "torch eager": "tab:red",
        "torch.compile": "tab:orange",
        "torch linear_cross_entropy (chunked)": "tab:purple",
    }
    for i, (op, dt, shape, tv) in enumerate(panels):
        ax = axes[i // ncol][i % ncol]
        us = op == "small"
        thr_list = sorted({t for o, d, s, t, v in groups if (o, d, s, v) == (op, dt, shape, tv)})
        variants = sorted(
            {v for o, d, s, t, v2 in groups if (o, d, s, v2) == (op, dt, shape, tv) for v in groups[(o, d, s, t, v2)]},
            key=lambda v: (E2E_VARIANT_ORDER.index(v) if v in E2E_VARIANT_ORDER else 50, v),
        )
        width = 0.8 / max(len(variants), 1)
        for j, v in enumerate(variants):
            xs, ys, lo = [], [], []
            for ti, t in enumerate(thr_list):
                r = groups.get((op, dt, shape, t, tv), {}).get(v)
                vals = (r.get("us") if us else r["ns"]) if r else None
                if vals:
                    xs.append(ti + (j - (len(variants) - 1) / 2) * width)
                    ys.append(statistics.median(vals))
                    lo.append(min(vals))
            if xs:
                ax.bar(xs, ys, width=width, color=colors.get(v), label=v, alpha=0.85)
                ax.plot(xs, lo, "k_", markersize=6)
        ax.set_xticks(range(len(thr_list)))
        ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in thr_list], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("us per call" if us else "ns / logit", fontsize=8)
        ax.set_title(f"{E2E_TITLES.get(op, op)}, {dt}, {shape}\ntorch {tv}", fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for i in range(len(panels), nrow * ncol):
        axes[i // ncol][i % ncol].axis("off")
    fig.suptitle("xent end to end: bars = median, ticks = min over repetitions (lower is better)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    print(f"report: end-to-end plot written to {path}", file=sys.stderr)
