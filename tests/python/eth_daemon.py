#!/usr/bin/env python3
"""Independent checks of what the real daemon signed, for tests/tests/eth_cosign.rs.

  eth_daemon.py txs FILE   each signed raw transaction recovers (eth-account)
                           to the node's address and decodes to the expected
                           fields
  eth_daemon.py safe FILE  each SafeTx hash equals safe-eth-py's and
                           eth-account's EIP-712 encoder's, and the node's
                           owner signature recovers to the node's address

Prints "ok N"; any mismatch raises (exit non-zero, reason on stderr).
"""

import json
import os
import sys

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "payload", "eth", "tests", "python"))
import interop  # noqa: E402  (the crate's interop helpers: EIP-712 and safe-eth-py)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def txs(cases):
    import rlp
    from eth_account._utils.legacy_transactions import Transaction

    for i, c in enumerate(cases):
        raw = HexBytes(c["raw"])
        sender = Account.recover_transaction(raw)
        check(sender.lower() == c["address"].lower(), f"case {i}: sender {sender} != {c['address']}")
        if c["type"] == 2:
            check(raw[0] == 2, f"case {i}: type byte {raw[0]}")
            got = TypedTransaction.from_bytes(raw).as_dict()
            chain, nonce, to, value = int(got["chainId"]), int(got["nonce"]), HexBytes(got["to"]), int(got["value"])
        else:
            t = rlp.decode(bytes(raw), Transaction)
            check(t.v in (35 + 2 * c["chain_id"], 36 + 2 * c["chain_id"]), f"case {i}: EIP-155 v {t.v}")
            chain, nonce, to, value = c["chain_id"], t.nonce, HexBytes(t.to), t.value
        check(chain == c["chain_id"], f"case {i}: chain {chain}")
        check(nonce == c["nonce"], f"case {i}: nonce {nonce}")
        check(to == HexBytes(c["to"]), f"case {i}: to")
        check(value == int(c["value"]), f"case {i}: value {value}")
    print(f"ok {len(cases)}")


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        data = json.load(f)
    if cmd == "txs":
        txs(data)
    elif cmd == "safe":
        interop.safe(data)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
