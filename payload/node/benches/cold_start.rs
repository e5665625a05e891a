//! Cold start to READY with the TPM backend on swtpm: process start, config,
//! database, TPM connect, software measurement, anti-rollback check, link
//! key and seed unseal, link open, `READY=1` over a real NOTIFY_SOCKET.
//! Printed beside the cost of one TPM round trip (GetRandom of 8 bytes) on
//! the same swtpm. Prints; asserts nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{AuthValue, Profile, Tpm, TpmConfig};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs = if std::env::var_os("QUICK").is_some() {
        3
    } else {
        10
    };
    let sw = Swtpm::start().expect("swtpm (install swtpm swtpm-tools)");
    let dir = tempfile::tempdir().unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let device = nix::unistd::ttyname(&pty.slave).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.path().join("spacenoded.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n[link]\ndevice = \"{}\"\ntx_key_id = 1\n\
             [[link.keys]]\nid = 1\nkey = \"{}\"\n[keys]\nbackend = \"tpm\"\ntcti = \"{}\"\nseal_auth = \"5a5a\"\n\
             [health]\nboot_loop_starts = 1000\n[telemetry]\nhk_interval_s = 0\n",
            state.display(),
            device.display(),
            "11".repeat(16) + &"22".repeat(16),
            sw.tcti()
        ),
    )
    .unwrap();
    let mut start_to_ready = Vec::new();
    let mut first_boot = None;
    for i in 0..=runs {
        let sock = dir.path().join(format!("notify-{i}"));
        let notify = UnixDatagram::bind(&sock).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spacenoded"))
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &sock)
            .env("SPACENODE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 256];
        loop {
            let n = notify.recv(&mut buf).expect("READY=1 within 30 s");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        let elapsed = started.elapsed();
        child.kill().unwrap();
        child.wait().unwrap();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        if i == 0 {
            first_boot = Some(elapsed);
        } else {
            start_to_ready.push(elapsed);
        }
    }
    let mut tpm = Tpm::connect(
        TpmConfig::new(sw.tcti(), AuthValue::new(b"x").unwrap()),
        Profile::Development,
    )
    .unwrap();
    let mut trips: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            tpm.get_random(8).unwrap();
            t.elapsed()
        })
        .collect();
    let (min, max) = (
        *start_to_ready.iter().min().unwrap(),
        *start_to_ready.iter().max().unwrap(),
    );
    let med = median(&mut start_to_ready);
    let trip = median(&mut trips);
    println!(
        "== cold start to READY, TPM backend on swtpm (debug-free release build), {runs} runs"
    );
    println!(
        "   first boot (seed generated and sealed): {:8.1} ms",
        ms(first_boot.unwrap())
    );
    println!(
        "   cold start to READY:  median {:8.1} ms  min {:8.1}  max {:8.1}",
        ms(med),
        ms(min),
        ms(max)
    );
    println!(
        "   one TPM round trip (GetRandom 8):       median {:6.3} ms",
        ms(trip)
    );
    let sign = signing_latency();
    println!(
        "   signing latency (check + sign + audit, 10-input 2-of-3 wsh PSBT): median {:6.2} ms = {:.0} TPM round trips",
        ms(sign),
        sign.as_secs_f64() / trip.as_secs_f64()
    );
    println!(
        "   cold start = {:.0} TPM round trips (the seed is unsealed once at start; signing uses no TPM round trip)",
        med.as_secs_f64() / trip.as_secs_f64()
    );
}

/// The node-side decision of `cargo bench -p spacenode-btc --bench sign`,
/// measured here too so that the TPM costs are printed beside it.
fn signing_latency() -> Duration {
    use spacenode_btc::engine::Outcome;
    use spacenode_testkit::btc::{Demo, DemoWallet};
    let inputs: Vec<usize> = (0..10).collect();
    let d = Demo::new(DemoWallet::WshSortedMulti, 10, 20_000_000, 6).unwrap();
    let psbt = d
        .psbt(&inputs, d.destination().unwrap(), 150_000_000, 20_000, 0)
        .unwrap();
    let req = d.request([1; 32], psbt.serialize(), d.proofs(&inputs));
    let mut times: Vec<Duration> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let o = d.evaluate(&req).unwrap();
            let elapsed = t.elapsed();
            assert!(
                matches!(o, Outcome::Approved(_)),
                "the bench request is approved"
            );
            elapsed
        })
        .collect();
    median(&mut times)
}
