//! Link security: an SDLS-like authenticated-encryption envelope around every
//! packet, with key ids, 64-bit sequence numbers and a sliding anti-replay
//! window (the design and its reasons: `docs/adr/0001-link-security.md`).
//!
//! ```text
//! header (11 bytes, authenticated as AAD)      ciphertext          tag
//! | ver/dir u8 | key id u16 BE | seq u64 BE | AES-256-GCM(packet) | 16 |
//! nonce (96 bits) = direction u32 BE | seq u64 BE
//! ```
//!
//! The same key may protect both directions because the direction is part of
//! the nonce: uplink sequence 5 and downlink sequence 5 never share a nonce.
//! Sequence numbers are never reused for a key: [`TxCounter`] hands them out
//! from a block that the caller has persisted ahead ("reservation"), so a
//! crash can skip numbers but never repeat one; [`ReplayWindow`] restarts
//! above every number it may have accepted before the crash.
//!
//! This module owns the envelope and the sequence/replay rules. It must never
//! touch storage or decide what a rejected packet means for the mission; it
//! returns typed errors and the caller counts and reports them.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codes::ReasonCode;

/// Envelope format version (upper nibble of the first byte).
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 11;
/// AES-GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes the envelope adds to a packet.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Width of the anti-replay window in sequence numbers.
pub const WINDOW: u64 = 128;
/// The sequence number of a window probe: never handed out by
/// [`TxCounter`] and below every [`ReplayWindow`], so an authentic envelope
/// carrying it is always refused as [`SecError::Replay`] with the
/// receiver's bound. A ground that lost its state seals an empty plaintext
/// under it to learn the node's bound (the same bytes every time, so the
/// repeated nonce protects nothing new); see `docs/wire.md`.
pub const PROBE_SEQ: u64 = 0;

/// Which way a packet travels; part of the header and the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ground to node (telecommands).
    Uplink,
    /// Node to ground (telemetry).
    Downlink,
}

impl Direction {
    fn code(self) -> u8 {
        match self {
            Self::Uplink => 1,
            Self::Downlink => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Uplink),
            2 => Some(Self::Downlink),
            _ => None,
        }
    }
}

/// The authenticated, cleartext envelope header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecHeader {
    /// Direction of travel.
    pub direction: Direction,
    /// Key id under which the packet is protected.
    pub key_id: u16,
    /// Sequence number (never 0, never reused for a key and direction).
    pub seq: u64,
}

impl SecHeader {
    /// The 11-byte wire form.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (ver, rest) = out.split_at_mut(1);
        let (key, seq) = rest.split_at_mut(2);
        ver.fill((VERSION << 4) | self.direction.code());
        key.copy_from_slice(&self.key_id.to_be_bytes());
        seq.copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Parses the header at the start of an envelope.
    ///
    /// # Errors
    /// [`SecError::Malformed`] if the bytes are too short to hold a header
    /// and tag, or the version or direction is unknown.
    pub fn parse(envelope: &[u8]) -> Result<Self, SecError> {
        if envelope.len() < OVERHEAD {
            return Err(SecError::Malformed {
                len: envelope.len(),
            });
        }
        let malformed = SecError::Malformed {
            len: envelope.len(),
        };
        let first = *envelope.first().ok_or(malformed.clone())?;
        if first >> 4 != VERSION {
            return Err(malformed);
        }
        let direction = Direction::from_code(first & 0x0F).ok_or(malformed.clone())?;
        let key_id = envelope
            .get(1..3)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_be_bytes)
            .ok_or(malformed.clone())?;
        let seq = envelope
            .get(3..HEADER_LEN)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or(malformed)?;
        Ok(Self {
            direction,
            key_id,
            seq,
        })
    }

    fn nonce(&self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        let (dir, seq) = nonce.split_at_mut(4);
        dir.copy_from_slice(&u32::from(self.direction.code()).to_be_bytes());
        seq.copy_from_slice(&self.seq.to_be_bytes());
        nonce
    }
}

/// Errors of the security layer. Every one is counted and logged by the
/// caller; none may stop the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecError {
    /// Too short, unknown version or unknown direction.
    #[error("malformed security envelope ({len} bytes)")]
    Malformed {
        /// Envelope length received.
        len: usize,
    },
    /// The envelope travels the other way (a reflected packet).
    #[error("envelope direction {got:?} where {expected:?} was expected")]
    WrongDirection {
        /// Direction the receiver expects.
        expected: Direction,
        /// Direction in the header.
        got: Direction,
    },
    /// No key with this id.
    #[error("unknown key id {key_id}")]
    UnknownKey {
        /// Key id from the header.
        key_id: u16,
    },
    /// The tag did not verify: forged, corrupted or protected by another key.
    #[error("authentication failed for key {key_id} seq {seq}")]
    AuthFailed {
        /// Key id from the header.
        key_id: u16,
        /// Sequence number from the header.
        seq: u64,
    },
    /// An authentic packet whose sequence number was seen before or lies
    /// below the window.
    #[error("replayed or stale seq {seq} for key {key_id} (highest accepted {highest})")]
    Replay {
        /// Key id from the header.
        key_id: u16,
        /// Sequence number from the header.
        seq: u64,
        /// Highest sequence number the window has accepted (or its floor).
        highest: u64,
    },
    /// The key's transmit sequence numbers are used up.
    #[error("sequence numbers of key {key_id} exhausted; rekey")]
    Exhausted {
        /// Key id.
        key_id: u16,
    },
    /// The plaintext does not fit an envelope.
    #[error("plaintext too large to seal")]
    TooLarge,
}

impl SecError {
    /// The reason code reported to the ground.
    #[must_use]
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::Malformed { .. } | Self::TooLarge => ReasonCode::SEC_MALFORMED,
            Self::WrongDirection { .. } => ReasonCode::SEC_WRONG_DIRECTION,
            Self::UnknownKey { .. } => ReasonCode::SEC_UNKNOWN_KEY,
            Self::AuthFailed { .. } => ReasonCode::SEC_AUTH_FAILED,
            Self::Replay { .. } => ReasonCode::SEC_REPLAY,
            Self::Exhausted { .. } => ReasonCode::SEC_SEQ_EXHAUSTED,
        }
    }
}

/// A 256-bit link key. Zeroized on drop; `Debug` never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LinkKey([u8; 32]);

impl LinkKey {
    /// Wraps key material.
    #[must_use]
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key, for sealing it into storage. Callers must not log it.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

/// A key ready for AES-256-GCM, with its id.
#[derive(Clone)]
pub struct Cipher {
    key_id: u16,
    aead: Aes256Gcm,
}

impl core::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Cipher {
    /// Expands `key` for use under `key_id`.
    #[must_use]
    pub fn new(key_id: u16, key: &LinkKey) -> Self {
        Self {
            key_id,
            aead: Aes256Gcm::new(key.expose().into()),
        }
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> u16 {
        self.key_id
    }

    /// Seals `plaintext` under `seq` into a complete envelope.
    ///
    /// The caller guarantees that `seq` was never used before with this key
    /// and direction ([`TxCounter`] does).
    ///
    /// # Errors
    /// [`SecError::TooLarge`] if the AEAD refuses the length.
    pub fn seal(
        &self,
        direction: Direction,
        seq: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SecError> {
        let header = SecHeader {
            direction,
            key_id: self.key_id,
            seq,
        };
        // Room for the frame's CRC too, so framing the envelope in place
        // (`frame::encode_vec`) never reallocates.
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len() + crate::frame::CRC_LEN);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(plaintext);
        // Encrypt in place after the header: one allocation per packet.
        let (aad, body) = out.split_at_mut(HEADER_LEN);
        let tag = self
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(&header.nonce()), aad, body)
            .map_err(|_| SecError::TooLarge)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Verifies and decrypts an envelope whose header was already parsed.
    ///
    /// # Errors
    /// [`SecError::AuthFailed`] if the tag does not verify.
    pub fn open(&self, header: &SecHeader, envelope: &[u8]) -> Result<Vec<u8>, SecError> {
        let fail = SecError::AuthFailed {
            key_id: header.key_id,
            seq: header.seq,
        };
        let (aad, rest) = envelope.split_at_checked(HEADER_LEN).ok_or(fail.clone())?;
        let ct_len = rest.len().checked_sub(TAG_LEN).ok_or(fail.clone())?;
        let (ct, tag) = rest.split_at(ct_len);
        let mut plaintext = ct.to_vec();
        self.aead
            .decrypt_in_place_detached(
                Nonce::from_slice(&header.nonce()),
                aad,
                &mut plaintext,
                Tag::from_slice(tag),
            )
            .map_err(|_| fail)?;
        Ok(plaintext)
    }
}

/// Sliding anti-replay window over 64-bit sequence numbers (RFC 4303 §3.4.3
/// style, 128 wide). Pure state; the caller persists [`Self::highest`]
/// through a [`RxReservation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number accepted (or the floor after a restart).
    highest: u64,
    /// Bit i set: `highest - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// A window that rejects every sequence number up to and including
    /// `floor` (0 for a fresh key: sequence 0 is never valid).
    #[must_use]
    pub fn with_floor(floor: u64) -> Self {
        Self {
            highest: floor,
            seen: u128::MAX,
        }
    }

    /// Highest sequence number accepted, or the floor.
    #[must_use]
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `seq` would be accepted now. Call before decrypting to save
    /// work, and [`Self::commit`] only after the tag verified.
    #[must_use]
    pub fn is_fresh(&self, seq: u64) -> bool {
        if seq > self.highest {
            return true;
        }
        let age = self.highest - seq;
        age < WINDOW && self.seen & (1u128 << age) == 0
    }

    /// Records `seq` as accepted. Returns false (and changes nothing) if it
    /// was not fresh.
    pub fn commit(&mut self, seq: u64) -> bool {
        if !self.is_fresh(seq) {
            return false;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = seq;
        } else {
            self.seen |= 1u128 << (self.highest - seq);
        }
        true
    }
}

/// Hands out transmit sequence numbers from a persisted reservation.
///
/// Invariant: every number handed out is `< reserved_until`, and
/// `reserved_until` was persisted before the number was used. After a crash
/// the counter restarts at the persisted `reserved_until`, above everything
/// sent before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxCounter {
    next: u64,
    reserved_until: u64,
    block: u64,
}

/// What [`TxCounter::next`] asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxNext {
    /// Use this sequence number.
    Use(u64),
    /// Persist `reserved_until` durably, call [`TxCounter::reserved`], then
    /// ask again.
    Reserve {
        /// The new bound to persist.
        reserved_until: u64,
    },
}

impl TxCounter {
    /// Resumes from the persisted bound (1 for a fresh key). `block` is how
    /// many numbers one durable write covers.
    #[must_use]
    pub fn resume(persisted_reserved_until: u64, block: u64) -> Self {
        let start = persisted_reserved_until.max(1);
        Self {
            next: start,
            reserved_until: start,
            block: block.max(1),
        }
    }

    /// The next number to send, or a reservation to persist first.
    ///
    /// # Errors
    /// [`SecError::Exhausted`] when the 64-bit space is used up.
    pub fn next(&mut self, key_id: u16) -> Result<TxNext, SecError> {
        if self.next < self.reserved_until {
            let seq = self.next;
            self.next += 1;
            return Ok(TxNext::Use(seq));
        }
        let until = self
            .next
            .checked_add(self.block)
            .ok_or(SecError::Exhausted { key_id })?;
        Ok(TxNext::Reserve {
            reserved_until: until,
        })
    }

    /// Records that `reserved_until` is durable.
    pub fn reserved(&mut self, reserved_until: u64) {
        self.reserved_until = self.reserved_until.max(reserved_until);
    }

    /// The next number that would be used (for telemetry).
    #[must_use]
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Jumps forward so the next number exceeds `seq` (used by the ground
    /// when the node reports a window above what the ground sends).
    pub fn skip_past(&mut self, seq: u64) {
        self.next = self.next.max(seq.saturating_add(1));
    }
}

/// The persisted bound of a receive window.
///
/// Invariant: every accepted number is `< reserved_until`, and the bound was
/// durable before the packet was acted on. After a crash the window floor is
/// `reserved_until - 1`: numbers the node may have accepted are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxReservation {
    reserved_until: u64,
    block: u64,
}

impl RxReservation {
    /// From the persisted bound (1 for a fresh key).
    #[must_use]
    pub fn resume(persisted_reserved_until: u64, block: u64) -> Self {
        Self {
            reserved_until: persisted_reserved_until.max(1),
            block: block.max(1),
        }
    }

    /// The window to start with after a restart.
    #[must_use]
    pub fn window(&self) -> ReplayWindow {
        ReplayWindow::with_floor(self.reserved_until.saturating_sub(1))
    }

    /// Before acting on an accepted `seq`: the new bound to persist, if the
    /// current one does not cover it.
    #[must_use]
    pub fn needs(&self, seq: u64) -> Option<u64> {
        (seq >= self.reserved_until).then(|| seq.saturating_add(self.block))
    }

    /// Records that `reserved_until` is durable.
    pub fn reserved(&mut self, reserved_until: u64) {
        self.reserved_until = self.reserved_until.max(reserved_until);
    }

    /// The current durable bound.
    #[must_use]
    pub fn reserved_until(&self) -> u64 {
        self.reserved_until
    }
}

/// The receive side of one key: cipher, window and reservation.
#[derive(Debug, Clone)]
pub struct RxKey {
    cipher: Cipher,
    window: ReplayWindow,
    reservation: RxReservation,
}

/// A packet that passed every check, with what the caller must persist before
/// acting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The verified header.
    pub header: SecHeader,
    /// The decrypted packet.
    pub plaintext: Vec<u8>,
    /// A new receive bound to persist before acting, if any.
    pub persist_rx_bound: Option<u64>,
}

impl RxKey {
    /// A receive key resuming from its persisted bound.
    #[must_use]
    pub fn new(cipher: Cipher, reservation: RxReservation) -> Self {
        Self {
            window: reservation.window(),
            cipher,
            reservation,
        }
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> u16 {
        self.cipher.key_id()
    }

    /// Highest accepted sequence number or floor.
    #[must_use]
    pub fn highest(&self) -> u64 {
        self.window.highest()
    }

    /// Records that the bound returned in [`Accepted::persist_rx_bound`] is
    /// durable.
    pub fn reserved(&mut self, bound: u64) {
        self.reservation.reserved(bound);
    }

    /// Checks and opens an envelope whose header was parsed and matched to
    /// this key. Replays are verified too, so a forged "replay" counts as an
    /// authentication failure, not as a replay.
    ///
    /// # Errors
    /// [`SecError::AuthFailed`] or [`SecError::Replay`].
    pub fn accept(&mut self, header: &SecHeader, envelope: &[u8]) -> Result<Accepted, SecError> {
        let fresh = self.window.is_fresh(header.seq);
        let plaintext = self.cipher.open(header, envelope)?;
        if !fresh || !self.window.commit(header.seq) {
            return Err(SecError::Replay {
                key_id: header.key_id,
                seq: header.seq,
                highest: self.window.highest(),
            });
        }
        Ok(Accepted {
            header: *header,
            plaintext,
            persist_rx_bound: self.reservation.needs(header.seq),
        })
    }
}

/// Receive-side keyring for one direction: every configured key with its own
/// window.
#[derive(Debug, Clone)]
pub struct Receiver {
    direction: Direction,
    keys: Vec<RxKey>,
}

impl Receiver {
    /// A receiver for packets travelling `direction`.
    #[must_use]
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            keys: Vec::new(),
        }
    }

    /// Adds or replaces the key with this id.
    pub fn insert(&mut self, key: RxKey) {
        self.keys.retain(|k| k.key_id() != key.key_id());
        self.keys.push(key);
    }

    /// Removes a key; packets under it are then `UnknownKey`.
    pub fn remove(&mut self, key_id: u16) {
        self.keys.retain(|k| k.key_id() != key_id);
    }

    /// The key with this id.
    pub fn key_mut(&mut self, key_id: u16) -> Option<&mut RxKey> {
        self.keys.iter_mut().find(|k| k.key_id() == key_id)
    }

    /// Key ids and their highest accepted numbers.
    #[must_use]
    pub fn windows(&self) -> Vec<(u16, u64)> {
        self.keys
            .iter()
            .map(|k| (k.key_id(), k.highest()))
            .collect()
    }

    /// Parses, authenticates, replay-checks and decrypts an envelope.
    ///
    /// # Errors
    /// Any [`SecError`] but `Exhausted`/`TooLarge`.
    pub fn accept(&mut self, envelope: &[u8]) -> Result<Accepted, SecError> {
        let header = SecHeader::parse(envelope)?;
        if header.direction != self.direction {
            return Err(SecError::WrongDirection {
                expected: self.direction,
                got: header.direction,
            });
        }
        let key = self.key_mut(header.key_id).ok_or(SecError::UnknownKey {
            key_id: header.key_id,
        })?;
        key.accept(&header, envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cipher(id: u16, byte: u8) -> Cipher {
        Cipher::new(id, &LinkKey::new([byte; 32]))
    }

    fn receiver() -> Receiver {
        let mut rx = Receiver::new(Direction::Uplink);
        rx.insert(RxKey::new(cipher(1, 7), RxReservation::resume(1, 100)));
        rx
    }

    #[test]
    fn seal_open_round_trip_and_header_fields() {
        let env = cipher(1, 7)
            .seal(Direction::Uplink, 42, b"tc bytes")
            .unwrap();
        assert_eq!(env.len(), b"tc bytes".len() + OVERHEAD);
        let hdr = SecHeader::parse(&env).unwrap();
        assert_eq!(
            hdr,
            SecHeader {
                direction: Direction::Uplink,
                key_id: 1,
                seq: 42
            }
        );
        let acc = receiver().accept(&env).unwrap();
        assert_eq!(acc.plaintext, b"tc bytes");
        assert_eq!(acc.persist_rx_bound, Some(142));
    }

    #[test]
    fn replay_is_rejected_after_first_acceptance() {
        let mut rx = receiver();
        let env = cipher(1, 7).seal(Direction::Uplink, 5, b"x").unwrap();
        assert!(rx.accept(&env).is_ok());
        assert_eq!(
            rx.accept(&env),
            Err(SecError::Replay {
                key_id: 1,
                seq: 5,
                highest: 5
            })
        );
    }

    #[test]
    fn out_of_order_within_window_accepted_once() {
        let mut rx = receiver();
        let c = cipher(1, 7);
        for seq in [10u64, 8, 9, 3] {
            assert!(
                rx.accept(&c.seal(Direction::Uplink, seq, b"x").unwrap())
                    .is_ok(),
                "seq {seq}"
            );
        }
        for seq in [10u64, 8, 9, 3] {
            assert!(matches!(
                rx.accept(&c.seal(Direction::Uplink, seq, b"x").unwrap()),
                Err(SecError::Replay { .. })
            ));
        }
    }

    #[test]
    fn below_window_is_stale() {
        let mut rx = receiver();
        let c = cipher(1, 7);
        assert!(
            rx.accept(&c.seal(Direction::Uplink, 1000, b"x").unwrap())
                .is_ok()
        );
        let late = c.seal(Direction::Uplink, 1000 - WINDOW, b"x").unwrap();
        assert!(matches!(rx.accept(&late), Err(SecError::Replay { .. })));
        let in_window = c.seal(Direction::Uplink, 1000 - WINDOW + 1, b"x").unwrap();
        assert!(rx.accept(&in_window).is_ok());
    }

    #[test]
    fn bit_flips_forged_tags_wrong_keys_and_reflections_are_rejected() {
        let mut rx = receiver();
        let good = cipher(1, 7).seal(Direction::Uplink, 9, b"payload").unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let err = rx.accept(&bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    SecError::AuthFailed { .. }
                        | SecError::Malformed { .. }
                        | SecError::UnknownKey { .. }
                        | SecError::WrongDirection { .. }
                ),
                "byte {i}: {err:?}"
            );
        }
        let wrong_key = cipher(1, 8).seal(Direction::Uplink, 9, b"payload").unwrap();
        assert_eq!(
            rx.accept(&wrong_key),
            Err(SecError::AuthFailed { key_id: 1, seq: 9 })
        );
        let unknown = cipher(2, 7).seal(Direction::Uplink, 9, b"payload").unwrap();
        assert_eq!(rx.accept(&unknown), Err(SecError::UnknownKey { key_id: 2 }));
        let reflected = cipher(1, 7)
            .seal(Direction::Downlink, 9, b"payload")
            .unwrap();
        assert!(matches!(
            rx.accept(&reflected),
            Err(SecError::WrongDirection { .. })
        ));
        // None of the failures consumed the sequence number.
        assert!(rx.accept(&good).is_ok());
    }

    #[test]
    fn forged_replay_counts_as_auth_failure() {
        let mut rx = receiver();
        let c = cipher(1, 7);
        assert!(
            rx.accept(&c.seal(Direction::Uplink, 5, b"x").unwrap())
                .is_ok()
        );
        let forged = cipher(1, 9).seal(Direction::Uplink, 5, b"x").unwrap();
        assert!(matches!(
            rx.accept(&forged),
            Err(SecError::AuthFailed { .. })
        ));
    }

    #[test]
    fn tx_counter_never_repeats_across_simulated_crashes() {
        let mut persisted = 1u64;
        let mut sent = std::collections::HashSet::new();
        for crash in 0..20u64 {
            let mut tx = TxCounter::resume(persisted, 16);
            for _ in 0..(crash * 7 % 40) {
                let seq = loop {
                    match tx.next(1).unwrap() {
                        TxNext::Use(s) => break s,
                        TxNext::Reserve { reserved_until } => {
                            persisted = reserved_until;
                            tx.reserved(reserved_until);
                        }
                    }
                };
                assert!(seq > 0);
                assert!(seq < persisted, "used {seq} beyond durable {persisted}");
                assert!(sent.insert(seq), "seq {seq} reused");
            }
        }
    }

    #[test]
    fn rx_restart_refuses_everything_accepted_before() {
        let c = cipher(1, 7);
        let mut persisted = 1u64;
        let mut rx = RxKey::new(c.clone(), RxReservation::resume(persisted, 10));
        let mut accepted = Vec::new();
        for seq in 1..=25u64 {
            let env = c.seal(Direction::Uplink, seq, b"x").unwrap();
            let hdr = SecHeader::parse(&env).unwrap();
            let acc = rx.accept(&hdr, &env).unwrap();
            if let Some(bound) = acc.persist_rx_bound {
                persisted = bound;
                rx.reserved(bound);
            }
            accepted.push(env);
        }
        let mut restarted = RxKey::new(c.clone(), RxReservation::resume(persisted, 10));
        for env in &accepted {
            let hdr = SecHeader::parse(env).unwrap();
            assert!(matches!(
                restarted.accept(&hdr, env),
                Err(SecError::Replay { .. })
            ));
        }
        let next = c.seal(Direction::Uplink, persisted, b"x").unwrap();
        let hdr = SecHeader::parse(&next).unwrap();
        assert!(restarted.accept(&hdr, &next).is_ok());
    }

    proptest! {
        #[test]
        fn receiver_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut rx = receiver();
            let _ = rx.accept(&bytes);
        }

        #[test]
        fn window_accepts_each_seq_at_most_once(seqs in proptest::collection::vec(1u64..400, 1..300)) {
            let mut w = ReplayWindow::with_floor(0);
            let mut accepted = std::collections::HashSet::new();
            for s in seqs {
                if w.commit(s) {
                    prop_assert!(accepted.insert(s), "seq {} accepted twice", s);
                }
            }
        }
    }
}
