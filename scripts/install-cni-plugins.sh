#!/usr/bin/env bash
# Installs the CNI reference plugins (bridge, host-local, loopback, ...) from Debian's
# containernetworking-plugins into /usr/lib/cni, and iproute2 for `ip netns`, for the tests that run
# a real runtime-side plugin. Idempotent and quiet: when bridge is already there it does nothing.
# Prints the plugin dir on success, and nothing else on stdout. Needs root only when it must install.
set -euo pipefail

dir=/usr/lib/cni

die() { echo "install-cni-plugins: $*" >&2; exit 1; }
ready() { [[ -x "$dir/bridge" ]] && command -v ip >/dev/null 2>&1; }

if ready; then echo "$dir"; exit 0; fi
[[ $(id -u) -eq 0 ]] || die "$dir/bridge is missing and installing it needs root (apt-get install containernetworking-plugins iproute2)"
command -v apt-get >/dev/null 2>&1 || die "$dir/bridge is missing and there is no apt-get to install it with"

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
fail() { cat "$log" >&2 || true; die "$*"; }
# Another apt run (a parallel test file, unattended upgrades) may hold the lock for a while.
apt_get() { apt-get -q -o DPkg::Lock::Timeout=120 "$@" >>"$log" 2>&1; }

packages=(containernetworking-plugins iproute2)
# Refresh the package lists only when apt does not know a candidate for each package yet: an update
# costs seconds and network, and a fresh machine may simply have no lists.
known() { for p in "${packages[@]}"; do apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]' || return 1; done; }
if ! known; then
  apt_get update || fail "apt-get update failed (output above)"
fi
apt_get install -y --no-install-recommends "${packages[@]}" || fail "apt-get install ${packages[*]} failed (output above)"

ready || die "installed ${packages[*]} but $dir/bridge or ip is still missing"
echo "$dir"
