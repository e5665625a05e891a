//! The swtpm harness itself: restart on the same state, no strays when the
//! test process is killed, a clear message when swtpm is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spacenode_keys::swtpm::{HarnessError, Swtpm};

const CHILD_ENV: &str = "SPACENODE_HARNESS_CHILD";

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.contains(") Z "),
        Err(_) => false,
    }
}

/// Child mode: start a swtpm, report it, then wait to be killed.
#[test]
fn harness_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    match Swtpm::start() {
        Ok(sw) => {
            println!("SWTPM {} {}", sw.pid().unwrap(), sw.state_dir().display());
            if mode == "wait" {
                std::thread::sleep(Duration::from_secs(120));
            }
        }
        Err(e) => println!("ERR {e}"),
    }
}

fn run_child(mode: &str, path_env: Option<&str>) -> (std::process::Child, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "harness_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut found = String::new();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        if let Some(i) = line.find("SWTPM ").or_else(|| line.find("ERR ")) {
            found = line[i..].to_owned();
            break;
        }
    }
    (child, found)
}

#[test]
fn killed_test_process_leaves_no_swtpm_and_no_state_dir() {
    let (mut child, line) = run_child("wait", None);
    let mut parts = line.split_whitespace().skip(1);
    let pid: u32 = parts.next().expect(&line).parse().unwrap();
    let dir = parts.next().unwrap().to_owned();
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL: no destructors run
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(pid) || Path::new(&dir).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "swtpm {pid} survived its test process");
    assert!(!Path::new(&dir).exists(), "state dir {dir} left behind");
}

#[test]
fn missing_swtpm_says_how_to_install() {
    let (mut child, line) = run_child("once", Some("/nonexistent"));
    let _ = child.wait();
    assert!(line.contains("install swtpm swtpm-tools"), "{line}");
    assert!(
        HarnessError::NotInstalled
            .to_string()
            .contains("install swtpm swtpm-tools")
    );
}

#[test]
fn restart_keeps_port_and_state_and_drop_kills() {
    let mut sw = Swtpm::start().unwrap();
    let port = sw.port().unwrap();
    let pid = sw.pid().unwrap();
    let dir = sw.state_dir().to_owned();
    sw.restart().unwrap();
    assert!(sw.is_running());
    assert_ne!(sw.pid().unwrap(), pid);
    assert_eq!(sw.port().unwrap(), port, "port changed across restart");
    assert_eq!(sw.state_dir(), dir);
    let pid2 = sw.pid().unwrap();
    sw.power_cut();
    assert!(!sw.is_running());
    sw.restart().unwrap();
    let pid3 = sw.pid().unwrap();
    drop(sw);
    assert!(!alive(pid2) && !alive(pid3));
    assert!(!dir.exists(), "temporary state dir not removed on drop");
}
