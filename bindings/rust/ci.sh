#!/usr/bin/env bash
# Tests the Rust crates (xent-sys, xent, xent-sys-test) against an already
# built meson build directory of this repository:
#   bindings/rust/ci.sh BUILD_DIR        (tests/run passes build/ci)
# Finds cargo (PATH, ~/.cargo/bin, else Debian's `cargo` package), points the
# build scripts at BUILD_DIR (pkg-config's meson-uninstalled/xent-uninstalled.pc,
# or XENT_LIB_DIR), keeps every build product in BUILD_DIR/rust-target, and runs:
#   1. cargo test --workspace --all-features   (layout/ABI checks, every
#      operation against the float64 reference, property tests, doc tests)
#   2. cargo build -p xent                     (default features compile alone)
#   3. the example, and rustdoc with warnings as errors.
# Exits non-zero when any step fails. Environment knobs: XENT_PROPTEST_CASES
# (property-test cases per test, default 48), XENT_PROPTEST_SEED (a u64 or
# `random`; fixed by default so runs are reproducible), CARGO (the cargo binary).
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR (a meson build directory holding libxent.so)" >&2
  exit 2
fi
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "ci.sh: no such directory: $1" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ ! -e "$BUILD/libxent.so" ]; then
  echo "ci.sh: $BUILD holds no libxent.so; build the C library first (meson setup + ninja)" >&2
  exit 2
fi

# --- cargo -------------------------------------------------------------------
MIN_RUST=1.88  # proptest 1.12 (a dev-dependency) needs it; the crates need 1.81
CARGO=${CARGO:-}
if [ -z "$CARGO" ]; then
  if command -v cargo >/dev/null 2>&1; then
    CARGO=$(command -v cargo)
  elif [ -x "$HOME/.cargo/bin/cargo" ]; then
    CARGO=$HOME/.cargo/bin/cargo
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "ci.sh: cargo not found; installing Debian's cargo package" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq --no-install-recommends cargo >&2 || {
      echo "ci.sh: could not install cargo" >&2
      exit 1
    }
    CARGO=$(command -v cargo)
  fi
fi
rustc_version=$("$(dirname "$CARGO")/rustc" --version 2>/dev/null || rustc --version 2>/dev/null || echo "rustc 0.0.0")
have=$(echo "$rustc_version" | awk '{print $2}' | cut -d- -f1)
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$have" | sort -V | head -1)" != "$MIN_RUST" ]; then
  echo "ci.sh: $rustc_version is older than the Rust $MIN_RUST these tests need" >&2
  echo "       (Debian 12's packaged Rust is 1.63: install a current toolchain with rustup)" >&2
  exit 1
fi
echo "ci.sh: using $("$CARGO" --version), $rustc_version"

# --- where libxent is --------------------------------------------------------
unset XENT_LIB_DIR XENT_INCLUDE_DIR XENT_NO_PKG_CONFIG
if command -v pkg-config >/dev/null 2>&1 && [ -f "$BUILD/meson-uninstalled/xent-uninstalled.pc" ] &&
   PKG_CONFIG_PATH="$BUILD/meson-uninstalled" pkg-config --exists xent; then
  export PKG_CONFIG_PATH="$BUILD/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  echo "ci.sh: libxent via pkg-config: $(pkg-config --libs xent)"
else
  export XENT_LIB_DIR="$BUILD" XENT_INCLUDE_DIR="$ROOT/include"
  echo "ci.sh: libxent via XENT_LIB_DIR=$XENT_LIB_DIR"
fi
export CARGO_TARGET_DIR="$BUILD/rust-target"
export CARGO_TERM_COLOR=never RUST_BACKTRACE=${RUST_BACKTRACE:-0}
# A stray XENT_TARGET would make every operation fail (by design).
unset XENT_TARGET

cd "$HERE"
failed=()
run() {  # run NAME CMD...
  local name=$1; shift
  echo "--- $name: $*"
  if "$@"; then echo "--- $name: ok"; else echo "--- $name: FAILED"; failed+=("$name"); fi
}

run "cargo test" "$CARGO" test --workspace --all-features --locked --no-fail-fast -j2
run "default features" "$CARGO" build -p xent --locked -j2
run "example" "$CARGO" run -p xent --example cross_entropy --locked -j2 -q
run "rustdoc" env RUSTDOCFLAGS="-D warnings" "$CARGO" doc --workspace --all-features --no-deps --locked -j2 -q

if [ ${#failed[@]} -gt 0 ]; then
  echo "ci.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "ci.sh: all Rust checks passed"
