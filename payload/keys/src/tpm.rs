//! The TPM 2.0 backend: connection, software measurement, sealing under a
//! PCR + auth-value policy, the anti-rollback NV counter and quotes.
//!
//! Owns: [`Tpm`] (one ESAPI context and the storage primary key),
//! [`TpmConfig`], TCTI string validation, and the TPM object templates.
//!
//! Must never: export a secret (sealed payloads only leave the TPM into a
//! [`SecretBox`], over a salted, encrypted session), create an object that a
//! password alone can use (sealed objects have `userWithAuth` clear: only the
//! PCR + auth-value policy opens them), or define a new NV counter on its
//! own (that would silently reset the rollback anchor).
//!
//! Design choices (see the crate README for the reasoning):
//! - Storage primary: re-created at every connect from a fixed ECC P-256
//!   template in the owner hierarchy. The owner seed makes it the same key
//!   every time, so nothing is persisted in TPM NV and no persistent handle
//!   can be squatted. `TPM2_Clear` changes the owner seed and thereby makes
//!   every sealed blob unloadable — the correct outcome.
//! - Attestation key: a primary key of the endorsement hierarchy from a fixed
//!   restricted P-256 signing template, so it is the same key for the life of
//!   the TPM (the ground pins it once at enrollment) and survives loss of the
//!   database.

use std::convert::TryFrom;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use tss_esapi::{
    Context,
    abstraction::pcr as tss_pcr,
    attributes::{NvIndexAttributesBuilder, ObjectAttributesBuilder, SessionAttributesBuilder},
    constants::{
        CapabilityType, PropertyTag, SessionType, nv_index_type::NvIndexType,
        response_code::Tss2ResponseCodeKind,
    },
    handles::{
        AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PcrHandle,
        SessionHandle, TpmHandle,
    },
    interface_types::{
        algorithm::{HashingAlgorithm, PublicAlgorithm},
        ecc::EccCurve,
        resource_handles::{Hierarchy, NvAuth, Provision},
        session_handles::{AuthSession, PolicySession},
    },
    structures::{
        Auth, CapabilityData, Data, Digest, DigestValues, EccParameter, EccPoint, EccScheme,
        HashScheme, KeyDerivationFunctionScheme, KeyedHashScheme, MaxBuffer, MaxNvBuffer,
        NvPublicBuilder, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private, Public,
        PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
        Signature, SignatureScheme, SymmetricDefinition, SymmetricDefinitionObject,
    },
    tcti_ldr::TctiNameConf,
    traits::{Marshall, UnMarshall},
};
use zeroize::Zeroizing;

use crate::Profile;
use crate::attest::{AkPublic, Attestation, Binding, binding_digest};
use crate::blob::{BlobBackend, BlobKind, SEED_NAME, SealedBlob, check_name, payload_tag};
use crate::error::{KeyError, tss_kind};
use crate::pcr::{PcrValue, predict_software_pcr, selection_digest};
use crate::rollback::{EpochStatus, check_epoch};
use crate::secret_mem::{SecretBox, scrub_freed_heap, scrub_stack};

/// A 32-byte secret (seed or link key) in locked, non-dumpable memory.
pub type Secret32 = SecretBox<32>;

/// Default resettable PCR for the daemon's self-measurement (PC Client PCR
/// 23, "application support", resettable at locality 0).
pub const DEFAULT_SOFTWARE_PCR: u8 = 23;
/// Default NV index of the anti-rollback counter (owner range; "SN").
pub const DEFAULT_NV_COUNTER_INDEX: u32 = 0x0100_534E;
/// Default NV index of the policy anchor (owner range, next to the
/// counter).
pub const DEFAULT_NV_ANCHOR_INDEX: u32 = 0x0100_534F;
/// Largest record the policy anchor index holds.
pub const NV_ANCHOR_MAX: usize = 96;
/// Size of the anchor index: a length byte, then the record, zero-padded.
const NV_ANCHOR_SIZE: usize = 1 + NV_ANCHOR_MAX;
const SEED_DOMAIN: &[u8] = b"spacenode/seed/v1";

/// An authorization value, redacted in `Debug` and zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthValue(Zeroizing<Vec<u8>>);

impl AuthValue {
    /// Wraps up to 32 bytes (the SHA-256 digest size, the TPM's limit for
    /// objects with a SHA-256 name algorithm).
    ///
    /// # Errors
    /// [`KeyError::Config`] if longer than 32 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() > 32 {
            return Err(KeyError::Config {
                reason: format!("auth value is {} bytes, at most 32", bytes.len()),
            });
        }
        Ok(AuthValue(Zeroizing::new(bytes.to_vec())))
    }

    fn to_tss(&self) -> Result<Auth, KeyError> {
        Auth::try_from(self.0.as_slice()).map_err(|e| KeyError::Config {
            reason: format!("auth value: {e}"),
        })
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for AuthValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthValue([REDACTED; {} bytes])", self.0.len())
    }
}

/// Which PCRs a sealed object's policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SealBinding {
    /// All policy PCRs, including the daemon's software measurement.
    Software,
    /// The link PCRs ([`TpmConfig::link_pcrs`], by default none: then only
    /// the auth value protects it).
    Boot,
}

/// Configuration of the TPM backend (validated by [`Tpm::connect`]).
#[derive(Debug, Clone)]
pub struct TpmConfig {
    /// TCTI: `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// The resettable PCR the daemon measures itself into (16 or 23).
    pub software_pcr: u8,
    /// PCRs (SHA-256 bank) the sealing policy and quotes cover. Must contain
    /// `software_pcr`; on the flight image add the measured-boot PCRs.
    pub policy_pcrs: Vec<u8>,
    /// PCRs the link keys are sealed to (never the software PCR). Default
    /// none: a node whose boot chain or software changed must still hear
    /// the ground and report its safe mode; the seed needs `policy_pcrs`.
    pub link_pcrs: Vec<u8>,
    /// NV index of the anti-rollback counter.
    pub nv_counter_index: u32,
    /// NV index of the policy anchor (an ordinary index, see
    /// [`Tpm::read_anchor`]).
    pub nv_anchor_index: u32,
    /// Auth value of sealed objects (PolicyAuthValue). The objects are not
    /// DA-protected (power cuts would lock them away), so use a random
    /// value of 32 bytes, not a memorable one.
    pub seal_auth: AuthValue,
    /// Owner hierarchy auth, if the owner hierarchy has one.
    pub owner_auth: AuthValue,
    /// Endorsement hierarchy auth, if the endorsement hierarchy has one.
    pub endorsement_auth: AuthValue,
}

impl TpmConfig {
    /// A configuration with the defaults (PCR 23 only, default NV index,
    /// empty hierarchy auths) for the given TCTI and seal auth value.
    #[must_use]
    pub fn new(tcti: impl Into<String>, seal_auth: AuthValue) -> Self {
        TpmConfig {
            tcti: tcti.into(),
            software_pcr: DEFAULT_SOFTWARE_PCR,
            policy_pcrs: vec![DEFAULT_SOFTWARE_PCR],
            link_pcrs: Vec::new(),
            nv_counter_index: DEFAULT_NV_COUNTER_INDEX,
            nv_anchor_index: DEFAULT_NV_ANCHOR_INDEX,
            seal_auth,
            owner_auth: AuthValue::default(),
            endorsement_auth: AuthValue::default(),
        }
    }

    fn validate(&self) -> Result<(), KeyError> {
        let cfg = |reason: String| Err(KeyError::Config { reason });
        if self.software_pcr != 16 && self.software_pcr != 23 {
            return cfg(format!(
                "software pcr {} is not a pcr resettable at locality 0 (16 or 23)",
                self.software_pcr
            ));
        }
        if self.policy_pcrs.is_empty()
            || !self.policy_pcrs.windows(2).all(|w| w[0] < w[1])
            || self.policy_pcrs.iter().any(|p| *p >= 24)
        {
            return cfg("policy pcrs must be non-empty, strictly ascending, below 24".into());
        }
        if !self.policy_pcrs.contains(&self.software_pcr) {
            return cfg("policy pcrs must contain the software pcr".into());
        }
        if !self.link_pcrs.windows(2).all(|w| w[0] < w[1])
            || !self.link_pcrs.iter().all(|p| self.policy_pcrs.contains(p))
            || self.link_pcrs.contains(&self.software_pcr)
        {
            return cfg(
                "link pcrs must be strictly ascending policy pcrs other than the software pcr"
                    .into(),
            );
        }
        for (what, index) in [
            ("counter", self.nv_counter_index),
            ("anchor", self.nv_anchor_index),
        ] {
            if !(0x0100_0000..=0x01BF_FFFF).contains(&index) {
                return cfg(format!(
                    "nv {what} index {index:#010x} is not an nv index handle"
                ));
            }
        }
        if self.nv_counter_index == self.nv_anchor_index {
            return cfg("nv counter and anchor indices must differ".into());
        }
        Ok(())
    }
}

/// Flushes transient objects left loaded by an earlier process. Without a
/// resource manager (swtpm's socket, a bare /dev/tpm0) a daemon killed with
/// -9 leaves its primary key and sealed objects in the TPM's few object
/// slots, and after a couple of crashes nothing can be loaded any more.
/// Through /dev/tpmrm0 only this process's own handles are visible, so
/// there this finds nothing. The daemon is the TPM's only user.
fn flush_stale_objects(ctx: &mut Context) {
    const TRANSIENT_FIRST: u32 = 0x8000_0000;
    let Ok((CapabilityData::Handles(list), _)) =
        ctx.get_capability(CapabilityType::Handles, TRANSIENT_FIRST, 64)
    else {
        return;
    };
    for handle in list.into_inner() {
        if !matches!(handle, TpmHandle::Transient(_)) {
            continue;
        }
        match ctx.execute_without_session(|c| c.tr_from_tpm_public(handle)) {
            Ok(obj) => {
                if let Err(e) = ctx.flush_context(obj) {
                    tracing::warn!(error = %e, "cannot flush a stale tpm object");
                } else {
                    tracing::info!(
                        handle = format!("{:#010x}", u32::from(handle)),
                        "flushed a tpm object left by an earlier run"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot address a stale tpm object"),
        }
    }
}

/// Validates a TCTI string and converts it for the TSS. Accepted forms:
/// `device:/absolute/path` and `swtpm:host=HOST,port=PORT` (both keys
/// required, port 1..=65534 because swtpm also uses PORT+1).
///
/// # Errors
/// [`KeyError::InvalidTcti`] for anything else.
pub fn parse_tcti(conf: &str) -> Result<TctiNameConf, KeyError> {
    let bad = |reason: &'static str| KeyError::InvalidTcti {
        conf: conf.to_owned(),
        reason,
    };
    if let Some(path) = conf.strip_prefix("device:") {
        if !path.starts_with('/') || path.contains([',', ' ', '\0']) {
            return Err(bad("device path must be absolute without ',' or spaces"));
        }
    } else if let Some(rest) = conf.strip_prefix("swtpm:") {
        let (mut host, mut port) = (None, None);
        for kv in rest.split(',') {
            match kv.split_once('=') {
                Some(("host", h)) if host.is_none() && !h.is_empty() => host = Some(h),
                Some(("port", p)) if port.is_none() => {
                    let p: u16 = p.parse().map_err(|_| bad("port is not a number"))?;
                    if p == 0 || p == u16::MAX {
                        return Err(bad("port must be 1..=65534"));
                    }
                    port = Some(p);
                }
                _ => return Err(bad("expected host=HOST,port=PORT")),
            }
        }
        if host.is_none() || port.is_none() {
            return Err(bad("swtpm needs both host= and port="));
        }
    } else {
        return Err(bad("expected device:PATH or swtpm:host=HOST,port=PORT"));
    }
    TctiNameConf::from_str(conf).map_err(|_| bad("rejected by the tss tcti parser"))
}

fn tss(op: &'static str) -> impl Fn(tss_esapi::Error) -> KeyError {
    move |e| KeyError::from_tss(op, e)
}

fn pcr_handle(index: u8) -> Result<PcrHandle, KeyError> {
    match index {
        16 => Ok(PcrHandle::Pcr16),
        23 => Ok(PcrHandle::Pcr23),
        other => Err(KeyError::Config {
            reason: format!("pcr {other} is not resettable here"),
        }),
    }
}

fn pcr_selection(indices: &[u8]) -> Result<PcrSelectionList, KeyError> {
    let slots = indices
        .iter()
        .map(|i| {
            1u32.checked_shl(u32::from(*i))
                .and_then(|bit| PcrSlot::try_from(bit).ok())
                .ok_or_else(|| KeyError::Config {
                    reason: format!("pcr {i} out of range"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(tss("pcr selection"))
}

fn storage_primary_template() -> Result<Public, KeyError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(tss("storage primary attributes"))?;
    let params = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
        .with_ecc_scheme(EccScheme::Null)
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_decryption_key(true)
        .with_restricted(true)
        .build()
        .map_err(tss("storage primary parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(zero_point()?)
        .build()
        .map_err(tss("storage primary template"))
}

fn zero_point() -> Result<EccPoint, KeyError> {
    let z = || EccParameter::try_from(vec![0u8; 32]).map_err(tss("ecc point"));
    Ok(EccPoint::new(z()?, z()?))
}

fn ak_template() -> Result<Public, KeyError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()
        .map_err(tss("ak attributes"))?;
    let params = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(
            EccScheme::create(
                tss_esapi::interface_types::algorithm::EccSchemeAlgorithm::EcDsa,
                Some(HashingAlgorithm::Sha256),
                None,
            )
            .map_err(tss("ak scheme"))?,
        )
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .with_restricted(true)
        .build()
        .map_err(tss("ak parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(zero_point()?)
        .build()
        .map_err(tss("ak template"))
}

fn sealed_object_template(policy: Digest) -> Result<Public, KeyError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        // Data is supplied, not generated by the TPM.
        .with_sensitive_data_origin(false)
        // Only the policy (PCRs + auth value) authorizes use; never the auth
        // value alone.
        .with_user_with_auth(false)
        .with_admin_with_policy(true)
        // Not DA-protected. Every power cut is a non-orderly TPM shutdown,
        // which the TPM counts as a failed authorization at the next
        // start-up; a node cycling through brown-outs would lock itself
        // out of its seed and link keys (tests/seal.rs shows it with a
        // DA-protected object after two cuts). DA protects low-entropy
        // human PINs; our auth value is a machine secret of up to 32
        // random bytes and the PCR policy is the real gate.
        .with_no_da(true)
        .build()
        .map_err(tss("sealed object attributes"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(tss("sealed object template"))
}

/// Dictionary-attack state of the TPM, for housekeeping telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaStatus {
    /// Whether the TPM currently refuses DA-protected authorizations.
    pub in_lockout: bool,
    /// Current failed-authorization count.
    pub failed_tries: u32,
    /// Count at which lockout starts.
    pub max_tries: u32,
    /// Seconds after which one failure is forgotten.
    pub recovery_seconds: u32,
}

/// A connection to the TPM with the storage primary key loaded.
pub struct Tpm {
    ctx: Context,
    config: TpmConfig,
    primary: KeyHandle,
    counter: Option<NvIndexHandle>,
    anchor: Option<NvIndexHandle>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm").field("config", &self.config).finish()
    }
}

impl Tpm {
    /// Connects through the configured TCTI, checks that a TPM answers, and
    /// re-creates the deterministic storage primary key.
    ///
    /// # Errors
    /// [`KeyError::InvalidTcti`] or [`KeyError::Config`] for a bad
    /// configuration (in the flight profile, only `device:` TCTIs are
    /// allowed); [`KeyError::NoTpm`] if nothing answers;
    /// [`KeyError::TpmLockout`] / [`KeyError::Tpm`] if the primary key cannot
    /// be created.
    pub fn connect(config: TpmConfig, profile: Profile) -> Result<Self, KeyError> {
        config.validate()?;
        let tcti = parse_tcti(&config.tcti)?;
        if profile == Profile::Flight && !matches!(tcti, TctiNameConf::Device(_)) {
            return Err(KeyError::InvalidTcti {
                conf: config.tcti.clone(),
                reason: "the flight profile only allows a device tcti",
            });
        }
        let no_tpm = |e: tss_esapi::Error| KeyError::NoTpm {
            tcti: config.tcti.clone(),
            detail: e.to_string(),
        };
        let mut ctx = Context::new(tcti).map_err(no_tpm)?;
        // The TCTI may connect lazily: prove that a TPM answers.
        ctx.get_capability(
            CapabilityType::TpmProperties,
            PropertyTag::Manufacturer.into(),
            1,
        )
        .map_err(no_tpm)?;
        if !config.owner_auth.is_empty() {
            ctx.tr_set_auth(AuthHandle::Owner.into(), config.owner_auth.to_tss()?)
                .map_err(tss("set owner auth"))?;
        }
        if !config.endorsement_auth.is_empty() {
            ctx.tr_set_auth(
                AuthHandle::Endorsement.into(),
                config.endorsement_auth.to_tss()?,
            )
            .map_err(tss("set endorsement auth"))?;
        }
        flush_stale_objects(&mut ctx);
        let template = storage_primary_template()?;
        let primary = ctx
            .execute_with_nullauth_session(|c| {
                c.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(tss("create storage primary"))?
            .key_handle;
        tracing::debug!(tcti = %config.tcti, "tpm connected, storage primary ready");
        Ok(Tpm {
            ctx,
            config,
            primary,
            counter: None,
            anchor: None,
        })
    }

    /// The configuration this connection was made with.
    #[must_use]
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    /// `TPM2_GetRandom` of `n` bytes (looped: a TPM returns at most one
    /// digest's worth per call). One call of up to 32 bytes is one TPM round
    /// trip, which the benchmark uses as its unit.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the TPM fails.
    pub fn get_random(&mut self, n: usize) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        while out.len() < n {
            let want = n.saturating_sub(out.len()).min(32);
            let chunk = self
                .ctx
                .execute_without_session(|c| c.get_random(want))
                .map_err(|e| KeyError::Random {
                    source_name: "tpm",
                    detail: e.to_string(),
                })?;
            if chunk.is_empty() {
                return Err(KeyError::Random {
                    source_name: "tpm",
                    detail: "tpm returned no bytes".into(),
                });
            }
            out.extend_from_slice(chunk.value());
        }
        out.truncate(n);
        Ok(out)
    }

    /// A fresh 32-byte secret: `SHA-256(domain || 32 bytes TPM RNG || 32
    /// bytes OS RNG)`, written straight into locked memory. Either source
    /// alone being good is enough.
    ///
    /// # Errors
    /// [`KeyError::Random`] or [`KeyError::SecretMemory`].
    pub fn fresh_secret(&mut self) -> Result<Secret32, KeyError> {
        let tpm_part = self.get_random(32)?;
        let mut os_part = Zeroizing::new([0u8; 32]);
        {
            use rand::TryRngCore;
            rand::rngs::OsRng
                .try_fill_bytes(os_part.as_mut())
                .map_err(|e| KeyError::Random {
                    source_name: "os",
                    detail: e.to_string(),
                })?;
        }
        let out = SecretBox::new_with(|buf| {
            let mut h = Sha256::new();
            h.update(SEED_DOMAIN);
            h.update(tpm_part.as_slice());
            h.update(os_part.as_slice());
            h.finalize_into(sha2::digest::generic_array::GenericArray::from_mut_slice(
                buf.as_mut_slice(),
            ));
            Ok(())
        });
        scrub_stack();
        out
    }

    /// Measures the daemon into the software PCR: resets it (locality 0),
    /// extends the binary hash, then the configuration hash. Returns the
    /// resulting value, which equals
    /// [`crate::pcr::predict_software_pcr`]`(binary_hash, config_hash)`.
    ///
    /// This is self-measurement; read the crate README for what it does and
    /// does not protect against.
    ///
    /// # Errors
    /// [`KeyError::Tpm`] if reset/extend fail or the PCR does not end up at
    /// the predicted value (someone extended it concurrently).
    pub fn measure_software(
        &mut self,
        binary_hash: &[u8; 32],
        config_hash: &[u8; 32],
    ) -> Result<[u8; 32], KeyError> {
        let handle = pcr_handle(self.config.software_pcr)?;
        let digest_values = |d: &[u8; 32]| -> Result<DigestValues, KeyError> {
            let mut v = DigestValues::new();
            v.set(
                HashingAlgorithm::Sha256,
                Digest::try_from(d.to_vec()).map_err(tss("pcr digest"))?,
            );
            Ok(v)
        };
        let b = digest_values(binary_hash)?;
        let c = digest_values(config_hash)?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_reset(handle)?;
                ctx.pcr_extend(handle, b)?;
                ctx.pcr_extend(handle, c)
            })
            .map_err(tss("measure software (pcr reset/extend)"))?;
        let expected = predict_software_pcr(binary_hash, config_hash);
        let got = self.read_pcrs(&[self.config.software_pcr])?;
        match got.first() {
            Some((_, v)) if *v == expected => {
                tracing::info!(
                    pcr = self.config.software_pcr,
                    value = %hex::encode(expected),
                    "software measured"
                );
                Ok(expected)
            }
            _ => Err(KeyError::Tpm {
                op: "measure software",
                detail: "pcr value after measurement differs from the prediction".into(),
            }),
        }
    }

    /// Reads PCR values of the SHA-256 bank, ascending by index.
    ///
    /// # Errors
    /// [`KeyError::Tpm`] on failure or if a value is missing.
    pub fn read_pcrs(&mut self, indices: &[u8]) -> Result<Vec<PcrValue>, KeyError> {
        let sel = pcr_selection(indices)?;
        let data = self
            .ctx
            .execute_without_session(|c| tss_pcr::read_all(c, sel))
            .map_err(tss("pcr read"))?;
        let bank = data
            .pcr_bank(HashingAlgorithm::Sha256)
            .ok_or_else(|| KeyError::Tpm {
                op: "pcr read",
                detail: "no sha256 bank in the response".into(),
            })?;
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = Vec::with_capacity(sorted.len());
        for i in sorted {
            let slot = 1u32
                .checked_shl(u32::from(i))
                .and_then(|b| PcrSlot::try_from(b).ok())
                .ok_or_else(|| KeyError::Config {
                    reason: format!("pcr {i} out of range"),
                })?;
            let d = bank.get_digest(slot).ok_or_else(|| KeyError::Tpm {
                op: "pcr read",
                detail: format!("pcr {i} missing in the response"),
            })?;
            let v: [u8; 32] = d.value().try_into().map_err(|_| KeyError::Tpm {
                op: "pcr read",
                detail: format!("pcr {i} is not 32 bytes"),
            })?;
            out.push((i, v));
        }
        Ok(out)
    }

    /// Starts a session salted with the storage primary (so its session key
    /// is unknown to a bus observer) with AES-128-CFB parameter encryption.
    fn salted_session(
        &mut self,
        kind: SessionType,
        decrypt: bool,
    ) -> Result<AuthSession, KeyError> {
        let s = self
            .ctx
            .start_auth_session(
                Some(self.primary),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tss("start salted session"))?
            .ok_or_else(|| KeyError::Tpm {
                op: "start salted session",
                detail: "no session returned".into(),
            })?;
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_decrypt(decrypt)
            .with_encrypt(true)
            .with_continue_session(true)
            .build();
        self.ctx
            .tr_sess_set_attributes(s, attrs, mask)
            .map_err(tss("set session attributes"))?;
        Ok(s)
    }

    /// Scrubs the plaintext that libtss2 leaves behind after a command
    /// that carried a secret: the SYS command/response buffer (overwritten by
    /// a harmless `TPM2_Hash` of zeros), freed output structures on the C
    /// heap, and this thread's dead stack. Best effort; see the README.
    fn scrub_tss_residue(&mut self) {
        if let Ok(zeros) = MaxBuffer::try_from(vec![0u8; 512]) {
            let r = self.ctx.execute_without_session(|c| {
                c.hash(zeros, HashingAlgorithm::Sha256, Hierarchy::Null)
            });
            if let Err(e) = r {
                tracing::warn!(error = %e, "tpm scrub command failed");
            }
        }
        // Every tcache-sized class (glibc: requests up to 1032 bytes); the
        // output struct alone (TPM2B_SENSITIVE_DATA) was not enough in the
        // core-dump test.
        scrub_freed_heap(1040, 16);
        scrub_stack();
    }

    fn flush(&mut self, h: ObjectHandle) {
        if let Err(e) = self.ctx.flush_context(h) {
            tracing::warn!(error = %e, "tpm flush failed");
        }
    }

    /// The PCR values a new seal binds to: the current values of the policy
    /// PCRs, with the software PCR replaced by `software_value` if given
    /// (re-sealing for a software update).
    fn target_pcrs(
        &mut self,
        software_value: Option<[u8; 32]>,
        binding: SealBinding,
    ) -> Result<Vec<PcrValue>, KeyError> {
        let pcrs: Vec<u8> = match binding {
            SealBinding::Software => self.config.policy_pcrs.clone(),
            SealBinding::Boot => self.config.link_pcrs.clone(),
        };
        if pcrs.is_empty() {
            return Ok(Vec::new());
        }
        let mut values = self.read_pcrs(&pcrs)?;
        if let Some(v) = software_value {
            for (i, val) in &mut values {
                if *i == self.config.software_pcr {
                    *val = v;
                }
            }
        }
        Ok(values)
    }

    /// Policy digest for PolicyPCR(values) + PolicyAuthValue, computed by
    /// the TPM in a trial session.
    fn policy_digest(&mut self, values: &[PcrValue]) -> Result<Digest, KeyError> {
        let indices: Vec<u8> = values.iter().map(|(i, _)| *i).collect();
        let pcr_policy = if indices.is_empty() {
            None
        } else {
            let sel = pcr_selection(&indices)?;
            let pcr_digest = Digest::try_from(selection_digest(values).to_vec())
                .map_err(tss("policy pcr digest"))?;
            Some((sel, pcr_digest))
        };
        let trial = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Trial,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tss("start trial session"))?
            .ok_or_else(|| KeyError::Tpm {
                op: "start trial session",
                detail: "no session returned".into(),
            })?;
        let result = (|| {
            let ps = PolicySession::try_from(trial).map_err(tss("trial session"))?;
            self.ctx
                .execute_without_session(|c| {
                    if let Some((sel, pcr_digest)) = pcr_policy {
                        c.policy_pcr(ps, pcr_digest, sel)?;
                    }
                    c.policy_auth_value(ps)?;
                    c.policy_get_digest(ps)
                })
                .map_err(tss("trial policy"))
        })();
        self.flush(SessionHandle::from(trial).into());
        result
    }

    /// Seals `secret` (kind/name bound by a tag inside the sealed payload)
    /// under PolicyPCR(policy PCRs) + PolicyAuthValue.
    fn seal_payload(
        &mut self,
        kind: BlobKind,
        name: &str,
        secret: &[u8; 32],
        software_value: Option<[u8; 32]>,
        binding: SealBinding,
    ) -> Result<SealedBlob, KeyError> {
        check_name(name)?;
        let values = self.target_pcrs(software_value, binding)?;
        let policy = self.policy_digest(&values)?;
        let public = sealed_object_template(policy)?;
        let mut payload = Zeroizing::new(Vec::with_capacity(64));
        payload.extend_from_slice(secret);
        payload.extend_from_slice(&payload_tag(kind, name));
        let sensitive =
            SensitiveData::try_from(std::mem::take(&mut *payload)).map_err(tss("sealed data"))?;
        let auth = self.config.seal_auth.to_tss()?;
        let session = self.salted_session(SessionType::Hmac, true)?;
        let primary = self.primary;
        let created = self.ctx.execute_with_session(Some(session), |c| {
            c.create(primary, public, Some(auth), Some(sensitive), None, None)
        });
        self.flush(SessionHandle::from(session).into());
        self.scrub_tss_residue();
        let created = created.map_err(tss("create sealed object"))?;
        let blob = SealedBlob {
            backend: BlobBackend::Tpm,
            kind,
            name: name.to_owned(),
            pcrs: values.iter().map(|(i, _)| *i).collect(),
            pcr_digest: selection_digest(&values),
            public: created
                .out_public
                .marshall()
                .map_err(tss("marshal public"))?,
            private: created.out_private.value().to_vec(),
        };
        blob.validate()?;
        tracing::info!(name, pcrs = ?blob.pcrs, "secret sealed");
        Ok(blob)
    }

    /// Unseals a blob into locked memory, checking its kind and name.
    fn unseal_payload(
        &mut self,
        blob: &SealedBlob,
        kind: BlobKind,
        name: &str,
    ) -> Result<Secret32, KeyError> {
        if blob.backend != BlobBackend::Tpm {
            return Err(KeyError::BlobMismatch {
                expected: "a tpm blob".into(),
                found: "a soft-backend blob".into(),
            });
        }
        if blob.kind != kind || blob.name != name {
            return Err(KeyError::BlobMismatch {
                expected: format!("{kind:?} {name:?}"),
                found: format!("{:?} {:?}", blob.kind, blob.name),
            });
        }
        let public = Public::unmarshall(&blob.public).map_err(|e| KeyError::BlobCorrupt {
            reason: format!("public part does not unmarshal: {e}"),
        })?;
        check_sealed_public(&public)?;
        let private =
            Private::try_from(blob.private.clone()).map_err(|e| KeyError::BlobCorrupt {
                reason: format!("private part: {e}"),
            })?;
        let primary = self.primary;
        let loaded = self
            .ctx
            .execute_with_nullauth_session(|c| c.load(primary, private, public.clone()))
            .map_err(|e| match tss_kind(&e) {
                Some(Tss2ResponseCodeKind::Lockout) => KeyError::TpmLockout { op: "load" },
                _ => KeyError::BlobCorrupt {
                    reason: format!(
                        "tpm refused to load it (corrupt, or sealed by another tpm or owner seed): {e}"
                    ),
                },
            })?;
        let result = self.unseal_loaded(blob, loaded, &public);
        self.flush(loaded.into());
        self.scrub_tss_residue();
        let payload = result?;
        // Layout: secret (32) || tag (32).
        let (secret, tag) = payload.expose().split_at(32);
        if tag != payload_tag(kind, name) {
            return Err(KeyError::BlobMismatch {
                expected: format!("{kind:?} {name:?}"),
                found: "a payload sealed under another kind or name".into(),
            });
        }
        SecretBox::new_with(|b| {
            b.copy_from_slice(secret);
            Ok(())
        })
    }

    fn unseal_loaded(
        &mut self,
        blob: &SealedBlob,
        handle: KeyHandle,
        public: &Public,
    ) -> Result<SecretBox<64>, KeyError> {
        let sel = if blob.pcrs.is_empty() {
            None
        } else {
            Some(pcr_selection(&blob.pcrs)?)
        };
        let session = self.salted_session(SessionType::Policy, false)?;
        let r = (|| {
            let ps = PolicySession::try_from(session).map_err(tss("policy session"))?;
            let current = self
                .ctx
                .execute_without_session(|c| {
                    if let Some(sel) = sel {
                        c.policy_pcr(ps, Digest::default(), sel)?;
                    }
                    c.policy_auth_value(ps)?;
                    c.policy_get_digest(ps)
                })
                .map_err(tss("policy pcr"))?;
            if current.value() != public.auth_policy().value() {
                let now = self.read_pcrs(&blob.pcrs)?;
                return Err(KeyError::PcrMismatch {
                    pcrs: blob.pcrs.clone(),
                    sealed: hex::encode(blob.pcr_digest),
                    current: hex::encode(selection_digest(&now)),
                });
            }
            self.ctx
                .tr_set_auth(handle.into(), self.config.seal_auth.to_tss()?)
                .map_err(tss("set object auth"))?;
            let data = self
                .ctx
                .execute_with_session(Some(session), |c| c.unseal(handle.into()))
                .map_err(|e| match tss_kind(&e) {
                    Some(Tss2ResponseCodeKind::PolicyFail)
                    | Some(Tss2ResponseCodeKind::PcrChanged) => KeyError::PcrMismatch {
                        pcrs: blob.pcrs.clone(),
                        sealed: hex::encode(blob.pcr_digest),
                        current: "changed during unseal".into(),
                    },
                    _ => KeyError::from_tss("unseal", e),
                })?;
            if data.len() != 64 {
                return Err(KeyError::BlobCorrupt {
                    reason: format!("unsealed payload is {} bytes, expected 64", data.len()),
                });
            }
            SecretBox::<64>::new_with(|b| {
                b.copy_from_slice(data.value());
                Ok(())
            })
        })();
        self.flush(SessionHandle::from(session).into());
        r
    }

    /// Generates a fresh BIP32 seed (TPM RNG mixed with OS RNG) and seals it
    /// to the current policy PCR values. Crate-private: outside this crate
    /// the seed is only reachable through [`crate::TpmKeyStore`].
    pub(crate) fn generate_seed(&mut self) -> Result<(Secret32, SealedBlob), KeyError> {
        let seed = self.fresh_secret()?;
        let blob = self.seal_payload(
            BlobKind::Seed,
            SEED_NAME,
            seed.expose(),
            None,
            SealBinding::Software,
        )?;
        Ok((seed, blob))
    }

    /// Unseals the BIP32 seed (crate-private, see [`Tpm::generate_seed`]).
    pub(crate) fn unseal_seed(&mut self, blob: &SealedBlob) -> Result<Secret32, KeyError> {
        self.unseal_payload(blob, BlobKind::Seed, SEED_NAME)
    }

    /// Seals a seed for a future software PCR value (e.g. the value
    /// [`crate::pcr::predict_software_pcr`] gives for an update's binary and
    /// configuration); the other policy PCRs keep their current values.
    pub(crate) fn seal_seed_for(
        &mut self,
        seed: &Secret32,
        software_pcr_value: [u8; 32],
    ) -> Result<SealedBlob, KeyError> {
        self.seal_payload(
            BlobKind::Seed,
            SEED_NAME,
            seed.expose(),
            Some(software_pcr_value),
            SealBinding::Software,
        )
    }

    /// Seals an existing named 32-byte secret (e.g. a link key provisioned
    /// on the ground) to the current policy PCR values.
    ///
    /// # Errors
    /// [`KeyError::Config`] for a bad name; TPM errors.
    pub fn seal_secret(&mut self, name: &str, secret: &Secret32) -> Result<SealedBlob, KeyError> {
        self.seal_payload(
            BlobKind::Secret,
            name,
            secret.expose(),
            None,
            SealBinding::Software,
        )
    }

    /// Seals a link key: bound to the auth value and the link PCRs
    /// ([`TpmConfig::link_pcrs`], by default none) but NOT to the daemon's
    /// own measurement or, by default, the boot PCRs. Why: a node whose
    /// software or boot chain changed must still hear the ground, or it can
    /// never report why it stopped signing or be told to roll back; the
    /// signing seed stays bound to the measured boot chain and software, so
    /// a changed system can talk but not sign.
    ///
    /// # Errors
    /// As [`Tpm::seal_secret`].
    pub fn seal_link_secret(
        &mut self,
        name: &str,
        secret: &Secret32,
    ) -> Result<SealedBlob, KeyError> {
        self.seal_payload(
            BlobKind::Secret,
            name,
            secret.expose(),
            None,
            SealBinding::Boot,
        )
    }

    /// Generates a fresh named 32-byte secret and seals it.
    ///
    /// # Errors
    /// As [`Tpm::seal_secret`], plus [`KeyError::Random`].
    pub fn generate_secret(&mut self, name: &str) -> Result<(Secret32, SealedBlob), KeyError> {
        check_name(name)?;
        let s = self.fresh_secret()?;
        let blob = self.seal_secret(name, &s)?;
        Ok((s, blob))
    }

    /// Unseals the named secret; fails if the blob holds another name.
    ///
    /// # Errors
    /// As [`Tpm::unseal_seed`].
    pub fn unseal_secret(&mut self, blob: &SealedBlob, name: &str) -> Result<Secret32, KeyError> {
        check_name(name)?;
        self.unseal_payload(blob, BlobKind::Secret, name)
    }

    /// Re-seals a named secret for a future software PCR value.
    ///
    /// # Errors
    /// As [`Tpm::unseal_secret`] and [`Tpm::seal_secret`].
    pub fn reseal_secret_for(
        &mut self,
        blob: &SealedBlob,
        name: &str,
        software_pcr_value: [u8; 32],
    ) -> Result<SealedBlob, KeyError> {
        let s = self.unseal_secret(blob, name)?;
        self.seal_payload(
            BlobKind::Secret,
            name,
            s.expose(),
            Some(software_pcr_value),
            SealBinding::Software,
        )
    }

    // ----- anti-rollback counter -------------------------------------------

    fn counter_handle(&mut self) -> Result<NvIndexHandle, KeyError> {
        if let Some(h) = self.counter {
            return Ok(h);
        }
        let index = self.config.nv_counter_index;
        let tpm_handle = NvIndexTpmHandle::new(index).map_err(|e| KeyError::NvCounter {
            index,
            reason: e.to_string(),
        })?;
        // Ask whether the index exists first, so that a missing counter is
        // a clean answer rather than a TPM error.
        let (caps, _) = self
            .ctx
            .execute_without_session(|c| c.get_capability(CapabilityType::Handles, index, 1))
            .map_err(tss("nv index lookup"))?;
        let defined = match caps {
            CapabilityData::Handles(list) => list
                .into_inner()
                .first()
                .is_some_and(|h| u32::from(*h) == index),
            _ => false,
        };
        if !defined {
            return Err(KeyError::NvCounter {
                index,
                reason: "not defined (provision it first)".into(),
            });
        }
        let obj = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
            .map_err(tss("nv index handle"))?;
        let h = NvIndexHandle::from(obj);
        let (public, _) = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(h))
            .map_err(tss("nv read public"))?;
        let attrs = public.attributes();
        if attrs.index_type().ok() != Some(NvIndexType::Counter) {
            return Err(KeyError::NvCounter {
                index,
                reason: "index exists but is not a counter".into(),
            });
        }
        self.counter = Some(h);
        Ok(h)
    }

    /// First-boot provisioning of the anti-rollback counter: defines the NV
    /// counter index if it does not exist and increments it once if it was
    /// never written. Returns the counter value, which the daemon stores as
    /// the initial database epoch. Idempotent.
    ///
    /// Note: a new counter does not start at 0; the TPM initializes it to
    /// the highest value any counter on this TPM ever had.
    ///
    /// # Errors
    /// [`KeyError::NvCounter`] if the index exists but is not a counter;
    /// TPM errors.
    pub fn provision_counter(&mut self) -> Result<u64, KeyError> {
        let index = self.config.nv_counter_index;
        let handle = match self.counter_handle() {
            Ok(h) => h,
            Err(KeyError::NvCounter { reason, .. }) if reason.starts_with("not defined") => {
                let tpm_handle = NvIndexTpmHandle::new(index).map_err(|e| KeyError::NvCounter {
                    index,
                    reason: e.to_string(),
                })?;
                let attrs = NvIndexAttributesBuilder::new()
                    .with_nv_index_type(NvIndexType::Counter)
                    .with_owner_write(true)
                    .with_owner_read(true)
                    .build()
                    .map_err(tss("nv attributes"))?;
                let public = NvPublicBuilder::new()
                    .with_nv_index(tpm_handle)
                    .with_index_name_algorithm(HashingAlgorithm::Sha256)
                    .with_index_attributes(attrs)
                    .with_data_area_size(8)
                    .build()
                    .map_err(tss("nv public"))?;
                let h = self
                    .ctx
                    .execute_with_nullauth_session(|c| {
                        c.nv_define_space(Provision::Owner, None, public)
                    })
                    .map_err(tss("nv define counter"))?;
                tracing::warn!(index = format_args!("{index:#010x}"), "nv counter defined");
                self.counter = Some(h);
                h
            }
            Err(e) => return Err(e),
        };
        let (public, _) = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(handle))
            .map_err(tss("nv read public"))?;
        if !public.attributes().written() {
            self.ctx
                .execute_with_nullauth_session(|c| c.nv_increment(NvAuth::Owner, handle))
                .map_err(tss("nv increment"))?;
        }
        self.read_counter()
    }

    /// Reads the anti-rollback counter.
    ///
    /// # Errors
    /// [`KeyError::NvCounter`] if it is not provisioned; TPM errors.
    pub fn read_counter(&mut self) -> Result<u64, KeyError> {
        let h = self.counter_handle()?;
        let data = self
            .ctx
            .execute_with_nullauth_session(|c| c.nv_read(NvAuth::Owner, h, 8, 0))
            .map_err(|e| match tss_kind(&e) {
                Some(Tss2ResponseCodeKind::NvUninitialized) => KeyError::NvCounter {
                    index: self.config.nv_counter_index,
                    reason: "never incremented (provision it first)".into(),
                },
                _ => KeyError::from_tss("nv read", e),
            })?;
        let b: [u8; 8] = data.value().try_into().map_err(|_| KeyError::NvCounter {
            index: self.config.nv_counter_index,
            reason: format!("read {} bytes, expected 8", data.len()),
        })?;
        Ok(u64::from_be_bytes(b))
    }

    /// Increments the anti-rollback counter and returns the new value. Use
    /// [`Tpm::complete_epoch_bump`] for the epoch protocol; this is the raw
    /// operation.
    ///
    /// # Errors
    /// [`KeyError::NvCounter`] if not provisioned; TPM errors.
    pub fn increment_counter(&mut self) -> Result<u64, KeyError> {
        let h = self.counter_handle()?;
        self.ctx
            .execute_with_nullauth_session(|c| c.nv_increment(NvAuth::Owner, h))
            .map_err(tss("nv increment"))?;
        self.read_counter()
    }

    /// The epoch to write into the database in step 1 of a bump: the
    /// counter value plus one.
    ///
    /// # Errors
    /// [`KeyError::Overflow`] at `u64::MAX`; counter errors.
    pub fn next_epoch(&mut self) -> Result<u64, KeyError> {
        self.read_counter()?
            .checked_add(1)
            .ok_or(KeyError::Overflow { what: "nv counter" })
    }

    /// Step 2 of an epoch bump (and the recovery of an interrupted one):
    /// brings the counter to `target`, which the database already holds.
    /// Idempotent: if the counter is already at `target` nothing happens.
    ///
    /// # Errors
    /// [`KeyError::RollbackDetected`] if the counter is already past
    /// `target`; [`KeyError::EpochAhead`] if `target` is more than one ahead.
    pub fn complete_epoch_bump(&mut self, target: u64) -> Result<u64, KeyError> {
        let nv = self.read_counter()?;
        match check_epoch(nv, target)? {
            EpochStatus::InSync { epoch } => Ok(epoch),
            EpochStatus::InterruptedBump { target } => {
                let now = self.increment_counter()?;
                if now != target {
                    return Err(KeyError::NvCounter {
                        index: self.config.nv_counter_index,
                        reason: format!("incremented to {now}, expected {target}"),
                    });
                }
                Ok(now)
            }
        }
    }

    /// Checks the database epoch against the counter at start (see
    /// [`crate::rollback`] for the rule).
    ///
    /// # Errors
    /// [`KeyError::RollbackDetected`] (old database or policy restored),
    /// [`KeyError::EpochAhead`], counter errors.
    pub fn check_epoch(&mut self, db_epoch: u64) -> Result<EpochStatus, KeyError> {
        let nv = self.read_counter()?;
        let r = check_epoch(nv, db_epoch);
        if let Err(e) = &r {
            tracing::error!(
                nv,
                db = db_epoch,
                code = e.code(),
                "epoch check failed: {e}"
            );
        }
        r
    }

    // ----- policy anchor --------------------------------------------------

    fn anchor_err(&self, reason: impl Into<String>) -> KeyError {
        KeyError::NvAnchor {
            index: self.config.nv_anchor_index,
            reason: reason.into(),
        }
    }

    /// The anchor index, if it is defined on this TPM (`None`: no anchor
    /// was ever written).
    fn anchor_handle(&mut self) -> Result<Option<NvIndexHandle>, KeyError> {
        if let Some(h) = self.anchor {
            return Ok(Some(h));
        }
        let index = self.config.nv_anchor_index;
        let (caps, _) = self
            .ctx
            .execute_without_session(|c| c.get_capability(CapabilityType::Handles, index, 1))
            .map_err(tss("nv index lookup"))?;
        let defined = match caps {
            CapabilityData::Handles(list) => list
                .into_inner()
                .first()
                .is_some_and(|h| u32::from(*h) == index),
            _ => false,
        };
        if !defined {
            return Ok(None);
        }
        let tpm_handle =
            NvIndexTpmHandle::new(index).map_err(|e| self.anchor_err(e.to_string()))?;
        let obj = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)))
            .map_err(tss("nv index handle"))?;
        let h = NvIndexHandle::from(obj);
        let (public, _) = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(h))
            .map_err(tss("nv read public"))?;
        if public.attributes().index_type().ok() != Some(NvIndexType::Ordinary)
            || public.data_size() != NV_ANCHOR_SIZE
        {
            let mut obj = ObjectHandle::from(h);
            let _ = self.ctx.tr_close(&mut obj);
            return Err(self.anchor_err(format!(
                "index exists but is not an ordinary index of {NV_ANCHOR_SIZE} bytes"
            )));
        }
        self.anchor = Some(h);
        Ok(Some(h))
    }

    /// Reads the policy anchor record (opaque here; the policy crate's
    /// `PolicyAnchor` encoding). `None`: the index was never defined or
    /// never written, i.e. no policy was ever anchored on this TPM.
    ///
    /// # Errors
    /// [`KeyError::NvAnchor`] if the index is unusable or its record
    /// malformed; TPM errors. Callers fail closed on any error.
    pub fn read_anchor(&mut self) -> Result<Option<Vec<u8>>, KeyError> {
        let Some(h) = self.anchor_handle()? else {
            return Ok(None);
        };
        let size = u16::try_from(NV_ANCHOR_SIZE).map_err(|_| self.anchor_err("size"))?;
        let data = match self
            .ctx
            .execute_with_nullauth_session(|c| c.nv_read(NvAuth::Owner, h, size, 0))
        {
            Ok(d) => d,
            Err(e) if matches!(tss_kind(&e), Some(Tss2ResponseCodeKind::NvUninitialized)) => {
                return Ok(None);
            }
            Err(e) => return Err(KeyError::from_tss("nv read anchor", e)),
        };
        let bytes = data.value();
        let (len, rest) = bytes
            .split_first()
            .ok_or_else(|| self.anchor_err("empty read"))?;
        let len = usize::from(*len);
        match rest.get(..len) {
            Some(record) if len > 0 && len <= NV_ANCHOR_MAX => Ok(Some(record.to_vec())),
            _ => Err(self.anchor_err(format!("record length {len} out of range"))),
        }
    }

    /// Writes the policy anchor record (at most [`NV_ANCHOR_MAX`] bytes),
    /// defining the ordinary NV index (owner read/write) on first use. One
    /// `TPM2_NV_Write` of the whole index: a power cut leaves the old or the
    /// new record, never a mix.
    ///
    /// # Errors
    /// [`KeyError::NvAnchor`] for an empty or oversized record or an
    /// unusable index; TPM errors.
    pub fn write_anchor(&mut self, record: &[u8]) -> Result<(), KeyError> {
        let len = u8::try_from(record.len())
            .ok()
            .filter(|l| *l > 0 && usize::from(*l) <= NV_ANCHOR_MAX)
            .ok_or_else(|| self.anchor_err(format!("record of {} bytes", record.len())))?;
        let h = match self.anchor_handle()? {
            Some(h) => h,
            None => {
                let index = self.config.nv_anchor_index;
                let tpm_handle =
                    NvIndexTpmHandle::new(index).map_err(|e| self.anchor_err(e.to_string()))?;
                let attrs = NvIndexAttributesBuilder::new()
                    .with_nv_index_type(NvIndexType::Ordinary)
                    .with_owner_write(true)
                    .with_owner_read(true)
                    .build()
                    .map_err(tss("nv attributes"))?;
                let public = NvPublicBuilder::new()
                    .with_nv_index(tpm_handle)
                    .with_index_name_algorithm(HashingAlgorithm::Sha256)
                    .with_index_attributes(attrs)
                    .with_data_area_size(NV_ANCHOR_SIZE)
                    .build()
                    .map_err(tss("nv public"))?;
                let h = self
                    .ctx
                    .execute_with_nullauth_session(|c| {
                        c.nv_define_space(Provision::Owner, None, public)
                    })
                    .map_err(tss("nv define anchor"))?;
                tracing::warn!(index = format_args!("{index:#010x}"), "nv anchor defined");
                self.anchor = Some(h);
                h
            }
        };
        let mut buf = vec![0u8; NV_ANCHOR_SIZE];
        if let Some((first, rest)) = buf.split_first_mut() {
            *first = len;
            if let Some(dst) = rest.get_mut(..record.len()) {
                dst.copy_from_slice(record);
            }
        }
        let data = MaxNvBuffer::try_from(buf).map_err(tss("nv anchor buffer"))?;
        self.ctx
            .execute_with_nullauth_session(|c| c.nv_write(NvAuth::Owner, h, data, 0))
            .map_err(tss("nv write anchor"))
    }

    // ----- attestation ----------------------------------------------------

    fn create_ak(&mut self) -> Result<(KeyHandle, Public), KeyError> {
        let template = ak_template()?;
        let r = self
            .ctx
            .execute_with_nullauth_session(|c| {
                c.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(tss("create attestation key"))?;
        Ok((r.key_handle, r.out_public))
    }

    /// The attestation key's public area, for enrollment on the ground (pin
    /// it there). It is the same for the life of the TPM.
    ///
    /// # Errors
    /// TPM errors.
    pub fn ak_public(&mut self) -> Result<AkPublic, KeyError> {
        let (h, public) = self.create_ak()?;
        self.flush(h.into());
        let bytes = public.marshall().map_err(tss("marshal ak public"))?;
        AkPublic::from_tpmt_public(&bytes).map_err(|e| KeyError::Tpm {
            op: "ak public",
            detail: e.to_string(),
        })
    }

    /// Quotes the policy PCRs with qualifying data = the binding digest of
    /// `binding` (whose `nv_counter` the caller fills from
    /// [`Tpm::read_counter`]).
    ///
    /// # Errors
    /// TPM errors.
    pub fn quote(&mut self, binding: Binding) -> Result<Attestation, KeyError> {
        let pcrs = self.config.policy_pcrs.clone();
        let sel = pcr_selection(&pcrs)?;
        let qualifying = Data::try_from(binding_digest(&binding).to_vec()).map_err(tss("data"))?;
        let (ak, ak_pub) = self.create_ak()?;
        let reported = self.read_pcrs(&pcrs);
        let quoted = self.ctx.execute_with_nullauth_session(|c| {
            c.quote(
                ak,
                qualifying,
                SignatureScheme::EcDsa {
                    hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
                },
                sel,
            )
        });
        self.flush(ak.into());
        let reported_pcrs = reported?;
        let (attest, signature) = quoted.map_err(tss("quote"))?;
        let Signature::EcDsa(sig) = signature else {
            return Err(KeyError::Tpm {
                op: "quote",
                detail: "tpm returned a non-ecdsa signature".into(),
            });
        };
        let mut rs = [0u8; 64];
        let (r_out, s_out) = rs.split_at_mut(32);
        for (src, dst) in [
            (sig.signature_r().value(), r_out),
            (sig.signature_s().value(), s_out),
        ] {
            let start = 32usize
                .checked_sub(src.len())
                .ok_or_else(|| KeyError::Tpm {
                    op: "quote",
                    detail: "signature scalar longer than 32 bytes".into(),
                })?;
            dst[start..].copy_from_slice(src);
        }
        Ok(Attestation {
            binding,
            reported_pcrs,
            ak_public: ak_pub.marshall().map_err(tss("marshal ak public"))?,
            attest: attest.marshall().map_err(tss("marshal attest"))?,
            signature: rs,
        })
    }

    // ----- dictionary attack ----------------------------------------------

    /// Reads the dictionary-attack state (lockout flag and counters).
    ///
    /// # Errors
    /// TPM errors.
    pub fn da_status(&mut self) -> Result<DaStatus, KeyError> {
        let (data, _) = self
            .ctx
            .execute_without_session(|c| {
                c.get_capability(
                    CapabilityType::TpmProperties,
                    PropertyTag::Permanent.into(),
                    32,
                )
            })
            .map_err(tss("get capability"))?;
        let CapabilityData::TpmProperties(props) = data else {
            return Err(KeyError::Tpm {
                op: "get capability",
                detail: "unexpected capability data".into(),
            });
        };
        let get = |tag: PropertyTag| {
            props
                .iter()
                .find(|p| p.property() == tag)
                .map(|p| p.value())
                .unwrap_or(0)
        };
        const IN_LOCKOUT: u32 = 1 << 9;
        Ok(DaStatus {
            in_lockout: get(PropertyTag::Permanent) & IN_LOCKOUT != 0,
            failed_tries: get(PropertyTag::LockoutCounter),
            max_tries: get(PropertyTag::MaxAuthFail),
            recovery_seconds: get(PropertyTag::LockoutInterval),
        })
    }
}

/// Test-harness only (feature `test-harness`, never in the flight build):
/// direct access to the seed, for the core-dump tests and the benchmark.
#[cfg(feature = "test-harness")]
impl Tpm {
    /// Generates and seals a seed and hands it out.
    ///
    /// # Errors
    /// As [`crate::TpmKeyStore::provision`].
    pub fn test_generate_seed(&mut self) -> Result<(Secret32, SealedBlob), KeyError> {
        self.generate_seed()
    }

    /// Unseals a seed blob and hands the seed out.
    ///
    /// # Errors
    /// As [`crate::TpmKeyStore::open`].
    pub fn test_unseal_seed(&mut self, blob: &SealedBlob) -> Result<Secret32, KeyError> {
        self.unseal_seed(blob)
    }
}

fn check_sealed_public(public: &Public) -> Result<(), KeyError> {
    let bad = |what: &str| KeyError::BlobCorrupt {
        reason: format!("sealed object public area: {what}"),
    };
    let Public::KeyedHash { .. } = public else {
        return Err(bad("not a keyed-hash object"));
    };
    let a = public.object_attributes();
    if !a.fixed_tpm() || !a.fixed_parent() {
        return Err(bad("not fixedTPM/fixedParent"));
    }
    if a.user_with_auth() {
        return Err(bad("userWithAuth set (usable without the pcr policy)"));
    }
    if a.sign_encrypt() || a.decrypt() {
        return Err(bad("not a sealed data object"));
    }
    if public.auth_policy().value().len() != 32 {
        return Err(bad("no sha-256 policy"));
    }
    Ok(())
}

impl Drop for Tpm {
    fn drop(&mut self) {
        let p = self.primary;
        self.flush(p.into());
        if let Some(mut h) = self.counter.take().map(ObjectHandle::from) {
            let _ = self.ctx.tr_close(&mut h);
        }
        if let Some(mut h) = self.anchor.take().map(ObjectHandle::from) {
            let _ = self.ctx.tr_close(&mut h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcti_forms() {
        assert!(parse_tcti("device:/dev/tpmrm0").is_ok());
        assert!(parse_tcti("swtpm:host=127.0.0.1,port=2321").is_ok());
        assert!(parse_tcti("swtpm:port=2321,host=localhost").is_ok());
        for bad in [
            "",
            "device",
            "device:dev/tpm0",
            "swtpm",
            "swtpm:host=127.0.0.1",
            "swtpm:host=127.0.0.1,port=0",
            "swtpm:host=127.0.0.1,port=65535",
            "swtpm:host=127.0.0.1,port=x",
            "swtpm:host=a,port=1,port=2",
            "mssim:host=127.0.0.1,port=2321",
            "tabrmd",
        ] {
            assert!(
                matches!(parse_tcti(bad), Err(KeyError::InvalidTcti { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn config_validation() {
        let mut c = TpmConfig::new("device:/dev/tpmrm0", AuthValue::default());
        assert!(c.validate().is_ok());
        c.software_pcr = 7;
        assert!(c.validate().is_err());
        c.software_pcr = 16;
        assert!(c.validate().is_err(), "policy pcrs lack 16");
        c.policy_pcrs = vec![0, 16];
        assert!(c.validate().is_ok());
        c.policy_pcrs = vec![16, 0];
        assert!(c.validate().is_err());
        assert!(AuthValue::new(&[0; 33]).is_err());
        assert_eq!(
            format!("{:?}", AuthValue::new(b"secret").unwrap()),
            "AuthValue([REDACTED; 6 bytes])"
        );
    }
}
