//! Pure administrator-side logic shared by the node and the ground tool:
//! who the administrators are and how many must agree ([`quorum`]), and the
//! canonical, replay-proof form of the commands they sign ([`command`]).
//!
//! Nothing here does I/O or reads a clock: time and state come in as
//! arguments and decisions come out. The node persists what these modules
//! tell it to (the highest command sequence number seen).

pub mod command;
pub mod quorum;
