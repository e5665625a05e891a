//! The Bitcoin side of the signing service: a format-1 request (or one
//! that does not decode) evaluated by `spacenode_btc::engine` over the
//! node's own state (active policy, registered wallets, the validated
//! header chain — `spacenode_btc::chain::ChainView` is the chain service's
//! state — the spend
//! history through [`StoreHistory`] over `spent_outpoints`/`spends`,
//! velocity rows, clock guard, audit head, custody's signer), its rows
//! (`store::btc`: spend, outpoints, velocity) and its result
//! (`sign.result`). Committing and releasing is `node::sign`'s.
//!
//! Must never: know another chain, or decide on a failed store read.

use std::cell::Cell;

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, TxOut, Txid};
use spacenode_btc::engine::{BtcApproved, NodeView, evaluate_signed};
use spacenode_btc::history::{PriorSpend, SpendHistory};
use spacenode_policy::Rule;
use spacenode_policy::document::VelocityWindow;
use spacenode_policy::pipeline::{Approval, Outcome};
use spacenode_policy::request::{RequestError, SignedRequest};
use spacenode_policy::units::{Sats, TimeMs};
use spacenode_policy::velocity::{VelocityEntry, VelocityLedger};
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::SignResult;
use spacenode_wire::msg::FailureNotice;
use spacenode_wire::services::subtype;

use super::sign::{
    Evaluated, NodeSigner, Release, SeenLookup, Start, VELOCITY_MIN_RETENTION_MS, approved_result,
    store_failure, velocity_high_water,
};
use super::{Node, Now};
use crate::store::Store;
use crate::store::btc::{BtcRows, SpendRow, VelocityRow};

/// The spend history over the database. A failed read answers with a
/// conflicting spend (so nothing can be approved on it) and is remembered,
/// so the caller discards the outcome.
struct StoreHistory<'a> {
    store: &'a Store,
    failed: Cell<bool>,
}

impl<'a> StoreHistory<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            failed: Cell::new(false),
        }
    }
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

/// The Bitcoin rows of `outcome`: the spend, its outpoints and velocity
/// when approved; velocity pruning with every outcome.
fn btc_rows(outcome: &Outcome<BtcApproved>, prune: Option<i64>) -> Result<BtcRows, FailureNotice> {
    let Outcome::Approved(a) = outcome else {
        return Ok(BtcRows {
            velocity_prune_through: prune,
            ..BtcRows::default()
        });
    };
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
    Ok(BtcRows {
        spend: Some((
            SpendRow {
                txid: a.txid.to_byte_array(),
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
    })
}

impl Release for BtcApproved {
    type Rows = BtcRows;
    type Prune = Option<i64>;
    const RECEIPT_FAULT: (u16, Rule) = (0x061A, Rule::SelfCheck);
    const WHAT: &'static str = "sign request";

    fn stored_result(a: &Approval<Self>) -> Vec<u8> {
        approved_result(&a.txid.to_byte_array(), &a.signatures_encoded)
    }

    fn approved(a: Approval<Self>, elapsed_us: u64) -> (u8, Vec<u8>) {
        tracing::info!(
            request_id = %hex::encode(a.request_id),
            txid = %a.txid,
            inputs = a.signatures.len(),
            amount_sat = a.spend.spend.amount.0,
            audit_seq = a.audit.entry.seq,
            elapsed_us,
            "sign request approved"
        );
        let result = SignResult {
            request_id: a.request_id,
            txid: a.txid.to_byte_array(),
            signatures: a.chain.signatures_encoded,
        };
        (subtype::SIGN_RESULT, result.encode())
    }

    fn rows(outcome: &Outcome<Self>, prune: Option<i64>) -> Result<BtcRows, FailureNotice> {
        btc_rows(outcome, prune)
    }
}

/// The Bitcoin velocity ledger as stored.
fn ledger(store: &Store) -> Result<VelocityLedger, FailureNotice> {
    let entries = store
        .velocity_rows()
        .map_err(|e| store_failure(&e))?
        .into_iter()
        .map(|(at, sats)| VelocityEntry {
            at: TimeMs(at),
            amount: Sats(sats),
        })
        .collect();
    Ok(VelocityLedger::from_entries(
        entries,
        velocity_high_water(store)?,
    ))
}

impl Node {
    /// Evaluates, commits and answers one Bitcoin request (module docs);
    /// the preconditions were checked by the caller.
    pub(super) fn btc_sign(
        &mut self,
        signed: Result<SignedRequest, RequestError>,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        self.decide(
            |node, start| node.btc_evaluate(signed, start),
            dest_id,
            now,
            out,
        )
    }

    /// Reads the Bitcoin state and runs the pipeline; `Err` when a read
    /// failed (nothing was decided).
    fn btc_evaluate(
        &self,
        signed: Result<SignedRequest, RequestError>,
        start: Start,
    ) -> Result<Evaluated<BtcApproved>, FailureNotice> {
        let (Some(policy), Some(allow), Some(keys)) = (&self.policy, &self.allow, &self.keys)
        else {
            return Err(FailureNotice {
                code: ReasonCode::INTERNAL,
                data: Vec::new(),
            });
        };
        let chain = self.chain.state()?;
        let store = &self.store;
        let ledger = ledger(store)?;
        let history = StoreHistory::new(store);
        let seen = SeenLookup::new(store);
        let view = NodeView {
            node_id: self.cfg.node_id,
            policy: &policy.active,
            wallets: &self.wallets,
            allow,
            chain,
            history: &history,
            velocity: &ledger,
            clock: start.clock,
            audit: start.audit,
        };
        let outcome = evaluate_signed(
            &self.secp,
            &view,
            &NodeSigner(keys),
            signed,
            &|id| seen.get(id),
            start.t,
        );
        seen.reads_ok(history.failed.get())?;
        Ok(Evaluated {
            outcome,
            prune: prune_cutoff(&ledger, &policy.active.document.rules.velocity, start.t),
        })
    }
}
