//! The node's side of the clock guard (`spacenode_policy::clock`): the
//! anchor that bounds the wall clock by `CLOCK_BOOTTIME`, chosen at start
//! and persisted; the monotonic ceiling handed to the sign engines; the
//! trusted time that policy activation and administrator validity windows
//! use; and the periodic record of a vouched-for wall time, so a reboot
//! counts from at most a minute ago.
//!
//! Decisions are the pure module's; this file only reads and writes the
//! store. Must never: move the persisted last accepted time backwards, or
//! let anything that waits for time see the raw wall clock.

use std::time::Duration;

use spacenode_policy::clock::{ClockAnchor, ClockError, trusted_now};
use spacenode_policy::units::TimeMs;
use spacenode_wire::msg::EventId;

use super::{Node, Now};
use crate::store::{Store, StoreError};

/// How often a vouched-for wall time is persisted (bounds what a reboot
/// must make up for; see `REBOOT_ALLOWANCE_MS`).
const CLOCK_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// The anchor for this start (`ClockAnchor::at_start`), persisted when it
/// is new: a daemon restart in the same kernel boot keeps the stored one,
/// so a crash loop gains no allowance.
pub(super) fn anchor_at_start(store: &mut Store, now: Now) -> Result<ClockAnchor, StoreError> {
    let persisted = store.clock_anchor()?.and_then(|b| ClockAnchor::decode(&b));
    let last = store.clock_last_accepted()?.map(TimeMs);
    let anchor = ClockAnchor::at_start(persisted, last, now.boot, TimeMs(now.unix_ms));
    if persisted != Some(anchor) {
        store.set_clock_anchor(&anchor.encode())?;
        tracing::info!(
            wall_ms = anchor.wall.0,
            boot_ms = anchor.boot_ms,
            restarted = persisted.is_some(),
            "clock anchored for this boot"
        );
    }
    Ok(anchor)
}

impl Node {
    /// The highest wall time the monotonic clock vouches for now.
    pub(super) fn clock_ceiling(&self, now: Now) -> TimeMs {
        self.clock_anchor.ceiling(now.boot)
    }

    /// The time for everything that waits for time (policy activation,
    /// proposals' activation times, administrator validity windows): the
    /// wall clock clamped to `[last accepted, ceiling]`. A failed read of
    /// the last accepted time drops only the floor.
    pub(crate) fn trusted_now(&self, now: Now) -> TimeMs {
        let last = self.store.clock_last_accepted().ok().flatten().map(TimeMs);
        trusted_now(TimeMs(now.unix_ms), last, self.clock_ceiling(now))
    }

    /// Every minute: a wall time within `[last accepted, ceiling]` is
    /// persisted as accepted; one above the ceiling raises `CLOCK_REFUSED`
    /// (code 0x05E0) even when nobody asks for a signature.
    pub(super) fn clock_tick(&mut self, now: Now, out: &mut Vec<Vec<u8>>) {
        if now.mono < self.due.clock_save {
            return;
        }
        self.due.clock_save = now.mono + CLOCK_SAVE_INTERVAL;
        let wall = TimeMs(now.unix_ms);
        let ceiling = self.clock_ceiling(now);
        let last = match self.store.clock_last_accepted() {
            Ok(l) => l.map(TimeMs),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the clock's last accepted time");
                return;
            }
        };
        if wall > ceiling {
            let e = ClockError::AheadOfMonotonic { now: wall, ceiling };
            tracing::warn!(error = %e, "wall clock ahead of the monotonic bound");
            let mut aux = e.code().to_be_bytes().to_vec();
            aux.extend_from_slice(&last.map_or(0, |t| t.0).to_be_bytes());
            aux.extend_from_slice(&wall.0.to_be_bytes());
            if let Some(aux) = self.limiter.latest(EventId::CLOCK_REFUSED, aux, now.mono) {
                out.extend(self.raise(EventId::CLOCK_REFUSED, aux, now));
            }
            return;
        }
        if last.is_none_or(|l| wall > l)
            && let Err(e) = self.store.raise_clock_last_accepted(wall.0)
        {
            tracing::warn!(error = %e, "cannot persist the clock's last accepted time");
        }
    }
}
