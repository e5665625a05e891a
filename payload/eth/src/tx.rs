//! Unsigned Ethereum transactions: strict decoding of what the ground
//! uplinks, signing hashes and the signed EIP-2718 encoding, on alloy's
//! consensus types.
//!
//! Input format: the transaction's signing payload, exactly the bytes whose
//! keccak256 is the signing hash:
//!
//! - EIP-1559: `0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas,
//!   max_fee_per_gas, gas_limit, to, value, data, access_list])`;
//! - legacy with EIP-155: `rlp([nonce, gas_price, gas_limit, to, value,
//!   data, chain_id, 0, 0])`.
//!
//! Strict: the RLP is canonical (alloy's decoder refuses leading zeros and
//! non-canonical lengths; the decoded transaction must re-encode to the very
//! bytes received), nothing follows the list, list items are exactly the
//! fields, the type byte is 2 or a legacy list, and a legacy transaction
//! must carry its chain id (a pre-EIP-155 transaction is valid on every
//! chain). Types 1 (EIP-2930), 3 (blobs) and 4 (EIP-7702 delegation) are
//! refused; the last would hand the account's code to a contract.
//!
//! Output: the signed transaction as EIP-2718 bytes (`0x02 || rlp([..,
//! y_parity, r, s])`, or the legacy `rlp([.., v, r, s])` with `v = 35 + 2 *
//! chain_id + y_parity`), ready for `eth_sendRawTransaction`.
//!
//! Must never: accept bytes that have a second reading, or panic on any
//! input.

use alloy_consensus::transaction::RlpEcdsaDecodableTx;
use alloy_consensus::{SignableTransaction, Signed, TxEip1559, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::{Decodable2718, Encodable2718, Typed2718};
use alloy_primitives::{B256, Bytes, Signature, TxKind, U256, keccak256};
use alloy_rlp::{Decodable, Header};

use crate::error::EthError;

/// Largest unsigned transaction accepted (geth's pool limit).
pub const MAX_TX_BYTES: usize = 128 * 1024;

/// A decoded unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsignedTx {
    /// EIP-1559 (type 2).
    Eip1559(TxEip1559),
    /// Legacy with EIP-155 replay protection (`chain_id` is always `Some`).
    Legacy(TxLegacy),
}

fn rlp(e: alloy_rlp::Error) -> EthError {
    EthError::Rlp(e.to_string())
}

/// Splits `buf` into the payload of one RLP list and what follows it.
fn list_payload(mut buf: &[u8]) -> Result<(&[u8], &[u8]), EthError> {
    let h = Header::decode(&mut buf).map_err(rlp)?;
    if !h.list {
        return Err(EthError::Rlp("expected a list".into()));
    }
    buf.split_at_checked(h.payload_length)
        .ok_or_else(|| EthError::Rlp("list longer than the input".into()))
}

impl UnsignedTx {
    /// Strict decoding of an uplinked unsigned transaction (module docs).
    ///
    /// # Errors
    /// [`EthError::Oversize`], [`EthError::Rlp`], [`EthError::TxType`],
    /// [`EthError::NonCanonical`], [`EthError::NoChainId`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EthError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(EthError::Oversize {
                size: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        let first = *bytes
            .first()
            .ok_or_else(|| EthError::Rlp("empty transaction".into()))?;
        let tx = match first {
            0x02 => {
                let (mut payload, rest) = list_payload(bytes.get(1..).unwrap_or_default())?;
                if !rest.is_empty() {
                    return Err(EthError::NonCanonical("bytes after the transaction"));
                }
                let tx = TxEip1559::rlp_decode_fields(&mut payload).map_err(rlp)?;
                if !payload.is_empty() {
                    return Err(EthError::Rlp("more than 9 fields".into()));
                }
                Self::Eip1559(tx)
            }
            0xc0..=0xff => {
                let (mut payload, rest) = list_payload(bytes)?;
                if !rest.is_empty() {
                    return Err(EthError::NonCanonical("bytes after the transaction"));
                }
                let mut tx = TxLegacy::rlp_decode_fields(&mut payload).map_err(rlp)?;
                if payload.is_empty() {
                    return Err(EthError::NoChainId);
                }
                let chain_id = u64::decode(&mut payload).map_err(rlp)?;
                let r = U256::decode(&mut payload).map_err(rlp)?;
                let s = U256::decode(&mut payload).map_err(rlp)?;
                if !payload.is_empty() {
                    return Err(EthError::Rlp("more than 9 fields".into()));
                }
                if !r.is_zero() || !s.is_zero() {
                    return Err(EthError::Rlp(
                        "EIP-155 signing payload must end with 0, 0 (is it signed?)".into(),
                    ));
                }
                if chain_id == 0 {
                    return Err(EthError::NoChainId);
                }
                tx.chain_id = Some(chain_id);
                Self::Legacy(tx)
            }
            0x80..=0xbf => return Err(EthError::Rlp("expected a list".into())),
            ty => return Err(EthError::TxType(ty)),
        };
        // Exactly one encoding per transaction.
        if tx.encoded_for_signing() != bytes {
            return Err(EthError::NonCanonical("does not re-encode to its bytes"));
        }
        Ok(tx)
    }

    /// The signing payload (alloy's encoder over the decoded fields).
    #[must_use]
    pub fn encoded_for_signing(&self) -> Vec<u8> {
        match self {
            Self::Eip1559(t) => t.encoded_for_signing(),
            Self::Legacy(t) => t.encoded_for_signing(),
        }
    }

    /// The signing hash as alloy computes it from the decoded fields.
    #[must_use]
    pub fn signature_hash(&self) -> B256 {
        match self {
            Self::Eip1559(t) => t.signature_hash(),
            Self::Legacy(t) => t.signature_hash(),
        }
    }

    /// Chain id (always present).
    #[must_use]
    pub fn chain_id(&self) -> u64 {
        match self {
            Self::Eip1559(t) => t.chain_id,
            Self::Legacy(t) => t.chain_id.unwrap_or(0),
        }
    }

    /// Nonce.
    #[must_use]
    pub fn nonce(&self) -> u64 {
        match self {
            Self::Eip1559(t) => t.nonce,
            Self::Legacy(t) => t.nonce,
        }
    }

    /// Gas limit.
    #[must_use]
    pub fn gas_limit(&self) -> u64 {
        match self {
            Self::Eip1559(t) => t.gas_limit,
            Self::Legacy(t) => t.gas_limit,
        }
    }

    /// Destination (or contract creation).
    #[must_use]
    pub fn to(&self) -> TxKind {
        match self {
            Self::Eip1559(t) => t.to,
            Self::Legacy(t) => t.to,
        }
    }

    /// Value in wei.
    #[must_use]
    pub fn value(&self) -> U256 {
        match self {
            Self::Eip1559(t) => t.value,
            Self::Legacy(t) => t.value,
        }
    }

    /// Calldata.
    #[must_use]
    pub fn input(&self) -> &Bytes {
        match self {
            Self::Eip1559(t) => &t.input,
            Self::Legacy(t) => &t.input,
        }
    }

    /// Largest fee per gas the transaction may pay (`max_fee_per_gas`, or
    /// the legacy `gas_price`).
    #[must_use]
    pub fn max_fee_per_gas(&self) -> u128 {
        match self {
            Self::Eip1559(t) => t.max_fee_per_gas,
            Self::Legacy(t) => t.gas_price,
        }
    }

    /// `max_priority_fee_per_gas` (EIP-1559 only).
    #[must_use]
    pub fn max_priority_fee_per_gas(&self) -> Option<u128> {
        match self {
            Self::Eip1559(t) => Some(t.max_priority_fee_per_gas),
            Self::Legacy(_) => None,
        }
    }

    /// EIP-2718 type byte (0 legacy, 2 EIP-1559).
    #[must_use]
    pub fn tx_type(&self) -> u8 {
        match self {
            Self::Eip1559(_) => 2,
            Self::Legacy(_) => 0,
        }
    }

    /// The signed transaction as an alloy envelope.
    #[must_use]
    pub fn into_envelope(self, sig: Signature) -> TxEnvelope {
        match self {
            Self::Eip1559(t) => TxEnvelope::Eip1559(t.into_signed(sig)),
            Self::Legacy(t) => TxEnvelope::Legacy(t.into_signed(sig)),
        }
    }

    /// The signed transaction's EIP-2718 bytes and hash.
    #[must_use]
    pub fn signed_raw(&self, sig: Signature) -> (Vec<u8>, B256) {
        let env = self.clone().into_envelope(sig);
        let raw = env.encoded_2718();
        let hash = keccak256(&raw);
        (raw, hash)
    }
}

/// Decodes a signed EIP-2718 transaction (ground side and the node's
/// self-check) into the unsigned transaction and its signature.
///
/// # Errors
/// [`EthError::Rlp`], [`EthError::TxType`], [`EthError::NonCanonical`].
pub fn decode_signed(raw: &[u8]) -> Result<(UnsignedTx, Signature), EthError> {
    let mut buf = raw;
    let env =
        TxEnvelope::decode_2718(&mut buf).map_err(|e| EthError::Rlp(format!("signed: {e}")))?;
    if !buf.is_empty() {
        return Err(EthError::NonCanonical("bytes after the signed transaction"));
    }
    if env.encoded_2718() != raw {
        return Err(EthError::NonCanonical(
            "signed transaction does not re-encode",
        ));
    }
    match env {
        TxEnvelope::Eip1559(s) => {
            let (t, sig, _) = Signed::into_parts(s);
            Ok((UnsignedTx::Eip1559(t), sig))
        }
        TxEnvelope::Legacy(s) => {
            let (t, sig, _) = Signed::into_parts(s);
            if t.chain_id.is_none() {
                return Err(EthError::NoChainId);
            }
            Ok((UnsignedTx::Legacy(t), sig))
        }
        other => Err(EthError::TxType(other.ty())),
    }
}

/// Recovers the sender of a signed transaction with alloy's (k256)
/// recovery, which also enforces EIP-2 low-S.
///
/// # Errors
/// [`EthError::Rlp`] when the signature does not recover.
pub fn recover_sender(raw: &[u8]) -> Result<alloy_primitives::Address, EthError> {
    use alloy_consensus::transaction::SignerRecoverable;
    let mut buf = raw;
    let env =
        TxEnvelope::decode_2718(&mut buf).map_err(|e| EthError::Rlp(format!("signed: {e}")))?;
    env.recover_signer()
        .map_err(|e| EthError::Rlp(format!("recovery: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
    use super::*;
    use alloy_eips::eip2930::AccessList;
    use alloy_primitives::Address;
    use alloy_rlp::Encodable;
    use proptest::prelude::*;

    pub(crate) fn eip1559() -> TxEip1559 {
        TxEip1559 {
            chain_id: 11_155_111,
            nonce: 7,
            gas_limit: 21_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(0x11)),
            value: U256::from(10u64.pow(17)),
            access_list: AccessList::default(),
            input: Bytes::new(),
        }
    }

    fn legacy() -> TxLegacy {
        TxLegacy {
            chain_id: Some(1),
            nonce: 9,
            gas_price: 20_000_000_000,
            gas_limit: 60_000,
            to: TxKind::Call(Address::repeat_byte(0x22)),
            value: U256::ZERO,
            input: Bytes::from(vec![0xa9, 0x05, 0x9c, 0xbb]),
        }
    }

    #[test]
    fn round_trips_both_types() {
        let a = eip1559().encoded_for_signing();
        assert_eq!(a[0], 0x02);
        assert_eq!(
            UnsignedTx::decode(&a).unwrap(),
            UnsignedTx::Eip1559(eip1559())
        );
        let b = legacy().encoded_for_signing();
        let t = UnsignedTx::decode(&b).unwrap();
        assert_eq!(t, UnsignedTx::Legacy(legacy()));
        assert_eq!(t.chain_id(), 1);
        assert_eq!(t.signature_hash(), keccak256(&b));
    }

    #[test]
    fn strictness() {
        let good = eip1559().encoded_for_signing();
        // Trailing byte.
        let mut t = good.clone();
        t.push(0);
        assert!(matches!(
            UnsignedTx::decode(&t),
            Err(EthError::NonCanonical(_))
        ));
        // Truncated.
        assert!(matches!(
            UnsignedTx::decode(&good[..good.len() - 1]),
            Err(EthError::Rlp(_))
        ));
        // Wrong type bytes.
        for ty in [0x00u8, 0x01, 0x03, 0x04, 0x7f] {
            let mut t = good.clone();
            t[0] = ty;
            assert_eq!(UnsignedTx::decode(&t), Err(EthError::TxType(ty)));
        }
        // A string where the list should be.
        assert!(matches!(
            UnsignedTx::decode(&[0x83, 1, 2, 3]),
            Err(EthError::Rlp(_))
        ));
        assert!(UnsignedTx::decode(&[]).is_err());
        // Pre-EIP-155 legacy (6 fields).
        let mut l = legacy();
        l.chain_id = None;
        assert_eq!(
            UnsignedTx::decode(&l.encoded_for_signing()),
            Err(EthError::NoChainId)
        );
        // Legacy with chain id 0.
        let mut l = legacy();
        l.chain_id = Some(0);
        assert_eq!(
            UnsignedTx::decode(&l.encoded_for_signing()),
            Err(EthError::NoChainId)
        );
        // EIP-155 payload whose last two fields are not zero (a signed tx).
        let mut fields = Vec::new();
        let l = legacy();
        l.nonce.encode(&mut fields);
        l.gas_price.encode(&mut fields);
        l.gas_limit.encode(&mut fields);
        l.to.encode(&mut fields);
        l.value.encode(&mut fields);
        l.input.encode(&mut fields);
        1u64.encode(&mut fields);
        5u8.encode(&mut fields);
        0u8.encode(&mut fields);
        let mut out = Vec::new();
        Header {
            list: true,
            payload_length: fields.len(),
        }
        .encode(&mut out);
        out.extend_from_slice(&fields);
        assert!(matches!(UnsignedTx::decode(&out), Err(EthError::Rlp(_))));
        // Non-canonical integer (nonce 7 as 0x8107 instead of 0x07).
        let pos = good.iter().position(|&b| b == 0x07).unwrap();
        let mut nc = good[..pos].to_vec();
        nc.extend_from_slice(&[0x81, 0x07]);
        nc.extend_from_slice(&good[pos + 1..]);
        // Fix the list length (one byte longer).
        nc[1] += 1;
        assert!(UnsignedTx::decode(&nc).is_err());
        // A tenth field.
        let mut extra = good.clone();
        extra.push(0x80);
        extra[1] += 1;
        assert!(matches!(UnsignedTx::decode(&extra), Err(EthError::Rlp(_))));
        // Oversize.
        assert!(matches!(
            UnsignedTx::decode(&vec![0x02; MAX_TX_BYTES + 1]),
            Err(EthError::Oversize { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = UnsignedTx::decode(&b);
            let _ = decode_signed(&b);
            let _ = recover_sender(&b);
        }

        #[test]
        fn mutations_never_panic_and_never_decode_to_the_same_tx(i in 0usize..200, x in any::<u8>()) {
            let good = eip1559().encoded_for_signing();
            let mut b = good.clone();
            let i = i % b.len();
            b[i] ^= x | 1;
            if let Ok(t) = UnsignedTx::decode(&b) {
                prop_assert_ne!(&t, &UnsignedTx::Eip1559(eip1559()));
                prop_assert_eq!(t.encoded_for_signing(), b);
            }
        }
    }
}
