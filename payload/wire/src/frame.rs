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

/// CRC-32C (Castagnoli, the iSCSI polynomial): better Hamming distance than
/// CRC-32/ISO-HDLC at our frame lengths, and computed by a CPU instruction on
/// both x86-64 (SSE 4.2) and the CM4's Cortex-A72 (ARMv8 CRC), which the
/// `crc32c` crate uses when present.
#[must_use]
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

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
    let mut owned = Vec::with_capacity(payload.len() + CRC_LEN);
    owned.extend_from_slice(payload);
    encode_vec(owned)
}

/// Like [`encode`], taking the payload by value so the CRC is appended in
/// place: the per-packet path (seal, then frame) makes no extra copy.
///
/// # Errors
/// [`EncodeError::TooLarge`] if `payload` is longer than [`MAX_PAYLOAD`].
pub fn encode_vec(mut payload: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EncodeError::TooLarge { len: payload.len() });
    }
    let crc = crc32c(&payload).to_le_bytes();
    payload.extend_from_slice(&crc);
    let mut out = Vec::with_capacity(cobs_max_len(payload.len()) + 2);
    out.push(DELIMITER);
    cobs_encode(&payload, &mut out);
    out.push(DELIMITER);
    Ok(out)
}

// COBS is hand-written here although the `cobs` crate exists: its encoder
// and decoder move one byte per call, and framing must cost a fraction of
// the AEAD on every packet (see benches/throughput.rs). Property tests check
// both directions against the `cobs` crate byte for byte.

/// COBS-encodes `src` (without delimiters), appending to `out`.
fn cobs_encode(src: &[u8], out: &mut Vec<u8>) {
    let mut rest = src;
    loop {
        let window = rest.get(..rest.len().min(254)).unwrap_or(rest);
        match memchr::memchr(0, window) {
            Some(n) => {
                // A block of n data bytes ended by a zero: code n + 1.
                out.push(n as u8 + 1);
                out.extend_from_slice(window.get(..n).unwrap_or_default());
                rest = rest.get(n + 1..).unwrap_or_default();
            }
            None if window.len() == 254 => {
                // A full block with no zero: code 0xFF, no implied zero.
                out.push(0xFF);
                out.extend_from_slice(window);
                rest = rest.get(254..).unwrap_or_default();
                if rest.is_empty() {
                    return;
                }
            }
            None => {
                out.push(window.len() as u8 + 1);
                out.extend_from_slice(window);
                return;
            }
        }
    }
}

/// Decodes a COBS block sequence in place; returns the decoded length, or
/// `None` if a code byte is zero or points past the end.
fn cobs_decode_in_place(buf: &mut [u8]) -> Option<usize> {
    // Every encoding has at least one code byte.
    if buf.is_empty() {
        return None;
    }
    let (mut read, mut write) = (0usize, 0usize);
    while read < buf.len() {
        let code = usize::from(*buf.get(read)?);
        if code == 0 {
            return None;
        }
        let start = read + 1;
        let end = read + code;
        if end > buf.len() {
            return None;
        }
        buf.copy_within(start..end, write);
        write += code - 1;
        read = end;
        if code < 0xFF && read < buf.len() {
            *buf.get_mut(write)? = 0;
            write += 1;
        }
    }
    Some(write)
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
        let result = match cobs_decode_in_place(&mut self.buf) {
            Some(len) if len >= CRC_LEN => {
                let (payload, crc) = self.buf.split_at(len - CRC_LEN);
                let crc = crc
                    .get(..CRC_LEN)
                    .and_then(|c| <[u8; 4]>::try_from(c).ok())
                    .map(u32::from_le_bytes);
                if crc == Some(crc32c(payload)) {
                    self.stats.frames_ok = self.stats.frames_ok.saturating_add(1);
                    let payload_len = payload.len();
                    // Hand the buffer itself over instead of copying it.
                    let mut frame =
                        std::mem::replace(&mut self.buf, Vec::with_capacity(MAX_ENCODED_FRAME));
                    frame.truncate(payload_len);
                    Decoded::Frame(frame)
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
    /// Equivalent to [`Self::push_byte`] on each byte, but copies runs
    /// between delimiters in bulk.
    pub fn push(&mut self, mut bytes: &[u8], mut sink: impl FnMut(Decoded)) {
        while !bytes.is_empty() {
            let run_len = memchr::memchr(DELIMITER, bytes).unwrap_or(bytes.len());
            let (run, rest) = bytes.split_at(run_len);
            self.stats.bytes = self.stats.bytes.saturating_add(run.len() as u64);
            if !self.discarding {
                let room = MAX_ENCODED_FRAME - self.buf.len();
                if run.len() > room {
                    self.buf.clear();
                    self.discarding = true;
                } else {
                    self.buf.extend_from_slice(run);
                }
            }
            match rest.split_first() {
                Some((&delimiter, tail)) => {
                    if let Some(d) = self.push_byte(delimiter) {
                        sink(d);
                    }
                    bytes = tail;
                }
                None => bytes = rest,
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
        fn cobs_matches_the_cobs_crate(data in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..1200)) {
            let mut ours = Vec::new();
            cobs_encode(&data, &mut ours);
            prop_assert_eq!(&ours, &cobs::encode_vec(&data));
            let mut buf = ours.clone();
            let n = cobs_decode_in_place(&mut buf);
            prop_assert_eq!(n.map(|n| buf[..n].to_vec()), Some(data));
        }

        #[test]
        fn cobs_decoder_agrees_with_the_crate_on_garbage(data in proptest::collection::vec(1u8..=255, 0..600)) {
            // Runs never contain zeros: the decoder splits on them.
            let mut ours = data.clone();
            let mut theirs = data.clone();
            let a = cobs_decode_in_place(&mut ours).map(|n| ours[..n].to_vec());
            let b = cobs::decode_in_place(&mut theirs).ok().map(|n| theirs[..n].to_vec());
            prop_assert_eq!(a, b);
        }

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
        fn bulk_push_equals_bytewise_push(bytes in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..6000)) {
            let mut a = FrameDecoder::new();
            let mut b = FrameDecoder::new();
            let mut out_a = Vec::new();
            let mut out_b = Vec::new();
            a.push(&bytes, |d| out_a.push(d));
            for &x in &bytes {
                if let Some(d) = b.push_byte(x) {
                    out_b.push(d);
                }
            }
            prop_assert_eq!(out_a, out_b);
            prop_assert_eq!(a.stats(), b.stats());
            prop_assert_eq!(a.pending(), b.pending());
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
