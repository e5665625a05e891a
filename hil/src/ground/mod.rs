//! The operator's side of the link: configuration and persisted state
//! ([`config`]), the secured request/reply client with retries
//! ([`client`]), the chain service's header sync ([`chain`]), and
//! human-readable rendering of telemetry ([`display`]).

pub mod admin;
pub mod chain;
pub mod client;
pub mod config;
pub mod display;
