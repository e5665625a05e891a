#!/usr/bin/env bash
# The demo: spacenoded and the ground tool talking over the emulated radio
# link (115200 Bd, 1 % of bytes corrupted), with a fresh random link key.
# Everything runs in a temporary directory and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "== building"
cargo build --quiet --workspace --bins
BIN=$PWD/target/debug
WORK=$(mktemp -d /tmp/spacenode-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
mkdir -p "$WORK/state"
cat > "$WORK/spacenoded.toml" <<CFG
[node]
state_dir = "$WORK/state"
profile = "development"

[link]
device = "$WORK/node-uart"
baud = 115200
tx_key_id = 1

[[link.keys]]
id = 1
key = "$KEY"

[telemetry]
hk_interval_s = 0
CFG
cat > "$WORK/ground.toml" <<CFG
source_id = 1
tx_key_id = 1
port = "$WORK/ground-uart"
baud = 115200

[[keys]]
id = 1
key = "$KEY"
CFG

echo "== link emulator: 115200 Bd, 1 % byte errors, 2 ms one-way latency"
"$BIN/linkemu" --baud 115200 --byte-error-rate 0.01 --latency-ms 2 \
  --ground-link "$WORK/ground-uart" --node-link "$WORK/node-uart" --stats "$WORK/link-stats.json" \
  >"$WORK/linkemu.log" 2>&1 &
pids+=($!)
sleep 0.5

echo "== spacenoded"
"$BIN/spacenoded" --check-config "$WORK/spacenoded.toml"
SPACENODE_LOG=info "$BIN/spacenoded" --config "$WORK/spacenoded.toml" 2>"$WORK/spacenoded.log" &
pids+=($!)
sleep 1

export GROUND_CONFIG=$WORK/ground.toml
echo; echo "\$ ground ping -n 10 --latency-ms 2"
"$BIN/ground" ping -n 10 --latency-ms 2
echo; echo "\$ ground hk"
"$BIN/ground" hk --latency-ms 2
echo; echo "\$ ground events --last 10"
"$BIN/ground" events --last 10 --latency-ms 2
echo; echo "== what the emulator did to the link:"
cat "$WORK/link-stats.json"
echo; echo "== demo files (configs, logs) are in $WORK"
