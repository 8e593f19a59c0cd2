# Sourced by the install scripts that fetch .debs from other Debian suites (install-consul.sh: bullseye;
# install-libcni-1.3.sh: forky and bookworm-backports) without touching the system's apt: a private sources
# list and private state and cache dirs under a temp dir, so the system's lists, cache and installed packages
# stay as they were. The caller sources scripts/lib/apt.sh first, for die() and logged().

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

# private_apt_update DIR SUITE...: lists SUITE... (main) from the system's mirror in DIR/sources.list, sets
# apt_opts (the options every later apt-get/apt-cache call needs), and runs apt-get update into DIR.
private_apt_update() {
  local dir=$1 suite uri
  shift
  uri="$(mirror_uri)"
  [[ -n $uri ]] || die "no Debian mirror URI found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  : >"$dir/sources.list"
  for suite in "$@"; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" >>"$dir/sources.list"
  done
  apt_opts=(
    -q -o Dir::Etc::SourceList="$dir/sources.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$dir/lists"
    -o Dir::Cache="$dir/cache"
    # The _apt sandbox user could not write into our root-owned temp dir.
    -o APT::Sandbox::User=root
  )
  logged "apt-get update of $* from $uri failed or reported problems" private_apt_get_update
}

# apt-get update with apt_opts, failing also when it exits 0 but says a source could not be fetched.
private_apt_get_update() {
  local out status=0
  out="$(apt-get "${apt_opts[@]}" update 2>&1)" || status=$?
  printf '%s\n' "$out"
  ((status == 0)) && ! grep -qE '^(E: |W: (Failed to fetch|Some index files failed))' <<<"$out"
}
