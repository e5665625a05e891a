//! The board seam of the HIL runner: what the runner may do to a board
//! besides talking over its link. Two boards implement it: the virtual board
//! ([`crate::vm::VirtualBoard`], QEMU) and a real one on a serial port
//! ([`SerialBoard`], e.g. a CM4 on `/dev/ttyUSB0`), with optional console
//! capture and power control by operator-supplied commands (a USB relay, a
//! lab PDU).
//!
//! This module must never interpret link traffic; scenarios do that through
//! the ground client.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::disk::{DiskError, DiskReport};
use super::scenario::Capability;

/// Errors of board control.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// A program could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What was started.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A program the board needs exited or never became ready.
    #[error("{what}: {detail}")]
    Failed {
        /// What failed.
        what: String,
        /// Why, with the tail of its log.
        detail: String,
    },
    /// The board cannot do this.
    #[error("the board cannot {what}")]
    Unsupported {
        /// The operation.
        what: &'static str,
    },
    /// The operation needs the board in the other power state.
    #[error("the board must be {state} to {what}")]
    PowerState {
        /// Required state.
        state: &'static str,
        /// The operation.
        what: &'static str,
    },
    /// The disk inspection failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Local file handling failed.
    #[error("board i/o on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A board under test.
pub trait Board {
    /// A short description for reports.
    fn describe(&self) -> String;

    /// What the board can do.
    fn capabilities(&self) -> BTreeSet<Capability>;

    /// Powers the board on and records the instant. A board without power
    /// control is assumed on; the instant is then the call's.
    ///
    /// # Errors
    /// [`BoardError`] if the board cannot be started.
    fn power_on(&mut self) -> Result<(), BoardError>;

    /// Cuts the power at once: nothing on the board gets to run shutdown
    /// code.
    ///
    /// # Errors
    /// [`BoardError::Unsupported`] without power control.
    fn power_cut(&mut self) -> Result<(), BoardError>;

    /// Whether the board is powered.
    fn is_on(&mut self) -> bool;

    /// When the current power cycle started.
    fn powered_on_at(&self) -> Option<Instant>;

    /// The serial port of the link in the current power cycle.
    ///
    /// # Errors
    /// [`BoardError`] if the board is off.
    fn link_port(&self) -> Result<PathBuf, BoardError>;

    /// The link's baud rate.
    fn baud(&self) -> u32;

    /// Console text of the current power cycle (empty if there is none
    /// yet).
    ///
    /// # Errors
    /// [`BoardError::Unsupported`] without a console.
    fn console(&self) -> Result<String, BoardError>;

    /// Checks the disk while the board is off.
    ///
    /// # Errors
    /// [`BoardError`] if unsupported, the board is on, or the check fails.
    fn inspect_disk(&mut self, sqlite: &[String]) -> Result<DiskReport, BoardError>;

    /// Logs worth keeping with a report.
    fn artifacts(&self) -> Vec<PathBuf>;
}

/// A real board on a serial port.
#[derive(Debug)]
pub struct SerialBoard {
    port: PathBuf,
    baud: u32,
    console_log: Option<PathBuf>,
    power_cut_cmd: Option<String>,
    power_on_cmd: Option<String>,
    on: bool,
    powered_on_at: Option<Instant>,
    console_offset: u64,
    test_hooks: bool,
    device_watchdog: bool,
}

impl SerialBoard {
    /// A board on `port`. `console_log` is a file another program fills
    /// with the board's console (e.g. `socat /dev/ttyUSB1,b115200,raw -
    /// >> console.log`); the power commands run through `sh -c`.
    #[must_use]
    pub fn new(
        port: PathBuf,
        baud: u32,
        console_log: Option<PathBuf>,
        power_cut_cmd: Option<String>,
        power_on_cmd: Option<String>,
    ) -> Self {
        Self {
            port,
            baud,
            console_log,
            power_cut_cmd,
            power_on_cmd,
            on: true,
            powered_on_at: None,
            console_offset: 0,
            test_hooks: false,
            device_watchdog: false,
        }
    }

    /// Declares that the node's config enables the health test hooks.
    #[must_use]
    pub fn with_test_hooks(mut self, on: bool) -> Self {
        self.test_hooks = on;
        self
    }

    /// Declares that the node's daemon holds the hardware watchdog itself
    /// (`health.watchdog = "device"`, systemd's `RuntimeWatchdogSec=0`).
    #[must_use]
    pub fn with_device_watchdog(mut self, on: bool) -> Self {
        self.device_watchdog = on;
        self
    }

    fn shell(what: &str, cmd: &str) -> Result<(), BoardError> {
        let status = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .map_err(|source| BoardError::Spawn {
                what: what.to_string(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(BoardError::Failed {
                what: what.to_string(),
                detail: format!("`{cmd}` exited with {status}"),
            })
        }
    }

    fn console_len(&self) -> u64 {
        self.console_log
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }
}

impl Board for SerialBoard {
    fn describe(&self) -> String {
        format!("serial {} at {} Bd", self.port.display(), self.baud)
    }

    fn capabilities(&self) -> BTreeSet<Capability> {
        let mut caps = BTreeSet::new();
        if self.console_log.is_some() {
            caps.insert(Capability::Console);
        }
        if self.power_cut_cmd.is_some() && self.power_on_cmd.is_some() {
            caps.insert(Capability::Power);
        }
        if self.test_hooks {
            caps.insert(Capability::TestHooks);
        }
        if self.device_watchdog {
            caps.insert(Capability::DeviceWatchdog);
        }
        caps
    }

    fn power_on(&mut self) -> Result<(), BoardError> {
        // The console of this power cycle starts at the file's current end.
        self.console_offset = self.console_len();
        if let Some(cmd) = self.power_on_cmd.clone() {
            Self::shell("power-on command", &cmd)?;
        }
        self.on = true;
        self.powered_on_at = Some(Instant::now());
        Ok(())
    }

    fn power_cut(&mut self) -> Result<(), BoardError> {
        let cmd = self
            .power_cut_cmd
            .clone()
            .ok_or(BoardError::Unsupported { what: "cut power" })?;
        Self::shell("power-cut command", &cmd)?;
        self.on = false;
        Ok(())
    }

    fn is_on(&mut self) -> bool {
        self.on
    }

    fn powered_on_at(&self) -> Option<Instant> {
        self.powered_on_at
    }

    fn link_port(&self) -> Result<PathBuf, BoardError> {
        Ok(self.port.clone())
    }

    fn baud(&self) -> u32 {
        self.baud
    }

    fn console(&self) -> Result<String, BoardError> {
        let path = self.console_log.as_deref().ok_or(BoardError::Unsupported {
            what: "show its console",
        })?;
        read_from(path, self.console_offset)
    }

    fn inspect_disk(&mut self, _sqlite: &[String]) -> Result<DiskReport, BoardError> {
        Err(BoardError::Unsupported {
            what: "inspect its disk offline",
        })
    }

    fn artifacts(&self) -> Vec<PathBuf> {
        self.console_log.iter().cloned().collect()
    }
}

/// Text of `path` from byte `offset` on (lossy UTF-8); empty if the file
/// does not exist yet.
///
/// # Errors
/// [`BoardError::Io`] if it exists but cannot be read.
pub fn read_from(path: &Path, offset: u64) -> Result<String, BoardError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            Ok(String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(BoardError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_board_has_only_what_it_was_given() {
        let bare = SerialBoard::new("/dev/ttyUSB0".into(), 115_200, None, None, None);
        assert!(bare.capabilities().is_empty());
        let full = SerialBoard::new(
            "/dev/ttyUSB0".into(),
            115_200,
            Some("/tmp/console.log".into()),
            Some("true".into()),
            Some("true".into()),
        );
        assert_eq!(
            full.capabilities().into_iter().collect::<Vec<_>>(),
            vec![Capability::Console, Capability::Power]
        );
    }

    #[test]
    fn power_commands_run_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("cut");
        let mut b = SerialBoard::new(
            "/dev/null".into(),
            115_200,
            None,
            Some(format!("touch {}", mark.display())),
            Some("exit 3".into()),
        );
        b.power_cut().unwrap();
        assert!(mark.exists() && !b.is_on());
        let e = b.power_on().unwrap_err().to_string();
        assert!(e.contains("exit 3"), "{e}");
    }

    #[test]
    fn console_is_read_from_the_power_cycle_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, "old boot\n").unwrap();
        let mut b = SerialBoard::new("/dev/null".into(), 115_200, Some(log.clone()), None, None);
        b.power_on().unwrap();
        std::fs::write(&log, "old boot\nnew boot\n").unwrap();
        assert_eq!(b.console().unwrap(), "new boot\n");
    }
}
