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

from report_common import fmt, table
from report_e2e import e2e_section, plot_e2e

OP_ORDER = [
    "ce_fwd",
    "ce_fwd_grad",
    "ce_fwd_grad_inplace",
    "ce_softcap_fwd_grad",
    "kl_fwd_grad",
    "jsd_fwd_grad",
    "kl_div_fwd_grad",
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
    p("ce_softcap_fwd_grad, softmax 8 (read + write another buffer); ce_fwd_grad_inplace 8 (in place);")
    p("kl_fwd_grad, jsd_fwd_grad, kl_div_fwd_grad, softmax_backward, bce_fwd_grad 12 (two reads + one write).")
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
