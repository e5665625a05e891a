//! Interop with independent Python implementations (eth-account,
//! safe-eth-py): transactions signed by the node recover to the node's
//! address and decode to the same fields with eth-account (which also
//! reproduces the exact signed bytes from the same key: RFC 6979 on both
//! sides); transactions built by eth-account are accepted and signed by the
//! node; SafeTx hashes equal safe-eth-py's and eth-account's EIP-712
//! encoder's for both domain variants, with data and refund parameters; the
//! node's owner signatures verify there.
//!
//! Needs the repository venv (`.venv`, `tests/python/requirements.txt`) or
//! `SPACENODE_PYTHON`; a missing interpreter fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy_consensus::SignableTransaction;
use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_primitives::{Address, B256, Bytes, U256};
use bitcoin::secp256k1::Secp256k1;
use serde_json::{Value, json};
use spacenode_eth::abi::{Erc20Call, InnerCall, Operation, encode_erc20, encode_multisend};
use spacenode_eth::engine::{Authority, Outcome};
use spacenode_eth::safe::{Safe, SafeTx, safe_tx_hash};
use spacenode_eth::sign::sign_safe_tx;
use spacenode_eth::tx::{UnsignedTx, decode_signed};
use spacenode_policy::eth::selector;
use spacenode_policy::request::EthKind;
use spacenode_testkit::eth::{ETHER, EthDemo, GWEI, MAINNET, SEPOLIA, addr};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SPACENODE_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.is_file(),
        "python venv not found at {} (run scripts/install-deps.sh or set SPACENODE_PYTHON); this test must not be skipped",
        p.display()
    );
    p
}

fn run(cmd: &str, file: &Path) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py");
    let out = Command::new(python())
        .arg(script)
        .arg(cmd)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "interop.py {cmd} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write(dir: &tempfile::TempDir, name: &str, v: &Value) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// The test's JSON form of a transaction's fields.
fn fields(t: &UnsignedTx) -> Value {
    let to = match t.to() {
        alloy_primitives::TxKind::Call(a) => a.to_string(),
        alloy_primitives::TxKind::Create => panic!("create"),
    };
    let mut f = json!({
        "type": t.tx_type(),
        "chainId": t.chain_id(),
        "nonce": t.nonce(),
        "gas": t.gas_limit(),
        "to": to,
        "value": t.value().to_string(),
        "data": hex::encode(t.input()),
    });
    match t {
        UnsignedTx::Eip1559(x) => {
            f["maxFeePerGas"] = json!(x.max_fee_per_gas.to_string());
            f["maxPriorityFeePerGas"] = json!(x.max_priority_fee_per_gas.to_string());
            f["accessList"] = json!(
                x.access_list
                    .0
                    .iter()
                    .map(|i| json!({
                        "address": i.address.to_string(),
                        "storageKeys": i.storage_keys.iter().map(|k| format!("0x{}", hex::encode(k))).collect::<Vec<_>>(),
                    }))
                    .collect::<Vec<_>>()
            );
        }
        UnsignedTx::Legacy(x) => f["gasPrice"] = json!(x.gas_price.to_string()),
    }
    f
}

/// Signs the unsigned payload through the engine from account `account`;
/// returns the interop case.
fn node_signs(d: &mut EthDemo, id: u8, account: u32, unsigned: Vec<u8>) -> Value {
    let r = d.request(
        [id; 32],
        EthKind::Transaction,
        account,
        unsigned.clone(),
        vec![],
    );
    let o = d.submit(&r, Authority::Ground).unwrap();
    let a = match o {
        Outcome::Approved(a) => a,
        Outcome::Refused(r) => panic!("node refused case {id}: {}", r.refusal),
        Outcome::Replay(_) => panic!("replay"),
    };
    let t = UnsignedTx::decode(&unsigned).unwrap();
    let (back, _) = decode_signed(&a.result.raw_tx).unwrap();
    assert_eq!(back, t);
    json!({
        "raw": hex::encode(&a.result.raw_tx),
        "address": d.address(account).unwrap().to_string(),
        "secret": hex::encode(d.keys.export_secret_for_tests(account).unwrap()),
        "signing_hash": hex::encode(t.signature_hash()),
        "fields": fields(&t),
    })
}

#[test]
fn transactions_signed_by_the_node_verify_and_decode_with_eth_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = EthDemo::new().unwrap();
    let mut cases = Vec::new();
    // Built by us.
    let plain = d.eip1559(addr::VENDOR, ETHER / 10, vec![], 0);
    cases.push(node_signs(&mut d, 1, 0, plain.encoded_for_signing()));
    let token = d.eip1559(
        addr::USDC,
        0,
        encode_erc20(&Erc20Call::Transfer {
            to: addr::VENDOR,
            amount: U256::from(1_234_567u64),
        }),
        1,
    );
    cases.push(node_signs(&mut d, 2, 0, token.encoded_for_signing()));
    let mut with_list = d.eip1559(
        addr::EXCHANGE,
        ETHER / 100,
        selector("deposit()").to_vec(),
        0,
    );
    with_list.access_list = AccessList(vec![AccessListItem {
        address: addr::EXCHANGE,
        storage_keys: vec![B256::repeat_byte(7), B256::ZERO],
    }]);
    cases.push(node_signs(&mut d, 3, 1, with_list.encoded_for_signing()));
    let legacy = d.legacy(addr::EXCHANGE, ETHER / 1000, 0);
    cases.push(node_signs(&mut d, 4, 2, legacy.encoded_for_signing()));

    // Built by eth-account: the node decodes its unsigned payloads.
    let foreign = json!([
        {"type": 2, "chainId": SEPOLIA, "nonce": 7, "gas": 21000, "to": addr::VENDOR.to_string(),
         "value": (ETHER / 20).to_string(), "data": "", "maxFeePerGas": (30 * GWEI).to_string(),
         "maxPriorityFeePerGas": GWEI.to_string(), "accessList": []},
        {"type": 2, "chainId": SEPOLIA, "nonce": 8, "gas": 90000, "to": addr::USDC.to_string(),
         "value": "0", "data": hex::encode(encode_erc20(&Erc20Call::Approve { spender: addr::PERMIT2, amount: U256::MAX })),
         "maxFeePerGas": (2 * GWEI).to_string(), "maxPriorityFeePerGas": "0", "accessList": []},
        {"type": 0, "chainId": MAINNET, "nonce": 1, "gas": 21000, "to": addr::EXCHANGE.to_string(),
         "value": "1", "data": "", "gasPrice": (12 * GWEI).to_string()},
    ]);
    let built = run("build", &write(&dir, "build.json", &foreign));
    for (k, line) in built.lines().enumerate() {
        let unsigned = hex::decode(line).unwrap();
        let case = node_signs(&mut d, 10 + u8::try_from(k).unwrap(), 3, unsigned);
        assert_eq!(case["fields"]["nonce"], foreign[k]["nonce"]);
        cases.push(case);
    }
    assert_eq!(cases.len(), 7);
    let out = run("txs", &write(&dir, "txs.json", &Value::Array(cases)));
    assert_eq!(out, "ok 7");
}

fn safe_case(d: &EthDemo, safe: &Safe, tx: &SafeTx, hash: B256, sig: [u8; 65]) -> Value {
    json!({
        "safe": tx.safe.to_string(),
        "chain_id": tx.chain_id,
        "version": safe.registration.version,
        "to": tx.to.to_string(),
        "value": tx.value.to_string(),
        "data": hex::encode(&tx.data),
        "operation": tx.operation.as_u8(),
        "safe_tx_gas": tx.safe_tx_gas.to_string(),
        "base_gas": tx.base_gas.to_string(),
        "gas_price": tx.gas_price.to_string(),
        "gas_token": tx.gas_token.to_string(),
        "refund_receiver": tx.refund_receiver.to_string(),
        "nonce": tx.nonce.to_string(),
        "hash": hex::encode(hash),
        "signature": hex::encode(sig),
        "owner": d.address(0).unwrap().to_string(),
    })
}

#[test]
fn safe_tx_hashes_and_owner_signatures_match_safe_eth_py_and_eth_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = EthDemo::new().unwrap();
    let secp = Secp256k1::verification_only();
    let mut cases = Vec::new();

    // Through the engine: the registered 1.4.1 and 1.1.1 Safes.
    let batch = encode_multisend(&[
        InnerCall {
            operation: Operation::Call,
            to: addr::VENDOR,
            value: U256::from(ETHER / 10),
            data: Bytes::new(),
        },
        InnerCall {
            operation: Operation::Call,
            to: addr::USDC,
            value: U256::ZERO,
            data: encode_erc20(&Erc20Call::Transfer {
                to: addr::VENDOR,
                amount: U256::from(5u64),
            })
            .into(),
        },
    ]);
    let mut refund = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 1);
    refund.safe_tx_gas = U256::from(45_000);
    refund.base_gas = U256::from(30_000);
    refund.gas_price = U256::from(7 * GWEI);
    refund.refund_receiver = addr::RELAYER;
    let engine_cases = [
        (
            0usize,
            d.safe_tx(0, addr::VENDOR, ETHER / 10, vec![], Operation::Call, 0),
        ),
        (
            0,
            d.safe_tx(
                0,
                addr::MULTISEND_CALL_ONLY,
                0,
                batch,
                Operation::DelegateCall,
                2,
            ),
        ),
        (0, refund),
        (
            1,
            d.safe_tx(
                1,
                addr::EXCHANGE,
                0,
                selector("deposit()").to_vec(),
                Operation::Call,
                0,
            ),
        ),
    ];
    for (k, (i, tx)) in engine_cases.iter().enumerate() {
        let o = d
            .submit(
                &d.safe_request(30 + u8::try_from(k).unwrap(), tx),
                Authority::Ground,
            )
            .unwrap();
        let Outcome::Approved(a) = o else {
            panic!("refused safe case {k}")
        };
        let safe = d.safes[*i].clone();
        cases.push(safe_case(
            &d,
            &safe,
            tx,
            a.result.safe_tx_hash.unwrap(),
            a.result.signature,
        ));
    }

    // Hash and signing functions directly: every version, data, refunds in
    // a token, extreme values, the other chain.
    let stranger = Address::repeat_byte(0x42);
    for (k, (version, chain)) in [
        ("1.0.0", SEPOLIA),
        ("1.2.0", MAINNET),
        ("1.3.0", MAINNET),
        ("1.3.0+L2", 10),
        ("1.4.1", SEPOLIA),
        ("1.5.0", 8453),
    ]
    .into_iter()
    .enumerate()
    {
        let mut reg = d.registration(stranger, version, chain).unwrap();
        reg.address = Address::repeat_byte(0x60 + u8::try_from(k).unwrap());
        let safe = Safe::from_registration(&reg.encode(), &d.keys).unwrap();
        let tx = SafeTx {
            chain_id: chain,
            safe: safe.address(),
            to: addr::USDC,
            value: if k % 2 == 0 { U256::MAX } else { U256::from(k) },
            data: Bytes::from(vec![0xab; 3 + 40 * k]),
            operation: if k == 3 {
                Operation::DelegateCall
            } else {
                Operation::Call
            },
            safe_tx_gas: U256::from(100_000 * k),
            base_gas: U256::from(21_000),
            gas_price: U256::from(u64::MAX),
            gas_token: addr::USDC,
            refund_receiver: addr::RELAYER,
            nonce: U256::from(1_000_000 + k),
        };
        let (hash, sig) = sign_safe_tx(&secp, &d.keys, &safe, &tx).unwrap();
        assert_eq!(hash, safe_tx_hash(&tx, safe.version));
        cases.push(safe_case(&d, &safe, &tx, hash, sig));
    }
    assert_eq!(cases.len(), 10);
    let out = run("safe", &write(&dir, "safe.json", &Value::Array(cases)));
    assert_eq!(out, "ok 10");
}
