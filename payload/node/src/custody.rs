//! Key custody at start: opens the key store (TPM, or the development-only
//! seed file), measures this binary and its config into the TPM, checks the
//! anti-rollback counter against the database epoch, unseals or provisions
//! the BIP32 seed, and unseals or provisions the link keys.
//!
//! Sealed blobs live as files in `state_dir/sealed/` (written atomically),
//! not in the database: a corrupt or lost database must not take the link
//! keys with it, or the node could never be told what to do.
//!
//! Two kinds of failure, treated differently on purpose:
//! - the link keys cannot be opened: fatal ([`CustodyError`]); without them
//!   the node cannot hear the ground, and restarting (the watchdog, then a
//!   reboot) is the only remedy;
//! - the seed cannot be opened, the software measurement changed, or the
//!   database is older than the TPM counter: a [`Fault`]; the node runs in
//!   safe mode, keeps the link and signs nothing.
//!
//! Signing goes through one type whatever the backend: [`CustodySigner`]
//! presents the seed's key store (TPM-sealed, or the development seed
//! file) as the signer seam of both chains
//! (`spacenode_policy::signer::KeySigner`).
//!
//! This module must never log or return secret bytes other than the link
//! keys handed to the link layer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitcoin::NetworkKind;
use bitcoin::bip32::{DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{PublicKey, ecdsa, schnorr};
use spacenode_keys::{
    AuthValue, EpochStatus, KeyError, KeyStore, Profile as KeyProfile, SchnorrTweak, SealedBlob,
    Secret32, Signer, SoftKeyStore, Tpm, TpmConfig, TpmKeyStore,
};
use spacenode_policy::signer::{KeySigner, SignerError};
use spacenode_wire::security::LinkKey;

use crate::config::{Config, KeyNetwork, KeysConfig, Profile};
use crate::health::mode::SafeReason;
use crate::store::{Store, StoreError};

/// Name of the seed blob.
const SEED_BLOB: &str = "bip32-seed";

/// Why custody could not give the node its link keys.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// The key store refused (no TPM, lockout, corrupt link-key blob, ...).
    #[error("key store: {0}")]
    Key(#[from] KeyError),
    /// A sealed blob file could not be read or written.
    #[error("sealed blob {path}: {source}")]
    Blob {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configured link key is neither provisioned in the config nor
    /// sealed, or differs from the sealed one.
    #[error("link key {id}: {problem}")]
    LinkKey {
        /// Key id.
        id: u16,
        /// What is wrong.
        problem: &'static str,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CustodyError {
    /// The reason code of the underlying failure.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Key(k) => k.code(),
            Self::Store(s) => s.code().0,
            // A sealed blob the node cannot use is the key store's "blob
            // corrupt", whichever layer noticed it.
            // shared code: KeyError::BlobCorrupt
            Self::Blob { .. } | Self::LinkKey { .. } => 0x0405,
        }
    }
}

/// Why signing is unavailable although the link works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The safe-mode reason.
    pub reason: SafeReason,
    /// What happened, for the log.
    pub detail: String,
}

/// The result of opening custody.
pub struct Custody {
    /// The seed's key store, if it could be opened.
    pub keys: Option<KeyStore>,
    /// The TPM, when the seed could not be opened but the TPM works (for
    /// sealing rekeyed link keys and the counter).
    pub tpm: Option<Tpm>,
    /// The soft backend's secret sealer, when the seed is soft.
    pub soft_sealer: Option<SoftKeyStore>,
    /// Link keys (id, key), unsealed.
    pub link_keys: Vec<(u16, LinkKey)>,
    /// A reason for safe mode, if any.
    pub fault: Option<Fault>,
    /// The database is new but the state directory held sealed state from
    /// an earlier start (a seed blob, a link-key blob or a retired key's
    /// tombstone): the database was lost, so every sequence bound must
    /// jump, whether or not the seed blob survived.
    pub db_lost: bool,
    /// Time from connect to the seed being usable.
    pub open_time: Duration,
}

impl core::fmt::Debug for Custody {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Custody")
            .field("seed", &self.keys.is_some())
            .field(
                "link_keys",
                &self.link_keys.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

/// The seed's key store, TPM or development seed, as the one signer seam
/// of both chains: only public keys and self-checked signatures come out
/// (the seed stays inside `spacenode-keys`).
pub struct CustodySigner<'a>(pub &'a KeyStore);

fn signer_error(e: &KeyError) -> SignerError {
    SignerError {
        code: e.code(),
        detail: e.to_string(),
    }
}

impl KeySigner for CustodySigner<'_> {
    fn master_fingerprint(&self) -> Fingerprint {
        Signer::master_fingerprint(self.0)
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        Signer::xpub(self.0, path).map_err(|e| signer_error(&e))
    }

    fn public_key(&self, path: &DerivationPath) -> Result<PublicKey, SignerError> {
        Signer::public_key(self.0, path).map_err(|e| signer_error(&e))
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        Signer::sign_ecdsa(self.0, path, digest).map_err(|e| signer_error(&e))
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        Signer::sign_ecdsa_recoverable(self.0, path, digest).map_err(|e| signer_error(&e))
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        Signer::sign_schnorr(self.0, path, msg, SchnorrTweak::None).map_err(|e| signer_error(&e))
    }
}

fn sealed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sealed")
}

fn blob_path(state_dir: &Path, name: &str) -> PathBuf {
    sealed_dir(state_dir).join(format!("{name}.blob"))
}

/// The blob name of a link key.
#[must_use]
pub fn link_key_name(id: u16) -> String {
    format!("link-key-{id}")
}

fn read_blob(state_dir: &Path, name: &str) -> Result<Option<SealedBlob>, CustodyError> {
    let path = blob_path(state_dir, name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(SealedBlob::decode(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CustodyError::Blob { path, source }),
    }
}

/// Writes a blob durably: temp file, fsync, rename, fsync directory.
///
/// # Errors
/// [`CustodyError::Blob`].
pub fn write_blob(state_dir: &Path, name: &str, blob: &SealedBlob) -> Result<(), CustodyError> {
    use std::io::Write;
    let dir = sealed_dir(state_dir);
    let path = blob_path(state_dir, name);
    let io = |source| CustodyError::Blob {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&blob.encode()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

fn tombstone_path(state_dir: &Path, id: u16) -> PathBuf {
    sealed_dir(state_dir).join(format!("{}.retired", link_key_name(id)))
}

/// Retires a link key for good: a tombstone first (so neither a restored
/// database nor a plaintext key left in the config can bring it back),
/// then the blob goes.
pub fn remove_link_blob(state_dir: &Path, id: u16) {
    let tomb = tombstone_path(state_dir, id);
    if let Err(e) = std::fs::write(&tomb, b"retired\n") {
        tracing::warn!(path = %tomb.display(), error = %e, "cannot record a retired key");
    }
    let path = blob_path(state_dir, &link_key_name(id));
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a retired key's blob");
    }
}

/// Whether the state directory holds anything sealed by an earlier start
/// (any blob or tombstone), checked before this start provisions anything.
fn lived_before(state_dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(sealed_dir(state_dir)) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        e.file_name().to_str().is_some_and(|n| {
            !n.starts_with('.') && (n.ends_with(".blob") || n.ends_with(".retired"))
        })
    })
}

/// Link key ids with a sealed blob.
fn sealed_link_ids(state_dir: &Path) -> Vec<u16> {
    let Ok(entries) = std::fs::read_dir(sealed_dir(state_dir)) else {
        return Vec::new();
    };
    let mut ids: Vec<u16> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("link-key-"))
                .and_then(|n| n.strip_suffix(".blob"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Copies 32 bytes into locked secret memory.
///
/// # Errors
/// [`KeyError`] if locked memory is unavailable.
pub fn secret_from(bytes: &[u8; 32]) -> Result<Secret32, KeyError> {
    Secret32::new_with(|b| {
        b.copy_from_slice(bytes);
        Ok(())
    })
}

/// Something that seals and unseals link keys (the TPM or the soft store).
pub enum Sealer<'a> {
    /// The TPM.
    Tpm(&'a mut Tpm),
    /// The seed's key store (either backend).
    Store(&'a mut KeyStore),
    /// The soft store.
    Soft(&'a SoftKeyStore),
}

impl Sealer<'_> {
    /// Seals a link key (not bound to the software measurement).
    ///
    /// # Errors
    /// Backend errors.
    pub fn seal_link(&mut self, name: &str, secret: &Secret32) -> Result<SealedBlob, KeyError> {
        match self {
            Self::Tpm(t) => t.seal_link_secret(name, secret),
            Self::Store(k) => k.seal_link_secret(name, secret),
            Self::Soft(s) => s.seal_secret(name, secret),
        }
    }

    fn unseal(&mut self, blob: &SealedBlob, name: &str) -> Result<Secret32, KeyError> {
        match self {
            Self::Tpm(t) => t.unseal_secret(blob, name),
            Self::Store(k) => k.unseal_secret(blob, name),
            Self::Soft(s) => s.unseal_secret(blob, name),
        }
    }
}

/// Provisions configured link keys and unseals every sealed, non-retired
/// one.
fn open_link_keys(
    cfg: &Config,
    sealer: &mut Sealer<'_>,
    retired: &[u16],
) -> Result<Vec<(u16, LinkKey)>, CustodyError> {
    let dir = &cfg.state_dir;
    let mut retired: Vec<u16> = retired.to_vec();
    retired.extend(
        cfg.link
            .keys
            .iter()
            .map(|k| k.id)
            .filter(|id| tombstone_path(dir, *id).exists()),
    );
    for k in &cfg.link.keys {
        if retired.contains(&k.id) {
            if k.key.is_some() {
                tracing::warn!(
                    key_id = k.id,
                    "link key in the config was retired; remove it from the config"
                );
            }
            continue;
        }
        let name = link_key_name(k.id);
        let existing = read_blob(dir, &name)?;
        match (&k.key, existing) {
            (Some(material), None) => {
                let blob = sealer.seal_link(&name, &secret_from(material.expose())?)?;
                write_blob(dir, &name, &blob)?;
                tracing::warn!(
                    key_id = k.id,
                    "link key sealed from the config; remove its `key` from the config now"
                );
            }
            (Some(material), Some(blob)) => {
                let sealed = sealer.unseal(&blob, &name)?;
                if sealed.expose() != material.expose() {
                    return Err(CustodyError::LinkKey {
                        id: k.id,
                        problem: "the config's key differs from the sealed one; remove it from the config",
                    });
                }
                tracing::warn!(
                    key_id = k.id,
                    "link key still in plaintext in the config; remove its `key`"
                );
            }
            (None, Some(_)) => {}
            (None, None) => {
                return Err(CustodyError::LinkKey {
                    id: k.id,
                    problem: "not in the config and not sealed",
                });
            }
        }
    }
    let mut keys = Vec::new();
    for id in sealed_link_ids(dir) {
        if retired.contains(&id) {
            continue;
        }
        let name = link_key_name(id);
        let Some(blob) = read_blob(dir, &name)? else {
            continue;
        };
        let secret = sealer.unseal(&blob, &name)?;
        keys.push((id, LinkKey::new(*secret.expose())));
    }
    Ok(keys)
}

fn network(cfg: &Config) -> NetworkKind {
    match cfg.key_network {
        KeyNetwork::Main => NetworkKind::Main,
        KeyNetwork::Test => NetworkKind::Test,
    }
}

fn key_profile(p: Profile) -> KeyProfile {
    match p {
        Profile::Flight => KeyProfile::Flight,
        Profile::Development => KeyProfile::Development,
    }
}

/// SHA-256 of this executable's bytes (what the TPM measurement binds).
#[must_use]
pub fn binary_sha256() -> [u8; 32] {
    use bitcoin::hashes::{Hash, sha256};
    match std::fs::read("/proc/self/exe") {
        Ok(bytes) => sha256::Hash::hash(&bytes).to_byte_array(),
        Err(e) => {
            // Without our own bytes the measurement is of nothing: measure
            // a value no build produces, so the seed stays sealed.
            tracing::error!(error = %e, "cannot read /proc/self/exe for the measurement");
            [0xFF; 32]
        }
    }
}

/// Opens custody. `db_was_fresh`: the database was created by this start
/// (a provisioned node whose database vanished is a rollback).
///
/// # Errors
/// [`CustodyError`] when the link keys cannot be opened.
pub fn open(cfg: &Config, store: &mut Store, db_was_fresh: bool) -> Result<Custody, CustodyError> {
    let retired = store.retired_key_ids()?;
    let started = Instant::now();
    let provisioned_before = blob_path(&cfg.state_dir, SEED_BLOB).exists();
    let db_lost = db_was_fresh && lived_before(&cfg.state_dir);
    match &cfg.keys {
        KeysConfig::Soft { seed_file } => {
            let soft = if seed_file.exists() {
                SoftKeyStore::open(seed_file, key_profile(cfg.profile), network(cfg))?
            } else {
                SoftKeyStore::create(seed_file, key_profile(cfg.profile), network(cfg))?
            };
            let link_keys = open_link_keys(cfg, &mut Sealer::Soft(&soft), &retired)?;
            // The soft store seals link secrets with the same seed file; a
            // second handle keeps sealing available next to the signer.
            let sealer = SoftKeyStore::open(seed_file, key_profile(cfg.profile), network(cfg))?;
            let fault = (db_was_fresh && provisioned_before).then(|| Fault {
                reason: SafeReason::RollbackDetected,
                detail: "the database is new but the node was provisioned before".into(),
            });
            Ok(Custody {
                keys: Some(KeyStore::from(soft)),
                tpm: None,
                soft_sealer: Some(sealer),
                link_keys,
                fault,
                db_lost,
                open_time: started.elapsed(),
            })
        }
        KeysConfig::Tpm {
            tcti,
            seal_auth,
            software_pcr,
            seal_pcrs,
        } => {
            let connect = || -> Result<Tpm, KeyError> {
                let mut tc = TpmConfig::new(tcti.clone(), AuthValue::new(seal_auth)?);
                tc.software_pcr = *software_pcr;
                // The seed: boot PCRs (their values now) and the software
                // measurement. Link keys: no PCRs (`link_pcrs` empty), so
                // a changed boot chain or binary still hears the ground.
                tc.policy_pcrs = seal_pcrs.clone();
                Tpm::connect(tc, key_profile(cfg.profile))
            };
            let mut tpm = connect()?;
            tpm.measure_software(&binary_sha256(), &cfg.source_sha256)?;
            let link_keys = open_link_keys(cfg, &mut Sealer::Tpm(&mut tpm), &retired)?;
            let mut fault = check_rollback(&mut tpm, store, db_was_fresh && provisioned_before)?;
            let seed = match read_blob(&cfg.state_dir, SEED_BLOB) {
                // A blob file that does not decode is a corrupt seed, not a
                // reason to lose the link.
                Err(e) => Err(KeyError::BlobCorrupt { reason: e.to_string() }),
                Ok(Some(blob)) => TpmKeyStore::open(tpm, &blob, network(cfg)),
                Ok(None) => TpmKeyStore::provision(tpm, network(cfg)).and_then(|(store, blob)| {
                    write_blob(&cfg.state_dir, SEED_BLOB, &blob).map_err(|e| KeyError::Config { reason: e.to_string() })?;
                    tracing::info!(fingerprint = %spacenode_keys::Signer::master_fingerprint(&store), "seed generated and sealed");
                    Ok(store)
                }),
            };
            match seed {
                Ok(ks) => Ok(Custody {
                    keys: Some(KeyStore::from(ks)),
                    tpm: None,
                    soft_sealer: None,
                    link_keys,
                    fault,
                    db_lost,
                    open_time: started.elapsed(),
                }),
                Err(e) => {
                    let reason = if matches!(e, KeyError::PcrMismatch { .. }) {
                        SafeReason::PcrMismatch
                    } else {
                        SafeReason::TpmUnseal
                    };
                    tracing::error!(error = %e, "the seed cannot be opened; signing is unavailable");
                    fault.get_or_insert(Fault {
                        reason,
                        detail: e.to_string(),
                    });
                    // The failed open consumed the connection; reconnect for
                    // sealing rekeyed link keys (no new measurement: the
                    // PCR keeps this start's value).
                    let tpm = connect().ok();
                    Ok(Custody {
                        keys: None,
                        tpm,
                        soft_sealer: None,
                        link_keys,
                        fault,
                        db_lost,
                        open_time: started.elapsed(),
                    })
                }
            }
        }
    }
}

/// Database epoch against the TPM counter.
fn check_rollback(
    tpm: &mut Tpm,
    store: &mut Store,
    db_lost: bool,
) -> Result<Option<Fault>, CustodyError> {
    let nv = tpm.provision_counter()?;
    let Some(db_epoch) = store.epoch()? else {
        store.set_epoch(nv)?;
        return Ok(db_lost.then(|| Fault {
            reason: SafeReason::RollbackDetected,
            detail: "the database is new but the node was provisioned before".into(),
        }));
    };
    match tpm.check_epoch(db_epoch) {
        Ok(EpochStatus::InSync { .. }) => Ok(None),
        Ok(EpochStatus::InterruptedBump { target }) => {
            tpm.complete_epoch_bump(target)?;
            tracing::info!(
                target,
                "completed an epoch bump interrupted by the last stop"
            );
            Ok(None)
        }
        Err(e @ (KeyError::RollbackDetected { .. } | KeyError::EpochAhead { .. })) => {
            tracing::error!(error = %e, "anti-rollback check failed");
            Ok(Some(Fault {
                reason: SafeReason::RollbackDetected,
                detail: e.to_string(),
            }))
        }
        Err(e) => Err(e.into()),
    }
}
