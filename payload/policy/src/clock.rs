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
//! Must never: read a clock, or move `last_accepted` backwards.
#![deny(clippy::arithmetic_side_effects)]

use crate::document::ClockRules;
use crate::rules::Rule;
use crate::units::TimeMs;

/// Clock refusals. Codes 0x05A0..=0x05AF. All raise an event.
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
}

impl ClockError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Backwards { .. } => 0x05A0,
            Self::Jump { .. } => 0x05A1,
            Self::BehindChain { .. } => 0x05A2,
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
