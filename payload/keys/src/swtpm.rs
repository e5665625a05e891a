//! Test harness: a private `swtpm` process per test or per suite (feature
//! `test-harness`; this crate's tests and the daemon's system tests use it).
//!
//! Owns: starting `swtpm socket --tpm2` on a free loopback port pair with
//! its own state directory, waiting until it accepts connections,
//! restarting it on the same state (a reboot of the node), cutting its power
//! (SIGKILL), and killing it on drop.
//!
//! Must never: leave a stray swtpm behind. Besides `Drop`, each swtpm gets a
//! tiny watchdog shell that kills it (and removes its temporary state
//! directory) if the test process dies without unwinding (SIGKILL, abort).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tpm = spacenode_keys::swtpm::Swtpm::start()?;
//! let tcti = tpm.tcti(); // "swtpm:host=127.0.0.1,port=NNNNN"
//! tpm.restart()?;        // same state dir, PCRs reset (startup-clear)
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The `swtpm` binary is not on PATH.
    #[error(
        "swtpm not found on PATH: install swtpm swtpm-tools (Debian: apt-get install swtpm swtpm-tools)"
    )]
    NotInstalled,
    /// swtpm exited or did not accept connections in time.
    #[error("swtpm failed to start on port {port}: {reason}; log: {log}")]
    StartFailed {
        /// Server port tried.
        port: u16,
        /// What happened.
        reason: String,
        /// Tail of swtpm's log.
        log: String,
    },
    /// No free port pair found.
    #[error("no free loopback port pair found")]
    NoPorts,
    /// I/O error (temp dir, spawn).
    #[error("swtpm harness i/o: {0}")]
    Io(#[from] std::io::Error),
}

enum StateDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl StateDir {
    fn path(&self) -> &Path {
        match self {
            StateDir::Temp(t) => t.path(),
            StateDir::Given(p) => p,
        }
    }
}

struct Running {
    child: Child,
    watchdog: Option<Child>,
    port: u16,
}

/// A running (or stopped) swtpm with its own state directory.
pub struct Swtpm {
    state: StateDir,
    running: Option<Running>,
    last_port: Option<u16>,
}

impl std::fmt::Debug for Swtpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swtpm")
            .field("state_dir", &self.state.path())
            .field("port", &self.port())
            .field("pid", &self.pid())
            .finish()
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 8;

fn port_pair_free(p: u16) -> bool {
    let Some(ctrl) = p.checked_add(1) else {
        return false;
    };
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, p));
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, ctrl));
    a.is_ok() && b.is_ok()
}

fn free_port_pair() -> Result<u16, HarnessError> {
    for _ in 0..64 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let p = l.local_addr()?.port();
        drop(l);
        if p < 65534 && port_pair_free(p) {
            return Ok(p);
        }
    }
    Err(HarnessError::NoPorts)
}

fn log_tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let start = s.len().saturating_sub(800);
    s.get(start..).unwrap_or("").trim().to_owned()
}

fn swtpm_installed() -> bool {
    Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl Swtpm {
    /// Starts a swtpm with a fresh temporary state directory (removed on
    /// drop).
    ///
    /// # Errors
    /// [`HarnessError::NotInstalled`] if swtpm is missing; start failures.
    pub fn start() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("spacenode-swtpm-")
            .tempdir()?;
        Self::start_with(StateDir::Temp(dir))
    }

    /// Starts a swtpm on a caller-owned state directory (kept on drop), e.g.
    /// to carry a TPM across test processes.
    ///
    /// # Errors
    /// As [`Swtpm::start`].
    pub fn start_in(state_dir: &Path) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(state_dir)?;
        Self::start_with(StateDir::Given(state_dir.to_owned()))
    }

    fn start_with(state: StateDir) -> Result<Self, HarnessError> {
        if !swtpm_installed() {
            return Err(HarnessError::NotInstalled);
        }
        let mut s = Swtpm {
            state,
            running: None,
            last_port: None,
        };
        s.launch()?;
        Ok(s)
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let mut last_err = HarnessError::NoPorts;
        for attempt in 0..START_ATTEMPTS {
            // Prefer the previous port so a TCTI string stays valid across a
            // restart; fall back to a fresh pair.
            let port = match self.last_port {
                Some(p) if attempt < 3 && port_pair_free(p) => p,
                _ => free_port_pair()?,
            };
            match self.spawn_on(port) {
                Ok(r) => {
                    self.last_port = Some(port);
                    self.running = Some(r);
                    return Ok(());
                }
                Err(e @ HarnessError::StartFailed { .. }) => last_err = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    fn spawn_on(&self, port: u16) -> Result<Running, HarnessError> {
        let dir = self.state.path();
        let log = dir.join("swtpm.log");
        let ctrl = port.checked_add(1).ok_or(HarnessError::NoPorts)?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    HarnessError::NotInstalled
                } else {
                    HarnessError::Io(e)
                }
            })?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; \
                 do sleep 0.5; done; \
                 if ! kill -0 \"$1\" 2>/dev/null; then \
                   kill -TERM \"$2\" 2>/dev/null; \
                   if [ -n \"$3\" ]; then sleep 1; rm -rf -- \"$3\"; fi; \
                 fi",
            )
            .arg("swtpm-watchdog")
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            // A temporary state dir is removed too if the test process dies
            // without running destructors; a caller-owned one is kept.
            .arg(match &self.state {
                StateDir::Temp(t) => t.path().display().to_string(),
                StateDir::Given(_) => String::new(),
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let mut running = Running {
            child,
            watchdog,
            port,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                stop_running(&mut running, false);
                return Err(HarnessError::StartFailed {
                    port,
                    reason: format!("exited with {status}"),
                    log: log_tail(&log),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(running);
            }
            if Instant::now() > deadline {
                stop_running(&mut running, true);
                return Err(HarnessError::StartFailed {
                    port,
                    reason: "did not accept connections within 15 s".into(),
                    log: log_tail(&log),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// TCTI string for this swtpm: `swtpm:host=127.0.0.1,port=P`.
    #[must_use]
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port().unwrap_or(0))
    }

    /// Server port while running.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.running.as_ref().map(|r| r.port)
    }

    /// Process id while running.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// The state directory (NVChip state survives restarts).
    #[must_use]
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.running.as_mut() {
            Some(r) => matches!(r.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Graceful stop (SIGTERM, then SIGKILL after 3 s); state is kept.
    pub fn stop(&mut self) {
        if let Some(mut r) = self.running.take() {
            stop_running(&mut r, true);
        }
    }

    /// Power cut: SIGKILL without warning; state written so far is kept.
    pub fn power_cut(&mut self) {
        if let Some(mut r) = self.running.take() {
            stop_running(&mut r, false);
        }
    }

    /// Restarts on the same state directory, like a node reboot: NV state
    /// (keys' seeds, NV counters) persists, PCRs are reset by startup-clear.
    /// The port is kept when it is still free.
    ///
    /// # Errors
    /// Start failures.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.launch()
    }
}

fn stop_running(r: &mut Running, graceful: bool) {
    // Watchdog first, so it cannot act on a recycled pid later.
    if let Some(mut w) = r.watchdog.take() {
        let _ = w.kill();
        let _ = w.wait();
    }
    if graceful {
        if let Ok(pid) = i32::try_from(r.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = r.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = r.child.kill();
    let _ = r.child.wait();
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}
