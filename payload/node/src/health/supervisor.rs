//! Task supervision: every long-running task holds a [`Heartbeat`] and beats
//! it while it makes progress (each loop turn, and on an idle tick). The
//! supervisor, on its own OS thread so that a blocked async runtime cannot
//! stop it, checks that every task beat within its deadline and pets the
//! watchdog only then. A stuck, deadlocked or dead task stops the petting,
//! and the watchdog (systemd or the hardware timer) restarts the node.
//!
//! This module must never pet the watchdog on behalf of a task that has not
//! beaten, and never restart anything itself: recovery is the watchdog's
//! job, so that it also works when this process is wedged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::watchdog::Watchdog;

/// A task's heartbeat. Cheap to clone and to beat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    count: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Records progress.
    pub fn beat(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Watched {
    name: &'static str,
    deadline: Duration,
    count: Arc<AtomicU64>,
    seen: u64,
    last_progress: Instant,
}

/// A task that stopped beating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// Task name.
    pub task: &'static str,
    /// How long it has been silent.
    pub silent_for: Duration,
}

/// The set of supervised tasks.
#[derive(Debug, Default)]
pub struct Supervisor {
    tasks: Vec<Watched>,
}

impl Supervisor {
    /// An empty supervisor.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a task that must beat at least every `deadline`.
    pub fn register(&mut self, name: &'static str, deadline: Duration, now: Instant) -> Heartbeat {
        let count = Arc::new(AtomicU64::new(0));
        self.tasks.push(Watched {
            name,
            deadline,
            count: count.clone(),
            seen: 0,
            last_progress: now,
        });
        Heartbeat { count }
    }

    /// Whether every task beat within its deadline.
    ///
    /// # Errors
    /// [`Stuck`] naming the first silent task.
    pub fn check(&mut self, now: Instant) -> Result<(), Stuck> {
        let mut first_stuck = None;
        for t in &mut self.tasks {
            let count = t.count.load(Ordering::Relaxed);
            if count != t.seen {
                t.seen = count;
                t.last_progress = now;
            }
            let silent_for = now.saturating_duration_since(t.last_progress);
            if silent_for > t.deadline && first_stuck.is_none() {
                first_stuck = Some(Stuck {
                    task: t.name,
                    silent_for,
                });
            }
        }
        first_stuck.map_or(Ok(()), Err)
    }
}

/// Runs the supervision loop on the current thread until `stop` is set:
/// checks every `period` and pets `watchdog` while all tasks are healthy.
/// Once a task is stuck, petting stops for good (the watchdog must fire).
pub fn run(
    mut supervisor: Supervisor,
    mut watchdog: Box<dyn Watchdog>,
    period: Duration,
    stop: &AtomicBool,
) {
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        match supervisor.check(Instant::now()) {
            Ok(()) if !reported => {
                if let Err(e) = watchdog.pet() {
                    tracing::warn!(error = %e, "cannot pet the watchdog");
                }
            }
            Ok(()) => {}
            Err(stuck) => {
                if !reported {
                    tracing::error!(
                        task = stuck.task,
                        silent_ms = stuck.silent_for.as_millis() as u64,
                        "task stuck; no longer petting the watchdog"
                    );
                    reported = true;
                }
            }
        }
        std::thread::sleep(period);
    }
    if !reported {
        watchdog.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beating_tasks_are_healthy_and_a_silent_one_is_named() {
        let t0 = Instant::now();
        let mut s = Supervisor::new();
        let link = s.register("link", Duration::from_secs(2), t0);
        let node = s.register("node", Duration::from_secs(2), t0);
        for i in 1..10u64 {
            link.beat();
            if i < 5 {
                node.beat();
            }
            let now = t0 + Duration::from_secs(i);
            let verdict = s.check(now);
            if i <= 6 {
                assert_eq!(verdict, Ok(()), "second {i}");
            } else {
                assert_eq!(verdict.unwrap_err().task, "node", "second {i}");
            }
        }
    }
}
