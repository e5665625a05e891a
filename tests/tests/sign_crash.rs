//! The signing crash test: 200 kill -9 of the real daemon at random points
//! (during start, between requests, while a request is evaluated, while its
//! decision is committed, while the answer goes down) during a stream of
//! sign requests: new spends, retries of earlier ones, and conflicting
//! transactions over outpoints already requested. The daemon is restarted
//! after each kill. At the end:
//!
//! - no outpoint was signed in two transactions (the signatures the ground
//!   received, and the stored spends);
//! - a request id never got two different answers;
//! - the velocity cap was never exceeded (received approvals and stored
//!   velocity rows), and it was reached (a velocity refusal happened);
//! - every signature the ground received has its spend stored (nothing left
//!   the node before its commit);
//! - the audit log verifies with receipts (`ground audit verify`).
//!
//! Keys: the soft key store (the crash behaviour under test is the
//! database's and the node's; the TPM adds nothing to it and its start-up
//! time would multiply the test's length).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use rand::{Rng, SeedableRng};
use spacenode_btc::sign::decode_sigs;
use spacenode_ground::btc;
use spacenode_ground::client::RetryPolicy;
use spacenode_system_tests::Node;
use spacenode_system_tests::cosign::{DEST, World, WorldConfig};
use spacenode_wire::services::{apid, service, subtype};

const KILLS: usize = 200;
const UTXOS: usize = 60;
/// Each spend takes 0.5 BTC + 1000 sat fee; the daily cap allows 19.
const AMOUNT: u64 = 50_000_000;
const FEE: u64 = 1_000;
const CAP: u64 = 1_000_000_000;

struct Req {
    bytes: Vec<u8>,
    psbt: Psbt,
    /// What leaves the wallet: destination plus fee.
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Approved { txid: [u8; 32], sigs: Vec<u8> },
    Refused(u16),
}

#[test]
fn two_hundred_kills_never_exceed_velocity_or_double_sign() {
    let seed: u64 = std::env::var("SPACENODE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (SPACENODE_CRASH_SEED reproduces the request stream)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rules = format!(
        "per_tx_cap_sat = 100000000\nmax_fee_sat = 100000\nmax_fee_rate_sat_vb = 100\n\
         min_confirmations = 3\nmax_psbt_bytes = 200000\n\
         [[rules.velocity]]\nwindow_s = 86400\ncap_sat = {CAP}\n\
         [[rules.allow]]\nlabel = \"exchange\"\naddress = \"{DEST}\"\n\
         [rules.replacement]\nallowed = false\nmax_fee_sat = 0\nmax_fee_rate_sat_vb = 0\n"
    );
    let mut w = World::start(&WorldConfig {
        tpm: false,
        utxos: UTXOS as u32,
        rules,
        node_extra: "[health]\nboot_loop_starts = 100000\nrefusal_burst = 0\n".into(),
        ..WorldConfig::default()
    });
    let patient = w.policy();
    // One attempt with a short wait: a request to a dead node fails fast;
    // an answer that was lost is fetched later by a retry (same id).
    let quick = RetryPolicy {
        attempts: 1,
        first_timeout: Duration::from_millis(400),
        min_timeout: Duration::from_millis(400),
        max_timeout: Duration::from_millis(400),
    };

    // The stream's requests: a spend of each output, and a conflicting
    // transaction over the same output (another amount and change).
    let mut fresh: Vec<Req> = Vec::new();
    let mut conflicts: Vec<Req> = Vec::new();
    for i in 0..UTXOS {
        let (bytes, psbt) = w.request(rand::random(), &[i], AMOUNT, FEE, i as u32);
        fresh.push(Req {
            bytes,
            psbt,
            amount: AMOUNT + FEE,
        });
        let (bytes, psbt) = w.request(rand::random(), &[i], AMOUNT - 10_000, FEE, 1000 + i as u32);
        conflicts.push(Req {
            bytes,
            psbt,
            amount: AMOUNT - 10_000 + FEE,
        });
    }
    let all: Vec<&Req> = fresh.iter().chain(conflicts.iter()).collect();
    let mut answers: BTreeMap<usize, Vec<Answer>> = BTreeMap::new();
    let mut sent: Vec<usize> = Vec::new();
    let mut next_fresh = 0usize;
    let (mut requests, mut unanswered, mut startup_kills) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    let mut link = w.link();

    let record = |answers: &mut BTreeMap<usize, Vec<Answer>>,
                  k: usize,
                  o: &spacenode_ground::cosign::SignOutcome| {
        let a = match (&o.result, &o.refused) {
            (Some(r), _) => Answer::Approved {
                txid: r.txid,
                sigs: r.signatures.clone(),
            },
            (None, Some(r)) => Answer::Refused(r.code.0),
            (None, None) => return,
        };
        answers.entry(k).or_default().push(a);
    };

    let kills: usize = std::env::var("SPACENODE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    for kill in 0..kills {
        w.node.take().unwrap().kill9();
        if rng.random_bool(0.1) {
            // Kill during start-up (opening the database, custody, ...).
            let mut n = Node::spawn(&w.fx);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
            n.kill9();
            startup_kills += 1;
            w.node = Some(Node::start(&w.fx));
            continue;
        }
        w.node = Some(Node::start(&w.fx));
        // Resync the ground's sequence numbers with the restarted node.
        let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
        link.request(&tc, patient).unwrap();
        let pid = w.node.as_ref().unwrap().pid();
        let dead = Arc::new(AtomicBool::new(false));
        let d = dead.clone();
        let delay = Duration::from_millis(rng.random_range(0..250));
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
                // A conflicting transaction over an output already asked for.
                let j = rng.random_range(0..next_fresh.max(1));
                fresh.len() + j
            };
            if !sent.contains(&k) {
                sent.push(k);
            }
            requests += 1;
            match w.sign(&mut link, quick, &all[k].bytes) {
                Ok(o) => record(&mut answers, k, &o),
                Err(_) => unanswered += 1,
            }
        }
        killer.join().unwrap();
        if kill % 20 == 19 {
            println!(
                "{} kills, {requests} requests ({unanswered} unanswered), {:.0?}",
                kill + 1,
                started.elapsed()
            );
        }
    }
    // A last clean start: fetch the final answer of every request sent.
    w.node.take().unwrap().kill9();
    w.node = Some(Node::start(&w.fx));
    let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
    link.request(&tc, patient).unwrap();
    for &k in &sent {
        let o = w.sign(&mut link, patient, &all[k].bytes).unwrap();
        record(&mut answers, k, &o);
    }
    drop(link);
    println!(
        "{kills} kills ({startup_kills} during start-up), {requests} requests, {unanswered} unanswered, \
         {} distinct requests decided, {:.1?}",
        answers.len(),
        started.elapsed()
    );

    // 1. One answer per request id; approvals carry identical signatures.
    let mut approved: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    let mut velocity_refusals = 0;
    for (k, list) in &answers {
        let approvals: BTreeSet<&Answer> = list
            .iter()
            .filter(|a| matches!(a, Answer::Approved { .. }))
            .collect();
        assert!(
            approvals.len() <= 1,
            "request {k} got different signatures: {approvals:?}"
        );
        // A request refused for a reason that depends only on it stays
        // refused; one approved stays approved.
        if let Some(Answer::Approved { txid, sigs }) = approvals.iter().next() {
            assert!(
                list.iter().all(|a| matches!(a, Answer::Approved { .. })),
                "request {k} approved and refused: {list:?}"
            );
            let psbt = &all[*k].psbt;
            assert_eq!(*txid, psbt.unsigned_tx.compute_txid().to_byte_array());
            assert_eq!(decode_sigs(sigs).unwrap().len(), 1);
            approved.insert(*txid, *k);
        }
        if list.iter().any(|a| a == &Answer::Refused(0x0614)) {
            velocity_refusals += 1;
        }
    }
    // 2. No outpoint in two signed transactions.
    let mut by_outpoint: BTreeMap<bitcoin::OutPoint, BTreeSet<[u8; 32]>> = BTreeMap::new();
    for (txid, k) in &approved {
        for i in &all[*k].psbt.unsigned_tx.input {
            by_outpoint
                .entry(i.previous_output)
                .or_default()
                .insert(*txid);
        }
    }
    for (o, txids) in &by_outpoint {
        assert_eq!(
            txids.len(),
            1,
            "outpoint {o} signed in {} transactions",
            txids.len()
        );
    }
    // 3. Velocity.
    let spent: u64 = approved.values().map(|k| all[*k].amount).sum();
    assert!(spent <= CAP, "approved {spent} sat over the cap {CAP}");
    assert!(velocity_refusals > 0, "the cap was reached and refused");
    assert!(
        spent + (AMOUNT - 10_000 + FEE) > CAP,
        "the cap was reached: {spent} sat approved in {} spends",
        approved.len()
    );
    // Every approval is a valid signature over its transaction.
    let cosigner = btc::load_key(&w.ground_keys[0].0).unwrap();
    for (txid, k) in &approved {
        let Some(Answer::Approved { sigs, .. }) = answers[k].first() else {
            unreachable!()
        };
        let (tx, _) = btc::complete(
            all[*k].psbt.clone(),
            &decode_sigs(sigs).unwrap(),
            std::slice::from_ref(&cosigner),
        )
        .unwrap();
        assert_eq!(tx.compute_txid().to_byte_array(), *txid);
    }

    // 4. The audit log verifies, with receipts.
    let (ok, text) = w.ground(&[
        "audit",
        "verify",
        "--receipt-key",
        &w.receipt_key.to_string(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("audit log VERIFIED"), "{text}");
    println!("{}", text.trim());

    // 5. The database: every received signature has its spend; velocity
    //    rows never exceed the cap; each outpoint is bound to the one
    //    transaction the ground received signatures for.
    w.node.take().unwrap().kill9();
    let db = rusqlite::Connection::open_with_flags(
        w.fx.state_dir.join("spacenode.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let stored_velocity: i64 = db
        .query_row("SELECT coalesce(sum(sats), 0) FROM velocity", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored_velocity as u64, spent, "stored velocity = approvals");
    let mut stmt = db.prepare("SELECT txid FROM spends").unwrap();
    let stored: BTreeSet<[u8; 32]> = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|t| <[u8; 32]>::try_from(t.unwrap().as_slice()).unwrap())
        .collect();
    let received: BTreeSet<[u8; 32]> = approved.keys().copied().collect();
    assert_eq!(stored, received, "spends stored = signatures received");
    let mut stmt = db
        .prepare("SELECT outpoint, txid FROM spent_outpoints")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap()
    {
        let (o, t) = row.unwrap();
        let o: bitcoin::OutPoint = bitcoin::consensus::encode::deserialize(&o).unwrap();
        let t = <[u8; 32]>::try_from(t.as_slice()).unwrap();
        assert_eq!(by_outpoint.get(&o).and_then(|s| s.iter().next()), Some(&t));
    }
    let refused: i64 = db
        .query_row(
            "SELECT count(*) FROM seen_requests WHERE substr(result, 1, 1) = x'00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    println!(
        "stored: {} spends, {stored_velocity} sat of velocity, {refused} remembered refusals",
        stored.len()
    );
}
