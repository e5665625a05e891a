//! Policy authoring, ground side: compiling administrator-written TOML into
//! a policy document ([`compile`]) and the readable diff between two
//! documents ([`diff`]).
//!
//! Behind the `authoring` feature, which the ground enables and the node
//! does not: the flight build carries no TOML parser and no diff.
//!
//! Must never: be needed to decode, verify or enforce a document.

use bitcoin::Network;

pub mod compile;
pub mod diff;

pub use compile::{parse_address, parse_amount};
pub use diff::diff;

/// Weekday names of time windows, bit 0 first.
pub(crate) const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub(crate) fn network_name(n: Network) -> &'static str {
    match n {
        Network::Bitcoin => "bitcoin",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}
