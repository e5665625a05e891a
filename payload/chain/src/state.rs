//! The pruned, validated header chain and its decisions.
//!
//! Owns: [`ChainState`] — a base record (rolling [`Checkpoint`]) plus at most
//! `window - 1` headers above it — and the pure decisions on it: what a
//! header batch does (extend, no-op, follow a reorg by most work, ignore a
//! low-work fork, refuse a deep reorg), pruning, checkpoint replacement, the
//! status. Every decision is returned as a [`ChainUpdate`] that the caller
//! persists and then applies with [`ChainState::apply`]; [`Chain`] does both
//! over a [`ChainStore`].
//!
//! Memory is bounded by the window whatever the height: the base record
//! carries the 11 timestamps and the retarget anchor that pruned history
//! would otherwise have to provide.
//!
//! Must never: do I/O or read the clock (time is an argument), keep side
//! branches across batches, follow a fork that does not have strictly more
//! work, or follow one that forks below the kept window.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::VecDeque;

use bitcoin::block::Header;
use bitcoin::{BlockHash, Network, Work};

use crate::batch::{BatchError, HeaderBatch};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::params::{ChainParams, MEDIAN_TIME_SPAN};
use crate::status::ChainStatus;
use crate::store::{
    ChainMeta, ChainStore, ChainUpdate, DeepReorgInfo, ReorgInfo, StoredChain, StoredHeader,
};
use crate::validate::{
    HeaderContext, ValidationError, check_proof_of_work, checked_add_work, checked_sub_work,
    header_hash,
};

/// Default number of kept headers: one difficulty period plus one day.
pub const DEFAULT_WINDOW: u32 = 2016 + 144;
/// Smallest accepted window (a reorg of depth 1 must fit).
pub const MIN_WINDOW: u32 = 2;

/// Chain-state configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    /// Network to follow.
    pub network: Network,
    /// Headers kept including the base (`tip - lowest + 1 <= window`);
    /// reorgs up to `window - 1` blocks deep are followed.
    pub window: u32,
}

impl ChainConfig {
    /// Default configuration for `network` ([`DEFAULT_WINDOW`]).
    #[must_use]
    pub fn new(network: Network) -> ChainConfig {
        ChainConfig {
            network,
            window: DEFAULT_WINDOW,
        }
    }
}

/// Errors of chain-state operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A header of the batch broke a consensus rule before any new valid
    /// header (nothing of the batch applied; see `PrefixKept`).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The batch bytes did not decode.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A checkpoint record was refused.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Batch or checkpoint for another network.
    #[error("got data for {got} but the chain follows {expected}")]
    NetworkMismatch {
        /// Our network.
        expected: Network,
        /// Network named by the input.
        got: Network,
    },
    /// Batch starts above tip + 1: headers are missing in between.
    #[error("batch starts at {start} but our tip is {tip}: headers {tip}+1..{start} missing")]
    Gap {
        /// First height of the batch.
        start: u32,
        /// Our tip height.
        tip: u32,
    },
    /// The batch's parent is not our block at that height: resend from the
    /// fork point.
    #[error("batch parent at {height} is {theirs} but ours is {ours}: resend from the fork point")]
    ParentMismatch {
        /// Parent height.
        height: u32,
        /// Our hash at that height.
        ours: BlockHash,
        /// Parent hash named by the batch.
        theirs: BlockHash,
    },
    /// The batch ends below the kept window: nothing can be checked.
    #[error("batch ends at {end}, below the lowest kept height {lowest_kept}")]
    BelowWindow {
        /// Last height of the batch.
        end: u32,
        /// Lowest kept height.
        lowest_kept: u32,
    },
    /// A branch forking below the window, with less work than the window:
    /// refused, not flagged.
    #[error(
        "branch {branch_start}..={branch_end} forks below the lowest kept height {lowest_kept} and has less work than our window"
    )]
    LowWorkForkBelowWindow {
        /// Lowest kept height.
        lowest_kept: u32,
        /// First height of the branch.
        branch_start: u32,
        /// Last height of the branch.
        branch_end: u32,
    },
    /// A credible branch forking below the window: refused and flagged.
    #[error("reorg deeper than the window refused: branch {}..={} forks below lowest kept height {}", .0.branch_start, .0.branch_end, .0.lowest_kept)]
    DeepReorgRefused(DeepReorgInfo),
    /// Configured window too small.
    #[error("window {window} is below the minimum {min}")]
    WindowTooSmall {
        /// Configured window.
        window: u32,
        /// Minimum window.
        min: u32,
    },
    /// Stored data failed re-validation on load.
    #[error("stored chain corrupt at height {height}: {detail}")]
    StoreCorrupt {
        /// Height of the first bad record.
        height: u32,
        /// What was wrong.
        detail: String,
    },
    /// The storage backend failed; nothing was changed.
    #[error("chain store failed: {message}")]
    Store {
        /// Backend error text.
        message: String,
    },
    /// An update was applied that this state did not plan.
    #[error("chain update does not fit the state at height {height}")]
    UpdateMismatch {
        /// Height where it did not fit.
        height: u32,
    },
    /// A header of the batch broke a consensus rule, but the valid headers
    /// before it were kept (validation is sequential: every kept header was
    /// checked on its own parent, exactly as if it had come in a batch of
    /// its own). Reports the validation error's code and failing height.
    #[error("{error} (the {kept} valid header(s) before it were kept: node tip {tip_height})")]
    PrefixKept {
        /// The first failing header's error.
        error: ValidationError,
        /// What the kept prefix did (boxed: keeps the error small).
        outcome: Box<BatchOutcome>,
        /// Headers of the batch before the failing one that were applied.
        kept: u32,
        /// Tip height afterwards.
        tip_height: u32,
    },
}

impl ChainError {
    /// Stable reason code reported to the ground (0x0320..=0x033F for this
    /// module; wrapped errors report their own code).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Validation(e) | Self::PrefixKept { error: e, .. } => e.code(),
            Self::Batch(e) => e.code(),
            Self::Checkpoint(e) => e.code(),
            Self::NetworkMismatch { .. } => 0x0320,
            Self::Gap { .. } => 0x0321,
            Self::ParentMismatch { .. } => 0x0322,
            Self::BelowWindow { .. } => 0x0323,
            Self::LowWorkForkBelowWindow { .. } => 0x0324,
            Self::DeepReorgRefused(_) => 0x0325,
            Self::WindowTooSmall { .. } => 0x0326,
            Self::StoreCorrupt { .. } => 0x0327,
            Self::Store { .. } => 0x0328,
            Self::UpdateMismatch { .. } => 0x0329,
        }
    }
}

/// Why the deep-reorg flag stays set (codes 0x03B0..=0x03B7). The flag
/// stops Bitcoin signing (`btc-deep-reorg`): the node saw a heavier branch
/// it cannot follow, so its SPV view may be stale or under attack. Only the
/// administrator quorum clears it, for the branch it looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearReorgError {
    /// A clear without a quorum-signed command (the former plain TC).
    #[error(
        "clearing the deep-reorg flag needs a quorum-signed CLEAR_DEEP_REORG command \
         (ground admin command clear-deep-reorg, then ground chain clear-deep-reorg --command FILE)"
    )]
    NeedsQuorum,
    /// Nothing to clear.
    #[error("no refused deep reorg is flagged")]
    NotFlagged,
    /// The command was signed for another refused branch.
    #[error(
        "the command clears the branch from height {named}, the flagged branch starts at {flagged}"
    )]
    OtherBranch {
        /// Branch start named by the command.
        named: u32,
        /// Branch start of the flag.
        flagged: u32,
    },
}

impl ClearReorgError {
    /// Stable reason code reported to the ground.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::NeedsQuorum => 0x03B0,
            Self::NotFlagged => 0x03B1,
            Self::OtherBranch { .. } => 0x03B2,
        }
    }
}

/// What a header batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every header of the batch is already in our chain (replay): no-op.
    AlreadyApplied {
        /// First height of the batch.
        start: u32,
        /// Last height of the batch.
        end: u32,
    },
    /// The tip was extended.
    Extended {
        /// First newly added height.
        first_new: u32,
        /// New tip height.
        tip_height: u32,
        /// Leading headers of the batch we already had.
        already_had: u32,
    },
    /// A branch with more work replaced our tip.
    Reorganized {
        /// Last common height.
        fork_height: u32,
        /// Blocks disconnected.
        depth: u32,
        /// New tip height.
        tip_height: u32,
    },
    /// A valid branch with no more work than ours: not followed.
    ForkIgnored {
        /// Last common height.
        fork_height: u32,
        /// Tip height of the branch.
        branch_tip_height: u32,
        /// Cumulative work at the branch tip.
        branch_work: Work,
        /// Cumulative work at our tip.
        tip_work: Work,
    },
    /// A credible reorg below the window: refused, the flag is set (the
    /// [`Chain`] wrapper turns this into [`ChainError::DeepReorgRefused`]
    /// after persisting the flag).
    DeepReorgRefused(DeepReorgInfo),
}

/// A decision: the outcome and the update to persist (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// What happens (for the valid prefix when `refused` is set).
    pub outcome: BatchOutcome,
    /// What to persist and then [`ChainState::apply`]; `None` = nothing.
    pub update: Option<ChainUpdate>,
    /// The first header that broke a rule after a valid prefix (the prefix
    /// is what `outcome` and `update` describe), and how many headers of
    /// the batch the prefix holds.
    pub refused: Option<(ValidationError, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    height: u32,
    hash: BlockHash,
    header: Header,
    chain_work: Work,
}

impl From<&StoredHeader> for Entry {
    fn from(s: &StoredHeader) -> Entry {
        Entry {
            height: s.height,
            hash: s.hash,
            header: s.header,
            chain_work: s.chain_work,
        }
    }
}

/// The validated, pruned header chain (pure state; see the module doc).
#[derive(Debug, Clone)]
pub struct ChainState {
    params: ChainParams,
    window: u32,
    base: Checkpoint,
    base_hash: BlockHash,
    /// Heights base+1 ..= tip.
    entries: VecDeque<Entry>,
    meta: ChainMeta,
    tip: HeaderContext,
}

/// The current chain, truncated above `keep_upto` and extended by `extra`
/// (used to plan on the chain as it will be after an update).
struct View<'a> {
    state: &'a ChainState,
    keep_upto: u32,
    extra: &'a [StoredHeader],
}

impl View<'_> {
    fn tip_height(&self) -> u32 {
        self.extra.last().map_or(self.keep_upto, |e| e.height)
    }

    /// Entry at `h` (strictly above the base).
    fn entry(&self, h: u32) -> Option<Entry> {
        let s = self.state;
        if h <= s.base.height {
            return None;
        }
        if h <= self.keep_upto {
            let idx = usize::try_from(h.checked_sub(s.base.height)?.checked_sub(1)?).ok()?;
            return s.entries.get(idx).copied();
        }
        let idx = usize::try_from(h.checked_sub(self.keep_upto)?.checked_sub(1)?).ok()?;
        self.extra.get(idx).map(Entry::from)
    }

    fn time_at(&self, h: u32) -> Option<u32> {
        let s = self.state;
        if h > s.base.height {
            return self.entry(h).map(|e| e.header.time);
        }
        // base.timestamps covers base.height - len + 1 ..= base.height.
        let back = usize::try_from(s.base.height.checked_sub(h)?).ok()?;
        let idx = s.base.timestamps.len().checked_sub(1)?.checked_sub(back)?;
        s.base.timestamps.get(idx).copied()
    }

    /// Validation context at height `h` (base <= h <= tip of the view).
    fn context_at(&self, h: u32) -> Option<HeaderContext> {
        let s = self.state;
        if h == s.base.height {
            return s.base.context().ok();
        }
        let e = self.entry(h)?;
        let span = u32::try_from(MEDIAN_TIME_SPAN).ok()?.checked_sub(1)?;
        let first = h.saturating_sub(span);
        let mut times = [0u32; MEDIAN_TIME_SPAN];
        let mut n = 0usize;
        for (slot, height) in times.iter_mut().zip(first..=h) {
            *slot = self.time_at(height)?;
            n = n.checked_add(1)?;
        }
        let anchor_h = h.checked_sub(h.checked_rem(s.params.interval)?)?;
        let anchor = if anchor_h > s.base.height {
            self.entry(anchor_h)?.header
        } else if anchor_h == s.base.height {
            s.base.header
        } else {
            s.base.anchor
        };
        Some(HeaderContext::from_parts(
            s.params,
            h,
            e.header,
            e.hash,
            e.chain_work,
            times.get(..n)?,
            anchor,
        ))
    }
}

impl ChainState {
    /// Fresh chain starting at `checkpoint`.
    ///
    /// # Errors
    /// `WindowTooSmall`, `NetworkMismatch`, or the checkpoint's own error.
    pub fn new(config: ChainConfig, checkpoint: Checkpoint) -> Result<ChainState, ChainError> {
        if config.window < MIN_WINDOW {
            return Err(ChainError::WindowTooSmall {
                window: config.window,
                min: MIN_WINDOW,
            });
        }
        if checkpoint.network != config.network {
            return Err(ChainError::NetworkMismatch {
                expected: config.network,
                got: checkpoint.network,
            });
        }
        let tip = checkpoint.context()?;
        Ok(ChainState {
            params: ChainParams::for_network(config.network),
            window: config.window,
            base_hash: tip.hash(),
            base: checkpoint,
            entries: VecDeque::new(),
            meta: ChainMeta::default(),
            tip,
        })
    }

    /// Rebuilds the state from what a store returned, re-validating every
    /// header (linkage, difficulty, MTP, version, PoW, chain work) against
    /// the base. The 2-hour future rule is not re-applied: it was checked
    /// against the clock at acceptance.
    ///
    /// # Errors
    /// `StoreCorrupt` at the first bad record, or as [`ChainState::new`].
    pub fn from_stored(config: ChainConfig, stored: StoredChain) -> Result<ChainState, ChainError> {
        let base_height = stored.base.height;
        let mut state =
            ChainState::new(config, stored.base).map_err(|e| ChainError::StoreCorrupt {
                height: base_height,
                detail: e.to_string(),
            })?;
        let mut ctx = state.tip.clone();
        for s in &stored.headers {
            let hash = header_hash(&s.header);
            let corrupt = |detail: String| ChainError::StoreCorrupt {
                height: s.height,
                detail,
            };
            if hash != s.hash {
                return Err(corrupt(format!(
                    "stored hash {} but header hashes to {hash}",
                    s.hash
                )));
            }
            let v = ctx
                .push_hashed(&s.header, hash, u64::MAX)
                .map_err(|e| corrupt(e.to_string()))?;
            if v.height != s.height || v.chain_work != s.chain_work {
                return Err(corrupt(
                    "stored height or chain work disagrees with validation".into(),
                ));
            }
            state.entries.push_back(Entry::from(s));
        }
        state.meta = stored.meta;
        state.tip = ctx;
        Ok(state)
    }

    /// The update that writes this (fresh) state into an empty store.
    #[must_use]
    pub fn initial_update(&self) -> ChainUpdate {
        ChainUpdate {
            reset: true,
            truncate_above: None,
            insert: self.entries.iter().map(stored).collect(),
            new_base: Some(self.base.clone()),
            meta: self.meta,
        }
    }

    /// Network parameters.
    #[must_use]
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Configured window.
    #[must_use]
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Validation context at the tip (for callers that validate ahead).
    #[must_use]
    pub fn tip_context(&self) -> &HeaderContext {
        &self.tip
    }

    /// Tip height.
    #[must_use]
    pub fn tip_height(&self) -> u32 {
        self.tip.height()
    }

    /// Tip hash.
    #[must_use]
    pub fn tip_hash(&self) -> BlockHash {
        self.tip.hash()
    }

    /// Cumulative work at the tip.
    #[must_use]
    pub fn tip_chain_work(&self) -> Work {
        self.tip.chain_work()
    }

    /// Median time past of the tip (for the daemon's clock cross-check).
    #[must_use]
    pub fn median_time_past(&self) -> u32 {
        self.tip.median_time_past()
    }

    /// Lowest kept height (the base record's height).
    #[must_use]
    pub fn lowest_height(&self) -> u32 {
        self.base.height
    }

    /// The base record (rolling checkpoint).
    #[must_use]
    pub fn base(&self) -> &Checkpoint {
        &self.base
    }

    /// Persisted status fields.
    #[must_use]
    pub fn meta(&self) -> &ChainMeta {
        &self.meta
    }

    /// Header and hash at `height`, if kept.
    #[must_use]
    pub fn header_at(&self, height: u32) -> Option<(BlockHash, Header)> {
        if height == self.base.height {
            return Some((self.base_hash, self.base.header));
        }
        self.view().entry(height).map(|e| (e.hash, e.header))
    }

    /// Cumulative chain work at `height`, if kept.
    #[must_use]
    pub fn chain_work_at(&self, height: u32) -> Option<Work> {
        if height == self.base.height {
            return Some(self.base.chain_work);
        }
        self.view().entry(height).map(|e| e.chain_work)
    }

    /// Height and header of the kept block with hash `hash`.
    #[must_use]
    pub fn find_block(&self, hash: &BlockHash) -> Option<(u32, Header)> {
        if *hash == self.base_hash {
            return Some((self.base.height, self.base.header));
        }
        self.entries
            .iter()
            .rev()
            .find(|e| e.hash == *hash)
            .map(|e| (e.height, e.header))
    }

    /// Confirmations of the block at `height` (tip - height + 1), `None` if
    /// it is not kept.
    #[must_use]
    pub fn confirmations(&self, height: u32) -> Option<u32> {
        if height < self.base.height {
            return None;
        }
        self.tip_height().checked_sub(height)?.checked_add(1)
    }

    /// Status for the `chain.status` telemetry.
    #[must_use]
    pub fn status(&self) -> ChainStatus {
        ChainStatus {
            network: self.params.network,
            tip_height: self.tip_height(),
            tip_hash: self.tip_hash(),
            tip_chain_work: self.tip_chain_work(),
            tip_median_time_past: self.median_time_past(),
            window: self.window,
            lowest_height: self.base.height,
            last_reorg: self.meta.last_reorg,
            deep_reorg_refused: self.meta.deep_reorg_refused,
        }
    }

    fn view(&self) -> View<'_> {
        View {
            state: self,
            keep_upto: self.entries_tip(),
            extra: &[],
        }
    }

    /// Height of the last entry (equals the tip except inside `apply`).
    fn entries_tip(&self) -> u32 {
        self.entries.back().map_or(self.base.height, |e| e.height)
    }

    fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.header_at(height).map(|(h, _)| h)
    }

    /// Decides what `batch` does, with `now` the node clock (Unix seconds).
    /// The state is not changed: persist `update` and then [`apply`] it.
    ///
    /// - all headers already ours: `AlreadyApplied`, no update;
    /// - extends the tip (possibly after a prefix we have): `Extended`;
    /// - forks inside the window with strictly more work: `Reorganized`;
    /// - forks inside the window with no more work: `ForkIgnored`, no update;
    /// - forks below the window with more work than the whole window:
    ///   `DeepReorgRefused`, update sets the flag.
    ///
    /// Validation is sequential, so the valid prefix of a batch is kept: a
    /// header that breaks a rule after at least one new valid header ends
    /// the batch there, `outcome`/`update` describe the prefix and
    /// `refused` names the failing header. A batch whose first new header
    /// fails is refused as a whole (`Validation`).
    ///
    /// # Errors
    /// `NetworkMismatch`, `Gap`, `ParentMismatch`, `BelowWindow`,
    /// `LowWorkForkBelowWindow`, or `Validation` with the failing height.
    ///
    /// [`apply`]: ChainState::apply
    pub fn plan_batch(&self, batch: &HeaderBatch, now: u64) -> Result<Planned, ChainError> {
        if batch.network() != self.params.network {
            return Err(ChainError::NetworkMismatch {
                expected: self.params.network,
                got: batch.network(),
            });
        }
        let start = batch.start_height();
        let end = batch.end_height();
        let tip_h = self.tip_height();
        let base_h = self.base.height;
        let hashes = batch.hashes();
        let headers = batch.headers();
        let parent_h = start
            .checked_sub(1)
            .ok_or(ChainError::Batch(BatchError::ZeroStartHeight))?;
        if parent_h > tip_h {
            return Err(ChainError::Gap { start, tip: tip_h });
        }
        // Index of the first batch header not known to be ours.
        let mut i: usize = if parent_h >= base_h {
            let ours = self
                .hash_at(parent_h)
                .ok_or(ChainError::UpdateMismatch { height: parent_h })?;
            if ours != batch.parent() {
                return Err(ChainError::ParentMismatch {
                    height: parent_h,
                    ours,
                    theirs: batch.parent(),
                });
            }
            0
        } else {
            if end < base_h {
                return Err(ChainError::BelowWindow {
                    end,
                    lowest_kept: base_h,
                });
            }
            let at_base = usize::try_from(
                base_h
                    .checked_sub(start)
                    .ok_or(ChainError::UpdateMismatch { height: start })?,
            )
            .map_err(|_| ChainError::UpdateMismatch { height: start })?;
            if hashes.get(at_base) != Some(&self.base_hash) {
                return self.plan_deep_fork(batch);
            }
            at_base
                .checked_add(1)
                .ok_or(ChainError::UpdateMismatch { height: start })?
        };
        while let Some(h) = hashes.get(i) {
            let height = height_of(start, i)?;
            if height > tip_h || self.hash_at(height) != Some(*h) {
                break;
            }
            i = i
                .checked_add(1)
                .ok_or(ChainError::UpdateMismatch { height })?;
        }
        if i >= headers.len() {
            return Ok(Planned {
                outcome: BatchOutcome::AlreadyApplied { start, end },
                update: None,
                refused: None,
            });
        }
        let first_new = height_of(start, i)?;
        let fork_h = first_new
            .checked_sub(1)
            .ok_or(ChainError::UpdateMismatch { height: first_new })?;
        let mut ctx = if fork_h == tip_h {
            self.tip.clone()
        } else {
            self.view()
                .context_at(fork_h)
                .ok_or(ChainError::UpdateMismatch { height: fork_h })?
        };
        let (insert, refused) = validate_prefix(&mut ctx, batch, i, now)?;
        let new_tip = ctx.height();
        let mut meta = self.meta;
        let (outcome, truncate_above) = if fork_h == tip_h {
            let already_had = u32::try_from(i).unwrap_or(u32::MAX);
            (
                BatchOutcome::Extended {
                    first_new,
                    tip_height: new_tip,
                    already_had,
                },
                None,
            )
        } else {
            let tip_work = self.tip_chain_work();
            let branch_work = ctx.chain_work();
            if branch_work <= tip_work {
                let outcome = BatchOutcome::ForkIgnored {
                    fork_height: fork_h,
                    branch_tip_height: new_tip,
                    branch_work,
                    tip_work,
                };
                return Ok(Planned {
                    outcome,
                    update: None,
                    refused,
                });
            }
            let depth = tip_h
                .checked_sub(fork_h)
                .ok_or(ChainError::UpdateMismatch { height: fork_h })?;
            meta.last_reorg = Some(ReorgInfo {
                fork_height: fork_h,
                depth,
                new_tip_height: new_tip,
            });
            (
                BatchOutcome::Reorganized {
                    fork_height: fork_h,
                    depth,
                    tip_height: new_tip,
                },
                Some(fork_h),
            )
        };
        let view = View {
            state: self,
            keep_upto: fork_h,
            extra: &insert,
        };
        let new_base = self.prune_base(&view)?;
        Ok(Planned {
            outcome,
            update: Some(ChainUpdate {
                reset: false,
                truncate_above,
                insert,
                new_base,
                meta,
            }),
            refused,
        })
    }

    /// New base if the view's tip is more than `window - 1` above the base.
    fn prune_base(&self, view: &View<'_>) -> Result<Option<Checkpoint>, ChainError> {
        let tip = view.tip_height();
        let lowest = tip.saturating_sub(self.window.saturating_sub(1));
        if lowest <= self.base.height {
            return Ok(None);
        }
        let ctx = view
            .context_at(lowest)
            .ok_or(ChainError::UpdateMismatch { height: lowest })?;
        Ok(Some(Checkpoint::from_context(&ctx)))
    }

    /// Update that prunes to the window now (after a window change), if
    /// needed.
    ///
    /// # Errors
    /// `UpdateMismatch` on an internal inconsistency.
    pub fn plan_prune(&self) -> Result<Option<ChainUpdate>, ChainError> {
        Ok(self.prune_base(&self.view())?.map(|b| ChainUpdate {
            reset: false,
            truncate_above: None,
            insert: Vec::new(),
            new_base: Some(b),
            meta: self.meta,
        }))
    }

    /// A batch whose fork point is below the base: refuse; flag it if the
    /// branch is credible (every header meets its own nBits and the batch
    /// carries more work than our whole window).
    fn plan_deep_fork(&self, batch: &HeaderBatch) -> Result<Planned, ChainError> {
        let start = batch.start_height();
        let mut work = Work::from_be_bytes([0; 32]);
        let mut prev: Option<BlockHash> = None;
        for (i, (header, hash)) in batch.headers().iter().zip(batch.hashes()).enumerate() {
            let height = height_of(start, i)?;
            if let Some(expected) = prev
                && header.prev_blockhash != expected
            {
                return Err(ValidationError::PrevHashMismatch {
                    height,
                    expected,
                    got: header.prev_blockhash,
                }
                .into());
            }
            prev = Some(*hash);
            let w = check_proof_of_work(&self.params, hash, header.bits, height)?;
            work =
                checked_add_work(work, w).ok_or(ValidationError::ChainWorkOverflow { height })?;
        }
        let base_work = self.base.chain_work;
        let window_work = checked_sub_work(self.tip_chain_work(), base_work)
            .unwrap_or(Work::from_be_bytes([0; 32]));
        let info = DeepReorgInfo {
            lowest_kept: self.base.height,
            branch_start: start,
            branch_end: batch.end_height(),
        };
        if work <= window_work {
            return Err(ChainError::LowWorkForkBelowWindow {
                lowest_kept: info.lowest_kept,
                branch_start: info.branch_start,
                branch_end: info.branch_end,
            });
        }
        let mut meta = self.meta;
        meta.deep_reorg_refused = Some(info);
        Ok(Planned {
            outcome: BatchOutcome::DeepReorgRefused(info),
            update: Some(ChainUpdate {
                reset: false,
                truncate_above: None,
                insert: Vec::new(),
                new_base: None,
                meta,
            }),
            refused: None,
        })
    }

    /// Update replacing the trust anchor with `checkpoint` (after the policy
    /// layer verified its quorum signatures): all headers are dropped, the
    /// chain restarts at the checkpoint, the status flags are cleared.
    ///
    /// # Errors
    /// `NetworkMismatch` or the checkpoint's consistency error.
    pub fn plan_replace_checkpoint(
        &self,
        checkpoint: Checkpoint,
    ) -> Result<ChainUpdate, ChainError> {
        if checkpoint.network != self.params.network {
            return Err(ChainError::NetworkMismatch {
                expected: self.params.network,
                got: checkpoint.network,
            });
        }
        checkpoint.validate()?;
        Ok(ChainUpdate {
            reset: true,
            truncate_above: None,
            insert: Vec::new(),
            new_base: Some(checkpoint),
            meta: ChainMeta::default(),
        })
    }

    /// May a command naming the refused branch from `branch_start` clear
    /// the flag? (The caller has checked the administrator quorum.)
    ///
    /// # Errors
    /// [`ClearReorgError::NotFlagged`] or [`ClearReorgError::OtherBranch`].
    pub fn check_clear_deep_reorg(&self, branch_start: u32) -> Result<(), ClearReorgError> {
        match self.meta.deep_reorg_refused {
            None => Err(ClearReorgError::NotFlagged),
            Some(d) if d.branch_start != branch_start => Err(ClearReorgError::OtherBranch {
                named: branch_start,
                flagged: d.branch_start,
            }),
            Some(_) => Ok(()),
        }
    }

    /// Update clearing the deep-reorg flag (the administrator quorum
    /// cleared it: [`ChainState::check_clear_deep_reorg`]).
    #[must_use]
    pub fn plan_clear_deep_reorg_flag(&self) -> ChainUpdate {
        let mut meta = self.meta;
        meta.deep_reorg_refused = None;
        ChainUpdate {
            reset: false,
            truncate_above: None,
            insert: Vec::new(),
            new_base: None,
            meta,
        }
    }

    /// Applies an update planned by this state (after it was persisted).
    ///
    /// # Errors
    /// `UpdateMismatch` (or the base record's own error) if the update does
    /// not fit this state; everything is checked before anything changes,
    /// so the state is then unchanged. (A final `UpdateMismatch` after the
    /// change would mean an internal inconsistency; reload from the store.)
    pub fn apply(&mut self, update: &ChainUpdate) -> Result<(), ChainError> {
        let reset = update.reset;
        if reset && update.new_base.is_none() {
            return Err(ChainError::UpdateMismatch { height: 0 });
        }
        // Entries kept after truncation.
        let keep = match update.truncate_above {
            _ if reset => 0,
            Some(h) if h < self.base.height => {
                return Err(ChainError::UpdateMismatch { height: h });
            }
            Some(h) => usize::try_from(h.saturating_sub(self.base.height))
                .unwrap_or(usize::MAX)
                .min(self.entries.len()),
            None => self.entries.len(),
        };
        let (mut tip_h, mut tip_hash) = match keep.checked_sub(1).and_then(|i| self.entries.get(i))
        {
            Some(e) if !reset => (e.height, e.hash),
            _ => (self.base.height, self.base_hash),
        };
        if reset && let Some(base) = &update.new_base {
            tip_h = base.height;
            tip_hash = base.hash();
        }
        for s in &update.insert {
            if Some(s.height) != tip_h.checked_add(1) || s.header.prev_blockhash != tip_hash {
                return Err(ChainError::UpdateMismatch { height: s.height });
            }
            tip_h = s.height;
            tip_hash = s.hash;
        }
        if let Some(base) = &update.new_base {
            base.validate()?;
            if base.network != self.params.network {
                return Err(ChainError::NetworkMismatch {
                    expected: self.params.network,
                    got: base.network,
                });
            }
            if !reset {
                // The new base must be one of the (new) headers.
                let kept = self.entries.iter().take(keep).map(|e| (e.height, e.hash));
                let added = update.insert.iter().map(|s| (s.height, s.hash));
                let found = kept
                    .chain(added)
                    .find(|(h, _)| *h == base.height)
                    .map(|(_, hash)| hash);
                if found != Some(base.hash()) || base.height > tip_h {
                    return Err(ChainError::UpdateMismatch {
                        height: base.height,
                    });
                }
            }
        }
        // Checked: now mutate.
        self.entries.truncate(keep);
        self.entries.extend(update.insert.iter().map(Entry::from));
        if let Some(base) = &update.new_base {
            while self
                .entries
                .front()
                .is_some_and(|e| e.height <= base.height)
            {
                self.entries.pop_front();
            }
            self.base_hash = base.hash();
            self.base = base.clone();
        }
        self.meta = update.meta;
        let tip_h = self.entries_tip();
        match self.view_at(tip_h) {
            Some(ctx) => self.tip = ctx,
            // Cannot happen: the entries were checked contiguous above the
            // base. If it did, report it; the caller reloads from the store.
            None => return Err(ChainError::UpdateMismatch { height: tip_h }),
        }
        Ok(())
    }

    fn view_at(&self, h: u32) -> Option<HeaderContext> {
        View {
            state: self,
            keep_upto: h,
            extra: &[],
        }
        .context_at(h)
    }
}

fn stored(e: &Entry) -> StoredHeader {
    StoredHeader {
        height: e.height,
        hash: e.hash,
        header: e.header,
        chain_work: e.chain_work,
    }
}

fn height_of(start: u32, index: usize) -> Result<u32, ChainError> {
    u32::try_from(index)
        .ok()
        .and_then(|i| start.checked_add(i))
        .ok_or(ChainError::Validation(ValidationError::HeightOverflow {
            height: start,
        }))
}

/// A [`ChainState`] kept in step with a [`ChainStore`]: every change is
/// persisted first, then applied in memory.
#[derive(Debug)]
pub struct Chain<S: ChainStore> {
    state: ChainState,
    store: S,
}

impl<S: ChainStore> Chain<S> {
    /// Opens the chain: loads and re-validates the store, or starts a fresh
    /// chain at `checkpoint` and persists it if the store is empty.
    ///
    /// # Errors
    /// `Store` on backend failure, `StoreCorrupt` if stored data fails
    /// re-validation, or as [`ChainState::new`].
    pub fn open(
        config: ChainConfig,
        mut store: S,
        checkpoint: Checkpoint,
    ) -> Result<Chain<S>, ChainError> {
        let loaded = store.load().map_err(store_err)?;
        let mut chain = match loaded {
            Some(stored) => Chain {
                state: ChainState::from_stored(config, stored)?,
                store,
            },
            None => {
                let state = ChainState::new(config, checkpoint)?;
                store.apply(&state.initial_update()).map_err(store_err)?;
                Chain { state, store }
            }
        };
        if let Some(update) = chain.state.plan_prune()? {
            chain.commit(&update)?;
        }
        Ok(chain)
    }

    /// The chain state.
    #[must_use]
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Status for the `chain.status` telemetry.
    #[must_use]
    pub fn status(&self) -> ChainStatus {
        self.state.status()
    }

    fn commit(&mut self, update: &ChainUpdate) -> Result<(), ChainError> {
        self.store.apply(update).map_err(store_err)?;
        self.state.apply(update)
    }

    /// Applies a header batch (see [`ChainState::plan_batch`]).
    ///
    /// # Errors
    /// As [`ChainState::plan_batch`]; `DeepReorgRefused` after the flag was
    /// persisted; `PrefixKept` after the valid headers before a bad one
    /// were persisted and applied; `Store` if persisting failed (then
    /// nothing changed).
    pub fn apply_batch(
        &mut self,
        batch: &HeaderBatch,
        now: u64,
    ) -> Result<BatchOutcome, ChainError> {
        let planned = self.state.plan_batch(batch, now)?;
        if let Some(update) = &planned.update {
            self.commit(update)?;
        }
        if let Some((error, kept)) = planned.refused {
            return Err(ChainError::PrefixKept {
                error,
                outcome: Box::new(planned.outcome),
                kept,
                tip_height: self.state.tip_height(),
            });
        }
        match planned.outcome {
            BatchOutcome::DeepReorgRefused(info) => Err(ChainError::DeepReorgRefused(info)),
            other => Ok(other),
        }
    }

    /// Decodes compact batch bytes and applies them.
    ///
    /// # Errors
    /// `Batch` if the bytes do not decode, else as [`Chain::apply_batch`].
    pub fn apply_batch_bytes(
        &mut self,
        bytes: &[u8],
        now: u64,
    ) -> Result<BatchOutcome, ChainError> {
        let batch = HeaderBatch::decode(bytes)?;
        self.apply_batch(&batch, now)
    }

    /// Replaces the trust anchor (quorum already verified by the caller).
    ///
    /// # Errors
    /// As [`ChainState::plan_replace_checkpoint`], or `Store`.
    pub fn replace_checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), ChainError> {
        let update = self.state.plan_replace_checkpoint(checkpoint)?;
        self.commit(&update)
    }

    /// Clears the deep-reorg flag.
    ///
    /// # Errors
    /// `Store` on backend failure.
    pub fn clear_deep_reorg_flag(&mut self) -> Result<(), ChainError> {
        let update = self.state.plan_clear_deep_reorg_flag();
        self.commit(&update)
    }

    /// Gives the store back.
    #[must_use]
    pub fn into_store(self) -> S {
        self.store
    }
}

fn store_err<E: std::error::Error>(e: E) -> ChainError {
    ChainError::Store {
        message: e.to_string(),
    }
}

/// The first header that broke a rule after a valid prefix, and how many
/// headers of the batch the prefix holds.
type Refused = (ValidationError, u32);

/// Validates the batch's headers from index `i` on, on top of `ctx`, and
/// returns the valid prefix and, if a later header broke a rule, that error
/// with the number of batch headers the prefix holds. A batch whose first
/// new header fails is refused as a whole.
fn validate_prefix(
    ctx: &mut HeaderContext,
    batch: &HeaderBatch,
    i: usize,
    now: u64,
) -> Result<(Vec<StoredHeader>, Option<Refused>), ChainError> {
    let headers = batch.headers();
    let mut insert = Vec::with_capacity(headers.len().saturating_sub(i));
    for (header, hash) in headers.iter().zip(batch.hashes()).skip(i) {
        let v = match ctx.push_hashed(header, *hash, now) {
            Ok(v) => v,
            // Nothing valid yet: the batch is refused as before.
            Err(e) if insert.is_empty() => return Err(e.into()),
            Err(e) => {
                let kept = u32::try_from(i.saturating_add(insert.len())).unwrap_or(u32::MAX);
                return Ok((insert, Some((e, kept))));
            }
        };
        insert.push(StoredHeader {
            height: v.height,
            hash: v.hash,
            header: v.header,
            chain_work: v.chain_work,
        });
    }
    Ok((insert, None))
}
