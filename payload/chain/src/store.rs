//! Persistence seam of the header chain.
//!
//! Owns: the [`ChainStore`] trait, the values that cross it
//! ([`StoredChain`] at start, one [`ChainUpdate`] per batch), and
//! [`MemoryStore`], the in-memory implementation used by tests, the
//! benchmark and the HIL simulator.
//!
//! A SQLite implementation (in the daemon) must:
//! - `load`: return `None` for an empty database, otherwise the base
//!   checkpoint (store its canonical encoding, [`Checkpoint::encode`]), all
//!   stored headers above it in ascending height and the [`ChainMeta`].
//! - `apply`: execute the whole update in ONE transaction, in this order:
//!   0. if `reset`: `DELETE FROM headers` (checkpoint replacement);
//!   1. if `truncate_above = Some(h)`: `DELETE FROM headers WHERE height > h`;
//!   2. insert every `insert` row (height, hash, 80-byte header, chain work);
//!   3. if `new_base = Some(cp)`: replace the base record with `cp` and
//!      `DELETE FROM headers WHERE height <= cp.height`;
//!   4. replace the meta row with `meta`;
//!
//!   and commit (WAL, `synchronous=FULL`). Either all of it is visible after a
//!   crash or none of it; the in-memory state is only changed after `apply`
//!   returned `Ok`.
//!
//! Must never: hold chain logic. Stores are dumb; [`ChainState::from_stored`]
//! re-validates everything a store hands back.
//!
//! [`Checkpoint::encode`]: crate::checkpoint::Checkpoint::encode
//! [`ChainState::from_stored`]: crate::state::ChainState::from_stored
#![deny(clippy::arithmetic_side_effects)]

use std::collections::VecDeque;
use std::convert::Infallible;

use bitcoin::block::Header;
use bitcoin::{BlockHash, Work};

use crate::checkpoint::Checkpoint;

/// One stored header of the kept window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHeader {
    /// Height of the header.
    pub height: u32,
    /// Its block hash (re-checked on load).
    pub hash: BlockHash,
    /// The header.
    pub header: Header,
    /// Cumulative chain work including this header.
    pub chain_work: Work,
}

/// The last reorganisation followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorgInfo {
    /// Height of the last block common to both branches.
    pub fork_height: u32,
    /// Number of blocks disconnected from the old tip.
    pub depth: u32,
    /// Height of the new tip after the reorg.
    pub new_tip_height: u32,
}

/// A competing branch forking below the kept window that carried more work
/// than the whole window: refused, flagged for housekeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeepReorgInfo {
    /// Lowest height we keep; the fork point is below it.
    pub lowest_kept: u32,
    /// First height of the refused branch as uplinked.
    pub branch_start: u32,
    /// Last height of the refused branch as uplinked.
    pub branch_end: u32,
}

/// Persisted status that is not derivable from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainMeta {
    /// Last reorganisation followed, if any.
    pub last_reorg: Option<ReorgInfo>,
    /// Set when a deep reorg was refused; cleared by housekeeping
    /// ([`ChainState::plan_clear_deep_reorg_flag`]) or a checkpoint
    /// replacement.
    ///
    /// [`ChainState::plan_clear_deep_reorg_flag`]: crate::state::ChainState::plan_clear_deep_reorg_flag
    pub deep_reorg_refused: Option<DeepReorgInfo>,
}

/// Everything a store returns at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChain {
    /// Base record: the lowest kept header with its full validation context.
    pub base: Checkpoint,
    /// Headers above the base, ascending and contiguous.
    pub headers: Vec<StoredHeader>,
    /// Persisted status.
    pub meta: ChainMeta,
}

/// One atomic change of the stored chain (see the module doc for the order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainUpdate {
    /// Delete every stored header first (checkpoint replacement; comes with
    /// a `new_base`).
    pub reset: bool,
    /// Delete every header above this height (reorg: the fork point).
    pub truncate_above: Option<u32>,
    /// Headers to insert, ascending and contiguous from the tip after
    /// truncation.
    pub insert: Vec<StoredHeader>,
    /// New base record; headers at or below its height are deleted.
    pub new_base: Option<Checkpoint>,
    /// New meta record (always written).
    pub meta: ChainMeta,
}

/// Persistence of the pruned header chain.
pub trait ChainStore {
    /// Backend error (I/O, SQLite, ...).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Loads the stored chain; `Ok(None)` if nothing was ever stored.
    ///
    /// # Errors
    /// Backend failure.
    fn load(&mut self) -> Result<Option<StoredChain>, Self::Error>;

    /// Applies `update` atomically.
    ///
    /// # Errors
    /// Backend failure; then nothing of the update may be visible.
    fn apply(&mut self, update: &ChainUpdate) -> Result<(), Self::Error>;
}

/// In-memory [`ChainStore`], pruned like the real one (memory bounded by the
/// window).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    base: Option<Checkpoint>,
    headers: VecDeque<StoredHeader>,
    meta: ChainMeta,
}

impl MemoryStore {
    /// Empty store.
    #[must_use]
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Number of stored headers above the base.
    #[must_use]
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// True if no header above the base is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }
}

impl ChainStore for MemoryStore {
    type Error = Infallible;

    fn load(&mut self) -> Result<Option<StoredChain>, Infallible> {
        Ok(self.base.as_ref().map(|base| StoredChain {
            base: base.clone(),
            headers: self.headers.iter().copied().collect(),
            meta: self.meta,
        }))
    }

    fn apply(&mut self, update: &ChainUpdate) -> Result<(), Infallible> {
        if update.reset {
            self.headers.clear();
        }
        if let Some(h) = update.truncate_above {
            while self.headers.back().is_some_and(|s| s.height > h) {
                self.headers.pop_back();
            }
        }
        self.headers.extend(update.insert.iter().copied());
        if let Some(base) = &update.new_base {
            while self
                .headers
                .front()
                .is_some_and(|s| s.height <= base.height)
            {
                self.headers.pop_front();
            }
            self.base = Some(base.clone());
        }
        self.meta = update.meta;
        Ok(())
    }
}
