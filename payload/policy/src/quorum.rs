//! Administrator quorum: M of N BIP340 Schnorr signatures over a tagged
//! hash of a canonical message.
//!
//! Why BIP340 Schnorr (not Ed25519): the node already carries secp256k1 for
//! Bitcoin and Ethereum, so no second curve implementation enters the flight
//! binary; custody firms' administrators hold secp256k1 keys in the HSMs they
//! already use for Bitcoin; and independent tools (embit, bdkpython,
//! hardware signers) produce and check these signatures. Messages are
//! domain-separated with BIP340 tagged hashes, so a signature for one kind of
//! message can never be replayed as another.
//!
//! This module must never accept a signature without checking it, count a
//! signer twice, or accept a threshold of zero.

use bitcoin::hashes::{Hash, HashEngine, sha256};
use bitcoin::secp256k1::{Message, Secp256k1, Verification, XOnlyPublicKey, schnorr};

/// Errors of quorum verification. Codes 0x0500..=0x051F.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// Fewer valid distinct signatures than the threshold.
    #[error("quorum not met: {valid} valid signatures of {threshold} required")]
    NotMet {
        /// Valid distinct signers.
        valid: usize,
        /// Required.
        threshold: usize,
    },
    /// A signature names a signer index outside the set.
    #[error("signer index {index} outside the administrator set of {size}")]
    UnknownSigner {
        /// Index given.
        index: u8,
        /// Set size.
        size: usize,
    },
    /// The same signer appears twice.
    #[error("signer {index} signed twice")]
    DuplicateSigner {
        /// Index given twice.
        index: u8,
    },
    /// A signature does not verify.
    #[error("signature of signer {index} does not verify")]
    BadSignature {
        /// Signer index.
        index: u8,
    },
    /// The administrator set itself is malformed.
    #[error("invalid administrator set: {0}")]
    InvalidSet(&'static str),
}

impl QuorumError {
    /// Stable reason code for failure reports.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::NotMet { .. } => 0x0501,
            Self::UnknownSigner { .. } => 0x0502,
            Self::DuplicateSigner { .. } => 0x0503,
            Self::BadSignature { .. } => 0x0504,
            Self::InvalidSet(_) => 0x0505,
        }
    }
}

/// A BIP340 tagged hash: `SHA256(SHA256(tag) || SHA256(tag) || msg)`.
#[must_use]
pub fn tagged_hash(tag: &str, msg: &[u8]) -> [u8; 32] {
    let tag_hash = sha256::Hash::hash(tag.as_bytes());
    let mut engine = sha256::Hash::engine();
    engine.input(tag_hash.as_ref());
    engine.input(tag_hash.as_ref());
    engine.input(msg);
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// The administrators and how many must sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSet {
    keys: Vec<XOnlyPublicKey>,
    threshold: usize,
}

impl AdminSet {
    /// A set of distinct keys with `1 <= threshold <= keys.len() <= 255`.
    ///
    /// # Errors
    /// [`QuorumError::InvalidSet`].
    pub fn new(keys: Vec<XOnlyPublicKey>, threshold: usize) -> Result<Self, QuorumError> {
        if keys.is_empty() || keys.len() > 255 {
            return Err(QuorumError::InvalidSet("1 to 255 keys required"));
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(QuorumError::InvalidSet(
                "threshold must be between 1 and the number of keys",
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys.iter().skip(i + 1).any(|other| other == k) {
                return Err(QuorumError::InvalidSet("duplicate administrator key"));
            }
        }
        Ok(Self { keys, threshold })
    }

    /// The keys, in signer-index order.
    #[must_use]
    pub fn keys(&self) -> &[XOnlyPublicKey] {
        &self.keys
    }

    /// Signatures required.
    #[must_use]
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Checks that at least `threshold` distinct administrators signed
    /// `tagged_hash(tag, message)`. Every signature given must verify: a
    /// bad one is an error even if enough good ones are present, so a
    /// corrupted signature set is noticed, not silently tolerated.
    ///
    /// # Errors
    /// [`QuorumError`] naming the first problem.
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        tag: &str,
        message: &[u8],
        signatures: &[Signature],
    ) -> Result<Vec<u8>, QuorumError> {
        let digest = Message::from_digest(tagged_hash(tag, message));
        let mut signers: Vec<u8> = Vec::with_capacity(signatures.len());
        for s in signatures {
            if signers.contains(&s.signer) {
                return Err(QuorumError::DuplicateSigner { index: s.signer });
            }
            let key = self
                .keys
                .get(usize::from(s.signer))
                .ok_or(QuorumError::UnknownSigner {
                    index: s.signer,
                    size: self.keys.len(),
                })?;
            let sig = schnorr::Signature::from_slice(&s.sig)
                .map_err(|_| QuorumError::BadSignature { index: s.signer })?;
            secp.verify_schnorr(&sig, &digest, key)
                .map_err(|_| QuorumError::BadSignature { index: s.signer })?;
            signers.push(s.signer);
        }
        if signers.len() < self.threshold {
            return Err(QuorumError::NotMet {
                valid: signers.len(),
                threshold: self.threshold,
            });
        }
        Ok(signers)
    }
}

/// One administrator's signature: signer index into the [`AdminSet`] and a
/// 64-byte BIP340 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Index of the signer in the administrator set.
    pub signer: u8,
    /// BIP340 signature.
    pub sig: [u8; 64],
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Keypair, SecretKey};

    fn keypairs(n: u8) -> Vec<Keypair> {
        let secp = Secp256k1::new();
        (1..=n)
            .map(|i| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[i; 32]).unwrap()))
            .collect()
    }

    fn sign(kp: &Keypair, signer: u8, tag: &str, msg: &[u8]) -> Signature {
        let secp = Secp256k1::new();
        let sig = secp.sign_schnorr_no_aux_rand(&Message::from_digest(tagged_hash(tag, msg)), kp);
        Signature {
            signer,
            sig: sig.serialize(),
        }
    }

    fn set(kps: &[Keypair], threshold: usize) -> AdminSet {
        AdminSet::new(
            kps.iter().map(|k| k.x_only_public_key().0).collect(),
            threshold,
        )
        .unwrap()
    }

    #[test]
    fn bip340_tagged_hash_matches_the_spec_construction() {
        // BIP340 "BIP0340/challenge" tag with an empty message, computed by
        // hand: SHA256(SHA256(tag) || SHA256(tag)).
        let t = sha256::Hash::hash(b"BIP0340/challenge");
        let mut both = t.as_byte_array().to_vec();
        both.extend_from_slice(t.as_byte_array());
        assert_eq!(
            tagged_hash("BIP0340/challenge", b""),
            sha256::Hash::hash(&both).to_byte_array()
        );
    }

    #[test]
    fn two_of_three_accepts_and_refuses_correctly() {
        let kps = keypairs(3);
        let admins = set(&kps, 2);
        let secp = Secp256k1::verification_only();
        let msg = b"exit safe mode";
        let s0 = sign(&kps[0], 0, "t", msg);
        let s2 = sign(&kps[2], 2, "t", msg);
        assert_eq!(admins.verify(&secp, "t", msg, &[s0, s2]), Ok(vec![0, 2]));
        assert_eq!(
            admins.verify(&secp, "t", msg, &[s0]),
            Err(QuorumError::NotMet {
                valid: 1,
                threshold: 2
            })
        );
        assert_eq!(
            admins.verify(&secp, "t", msg, &[s0, s0]),
            Err(QuorumError::DuplicateSigner { index: 0 })
        );
        // Right key, wrong tag (domain separation).
        let other = sign(&kps[1], 1, "other", msg);
        assert_eq!(
            admins.verify(&secp, "t", msg, &[s0, other]),
            Err(QuorumError::BadSignature { index: 1 })
        );
        // A signature attributed to the wrong signer.
        let mislabeled = Signature { signer: 1, ..s2 };
        assert_eq!(
            admins.verify(&secp, "t", msg, &[s0, mislabeled]),
            Err(QuorumError::BadSignature { index: 1 })
        );
        assert_eq!(
            admins.verify(&secp, "t", msg, &[s0, Signature { signer: 9, ..s2 }]),
            Err(QuorumError::UnknownSigner { index: 9, size: 3 })
        );
        // Tampered message.
        assert!(
            admins
                .verify(&secp, "t", b"exit safe mod3", &[s0, s2])
                .is_err()
        );
    }

    #[test]
    fn malformed_sets_are_refused() {
        let kps = keypairs(2);
        let k: Vec<_> = kps.iter().map(|k| k.x_only_public_key().0).collect();
        assert!(AdminSet::new(k.clone(), 0).is_err());
        assert!(AdminSet::new(k.clone(), 3).is_err());
        assert!(AdminSet::new(vec![k[0], k[0]], 1).is_err());
        assert!(AdminSet::new(vec![], 1).is_err());
    }
}
