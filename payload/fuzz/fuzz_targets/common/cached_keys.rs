//! The demo node's soft key store with a cache of derived keys, for the
//! decision targets (`psbt`, `eth_tx`, `safe_tx`).
//!
//! `SoftSigner` / `SoftEthKeys` derive every key from the master on every
//! signature (a few EC multiplications per hardened step); in a fuzz run
//! that is most of the time of an input, and it is the same few paths
//! (receipt key, account keys, wallet keys) again and again. This store
//! signs exactly as they do (same keys, same deterministic signatures,
//! same self-checks), only derives each path once; `same_as` proves that
//! against the real stores when a target starts.
//!
//! Must never: be used outside the fuzz targets (it keeps private keys in
//! a plain map).

use std::cell::RefCell;
use std::collections::BTreeMap;

use bitcoin::NetworkKind;
use bitcoin::bip32::{DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::secp256k1::ecdsa::{self, RecoverableSignature};
use bitcoin::secp256k1::{All, Keypair, Message, PublicKey, Secp256k1, schnorr};
use spacenode_policy::signer::{KeySigner, SignerError};

/// Paths an input can name are bounded by the wallet checks, but a cap
/// keeps a long run's memory flat whatever they allow.
const MAX_CACHED: usize = 4096;

/// A seed's keys, derived once per path.
pub struct CachedKeys {
    master: Xpriv,
    secp: Secp256k1<All>,
    derived: RefCell<BTreeMap<DerivationPath, Xpriv>>,
}

fn self_check(what: &str) -> (u16, String) {
    (0x040F, format!("{what} self-check"))
}

impl CachedKeys {
    /// The keys of `seed` (testnet, as the demo's stores).
    pub fn new(seed: &[u8]) -> Option<Self> {
        Some(Self {
            master: Xpriv::new_master(NetworkKind::Test, seed).ok()?,
            secp: Secp256k1::new(),
            derived: RefCell::new(BTreeMap::new()),
        })
    }

    fn key(&self, path: &DerivationPath) -> Result<Xpriv, (u16, String)> {
        if let Some(k) = self.derived.borrow().get(path) {
            return Ok(*k);
        }
        let k = self
            .master
            .derive_priv(&self.secp, path)
            .map_err(|e| (0x040E, e.to_string()))?;
        let mut cache = self.derived.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(path.clone(), k);
        Ok(k)
    }

    fn schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, (u16, String)> {
        let k = self.key(path)?;
        let kp = Keypair::from_secret_key(&self.secp, &k.private_key);
        let m = Message::from_digest(*msg);
        let sig = self.secp.sign_schnorr_no_aux_rand(&m, &kp);
        self.secp
            .verify_schnorr(&sig, &m, &kp.x_only_public_key().0)
            .map_err(|_| self_check("schnorr"))?;
        Ok(sig)
    }
}

fn err((code, detail): (u16, String)) -> SignerError {
    SignerError { code, detail }
}

// One key-store seam for both chains (`spacenode_policy::signer::KeySigner`,
// re-exported as `BtcSigner` and `EthKeyStore`).
impl KeySigner for CachedKeys {
    fn master_fingerprint(&self) -> Fingerprint {
        self.master.fingerprint(&self.secp)
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        Ok(Xpub::from_priv(&self.secp, &self.key(path).map_err(err)?))
    }

    fn public_key(&self, path: &DerivationPath) -> Result<PublicKey, SignerError> {
        Ok(self
            .key(path)
            .map_err(err)?
            .private_key
            .public_key(&self.secp))
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        let k = self.key(path).map_err(err)?;
        let m = Message::from_digest(*digest);
        let sig = self.secp.sign_ecdsa(&m, &k.private_key);
        self.secp
            .verify_ecdsa(&m, &sig, &k.private_key.public_key(&self.secp))
            .map_err(|_| err(self_check("ecdsa")))?;
        Ok(sig)
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        let k = self.key(path).map_err(err)?;
        let m = Message::from_digest(*digest);
        let sig = self.secp.sign_ecdsa_recoverable(&m, &k.private_key);
        let pk = self
            .secp
            .recover_ecdsa(&m, &sig)
            .map_err(|e| err((0x040E, e.to_string())))?;
        if pk != k.private_key.public_key(&self.secp) {
            return Err(err(self_check("recoverable ecdsa")));
        }
        Ok(sig)
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        self.schnorr(path, msg).map_err(err)
    }
}
