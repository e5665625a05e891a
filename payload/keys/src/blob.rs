//! [`SealedBlob`]: the bytes the daemon stores for each sealed secret, and
//! their canonical encoding.
//!
//! Owns: the byte layout below, its strict decoder (any deviation is
//! [`KeyError::BlobCorrupt`]) and the name rules for sealed secrets.
//!
//! Must never: interpret the TPM parts (they are opaque TPM2B contents that
//! only the TPM can use), or accept trailing bytes, non-canonical lengths or
//! unsorted PCR lists: one secret has exactly one encoding.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "SNKB"
//! 4       1     version = 1
//! 5       1     backend: 1 = tpm, 2 = soft (development only, plaintext)
//! 6       1     kind: 1 = bip32 seed, 2 = named secret
//! 7       1     name length n (1..=64), then n bytes [a-z0-9._-]
//! ..      1     pcr count c (tpm: 1..=24, soft: 0), then c ascending indices < 24
//! ..      32    pcr digest the object was sealed to (soft: zeros)
//! ..      2     public length p (big-endian, tpm: 1..=1024, soft: 0), then
//!               p bytes marshalled TPMT_PUBLIC (contents of TPM2B_PUBLIC)
//! ..      2     private length q (big-endian, 1..=1024), then q bytes: tpm:
//!               contents of TPM2B_PRIVATE; soft: secret || tag (64 bytes)
//! ..      32    SHA-256("spacenode/sealed-blob/v1" || all bytes above)
//! ```
//!
//! The checksum only detects accidental corruption (flash bit flips, torn
//! writes). Integrity against tampering comes from the TPM: the private part
//! carries an HMAC that `TPM2_Load` checks, and the unsealed payload carries
//! a tag binding it to its kind and name.

use sha2::{Digest, Sha256};

use crate::error::KeyError;

const MAGIC: &[u8; 4] = b"SNKB";
const VERSION: u8 = 1;
const CHECKSUM_TAG: &[u8] = b"spacenode/sealed-blob/v1";
const MAX_TPM_PART: usize = 1024;
/// Longest name of a sealed secret.
pub const MAX_NAME_LEN: usize = 64;
/// Name under which the BIP32 seed is sealed.
pub const SEED_NAME: &str = "bip32-seed";

/// Which backend produced a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobBackend {
    /// Sealed by a TPM; only that TPM, in the sealed PCR state, can open it.
    Tpm,
    /// Development soft backend: the secret is in the blob in plaintext.
    Soft,
}

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// The BIP32 seed.
    Seed,
    /// A named 32-byte secret (e.g. a link key).
    Secret,
}

impl BlobKind {
    fn byte(self) -> u8 {
        match self {
            BlobKind::Seed => 1,
            BlobKind::Secret => 2,
        }
    }
}

/// A sealed secret as stored by the daemon. Cloneable bytes; holds no
/// plaintext for the TPM backend.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub(crate) backend: BlobBackend,
    pub(crate) kind: BlobKind,
    pub(crate) name: String,
    pub(crate) pcrs: Vec<u8>,
    pub(crate) pcr_digest: [u8; 32],
    pub(crate) public: Vec<u8>,
    pub(crate) private: Vec<u8>,
}

impl std::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The soft backend's private part is the plaintext secret.
        f.debug_struct("SealedBlob")
            .field("backend", &self.backend)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("pcrs", &self.pcrs)
            .field("pcr_digest", &hex::encode(self.pcr_digest))
            .field("public_len", &self.public.len())
            .field("private", &"[REDACTED]")
            .finish()
    }
}

impl Drop for SealedBlob {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.private.zeroize();
    }
}

/// Checks a secret name: 1..=64 bytes of `[a-z0-9._-]`.
///
/// # Errors
/// [`KeyError::Config`] if the name breaks the rule.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Config {
            reason: format!("secret name {name:?} must be 1..=64 bytes of [a-z0-9._-]"),
        })
    }
}

fn corrupt(reason: impl Into<String>) -> KeyError {
    KeyError::BlobCorrupt {
        reason: reason.into(),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], KeyError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| corrupt(format!("truncated in {what}")))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| corrupt(what.to_owned()))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, KeyError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self, what: &str) -> Result<u16, KeyError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

impl SealedBlob {
    /// Which backend sealed it.
    #[must_use]
    pub fn backend(&self) -> BlobBackend {
        self.backend
    }

    /// What it holds.
    #[must_use]
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// Name of the secret ([`SEED_NAME`] for the seed).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// PCR indices (SHA-256 bank) of the sealing policy.
    #[must_use]
    pub fn pcrs(&self) -> &[u8] {
        &self.pcrs
    }

    /// Digest of the PCR values the secret was sealed to.
    #[must_use]
    pub fn pcr_digest(&self) -> &[u8; 32] {
        &self.pcr_digest
    }

    /// Canonical encoding (see the module docs).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.name.len()
                + 1
                + self.pcrs.len()
                + 32
                + 4
                + self.public.len()
                + self.private.len()
                + 32,
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match self.backend {
            BlobBackend::Tpm => 1,
            BlobBackend::Soft => 2,
        });
        out.push(self.kind.byte());
        // Lengths are bounded by construction (validate() ran in new/decode).
        out.push(u8::try_from(self.name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.name.as_bytes());
        out.push(u8::try_from(self.pcrs.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.pcrs);
        out.extend_from_slice(&self.pcr_digest);
        out.extend_from_slice(
            &u16::try_from(self.public.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.public);
        out.extend_from_slice(
            &u16::try_from(self.private.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.private);
        let sum = checksum(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Strict decoder of [`SealedBlob::encode`]'s output.
    ///
    /// # Errors
    /// [`KeyError::BlobCorrupt`] on any deviation from the canonical layout
    /// or a checksum mismatch.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyError> {
        let body_len = bytes
            .len()
            .checked_sub(32)
            .ok_or_else(|| corrupt("shorter than its checksum"))?;
        let (body, sum) = bytes.split_at(body_len);
        if checksum(body).as_slice() != sum {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader { buf: body, pos: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(corrupt(format!("unsupported version {version}")));
        }
        let backend = match r.u8("backend")? {
            1 => BlobBackend::Tpm,
            2 => BlobBackend::Soft,
            b => return Err(corrupt(format!("unknown backend {b}"))),
        };
        let kind = match r.u8("kind")? {
            1 => BlobKind::Seed,
            2 => BlobKind::Secret,
            k => return Err(corrupt(format!("unknown kind {k}"))),
        };
        let name_len = usize::from(r.u8("name length")?);
        let name = std::str::from_utf8(r.take(name_len, "name")?)
            .map_err(|_| corrupt("name is not utf-8"))?
            .to_owned();
        let pcr_count = usize::from(r.u8("pcr count")?);
        let pcrs = r.take(pcr_count, "pcr list")?.to_vec();
        let mut pcr_digest = [0u8; 32];
        pcr_digest.copy_from_slice(r.take(32, "pcr digest")?);
        let pub_len = usize::from(r.u16("public length")?);
        let public = r.take(pub_len, "public")?.to_vec();
        let priv_len = usize::from(r.u16("private length")?);
        let private = r.take(priv_len, "private")?.to_vec();
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes"));
        }
        let blob = SealedBlob {
            backend,
            kind,
            name,
            pcrs,
            pcr_digest,
            public,
            private,
        };
        blob.validate().map_err(|e| match e {
            KeyError::Config { reason } => corrupt(reason),
            other => other,
        })?;
        Ok(blob)
    }

    /// Checks the invariants the encoding relies on.
    pub(crate) fn validate(&self) -> Result<(), KeyError> {
        check_name(&self.name)?;
        if self.kind == BlobKind::Seed && self.name != SEED_NAME {
            return Err(corrupt("seed blob with a name other than bip32-seed"));
        }
        match self.backend {
            BlobBackend::Tpm => {
                // Link secrets may be bound to the auth value alone; the
                // seed is always bound to measured software.
                if (self.kind == BlobKind::Seed && self.pcrs.is_empty()) || self.pcrs.len() > 24 {
                    return Err(corrupt("tpm seed blob needs 1..=24 pcrs"));
                }
                if self.public.is_empty() || self.public.len() > MAX_TPM_PART {
                    return Err(corrupt("tpm public part length out of range"));
                }
                if self.private.is_empty() || self.private.len() > MAX_TPM_PART {
                    return Err(corrupt("tpm private part length out of range"));
                }
            }
            BlobBackend::Soft => {
                if !self.pcrs.is_empty() || !self.public.is_empty() || self.pcr_digest != [0; 32] {
                    return Err(corrupt("soft blob with tpm fields"));
                }
                if self.private.len() != 64 {
                    return Err(corrupt("soft blob payload must be 64 bytes"));
                }
            }
        }
        if !self.pcrs.windows(2).all(|w| w[0] < w[1]) || self.pcrs.iter().any(|p| *p >= 24) {
            return Err(corrupt("pcr list not strictly ascending below 24"));
        }
        Ok(())
    }
}

fn checksum(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHECKSUM_TAG);
    h.update(body);
    h.finalize().into()
}

/// The 32-byte tag appended to a secret before sealing, binding the unsealed
/// payload to its kind and name: `SHA-256(tag || kind || len || name)`.
pub(crate) fn payload_tag(kind: BlobKind, name: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"spacenode/sealed-secret/v1");
    h.update([kind.byte()]);
    h.update([u8::try_from(name.len()).unwrap_or(u8::MAX)]);
    h.update(name.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SealedBlob {
        SealedBlob {
            backend: BlobBackend::Tpm,
            kind: BlobKind::Secret,
            name: "link-key.0".into(),
            pcrs: vec![0, 7, 23],
            pcr_digest: [3; 32],
            public: vec![1; 90],
            private: vec![2; 120],
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let e = b.encode();
        assert_eq!(SealedBlob::decode(&e).unwrap(), b);
        assert!(!format!("{b:?}").contains("2, 2"));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let e = sample().encode();
        for i in 0..e.len() {
            for bit in 0..8 {
                let mut c = e.clone();
                c[i] ^= 1 << bit;
                assert!(
                    matches!(SealedBlob::decode(&c), Err(KeyError::BlobCorrupt { .. })),
                    "flip at {i}/{bit} accepted"
                );
            }
        }
    }

    #[test]
    fn truncation_and_trailing_rejected() {
        let e = sample().encode();
        for n in 0..e.len() {
            assert!(SealedBlob::decode(&e[..n]).is_err());
        }
        let mut t = e.clone();
        t.push(0);
        assert!(SealedBlob::decode(&t).is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("link.aes256-0").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Upper").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_name("sp ace").is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SealedBlob::decode(&bytes);
        }

        #[test]
        fn encode_decode_identity(
            pcrs in proptest::collection::btree_set(0u8..24, 1..5),
            public in proptest::collection::vec(any::<u8>(), 1..200),
            private in proptest::collection::vec(any::<u8>(), 1..200),
            digest in any::<[u8; 32]>(),
        ) {
            let b = SealedBlob {
                backend: BlobBackend::Tpm,
                kind: BlobKind::Seed,
                name: SEED_NAME.into(),
                pcrs: pcrs.into_iter().collect(),
                pcr_digest: digest,
                public,
                private,
            };
            let e = b.encode();
            prop_assert_eq!(SealedBlob::decode(&e).unwrap().encode(), e);
        }
    }
}
