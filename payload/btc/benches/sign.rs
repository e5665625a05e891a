//! Node-side time to check and sign a 10-input 2-of-3 wsh PSBT (with
//! non_witness_utxo and SPV proofs) against the emulated uplink time of the
//! request's bytes at 115200 Bd (10 bit times per byte). Prints both and the
//! ratio; no timing assertions (target <= 0.1x: the link is the bottleneck).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark"
)]

use std::time::Instant;

use spacenode_btc::engine::Outcome;
use spacenode_testkit::btc::{Demo, DemoWallet};

fn main() {
    const INPUTS: usize = 10;
    const ROUNDS: u32 = 30;
    let d = Demo::new(DemoWallet::WshSortedMulti, INPUTS as u32, 20_000_000, 6).expect("demo");
    let inputs: Vec<usize> = (0..INPUTS).collect();
    let psbt = d
        .psbt(&inputs, d.destination().unwrap(), 150_000_000, 20_000, 0)
        .unwrap();
    let psbt_bytes = psbt.serialize();
    let req = d.request([1; 32], psbt_bytes.clone(), d.proofs(&inputs));
    // Warm-up and correctness.
    match d.evaluate(&req).unwrap() {
        Outcome::Approved(a) => assert_eq!(a.signatures.len(), INPUTS),
        Outcome::Refused(r) => panic!("refused: {}", r.refusal),
        Outcome::Replay(_) => panic!("replay"),
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let o = d.evaluate(&req).unwrap();
        std::hint::black_box(&o);
    }
    let node_s = start.elapsed().as_secs_f64() / f64::from(ROUNDS);
    let uplink_s = (req.len() as f64) * 10.0 / 115_200.0;
    println!("sign: 10-input 2-of-3 wsh(sortedmulti) PSBT, non_witness_utxo + SPV merkle branches");
    println!("  psbt bytes            {}", psbt_bytes.len());
    println!(
        "  request bytes         {} (envelope + psbt + proofs + approval)",
        req.len()
    );
    println!("  uplink @115200 Bd     {:.1} ms", uplink_s * 1e3);
    println!(
        "  node check+sign+audit {:.2} ms (mean of {ROUNDS})",
        node_s * 1e3
    );
    println!(
        "  ratio node/uplink     {:.4}x (target <= 0.1x)",
        node_s / uplink_s
    );
}
