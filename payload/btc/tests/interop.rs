//! Interop with independent Python implementations (bdkpython, embit):
//! PSBTs they build for our registered descriptors are checked and signed
//! by the node code, co-signed and finalised by the OTHER library (or by
//! our miniscript finaliser where embit cannot finalise taproot), and every
//! final transaction's scripts are executed by miniscript's interpreter.
//!
//! Needs the repository venv (`.venv`, `tests/python/requirements.txt`) or
//! `SPACENODE_PYTHON`; a missing interpreter fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::psbt::Psbt;
use bitcoin::{NetworkKind, Transaction, TxOut};
use serde_json::json;
use spacenode_btc::engine::Outcome;
use spacenode_btc::finalize::{apply_signatures, finalize, verify_transaction};
use spacenode_btc::signer::BtcSigner;
use spacenode_testkit::btc::{DESTINATION, Demo, DemoWallet};

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

fn run(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "interop.py {:?} failed:\n{}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn scenario(d: &Demo, script_type: u32, dir: &tempfile::TempDir) -> PathBuf {
    let path = DerivationPath::from_str(&format!("m/48'/1'/0'/{script_type}'")).unwrap();
    let hardened: Vec<u32> = path.into_iter().map(|c| u32::from(*c)).collect();
    let g = &d.ground[0];
    let seed_master = Xpriv::new_master(NetworkKind::Test, &[2; 32]).unwrap();
    assert_eq!(seed_master.fingerprint(&d.secp), g.master_fingerprint());
    let account = seed_master.derive_priv(&d.secp, &path).unwrap();
    let keys: Vec<_> = [&d.ground[0], &d.ground[1], &d.node]
        .iter()
        .map(|s| {
            let x: Xpub = s.xpub(&path).unwrap();
            json!({"fingerprint": s.master_fingerprint().to_string(), "path": hardened, "xpub": x.to_string()})
        })
        .collect();
    let s = json!({
        "receive": format!("{:#}", d.wallet.branches()[0]),
        "change": format!("{:#}", d.wallet.branches()[1]),
        "ground_xpub": g.xpub(&path).unwrap().to_string(),
        "ground_xprv": account.to_string(),
        "ground_master_xprv": seed_master.to_string(),
        "keys": keys,
        "funding": d.utxos.iter().map(|u| hex::encode(serialize(&u.funding))).collect::<Vec<_>>(),
        "utxos": d.utxos.iter().map(|u| json!({
            "txid": u.outpoint.txid.to_string(), "vout": u.outpoint.vout,
            "value": u.txout.value.to_sat(), "index": u.index})).collect::<Vec<_>>(),
        "destination": DESTINATION,
        "amount": 120_000_000u64,
        "fee_rate": 5,
        "embit_inputs": 2,
        "embit_fee": 3_000,
    });
    let p = dir.path().join(format!("scenario-{script_type}.json"));
    std::fs::write(&p, s.to_string()).unwrap();
    p
}

/// Node side on foreign PSBT bytes: check and sign; returns the PSBT with
/// the node's signatures.
fn node_signs(d: &Demo, id: u8, psbt_hex: &str) -> Psbt {
    let bytes = hex::decode(psbt_hex).unwrap();
    let mut proofs = d.proofs(&(0..d.utxos.len()).collect::<Vec<_>>());
    for (p, u) in proofs.iter_mut().zip(&d.utxos) {
        p.tx = serialize(&u.funding);
    }
    let out = d
        .evaluate(&d.request([id; 32], bytes.clone(), proofs))
        .unwrap();
    let a = match out {
        Outcome::Approved(a) => a,
        Outcome::Refused(r) => panic!("node refused the foreign psbt: {}", r.refusal),
        Outcome::Replay(_) => panic!("replay"),
    };
    let (mut psbt, _) = spacenode_btc::psbt_v2::parse(&bytes).unwrap();
    assert_eq!(a.txid, psbt.unsigned_tx.compute_txid());
    apply_signatures(&mut psbt, &a.signatures).unwrap();
    psbt
}

fn verify(d: &Demo, tx_hex: &str, psbt: &Psbt) {
    let tx: Transaction = deserialize(&hex::decode(tx_hex).unwrap()).unwrap();
    assert_eq!(tx.compute_txid(), psbt.unsigned_tx.compute_txid());
    let prevouts: Vec<TxOut> = tx
        .input
        .iter()
        .map(|i| {
            d.utxos
                .iter()
                .find(|u| u.outpoint == i.previous_output)
                .unwrap()
                .txout
                .clone()
        })
        .collect();
    verify_transaction(&d.secp, &tx, &prevouts).unwrap();
    // A corrupted witness must not verify.
    let mut bad = tx.clone();
    let mut w = bad.input[0].witness.to_vec();
    let sig = w.iter_mut().find(|e| e.len() >= 64).unwrap();
    sig[10] ^= 1;
    bad.input[0].witness = bitcoin::Witness::from_slice(&w);
    assert!(verify_transaction(&d.secp, &bad, &prevouts).is_err());
}

#[test]
fn bdk_builds_node_signs_embit_finalizes_wsh() {
    let dir = tempfile::tempdir().unwrap();
    let d = Demo::new(DemoWallet::WshSortedMulti, 3, 100_000_000, 6).unwrap();
    let s = scenario(&d, 2, &dir);
    let psbt = node_signs(&d, 1, &run(&["bdk-build", s.to_str().unwrap()]));
    let tx = run(&[
        "embit-finalize",
        s.to_str().unwrap(),
        &hex::encode(psbt.serialize()),
    ]);
    verify(&d, &tx, &psbt);
}

#[test]
fn embit_builds_node_signs_bdk_finalizes_wsh() {
    let dir = tempfile::tempdir().unwrap();
    let d = Demo::new(DemoWallet::WshSortedMulti, 3, 100_000_000, 6).unwrap();
    let s = scenario(&d, 2, &dir);
    let psbt = node_signs(&d, 2, &run(&["embit-build", s.to_str().unwrap()]));
    let tx = run(&[
        "bdk-finalize",
        s.to_str().unwrap(),
        &hex::encode(psbt.serialize()),
    ]);
    verify(&d, &tx, &psbt);
}

#[test]
fn bdk_builds_node_signs_embit_cosigns_tr_multi_a() {
    let dir = tempfile::tempdir().unwrap();
    let d = Demo::new(DemoWallet::TrMultiA, 3, 100_000_000, 6).unwrap();
    let s = scenario(&d, 3, &dir);
    let psbt = node_signs(&d, 3, &run(&["bdk-build", s.to_str().unwrap()]));
    // embit signs taproot leaves but cannot finalise them: our miniscript
    // finaliser does, then the interpreter checks every script.
    let cosigned = run(&[
        "embit-cosign",
        s.to_str().unwrap(),
        &hex::encode(psbt.serialize()),
    ]);
    let cosigned = Psbt::deserialize(&hex::decode(cosigned).unwrap()).unwrap();
    let tx = finalize(&d.secp, cosigned).unwrap();
    verify(&d, &hex::encode(serialize(&tx)), &psbt);
    // And bdk can finalise the same node-signed PSBT with its own key.
    let tx = run(&[
        "bdk-finalize",
        s.to_str().unwrap(),
        &hex::encode(psbt.serialize()),
    ]);
    verify(&d, &tx, &psbt);
}

#[test]
fn embit_builds_a_v0_psbt_that_our_v2_path_also_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = Demo::new(DemoWallet::WshSortedMulti, 3, 100_000_000, 6).unwrap();
    let s = scenario(&d, 2, &dir);
    let v0 = Psbt::deserialize(&hex::decode(run(&["embit-build", s.to_str().unwrap()])).unwrap())
        .unwrap();
    let v2 = spacenode_btc::psbt_v2::to_v2(&v0);
    let signed = node_signs(&d, 4, &hex::encode(&v2));
    assert_eq!(signed.unsigned_tx, v0.unsigned_tx);
}
