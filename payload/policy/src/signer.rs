//! The one signer seam of both chains: what the signing pipeline and the
//! chain plug-ins (`spacenode-btc`, `spacenode-eth`) need from a key store.
//!
//! Owns: [`KeySigner`] (BIP32 fingerprint and public keys, ECDSA over a
//! digest, recoverable ECDSA, BIP340 over a message, each for a BIP32 path
//! and each self-checked by the implementation), [`SignerError`] and the
//! audit-receipt key path ([`receipt_path`]).
//!
//! Why a trait here and not `spacenode_keys::Signer`: `spacenode-keys`
//! links `tss-esapi` unconditionally, so the pure crates (used by the
//! ground tool too) cannot depend on it. The node adapts its custody
//! (`payload/node/src/custody.rs`, TPM or development seed) to this trait
//! once, for both chains.
//!
//! Must never: hand out a private key, an xpriv or the seed.

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{PublicKey, ecdsa, schnorr};

use crate::audit::RECEIPT_PATH;

/// Signer failure (the node maps its `KeyError` code into `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer error {code:#06x}: {detail}")]
pub struct SignerError {
    /// The key store's own reason code (e.g. 0x040F self-check).
    pub code: u16,
    /// Message.
    pub detail: String,
}

/// [`RECEIPT_PATH`] as a derivation path (`m/21326'/1'/0'`): the node's
/// audit-receipt key, BIP340, untweaked, shared by both chains.
#[must_use]
pub fn receipt_path() -> DerivationPath {
    RECEIPT_PATH
        .iter()
        .map(|&i| ChildNumber::Hardened { index: i })
        .collect::<Vec<_>>()
        .into()
}

/// What the signing pipeline and both chains need from a key store.
pub trait KeySigner {
    /// BIP32 fingerprint of the master key.
    fn master_fingerprint(&self) -> Fingerprint;

    /// Extended public key at `path`.
    ///
    /// # Errors
    /// [`SignerError`] if the path cannot be derived.
    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError>;

    /// Public key at `path`.
    ///
    /// # Errors
    /// [`SignerError`] if the path cannot be derived.
    fn public_key(&self, path: &DerivationPath) -> Result<PublicKey, SignerError> {
        Ok(self.xpub(path)?.public_key)
    }

    /// Low-S ECDSA (RFC 6979) over a 32-byte digest with the key at `path`.
    ///
    /// # Errors
    /// [`SignerError`].
    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError>;

    /// Like [`KeySigner::sign_ecdsa`] but recoverable (Ethereum `v`).
    ///
    /// # Errors
    /// [`SignerError`].
    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError>;

    /// BIP340 over a 32-byte message with the untweaked key at `path`.
    ///
    /// # Errors
    /// [`SignerError`].
    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError>;
}

impl<T: KeySigner + ?Sized> KeySigner for &T {
    fn master_fingerprint(&self) -> Fingerprint {
        (**self).master_fingerprint()
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        (**self).xpub(path)
    }

    fn public_key(&self, path: &DerivationPath) -> Result<PublicKey, SignerError> {
        (**self).public_key(path)
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        (**self).sign_ecdsa(path, digest)
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        (**self).sign_ecdsa_recoverable(path, digest)
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        (**self).sign_schnorr(path, msg)
    }
}
