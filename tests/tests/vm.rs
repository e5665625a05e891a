//! The virtual flight board end to end, once per board variant:
//! `tests/vm/build-image.sh` builds two images from one cached debootstrap
//! base (under /var/cache/spacenode-vm; CI builds it from scratch), then
//! two `hil-run`s boot them in QEMU (TCG) side by side, one core each,
//! with swtpm, an i6300esb watchdog, a kvaser_pci CAN controller and the
//! link UART on a host pty, through the link emulator:
//!
//! - the flight chain (`--watchdog systemd`: PID 1 holds the hardware
//!   watchdog) runs every scenario of `hil/scenarios` on one boot where it
//!   can: boot and READY, the board's devices, ping and housekeeping, a
//!   lossy link, a power cut during a request stream, a hung task restarted
//!   by systemd's watchdog, a boot loop into safe mode (sign requests
//!   refused) left by the administrators' quorum, co-signing with the
//!   TPM-sealed seed across a power cut;
//! - the daemon-owned watchdog (`--watchdog device`: spacenoded holds
//!   /dev/watchdog0 itself) runs the hardware watchdog reset.
//!
//! A scenario still waiting for other work must be reported as skipped
//! (pending), never as passed.
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
    ("hardware-watchdog-reset", "pass"),
    ("boot-loop-safe-mode", "pass"),
    ("cosign", "pass"),
];

/// The scenarios of the daemon-owned watchdog board (`build-image.sh
/// --watchdog device`); the flight-chain board must skip them for lack of
/// the `device-watchdog` capability.
const DEVICE_WATCHDOG: &[&str] = &["hardware-watchdog-reset"];

/// One board variant: its image directory and `build-image.sh` arguments.
struct Variant {
    name: &'static str,
    dir: &'static str,
    build_args: &'static [&'static str],
    only: &'static [&'static str],
}

const VARIANTS: [Variant; 2] = [
    Variant {
        name: "flight chain",
        dir: "vm-board",
        build_args: &[],
        only: &[],
    },
    Variant {
        name: "device watchdog",
        dir: "vm-wdt",
        build_args: &["--watchdog", "device"],
        only: DEVICE_WATCHDOG,
    },
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

/// `pass`, `fail`, `pending` or `skipped`.
fn outcome(case: &str) -> &'static str {
    if case.contains("<failure") {
        "fail"
    } else if case.contains("<skipped message=\"pending:") {
        "pending"
    } else if case.contains("<skipped") {
        "skipped"
    } else {
        "pass"
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

fn build(v: &Variant, out_dir: &Path) -> (f64, String) {
    let t0 = Instant::now();
    let build = Command::new("bash")
        .arg(repo_root().join("tests/vm/build-image.sh"))
        .arg("--binary")
        .arg(bin("spacenoded"))
        .arg("--out")
        .arg(out_dir)
        .args(v.build_args)
        .status()
        .expect("run build-image.sh");
    assert!(
        build.success(),
        "building the virtual board ({}) failed: {build}",
        v.name
    );
    let json = std::fs::read_to_string(out_dir.join("build.json")).unwrap_or_default();
    (t0.elapsed().as_secs_f64(), json.trim().to_string())
}

fn start_run(v: &Variant, out_dir: &Path) -> std::process::Child {
    let junit_path = out_dir.join("junit.xml");
    let _ = std::fs::remove_file(&junit_path);
    // setpriv: if the test is killed, hil-run dies with it, and QEMU and
    // swtpm with hil-run.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--"])
        .arg(bin("hil-run"))
        .arg("--vm-dir")
        .arg(out_dir)
        .arg("--scenarios")
        .arg(repo_root().join("hil/scenarios"))
        .arg("--junit")
        .arg(&junit_path)
        .args(["--emulate", "baud=115200,seed=7"]);
    for name in v.only {
        cmd.args(["--only", name]);
    }
    cmd.spawn().expect("run hil-run")
}

#[test]
fn hil_suite_passes_on_the_virtual_board() {
    require_tools();
    let t0 = Instant::now();
    let dirs: Vec<PathBuf> = VARIANTS.iter().map(|v| target_dir().join(v.dir)).collect();
    // The base is built (or taken from the cache) once; each image stage
    // takes seconds.
    let builds: Vec<(f64, String)> = VARIANTS
        .iter()
        .zip(&dirs)
        .map(|(v, d)| build(v, d))
        .collect();
    let build_s = t0.elapsed().as_secs_f64();

    // Both boards at once: each QEMU (TCG) runs on its own core.
    let t1 = Instant::now();
    let mut runs: Vec<(std::process::Child, Option<f64>)> = VARIANTS
        .iter()
        .zip(&dirs)
        .map(|(v, d)| (start_run(v, d), None))
        .collect();
    let mut statuses = Vec::new();
    for (child, took) in &mut runs {
        let status = child.wait().expect("wait for hil-run");
        *took = Some(t1.elapsed().as_secs_f64());
        statuses.push(status);
    }
    let run_s = t1.elapsed().as_secs_f64();
    for (((v, (b, json)), (_, took)), status) in
        VARIANTS.iter().zip(&builds).zip(&runs).zip(&statuses)
    {
        println!(
            "virtual board, {}: image {b:.1}s ({json}), HIL run done after {:.1}s ({status})",
            v.name,
            took.unwrap_or_default()
        );
    }
    println!(
        "virtual board: images {build_s:.1}s, HIL suites {run_s:.1}s (in parallel), total {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    let junits: Vec<String> = dirs
        .iter()
        .zip(&statuses)
        .map(|(d, status)| {
            std::fs::read_to_string(d.join("junit.xml")).unwrap_or_else(|e| {
                panic!(
                    "no JUnit report from hil-run in {} ({status}): {e}",
                    d.display()
                )
            })
        })
        .collect();
    let (main, device) = (&junits[0], &junits[1]);
    for (name, want) in EXPECTED {
        if DEVICE_WATCHDOG.contains(name) {
            let skipped = testcase(main, name);
            assert!(
                outcome(skipped) == "skipped" && skipped.contains("`device-watchdog` capability"),
                "scenario {name} must be skipped on the flight-chain board:\n{skipped}"
            );
            let case = testcase(device, name);
            assert_eq!(
                outcome(case),
                *want,
                "scenario {name} (device watchdog board):\n{case}"
            );
        } else {
            let case = testcase(main, name);
            assert_eq!(outcome(case), *want, "scenario {name}:\n{case}");
        }
    }
    assert_eq!(
        main.matches("<testcase ").count(),
        EXPECTED.len(),
        "a scenario was added or removed: list its expected outcome in EXPECTED"
    );
    assert_eq!(device.matches("<testcase ").count(), DEVICE_WATCHDOG.len());
    for (v, status) in VARIANTS.iter().zip(&statuses) {
        assert!(
            status.success(),
            "hil-run on the {} board reported failures ({status})",
            v.name
        );
    }
    // Boot to READY in under 3 minutes on this machine (TCG, 2 cores).
    let boot = testcase(main, "boot-ready");
    let ready_s: f64 = boot
        .split("measurement boot_to_ready_s = ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no boot_to_ready_s in {boot}"));
    println!("boot to READY: {ready_s:.1}s");
    assert!(ready_s < 180.0, "boot to READY took {ready_s}s");
}
