//! The node's signing service (PUS 132), chain-neutral: a sign request in,
//! routed by its body format to its chain (Bitcoin: `node::btc`, format 1
//! and anything that does not decode; Ethereum: `node::eth`, format 2),
//! the decision of the one sign pipeline (`spacenode_policy::pipeline`)
//! persisted, then the audit record and the chain's result (or the
//! refusal) out.
//!
//! Order for every request (`docs/policy.md`, "What the node persists"):
//!
//! 1. refuse at once in safe mode (`MODE_FORBIDS`), without a policy
//!    (`NO_POLICY`) or without the seed (0x0403), counted in housekeeping;
//! 2. activate a pending policy that is due;
//! 3. decode the envelope once and route it; the chain evaluates with the
//!    node's own state and the custody's signer (`custody::CustodySigner`);
//! 4. commit everything the outcome says in ONE SQLite transaction
//!    (`synchronous=FULL`, [`Node::finish_decision`]): `seen_requests`, the
//!    chain's rows, `audit`, `audit_head`, the clock;
//! 5. only then send `sign.audit-record`, the chain's result and the
//!    completion report.
//!
//! A crash before step 4 leaves no trace and the retry is evaluated
//! afresh; after it the retry is a replay answered from `seen_requests`.
//!
//! Must never: release a signature whose decision is not committed, decide
//! when a store read failed (the read is made to look like a conflict and
//! the outcome is discarded), or sign in safe mode.

use std::cell::Cell;
use std::time::Instant;

use spacenode_policy::Rule;
use spacenode_policy::audit::AuditLog;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::pipeline::{Approval, AuditRecord as Audited, Outcome};
use spacenode_policy::request::{ETH_FORMAT, RequestError, SignedRequest, body_format};
use spacenode_policy::signer::SignerError;
use spacenode_policy::units::TimeMs;
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{
    AdminSignRequest, AuditRecord, EthSignResult, Payload, SignResult, refusal_data,
};
use spacenode_wire::msg::{EventId, FailureNotice};
use spacenode_wire::services::{apid, service, subtype};

use super::{Node, Now};
/// The custody's signer, by the name the policy service knows it.
pub(super) use crate::custody::CustodySigner as NodeSigner;
use crate::health::mode::SafeReason;
use crate::store::decision::{AuditRow, ChainRows, DecisionRows, SeenRow};
use crate::store::{Store, StoreError};

/// Velocity rows are kept at least this long, whatever the active policy's
/// longest window (a later policy may add a longer one).
pub(super) const VELOCITY_MIN_RETENTION_MS: u64 = 35 * 86_400_000;

/// Whether a decoded envelope carries an Ethereum body (format 2).
/// Anything that does not decode goes to the Bitcoin signer, which refuses
/// it as malformed.
pub(super) fn routes_to_eth(signed: &Result<SignedRequest, RequestError>) -> bool {
    signed.as_ref().ok().and_then(|s| body_format(&s.body).ok()) == Some(ETH_FORMAT)
}

/// Stored answer of an approved request: `0x01 | txid 32 | signatures`.
pub(super) fn approved_result(txid: &[u8; 32], sigs: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + sigs.len());
    out.push(1);
    out.extend_from_slice(txid);
    out.extend_from_slice(sigs);
    out
}

/// Stored answer of a refused request: `0x00 | code u16 | failure data`.
pub(super) fn refused_result(code: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + data.len());
    out.push(0);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Stored answer of an approved Ethereum request: `0x02 | EthResult`.
pub(super) fn eth_result(result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + result.len());
    out.push(2);
    out.extend_from_slice(result);
    out
}

/// A stored answer, decoded.
enum Stored {
    Approved { txid: [u8; 32], sigs: Vec<u8> },
    Eth(Vec<u8>),
    Refused(FailureNotice),
}

fn parse_result(b: &[u8]) -> Option<Stored> {
    match b.split_first()? {
        (2, rest) if !rest.is_empty() => Some(Stored::Eth(rest.to_vec())),
        (1, rest) => {
            let (txid, sigs) = rest.split_at_checked(32)?;
            Some(Stored::Approved {
                txid: <[u8; 32]>::try_from(txid).ok()?,
                sigs: sigs.to_vec(),
            })
        }
        (0, rest) => {
            let (code, data) = rest.split_at_checked(2)?;
            Some(Stored::Refused(FailureNotice {
                code: ReasonCode(u16::from_be_bytes(<[u8; 2]>::try_from(code).ok()?)),
                data: data.to_vec(),
            }))
        }
        _ => None,
    }
}

pub(super) fn store_failure(e: &StoreError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

/// A chain's approvals as the sign service commits and releases them
/// (implemented by `node::btc` and `node::eth`).
pub(super) trait Release: Sized {
    /// The chain's store rows.
    type Rows: ChainRows;
    /// What the chain prunes with a decision (velocity cut-offs).
    type Prune;
    /// Reason code and rule of a receipt-key fault on this chain.
    const RECEIPT_FAULT: (u16, Rule);
    /// What the log calls a request of this chain.
    const WHAT: &'static str;

    /// The stored answer of an approval (`seen_requests.result`).
    fn stored_result(a: &Approval<Self>) -> Vec<u8>;

    /// Logs the committed approval; returns its result TM (subtype of
    /// service 132 and payload), sent after the audit record.
    fn approved(a: Approval<Self>, elapsed_us: u64) -> (u8, Vec<u8>);

    /// The chain's rows of an outcome.
    ///
    /// # Errors
    /// A row that cannot be encoded (nothing is committed then).
    fn rows(outcome: &Outcome<Self>, prune: Self::Prune) -> Result<Self::Rows, FailureNotice>;
}

/// Where every chain's evaluation starts: node time and the stored clock
/// guard and audit head.
pub(super) struct Start {
    /// Node time.
    pub(super) t: TimeMs,
    /// Clock guard.
    pub(super) clock: ClockGuard,
    /// Audit head.
    pub(super) audit: AuditLog,
}

/// A chain's evaluation: the outcome (or a receipt-key fault) and what it
/// prunes.
pub(super) struct Evaluated<A: Release> {
    pub(super) outcome: Result<Outcome<A>, SignerError>,
    pub(super) prune: A::Prune,
}

/// What the store must write for `outcome` (one transaction).
fn decision_rows<A: Release>(
    outcome: &Outcome<A>,
    now_ms: i64,
    chain: A::Rows,
) -> DecisionRows<A::Rows> {
    let seen = match outcome {
        Outcome::Approved(a) => Some(SeenRow {
            request_id: a.request_id,
            request_hash: a.request_hash,
            result: A::stored_result(a),
        }),
        Outcome::Refused(r) => match (r.remember_id, r.request_id, r.request_hash) {
            (true, Some(request_id), Some(request_hash)) => Some(SeenRow {
                request_id,
                request_hash,
                result: refused_result(
                    r.refusal.code,
                    &refusal_data(r.refusal.rule.tag(), &r.refusal.detail),
                ),
            }),
            _ => None,
        },
        Outcome::Replay(_) => None,
    };
    let audit = outcome.audit();
    let head = outcome.audit_head();
    DecisionRows {
        time_ms: now_ms,
        seen,
        audit: AuditRow {
            seq: audit.entry.seq,
            entry: audit.bytes.clone(),
            receipt: audit.receipt,
        },
        head: (head.next_seq, head.last_hash),
        clock_ms: outcome.clock_ms(),
        chain,
    }
}

/// An audit record as sent: its seq and wire encoding.
fn record(a: &Audited) -> (u64, Vec<u8>) {
    (
        a.entry.seq,
        AuditRecord {
            receipt: a.receipt,
            entry: a.bytes.clone(),
        }
        .encode(),
    )
}

/// The seen request ids over the database. A failed read answers with an
/// unknown hash (the pipeline refuses the id as reused) and is remembered,
/// so the caller discards the outcome.
pub(super) struct SeenLookup<'a> {
    store: &'a Store,
    failed: Cell<bool>,
}

impl<'a> SeenLookup<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self {
            store,
            failed: Cell::new(false),
        }
    }

    /// The stored request hash of `id`.
    pub(super) fn get(&self, id: &[u8; 32]) -> Option<[u8; 32]> {
        match self.store.seen_request(id) {
            Ok(row) => row.map(|(hash, _)| hash),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the seen request ids");
                self.failed.set(true);
                Some([0xFF; 32])
            }
        }
    }

    /// Refuses to use an outcome decided on a failed read (of the seen
    /// ids, or of the chain's history: `history_failed`).
    pub(super) fn reads_ok(&self, history_failed: bool) -> Result<(), FailureNotice> {
        if history_failed || self.failed.get() {
            return Err(FailureNotice {
                code: ReasonCode::STORE_SQLITE,
                data: b"cannot read the signing state; nothing was decided".to_vec(),
            });
        }
        Ok(())
    }
}

/// The node's one velocity high-water mark (every asset of every chain).
pub(super) fn velocity_high_water(store: &Store) -> Result<TimeMs, FailureNotice> {
    Ok(store
        .velocity_high_water()
        .map_err(|e| store_failure(&e))?
        .map_or(TimeMs(i64::MIN), TimeMs))
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Node {
    /// The clock guard and audit head as stored (both chains read them).
    pub(super) fn guard_and_head(&self, now: Now) -> Result<(ClockGuard, AuditLog), FailureNotice> {
        let clock = ClockGuard {
            last_accepted: self
                .store
                .clock_last_accepted()
                .map_err(|e| store_failure(&e))?
                .map(TimeMs),
            ceiling: Some(self.clock_ceiling(now)),
        };
        let (next_seq, last_hash) = self.store.audit_head().map_err(|e| store_failure(&e))?;
        Ok((
            clock,
            AuditLog {
                next_seq,
                last_hash,
            },
        ))
    }

    pub(super) fn refuse_precondition(&mut self, notice: FailureNotice) -> FailureNotice {
        self.counters.sign_refused_mode = self.counters.sign_refused_mode.saturating_add(1);
        tracing::info!(code = %notice.code, "sign request refused before evaluation");
        notice
    }

    /// The checks before any evaluation (module docs, step 1 and 2): safe
    /// mode, the payload, a due policy, an active policy, the seed. Returns
    /// the request bytes.
    pub(super) fn sign_preconditions(
        &mut self,
        payload: Payload,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, FailureNotice> {
        if !self.mode.may_sign() {
            let (_, reason) = self.mode.codes();
            let why = SafeReason::from_code(reason).map_or("unknown", SafeReason::name);
            return Err(self.refuse_precondition(FailureNotice {
                code: ReasonCode::MODE_FORBIDS,
                data: format!(
                    "safe mode ({why}, {reason:#06x}): the node signs nothing until a quorum-signed exit"
                )
                .into_bytes(),
            }));
        }
        let bytes = self.resolve_payload(payload)?;
        self.poll_policy(now, out);
        if self.policy.is_none() || self.allow.is_none() {
            return Err(self.refuse_precondition(FailureNotice {
                code: ReasonCode::NO_POLICY,
                data: b"no active policy: upload a quorum-signed policy first".to_vec(),
            }));
        }
        if self.keys.is_none() {
            return Err(self.refuse_precondition(FailureNotice {
                code: ReasonCode(0x0403),
                data: b"the signing seed is not available (see mode status)".to_vec(),
            }));
        }
        Ok(bytes)
    }

    /// TC[132,1] (module docs): the envelope is decoded once and routed
    /// by its body format.
    pub(crate) fn sign_request(
        &mut self,
        payload: Payload,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = self.sign_preconditions(payload, now, out)?;
        let signed = SignedRequest::decode(&bytes);
        if routes_to_eth(&signed) {
            return self.eth_sign(signed, None, dest_id, now, out);
        }
        self.btc_sign(signed, dest_id, now, out)
    }

    /// TC[132,5]: an Ethereum request with its `SAFE_ADMIN_TX` command.
    pub(crate) fn sign_admin_request(
        &mut self,
        payload: Payload,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = self.sign_preconditions(payload, now, out)?;
        let req = AdminSignRequest::decode(&bytes).map_err(|e| FailureNotice {
            code: ReasonCode::BAD_APP_DATA,
            data: e.to_string().into_bytes(),
        })?;
        let signed = SignedRequest::decode(&req.request);
        if !routes_to_eth(&signed) {
            return Err(FailureNotice {
                code: ReasonCode::BAD_APP_DATA,
                data: b"an administrator command travels only with an Ethereum request".to_vec(),
            });
        }
        self.eth_sign(signed, Some(&req.command), dest_id, now, out)
    }

    /// Steps 3 to 5 (module docs) for one chain: `evaluate` reads the
    /// chain's state and runs the pipeline; then
    /// [`Node::finish_decision`].
    pub(super) fn decide<A: Release>(
        &mut self,
        evaluate: impl FnOnce(&Self, Start) -> Result<Evaluated<A>, FailureNotice>,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let started = Instant::now();
        let (clock, audit) = self.guard_and_head(now)?;
        let start = Start {
            t: TimeMs(now.unix_ms),
            clock,
            audit,
        };
        let evaluated = evaluate(self, start)?;
        self.finish_decision(evaluated, started, dest_id, now, out)
    }

    /// Steps 4 and 5 (module docs) for a chain's evaluation: a receipt-key
    /// fault raises an event and decides nothing; a replay is counted or
    /// audited; anything else is committed with the chain's rows, then
    /// released.
    fn finish_decision<A: Release>(
        &mut self,
        evaluated: Evaluated<A>,
        started: Instant,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let Evaluated { outcome, prune } = evaluated;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "receipt key failed; nothing decided");
                out.extend(self.raise(EventId::SIGN_FAULT, e.code.to_be_bytes().to_vec(), now));
                let (code, rule) = A::RECEIPT_FAULT;
                return Err(FailureNotice {
                    code: ReasonCode(code),
                    data: refusal_data(rule.tag(), &e.to_string()),
                });
            }
        };
        if let Outcome::Replay(r) = &outcome
            && let Some(audit) = self.counted_replay(r.request_id, now, out)?
        {
            let elapsed = elapsed_us(started);
            return self.answer_replay(r.request_id, audit, elapsed, dest_id, now, out);
        }
        let rows = decision_rows(&outcome, now.unix_ms, A::rows(&outcome, prune)?);
        // THE persistence point: nothing of this decision has left the
        // node, and nothing leaves before this commit returns.
        self.store
            .commit_decision(&rows)
            .map_err(|e| store_failure(&e))?;
        self.archive_audit_if_due();
        let elapsed = elapsed_us(started);
        match outcome {
            Outcome::Approved(a) => {
                self.counters.sign_approved = self.counters.sign_approved.saturating_add(1);
                let audit = record(&a.audit);
                let (subtype, result) = A::approved(*a, elapsed);
                self.emit_audit_record(audit, dest_id, now, out)?;
                self.emit_sign_result(subtype, &result, dest_id, now, out)
            }
            Outcome::Refused(r) => {
                self.counters.sign_refused = self.counters.sign_refused.saturating_add(1);
                tracing::info!(
                    request_id = %r.request_id.map(hex::encode).unwrap_or_default(),
                    rule = r.refusal.rule.tag(),
                    code = r.refusal.code,
                    detail = %r.refusal.detail,
                    audit_seq = r.audit.entry.seq,
                    elapsed_us = elapsed,
                    "{} refused",
                    A::WHAT
                );
                let refusal = CommittedRefusal {
                    rule: r.refusal.rule,
                    code: r.refusal.code,
                    detail: &r.refusal.detail,
                    raise_event: r.refusal.raise_event,
                    clock_ms: rows.clock_ms,
                };
                self.after_refusal(&refusal, record(&r.audit), dest_id, now, out)
            }
            Outcome::Replay(r) => {
                self.replay_audited(r.request_id, r.audit.entry.seq);
                self.answer_replay(r.request_id, record(&r.audit), elapsed, dest_id, now, out)
            }
        }
    }

    /// Sends a chain's result (`sign.result`, `sign.eth-result`).
    fn emit_sign_result(
        &mut self,
        subtype: u8,
        result: &[u8],
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        self.emit_fragments(
            apid::SIGN,
            service::SIGN,
            subtype,
            0,
            result,
            dest_id,
            now,
            out,
        )
    }

    /// Answers a replayed request (same id, same body: its decision is
    /// committed) of either chain: its audit record (seq, encoded), then
    /// the stored answer, never a new evaluation.
    pub(super) fn answer_replay(
        &mut self,
        request_id: [u8; 32],
        audit: (u64, Vec<u8>),
        elapsed_us: u64,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let stored = self
            .store
            .seen_request(&request_id)
            .map_err(|e| store_failure(&e))?
            .and_then(|(_, result)| parse_result(&result));
        tracing::info!(
            request_id = %hex::encode(request_id),
            audit_seq = audit.0,
            elapsed_us,
            "sign request replayed from the stored result"
        );
        self.emit_audit_record(audit, dest_id, now, out)?;
        match stored {
            Some(Stored::Approved { txid, sigs }) => {
                self.counters.sign_approved = self.counters.sign_approved.saturating_add(1);
                let result = SignResult {
                    request_id,
                    txid,
                    signatures: sigs,
                };
                self.emit_sign_result(subtype::SIGN_RESULT, &result.encode(), dest_id, now, out)
            }
            Some(Stored::Eth(result)) => {
                self.counters.sign_approved = self.counters.sign_approved.saturating_add(1);
                let reply = EthSignResult { request_id, result };
                self.emit_sign_result(subtype::SIGN_ETH_RESULT, &reply.encode(), dest_id, now, out)
            }
            Some(Stored::Refused(notice)) => {
                self.counters.sign_refused = self.counters.sign_refused.saturating_add(1);
                Err(notice)
            }
            None => Err(FailureNotice {
                code: ReasonCode::STORE_OUT_OF_RANGE,
                data: b"stored result of this request does not decode".to_vec(),
            }),
        }
    }
}

impl Node {
    /// Replays of a decided request (issue 13 item 9): the first one is
    /// audited like any decision; after that, each one is only counted on
    /// the request's row (and reported, rate-limited, as `SIGN_REPLAYS`)
    /// and answered with the audited replay's record, so a replay flood
    /// cannot grow the audit log. Returns that record, or `None` when this
    /// replay must be audited (the first, or its record was archived).
    pub(super) fn counted_replay(
        &mut self,
        request_id: [u8; 32],
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Option<(u64, Vec<u8>)>, FailureNotice> {
        let Some((Some(seq), _)) = self
            .store
            .replay_state(&request_id)
            .map_err(|e| store_failure(&e))?
        else {
            return Ok(None);
        };
        let Some(row) = self
            .store
            .audit_entries(seq, 1)
            .map_err(|e| store_failure(&e))?
            .into_iter()
            .find(|r| r.seq == seq)
        else {
            return Ok(None);
        };
        let replays = self
            .store
            .count_replay(&request_id)
            .map_err(|e| store_failure(&e))?;
        tracing::info!(
            request_id = %hex::encode(request_id),
            replays,
            audit_seq = seq,
            "replay counted, not audited again"
        );
        let mut aux = request_id.to_vec();
        aux.extend_from_slice(&replays.to_be_bytes());
        if let Some(aux) = self.limiter.latest(EventId::SIGN_REPLAYS, aux, now.mono) {
            out.extend(self.raise(EventId::SIGN_REPLAYS, aux, now));
        }
        let record = AuditRecord {
            receipt: row.receipt,
            entry: row.entry,
        };
        Ok(Some((seq, record.encode())))
    }

    /// Notes that a replay of `request_id` was audited as entry `seq`.
    /// Not in the decision's transaction: a crash in between only audits
    /// one more replay.
    pub(super) fn replay_audited(&mut self, request_id: [u8; 32], seq: u64) {
        if let Err(e) = self.store.mark_replay_audited(&request_id, seq) {
            tracing::warn!(error = %e, "cannot record the audited replay");
        }
    }
}

/// A refusal already committed to the audit log, of either chain.
pub(super) struct CommittedRefusal<'a> {
    pub(super) rule: Rule,
    pub(super) code: u16,
    pub(super) detail: &'a str,
    pub(super) raise_event: bool,
    /// The clock guard's last accepted time, for a clock-step event.
    pub(super) clock_ms: Option<i64>,
}

impl Node {
    /// Sends a decision's audit record (`sign.audit-record`), keyed by its
    /// audit sequence number.
    pub(super) fn emit_audit_record(
        &mut self,
        (seq, record): (u64, Vec<u8>),
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        self.emit_fragments(
            apid::SIGN,
            service::SIGN,
            subtype::SIGN_AUDIT_RECORD,
            seq,
            &record,
            dest_id,
            now,
            out,
        )
    }

    /// What follows every committed refusal, Bitcoin or Ethereum: the event
    /// a clock step or a signing fault raises, the probing-burst trigger,
    /// the audit record down; returns the failure report to send.
    pub(super) fn after_refusal(
        &mut self,
        refusal: &CommittedRefusal<'_>,
        audit: (u64, Vec<u8>),
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        if refusal.raise_event {
            let code = refusal.code.to_be_bytes().to_vec();
            let (id, aux) = if refusal.rule == Rule::ClockStep {
                let mut aux = code;
                aux.extend_from_slice(&refusal.clock_ms.unwrap_or(0).to_be_bytes());
                aux.extend_from_slice(&now.unix_ms.to_be_bytes());
                (EventId::CLOCK_REFUSED, aux)
            } else {
                (EventId::SIGN_FAULT, code)
            };
            if let Some(aux) = self.limiter.latest(id, aux, now.mono) {
                out.extend(self.raise(id, aux, now));
            }
        }
        if self.refusal_burst.record(now.mono) {
            tracing::error!("burst of policy refusals: entering safe mode");
            out.extend(self.enter_safe(SafeReason::PolicyRefusalBurst, now));
        }
        self.emit_audit_record(audit, dest_id, now, out)?;
        Err(FailureNotice {
            code: ReasonCode(refusal.code),
            data: refusal_data(refusal.rule.tag(), refusal.detail),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_results_round_trip() {
        match parse_result(&approved_result(&[3; 32], &[1, 2])) {
            Some(Stored::Approved { txid, sigs }) => {
                assert_eq!((txid, sigs), ([3; 32], vec![1, 2]))
            }
            _ => panic!("approved"),
        }
        match parse_result(&refused_result(0x0612, b"btc-per-tx-cap: x")) {
            Some(Stored::Refused(n)) => {
                assert_eq!(n.code, ReasonCode(0x0612));
                assert_eq!(n.data, b"btc-per-tx-cap: x");
            }
            _ => panic!("refused"),
        }
        assert!(parse_result(&[]).is_none());
        assert!(parse_result(&[1, 2]).is_none());
        assert!(parse_result(&[7]).is_none());
        match parse_result(&eth_result(&[0xA6])) {
            Some(Stored::Eth(r)) => assert_eq!(r, vec![0xA6]),
            _ => panic!("eth"),
        }
        assert!(parse_result(&[2]).is_none());
    }

    #[test]
    fn only_format_2_bodies_are_ethereum() {
        let demo = spacenode_testkit::eth::EthDemo::new().unwrap();
        let tx = demo.eip1559(spacenode_testkit::eth::addr::VENDOR, 1, vec![], 0);
        assert!(routes_to_eth(&SignedRequest::decode(
            &demo.tx_request(1, 0, &tx)
        )));
        assert!(!routes_to_eth(&SignedRequest::decode(b"not a request")));
        let btc = SignedRequest {
            body: spacenode_policy::cbor::encode(&spacenode_policy::cbor::Value::Map(vec![(
                0,
                spacenode_policy::cbor::uint(1u64),
            )])),
            approvals: vec![],
        };
        assert!(!routes_to_eth(&SignedRequest::decode(&btc.encode())));
    }
}
