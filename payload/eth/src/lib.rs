//! spacenode-eth: the node's Ethereum and Safe co-signing logic, pure.
//!
//! Owns:
//! - [`signer`]: BIP44 keys `m/44'/60'/0'/0/i`, addresses, the key-store
//!   seam ([`signer::EthKeyStore`]) and alloy's `Signer`/`SignerSync` on top
//!   of it, a soft key store for tests and ground tooling;
//! - [`tx`]: strict decoding of unsigned EIP-1559 and EIP-155 transactions
//!   (alloy consensus types), signed EIP-2718 encoding;
//! - [`abi`]: ERC-20, Safe and MultiSend calldata;
//! - [`safe`]: Safe registrations, SafeTx, its EIP-712 hash (both domain
//!   variants), owner signatures;
//! - [`check`]: every policy check on a transaction or SafeTx;
//! - [`history`]: anti-equivocation over persisted nonces;
//! - [`velocity`]: per-chain and per-token velocity ledgers;
//! - [`sign`]: double-hash signing with recovery self-checks;
//! - [`engine`]: the whole sign-request decision and the persistence
//!   contract;
//! - [`error`]: refusals with stable codes and rule tags.
//!
//! Must never: read a clock, touch files, sockets or a database, sign
//! calldata it has not decoded and checked, or release a signature that
//! failed its self-check. Reason codes: 0x0700..=0x07FF (docs/policy.md).

pub mod abi;
pub mod check;
pub mod engine;
pub mod error;
pub mod history;
pub mod safe;
pub mod sign;
pub mod signer;
pub mod tx;
pub mod velocity;

pub use error::{EthError, Refusal};

// The demo world lives in spacenode-testkit (never in the flight build).
// Unit tests here need it over this crate's own types, which a
// dev-dependency on the testkit cannot give (it links a second copy of this
// crate), so they include its file; `spacenode_eth::` paths in it resolve here.
#[cfg(test)]
extern crate self as spacenode_eth;
#[cfg(test)]
#[allow(dead_code, reason = "each unit test uses a part of the demo world")]
#[path = "../../../tests/testkit/src/eth.rs"]
mod demo;
