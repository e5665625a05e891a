//! Header validation against real Bitcoin chain data from
//! `shared/data/bitcoin` (see SOURCES.md there), referenced by path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::OnceLock;

use bitcoin::block::Header;
use bitcoin::{Network, Work};
use common::*;
use proptest::prelude::*;
use spacenode_chain::params::ChainParams;
use spacenode_chain::validate::{
    calculate_next_work_required, check_proof_of_work, checked_add_work, header_hash,
    work_from_bits,
};
use spacenode_chain::{
    BatchOutcome, Chain, ChainConfig, ChainError, Checkpoint, HeaderBatch, MemoryStore,
    ValidationError,
};

/// A clock one day after the newest header of a set.
fn now_after(headers: &[Header]) -> u64 {
    u64::from(headers.iter().map(|h| h.time).max().unwrap()) + 86_400
}

fn genesis_chain(network: Network) -> Chain<MemoryStore> {
    Chain::open(
        ChainConfig::new(network),
        MemoryStore::new(),
        Checkpoint::genesis(network),
    )
    .unwrap()
}

#[test]
fn mainnet_0_to_39999_validates_from_genesis() {
    let headers = mainnet_0_39999();
    let now = now_after(&headers);
    let mut chain = genesis_chain(Network::Bitcoin);
    assert_eq!(chain.state().tip_hash(), header_hash(&headers[0]));
    let out = sync(&mut chain, Network::Bitcoin, 1, &headers[1..], 2016, now).unwrap();
    assert!(
        matches!(
            out,
            BatchOutcome::Extended {
                tip_height: 39_999,
                ..
            }
        ),
        "{out:?}"
    );
    let st = chain.state();
    assert_eq!(st.tip_height(), 39_999);
    assert_eq!(st.tip_hash(), header_hash(&headers[39_999]));
    // Pruned to the default window, in memory and in the store.
    assert_eq!(st.lowest_height(), 39_999 - (2016 + 144 - 1));
    assert_eq!(chain.store().len(), 2016 + 144 - 1);
    // Chain work agrees with the independent boundary records.
    let b = boundaries();
    for h in [38_303u32, 38_304] {
        assert_eq!(st.chain_work_at(h), Some(b[&h].1), "chain work at {h}");
    }
    // The first real retarget happened (0x1d00ffff -> 0x1d00d86a at 32256).
    assert_eq!(headers[32_256].bits.to_consensus(), 0x1d00_d86a);
}

/// Syncs mainnet from genesis up to `upto` (exclusive), then applies the raw
/// batch `batch_headers` starting at `upto`.
fn apply_mutated(
    batch_headers: Vec<Header>,
    upto: u32,
    compact: bool,
) -> Result<BatchOutcome, ChainError> {
    let headers = mainnet_0_39999();
    let now = now_after(&headers);
    let mut chain = genesis_chain(Network::Bitcoin);
    sync(
        &mut chain,
        Network::Bitcoin,
        1,
        &headers[1..upto as usize],
        2016,
        now,
    )
    .unwrap();
    let mut batch_headers = batch_headers;
    if compact {
        // The compact layout implies every prev hash: what the ground would
        // send for this mutated copy is the re-linked run.
        for i in 1..batch_headers.len() {
            batch_headers[i].prev_blockhash = header_hash(&batch_headers[i - 1]);
        }
    }
    let b = HeaderBatch::new(Network::Bitcoin, upto, batch_headers).unwrap();
    let bytes = if compact {
        b.encode().unwrap()
    } else {
        b.encode_raw()
    };
    chain.apply_batch_bytes(&bytes, now)
}

fn mutated_window(at: usize, f: impl FnOnce(&mut [Header])) -> (Vec<Header>, u32) {
    let headers = mainnet_0_39999();
    let from = at - 5;
    let mut w = headers[from..at + 6].to_vec();
    f(&mut w);
    (w, from as u32)
}

/// The batch is refused at `height` with `code`: as a whole when the bad
/// header is its first new one, else after keeping the valid headers
/// before it (the node's tip is then `height - 1`).
fn expect_err_at(r: Result<BatchOutcome, ChainError>, code: u16, height: u32) -> ValidationError {
    match r {
        Err(ChainError::Validation(e)) => {
            assert_eq!(e.code(), code, "wrong reason: {e}");
            assert_eq!(e.height(), height, "wrong height: {e}");
            e
        }
        Err(
            ref all @ ChainError::PrefixKept {
                ref error,
                tip_height,
                ..
            },
        ) => {
            assert_eq!(all.code(), code, "wrong reason: {all}");
            assert_eq!(error.height(), height, "wrong height: {all}");
            assert_eq!(tip_height, height - 1, "prefix not kept: {all}");
            error.clone()
        }
        other => panic!("expected validation error {code:#06x} at {height}, got {other:?}"),
    }
}

#[test]
fn mutated_nonce_rejected_at_its_height() {
    let (w, from) = mutated_window(12_345, |w| w[5].nonce ^= 1 << 7);
    // Raw: the next header's prev hash no longer matches, but the mutated
    // header itself fails first, at its own height.
    expect_err_at(apply_mutated(w.clone(), from, false), 0x0309, 12_345);
    expect_err_at(apply_mutated(w, from, true), 0x0309, 12_345);
}

#[test]
fn mutated_timestamp_rejected_at_its_height() {
    let headers = mainnet_0_39999();
    let at = 20_000usize;
    let mut prev: Vec<u32> = headers[at - 11..at].iter().map(|h| h.time).collect();
    prev.sort_unstable();
    let mtp = prev[5];
    // Time at the median: MTP rule (reported before PoW).
    let (w, from) = mutated_window(at, |w| w[5].time = mtp);
    let e = expect_err_at(apply_mutated(w, from, false), 0x0303, at as u32);
    assert_eq!(
        e,
        ValidationError::TimeNotAfterMedian {
            height: at as u32,
            time: mtp,
            median: mtp
        }
    );
    // Time one second later: every contextual rule passes, the hash fails.
    let (w, from) = mutated_window(at, |w| w[5].time += 1);
    expect_err_at(apply_mutated(w, from, true), 0x0309, at as u32);
    // Time far in the future relative to the node clock.
    let (w, from) = mutated_window(at, |w| w[5].time = u32::MAX - 10);
    expect_err_at(apply_mutated(w, from, false), 0x0305, at as u32);
}

#[test]
fn mutated_bits_at_retarget_rejected_at_its_height() {
    // 32256 is the first real retarget: required 0x1d00d86a.
    let (w, from) = mutated_window(32_256, |w| {
        w[5].bits = bitcoin::CompactTarget::from_consensus(0x1d00_ffff)
    });
    let e = expect_err_at(apply_mutated(w, from, false), 0x0302, 32_256);
    assert_eq!(
        e,
        ValidationError::BadDifficultyBits {
            height: 32_256,
            expected: 0x1d00_d86a,
            got: 0x1d00_ffff
        }
    );
    // And a bits change in the middle of a period.
    let (w, from) = mutated_window(30_000, |w| {
        w[5].bits = bitcoin::CompactTarget::from_consensus(0x1d00_fffe)
    });
    expect_err_at(apply_mutated(w, from, true), 0x0302, 30_000);
}

#[test]
fn swapped_pair_rejected_at_first_swapped_height() {
    let (w, from) = mutated_window(25_000, |w| w.swap(5, 6));
    // Raw layout: the header now at 25000 names 25000 as its parent.
    expect_err_at(apply_mutated(w.clone(), from, false), 0x0301, 25_000);
    // The compact layout cannot carry a broken link; re-linked, the swapped
    // header's hash changes and its proof of work fails at the same height.
    assert!(
        HeaderBatch::new(Network::Bitcoin, from, w.clone())
            .unwrap()
            .encode()
            .is_err()
    );
    expect_err_at(apply_mutated(w, from, true), 0x0309, 25_000);
}

/// Issue 13 item 15: a bad header at h keeps the valid headers of its batch
/// before it (tip h - 1, in memory and in the store); a batch whose first
/// new header is bad changes nothing.
#[test]
fn mutated_batch_keeps_the_valid_prefix() {
    let headers = mainnet_0_39999();
    let now = now_after(&headers);
    let mut chain = genesis_chain(Network::Bitcoin);
    sync(&mut chain, Network::Bitcoin, 1, &headers[1..1000], 500, now).unwrap();
    let mut w = headers[1000..1100].to_vec();
    w[99].nonce ^= 1;
    let b = HeaderBatch::new(Network::Bitcoin, 1000, w.clone()).unwrap();
    let r = chain.apply_batch(&b, now);
    assert!(
        matches!(r, Err(ChainError::PrefixKept { kept: 99, .. })),
        "{r:?}"
    );
    expect_err_at(r, 0x0309, 1099);
    assert_eq!(chain.state().tip_height(), 1098);
    assert_eq!(chain.state().tip_hash(), header_hash(&headers[1098]));
    assert_eq!(chain.store().len(), 1098);
    // The same batch again: the prefix is ours, the bad header is now the
    // first new one and the batch changes nothing.
    let before = chain.status();
    let e = chain.apply_batch(&b, now);
    assert!(matches!(e, Err(ChainError::Validation(_))), "{e:?}");
    expect_err_at(e, 0x0309, 1099);
    assert_eq!(chain.status(), before);
    // A reloaded store holds the prefix and re-validates.
    let mut store = chain.into_store();
    let stored = spacenode_chain::ChainStore::load(&mut store)
        .unwrap()
        .unwrap();
    let st = spacenode_chain::ChainState::from_stored(ChainConfig::new(Network::Bitcoin), stored);
    assert_eq!(st.map(|s| s.tip_height()).ok(), Some(1098));
}

/// The first 11 headers of the late file give the MTP timestamps; headers
/// 822529..=822538 are checked for linkage, period nBits and PoW only (their
/// own MTP check would need the times of 822518..=822527, which no data file
/// holds).
fn late_checkpoint() -> Checkpoint {
    let late = mainnet_late();
    let b = boundaries();
    let (anchor, work0) = b[&LATE_START];
    assert_eq!(
        anchor, late[0],
        "boundary record 822528 equals the contiguous file"
    );
    assert_eq!(
        late[0].prev_blockhash,
        header_hash(&b[&(LATE_START - 1)].0),
        "822528 builds on 822527"
    );
    let p = ChainParams::MAINNET;
    let mut work = work0;
    for i in 1..=10usize {
        assert_eq!(late[i].prev_blockhash, header_hash(&late[i - 1]));
        assert_eq!(late[i].bits, anchor.bits, "mid-period nBits");
        let w = check_proof_of_work(
            &p,
            &header_hash(&late[i]),
            late[i].bits,
            LATE_START + i as u32,
        )
        .unwrap();
        work = checked_add_work(work, w).unwrap();
    }
    let cp = Checkpoint {
        network: Network::Bitcoin,
        height: LATE_START + 10,
        header: late[10],
        chain_work: work,
        anchor,
        timestamps: late[..=10].iter().map(|h| h.time).collect(),
    };
    cp.validate().unwrap();
    assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
    cp
}

fn late_chain() -> Chain<MemoryStore> {
    Chain::open(
        ChainConfig::new(Network::Bitcoin),
        MemoryStore::new(),
        late_checkpoint(),
    )
    .unwrap()
}

#[test]
fn mainnet_822538_to_830592_validates_from_real_checkpoint() {
    let late = mainnet_late();
    let now = now_after(&late);
    let b = boundaries();
    let mut chain = late_chain();
    let mut checked = Vec::new();
    // Period-aligned batches so every retarget boundary is seen in the window.
    let mut next = 11usize;
    while next < late.len() {
        let height = LATE_START as usize + next;
        let end = ((height / 2016 + 1) * 2016 - LATE_START as usize + 1).min(late.len());
        let batch =
            HeaderBatch::new(Network::Bitcoin, height as u32, late[next..end].to_vec()).unwrap();
        chain
            .apply_batch_bytes(&batch.encode().unwrap(), now)
            .unwrap();
        for (&bh, (_, work)) in b.range(chain.state().lowest_height()..=chain.state().tip_height())
        {
            if bh > LATE_START + 10 {
                assert_eq!(
                    chain.state().chain_work_at(bh),
                    Some(*work),
                    "chain work at {bh}"
                );
                checked.push(bh);
            }
        }
        next = end;
    }
    checked.sort_unstable();
    checked.dedup();
    for h in [
        824_543, 824_544, 826_559, 826_560, 828_575, 828_576, 830_591, 830_592,
    ] {
        assert!(checked.contains(&h), "boundary {h} checked");
    }
    let st = chain.state();
    assert_eq!(st.tip_height(), 830_592);
    assert_eq!(st.tip_hash(), header_hash(late.last().unwrap()));
    // The compiled-in mainnet trust anchor is exactly what our own
    // validation of real data derives at 830592.
    assert_eq!(
        Checkpoint::from_context(st.tip_context()),
        Checkpoint::default_for(Network::Bitcoin)
    );
}

#[test]
fn real_stale_header_823226_competes_as_low_work_fork() {
    let late = mainnet_late();
    let now = now_after(&late);
    let csv = String::from_utf8(read("headers/mainnet_stale_headers.csv")).unwrap();
    let row = csv.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split(',').collect();
    assert_eq!(cols[0], "823226");
    let bytes: Vec<u8> = (0..160)
        .step_by(2)
        .map(|i| u8::from_str_radix(&cols[2][i..i + 2], 16).unwrap())
        .collect();
    let stale =
        spacenode_chain::checkpoint::header_from_bytes(bytes.as_slice().try_into().unwrap());
    assert_eq!(header_hash(&stale).to_string(), cols[1]);
    let idx = |h: u32| (h - LATE_START) as usize;
    assert_eq!(stale.prev_blockhash, header_hash(&late[idx(823_225)]));
    assert_ne!(stale, late[idx(823_226)]);
    let stale_batch = HeaderBatch::new(Network::Bitcoin, 823_226, vec![stale]).unwrap();

    // Tip at 823300: the one-block stale branch has less work.
    let mut chain = late_chain();
    sync(
        &mut chain,
        Network::Bitcoin,
        822_539,
        &late[11..=idx(823_300)],
        500,
        now,
    )
    .unwrap();
    let before = chain.status();
    match chain.apply_batch(&stale_batch, now).unwrap() {
        BatchOutcome::ForkIgnored {
            fork_height,
            branch_tip_height,
            branch_work,
            tip_work,
        } => {
            assert_eq!((fork_height, branch_tip_height), (823_225, 823_226));
            assert!(branch_work < tip_work);
        }
        other => panic!("expected ForkIgnored, got {other:?}"),
    }
    assert_eq!(chain.status(), before);

    // Tip at the main-chain 823226: equal work, first seen stays.
    let mut chain = late_chain();
    sync(
        &mut chain,
        Network::Bitcoin,
        822_539,
        &late[11..=idx(823_226)],
        500,
        now,
    )
    .unwrap();
    assert!(matches!(
        chain.apply_batch(&stale_batch, now).unwrap(),
        BatchOutcome::ForkIgnored { .. }
    ));

    // Tip at 823225: the stale header is valid and extends; the real chain
    // then takes over with more work (reorg of depth 1).
    let mut chain = late_chain();
    sync(
        &mut chain,
        Network::Bitcoin,
        822_539,
        &late[11..=idx(823_225)],
        500,
        now,
    )
    .unwrap();
    assert!(matches!(
        chain.apply_batch(&stale_batch, now).unwrap(),
        BatchOutcome::Extended {
            tip_height: 823_226,
            ..
        }
    ));
    let main = HeaderBatch::new(
        Network::Bitcoin,
        823_226,
        late[idx(823_226)..=idx(823_230)].to_vec(),
    )
    .unwrap();
    match chain.apply_batch(&main, now).unwrap() {
        BatchOutcome::Reorganized {
            fork_height: 823_225,
            depth: 1,
            tip_height: 823_230,
        } => {}
        other => panic!("expected reorg, got {other:?}"),
    }
    let st = chain.status();
    assert_eq!(
        st.last_reorg.map(|r| (r.fork_height, r.depth)),
        Some((823_225, 1))
    );
    assert_eq!(st.tip_hash, header_hash(&late[idx(823_230)]));
    // Replaying the stale branch now is a low-work fork again.
    assert!(matches!(
        chain.apply_batch(&stale_batch, now).unwrap(),
        BatchOutcome::ForkIgnored { .. }
    ));
}

#[test]
fn all_413_mainnet_retargets_match_boundary_records() {
    let b = boundaries();
    let p = ChainParams::MAINNET;
    let mut n = 0;
    for k in 1..=413u32 {
        let first = &b[&(2016 * (k - 1))].0;
        let (last, work_last) = &b[&(2016 * k - 1)];
        let (next, work_next) = &b[&(2016 * k)];
        assert_eq!(next.prev_blockhash, header_hash(last));
        let bits = calculate_next_work_required(&p, first, last, 2016 * k).unwrap();
        assert_eq!(bits, next.bits, "retarget at {}", 2016 * k);
        assert_eq!(
            checked_add_work(*work_last, work_from_bits(next.bits).unwrap()),
            Some(*work_next)
        );
        n += 1;
    }
    assert_eq!(n, 413);
    // Genesis chain work as in Core (0x100010001).
    assert_eq!(b[&0].1, work_from_bits(b[&0].0.bits).unwrap());
}

#[test]
fn retarget_off_by_one_is_the_one_core_has() {
    // Using the real contiguous headers: timing the period from its first
    // block (Core) reproduces every nBits; timing it over 2016 gaps (from the
    // last block of the previous period) does not.
    let h = mainnet_0_39999();
    let p = ChainParams::MAINNET;
    let mut differs = 0;
    for k in 1..=19usize {
        let at = 2016 * k;
        let core = calculate_next_work_required(&p, &h[at - 2016], &h[at - 1], at as u32).unwrap();
        assert_eq!(core, h[at].bits, "core rule at {at}");
        if at > 2016 {
            let off =
                calculate_next_work_required(&p, &h[at - 2017], &h[at - 1], at as u32).unwrap();
            if off != h[at].bits {
                differs += 1;
            }
        }
    }
    assert!(
        differs > 0,
        "the off-by-one alternative must be distinguishable on real data"
    );
}

#[test]
fn testnet3_0_to_9999_with_min_difficulty_blocks() {
    let headers = headers("headers/testnet3_headers_0_9999.bin");
    assert_eq!(
        headers[0].block_hash(),
        ChainParams::TESTNET3.genesis_hash()
    );
    let min = headers
        .iter()
        .filter(|h| h.bits.to_consensus() == 0x1d00_ffff)
        .count();
    assert!(
        min > 0 && min < headers.len(),
        "the range mixes min-difficulty and real-difficulty blocks"
    );
    let mut chain = genesis_chain(Network::Testnet);
    sync(
        &mut chain,
        Network::Testnet,
        1,
        &headers[1..],
        1000,
        now_after(&headers),
    )
    .unwrap();
    assert_eq!(chain.state().tip_hash(), header_hash(&headers[9999]));
}

#[test]
fn signet_0_to_2015_header_only() {
    let headers = headers("headers/signet_headers_0_2015.bin");
    assert_eq!(header_hash(&headers[0]), ChainParams::SIGNET.genesis_hash());
    let mut chain = genesis_chain(Network::Signet);
    sync(
        &mut chain,
        Network::Signet,
        1,
        &headers[1..],
        1000,
        now_after(&headers),
    )
    .unwrap();
    assert_eq!(chain.state().tip_height(), 2015);
    assert_eq!(chain.state().tip_hash(), header_hash(&headers[2015]));
}

#[test]
fn reload_from_store_revalidates() {
    let headers = mainnet_0_39999();
    let now = now_after(&headers);
    let mut chain = genesis_chain(Network::Bitcoin);
    sync(
        &mut chain,
        Network::Bitcoin,
        1,
        &headers[1..5000],
        1000,
        now,
    )
    .unwrap();
    let status = chain.status();
    let store = chain.into_store();
    let again = Chain::open(
        ChainConfig::new(Network::Bitcoin),
        store,
        Checkpoint::genesis(Network::Bitcoin),
    )
    .unwrap();
    assert_eq!(again.status(), status);
    assert_eq!(
        again.state().chain_work_at(4999),
        Some(status.tip_chain_work)
    );
    let _: Work = status.tip_chain_work;
}

fn cached_0_39999() -> &'static [Header] {
    static H: OnceLock<Vec<Header>> = OnceLock::new();
    H.get_or_init(mainnet_0_39999)
}

/// Checkpoint at `c` built from real data only, with the anchor taken from
/// height `anchor_at` (the right one is `c - c % 2016`).
fn real_checkpoint(c: u32, anchor_at: u32) -> Checkpoint {
    let h = cached_0_39999();
    let b = boundaries();
    let start = c - c % 2016;
    let mut work = if start == 0 {
        work_from_bits(h[0].bits).unwrap()
    } else {
        b[&start].1
    };
    for x in start + 1..=c {
        work = checked_add_work(work, work_from_bits(h[x as usize].bits).unwrap()).unwrap();
    }
    Checkpoint {
        network: Network::Bitcoin,
        height: c,
        header: h[c as usize],
        chain_work: work,
        anchor: h[anchor_at as usize],
        timestamps: h[(c as usize).saturating_sub(10)..=c as usize]
            .iter()
            .map(|x| x.time)
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Checkpoints at arbitrary (mid-period) heights support the next
    /// retarget; an anchor off by one block in either direction is caught by
    /// the record's checks or at exactly the retarget height, unless it
    /// yields the very same nBits.
    #[test]
    fn mid_period_checkpoints_and_off_by_one_anchor(k in 1u32..=19, offset in 0u32..2016) {
        let h = cached_0_39999();
        let now = u64::from(h[39_999].time) + 86_400;
        let start = 2016 * (k - 1);
        let c = start + offset.min(2014);
        let target = 2016 * k;
        // Ok(()) / Err(checkpoint code) / Err(validation code, height)
        let run = |anchor_at: u32| -> Result<(), (u16, u32)> {
            let mut ctx = real_checkpoint(c, anchor_at).context().map_err(|e| (e.code(), c))?;
            for x in c + 1..=target {
                ctx.push(&h[x as usize], now).map_err(|e| (e.code(), e.height()))?;
            }
            Ok(())
        };
        prop_assert_eq!(run(start), Ok(()));
        for wrong in [start.checked_sub(1), Some(start + 1)].into_iter().flatten() {
            match run(wrong) {
                // Accepted only if that anchor yields the same nBits (capped at
                // powLimit, or timestamps too close to change the compact value).
                Ok(()) => {
                    let p = ChainParams::MAINNET;
                    let last = &h[target as usize - 1];
                    prop_assert_eq!(
                        calculate_next_work_required(&p, &h[wrong as usize], last, target),
                        calculate_next_work_required(&p, &h[start as usize], last, target),
                        "wrong anchor {} accepted at {}", wrong, target
                    );
                }
                // Refused by the record's own consistency checks (anchor must
                // be the header itself at a boundary, genesis in period 0;
                // nBits must fit the anchor's period).
                Err((0x0367 | 0x0369 | 0x036B, at)) => prop_assert_eq!(at, c),
                // Or exactly at the retarget.
                Err((code, at)) => {
                    prop_assert_eq!(code, 0x0302);
                    prop_assert_eq!(at, target);
                }
            }
        }
    }
}
