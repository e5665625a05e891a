#!/usr/bin/env bash
# `systemd-analyze verify` on every unit the flight layer installs, in a
# root holding the host's units (for the default dependencies) and ours:
#   spacenoded.service                   systemd/ (shared with the virtual board)
#   spacenode-data-layout.service        yocto/.../spacenode-system/files
#   boot-complete.target + our drop-in   (a good boot needs spacenoded ready)
#   the mount units of the image's fstab (boot, data and its bind mounts),
#     made by the host's systemd-fstab-generator from the layer's fstab
# Executables named by ExecStart= are stubbed in the root (the real daemon
# is verified with its unit by tests/tests/systemd.rs). Any message from
# systemd-analyze fails the check: it prints nothing for clean units.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LAYER=$REPO/yocto/meta-spacenode
FILES=$LAYER/recipes-spacenode/spacenode-system/files
FSTAB=$LAYER/recipes-core/base-files/files/fstab
command -v systemd-analyze >/dev/null || { echo "error: systemd-analyze missing (package systemd)" >&2; exit 1; }
GENERATOR=""
for g in /usr/lib/systemd/system-generators/systemd-fstab-generator /lib/systemd/system-generators/systemd-fstab-generator; do
  [ -x "$g" ] && GENERATOR=$g && break
done
[ -n "$GENERATOR" ] || { echo "error: systemd-fstab-generator missing (package systemd)" >&2; exit 1; }
HOST_UNITS=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [ -e "$d/sysinit.target" ] && HOST_UNITS=$d && break
done

ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
UNITS=$ROOT/usr/lib/systemd/system
mkdir -p "$UNITS" "$ROOT/etc/systemd/system" "$ROOT/usr/bin"
cp -a "$HOST_UNITS/." "$UNITS/"
install -m 0644 "$REPO/systemd/spacenoded.service" "$UNITS/spacenoded.service"
install -m 0644 "$FILES/spacenode-data-layout.service" "$UNITS/spacenode-data-layout.service"
install -D -m 0644 "$FILES/boot-complete-spacenoded.conf" "$UNITS/boot-complete.target.d/spacenoded.conf"
SYSTEMD_FSTAB=$FSTAB SYSTEMD_PROC_CMDLINE="root=/dev/mmcblk0p2 ro" \
  "$GENERATOR" "$ROOT/etc/systemd/system" "$ROOT/etc/systemd/system" "$ROOT/etc/systemd/system"
mounts=()
for m in "$ROOT"/etc/systemd/system/*.mount; do
  name=$(basename "$m")
  [ "$name" = -.mount ] || mounts+=("$name")
done
[ "${#mounts[@]}" -ge 5 ] || { echo "error: the fstab gave ${#mounts[@]} mount units, expected boot, data and its binds" >&2; exit 1; }

# Stubs for every ExecStart= executable our units name.
for unit in "$UNITS/spacenoded.service" "$UNITS/spacenode-data-layout.service"; do
  sed -n 's/^Exec[A-Za-z]*=[-@!+:]*\(\/[^ ]*\).*/\1/p' "$unit" | while read -r exe; do
    [ -e "$ROOT$exe" ] && continue
    mkdir -p "$(dirname "$ROOT$exe")"
    printf '#!/bin/sh\n' >"$ROOT$exe"
    chmod 0755 "$ROOT$exe"
  done
done

units=(spacenoded.service spacenode-data-layout.service boot-complete.target "${mounts[@]}")
out=$(SYSTEMD_PAGER="" SYSTEMD_COLORS=0 systemd-analyze verify --man=no --generators=no --root="$ROOT" "${units[@]}" 2>&1) || {
  echo "$out"
  echo "error: systemd-analyze verify failed" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$out"
  echo "error: systemd-analyze verify printed warnings for the layer's units (above)" >&2
  exit 1
fi
echo "systemd-analyze verify: ${#units[@]} units of the flight layer clean (${units[*]})"
