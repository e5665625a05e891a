//! Graceful degradation with real failures, not configured thresholds: the
//! state directory on a real, tiny tmpfs filled to ENOSPC, and the database
//! write-locked by another process (SQLite busy). In both the daemon keeps
//! the link, answers with a reason code instead of crashing, never
//! crash-loops on restart, shows the condition in housekeeping, and carries
//! on once the condition clears. (Corruption and a replugged USB bridge are
//! in `health.rs` and `cli.rs`.)
//!
//! Mounting a tmpfs needs root, which the test machines and CI are.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use spacenode_ground::client::{GroundError, RetryPolicy};
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_system_tests::{
    Fixture, Node, assert_sign_refused_by_mode, housekeeping, mode_status, patient, repo_root,
};
use spacenode_wire::ReasonCode;
use spacenode_wire::services::{apid, service, subtype};

const BAUD: u32 = 921_600;
const SAFE_FREE: u64 = 1 << 20;

/// A tmpfs mounted over a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mount -t tmpfs on {} failed (these tests need root)",
            dir.display()
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem refuses (ENOSPC).
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    // The last partial page as well.
    while let Ok(n) = f.write(&[0u8; 512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

fn ping(link: &mut spacenode_ground::client::Link) {
    let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
    link.request(&tc, patient(BAUD)).expect("ping answered");
}

fn setup() -> (Emulator, Fixture) {
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = Fixture::new(
        emu.node_path(),
        BAUD,
        &format!(
            "{}storage_warn_free_bytes = {}\n\n[health]\nsafe_free_bytes = {SAFE_FREE}\nboot_loop_starts = 100\n",
            Fixture::QUIET,
            4 * SAFE_FREE
        ),
    );
    (emu, fx)
}

/// The disk fills up under a running node, then the node is restarted on
/// the full disk: it comes up (no crash loop) in safe mode 0x0809 with the
/// link alive and signing refused, and housekeeping shows the free space.
#[test]
fn a_full_disk_is_survived_without_a_crash_loop() {
    let (emu, fx) = setup();
    let _tmpfs = Tmpfs::mount(&fx.state_dir, "12m");
    let mut node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let hk = housekeeping(&mut link, patient(BAUD));
    assert_eq!((hk.mode, hk.mode_reason), (1, 0), "normal on an empty disk");
    assert!(
        hk.storage_free_bytes > 4 * SAFE_FREE,
        "{}",
        hk.storage_free_bytes
    );

    // The node reserves its ballast (the safe threshold's worth of real
    // bytes) while there is room; a full disk releases it at start.
    let ballast = fx.state_dir.join("ballast");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ballast.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::metadata(&ballast).unwrap().len(), SAFE_FREE);

    let filler = fx.state_dir.join("filler");
    let filled = fill(&filler);
    println!("filled {filled} bytes");
    // The running node still talks: its sequence numbers were reserved
    // ahead, and telemetry reports the full disk.
    for _ in 0..5 {
        ping(&mut link);
    }
    let hk = housekeeping(&mut link, patient(BAUD));
    assert!(
        hk.storage_free_bytes < SAFE_FREE,
        "{}",
        hk.storage_free_bytes
    );
    // A command that must persist fails with its reason, nothing crashes.
    let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_ENTER_SAFE, vec![]);
    match link.request(&tc, patient(BAUD)) {
        Err(GroundError::Refused { code, .. }) => assert_eq!(code, ReasonCode::STORAGE),
        // SQLite may still find room in pages it already owns.
        Ok(_) => println!("safe-mode entry still fitted in the database's own pages"),
        Err(e) => panic!("enter-safe on a full disk: {e}"),
    }
    assert!(node.running(), "the daemon survived the full disk");

    // Restart on the full disk: READY again, safe mode for low disk (or the
    // ground command, if it was persisted above), the link alive.
    node.kill9();
    let mut node = Node::start(&fx);
    assert!(!ballast.exists(), "released to make room for the start");
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!(st.mode, 2, "safe mode after a start on a full disk: {st:?}");
    assert!(
        st.reason == 0x0809 || st.reason == 0x0801,
        "reason {:#06x}",
        st.reason
    );
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.running(), "no crash loop on a full disk");
    for _ in 0..5 {
        ping(&mut link);
    }

    // Space comes back: telemetry shows it, the link carries on (leaving
    // safe mode still takes the administrators' quorum).
    std::fs::remove_file(&filler).unwrap();
    let hk = housekeeping(&mut link, patient(BAUD));
    assert!(
        hk.storage_free_bytes > 4 * SAFE_FREE,
        "{}",
        hk.storage_free_bytes
    );
    assert_eq!(hk.mode, 2);
    ping(&mut link);
    assert!(node.running());
}

/// Another process holds the database's write lock longer than the
/// daemon's busy timeout (1 s, under the supervisor's task deadline): a
/// header batch that must be stored is refused with its storage code
/// (0x0328, `ChainError::Store`, nothing changed)
/// within about that second rather than hanging the node; a safe-mode
/// entry still takes effect (failing safe needs no disk); the link and
/// housekeeping carry on; once the lock is gone the same sync succeeds and
/// the safe mode is stored, so a kill -9 does not forget it.
#[test]
fn a_locked_database_is_refused_with_a_reason_then_recovers() {
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = Fixture::new(
        emu.node_path(),
        BAUD,
        &format!(
            "{}\n[chain]\nnetwork = \"mainnet\"\nstart = \"genesis\"\n",
            Fixture::QUIET
        ),
    );
    let mut node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    ping(&mut link);
    // The ground CLI below takes the serial port exclusively.
    drop(link);
    let headers = fx.dir.path().join("headers.bin");
    let raw = std::fs::read(
        std::env::var_os("SPACENODE_SHARED_DATA")
            .map_or_else(
                || repo_root().join("../shared/data"),
                std::path::PathBuf::from,
            )
            .join("bitcoin/headers/mainnet_headers_0_39999.bin"),
    )
    .expect("real mainnet headers in ../shared/data (see SOURCES.md there)");
    std::fs::write(&headers, &raw[..100 * 80]).unwrap();
    let sync = |fx: &Fixture| {
        fx.ground(
            emu.ground_path(),
            &[
                "--retries",
                "1",
                "--latency-ms",
                "3000",
                "chain",
                "sync",
                "--headers",
                headers.to_str().unwrap(),
            ],
        )
    };

    let db = rusqlite::Connection::open(fx.state_dir.join("spacenode.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    let out = sync(&fx);
    let waited = locked.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !out.status.success(),
        "sync while locked: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("0x0328") && stderr.contains("nothing changed"),
        "refused with the chain's storage code: {stdout}\n{stderr}"
    );
    println!("sync refused after {waited:.1?} of lock");
    assert!(waited < Duration::from_secs(15), "{waited:?}");

    // Failing safe needs no disk: entered in memory, answered promptly.
    let mut link = fx.link(emu.ground_path(), BAUD);
    let once = RetryPolicy {
        attempts: 1,
        first_timeout: Duration::from_secs(10),
        min_timeout: Duration::from_secs(10),
        max_timeout: Duration::from_secs(10),
    };
    let t = Instant::now();
    let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_ENTER_SAFE, vec![]);
    link.request(&tc, once).expect("enter-safe answered");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let hk = housekeeping(&mut link, patient(BAUD));
    assert_eq!((hk.mode, hk.mode_reason), (2, 0x0801));
    assert_eq!(hk.chain_tip_height, 0, "nothing half-stored");
    assert!(node.running());

    db.execute_batch("COMMIT").unwrap();
    drop(db);
    drop(link);
    let out = sync(&fx);
    assert!(
        out.status.success(),
        "sync after the lock: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut link = fx.link(emu.ground_path(), BAUD);
    let hk = housekeeping(&mut link, patient(BAUD));
    assert_eq!(hk.chain_tip_height, 99);
    assert!(node.running());

    // The safe mode the lock kept off the disk is stored once the lock is
    // gone (retried every 5 s): a power cut now does not forget it.
    drop(link);
    std::thread::sleep(Duration::from_secs(6));
    node.kill9();
    let node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!(
        (st.mode, st.reason),
        (2, 0x0801),
        "safe mode survived the restart: {st:?}"
    );
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    drop(node);
}
