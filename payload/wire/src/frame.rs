//! Serial framing: COBS (Consistent Overhead Byte Stuffing) with a CRC-32C
//! trailer and a zero byte before and after every frame.
//!
//! ```text
//! 0x00 | COBS( payload | CRC-32C(payload) as u32 LE ) | 0x00
//! ```
//!
//! The leading delimiter flushes whatever garbage a receiver holds, so a frame
//! that arrives intact is decoded even if the bytes before it were damaged.
//! The decoder is a push decoder: it takes bytes as they come from the UART
//! and yields frames or errors; "need more bytes" is a state, not an error.
//! It never holds more than [`MAX_ENCODED_FRAME`] bytes, whatever it is fed.
//!
//! This module owns framing only. It must never interpret payloads, allocate
//! without bound or panic on any input.

use crc::{CRC_32_ISCSI, Crc};

/// CRC-32C (Castagnoli, the iSCSI polynomial): better Hamming distance than
/// CRC-32/ISO-HDLC at our frame lengths.
pub const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// The frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// Largest payload a frame may carry. Larger application messages are split
/// by the services that need them (file transfer, header batches).
pub const MAX_PAYLOAD: usize = 2048;

/// Length of the CRC trailer.
pub const CRC_LEN: usize = 4;

/// Largest COBS-encoded frame body (without delimiters) for [`MAX_PAYLOAD`].
pub const MAX_ENCODED_FRAME: usize = cobs_max_len(MAX_PAYLOAD + CRC_LEN);

/// COBS adds one byte per started 254-byte block, plus one.
const fn cobs_max_len(source_len: usize) -> usize {
    source_len + source_len / 254 + 1
}

/// Errors of [`encode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The payload does not fit a frame.
    #[error("payload of {len} bytes exceeds the frame limit of {MAX_PAYLOAD}")]
    TooLarge {
        /// Payload length offered.
        len: usize,
    },
}

/// Encodes `payload` into a complete frame including both delimiters.
///
/// # Errors
/// [`EncodeError::TooLarge`] if `payload` is longer than [`MAX_PAYLOAD`].
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EncodeError::TooLarge { len: payload.len() });
    }
    let mut body = Vec::with_capacity(payload.len() + CRC_LEN);
    body.extend_from_slice(payload);
    body.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
    let mut out = vec![0u8; cobs_max_len(body.len()) + 2];
    // The buffer is sized by COBS's worst case, so encoding cannot overflow it.
    let used = cobs::encode(&body, out.get_mut(1..).unwrap_or_default());
    out.truncate(used + 1);
    out.push(DELIMITER);
    Ok(out)
}

/// Why a delimited byte run was not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The run was COBS-valid but its CRC-32C did not match.
    #[error("crc-32c mismatch")]
    Crc,
    /// The run was not valid COBS or too short to hold a CRC.
    #[error("invalid cobs encoding or truncated frame")]
    Malformed,
    /// The run exceeded the frame size bound and was discarded up to the next
    /// delimiter.
    #[error("frame exceeds {MAX_ENCODED_FRAME} encoded bytes")]
    Oversize,
}

/// What the decoder produced from the bytes pushed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A frame whose CRC verified; the payload without CRC.
    Frame(Vec<u8>),
    /// A delimited run that was not a frame; the decoder has resynchronised
    /// on the delimiter that ended it.
    Error(FrameError),
}

/// Counters of the decoder, as reported in housekeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames decoded with a good CRC.
    pub frames_ok: u64,
    /// Runs that were valid COBS but failed the CRC.
    pub crc_errors: u64,
    /// Runs that were not valid COBS or were truncated.
    pub malformed: u64,
    /// Runs discarded for exceeding the size bound.
    pub oversize: u64,
    /// Times the decoder dropped a run and resynchronised on a delimiter
    /// (the sum of the three error counters).
    pub resyncs: u64,
    /// Bytes received, delimiters included.
    pub bytes: u64,
}

/// Push decoder for the serial byte stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    discarding: bool,
    stats: DecoderStats,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder waiting for the first delimiter-terminated run.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_ENCODED_FRAME),
            discarding: false,
            stats: DecoderStats::default(),
        }
    }

    /// Counters since creation.
    #[must_use]
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Bytes held while waiting for a delimiter.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Drops a partial run (the device was reopened), keeping the counters.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// Feeds one byte; returns a result when the byte completes a run.
    pub fn push_byte(&mut self, byte: u8) -> Option<Decoded> {
        self.stats.bytes = self.stats.bytes.saturating_add(1);
        if byte != DELIMITER {
            if self.discarding {
                return None;
            }
            if self.buf.len() >= MAX_ENCODED_FRAME {
                self.buf.clear();
                self.discarding = true;
                return None;
            }
            self.buf.push(byte);
            return None;
        }
        if self.discarding {
            self.discarding = false;
            return Some(self.fail(FrameError::Oversize));
        }
        if self.buf.is_empty() {
            // Back-to-back delimiters (end of one frame, start of the next).
            return None;
        }
        let result = match cobs::decode_in_place(&mut self.buf) {
            Ok(len) if len >= CRC_LEN => {
                let (payload, crc) = self.buf.split_at(len - CRC_LEN);
                let crc = crc
                    .get(..CRC_LEN)
                    .and_then(|c| <[u8; 4]>::try_from(c).ok())
                    .map(u32::from_le_bytes);
                if crc == Some(CRC32C.checksum(payload)) {
                    self.stats.frames_ok = self.stats.frames_ok.saturating_add(1);
                    Decoded::Frame(payload.to_vec())
                } else {
                    self.fail(FrameError::Crc)
                }
            }
            _ => self.fail(FrameError::Malformed),
        };
        self.buf.clear();
        Some(result)
    }

    /// Feeds a chunk of bytes, calling `sink` for every completed run.
    pub fn push(&mut self, bytes: &[u8], mut sink: impl FnMut(Decoded)) {
        for &b in bytes {
            if let Some(d) = self.push_byte(b) {
                sink(d);
            }
        }
    }

    fn fail(&mut self, err: FrameError) -> Decoded {
        let counter = match err {
            FrameError::Crc => &mut self.stats.crc_errors,
            FrameError::Malformed => &mut self.stats.malformed,
            FrameError::Oversize => &mut self.stats.oversize,
        };
        *counter = counter.saturating_add(1);
        self.stats.resyncs = self.stats.resyncs.saturating_add(1);
        Decoded::Error(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<FrameError>, FrameDecoder) {
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut errors = Vec::new();
        dec.push(bytes, |d| match d {
            Decoded::Frame(f) => frames.push(f),
            Decoded::Error(e) => errors.push(e),
        });
        (frames, errors, dec)
    }

    #[test]
    fn empty_payload_round_trips() {
        let (frames, errors, _) = decode_all(&encode(&[]).unwrap());
        assert_eq!(frames, vec![Vec::<u8>::new()]);
        assert!(errors.is_empty());
    }

    #[test]
    fn oversize_payload_is_refused_by_encoder() {
        assert_eq!(
            encode(&vec![1u8; MAX_PAYLOAD + 1]),
            Err(EncodeError::TooLarge {
                len: MAX_PAYLOAD + 1
            })
        );
        assert!(encode(&vec![0u8; MAX_PAYLOAD]).is_ok());
    }

    #[test]
    fn single_bit_flip_is_a_crc_or_cobs_error_never_a_frame() {
        let frame = encode(b"hello spacecraft").unwrap();
        for i in 1..frame.len() - 1 {
            for bit in 0..8 {
                let mut damaged = frame.clone();
                damaged[i] ^= 1 << bit;
                let (frames, errors, _) = decode_all(&damaged);
                assert!(
                    frames.is_empty(),
                    "flip at byte {i} bit {bit} yielded a frame"
                );
                assert!(!errors.is_empty());
            }
        }
    }

    #[test]
    fn endless_garbage_is_bounded_and_then_resyncs() {
        let mut stream = vec![0xAAu8; MAX_ENCODED_FRAME * 5];
        stream.extend(encode(b"after the storm").unwrap());
        let (frames, errors, dec) = decode_all(&stream);
        assert_eq!(frames, vec![b"after the storm".to_vec()]);
        assert_eq!(errors, vec![FrameError::Oversize]);
        assert!(dec.pending() == 0);
        assert_eq!(dec.stats().resyncs, 1);
    }

    #[test]
    fn truncated_frame_then_good_frame() {
        let first = encode(b"first frame, cut short").unwrap();
        let mut stream = first[..first.len() / 2].to_vec();
        stream.extend(encode(b"second").unwrap());
        let (frames, errors, _) = decode_all(&stream);
        assert_eq!(frames, vec![b"second".to_vec()]);
        assert_eq!(errors.len(), 1);
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..10_000)) {
            let mut dec = FrameDecoder::new();
            for b in &bytes {
                let _ = dec.push_byte(*b);
                prop_assert!(dec.pending() <= MAX_ENCODED_FRAME);
            }
            let s = dec.stats();
            prop_assert_eq!(s.resyncs, s.crc_errors + s.malformed + s.oversize);
        }

        #[test]
        fn round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..8)) {
            let mut stream = Vec::new();
            for p in &payloads {
                stream.extend(encode(p).unwrap());
            }
            let (frames, errors, _) = decode_all(&stream);
            prop_assert!(errors.is_empty());
            prop_assert_eq!(frames, payloads);
        }

        #[test]
        fn resyncs_after_arbitrary_garbage(
            garbage in proptest::collection::vec(any::<u8>(), 0..3000),
            payload in proptest::collection::vec(any::<u8>(), 0..500),
        ) {
            let mut stream = garbage.clone();
            stream.extend(encode(&payload).unwrap());
            let (frames, _, _) = decode_all(&stream);
            // Garbage may by chance hold a valid frame; ours is always last.
            prop_assert_eq!(frames.last(), Some(&payload));
        }

        #[test]
        fn any_corruption_never_yields_a_wrong_frame(
            payload in proptest::collection::vec(any::<u8>(), 1..300),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        ) {
            let mut frame = encode(&payload).unwrap();
            let len = frame.len();
            for (idx, mask) in flips {
                let i = idx.index(len);
                frame[i] ^= mask;
            }
            let (frames, _, _) = decode_all(&frame);
            // A CRC-32C collision is possible in principle (2^-32); a
            // damaged frame decoding to a different payload would be one.
            for f in frames {
                prop_assert_eq!(&f, &payload);
            }
        }
    }
}
