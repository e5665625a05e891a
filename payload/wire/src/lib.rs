//! The ground <-> node wire stack, shared by `spacenoded` and the `ground`
//! tool.
//!
//! Layers, bottom up (see `docs/wire.md` for the byte layouts):
//!
//! | module       | owns                                                        |
//! |--------------|-------------------------------------------------------------|
//! | [`frame`]    | COBS framing with CRC-32C, resynchronisation, size bound     |
//! | [`security`] | AES-256-GCM envelope, key ids, sequence numbers, anti-replay |
//! | [`pus`]      | CCSDS Space Packets with PUS-C TC/TM headers (`spacepackets`)|
//! | [`services`] | APIDs and PUS service/subtype numbers                        |
//! | [`msg`]      | typed application data of each service                       |
//! | [`codes`]    | reason codes that reach the ground in failure reports        |
//! | [`cosign`]   | uploads, policy, signing and audit payload layouts, fragments |
//!
//! Everything here is pure: bytes and state in, bytes and decisions out. This
//! crate must never depend on tokio, a TPM, SQLite or a clock; time is always
//! an argument.

pub mod codes;
pub mod cosign;
pub mod frame;
pub mod msg;
pub mod pus;
pub mod security;
pub mod services;

pub use codes::ReasonCode;
