//! spacenode-testkit: the worlds tests, benchmarks, fuzz targets and the
//! demo run in: deterministic seeds, a regtest chain our own code mines,
//! policies signed by a test quorum, and in-memory stand-ins for the node's
//! tables.
//!
//! | module  | owns                                                        |
//! |---------|-------------------------------------------------------------|
//! | [`btc`] | the Bitcoin co-signing flow end to end ([`btc::Demo`])      |
//! | [`eth`] | the Ethereum and Safe co-signing flow ([`eth::EthDemo`])    |
//!
//! Must never: be a normal dependency of a flight crate (`spacenoded` links
//! no deterministic seed; `tests/tests/flight_build.rs` checks it). The
//! flight crates' own unit tests include these files with `#[path]` so that
//! they see the crate's own types (a dev-dependency on this crate would
//! bring a second copy of them).

pub mod btc;
pub mod eth;
