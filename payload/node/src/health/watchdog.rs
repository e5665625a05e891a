//! Watchdog backends: systemd (`WATCHDOG=1` over `NOTIFY_SOCKET` at half of
//! `WATCHDOG_USEC`), the kernel's `/dev/watchdog` directly (set timeout,
//! keepalive, magic close on a clean exit), or none (development).
//!
//! This module owns talking to the watchdog; deciding when to pet is the
//! supervisor's. The ioctls live in [`super::wdt_ioctl`], the crate's one
//! module with `unsafe`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Something that reboots or restarts the node unless petted.
pub trait Watchdog: Send {
    /// Resets the countdown.
    ///
    /// # Errors
    /// I/O errors talking to the watchdog.
    fn pet(&mut self) -> std::io::Result<()>;
    /// How often to pet.
    fn period(&self) -> Duration;
    /// Disarms on a clean shutdown (where the backend supports it).
    fn close(&mut self);
    /// Short name for logs and housekeeping.
    fn name(&self) -> &'static str;
}

/// No watchdog (development).
#[derive(Debug)]
pub struct NoWatchdog;

impl Watchdog for NoWatchdog {
    fn pet(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn close(&mut self) {}
    fn name(&self) -> &'static str {
        "none"
    }
}

/// systemd's service watchdog (`WatchdogSec=` in the unit).
#[derive(Debug)]
pub struct SystemdWatchdog {
    timeout: Duration,
}

impl SystemdWatchdog {
    /// The watchdog systemd asked for, if any (`WATCHDOG_USEC`).
    #[must_use]
    pub fn from_env() -> Option<Self> {
        sd_notify::watchdog_enabled().map(|timeout| Self { timeout })
    }
}

impl Watchdog for SystemdWatchdog {
    fn pet(&mut self) -> std::io::Result<()> {
        sd_notify::notify(&[sd_notify::NotifyState::Watchdog])
    }
    fn period(&self) -> Duration {
        self.timeout / 2
    }
    fn close(&mut self) {}
    fn name(&self) -> &'static str {
        "systemd"
    }
}

/// A kernel watchdog device such as `/dev/watchdog` (bcm2835-wdt on the CM4,
/// i6300esb on the virtual board, softdog anywhere).
#[derive(Debug)]
pub struct DeviceWatchdog {
    file: File,
    path: PathBuf,
    timeout: Duration,
}

impl DeviceWatchdog {
    /// Opens the device (arming it) and sets its timeout.
    ///
    /// # Errors
    /// I/O errors; the device refusing the timeout is logged, not fatal (the
    /// driver's default then applies).
    pub fn open(path: &Path, timeout: Duration) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX).max(1);
        let timeout = match super::wdt_ioctl::set_timeout(&file, secs) {
            Ok(granted) => Duration::from_secs(u64::try_from(granted).unwrap_or(1).max(1)),
            Err(e) => {
                tracing::warn!(device = %path.display(), error = %e, "watchdog refused the timeout; using its default");
                super::wdt_ioctl::get_timeout(&file)
                    .ok()
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(timeout, Duration::from_secs)
            }
        };
        Ok(Self {
            file,
            path: path.to_path_buf(),
            timeout,
        })
    }
}

impl Watchdog for DeviceWatchdog {
    fn pet(&mut self) -> std::io::Result<()> {
        super::wdt_ioctl::keepalive(&self.file).map_err(std::io::Error::from)
    }
    fn period(&self) -> Duration {
        self.timeout / 3
    }
    fn close(&mut self) {
        // Magic close: the driver disarms when 'V' is written before close
        // (unless built with nowayout, as flight kernels should be).
        if let Err(e) = self.file.write_all(b"V") {
            tracing::warn!(device = %self.path.display(), error = %e, "watchdog magic close failed");
        }
    }
    fn name(&self) -> &'static str {
        "device"
    }
}
