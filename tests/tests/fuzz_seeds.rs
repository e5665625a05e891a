//! The fuzz targets' seed corpora (`payload/fuzz/seeds/<target>/`) are real
//! inputs made by the same demo helpers the tests use: PSBTs (v0 and v2),
//! signed policies, administrator commands, sign requests, Ethereum and
//! Safe transactions, header batches and SPV proofs. This test checks that
//! every target listed in `payload/fuzz/Cargo.toml` has seeds; with
//! `SPACENODE_BLESS=1` it (re)writes the generated ones (files named
//! `crash-*` are inputs that once crashed a target and stay as they are).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use alloy_consensus::SignableTransaction;
use bitcoin::consensus::encode::serialize;
use spacenode_btc::psbt_v2;
use spacenode_eth::abi::{self, Erc20Call, InnerCall, Operation};
use spacenode_policy::command::Command;
use spacenode_policy::request::SignedRequest;
use spacenode_testkit::btc::{Demo, DemoWallet};
use spacenode_testkit::eth::{EthDemo, addr};
use spacenode_wire::frame;
use spacenode_wire::pus::Tc;
use spacenode_wire::security::{Cipher, Direction, LinkKey};
use spacenode_wire::services::{apid, service, subtype};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .join("payload/fuzz")
}

/// Target names from `payload/fuzz/Cargo.toml`.
fn targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"'))
        .filter(|n| *n != "spacenode-fuzz")
        .map(str::to_string)
        .collect()
}

/// The generated seeds: (target, file name, bytes).
fn generated() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |t: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((t, name.to_string(), bytes));
    };

    // Bitcoin: the demo wallet's PSBTs, requests, policy, chain and proofs.
    for (kind, tag) in [
        (DemoWallet::WshSortedMulti, "wsh"),
        (DemoWallet::TrMultiA, "tr"),
    ] {
        let demo = Demo::new(kind, 3, 50_000_000, 6).unwrap();
        let dest = demo.destination().unwrap();
        for (inputs, name) in [(&[0usize][..], "one"), (&[0, 1, 2][..], "three")] {
            let psbt = demo
                .psbt(inputs, dest.clone(), 10_000_000, 2_000, 0)
                .unwrap();
            let v0 = psbt.serialize();
            let v2 = psbt_v2::to_v2(&psbt);
            add("psbt", &format!("{tag}-{name}-v0"), v0.clone());
            add("psbt", &format!("{tag}-{name}-v2"), v2);
            let request = demo.request([1; 32], v0, demo.proofs(inputs));
            add(
                "sign_request",
                &format!("btc-{tag}-{name}"),
                request.clone(),
            );
            let body = SignedRequest::decode(&request).unwrap().body;
            add("sign_request", &format!("btc-{tag}-{name}-body"), body);
        }
        let tip = demo.regtest.tip_height();
        add(
            "header_batch",
            &format!("regtest-{tag}-1-{tip}"),
            demo.regtest.batch(1, tip).unwrap().encode().unwrap(),
        );
        let funding = serialize(&demo.utxos[0].funding);
        let mut branch = Vec::new();
        for p in demo.proofs(&[0]) {
            branch = p.proof;
        }
        let txout = demo.regtest.txoutproof(2, &[1]).unwrap();
        for (name, proof) in [("branch", branch), ("txoutproof", txout)] {
            let mut seed = u16::try_from(proof.len()).unwrap().to_be_bytes().to_vec();
            seed.extend_from_slice(&proof);
            seed.extend_from_slice(&funding);
            add("spv_proof", &format!("{tag}-{name}"), seed);
        }
    }
    let demo = Demo::new(DemoWallet::WshRecovery, 1, 50_000_000, 1).unwrap();
    let doc = spacenode_testkit::btc::demo_policy(&demo.admins, &demo.approver, 1).unwrap();
    let signed =
        spacenode_testkit::btc::sign_policy(&demo.secp, &demo.admins, &doc.encode(), &[0, 1]);
    add("policy_document", "btc-document", doc.encode());
    add("policy_document", "btc-signed", signed.encode());

    // Ethereum: transactions, Safe transactions, commands, requests.
    let eth = EthDemo::new().unwrap();
    let deposit = abi::encode_words("deposit()", &[]);
    let tx = eth.eip1559(addr::EXCHANGE, 10_u128.pow(17), deposit, 0);
    let erc20 = abi::encode_erc20(&Erc20Call::Transfer {
        to: addr::EXCHANGE,
        amount: alloy_primitives::U256::from(1_000_000u64),
    });
    let token_tx = eth.eip1559(addr::USDC, 0, erc20, 1);
    let legacy = eth.legacy(addr::EXCHANGE, 10_u128.pow(16), 2);
    for (name, bytes) in [
        ("eip1559", tx.encoded_for_signing()),
        ("erc20", token_tx.encoded_for_signing()),
        ("legacy", legacy.encoded_for_signing()),
    ] {
        // First byte: the account.
        let mut seed = vec![0u8];
        seed.extend_from_slice(&bytes);
        add("eth_tx", name, seed);
    }
    let request = eth.tx_request(3, 0, &tx);
    add("sign_request", "eth-tx", request.clone());
    let multisend = abi::encode_multisend(&[
        InnerCall {
            operation: Operation::Call,
            to: addr::EXCHANGE,
            value: alloy_primitives::U256::from(1u64),
            data: alloy_primitives::Bytes::new(),
        },
        InnerCall {
            operation: Operation::Call,
            to: addr::USDC,
            value: alloy_primitives::U256::ZERO,
            data: alloy_primitives::Bytes::from(abi::encode_erc20(&Erc20Call::Transfer {
                to: addr::EXCHANGE,
                amount: alloy_primitives::U256::from(5u64),
            })),
        },
    ]);
    let plain = eth.safe_tx(
        0,
        addr::EXCHANGE,
        10_u128.pow(16),
        vec![],
        Operation::Call,
        0,
    );
    let batched = eth.safe_tx(
        0,
        addr::MULTISEND_CALL_ONLY,
        0,
        multisend.clone(),
        Operation::DelegateCall,
        1,
    );
    add("safe_tx", "plain", plain.encode());
    add("safe_tx", "multisend", batched.encode());
    add("safe_tx", "multisend-calldata", multisend);
    let safe_request = eth.safe_request(4, &plain);
    add("sign_request", "eth-safe", safe_request.clone());
    let command = eth.admin_command(&safe_request, 1, &[0, 1]).unwrap();
    add("admin_command", "safe-admin-tx", command.clone());
    let inner = spacenode_policy::command::SignedCommand::decode(&command)
        .unwrap()
        .command;
    assert!(Command::decode(&inner).is_ok());
    add("admin_command", "command-body", inner);
    // The link: a sealed, framed ping and the TC inside it.
    let tc = Tc::new(apid::CORE, 1, service::TEST, subtype::PING, vec![]);
    let plain = tc.encode().unwrap();
    let cipher = Cipher::new(1, &LinkKey::new([7; 32]));
    // Sequence 6: the uplink_packet target seals the input itself under
    // this key at 5 and expects that accepted, so a seed at 5 would be its
    // own replay.
    let envelope = cipher.seal(Direction::Uplink, 6, &plain).unwrap();
    add("frame_decoder", "ping", frame::encode(&envelope).unwrap());
    add("uplink_packet", "ping-tc", plain);
    add("uplink_packet", "ping-envelope", envelope);
    out
}

#[test]
fn every_fuzz_target_has_real_seeds() {
    let seeds = fuzz_dir().join("seeds");
    if std::env::var_os("SPACENODE_BLESS").is_some() {
        for (target, name, bytes) in generated() {
            let dir = seeds.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut missing = Vec::new();
    for target in targets() {
        let n = std::fs::read_dir(seeds.join(&target)).map_or(0, Iterator::count);
        if n == 0 {
            missing.push(target);
        }
    }
    assert!(
        missing.is_empty(),
        "fuzz targets without seeds in payload/fuzz/seeds/: {missing:?} (generate them with \
         `SPACENODE_BLESS=1 cargo nextest run -p spacenode-system-tests --test fuzz_seeds`)"
    );
}
