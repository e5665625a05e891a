//! Attestation: what a quote binds, how it travels, and the pure verifier
//! the ground tool runs (no TPM on the ground).
//!
//! Owns: the qualifying-data binding ([`binding_digest`]), the canonical
//! encoding of an [`Attestation`], parsers for the two TPM structures the
//! ground has to read (TPMT_PUBLIC of the AK, TPMS_ATTEST of a quote) and
//! [`verify_attestation`].
//!
//! Must never: trust anything in an attestation that is not covered by the
//! AK's signature, or by the pinned AK itself. The "reported" PCR values
//! and the bound inputs travel unsigned; they are only believed after the
//! signed `extraData` / `pcrDigest` match what is recomputed from them.
//!
//! Binding (qualifying data of TPM2_Quote, 32 bytes):
//!
//! ```text
//! SHA-256( "spacenode/attest/v1" || 0x00
//!          || nonce (32)
//!          || u16 BE number of xpubs || each xpub in BIP32 serialization (78)
//!          || policy hash (32)
//!          || u64 BE nv counter )
//! ```

use bitcoin::bip32::Xpub;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature as P256Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::VerifyError;
use crate::pcr::{PcrValue, selection_digest};

const BINDING_TAG: &[u8] = b"spacenode/attest/v1\0";
const ATT_MAGIC: &[u8; 4] = b"SNAT";
const ATT_VERSION: u8 = 1;
/// Most xpubs one attestation binds.
pub const MAX_XPUBS: usize = 16;
const MAX_TPM_STRUCT: usize = 1024;

/// TPM_GENERATED_VALUE.
pub const TPM_GENERATED: u32 = 0xFF54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_ECC: u16 = 0x0023;
const TPM_ALG_SHA256: u16 = 0x000B;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_ECDSA: u16 = 0x0018;
const TPM_ECC_NIST_P256: u16 = 0x0003;
const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;

// TPMA_OBJECT bits.
const FIXED_TPM: u32 = 1 << 1;
const FIXED_PARENT: u32 = 1 << 4;
const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const RESTRICTED: u32 = 1 << 16;
const DECRYPT: u32 = 1 << 17;
const SIGN: u32 = 1 << 18;

/// The values a quote binds besides the PCRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The ground's fresh nonce.
    pub nonce: [u8; 32],
    /// The xpubs the node claims, in the order the ground asked for them.
    pub xpubs: Vec<Xpub>,
    /// Hash of the active spending policy (supplied by the daemon).
    pub policy_hash: [u8; 32],
    /// Value of the anti-rollback NV counter when the quote was made.
    pub nv_counter: u64,
}

/// Computes the qualifying data for `binding` (see the module docs).
#[must_use]
pub fn binding_digest(binding: &Binding) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BINDING_TAG);
    h.update(binding.nonce);
    let n = u16::try_from(binding.xpubs.len()).unwrap_or(u16::MAX);
    h.update(n.to_be_bytes());
    for x in &binding.xpubs {
        h.update(x.encode());
    }
    h.update(binding.policy_hash);
    h.update(binding.nv_counter.to_be_bytes());
    h.finalize().into()
}

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        reason: reason.into(),
    }
}

/// Cursor over big-endian TPM structures.
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cur { b, p: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], VerifyError> {
        let end = self
            .p
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| malformed(format!("truncated at {what}")))?;
        let s = self
            .b
            .get(self.p..end)
            .ok_or_else(|| malformed(format!("truncated at {what}")))?;
        self.p = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, VerifyError> {
        let s = self.take(1, what)?;
        Ok(s[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, VerifyError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, VerifyError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, VerifyError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn tpm2b(&mut self, what: &str) -> Result<&'a [u8], VerifyError> {
        let n = usize::from(self.u16(what)?);
        self.take(n, what)
    }
    fn array32(&mut self, what: &str) -> Result<[u8; 32], VerifyError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }
    fn done(&self, what: &str) -> Result<(), VerifyError> {
        if self.p == self.b.len() {
            Ok(())
        } else {
            Err(malformed(format!("trailing bytes after {what}")))
        }
    }
}

fn left_pad_32(v: &[u8], what: &str) -> Result<[u8; 32], VerifyError> {
    if v.len() > 32 {
        return Err(malformed(format!("{what} longer than 32 bytes")));
    }
    let mut a = [0u8; 32];
    let start = 32usize.saturating_sub(v.len());
    a[start..].copy_from_slice(v);
    Ok(a)
}

/// The public area of an attestation key, parsed and checked: a restricted,
/// TPM-bound P-256 ECDSA/SHA-256 signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct AkPublic {
    tpmt: Vec<u8>,
    key: VerifyingKey,
}

impl std::fmt::Debug for AkPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkPublic")
            .field("name", &hex::encode(self.name()))
            .finish()
    }
}

impl AkPublic {
    /// Parses a marshalled TPMT_PUBLIC (the contents of a TPM2B_PUBLIC) and
    /// checks that it is a key a quote may be trusted from.
    ///
    /// # Errors
    /// [`VerifyError::Malformed`] if it does not parse;
    /// [`VerifyError::AkUnsuitable`] if it is not a restricted, fixedTPM,
    /// fixedParent, TPM-generated, sign-only P-256 ECDSA/SHA-256 key.
    pub fn from_tpmt_public(bytes: &[u8]) -> Result<Self, VerifyError> {
        if bytes.len() > MAX_TPM_STRUCT {
            return Err(malformed("ak public too long"));
        }
        let mut c = Cur::new(bytes);
        if c.u16("type")? != TPM_ALG_ECC {
            return Err(VerifyError::AkUnsuitable {
                reason: "not an ecc key",
            });
        }
        if c.u16("nameAlg")? != TPM_ALG_SHA256 {
            return Err(VerifyError::AkUnsuitable {
                reason: "name algorithm is not sha256",
            });
        }
        let attrs = c.u32("objectAttributes")?;
        let required = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN;
        if attrs & required != required {
            return Err(VerifyError::AkUnsuitable {
                reason: "not a restricted tpm-generated fixedtpm signing key",
            });
        }
        if attrs & DECRYPT != 0 {
            return Err(VerifyError::AkUnsuitable {
                reason: "decrypt attribute set",
            });
        }
        let _auth_policy = c.tpm2b("authPolicy")?;
        // TPMS_ECC_PARMS
        let sym = c.u16("symmetric")?;
        if sym != TPM_ALG_NULL {
            return Err(VerifyError::AkUnsuitable {
                reason: "symmetric algorithm on a signing key",
            });
        }
        let scheme = c.u16("scheme")?;
        if scheme != TPM_ALG_ECDSA {
            return Err(VerifyError::AkUnsuitable {
                reason: "scheme is not ecdsa",
            });
        }
        if c.u16("scheme hash")? != TPM_ALG_SHA256 {
            return Err(VerifyError::AkUnsuitable {
                reason: "scheme hash is not sha256",
            });
        }
        if c.u16("curve")? != TPM_ECC_NIST_P256 {
            return Err(VerifyError::AkUnsuitable {
                reason: "curve is not nist p-256",
            });
        }
        let kdf = c.u16("kdf")?;
        if kdf != TPM_ALG_NULL {
            let _kdf_hash = c.u16("kdf hash")?;
        }
        let x = left_pad_32(c.tpm2b("x")?, "x")?;
        let y = left_pad_32(c.tpm2b("y")?, "y")?;
        c.done("ak public")?;
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(&x);
        sec1[33..].copy_from_slice(&y);
        let key = VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|_| malformed("ak point is not on p-256"))?;
        Ok(AkPublic {
            tpmt: bytes.to_vec(),
            key,
        })
    }

    /// The marshalled TPMT_PUBLIC this was parsed from (what the ground pins).
    #[must_use]
    pub fn tpmt_public(&self) -> &[u8] {
        &self.tpmt
    }

    /// The P-256 verifying key.
    #[must_use]
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// TPM name: `nameAlg || SHA-256(TPMT_PUBLIC)` (34 bytes).
    #[must_use]
    pub fn name(&self) -> Vec<u8> {
        let mut n = TPM_ALG_SHA256.to_be_bytes().to_vec();
        n.extend_from_slice(&Sha256::digest(&self.tpmt));
        n
    }

    /// Qualified name of this key as a primary object of the endorsement
    /// hierarchy: `nameAlg || SHA-256(TPM_RH_ENDORSEMENT || name)`. This is
    /// what the TPM writes as `qualifiedSigner` into our quotes.
    #[must_use]
    pub fn qualified_name_endorsement_primary(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(TPM_RH_ENDORSEMENT.to_be_bytes());
        h.update(self.name());
        let mut q = TPM_ALG_SHA256.to_be_bytes().to_vec();
        q.extend_from_slice(&h.finalize());
        q
    }

    /// The key as a PEM SubjectPublicKeyInfo (what `tpm2_checkquote -u`
    /// and OpenSSL read).
    ///
    /// # Errors
    /// [`VerifyError::Malformed`] if encoding fails (should not happen).
    pub fn to_pem(&self) -> Result<String, VerifyError> {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| malformed(format!("pem encoding: {e}")))
    }
}

/// TPMS_CLOCK_INFO from a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered (persisted periodically).
    pub clock: u64,
    /// TPM resets (power cycles) since the last TPM2_Clear.
    pub reset_count: u32,
    /// TPM2_Shutdown(STATE)/Startup(STATE) cycles since the last reset.
    pub restart_count: u32,
    /// Whether `clock` can be trusted not to have gone backwards.
    pub safe: bool,
}

/// A parsed TPMS_ATTEST of type quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// Qualified name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// The qualifying data (our binding).
    pub extra_data: Vec<u8>,
    /// Clock information.
    pub clock: ClockInfo,
    /// TPM firmware version.
    pub firmware_version: u64,
    /// PCR selections: (hash algorithm id, ascending PCR indices).
    pub pcr_selection: Vec<(u16, Vec<u8>)>,
    /// Digest of the selected PCRs.
    pub pcr_digest: Vec<u8>,
}

/// Parses a marshalled TPMS_ATTEST and checks magic and type.
///
/// # Errors
/// [`VerifyError::Malformed`] if it does not parse exactly;
/// [`VerifyError::NotAQuote`] on a wrong magic or type.
pub fn parse_quote(bytes: &[u8]) -> Result<QuoteInfo, VerifyError> {
    if bytes.len() > MAX_TPM_STRUCT {
        return Err(malformed("attest too long"));
    }
    let mut c = Cur::new(bytes);
    let magic = c.u32("magic")?;
    let kind = c.u16("type")?;
    if magic != TPM_GENERATED || kind != TPM_ST_ATTEST_QUOTE {
        return Err(VerifyError::NotAQuote { magic, kind });
    }
    let qualified_signer = c.tpm2b("qualifiedSigner")?.to_vec();
    let extra_data = c.tpm2b("extraData")?.to_vec();
    let clock = ClockInfo {
        clock: c.u64("clock")?,
        reset_count: c.u32("resetCount")?,
        restart_count: c.u32("restartCount")?,
        safe: match c.u8("safe")? {
            0 => false,
            1 => true,
            _ => return Err(malformed("safe is not a TPMI_YES_NO")),
        },
    };
    let firmware_version = c.u64("firmwareVersion")?;
    let count = c.u32("pcrSelect count")?;
    if count > 16 {
        return Err(malformed("too many pcr selections"));
    }
    let mut pcr_selection = Vec::new();
    for _ in 0..count {
        let hash = c.u16("pcr hash")?;
        let size = usize::from(c.u8("sizeofSelect")?);
        if size > 8 {
            return Err(malformed("sizeofSelect too large"));
        }
        let bitmap = c.take(size, "pcrSelect")?;
        let mut idx = Vec::new();
        for (byte_i, byte) in bitmap.iter().enumerate() {
            for bit in 0..8u8 {
                if byte & (1 << bit) != 0 {
                    let i = byte_i
                        .checked_mul(8)
                        .and_then(|v| v.checked_add(usize::from(bit)))
                        .and_then(|v| u8::try_from(v).ok())
                        .ok_or_else(|| malformed("pcr index overflow"))?;
                    idx.push(i);
                }
            }
        }
        pcr_selection.push((hash, idx));
    }
    let pcr_digest = c.tpm2b("pcrDigest")?.to_vec();
    c.done("attest")?;
    Ok(QuoteInfo {
        qualified_signer,
        extra_data,
        clock,
        firmware_version,
        pcr_selection,
        pcr_digest,
    })
}

/// What the node sends the ground for one attestation request: the signed
/// quote, the AK public area, and the inputs needed to recompute the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The binding inputs (nonce, xpubs, policy hash, counter).
    pub binding: Binding,
    /// PCR values the node read when quoting (SHA-256 bank), for diagnosis
    /// only: the verifier trusts the signed digest, not these.
    pub reported_pcrs: Vec<PcrValue>,
    /// Marshalled TPMT_PUBLIC of the AK.
    pub ak_public: Vec<u8>,
    /// Marshalled TPMS_ATTEST exactly as signed by the TPM.
    pub attest: Vec<u8>,
    /// ECDSA signature (r || s, 32 bytes each) over SHA-256(attest).
    pub signature: [u8; 64],
}

impl Attestation {
    /// Canonical encoding for the downlink.
    ///
    /// ```text
    /// "SNAT" | version 1 | nonce 32 | n xpubs u8 | n * 78 | policy hash 32
    /// | nv counter u64 BE | m pcrs u8 | m * (index u8, value 32)
    /// | ak public u16 BE len + bytes | attest u16 BE len + bytes | r||s 64
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(ATT_MAGIC);
        o.push(ATT_VERSION);
        o.extend_from_slice(&self.binding.nonce);
        o.push(u8::try_from(self.binding.xpubs.len()).unwrap_or(u8::MAX));
        for x in &self.binding.xpubs {
            o.extend_from_slice(&x.encode());
        }
        o.extend_from_slice(&self.binding.policy_hash);
        o.extend_from_slice(&self.binding.nv_counter.to_be_bytes());
        o.push(u8::try_from(self.reported_pcrs.len()).unwrap_or(u8::MAX));
        for (i, v) in &self.reported_pcrs {
            o.push(*i);
            o.extend_from_slice(v);
        }
        o.extend_from_slice(
            &u16::try_from(self.ak_public.len())
                .unwrap_or(0)
                .to_be_bytes(),
        );
        o.extend_from_slice(&self.ak_public);
        o.extend_from_slice(&u16::try_from(self.attest.len()).unwrap_or(0).to_be_bytes());
        o.extend_from_slice(&self.attest);
        o.extend_from_slice(&self.signature);
        o
    }

    /// Strict decoder of [`Attestation::encode`].
    ///
    /// # Errors
    /// [`VerifyError::Malformed`] on any deviation.
    pub fn decode(bytes: &[u8]) -> Result<Self, VerifyError> {
        let mut c = Cur::new(bytes);
        if c.take(4, "magic")? != ATT_MAGIC {
            return Err(malformed("bad attestation magic"));
        }
        if c.u8("version")? != ATT_VERSION {
            return Err(malformed("unsupported attestation version"));
        }
        let nonce = c.array32("nonce")?;
        let n = usize::from(c.u8("xpub count")?);
        if n > MAX_XPUBS {
            return Err(malformed("too many xpubs"));
        }
        let mut xpubs = Vec::with_capacity(n);
        for _ in 0..n {
            let x =
                Xpub::decode(c.take(78, "xpub")?).map_err(|e| malformed(format!("xpub: {e}")))?;
            xpubs.push(x);
        }
        let policy_hash = c.array32("policy hash")?;
        let nv_counter = c.u64("nv counter")?;
        let m = usize::from(c.u8("pcr count")?);
        if m > 24 {
            return Err(malformed("too many pcrs"));
        }
        let mut reported_pcrs = Vec::with_capacity(m);
        for _ in 0..m {
            let i = c.u8("pcr index")?;
            let v = c.array32("pcr value")?;
            reported_pcrs.push((i, v));
        }
        let ak_public = c.tpm2b("ak public")?.to_vec();
        let attest = c.tpm2b("attest")?.to_vec();
        let mut signature = [0u8; 64];
        signature.copy_from_slice(c.take(64, "signature")?);
        c.done("attestation")?;
        Ok(Attestation {
            binding: Binding {
                nonce,
                xpubs,
                policy_hash,
                nv_counter,
            },
            reported_pcrs,
            ak_public,
            attest,
            signature,
        })
    }

    /// The signature as a marshalled TPMT_SIGNATURE (ECDSA, SHA-256), the
    /// format `tpm2_checkquote -s` reads.
    #[must_use]
    pub fn tpmt_signature(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(72);
        o.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
        o.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        o.extend_from_slice(&32u16.to_be_bytes());
        o.extend_from_slice(&self.signature[..32]);
        o.extend_from_slice(&32u16.to_be_bytes());
        o.extend_from_slice(&self.signature[32..]);
        o
    }
}

/// What the ground expects of an attestation.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The AK pinned at enrollment.
    pub trusted_ak: &'a AkPublic,
    /// The nonce the ground sent with this request.
    pub nonce: [u8; 32],
    /// Expected PCR values (SHA-256 bank), e.g. from
    /// [`crate::pcr::predict_software_pcr`]; their indices are the expected
    /// selection.
    pub pcrs: &'a [PcrValue],
    /// The policy hash the ground believes is active, if it wants it checked.
    pub policy_hash: Option<[u8; 32]>,
    /// The xpubs the ground enrolled, if it wants them checked.
    pub xpubs: Option<&'a [Xpub]>,
    /// Lowest acceptable NV counter value (the last one the ground saw).
    pub min_nv_counter: Option<u64>,
}

/// What a verified attestation establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The bound xpubs, policy hash and counter (now authenticated).
    pub binding: Binding,
    /// TPM clock information from the quote.
    pub clock: ClockInfo,
    /// TPM firmware version.
    pub firmware_version: u64,
}

/// Verifies an attestation without a TPM.
///
/// Checks, in order: the AK is the pinned one; the ECDSA P-256 signature
/// over TPMS_ATTEST; magic and type; the qualified signer; the nonce (a
/// wrong or replayed quote fails here); `extraData` against the binding
/// recomputed from the expected nonce and the carried xpubs, policy hash and
/// counter; the PCR selection and digest against the expected PCR values;
/// then the optional expectations.
///
/// # Errors
/// The first failing check as a [`VerifyError`].
pub fn verify_attestation(
    att: &Attestation,
    exp: &Expectations<'_>,
) -> Result<Verified, VerifyError> {
    let ak = AkPublic::from_tpmt_public(&att.ak_public)?;
    if ak.tpmt_public() != exp.trusted_ak.tpmt_public() {
        return Err(VerifyError::UnknownAk {
            got: hex::encode(ak.name()),
        });
    }
    let r: [u8; 32] = left_pad_32(&att.signature[..32], "r")?;
    let s: [u8; 32] = left_pad_32(&att.signature[32..], "s")?;
    let sig = P256Signature::from_scalars(r, s).map_err(|_| VerifyError::BadSignature)?;
    exp.trusted_ak
        .verifying_key()
        .verify(&att.attest, &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    let q = parse_quote(&att.attest)?;
    if q.qualified_signer != exp.trusted_ak.qualified_name_endorsement_primary() {
        return Err(VerifyError::SignerMismatch);
    }
    if att.binding.nonce != exp.nonce {
        return Err(VerifyError::NonceMismatch {
            expected: hex::encode(exp.nonce),
            got: hex::encode(att.binding.nonce),
        });
    }
    let recomputed = binding_digest(&Binding {
        nonce: exp.nonce,
        ..att.binding.clone()
    });
    if q.extra_data != recomputed {
        return Err(VerifyError::BindingMismatch);
    }
    let expected_pcrs = crate::pcr::sorted_unique(exp.pcrs)
        .ok_or_else(|| malformed("expected pcr list has duplicates or indices >= 24"))?;
    let expected_idx: Vec<u8> = expected_pcrs.iter().map(|(i, _)| *i).collect();
    let quoted_idx = match q.pcr_selection.as_slice() {
        [(TPM_ALG_SHA256, idx)] => idx.clone(),
        _ => Vec::new(),
    };
    if quoted_idx != expected_idx {
        return Err(VerifyError::PcrSelectionMismatch {
            expected: expected_idx,
            got: quoted_idx,
        });
    }
    let want = selection_digest(&expected_pcrs);
    if q.pcr_digest != want {
        return Err(VerifyError::PcrDigestMismatch {
            expected: hex::encode(want),
            got: hex::encode(&q.pcr_digest),
        });
    }
    if let Some(ph) = exp.policy_hash
        && ph != att.binding.policy_hash
    {
        return Err(VerifyError::UnexpectedBoundValue {
            what: "policy hash",
        });
    }
    if let Some(xs) = exp.xpubs
        && xs != att.binding.xpubs.as_slice()
    {
        return Err(VerifyError::UnexpectedBoundValue { what: "xpubs" });
    }
    if let Some(min) = exp.min_nv_counter
        && att.binding.nv_counter < min
    {
        return Err(VerifyError::UnexpectedBoundValue { what: "nv counter" });
    }
    Ok(Verified {
        binding: att.binding.clone(),
        clock: q.clock,
        firmware_version: q.firmware_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binding_changes_with_every_input() {
        let b = Binding {
            nonce: [1; 32],
            xpubs: vec![],
            policy_hash: [2; 32],
            nv_counter: 3,
        };
        let d = binding_digest(&b);
        let mut c = b.clone();
        c.nonce[0] ^= 1;
        assert_ne!(binding_digest(&c), d);
        let mut c = b.clone();
        c.policy_hash[0] ^= 1;
        assert_ne!(binding_digest(&c), d);
        let mut c = b.clone();
        c.nv_counter = 4;
        assert_ne!(binding_digest(&c), d);
    }

    #[test]
    fn parse_quote_rejects_wrong_magic() {
        let mut q = Vec::new();
        q.extend_from_slice(&0xFF54_4348u32.to_be_bytes());
        q.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        assert!(matches!(
            parse_quote(&q),
            Err(VerifyError::NotAQuote { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Attestation::decode(&bytes);
            let _ = parse_quote(&bytes);
            let _ = AkPublic::from_tpmt_public(&bytes);
        }
    }
}
