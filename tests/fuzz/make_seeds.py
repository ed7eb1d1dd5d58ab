#!/usr/bin/env python3
"""Writes the hand-made part of the seed corpus (tests/fuzz/corpus/seed-*).

The harness reads its input front to back (see fuzz_main.cc): byte 0 picks
the operation (byte 0 % 7; 128 and above: the edge-biased flavor), byte 1 the
SIMD target, then the invalid-argument choice, threading, payload and the
operation's own fields. Seeds: every operation x a few targets x valid /
invalid / host-pool variants, with pseudo-random remaining bytes (fixed seed,
so the files are reproducible), in the original format (seed-op*) and in the
edge-biased flavor (seed-edge-op*). The rest of the corpus is what libFuzzer
kept: cov-* when merging longer runs (`xent_fuzz -merge=1 tests/fuzz/corpus
NEW_DIR`, see tests/fuzz/README.md), regress-* the reproducers of past
findings.
"""
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = random.Random(20240611)
os.makedirs(OUT, exist_ok=True)
n = 0


def write(name, op_byte, variant):
    global n
    target = variant % 5  # 0 = auto, then supported targets in order
    bad = 0 if variant < 5 else 192 + rng.randrange(64)   # valid, or one invalid argument
    threads = [0, 1, 2][variant % 3]
    pool = 0 if variant % 4 else 160 + rng.randrange(96)  # built-in threads or a host pool
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(48, 160)))
    data = bytes([op_byte, target, bad, threads, pool]) + body
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    n += 1


for op in range(7):
    for variant in range(8):
        write(f"seed-op{op}-{variant}", op, variant)
# The edge-biased flavor (written after the original seeds so that those keep
# their bytes): byte 0 = 128 + 7 k + op.
for op in range(7):
    for variant in range(8):
        write(f"seed-edge-op{op}-{variant}", 128 + 7 * (variant % 4) + op, variant)
print(f"wrote {n} seeds to {OUT}")
