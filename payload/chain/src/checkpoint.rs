//! Trust anchor: the checkpoint record a chain starts from.
//!
//! Owns: the [`Checkpoint`] record (height, header, cumulative chain work,
//! the retarget anchor = first header of the checkpoint's difficulty period,
//! and the last 11 timestamps for median-time-past), its self-consistency
//! checks, its canonical byte encoding (what administrators sign to replace
//! it), and the compiled-in default per network.
//!
//! A checkpoint holds exactly what [`HeaderContext`] needs, so every rule is
//! enforced from the first header after it: retarget (anchor time and bits),
//! minimum-difficulty and BIP94 (anchor bits), MTP (11 timestamps).
//!
//! Must never: check signatures or quorum (the policy layer does that over
//! [`Checkpoint::encode`] bytes), read files or the clock, panic on any input.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Work};

use crate::params::{ChainParams, MEDIAN_TIME_SPAN, network_from_id, network_id};
use crate::validate::{
    HeaderContext, check_proof_of_work, header_bytes, header_hash, work_from_bits,
};

/// Canonical encoding format version.
pub const CHECKPOINT_FORMAT: u8 = 1;
/// Encoded size without timestamps: format, network, height, header, work,
/// anchor, timestamp count.
const FIXED_LEN: usize = 1 + 1 + 4 + 80 + 32 + 80 + 1;
/// Largest encoded checkpoint.
pub const CHECKPOINT_MAX_LEN: usize = FIXED_LEN + 4 * MEDIAN_TIME_SPAN;

/// A checkpoint record failed to decode or is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Input ended early.
    #[error("checkpoint truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Bytes left after the record.
    #[error("checkpoint has {extra} trailing bytes")]
    TrailingBytes {
        /// Number of extra bytes.
        extra: usize,
    },
    /// Unknown format version.
    #[error("checkpoint format {version} is not supported (expected {CHECKPOINT_FORMAT})")]
    UnsupportedFormat {
        /// Format byte found.
        version: u8,
    },
    /// Unknown network identifier.
    #[error("checkpoint names unknown network id {id}")]
    UnknownNetwork {
        /// Identifier found.
        id: u8,
    },
    /// The record is for another network than the chain.
    #[error("checkpoint is for {got} but the chain is {expected}")]
    NetworkMismatch {
        /// Network of the chain.
        expected: Network,
        /// Network of the record.
        got: Network,
    },
    /// Wrong number of MTP timestamps for the height.
    #[error("checkpoint at {height}: {got} timestamps, expected {expected}")]
    TimestampCount {
        /// Checkpoint height.
        height: u32,
        /// min(11, height + 1).
        expected: usize,
        /// Count found.
        got: usize,
    },
    /// The last timestamp is not the checkpoint header's time.
    #[error("checkpoint at {height}: last timestamp {last} differs from header time {header_time}")]
    TimestampMismatch {
        /// Checkpoint height.
        height: u32,
        /// Header time.
        header_time: u32,
        /// Last timestamp in the record.
        last: u32,
    },
    /// The anchor is not consistent with the checkpoint (at a period
    /// boundary it must be the header itself; at height < interval it must
    /// be genesis).
    #[error("checkpoint at {height}: retarget anchor at {anchor_height} is inconsistent")]
    AnchorMismatch {
        /// Checkpoint height.
        height: u32,
        /// Height the anchor must have.
        anchor_height: u32,
    },
    /// The header or the anchor fails its own proof of work.
    #[error("checkpoint header at {height} fails proof of work")]
    BadProofOfWork {
        /// Height of the failing header (checkpoint or anchor).
        height: u32,
    },
    /// nBits of the header is not possible in the anchor's period.
    #[error(
        "checkpoint at {height}: nbits {bits:#010x} impossible in a period starting with {anchor_bits:#010x}"
    )]
    BitsInconsistent {
        /// Checkpoint height.
        height: u32,
        /// Anchor nBits.
        anchor_bits: u32,
        /// Header nBits.
        bits: u32,
    },
    /// Chain work is less than the checkpoint block's own work.
    #[error("checkpoint at {height}: chain work is below the block's own work")]
    ChainWorkTooLow {
        /// Checkpoint height.
        height: u32,
    },
    /// A height-0 record (or anchor) is not the network's genesis block.
    #[error("checkpoint genesis {got} is not the network genesis {expected}")]
    GenesisMismatch {
        /// Network genesis hash.
        expected: BlockHash,
        /// Hash in the record.
        got: BlockHash,
    },
}

impl CheckpointError {
    /// Stable reason code reported to the ground (range 0x0360..=0x037F).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Truncated { .. } => 0x0360,
            Self::TrailingBytes { .. } => 0x0361,
            Self::UnsupportedFormat { .. } => 0x0362,
            Self::UnknownNetwork { .. } => 0x0363,
            Self::NetworkMismatch { .. } => 0x0364,
            Self::TimestampCount { .. } => 0x0365,
            Self::TimestampMismatch { .. } => 0x0366,
            Self::AnchorMismatch { .. } => 0x0367,
            Self::BadProofOfWork { .. } => 0x0368,
            Self::BitsInconsistent { .. } => 0x0369,
            Self::ChainWorkTooLow { .. } => 0x036A,
            Self::GenesisMismatch { .. } => 0x036B,
        }
    }
}

/// The record a chain starts from (and, rolled forward, the base of a pruned
/// chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Network of the record.
    pub network: Network,
    /// Height of `header`.
    pub height: u32,
    /// The checkpoint block header.
    pub header: Header,
    /// Cumulative chain work up to and including `header`.
    pub chain_work: Work,
    /// First header of the difficulty period containing `height`, i.e. the
    /// header at `height - height % interval` (the header itself at a
    /// boundary). Supplies the retarget start time and the period's nBits.
    pub anchor: Header,
    /// Times of the blocks at `height - n + 1 ..= height`, oldest first, with
    /// `n = min(11, height + 1)`; the last one is `header.time`.
    pub timestamps: Vec<u32>,
}

impl Checkpoint {
    /// Height of the retarget anchor.
    #[must_use]
    pub fn anchor_height(&self) -> u32 {
        let interval = ChainParams::for_network(self.network).interval;
        self.height
            .saturating_sub(self.height.checked_rem(interval).unwrap_or(0))
    }

    /// Hash of the checkpoint header.
    #[must_use]
    pub fn hash(&self) -> BlockHash {
        header_hash(&self.header)
    }

    /// Genesis checkpoint of `network` (compiled in from `bitcoin`'s
    /// genesis block; chain work = the genesis block's own work).
    #[must_use]
    pub fn genesis(network: Network) -> Checkpoint {
        let header = bitcoin::constants::genesis_block(network).header;
        let chain_work = work_from_bits(header.bits).unwrap_or(Work::from_be_bytes([0; 32]));
        Checkpoint {
            network,
            height: 0,
            header,
            chain_work,
            anchor: header,
            timestamps: vec![header.time],
        }
    }

    /// The compiled-in default trust anchor for `network`.
    ///
    /// Mainnet: block 830592 (a retarget boundary, 2016 * 412), with its
    /// chain work and the times of 830582..=830592, all taken from real chain
    /// data (see the crate README and the test that re-derives it from
    /// `shared/data/bitcoin`). Other networks: genesis.
    #[must_use]
    pub fn default_for(network: Network) -> Checkpoint {
        match network {
            Network::Bitcoin => mainnet_830592(),
            other => Checkpoint::genesis(other),
        }
    }

    /// Checks internal consistency: timestamp count and last timestamp,
    /// anchor position, proof of work of header and anchor, nBits coherent
    /// with the anchor, chain work at least the block's work, genesis.
    ///
    /// # Errors
    /// The first inconsistency found.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        let params = ChainParams::for_network(self.network);
        let expected = usize::try_from(self.height)
            .ok()
            .and_then(|h| h.checked_add(1))
            .map_or(MEDIAN_TIME_SPAN, |n| n.min(MEDIAN_TIME_SPAN));
        if self.timestamps.len() != expected {
            return Err(CheckpointError::TimestampCount {
                height: self.height,
                expected,
                got: self.timestamps.len(),
            });
        }
        let last = self.timestamps.last().copied().unwrap_or(0);
        if last != self.header.time {
            return Err(CheckpointError::TimestampMismatch {
                height: self.height,
                header_time: self.header.time,
                last,
            });
        }
        let hash = header_hash(&self.header);
        let work =
            check_proof_of_work(&params, &hash, self.header.bits, self.height).map_err(|_| {
                CheckpointError::BadProofOfWork {
                    height: self.height,
                }
            })?;
        let anchor_height = self.anchor_height();
        let anchor_hash = header_hash(&self.anchor);
        check_proof_of_work(&params, &anchor_hash, self.anchor.bits, anchor_height).map_err(
            |_| CheckpointError::BadProofOfWork {
                height: anchor_height,
            },
        )?;
        if anchor_height == self.height && self.anchor != self.header {
            return Err(CheckpointError::AnchorMismatch {
                height: self.height,
                anchor_height,
            });
        }
        if anchor_height == 0 && anchor_hash != params.genesis_hash() {
            return Err(CheckpointError::GenesisMismatch {
                expected: params.genesis_hash(),
                got: anchor_hash,
            });
        }
        let bits = self.header.bits.to_consensus();
        let anchor_bits = self.anchor.bits.to_consensus();
        let bits_ok = bits == anchor_bits
            || (params.allow_min_difficulty_blocks && bits == params.pow_limit_bits);
        if !bits_ok {
            return Err(CheckpointError::BitsInconsistent {
                height: self.height,
                anchor_bits,
                bits,
            });
        }
        if self.chain_work < work {
            return Err(CheckpointError::ChainWorkTooLow {
                height: self.height,
            });
        }
        Ok(())
    }

    /// Validation context positioned at this checkpoint.
    ///
    /// # Errors
    /// As [`Checkpoint::validate`].
    pub fn context(&self) -> Result<HeaderContext, CheckpointError> {
        self.validate()?;
        Ok(HeaderContext::from_parts(
            ChainParams::for_network(self.network),
            self.height,
            self.header,
            header_hash(&self.header),
            self.chain_work,
            &self.timestamps,
            self.anchor,
        ))
    }

    /// Checkpoint describing the tip of `ctx`.
    #[must_use]
    pub fn from_context(ctx: &HeaderContext) -> Checkpoint {
        Checkpoint {
            network: ctx.params().network,
            height: ctx.height(),
            header: *ctx.header(),
            chain_work: ctx.chain_work(),
            anchor: *ctx.anchor(),
            timestamps: ctx.timestamps().to_vec(),
        }
    }

    /// Canonical encoding (what a quorum signs):
    ///
    /// ```text
    /// format u8 (=1) | network id u8 | height u32 LE | header 80 |
    /// chain work 32 BE | anchor header 80 | n u8 | n x time u32 LE
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_MAX_LEN);
        out.push(CHECKPOINT_FORMAT);
        out.push(network_id(self.network));
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&header_bytes(&self.header));
        out.extend_from_slice(&self.chain_work.to_be_bytes());
        out.extend_from_slice(&header_bytes(&self.anchor));
        out.push(u8::try_from(self.timestamps.len()).unwrap_or(u8::MAX));
        for t in &self.timestamps {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Decodes and [`validate`](Checkpoint::validate)s a canonical record.
    /// Never panics.
    ///
    /// # Errors
    /// Structural errors (`Truncated`, `TrailingBytes`, `UnsupportedFormat`,
    /// `UnknownNetwork`, `TimestampCount`) or any consistency error.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let format = r.u8()?;
        if format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::UnsupportedFormat { version: format });
        }
        let id = r.u8()?;
        let network = network_from_id(id).ok_or(CheckpointError::UnknownNetwork { id })?;
        let height = r.u32()?;
        let header = r.header()?;
        let chain_work = Work::from_be_bytes(r.array::<32>()?);
        let anchor = r.header()?;
        let n = usize::from(r.u8()?);
        if n == 0 || n > MEDIAN_TIME_SPAN {
            return Err(CheckpointError::TimestampCount {
                height,
                expected: MEDIAN_TIME_SPAN.min(
                    usize::try_from(height)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                ),
                got: n,
            });
        }
        let mut timestamps = Vec::with_capacity(n);
        for _ in 0..n {
            timestamps.push(r.u32()?);
        }
        let extra = bytes.len().saturating_sub(r.pos);
        if extra != 0 {
            return Err(CheckpointError::TrailingBytes { extra });
        }
        let cp = Checkpoint {
            network,
            height,
            header,
            chain_work,
            anchor,
            timestamps,
        };
        cp.validate()?;
        Ok(cp)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CheckpointError> {
        let end = self.pos.checked_add(n).ok_or(CheckpointError::Truncated {
            needed: usize::MAX,
            got: self.buf.len(),
        })?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CheckpointError::Truncated {
                needed: end,
                got: self.buf.len(),
            })?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(u8::from_le_bytes(self.array::<1>()?))
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }
    fn header(&mut self) -> Result<Header, CheckpointError> {
        let b = self.array::<80>()?;
        Ok(header_from_bytes(&b))
    }
}

/// Parses an 80-byte consensus header (infallible: every 80-byte string is a
/// syntactically valid header).
#[must_use]
pub fn header_from_bytes(b: &[u8; 80]) -> Header {
    let mut version = [0u8; 4];
    let mut prev = [0u8; 32];
    let mut merkle = [0u8; 32];
    let mut time = [0u8; 4];
    let mut bits = [0u8; 4];
    let mut nonce = [0u8; 4];
    let mut it = b.iter();
    for dst in [
        &mut version[..],
        &mut prev[..],
        &mut merkle[..],
        &mut time[..],
        &mut bits[..],
        &mut nonce[..],
    ] {
        for (d, s) in dst.iter_mut().zip(&mut it) {
            *d = *s;
        }
    }
    Header {
        version: Version::from_consensus(i32::from_le_bytes(version)),
        prev_blockhash: BlockHash::from_byte_array(prev),
        merkle_root: TxMerkleNode::from_byte_array(merkle),
        time: u32::from_le_bytes(time),
        bits: CompactTarget::from_consensus(u32::from_le_bytes(bits)),
        nonce: u32::from_le_bytes(nonce),
    }
}

/// Mainnet block 830592 (hash
/// 00000000000000000000506183a8b30fa3224b85e82a70416e1d594bdb632fdb),
/// a retarget boundary, so it is its own anchor. Values from
/// `shared/data/bitcoin/headers/mainnet_headers_822528_830592.bin` (header
/// and times of 830582..=830592) and `mainnet_retarget_boundaries.bin`
/// (chain work); `tests/real_data.rs` re-derives and compares them.
fn mainnet_830592() -> Checkpoint {
    const HEADER: [u8; 80] = [
        0x00, 0x00, 0xc0, 0x20, 0xb2, 0xcb, 0x69, 0xcc, 0x11, 0x50, 0x08, 0x75, 0x8a, 0x88, 0xec,
        0xb3, 0xb5, 0x00, 0x8c, 0xfd, 0xcb, 0x9a, 0xaf, 0x88, 0x33, 0x5b, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x63, 0xe2, 0xd6, 0x4b, 0x85, 0xa8, 0xd9, 0x9b, 0x0b,
        0x0d, 0x7f, 0xf8, 0x8e, 0xc0, 0xb3, 0xc4, 0x1d, 0x5d, 0x02, 0x67, 0xdf, 0x09, 0x42, 0x6a,
        0xd7, 0xec, 0x57, 0x54, 0x90, 0x59, 0xc0, 0xcf, 0xae, 0x22, 0xce, 0x65, 0xb1, 0x71, 0x03,
        0x17, 0x58, 0x4f, 0x25, 0x94,
    ];
    const CHAIN_WORK: [u8; 32] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x6a, 0x70, 0xfe, 0x70, 0xf2,
        0x87, 0x33, 0x30, 0xc7, 0x52, 0x9d, 0xb0,
    ];
    const TIMES: [u32; 11] = [
        1_708_003_458,
        1_708_003_472,
        1_708_004_066,
        1_708_004_171,
        1_708_004_578,
        1_708_004_674,
        1_708_004_751,
        1_708_005_191,
        1_708_005_434,
        1_708_006_020,
        1_708_008_110,
    ];
    let header = header_from_bytes(&HEADER);
    Checkpoint {
        network: Network::Bitcoin,
        height: 830_592,
        header,
        chain_work: Work::from_be_bytes(CHAIN_WORK),
        anchor: header,
        timestamps: TIMES.to_vec(),
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "test arithmetic on small known values"
)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        for n in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Testnet4,
            Network::Signet,
            Network::Regtest,
        ] {
            let cp = Checkpoint::default_for(n);
            cp.validate().unwrap();
            assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
        }
        assert_eq!(
            Checkpoint::default_for(Network::Bitcoin).hash().to_string(),
            "00000000000000000000506183a8b30fa3224b85e82a70416e1d594bdb632fdb"
        );
    }

    #[test]
    fn header_bytes_roundtrip() {
        let h = bitcoin::constants::genesis_block(Network::Bitcoin).header;
        assert_eq!(header_from_bytes(&header_bytes(&h)), h);
        assert_eq!(bitcoin::consensus::serialize(&h), header_bytes(&h).to_vec());
    }

    #[test]
    fn rejects_inconsistent_records() {
        let mut cp = Checkpoint::default_for(Network::Bitcoin);
        cp.timestamps.pop();
        assert_eq!(cp.validate().unwrap_err().code(), 0x0365);
        let mut cp = Checkpoint::default_for(Network::Bitcoin);
        cp.header.nonce ^= 1;
        assert!(matches!(
            cp.validate(),
            Err(CheckpointError::TimestampMismatch { .. })
                | Err(CheckpointError::BadProofOfWork { .. })
        ));
        let mut cp = Checkpoint::default_for(Network::Bitcoin);
        cp.chain_work = Work::from_be_bytes([0; 32]);
        assert_eq!(cp.validate().unwrap_err().code(), 0x036A);
        let mut bytes = Checkpoint::default_for(Network::Regtest).encode();
        bytes.push(0);
        assert_eq!(Checkpoint::decode(&bytes).unwrap_err().code(), 0x0361);
        bytes.truncate(10);
        assert_eq!(Checkpoint::decode(&bytes).unwrap_err().code(), 0x0360);
    }
}
