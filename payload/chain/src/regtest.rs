//! Regtest chain building: cheap mining and SPV proofs for demos and tests.
//!
//! Owns: helpers that mine regtest headers (powLimit 0x207fffff: about one
//! nonce in two works), build a header chain whose block at chosen heights
//! commits to given transactions, and produce header batches, merkle
//! branches and `gettxoutproof` bytes for it. The daemon's demo uses this to
//! fund a wallet on a simulated chain and prove it to the node.
//!
//! Must never: be used for anything but regtest (it only mines at regtest
//! difficulty), read the clock (times are arguments), or panic (impossible
//! cases return `None`).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version};
use bitcoin::blockdata::script::Builder;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, BlockHash, CompactTarget, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness,
};

use crate::batch::{BatchError, HeaderBatch};
use crate::params::ChainParams;
use crate::spv::{MerkleBranch, build_branch, build_txoutproof, merkle_root};
use crate::validate::{header_hash, target_from_bits};

/// Version used for mined headers (BIP9 top bits, all buried forks active).
pub const REGTEST_VERSION: i32 = 0x2000_0000;

/// The regtest genesis header.
#[must_use]
pub fn genesis() -> Header {
    bitcoin::constants::genesis_block(Network::Regtest).header
}

/// Searches nonces until `header` meets the target in its nBits. Returns
/// `None` if no nonce works (practically impossible at regtest difficulty),
/// the bits are invalid, or the target is below 2^240 (more than ~65536
/// expected tries: this helper is for regtest difficulty only).
#[must_use]
pub fn mine(mut header: Header) -> Option<Header> {
    let target = target_from_bits(header.bits, 0).ok()?;
    let be = target.to_be_bytes();
    if be.first().copied().unwrap_or(0) == 0 && be.get(1).copied().unwrap_or(0) == 0 {
        return None;
    }
    for nonce in 0..=u32::MAX {
        header.nonce = nonce;
        if target.is_met_by(header_hash(&header)) {
            return Some(header);
        }
    }
    None
}

/// Mines `count` headers on top of `parent`, `spacing` seconds apart, each
/// committing to a distinct dummy merkle root. For chains that must commit
/// to real transactions use [`RegtestChain`].
#[must_use]
pub fn mine_chain(parent: &Header, count: usize, spacing: u32) -> Option<Vec<Header>> {
    let mut out: Vec<Header> = Vec::with_capacity(count);
    let mut prev = *parent;
    for i in 0..count {
        let mut root = [0u8; 32];
        for (d, s) in root.iter_mut().zip(
            u64::try_from(i)
                .ok()?
                .to_le_bytes()
                .iter()
                .chain(prev.time.to_le_bytes().iter()),
        ) {
            *d = *s;
        }
        root[31] = 0xa5;
        let h = mine(Header {
            version: Version::from_consensus(REGTEST_VERSION),
            prev_blockhash: header_hash(&prev),
            merkle_root: TxMerkleNode::from_byte_array(root),
            time: prev.time.checked_add(spacing)?,
            bits: CompactTarget::from_consensus(ChainParams::REGTEST.pow_limit_bits),
            nonce: 0,
        })?;
        out.push(h);
        prev = h;
    }
    Some(out)
}

/// A coinbase transaction for `height` (BIP34 height push plus `tag`),
/// paying 50 BTC to an OP_TRUE output. Never 64 bytes.
#[must_use]
pub fn coinbase_tx(height: u32, tag: &[u8]) -> Transaction {
    let mut script = Builder::new().push_int(i64::from(height));
    if let Ok(push) = <&bitcoin::script::PushBytes>::try_from(tag) {
        script = script.push_slice(push);
    }
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: script.into_script(),
            sequence: Sequence::MAX,
            witness: Witness::default(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(50 * 100_000_000),
            script_pubkey: ScriptBuf::from_bytes(vec![
                0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51, 0x51,
            ]),
        }],
    }
}

/// A mined regtest chain from genesis with the transactions of chosen
/// blocks kept for proofs.
#[derive(Debug, Clone)]
pub struct RegtestChain {
    headers: Vec<Header>,
    hashes: Vec<BlockHash>,
    /// Transactions of every block above genesis, by height.
    blocks: BTreeMap<u32, Vec<Transaction>>,
}

impl RegtestChain {
    /// Mines heights 1..=`tip`, block `h` at `start_time + 600 * h`. Block
    /// `h` contains `coinbase_tx(h)` followed by `commitments[h]` if given.
    /// `None` if mining or time arithmetic fails.
    #[must_use]
    pub fn build(
        tip: u32,
        start_time: u32,
        commitments: &BTreeMap<u32, Vec<Transaction>>,
    ) -> Option<RegtestChain> {
        let g = genesis();
        let mut chain = RegtestChain {
            headers: vec![g],
            hashes: vec![header_hash(&g)],
            blocks: BTreeMap::new(),
        };
        for height in 1..=tip {
            let mut txs = vec![coinbase_tx(height, b"spacenode regtest")];
            if let Some(extra) = commitments.get(&height) {
                txs.extend(extra.iter().cloned());
            }
            let time = start_time.checked_add(600u32.checked_mul(height)?)?;
            chain.push_block(txs, time)?;
        }
        Some(chain)
    }

    /// Mines one more block with `txs` (the first should be a coinbase) at
    /// `time`. Returns the new tip height.
    pub fn push_block(&mut self, txs: Vec<Transaction>, time: u32) -> Option<u32> {
        let txids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
        let root = merkle_root(&txids)?;
        let prev_hash = *self.hashes.last()?;
        let h = mine(Header {
            version: Version::from_consensus(REGTEST_VERSION),
            prev_blockhash: prev_hash,
            merkle_root: root,
            time,
            bits: CompactTarget::from_consensus(ChainParams::REGTEST.pow_limit_bits),
            nonce: 0,
        })?;
        self.headers.push(h);
        self.hashes.push(header_hash(&h));
        let height = u32::try_from(self.headers.len().checked_sub(1)?).ok()?;
        self.blocks.insert(height, txs);
        Some(height)
    }

    /// Tip height.
    #[must_use]
    pub fn tip_height(&self) -> u32 {
        u32::try_from(self.headers.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Header at `height`.
    #[must_use]
    pub fn header(&self, height: u32) -> Option<&Header> {
        self.headers.get(usize::try_from(height).ok()?)
    }

    /// Hash at `height`.
    #[must_use]
    pub fn hash(&self, height: u32) -> Option<BlockHash> {
        self.hashes.get(usize::try_from(height).ok()?).copied()
    }

    /// All headers, index = height (genesis first).
    #[must_use]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Transactions of the block at `height`.
    #[must_use]
    pub fn transactions(&self, height: u32) -> Option<&[Transaction]> {
        self.blocks.get(&height).map(Vec::as_slice)
    }

    /// Header batch for heights `from..=to` (`from >= 1`).
    ///
    /// # Errors
    /// As [`HeaderBatch::new`]; `CountOutOfRange` if the range is empty or
    /// outside the chain.
    pub fn batch(&self, from: u32, to: u32) -> Result<HeaderBatch, BatchError> {
        let range = usize::try_from(from).ok().zip(usize::try_from(to).ok());
        let slice = range.and_then(|(a, b)| self.headers.get(a..=b)).ok_or(
            BatchError::CountOutOfRange {
                count: 0,
                max: crate::batch::MAX_BATCH_HEADERS,
            },
        )?;
        HeaderBatch::new(Network::Regtest, from, slice.to_vec())
    }

    /// Merkle branch proof for transaction `tx_index` of block `height`.
    #[must_use]
    pub fn branch_proof(&self, height: u32, tx_index: usize) -> Option<MerkleBranch> {
        let txs = self.blocks.get(&height)?;
        let txids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
        Some(MerkleBranch {
            block_hash: self.hash(height)?,
            txid: *txids.get(tx_index)?,
            tx_count: u32::try_from(txids.len()).ok()?,
            index: u32::try_from(tx_index).ok()?,
            siblings: build_branch(&txids, tx_index)?,
        })
    }

    /// `gettxoutproof` bytes for transactions `tx_indexes` of block `height`.
    #[must_use]
    pub fn txoutproof(&self, height: u32, tx_indexes: &[usize]) -> Option<Vec<u8>> {
        let txs = self.blocks.get(&height)?;
        let txids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
        build_txoutproof(*self.header(height)?, &txids, tx_indexes)
    }
}
