//! The key store the daemon holds: [`TpmKeyStore`] (flight) and the
//! [`KeyStore`] enum over both backends.
//!
//! Owns: the life cycle "connect → measure → provision or open → sign,
//! attest, seal link keys", and the delegation of [`Signer`] to the seed.
//!
//! Must never: expose the seed or a private key; attest xpubs it did not
//! derive itself.

use bitcoin::NetworkKind;
use bitcoin::bip32::{DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::{ecdsa, schnorr};

use crate::attest::{Attestation, Binding, MAX_XPUBS};
use crate::blob::{BlobBackend, SealedBlob};
use crate::error::KeyError;
use crate::signer::{SchnorrTweak, SeedSigner, Signer};
use crate::soft::SoftKeyStore;
use crate::tpm::{Secret32, Tpm};

/// Key store backed by the TPM: the seed was unsealed from a TPM blob (or
/// generated and sealed on this node) and lives in locked memory.
#[derive(Debug)]
pub struct TpmKeyStore {
    tpm: Tpm,
    signer: SeedSigner,
}

impl TpmKeyStore {
    /// On-orbit key generation: creates a new seed from the TPM RNG mixed
    /// with the OS RNG, seals it to the current policy PCRs (measure the
    /// software first) and returns the store plus the blob for the daemon to
    /// persist. Only the xpubs derived from it ever leave the node.
    ///
    /// # Errors
    /// TPM, RNG and secret-memory errors.
    pub fn provision(mut tpm: Tpm, network: NetworkKind) -> Result<(Self, SealedBlob), KeyError> {
        let (seed, blob) = tpm.generate_seed()?;
        let signer = SeedSigner::new(seed, network)?;
        tracing::info!(fingerprint = %signer.master_fingerprint(), "new seed provisioned");
        Ok((TpmKeyStore { tpm, signer }, blob))
    }

    /// Opens the store by unsealing the seed blob.
    ///
    /// # Errors
    /// [`KeyError::PcrMismatch`] if the measured software or configuration
    /// changed since sealing; [`KeyError::BlobCorrupt`],
    /// [`KeyError::AuthFail`], [`KeyError::TpmLockout`], TPM errors.
    pub fn open(mut tpm: Tpm, blob: &SealedBlob, network: NetworkKind) -> Result<Self, KeyError> {
        let seed = tpm.unseal_seed(blob)?;
        let signer = SeedSigner::new(seed, network)?;
        tracing::info!(fingerprint = %signer.master_fingerprint(), "seed unsealed");
        Ok(TpmKeyStore { tpm, signer })
    }

    /// The TPM connection (counter, link keys, measurement, DA status).
    pub fn tpm(&mut self) -> &mut Tpm {
        &mut self.tpm
    }

    /// Closes the store (the seed is zeroized) and returns the connection.
    #[must_use]
    pub fn into_tpm(self) -> Tpm {
        self.tpm
    }

    /// Seals the seed again for the software PCR value a software update
    /// will measure (see [`crate::pcr::predict_software_pcr`]). Keep the old
    /// blob until the new slot is marked good: an A/B rollback boots the old
    /// software, which needs the old blob.
    ///
    /// # Errors
    /// TPM errors.
    pub fn reseal_seed_for(
        &mut self,
        software_pcr_value: [u8; 32],
    ) -> Result<SealedBlob, KeyError> {
        self.tpm
            .seal_seed_for(self.signer.seed(), software_pcr_value)
    }

    /// Produces an attestation for the ground: a TPM quote over the policy
    /// PCRs whose qualifying data binds `nonce`, the xpubs at `paths`
    /// (derived here, from the unsealed seed), `policy_hash` and the current
    /// NV counter value.
    ///
    /// # Errors
    /// [`KeyError::Config`] for more than 16 paths; derivation, counter and
    /// TPM errors.
    pub fn attest(
        &mut self,
        nonce: [u8; 32],
        policy_hash: [u8; 32],
        paths: &[DerivationPath],
    ) -> Result<Attestation, KeyError> {
        if paths.len() > MAX_XPUBS {
            return Err(KeyError::Config {
                reason: format!("at most {MAX_XPUBS} xpubs per attestation"),
            });
        }
        let xpubs = paths
            .iter()
            .map(|p| self.signer.xpub(p))
            .collect::<Result<Vec<_>, _>>()?;
        let nv_counter = self.tpm.read_counter()?;
        self.tpm.quote(Binding {
            nonce,
            xpubs,
            policy_hash,
            nv_counter,
        })
    }
}

impl Signer for TpmKeyStore {
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

/// Either backend, behind one type for the daemon.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one long-lived instance per daemon; boxing would buy nothing"
)]
pub enum KeyStore {
    /// TPM-sealed seed (flight).
    Tpm(TpmKeyStore),
    /// Seed file (development only).
    Soft(SoftKeyStore),
}

impl From<TpmKeyStore> for KeyStore {
    fn from(k: TpmKeyStore) -> Self {
        KeyStore::Tpm(k)
    }
}

impl From<SoftKeyStore> for KeyStore {
    fn from(k: SoftKeyStore) -> Self {
        KeyStore::Soft(k)
    }
}

impl KeyStore {
    /// Which backend this is.
    #[must_use]
    pub fn backend(&self) -> BlobBackend {
        match self {
            KeyStore::Tpm(_) => BlobBackend::Tpm,
            KeyStore::Soft(_) => BlobBackend::Soft,
        }
    }

    /// The TPM connection, if this is the TPM backend.
    pub fn tpm(&mut self) -> Option<&mut Tpm> {
        match self {
            KeyStore::Tpm(k) => Some(k.tpm()),
            KeyStore::Soft(_) => None,
        }
    }

    /// Seals an existing named 32-byte secret (e.g. a link key).
    ///
    /// # Errors
    /// Backend errors.
    pub fn seal_secret(&mut self, name: &str, secret: &Secret32) -> Result<SealedBlob, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.tpm.seal_secret(name, secret),
            KeyStore::Soft(k) => k.seal_secret(name, secret),
        }
    }

    /// Seals a link key (see [`Tpm::seal_link_secret`]: not bound to the
    /// software measurement, so the link survives a software change).
    ///
    /// # Errors
    /// Backend errors.
    pub fn seal_link_secret(
        &mut self,
        name: &str,
        secret: &Secret32,
    ) -> Result<SealedBlob, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.tpm.seal_link_secret(name, secret),
            KeyStore::Soft(k) => k.seal_secret(name, secret),
        }
    }

    /// Generates and seals a fresh named 32-byte secret.
    ///
    /// # Errors
    /// Backend errors.
    pub fn generate_secret(&mut self, name: &str) -> Result<(Secret32, SealedBlob), KeyError> {
        match self {
            KeyStore::Tpm(k) => k.tpm.generate_secret(name),
            KeyStore::Soft(k) => k.generate_secret(name),
        }
    }

    /// Unseals a named 32-byte secret.
    ///
    /// # Errors
    /// Backend errors; [`KeyError::BlobMismatch`] for the other backend's
    /// blob or another name.
    pub fn unseal_secret(&mut self, blob: &SealedBlob, name: &str) -> Result<Secret32, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.tpm.unseal_secret(blob, name),
            KeyStore::Soft(k) => k.unseal_secret(blob, name),
        }
    }

    /// Attestation (TPM backend only).
    ///
    /// # Errors
    /// [`KeyError::NotSupported`] on the soft backend; see
    /// [`TpmKeyStore::attest`].
    pub fn attest(
        &mut self,
        nonce: [u8; 32],
        policy_hash: [u8; 32],
        paths: &[DerivationPath],
    ) -> Result<Attestation, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.attest(nonce, policy_hash, paths),
            KeyStore::Soft(_) => Err(KeyError::NotSupported { op: "attestation" }),
        }
    }
}

impl Signer for KeyStore {
    fn master_fingerprint(&self) -> Fingerprint {
        match self {
            KeyStore::Tpm(k) => k.master_fingerprint(),
            KeyStore::Soft(k) => k.master_fingerprint(),
        }
    }
    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.xpub(path),
            KeyStore::Soft(k) => k.xpub(path),
        }
    }
    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.sign_ecdsa(path, digest),
            KeyStore::Soft(k) => k.sign_ecdsa(path, digest),
        }
    }
    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::RecoverableSignature, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.sign_ecdsa_recoverable(path, digest),
            KeyStore::Soft(k) => k.sign_ecdsa_recoverable(path, digest),
        }
    }
    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
        tweak: SchnorrTweak,
    ) -> Result<schnorr::Signature, KeyError> {
        match self {
            KeyStore::Tpm(k) => k.sign_schnorr(path, msg, tweak),
            KeyStore::Soft(k) => k.sign_schnorr(path, msg, tweak),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn stores_can_move_to_a_worker_thread() {
        assert_send::<KeyStore>();
        assert_send::<Tpm>();
    }
}
