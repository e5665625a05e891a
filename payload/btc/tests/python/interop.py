#!/usr/bin/env python3
"""Independent PSBT tooling for spacenode-btc's interop test.

Called by payload/btc/tests/interop.rs with a JSON scenario file (written
by the Rust test: descriptors, keys, funding transactions, destination)
and, for the co-signing steps, a PSBT in hex. Prints one hex string
(a PSBT or a final transaction) on stdout.

  interop.py bdk-build SCENARIO            PSBT built by bdkpython (watch-only wallet)
  interop.py embit-build SCENARIO          PSBT built by embit (wsh only: embit lacks multi_a)
  interop.py embit-cosign SCENARIO PSBT    embit signs with the ground key
  interop.py embit-finalize SCENARIO PSBT  embit signs and finalises (wsh multisig), prints tx
  interop.py bdk-finalize SCENARIO PSBT    bdkpython signs and finalises, prints tx
"""

import base64
import json
import sys

import bdkpython as bdk
from embit import bip32, script
from embit.descriptor import Descriptor
from embit.finalizer import finalize_psbt
from embit.psbt import PSBT, DerivationPath
from embit.transaction import Transaction, TransactionInput, TransactionOutput


def load(path):
    with open(path) as f:
        return json.load(f)


def bdk_wallet(s, secret=False):
    recv, change = s["receive"], s["change"]
    if secret:
        recv = recv.replace(s["ground_xpub"], s["ground_xprv"])
        change = change.replace(s["ground_xpub"], s["ground_xprv"])
    w = bdk.Wallet(
        bdk.Descriptor(recv, bdk.NetworkKind.TEST),
        bdk.Descriptor(change, bdk.NetworkKind.TEST),
        bdk.Network.REGTEST,
        bdk.Persister.new_in_memory(),
    )
    w.apply_unconfirmed_txs(
        [bdk.UnconfirmedTx(tx=bdk.Transaction(bytes.fromhex(t)), last_seen=1) for t in s["funding"]]
    )
    return w


def bdk_build(s):
    w = bdk_wallet(s)
    dest = bdk.Address(s["destination"], bdk.Network.REGTEST).script_pubkey()
    b = bdk.TxBuilder().add_recipient(dest, bdk.Amount.from_sat(s["amount"]))
    b = b.fee_rate(bdk.FeeRate.from_sat_per_vb(s["fee_rate"]))
    psbt = b.finish(w)
    return base64.b64decode(psbt.serialize()).hex()


def derivation(k, branch, index):
    child = bip32.HDKey.from_string(k["xpub"]).derive([branch, index])
    return child.key, DerivationPath(bytes.fromhex(k["fingerprint"]), k["path"] + [branch, index])


def embit_build(s):
    recv = Descriptor.from_string(s["receive"])
    change = Descriptor.from_string(s["change"])
    utxos = s["utxos"][: s["embit_inputs"]]
    total = sum(u["value"] for u in utxos)
    fee = s["embit_fee"]
    vin = [TransactionInput(bytes.fromhex(u["txid"]), u["vout"], sequence=0xFFFFFFFD) for u in utxos]
    vout = [
        TransactionOutput(s["amount"], script.address_to_scriptpubkey(s["destination"])),
        TransactionOutput(total - s["amount"] - fee, change.derive(0).script_pubkey()),
    ]
    psbt = PSBT(Transaction(version=2, vin=vin, vout=vout, locktime=0))
    funding = {Transaction.parse(bytes.fromhex(t)).txid().hex(): t for t in s["funding"]}
    for inp, u in zip(psbt.inputs, utxos):
        prev = Transaction.parse(bytes.fromhex(funding[u["txid"]]))
        inp.non_witness_utxo = prev
        inp.witness_utxo = prev.vout[u["vout"]]
        inp.witness_script = recv.derive(u["index"]).witness_script()
        for k in s["keys"]:
            pub, der = derivation(k, 0, u["index"])
            inp.bip32_derivations[pub] = der
    out = psbt.outputs[1]
    out.witness_script = change.derive(0).witness_script()
    for k in s["keys"]:
        pub, der = derivation(k, 1, 0)
        out.bip32_derivations[pub] = der
    return psbt.serialize().hex()


def embit_cosign(s, psbt_hex):
    psbt = PSBT.parse(bytes.fromhex(psbt_hex))
    n = psbt.sign_with(bip32.HDKey.from_string(s["ground_master_xprv"]))
    if n == 0:
        raise SystemExit("embit found nothing to sign")
    return psbt


def embit_finalize(s, psbt_hex):
    psbt = embit_cosign(s, psbt_hex)
    tx = finalize_psbt(psbt)
    if tx is None:
        raise SystemExit("embit could not finalise")
    return tx.serialize().hex()


def bdk_finalize(s, psbt_hex):
    w = bdk_wallet(s, secret=True)
    psbt = bdk.Psbt(base64.b64encode(bytes.fromhex(psbt_hex)).decode())
    if not w.sign(psbt):
        raise SystemExit("bdk did not finalise")
    return psbt.extract_tx().serialize().hex()


def main():
    cmd, scenario = sys.argv[1], load(sys.argv[2])
    if cmd == "bdk-build":
        print(bdk_build(scenario))
    elif cmd == "embit-build":
        print(embit_build(scenario))
    elif cmd == "embit-cosign":
        print(embit_cosign(scenario, sys.argv[3]).serialize().hex())
    elif cmd == "embit-finalize":
        print(embit_finalize(scenario, sys.argv[3]))
    elif cmd == "bdk-finalize":
        print(bdk_finalize(scenario, sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
