//! The ground checks every local input before it touches the link: a
//! damaged or wrong file gets ONE line naming the file, what was expected
//! and where it went wrong, and no serial port is opened (the fixture's
//! port does not exist: had the ground tried it, the error would be about
//! the port). One test per kind of file: PSBT, SPV proofs, headers, policy
//! (TOML and signed), administrator command, key files (administrator,
//! approver `FILE:INDEX`, co-signer), the pinned attestation key,
//! descriptor, funding file and upload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use spacenode_ground::policyfile;
use spacenode_system_tests::Fixture;
use spacenode_testkit::btc::{Demo, DemoWallet, demo_policy, sign_policy};

/// A port that does not exist: opening it would be the error instead.
const NO_PORT: &str = "/dev/ttyUSB97";

/// Runs `ground` and returns its one-line error; fails unless it exits 1
/// with exactly one line that names `file` and `expected`, and says
/// nothing about a port.
fn one_line_error(fx: &Fixture, args: &[&str], file: &Path, expected: &str) -> String {
    let out = fx.ground(Path::new(NO_PORT), args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains(&file.display().to_string()),
        "{args:?}: the file is not named: {line}"
    );
    assert!(
        line.contains(expected),
        "{args:?}: expected {expected:?}: {line}"
    );
    assert!(
        !line.contains("serial port") && !line.contains(NO_PORT),
        "{args:?}: the port was touched first: {line}"
    );
    assert!(line.len() < 400, "{args:?}: too long: {line}");
    line.to_string()
}

fn write(fx: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let p = fx.dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A valid PSBT (base64) and a valid administrator key file.
fn valid_psbt_and_key(fx: &Fixture) -> (PathBuf, PathBuf) {
    let demo = Demo::new(DemoWallet::WshSortedMulti, 1, 50_000_000, 3).unwrap();
    let psbt = demo
        .psbt(&[0], demo.destination().unwrap(), 10_000_000, 2_000, 0)
        .unwrap();
    let text = spacenode_ground::btc::base64_encode(&psbt.serialize());
    let path = write(fx, "good.psbt", text.as_bytes());
    let key = fx.dir.path().join("admin.json");
    spacenode_ground::admin::keygen(&key).unwrap();
    (path, key)
}

#[test]
fn a_garbage_psbt_is_one_line_before_the_port() {
    let fx = Fixture::new(Path::new(NO_PORT), 115_200, "");
    let garbage = write(&fx, "garbage.psbt", b"GIF89a\x01\x00\x01\x00\x80\xff\x00");
    let line = one_line_error(
        &fx,
        &["btc", "sign", "--psbt", s(&garbage)],
        &garbage,
        "expected a PSBT",
    );
    assert!(line.contains("starts with"), "{line}");

    // Base64 of a PSBT with one character flipped: where it went wrong.
    let (good, _) = valid_psbt_and_key(&fx);
    let mut text = std::fs::read_to_string(&good).unwrap();
    text.replace_range(40..41, "!");
    let flipped = write(&fx, "flipped.psbt", text.as_bytes());
    let line = one_line_error(
        &fx,
        &["btc", "sign", "--psbt", s(&flipped)],
        &flipped,
        "expected a PSBT",
    );
    assert!(line.contains("character 40"), "{line}");

    // Cut in the middle: the parser's reason, on one line.
    let cut = write(&fx, "cut.psbt", &text.as_bytes()[..text.len() / 2]);
    one_line_error(
        &fx,
        &["btc", "sign", "--psbt", s(&cut)],
        &cut,
        "expected a PSBT",
    );
}

#[test]
fn damaged_proofs_and_cosigner_keys_are_one_line_before_the_port() {
    let fx = Fixture::new(Path::new(NO_PORT), 115_200, "");
    let (psbt, key) = valid_psbt_and_key(&fx);
    let proofs = write(&fx, "proofs.json", b"[{\"txid\": \"00\", \"kind\": ");
    one_line_error(
        &fx,
        &["btc", "sign", "--psbt", s(&psbt), "--proofs", s(&proofs)],
        &proofs,
        "expected SPV proofs",
    );
    let approver = format!("{}:0", key.display());
    let cosigner = write(&fx, "cosigner.json", b"{\"seed\": \"zz\"}");
    one_line_error(
        &fx,
        &[
            "btc",
            "sign",
            "--psbt",
            s(&psbt),
            "--approver",
            &approver,
            "--cosign",
            s(&cosigner),
        ],
        &cosigner,
        "expected a ground co-signer key file",
    );
    one_line_error(
        &fx,
        &["btc", "xpub", "--key", s(&cosigner)],
        &cosigner,
        "expected a ground co-signer key file",
    );
}

#[test]
fn damaged_header_files_are_one_line_before_the_port() {
    let fx = Fixture::new(Path::new(NO_PORT), 115_200, "");
    let short = write(&fx, "headers.bin", &[7u8; 79]);
    one_line_error(
        &fx,
        &["chain", "sync", "--headers", s(&short)],
        &short,
        "not a multiple of 80",
    );
    let json = write(&fx, "headers.json", b"[\"00\", 5]");
    one_line_error(
        &fx,
        &["chain", "sync", "--headers", s(&json)],
        &json,
        "headers.json",
    );
}

#[test]
fn a_signed_policy_with_one_flipped_byte_is_one_line() {
    let fx = Fixture::new(Path::new(NO_PORT), 115_200, "");
    let demo = Demo::new(DemoWallet::WshSortedMulti, 1, 50_000_000, 1).unwrap();
    let doc = demo_policy(&demo.admins, &demo.approver, 1).unwrap();
    let signed = sign_policy(&demo.secp, &demo.admins, &doc.encode(), &[0, 1]);
    let good = fx.dir.path().join("policy.signed");
    policyfile::write(&good, &signed).unwrap();
    let out = fx.ground(Path::new(NO_PORT), &["policy", "verify", s(&good)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The case: one byte flipped into a non-hex character. Offline
    // (verify) and online (upload) commands say the same, in one line.
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[300] = b'x';
    let flipped = write(&fx, "flipped.signed", &bytes);
    for args in [
        vec!["policy", "verify", s(&flipped)],
        vec!["policy", "upload", s(&flipped)],
    ] {
        let line = one_line_error(&fx, &args, &flipped, "expected a signed-policy file");
        assert!(line.contains("character 300"), "{line}");
        assert!(!line.contains("TOML") && !line.contains('^'), "{line}");
    }

    // A flipped hex digit: the CBOR does not decode, or the document does.
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[8] = if bytes[8] == b'0' { b'1' } else { b'0' };
    let digit = write(&fx, "digit.signed", &bytes);
    one_line_error(
        &fx,
        &["policy", "upload", s(&digit)],
        &digit,
        "expected a signed-policy file",
    );

    // A TOML policy with a syntax error: line and column, one line.
    let toml = write(
        &fx,
        "policy.toml",
        b"version = 2\nnetwork = \"regtest\"\nactivation_delay_s = = 5\n",
    );
    let line = one_line_error(
        &fx,
        &["policy", "upload", s(&toml)],
        &toml,
        "expected a policy (TOML)",
    );
    assert!(line.contains("line 3, column"), "{line}");
}

#[test]
fn damaged_command_key_and_ak_files_are_one_line_before_the_port() {
    let fx = Fixture::new(Path::new(NO_PORT), 115_200, "");
    let command = write(&fx, "exit.cmd", b"0102zz\n");
    one_line_error(
        &fx,
        &["mode", "exit", "--command", s(&command)],
        &command,
        "expected an administrator command file",
    );
    let undecodable = write(&fx, "short.cmd", b"0102\n");
    one_line_error(
        &fx,
        &[
            "link",
            "rekey",
            "--key-id",
            "2",
            "--command",
            s(&undecodable),
        ],
        &undecodable,
        "expected an administrator command file",
    );

    let key = write(&fx, "bad-admin.json", b"not json");
    let spec = format!("{}:0", key.display());
    one_line_error(
        &fx,
        &["policy", "veto", "--key", &spec],
        &key,
        "expected an administrator key file",
    );
    let (_, good_key) = valid_psbt_and_key(&fx);
    let no_index = good_key.display().to_string();
    one_line_error(
        &fx,
        &["policy", "veto", "--key", &no_index],
        &good_key,
        "expected FILE:INDEX",
    );

    let ak = write(&fx, "node.ak", b"00112233\n");
    one_line_error(
        &fx,
        &["keys", "attest", "--ak", s(&ak)],
        &ak,
        "expected the pinned attestation key",
    );
}

#[test]
fn a_bad_descriptor_funding_or_upload_is_one_line_before_the_port() {
    let fx = Fixture::new(Path::new(NO_PORT), 115_200, "");
    let out = fx.ground(
        Path::new(NO_PORT),
        &[
            "wallet",
            "register",
            "--descriptor",
            "wsh(sortedmulti(2,nope))",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --descriptor: expected an output descriptor"),
        "{stderr}"
    );

    let funding = write(&fx, "funding.json", b"{}");
    one_line_error(
        &fx,
        &[
            "demo",
            "psbt",
            "--funding",
            s(&funding),
            "--to",
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            "--amount-sat",
            "1000",
            "--out",
            s(&fx.dir.path().join("out.psbt")),
            "--proofs-out",
            s(&fx.dir.path().join("proofs.json")),
        ],
        &funding,
        "expected a funding file",
    );

    let empty = write(&fx, "empty.bin", b"");
    one_line_error(
        &fx,
        &["files", "upload", s(&empty)],
        &empty,
        "expected a file to upload",
    );
    let big = write(&fx, "big.bin", &vec![0u8; 70_000]);
    one_line_error(
        &fx,
        &["files", "upload", s(&big)],
        &big,
        "it is 70000 bytes",
    );
}
