//! Versioned schema migrations. Each entry moves the schema from version
//! `i` to `i + 1` inside one transaction; `PRAGMA user_version` records
//! where a file stands. Entries are append-only: a released migration is
//! never edited, a fix is a new entry.

use rusqlite::Connection;

/// Migration steps, in order.
const MIGRATIONS: &[&str] = &[
    // 1: skeleton — meta counters, link sequence bounds, rekeyed link keys,
    // event log.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE link_seq (
        key_id         INTEGER NOT NULL,
        direction      INTEGER NOT NULL CHECK (direction IN (0, 1)),
        reserved_until INTEGER NOT NULL CHECK (reserved_until >= 1),
        PRIMARY KEY (key_id, direction)
     ) STRICT;
     CREATE TABLE link_keys (
        key_id     INTEGER PRIMARY KEY CHECK (key_id BETWEEN 1 AND 65535),
        key        BLOB NOT NULL CHECK (length(key) = 32),
        created_ms INTEGER NOT NULL,
        retired    INTEGER NOT NULL DEFAULT 0
     ) STRICT;
     CREATE TABLE retired_keys (
        key_id INTEGER PRIMARY KEY
     ) STRICT;
     CREATE TABLE events (
        seq      INTEGER PRIMARY KEY,
        time_ms  INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        severity INTEGER NOT NULL,
        aux      BLOB NOT NULL
     ) STRICT;",
    // 2: pruned Bitcoin header chain (`store::chain`): the base record (a
    // rolling checkpoint in its canonical encoding), the headers above it,
    // and the status that is not derivable from the headers.
    "CREATE TABLE chain_base (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        record BLOB NOT NULL
     ) STRICT;
     CREATE TABLE chain_headers (
        height     INTEGER PRIMARY KEY CHECK (height BETWEEN 0 AND 4294967295),
        hash       BLOB NOT NULL CHECK (length(hash) = 32),
        header     BLOB NOT NULL CHECK (length(header) = 80),
        chain_work BLOB NOT NULL CHECK (length(chain_work) = 32)
     ) STRICT;
     CREATE TABLE chain_meta (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        reorg_fork    INTEGER,
        reorg_depth   INTEGER,
        reorg_new_tip INTEGER,
        deep_lowest   INTEGER,
        deep_start    INTEGER,
        deep_end      INTEGER,
        CHECK ((reorg_fork IS NULL) = (reorg_depth IS NULL)
           AND (reorg_fork IS NULL) = (reorg_new_tip IS NULL)),
        CHECK ((deep_lowest IS NULL) = (deep_start IS NULL)
           AND (deep_lowest IS NULL) = (deep_end IS NULL))
     ) STRICT;",
    // 3: health and custody — start times for the boot-loop rule, ids of
    // link keys installed by rekey (the keys themselves are sealed blobs in
    // state_dir/sealed, never plaintext in the database).
    "CREATE TABLE boot_starts (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE link_key_ids (
        key_id     INTEGER PRIMARY KEY CHECK (key_id BETWEEN 1 AND 65535),
        created_ms INTEGER NOT NULL
     ) STRICT;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(super) enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(u32),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(current));
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
