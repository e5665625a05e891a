//! Persistent state in one SQLite database (WAL mode, full sync): boot
//! count, link sequence reservations, link keys installed by rekey, the
//! event log, the pruned Bitcoin header chain ([`chain`], on its own
//! connection), and the co-signing tables by aggregate: uploads, policy,
//! wallets, clock and audit log ([`cosign`]), what every signing decision
//! writes ([`decision`]), each chain's own rows ([`btc`], [`eth`]) and the
//! administrator sequences ([`admin`]), all through one typed SQL codec
//! ([`codec`]). Later services add their tables through [`migrations`].
//!
//! Every write that protects against reuse (sequence reservations) is
//! committed before the caller acts on it. This module owns the schema and
//! its SQL; it must never make mission decisions, and no other module may
//! issue SQL.

pub mod admin;
pub mod btc;
pub mod chain;
pub mod codec;
pub mod cosign;
pub mod decision;
pub mod eth;
mod migrations;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use spacenode_policy::command::{Executed, kind};
use spacenode_wire::ReasonCode;

pub use migrations::SCHEMA_VERSION;

/// How long a write waits for a lock held by another process (an
/// operator's `sqlite3`, a backup) before failing with `STORAGE`. Well
/// under the supervisor's default task deadline (5 s): a locked database
/// must cost one refused command, not a watchdog reset.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (I/O, corruption, full disk, busy).
    #[error("database {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer daemon.
    #[error("database schema version {found} is newer than this daemon's {supported}")]
    TooNew {
        /// Version found in the file.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// A stored value is outside its domain (corruption or tampering).
    #[error("stored value {what} out of range: {value}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value found.
        value: i64,
    },
    /// A stored record does not decode (corruption or tampering).
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl StoreError {
    /// The reason code reported to the ground.
    #[must_use]
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::Sqlite { .. } => ReasonCode::STORE_SQLITE,
            Self::TooNew { .. } => ReasonCode::STORE_TOO_NEW,
            Self::OutOfRange { .. } | Self::Corrupt { .. } => ReasonCode::STORE_OUT_OF_RANGE,
        }
    }
}

/// Direction of a persisted sequence bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqDir {
    /// Numbers this node sends.
    Tx,
    /// Numbers this node receives.
    Rx,
}

impl SeqDir {
    fn as_i64(self) -> i64 {
        match self {
            Self::Tx => 0,
            Self::Rx => 1,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Node-wide sequence number.
    pub seq: u32,
    /// When it happened.
    pub time_unix_ms: i64,
    /// Event id.
    pub event_id: u16,
    /// Severity (TM[5,x] subtype).
    pub severity: u8,
    /// Event data.
    pub aux: Vec<u8>,
}

/// A link key installed by rekey.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub key_id: u16,
    /// Key material (plaintext for now: the key-custody work seals it).
    pub key: [u8; 32],
}

impl core::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// A link key installed by a rekey command, as recorded
/// ([`Store::record_installed_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstalledKey {
    /// The new key's id.
    pub key_id: u16,
    /// SHA-256 of its bytes.
    pub digest: [u8; 32],
    /// The key it replaces (retired once the ground uses the new one).
    pub replaces: u16,
    /// Whether it becomes the downlink key for unsolicited telemetry (the
    /// replaced key was).
    pub make_downlink: bool,
    /// The rekey command's sequence.
    pub command_seq: u64,
    /// When.
    pub now_ms: i64,
}

/// Maximum events kept; older ones are pruned.
pub const EVENT_LOG_CAPACITY: i64 = 10_000;

/// Maximum events kept per event id (issue 13 item 9): a flood of one id
/// (refused packets) drops its own oldest events, counted in
/// `event_drops`, and never evicts other ids' events.
pub const EVENTS_PER_ID: i64 = 200;

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    created: bool,
}

impl Store {
    /// Opens (creating if needed) `state_dir/spacenode.db` and migrates it.
    ///
    /// # Errors
    /// [`StoreError`] if the file cannot be opened, is corrupt or is newer.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join("spacenode.db");
        let conn = connect(&path)?;
        let mut store = Self {
            conn,
            path,
            created: false,
        };
        store.created = store.schema_version()? == 0;
        migrations::migrate(&mut store.conn).map_err(|e| match e {
            migrations::MigrateError::Sqlite(source) => StoreError::Sqlite {
                path: store.path.clone(),
                source,
            },
            migrations::MigrateError::TooNew(found) => StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            },
        })?;
        Ok(store)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens the header-chain store on its own connection to the same
    /// (already migrated) database, so the chain can own its store while
    /// this one keeps serving the link and the event log. Both are used
    /// from the node task only, one at a time.
    ///
    /// # Errors
    /// [`StoreError`] if the connection cannot be opened.
    pub fn open_chain(&self) -> Result<chain::ChainDb, StoreError> {
        chain::ChainDb::open(&self.path)
    }

    /// Whether this open created the database (an empty file or none).
    #[must_use]
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The database epoch bound to the TPM counter, if set.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn epoch(&self) -> Result<Option<u64>, StoreError> {
        match self.meta("epoch")? {
            None => Ok(None),
            Some(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| StoreError::OutOfRange {
                    what: "epoch",
                    value: v,
                }),
        }
    }

    /// Sets the database epoch.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        let v = i64::try_from(epoch).map_err(|_| StoreError::OutOfRange {
            what: "epoch",
            value: i64::MAX,
        })?;
        self.set_meta("epoch", v)
    }

    /// The persisted safe-mode reason code (0: normal) and since when.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn mode(&self) -> Result<(u16, i64), StoreError> {
        let reason = self.meta("mode_reason")?.unwrap_or(0);
        let reason = u16::try_from(reason).map_err(|_| StoreError::OutOfRange {
            what: "mode_reason",
            value: reason,
        })?;
        Ok((reason, self.meta("mode_since_ms")?.unwrap_or(0)))
    }

    /// Persists the mode (0: normal), optionally with a new epoch in the
    /// same transaction (leaving safe mode is an epoch bump).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_mode(
        &mut self,
        reason: u16,
        since_ms: i64,
        epoch: Option<u64>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let upsert = "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
        tx.execute(upsert, params!["mode_reason", i64::from(reason)])
            .map_err(err)?;
        tx.execute(upsert, params!["mode_since_ms", since_ms])
            .map_err(err)?;
        if let Some(e) = epoch {
            let v = i64::try_from(e).map_err(|_| StoreError::OutOfRange {
                what: "epoch",
                value: i64::MAX,
            })?;
            tx.execute(upsert, params!["epoch", v]).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The highest administrator command sequence executed, of any kind
    /// (what the status reports; the ground's next command uses it + 1).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn admin_seq(&self) -> Result<u64, StoreError> {
        let v = self.meta("admin_seq")?.unwrap_or(0);
        u64::try_from(v).map_err(|_| StoreError::OutOfRange {
            what: "admin_seq",
            value: v,
        })
    }

    /// What the node executed of administrator commands of `kind` (its
    /// last sequence, or the pre-migration single sequence if none of the
    /// kind ran since) and of any kind.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn admin_executed(&self, kind: u16) -> Result<Executed, StoreError> {
        let own: Option<i64> = self
            .conn
            .query_row(
                "SELECT last_seq FROM admin_seqs WHERE kind = ?1",
                [kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let last = match own {
            Some(v) => v,
            None => self.meta("admin_seq_floor")?.unwrap_or(0),
        };
        let last_of_kind = u64::try_from(last).map_err(|_| StoreError::OutOfRange {
            what: "admin_seqs.last_seq",
            value: last,
        })?;
        Ok(Executed {
            last_of_kind,
            highest: self.admin_seq()?,
        })
    }

    /// Records an executed administrator command sequence of `kind` (never
    /// lowers it).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_admin_seq(&mut self, kind: u16, seq: u64) -> Result<(), StoreError> {
        let v = i64::try_from(seq).map_err(|_| StoreError::OutOfRange {
            what: "admin_seq",
            value: i64::MAX,
        })?;
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        admin::raise_admin_seq(&tx, kind, v).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// When the last authenticated command arrived (UNIX ms), if ever.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn last_contact_ms(&self) -> Result<Option<i64>, StoreError> {
        self.meta("last_contact_ms")
    }

    /// Records the time of an authenticated command.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_last_contact_ms(&mut self, ms: i64) -> Result<(), StoreError> {
        self.set_meta("last_contact_ms", ms)
    }

    /// Start times of the most recent starts (UNIX ms), oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn boot_starts(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT time_ms FROM boot_starts ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records this start and keeps the newest `keep` start times.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_start(&mut self, now_ms: i64, keep: u32) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("INSERT INTO boot_starts(time_ms) VALUES (?1)", [now_ms])
            .map_err(err)?;
        tx.execute(
            "DELETE FROM boot_starts WHERE seq NOT IN (SELECT seq FROM boot_starts ORDER BY seq DESC LIMIT ?1)",
            [i64::from(keep)],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// After a rollback or a lost database: raises every sequence bound of
    /// `key_ids` (both directions) above anything the node can have used,
    /// to `max(bound + 2^40, unix_ms * 2^20)`. The first term covers a
    /// restored copy (nobody sends 2^40 packets); the second a database
    /// lost more than once (a million numbers per millisecond of wall
    /// clock). A crash can skip numbers, never repeat them.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn jump_seq_bounds(&mut self, key_ids: &[u16], unix_ms: i64) -> Result<(), StoreError> {
        let time_floor = u64::try_from(unix_ms).unwrap_or(0).saturating_mul(1 << 20);
        for &id in key_ids {
            for dir in [SeqDir::Tx, SeqDir::Rx] {
                let bound = self.seq_bound(id, dir)?;
                let jumped = bound
                    .saturating_add(1 << 40)
                    .max(time_floor)
                    .min(i64::MAX as u64);
                self.raise_seq_bound(id, dir, jumped)?;
            }
        }
        Ok(())
    }

    /// Records a link key installed by rekey, in one transaction: its id
    /// and the digest of its bytes, the pending retirement of the key it
    /// replaces (done when the ground is first heard under the new key,
    /// [`Self::retire_pending`]), the rekey command's sequence, the new
    /// downlink key if the replaced key was the downlink key, and the
    /// database epoch. The key itself is a sealed blob (custody).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_installed_key(
        &mut self,
        key: &InstalledKey,
        epoch: Option<u64>,
    ) -> Result<(), StoreError> {
        let seq = i64::try_from(key.command_seq).map_err(|_| StoreError::OutOfRange {
            what: "admin_seq",
            value: i64::MAX,
        })?;
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO link_key_ids(key_id, created_ms) VALUES (?1, ?2)",
            params![key.key_id, key.now_ms],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO link_key_digests(key_id, digest) VALUES (?1, ?2)",
            params![key.key_id, key.digest.as_slice()],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO pending_retirements(new_key_id, old_key_id) VALUES (?1, ?2) \
             ON CONFLICT DO NOTHING",
            params![key.key_id, key.replaces],
        )
        .map_err(err)?;
        admin::raise_admin_seq(&tx, kind::REKEY_LINK, seq).map_err(err)?;
        let upsert = "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
        if key.make_downlink {
            tx.execute(upsert, params!["tx_key_id", i64::from(key.key_id)])
                .map_err(err)?;
        }
        if let Some(e) = epoch {
            let v = i64::try_from(e).map_err(|_| StoreError::OutOfRange {
                what: "epoch",
                value: i64::MAX,
            })?;
            tx.execute(upsert, params!["epoch", v]).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Retirements waiting for the ground to be heard under a new key:
    /// `(new key id, key id to retire)`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn pending_retirements(&self) -> Result<Vec<(u16, u16)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT new_key_id, old_key_id FROM pending_retirements ORDER BY new_key_id, old_key_id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (new, old) = row.map_err(|e| self.err(e))?;
            let id = |v: i64| {
                u16::try_from(v).map_err(|_| StoreError::OutOfRange {
                    what: "pending_retirements key id",
                    value: v,
                })
            };
            out.push((id(new)?, id(old)?));
        }
        Ok(out)
    }

    /// The ground was heard under `new_key_id`: retires the keys pending on
    /// it and clears those entries, in one transaction (on error nothing
    /// changes and the caller retries on the next packet). Returns the ids
    /// retired.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn retire_pending(&mut self, new_key_id: u16) -> Result<Vec<u16>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let old: Vec<i64> = {
            let mut stmt = tx
                .prepare("SELECT old_key_id FROM pending_retirements WHERE new_key_id = ?1 ORDER BY old_key_id")
                .map_err(err)?;
            let rows = stmt
                .query_map([new_key_id], |r| r.get::<_, i64>(0))
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        for id in &old {
            tx.execute(
                "INSERT INTO retired_keys(key_id) VALUES (?1) ON CONFLICT DO NOTHING",
                [id],
            )
            .map_err(err)?;
            tx.execute("UPDATE link_keys SET retired = 1 WHERE key_id = ?1", [id])
                .map_err(err)?;
            // A retirement another rekey was waiting to do is done too.
            tx.execute(
                "DELETE FROM pending_retirements WHERE old_key_id = ?1",
                [id],
            )
            .map_err(err)?;
        }
        tx.execute(
            "DELETE FROM pending_retirements WHERE new_key_id = ?1",
            [new_key_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(old
            .into_iter()
            .filter_map(|v| u16::try_from(v).ok())
            .collect())
    }

    /// Records the digest (SHA-256) of a link key's bytes if its id has none
    /// yet. Returns the id already holding the same digest, if another one
    /// does (the caller refuses that key: nonces would repeat across ids).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_key_digest(
        &mut self,
        key_id: u16,
        digest: &[u8; 32],
    ) -> Result<Option<u16>, StoreError> {
        if let Some(other) = self.key_digest_holder(digest)?
            && other != key_id
        {
            return Ok(Some(other));
        }
        self.conn
            .execute(
                "INSERT INTO link_key_digests(key_id, digest) VALUES (?1, ?2) ON CONFLICT(key_id) DO NOTHING",
                params![key_id, digest.as_slice()],
            )
            .map(|_| None)
            .map_err(|e| self.err(e))
    }

    /// The key id (in use, retired or tombstoned) whose bytes have this
    /// digest, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn key_digest_holder(&self, digest: &[u8; 32]) -> Result<Option<u16>, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT key_id FROM link_key_digests WHERE digest = ?1",
                [digest.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        v.map(|v| {
            u16::try_from(v).map_err(|_| StoreError::OutOfRange {
                what: "link_key_digests.key_id",
                value: v,
            })
        })
        .transpose()
    }

    /// Deletes plaintext link keys left by earlier versions (after custody
    /// sealed them), overwriting the freed pages.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn forget_plaintext_keys(&mut self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "secure_delete", "ON")
            .map_err(|e| self.err(e))?;
        self.conn
            .execute("DELETE FROM link_keys", [])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The schema version of the open database.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn set_meta(&self, key: &str, value: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Counts this start and returns the new boot count. Called first thing,
    /// before anything that could crash, so boot loops are visible.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_boot(&mut self) -> Result<u32, StoreError> {
        let count = self.meta("boot_count")?.unwrap_or(0).saturating_add(1);
        self.set_meta("boot_count", count)?;
        u32::try_from(count).map_err(|_| StoreError::OutOfRange {
            what: "boot_count",
            value: count,
        })
    }

    /// The persisted sequence bound of a key and direction (1 if none).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn seq_bound(&self, key_id: u16, dir: SeqDir) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT reserved_until FROM link_seq WHERE key_id = ?1 AND direction = ?2",
                params![key_id, dir.as_i64()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match v {
            None => Ok(1),
            Some(v) => u64::try_from(v).map_err(|_| StoreError::OutOfRange {
                what: "reserved_until",
                value: v,
            }),
        }
    }

    /// Durably raises the sequence bound of a key and direction. Never lowers
    /// it, whatever the argument.
    ///
    /// # Errors
    /// [`StoreError`]; on error the caller must not use the numbers.
    pub fn raise_seq_bound(
        &mut self,
        key_id: u16,
        dir: SeqDir,
        reserved_until: u64,
    ) -> Result<(), StoreError> {
        let v = i64::try_from(reserved_until).map_err(|_| StoreError::OutOfRange {
            what: "reserved_until",
            value: i64::MAX,
        })?;
        self.conn
            .execute(
                "INSERT INTO link_seq(key_id, direction, reserved_until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(key_id, direction) DO UPDATE \
                 SET reserved_until = max(reserved_until, excluded.reserved_until)",
                params![key_id, dir.as_i64(), v],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Keys installed by rekey, not retired.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn link_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key_id, key FROM link_keys WHERE retired = 0 ORDER BY key_id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mut key) = row.map_err(|e| self.err(e))?;
            let key_id = u16::try_from(id).map_err(|_| StoreError::OutOfRange {
                what: "key_id",
                value: id,
            })?;
            let material =
                <[u8; 32]>::try_from(key.as_slice()).map_err(|_| StoreError::OutOfRange {
                    what: "key length",
                    value: key.len() as i64,
                });
            zeroize::Zeroize::zeroize(&mut key);
            out.push(StoredKey {
                key_id,
                key: material?,
            });
        }
        Ok(out)
    }

    /// Whether a key id was ever used (installed, retired, or with sequence
    /// state): a key id is never reused, so its nonces never repeat.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn key_id_used(&self, key_id: u16) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM link_keys WHERE key_id = ?1) \
                 OR EXISTS(SELECT 1 FROM link_key_ids WHERE key_id = ?1) \
                 OR EXISTS(SELECT 1 FROM link_seq WHERE key_id = ?1)",
                [key_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Installs a key and makes it the downlink key, in one transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn install_key(
        &mut self,
        key_id: u16,
        key: &[u8; 32],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO link_keys(key_id, key, created_ms, retired) VALUES (?1, ?2, ?3, 0)",
            params![key_id, key.as_slice(), now_ms],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('tx_key_id', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Marks a key retired (and records it, so config keys can be retired).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn retire_key(&mut self, key_id: u16) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO retired_keys(key_id) VALUES (?1) ON CONFLICT DO NOTHING",
                [key_id],
            )
            .and_then(|_| {
                self.conn.execute(
                    "UPDATE link_keys SET retired = 1 WHERE key_id = ?1",
                    [key_id],
                )
            })
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Key ids retired so far.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn retired_key_ids(&self) -> Result<Vec<u16>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key_id FROM retired_keys")
            .map_err(|e| self.err(e))?;
        let ids = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))?
            .filter_map(Result::ok)
            .filter_map(|v| u16::try_from(v).ok())
            .collect();
        Ok(ids)
    }

    /// The downlink key chosen by the last rekey, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn tx_key_id(&self) -> Result<Option<u16>, StoreError> {
        match self.meta("tx_key_id")? {
            None => Ok(None),
            Some(v) => u16::try_from(v)
                .map(Some)
                .map_err(|_| StoreError::OutOfRange {
                    what: "tx_key_id",
                    value: v,
                }),
        }
    }

    /// Appends an event, assigning its sequence number, and prunes the log to
    /// [`EVENT_LOG_CAPACITY`].
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn append_event(
        &mut self,
        time_unix_ms: i64,
        event_id: u16,
        severity: u8,
        aux: &[u8],
    ) -> Result<u32, StoreError> {
        self.append_event_bounded(
            time_unix_ms,
            event_id,
            severity,
            aux,
            (EVENTS_PER_ID, EVENT_LOG_CAPACITY),
        )
    }

    /// [`Self::append_event`] with the bounds (per id, whole log) given.
    fn append_event_bounded(
        &mut self,
        time_unix_ms: i64,
        event_id: u16,
        severity: u8,
        aux: &[u8],
        (per_id, capacity): (i64, i64),
    ) -> Result<u32, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let last: i64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'event_seq'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?
            .unwrap_or(0);
        let seq = last.saturating_add(1);
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('event_seq', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [seq],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO events(seq, time_ms, event_id, severity, aux) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![seq, time_unix_ms, event_id, severity, aux],
        )
        .map_err(err)?;
        let dropped = tx
            .execute(
                "DELETE FROM events WHERE event_id = ?1 AND seq <= \
                 (SELECT seq FROM events WHERE event_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                params![event_id, per_id],
            )
            .map_err(err)?;
        if dropped > 0 {
            tx.execute(
                "INSERT INTO event_drops(event_id, dropped) VALUES (?1, ?2) \
                 ON CONFLICT(event_id) DO UPDATE SET dropped = dropped + excluded.dropped",
                params![event_id, i64::try_from(dropped).unwrap_or(i64::MAX)],
            )
            .map_err(err)?;
        }
        // The whole log is bounded by count (not by sequence distance, which
        // a flood of one id would advance past every other id's events).
        tx.execute(
            "DELETE FROM events WHERE seq <= \
             (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
            [capacity],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        u32::try_from(seq).map_err(|_| StoreError::OutOfRange {
            what: "event_seq",
            value: seq,
        })
    }

    /// Events of `event_id` dropped by the per-id bound ([`EVENTS_PER_ID`]).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn events_dropped(&self, event_id: u16) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT dropped FROM event_drops WHERE event_id = ?1",
                [event_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// The most recent `max` events, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn recent_events(&self, max: u16) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, time_ms, event_id, severity, aux FROM \
                 (SELECT * FROM events ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([max], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, time_unix_ms, id, sev, aux) = row.map_err(|e| self.err(e))?;
            out.push(StoredEvent {
                seq: u32::try_from(seq).map_err(|_| StoreError::OutOfRange {
                    what: "event seq",
                    value: seq,
                })?,
                time_unix_ms,
                event_id: u16::try_from(id).map_err(|_| StoreError::OutOfRange {
                    what: "event id",
                    value: id,
                })?,
                severity: u8::try_from(sev).map_err(|_| StoreError::OutOfRange {
                    what: "severity",
                    value: sev,
                })?,
                aux,
            });
        }
        Ok(out)
    }

    /// Bytes used by the database file and its WAL.
    #[must_use]
    pub fn disk_usage(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum()
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's integrity check; `Ok(true)` when the file is sound.
    ///
    /// # Errors
    /// [`StoreError`] if the check cannot run.
    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let verdict: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(verdict == "ok")
    }
}

/// Opens a connection with the settings every connection of the node uses.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    // WAL: readers never block the writer; FULL: a commit survives power
    // loss, which the sequence reservations and the chain depend on.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_migrates_and_counts_boots() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(s.record_boot().unwrap(), 1);
        }
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.record_boot().unwrap(), 2);
        assert!(s.integrity_ok().unwrap());
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn seq_bounds_never_go_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.seq_bound(1, SeqDir::Tx).unwrap(), 1);
        s.raise_seq_bound(1, SeqDir::Tx, 500).unwrap();
        s.raise_seq_bound(1, SeqDir::Tx, 200).unwrap();
        assert_eq!(s.seq_bound(1, SeqDir::Tx).unwrap(), 500);
        assert_eq!(s.seq_bound(1, SeqDir::Rx).unwrap(), 1);
        assert!(s.key_id_used(1).unwrap());
        assert!(!s.key_id_used(2).unwrap());
    }

    #[test]
    fn events_are_numbered_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            assert_eq!(s.append_event(i, 7, 1, &[i as u8]).unwrap(), (i + 1) as u32);
        }
        let recent = s.recent_events(2).unwrap();
        assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    }

    /// Issue 13 item 9: a flood of one event id (refused packets) keeps
    /// only its latest events and counts the dropped ones; it never evicts
    /// another id's events. (Bounds scaled down: 5 per id, 20 in all.)
    #[test]
    fn a_flood_of_one_event_id_does_not_evict_other_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let bounds = (5, 20);
        s.append_event_bounded(0, 0x0050, 3, &[8, 1], bounds)
            .unwrap();
        for i in 0..100 {
            s.append_event_bounded(i, 0x0010, 2, &[], bounds).unwrap();
        }
        let all = s.recent_events(u16::MAX).unwrap();
        assert!(
            all.iter().any(|e| e.event_id == 0x0050),
            "the flood evicted the safe-mode event: {:?}",
            all.iter().map(|e| e.event_id).collect::<Vec<_>>()
        );
        let flood: Vec<u32> = all
            .iter()
            .filter(|e| e.event_id == 0x0010)
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            flood,
            vec![97, 98, 99, 100, 101],
            "the latest of the flooding id"
        );
        assert_eq!(s.events_dropped(0x0010).unwrap(), 95);
        assert_eq!(s.events_dropped(0x0050).unwrap(), 0);
    }

    #[test]
    fn keys_install_and_retire() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.install_key(9, &[3; 32], 0).unwrap();
        assert_eq!(s.tx_key_id().unwrap(), Some(9));
        assert_eq!(s.link_keys().unwrap().len(), 1);
        assert!(
            s.install_key(9, &[4; 32], 0).is_err(),
            "a key id is never reinstalled"
        );
        s.retire_key(9).unwrap();
        s.retire_key(1).unwrap();
        assert!(s.link_keys().unwrap().is_empty());
        let mut retired = s.retired_key_ids().unwrap();
        retired.sort();
        assert_eq!(retired, vec![1, 9]);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("spacenode.db")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
    }

    fn quorum_signed(
        kind: u16,
        seq: u64,
        body: Vec<u8>,
    ) -> (
        spacenode_policy::command::SignedCommand,
        spacenode_policy::quorum::AdminSet,
    ) {
        use bitcoin::secp256k1::{Keypair, Message, Secp256k1, SecretKey};
        use spacenode_policy::command::{Command, SignedCommand, TAG};
        use spacenode_policy::quorum::{AdminSet, Signature, tagged_hash};
        let secp = Secp256k1::new();
        let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[7; 32]).unwrap());
        let set = AdminSet::new(vec![kp.x_only_public_key().0], 1).unwrap();
        let command = Command {
            kind,
            target: [1; 8],
            seq,
            not_before_ms: 0,
            not_after_ms: i64::MAX,
            body,
        }
        .encode();
        let digest = Message::from_digest(tagged_hash(TAG, &command));
        let sig = secp.sign_schnorr_no_aux_rand(&digest, &kp).serialize();
        (
            SignedCommand {
                command,
                signatures: vec![Signature { signer: 0, sig }],
            },
            set,
        )
    }

    /// Issue 13 item 3, against the stored sequences: a rogue quorum that
    /// burns the number space (u64::MAX, or a burst of other commands)
    /// cannot stop a veto.
    #[test]
    fn a_burst_of_other_kinds_does_not_stop_a_veto() {
        let secp = bitcoin::secp256k1::Secp256k1::verification_only();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        // u64::MAX is refused before anything is stored.
        let (huge, set) = quorum_signed(kind::REGISTER_WALLET, u64::MAX, vec![]);
        let e = huge
            .authorize(
                &secp,
                &set,
                [1; 8],
                s.admin_executed(kind::REGISTER_WALLET).unwrap(),
                0,
            )
            .unwrap_err();
        assert_eq!(e.code(), 0x05D0, "{e}");
        // The largest steps allowed, 50 times: wallets registered.
        let mut seq = 0;
        for i in 0..50u8 {
            seq += spacenode_policy::command::MAX_SEQ_STEP;
            let (c, set) = quorum_signed(kind::REGISTER_WALLET, seq, vec![]);
            let executed = s.admin_executed(kind::REGISTER_WALLET).unwrap();
            let cmd = c.authorize(&secp, &set, [1; 8], executed, 0).unwrap();
            s.register_wallet(&[i; 32], b"w", 0, cmd.seq).unwrap();
        }
        assert_eq!(s.admin_seq().unwrap(), 50_000);
        // The veto's own sequence is untouched: seq 1 passes.
        let executed = s.admin_executed(kind::VETO_POLICY).unwrap();
        assert_eq!(
            executed,
            Executed {
                last_of_kind: 0,
                highest: 50_000
            }
        );
        let (veto, set) = quorum_signed(kind::VETO_POLICY, 1, vec![0; 32]);
        let cmd = veto.authorize(&secp, &set, [1; 8], executed, 0).unwrap();
        s.set_policy_state(b"state", 0, None, Some(cmd.seq))
            .unwrap();
        assert_eq!(s.admin_executed(kind::VETO_POLICY).unwrap().last_of_kind, 1);
        // And it is not replayable.
        let executed = s.admin_executed(kind::VETO_POLICY).unwrap();
        assert!(veto.authorize(&secp, &set, [1; 8], executed, 0).is_err());
    }

    /// A database of an earlier version had one sequence for every kind:
    /// after migration each kind starts at it, so nothing replays.
    #[test]
    fn the_single_sequence_of_an_older_database_floors_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("spacenode.db")).unwrap();
        conn.execute_batch(
            "DROP TABLE admin_seqs; DROP TABLE pending_retirements; DROP TABLE link_key_digests; \
             DELETE FROM meta; INSERT INTO meta(key, value) VALUES ('admin_seq', 9); \
             PRAGMA user_version = 6;",
        )
        .unwrap();
        drop(conn);
        let mut s = Store::open(dir.path()).unwrap();
        for k in [kind::EXIT_SAFE_MODE, kind::VETO_POLICY, kind::REKEY_LINK] {
            assert_eq!(
                s.admin_executed(k).unwrap(),
                Executed {
                    last_of_kind: 9,
                    highest: 9
                }
            );
        }
        s.set_admin_seq(kind::EXIT_SAFE_MODE, 10).unwrap();
        assert_eq!(
            s.admin_executed(kind::EXIT_SAFE_MODE).unwrap().last_of_kind,
            10
        );
        assert_eq!(s.admin_executed(kind::VETO_POLICY).unwrap().last_of_kind, 9);
    }

    #[test]
    fn a_key_digest_is_held_by_one_id_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.record_key_digest(1, &[4; 32]).unwrap(), None);
        assert_eq!(s.record_key_digest(1, &[4; 32]).unwrap(), None);
        assert_eq!(s.record_key_digest(2, &[4; 32]).unwrap(), Some(1));
        assert_eq!(s.key_digest_holder(&[4; 32]).unwrap(), Some(1));
        s.retire_key(1).unwrap();
        assert_eq!(
            s.key_digest_holder(&[4; 32]).unwrap(),
            Some(1),
            "a retired key's bytes stay refused"
        );
    }
}
