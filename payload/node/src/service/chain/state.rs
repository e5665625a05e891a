//! The chain service (PUS 129 on APID `CHAIN`): the node's own validated,
//! pruned Bitcoin header chain, fed by uplinked header batches.
//!
//! Owns the [`Chain`] over its SQLite store ([`ChainDb`]) and the mapping of
//! the chain crate's decisions to what reaches the ground: failure notices
//! (the crate's reason code, failure data `height u32 | message`), events
//! (followed reorg, refused deep reorg) and the housekeeping fields. All
//! chain decisions are the pure `spacenode-chain` crate's; time comes in as
//! an argument.
//!
//! Must never: accept a header the chain crate refused, change the chain
//! without persisting it first (the [`Chain`] wrapper guarantees it), panic
//! on an uplinked batch, or stop the daemon because the stored chain is bad:
//! the service then reports itself unavailable and every chain request fails
//! with the reason.

use spacenode_chain::{BatchOutcome, Chain, ChainError, ChainStatus, ClearReorgError, HeaderBatch};
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{CHAIN_FLAG_DEEP_REORG, CHAIN_FLAG_UNAVAILABLE, EventId, FailureNotice};

use crate::config::ChainSettings;
use crate::store::Store;
use crate::store::chain::ChainDb;

/// Longest message carried in a failure notice after the height.
pub const MAX_FAILURE_MESSAGE: usize = 160;

/// Failure data of a chain refusal: `height u32 (BE) | message` (UTF-8, cut
/// at a character boundary to [`MAX_FAILURE_MESSAGE`] bytes).
#[must_use]
pub fn failure_data(height: u32, message: &str) -> Vec<u8> {
    let mut end = message.len().min(MAX_FAILURE_MESSAGE);
    while !message.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let mut out = height.to_be_bytes().to_vec();
    out.extend_from_slice(message.get(..end).unwrap_or_default().as_bytes());
    out
}

/// The height a chain refusal is about (see `docs/wire.md`): the failing
/// header, the batch start, the parent, the batch end or the branch start;
/// `fallback` (the batch start) when the error names none.
#[must_use]
pub fn failure_height(e: &ChainError, fallback: u32) -> u32 {
    match e {
        ChainError::Validation(v) | ChainError::PrefixKept { error: v, .. } => v.height(),
        ChainError::Batch(_) | ChainError::Checkpoint(_) | ChainError::WindowTooSmall { .. } => 0,
        ChainError::Gap { start, .. } => *start,
        ChainError::ParentMismatch { height, .. } => *height,
        ChainError::BelowWindow { end, .. } => *end,
        ChainError::LowWorkForkBelowWindow { branch_start, .. } => *branch_start,
        ChainError::DeepReorgRefused(info) => info.branch_start,
        ChainError::StoreCorrupt { height, .. } | ChainError::UpdateMismatch { height } => *height,
        ChainError::NetworkMismatch { .. } | ChainError::Store { .. } => fallback,
    }
}

/// The failure notice for a chain error.
#[must_use]
pub fn failure(e: &ChainError, fallback_height: u32) -> FailureNotice {
    FailureNotice {
        code: ReasonCode(e.code()),
        data: failure_data(failure_height(e, fallback_height), &e.to_string()),
    }
}

/// The failure notice of a refused deep-reorg clear: the code, data
/// `height 0 | message` like every chain refusal.
#[must_use]
pub fn clear_refused(e: &ClearReorgError) -> FailureNotice {
    FailureNotice {
        code: ReasonCode(e.code()),
        data: failure_data(0, &e.to_string()),
    }
}

fn aux3(a: u32, b: u32, c: u32) -> Vec<u8> {
    let mut out = a.to_be_bytes().to_vec();
    out.extend_from_slice(&b.to_be_bytes());
    out.extend_from_slice(&c.to_be_bytes());
    out
}

/// Result of a `chain.headers` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersReply {
    /// The status to send before the completion report, or the refusal.
    pub result: Result<ChainStatus, FailureNotice>,
    /// Events to raise (rate-limited by the caller).
    pub events: Vec<(EventId, Vec<u8>)>,
}

/// The chain service state.
#[derive(Debug)]
pub struct ChainService {
    chain: Result<Chain<ChainDb>, ChainError>,
}

impl ChainService {
    /// Opens the stored chain, or starts one at the configured anchor. A
    /// chain stored for another network than the configured one is
    /// discarded (the configuration is authoritative; the chain is re-synced
    /// from the ground). Never fails: if the store cannot be opened or fails
    /// re-validation, the service is unavailable and says why.
    #[must_use]
    pub fn open(settings: &ChainSettings, store: &Store) -> Self {
        let chain = Self::try_open(settings, store);
        match &chain {
            Ok(c) => {
                let st = c.status();
                tracing::info!(
                    network = %st.network,
                    tip_height = st.tip_height,
                    tip_hash = %st.tip_hash,
                    lowest_height = st.lowest_height,
                    window = st.window,
                    "header chain opened"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "header chain unavailable");
            }
        }
        Self { chain }
    }

    fn try_open(settings: &ChainSettings, store: &Store) -> Result<Chain<ChainDb>, ChainError> {
        let store_err = |e: crate::store::StoreError| ChainError::Store {
            message: e.to_string(),
        };
        let mut db = store.open_chain().map_err(store_err)?;
        let configured = settings.network.network();
        if let Some(stored) = db.stored_network().map_err(store_err)?
            && stored != configured
        {
            tracing::warn!(
                %stored,
                %configured,
                "configured chain network changed: discarding the stored chain"
            );
            db.clear().map_err(store_err)?;
        }
        Chain::open(settings.chain_config(), db, settings.anchor())
    }

    fn unavailable(e: &ChainError) -> FailureNotice {
        failure(e, 0)
    }

    /// Validates and applies one header batch; `now_s` is the node clock in
    /// UNIX seconds (for the 2-hour future rule).
    pub fn apply_headers(&mut self, batch: &HeaderBatch, now_s: u64) -> HeadersReply {
        let chain = match &mut self.chain {
            Ok(c) => c,
            Err(e) => {
                return HeadersReply {
                    result: Err(Self::unavailable(e)),
                    events: Vec::new(),
                };
            }
        };
        let start = batch.start_height();
        match chain.apply_batch(batch, now_s) {
            Ok(outcome) => {
                let mut events = Vec::new();
                Self::outcome_events(outcome, &mut events);
                HeadersReply {
                    result: Ok(chain.status()),
                    events,
                }
            }
            Err(e) => {
                let mut events = Vec::new();
                if let ChainError::DeepReorgRefused(info) = &e {
                    tracing::error!(
                        lowest_kept = info.lowest_kept,
                        branch_start = info.branch_start,
                        branch_end = info.branch_end,
                        "reorg deeper than the window refused"
                    );
                    events.push((
                        EventId::CHAIN_DEEP_REORG,
                        aux3(info.lowest_kept, info.branch_start, info.branch_end),
                    ));
                } else if let ChainError::PrefixKept {
                    outcome,
                    tip_height,
                    ..
                } = &e
                {
                    // The valid headers before the bad one are applied;
                    // the refusal names the first failing height.
                    Self::outcome_events(**outcome, &mut events);
                    tracing::info!(error = %e, code = e.code(), start, tip_height, "header batch refused after a valid prefix (kept)");
                } else {
                    tracing::info!(error = %e, code = e.code(), start, "header batch refused");
                }
                HeadersReply {
                    result: Err(failure(&e, start)),
                    events,
                }
            }
        }
    }

    fn outcome_events(outcome: BatchOutcome, events: &mut Vec<(EventId, Vec<u8>)>) {
        match outcome {
            BatchOutcome::Reorganized {
                fork_height,
                depth,
                tip_height,
            } => {
                tracing::warn!(fork_height, depth, tip_height, "header chain reorganised");
                events.push((EventId::CHAIN_REORG, aux3(fork_height, depth, tip_height)));
            }
            BatchOutcome::ForkIgnored {
                fork_height,
                branch_tip_height,
                ..
            } => tracing::info!(
                fork_height,
                branch_tip_height,
                "fork with no more work than ours ignored"
            ),
            BatchOutcome::AlreadyApplied { start, end } => {
                tracing::debug!(start, end, "header batch already applied");
            }
            BatchOutcome::Extended {
                tip_height,
                already_had,
                ..
            } => tracing::debug!(tip_height, already_had, "header chain extended"),
            BatchOutcome::DeepReorgRefused(_) => {}
        }
    }

    /// The current status.
    ///
    /// # Errors
    /// The failure notice when the chain is unavailable.
    pub fn status(&self) -> Result<ChainStatus, FailureNotice> {
        match &self.chain {
            Ok(c) => Ok(c.status()),
            Err(e) => Err(Self::unavailable(e)),
        }
    }

    /// The validated chain state signing decisions read.
    ///
    /// # Errors
    /// The failure notice when the chain is unavailable.
    pub fn state(&self) -> Result<&spacenode_chain::ChainState, FailureNotice> {
        match &self.chain {
            Ok(c) => Ok(c.state()),
            Err(e) => Err(Self::unavailable(e)),
        }
    }

    /// Makes a quorum-signed policy's checkpoint the chain's trust anchor,
    /// unless the chain already holds that very block (or was anchored
    /// above it: a checkpoint below the kept window cannot be checked and
    /// the later anchor is kept). Returns whether the chain was reset (its
    /// headers dropped; the ground re-syncs from the checkpoint).
    ///
    /// # Errors
    /// The failure notice when the chain is unavailable, the checkpoint is
    /// for another network, or the store fails.
    pub fn adopt_checkpoint(
        &mut self,
        checkpoint: &spacenode_chain::Checkpoint,
    ) -> Result<bool, FailureNotice> {
        let chain = match &mut self.chain {
            Ok(c) => c,
            Err(e) => return Err(Self::unavailable(e)),
        };
        let st = chain.state();
        let want = checkpoint.header.block_hash();
        if st
            .header_at(checkpoint.height)
            .is_some_and(|(h, _)| h == want)
        {
            return Ok(false);
        }
        if checkpoint.height < st.lowest_height() && checkpoint.network == st.params().network {
            tracing::warn!(
                checkpoint_height = checkpoint.height,
                lowest_kept = st.lowest_height(),
                "policy checkpoint below the kept window: keeping the chain's later anchor"
            );
            return Ok(false);
        }
        chain
            .replace_checkpoint(checkpoint.clone())
            .map_err(|e| failure(&e, checkpoint.height))?;
        tracing::warn!(
            height = checkpoint.height,
            hash = %want,
            "header chain re-anchored at the policy's checkpoint"
        );
        Ok(true)
    }

    /// May a quorum command naming the refused branch from `branch_start`
    /// clear the deep-reorg flag? (Checked before the command's sequence
    /// is spent.)
    ///
    /// # Errors
    /// The failure notice: no flag, another branch, chain unavailable.
    pub fn check_clear(&self, branch_start: u32) -> Result<(), FailureNotice> {
        match &self.chain {
            Ok(c) => c
                .state()
                .check_clear_deep_reorg(branch_start)
                .map_err(|e| clear_refused(&e)),
            Err(e) => Err(Self::unavailable(e)),
        }
    }

    /// Clears the deep-reorg flag. Only after a quorum-signed
    /// `CLEAR_DEEP_REORG` command passed [`ChainService::check_clear`]
    /// (`node::policy`); Bitcoin signing resumes.
    ///
    /// # Errors
    /// The failure notice when the chain is unavailable or the store fails.
    pub fn clear_deep_reorg(&mut self) -> Result<(), FailureNotice> {
        match &mut self.chain {
            Ok(c) => c.clear_deep_reorg_flag().map_err(|e| failure(&e, 0)),
            Err(e) => Err(Self::unavailable(e)),
        }
    }

    /// Housekeeping fields: tip height and flags.
    #[must_use]
    pub fn hk(&self) -> (u32, u8) {
        match &self.chain {
            Ok(c) => {
                let st = c.status();
                let flags = if st.deep_reorg_refused.is_some() {
                    CHAIN_FLAG_DEEP_REORG
                } else {
                    0
                };
                (st.tip_height, flags)
            }
            Err(_) => (0, CHAIN_FLAG_UNAVAILABLE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChainNetwork, ChainStart};
    use bitcoin::Network;
    use bitcoin::hashes::Hash;
    use spacenode_chain::regtest::{genesis, mine_chain};
    use spacenode_chain::state::DEFAULT_WINDOW;

    const NOW: u64 = 2_000_000_000;

    fn settings(network: ChainNetwork, window: u32) -> ChainSettings {
        ChainSettings {
            network,
            window,
            start: ChainStart::Genesis,
        }
    }

    #[test]
    fn failure_data_carries_height_and_bounded_text() {
        let d = failure_data(6001, "header 6001: bad");
        assert_eq!(&d[..4], &6001u32.to_be_bytes());
        assert_eq!(&d[4..], b"header 6001: bad");
        let long = "é".repeat(200);
        let d = failure_data(1, &long);
        assert!(d.len() <= 4 + MAX_FAILURE_MESSAGE);
        assert!(std::str::from_utf8(&d[4..]).is_ok());
    }

    #[test]
    fn refusals_report_code_height_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut svc = ChainService::open(&settings(ChainNetwork::Regtest, 10), &store);
        assert_eq!(svc.hk(), (0, 0));
        let a = mine_chain(&genesis(), 30, 600).unwrap();
        let ok = svc.apply_headers(
            &HeaderBatch::new(Network::Regtest, 1, a.clone()).unwrap(),
            NOW,
        );
        assert_eq!(ok.result.unwrap().tip_height, 30);

        // A header with a broken proof of work, at height 32.
        let mut more = mine_chain(&a[29], 3, 600).unwrap();
        more[1].nonce ^= 1;
        while more[1].block_hash().to_byte_array()[31] < 0x80 {
            more[1].nonce = more[1].nonce.wrapping_add(1);
        }
        let r = svc.apply_headers(&HeaderBatch::new(Network::Regtest, 31, more).unwrap(), NOW);
        let f = r.result.unwrap_err();
        assert_eq!(f.code, ReasonCode(0x0309));
        assert_eq!(&f.data[..4], &32u32.to_be_bytes());
        assert!(r.events.is_empty());
        // The valid header before it (31) is kept.
        assert_eq!(svc.hk(), (31, 0));

        // Deep reorg: branch from 6 with more work than the window.
        let b = mine_chain(&a[4], 40, 601).unwrap();
        let r = svc.apply_headers(&HeaderBatch::new(Network::Regtest, 6, b).unwrap(), NOW);
        let f = r.result.unwrap_err();
        assert_eq!(f.code, ReasonCode(0x0325));
        assert_eq!(&f.data[..4], &6u32.to_be_bytes());
        assert_eq!(r.events, vec![(EventId::CHAIN_DEEP_REORG, aux3(22, 6, 45))]);
        assert_eq!(svc.hk(), (31, CHAIN_FLAG_DEEP_REORG));
        // A clear is for the flagged branch only (after the quorum check).
        assert_eq!(svc.check_clear(7).unwrap_err().code, ReasonCode(0x03B2));
        svc.check_clear(6).unwrap();
        svc.clear_deep_reorg().unwrap();
        assert_eq!(svc.hk(), (31, 0));
        assert_eq!(svc.check_clear(6).unwrap_err().code, ReasonCode(0x03B1));

        // A shallow reorg is followed and reported.
        let c = mine_chain(&a[27], 4, 599).unwrap();
        let r = svc.apply_headers(&HeaderBatch::new(Network::Regtest, 29, c).unwrap(), NOW);
        assert_eq!(r.result.unwrap().tip_height, 32);
        assert_eq!(r.events, vec![(EventId::CHAIN_REORG, aux3(28, 3, 32))]);
    }

    #[test]
    fn network_change_discards_the_stored_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        {
            let mut svc = ChainService::open(&settings(ChainNetwork::Regtest, 10), &store);
            let a = mine_chain(&genesis(), 3, 600).unwrap();
            let r = svc.apply_headers(&HeaderBatch::new(Network::Regtest, 1, a).unwrap(), NOW);
            assert!(r.result.is_ok());
        }
        let svc = ChainService::open(&settings(ChainNetwork::Signet, DEFAULT_WINDOW), &store);
        let st = svc.status().unwrap();
        assert_eq!((st.network, st.tip_height), (Network::Signet, 0));
    }

    #[test]
    fn corrupt_store_makes_the_service_unavailable_not_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        drop(ChainService::open(
            &settings(ChainNetwork::Regtest, 10),
            &store,
        ));
        let conn = rusqlite::Connection::open(dir.path().join("spacenode.db")).unwrap();
        // A stored header that is not a valid successor of the base.
        conn.execute(
            "INSERT INTO chain_headers(height, hash, header, chain_work) VALUES (1, zeroblob(32), zeroblob(80), zeroblob(32))",
            [],
        )
        .unwrap();
        let mut svc = ChainService::open(&settings(ChainNetwork::Regtest, 10), &store);
        assert_eq!(svc.hk(), (0, CHAIN_FLAG_UNAVAILABLE));
        let f = svc.status().unwrap_err();
        assert_eq!(f.code, ReasonCode(0x0327));
        let a = mine_chain(&genesis(), 1, 600).unwrap();
        let r = svc.apply_headers(&HeaderBatch::new(Network::Regtest, 1, a).unwrap(), NOW);
        assert_eq!(r.result.unwrap_err().code, ReasonCode(0x0327));
    }
}
