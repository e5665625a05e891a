//! Compact uplink format for batches of block headers.
//!
//! Owns: [`HeaderBatch`] (a linked run of headers with its start height and
//! parent hash) and its byte encoding. Inside a batch the previous-block hash
//! of every header but the first is implied (hash of the header before it);
//! unchanged fields are elided.
//!
//! ```text
//! batch  := format u8 (=1) | network id u8 | start_height u32 LE |
//!           parent_hash [32] (internal byte order) | count u16 LE | header*count
//! header := flags u8 | version? | merkle_root [32] | time | bits? | nonce u32 LE
//! flags  : 0x01 VERSION_FULL   version i32 LE follows (4 bytes)
//!          0x02 VERSION_ROLLED u16 LE follows: version = (prev & !0x1fffe000) | (v << 13)
//!               (BIP320 version rolling); neither flag: same version as previous
//!          0x04 BITS           nbits u32 LE follows; else same as previous
//!          0x08 TIME_ABS       time u32 LE; else time = previous + i16 LE delta
//!          0xf0 reserved, must be zero; VERSION_FULL|VERSION_ROLLED is invalid
//! ```
//!
//! A second, raw layout (format 2) carries full 80-byte headers, for ground
//! tools that relay `getblockheader` output verbatim and for tests that must
//! express headers that do not link:
//!
//! ```text
//! raw    := format u8 (=2) | network id u8 | start_height u32 LE | count u16 LE | header80*count
//! ```
//!
//! The first header must carry VERSION_FULL, BITS and TIME_ABS. A typical
//! modern mainnet header costs 41 bytes (flags 1, rolled version 2, merkle 32,
//! time delta 2, nonce 4); batch overhead is 40 bytes.
//!
//! Must never: panic or allocate unboundedly on any input (count is capped
//! at [`MAX_BATCH_HEADERS`] and checked against the remaining bytes), or look
//! at chain state: decoding is self-contained, validation is the chain's job.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode};

use crate::checkpoint::header_from_bytes;
use crate::params::{network_from_id, network_id};
use crate::validate::{header_bytes, header_hash};

/// Batch format version (compact layout).
pub const BATCH_FORMAT: u8 = 1;
/// Raw layout (full 80-byte headers).
pub const BATCH_FORMAT_RAW: u8 = 2;
/// Bytes before the first header in the raw layout.
pub const RAW_BATCH_OVERHEAD: usize = 1 + 1 + 4 + 2;
/// Maximum headers in one batch (two difficulty periods).
pub const MAX_BATCH_HEADERS: usize = 4032;
/// Bytes before the first header.
pub const BATCH_OVERHEAD: usize = 1 + 1 + 4 + 32 + 2;

const F_VERSION_FULL: u8 = 0x01;
const F_VERSION_ROLLED: u8 = 0x02;
const F_BITS: u8 = 0x04;
const F_TIME_ABS: u8 = 0x08;
const F_RESERVED: u8 = 0xf0;
/// BIP320 general-purpose version bits (13..=28).
const VERSION_ROLL_MASK: u32 = 0x1fff_e000;
/// Smallest possible encoded header (flags + merkle + time delta + nonce).
const MIN_HEADER_LEN: usize = 1 + 32 + 2 + 4;

/// A header batch failed to decode or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Input ended early.
    #[error("header batch truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Unknown format version.
    #[error("header batch format {version} is not supported (expected {BATCH_FORMAT})")]
    UnsupportedFormat {
        /// Format byte found.
        version: u8,
    },
    /// Unknown network identifier.
    #[error("header batch names unknown network id {id}")]
    UnknownNetwork {
        /// Identifier found.
        id: u8,
    },
    /// Start height 0: genesis is never uplinked, it is a checkpoint.
    #[error("header batch starts at height 0")]
    ZeroStartHeight,
    /// Header count is zero or above the maximum.
    #[error("header batch count {count} outside 1..={max}")]
    CountOutOfRange {
        /// Count found.
        count: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// Reserved or contradictory flag bits.
    #[error("header {index} of batch has invalid flags {flags:#04x}")]
    InvalidFlags {
        /// Index of the header in the batch.
        index: usize,
        /// Flag byte found.
        flags: u8,
    },
    /// First header does not carry version, bits and absolute time.
    #[error("first header of batch must carry full version, bits and time (flags {flags:#04x})")]
    FirstHeaderIncomplete {
        /// Flag byte found.
        flags: u8,
    },
    /// A time delta leaves the u32 range.
    #[error("header {index} of batch: time delta out of range")]
    TimeOutOfRange {
        /// Index of the header in the batch.
        index: usize,
    },
    /// Bytes after the last header.
    #[error("header batch has {extra} trailing bytes")]
    TrailingBytes {
        /// Number of extra bytes.
        extra: usize,
    },
    /// start height + count exceeds u32.
    #[error("header batch from {start} with {count} headers overflows the height range")]
    HeightOverflow {
        /// Start height.
        start: u32,
        /// Count.
        count: usize,
    },
    /// The compact layout cannot express headers that do not link.
    #[error("header {index} of batch does not link to the header before it: use the raw layout")]
    NotLinked {
        /// Index of the header in the batch.
        index: usize,
    },
}

impl BatchError {
    /// Stable reason code reported to the ground (range 0x0340..=0x035F).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Truncated { .. } => 0x0340,
            Self::UnsupportedFormat { .. } => 0x0341,
            Self::UnknownNetwork { .. } => 0x0342,
            Self::ZeroStartHeight => 0x0343,
            Self::CountOutOfRange { .. } => 0x0344,
            Self::InvalidFlags { .. } => 0x0345,
            Self::FirstHeaderIncomplete { .. } => 0x0346,
            Self::TimeOutOfRange { .. } => 0x0347,
            Self::TrailingBytes { .. } => 0x0348,
            Self::HeightOverflow { .. } => 0x0349,
            Self::NotLinked { .. } => 0x034A,
        }
    }
}

/// A run of headers starting at a known height.
///
/// Invariant (enforced by every constructor): 1..=[`MAX_BATCH_HEADERS`]
/// headers, `start_height >= 1` and the last height fits in u32. Hashes are
/// computed once and kept. Headers normally link (always, when decoded from
/// the compact layout); a raw batch may not, and the chain then refuses it
/// with `PrevHashMismatch` at the height where the link breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBatch {
    network: Network,
    start_height: u32,
    headers: Vec<Header>,
    hashes: Vec<BlockHash>,
}

impl HeaderBatch {
    /// Builds a batch from full headers (ground side, tests). Linkage is not
    /// required here (see [`HeaderBatch::is_linked`]).
    ///
    /// # Errors
    /// `CountOutOfRange`, `ZeroStartHeight` or `HeightOverflow`.
    pub fn new(
        network: Network,
        start_height: u32,
        headers: Vec<Header>,
    ) -> Result<HeaderBatch, BatchError> {
        check_shape(start_height, headers.len())?;
        let hashes = headers.iter().map(header_hash).collect();
        Ok(HeaderBatch {
            network,
            start_height,
            headers,
            hashes,
        })
    }

    /// Index of the first header that does not build on the one before it.
    #[must_use]
    pub fn first_unlinked(&self) -> Option<usize> {
        self.headers
            .iter()
            .zip(self.hashes.iter())
            .zip(self.headers.iter().skip(1))
            .position(|((_, hash), next)| next.prev_blockhash != *hash)
            .and_then(|i| i.checked_add(1))
    }

    /// True if every header builds on the one before it.
    #[must_use]
    pub fn is_linked(&self) -> bool {
        self.first_unlinked().is_none()
    }

    /// Raw layout (format 2): full 80-byte headers.
    #[must_use]
    pub fn encode_raw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            RAW_BATCH_OVERHEAD.saturating_add(self.headers.len().saturating_mul(80)),
        );
        out.push(BATCH_FORMAT_RAW);
        out.push(network_id(self.network));
        out.extend_from_slice(&self.start_height.to_le_bytes());
        out.extend_from_slice(
            &u16::try_from(self.headers.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        for h in &self.headers {
            out.extend_from_slice(&header_bytes(h));
        }
        out
    }

    /// Network the batch is for.
    #[must_use]
    pub fn network(&self) -> Network {
        self.network
    }

    /// Height of the first header.
    #[must_use]
    pub fn start_height(&self) -> u32 {
        self.start_height
    }

    /// Height of the last header.
    #[must_use]
    pub fn end_height(&self) -> u32 {
        let extra = u32::try_from(self.headers.len().saturating_sub(1)).unwrap_or(u32::MAX);
        self.start_height.saturating_add(extra)
    }

    /// Hash of the parent of the first header.
    #[must_use]
    pub fn parent(&self) -> BlockHash {
        self.headers
            .first()
            .map_or_else(BlockHash::all_zeros, |h| h.prev_blockhash)
    }

    /// The headers, in height order.
    #[must_use]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Their hashes, same order.
    #[must_use]
    pub fn hashes(&self) -> &[BlockHash] {
        &self.hashes
    }

    /// Number of headers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Always false (a batch holds at least one header); for clippy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Encodes the batch in the compact layout (see the module doc).
    ///
    /// # Errors
    /// `NotLinked` if the headers do not link (use [`HeaderBatch::encode_raw`]).
    pub fn encode(&self) -> Result<Vec<u8>, BatchError> {
        if let Some(index) = self.first_unlinked() {
            return Err(BatchError::NotLinked { index });
        }
        let mut out = Vec::with_capacity(
            BATCH_OVERHEAD.saturating_add(self.headers.len().saturating_mul(48)),
        );
        out.push(BATCH_FORMAT);
        out.push(network_id(self.network));
        out.extend_from_slice(&self.start_height.to_le_bytes());
        out.extend_from_slice(self.parent().as_byte_array());
        out.extend_from_slice(
            &u16::try_from(self.headers.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        let mut prev: Option<&Header> = None;
        for h in &self.headers {
            let version = h.version.to_consensus() as u32;
            let bits = h.bits.to_consensus();
            let mut flags = 0u8;
            let mut version_bytes: &[u8] = &[];
            let full = version.to_le_bytes();
            let rolled;
            match prev {
                Some(p) if p.version == h.version => {}
                Some(p)
                    if (p.version.to_consensus() as u32) & !VERSION_ROLL_MASK
                        == version & !VERSION_ROLL_MASK =>
                {
                    flags |= F_VERSION_ROLLED;
                    rolled = (((version & VERSION_ROLL_MASK) >> 13) as u16).to_le_bytes();
                    version_bytes = &rolled;
                }
                _ => {
                    flags |= F_VERSION_FULL;
                    version_bytes = &full;
                }
            }
            let keep_bits = prev.is_some_and(|p| p.bits.to_consensus() == bits);
            if !keep_bits {
                flags |= F_BITS;
            }
            let delta = prev.and_then(|p| {
                i16::try_from(i64::from(h.time).checked_sub(i64::from(p.time))?).ok()
            });
            if delta.is_none() {
                flags |= F_TIME_ABS;
            }
            out.push(flags);
            out.extend_from_slice(version_bytes);
            out.extend_from_slice(h.merkle_root.as_byte_array());
            match delta {
                Some(d) => out.extend_from_slice(&d.to_le_bytes()),
                None => out.extend_from_slice(&h.time.to_le_bytes()),
            }
            if !keep_bits {
                out.extend_from_slice(&bits.to_le_bytes());
            }
            out.extend_from_slice(&h.nonce.to_le_bytes());
            prev = Some(h);
        }
        Ok(out)
    }

    /// Decodes a batch in either layout, reconstructing (compact) and
    /// hashing every header. Never panics; allocation is bounded by the
    /// input length.
    ///
    /// # Errors
    /// Any [`BatchError`] except `NotLinked`.
    pub fn decode(bytes: &[u8]) -> Result<HeaderBatch, BatchError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let format = r.u8()?;
        if format == BATCH_FORMAT_RAW {
            return Self::decode_raw(r, bytes);
        }
        if format != BATCH_FORMAT {
            return Err(BatchError::UnsupportedFormat { version: format });
        }
        let id = r.u8()?;
        let network = network_from_id(id).ok_or(BatchError::UnknownNetwork { id })?;
        let start_height = r.u32()?;
        let parent = BlockHash::from_byte_array(r.array::<32>()?);
        let count = usize::from(r.u16()?);
        check_shape(start_height, count)?;
        // Bound the allocation by what the input can actually hold.
        let remaining = bytes.len().saturating_sub(r.pos);
        if remaining < count.saturating_mul(MIN_HEADER_LEN) {
            return Err(BatchError::Truncated {
                needed: r.pos.saturating_add(count.saturating_mul(MIN_HEADER_LEN)),
                got: bytes.len(),
            });
        }
        let mut headers: Vec<Header> = Vec::with_capacity(count);
        let mut hashes: Vec<BlockHash> = Vec::with_capacity(count);
        let mut prev_hash = parent;
        for index in 0..count {
            let flags = r.u8()?;
            if flags & F_RESERVED != 0
                || flags & (F_VERSION_FULL | F_VERSION_ROLLED)
                    == (F_VERSION_FULL | F_VERSION_ROLLED)
            {
                return Err(BatchError::InvalidFlags { index, flags });
            }
            let prev = headers.last();
            let prev = match prev {
                Some(p) => *p,
                None => {
                    if flags & (F_VERSION_FULL | F_BITS | F_TIME_ABS)
                        != (F_VERSION_FULL | F_BITS | F_TIME_ABS)
                    {
                        return Err(BatchError::FirstHeaderIncomplete { flags });
                    }
                    // Placeholder never read: every field is present.
                    Header {
                        version: Version::from_consensus(0),
                        prev_blockhash: parent,
                        merkle_root: TxMerkleNode::all_zeros(),
                        time: 0,
                        bits: CompactTarget::from_consensus(0),
                        nonce: 0,
                    }
                }
            };
            let version = if flags & F_VERSION_FULL != 0 {
                Version::from_consensus(i32::from_le_bytes(r.array::<4>()?))
            } else if flags & F_VERSION_ROLLED != 0 {
                let rolled = u32::from(r.u16()?) << 13;
                let base = (prev.version.to_consensus() as u32) & !VERSION_ROLL_MASK;
                Version::from_consensus((base | rolled) as i32)
            } else {
                prev.version
            };
            let merkle_root = TxMerkleNode::from_byte_array(r.array::<32>()?);
            let time = if flags & F_TIME_ABS != 0 {
                r.u32()?
            } else {
                let delta = i16::from_le_bytes(r.array::<2>()?);
                u32::try_from(
                    i64::from(prev.time)
                        .checked_add(i64::from(delta))
                        .unwrap_or(-1),
                )
                .map_err(|_| BatchError::TimeOutOfRange { index })?
            };
            let bits = if flags & F_BITS != 0 {
                CompactTarget::from_consensus(r.u32()?)
            } else {
                prev.bits
            };
            let nonce = r.u32()?;
            let header = Header {
                version,
                prev_blockhash: prev_hash,
                merkle_root,
                time,
                bits,
                nonce,
            };
            prev_hash = header_hash(&header);
            headers.push(header);
            hashes.push(prev_hash);
        }
        let extra = bytes.len().saturating_sub(r.pos);
        if extra != 0 {
            return Err(BatchError::TrailingBytes { extra });
        }
        Ok(HeaderBatch {
            network,
            start_height,
            headers,
            hashes,
        })
    }
}

impl HeaderBatch {
    fn decode_raw(mut r: Reader<'_>, bytes: &[u8]) -> Result<HeaderBatch, BatchError> {
        let id = r.u8()?;
        let network = network_from_id(id).ok_or(BatchError::UnknownNetwork { id })?;
        let start_height = r.u32()?;
        let count = usize::from(r.u16()?);
        check_shape(start_height, count)?;
        let needed = r.pos.saturating_add(count.saturating_mul(80));
        if bytes.len() < needed {
            return Err(BatchError::Truncated {
                needed,
                got: bytes.len(),
            });
        }
        if bytes.len() > needed {
            return Err(BatchError::TrailingBytes {
                extra: bytes.len().saturating_sub(needed),
            });
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            headers.push(header_from_bytes(&r.array::<80>()?));
        }
        let hashes = headers.iter().map(header_hash).collect();
        Ok(HeaderBatch {
            network,
            start_height,
            headers,
            hashes,
        })
    }
}

fn check_shape(start_height: u32, count: usize) -> Result<(), BatchError> {
    if count == 0 || count > MAX_BATCH_HEADERS {
        return Err(BatchError::CountOutOfRange {
            count,
            max: MAX_BATCH_HEADERS,
        });
    }
    if start_height == 0 {
        return Err(BatchError::ZeroStartHeight);
    }
    let extra = u32::try_from(count.saturating_sub(1)).map_err(|_| BatchError::HeightOverflow {
        start: start_height,
        count,
    })?;
    start_height
        .checked_add(extra)
        .ok_or(BatchError::HeightOverflow {
            start: start_height,
            count,
        })?;
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let end = self.pos.checked_add(N).ok_or(BatchError::Truncated {
            needed: usize::MAX,
            got: self.buf.len(),
        })?;
        let s = self.buf.get(self.pos..end).ok_or(BatchError::Truncated {
            needed: end,
            got: self.buf.len(),
        })?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        self.pos = end;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, BatchError> {
        Ok(u8::from_le_bytes(self.array::<1>()?))
    }
    fn u16(&mut self) -> Result<u16, BatchError> {
        Ok(u16::from_le_bytes(self.array::<2>()?))
    }
    fn u32(&mut self) -> Result<u32, BatchError> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }
}
