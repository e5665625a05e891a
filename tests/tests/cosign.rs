//! Co-signing system tests: the real daemon (keys in swtpm where they
//! matter) behind the link emulator, driven by the ground library and the
//! `ground` binary: the README's demo end to end, replays and reused request
//! ids, persistence across kill -9, safe mode, resumable uploads across a
//! restart, and policy changes bound to the TPM counter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use spacenode_btc::sign::decode_sigs;
use spacenode_ground::client::GroundError;
use spacenode_ground::cosign::{self, Answer};
use spacenode_ground::files::{self, UploadError};
use spacenode_ground::{admin, btc};
use spacenode_policy::audit::Decision;
use spacenode_policy::command::kind;
use spacenode_policy::document::PolicyDocument;
use spacenode_system_tests::cosign::{World, WorldConfig, policy_toml, sign_policy};
use spacenode_system_tests::{
    Fixture, Node, assert_sign_refused_by_mode, bin, mode_status, repo_root,
};
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{FileBegin, FileChunk, FileState, Payload};
use spacenode_wire::services::{apid, service, subtype};

/// `scripts/demo.sh` (the README's first command, without its build step):
/// swtpm, the emulator at 115200 Bd with byte errors, a 2-of-3 wallet with
/// the node's TPM-backed key, a quorum-signed policy, a signed and
/// finalised transaction, a refused over-limit request, a verified audit log.
#[test]
fn the_demo_runs_unattended_end_to_end() {
    run_demo("0.0001");
}

/// The same demo with ten times the byte errors (about one frame in seven
/// of 150 bytes damaged): every lost report is recovered by a retry, a
/// re-asked question or the node's answer to a repeated request.
#[test]
fn the_demo_survives_ten_times_the_byte_errors() {
    run_demo("0.001");
}

fn run_demo(byte_errors: &str) {
    let bin_dir = bin("ground").parent().unwrap().to_path_buf();
    let started = Instant::now();
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/demo.sh"))
        .env("SPACENODE_DEMO_BIN", &bin_dir)
        .env("SPACENODE_DEMO_BYTE_ERRORS", byte_errors)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo failed:\n{text}");
    for needle in [
        "policy version 1 ACTIVE",
        "wallet registered on the node",
        "APPROVED: the node signed 1 input(s)",
        "every input's script verified",
        "fully signed transaction",
        "request uploaded in chunks",
        "REFUSED by the node: 0x0612",
        "[rule btc-per-tx-cap]",
    ] {
        assert!(
            text.contains(needle),
            "demo output lacks {needle:?}:\n{text}"
        );
    }
    // One approval and one refusal; a sign request whose completion report
    // the byte errors destroyed is answered again from the stored result,
    // which the audit log records as a replay (one entry each).
    let audit = text
        .lines()
        .find(|l| l.starts_with("audit log VERIFIED: "))
        .unwrap_or_else(|| panic!("no verified audit log:\n{text}"));
    let counts: Vec<u64> = audit
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(|w| w.parse().unwrap())
        .collect();
    let [entries, approved, refused, replayed] = counts[..] else {
        panic!("{audit}")
    };
    assert_eq!(
        (approved, refused, entries),
        (1, 1, 2 + replayed),
        "{audit}"
    );
    // The printed transaction decodes and spends the wallet's first output.
    let hex_tx = text
        .lines()
        .skip_while(|l| !l.starts_with("fully signed transaction"))
        .nth(1)
        .unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize(&hex::decode(hex_tx.trim()).unwrap()).unwrap();
    assert_eq!(tx.input.len(), 1);
    assert_eq!(
        tx.input[0].witness.len(),
        4,
        "empty, two signatures, script"
    );
    // The emulator damaged the link as asked (its statistics close the
    // demo's output).
    assert!(
        text.contains(&format!("byte error rate {byte_errors}")),
        "{text}"
    );
    let frames_corrupted: u64 = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"frames_corrupted\": "))
        .map(|v| v.trim_end_matches(',').parse::<u64>().unwrap())
        .sum();
    if byte_errors == "0.001" {
        assert!(frames_corrupted >= 5, "{frames_corrupted} frames damaged");
    }
    println!("{frames_corrupted} frames damaged by the emulator");
    println!("demo ran in {:?}", started.elapsed());
}

/// Approve; a retry of the same request returns the same signatures, also
/// after kill -9; the same id with another body is refused; another
/// transaction over a signed outpoint is refused; in safe mode a valid
/// request is refused and after the quorum exit approved; the audit log
/// verifies with `ground audit verify`.
#[test]
fn retries_return_the_stored_signatures_and_ids_are_never_reused() {
    let mut w = World::start(&WorldConfig {
        tpm: true,
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let mut link = w.link();
    let (req, psbt) = w.request([1; 32], &[0], 50_000_000, 2_000, 0);
    let first = w.sign(&mut link, policy, &req).unwrap();
    let result = first
        .result
        .clone()
        .unwrap_or_else(|| panic!("refused: {:?}", first.refused));
    assert_eq!(
        first.audit.as_ref().unwrap().entry.decision,
        Decision::Approved
    );
    cosign::verify_one(first.audit.as_ref().unwrap(), &w.receipt_key).unwrap();
    let sigs = decode_sigs(&result.signatures).unwrap();
    let (tx, added) = btc::complete(
        psbt.clone(),
        &sigs,
        &[btc::load_key(&w.ground_keys[0].0).unwrap()],
    )
    .unwrap();
    assert_eq!(added, 1);
    assert_eq!(tx.compute_txid().to_byte_array(), result.txid);

    let again = w.sign(&mut link, policy, &req).unwrap();
    assert_eq!(again.result.as_ref().unwrap().signatures, result.signatures);
    assert_eq!(again.audit.unwrap().entry.decision, Decision::Replayed);
    drop(link);
    w.restart();
    let mut link = w.link();
    let after = w.sign(&mut link, policy, &req).unwrap();
    assert_eq!(
        after.result.unwrap().signatures,
        result.signatures,
        "the stored result survives kill -9"
    );

    // Same id, another body.
    let (other, _) = w.request([1; 32], &[1], 50_000_000, 2_000, 0);
    let r = w.sign(&mut link, policy, &other).unwrap();
    let refused = r.refused.expect("id reuse refused");
    assert_eq!(refused.code, ReasonCode(0x0586), "{refused}");
    assert_eq!(refused.rule.as_deref(), Some("request-id-reuse"));
    assert_eq!(r.audit.unwrap().entry.code, 0x0586);
    // Another transaction over outpoint 0.
    let (conflict, _) = w.request([2; 32], &[0], 40_000_000, 2_000, 0);
    let r = w.sign(&mut link, policy, &conflict).unwrap();
    let refused = r.refused.expect("equivocation refused");
    assert_eq!(
        (refused.code, refused.rule.as_deref()),
        (ReasonCode(0x0615), Some("btc-equivocation")),
        "{refused}"
    );

    // Safe mode: a valid request is refused, counted; after the quorum
    // exit (by the ACTIVE policy's administrators) it is approved.
    let (valid, _) = w.request([3; 32], &[2], 30_000_000, 2_000, 1);
    let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_ENTER_SAFE, vec![]);
    link.request(&tc, policy).unwrap();
    let r = w.sign(&mut link, policy, &valid).unwrap();
    let refused = r.refused.expect("refused in safe mode");
    assert_eq!(refused.code, ReasonCode::MODE_FORBIDS, "{refused}");
    assert!(r.audit.is_none(), "refused before evaluation");
    let hk = spacenode_system_tests::housekeeping(&mut link, policy);
    assert_eq!(hk.sign_refused_mode, 1);
    let st = mode_status(&mut link, policy);
    let mut exit = admin::build(
        kind::EXIT_SAFE_MODE,
        st.node_id,
        st.admin_seq + 1,
        0,
        i64::MAX,
        vec![],
    );
    admin::sign(&mut exit, &w.admins[1].1, 1).unwrap();
    admin::sign(&mut exit, &w.admins[2].1, 2).unwrap();
    let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_EXIT, exit.encode());
    link.request(&tc, policy).unwrap();
    let r = w.sign(&mut link, policy, &valid).unwrap();
    assert!(
        r.result.is_some(),
        "approved after the exit: {:?}",
        r.refused
    );
    drop(link);

    let (ok, text) = w.ground(&[
        "audit",
        "verify",
        "--receipt-key",
        &w.receipt_key.to_string(),
    ]);
    assert!(ok, "{text}");
    // Approved A, its two retries, the reused id, the equivocation, the
    // request after the exit (safe mode refuses before evaluating: no entry).
    // A reply lost under load adds replays, never approvals.
    assert!(text.contains("audit log VERIFIED"), "{text}");
    assert!(text.contains("(2 approved, 2 refused,"), "{text}");
}

fn snapshot(state: &std::path::Path, to: &std::path::Path) {
    std::fs::copy(state.join("spacenode.db"), to.join("snap.db")).unwrap();
    let _ = std::fs::remove_file(to.join("snap.db-wal"));
    let _ = std::fs::copy(state.join("spacenode.db-wal"), to.join("snap.db-wal"));
}

fn restore(from: &std::path::Path, state: &std::path::Path) {
    std::fs::copy(from.join("snap.db"), state.join("spacenode.db")).unwrap();
    let _ = std::fs::remove_file(state.join("spacenode.db-wal"));
    let _ = std::fs::remove_file(state.join("spacenode.db-shm"));
    let _ = std::fs::copy(from.join("snap.db-wal"), state.join("spacenode.db-wal"));
}

use bitcoin::hashes::Hash as _;

/// An upload interrupted by kill -9 resumes with exactly the missing
/// chunks; conflicts and content that does not hash to its id are refused;
/// a payload reference to an unknown upload is refused.
#[test]
fn uploads_resume_across_a_restart() {
    let emu = spacenode_linkemu::emulator::Emulator::start(
        spacenode_linkemu::emulator::LinkParams::clean(921_600),
    )
    .unwrap();
    let fx = Fixture::new(emu.node_path(), 921_600, Fixture::QUIET);
    let mut node = Node::start(&fx);
    let policy = spacenode_system_tests::patient(921_600);
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = files::content_id(&content);
    let mut link = fx.link(emu.ground_path(), 921_600);
    let partial = files::upload_partial(&mut link, policy, &content, Some(3), &mut |_| {}).unwrap();
    assert!(partial.is_none());
    drop(link);
    node.kill9();
    let _node = Node::start(&fx);
    let mut link = fx.link(emu.ground_path(), 921_600);
    let st = files::status(&mut link, policy, id).unwrap();
    assert_eq!(st.state, FileState::Receiving);
    assert_eq!(st.received, 3 * 1972);
    assert_eq!(st.missing, vec![(3 * 1972, 10_000 - 3 * 1972)]);
    let mut chunks = 0;
    let done = files::upload(&mut link, policy, &content, &mut |e| {
        if let files::UploadEvent::Chunk { .. } = e {
            chunks += 1;
        }
    })
    .unwrap();
    assert_eq!((done, chunks), (id, 3), "only the missing chunks are sent");
    assert_eq!(
        files::status(&mut link, policy, id).unwrap().state,
        FileState::Complete
    );

    // Same id, another length.
    let tc = link.new_tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_BEGIN,
        FileBegin {
            content_id: id,
            total_len: 9_999,
        }
        .encode(),
    );
    let e = link.request(&tc, policy).unwrap_err();
    assert!(
        matches!(
            e,
            GroundError::Refused {
                code: ReasonCode(0x0906),
                ..
            }
        ),
        "{e}"
    );
    // Content that is not what its id says.
    let liar = [0x42u8; 32];
    let tc = link.new_tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_BEGIN,
        FileBegin {
            content_id: liar,
            total_len: 100,
        }
        .encode(),
    );
    link.request(&tc, policy).unwrap();
    let tc = link.new_tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_CHUNK,
        FileChunk {
            content_id: liar,
            offset: 0,
            data: vec![1; 100],
        }
        .encode(),
    );
    let e = link.request(&tc, policy).unwrap_err();
    assert!(
        matches!(
            e,
            GroundError::Refused {
                code: ReasonCode(0x0904),
                ..
            }
        ),
        "{e}"
    );
    let st = files::status(&mut link, policy, liar).unwrap();
    assert_eq!((st.state, st.received), (FileState::Receiving, 0));
    // A chunk at a position that is not a chunk boundary.
    let tc = link.new_tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_CHUNK,
        FileChunk {
            content_id: liar,
            offset: 1,
            data: vec![1; 99],
        }
        .encode(),
    );
    let e = link.request(&tc, policy).unwrap_err();
    assert!(
        matches!(
            e,
            GroundError::Refused {
                code: ReasonCode(0x0903),
                ..
            }
        ),
        "{e}"
    );
    // A sign request naming an upload the node does not have.
    let tc = link.new_tc(
        apid::SIGN,
        service::SIGN,
        subtype::SIGN_REQUEST,
        Payload::Upload([9; 32]).encode(),
    );
    let e = link.request(&tc, policy).unwrap_err();
    assert!(
        matches!(
            e,
            GroundError::Refused {
                code: ReasonCode(0x0902),
                ..
            }
        ),
        "{e}"
    );
    // Too large for the service.
    assert!(matches!(
        files::upload(&mut link, policy, &vec![0; 70_000], &mut |_| {}),
        Err(UploadError::Size(70_000))
    ));
}

/// A policy change waits for the active policy's delay and a veto cancels
/// it; a vetoed or older version never returns; an activation is an epoch
/// bump of the TPM counter, so restoring the database from before it is
/// detected as a rollback.
/// The completion report of an administrator request can be lost on the
/// downlink (the CI run of the demo lost the bootstrap policy's): the
/// ground then sends the same request again. The node must answer that it
/// is done, not refuse it because its version or command sequence is spent,
/// and must not execute it twice; anything else in between makes a repeat a
/// new request again (a vetoed version stays refused).
#[test]
fn a_repeated_administrator_request_is_answered_not_refused() {
    let w = World::start(&WorldConfig {
        activation_delay_s: 3_600,
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let mut link = w.link();
    let v2 = PolicyDocument::from_toml(&policy_toml(
        2,
        3_600,
        &w.admins,
        &w.approver.1,
        &WorldConfig::default().rules,
    ))
    .unwrap();
    let signed_v2 = sign_policy(&v2, &[(&w.admins[0].1, 0), (&w.admins[1].1, 1)]);
    let payload =
        cosign::send_payload(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap();
    // Exactly what the ground's retry sends: the same TC (same request id).
    let tc = link.new_tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_PROPOSE,
        payload.encode(),
    );
    for attempt in 1..=2 {
        let x = link.request(&tc, policy);
        assert!(x.is_ok(), "attempt {attempt}: {x:?}");
    }
    // And what an operator re-running `ground policy upload` sends: a new
    // TC with the same content.
    let Answer::Ok(Some(st)) =
        cosign::propose(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap()
    else {
        panic!("a repeated proposal was refused")
    };
    assert_eq!(
        (st.active_version, st.pending, st.pending_version),
        (1, true, 2)
    );

    // A veto, twice: the second is answered, not refused as a replay.
    let mode = cosign::mode_status(&mut link, policy).unwrap();
    let mut veto = admin::build(
        kind::VETO_POLICY,
        w.node_id,
        mode.admin_seq + 1,
        0,
        i64::MAX,
        v2.hash().to_vec(),
    );
    admin::sign(&mut veto, &w.admins[2].1, 2).unwrap();
    for attempt in 1..=2 {
        match cosign::admin_command(
            &mut link,
            policy,
            subtype::POLICY_VETO,
            &veto.encode(),
            &mut |_| {},
        )
        .unwrap()
        {
            Answer::Ok(()) => {}
            Answer::Refused(r) => panic!("veto attempt {attempt} refused: {r}"),
        }
    }
    let after = cosign::mode_status(&mut link, policy).unwrap();
    assert_eq!(
        after.admin_seq,
        mode.admin_seq + 1,
        "the veto ran once and spent one sequence"
    );
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert_eq!((st.active_version, st.pending), (1, false));
    // The veto came in between: the same proposal is a new request now,
    // and the vetoed version cannot come back.
    match cosign::propose(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap() {
        Answer::Refused(r) => assert_eq!(r.code, ReasonCode(0x0560), "{r}"),
        Answer::Ok(_) => panic!("vetoed version accepted again"),
    }
}

/// A wallet retired by an administrator quorum (`ground wallet retire`) is
/// refused from then on, also after a restart; what it signed before stays
/// (a retry of an earlier request returns its stored signatures), and a
/// second retirement is refused with 0x0566.
#[test]
fn a_retired_wallet_is_refused_and_its_history_stays() {
    let mut w = World::start(&WorldConfig::default());
    let policy = w.policy();
    let mut link = w.link();
    let (before, _) = w.request([31; 32], &[0], 10_000_000, 2_000, 0);
    let first = w.sign(&mut link, policy, &before).unwrap();
    assert!(first.refused.is_none(), "{:?}", first.refused);
    drop(link);

    let id = hex::encode(spacenode_btc::wallet::wallet_id(&w.descriptor));
    let k0 = format!("{}:0", w.admins[0].0.display());
    let k2 = format!("{}:2", w.admins[2].0.display());
    // One administrator is not a quorum.
    let (ok, text) = w.ground(&["wallet", "retire", "--id", &id, "--key", &k0]);
    assert!(!ok && text.contains("refused"), "{text}");
    let (ok, text) = w.ground(&[
        "wallet",
        "retire",
        "--descriptor",
        &w.descriptor,
        "--key",
        &k0,
        "--key",
        &k2,
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("RETIRED on the node") && text.contains("(0 wallet(s), 0 Safe(s)"),
        "{text}"
    );
    println!("{}", text.trim());

    for restarted in [false, true] {
        if restarted {
            w.restart();
        }
        let mut link = w.link();
        let seed = if restarted { 33 } else { 32 };
        let (after, _) = w.request([seed; 32], &[1], 10_000_000, 2_000, 0);
        let r = w.sign(&mut link, policy, &after).unwrap();
        assert_eq!(
            r.refused.as_ref().map(|x| x.code),
            Some(ReasonCode(0x0606)),
            "restarted={restarted}: {:?}",
            r.refused
        );
        let again = w.sign(&mut link, policy, &before).unwrap();
        assert!(
            again.result.is_some() && again.result == first.result,
            "the earlier answer stays: {:?}",
            again.refused
        );
    }
    let (ok, text) = w.ground(&["wallet", "retire", "--id", &id, "--key", &k0, "--key", &k2]);
    assert!(!ok && text.contains("0x0566"), "{text}");
}

#[test]
fn policy_changes_wait_can_be_vetoed_and_are_bound_to_the_tpm_counter() {
    let mut w = World::start(&WorldConfig {
        tpm: true,
        activation_delay_s: 2,
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let link = w.link();
    let rules_v2 = WorldConfig::default()
        .rules
        .replace("150000000", "50000000");
    let v2 =
        PolicyDocument::from_toml(&policy_toml(2, 2, &w.admins, &w.approver.1, &rules_v2)).unwrap();
    let signed_v2 = sign_policy(&v2, &[(&w.admins[0].1, 0), (&w.admins[2].1, 2)]);
    let file = w.fx.dir.path().join("v2.signed");
    spacenode_ground::policyfile::write(&file, &signed_v2).unwrap();
    drop(link);
    let (ok, text) = w.ground(&["policy", "upload", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("~ rules.per_tx_cap") || text.contains("per_tx_cap"),
        "the upload shows the change: {text}"
    );
    assert!(text.contains("PENDING"), "{text}");
    // A veto by one administrator (veto threshold 1) cancels it.
    let key = format!("{}:1", w.admins[1].0.display());
    let (ok, text) = w.ground(&["policy", "veto", "--key", &key]);
    assert!(ok, "{text}");
    assert!(text.contains("pending policy  none"), "{text}");
    std::thread::sleep(Duration::from_millis(2_500));
    let mut link = w.link();
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert_eq!(
        (st.active_version, st.pending),
        (1, false),
        "vetoed, not activated"
    );
    // The vetoed version cannot come back.
    match cosign::propose(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap() {
        Answer::Refused(r) => assert_eq!(r.code, ReasonCode(0x0560), "{r}"),
        Answer::Ok(_) => panic!("vetoed version accepted again"),
    }
    // Version 3 activates after the delay, bound to the counter.
    drop(link);
    w.node.take().unwrap().kill9();
    snapshot(&w.fx.state_dir, w.fx.dir.path());
    w.node = Some(Node::start(&w.fx));
    let mut link = w.link();
    let v3 =
        PolicyDocument::from_toml(&policy_toml(3, 2, &w.admins, &w.approver.1, &rules_v2)).unwrap();
    let signed_v3 = sign_policy(&v3, &[(&w.admins[0].1, 0), (&w.admins[1].1, 1)]);
    let Answer::Ok(Some(st)) =
        cosign::propose(&mut link, policy, &signed_v3.encode(), &mut |_| {}).unwrap()
    else {
        panic!("v3 refused")
    };
    assert!(st.pending && st.pending_version == 3);
    std::thread::sleep(Duration::from_millis(2_500));
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert_eq!((st.active_version, st.pending), (3, false));
    // The new cap applies at once.
    let (req, _) = w.request([7; 32], &[0], 60_000_000, 2_000, 0);
    let r = w.sign(&mut link, policy, &req).unwrap();
    assert_eq!(r.refused.map(|x| x.code), Some(ReasonCode(0x0612)));
    drop(link);
    // Restoring the database from before the activation is a rollback.
    w.node.take().unwrap().kill9();
    restore(w.fx.dir.path(), &w.fx.state_dir);
    w.node = Some(Node::start(&w.fx));
    let mut link = w.link();
    let st = mode_status(&mut link, policy);
    assert_eq!(
        (st.mode, st.reason),
        (2, 0x0806),
        "rollback detected: {st:?}"
    );
    assert_sign_refused_by_mode(&mut link, policy);
}

/// Issue 13 item 6: the time source steps 29 days forward (under the
/// example policies' 30-day `max_forward_jump`). Before the fix the tick
/// activated the pending policy change at once (its veto delay skipped) and
/// the next sign request found its 24 h velocity window empty. Now the
/// wall clock is bounded by `CLOCK_BOOTTIME`: the change stays pending and
/// the request is refused as a clock step (0x05E0) instead of charged
/// against an emptied window.
#[test]
fn a_forward_clock_step_neither_empties_velocity_nor_activates_a_pending_policy() {
    let w = World::start(&WorldConfig {
        rules: WorldConfig::default()
            .rules
            .replace("cap_sat = 1000000000", "cap_sat = 150000000"),
        node_extra: "[health]\ntest_hooks = true\n".into(),
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let mut link = w.link();
    let (req, _) = w.request([0xC1; 32], &[0], 90_000_000, 2_000, 0);
    let r = w.sign(&mut link, policy, &req).unwrap();
    assert!(r.result.is_some(), "first spend: {:?}", r.refused);
    // A change proposed now waits for the first policy's 3600 s delay.
    let v2 = PolicyDocument::from_toml(&policy_toml(
        2,
        2,
        &w.admins,
        &w.approver.1,
        &WorldConfig::default().rules,
    ))
    .unwrap();
    let signed_v2 = sign_policy(&v2, &[(&w.admins[0].1, 0), (&w.admins[2].1, 2)]);
    let Answer::Ok(Some(st)) =
        cosign::propose(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap()
    else {
        panic!("v2 refused")
    };
    assert!(st.pending && st.pending_version == 2, "{st:?}");
    let step: i64 = 29 * 86_400_000;
    std::fs::write(
        w.fx.state_dir.join("test-clock-offset-ms"),
        step.to_string(),
    )
    .unwrap();
    // Several policy polls (every second) with the stepped clock.
    std::thread::sleep(Duration::from_millis(2_500));
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert_eq!(
        (st.active_version, st.pending),
        (1, true),
        "a clock step activated the pending policy early: {st:?}"
    );
    let (req, _) = w.request_at([0xC2; 32], &[1], 90_000_000, 2_000, 0, step);
    let r = w.sign(&mut link, policy, &req).unwrap();
    assert!(
        r.result.is_none(),
        "a clock step emptied the velocity window: the second spend was signed"
    );
    assert_eq!(r.refused.map(|x| x.code), Some(ReasonCode(0x05E0)));
}

fn audit_rows(w: &World) -> i64 {
    rusqlite::Connection::open(w.fx.state_dir.join("spacenode.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap()
}

/// Issue 13 item 9: every replay of a decided request used to append an
/// audit entry (1000 replays, 1000 rows). Now the first replay is audited
/// and the rest are counted on the request's row.
#[test]
fn a_thousand_replays_add_a_bounded_number_of_audit_rows() {
    let w = World::start(&WorldConfig::default());
    let policy = w.policy();
    let mut link = w.link();
    let (req, _) = w.request([0xD1; 32], &[0], 10_000_000, 2_000, 0);
    let first = w.sign(&mut link, policy, &req).unwrap();
    assert!(first.result.is_some(), "{:?}", first.refused);
    let before = audit_rows(&w);
    let payload = cosign::send_payload(&mut link, policy, &req, &mut |_| {}).unwrap();
    // One after the other, each waiting only for its completion report (no
    // retries: a lost answer would add a replay, not hide one).
    let started = Instant::now();
    for _ in 0..1000 {
        let tc = link.new_tc(
            apid::SIGN,
            service::SIGN,
            subtype::SIGN_REQUEST,
            payload.encode(),
        );
        link.send(&tc).unwrap();
        // Wait for its completion report (whatever else comes down).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no completion report");
            if let Some(tm) = link
                .recv(Instant::now() + Duration::from_millis(500))
                .unwrap()
                && tm.service == service::VERIFICATION
                && matches!(tm.subtype, subtype::COMPLETE_OK | subtype::COMPLETE_FAIL)
            {
                break;
            }
        }
    }
    eprintln!("1000 replays sent in {:?}", started.elapsed());
    // TCs are handled in order: once this one is answered, all were.
    let last = w.sign(&mut link, policy, &req).unwrap();
    assert_eq!(
        last.result, first.result,
        "a replay answers the stored result"
    );
    let added = audit_rows(&w) - before;
    assert!(added <= 2, "1001 replays added {added} audit rows");
    let replays: i64 = rusqlite::Connection::open(w.fx.state_dir.join("spacenode.db"))
        .unwrap()
        .query_row(
            "SELECT replays FROM seen_requests WHERE request_id = ?1",
            [[0xD1u8; 32].as_slice()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(replays > 500, "replays counted on the row: {replays}");
}

/// Issue 13 item 9: the audit log is archived in segments behind a
/// checkpoint signed by the receipt key; `ground audit verify` accepts the
/// pruned log from it. Tampering with an archived row is irrelevant,
/// tampering with the checkpoint is refused (0x05E1).
#[test]
fn a_pruned_audit_log_verifies_from_the_signed_checkpoint() {
    let mut w = World::start(&WorldConfig::default());
    let cfg = std::fs::read_to_string(&w.fx.node_config).unwrap();
    std::fs::write(
        &w.fx.node_config,
        cfg.replacen(
            "hk_interval_s = 0\n",
            "hk_interval_s = 0\naudit_keep_entries = 2\naudit_segment_entries = 2\n",
            1,
        ),
    )
    .unwrap();
    w.restart();
    let policy = w.policy();
    let mut link = w.link();
    // Six decisions (refused: above the per-transaction cap).
    for i in 0..6u8 {
        let (req, _) = w.request([0xE0 + i; 32], &[0, 1], 160_000_000, 2_000, 0);
        let r = w.sign(&mut link, policy, &req).unwrap();
        assert_eq!(r.refused.map(|x| x.code), Some(ReasonCode(0x0612)));
    }
    drop(link);
    assert_eq!(audit_rows(&w), 4, "two entries archived");
    let (ok, text) = w.ground(&["audit", "verify"]);
    assert!(ok, "{text}");
    assert!(text.contains("checkpoint at seq 1"), "{text}");
    // An archived row is no longer part of what is verified.
    let archive = std::fs::read_dir(w.fx.state_dir.join("audit-archive"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xFF;
    std::fs::write(&archive, bytes).unwrap();
    let (ok, text) = w.ground(&["audit", "verify"]);
    assert!(ok, "{text}");
    // A tampered checkpoint is refused.
    rusqlite::Connection::open(w.fx.state_dir.join("spacenode.db"))
        .unwrap()
        .execute("UPDATE audit_checkpoint SET chain_hash = zeroblob(32)", [])
        .unwrap();
    let (ok, text) = w.ground(&["audit", "verify"]);
    assert!(!ok, "{text}");
    assert!(text.contains("0x05e1"), "{text}");
}

/// Issue 13 item 1 through the real daemon and its SQLite spend history:
/// A = {u0..u3} pays 0.95 BTC; B = {u0} paying the same with a higher fee
/// (which the old rule took for a fee bump of A, charging only the fee
/// increase) is refused as `btc-replacement-partial`; a bump spending all of
/// A's outpoints and u4 is signed; a second "replacement" of A leaving u4
/// alone meets that bump and is refused.
#[test]
fn partial_replacements_are_refused_by_the_daemon() {
    let base = WorldConfig::default();
    let w = World::start(&WorldConfig {
        utxos: 5,
        rules: format!(
            "per_tx_cap_sat = 200000000\nmax_fee_sat = 100000\nmax_fee_rate_sat_vb = 100\n\
             min_confirmations = 3\nmax_psbt_bytes = 200000\n\
             [[rules.velocity]]\nwindow_s = 3600\ncap_sat = 300000000\n\
             [[rules.allow]]\nlabel = \"exchange\"\naddress = \"{}\"\n\
             [rules.replacement]\nallowed = true\nmax_fee_sat = 200000\nmax_fee_rate_sat_vb = 200\n",
            spacenode_system_tests::cosign::DEST
        ),
        ..base
    });
    let policy = w.policy();
    let mut link = w.link();
    let pay = 95_000_000;
    let (a, a_psbt) = w.request([1; 32], &[0, 1, 2, 3], pay, 2_000, 0);
    let r = w.sign(&mut link, policy, &a).unwrap();
    assert!(r.result.is_some(), "{:?}", r.refused);
    for (k, u) in [0usize, 1, 2, 3].into_iter().enumerate() {
        let k8 = u8::try_from(k).unwrap();
        let (b, _) = w.request([10 + k8; 32], &[u], pay, 3_000 + u64::from(k8), 1);
        let r = w.sign(&mut link, policy, &b).unwrap();
        let refused = r.refused.expect("a partial replacement is refused");
        assert_eq!(refused.code.0, 0x06A0, "{refused}");
        assert_eq!(
            refused.rule.as_deref(),
            Some("btc-replacement-partial"),
            "{refused}"
        );
    }
    let (bump, bump_psbt) = w.request([20; 32], &[0, 1, 2, 3, 4], pay, 5_000, 2);
    let r = w.sign(&mut link, policy, &bump).unwrap();
    assert!(r.result.is_some(), "{:?}", r.refused);
    assert_ne!(
        a_psbt.unsigned_tx.compute_txid(),
        bump_psbt.unsigned_tx.compute_txid()
    );
    let (again, _) = w.request([21; 32], &[0, 1, 2, 3], pay, 9_000, 3);
    let r = w.sign(&mut link, policy, &again).unwrap();
    let refused = r.refused.expect("a second replacement of A is refused");
    assert_eq!(refused.code.0, 0x06A0, "{refused}");
    assert!(
        refused
            .detail
            .contains(&bump_psbt.unsigned_tx.compute_txid().to_string()),
        "{refused}"
    );
}

/// Issue 13 item 5: losing the database does not reopen the bootstrap. On
/// swtpm: the launch `[admin]` set A bootstraps v1; v2 (signed by A) makes
/// B the administrators and activates, anchored in the TPM NV. The
/// database is deleted and the node restarted: the launch set's bootstrap
/// is refused with 0x05F0, and so is the signed v2 as it was uplinked
/// (signed by A, not by the anchored set); the current quorum B recovers
/// with v3, which becomes the anchor.
#[test]
fn a_lost_database_does_not_reopen_the_bootstrap() {
    let mut w = World::start(&WorldConfig {
        tpm: true,
        activation_delay_s: 1,
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let b: Vec<(std::path::PathBuf, bitcoin::secp256k1::Keypair)> = (0..3u8)
        .map(|i| {
            let p = w.fx.dir.path().join(format!("new-admin{i}.json"));
            admin::keygen(&p).unwrap();
            let k = admin::load_key(&p).unwrap();
            (p, k)
        })
        .collect();
    let rules = WorldConfig::default().rules;
    let v2 = PolicyDocument::from_toml(&policy_toml(2, 1, &b, &w.approver.1, &rules)).unwrap();
    let signed_v2 = sign_policy(&v2, &[(&w.admins[0].1, 0), (&w.admins[1].1, 1)]);
    let mut link = w.link();
    match cosign::propose(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap() {
        Answer::Ok(Some(st)) => assert!(st.pending && st.pending_version == 2, "{st:?}"),
        other => panic!("v2 not pending: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert_eq!((st.active_version, st.pending), (2, false), "{st:?}");
    drop(link);

    // The database is lost.
    w.node.take().unwrap().kill9();
    for f in ["spacenode.db", "spacenode.db-wal", "spacenode.db-shm"] {
        let _ = std::fs::remove_file(w.fx.state_dir.join(f));
    }
    w.node = Some(Node::start(&w.fx));
    let mut link = w.link();
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert!(!st.active, "the database is new: {st:?}");
    // The launch set's bootstrap: refused.
    let v1 = sign_policy(&w.policy_doc, &[(&w.admins[0].1, 0), (&w.admins[1].1, 1)]);
    match cosign::propose(&mut link, policy, &v1.encode(), &mut |_| {}).unwrap() {
        Answer::Refused(r) => {
            assert_eq!(r.code, ReasonCode(0x05F0), "{r}");
            assert!(r.to_string().contains("provisioned before"), "{r}");
        }
        Answer::Ok(st) => panic!("the launch [admin] set bootstrapped again: {st:?}"),
    }
    // The signed v2 replayed as it was uplinked (signed by A).
    match cosign::propose(&mut link, policy, &signed_v2.encode(), &mut |_| {}).unwrap() {
        Answer::Refused(r) => assert!((0x0500..=0x050F).contains(&r.code.0), "{r}"),
        Answer::Ok(st) => panic!("old signatures recovered the node: {st:?}"),
    }
    let st = cosign::policy_status(&mut link, policy).unwrap();
    assert!(!st.active, "{st:?}");
    // Recovery by the current quorum B.
    let v3 = PolicyDocument::from_toml(&policy_toml(3, 1, &b, &w.approver.1, &rules)).unwrap();
    let signed_v3 = sign_policy(&v3, &[(&b[0].1, 0), (&b[2].1, 2)]);
    match cosign::propose(&mut link, policy, &signed_v3.encode(), &mut |_| {}).unwrap() {
        Answer::Ok(Some(st)) => {
            assert_eq!(
                (st.active, st.active_version, st.pending),
                (true, 3, false),
                "{st:?}"
            );
        }
        other => panic!("recovery by the anchored quorum refused: {other:?}"),
    }
    drop(link);
    // The anchor moved to v3: losing the database again, B's v2 (below
    // the anchor) no longer recovers it.
    w.node.take().unwrap().kill9();
    for f in ["spacenode.db", "spacenode.db-wal", "spacenode.db-shm"] {
        let _ = std::fs::remove_file(w.fx.state_dir.join(f));
    }
    w.node = Some(Node::start(&w.fx));
    let mut link = w.link();
    let v2_by_b = sign_policy(&v2, &[(&b[0].1, 0), (&b[1].1, 1)]);
    match cosign::propose(&mut link, policy, &v2_by_b.encode(), &mut |_| {}).unwrap() {
        Answer::Refused(r) => assert_eq!(r.code, ReasonCode(0x05F1), "{r}"),
        Answer::Ok(st) => panic!("a version below the anchor recovered: {st:?}"),
    }
}
