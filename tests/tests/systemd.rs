//! The systemd files as shipped in `systemd/`: `systemd-analyze verify`
//! accepts the daemon's unit without a single warning, `systemd-analyze
//! security --offline` scores it 2.0 or lower, `systemd-sysusers` creates
//! its user with the device groups, the hardware watchdog drop-in is within
//! what the CM4's watchdog can do, and the sample config is in the daemon's
//! format.
//!
//! These run where systemd is not PID 1 (CI containers): `verify` works on a
//! temporary root holding the unit, the host's own units (for the default
//! dependencies) and the real daemon binary; `security` runs offline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spacenode_system_tests::{bin, repo_root};

fn systemd_file(rel: &str) -> PathBuf {
    repo_root().join("systemd").join(rel)
}

fn analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("systemd-analyze missing: run scripts/install-deps.sh (Debian package systemd)")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A root for `systemd-analyze --root`: the host's units, ours, and the
/// daemon at the path of ExecStart=.
fn unit_root(units: &[(&str, String)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the host's systemd units (package systemd)");
    let dst = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(host_units).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        let to = dst.join(entry.file_name());
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let etc = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&etc).unwrap();
    for (name, content) in units {
        std::fs::write(etc.join(name), content).unwrap();
    }
    let usr_bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&usr_bin).unwrap();
    let daemon = usr_bin.join("spacenoded");
    if std::fs::hard_link(bin("spacenoded"), &daemon).is_err() {
        std::fs::copy(bin("spacenoded"), &daemon).unwrap();
    }
    root
}

fn verify(root: &Path, unit: &str) -> Output {
    analyze(&[
        "verify",
        "--man=no",
        "--generators=no",
        &format!("--root={}", root.display()),
        unit,
    ])
}

#[test]
fn unit_verifies_without_a_warning() {
    let unit = std::fs::read_to_string(systemd_file("spacenoded.service")).unwrap();
    // A broken copy proves the check sees mistakes: systemd only warns about
    // unknown keys and bad values, so the test demands an empty stderr.
    let broken = unit
        .replace("Restart=on-failure", "Restart=sometimes")
        .replace("[Service]", "[Service]\nWatchdogSecs=5");
    let root = unit_root(&[
        ("spacenoded.service", unit),
        ("broken-spacenoded.service", broken),
    ]);

    let out = verify(root.path(), "spacenoded.service");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stdout}{stderr}",
        out.status
    );

    let (_, stderr) = text(&verify(root.path(), "broken-spacenoded.service"));
    assert!(
        stderr.contains("sometimes") && stderr.contains("WatchdogSecs"),
        "the negative control was not caught: {stderr}"
    );
}

/// Parses `→ Overall exposure level for spacenoded.service: 1.2 OK 🙂`.
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let after = line.rsplit_once(".service:")?.1.trim();
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn security_exposure_is_at_most_2_0() {
    let unit = systemd_file("spacenoded.service");
    let out = analyze(&[
        "security",
        "--offline=true",
        "--no-pager",
        &unit.to_string_lossy(),
    ]);
    let (stdout, stderr) = text(&out);
    let score = exposure(&stdout).unwrap_or_else(|| {
        panic!(
            "no exposure level in systemd-analyze security output ({}):\n{stdout}{stderr}",
            out.status
        )
    });
    println!("{stdout}");
    println!("systemd-analyze security --offline=true spacenoded.service: {score}");
    assert!(
        score <= 2.0,
        "exposure {score} > 2.0: a hardening setting was lost\n{stdout}"
    );
    // The settings the score does not weigh but the design relies on.
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "RestartPreventExitStatus=78",
        "StartLimitAction=reboot",
        "StateDirectory=spacenode",
        "ConfigurationDirectory=spacenode",
        "SupplementaryGroups=dialout tss",
        "DevicePolicy=closed",
        "DeviceAllow=/dev/tpmrm0 rw",
        "RestrictAddressFamilies=AF_UNIX AF_CAN",
        "LimitCORE=0",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "spacenoded.service lost `{line}`"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("WatchdogSec=")),
        "WatchdogSec= is missing"
    );
}

#[test]
fn exposure_parser_reads_the_score() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for spacenoded.service: 1.2 OK 🙂\n"),
        Some(1.2)
    );
    assert_eq!(exposure("nothing"), None);
}

#[test]
fn sysusers_creates_the_user_in_the_device_groups() {
    // As at image build: the file in the image, sysusers run on the root.
    let root = tempfile::tempdir().unwrap();
    let conf_dir = root.path().join("usr/lib/sysusers.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::copy(
        systemd_file("sysusers.d/spacenode.conf"),
        conf_dir.join("spacenode.conf"),
    )
    .unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .output()
        .expect("systemd-sysusers (package systemd)");
    assert!(out.status.success(), "{}", text(&out).1);
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("spacenode:"))
        .unwrap_or_else(|| panic!("no spacenode user:\n{passwd}"));
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert!((1..1000).contains(&uid), "a system user, not {uid}: {user}");
    assert!(
        user.ends_with(":/var/lib/spacenode:/usr/sbin/nologin"),
        "{user}"
    );
    for g in ["dialout", "tss"] {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{g}:")))
            .unwrap_or_else(|| panic!("no group {g}:\n{group}"));
        assert!(
            line.rsplit(':')
                .next()
                .unwrap()
                .split(',')
                .any(|m| m == "spacenode"),
            "spacenode is not in {g}: {line}"
        );
    }
}

#[test]
fn hardware_watchdog_dropin_fits_the_cm4_watchdog() {
    let conf = std::fs::read_to_string(systemd_file("system.conf.d/watchdog.conf")).unwrap();
    assert!(conf.lines().any(|l| l.trim() == "[Manager]"), "{conf}");
    let value = |key: &str| {
        let v = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= missing"));
        // systemd's own parser, in microseconds.
        let out = analyze(&["timespan", v]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{key}={v}: {stderr}");
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("μs: "))
            .and_then(|us| us.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{key}={v}: {stdout}"))
    };
    let runtime = value("RuntimeWatchdogSec");
    // The BCM2835 PM watchdog counts 20 bits at 65536 Hz: at most ~16 s.
    assert!(
        (1_000_000..=15_000_000).contains(&runtime),
        "RuntimeWatchdogSec {runtime} µs is beyond the CM4's watchdog"
    );
    assert!(value("RebootWatchdogSec") >= runtime);
}

#[test]
fn example_config_is_in_the_daemons_format() {
    let example = std::fs::read_to_string(systemd_file("spacenoded.toml.example")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |content: &str| {
        let path = dir.path().join("spacenoded.toml");
        std::fs::write(&path, content).unwrap();
        Command::new(bin("spacenoded"))
            .arg("--check-config")
            .arg(&path)
            .output()
            .unwrap()
    };
    // As shipped, the placeholder key must be refused (exit 78, EX_CONFIG).
    let out = check(&example);
    assert_eq!(out.status.code(), Some(78), "{:?}", text(&out));

    // With a real key every table and key of the example is accepted (the
    // development profile: flight needs settings owned by other work).
    let key = hex::encode(rand::random::<[u8; 32]>());
    let usable = example
        .replace("REPLACE-WITH-64-HEX-CHARACTERS", &key)
        .replace("profile = \"flight\"", "profile = \"development\"");
    let out = check(&usable);
    assert!(out.status.success(), "{:?}", text(&out));
    // The link device must be one the unit lets the daemon open.
    let unit = std::fs::read_to_string(systemd_file("spacenoded.service")).unwrap();
    assert!(example.contains("device = \"/dev/ttyAMA0\""));
    assert!(unit.contains("DeviceAllow=char-ttyAMA rw"));
}
