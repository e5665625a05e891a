//! SQLite persistence of the pruned Bitcoin header chain: the daemon's
//! implementation of [`spacenode_chain::ChainStore`].
//!
//! Owns the `chain_base`, `chain_headers` and `chain_meta` tables (schema
//! version 2) and every statement on them. Each [`ChainUpdate`] is applied in
//! ONE transaction, in the order the chain crate documents (reset, truncate,
//! insert, new base with pruning, meta), so after a crash either all of a
//! batch is stored or none of it. Pruned rows are deleted in the same
//! transaction: the table never holds more than the configured window,
//! whatever the height, and SQLite reuses the freed pages.
//!
//! Must never: decide anything about the chain (the chain crate plans every
//! update and re-validates everything [`ChainStore::load`] returns), or be
//! used from more than the node task.

use std::path::{Path, PathBuf};

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network, Work};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use spacenode_chain::checkpoint::header_from_bytes;
use spacenode_chain::store::{DeepReorgInfo, ReorgInfo};
use spacenode_chain::validate::header_bytes;
use spacenode_chain::{ChainMeta, ChainStore, ChainUpdate, Checkpoint, StoredChain, StoredHeader};

use super::{StoreError, connect};

/// The header-chain tables, on their own connection.
#[derive(Debug)]
pub struct ChainDb {
    conn: Connection,
    path: PathBuf,
}

type MetaRow = [Option<i64>; 6];

impl ChainDb {
    /// Opens a connection to the (already migrated) database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: connect(path)?,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        sqlite_err(&self.path, source)
    }

    /// Network of the stored chain, `None` if nothing is stored.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure or an undecodable base record.
    pub fn stored_network(&self) -> Result<Option<Network>, StoreError> {
        let record: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT record FROM chain_base WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        record
            .map(|b| decode_base(&b).map(|cp| cp.network))
            .transpose()
    }

    /// Deletes the whole stored chain in one transaction (the configured
    /// network changed: the next open starts from the configured anchor).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`]; then nothing was deleted.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite_err(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute_batch(
            "DELETE FROM chain_headers; DELETE FROM chain_base; DELETE FROM chain_meta;",
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Number of stored header rows (above the base).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn header_rows(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM chain_headers", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        u64::try_from(n).map_err(|_| StoreError::OutOfRange {
            what: "chain header count",
            value: n,
        })
    }
}

fn sqlite_err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(what: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.into(),
    }
}

fn decode_base(bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    Checkpoint::decode(bytes).map_err(|e| corrupt("chain base record", e.to_string()))
}

fn height_of(what: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::OutOfRange { what, value: v })
}

fn array<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(bytes)
        .map_err(|_| corrupt(what, format!("{} bytes, expected {N}", bytes.len())))
}

fn header_row(
    height: i64,
    hash: &[u8],
    header: &[u8],
    work: &[u8],
) -> Result<StoredHeader, StoreError> {
    Ok(StoredHeader {
        height: height_of("chain header height", height)?,
        hash: BlockHash::from_byte_array(array("chain header hash", hash)?),
        header: header_from_bytes(&array("chain header", header)?),
        chain_work: Work::from_be_bytes(array("chain work", work)?),
    })
}

fn meta_from_row(row: MetaRow) -> Result<ChainMeta, StoreError> {
    let h = |v: Option<i64>| v.map(|v| height_of("chain meta height", v)).transpose();
    let [fork, depth, new_tip, lowest, start, end] = row;
    let last_reorg = match (h(fork)?, h(depth)?, h(new_tip)?) {
        (Some(fork_height), Some(depth), Some(new_tip_height)) => Some(ReorgInfo {
            fork_height,
            depth,
            new_tip_height,
        }),
        (None, None, None) => None,
        _ => return Err(corrupt("chain meta", "partial last-reorg record")),
    };
    let deep_reorg_refused = match (h(lowest)?, h(start)?, h(end)?) {
        (Some(lowest_kept), Some(branch_start), Some(branch_end)) => Some(DeepReorgInfo {
            lowest_kept,
            branch_start,
            branch_end,
        }),
        (None, None, None) => None,
        _ => return Err(corrupt("chain meta", "partial deep-reorg record")),
    };
    Ok(ChainMeta {
        last_reorg,
        deep_reorg_refused,
    })
}

/// Steps 0..=4 of the update, inside `tx`.
fn apply_in(tx: &Transaction<'_>, update: &ChainUpdate) -> Result<(), rusqlite::Error> {
    if update.reset {
        tx.execute("DELETE FROM chain_headers", [])?;
    }
    if let Some(h) = update.truncate_above {
        tx.execute("DELETE FROM chain_headers WHERE height > ?1", [h])?;
    }
    {
        // Plain INSERT: a height that is still present means the update does
        // not fit the stored chain, and the whole transaction fails.
        let mut insert = tx.prepare_cached(
            "INSERT INTO chain_headers(height, hash, header, chain_work) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for s in &update.insert {
            insert.execute(params![
                s.height,
                s.hash.as_byte_array().as_slice(),
                header_bytes(&s.header).as_slice(),
                s.chain_work.to_be_bytes().as_slice(),
            ])?;
        }
    }
    if let Some(base) = &update.new_base {
        tx.execute(
            "INSERT INTO chain_base(id, record) VALUES (1, ?1) \
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            [base.encode()],
        )?;
        tx.execute(
            "DELETE FROM chain_headers WHERE height <= ?1",
            [base.height],
        )?;
    }
    let r = update.meta.last_reorg;
    let d = update.meta.deep_reorg_refused;
    tx.execute(
        "INSERT INTO chain_meta(id, reorg_fork, reorg_depth, reorg_new_tip, \
                                deep_lowest, deep_start, deep_end) \
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT(id) DO UPDATE SET \
           reorg_fork = excluded.reorg_fork, reorg_depth = excluded.reorg_depth, \
           reorg_new_tip = excluded.reorg_new_tip, deep_lowest = excluded.deep_lowest, \
           deep_start = excluded.deep_start, deep_end = excluded.deep_end",
        params![
            r.map(|r| r.fork_height),
            r.map(|r| r.depth),
            r.map(|r| r.new_tip_height),
            d.map(|d| d.lowest_kept),
            d.map(|d| d.branch_start),
            d.map(|d| d.branch_end),
        ],
    )?;
    Ok(())
}

impl ChainStore for ChainDb {
    type Error = StoreError;

    fn load(&mut self) -> Result<Option<StoredChain>, StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite_err(&path, e);
        // One read transaction: a consistent snapshot of the three tables.
        let tx = self.conn.transaction().map_err(err)?;
        let record: Option<Vec<u8>> = tx
            .query_row("SELECT record FROM chain_base WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        let Some(record) = record else {
            let rows: i64 = tx
                .query_row("SELECT count(*) FROM chain_headers", [], |r| r.get(0))
                .map_err(err)?;
            if rows > 0 {
                return Err(corrupt(
                    "chain headers",
                    format!("{rows} header rows without a base record"),
                ));
            }
            return Ok(None);
        };
        let base = decode_base(&record)?;
        let headers = {
            let mut stmt = tx
                .prepare(
                    "SELECT height, hash, header, chain_work FROM chain_headers \
                     WHERE height > ?1 ORDER BY height",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([base.height], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .map_err(err)?;
            let mut out = Vec::new();
            for row in rows {
                let (height, hash, header, work) = row.map_err(err)?;
                out.push(header_row(height, &hash, &header, &work)?);
            }
            out
        };
        let meta_row: Option<MetaRow> = tx
            .query_row(
                "SELECT reorg_fork, reorg_depth, reorg_new_tip, deep_lowest, deep_start, deep_end \
                 FROM chain_meta WHERE id = 1",
                [],
                |r| {
                    Ok([
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ])
                },
            )
            .optional()
            .map_err(err)?;
        let meta = meta_row.map(meta_from_row).transpose()?.unwrap_or_default();
        tx.finish().map_err(err)?;
        Ok(Some(StoredChain {
            base,
            headers,
            meta,
        }))
    }

    fn apply(&mut self, update: &ChainUpdate) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sqlite_err(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        // On error `tx` is dropped, which rolls everything back.
        apply_in(&tx, update).map_err(err)?;
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use spacenode_chain::regtest::{genesis, mine_chain};
    use spacenode_chain::{BatchOutcome, Chain, ChainConfig, ChainError, HeaderBatch, MemoryStore};

    const NOW: u64 = 2_000_000_000;

    fn cfg(window: u32) -> ChainConfig {
        ChainConfig {
            network: Network::Regtest,
            window,
        }
    }

    fn open(dir: &Path, window: u32) -> Chain<ChainDb> {
        let store = Store::open(dir).unwrap();
        let db = store.open_chain().unwrap();
        Chain::open(cfg(window), db, Checkpoint::genesis(Network::Regtest)).unwrap()
    }

    /// Feeds `headers` (heights from `start`) in batches of `n`.
    fn feed<S: ChainStore>(
        chain: &mut Chain<S>,
        start: u32,
        headers: &[bitcoin::block::Header],
        n: usize,
    ) -> BatchOutcome {
        let mut last = None;
        for (i, chunk) in headers.chunks(n).enumerate() {
            let s = start + u32::try_from(i * n).unwrap();
            let b = HeaderBatch::new(Network::Regtest, s, chunk.to_vec()).unwrap();
            last = Some(chain.apply_batch(&b, NOW).unwrap());
        }
        last.unwrap()
    }

    #[test]
    fn apply_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let headers = mine_chain(&genesis(), 60, 600).unwrap();
        let mut mem = Chain::open(
            cfg(20),
            MemoryStore::new(),
            Checkpoint::genesis(Network::Regtest),
        )
        .unwrap();
        feed(&mut mem, 1, &headers, 7);
        let status = {
            let mut chain = open(dir.path(), 20);
            assert_eq!(chain.status().tip_height, 0);
            feed(&mut chain, 1, &headers, 7);
            assert_eq!(chain.status(), mem.status());
            chain.status()
        };
        let mut chain = open(dir.path(), 20);
        assert_eq!(chain.status(), status);
        assert_eq!(chain.status().tip_height, 60);
        assert_eq!(chain.status().lowest_height, 41);
        assert_eq!(chain.store().header_rows().unwrap(), 19);
        assert_eq!(
            chain.state().header_at(50).map(|(h, _)| h),
            Some(headers[49].block_hash())
        );
        // Replaying a stored batch is a no-op.
        let b = HeaderBatch::new(Network::Regtest, 50, headers[49..60].to_vec()).unwrap();
        assert_eq!(
            chain.apply_batch(&b, NOW).unwrap(),
            BatchOutcome::AlreadyApplied { start: 50, end: 60 }
        );
        let loaded = chain.into_store().load().unwrap().unwrap();
        let expected = mem.into_store().load().unwrap().unwrap();
        assert_eq!(loaded, expected);
    }

    #[test]
    fn reorg_truncates_and_persists_the_new_branch() {
        let dir = tempfile::tempdir().unwrap();
        let a = mine_chain(&genesis(), 30, 600).unwrap();
        // Branch b forks after height 25 and is two blocks longer.
        let b = mine_chain(&a[24], 7, 601).unwrap();
        {
            let mut chain = open(dir.path(), 20);
            feed(&mut chain, 1, &a, 10);
            let batch = HeaderBatch::new(Network::Regtest, 26, b.clone()).unwrap();
            assert_eq!(
                chain.apply_batch(&batch, NOW).unwrap(),
                BatchOutcome::Reorganized {
                    fork_height: 25,
                    depth: 5,
                    tip_height: 32
                }
            );
        }
        let chain = open(dir.path(), 20);
        let st = chain.status();
        assert_eq!(st.tip_height, 32);
        assert_eq!(st.tip_hash, b[6].block_hash());
        let reorg = st.last_reorg.unwrap();
        assert_eq!((reorg.fork_height, reorg.depth), (25, 5));
        assert_eq!(
            chain.state().header_at(26).map(|(h, _)| h),
            Some(b[0].block_hash())
        );
        assert_eq!(
            chain.state().header_at(25).map(|(h, _)| h),
            Some(a[24].block_hash())
        );
        assert_eq!(chain.store().header_rows().unwrap(), 19);
    }

    #[test]
    fn pruning_keeps_rows_and_file_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let headers = mine_chain(&genesis(), 1200, 600).unwrap();
        let mut chain = open(dir.path(), 50);
        let mut sizes = Vec::new();
        for (i, part) in headers.chunks(300).enumerate() {
            feed(&mut chain, 1 + 300 * u32::try_from(i).unwrap(), part, 40);
            assert!(chain.store().header_rows().unwrap() <= 49);
            let db = std::fs::metadata(dir.path().join("spacenode.db"))
                .unwrap()
                .len();
            sizes.push(db);
        }
        assert_eq!(chain.status().tip_height, 1200);
        assert_eq!(chain.status().lowest_height, 1151);
        // The main file does not grow with the height once the window is full
        // (freed pages are reused).
        assert!(
            sizes.last() <= sizes.get(1).map(|s| s + 8192).as_ref(),
            "db grew with height: {sizes:?}"
        );
    }

    #[test]
    fn a_failed_transaction_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let headers = mine_chain(&genesis(), 12, 600).unwrap();
        let mut chain = open(dir.path(), 100);
        feed(&mut chain, 1, &headers, 12);
        let mut db = chain.into_store();
        let before = db.load().unwrap().unwrap();
        // Truncate to 5, then insert a height twice: the second insert fails
        // and the truncation must be rolled back with it.
        let row = before.headers[5];
        let update = ChainUpdate {
            reset: false,
            truncate_above: Some(5),
            insert: vec![row, row],
            new_base: None,
            meta: ChainMeta {
                last_reorg: Some(ReorgInfo {
                    fork_height: 1,
                    depth: 1,
                    new_tip_height: 2,
                }),
                deep_reorg_refused: None,
            },
        };
        assert!(matches!(db.apply(&update), Err(StoreError::Sqlite { .. })));
        assert_eq!(db.load().unwrap().unwrap(), before);
        // A store failure surfaces as ChainError::Store and changes nothing.
        db.conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON chain_headers \
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        let mut chain = Chain::open(cfg(100), db, Checkpoint::genesis(Network::Regtest)).unwrap();
        assert_eq!(chain.status().tip_height, 12);
        let more = mine_chain(&headers[11], 3, 600).unwrap();
        let b = HeaderBatch::new(Network::Regtest, 13, more).unwrap();
        let e = chain.apply_batch(&b, NOW).unwrap_err();
        assert!(matches!(e, ChainError::Store { .. }), "{e}");
        assert_eq!(e.code(), 0x0328);
        assert_eq!(chain.status().tip_height, 12);
        assert_eq!(chain.into_store().load().unwrap().unwrap(), before);
    }

    #[test]
    fn deep_reorg_flag_persists_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let a = mine_chain(&genesis(), 30, 600).unwrap();
        let b = mine_chain(&a[4], 40, 601).unwrap(); // forks after 5, below the window
        {
            let mut chain = open(dir.path(), 10);
            feed(&mut chain, 1, &a, 10);
            let batch = HeaderBatch::new(Network::Regtest, 6, b.clone()).unwrap();
            let e = chain.apply_batch(&batch, NOW).unwrap_err();
            assert_eq!(e.code(), 0x0325, "{e}");
        }
        let mut chain = open(dir.path(), 10);
        let deep = chain.status().deep_reorg_refused.unwrap();
        assert_eq!(
            (deep.lowest_kept, deep.branch_start, deep.branch_end),
            (21, 6, 45)
        );
        assert_eq!(chain.status().tip_hash, a[29].block_hash());
        chain.clear_deep_reorg_flag().unwrap();
        drop(chain);
        assert!(open(dir.path(), 10).status().deep_reorg_refused.is_none());
    }

    #[test]
    fn network_and_corruption_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), 10));
        let store = Store::open(dir.path()).unwrap();
        let mut db = store.open_chain().unwrap();
        assert_eq!(db.stored_network().unwrap(), Some(Network::Regtest));
        db.conn
            .execute("UPDATE chain_base SET record = x'0102'", [])
            .unwrap();
        assert!(matches!(db.load(), Err(StoreError::Corrupt { .. })));
        db.clear().unwrap();
        assert_eq!(db.stored_network().unwrap(), None);
        assert!(db.load().unwrap().is_none());
    }
}
