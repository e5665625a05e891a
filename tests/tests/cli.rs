//! The command-line surface: help everywhere, config validation with exit
//! codes, clear errors for a missing port or a silent node, readiness only
//! once the link is up, events and rekey through the real `ground` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spacenode_ground::admin;
use spacenode_ground::client::Link;
use spacenode_ground::config::{GroundConfig, GroundState};
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_policy::command::{RekeyBody, kind};
use spacenode_system_tests::{
    Fixture, Node, admin_set, append_config, bin, housekeeping, mode_status, patient,
};
use spacenode_wire::frame;
use spacenode_wire::msg::Rekey;
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
        // Issue 13 item 10: the same key bytes under two ids.
        (
            text.replace(
                "[[link.keys]]",
                &format!(
                    "[[link.keys]]\nid = 2\nkey = \"{}\"\n\n[[link.keys]]",
                    hex::encode(fx.key)
                ),
            ),
            "`link.keys[1].key`: key ids 2 and 1 have the same key bytes",
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

/// A second ground station with its own key id 2: the node's config lists
/// its key, the station has its own config and state file.
fn second_station(fx: &Fixture) -> (PathBuf, [u8; 32]) {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    append_config(
        fx,
        &format!("\n[[link.keys]]\nid = 2\nkey = \"{}\"\n", hex::encode(key)),
    );
    let cfg = fx.dir.path().join("ground-b.toml");
    std::fs::write(
        &cfg,
        GroundConfig::render(
            2,
            2,
            &[(2, key)],
            &fx.dir.path().join("ground-b-state.json"),
        ),
    )
    .unwrap();
    // A brand-new key no node has used: the station starts with an empty
    // state (a lost state file would need `--init`).
    GroundState::provision(&fx.dir.path().join("ground-b-state.json")).unwrap();
    (cfg, key)
}

fn ground_with(config: &Path, port: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("ground"))
        .arg("--config")
        .arg(config)
        .arg("--port")
        .arg(port)
        .arg("--baud")
        .arg("921600")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Issue 13 item 2: two ground stations with their own keys (A: key 1, B:
/// key 2) through the real daemon and the real `ground` binary. A rekey
/// without the quorum is refused; with it, only A's old key is retired
/// and B keeps working; B cannot take A's key, and B's own rekey leaves A
/// alone.
#[test]
fn two_stations_rekey_side_by_side_and_neither_locks_the_other_out() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let admins = admin_set(&fx);
    let (b_cfg, b_key) = second_station(&fx);
    let _node = Node::start(&fx);
    let port = emu.ground_path();
    let node_id = {
        let mut link = fx.link(port, baud);
        hex::encode(mode_status(&mut link, patient(baud)).node_id)
    };
    let a = |args: &[&str]| ground_with(&fx.ground_config, port, args);
    let b = |args: &[&str]| ground_with(&b_cfg, port, args);
    let cmd_a = fx.dir.path().join("rekey-a.cmd");
    let cmd_a_path = cmd_a.to_str().unwrap();
    let (ok, text) = a(&[
        "admin",
        "command",
        "rekey-link",
        "--node-id",
        &node_id,
        "--seq",
        "1",
        "--new-key-id",
        "7",
        "--out",
        cmd_a_path,
    ]);
    assert!(ok && text.contains("SHA-256"), "{text}");
    let sign = |i: usize| {
        let idx = i.to_string();
        let key = admins[i].0.to_str().unwrap();
        let (ok, text) = a(&[
            "admin",
            "sign",
            "--key",
            key,
            "--signer",
            &idx,
            "--command",
            cmd_a_path,
        ]);
        assert!(ok, "{text}");
    };

    // One administrator is not a quorum: refused, both keys stay.
    sign(0);
    let (ok, text) = a(&["link", "rekey", "--key-id", "7", "--command", cmd_a_path]);
    assert!(
        !ok && text.contains("0x0501"),
        "rekey without quorum: {text}"
    );
    let (ok, text) = a(&["ping"]);
    assert!(ok, "A after the refused rekey: {text}");

    // With the quorum: A moves to key 7.
    sign(1);
    let (ok, text) = a(&["link", "rekey", "--key-id", "7", "--command", cmd_a_path]);
    assert!(ok, "rekey with quorum: {text}");
    let (ok, text) = a(&["ping"]);
    assert!(ok, "A under its new key: {text}");
    let (ok, text) = b(&["ping"]);
    assert!(ok, "B keeps working after A's rekey: {text}");

    // A's old key 1 is retired: packets under it are unknown.
    let mut link_b = Fixture::link_with(&b_cfg, port, baud);
    let before = housekeeping(&mut link_b, patient(baud));
    let old = Cipher::new(1, &LinkKey::new(fx.key));
    let tc = link_b.new_tc(apid::CORE, service::TEST, subtype::PING, vec![]);
    let env = old
        .seal(Direction::Uplink, 1 << 30, &tc.encode().unwrap())
        .unwrap();
    link_b.write_raw(&frame::encode(&env).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after = housekeeping(&mut link_b, patient(baud));
    assert_eq!(after.unknown_keys, before.unknown_keys + 1, "{after:?}");

    // B holds a quorum-signed command that replaces A's key 7: sent under
    // B's key it is refused, and A still works.
    let quorum = |cmd: &mut spacenode_policy::command::SignedCommand| {
        admin::sign(cmd, &admins[0].1, 0).unwrap();
        admin::sign(cmd, &admins[2].1, 2).unwrap();
    };
    let node_id_bytes: [u8; 8] = hex::decode(&node_id).unwrap().try_into().unwrap();
    let rekey_tc = |link: &mut Link, key_id: u16, key: [u8; 32], replaces: u16, seq: u64| {
        use bitcoin::hashes::{Hash, sha256};
        let body = RekeyBody {
            new_key_id: key_id,
            key_sha256: sha256::Hash::hash(&key).to_byte_array(),
            replaces_key_id: replaces,
        };
        let mut cmd = admin::build(
            kind::REKEY_LINK,
            node_id_bytes,
            seq,
            0,
            i64::MAX,
            body.encode(),
        );
        quorum(&mut cmd);
        let req = Rekey {
            key_id,
            key,
            command: cmd.encode(),
        };
        link.new_tc(apid::LINK, service::LINK, subtype::LINK_REKEY, req.encode())
    };
    let b_new: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap() ^ 0x5A);
    let steal = rekey_tc(&mut link_b, 8, b_new, 7, 2);
    let e = link_b
        .request(&steal, patient(baud))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SEC_REKEY_WRONG_KEY"), "{e}");
    // Nor may B install its new key under A's old bytes (nonce reuse).
    let reuse = rekey_tc(&mut link_b, 8, fx.key, 2, 2);
    let e = link_b
        .request(&reuse, patient(baud))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SEC_KEY_BYTES_REUSED"), "{e}");
    // Nor reuse a key id (A's new one).
    let taken = rekey_tc(&mut link_b, 7, b_new, 2, 2);
    let e = link_b
        .request(&taken, patient(baud))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SEC_REKEY_REFUSED"), "{e}");
    // B's own rekey (2 -> 8) with the quorum: A is untouched.
    let own = rekey_tc(&mut link_b, 8, b_new, 2, 2);
    link_b.expect_key(8, &b_new).unwrap();
    link_b.request(&own, patient(baud)).unwrap();
    link_b.adopt_key(8, &b_new).unwrap();
    housekeeping(&mut link_b, patient(baud));
    drop(link_b);
    let (ok, text) = a(&["ping"]);
    assert!(ok, "A after B's rekey: {text}");
    let (ok, text) = b(&["ping"]);
    assert!(ok, "B under its new key: {text}");
    let _ = b_key;
}

/// The completion report of a rekey lost on the downlink: the ground
/// (which accepts the new key from the moment it sends it) repeats the
/// same TC, and the node answers that it is done instead of refusing the
/// key id as used. Then both ends use the new key.
#[test]
fn a_rekey_whose_completion_was_lost_is_answered_again() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let admins = admin_set(&fx);
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), baud);
    let node_id = mode_status(&mut link, patient(baud)).node_id;
    let key: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap() + 1);
    let body = {
        use bitcoin::hashes::{Hash, sha256};
        RekeyBody {
            new_key_id: 9,
            key_sha256: sha256::Hash::hash(&key).to_byte_array(),
            replaces_key_id: 1,
        }
    };
    let mut cmd = admin::build(kind::REKEY_LINK, node_id, 1, 0, i64::MAX, body.encode());
    admin::sign(&mut cmd, &admins[0].1, 0).unwrap();
    admin::sign(&mut cmd, &admins[1].1, 1).unwrap();
    let rekey = Rekey {
        key_id: 9,
        key,
        command: cmd.encode(),
    };
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
