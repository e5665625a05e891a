//! Typed errors for the failure cases the ground must tell apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

mod common;

use bitcoin::NetworkKind;
use common::*;
use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{
    AuthValue, KeyError, Profile, SealedBlob, SoftKeyStore, Tpm, TpmConfig, TpmKeyStore,
};
use std::net::TcpListener;

#[test]
fn no_tpm_on_a_closed_port() {
    // A port nobody listens on: bind, learn the number, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = TpmConfig::new(
        format!("swtpm:host=127.0.0.1,port={port}"),
        AuthValue::default(),
    );
    let err = Tpm::connect(cfg, Profile::Development).unwrap_err();
    assert!(matches!(err, KeyError::NoTpm { .. }), "{err:?}");
    assert_eq!(err.code(), 0x0401);
    assert!(err.to_string().starts_with("no tpm reachable"));
}

#[test]
fn no_tpm_without_a_device_node() {
    let cfg = TpmConfig::new("device:/nonexistent/tpmrm9", AuthValue::default());
    let err = Tpm::connect(cfg, Profile::Flight).unwrap_err();
    assert!(matches!(err, KeyError::NoTpm { .. }), "{err:?}");
}

#[test]
fn flight_profile_refuses_swtpm_tcti() {
    let cfg = TpmConfig::new("swtpm:host=127.0.0.1,port=2321", AuthValue::default());
    let err = Tpm::connect(cfg, Profile::Flight).unwrap_err();
    assert!(matches!(err, KeyError::InvalidTcti { .. }), "{err:?}");
    assert_eq!(err.code(), 0x0407);
}

#[test]
fn corrupted_blobs_are_blob_corrupt() {
    let sw = Swtpm::start().unwrap();
    let tpm = boot(&sw, &BIN_V1, &CFG_V1);
    let (_store, blob) = TpmKeyStore::provision(tpm, NetworkKind::Test).unwrap();
    let bytes = blob.encode();

    // A flipped bit anywhere is caught by the checksum before the TPM.
    let mut c = bytes.clone();
    c[bytes.len() / 2] ^= 0x10;
    let err = SealedBlob::decode(&c).unwrap_err();
    assert!(matches!(err, KeyError::BlobCorrupt { .. }), "{err:?}");
    assert_eq!(err.code(), 0x0405);
    assert!(SealedBlob::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(SealedBlob::decode(b"").is_err());
}

#[test]
fn tampered_private_part_is_refused_by_the_tpm() {
    let sw = Swtpm::start().unwrap();
    let mut tpm = boot(&sw, &BIN_V1, &CFG_V1);
    let (_, blob) = tpm.test_generate_seed().unwrap();
    // Re-encode with a modified private part and a valid checksum (an
    // attacker or a bug that rewrites the blob consistently): the TPM's
    // integrity check on load catches it.
    let bytes = blob.encode();
    let name_len = usize::from(bytes[7]);
    let pcr_count = usize::from(bytes[8 + name_len]);
    let pub_len_at = 8 + name_len + 1 + pcr_count + 32;
    let pub_len = usize::from(u16::from_be_bytes([
        bytes[pub_len_at],
        bytes[pub_len_at + 1],
    ]));
    let priv_at = pub_len_at + 2 + pub_len + 2;
    let mut body = bytes[..bytes.len() - 32].to_vec();
    body[priv_at + 20] ^= 0x01;
    let sum = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"spacenode/sealed-blob/v1");
        h.update(&body);
        h.finalize()
    };
    body.extend_from_slice(&sum);
    let tampered = SealedBlob::decode(&body).unwrap();
    let err = tpm.test_unseal_seed(&tampered).unwrap_err();
    assert!(matches!(err, KeyError::BlobCorrupt { .. }), "{err:?}");
}

#[test]
fn soft_backend_refused_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seed");
    let err = SoftKeyStore::create(&p, Profile::Flight, NetworkKind::Main).unwrap_err();
    assert_eq!(err, KeyError::SoftBackendRefused);
    assert_eq!(err.code(), 0x0406);
    assert!(!p.exists(), "flight refusal must not create a file");
    SoftKeyStore::create(&p, Profile::Development, NetworkKind::Main).unwrap();
    let err = SoftKeyStore::open(&p, Profile::Flight, NetworkKind::Main).unwrap_err();
    assert_eq!(err, KeyError::SoftBackendRefused);
}
