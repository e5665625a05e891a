//! `spacenoded`, the flight daemon of the spacenode co-signer, as a library
//! so system tests and the HIL runner can drive its parts. The binary in
//! `main.rs` only wires them.
//!
//! | module      | owns                                                 |
//! |-------------|------------------------------------------------------|
//! | [`config`]  | the TOML configuration and its validation            |
//! | [`store`]   | SQLite schema, migrations and every SQL statement    |
//! | [`link`]    | serial transport and the secured packet layer        |
//! | [`services`]| telecommand acceptance, housekeeping, event limits   |
//! | [`node`]    | the node task's state machine                        |
//! | [`daemon`]  | the async runtime wiring                             |
//! | [`logging`] | journald or stderr                                   |

pub mod config;
pub mod daemon;
pub mod link;
pub mod logging;
pub mod node;
pub mod services;
pub mod store;
