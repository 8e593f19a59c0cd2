#!/usr/bin/env bash
# Make Graphviz `dot` available for `npm run diagrams`, which renders each state
# diagram's .dot into an .svg. Debian packages it as `graphviz`. Idempotent and
# quiet: does nothing when `dot` is already on PATH, prints only on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

command -v dot >/dev/null 2>&1 && exit 0
apt_install '`dot`' graphviz
command -v dot >/dev/null 2>&1 || die 'graphviz installed but `dot` is not on PATH'
