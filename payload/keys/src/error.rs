//! Errors of the key custody crate and their stable reason codes.
//!
//! Owns: [`KeyError`] (everything the node side can fail with) and the
//! mapping of each variant to a 16-bit reason code in `0x0400..=0x04FF` that
//! the daemon puts into PUS service 1 failure reports. The table in
//! `payload/keys/README.md` lists the same codes; a test keeps them unique and
//! in range. Codes are append-only: never renumber or reuse one.
//!
//! Must never: carry secret bytes in a message (messages go to logs and to the
//! ground), or panic while classifying a TPM response code.

use thiserror::Error;
use tss_esapi::constants::response_code::{Tss2ResponseCode, Tss2ResponseCodeKind};

/// Errors of key custody (TPM backend, soft backend, sealing, anti-rollback).
///
/// Messages are lower-case and carry the data needed to act on them. Each
/// variant has a stable reason code, see [`KeyError::code`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The TCTI could not connect to a TPM (no device node, swtpm not
    /// listening, resource manager missing).
    #[error("no tpm reachable through tcti {tcti:?}: {detail}")]
    NoTpm {
        /// The TCTI configuration string that was tried.
        tcti: String,
        /// What the TSS library reported.
        detail: String,
    },
    /// The TPM is in dictionary-attack lockout: authorizations of DA-protected
    /// objects are refused until the recovery time elapses.
    #[error("tpm is in dictionary-attack lockout during {op}")]
    TpmLockout {
        /// The operation that was refused.
        op: &'static str,
    },
    /// The PCRs named in a sealed object's policy no longer hold the values
    /// it was sealed to: the measured software or configuration changed.
    #[error("pcr mismatch for pcrs {pcrs:?}: sealed to digest {sealed}, current digest {current}")]
    PcrMismatch {
        /// The PCR indices (SHA-256 bank) in the policy.
        pcrs: Vec<u8>,
        /// Hex of the PCR digest the object was sealed to.
        sealed: String,
        /// Hex of the digest of the current PCR values.
        current: String,
    },
    /// The TPM NV counter is ahead of the database epoch: an old database or
    /// an old policy was restored.
    #[error("rollback detected: nv counter is {nv}, database epoch is {db}")]
    RollbackDetected {
        /// Value of the TPM NV counter.
        nv: u64,
        /// Epoch stored in the database.
        db: u64,
    },
    /// A sealed blob could not be decoded, failed its checksum, or the TPM
    /// refused to load it (integrity check).
    #[error("sealed blob corrupt: {reason}")]
    BlobCorrupt {
        /// What was wrong.
        reason: String,
    },
    /// The software key backend was requested in the flight profile.
    #[error("soft key backend refused in flight profile")]
    SoftBackendRefused,
    /// A TCTI configuration string is not one of the accepted forms.
    #[error("invalid tcti configuration {conf:?}: {reason}")]
    InvalidTcti {
        /// The offending configuration string.
        conf: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A TPM command failed for a reason without a dedicated variant.
    #[error("tpm command {op} failed: {detail}")]
    Tpm {
        /// The operation that failed.
        op: &'static str,
        /// What the TSS library reported.
        detail: String,
    },
    /// The authorization value for a sealed object was wrong (our sealed
    /// objects are not DA-protected: it does not count towards lockout).
    #[error("tpm authorization failed during {op} (wrong seal auth value)")]
    AuthFail {
        /// The operation that was refused.
        op: &'static str,
    },
    /// The database epoch is more than one ahead of the NV counter; no crash
    /// between the two commit steps can explain that.
    #[error("database epoch {db} is ahead of nv counter {nv} by more than one")]
    EpochAhead {
        /// Value of the TPM NV counter.
        nv: u64,
        /// Epoch stored in the database.
        db: u64,
    },
    /// A sealed blob is intact but is not the one that was asked for (other
    /// kind, other name, or other backend).
    #[error("sealed blob mismatch: expected {expected}, found {found}")]
    BlobMismatch {
        /// What the caller asked for.
        expected: String,
        /// What the blob holds.
        found: String,
    },
    /// Locked, non-dumpable memory for a secret could not be set up.
    #[error("secret memory: {op} failed with errno {errno}")]
    SecretMemory {
        /// The system call that failed.
        op: &'static str,
        /// The errno it returned.
        errno: i32,
    },
    /// The development seed file could not be read or written.
    #[error("seed file {path}: {reason}")]
    SeedFile {
        /// Path of the seed file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// BIP32 derivation failed (invalid path, depth exceeded, invalid key).
    #[error("bip32 derivation failed: {reason}")]
    Derivation {
        /// What the bip32 code reported.
        reason: String,
    },
    /// A freshly produced signature did not verify against its own public
    /// key (fault during signing); it was not released.
    #[error("signature self-check failed for {scheme}; signature withheld")]
    SignatureSelfCheck {
        /// "ecdsa" or "schnorr".
        scheme: &'static str,
    },
    /// The anti-rollback NV counter index is missing or is not a counter.
    #[error("nv counter {index:#010x}: {reason}")]
    NvCounter {
        /// The NV index handle.
        index: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation needs the TPM (attestation, counter) but the store uses
    /// the soft backend.
    #[error("{op} is not available on the soft backend")]
    NotSupported {
        /// The operation that was asked for.
        op: &'static str,
    },
    /// A random number source failed.
    #[error("random source {source_name} failed: {detail}")]
    Random {
        /// "tpm" or "os".
        source_name: &'static str,
        /// What failed.
        detail: String,
    },
    /// A configuration value is invalid.
    #[error("invalid key store configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A counter value would overflow.
    #[error("counter overflow in {what}")]
    Overflow {
        /// Which counter.
        what: &'static str,
    },
    /// The policy anchor NV index is unusable: not an ordinary index of
    /// the expected size, unreadable, or holding a record that does not
    /// decode. Fail closed: the node then refuses a bootstrap.
    #[error("nv anchor {index:#010x}: {reason}")]
    NvAnchor {
        /// The NV index handle.
        index: u32,
        /// What is wrong with it.
        reason: String,
    },
}

impl KeyError {
    /// Stable reason code of this error for PUS failure reports, in
    /// `0x0400..=0x04FF`. The table lives in `payload/keys/README.md`.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            KeyError::NoTpm { .. } => 0x0401,
            KeyError::TpmLockout { .. } => 0x0402,
            KeyError::PcrMismatch { .. } => 0x0403,
            KeyError::RollbackDetected { .. } => 0x0404,
            KeyError::BlobCorrupt { .. } => 0x0405,
            KeyError::SoftBackendRefused => 0x0406,
            KeyError::InvalidTcti { .. } => 0x0407,
            KeyError::Tpm { .. } => 0x0408,
            KeyError::AuthFail { .. } => 0x0409,
            KeyError::EpochAhead { .. } => 0x040A,
            KeyError::BlobMismatch { .. } => 0x040B,
            KeyError::SecretMemory { .. } => 0x040C,
            KeyError::SeedFile { .. } => 0x040D,
            KeyError::Derivation { .. } => 0x040E,
            KeyError::SignatureSelfCheck { .. } => 0x040F,
            KeyError::NvCounter { .. } => 0x0410,
            KeyError::NotSupported { .. } => 0x0411,
            KeyError::Random { .. } => 0x0412,
            KeyError::Config { .. } => 0x0413,
            KeyError::Overflow { .. } => 0x0414,
            KeyError::NvAnchor { .. } => 0x04A0,
        }
    }

    /// Whether the daemon should treat this error as "the TPM refused to
    /// unseal": the design enters safe mode on it.
    #[must_use]
    pub fn is_unseal_refusal(&self) -> bool {
        matches!(
            self,
            KeyError::PcrMismatch { .. } | KeyError::AuthFail { .. } | KeyError::TpmLockout { .. }
        )
    }

    /// Classifies a TSS error from operation `op` into a typed error. Lockout
    /// and authorization failures get their own variants; the rest become
    /// [`KeyError::Tpm`].
    pub(crate) fn from_tss(op: &'static str, err: tss_esapi::Error) -> Self {
        match tss_kind(&err) {
            Some(Tss2ResponseCodeKind::Lockout) => KeyError::TpmLockout { op },
            Some(Tss2ResponseCodeKind::AuthFail) | Some(Tss2ResponseCodeKind::BadAuth) => {
                KeyError::AuthFail { op }
            }
            _ => KeyError::Tpm {
                op,
                detail: err.to_string(),
            },
        }
    }
}

/// The response code kind of a TSS error, if it is a TPM response code.
pub(crate) fn tss_kind(err: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match err {
        tss_esapi::Error::Tss2Error(rc) => match rc {
            Tss2ResponseCode::Success => None,
            other => other.kind(),
        },
        tss_esapi::Error::WrapperError(_) => None,
    }
}

/// Errors of the pure attestation verifier (ground side).
///
/// These never reach the node's PUS reports, but they carry codes in the
/// same range (`0x0480..`) so the ground tool can print one table.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The attestation or one of its parts does not parse.
    #[error("attestation malformed: {reason}")]
    Malformed {
        /// What failed to parse.
        reason: String,
    },
    /// The AK public key in the attestation is not the pinned one.
    #[error("attestation key is not the trusted one (got name {got})")]
    UnknownAk {
        /// Hex of the TPM name of the AK in the attestation.
        got: String,
    },
    /// The AK public area is not a restricted P-256 ECDSA/SHA-256 signing key
    /// that never leaves its TPM.
    #[error("attestation key unsuitable: {reason}")]
    AkUnsuitable {
        /// Which property is missing.
        reason: &'static str,
    },
    /// The ECDSA signature over TPMS_ATTEST does not verify.
    #[error("quote signature does not verify")]
    BadSignature,
    /// TPMS_ATTEST magic is not TPM_GENERATED_VALUE or type is not a quote.
    #[error("not a tpm-generated quote: magic {magic:#010x}, type {kind:#06x}")]
    NotAQuote {
        /// The magic found.
        magic: u32,
        /// The attestation type found.
        kind: u16,
    },
    /// The qualified signer in the quote is not the AK's qualified name.
    #[error("quote signer name does not match the attestation key")]
    SignerMismatch,
    /// The nonce in the attestation is not the one the ground sent (wrong or
    /// replayed quote).
    #[error("nonce mismatch: expected {expected}, got {got}")]
    NonceMismatch {
        /// Hex of the expected nonce.
        expected: String,
        /// Hex of the nonce carried by the attestation.
        got: String,
    },
    /// extraData in the signed quote is not the binding recomputed from the
    /// expected nonce and the carried xpubs, policy hash and counter.
    #[error("qualifying data does not match the recomputed binding")]
    BindingMismatch,
    /// The quoted PCR selection differs from the expected one.
    #[error("pcr selection mismatch: expected {expected:?}, quoted {got:?}")]
    PcrSelectionMismatch {
        /// Expected PCR indices (SHA-256 bank).
        expected: Vec<u8>,
        /// Quoted PCR indices.
        got: Vec<u8>,
    },
    /// The quoted PCR digest differs from the digest of the expected values.
    #[error("pcr digest mismatch: expected {expected}, quoted {got}")]
    PcrDigestMismatch {
        /// Hex of the expected digest.
        expected: String,
        /// Hex of the quoted digest.
        got: String,
    },
    /// A bound value (xpubs, policy hash, counter) differs from what the
    /// ground expected.
    #[error("bound value {what} differs from the expected one")]
    UnexpectedBoundValue {
        /// Which value.
        what: &'static str,
    },
}

impl VerifyError {
    /// Stable reason code in `0x0480..=0x049F`.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            VerifyError::Malformed { .. } => 0x0481,
            VerifyError::UnknownAk { .. } => 0x0482,
            VerifyError::AkUnsuitable { .. } => 0x0483,
            VerifyError::BadSignature => 0x0484,
            VerifyError::NotAQuote { .. } => 0x0485,
            VerifyError::SignerMismatch => 0x0486,
            VerifyError::NonceMismatch { .. } => 0x0487,
            VerifyError::BindingMismatch => 0x0488,
            VerifyError::PcrSelectionMismatch { .. } => 0x0489,
            VerifyError::PcrDigestMismatch { .. } => 0x048A,
            VerifyError::UnexpectedBoundValue { .. } => 0x048B,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_key_errors() -> Vec<KeyError> {
        let s = String::new;
        vec![
            KeyError::NoTpm {
                tcti: s(),
                detail: s(),
            },
            KeyError::TpmLockout { op: "x" },
            KeyError::PcrMismatch {
                pcrs: vec![],
                sealed: s(),
                current: s(),
            },
            KeyError::RollbackDetected { nv: 2, db: 1 },
            KeyError::BlobCorrupt { reason: s() },
            KeyError::SoftBackendRefused,
            KeyError::InvalidTcti {
                conf: s(),
                reason: "x",
            },
            KeyError::Tpm {
                op: "x",
                detail: s(),
            },
            KeyError::AuthFail { op: "x" },
            KeyError::EpochAhead { nv: 1, db: 3 },
            KeyError::BlobMismatch {
                expected: s(),
                found: s(),
            },
            KeyError::SecretMemory { op: "x", errno: 1 },
            KeyError::SeedFile {
                path: s(),
                reason: s(),
            },
            KeyError::Derivation { reason: s() },
            KeyError::SignatureSelfCheck { scheme: "x" },
            KeyError::NvCounter {
                index: 1,
                reason: s(),
            },
            KeyError::NotSupported { op: "x" },
            KeyError::Random {
                source_name: "x",
                detail: s(),
            },
            KeyError::Config { reason: s() },
            KeyError::Overflow { what: "x" },
            KeyError::NvAnchor {
                index: 1,
                reason: s(),
            },
        ]
    }

    #[test]
    fn key_error_codes_unique_and_in_range() {
        let mut codes: Vec<u16> = all_key_errors().iter().map(KeyError::code).collect();
        // Node-side codes: 0x0400..=0x047F, and 0x04A0..=0x04AF (the
        // policy anchor); the ground verifier owns 0x0480..=0x049F.
        assert!(
            codes
                .iter()
                .all(|c| (0x0400..=0x047F).contains(c) || (0x04A0..=0x04AF).contains(c))
        );
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }

    #[test]
    fn messages_are_lower_case() {
        for e in all_key_errors() {
            let m = e.to_string();
            let first = m.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{m}");
        }
    }

    #[test]
    fn verify_error_codes_in_range() {
        let errs = [
            VerifyError::Malformed {
                reason: String::new(),
            },
            VerifyError::UnknownAk { got: String::new() },
            VerifyError::AkUnsuitable { reason: "x" },
            VerifyError::BadSignature,
            VerifyError::NotAQuote { magic: 0, kind: 0 },
            VerifyError::SignerMismatch,
            VerifyError::NonceMismatch {
                expected: String::new(),
                got: String::new(),
            },
            VerifyError::BindingMismatch,
            VerifyError::PcrSelectionMismatch {
                expected: vec![],
                got: vec![],
            },
            VerifyError::PcrDigestMismatch {
                expected: String::new(),
                got: String::new(),
            },
            VerifyError::UnexpectedBoundValue { what: "x" },
        ];
        let mut codes: Vec<u16> = errs.iter().map(VerifyError::code).collect();
        assert!(codes.iter().all(|c| (0x0480..=0x049F).contains(c)));
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }
}
