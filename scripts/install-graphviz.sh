#!/usr/bin/env bash
# Make Graphviz `dot` available for `npm run diagrams`, which renders each state
# diagram's .dot into an .svg. Debian packages it as `graphviz`. Idempotent and
# quiet: does nothing when `dot` is already on PATH, prints only on failure.
set -euo pipefail

command -v dot >/dev/null 2>&1 && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "install-graphviz: \`dot\` is missing; run as root, or install the graphviz package yourself" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends graphviz; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-graphviz: could not install graphviz with apt-get" >&2
  exit 1
fi
command -v dot >/dev/null 2>&1 || { echo "install-graphviz: graphviz installed but \`dot\` is not on PATH" >&2; exit 1; }
