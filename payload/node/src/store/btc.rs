//! The Bitcoin spend aggregate (migration 4): signed spends and the
//! outpoints they bind, and the Bitcoin velocity records. What to write is
//! decided by `spacenode_btc::engine` and mapped in `node::sign`; the rows
//! of a decision ([`BtcRows`]) are written by `Store::commit_decision` in
//! the SAME transaction as the seen id, the audit entry and the clock.
//!
//! Must never: know another chain, or unbind an outpoint (a replacement
//! re-points it to the replacing transaction).

use rusqlite::{OptionalExtension, Transaction, params};

use super::codec::{array, i64_of, u64_of};
use super::decision::{ChainRows, SqlErr, raise_velocity_high_water};
use super::{Store, StoreError};

/// A signed transaction as stored in `spends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// Txid (internal byte order).
    pub txid: [u8; 32],
    /// The request that signed it.
    pub request_id: [u8; 32],
    /// Consensus encoding of its non-change outputs (`Vec<TxOut>`).
    pub destinations: Vec<u8>,
    /// Fee, sat.
    pub fee_sat: u64,
    /// Destinations plus fee, sat.
    pub amount_sat: u64,
}

/// `velocity` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VelocityRow {
    /// Accounting time, ms.
    pub at_ms: i64,
    /// Amount, sat.
    pub sats: u64,
    /// The request.
    pub request_id: [u8; 32],
}

/// The Bitcoin rows of one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BtcRows {
    /// The spend and the outpoints it binds (36-byte consensus encoding;
    /// an outpoint bound to a replaced transaction is rebound).
    pub spend: Option<(SpendRow, Vec<[u8; 36]>)>,
    /// The velocity record.
    pub velocity: Option<VelocityRow>,
    /// Velocity rows at or before this time no longer count (pruning).
    pub velocity_prune_through: Option<i64>,
}

impl ChainRows for BtcRows {
    fn write(&self, tx: &Transaction<'_>, time_ms: i64, err: SqlErr<'_>) -> Result<(), StoreError> {
        if let Some((spend, outpoints)) = &self.spend {
            tx.execute(
                "INSERT INTO spends(txid, request_id, destinations, fee_sat, amount_sat, time_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(txid) DO NOTHING",
                params![
                    spend.txid.as_slice(),
                    spend.request_id.as_slice(),
                    spend.destinations,
                    i64_of("fee_sat", spend.fee_sat)?,
                    i64_of("amount_sat", spend.amount_sat)?,
                    time_ms
                ],
            )
            .map_err(err)?;
            for o in outpoints {
                tx.execute(
                    "INSERT INTO spent_outpoints(outpoint, txid) VALUES (?1, ?2) \
                     ON CONFLICT(outpoint) DO UPDATE SET txid = excluded.txid",
                    params![o.as_slice(), spend.txid.as_slice()],
                )
                .map_err(err)?;
            }
        }
        if let Some(v) = &self.velocity {
            tx.execute(
                "INSERT INTO velocity(at_ms, sats, request_id) VALUES (?1, ?2, ?3)",
                params![
                    v.at_ms,
                    i64_of("velocity sats", v.sats)?,
                    v.request_id.as_slice()
                ],
            )
            .map_err(err)?;
            raise_velocity_high_water(tx, v.at_ms).map_err(err)?;
        }
        if let Some(cut) = self.velocity_prune_through {
            tx.execute("DELETE FROM velocity WHERE at_ms <= ?1", [cut])
                .map_err(err)?;
        }
        Ok(())
    }
}

impl Store {
    /// The spend that signed `outpoint` (36-byte consensus encoding).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn spent_by(&self, outpoint: &[u8; 36]) -> Result<Option<SpendRow>, StoreError> {
        type Row = (Vec<u8>, Vec<u8>, Vec<u8>, i64, i64);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT s.txid, s.request_id, s.destinations, s.fee_sat, s.amount_sat \
                 FROM spent_outpoints o JOIN spends s ON s.txid = o.txid WHERE o.outpoint = ?1",
                [outpoint.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(txid, rid, destinations, fee, amount)| {
            Ok(SpendRow {
                txid: array("txid", &txid)?,
                request_id: array("request id", &rid)?,
                destinations,
                fee_sat: u64_of("fee_sat", fee)?,
                amount_sat: u64_of("amount_sat", amount)?,
            })
        })
        .transpose()
    }

    /// The outpoints (36-byte encodings) bound to `txid`: every outpoint of
    /// a live spend (a replacement re-points all outpoints of the spend it
    /// replaces, `spacenode_btc::history`).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn outpoints_of(&self, txid: &[u8; 32]) -> Result<Vec<[u8; 36]>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT outpoint FROM spent_outpoints WHERE txid = ?1 ORDER BY outpoint")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([txid.as_slice()], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let bytes = r.map_err(|e| self.err(e))?;
            out.push(array("outpoint", &bytes)?);
        }
        Ok(out)
    }

    /// Velocity records `(at_ms, sats)` still counting.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn velocity_rows(&self) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, sats FROM velocity ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, sats) = row.map_err(|e| self.err(e))?;
            out.push((at, u64_of("velocity sats", sats)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::decision::{AuditRow, DecisionRows, SeenRow};

    fn rows(seq: u64, with_spend: bool) -> DecisionRows<BtcRows> {
        DecisionRows {
            time_ms: 1_000,
            seen: Some(SeenRow {
                request_id: [seq as u8; 32],
                request_hash: [9; 32],
                result: vec![1, 2, 3],
            }),
            audit: AuditRow {
                seq,
                entry: vec![seq as u8],
                receipt: [5; 64],
            },
            head: (seq + 1, [seq as u8; 32]),
            clock_ms: Some(1_000 + seq as i64),
            chain: BtcRows {
                spend: with_spend.then(|| {
                    (
                        SpendRow {
                            txid: [seq as u8; 32],
                            request_id: [seq as u8; 32],
                            destinations: vec![0],
                            fee_sat: 10,
                            amount_sat: 110,
                        },
                        vec![[7; 36]],
                    )
                }),
                velocity: with_spend.then_some(VelocityRow {
                    at_ms: 500 + seq as i64,
                    sats: 110,
                    request_id: [seq as u8; 32],
                }),
                velocity_prune_through: None,
            },
        }
    }

    #[test]
    fn a_decision_commits_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.audit_head().unwrap(), (0, [0; 32]));
        s.commit_decision(&rows(0, true)).unwrap();
        assert_eq!(s.audit_head().unwrap(), (1, [0; 32]));
        assert_eq!(s.spent_by(&[7; 36]).unwrap().unwrap().amount_sat, 110);
        assert_eq!(s.velocity_rows().unwrap(), vec![(500, 110)]);
        assert_eq!(s.velocity_high_water().unwrap(), Some(500));
        assert_eq!(s.clock_last_accepted().unwrap(), Some(1_000));
        // A second decision reusing an audit seq fails as a whole: the
        // seen row and spend of that attempt are not written either.
        let mut dup = rows(1, true);
        dup.audit.seq = 0;
        assert!(s.commit_decision(&dup).is_err());
        assert!(s.seen_request(&[1; 32]).unwrap().is_none());
        assert_eq!(s.spent_by(&[7; 36]).unwrap().unwrap().txid, [0; 32]);
        // The outpoint is rebound by a replacement.
        s.commit_decision(&rows(1, true)).unwrap();
        assert_eq!(s.spent_by(&[7; 36]).unwrap().unwrap().txid, [1; 32]);
        assert_eq!(s.audit_entries(0, 10).unwrap().len(), 2);
        assert_eq!(s.audit_entries(1, 10).unwrap()[0].entry, vec![1]);
        let mut prune = rows(2, false);
        prune.chain.velocity_prune_through = Some(500);
        s.commit_decision(&prune).unwrap();
        assert_eq!(s.velocity_rows().unwrap(), vec![(501, 110)]);
        assert_eq!(s.velocity_high_water().unwrap(), Some(501));
    }
}
