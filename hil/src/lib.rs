//! The ground side of spacenode.
//!
//! | module       | owns                                                     |
//! |--------------|----------------------------------------------------------|
//! | [`pty`]      | raw pseudo-terminal pairs                                |
//! | [`emulator`] | the radio link emulator between two ptys                 |
//! | [`ground`]   | the operator's link client, its keys and state, display  |
//! | [`hil`]      | the HIL scenario runner and the virtual flight board     |
//!
//! The binaries `ground`, `linkemu` and `hil-run` only parse arguments and
//! call these.

pub mod emulator;
pub mod ground;
pub mod hil;
pub mod pty;
