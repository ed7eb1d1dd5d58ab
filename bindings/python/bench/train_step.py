"""Training-step speed: a linear LM head + cross-entropy, forward + backward,
torch.nn.functional.cross_entropy vs the xent.torch drop-in.

    python bindings/python/bench/train_step.py [--rows 4096] [--vocab 32000]
        [--hidden 256] [--repeats 7] [--threads 2]

Prints min and median wall time per step (and of the loss alone: forward +
backward of the loss on given logits) for each variant, after checking that
the variants give the same loss and weight gradient.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import xent
import xent.torch as xF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch and xent threads")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    xent.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(a.rows, a.hidden, generator=g)
    W = (torch.randn(a.vocab, a.hidden, generator=g) * 0.05).requires_grad_()
    t = torch.randint(0, a.vocab, (a.rows,), generator=g)
    t[::17] = -100

    variants = {
        "torch F.cross_entropy": lambda z: F.cross_entropy(z, t),
        "xent.torch.cross_entropy": lambda z: xF.cross_entropy(z, t),
        "xent.torch.cross_entropy(inplace_backward=True)": lambda z: xF.cross_entropy(z, t, inplace_backward=True),
    }

    # Same results first.
    ref = None
    for name, ce in variants.items():
        W.grad = None
        loss = ce(F.linear(h, W))
        loss.backward()
        if ref is None:
            ref = (loss.item(), W.grad.clone())
        else:
            dl = abs(loss.item() - ref[0])
            dg = (W.grad - ref[1]).abs().max().item() / ref[1].abs().max().item()
            print("%-50s |loss - torch| = %.2e, max |dW - dW_torch| / max|dW| = %.2e" % (name, dl, dg))
            assert dl < 1e-4 and dg < 1e-4

    print(
        "rows=%d vocab=%d hidden=%d threads=%d  xent %s target=%s backend=%s, torch %s"
        % (
            a.rows,
            a.vocab,
            a.hidden,
            a.threads,
            xent.library_version(),
            xent.active_target(),
            xent.threading_backend(),
            torch.__version__,
        )
    )
    # Round-robin over the variants (one run of each per round), so that load
    # from other processes on a shared machine hits all of them alike.
    z0 = F.linear(h, W).detach()

    def make(ce, inplace):
        def step():
            W.grad = None
            ce(F.linear(h, W)).backward()

        def loss_only():  # forward + backward of the loss on given logits (includes one clone)
            ce(z0.clone().requires_grad_()).backward()

        return step, loss_only

    fns = {name: make(ce, "inplace" in name) for name, ce in variants.items()}
    times = {name: ([], []) for name in variants}
    clone_t = []
    for r in range(a.repeats + 2):
        for name, (step, loss_only) in fns.items():
            t0 = time.perf_counter()
            step()
            t1 = time.perf_counter()
            loss_only()
            t2 = time.perf_counter()
            if r >= 2:
                times[name][0].append(t1 - t0)
                times[name][1].append(t2 - t1)
        t0 = time.perf_counter()
        z0.clone().requires_grad_()
        if r >= 2:
            clone_t.append(time.perf_counter() - t0)
    c = min(clone_t)
    results = {}
    for name, (st, lo) in times.items():
        s_ = (min(st), statistics.median(st))
        lo_ = (min(lo) - c, statistics.median(lo) - c)
        results[name] = (s_, lo_)
        print(
            "%-50s step min %7.1f ms  median %7.1f ms | loss fwd+bwd min %7.1f ms  median %7.1f ms"
            % (name, s_[0] * 1e3, s_[1] * 1e3, lo_[0] * 1e3, lo_[1] * 1e3)
        )
    print(
        "(loss fwd+bwd: on given logits, minus the %.1f ms clone of the logits; load average %s)"
        % (c * 1e3, open("/proc/loadavg").read().split()[0])
    )
    base = results["torch F.cross_entropy"]
    for name, (s, lo) in results.items():
        if name.startswith("torch"):
            continue
        print(
            "%-50s speed-up vs torch: step %.2fx (min) %.2fx (median); loss alone %.1fx (min) %.1fx (median)"
            % (name, base[0][0] / s[0], base[0][1] / s[1], base[1][0] / lo[0], base[1][1] / lo[1])
        )


if __name__ == "__main__":
    main()
