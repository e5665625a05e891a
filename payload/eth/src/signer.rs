//! Ethereum keys and the signer seam.
//!
//! Owns: the key-store seam [`EthKeyStore`] (public key, recoverable ECDSA
//! over a 32-byte digest, BIP340 for audit receipts, each for a BIP32
//! path), the BIP44 account paths `m/44'/60'/0'/0/i` ([`account_path`]),
//! addresses ([`address_of`]: `keccak256(uncompressed key)[12..]`),
//! [`KeyStoreSigner`], which implements alloy's [`alloy_signer::Signer`]
//! and [`alloy_signer::SignerSync`] on top of a key store (the rest of this
//! crate signs through alloy's interface), and [`SoftEthKeys`], a
//! seed-in-memory store for tests, demos and ground tooling.
//!
//! The seam is the one of both chains,
//! [`spacenode_policy::signer::KeySigner`] (re-exported here as
//! [`EthKeyStore`]); the node adapts its custody (TPM or development seed)
//! to it once, for both chains.
//!
//! Why `SignerSync` drives signing: the decision is a pure, synchronous
//! function, and the key store answers synchronously (the TPM-backed seed is
//! already unsealed in memory). alloy's async [`alloy_signer::Signer`] is
//! implemented too (its future is ready on first poll, it delegates to the
//! sync path), so code written against alloy's async interface can use the
//! node's keys; nothing here needs an executor (tests poll it once with
//! `std::task::Waker::noop`).
//!
//! Must never: hand out a private key through the trait, or return a
//! signature that does not verify (implementations self-check; the caller
//! checks again by recovery).

use alloy_primitives::{Address, B256, ChainId, Signature, U256, keccak256};
use bitcoin::NetworkKind;
use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use bitcoin::secp256k1::{PublicKey, ecdsa, schnorr};
pub use spacenode_policy::signer::{
    KeySigner as EthKeyStore, SignerError, SoftSigner, receipt_path,
};

/// SLIP-44 coin type of Ether.
pub const ETH_COIN_TYPE: u32 = 60;

/// `m/44'/60'/0'/0/index`: the BIP44 path of account `index` (the path
/// MetaMask, Ledger Live's "BIP44 standard" and most wallets use).
#[must_use]
pub fn account_path(index: u32) -> DerivationPath {
    vec![
        ChildNumber::Hardened { index: 44 },
        ChildNumber::Hardened {
            index: ETH_COIN_TYPE,
        },
        ChildNumber::Hardened { index: 0 },
        ChildNumber::Normal { index: 0 },
        ChildNumber::Normal {
            index: index & 0x7fff_ffff,
        },
    ]
    .into()
}

/// The Ethereum address of a public key: the last 20 bytes of the keccak256
/// of the 64-byte uncompressed point (without the 0x04 prefix).
#[must_use]
pub fn address_of(pk: &PublicKey) -> Address {
    let u = pk.serialize_uncompressed();
    let h = keccak256(u.get(1..).unwrap_or_default());
    Address::from_slice(h.get(12..).unwrap_or(&[0u8; 20]))
}

fn serr(e: impl std::fmt::Display) -> SignerError {
    SignerError {
        code: 0x040E,
        detail: e.to_string(),
    }
}

/// A libsecp256k1 recoverable signature as alloy's `(r, s, y_parity)`.
///
/// # Errors
/// [`SignerError`] for a recovery id other than 0 or 1 (`r` above the
/// group order: never produced by libsecp256k1's signer, and not
/// expressible in Ethereum's `v`).
pub fn to_alloy(sig: &RecoverableSignature) -> Result<Signature, SignerError> {
    let (recid, rs) = sig.serialize_compact();
    let parity = match recid.to_i32() {
        0 => false,
        1 => true,
        other => {
            return Err(SignerError {
                code: 0x040F,
                detail: format!("recovery id {other}"),
            });
        }
    };
    let (r, s) = rs.split_at(32);
    Ok(Signature::new(
        U256::from_be_slice(r),
        U256::from_be_slice(s),
        parity,
    ))
}

/// alloy's `(r, s, y_parity)` as a libsecp256k1 recoverable signature.
///
/// # Errors
/// [`SignerError`] if `r` or `s` is not a valid scalar.
pub fn from_alloy(sig: &Signature) -> Result<RecoverableSignature, SignerError> {
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
    rs[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
    let id = RecoveryId::from_i32(i32::from(sig.v())).map_err(serr)?;
    RecoverableSignature::from_compact(&rs, id).map_err(serr)
}

/// An alloy signer for account `index` of a key store: alloy's
/// [`alloy_signer::SignerSync`] and [`alloy_signer::Signer`] over
/// [`EthKeyStore::sign_ecdsa_recoverable`].
pub struct KeyStoreSigner<'a, K: ?Sized> {
    keys: &'a K,
    path: DerivationPath,
    address: Address,
    chain_id: Option<ChainId>,
}

impl<K: ?Sized> std::fmt::Debug for KeyStoreSigner<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStoreSigner")
            .field("path", &self.path.to_string())
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

impl<'a, K: EthKeyStore + ?Sized> KeyStoreSigner<'a, K> {
    /// The signer of account `index` (`m/44'/60'/0'/0/index`).
    ///
    /// # Errors
    /// [`SignerError`] if the key cannot be derived.
    pub fn new(keys: &'a K, index: u32) -> Result<Self, SignerError> {
        let path = account_path(index);
        let address = address_of(&keys.public_key(&path)?);
        Ok(Self {
            keys,
            path,
            address,
            chain_id: None,
        })
    }

    /// Its derivation path.
    #[must_use]
    pub fn path(&self) -> &DerivationPath {
        &self.path
    }

    /// Its address (also `alloy_signer::Signer::address`, which needs a
    /// `Sync` key store).
    #[must_use]
    pub fn address(&self) -> Address {
        self.address
    }
}

impl<K: EthKeyStore + ?Sized> alloy_signer::SignerSync for KeyStoreSigner<'_, K> {
    fn sign_hash_sync(&self, hash: &B256) -> alloy_signer::Result<Signature> {
        let sig = self
            .keys
            .sign_ecdsa_recoverable(&self.path, &hash.0)
            .map_err(alloy_signer::Error::other)?;
        to_alloy(&sig).map_err(alloy_signer::Error::other)
    }

    fn chain_id_sync(&self) -> Option<ChainId> {
        self.chain_id
    }
}

// `alloy_signer::Signer` is declared with `#[async_trait]`; this is the
// signature that macro expands `async fn sign_hash` to, written out so the
// crate does not need `async-trait` for one method.
impl<K: EthKeyStore + Sync + ?Sized> alloy_signer::Signer for KeyStoreSigner<'_, K> {
    fn sign_hash<'life0, 'life1, 'async_trait>(
        &'life0 self,
        hash: &'life1 B256,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = alloy_signer::Result<Signature>> + Send + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        // Ready at once: the key store answers synchronously.
        let r = alloy_signer::SignerSync::sign_hash_sync(self, hash);
        Box::pin(std::future::ready(r))
    }

    fn address(&self) -> Address {
        self.address
    }

    fn chain_id(&self) -> Option<ChainId> {
        self.chain_id
    }

    fn set_chain_id(&mut self, chain_id: Option<ChainId>) {
        self.chain_id = chain_id;
    }
}

/// The [`SignerError`] inside an alloy signer error, if there is one.
#[must_use]
pub fn signer_error(e: &alloy_signer::Error) -> SignerError {
    match e {
        alloy_signer::Error::Other(b) => b
            .downcast_ref::<SignerError>()
            .cloned()
            .unwrap_or_else(|| serr(e)),
        other => serr(other),
    }
}

/// In-memory BIP32 key store for tests, demos and ground tooling: the
/// soft signer of both chains on a test-network master key. Not the
/// node's key store (that is the TPM-backed one in `spacenode-keys`).
pub struct SoftEthKeys(SoftSigner);

impl std::fmt::Debug for SoftEthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftEthKeys")
            .field("fingerprint", &self.0.master_fingerprint())
            .finish_non_exhaustive()
    }
}

impl SoftEthKeys {
    /// From a BIP32 seed (16..=64 bytes); the same seed gives the same keys
    /// as `spacenode_btc::signer::SoftSigner` and the node's key store.
    ///
    /// # Errors
    /// [`SignerError`] for an invalid seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, SignerError> {
        SoftSigner::from_seed(seed, NetworkKind::Test).map(Self)
    }

    /// The address of account `index`.
    ///
    /// # Errors
    /// [`SignerError`].
    pub fn address(&self, index: u32) -> Result<Address, SignerError> {
        Ok(address_of(&self.public_key(&account_path(index))?))
    }

    /// The 32-byte secret of account `index`, for handing to independent
    /// test tools (eth-account). Test and ground tooling only.
    ///
    /// # Errors
    /// [`SignerError`].
    pub fn export_secret_for_tests(&self, index: u32) -> Result<[u8; 32], SignerError> {
        self.0.export_secret_for_tests(&account_path(index))
    }
}

impl EthKeyStore for SoftEthKeys {
    fn master_fingerprint(&self) -> Fingerprint {
        self.0.master_fingerprint()
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        self.0.xpub(path)
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        self.0.sign_ecdsa(path, digest)
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        self.0.sign_ecdsa_recoverable(path, digest)
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        self.0.sign_schnorr(path, msg)
    }
}

/// A key store that signs a corrupted digest, for fault-injection tests of
/// the self-check (never used outside tests).
#[derive(Debug)]
pub struct FaultyKeys<K> {
    /// The honest key store.
    pub inner: K,
}

impl<K: EthKeyStore> EthKeyStore for FaultyKeys<K> {
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
        self.inner.sign_ecdsa(path, digest)
    }

    fn public_key(&self, path: &DerivationPath) -> Result<PublicKey, SignerError> {
        self.inner.public_key(path)
    }

    fn sign_ecdsa_recoverable(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, SignerError> {
        // A valid signature over the wrong message, as a fault during
        // hashing would produce.
        let mut d = *digest;
        d[0] ^= 1;
        self.inner.sign_ecdsa_recoverable(path, &d)
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        self.inner.sign_schnorr(path, msg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use alloy_signer::{Signer, SignerSync};
    use std::str::FromStr;

    /// The BIP39 test mnemonic "abandon × 11, about" has the well-known
    /// first account 0x9858EfFD232B4033E47d90003D41EC34EcaEda94.
    const ABANDON_SEED: &str = "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4";

    #[test]
    fn bip44_address_matches_the_well_known_test_vector() {
        let keys = SoftEthKeys::from_seed(&hex::decode(ABANDON_SEED).unwrap()).unwrap();
        assert_eq!(account_path(0).to_string(), "44'/60'/0'/0/0");
        assert_eq!(
            keys.address(0).unwrap(),
            Address::from_str("0x9858EfFD232B4033E47d90003D41EC34EcaEda94").unwrap()
        );
    }

    #[test]
    fn alloy_signer_interfaces_sign_through_the_key_store() {
        let keys = SoftEthKeys::from_seed(&[7; 32]).unwrap();
        let mut s = KeyStoreSigner::new(&keys, 3).unwrap();
        assert_eq!(s.address(), keys.address(3).unwrap());
        let h = B256::repeat_byte(0x42);
        let sync = s.sign_hash_sync(&h).unwrap();
        // k256 (alloy) recovers what libsecp256k1 signed.
        assert_eq!(sync.recover_address_from_prehash(&h).unwrap(), s.address());
        // The async interface, polled once without an executor.
        let mut fut = s.sign_hash(&h);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx) else {
            unreachable!("the key store answers synchronously")
        };
        drop(fut);
        // RFC 6979: the same digest gives the same signature.
        assert_eq!(r.unwrap(), sync);
        s.set_chain_id(Some(1));
        assert_eq!(s.chain_id_sync(), Some(1));
        // EIP-191 through alloy's provided method, recovered by k256.
        let m = s.sign_message_sync(b"spacenode").unwrap();
        assert_eq!(
            m.recover_address_from_msg(b"spacenode").unwrap(),
            s.address()
        );
        assert_eq!(
            from_alloy(&sync).unwrap(),
            keys.sign_ecdsa_recoverable(s.path(), &h.0).unwrap()
        );
    }

    #[test]
    fn signer_errors_keep_their_code_through_alloy() {
        let keys = SoftEthKeys::from_seed(&[7; 32]).unwrap();
        let e = alloy_signer::Error::other(SignerError {
            code: 0x0411,
            detail: "tpm".into(),
        });
        assert_eq!(signer_error(&e).code, 0x0411);
        let faulty = FaultyKeys { inner: keys };
        let s = KeyStoreSigner::new(&faulty, 0).unwrap();
        let h = B256::repeat_byte(1);
        let sig = s.sign_hash_sync(&h).unwrap();
        assert_ne!(sig.recover_address_from_prehash(&h).unwrap(), s.address());
    }
}
