//! The development-only software backend: the seed is a 32-byte file.
//!
//! Owns: [`SoftKeyStore`] and the seed-file format (exactly 32 raw bytes,
//! mode 0600).
//!
//! Must never: open in the [`Profile::Flight`] profile (it refuses with
//! [`KeyError::SoftBackendRefused`] before touching the file), or open
//! silently (every open logs a loud `tracing` warning).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bitcoin::NetworkKind;
use bitcoin::bip32::{DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::{ecdsa, schnorr};
use rand::TryRngCore;

use crate::Profile;
use crate::blob::{BlobBackend, BlobKind, SealedBlob, check_name, payload_tag};
use crate::error::KeyError;
use crate::secret_mem::SecretBox;
use crate::signer::{SEED_LEN, SchnorrTweak, SeedSigner, Signer};
use crate::tpm::Secret32;

/// Key store whose seed lives in a plain file. For laptops and CI only.
#[derive(Debug)]
pub struct SoftKeyStore {
    signer: SeedSigner,
    path: PathBuf,
}

fn refuse_in_flight(profile: Profile) -> Result<(), KeyError> {
    if profile == Profile::Flight {
        tracing::error!("soft key backend requested in the flight profile: refused");
        return Err(KeyError::SoftBackendRefused);
    }
    Ok(())
}

fn seed_err(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::SeedFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn warn_loudly(path: &Path) {
    tracing::warn!(
        path = %path.display(),
        "SOFT KEY BACKEND IN USE: the signing seed is a plain file on disk. \
         Development only; never fly this."
    );
}

impl SoftKeyStore {
    /// Opens an existing seed file.
    ///
    /// # Errors
    /// [`KeyError::SoftBackendRefused`] in the flight profile;
    /// [`KeyError::SeedFile`] if the file is missing, not exactly 32 bytes,
    /// or readable by group/others.
    pub fn open(path: &Path, profile: Profile, network: NetworkKind) -> Result<Self, KeyError> {
        refuse_in_flight(profile)?;
        warn_loudly(path);
        let mut f = File::open(path).map_err(|e| seed_err(path, e.to_string()))?;
        let meta = f.metadata().map_err(|e| seed_err(path, e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(seed_err(path, "readable by group or others (chmod 600)"));
        }
        if meta.len() != SEED_LEN as u64 {
            return Err(seed_err(
                path,
                format!("is {} bytes, expected {SEED_LEN}", meta.len()),
            ));
        }
        // Read straight into locked memory: no heap copy of the seed.
        let seed = SecretBox::new_with(|buf| {
            f.read_exact(buf)
                .map_err(|e| seed_err(path, e.to_string()))?;
            let mut extra = [0u8; 1];
            match f.read(&mut extra) {
                Ok(0) => Ok(()),
                Ok(_) => Err(seed_err(path, "longer than 32 bytes")),
                Err(e) => Err(seed_err(path, e.to_string())),
            }
        })?;
        Ok(SoftKeyStore {
            signer: SeedSigner::new(seed, network)?,
            path: path.to_owned(),
        })
    }

    /// Creates a new seed file (fails if it exists) from the OS RNG, mode
    /// 0600, and opens it.
    ///
    /// # Errors
    /// As [`SoftKeyStore::open`], plus [`KeyError::Random`].
    pub fn create(path: &Path, profile: Profile, network: NetworkKind) -> Result<Self, KeyError> {
        refuse_in_flight(profile)?;
        let seed = SecretBox::<SEED_LEN>::new_with(|buf| {
            rand::rngs::OsRng
                .try_fill_bytes(buf)
                .map_err(|e| KeyError::Random {
                    source_name: "os",
                    detail: e.to_string(),
                })
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| seed_err(path, e.to_string()))?;
        f.write_all(seed.expose())
            .and_then(|()| f.sync_all())
            .map_err(|e| seed_err(path, e.to_string()))?;
        drop(seed);
        Self::open(path, profile, network)
    }

    /// Path of the seed file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// "Seals" a named secret for the soft backend: the blob carries it in
    /// plaintext (development only; the TPM backend refuses such blobs).
    ///
    /// # Errors
    /// [`KeyError::Config`] for a bad name.
    pub fn seal_secret(&self, name: &str, secret: &Secret32) -> Result<SealedBlob, KeyError> {
        check_name(name)?;
        let mut private = Vec::with_capacity(64);
        private.extend_from_slice(secret.expose());
        private.extend_from_slice(&payload_tag(BlobKind::Secret, name));
        let blob = SealedBlob {
            backend: BlobBackend::Soft,
            kind: BlobKind::Secret,
            name: name.to_owned(),
            pcrs: Vec::new(),
            pcr_digest: [0; 32],
            public: Vec::new(),
            private,
        };
        blob.validate()?;
        Ok(blob)
    }

    /// Generates a named secret from the OS RNG and "seals" it.
    ///
    /// # Errors
    /// As [`SoftKeyStore::seal_secret`], plus [`KeyError::Random`].
    pub fn generate_secret(&self, name: &str) -> Result<(Secret32, SealedBlob), KeyError> {
        let s = SecretBox::new_with(|buf| {
            rand::rngs::OsRng
                .try_fill_bytes(buf)
                .map_err(|e| KeyError::Random {
                    source_name: "os",
                    detail: e.to_string(),
                })
        })?;
        let b = self.seal_secret(name, &s)?;
        Ok((s, b))
    }

    /// Opens a soft blob of a named secret.
    ///
    /// # Errors
    /// [`KeyError::BlobMismatch`] for a TPM blob or another name.
    pub fn unseal_secret(&self, blob: &SealedBlob, name: &str) -> Result<Secret32, KeyError> {
        check_name(name)?;
        if blob.backend != BlobBackend::Soft {
            return Err(KeyError::BlobMismatch {
                expected: "a soft-backend blob".into(),
                found: "a tpm blob".into(),
            });
        }
        let (secret, tag) = blob.private.split_at(32.min(blob.private.len()));
        if blob.kind != BlobKind::Secret
            || blob.name != name
            || tag != payload_tag(BlobKind::Secret, name)
        {
            return Err(KeyError::BlobMismatch {
                expected: format!("secret {name:?}"),
                found: format!("{:?} {:?}", blob.kind, blob.name),
            });
        }
        SecretBox::new_with(|b| {
            b.copy_from_slice(secret);
            Ok(())
        })
    }
}

impl Signer for SoftKeyStore {
    fn master_fingerprint(&self) -> Fingerprint {
        self.signer.master_fingerprint()
    }
    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, KeyError> {
        self.signer.xpub(path)
    }
    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, KeyError> {
        self.signer.sign_ecdsa(path, digest)
    }
    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::RecoverableSignature, KeyError> {
        self.signer.sign_ecdsa_recoverable(path, digest)
    }
    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
        tweak: SchnorrTweak,
    ) -> Result<schnorr::Signature, KeyError> {
        self.signer.sign_schnorr(path, msg, tweak)
    }
}
