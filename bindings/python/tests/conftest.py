"""Shared helpers for the xent Python tests. Run pytest from outside
bindings/python/src (the tests must import the INSTALLED package)."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # reference.py

import xent  # noqa: E402

if os.path.realpath(os.path.dirname(xent.__file__)).startswith(os.path.realpath(os.path.join(HERE, "..", "src"))):
    raise RuntimeError("tests imported xent from the source tree (%s), not the installed package" % xent.__file__)

REPO = os.path.realpath(os.path.join(HERE, "..", "..", ".."))
HEADER_DIR = os.environ.get("XENT_INCLUDE_DIR", os.path.join(REPO, "include"))

try:
    import ml_dtypes  # noqa: F401

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    BF16 = None


def have_torch():
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        if os.environ.get("XENT_REQUIRE_TORCH") == "1":
            raise
        return False


def f64(a):
    """Exact float64 copy of a numpy array of any float dtype (incl. bfloat16)."""
    return np.asarray(a).astype(np.float64)


def ulp(x, dtype):
    """Spacing of `dtype` at |x| (bf16 via its 7-bit mantissa)."""
    x = np.abs(np.asarray(x, np.float64))
    if dtype == np.float16:
        return np.spacing(x.astype(np.float16)).astype(np.float64)
    # bfloat16: spacing = 2^(exponent - 7); subnormal floor like f32
    e = np.floor(np.log2(np.maximum(x, 2.0**-126)))
    return 2.0 ** (e - 7)


def assert_close(got, ref, rtol, atol, what=""):
    got = f64(got)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, "%s: shape %s != %s" % (what, got.shape, ref.shape)
    both_nan = np.isnan(got) & np.isnan(ref)
    same_inf = np.isinf(ref) & (got == ref)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
    ok = both_nan | same_inf | (err <= atol + rtol * np.abs(ref))
    if not np.all(ok):
        idx = np.argwhere(~ok)[:5]
        detail = ", ".join("%s: got %r ref %r" % (tuple(i), got[tuple(i)], ref[tuple(i)]) for i in idx)
        raise AssertionError(
            "%s: %d of %d values differ (rtol %g, atol %g): %s" % (what, int((~ok).sum()), ok.size, rtol, atol, detail)
        )


def assert_low_precision(got, ref, dtype, what="", f32_atol=1e-6):
    """The header's bf16/f16 contract: the f32 result rounded to nearest even,
    i.e. within one unit in the last place of `dtype` plus the f32 absolute
    bound (1e-6 for gradients, 2e-6 for per-row values)."""
    got = f64(got)
    ref = np.asarray(ref, np.float64)
    tol = ulp(ref, dtype) + f32_atol
    err = np.abs(got - ref)
    ok = (np.isnan(got) & np.isnan(ref)) | (err <= tol)
    if not np.all(ok):
        idx = np.argwhere(~ok)[:5]
        detail = ", ".join("%s: got %r ref %r" % (tuple(i), got[tuple(i)], ref[tuple(i)]) for i in idx)
        raise AssertionError(
            "%s: %d of %d values beyond 1 ulp of %s: %s" % (what, int((~ok).sum()), ok.size, np.dtype(dtype), detail)
        )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
