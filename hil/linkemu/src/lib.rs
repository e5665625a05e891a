//! spacenode-linkemu: what a radio link does to the bytes between a ground
//! station and a node, on real ptys.
//!
//! | module       | owns                                                     |
//! |--------------|----------------------------------------------------------|
//! | [`pty`]      | raw pseudo-terminal pairs                                |
//! | [`emulator`] | the radio link emulator between two ptys                 |
//!
//! The binary `linkemu` only parses arguments and runs [`emulator`]. Must
//! never: understand what it carries (it sees bytes and frame delimiters,
//! never keys or packets).

pub mod emulator;
pub mod pty;
