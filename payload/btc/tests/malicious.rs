//! The malicious-PSBT suite and one accepting and one refusing test per
//! rule tag (the accepting side of most tags is the approval in each
//! scenario: every rule passed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::psbt::{Psbt, raw};
use bitcoin::sighash::{EcdsaSighashType, TapSighashType};
use bitcoin::{Amount, NetworkKind, ScriptBuf, TxOut};
use spacenode_btc::engine::{Approval, Outcome};
use spacenode_btc::error::Refusal;
use spacenode_btc::signer::{FaultySigner, SoftSigner};
use spacenode_policy::Rule;
use spacenode_policy::document::{AllowEntry, AllowTarget, TimeWindow};
use spacenode_policy::request::SignedRequest;
use spacenode_testkit::btc::{Demo, DemoWallet};

const BTC: u64 = 100_000_000;

fn demo(kind: DemoWallet) -> Demo {
    Demo::new(kind, 5, BTC, 6).unwrap()
}

fn eval(d: &Demo, id: u8, psbt: Vec<u8>, inputs: &[usize]) -> Outcome {
    d.evaluate(&d.request([id; 32], psbt, d.proofs(inputs)))
        .unwrap()
}

#[track_caller]
fn refused(o: &Outcome, rule: Rule, code: u16) -> Refusal {
    match o {
        Outcome::Refused(r) => {
            assert_eq!(
                (r.refusal.rule, r.refusal.code),
                (rule, code),
                "{}",
                r.refusal
            );
            r.refusal.clone()
        }
        Outcome::Approved(a) => panic!("approved {} where {rule} was expected", a.txid),
        Outcome::Replay(_) => panic!("replay"),
    }
}

#[track_caller]
fn approved(o: &Outcome) -> &Approval {
    match o {
        Outcome::Approved(a) => a,
        Outcome::Refused(r) => panic!("refused: {}", r.refusal),
        Outcome::Replay(_) => panic!("replay"),
    }
}

fn good(d: &Demo) -> Psbt {
    d.psbt(&[0], d.destination().unwrap(), BTC / 2, 2_000, 0)
        .unwrap()
}

#[test]
fn segwit_fee_attack_witness_utxo_lies() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    p.inputs[0].witness_utxo.as_mut().unwrap().value = Amount::from_sat(BTC / 2 + 1_000);
    refused(
        &eval(&d, 1, p.serialize(), &[0]),
        Rule::UnprovenAmount,
        0x060A,
    );
}

#[test]
fn segwit_fee_attack_non_witness_utxo_missing() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    p.inputs[0].non_witness_utxo = None;
    let o = eval(&d, 1, p.serialize(), &[0]);
    refused(&o, Rule::UnprovenAmount, 0x0608);
}

#[test]
fn segwit_fee_attack_non_witness_utxo_not_the_outpoint() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    let mut other = d.utxos[1].funding.clone();
    other.output[0] = p.inputs[0].witness_utxo.clone().unwrap();
    p.inputs[0].non_witness_utxo = Some(other);
    refused(
        &eval(&d, 1, p.serialize(), &[0]),
        Rule::UnprovenAmount,
        0x0609,
    );
}

#[test]
fn taproot_needs_only_witness_utxo() {
    // BIP341 sighashes commit to every input amount: witness_utxo suffices.
    let d = demo(DemoWallet::TrMultiA);
    let mut p = good(&d);
    p.inputs[0].non_witness_utxo = None;
    // The SPV proof must then carry the funding transaction itself.
    let mut proofs = d.proofs(&[0]);
    proofs[0].tx = serialize(&d.utxos[0].funding);
    let o = d
        .evaluate(&d.request([1; 32], p.serialize(), proofs))
        .unwrap();
    approved(&o);
    // Without the transaction the proof cannot be checked.
    let o = eval(&d, 2, p.serialize(), &[0]);
    refused(&o, Rule::MinConf, 0x060B);
}

#[test]
fn change_to_a_foreign_key() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    // The attacker swaps the change script but keeps the derivation claim.
    p.unsigned_tx.output[1].script_pubkey =
        ScriptBuf::new_p2wsh(&ScriptBuf::from_bytes(vec![0x51]).wscript_hash());
    refused(
        &eval(&d, 1, p.serialize(), &[0]),
        Rule::ForeignChange,
        0x060E,
    );
    // Without the claim it is an ordinary destination: not allowlisted.
    p.outputs[1].bip32_derivation.clear();
    refused(&eval(&d, 2, p.serialize(), &[0]), Rule::Allowlist, 0x0613);
}

#[test]
fn change_on_the_receive_branch_is_not_change() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    let recv = d.wallet.definite(0, 7).unwrap();
    p.unsigned_tx.output[1].script_pubkey = d.wallet.script_pubkey(&d.secp, 0, 7).unwrap();
    p.outputs[1] = Default::default();
    miniscript::psbt::PsbtExt::update_output_with_descriptor(&mut p, 1, &recv).unwrap();
    refused(&eval(&d, 1, p.serialize(), &[0]), Rule::Allowlist, 0x0613);
}

#[test]
fn extra_output_to_an_unknown_destination() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    p.unsigned_tx.output[1].value =
        Amount::from_sat(p.unsigned_tx.output[1].value.to_sat() - 10_000);
    p.unsigned_tx.output.push(TxOut {
        value: Amount::from_sat(10_000),
        script_pubkey: ScriptBuf::from_bytes(
            vec![0x00, 0x14].into_iter().chain([7u8; 20]).collect(),
        ),
    });
    p.outputs.push(Default::default());
    refused(&eval(&d, 1, p.serialize(), &[0]), Rule::Allowlist, 0x0613);
}

#[test]
fn sighash_none_single_anyonecanpay_refused() {
    let d = demo(DemoWallet::WshSortedMulti);
    for t in [
        EcdsaSighashType::None,
        EcdsaSighashType::Single,
        EcdsaSighashType::AllPlusAnyoneCanPay,
        EcdsaSighashType::NonePlusAnyoneCanPay,
    ] {
        let mut p = good(&d);
        p.inputs[0].sighash_type = Some(t.into());
        refused(&eval(&d, 1, p.serialize(), &[0]), Rule::Sighash, 0x0605);
    }
    let mut p = good(&d);
    p.inputs[0].sighash_type = Some(EcdsaSighashType::All.into());
    approved(&eval(&d, 1, p.serialize(), &[0]));
    let t = demo(DemoWallet::TrMultiA);
    for ty in [TapSighashType::None, TapSighashType::SinglePlusAnyoneCanPay] {
        let mut p = good(&t);
        p.inputs[0].sighash_type = Some(ty.into());
        refused(&eval(&t, 1, p.serialize(), &[0]), Rule::Sighash, 0x0605);
    }
    let mut p = good(&t);
    p.inputs[0].sighash_type = Some(TapSighashType::All.into());
    approved(&eval(&t, 1, p.serialize(), &[0]));
}

#[test]
fn fee_above_cap() {
    let d = demo(DemoWallet::WshSortedMulti);
    let p = d
        .psbt(&[0], d.destination().unwrap(), BTC / 2, 100_001, 0)
        .unwrap();
    refused(&eval(&d, 1, p.serialize(), &[0]), Rule::FeeCap, 0x0610);
    // Under the absolute cap but above 100 sat/vB for a ~190 vB transaction.
    let p = d
        .psbt(&[0], d.destination().unwrap(), BTC / 2, 30_000, 0)
        .unwrap();
    refused(&eval(&d, 2, p.serialize(), &[0]), Rule::FeeCap, 0x0611);
    let p = d
        .psbt(&[0], d.destination().unwrap(), BTC / 2, 15_000, 0)
        .unwrap();
    let a = eval(&d, 3, p.serialize(), &[0]);
    let a = approved(&a);
    // The estimate is an upper bound close to the real size.
    assert!(
        a.checked.vsize >= 185 && a.checked.vsize <= 195,
        "{}",
        a.checked.vsize
    );
}

#[test]
fn unconfirmed_input() {
    let d = Demo::new(DemoWallet::WshSortedMulti, 2, BTC, 2).unwrap();
    refused(
        &eval(&d, 1, good(&d).serialize(), &[0]),
        Rule::MinConf,
        0x060D,
    );
    // No proof at all.
    let o = d
        .evaluate(&d.request([2; 32], good(&d).serialize(), vec![]))
        .unwrap();
    refused(&o, Rule::MinConf, 0x060B);
    // A proof for another transaction under the right txid.
    let d = demo(DemoWallet::WshSortedMulti);
    let mut proofs = d.proofs(&[1]);
    proofs[0].txid = d.utxos[0].outpoint.txid.to_byte_array();
    let o = d
        .evaluate(&d.request([3; 32], good(&d).serialize(), proofs))
        .unwrap();
    refused(&o, Rule::MinConf, 0x060C);
}

#[test]
fn input_from_an_unregistered_wallet() {
    let d = demo(DemoWallet::WshSortedMulti);
    // The same PSBT built for another node's wallet.
    let mut other = demo(DemoWallet::WshSortedMulti);
    other.node = SoftSigner::from_seed(&[8; 32], NetworkKind::Test).unwrap();
    let desc = spacenode_testkit::btc::descriptor(
        DemoWallet::WshSortedMulti,
        &other.node,
        &other.ground[0],
        &other.ground[1],
    )
    .unwrap();
    other.wallet =
        spacenode_btc::wallet::Wallet::new("x", &desc, &other.node, NetworkKind::Test).unwrap();
    let mut p = good(&d);
    // Replace the spent output by one of the foreign wallet, consistently.
    let mut f = d.utxos[0].funding.clone();
    f.output[0].script_pubkey = other.wallet.script_pubkey(&d.secp, 0, 0).unwrap();
    p.unsigned_tx.input[0].previous_output.txid = f.compute_txid();
    p.inputs[0].witness_utxo = Some(f.output[0].clone());
    p.inputs[0].non_witness_utxo = Some(f);
    refused(
        &eval(&d, 1, p.serialize(), &[0]),
        Rule::UnregisteredWallet,
        0x0606,
    );
    // A wrong derivation claim (index 3 instead of 0) does not match either.
    let mut p = good(&d);
    for (_, (_, path)) in p.inputs[0].bip32_derivation.iter_mut() {
        let mut v: Vec<_> = path.into_iter().copied().collect();
        *v.last_mut().unwrap() = bitcoin::bip32::ChildNumber::Normal { index: 3 };
        *path = v.into();
    }
    refused(
        &eval(&d, 2, p.serialize(), &[0]),
        Rule::UnregisteredWallet,
        0x0606,
    );
}

#[test]
fn duplicate_inputs() {
    let d = demo(DemoWallet::WshSortedMulti);
    let p = d
        .psbt(&[0, 0], d.destination().unwrap(), BTC / 2, 2_000, 0)
        .unwrap();
    refused(
        &eval(&d, 1, p.serialize(), &[0]),
        Rule::DuplicateInput,
        0x0604,
    );
}

#[test]
fn oversized_psbt() {
    let d = demo(DemoWallet::WshSortedMulti);
    let mut p = good(&d);
    p.unknown.insert(
        raw::Key {
            type_value: 0xf0,
            key: vec![1],
        },
        vec![0; 1_000_001],
    );
    refused(&eval(&d, 1, p.serialize(), &[0]), Rule::Oversize, 0x0603);
}

#[test]
fn malformed_psbt() {
    let d = demo(DemoWallet::WshSortedMulti);
    refused(
        &eval(&d, 1, b"psbt\xff\x00garbage".to_vec(), &[0]),
        Rule::PsbtFormat,
        0x0601,
    );
    let mut v2 = spacenode_btc::psbt_v2::to_v2(&good(&d));
    v2.truncate(v2.len() - 3);
    refused(&eval(&d, 2, v2, &[0]), Rule::PsbtFormat, 0x0602);
}

#[test]
fn per_tx_cap_and_velocity() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    let dest = d.destination().unwrap();
    let p = d
        .psbt(&[0, 1, 2], dest.clone(), 2 * BTC + 1, 2_000, 0)
        .unwrap();
    refused(
        &eval(&d, 1, p.serialize(), &[0, 1, 2]),
        Rule::PerTxCap,
        0x0612,
    );
    // 1h cap 3 BTC: 1.5 + 1.4 pass, then 0.2 more is refused.
    let p = d
        .psbt(&[0, 1], dest.clone(), 150_000_000, 2_000, 0)
        .unwrap();
    let o = eval(&d, 2, p.serialize(), &[0, 1]);
    approved(&o);
    d.commit(&o);
    let p = d
        .psbt(&[2, 3], dest.clone(), 140_000_000, 2_000, 1)
        .unwrap();
    let o = eval(&d, 3, p.serialize(), &[2, 3]);
    assert_eq!(approved(&o).checked.window_totals[0].0, 290_004_000);
    d.commit(&o);
    let p = d.psbt(&[4], dest.clone(), 20_000_000, 2_000, 2).unwrap();
    refused(&eval(&d, 4, p.serialize(), &[4]), Rule::Velocity, 0x0614);
    // An hour later the hourly window has rolled (the daily one has room).
    d.advance(3_600_001);
    approved(&eval(&d, 5, p.serialize(), &[4]));
    // A clock stepping back cannot reopen the window.
    let mut back = Demo::new(DemoWallet::WshSortedMulti, 5, BTC, 6).unwrap();
    back.velocity = d.velocity.clone();
    refused(&eval(&back, 6, p.serialize(), &[4]), Rule::Velocity, 0x0614);
}

#[test]
fn equivocation_and_replacement() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    let dest = d.destination().unwrap();
    let first = d.psbt(&[0], dest.clone(), BTC / 2, 2_000, 0).unwrap();
    let o = eval(&d, 1, first.serialize(), &[0]);
    approved(&o);
    d.commit(&o);
    // Same transaction again under a new id: signed again, velocity 0.
    let o = eval(&d, 2, first.serialize(), &[0]);
    assert_eq!(approved(&o).velocity, None);
    // Different destinations over the same outpoint.
    let other = d.psbt(&[0], dest.clone(), BTC / 3, 2_000, 0).unwrap();
    refused(
        &eval(&d, 3, other.serialize(), &[0]),
        Rule::Replacement,
        0x0616,
    );
    // A fee bump (same destinations, higher fee, change pays): accepted,
    // velocity charged the extra fee only.
    let bump = d.psbt(&[0], dest.clone(), BTC / 2, 12_000, 0).unwrap();
    let o = eval(&d, 4, bump.serialize(), &[0]);
    let a = approved(&o);
    assert_eq!(a.velocity.unwrap().amount.0, 10_000);
    assert_eq!(a.spend.replaces, Some(first.unsigned_tx.compute_txid()));
    // Fee not higher.
    let low = d.psbt(&[0], dest.clone(), BTC / 2, 1_500, 0).unwrap();
    refused(
        &eval(&d, 5, low.serialize(), &[0]),
        Rule::Replacement,
        0x0616,
    );
    // Replacement fee cap.
    let huge = d.psbt(&[0], dest.clone(), BTC / 2, 200_001, 0).unwrap();
    refused(&eval(&d, 6, huge.serialize(), &[0]), Rule::FeeCap, 0x0610);
    // Replacement disallowed: any second transaction is equivocation.
    d.policy.active.document.rules.replacement.allowed = false;
    refused(
        &eval(&d, 7, bump.serialize(), &[0]),
        Rule::Equivocation,
        0x0615,
    );
}

/// Issue 13 item 1, the exact attack: A = {u0..u3} pays 0.95 BTC; then
/// B = {u0}, C = {u1}, D = {u2}, E = {u3} each pay the same 0.95 BTC with a
/// slightly higher fee. Before the fix each passed as a fee bump of A and
/// velocity charged only the fee increase: 3.8 BTC left against the 3 BTC/h
/// cap. Now each is refused as `btc-replacement-partial`; a replacement
/// spending all of A's outpoints (and more) is still a fee bump, and a
/// second replacement of A must conflict with the first.
#[test]
fn partial_replacements_cannot_bypass_velocity() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    let dest = d.destination().unwrap();
    let pay = 95_000_000;
    let a = d.psbt(&[0, 1, 2, 3], dest.clone(), pay, 2_000, 0).unwrap();
    let o = eval(&d, 1, a.serialize(), &[0, 1, 2, 3]);
    approved(&o);
    d.commit(&o);
    // A conflicts with each of B..E, so what can leave is the larger of A
    // and the approved B..E together (these do not conflict with each other).
    let mut partials = 0;
    let mut outcomes = Vec::new();
    for (k, u) in [0usize, 1, 2, 3].into_iter().enumerate() {
        let k8 = u8::try_from(k).unwrap();
        let p = d
            .psbt(&[u], dest.clone(), pay, 3_000 + u64::from(k8), 1)
            .unwrap();
        let o = eval(&d, 2 + k8, p.serialize(), &[u]);
        if matches!(o, Outcome::Approved(_)) {
            partials += pay;
        }
        d.commit(&o);
        outcomes.push(o);
    }
    let left = partials.max(pay);
    let cap = d.policy.active.document.rules.velocity[0].cap.0;
    assert!(
        left <= cap,
        "{} BTC signed to leave against a {} BTC/h cap",
        left as f64 / BTC as f64,
        cap as f64 / BTC as f64
    );
    for o in &outcomes {
        let r = refused(o, Rule::PartialReplacement, 0x06A0);
        assert!(
            r.detail.contains("spends 3 of its 4 outpoints no more"),
            "{r}"
        );
    }
    // An honest fee bump spends all of A's outpoints (here one more):
    // velocity is charged the added fee only.
    let bump = d
        .psbt(&[0, 1, 2, 3, 4], dest.clone(), pay, 5_000, 2)
        .unwrap();
    let o = eval(&d, 10, bump.serialize(), &[0, 1, 2, 3, 4]);
    let b = approved(&o);
    assert_eq!(b.spend.replaces, Some(a.unsigned_tx.compute_txid()));
    assert_eq!(b.velocity.unwrap().amount.0, 3_000);
    d.commit(&o);
    // A second replacement of A that leaves u4 alone would not conflict
    // with the first: it meets the first on A's outpoints and is refused.
    let again = d.psbt(&[0, 1, 2, 3], dest.clone(), pay, 9_000, 3).unwrap();
    let r = refused(
        &eval(&d, 11, again.serialize(), &[0, 1, 2, 3]),
        Rule::PartialReplacement,
        0x06A0,
    );
    assert!(
        r.detail
            .contains(&bump.unsigned_tx.compute_txid().to_string()),
        "{r}"
    );
}

/// Issue 13 item 14: what Bitcoin Core's standard relay policy refuses is
/// not co-signed (a 0-sat destination was approved before), each with its
/// own tag; the same spend with standard values is approved.
#[test]
fn standard_relay_policy() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    let dest = d.destination().unwrap();
    let threshold = spacenode_btc::standard::dust_threshold(&TxOut {
        value: Amount::ZERO,
        script_pubkey: dest.clone(),
    });
    assert_eq!(threshold, 294, "the demo destination is P2WPKH");
    // The case: the destination gets 0 sat, change takes the rest.
    let zero = d.psbt(&[0], dest.clone(), 0, 2_000, 0).unwrap();
    let r = refused(&eval(&d, 1, zero.serialize(), &[0]), Rule::Dust, 0x06A1);
    assert!(r.detail.contains("threshold 294"), "{r}");
    let below = d.psbt(&[0], dest.clone(), threshold - 1, 2_000, 0).unwrap();
    refused(&eval(&d, 2, below.serialize(), &[0]), Rule::Dust, 0x06A1);
    // At the threshold: approved.
    let at = d.psbt(&[0], dest.clone(), threshold, 2_000, 0).unwrap();
    approved(&eval(&d, 3, at.serialize(), &[0]));
    // A non-standard output script (OP_TRUE), paid from the change.
    let mut p = good(&d);
    p.unsigned_tx.output[1].value =
        Amount::from_sat(p.unsigned_tx.output[1].value.to_sat() - 10_000);
    p.unsigned_tx.output.push(TxOut {
        value: Amount::from_sat(10_000),
        script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
    });
    p.outputs.push(Default::default());
    refused(
        &eval(&d, 4, p.serialize(), &[0]),
        Rule::NonStandardScript,
        0x06A2,
    );
    // Version 4.
    let mut p = good(&d);
    p.unsigned_tx.version = bitcoin::transaction::Version(4);
    refused(
        &eval(&d, 5, p.serialize(), &[0]),
        Rule::NonStandardVersion,
        0x06A5,
    );
    // 100 sat of fee for about 200 vB.
    let cheap = d.psbt(&[0], dest.clone(), BTC / 2, 100, 0).unwrap();
    let r = refused(
        &eval(&d, 6, cheap.serialize(), &[0]),
        Rule::MinRelayFee,
        0x06A4,
    );
    assert!(r.detail.contains("1 sat/vB"), "{r}");
    // BIP125 rule 4: a fee bump of one sat does not pay for its relay.
    let first = good(&d);
    let o = eval(&d, 7, first.serialize(), &[0]);
    approved(&o);
    d.commit(&o);
    let one_sat = d.psbt(&[0], dest.clone(), BTC / 2, 2_001, 0).unwrap();
    refused(
        &eval(&d, 8, one_sat.serialize(), &[0]),
        Rule::ReplacementIncrement,
        0x06A6,
    );
    let enough = d.psbt(&[0], dest, BTC / 2, 2_000 + 1_000, 0).unwrap();
    approved(&eval(&d, 9, enough.serialize(), &[0]));
}

/// Issue 13 item 12: a real refused deep reorg (a heavier branch forking
/// below the kept window) stops Bitcoin signing (`btc-deep-reorg`, not
/// remembered); after the clear the same request is signed.
#[test]
fn deep_reorg_flag_stops_signing() {
    use spacenode_chain::regtest::{genesis, mine_chain};
    use spacenode_chain::{Chain, ChainConfig, Checkpoint, HeaderBatch, MemoryStore};
    let mut d = demo(DemoWallet::WshSortedMulti);
    let tip = d.chain.state().tip_height();
    // A window that still holds the funding block (height 2).
    let window = tip - 1;
    let mut chain = Chain::open(
        ChainConfig {
            network: bitcoin::Network::Regtest,
            window,
        },
        MemoryStore::default(),
        Checkpoint::genesis(bitcoin::Network::Regtest),
    )
    .unwrap();
    let now_s = u64::try_from(d.now.0 / 1000).unwrap();
    let batch = d.regtest.batch(1, tip).unwrap();
    chain.apply_batch(&batch, now_s).unwrap();
    d.chain = chain;
    let p = good(&d);
    approved(&eval(&d, 1, p.serialize(), &[0]));

    let branch = mine_chain(&genesis(), usize::try_from(tip + 5).unwrap(), 601).unwrap();
    let e = d
        .chain
        .apply_batch(
            &HeaderBatch::new(bitcoin::Network::Regtest, 1, branch).unwrap(),
            now_s,
        )
        .unwrap_err();
    assert_eq!(e.code(), 0x0325, "{e}");
    let o = eval(&d, 2, p.serialize(), &[0]);
    refused(&o, Rule::DeepReorg, 0x06A7);
    let Outcome::Refused(r) = &o else {
        unreachable!()
    };
    assert!(!r.remember_id, "a retry after the clear must be evaluated");
    d.commit(&o);

    let flagged = d.chain.state().status().deep_reorg_refused.unwrap();
    assert!(
        d.chain
            .state()
            .check_clear_deep_reorg(flagged.branch_start + 1)
            .is_err()
    );
    d.chain
        .state()
        .check_clear_deep_reorg(flagged.branch_start)
        .unwrap();
    d.chain.clear_deep_reorg_flag().unwrap();
    approved(&eval(&d, 2, p.serialize(), &[0]));
}

#[test]
fn time_windows() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    let minute = (d.now.0.rem_euclid(86_400_000) / 60_000) as u16;
    let w = |s: u16, e: u16| TimeWindow {
        weekdays: 0x7f,
        start_minute: s,
        end_minute: e,
    };
    d.policy.active.document.rules.time_windows = vec![w(minute, minute + 1)];
    approved(&eval(&d, 1, good(&d).serialize(), &[0]));
    d.policy.active.document.rules.time_windows = vec![w(minute + 1, minute + 2)];
    refused(
        &eval(&d, 2, good(&d).serialize(), &[0]),
        Rule::TimeWindow,
        0x0617,
    );
}

#[test]
fn descriptor_allowlist_matches_by_derivation() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    // Allow sending to the receive branch of a cold wallet by descriptor.
    let cold = SoftSigner::from_seed(&[7; 32], NetworkKind::Test).unwrap();
    let key = spacenode_testkit::btc::key_expr(&cold, 1)
        .unwrap()
        .replace("/<0;1>/*", "/0/*");
    let desc = format!("wpkh({key})");
    d.policy.active.document.rules.allowlist.push(AllowEntry {
        label: "cold".into(),
        target: AllowTarget::Descriptor(desc.clone()),
    });
    d.allow = spacenode_btc::wallet::AllowMatcher::new(&d.policy.active.document.rules).unwrap();
    let cold_desc: miniscript::Descriptor<miniscript::DescriptorPublicKey> = desc.parse().unwrap();
    let at5 = cold_desc.at_derivation_index(5).unwrap();
    let spk = at5.derived_descriptor(&d.secp).script_pubkey();
    let mut p = d.psbt(&[0], spk.clone(), BTC / 2, 2_000, 0).unwrap();
    // Without a derivation hint the ranged descriptor cannot match.
    refused(&eval(&d, 1, p.serialize(), &[0]), Rule::Allowlist, 0x0613);
    miniscript::psbt::PsbtExt::update_output_with_descriptor(&mut p, 0, &at5).unwrap();
    let o = eval(&d, 2, p.serialize(), &[0]);
    assert_eq!(approved(&o).checked.destinations[0].2, "cold");
    // A hint naming index 5 on an output paying index 6 does not match.
    let mut q = p.clone();
    q.unsigned_tx.output[0].script_pubkey = cold_desc
        .at_derivation_index(6)
        .unwrap()
        .derived_descriptor(&d.secp)
        .script_pubkey();
    refused(&eval(&d, 3, q.serialize(), &[0]), Rule::Allowlist, 0x0613);
}

#[test]
fn request_level_rules() {
    let mut d = demo(DemoWallet::WshSortedMulti);
    let req = d.request([1; 32], good(&d).serialize(), d.proofs(&[0]));
    // Approvals: strip them.
    let mut s = SignedRequest::decode(&req).unwrap();
    s.approvals.clear();
    let o = d.evaluate(&s.encode()).unwrap();
    refused(&o, Rule::Approvals, 0x0587);
    // Request id reuse with other content after a decision.
    let o = d.evaluate(&req).unwrap();
    approved(&o);
    d.commit(&o);
    let other = d.request(
        [1; 32],
        d.psbt(&[1], d.destination().unwrap(), BTC / 4, 2_000, 0)
            .unwrap()
            .serialize(),
        d.proofs(&[1]),
    );
    refused(&d.evaluate(&other).unwrap(), Rule::RequestIdReuse, 0x0586);
    // Clock stepping backwards: refused with an event, nothing remembered.
    d.advance(1_000);
    let fresh = d.request(
        [2; 32],
        d.psbt(&[1], d.destination().unwrap(), BTC / 4, 2_000, 0)
            .unwrap()
            .serialize(),
        d.proofs(&[1]),
    );
    d.now = spacenode_policy::TimeMs(d.now.0 - 5_000);
    match d.evaluate(&fresh).unwrap() {
        Outcome::Refused(r) => {
            assert_eq!(r.refusal.rule, Rule::ClockStep);
            assert!(r.refusal.raise_event && !r.remember_id);
        }
        _ => panic!("clock step accepted"),
    }
    d.advance(5_000);
    approved(&d.evaluate(&fresh).unwrap());
    // Expired: two hours later the one-hour window is over.
    d.advance(2 * 3_600_000);
    refused(&d.evaluate(&fresh).unwrap(), Rule::RequestExpired, 0x0583);
    // Garbage envelope.
    refused(
        &d.evaluate(b"\x00\x01").unwrap(),
        Rule::RequestMalformed,
        0x0580,
    );
}

#[test]
fn fault_in_signing_is_refused_with_an_event() {
    for kind in [DemoWallet::WshSortedMulti, DemoWallet::TrMultiA] {
        let d = demo(kind);
        let faulty = FaultySigner {
            inner: SoftSigner::from_seed(&[1; 32], NetworkKind::Test).unwrap(),
        };
        let req = d.request([1; 32], good(&d).serialize(), d.proofs(&[0]));
        match d.evaluate_with(&faulty, &req).unwrap() {
            Outcome::Refused(r) => {
                assert_eq!((r.refusal.rule, r.refusal.code), (Rule::SelfCheck, 0x0619));
                assert!(r.refusal.raise_event && !r.remember_id);
            }
            _ => panic!("a corrupted signature was released"),
        }
    }
}
