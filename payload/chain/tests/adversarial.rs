//! Property and adversarial tests: decoders never panic, encodings
//! round-trip, and the chain's decisions match a simple model under
//! low-work forks, timestamp games, deep reorgs and replayed, reordered or
//! duplicated batches.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::OnceLock;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Work};
use proptest::prelude::*;
use spacenode_chain::params::ChainParams;
use spacenode_chain::regtest::{genesis, mine, mine_chain};
use spacenode_chain::spv::{check_txoutproof, parse_transaction};
use spacenode_chain::status::ChainStatus;
use spacenode_chain::store::{DeepReorgInfo, ReorgInfo};
use spacenode_chain::validate::{calculate_next_work_required, header_hash};
use spacenode_chain::{
    BatchOutcome, Chain, ChainConfig, ChainError, Checkpoint, HeaderBatch, MemoryStore,
    MerkleBranch, ValidationError,
};

const NOW: u64 = 4_000_000_000;

/// One long regtest main chain, mined once per test binary (index = height).
fn main_chain() -> &'static [Header] {
    static C: OnceLock<Vec<Header>> = OnceLock::new();
    C.get_or_init(|| {
        let g = genesis();
        let mut v = vec![g];
        v.extend(mine_chain(&g, 120, 600).unwrap());
        v
    })
}

fn open(window: u32) -> Chain<MemoryStore> {
    Chain::open(
        ChainConfig {
            network: Network::Regtest,
            window,
        },
        MemoryStore::new(),
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap()
}

fn apply(
    chain: &mut Chain<MemoryStore>,
    headers: &[Header],
    from: usize,
    to: usize,
) -> Result<BatchOutcome, ChainError> {
    let b = HeaderBatch::new(Network::Regtest, from as u32, headers[from..=to].to_vec()).unwrap();
    chain.apply_batch_bytes(&b.encode().unwrap(), NOW)
}

fn arb_header() -> impl Strategy<Value = Header> {
    (
        any::<i32>(),
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(v, m, t, b, n)| Header {
            version: Version::from_consensus(v),
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::from_byte_array(m),
            time: t,
            bits: CompactTarget::from_consensus(b),
            nonce: n,
        })
}

/// Linked header runs with realistic field correlations (so the compact
/// layout's elisions are exercised) and random outliers.
fn arb_linked_run() -> impl Strategy<Value = (u32, Vec<Header>)> {
    (
        1u32..u32::MAX - 5000,
        arb_header(),
        prop::collection::vec(
            (
                any::<u8>(),
                any::<i32>(),
                any::<u32>(),
                any::<[u8; 32]>(),
                any::<u32>(),
            ),
            1..60,
        ),
    )
        .prop_map(|(start, first, steps)| {
            let mut v = vec![first];
            for (sel, dv, db, m, n) in steps {
                let p = *v.last().unwrap();
                let version = match sel % 4 {
                    0 => p.version,
                    1 => Version::from_consensus(
                        ((p.version.to_consensus() as u32 & !0x1fff_e000)
                            | ((dv as u32) & 0x1fff_e000)) as i32,
                    ),
                    _ => Version::from_consensus(dv),
                };
                let time = match sel % 5 {
                    0 => db,
                    _ => p.time.wrapping_add((dv % 40_000) as u32),
                };
                let bits = if sel % 7 == 0 {
                    CompactTarget::from_consensus(db)
                } else {
                    p.bits
                };
                v.push(Header {
                    version,
                    prev_blockhash: header_hash(&p),
                    merkle_root: TxMerkleNode::from_byte_array(m),
                    time,
                    bits,
                    nonce: n,
                });
            }
            (start, v)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = HeaderBatch::decode(&bytes);
        let _ = Checkpoint::decode(&bytes);
        let _ = ChainStatus::decode(&bytes);
        let _ = MerkleBranch::decode(&bytes);
        let _ = check_txoutproof(&bytes, &bytes);
        let _ = parse_transaction(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_plausible_prefixes(fmt in 0u8..4, net in 0u8..7, count in any::<u16>(), rest in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut b = vec![fmt, net, 1, 0, 0, 0];
        if fmt == 1 { b.extend_from_slice(&[0u8; 32]); }
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&rest);
        if let Ok(batch) = HeaderBatch::decode(&b) {
            prop_assert!(!batch.is_empty());
        }
    }

    #[test]
    fn batch_roundtrip((start, headers) in arb_linked_run()) {
        let b = HeaderBatch::new(Network::Bitcoin, start, headers).unwrap();
        prop_assert!(b.is_linked());
        let compact = b.encode().unwrap();
        prop_assert_eq!(HeaderBatch::decode(&compact).unwrap(), b.clone());
        prop_assert_eq!(HeaderBatch::decode(&b.encode_raw()).unwrap(), b.clone());
        // Worst case: every field changes (flags + full version, bits, time).
        prop_assert!(compact.len() <= 40 + 49 * b.len());
    }

    #[test]
    fn mutated_batches_never_panic((start, headers) in arb_linked_run(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let b = HeaderBatch::new(Network::Regtest, start, headers).unwrap();
        let mut bytes = b.encode().unwrap();
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Ok(d) = HeaderBatch::decode(&bytes) {
            // Whatever decodes re-encodes to something that decodes the same.
            prop_assert_eq!(HeaderBatch::decode(&d.encode().unwrap()).unwrap(), d);
        }
    }

    #[test]
    fn status_roundtrip(
        net in 0usize..5, tip in any::<u32>(), hash in any::<[u8; 32]>(), work in any::<[u8; 32]>(), mtp in any::<u32>(),
        window in any::<u32>(), lowest in any::<u32>(),
        reorg in proptest::option::of((any::<u32>(), any::<u32>(), any::<u32>())),
        deep in proptest::option::of((any::<u32>(), any::<u32>(), any::<u32>())),
    ) {
        let networks = [Network::Bitcoin, Network::Testnet, Network::Testnet4, Network::Signet, Network::Regtest];
        let s = ChainStatus {
            network: networks[net],
            tip_height: tip,
            tip_hash: BlockHash::from_byte_array(hash),
            tip_chain_work: Work::from_be_bytes(work),
            tip_median_time_past: mtp,
            window,
            lowest_height: lowest,
            last_reorg: reorg.map(|(f, d, n)| ReorgInfo { fork_height: f, depth: d, new_tip_height: n }),
            deep_reorg_refused: deep.map(|(l, s, e)| DeepReorgInfo { lowest_kept: l, branch_start: s, branch_end: e }),
        };
        let bytes = s.encode();
        prop_assert_eq!(ChainStatus::decode(&bytes).unwrap(), s);
        // Any single-byte change either fails or decodes to a different status.
        let mut m = bytes;
        m[(tip as usize) % m.len()] ^= 0x5a;
        if let Ok(d) = ChainStatus::decode(&m) { prop_assert_ne!(d, s); }
    }

    /// Core's retarget formula, with rust-bitcoin's implementation as the
    /// oracle (it takes the clamped timespan as u64).
    #[test]
    fn retarget_matches_oracle(exp in 0x04u32..=0x1d, mant in 0x8000u32..=0x7f_ffff, t0 in 1_231_006_505u32..2_000_000_000, span in -2_000_000i64..8_000_000) {
        let mant = if exp == 0x1d { mant.min(0xffff) } else { mant };
        let bits = CompactTarget::from_consensus((exp << 24) | mant);
        let first = Header { version: Version::ONE, prev_blockhash: BlockHash::all_zeros(), merkle_root: TxMerkleNode::all_zeros(), time: t0, bits, nonce: 0 };
        let last_time = u32::try_from(i64::from(t0) + span).unwrap_or(t0);
        let last = Header { time: last_time, ..first };
        let ours = calculate_next_work_required(&ChainParams::MAINNET, &first, &last, 2016).unwrap();
        let clamped = (i64::from(last_time) - i64::from(t0)).clamp(302_400, 4_838_400) as u64;
        let oracle = CompactTarget::from_next_work_required(bits, clamped, bitcoin::params::Params::MAINNET);
        prop_assert_eq!(ours, oracle);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Timestamp games (time-warp style sequences, MTP violations, future
    /// times): a header is accepted iff time > median of the previous 11 and
    /// time <= now + 2 h.
    #[test]
    fn timestamps_follow_mtp_model(deltas in prop::collection::vec(-5_000i64..5_000, 1..40), clock_slack in 0u64..20_000) {
        let mut ctx = Checkpoint::genesis(Network::Regtest).context().unwrap();
        let mut times = vec![genesis().time];
        let now = u64::from(genesis().time) + clock_slack;
        for (i, d) in deltas.into_iter().enumerate() {
            let tip = *ctx.header();
            let t = u32::try_from(i64::from(tip.time) + d).unwrap();
            let h = mine(Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: ctx.hash(),
                merkle_root: TxMerkleNode::from_byte_array([i as u8; 32]),
                time: t,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            }).unwrap();
            let mut last: Vec<u32> = times.iter().rev().take(11).copied().collect();
            last.sort_unstable();
            let median = last[last.len() / 2];
            let expect_ok = t > median && u64::from(t) <= now + 7200;
            match ctx.check(&h, now) {
                Ok(v) => {
                    prop_assert!(expect_ok, "accepted t={} median={}", t, median);
                    prop_assert!(ctx.advance(&v));
                    times.push(t);
                }
                Err(ValidationError::TimeNotAfterMedian { median: m, .. }) => {
                    prop_assert!(t <= median);
                    prop_assert_eq!(m, median);
                }
                Err(ValidationError::TimeTooFarInFuture { .. }) => prop_assert!(t > median && u64::from(t) > now + 7200),
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
            prop_assert_eq!(ctx.median_time_past(), { let mut l: Vec<u32> = times.iter().rev().take(11).copied().collect(); l.sort_unstable(); l[l.len() / 2] });
        }
    }

    /// Forks anywhere: the decision matches the model (most work inside the
    /// window, refusal below it).
    #[test]
    fn forks_match_model(window in 3u32..30, tip in 10usize..80, fork_back in 0usize..60, len in 1usize..60) {
        let a = main_chain();
        let tip = tip.min(a.len() - 1);
        let mut chain = open(window);
        apply(&mut chain, a, 1, tip).unwrap();
        let base = tip.saturating_sub(window as usize - 1);
        prop_assert_eq!(chain.state().lowest_height() as usize, base);
        let f = tip.saturating_sub(fork_back).min(tip - 1);
        let mut branch = a[..=f].to_vec();
        branch.extend(mine_chain(&a[f], len, 599).unwrap());
        let end = f + len;
        let before = chain.status();
        let r = apply(&mut chain, &branch, f + 1, end);
        if f >= base {
            if end > tip {
                prop_assert!(matches!(r, Ok(BatchOutcome::Reorganized { fork_height, depth, tip_height })
                    if fork_height as usize == f && depth as usize == tip - f && tip_height as usize == end), "{:?}", r);
                prop_assert_eq!(chain.state().tip_hash(), header_hash(&branch[end]));
            } else {
                prop_assert!(matches!(r, Ok(BatchOutcome::ForkIgnored { .. })), "{:?}", r);
                prop_assert_eq!(chain.status(), before);
            }
        } else if end < base {
            prop_assert_eq!(r.unwrap_err().code(), 0x0323);
        } else if len > tip - base {
            prop_assert!(matches!(r, Err(ChainError::DeepReorgRefused(_))), "{:?}", r);
            prop_assert_eq!(chain.state().tip_hash(), before.tip_hash);
            prop_assert!(chain.status().deep_reorg_refused.is_some());
        } else {
            prop_assert_eq!(r.unwrap_err().code(), 0x0324);
            prop_assert_eq!(chain.status(), before);
        }
        // Always within the window.
        let st = chain.state();
        prop_assert!(st.tip_height() - st.lowest_height() < window);
    }

    /// Replayed, reordered and duplicated batches: each is applied, a no-op,
    /// or refused for a gap / being below the window, as the model says; the
    /// chain never regresses, and one in-order pass completes it.
    #[test]
    fn batches_idempotent_in_any_order(window in 5u32..40, cuts in prop::collection::btree_set(1usize..100, 1..12), order in prop::collection::vec(any::<prop::sample::Index>(), 1..40)) {
        let a = main_chain();
        let last = 100usize;
        let mut bounds: Vec<usize> = vec![1];
        bounds.extend(cuts.iter().map(|c| c + 1));
        bounds.push(last + 1);
        bounds.dedup();
        let batches: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1] - 1)).filter(|(s, e)| s <= e).collect();
        let mut chain = open(window);
        let mut tip = 0usize;
        for idx in order {
            let (s, e) = batches[idx.index(batches.len())];
            let base = chain.state().lowest_height() as usize;
            let r = apply(&mut chain, a, s, e);
            if s > tip + 1 {
                prop_assert_eq!(r, Err(ChainError::Gap { start: s as u32, tip: tip as u32 }));
            } else if e <= tip {
                if e < base {
                    prop_assert_eq!(r.unwrap_err().code(), 0x0323);
                } else {
                    prop_assert_eq!(r, Ok(BatchOutcome::AlreadyApplied { start: s as u32, end: e as u32 }));
                }
            } else {
                prop_assert!(matches!(r, Ok(BatchOutcome::Extended { tip_height, .. }) if tip_height as usize == e), "{:?}", r);
                tip = e;
            }
            prop_assert_eq!(chain.state().tip_height() as usize, tip);
        }
        for (s, e) in &batches {
            if *e > tip {
                apply(&mut chain, a, *s, *e).unwrap();
                tip = *e;
            }
        }
        prop_assert_eq!(chain.state().tip_hash(), header_hash(&a[last]));
    }
}
