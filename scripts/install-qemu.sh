#!/usr/bin/env bash
# Installs what runs the arm64 single executable on this (x64) machine, for its smoke test: Debian's
# qemu-user-static and the arm64 C libraries the official Node binary links (glibc, libstdc++, libgcc), under
# /usr/aarch64-linux-gnu. Idempotent and quiet: when both are there it does nothing.
# Prints the qemu binary's path on success, and nothing else on stdout. Needs root only when it must install;
# without root it exits 2 with the reason, so the test can skip rather than fail.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

qemu=/usr/bin/qemu-aarch64-static
sysroot=/usr/aarch64-linux-gnu
packages=(qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)
ready() { [[ -x $qemu && -e $sysroot/lib/ld-linux-aarch64.so.1 && -e $sysroot/lib/libstdc++.so.6 ]]; }

if ready; then echo "$qemu"; exit 0; fi
apt_install "$qemu or the arm64 libraries" "${packages[@]}"
ready || die "installed ${packages[*]} but $qemu or $sysroot's libraries are still missing"
echo "$qemu"
