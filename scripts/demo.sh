#!/usr/bin/env bash
# The co-signing demo, unattended: a 2-of-3 Bitcoin multisig wallet (two
# ground keys, one key of the node, whose seed is sealed in a software TPM)
# is funded on a regtest chain our own code mines; the headers go up to the
# node, administrators upload a quorum-signed policy and register the
# wallet, a PSBT goes up through the emulated radio link, the node checks it
# against its policy and its own header chain and signs, and the ground
# finalises and prints the fully signed transaction. Then a request over
# the policy's per-transaction cap is refused with its reason, and the audit
# log is verified against the node's receipt key. Everything runs in a
# temporary directory and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# SPACENODE_DEMO_BIN: a directory with the built binaries (the system test
# sets it); otherwise build them here.
if [ -n "${SPACENODE_DEMO_BIN:-}" ]; then
  BIN=$SPACENODE_DEMO_BIN
else
  echo "== building"
  cargo build --quiet --workspace --bins
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug
fi
WORK=$(mktemp -d /tmp/spacenode-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
exec </dev/null

# Two free consecutive loopback ports for swtpm (server and control).
PORT=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 60000, 2)
    try:
        socks = []
        for q in (p, p + 1):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)
echo "== software TPM (swtpm, socket mode, port $PORT, state in $WORK/tpm)"
mkdir -p "$WORK/tpm" "$WORK/state"
swtpm socket --tpm2 --server "type=tcp,port=$PORT,bindaddr=127.0.0.1" \
  --ctrl "type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1" \
  --tpmstate "dir=$WORK/tpm" --flags not-need-init,startup-clear \
  --log "file=$WORK/swtpm.log,level=1" &
pids+=($!)

# SPACENODE_DEMO_BYTE_ERRORS: the emulator's byte error rate (the tests
# also run the demo at ten times the default).
BYTE_ERRORS=${SPACENODE_DEMO_BYTE_ERRORS:-0.0001}
echo "== link emulator: 115200 Bd, byte error rate $BYTE_ERRORS, 2 ms one-way latency"
"$BIN/linkemu" --baud 115200 --byte-error-rate "$BYTE_ERRORS" --latency-ms 2 \
  --ground-link "$WORK/ground-uart" --node-link "$WORK/node-uart" --stats "$WORK/link-stats.json" \
  >"$WORK/linkemu.log" 2>&1 &
pids+=($!)

G="$BIN/ground"
run() { echo; echo "\$ ground $*"; "$G" "$@"; }

echo "== administrators (offline key files)"
for i in 0 1 2; do
  "$G" admin keygen --out "$WORK/admin$i.json" >"$WORK/admin$i.txt"
done
"$G" admin keygen --out "$WORK/approver.json" >"$WORK/approver.txt"
xonly() { sed -n 's/.*x-only public key (for the node.s \[admin\] keys): //p' "$1"; }
A0=$(xonly "$WORK/admin0.txt"); A1=$(xonly "$WORK/admin1.txt"); A2=$(xonly "$WORK/admin2.txt")
AP=$(xonly "$WORK/approver.txt")
echo "admins (2 of 3): $A0 $A1 $A2"
echo "ground approver: $AP"

KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
cat > "$WORK/spacenoded.toml" <<CFG
[node]
state_dir = "$WORK/state"
profile = "development"
id = "5341542d30303031"

[link]
device = "$WORK/node-uart"
baud = 115200
tx_key_id = 1

[[link.keys]]
id = 1
key = "$KEY"

[telemetry]
hk_interval_s = 0

[chain]
network = "regtest"
start = "genesis"

[keys]
backend = "tpm"
tcti = "swtpm:host=127.0.0.1,port=$PORT"
seal_auth = "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"

[admin]
threshold = 2
keys = ["$A0", "$A1", "$A2"]
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
export GROUND_CONFIG=$WORK/ground.toml

echo "== spacenoded (TPM key store: the seed is generated and sealed at first start)"
sleep 0.3
"$BIN/spacenoded" --check-config "$WORK/spacenoded.toml"
SPACENODE_LOG=info "$BIN/spacenoded" --config "$WORK/spacenoded.toml" 2>"$WORK/spacenoded.log" &
pids+=($!)
# The ground has no state file yet: its first command asks the node for
# its receive bound (--init, docs/wire.md) and creates it.
for _ in $(seq 1 50); do
  "$G" --init ping -q >/dev/null 2>&1 && break
  sleep 0.2
done
run ping -n 3

echo; echo "== the 2-of-3 wallet: two ground keys and the node's key"
"$G" btc keygen --out "$WORK/ground1.json" | tee "$WORK/ground1.txt"
"$G" btc keygen --out "$WORK/ground2.json" | tee "$WORK/ground2.txt"
G1=$(sed -n 's/^key expression: //p' "$WORK/ground1.txt")
G2=$(sed -n 's/^key expression: //p' "$WORK/ground2.txt")
echo "\$ ground keys xpub \"m/48'/1'/0'/2'\""
NODE=$("$G" keys xpub "m/48'/1'/0'/2'")
echo "$NODE"
DESC="wsh(sortedmulti(2,$G1,$G2,$NODE/<0;1>/*))"
echo "descriptor: $DESC"

run demo fund --descriptor "$DESC" --utxos 4 --value-sat 100000000 --confirmations 3 --out "$WORK/chain"
run chain sync --headers "$WORK/chain/headers.bin"

DEST=bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080
cat > "$WORK/policy.toml" <<TOML
version = 1
network = "regtest"
activation_delay_s = 3600
veto_threshold = 1
checkpoint = "genesis"

[admins]
threshold = 2
keys = ["$A0", "$A1", "$A2"]

[approvers]
threshold = 1
keys = ["$AP"]

[clock]
max_forward_jump_s = 2592000
max_behind_chain_s = 86400

[rules]
per_tx_cap_sat = 150000000
max_fee_sat = 100000
max_fee_rate_sat_vb = 100
min_confirmations = 3
max_psbt_bytes = 100000

[[rules.velocity]]
window_s = 3600
cap_sat = 200000000

[[rules.velocity]]
window_s = 86400
cap_sat = 300000000

[[rules.allow]]
label = "exchange"
address = "$DEST"

[rules.replacement]
allowed = true
max_fee_sat = 200000
max_fee_rate_sat_vb = 200
TOML
echo; echo "== the policy: compiled to canonical CBOR, signed by 2 of 3 administrators"
run policy sign "$WORK/policy.toml" --key "$WORK/admin0.json" --signer 0 --out "$WORK/policy.signed"
run policy sign "$WORK/policy.signed" --key "$WORK/admin1.json" --signer 1
run policy verify "$WORK/policy.signed"
run policy upload "$WORK/policy.signed"

echo; echo "== wallet registration: a REGISTER_WALLET command signed by 2 of 3 administrators"
run wallet register --name treasury --descriptor "$DESC" \
  --key "$WORK/admin0.json:0" --key "$WORK/admin2.json:2"

echo; echo "== a PSBT: 0.6 BTC to the allowlisted exchange, change back to the wallet"
run demo psbt --funding "$WORK/chain/funding.json" --inputs 0 --to "$DEST" \
  --amount-sat 60000000 --fee-sat 2000 --out "$WORK/spend.psbt" --proofs-out "$WORK/spend-proofs.json"
run btc sign --psbt "$WORK/spend.psbt" --proofs "$WORK/spend-proofs.json" \
  --approver "$WORK/approver.json:0" --cosign "$WORK/ground1.json" --out-tx "$WORK/spend.tx"

echo; echo "== over the limit: 2.5 BTC in one transaction (cap 1.5 BTC); the request is larger than a frame and goes up as an upload"
run demo psbt --funding "$WORK/chain/funding.json" --inputs 1,2,3 --to "$DEST" \
  --amount-sat 250000000 --fee-sat 3000 --out "$WORK/big.psbt" --proofs-out "$WORK/big-proofs.json"
set +e
run btc sign --psbt "$WORK/big.psbt" --proofs "$WORK/big-proofs.json" \
  --approver "$WORK/approver.json:0" --cosign "$WORK/ground1.json"
rc=$?
set -e
[ "$rc" = 3 ] || { echo "expected a refusal (exit 3), got exit $rc"; exit 1; }
echo "(refused as the policy says: exit status $rc)"

echo; echo "== the audit log, verified against the node's receipt key"
echo "\$ ground keys xpub \"m/21326'/1'/0'\""
RECEIPT=$("$G" keys xpub "m/21326'/1'/0'")
echo "$RECEIPT"
run audit verify --receipt-xpub "$RECEIPT" --verbose
run policy status
run hk

echo; echo "== what the emulator did to the link:"
cat "$WORK/link-stats.json"
echo; echo "== demo files (configs, keys, logs, the signed transaction) are in $WORK"
