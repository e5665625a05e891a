//! The node's end of the ground link: the secured packet layer with its
//! durable sequence state ([`security`]) and the serial transport ([`serial`]).
//!
//! This module owns getting authentic packets in and sealed packets out. It
//! must never interpret telecommands; that is the dispatcher's job.

pub mod security;
pub mod serial;
