//! Anti-equivocation: never two different signatures for one (chain id,
//! account, nonce), nor for one (Safe, Safe nonce).
//!
//! Owns: the [`EthHistory`] seam (the node implements it over two tables,
//! below), [`MemoryEthHistory`] for tests and demos, the pure
//! classifications [`classify_tx`] and [`classify_safe`], and
//! [`NonceRecord`], what the node writes after an approval.
//!
//! Tables (one SQLite transaction with the rest of the approval, BEFORE the
//! signature leaves the node):
//!
//! ```text
//! eth_nonces(chain_id, account BLOB20, nonce, signing_hash BLOB32, raw_tx BLOB,
//!            request_id, PRIMARY KEY (chain_id, account, nonce))
//! safe_nonces(domain_chain, safe BLOB20, nonce BLOB32, safe_tx_hash BLOB32,
//!             signature BLOB65 NULL, request_id, PRIMARY KEY (domain_chain, safe, nonce))
//! ```
//!
//! `domain_chain` is the Safe's chain id from version 1.3.0, 0 before (its
//! SafeTx hash commits to no chain). A SafeTx approved with `approveHash`
//! first has a NULL signature; a later owner signature for the same hash
//! fills it in (same content, no equivocation).
//!
//! Rules: nothing signed at that nonce → [`NonceState::Fresh`]. The same
//! signing hash (or SafeTx hash) → [`NonceState::Same`]: the node answers
//! with the stored signature (RFC 6979 would reproduce it anyway) and counts
//! no velocity again. Another hash → refused (`eth-nonce-reuse`,
//! `safe-nonce-reuse`). There is no replacement by fee: with EIP-1559 the
//! ground sets a `max_fee_per_gas` that covers the fee market instead.
//!
//! Must never: classify a different transaction at a signed nonce as
//! anything but a refusal.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};

use crate::error::EthError;
use crate::safe::Safe;

/// A transaction the node signed before at a nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorTx {
    /// Its signing hash.
    pub signing_hash: B256,
    /// The signed raw transaction released.
    pub raw: Vec<u8>,
}

/// A SafeTx the node approved before at a Safe nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorSafe {
    /// The SafeTx hash.
    pub safe_tx_hash: B256,
    /// The owner signature released (`None` when only approved on chain
    /// with `approveHash`).
    pub signature: Option<[u8; 65]>,
}

/// Lookup of persisted nonces.
pub trait EthHistory {
    /// What was signed for `(chain_id, account, nonce)`.
    fn account_nonce(&self, chain_id: u64, account: Address, nonce: u64) -> Option<PriorTx>;

    /// What was approved for `(domain_chain, safe, nonce)`.
    fn safe_nonce(&self, domain_chain: u64, safe: Address, nonce: U256) -> Option<PriorSafe>;
}

/// Rows to write after an approval (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceRecord {
    /// `INSERT INTO eth_nonces` (the row must not exist).
    Account {
        /// Chain.
        chain_id: u64,
        /// Account.
        account: Address,
        /// Nonce.
        nonce: u64,
        /// Signing hash.
        signing_hash: B256,
        /// Signed raw transaction.
        raw: Vec<u8>,
    },
    /// `INSERT INTO safe_nonces`, or `UPDATE … SET signature` when the row
    /// exists with the same hash and a NULL signature.
    Safe {
        /// Chain of the domain (0 before Safe 1.3.0).
        domain_chain: u64,
        /// Safe.
        safe: Address,
        /// Safe nonce.
        nonce: U256,
        /// SafeTx hash.
        safe_tx_hash: B256,
        /// Owner signature, if one was released.
        signature: Option<[u8; 65]>,
    },
}

/// In-memory history (tests, demos, HIL).
#[derive(Debug, Clone, Default)]
pub struct MemoryEthHistory {
    /// (chain, account, nonce) → transaction.
    pub accounts: BTreeMap<(u64, Address, u64), PriorTx>,
    /// (domain chain, safe, nonce) → SafeTx.
    pub safes: BTreeMap<(u64, Address, U256), PriorSafe>,
}

impl EthHistory for MemoryEthHistory {
    fn account_nonce(&self, chain_id: u64, account: Address, nonce: u64) -> Option<PriorTx> {
        self.accounts.get(&(chain_id, account, nonce)).cloned()
    }

    fn safe_nonce(&self, domain_chain: u64, safe: Address, nonce: U256) -> Option<PriorSafe> {
        self.safes.get(&(domain_chain, safe, nonce)).cloned()
    }
}

impl MemoryEthHistory {
    /// Applies the rows of an approval (what the node writes).
    pub fn apply(&mut self, records: &[NonceRecord]) {
        for r in records {
            match r {
                NonceRecord::Account {
                    chain_id,
                    account,
                    nonce,
                    signing_hash,
                    raw,
                } => {
                    self.accounts
                        .entry((*chain_id, *account, *nonce))
                        .or_insert_with(|| PriorTx {
                            signing_hash: *signing_hash,
                            raw: raw.clone(),
                        });
                }
                NonceRecord::Safe {
                    domain_chain,
                    safe,
                    nonce,
                    safe_tx_hash,
                    signature,
                } => {
                    let e = self
                        .safes
                        .entry((*domain_chain, *safe, *nonce))
                        .or_insert(PriorSafe {
                            safe_tx_hash: *safe_tx_hash,
                            signature: None,
                        });
                    if e.safe_tx_hash == *safe_tx_hash && e.signature.is_none() {
                        e.signature = *signature;
                    }
                }
            }
        }
    }
}

/// How a request relates to what was signed at its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceState<T> {
    /// Nothing signed at this nonce.
    Fresh,
    /// Exactly this content was signed before.
    Same(T),
}

/// Classifies an account transaction.
///
/// # Errors
/// [`EthError::NonceReuse`].
pub fn classify_tx<H: EthHistory + ?Sized>(
    history: &H,
    chain_id: u64,
    account: Address,
    nonce: u64,
    signing_hash: B256,
) -> Result<NonceState<PriorTx>, EthError> {
    match history.account_nonce(chain_id, account, nonce) {
        None => Ok(NonceState::Fresh),
        Some(p) if p.signing_hash == signing_hash => Ok(NonceState::Same(p)),
        Some(p) => Err(EthError::NonceReuse {
            chain_id,
            account,
            nonce,
            previous: p.signing_hash.to_string(),
        }),
    }
}

/// Classifies a SafeTx of a registered Safe.
///
/// # Errors
/// [`EthError::SafeNonceReuse`].
pub fn classify_safe<H: EthHistory + ?Sized>(
    history: &H,
    safe: &Safe,
    nonce: U256,
    safe_tx_hash: B256,
) -> Result<NonceState<PriorSafe>, EthError> {
    match history.safe_nonce(safe.domain_chain(), safe.address(), nonce) {
        None => Ok(NonceState::Fresh),
        Some(p) if p.safe_tx_hash == safe_tx_hash => Ok(NonceState::Same(p)),
        Some(p) => Err(EthError::SafeNonceReuse {
            safe: safe.address(),
            nonce: nonce.to_string(),
            previous: p.safe_tx_hash.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn account_nonces() {
        let mut h = MemoryEthHistory::default();
        let a = Address::repeat_byte(1);
        let (x, y) = (B256::repeat_byte(1), B256::repeat_byte(2));
        assert_eq!(classify_tx(&h, 1, a, 0, x).unwrap(), NonceState::Fresh);
        h.apply(&[NonceRecord::Account {
            chain_id: 1,
            account: a,
            nonce: 0,
            signing_hash: x,
            raw: vec![1],
        }]);
        assert!(matches!(
            classify_tx(&h, 1, a, 0, x).unwrap(),
            NonceState::Same(p) if p.raw == vec![1]
        ));
        let e = classify_tx(&h, 1, a, 0, y).unwrap_err();
        assert_eq!(e.code(), 0x0722);
        // Another chain or account is another nonce space.
        assert_eq!(classify_tx(&h, 10, a, 0, y).unwrap(), NonceState::Fresh);
        assert_eq!(
            classify_tx(&h, 1, Address::repeat_byte(2), 0, y).unwrap(),
            NonceState::Fresh
        );
        // A second insert never overwrites.
        h.apply(&[NonceRecord::Account {
            chain_id: 1,
            account: a,
            nonce: 0,
            signing_hash: y,
            raw: vec![2],
        }]);
        assert_eq!(h.account_nonce(1, a, 0).unwrap().signing_hash, x);
    }

    #[test]
    fn safe_rows_fill_in_a_signature_once() {
        let mut h = MemoryEthHistory::default();
        let s = Address::repeat_byte(5);
        let x = B256::repeat_byte(1);
        h.apply(&[NonceRecord::Safe {
            domain_chain: 1,
            safe: s,
            nonce: U256::from(3),
            safe_tx_hash: x,
            signature: None,
        }]);
        h.apply(&[NonceRecord::Safe {
            domain_chain: 1,
            safe: s,
            nonce: U256::from(3),
            safe_tx_hash: x,
            signature: Some([7; 65]),
        }]);
        assert_eq!(
            h.safe_nonce(1, s, U256::from(3)).unwrap().signature,
            Some([7; 65])
        );
        h.apply(&[NonceRecord::Safe {
            domain_chain: 1,
            safe: s,
            nonce: U256::from(3),
            safe_tx_hash: x,
            signature: Some([8; 65]),
        }]);
        assert_eq!(
            h.safe_nonce(1, s, U256::from(3)).unwrap().signature,
            Some([7; 65])
        );
    }
}
