//! The runtime: wires the transport, the node task and the clock together
//! and tells systemd when the daemon is ready. All decisions are in
//! [`crate::node`]; this module only moves bytes and time between the parts.
//!
//! It must never hold state of its own beyond channels and timers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::link::serial::{self, LinkEvent};
use crate::node::{Node, NodeError, Now};

/// Frames queued towards the transport before new ones are dropped.
const OUTBOUND_QUEUE: usize = 256;

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// [`NodeError`] if the node's state cannot be opened.
pub async fn run(cfg: Config) -> Result<(), NodeError> {
    let now = Now::read();
    let mut node = Node::start(cfg.clone(), now)?;
    let (event_tx, mut event_rx) = mpsc::channel(256);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    let stats = Arc::new(Mutex::new(Default::default()));
    tokio::spawn(serial::run(
        cfg.link.device.clone(),
        cfg.link.baud,
        event_tx,
        out_rx,
        stats.clone(),
    ));

    let send = |node: &mut Node, frames: Vec<Vec<u8>>| {
        for f in frames {
            if out_tx.try_send(f).is_err() {
                node.count_dropped();
            }
        }
    };
    let boot = node.on_start(Now::read());
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
                let now = Now::read();
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
            }
            _ = tick.tick() => {
                if let Ok(s) = stats.lock() {
                    node.set_frame_stats(*s);
                }
                let frames = node.tick(Now::read());
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
    Ok(())
}
