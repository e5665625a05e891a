//! Ballast: space reserved on the state filesystem so that a full disk
//! never leaves the node unable to write what keeps it safe.
//!
//! A file of `health.safe_free_bytes` real (not sparse) bytes sits in the
//! state directory while there is room. When free space falls below the
//! safe threshold, or the daemon starts on a full filesystem, the ballast
//! is deleted first: the SQLite writes that follow (the start count, the
//! link's sequence reservations, the safe-mode entry for low disk) then
//! have room, instead of failing and crash-looping the daemon. It is
//! rebuilt once free space is back above twice the threshold.
//!
//! Owns only that one file. Must never: delete anything else, or create
//! the ballast when that itself would push free space below the threshold.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The ballast's file name in the state directory.
pub const FILE: &str = "ballast";

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Free bytes for an unprivileged writer on the filesystem of `dir`.
#[must_use]
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(
        clippy::useless_conversion,
        reason = "statvfs block counts are u32 on 32-bit targets, u64 on 64-bit ones"
    )]
    Some(u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

/// Whether the ballast is in place.
#[must_use]
pub fn present(state_dir: &Path) -> bool {
    path(state_dir).exists()
}

/// Deletes the ballast; returns the bytes it held (0 if there was none).
pub fn release(state_dir: &Path) -> u64 {
    let p = path(state_dir);
    let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    match std::fs::remove_file(&p) {
        Ok(()) => size,
        Err(_) => 0,
    }
}

/// Creates the ballast of `bytes` if it is missing and free space stays at
/// least `bytes` above it. Returns whether a ballast was written now.
///
/// # Errors
/// An I/O error writing it (the partial file is removed).
pub fn ensure(state_dir: &Path, bytes: u64) -> std::io::Result<bool> {
    if bytes == 0 || present(state_dir) {
        return Ok(false);
    }
    if free_bytes(state_dir).is_none_or(|free| free < bytes.saturating_mul(2)) {
        return Ok(false);
    }
    let p = path(state_dir);
    let tmp = state_dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        // Zeros written, not set_len: a sparse file would reserve nothing.
        let chunk = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            f.write_all(chunk.get(..n).unwrap_or(&chunk))?;
            left -= n as u64;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &p)
    };
    match write() {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_released_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure(dir.path(), 100_000).unwrap());
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE)).unwrap().len(),
            100_000
        );
        assert!(!ensure(dir.path(), 100_000).unwrap(), "already there");
        assert_eq!(release(dir.path()), 100_000);
        assert_eq!(release(dir.path()), 0);
        assert!(!ensure(dir.path(), 0).unwrap(), "disabled");
        assert!(!present(dir.path()));
    }

    #[test]
    fn never_made_without_room() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(!ensure(dir.path(), free / 2 + 1).unwrap());
        assert!(!present(dir.path()));
    }
}
