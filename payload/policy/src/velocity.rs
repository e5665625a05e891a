//! Velocity: caps on what leaves the wallets over rolling windows.
//!
//! Owns: [`VelocityLedger`], the pure view of the persisted spend records
//! (`velocity(at_ms, sats, request_id)` rows for Bitcoin; one ledger per
//! chain and per token for Ethereum, see `spacenode-eth`) and the
//! check/record/prune operations. The ledger is generic over the
//! [`Amount`] (sats, wei, token units); `VelocityLedger` alone means sats. Accounting time is `max(now, high_water)`, the highest time
//! the ledger has seen, so a clock that steps backwards can never reopen a
//! window (and the clock guard refuses such steps anyway).
//!
//! Must never: drop a record that is still inside the longest window,
//! overflow, or approve an amount that takes any window above its cap.
#![deny(clippy::arithmetic_side_effects)]

use crate::document::VelocityWindow;
use crate::units::{Amount, Sats, TimeMs};

/// One persisted spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VelocityEntry<A = Sats> {
    /// Accounting time of the spend.
    pub at: TimeMs,
    /// Amount that left the wallets.
    pub amount: A,
}

/// A window over its cap. Code 0x0614 for Bitcoin (reported by
/// `spacenode-btc`'s refusal), 0x0718 / 0x071A for ETH / tokens
/// (`spacenode-eth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "velocity: {spent} already spent in the last {window_ms} ms, {amount} more exceeds the cap of {cap}"
)]
pub struct VelocityExceeded<A: Amount = Sats> {
    /// Window length.
    pub window_ms: u64,
    /// Cap.
    pub cap: A,
    /// Already spent in the window.
    pub spent: A,
    /// Requested.
    pub amount: A,
}

/// The spend records that may still count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VelocityLedger<A = Sats> {
    /// Records, any order.
    pub entries: Vec<VelocityEntry<A>>,
    /// Highest accounting time seen (persist with the records; it is also
    /// the maximum of their times when loaded from rows).
    pub high_water: TimeMs,
}

impl<A: Amount> VelocityLedger<A> {
    /// From persisted rows.
    #[must_use]
    pub fn from_entries(entries: Vec<VelocityEntry<A>>, high_water: TimeMs) -> Self {
        let hw = entries
            .iter()
            .map(|e| e.at)
            .max()
            .map_or(high_water, |m| m.max(high_water));
        Self {
            entries,
            high_water: hw,
        }
    }

    /// Accounting time for `now`.
    #[must_use]
    pub fn accounting_time(&self, now: TimeMs) -> TimeMs {
        now.max(self.high_water)
    }

    /// Spent within `(t - window, t]`.
    fn spent_in(&self, t: TimeMs, window_ms: u64) -> Option<A> {
        let start = t.checked_sub_ms(window_ms).unwrap_or(TimeMs(i64::MIN));
        self.entries
            .iter()
            .filter(|e| e.at > start && e.at <= t)
            .try_fold(A::ZERO, |acc, e| acc.add_checked(e.amount))
    }

    /// Checks `amount` against every window; returns the totals per window
    /// (policy order) including `amount`, for the audit entry.
    ///
    /// # Errors
    /// [`VelocityExceeded`] for the first window over its cap (an overflow
    /// counts as over).
    pub fn check(
        &self,
        windows: &[VelocityWindow<A>],
        now: TimeMs,
        amount: A,
    ) -> Result<Vec<A>, VelocityExceeded<A>> {
        let t = self.accounting_time(now);
        windows
            .iter()
            .map(|w| {
                let spent = self.spent_in(t, w.window_ms).unwrap_or(A::MAX);
                match spent.add_checked(amount) {
                    Some(total) if total <= w.cap => Ok(total),
                    _ => Err(VelocityExceeded {
                        window_ms: w.window_ms,
                        cap: w.cap,
                        spent,
                        amount,
                    }),
                }
            })
            .collect()
    }

    /// Records an approved spend at the accounting time of `now`; returns
    /// the entry the node persists (before releasing the signature).
    pub fn record(&mut self, now: TimeMs, amount: A) -> VelocityEntry<A> {
        let at = self.accounting_time(now);
        let e = VelocityEntry { at, amount };
        self.entries.push(e);
        self.high_water = at;
        e
    }

    /// Drops records older than the longest window; returns the cut-off time
    /// (the node deletes rows with `at_ms <= cutoff`).
    pub fn prune(&mut self, windows: &[VelocityWindow<A>], now: TimeMs) -> Option<TimeMs> {
        let longest = windows.iter().map(|w| w.window_ms).max()?;
        let cutoff = self.accounting_time(now).checked_sub_ms(longest)?;
        self.entries.retain(|e| e.at > cutoff);
        Some(cutoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Vec<VelocityWindow> {
        vec![
            VelocityWindow {
                window_ms: 3_600_000,
                cap: Sats(100),
            },
            VelocityWindow {
                window_ms: 86_400_000,
                cap: Sats(250),
            },
        ]
    }

    #[test]
    fn windows_roll() {
        let mut l = VelocityLedger::default();
        let t0 = TimeMs(1_000_000_000);
        assert_eq!(
            l.check(&windows(), t0, Sats(100)),
            Ok(vec![Sats(100), Sats(100)])
        );
        l.record(t0, Sats(100));
        let e = l
            .check(&windows(), t0.checked_add_ms(1_000).unwrap(), Sats(1))
            .unwrap_err();
        assert_eq!(e.window_ms, 3_600_000);
        // An hour later the hourly window has rolled; the daily one counts.
        let t1 = t0.checked_add_ms(3_600_000).unwrap();
        assert_eq!(
            l.check(&windows(), t1, Sats(100)),
            Ok(vec![Sats(100), Sats(200)])
        );
        l.record(t1, Sats(100));
        let t2 = t1.checked_add_ms(3_600_000).unwrap();
        let e = l.check(&windows(), t2, Sats(51)).unwrap_err();
        assert_eq!(e.window_ms, 86_400_000);
    }

    #[test]
    fn a_backwards_clock_never_reopens_a_window() {
        let mut l = VelocityLedger::default();
        let t0 = TimeMs(10_000_000_000);
        l.record(t0, Sats(100));
        // The clock jumps back 2 days: accounting time stays at t0.
        let back = t0.checked_sub_ms(2 * 86_400_000).unwrap();
        assert!(l.check(&windows(), back, Sats(1)).is_err());
        // Reloaded from rows, the high-water mark is recovered.
        let reloaded = VelocityLedger::from_entries(l.entries.clone(), TimeMs(0));
        assert!(reloaded.check(&windows(), back, Sats(1)).is_err());
    }

    #[test]
    fn prune_keeps_the_longest_window() {
        let mut l = VelocityLedger::default();
        l.record(TimeMs(0), Sats(1));
        l.record(TimeMs(86_400_000), Sats(1));
        let cut = l.prune(&windows(), TimeMs(86_400_000)).unwrap();
        assert_eq!(cut, TimeMs(0));
        assert_eq!(l.entries.len(), 1);
        assert!(l.check(&[], TimeMs(0), Sats(u64::MAX)).is_ok());
        let mut huge = VelocityLedger::default();
        huge.record(TimeMs(0), Sats(u64::MAX));
        assert!(huge.check(&windows(), TimeMs(0), Sats(1)).is_err());
    }

    #[test]
    fn the_same_ledger_counts_wei_without_overflow() {
        use crate::units::Wei;
        let w = [VelocityWindow {
            window_ms: 1_000,
            cap: Wei(u128::MAX),
        }];
        let mut l: VelocityLedger<Wei> = VelocityLedger::default();
        l.record(TimeMs(10), Wei(u128::MAX));
        // Any more would overflow u128: refused, never wrapped.
        let e = l.check(&w, TimeMs(10), Wei(1)).unwrap_err();
        assert_eq!(e.spent, Wei(u128::MAX));
        // The window rolls.
        assert_eq!(l.check(&w, TimeMs(1_010), Wei(1)), Ok(vec![Wei(1)]));
    }
}
