#!/usr/bin/env bash
# Hardening checks of libxent (issue 6). Called by tests/run as
#   .ci/hardening.sh BUILD_DIR
# where BUILD_DIR is the main release build (-Dtest_all_backends=true), used
# for the install test, the exported-symbol check and the alloc and soak
# steps. Steps (all but fuzz by default; choose with XENT_HARDENING_STEPS=
# "headers abi install asan coverage alloc soak fuzzfast fuzz tsan tsanomp arm64"):
#   headers  each public header compiles alone as C99 and C++11/17 (gcc, clang)
#   abi      exported symbols are exactly the xent_* functions of xent.h;
#            abidiff against the committed baseline .ci/abi/libxent.so.abi
#   install  meson install (DESTDIR) + an external C consumer built through
#            pkg-config (xent.pc) and through CMake (find_package -> xent::xent)
#   asan     GCC ASan+UBSan build with coverage; the C++ suites (cases of at
#            most 40000 logits) on each vector width (AVX3_DL, AVX2, EMU128),
#            the fuzz corpus replayed, allocation failure under LSan
#   coverage line and branch coverage of src/ and capi/ from the asan step's
#            run (gcovr), at least XENT_COVERAGE_FLOOR (95) % of lines
#   alloc    the allocation-failure sweep (every allocation of a call fails
#            once; tests/alloc_fail_test.cc) on the main build
#   soak     XENT_SOAK_CALLS (100000) random calls from 8 threads on the main
#            build (tests/soak_test.cc): call count, heap and RSS drift
#   fuzzfast clang libFuzzer, release + UBSan (no ASan): 2 processes of
#            XENT_FUZZFAST_RUNS (2000000) inputs each (seeds 1 and 2), at most
#            XENT_FUZZFAST_SECONDS (180), the reference on one input in
#            XENT_FUZZFAST_REFERENCE_EVERY (8); tests/fuzz/hunt runs it longer;
#            XENT_FUZZFAST_LIBRARY=main: over the main build's libxent.so
#   fuzz     clang libFuzzer (+ASan+UBSan) on the C ABI: XENT_FUZZ_RUNS (2000)
#            inputs from seed XENT_FUZZ_SEED (1), at most XENT_FUZZ_SECONDS (300)
#   tsan     GCC TSan build, serial backend: the threading tests with host
#            thread pools and concurrent callers (see step_tsan for why not
#            OpenMP/oneTBB), static target only
#   tsanomp  clang TSan with LLVM's libomp and its Archer tool: the soak on the
#            OpenMP backend (library objects linked statically), static target
#            SSE4 (3000 calls from 4 threads: 2-4 s; the ~1 min build is most of it)
#   arm64    aarch64 cross build, the C++ suites under qemu-aarch64 on NEON
#            and SVE2, on an SVE2 and a NEON-only CPU (XENT_ARM64_FULL=1:
#            SVE, SVE_256, SVE2_128 too)
# Knobs: XENT_JOBS (2), XENT_FUZZ_RUNS, XENT_FUZZ_SEED (0 = random, for
# bug hunting), XENT_FUZZ_SECONDS, XENT_FUZZFAST_RUNS, XENT_FUZZFAST_SECONDS,
# XENT_COVERAGE_FLOOR, XENT_SOAK_CALLS. Hunting longer: tests/fuzz/hunt.
# Builds go to build/{asan,fuzz,fuzzfast,tsan,tsan-omp,arm64,abi}
# (XENT_HARDENING_BUILD=DIR moves them). Every step runs even when an earlier one fails; the exit status is
# non-zero when any failed.
#
# Refresh the ABI baseline deliberately (after an intended, compatible change
# of include/xent/xent.h, or with an XENT_ABI_VERSION bump):
#   XENT_HARDENING_STEPS=abi XENT_ABI_UPDATE=1 .ci/hardening.sh build/ci
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ $# -ne 1 ]; then
  echo "usage: $0 MAIN_BUILD_DIR" >&2
  exit 2
fi
MAIN_BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "no build directory $1" >&2; exit 2; }
# `fuzz` (the ASan libFuzzer build) is not a default step: the asan step
# replays the corpus under ASan and fuzzfast runs the inputs; its own -O0
# ASan build of every target cost CI ~8 minutes for 2000 inputs.
# tsanomp (the soak under TSan + Archer) builds the SSE4 static target only.
STEPS=${XENT_HARDENING_STEPS:-"headers abi install asan coverage alloc soak fuzzfast tsan tsanomp arm64"}
HB=${XENT_HARDENING_BUILD:-$ROOT/build}
JOBS=${XENT_JOBS:-2}
# A fixed seed and run count make the fuzz steps repeatable; hunt longer with
# tests/fuzz/hunt (the fast build, random seeds, every core).
FUZZ_SECONDS=${XENT_FUZZ_SECONDS:-300}
FUZZ_RUNS=${XENT_FUZZ_RUNS:-2000}
FUZZ_SEED=${XENT_FUZZ_SEED:-1}
FUZZFAST_RUNS=${XENT_FUZZFAST_RUNS:-2000000}
# An x86 CPU without AVX-512 (.ci/x86-no-avx512): the slow CI machines here,
# where several steps do less (see their comments).
X86_NO_AVX512=0
.ci/x86-no-avx512 && X86_NO_AVX512=1
FUZZFAST_SECONDS=${XENT_FUZZFAST_SECONDS:-180}
# (120 s on an x86 CPU without AVX-512: see step_arm64 for why.)
[ $X86_NO_AVX512 = 1 ] && FUZZFAST_SECONDS=${XENT_FUZZFAST_SECONDS:-120}
FUZZFAST_REFERENCE_EVERY=${XENT_FUZZFAST_REFERENCE_EVERY:-8}
COVERAGE_FLOOR=${XENT_COVERAGE_FLOOR:-95}
SOAK_CALLS=${XENT_SOAK_CALLS:-100000}
export DEBIAN_FRONTEND=noninteractive

has_step() { [[ " $STEPS " == *" $1 "* ]]; }
log() { echo "[hardening] $*"; }

# ---------------------------------------------------------------------------
# Packages (Debian 12), only those the chosen steps need.
T_ALL=$SECONDS
pkgs=(build-essential pkg-config meson ninja-build libhwy-dev libgtest-dev libgmock-dev libtbb-dev libopenblas-dev)
# clang: libFuzzer and its sanitizer runtimes, LLVM's OpenMP for the fuzz
# build (threading=openmp), and the headers' second compiler.
if has_step fuzz || has_step fuzzfast || has_step tsanomp || has_step headers; then
  pkgs+=(clang libclang-rt-14-dev libomp-14-dev xz-utils)
fi
has_step coverage && pkgs+=(gcovr)
has_step abi && pkgs+=(abigail-tools binutils)
has_step install && pkgs+=(cmake)
if has_step arm64; then
  pkgs+=(g++-aarch64-linux-gnu qemu-user)
  # Captured, not piped into grep -q: under pipefail, a grep that exits at the
  # first match can kill the writer with SIGPIPE and fail the pipeline.
  foreign=$(dpkg --print-foreign-architectures)
  if ! grep -qx arm64 <<<"$foreign"; then
    log "dpkg --add-architecture arm64"
    dpkg --add-architecture arm64 || { [ "$(id -u)" -ne 0 ] && sudo dpkg --add-architecture arm64; }
  fi
  pkgs+=(libc6:arm64 libstdc++6:arm64 libgomp1:arm64 libhwy-dev:arm64 libgtest-dev:arm64)
fi
t0=$SECONDS
.ci/deps.sh "${pkgs[@]}" || { echo "[hardening] cannot install packages: ${pkgs[*]}"; exit 1; }
T_DEPS=$((SECONDS - t0))
log "packages: $((SECONDS - t0)) s"

# CPU seconds (user + sys) used by finished child processes so far: with the
# wall time, shows how much a step is bound by the machine's 2 cores.
CPU_FILE=$(mktemp)
cpu_now() {  # sets CPU_NOW; not in a $(...) subshell, which would not see the children
  times >"$CPU_FILE"
  CPU_NOW=$(tail -1 "$CPU_FILE" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } printf "%d", s }')
}

results=()
failed=()
figures=()  # reliability figures the steps report (printed in the summary)
run_step() {  # run_step NAME FUNCTION
  local name=$1 fn=$2 t0=$SECONDS c0 rc status
  cpu_now
  c0=$CPU_NOW
  echo
  echo "================ hardening: $name ================"
  "$fn"
  rc=$?
  status=ok
  [ $rc -eq 0 ] || { status=FAILED; failed+=("$name"); }
  cpu_now
  results+=("$(printf '%-8s %-7s %5d s  (CPU %5d s)' "$name" $status $((SECONDS - t0)) $((CPU_NOW - c0)))")
  echo "================ hardening: $name: $status ($((SECONDS - t0)) s)"
}

# setup_build DIR ARGS...: configure DIR unless it is configured with exactly ARGS.
setup_build() {
  local dir=$1
  shift
  local want="$*"
  if [ -f "$dir/build.ninja" ] && [ -f "$dir/.hardening-args" ] && [ "$(cat "$dir/.hardening-args")" == "$want" ]; then
    return 0
  fi
  rm -rf "$dir"
  meson setup "$dir" "$@" >"$HB/.setup-$(basename "$dir").log" 2>&1 || {
    cat "$HB/.setup-$(basename "$dir").log"
    return 1
  }
  echo "$want" >"$dir/.hardening-args"
}

mkdir -p "$HB"

# x86 builds whose job is not accuracy (the main build's suites check every
# target) skip HWY_AVX3 where this CPU runs AVX3_DL: the same 512-bit vectors
# and the same code but for a few instructions, a fifth of the compile and
# test time of the sanitizer and fuzzing builds.
SKIP_X86=""
if [ "$(uname -m)" = x86_64 ] && grep -q avx512_vbmi2 /proc/cpuinfo && grep -q avx512_bitalg /proc/cpuinfo &&
  grep -q vpclmulqdq /proc/cpuinfo && grep -q avx512_vnni /proc/cpuinfo; then
  SKIP_X86=-Ddisabled_targets=HWY_AVX3
fi
# The ASan and fuzzfast builds also skip SSE4 on such CPUs: its 16-byte
# vectors and their tails are EMU128's (the static target, always built), its
# x86 NaN and rounding rules are AVX2's and AVX3_DL's, and ASan's job is the
# memory accesses; SSE4's arithmetic runs in the main build's suites. A
# quarter of the ASan step's compile and test time, ~70 s of fuzzfast's build.
SKIP_NARROW=$SKIP_X86
[ -n "$SKIP_X86" ] && SKIP_NARROW=-Ddisabled_targets=HWY_AVX3,HWY_SSE4
# On an x86 CPU without AVX-512 (Highway's AVX3 needs F, BW, DQ and VL) the
# ASan and fuzzfast builds skip AVX3 and AVX3_DL: no test and no fuzz input
# can run them here, so instrumenting them checks nothing (the main build
# compiles them). Two of the five x86 targets: on an AVX2 EPYC, asan 610 -> 484 s
# and fuzzfast 672 -> 540 s. They skip SSE4 too, for the reasons above (AVX2
# and the static target are left): on a Zen 1 EPYC the kernels' compile is
# 2.3x the Emerald Rapids' (kl.cc 605 s at -O3), and a third of each build.
[ $X86_NO_AVX512 = 1 ] && SKIP_NARROW=-Ddisabled_targets=HWY_AVX3,HWY_AVX3_DL,HWY_SSE4

# ---------------------------------------------------------------------------
step_headers() {
  local ok=0 h std cc tu
  for h in include/xent/*.h; do
    tu="#include \"xent/$(basename "$h")\"
typedef int xent_header_check_t; /* a C translation unit must declare something */"
    for cc in gcc clang; do
      command -v $cc >/dev/null || continue
      if ! echo "$tu" | $cc -std=c99 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -Iinclude -x c -; then
        echo "FAIL: $h alone as C99 ($cc)"; ok=1
      fi
    done
    for cc in g++ clang++; do
      command -v $cc >/dev/null || continue
      for std in c++11 c++17; do
        if ! echo "$tu" | $cc -std=$std -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -Iinclude -x c++ -; then
          echo "FAIL: $h alone as $std ($cc)"; ok=1
        fi
      done
    done
    [ $ok -eq 0 ] && echo "$h: C99 and C++11/C++17 alone (gcc, clang): ok"
  done
  return $ok
}

# ---------------------------------------------------------------------------
# Functions declared XENT_API in the public header.
declared_functions() {
  # XENT_API expands to the visibility attribute on GCC.
  gcc -E -P -Iinclude include/xent/xent.h | tr '\n' ' ' | grep -o 'visibility *( *"default" *) *) *)[^(;]*(' |
    grep -o 'xent_[A-Za-z0-9_]* *($' | tr -d ' (' | sort -u
}

check_exports() {  # check_exports LIB...: defined dynamic symbols == declared functions
  local lib ok=0 want got
  want=$(declared_functions)
  [ -n "$want" ] || { echo "cannot list the functions of include/xent/xent.h"; return 1; }
  for lib in "$@"; do
    # Defined dynamic symbols, less the version node (XENT_1, an absolute symbol).
    got=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u)
    if [ "$got" != "$want" ]; then
      echo "FAIL: $(basename "$lib") exports a different set of symbols than the functions of xent.h:"
      diff <(echo "$want") <(echo "$got") | sed 's/^</  declared, not exported:/; s/^>/  exported, not declared:/' | grep -v '^[0-9]'
      ok=1
    else
      echo "$(basename "$lib"): exports exactly the $(echo "$got" | wc -l) xent_* functions of xent.h"
    fi
  done
  return $ok
}

step_abi() {
  local B=$HB/abi ok=0 rc
  local libs=()
  for f in "$MAIN_BUILD"/libxent.so "$MAIN_BUILD"/libxent_*.so; do [ -f "$f" ] && libs+=("$f"); done
  [ ${#libs[@]} -gt 0 ] || { echo "no libxent*.so in $MAIN_BUILD"; ok=1; }
  # The ABI baseline comes from a build with debug info (abidw reads DWARF);
  # the SIMD targets do not change the C ABI, so only the static one is built,
  # unoptimized (the types and the exported functions are the same).
  setup_build "$B" --buildtype=debug -Dstatic_target_only=true -Dtests=false -Dbench=false \
    -Dthreading=openmp || return 1
  ninja -C "$B" -j"$JOBS" >"$B/.build.log" 2>&1 || { tail -50 "$B/.build.log"; return 1; }
  check_exports "${libs[@]}" "$B/libxent.so" || ok=1

  local base=$ROOT/.ci/abi/libxent.so.abi
  abidw --no-corpus-path --no-comp-dir-path --no-show-locs --drop-private-types \
    --headers-dir "$ROOT/include/xent" --out-file "$B/libxent.so.abi" "$B/libxent.so" || return 1
  if [ "${XENT_ABI_UPDATE:-0}" = 1 ]; then
    mkdir -p "$(dirname "$base")"
    cp "$B/libxent.so.abi" "$base"
    echo "ABI baseline refreshed: $base (commit it)"
    return $ok
  fi
  [ -f "$base" ] || { echo "no ABI baseline $base (create it with XENT_ABI_UPDATE=1)"; return 1; }
  abidiff --no-show-locs "$base" "$B/libxent.so.abi" >"$B/abidiff.txt" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    # Bits: 1 error, 2 usage, 4 ABI change, 8 incompatible change. Any change
    # fails: a compatible one (an added function) needs a deliberate refresh of
    # the baseline; an incompatible one an XENT_ABI_VERSION bump as well.
    echo "FAIL: abidiff against $base returned $rc:"
    cat "$B/abidiff.txt"
    echo "If the change is intended: XENT_HARDENING_STEPS=abi XENT_ABI_UPDATE=1 .ci/hardening.sh $MAIN_BUILD (and bump"
    echo "XENT_ABI_VERSION in include/xent/version.h for an incompatible one)."
    ok=1
  else
    echo "abidiff: libxent.so matches the baseline $(realpath --relative-to="$ROOT" "$base")"
  fi
  return $ok
}

# ---------------------------------------------------------------------------
# loads_installed EXE LIB: ldd of EXE resolves libxent to LIB. ldd's output is
# captured first: `ldd | grep -q` under pipefail fails at random when grep
# exits at the first match and ldd dies of SIGPIPE.
loads_installed() {
  local out
  out=$(ldd "$1") || { echo "FAIL: ldd $1"; return 1; }
  if ! grep -qF "$2" <<<"$out"; then
    echo "FAIL: $(basename "$1") is not loading the installed libxent ($2):"
    echo "$out"
    return 1
  fi
}

step_install() {
  local W=$HB/install-test D ok=0
  rm -rf "$W"
  mkdir -p "$W"
  D=$W/destdir
  meson install -C "$MAIN_BUILD" --destdir "$D" --quiet >"$W/install.log" 2>&1 || { cat "$W/install.log"; return 1; }
  local opts prefix libdir incdir
  opts=$(meson introspect --buildoptions "$MAIN_BUILD") || return 1
  read -r prefix libdir incdir < <(echo "$opts" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["libdir"], o["includedir"])')
  case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
  case $incdir in /*) ;; *) incdir=$prefix/$incdir ;; esac
  echo "installed into DESTDIR=$D (prefix $prefix):"
  (cd "$D" && find . -type f -o -type l | sort | sed 's/^\./  /')
  local f
  for f in "$incdir/xent/xent.h" "$incdir/xent/version.h" "$libdir/libxent.so" "$libdir/libxent.so.1" \
    "$libdir/pkgconfig/xent.pc" "$libdir/cmake/xent/xentConfig.cmake" "$libdir/cmake/xent/xentConfigVersion.cmake"; do
    [ -e "$D$f" ] || { echo "FAIL: missing $f"; ok=1; }
  done
  if [ -n "$(find "$D" -name 'libxent_*')" ]; then echo "FAIL: test-only library variants installed"; ok=1; fi
  export LD_LIBRARY_PATH=$D$libdir
  # 1. pkg-config (the .pc's absolute paths re-rooted into DESTDIR).
  local flags
  if flags=$(PKG_CONFIG_PATH=$D$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D pkg-config --cflags --libs xent); then
    echo "pkg-config --cflags --libs xent: $flags"
    # shellcheck disable=SC2086
    if cc -std=c99 -pedantic-errors -Wall -Werror .ci/consumer/consumer.c $flags -lm -o "$W/consumer-pkgconfig" &&
      "$W/consumer-pkgconfig"; then
      loads_installed "$W/consumer-pkgconfig" "$D$libdir/libxent.so.1" || ok=1
    else
      echo "FAIL: pkg-config consumer"; ok=1
    fi
  else
    echo "FAIL: pkg-config cannot find xent.pc"; ok=1
  fi
  # 2. CMake find_package(xent) -> xent::xent.
  if cmake -S .ci/consumer -B "$W/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$D$prefix" -DCMAKE_BUILD_TYPE=Release \
    >"$W/cmake.log" 2>&1 && cmake --build "$W/cmake" >>"$W/cmake.log" 2>&1 && "$W/cmake/consumer"; then
    loads_installed "$W/cmake/consumer" "$D$libdir/libxent.so.1" || ok=1
    echo "cmake consumer: find_package(xent) from $(grep -o 'xent_DIR:PATH=.*' "$W/cmake/CMakeCache.txt" | cut -d= -f2)"
  else
    cat "$W/cmake.log"
    echo "FAIL: CMake consumer"; ok=1
  fi
  unset LD_LIBRARY_PATH
  return $ok
}

# ---------------------------------------------------------------------------
# ASan + UBSan. Compile time is the constraint: the kernels are compiled once
# per SIMD target, and instrumented Highway code at -O1 takes minutes per file
# (clang: 12+ CPU minutes for src/ce.cc) against seconds at -O0 (Highway's ops
# are always_inline, so -O0 still runs vector code). UBSan's pointer-overflow,
# null and vptr checks are left out (another x2.3 compile time; a null
# dereference still faults and the kernels make no virtual calls).
UBSAN_SKIP="-fno-sanitize=pointer-overflow,null,vptr"
# XENT_SOAK_CALLS: the soak suite's calls under the sanitizers (its default
# 4000 took 180 s at -O0 under ASan; the soak step runs 100000 on the main
# build; 1000 calls took 78 s here). Its heap and RSS bounds are the soak step's
# business: ASan's quarantine grows RSS (67 MiB over 1000 calls), and LSan
# reports leaks here.
# XENT_TEST_MAX_ELEMENTS, XENT_THREADS_SHAPES: cases of at most 40000 logits
# and threads_test's small shapes (still several segments per row, row and
# in-row splits): the larger ones run the same code over more segments, and
# at -O0 they were three quarters of this step's test time (ce 309 s -> 69 s).
SAN_ENV=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 XENT_SOAK_CALLS=500 XENT_SOAK_RSS_MIB=1024
  XENT_TEST_MAX_ELEMENTS=40000 XENT_THREADS_SHAPES=small)

# The C++ suites with GCC (the production compiler; the suites use GCC-only
# builtins), every x86 target, plus the fuzz corpus replayed (fuzz_corpus),
# allocation failure at operator-new level with LeakSanitizer, and the soak;
# instrumented for coverage too (gcov; reported by step_coverage).
step_asan() {
  local B=$HB/asan
  CC=gcc CXX=g++ setup_build "$B" -Doptimization=0 -Ddebug=false -Db_ndebug=false -Db_sanitize=address,undefined \
    -Db_coverage=true "-Dcpp_args=-g1 -fno-omit-frame-pointer -fno-sanitize-recover=all -fprofile-update=atomic $UBSAN_SKIP" \
    "-Dc_args=-g1 -fno-sanitize-recover=all" -Dtests=true -Dbench=false -Dfuzz=true -Dthreading=openmp $SKIP_NARROW || return 1
  ninja -C "$B" -j"$JOBS" >"$B/.build.log" 2>&1 || { grep -B5 -A30 -m3 'FAILED\|error:' "$B/.build.log"; return 1; }
  find "$B" -name '*.gcda' -delete  # counts of this run only
  # Of simd, only the tails (reads and writes at buffer ends, what ASan is
  # for): its accuracy sweeps (every float of the exp's domain, 44M patterns
  # per target for the dtype loads and stores, 390M for F16C) took over 10
  # minutes at -O0 under ASan and run in the main build's suites.
  # On the best SIMD target only: the *_streaming suites (every output by
  # non-temporal stores: the store path is the same source on every target),
  # linear_ce (its GEMMs do not depend on the target; its CE kernels are
  # ce's) and vocab_parallel (the engine's shard bookkeeping, on ce's
  # kernels). On every target they took over half of this step's time
  # (linear_ce alone 375 s at -O0, vocab_parallel 197 s).
  local tests streaming others ok=0
  tests=$(meson test -C "$B" --list --no-rebuild 2>/dev/null | sed 's/^xent:[^ ]* \/ //' | grep -vx simd)
  # (linear_ce's bf16 GEMM variants too: they test the software and oneDNN
  # products, which no SIMD target changes; on every target they were the
  # step's longest runs, 469 s and 284 s in stop 37's CI.)
  local best='_streaming$|^linear_ce_openmp$|^vocab_parallel_openmp$|^linear_ce_software_bf16$|^linear_ce_onednn_bf16$'
  streaming=$(echo "$tests" | grep -E "$best")
  tests=$(echo "$tests" | grep -vE "$best")
  others=$("$B/tests/ce_test_openmp" --gtest_list_tests 2>/dev/null | awk -F'"' '/GetParam/ {print $2}' |
    awk '!seen[$0]++' | sed 1d | sed 's|^|*/|' | paste -sd: -)
  # linear_ce's determinism across thread counts and host pools (64 s of its
  # run here, in the scaffolding) is threads and TSan's business, and runs
  # in the main build's suites; so does LinearCeScratch (the default budget,
  # 660 M logits).
  # The best-target suites run beside the others (one process more than the
  # cores): alone, linear_ce's 100 s left a core idle for half of it.
  local filter=("GTEST_FILTER=-${others:+$others:}LinearCeThreads.*:LinearCeScratch.*") best_pid best_ok=0
  # The fused rows' bit-identity tests (a batch against each row alone, on
  # every target: kl 673 s at -O0 under ASan) on the best target only here;
  # every target runs them in the main build's suites.
  local rows_filter=()
  [ -z "$others" ] || rows_filter=("GTEST_FILTER=-${others//\*\//*RowsTogetherMatchRowsAlone/}")
  # linear_ce_onednn_bf16 sets its own GTEST_FILTER (the AVX-512 targets),
  # which meson puts over this one, so it also ran the threads and scratch
  # tests (the main build's business): run directly, 232 s -> 67 s here.
  local onednn=0
  if echo "$streaming" | grep -qx linear_ce_onednn_bf16; then
    onednn=1
    streaming=$(echo "$streaming" | grep -vx linear_ce_onednn_bf16)
  fi
  # shellcheck disable=SC2086
  ( rc=0
    env "${SAN_ENV[@]}" "${filter[@]}" meson test -C "$B" --no-rebuild --print-errorlogs --logbase best-target \
      --num-processes 1 --timeout-multiplier 6 $streaming || rc=1
    if [ $onednn = 1 ]; then
      t1=$SECONDS
      if env "${SAN_ENV[@]}" "${filter[@]}" GTEST_COLOR=no XENT_BF16_GEMM=onednn \
        "$B/tests/linear_ce_test_openmp" >"$B/.onednn.log" 2>&1; then
        echo "linear_ce_onednn_bf16 (XENT_BF16_GEMM=onednn, best target): OK $((SECONDS - t1)) s"
      else
        tail -n 60 "$B/.onednn.log"
        echo "linear_ce_onednn_bf16 (XENT_BF16_GEMM=onednn, best target): FAIL $((SECONDS - t1)) s"
        rc=1
      fi
    fi
    exit $rc ) >"$B/.best-target.log" 2>&1 &
  best_pid=$!
  # shellcheck disable=SC2086
  env "${SAN_ENV[@]}" "${rows_filter[@]}" meson test -C "$B" --no-rebuild --print-errorlogs --num-processes 2 \
    --timeout-multiplier 6 $tests || ok=1
  wait $best_pid || best_ok=1
  cat "$B/.best-target.log"
  [ $best_ok -eq 0 ] || ok=1
  env "${SAN_ENV[@]}" GTEST_FILTER='*TestTails*' meson test -C "$B" --no-rebuild --print-errorlogs \
    --timeout-multiplier 4 simd || ok=1
  grep -h 'allocation-failure sweep' "$B/meson-logs/testlog.txt" | sed 's/^/asan: /'
  return $ok
}

# Line and branch coverage of src/ and capi/ from step_asan's run (the C++
# suites on every target, the fuzz corpus replayed, allocation failure, the
# soak). Branches: gcov's, without exception-only and unreachable ones.
step_coverage() {
  local B=$HB/asan out
  find "$B" -name '*.gcda' 2>/dev/null | grep . >/dev/null || { echo "no coverage data: run the asan step first"; return 1; }
  # Counters are updated atomically (-fprofile-update=atomic in step_asan):
  # without it, threads racing on them left negative branch counts, which
  # gcovr 5.2 cannot parse (and then waits forever): timeout as a guard.
  # oneDNN's bf16 GEMMs run only on CPUs with AVX512_BF16 (g_native_bf16):
  # elsewhere their file cannot be covered and does not count (2 % of
  # src/ and capi/ lines: 94.9 % instead of 97 % on an AVX2 machine).
  local excl=()
  if ! grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then
    excl=(--exclude "$ROOT/src/gemm_bf16.cc")
    echo "coverage: src/gemm_bf16.cc not counted (oneDNN's bf16 GEMMs; this CPU has no AVX512_BF16)"
  fi
  out=$(cd "$ROOT" && timeout 900 gcovr -r "$ROOT" --object-directory "$B" --filter "$ROOT/src/" --filter "$ROOT/capi/" \
    "${excl[@]}" --exclude-throw-branches --exclude-unreachable-branches -j "$JOBS" --txt "$B/coverage.txt" \
    --html-details "$B/coverage.html" --print-summary "$B" 2>"$B/gcovr.log") || { cat "$B/gcovr.log"; return 1; }
  sed -n '/^File/,$p' "$B/coverage.txt" | grep -v '^---' | awk '$4 != "100%" || NR == 1'
  echo "$out"
  local lines branches
  lines=$(echo "$out" | awk '/^lines:/ {print $2}' | tr -d '%')
  branches=$(echo "$out" | awk '/^branches:/ {print $2}' | tr -d '%')
  figures+=("coverage of src/ and capi/: lines $lines %, branches $branches % (floor: lines >= $COVERAGE_FLOOR %; report: $B/coverage.html)")
  awk -v l="$lines" -v f="$COVERAGE_FLOOR" 'BEGIN { exit !(l + 0 >= f + 0) }' ||
    { echo "FAIL: line coverage $lines % is below the floor of $COVERAGE_FLOOR %"; return 1; }
}

# Every allocation of a call fails once (malloc level: xent, libstdc++,
# oneTBB; see tests/alloc/alloc_hook.h), every library variant.
step_alloc() {
  local log=$HB/alloc.log rc
  # (XENT_NATIVE_BF16=0: oneDNN, which bf16 linear cross-entropy takes on CPUs
  # with AVX512_BF16, does not survive a failed allocation of its own.)
  XENT_NATIVE_BF16=0 "$MAIN_BUILD/tests/alloc_fail_test" >"$log" 2>&1
  rc=$?
  grep -E '^(openmp|tbb|none) |allocation-failure sweep|^\[  (FAILED|PASSED)' "$log"
  [ $rc -eq 0 ] || grep -B2 -A6 'Failure' "$log" | head -60
  figures+=("$(grep -h 'allocation-failure sweep' "$log" | paste -sd ';' -)")
  return $rc
}

# XENT_SOAK_CALLS random calls of every operation from 8 threads: every
# library variant, host pools, forced targets, invalid inputs; heap and RSS drift.
step_soak() {
  local log=$HB/soak.log rc
  XENT_SOAK_CALLS=$SOAK_CALLS "$MAIN_BUILD/tests/soak_test" >"$log" 2>&1
  rc=$?
  grep -E '^soak:|^\[  (FAILED|PASSED)' "$log"
  [ $rc -eq 0 ] || grep -B2 -A6 'Failure' "$log" | head -60
  figures+=("$(grep -h '^soak:' "$log")")
  return $rc
}

# libFuzzer for throughput: release (-O2) + UBSan, no ASan, the library's
# objects instrumented for coverage feedback (edge counters, no comparison
# tracing), no entropic scheduling (its bookkeeping cost more than the calls).
# Two processes, each its own new-input directory: seed 1 from the whole
# corpus, seed 2 from its edge-flavor inputs (edge-biased shapes and rows);
# every input on two targets, every invariant checked, the float64 reference
# on one input in FUZZFAST_REFERENCE_EVERY.
#
# On an x86 CPU without AVX-512 (XENT_FUZZFAST_LIBRARY=main, the default
# there; =own elsewhere) the harness calls the main build's libxent.so (GCC
# -O3, every target it has) instead of its own instrumented library: coverage
# feedback and UBSan cover the harness, the ASan step runs the library under
# UBSan (suites, corpus). The instrumented library was ~24 of the 93 minutes
# of stop 39's CI on a Zen 1 EPYC (clang -O3 + UBSan: src/kl.cc alone 783 s
# for two targets, 476 s without UBSan).
FUZZFAST_LIBRARY=${XENT_FUZZFAST_LIBRARY:-own}
[ $X86_NO_AVX512 = 1 ] && FUZZFAST_LIBRARY=${XENT_FUZZFAST_LIBRARY:-main}
step_fuzzfast() {
  local B=${XENT_FUZZFAST_BUILD:-$HB/fuzzfast} W lib=()
  W=$B/run
  if [ "$FUZZFAST_LIBRARY" = main ]; then
    [ -f "$MAIN_BUILD/libxent.so" ] || { echo "no $MAIN_BUILD/libxent.so (XENT_FUZZFAST_LIBRARY=main)"; return 1; }
    lib=("-Dfuzz_library=$MAIN_BUILD")
    echo "the harness over $MAIN_BUILD/libxent.so (XENT_FUZZFAST_LIBRARY=main: library not instrumented)"
  fi
  CC=clang CXX=clang++ setup_build "$B" --buildtype=release -Db_ndebug=false -Db_sanitize=undefined -Db_lundef=false \
    "-Dcpp_args=-g1 -fno-sanitize-recover=all $UBSAN_SKIP -fsanitize=fuzzer-no-link -fno-sanitize-coverage=trace-cmp -fsanitize-ignorelist=$ROOT/.ci/ubsan-ignorelist.txt" \
    "-Dc_args=-g1" -Dtests=false -Dbench=false -Dfuzz=true -Dthreading=openmp $SKIP_NARROW "${lib[@]}" || return 1
  ninja -C "$B" -j"$JOBS" tests/fuzz/xent_fuzz >"$B/.build.log" 2>&1 || { grep -B5 -A30 -m3 'FAILED\|error:' "$B/.build.log"; return 1; }
  [ "${XENT_FUZZFAST_BUILD_ONLY:-0}" = 1 ] && return 0
  rm -rf "$W"
  mkdir -p "$W/artifacts"
  mkdir -p "$W/edge"
  local f
  for f in tests/fuzz/corpus/*; do  # byte 0 >= 128: the edge flavor
    [ "$(head -c1 "$f" | od -An -tu1 | tr -d ' ')" -ge 128 ] 2>/dev/null && cp "$f" "$W/edge/"
  done
  echo "libFuzzer (release + UBSan): 2 processes x $FUZZFAST_RUNS runs (at most $FUZZFAST_SECONDS s): seed 1 from the"
  echo "$(find tests/fuzz/corpus -type f | wc -l) corpus files, seed 2 from its $(find "$W/edge" -type f | wc -l) edge-flavor ones; reference on 1 input in $FUZZFAST_REFERENCE_EVERY"
  # The processes' new inputs go to a tmpfs while they run (moved to $W
  # after): libFuzzer writes a file for every input that adds coverage
  # (thousands in a run), and ext4's file creation took 18 % of its time.
  local N=$W
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then N=$(mktemp -d -p /dev/shm xent-fuzzfast.XXXXXX) || N=$W; fi
  local pids=() seed rc=0 seeds
  for seed in 1 2; do
    mkdir -p "$N/corpus$seed"
    seeds=tests/fuzz/corpus
    [ $seed -eq 2 ] && seeds=$W/edge
    # OMP_NUM_THREADS=1: num_threads = 0 ("all") means one thread per
    # process, as each process has one core; inputs asking for 2 threads
    # still get 2. With two 2-thread teams on two cores the processes ran
    # 1.7x fewer inputs (211k vs 352k in 60 s). -use_cmp=0: the build has
    # no trace-cmp, so libFuzzer's CMP hooks only saw memcmp calls of the
    # harness' own snapshot checks (not input bytes), 3 % of the time.
    OMP_NUM_THREADS=1 KMP_BLOCKTIME=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      XENT_FUZZ_REFERENCE_EVERY=$FUZZFAST_REFERENCE_EVERY \
      "$B/tests/fuzz/xent_fuzz" -runs="$FUZZFAST_RUNS" -seed=$seed -max_total_time="$FUZZFAST_SECONDS" \
      -entropic=0 -print_funcs=0 -print_final_stats=1 -timeout=60 -rss_limit_mb=4096 -max_len=2048 -use_cmp=0 \
      -artifact_prefix="$W/artifacts/" "$N/corpus$seed" "$seeds" >"$W/fuzz$seed.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  if [ "$N" != "$W" ]; then
    for seed in 1 2; do mv "$N/corpus$seed" "$W/"; done
    rm -rf "$N"
  fi
  local runs=0 secs=0 n t
  for seed in 1 2; do
    grep -E '^#[0-9]+ +DONE' "$W/fuzz$seed.log" | sed "s/^/process $seed: /"
    n=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$W/fuzz$seed.log")
    t=$(awk '/^Done [0-9]+ runs in/ {print $5}' "$W/fuzz$seed.log")
    runs=$((runs + ${n:-0}))
    [ "${t:-0}" -gt "$secs" ] && secs=${t:-0}
  done
  local findings
  findings=$(find "$W/artifacts" -type f | wc -l)
  [ $rc -ne 0 ] && [ "$findings" -eq 0 ] && findings=1
  figures+=("fuzzfast: $runs inputs in $secs s ($((runs / (secs > 0 ? secs : 1))) inputs/s, 2 processes), $findings findings")
  echo "${figures[-1]}"
  if [ $rc -ne 0 ]; then
    grep -h -B5 -A40 -E 'xent_fuzz: CHECK FAILED|runtime error|==ERROR|deadly signal' "$W"/fuzz*.log | sed -n 1,120p
    report_artifacts "$W" "$B"
    fuzz_failure_notes "$W"/fuzz*.log
    return 1
  fi
  echo "new inputs: $(find "$W"/corpus? -type f | wc -l) (merge: $B/tests/fuzz/xent_fuzz -merge=1 tests/fuzz/corpus $W/corpus1 $W/corpus2)"
}

report_artifacts() {  # report_artifacts RUN_DIR BUILD_DIR
  local a z
  for a in "$1"/artifacts/*; do
    [ -f "$a" ] || continue
    echo "reproducer: $a ($(stat -c %s "$a") bytes, base64 below); run: $2/tests/fuzz/xent_fuzz $a"
    base64 -w0 "$a"; echo
    # For the run's closing summary (CI shows only the tail of the output):
    # the input xz-compressed, when short enough to be read off it.
    z=$(xz -9e -c "$a" 2>/dev/null | base64 -w0)
    if [ -n "$z" ] && [ ${#z} -le 1100 ]; then
      [ -n "${XENT_FAILURE_NOTES:-}" ] &&
        echo "reproducer ($(stat -c %s "$a") bytes; echo ... | base64 -d | xz -d > f): $z" >>"$XENT_FAILURE_NOTES"
    fi
  done
}

# failure_note TEXT...: a line for tests/run's closing summary of a failed
# run (XENT_FAILURE_NOTES, set by tests/run): CI reports only the last ~2 KB
# of the output, so what identifies a failure is repeated there, short.
failure_note() {
  [ -n "${XENT_FAILURE_NOTES:-}" ] || return 0
  printf '%s\n' "$*" | cut -c1-360 >>"$XENT_FAILURE_NOTES"
}

# fuzz_failure_notes LOG...: the failed check (its call and message), or the
# sanitizer's first line and the first frames in xent, as failure notes.
fuzz_failure_notes() {
  local lines
  lines=$(grep -h -A5 'xent_fuzz: CHECK FAILED' "$@" | grep -v -e 'CHECK FAILED' -e '^--' -e 'xent_last_error: ""' |
    grep -v -e 'libFuzzer' | head -n 4)
  if [ -z "$lines" ]; then
    lines=$(grep -h -A12 -E 'runtime error|==ERROR|deadly signal' "$@" |
      grep -E 'runtime error|==ERROR|deadly signal| #[0-9]+ .* in .*(xent|Xent)' | head -n 5)
  fi
  while IFS= read -r l; do failure_note "fuzz: ${l#"${l%%[! ]*}"}"; done <<<"$lines"
}

# libFuzzer (clang) on the C ABI: only the harness is built (the library's
# objects linked in statically), ASan + UBSan + libFuzzer's coverage hooks.
step_fuzz() {
  local B=$HB/fuzz W=$HB/fuzz/run
  CC=clang CXX=clang++ setup_build "$B" -Doptimization=0 -Ddebug=false -Db_ndebug=false \
    -Db_sanitize=address,undefined -Db_lundef=false \
    "-Dcpp_args=-g1 -fno-omit-frame-pointer -fno-sanitize-recover=all $UBSAN_SKIP -fsanitize=fuzzer-no-link -fsanitize-ignorelist=$ROOT/.ci/ubsan-ignorelist.txt" \
    "-Dc_args=-g1 -fno-sanitize-recover=all" -Dtests=false -Dbench=false -Dfuzz=true -Dthreading=openmp || return 1
  ninja -C "$B" -j"$JOBS" tests/fuzz/xent_fuzz >"$B/.build.log" 2>&1 || { grep -B5 -A30 -m3 'FAILED\|error:' "$B/.build.log"; return 1; }
  rm -rf "$W"
  mkdir -p "$W/corpus" "$W/artifacts"
  local n_seed
  n_seed=$(find tests/fuzz/corpus -type f | wc -l)
  echo "libFuzzer (ASan + UBSan): $FUZZ_RUNS runs (at most $FUZZ_SECONDS s), seed $FUZZ_SEED, from $n_seed corpus files,"
  echo "every SIMD target of this CPU, the reference on every input"
  env "${SAN_ENV[@]}" "$B/tests/fuzz/xent_fuzz" -runs="$FUZZ_RUNS" -seed="$FUZZ_SEED" -max_total_time="$FUZZ_SECONDS" \
    -print_final_stats=1 -timeout=60 \
    -rss_limit_mb=6144 -max_len=2048 -artifact_prefix="$W/artifacts/" "$W/corpus" tests/fuzz/corpus \
    >"$W/fuzz.log" 2>&1
  local rc=$?
  grep -E '^(INFO: seed corpus|#[0-9]+ +DONE|stat::)' "$W/fuzz.log"
  figures+=("fuzz (ASan): $(awk '/^stat::number_of_executed_units:/ {print $2}' "$W/fuzz.log") inputs, $(find "$W/artifacts" -type f | wc -l) findings")
  if [ $rc -ne 0 ]; then
    grep -B5 -A40 -E 'xent_fuzz: CHECK FAILED|ERROR: (Address|Undefined|Leak)Sanitizer|runtime error|==ERROR|deadly signal' \
      "$W/fuzz.log" | sed -n 1,120p  # sed reads to the end: no SIGPIPE for grep
    report_artifacts "$W" "$B"
    fuzz_failure_notes "$W/fuzz.log"
    echo "FAIL: the fuzzer found a failure (log: $W/fuzz.log)"
    return 1
  fi
  echo "new inputs kept in $W/corpus: $(find "$W/corpus" -type f | wc -l) (merge into the seed corpus with"
  echo "  $B/tests/fuzz/xent_fuzz -merge=1 tests/fuzz/corpus $W/corpus)"
}

# The TSan builds compile one target, the static one: SSE4 where the CPU has
# it (TSAN_ISA). Without -march it is EMU128 (SCALAR with GCC), whose per-lane
# loops took clang's TSan build at -O1 most of tsanomp's ~9 minutes
# (src/ce_f16.cc alone: 283 s; 14 s for SSE4), and GCC's tsan step 280 s
# (191 s with SSE4, on a Zen 1). What the steps check (the thread pools' and
# the OpenMP backend's synchronization, per-thread state) is the same on any.
TSAN_ISA=""
if [ "$(uname -m)" = x86_64 ] && grep -qw sse4_2 /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo &&
  grep -qw aes /proc/cpuinfo; then
  TSAN_ISA="-march=x86-64-v2 -mpclmul -maes"
fi

# ---------------------------------------------------------------------------
# TSan (GCC). libgomp and libtbb are not instrumented: TSan does not see the
# barrier that ends an OpenMP parallel region or a tbb::parallel_for, so every
# result a worker writes and the caller reads is reported (and the workers'
# stacks cannot be restored, so suppressions do not match). clang's libomp +
# Archer would annotate OpenMP, but clang 14's shared TSan runtime crashes at
# startup on this kernel, and libxent.so (--no-undefined) needs it shared.
# So the library is built with the serial backend and every thread is a
# std::thread TSan sees: host parallel_for pools (in order, reversed, split,
# on threads), concurrent callers, per-thread error state and scratch, target
# dispatch, determinism across thread counts. At -O1 (TSan's advice) and with
# threads_test's small shapes (both row and in-row splits): at -O0 with the
# full shapes, threads_test alone took 485 s of this step's 671.
step_tsan() {
  local B=$HB/tsan
  CC=gcc CXX=g++ setup_build "$B" -Doptimization=1 -Ddebug=false -Db_sanitize=thread \
    "-Dcpp_args=-g1 $TSAN_ISA" "-Dc_args=-g1 $TSAN_ISA" -Dstatic_target_only=true -Dtest_all_backends=false \
    -Dtests=true -Dbench=false -Dthreading=none || return 1
  meson compile -C "$B" -j "$JOBS" xent threads_test capi_test_none ce_test_none softmax_test_none \
    >"$B/.build.log" 2>&1 || { grep -B5 -A30 -m3 'FAILED\|error:' "$B/.build.log"; return 1; }
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4" XENT_THREADS_SHAPES=small \
    meson test -C "$B" --no-rebuild --print-errorlogs --num-processes 1 --timeout-multiplier 6 \
    threads capi_none ce_none softmax_none
}

# ---------------------------------------------------------------------------
# TSan on the OpenMP backend: LLVM's libomp tells TSan about its barriers and
# tasks through the OMPT tool Archer (libarcher.so, OMP_TOOL_LIBRARIES), which
# GCC's libgomp cannot. clang 14's shared TSan runtime crashes at startup on
# this kernel, so the runtime is linked into the executable: the soak with the
# library's objects linked in (soak_static), static target only, 2 threads.
step_tsanomp() {
  local B=$HB/tsan-omp archer=/usr/lib/llvm-14/lib/libarcher.so log
  [ -f "$archer" ] || { echo "no $archer (libomp-14-dev)"; return 1; }
  CC=clang CXX=clang++ setup_build "$B" -Doptimization=1 -Ddebug=false -Db_sanitize=thread -Db_lundef=false \
    "-Dcpp_args=-g1 $TSAN_ISA" "-Dc_args=-g1 $TSAN_ISA" -Dstatic_target_only=true -Dtest_all_backends=false -Dtests=true \
    -Dbench=false -Dthreading=openmp || return 1
  meson compile -C "$B" -j "$JOBS" tests/soak_static >"$B/.build.log" 2>&1 ||
    { grep -B5 -A30 -m3 'FAILED\|error:' "$B/.build.log"; return 1; }
  log=$B/soak.log
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 ignore_noninstrumented_modules=1" \
    OMP_TOOL_LIBRARIES=$archer ARCHER_OPTIONS=verbose=1 XENT_SOAK_CALLS=${XENT_TSANOMP_CALLS:-3000} XENT_SOAK_THREADS=4 \
    XENT_SOAK_RSS_MIB=1024 "$B/tests/soak_static" >"$log" 2>&1
  local rc=$?
  grep -E '^Archer|^soak:|^\[  (FAILED|PASSED)' "$log"
  grep -A30 -m2 'WARNING: ThreadSanitizer' "$log" | head -80
  figures+=("tsan+archer (OpenMP): $(grep -o '^soak: [0-9]* calls' "$log" | cut -d' ' -f2) calls, $(grep -c 'WARNING: ThreadSanitizer' "$log") reports")
  return $rc
}

# ---------------------------------------------------------------------------
# aarch64: cross build, tests under qemu-aarch64.
step_arm64() {
  local B=$HB/arm64 ok=0
  # No arm64 BLAS installed: linear cross-entropy is built as unsupported
  # (its tests check that status).
  # NEON and SVE2 (the scalable target of current Arm servers; qemu's max
  # CPU runs it): SVE and the fixed-width SVE_256 and SVE2_128 are compiled
  # and run with XENT_ARM64_FULL=1 only. They are the same xent source as
  # SVE2 (Highway differs by a few instructions), and SVE alone was a third
  # of this step's build and emulated test time. Only the suites qemu runs
  # are built.
  local skip=-Ddisabled_targets=HWY_SVE,HWY_SVE_256,HWY_SVE2_128
  # On an x86 CPU without AVX-512 (the slow CI machines: a Zen 1 EPYC ran
  # stop 39's CI in 93 minutes, over CI's 90) SVE2 too: NEON alone.
  [ $X86_NO_AVX512 = 1 ] && skip=-Ddisabled_targets=HWY_SVE,HWY_SVE_256,HWY_SVE2_128,HWY_SVE2
  [ "${XENT_ARM64_FULL:-0}" = 1 ] && skip=""
  setup_build "$B" --cross-file "$ROOT/.ci/aarch64-linux-gnu.ini" -Doptimization=2 -Ddebug=false \
    -Db_ndebug=false -Dtests=true -Dbench=false -Dthreading=openmp -Dblas=none $skip || return 1
  meson compile -C "$B" -j "$JOBS" xent ce_test_openmp softmax_test_openmp kl_test_openmp bce_test_openmp \
    capi_test_openmp threads_test c99_test target_env_test simd_test linear_ce_test_openmp \
    >"$B/.build.log" 2>&1 || { tail -50 "$B/.build.log"; return 1; }
  aarch64-linux-gnu-gcc -std=c99 -Iinclude .ci/targets.c -L"$B" -lxent -Wl,-rpath,"$B" -o "$B/xent-targets" || return 1
  # Under emulation the float64 reference of the large cases was most of the
  # time (ce alone 517 s): cases of more than 20000 logits and threads_test's
  # large shapes are left to the native runs (the kernels' code is the same
  # past a few segments; every size up to 8193 and every tail still runs).
  qemu_run() {  # qemu_run CPU TESTS [GTEST_FILTER]
    local cpu=$1 tests=$2 filter=${3:-} t0=$SECONDS
    echo "--- QEMU_CPU=$cpu: $(QEMU_CPU=$cpu qemu-aarch64 "$B/xent-targets")${filter:+, gtest filter $filter}"
    # shellcheck disable=SC2086
    env QEMU_CPU="$cpu" ${filter:+GTEST_FILTER=$filter} XENT_TEST_MAX_ELEMENTS=20000 XENT_THREADS_SHAPES=small \
      meson test -C "$B" --no-rebuild --print-errorlogs \
      --num-processes 2 --timeout-multiplier 4 $tests || ok=1
    echo "--- QEMU_CPU=$cpu: $((SECONDS - t0)) s"
  }
  # threads (the same thread-splitting code on every target) on the
  # cortex-a72 run only: on max it took 95 s of emulation.
  qemu_run max "ce_openmp softmax_openmp kl_openmp bce_openmp capi_openmp c99 target_env_neon"
  # simd without its exhaustive exp accuracy sweep per target (slow
  # under emulation; accuracy is the same code on every target).
  qemu_run max simd '-ExpNonPositive.*'

  qemu_run cortex-a72 "capi_openmp c99 threads linear_ce_openmp"
  # The fixed-width SVE targets on CPUs of that width: XENT_ARM64_FULL=1
  # (CI's time; the generic SVE/SVE2 code runs above).
  if [ "${XENT_ARM64_FULL:-0}" = 1 ]; then
    qemu_run max,sve-default-vector-length=32 "ce_openmp softmax_openmp kl_openmp bce_openmp" '*/sve_256'
    qemu_run max,sve-default-vector-length=16 "ce_openmp softmax_openmp kl_openmp bce_openmp" '*/sve2_128'
  fi
  return $ok
}

# ---------------------------------------------------------------------------
for s in $STEPS; do
  case $s in
    headers | abi | install | asan | coverage | alloc | soak | fuzzfast | fuzz | tsan | tsanomp | arm64)
      run_step "$s" "step_$s" ;;
    *) echo "unknown hardening step $s"; failed+=("$s") ;;
  esac
done

echo
echo "================ hardening summary ================"
printf '%-8s %-7s %5d s\n' packages ok "$T_DEPS"
for r in "${results[@]}"; do echo "$r"; done
for f in "${figures[@]}"; do echo "  $f"; done
cpu_now
echo "total: $((SECONDS - T_ALL)) s (CPU $CPU_NOW s)"
rm -f "$CPU_FILE"
if [ ${#failed[@]} -gt 0 ]; then
  echo "hardening FAILED: ${failed[*]}"
  exit 1
fi
echo "hardening: all steps passed"
