//! Chain status for the `chain.status` telemetry and its stable encoding.
//!
//! Owns: [`ChainStatus`] and its fixed-length byte layout:
//!
//! ```text
//! off len field
//!   0   1 format (=1)
//!   1   1 network id
//!   2   4 tip height            u32 LE
//!   6  32 tip hash              internal byte order
//!  38  32 tip chain work        big-endian
//!  70   4 tip median time past  u32 LE
//!  74   4 window                u32 LE
//!  78   4 lowest kept height    u32 LE
//!  82   1 flags: 0x01 last reorg present, 0x02 deep reorg refused
//!  83   4 last reorg fork height   (0 if absent)
//!  87   4 last reorg depth         (0 if absent)
//!  91   4 last reorg new tip height (0 if absent)
//!  95   4 deep reorg: lowest kept  (0 if absent)
//!  99   4 deep reorg: branch start (0 if absent)
//! 103   4 deep reorg: branch end   (0 if absent)
//! 107     end
//! ```
//!
//! Must never: panic on any input; the encoding is canonical (absent
//! records are all-zero, unknown flags are refused), so equal statuses have
//! equal bytes.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network, Work};

use crate::params::{network_from_id, network_id};
use crate::store::{DeepReorgInfo, ReorgInfo};

/// Status format version.
pub const STATUS_FORMAT: u8 = 1;
/// Encoded length of a status.
pub const STATUS_LEN: usize = 107;

const FLAG_REORG: u8 = 0x01;
const FLAG_DEEP: u8 = 0x02;

/// A status record failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Wrong length.
    #[error("chain status must be {expected} bytes, got {got}")]
    WrongLength {
        /// Required length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// Unknown format version.
    #[error("chain status format {version} is not supported")]
    UnsupportedFormat {
        /// Format byte found.
        version: u8,
    },
    /// Unknown network identifier.
    #[error("chain status names unknown network id {id}")]
    UnknownNetwork {
        /// Identifier found.
        id: u8,
    },
    /// Unknown flag bits.
    #[error("chain status has unknown flags {flags:#04x}")]
    InvalidFlags {
        /// Flag byte found.
        flags: u8,
    },
    /// An absent record has non-zero bytes.
    #[error("chain status is not canonical: absent record at offset {offset} is not zero")]
    NonCanonical {
        /// Offset of the record.
        offset: usize,
    },
}

impl StatusError {
    /// Stable reason code (range 0x03A0..=0x03AF).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::WrongLength { .. } => 0x03A0,
            Self::UnsupportedFormat { .. } => 0x03A1,
            Self::UnknownNetwork { .. } => 0x03A2,
            Self::InvalidFlags { .. } => 0x03A3,
            Self::NonCanonical { .. } => 0x03A4,
        }
    }
}

/// What the ground sees of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStatus {
    /// Network followed.
    pub network: Network,
    /// Tip height.
    pub tip_height: u32,
    /// Tip hash.
    pub tip_hash: BlockHash,
    /// Cumulative work at the tip.
    pub tip_chain_work: Work,
    /// Median time past at the tip (clock cross-check input).
    pub tip_median_time_past: u32,
    /// Configured window.
    pub window: u32,
    /// Lowest kept height.
    pub lowest_height: u32,
    /// Last reorg followed.
    pub last_reorg: Option<ReorgInfo>,
    /// Deep reorg refused (housekeeping flag).
    pub deep_reorg_refused: Option<DeepReorgInfo>,
}

impl ChainStatus {
    /// Fixed-length encoding (see the module doc).
    #[must_use]
    pub fn encode(&self) -> [u8; STATUS_LEN] {
        let mut out = [0u8; STATUS_LEN];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.put(&[STATUS_FORMAT, network_id(self.network)]);
        w.put(&self.tip_height.to_le_bytes());
        w.put(self.tip_hash.as_byte_array());
        w.put(&self.tip_chain_work.to_be_bytes());
        w.put(&self.tip_median_time_past.to_le_bytes());
        w.put(&self.window.to_le_bytes());
        w.put(&self.lowest_height.to_le_bytes());
        let mut flags = 0u8;
        if self.last_reorg.is_some() {
            flags |= FLAG_REORG;
        }
        if self.deep_reorg_refused.is_some() {
            flags |= FLAG_DEEP;
        }
        w.put(&[flags]);
        let r = self.last_reorg.unwrap_or(ReorgInfo {
            fork_height: 0,
            depth: 0,
            new_tip_height: 0,
        });
        w.put(&r.fork_height.to_le_bytes());
        w.put(&r.depth.to_le_bytes());
        w.put(&r.new_tip_height.to_le_bytes());
        let d = self.deep_reorg_refused.unwrap_or(DeepReorgInfo {
            lowest_kept: 0,
            branch_start: 0,
            branch_end: 0,
        });
        w.put(&d.lowest_kept.to_le_bytes());
        w.put(&d.branch_start.to_le_bytes());
        w.put(&d.branch_end.to_le_bytes());
        out
    }

    /// Decodes the fixed-length encoding. Never panics.
    ///
    /// # Errors
    /// Any [`StatusError`].
    pub fn decode(bytes: &[u8]) -> Result<ChainStatus, StatusError> {
        let buf: &[u8; STATUS_LEN] = bytes.try_into().map_err(|_| StatusError::WrongLength {
            expected: STATUS_LEN,
            got: bytes.len(),
        })?;
        let mut r = Reader { buf, pos: 0 };
        let format = r.u8();
        if format != STATUS_FORMAT {
            return Err(StatusError::UnsupportedFormat { version: format });
        }
        let id = r.u8();
        let network = network_from_id(id).ok_or(StatusError::UnknownNetwork { id })?;
        let tip_height = r.u32();
        let tip_hash = BlockHash::from_byte_array(r.array::<32>());
        let tip_chain_work = Work::from_be_bytes(r.array::<32>());
        let tip_median_time_past = r.u32();
        let window = r.u32();
        let lowest_height = r.u32();
        let flags = r.u8();
        if flags & !(FLAG_REORG | FLAG_DEEP) != 0 {
            return Err(StatusError::InvalidFlags { flags });
        }
        let reorg_at = r.pos;
        let reorg = ReorgInfo {
            fork_height: r.u32(),
            depth: r.u32(),
            new_tip_height: r.u32(),
        };
        let deep_at = r.pos;
        let deep = DeepReorgInfo {
            lowest_kept: r.u32(),
            branch_start: r.u32(),
            branch_end: r.u32(),
        };
        let last_reorg = if flags & FLAG_REORG != 0 {
            Some(reorg)
        } else if reorg
            != (ReorgInfo {
                fork_height: 0,
                depth: 0,
                new_tip_height: 0,
            })
        {
            return Err(StatusError::NonCanonical { offset: reorg_at });
        } else {
            None
        };
        let deep_reorg_refused = if flags & FLAG_DEEP != 0 {
            Some(deep)
        } else if deep
            != (DeepReorgInfo {
                lowest_kept: 0,
                branch_start: 0,
                branch_end: 0,
            })
        {
            return Err(StatusError::NonCanonical { offset: deep_at });
        } else {
            None
        };
        Ok(ChainStatus {
            network,
            tip_height,
            tip_hash,
            tip_chain_work,
            tip_median_time_past,
            window,
            lowest_height,
            last_reorg,
            deep_reorg_refused,
        })
    }
}

struct Writer<'a> {
    buf: &'a mut [u8; STATUS_LEN],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, src: &[u8]) {
        for (d, s) in self.buf.iter_mut().skip(self.pos).zip(src) {
            *d = *s;
        }
        self.pos = self.pos.saturating_add(src.len());
    }
}

/// Reader over a buffer of exactly `STATUS_LEN` bytes: reads past the end
/// (impossible with the layout above) yield zeros instead of panicking.
struct Reader<'a> {
    buf: &'a [u8; STATUS_LEN],
    pos: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        for (d, s) in a.iter_mut().zip(self.buf.iter().skip(self.pos)) {
            *d = *s;
        }
        self.pos = self.pos.saturating_add(N);
        a
    }
    fn u8(&mut self) -> u8 {
        u8::from_le_bytes(self.array::<1>())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array::<4>())
    }
}
