#!/usr/bin/python3
"""Table and plot from bench_xent / peer_torch.py JSON files.

  report.py RESULTS.json... [--md table.md] [--png plot.png] [--csv table.csv]

Reads every Google Benchmark JSON file given (bench_xent's suites and the
PyTorch peer), takes min and median over repetitions of each benchmark, and
prints:
  1. the measured bandwidths (the rooflines),
  2. the issue's targets with their status,
  3. one row per xent benchmark: ns/logit (min, median), GB/s, roofline,
     % of roofline and the speed-up over each peer.
Derived values (GB/s, % of roofline, speed-ups) use the min over repetitions
(best of N: the least disturbed run on a shared machine) of both sides; the
median column shows the spread.

Roofline of an operation = bytes moved per logit / the machine's streaming
bandwidth of the matching kind and thread count (best repetition): read-only
ops use the read bandwidth; ops writing a B x V output into another buffer use
the plain-store copy bandwidth (bytes counted = read + written); in-place ops
the in-place bandwidth. Shapes whose bytes (read + written) fit in the last-level cache
are marked "cache" (no DRAM roofline applies).
Only the Python standard library is needed; the plot needs matplotlib.
"""

import argparse
import json
import math
import os
import statistics
import sys
from collections import defaultdict

OP_ORDER = [
    "ce_fwd",
    "ce_fwd_grad",
    "ce_fwd_grad_inplace",
    "kl_fwd_grad",
    "jsd_fwd_grad",
    "token_logprobs",
    "softmax",
    "softmax_backward",
    "bce_fwd_grad",
]
SHAPE_ORDER = ["8192x32000", "4096x128256", "64x262144", "1x262144", "32768x4096"]
BW_NAMES = {0: "read", 1: "copy", 3: "inplace"}
TORCH_PEER = {"ce_fwd_grad_inplace": "ce_fwd_grad"}  # PyTorch has no in-place CE gradient

# The targets: (description, op, dtype, shape, threads, kind, limit)
TARGETS = [
    ("CE fwd+grad f32 8192x32000, 1 thread", "ce_fwd_grad", "f32", "8192x32000", 1, "ns", 0.85),
    ("CE fwd+grad f32 8192x32000, all threads", "ce_fwd_grad", "f32", "8192x32000", "all", "ns", 0.45),
    ("CE fwd+grad bf16 8192x32000, 1 thread", "ce_fwd_grad", "bf16", "8192x32000", 1, "ns", 0.45),
    ("CE forward only f32 8192x32000, 1 thread", "ce_fwd", "f32", "8192x32000", 1, "ns", 0.40),
    ("KL fwd+grad, two f32 logit batches 8192x32000, 1 thread", "kl_fwd_grad", "f32", "8192x32000", 1, "ns", 1.3),
    ("CE fwd+grad f32 1x262144, all threads vs 1", "ce_fwd_grad", "f32", "1x262144", "ratio", "speedup", 1.7),
    ("CE fwd f32 1x262144, 1 thread (ms per call)", "ce_fwd", "f32", "1x262144", 1, "ms", 0.04),
]


def parse_name(name):
    """'xent/ce_fwd/f32/8192x32000/threads:1/target:auto/iterations:1/manual_time' -> dict."""
    parts = name.split("/")
    d = {"suite": parts[0]}
    pos = []
    for p in parts[1:]:
        if ":" in p:
            k, v = p.split(":", 1)
            d[k] = v
        elif p not in ("manual_time", "real_time"):
            pos.append(p)
    if d["suite"] == "bandwidth":
        d["kind"] = pos[0] if pos else "?"
    else:
        d["op"], d["dtype"], d["shape"] = (pos + ["?", "?", "?"])[:3]
    return d


def load(files):
    runs = defaultdict(lambda: {"ns": [], "gbs": [], "ms": [], "label": "", "error": None, "meta": {}})
    contexts = []
    for f in files:
        try:
            with open(f) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"report: cannot read {f}: {e}", file=sys.stderr)
            continue
        contexts.append((f, data.get("context", {})))
        for b in data.get("benchmarks", []):
            if b.get("run_type") != "iteration":
                continue
            d = parse_name(b.get("run_name", b["name"]))
            if d["suite"] == "bandwidth":
                key = ("bandwidth", d["kind"], int(d.get("threads", 1)))
            elif d["suite"] == "e2e":
                shape = d["shape"] + (f"x{d['hidden']}" if "hidden" in d else "")
                key = (
                    "e2e",
                    d["op"],
                    d["dtype"],
                    shape,
                    int(d.get("threads", 1)),
                    d.get("variant", "?"),
                    data.get("context", {}).get("torch_version", "?"),
                )
            else:
                key = (d["suite"], d["op"], d["dtype"], d["shape"], int(d.get("threads", 1)), d.get("target", ""))
            r = runs[key]
            if b.get("error_occurred"):
                r["error"] = b.get("error_message", "error")
                continue
            unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
            r["ms"].append(b["real_time"] * unit)
            if "ns_per_logit" in b:
                r["ns"].append(b["ns_per_logit"])
            if "GB_per_s" in b:
                r["gbs"].append(b["GB_per_s"])
            r["label"] = b.get("label", "")
            if "us_per_call" in b:
                r.setdefault("us", []).append(b["us_per_call"])
            if "us_per_call_thread_cpu" in b:
                r.setdefault("us_cpu", []).append(b["us_per_call_thread_cpu"])
            if "unit" in b:
                r["meta"]["unit"] = b["unit"]
            for k in ("bytes_per_logit", "bw_kind", "logits", "check_loss_rel_err", "check_out_rel_err"):
                if k in b:
                    r["meta"][k] = b[k]
    return runs, contexts


LOSS_TOL = 1e-4
OUT_TOL = {"f32": 1e-4, "bf16": 1.6e-2}


def check_status(meta, dt):
    lr, orr = meta.get("check_loss_rel_err"), meta.get("check_out_rel_err")
    if lr is None and orr is None:
        return "-"
    bad = []
    if lr is not None and not lr <= LOSS_TOL:
        bad.append(f"loss rel err {lr:.2g}")
    if orr is not None and not orr <= OUT_TOL.get(dt, 1e-4):
        bad.append(f"output rel err {orr:.2g}")
    return "FAIL: " + ", ".join(bad) if bad else "ok"


def fmt(v, nd=3):
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{nd}f}"


def table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    out = [
        "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out)


def shape_key(s):
    return (SHAPE_ORDER.index(s) if s in SHAPE_ORDER else 99, s)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--md", help="write the report (markdown) here")
    ap.add_argument("--csv", help="write one row per xent benchmark here")
    ap.add_argument("--png", help="write the plot here")
    ap.add_argument("--png-e2e", help="write the end-to-end plot here (when e2e_torch.py results are given)")
    args = ap.parse_args()

    runs, contexts = load(args.files)
    ctx = {}
    for _, c in contexts:
        for k, v in c.items():
            ctx.setdefault(k, v)
    max_threads = int(ctx.get("xent_max_threads", ctx.get("num_cpus", 1)) or 1)
    llc = max([c.get("size", 0) for c in ctx.get("caches", [])] or [0])

    lines = []
    p = lines.append
    p("# xent benchmark report")
    p("")
    p(
        f"xent {ctx.get('xent_version', '?')} ({ctx.get('xent_threading', '?')} threading), "
        f"targets {ctx.get('xent_targets', '?')}; {ctx.get('num_cpus', '?')} CPUs at "
        f"{ctx.get('mhz_per_cpu', '?')} MHz, last-level cache {llc / 2**20:.0f} MiB; "
        f"ops available: {ctx.get('xent_ops_available', '?')}."
    )
    torch_ctx = next((c for f, c in contexts if "torch_version" in c), None)
    if torch_ctx:
        p(f"PyTorch peer: torch {torch_ctx['torch_version']} ({torch_ctx.get('torch_cpu_capability', '?')}).")
    loads = [(os.path.basename(f), c.get("load_avg")) for f, c in contexts if c.get("load_avg")]
    if loads:
        p(
            "Load average at the start of each suite (other work on the machine makes numbers noisy): "
            + ", ".join(f"{f} {la[0]:.2f}" for f, la in loads)
            + "."
        )
    p("")

    # 1. Bandwidth.
    bw = {}
    rows = []
    for key, r in sorted(runs.items()):
        if key[0] != "bandwidth" or not r["gbs"]:
            continue
        _, kind, thr = key
        best, med = max(r["gbs"]), statistics.median(r["gbs"])
        bw[(kind, thr)] = best
        rows.append([kind, thr, fmt(best, 2), fmt(med, 2), len(r["gbs"]), r["label"]])
    p("## Streaming bandwidth (the roofline)")
    p("")
    if rows:
        p("Buffers of >= 1 GiB; read counts 4 bytes per float, the write kernels 8 (read + write).")
        p("")
        p(table(rows, ["kind", "threads", "GB/s best", "GB/s median", "reps", "isa"]))
    else:
        p("(no bandwidth results: rooflines not available)")
    p("")

    def bw_for(kind_code, thr):
        return bw.get((BW_NAMES.get(int(kind_code), "copy"), thr))

    def stat(r, f):
        return f(r["ns"]) if r and r["ns"] else None

    def peer(suite, op, dt, shape, thr):
        if suite == "torch":
            op = TORCH_PEER.get(op, op)
        return runs.get((suite, op, dt, shape, thr, ""))

    # 2./3. Rows per xent benchmark.
    xkeys = sorted(
        (k for k in runs if k[0] == "xent"),
        key=lambda k: (
            SHAPE_ORDER.index(k[3]) if k[3] in SHAPE_ORDER else 99,
            OP_ORDER.index(k[1]) if k[1] in OP_ORDER else 99,
            k[2],
            k[4],
            k[5] != "auto",
            k[5],
        ),
    )
    detail = []
    csv_rows = []
    check_fail = []
    for k in xkeys:
        _, op, dt, shape, thr, target = k
        r = runs[k]
        tname = r["label"] or target
        if target == "auto":
            tname = f"{tname} (auto)"
        if r["error"] and not r["ns"]:
            detail.append([op, dt, shape, thr, tname, "n/a: " + r["error"][:60]] + [""] * 9)
            continue
        mn, md = stat(r, min), stat(r, statistics.median)
        bpl = r["meta"].get("bytes_per_logit", 0)
        logits = r["meta"].get("logits", 0)
        gbs = bpl / mn if mn else None
        roof = None
        roof_s = "-"
        if bpl and logits and logits * bpl < llc:
            roof_s = "cache"
        elif bpl:
            b = bw_for(r["meta"].get("bw_kind", 1), thr)
            if b:
                roof = bpl / b
                roof_s = fmt(roof)
        pct = f"{100 * roof / mn:.0f}%" if roof and mn else "-"
        chk = check_status(r["meta"], dt)
        if chk.startswith("FAIL"):
            check_fail.append(f"{op} {dt} {shape} threads {thr} {tname}: {chk}")
        tr, sr = peer("torch", op, dt, shape, thr), peer("scalar_ref", op, dt, shape, thr)
        tmin, smin = stat(tr, min), stat(sr, min)
        t_s = fmt(tmin) if tmin else ("n/a" if tr and tr["error"] else "-")
        s_s = fmt(smin) if smin else "-"
        detail.append(
            [
                op,
                dt,
                shape,
                thr,
                tname,
                fmt(mn),
                fmt(md),
                fmt(gbs, 2),
                roof_s,
                pct,
                t_s,
                f"{tmin / mn:.1f}x" if tmin and mn else "-",
                s_s,
                f"{smin / mn:.1f}x" if smin and mn else "-",
                chk,
            ]
        )
        csv_rows.append([op, dt, shape, thr, r["label"] or target, target, mn, md, gbs, roof, tmin, smin])

    # Targets.
    p("## Targets of the issue")
    p("")
    trows = []

    def best_auto(op, dt, shape, thr):
        return runs.get(("xent", op, dt, shape, thr, "auto"))

    for desc, op, dt, shape, thr, kind, limit in TARGETS:
        thr_n = max_threads if thr == "all" else 1
        r = best_auto(op, dt, shape, thr_n)
        if kind == "speedup":
            r1, r2 = best_auto(op, dt, shape, 1), best_auto(op, dt, shape, max_threads)
            if not (r1 and r2 and r1["ns"] and r2["ns"]):
                trows.append([desc, "-", "-", f">= {limit}x", "not measured", "-", "-", "-"])
                continue
            v_min = min(r1["ns"]) / min(r2["ns"])
            v_med = statistics.median(r1["ns"]) / statistics.median(r2["ns"])
            status = "met" if v_med >= limit else ("met (min only)" if v_min >= limit else "MISSED")
            trows.append([desc, f"{v_min:.2f}x", f"{v_med:.2f}x", f">= {limit}x", status, "-", "-", "-"])
            continue
        if not r or not r["ns"]:
            err = r["error"] if r and r["error"] else "not measured"
            trows.append([desc, "-", "-", f"<= {limit}", "n/a: " + err[:70], "-", "-", "-"])
            continue
        if kind == "ms":
            vmin, vmed = min(r["ms"]), statistics.median(r["ms"])
        else:
            vmin, vmed = min(r["ns"]), statistics.median(r["ns"])
        status = "met" if vmed <= limit else ("met (min only)" if vmin <= limit else "MISSED")
        roof = "-"
        bpl = r["meta"].get("bytes_per_logit", 0)
        b = bw_for(r["meta"].get("bw_kind", 1), thr_n)
        if kind == "ns" and b:
            roof = fmt(bpl / b)
        elif kind == "ms":
            roof = "cache"
        tr, sr = peer("torch", op, dt, shape, thr_n), peer("scalar_ref", op, dt, shape, thr_n)
        unit = (lambda x: min(x["ms"])) if kind == "ms" else (lambda x: min(x["ns"]))
        tv = unit(tr) if tr and tr["ns"] else None
        sv = unit(sr) if sr and sr["ns"] else None
        trows.append(
            [
                desc,
                fmt(vmin, 4 if kind == "ms" else 3),
                fmt(vmed, 4 if kind == "ms" else 3),
                f"<= {limit}",
                status,
                roof,
                (f"{fmt(tv, 3)} ({tv / vmin:.1f}x)" if tv else "-"),
                (f"{fmt(sv, 3)} ({sv / vmin:.1f}x)" if sv else "-"),
            ]
        )
    p(
        table(
            trows,
            [
                "workload (xent, best target)",
                "min",
                "median",
                "target",
                "status",
                "roofline",
                "PyTorch min (speed-up)",
                "scalar ref min (speed-up)",
            ],
        )
    )
    p("")
    p("Units: ns/logit, except where stated. Status judged on the median; 'met (min only)' means only the")
    p("best repetition meets it. Speed-ups are peer min / xent min.")
    p("")

    p("## Every xent benchmark")
    p("")
    p("ns/logit (min and median over repetitions); GB/s = bytes per logit / min; roofline in ns/logit;")
    p("% roofline = roofline / min (above 100% is possible where xent uses streaming stores and the")
    p("roofline is the plain-store copy bandwidth); speed-up = peer min / xent min.")
    p("")
    p(
        table(
            detail,
            [
                "op",
                "dtype",
                "BxV",
                "thr",
                "target",
                "min",
                "median",
                "GB/s",
                "roofline",
                "%roof",
                "torch",
                "x torch",
                "scalar ref",
                "x ref",
                "check",
            ],
        )
    )
    p("")
    p("check: xent against the scalar reference on the first rows (up to 64) of each case: loss relative")
    p(f"error <= {LOSS_TOL:g} and largest output difference / largest output <= {OUT_TOL['f32']:g} (f32),")
    p(f"{OUT_TOL['bf16']:g} (bf16 outputs: 2 units in the last place); '-' = in place, not checked.")
    if check_fail:
        p("")
        p("**CHECK FAILURES** (xent and the scalar reference disagree):")
        for c in check_fail:
            p(f"- {c}")
    p("")
    p("Byte model (bytes per logit, f32; half for bf16): ce_fwd, token_logprobs 4 (read); ce_fwd_grad,")
    p("softmax 8 (read + write another buffer); ce_fwd_grad_inplace 8 (in place); kl_fwd_grad,")
    p("jsd_fwd_grad, softmax_backward, bce_fwd_grad 12 (two reads + one write).")
    e2e_section(runs, contexts, p)
    text = "\n".join(lines)
    print(text)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(text + "\n")
    if args.csv:
        with open(args.csv, "w") as fh:
            fh.write(
                "op,dtype,shape,threads,target,target_requested,min_ns,median_ns,GBps,roofline_ns,"
                "torch_min_ns,scalar_ref_min_ns\n"
            )
            for r in csv_rows:
                fh.write(",".join("" if v is None else str(v) for v in r) + "\n")
    if args.png:
        plot(runs, bw, llc, max_threads, args.png)
    if args.png_e2e and any(k[0] == "e2e" for k in runs):
        plot_e2e(runs, args.png_e2e)
    return 0


# ---------------------------------------------------------------------------
# End to end (bench/e2e_torch.py): what PyTorch / numpy users see.
E2E_ORDER = ["small", "ce_fwd", "ce_fwd_bwd", "kl_fwd_bwd", "token_logprobs", "token_logprobs_fwd_bwd", "train_step"]
E2E_TITLES = {
    "small": "small calls (us per call)",
    "ce_fwd": "CE forward",
    "ce_fwd_bwd": "CE forward + backward",
    "kl_fwd_bwd": "KL distillation fwd + bwd (T = 2)",
    "token_logprobs": "token log-probs (no grad)",
    "token_logprobs_fwd_bwd": "token log-probs fwd + bwd (policy gradient)",
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


def plot(runs, bw, llc, max_threads, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        print(f"report: matplotlib not available ({e}); no plot", file=sys.stderr)
        return
    series = defaultdict(dict)  # (op, dt, thr) -> {series name: {shape: ns}}
    meta = {}
    for k, r in runs.items():
        if k[0] in ("bandwidth", "e2e") or not r["ns"]:
            continue
        suite, op, dt, shape, thr, target = k
        if suite == "xent":
            name = f"xent {r['label'] or target}" + (" (auto)" if target == "auto" else "")
        elif suite == "torch":
            name = "PyTorch"
        else:
            name = "scalar C++ ref"
        series[(op, dt, thr)].setdefault(name, {})[shape] = min(r["ns"])
        if suite == "xent":
            meta[(op, dt, shape, thr)] = r["meta"]
    # PyTorch has no in-place CE: reuse its fwd+grad series.
    for (op, dt, thr), s in list(series.items()):
        if op in TORCH_PEER:
            src = series.get((TORCH_PEER[op], dt, thr), {}).get("PyTorch")
            if src:
                s.setdefault("PyTorch", dict(src))
    panels = sorted(
        (k for k in series if any(n.startswith("xent") for n in series[k])),
        key=lambda k: (OP_ORDER.index(k[0]) if k[0] in OP_ORDER else 99, k[1], k[2]),
    )
    if not panels:
        return
    cols = sorted({(dt, thr) for _, dt, thr in panels}, key=lambda c: (c[0] != "f32", c[1]))
    ops = [o for o in OP_ORDER if any(p[0] == o for p in panels)]
    fig, axes = plt.subplots(len(ops), len(cols), figsize=(4.6 * len(cols), 3.3 * len(ops)), squeeze=False)
    styles = {"PyTorch": dict(color="tab:red", marker="s"), "scalar C++ ref": dict(color="tab:gray", marker="^")}
    for i, op in enumerate(ops):
        for j, (dt, thr) in enumerate(cols):
            ax = axes[i][j]
            s = series.get((op, dt, thr))
            ax.set_title(f"{op} {dt}, {thr} thread{'s' if thr > 1 else ''}", fontsize=9)
            if not s:
                ax.axis("off")
                continue
            shapes = sorted({sh for v in s.values() for sh in v}, key=shape_key)
            xs = range(len(shapes))
            for name in sorted(s, key=lambda n: (not n.startswith("xent"), "(auto)" not in n, n)):
                vals = [s[name].get(sh, float("nan")) for sh in shapes]
                st = styles.get(name, dict(marker="o"))
                lw = 2.2 if "(auto)" in name else 1.0
                ax.plot(xs, vals, label=name, linewidth=lw, markersize=4, **st)
            roof = []
            for sh in shapes:
                m = meta.get((op, dt, sh, thr), {})
                bpl, logits = m.get("bytes_per_logit"), m.get("logits", 0)
                b = bw.get((BW_NAMES.get(int(m.get("bw_kind", 1)), "copy"), thr))
                roof.append(bpl / b if bpl and b and logits * bpl >= llc else float("nan"))
            if any(not math.isnan(v) for v in roof):
                ax.plot(
                    xs,
                    roof,
                    "k--",
                    marker="_",
                    markersize=18,
                    markeredgewidth=2,
                    label="roofline (DRAM bandwidth)",
                    linewidth=1.2,
                )
            ax.set_xticks(list(xs))
            ax.set_xticklabels(shapes, rotation=20, fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("ns / logit", fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
    fig.suptitle(
        "xent: ns per logit by shape (lower is better); roofline = bytes/logit / measured bandwidth", fontsize=11
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=110)
    print(f"report: plot written to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
