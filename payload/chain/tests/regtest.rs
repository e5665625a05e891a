//! Scenario tests on mined regtest chains: SPV for a funding transaction,
//! pruning, reorgs, deep-reorg refusal, replays, persistence and failures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::convert::Infallible;

use bitcoin::absolute::LockTime;
use bitcoin::block::Header;
use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use spacenode_chain::regtest::{RegtestChain, coinbase_tx, genesis, mine_chain};
use spacenode_chain::spv::{build_branch, build_txoutproof, verify_branch, verify_txoutproof};
use spacenode_chain::status::ChainStatus;
use spacenode_chain::store::{ChainUpdate, StoredChain};
use spacenode_chain::validate::header_hash;
use spacenode_chain::{
    BatchOutcome, Chain, ChainConfig, ChainError, ChainStore, Checkpoint, HeaderBatch, MemoryStore,
    MerkleBranch,
};

const T0: u32 = 1_700_000_000;

fn now() -> u64 {
    u64::from(T0) + 10_000_000
}

fn regtest_chain(window: u32) -> Chain<MemoryStore> {
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

/// Main chain: genesis then `n` headers (index = height).
fn main_chain(n: usize) -> Vec<Header> {
    let g = genesis();
    let mut v = vec![g];
    v.extend(mine_chain(&g, n, 600).unwrap());
    v
}

/// Fork of `base` after height `fork`: `len` headers with different roots.
fn fork(base: &[Header], fork: usize, len: usize) -> Vec<Header> {
    // Different spacing gives different times, hence different headers.
    let mut f = base[..=fork].to_vec();
    f.extend(mine_chain(&base[fork], len, 601).unwrap());
    f
}

fn batch(chain: &[Header], from: usize, to: usize) -> HeaderBatch {
    HeaderBatch::new(Network::Regtest, from as u32, chain[from..=to].to_vec()).unwrap()
}

fn apply(
    chain: &mut Chain<MemoryStore>,
    headers: &[Header],
    from: usize,
    to: usize,
) -> Result<BatchOutcome, ChainError> {
    let b = batch(headers, from, to);
    chain.apply_batch_bytes(&b.encode().unwrap(), now())
}

fn funding_tx() -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([7; 32]),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[vec![1u8; 72], vec![2u8; 33]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: ScriptBuf::from_bytes([&[0x00, 0x20][..], &[9u8; 32]].concat()),
        }],
    }
}

#[test]
fn funding_transaction_proven_both_ways() {
    let mut commit = BTreeMap::new();
    commit.insert(5u32, vec![funding_tx(), coinbase_tx(999, b"filler")]);
    let rc = RegtestChain::build(30, T0, &commit).unwrap();
    let mut chain = regtest_chain(2160);
    chain.apply_batch(&rc.batch(1, 30).unwrap(), now()).unwrap();
    assert_eq!(chain.state().tip_hash(), rc.hash(30).unwrap());
    let tx = serialize(&funding_tx());
    let branch = rc.branch_proof(5, 1).unwrap();
    assert_eq!(branch.txid, funding_tx().compute_txid());
    let c = verify_branch(chain.state(), &branch, &tx).unwrap();
    assert_eq!(
        (c.height, c.confirmations, c.index, c.tx_count),
        (5, 26, 1, 3)
    );
    let proof = rc.txoutproof(5, &[1]).unwrap();
    let c = verify_txoutproof(chain.state(), &proof, &tx).unwrap();
    assert_eq!((c.height, c.confirmations, c.index), (5, 26, 1));
    // More blocks, more confirmations.
    let mut rc2 = rc.clone();
    rc2.push_block(vec![coinbase_tx(31, b"x")], T0 + 31 * 600)
        .unwrap();
    chain
        .apply_batch(&rc2.batch(31, 31).unwrap(), now())
        .unwrap();
    assert_eq!(
        verify_branch(chain.state(), &branch, &tx)
            .unwrap()
            .confirmations,
        27
    );
}

#[test]
fn sixty_four_byte_transaction_and_duplicate_leaf_refused() {
    // A 64-byte (non-witness) transaction: 4 + 1 + 41 + 1 + 13 + 4.
    let tx64 = Transaction {
        version: Version::ONE,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([3; 32]),
                vout: 1,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51; 4]),
        }],
    };
    assert_eq!(serialize(&tx64).len(), 64);
    let mut commit = BTreeMap::new();
    commit.insert(3u32, vec![tx64.clone(), funding_tx()]);
    let rc = RegtestChain::build(10, T0, &commit).unwrap();
    let mut chain = regtest_chain(2160);
    chain.apply_batch(&rc.batch(1, 10).unwrap(), now()).unwrap();
    let err = verify_branch(
        chain.state(),
        &rc.branch_proof(3, 1).unwrap(),
        &serialize(&tx64),
    )
    .unwrap_err();
    assert_eq!(err.code(), 0x0383);
    let err = verify_txoutproof(
        chain.state(),
        &rc.txoutproof(3, &[1]).unwrap(),
        &serialize(&tx64),
    )
    .unwrap_err();
    assert_eq!(err.code(), 0x0383);

    // CVE-2012-2459: [cb, a, b] and [cb, a, b, b] have the same root. A proof
    // of the phantom 4th transaction is refused in both forms.
    let txs = rc.transactions(3).unwrap();
    let ids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
    assert_eq!(ids.len(), 3);
    let dup: Vec<Txid> = vec![ids[0], ids[1], ids[2], ids[2]];
    assert_eq!(
        spacenode_chain::spv::merkle_root(&dup),
        spacenode_chain::spv::merkle_root(&ids)
    );
    let phantom = MerkleBranch {
        block_hash: rc.hash(3).unwrap(),
        txid: ids[2],
        tx_count: 4,
        index: 3,
        siblings: build_branch(&dup, 3).unwrap(),
    };
    let tx_b = serialize(&txs[2]);
    assert_eq!(
        verify_branch(chain.state(), &phantom, &tx_b)
            .unwrap_err()
            .code(),
        0x0389
    );
    let pmt = build_txoutproof(*rc.header(3).unwrap(), &dup, &[3]).unwrap();
    assert_eq!(
        verify_txoutproof(chain.state(), &pmt, &tx_b)
            .unwrap_err()
            .code(),
        0x038B
    );
    // The honest proof of the real 3rd transaction passes.
    assert_eq!(
        verify_branch(chain.state(), &rc.branch_proof(3, 2).unwrap(), &tx_b)
            .unwrap()
            .index,
        2
    );
}

#[test]
fn mining_helper_refuses_real_difficulty() {
    let mut h = genesis();
    h.bits = bitcoin::CompactTarget::from_consensus(0x1d00_ffff);
    assert!(spacenode_chain::regtest::mine(h).is_none());
    h.bits = bitcoin::CompactTarget::from_consensus(0x207f_ffff);
    assert!(spacenode_chain::regtest::mine(h).is_some());
}

#[test]
fn pruning_keeps_window_and_store_bounded() {
    let h = main_chain(100);
    let mut chain = regtest_chain(20);
    for from in (1..=100).step_by(7) {
        apply(&mut chain, &h, from, (from + 6).min(100)).unwrap();
        let st = chain.state();
        assert!(st.tip_height() - st.lowest_height() < 20);
        assert!(chain.store().len() < 20);
    }
    let st = chain.status();
    assert_eq!((st.tip_height, st.lowest_height, st.window), (100, 81, 20));
    assert_eq!(chain.store().len(), 19);
    // Reload from the store gives the same state.
    let again = Chain::open(
        ChainConfig {
            network: Network::Regtest,
            window: 20,
        },
        chain.into_store(),
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap();
    assert_eq!(again.status(), st);
}

#[test]
fn reorg_inside_window_follows_most_work() {
    let a = main_chain(50);
    let mut chain = regtest_chain(30);
    apply(&mut chain, &a, 1, 50).unwrap();
    let b = fork(&a, 40, 12);
    // Equal work (10 blocks against 10): not followed.
    assert!(matches!(
        apply(&mut chain, &b, 41, 50).unwrap(),
        BatchOutcome::ForkIgnored {
            fork_height: 40,
            ..
        }
    ));
    assert!(matches!(
        apply(&mut chain, &b, 41, 45).unwrap(),
        BatchOutcome::ForkIgnored { .. }
    ));
    assert_eq!(chain.state().tip_hash(), header_hash(&a[50]));
    // More work: followed.
    match apply(&mut chain, &b, 41, 52).unwrap() {
        BatchOutcome::Reorganized {
            fork_height: 40,
            depth: 10,
            tip_height: 52,
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(chain.state().tip_hash(), header_hash(&b[52]));
    let st = chain.status();
    assert_eq!(
        st.last_reorg
            .map(|r| (r.fork_height, r.depth, r.new_tip_height)),
        Some((40, 10, 52))
    );
    // The status encoding carries it.
    assert_eq!(ChainStatus::decode(&st.encode()).unwrap(), st);
    // The old branch replayed is now the low-work side.
    assert!(matches!(
        apply(&mut chain, &a, 41, 50).unwrap(),
        BatchOutcome::ForkIgnored { .. }
    ));
    // Batch naming a parent we do not have (old branch, starting at 46).
    assert_eq!(apply(&mut chain, &a, 46, 50).unwrap_err().code(), 0x0322);
    // Reload: the reorged chain is what was persisted.
    let again = Chain::open(
        ChainConfig {
            network: Network::Regtest,
            window: 30,
        },
        chain.into_store(),
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap();
    assert_eq!(again.status(), st);
}

#[test]
fn reorg_deeper_than_window_refused_and_flagged() {
    let a = main_chain(100);
    let mut chain = regtest_chain(20);
    apply(&mut chain, &a, 1, 100).unwrap();
    assert_eq!(chain.state().lowest_height(), 81);
    let before = chain.state().tip_hash();
    let b = fork(&a, 70, 45); // heights 71..=115, fork point 70 < 81
    // Branch ending below the window: nothing can be checked.
    assert_eq!(apply(&mut chain, &b, 71, 75).unwrap_err().code(), 0x0323);
    // Into the window but with less work than the window: refused, no flag.
    assert_eq!(apply(&mut chain, &b, 71, 85).unwrap_err().code(), 0x0324);
    assert_eq!(chain.status().deep_reorg_refused, None);
    // More work than the whole window: refused and flagged.
    match apply(&mut chain, &b, 71, 115) {
        Err(ChainError::DeepReorgRefused(info)) => {
            assert_eq!(
                (info.lowest_kept, info.branch_start, info.branch_end),
                (81, 71, 115)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(chain.state().tip_hash(), before, "tip unchanged");
    let st = chain.status();
    assert!(st.deep_reorg_refused.is_some());
    let decoded = ChainStatus::decode(&st.encode()).unwrap();
    assert_eq!(decoded.deep_reorg_refused, st.deep_reorg_refused);
    // The flag is persisted.
    let store = chain.into_store();
    let mut chain = Chain::open(
        ChainConfig {
            network: Network::Regtest,
            window: 20,
        },
        store,
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap();
    assert!(chain.status().deep_reorg_refused.is_some());
    chain.clear_deep_reorg_flag().unwrap();
    assert_eq!(chain.status().deep_reorg_refused, None);
    // The code of the typed error the daemon turns into an event.
    assert_eq!(
        ChainError::DeepReorgRefused(st.deep_reorg_refused.unwrap()).code(),
        0x0325
    );
}

#[test]
fn replays_overlaps_and_gaps() {
    let a = main_chain(60);
    let mut chain = regtest_chain(25);
    assert!(matches!(
        apply(&mut chain, &a, 1, 20).unwrap(),
        BatchOutcome::Extended {
            first_new: 1,
            tip_height: 20,
            already_had: 0
        }
    ));
    assert_eq!(
        apply(&mut chain, &a, 1, 20).unwrap(),
        BatchOutcome::AlreadyApplied { start: 1, end: 20 }
    );
    assert_eq!(
        apply(&mut chain, &a, 5, 10).unwrap(),
        BatchOutcome::AlreadyApplied { start: 5, end: 10 }
    );
    assert!(matches!(
        apply(&mut chain, &a, 15, 30).unwrap(),
        BatchOutcome::Extended {
            first_new: 21,
            tip_height: 30,
            already_had: 6
        }
    ));
    assert_eq!(
        apply(&mut chain, &a, 40, 50).unwrap_err(),
        ChainError::Gap { start: 40, tip: 30 }
    );
    apply(&mut chain, &a, 31, 60).unwrap();
    assert_eq!(chain.state().lowest_height(), 36);
    // A resumed pass that restarts below the window but on our chain.
    assert_eq!(
        apply(&mut chain, &a, 30, 60).unwrap(),
        BatchOutcome::AlreadyApplied { start: 30, end: 60 }
    );
    assert_eq!(apply(&mut chain, &a, 10, 20).unwrap_err().code(), 0x0323);
    let status = chain.status();
    // A replayed batch leaves the store untouched.
    let mut store = chain.into_store();
    assert_eq!(store.load().unwrap().unwrap().headers.len(), 24);
    let _ = status;
}

#[test]
fn wrong_network_future_time_and_bad_bytes() {
    let a = main_chain(20);
    let mut chain = regtest_chain(100);
    let main = HeaderBatch::new(Network::Bitcoin, 1, a[1..=3].to_vec()).unwrap();
    assert_eq!(chain.apply_batch(&main, now()).unwrap_err().code(), 0x0320);
    // Headers are genesis time + 600 * h; with the node clock at genesis
    // time + 1000, the first header more than 2 h ahead is refused.
    let clock = u64::from(a[0].time) + 1000;
    let limit = clock + 7200;
    let first_bad = (1..=20).find(|&h| u64::from(a[h].time) > limit).unwrap();
    // The valid headers before it are kept (issue 13 item 15).
    match chain.apply_batch(&batch(&a, 1, 20), clock).unwrap_err() {
        ChainError::PrefixKept {
            error, tip_height, ..
        } => {
            assert_eq!(
                (error.code(), error.height()),
                (0x0305, first_bad as u32),
                "{error}"
            );
            assert_eq!(tip_height, first_bad as u32 - 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        chain
            .apply_batch_bytes(&[1, 5, 0, 0], now())
            .unwrap_err()
            .code(),
        0x0340
    );
    assert_eq!(chain.state().tip_height(), first_bad as u32 - 1);
}

/// A store whose writes can be made to fail.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    fail: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("disk on fire")]
struct Fire;

impl ChainStore for FlakyStore {
    type Error = Fire;
    fn load(&mut self) -> Result<Option<StoredChain>, Fire> {
        Ok(self.inner.load().unwrap_or_else(|e: Infallible| match e {}))
    }
    fn apply(&mut self, update: &ChainUpdate) -> Result<(), Fire> {
        if self.fail {
            return Err(Fire);
        }
        self.inner
            .apply(update)
            .unwrap_or_else(|e: Infallible| match e {});
        Ok(())
    }
}

#[test]
fn store_failure_changes_nothing() {
    let a = main_chain(30);
    let mut chain = Chain::open(
        ChainConfig::new(Network::Regtest),
        FlakyStore::default(),
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap();
    chain.apply_batch(&batch(&a, 1, 10), now()).unwrap();
    let before = chain.status();
    let mut store = chain.into_store();
    store.fail = true;
    let mut chain = Chain::open(
        ChainConfig::new(Network::Regtest),
        store,
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap();
    let err = chain.apply_batch(&batch(&a, 11, 20), now()).unwrap_err();
    assert_eq!(err.code(), 0x0328);
    assert_eq!(chain.status(), before);
}

#[test]
fn corrupt_store_detected_on_load() {
    let a = main_chain(30);
    let mut chain = regtest_chain(100);
    apply(&mut chain, &a, 1, 30).unwrap();
    let mut stored = chain.into_store().load().unwrap().unwrap();
    // A bit flip in a stored header.
    stored.headers[12].header.nonce ^= 1;
    let mut bad = MemoryStore::new();
    bad.apply(&ChainUpdate {
        reset: true,
        truncate_above: None,
        insert: stored.headers.clone(),
        new_base: Some(stored.base.clone()),
        meta: stored.meta,
    })
    .unwrap();
    let err = Chain::open(
        ChainConfig {
            network: Network::Regtest,
            window: 100,
        },
        bad,
        Checkpoint::genesis(Network::Regtest),
    )
    .unwrap_err();
    assert_eq!(err.code(), 0x0327);
    assert!(
        matches!(err, ChainError::StoreCorrupt { height: 13, .. }),
        "{err}"
    );
}

#[test]
fn checkpoint_replacement_restarts_chain() {
    let a = main_chain(80);
    let mut chain = regtest_chain(30);
    apply(&mut chain, &a, 1, 60).unwrap();
    // A checkpoint at 55 derived from the validated chain (what an
    // administrator quorum would sign), through its canonical encoding.
    let mut ctx = Checkpoint::genesis(Network::Regtest).context().unwrap();
    for h in &a[1..=55] {
        ctx.push(h, now()).unwrap();
    }
    let cp = Checkpoint::from_context(&ctx);
    let cp = Checkpoint::decode(&cp.encode()).unwrap();
    chain.replace_checkpoint(cp.clone()).unwrap();
    let st = chain.status();
    assert_eq!(
        (st.tip_height, st.lowest_height, st.last_reorg),
        (55, 55, None)
    );
    assert!(matches!(
        apply(&mut chain, &a, 56, 80).unwrap(),
        BatchOutcome::Extended { tip_height: 80, .. }
    ));
    let mut other = cp;
    other.network = Network::Signet;
    assert_eq!(chain.replace_checkpoint(other).unwrap_err().code(), 0x0320);
    // A mid-period checkpoint works too (anchor = period start at 0 here:
    // regtest interval 144).
    assert_eq!(chain.state().base().anchor_height(), 0);
}
