//! spacenode-rig: the HIL runner. scenarios written as data drive a node through its
//! serial link, on the virtual flight board (QEMU, [`vm`]) or on a real
//! board behind a serial bridge ([`board::SerialBoard`]), optionally through
//! the link emulator; results come out as JUnit XML and a summary table.
//!
//! | module       | owns                                                      |
//! |--------------|-----------------------------------------------------------|
//! | [`scenario`] | the scenario file format, its validation                  |
//! | [`board`]    | the board seam (power, console, link port), serial boards |
//! | [`vm`]       | the virtual board: QEMU, swtpm, the bridged link pty      |
//! | [`disk`]     | offline checks of the virtual board's disk after a cut    |
//! | [`relay`]    | bytes between the emulator and a board's port             |
//! | [`runner`]   | executing steps with the ground client                    |
//! | [`admins`]   | the administrators' keys the runner signs commands with   |
//! | [`cosign`]   | the ground side of co-signing with a board                |
//! | [`report`]   | JUnit XML and the summary table                           |
//!
//! The binary `hil-run` only parses arguments and wires these. Nothing here
//! may talk to the node other than over its link, as a ground station does
//! (through `spacenode-ground`'s client, optionally through
//! `spacenode-linkemu`).

pub mod admins;
pub mod board;
pub mod cosign;
pub mod disk;
pub mod relay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod vm;
