"""The installed package: versions, which library it loaded, targets,
threads, stubs, and that importing xent never imports torch."""

import os
import subprocess
import sys

import numpy as np
import pytest

import xent
from xent import _lib


def test_versions():
    assert xent.__version__ == xent.library_version() == _lib.HEADER_VERSION
    assert xent.abi_version() == _lib.ABI_VERSION == 1


def test_loaded_the_expected_library():
    """ci.sh sets XENT_EXPECT_ORIGIN (bundled / system / XENT_LIBRARY) and,
    for the system and XENT_LIBRARY installs, XENT_EXPECT_LIBRARY."""
    origin = os.environ.get("XENT_EXPECT_ORIGIN")
    if origin:
        assert xent.library_origin == origin, xent.info()
    path = os.environ.get("XENT_EXPECT_LIBRARY")
    if path:
        assert os.path.realpath(xent.library_path) == os.path.realpath(path), xent.info()
    if xent.library_origin == "bundled":
        assert os.path.dirname(xent.library_path) == os.path.dirname(os.path.realpath(xent.__file__))
    assert os.path.exists(xent.library_path)


def test_repaired_wheel_loads_its_own_dependencies():
    """A wheel repaired by auditwheel (ci.sh sets XENT_EXPECT_REPAIRED=1 for
    it) carries libxent's dependencies (Highway, libgomp, OpenBLAS) in
    xent.libs/ under hashed names: libxent must load those, so that the
    wheel runs where they are not installed."""
    if os.environ.get("XENT_EXPECT_REPAIRED") != "1":
        pytest.skip("not a repaired wheel")
    xent.cross_entropy(np.zeros((2, 5), "f4"), np.zeros(2, "i8"))
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(xent.__file__))), "xent.libs")
    assert os.path.isdir(libs_dir), libs_dir
    with open("/proc/self/maps") as f:
        mapped = {line.split()[-1] for line in f if "/" in line}
    for stem in ("libhwy", "libgomp"):
        mine = [m for m in mapped if os.path.basename(m).startswith(stem)]
        assert mine, (stem, sorted(mapped))
        # Other packages in the process (numpy, torch) may map the system's
        # copy too; libxent's are the hashed ones in xent.libs/.
        assert any(os.path.dirname(os.path.realpath(m)) == os.path.realpath(libs_dir) for m in mine), (stem, mine)


def test_import_does_not_import_torch():
    code = (
        "import sys, xent, numpy; xent.cross_entropy(numpy.zeros((1, 3), 'f4'), numpy.zeros(1, 'i8')); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "False"


def test_missing_library_is_a_clear_import_error(tmp_path):
    code = "import xent"
    env = dict(os.environ, XENT_LIBRARY=str(tmp_path / "nope.so"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", env=env)
    assert out.returncode != 0 and "cannot load the libxent shared library" in out.stderr
    assert "XENT_LIBRARY" in out.stderr


def test_targets():
    names = xent.supported_targets()
    assert names and xent.active_target() in names
    with pytest.raises(ValueError, match="unsupported|unknown|not"):
        xent.force_target("no_such_target")
    try:
        for name in names:
            xent.force_target(name)
            assert xent.active_target() == name
    finally:
        xent.force_target(None)
    assert xent.active_target() == names[0]


def test_info_and_threads():
    info = xent.info()
    assert info["threading_backend"] in ("openmp", "tbb", "none")
    assert xent.max_threads() >= 1
    assert info["num_threads"] == xent.get_num_threads()


def test_stubs_are_installed_and_cover_the_api():
    d = os.path.dirname(xent.__file__)
    for f in ("__init__.pyi", "torch.pyi", "py.typed"):
        assert os.path.exists(os.path.join(d, f)), f
    stub = open(os.path.join(d, "__init__.pyi")).read()
    for name in xent.__all__:
        if name != "__version__":
            assert name in stub, name
    tstub = open(os.path.join(d, "torch.pyi")).read()
    src = open(os.path.join(d, "torch.py")).read()
    import re

    names = re.search(r"__all__ = \[(.*?)\]", src, re.S).group(1)
    for name in re.findall(r'"(\w+)"', names):
        assert name in tstub, name


def test_docstrings():
    for name in (
        "cross_entropy",
        "kl_div",
        "kl_div_logits",
        "jsd",
        "binary_cross_entropy_with_logits",
        "softmax",
        "log_softmax",
        "logsumexp",
        "entropy",
        "token_logprobs",
        "set_num_threads",
        "active_target",
    ):
        assert getattr(xent, name).__doc__, name


def test_readme_numpy_example_runs():
    """The README's numpy code block runs as written."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    import re

    blocks = re.findall(r"```python\n(.*?)```", open(readme).read(), re.S)
    numpy_blocks = [b for b in blocks if "import numpy" in b]
    assert numpy_blocks
    for b in numpy_blocks:
        exec(compile(b, "README.md", "exec"), {})
    xent.set_num_threads(0)
