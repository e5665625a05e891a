//! The Ethereum signing crash test: kill -9 of the real daemon at random
//! points (during start, between requests, while a request is evaluated,
//! while its decision is committed, while the answer goes down) during a
//! stream of Ethereum requests: transactions at fresh nonces, Safe owner
//! signatures at fresh Safe nonces, retries of earlier requests, and
//! conflicting content at nonces already requested. The daemon is
//! restarted after each kill. At the end:
//!
//! - no (chain, account, nonce) was signed for two different transactions
//!   and no (Safe, nonce) for two different SafeTx hashes (what the ground
//!   received, and what the node stored);
//! - a request id never got two different answers;
//! - the velocity cap was never exceeded (received approvals and stored
//!   velocity rows), and it was reached (a velocity refusal happened);
//! - every signature the ground received has its nonce row stored
//!   (nothing left the node before its commit);
//! - the audit log verifies with receipts (`ground audit verify`).
//!
//! 80 kills by default (`SPACENODE_ETH_CRASH_KILLS`), about 50 s on two
//! cores; `SPACENODE_CRASH_SEED` reproduces a request stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use rand::{Rng, SeedableRng};
use spacenode_eth::abi::Operation;
use spacenode_eth::engine::EthResult;
use spacenode_eth::safe::SafeVersion;
use spacenode_ground::client::RetryPolicy;
use spacenode_ground::eth as geth;
use spacenode_system_tests::Node;
use spacenode_system_tests::eth::{ETHER, EthWorld, GWEI, eip1559, safe_tx, unsigned};
use spacenode_testkit::eth::addr;
use spacenode_wire::services::{apid, service, subtype};

const KILLS: usize = 80;
/// Transactions (account 0, nonces 0..) and Safe transactions (Safe
/// 1.4.1, nonces 0..) in the stream.
const TXS: u64 = 100;
const SAFE_TXS: u64 = 100;
/// Daily Sepolia cap: 0.02 ETH per transaction (plus its 0.00084 ETH
/// maximum fee) and 0.015 ETH per Safe transaction fill it after about
/// 160 approvals, so kills land on approvals all along the stream.
const CAP: u128 = 3 * ETHER;
const TX_VALUE: u128 = ETHER / 50;
const TX_FEE: u128 = 21_000 * 40 * GWEI;
const SAFE_VALUE: u128 = ETHER / 1000 * 15;

/// Which nonce a request is at, and what it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Account(u64),
    Safe(u64),
}

struct Req {
    bytes: Vec<u8>,
    slot: Slot,
    /// Native coin counted by velocity if approved.
    native: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Approved {
        signature: Vec<u8>,
        raw: Vec<u8>,
        hash: Option<B256>,
    },
    Refused(u16),
}

fn answer(r: &EthResult) -> Answer {
    Answer::Approved {
        signature: r.signature.to_vec(),
        raw: r.raw_tx.clone(),
        hash: r.safe_tx_hash,
    }
}

#[test]
fn kills_during_an_ethereum_stream_never_double_sign_or_exceed_velocity() {
    let seed: u64 = std::env::var("SPACENODE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (SPACENODE_CRASH_SEED reproduces the request stream)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut ew = EthWorld::start(
        CAP,
        "[health]\nboot_loop_starts = 100000\nrefusal_burst = 0\n",
    );
    println!("world up in {:.1?}", started.elapsed());
    let patient = ew.w.policy();
    let quick = RetryPolicy {
        attempts: 1,
        first_timeout: Duration::from_millis(400),
        min_timeout: Duration::from_millis(400),
        max_timeout: Duration::from_millis(400),
    };

    // Fresh requests, and a conflicting one at each nonce.
    let mut fresh: Vec<Req> = Vec::new();
    let mut conflicts: Vec<Req> = Vec::new();
    for n in 0..TXS {
        for (list, value) in [(&mut fresh, TX_VALUE), (&mut conflicts, TX_VALUE - 1)] {
            let t = eip1559(addr::VENDOR, value, vec![], n);
            list.push(Req {
                bytes: ew.tx_request(rand::random(), 0, unsigned(&t)),
                slot: Slot::Account(n),
                native: value + TX_FEE,
            });
        }
    }
    for n in 0..SAFE_TXS {
        for (list, value) in [(&mut fresh, SAFE_VALUE), (&mut conflicts, SAFE_VALUE - 1)] {
            let s = safe_tx(addr::SAFE, addr::VENDOR, value, vec![], Operation::Call, n);
            list.push(Req {
                bytes: ew.safe_request(rand::random(), &s),
                slot: Slot::Safe(n),
                native: value,
            });
        }
    }
    // Interleave accounts and Safes in the fresh order.
    fresh.sort_by_key(|r| match r.slot {
        Slot::Account(n) => 2 * n,
        Slot::Safe(n) => 2 * n + 1,
    });
    conflicts.sort_by_key(|r| match r.slot {
        Slot::Account(n) => 2 * n,
        Slot::Safe(n) => 2 * n + 1,
    });
    let all: Vec<&Req> = fresh.iter().chain(conflicts.iter()).collect();
    let mut answers: BTreeMap<usize, Vec<Answer>> = BTreeMap::new();
    let mut sent: Vec<usize> = Vec::new();
    let mut next_fresh = 0usize;
    let (mut requests, mut unanswered, mut startup_kills) = (0usize, 0usize, 0usize);
    let mut link = ew.link();
    let record = |answers: &mut BTreeMap<usize, Vec<Answer>>, k: usize, o: &geth::EthOutcome| {
        let a = match (&o.result, &o.refused) {
            (Some(r), _) => answer(r),
            (None, Some(r)) => Answer::Refused(r.code.0),
            (None, None) => return,
        };
        answers.entry(k).or_default().push(a);
    };

    let kills: usize = std::env::var("SPACENODE_ETH_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    let stream_started = Instant::now();
    for kill in 0..kills {
        ew.w.node.take().unwrap().kill9();
        if rng.random_bool(0.1) {
            let mut n = Node::spawn(&ew.w.fx);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
            n.kill9();
            startup_kills += 1;
            ew.w.node = Some(Node::start(&ew.w.fx));
            continue;
        }
        ew.w.node = Some(Node::start(&ew.w.fx));
        let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
        link.request(&tc, patient).unwrap();
        let pid = ew.w.node.as_ref().unwrap().pid();
        let dead = Arc::new(AtomicBool::new(false));
        let d = dead.clone();
        let delay = Duration::from_millis(rng.random_range(0..300));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            d.store(true, Ordering::SeqCst);
        });
        while !dead.load(Ordering::SeqCst) {
            let roll: f64 = rng.random();
            let k = if (roll < 0.6 || sent.is_empty()) && next_fresh < fresh.len() {
                next_fresh += 1;
                next_fresh - 1
            } else if roll < 0.8 && !sent.is_empty() {
                sent[rng.random_range(0..sent.len())]
            } else {
                fresh.len() + rng.random_range(0..next_fresh.max(1))
            };
            if !sent.contains(&k) {
                sent.push(k);
            }
            requests += 1;
            match geth::sign(&mut link, quick, &all[k].bytes, None, &mut |_| {}) {
                Ok(o) => record(&mut answers, k, &o),
                Err(_) => unanswered += 1,
            }
        }
        killer.join().unwrap();
        if kill % 20 == 19 {
            println!(
                "{} kills, {requests} requests ({unanswered} unanswered), {:.0?}",
                kill + 1,
                stream_started.elapsed()
            );
        }
    }
    // A clean start: the final answer of every request sent.
    ew.w.node.take().unwrap().kill9();
    ew.w.node = Some(Node::start(&ew.w.fx));
    let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
    link.request(&tc, patient).unwrap();
    for &k in &sent {
        let o = geth::sign(&mut link, patient, &all[k].bytes, None, &mut |_| {}).unwrap();
        record(&mut answers, k, &o);
    }
    drop(link);
    let stream = stream_started.elapsed();

    // 1. One answer per request id; an approved request stays approved
    //    with identical bytes.
    let mut by_slot: BTreeMap<Slot, BTreeSet<Answer>> = BTreeMap::new();
    let mut approved_native = 0u128;
    let mut approved_requests = 0usize;
    let mut velocity_refusals = 0usize;
    for (k, list) in &answers {
        let approvals: BTreeSet<&Answer> = list
            .iter()
            .filter(|a| matches!(a, Answer::Approved { .. }))
            .collect();
        assert!(
            approvals.len() <= 1,
            "request {k} got different signatures: {approvals:?}"
        );
        if let Some(a) = approvals.iter().next() {
            assert!(
                list.iter().all(|x| matches!(x, Answer::Approved { .. })),
                "request {k} approved and refused: {list:?}"
            );
            let set = by_slot.entry(all[*k].slot).or_default();
            if set.insert((*a).clone()) {
                approved_native += all[*k].native;
            }
            approved_requests += 1;
        }
        if list.contains(&Answer::Refused(0x0718)) {
            velocity_refusals += 1;
        }
    }
    // 2. Never two signatures for one nonce.
    for (slot, set) in &by_slot {
        assert_eq!(
            set.len(),
            1,
            "{slot:?} signed for different content: {set:?}"
        );
    }
    // 3. Velocity never exceeded, and reached.
    assert!(
        approved_native <= CAP,
        "approved {approved_native} wei over the cap {CAP}"
    );
    assert!(velocity_refusals > 0, "the cap was reached and refused");
    assert!(
        approved_native + TX_VALUE + TX_FEE > CAP || approved_native + SAFE_VALUE > CAP,
        "the cap was reached: {approved_native} wei approved"
    );
    // Every approval checks: transactions recover to the node, Safe
    // signatures over the SafeTx hash computed here.
    let node = ew.node_address;
    let v141 = SafeVersion::parse("1.4.1").unwrap();
    for (slot, set) in &by_slot {
        let Some(Answer::Approved {
            signature,
            raw,
            hash,
        }) = set.iter().next()
        else {
            unreachable!()
        };
        let sig = <[u8; 65]>::try_from(signature.as_slice()).unwrap();
        let r = EthResult {
            kind: match slot {
                Slot::Account(_) => spacenode_policy::request::EthKind::Transaction,
                Slot::Safe(_) => spacenode_policy::request::EthKind::SafeSignature,
            },
            chain_id: spacenode_system_tests::eth::SEPOLIA,
            raw_tx: raw.clone(),
            tx_hash: None,
            signature: sig,
            safe_tx_hash: *hash,
        };
        geth::check_result(&r, None, Some(node)).unwrap();
        if let (Slot::Safe(n), Some(h)) = (slot, hash) {
            let s = safe_tx(
                addr::SAFE,
                addr::VENDOR,
                SAFE_VALUE,
                vec![],
                Operation::Call,
                *n,
            );
            let c = safe_tx(
                addr::SAFE,
                addr::VENDOR,
                SAFE_VALUE - 1,
                vec![],
                Operation::Call,
                *n,
            );
            assert!(*h == geth::safe_hash(&s, v141) || *h == geth::safe_hash(&c, v141));
        }
    }
    println!(
        "{kills} kills ({startup_kills} during start-up), {requests} requests, {unanswered} unanswered, \
         {} distinct requests decided, {approved_requests} approved over {} nonces, \
         {velocity_refusals} velocity refusals, {approved_native} wei of {CAP} approved, stream {stream:.1?}",
        answers.len(),
        by_slot.len(),
    );

    // 4. The audit log verifies, with receipts.
    let (ok, text) = ew.w.ground(&[
        "audit",
        "verify",
        "--receipt-key",
        &ew.w.receipt_key.to_string(),
    ]);
    assert!(ok && text.contains("audit log VERIFIED"), "{text}");
    println!("{}", text.trim());

    // 5. The database: the stored nonces are exactly the signatures
    //    received; stored velocity equals the approvals.
    ew.w.node.take().unwrap().kill9();
    let db = rusqlite::Connection::open_with_flags(
        ew.w.fx.state_dir.join("spacenode.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db.prepare("SELECT nonce, raw_tx FROM eth_nonces").unwrap();
    let stored_tx: BTreeMap<u64, Vec<u8>> = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
        .map(|x| {
            let (n, raw) = x.unwrap();
            (u64::try_from(n).unwrap(), raw)
        })
        .collect();
    let mut stmt = db
        .prepare("SELECT nonce, signature FROM safe_nonces")
        .unwrap();
    let stored_safe: BTreeMap<u64, Vec<u8>> = stmt
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap()
        .map(|x| {
            let (n, sig) = x.unwrap();
            (
                u64::try_from(alloy_primitives::U256::from_be_slice(&n)).unwrap(),
                sig,
            )
        })
        .collect();
    let mut received_tx = BTreeMap::new();
    let mut received_safe = BTreeMap::new();
    for (slot, set) in &by_slot {
        if let Some(Answer::Approved { signature, raw, .. }) = set.iter().next() {
            match slot {
                Slot::Account(n) => received_tx.insert(*n, raw.clone()),
                Slot::Safe(n) => received_safe.insert(*n, signature.clone()),
            };
        }
    }
    assert_eq!(stored_tx, received_tx, "eth_nonces = transactions received");
    assert_eq!(
        stored_safe, received_safe,
        "safe_nonces = Safe signatures received"
    );
    let mut stmt = db.prepare("SELECT amount FROM eth_velocity").unwrap();
    let stored_velocity: u128 = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|a| u128::from_be_bytes(<[u8; 16]>::try_from(a.unwrap().as_slice()).unwrap()))
        .sum();
    assert_eq!(
        stored_velocity, approved_native,
        "stored velocity = approvals"
    );
    println!(
        "stored: {} account nonces, {} Safe nonces, {stored_velocity} wei of velocity; total {:.1?}",
        stored_tx.len(),
        stored_safe.len(),
        started.elapsed()
    );
}
