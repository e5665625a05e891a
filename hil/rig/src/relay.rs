//! A byte relay between two serial ports: puts the link emulator between
//! the ground and a board whose UART is not a pty the emulator made (the
//! virtual board's QEMU pty, a USB bridge to a CM4). Bytes are copied as
//! they come, both ways, until the relay is dropped or a port fails (the
//! board lost power).
//!
//! This module must never interpret, delay or drop bytes: the emulator does
//! that.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A port could not be opened.
    #[error("relay cannot open {port}: {message}")]
    Open {
        /// The port.
        port: String,
        /// Why.
        message: String,
    },
}

/// A running relay; stops on drop.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn open(path: &Path, baud: u32) -> Result<serialport::TTYPort, RelayError> {
    serialport::new(path.to_string_lossy(), baud)
        .timeout(Duration::from_millis(20))
        .open_native()
        .map_err(|e| RelayError::Open {
            port: path.display().to_string(),
            message: e.to_string(),
        })
}

fn pump(mut from: serialport::TTYPort, mut to: serialport::TTYPort, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => {
                if to.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
}

impl Relay {
    /// Relays between `a` and `b` at `baud` (the rate only matters for real
    /// UARTs).
    ///
    /// # Errors
    /// [`RelayError`] if a port cannot be opened.
    pub fn start(a: &Path, b: &Path, baud: u32) -> Result<Self, RelayError> {
        let a_rx = open(a, baud)?;
        let b_rx = open(b, baud)?;
        let clone = |p: &serialport::TTYPort, path: &Path| {
            p.try_clone_native().map_err(|e| RelayError::Open {
                port: path.display().to_string(),
                message: e.to_string(),
            })
        };
        let a_tx = clone(&a_rx, a)?;
        let b_tx = clone(&b_rx, b)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s1, s2) = (stop.clone(), stop.clone());
        let threads = vec![
            std::thread::spawn(move || pump(a_rx, b_tx, &s1)),
            std::thread::spawn(move || pump(b_rx, a_tx, &s2)),
        ];
        Ok(Self { stop, threads })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacenode_linkemu::pty::Pty;

    #[test]
    fn bytes_cross_both_ways() {
        let a = Pty::open().unwrap();
        let b = Pty::open().unwrap();
        let _relay = Relay::start(&a.slave_path, &b.slave_path, 115_200).unwrap();
        let (mut am, mut bm) = (&a.master, &b.master);
        am.write_all(b"\x00uplink\x00").unwrap();
        bm.write_all(b"\x00downlink\x00").unwrap();
        let read_until = |mut f: &std::fs::File, want: &[u8]| {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < want.len() {
                let n = f.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got
        };
        assert_eq!(read_until(&b.master, b"\x00uplink\x00"), b"\x00uplink\x00");
        assert_eq!(
            read_until(&a.master, b"\x00downlink\x00"),
            b"\x00downlink\x00"
        );
    }
}
