//! Secret memory versus core dumps.
//!
//! A child process (this test binary re-executed in probe mode) unseals or
//! loads a seed into a `SecretBox` and holds a control secret in ordinary
//! heap memory. The parent dumps the child's memory and searches the dump:
//! the control secret must be found (so the test can fail), the seed must not.
//!
//! Two dumpers are used: `gcore` from gdb (which honors MADV_DONTDUMP: gdb
//! reads the `dd` VmFlag from /proc/PID/smaps) and the kernel's own core
//! dump on SIGABRT (core_pattern "core", RLIMIT_CORE raised for the child
//! only). A third check shows that `set_process_undumpable` suppresses the
//! kernel core dump altogether.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::NetworkKind;
use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{AuthValue, Profile, SealedBlob, Signer, Tpm, TpmConfig, secret_mem};

const PROBE_ENV: &str = "SPACENODE_DUMP_PROBE";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    // Manual loop: tests run unoptimized and dumps are tens of MB.
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    let Some(last) = hay.len().checked_sub(needle.len()) else {
        return false;
    };
    let mut i = 0;
    while i <= last {
        if hay[i] == first && &hay[i..i + needle.len()] == needle {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether any 12-byte window of `secret` occurs in `hay`: catches partial
/// copies (e.g. a freed heap chunk whose first bytes the allocator reused).
/// One pass over the dump (it is tens of MB and tests run unoptimized).
fn contains_part(hay: &[u8], secret: &[u8]) -> bool {
    const W: usize = 12;
    let mut first = [false; 256];
    for w in secret.windows(W) {
        first[usize::from(w[0])] = true;
    }
    let Some(last) = hay.len().checked_sub(W) else {
        return false;
    };
    let mut i = 0;
    while i <= last {
        if first[usize::from(hay[i])] {
            let cand = &hay[i..i + W];
            if secret.windows(W).any(|w| w == cand) {
                return true;
            }
        }
        i += 1;
    }
    false
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom_fill(&mut b);
    b
}

fn getrandom_fill(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(b)
        .unwrap();
}

/// Probe mode: not a real test unless PROBE_ENV is set (then it is the
/// child). Arguments come through environment variables.
#[test]
fn probe_child() {
    let Ok(mode) = std::env::var(PROBE_ENV) else {
        return;
    };
    let control_hex = std::env::var("PROBE_CONTROL").unwrap();
    // The control secret in ordinary heap memory.
    let control: Vec<u8> = hex::decode(control_hex).unwrap();
    let dir = PathBuf::from(std::env::var("PROBE_DIR").unwrap());
    if std::env::var("PROBE_UNDUMPABLE").is_ok() {
        secret_mem::set_process_undumpable().unwrap();
    }
    let signer: Box<dyn Signer> = match mode.as_str() {
        "soft" => Box::new(
            spacenode_keys::SoftKeyStore::open(
                &dir.join("seed"),
                Profile::Development,
                NetworkKind::Test,
            )
            .unwrap(),
        ),
        "tpm" => {
            let tcti = std::env::var("PROBE_TCTI").unwrap();
            let cfg = TpmConfig::new(tcti, AuthValue::new(common::SEAL_AUTH).unwrap());
            let mut tpm = Tpm::connect(cfg, Profile::Development).unwrap();
            tpm.measure_software(&common::BIN_V1, &common::CFG_V1)
                .unwrap();
            let blob = SealedBlob::decode(&std::fs::read(dir.join("blob")).unwrap()).unwrap();
            Box::new(spacenode_keys::TpmKeyStore::open(tpm, &blob, NetworkKind::Test).unwrap())
        }
        "tpm-provision" => {
            // On-orbit generation in this process, then a normal open.
            let tcti = std::env::var("PROBE_TCTI").unwrap();
            let cfg = TpmConfig::new(tcti, AuthValue::new(common::SEAL_AUTH).unwrap());
            let mut tpm = Tpm::connect(cfg, Profile::Development).unwrap();
            tpm.measure_software(&common::BIN_V1, &common::CFG_V1)
                .unwrap();
            let (seed, blob) = tpm.test_generate_seed().unwrap();
            // Tell the parent the seed (hex text, not raw bytes, so this
            // report is not itself a match).
            std::fs::write(dir.join("seed.hex"), hex::encode(seed.expose())).unwrap();
            drop(seed);
            Box::new(spacenode_keys::TpmKeyStore::open(tpm, &blob, NetworkKind::Test).unwrap())
        }
        other => panic!("unknown probe mode {other}"),
    };
    // Use the key once, like the daemon would.
    let _ = signer
        .sign_ecdsa(&"m/0/1".parse().unwrap(), &[9u8; 32])
        .unwrap();
    std::hint::black_box(&control);
    println!("READY {}", std::process::id());
    std::io::stdout().flush().unwrap();
    if std::env::var("PROBE_ABORT").is_ok() {
        std::process::abort();
    }
    // Wait until the parent closes stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::hint::black_box(&control);
    drop(signer);
}

struct Probe {
    child: Child,
    pid: u32,
}

fn spawn_probe(mode: &str, dir: &Path, control: &[u8; 32], extra: &[(&str, String)]) -> Probe {
    let exe = std::env::current_exe().unwrap();
    // `ulimit -c unlimited` for the child only (kernel core dumps).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -c unlimited; exec \"$0\" --exact probe_child --nocapture --test-threads=1")
        .arg(exe)
        .current_dir(dir)
        .env(PROBE_ENV, mode)
        .env("PROBE_CONTROL", hex::encode(control))
        .env("PROBE_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read lines on a thread so a hung probe fails the test instead of
    // hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // The test harness prints "test probe_child ... " before our line.
            Ok(line) => {
                if let Some((_, pid)) = line.split_once("READY ") {
                    let pid: u32 = pid.trim().parse().unwrap();
                    return Probe { child, pid };
                }
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("probe never became ready: {e}");
            }
        }
    }
}

fn gcore(pid: u32, dir: &Path) -> Vec<u8> {
    let prefix = dir.join("gcore");
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
        .expect("gcore (gdb) installed");
    let path = PathBuf::from(format!("{}.{pid}", prefix.display()));
    assert!(
        out.status.success() && path.exists(),
        "gcore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// With SPACENODE_KEEP_CORE=DIR set, a failing dump test leaves the core
/// and the secret there for analysis.
fn keep_for_diagnosis(core: &[u8], secret: &[u8]) {
    if let Ok(d) = std::env::var("SPACENODE_KEEP_CORE") {
        let d = PathBuf::from(d);
        let _ = std::fs::write(d.join("probe.core"), core);
        let _ = std::fs::write(d.join("probe.secret"), secret);
    }
}

fn finish(mut p: Probe) {
    drop(p.child.stdin.take());
    let _ = p.child.wait();
}

fn soft_setup() -> (tempfile::TempDir, [u8; 32], [u8; 32]) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let seed = random32();
    let control = random32();
    let p = dir.path().join("seed");
    std::fs::write(&p, seed).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, seed, control)
}

#[test]
fn gcore_excludes_soft_loaded_seed_but_finds_control() {
    let (dir, seed, control) = soft_setup();
    let p = spawn_probe("soft", dir.path(), &control, &[]);
    let core = gcore(p.pid, dir.path());
    finish(p);
    assert!(
        contains(&core, &control),
        "control secret not in the dump: the test could not fail"
    );
    assert!(
        !contains_part(&core, &seed),
        "seed bytes found in the gcore dump"
    );
}

#[test]
fn gcore_excludes_tpm_unsealed_seed_but_finds_control() {
    let sw = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = common::boot(&sw, &common::BIN_V1, &common::CFG_V1);
    let (seed, blob) = tpm.test_generate_seed().unwrap();
    let seed_bytes = *seed.expose();
    drop(seed);
    drop(tpm);
    std::fs::write(dir.path().join("blob"), blob.encode()).unwrap();
    let control = random32();
    let p = spawn_probe("tpm", dir.path(), &control, &[("PROBE_TCTI", sw.tcti())]);
    let core = gcore(p.pid, dir.path());
    finish(p);
    assert!(
        contains(&core, &control),
        "control secret not in the dump: the test could not fail"
    );
    if contains_part(&core, &seed_bytes) {
        keep_for_diagnosis(&core, &seed_bytes);
    }
    assert!(
        !contains_part(&core, &seed_bytes),
        "unsealed seed found in the gcore dump"
    );
}

#[test]
fn gcore_excludes_seed_generated_and_sealed_in_process() {
    let sw = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let control = random32();
    let p = spawn_probe(
        "tpm-provision",
        dir.path(),
        &control,
        &[("PROBE_TCTI", sw.tcti())],
    );
    let core = gcore(p.pid, dir.path());
    finish(p);
    let seed = hex::decode(std::fs::read_to_string(dir.path().join("seed.hex")).unwrap()).unwrap();
    assert!(
        contains(&core, &control),
        "control secret not in the dump: the test could not fail"
    );
    if contains_part(&core, &seed) {
        keep_for_diagnosis(&core, &seed);
    }
    assert!(
        !contains_part(&core, &seed),
        "part of the generated seed found in the gcore dump"
    );
}

fn kernel_core(dir: &Path, extra: &[(&str, String)], control: &[u8; 32]) -> Option<Vec<u8>> {
    let p = spawn_probe(
        "soft",
        dir,
        control,
        &[&[("PROBE_ABORT", "1".to_owned())], extra].concat(),
    );
    let mut p = p;
    let _ = p.child.wait();
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let name = if pattern.trim() == "core" {
        dir.join("core")
    } else {
        return None;
    };
    // The kernel may take a moment to finish writing.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::read(name).ok()
}

#[test]
fn kernel_core_dump_excludes_seed_and_undumpable_writes_none() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.trim() != "core" {
        eprintln!(
            "skipping kernel core check: core_pattern is {pattern:?} (a pipe or path we do not \
             control); the gcore tests cover MADV_DONTDUMP"
        );
        return;
    }
    let (dir, seed, control) = soft_setup();
    let core = kernel_core(dir.path(), &[], &control).expect("kernel wrote no core file");
    assert!(
        contains(&core, &control),
        "control secret not in the kernel core"
    );
    assert!(
        !contains_part(&core, &seed),
        "seed bytes found in the kernel core"
    );
    std::fs::remove_file(dir.path().join("core")).unwrap();

    // With PR_SET_DUMPABLE 0 (what the daemon does) there is no core at all.
    let none = kernel_core(
        dir.path(),
        &[("PROBE_UNDUMPABLE", "1".to_owned())],
        &control,
    );
    assert!(none.is_none(), "an undumpable process still wrote a core");
}
