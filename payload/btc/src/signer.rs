//! The signer seam this crate signs through, and a soft signer.
//!
//! The seam is the one of both chains, [`spacenode_policy::signer::KeySigner`]
//! (re-exported here as [`BtcSigner`]): fingerprint, xpub, ECDSA over a
//! digest, BIP340 over a message, each signature self-checked by the
//! implementation. The node adapts its custody (TPM or development seed)
//! to it once, for both chains.
//!
//! Also owns [`SoftSigner`], a seed-in-memory implementation for tests,
//! benchmarks, the demo's GROUND keys and ground tooling. It is not the
//! node's key store (that is the TPM-backed one in `spacenode-keys`).
//!
//! Must never: hand out a private key through the trait.

use bitcoin::NetworkKind;
use bitcoin::bip32::{DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{All, Keypair, Message, Secp256k1, ecdsa, schnorr};
pub use spacenode_policy::audit::RECEIPT_PATH;
pub use spacenode_policy::signer::{KeySigner as BtcSigner, SignerError, receipt_path};

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
}

impl BtcSigner for SoftSigner {
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

/// A signer that corrupts its output, for fault-injection tests of the
/// self-check (never used outside tests and benches).
#[derive(Debug)]
pub struct FaultySigner<S> {
    /// The honest signer.
    pub inner: S,
}

impl<S: BtcSigner> BtcSigner for FaultySigner<S> {
    fn master_fingerprint(&self) -> Fingerprint {
        self.inner.master_fingerprint()
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        self.inner.xpub(path)
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        // Signs a digest with one bit flipped: a valid signature over the
        // wrong message, as a fault during hashing would produce.
        let mut d = *digest;
        d[0] ^= 1;
        self.inner.sign_ecdsa(path, &d)
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        let mut d = *digest;
        d[0] ^= 1;
        self.inner.sign_ecdsa_recoverable(path, &d)
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        let mut d = *msg;
        d[0] ^= 1;
        self.inner.sign_schnorr(path, &d)
    }
}
