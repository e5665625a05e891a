//! spacenode-chain: the node's own view of the Bitcoin chain.
//!
//! Owns: pure, clock-free and I/O-free logic to validate Bitcoin block
//! headers from a trusted checkpoint (Bitcoin Core consensus rules a
//! header-only node can check), keep a pruned window of the best chain in
//! bounded memory, decide what uplinked header batches do (extend, replay,
//! reorg by most work, refuse deep reorgs), and verify SPV proofs against
//! that chain. Bytes, state and time go in; decisions and
//! [`store::ChainUpdate`]s come out. Persistence is the [`store::ChainStore`]
//! seam, implemented over SQLite by the daemon.
//!
//! Must never: read the clock, touch files, sockets or a database, trust the
//! ground for chain facts, panic or wrap on uplinked bytes.
//!
//! Module map:
//! - [`params`]: per-network consensus constants (Core chainparams).
//! - [`validate`]: header rules and the rolling [`validate::HeaderContext`].
//! - [`checkpoint`]: trust anchor record, canonical encoding, defaults.
//! - [`batch`]: compact uplink format for header batches.
//! - [`state`]: pruned chain state, batch decisions, [`state::Chain`].
//! - [`store`]: persistence trait and the in-memory store.
//! - [`status`]: `chain.status` telemetry record and encoding.
//! - [`spv`]: merkle-branch and `gettxoutproof` verification.
//! - [`regtest`]: regtest mining and proof building for demos and tests.
//!
//! Reason codes of every error are listed in this crate's README.md.
#![deny(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

pub mod batch;
pub mod checkpoint;
pub mod params;
pub mod regtest;
pub mod spv;
pub mod state;
pub mod status;
pub mod store;
mod u256;
pub mod validate;

pub use batch::{BatchError, HeaderBatch};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use params::ChainParams;
pub use spv::{MerkleBranch, SpvConfirmation, SpvError};
pub use state::{
    BatchOutcome, Chain, ChainConfig, ChainError, ChainState, ClearReorgError, Planned,
};
pub use status::{ChainStatus, StatusError};
pub use store::{ChainMeta, ChainStore, ChainUpdate, MemoryStore, StoredChain, StoredHeader};
pub use validate::{HeaderContext, ValidatedHeader, ValidationError};
