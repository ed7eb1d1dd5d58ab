"""The compiled per-call path (xent/_fast.c) against the Python path it
shortcuts: same results bit for bit, same exceptions, taken for the common
calls and declined (falling back to the Python path) for everything else."""

import os

import numpy as np
import pytest

import xent
from xent import _api

from conftest import BF16, have_torch


@pytest.fixture
def python_path(monkeypatch):
    """Runs the body with the compiled path switched off."""

    def off():
        monkeypatch.setattr(_api, "_fast", None)

    return off


def test_extension_is_built():
    # The wheels CI builds must carry it; a source checkout used directly may not.
    if os.environ.get("XENT_ALLOW_PURE_PYTHON") == "1":
        pytest.skip("XENT_ALLOW_PURE_PYTHON=1")
    assert _api._fast is not None, "xent._fast (the compiled per-call path) is missing from the installed package"


needs_fast = pytest.mark.skipif(_api._fast is None, reason="xent._fast is not built")


CASES = ["packed", "padded rows", "row slice", "3-d", "int32 targets", "float16", "one row", "empty"]


def _case(name):
    rng = np.random.default_rng(1234)
    x = (rng.standard_normal((6, 300)) * 3).astype(np.float32)
    t = rng.integers(0, 300, size=6)
    t[1] = -100
    big = (rng.standard_normal((6, 512)) * 3).astype(np.float32)
    x3 = (rng.standard_normal((2, 3, 50)) * 2).astype(np.float32)
    t3 = rng.integers(0, 50, size=(2, 3))
    return {
        "packed": (x, t),
        "padded rows": (big[:, :300], t),  # row stride 512
        "row slice": (big[1:5, 7:307], t[1:5]),
        "3-d": (x3, t3),
        "int32 targets": (x, t.astype(np.int32)),
        "float16": (x.astype(np.float16), t),
        "one row": (x[:1], t[:1]),
        "empty": (x[:0], t[:0]),
    }[name]


def _no_python_path(m, name):
    """Makes the Python path's array handling fail the test (the common case must not reach it)."""

    def fail(*args, **kwargs):
        pytest.fail("Python path taken for %s" % name)

    m.setattr(_api, "matrix", fail)


def _same(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
        return
    assert type(a) is type(b), (type(a), type(b))
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


CE_KWARGS = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(label_smoothing=0.1, z_loss=1e-3),
    dict(softcap=5.0),
    dict(grad=True),
    dict(grad=True, reduction="none", grad_scale=0.5),
    dict(grad="inplace"),
    dict(grad="out"),
    dict(ignore_index=3, num_threads=1),
]


@needs_fast
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("kw", CE_KWARGS, ids=lambda k: ",".join("%s=%s" % i for i in sorted(k.items())) or "mean")
def test_cross_entropy_same_as_python_path(kw, name, python_path, monkeypatch):
    x, t = _case(name)
    if "ignore_index" in kw:
        t = np.where(t == -100, kw["ignore_index"], t).astype(t.dtype)
    inplace, out = kw.get("grad") == "inplace", kw.get("grad") == "out"

    def run():
        k = dict(kw)
        if out:  # a fresh output array per run (the result is that array)
            k["grad"] = np.full(x.shape, 7, x.dtype)
        return xent.cross_entropy(x.copy() if inplace else x, t, **k)

    with monkeypatch.context() as m:
        _no_python_path(m, name)
        fast = run()
    python_path()
    _same(fast, run())


@needs_fast
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("entropy", [False, True])
@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.7, softcap=20.0), dict(ignore_index=5)])
def test_token_logprobs_and_softmax_same_as_python_path(entropy, kw, name, python_path, monkeypatch):
    x, t = _case(name)
    if "ignore_index" in kw:
        t = np.where(t == -100, kw["ignore_index"], t).astype(t.dtype)

    def run():
        return (xent.token_logprobs(x, t, entropy=entropy, **kw), xent.softmax(x, temperature=0.5), xent.log_softmax(x))

    with monkeypatch.context() as m:
        _no_python_path(m, name)
        fast = run()
    python_path()
    _same(fast, run())


@needs_fast
def test_declined_cases_fall_back(rng):
    """Layouts needing a copy, conversions, weights, errors: the Python path
    handles them (results as documented, exceptions with libxent's message)."""
    x = (rng.standard_normal((5, 40)) * 2).astype(np.float32)
    t = rng.integers(0, 40, size=5)
    ref = xent.cross_entropy(x, t, reduction="none")
    _same(xent.cross_entropy(np.asfortranarray(x), t, reduction="none"), ref)  # copied
    _same(xent.cross_entropy(x, t.astype(np.uint8), reduction="none"), ref)  # converted
    w = np.ones(40, np.float32)
    _same(xent.cross_entropy(x, t, weight=w, reduction="none"), ref)
    bad = t.copy()
    bad[2] = 40
    with pytest.raises(ValueError, match=r"target\[2\] = 40 is outside \[0, 40\)"):
        xent.cross_entropy(x, bad)
    with pytest.raises(ValueError, match="reduction"):
        xent.cross_entropy(x, t, reduction="batchmean")
    with pytest.raises(ValueError, match="num_threads"):
        xent.cross_entropy(x, t, num_threads=-1)
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        xent.cross_entropy(ro, t, grad="inplace")
    with pytest.raises(TypeError, match="dtype"):
        xent.cross_entropy(x.astype(np.float64), t)
    with pytest.raises(ValueError, match="shape"):
        xent.token_logprobs(x, t[:3])
    if BF16 is not None:  # numpy bfloat16 is not a buffer format: the Python path reads it
        xb = x.astype(BF16)
        np.testing.assert_allclose(
            xent.cross_entropy(xb, t, reduction="none"),
            xent.cross_entropy(xb.astype(np.float32), t, reduction="none"),
            rtol=2e-6,
        )


def _flat(x):
    if isinstance(x, tuple):
        return [v for item in x for v in _flat(item)]
    return [x]


@needs_fast
@pytest.mark.skipif(not have_torch(), reason="torch is not importable")
def test_torch_tensors_same_as_python_path(rng, monkeypatch):
    import torch

    import xent.torch  # noqa: F401 - registers torch with the compiled path

    x = torch.from_numpy((rng.standard_normal((6, 300)) * 3).astype(np.float32))
    t = torch.from_numpy(rng.integers(0, 300, size=6))
    variants = [x, x.to(torch.bfloat16), x.to(torch.float16), torch.randn(6, 400)[:, :300]]

    def run(v):
        return (
            xent.cross_entropy(v, t),
            xent.cross_entropy(v, t, reduction="none", grad=True),
            xent.token_logprobs(v, t, entropy=True),
            xent.log_softmax(v),
        )

    for v in variants:
        with monkeypatch.context() as m:
            _no_python_path(m, "a tensor")
            fast = run(v)
        with monkeypatch.context() as m:
            m.setattr(_api, "_fast", None)
            slow = run(v)
        for a, b in zip(_flat(fast), _flat(slow)):
            assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b)
    # not handled by the compiled path: non-contiguous classes (copied), float64 (error)
    xt = x.t().contiguous().t()
    assert torch.equal(xent.cross_entropy(xt, t, reduction="none"), xent.cross_entropy(x, t, reduction="none"))
    with pytest.raises(TypeError):
        xent.cross_entropy(x.double(), t)
