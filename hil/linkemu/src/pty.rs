//! Raw pseudo-terminal pairs: the stand-in for a UART in tests, the demo and
//! the link emulator. The slave side is put in raw mode (no echo, no line
//! discipline) and kept open by its creator, so the master never sees a
//! hang-up when the program on the slave side restarts (as after kill -9).
//!
//! This module must never interpret the bytes.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::termios::{self, SetArg};

/// One pty: the master for the emulator, the slave path for a program.
#[derive(Debug)]
pub struct Pty {
    /// The master side.
    pub master: File,
    /// Held open so the master never reads EIO between slave users.
    _slave_keepalive: OwnedFd,
    /// Path of the slave device, e.g. /dev/pts/7.
    pub slave_path: PathBuf,
}

/// Errors creating a pty.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// A system call failed.
    #[error("pty {step}: {source}")]
    Sys {
        /// Which step.
        step: &'static str,
        /// The error.
        source: nix::Error,
    },
    /// Creating the symlink failed.
    #[error("cannot link {link}: {source}")]
    Link {
        /// The link path.
        link: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl Pty {
    /// Opens a new pty pair in raw mode.
    ///
    /// # Errors
    /// [`PtyError`] if the system refuses.
    pub fn open() -> Result<Self, PtyError> {
        let pair = nix::pty::openpty(None, None).map_err(|source| PtyError::Sys {
            step: "openpty",
            source,
        })?;
        let mut t = termios::tcgetattr(&pair.slave).map_err(|source| PtyError::Sys {
            step: "tcgetattr",
            source,
        })?;
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pair.slave, SetArg::TCSANOW, &t).map_err(|source| PtyError::Sys {
            step: "tcsetattr",
            source,
        })?;
        let slave_path = nix::unistd::ttyname(&pair.slave).map_err(|source| PtyError::Sys {
            step: "ttyname",
            source,
        })?;
        Ok(Self {
            master: File::from(pair.master),
            _slave_keepalive: pair.slave,
            slave_path,
        })
    }

    /// Makes `link` a symlink to the slave path (replacing an old link), so
    /// configs can name a stable path.
    ///
    /// # Errors
    /// [`PtyError::Link`].
    pub fn link_to(&self, link: &Path) -> Result<(), PtyError> {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&self.slave_path, link).map_err(|source| PtyError::Link {
            link: link.to_path_buf(),
            source,
        })
    }
}
