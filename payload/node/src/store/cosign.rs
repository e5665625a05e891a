//! Co-signing tables (migration 4): uploads, the policy state, wallets,
//! seen request ids, spends and their outpoints, velocity records, the
//! audit log and its head, the clock guard's last accepted time.
//!
//! Every function here is plain SQL over plain values: the decisions (what
//! to write, in which outcome) are made in `node::sign` and `node::policy`
//! from the pure crates. [`Store::commit_decision`] is THE persistence point
//! of a signing decision: one transaction, committed (with
//! `synchronous=FULL`) before the node releases any byte of a signature.

use rusqlite::{OptionalExtension, params};
use spacenode_policy::command::kind;

use super::{Store, StoreError};

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

/// The stored audit checkpoint: last archived seq, its entry hash, the
/// receipt key's signature.
pub type StoredCheckpoint = (u64, [u8; 32], [u8; 64]);

/// A registered wallet row: id and registration body.
pub type WalletRow = ([u8; 32], Vec<u8>);

/// A seen request: its hash and the stored answer.
pub type SeenAnswer = ([u8; 32], Vec<u8>);

/// Everything one signing decision writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRows {
    /// Node time of the decision (for `seen_requests` and `spends`).
    pub time_ms: i64,
    /// The request id and its answer, if it is to be remembered.
    pub seen: Option<SeenRow>,
    /// The spend and the outpoints it binds (36-byte consensus encoding;
    /// an outpoint bound to a replaced transaction is rebound).
    pub spend: Option<(SpendRow, Vec<[u8; 36]>)>,
    /// The velocity record.
    pub velocity: Option<VelocityRow>,
    /// Velocity rows at or before this time no longer count (pruning).
    pub velocity_prune_through: Option<i64>,
    /// The audit entry.
    pub audit: AuditRow,
    /// The audit head after it: next seq and the entry's hash.
    pub head: (u64, [u8; 32]),
    /// The clock guard's new last accepted time, if it changed.
    pub clock_ms: Option<i64>,
    /// Ethereum rows of the decision (`store::eth`; empty for Bitcoin).
    pub eth: super::eth::EthRows,
}

pub(super) fn i64_of(what: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange {
        what,
        value: i64::MAX,
    })
}

pub(super) fn u64_of(what: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::OutOfRange { what, value: v })
}

pub(super) fn array<const N: usize>(what: &'static str, v: &[u8]) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("{} bytes where {N} were expected", v.len()),
    })
}

const UPSERT_META: &str = "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                           ON CONFLICT(key) DO UPDATE SET value = excluded.value";
/// The four `meta` keys of the clock anchor, 8 bytes each.
const ANCHOR_KEYS: [&str; 4] = [
    "clock_anchor_boot_id_hi",
    "clock_anchor_boot_id_lo",
    "clock_anchor_boot_ms",
    "clock_anchor_wall_ms",
];

const RAISE_CLOCK: &str = "INSERT INTO meta(key, value) VALUES ('clock_last_accepted_ms', ?1) \
     ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)";

fn write_anchor(tx: &rusqlite::Transaction<'_>, anchor: &[u8; 32]) -> rusqlite::Result<()> {
    for (key, chunk) in ANCHOR_KEYS.iter().zip(anchor.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        tx.execute(UPSERT_META, params![key, i64::from_be_bytes(b)])?;
    }
    Ok(())
}

/// Records an executed administrator command inside the caller's
/// transaction: raises the last sequence of its kind and the highest of any
/// kind (`meta.admin_seq`, what the status reports); never lowers either.
pub(super) fn raise_admin_seq(
    conn: &rusqlite::Connection,
    kind: u16,
    seq: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('admin_seq', ?1) \
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        [seq],
    )?;
    conn.execute(
        "INSERT INTO admin_seqs(kind, last_seq) VALUES (?1, ?2) \
         ON CONFLICT(kind) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
        params![kind, seq],
    )?;
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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let keep_inc = i64::try_from(keep_incomplete.saturating_sub(1)).unwrap_or(i64::MAX);
        let keep_com = i64::try_from(keep_complete).unwrap_or(i64::MAX);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM uploads WHERE content IS NULL AND content_id NOT IN \
             (SELECT content_id FROM uploads WHERE content IS NULL ORDER BY created_ms DESC LIMIT ?1)",
            [keep_inc],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM uploads WHERE content IS NOT NULL AND content_id NOT IN \
             (SELECT content_id FROM uploads WHERE content IS NOT NULL ORDER BY created_ms DESC LIMIT ?1)",
            [keep_com],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO uploads(content_id, total_len, created_ms) VALUES (?1, ?2, ?3)",
            params![id.as_slice(), i64::from(total_len), now_ms],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "UPDATE uploads SET content = ?2 WHERE content_id = ?1",
            params![id.as_slice(), content],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM upload_chunks WHERE content_id = ?1",
            [id.as_slice()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO policy_state(id, state, updated_ms) VALUES (1, ?1, ?2) \
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
            params![state, now_ms],
        )
        .map_err(err)?;
        if let Some(e) = epoch {
            tx.execute(UPSERT_META, params!["epoch", e]).map_err(err)?;
        }
        if let Some(s) = admin_seq {
            raise_admin_seq(&tx, kind::VETO_POLICY, s).map_err(err)?;
        }
        tx.commit().map_err(err)
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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO wallets(id, body, registered_at_ms, command_seq) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(id) DO UPDATE SET body = excluded.body, command_seq = excluded.command_seq",
            params![id.as_slice(), body, now_ms, seq],
        )
        .map_err(err)?;
        raise_admin_seq(&tx, kind::REGISTER_WALLET, seq).map_err(err)?;
        tx.commit().map_err(err)
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

    /// Deletes what `delete` names and raises the administrator sequence
    /// of `command_kind`, in one transaction; whether a row went.
    pub(super) fn retire(
        &mut self,
        delete: &str,
        key: impl rusqlite::Params,
        command_kind: u16,
        command_seq: u64,
    ) -> Result<bool, StoreError> {
        let seq = i64_of("admin_seq", command_seq)?;
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let gone = tx.execute(delete, key).map_err(err)?;
        raise_admin_seq(&tx, command_kind, seq).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(gone > 0)
    }

    // ------------------------------------------------------------ signing

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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        write_anchor(&tx, anchor).map_err(err)?;
        tx.commit().map_err(err)
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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            UPSERT_META,
            params!["clock_last_accepted_ms", last_accepted_ms],
        )
        .map_err(err)?;
        write_anchor(&tx, anchor).map_err(err)?;
        raise_admin_seq(&tx, kind::CLOCK_RESYNC, seq).map_err(err)?;
        tx.commit().map_err(err)
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
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO audit_checkpoint(id, end_seq, chain_hash, signature) VALUES (1, ?1, ?2, ?3) \
             ON CONFLICT(id) DO UPDATE SET end_seq = excluded.end_seq, \
             chain_hash = excluded.chain_hash, signature = excluded.signature",
            params![end, chain_hash.as_slice(), signature.as_slice()],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM audit WHERE seq <= ?1", [end])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Persists one signing decision (see [`DecisionRows`]) in ONE
    /// transaction. Returns only once SQLite committed it to disk
    /// (`synchronous=FULL`): the caller releases signatures after this and
    /// never before.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is written then.
    pub fn commit_decision(&mut self, d: &DecisionRows) -> Result<(), StoreError> {
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
        if let Some((spend, outpoints)) = &d.spend {
            tx.execute(
                "INSERT INTO spends(txid, request_id, destinations, fee_sat, amount_sat, time_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(txid) DO NOTHING",
                params![
                    spend.txid.as_slice(),
                    spend.request_id.as_slice(),
                    spend.destinations,
                    i64_of("fee_sat", spend.fee_sat)?,
                    i64_of("amount_sat", spend.amount_sat)?,
                    d.time_ms
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
        if let Some(v) = &d.velocity {
            tx.execute(
                "INSERT INTO velocity(at_ms, sats, request_id) VALUES (?1, ?2, ?3)",
                params![
                    v.at_ms,
                    i64_of("velocity sats", v.sats)?,
                    v.request_id.as_slice()
                ],
            )
            .map_err(err)?;
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('velocity_high_water_ms', ?1) \
                 ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                [v.at_ms],
            )
            .map_err(err)?;
        }
        if let Some(cut) = d.velocity_prune_through {
            tx.execute("DELETE FROM velocity WHERE at_ms <= ?1", [cut])
                .map_err(err)?;
        }
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
        super::eth::write_rows(&tx, &d.eth, d.time_ms).map_err(err)?;
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seq: u64, with_spend: bool) -> DecisionRows {
        DecisionRows {
            time_ms: 1_000,
            seen: Some(SeenRow {
                request_id: [seq as u8; 32],
                request_hash: [9; 32],
                result: vec![1, 2, 3],
            }),
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
            audit: AuditRow {
                seq,
                entry: vec![seq as u8],
                receipt: [5; 64],
            },
            head: (seq + 1, [seq as u8; 32]),
            clock_ms: Some(1_000 + seq as i64),
            eth: crate::store::eth::EthRows::default(),
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
        prune.velocity_prune_through = Some(500);
        s.commit_decision(&prune).unwrap();
        assert_eq!(s.velocity_rows().unwrap(), vec![(501, 110)]);
        assert_eq!(s.velocity_high_water().unwrap(), Some(501));
    }

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
