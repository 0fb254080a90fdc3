#!/usr/bin/env bash
# Installs the Debian packages sov's build and tests need, when any is missing.
# Usage: scripts/deps.sh [build|test]   (test adds what the test suite uses)
set -euo pipefail
need=(cmake ninja-build gcc libc6-dev pkg-config libevent-dev libjansson-dev)
if [ "${1:-build}" = test ]; then
  need+=(python3-numpy clang libclang-rt-14-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "sov: missing Debian packages: ${missing[*]}" >&2
  echo "sov: install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "sov: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null
  apt-get install -y --no-install-recommends "${missing[@]}"
}
