//! Ethereum and Safe co-signing through the real daemon and link: the node
//! (soft key store) behind the link emulator, a quorum-signed policy with
//! Ethereum rules, two Safes registered by the administrator quorum
//! (`policy.register-safe`), requests built and approved by the ground
//! library and the `ground` binary.
//!
//! - an EIP-1559 and a legacy transaction signed by the node recover to the
//!   node's address and decode to what was asked with eth-account;
//! - SafeTx hashes (with data and refund parameters, both EIP-712 domain
//!   variants) equal safe-eth-py's and eth-account's, and the node's owner
//!   signatures recover to its address;
//! - a retry returns the identical signature (also the same transaction
//!   under a new request id);
//! - refusals through the daemon with their reason codes and rule tags:
//!   wrong chain id, DELEGATECALL, approve to an unknown spender, value over
//!   the cap, velocity exceeded, nonce reuse with different content,
//!   malformed RLP, a Safe self-call without the quorum (approved with a
//!   `SAFE_ADMIN_TX` command), safe mode;
//! - `ground eth sign`, `ground safe sign --dry-run`, `ground eth address`
//!   and `--help` of every new command; the audit log verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Instant;

use alloy_primitives::{Address, U256};
use serde_json::{Value, json};
use spacenode_eth::abi::{Erc20Call, Operation, encode_erc20, encode_words};
use spacenode_eth::engine::EthResult;
use spacenode_eth::safe::{SafeTx, SafeVersion};
use spacenode_ground::admin;
use spacenode_ground::eth::{self as geth, EthOutcome};
use spacenode_policy::audit::Decision;
use spacenode_policy::command::kind;
use spacenode_policy::request::EthKind;
use spacenode_system_tests::eth::{
    ETHER, EthWorld, GWEI, MAINNET, SEPOLIA, eip1559, legacy, python_check, safe_tx, unsigned,
};
use spacenode_system_tests::mode_status;
use spacenode_testkit::eth::addr;
use spacenode_wire::ReasonCode;
use spacenode_wire::services::{apid, service, subtype};

fn approved(o: &EthOutcome, what: &str) -> EthResult {
    match (&o.result, &o.refused) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => panic!("{what} refused: {r}"),
        (None, None) => panic!("{what}: no answer"),
    }
}

/// Asserts a refusal with `code` and `rule`, and its audit entry.
fn refused(o: &EthOutcome, code: u16, rule: &str, what: &str) {
    let r = o
        .refused
        .as_ref()
        .unwrap_or_else(|| panic!("{what} was approved: {:?}", o.result));
    assert_eq!(r.code, ReasonCode(code), "{what}: {r}");
    assert_eq!(r.rule.as_deref(), Some(rule), "{what}: {r}");
    let a = o.audit.as_ref().expect("refusal audited");
    assert_eq!(
        (a.entry.decision, a.entry.code),
        (Decision::Refused, code),
        "{what}"
    );
    println!("refused as expected: {what}: {r}");
}

fn tx_case(
    r: &EthResult,
    node: Address,
    ty: u8,
    chain: u64,
    nonce: u64,
    to: Address,
    value: u128,
) -> Value {
    json!({
        "raw": hex::encode(&r.raw_tx),
        "address": node.to_string(),
        "type": ty,
        "chain_id": chain,
        "nonce": nonce,
        "to": to.to_string(),
        "value": value.to_string(),
    })
}

fn safe_case(tx: &SafeTx, version: &str, r: &EthResult, owner: Address) -> Value {
    json!({
        "safe": tx.safe.to_string(),
        "chain_id": tx.chain_id,
        "version": version,
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
        "hash": hex::encode(r.safe_tx_hash.expect("SafeTx hash")),
        "signature": hex::encode(r.signature),
        "owner": owner.to_string(),
    })
}

#[test]
fn ethereum_and_safe_requests_through_the_daemon() {
    let started = Instant::now();
    let ew = EthWorld::start(3 * ETHER, "[health]\nrefusal_burst = 0\n");
    println!("world up in {:.1?}", started.elapsed());
    let node = ew.node_address;
    let dir = tempfile::tempdir().unwrap();
    let mut link = ew.link();

    // 1. An EIP-1559 and a legacy transaction.
    let t1 = eip1559(addr::VENDOR, ETHER / 10, vec![], 0);
    let req1 = ew.tx_request([1; 32], 0, unsigned(&t1));
    let o = ew.sign(&mut link, &req1, None).unwrap();
    let r1 = approved(&o, "EIP-1559 transfer");
    assert_eq!(o.audit.as_ref().unwrap().entry.decision, Decision::Approved);
    assert_eq!((r1.kind, r1.chain_id), (EthKind::Transaction, SEPOLIA));
    print!(
        "{}",
        geth::check_result(&r1, Some(&unsigned(&t1)), Some(node)).unwrap()
    );
    let t2 = legacy(addr::EXCHANGE, ETHER / 100, 0);
    let o = ew
        .sign(&mut link, &ew.tx_request([2; 32], 0, unsigned(&t2)), None)
        .unwrap();
    let r2 = approved(&o, "legacy transfer");
    assert_eq!(r2.chain_id, MAINNET);
    geth::check_result(&r2, Some(&unsigned(&t2)), Some(node)).unwrap();
    let out = python_check(
        dir.path(),
        "txs",
        &json!([
            tx_case(&r1, node, 2, SEPOLIA, 0, addr::VENDOR, ETHER / 10),
            tx_case(&r2, node, 0, MAINNET, 0, addr::EXCHANGE, ETHER / 100),
        ]),
    );
    assert_eq!(out, "ok 2", "eth-account recovers the node's address");

    // 2. A retry returns the identical signature; the same transaction
    //    under a new id returns the stored one.
    let o = ew.sign(&mut link, &req1, None).unwrap();
    let again = approved(&o, "retry");
    assert_eq!(again, r1, "a retry returns the same signed transaction");
    assert_eq!(o.audit.unwrap().entry.decision, Decision::Replayed);
    let o = ew
        .sign(&mut link, &ew.tx_request([3; 32], 0, unsigned(&t1)), None)
        .unwrap();
    assert_eq!(approved(&o, "same tx, new id").signature, r1.signature);

    // 3. Safe owner signatures: 1.4.1 plain, 1.1.1 with an ERC-20 transfer
    //    and refund parameters (the relayer is allowlisted).
    let s1 = safe_tx(
        addr::SAFE,
        addr::VENDOR,
        ETHER / 5,
        vec![],
        Operation::Call,
        0,
    );
    let req4 = ew.safe_request([4; 32], &s1);
    let o = ew.sign(&mut link, &req4, None).unwrap();
    let rs1 = approved(&o, "Safe 1.4.1 signature");
    let mut s2 = safe_tx(
        addr::SAFE_LEGACY,
        addr::USDC,
        0,
        encode_erc20(&Erc20Call::Transfer {
            to: addr::VENDOR,
            amount: U256::from(1_000_000u64),
        }),
        Operation::Call,
        0,
    );
    s2.safe_tx_gas = U256::from(60_000u64);
    s2.base_gas = U256::from(50_000u64);
    s2.gas_price = U256::from(10 * GWEI);
    s2.refund_receiver = addr::RELAYER;
    let o = ew
        .sign(&mut link, &ew.safe_request([5; 32], &s2), None)
        .unwrap();
    let rs2 = approved(&o, "Safe 1.1.1 signature with refund");
    for (tx, r, v) in [(&s1, &rs1, "1.4.1"), (&s2, &rs2, "1.1.1")] {
        assert_eq!(
            r.safe_tx_hash,
            Some(geth::safe_hash(tx, SafeVersion::parse(v).unwrap()))
        );
        geth::check_result(r, None, Some(node)).unwrap();
    }
    let out = python_check(
        dir.path(),
        "safe",
        &json!([
            safe_case(&s1, "1.4.1", &rs1, node),
            safe_case(&s2, "1.1.1", &rs2, node),
        ]),
    );
    assert_eq!(out, "ok 2", "safe-eth-py and eth-account agree");
    let o = ew.sign(&mut link, &req4, None).unwrap();
    assert_eq!(approved(&o, "Safe retry").signature, rs1.signature);

    // 4. Refusals with their reason codes.
    let mut wrong_chain = eip1559(addr::VENDOR, 1, vec![], 1);
    wrong_chain.chain_id = 5;
    let o = ew
        .sign(
            &mut link,
            &ew.tx_request([10; 32], 0, unsigned(&wrong_chain)),
            None,
        )
        .unwrap();
    refused(&o, 0x0710, "eth-chain-id", "wrong chain id");
    let dc = safe_tx(
        addr::SAFE,
        addr::VENDOR,
        0,
        vec![],
        Operation::DelegateCall,
        1,
    );
    let o = ew
        .sign(&mut link, &ew.safe_request([11; 32], &dc), None)
        .unwrap();
    refused(&o, 0x0720, "eth-delegatecall", "DELEGATECALL");
    let approve = eip1559(
        addr::USDC,
        0,
        encode_erc20(&Erc20Call::Approve {
            spender: addr::STRANGER,
            amount: U256::from(1u8),
        }),
        1,
    );
    let o = ew
        .sign(
            &mut link,
            &ew.tx_request([12; 32], 0, unsigned(&approve)),
            None,
        )
        .unwrap();
    refused(&o, 0x071B, "eth-spender", "approve to an unknown spender");
    let over = eip1559(addr::VENDOR, 2 * ETHER, vec![], 1);
    let o = ew
        .sign(
            &mut link,
            &ew.tx_request([13; 32], 0, unsigned(&over)),
            None,
        )
        .unwrap();
    refused(&o, 0x0717, "eth-value-cap", "value over the cap");
    let reuse = eip1559(addr::VENDOR, ETHER / 20, vec![], 0);
    let o = ew
        .sign(
            &mut link,
            &ew.tx_request([14; 32], 0, unsigned(&reuse)),
            None,
        )
        .unwrap();
    refused(
        &o,
        0x0722,
        "eth-nonce-reuse",
        "nonce reuse with different content",
    );
    for (i, bad) in [vec![0x02, 0xC3, 0x01, 0x02], vec![0xFF; 40], vec![0x02]]
        .into_iter()
        .enumerate()
    {
        let o = ew
            .sign(
                &mut link,
                &ew.tx_request([15 + i as u8; 32], 0, bad.clone()),
                None,
            )
            .unwrap();
        let r = o.refused.as_ref().expect("malformed refused");
        assert!(
            (0x0701..=0x0707).contains(&r.code.0),
            "malformed {}: {r}",
            hex::encode(&bad)
        );
        assert_eq!(r.rule.as_deref(), Some("eth-malformed"), "{r}");
        println!(
            "refused as expected: malformed RLP {}: {r}",
            hex::encode(&bad)
        );
    }
    // A Safe call to itself: refused from the ground, approved with the
    // administrator quorum's SAFE_ADMIN_TX over the request.
    let self_call = safe_tx(
        addr::SAFE,
        addr::SAFE,
        0,
        encode_words(
            "changeThreshold(uint256)",
            &[U256::from(2u8).to_be_bytes::<32>()],
        ),
        Operation::Call,
        1,
    );
    let req = ew.safe_request([20; 32], &self_call);
    let o = ew.sign(&mut link, &req, None).unwrap();
    refused(
        &o,
        0x0732,
        "safe-self-call",
        "Safe self-call without the quorum",
    );
    let st = mode_status(&mut link, ew.w.policy());
    let cmd = ew.admin_command(&req, st.admin_seq + 1);
    let o = ew.sign(&mut link, &req, Some(&cmd)).unwrap();
    let r = approved(&o, "Safe self-call with SAFE_ADMIN_TX");
    geth::check_result(&r, None, Some(node)).unwrap();
    assert_eq!(
        mode_status(&mut link, ew.w.policy()).admin_seq,
        st.admin_seq + 1
    );
    // The same command again (its sequence is spent) on another request.
    let other = ew.safe_request(
        [21; 32],
        &safe_tx(
            addr::SAFE,
            addr::SAFE,
            0,
            encode_words(
                "changeThreshold(uint256)",
                &[U256::from(1u8).to_be_bytes::<32>()],
            ),
            Operation::Call,
            2,
        ),
    );
    let o = ew.sign(&mut link, &other, Some(&cmd)).unwrap();
    refused(
        &o,
        0x0737,
        "safe-self-call",
        "a spent SAFE_ADMIN_TX command",
    );

    // 5. The CLI: help, a dry run, the node's address, a signed transaction.
    drop(link);
    for cmd in [
        &["eth", "--help"][..],
        &["eth", "sign", "--help"],
        &["eth", "address", "--help"],
        &["safe", "--help"],
        &["safe", "sign", "--help"],
        &["safe", "register", "--help"],
    ] {
        let (ok, text) = ew.w.ground(cmd);
        assert!(ok && text.contains("Usage"), "{cmd:?}: {text}");
    }
    let (ok, text) = ew.w.ground(&["eth", "address"]);
    assert!(ok && text.contains(&node.to_string()), "{text}");
    let approver = format!("{}:0", ew.w.approver.0.display());
    let (ok, text) = ew.w.ground(&[
        "eth",
        "sign",
        "--chain-id",
        "11155111",
        "--nonce",
        "1",
        "--to",
        &addr::USDC.to_string(),
        "--data",
        &hex::encode(encode_erc20(&Erc20Call::Transfer {
            to: addr::VENDOR,
            amount: U256::from(2_500_000u64),
        })),
        "--gas-limit",
        "90000",
        "--max-fee",
        "30 gwei",
        "--approver",
        &approver,
    ]);
    assert!(ok, "{text}");
    for needle in [
        "transaction    EIP-1559 (type 2)",
        "chain          11155111 (Sepolia)",
        "nonce          1",
        "ERC-20         transfer of 2500000 base units of token",
        "receipt verified",
        "APPROVED: the node signed the transaction",
        &format!("signed by      {node}"),
        "signed raw transaction",
    ] {
        assert!(
            text.contains(needle),
            "ground eth sign lacks {needle:?}:\n{text}"
        );
    }
    let raw = text
        .lines()
        .find(|l| l.starts_with("0x02"))
        .expect("raw tx line");
    let (tx, _) = spacenode_eth::tx::decode_signed(&geth::parse_hex(raw).unwrap()).unwrap();
    assert_eq!(tx.nonce(), 1);
    println!("{text}");
    let batch = spacenode_eth::abi::encode_multisend(&[spacenode_eth::abi::InnerCall {
        operation: Operation::Call,
        to: addr::VENDOR,
        value: U256::from(ETHER / 2),
        data: Default::default(),
    }]);
    let (ok, text) = ew.w.ground(&[
        "safe",
        "sign",
        "--dry-run",
        "--chain-id",
        "11155111",
        "--safe",
        &addr::SAFE.to_string(),
        "--safe-version",
        "1.4.1",
        "--to",
        &addr::MULTISEND_CALL_ONLY.to_string(),
        "--operation",
        "delegatecall",
        "--data",
        &hex::encode(batch),
        "--nonce",
        "3",
    ]);
    assert!(ok, "{text}");
    for needle in [
        "DELEGATECALL",
        "MultiSend      batch of 1 call(s)",
        "#0 CALL to",
        "0.5 ETH",
        "SafeTx hash",
    ] {
        assert!(
            text.contains(needle),
            "ground safe sign --dry-run lacks {needle:?}:\n{text}"
        );
    }

    let (ok, text) = ew.w.ground(&[
        "safe",
        "sign",
        "--chain-id",
        "11155111",
        "--safe",
        &addr::SAFE.to_string(),
        "--safe-version",
        "1.4.1",
        "--to",
        &addr::VENDOR.to_string(),
        "--value",
        "0.01 ether",
        "--nonce",
        "3",
        "--approver",
        &approver,
    ]);
    assert!(ok, "{text}");
    for needle in [
        "value          0.01 ETH",
        "operation      CALL",
        "SafeTx hash",
        "receipt verified",
        &format!("owner          {node}"),
        "APPROVED: the node signed the SafeTx as an owner",
    ] {
        assert!(
            text.contains(needle),
            "ground safe sign lacks {needle:?}:\n{text}"
        );
    }
    println!("{text}");

    let owners = format!(
        "{},{node},{}",
        ew.ground[0].address(0).unwrap(),
        ew.ground[1].address(0).unwrap()
    );
    let keys: Vec<String> = [0usize, 1]
        .iter()
        .map(|&i| format!("{}:{i}", ew.w.admins[i].0.display()))
        .collect();
    let safe130 = "0x5afe5afe5afe5afe5afe5afe5afe5afe5afe0130";
    let (ok, text) = ew.w.ground(&[
        "safe",
        "register",
        "--label",
        "ops 1.3.0",
        "--chain-id",
        "11155111",
        "--safe",
        safe130,
        "--safe-version",
        "1.3.0",
        "--owner",
        &owners,
        "--threshold",
        "2",
        "--key",
        &keys[0],
        "--key",
        &keys[1],
    ]);
    assert!(ok && text.contains("Safe registered on the node"), "{text}");
    let (ok, text) = ew.w.ground(&[
        "safe",
        "register",
        "--chain-id",
        "11155111",
        "--safe",
        "0x5afe5afe5afe5afe5afe5afe5afe5afe5afe0131",
        "--safe-version",
        "1.3.0",
        "--owner",
        &owners.replace(&node.to_string(), &Address::repeat_byte(9).to_string()),
        "--threshold",
        "2",
        "--key",
        &keys[0],
        "--key",
        &keys[1],
    ]);
    assert!(
        !ok && text.contains("0x0736"),
        "a Safe without the node: {text}"
    );

    // 6. Velocity: 0.9 ETH transfers until the daily 3 ETH cap refuses.
    let mut link = ew.link();
    let mut spent_extra = 0u128;
    let mut velocity_refused = false;
    for n in 2..8u64 {
        let t = eip1559(addr::VENDOR, ETHER / 10 * 9, vec![], n);
        let o = ew
            .sign(
                &mut link,
                &ew.tx_request([30 + n as u8; 32], 0, unsigned(&t)),
                None,
            )
            .unwrap();
        if o.result.is_some() {
            spent_extra += ETHER / 10 * 9;
            continue;
        }
        refused(&o, 0x0718, "eth-velocity", "velocity exceeded");
        velocity_refused = true;
        break;
    }
    assert!(velocity_refused, "the cap refused after {spent_extra} wei");
    // Before: 0.1 + fee, 0.2 and 0.01 (Safe), refund bound; at most 3 ETH.
    let fee = 21_000 * 40 * GWEI;
    assert!(ETHER / 10 + fee + ETHER / 5 + spent_extra <= 3 * ETHER);

    // 7. Safe mode refuses before evaluation; the quorum exit restores.
    let policy = ew.w.policy();
    let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_ENTER_SAFE, vec![]);
    link.request(&tc, policy).unwrap();
    let t = eip1559(addr::VENDOR, 1, vec![], 20);
    let o = ew
        .sign(&mut link, &ew.tx_request([50; 32], 0, unsigned(&t)), None)
        .unwrap();
    let r = o.refused.expect("refused in safe mode");
    assert_eq!(r.code, ReasonCode::MODE_FORBIDS, "{r}");
    assert!(o.audit.is_none(), "refused before evaluation");
    let st = mode_status(&mut link, policy);
    let mut exit = admin::build(
        kind::EXIT_SAFE_MODE,
        st.node_id,
        st.admin_seq + 1,
        0,
        i64::MAX,
        vec![],
    );
    admin::sign(&mut exit, &ew.w.admins[1].1, 1).unwrap();
    admin::sign(&mut exit, &ew.w.admins[2].1, 2).unwrap();
    let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_EXIT, exit.encode());
    link.request(&tc, policy).unwrap();
    drop(link);

    // 8. The audit log verifies; the database holds what was signed.
    let (ok, text) = ew.w.ground(&[
        "audit",
        "verify",
        "--receipt-key",
        &ew.w.receipt_key.to_string(),
    ]);
    assert!(ok && text.contains("audit log VERIFIED"), "{text}");
    println!("{}", text.trim());
    let db = rusqlite::Connection::open_with_flags(
        ew.w.fx.state_dir.join("spacenode.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let extra = i64::try_from(spent_extra / (ETHER / 10 * 9)).unwrap();
    // Sepolia nonces 0, 1 (CLI) and the velocity run; mainnet nonce 0.
    assert_eq!(count("SELECT count(*) FROM eth_nonces"), 3 + extra);
    // Safe 1.4.1 nonces 0, 1 (self-call) and 3 (CLI), Safe 1.1.1 nonce 0.
    assert_eq!(
        count("SELECT count(*) FROM safe_nonces WHERE signature IS NOT NULL"),
        4
    );
    assert_eq!(count("SELECT count(*) FROM safes"), 3);
    println!("done in {:.1?}", started.elapsed());
}

/// A Safe retired by an administrator quorum is refused as unregistered
/// (0x0730); the other Safe still signs; a second retirement is refused with
/// 0x0566. The retirement takes the offline path an operator of a real
/// quorum takes: `ground admin command retire-safe`, `ground admin sign` by
/// each administrator, `ground safe retire --command`.
#[test]
fn a_retired_safe_is_refused() {
    let ew = EthWorld::start(3 * ETHER, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retire.cmd");
    let file = file.to_str().unwrap();
    let mut link = ew.link();
    let st = mode_status(&mut link, ew.w.policy());
    drop(link);
    let mut body = SEPOLIA.to_be_bytes().to_vec();
    body.extend_from_slice(addr::SAFE.as_slice());
    let (ok, text) = ew.w.ground(&[
        "admin",
        "command",
        "retire-safe",
        "--node-id",
        &hex::encode(st.node_id),
        "--seq",
        &(st.admin_seq + 1).to_string(),
        "--body-hex",
        &hex::encode(&body),
        "--out",
        file,
    ]);
    assert!(ok, "{text}");
    for i in [0usize, 1] {
        let key = ew.w.admins[i].0.to_str().unwrap().to_owned();
        let (ok, text) = ew.w.ground(&[
            "admin",
            "sign",
            "--key",
            &key,
            "--signer",
            &i.to_string(),
            "--command",
            file,
        ]);
        assert!(ok, "{text}");
    }
    let (ok, text) = ew.w.ground(&["safe", "retire", "--command", file]);
    assert!(ok, "{text}");
    assert!(text.contains("(1 wallet(s), 1 Safe(s)"), "{text}");
    println!("{}", text.trim());

    let mut link = ew.link();
    let tx = safe_tx(
        addr::SAFE,
        addr::VENDOR,
        ETHER / 5,
        vec![],
        Operation::Call,
        0,
    );
    let o = ew
        .sign(&mut link, &ew.safe_request([41; 32], &tx), None)
        .unwrap();
    refused(&o, 0x0730, "safe-unregistered", "a retired Safe");
    let other = safe_tx(
        addr::SAFE_LEGACY,
        addr::VENDOR,
        ETHER / 5,
        vec![],
        Operation::Call,
        0,
    );
    let o = ew
        .sign(&mut link, &ew.safe_request([42; 32], &other), None)
        .unwrap();
    approved(&o, "the Safe still registered");
    drop(link);
    let k0 = format!("{}:0", ew.w.admins[0].0.display());
    let k1 = format!("{}:1", ew.w.admins[1].0.display());
    let safe = format!("{}", addr::SAFE);
    let chain = SEPOLIA.to_string();
    let (ok, text) = ew.w.ground(&[
        "safe",
        "retire",
        "--chain-id",
        &chain,
        "--safe",
        &safe,
        "--key",
        &k0,
        "--key",
        &k1,
    ]);
    assert!(!ok && text.contains("0x0566"), "{text}");
}
