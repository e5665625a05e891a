//! Fault-tolerant Ethereum signing: through alloy's `SignerSync` on the
//! node's key store, with every hash computed twice and every signature
//! recovered before it is released.
//!
//! Owns: [`sign_transaction`] and [`sign_safe_tx`].
//!
//! Transactions: digest A is alloy's `signature_hash()` of the decoded
//! fields (its own re-encoding), digest B the keccak256 of a separate copy
//! of the uplinked bytes; they must be equal. The signer signs A. The
//! signature must then recover, with libsecp256k1, over B to the expected
//! address (the account's, or the REGISTERED owner address of a Safe), have
//! a low `s` (EIP-2); the signed EIP-2718 bytes are decoded again by alloy
//! and must give back the checked transaction and the same signature, and
//! alloy's k256 recovery of the signed transaction must name the same
//! address: two secp256k1 implementations agree.
//!
//! SafeTx hashes: A from alloy-sol-types' EIP-712 encoder, B from the Safe
//! contract's type-hash constants written out by hand; equal, or refused.
//! The owner signature over A recovers over B (libsecp256k1 and k256) to the
//! Safe's registered node owner.
//!
//! Any mismatch is a refusal that raises an event (`eth-self-check`): a bit
//! flip in orbit never yields a signature over something the policy did not
//! approve.
//!
//! Must never: return a signature that failed any of these checks.

use alloy_primitives::{Address, B256, Signature, U256, keccak256};
use alloy_signer::SignerSync;
use bitcoin::secp256k1::{Message, Secp256k1, Verification};

use crate::error::EthError;
use crate::safe::{Safe, SafeTx, safe_tx_hash, safe_tx_hash_manual};
use crate::signer::{EthKeyStore, KeyStoreSigner, address_of, from_alloy, signer_error};
use crate::tx::{UnsignedTx, decode_signed, recover_sender};

/// secp256k1's group order divided by two (EIP-2's bound on `s`).
const HALF_N: U256 = U256::from_be_bytes([
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0x5D, 0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
]);

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// EIP-2718 bytes.
    pub raw: Vec<u8>,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Signing hash.
    pub signing_hash: B256,
    /// The signature.
    pub signature: Signature,
}

fn self_check(expected: Address) -> EthError {
    EthError::SignatureSelfCheck { expected }
}

/// Recovers `sig` over `digest` with libsecp256k1 and checks it names
/// `expected` with a low `s`.
///
/// # Errors
/// [`EthError::SignatureSelfCheck`].
pub fn verify_recovers<C: Verification>(
    secp: &Secp256k1<C>,
    sig: &Signature,
    digest: &B256,
    expected: Address,
) -> Result<(), EthError> {
    if sig.s() > HALF_N {
        return Err(self_check(expected));
    }
    let rec = from_alloy(sig).map_err(|_| self_check(expected))?;
    let pk = secp
        .recover_ecdsa(&Message::from_digest(digest.0), &rec)
        .map_err(|_| self_check(expected))?;
    if address_of(&pk) != expected {
        return Err(self_check(expected));
    }
    // The second implementation (k256, through alloy).
    match sig.recover_address_from_prehash(digest) {
        Ok(a) if a == expected => Ok(()),
        _ => Err(self_check(expected)),
    }
}

/// Signs a checked transaction of account `account` (module docs).
/// `uplinked` are the bytes the transaction was decoded from.
///
/// # Errors
/// [`EthError::HashMismatch`], [`EthError::SignatureSelfCheck`],
/// [`EthError::Signer`].
pub fn sign_transaction<C: Verification, K: EthKeyStore + ?Sized>(
    secp: &Secp256k1<C>,
    keys: &K,
    account: u32,
    tx: &UnsignedTx,
    uplinked: &[u8],
    expected: Address,
) -> Result<SignedTx, EthError> {
    let a = tx.signature_hash();
    let copy = uplinked.to_vec();
    let b = keccak256(&copy);
    if a != b {
        return Err(EthError::HashMismatch);
    }
    let signer = KeyStoreSigner::new(keys, account).map_err(|e| EthError::Signer(e.to_string()))?;
    if signer.address() != expected {
        return Err(self_check(expected));
    }
    let sig = signer
        .sign_hash_sync(&a)
        .map_err(|e| EthError::Signer(signer_error(&e).to_string()))?;
    verify_recovers(secp, &sig, &b, expected)?;
    let (raw, tx_hash) = tx.signed_raw(sig);
    let (back, sig_back) = decode_signed(&raw).map_err(|_| EthError::HashMismatch)?;
    if back != *tx || sig_back != sig {
        return Err(EthError::HashMismatch);
    }
    if recover_sender(&raw).ok() != Some(expected) {
        return Err(self_check(expected));
    }
    Ok(SignedTx {
        raw,
        tx_hash,
        signing_hash: a,
        signature: sig,
    })
}

/// Signs a checked SafeTx as the Safe's node owner; returns the SafeTx hash
/// and the 65-byte owner signature `r || s || v` (`v` = 27 + y parity).
///
/// # Errors
/// [`EthError::HashMismatch`], [`EthError::SignatureSelfCheck`],
/// [`EthError::Signer`].
pub fn sign_safe_tx<C: Verification, K: EthKeyStore + ?Sized>(
    secp: &Secp256k1<C>,
    keys: &K,
    safe: &Safe,
    tx: &SafeTx,
) -> Result<(B256, [u8; 65]), EthError> {
    let (a, b) = safe_hashes(safe, tx)?;
    let signer = KeyStoreSigner::new(keys, safe.registration.node_account)
        .map_err(|e| EthError::Signer(e.to_string()))?;
    let sig = signer
        .sign_hash_sync(&a)
        .map_err(|e| EthError::Signer(signer_error(&e).to_string()))?;
    verify_recovers(secp, &sig, &b, safe.node_address)?;
    Ok((a, sig.as_bytes()))
}

/// The SafeTx hash computed both ways (module docs), checked equal.
///
/// # Errors
/// [`EthError::HashMismatch`].
pub fn safe_hashes(safe: &Safe, tx: &SafeTx) -> Result<(B256, B256), EthError> {
    let a = safe_tx_hash(tx, safe.version);
    let copy = tx.clone();
    let b = safe_tx_hash_manual(&copy, safe.version);
    if a != b {
        return Err(EthError::HashMismatch);
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use crate::demo::{EthDemo, addr};
    use alloy_consensus::SignableTransaction;
    use bitcoin::secp256k1::Secp256k1;

    #[test]
    fn a_second_hash_that_differs_is_a_fault() {
        let d = EthDemo::new().unwrap();
        let secp = Secp256k1::verification_only();
        let raw = d.eip1559(addr::VENDOR, 1, vec![], 0).encoded_for_signing();
        let tx = UnsignedTx::decode(&raw).unwrap();
        let me = d.address(0).unwrap();
        assert!(sign_transaction(&secp, &d.keys, 0, &tx, &raw, me).is_ok());
        // The uplinked copy flipped after decoding.
        let mut flipped = raw.clone();
        flipped[5] ^= 1;
        assert_eq!(
            sign_transaction(&secp, &d.keys, 0, &tx, &flipped, me),
            Err(EthError::HashMismatch)
        );
        // The decoded fields changed after the checks.
        let UnsignedTx::Eip1559(mut t) = tx.clone() else {
            unreachable!()
        };
        t.value += U256::from(1);
        assert_eq!(
            sign_transaction(&secp, &d.keys, 0, &UnsignedTx::Eip1559(t), &raw, me),
            Err(EthError::HashMismatch)
        );
        // Another account's key.
        let e = sign_transaction(&secp, &d.keys, 1, &tx, &raw, me).unwrap_err();
        assert_eq!(e.code(), 0x0741);
        assert!(e.raise_event());
    }

    #[test]
    fn high_s_and_foreign_signatures_do_not_verify() {
        let d = EthDemo::new().unwrap();
        let secp = Secp256k1::verification_only();
        let (h, sig) = sign_safe_tx(
            &secp,
            &d.keys,
            &d.safes[0],
            &d.safe_tx(0, addr::VENDOR, 1, vec![], crate::abi::Operation::Call, 0),
        )
        .unwrap();
        let s = Signature::from_raw_array(&sig).unwrap();
        let me = d.address(0).unwrap();
        assert!(verify_recovers(&secp, &s, &h, me).is_ok());
        // The malleated twin (n - s, flipped parity) recovers to the same
        // key but is not low-S (EIP-2).
        let n = HALF_N * U256::from(2) + U256::from(1);
        let twin = Signature::new(s.r(), n - s.s(), !s.v());
        assert!(verify_recovers(&secp, &twin, &h, me).is_err());
        assert!(verify_recovers(&secp, &s, &B256::repeat_byte(9), me).is_err());
    }
}
