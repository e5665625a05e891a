//! spacenode-btc: the node's Bitcoin multisig co-signing logic, pure.
//!
//! Owns:
//! - [`wallet`]: registered descriptors (wsh/tr multisig with recovery
//!   branches), wallet ids, node-key checks, the allowlist matcher;
//! - [`psbt_v2`]: BIP174 parsing and a strict BIP370 (v2) converter;
//! - [`chain`]: the [`chain::ChainView`] seam over the node's header chain;
//! - [`history`]: anti-equivocation over persisted signed outpoints;
//! - [`check`]: every policy check on a PSBT before signing;
//! - [`standard`]: Bitcoin Core's standard relay policy (dust, templates,
//!   weight, fee floors, version);
//! - [`sign`]: double-sighash signing with self-verification;
//! - [`signer`]: the key-store seam ([`signer::BtcSigner`]) and a soft
//!   signer for tests, demos and ground keys;
//! - [`engine`]: the whole sign-request decision and the persistence
//!   contract;
//! - [`finalize`]: ground-side combine/finalise/verify;
//! - [`error`]: refusals with stable codes and rule tags.
//!
//! Must never: read a clock, touch files, sockets or a database, trust a
//! PSBT field it has not re-derived or proven, or release a signature that
//! failed its self-check. Reason codes: 0x0600..=0x06FF (docs/policy.md).

pub mod chain;
pub mod check;
pub mod engine;
pub mod error;
pub mod finalize;
pub mod history;
pub mod psbt_v2;
pub mod sign;
pub mod signer;
pub mod standard;
pub mod wallet;

pub use error::{BtcError, Refusal};

// The demo world lives in spacenode-testkit (never in the flight build).
// Unit tests here need it over this crate's own types, which a
// dev-dependency on the testkit cannot give (it links a second copy of this
// crate), so they include its file; `spacenode_btc::` paths in it resolve here.
#[cfg(test)]
extern crate self as spacenode_btc;
#[cfg(test)]
#[allow(dead_code, reason = "each unit test uses a part of the demo world")]
#[path = "../../../tests/testkit/src/btc.rs"]
mod demo;
