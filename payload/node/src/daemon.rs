//! The runtime: wires the transport, the node task and the clock together
//! and tells systemd when the daemon is ready. All decisions are in
//! [`crate::node`]; this module only moves bytes and time between the parts.
//!
//! It must never hold state of its own beyond channels and timers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::config::WatchdogKind;
use crate::health::supervisor::{self, Supervisor};
use crate::health::watchdog::{DeviceWatchdog, NoWatchdog, SystemdWatchdog, Watchdog};
use crate::link::serial::{self, LinkEvent};
use crate::node::{Action, Node, NodeError, Now};

/// The watchdog the configuration asks for; failures to open one are
/// logged and leave the node unwatched rather than down.
fn watchdog(cfg: &Config) -> Box<dyn Watchdog> {
    let systemd = || SystemdWatchdog::from_env().map(|w| Box::new(w) as Box<dyn Watchdog>);
    let chosen = match cfg.health.watchdog {
        WatchdogKind::Auto => systemd(),
        WatchdogKind::Systemd => {
            let w = systemd();
            if w.is_none() {
                tracing::error!(
                    "health.watchdog = systemd but WATCHDOG_USEC is not set (WatchdogSec= in the unit?)"
                );
            }
            w
        }
        WatchdogKind::Device => {
            match DeviceWatchdog::open(&cfg.health.watchdog_device, cfg.health.watchdog_timeout) {
                Ok(w) => Some(Box::new(w) as Box<dyn Watchdog>),
                Err(e) => {
                    tracing::error!(device = %cfg.health.watchdog_device.display(), error = %e, "cannot open the watchdog device");
                    None
                }
            }
        }
        WatchdogKind::None => None,
    };
    chosen.unwrap_or_else(|| Box::new(NoWatchdog))
}

/// Test hook (`health.test_hooks`, development profile only): a file in
/// the state directory whose integer content (ms) is added to the wall
/// clock, so system tests can step the time source like an attacker who
/// controls it. `CLOCK_BOOTTIME` is not touched.
pub const TEST_CLOCK_OFFSET_FILE: &str = "test-clock-offset-ms";

/// Reads the clocks (with the test hook's wall-clock offset, if enabled).
fn read_now(cfg: &Config) -> Now {
    let mut now = Now::read();
    if cfg.health.test_hooks
        && let Some(offset) = std::fs::read_to_string(cfg.state_dir.join(TEST_CLOCK_OFFSET_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
    {
        now.unix_ms = now.unix_ms.saturating_add(offset);
    }
    now
}

/// Frames queued towards the transport before new ones are dropped.
const OUTBOUND_QUEUE: usize = 256;

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// [`NodeError`] if the node's state cannot be opened.
pub async fn run(cfg: Config) -> Result<(), NodeError> {
    let now = read_now(&cfg);
    let mut node = Node::start(cfg.clone(), now)?;
    let (event_tx, mut event_rx) = mpsc::channel(256);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    let stats = Arc::new(Mutex::new(Default::default()));
    let mut sup = Supervisor::new();
    let node_beat = sup.register("node", cfg.health.task_deadline, Instant::now());
    let link_beat = sup.register("link", cfg.health.task_deadline, Instant::now());
    let dog = watchdog(&cfg);
    let period = dog
        .period()
        .min(cfg.health.task_deadline / 2)
        .max(Duration::from_millis(50));
    tracing::info!(
        watchdog = dog.name(),
        period_ms = period.as_millis() as u64,
        "supervisor started"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sup_stop = stop.clone();
    let sup_thread = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || supervisor::run(sup, dog, period, &sup_stop))
        .ok();
    let hang_link = Arc::new(AtomicBool::new(false));
    tokio::spawn(serial::run(
        cfg.link.device.clone(),
        cfg.link.baud,
        event_tx,
        out_rx,
        stats.clone(),
        link_beat,
        hang_link.clone(),
    ));

    let send = |node: &mut Node, frames: Vec<Vec<u8>>| {
        for f in frames {
            if out_tx.try_send(f).is_err() {
                node.count_dropped();
            }
        }
    };
    let boot = node.on_start(read_now(&cfg));
    send(&mut node, boot);

    let mut ready = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let term = async {
            match sigterm.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = event_rx.recv() => {
                let Some(ev) = ev else { break };
                let now = read_now(&cfg);
                // The transport updates the decoder counters before it
                // hands a frame over, so a report built now includes it.
                if let Ok(s) = stats.lock() {
                    node.set_frame_stats(*s);
                }
                let frames = match ev {
                    LinkEvent::Frame(payload) => node.on_frame(&payload, now),
                    LinkEvent::Up => {
                        if !ready {
                            ready = true;
                            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                            tracing::info!(boot_count = node.boot_count(), "spacenoded ready");
                        }
                        node.on_link(true, now)
                    }
                    LinkEvent::Down(_) => node.on_link(false, now),
                };
                send(&mut node, frames);
                match node.take_action() {
                    Some(Action::HangNode) => {
                        // Test hook: block this task (and its runtime
                        // worker) for good. The supervisor sees the node's
                        // heartbeat stop and stops petting the watchdog.
                        tracing::warn!("test hook: node task hangs");
                        loop {
                            std::thread::sleep(Duration::from_secs(3600));
                        }
                    }
                    Some(Action::HangLink) => hang_link.store(true, Ordering::Relaxed),
                    None => {}
                }
            }
            _ = tick.tick() => {
                node_beat.beat();
                if let Ok(s) = stats.lock() {
                    node.set_frame_stats(*s);
                }
                let frames = node.tick(read_now(&cfg));
                send(&mut node, frames);
            }
            _ = term => {
                tracing::info!("terminating");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted");
                break;
            }
        }
    }
    // A clean stop disarms the watchdog (magic close on a device).
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = sup_thread {
        let _ = t.join();
    }
    Ok(())
}
