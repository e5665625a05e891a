//! The decision aggregate: what every signing decision of any chain
//! writes (the seen request id and its stored answer, the audit entry and
//! head, the clock guard) and the replay bookkeeping of decided requests.
//!
//! [`Store::commit_decision`] is THE persistence point of a signing
//! decision: one transaction, committed (with `synchronous=FULL`) before
//! the node releases any byte of a signature; the chain's rows
//! ([`ChainRows`]: `store::btc`, `store::eth`) are written inside it.
//!
//! Must never: know a chain (its rows come in through [`ChainRows`]).

use rusqlite::{OptionalExtension, Transaction, params};

use super::codec::{array, i64_of, u64_of};
use super::{Store, StoreError};

/// `seen_requests` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRow {
    /// Request id.
    pub request_id: [u8; 32],
    /// Request hash.
    pub request_hash: [u8; 32],
    /// The stored answer (layout owned by `node::sign`).
    pub result: Vec<u8>,
}

/// `audit` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: u64,
    /// Canonical entry bytes.
    pub entry: Vec<u8>,
    /// Receipt.
    pub receipt: [u8; 64],
}

/// A seen request: its hash and the stored answer.
pub type SeenAnswer = ([u8; 32], Vec<u8>);

/// Everything one signing decision writes, in one transaction: the
/// chain-neutral rows and the chain's own (`R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRows<R> {
    /// Node time of the decision (for `seen_requests` and the chain's rows).
    pub time_ms: i64,
    /// The request id and its answer, if it is to be remembered.
    pub seen: Option<SeenRow>,
    /// The audit entry.
    pub audit: AuditRow,
    /// The audit head after it: next seq and the entry's hash.
    pub head: (u64, [u8; 32]),
    /// The clock guard's new last accepted time, if it changed.
    pub clock_ms: Option<i64>,
    /// The chain's rows (`store::btc`, `store::eth`).
    pub chain: R,
}

/// How a SQLite error of the decision's transaction is reported.
pub type SqlErr<'a> = &'a dyn Fn(rusqlite::Error) -> StoreError;

/// A chain's rows of one decision, written inside its transaction.
pub trait ChainRows {
    /// Writes the rows (`err` reports a SQLite error with the database).
    ///
    /// # Errors
    /// [`StoreError`]; the whole decision is then rolled back.
    fn write(&self, tx: &Transaction<'_>, time_ms: i64, err: SqlErr<'_>) -> Result<(), StoreError>;
}

/// No chain rows (a decision that wrote nothing of its chain).
impl ChainRows for () {
    fn write(&self, _: &Transaction<'_>, _: i64, _: SqlErr<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The clock guard's last accepted time is raised, never lowered.
pub(super) const RAISE_CLOCK: &str = "INSERT INTO meta(key, value) VALUES ('clock_last_accepted_ms', ?1) \
     ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)";

/// Raises the velocity high-water mark, one for every asset of every
/// chain: a clock step backwards never reopens any window.
///
/// # Errors
/// SQLite's.
pub fn raise_velocity_high_water(tx: &Transaction<'_>, at_ms: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('velocity_high_water_ms', ?1) \
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        [at_ms],
    )
    .map(|_| ())
}

impl Store {
    /// The stored hash and answer of a request id.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn seen_request(&self, id: &[u8; 32]) -> Result<Option<SeenAnswer>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT request_hash, result FROM seen_requests WHERE request_id = ?1",
                [id.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(h, r)| Ok((array("request hash", &h)?, r)))
            .transpose()
    }

    /// The audit head: next sequence number and the last entry's hash.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn audit_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT next_seq, last_hash FROM audit_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok((0, [0; 32])),
            Some((n, h)) => Ok((u64_of("audit next_seq", n)?, array("audit hash", &h)?)),
        }
    }

    /// Replay bookkeeping of a decided request: the audit seq of its
    /// audited replay (if one was audited) and the replays counted.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn replay_state(&self, id: &[u8; 32]) -> Result<Option<(Option<u64>, u64)>, StoreError> {
        let row: Option<(Option<i64>, i64)> = self
            .conn
            .query_row(
                "SELECT replay_audit_seq, replays FROM seen_requests WHERE request_id = ?1",
                [id.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(seq, n)| {
            Ok((
                seq.map(|s| u64_of("replay audit seq", s)).transpose()?,
                u64_of("replays", n)?,
            ))
        })
        .transpose()
    }

    /// Records that a replay of `id` was audited as entry `seq` (and
    /// counts it).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn mark_replay_audited(&mut self, id: &[u8; 32], seq: u64) -> Result<(), StoreError> {
        let seq = i64_of("replay audit seq", seq)?;
        self.conn
            .execute(
                "UPDATE seen_requests SET replay_audit_seq = ?2, replays = replays + 1 \
                 WHERE request_id = ?1",
                params![id.as_slice(), seq],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Counts one more replay of `id` without an audit entry; returns the
    /// replays counted so far.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn count_replay(&mut self, id: &[u8; 32]) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "UPDATE seen_requests SET replays = replays + 1 WHERE request_id = ?1 \
                 RETURNING replays",
                [id.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        u64_of("replays", n.unwrap_or(0))
    }

    /// Persists one signing decision (see [`DecisionRows`]) in ONE
    /// transaction. Returns only once SQLite committed it to disk
    /// (`synchronous=FULL`): the caller releases signatures after this and
    /// never before.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is written then.
    pub fn commit_decision<R: ChainRows>(&mut self, d: &DecisionRows<R>) -> Result<(), StoreError> {
        let audit_seq = i64_of("audit seq", d.audit.seq)?;
        let next_seq = i64_of("audit next_seq", d.head.0)?;
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        if let Some(s) = &d.seen {
            tx.execute(
                "INSERT INTO seen_requests(request_id, request_hash, result, time_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    s.request_id.as_slice(),
                    s.request_hash.as_slice(),
                    s.result,
                    d.time_ms
                ],
            )
            .map_err(err)?;
        }
        d.chain.write(&tx, d.time_ms, &err)?;
        tx.execute(
            "INSERT INTO audit(seq, entry, receipt) VALUES (?1, ?2, ?3)",
            params![audit_seq, d.audit.entry, d.audit.receipt.as_slice()],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO audit_head(id, next_seq, last_hash) VALUES (1, ?1, ?2) \
             ON CONFLICT(id) DO UPDATE SET next_seq = excluded.next_seq, last_hash = excluded.last_hash",
            params![next_seq, d.head.1.as_slice()],
        )
        .map_err(err)?;
        if let Some(ms) = d.clock_ms {
            tx.execute(RAISE_CLOCK, [ms]).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}
