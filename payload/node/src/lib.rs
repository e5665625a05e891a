//! `spacenoded`, the flight daemon of the spacenode co-signer, as a library
//! so system tests and the HIL runner can drive its parts. The binary in
//! `main.rs` only wires them.
//!
//! | module      | owns                                                 |
//! |-------------|------------------------------------------------------|
//! | [`config`]  | the TOML configuration and its validation            |
//! | [`store`]   | SQLite schema, migrations and every SQL statement    |
//! |             | (including the header chain's `ChainStore`)          |
//! | [`link`]    | serial transport and the secured packet layer        |
//! | [`service`] | the telecommand router and one room per PUS service  |
//! |             | (acceptance, execution and the service's own state)  |
//! | [`node`]    | the node task's state: link, verification output,   |
//! |             | events, ticks, health, and the sign pipeline         |
//! | [`daemon`]  | the async runtime wiring                             |
//! | [`logging`] | journald or stderr                                   |

pub mod config;
pub mod custody;
pub mod daemon;
pub mod health;
pub mod link;
pub mod logging;
pub mod node;
pub mod service;
pub mod store;
