#!/usr/bin/env bash
# Installs what runs the arm64 single executable on this (x64) machine, for its smoke test: Debian's
# qemu-user-static and the arm64 C libraries the official Node binary links (glibc, libstdc++, libgcc), under
# /usr/aarch64-linux-gnu. Idempotent and quiet: when both are there it does nothing.
# Prints the qemu binary's path on success, and nothing else on stdout. Needs root only when it must install;
# without root it exits 2 with the reason, so the test can skip rather than fail.
set -euo pipefail

qemu=/usr/bin/qemu-aarch64-static
sysroot=/usr/aarch64-linux-gnu
packages=(qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)

die() { echo "install-qemu: $*" >&2; exit 1; }
ready() { [[ -x $qemu && -e $sysroot/lib/ld-linux-aarch64.so.1 && -e $sysroot/lib/libstdc++.so.6 ]]; }

if ready; then echo "$qemu"; exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-qemu: $qemu or the arm64 libraries are missing and installing them needs root (apt-get install ${packages[*]})" >&2
  exit 2
fi
command -v apt-get >/dev/null 2>&1 || die "$qemu is missing and there is no apt-get to install it with"

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
fail() { cat "$log" >&2 || true; die "$*"; }
# Another apt run (a parallel test file, unattended upgrades) may hold the lock for a while.
apt_get() { apt-get -q -o DPkg::Lock::Timeout=120 "$@" >>"$log" 2>&1; }

# Refresh the package lists only when apt does not know a candidate for each package yet.
known() { for p in "${packages[@]}"; do apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]' || return 1; done; }
if ! known; then
  apt_get update || fail "apt-get update failed (output above)"
fi
apt_get install -y --no-install-recommends "${packages[@]}" || fail "apt-get install ${packages[*]} failed (output above)"

ready || die "installed ${packages[*]} but $qemu or $sysroot's libraries are still missing"
echo "$qemu"
