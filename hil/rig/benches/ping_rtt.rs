//! Ping round trip through the link emulator at 115200 Bd against the
//! emulated wire time of the bytes exchanged (the TC frame up, the three
//! report frames down), measured in the same run. The real daemon runs
//! in-process on its own runtime with its real serial transport on a pty;
//! the ground is the real client. Prints ratios; asserts nothing about time
//! (target: round trip <= 1.3x wire time).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::config::{GroundConfig, GroundState};
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_node::config::Config;
use spacenode_wire::services::{apid, service, subtype};

fn main() {
    let baud = 115_200u32;
    let pings = if std::env::var_os("QUICK").is_some() {
        50
    } else {
        300
    };
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key: [u8; 32] = rand::random();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cfg = Config::parse(&format!(
        "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n[link]\ndevice = \"{}\"\nbaud = {baud}\ntx_key_id = 1\n\
         [[link.keys]]\nid = 1\nkey = \"{}\"\n[telemetry]\nhk_interval_s = 0\n",
        state.display(),
        emu.node_path().display(),
        hex::encode(key)
    ))
    .unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(spacenode_node::daemon::run(cfg)).unwrap();
    });
    let gpath = dir.path().join("ground.toml");
    std::fs::write(
        &gpath,
        GroundConfig::render(1, 1, &[(1, key)], &dir.path().join("gstate.json")),
    )
    .unwrap();
    // A new key for a new node: the empty ground state is exact.
    GroundState::provision(&dir.path().join("gstate.json")).unwrap();
    let mut link = Link::open(
        GroundConfig::load(&gpath).unwrap(),
        emu.ground_path().to_str().unwrap(),
        baud,
    )
    .unwrap();
    let policy = RetryPolicy {
        attempts: 50,
        ..RetryPolicy::for_link(baud, Duration::ZERO, 50)
    };
    // Warm up: the node's start-up events drain, caches fill.
    for _ in 0..10 {
        let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
        link.request(&tc, policy).unwrap();
    }
    let byte_time = 10.0 / f64::from(baud);
    let (mut rtts, mut wires) = (Vec::new(), Vec::new());
    let mut retried = 0;
    for _ in 0..pings {
        let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
        let x = link.request(&tc, policy).unwrap();
        if x.attempts > 1 {
            retried += 1;
            continue;
        }
        rtts.push(x.last_rtt.as_secs_f64());
        wires.push((x.bytes_up + x.bytes_down) as f64 * byte_time);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut ratios: Vec<f64> = rtts.iter().zip(&wires).map(|(r, w)| r / w).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = mean(&rtts) / mean(&wires);
    println!(
        "== ping round trip through the link emulator at {baud} Bd ({} pings, {retried} retried and left out)",
        rtts.len()
    );
    println!(
        "   bytes per exchange {:.0} (up+down), wire time {:.2} ms, round trip {:.2} ms",
        mean(&wires) / byte_time,
        mean(&wires) * 1e3,
        mean(&rtts) * 1e3
    );
    println!(
        "   ratio round trip / wire time: mean {ratio:.3}, p50 {:.3}, p99 {:.3}",
        ratios[ratios.len() / 2],
        ratios[ratios.len() * 99 / 100]
    );
    let verdict = if ratio <= 1.3 { "PASS" } else { "FAIL" };
    println!("{verdict}: round trip {ratio:.3}x the emulated wire time (target <= 1.3x)");
}
