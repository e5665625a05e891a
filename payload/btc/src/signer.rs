//! The signer seam this crate signs through, and a soft signer.
//!
//! The seam is the one of both chains, [`spacenode_policy::signer::KeySigner`]
//! (re-exported here as [`BtcSigner`]): fingerprint, xpub, ECDSA over a
//! digest, BIP340 over a message, each signature self-checked by the
//! implementation. The node adapts its custody (TPM or development seed)
//! to it once, for both chains.
//!
//! [`SoftSigner`] (re-exported from the same module) is the seed-in-memory
//! implementation for tests, benchmarks, the demo's GROUND keys and ground
//! tooling. It is not the node's key store (that is the TPM-backed one in
//! `spacenode-keys`). Owns [`FaultySigner`] for fault-injection tests.
//!
//! Must never: hand out a private key through the trait.

use bitcoin::bip32::{DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{ecdsa, schnorr};
pub use spacenode_policy::audit::RECEIPT_PATH;
pub use spacenode_policy::signer::{KeySigner as BtcSigner, SignerError, SoftSigner, receipt_path};

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
