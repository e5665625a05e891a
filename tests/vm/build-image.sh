#!/usr/bin/env bash
# Builds the virtual flight board: a small Debian bookworm root file system
# with a kernel, systemd, our `spacenoded` (the host's x86_64 build: the host
# is Debian 12 too, same glibc) and our systemd units, as a raw ext4 disk
# image plus the kernel and initrd to boot it directly (no boot loader).
# `hil-run --board virtual --vm-dir OUT` boots it in QEMU (TCG) with swtpm,
# an i6300esb watchdog, a kvaser_pci CAN controller and the link UART
# bridged to a host pty; docs/hil.md says how.
#
#   tests/vm/build-image.sh --binary target/debug/spacenoded --out target/vm
#
# Two stages:
#   base  debootstrap + kernel + initramfs + trimming. Slow (~3 min from
#         scratch), so it is cached under $SPACENODE_VM_CACHE
#         (/var/cache/spacenode-vm), keyed by a hash of the recipe (suite,
#         package list, the base stage's code). CI starts clean and builds it.
#   image our binary, units, a config with a fresh random link key, the
#         matching ground config; mkfs.ext4 -d. A few seconds, every run.
#
# Two board variants share the base: `--watchdog systemd` (default) is the
# flight chain, systemd's RuntimeWatchdogSec petting the i6300esb; with
# `--watchdog device` spacenoded itself holds /dev/watchdog0
# (health.watchdog = "device") and systemd keeps its hands off it
# (tests/vm/overlay-device-watchdog).
#
# Output in OUT: disk.img, vmlinuz, initrd.img, cmdline, spacenoded.toml (a
# copy of the guest's config), ground.toml, admin.toml with admin/ (the
# administrators' keys, made by `ground admin keygen`), build.json (what was
# built, timings).
# Needs root (debootstrap, chroot, file ownership in the image), debootstrap,
# e2fsprogs, systemd (systemctl/systemd-sysusers --root) and network access
# to the Debian mirror for the base stage. Never boots anything itself.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

BINARY=""
OUT=""
# development until the flight profile's key custody (keys.backend = tpm
# with the board's swtpm), node.id and administrator set are settled: the
# keys and policy work own those settings.
PROFILE=development
SEQ_BLOCK=32
HK_INTERVAL=10
DAEMON_WATCHDOG=on
TEST_HOOKS=""
PRINT_KEY=false
BASE_ONLY=false
CONFIG_EXTRA=""
WATCHDOG=systemd
WDT_TIMEOUT=10
ADMINS=2
GROUND=""
BOOT_LOOP_STARTS=3
KEYS=tpm
CACHE=${SPACENODE_VM_CACHE:-/var/cache/spacenode-vm}
MIRROR=${SPACENODE_VM_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
IMAGE_SIZE=1G

usage() {
  cat <<EOF
usage: $0 --binary PATH --out DIR [--profile flight|development] [--seq-block N]
          [--hk-interval S] [--daemon-watchdog on|pending] [--test-hooks on|off]
          [--watchdog systemd|device] [--watchdog-timeout S] [--admins N]
          [--ground PATH] [--boot-loop-starts N] [--keys tpm|soft] [--cache DIR]
          [--config-extra FILE] | --print-base-key | --base-only

  --binary           the spacenoded to install (x86_64, built on this host)
  --out              output directory (created; old images in it replaced)
  --profile          node.profile of the guest's config (default development)
  --seq-block        link.seq_block of the guest (default 32: many durable
                     reservations, so a power cut lands near one)
  --hk-interval      telemetry.hk_interval_s of the guest (default 10)
  --daemon-watchdog  on (default): the unit exactly as shipped
                     (WatchdogSec=30s); pending: a drop-in sets WatchdogSec=0,
                     for a spacenoded older than the health work, which sends
                     no WATCHDOG=1 and would be killed every 30 s
  --test-hooks       on: [health] test_hooks = true in the guest's config
                     (the HIL watchdog scenario hangs a task with it);
                     default on for the development profile, off for flight
  --watchdog         who pets the i6300esb: systemd (default; PID 1 with
                     RuntimeWatchdogSec=15s, as in flight) or device
                     (spacenoded itself: health.watchdog = "device" on
                     /dev/watchdog0; systemd's RuntimeWatchdogSec=0 and the
                     unit's WatchdogSec=0 by tests/vm/overlay-device-watchdog)
  --watchdog-timeout health.watchdog_timeout_s with --watchdog device
                     (default 10)
  --admins           administrators in the guest's [admin] set, all needed
                     (threshold = N; default 2; 0: no [admin] table). Their
                     keys are made with `ground admin keygen` into OUT/admin/,
                     described for hil-run by OUT/admin.toml
  --ground           the ground tool for the keys (default: beside --binary)
  --boot-loop-starts health.boot_loop_starts (default 3: the boot-loop
                     scenario needs few power cycles; the main suite starts
                     the daemon exactly 3 times before it)
  --keys             key custody of the guest: tpm (default; the seed and
                     link keys sealed in the board's TPM, swtpm behind
                     tpm-tis, through /dev/tpmrm0 with a random seal_auth)
                     or soft (development seed file)
  --cache            base rootfs cache (default \$SPACENODE_VM_CACHE or
                     /var/cache/spacenode-vm)
  --config-extra     a file appended to the guest's spacenoded.toml (tables
                     such as [keys] for a scenario; not [health], [admin] or
                     [node], which this script writes)
  --print-base-key   print the base stage's cache key and exit (a CI cache
                     can be keyed by it)
  --base-only        build (or find) the cached base rootfs and exit:
                     scripts/test.sh runs it in the background while the
                     workspace compiles, so the network- and dpkg-bound
                     debootstrap overlaps the CPU-bound build
EOF
}

while (($#)); do
  case "$1" in
    --binary) BINARY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --seq-block) SEQ_BLOCK=$2; shift 2 ;;
    --hk-interval) HK_INTERVAL=$2; shift 2 ;;
    --daemon-watchdog) DAEMON_WATCHDOG=$2; shift 2 ;;
    --test-hooks) TEST_HOOKS=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --config-extra) CONFIG_EXTRA=$2; shift 2 ;;
    --watchdog) WATCHDOG=$2; shift 2 ;;
    --watchdog-timeout) WDT_TIMEOUT=$2; shift 2 ;;
    --admins) ADMINS=$2; shift 2 ;;
    --ground) GROUND=$2; shift 2 ;;
    --boot-loop-starts) BOOT_LOOP_STARTS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --print-base-key) PRINT_KEY=true; shift ;;
    --base-only) BASE_ONLY=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! $PRINT_KEY && ! $BASE_ONLY; then
  [ -n "$BINARY" ] && [ -n "$OUT" ] || { usage >&2; exit 2; }
  [ -x "$BINARY" ] || { echo "error: $BINARY is not an executable (cargo build -p spacenode-node first)" >&2; exit 2; }
  case "$DAEMON_WATCHDOG" in pending|on) ;; *) echo "error: --daemon-watchdog on|pending" >&2; exit 2 ;; esac
  case "$TEST_HOOKS" in "") [ "$PROFILE" = development ] && TEST_HOOKS=on || TEST_HOOKS=off ;; on|off) ;;
    *) echo "error: --test-hooks on|off" >&2; exit 2 ;; esac
  case "$WATCHDOG" in systemd|device) ;; *) echo "error: --watchdog systemd|device" >&2; exit 2 ;; esac
  case "$KEYS" in tpm|soft) ;; *) echo "error: --keys tpm|soft" >&2; exit 2 ;; esac
  for n in "$WDT_TIMEOUT" "$ADMINS" "$BOOT_LOOP_STARTS"; do
    case "$n" in ''|*[!0-9]*) echo "error: $n is not a number" >&2; exit 2 ;; esac
  done
  if [ "$ADMINS" -gt 0 ]; then
    [ -n "$GROUND" ] || GROUND=$(dirname "$BINARY")/ground
    [ -x "$GROUND" ] || { echo "error: $GROUND is not an executable (cargo build -p spacenode-ground --bin ground, or --ground PATH)" >&2; exit 2; }
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "error: building the virtual board needs root (debootstrap, chroot, file owners in the image)" >&2
    exit 2
  fi
  for tool in debootstrap mkfs.ext4 systemctl systemd-sysusers systemd-machine-id-setup flock sha256sum \
    strip swtpm swtpm_ioctl tpm2_dictionarylockout tpm2_shutdown; do
    command -v "$tool" >/dev/null || {
      echo "error: $tool not found: run scripts/install-deps.sh (packages debootstrap e2fsprogs systemd util-linux binutils swtpm swtpm-tools tpm2-tools)" >&2
      exit 2
    }
  done
fi

now() { date +%s.%N; }

elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- base stage
# Everything that goes into the cache key is in this block: change it and
# the key changes.
BASE_PACKAGES=(
  systemd-sysv udev kmod e2fsprogs linux-image-amd64
  # group tss and the udev rule giving it /dev/tpmrm0
  tpm-udev
  # the TPM stack's run-time libraries (tss-esapi links them once the
  # daemon uses the TPM)
  libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-sys1 libtss2-rc0 libtss2-tcti-device0
)
# Kernel module trees a headless board with virtio disk, serial, TPM,
# watchdog and CAN never loads; dropping them halves the image.
TRIM_MODULES=(
  drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/iio
  drivers/hwmon drivers/scsi drivers/usb drivers/net/wireless
  drivers/net/ethernet drivers/bluetooth drivers/isdn drivers/input
  sound net/bluetooth net/mac80211 net/wireless
)
base_stage() {
  local root=$1
  debootstrap --variant=minbase --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" \
    "$SUITE" "$root" "$MIRROR"
  local kver
  kver=$(basename "$(ls -d "$root"/usr/lib/modules/*)")
  # Only the modules needed before the root is mounted (and the watchdog,
  # so that PID 1 finds /dev/watchdog0 at once) go into the initramfs.
  sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
  printf '%s\n' virtio_pci virtio_blk ext4 i6300esb >>"$root/etc/initramfs-tools/modules"
  local tree
  for tree in "${TRIM_MODULES[@]}"; do rm -rf "$root/usr/lib/modules/$kver/kernel/$tree"; done
  chroot "$root" depmod "$kver"
  chroot "$root" update-initramfs -u -k "$kver" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
    "$root"/usr/share/info/*
}
KEY=$( { echo "$SUITE"; printf '%s\n' "${BASE_PACKAGES[@]}" "${TRIM_MODULES[@]}"; declare -f base_stage; } \
  | sha256sum | cut -c1-16)
BASE=$CACHE/base-$KEY
if $PRINT_KEY; then echo "$KEY"; exit 0; fi

if $BASE_ONLY; then
  [ "$(id -u)" = 0 ] || { echo "error: building the base rootfs needs root (debootstrap, chroot)" >&2; exit 2; }
  command -v debootstrap >/dev/null || { echo "error: debootstrap not found: run scripts/install-deps.sh" >&2; exit 2; }
  mkdir -p "$CACHE"
else
  mkdir -p "$CACHE" "$OUT"
  OUT=$(cd "$OUT" && pwd)
fi
t_all=$(now)
base_seconds=0
base_cached=true
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$BASE/.complete" ]; then
  base_cached=false
  echo "== base rootfs $KEY: debootstrap $SUITE (not cached yet)"
  t=$(now)
  rm -rf "$BASE" "$BASE.tmp"
  base_stage "$BASE.tmp" >"$CACHE/base-$KEY.log" 2>&1 || {
    tail -n 30 "$CACHE/base-$KEY.log" >&2
    echo "error: base stage failed, full log in $CACHE/base-$KEY.log" >&2
    exit 1
  }
  mv "$BASE.tmp" "$BASE"
  touch "$BASE/.complete"
  # Older recipes' rootfs are dead weight.
  for old in "$CACHE"/base-*; do
    case "$old" in "$BASE"|"$BASE".log|"$CACHE/base-$KEY.log") ;; *) rm -rf "$old" ;; esac
  done
  base_seconds=$(elapsed "$t")
  echo "== base rootfs built in ${base_seconds}s"
else
  echo "== base rootfs $KEY (cached in $CACHE)"
fi
if $BASE_ONLY; then exit 0; fi

# The board's TPM as a flight TPM leaves provisioning: swtpm's state (in
# OUT/tpm beside the disk, which hil-run hands to swtpm at each power-on)
# with the dictionary-attack parameters of the SLB9670's factory state
# (32 tries, one forgiven every 2 h, lockout auth retry after 24 h) instead
# of the reference implementation's 3 tries. A TPM that loses power without
# TPM2_Shutdown counts a failed try at its next start-up (an attacker must
# not reset the counter by cutting the power), so with 3 tries the third
# power cut of the HIL suite would lock the sealed seed away.
provision_tpm() {
  local state=$1 dir sock log
  mkdir -p "$state"
  dir=$(mktemp -d)
  sock=$dir/tpm.sock
  log=$dir/swtpm.log
  swtpm socket --tpm2 --tpmstate dir="$state" --server type=unixio,path="$sock" \
    --ctrl type=unixio,path="$sock.ctrl" --flags not-need-init,startup-clear \
    --log file="$log" &
  local pid=$! i=0
  while [ ! -S "$sock.ctrl" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  if ! tpm2_dictionarylockout -T "swtpm:path=$sock" --setup-parameters \
      --max-tries=32 --recovery-time=7200 --lockout-recovery-time=86400 >/dev/null ||
    ! tpm2_shutdown -T "swtpm:path=$sock" >/dev/null; then
    kill "$pid" 2>/dev/null || true
    cat "$log" >&2 || true
    rm -rf "$dir"
    echo "error: provisioning the board's TPM state in $state failed" >&2
    exit 1
  fi
  swtpm_ioctl --unix "$sock.ctrl" -s >/dev/null
  wait "$pid" || true
  rm -rf "$dir"
}

# --------------------------------------------------------------- image stage
t=$(now)
STAGE=$OUT/rootfs.tmp
rm -rf "$STAGE"
cp -a "$BASE" "$STAGE"
flock -u 9
rm -f "$STAGE/.complete"
trap 'rm -rf "$STAGE"' EXIT

echo "/dev/vda / ext4 defaults 0 1" >"$STAGE/etc/fstab"
echo board >"$STAGE/etc/hostname"
systemctl --root="$STAGE" set-default multi-user.target >/dev/null 2>&1
# No logins on a flight board (the console is an output), no package
# maintenance or file system scrubbing timers.
systemctl --root="$STAGE" mask getty.target apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1

# Without debug info, as the flight image ships it (Yocto strips). The daemon
# hashes its own binary at every start (the software measurement its sealed
# keys are bound to): a 200 MB debug build took 30 to 90 s of each start
# under TCG, against the unit's TimeoutStartSec=90s; stripped, about 20 MB.
strip --strip-debug -o "$STAGE/usr/bin/spacenoded" "$BINARY"
chmod 0755 "$STAGE/usr/bin/spacenoded"
install -m 0644 "$REPO/systemd/spacenoded.service" "$STAGE/usr/lib/systemd/system/spacenoded.service"
install -D -m 0644 "$REPO/systemd/sysusers.d/spacenode.conf" "$STAGE/usr/lib/sysusers.d/spacenode.conf"
install -D -m 0644 "$REPO/systemd/system.conf.d/watchdog.conf" "$STAGE/etc/systemd/system.conf.d/watchdog.conf"
# The flight image's journald settings (RAM first, a bounded persistent
# copy), its config template and RAUC configuration: the same files at the
# same paths as yocto/meta-spacenode installs them, so the virtual board
# boots what the CM4 boots (scripts/check-board-files.py). RAUC itself is
# not installed here: the virtual board has one disk and no slots.
install -D -m 0644 "$REPO/systemd/journald.conf.d/spacenode.conf" "$STAGE/etc/systemd/journald.conf.d/spacenode.conf"
install -D -m 0644 "$REPO/systemd/spacenoded.toml.example" "$STAGE/usr/share/spacenode/spacenoded.toml.example"
install -D -m 0644 "$REPO/systemd/rauc/system.conf" "$STAGE/usr/lib/rauc/system.conf"
systemd-sysusers --root="$STAGE" >/dev/null
rm -f "$STAGE/etc/machine-id"
systemd-machine-id-setup --root="$STAGE" >/dev/null

# Virtual-board only: the board report on the console, and (for a daemon
# that does not pet its watchdog yet) the pending-watchdog drop-in.
cp -a "$HERE/overlay/." "$STAGE/"

# The daemon-owned watchdog variant: systemd's RuntimeWatchdogSec=0, the
# unit's drop-in (device access, WatchdogSec=0), the udev rule for
# /dev/watchdog0 and the board's watchdog check (each file says why;
# docs/hil.md, "The watchdog chain").
if [ "$WATCHDOG" = device ]; then
  cp -a "$HERE/overlay-device-watchdog/." "$STAGE/"
  systemctl --root="$STAGE" enable spacenode-board-watchdog.service >/dev/null 2>&1
fi

LINK_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
NODE_ID=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')

# The administrators: keys made by the operators' own tool, so the runner
# signs exactly as an administrator would (docs/health.md).
rm -rf "$OUT/admin" "$OUT/admin.toml"
ADMIN_XONLY=()
if [ "$ADMINS" -gt 0 ]; then
  install -d -m 0700 "$OUT/admin"
  for ((i = 0; i < ADMINS; i++)); do
    "$GROUND" admin keygen --out "$OUT/admin/admin-$i.json" >/dev/null
    x=$(sed -n 's/^ *"xonly": *"\([0-9a-f]\{64\}\)".*/\1/p' "$OUT/admin/admin-$i.json")
    [ -n "$x" ] || { echo "error: no x-only key in $OUT/admin/admin-$i.json" >&2; exit 1; }
    ADMIN_XONLY+=("\"$x\"")
  done
fi

install -d -m 0755 "$STAGE/etc/spacenode"
cat >"$STAGE/etc/spacenode/spacenoded.toml" <<EOF
# The virtual board's config, written by tests/vm/build-image.sh with a
# fresh random link key (the ground's copy is ground.toml beside the image).
[node]
state_dir = "/var/lib/spacenode"
profile = "$PROFILE"
# Named by administrator commands (admin.toml beside the image).
id = "$NODE_ID"

[link]
# The guest's second serial port, bridged to a host pty by QEMU.
device = "/dev/ttyS1"
baud = 115200
tx_key_id = 1
seq_block = $SEQ_BLOCK

[[link.keys]]
id = 1
key = "$LINK_KEY"

[telemetry]
hk_interval_s = $HK_INTERVAL

[chain]
# The HIL co-signing scenario mines a regtest chain on the ground
# (hil/ground/src/demo.rs) and syncs its headers from genesis.
network = "regtest"
start = "genesis"
EOF
if [ "$KEYS" = tpm ]; then
  cat >>"$STAGE/etc/spacenode/spacenoded.toml" <<EOF

[keys]
# The seed and the link keys sealed in the board's TPM (swtpm behind
# tpm-tis), through the kernel's resource manager, as on the flight board.
backend = "tpm"
tcti = "device:/dev/tpmrm0"
seal_auth = "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
EOF
fi
{
  echo
  echo "[health]"
  if [ "$TEST_HOOKS" = on ]; then
    echo "# The HIL watchdog scenarios hang a task with TC[133,5]."
    echo "test_hooks = true"
  fi
  echo "# More than this many starts within 10 minutes is a boot loop (safe mode"
  echo "# 0x0802); the HIL boot-loop scenario cuts the power right after READY."
  echo "boot_loop_starts = $BOOT_LOOP_STARTS"
  echo "boot_loop_window_s = 600"
  if [ "$WATCHDOG" = device ]; then
    echo "# The daemon holds the i6300esb itself (systemd does not: RuntimeWatchdogSec=0)."
    echo 'watchdog = "device"'
    echo 'watchdog_device = "/dev/watchdog0"'
    echo "watchdog_timeout_s = $WDT_TIMEOUT"
  fi
  if [ "$ADMINS" -gt 0 ]; then
    echo
    echo "[admin]"
    echo "# Every administrator must sign (admin.toml beside the image has their keys)."
    echo "threshold = $ADMINS"
    echo "keys = [$(IFS=,; echo "${ADMIN_XONLY[*]}" | sed 's/,/, /g')]"
  fi
} >>"$STAGE/etc/spacenode/spacenoded.toml"
if [ -n "$CONFIG_EXTRA" ]; then
  { echo; cat "$CONFIG_EXTRA"; } >>"$STAGE/etc/spacenode/spacenoded.toml"
fi
# Numeric: the host's chown knows the host's groups, not the image's.
GID=$(awk -F: '$1 == "spacenode" { print $3 }' "$STAGE/etc/group")
[ -n "$GID" ] || { echo "error: systemd-sysusers did not create group spacenode in the image" >&2; exit 1; }
chown "0:$GID" "$STAGE/etc/spacenode/spacenoded.toml"
chmod 0640 "$STAGE/etc/spacenode/spacenoded.toml"
systemctl --root="$STAGE" enable spacenoded.service spacenode-board-report.service >/dev/null 2>&1

# The binary must run in the guest's userland (libraries) and accept the
# config there, or the board would only fail after a 1-minute boot.
if ! chroot "$STAGE" /usr/bin/spacenoded --check-config /etc/spacenode/spacenoded.toml >/dev/null; then
  echo "error: spacenoded does not run or rejects its config inside the guest rootfs" >&2
  exit 1
fi

if [ "$DAEMON_WATCHDOG" = on ]; then
  rm -f "$STAGE/etc/systemd/system/spacenoded.service.d/50-pending-daemon-watchdog.conf"
  rmdir "$STAGE/etc/systemd/system/spacenoded.service.d" 2>/dev/null || true
fi
echo "== daemon watchdog: $DAEMON_WATCHDOG (WatchdogSec=$([ "$DAEMON_WATCHDOG" = on ] && echo 30s || echo 0, pending drop-in)), hardware watchdog held by: $WATCHDOG, test hooks: $TEST_HOOKS, keys: $KEYS, administrators: $ADMINS, node id: $NODE_ID"

cp "$STAGE"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$STAGE"/boot/initrd.img-* "$OUT/initrd.img"
# A new disk gets a new TPM (its NV state lives beside the disk) and no
# logs of an older image.
rm -rf "$OUT/disk.img" "$OUT/tpm" "$OUT/run"
provision_tpm "$OUT/tpm"
mkfs.ext4 -q -F -L board -d "$STAGE" "$OUT/disk.img" "$IMAGE_SIZE"
cp "$STAGE/etc/spacenode/spacenoded.toml" "$OUT/spacenoded.toml"
chmod 0600 "$OUT/spacenoded.toml"
rm -rf "$STAGE"
trap - EXIT

# The ground side of the same key. The port is the pty QEMU allocates at
# each boot, so it is given on the command line, not here.
# The key is new (no node has used it): the ground's state starts empty,
# which the ground accepts only as an existing file (a missing one needs
# `ground --init`, docs/wire.md).
rm -f "$OUT/ground.state.json"
echo '{}' >"$OUT/ground.state.json"
cat >"$OUT/ground.toml" <<EOF
source_id = 1
tx_key_id = 1
baud = 115200
state_file = "ground.state.json"

[[keys]]
id = 1
key = "$LINK_KEY"
EOF
chmod 0600 "$OUT/ground.toml"

# The administrators for hil-run (--admins; the default for a virtual board
# is this file beside the image). Signer i is keys[i] of the node's [admin].
if [ "$ADMINS" -gt 0 ]; then
  {
    echo "# The virtual board's administrators, written by tests/vm/build-image.sh."
    echo "node_id = \"$NODE_ID\""
    echo "threshold = $ADMINS"
    echo -n "keys = ["
    for ((i = 0; i < ADMINS; i++)); do
      [ "$i" -gt 0 ] && echo -n ", "
      echo -n "\"admin/admin-$i.json\""
    done
    echo "]"
  } >"$OUT/admin.toml"
  chmod 0600 "$OUT/admin.toml"
fi

# Kernel command line: console on the first UART; journald copies every
# log line (spacenoded's included) to it, so the HIL runner sees READY.
# loglevel=6 prints up to KERN_NOTICE, which includes the kernel's banner
# ("Linux version ..."): every boot is visible, also a reset the runner did
# not cause (the hardware watchdog).
echo "console=ttyS0,115200 root=/dev/vda ro rootfstype=ext4 panic=10 loglevel=6 systemd.show_status=1 systemd.journald.forward_to_console=1" \
  >"$OUT/cmdline"
image_seconds=$(elapsed "$t")
cat >"$OUT/build.json" <<EOF
{"base_key": "$KEY", "base_cached": $base_cached, "daemon_watchdog": "$DAEMON_WATCHDOG", "watchdog": "$WATCHDOG", "test_hooks": $([ "$TEST_HOOKS" = on ] && echo true || echo false), "admins": $ADMINS, "boot_loop_starts": $BOOT_LOOP_STARTS, "keys": "$KEYS", "base_seconds": $base_seconds, "image_seconds": $image_seconds, "total_seconds": $(elapsed "$t_all")}
EOF
echo "== virtual board image in $OUT (image stage ${image_seconds}s)"
