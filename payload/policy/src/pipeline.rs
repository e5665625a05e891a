//! The one sign pipeline, chain-neutral and pure: a decoded request
//! envelope, the node's common state and time in; an [`Outcome`] with
//! everything to persist out. Bitcoin and Ethereum plug in through
//! [`SignChain`] (the checks and the signing of their kind of request);
//! every other step is written once here.
//!
//! Order: envelope decodes (`request-malformed`) → the body decodes once
//! (its id) → clock guard (`clock-step`, raises an event) → seen ids
//! (`request-id-reuse`, or a replay answered from the stored result) →
//! the chain's envelope checks: target, validity window
//! (`request-expired`) and ground approvals → the chain's decision
//! ([`SignChain::decide`]: its rules, then its signatures) → the audit
//! entry with its node-signed receipt (one log, one receipt key for both
//! chains).
//!
//! What the node does with an [`Outcome`]: persist all of it in ONE
//! transaction, BEFORE any byte of a signature leaves the node; a
//! `Refused` outcome's id is stored only if `remember_id`; a `Replay` is
//! answered from the stored result.
//!
//! Owns: the decision records ([`Approval`], [`RefusalRecord`],
//! [`ReplayRecord`], [`AuditRecord`]), the refusal as reported
//! ([`Refusal`]) and the chain seam ([`SignChain`]). Must never: evaluate
//! a request whose id is known with other content, sign anything itself
//! but the audit receipt, or read a clock.

use std::ops::{Deref, DerefMut};

use crate::Rule;
use crate::audit::{AuditEntry, AuditLog, Counters, Decision, EthCounters};
use crate::change::ActivePolicy;
use crate::clock::{ClockError, ClockGuard};
use crate::request::{RequestError, Seen, SignedRequest, seen_decision};
use crate::signer::{KeySigner, SignerError, receipt_path};
use crate::units::TimeMs;

/// A refusal as reported: code, rule tag, message, event flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable reason code (PUS failure report).
    pub code: u16,
    /// Rule.
    pub rule: Rule,
    /// Human-readable detail (lower-case, carries the data to act on).
    pub detail: String,
    /// The node raises an event (clock anomalies, faults).
    pub raise_event: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#06x} {}: {}", self.code, self.rule, self.detail)
    }
}

impl From<RequestError> for Refusal {
    /// Envelope refusals under their own rule (a chain may report some
    /// under its own tags: [`SignChain::envelope_refusal`]).
    fn from(e: RequestError) -> Self {
        Self {
            code: e.code(),
            rule: e.rule(),
            raise_event: false,
            detail: e.to_string(),
        }
    }
}

impl From<ClockError> for Refusal {
    fn from(e: ClockError) -> Self {
        Self {
            code: e.code(),
            rule: e.rule(),
            raise_event: e.raise_event(),
            detail: e.to_string(),
        }
    }
}

/// An audit entry with its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Entry.
    pub entry: AuditEntry,
    /// Its canonical bytes (what is stored and downlinked).
    pub bytes: Vec<u8>,
    /// BIP340 receipt by the node's receipt key.
    pub receipt: [u8; 64],
}

/// An approved request: persist all of it, then release the chain's
/// signatures. The chain's part is reachable as `approval.chain` and, for
/// reading, directly (`approval.txid`) through `Deref`.
#[derive(Debug, Clone)]
pub struct Approval<A> {
    /// Request id.
    pub request_id: [u8; 32],
    /// Request hash.
    pub request_hash: [u8; 32],
    /// Audit record.
    pub audit: AuditRecord,
    /// New audit head.
    pub audit_head: AuditLog,
    /// New clock state.
    pub clock: ClockGuard,
    /// What the chain signed and must persist.
    pub chain: A,
}

impl<A> Deref for Approval<A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.chain
    }
}

impl<A> DerefMut for Approval<A> {
    fn deref_mut(&mut self) -> &mut A {
        &mut self.chain
    }
}

/// A refused request.
#[derive(Debug, Clone)]
pub struct RefusalRecord {
    /// Request id, if the envelope decoded.
    pub request_id: Option<[u8; 32]>,
    /// Request hash, if the envelope decoded.
    pub request_hash: Option<[u8; 32]>,
    /// Why.
    pub refusal: Refusal,
    /// Store the id in `seen_requests` (the refusal depends only on the
    /// request, the policy and the persisted state, so a retry gets the
    /// same answer). False for node-side faults, clock anomalies, id reuse,
    /// undecodable input and what a chain says may change on a retry.
    pub remember_id: bool,
    /// Audit record.
    pub audit: AuditRecord,
    /// New audit head.
    pub audit_head: AuditLog,
    /// New clock state.
    pub clock: ClockGuard,
}

/// A retry of a decided request.
#[derive(Debug, Clone)]
pub struct ReplayRecord {
    /// Request id.
    pub request_id: [u8; 32],
    /// Request hash.
    pub request_hash: [u8; 32],
    /// Audit record of the replay.
    pub audit: AuditRecord,
    /// New audit head.
    pub audit_head: AuditLog,
}

/// The decision.
#[derive(Debug, Clone)]
pub enum Outcome<A> {
    /// Sign.
    Approved(Box<Approval<A>>),
    /// Do not sign.
    Refused(Box<RefusalRecord>),
    /// Same id, same content: answer with the stored result.
    Replay(Box<ReplayRecord>),
}

impl<A> Outcome<A> {
    /// The audit record every outcome carries.
    #[must_use]
    pub fn audit(&self) -> &AuditRecord {
        match self {
            Self::Approved(a) => &a.audit,
            Self::Refused(r) => &r.audit,
            Self::Replay(r) => &r.audit,
        }
    }

    /// The audit head after the outcome.
    #[must_use]
    pub fn audit_head(&self) -> AuditLog {
        match self {
            Self::Approved(a) => a.audit_head,
            Self::Refused(r) => r.audit_head,
            Self::Replay(r) => r.audit_head,
        }
    }

    /// The clock guard's new last accepted time (`None` for a replay,
    /// which does not move it).
    #[must_use]
    pub fn clock_ms(&self) -> Option<i64> {
        match self {
            Self::Approved(a) => a.clock.last_accepted.map(|t| t.0),
            Self::Refused(r) => r.clock.last_accepted.map(|t| t.0),
            Self::Replay(_) => None,
        }
    }
}

/// A chain's refusal with whether to remember the request id.
#[derive(Debug, Clone)]
pub struct Stop {
    /// Why.
    pub refusal: Refusal,
    /// See [`RefusalRecord::remember_id`].
    pub remember_id: bool,
}

/// What an approval adds to its audit entry.
#[derive(Debug, Clone, Default)]
pub struct AuditFacts {
    /// Bitcoin amounts and window totals (default for Ethereum).
    pub counters: Counters,
    /// Transaction (or SafeTx) hash signed.
    pub txid: Option<[u8; 32]>,
    /// The signatures released.
    pub signatures: Vec<Vec<u8>>,
    /// Ethereum amounts and window totals.
    pub eth: Option<EthCounters>,
}

/// A chain's approval: what it persists and what the audit entry records.
#[derive(Debug, Clone)]
pub struct Decided<A> {
    /// The chain's part of the [`Approval`].
    pub approved: A,
    /// The audit entry's numbers.
    pub facts: AuditFacts,
}

/// A chain plug-in: its request body, its envelope checks and its
/// decision. Implemented by `spacenode_btc::engine` and
/// `spacenode_eth::engine` over their node views and signers.
pub trait SignChain {
    /// The decoded body (decoded once: its id, then its checks).
    type Body;
    /// The body with its envelope checked.
    type Checked;
    /// The chain's part of an [`Approval`].
    type Approved;

    /// Decodes the body of a signed request.
    ///
    /// # Errors
    /// [`RequestError`] when it does not decode.
    fn decode_body(&self, body: &[u8]) -> Result<Self::Body, RequestError>;

    /// The request id of a decoded body.
    fn request_id(body: &Self::Body) -> [u8; 32];

    /// The clock guard's floor: median time past of the header chain, s.
    fn clock_floor_s(&self) -> u32;

    /// How an envelope refusal is reported on this chain.
    fn envelope_refusal(&self, e: RequestError) -> Refusal {
        e.into()
    }

    /// Target, validity window and ground approvals.
    ///
    /// # Errors
    /// [`RequestError`]; the id is remembered.
    fn check_envelope(
        &self,
        signed: &SignedRequest,
        body: Self::Body,
        hash: [u8; 32],
        now: TimeMs,
    ) -> Result<Self::Checked, RequestError>;

    /// The chain's rules, in order, then its signatures.
    ///
    /// # Errors
    /// [`Stop`]: the refusal and whether its id is remembered.
    fn decide(&self, checked: &Self::Checked, now: TimeMs)
    -> Result<Decided<Self::Approved>, Stop>;
}

/// The node state every chain's decision reads and moves.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    /// Active policy.
    pub policy: &'a ActivePolicy,
    /// Clock guard state.
    pub clock: ClockGuard,
    /// Audit head.
    pub audit: AuditLog,
}

/// The audit log as one decision moves it: each outcome appends one entry
/// and signs its receipt.
struct Ledger<'a, S: ?Sized> {
    policy: &'a ActivePolicy,
    head: AuditLog,
    clock: ClockGuard,
    receipts: &'a S,
    now: TimeMs,
}

impl<S: KeySigner + ?Sized> Ledger<'_, S> {
    fn audit(
        &mut self,
        id: Option<[u8; 32]>,
        hash: Option<[u8; 32]>,
        decision: Decision,
        rule: Rule,
        code: u16,
        facts: AuditFacts,
    ) -> Result<AuditRecord, SignerError> {
        let entry = self.head.append(AuditEntry {
            seq: 0,
            time: self.now,
            request_id: id.unwrap_or([0; 32]),
            request_hash: hash.unwrap_or([0; 32]),
            decision,
            rule: rule.tag().to_owned(),
            code,
            policy_version: self.policy.document.version,
            policy_hash: self.policy.hash,
            counters: facts.counters,
            txid: facts.txid,
            signatures: facts.signatures,
            prev_hash: [0; 32],
            eth: facts.eth,
        });
        let receipt = self
            .receipts
            .sign_schnorr(&receipt_path(), &entry.receipt_message())?;
        Ok(AuditRecord {
            bytes: entry.encode(),
            entry,
            receipt: receipt.serialize(),
        })
    }

    fn refuse<A>(
        &mut self,
        id: Option<[u8; 32]>,
        hash: Option<[u8; 32]>,
        refusal: Refusal,
        remember_id: bool,
    ) -> Result<Outcome<A>, SignerError> {
        let audit = self.audit(
            id,
            hash,
            Decision::Refused,
            refusal.rule,
            refusal.code,
            AuditFacts::default(),
        )?;
        Ok(Outcome::Refused(Box::new(RefusalRecord {
            request_id: id,
            request_hash: hash,
            refusal,
            remember_id,
            audit,
            audit_head: self.head,
            clock: self.clock,
        })))
    }

    fn replay<A>(&mut self, id: [u8; 32], hash: [u8; 32]) -> Result<Outcome<A>, SignerError> {
        let audit = self.audit(
            Some(id),
            Some(hash),
            Decision::Replayed,
            Rule::RequestIdReuse,
            0,
            AuditFacts::default(),
        )?;
        Ok(Outcome::Replay(Box::new(ReplayRecord {
            request_id: id,
            request_hash: hash,
            audit,
            audit_head: self.head,
        })))
    }

    fn approve<A>(
        &mut self,
        id: [u8; 32],
        hash: [u8; 32],
        decided: Decided<A>,
    ) -> Result<Outcome<A>, SignerError> {
        let audit = self.audit(
            Some(id),
            Some(hash),
            Decision::Approved,
            Rule::Approved,
            0,
            decided.facts,
        )?;
        Ok(Outcome::Approved(Box::new(Approval {
            request_id: id,
            request_hash: hash,
            audit,
            audit_head: self.head,
            clock: self.clock,
            chain: decided.approved,
        })))
    }
}

/// Evaluates one uplinked sign request of `chain` (module docs). `signed`
/// is the envelope as decoded by the caller (decoded once); `seen` looks
/// up the stored request hash of a request id. `Err` only when the receipt
/// key cannot sign (a signer fault: raise an event, persist nothing).
///
/// # Errors
/// [`SignerError`] from the receipt signature.
pub fn evaluate<P, S>(
    chain: &P,
    common: &Common<'_>,
    receipts: &S,
    signed: Result<SignedRequest, RequestError>,
    seen: &dyn Fn(&[u8; 32]) -> Option<[u8; 32]>,
    now: TimeMs,
) -> Result<Outcome<P::Approved>, SignerError>
where
    P: SignChain + ?Sized,
    S: KeySigner + ?Sized,
{
    let mut ledger = Ledger {
        policy: common.policy,
        head: common.audit,
        clock: common.clock,
        receipts,
        now,
    };
    let signed = match signed {
        Ok(s) => s,
        Err(e) => return ledger.refuse(None, None, chain.envelope_refusal(e), false),
    };
    let hash = signed.hash();
    let body = match chain.decode_body(&signed.body) {
        Ok(b) => b,
        Err(e) => return ledger.refuse(None, Some(hash), chain.envelope_refusal(e), false),
    };
    let id = P::request_id(&body);
    let (some_id, some_hash) = (Some(id), Some(hash));
    let clock_rules = &common.policy.document.clock;
    if let Err(e) = ledger.clock.check(now, clock_rules, chain.clock_floor_s()) {
        return ledger.refuse(some_id, some_hash, e.into(), false);
    }
    ledger.clock.accept(now);
    match seen_decision(seen(&id), hash) {
        Ok(Seen::Replay) => return ledger.replay(id, hash),
        Ok(Seen::New) => {}
        Err(e) => return ledger.refuse(some_id, some_hash, chain.envelope_refusal(e), false),
    }
    let checked = match chain.check_envelope(&signed, body, hash, now) {
        Ok(c) => c,
        Err(e) => return ledger.refuse(some_id, some_hash, chain.envelope_refusal(e), true),
    };
    match chain.decide(&checked, now) {
        Ok(d) => ledger.approve(id, hash, d),
        Err(Stop {
            refusal,
            remember_id,
        }) => ledger.refuse(some_id, some_hash, refusal, remember_id),
    }
}
