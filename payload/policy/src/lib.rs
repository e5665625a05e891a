//! spacenode-policy: pure administrator-side and spending-policy logic
//! shared by the node and the ground tool.
//!
//! Owns:
//! - [`quorum`]: M-of-N BIP340 administrator signatures over tagged hashes.
//! - [`command`]: canonical, replay-proof administrator commands.
//! - [`cbor`]: the deterministic CBOR subset every signed document uses.
//! - [`units`]: checked amounts, fee rates and node times.
//! - [`rules`]: the stable rule tags (docs/policy.md).
//! - [`document`]: the policy document (canonical encoding, signed wrapper).
//! - `authoring` (feature `authoring`, ground only): TOML compilation and
//!   the readable diff.
//! - [`section`]: what every section of the document shares (limits,
//!   errors, velocity windows, hex).
//! - [`eth`]: the Ethereum section of the policy document (chains, caps,
//!   allowlist, tokens, spenders, DELEGATECALL targets, Safe refunds).
//! - [`change`]: the policy change state machine (propose, veto, activate).
//! - [`anchor`]: the policy anchor the TPM keeps and the recovery rule
//!   after a database loss.
//! - [`request`]: the sign-request envelope, validity windows, approvals,
//!   seen request ids.
//! - [`clock`]: the clock guard (steps and jumps deny and raise events).
//! - [`velocity`]: rolling-window spend caps over persisted records.
//! - [`audit`]: hash-chained audit entries and node-signed receipts.
//! - [`signer`]: the one key-store seam of both chains.
//! - [`pipeline`]: the one sign pipeline, with chains as plug-ins.
//!
//! Nothing here does I/O or reads a clock: time and state come in as
//! arguments and decisions come out. What the node must persist is stated
//! on each module (and collected in docs/policy.md).

pub mod anchor;
// Ground-side authoring; unit tests build their sample documents from TOML.
pub mod audit;
#[cfg(any(test, feature = "authoring"))]
pub mod authoring;
pub mod cbor;
pub mod change;
pub mod clock;
pub mod command;
pub mod document;
pub mod eth;
pub mod pipeline;
pub mod quorum;
pub mod request;
pub mod rules;
pub mod section;
pub mod signer;
pub mod units;
pub mod velocity;

pub use rules::Rule;
pub use units::{Amount, FeeRate, Sats, TimeMs, TokenAmount, Wei};
