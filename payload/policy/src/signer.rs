//! The one signer seam of both chains: what the signing pipeline and the
//! chain plug-ins (`spacenode-btc`, `spacenode-eth`) need from a key store.
//!
//! Owns: [`KeySigner`] (BIP32 fingerprint and public keys, ECDSA over a
//! digest, recoverable ECDSA, BIP340 over a message, each for a BIP32 path
//! and each self-checked by the implementation), [`SignerError`], the
//! audit-receipt key path ([`receipt_path`]) and [`SoftSigner`], the
//! seed-in-memory implementation for tests, benchmarks, demos and ground
//! tooling (not the node's key store: that is `spacenode-keys`).
//!
//! Why a trait here and not `spacenode_keys::Signer`: `spacenode-keys`
//! links `tss-esapi` unconditionally, so the pure crates (used by the
//! ground tool too) cannot depend on it. The node adapts its custody
//! (`payload/node/src/custody.rs`, TPM or development seed) to this trait
//! once, for both chains.
//!
//! Must never: hand out a private key, an xpriv or the seed.

use bitcoin::NetworkKind;
use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{All, Keypair, Message, PublicKey, Secp256k1, ecdsa, schnorr};

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

/// In-memory BIP32 signer for tests, benchmarks, demos and ground keys.
pub struct SoftSigner {
    master: Xpriv,
    secp: Secp256k1<All>,
}

impl std::fmt::Debug for SoftSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftSigner")
            .field("fingerprint", &self.master_fingerprint())
            .finish_non_exhaustive()
    }
}

fn serr(e: impl std::fmt::Display) -> SignerError {
    SignerError {
        code: 0x040E,
        detail: e.to_string(),
    }
}

impl SoftSigner {
    /// From a seed (16..=64 bytes).
    ///
    /// # Errors
    /// [`SignerError`] for an invalid seed.
    pub fn from_seed(seed: &[u8], network: NetworkKind) -> Result<Self, SignerError> {
        Ok(Self {
            master: Xpriv::new_master(network, seed).map_err(serr)?,
            secp: Secp256k1::new(),
        })
    }

    fn derive(&self, path: &DerivationPath) -> Result<Xpriv, SignerError> {
        self.master.derive_priv(&self.secp, path).map_err(serr)
    }

    /// The 32-byte secret at `path`, for handing to independent test tools
    /// (eth-account, embit). Test and ground tooling only: the node's key
    /// store has no such method.
    ///
    /// # Errors
    /// [`SignerError`] if the path cannot be derived.
    pub fn export_secret_for_tests(&self, path: &DerivationPath) -> Result<[u8; 32], SignerError> {
        Ok(self.derive(path)?.private_key.secret_bytes())
    }
}

impl KeySigner for SoftSigner {
    fn master_fingerprint(&self) -> Fingerprint {
        self.master.fingerprint(&self.secp)
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        Ok(Xpub::from_priv(&self.secp, &self.derive(path)?))
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        let k = self.derive(path)?;
        let m = Message::from_digest(*digest);
        let sig = self.secp.sign_ecdsa(&m, &k.private_key);
        self.secp
            .verify_ecdsa(&m, &sig, &k.private_key.public_key(&self.secp))
            .map_err(|_| SignerError {
                code: 0x040F,
                detail: "ecdsa self-check".into(),
            })?;
        Ok(sig)
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        let k = self.derive(path)?;
        let m = Message::from_digest(*digest);
        let sig = self.secp.sign_ecdsa_recoverable(&m, &k.private_key);
        if self.secp.recover_ecdsa(&m, &sig).map_err(serr)? != k.private_key.public_key(&self.secp)
        {
            return Err(SignerError {
                code: 0x040F,
                detail: "recoverable ecdsa self-check".into(),
            });
        }
        Ok(sig)
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        let k = self.derive(path)?;
        let kp = Keypair::from_secret_key(&self.secp, &k.private_key);
        let m = Message::from_digest(*msg);
        // Deterministic (no aux randomness): tests and demos are
        // reproducible; the TPM-backed node signer adds aux randomness.
        let sig = self.secp.sign_schnorr_no_aux_rand(&m, &kp);
        self.secp
            .verify_schnorr(&sig, &m, &kp.x_only_public_key().0)
            .map_err(|_| SignerError {
                code: 0x040F,
                detail: "schnorr self-check".into(),
            })?;
        Ok(sig)
    }
}
