//! Rate limiting of anomaly events. Anything an uplink can trigger (forged
//! packets, replays) must not flood the downlink, the log or the database:
//! per event id at most one report per interval. Counting events aggregate
//! ("17 authentication failures since the last report"); state events keep
//! the latest value and deliver it when the interval has passed, so the
//! ground still learns the current state.
//!
//! Pure: time comes in as an argument. It must never drop the fact that
//! something happened, only merge reports of it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spacenode_wire::msg::EventId;

#[derive(Debug, Default)]
struct Slot {
    last_emit: Option<Instant>,
    count: u32,
    last_key: u16,
    latest: Option<Vec<u8>>,
}

/// Per-event-id limiter.
#[derive(Debug)]
pub struct EventLimiter {
    min_interval: Duration,
    slots: BTreeMap<u16, Slot>,
    suppressed: u64,
}

impl EventLimiter {
    /// At most one report per `min_interval` and event id.
    #[must_use]
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            slots: BTreeMap::new(),
            suppressed: 0,
        }
    }

    fn due(&self, slot: &Slot, now: Instant) -> bool {
        slot.last_emit
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval)
    }

    /// Counts one occurrence of a counting event. Returns the aux data
    /// (count u32, last key id u16) when a report is due now.
    pub fn count(&mut self, id: EventId, key_id: u16, now: Instant) -> Option<Vec<u8>> {
        let slot = self.slots.entry(id.0).or_default();
        slot.count = slot.count.saturating_add(1);
        slot.last_key = key_id;
        let due = slot
            .last_emit
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if due {
            let slot = self.slots.entry(id.0).or_default();
            Some(Self::take_count(slot, now))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }

    fn take_count(slot: &mut Slot, now: Instant) -> Vec<u8> {
        let mut aux = slot.count.to_be_bytes().to_vec();
        aux.extend_from_slice(&slot.last_key.to_be_bytes());
        slot.count = 0;
        slot.last_emit = Some(now);
        aux
    }

    /// Offers the latest state of a state event. Returns it when a report is
    /// due now, else keeps it (replacing an older pending one).
    pub fn latest(&mut self, id: EventId, aux: Vec<u8>, now: Instant) -> Option<Vec<u8>> {
        let due = self.slots.get(&id.0).is_none_or(|s| self.due(s, now));
        let slot = self.slots.entry(id.0).or_default();
        if due {
            slot.last_emit = Some(now);
            slot.latest = None;
            Some(aux)
        } else {
            if slot.latest.replace(aux).is_some() {
                self.suppressed = self.suppressed.saturating_add(1);
            }
            None
        }
    }

    /// Reports that have become due.
    pub fn flush(&mut self, now: Instant) -> Vec<(EventId, Vec<u8>)> {
        let interval = self.min_interval;
        let mut out = Vec::new();
        for (id, slot) in &mut self.slots {
            let due = slot
                .last_emit
                .is_none_or(|t| now.saturating_duration_since(t) >= interval);
            if !due {
                continue;
            }
            if slot.count > 0 {
                out.push((EventId(*id), Self::take_count(slot, now)));
            } else if let Some(aux) = slot.latest.take() {
                slot.last_emit = Some(now);
                out.push((EventId(*id), aux));
            }
        }
        out
    }

    /// Occurrences merged into a later report instead of sent on their own.
    #[must_use]
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_events_aggregate_within_interval() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(Duration::from_secs(1));
        let id = EventId::AUTH_FAILURES;
        assert_eq!(l.count(id, 3, t0), Some(vec![0, 0, 0, 1, 0, 3]));
        for _ in 0..99 {
            assert_eq!(l.count(id, 4, t0 + Duration::from_millis(10)), None);
        }
        assert!(l.flush(t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(
            l.flush(t0 + Duration::from_secs(1)),
            vec![(id, vec![0, 0, 0, 99, 0, 4])]
        );
        assert!(l.flush(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(l.suppressed(), 99);
    }

    #[test]
    fn state_events_deliver_the_latest_value() {
        let t0 = Instant::now();
        let mut l = EventLimiter::new(Duration::from_secs(1));
        let id = EventId::REPLAY;
        assert_eq!(l.latest(id, vec![1], t0), Some(vec![1]));
        assert_eq!(l.latest(id, vec![2], t0), None);
        assert_eq!(l.latest(id, vec![3], t0), None);
        assert_eq!(l.flush(t0 + Duration::from_secs(1)), vec![(id, vec![3])]);
    }
}
