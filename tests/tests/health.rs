//! Health system tests: the supervisor's watchdog stream through a real
//! NOTIFY_SOCKET, the boot-loop rule, each safe-mode trigger with its reason
//! code and a sign request refused in it (`MODE_FORBIDS`), the burst of
//! policy refusals, the signed beacon, and leaving safe mode only with a
//! quorum-signed command (through the real `ground admin` and `ground mode`
//! commands).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::{Message, Secp256k1, XOnlyPublicKey, schnorr};
use spacenode_ground::admin;
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_system_tests::cosign::{World, WorldConfig};
use spacenode_system_tests::{
    Fixture, Node, append_config, assert_sign_refused_by_mode, mode_status, patient,
};
use spacenode_wire::frame;
use spacenode_wire::msg::{BEACON_TAG, ModeStatus};
use spacenode_wire::security::{Cipher, Direction, LinkKey};
use spacenode_wire::services::{apid, service, subtype};

const BAUD: u32 = 921_600;

fn setup(extra: &str) -> (Emulator, Fixture) {
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = Fixture::new(emu.node_path(), BAUD, &format!("{}{extra}", Fixture::QUIET));
    (emu, fx)
}

/// Two administrator keys (2-of-2) in the fixture's directory; returns the
/// key files and the `[admin]` table for the node config.
fn admins(fx: &Fixture) -> (Vec<PathBuf>, String) {
    let files: Vec<PathBuf> = (0..2)
        .map(|i| fx.dir.path().join(format!("admin{i}.json")))
        .collect();
    let keys: Vec<XOnlyPublicKey> = files.iter().map(|f| admin::keygen(f).unwrap()).collect();
    let list: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    (
        files,
        format!("[admin]\nthreshold = 2\nkeys = [{}]\n", list.join(", ")),
    )
}

fn ground_ok(fx: &Fixture, emu: &Emulator, args: &[&str]) -> String {
    let mut all = vec!["--baud", "921600"];
    all.extend_from_slice(args);
    let out = fx.ground(emu.ground_path(), &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ground {args:?} failed: {text}");
    text
}

fn ground_fails(fx: &Fixture, emu: &Emulator, args: &[&str]) -> String {
    let mut all = vec!["--baud", "921600"];
    all.extend_from_slice(args);
    let out = fx.ground(emu.ground_path(), &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "ground {args:?} should have failed: {text}"
    );
    text
}

fn admin_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(spacenode_system_tests::bin("ground"))
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ground admin {args:?}: {text}");
    text
}

fn assert_safe(st: &ModeStatus, code: u16) {
    assert_eq!(st.mode, 2, "not in safe mode: {st:?}");
    assert_eq!(
        st.reason, code,
        "reason {:#06x}, wanted {code:#06x}",
        st.reason
    );
}

fn watch_until_silent(node: &Node, hang_at: Instant) -> (usize, Option<Instant>) {
    let pets = node.notifications(Duration::from_secs(4));
    let before = pets
        .iter()
        .filter(|(t, m)| *t < hang_at && m.contains("WATCHDOG=1"))
        .count();
    let last = pets
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .max();
    (before, last)
}

/// Under systemd's watchdog (WATCHDOG_USEC, over NOTIFY_SOCKET), the node
/// pets at half the timeout while healthy; a hung node task, then a hung
/// link task, stop the petting within one watchdog period.
#[test]
fn a_hung_task_stops_the_watchdog_stream() {
    for task in [0u8, 1] {
        let (emu, fx) = setup("[health]\ntest_hooks = true\ntask_deadline_s = 1\n");
        let node = Node::start_with_env(&fx, &[("WATCHDOG_USEC", "2000000")]);
        let healthy = node.notifications(Duration::from_millis(2600));
        let pets = healthy
            .iter()
            .filter(|(_, m)| m.contains("WATCHDOG=1"))
            .count();
        assert!(
            pets >= 2,
            "task {task}: only {pets} pets in 2.6 s: {healthy:?}"
        );
        let mut link = fx.link(emu.ground_path(), BAUD);
        let tc = link.new_tc(
            apid::MODE,
            service::MODE,
            subtype::HEALTH_TEST_HANG,
            vec![task],
        );
        link.request(&tc, patient(BAUD))
            .expect("hang request completes before the hang");
        let hang_at = Instant::now();
        let (_, last) = watch_until_silent(&node, hang_at);
        let last = last.unwrap_or(hang_at);
        assert!(
            last.saturating_duration_since(hang_at) <= Duration::from_secs(2),
            "task {task}: still petted {:?} after the hang",
            last.saturating_duration_since(hang_at)
        );
        assert!(
            node.log_text().contains("task stuck"),
            "task {task}: {}",
            node.log_text()
        );
    }
}

/// Hooks are refused unless configured.
#[test]
fn test_hooks_are_off_by_default() {
    let (emu, fx) = setup("");
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let tc = link.new_tc(
        apid::MODE,
        service::MODE,
        subtype::HEALTH_TEST_HANG,
        vec![0],
    );
    let err = link.request(&tc, patient(BAUD)).unwrap_err().to_string();
    assert!(err.contains("MODE_FORBIDS"), "{err}");
}

/// Start and crash the daemon N times quickly: the N+1th start comes up in
/// safe mode. A command signed by one administrator of two is refused; the
/// quorum-signed exit restores normal mode; replaying it is refused.
#[test]
fn boot_loop_enters_safe_mode_and_only_a_quorum_leaves_it() {
    let (emu, fx) = setup("[health]\nboot_loop_starts = 3\nboot_loop_window_s = 600\n");
    let (keys, table) = admins(&fx);
    append_config(&fx, &table);
    for _ in 0..3 {
        let mut n = Node::start(&fx);
        n.kill9();
    }
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_safe(&st, 0x0802);
    assert_eq!(st.boot_count, 4);
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    drop(link);
    let shown = ground_ok(&fx, &emu, &["mode"]);
    assert!(
        shown.contains("safe") && shown.contains("boot loop") || shown.contains("0x0802"),
        "{shown}"
    );

    let cmd = fx.dir.path().join("exit.hex");
    let c = cmd.to_str().unwrap();
    admin_cli(&[
        "command",
        "exit-safe-mode",
        "--node-id",
        "0000000000000000",
        "--seq",
        "1",
        "--out",
        c,
    ]);
    admin_cli(&[
        "sign",
        "--key",
        keys[0].to_str().unwrap(),
        "--signer",
        "0",
        "--command",
        c,
    ]);
    let refused = ground_fails(&fx, &emu, &["mode", "exit", "--command", c]);
    assert!(
        refused.contains("quorum not met") || refused.contains("0x0501"),
        "{refused}"
    );
    admin_cli(&[
        "sign",
        "--key",
        keys[1].to_str().unwrap(),
        "--signer",
        "1",
        "--command",
        c,
    ]);
    assert!(admin_cli(&["show", c]).contains("[0, 1]"));
    ground_ok(&fx, &emu, &["mode", "exit", "--command", c]);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!((st.mode, st.reason, st.admin_seq), (1, 0, 1), "{st:?}");
    drop(link);
    // A replayed exit (same sequence) is refused.
    ground_ok(&fx, &emu, &["mode", "safe"]);
    let replay = ground_fails(&fx, &emu, &["mode", "exit", "--command", c]);
    assert!(replay.contains("replayed"), "{replay}");
}

/// `ground mode safe`: reason 0x0801, persisted across restarts.
#[test]
fn ground_command_trigger_persists() {
    let (emu, fx) = setup("");
    let mut node = Node::start(&fx);
    ground_ok(&fx, &emu, &["mode", "safe"]);
    node.kill9();
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    assert_safe(&mode_status(&mut link, patient(BAUD)), 0x0801);
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
}

/// A burst of forged packets (probing) puts the node in safe mode 0x0807,
/// but forged packets need no key, so that safe mode must not need the
/// quorum to leave (issue 13 item 8): it lapses after
/// `forged_safe_lapse_s` without a new forgery (`SAFE_LAPSED`). The test
/// used to end at "still safe", which was the defect. A sticky reason that
/// fires during it (here `ground mode safe`) supersedes it and does not
/// lapse.
#[test]
fn forged_burst_safe_mode_lapses_after_a_quiet_period() {
    let (emu, fx) =
        setup("[health]\nauth_failure_burst = 5\nburst_window_s = 60\nforged_safe_lapse_s = 2\n");
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let forger = Cipher::new(1, &LinkKey::new([0x66; 32]));
    let forge = |link: &mut spacenode_ground::client::Link, base: u64| {
        for seq in 0..6u64 {
            let env = forger
                .seal(Direction::Uplink, base + seq, b"not a telecommand")
                .unwrap();
            link.write_raw(&frame::encode(&env).unwrap()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    forge(&mut link, 1_000_000);
    assert_safe(&mode_status(&mut link, patient(BAUD)), 0x0807);
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    // Quiet for longer than the lapse: back to normal without any quorum.
    std::thread::sleep(Duration::from_millis(2_600));
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!(st.mode, 1, "forged-packet safe mode did not lapse: {st:?}");
    // Again, then a sticky reason on top: it replaces 0x0807 and stays.
    forge(&mut link, 2_000_000);
    assert_safe(&mode_status(&mut link, patient(BAUD)), 0x0807);
    drop(link);
    ground_ok(&fx, &emu, &["mode", "safe"]);
    std::thread::sleep(Duration::from_millis(2_600));
    let mut link = fx.link(emu.ground_path(), BAUD);
    assert_safe(&mode_status(&mut link, patient(BAUD)), 0x0801);
}

/// Free storage below the safe threshold: 0x0809.
#[test]
fn low_disk_trigger() {
    let (emu, fx) = setup("[health]\nsafe_free_bytes = 4611686018427387904\n");
    let _node = Node::start(&fx);
    std::thread::sleep(Duration::from_millis(300));
    let mut link = fx.link(emu.ground_path(), BAUD);
    assert_safe(&mode_status(&mut link, patient(BAUD)), 0x0809);
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
}

/// No authenticated command for the configured time: 0x080A, and the node
/// beacons its status signed by its identity key.
#[test]
fn loss_of_contact_trigger_and_signed_beacon() {
    let (emu, fx) = setup("[health]\ncontact_timeout_s = 2\nbeacon_interval_s = 1\n");
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    let tc = link.new_tc(
        apid::KEYS,
        service::KEYS,
        subtype::KEYS_XPUB_REQUEST,
        b"m/21326'/0'".to_vec(),
    );
    let x = link.request(&tc, patient(BAUD)).unwrap();
    let xpub_tm = x
        .replies
        .iter()
        .find(|t| t.subtype == subtype::KEYS_XPUB)
        .unwrap();
    let xpub: bitcoin::bip32::Xpub = std::str::from_utf8(&xpub_tm.data[4..])
        .unwrap()
        .parse()
        .unwrap();
    let identity = XOnlyPublicKey::from(xpub.public_key);
    // Silence for longer than the timeout, listening for beacons.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut beacon = None;
    while Instant::now() < deadline {
        if let Some(tm) = link
            .recv(Instant::now() + Duration::from_millis(200))
            .unwrap()
            && tm.service == service::MODE
            && tm.subtype == subtype::MODE_BEACON
        {
            beacon = Some(tm);
        }
    }
    let beacon = beacon.expect("a beacon in safe mode");
    let (st, sig) = ModeStatus::decode(&beacon.data).unwrap();
    assert_safe(&st, 0x080A);
    let sig = schnorr::Signature::from_slice(sig).unwrap();
    let digest = Message::from_digest(spacenode_policy::quorum::tagged_hash(
        BEACON_TAG,
        &beacon.data[..36],
    ));
    Secp256k1::verification_only()
        .verify_schnorr(&sig, &digest, &identity)
        .expect("beacon signed by the node identity key");
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
}

/// A database that fails to open comes up in safe mode 0x0805 on a fresh
/// database (the corrupt one kept aside), and the link keeps working: the
/// link keys are sealed files, not database rows.
#[test]
fn storage_corruption_trigger_keeps_the_link() {
    let (emu, fx) = setup("");
    let mut node = Node::start(&fx);
    ground_ok(&fx, &emu, &["ping"]);
    node.kill9();
    let db = fx.state_dir.join("spacenode.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..100].fill(0xEE);
    std::fs::write(&db, bytes).unwrap();
    let _ = std::fs::remove_file(fx.state_dir.join("spacenode.db-wal"));
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), BAUD);
    assert_safe(&mode_status(&mut link, patient(BAUD)), 0x0805);
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    assert!(std::fs::read_dir(&fx.state_dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".corrupt-")
    }));
}

/// More than `health.refusal_burst` sign requests refused by the policy
/// within the window (someone probing the rules): safe mode 0x0808, after
/// which even a valid request is refused with MODE_FORBIDS.
#[test]
fn policy_refusal_burst_trigger() {
    let w = World::start(&WorldConfig {
        node_extra: "[health]\nrefusal_burst = 3\nburst_window_s = 60\n".into(),
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let mut link = w.link();
    for i in 0..4u8 {
        // 1.6 BTC over the 1.5 BTC per-transaction cap.
        let (req, _) = w.request([0x40 + i; 32], &[0, 1], 160_000_000, 2_000, 0);
        let r = w.sign(&mut link, policy, &req).unwrap();
        let refused = r.refused.expect("over the cap");
        assert_eq!(refused.rule.as_deref(), Some("btc-per-tx-cap"), "{refused}");
    }
    assert_safe(&mode_status(&mut link, policy), 0x0808);
    let (valid, _) = w.request([0x50; 32], &[2], 10_000_000, 2_000, 0);
    let r = w.sign(&mut link, policy, &valid).unwrap();
    assert_eq!(
        r.refused.map(|x| x.code),
        Some(spacenode_wire::ReasonCode::MODE_FORBIDS)
    );
    let hk = spacenode_system_tests::housekeeping(&mut link, policy);
    assert_eq!((hk.sign_refused, hk.sign_refused_mode), (4, 1));
}
