//! The operator's side of the link: configuration and persisted state
//! ([`config`]), the secured request/reply client with retries
//! ([`client`]), the chain service's header sync ([`chain`]), resumable
//! uploads ([`files`]), the policy, signing and audit services
//! ([`cosign`]), offline policy files ([`policyfile`]), Bitcoin ground
//! tooling ([`btc`]), Ethereum and Safe requests with readable decoding
//! ([`eth`]), the regtest demo world ([`demo`]), and human-readable
//! rendering of telemetry ([`display`]).

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
pub mod policyfile;
