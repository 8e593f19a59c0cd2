#!/usr/bin/env bash
# Builds the libcni 1.3 driver that test/integration/libcni-1.3.test.ts drives: the same driver source as
# install-runtimes.sh's (test/runtimes/libcni-driver), with the build tag libcni13 (GC and STATUS), against
# libcni 1.3.0 (spec 1.1.0), which no Debian stable ships. Nothing is installed system-wide: the .debs come
# through a private apt (scripts/lib/private-apt.sh) and are unpacked into .cache/libcni-1.3/:
#   - golang-github-appc-cni-dev from forky: libcni's Go sources, a GOPATH of their own (the netns package
#     they name is needed only by their tests);
#   - golang-1.23-go and golang-1.23-src from bookworm-backports: libcni 1.3 imports `slices` (Go >= 1.21),
#     bookworm's golang-go is 1.19;
#   - containernetworking-plugins from forky: bookworm's bridge (1.1.1) refuses conflists at cniVersion 1.1.0
#     and knows neither GC nor STATUS; forky's runs on bookworm and passes both to its ipam plugin.
# Idempotent: once unpacked and built it only checks, offline. The versions seen working are preferred; when
# a suite has moved on, its newest version is taken only if it still fits (libcni 1.3.x, Go >= 1.21, a bridge
# speaking 1.1.0), and what was taken is said on stderr. Prints the driver's path on success and nothing else
# on stdout; beside the driver, build.json names the libcni, Go and plugins versions it was built with, and
# where the plugins are (relative to the repository: .cache is shared by worktrees).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
dest="$cache/libcni-1.3"
source_dir="$root/test/runtimes/libcni-driver"
goroot="$dest/usr/lib/go-1.23"
gopath="$dest/usr/share/gocode"
plugins="$dest/usr/lib/cni"

# package=version as seen working; the suites they come from.
wanted=(golang-github-appc-cni-dev=1.3.0-2 golang-1.23-go=1.23.5-1~bpo12+1 golang-1.23-src=1.23.5-1~bpo12+1 containernetworking-plugins=1.9.1+ds1-1)
suites=(forky bookworm-backports)

# $dest/versions (package=version, one a line) is written last: the unpacked tree is complete.
unpacked() { [[ -f $dest/versions && -x $goroot/bin/go && -x $plugins/bridge ]]; }
version_of() { sed -n "s/^$1=//p" "$dest/versions"; }

# Cached under a name that changes with the driver's source, the toolchain and the packages, as
# install-runtimes.sh's driver_path().
driver_path() {
  local id
  id="$( { cat "$source_dir"/*.go; "$goroot/bin/go" version; cat "$dest/versions"; } | sha256sum | cut -c1-16)"
  echo "$cache/libcni-driver-1.3/$id/libcni-driver"
}
ready() { unpacked && [[ -x $(driver_path) && -f $(dirname "$(driver_path)")/build.json ]]; }

if ready; then driver_path; exit 0; fi

mkdir -p "$cache"
# Both runtime test files may start at once; one fetches and builds, the other waits.
hold_lock "$cache/libcni-1.3.lock"
if ready; then driver_path; exit 0; fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# fits PACKAGE VERSION: whether a version other than the one seen working may stand in for it (the
# binaries are checked again once unpacked).
fits() {
  case $1 in
    golang-github-appc-cni-dev) [[ $2 == 1.3.* ]] ;;
    golang-1.23-*) [[ $2 == 1.23.* ]] ;;
    containernetworking-plugins) [[ $2 == 1.* ]] ;;
    *) return 1 ;;
  esac
}

if ! unpacked; then
  [[ $(id -u) -eq 0 ]] || die "fetching ${wanted[*]} needs root (apt-get download with a private state dir)"
  # shellcheck source=lib/private-apt.sh
  source "$root/scripts/lib/private-apt.sh"
  private_apt_update "$tmp/apt" "${suites[@]}"
  take=()
  for pv in "${wanted[@]}"; do
    p=${pv%%=*} v=${pv#*=}
    available="$(apt-cache "${apt_opts[@]}" madison "$p" | awk -F' *[|] *' '{ print $2 }')"
    if ! grep -qxF -- "$v" <<<"$available"; then
      newest="$(sort -V <<<"$available" | tail -n1)"
      [[ -n $newest ]] || die "$p is in none of ${suites[*]}: cannot build the libcni 1.3 driver"
      fits "$p" "$newest" || die "$p $v is gone from ${suites[*]} and $newest does not fit (wanted libcni 1.3.x, Go 1.23, reference plugins 1.x)"
      echo "install-libcni-1.3: $p $v is gone from ${suites[*]}; took $newest" >&2
      v=$newest
    fi
    take+=("$p=$v")
  done
  # golang-1.23-go's go finds its standard library through usr/lib/go-1.23/src, a relative link into
  # golang-1.23-src: both must be the same version.
  [[ $(printf '%s\n' "${take[@]}" | sed -n 's/^golang-1.23-go=//p') == $(printf '%s\n' "${take[@]}" | sed -n 's/^golang-1.23-src=//p') ]] ||
    die "golang-1.23-go and golang-1.23-src differ in version: ${take[*]}"
  mkdir -p "$tmp/deb"
  download() ( cd "$tmp/deb" && apt-get "${apt_opts[@]}" download "${take[@]}" )
  logged "apt-get download ${take[*]} failed" download

  # Unpacked beside the final place and swapped in, so a killed run never leaves a half tree where the fast
  # path looks.
  stage="$cache/libcni-1.3.partial"
  rm -rf "$stage"
  for deb in "$tmp"/deb/*.deb; do dpkg -x "$deb" "$stage" || die "dpkg -x $deb failed"; done
  go_version="$("$stage/usr/lib/go-1.23/bin/go" version 2>&1)" || die "the unpacked go does not run: $go_version"
  [[ $go_version =~ go1\.(2[1-9]|[3-9][0-9]) ]] || die "the unpacked Go is older than 1.21: $go_version"
  bridge_versions="$(echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION "$stage/usr/lib/cni/bridge" 2>&1)" || die "the unpacked bridge does not run: $bridge_versions"
  [[ $bridge_versions == *'"1.1.0"'* ]] || die "the unpacked bridge does not speak cniVersion 1.1.0: $bridge_versions"
  printf '%s\n' "${take[@]}" >"$stage/versions"
  rm -rf "$dest"
  mv "$stage" "$dest"
fi

# GOPATH mode with the unpacked sources as the only GOPATH: offline, and the system's libcni 1.1.2 in
# /usr/share/gocode cannot be picked up by mistake.
driver="$(driver_path)"
mkdir -p "$cache/libcni-driver-1.3"
stage="$(mktemp -d "$cache/libcni-driver-1.3/partial.XXXXXX")"
trap 'rm -rf "$tmp" "$stage"' EXIT
mkdir "$stage/out"
build() (
  cd "$source_dir" && GOROOT="$goroot" GO111MODULE=off GOPATH="$gopath" GOCACHE="$stage/gocache" GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 \
    "$goroot/bin/go" build -tags libcni13 -o "$stage/out/libcni-driver" .
)
logged "go build of $source_dir failed" build
printf '{"libcni":"%s","go":"%s","referencePlugins":"%s","referencePluginsVersion":"%s"}\n' \
  "$(version_of golang-github-appc-cni-dev)" "$("$goroot/bin/go" version | cut -d" " -f3)" "${plugins#"$root/"}" "$(version_of containernetworking-plugins)" >"$stage/out/build.json"
mkdir -p "$(dirname "$(dirname "$driver")")"
rm -rf "$(dirname "$driver")"
mv "$stage/out" "$(dirname "$driver")"
echo "$driver"
