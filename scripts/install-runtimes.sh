#!/usr/bin/env bash
# Installs the real container runtimes the runtime tests drive (test/integration/libcni.test.ts and
# podman.test.ts), from Debian, once per machine:
#   - golang-go and golang-github-appc-cni-dev (libcni 1.1.2, the one Nomad 1.7-1.8 link), to build our
#     small libcni driver (test/runtimes/libcni-driver, without the libcni13 tag: no GC nor STATUS) offline
#     into .cache/libcni-driver/, with build.json beside it naming the libcni, Go and plugins versions
#     (libcni 1.3.0 is install-libcni-1.3.sh's);
#   - podman 4.3 with runc (its CNI backend is what the podman tests use), and busybox-static for an image
#     made without a registry;
#   - containernetworking-plugins (bridge, ...) and iproute2 (ip netns).
# Idempotent and quiet: when everything is there it only checks. Prints the driver's path on success, and
# nothing else on stdout. Needs root only when it must install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
source_dir="$root/test/runtimes/libcni-driver"

packages=(golang-go golang-github-appc-cni-dev podman runc busybox-static containernetworking-plugins iproute2)
libcni_src=/usr/share/gocode/src/github.com/containernetworking/cni/libcni
installed() {
  [[ -d $libcni_src && -x /usr/lib/cni/bridge && -x /bin/busybox ]] || return 1
  for c in go podman runc ip; do command -v "$c" >/dev/null 2>&1 || return 1; done
}

deb_version() { dpkg-query -W -f='${Version}' "$1"; }

# The driver is cached under a name that changes with its source, the Go toolchain and libcni, so an edit
# of the driver or a new Go or libcni rebuilds it and an old build is never used by mistake.
driver_path() {
  local id
  id="$( { cat "$source_dir"/*.go; go version; deb_version golang-github-appc-cni-dev; } | sha256sum | cut -c1-16)"
  echo "$cache/libcni-driver/$id/libcni-driver"
}
ready() { installed && [[ -x $(driver_path) && -f $(dirname "$(driver_path)")/build.json ]]; }

if ready; then driver_path; exit 0; fi

mkdir -p "$cache"
# The runtime test files start in parallel; one of them installs and builds, the others wait.
hold_lock "$cache/runtimes.lock"
if ready; then driver_path; exit 0; fi

if ! installed; then
  apt_install "some of the runtime packages" "${packages[@]}"
  installed || die "installed ${packages[*]} but something is still missing (go, podman, runc, ip, /usr/lib/cni/bridge, /bin/busybox or $libcni_src)"
fi

# Offline: GOPATH mode finds libcni in Debian's gocode tree; nothing is fetched.
driver="$(driver_path)"
stage="$(mktemp -d "$cache/libcni-driver.partial.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/out"
# A subshell, for the cd.
build() (
  cd "$source_dir" && GO111MODULE=off GOPATH="/usr/share/gocode:$stage/gopath" GOCACHE="$stage/gocache" GOFLAGS= CGO_ENABLED=0 \
    go build -o "$stage/out/libcni-driver" .
)
logged "go build of $source_dir failed" build
printf '{"libcni":"%s","go":"%s","referencePlugins":"/usr/lib/cni","referencePluginsVersion":"%s"}\n' \
  "$(deb_version golang-github-appc-cni-dev)" "$(go version | cut -d" " -f3)" "$(deb_version containernetworking-plugins)" >"$stage/out/build.json"
mkdir -p "$(dirname "$(dirname "$driver")")"
rm -rf "$(dirname "$driver")"
mv "$stage/out" "$(dirname "$driver")"
echo "$driver"
