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
    // 4: co-signing (`store::cosign`) — resumable uploads (chunks until the
    // content hashes to its id, then the content), the policy state
    // (`PolicyState::encode`), registered wallets, and what limits money:
    // seen request ids with their stored results, spends and the outpoints
    // they bind, velocity records, the hash-chained audit log and its head.
    // The clock guard's last accepted time and the velocity high-water mark
    // live in `meta`.
    "CREATE TABLE uploads (
        content_id BLOB PRIMARY KEY CHECK (length(content_id) = 32),
        total_len  INTEGER NOT NULL CHECK (total_len BETWEEN 1 AND 65536),
        created_ms INTEGER NOT NULL,
        content    BLOB CHECK (content IS NULL OR length(content) = total_len)
     ) STRICT;
     CREATE TABLE upload_chunks (
        content_id BLOB NOT NULL REFERENCES uploads(content_id) ON DELETE CASCADE,
        idx        INTEGER NOT NULL CHECK (idx >= 0),
        data       BLOB NOT NULL,
        PRIMARY KEY (content_id, idx)
     ) STRICT;
     CREATE TABLE policy_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        state      BLOB NOT NULL,
        updated_ms INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE wallets (
        id               BLOB PRIMARY KEY CHECK (length(id) = 32),
        body             BLOB NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        command_seq      INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE seen_requests (
        request_id   BLOB PRIMARY KEY CHECK (length(request_id) = 32),
        request_hash BLOB NOT NULL CHECK (length(request_hash) = 32),
        result       BLOB NOT NULL,
        time_ms      INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE spends (
        txid         BLOB PRIMARY KEY CHECK (length(txid) = 32),
        request_id   BLOB NOT NULL CHECK (length(request_id) = 32),
        destinations BLOB NOT NULL,
        fee_sat      INTEGER NOT NULL CHECK (fee_sat >= 0),
        amount_sat   INTEGER NOT NULL CHECK (amount_sat >= 0),
        time_ms      INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE spent_outpoints (
        outpoint BLOB PRIMARY KEY CHECK (length(outpoint) = 36),
        txid     BLOB NOT NULL REFERENCES spends(txid)
     ) STRICT;
     CREATE TABLE velocity (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms      INTEGER NOT NULL,
        sats       INTEGER NOT NULL CHECK (sats > 0),
        request_id BLOB NOT NULL CHECK (length(request_id) = 32)
     ) STRICT;
     CREATE TABLE audit (
        seq     INTEGER PRIMARY KEY CHECK (seq >= 0),
        entry   BLOB NOT NULL,
        receipt BLOB NOT NULL CHECK (length(receipt) = 64)
     ) STRICT;
     CREATE TABLE audit_head (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        next_seq  INTEGER NOT NULL CHECK (next_seq >= 0),
        last_hash BLOB NOT NULL CHECK (length(last_hash) = 32)
     ) STRICT;",
    // 5: Ethereum co-signing (`store::eth`) — registered Safes (the
    // REGISTER_SAFE body, re-checked against the seed at start), signed
    // account nonces with the released raw transaction, approved Safe
    // nonces (signature NULL when approved on chain with approveHash), and
    // velocity rows per chain and asset (zero address: the native coin;
    // amount u128 big-endian). u64 chain ids and nonces are stored as the
    // i64 with the same bits (`store::eth::u64_bits`).
    "CREATE TABLE safes (
        chain_id         INTEGER NOT NULL,
        address          BLOB NOT NULL CHECK (length(address) = 20),
        body             BLOB NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        command_seq      INTEGER NOT NULL,
        PRIMARY KEY (chain_id, address)
     ) STRICT;
     CREATE TABLE eth_nonces (
        chain_id     INTEGER NOT NULL,
        account      BLOB NOT NULL CHECK (length(account) = 20),
        nonce        INTEGER NOT NULL,
        signing_hash BLOB NOT NULL CHECK (length(signing_hash) = 32),
        raw_tx       BLOB NOT NULL,
        request_id   BLOB NOT NULL CHECK (length(request_id) = 32),
        time_ms      INTEGER NOT NULL,
        PRIMARY KEY (chain_id, account, nonce)
     ) STRICT;
     CREATE TABLE safe_nonces (
        domain_chain INTEGER NOT NULL,
        safe         BLOB NOT NULL CHECK (length(safe) = 20),
        nonce        BLOB NOT NULL CHECK (length(nonce) = 32),
        safe_tx_hash BLOB NOT NULL CHECK (length(safe_tx_hash) = 32),
        signature    BLOB CHECK (signature IS NULL OR length(signature) = 65),
        request_id   BLOB NOT NULL CHECK (length(request_id) = 32),
        time_ms      INTEGER NOT NULL,
        PRIMARY KEY (domain_chain, safe, nonce)
     ) STRICT;
     CREATE TABLE eth_velocity (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id   INTEGER NOT NULL,
        asset      BLOB NOT NULL CHECK (length(asset) = 20),
        at_ms      INTEGER NOT NULL,
        amount     BLOB NOT NULL CHECK (length(amount) = 16),
        request_id BLOB NOT NULL CHECK (length(request_id) = 32)
     ) STRICT;",
    // 6: bounded growth (issue 13 item 9): replays of a decided request
    // are counted on its `seen_requests` row after the first one is
    // audited (`replay_audit_seq`); the audit log's archived prefix is
    // vouched for by one signed checkpoint; events dropped by the per-id
    // bound are counted per id.
    "ALTER TABLE seen_requests ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE seen_requests ADD COLUMN replay_audit_seq INTEGER;
     CREATE TABLE audit_checkpoint (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        end_seq    INTEGER NOT NULL CHECK (end_seq >= 0),
        chain_hash BLOB NOT NULL CHECK (length(chain_hash) = 32),
        signature  BLOB NOT NULL CHECK (length(signature) = 64)
     ) STRICT;
     CREATE INDEX events_by_id ON events(event_id, seq);
     CREATE TABLE event_drops (
        event_id INTEGER PRIMARY KEY CHECK (event_id BETWEEN 0 AND 65535),
        dropped  INTEGER NOT NULL CHECK (dropped >= 0)
     ) STRICT;",
    // 7: link keys and administrator sequences (issue 13 items 2, 3, 4,
    // 10) — the last executed administrator command sequence PER KIND (a
    // kind without a row starts at `meta.admin_seq_floor`, the single
    // sequence of earlier versions, so nothing executed before replays;
    // `meta.admin_seq` stays the highest of any kind); the key retirements
    // a rekey leaves pending until the ground is heard under the new key
    // (written in the same transaction as the key switch); and the SHA-256
    // of every link key's bytes the node has held, so the same bytes are
    // never accepted under a second key id (nonces would repeat).
    "CREATE TABLE admin_seqs (
        kind     INTEGER PRIMARY KEY CHECK (kind BETWEEN 0 AND 65535),
        last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
     ) STRICT;
     INSERT INTO meta(key, value)
        SELECT 'admin_seq_floor', value FROM meta WHERE key = 'admin_seq';
     CREATE TABLE pending_retirements (
        new_key_id INTEGER NOT NULL CHECK (new_key_id BETWEEN 1 AND 65535),
        old_key_id INTEGER NOT NULL CHECK (old_key_id BETWEEN 1 AND 65535),
        PRIMARY KEY (new_key_id, old_key_id)
     ) STRICT;
     CREATE TABLE link_key_digests (
        key_id INTEGER PRIMARY KEY CHECK (key_id BETWEEN 1 AND 65535),
        digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32)
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
