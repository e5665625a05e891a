//! What every section of the policy document shares (the Bitcoin rules in
//! `document`, the Ethereum section in `eth`): the list limit, the error
//! type with its codes, the velocity window and hex text.
//!
//! Must never: know a section (sections import this module, never the
//! other way round).

use std::fmt::Write as _;

use crate::cbor::CborError;
use crate::units::Sats;

/// Largest number of entries in any list of the document.
pub const MAX_LIST: usize = 256;

/// Errors of documents. Codes 0x0540..=0x055F.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Bytes are not the canonical encoding (non-canonical CBOR, unknown or
    /// missing field, trailing bytes).
    #[error("policy encoding: {0}")]
    Encoding(#[from] CborError),
    /// Unknown format number.
    #[error("policy format {0} not supported")]
    UnsupportedFormat(u64),
    /// Fields are individually valid but inconsistent.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// The checkpoint does not decode or validate.
    #[error("policy checkpoint: {0}")]
    Checkpoint(String),
    /// TOML source did not compile (ground side).
    #[error("policy toml: {0}")]
    Toml(String),
    /// Document larger than `document::MAX_DOCUMENT_LEN`.
    #[error("policy of {0} bytes is too large")]
    TooLarge(usize),
}

impl DocumentError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Encoding(_) => 0x0540,
            Self::UnsupportedFormat(_) => 0x0541,
            Self::Invalid(_) => 0x0542,
            Self::Checkpoint(_) => 0x0543,
            Self::Toml(_) => 0x0544,
            Self::TooLarge(_) => 0x0545,
        }
    }
}

/// Spending cap over a rolling window (in sats unless another
/// [`crate::units::Amount`] is named: wei and token units for Ethereum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VelocityWindow<A = Sats> {
    /// Window length, ms.
    pub window_ms: u64,
    /// Most that may leave the wallets within any window of that length.
    pub cap: A,
}

/// Lower-case hex decoding (no external crate in this pure crate).
#[must_use]
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i.checked_add(2)?)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// Lower-case hex encoding.
#[must_use]
pub fn hex_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().saturating_mul(2));
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}
