//! SPV: is a transaction in a block of our validated chain, and how deep?
//!
//! Owns: two proof forms and their checks against [`ChainState`]:
//! - [`MerkleBranch`]: txid, position, total transaction count, siblings
//!   (Electrum-style branch), with its own canonical encoding;
//! - BIP37 partial merkle tree, i.e. Bitcoin Core `gettxoutproof` bytes
//!   (`header | total_txs u32 | hashes | flag bits`), parsed with
//!   `bitcoin::MerkleBlock`.
//!
//! Defences, beyond "the root matches a header we validated":
//! - CVE-2017-12842 (64-byte transactions): the caller must supply the full
//!   transaction; we parse it, require its non-witness serialization not to be
//!   64 bytes (so it cannot be an inner node of the tree) and compute its txid
//!   ourselves. Residual risk: `tx_count` is not committed to by the header,
//!   so a *real* 64-byte transaction inside a block could let a prover claim a
//!   deeper tree; building one costs roughly 2^70+ hashes and 64-byte
//!   transactions are non-standard since Bitcoin Core 0.16.1 (and invalid under
//!   the BIP54 proposal). A caller that needs more can also prove the
//!   coinbase (index 0) with the same tx count, which pins the depth.
//! - CVE-2012-2459 (duplicated leaves): the branch length must equal the tree
//!   depth implied by `tx_count`, the index must be below `tx_count`, a
//!   sibling may equal its node only where Bitcoin's odd-width duplication
//!   happens (last node of an odd level) and must equal it there. For partial
//!   trees, `bitcoin::PartialMerkleTree::extract_matches` already enforces
//!   Core's checks (identical left/right refused, every bit and hash
//!   consumed, tx count bounded); we add the transaction checks above.
//! - the block must be one of our kept (window) blocks; confirmations are
//!   `tip - height + 1`.
//!
//! Must never: trust a txid, index or tx count without recomputing it,
//! accept blocks outside the window, or panic on any input.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::{BlockHash, Transaction, TxMerkleNode, Txid};

use crate::state::ChainState;
use crate::validate::header_hash;

/// Largest accepted `gettxoutproof` payload.
pub const MAX_PROOF_LEN: usize = 64 * 1024;
/// Largest accepted transaction (consensus block size).
pub const MAX_TX_LEN: usize = 4_000_000;
/// Bitcoin Core's bound on transactions in a block (4M weight / 240).
pub const MAX_TX_COUNT: u32 = 4_000_000 / 240;
/// Largest branch (depth for `MAX_TX_COUNT`).
pub const MAX_BRANCH_LEN: usize = 16;

/// An SPV proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpvError {
    /// Proof bytes exceed [`MAX_PROOF_LEN`].
    #[error("proof is {len} bytes, more than {max}")]
    ProofTooLarge {
        /// Length given.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// Proof bytes do not decode.
    #[error("proof does not decode: {detail}")]
    MalformedProof {
        /// Decoder message.
        detail: String,
    },
    /// Transaction bytes do not decode (or exceed [`MAX_TX_LEN`]).
    #[error("transaction does not decode: {detail}")]
    MalformedTransaction {
        /// Decoder message.
        detail: String,
    },
    /// Non-witness serialization is 64 bytes (CVE-2017-12842).
    #[error("transaction {txid} is 64 bytes without witness: ambiguous with a merkle inner node")]
    SixtyFourByteTransaction {
        /// Its txid.
        txid: Txid,
    },
    /// The txid named by the proof is not the transaction's.
    #[error("proof names txid {claimed} but the transaction hashes to {computed}")]
    TxidMismatch {
        /// Txid in the proof.
        claimed: Txid,
        /// Txid of the supplied transaction.
        computed: Txid,
    },
    /// The transaction is not among the proof's matches.
    #[error("transaction {txid} is not matched by the proof")]
    TxNotInProof {
        /// Its txid.
        txid: Txid,
    },
    /// Transaction count is zero or above [`MAX_TX_COUNT`].
    #[error("transaction count {tx_count} is impossible")]
    InvalidTxCount {
        /// Count given.
        tx_count: u32,
    },
    /// Index not below the transaction count.
    #[error("index {index} is not below the transaction count {tx_count}")]
    IndexOutOfRange {
        /// Index given.
        index: u32,
        /// Count given.
        tx_count: u32,
    },
    /// Branch length differs from the depth implied by the count.
    #[error("branch has {got} siblings but {tx_count} transactions need {expected}")]
    WrongBranchLength {
        /// Required length.
        expected: usize,
        /// Length given.
        got: usize,
        /// Count given.
        tx_count: u32,
    },
    /// A sibling equals its node where no duplication is possible
    /// (CVE-2012-2459).
    #[error(
        "sibling at level {level} duplicates its node at a position where bitcoin never duplicates"
    )]
    DuplicateSibling {
        /// Tree level (0 = leaves).
        level: usize,
    },
    /// The last node of an odd level must be paired with itself.
    #[error("sibling at level {level} must duplicate the last node of an odd level")]
    BadPadding {
        /// Tree level (0 = leaves).
        level: usize,
    },
    /// The partial merkle tree is malformed.
    #[error("partial merkle tree refused: {detail}")]
    PartialTree {
        /// Why.
        detail: String,
    },
    /// Recomputed root differs from the header's.
    #[error("merkle root {got} does not match block {block}'s {expected}")]
    MerkleRootMismatch {
        /// Block hash.
        block: BlockHash,
        /// Header merkle root.
        expected: TxMerkleNode,
        /// Recomputed root.
        got: TxMerkleNode,
    },
    /// Block unknown or below the kept window.
    #[error("block {hash} is not in our chain window (lowest kept height {lowest_kept})")]
    BlockNotInWindow {
        /// Block hash.
        hash: BlockHash,
        /// Lowest kept height.
        lowest_kept: u32,
    },
    /// Branch encoding malformed.
    #[error("merkle branch encoding: {detail}")]
    MalformedBranch {
        /// What was wrong.
        detail: &'static str,
    },
}

impl SpvError {
    /// Stable reason code reported to the ground (range 0x0380..=0x039F).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::ProofTooLarge { .. } => 0x0380,
            Self::MalformedProof { .. } => 0x0381,
            Self::MalformedTransaction { .. } => 0x0382,
            Self::SixtyFourByteTransaction { .. } => 0x0383,
            Self::TxidMismatch { .. } => 0x0384,
            Self::TxNotInProof { .. } => 0x0385,
            Self::InvalidTxCount { .. } => 0x0386,
            Self::IndexOutOfRange { .. } => 0x0387,
            Self::WrongBranchLength { .. } => 0x0388,
            Self::DuplicateSibling { .. } => 0x0389,
            Self::BadPadding { .. } => 0x038A,
            Self::PartialTree { .. } => 0x038B,
            Self::MerkleRootMismatch { .. } => 0x038C,
            Self::BlockNotInWindow { .. } => 0x038D,
            Self::MalformedBranch { .. } => 0x038E,
        }
    }
}

/// A merkle branch proof for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleBranch {
    /// Block the transaction is claimed to be in.
    pub block_hash: BlockHash,
    /// Claimed txid (checked against the supplied transaction).
    pub txid: Txid,
    /// Total transactions in the block.
    pub tx_count: u32,
    /// Position of the transaction in the block.
    pub index: u32,
    /// Sibling hashes from the leaf level up.
    pub siblings: Vec<TxMerkleNode>,
}

impl MerkleBranch {
    /// Canonical encoding:
    /// `block_hash 32 | txid 32 | tx_count u32 LE | index u32 LE | n u8 | n x 32`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let n = self.siblings.len().min(usize::from(u8::MAX));
        let mut out = Vec::with_capacity(73usize.saturating_add(n.saturating_mul(32)));
        out.extend_from_slice(self.block_hash.as_byte_array());
        out.extend_from_slice(self.txid.as_byte_array());
        out.extend_from_slice(&self.tx_count.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.push(u8::try_from(n).unwrap_or(u8::MAX));
        for s in self.siblings.iter().take(n) {
            out.extend_from_slice(s.as_byte_array());
        }
        out
    }

    /// Decodes [`MerkleBranch::encode`] output. Never panics.
    ///
    /// # Errors
    /// `MalformedBranch` on wrong length or more than [`MAX_BRANCH_LEN`]
    /// siblings.
    pub fn decode(bytes: &[u8]) -> Result<MerkleBranch, SpvError> {
        let (head, rest) = bytes
            .split_at_checked(73)
            .ok_or(SpvError::MalformedBranch {
                detail: "truncated",
            })?;
        let arr32 = |s: &[u8]| -> Result<[u8; 32], SpvError> {
            s.try_into().map_err(|_| SpvError::MalformedBranch {
                detail: "truncated",
            })
        };
        let arr4 = |s: &[u8]| -> Result<[u8; 4], SpvError> {
            s.try_into().map_err(|_| SpvError::MalformedBranch {
                detail: "truncated",
            })
        };
        let block_hash = BlockHash::from_byte_array(arr32(head.get(0..32).unwrap_or(&[]))?);
        let txid = Txid::from_byte_array(arr32(head.get(32..64).unwrap_or(&[]))?);
        let tx_count = u32::from_le_bytes(arr4(head.get(64..68).unwrap_or(&[]))?);
        let index = u32::from_le_bytes(arr4(head.get(68..72).unwrap_or(&[]))?);
        let n = usize::from(head.get(72).copied().unwrap_or(0));
        if n > MAX_BRANCH_LEN {
            return Err(SpvError::MalformedBranch {
                detail: "too many siblings",
            });
        }
        if rest.len() != n.saturating_mul(32) {
            return Err(SpvError::MalformedBranch {
                detail: "length does not match sibling count",
            });
        }
        let siblings = rest
            .chunks_exact(32)
            .map(|c| arr32(c).map(TxMerkleNode::from_byte_array))
            .collect::<Result<_, _>>()?;
        Ok(MerkleBranch {
            block_hash,
            txid,
            tx_count,
            index,
            siblings,
        })
    }
}

/// Result of a successful SPV check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpvConfirmation {
    /// Txid of the proven transaction.
    pub txid: Txid,
    /// Block containing it.
    pub block_hash: BlockHash,
    /// Height of that block.
    pub height: u32,
    /// `tip - height + 1`.
    pub confirmations: u32,
    /// Position in the block.
    pub index: u32,
    /// Transactions in the block as claimed by the proof. Only the tree depth
    /// it implies is enforced (the header does not commit to the count), so
    /// do not rely on its exact value.
    pub tx_count: u32,
}

/// Parses a full transaction and applies the 64-byte rule.
///
/// # Errors
/// `MalformedTransaction` or `SixtyFourByteTransaction`.
pub fn parse_transaction(tx_bytes: &[u8]) -> Result<(Transaction, Txid), SpvError> {
    if tx_bytes.len() > MAX_TX_LEN {
        return Err(SpvError::MalformedTransaction {
            detail: format!("{} bytes is too large", tx_bytes.len()),
        });
    }
    let tx: Transaction = deserialize(tx_bytes).map_err(|e| SpvError::MalformedTransaction {
        detail: e.to_string(),
    })?;
    let txid = tx.compute_txid();
    if tx.base_size() == 64 {
        return Err(SpvError::SixtyFourByteTransaction { txid });
    }
    Ok((tx, txid))
}

fn parent(left: &TxMerkleNode, right: &TxMerkleNode) -> TxMerkleNode {
    let mut buf = [0u8; 64];
    for (d, s) in buf.iter_mut().zip(
        left.as_byte_array()
            .iter()
            .chain(right.as_byte_array().iter()),
    ) {
        *d = *s;
    }
    TxMerkleNode::from_raw_hash(sha256d::Hash::hash(&buf))
}

/// Depth of the merkle tree of `tx_count` transactions.
fn tree_depth(tx_count: u32) -> usize {
    let mut width = tx_count;
    let mut depth = 0usize;
    while width > 1 {
        width = width.div_ceil(2);
        depth = depth.saturating_add(1);
    }
    depth
}

/// Recomputes the merkle root from a branch, enforcing that positions and
/// depth fit `tx_count` (CVE-2012-2459 checks, see the module doc).
///
/// # Errors
/// `InvalidTxCount`, `IndexOutOfRange`, `WrongBranchLength`,
/// `DuplicateSibling` or `BadPadding`.
pub fn merkle_root_from_branch(
    txid: Txid,
    index: u32,
    tx_count: u32,
    siblings: &[TxMerkleNode],
) -> Result<TxMerkleNode, SpvError> {
    if tx_count == 0 || tx_count > MAX_TX_COUNT {
        return Err(SpvError::InvalidTxCount { tx_count });
    }
    if index >= tx_count {
        return Err(SpvError::IndexOutOfRange { index, tx_count });
    }
    let expected = tree_depth(tx_count);
    if siblings.len() != expected {
        return Err(SpvError::WrongBranchLength {
            expected,
            got: siblings.len(),
            tx_count,
        });
    }
    let mut node = TxMerkleNode::from_raw_hash(txid.to_raw_hash());
    let mut pos = index;
    let mut width = tx_count;
    for (level, sib) in siblings.iter().enumerate() {
        let partner = pos ^ 1;
        if partner >= width {
            // Last node of an odd level: Bitcoin pairs it with itself.
            if *sib != node {
                return Err(SpvError::BadPadding { level });
            }
        } else if *sib == node {
            return Err(SpvError::DuplicateSibling { level });
        }
        node = if pos & 1 == 0 {
            parent(&node, sib)
        } else {
            parent(sib, &node)
        };
        pos >>= 1;
        width = width.div_ceil(2);
    }
    Ok(node)
}

/// Builds the branch for position `index` among `txids` (prover side:
/// ground tools, regtest demo). `None` if `index` is out of range.
#[must_use]
pub fn build_branch(txids: &[Txid], index: usize) -> Option<Vec<TxMerkleNode>> {
    if index >= txids.len() {
        return None;
    }
    let mut level: Vec<TxMerkleNode> = txids
        .iter()
        .map(|t| TxMerkleNode::from_raw_hash(t.to_raw_hash()))
        .collect();
    let mut pos = index;
    let mut out = Vec::new();
    while level.len() > 1 {
        let partner = pos ^ 1;
        let sib = level.get(partner).or_else(|| level.get(pos)).copied()?;
        out.push(sib);
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => parent(l, r),
                [l] => parent(l, l),
                _ => TxMerkleNode::all_zeros(),
            })
            .collect();
        pos >>= 1;
    }
    Some(out)
}

/// Merkle root of `txids` (Bitcoin's odd-duplicating tree); `None` if empty.
#[must_use]
pub fn merkle_root(txids: &[Txid]) -> Option<TxMerkleNode> {
    bitcoin::merkle_tree::calculate_root(
        txids
            .iter()
            .map(|t| TxMerkleNode::from_raw_hash(t.to_raw_hash())),
    )
}

/// Checks a branch proof against our chain with the full transaction.
///
/// # Errors
/// Any [`SpvError`] (transaction, branch shape, root mismatch, block not in
/// window).
pub fn verify_branch(
    state: &ChainState,
    proof: &MerkleBranch,
    tx_bytes: &[u8],
) -> Result<SpvConfirmation, SpvError> {
    let (_, txid) = parse_transaction(tx_bytes)?;
    if txid != proof.txid {
        return Err(SpvError::TxidMismatch {
            claimed: proof.txid,
            computed: txid,
        });
    }
    let (height, header) =
        state
            .find_block(&proof.block_hash)
            .ok_or(SpvError::BlockNotInWindow {
                hash: proof.block_hash,
                lowest_kept: state.lowest_height(),
            })?;
    let root = merkle_root_from_branch(txid, proof.index, proof.tx_count, &proof.siblings)?;
    if root != header.merkle_root {
        return Err(SpvError::MerkleRootMismatch {
            block: proof.block_hash,
            expected: header.merkle_root,
            got: root,
        });
    }
    let confirmations = state
        .confirmations(height)
        .ok_or(SpvError::BlockNotInWindow {
            hash: proof.block_hash,
            lowest_kept: state.lowest_height(),
        })?;
    Ok(SpvConfirmation {
        txid,
        block_hash: proof.block_hash,
        height,
        confirmations,
        index: proof.index,
        tx_count: proof.tx_count,
    })
}

/// A `gettxoutproof` checked on its own (no chain): the header, and the
/// proven transaction's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedTxOutProof {
    /// Block header in the proof.
    pub header: Header,
    /// Its hash.
    pub block_hash: BlockHash,
    /// Txid of the supplied transaction.
    pub txid: Txid,
    /// Its position in the block.
    pub index: u32,
    /// Transactions in the block.
    pub tx_count: u32,
}

/// Checks `gettxoutproof` bytes against the full transaction without
/// consulting a chain: the partial tree is well-formed (Core's checks), its
/// root equals the header's merkle root, and the transaction (not 64 bytes)
/// is among the matches. The header's proof of work is NOT checked here;
/// use [`verify_txoutproof`] to tie it to our chain.
///
/// # Errors
/// `ProofTooLarge`, `MalformedProof`, `PartialTree`, `MerkleRootMismatch`,
/// transaction errors or `TxNotInProof`.
pub fn check_txoutproof(proof: &[u8], tx_bytes: &[u8]) -> Result<CheckedTxOutProof, SpvError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(SpvError::ProofTooLarge {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    let mb: MerkleBlock = deserialize(proof).map_err(|e| SpvError::MalformedProof {
        detail: e.to_string(),
    })?;
    let block_hash = header_hash(&mb.header);
    let mut matches = Vec::new();
    let mut indexes = Vec::new();
    let root = mb
        .txn
        .extract_matches(&mut matches, &mut indexes)
        .map_err(|e| SpvError::PartialTree {
            detail: e.to_string(),
        })?;
    if root != mb.header.merkle_root {
        return Err(SpvError::MerkleRootMismatch {
            block: block_hash,
            expected: mb.header.merkle_root,
            got: root,
        });
    }
    let (_, txid) = parse_transaction(tx_bytes)?;
    let index = matches
        .iter()
        .zip(indexes.iter())
        .find(|(m, _)| **m == txid)
        .map(|(_, i)| *i)
        .ok_or(SpvError::TxNotInProof { txid })?;
    Ok(CheckedTxOutProof {
        header: mb.header,
        block_hash,
        txid,
        index,
        tx_count: mb.txn.num_transactions(),
    })
}

/// Checks `gettxoutproof` bytes (BIP37 merkle block) with the full
/// transaction against our chain.
///
/// # Errors
/// As [`check_txoutproof`], or `BlockNotInWindow`.
pub fn verify_txoutproof(
    state: &ChainState,
    proof: &[u8],
    tx_bytes: &[u8],
) -> Result<SpvConfirmation, SpvError> {
    let checked = check_txoutproof(proof, tx_bytes)?;
    let not_kept = SpvError::BlockNotInWindow {
        hash: checked.block_hash,
        lowest_kept: state.lowest_height(),
    };
    let (height, header) = state
        .find_block(&checked.block_hash)
        .ok_or(not_kept.clone())?;
    if header != checked.header {
        // Same hash implies same header; kept for defence in depth.
        return Err(not_kept);
    }
    let confirmations = state.confirmations(height).ok_or(not_kept)?;
    Ok(SpvConfirmation {
        txid: checked.txid,
        block_hash: checked.block_hash,
        height,
        confirmations,
        index: checked.index,
        tx_count: checked.tx_count,
    })
}

/// Builds `gettxoutproof` bytes proving positions `matched` among `txids`
/// under `header` (prover side); `None` if `txids` is empty or too long.
#[must_use]
pub fn build_txoutproof(header: Header, txids: &[Txid], matched: &[usize]) -> Option<Vec<u8>> {
    if txids.is_empty() || txids.len() > MAX_TX_COUNT as usize {
        return None;
    }
    let flags: Vec<bool> = (0..txids.len()).map(|i| matched.contains(&i)).collect();
    let txn = bitcoin::merkle_tree::PartialMerkleTree::from_txids(txids, &flags);
    Some(serialize(&MerkleBlock { header, txn }))
}
