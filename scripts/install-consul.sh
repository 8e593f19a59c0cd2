#!/usr/bin/env bash
# Fetch a Consul binary for the integration tests into .cache/consul/ without
# installing anything system-wide. Consul is not packaged in bookworm, but
# bullseye has consul 1.8.7, a static Go binary that runs fine here; we fetch the
# .deb through apt with a private sources list and state dirs (so the system's
# apt lists and cache are untouched) and unpack it with dpkg -x.
# Prints the binary's path on success, and nothing else.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
dest="$cache/consul"
bin="$dest/usr/bin/consul"

works() { [[ -x "$bin" ]] && "$bin" version >/dev/null 2>&1; }

# Fast path, no lock needed.
if works; then echo "$bin"; exit 0; fi

mkdir -p "$cache"
# Several test processes may start at once; only one should download.
hold_lock "$cache/consul.lock"
if works; then echo "$bin"; exit 0; fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=lib/private-apt.sh
source "$root/scripts/lib/private-apt.sh"
private_apt_update "$tmp" bullseye
mkdir -p "$tmp/deb"
download_consul() ( cd "$tmp/deb" && apt-get "${apt_opts[@]}" download consul )
logged "apt-get download consul failed" download_consul

deb="$(ls "$tmp"/deb/consul_*.deb 2>/dev/null | head -n1)"
[[ -n $deb ]] || die "apt-get download consul produced no .deb"

# Unpack beside the final place and swap it in, so a killed run never leaves a
# half-extracted tree where the fast path would look.
stage="$cache/consul.partial"
rm -rf "$stage"
dpkg -x "$deb" "$stage" || die "dpkg -x $deb failed"
rm -rf "$dest"
mv "$stage" "$dest"

works || die "$bin was unpacked but \`consul version\` fails: $("$bin" version 2>&1 | head -n3)"
echo "$bin"
