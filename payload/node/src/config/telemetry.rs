//! `[telemetry]`: housekeeping interval, event rate limit, storage warning,
//! thermal zone and audit retention. Must never read a sensor.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    #[serde(default = "default_hk_interval")]
    pub(super) hk_interval_s: u32,
    #[serde(default = "default_event_interval")]
    pub(super) event_min_interval_ms: u32,
    #[serde(default = "default_storage_warn")]
    pub(super) storage_warn_free_bytes: u64,
    #[serde(default = "default_thermal")]
    pub(super) thermal_zone: PathBuf,
    #[serde(default = "default_audit_keep")]
    pub(super) audit_keep_entries: u32,
    #[serde(default = "default_audit_segment")]
    pub(super) audit_segment_entries: u16,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            hk_interval_s: default_hk_interval(),
            event_min_interval_ms: default_event_interval(),
            storage_warn_free_bytes: default_storage_warn(),
            thermal_zone: default_thermal(),
            audit_keep_entries: default_audit_keep(),
            audit_segment_entries: default_audit_segment(),
        }
    }
}

fn default_hk_interval() -> u32 {
    30
}
fn default_event_interval() -> u32 {
    1000
}
fn default_audit_keep() -> u32 {
    50_000
}
fn default_audit_segment() -> u16 {
    10_000
}
fn default_storage_warn() -> u64 {
    16 * 1024 * 1024
}
fn default_thermal() -> PathBuf {
    PathBuf::from("/sys/class/thermal/thermal_zone0/temp")
}

/// Telemetry settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Seconds between periodic housekeeping reports (0: on request only).
    pub hk_interval_s: u32,
    /// Minimum interval between two anomaly events of the same kind.
    pub event_min_interval_ms: u32,
    /// Free bytes below which storage is reported low.
    pub storage_warn_free_bytes: u64,
    /// File with the CPU temperature in milli-degrees, if present.
    pub thermal_zone: PathBuf,
    /// Audit entries kept in the database; beyond this plus one segment,
    /// the oldest segment is archived behind a signed checkpoint.
    pub audit_keep_entries: u32,
    /// Entries per archived audit segment (at least 1).
    pub audit_segment_entries: u16,
}

impl From<RawTelemetry> for TelemetryConfig {
    fn from(raw: RawTelemetry) -> Self {
        Self {
            hk_interval_s: raw.hk_interval_s,
            event_min_interval_ms: raw.event_min_interval_ms,
            storage_warn_free_bytes: raw.storage_warn_free_bytes,
            thermal_zone: raw.thermal_zone,
            audit_keep_entries: raw.audit_keep_entries,
            audit_segment_entries: raw.audit_segment_entries.max(1),
        }
    }
}
