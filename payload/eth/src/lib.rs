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
//! - [`demo`]: an in-process node and ground for tests, HIL and demos;
//! - [`error`]: refusals with stable codes and rule tags.
//!
//! Must never: read a clock, touch files, sockets or a database, sign
//! calldata it has not decoded and checked, or release a signature that
//! failed its self-check. Reason codes: 0x0700..=0x07FF (docs/policy.md).

pub mod abi;
pub mod check;
pub mod demo;
pub mod engine;
pub mod error;
pub mod history;
pub mod safe;
pub mod sign;
pub mod signer;
pub mod tx;
pub mod velocity;

pub use error::{EthError, Refusal};
