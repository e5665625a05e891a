//! The development soft backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

use bitcoin::NetworkKind;
use bitcoin::bip32::DerivationPath;
use spacenode_keys::{BlobBackend, KeyError, KeyStore, Profile, Signer, SoftKeyStore};
use std::os::unix::fs::PermissionsExt;
use std::str::FromStr;

#[test]
fn create_open_sign_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seed");
    let a = SoftKeyStore::create(&p, Profile::Development, NetworkKind::Test).unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let b = SoftKeyStore::open(&p, Profile::Development, NetworkKind::Test).unwrap();
    let m = DerivationPath::master();
    assert_eq!(a.xpub(&m).unwrap(), b.xpub(&m).unwrap());
    assert!(a.xpub(&m).unwrap().to_string().starts_with("tpub"));
    assert!(SoftKeyStore::create(&p, Profile::Development, NetworkKind::Test).is_err());

    let mut ks = KeyStore::from(b);
    assert_eq!(ks.backend(), BlobBackend::Soft);
    assert!(ks.tpm().is_none());
    let path = DerivationPath::from_str("m/44'/60'/0'/0/0").unwrap();
    let sig = ks.sign_ecdsa_recoverable(&path, &[3; 32]).unwrap();
    assert_eq!(sig.to_standard(), ks.sign_ecdsa(&path, &[3; 32]).unwrap());

    let (k, blob) = ks.generate_secret("link.0").unwrap();
    assert_eq!(ks.unseal_secret(&blob, "link.0").unwrap(), k);
    assert!(matches!(
        ks.unseal_secret(&blob, "link.1"),
        Err(KeyError::BlobMismatch { .. })
    ));
}

#[test]
fn bad_seed_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("seed");
    std::fs::write(&p, [1u8; 31]).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = SoftKeyStore::open(&p, Profile::Development, NetworkKind::Test).unwrap_err();
    assert!(matches!(e, KeyError::SeedFile { .. }), "{e:?}");
    std::fs::write(&p, [1u8; 32]).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = SoftKeyStore::open(&p, Profile::Development, NetworkKind::Test).unwrap_err();
    assert!(matches!(e, KeyError::SeedFile { .. }), "{e:?}");
    let e = SoftKeyStore::open(
        &dir.path().join("missing"),
        Profile::Development,
        NetworkKind::Test,
    )
    .unwrap_err();
    assert_eq!(e.code(), 0x040D);
}
