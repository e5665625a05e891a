//! Attestation against swtpm: our pure verifier, tpm2_checkquote, and the
//! rejections (wrong nonce, replay, other AK, tampering, other software).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

mod common;

use bitcoin::NetworkKind;
use bitcoin::bip32::DerivationPath;
use common::*;
use spacenode_keys::attest::parse_quote;
use spacenode_keys::pcr::predict_software_pcr;
use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{
    AkPublic, Attestation, Expectations, KeyStore, Signer, TpmKeyStore, VerifyError,
    verify_attestation,
};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

const POLICY: [u8; 32] = [0x50; 32];

fn paths() -> Vec<DerivationPath> {
    vec![
        DerivationPath::master(),
        DerivationPath::from_str("m/48'/1'/0'/2'").unwrap(),
    ]
}

// Field order matters: the store (and its TPM connection) drops before
// the swtpm it talks to.
struct Node {
    store: TpmKeyStore,
    ak: AkPublic,
    _sw: Swtpm,
}

fn node() -> Node {
    let sw = Swtpm::start().unwrap();
    let mut tpm = boot(&sw, &BIN_V1, &CFG_V1);
    tpm.provision_counter().unwrap();
    let ak = tpm.ak_public().unwrap();
    let (store, _) = TpmKeyStore::provision(tpm, NetworkKind::Test).unwrap();
    Node { store, ak, _sw: sw }
}

fn expected_pcrs() -> Vec<(u8, [u8; 32])> {
    vec![(23, predict_software_pcr(&BIN_V1, &CFG_V1))]
}

#[test]
fn quote_verifies_and_binds_everything() {
    let mut n = node();
    let nonce = [0xA1; 32];
    let att = n.store.attest(nonce, POLICY, &paths()).unwrap();
    // Travels as bytes.
    let att = Attestation::decode(&att.encode()).unwrap();
    let pcrs = expected_pcrs();
    let xpubs: Vec<_> = paths().iter().map(|p| n.store.xpub(p).unwrap()).collect();
    let nv = n.store.tpm().read_counter().unwrap();
    let exp = Expectations {
        trusted_ak: &n.ak,
        nonce,
        pcrs: &pcrs,
        policy_hash: Some(POLICY),
        xpubs: Some(&xpubs),
        min_nv_counter: Some(nv),
    };
    let v = verify_attestation(&att, &exp).unwrap();
    assert_eq!(v.binding.xpubs, xpubs);
    assert_eq!(v.binding.nv_counter, nv);
    assert_eq!(att.reported_pcrs, pcrs);
    // The AK is stable: asking again gives the same public key.
    assert_eq!(n.store.tpm().ak_public().unwrap(), n.ak);

    // Wrong nonce (the ground expected another one).
    let e = Expectations {
        nonce: [0xA2; 32],
        ..exp.clone()
    };
    assert!(matches!(
        verify_attestation(&att, &e),
        Err(VerifyError::NonceMismatch { .. })
    ));

    // Replay: an old quote presented for a new request.
    let fresh_nonce = [0xB0; 32];
    let e = Expectations {
        nonce: fresh_nonce,
        ..exp.clone()
    };
    let r = verify_attestation(&att, &e);
    assert!(matches!(r, Err(VerifyError::NonceMismatch { .. })), "{r:?}");
    // ... even if the attacker rewrites the carried nonce, the signed
    // extraData still binds the old one.
    let mut forged = att.clone();
    forged.binding.nonce = fresh_nonce;
    let r = verify_attestation(&forged, &e);
    assert!(matches!(r, Err(VerifyError::BindingMismatch)), "{r:?}");

    // Tampered bound values.
    let mut t = att.clone();
    t.binding.policy_hash = [0x51; 32];
    assert!(matches!(
        verify_attestation(&t, &exp),
        Err(VerifyError::BindingMismatch)
    ));
    let mut t = att.clone();
    t.binding.nv_counter += 1;
    assert!(matches!(
        verify_attestation(&t, &exp),
        Err(VerifyError::BindingMismatch)
    ));
    let mut t = att.clone();
    t.binding.xpubs.swap(0, 1);
    assert!(matches!(
        verify_attestation(&t, &exp),
        Err(VerifyError::BindingMismatch)
    ));

    // Tampered signed message.
    let mut t = att.clone();
    let last = t.attest.len() - 1;
    t.attest[last] ^= 1;
    assert!(matches!(
        verify_attestation(&t, &exp),
        Err(VerifyError::BadSignature)
    ));

    // Expected software differs from what was measured.
    let other = vec![(23, predict_software_pcr(&BIN_V2, &CFG_V1))];
    let e = Expectations {
        pcrs: &other,
        ..exp.clone()
    };
    assert!(matches!(
        verify_attestation(&att, &e),
        Err(VerifyError::PcrDigestMismatch { .. })
    ));
    let wider = vec![
        (16, [0u8; 32]),
        (23, predict_software_pcr(&BIN_V1, &CFG_V1)),
    ];
    let e = Expectations {
        pcrs: &wider,
        ..exp.clone()
    };
    assert!(matches!(
        verify_attestation(&att, &e),
        Err(VerifyError::PcrSelectionMismatch { .. })
    ));

    // Ground expectations on bound values.
    let e = Expectations {
        policy_hash: Some([0; 32]),
        ..exp.clone()
    };
    assert!(matches!(
        verify_attestation(&att, &e),
        Err(VerifyError::UnexpectedBoundValue { .. })
    ));
    let e = Expectations {
        min_nv_counter: Some(nv + 1),
        ..exp.clone()
    };
    assert!(matches!(
        verify_attestation(&att, &e),
        Err(VerifyError::UnexpectedBoundValue { .. })
    ));

    // Qualified signer: the TPM's own view of the AK agrees with ours.
    let q = parse_quote(&att.attest).unwrap();
    assert_eq!(
        q.qualified_signer,
        n.ak.qualified_name_endorsement_primary()
    );
}

#[test]
fn quote_from_another_ak_is_rejected() {
    let mut a = node();
    let mut b = node();
    assert_ne!(a.ak, b.ak);
    let nonce = [7; 32];
    let att_b = b.store.attest(nonce, POLICY, &paths()).unwrap();
    let pcrs = expected_pcrs();
    let exp = Expectations {
        trusted_ak: &a.ak,
        nonce,
        pcrs: &pcrs,
        policy_hash: None,
        xpubs: None,
        min_nv_counter: None,
    };
    assert!(matches!(
        verify_attestation(&att_b, &exp),
        Err(VerifyError::UnknownAk { .. })
    ));
    // Claiming the trusted AK with the other TPM's signature fails the
    // signature check.
    let mut forged = att_b.clone();
    forged.ak_public = a.ak.tpmt_public().to_vec();
    assert!(matches!(
        verify_attestation(&forged, &exp),
        Err(VerifyError::BadSignature)
    ));
    // Sanity: a's own quote passes.
    let att_a = a.store.attest(nonce, POLICY, &paths()).unwrap();
    verify_attestation(&att_a, &exp).unwrap();
}

#[test]
fn soft_backend_cannot_attest() {
    let dir = tempfile::tempdir().unwrap();
    let s = spacenode_keys::SoftKeyStore::create(
        &dir.path().join("seed"),
        spacenode_keys::Profile::Development,
        NetworkKind::Test,
    )
    .unwrap();
    let mut ks = KeyStore::from(s);
    let e = ks.attest([0; 32], POLICY, &paths()).unwrap_err();
    assert_eq!(e.code(), 0x0411);
}

fn checkquote(dir: &Path, ak: &AkPublic, att: &Attestation, nonce_hex: &str) -> (bool, String) {
    std::fs::write(dir.join("ak.pem"), ak.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("quote.msg"), &att.attest).unwrap();
    std::fs::write(dir.join("quote.sig"), att.tpmt_signature()).unwrap();
    let pcr_bytes: Vec<u8> = expected_pcrs().iter().flat_map(|(_, v)| *v).collect();
    std::fs::write(dir.join("pcrs.bin"), pcr_bytes).unwrap();
    let out = Command::new("tpm2_checkquote")
        .current_dir(dir)
        .args([
            "-u",
            "ak.pem",
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-f",
            "pcrs.bin",
            "-l",
            "sha256:23",
            "-g",
            "sha256",
            "-q",
            nonce_hex,
        ])
        .output()
        .expect("tpm2_checkquote (tpm2-tools) installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn tpm2_checkquote_agrees() {
    let mut n = node();
    let nonce = [0xC3; 32];
    let att = n.store.attest(nonce, POLICY, &paths()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let binding = hex::encode(spacenode_keys::attest::binding_digest(&att.binding));
    let (ok, text) = checkquote(dir.path(), &n.ak, &att, &binding);
    assert!(ok, "tpm2_checkquote rejected our quote:\n{text}");
    // And it rejects the same quote for other qualifying data (so the check
    // above is meaningful).
    let (ok, _) = checkquote(dir.path(), &n.ak, &att, &"00".repeat(32));
    assert!(!ok, "tpm2_checkquote accepted a wrong nonce");
    // Our verifier agrees with both outcomes.
    let pcrs = expected_pcrs();
    verify_attestation(
        &att,
        &Expectations {
            trusted_ak: &n.ak,
            nonce,
            pcrs: &pcrs,
            policy_hash: None,
            xpubs: None,
            min_nv_counter: None,
        },
    )
    .unwrap();
}
