//! Regtest end to end, in process: fund a 2-of-3 wallet on a chain we mine,
//! prove the funding by SPV, build the PSBT, check and sign on the node,
//! co-sign with a ground key, finalise and verify every script.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use bitcoin::secp256k1::Secp256k1;
use bitcoin::{NetworkKind, XOnlyPublicKey};
use spacenode_btc::engine::Outcome;
use spacenode_btc::psbt_v2;
use spacenode_btc::sign::decode_sigs;
use spacenode_btc::signer::{BtcSigner, receipt_path};
use spacenode_policy::Rule;
use spacenode_policy::audit::{AuditEntry, verify_chain};
use spacenode_testkit::btc::{Demo, DemoWallet};

fn approved(o: &Outcome) -> &spacenode_btc::engine::Approval {
    match o {
        Outcome::Approved(a) => a,
        Outcome::Refused(r) => panic!("refused: {}", r.refusal),
        Outcome::Replay(_) => panic!("replay"),
    }
}

fn receipt_key(d: &Demo) -> XOnlyPublicKey {
    d.node
        .xpub(&receipt_path())
        .unwrap()
        .public_key
        .x_only_public_key()
        .0
}

fn full_flow(kind: DemoWallet, v2: bool) {
    let mut d = Demo::new(kind, 3, 100_000_000, 6).unwrap();
    let psbt = d
        .psbt(&[0, 1], d.destination().unwrap(), 150_000_000, 5_000, 0)
        .unwrap();
    let bytes = if v2 {
        psbt_v2::to_v2(&psbt)
    } else {
        psbt.serialize()
    };
    let req = d.request([1; 32], bytes, d.proofs(&[0, 1]));
    let out = d.evaluate(&req).unwrap();
    let a = approved(&out);
    assert_eq!(a.txid, psbt.unsigned_tx.compute_txid());
    assert_eq!(a.checked.fee.0, 5_000);
    assert_eq!(a.checked.amount.0, 150_005_000);
    assert_eq!(a.checked.change, vec![1]);
    assert_eq!(a.velocity.unwrap().amount.0, 150_005_000);
    let sigs = decode_sigs(&a.signatures_encoded).unwrap();
    assert_eq!(sigs, a.signatures);
    d.commit(&out);
    // Ground: co-sign with either ground key, finalise, verify scripts.
    let tx = d.cosign_and_finalize(psbt.clone(), &sigs, 0).unwrap();
    assert_eq!(tx.compute_txid(), a.txid);
    // The vsize estimate is an upper bound within a byte per input of the
    // real finalised size.
    let real = tx.vsize() as u64;
    assert!(
        a.checked.vsize >= real && a.checked.vsize <= real + 2,
        "estimate {} real {real}",
        a.checked.vsize
    );
    let tx2 = d.cosign_and_finalize(psbt, &sigs, 1).unwrap();
    assert_eq!(tx2.compute_txid(), a.txid);
    // A retry of the same request is a replay; the stored result is returned.
    match d.evaluate(&req).unwrap() {
        Outcome::Replay(r) => assert_eq!(d.results[&r.request_id], a.signatures_encoded),
        _ => panic!("expected a replay"),
    }
    // The audit chain verifies with the node's receipt key.
    let entries = vec![(AuditEntry::decode(&a.audit.bytes).unwrap(), a.audit.receipt)];
    verify_chain(
        &Secp256k1::verification_only(),
        &receipt_key(&d),
        &entries,
        [0; 32],
    )
    .unwrap();
}

#[test]
fn wsh_sortedmulti_v0() {
    full_flow(DemoWallet::WshSortedMulti, false);
}

#[test]
fn wsh_sortedmulti_v2() {
    full_flow(DemoWallet::WshSortedMulti, true);
}

#[test]
fn wsh_recovery_branch() {
    full_flow(DemoWallet::WshRecovery, false);
}

#[test]
fn tr_multi_a_v0() {
    full_flow(DemoWallet::TrMultiA, false);
}

#[test]
fn tr_multi_a_v2() {
    full_flow(DemoWallet::TrMultiA, true);
}

#[test]
fn audit_chain_over_mixed_decisions() {
    let mut d = Demo::new(DemoWallet::WshSortedMulti, 3, 100_000_000, 6).unwrap();
    let mut log = Vec::new();
    let dest = d.destination().unwrap();
    let ok = d.psbt(&[0], dest.clone(), 10_000_000, 2_000, 0).unwrap();
    let big_fee = d.psbt(&[1], dest, 10_000_000, 150_000, 0).unwrap();
    for (i, p) in [ok, big_fee].iter().enumerate() {
        let req = d.request([i as u8 + 1; 32], p.serialize(), d.proofs(&[0, 1]));
        let o = d.evaluate(&req).unwrap();
        match &o {
            Outcome::Approved(a) => log.push((a.audit.entry.clone(), a.audit.receipt)),
            Outcome::Refused(r) => {
                assert_eq!(r.refusal.rule, Rule::FeeCap);
                log.push((r.audit.entry.clone(), r.audit.receipt));
            }
            Outcome::Replay(_) => panic!(),
        }
        d.commit(&o);
    }
    let secp = Secp256k1::verification_only();
    let last = verify_chain(&secp, &receipt_key(&d), &log, [0; 32]).unwrap();
    assert_eq!(last, d.audit.last_hash);
    assert_eq!(d.audit.next_seq, 2);
}

#[test]
fn registration_requires_the_node_key() {
    use spacenode_btc::signer::SoftSigner;
    use spacenode_btc::wallet::{Wallet, WalletError, registration_body};
    let node = SoftSigner::from_seed(&[1; 32], NetworkKind::Test).unwrap();
    let other = SoftSigner::from_seed(&[9; 32], NetworkKind::Test).unwrap();
    let g1 = SoftSigner::from_seed(&[2; 32], NetworkKind::Test).unwrap();
    let g2 = SoftSigner::from_seed(&[3; 32], NetworkKind::Test).unwrap();
    let desc =
        spacenode_testkit::btc::descriptor(DemoWallet::WshSortedMulti, &node, &g1, &g2).unwrap();
    let w = Wallet::from_registration(&registration_body("t", &desc), &node, NetworkKind::Test)
        .unwrap();
    assert_eq!(w.id, spacenode_btc::wallet::wallet_id(&desc));
    // Another node: its key is not in the descriptor.
    let e = Wallet::from_registration(&registration_body("t", &desc), &other, NetworkKind::Test)
        .unwrap_err();
    assert!(matches!(e, WalletError::NodeKeyMissing(_)), "{e}");
    // Non-canonical spelling (no checksum).
    let nocheck = desc.split('#').next().unwrap();
    assert!(matches!(
        Wallet::new("t", nocheck, &node, NetworkKind::Test),
        Err(WalletError::NonCanonical { .. })
    ));
    // Wrong network.
    assert!(Wallet::new("t", &desc, &node, NetworkKind::Main).is_err());
    // Not multipath.
    let single = desc.split('#').next().unwrap().replace("/<0;1>/*", "/0/*");
    let single = spacenode_btc::wallet::canonical_descriptor(&single).unwrap();
    assert!(matches!(
        Wallet::new("t", &single, &node, NetworkKind::Test),
        Err(WalletError::NotMultipath(_))
    ));
    // A node fingerprint over a foreign xpub.
    let forged = desc.replace(
        &spacenode_testkit::btc::key_expr(&node, 2).unwrap(),
        &spacenode_testkit::btc::key_expr(&other, 2)
            .unwrap()
            .replace(
                &other.master_fingerprint().to_string(),
                &node.master_fingerprint().to_string(),
            ),
    );
    let forged =
        spacenode_btc::wallet::canonical_descriptor(forged.split('#').next().unwrap()).unwrap();
    let e = Wallet::new("t", &forged, &node, NetworkKind::Test).unwrap_err();
    assert!(matches!(e, WalletError::NodeKeyMismatch { .. }), "{e}");
    assert_eq!(e.code(), 0x0646);
}
