//! The node's sign-request decision, end to end and pure: request bytes,
//! node state and time in; an [`Outcome`] with everything to persist out.
//!
//! Order: envelope decodes (`request-malformed`) → clock guard
//! (`clock-step`, raises an event) → seen ids (`request-id-reuse`, or a
//! replay answered from the stored result) → target, validity window
//! (`request-expired`) and ground approvals (`btc-approvals`) → no refused
//! deep reorg flagged (`btc-deep-reorg`, not remembered) → allowed UTC
//! windows (`btc-time-window`) → PSBT checks (`check`) → signing with the
//! double sighash and self-verification (`sign`) → spend record, velocity
//! entry and audit entry with its node-signed receipt.
//!
//! What the node does with an [`Outcome`] (the persistence contract; one
//! SQLite transaction, `synchronous=FULL`, BEFORE any byte of a signature
//! leaves the node):
//!
//! | outcome | write |
//! |---|---|
//! | `Approved` | `seen_requests(request_id, request_hash, result = encoded signatures)`; `spends(txid, request_id, destinations, fee, amount, time)` and `spent_outpoints(outpoint, txid)` for every outpoint (a replacement spends all outpoints of the txid it replaces, so all of that txid's rows are re-pointed: `history`); `velocity(at_ms, sats, request_id)` if `velocity` is `Some`; `audit(seq, entry, receipt)` and the audit head; `clock.last_accepted` |
//! | `Refused` | `audit(...)`, audit head; `seen_requests(id, hash, result = refusal code)` if `remember_id`; `clock.last_accepted` if `clock` changed |
//! | `Replay` | `audit(...)`, audit head; then answer with the stored result |
//!
//! Then downlink: signatures (or the refusal) with the audit entry and
//! receipt. A crash before the commit leaves nothing (the ground retries
//! with the same id and gets a fresh evaluation); a crash after it answers
//! the retry from `seen_requests` (same signatures).
//!
//! Must never: release signatures from an `Outcome` that was not persisted;
//! evaluate a request whose id is known with other content.

use bitcoin::secp256k1::{Secp256k1, Signing, Verification};
use bitcoin::{OutPoint, Txid};
use spacenode_policy::Rule;
use spacenode_policy::audit::{AuditEntry, AuditLog, Counters, Decision};
use spacenode_policy::change::ActivePolicy;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::request::{Seen, SignedRequest, seen_decision};
use spacenode_policy::units::{Sats, TimeMs};
use spacenode_policy::velocity::{VelocityEntry, VelocityLedger};

use crate::chain::ChainView;
use crate::check::{CheckContext, CheckedSpend, check_psbt};
use crate::error::{BtcError, Refusal};
use crate::history::{Conflict, PriorSpend, SpendHistory};
use crate::sign::{PartialSig, encode_sigs, sign_spend};
use crate::signer::{BtcSigner, SignerError, receipt_path};
use crate::wallet::{AllowMatcher, Wallet};

/// The node state a decision reads.
pub struct NodeView<'a, V: ChainView + ?Sized, H: SpendHistory + ?Sized> {
    /// Node id (targets of requests and commands).
    pub node_id: [u8; 8],
    /// Active policy.
    pub policy: &'a ActivePolicy,
    /// Registered wallets.
    pub wallets: &'a [Wallet],
    /// Compiled allowlist of the active policy.
    pub allow: &'a AllowMatcher,
    /// Header chain.
    pub chain: &'a V,
    /// Signed outpoints.
    pub history: &'a H,
    /// Velocity records.
    pub velocity: &'a VelocityLedger,
    /// Clock guard state.
    pub clock: ClockGuard,
    /// Audit head.
    pub audit: AuditLog,
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

/// What the spend tables get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRecord {
    /// Outpoints now bound to `spend.txid`.
    pub outpoints: Vec<OutPoint>,
    /// The spend (txid, destinations, fee, amount).
    pub spend: PriorSpend,
    /// A transaction this one replaces (fee bump).
    pub replaces: Option<Txid>,
}

/// An approved request: persist all of it, then release `signatures`.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Request id.
    pub request_id: [u8; 32],
    /// Request hash.
    pub request_hash: [u8; 32],
    /// Txid signed.
    pub txid: Txid,
    /// The signatures.
    pub signatures: Vec<PartialSig>,
    /// Their downlink encoding (also the stored result).
    pub signatures_encoded: Vec<u8>,
    /// Spend tables.
    pub spend: SpendRecord,
    /// Velocity row (None when nothing new leaves the wallets).
    pub velocity: Option<VelocityEntry>,
    /// Audit record.
    pub audit: AuditRecord,
    /// New audit head.
    pub audit_head: AuditLog,
    /// New clock state.
    pub clock: ClockGuard,
    /// The checked spend (for telemetry and tests).
    pub checked: Box<CheckedSpend>,
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
    /// request and the policy, so a retry gets the same answer). False for
    /// node-side faults, clock anomalies, id reuse and undecodable input.
    pub remember_id: bool,
    /// Audit record.
    pub audit: AuditRecord,
    /// New audit head.
    pub audit_head: AuditLog,
    /// New clock state.
    pub clock: ClockGuard,
}

/// The decision.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Sign.
    Approved(Box<Approval>),
    /// Do not sign.
    Refused(Box<RefusalRecord>),
    /// Same id, same content: answer with the stored result.
    Replay(Box<ReplayRecord>),
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

struct Draft {
    request_id: [u8; 32],
    request_hash: [u8; 32],
    decision: Decision,
    rule: Rule,
    code: u16,
    counters: Counters,
    txid: Option<[u8; 32]>,
    signatures: Vec<Vec<u8>>,
}

fn audit<S: BtcSigner + ?Sized>(
    policy: &ActivePolicy,
    head: &mut AuditLog,
    signer: &S,
    now: TimeMs,
    d: Draft,
) -> Result<AuditRecord, SignerError> {
    let entry = head.append(AuditEntry {
        seq: 0,
        time: now,
        request_id: d.request_id,
        request_hash: d.request_hash,
        decision: d.decision,
        rule: d.rule.tag().to_owned(),
        code: d.code,
        policy_version: policy.document.version,
        policy_hash: policy.hash,
        counters: d.counters,
        txid: d.txid,
        signatures: d.signatures,
        prev_hash: [0; 32],
        eth: None,
    });
    let receipt = signer.sign_schnorr(&receipt_path(), &entry.receipt_message())?;
    Ok(AuditRecord {
        bytes: entry.encode(),
        entry,
        receipt: receipt.serialize(),
    })
}

/// Evaluates one uplinked sign request (module docs). `seen` looks up the
/// stored request hash of a request id. `Err` only when the receipt key
/// cannot sign (a signer fault: raise an event, persist nothing).
///
/// # Errors
/// [`SignerError`] from the receipt signature.
pub fn evaluate<C, V, H, S>(
    secp: &Secp256k1<C>,
    view: &NodeView<'_, V, H>,
    signer: &S,
    request: &[u8],
    seen: &dyn Fn(&[u8; 32]) -> Option<[u8; 32]>,
    now: TimeMs,
) -> Result<Outcome, SignerError>
where
    C: Signing + Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
    S: BtcSigner + ?Sized,
{
    let policy = view.policy;
    let doc = &policy.document;
    let mut head = view.audit;
    let mut clock = view.clock;
    let refuse = |head: &mut AuditLog,
                  clock: ClockGuard,
                  id: Option<[u8; 32]>,
                  hash: Option<[u8; 32]>,
                  refusal: Refusal,
                  remember_id: bool|
     -> Result<Outcome, SignerError> {
        let audit = audit(
            policy,
            head,
            signer,
            now,
            Draft {
                request_id: id.unwrap_or([0; 32]),
                request_hash: hash.unwrap_or([0; 32]),
                decision: Decision::Refused,
                rule: refusal.rule,
                code: refusal.code,
                counters: Counters::default(),
                txid: None,
                signatures: Vec::new(),
            },
        )?;
        Ok(Outcome::Refused(Box::new(RefusalRecord {
            request_id: id,
            request_hash: hash,
            refusal,
            remember_id,
            audit,
            audit_head: *head,
            clock,
        })))
    };

    let signed = match SignedRequest::decode(request) {
        Ok(s) => s,
        Err(e) => return refuse(&mut head, clock, None, None, e.into(), false),
    };
    let hash = signed.hash();
    let id = spacenode_policy::request::SignRequest::decode(&signed.body)
        .ok()
        .map(|r| r.request_id);
    let Some(request_id) = id else {
        let e = spacenode_policy::request::SignRequest::decode(&signed.body)
            .err()
            .map_or_else(
                || Refusal::from(BtcError::PsbtMalformed("request".into())),
                Refusal::from,
            );
        return refuse(&mut head, clock, None, Some(hash), e, false);
    };
    if let Err(e) = clock.check(now, &doc.clock, view.chain.median_time_past()) {
        return refuse(
            &mut head,
            clock,
            Some(request_id),
            Some(hash),
            e.into(),
            false,
        );
    }
    clock.accept(now);
    match seen_decision(seen(&request_id), hash) {
        Ok(Seen::Replay) => {
            let audit = audit(
                policy,
                &mut head,
                signer,
                now,
                Draft {
                    request_id,
                    request_hash: hash,
                    decision: Decision::Replayed,
                    rule: Rule::RequestIdReuse,
                    code: 0,
                    counters: Counters::default(),
                    txid: None,
                    signatures: Vec::new(),
                },
            )?;
            return Ok(Outcome::Replay(Box::new(ReplayRecord {
                request_id,
                request_hash: hash,
                audit,
                audit_head: head,
            })));
        }
        Ok(Seen::New) => {}
        Err(e) => {
            return refuse(
                &mut head,
                clock,
                Some(request_id),
                Some(hash),
                e.into(),
                false,
            );
        }
    }
    let checked_req = match signed.check_envelope(
        secp,
        view.node_id,
        &doc.approvers,
        now,
        view.chain.tip_height(),
    ) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                &mut head,
                clock,
                Some(request_id),
                Some(hash),
                e.into(),
                true,
            );
        }
    };
    // A refused deep reorg means the header chain disagrees with a
    // heavier branch: SPV confirmations may be stale or forged, so nothing
    // is signed until the quorum clears the flag. Not remembered: the same
    // request may be retried once the flag is cleared.
    if let Some(branch_start) = view.chain.deep_reorg_refused() {
        return refuse(
            &mut head,
            clock,
            Some(request_id),
            Some(hash),
            BtcError::DeepReorg { branch_start }.into(),
            false,
        );
    }
    let rules = &doc.rules;
    if !rules.time_windows.is_empty() && !rules.time_windows.iter().any(|w| w.contains(now.0)) {
        return refuse(
            &mut head,
            clock,
            Some(request_id),
            Some(hash),
            BtcError::TimeWindow.into(),
            true,
        );
    }
    let ctx = CheckContext {
        rules,
        wallets: view.wallets,
        allow: view.allow,
        chain: view.chain,
        history: view.history,
        velocity: view.velocity,
        now,
    };
    let spend = match check_psbt(
        secp,
        &ctx,
        &checked_req.request.psbt,
        &checked_req.request.proofs,
    ) {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                &mut head,
                clock,
                Some(request_id),
                Some(hash),
                e.into(),
                true,
            );
        }
    };
    let signatures = match sign_spend(secp, &spend, signer) {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                &mut head,
                clock,
                Some(request_id),
                Some(hash),
                e.into(),
                false,
            );
        }
    };
    let velocity = (spend.velocity_amount > Sats::ZERO).then(|| {
        let mut l = view.velocity.clone();
        l.record(now, spend.velocity_amount)
    });
    let record = SpendRecord {
        outpoints: spend.outpoints(),
        spend: PriorSpend {
            txid: spend.txid,
            destinations: spend
                .destinations
                .iter()
                .map(|(_, o, _)| o.clone())
                .collect(),
            fee: spend.fee,
            amount: spend.amount,
            outpoints: spend.outpoints(),
        },
        replaces: match &spend.conflict {
            Conflict::Replaces(p) => Some(p.txid),
            _ => None,
        },
    };
    let audit = audit(
        policy,
        &mut head,
        signer,
        now,
        Draft {
            request_id,
            request_hash: hash,
            decision: Decision::Approved,
            rule: Rule::Approved,
            code: 0,
            counters: Counters {
                amount: spend.amount,
                fee: spend.fee,
                window_totals: spend.window_totals.clone(),
            },
            txid: Some(bitcoin::hashes::Hash::to_byte_array(spend.txid)),
            signatures: signatures.iter().map(PartialSig::sig_bytes).collect(),
        },
    )?;
    Ok(Outcome::Approved(Box::new(Approval {
        request_id,
        request_hash: hash,
        txid: spend.txid,
        signatures_encoded: encode_sigs(&signatures),
        signatures,
        spend: record,
        velocity,
        audit,
        audit_head: head,
        clock,
        checked: Box::new(spend),
    })))
}
