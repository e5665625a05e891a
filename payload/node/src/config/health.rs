//! `[health]`: watchdog, task deadlines, boot-loop and burst rules,
//! contact timeout, storage floor and beacon. Must never start a watchdog.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Profile};

/// Which watchdog the supervisor pets (`health.watchdog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogKind {
    /// systemd's if `WATCHDOG_USEC` is set, else none.
    #[default]
    Auto,
    /// systemd's service watchdog (sd_notify).
    Systemd,
    /// `/dev/watchdog` directly.
    Device,
    /// None (development).
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(default)]
    pub(super) watchdog: WatchdogKind,
    #[serde(default = "default_wdt_device")]
    pub(super) watchdog_device: PathBuf,
    #[serde(default = "default_wdt_timeout")]
    pub(super) watchdog_timeout_s: u32,
    #[serde(default = "default_task_deadline")]
    pub(super) task_deadline_s: u32,
    #[serde(default = "default_boot_loop_starts")]
    pub(super) boot_loop_starts: u32,
    #[serde(default = "default_boot_loop_window")]
    pub(super) boot_loop_window_s: u32,
    #[serde(default = "default_auth_burst")]
    pub(super) auth_failure_burst: u32,
    #[serde(default = "default_burst_window")]
    pub(super) burst_window_s: u32,
    #[serde(default = "default_refusal_burst")]
    pub(super) refusal_burst: u32,
    #[serde(default = "default_forged_safe_lapse")]
    pub(super) forged_safe_lapse_s: u32,
    #[serde(default)]
    pub(super) contact_timeout_s: u64,
    #[serde(default = "default_safe_free")]
    pub(super) safe_free_bytes: u64,
    #[serde(default = "default_beacon")]
    pub(super) beacon_interval_s: u32,
    #[serde(default)]
    pub(super) test_hooks: bool,
}

impl Default for RawHealth {
    fn default() -> Self {
        Self {
            watchdog: WatchdogKind::default(),
            watchdog_device: default_wdt_device(),
            watchdog_timeout_s: default_wdt_timeout(),
            task_deadline_s: default_task_deadline(),
            boot_loop_starts: default_boot_loop_starts(),
            boot_loop_window_s: default_boot_loop_window(),
            auth_failure_burst: default_auth_burst(),
            burst_window_s: default_burst_window(),
            refusal_burst: default_refusal_burst(),
            forged_safe_lapse_s: default_forged_safe_lapse(),
            contact_timeout_s: 0,
            safe_free_bytes: default_safe_free(),
            beacon_interval_s: default_beacon(),
            test_hooks: false,
        }
    }
}

fn default_wdt_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}
fn default_wdt_timeout() -> u32 {
    15
}
fn default_task_deadline() -> u32 {
    5
}
fn default_boot_loop_starts() -> u32 {
    5
}
fn default_boot_loop_window() -> u32 {
    600
}
fn default_auth_burst() -> u32 {
    100
}
fn default_burst_window() -> u32 {
    300
}
fn default_refusal_burst() -> u32 {
    20
}
fn default_forged_safe_lapse() -> u32 {
    900
}
fn default_safe_free() -> u64 {
    4 * 1024 * 1024
}
fn default_beacon() -> u32 {
    10
}

/// Health settings (see `docs/health.md`).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Watchdog backend.
    pub watchdog: WatchdogKind,
    /// Device for [`WatchdogKind::Device`].
    pub watchdog_device: PathBuf,
    /// Timeout set on the device.
    pub watchdog_timeout: Duration,
    /// A task silent for longer is stuck.
    pub task_deadline: Duration,
    /// Starts allowed within `boot_loop_window` before safe mode.
    pub boot_loop_starts: u32,
    /// Window of the boot-loop rule.
    pub boot_loop_window: Duration,
    /// Authentication failures within `burst_window` that mean probing
    /// (0: off).
    pub auth_failure_burst: u32,
    /// Window of the burst rules.
    pub burst_window: Duration,
    /// Policy refusals of sign requests within `burst_window` that mean
    /// probing (0: off).
    pub refusal_burst: u32,
    /// A forged-packet safe mode (0x0807) lapses after this long without
    /// a new authentication failure (`docs/health.md`).
    pub forged_safe_lapse: Duration,
    /// Loss of contact after this long without an authenticated command
    /// (zero: off).
    pub contact_timeout: Duration,
    /// Safe mode below this many free bytes.
    pub safe_free_bytes: u64,
    /// Beacon interval in safe mode.
    pub beacon_interval: Duration,
    /// Test hooks (`health.test-hang`), development profile only.
    pub test_hooks: bool,
}

pub(super) fn validate_health(
    raw: &RawHealth,
    profile: Profile,
) -> Result<HealthConfig, ConfigError> {
    if raw.test_hooks && profile == Profile::Flight {
        return Err(ConfigError::invalid(
            "health.test_hooks",
            "refused in the flight profile",
        ));
    }
    if raw.watchdog == WatchdogKind::None && profile == Profile::Flight {
        return Err(ConfigError::invalid(
            "health.watchdog",
            "the flight profile needs a watchdog",
        ));
    }
    if raw.task_deadline_s == 0 || raw.watchdog_timeout_s == 0 {
        return Err(ConfigError::invalid(
            "health",
            "task_deadline_s and watchdog_timeout_s must be positive",
        ));
    }
    if raw.boot_loop_starts == 0 {
        return Err(ConfigError::invalid(
            "health.boot_loop_starts",
            "must be at least 1",
        ));
    }
    if raw.forged_safe_lapse_s == 0 {
        return Err(ConfigError::invalid(
            "health.forged_safe_lapse_s",
            "must be positive: forged packets alone must not need the quorum",
        ));
    }
    if raw.beacon_interval_s == 0 {
        return Err(ConfigError::invalid(
            "health.beacon_interval_s",
            "must be positive",
        ));
    }
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    Ok(HealthConfig {
        watchdog: raw.watchdog,
        watchdog_device: raw.watchdog_device.clone(),
        watchdog_timeout: secs(raw.watchdog_timeout_s),
        task_deadline: secs(raw.task_deadline_s),
        boot_loop_starts: raw.boot_loop_starts,
        boot_loop_window: secs(raw.boot_loop_window_s),
        auth_failure_burst: raw.auth_failure_burst,
        burst_window: secs(raw.burst_window_s),
        refusal_burst: raw.refusal_burst,
        forged_safe_lapse: secs(raw.forged_safe_lapse_s),
        contact_timeout: Duration::from_secs(raw.contact_timeout_s),
        safe_free_bytes: raw.safe_free_bytes,
        beacon_interval: secs(raw.beacon_interval_s),
        test_hooks: raw.test_hooks,
    })
}
