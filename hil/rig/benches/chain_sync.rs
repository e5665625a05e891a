//! Benchmark (plain main, `harness = false`, prints, asserts nothing about
//! timing): a header sync of the real mainnet headers 0..=39999 from
//! genesis, through the real daemon (`spacenode_node::daemon::run`, built
//! with the bench profile = release, on its own runtime thread in this
//! process) behind the link emulator at 921600 Bd, driven by the ground
//! client exactly as `ground chain sync` drives it.
//!
//! Prints:
//! - the process's peak RSS (VmHWM, /proc/self/status; daemon, emulator and
//!   ground together, so an upper bound for the daemon) and current RSS at
//!   10 %, 50 % and 100 % of the sync, with the database and WAL sizes
//!   (target <= 32 MiB, no growth with height; the WAL stays at SQLite's
//!   auto-checkpoint size, about 4 MiB);
//! - uplink bytes per header: batch payload (target <= 50) and framed on the
//!   wire (envelope, PUS, COBS, delimiters, retries);
//! - sync throughput against the emulated wire time.
//!
//! Real data is read from `shared/data/bitcoin` next to the checkout; the
//! benchmark fails with a message if it is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "benchmark binary, not flight code"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spacenode_ground::chain::{self, HeaderFormat, SyncEvent, SyncOptions};
use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::config::{GroundConfig, GroundState};
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_wire::services::{apid, service, subtype};

const BAUD: u32 = 921_600;

fn data_file() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitcoin/headers/mainnet_headers_0_39999.bin");
    assert!(
        p.is_file(),
        "real Bitcoin headers not found at {} (expected the repository at X/main and the data \
         at X/shared/data/bitcoin); this benchmark needs them",
        p.display()
    );
    p
}

fn proc_status() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Database file and write-ahead log sizes in KiB, as text.
fn db_sizes(state: &Path) -> String {
    let kib = |f: &str| std::fs::metadata(state.join(f)).map_or(0.0, |m| m.len() as f64 / 1024.0);
    format!(
        "db {:7.1} KiB + wal {:7.1} KiB",
        kib("spacenode.db"),
        kib("spacenode.db-wal")
    )
}

fn main() {
    let bytes = std::fs::read(data_file()).expect("read headers");
    let file = chain::parse_headers(&bytes, HeaderFormat::Raw, "mainnet_headers_0_39999.bin")
        .expect("parse headers");
    drop(bytes);
    let total = file.headers.len() as u64 - 1;

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let emu = Emulator::start(LinkParams::clean(BAUD)).expect("emulator");
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let node_toml = dir.path().join("spacenoded.toml");
    std::fs::write(
        &node_toml,
        format!(
            "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n\n\
             [link]\ndevice = \"{}\"\nbaud = {BAUD}\ntx_key_id = 1\n\n\
             [[link.keys]]\nid = 1\nkey = \"{}\"\n\n\
             [telemetry]\nhk_interval_s = 0\n\n\
             [chain]\nnetwork = \"mainnet\"\nstart = \"genesis\"\n",
            state.display(),
            emu.node_path().display(),
            hex::encode(key)
        ),
    )
    .unwrap();
    let cfg = spacenode_node::config::Config::load(&node_toml).expect("node config");
    let window = cfg.chain.window;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        if let Err(e) = rt.block_on(spacenode_node::daemon::run(cfg)) {
            eprintln!("daemon stopped: {e}");
        }
    });

    let ground_toml = dir.path().join("ground.toml");
    std::fs::write(
        &ground_toml,
        GroundConfig::render(1, 1, &[(1, key)], &dir.path().join("ground-state.json")),
    )
    .unwrap();
    // A new key for a new node: the empty ground state is exact.
    GroundState::provision(&dir.path().join("ground-state.json")).unwrap();
    let gcfg = GroundConfig::load(&ground_toml).unwrap();
    let mut link = Link::open(gcfg, emu.ground_path().to_str().unwrap(), BAUD).unwrap();
    let policy = RetryPolicy {
        attempts: 20,
        ..RetryPolicy::for_link(BAUD, Duration::ZERO, 20)
    };
    // The daemon is up once it answers a ping.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
        if link.request(&tc, policy).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "daemon did not answer");
    }
    let _ = link.take_unsolicited();
    let before = emu.stats();
    let (hwm0, rss0) = proc_status();
    println!("chain_sync: mainnet headers 1..=39999 from genesis, window {window}, {BAUD} Bd");
    println!(
        "  before sync             VmHWM {:6.1} MiB  VmRSS {:6.1} MiB  {}",
        mib(hwm0),
        mib(rss0),
        db_sizes(&state)
    );

    let marks = [10u64, 50, 100];
    let mut next_mark = 0usize;
    let mut done = 0u64;
    let mut samples = Vec::new();
    let started = Instant::now();
    let report = chain::sync(
        &mut link,
        policy,
        &file,
        SyncOptions::default(),
        &mut |ev| {
            if let SyncEvent::Batch {
                count, tip_height, ..
            } = ev
            {
                done += u64::from(count);
                while next_mark < marks.len() && done * 100 >= marks[next_mark] * total {
                    let (hwm, rss) = proc_status();
                    samples.push((marks[next_mark], tip_height, hwm, rss, db_sizes(&state)));
                    next_mark += 1;
                }
            }
        },
    )
    .expect("sync");
    let elapsed = started.elapsed();
    let after = emu.stats();
    for (pct, tip, hwm, rss, db) in &samples {
        println!(
            "  {pct:3} % (tip {tip:5})      VmHWM {:6.1} MiB  VmRSS {:6.1} MiB  {db}",
            mib(*hwm),
            mib(*rss),
        );
    }
    let peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let growth = samples
        .last()
        .zip(samples.first())
        .map_or(0, |(l, f)| l.3.saturating_sub(f.3));
    println!(
        "  peak RSS {:.1} MiB (target <= 32 MiB: {}), RSS growth 10 % -> 100 %: {:.1} MiB",
        mib(peak),
        if peak <= 32 * 1024 { "PASS" } else { "FAIL" },
        mib(growth)
    );

    let sent = report.sent_headers.max(1);
    let up_wire = after.uplink.bytes_in - before.uplink.bytes_in;
    let down_wire = after.downlink.bytes_in - before.downlink.bytes_in;
    let payload_per = report.payload_bytes as f64 / sent as f64;
    println!(
        "  headers sent {} in {} batches ({:.1} headers/batch), retries {}",
        report.sent_headers,
        report.batches,
        report.sent_headers as f64 / report.batches.max(1) as f64,
        report.retries
    );
    println!(
        "  uplink payload {:.1} bytes/header (target <= 50: {}), framed on the wire {:.1} \
         bytes/header; downlink {:.1} bytes/header",
        payload_per,
        if payload_per <= 50.0 { "PASS" } else { "FAIL" },
        up_wire as f64 / sent as f64,
        down_wire as f64 / sent as f64
    );
    let byte_time = LinkParams::clean(BAUD).byte_time().as_secs_f64();
    let up_time = up_wire as f64 * byte_time;
    let both_time = (up_wire + down_wire) as f64 * byte_time;
    println!(
        "  sync {:.1} s, {:.0} headers/s; emulated wire time uplink {:.1} s, up+down {:.1} s; \
         elapsed / uplink wire time = {:.2}, elapsed / (up+down) = {:.2}",
        elapsed.as_secs_f64(),
        report.sent_headers as f64 / elapsed.as_secs_f64(),
        up_time,
        both_time,
        elapsed.as_secs_f64() / up_time,
        elapsed.as_secs_f64() / both_time
    );
    println!(
        "  node tip {} {} (file's last header: {})",
        report.status.tip_height,
        report.status.tip_hash,
        file.headers
            .last()
            .map(|h| h.block_hash().to_string())
            .unwrap_or_default()
    );
    assert_eq!(
        report.status.tip_height, 39_999,
        "sync did not reach the end"
    );
    // The daemon thread is not joined: the process exits with it.
    std::process::exit(0);
}
