#!/usr/bin/env bash
# Installs the Debian 12 packages a build/test step needs, only when missing.
# Usage: .ci/deps.sh pkg...   (no arguments: the C++ build and test set)
set -euo pipefail
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  pkgs=(build-essential pkg-config meson ninja-build libhwy-dev libgtest-dev libgmock-dev libbenchmark-dev libtbb-dev
        libopenblas-dev)
fi
arch=$(dpkg --print-architecture)
# oneDNN (bf16 GEMMs of linear cross-entropy on CPUs with AVX512_BF16): Debian
# ships it for amd64 only.
if [ $# -eq 0 ] && [ "$arch" = amd64 ]; then pkgs+=(libdnnl-dev); fi
find_missing() {
  missing=()
  for p in "${pkgs[@]}"; do
    # An unqualified name is ambiguous to dpkg once a foreign architecture's
    # instance is installed too (arm64 for the cross build): check the native one.
    dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$arch" >/dev/null 2>&1 || missing+=("$p")
  done
}
find_missing
[ ${#missing[@]} -eq 0 ] && exit 0
# tests/run runs suites side by side, each with its packages: one apt-get at
# a time (apt's own lock fails a second one instead of waiting).
exec 9>"${TMPDIR:-/tmp}/xent-deps.lock"
flock 9
find_missing
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
