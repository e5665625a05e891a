//! The radio link emulator: sits between two ptys (ground side A, node side
//! B) and does to the byte stream what a serial radio link does: paces bytes
//! at the UART rate (10 bit times per byte, 8N1), adds one-way latency,
//! corrupts bytes, loses whole frames, and cuts the link outside pass
//! windows (AOS/LOS on a schedule). Every link test and benchmark runs
//! through it.
//!
//! [`ChannelModel`] is the pure per-direction model (bytes and arrival times
//! in, delivery decisions out); [`Emulator`] runs two of them on threads
//! over real ptys. Frames are recognised by their zero delimiters so loss
//! and corruption can be counted per frame.
//!
//! This module must never interpret frame contents beyond delimiters.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::pty::{Pty, PtyError};

/// How bytes are corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// One bit flipped in a frame body byte; never creates or destroys a
    /// delimiter, so every corrupted frame is exactly one receive error and
    /// counters can be matched exactly.
    Body,
    /// Any byte, delimiters included, XORed with a random non-zero mask:
    /// frames may merge or split, as on a real link.
    Any,
}

/// Periodic pass windows: `aos` of visibility, then `los` of silence,
/// repeating from the emulator's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassSchedule {
    /// Visible time per cycle.
    pub aos: Duration,
    /// Silent time per cycle.
    pub los: Duration,
}

impl PassSchedule {
    /// Whether the link is up at `t` after start.
    #[must_use]
    pub fn visible(&self, t: Duration) -> bool {
        let cycle = self.aos.saturating_add(self.los).as_nanos();
        if cycle == 0 {
            return true;
        }
        t.as_nanos() % cycle < self.aos.as_nanos()
    }
}

/// Settings of the emulated link (both directions alike).
#[derive(Debug, Clone)]
pub struct LinkParams {
    /// UART rate in baud (8N1: 10 bit times per byte).
    pub baud: u32,
    /// One-way latency added to every byte.
    pub latency: Duration,
    /// Probability that a byte is corrupted.
    pub byte_error_rate: f64,
    /// Probability that a whole frame is lost.
    pub frame_loss_rate: f64,
    /// How bytes are corrupted.
    pub corruption: Corruption,
    /// Pass windows, or always visible.
    pub passes: Option<PassSchedule>,
    /// Random seed (runs are repeatable for a given seed and timing).
    pub seed: u64,
}

impl LinkParams {
    /// A clean link at `baud`.
    #[must_use]
    pub fn clean(baud: u32) -> Self {
        Self {
            baud,
            latency: Duration::ZERO,
            byte_error_rate: 0.0,
            frame_loss_rate: 0.0,
            corruption: Corruption::Body,
            passes: None,
            seed: 1,
        }
    }

    /// Time one byte occupies the wire.
    #[must_use]
    pub fn byte_time(&self) -> Duration {
        Duration::from_nanos(10_000_000_000 / u64::from(self.baud.max(1)))
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectionStats {
    /// Bytes read from the sender.
    pub bytes_in: u64,
    /// Bytes delivered to the receiver.
    pub bytes_out: u64,
    /// Frames seen from the sender (completed).
    pub frames_in: u64,
    /// Frames delivered unmodified.
    pub frames_intact: u64,
    /// Frames delivered with at least one corrupted byte.
    pub frames_corrupted: u64,
    /// Frames dropped by the loss model.
    pub frames_lost: u64,
    /// Frames cut (wholly or partly) by loss of signal.
    pub frames_los: u64,
    /// Bytes corrupted.
    pub bytes_corrupted: u64,
    /// Bytes dropped because the receiver did not read them in time.
    pub bytes_overflow: u64,
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Ground (A) to node (B).
    pub uplink: DirectionStats,
    /// Node (B) to ground (A).
    pub downlink: DirectionStats,
}

#[derive(Debug, Clone, Copy, Default)]
struct FrameFate {
    lost: bool,
    los: bool,
    corrupted: bool,
}

/// The pure model of one direction.
#[derive(Debug)]
pub struct ChannelModel {
    params: LinkParams,
    byte_time: Duration,
    rng: StdRng,
    line_free_at: Duration,
    in_frame: bool,
    fate: FrameFate,
    stats: DirectionStats,
}

impl ChannelModel {
    /// A model with its own random stream.
    #[must_use]
    pub fn new(params: LinkParams, stream: u64) -> Self {
        let rng = StdRng::seed_from_u64(params.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self {
            byte_time: params.byte_time(),
            params,
            rng,
            line_free_at: Duration::ZERO,
            in_frame: false,
            fate: FrameFate::default(),
            stats: DirectionStats::default(),
        }
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> DirectionStats {
        self.stats
    }

    /// Changes the link's behaviour from now on (a new pass, a cleaner
    /// channel). The pacing state and counters carry over.
    pub fn set_params(&mut self, params: LinkParams) {
        self.byte_time = params.byte_time();
        self.params = params;
    }

    /// A byte sent at `arrival` (time since start): what to deliver and
    /// when, or `None` if it never arrives.
    pub fn on_byte(&mut self, byte: u8, arrival: Duration) -> Option<(u8, Duration)> {
        self.stats.bytes_in += 1;
        let start = arrival.max(self.line_free_at);
        let end = start + self.byte_time;
        self.line_free_at = end;
        let deliver_at = end + self.params.latency;
        let visible = self.params.passes.is_none_or(|p| p.visible(start));
        if byte == 0 {
            if self.in_frame {
                self.finish_frame();
            }
            if !visible {
                return None;
            }
            let out = if self.params.corruption == Corruption::Any && self.hit() {
                self.stats.bytes_corrupted += 1;
                self.rng.random_range(1..=255u8)
            } else {
                0
            };
            return Some((out, deliver_at));
        }
        if !self.in_frame {
            self.in_frame = true;
            self.fate = FrameFate {
                lost: self.params.frame_loss_rate > 0.0
                    && self.rng.random_bool(self.params.frame_loss_rate.min(1.0)),
                ..FrameFate::default()
            };
        }
        if self.fate.lost {
            return None;
        }
        if !visible {
            self.fate.los = true;
            return None;
        }
        let mut out = byte;
        if self.hit() {
            self.fate.corrupted = true;
            self.stats.bytes_corrupted += 1;
            out = match self.params.corruption {
                Corruption::Body => flip_nonzero(byte, self.rng.random_range(0..8u32)),
                Corruption::Any => byte ^ self.rng.random_range(1..=255u8),
            };
        }
        Some((out, deliver_at))
    }

    fn hit(&mut self) -> bool {
        self.params.byte_error_rate > 0.0
            && self.rng.random_bool(self.params.byte_error_rate.min(1.0))
    }

    fn finish_frame(&mut self) {
        self.in_frame = false;
        let s = &mut self.stats;
        s.frames_in += 1;
        let fate = self.fate;
        if fate.lost {
            s.frames_lost += 1;
        } else if fate.los {
            s.frames_los += 1;
        } else if fate.corrupted {
            s.frames_corrupted += 1;
        } else {
            s.frames_intact += 1;
        }
    }

    fn delivered(&mut self, n: u64) {
        self.stats.bytes_out += n;
    }

    fn overflowed(&mut self, n: u64) {
        self.stats.bytes_overflow += n;
    }
}

/// Flips bit `bit` of a non-zero byte, or the next bit if that would make it
/// zero (a byte with one bit set).
fn flip_nonzero(byte: u8, bit: u32) -> u8 {
    let flipped = byte ^ (1 << (bit % 8));
    if flipped != 0 {
        flipped
    } else {
        byte ^ (1 << ((bit + 1) % 8))
    }
}

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A pty could not be made.
    #[error(transparent)]
    Pty(#[from] PtyError),
    /// A master could not be duplicated.
    #[error("pty master: {0}")]
    Io(#[from] std::io::Error),
}

struct Queue {
    bytes: Mutex<VecDeque<(Instant, u8)>>,
    ready: Condvar,
}

/// A running emulator.
pub struct Emulator {
    ground: Pty,
    node: Pty,
    models: [Arc<Mutex<ChannelModel>>; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl core::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Emulator")
            .field("ground", &self.ground.slave_path)
            .field("node", &self.node.slave_path)
            .finish_non_exhaustive()
    }
}

/// Receiver-side buffering before bytes are dropped as overflow.
const QUEUE_LIMIT: usize = 256 * 1024;

impl Emulator {
    /// Creates both ptys and starts pumping.
    ///
    /// # Errors
    /// [`EmulatorError`] if the ptys cannot be made.
    pub fn start(params: LinkParams) -> Result<Self, EmulatorError> {
        let ground = Pty::open()?;
        let node = Pty::open()?;
        // Non-blocking masters (the flag is shared by the pumps' clones):
        // reads are preceded by poll, writes take what fits.
        for pty in [&ground, &node] {
            set_nonblocking(&pty.master)?;
        }
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let up = Arc::new(Mutex::new(ChannelModel::new(params.clone(), 1)));
        let down = Arc::new(Mutex::new(ChannelModel::new(params, 2)));
        let mut threads = Vec::new();
        for (from, to, model) in [
            (
                ground.master.try_clone()?,
                node.master.try_clone()?,
                up.clone(),
            ),
            (
                node.master.try_clone()?,
                ground.master.try_clone()?,
                down.clone(),
            ),
        ] {
            let queue = Arc::new(Queue {
                bytes: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
            });
            let (q, m, s) = (queue.clone(), model.clone(), stop.clone());
            threads.push(std::thread::spawn(move || pump_in(from, &m, &q, &s, epoch)));
            let (m, s) = (model, stop.clone());
            threads.push(std::thread::spawn(move || pump_out(to, &m, &queue, &s)));
        }
        Ok(Self {
            ground,
            node,
            models: [up, down],
            stop,
            threads,
        })
    }

    /// The ground's end (side A).
    #[must_use]
    pub fn ground_path(&self) -> &PathBuf {
        &self.ground.slave_path
    }

    /// The node's end (side B).
    #[must_use]
    pub fn node_path(&self) -> &PathBuf {
        &self.node.slave_path
    }

    /// Symlinks stable names to both ends.
    ///
    /// # Errors
    /// [`PtyError`] if a link cannot be made.
    pub fn link_paths(
        &self,
        ground: Option<&std::path::Path>,
        node: Option<&std::path::Path>,
    ) -> Result<(), PtyError> {
        if let Some(g) = ground {
            self.ground.link_to(g)?;
        }
        if let Some(n) = node {
            self.node.link_to(n)?;
        }
        Ok(())
    }

    /// Changes both directions' behaviour from now on.
    pub fn set_params(&self, params: &LinkParams) {
        for m in &self.models {
            if let Ok(mut m) = m.lock() {
                m.set_params(params.clone());
            }
        }
    }

    /// Counters of both directions.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let read = |m: &Arc<Mutex<ChannelModel>>| m.lock().map(|m| m.stats()).unwrap_or_default();
        Stats {
            uplink: read(&self.models[0]),
            downlink: read(&self.models[1]),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn pump_in(
    mut from: std::fs::File,
    model: &Mutex<ChannelModel>,
    queue: &Queue,
    stop: &AtomicBool,
    epoch: Instant,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let ready = {
            let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0)
        };
        if ready == 0 {
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            // EIO: nobody has the slave open right now (we keep it open, so
            // this is transient); EAGAIN/EINTR: try again.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let arrival = epoch.elapsed();
        let mut out = Vec::with_capacity(n);
        if let Ok(mut m) = model.lock() {
            for &b in buf.get(..n).unwrap_or_default() {
                if let Some((byte, at)) = m.on_byte(b, arrival) {
                    out.push((epoch + at, byte));
                }
            }
        }
        if let Ok(mut q) = queue.bytes.lock() {
            if q.len() + out.len() > QUEUE_LIMIT {
                if let Ok(mut m) = model.lock() {
                    m.overflowed(out.len() as u64);
                }
                continue;
            }
            q.extend(out);
            queue.ready.notify_one();
        }
    }
}

fn set_nonblocking(file: &std::fs::File) -> Result<(), EmulatorError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(file, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(file, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Writes as much of `bytes` as the receiver's pty buffer takes now and
/// returns how much that was. A receiver that does not read lets the pty
/// fill; as on a real UART the excess is lost rather than stalling the
/// sender, and above all the pump thread never blocks (a blocked write
/// would also hang [`Emulator`]'s drop, which joins the pumps).
fn write_what_fits(to: &mut std::fs::File, bytes: &[u8]) -> usize {
    let mut written = 0;
    while written < bytes.len() {
        match to.write(bytes.get(written..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // WouldBlock (buffer full) or EIO (no reader): drop the rest.
            Err(_) => break,
        }
    }
    written
}

fn pump_out(mut to: std::fs::File, model: &Mutex<ChannelModel>, queue: &Queue, stop: &AtomicBool) {
    let mut due = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let wait = {
            let Ok(mut q) = queue.bytes.lock() else {
                return;
            };
            if q.is_empty() {
                let _ = queue.ready.wait_timeout(q, Duration::from_millis(100));
                continue;
            }
            let now = Instant::now();
            while let Some(&(at, b)) = q.front() {
                if at > now {
                    break;
                }
                due.push(b);
                q.pop_front();
            }
            q.front().map(|(at, _)| at.saturating_duration_since(now))
        };
        if !due.is_empty() {
            let written = write_what_fits(&mut to, &due);
            if let Ok(mut m) = model.lock() {
                m.delivered(written as u64);
                m.overflowed((due.len() - written) as u64);
            }
            due.clear();
        }
        if let Some(w) = wait {
            std::thread::sleep(w.min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend((0..len).map(|i| (i % 250 + 1) as u8));
        f.push(0);
        f
    }

    #[test]
    fn bytes_are_paced_at_the_uart_rate() {
        let mut m = ChannelModel::new(LinkParams::clean(115_200), 0);
        let bytes = frame(100);
        let mut last = Duration::ZERO;
        for &b in &bytes {
            let (out, at) = m.on_byte(b, Duration::ZERO).unwrap();
            assert_eq!(out, b);
            last = at;
        }
        let expected = Duration::from_nanos(bytes.len() as u64 * 10_000_000_000 / 115_200);
        assert!(
            last.abs_diff(expected) < Duration::from_micros(2),
            "{last:?} vs {expected:?}"
        );
        assert_eq!(m.stats().frames_intact, 1);
    }

    #[test]
    fn latency_is_added_once_per_byte() {
        let p = LinkParams {
            latency: Duration::from_millis(250),
            ..LinkParams::clean(9600)
        };
        let mut m = ChannelModel::new(p, 0);
        let (_, at) = m.on_byte(0, Duration::from_secs(1)).unwrap();
        assert_eq!(
            at,
            Duration::from_secs(1)
                + Duration::from_nanos(10_000_000_000 / 9600)
                + Duration::from_millis(250)
        );
    }

    #[test]
    fn body_corruption_is_counted_per_frame_and_keeps_delimiters() {
        let p = LinkParams {
            byte_error_rate: 0.05,
            seed: 7,
            ..LinkParams::clean(115_200)
        };
        let mut m = ChannelModel::new(p, 0);
        let mut delivered = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..500 {
            let f = frame(60);
            sent.extend_from_slice(&f);
            for &b in &f {
                delivered.push(m.on_byte(b, Duration::ZERO).unwrap().0);
            }
        }
        let s = m.stats();
        assert_eq!(s.frames_in, 500);
        assert_eq!(s.frames_intact + s.frames_corrupted, 500);
        assert!(s.frames_corrupted > 400, "{s:?}"); // 1 - 0.95^60 = 95 %
        let zeros = |v: &[u8]| v.iter().filter(|b| **b == 0).count();
        assert_eq!(zeros(&delivered), zeros(&sent));
        let differing = sent.iter().zip(&delivered).filter(|(a, b)| a != b).count() as u64;
        assert_eq!(differing, s.bytes_corrupted);
    }

    #[test]
    fn lost_frames_vanish_whole() {
        let p = LinkParams {
            frame_loss_rate: 0.5,
            seed: 3,
            ..LinkParams::clean(115_200)
        };
        let mut m = ChannelModel::new(p, 0);
        let mut delivered_body = 0;
        for _ in 0..200 {
            for b in frame(10) {
                if let Some((out, _)) = m.on_byte(b, Duration::ZERO)
                    && out != 0
                {
                    delivered_body += 1;
                }
            }
        }
        let s = m.stats();
        assert_eq!(s.frames_lost + s.frames_intact, 200);
        assert_eq!(delivered_body, s.frames_intact * 10);
        assert!(s.frames_lost > 60 && s.frames_lost < 140, "{s:?}");
    }

    #[test]
    fn nothing_crosses_during_los() {
        let passes = PassSchedule {
            aos: Duration::from_secs(10),
            los: Duration::from_secs(5),
        };
        assert!(passes.visible(Duration::from_secs(9)));
        assert!(!passes.visible(Duration::from_secs(12)));
        assert!(passes.visible(Duration::from_secs(16)));
        let p = LinkParams {
            passes: Some(passes),
            ..LinkParams::clean(115_200)
        };
        let mut m = ChannelModel::new(p, 0);
        for b in frame(20) {
            assert!(m.on_byte(b, Duration::from_secs(11)).is_none());
        }
        for b in frame(20) {
            assert!(m.on_byte(b, Duration::from_secs(20)).is_some());
        }
        assert_eq!(m.stats().frames_los, 1);
        assert_eq!(m.stats().frames_intact, 1);
    }

    #[test]
    fn flip_never_makes_zero() {
        for byte in 1..=255u8 {
            for bit in 0..8 {
                let f = flip_nonzero(byte, bit);
                assert_ne!(f, 0);
                assert_eq!((f ^ byte).count_ones(), 1);
            }
        }
    }

    #[test]
    fn ptys_carry_bytes_end_to_end() {
        let emu = Emulator::start(LinkParams::clean(921_600)).unwrap();
        let mut g = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(emu.ground_path())
            .unwrap();
        let mut n = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(emu.node_path())
            .unwrap();
        let f = frame(50);
        g.write_all(&f).unwrap();
        let mut got = vec![0u8; f.len()];
        n.read_exact(&mut got).unwrap();
        assert_eq!(got, f);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(emu.stats().uplink.frames_intact, 1);
        assert_eq!(emu.stats().uplink.bytes_out, f.len() as u64);
    }

    /// A ground that stops reading (as a test's link does once dropped)
    /// fills its pty: the excess is counted as overflow, nothing blocks, and
    /// dropping the emulator returns (it once hung joining a pump stuck in
    /// a blocking write).
    #[test]
    fn a_receiver_that_never_reads_neither_blocks_nor_hangs_the_drop() {
        let emu = Emulator::start(LinkParams::clean(10_000_000)).unwrap();
        let mut n = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(emu.node_path())
            .unwrap();
        let f = frame(200);
        for _ in 0..2_000 {
            n.write_all(&f).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while emu.stats().downlink.bytes_overflow == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(emu.stats().downlink.bytes_overflow > 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(emu);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the emulator's drop returned");
    }
}
