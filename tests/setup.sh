#!/usr/bin/env bash
# End-to-end suite set-up (root, idempotent): Debian packages, and the two test images built
# locally as OCI archives (no registry is reachable): `pause` (tests/images/pause.c, static) and
# `busybox` (busybox-static with its applets). The harness imports them into each containerd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${E2E_IMAGES:-$here/.work/images}
pkgs=(containerd runc containernetworking-plugins umoci busybox-static protobuf-compiler gcc libc6-dev prometheus iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# containerd's package may start nothing here (no systemd), but make sure no stray daemon owns
# the default socket paths we do not use.
mkdir -p "$out"

build_image() { # name  files-setup-function  cmd...
  local name=$1 fill=$2; shift 2
  local tar=$out/$name.tar
  [ -s "$tar" ] && [ "$tar" -nt "$here/setup.sh" ] && return 0
  local w; w=$(mktemp -d)
  umoci init --layout "$w/layout" >/dev/null
  umoci new --image "$w/layout:latest" >/dev/null
  umoci unpack --image "$w/layout:latest" "$w/bundle" >/dev/null
  "$fill" "$w/bundle/rootfs"
  umoci repack --image "$w/layout:latest" "$w/bundle" >/dev/null
  local cfg=(--image "$w/layout:latest" --config.workingdir /)
  for c in "$@"; do cfg+=(--config.cmd "$c"); done
  umoci config "${cfg[@]}" >/dev/null
  tar -C "$w/layout" -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$w"
}

fill_pause() {
  gcc -static -O2 -o "$1/pause" "$here/images/pause.c"
}
fill_busybox() {
  mkdir -p "$1/bin" "$1/tmp" "$1/proc" "$1/sys" "$1/dev" "$1/etc"
  cp /bin/busybox "$1/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
  echo "root:x:0:0:root:/:/bin/sh" > "$1/etc/passwd"
}

build_image pause fill_pause /pause
build_image busybox fill_busybox /bin/sh
echo "e2e images ready in $out"
