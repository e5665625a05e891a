//! spacenode-ground: the operator's ground tool as a library; the binary
//! `ground` only parses arguments, calls these and prints.
//!
//! | module         | owns                                                   |
//! |----------------|--------------------------------------------------------|
//! | [`config`]     | the station's configuration and persisted state        |
//! | [`client`]     | the secured request/reply client with retries          |
//! | [`inputs`]     | every local input checked before the link is touched   |
//! | [`chain`]      | the chain service's header sync                        |
//! | [`files`]      | resumable uploads                                      |
//! | [`cosign`]     | the policy, signing and audit services                 |
//! | [`policyfile`] | offline policy files                                   |
//! | [`admin`]      | offline administrator keys, commands and signatures    |
//! | [`btc`]        | Bitcoin ground tooling (keys, PSBTs, finalisation)     |
//! | [`eth`]        | Ethereum and Safe requests with readable decoding      |
//! | [`demo`]       | the operator's regtest helpers (`ground demo`)         |
//! | [`display`]    | human-readable rendering of telemetry                  |
//!
//! Must never: hold a node-side secret, or open the link before the
//! command's local inputs are known to be good.

pub mod admin;
pub mod btc;
pub mod chain;
pub mod client;
pub mod config;
pub mod cosign;
pub mod demo;
pub mod display;
pub mod eth;
pub mod files;
pub mod inputs;
pub mod policyfile;
