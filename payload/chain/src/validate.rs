//! Contextual validation of one Bitcoin block header after another.
//!
//! Owns: the consensus rules a header-only node can check, in Bitcoin Core's
//! semantics (`CheckProofOfWorkImpl`, `GetNextWorkRequired`,
//! `CalculateNextWorkRequired`, `ContextualCheckBlockHeader`): parent link,
//! required nBits (2016-block retarget with the 4x clamp and Core's
//! off-by-one of timing the period from its first block; testnet 20-minute
//! minimum-difficulty rule; testnet4 BIP94), median-time-past, the 2-hour
//! future limit against a clock *passed in*, BIP34/66/65 version floors,
//! proof of work against the target in nBits and against `powLimit`, and
//! cumulative chain work with checked arithmetic.
//!
//! [`HeaderContext`] is the rolling state needed to validate the next header
//! (tip, its chain work, the last 11 timestamps and the first header of the
//! tip's difficulty period). It is exactly what a
//! [`Checkpoint`](crate::checkpoint::Checkpoint) records.
//!
//! Must never: read a clock, do I/O, allocate per header, panic or wrap on
//! any input. Every error names the height at which it occurred.
//!
//! Check order: cheap contextual checks come before the double-SHA256 proof
//! of work, so a header with (say) a timestamp below the median is reported
//! as such rather than as "high hash". Bitcoin Core checks PoW first; the
//! accept/reject decision is identical, only the reported reason differs.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::block::Header;
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{BlockHash, CompactTarget, Target, Work};

use crate::params::{ChainParams, MAX_FUTURE_BLOCK_TIME, MAX_TIMEWARP, MEDIAN_TIME_SPAN};
use crate::u256::U256;

/// A header failed a consensus rule. Every variant carries the height of the
/// offending header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The header does not build on the block before it.
    #[error("header {height}: previous-block hash {got} does not match our block {expected}")]
    PrevHashMismatch {
        /// Height of the offending header.
        height: u32,
        /// Hash of our block at `height - 1`.
        expected: BlockHash,
        /// The header's `prev_blockhash`.
        got: BlockHash,
    },
    /// nBits differs from what the difficulty rules require.
    #[error("header {height}: nbits {got:#010x} but the difficulty rules require {expected:#010x}")]
    BadDifficultyBits {
        /// Height of the offending header.
        height: u32,
        /// Required nBits.
        expected: u32,
        /// nBits in the header.
        got: u32,
    },
    /// Timestamp not above the median of the previous 11 blocks.
    #[error("header {height}: time {time} is not after the median time past {median}")]
    TimeNotAfterMedian {
        /// Height of the offending header.
        height: u32,
        /// Header time.
        time: u32,
        /// Median time past of its parent.
        median: u32,
    },
    /// BIP94: the first block of a period is too early relative to its parent.
    #[error("header {height}: time {time} is before {min} (bip94 timewarp rule)")]
    Timewarp {
        /// Height of the offending header.
        height: u32,
        /// Header time.
        time: u32,
        /// Parent time minus 600 s.
        min: u32,
    },
    /// Timestamp more than two hours ahead of the node clock.
    #[error("header {height}: time {time} is more than 2 h ahead of the node clock (limit {max})")]
    TimeTooFarInFuture {
        /// Height of the offending header.
        height: u32,
        /// Header time.
        time: u32,
        /// Node clock + 7200 s.
        max: u64,
    },
    /// Block version below the BIP34/66/65 floor at this height.
    #[error("header {height}: version {version} is below the minimum {min} at this height")]
    VersionTooOld {
        /// Height of the offending header.
        height: u32,
        /// Header version.
        version: i32,
        /// Minimum version.
        min: i32,
    },
    /// nBits encodes a negative, zero or overflowing target.
    #[error("header {height}: nbits {bits:#010x} encodes no valid target")]
    InvalidBits {
        /// Height of the offending header.
        height: u32,
        /// nBits value.
        bits: u32,
    },
    /// nBits encodes a target easier than the network's proof-of-work limit.
    #[error("header {height}: nbits {bits:#010x} is above the proof-of-work limit")]
    TargetAboveLimit {
        /// Height of the offending header.
        height: u32,
        /// nBits value.
        bits: u32,
    },
    /// The header hash is above the target encoded in its nBits.
    #[error("header {height}: hash {hash} does not meet target of nbits {bits:#010x}")]
    InsufficientProofOfWork {
        /// Height of the offending header.
        height: u32,
        /// Header hash.
        hash: BlockHash,
        /// nBits value.
        bits: u32,
    },
    /// Height would exceed `u32::MAX`.
    #[error("header {height}: height overflow")]
    HeightOverflow {
        /// Height of the parent.
        height: u32,
    },
    /// Cumulative chain work would exceed 2^256 - 1.
    #[error("header {height}: cumulative chain work overflow")]
    ChainWorkOverflow {
        /// Height of the offending header.
        height: u32,
    },
}

impl ValidationError {
    /// Stable reason code reported to the ground (range 0x0301..=0x031F).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::PrevHashMismatch { .. } => 0x0301,
            Self::BadDifficultyBits { .. } => 0x0302,
            Self::TimeNotAfterMedian { .. } => 0x0303,
            Self::Timewarp { .. } => 0x0304,
            Self::TimeTooFarInFuture { .. } => 0x0305,
            Self::VersionTooOld { .. } => 0x0306,
            Self::InvalidBits { .. } => 0x0307,
            Self::TargetAboveLimit { .. } => 0x0308,
            Self::InsufficientProofOfWork { .. } => 0x0309,
            Self::HeightOverflow { .. } => 0x030A,
            Self::ChainWorkOverflow { .. } => 0x030B,
        }
    }

    /// Height of the header that failed.
    #[must_use]
    pub fn height(&self) -> u32 {
        match self {
            Self::PrevHashMismatch { height, .. }
            | Self::BadDifficultyBits { height, .. }
            | Self::TimeNotAfterMedian { height, .. }
            | Self::Timewarp { height, .. }
            | Self::TimeTooFarInFuture { height, .. }
            | Self::VersionTooOld { height, .. }
            | Self::InvalidBits { height, .. }
            | Self::TargetAboveLimit { height, .. }
            | Self::InsufficientProofOfWork { height, .. }
            | Self::HeightOverflow { height }
            | Self::ChainWorkOverflow { height } => *height,
        }
    }
}

/// The 80-byte consensus serialization of a header.
#[must_use]
pub fn header_bytes(h: &Header) -> [u8; 80] {
    let mut buf = [0u8; 80];
    let parts: [&[u8]; 6] = [
        &h.version.to_consensus().to_le_bytes(),
        h.prev_blockhash.as_byte_array(),
        h.merkle_root.as_byte_array(),
        &h.time.to_le_bytes(),
        &h.bits.to_consensus().to_le_bytes(),
        &h.nonce.to_le_bytes(),
    ];
    let mut pos = 0usize;
    for part in parts {
        let end = pos.saturating_add(part.len());
        if let Some(dst) = buf.get_mut(pos..end) {
            dst.copy_from_slice(part);
        }
        pos = end;
    }
    buf
}

/// Block hash (double SHA-256 of the 80-byte header).
#[must_use]
pub fn header_hash(h: &Header) -> BlockHash {
    BlockHash::from_raw_hash(sha256d::Hash::hash(&header_bytes(h)))
}

/// Why a compact nBits value encodes no usable target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompactError {
    Negative,
    Overflow,
    Zero,
}

/// `arith_uint256::SetCompact` with Core's negative/overflow flags; zero is
/// also refused (CheckProofOfWork refuses it).
pub(crate) fn decode_compact(bits: u32) -> Result<U256, CompactError> {
    let size = bits >> 24;
    let mut word = bits & 0x007f_ffff;
    if size <= 3 {
        word >>= 3u32.saturating_sub(size).saturating_mul(8);
    }
    if word != 0 && bits & 0x0080_0000 != 0 {
        return Err(CompactError::Negative);
    }
    if word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32)) {
        return Err(CompactError::Overflow);
    }
    let v = if size <= 3 {
        U256::from_u64(u64::from(word))
    } else {
        // size <= 34 here unless word == 0 (then the value is zero anyway).
        U256::from_u64(u64::from(word)).shl_bytes(size.saturating_sub(3))
    };
    if v.is_zero() {
        return Err(CompactError::Zero);
    }
    Ok(v)
}

/// `arith_uint256::GetCompact` (never sets the sign bit).
pub(crate) fn encode_compact(v: U256) -> u32 {
    let mut size = v.bits().div_ceil(8);
    let mut compact: u64 = if size <= 3 {
        let shift = 3u32.saturating_sub(size).saturating_mul(8);
        v.low_u64().checked_shl(shift).unwrap_or(0)
    } else {
        v.shr_bytes(size.saturating_sub(3)).low_u64()
    };
    if compact & 0x0080_0000 != 0 {
        compact >>= 8;
        size = size.saturating_add(1);
    }
    // compact < 2^24 here, size <= 33.
    (compact as u32) | (size << 24)
}

/// Target encoded by `bits`, refusing negative, zero and overflowing values
/// (Core's `DeriveTarget` without the powLimit comparison).
///
/// # Errors
/// `InvalidBits` (with `height` as given) when the encoding is unusable.
pub fn target_from_bits(bits: CompactTarget, height: u32) -> Result<Target, ValidationError> {
    decode_compact(bits.to_consensus())
        .map(|v| Target::from_be_bytes(v.to_be_bytes()))
        .map_err(|_| ValidationError::InvalidBits {
            height,
            bits: bits.to_consensus(),
        })
}

/// Work of one block with the given target: 2^256 / (target + 1), as Core's
/// `GetBlockProof`.
pub(crate) fn work_of_target(t: U256) -> U256 {
    // ~t / (t + 1) + 1 == 2^256 / (t + 1); t + 1 cannot overflow for valid
    // targets (t <= powLimit < 2^255); saturate defensively.
    let Some(t1) = t.checked_add(U256::ONE) else {
        return U256::ONE;
    };
    t.not()
        .checked_div(t1)
        .and_then(|q| q.checked_add(U256::ONE))
        .unwrap_or(U256::ONE)
}

/// Work of a block with nBits `bits`, or `None` if the bits are invalid.
#[must_use]
pub fn work_from_bits(bits: CompactTarget) -> Option<Work> {
    decode_compact(bits.to_consensus())
        .ok()
        .map(|t| Work::from_be_bytes(work_of_target(t).to_be_bytes()))
}

/// Checked addition of two chain-work values.
#[must_use]
pub fn checked_add_work(a: Work, b: Work) -> Option<Work> {
    U256::from_be_bytes(a.to_be_bytes())
        .checked_add(U256::from_be_bytes(b.to_be_bytes()))
        .map(|v| Work::from_be_bytes(v.to_be_bytes()))
}

/// Checked subtraction of chain-work values (`a - b`), `None` if `b > a`.
#[must_use]
pub fn checked_sub_work(a: Work, b: Work) -> Option<Work> {
    U256::from_be_bytes(a.to_be_bytes())
        .checked_sub(U256::from_be_bytes(b.to_be_bytes()))
        .map(|v| Work::from_be_bytes(v.to_be_bytes()))
}

/// Context-free proof-of-work check (`CheckProofOfWorkImpl`): nBits is a
/// valid target not above `powLimit`, and `hash` meets it. Returns the
/// block's work.
///
/// # Errors
/// `InvalidBits`, `TargetAboveLimit` or `InsufficientProofOfWork`, each with
/// `height`.
pub fn check_proof_of_work(
    params: &ChainParams,
    hash: &BlockHash,
    bits: CompactTarget,
    height: u32,
) -> Result<Work, ValidationError> {
    let target = check_pow_u256(params, hash, bits.to_consensus(), height)?;
    Ok(Work::from_be_bytes(work_of_target(target).to_be_bytes()))
}

fn check_pow_u256(
    params: &ChainParams,
    hash: &BlockHash,
    bits: u32,
    height: u32,
) -> Result<U256, ValidationError> {
    let target = decode_compact(bits).map_err(|_| ValidationError::InvalidBits { height, bits })?;
    if target > U256::from_be_bytes(params.pow_limit_be) {
        return Err(ValidationError::TargetAboveLimit { height, bits });
    }
    let mut le = hash.to_byte_array();
    le.reverse();
    if U256::from_be_bytes(le) > target {
        return Err(ValidationError::InsufficientProofOfWork {
            height,
            hash: *hash,
            bits,
        });
    }
    Ok(target)
}

/// nBits of the first block of a new difficulty period
/// (`CalculateNextWorkRequired`): `first` is the first block of the period
/// that just ended, `last` its last block, `height` the new block's height
/// (for errors). Core's off-by-one is kept: the timespan runs from the
/// period's first block to its last, i.e. over interval - 1 block gaps.
/// Clamped to [timespan/4, timespan*4]; capped at powLimit. With BIP94 the
/// base target is the first block's nBits, otherwise the last block's.
///
/// # Errors
/// `InvalidBits` if the base nBits is unusable.
pub fn calculate_next_work_required(
    p: &ChainParams,
    first: &Header,
    last: &Header,
    height: u32,
) -> Result<CompactTarget, ValidationError> {
    if p.no_retargeting {
        return Ok(last.bits);
    }
    let base_bits = if p.enforce_bip94 {
        first.bits.to_consensus()
    } else {
        last.bits.to_consensus()
    };
    let timespan_target = i64::from(p.target_timespan);
    let actual = i64::from(last.time)
        .checked_sub(i64::from(first.time))
        .unwrap_or(0)
        .clamp(
            timespan_target.checked_div(4).unwrap_or(0),
            timespan_target.saturating_mul(4),
        );
    let old = decode_compact(base_bits).map_err(|_| ValidationError::InvalidBits {
        height,
        bits: base_bits,
    })?;
    let limit = U256::from_be_bytes(p.pow_limit_be);
    let new = u64::try_from(actual)
        .ok()
        .and_then(|a| old.checked_mul_u64(a))
        .and_then(|m| m.checked_div_u64(u64::from(p.target_timespan)))
        // Overflow only with a limit near 2^256 (regtest, which never
        // retargets): Core would wrap; clamping to the limit is the sane
        // reading and unreachable on supported networks.
        .unwrap_or(limit);
    let new = if new > limit { limit } else { new };
    Ok(CompactTarget::from_consensus(encode_compact(new)))
}

/// A header that passed [`HeaderContext::check`], with what was derived.
/// Only this crate builds it (`non_exhaustive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatedHeader {
    /// Height of the header.
    pub height: u32,
    /// Its block hash.
    pub hash: BlockHash,
    /// The header itself.
    pub header: Header,
    /// Work of this block alone.
    pub work: Work,
    /// Cumulative chain work including this block.
    pub chain_work: Work,
}

/// Rolling state needed to validate the header after the current tip.
///
/// Holds no more than a checkpoint record: tip header and hash, cumulative
/// work, the last (up to) 11 timestamps and the first header of the tip's
/// difficulty period (the retarget anchor). Memory is constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderContext {
    params: ChainParams,
    height: u32,
    hash: BlockHash,
    header: Header,
    chain_work: U256,
    /// Work of one block at the tip's nBits (cache: bits rarely change).
    tip_work: U256,
    /// Target of the tip's nBits, already checked against powLimit (cache;
    /// zero if the tip's bits are unusable, which disables the cache).
    tip_target: U256,
    times: [u32; MEDIAN_TIME_SPAN],
    times_len: usize,
    anchor: Header,
}

impl HeaderContext {
    /// Builds a context from its parts. `times` are the timestamps of the
    /// last `min(11, height + 1)` blocks ending with `header` (oldest first;
    /// extra leading entries are ignored); `anchor` is the header at
    /// `height - height % interval`. The caller (checkpoint or chain state)
    /// has checked their consistency.
    pub(crate) fn from_parts(
        params: ChainParams,
        height: u32,
        header: Header,
        hash: BlockHash,
        chain_work: Work,
        times: &[u32],
        anchor: Header,
    ) -> HeaderContext {
        let mut arr = [0u32; MEDIAN_TIME_SPAN];
        let skip = times.len().saturating_sub(MEDIAN_TIME_SPAN);
        let mut len = 0usize;
        for (dst, src) in arr.iter_mut().zip(times.iter().skip(skip)) {
            *dst = *src;
            len = len.saturating_add(1);
        }
        let tip_target = decode_compact(header.bits.to_consensus())
            .ok()
            .filter(|t| *t <= U256::from_be_bytes(params.pow_limit_be))
            .unwrap_or(U256::ZERO);
        let tip_work = if tip_target.is_zero() {
            U256::ZERO
        } else {
            work_of_target(tip_target)
        };
        HeaderContext {
            params,
            height,
            hash,
            header,
            chain_work: U256::from_be_bytes(chain_work.to_be_bytes()),
            tip_work,
            tip_target,
            times: arr,
            times_len: len,
            anchor,
        }
    }

    /// Network parameters in use.
    #[must_use]
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Height of the tip.
    #[must_use]
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Hash of the tip.
    #[must_use]
    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    /// The tip header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Cumulative chain work up to and including the tip.
    #[must_use]
    pub fn chain_work(&self) -> Work {
        Work::from_be_bytes(self.chain_work.to_be_bytes())
    }

    /// First header of the tip's difficulty period (retarget anchor).
    #[must_use]
    pub fn anchor(&self) -> &Header {
        &self.anchor
    }

    /// Timestamps of the last `min(11, height + 1)` blocks, oldest first.
    #[must_use]
    pub fn timestamps(&self) -> &[u32] {
        self.times.get(..self.times_len).unwrap_or(&[])
    }

    /// Median time past of the tip (`GetMedianTimePast`): the median of the
    /// last 11 block times (fewer near genesis).
    #[must_use]
    pub fn median_time_past(&self) -> u32 {
        let mut sorted = self.times;
        let live = sorted.get_mut(..self.times_len).unwrap_or(&mut []);
        let mid = live.len() / 2;
        if live.is_empty() {
            return 0;
        }
        // Same element as sorting and taking [len / 2].
        *live.select_nth_unstable(mid).1
    }

    /// nBits required of the next header if it carries timestamp `time`
    /// (`GetNextWorkRequired`).
    ///
    /// # Errors
    /// `HeightOverflow` at the tip, or `InvalidBits` if the anchor or tip
    /// carry unusable nBits (only possible with a corrupt checkpoint).
    pub fn next_required_bits(&self, time: u32) -> Result<CompactTarget, ValidationError> {
        let height = self
            .height
            .checked_add(1)
            .ok_or(ValidationError::HeightOverflow {
                height: self.height,
            })?;
        self.required_bits(height, time)
            .map(CompactTarget::from_consensus)
    }

    fn required_bits(&self, height: u32, time: u32) -> Result<u32, ValidationError> {
        let p = &self.params;
        let tip_bits = self.header.bits.to_consensus();
        if height.checked_rem(p.interval).unwrap_or(0) != 0 {
            if p.allow_min_difficulty_blocks {
                // 20-minute rule: a block more than 2 * spacing after its parent
                // may be mined at minimum difficulty.
                let limit = u64::from(self.header.time)
                    .saturating_add(u64::from(p.target_spacing).saturating_mul(2));
                if u64::from(time) > limit {
                    return Ok(p.pow_limit_bits);
                }
                // Core walks back to the last block that is not a
                // minimum-difficulty block or to the period start. In a valid
                // chain every non-min-difficulty block of a period carries the
                // period's first nBits, so the walk always yields the anchor's
                // nBits; that is what we keep, in constant memory.
                return Ok(self.anchor.bits.to_consensus());
            }
            return Ok(tip_bits);
        }
        if p.no_retargeting {
            return Ok(tip_bits);
        }
        // Retarget. The anchor is the first block of the period that ends at
        // the tip (height - interval).
        calculate_next_work_required(p, &self.anchor, &self.header, height)
            .map(|c| c.to_consensus())
    }

    /// Validates `header` as the next block after the tip, with `now` the
    /// node clock in Unix seconds. Does not change the context.
    ///
    /// # Errors
    /// The first consensus rule the header breaks, at its height.
    pub fn check(&self, header: &Header, now: u64) -> Result<ValidatedHeader, ValidationError> {
        self.check_hashed(header, header_hash(header), now)
    }

    /// Validates `header` and, if valid, makes it the new tip.
    ///
    /// # Errors
    /// As [`HeaderContext::check`]; on error the context is unchanged.
    pub fn push(&mut self, header: &Header, now: u64) -> Result<ValidatedHeader, ValidationError> {
        let v = self.check(header, now)?;
        self.advance(&v);
        Ok(v)
    }

    /// As [`HeaderContext::push`] with the hash already computed.
    pub(crate) fn push_hashed(
        &mut self,
        header: &Header,
        hash: BlockHash,
        now: u64,
    ) -> Result<ValidatedHeader, ValidationError> {
        let v = self.check_hashed(header, hash, now)?;
        self.advance(&v);
        Ok(v)
    }

    pub(crate) fn check_hashed(
        &self,
        header: &Header,
        hash: BlockHash,
        now: u64,
    ) -> Result<ValidatedHeader, ValidationError> {
        let p = &self.params;
        let height = self
            .height
            .checked_add(1)
            .ok_or(ValidationError::HeightOverflow {
                height: self.height,
            })?;

        if header.prev_blockhash != self.hash {
            return Err(ValidationError::PrevHashMismatch {
                height,
                expected: self.hash,
                got: header.prev_blockhash,
            });
        }

        let bits = header.bits.to_consensus();
        let required = self.required_bits(height, header.time)?;
        if bits != required {
            return Err(ValidationError::BadDifficultyBits {
                height,
                expected: required,
                got: bits,
            });
        }

        let median = self.median_time_past();
        if header.time <= median {
            return Err(ValidationError::TimeNotAfterMedian {
                height,
                time: header.time,
                median,
            });
        }

        if p.enforce_bip94 && height.checked_rem(p.interval).unwrap_or(0) == 0 {
            let min = self.header.time.saturating_sub(MAX_TIMEWARP);
            if header.time < min {
                return Err(ValidationError::Timewarp {
                    height,
                    time: header.time,
                    min,
                });
            }
        }

        let max = now.saturating_add(u64::from(MAX_FUTURE_BLOCK_TIME));
        if u64::from(header.time) > max {
            return Err(ValidationError::TimeTooFarInFuture {
                height,
                time: header.time,
                max,
            });
        }

        let version = header.version.to_consensus();
        let min_version = p.min_version_at(height);
        if version < min_version {
            return Err(ValidationError::VersionTooOld {
                height,
                version,
                min: min_version,
            });
        }

        let work = if bits == self.header.bits.to_consensus() && !self.tip_target.is_zero() {
            // Same nBits as the tip: target and work already derived and
            // range-checked; only the hash comparison remains.
            let mut le = hash.to_byte_array();
            le.reverse();
            if U256::from_be_bytes(le) > self.tip_target {
                return Err(ValidationError::InsufficientProofOfWork { height, hash, bits });
            }
            self.tip_work
        } else {
            work_of_target(check_pow_u256(p, &hash, bits, height)?)
        };
        let chain_work = self
            .chain_work
            .checked_add(work)
            .ok_or(ValidationError::ChainWorkOverflow { height })?;
        Ok(ValidatedHeader {
            height,
            hash,
            header: *header,
            work: Work::from_be_bytes(work.to_be_bytes()),
            chain_work: Work::from_be_bytes(chain_work.to_be_bytes()),
        })
    }

    /// Makes a header produced by [`HeaderContext::check`] on this context
    /// the new tip. A header validated against another context is ignored
    /// (returns `false`).
    pub fn advance(&mut self, v: &ValidatedHeader) -> bool {
        if Some(v.height) != self.height.checked_add(1) || v.header.prev_blockhash != self.hash {
            return false;
        }
        self.height = v.height;
        self.hash = v.hash;
        if v.header.bits != self.header.bits || self.tip_target.is_zero() {
            self.tip_work = U256::from_be_bytes(v.work.to_be_bytes());
            self.tip_target = decode_compact(v.header.bits.to_consensus()).unwrap_or(U256::ZERO);
        }
        self.header = v.header;
        self.chain_work = U256::from_be_bytes(v.chain_work.to_be_bytes());
        if self.times_len < MEDIAN_TIME_SPAN {
            if let Some(slot) = self.times.get_mut(self.times_len) {
                *slot = v.header.time;
            }
            self.times_len = self.times_len.saturating_add(1);
        } else {
            self.times.copy_within(1.., 0);
            if let Some(last) = self.times.last_mut() {
                *last = v.header.time;
            }
        }
        if v.height.checked_rem(self.params.interval).unwrap_or(1) == 0 {
            self.anchor = v.header;
        }
        true
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "test arithmetic on small known values"
)]
mod tests {
    use super::*;
    use bitcoin::Network;

    #[test]
    fn compact_matches_core_vectors() {
        // Vectors from Bitcoin Core arith_uint256_tests (SetCompact/GetCompact).
        assert_eq!(decode_compact(0), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0012_3456), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0100_3456), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0200_0056), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0300_0000), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0400_0000), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0092_3456), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0180_3456), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0280_0056), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0380_0000), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0480_0000), Err(CompactError::Zero));
        assert_eq!(decode_compact(0x0112_3456).map(|v| v.low_u64()), Ok(0x12));
        assert_eq!(encode_compact(U256::from_u64(0x12)), 0x0112_0000);
        assert_eq!(decode_compact(0x0200_8000).map(|v| v.low_u64()), Ok(0x80));
        assert_eq!(encode_compact(U256::from_u64(0x80)), 0x0200_8000);
        assert_eq!(decode_compact(0x0112_3456).map(|v| v.low_u64()), Ok(0x12));
        assert_eq!(decode_compact(0x0212_3456).map(|v| v.low_u64()), Ok(0x1234));
        assert_eq!(encode_compact(U256::from_u64(0x1234)), 0x0212_3400);
        assert_eq!(
            decode_compact(0x0312_3456).map(|v| v.low_u64()),
            Ok(0x12_3456)
        );
        assert_eq!(encode_compact(U256::from_u64(0x12_3456)), 0x0312_3456);
        assert_eq!(
            decode_compact(0x0412_3456).map(|v| v.low_u64()),
            Ok(0x1234_5600)
        );
        assert_eq!(encode_compact(U256::from_u64(0x1234_5600)), 0x0412_3456);
        assert_eq!(decode_compact(0x0492_3456), Err(CompactError::Negative));
        assert_eq!(decode_compact(0x0180_3456), Err(CompactError::Zero));
        assert_eq!(
            decode_compact(0x0500_9234).map(|v| v.low_u64()),
            Ok(0x9234_0000)
        );
        assert_eq!(encode_compact(U256::from_u64(0x9234_0000)), 0x0500_9234);
        assert_eq!(
            decode_compact(0x2012_3456).map(|v| v.to_be_bytes()[0..3].to_vec()),
            Ok(vec![0x12, 0x34, 0x56])
        );
        assert_eq!(decode_compact(0xff12_3456), Err(CompactError::Overflow));
        assert!(decode_compact(0x2300_ffff).is_err());
        assert_eq!(decode_compact(0x2200_ffff), Err(CompactError::Overflow));
        assert!(decode_compact(0x2200_00ff).is_ok());
        assert_eq!(decode_compact(0x2201_ffff), Err(CompactError::Overflow));
        assert!(decode_compact(0x2100_ffff).is_ok());
        assert_eq!(decode_compact(0x2101_0000), Err(CompactError::Overflow));
    }

    #[test]
    fn genesis_work_is_core_value() {
        let w = work_from_bits(CompactTarget::from_consensus(0x1d00_ffff)).unwrap();
        assert_eq!(
            w,
            Work::from_be_bytes({
                let mut b = [0u8; 32];
                b[27..].copy_from_slice(&[0x01, 0x00, 0x01, 0x00, 0x01]);
                b
            })
        );
    }

    fn hdr(time: u32, bits: u32, version: i32) -> Header {
        Header {
            version: bitcoin::block::Version::from_consensus(version),
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: bitcoin::TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        }
    }

    /// Context at `height` whose tip is `tip`, period anchor `anchor`, and
    /// 11 timestamps ending at the tip, 600 s apart.
    fn ctx(p: ChainParams, height: u32, tip: Header, anchor: Header) -> HeaderContext {
        let times: Vec<u32> = (0..11u32).map(|i| tip.time - 600 * (10 - i)).collect();
        HeaderContext::from_parts(
            p,
            height,
            tip,
            header_hash(&tip),
            Work::from_be_bytes([0; 32]),
            &times,
            anchor,
        )
    }

    fn next(c: &HeaderContext, time: u32, bits: u32, version: i32) -> Header {
        Header {
            prev_blockhash: c.hash(),
            ..hdr(time, bits, version)
        }
    }

    const REAL: u32 = 0x1c0f_ffff;

    #[test]
    fn testnet4_twenty_minute_rule() {
        let p = ChainParams::TESTNET4;
        let anchor = hdr(1_000_000, REAL, 4);
        let tip = hdr(1_100_000, REAL, 4);
        let c = ctx(p, 100, tip, anchor);
        assert_eq!(
            c.next_required_bits(tip.time + 1200)
                .unwrap()
                .to_consensus(),
            REAL
        );
        assert_eq!(
            c.next_required_bits(tip.time + 1201)
                .unwrap()
                .to_consensus(),
            0x1d00_ffff
        );
        // After a min-difficulty block, a timely block needs the period's
        // real difficulty again (Core's walk back).
        let min_tip = hdr(1_100_000, 0x1d00_ffff, 4);
        let c = ctx(p, 101, min_tip, anchor);
        assert_eq!(
            c.next_required_bits(min_tip.time + 600)
                .unwrap()
                .to_consensus(),
            REAL
        );
        // A header claiming min difficulty too early is refused for its bits.
        let h = next(&c, min_tip.time + 600, 0x1d00_ffff, 4);
        assert!(matches!(
            c.check(&h, u64::MAX),
            Err(ValidationError::BadDifficultyBits {
                height: 102,
                expected: REAL,
                ..
            })
        ));
        // Mainnet has no such rule.
        let c = ctx(ChainParams::MAINNET, 100, tip, anchor);
        assert_eq!(
            c.next_required_bits(tip.time + 100_000)
                .unwrap()
                .to_consensus(),
            REAL
        );
    }

    #[test]
    fn bip94_timewarp_on_first_block_of_period() {
        let p = ChainParams::TESTNET4;
        let anchor = hdr(1_000_000, REAL, 4);
        let tip = hdr(1_000_000 + 2015 * 600, REAL, 4);
        let c = ctx(p, 2015, tip, anchor);
        let bits = c.next_required_bits(tip.time - 601).unwrap().to_consensus();
        // 601 s before the parent: refused by BIP94 (the MTP is lower still).
        let h = next(&c, tip.time - 601, bits, 4);
        assert_eq!(
            c.check(&h, u64::MAX),
            Err(ValidationError::Timewarp {
                height: 2016,
                time: tip.time - 601,
                min: tip.time - 600
            })
        );
        // 600 s before: passes every contextual rule, fails only the hash.
        let h = next(&c, tip.time - 600, bits, 4);
        assert_eq!(c.check(&h, u64::MAX).unwrap_err().code(), 0x0309);
        // Not a period start: no timewarp rule.
        let c2 = ctx(p, 2000, tip, anchor);
        let h = next(&c2, tip.time - 601, REAL, 4);
        assert_eq!(c2.check(&h, u64::MAX).unwrap_err().code(), 0x0309);
        // Mainnet: no BIP94.
        let c3 = ctx(ChainParams::MAINNET, 2015, tip, anchor);
        let bits = c3.next_required_bits(0).unwrap().to_consensus();
        let h = next(&c3, tip.time - 601, bits, 4);
        assert_eq!(c3.check(&h, u64::MAX).unwrap_err().code(), 0x0309);
    }

    #[test]
    fn bip94_retarget_uses_first_block_bits() {
        // Last block of the period at minimum difficulty (20-minute rule).
        let first = hdr(1_000_000, REAL, 4);
        let last = hdr(1_000_000 + 2015 * 600, 0x1d00_ffff, 4);
        let t4 = calculate_next_work_required(&ChainParams::TESTNET4, &first, &last, 2016).unwrap();
        let t3 = calculate_next_work_required(&ChainParams::TESTNET3, &first, &last, 2016).unwrap();
        // testnet4 keeps the real difficulty; testnet3 retargets from the
        // min-difficulty block (its well-known reset bug).
        let scaled = |bits: u32| {
            let t = decode_compact(bits)
                .unwrap()
                .checked_mul_u64(2015 * 600)
                .unwrap()
                .checked_div_u64(1_209_600)
                .unwrap();
            encode_compact(t)
        };
        assert_eq!(t4.to_consensus(), scaled(REAL));
        assert_eq!(t3.to_consensus(), scaled(0x1d00_ffff));
        // Regtest never retargets.
        let r = calculate_next_work_required(&ChainParams::REGTEST, &first, &last, 144).unwrap();
        assert_eq!(r, last.bits);
    }

    #[test]
    fn retarget_clamps_and_caps() {
        let p = ChainParams::MAINNET;
        let first = hdr(1_000_000, 0x1b00_ffff, 1);
        // Very fast period: clamp at 1/4 timespan -> target / 4.
        let last = hdr(1_000_001, 0x1b00_ffff, 1);
        let fast = calculate_next_work_required(&p, &first, &last, 2016)
            .unwrap()
            .to_consensus();
        assert_eq!(
            fast,
            encode_compact(
                decode_compact(0x1b00_ffff)
                    .unwrap()
                    .checked_div_u64(4)
                    .unwrap()
            )
        );
        // Timestamps going backwards (negative timespan) clamp the same way.
        let back = hdr(900_000, 0x1b00_ffff, 1);
        assert_eq!(
            calculate_next_work_required(&p, &first, &back, 2016)
                .unwrap()
                .to_consensus(),
            fast
        );
        // Very slow period at minimum difficulty: capped at powLimit.
        let first = hdr(1_000_000, 0x1d00_ffff, 1);
        let last = hdr(1_000_000 + 100_000_000, 0x1d00_ffff, 1);
        assert_eq!(
            calculate_next_work_required(&p, &first, &last, 2016)
                .unwrap()
                .to_consensus(),
            0x1d00_ffff
        );
    }

    #[test]
    fn version_floors_enforced_before_pow() {
        let p = ChainParams::MAINNET;
        let anchor = hdr(1_000_000, REAL, 1);
        let tip = hdr(1_100_000, REAL, 1);
        for (height, version, rejected) in [
            (227_930u32, 1i32, false),
            (227_931, 1, true),
            (227_931, 2, false),
            (363_725, 2, true),
            (388_381, 3, true),
            (388_381, 4, false),
        ] {
            let c = ctx(p, height - 1, tip, anchor);
            let h = next(&c, tip.time + 600, REAL, version);
            let e = c.check(&h, u64::MAX).unwrap_err();
            if rejected {
                assert_eq!(e.code(), 0x0306, "{height} v{version}");
            } else {
                assert_eq!(e.code(), 0x0309, "{height} v{version}");
            }
        }
    }

    #[test]
    fn pow_range_checks() {
        let p = ChainParams::MAINNET;
        let hash = BlockHash::all_zeros();
        assert_eq!(
            check_proof_of_work(&p, &hash, CompactTarget::from_consensus(0x1d01_0000), 5)
                .unwrap_err()
                .code(),
            0x0308
        );
        assert_eq!(
            check_proof_of_work(&p, &hash, CompactTarget::from_consensus(0x0480_0001), 5)
                .unwrap_err()
                .code(),
            0x0307
        );
        assert_eq!(
            check_proof_of_work(&p, &hash, CompactTarget::from_consensus(0), 5)
                .unwrap_err()
                .code(),
            0x0307
        );
        assert!(
            check_proof_of_work(&p, &hash, CompactTarget::from_consensus(0x1d00_ffff), 5).is_ok()
        );
        let max = BlockHash::from_byte_array([0xff; 32]);
        assert_eq!(
            check_proof_of_work(&p, &max, CompactTarget::from_consensus(0x1d00_ffff), 5)
                .unwrap_err()
                .code(),
            0x0309
        );
    }

    #[test]
    fn chain_work_overflow_is_an_error() {
        let p = ChainParams::REGTEST;
        let g = bitcoin::constants::genesis_block(Network::Regtest).header;
        let times = [g.time];
        let c = HeaderContext::from_parts(
            p,
            0,
            g,
            header_hash(&g),
            Work::from_be_bytes([0xff; 32]),
            &times,
            g,
        );
        let mut h = next(&c, g.time + 600, 0x207f_ffff, 4);
        let target = target_from_bits(h.bits, 1).unwrap();
        while !target.is_met_by(header_hash(&h)) {
            h.nonce += 1;
        }
        assert_eq!(
            c.check(&h, u64::MAX),
            Err(ValidationError::ChainWorkOverflow { height: 1 })
        );
    }
}
