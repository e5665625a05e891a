//! The virtual flight board end to end, once: `tests/vm/build-image.sh`
//! builds the image (the debootstrap base is cached under
//! /var/cache/spacenode-vm; CI builds it from scratch), then `hil-run` boots
//! it in QEMU (TCG) with swtpm, an i6300esb watchdog, a kvaser_pci CAN
//! controller and the link UART on a host pty, and runs every scenario of
//! `hil/scenarios` through the link emulator: boot and READY, the board's
//! devices, ping and housekeeping, a lossy link, a power cut during a
//! request stream with a reboot, a hung task restarted by systemd's
//! watchdog. The scenarios still waiting for other work (the hardware
//! watchdog's PID 1 hook, safe mode with administrator keys, co-signing)
//! must be reported as skipped (pending), never as passed.
//!
//! Real parts only: the same `spacenoded` binary and systemd units as on
//! the flight image, real QEMU, swtpm, systemd and ptys. Needs root (the
//! image build) and the packages of scripts/install-deps.sh.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use spacenode_system_tests::{bin, repo_root};

/// Expected outcome per scenario: `pass`, or `pending` (skipped with a
/// `pending:` reason).
const EXPECTED: &[(&str, &str)] = &[
    ("boot-ready", "pass"),
    ("board-devices", "pass"),
    ("ping-housekeeping", "pass"),
    ("ping-lossy-link", "pass"),
    ("power-cut", "pass"),
    ("watchdog-restart", "pass"),
    ("hardware-watchdog-reset", "pending"),
    ("boot-loop-safe-mode", "pending"),
    ("cosign", "pending"),
];

fn target_dir() -> PathBuf {
    // target/<profile>/spacenoded -> target
    bin("spacenoded")
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn require_tools() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the virtual board test builds a root file system: run it as root (CI does)"
    );
    for tool in [
        "qemu-system-x86_64",
        "swtpm",
        "debootstrap",
        "mkfs.ext4",
        "e2fsck",
        "debugfs",
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).exists()));
        assert!(
            found,
            "{tool} not found: run scripts/install-deps.sh (qemu-system-x86, swtpm, debootstrap, e2fsprogs)"
        );
    }
}

/// The `<testcase>` element of `name` in a JUnit file.
fn testcase<'a>(junit: &'a str, name: &str) -> &'a str {
    let start = junit
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no testcase {name} in the JUnit report"));
    let rest = &junit[start..];
    let end = rest.find("</testcase>").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn hil_suite_passes_on_the_virtual_board() {
    require_tools();
    let out_dir = target_dir().join("vm-board");
    let t0 = Instant::now();

    let build = Command::new("bash")
        .arg(repo_root().join("tests/vm/build-image.sh"))
        .arg("--binary")
        .arg(bin("spacenoded"))
        .arg("--out")
        .arg(&out_dir)
        .status()
        .expect("run build-image.sh");
    assert!(
        build.success(),
        "building the virtual board failed: {build}"
    );
    let build_s = t0.elapsed().as_secs_f64();
    let build_json = std::fs::read_to_string(out_dir.join("build.json")).unwrap_or_default();

    let junit_path = out_dir.join("junit.xml");
    let _ = std::fs::remove_file(&junit_path);
    let t1 = Instant::now();
    // setpriv: if the test is killed, hil-run dies with it, and QEMU and
    // swtpm with hil-run.
    let run = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(bin("hil-run"))
        .arg("--vm-dir")
        .arg(&out_dir)
        .arg("--scenarios")
        .arg(repo_root().join("hil/scenarios"))
        .arg("--junit")
        .arg(&junit_path)
        .args(["--emulate", "baud=115200,seed=7"])
        .status()
        .expect("run hil-run");
    let run_s = t1.elapsed().as_secs_f64();
    println!(
        "virtual board: image {build_s:.1}s ({}), HIL suite {run_s:.1}s, total {:.1}s",
        build_json.trim(),
        t0.elapsed().as_secs_f64()
    );

    let junit = std::fs::read_to_string(&junit_path)
        .unwrap_or_else(|e| panic!("no JUnit report from hil-run ({run}): {e}"));
    for (name, want) in EXPECTED {
        let case = testcase(&junit, name);
        let got = if case.contains("<failure") {
            "fail"
        } else if case.contains("<skipped message=\"pending:") {
            "pending"
        } else if case.contains("<skipped") {
            "skipped"
        } else {
            "pass"
        };
        assert_eq!(got, *want, "scenario {name}:\n{case}");
    }
    assert_eq!(
        junit.matches("<testcase ").count(),
        EXPECTED.len(),
        "a scenario was added or removed: list its expected outcome in EXPECTED"
    );
    assert!(run.success(), "hil-run reported failures ({run})");
    // Boot to READY in under 3 minutes on this machine (TCG, 2 cores).
    let boot = testcase(&junit, "boot-ready");
    let ready_s: f64 = boot
        .split("measurement boot_to_ready_s = ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no boot_to_ready_s in {boot}"));
    println!("boot to READY: {ready_s:.1}s");
    assert!(ready_s < 180.0, "boot to READY took {ready_s}s");
}
