//! In-memory throughput of the whole per-packet path (seal, frame, deframe,
//! authenticate, replay-check, decrypt) against raw AES-256-GCM seal+open of
//! the same bytes, measured in the same run as thread CPU time, interleaved
//! so machine load hits both alike. Prints ratios; asserts nothing about time (target: full path
//! at least 0.7x of raw AES-GCM on full frames). `SIZES=64,256` and `QUICK=1`
//! narrow a run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use spacenode_wire::frame::{self, Decoded, FrameDecoder};
use spacenode_wire::security::{Cipher, Direction, LinkKey, Receiver, RxKey, RxReservation};

/// CPU time of this thread: unlike wall time it does not count the time the
/// scheduler gives to other processes on a shared 2-core machine.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Best CPU time per operation over `rounds` rounds of at least `min_time`
/// each, interleaving the two operations so that machine load hits both
/// alike.
fn best_of_interleaved(
    mut a: impl FnMut(u64),
    mut b: impl FnMut(u64),
    min_time: Duration,
    rounds: u32,
) -> (Duration, Duration) {
    let mut seq = 1u64;
    let run = |op: &mut dyn FnMut(u64), seq: &mut u64| {
        let start = Instant::now();
        let cpu_start = thread_cpu_time();
        let mut n = 0u32;
        while start.elapsed() < min_time {
            for _ in 0..64 {
                op(*seq);
                *seq += 1;
            }
            n += 64;
        }
        (thread_cpu_time() - cpu_start) / n
    };
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        best_a = best_a.min(run(&mut a, &mut seq));
        best_b = best_b.min(run(&mut b, &mut seq));
    }
    (best_a, best_b)
}

fn main() {
    let key = LinkKey::new([0x42; 32]);
    let aead = Aes256Gcm::new(key.expose().into());
    let cipher = Cipher::new(1, &key);
    let quick = std::env::var_os("QUICK").is_some();
    let min_time = Duration::from_millis(if quick { 50 } else { 150 });
    let rounds = if quick { 5 } else { 15 };
    println!("== frame + AEAD path vs raw AES-256-GCM (seal + open), same bytes, same run");
    let mut bulk_ratio = None;
    let sizes: Vec<usize> = std::env::var("SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 256, 1024, 2000]);
    for size in sizes {
        let payload = vec![0xA5u8; size];
        let aad = [0u8; 11];
        let mut rx = Receiver::new(Direction::Uplink);
        rx.insert(RxKey::new(
            cipher.clone(),
            RxReservation::resume(1, u64::MAX / 4),
        ));
        let mut dec = FrameDecoder::new();
        let (raw, full) = best_of_interleaved(
            |seq| {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&seq.to_be_bytes());
                let ct = aead
                    .encrypt(
                        Nonce::from_slice(&nonce),
                        Payload {
                            msg: &payload,
                            aad: &aad,
                        },
                    )
                    .unwrap();
                let pt = aead
                    .decrypt(
                        Nonce::from_slice(&nonce),
                        Payload {
                            msg: &ct,
                            aad: &aad,
                        },
                    )
                    .unwrap();
                black_box(pt);
            },
            |seq| {
                let env = cipher.seal(Direction::Uplink, seq, &payload).unwrap();
                let wire = frame::encode_vec(env).unwrap();
                let mut got = None;
                dec.push(&wire, |d| {
                    if let Decoded::Frame(f) = d {
                        got = Some(f);
                    }
                });
                let acc = rx.accept(&got.unwrap()).unwrap();
                black_box(acc.plaintext);
            },
            min_time,
            rounds,
        );
        let ratio = raw.as_secs_f64() / full.as_secs_f64();
        if size >= 2000 {
            bulk_ratio = Some(ratio);
        }
        let mbps = |d: Duration| size as f64 / d.as_secs_f64() / 1e6;
        println!(
            "  {size:>5} B: raw AES-GCM {:>8.1} MB/s, full path {:>8.1} MB/s, ratio {ratio:.2}",
            mbps(raw),
            mbps(full)
        );
    }
    // Throughput is judged on full frames (the protocol's 2000-byte class);
    // smaller packets show the fixed per-packet cost (header parse, window,
    // four allocations) next to AES-GCM's own, and are printed for that.
    if let Some(r) = bulk_ratio {
        let verdict = if r >= 0.7 { "PASS" } else { "FAIL" };
        println!("{verdict}: full-frame throughput ratio {r:.2} (target >= 0.7)");
    }
}
