#!/usr/bin/env bash
# Fetch a Consul binary for the integration tests into .cache/consul/ without
# installing anything system-wide. Consul is not packaged in bookworm, but
# bullseye has consul 1.8.7, a static Go binary that runs fine here; we fetch the
# .deb through apt with a private sources list and state dirs (so the system's
# apt lists and cache are untouched) and unpack it with dpkg -x.
# Prints the binary's path on success, and nothing else.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
dest="$cache/consul"
bin="$dest/usr/bin/consul"

die() { echo "install-consul: $*" >&2; exit 1; }
works() { [[ -x "$bin" ]] && "$bin" version >/dev/null 2>&1; }

# Fast path, no lock needed.
if works; then echo "$bin"; exit 0; fi

mkdir -p "$cache"
# Several test processes may start at once; only one should download.
exec 9>"$cache/consul.lock"
flock 9 || die "could not lock $cache/consul.lock"
if works; then echo "$bin"; exit 0; fi

# The mirror URI: the first URIs value of the deb822 stanza for the main suite
# (not -security/-updates), else the first plain `deb` line of sources.list.
mirror_uri() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [[ -r $f ]]; then
    awk '
      function flush() { if (!found && uri != "" && main) { print uri; found = 1 } uri = ""; main = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/   { if (uri == "") uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-/) main = 1 }
      END { flush() }
    ' "$f"
  elif [[ -r /etc/apt/sources.list ]]; then
    # deb [options] URI suite components...
    sed -E 's/\[[^]]*\]//' /etc/apt/sources.list |
      awk '$1 == "deb" && $3 !~ /-/ { print $2; exit }'
  fi
}
uri="$(mirror_uri)"
[[ -n $uri ]] || die "no Debian mirror URI found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" >"$tmp/sources.list"

apt_opts=(
  -q -o Dir::Etc::SourceList="$tmp/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$tmp/lists"
  -o Dir::Cache="$tmp/cache"
  # The _apt sandbox user could not write into our root-owned temp dir.
  -o APT::Sandbox::User=root
)
log="$tmp/apt.log"
fail() { cat "$log" >&2 || true; die "$*"; }

apt-get "${apt_opts[@]}" update >"$log" 2>&1 || fail "apt-get update of bullseye from $uri failed (output above)"
# apt-get update can exit 0 when the source could not be fetched; catch that.
if grep -qE '^(E: |W: (Failed to fetch|Some index files failed))' "$log"; then fail "apt-get update of bullseye from $uri reported problems (output above)"; fi
(cd "$tmp/deb" && apt-get "${apt_opts[@]}" download consul) >"$log" 2>&1 || fail "apt-get download consul failed (output above)"

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
