//! Housekeeping: assembles the core report from counters and readings of
//! the environment. [`build`] is pure; [`Readings::sample`] is the only
//! place that touches /sys and the filesystem.
//!
//! It must never block for long or fail: a missing sensor is reported as
//! absent, not as an error.

use std::path::Path;

use spacenode_wire::frame::DecoderStats;
use spacenode_wire::msg::{HkCore, ModeCode, NO_TEMPERATURE};

use crate::link::security::SecCounters;

/// Environment readings taken at report time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    /// CPU temperature in milli-degrees Celsius, if a sensor exists.
    pub cpu_temp_milli_c: Option<i32>,
    /// Free bytes on the state filesystem, if it can be queried.
    pub storage_free_bytes: Option<u64>,
    /// Bytes used by the database.
    pub storage_used_bytes: u64,
}

impl Readings {
    /// Reads the thermal zone file and the state filesystem.
    #[must_use]
    #[allow(
        clippy::useless_conversion,
        reason = "statvfs block counts are u32 on 32-bit targets, u64 on 64-bit ones"
    )]
    pub fn sample(thermal_zone: &Path, state_dir: &Path, storage_used_bytes: u64) -> Self {
        let cpu_temp_milli_c = std::fs::read_to_string(thermal_zone)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let storage_free_bytes = nix::sys::statvfs::statvfs(state_dir)
            .ok()
            .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())));
        Self {
            cpu_temp_milli_c,
            storage_free_bytes,
            storage_used_bytes,
        }
    }
}

/// Node-level counters kept by the node task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// TCs accepted.
    pub tc_accepted: u64,
    /// TCs refused at acceptance.
    pub tc_rejected: u64,
    /// TM packets sent.
    pub tm_sent: u64,
    /// Reports merged by rate limiting or dropped on a full queue.
    pub tm_suppressed: u64,
    /// Sign requests approved (replays of approvals included).
    pub sign_approved: u64,
    /// Sign requests refused by the policy.
    pub sign_refused: u64,
    /// Sign requests refused by the mode, for lack of a policy or a seed.
    pub sign_refused_mode: u64,
}

/// Everything a core report is made of.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Seconds since start.
    pub uptime_s: u64,
    /// Boot count.
    pub boot_count: u32,
    /// Mode.
    pub mode: ModeCode,
    /// Reason for the mode.
    pub mode_reason: u16,
    /// Frame decoder counters.
    pub frames: DecoderStats,
    /// Security refusals.
    pub sec: SecCounters,
    /// Node counters.
    pub node: NodeCounters,
    /// Downlink key id.
    pub tx_key_id: u16,
    /// Next downlink sequence number.
    pub tx_next_seq: u64,
    /// Highest accepted uplink number.
    pub rx_highest_seq: u64,
    /// Environment.
    pub readings: Readings,
    /// Height of the validated chain tip.
    pub chain_tip_height: u32,
    /// Chain flags (`msg::CHAIN_FLAG_*`).
    pub chain_flags: u8,
}

fn sat32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Builds the core report.
#[must_use]
pub fn build(s: &Snapshot) -> HkCore {
    HkCore {
        uptime_s: sat32(s.uptime_s),
        boot_count: s.boot_count,
        mode: s.mode as u8,
        mode_reason: s.mode_reason,
        frames_ok: sat32(s.frames.frames_ok),
        crc_errors: sat32(s.frames.crc_errors),
        malformed_frames: sat32(s.frames.malformed),
        oversize_frames: sat32(s.frames.oversize),
        resyncs: sat32(s.frames.resyncs),
        replays: sat32(s.sec.replays),
        auth_failures: sat32(s.sec.auth_failures),
        unknown_keys: sat32(s.sec.unknown_keys),
        tc_accepted: sat32(s.node.tc_accepted),
        tc_rejected: sat32(s.node.tc_rejected),
        tm_sent: sat32(s.node.tm_sent),
        tm_suppressed: sat32(s.node.tm_suppressed),
        tx_key_id: s.tx_key_id,
        tx_next_seq: s.tx_next_seq,
        rx_highest_seq: s.rx_highest_seq,
        storage_used_bytes: s.readings.storage_used_bytes,
        storage_free_bytes: s.readings.storage_free_bytes.unwrap_or(0),
        cpu_temp_milli_c: s.readings.cpu_temp_milli_c.unwrap_or(NO_TEMPERATURE),
        chain_tip_height: s.chain_tip_height,
        chain_flags: s.chain_flags,
        sign_approved: sat32(s.node.sign_approved),
        sign_refused: sat32(s.node.sign_refused),
        sign_refused_mode: sat32(s.node.sign_refused_mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_sensor_is_reported_absent() {
        let dir = tempfile::tempdir().unwrap();
        let r = Readings::sample(&dir.path().join("no-such-zone"), dir.path(), 10);
        assert_eq!(r.cpu_temp_milli_c, None);
        assert!(r.storage_free_bytes.unwrap() > 0);
        std::fs::write(dir.path().join("temp"), "48250\n").unwrap();
        let r = Readings::sample(&dir.path().join("temp"), dir.path(), 10);
        assert_eq!(r.cpu_temp_milli_c, Some(48_250));
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let s = Snapshot {
            uptime_s: u64::MAX,
            boot_count: 1,
            mode: ModeCode::Normal,
            mode_reason: 0,
            frames: DecoderStats {
                frames_ok: 1 << 40,
                ..Default::default()
            },
            sec: SecCounters::default(),
            node: NodeCounters::default(),
            tx_key_id: 1,
            tx_next_seq: 5,
            rx_highest_seq: 4,
            readings: Readings::default(),
            chain_tip_height: 7,
            chain_flags: 1,
        };
        let hk = build(&s);
        assert_eq!(hk.uptime_s, u32::MAX);
        assert_eq!(hk.frames_ok, u32::MAX);
        assert_eq!(hk.cpu_temp_milli_c, NO_TEMPERATURE);
        assert_eq!((hk.chain_tip_height, hk.chain_flags), (7, 1));
    }
}
