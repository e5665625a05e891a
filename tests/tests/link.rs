//! System tests of the secured serial link: the real daemon behind the link
//! emulator on real ptys, driven by the real `ground` binary or the ground
//! client library.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use spacenode_linkemu::emulator::{Corruption, Emulator, LinkParams};
use spacenode_system_tests::{Fixture, Node, housekeeping, patient};
use spacenode_wire::frame;
use spacenode_wire::msg::{Stage, Verification};
use spacenode_wire::pus::RequestId;
use spacenode_wire::security::{Cipher, Direction, LinkKey};
use spacenode_wire::services::{apid, service, subtype};

/// 1000 pings at 115200 Bd with 1 % of bytes corrupted: every one answered
/// after retries, the daemon never restarts, and the node's and ground's
/// frame counters equal what the emulator injected.
const PINGS: u64 = 1000;

#[test]
fn thousand_pings_through_one_percent_byte_corruption() {
    let baud = 115_200;
    let lossy = LinkParams {
        byte_error_rate: 0.01,
        corruption: Corruption::Body,
        seed: 42,
        ..LinkParams::clean(baud)
    };
    let emu = Emulator::start(lossy).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let mut node = Node::start(&fx);
    let pid = node.pid();

    let out = fx.ground(
        emu.ground_path(),
        &[
            "--retries",
            "80",
            "ping",
            "-n",
            &PINGS.to_string(),
            "--quiet",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ground ping failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json summary");
    assert_eq!(summary["answered"], PINGS, "{summary}");
    assert_eq!(summary["lost"], 0);
    assert!(
        summary["retries"].as_u64().unwrap() > PINGS / 2,
        "1 % byte errors must cost retries: {summary}"
    );

    // The ground has exited: every downlink byte so far went to it.
    std::thread::sleep(Duration::from_millis(200));
    let down = emu.stats().downlink;
    assert_eq!(
        summary["downlink_frames_ok"].as_u64(),
        Some(down.frames_intact),
        "{summary} vs {down:?}"
    );
    let ground_errors = summary["downlink_crc_errors"].as_u64().unwrap()
        + summary["downlink_malformed"].as_u64().unwrap();
    assert_eq!(
        ground_errors, down.frames_corrupted,
        "{summary} vs {down:?}"
    );

    // Ask for the node's counters over a now clean link, patiently, so the
    // request crosses exactly once.
    emu.set_params(&LinkParams::clean(baud));
    let mut link = fx.link(emu.ground_path(), baud);
    let policy = spacenode_ground::client::RetryPolicy {
        attempts: 1,
        first_timeout: Duration::from_secs(5),
        min_timeout: Duration::from_secs(5),
        max_timeout: Duration::from_secs(5),
    };
    let hk = housekeeping(&mut link, policy);
    let up = emu.stats().uplink;
    assert_eq!(
        u64::from(hk.frames_ok),
        up.frames_intact,
        "{hk:?} vs {up:?}"
    );
    assert_eq!(
        u64::from(hk.crc_errors + hk.malformed_frames),
        up.frames_corrupted,
        "{hk:?} vs {up:?}"
    );
    assert_eq!(hk.resyncs, hk.crc_errors + hk.malformed_frames);
    assert!(
        up.frames_corrupted > PINGS / 5,
        "the link must really have been lossy: {up:?}"
    );
    assert_eq!(
        (
            hk.auth_failures,
            hk.replays,
            hk.unknown_keys,
            hk.oversize_frames
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(hk.boot_count, 1, "the daemon restarted");
    assert!(node.running() && node.pid() == pid, "the daemon died");
}

fn frame_of(envelope: &[u8]) -> Vec<u8> {
    frame::encode(envelope).unwrap()
}

/// Reads TM until `deadline`, returning the request ids that completed.
fn completions(link: &mut spacenode_ground::client::Link, wait: Duration) -> Vec<RequestId> {
    let deadline = Instant::now() + wait;
    let mut done = Vec::new();
    while let Some(tm) = link.recv(deadline).unwrap() {
        if tm.service == service::VERIFICATION
            && let Ok(v) = Verification::decode(tm.subtype, &tm.data)
            && v.stage == Stage::Completion
            && v.failure.is_none()
        {
            done.push(v.request_id);
        }
    }
    done
}

/// Replayed, bit-flipped, forged-tag, wrong-key and unknown-key packets are
/// refused and counted; out-of-order packets within the window are accepted
/// once; the link keeps working.
#[test]
fn hostile_packets_are_refused_counted_and_never_stop_the_link() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), baud);
    let policy = patient(baud);

    let ping = |link: &mut spacenode_ground::client::Link| {
        link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![])
    };
    let tc = ping(&mut link);
    link.request(&tc, policy).expect("baseline ping");

    // Replay: the same envelope twice.
    let tc = ping(&mut link);
    let (_, env) = link.seal_only(&tc).unwrap();
    link.write_raw(&frame_of(&env)).unwrap();
    link.write_raw(&frame_of(&env)).unwrap();
    assert_eq!(
        completions(&mut link, Duration::from_millis(500)),
        vec![tc.request_id()],
        "executed once"
    );

    // Bit flip inside the ciphertext (re-framed, so the CRC is good).
    let tc = ping(&mut link);
    let (_, mut env) = link.seal_only(&tc).unwrap();
    env[15] ^= 0x04;
    link.write_raw(&frame_of(&env)).unwrap();
    // Forged tag.
    let tc = ping(&mut link);
    let (_, mut env) = link.seal_only(&tc).unwrap();
    let n = env.len();
    for b in &mut env[n - 16..] {
        *b = rand::random();
    }
    link.write_raw(&frame_of(&env)).unwrap();
    // Right key id, wrong key.
    let wrong = Cipher::new(1, &LinkKey::new([0x5A; 32]));
    let tc_bytes = ping(&mut link).encode().unwrap();
    link.write_raw(&frame_of(
        &wrong.seal(Direction::Uplink, 1 << 40, &tc_bytes).unwrap(),
    ))
    .unwrap();
    // Unknown key id.
    let stranger = Cipher::new(9, &LinkKey::new(fx.key));
    link.write_raw(&frame_of(
        &stranger
            .seal(Direction::Uplink, 1 << 40, &tc_bytes)
            .unwrap(),
    ))
    .unwrap();
    // A downlink envelope reflected back up.
    let ours = Cipher::new(1, &LinkKey::new(fx.key));
    link.write_raw(&frame_of(
        &ours.seal(Direction::Downlink, 1 << 40, &tc_bytes).unwrap(),
    ))
    .unwrap();
    assert!(
        completions(&mut link, Duration::from_millis(500)).is_empty(),
        "nothing hostile executed"
    );

    // Out of order within the window: accepted once each.
    let (tc_a, tc_b) = (ping(&mut link), ping(&mut link));
    let (ha, env_a) = link.seal_only(&tc_a).unwrap();
    let (hb, env_b) = link.seal_only(&tc_b).unwrap();
    assert!(hb.seq > ha.seq);
    link.write_raw(&frame_of(&env_b)).unwrap();
    link.write_raw(&frame_of(&env_a)).unwrap();
    link.write_raw(&frame_of(&env_a)).unwrap();
    let done: HashSet<_> = completions(&mut link, Duration::from_millis(500))
        .into_iter()
        .collect();
    assert_eq!(done, HashSet::from([tc_a.request_id(), tc_b.request_id()]));

    let hk = housekeeping(&mut link, policy);
    assert_eq!(hk.replays, 2, "{hk:?}");
    assert_eq!(hk.auth_failures, 3, "{hk:?}");
    assert_eq!(hk.unknown_keys, 2, "{hk:?}");
    assert_eq!(hk.boot_count, 1);
    let tc = ping(&mut link);
    link.request(&tc, policy).expect("link still works");
}

/// kill -9 at arbitrary points of a ping stream, five times: after each
/// restart, every envelope accepted before is refused, and every downlink
/// sequence number is new.
#[test]
fn kill9_never_reuses_a_nonce_or_reaccepts_a_packet() {
    let baud = 921_600;
    let emu = Emulator::start(LinkParams::clean(baud)).unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    // Small reservation blocks so that restarts land inside and across
    // blocks within a short test.
    let cfg = std::fs::read_to_string(&fx.node_config).unwrap();
    std::fs::write(
        &fx.node_config,
        cfg.replace("tx_key_id = 1\n", "tx_key_id = 1\nseq_block = 16\n"),
    )
    .unwrap();
    let mut link = fx.link(emu.ground_path(), baud);
    link.record_downlink_seqs();
    let policy = patient(baud);
    let ping = |link: &mut spacenode_ground::client::Link| {
        link.new_tc(apid::CORE, service::TEST, subtype::PING, vec![])
    };
    let mut accepted_before: Vec<Vec<u8>> = Vec::new();
    let mut cut: Option<(RequestId, Vec<u8>)> = None;
    let mut max_seq_before_kill = 0u64;

    for round in 0..5u32 {
        let mut node = Node::start(&fx);
        let seen_at_start = link.downlink_seqs().len();
        // Our own counter may sit below the node's new window: this
        // exchange moves it above (the node reports REPLAY, we resync).
        let tc = ping(&mut link);
        link.request(&tc, policy).expect("first ping after restart");
        // The envelope cut by the last kill may or may not have been
        // accepted then; now it may run at most once, and never again.
        if let Some((rid, env)) = cut.take() {
            link.write_raw(&frame_of(&env)).unwrap();
            let _ran_now = completions(&mut link, Duration::from_millis(300)).contains(&rid);
            accepted_before.push(env);
        }
        let before = housekeeping(&mut link, policy);
        assert_eq!(before.boot_count, round + 1);
        for env in &accepted_before {
            link.write_raw(&frame_of(env)).unwrap();
        }
        assert!(
            completions(&mut link, Duration::from_millis(300)).is_empty(),
            "round {round}: a replay executed"
        );
        let after = housekeeping(&mut link, policy);
        assert_eq!(
            after.replays - before.replays,
            accepted_before.len() as u32,
            "round {round}: every earlier envelope must be refused as a replay"
        );

        // A stream of pings, sealed by us so we keep the envelopes; the
        // kill lands at an arbitrary instant after the last one is sent.
        let pings = 3 + (rand::random::<u32>() % 20);
        for i in 0..pings {
            let tc = ping(&mut link);
            let (_, env) = link.seal_only(&tc).unwrap();
            link.write_raw(&frame_of(&env)).unwrap();
            if i + 1 == pings {
                std::thread::sleep(Duration::from_micros(u64::from(
                    rand::random::<u16>() % 3000,
                )));
                cut = Some((tc.request_id(), env));
            } else {
                assert!(
                    completions(&mut link, Duration::from_millis(300)).contains(&tc.request_id()),
                    "round {round} ping {i}"
                );
                accepted_before.push(env);
            }
        }
        node.kill9();
        let _ = completions(&mut link, Duration::from_millis(200));
        let seqs = &link.downlink_seqs()[seen_at_start..];
        let min = seqs.iter().map(|(_, s)| *s).min().unwrap();
        assert!(
            min > max_seq_before_kill,
            "round {round}: downlink seq {min} not above {max_seq_before_kill}"
        );
        max_seq_before_kill = seqs.iter().map(|(_, s)| *s).max().unwrap();
    }
    let all: Vec<u64> = link.downlink_seqs().iter().map(|(_, s)| *s).collect();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "a downlink sequence number was reused"
    );
    assert_eq!(
        link.stats.refused, 0,
        "the ground refused a downlink packet"
    );
}

/// Pass windows: with the link cut half of the time, every ping is still
/// answered (retries carry requests over loss of signal), and the emulator
/// shows frames cut by LOS.
#[test]
fn pings_cross_pass_windows() {
    use spacenode_linkemu::emulator::PassSchedule;
    let baud = 115_200;
    let passes = PassSchedule {
        aos: Duration::from_millis(700),
        los: Duration::from_millis(500),
    };
    let emu = Emulator::start(LinkParams {
        passes: Some(passes),
        ..LinkParams::clean(baud)
    })
    .unwrap();
    let fx = Fixture::new(emu.node_path(), baud, Fixture::QUIET);
    let _node = Node::start(&fx);
    let out = fx.ground(
        emu.ground_path(),
        &[
            "--retries",
            "60",
            "ping",
            "-n",
            "60",
            "--interval-ms",
            "20",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["answered"], 60, "{summary}");
    let s = emu.stats();
    assert!(
        s.uplink.frames_los + s.downlink.frames_los > 0,
        "no frame met a LOS: {s:?}"
    );
    assert!(summary["retries"].as_u64().unwrap() > 0);
}
