//! System-test harness: starts the real `spacenoded` and `ground` binaries
//! on real ptys (directly or through the link emulator), with their own
//! state directories, and waits for readiness through a real
//! `NOTIFY_SOCKET`, as systemd would.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; the
//! test script does it). This crate must never mock the daemon: tests talk
//! to it only over its link, its config file and its process.

// Test support: a failed setup step must stop the test with its reason.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::config::{GroundConfig, GroundState};
use spacenode_wire::msg::{HK_CORE, HkCore, HkRequest};
use spacenode_wire::services::{apid, service, subtype};

pub mod cosign;
pub mod eth;

/// The repository root.
#[must_use]
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A built binary of the workspace.
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Node and ground configured with the same fresh random key.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: [u8; 32],
    pub node_config: PathBuf,
    pub ground_config: PathBuf,
    pub state_dir: PathBuf,
}

impl Fixture {
    /// Configs for a node on `device` at `baud`; `extra` is appended to the
    /// node config (e.g. a `[telemetry]` table).
    #[must_use]
    pub fn new(device: &Path, baud: u32, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("state dir");
        let node_config = dir.path().join("spacenoded.toml");
        std::fs::write(
            &node_config,
            format!(
                "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n\n\
                 [link]\ndevice = \"{}\"\nbaud = {baud}\ntx_key_id = 1\n\n\
                 [[link.keys]]\nid = 1\nkey = \"{}\"\n\n{extra}",
                state_dir.display(),
                device.display(),
                hex::encode(key)
            ),
        )
        .expect("node config");
        let ground_config = dir.path().join("ground.toml");
        let ground_state = dir.path().join("ground-state.json");
        std::fs::write(
            &ground_config,
            GroundConfig::render(1, 1, &[(1, key)], &ground_state),
        )
        .expect("ground config");
        // A new key for a new node: the ground's empty state is exact.
        GroundState::provision(&ground_state).expect("ground state");
        Self {
            dir,
            key,
            node_config,
            ground_config,
            state_dir,
        }
    }

    /// A telemetry table that disables periodic housekeeping, so that only
    /// requested traffic crosses the link.
    pub const QUIET: &'static str = "[telemetry]\nhk_interval_s = 0\n";

    /// Opens an in-process ground link on `port`.
    #[must_use]
    pub fn link(&self, port: &Path, baud: u32) -> Link {
        let cfg = GroundConfig::load(&self.ground_config).expect("ground config");
        Link::open(cfg, port.to_str().expect("utf-8 path"), baud).expect("open ground link")
    }

    /// Opens an in-process ground link with another station's config.
    #[must_use]
    pub fn link_with(config: &Path, port: &Path, baud: u32) -> Link {
        let cfg = GroundConfig::load(config).expect("ground config");
        Link::open(cfg, port.to_str().expect("utf-8 path"), baud).expect("open ground link")
    }

    /// Runs the `ground` binary with this fixture's config.
    #[must_use]
    pub fn ground(&self, port: &Path, args: &[&str]) -> Output {
        Command::new(bin("ground"))
            .arg("--config")
            .arg(&self.ground_config)
            .arg("--port")
            .arg(port)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ground")
    }
}

/// A running daemon.
pub struct Node {
    pub child: Child,
    notify: UnixDatagram,
    pub log: PathBuf,
}

impl Node {
    /// Starts `spacenoded` and waits until it reports READY=1.
    #[must_use]
    pub fn start(fixture: &Fixture) -> Self {
        let node = Self::spawn(fixture);
        node.wait_ready(Duration::from_secs(20));
        node
    }

    /// Starts `spacenoded` without waiting.
    #[must_use]
    pub fn spawn(fixture: &Fixture) -> Self {
        Self::spawn_with_env(fixture, &[])
    }

    /// Starts `spacenoded` with extra environment variables (e.g. the
    /// `WATCHDOG_USEC` systemd would set) and waits until it is ready.
    #[must_use]
    pub fn start_with_env(fixture: &Fixture, env: &[(&str, &str)]) -> Self {
        let node = Self::spawn_with_env(fixture, env);
        node.wait_ready(Duration::from_secs(20));
        node
    }

    /// Starts `spacenoded` with extra environment variables, without
    /// waiting.
    #[must_use]
    pub fn spawn_with_env(fixture: &Fixture, env: &[(&str, &str)]) -> Self {
        let sock = fixture
            .dir
            .path()
            .join(format!("notify-{}.sock", rand::random::<u32>()));
        let notify = UnixDatagram::bind(&sock).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let log = fixture.dir.path().join("spacenoded.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = Command::new(bin("spacenoded"))
            .arg("--config")
            .arg(&fixture.node_config)
            .env("NOTIFY_SOCKET", &sock)
            .env("SPACENODE_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn spacenoded");
        Self { child, notify, log }
    }

    /// Waits for the next notify message containing `needle`.
    pub fn wait_notify(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == needle)
            {
                return true;
            }
        }
        false
    }

    /// Collects notify messages for `window`, each with the time it arrived.
    pub fn notifications(&self, window: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + window;
        let mut buf = [0u8; 512];
        let mut out = Vec::new();
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                out.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        out
    }

    /// Panics with the daemon's log if READY=1 does not come in time.
    pub fn wait_ready(&self, timeout: Duration) {
        if !self.wait_notify("READY=1", timeout) {
            panic!(
                "spacenoded not ready within {timeout:?}; log:\n{}",
                self.log_text()
            );
        }
    }

    #[must_use]
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a power cut would stop it: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Requests the core housekeeping report over `link`.
pub fn housekeeping(link: &mut Link, policy: RetryPolicy) -> HkCore {
    let tc = link.new_tc(
        apid::HK,
        service::HK,
        subtype::HK_ONE_SHOT,
        HkRequest {
            structures: vec![HK_CORE],
        }
        .encode(),
    );
    let x = link.request(&tc, policy).expect("housekeeping exchange");
    let tm = x
        .replies
        .iter()
        .rev()
        .find(|t| t.service == service::HK && t.subtype == subtype::HK_REPORT)
        .expect("housekeeping report among replies");
    HkCore::decode(&tm.data).expect("decode housekeeping")
}

/// Requests the mode status over `link`.
pub fn mode_status(link: &mut Link, policy: RetryPolicy) -> spacenode_wire::msg::ModeStatus {
    let tc = link.new_tc(
        apid::MODE,
        service::MODE,
        subtype::MODE_STATUS_REQUEST,
        Vec::new(),
    );
    let x = link.request(&tc, policy).expect("mode status exchange");
    let tm = x
        .replies
        .iter()
        .rev()
        .find(|t| t.service == service::MODE && t.subtype == subtype::MODE_STATUS)
        .expect("mode status among replies");
    spacenode_wire::msg::ModeStatus::decode(&tm.data)
        .expect("decode mode status")
        .0
}

/// Three administrator key files (2 of 3), appended to the node's config
/// as its `[admin]` set (which authorises commands such as a rekey before
/// the first policy).
pub fn admin_set(fixture: &Fixture) -> Vec<(PathBuf, bitcoin::secp256k1::Keypair)> {
    use spacenode_ground::admin;
    let admins: Vec<(PathBuf, bitcoin::secp256k1::Keypair)> = (0..3u8)
        .map(|i| {
            let p = fixture.dir.path().join(format!("admin{i}.json"));
            admin::keygen(&p).expect("admin key");
            let k = admin::load_key(&p).expect("load admin key");
            (p, k)
        })
        .collect();
    let keys: Vec<String> = admins
        .iter()
        .map(|(_, k)| format!("\"{}\"", k.x_only_public_key().0))
        .collect();
    append_config(
        fixture,
        &format!("\n[admin]\nthreshold = 2\nkeys = [{}]\n", keys.join(", ")),
    );
    admins
}

/// Builds a rekey-link command for this fixture's station with the real
/// `ground` binary (the station generates and stores key `new_key_id`) and
/// signs it with administrators 0 and 1; returns the command file.
pub fn rekey_command(
    fixture: &Fixture,
    admins: &[(PathBuf, bitcoin::secp256k1::Keypair)],
    node_id: [u8; 8],
    seq: u64,
    new_key_id: u16,
) -> PathBuf {
    let file = fixture.dir.path().join(format!("rekey-{new_key_id}.cmd"));
    let run = |args: &[&str]| {
        let out = Command::new(bin("ground"))
            .arg("--config")
            .arg(&fixture.ground_config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ground");
        assert!(
            out.status.success(),
            "ground {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let path = file.to_str().expect("utf-8 path");
    run(&[
        "admin",
        "command",
        "rekey-link",
        "--node-id",
        &hex::encode(node_id),
        "--seq",
        &seq.to_string(),
        "--new-key-id",
        &new_key_id.to_string(),
        "--out",
        path,
    ]);
    for (i, (key, _)) in admins.iter().enumerate().take(2) {
        run(&[
            "admin",
            "sign",
            "--key",
            key.to_str().expect("utf-8 path"),
            "--signer",
            &i.to_string(),
            "--command",
            path,
        ]);
    }
    file
}

/// Appends TOML to the node's config.
pub fn append_config(fixture: &Fixture, toml: &str) {
    let mut cfg = std::fs::read_to_string(&fixture.node_config).expect("read config");
    cfg.push_str(toml);
    std::fs::write(&fixture.node_config, cfg).expect("write config");
}

/// A generous policy for clean links under CI load.
#[must_use]
pub fn patient(baud: u32) -> RetryPolicy {
    RetryPolicy {
        attempts: 20,
        ..RetryPolicy::for_link(baud, Duration::ZERO, 20)
    }
}

/// Python with the interop packages, made by scripts/test.sh.
#[must_use]
pub fn python() -> PathBuf {
    let venv =
        std::env::var_os("SPACENODE_VENV").map_or_else(|| repo_root().join(".venv"), PathBuf::from);
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/install-deps.sh (it makes the venv with spacepackets, cryptography, cobs)",
        py.display()
    );
    py
}

/// Sends a sign request and asserts the node refuses it because of its
/// mode (safe mode: `MODE_FORBIDS`), whatever the request says: the mode is
/// checked before anything else. Returns the failure text.
pub fn assert_sign_refused_by_mode(link: &mut Link, policy: RetryPolicy) -> String {
    let tc = link.new_tc(
        apid::SIGN,
        service::SIGN,
        subtype::SIGN_REQUEST,
        spacenode_wire::cosign::Payload::Inline(b"any sign request".to_vec()).encode(),
    );
    match link.request(&tc, policy) {
        Err(spacenode_ground::client::GroundError::Refused { code, detail, .. }) => {
            assert_eq!(
                code,
                spacenode_wire::ReasonCode::MODE_FORBIDS,
                "sign request refused with {code} ({detail}), not MODE_FORBIDS"
            );
            assert!(detail.contains("safe mode"), "{detail}");
            detail
        }
        other => panic!("sign request in safe mode was not refused: {other:?}"),
    }
}
