#!/usr/bin/env bash
# End-to-end suite set-up. Root, idempotent, quiet unless something fails.
#  - Debian packages: containerd, runc, CNI plugins, umoci, busybox-static, gcc for the static
#    helpers, prometheus for the scrape test, kubernetes-client (kubectl) for the plugin test,
#    e2fsprogs and util-linux (mkfs.ext4, fsfreeze) for the hung-disk test.
#  - tracefs mounted (the agent reads tracepoint formats from it).
#  - The test images, built locally as OCI archives (no registry is reachable here):
#      pause    tests/images/pause.c    the sandbox init: waits for signals, reaps children
#      busybox  busybox-static and its applet symlinks (sh, sleep, trap via sh ...)
#      memhog   tests/images/memhog.c   allocates in steps until OOM-killed (--child: a child does)
#      crasher  tests/images/crasher.c  a real SIGSEGV fault (--child: a child crashes)
#    The harness imports them into each containerd it starts (ctr images import --base-name
#    localhost/e2e/<name>), since a containerd only exists while a test runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${E2E_IMAGES:-$here/.work/images}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() { echo "tests/setup.sh: $*" >&2; cat "$log" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (apt-get, containerd, cgroups, eBPF)"

pkgs=(containerd runc containernetworking-plugins umoci busybox-static gcc libc6-dev
  prometheus iproute2 ca-certificates python3-venv e2fsprogs util-linux)
# kubectl for the plugin test: any on PATH (other packagings conflict with Debian's), else Debian's.
command -v kubectl >/dev/null || pkgs+=(kubernetes-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq >"$log" 2>&1 || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$log" 2>&1 || fail "apt-get install ${missing[*]} failed"
fi

if ! [ -e /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing >"$log" 2>&1 || fail "cannot mount tracefs at /sys/kernel/tracing"
fi

mkdir -p "$out"

# The OTLP test's receiver decodes with the official protobuf definitions (PyPI), in a venv.
venv=$here/.work/otlp-venv
if ! cmp -s "$here/otlp/requirements.txt" "$venv/.requirements" 2>/dev/null; then
  { python3 -m venv "$venv" &&
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/otlp/requirements.txt" &&
    cp "$here/otlp/requirements.txt" "$venv/.requirements"; } >"$log" 2>&1 ||
    fail "installing opentelemetry-proto into $venv"
fi

# build_image NAME FILL-FUNCTION SOURCES -- CMD...: an OCI archive $out/NAME.tar with one layer.
build_image() {
  local name=$1 fill=$2; shift 2
  local tar=$out/$name.tar fresh=1
  while [ "$1" != -- ]; do
    [ "$tar" -nt "$1" ] || fresh=0
    shift
  done
  shift
  [ -s "$tar" ] && [ "$tar" -nt "$here/setup.sh" ] && [ $fresh = 1 ] && return 0
  local w cfg=() c; w=$(mktemp -d)
  for c in "$@"; do cfg+=(--config.cmd "$c"); done
  {
    umoci init --layout "$w/layout" &&
      umoci new --image "$w/layout:latest" &&
      umoci unpack --image "$w/layout:latest" "$w/bundle" &&
      "$fill" "$w/bundle/rootfs" &&
      umoci repack --image "$w/layout:latest" "$w/bundle" &&
      umoci config --image "$w/layout:latest" --config.workingdir / \
        --config.env PATH=/bin:/ "${cfg[@]}" &&
      tar -C "$w/layout" -cf "$tar.tmp" . &&
      mv "$tar.tmp" "$tar"
  } >"$log" 2>&1 || { rm -rf "$w"; fail "building image $name"; }
  rm -rf "$w"
}

static_c() { # rootfs source binary-name
  gcc -static -O2 -Wall -o "$1/$3" "$2"
}
fill_pause() { static_c "$1" "$here/images/pause.c" pause; }
fill_memhog() { static_c "$1" "$here/images/memhog.c" memhog; }
fill_crasher() { static_c "$1" "$here/images/crasher.c" crasher; }
fill_busybox() {
  mkdir -p "$1/bin" "$1/tmp" "$1/proc" "$1/sys" "$1/dev" "$1/etc"
  cp /bin/busybox "$1/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
  echo "root:x:0:0:root:/:/bin/sh" >"$1/etc/passwd"
}

build_image pause fill_pause "$here/images/pause.c" -- /pause
build_image busybox fill_busybox /bin/busybox -- /bin/sh
build_image memhog fill_memhog "$here/images/memhog.c" -- /memhog
build_image crasher fill_crasher "$here/images/crasher.c" -- /crasher
