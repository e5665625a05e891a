//! Fault-tolerant signing of a checked spend.
//!
//! Owns: [`sign_spend`] and the downlink form of partial signatures
//! ([`PartialSig`], [`encode_sigs`], [`decode_sigs`]).
//!
//! Every sighash is computed twice, by two `SighashCache` instances over two
//! copies of the transaction (the second re-parsed from the serialisation of
//! the first, its txid checked against the approved txid) with separately
//! built prevout lists; the two digests must be equal. The signer signs
//! digest A; the signature is verified against digest B and the node's
//! public key derived from the REGISTERED xpub (not from the signer). Any
//! mismatch is a typed refusal that raises an event: a bit flip in orbit
//! never yields a signature over something the policy did not approve.
//!
//! ECDSA (BIP143) for wsh inputs; BIP340 script-path (BIP341/342) for each
//! taproot leaf that holds the node's key.
//!
//! Must never: return a signature that failed verification.

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, Verification, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::taproot::TapLeafHash;
use bitcoin::{PublicKey, Transaction, TxOut, ecdsa, taproot};
use spacenode_policy::cbor::{self, Fields, Value, as_list, bytes, uint};

use crate::check::{CheckedSpend, InputKind};
use crate::error::BtcError;
use crate::signer::BtcSigner;

/// One signature the node releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartialSig {
    /// ECDSA for a P2WSH input (goes to `partial_sigs`).
    Ecdsa {
        /// Input index.
        input: u32,
        /// Node public key.
        pubkey: PublicKey,
        /// Signature with sighash byte.
        sig: ecdsa::Signature,
    },
    /// BIP340 for a taproot leaf (goes to `tap_script_sigs`).
    Schnorr {
        /// Input index.
        input: u32,
        /// Node x-only key.
        xonly: XOnlyPublicKey,
        /// Leaf.
        leaf: TapLeafHash,
        /// Signature with sighash type.
        sig: taproot::Signature,
    },
}

impl PartialSig {
    /// Serialised signature (DER + sighash byte, or 64/65 bytes).
    #[must_use]
    pub fn sig_bytes(&self) -> Vec<u8> {
        match self {
            Self::Ecdsa { sig, .. } => sig.to_vec(),
            Self::Schnorr { sig, .. } => sig.to_vec(),
        }
    }
}

fn sighash_mismatch(index: usize) -> BtcError {
    BtcError::SighashMismatch { index }
}

/// Signs every input of `spend` with the node's key (module docs).
///
/// # Errors
/// [`BtcError::SighashMismatch`], [`BtcError::SignatureSelfCheck`],
/// [`BtcError::Signer`].
pub fn sign_spend<C: Verification, S: BtcSigner + ?Sized>(
    secp: &Secp256k1<C>,
    spend: &CheckedSpend,
    signer: &S,
) -> Result<Vec<PartialSig>, BtcError> {
    let tx_a = &spend.psbt.unsigned_tx;
    // Second, independent copy of the transaction and prevouts.
    let tx_b: Transaction =
        deserialize(&serialize(tx_a)).map_err(|e| BtcError::PsbtMalformed(e.to_string()))?;
    if tx_b.compute_txid() != spend.txid || tx_a.compute_txid() != spend.txid {
        return Err(sighash_mismatch(0));
    }
    let prev_a: &[TxOut] = &spend.prevouts;
    let prev_b: Vec<TxOut> = deserialize::<Vec<TxOut>>(&serialize(&spend.prevouts))
        .map_err(|e| BtcError::PsbtMalformed(e.to_string()))?;
    let mut cache_a = SighashCache::new(tx_a);
    let mut cache_b = SighashCache::new(&tx_b);
    let mut out = Vec::new();
    for plan in &spend.inputs {
        let i = plan.index;
        let input = u32::try_from(i).map_err(|_| sighash_mismatch(i))?;
        match &plan.kind {
            InputKind::Wsh {
                witness_script,
                sighash,
            } => {
                let value_a = prev_a.get(i).ok_or_else(|| sighash_mismatch(i))?.value;
                let value_b = prev_b.get(i).ok_or_else(|| sighash_mismatch(i))?.value;
                let ws_b = bitcoin::ScriptBuf::from_bytes(witness_script.to_bytes());
                let a = cache_a
                    .p2wsh_signature_hash(i, witness_script, value_a, *sighash)
                    .map_err(|_| sighash_mismatch(i))?;
                let b = cache_b
                    .p2wsh_signature_hash(i, &ws_b, value_b, *sighash)
                    .map_err(|_| sighash_mismatch(i))?;
                if a.to_byte_array() != b.to_byte_array() {
                    return Err(sighash_mismatch(i));
                }
                let sig = signer
                    .sign_ecdsa(&plan.node_path, &a.to_byte_array())
                    .map_err(|e| BtcError::Signer(e.to_string()))?;
                secp.verify_ecdsa(
                    &Message::from_digest(b.to_byte_array()),
                    &sig,
                    &plan.node_pubkey.inner,
                )
                .map_err(|_| BtcError::SignatureSelfCheck { index: i })?;
                out.push(PartialSig::Ecdsa {
                    input,
                    pubkey: plan.node_pubkey,
                    sig: ecdsa::Signature {
                        signature: sig,
                        sighash_type: *sighash,
                    },
                });
            }
            InputKind::Tr { leaves, sighash } => {
                let xonly = plan.node_pubkey.inner.x_only_public_key().0;
                for leaf in leaves {
                    let leaf_b = TapLeafHash::from_byte_array(leaf.to_byte_array());
                    let a = cache_a
                        .taproot_script_spend_signature_hash(
                            i,
                            &Prevouts::All(prev_a),
                            *leaf,
                            *sighash,
                        )
                        .map_err(|_| sighash_mismatch(i))?;
                    let b = cache_b
                        .taproot_script_spend_signature_hash(
                            i,
                            &Prevouts::All(&prev_b),
                            leaf_b,
                            *sighash,
                        )
                        .map_err(|_| sighash_mismatch(i))?;
                    if a.to_byte_array() != b.to_byte_array() {
                        return Err(sighash_mismatch(i));
                    }
                    let sig = signer
                        .sign_schnorr(&plan.node_path, &a.to_byte_array())
                        .map_err(|e| BtcError::Signer(e.to_string()))?;
                    secp.verify_schnorr(&sig, &Message::from_digest(b.to_byte_array()), &xonly)
                        .map_err(|_| BtcError::SignatureSelfCheck { index: i })?;
                    out.push(PartialSig::Schnorr {
                        input,
                        xonly,
                        leaf: *leaf,
                        sig: taproot::Signature {
                            signature: sig,
                            sighash_type: *sighash,
                        },
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Downlink form: `CBOR [ { 0: input, 1: key (33 ECDSA / 32 x-only), 2: leaf hash (empty for ECDSA), 3: signature } ... ]`.
#[must_use]
pub fn encode_sigs(sigs: &[PartialSig]) -> Vec<u8> {
    cbor::encode(&Value::Array(
        sigs.iter()
            .map(|s| match s {
                PartialSig::Ecdsa { input, pubkey, sig } => Value::Map(vec![
                    (0, uint(*input)),
                    (1, bytes(&pubkey.to_bytes())),
                    (2, bytes(&[])),
                    (3, bytes(&sig.to_vec())),
                ]),
                PartialSig::Schnorr {
                    input,
                    xonly,
                    leaf,
                    sig,
                } => Value::Map(vec![
                    (0, uint(*input)),
                    (1, bytes(&xonly.serialize())),
                    (2, bytes(&leaf.to_byte_array())),
                    (3, bytes(&sig.to_vec())),
                ]),
            })
            .collect(),
    ))
}

/// Inverse of [`encode_sigs`] (ground side).
///
/// # Errors
/// [`BtcError::PsbtMalformed`].
pub fn decode_sigs(b: &[u8]) -> Result<Vec<PartialSig>, BtcError> {
    let bad = |e: &dyn std::fmt::Display| BtcError::PsbtMalformed(format!("signatures: {e}"));
    let list = as_list(cbor::decode(b).map_err(|e| bad(&e))?, "signatures").map_err(|e| bad(&e))?;
    list.into_iter()
        .map(|v| {
            let mut f = Fields::new("sig", v).map_err(|e| bad(&e))?;
            let input =
                u32::try_from(f.uint(0, "input").map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            let key = f.bytes(1, "key").map_err(|e| bad(&e))?;
            let leaf = f.bytes(2, "leaf").map_err(|e| bad(&e))?;
            let sig = f.bytes(3, "sig").map_err(|e| bad(&e))?;
            f.finish().map_err(|e| bad(&e))?;
            if leaf.is_empty() {
                Ok(PartialSig::Ecdsa {
                    input,
                    pubkey: PublicKey::from_slice(&key).map_err(|e| bad(&e))?,
                    sig: ecdsa::Signature::from_slice(&sig).map_err(|e| bad(&e))?,
                })
            } else {
                Ok(PartialSig::Schnorr {
                    input,
                    xonly: XOnlyPublicKey::from_slice(&key).map_err(|e| bad(&e))?,
                    leaf: TapLeafHash::from_byte_array(
                        <[u8; 32]>::try_from(leaf.as_slice()).map_err(|e| bad(&e))?,
                    ),
                    sig: taproot::Signature::from_slice(&sig).map_err(|e| bad(&e))?,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_sigs(&b);
        }
    }

    #[test]
    fn round_trip() {
        let secp = Secp256k1::new();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[5; 32]).unwrap();
        let kp = bitcoin::secp256k1::Keypair::from_secret_key(&secp, &sk);
        let m = Message::from_digest([1; 32]);
        let sigs = vec![
            PartialSig::Ecdsa {
                input: 0,
                pubkey: PublicKey::new(kp.public_key()),
                sig: ecdsa::Signature::sighash_all(secp.sign_ecdsa(&m, &sk)),
            },
            PartialSig::Schnorr {
                input: 3,
                xonly: kp.x_only_public_key().0,
                leaf: TapLeafHash::from_byte_array([9; 32]),
                sig: taproot::Signature {
                    signature: secp.sign_schnorr_no_aux_rand(&m, &kp),
                    sighash_type: bitcoin::sighash::TapSighashType::Default,
                },
            },
        ];
        assert_eq!(decode_sigs(&encode_sigs(&sigs)).unwrap(), sigs);
    }
}
