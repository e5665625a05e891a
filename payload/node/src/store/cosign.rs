//! Co-signing tables (migration 4) that belong to no chain and to no
//! single decision: uploads, the policy state, registered wallets, the
//! clock guard's state and anchor, the audit log's reading and archiving.
//! A decision's rows are `store::decision` (and `store::btc`,
//! `store::eth` for each chain's own).
//!
//! Every function here is plain SQL over plain values: the decisions (what
//! to write, in which outcome) are made in `node::sign` and `node::policy`
//! from the pure crates. Must never: know a chain's signing rows.

use rusqlite::{OptionalExtension, params};
use spacenode_policy::command::kind;

use super::admin::raise_admin_seq;
use super::codec::{array, i64_of, u64_of};
use super::decision::RAISE_CLOCK;
use super::{Store, StoreError};

/// Re-exported where the audit service has always found them.
pub use super::decision::{AuditRow, SeenAnswer, SeenRow};

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Total length.
    pub total_len: u32,
    /// Indexes of the chunks stored (empty once complete).
    pub chunks: Vec<u32>,
    /// Bytes stored in chunks (the total once complete).
    pub received: u32,
    /// The content was verified against its id.
    pub complete: bool,
}

/// What writing a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkWrite {
    /// New chunk stored.
    Stored,
    /// The same bytes were already stored (a retry).
    AlreadyHad,
    /// Other bytes are stored at this index.
    Conflict,
}

/// The stored audit checkpoint: last archived seq, its entry hash, the
/// receipt key's signature.
pub type StoredCheckpoint = (u64, [u8; 32], [u8; 64]);

/// A registered wallet row: id and registration body.
pub type WalletRow = ([u8; 32], Vec<u8>);

const UPSERT_META: &str = "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                           ON CONFLICT(key) DO UPDATE SET value = excluded.value";
/// The four `meta` keys of the clock anchor, 8 bytes each.
const ANCHOR_KEYS: [&str; 4] = [
    "clock_anchor_boot_id_hi",
    "clock_anchor_boot_id_lo",
    "clock_anchor_boot_ms",
    "clock_anchor_wall_ms",
];

fn write_anchor(tx: &rusqlite::Transaction<'_>, anchor: &[u8; 32]) -> rusqlite::Result<()> {
    for (key, chunk) in ANCHOR_KEYS.iter().zip(anchor.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        tx.execute(UPSERT_META, params![key, i64::from_be_bytes(b)])?;
    }
    Ok(())
}

impl Store {
    // ------------------------------------------------------------ uploads

    /// The upload `id`, if known.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upload(&self, id: &[u8; 32]) -> Result<Option<UploadInfo>, StoreError> {
        let row: Option<(i64, bool)> = self
            .conn
            .query_row(
                "SELECT total_len, content IS NOT NULL FROM uploads WHERE content_id = ?1",
                [id.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((total, complete)) = row else {
            return Ok(None);
        };
        let total_len = u32::try_from(total).map_err(|_| StoreError::OutOfRange {
            what: "upload length",
            value: total,
        })?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT idx, length(data) FROM upload_chunks WHERE content_id = ?1 ORDER BY idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id.as_slice()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut chunks = Vec::new();
        let mut received = 0u32;
        for row in rows {
            let (idx, len) = row.map_err(|e| self.err(e))?;
            chunks.push(u32::try_from(idx).map_err(|_| StoreError::OutOfRange {
                what: "chunk index",
                value: idx,
            })?);
            received = received.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
        }
        Ok(Some(UploadInfo {
            total_len,
            received: if complete { total_len } else { received },
            chunks,
            complete,
        }))
    }

    /// Records a new upload, after dropping the oldest incomplete uploads
    /// beyond `keep_incomplete - 1` and the oldest complete ones beyond
    /// `keep_complete`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upload_begin(
        &mut self,
        id: &[u8; 32],
        total_len: u32,
        now_ms: i64,
        keep_incomplete: usize,
        keep_complete: usize,
    ) -> Result<(), StoreError> {
        let keep_inc = i64::try_from(keep_incomplete.saturating_sub(1)).unwrap_or(i64::MAX);
        let keep_com = i64::try_from(keep_complete).unwrap_or(i64::MAX);
        self.write_tx(|tx| {
            tx.execute(
                "DELETE FROM uploads WHERE content IS NULL AND content_id NOT IN \
                 (SELECT content_id FROM uploads WHERE content IS NULL ORDER BY created_ms DESC LIMIT ?1)",
                [keep_inc],
            )?;
            tx.execute(
                "DELETE FROM uploads WHERE content IS NOT NULL AND content_id NOT IN \
                 (SELECT content_id FROM uploads WHERE content IS NOT NULL ORDER BY created_ms DESC LIMIT ?1)",
                [keep_com],
            )?;
            tx.execute(
                "INSERT INTO uploads(content_id, total_len, created_ms) VALUES (?1, ?2, ?3)",
                params![id.as_slice(), i64::from(total_len), now_ms],
            )?;
            Ok(())
        })
    }

    /// Stores chunk `idx` of upload `id` (idempotent for the same bytes).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upload_put_chunk(
        &mut self,
        id: &[u8; 32],
        idx: u32,
        data: &[u8],
    ) -> Result<ChunkWrite, StoreError> {
        let existing: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT data FROM upload_chunks WHERE content_id = ?1 AND idx = ?2",
                params![id.as_slice(), i64::from(idx)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match existing {
            Some(d) if d == data => Ok(ChunkWrite::AlreadyHad),
            Some(_) => Ok(ChunkWrite::Conflict),
            None => self
                .conn
                .execute(
                    "INSERT INTO upload_chunks(content_id, idx, data) VALUES (?1, ?2, ?3)",
                    params![id.as_slice(), i64::from(idx), data],
                )
                .map(|_| ChunkWrite::Stored)
                .map_err(|e| self.err(e)),
        }
    }

    /// The stored chunks of upload `id`, in index order.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upload_chunks(&self, id: &[u8; 32]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT data FROM upload_chunks WHERE content_id = ?1 ORDER BY idx")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id.as_slice()], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Stores the verified content and drops its chunks, in one transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upload_finish(&mut self, id: &[u8; 32], content: &[u8]) -> Result<(), StoreError> {
        self.write_tx(|tx| {
            tx.execute(
                "UPDATE uploads SET content = ?2 WHERE content_id = ?1",
                params![id.as_slice(), content],
            )?;
            tx.execute(
                "DELETE FROM upload_chunks WHERE content_id = ?1",
                [id.as_slice()],
            )?;
            Ok(())
        })
    }

    /// Drops the chunks of an upload whose content did not verify.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upload_discard_chunks(&mut self, id: &[u8; 32]) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM upload_chunks WHERE content_id = ?1",
                [id.as_slice()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The verified content of upload `id`: `None` if unknown, `Some(None)`
    /// while incomplete.
    ///
    /// # Errors
    /// [`StoreError`].
    #[allow(
        clippy::option_option,
        reason = "unknown and incomplete are different refusals"
    )]
    pub fn upload_content(&self, id: &[u8; 32]) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        self.conn
            .query_row(
                "SELECT content FROM uploads WHERE content_id = ?1",
                [id.as_slice()],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    // ------------------------------------------------------------ policy

    /// The persisted policy state (`PolicyState::encode`), if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn policy_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row("SELECT state FROM policy_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Persists the policy state, with the database epoch (an activation)
    /// and an executed veto's command sequence (kind `VETO_POLICY`), in one
    /// transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_policy_state(
        &mut self,
        state: &[u8],
        now_ms: i64,
        epoch: Option<u64>,
        admin_seq: Option<u64>,
    ) -> Result<(), StoreError> {
        let epoch = epoch.map(|e| i64_of("epoch", e)).transpose()?;
        let admin_seq = admin_seq.map(|s| i64_of("admin_seq", s)).transpose()?;
        self.write_tx(|tx| {
            tx.execute(
                "INSERT INTO policy_state(id, state, updated_ms) VALUES (1, ?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                params![state, now_ms],
            )?;
            if let Some(e) = epoch {
                tx.execute(UPSERT_META, params!["epoch", e])?;
            }
            if let Some(s) = admin_seq {
                raise_admin_seq(tx, kind::VETO_POLICY, s)?;
            }
            Ok(())
        })
    }

    /// Registered wallets: `(id, registration body)`, in registration order.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn wallets(&self) -> Result<Vec<WalletRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM wallets ORDER BY registered_at_ms, command_seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(|e| self.err(e))?;
            out.push((array("wallet id", &id)?, body));
        }
        Ok(out)
    }

    /// Registers a wallet and records the command's sequence, in one
    /// transaction. Registering the same wallet again replaces its body.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn register_wallet(
        &mut self,
        id: &[u8; 32],
        body: &[u8],
        now_ms: i64,
        command_seq: u64,
    ) -> Result<(), StoreError> {
        let seq = i64_of("admin_seq", command_seq)?;
        self.write_tx(|tx| {
            tx.execute(
                "INSERT INTO wallets(id, body, registered_at_ms, command_seq) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body, command_seq = excluded.command_seq",
                params![id.as_slice(), body, now_ms, seq],
            )?;
            raise_admin_seq(tx, kind::REGISTER_WALLET, seq)?;
            Ok(())
        })
    }

    /// Retires a wallet and records the command's sequence, in one
    /// transaction. Its spends and audit entries stay. Returns whether it
    /// was registered.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn retire_wallet(&mut self, id: &[u8; 32], command_seq: u64) -> Result<bool, StoreError> {
        self.retire(
            "DELETE FROM wallets WHERE id = ?1",
            params![id.as_slice()],
            kind::RETIRE_WALLET,
            command_seq,
        )
    }

    // ------------------------------------------------------------ signing

    /// The highest velocity accounting time ever recorded (survives
    /// pruning).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn velocity_high_water(&self) -> Result<Option<i64>, StoreError> {
        self.meta("velocity_high_water_ms")
    }

    /// The clock guard's last accepted node time.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn clock_last_accepted(&self) -> Result<Option<i64>, StoreError> {
        self.meta("clock_last_accepted_ms")
    }

    /// The clock anchor (`policy::clock::ClockAnchor`, 32 bytes: boot id
    /// 16 | boot ms u64 | wall i64), stored as four `meta` integers.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn clock_anchor(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let mut out = [0u8; 32];
        for (i, key) in ANCHOR_KEYS.iter().enumerate() {
            let Some(v) = self.meta(key)? else {
                return Ok(None);
            };
            let at = i.saturating_mul(8);
            if let Some(dst) = out.get_mut(at..at.saturating_add(8)) {
                dst.copy_from_slice(&v.to_be_bytes());
            }
        }
        Ok(Some(out))
    }

    /// Stores the clock anchor (a new kernel boot's, or a fresh node's).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_clock_anchor(&mut self, anchor: &[u8; 32]) -> Result<(), StoreError> {
        self.write_tx(|tx| {
            write_anchor(tx, anchor)?;
            Ok(())
        })
    }

    /// Raises the clock guard's last accepted time to `ms` (never lowers
    /// it): the periodic record of a wall time the monotonic clock vouched
    /// for, so a reboot counts from at most a minute ago.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn raise_clock_last_accepted(&mut self, ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(RAISE_CLOCK, [ms])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// An administrator clock resync: the new last accepted time, the new
    /// clock anchor and the command's sequence, in one transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn resync_clock(
        &mut self,
        last_accepted_ms: i64,
        anchor: &[u8; 32],
        seq: u64,
    ) -> Result<(), StoreError> {
        let seq = i64_of("admin_seq", seq)?;
        self.write_tx(|tx| {
            tx.execute(
                UPSERT_META,
                params!["clock_last_accepted_ms", last_accepted_ms],
            )?;
            write_anchor(tx, anchor)?;
            raise_admin_seq(tx, kind::CLOCK_RESYNC, seq)?;
            Ok(())
        })
    }

    /// Audit entries from `from_seq`, at most `max`, in order.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn audit_entries(&self, from_seq: u64, max: u16) -> Result<Vec<AuditRow>, StoreError> {
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare("SELECT seq, entry, receipt FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![from, i64::from(max)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, entry, receipt) = row.map_err(|e| self.err(e))?;
            out.push(AuditRow {
                seq: u64_of("audit seq", seq)?,
                entry,
                receipt: array("receipt", &receipt)?,
            });
        }
        Ok(out)
    }

    /// Number of audit rows kept and the lowest seq among them (seqs are
    /// contiguous: appended at the head, archived from the tail; two
    /// lookups on the primary key).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn audit_span(&self) -> Result<(u64, Option<u64>), StoreError> {
        let (first, last): (Option<i64>, Option<i64>) = self
            .conn
            .query_row("SELECT min(seq), max(seq) FROM audit", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.err(e))?;
        match (first, last) {
            (Some(f), Some(l)) => Ok((
                u64_of("audit rows", l.saturating_sub(f).saturating_add(1))?,
                Some(u64_of("audit seq", f)?),
            )),
            _ => Ok((0, None)),
        }
    }

    /// The checkpoint of the archived audit prefix (see
    /// `policy::audit::Checkpoint`) and its signature.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn audit_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT end_seq, chain_hash, signature FROM audit_checkpoint WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(seq, h, sig)| {
            Ok((
                u64_of("checkpoint seq", seq)?,
                array("checkpoint hash", &h)?,
                array("checkpoint signature", &sig)?,
            ))
        })
        .transpose()
    }

    /// Drops the audit rows up to `end_seq` (already archived) and stores
    /// the signed checkpoint that vouches for them, in one transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn prune_audit(
        &mut self,
        end_seq: u64,
        chain_hash: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), StoreError> {
        let end = i64_of("checkpoint seq", end_seq)?;
        self.write_tx(|tx| {
            tx.execute(
                "INSERT INTO audit_checkpoint(id, end_seq, chain_hash, signature) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT(id) DO UPDATE SET end_seq = excluded.end_seq, \
                 chain_hash = excluded.chain_hash, signature = excluded.signature",
                params![end, chain_hash.as_slice(), signature.as_slice()],
            )?;
            tx.execute("DELETE FROM audit WHERE seq <= ?1", [end])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_store_chunks_then_content_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let id = [1; 32];
        s.upload_begin(&id, 10, 0, 8, 32).unwrap();
        assert_eq!(
            s.upload_put_chunk(&id, 0, b"abc").unwrap(),
            ChunkWrite::Stored
        );
        assert_eq!(
            s.upload_put_chunk(&id, 0, b"abc").unwrap(),
            ChunkWrite::AlreadyHad
        );
        assert_eq!(
            s.upload_put_chunk(&id, 0, b"abd").unwrap(),
            ChunkWrite::Conflict
        );
        let info = s.upload(&id).unwrap().unwrap();
        assert_eq!(
            (info.chunks.clone(), info.received, info.complete),
            (vec![0], 3, false)
        );
        assert_eq!(s.upload_content(&id).unwrap(), Some(None));
        s.upload_finish(&id, &[0; 10]).unwrap();
        assert_eq!(s.upload_content(&id).unwrap(), Some(Some(vec![0; 10])));
        assert!(s.upload_chunks(&id).unwrap().is_empty());
        // Incomplete uploads beyond the limit are dropped oldest first.
        for i in 2..=4u8 {
            s.upload_begin(&[i; 32], 5, i64::from(i), 2, 32).unwrap();
        }
        assert!(s.upload(&[2; 32]).unwrap().is_none());
        assert!(s.upload(&[3; 32]).unwrap().is_some());
        assert!(s.upload(&id).unwrap().is_some(), "complete ones are kept");
        assert_eq!(s.upload_content(&[9; 32]).unwrap(), None);
    }

    #[test]
    fn policy_wallets_and_clock() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.policy_state().unwrap().is_none());
        s.set_policy_state(b"state", 1, Some(7), Some(3)).unwrap();
        assert_eq!(s.policy_state().unwrap().unwrap(), b"state");
        assert_eq!((s.epoch().unwrap(), s.admin_seq().unwrap()), (Some(7), 3));
        s.register_wallet(&[4; 32], b"body", 2, 2).unwrap();
        assert_eq!(s.admin_seq().unwrap(), 3, "never lowered");
        s.register_wallet(&[4; 32], b"body2", 3, 5).unwrap();
        assert_eq!(s.wallets().unwrap(), vec![([4; 32], b"body2".to_vec())]);
        assert_eq!(s.clock_anchor().unwrap(), None);
        let anchor: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        s.resync_clock(99, &anchor, 6).unwrap();
        assert_eq!(s.clock_last_accepted().unwrap(), Some(99));
        assert_eq!(s.clock_anchor().unwrap(), Some(anchor));
        s.raise_clock_last_accepted(50).unwrap();
        assert_eq!(s.clock_last_accepted().unwrap(), Some(99));
        s.raise_clock_last_accepted(150).unwrap();
        assert_eq!(s.clock_last_accepted().unwrap(), Some(150));
        s.set_clock_anchor(&[0xFF; 32]).unwrap();
        assert_eq!(s.clock_anchor().unwrap(), Some([0xFF; 32]));
        assert_eq!(s.admin_seq().unwrap(), 6);
    }
}
