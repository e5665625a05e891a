//! Key custody in the real daemon on a real (software) TPM: link keys
//! sealed from the config then named by id only, attestation verified by
//! the ground tool against the expected binary and config, a changed
//! config (PCR mismatch), a corrupt seed blob and a restored old database
//! each put the node in safe mode with its reason while the link stays up,
//! and a sign request is then refused (`MODE_FORBIDS`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use spacenode_keys::swtpm::Swtpm;
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_system_tests::{
    Fixture, Node, admin_set, append_config, assert_sign_refused_by_mode, bin, mode_status,
    patient, rekey_command,
};

const BAUD: u32 = 921_600;

struct Tpm {
    sw: Swtpm,
    emu: Emulator,
    fx: Fixture,
}

fn setup() -> Tpm {
    setup_with("")
}

/// `keys_extra`: more `[keys]` settings.
fn setup_with(keys_extra: &str) -> Tpm {
    let sw = Swtpm::start().expect("swtpm (install swtpm swtpm-tools)");
    let emu = Emulator::start(LinkParams::clean(BAUD)).unwrap();
    let fx = Fixture::new(emu.node_path(), BAUD, Fixture::QUIET);
    append_config(
        &fx,
        &format!(
            "[keys]\nbackend = \"tpm\"\ntcti = \"{}\"\nseal_auth = \"0011223344\"\n{keys_extra}",
            sw.tcti()
        ),
    );
    Tpm { sw, emu, fx }
}

fn ground(t: &Tpm, args: &[&str]) -> (bool, String) {
    let mut all = vec!["--baud", "921600"];
    all.extend_from_slice(args);
    let out = t.fx.ground(t.emu.ground_path(), &all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ok(t: &Tpm, args: &[&str]) -> String {
    let (good, text) = ground(t, args);
    assert!(good, "ground {args:?}: {text}");
    text
}

/// Removes the plaintext link key from the config (after it was sealed).
fn drop_plaintext_key(fx: &Fixture) {
    let cfg = std::fs::read_to_string(&fx.node_config).unwrap();
    let cleaned: String = cfg
        .lines()
        .filter(|l| !l.starts_with("key = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&fx.node_config, cleaned).unwrap();
}

#[test]
fn link_keys_are_sealed_and_attestation_verifies_against_the_expected_software() {
    let t = setup();
    let mut node = Node::start(&t.fx);
    assert!(t.fx.state_dir.join("sealed/link-key-1.blob").exists());
    assert!(t.fx.state_dir.join("sealed/bip32-seed.blob").exists());
    assert!(node.log_text().contains("remove its `key` from the config"));
    ok(&t, &["ping"]);
    node.kill9();
    // Config names the key by id only from now on.
    drop_plaintext_key(&t.fx);
    let _node = Node::start(&t.fx);
    ok(&t, &["ping"]);
    let ak = t.fx.dir.path().join("ak.hex");
    let a = ak.to_str().unwrap();
    let measured = std::process::Command::new(bin("spacenoded"))
        .args(["--print-measurement", "--config"])
        .arg(&t.fx.node_config)
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&measured.stdout).unwrap();
    let pcr = m["software_pcr"].as_str().unwrap().to_string();
    let first = ok(
        &t,
        &[
            "keys",
            "attest",
            "--ak",
            a,
            "--enroll",
            "--expect-pcr",
            &pcr,
        ],
    );
    assert!(
        first.contains("attestation verified") && first.contains("matches the expected software"),
        "{first}"
    );
    ok(&t, &["keys", "attest", "--ak", a, "--expect-pcr", &pcr]);
    // Expecting other software is refused.
    let other = "ab".repeat(32);
    let (good, text) = ground(&t, &["keys", "attest", "--ak", a, "--expect-pcr", &other]);
    assert!(!good && text.contains("REJECTED"), "{text}");
    let xpub = ok(&t, &["keys", "xpub", "m/48'/1'/0'/2'"]);
    assert!(xpub.contains("tpub"), "{xpub}");
}

#[test]
fn changed_software_measurement_is_safe_mode_with_the_link_up() {
    let t = setup();
    let mut node = Node::start(&t.fx);
    node.kill9();
    // A changed setting changes the measured PCR (a comment would not).
    append_config(&t.fx, "[logging]\nlevel = \"debug\"\n");
    let _node = Node::start(&t.fx);
    let mut link = t.fx.link(t.emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!(
        (st.mode, st.reason, st.seed_available),
        (2, 0x0804, false),
        "{st:?}"
    );
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    drop(link);
    let (good, text) = ground(&t, &["keys", "xpub", "m/0'"]);
    assert!(!good && text.contains("not available"), "{text}");
}

/// Issue 13 item 11: with `keys.seal_pcrs = [0, 7, 23]` the seed is sealed
/// to the boot PCRs' values at provisioning. Unchanged, the node restarts
/// with its seed; after something is measured into PCR 7 (another
/// bootloader or secure-boot state) the seed does not unseal: safe mode
/// 0x0804 with the link up (link keys are not bound to boot PCRs).
#[test]
fn extended_boot_pcr_is_safe_mode_with_the_link_up() {
    let t = setup_with("seal_pcrs = [0, 7, 23]\n");
    let mut node = Node::start(&t.fx);
    node.kill9();
    let mut node = Node::start(&t.fx);
    let mut link = t.fx.link(t.emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!((st.reason, st.seed_available), (0, true), "{st:?}");
    drop(link);
    node.kill9();
    let out = std::process::Command::new("tpm2_pcrextend")
        .arg(format!("7:sha256={}", "5a".repeat(32)))
        .env("TPM2TOOLS_TCTI", t.sw.tcti())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = Node::start(&t.fx);
    let mut link = t.fx.link(t.emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!(
        (st.mode, st.reason, st.seed_available),
        (2, 0x0804, false),
        "{st:?}"
    );
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
    assert!(
        node.log_text().contains("pcrs [0, 7, 23]"),
        "{}",
        node.log_text()
    );
}

#[test]
fn corrupt_seed_blob_is_safe_mode_tpm_unseal() {
    let t = setup();
    let mut node = Node::start(&t.fx);
    node.kill9();
    let blob = t.fx.state_dir.join("sealed/bip32-seed.blob");
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xFF;
    std::fs::write(&blob, bytes).unwrap();
    let _node = Node::start(&t.fx);
    let mut link = t.fx.link(t.emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!(
        (st.mode, st.reason, st.seed_available),
        (2, 0x0803, false),
        "{st:?}"
    );
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
}

#[test]
fn restoring_an_older_database_is_detected() {
    let t = setup();
    let admins = admin_set(&t.fx);
    let mut node = Node::start(&t.fx);
    ok(&t, &["ping"]);
    node.kill9();
    let db = t.fx.state_dir.join("spacenode.db");
    let copy = t.fx.dir.path().join("old.db");
    // A clean copy: checkpoint the WAL by opening and closing once more.
    let mut n2 = Node::start(&t.fx);
    n2.kill9();
    std::fs::copy(&db, &copy).unwrap();
    let _ = std::fs::copy(
        t.fx.state_dir.join("spacenode.db-wal"),
        t.fx.dir.path().join("old.db-wal"),
    );
    let mut node = Node::start(&t.fx);
    // A rekey is an epoch bump: the TPM counter moves past the copy.
    let node_id = {
        let mut link = t.fx.link(t.emu.ground_path(), BAUD);
        mode_status(&mut link, patient(BAUD)).node_id
    };
    let cmd = rekey_command(&t.fx, &admins, node_id, 1, 7);
    ok(
        &t,
        &[
            "link",
            "rekey",
            "--key-id",
            "7",
            "--command",
            cmd.to_str().unwrap(),
        ],
    );
    ok(&t, &["ping"]);
    node.kill9();
    std::fs::copy(&copy, &db).unwrap();
    let _ = std::fs::remove_file(t.fx.state_dir.join("spacenode.db-wal"));
    let _ = std::fs::copy(
        t.fx.dir.path().join("old.db-wal"),
        t.fx.state_dir.join("spacenode.db-wal"),
    );
    let _node = Node::start(&t.fx);
    let mut link = t.fx.link(t.emu.ground_path(), BAUD);
    let st = mode_status(&mut link, patient(BAUD));
    assert_eq!((st.mode, st.reason), (2, 0x0806), "{st:?}");
    assert_sign_refused_by_mode(&mut link, patient(BAUD));
}
