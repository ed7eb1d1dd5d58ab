#!/usr/bin/env bash
# Installs the Debian 12 packages a build/test step needs, only when missing.
# Usage: .ci/deps.sh pkg...   (no arguments: the C++ build and test set)
set -euo pipefail
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  pkgs=(build-essential pkg-config meson ninja-build libhwy-dev libgtest-dev libgmock-dev libbenchmark-dev libtbb-dev
        libopenblas-dev)
fi
missing=()
arch=$(dpkg --print-architecture)
for p in "${pkgs[@]}"; do
  # An unqualified name is ambiguous to dpkg once a foreign architecture's
  # instance is installed too (arm64 for the cross build): check the native one.
  dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$arch" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
