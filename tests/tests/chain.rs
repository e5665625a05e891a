//! System tests of the chain service: the real daemon behind the link
//! emulator, fed by the real `ground chain` commands with real mainnet
//! headers (read from `shared/data/bitcoin` next to the checkout, never
//! copied into the repository) and mined regtest chains.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bitcoin::block::Header;
use spacenode_chain::checkpoint::header_from_bytes;
use spacenode_chain::regtest::{genesis, mine_chain};
use spacenode_chain::validate::header_bytes;
use spacenode_ground::{admin, cosign};
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_policy::command::kind;
use spacenode_system_tests::cosign::{World, WorldConfig};
use spacenode_system_tests::{Fixture, Node, bin, repo_root};

const BAUD: u32 = 921_600;

/// `shared/data/bitcoin/headers/mainnet_headers_0_39999.bin` (next to the
/// checkout, or under `$SPACENODE_SHARED_DATA`, the `shared/data`
/// directory, for checkouts elsewhere); missing data is a failure, never a
/// skip.
fn mainnet_file() -> PathBuf {
    let p = std::env::var_os("SPACENODE_SHARED_DATA")
        .map_or_else(|| repo_root().join("../shared/data"), PathBuf::from)
        .join("bitcoin/headers/mainnet_headers_0_39999.bin");
    assert!(
        p.is_file(),
        "real Bitcoin headers not found at {} (the repository must sit at X/main with the data \
         at X/shared/data/bitcoin, see SOURCES.md there); this test must not be skipped",
        p.display()
    );
    p
}

fn mainnet_prefix(n: usize) -> Vec<u8> {
    let bytes = std::fs::read(mainnet_file()).expect("read mainnet headers");
    assert!(bytes.len() >= n * 80);
    bytes[..n * 80].to_vec()
}

fn hash_at(raw: &[u8], height: usize) -> String {
    let h = header_from_bytes(raw[height * 80..height * 80 + 80].try_into().unwrap());
    h.block_hash().to_string()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not json ({e}): {stdout}"))
}

fn chain_fixture(emu: &Emulator, chain: &str) -> Fixture {
    Fixture::new(
        emu.node_path(),
        BAUD,
        &format!("{}\n[chain]\n{chain}", Fixture::QUIET),
    )
}

fn ground(fx: &Fixture, emu: &Emulator, args: &[&str]) -> Output {
    let mut all = vec!["--baud", "921600"];
    all.extend_from_slice(args);
    fx.ground(emu.ground_path(), &all)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// Sync 6000 real headers from genesis, check the tip; kill -9 the daemon
/// in the middle of a longer sync, restart it: the stored chain is a real
/// prefix of the file with no gap, and re-running the sync resumes to the
/// end without resending what the node has.
#[test]
fn sync_survives_kill9_and_resumes() {
    let started = Instant::now();
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = chain_fixture(&emu, "network = \"mainnet\"\nstart = \"genesis\"\n");
    let mut node = Node::start(&fx);

    let first = mainnet_prefix(6000);
    let first_path = write(fx.dir.path(), "mainnet_0_5999.bin", &first);
    let summary = json(&ground(
        &fx,
        &emu,
        &["chain", "sync", "--headers", &first_path, "--json"],
    ));
    println!("first sync: {summary}");
    assert_eq!(summary["sent"], 5999, "{summary}");
    assert_eq!(summary["skipped"], 1, "genesis is never sent: {summary}");
    assert!(
        summary["payload_bytes_per_header"].as_f64().unwrap() <= 50.0,
        "{summary}"
    );
    assert_eq!(summary["status"]["tip_height"], 5999);

    let out = ground(&fx, &emu, &["chain", "status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let hash5999 = hash_at(&first, 5999);
    assert!(
        table.contains("5999") && table.contains(&hash5999),
        "{table}"
    );
    assert!(
        table.contains("mainnet") && table.contains("lowest kept height"),
        "{table}"
    );

    // A longer file: kill -9 the daemon at a random instant of its sync.
    let long_n = 16_000usize;
    let long = mainnet_prefix(long_n);
    let long_path = write(fx.dir.path(), "mainnet_0_15999.bin", &long);
    let child = Command::new(bin("ground"))
        .arg("--config")
        .arg(&fx.ground_config)
        .arg("--port")
        .arg(emu.ground_path())
        .args(["--baud", "921600", "--retries", "5"])
        .args(["chain", "sync", "--headers", &long_path, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let delay = Duration::from_millis(300 + u64::from(rand::random::<u16>() % 2500));
    std::thread::sleep(delay);
    node.kill9();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the sync finished before the kill after {delay:?}: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no answer from the node"),
        "{}",
        text(&out)
    );

    let node = Node::start(&fx);
    // The killed sync's last retries are still queued towards the node; it
    // refuses them as below its new window, and its REPLAY event (which
    // moves our sequence numbers above the window) is rate-limited to one a
    // second: give the first request after the restart that long.
    let st = json(&ground(
        &fx,
        &emu,
        &["--retries", "40", "chain", "status", "--json"],
    ));
    let tip = st["tip_height"].as_u64().unwrap() as usize;
    assert!((5999..long_n).contains(&tip), "{st}");
    assert_eq!(
        st["tip_hash"].as_str().unwrap(),
        hash_at(&long, tip),
        "the stored tip is not the file's header at {tip}: {st}"
    );
    let window = st["window"].as_u64().unwrap() as usize;
    assert_eq!(
        st["lowest_height"].as_u64().unwrap() as usize,
        tip.saturating_sub(window - 1),
        "the kept window has a gap: {st}"
    );
    let hk = json(&ground(&fx, &emu, &["hk", "--json"]));
    assert_eq!(hk["chain_tip_height"].as_u64().unwrap() as usize, tip);
    assert_eq!(hk["chain_flags"], 0);
    assert_eq!(hk["boot_count"], 2);

    let summary = json(&ground(
        &fx,
        &emu,
        &["chain", "sync", "--headers", &long_path, "--json"],
    ));
    println!("resumed at {tip} after a kill at {delay:?}: {summary}");
    let skipped = summary["skipped"].as_u64().unwrap() as usize;
    let sent = summary["sent"].as_u64().unwrap() as usize;
    assert_eq!(skipped, tip + 1, "{summary}");
    assert_eq!(sent, long_n - 1 - tip, "{summary}");
    assert!(sent < long_n - 1, "resume resent everything: {summary}");
    assert_eq!(summary["status"]["tip_height"], 15_999);
    assert_eq!(
        summary["status"]["tip_hash"].as_str().unwrap(),
        hash_at(&long, 15_999)
    );
    // Re-running once more sends nothing.
    let again = json(&ground(
        &fx,
        &emu,
        &["chain", "sync", "--headers", &long_path, "--json"],
    ));
    assert_eq!(again["sent"], 0, "{again}");
    assert_eq!(again["skipped"], long_n as u64);
    drop(node);
    assert!(
        started.elapsed() < Duration::from_secs(110),
        "took {:?}",
        started.elapsed()
    );
}

/// A header with a broken proof of work is refused by the node; the ground
/// prints the node's reason code name and the height, and the node keeps
/// everything below it, up to the last valid header (issue 13 item 15). A
/// truncated last header is left out with a warning and the rest synced.
/// Bad files get clear errors before anything is sent.
#[test]
fn mutated_header_is_refused_with_code_and_height() {
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = chain_fixture(&emu, "network = \"mainnet\"\nstart = \"genesis\"\n");
    let _node = Node::start(&fx);

    let mut raw = mainnet_prefix(300);
    // Flip a nonce bit of block 150: its hash no longer meets its target.
    raw[150 * 80 + 76] ^= 0x01;
    let path = write(fx.dir.path(), "mutated.bin", &raw);
    let out = ground(&fx, &emu, &["chain", "sync", "--headers", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for needle in [
        "0x0309",
        "ValidationError::InsufficientProofOfWork",
        "height 150",
        "at execution",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing: {}",
            text(&out)
        );
    }
    // The node keeps the valid headers of the batch before block 150 (issue
    // 13 item 15): its tip is block 149, the last valid header, and the
    // ground says so and stops.
    let st = json(&ground(&fx, &emu, &["chain", "status", "--json"]));
    assert_eq!(st["tip_height"], 149, "{st}");
    assert_eq!(st["tip_hash"].as_str().unwrap(), hash_at(&raw, 149));
    assert!(
        stderr.contains("the node kept the file's headers before it (node tip 149"),
        "{}",
        text(&out)
    );

    // A file whose last header is truncated: the complete headers are
    // synced, the tail is warned about.
    let good = mainnet_prefix(300);
    let cut = write(fx.dir.path(), "cut.bin", &good[..299 * 80 + 37]);
    let out = ground(&fx, &emu, &["chain", "sync", "--headers", &cut, "--json"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ends with 37 byte(s) of an incomplete header after 299 complete header(s)"),
        "{}",
        text(&out)
    );
    let summary = json(&out);
    assert_eq!(summary["truncated_tail_bytes"], 37, "{summary}");
    assert_eq!(summary["status"]["tip_height"], 298, "{summary}");
    assert_eq!(
        summary["status"]["tip_hash"].as_str().unwrap(),
        hash_at(&good, 298)
    );
    // Less than one header, and a missing file.
    let short = write(fx.dir.path(), "short.bin", &raw[..70]);
    let out = ground(&fx, &emu, &["chain", "sync", "--headers", &short]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("70 bytes, not a multiple of 80"),
        "{}",
        text(&out)
    );
    let out = ground(
        &fx,
        &emu,
        &["chain", "sync", "--headers", "/nonexistent/headers.bin"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read header file /nonexistent/headers.bin"),
        "{}",
        text(&out)
    );
    // Headers 200..299 with neither --first-height nor a link to the tip.
    let tail = write(fx.dir.path(), "tail.bin", &raw[200 * 80..]);
    let out = ground(&fx, &emu, &["chain", "sync", "--headers", &tail]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --first-height"),
        "{}",
        text(&out)
    );
}

/// Over a link that loses 10 % of frames both ways, a sync fed on stdin
/// still ends on the file's tip: a lost batch is resent, a lost reply makes
/// the ground resend a batch the node already applied, which is a no-op.
#[test]
fn lossy_link_sync_from_stdin_is_idempotent() {
    let lossy = LinkParams {
        frame_loss_rate: 0.10,
        seed: 7,
        ..LinkParams::clean(BAUD)
    };
    let emu = Emulator::start(lossy).unwrap();
    let fx = chain_fixture(&emu, "network = \"mainnet\"\nstart = \"genesis\"\n");
    let _node = Node::start(&fx);
    let raw = mainnet_prefix(3000);
    let mut child = Command::new(bin("ground"))
        .arg("--config")
        .arg(&fx.ground_config)
        .arg("--port")
        .arg(emu.ground_path())
        .args(["--baud", "921600", "--retries", "20"])
        .args(["chain", "sync", "--from-stdin", "--format", "raw", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&raw).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let summary = json(&out);
    println!("lossy sync: {summary}");
    assert_eq!(summary["status"]["tip_height"], 2999, "{summary}");
    assert_eq!(
        summary["status"]["tip_hash"].as_str().unwrap(),
        hash_at(&raw, 2999)
    );
    assert!(summary["retries"].as_u64().unwrap() > 0, "{summary}");
    // Batches re-sent after a lost reply ran again on the node, as no-ops.
    let hk = json(&ground(&fx, &emu, &["--retries", "20", "hk", "--json"]));
    let batches = summary["batches"].as_u64().unwrap();
    assert!(
        hk["tc_accepted"].as_u64().unwrap() > batches + 2,
        "no batch was executed twice: {hk} {summary}"
    );
    assert_eq!(hk["chain_tip_height"], 2999);
}

fn raw_file(headers: &[Header]) -> Vec<u8> {
    headers.iter().flat_map(header_bytes).collect()
}

/// Regtest with a 10-header window: a shallow reorg is followed; a credible
/// branch forking below the window is refused with its code, raises
/// CHAIN_DEEP_REORG, and sets the housekeeping flag until acknowledged.
#[test]
fn deep_reorg_is_refused_raises_the_event_and_sets_the_flag() {
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = chain_fixture(
        &emu,
        "network = \"regtest\"\nwindow = 10\nstart = \"genesis\"\n",
    );
    let _node = Node::start(&fx);
    let g = genesis();
    let a: Vec<Header> = std::iter::once(g)
        .chain(mine_chain(&g, 30, 600).unwrap())
        .collect();
    let a_path = write(fx.dir.path(), "a.bin", &raw_file(&a));
    let s = json(&ground(
        &fx,
        &emu,
        &["chain", "sync", "--headers", &a_path, "--json"],
    ));
    assert_eq!(s["status"]["tip_height"], 30, "{s}");

    // Shallow: branch c forks after 27 with two more blocks.
    let c: Vec<Header> = a[..=27]
        .iter()
        .copied()
        .chain(mine_chain(&a[27], 5, 599).unwrap())
        .collect();
    let hexes: Vec<String> = c.iter().map(|h| hex::encode(header_bytes(h))).collect();
    let c_path = write(
        fx.dir.path(),
        "c.json",
        &serde_json::to_vec(&hexes).unwrap(),
    );
    let s = json(&ground(
        &fx,
        &emu,
        &["chain", "sync", "--headers", &c_path, "--json"],
    ));
    assert_eq!(s["reorganized"], true, "{s}");
    assert_eq!(s["status"]["tip_height"], 32);
    assert_eq!(s["status"]["last_reorg"]["fork_height"], 27);
    assert_eq!(s["status"]["last_reorg"]["depth"], 3);

    // Deep: branch b forks after 5, far below the kept window (23..=32), and
    // carries more work than the window.
    let b: Vec<Header> = a[..=5]
        .iter()
        .copied()
        .chain(mine_chain(&a[5], 40, 601).unwrap())
        .collect();
    let b_path = write(fx.dir.path(), "b.bin", &raw_file(&b));
    let out = ground(&fx, &emu, &["chain", "sync", "--headers", &b_path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0x0325") && stderr.contains("ChainError::DeepReorgRefused"),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("height 23"), "{}", text(&out));

    let hk = json(&ground(&fx, &emu, &["hk", "--json"]));
    assert_eq!(hk["chain_tip_height"], 32, "{hk}");
    assert_eq!(hk["chain_flags"], 1, "deep-reorg flag: {hk}");
    let out = ground(&fx, &emu, &["hk"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DEEP REORG REFUSED"),
        "{}",
        text(&out)
    );
    let out = ground(&fx, &emu, &["events", "--last", "20"]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains("CHAIN_DEEP_REORG") && events.contains("lowest_kept=23 branch=23..=45"),
        "{events}"
    );
    assert!(
        events.contains("CHAIN_REORG") && events.contains("fork=27 depth=3 new_tip=32"),
        "{events}"
    );
    let out = ground(&fx, &emu, &["chain", "status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("YES: branch 23..=45"),
        "{}",
        text(&out)
    );

    // Issue 13 item 12: any authenticated ground used to clear the flag
    // with this plain TC (this test asserted that). It now needs the
    // administrator quorum: `deep_reorg_stops_signing_until_the_quorum_clears_it`.
    let out = ground(&fx, &emu, &["chain", "clear-deep-reorg"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0x03b0"),
        "{}",
        text(&out)
    );
    let hk = json(&ground(&fx, &emu, &["hk", "--json"]));
    assert_eq!(hk["chain_flags"], 1, "{hk}");
    let st = json(&ground(&fx, &emu, &["chain", "status", "--json"]));
    assert!(!st["deep_reorg_refused"].is_null(), "{st}");
    assert_eq!(st["tip_height"], 32);
}

/// Issue 13 item 12, through the real daemon: a refused deep reorg stops
/// Bitcoin signing (`btc-deep-reorg`); the plain clear TC is refused
/// (0x03B0); a command signed by one administrator, or for another branch,
/// is refused; a quorum-signed CLEAR_DEEP_REORG clears the flag and the
/// same request is then signed.
#[test]
fn deep_reorg_stops_signing_until_the_quorum_clears_it() {
    let w = World::start(&WorldConfig {
        // Keeps heights 2..=4: the funding block (2) and its confirmations.
        chain_extra: "window = 3\n".into(),
        ..WorldConfig::default()
    });
    let policy = w.policy();
    let mut link = w.link();
    let (first, _) = w.request([1; 32], &[0], 50_000_000, 2_000, 0);
    let r = w.sign(&mut link, policy, &first).unwrap();
    assert!(r.result.is_some(), "{:?}", r.refused);
    drop(link);

    // A heavier branch forking after genesis, below the kept window.
    let g = genesis();
    let branch: Vec<Header> = std::iter::once(g)
        .chain(mine_chain(&g, 10, 601).unwrap())
        .collect();
    let path = write(w.fx.dir.path(), "branch.bin", &raw_file(&branch));
    let g = |args: &[&str]| {
        let mut all = vec!["--baud", "921600"];
        all.extend_from_slice(args);
        w.fx.ground(w.emu.ground_path(), &all)
    };
    let fails = |out: &Output, code: &str| {
        assert!(!out.status.success(), "{}", text(out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(code),
            "{code}: {}",
            text(out)
        );
    };
    fails(&g(&["chain", "sync", "--headers", &path]), "0x0325");
    let st = json(&g(&["chain", "status", "--json"]));
    let branch_start =
        u32::try_from(st["deep_reorg_refused"]["branch_start"].as_u64().unwrap()).unwrap();

    let mut link = w.link();
    let (req, _) = w.request([2; 32], &[1], 50_000_000, 2_000, 1);
    let r = w.sign(&mut link, policy, &req).unwrap();
    let refused = r.refused.expect("signing refused while the flag is set");
    assert_eq!(refused.code.0, 0x06A7, "{refused}");
    assert_eq!(refused.rule.as_deref(), Some("btc-deep-reorg"), "{refused}");
    let mode = cosign::mode_status(&mut link, policy).unwrap();
    drop(link);

    // The plain TC (any authenticated ground) is refused.
    fails(&g(&["chain", "clear-deep-reorg"]), "0x03b0");

    let command = |seq: u64, branch: u32, signers: &[usize]| {
        let mut cmd = admin::build(
            kind::CLEAR_DEEP_REORG,
            w.node_id,
            seq,
            0,
            i64::MAX,
            branch.to_be_bytes().to_vec(),
        );
        for i in signers {
            admin::sign(&mut cmd, &w.admins[*i].1, u8::try_from(*i).unwrap()).unwrap();
        }
        let p = w.fx.dir.path().join(format!("clear-{seq}.cmd"));
        admin::write(&p, &cmd).unwrap();
        p.to_str().unwrap().to_string()
    };
    let seq = mode.admin_seq + 1;
    // One administrator is not the quorum; another branch is not this one.
    fails(
        &g(&[
            "chain",
            "clear-reorg",
            "--command",
            &command(seq, branch_start, &[0]),
        ]),
        "0x050",
    );
    fails(
        &g(&[
            "chain",
            "clear-reorg",
            "--command",
            &command(seq, branch_start + 1, &[0, 2]),
        ]),
        "0x03b2",
    );
    assert_eq!(json(&g(&["hk", "--json"]))["chain_flags"], 1);

    let out = g(&[
        "chain",
        "clear-deep-reorg",
        "--command",
        &command(seq, branch_start, &[0, 2]),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&g(&["hk", "--json"]))["chain_flags"], 0);

    let mut link = w.link();
    let r = w.sign(&mut link, policy, &req).unwrap();
    assert!(r.result.is_some(), "{:?}", r.refused);
}
