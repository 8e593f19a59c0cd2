#!/usr/bin/env bash
# Installs the CNI reference plugins (bridge, host-local, loopback, ...) from Debian's
# containernetworking-plugins into /usr/lib/cni, and iproute2 for `ip netns`, for the tests that run
# a real runtime-side plugin. Idempotent and quiet: when bridge is already there it does nothing.
# Prints the plugin dir on success, and nothing else on stdout. Needs root only when it must install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

dir=/usr/lib/cni
packages=(containernetworking-plugins iproute2)
ready() { [[ -x "$dir/bridge" ]] && command -v ip >/dev/null 2>&1; }

if ready; then echo "$dir"; exit 0; fi
apt_install "$dir/bridge or ip" "${packages[@]}"
ready || die "installed ${packages[*]} but $dir/bridge or ip is still missing"
echo "$dir"
