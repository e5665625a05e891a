//! The policy anchor: what the node's TPM (or, in development, a file next
//! to the database) remembers about the policy in force, so that losing the
//! database does not reopen the bootstrap.
//!
//! Owns: [`PolicyAnchor`] (highest active version, its hash and the digest
//! of its administrator set), its fixed encoding, [`admins_digest`] and the
//! pure recovery decision [`recover`].
//!
//! The rule (docs/policy.md "Anchor and recovery"): a node that never
//! anchored a policy bootstraps from the config's `[admin]` set, as before.
//! A node whose anchor exists never does: after a database loss the first
//! policy must be signed by a quorum of the ANCHORED administrator set (the
//! set of the last active policy), name that same set as its own
//! administrators, and carry a version at or above the anchored one (at the
//! anchored version, the very same document). Administrators removed by a
//! later policy cannot come back, and old signed policies cannot be
//! replayed.
//!
//! Must never: accept a recovery whose administrator set is not the
//! anchored one, or a version below the anchored one; do I/O.

use bitcoin::secp256k1::{Secp256k1, Verification};

use crate::change::{ChangeError, PolicyState};
use crate::document::{KeySet, PolicyDocument, PolicySignError, SignedPolicy};
use crate::quorum::tagged_hash;
use crate::rules::Rule;
use crate::units::TimeMs;

/// Format byte of the anchor record.
pub const ANCHOR_FORMAT: u8 = 1;
/// Length of the encoded anchor.
pub const ANCHOR_LEN: usize = 1 + 8 + 32 + 32;
/// Tag of [`admins_digest`].
pub const ADMINS_TAG: &str = "spacenode/admins/v1";

/// Refusals of the anchor rules. Codes 0x05F0..=0x05FF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// The node anchored a policy before (its database was lost or
    /// replaced) and the uploaded first policy does not name the anchored
    /// administrator set: the config's `[admin]` set no longer bootstraps.
    #[error(
        "this node was provisioned before (anchored policy version {anchored_version}): a \
         bootstrap must be signed by, and name, the anchored administrator set {anchored} \
         (the document names {got})"
    )]
    ProvisionedBefore {
        /// Version in the anchor.
        anchored_version: u64,
        /// Anchored administrator-set digest (hex).
        anchored: String,
        /// The document's administrator-set digest (hex).
        got: String,
    },
    /// The recovery policy's version is below the anchored one (replay of
    /// an old policy).
    #[error("recovery policy version {version} is below the anchored version {anchored}")]
    BelowAnchor {
        /// Its version.
        version: u64,
        /// Anchored version.
        anchored: u64,
    },
    /// At the anchored version, a document other than the anchored one.
    #[error("recovery policy version {version} is the anchored version but another document")]
    HashMismatch {
        /// The version.
        version: u64,
    },
    /// The anchor record does not decode (fail closed: no bootstrap).
    #[error("policy anchor record corrupt: {0}")]
    Corrupt(String),
    /// The recovery document's signatures or contents.
    #[error(transparent)]
    Change(#[from] ChangeError),
}

impl AnchorError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::ProvisionedBefore { .. } => 0x05F0,
            Self::BelowAnchor { .. } => 0x05F1,
            Self::HashMismatch { .. } => 0x05F2,
            Self::Corrupt(_) => 0x05F3,
            Self::Change(e) => e.code(),
        }
    }

    /// The rule the refusal is reported under.
    #[must_use]
    pub fn rule(&self) -> Rule {
        match self {
            Self::ProvisionedBefore { .. } => Rule::PolicyQuorum,
            Self::BelowAnchor { .. } | Self::HashMismatch { .. } => Rule::PolicyVersion,
            Self::Corrupt(_) => Rule::PolicyEncoding,
            Self::Change(e) => e.rule(),
        }
    }
}

/// `tagged_hash("spacenode/admins/v1", threshold u8 | n u8 | n × x-only key
/// 32)`: the identity of an administrator set (order and threshold count).
#[must_use]
pub fn admins_digest(set: &KeySet) -> [u8; 32] {
    let mut m = Vec::with_capacity(2usize.saturating_add(set.keys.len().saturating_mul(32)));
    m.push(set.threshold);
    m.push(u8::try_from(set.keys.len()).unwrap_or(u8::MAX));
    for k in &set.keys {
        m.extend_from_slice(&k.serialize());
    }
    tagged_hash(ADMINS_TAG, &m)
}

/// What the TPM remembers about the policy in force.
///
/// ```text
/// anchor := format u8 (=1) | version u64 BE | policy hash 32 | admins digest 32
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyAnchor {
    /// Version of the active policy.
    pub version: u64,
    /// Its hash (`document::POLICY_TAG`).
    pub hash: [u8; 32],
    /// [`admins_digest`] of its administrator set.
    pub admins_digest: [u8; 32],
}

impl PolicyAnchor {
    /// The anchor of `state`'s active policy.
    #[must_use]
    pub fn of(state: &PolicyState) -> Self {
        Self {
            version: state.active.document.version,
            hash: state.active.hash,
            admins_digest: admins_digest(&state.active.document.admins),
        }
    }

    /// Fixed-size encoding (see the type doc).
    #[must_use]
    pub fn encode(&self) -> [u8; ANCHOR_LEN] {
        let mut out = [0u8; ANCHOR_LEN];
        out[0] = ANCHOR_FORMAT;
        out[1..9].copy_from_slice(&self.version.to_be_bytes());
        out[9..41].copy_from_slice(&self.hash);
        out[41..73].copy_from_slice(&self.admins_digest);
        out
    }

    /// Strict decoding.
    ///
    /// # Errors
    /// [`AnchorError::Corrupt`].
    pub fn decode(b: &[u8]) -> Result<Self, AnchorError> {
        let b: &[u8; ANCHOR_LEN] = b.try_into().map_err(|_| {
            AnchorError::Corrupt(format!("{} bytes, expected {ANCHOR_LEN}", b.len()))
        })?;
        let (format, rest) = b.split_at(1);
        if format != [ANCHOR_FORMAT] {
            return Err(AnchorError::Corrupt(format!("format {}", format[0])));
        }
        let (version, rest) = rest.split_at(8);
        let (hash, digest) = rest.split_at(32);
        let arr32 = |s: &[u8]| -> Result<[u8; 32], AnchorError> {
            s.try_into()
                .map_err(|_| AnchorError::Corrupt("field length".into()))
        };
        Ok(Self {
            version: u64::from_be_bytes(
                version
                    .try_into()
                    .map_err(|_| AnchorError::Corrupt("version".into()))?,
            ),
            hash: arr32(hash)?,
            admins_digest: arr32(digest)?,
        })
    }
}

/// The first policy of a node whose anchor exists (its database was lost):
/// signed by a quorum of the anchored administrator set, naming that set
/// as its own administrators, at or above the anchored version (at it, the
/// anchored document itself). Active at once, like a bootstrap: the
/// administrators in force are the ones who sign it.
///
/// # Errors
/// [`AnchorError`]; signature and document failures as
/// [`AnchorError::Change`].
pub fn recover<C: Verification>(
    secp: &Secp256k1<C>,
    anchor: &PolicyAnchor,
    signed: &SignedPolicy,
    now: TimeMs,
) -> Result<PolicyState, AnchorError> {
    let doc = PolicyDocument::decode(&signed.document)
        .map_err(|e| AnchorError::Change(ChangeError::Signed(PolicySignError::Document(e))))?;
    let digest = admins_digest(&doc.admins);
    if digest != anchor.admins_digest {
        return Err(AnchorError::ProvisionedBefore {
            anchored_version: anchor.version,
            anchored: crate::document::hex_encode(&anchor.admins_digest),
            got: crate::document::hex_encode(&digest),
        });
    }
    // The document's own set IS the anchored set (same digest): verify the
    // signatures against it.
    let admins = doc
        .admins
        .admin_set()
        .map_err(|e| AnchorError::Change(ChangeError::Signed(PolicySignError::Quorum(e))))?;
    let state = PolicyState::bootstrap(secp, &admins, signed, now)?;
    let version = state.active.document.version;
    if version < anchor.version {
        return Err(AnchorError::BelowAnchor {
            version,
            anchored: anchor.version,
        });
    }
    if version == anchor.version && state.active.hash != anchor.hash {
        return Err(AnchorError::HashMismatch { version });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::POLICY_TAG;
    use crate::document::tests::{kp, sample, sign_doc};
    use crate::quorum::Signature;
    use bitcoin::secp256k1::Message;

    /// `doc` signed by keypairs `kp(first + i)` as signer `i` for `signers`.
    fn sign_with(doc: &PolicyDocument, first: u8, signers: &[u8]) -> SignedPolicy {
        let secp = Secp256k1::new();
        let bytes = doc.encode();
        let msg = Message::from_digest(tagged_hash(POLICY_TAG, &bytes));
        SignedPolicy {
            document: bytes,
            signatures: signers
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: secp
                        .sign_schnorr_no_aux_rand(&msg, &kp(first + i))
                        .serialize(),
                })
                .collect(),
        }
    }

    /// A document of `version` whose administrators are kp(first..first+3).
    fn with_admins(version: u64, first: u8) -> PolicyDocument {
        let mut d = sample(version);
        d.admins.keys = (first..first + 3)
            .map(|i| kp(i).x_only_public_key().0)
            .collect();
        d
    }

    #[test]
    fn encoding_round_trips_and_is_strict() {
        let a = PolicyAnchor {
            version: 7,
            hash: [1; 32],
            admins_digest: [2; 32],
        };
        let b = a.encode();
        assert_eq!(PolicyAnchor::decode(&b).unwrap(), a);
        assert_eq!(PolicyAnchor::decode(&b[..72]).unwrap_err().code(), 0x05F3);
        let mut bad = b;
        bad[0] = 2;
        assert_eq!(PolicyAnchor::decode(&bad).unwrap_err().code(), 0x05F3);
        let d = sample(1);
        let mut other = d.admins.clone();
        other.threshold = 3;
        assert_ne!(admins_digest(&d.admins), admins_digest(&other));
    }

    /// Issue 13 item 5: launch set A bootstraps v1; v2 (signed by A) makes
    /// B the administrators and is anchored. After a database loss the
    /// launch set cannot bootstrap, the signed v2 as it was uplinked cannot
    /// be replayed, versions below the anchor are refused; the current
    /// quorum (B) recovers with the anchored document or a newer one.
    #[test]
    fn only_the_anchored_quorum_recovers_a_lost_database() {
        let secp = Secp256k1::verification_only();
        let t = TimeMs(5);
        let a = sample(1).admins.admin_set().unwrap();
        let v2 = with_admins(2, 4);
        let v2_by_a = sign_with(&v2, 1, &[0, 2]);
        let anchored = PolicyState::bootstrap(&secp, &a, &v2_by_a, t).unwrap();
        let anchor = PolicyAnchor::of(&anchored);
        assert_eq!(anchor.version, 2);
        assert_eq!(anchor.admins_digest, admins_digest(&v2.admins));

        // The launch set's bootstrap (v1, names A, signed by A).
        let e = recover(&secp, &anchor, &sign_doc(&sample(1).encode(), &[0, 1]), t).unwrap_err();
        assert_eq!((e.code(), e.rule()), (0x05F0, Rule::PolicyQuorum), "{e}");
        // Even at a higher version, A cannot come back.
        let e = recover(&secp, &anchor, &sign_doc(&sample(9).encode(), &[0, 1]), t).unwrap_err();
        assert_eq!(e.code(), 0x05F0, "{e}");
        // The signed v2 as uplinked (names B, signed by A): not B's quorum.
        let e = recover(&secp, &anchor, &v2_by_a, t).unwrap_err();
        assert_eq!(e.rule(), Rule::PolicyQuorum, "{e}");
        assert!((0x0500..=0x050F).contains(&e.code()), "{e}");
        // B below the anchored version, and another document at it.
        let e = recover(
            &secp,
            &anchor,
            &sign_with(&with_admins(1, 4), 4, &[0, 1]),
            t,
        )
        .unwrap_err();
        assert_eq!((e.code(), e.rule()), (0x05F1, Rule::PolicyVersion), "{e}");
        let mut v2_other = with_admins(2, 4);
        v2_other.rules.max_fee.0 += 1;
        let e = recover(&secp, &anchor, &sign_with(&v2_other, 4, &[0, 1]), t).unwrap_err();
        assert_eq!(e.code(), 0x05F2, "{e}");
        // Recovery: the anchored document re-signed by B, or a newer one.
        let s = recover(&secp, &anchor, &sign_with(&v2, 4, &[1, 2]), t).unwrap();
        assert_eq!((s.active.hash, s.highest_version), (anchor.hash, 2));
        let s = recover(
            &secp,
            &anchor,
            &sign_with(&with_admins(3, 4), 4, &[0, 2]),
            t,
        )
        .unwrap();
        assert_eq!(s.active.document.version, 3);
        assert_eq!(PolicyAnchor::of(&s).admins_digest, anchor.admins_digest);
        // One signature of B is not a quorum.
        let e = recover(&secp, &anchor, &sign_with(&with_admins(3, 4), 4, &[0]), t).unwrap_err();
        assert_eq!(e.rule(), Rule::PolicyQuorum, "{e}");
    }
}
