#!/usr/bin/env python3
"""Independent Ethereum tooling for spacenode-eth's interop test.

Called by payload/eth/tests/interop.rs with a JSON file the Rust test
wrote. Prints one line ("ok N", or hex strings for `build`); any mismatch
raises and exits non-zero with the reason on stderr.

  interop.py build FILE   unsigned transactions built by eth-account from
                          field dicts: prints the signing payloads, one hex
                          per line
  interop.py txs FILE     signed transactions from the node: the sender
                          recovers (eth-account) to the node's address, the
                          decoded fields equal the expected ones, the signing
                          hash matches, and eth-account signing the same
                          fields with the same key gives the same bytes
                          (RFC 6979 on both sides)
  interop.py safe FILE    SafeTx hashes from the node equal safe-eth-py's
                          SafeTx.safe_tx_hash and eth-account's EIP-712
                          encoder (both domain variants); the node's owner
                          signatures parse and verify with safe-eth-py and
                          recover with eth-account
"""

import json
import sys

import rlp
from eth_account import Account
from eth_account._utils.legacy_transactions import (
    Transaction,
    serializable_unsigned_transaction_from_dict,
)
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_account.typed_transactions import TypedTransaction
from eth_account.typed_transactions.dynamic_fee_transaction import (
    transaction_rpc_to_rlp_structure,
)
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from safe_eth.safe.safe_signature import SafeSignature, SafeSignatureEOA
from safe_eth.safe.safe_tx import SafeTx
from toolz import dissoc


def load(path):
    with open(path) as f:
        return json.load(f)


def tx_dict(f):
    """eth-account's transaction dict from the test's JSON fields."""
    d = {
        "chainId": f["chainId"],
        "nonce": f["nonce"],
        "gas": f["gas"],
        "to": to_checksum_address(f["to"]),
        "value": int(f["value"]),
        "data": bytes.fromhex(f["data"]),
    }
    if f["type"] == 2:
        d["type"] = 2
        d["maxFeePerGas"] = int(f["maxFeePerGas"])
        d["maxPriorityFeePerGas"] = int(f["maxPriorityFeePerGas"])
        d["accessList"] = [
            {"address": to_checksum_address(a["address"]), "storageKeys": a["storageKeys"]}
            for a in f["accessList"]
        ]
    else:
        d["gasPrice"] = int(f["gasPrice"])
    return d


def unsigned_payload(d):
    t = serializable_unsigned_transaction_from_dict(d)
    if isinstance(t, TypedTransaction):
        inner = t.transaction
        body = rlp.encode(
            inner.__class__._unsigned_transaction_serializer.from_dict(
                transaction_rpc_to_rlp_structure(dissoc(inner.dictionary, "v", "r", "s"))
            )
        )
        out = bytes([inner.__class__.transaction_type]) + body
    else:
        out = rlp.encode(t)
    assert keccak(out) == t.hash(), "payload does not hash to eth-account's signing hash"
    return out


def build(cases):
    for f in cases:
        print(unsigned_payload(tx_dict(f)).hex())


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def txs(cases):
    for i, c in enumerate(cases):
        raw = HexBytes(c["raw"])
        f = c["fields"]
        sender = Account.recover_transaction(raw)
        check(sender.lower() == c["address"].lower(), f"case {i}: sender {sender} != {c['address']}")
        if f["type"] == 2:
            check(raw[0] == 2, f"case {i}: type byte {raw[0]}")
            got = TypedTransaction.from_bytes(raw).as_dict()
            for k in ["chainId", "nonce", "gas", "maxFeePerGas", "maxPriorityFeePerGas"]:
                check(int(got[k]) == int(f[k]), f"case {i}: {k} {got[k]} != {f[k]}")
            check(HexBytes(got["to"]) == HexBytes(f["to"]), f"case {i}: to")
            check(int(got["value"]) == int(f["value"]), f"case {i}: value")
            check(bytes(got["data"]) == bytes.fromhex(f["data"]), f"case {i}: data")
            # eth-account shows storage keys without leading zeros: compare
            # them as numbers (the byte-exact re-signing below covers the
            # encoding).
            al = [(HexBytes(a["address"]), [int.from_bytes(HexBytes(k), "big") for k in a["storageKeys"]]) for a in got["accessList"]]
            want = [(HexBytes(a["address"]), [int.from_bytes(HexBytes(k), "big") for k in a["storageKeys"]]) for a in f["accessList"]]
            check(al == want, f"case {i}: access list {al} != {want}")
        else:
            t = rlp.decode(bytes(raw), Transaction)
            check(t.nonce == f["nonce"], f"case {i}: nonce")
            check(t.gasPrice == int(f["gasPrice"]), f"case {i}: gasPrice")
            check(t.gas == f["gas"], f"case {i}: gas")
            check(HexBytes(t.to) == HexBytes(f["to"]), f"case {i}: to")
            check(t.value == int(f["value"]), f"case {i}: value")
            check(bytes(t.data) == bytes.fromhex(f["data"]), f"case {i}: data")
            check(t.v in (35 + 2 * f["chainId"], 36 + 2 * f["chainId"]), f"case {i}: EIP-155 v {t.v}")
        d = tx_dict(f)
        check(
            serializable_unsigned_transaction_from_dict(d).hash() == bytes.fromhex(c["signing_hash"]),
            f"case {i}: signing hash",
        )
        again = Account.sign_transaction(d, bytes.fromhex(c["secret"])).raw_transaction
        check(HexBytes(again) == raw, f"case {i}: eth-account signs other bytes: {again.hex()}")
    print(f"ok {len(cases)}")


SAFE_TX_TYPES = [
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "data", "type": "bytes"},
    {"name": "operation", "type": "uint8"},
    {"name": "safeTxGas", "type": "uint256"},
    {"name": "baseGas", "type": "uint256"},
    {"name": "gasPrice", "type": "uint256"},
    {"name": "gasToken", "type": "address"},
    {"name": "refundReceiver", "type": "address"},
    {"name": "nonce", "type": "uint256"},
]


def eip712_hash(c):
    with_chain = tuple(int(x) for x in c["version"].split("+")[0].split(".")) >= (1, 3, 0)
    domain_types = ([{"name": "chainId", "type": "uint256"}] if with_chain else []) + [
        {"name": "verifyingContract", "type": "address"}
    ]
    domain = {"verifyingContract": to_checksum_address(c["safe"])}
    if with_chain:
        domain["chainId"] = c["chain_id"]
    msg = {
        "types": {"EIP712Domain": domain_types, "SafeTx": SAFE_TX_TYPES},
        "primaryType": "SafeTx",
        "domain": domain,
        "message": {
            "to": to_checksum_address(c["to"]),
            "value": int(c["value"]),
            "data": bytes.fromhex(c["data"]),
            "operation": c["operation"],
            "safeTxGas": int(c["safe_tx_gas"]),
            "baseGas": int(c["base_gas"]),
            "gasPrice": int(c["gas_price"]),
            "gasToken": to_checksum_address(c["gas_token"]),
            "refundReceiver": to_checksum_address(c["refund_receiver"]),
            "nonce": int(c["nonce"]),
        },
    }
    return _hash_eip191_message(encode_typed_data(full_message=msg))


def safe(cases):
    for i, c in enumerate(cases):
        t = SafeTx(
            None,
            to_checksum_address(c["safe"]),
            to_checksum_address(c["to"]),
            int(c["value"]),
            bytes.fromhex(c["data"]),
            c["operation"],
            int(c["safe_tx_gas"]),
            int(c["base_gas"]),
            int(c["gas_price"]),
            to_checksum_address(c["gas_token"]),
            to_checksum_address(c["refund_receiver"]),
            safe_nonce=int(c["nonce"]),
            safe_version=c["version"].split("+")[0],
            chain_id=c["chain_id"],
        )
        ours = bytes.fromhex(c["hash"])
        check(bytes(t.safe_tx_hash) == ours, f"case {i}: safe-eth-py {t.safe_tx_hash.hex()} != {c['hash']}")
        check(eip712_hash(c) == ours, f"case {i}: eth-account EIP-712 {eip712_hash(c).hex()} != {c['hash']}")
        sig = bytes.fromhex(c["signature"])
        parsed = SafeSignature.parse_signature(sig, ours)
        check(len(parsed) == 1 and isinstance(parsed[0], SafeSignatureEOA), f"case {i}: signature type")
        check(parsed[0].owner.lower() == c["owner"].lower(), f"case {i}: owner {parsed[0].owner}")
        check(parsed[0].is_valid(), f"case {i}: signature not valid")
        check(
            Account._recover_hash(ours, signature=sig).lower() == c["owner"].lower(),
            f"case {i}: eth-account recovery",
        )
        # The signature is also what execTransaction would carry.
        t.signatures = sig
        check([s.lower() for s in t.signers] == [c["owner"].lower()], f"case {i}: signers")
    print(f"ok {len(cases)}")


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    data = load(path)
    {"build": build, "txs": txs, "safe": safe}[cmd](data)


if __name__ == "__main__":
    main()
