//! The node's signing service (PUS 132): a sign request in, the decision of
//! `spacenode_btc::engine::evaluate` persisted, then the audit record and
//! the partial signatures (or the refusal) out.
//!
//! Order for every request (`docs/policy.md`, "What the node persists"):
//!
//! 1. refuse at once in safe mode (`MODE_FORBIDS`), without a policy
//!    (`NO_POLICY`) or without the seed (0x0403), counted in housekeeping;
//! 2. activate a pending policy that is due;
//! 3. evaluate with the node's own state: the active policy, registered
//!    wallets, the validated header chain ([`ChainView`] is the chain
//!    service's state), the spend history ([`StoreHistory`] over
//!    `spent_outpoints`/`spends`), velocity rows, the clock guard's last
//!    accepted time, the audit head, and the key store ([`NodeSigner`]);
//! 4. commit everything the outcome says in ONE SQLite transaction
//!    (`synchronous=FULL`): `seen_requests`, `spends`, `spent_outpoints`,
//!    `velocity`, `audit`, `audit_head`, the clock;
//! 5. only then send `sign.audit-record`, `sign.result` and the completion
//!    report.
//!
//! A crash before step 4 leaves no trace and the retry is evaluated
//! afresh; after it the retry is a replay answered from `seen_requests`.
//!
//! Must never: release a signature whose decision is not committed, decide
//! when a store read failed (the read is made to look like a conflict and
//! the outcome is discarded), or sign in safe mode.

use std::cell::Cell;
use std::time::Instant;

use bitcoin::bip32::{DerivationPath, Fingerprint, Xpub};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa, schnorr};
use bitcoin::{OutPoint, TxOut, Txid};
use spacenode_btc::engine::{NodeView, Outcome, evaluate};
use spacenode_btc::history::{PriorSpend, SpendHistory};
use spacenode_btc::signer::{BtcSigner, SignerError};
use spacenode_keys::{KeyError, KeyStore, SchnorrTweak, Signer};
use spacenode_policy::audit::AuditLog;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::units::{Sats, TimeMs};
use spacenode_policy::velocity::{VelocityEntry, VelocityLedger};
use spacenode_policy::{Rule, document::VelocityWindow};
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{AuditRecord, Payload, SignResult, refusal_data};
use spacenode_wire::msg::{EventId, FailureNotice};
use spacenode_wire::services::{apid, service, subtype};

use super::{Node, Now};
use crate::health::mode::SafeReason;
use crate::store::cosign::{AuditRow, DecisionRows, SeenRow, SpendRow, VelocityRow};
use crate::store::eth::EthRows;
use crate::store::{Store, StoreError};

/// Velocity rows are kept at least this long, whatever the active policy's
/// longest window (a later policy may add a longer one).
pub(super) const VELOCITY_MIN_RETENTION_MS: u64 = 35 * 86_400_000;

/// The node's key store as the Bitcoin signer (the seed stays inside
/// `spacenode-keys`; only public keys and verified signatures come out).
pub(super) struct NodeSigner<'a>(pub(super) &'a KeyStore);

fn signer_error(e: &KeyError) -> SignerError {
    SignerError {
        code: e.code(),
        detail: e.to_string(),
    }
}

impl BtcSigner for NodeSigner<'_> {
    fn master_fingerprint(&self) -> Fingerprint {
        Signer::master_fingerprint(self.0)
    }

    fn xpub(&self, path: &DerivationPath) -> Result<Xpub, SignerError> {
        Signer::xpub(self.0, path).map_err(|e| signer_error(&e))
    }

    fn sign_ecdsa(
        &self,
        path: &DerivationPath,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, SignerError> {
        Signer::sign_ecdsa(self.0, path, digest).map_err(|e| signer_error(&e))
    }

    fn sign_schnorr(
        &self,
        path: &DerivationPath,
        msg: &[u8; 32],
    ) -> Result<schnorr::Signature, SignerError> {
        Signer::sign_schnorr(self.0, path, msg, SchnorrTweak::None).map_err(|e| signer_error(&e))
    }
}

/// The spend history over the database. A failed read answers with a
/// conflicting spend (so nothing can be approved on it) and is remembered,
/// so the caller discards the outcome.
struct StoreHistory<'a> {
    store: &'a Store,
    failed: Cell<bool>,
}

impl StoreHistory<'_> {
    /// Every outpoint bound to `txid`; `None` (logged) when the store fails
    /// or a row does not decode.
    fn outpoints_of(&self, txid: &[u8; 32]) -> Option<Vec<OutPoint>> {
        match self.store.outpoints_of(txid) {
            Ok(rows) => rows
                .iter()
                .map(|b| deserialize::<OutPoint>(b).ok())
                .collect::<Option<Vec<_>>>()
                .or_else(|| {
                    tracing::error!("a stored outpoint does not decode");
                    None
                }),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spend history");
                None
            }
        }
    }
}

impl SpendHistory for StoreHistory<'_> {
    fn spent_by(&self, outpoint: &OutPoint) -> Option<PriorSpend> {
        let conflict = || PriorSpend {
            txid: Txid::all_zeros(),
            destinations: Vec::new(),
            fee: Sats(u64::MAX),
            amount: Sats(u64::MAX),
            outpoints: Vec::new(),
        };
        let Ok(key) = <[u8; 36]>::try_from(serialize(outpoint).as_slice()) else {
            self.failed.set(true);
            return Some(conflict());
        };
        match self.store.spent_by(&key) {
            Ok(None) => None,
            Ok(Some(row)) => match (
                deserialize::<Vec<TxOut>>(&row.destinations),
                self.outpoints_of(&row.txid),
            ) {
                (Ok(destinations), Some(outpoints)) => Some(PriorSpend {
                    txid: Txid::from_byte_array(row.txid),
                    destinations,
                    fee: Sats(row.fee_sat),
                    amount: Sats(row.amount_sat),
                    outpoints,
                }),
                (_, None) => {
                    self.failed.set(true);
                    Some(conflict())
                }
                (Err(e), _) => {
                    tracing::error!(error = %e, "stored spend does not decode");
                    self.failed.set(true);
                    Some(conflict())
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spend history");
                self.failed.set(true);
                Some(conflict())
            }
        }
    }
}

/// Stored answer of an approved request: `0x01 | txid 32 | signatures`.
fn approved_result(txid: &[u8; 32], sigs: &[u8]) -> Vec<u8> {
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

/// Rows older than this no longer count in any window (and are kept for
/// at least [`VELOCITY_MIN_RETENTION_MS`]).
fn prune_cutoff(ledger: &VelocityLedger, windows: &[VelocityWindow], now: TimeMs) -> Option<i64> {
    let mut l = ledger.clone();
    let by_policy = l.prune(windows, now)?;
    let floor = ledger
        .accounting_time(now)
        .checked_sub_ms(VELOCITY_MIN_RETENTION_MS)?;
    Some(by_policy.min(floor).0)
}

/// What the store must write for `outcome` (one transaction).
fn decision_rows(
    outcome: &Outcome,
    now_ms: i64,
    prune: Option<i64>,
) -> Result<DecisionRows, FailureNotice> {
    let audit_row = |a: &spacenode_btc::engine::AuditRecord| AuditRow {
        seq: a.entry.seq,
        entry: a.bytes.clone(),
        receipt: a.receipt,
    };
    Ok(match outcome {
        Outcome::Approved(a) => {
            let txid = a.txid.to_byte_array();
            let outpoints = a
                .spend
                .outpoints
                .iter()
                .map(|o| {
                    <[u8; 36]>::try_from(serialize(o).as_slice()).map_err(|_| FailureNotice {
                        code: ReasonCode::INTERNAL,
                        data: b"outpoint encoding".to_vec(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            DecisionRows {
                time_ms: now_ms,
                seen: Some(SeenRow {
                    request_id: a.request_id,
                    request_hash: a.request_hash,
                    result: approved_result(&txid, &a.signatures_encoded),
                }),
                spend: Some((
                    SpendRow {
                        txid,
                        request_id: a.request_id,
                        destinations: serialize(&a.spend.spend.destinations),
                        fee_sat: a.spend.spend.fee.0,
                        amount_sat: a.spend.spend.amount.0,
                    },
                    outpoints,
                )),
                velocity: a.velocity.map(|v| VelocityRow {
                    at_ms: v.at.0,
                    sats: v.amount.0,
                    request_id: a.request_id,
                }),
                velocity_prune_through: prune,
                audit: audit_row(&a.audit),
                head: (a.audit_head.next_seq, a.audit_head.last_hash),
                clock_ms: a.clock.last_accepted.map(|t| t.0),
                eth: EthRows::default(),
            }
        }
        Outcome::Refused(r) => DecisionRows {
            time_ms: now_ms,
            seen: match (r.remember_id, r.request_id, r.request_hash) {
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
            spend: None,
            velocity: None,
            velocity_prune_through: prune,
            audit: audit_row(&r.audit),
            head: (r.audit_head.next_seq, r.audit_head.last_hash),
            clock_ms: r.clock.last_accepted.map(|t| t.0),
            eth: EthRows::default(),
        },
        Outcome::Replay(r) => DecisionRows {
            time_ms: now_ms,
            seen: None,
            spend: None,
            velocity: None,
            velocity_prune_through: prune,
            audit: audit_row(&r.audit),
            head: (r.audit_head.next_seq, r.audit_head.last_hash),
            clock_ms: None,
            eth: EthRows::default(),
        },
    })
}

impl Node {
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

    /// TC[132,1] (module docs). Ethereum bodies (format 2) go to
    /// `node::eth`.
    pub(super) fn sign_request(
        &mut self,
        payload: Payload,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = self.sign_preconditions(payload, now, out)?;
        if super::eth::is_eth_request(&bytes) {
            return self.eth_sign(&bytes, None, dest_id, now, out);
        }
        let t = TimeMs(now.unix_ms);
        let ceiling = self.clock_ceiling(now);
        let started = Instant::now();
        let (outcome, prune) = {
            let (Some(policy), Some(allow), Some(keys)) = (&self.policy, &self.allow, &self.keys)
            else {
                return Err(FailureNotice {
                    code: ReasonCode::INTERNAL,
                    data: Vec::new(),
                });
            };
            let chain = self.chain.state()?;
            let store = &self.store;
            let entries = store
                .velocity_rows()
                .map_err(|e| store_failure(&e))?
                .into_iter()
                .map(|(at, sats)| VelocityEntry {
                    at: TimeMs(at),
                    amount: Sats(sats),
                })
                .collect();
            let high_water = store
                .velocity_high_water()
                .map_err(|e| store_failure(&e))?
                .map_or(TimeMs(i64::MIN), TimeMs);
            let ledger = VelocityLedger::from_entries(entries, high_water);
            let clock = ClockGuard {
                last_accepted: store
                    .clock_last_accepted()
                    .map_err(|e| store_failure(&e))?
                    .map(TimeMs),
                ceiling: Some(ceiling),
            };
            let (next_seq, last_hash) = store.audit_head().map_err(|e| store_failure(&e))?;
            let history = StoreHistory {
                store,
                failed: Cell::new(false),
            };
            let seen_failed = Cell::new(false);
            let seen = |id: &[u8; 32]| match store.seen_request(id) {
                Ok(row) => row.map(|(hash, _)| hash),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the seen request ids");
                    seen_failed.set(true);
                    // Unknown hash: the engine refuses the id as reused.
                    Some([0xFF; 32])
                }
            };
            let view = NodeView {
                node_id: self.cfg.node_id,
                policy: &policy.active,
                wallets: &self.wallets,
                allow,
                chain,
                history: &history,
                velocity: &ledger,
                clock,
                audit: AuditLog {
                    next_seq,
                    last_hash,
                },
            };
            let outcome = evaluate(&self.secp, &view, &NodeSigner(keys), &bytes, &seen, t);
            if history.failed.get() || seen_failed.get() {
                return Err(FailureNotice {
                    code: ReasonCode::STORE_SQLITE,
                    data: b"cannot read the signing state; nothing was decided".to_vec(),
                });
            }
            (
                outcome,
                prune_cutoff(&ledger, &policy.active.document.rules.velocity, t),
            )
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "receipt key failed; nothing decided");
                out.extend(self.raise(EventId::SIGN_FAULT, e.code.to_be_bytes().to_vec(), now));
                return Err(FailureNotice {
                    code: ReasonCode(0x061A),
                    data: refusal_data(Rule::SelfCheck.tag(), &e.to_string()),
                });
            }
        };
        if let Outcome::Replay(r) = &outcome
            && let Some(audit) = self.counted_replay(r.request_id, now, out)?
        {
            let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            return self.answer_replay(r.request_id, audit, elapsed_us, dest_id, now, out);
        }
        let rows = decision_rows(&outcome, now.unix_ms, prune)?;
        // THE persistence point: nothing of this decision has left the
        // node, and nothing leaves before this commit returns.
        self.store
            .commit_decision(&rows)
            .map_err(|e| store_failure(&e))?;
        self.archive_audit_if_due();
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let record = |a: &spacenode_btc::engine::AuditRecord| {
            (
                a.entry.seq,
                AuditRecord {
                    receipt: a.receipt,
                    entry: a.bytes.clone(),
                }
                .encode(),
            )
        };
        match outcome {
            Outcome::Approved(a) => {
                self.counters.sign_approved = self.counters.sign_approved.saturating_add(1);
                tracing::info!(
                    request_id = %hex::encode(a.request_id),
                    txid = %a.txid,
                    inputs = a.signatures.len(),
                    amount_sat = a.spend.spend.amount.0,
                    audit_seq = a.audit.entry.seq,
                    elapsed_us,
                    "sign request approved"
                );
                self.emit_audit_record(record(&a.audit), dest_id, now, out)?;
                let result = SignResult {
                    request_id: a.request_id,
                    txid: a.txid.to_byte_array(),
                    signatures: a.signatures_encoded,
                };
                self.emit_btc_result(&result, dest_id, now, out)
            }
            Outcome::Refused(r) => {
                self.counters.sign_refused = self.counters.sign_refused.saturating_add(1);
                tracing::info!(
                    request_id = %r.request_id.map(hex::encode).unwrap_or_default(),
                    rule = r.refusal.rule.tag(),
                    code = r.refusal.code,
                    detail = %r.refusal.detail,
                    audit_seq = r.audit.entry.seq,
                    elapsed_us,
                    "sign request refused"
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
                self.answer_replay(
                    r.request_id,
                    record(&r.audit),
                    elapsed_us,
                    dest_id,
                    now,
                    out,
                )
            }
        }
    }

    fn emit_btc_result(
        &mut self,
        result: &SignResult,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        self.emit_fragments(
            apid::SIGN,
            service::SIGN,
            subtype::SIGN_RESULT,
            0,
            &result.encode(),
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
                self.emit_btc_result(&result, dest_id, now, out)
            }
            Some(Stored::Eth(result)) => {
                self.counters.sign_approved = self.counters.sign_approved.saturating_add(1);
                self.emit_eth_result(request_id, result, dest_id, now, out)
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
}
