//! Policy change state machine: propose → pending (vetoable) → active.
//!
//! Owns: [`PolicyState`] (the active policy, at most one pending change and
//! the highest version ever accepted), its persisted encoding, and the pure
//! transitions [`PolicyState::bootstrap`], [`PolicyState::propose`],
//! [`PolicyState::veto`] and [`PolicyState::poll`].
//!
//! Rules: a proposal is signed by the administrator quorum of the ACTIVE
//! policy, has a version above every version ever accepted (active,
//! pending, vetoed or replaced: `highest_version`), keeps the network, and
//! activates `activation_delay_ms` of the ACTIVE policy after it was
//! accepted. Until then a veto command (kind `VETO_POLICY`, body = the
//! pending policy hash) signed by `veto_threshold` active administrators
//! cancels it. A newer proposal replaces a pending one (its delay restarts).
//!
//! What the node persists and in which order: after every `Ok` transition,
//! `PolicyState::encode()` in one transaction. On [`Transition::Activated`]
//! the node binds the new version to the TPM NV counter: write the state
//! with `epoch = Tpm::next_epoch()` first, then `complete_epoch_bump`, and
//! only then apply the policy (e.g. replace the chain checkpoint) and
//! acknowledge. A restored older database then shows `RollbackDetected`.
//!
//! Must never: activate a policy early, accept a version at or below
//! `highest_version`, or act on a veto for another document.

use bitcoin::secp256k1::{Secp256k1, Verification};

use crate::cbor::{self, CborError, Fields, Value, bytes, uint};
use crate::command::{self, CommandError, SignedCommand};
use crate::document::{
    PolicyDocument, PolicySignError, SignedPolicy, signatures_from, signatures_value,
};
use crate::quorum::{AdminSet, Signature};
use crate::rules::Rule;
use crate::units::TimeMs;

/// Errors of policy changes. Codes 0x0560..=0x057F (wrapped errors keep
/// their own codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Version not above every version accepted before (replay of an old
    /// policy).
    #[error("policy version {version} refused: highest accepted is {highest}")]
    VersionNotNewer {
        /// Proposed.
        version: u64,
        /// Highest accepted so far.
        highest: u64,
    },
    /// A policy may not change the network.
    #[error("policy changes the network")]
    NetworkChange,
    /// Veto with nothing pending.
    #[error("no pending policy change to veto")]
    NoPending,
    /// Veto names another document.
    #[error("veto for another policy hash")]
    VetoMismatch,
    /// Time arithmetic overflowed.
    #[error("activation time overflows")]
    TimeOverflow,
    /// The persisted state does not decode.
    #[error("persisted policy state corrupt: {0}")]
    StateCorrupt(String),
    /// A retirement names no registered wallet or Safe.
    #[error("no registered {what} {id}")]
    NotRegistered {
        /// "wallet" or "Safe".
        what: &'static str,
        /// The id it named (hex).
        id: String,
    },
    /// Signature or document problem.
    #[error(transparent)]
    Signed(#[from] PolicySignError),
    /// Veto command not authorised.
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl ChangeError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::VersionNotNewer { .. } => 0x0560,
            Self::NetworkChange => 0x0561,
            Self::NoPending => 0x0562,
            Self::VetoMismatch => 0x0563,
            Self::TimeOverflow => 0x0564,
            Self::StateCorrupt(_) => 0x0565,
            Self::NotRegistered { .. } => 0x0566,
            Self::Signed(e) => e.code(),
            Self::Command(e) => e.code(),
        }
    }

    /// The rule the refusal is reported under.
    #[must_use]
    pub fn rule(&self) -> Rule {
        match self {
            Self::VersionNotNewer { .. } => Rule::PolicyVersion,
            Self::NoPending | Self::VetoMismatch => Rule::PolicyVeto,
            Self::Signed(PolicySignError::Quorum(_)) => Rule::PolicyQuorum,
            Self::Command(_) => Rule::PolicyVeto,
            Self::NotRegistered { what: "Safe", .. } => Rule::SafeRegistration,
            Self::NotRegistered { .. } => Rule::WalletRegistration,
            _ => Rule::PolicyEncoding,
        }
    }
}

/// The policy in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePolicy {
    /// Decoded document.
    pub document: PolicyDocument,
    /// Its canonical bytes.
    pub bytes: Vec<u8>,
    /// Its hash (tagged, see `document::POLICY_TAG`).
    pub hash: [u8; 32],
    /// Node time it became active.
    pub activated_at: TimeMs,
}

/// An accepted change waiting for its activation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPolicy {
    /// Decoded document.
    pub document: PolicyDocument,
    /// Canonical bytes.
    pub bytes: Vec<u8>,
    /// Hash.
    pub hash: [u8; 32],
    /// The signatures it was accepted with (kept for audit and downlink).
    pub signatures: Vec<Signature>,
    /// Node time it was accepted.
    pub proposed_at: TimeMs,
    /// Node time from which [`PolicyState::poll`] activates it.
    pub activates_at: TimeMs,
}

/// What a transition did; the node persists the state, then acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A change is pending.
    Proposed {
        /// Its version.
        version: u64,
        /// Its hash.
        hash: [u8; 32],
        /// When it activates.
        activates_at: TimeMs,
        /// Version of a pending change it replaced.
        replaced: Option<u64>,
    },
    /// The pending change was cancelled.
    Vetoed {
        /// Its version.
        version: u64,
        /// Its hash.
        hash: [u8; 32],
    },
    /// A new policy is in force: bump the TPM epoch (DB first, NV second).
    Activated {
        /// Version now active.
        version: u64,
        /// Its hash.
        hash: [u8; 32],
    },
}

/// Persistable policy state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    /// In force.
    pub active: ActivePolicy,
    /// Waiting for activation.
    pub pending: Option<PendingPolicy>,
    /// Highest version ever accepted (active, pending, replaced or vetoed).
    pub highest_version: u64,
}

fn t_u64(t: TimeMs) -> u64 {
    u64::try_from(t.0).unwrap_or(0)
}

fn u64_t(v: u64) -> Result<TimeMs, ChangeError> {
    i64::try_from(v)
        .map(TimeMs)
        .map_err(|_| ChangeError::StateCorrupt("time above i64".into()))
}

impl PolicyState {
    /// First policy at provisioning: signed by the provisioned
    /// administrator set, active at once (there is no policy in force
    /// to impose a delay).
    ///
    /// # Errors
    /// [`ChangeError::Signed`].
    pub fn bootstrap<C: Verification>(
        secp: &Secp256k1<C>,
        provisioned: &AdminSet,
        signed: &SignedPolicy,
        now: TimeMs,
    ) -> Result<Self, ChangeError> {
        let document = signed.verify(secp, provisioned)?;
        Ok(Self {
            highest_version: document.version,
            active: ActivePolicy {
                hash: document.hash(),
                bytes: signed.document.clone(),
                document,
                activated_at: now,
            },
            pending: None,
        })
    }

    /// The active administrator set.
    ///
    /// # Errors
    /// Only if the stored document is inconsistent (never for a decoded one).
    pub fn admins(&self) -> Result<AdminSet, ChangeError> {
        self.active
            .document
            .admins
            .admin_set()
            .map_err(|e| ChangeError::Signed(e.into()))
    }

    /// Accepts a proposal (see module docs). Does not activate it, even with
    /// a zero delay: call [`PolicyState::poll`].
    ///
    /// # Errors
    /// [`ChangeError`]; the state is unchanged on error.
    pub fn propose<C: Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        signed: &SignedPolicy,
        now: TimeMs,
    ) -> Result<Transition, ChangeError> {
        let document = signed.verify(secp, &self.admins()?)?;
        if document.version <= self.highest_version {
            return Err(ChangeError::VersionNotNewer {
                version: document.version,
                highest: self.highest_version,
            });
        }
        if document.network != self.active.document.network {
            return Err(ChangeError::NetworkChange);
        }
        let activates_at = now
            .checked_add_ms(self.active.document.activation_delay_ms)
            .ok_or(ChangeError::TimeOverflow)?;
        let hash = document.hash();
        let version = document.version;
        let replaced = self.pending.take().map(|p| p.document.version);
        self.highest_version = version;
        self.pending = Some(PendingPolicy {
            document,
            bytes: signed.document.clone(),
            hash,
            signatures: signed.signatures.clone(),
            proposed_at: now,
            activates_at,
        });
        Ok(Transition::Proposed {
            version,
            hash,
            activates_at,
            replaced,
        })
    }

    /// Applies a veto: an administrator command of kind
    /// [`command::kind::VETO_POLICY`] whose body is the pending policy's
    /// hash, signed by `veto_threshold` administrators of the ACTIVE
    /// policy. `executed` holds the node's last executed veto sequence and
    /// its highest of any kind (persist the command's seq, as a veto's,
    /// together with the new state).
    ///
    /// # Errors
    /// [`ChangeError`]; the state is unchanged on error.
    pub fn veto<C: Verification>(
        &mut self,
        secp: &Secp256k1<C>,
        cmd: &SignedCommand,
        node: [u8; 8],
        executed: command::Executed,
        now: TimeMs,
    ) -> Result<Transition, ChangeError> {
        let doc = &self.active.document;
        let vetoers = doc
            .admins
            .with_threshold(doc.veto_threshold)
            .map_err(|e| ChangeError::Signed(e.into()))?;
        let c = cmd.authorize(secp, &vetoers, node, executed, now.0)?;
        if c.kind != command::kind::VETO_POLICY {
            return Err(CommandError::WrongKind {
                expected: command::kind::VETO_POLICY,
                got: c.kind,
            }
            .into());
        }
        let pending = self.pending.as_ref().ok_or(ChangeError::NoPending)?;
        if c.body.as_slice() != pending.hash.as_slice() {
            return Err(ChangeError::VetoMismatch);
        }
        let t = Transition::Vetoed {
            version: pending.document.version,
            hash: pending.hash,
        };
        self.pending = None;
        Ok(t)
    }

    /// Activates the pending change if its time has come.
    #[must_use]
    pub fn poll(&mut self, now: TimeMs) -> Option<Transition> {
        if self.pending.as_ref().is_some_and(|p| now >= p.activates_at) {
            let p = self.pending.take()?;
            let t = Transition::Activated {
                version: p.document.version,
                hash: p.hash,
            };
            self.active = ActivePolicy {
                document: p.document,
                bytes: p.bytes,
                hash: p.hash,
                activated_at: now,
            };
            return Some(t);
        }
        None
    }

    /// Persisted form (canonical CBOR):
    /// `{0: active bytes, 1: activated_at, 2: [pending?], 3: highest_version}`
    /// with pending = `{0: bytes, 1: signatures, 2: proposed_at, 3: activates_at}`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let pending = self
            .pending
            .iter()
            .map(|p| {
                Value::Map(vec![
                    (0, bytes(&p.bytes)),
                    (1, signatures_value(&p.signatures)),
                    (2, uint(t_u64(p.proposed_at))),
                    (3, uint(t_u64(p.activates_at))),
                ])
            })
            .collect();
        cbor::encode(&Value::Map(vec![
            (0, bytes(&self.active.bytes)),
            (1, uint(t_u64(self.active.activated_at))),
            (2, Value::Array(pending)),
            (3, uint(self.highest_version)),
        ]))
    }

    /// Loads the persisted form, re-validating the documents.
    ///
    /// # Errors
    /// [`ChangeError::StateCorrupt`].
    pub fn decode(b: &[u8]) -> Result<Self, ChangeError> {
        let corrupt = |e: &dyn std::fmt::Display| ChangeError::StateCorrupt(e.to_string());
        let inner = || -> Result<Self, ChangeError> {
            let mut f = Fields::new("policy state", cbor::decode(b).map_err(|e| corrupt(&e))?)
                .map_err(|e| corrupt(&e))?;
            let active_bytes = f.bytes(0, "active").map_err(|e| corrupt(&e))?;
            let activated_at = u64_t(f.uint(1, "activated_at").map_err(|e| corrupt(&e))?)?;
            let pend = f.list(2, "pending").map_err(|e| corrupt(&e))?;
            let highest_version = f.uint(3, "highest_version").map_err(|e| corrupt(&e))?;
            f.finish().map_err(|e| corrupt(&e))?;
            let document = PolicyDocument::decode(&active_bytes).map_err(|e| corrupt(&e))?;
            if pend.len() > 1 {
                return Err(ChangeError::StateCorrupt("more than one pending".into()));
            }
            let mut pending = None;
            for p in pend {
                let mut g = Fields::new("pending", p).map_err(|e| corrupt(&e))?;
                let pbytes = g.bytes(0, "bytes").map_err(|e| corrupt(&e))?;
                let signatures = signatures_from(g.req(1, "signatures").map_err(|e| corrupt(&e))?)
                    .map_err(|e: CborError| corrupt(&e))?;
                let proposed_at = u64_t(g.uint(2, "proposed_at").map_err(|e| corrupt(&e))?)?;
                let activates_at = u64_t(g.uint(3, "activates_at").map_err(|e| corrupt(&e))?)?;
                g.finish().map_err(|e| corrupt(&e))?;
                let pdoc = PolicyDocument::decode(&pbytes).map_err(|e| corrupt(&e))?;
                pending = Some(PendingPolicy {
                    hash: pdoc.hash(),
                    document: pdoc,
                    bytes: pbytes,
                    signatures,
                    proposed_at,
                    activates_at,
                });
            }
            Ok(Self {
                active: ActivePolicy {
                    hash: document.hash(),
                    document,
                    bytes: active_bytes,
                    activated_at,
                },
                pending,
                highest_version,
            })
        };
        inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, kind};
    use crate::document::tests::{kp, sample, sign_doc};
    use crate::quorum::tagged_hash;
    use bitcoin::secp256k1::Message;

    const NODE: [u8; 8] = *b"node-001";

    fn boot() -> PolicyState {
        let secp = Secp256k1::verification_only();
        let d = sample(1);
        let admins = d.admins.admin_set().unwrap();
        PolicyState::bootstrap(
            &secp,
            &admins,
            &sign_doc(&d.encode(), &[0, 1]),
            TimeMs(1_000),
        )
        .unwrap()
    }

    fn veto_cmd(hash: [u8; 32], seq: u64, signers: &[u8]) -> SignedCommand {
        let secp = Secp256k1::new();
        let c = Command {
            kind: kind::VETO_POLICY,
            target: NODE,
            seq,
            not_before_ms: 0,
            not_after_ms: i64::MAX,
            body: hash.to_vec(),
        };
        let b = c.encode();
        let m = Message::from_digest(tagged_hash(command::TAG, &b));
        SignedCommand {
            command: b,
            signatures: signers
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: secp.sign_schnorr_no_aux_rand(&m, &kp(i + 1)).serialize(),
                })
                .collect(),
        }
    }

    #[test]
    fn activation_waits_for_the_delay() {
        let secp = Secp256k1::verification_only();
        let mut s = boot();
        let d2 = sample(2);
        let t = s
            .propose(&secp, &sign_doc(&d2.encode(), &[1, 2]), TimeMs(10_000))
            .unwrap();
        assert!(matches!(
            t,
            Transition::Proposed {
                version: 2,
                activates_at: TimeMs(3_610_000),
                ..
            }
        ));
        assert_eq!(s.poll(TimeMs(3_609_999)), None);
        assert_eq!(s.active.document.version, 1);
        let persisted = PolicyState::decode(&s.encode()).unwrap();
        assert_eq!(persisted, s);
        assert!(matches!(
            s.poll(TimeMs(3_610_000)),
            Some(Transition::Activated { version: 2, .. })
        ));
        assert_eq!(s.active.document.version, 2);
        assert_eq!(PolicyState::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn replayed_old_or_equal_version_refused() {
        let secp = Secp256k1::verification_only();
        let mut s = boot();
        let same = sign_doc(&sample(1).encode(), &[0, 1]);
        assert!(matches!(
            s.propose(&secp, &same, TimeMs(2_000)),
            Err(ChangeError::VersionNotNewer {
                version: 1,
                highest: 1
            })
        ));
        let d3 = sign_doc(&sample(3).encode(), &[0, 1]);
        s.propose(&secp, &d3, TimeMs(2_000)).unwrap();
        let d2 = sign_doc(&sample(2).encode(), &[0, 1]);
        let e = s.propose(&secp, &d2, TimeMs(2_000)).unwrap_err();
        assert_eq!(e.rule(), Rule::PolicyVersion);
        assert_eq!(e.code(), 0x0560);
    }

    #[test]
    fn wrong_quorum_refused() {
        let secp = Secp256k1::verification_only();
        let mut s = boot();
        let e = s
            .propose(&secp, &sign_doc(&sample(2).encode(), &[0]), TimeMs(2_000))
            .unwrap_err();
        assert_eq!(e.rule(), Rule::PolicyQuorum);
        assert_eq!(e.code(), 0x0501);
        assert!(s.pending.is_none());
    }

    #[test]
    fn veto_cancels_and_the_vetoed_version_cannot_return() {
        let secp = Secp256k1::verification_only();
        let mut s = boot();
        let signed2 = sign_doc(&sample(2).encode(), &[0, 1]);
        s.propose(&secp, &signed2, TimeMs(2_000)).unwrap();
        let hash = s.pending.as_ref().unwrap().hash;
        // Veto for another hash refused; then the real veto.
        let e = s
            .veto(
                &secp,
                &veto_cmd([0; 32], 1, &[2]),
                NODE,
                command::Executed::default(),
                TimeMs(3_000),
            )
            .unwrap_err();
        assert_eq!(e, ChangeError::VetoMismatch);
        let t = s
            .veto(
                &secp,
                &veto_cmd(hash, 1, &[2]),
                NODE,
                command::Executed::default(),
                TimeMs(3_000),
            )
            .unwrap();
        assert_eq!(t, Transition::Vetoed { version: 2, hash });
        assert_eq!(s.poll(TimeMs(10_000_000)), None);
        assert_eq!(s.active.document.version, 1);
        assert!(matches!(
            s.propose(&secp, &signed2, TimeMs(4_000)),
            Err(ChangeError::VersionNotNewer { .. })
        ));
        assert_eq!(
            s.veto(
                &secp,
                &veto_cmd(hash, 2, &[2]),
                NODE,
                command::Executed {
                    last_of_kind: 1,
                    highest: 1
                },
                TimeMs(3_000)
            ),
            Err(ChangeError::NoPending)
        );
    }

    #[test]
    fn veto_needs_its_threshold() {
        let secp = Secp256k1::verification_only();
        let mut s = boot();
        s.propose(
            &secp,
            &sign_doc(&sample(2).encode(), &[0, 1]),
            TimeMs(2_000),
        )
        .unwrap();
        let hash = s.pending.as_ref().unwrap().hash;
        // veto_threshold is 1: zero signatures are not enough.
        let e = s
            .veto(
                &secp,
                &veto_cmd(hash, 1, &[]),
                NODE,
                command::Executed::default(),
                TimeMs(3_000),
            )
            .unwrap_err();
        assert_eq!(e.code(), 0x0501);
        assert!(s.pending.is_some());
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        for n in 0..64u8 {
            let _ = PolicyState::decode(&[n; 9]);
        }
        let s = boot();
        let mut b = s.encode();
        b.push(0);
        assert!(PolicyState::decode(&b).is_err());
    }
}
