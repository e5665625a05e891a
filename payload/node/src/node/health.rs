//! The node's health duties: opening the database safely, the persisted
//! mode and its transitions, the triggers checked on every tick (loss of
//! contact, beacon). The mode telecommands (leaving safe mode, the test
//! hooks) are the mode room's ([`crate::service::mode`]).
//!
//! Decisions come from [`crate::health`]; this file applies them to the
//! node's state and never decides on its own.

use spacenode_wire::msg::{EventId, ModeStatus};
use spacenode_wire::services::{apid, service, subtype};

use super::{Node, NodeError, Now, TmBody};
use crate::config::Config;
use crate::health::mode::{Input, Mode, SafeReason, transition};
use crate::health::triggers;
use crate::store::{Store, StoreError};

/// Persist the time of contact at most this often (it is not a limit, so a
/// lost minute after a crash costs nothing).
const CONTACT_SAVE_INTERVAL_MS: i64 = 60_000;

/// How often a refused safe-mode write is tried again.
const SAFE_SAVE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database; one that fails to open or its integrity check is
/// moved aside (kept for analysis) and replaced by a fresh one, and the
/// reason is returned so the node starts in safe mode instead of looping.
pub(super) fn open_store(cfg: &Config, now: Now) -> Result<(Store, Option<String>), NodeError> {
    let problem = match Store::open(&cfg.state_dir) {
        Ok(store) => match store.integrity_ok() {
            Ok(true) => return Ok((store, None)),
            Ok(false) => "integrity check failed".to_string(),
            Err(e) => e.to_string(),
        },
        Err(e @ StoreError::TooNew { .. }) => return Err(e.into()),
        Err(e) => e.to_string(),
    };
    let db = cfg.state_dir.join("spacenode.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut from = db.clone().into_os_string();
        from.push(suffix);
        let mut to = from.clone();
        to.push(format!(".corrupt-{}", now.unix_ms));
        if let Err(e) = std::fs::rename(&from, &to)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(error = %e, "cannot move the corrupt database aside");
        }
    }
    tracing::error!(%problem, "database unusable; moved aside, starting a fresh one in safe mode");
    Ok((Store::open(&cfg.state_dir)?, Some(problem)))
}

impl Node {
    /// The current mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Applies a safe-mode trigger: persists the mode and returns the event
    /// frames (SAFE_MODE on entry, SAFE_TRIGGER if already safe).
    pub(crate) fn enter_safe(&mut self, reason: SafeReason, now: Now) -> Vec<Vec<u8>> {
        let (next, changed) = transition(self.mode, Input::EnterSafe(reason));
        let aux = reason.code().0.to_be_bytes().to_vec();
        if !changed {
            tracing::warn!(
                reason = reason.name(),
                "safe-mode trigger while in safe mode"
            );
            return self
                .limiter
                .latest(EventId::SAFE_TRIGGER, aux, now.mono)
                .and_then(|aux| self.raise(EventId::SAFE_TRIGGER, aux, now))
                .into_iter()
                .collect();
        }
        self.mode = next;
        self.mode_since_ms = now.unix_ms;
        self.save_safe(reason.code().0, now);
        // A repeated mode exit must run again, not be answered as done.
        self.last_admin_done = None;
        self.due.beacon = now.mono;
        tracing::error!(reason = reason.name(), code = %reason.code(), "entered safe mode; signing disabled");
        self.raise(EventId::SAFE_MODE, aux, now)
            .into_iter()
            .collect()
    }

    /// Stores the safe mode (call with `self.mode` already safe). Safe
    /// mode holds in memory without the disk, but a restart would forget
    /// it: a refused write is retried from [`Self::health_tick`].
    fn save_safe(&mut self, reason: u16, now: Now) {
        match self.store.set_mode(reason, self.mode_since_ms, None) {
            Ok(()) => {
                if self.unsaved_safe.take().is_some() {
                    tracing::warn!(reason, "safe mode stored after a refused write");
                }
            }
            Err(e) => {
                if self.unsaved_safe.replace(reason).is_none() {
                    tracing::error!(error = %e, "cannot persist safe mode; retrying");
                }
                self.due.safe_save = now.mono + SAFE_SAVE_RETRY;
            }
        }
    }

    /// Like [`Self::enter_safe`] at start, before the link is up: the events
    /// go out after the BOOT event.
    pub(super) fn enter_safe_quiet(&mut self, reason: SafeReason, now: Now) {
        let (next, changed) = transition(self.mode, Input::EnterSafe(reason));
        let id = if changed {
            EventId::SAFE_MODE
        } else {
            EventId::SAFE_TRIGGER
        };
        if changed {
            self.mode = next;
            self.mode_since_ms = now.unix_ms;
            self.save_safe(reason.code().0, now);
        }
        self.start_events
            .push((id, reason.code().0.to_be_bytes().to_vec()));
    }

    /// Runs `write` with the next epoch (TPM backend: database first, then
    /// the NV counter; see `payload/keys/README.md`). Returns a reason code
    /// and text on failure.
    pub(crate) fn bump_epoch_with(
        &mut self,
        write: impl FnOnce(&mut Store, Option<u64>) -> Result<(), StoreError>,
    ) -> Result<(), (u16, String)> {
        let target = match self.tpm_mut() {
            Some(tpm) => Some(tpm.next_epoch().map_err(|e| (e.code(), e.to_string()))?),
            None => None,
        };
        write(&mut self.store, target).map_err(|e| (e.code().0, e.to_string()))?;
        if let (Some(target), Some(tpm)) = (target, self.tpm_mut()) {
            tpm.complete_epoch_bump(target)
                .map_err(|e| (e.code(), e.to_string()))?;
        }
        Ok(())
    }

    /// The TPM, whichever handle holds it.
    pub(super) fn tpm_mut(&mut self) -> Option<&mut spacenode_keys::Tpm> {
        if let Some(t) = self.tpm.as_mut() {
            return Some(t);
        }
        self.keys.as_mut().and_then(spacenode_keys::KeyStore::tpm)
    }

    /// An authenticated command arrived.
    pub(super) fn heard_ground(&mut self, now: Now) {
        self.last_contact_ms = now.unix_ms;
        if now.unix_ms.saturating_sub(self.contact_saved_ms) >= CONTACT_SAVE_INTERVAL_MS
            || now.unix_ms < self.contact_saved_ms
        {
            match self.store.set_last_contact_ms(now.unix_ms) {
                Ok(()) => self.contact_saved_ms = now.unix_ms,
                Err(e) => tracing::warn!(error = %e, "cannot persist the time of contact"),
            }
        }
    }

    /// Per-tick health duties: loss of contact, and the signed beacon while
    /// in safe mode.
    pub(super) fn health_tick(&mut self, now: Now, out: &mut Vec<Vec<u8>>) {
        if let Some(reason) = self.unsaved_safe
            && now.mono >= self.due.safe_save
            && !self.mode.may_sign()
        {
            self.save_safe(reason, now);
        }
        self.lapse_forged_safe(now, out);
        let timeout = self.cfg.health.contact_timeout;
        if !timeout.is_zero() && triggers::lost_contact(self.last_contact_ms, now.unix_ms, timeout)
        {
            out.extend(self.enter_safe(SafeReason::LossOfContact, now));
            // One trigger per timeout, not per tick.
            self.last_contact_ms = now.unix_ms;
        }
        if !self.mode.may_sign() && now.mono >= self.due.beacon {
            self.due.beacon = now.mono + self.cfg.health.beacon_interval;
            let mut body = self.mode_status_tm(subtype::MODE_BEACON, 0);
            body.data
                .extend_from_slice(&self.sign_beacon(&body.data).unwrap_or([0; 64]));
            out.extend(self.emit(&body, now));
        }
    }

    /// Ends a safe mode that only unauthenticated traffic caused once no
    /// forgery arrived for `health.forged_safe_lapse` (`docs/health.md`,
    /// "Forged packets"). Any other reason has superseded a lapsing one
    /// (`mode::transition`), so this never ends a safe mode an authentic
    /// fault or command asked for.
    fn lapse_forged_safe(&mut self, now: Now, out: &mut Vec<Vec<u8>>) {
        let Mode::Safe(reason) = self.mode else {
            return;
        };
        if !reason.lapses()
            || now.mono.saturating_duration_since(self.last_forgery)
                < self.cfg.health.forged_safe_lapse
        {
            return;
        }
        let (next, changed) = transition(self.mode, Input::Lapse);
        if !changed {
            return;
        }
        if let Err(e) = self.store.set_mode(0, now.unix_ms, None) {
            // Staying safe a little longer is the safe failure.
            tracing::warn!(error = %e, "cannot persist the lapse of the forged-packet safe mode");
            return;
        }
        self.mode = next;
        self.mode_since_ms = now.unix_ms;
        self.unsaved_safe = None;
        tracing::warn!(
            reason = reason.name(),
            "forged-packet safe mode lapsed after a quiet period"
        );
        let aux = reason.code().0.to_be_bytes().to_vec();
        out.extend(self.raise(EventId::SAFE_LAPSED, aux, now));
    }

    /// `mode.status` or the beacon body.
    pub(crate) fn mode_status_tm(&self, subtype: u8, dest_id: u16) -> TmBody {
        let (mode, reason) = self.mode.codes();
        let status = ModeStatus {
            mode: mode as u8,
            reason,
            since_ms: self.mode_since_ms,
            admin_seq: self.store.admin_seq().unwrap_or(0),
            boot_count: self.boot_count,
            node_id: self.cfg.node_id,
            seed_available: self.keys.is_some(),
            uptime_s: u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX),
        };
        TmBody {
            apid: apid::MODE,
            service: service::MODE,
            subtype,
            dest_id,
            data: status.encode(),
        }
    }
}
