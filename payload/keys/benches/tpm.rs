//! TPM latency benchmark on swtpm: `cargo bench -p spacenode-keys --bench tpm`.
//!
//! Prints milliseconds for a cold open (connect + measure + unseal the seed),
//! a warm unseal, one TPM round trip (GetRandom of 8 bytes), a quote, and
//! for scale one ECDSA signature from the unsealed seed. swtpm runs on this
//! machine, so these are lower bounds for a real SPI TPM (an SLB9670 is
//! typically 10-100x slower per command); the daemon prints them beside its
//! total signing latency.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failing step should panic with its message"
)]

use std::time::{Duration, Instant};

use bitcoin::NetworkKind;
use bitcoin::bip32::DerivationPath;
use spacenode_keys::swtpm::Swtpm;
use spacenode_keys::{AuthValue, Profile, Signer, Tpm, TpmConfig, TpmKeyStore};

const BIN: [u8; 32] = [0x11; 32];
const CFG: [u8; 32] = [0x21; 32];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    let mean = total / u32::try_from(n).unwrap_or(1);
    println!(
        "{name:<44} n={n:<4} min {:>8.3} ms  median {:>8.3} ms  mean {:>8.3} ms  max {:>8.3} ms",
        ms(samples[0]),
        ms(samples[n / 2]),
        ms(mean),
        ms(samples[n - 1])
    );
}

fn config(sw: &Swtpm) -> TpmConfig {
    TpmConfig::new(sw.tcti(), AuthValue::new(b"bench-auth").unwrap())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass
    // nothing: run either way, it is quick.
    let sw = match Swtpm::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping tpm bench: {e}");
            return;
        }
    };
    let mut tpm = Tpm::connect(config(&sw), Profile::Development).unwrap();
    tpm.measure_software(&BIN, &CFG).unwrap();
    tpm.provision_counter().unwrap();
    let (store, blob) = TpmKeyStore::provision(tpm, NetworkKind::Test).unwrap();
    drop(store);

    println!(
        "spacenode-keys tpm benchmark (swtpm {}, loopback tcp)",
        sw.tcti()
    );

    let mut cold = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let mut tpm = Tpm::connect(config(&sw), Profile::Development).unwrap();
        tpm.measure_software(&BIN, &CFG).unwrap();
        let store = TpmKeyStore::open(tpm, &blob, NetworkKind::Test).unwrap();
        cold.push(t0.elapsed());
        drop(store);
    }
    report("cold open (connect+measure+unseal seed)", cold);

    let mut tpm = Tpm::connect(config(&sw), Profile::Development).unwrap();
    tpm.measure_software(&BIN, &CFG).unwrap();

    let mut unseal = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let s = tpm.test_unseal_seed(&blob).unwrap();
        unseal.push(t0.elapsed());
        drop(s);
    }
    report("warm unseal seed (load+policy+unseal)", unseal);

    let mut rt = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let r = tpm.get_random(8).unwrap();
        rt.push(t0.elapsed());
        drop(r);
    }
    report("tpm round trip (GetRandom 8 bytes)", rt);

    let mut store = TpmKeyStore::open(tpm, &blob, NetworkKind::Test).unwrap();
    let mut q = Vec::new();
    for i in 0..10u8 {
        let t0 = Instant::now();
        let _ = store
            .attest([i; 32], [0; 32], &[DerivationPath::master()])
            .unwrap();
        q.push(t0.elapsed());
    }
    report("attest (create AK + quote + 1 xpub)", q);

    let path: DerivationPath = "m/48'/1'/0'/2'/0/0".parse().unwrap();
    let mut sig = Vec::new();
    for i in 0..200u8 {
        let t0 = Instant::now();
        let _ = store.sign_ecdsa(&path, &[i; 32]).unwrap();
        sig.push(t0.elapsed());
    }
    report("ecdsa sign (derive 6 levels + sign + verify)", sig);
}
