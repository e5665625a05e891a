//! Administrator command bookkeeping: the last executed sequence of each
//! command kind and the highest of any kind, raised inside the
//! transaction of what the command changed. Must never lower a sequence.

use rusqlite::params;

use super::codec::i64_of;
use super::{Store, StoreError};

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
        self.write_tx(|tx| {
            let gone = tx.execute(delete, key)?;
            raise_admin_seq(tx, command_kind, seq)?;
            Ok(gone > 0)
        })
    }
}
