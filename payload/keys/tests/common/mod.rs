//! Shared helpers for the integration tests: a private swtpm per test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]
#![allow(dead_code, reason = "each test binary uses a different subset")]

use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{AuthValue, Profile, Tpm, TpmConfig};

pub const BIN_V1: [u8; 32] = [0x11; 32];
pub const BIN_V2: [u8; 32] = [0x12; 32];
pub const CFG_V1: [u8; 32] = [0x21; 32];
pub const SEAL_AUTH: &[u8] = b"spacenode-test-seal-auth";

pub fn config(sw: &Swtpm) -> TpmConfig {
    TpmConfig::new(sw.tcti(), AuthValue::new(SEAL_AUTH).unwrap())
}

pub fn connect(sw: &Swtpm) -> Tpm {
    Tpm::connect(config(sw), Profile::Development).unwrap()
}

/// Connects and measures the given software, like the daemon at start.
pub fn boot(sw: &Swtpm, bin: &[u8; 32], cfg: &[u8; 32]) -> Tpm {
    let mut t = connect(sw);
    t.measure_software(bin, cfg).unwrap();
    t
}
