//! Clock guard: node time is an input; this module decides whether to trust
//! it.
//!
//! Owns: [`ClockGuard`] (persisted: the last accepted node time) and its
//! checks. A backwards step, a forward jump beyond the policy's
//! `max_forward_jump_ms` since the last accepted time, or a node time
//! further than `max_behind_chain_ms` behind the header chain's median time
//! past each deny the request and ask the node to raise an event
//! ([`ClockError::raise_event`]). Recovery from a genuine jump is an
//! administrator `CLOCK_RESYNC` command ([`ClockGuard::resync`]).
//!
//! Velocity windows never restart on a clock step: the velocity ledger
//! accounts with `max(seen time)` (see `velocity`), and a step is refused
//! here before anything is recorded.
//!
//! The wall clock is also bounded by monotonic time (issue 13 item 6): a
//! [`ClockAnchor`] is a wall time known good at a reading of the kernel's
//! `CLOCK_BOOTTIME`; [`ClockAnchor::ceiling`] is the highest wall time the
//! monotonic clock vouches for now (anchor + boottime elapsed +
//! [`tolerance_ms`]). A node time above it is refused
//! ([`ClockError::AheadOfMonotonic`]) whatever `max_forward_jump_ms` says,
//! and everything else that waits for time (policy activation,
//! administrator validity windows) uses [`trusted_now`], the node time
//! clamped between the last accepted time and the ceiling. After a reboot
//! boottime restarts at zero: the new anchor is the last persisted time
//! plus [`REBOOT_ALLOWANCE_MS`] at boottime zero ([`ClockAnchor::after_reboot`]),
//! so the time the node was off is not counted until authenticated ground
//! time (`CLOCK_RESYNC`) re-anchors it. `docs/policy.md`, "The clock",
//! says what an attacker who controls the time source can and cannot do.
//!
//! Must never: read a clock, or move `last_accepted` backwards.
#![deny(clippy::arithmetic_side_effects)]

use crate::document::ClockRules;
use crate::rules::Rule;
use crate::units::TimeMs;

/// Fixed part of the tolerance between wall and monotonic time: NTP or GNSS
/// corrections and the coarse time of a restart.
pub const TOLERANCE_FIXED_MS: u64 = 60_000;

/// Rate part of the tolerance: 1000 ppm (1 ms per s) of elapsed monotonic
/// time, twice the 500 ppm an NTP-disciplined kernel clock may slew.
pub const TOLERANCE_PPM: u64 = 1_000;

/// Wall-clock advance accepted across a reboot beyond the boottime since
/// it: the persisted time is at most a minute old (the node persists it
/// every minute) and a watchdog reboot takes about a minute. A longer
/// outage needs `CLOCK_RESYNC`.
pub const REBOOT_ALLOWANCE_MS: u64 = 300_000;

/// The tolerance after `elapsed_ms` of monotonic time.
#[must_use]
pub fn tolerance_ms(elapsed_ms: u64) -> u64 {
    TOLERANCE_FIXED_MS.saturating_add(elapsed_ms.saturating_mul(TOLERANCE_PPM) / 1_000_000)
}

/// A monotonic reading: which kernel boot, and `CLOCK_BOOTTIME` in ms
/// (which counts suspend, unlike `CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mono {
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: [u8; 16],
    /// `CLOCK_BOOTTIME`, ms.
    pub boot_ms: u64,
}

/// A wall time known good at a monotonic reading (persisted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockAnchor {
    /// Kernel boot of the reading.
    pub boot_id: [u8; 16],
    /// `CLOCK_BOOTTIME` of the reading, ms.
    pub boot_ms: u64,
    /// Wall time vouched for at that reading.
    pub wall: TimeMs,
}

impl ClockAnchor {
    /// Encoded length.
    pub const LEN: usize = 32;

    /// The anchor for a node that has no time history at all (fresh
    /// database): the wall time is taken as it is.
    #[must_use]
    pub fn fresh(mono: Mono, wall: TimeMs) -> Self {
        Self {
            boot_id: mono.boot_id,
            boot_ms: mono.boot_ms,
            wall,
        }
    }

    /// The anchor of a new kernel boot: the last persisted time plus the
    /// reboot allowance, at boottime zero (the real time since then is at
    /// least the boottime since this boot started).
    #[must_use]
    pub fn after_reboot(boot_id: [u8; 16], last_persisted: TimeMs) -> Self {
        Self {
            boot_id,
            boot_ms: 0,
            wall: last_persisted
                .checked_add_ms(REBOOT_ALLOWANCE_MS)
                .unwrap_or(TimeMs(i64::MAX)),
        }
    }

    /// The anchor to use at start: the persisted one if it is of this
    /// kernel boot (the daemon restarted), else a reboot anchor from the
    /// last persisted time, else a fresh one.
    #[must_use]
    pub fn at_start(
        persisted: Option<Self>,
        last: Option<TimeMs>,
        mono: Mono,
        wall: TimeMs,
    ) -> Self {
        match (persisted, last) {
            (Some(a), _) if a.boot_id == mono.boot_id && a.boot_ms <= mono.boot_ms => a,
            (_, Some(l)) => Self::after_reboot(mono.boot_id, l),
            (Some(a), None) => Self::after_reboot(mono.boot_id, a.wall),
            (None, None) => Self::fresh(mono, wall),
        }
    }

    /// The highest wall time the monotonic clock vouches for at `mono`. A
    /// reading of another boot, or before the anchor, vouches for no
    /// elapsed time (only the tolerance).
    #[must_use]
    pub fn ceiling(&self, mono: Mono) -> TimeMs {
        let elapsed = if mono.boot_id == self.boot_id {
            mono.boot_ms.saturating_sub(self.boot_ms)
        } else {
            0
        };
        self.wall
            .checked_add_ms(elapsed.saturating_add(tolerance_ms(elapsed)))
            .unwrap_or(TimeMs(i64::MAX))
    }

    /// Stored form: boot id 16 | boot ms u64 BE | wall i64 BE.
    #[must_use]
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (id, rest) = out.split_at_mut(16);
        id.copy_from_slice(&self.boot_id);
        let (b, w) = rest.split_at_mut(8);
        b.copy_from_slice(&self.boot_ms.to_be_bytes());
        w.copy_from_slice(&self.wall.0.to_be_bytes());
        out
    }

    /// From the stored form; `None` if it is not 32 bytes.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (id, rest) = bytes.split_first_chunk::<16>()?;
        let (b, w) = rest.split_first_chunk::<8>()?;
        let w = <[u8; 8]>::try_from(w).ok()?;
        Some(Self {
            boot_id: *id,
            boot_ms: u64::from_be_bytes(*b),
            wall: TimeMs(i64::from_be_bytes(w)),
        })
    }
}

/// The node time everything that waits for time uses: `wall` clamped to
/// `[last_accepted, ceiling]`. A clock walked forward cannot make a pending
/// policy due or a future administrator command valid early; one walked
/// back cannot make an expired command valid again or schedule an
/// activation in the past.
#[must_use]
pub fn trusted_now(wall: TimeMs, last_accepted: Option<TimeMs>, ceiling: TimeMs) -> TimeMs {
    let floor = last_accepted.unwrap_or(TimeMs(i64::MIN)).min(ceiling);
    wall.clamp(floor, ceiling)
}

/// Clock refusals. Codes 0x05A0..=0x05AF and 0x05E0..=0x05EF. All raise an
/// event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// Node time below the last accepted time.
    #[error("clock stepped backwards: last accepted {last}, now {now}")]
    Backwards {
        /// Last accepted.
        last: TimeMs,
        /// Offered.
        now: TimeMs,
    },
    /// Node time too far ahead of the last accepted time.
    #[error("clock jumped forward: last accepted {last}, now {now}, bound {max_ms} ms")]
    Jump {
        /// Last accepted.
        last: TimeMs,
        /// Offered.
        now: TimeMs,
        /// Bound.
        max_ms: u64,
    },
    /// Node time too far behind the chain's median time past.
    #[error("clock {now} is behind the chain's median time past {mtp_s} s")]
    BehindChain {
        /// Offered.
        now: TimeMs,
        /// Tip MTP, seconds.
        mtp_s: u32,
    },
    /// Node time ahead of what the monotonic clock vouches for since the
    /// last anchor (a walked clock, or a reboot gap not yet resynced).
    #[error("clock {now} is ahead of the monotonic bound {ceiling}: resync with CLOCK_RESYNC")]
    AheadOfMonotonic {
        /// Offered.
        now: TimeMs,
        /// Highest time the monotonic clock vouches for.
        ceiling: TimeMs,
    },
}

impl ClockError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Backwards { .. } => 0x05A0,
            Self::Jump { .. } => 0x05A1,
            Self::BehindChain { .. } => 0x05A2,
            Self::AheadOfMonotonic { .. } => 0x05E0,
        }
    }

    /// Rule tag.
    #[must_use]
    pub fn rule(&self) -> Rule {
        Rule::ClockStep
    }

    /// Every clock refusal is an anomaly the node reports.
    #[must_use]
    pub fn raise_event(&self) -> bool {
        true
    }
}

/// Persisted clock state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockGuard {
    /// Highest node time accepted so far (`None` before the first request).
    pub last_accepted: Option<TimeMs>,
    /// The monotonic ceiling now ([`ClockAnchor::ceiling`]); `None` only
    /// where no monotonic clock exists (tools, tests of other rules).
    pub ceiling: Option<TimeMs>,
}

impl ClockGuard {
    /// Checks `now`; does not change the state (call [`ClockGuard::accept`]
    /// when the request's decision is persisted).
    ///
    /// # Errors
    /// [`ClockError`].
    pub fn check(
        &self,
        now: TimeMs,
        rules: &ClockRules,
        chain_mtp_s: u32,
    ) -> Result<(), ClockError> {
        if let Some(ceiling) = self.ceiling
            && now > ceiling
        {
            return Err(ClockError::AheadOfMonotonic { now, ceiling });
        }
        if let Some(last) = self.last_accepted {
            if now < last {
                return Err(ClockError::Backwards { last, now });
            }
            if now
                .since(last)
                .is_none_or(|d| d > rules.max_forward_jump_ms)
            {
                return Err(ClockError::Jump {
                    last,
                    now,
                    max_ms: rules.max_forward_jump_ms,
                });
            }
        }
        let mtp_ms = i64::from(chain_mtp_s).checked_mul(1000).unwrap_or(i64::MAX);
        let floor = TimeMs(mtp_ms)
            .checked_sub_ms(rules.max_behind_chain_ms)
            .unwrap_or(TimeMs(i64::MIN));
        if now < floor {
            return Err(ClockError::BehindChain {
                now,
                mtp_s: chain_mtp_s,
            });
        }
        Ok(())
    }

    /// Records an accepted time (monotonic: never moves backwards).
    pub fn accept(&mut self, now: TimeMs) {
        self.last_accepted = Some(self.last_accepted.map_or(now, |l| l.max(now)));
    }

    /// Administrator resync after a genuine jump: accept `now` as the new
    /// reference even if it is far ahead. A resync never moves backwards.
    pub fn resync(&mut self, now: TimeMs) {
        self.accept(now);
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "test arithmetic on small constants"
)]
mod tests {
    use super::*;

    const RULES: ClockRules = ClockRules {
        max_forward_jump_ms: 10_000,
        max_behind_chain_ms: 7_200_000,
    };

    #[test]
    fn steps_and_jumps_are_refused_and_normal_time_accepted() {
        let mut g = ClockGuard::default();
        assert_eq!(g.check(TimeMs(1_000_000_000), &RULES, 1_000_000), Ok(()));
        g.accept(TimeMs(1_000_000_000));
        assert_eq!(g.check(TimeMs(1_000_005_000), &RULES, 1_000_000), Ok(()));
        let e = g.check(TimeMs(999_999_999), &RULES, 1_000_000).unwrap_err();
        assert_eq!(
            (e.rule(), e.code(), e.raise_event()),
            (Rule::ClockStep, 0x05A0, true)
        );
        let e = g
            .check(TimeMs(1_000_010_001), &RULES, 1_000_000)
            .unwrap_err();
        assert_eq!(e.code(), 0x05A1);
        g.accept(TimeMs(5));
        assert_eq!(g.last_accepted, Some(TimeMs(1_000_000_000)));
        g.resync(TimeMs(2_000_000_000));
        assert_eq!(g.check(TimeMs(2_000_000_001), &RULES, 1_000_000), Ok(()));
    }

    const ID: [u8; 16] = [7; 16];
    const DAY: u64 = 86_400_000;

    fn at(boot_ms: u64) -> Mono {
        Mono {
            boot_id: ID,
            boot_ms,
        }
    }

    /// Issue 13 item 6: a 30-day forward step passes `max_forward_jump`
    /// (30 days in the example policies) but not the monotonic ceiling.
    #[test]
    fn a_forward_step_beyond_monotonic_time_is_refused() {
        let rules = ClockRules {
            max_forward_jump_ms: 30 * DAY,
            max_behind_chain_ms: 7_200_000,
        };
        let t0 = TimeMs(1_800_000_000_000);
        let anchor = ClockAnchor::fresh(at(1_000), t0);
        let mut g = ClockGuard {
            last_accepted: Some(t0),
            ceiling: Some(anchor.ceiling(at(61_000))),
        };
        // 60 s of boottime: 60 s of wall time is fine, and so is a bit of
        // drift within the tolerance.
        assert_eq!(g.check(TimeMs(t0.0 + 60_000), &rules, 0), Ok(()));
        assert_eq!(g.check(TimeMs(t0.0 + 119_000), &rules, 0), Ok(()));
        let e = g
            .check(TimeMs(t0.0 + 30 * DAY as i64 - 1), &rules, 0)
            .unwrap_err();
        assert_eq!(
            (e.code(), e.rule(), e.raise_event()),
            (0x05E0, Rule::ClockStep, true)
        );
        // Without the ceiling the old guard let it through: the defect.
        g.ceiling = None;
        assert_eq!(
            g.check(TimeMs(t0.0 + 30 * DAY as i64 - 1), &rules, 0),
            Ok(())
        );
        // After 30 real days of boottime it is honest time.
        g.ceiling = Some(anchor.ceiling(at(1_000 + 30 * DAY)));
        assert_eq!(g.check(TimeMs(t0.0 + 30 * DAY as i64), &rules, 0), Ok(()));
    }

    #[test]
    fn tolerance_grows_slowly_and_walking_cannot_accumulate() {
        assert_eq!(tolerance_ms(0), 60_000);
        assert_eq!(tolerance_ms(DAY), 60_000 + 86_400);
        // The anchor does not move with each acceptance, so the tolerance
        // is granted once per anchor, not once per request.
        let t0 = TimeMs(1_000_000_000_000);
        let a = ClockAnchor::fresh(at(0), t0);
        for step in 1..=100u64 {
            let c = a.ceiling(at(step * 1_000));
            assert_eq!(
                c.0,
                t0.0 + (step * 1_000 + tolerance_ms(step * 1_000)) as i64
            );
        }
        // Another boot, or boottime before the anchor, vouches for nothing.
        let other = Mono {
            boot_id: [8; 16],
            boot_ms: 10 * DAY,
        };
        assert_eq!(a.ceiling(other).0, t0.0 + 60_000);
        let b = ClockAnchor::fresh(at(5_000), t0);
        assert_eq!(b.ceiling(at(1_000)).0, t0.0 + 60_000);
    }

    #[test]
    fn anchor_at_start_restart_reboot_and_fresh() {
        let t0 = TimeMs(1_000_000_000_000);
        let last = TimeMs(t0.0 + 5_000);
        let a = ClockAnchor::fresh(at(1_000), t0);
        // Daemon restart in the same kernel boot: the same anchor (a crash
        // loop gains nothing).
        assert_eq!(
            ClockAnchor::at_start(Some(a), Some(last), at(9_000), TimeMs(0)),
            a
        );
        // Reboot: boottime restarted, the gap is not counted.
        let r = ClockAnchor::at_start(
            Some(a),
            Some(last),
            Mono {
                boot_id: [9; 16],
                boot_ms: 20_000,
            },
            TimeMs(0),
        );
        assert_eq!(r, ClockAnchor::after_reboot([9; 16], last));
        assert_eq!(
            r.ceiling(Mono {
                boot_id: [9; 16],
                boot_ms: 20_000
            })
            .0,
            last.0 + (REBOOT_ALLOWANCE_MS + 20_000 + tolerance_ms(20_000)) as i64
        );
        // Same id but boottime went backwards: treated as a reboot.
        assert_eq!(
            ClockAnchor::at_start(Some(a), Some(last), at(10), TimeMs(0)),
            ClockAnchor::after_reboot(ID, last)
        );
        // No history at all: the wall time as it is.
        assert_eq!(
            ClockAnchor::at_start(None, None, at(3), t0),
            ClockAnchor::fresh(at(3), t0)
        );
        assert_eq!(ClockAnchor::decode(&a.encode()), Some(a));
        assert_eq!(ClockAnchor::decode(&[0; 31]), None);
    }

    #[test]
    fn trusted_now_clamps_both_ways() {
        let last = Some(TimeMs(1_000));
        let ceiling = TimeMs(2_000);
        assert_eq!(trusted_now(TimeMs(1_500), last, ceiling), TimeMs(1_500));
        assert_eq!(trusted_now(TimeMs(9_999_999), last, ceiling), ceiling);
        assert_eq!(trusted_now(TimeMs(10), last, ceiling), TimeMs(1_000));
        assert_eq!(trusted_now(TimeMs(10), None, ceiling), TimeMs(10));
        // A ceiling below the last accepted time (never normally): the
        // ceiling wins, nothing waits on a time not vouched for.
        assert_eq!(
            trusted_now(TimeMs(5_000), Some(TimeMs(3_000)), ceiling),
            ceiling
        );
    }

    #[test]
    fn clock_behind_the_chain_is_refused() {
        let g = ClockGuard::default();
        // MTP 10_000_000 s; node says 1 s.
        let e = g.check(TimeMs(1_000), &RULES, 10_000_000).unwrap_err();
        assert_eq!(e.code(), 0x05A2);
        assert_eq!(
            g.check(TimeMs(10_000_000_000 - 7_200_000), &RULES, 10_000_000),
            Ok(())
        );
    }
}
