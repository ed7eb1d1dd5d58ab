"""xent.torch.distributed.vocab_parallel_cross_entropy on 1, 2, 3 and 4 gloo
processes on the loopback interface (dist_worker.py is one rank; every rank
checks itself against single-process xent.torch.cross_entropy and reports).
A hang fails the test: the process group's timeout is 30 s and each spawn is
killed after 120 s."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import have_torch

pytestmark = pytest.mark.skipif(not have_torch(), reason="torch is not installed")

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker.py")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(world):
    if not __import__("torch").distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    port = _free_port()
    # One thread per rank: up to 4 ranks share CI's 2 cores.
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(r), str(world), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in range(world)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=120))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = []
    for r, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, "rank %d exited with %s:\n%s\n%s" % (r, p.returncode, out, err[-4000:])
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_vocab_parallel_matches_cross_entropy(world):
    failures = [
        "rank %d, %s:\n%s" % (rep["rank"], name, res)
        for rep in _spawn(world)
        for name, res in rep["results"].items()
        if res != "ok"
    ]
    assert not failures, "\n".join(failures)


def test_needs_an_initialized_process_group():
    import torch

    from xent.torch.distributed import vocab_parallel_cross_entropy

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        pytest.skip("a process group is initialized in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
