//! The operator's side of the link: configuration and persisted state
//! ([`config`]), the secured request/reply client with retries
//! ([`client`]), and human-readable rendering of telemetry ([`display`]).

pub mod client;
pub mod config;
pub mod display;
