//! The node task's state machine: authentic packets in, verification
//! reports, service replies and events out. It owns the store, the secured
//! link state and the counters, and is driven by the runtime with frames and
//! clock ticks; it never reads a clock or a device itself, so tests drive it
//! directly with bytes and times.
//!
//! It must never panic on an uplinked byte and never stop the link because a
//! packet was bad: every refusal is counted, rate-limited and reported.

mod anchor;
mod audit;
mod btc;
mod clock;
mod eth;
mod files;
mod health;
pub(crate) mod keys;
pub(crate) mod policy;
mod sign;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::{All, Secp256k1};
use spacenode_btc::wallet::{AllowMatcher, Wallet};
use spacenode_keys::{KeyStore, SoftKeyStore, Tpm};
use spacenode_policy::change::PolicyState;
use spacenode_policy::clock::{ClockAnchor, Mono};
use spacenode_wire::ReasonCode;
use spacenode_wire::frame::{self, DecoderStats};
use spacenode_wire::msg::{Event, EventId, FailureNotice};
use spacenode_wire::pus::{Tc, Tm};
use spacenode_wire::security::{LinkKey, SecError};
use spacenode_wire::services::{apid, service, subtype};

use crate::config::Config;
use crate::custody::{self, CustodyError};
use crate::health::ballast;
use crate::health::mode::{Mode, SafeReason};
use crate::health::triggers::{self, BurstDetector};
use crate::link::security::{LinkSecError, LinkSecurity};
use crate::service::chain::state::ChainService;
use crate::service::event::limiter::EventLimiter;
use crate::service::hk::snapshot::{self as hk, NodeCounters, Readings, Snapshot};
use crate::store::{Store, StoreError};

/// The time as the runtime sees it, passed into every decision.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Wall clock, UNIX milliseconds (for timestamps).
    pub unix_ms: i64,
    /// Monotonic clock (for intervals).
    pub mono: Instant,
    /// Kernel boot id and `CLOCK_BOOTTIME`: what the wall clock's advance
    /// is bounded by (`spacenode_policy::clock`).
    pub boot: Mono,
}

impl Now {
    /// Wall clock in UNIX seconds (0 before 1970), for chain validation.
    #[must_use]
    pub fn unix_s(&self) -> u64 {
        u64::try_from(self.unix_ms.div_euclid(1000)).unwrap_or(0)
    }

    /// Reads the clocks. Only the runtime calls this.
    #[must_use]
    pub fn read() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            unix_ms,
            mono: Instant::now(),
            boot: read_boot_clock(),
        }
    }
}

/// The kernel's boot id (read once) and `CLOCK_BOOTTIME` in ms. An
/// unreadable boot id is all zeros and an unreadable clock 0: the clock
/// guard then vouches for no elapsed time, so the node refuses time-based
/// decisions until a `CLOCK_RESYNC` rather than trusting the wall clock.
fn read_boot_clock() -> Mono {
    static BOOT_ID: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let boot_id = *BOOT_ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| hex::decode(s.trim().replace('-', "")).ok())
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .unwrap_or_else(|| {
                tracing::error!("cannot read the kernel boot id");
                [0; 16]
            })
    });
    let boot_ms = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .and_then(|t| {
            let ms = i128::from(t.tv_sec())
                .checked_mul(1000)?
                .checked_add(i128::from(t.tv_nsec()) / 1_000_000)?;
            u64::try_from(ms).ok()
        })
        .unwrap_or(0);
    Mono { boot_id, boot_ms }
}

/// Errors that stop the node from starting.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The link keyring could not be built.
    #[error(transparent)]
    Link(#[from] LinkSecError),
    /// Key custody could not open the link keys.
    #[error(transparent)]
    Custody(#[from] CustodyError),
}

/// Something the runtime must do for the node (test hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Block the node task for good (`health.test-hang` 0).
    HangNode,
    /// Block the link task for good (`health.test-hang` 1).
    HangLink,
}

/// An authentic uplink packet, for the router.
#[derive(Debug)]
pub(crate) enum Opened {
    /// A telecommand and the link key it arrived under.
    Tc(Tc, u16),
    /// Not a valid telecommand, but long enough to name a request id: that
    /// request is refused (acceptance failure).
    Undecodable(spacenode_wire::pus::RequestId, FailureNotice),
}

/// A TM to send, before sequence counts and time are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmBody {
    /// Source APID.
    pub apid: u16,
    /// Service type.
    pub service: u8,
    /// Subtype.
    pub subtype: u8,
    /// Destination (ground station) id, 0 for broadcast.
    pub dest_id: u16,
    /// Source data.
    pub data: Vec<u8>,
}

/// When each periodic duty of the tick is next due (monotonic time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    /// Persisting the clock anchor (`node/clock.rs`).
    pub(crate) clock_save: Instant,
    /// The safe-mode beacon (`node/health.rs`).
    pub(crate) beacon: Instant,
    /// Periodic housekeeping (`None`: on request only).
    pub(crate) hk: Option<Instant>,
    /// The storage check.
    pub(crate) storage_check: Instant,
    /// Activating a due policy change (`node/policy.rs`).
    pub(crate) policy_poll: Instant,
    /// Retrying a safe-mode entry the database refused.
    pub(crate) safe_save: Instant,
}

/// The node.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) store: Store,
    pub(crate) sec: LinkSecurity,
    pub(crate) boot_count: u32,
    pub(crate) started: Instant,
    pub(crate) mode: Mode,
    pub(crate) mode_since_ms: i64,
    pub(crate) keys: Option<KeyStore>,
    pub(crate) tpm: Option<Tpm>,
    pub(crate) soft_sealer: Option<SoftKeyStore>,
    pub(crate) custody_open_time: Duration,
    pub(crate) auth_burst: BurstDetector,
    /// What bounds the wall clock's advance in this kernel boot
    /// (`policy::clock`); persisted when it changes.
    pub(crate) clock_anchor: ClockAnchor,
    /// Last authentication failure (or the start): a forged-packet safe
    /// mode lapses `health.forged_safe_lapse` after it.
    pub(crate) last_forgery: Instant,
    pub(crate) last_contact_ms: i64,
    pub(crate) contact_saved_ms: i64,
    pub(crate) pending_action: Option<Action>,
    /// When the periodic duties are next due.
    pub(crate) due: Due,
    pub(crate) start_events: Vec<(EventId, Vec<u8>)>,
    pub(crate) tm_seq: HashMap<u16, u16>,
    pub(crate) msg_counters: HashMap<u8, u16>,
    pub(crate) counters: NodeCounters,
    pub(crate) limiter: EventLimiter,
    pub(crate) chain: ChainService,
    pub(crate) frame_stats: DecoderStats,
    pub(crate) secp: Secp256k1<All>,
    pub(crate) policy: Option<PolicyState>,
    pub(crate) allow: Option<AllowMatcher>,
    pub(crate) wallets: Vec<Wallet>,
    pub(crate) safes: Vec<spacenode_eth::safe::Safe>,
    pub(crate) refusal_burst: BurstDetector,
    /// Digest of the last one-shot administrator request that succeeded
    /// (see the router, [`crate::service`]); in memory only, so a restart
    /// forgets it.
    pub(crate) last_admin_done: Option<[u8; 32]>,
    /// A safe-mode entry the database refused (full, locked): retried
    /// until it is stored, so a restart cannot forget it.
    pub(crate) unsaved_safe: Option<u16>,
    /// The key the TC being handled arrived under: its replies are sealed
    /// under it, so each ground station reads its own answers.
    pub(crate) reply_key: Option<u16>,
}

impl Node {
    /// Opens the node's state: counts the boot, resumes the link keys and
    /// sequence numbers.
    ///
    /// # Errors
    /// [`NodeError`] if storage or the keyring cannot be opened.
    pub fn start(cfg: Config, now: Now) -> Result<Self, NodeError> {
        release_ballast_if_full(&cfg);
        let (mut store, corrupt) = health::open_store(&cfg, now)?;
        let db_fresh = store.was_created();
        let boot_count = store.record_boot()?;
        // Boot-loop rule first, before anything that could crash.
        let starts = store.boot_starts()?;
        let boot_loop = triggers::boot_loop(
            &starts,
            now.unix_ms,
            cfg.health.boot_loop_starts,
            cfg.health.boot_loop_window,
        );
        store.record_start(now.unix_ms, cfg.health.boot_loop_starts.saturating_add(1))?;
        let mut custody = custody::open(&cfg, &mut store, db_fresh)?;
        let mut faults: Vec<(SafeReason, String)> = Vec::new();
        if let Some(detail) = corrupt {
            faults.push((SafeReason::StorageCorrupt, detail));
        }
        if let Some(f) = &custody.fault {
            faults.push((f.reason, f.detail.clone()));
        }
        let loaded = policy::load(&store, custody.keys.as_ref(), cfg.key_network);
        let safes = eth::load_safes(&store, custody.keys.as_ref());
        if let Some(detail) = loaded.fault {
            faults.push((SafeReason::StorageCorrupt, detail));
        }
        // The policy anchor: catch up after an interrupted activation, or
        // notice a database behind it (before the sequence-bound jump).
        let db_trusted = !faults
            .iter()
            .any(|(r, _)| matches!(r, SafeReason::StorageCorrupt | SafeReason::RollbackDetected));
        let tpm = match custody.tpm.as_mut() {
            Some(t) => Some(t),
            None => custody.keys.as_mut().and_then(KeyStore::tpm),
        };
        if let Some(f) = anchor::check_at_start(&cfg, tpm, loaded.policy.as_ref(), db_trusted) {
            faults.push(f);
        }
        if boot_loop {
            faults.push((
                SafeReason::BootLoop,
                format!(
                    "more than {} starts in {:?}",
                    cfg.health.boot_loop_starts, cfg.health.boot_loop_window
                ),
            ));
        }
        if custody.db_lost
            || faults.iter().any(|(r, _)| {
                matches!(r, SafeReason::StorageCorrupt | SafeReason::RollbackDetected)
            })
        {
            jump_seq_bounds(&mut store, &custody.link_keys, now)?;
        }
        let clock_anchor = clock::anchor_at_start(&mut store, now)?;
        record_key_digests(&mut store, &custody.link_keys);
        let sec = LinkSecurity::resume(&cfg.link, &custody.link_keys, &store)?;
        let chain = ChainService::open(&cfg.chain, &store);
        let limiter = EventLimiter::new(Duration::from_millis(u64::from(
            cfg.telemetry.event_min_interval_ms,
        )));
        let next_hk = (cfg.telemetry.hk_interval_s > 0)
            .then(|| now.mono + Duration::from_secs(u64::from(cfg.telemetry.hk_interval_s)));
        let (reason_code, mode_since_ms) = store.mode()?;
        let mode = match reason_code {
            0 => Mode::Normal,
            code => Mode::Safe(SafeReason::from_code(code).unwrap_or(SafeReason::StorageCorrupt)),
        };
        let last_contact_ms = store.last_contact_ms()?.unwrap_or(now.unix_ms);
        tracing::info!(
            boot_count,
            tx_key_id = sec.tx_key_id(),
            tx_next_seq = sec.tx_next_seq(),
            seed = custody.keys.is_some(),
            custody_ms = custody.open_time.as_millis() as u64,
            "node state resumed"
        );
        let mut node = Self {
            auth_burst: BurstDetector::new(
                usize::try_from(cfg.health.auth_failure_burst).unwrap_or(usize::MAX),
                cfg.health.burst_window,
            ),
            last_forgery: now.mono,
            clock_anchor,
            refusal_burst: BurstDetector::new(
                usize::try_from(cfg.health.refusal_burst).unwrap_or(usize::MAX),
                cfg.health.burst_window,
            ),
            secp: Secp256k1::new(),
            policy: loaded.policy,
            allow: loaded.allow,
            wallets: loaded.wallets,
            safes,
            last_admin_done: None,
            unsaved_safe: None,
            reply_key: None,
            cfg,
            store,
            sec,
            boot_count,
            started: now.mono,
            mode,
            mode_since_ms,
            keys: custody.keys,
            tpm: custody.tpm,
            soft_sealer: custody.soft_sealer,
            custody_open_time: custody.open_time,
            last_contact_ms,
            contact_saved_ms: last_contact_ms,
            pending_action: None,
            start_events: Vec::new(),
            tm_seq: HashMap::new(),
            msg_counters: HashMap::new(),
            counters: NodeCounters::default(),
            limiter,
            chain,
            due: Due {
                clock_save: now.mono,
                beacon: now.mono,
                hk: next_hk,
                storage_check: now.mono,
                policy_poll: now.mono,
                safe_save: now.mono,
            },
            frame_stats: DecoderStats::default(),
        };
        for (reason, detail) in faults {
            tracing::error!(reason = reason.name(), %detail, "safe-mode trigger at start");
            node.enter_safe_quiet(reason, now);
        }
        Ok(node)
    }

    /// How long custody took to open the keys at start.
    #[must_use]
    pub fn custody_open_time(&self) -> Duration {
        self.custody_open_time
    }

    /// The action the runtime must take, if any (test hooks).
    pub fn take_action(&mut self) -> Option<Action> {
        self.pending_action.take()
    }

    /// Boot count recorded at start.
    #[must_use]
    pub fn boot_count(&self) -> u32 {
        self.boot_count
    }

    /// The frames announcing the start (the BOOT event).
    pub fn on_start(&mut self, now: Now) -> Vec<Vec<u8>> {
        let aux = self.boot_count.to_be_bytes().to_vec();
        let mut out: Vec<Vec<u8>> = self.raise(EventId::BOOT, aux, now).into_iter().collect();
        for (id, aux) in std::mem::take(&mut self.start_events) {
            out.extend(self.raise(id, aux, now));
        }
        out
    }

    /// The link device opened or failed.
    pub fn on_link(&mut self, up: bool, now: Now) -> Vec<Vec<u8>> {
        let id = if up {
            EventId::LINK_UP
        } else {
            EventId::LINK_DOWN
        };
        if up {
            self.raise(id, Vec::new(), now).into_iter().collect()
        } else {
            // Not downlinked (the link is down); logged and stored.
            self.record_event(id, &[], now);
            Vec::new()
        }
    }

    /// Opens one frame payload from the transport: authenticates it and
    /// decodes its telecommand. Refusals and their events go to `out`;
    /// what is to be answered comes back for the router
    /// ([`crate::service`]), whose replies are sealed under the key the
    /// packet arrived under until [`Node::end_tc`].
    pub(crate) fn open_frame(
        &mut self,
        payload: &[u8],
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Option<Opened> {
        let accepted = match self.sec.open_uplink(&mut self.store, payload) {
            Ok(a) => a,
            Err(e) => {
                self.on_refused(&e, now, out);
                return None;
            }
        };
        match self
            .sec
            .heard_under(&mut self.store, accepted.header.key_id)
        {
            Ok(retired) if !retired.is_empty() => {
                for id in &retired {
                    custody::remove_link_blob(&self.cfg.state_dir, *id);
                }
                tracing::info!(?retired, "superseded link keys retired")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot retire superseded keys yet"),
        }
        self.reply_key = Some(accepted.header.key_id);
        let tc = match Tc::decode(&accepted.plaintext) {
            Ok(tc) => tc,
            Err(e) => {
                // The packet is authentic but not a valid TC: if it is long
                // enough to name a request id, refuse that request.
                self.counters.tc_rejected = self.counters.tc_rejected.saturating_add(1);
                tracing::warn!(error = %e, "authentic packet is not a valid telecommand");
                if let Some(rid) = accepted
                    .plaintext
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                {
                    let rid = spacenode_wire::pus::RequestId(u32::from_be_bytes(rid));
                    let fail = FailureNotice {
                        code: ReasonCode::BAD_PACKET,
                        data: e.to_string().into_bytes(),
                    };
                    return Some(Opened::Undecodable(rid, fail));
                }
                self.end_tc();
                return None;
            }
        };
        self.heard_ground(now);
        Some(Opened::Tc(tc, accepted.header.key_id))
    }

    /// The TC is answered: what follows is sealed under the downlink key.
    pub(crate) fn end_tc(&mut self) {
        self.reply_key = None;
    }

    /// Counts a TC's acceptance or refusal for housekeeping.
    pub(crate) fn count_tc(&mut self, accepted: bool) {
        let c = if accepted {
            &mut self.counters.tc_accepted
        } else {
            &mut self.counters.tc_rejected
        };
        *c = c.saturating_add(1);
    }

    fn on_refused(&mut self, e: &LinkSecError, now: Now, out: &mut Vec<Vec<u8>>) {
        let mono = now.mono;
        match e {
            LinkSecError::Sec(SecError::Replay {
                key_id,
                seq,
                highest,
            }) => {
                tracing::debug!(key_id, seq, highest, "replay refused");
                let mut aux = key_id.to_be_bytes().to_vec();
                aux.extend_from_slice(&seq.to_be_bytes());
                aux.extend_from_slice(&highest.to_be_bytes());
                if let Some(aux) = self.limiter.latest(EventId::REPLAY, aux, mono) {
                    out.extend(self.raise(EventId::REPLAY, aux, now));
                }
            }
            LinkSecError::Sec(SecError::AuthFailed { key_id, .. }) => {
                self.last_forgery = mono;
                if self.auth_burst.record(mono) {
                    out.extend(self.enter_safe(SafeReason::AuthFailureBurst, now));
                }
                if let Some(aux) = self.limiter.count(EventId::AUTH_FAILURES, *key_id, mono) {
                    tracing::warn!(key_id, "uplink authentication failure");
                    out.extend(self.raise(EventId::AUTH_FAILURES, aux, now));
                }
            }
            LinkSecError::Sec(other) => {
                let key_id = match other {
                    SecError::UnknownKey { key_id } => *key_id,
                    _ => 0,
                };
                if let Some(aux) = self.limiter.count(EventId::UNKNOWN_KEY, key_id, mono) {
                    tracing::warn!(error = %other, "uplink envelope refused");
                    out.extend(self.raise(EventId::UNKNOWN_KEY, aux, now));
                }
            }
            LinkSecError::Store(err) => {
                tracing::error!(error = %err, "cannot persist the receive window; packet dropped");
            }
            LinkSecError::NoTxKey(id) => tracing::error!(key_id = id, "downlink key missing"),
        }
    }

    /// Periodic work: due rate-limited events, periodic housekeeping,
    /// storage checks. Call every ~100 ms with fresh decoder counters.
    pub fn tick(&mut self, now: Now) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.health_tick(now, &mut out);
        self.clock_tick(now, &mut out);
        if now.mono >= self.due.policy_poll {
            self.due.policy_poll = now.mono + policy::POLL_INTERVAL;
            self.poll_policy(now, &mut out);
        }
        for (id, aux) in self.limiter.flush(now.mono) {
            out.extend(self.raise(id, aux, now));
        }
        if let Some(due) = self.due.hk
            && now.mono >= due
        {
            self.due.hk =
                Some(now.mono + Duration::from_secs(u64::from(self.cfg.telemetry.hk_interval_s)));
            let body = self.hk_report(0);
            out.extend(self.emit(&body, now));
        }
        if now.mono >= self.due.storage_check {
            self.due.storage_check = now.mono + Duration::from_secs(60);
            let r = Readings::sample(&self.cfg.telemetry.thermal_zone, &self.cfg.state_dir, 0);
            if let Some(free) = r.storage_free_bytes
                && free < self.cfg.health.safe_free_bytes
            {
                let freed = ballast::release(&self.cfg.state_dir);
                if freed > 0 {
                    tracing::warn!(freed, free, "state filesystem low: ballast released");
                }
                out.extend(self.enter_safe(SafeReason::LowDisk, now));
            } else if let Err(e) =
                ballast::ensure(&self.cfg.state_dir, self.cfg.health.safe_free_bytes)
            {
                tracing::warn!(error = %e, "cannot write the storage ballast");
            }
            if let Some(free) = r.storage_free_bytes
                && free < self.cfg.telemetry.storage_warn_free_bytes
                && let Some(aux) =
                    self.limiter
                        .latest(EventId::STORAGE_LOW, free.to_be_bytes().to_vec(), now.mono)
            {
                out.extend(self.raise(EventId::STORAGE_LOW, aux, now));
            }
        }
        out
    }

    /// Latest frame decoder counters from the transport.
    pub fn set_frame_stats(&mut self, stats: DecoderStats) {
        self.frame_stats = stats;
    }

    /// The core housekeeping report (TM[3,25]) of the node's state now.
    pub(crate) fn hk_report(&self, dest_id: u16) -> TmBody {
        let (chain_tip_height, chain_flags) = self.chain.hk();
        let readings = Readings::sample(
            &self.cfg.telemetry.thermal_zone,
            &self.cfg.state_dir,
            self.store.disk_usage(),
        );
        let snapshot = Snapshot {
            uptime_s: self.started.elapsed().as_secs(),
            boot_count: self.boot_count,
            mode: self.mode.codes().0,
            mode_reason: self.mode.codes().1,
            frames: self.frame_stats,
            sec: self.sec.counters(),
            node: NodeCounters {
                tm_suppressed: self
                    .counters
                    .tm_suppressed
                    .saturating_add(self.limiter.suppressed()),
                ..self.counters
            },
            tx_key_id: self.sec.tx_key_id(),
            tx_next_seq: self.sec.tx_next_seq(),
            rx_highest_seq: self.sec.rx_highest(),
            readings,
            chain_tip_height,
            chain_flags,
        };
        TmBody {
            apid: apid::HK,
            service: service::HK,
            subtype: subtype::HK_REPORT,
            dest_id,
            data: hk::build(&snapshot).encode(),
        }
    }

    pub(crate) fn record_event(&mut self, id: EventId, aux: &[u8], now: Now) -> Option<u32> {
        let severity = id.severity();
        tracing::info!(
            event = id.name().unwrap_or("unknown"),
            severity = severity.name(),
            "event"
        );
        match self
            .store
            .append_event(now.unix_ms, id.0, severity as u8, aux)
        {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(error = %e, "cannot store event");
                None
            }
        }
    }

    pub(crate) fn raise(&mut self, id: EventId, aux: Vec<u8>, now: Now) -> Option<Vec<u8>> {
        let seq = self.record_event(id, &aux, now).unwrap_or(0);
        let ev = Event {
            id,
            seq,
            time_unix_ms: now.unix_ms,
            aux,
        };
        let body = TmBody {
            apid: apid::EVENTS,
            service: service::EVENT,
            subtype: id.severity() as u8,
            dest_id: 0,
            data: ev.encode(),
        };
        self.emit(&body, now)
    }

    /// Builds, seals and frames one TM. Failures are logged and counted; the
    /// link goes on.
    pub(crate) fn emit(&mut self, body: &TmBody, now: Now) -> Option<Vec<u8>> {
        let seq = self.tm_seq.entry(body.apid).or_insert(0);
        let seq_count = *seq;
        *seq = (*seq + 1) & 0x3FFF;
        let counter = self.msg_counters.entry(body.service).or_insert(0);
        let msg_counter = *counter;
        *counter = counter.wrapping_add(1);
        let tm = Tm {
            apid: body.apid,
            seq_count,
            service: body.service,
            subtype: body.subtype,
            msg_counter,
            dest_id: body.dest_id,
            time_unix_ms: now.unix_ms,
            data: body.data.clone(),
        };
        let result = tm
            .encode()
            .map_err(|e| e.to_string())
            .and_then(|pkt| {
                self.sec
                    .seal_downlink(&mut self.store, &pkt, self.reply_key)
                    .map_err(|e| e.to_string())
            })
            .and_then(|env| frame::encode(&env).map_err(|e| e.to_string()));
        match result {
            Ok(f) => {
                self.counters.tm_sent = self.counters.tm_sent.saturating_add(1);
                Some(f)
            }
            Err(e) => {
                self.counters.tm_suppressed = self.counters.tm_suppressed.saturating_add(1);
                tracing::error!(error = %e, service = body.service, subtype = body.subtype, "cannot send tm");
                None
            }
        }
    }

    /// Counts a TM dropped because the transport queue was full.
    pub fn count_dropped(&mut self) {
        self.counters.tm_suppressed = self.counters.tm_suppressed.saturating_add(1);
    }
}

/// A full state filesystem must not fail the start (systemd would restart
/// us into the same failure): the ballast is freed first so the start's
/// writes have room; the storage check then enters safe mode.
fn release_ballast_if_full(cfg: &Config) {
    if ballast::free_bytes(&cfg.state_dir).is_some_and(|f| f < cfg.health.safe_free_bytes) {
        let freed = ballast::release(&cfg.state_dir);
        if freed > 0 {
            tracing::warn!(freed, "state filesystem full at start: ballast released");
        }
    }
}

/// The database may be older than what the node sent and accepted (or
/// gone): every sequence bound moves beyond reach. A lost database jumps
/// whatever else survived (issue 13 item 10: it used to jump only if the
/// seed blob was still there).
fn jump_seq_bounds(store: &mut Store, keys: &[(u16, LinkKey)], now: Now) -> Result<(), NodeError> {
    let ids: Vec<u16> = keys.iter().map(|(id, _)| *id).collect();
    store.jump_seq_bounds(&ids, now.unix_ms)?;
    tracing::warn!(
        ?ids,
        "sequence bounds jumped after a database rollback or loss"
    );
    Ok(())
}

/// Records the SHA-256 of every link key's bytes (rekey compares new keys
/// against them, retired ones included). Two ids with the same bytes are a
/// configuration error `--check-config` refuses for config keys; sealed
/// keys are only logged here (ids, never bytes), the node must still hear
/// the ground.
fn record_key_digests(store: &mut Store, keys: &[(u16, LinkKey)]) {
    use bitcoin::hashes::{Hash, sha256};
    for (id, key) in keys {
        let digest = sha256::Hash::hash(key.expose()).to_byte_array();
        match store.record_key_digest(*id, &digest) {
            Ok(None) => {}
            Ok(Some(other)) => tracing::error!(
                key_id = id,
                other,
                "two link key ids hold the same key bytes: nonces repeat across them; rekey one"
            ),
            Err(e) => tracing::warn!(key_id = id, error = %e, "cannot record a link key digest"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeqDir;

    fn config(dir: &std::path::Path) -> Config {
        Config::parse(&format!(
            "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n\
             [link]\ndevice = \"/dev/null\"\ntx_key_id = 1\n[[link.keys]]\nid = 1\n\
             key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n\
             [keys]\nbackend = \"soft\"\n",
            dir.join("state").display(),
        ))
        .unwrap()
    }

    /// Issue 13 item 10: a lost database makes every sequence bound jump,
    /// also when no sealed seed blob exists (the soft store has none; a
    /// TPM node may have lost it with the database).
    #[test]
    fn a_lost_database_jumps_the_sequence_bounds_without_a_seed_blob() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let now = Now::read();
        let first = Node::start(config(dir.path()), now).unwrap();
        assert!(
            first.store.seq_bound(1, SeqDir::Tx).unwrap() < 1 << 40,
            "a first start does not jump"
        );
        drop(first);
        for f in ["spacenode.db", "spacenode.db-wal", "spacenode.db-shm"] {
            let _ = std::fs::remove_file(state.join(f));
        }
        let again = Node::start(config(dir.path()), now).unwrap();
        let floor = u64::try_from(now.unix_ms).unwrap() << 20;
        for d in [SeqDir::Tx, SeqDir::Rx] {
            let bound = again.store.seq_bound(1, d).unwrap();
            assert!(
                bound >= floor,
                "{d:?} bound {bound} not jumped after the database loss"
            );
        }
    }
}
