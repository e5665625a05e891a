//! Benchmark of spacenode-chain (plain main, `harness = false`):
//! (a) header validation throughput on the real mainnet headers 0..=39999
//!     against raw double-SHA256 of the same 80-byte headers, same run;
//! (b) peak RSS of a pruned sync from genesis to the last header (plus a
//!     longer synthetic regtest sync to show memory does not grow with
//!     height);
//! (c) uplink bytes per header of the compact batch format.
//!
//! Real data is read from `shared/data/bitcoin` next to the checkout; the
//! benchmark fails if it is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark binary, not flight code"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bitcoin::Network;
use bitcoin::hashes::{Hash, sha256d};
use spacenode_chain::checkpoint::header_from_bytes;
use spacenode_chain::regtest::{genesis, mine_chain};
use spacenode_chain::{Chain, ChainConfig, Checkpoint, HeaderBatch, MemoryStore};

const BATCH: usize = 2016;
const RUNS: usize = 7;

fn data(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitcoin")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("real data missing at {}: {e}", p.display()))
}

fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// Compact batches of `BATCH` headers for heights 1.. of `raw` (80-byte
/// headers from genesis).
fn compact_batches(raw: &[u8], network: Network, first_height: u32) -> Vec<Vec<u8>> {
    let headers: Vec<_> = raw
        .chunks_exact(80)
        .map(|c| header_from_bytes(c.try_into().unwrap()))
        .collect();
    headers
        .chunks(BATCH)
        .enumerate()
        .map(|(i, c)| {
            HeaderBatch::new(network, first_height + (i * BATCH) as u32, c.to_vec())
                .unwrap()
                .encode()
                .unwrap()
        })
        .collect()
}

fn main() {
    let mut all_pass = true;
    let raw = data("headers/mainnet_headers_0_39999.bin");
    let n = raw.len() / 80;
    let now = 2_000_000_000u64;

    // (b) first, so the high-water mark reflects the sync and not (a).
    println!(
        "== (b) memory: pruned sync of mainnet 1..={} from genesis (window 2160, in-memory store)",
        n - 1
    );
    let (hwm0, rss0) = rss();
    println!(
        "   before sync (data file loaded): VmHWM {:.1} MiB, VmRSS {:.1} MiB",
        mib(hwm0),
        mib(rss0)
    );
    let mut peak = 0u64;
    {
        let mut chain = Chain::open(
            ChainConfig::new(Network::Bitcoin),
            MemoryStore::new(),
            Checkpoint::genesis(Network::Bitcoin),
        )
        .unwrap();
        let headers = &raw[80..];
        let total = headers.len() / 80;
        let marks = [total / 10, total / 2, total];
        let mut done = 0usize;
        let mut height = 1u32;
        for chunk in headers.chunks(BATCH * 80) {
            let hs: Vec<_> = chunk
                .chunks_exact(80)
                .map(|c| header_from_bytes(c.try_into().unwrap()))
                .collect();
            let k = hs.len();
            let bytes = HeaderBatch::new(Network::Bitcoin, height, hs)
                .unwrap()
                .encode()
                .unwrap();
            chain.apply_batch_bytes(&bytes, now).unwrap();
            let before = done;
            done += k;
            height += k as u32;
            for (m, label) in marks.iter().zip(["10%", "50%", "100%"]) {
                if before < *m && done >= *m {
                    let (hwm, rss) = rss();
                    peak = peak.max(hwm);
                    println!(
                        "   {label:>4} (height {:>6}): VmHWM {:.1} MiB, VmRSS {:.1} MiB, kept headers {}, store rows {}",
                        chain.state().tip_height(),
                        mib(hwm),
                        mib(rss),
                        chain.state().tip_height() - chain.state().lowest_height() + 1,
                        chain.store().len()
                    );
                }
            }
        }
    }
    let ok = peak <= 32 * 1024;
    all_pass &= ok;
    println!("{}: peak RSS {:.1} MiB <= 32 MiB", verdict(ok), mib(peak));

    println!(
        "== (b2) memory: synthetic regtest sync to height 200000 (mined on the fly, window 2160)"
    );
    {
        let mut chain = Chain::open(
            ChainConfig::new(Network::Regtest),
            MemoryStore::new(),
            Checkpoint::genesis(Network::Regtest),
        )
        .unwrap();
        let mut tip = genesis();
        let mut height = 1u32;
        let total = 200_000u32;
        let mut rss_at = Vec::new();
        while height <= total {
            let k = BATCH.min((total - height + 1) as usize);
            let hs = mine_chain(&tip, k, 600).unwrap();
            tip = *hs.last().unwrap();
            let bytes = HeaderBatch::new(Network::Regtest, height, hs)
                .unwrap()
                .encode()
                .unwrap();
            chain.apply_batch_bytes(&bytes, u64::MAX / 2).unwrap();
            let before = height - 1;
            height += k as u32;
            for (m, label) in [(total / 10, "10%"), (total / 2, "50%"), (total, "100%")] {
                if before < m && height > m {
                    let (hwm, rss) = rss();
                    rss_at.push(rss);
                    println!(
                        "   {label:>4} (height {:>6}): VmHWM {:.1} MiB, VmRSS {:.1} MiB, kept headers {}",
                        chain.state().tip_height(),
                        mib(hwm),
                        mib(rss),
                        chain.state().tip_height() - chain.state().lowest_height() + 1
                    );
                }
            }
        }
        let (hwm, _) = rss();
        let growth = rss_at.last().unwrap().saturating_sub(rss_at[0]);
        let ok = hwm <= 32 * 1024 && growth <= 1024;
        all_pass &= ok;
        println!(
            "{}: peak RSS {:.1} MiB <= 32 MiB, RSS growth 10%..100% {:.2} MiB (<= 1 MiB, no growth with height)",
            verdict(ok),
            mib(hwm),
            mib(growth)
        );
    }

    println!("== (a) throughput on {n} real mainnet headers (best of {RUNS} interleaved runs)");
    let parsed: Vec<_> = raw
        .chunks_exact(80)
        .map(|c| header_from_bytes(c.try_into().unwrap()))
        .collect();
    let batches = compact_batches(&raw[80..], Network::Bitcoin, 1);
    // Interleaved so that load from other processes hits all three alike.
    let (mut t_hash, mut t_ctx, mut t_chain) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        let t = Instant::now();
        for c in raw.chunks_exact(80) {
            black_box(sha256d::Hash::hash(black_box(c)));
        }
        t_hash = t_hash.min(t.elapsed());

        let t = Instant::now();
        let mut ctx = Checkpoint::genesis(Network::Bitcoin).context().unwrap();
        for h in &parsed[1..] {
            black_box(ctx.push(h, now).unwrap());
        }
        t_ctx = t_ctx.min(t.elapsed());

        let t = Instant::now();
        let mut chain = Chain::open(
            ChainConfig::new(Network::Bitcoin),
            MemoryStore::new(),
            Checkpoint::genesis(Network::Bitcoin),
        )
        .unwrap();
        for b in &batches {
            black_box(chain.apply_batch_bytes(b, now).unwrap());
        }
        t_chain = t_chain.min(t.elapsed());
    }
    let rate = |d: Duration, count: usize| count as f64 / d.as_secs_f64();
    let r_hash = rate(t_hash, n);
    let r_ctx = rate(t_ctx, n - 1);
    let r_chain = rate(t_chain, n - 1);
    println!(
        "   raw double-SHA256 of 80-byte headers : {:>12.0} headers/s ({:?})",
        r_hash, t_hash
    );
    println!(
        "   HeaderContext::push (all rules)      : {:>12.0} headers/s ({:?}), ratio {:.2}",
        r_ctx,
        t_ctx,
        r_ctx / r_hash
    );
    println!(
        "   Chain::apply_batch_bytes (decode compact + validate + prune + store): {:>12.0} headers/s ({:?}), ratio {:.2}",
        r_chain,
        t_chain,
        r_chain / r_hash
    );
    let ok = r_chain / r_hash >= 0.5;
    all_pass &= ok;
    println!(
        "{}: full-path validation / raw double-SHA256 = {:.2} >= 0.5",
        verdict(ok),
        r_chain / r_hash
    );

    println!("== (c) uplink size of the compact batch format (batches of {BATCH})");
    for (label, file, first) in [
        (
            "mainnet 1..=39999",
            "headers/mainnet_headers_0_39999.bin",
            1usize,
        ),
        (
            "mainnet 822529..=830592",
            "headers/mainnet_headers_822528_830592.bin",
            1,
        ),
    ] {
        let raw = data(file);
        let body = &raw[80 * first..];
        let count = body.len() / 80;
        let bytes: usize = compact_batches(body, Network::Bitcoin, 1)
            .iter()
            .map(Vec::len)
            .sum();
        let per = bytes as f64 / count as f64;
        let ok = per <= 50.0;
        all_pass &= ok;
        println!(
            "   {label}: {count} headers, {bytes} bytes, {per:.2} bytes/header (raw layout would be {:.2})",
            (80 * count + 8 * count.div_ceil(BATCH)) as f64 / count as f64
        );
        println!(
            "{}: {label} compact format {per:.2} bytes/header <= 50",
            verdict(ok)
        );
    }

    println!(
        "{}",
        if all_pass {
            "ALL PASS"
        } else {
            "SOME TARGETS FAILED"
        }
    );
}
