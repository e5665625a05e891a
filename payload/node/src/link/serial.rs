//! Serial transport: opens any tty (a pty in tests, /dev/ttyAMA0 or
//! /dev/ttyUSB0 in flight) with tokio-serial, runs the frame decoder on what
//! arrives and writes frames handed to it. When the device fails (a USB
//! bridge unplugged, a pty whose peer went away) it reports the loss and
//! reopens with backoff; the daemon keeps running.
//!
//! This module owns the device and the byte stream. It must never look
//! inside frames: payloads go to the node task as they are.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spacenode_wire::frame::{Decoded, DecoderStats, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;

use crate::health::supervisor::Heartbeat;

/// What the transport tells the node task.
#[derive(Debug)]
pub enum LinkEvent {
    /// The device is open (first time: the daemon is ready).
    Up,
    /// The device failed; it is being reopened.
    Down(String),
    /// A frame with a good CRC.
    Frame(Vec<u8>),
}

/// Decoder counters shared with housekeeping.
pub type SharedStats = Arc<Mutex<DecoderStats>>;

/// The device's (filesystem, inode), following symlinks; `None` if absent.
fn device_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Runs the transport until the node task goes away. It beats `heartbeat`
/// on every turn and at least once a second while idle; `hang` is the test
/// hook that blocks it for good.
pub async fn run(
    device: PathBuf,
    baud: u32,
    events: mpsc::Sender<LinkEvent>,
    mut outbound: mpsc::Receiver<Vec<u8>>,
    stats: SharedStats,
    heartbeat: Heartbeat,
    hang: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut idle = tokio::time::interval(Duration::from_secs(1));
    let mut decoder = FrameDecoder::new();
    let mut backoff = Duration::from_millis(100);
    let mut buf = vec![0u8; 4096];
    loop {
        let port = tokio_serial::new(device.to_string_lossy(), baud)
            .timeout(Duration::from_millis(100))
            .open_native_async();
        let mut port = match port {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(device = %device.display(), error = %e, "cannot open link device, retrying");
                if events.send(LinkEvent::Down(e.to_string())).await.is_err() {
                    return;
                }
                heartbeat.beat();
                tokio::time::sleep(backoff).await;
                // Capped below the supervisor's deadline: retrying is
                // progress.
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        tracing::info!(device = %device.display(), baud, "link device open");
        let identity = device_identity(&device);
        if events.send(LinkEvent::Up).await.is_err() {
            return;
        }
        backoff = Duration::from_millis(100);
        decoder.reset();
        let failure = loop {
            heartbeat.beat();
            // The hook waits for the queue to drain, so the completion
            // report of the request that set it still goes out.
            if hang.load(Ordering::Relaxed) && outbound.is_empty() {
                tracing::warn!("test hook: link task hangs");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            tokio::select! {
                _ = idle.tick() => {
                    // An unplugged USB bridge's node vanishes (and a replug
                    // may bring a new one at the same path) while the old
                    // descriptor can stay quiet: check the path once a
                    // second.
                    if device_identity(&device) != identity {
                        break "device node vanished or was replaced".to_string();
                    }
                }
                read = port.read(&mut buf) => {
                    let n = match read {
                        Ok(0) => break "end of stream".to_string(),
                        Ok(n) => n,
                        Err(e) => break e.to_string(),
                    };
                    let mut frames = Vec::new();
                    decoder.push(buf.get(..n).unwrap_or_default(), |d| {
                        if let Decoded::Frame(f) = d {
                            frames.push(f);
                        }
                    });
                    if let Ok(mut s) = stats.lock() {
                        *s = decoder.stats();
                    }
                    for f in frames {
                        if events.send(LinkEvent::Frame(f)).await.is_err() {
                            return;
                        }
                    }
                }
                frame = outbound.recv() => {
                    let Some(frame) = frame else { return };
                    if let Err(e) = port.write_all(&frame).await {
                        break e.to_string();
                    }
                }
            }
        };
        tracing::warn!(device = %device.display(), error = %failure, "link device failed, reopening");
        if events.send(LinkEvent::Down(failure)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}
