//! Health: keeps a node nobody can reach recovering by itself and failing
//! safe. Task supervision and the watchdog ([`supervisor`], [`watchdog`]),
//! the persisted operating mode ([`mode`]) and the triggers that put the
//! node in safe mode ([`triggers`]), and the space reserved for a full
//! disk ([`ballast`]).
//!
//! The decisions here are pure; the node task persists mode changes and
//! raises events, the runtime starts the supervisor thread.

pub mod ballast;
pub mod mode;
pub mod supervisor;
pub mod triggers;
pub mod watchdog;
mod wdt_ioctl;
