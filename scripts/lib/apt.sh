# shellcheck shell=bash
# What the scripts/install-*.sh share, sourced by them: their error exits, a lock so that only one of several
# test processes started at once installs, a command run with its output kept aside and shown only when it
# fails, and apt_install. Every message starts with the script's name (the basename of $0), so the operator
# knows which install step said it. Nothing here writes to stdout: the scripts print a path or nothing there,
# and the tests parse it.

script_name="$(basename "$0" .sh)"

# die MSG...: the error exit, status 1.
die() { echo "$script_name: $*" >&2; exit 1; }

# hold_lock FILE: waits for, then holds until the script exits, an exclusive lock on FILE (on fd 9).
hold_lock() {
  exec 9>"$1"
  flock 9 || die "could not lock $1"
}

# logged MSG CMD...: runs CMD with stdout and stderr in a temporary log, which is removed afterwards. When CMD
# fails, shows the log on stderr and dies with MSG. CMD runs as an `if` condition: a function given as CMD
# must chain its steps with && itself, since set -e does not stop it.
logged() {
  local msg=$1 log status=0
  shift
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || status=$?
  if ((status != 0)); then
    cat "$log" >&2 || true
    rm -f "$log"
    die "$msg (output above)"
  fi
  rm -f "$log"
}

# has_candidate PKG: apt knows a version of PKG it could install (its lists, or the dpkg status when it is
# installed). A package apt has heard of but cannot install shows "Candidate: (none)". The output is captured
# rather than piped into grep -q, whose early exit could fail apt-cache with SIGPIPE under pipefail.
has_candidate() {
  local policy
  policy="$(apt-cache policy -- "$1" 2>/dev/null)" || return 1
  grep -q 'Candidate: [^(]' <<<"$policy"
}

# apt_install WHAT PKG...: installs the Debian packages PKG... with apt-get, for a script that found WHAT
# missing (WHAT names it in the messages, e.g. "/usr/lib/cni/bridge or ip"). Returns 0 once apt-get install
# succeeded; checking that WHAT is now there is the caller's job. Exits 2 when not root, so that a test can
# skip rather than fail, and 1 for any other failure, after showing apt's output. The package lists are
# refreshed only when some package has no candidate yet (an update costs seconds and network; a fresh machine
# may have no lists at all); a package still without a candidate after that fails before apt-get install
# runs, so nothing is installed in part.
apt_install() {
  local what=$1 p
  shift
  local packages=("$@") missing=()
  if [[ $(id -u) -ne 0 ]]; then
    echo "$script_name: missing $what, and installing ${packages[*]} needs root (run as root, or apt-get install them yourself)" >&2
    exit 2
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing $what, and there is no apt-get to install ${packages[*]} with"

  export DEBIAN_FRONTEND=noninteractive
  # Another apt run (a parallel test file, unattended upgrades) may hold the lock for a while.
  local apt_get=(apt-get -q -o DPkg::Lock::Timeout=300)
  for p in "${packages[@]}"; do has_candidate "$p" || missing+=("$p"); done
  if ((${#missing[@]} > 0)); then
    logged "apt-get update failed" "${apt_get[@]}" update
    missing=()
    for p in "${packages[@]}"; do has_candidate "$p" || missing+=("$p"); done
    ((${#missing[@]} == 0)) || die "apt has no installable version of ${missing[*]}, even after apt-get update (are the apt sources right?); nothing was installed"
  fi
  logged "apt-get install ${packages[*]} failed" "${apt_get[@]}" install -y --no-install-recommends "${packages[@]}"
}
