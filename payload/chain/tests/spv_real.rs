//! SPV proofs from `shared/data/bitcoin/proofs` against headers we validated
//! ourselves, with transactions from the real blocks in `blocks/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::OnceLock;

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::{Block, Network, Transaction, TxMerkleNode, Txid};
use common::*;
use spacenode_chain::checkpoint::Checkpoint;
use spacenode_chain::spv::{
    build_branch, check_txoutproof, merkle_root, merkle_root_from_branch, parse_transaction,
    verify_branch, verify_txoutproof,
};
use spacenode_chain::validate::{check_proof_of_work, header_hash};
use spacenode_chain::{ChainConfig, ChainParams, ChainState, HeaderBatch, MerkleBranch, SpvError};

/// Chain synced from the real checkpoint at 822538 to 830592 (window keeps
/// 828433..=830592, which holds block 830000).
fn chain() -> &'static ChainState {
    static CHAIN: OnceLock<ChainState> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let late = mainnet_late();
        let b = boundaries();
        let (anchor, mut work) = b[&LATE_START];
        for (i, h) in late.iter().enumerate().take(11).skip(1) {
            let w = check_proof_of_work(
                &ChainParams::MAINNET,
                &header_hash(h),
                h.bits,
                LATE_START + i as u32,
            )
            .unwrap();
            work = spacenode_chain::validate::checked_add_work(work, w).unwrap();
        }
        let cp = Checkpoint {
            network: Network::Bitcoin,
            height: LATE_START + 10,
            header: late[10],
            chain_work: work,
            anchor,
            timestamps: late[..=10].iter().map(|h| h.time).collect(),
        };
        let mut state = ChainState::new(ChainConfig::new(Network::Bitcoin), cp).unwrap();
        let now = u64::from(late.last().unwrap().time) + 3600;
        for (i, chunk) in late[11..].chunks(4000).enumerate() {
            let batch = HeaderBatch::new(
                Network::Bitcoin,
                LATE_START + 11 + (i * 4000) as u32,
                chunk.to_vec(),
            )
            .unwrap();
            let planned = state.plan_batch(&batch, now).unwrap();
            state.apply(&planned.update.unwrap()).unwrap();
        }
        assert_eq!(state.tip_height(), 830_592);
        state
    })
}

fn block(height: u32) -> Block {
    let raw = read(&format!("blocks/mainnet_{height:06}.raw"));
    let block: Block = deserialize(&raw).unwrap();
    let txids: Vec<Txid> = block.txdata.iter().map(Transaction::compute_txid).collect();
    assert_eq!(
        merkle_root(&txids),
        Some(block.header.merkle_root),
        "block {height} parses and commits to its txs"
    );
    block
}

fn txids(b: &Block) -> Vec<Txid> {
    b.txdata.iter().map(Transaction::compute_txid).collect()
}

#[test]
fn block_830000_header_is_ours() {
    let b = block(830_000);
    let (height, header) = chain().find_block(&header_hash(&b.header)).unwrap();
    assert_eq!(height, 830_000);
    assert_eq!(header, b.header);
}

#[test]
fn txoutproofs_830000_verify_with_confirmations() {
    let b = block(830_000);
    for idx in [0usize, 1, 10, 100, 1000, 1850] {
        let proof = read(&format!("proofs/mainnet_830000_txoutproof_{idx}.bin"));
        let tx = serialize(&b.txdata[idx]);
        let c =
            verify_txoutproof(chain(), &proof, &tx).unwrap_or_else(|e| panic!("proof {idx}: {e}"));
        assert_eq!(c.height, 830_000);
        assert_eq!(c.confirmations, 830_592 - 830_000 + 1);
        assert_eq!(c.index as usize, idx);
        assert_eq!(c.tx_count as usize, b.txdata.len());
        assert_eq!(c.txid, b.txdata[idx].compute_txid());
        // A different transaction of the block is not proven by this proof.
        let other = serialize(&b.txdata[(idx + 1) % b.txdata.len()]);
        assert_eq!(
            verify_txoutproof(chain(), &proof, &other)
                .unwrap_err()
                .code(),
            0x0385
        );
    }
}

#[test]
fn branches_830000_verify_and_enforce_shape() {
    let b = block(830_000);
    let ids = txids(&b);
    let n = ids.len() as u32;
    assert_eq!(
        n % 2,
        1,
        "1851 transactions: the last one is paired with itself"
    );
    for idx in [0usize, 1, 10, 100, 1000, 1849, 1850] {
        let proof = MerkleBranch {
            block_hash: header_hash(&b.header),
            txid: ids[idx],
            tx_count: n,
            index: idx as u32,
            siblings: build_branch(&ids, idx).unwrap(),
        };
        assert_eq!(MerkleBranch::decode(&proof.encode()).unwrap(), proof);
        let c = verify_branch(chain(), &proof, &serialize(&b.txdata[idx])).unwrap();
        assert_eq!((c.height, c.confirmations), (830_000, 593));
    }
    let last = MerkleBranch {
        block_hash: header_hash(&b.header),
        txid: ids[1850],
        tx_count: n,
        index: 1850,
        siblings: build_branch(&ids, 1850).unwrap(),
    };
    let tx = serialize(&b.txdata[1850]);
    // CVE-2012-2459: claiming one more transaction turns the self-pairing
    // into a "duplicate sibling" at a position where Bitcoin never duplicates.
    let mut p = last.clone();
    p.tx_count = n + 1;
    assert_eq!(verify_branch(chain(), &p, &tx).unwrap_err().code(), 0x0389);
    // Depth inconsistent with the count.
    let mut p = last.clone();
    p.tx_count = 4096;
    assert_eq!(verify_branch(chain(), &p, &tx).unwrap_err().code(), 0x0388);
    // Index out of range.
    let mut p = last.clone();
    p.index = n;
    assert_eq!(verify_branch(chain(), &p, &tx).unwrap_err().code(), 0x0387);
    // Wrong position (index 1849 with the branch of 1850).
    let mut p = last.clone();
    p.index = 1849;
    assert!(matches!(
        verify_branch(chain(), &p, &tx).unwrap_err().code(),
        0x0389 | 0x038A | 0x038C
    ));
    // A flipped sibling bit: root mismatch.
    let mut p = last.clone();
    let mut s = p.siblings[3].to_byte_array();
    s[0] ^= 1;
    p.siblings[3] = TxMerkleNode::from_byte_array(s);
    // (the explicit self-pairing sibling at a later odd level no longer
    // matches the changed node, or the root differs)
    assert!(matches!(
        verify_branch(chain(), &p, &tx).unwrap_err().code(),
        0x038A | 0x038C
    ));
    // Claimed txid is not the transaction's.
    let mut p = last;
    p.txid = ids[0];
    assert_eq!(verify_branch(chain(), &p, &tx).unwrap_err().code(), 0x0384);
}

#[test]
fn mutated_txoutproofs_are_refused() {
    let b = block(830_000);
    let proof = read("proofs/mainnet_830000_txoutproof_100.bin");
    let tx = serialize(&b.txdata[100]);
    verify_txoutproof(chain(), &proof, &tx).unwrap();
    // Flip every byte after the header one at a time: never accepted for
    // this transaction unless the flip is in dead padding bits.
    let mut accepted = Vec::new();
    for i in 80..proof.len() {
        for bit in 0..8 {
            let mut m = proof.clone();
            m[i] ^= 1 << bit;
            if let Ok(c) = verify_txoutproof(chain(), &m, &tx) {
                assert_eq!(
                    (c.txid, c.index, c.height),
                    (b.txdata[100].compute_txid(), 100, 830_000)
                );
                accepted.push((i, bit));
            }
        }
    }
    // Only flips that Bitcoin Core's partial-tree decoder also accepts
    // remain, and each still proves the right txid at the right position:
    // flag bits (unused padding bits, or marking the neighbouring leaf as
    // matched too) and total_txs values that give the same tree shape on
    // this leaf's path (the count is not committed by the header).
    let mb: bitcoin::MerkleBlock = deserialize(&proof).unwrap();
    let flag_bytes = mb.txn.bits().len().div_ceil(8);
    for (i, bit) in &accepted {
        assert!(
            *i >= proof.len() - flag_bytes || (80..84).contains(i),
            "unexpected accepted flip at byte {i} bit {bit}"
        );
    }
    assert!(
        accepted.iter().filter(|(i, _)| *i >= 84).count() <= 2,
        "accepted {accepted:?}"
    );
    // Header byte flips make it another block (not ours) or break the root.
    let mut m = proof.clone();
    m[40] ^= 1; // merkle root
    assert_eq!(
        verify_txoutproof(chain(), &m, &tx).unwrap_err().code(),
        0x038C
    );
    let mut m = proof.clone();
    m[76] ^= 1; // nonce: not a block of our chain
    assert_eq!(
        verify_txoutproof(chain(), &m, &tx).unwrap_err().code(),
        0x038D
    );
    // Truncated / trailing bytes.
    assert_eq!(
        verify_txoutproof(chain(), &proof[..proof.len() - 1], &tx)
            .unwrap_err()
            .code(),
        0x0381
    );
    let mut m = proof.clone();
    m.push(0);
    assert_eq!(
        verify_txoutproof(chain(), &m, &tx).unwrap_err().code(),
        0x0381
    );
    // Transaction bytes mangled.
    assert_eq!(
        verify_txoutproof(chain(), &proof, &tx[..tx.len() - 1])
            .unwrap_err()
            .code(),
        0x0382
    );
}

#[test]
fn proofs_of_blocks_outside_our_chain() {
    // 831332 is above our tip: the proof is well-formed on its own but its
    // block is not in our window.
    let b = block(831_332);
    for (file, idxs) in [
        ("proofs/mainnet_831332_txoutproof_0.bin", vec![0usize]),
        ("proofs/mainnet_831332_txoutproof_1.bin", vec![1]),
        (
            "proofs/mainnet_831332_txoutproof_0_1_15_20_115_2019_2024.bin",
            vec![0, 1, 15, 20, 115, 2019, 2024],
        ),
    ] {
        let proof = read(file);
        for idx in idxs {
            let tx = serialize(&b.txdata[idx]);
            let c = check_txoutproof(&proof, &tx).unwrap();
            assert_eq!(
                (c.index as usize, c.tx_count as usize),
                (idx, b.txdata.len())
            );
            assert_eq!(c.header, b.header);
            assert_eq!(
                verify_txoutproof(chain(), &proof, &tx).unwrap_err().code(),
                0x038D
            );
        }
    }
    // An old merkleblock (bcoin) for 300025, txs 396 and 397.
    let b = block(300_025);
    let proof = read("proofs/mainnet_300025_merkleblock_tx396_397.bin");
    for idx in [396usize, 397] {
        let c = check_txoutproof(&proof, &serialize(&b.txdata[idx])).unwrap();
        assert_eq!(c.index as usize, idx);
    }
    assert_eq!(
        check_txoutproof(&proof, &serialize(&b.txdata[395]))
            .unwrap_err()
            .code(),
        0x0385
    );
    // A block below our window (828433): 830000's proof is fine, but a
    // state pruned past it refuses.
    let mut small = chain().clone();
    let late = mainnet_late();
    let _ = &late;
    let pruned = small
        .plan_replace_checkpoint(Checkpoint::default_for(Network::Bitcoin))
        .unwrap();
    small.apply(&pruned).unwrap();
    let b = block(830_000);
    let proof = read("proofs/mainnet_830000_txoutproof_0.bin");
    assert_eq!(
        verify_txoutproof(&small, &proof, &serialize(&b.txdata[0]))
            .unwrap_err()
            .code(),
        0x038D
    );
}

#[test]
fn other_real_blocks_parse_and_64_byte_rule_holds() {
    for h in [
        1u32, 169_482, 227_836, 363_703, 367_891, 481_829, 482_683, 866_342,
    ] {
        let b = block(h);
        for tx in &b.txdata {
            let (_, txid) = parse_transaction(&serialize(tx)).unwrap();
            assert_eq!(txid, tx.compute_txid());
        }
        let ids = txids(&b);
        let last = ids.len() - 1;
        let root = merkle_root_from_branch(
            ids[last],
            last as u32,
            ids.len() as u32,
            &build_branch(&ids, last).unwrap(),
        )
        .unwrap();
        assert_eq!(root, b.header.merkle_root);
    }
    let _ = SpvError::InvalidTxCount { tx_count: 0 };
}
