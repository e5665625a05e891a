//! The ground's link client: seals telecommands, opens telemetry, and runs
//! request/reply exchanges over a lossy link with retries and backoff.
//!
//! A retry re-sends the same TC (same request id) in a new envelope (new
//! sequence number), so a late reply to an earlier attempt still completes
//! the exchange. When the node reports that an authentic uplink was below
//! its window (after a node reboot, its window restarts above every number
//! it may have seen), the client moves its numbers above the node's window
//! and re-sends at once.
//!
//! A ground without its state file refuses to run ([`Link::open`]); with
//! `--init` ([`Link::init`]) it first asks the node for its receive bound by
//! a window probe (below) and starts above it.
//!
//! This module must never reuse an uplink sequence number or accept a
//! downlink one twice; both are reserved durably through [`GroundState`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use spacenode_wire::ReasonCode;
use spacenode_wire::frame::{self, Decoded, FrameDecoder};
use spacenode_wire::msg::{Event, EventId, FailureNotice, Stage, Verification};
use spacenode_wire::pus::{PacketError, RequestId, Tc, Tm};
use spacenode_wire::security::{
    Cipher, Direction, LinkKey, PROBE_SEQ, Receiver, RxKey, RxReservation, SecError, SecHeader,
    TxCounter, TxNext,
};
use spacenode_wire::services::service;

use super::config::{ConfigError, GroundConfig, GroundState, InstalledKey};

/// Uplink sequence numbers covered by one durable write of the ground state.
const SEQ_BLOCK: u64 = 256;
/// Downlink numbers covered by one durable write. Small, because after a
/// ground crash the node's next numbers may sit below the reserved bound
/// and are refused until the node's counter passes it; on a clean exit the
/// exact bound is saved instead.
const RX_SEQ_BLOCK: u64 = 32;
/// Unsolicited TM kept for the caller before the oldest is dropped.
const UNSOLICITED_LIMIT: usize = 1024;
/// Numbers [`Link::init`] skips above the receive bound the node reported.
/// The report is authentic downlink, but a ground without state accepts
/// any old downlink envelope, so a recorded answer to an earlier probe
/// could be replayed to it; the margin puts the start above such a stale
/// bound unless 65536 uplinks were accepted since. It costs nothing in a
/// 64-bit space.
pub const INIT_MARGIN: u64 = 1 << 16;
/// Shortest wait for the answer to one window probe: the node rate-limits
/// its REPLAY events and sends a suppressed one at its next flush.
const PROBE_MIN_WAIT: Duration = Duration::from_millis(500);

/// Errors of the ground link.
#[derive(Debug, thiserror::Error)]
pub enum GroundError {
    /// The serial port does not exist.
    #[error(
        "serial port {port} does not exist (is the node's serial bridge plugged in, or the link emulator running?)"
    )]
    PortMissing {
        /// The port path.
        port: String,
    },
    /// The serial port exists but cannot be opened.
    #[error("cannot open serial port {port}: {message}")]
    PortOpen {
        /// The port path.
        port: String,
        /// Why.
        message: String,
    },
    /// Reading or writing the port failed.
    #[error("serial i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A ground file is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No answer within all attempts.
    #[error(
        "no answer from the node to {request} after {attempts} attempts over {waited:.1?} \
         (check the link, the keys, and that spacenoded is running)"
    )]
    Silent {
        /// The request.
        request: RequestId,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        waited: Duration,
    },
    /// The node completed a read-only request every time, but its reply
    /// was lost on the downlink each time.
    #[error(
        "the node completed {request} {rounds} times but its reply was lost on the downlink \
         each time (a noisy link: try again)"
    )]
    ReplyLost {
        /// The last request.
        request: RequestId,
        /// How many times it was asked.
        rounds: u32,
    },
    /// The node refused the request.
    #[error("node refused {request} at {stage:?}: {code} {detail}")]
    Refused {
        /// The request.
        request: RequestId,
        /// Stage of refusal.
        stage: Stage,
        /// Reason code.
        code: ReasonCode,
        /// The failure data, as text if printable.
        detail: String,
        /// The failure data as sent (service-specific layout).
        data: Vec<u8>,
    },
    /// A packet could not be built.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// The link security layer refused an operation.
    #[error(transparent)]
    Sec(#[from] SecError),
    /// `--init`: the node never reported its receive bound.
    #[error(
        "--init: the node did not report its receive bound for key {key_id} after {attempts} \
         window probes over {waited:.1?} (check the link, the key, and that spacenoded is \
         running); the state file was not created"
    )]
    InitSilent {
        /// The uplink key probed.
        key_id: u16,
        /// Probes sent.
        attempts: u32,
        /// Time spent.
        waited: Duration,
    },
}

/// What [`Link::init`] learned and chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitReport {
    /// The uplink key.
    pub key_id: u16,
    /// The node's receive bound: the highest uplink number it accepted
    /// under the key, or the floor of its window.
    pub node_bound: u64,
    /// The first uplink number the ground will use.
    pub first_seq: u64,
}

/// Retry policy of an exchange.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub attempts: u32,
    /// Wait after the first attempt while no round trip has been measured.
    pub first_timeout: Duration,
    /// Lower bound of the adaptive wait.
    pub min_timeout: Duration,
    /// Upper bound of the wait as it grows.
    pub max_timeout: Duration,
}

impl RetryPolicy {
    /// A policy scaled to the link. Until round trips are measured, wait
    /// three times the wire time of a typical exchange (a request and three
    /// reports, ~300 bytes) plus the round-trip latency; then the wait adapts
    /// to measured round trips (RFC 6298) but never drops below the wire time
    /// of 200 bytes. Each timeout multiplies the wait by 1.25, up to twice
    /// the estimate and never beyond `max_timeout` (four times the first
    /// wait).
    #[must_use]
    pub fn for_link(baud: u32, one_way_latency: Duration, attempts: u32) -> Self {
        let wire =
            |bytes: u64| Duration::from_micros(bytes * 10 * 1_000_000 / u64::from(baud.max(1)));
        let rtt_latency = one_way_latency * 2;
        let first = (wire(300) * 3 + rtt_latency + Duration::from_millis(15))
            .max(Duration::from_millis(40));
        let min = (wire(200) + rtt_latency).max(Duration::from_millis(10));
        Self {
            attempts: attempts.max(1),
            first_timeout: first,
            min_timeout: min,
            max_timeout: first * 4,
        }
    }
}

/// Smoothed round-trip estimate (RFC 6298), fed only by exchanges that
/// succeeded at the first attempt (Karn's rule).
#[derive(Debug, Clone, Copy, Default)]
struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                self.rttvar = (self.rttvar * 3 + srtt.abs_diff(r)) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    fn timeout(&self, policy: &RetryPolicy) -> Duration {
        match self.srtt {
            None => policy.first_timeout,
            // The variance term is floored at half the round trip: a
            // scheduler hiccup on a loaded ground machine must not look
            // like a lost frame.
            Some(srtt) => (srtt + (self.rttvar * 4).max(srtt / 2)).clamp(
                policy.min_timeout,
                policy.max_timeout.max(policy.min_timeout),
            ),
        }
    }
}

/// A completed request/reply exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request id.
    pub request_id: RequestId,
    /// Attempts it took.
    pub attempts: u32,
    /// From the first send to the completion report.
    pub elapsed: Duration,
    /// From the last send to the completion report.
    pub last_rtt: Duration,
    /// Service replies addressed to us (e.g. TM[17,2], TM[3,25]).
    pub replies: Vec<Tm>,
    /// Frame bytes of the last uplink attempt.
    pub bytes_up: usize,
    /// Frame bytes received between the last send and the completion.
    pub bytes_down: usize,
}

/// How many times [`Link::query`] asks a question whose reply was lost.
pub const QUERY_ROUNDS: u32 = 4;

/// Counters of the client, for summaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientStats {
    /// TC envelopes sent (attempts).
    pub sent: u64,
    /// Retries after a timeout.
    pub retries: u64,
    /// Read-only queries asked again because their reply was lost.
    pub replies_lost: u64,
    /// Resyncs after the node reported our numbers below its window.
    pub resyncs: u64,
    /// Downlink envelopes refused (authentication, replay, unknown key).
    pub refused: u64,
}

/// An open, secured link to the node.
pub struct Link {
    port: Box<dyn serialport::SerialPort>,
    decoder: FrameDecoder,
    cfg: GroundConfig,
    state: GroundState,
    ciphers: Vec<Cipher>,
    tx_cipher: Cipher,
    tx: TxCounter,
    rx: Receiver,
    recently_sent: VecDeque<u64>,
    resync_pending: bool,
    /// The bound reported in answer to a window probe ([`Link::init`]).
    probe_answer: Option<u64>,
    /// Whether the state may be written: false while [`Link::init`] has
    /// not learned the node's bound, so a failed init never leaves a state
    /// file that a later run would trust.
    persist: bool,
    inbox: VecDeque<Tm>,
    unsolicited: VecDeque<Tm>,
    bytes_down: usize,
    downlink_seqs: Option<Vec<(u16, u64)>>,
    rtt: RttEstimator,
    baud: u32,
    /// Counters.
    pub stats: ClientStats,
}

impl core::fmt::Debug for Link {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Link")
            .field("tx_key", &self.tx_cipher.key_id())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Opens the serial port and resumes the ground's key and sequence
    /// state.
    ///
    /// # Errors
    /// [`GroundError`] with a clear reason when the port is missing or the
    /// ground files are invalid; a missing state file is
    /// [`ConfigError::StateMissing`] (see [`Link::init`]).
    pub fn open(cfg: GroundConfig, port: &str, baud: u32) -> Result<Self, GroundError> {
        let state = GroundState::load(&cfg.state_file)?;
        Self::open_with_state(cfg, port, baud, state)
    }

    /// Opens the link for a ground whose state file may be lost: asks the
    /// node for its receive bound of the uplink key and continues
    /// [`INIT_MARGIN`] above it (and above the state's own reservation if
    /// the file exists), then saves the state before returning.
    ///
    /// The question is a window probe: an envelope under the uplink key
    /// with sequence number 0, which no sender ever uses (windows start
    /// with floor 0, counters at 1), and an empty plaintext. Every probe
    /// of a key is therefore the same bytes: nonce 0 never protects two
    /// different plaintexts, so repeating it reveals nothing. The node
    /// authenticates it, refuses it as below its window and reports the
    /// REPLAY event with its bound, which every ground already acts on.
    ///
    /// # Errors
    /// As [`Link::open`], or [`GroundError::InitSilent`] if the node does
    /// not answer; the state file is then left as it was.
    pub fn init(
        cfg: GroundConfig,
        port: &str,
        baud: u32,
        policy: RetryPolicy,
    ) -> Result<(Self, InitReport), GroundError> {
        let state = match GroundState::load(&cfg.state_file) {
            Ok(s) => s,
            Err(ConfigError::StateMissing { .. }) => GroundState::default(),
            Err(e) => return Err(e.into()),
        };
        let mut link = Self::open_with_state(cfg, port, baud, state)?;
        link.persist = false;
        let node_bound = link.probe_window(policy)?;
        link.persist = true;
        link.tx.skip_past(node_bound.saturating_add(INIT_MARGIN));
        let key_id = link.tx_cipher.key_id();
        let first_seq = link.tx.peek();
        // Durable before any use: the next invocation starts here at least.
        let seq = link.state.seq.entry(key_id).or_default();
        seq.tx_reserved_until = seq.tx_reserved_until.max(first_seq);
        link.save_state()?;
        Ok((
            link,
            InitReport {
                key_id,
                node_bound,
                first_seq,
            },
        ))
    }

    /// Sends the window probe (see [`Link::init`]) until the node reports
    /// its bound for the uplink key.
    fn probe_window(&mut self, policy: RetryPolicy) -> Result<u64, GroundError> {
        let key_id = self.tx_cipher.key_id();
        let probe = self.tx_cipher.seal(Direction::Uplink, PROBE_SEQ, &[])?;
        let framed = frame::encode_vec(probe).map_err(|e| PacketError::Invalid(e.to_string()))?;
        let start = Instant::now();
        let mut wait = self.rtt.timeout(&policy).max(PROBE_MIN_WAIT);
        self.probe_answer = None;
        for _ in 0..policy.attempts {
            self.port.write_all(&framed)?;
            self.port.flush()?;
            let deadline = Instant::now() + wait;
            while let Some(tm) = self.recv(deadline)? {
                if let Some(bound) = self.probe_answer.take() {
                    return Ok(bound);
                }
                self.keep_unsolicited(tm);
            }
            wait = (wait * 5 / 4).min(Duration::from_secs(2));
        }
        Err(GroundError::InitSilent {
            key_id,
            attempts: policy.attempts,
            waited: start.elapsed(),
        })
    }

    fn open_with_state(
        cfg: GroundConfig,
        port: &str,
        baud: u32,
        state: GroundState,
    ) -> Result<Self, GroundError> {
        if !Path::new(port).exists() {
            return Err(GroundError::PortMissing {
                port: port.to_string(),
            });
        }
        let serial = serialport::new(port, baud)
            .timeout(Duration::from_millis(5))
            .open_native()
            .map_err(|e| GroundError::PortOpen {
                port: port.to_string(),
                message: e.to_string(),
            })?;
        let keyring = state.keyring(&cfg, &cfg.state_file)?;
        let ciphers: Vec<Cipher> = keyring.iter().map(|(id, k)| Cipher::new(*id, k)).collect();
        let tx_id = state
            .tx_key_id
            .filter(|id| ciphers.iter().any(|c| c.key_id() == *id))
            .unwrap_or(cfg.tx_key_id);
        let tx_cipher = ciphers
            .iter()
            .find(|c| c.key_id() == tx_id)
            .cloned()
            .ok_or_else(|| ConfigError::Invalid {
                path: cfg.state_file.clone(),
                message: format!("uplink key {tx_id} is retired or missing"),
            })?;
        let seq = state.seq.get(&tx_id).copied().unwrap_or_default();
        let tx = TxCounter::resume(seq.tx_reserved_until, SEQ_BLOCK);
        let mut rx = Receiver::new(Direction::Downlink);
        for c in &ciphers {
            let bound = state
                .seq
                .get(&c.key_id())
                .map_or(1, |s| s.rx_reserved_until);
            rx.insert(RxKey::new(
                c.clone(),
                RxReservation::resume(bound, RX_SEQ_BLOCK),
            ));
        }
        Ok(Self {
            port: Box::new(serial),
            decoder: FrameDecoder::new(),
            cfg,
            state,
            ciphers,
            tx_cipher,
            tx,
            rx,
            recently_sent: VecDeque::new(),
            resync_pending: false,
            probe_answer: None,
            persist: true,
            inbox: VecDeque::new(),
            unsolicited: VecDeque::new(),
            bytes_down: 0,
            downlink_seqs: None,
            rtt: RttEstimator::default(),
            baud,
            stats: ClientStats::default(),
        })
    }

    /// This station's source id.
    #[must_use]
    pub fn source_id(&self) -> u16 {
        self.cfg.source_id
    }

    /// A new TC with the next sequence count.
    pub fn new_tc(&mut self, apid: u16, service: u8, subtype: u8, app_data: Vec<u8>) -> Tc {
        let seq = self.state.next_tc_seq & 0x3FFF;
        self.state.next_tc_seq = (seq + 1) & 0x3FFF;
        Tc {
            source_id: self.cfg.source_id,
            ..Tc::new(apid, seq, service, subtype, app_data)
        }
    }

    fn save_state(&self) -> Result<(), GroundError> {
        if !self.persist {
            return Ok(());
        }
        self.state.save(&self.cfg.state_file)?;
        Ok(())
    }

    fn next_seq(&mut self) -> Result<u64, GroundError> {
        let key_id = self.tx_cipher.key_id();
        loop {
            match self.tx.next(key_id)? {
                TxNext::Use(s) => return Ok(s),
                TxNext::Reserve { reserved_until } => {
                    self.state.seq.entry(key_id).or_default().tx_reserved_until = reserved_until;
                    self.save_state()?;
                    self.tx.reserved(reserved_until);
                }
            }
        }
    }

    /// Seals and sends one TC; returns the frame size.
    ///
    /// # Errors
    /// [`GroundError`] on I/O or when a reservation cannot be saved.
    pub fn send(&mut self, tc: &Tc) -> Result<usize, GroundError> {
        let seq = self.next_seq()?;
        let envelope = self.tx_cipher.seal(Direction::Uplink, seq, &tc.encode()?)?;
        let framed =
            frame::encode_vec(envelope).map_err(|e| PacketError::Invalid(e.to_string()))?;
        self.port.write_all(&framed)?;
        self.port.flush()?;
        self.stats.sent += 1;
        self.recently_sent.push_back(seq);
        if self.recently_sent.len() > 64 {
            self.recently_sent.pop_front();
        }
        Ok(framed.len())
    }

    /// The next TM, waiting until `deadline`. Events the client acts on
    /// itself (window resync) are still returned.
    ///
    /// # Errors
    /// [`GroundError`] on I/O or state-file failure.
    pub fn recv(&mut self, deadline: Instant) -> Result<Option<Tm>, GroundError> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(tm) = self.inbox.pop_front() {
                return Ok(Some(tm));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let n = match self.port.read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    0
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e.into()),
            };
            self.bytes_down += n;
            let mut frames = Vec::new();
            self.decoder.push(buf.get(..n).unwrap_or_default(), |d| {
                if let Decoded::Frame(f) = d {
                    frames.push(f);
                }
            });
            for f in frames {
                self.open_frame(&f)?;
            }
        }
    }

    /// Starts recording the (key id, sequence number) of every downlink
    /// envelope received, accepted or not (tests check uniqueness).
    pub fn record_downlink_seqs(&mut self) {
        self.downlink_seqs.get_or_insert_with(Vec::new);
    }

    /// The recorded downlink sequence numbers.
    #[must_use]
    pub fn downlink_seqs(&self) -> &[(u16, u64)] {
        self.downlink_seqs.as_deref().unwrap_or_default()
    }

    fn open_frame(&mut self, envelope: &[u8]) -> Result<(), GroundError> {
        if let (Some(seqs), Ok(h)) = (self.downlink_seqs.as_mut(), SecHeader::parse(envelope)) {
            seqs.push((h.key_id, h.seq));
        }
        let accepted = match self.rx.accept(envelope) {
            Ok(a) => a,
            Err(_) => {
                self.stats.refused += 1;
                return Ok(());
            }
        };
        let key_id = accepted.header.key_id;
        if let Some(bound) = accepted.persist_rx_bound {
            self.state.seq.entry(key_id).or_default().rx_reserved_until = bound;
            self.save_state()?;
            if let Some(k) = self.rx.key_mut(key_id) {
                k.reserved(bound);
            }
        }
        let Ok(tm) = Tm::decode(&accepted.plaintext) else {
            self.stats.refused += 1;
            return Ok(());
        };
        if tm.service == service::EVENT
            && let Ok(ev) = Event::decode(&tm.data)
            && ev.id == EventId::REPLAY
        {
            self.on_replay_event(&ev);
        }
        self.inbox.push_back(tm);
        Ok(())
    }

    fn on_replay_event(&mut self, ev: &Event) {
        let mut r = spacenode_wire::msg::Reader::new(&ev.aux);
        let (Ok(key_id), Ok(seq), Ok(highest)) = (r.u16("key"), r.u64("seq"), r.u64("highest"))
        else {
            return;
        };
        if key_id == self.tx_cipher.key_id() && seq == PROBE_SEQ {
            self.probe_answer = Some(self.probe_answer.unwrap_or(0).max(highest));
        }
        // Moving forward is always safe (it only skips numbers), and the
        // event is authenticated downlink, so any report of a window above
        // our next number is acted on: after a node reboot the first stale
        // packet may have been an older invocation's retry, and the event
        // for ours may be rate-limited away.
        if key_id == self.tx_cipher.key_id() && self.tx.peek() <= highest {
            self.tx.skip_past(highest);
            // Re-send at once only if the refused packet was one of ours in
            // flight; otherwise the next send simply uses the new numbers.
            self.resync_pending = self.recently_sent.contains(&seq);
            self.stats.resyncs += 1;
        }
    }

    /// TM that arrived while waiting but belonged to no exchange (events,
    /// periodic housekeeping), oldest first.
    pub fn take_unsolicited(&mut self) -> Vec<Tm> {
        self.unsolicited.drain(..).collect()
    }

    fn keep_unsolicited(&mut self, tm: Tm) {
        if self.unsolicited.len() >= UNSOLICITED_LIMIT {
            self.unsolicited.pop_front();
        }
        self.unsolicited.push_back(tm);
    }

    /// Asks a read-only question (a status, a report) and returns the
    /// exchange whose replies hold at least one TM of `reply_subtype` in
    /// the TC's service. The completion report can arrive while the reply
    /// before it was lost to a bit error: a retry of the same TC cannot
    /// help then (the exchange is complete), so the question is asked
    /// again as a new TC, up to [`QUERY_ROUNDS`] times. Only for requests
    /// that change nothing on the node.
    ///
    /// # Errors
    /// [`GroundError::ReplyLost`], or the request's own error.
    pub fn query(
        &mut self,
        (apid, service, subtype): (u16, u8, u8),
        data: &[u8],
        reply_subtype: u8,
        policy: RetryPolicy,
    ) -> Result<Exchange, GroundError> {
        let mut round = 0;
        loop {
            round += 1;
            let tc = self.new_tc(apid, service, subtype, data.to_vec());
            let x = self.request(&tc, policy)?;
            if x.replies
                .iter()
                .any(|t| t.service == service && t.subtype == reply_subtype)
            {
                return Ok(x);
            }
            self.stats.replies_lost += 1;
            if round >= QUERY_ROUNDS {
                return Err(GroundError::ReplyLost {
                    request: x.request_id,
                    rounds: round,
                });
            }
        }
    }

    /// Sends `tc` and waits for its completion report, retrying on silence.
    ///
    /// # Errors
    /// [`GroundError::Refused`] when the node refuses it,
    /// [`GroundError::Silent`] after the last attempt.
    pub fn request(&mut self, tc: &Tc, policy: RetryPolicy) -> Result<Exchange, GroundError> {
        let (x, failure) = self.request_keeping_replies(tc, policy)?;
        match failure {
            None => Ok(x),
            Some((stage, f)) => Err(GroundError::Refused {
                request: x.request_id,
                stage,
                code: f.code,
                detail: printable(&f.data),
                data: f.data,
            }),
        }
    }

    /// Like [`Link::request`], but a refusal is returned with the replies
    /// that came before it (a refused sign request carries its audit record
    /// before the failure report).
    ///
    /// # Errors
    /// [`GroundError::Silent`] after the last attempt, or I/O.
    pub fn request_keeping_replies(
        &mut self,
        tc: &Tc,
        policy: RetryPolicy,
    ) -> Result<(Exchange, Option<(Stage, FailureNotice)>), GroundError> {
        let request_id = tc.request_id();
        let start = Instant::now();
        let mut timeout = self.rtt.timeout(&policy);
        // A serial link has no congestion to back off from: losses are bit
        // errors. Grow the wait gently (a busy node still gets time) and
        // only up to twice the estimate.
        let ceiling = (timeout * 2).min(policy.max_timeout.max(timeout));
        let mut replies = Vec::new();
        for attempt in 1..=policy.attempts {
            if attempt > 1 {
                self.stats.retries += 1;
            }
            self.bytes_down = 0;
            let bytes_up = self.send(tc)?;
            let sent_at = Instant::now();
            // A large TC (a header batch fills a frame: 22 ms at 921600 Bd)
            // occupies the wire before the node can even start on it: wait
            // for its wire time on top of the round-trip estimate, which is
            // kept free of it so small and large requests share it.
            let frame_time = wire_time(bytes_up, self.baud);
            let deadline = sent_at + timeout + frame_time;
            while let Some(tm) = self.recv(deadline)? {
                if tm.service == service::VERIFICATION
                    && let Ok(v) = Verification::decode(tm.subtype, &tm.data)
                    && v.request_id == request_id
                {
                    let done = Exchange {
                        request_id,
                        attempts: attempt,
                        elapsed: start.elapsed(),
                        last_rtt: sent_at.elapsed(),
                        replies: Vec::new(),
                        bytes_up,
                        bytes_down: self.bytes_down,
                    };
                    if let Some(f) = v.failure {
                        return Ok((Exchange { replies, ..done }, Some((v.stage, f))));
                    }
                    if v.stage == Stage::Completion {
                        if attempt == 1 {
                            self.rtt
                                .sample(sent_at.elapsed().saturating_sub(frame_time));
                        }
                        return Ok((Exchange { replies, ..done }, None));
                    }
                    continue;
                }
                if tm.dest_id == self.cfg.source_id
                    && tm.apid == tc.apid
                    && tm.service != service::VERIFICATION
                {
                    replies.push(tm);
                } else if tm.service != service::VERIFICATION {
                    self.keep_unsolicited(tm);
                }
                if std::mem::take(&mut self.resync_pending) {
                    break;
                }
            }
            timeout = (timeout * 5 / 4).min(ceiling);
        }
        Err(GroundError::Silent {
            request: request_id,
            attempts: policy.attempts,
            waited: start.elapsed(),
        })
    }

    /// Stores a key the ground is about to send by rekey and accepts
    /// downlink under it, before the node has confirmed it: the node
    /// switches its downlink to the new key right after the completion
    /// report, so if that report is lost, the answer to the retry comes
    /// under the new key; and a ground that dies mid-rekey still has the
    /// key the node now uses. The uplink key does not change.
    ///
    /// # Errors
    /// [`GroundError`] if the state cannot be saved.
    pub fn expect_key(&mut self, key_id: u16, key: &[u8; 32]) -> Result<(), GroundError> {
        self.state.installed_keys.retain(|k| k.id != key_id);
        self.state.installed_keys.push(InstalledKey {
            id: key_id,
            key: hex::encode(key),
        });
        self.save_state()?;
        if !self.ciphers.iter().any(|c| c.key_id() == key_id) {
            let cipher = Cipher::new(key_id, &LinkKey::new(*key));
            self.rx.insert(RxKey::new(
                cipher.clone(),
                RxReservation::resume(1, RX_SEQ_BLOCK),
            ));
            self.ciphers.push(cipher);
        }
        Ok(())
    }

    /// A key prepared for a rekey (`ground admin command rekey-link`) or
    /// installed by one, from this station's state.
    #[must_use]
    pub fn prepared_key(&self, key_id: u16) -> Option<[u8; 32]> {
        self.state
            .installed_keys
            .iter()
            .find(|k| k.id == key_id)
            .and_then(|k| hex::decode(&k.key).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    }

    /// Records a key the node accepted by rekey and makes it the uplink key.
    ///
    /// # Errors
    /// [`GroundError`] if the state cannot be saved.
    pub fn adopt_key(&mut self, key_id: u16, key: &[u8; 32]) -> Result<(), GroundError> {
        let old = self.tx_cipher.key_id();
        self.expect_key(key_id, key)?;
        self.state.tx_key_id = Some(key_id);
        if !self.state.retired_keys.contains(&old) {
            self.state.retired_keys.push(old);
        }
        self.save_state()?;
        let cipher = self
            .ciphers
            .iter()
            .find(|c| c.key_id() == key_id)
            .cloned()
            .unwrap_or_else(|| Cipher::new(key_id, &LinkKey::new(*key)));
        self.tx = TxCounter::resume(1, SEQ_BLOCK);
        self.tx_cipher = cipher;
        Ok(())
    }

    /// The uplink key id.
    #[must_use]
    pub fn tx_key_id(&self) -> u16 {
        self.tx_cipher.key_id()
    }

    /// Frame decoder counters (downlink).
    #[must_use]
    pub fn frame_stats(&self) -> spacenode_wire::frame::DecoderStats {
        self.decoder.stats()
    }

    /// Writes raw bytes to the port (tests inject garbage and replays).
    ///
    /// # Errors
    /// [`GroundError::Io`].
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), GroundError> {
        self.port.write_all(bytes)?;
        Ok(())
    }

    /// Seals a TC without sending it (tests replay or mutate it).
    ///
    /// # Errors
    /// [`GroundError`].
    pub fn seal_only(&mut self, tc: &Tc) -> Result<(SecHeader, Vec<u8>), GroundError> {
        let key_id = self.tx_cipher.key_id();
        let seq = self.next_seq()?;
        let env = self.tx_cipher.seal(Direction::Uplink, seq, &tc.encode()?)?;
        Ok((
            SecHeader {
                direction: Direction::Uplink,
                key_id,
                seq,
            },
            env,
        ))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // On a clean exit the exact downlink bound is known: everything
        // accepted is at most the window top. Saving it (lower than the
        // reservation) lets the next invocation accept the node's very next
        // number. The TC sequence count is saved with it.
        for (key_id, highest) in self.rx.windows() {
            let seq = self.state.seq.entry(key_id).or_default();
            seq.rx_reserved_until = highest.saturating_add(1);
        }
        if self.persist {
            let _ = self.state.save(&self.cfg.state_file);
        }
    }
}

/// Time `bytes` occupy a UART at `baud` (8N1: 10 bit times per byte).
fn wire_time(bytes: usize, baud: u32) -> Duration {
    let bits = u64::try_from(bytes).unwrap_or(u64::MAX).saturating_mul(10);
    Duration::from_micros(bits.saturating_mul(1_000_000) / u64::from(baud.max(1)))
}

fn printable(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ if data.is_empty() => String::new(),
        _ => format!("data {}", hex::encode(data)),
    }
}
