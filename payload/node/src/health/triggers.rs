//! The safe-mode triggers that need memory of the past: boot loops, bursts
//! of authentication failures or policy refusals, loss of contact, low disk.
//! Each is a pure function of stored facts and the current time.
//!
//! This module must never persist anything itself; callers store what the
//! functions return before acting on it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Boot-loop rule: with the previous start times (UNIX ms, newest last),
/// does this start make more than `max_starts` within `window`? Start
/// times in the future (a clock stepped back) count as inside the window:
/// a glitching clock must not hide a boot loop.
#[must_use]
pub fn boot_loop(
    previous_starts_ms: &[i64],
    now_ms: i64,
    max_starts: u32,
    window: Duration,
) -> bool {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let recent = previous_starts_ms
        .iter()
        .filter(|&&t| t > now_ms || now_ms.saturating_sub(t) <= window_ms)
        .count();
    // `recent` earlier starts plus this one.
    recent.saturating_add(1) > usize::try_from(max_starts).unwrap_or(usize::MAX)
}

/// Start times worth keeping: the newest `keep`, with `now` appended.
#[must_use]
pub fn record_start(previous_starts_ms: &[i64], now_ms: i64, keep: usize) -> Vec<i64> {
    let mut v: Vec<i64> = previous_starts_ms.to_vec();
    v.push(now_ms);
    let drop = v.len().saturating_sub(keep.max(1));
    v.drain(..drop);
    v
}

/// Counts events in a sliding window; trips when more than `threshold`
/// happened within `window`.
#[derive(Debug)]
pub struct BurstDetector {
    window: Duration,
    threshold: usize,
    events: VecDeque<Instant>,
}

impl BurstDetector {
    /// A detector; a threshold of 0 disables it.
    #[must_use]
    pub fn new(threshold: usize, window: Duration) -> Self {
        Self {
            window,
            threshold,
            events: VecDeque::new(),
        }
    }

    /// Records one event; true if the burst threshold is now exceeded.
    pub fn record(&mut self, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        while self
            .events
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.events.pop_front();
        }
        self.events.push_back(now);
        // Bounded: never more than threshold + 1 entries are needed.
        while self.events.len() > self.threshold.saturating_add(1) {
            self.events.pop_front();
        }
        self.events.len() > self.threshold
    }
}

/// Loss of contact: no authenticated command since `last_contact_ms` for
/// longer than `limit`. A clock before the last contact (stepped back) is
/// not loss of contact.
#[must_use]
pub fn lost_contact(last_contact_ms: i64, now_ms: i64, limit: Duration) -> bool {
    let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(last_contact_ms) > limit_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn boot_loop_counts_starts_inside_the_window() {
        let w = Duration::from_secs(600);
        // Four earlier starts within 10 min, limit 5: this is the 5th, fine.
        assert!(!boot_loop(&[0, MIN, 2 * MIN, 3 * MIN], 4 * MIN, 5, w));
        // Five earlier: the 6th start is a loop.
        assert!(boot_loop(
            &[0, MIN, 2 * MIN, 3 * MIN, 4 * MIN],
            5 * MIN,
            5,
            w
        ));
        // The same starts spread over hours are not.
        assert!(!boot_loop(
            &[0, 60 * MIN, 120 * MIN, 180 * MIN, 240 * MIN],
            300 * MIN,
            5,
            w
        ));
        // A clock stepped back makes old starts look future: still counted.
        assert!(boot_loop(&[10 * MIN; 5], MIN, 5, w));
    }

    #[test]
    fn record_start_keeps_the_newest() {
        assert_eq!(record_start(&[1, 2, 3], 4, 3), vec![2, 3, 4]);
        assert_eq!(record_start(&[], 9, 3), vec![9]);
    }

    #[test]
    fn burst_trips_above_threshold_within_window_only() {
        let t0 = Instant::now();
        let mut b = BurstDetector::new(3, Duration::from_secs(10));
        for i in 0..3 {
            assert!(!b.record(t0 + Duration::from_secs(i)));
        }
        assert!(b.record(t0 + Duration::from_secs(3)));
        let mut slow = BurstDetector::new(3, Duration::from_secs(10));
        for i in 0..20 {
            assert!(!slow.record(t0 + Duration::from_secs(i * 4)));
        }
        let mut off = BurstDetector::new(0, Duration::from_secs(10));
        assert!(!off.record(t0));
    }

    #[test]
    fn contact_loss_and_backward_clock() {
        let limit = Duration::from_secs(3600);
        assert!(!lost_contact(0, 3_600_000, limit));
        assert!(lost_contact(0, 3_600_001, limit));
        assert!(!lost_contact(5_000_000, 0, limit));
    }
}
