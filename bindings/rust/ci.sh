#!/usr/bin/env bash
# Tests the Rust crates (xent-sys, xent, xent-sys-test) against an already
# built meson build directory of this repository:
#   bindings/rust/ci.sh BUILD_DIR        (tests/run passes build/ci)
#
# Toolchains: Debian's rustc/cargo (/usr/bin; rustc 1.63, the crates' MSRV,
# with cargo 0.66; installed with apt-get when missing) and, when the machine
# has a newer one (rustup's ~/.cargo/bin, or another cargo on PATH), that one
# too. XENT_RUST_TOOLCHAINS="debian newer" (the default) chooses; "newer" is
# skipped with a note where there is none.
#
# For each toolchain, with the library found through BUILD_DIR (pkg-config's
# meson-uninstalled/xent-uninstalled.pc, or XENT_LIB_DIR):
#   1. cargo test --workspace --all-features   (layout/ABI checks, every
#      operation against the float64 reference, property tests, doc tests);
#      with the newer toolchain, cargo clippy -D warnings instead (the tests
#      too with XENT_RUST_NEWER_TESTS=1)
# Once, with the first toolchain (Debian's: the MSRV):
#   2. cargo package of both crates, each verified by building it from the
#      .crate alone (and cargo publish --dry-run with a cargo that can verify
#      both before xent-sys is on crates.io: 1.90 or newer, when it is the
#      first); --allow-dirty, so that uncommitted work can be tested too
#   3. cargo build -p xent                     (default features compile alone)
#   4. the example, and rustdoc with warnings as errors
#   5. the `bundled` feature: no system libxent (XENT_NO_PKG_CONFIG), so
#      xent-sys compiles libxent from its own copy of the sources; the sources
#      it compiles are checked against meson's, and the layout checks and the
#      xent API and cross-entropy suites run against that build (baseline
#      SIMD target only, to keep it quick: XENT_BUNDLED_STATIC_TARGET_ONLY).
#
# Dependencies come from crates.io at the versions of Cargo.lock. Debian's
# cargo 0.66 knows only the git index, so for it they are fetched once into
# BUILD_DIR/rust-vendor/<Cargo.lock hash> through the sparse index (an
# unstable flag of that cargo, allowed for that one command by
# RUSTC_BOOTSTRAP), and every build runs offline from there.
#
# XENT_RUST_BUNDLED=0 skips step 5 (.ci/run does, for CI's time).
# Build products go to BUILD_DIR/rust-target/<toolchain>. Exits non-zero when
# any step fails. Other knobs: XENT_PROPTEST_CASES (property-test cases per
# test, default 48), XENT_PROPTEST_SEED (a u64 or `random`; fixed by default
# so runs are reproducible).
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
MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$HERE/xent-sys/Cargo.toml")
TOOLCHAINS=${XENT_RUST_TOOLCHAINS:-debian newer}
for t in $TOOLCHAINS; do
  case $t in debian | newer) ;; *) echo "ci.sh: unknown toolchain '$t' in XENT_RUST_TOOLCHAINS (debian, newer)" >&2; exit 2 ;; esac
done

failed=()
run() {  # run NAME CMD...
  local name=$1 t0=$SECONDS
  shift
  echo "--- $name: $*"
  if "$@"; then echo "--- $name: ok ($((SECONDS - t0)) s)"; else echo "--- $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); fi
}
version_of() { "$1" --version 2>/dev/null | awk 'NR == 1 {print $2}' | cut -d- -f1; }
# version_ge A B: A >= B. (sed, not head, takes the first line: no reader
# exits early in a pipeline here, so pipefail never sees a SIGPIPE.)
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | sed -n 1p)" = "$2" ]; }

# --- toolchains --------------------------------------------------------------
labels=()
declare -A TC_BIN=()
if [[ " $TOOLCHAINS " == *" debian "* ]]; then
  "$ROOT/.ci/deps.sh" cargo rustc || { echo "ci.sh: cannot install Debian's cargo and rustc" >&2; exit 1; }
  labels+=(debian)
  TC_BIN[debian]=/usr/bin
fi
if [[ " $TOOLCHAINS " == *" newer "* ]]; then
  newer=""
  for c in "$HOME/.cargo/bin/cargo" "$(command -v cargo 2>/dev/null)"; do
    [ -n "$c" ] && [ -x "$c" ] && [ "$(dirname "$c")" != /usr/bin ] || continue
    v=$(version_of "$(dirname "$c")/rustc")
    # Newer than the MSRV (Debian's): a second, different compiler.
    if [ -n "$v" ] && ! version_ge "$MSRV.0" "$v"; then
      newer=$(dirname "$c")
      break
    fi
  done
  if [ -n "$newer" ]; then
    labels+=(newer)
    TC_BIN[newer]=$newer
  else
    echo "ci.sh: no Rust toolchain newer than Debian's here (rustup's ~/.cargo/bin or PATH): testing with Debian's only"
  fi
fi
[ ${#labels[@]} -gt 0 ] || { echo "ci.sh: no toolchain to test with" >&2; exit 1; }

# --- where libxent is --------------------------------------------------------
unset XENT_LIB_DIR XENT_INCLUDE_DIR XENT_NO_PKG_CONFIG XENT_BUNDLED_THREADING XENT_BUNDLED_STATIC_TARGET_ONLY
if command -v pkg-config >/dev/null 2>&1 && [ -f "$BUILD/meson-uninstalled/xent-uninstalled.pc" ] &&
   PKG_CONFIG_PATH="$BUILD/meson-uninstalled" pkg-config --exists xent; then
  export PKG_CONFIG_PATH="$BUILD/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  echo "ci.sh: libxent via pkg-config: $(pkg-config --libs xent)"
else
  export XENT_LIB_DIR="$BUILD" XENT_INCLUDE_DIR="$ROOT/include"
  echo "ci.sh: libxent via XENT_LIB_DIR=$XENT_LIB_DIR"
fi
export CARGO_TERM_COLOR=never RUST_BACKTRACE=${RUST_BACKTRACE:-0}
# A stray XENT_TARGET would make every operation fail (by design).
unset XENT_TARGET

# --- dependencies for a cargo without the sparse index ---------------------
VENDOR=""
vendor_for() {  # vendor_for BIN: sets VENDOR (empty: cargo reaches crates.io itself)
  local bin=$1 key dir
  VENDOR=""
  version_ge "$(version_of "$bin/cargo")" 1.68 && return 0
  key=$(sha256sum "$HERE/Cargo.lock" | cut -c1-16)
  dir=$BUILD/rust-vendor/$key
  if [ ! -f "$dir/.complete" ]; then
    echo "ci.sh: fetching the crates of Cargo.lock into $dir (sparse index)"
    rm -rf "$dir"
    mkdir -p "$BUILD/rust-vendor"
    (cd "$HERE" && RUSTC_BOOTSTRAP=1 "$bin/cargo" -Z sparse-registry vendor --locked --versioned-dirs "$dir" >/dev/null) ||
      { echo "ci.sh: cannot fetch the dependencies" >&2; return 1; }
    touch "$dir/.complete"
  fi
  VENDOR=$dir
}

# cg ARGS...: cargo of the current toolchain (TC), building into
# BUILD/rust-target/$TC$TARGET_SUFFIX, offline from VENDOR when set.
TARGET_SUFFIX=""
cg() {
  local cfg=()
  [ -n "$VENDOR" ] && cfg=(--config 'source.crates-io.replace-with="xent-vendored"'
    --config "source.xent-vendored.directory=\"$VENDOR\"" --offline)
  (cd "$HERE" && PATH="${TC_BIN[$TC]}:$PATH" RUSTC="${TC_BIN[$TC]}/rustc" RUSTDOC="${TC_BIN[$TC]}/rustdoc" \
    CARGO_TARGET_DIR="$BUILD/rust-target/$TC$TARGET_SUFFIX" "${TC_BIN[$TC]}/cargo" "${cfg[@]}" "$@")
}
rustdoc_all() { (export RUSTDOCFLAGS="-D warnings" && cg doc --workspace --all-features --no-deps --locked -j2 -q); }

# --- packaging ---------------------------------------------------------------
# cargo package verifies a crate by building it from the .crate alone, its
# dependencies from the registry. xent depends on xent-sys 0.1.0, which is
# not on crates.io yet: cargo >= 1.90 verifies the two together (a local
# overlay of the freshly packaged xent-sys); for an older cargo that reads a
# vendored directory, the packaged xent-sys is added to a copy of it.
package_crates() {
  local cv
  cv=$(version_of "${TC_BIN[$TC]}/cargo")
  if version_ge "$cv" 1.90; then
    cg package --locked --allow-dirty -p xent-sys -p xent -j2 &&
      cg publish --dry-run --locked --allow-dirty -p xent-sys -p xent -j2
    return
  fi
  [ -n "$VENDOR" ] || { echo "cargo $cv with the git index: cannot verify xent before xent-sys is published"; return 1; }
  cg package --locked --allow-dirty -p xent-sys -j2 || return 1
  local v crate overlay=$BUILD/rust-target/$TC/vendor-overlay
  v=$(awk -F'"' '/^version = / { print $2; exit }' "$HERE/xent-sys/Cargo.toml")
  crate=$BUILD/rust-target/$TC/package/xent-sys-$v.crate
  [ -f "$crate" ] || { echo "no $crate"; return 1; }
  rm -rf "$overlay" && mkdir -p "$overlay" && cp -a "$VENDOR"/. "$overlay"/ || return 1
  tar -xzf "$crate" -C "$overlay" || return 1
  printf '{"files":{},"package":"%s"}' "$(sha256sum "$crate" | cut -d' ' -f1)" >"$overlay/xent-sys-$v/.cargo-checksum.json"
  # cargo publish --dry-run of this cargo needs the git index; package is what it verifies.
  (VENDOR=$overlay cg package --allow-dirty -p xent -j2)
}

# --- bundled -----------------------------------------------------------------
check_bundled_sources() {  # the .cc files xent-sys compiles == meson's libxent
  local want got
  want=$(meson introspect --targets "$BUILD" | python3 -c '
import json, os, sys
root = os.path.realpath(sys.argv[1])
for t in json.load(sys.stdin):
    if t["name"] in ("xent", "xent_core") and t["type"] in ("shared library", "static library"):
        for ts in t["target_sources"]:
            for s in ts.get("sources", []):
                print(os.path.relpath(os.path.realpath(s), root))' "$ROOT" | sort -u)
  got=$(cd "$HERE/xent-sys/libxent" && ls capi/*.cc src/*.cc | sort -u)
  if [ -z "$want" ] || [ "$want" != "$got" ]; then
    echo "xent-sys/build.rs compiles (capi/*.cc src/*.cc):"; echo "$got" | sed 's/^/  /'
    echo "meson.build's libxent is made of:"; echo "$want" | sed 's/^/  /'
    echo "FAIL: update xent-sys/build.rs (bundled::sources) to build what meson.build builds"
    return 1
  fi
  echo "bundled sources = meson's libxent: $(echo "$got" | tr '\n' ' ')"
}

test_bundled() {
  local dir=$BUILD/rust-target/$TC-bundled
  local log=$dir/bundled.log
  mkdir -p "$dir"
  (
    unset XENT_LIB_DIR PKG_CONFIG_PATH
    export XENT_NO_PKG_CONFIG=1 XENT_BUNDLED_STATIC_TARGET_ONLY=1 XENT_INCLUDE_DIR="$HERE/xent-sys/libxent/include"
    # The layout/ABI checks, and the xent suites of the API and of the most
    # used operation (the other suites run the same library code paths).
    TARGET_SUFFIX=-bundled cg test --locked -p xent-sys-test --features xent-sys/bundled -j2 &&
      TARGET_SUFFIX=-bundled cg test --locked -p xent --features bundled --test api --test cross_entropy -j2
  ) >"$log" 2>&1
  local rc=$?
  # What the build script did (its cargo:warning), and the test summaries.
  grep -E 'xent-sys: no system libxent|^test result:|FAILED|panicked' "$log" | sed 's/^warning: //' | sort | uniq -c | sed 's/^ *1 //'
  [ $rc -eq 0 ] || { tail -40 "$log"; echo "(log: $log)"; return 1; }
  # The test binaries must not load a shared libxent.
  local exe bad=0
  for exe in "$dir"/debug/deps/layout-* "$dir"/debug/deps/cross_entropy-*; do
    [ -x "$exe" ] && [ -f "$exe" ] || continue
    if ldd "$exe" >"$log.ldd" 2>&1 && grep -q 'libxent' "$log.ldd"; then
      echo "FAIL: $(basename "$exe") links a shared libxent:"; cat "$log.ldd"; bad=1
    fi
  done
  return $bad
}

# --- run ---------------------------------------------------------------------
first=1
for TC in "${labels[@]}"; do
  bin=${TC_BIN[$TC]}
  echo "=== Rust toolchain '$TC': $("$bin/cargo" --version), $("$bin/rustc" --version) (crates' MSRV: $MSRV)"
  if [ "$TC" = debian ] && ! version_ge "$(version_of "$bin/rustc")" "$MSRV"; then
    echo "ci.sh: Debian's rustc is older than the MSRV $MSRV" >&2
    failed+=("$TC: rustc < MSRV")
    continue
  fi
  vendor_for "$bin" || { failed+=("$TC: dependencies"); continue; }
  if [ "$TC" = newer ]; then
    # clippy, warnings as errors (Debian has no clippy for its 1.63); the
    # suites ran with the MSRV compiler above (XENT_RUST_NEWER_TESTS=1 runs
    # them with this one too).
    if [ -x "$bin/cargo-clippy" ]; then
      run "$TC: clippy" cg clippy --workspace --all-targets --all-features --locked -j2 -- -D warnings
    else
      echo "--- $TC: clippy: not installed with this toolchain (rustup component add clippy)"
    fi
  fi
  if [ "$TC" != newer ] || [ "${XENT_RUST_NEWER_TESTS:-0}" = 1 ]; then
    run "$TC: cargo test" cg test --workspace --all-features --locked --no-fail-fast -j2
  fi
  # Packaging is verified once, by the first toolchain (the MSRV's cargo
  # builds both crates from their .crate files).
  [ $first -eq 1 ] && run "$TC: cargo package" package_crates
  if [ $first -eq 1 ]; then
    run "$TC: default features" cg build -p xent --locked -j2
    # The test profile: reuses what cargo test built (the dev profile would
    # compile every crate again).
    run "$TC: example" cg run -p xent --example cross_entropy --profile test --locked -j2 -q
    run "$TC: rustdoc" rustdoc_all
    run "bundled sources" check_bundled_sources
    # XENT_RUST_BUNDLED=0 skips the bundled build (~3.5 minutes; CI's time).
    if [ "${XENT_RUST_BUNDLED:-1}" != 0 ]; then
      run "$TC: bundled" test_bundled
    else
      echo "--- $TC: bundled: skipped (XENT_RUST_BUNDLED=0)"
    fi
    first=0
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "ci.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "ci.sh: all Rust checks passed (toolchains: ${labels[*]})"
