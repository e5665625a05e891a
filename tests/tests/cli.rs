//! The command-line surface: help everywhere, config validation with exit
//! codes, clear errors for a missing port or a silent node, readiness only
//! once the link is up, events and rekey through the real `ground` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::time::Duration;

use spacenode_hil::emulator::{Emulator, LinkParams};
use spacenode_hil::ground::config::GroundState;
use spacenode_system_tests::{Fixture, Node, bin, housekeeping, patient};
use spacenode_wire::frame;
use spacenode_wire::security::{Cipher, Direction, LinkKey};
use spacenode_wire::services::{apid, service, subtype};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_is_everywhere() {
    for (binary, args) in [
        ("spacenoded", vec!["--help"]),
        ("linkemu", vec!["--help"]),
        ("hil-run", vec!["--help"]),
        ("ground", vec!["--help"]),
        ("ground", vec!["ping", "--help"]),
        ("ground", vec!["hk", "--help"]),
        ("ground", vec!["events", "--help"]),
        ("ground", vec!["link", "--help"]),
        ("ground", vec!["link", "rekey", "--help"]),
        ("ground", vec!["chain", "--help"]),
        ("ground", vec!["chain", "sync", "--help"]),
        ("ground", vec!["chain", "status", "--help"]),
        ("ground", vec!["chain", "clear-deep-reorg", "--help"]),
    ] {
        let (code, stdout, _) = run(Command::new(bin(binary)).args(&args));
        assert_eq!(code, 0, "{binary} {args:?}");
        assert!(stdout.contains("Usage:"), "{binary} {args:?}: {stdout}");
    }
}

#[test]
fn check_config_accepts_valid_and_names_the_bad_key() {
    let fx = Fixture::new(std::path::Path::new("/dev/ttyAMA0"), 115_200, "");
    let (code, stdout, _) = run(Command::new(bin("spacenoded"))
        .arg("--check-config")
        .arg(&fx.node_config));
    assert_eq!(code, 0);
    assert!(stdout.contains(": ok"));

    let text = std::fs::read_to_string(&fx.node_config).unwrap();
    for (broken, expect) in [
        (
            text.replace("baud = 115200", "baud = 115201"),
            "`link.baud`",
        ),
        (
            text.replace("[link]", "[link]\nparity = \"odd\""),
            "unknown field `parity`",
        ),
        (
            text.replace(&hex::encode(fx.key), "00ff"),
            "`link.keys[0].key`: expected 32 bytes",
        ),
        (
            text.replace("tx_key_id = 1", "tx_key_id = 4"),
            "`link.tx_key_id`: 4 is not among link.keys",
        ),
        (
            format!("{text}\n[chain]\nwindow = 1\n"),
            "`chain.window`: 1 is outside 2..=8064",
        ),
        (
            format!("{text}\n[chain]\nnetwork = \"testnet3\"\n"),
            "unknown variant `testnet3`",
        ),
    ] {
        std::fs::write(&fx.node_config, broken).unwrap();
        let (code, _, stderr) = run(Command::new(bin("spacenoded"))
            .arg("--check-config")
            .arg(&fx.node_config));
        assert_eq!(code, 78, "EX_CONFIG expected: {stderr}");
        assert!(stderr.contains(expect), "wanted {expect:?} in {stderr}");
    }
    let (code, _, stderr) = run(Command::new(bin("spacenoded"))
        .arg("--config")
        .arg("/nonexistent/spacenoded.toml"));
    assert_eq!(code, 78);
    assert!(stderr.contains("/nonexistent/spacenoded.toml"), "{stderr}");
}

#[test]
fn ground_explains_a_missing_port_and_a_silent_node() {
    let emu = Emulator::start(LinkParams::clean(115_200)).unwrap();
    let fx = Fixture::new(emu.node_path(), 115_200, Fixture::QUIET);
    let (code, _, stderr) = run(Command::new(bin("ground"))
        .arg("--config")
        .arg(&fx.ground_config)
        .args(["--port", "/dev/ttyUSB97", "ping"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("/dev/ttyUSB97 does not exist"), "{stderr}");

    // The emulator runs but no node is behind it.
    let out = fx.ground(emu.ground_path(), &["--retries", "3", "hk"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no answer from the node") && stderr.contains("3 attempts"),
        "{stderr}"
    );
    let out = fx.ground(emu.ground_path(), &["--retries", "2", "ping", "-n", "2"]);
    assert_eq!(out.status.code(), Some(2), "pings lost: exit 2");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 answered, 2 lost"));
}

#[test]
fn ready_only_once_the_link_device_exists() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("uart");
    let fx = Fixture::new(&device, 115_200, Fixture::QUIET);
    let node = Node::spawn(&fx);
    assert!(
        !node.wait_notify("READY=1", Duration::from_millis(1500)),
        "ready without a link"
    );
    let emu = Emulator::start(LinkParams::clean(115_200)).unwrap();
    emu.link_paths(None, Some(&device)).unwrap();
    node.wait_ready(Duration::from_secs(10));
    let out = fx.ground(emu.ground_path(), &["ping"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn events_and_housekeeping_read_well() {
    let emu = Emulator::start(LinkParams::clean(115_200)).unwrap();
    let fx = Fixture::new(emu.node_path(), 115_200, Fixture::QUIET);
    let _node = Node::start(&fx);
    let out = fx.ground(emu.ground_path(), &["events", "--last", "10"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("BOOT") && stdout.contains("boot_count=1"),
        "{stdout}"
    );
    assert!(stdout.contains("LINK_UP"), "{stdout}");
    let out = fx.ground(emu.ground_path(), &["hk"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for row in [
        "uptime",
        "boot count",
        "mode",
        "normal",
        "frames ok",
        "crc errors",
        "replays refused",
        "auth failures",
        "resyncs",
        "storage used",
        "cpu temperature",
    ] {
        assert!(stdout.contains(row), "hk table lacks {row}: {stdout}");
    }
}

#[test]
fn rekey_switches_both_ends_and_retires_the_old_key() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let _node = Node::start(&fx);
    let out = fx.ground(
        emu.ground_path(),
        &["--baud", "921600", "link", "rekey", "--key-id", "7"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fx.ground(emu.ground_path(), &["--baud", "921600", "ping"]);
    assert!(
        out.status.success(),
        "ping under the new key: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Reusing a key id is refused.
    let out = fx.ground(
        emu.ground_path(),
        &["--baud", "921600", "link", "rekey", "--key-id", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SEC_REKEY_REFUSED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut link = fx.link(emu.ground_path(), baud);
    assert_eq!(link.tx_key_id(), 7);
    let before = housekeeping(&mut link, patient(baud));
    assert_eq!(before.tx_key_id, 7);
    // The old key is retired on the node: packets under it are unknown.
    let old = Cipher::new(1, &LinkKey::new(fx.key));
    let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
    let env = old
        .seal(Direction::Uplink, 1 << 30, &tc.encode().unwrap())
        .unwrap();
    link.write_raw(&frame::encode(&env).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after = housekeeping(&mut link, patient(baud));
    assert_eq!(after.unknown_keys, before.unknown_keys + 1, "{after:?}");
}

/// The completion report of a rekey lost on the downlink: the node has
/// switched its downlink to the new key, the ground (which accepts the new
/// key from the moment it sends it) repeats the same TC, and the node
/// answers that it is done, under the new key, instead of refusing the key
/// id as used. Then both ends use the new key.
#[test]
fn a_rekey_whose_completion_was_lost_is_answered_again() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), baud);
    let key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap() + 1);
    let rekey = spacenode_wire::msg::Rekey { key_id: 9, key };
    let tc = link.new_tc(
        apid::LINK,
        service::LINK,
        subtype::LINK_REKEY,
        rekey.encode(),
    );
    link.expect_key(9, &key).unwrap();
    link.request(&tc, patient(baud)).unwrap();
    // As if that completion had been lost: the same TC again.
    let again = link.request(&tc, patient(baud));
    assert!(again.is_ok(), "the repeated rekey: {again:?}");
    link.adopt_key(9, &key).unwrap();
    let hk = housekeeping(&mut link, patient(baud));
    assert_eq!(hk.tx_key_id, 9);
    drop(link);
    // A new ground process reads the key from its state and pings.
    let out = fx.ground(emu.ground_path(), &["--baud", "921600", "ping"]);
    assert!(
        out.status.success(),
        "ping under the new key: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A USB serial bridge unplugged and replugged: the daemon keeps running,
/// reopens the device, and records the outage (LINK_DOWN) in its event log.
#[test]
fn link_device_unplugged_and_replugged() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("ttyUSB0");
    let fx = Fixture::new(&device, 115_200, Fixture::QUIET);
    let first = Emulator::start(LinkParams::clean(115_200)).unwrap();
    first.link_paths(None, Some(&device)).unwrap();
    let mut node = Node::start(&fx);
    let pid = node.pid();
    let out = fx.ground(first.ground_path(), &["ping"]);
    assert!(out.status.success());
    // Unplug: the pty pair disappears and the path with it.
    drop(first);
    std::fs::remove_file(&device).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(node.running(), "the daemon must survive a lost device");
    // Replug: a new device appears at the same path.
    let second = Emulator::start(LinkParams::clean(115_200)).unwrap();
    second.link_paths(None, Some(&device)).unwrap();
    let mut answered = false;
    for _ in 0..20 {
        if fx
            .ground(second.ground_path(), &["--retries", "3", "ping"])
            .status
            .success()
        {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        answered,
        "no answer after replug; log:\n{}",
        node.log_text()
    );
    let events = fx.ground(second.ground_path(), &["events", "--last", "20"]);
    let text = String::from_utf8_lossy(&events.stdout);
    assert!(text.contains("LINK_DOWN"), "{text}");
    assert_eq!(node.pid(), pid);
    assert!(node.running());
}

/// Issue 13 item 7: a lost ground state file must not restart the uplink
/// counter at 1 under the same key (AES-GCM nonce reuse). Without it the
/// ground refuses to run, naming the file and `--init`; with `--init` it
/// asks the node for its receive bound and continues above it, so the node
/// refuses none of its packets as a replay (a reused number would be).
#[test]
fn a_lost_ground_state_is_refused_and_init_continues_above_the_node() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let state = fx.dir.path().join("ground-state.json");
    let ground = |args: &[&str]| {
        let mut all = vec!["--baud", "921600"];
        all.extend_from_slice(args);
        let out = fx.ground(emu.ground_path(), &all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let hk_replays = |stdout: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("hk json");
        v["replays"].as_u64().expect("replays")
    };
    // An --init that never hears the node leaves no state behind.
    std::fs::remove_file(&state).unwrap();
    let (code, out, err) = ground(&["--retries", "2", "--init", "ping"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("did not report its receive bound"), "{err}");
    assert!(!state.exists(), "a failed --init must not create the state");
    GroundState::provision(&state).unwrap();

    let _node = Node::start(&fx);
    // The node accepts a few uplink numbers.
    let (code, out, err) = ground(&["ping", "-n", "3"]);
    assert_eq!(code, Some(0), "{out}{err}");
    std::fs::remove_file(&state).unwrap();

    let (code, out, err) = ground(&["ping"]);
    assert_eq!(
        code,
        Some(1),
        "the ground ran without its state file (uplink numbers restarted at 1): {out}{err}"
    );
    assert!(
        err.contains(&state.display().to_string()) && err.contains("--init"),
        "{err}"
    );
    assert!(!state.exists(), "a refused run must not create the state");

    let (code, out, err) = ground(&["--init", "hk", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(state.exists());
    // "init: the node's receive bound for key 1 is N; the uplink continues at M; ..."
    let number_after = |marker: &str| -> u64 {
        let rest = &err[err.find(marker).unwrap_or_else(|| panic!("{err}")) + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{err}"))
    };
    let bound = number_after("receive bound for key 1 is ");
    let first = number_after("the uplink continues at ");
    assert!(bound >= 3, "the node accepted 3 pings: {err}");
    assert!(first > bound, "{err}");
    let replays = hk_replays(&out);

    // Every packet after the init is fresh to the node.
    let (code, out, err) = ground(&["ping", "-n", "3"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = ground(&["hk", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        hk_replays(&out),
        replays,
        "the node refused an uplink number after --init as a replay"
    );
}
