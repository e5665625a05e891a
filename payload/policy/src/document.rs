//! The policy document: what administrators author (TOML), what they sign
//! (canonical CBOR) and what the node enforces.
//!
//! Owns: [`PolicyDocument`] and its parts, the canonical encoding
//! ([`PolicyDocument::encode`] / [`PolicyDocument::decode`]), the signed
//! wrapper [`SignedPolicy`]. TOML compilation (`PolicyDocument::from_toml`)
//! and the readable diff are ground-side authoring (`crate::authoring`).
//!
//! Encoding: one deterministic CBOR map (see `cbor`), every field required,
//! integer keys (the table is in docs/policy.md). Decoding refuses
//! non-canonical forms, unknown keys, missing keys, trailing bytes and
//! semantically inconsistent documents (thresholds, windows, checkpoint).
//!
//! Must never: accept a document that does not re-encode to the same bytes,
//! or interpret a field the format does not define.

use bitcoin::secp256k1::{Secp256k1, Verification, XOnlyPublicKey};
use bitcoin::{Network, ScriptBuf};
use spacenode_chain::Checkpoint;
use spacenode_chain::params::{network_from_id, network_id};

use crate::cbor::{self, CborError, Fields, Value, as_array, as_list, bytes, uint};
use crate::eth::EthRules;
use crate::quorum::{AdminSet, QuorumError, Signature, tagged_hash};
pub use crate::section::{DocumentError, MAX_LIST, VelocityWindow, hex_decode, hex_encode};
use crate::units::{FeeRate, Sats};

/// BIP340 tag under which administrators sign a policy document; the same
/// tagged hash of the document bytes is the policy hash.
pub const POLICY_TAG: &str = "spacenode/policy/v1";
/// Format number (key 0).
pub const FORMAT: u64 = 1;
/// Largest encoded document.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;
/// Bitcoin's supply cap in sats; no amount field may exceed it.
pub const MAX_MONEY: u64 = 21_000_000 * 100_000_000;

fn invalid(s: impl Into<String>) -> DocumentError {
    DocumentError::Invalid(s.into())
}

/// A set of keys and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// Distinct BIP340 keys, in signer-index order.
    pub keys: Vec<XOnlyPublicKey>,
    /// Signatures required.
    pub threshold: u8,
}

impl KeySet {
    /// The quorum verifier for this set (threshold >= 1).
    ///
    /// # Errors
    /// [`QuorumError::InvalidSet`].
    pub fn admin_set(&self) -> Result<AdminSet, QuorumError> {
        AdminSet::new(self.keys.clone(), usize::from(self.threshold))
    }

    /// The same keys with another threshold (vetoes).
    ///
    /// # Errors
    /// [`QuorumError::InvalidSet`].
    pub fn with_threshold(&self, threshold: u8) -> Result<AdminSet, QuorumError> {
        AdminSet::new(self.keys.clone(), usize::from(threshold))
    }
}

/// A destination the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowTarget {
    /// An exact output script (compiled from an address).
    Script(ScriptBuf),
    /// An output descriptor (ranged ones match by the derivation hints in
    /// the PSBT output, re-derived and compared).
    Descriptor(String),
}

/// An allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// Human label (shown in diffs and refusals).
    pub label: String,
    /// What is allowed.
    pub target: AllowTarget,
}

/// A weekly UTC window in which signing is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Bit 0 = Monday … bit 6 = Sunday.
    pub weekdays: u8,
    /// First minute of the day (UTC) inside the window.
    pub start_minute: u16,
    /// First minute after the window (`start < end <= 1440`).
    pub end_minute: u16,
}

impl TimeWindow {
    /// Does node time `ms` fall inside?
    #[must_use]
    pub fn contains(&self, ms: i64) -> bool {
        let day = ms.div_euclid(86_400_000);
        let minute = ms.rem_euclid(86_400_000).div_euclid(60_000);
        // 1970-01-01 was a Thursday (Monday = 0 → Thursday = 3).
        let weekday = day.saturating_add(3).rem_euclid(7);
        let bit = 1u8
            .checked_shl(u32::try_from(weekday).unwrap_or(7))
            .unwrap_or(0);
        self.weekdays & bit != 0
            && minute >= i64::from(self.start_minute)
            && minute < i64::from(self.end_minute)
    }
}

/// RBF fee bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    /// May a transaction replace one the node signed before?
    pub allowed: bool,
    /// Fee cap for replacements.
    pub max_fee: Sats,
    /// Fee-rate cap for replacements.
    pub max_fee_rate: FeeRate,
}

/// Clock guard bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRules {
    /// Largest forward step of node time between two accepted requests.
    pub max_forward_jump_ms: u64,
    /// How far node time may lag the header chain's median time past.
    pub max_behind_chain_ms: u64,
}

/// Bitcoin spending rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcRules {
    /// Most that may leave the wallets in one transaction (destinations +
    /// fee).
    pub per_tx_cap: Sats,
    /// Rolling-window caps (any number; each enforced).
    pub velocity: Vec<VelocityWindow>,
    /// Allowed destinations.
    pub allowlist: Vec<AllowEntry>,
    /// Absolute fee cap.
    pub max_fee: Sats,
    /// Fee-rate cap over the estimated vsize of the finalised transaction.
    pub max_fee_rate: FeeRate,
    /// Confirmations every input's funding transaction must have.
    pub min_confirmations: u32,
    /// Allowed UTC windows (empty: always).
    pub time_windows: Vec<TimeWindow>,
    /// RBF.
    pub replacement: Replacement,
    /// Largest PSBT accepted, bytes.
    pub max_psbt_bytes: u32,
}

/// A complete policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    /// Monotonic version.
    pub version: u64,
    /// Bitcoin network.
    pub network: Network,
    /// Administrators who sign the NEXT policy and administrator commands.
    pub admins: KeySet,
    /// Delay between acceptance and activation of the next policy, ms.
    pub activation_delay_ms: u64,
    /// Administrators whose vetoes cancel a pending change.
    pub veto_threshold: u8,
    /// Ground approvers of sign requests (threshold 0: none needed).
    pub approvers: KeySet,
    /// Clock guard.
    pub clock: ClockRules,
    /// Spending rules.
    pub rules: BtcRules,
    /// Trusted checkpoint of the header chain.
    pub checkpoint: Checkpoint,
    /// Ethereum rules (key 10). `None`: the node signs nothing for
    /// Ethereum, and the document encodes exactly as before the key existed
    /// (format 1 unchanged, hashes of existing policies unchanged).
    pub eth: Option<EthRules>,
}

fn keys_value(keys: &[XOnlyPublicKey]) -> Value {
    Value::Array(keys.iter().map(|k| bytes(&k.serialize())).collect())
}

fn keyset_value(k: &KeySet) -> Value {
    Value::Map(vec![(0, keys_value(&k.keys)), (1, uint(k.threshold))])
}

fn fee_value(r: FeeRate) -> Value {
    uint(r.0)
}

impl PolicyDocument {
    /// The canonical CBOR value.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let r = &self.rules;
        let rules = Value::Map(vec![
            (0, uint(r.per_tx_cap.0)),
            (
                1,
                Value::Array(
                    r.velocity
                        .iter()
                        .map(|w| Value::Map(vec![(0, uint(w.window_ms)), (1, uint(w.cap.0))]))
                        .collect(),
                ),
            ),
            (
                2,
                Value::Array(
                    r.allowlist
                        .iter()
                        .map(|e| {
                            let (kind, v) = match &e.target {
                                AllowTarget::Script(s) => (0u8, bytes(s.as_bytes())),
                                AllowTarget::Descriptor(d) => (1u8, Value::Text(d.clone())),
                            };
                            Value::Map(vec![
                                (0, Value::Text(e.label.clone())),
                                (1, uint(kind)),
                                (2, v),
                            ])
                        })
                        .collect(),
                ),
            ),
            (3, uint(r.max_fee.0)),
            (4, fee_value(r.max_fee_rate)),
            (5, uint(r.min_confirmations)),
            (
                6,
                Value::Array(
                    r.time_windows
                        .iter()
                        .map(|w| {
                            Value::Map(vec![
                                (0, uint(w.weekdays)),
                                (1, uint(w.start_minute)),
                                (2, uint(w.end_minute)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                7,
                Value::Map(vec![
                    (0, Value::Bool(r.replacement.allowed)),
                    (1, uint(r.replacement.max_fee.0)),
                    (2, fee_value(r.replacement.max_fee_rate)),
                ]),
            ),
            (8, uint(r.max_psbt_bytes)),
        ]);
        let mut top = vec![
            (0, uint(FORMAT)),
            (1, uint(self.version)),
            (2, uint(network_id(self.network))),
            (3, keyset_value(&self.admins)),
            (4, uint(self.activation_delay_ms)),
            (5, uint(self.veto_threshold)),
            (6, keyset_value(&self.approvers)),
            (
                7,
                Value::Map(vec![
                    (0, uint(self.clock.max_forward_jump_ms)),
                    (1, uint(self.clock.max_behind_chain_ms)),
                ]),
            ),
            (8, rules),
            (9, bytes(&self.checkpoint.encode())),
        ];
        if let Some(eth) = &self.eth {
            top.push((10, eth.to_value()));
        }
        Value::Map(top)
    }

    /// The canonical bytes administrators sign.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    /// The policy hash: BIP340 tagged hash [`POLICY_TAG`] of the canonical
    /// bytes (exactly what administrators sign).
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash(POLICY_TAG, &self.encode())
    }

    /// Strict decoding: canonical CBOR, every field present, no unknown
    /// field, no trailing bytes, then [`PolicyDocument::validate`].
    ///
    /// # Errors
    /// [`DocumentError`].
    pub fn decode(b: &[u8]) -> Result<Self, DocumentError> {
        if b.len() > MAX_DOCUMENT_LEN {
            return Err(DocumentError::TooLarge(b.len()));
        }
        let mut f = Fields::new("policy", cbor::decode(b)?)?;
        let format = f.uint(0, "format")?;
        if format != FORMAT {
            return Err(DocumentError::UnsupportedFormat(format));
        }
        let version = f.uint(1, "version")?;
        let net = f.uint(2, "network")?;
        let network = u8::try_from(net)
            .ok()
            .and_then(network_from_id)
            .ok_or_else(|| invalid(format!("unknown network id {net}")))?;
        let admins = keyset(f.req(3, "admins")?, "admins")?;
        let activation_delay_ms = f.uint(4, "activation_delay_ms")?;
        let veto_threshold = small(f.uint(5, "veto_threshold")?, "veto_threshold")?;
        let approvers = keyset(f.req(6, "approvers")?, "approvers")?;
        let mut c = Fields::new("clock", f.req(7, "clock")?)?;
        let clock = ClockRules {
            max_forward_jump_ms: c.uint(0, "clock.max_forward_jump_ms")?,
            max_behind_chain_ms: c.uint(1, "clock.max_behind_chain_ms")?,
        };
        c.finish()?;
        let rules = rules_from(f.req(8, "rules")?)?;
        let cp_bytes = f.bytes(9, "checkpoint")?;
        let eth = f.opt(10, "eth")?.map(EthRules::from_value).transpose()?;
        f.finish()?;
        let checkpoint =
            Checkpoint::decode(&cp_bytes).map_err(|e| DocumentError::Checkpoint(e.to_string()))?;
        let doc = PolicyDocument {
            version,
            network,
            admins,
            activation_delay_ms,
            veto_threshold,
            approvers,
            clock,
            rules,
            checkpoint,
            eth,
        };
        doc.validate()?;
        // Belt and braces: exactly one encoding per document.
        if doc.encode() != b {
            return Err(CborError::NonCanonical("document does not re-encode to its bytes").into());
        }
        Ok(doc)
    }

    /// Semantic checks shared by the decoder and the TOML compiler.
    ///
    /// # Errors
    /// [`DocumentError::Invalid`] or [`DocumentError::Checkpoint`].
    pub fn validate(&self) -> Result<(), DocumentError> {
        self.admins
            .admin_set()
            .map_err(|e| invalid(format!("admins: {e}")))?;
        if self.veto_threshold == 0 || usize::from(self.veto_threshold) > self.admins.keys.len() {
            return Err(invalid(
                "veto_threshold must be between 1 and the number of admins",
            ));
        }
        if usize::from(self.approvers.threshold) > self.approvers.keys.len() {
            return Err(invalid("approvers: threshold above the number of keys"));
        }
        if !self.approvers.keys.is_empty() {
            AdminSet::new(self.approvers.keys.clone(), 1)
                .map_err(|e| invalid(format!("approvers: {e}")))?;
        }
        let r = &self.rules;
        for (name, v) in [
            ("per_tx_cap", r.per_tx_cap.0),
            ("max_fee", r.max_fee.0),
            ("replacement.max_fee", r.replacement.max_fee.0),
        ] {
            if v > MAX_MONEY {
                return Err(invalid(format!("{name} above 21M BTC")));
            }
        }
        if r.velocity.len() > MAX_LIST
            || r.allowlist.len() > MAX_LIST
            || r.time_windows.len() > MAX_LIST
        {
            return Err(invalid("list too long"));
        }
        for (i, w) in r.velocity.iter().enumerate() {
            if w.window_ms == 0 || w.cap.0 > MAX_MONEY {
                return Err(invalid(
                    "velocity window must be > 0 ms with a cap <= 21M BTC",
                ));
            }
            if r.velocity
                .iter()
                .skip(i.saturating_add(1))
                .any(|o| o.window_ms == w.window_ms)
            {
                return Err(invalid("two velocity windows of the same length"));
            }
        }
        for w in &r.time_windows {
            if w.weekdays == 0 || w.weekdays > 0x7f {
                return Err(invalid(
                    "time window weekdays must be a non-empty Mon..Sun mask",
                ));
            }
            if w.start_minute >= w.end_minute || w.end_minute > 1440 {
                return Err(invalid("time window needs start < end <= 24:00"));
            }
        }
        for e in &r.allowlist {
            if e.label.len() > 64 {
                return Err(invalid("allowlist label longer than 64 bytes"));
            }
            match &e.target {
                AllowTarget::Script(s) if s.is_empty() || s.len() > 10_000 => {
                    return Err(invalid("allowlist script empty or too long"));
                }
                AllowTarget::Descriptor(d) if d.is_empty() || d.len() > 4096 => {
                    return Err(invalid("allowlist descriptor empty or too long"));
                }
                _ => {}
            }
        }
        if let Some(eth) = &self.eth {
            eth.validate()?;
        }
        if self.checkpoint.network != self.network {
            return Err(DocumentError::Checkpoint(
                "checkpoint is for another network".into(),
            ));
        }
        self.checkpoint
            .validate()
            .map_err(|e| DocumentError::Checkpoint(e.to_string()))?;
        Ok(())
    }
}

fn small(v: u64, field: &'static str) -> Result<u8, DocumentError> {
    u8::try_from(v).map_err(|_| invalid(format!("{field} above 255")))
}

fn keyset(v: Value, name: &'static str) -> Result<KeySet, DocumentError> {
    let mut f = Fields::new(name, v)?;
    let keys = f
        .list(0, name)?
        .into_iter()
        .map(|k| {
            let b: [u8; 32] = as_array(k, name)?;
            XOnlyPublicKey::from_slice(&b).map_err(|_| invalid(format!("{name}: invalid key")))
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    let threshold = small(f.uint(1, name)?, name)?;
    f.finish()?;
    Ok(KeySet { keys, threshold })
}

fn rules_from(v: Value) -> Result<BtcRules, DocumentError> {
    let mut f = Fields::new("rules", v)?;
    let per_tx_cap = Sats(f.uint(0, "rules.per_tx_cap")?);
    let velocity = f
        .list(1, "rules.velocity")?
        .into_iter()
        .map(|w| {
            let mut g = Fields::new("rules.velocity", w)?;
            let window_ms = g.uint(0, "rules.velocity.window_ms")?;
            let cap = Sats(g.uint(1, "rules.velocity.cap")?);
            g.finish()?;
            Ok(VelocityWindow { window_ms, cap })
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    let allowlist = f
        .list(2, "rules.allowlist")?
        .into_iter()
        .map(|e| {
            let mut g = Fields::new("rules.allowlist", e)?;
            let label = g.text(0, "rules.allowlist.label")?;
            let kind = g.uint(1, "rules.allowlist.kind")?;
            let target = match kind {
                0 => AllowTarget::Script(ScriptBuf::from_bytes(
                    g.bytes(2, "rules.allowlist.script")?,
                )),
                1 => AllowTarget::Descriptor(g.text(2, "rules.allowlist.descriptor")?),
                _ => return Err(invalid(format!("allowlist kind {kind}"))),
            };
            g.finish()?;
            Ok(AllowEntry { label, target })
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    let max_fee = Sats(f.uint(3, "rules.max_fee")?);
    let max_fee_rate = FeeRate(f.uint(4, "rules.max_fee_rate")?);
    let min_confirmations = u32::try_from(f.uint(5, "rules.min_confirmations")?)
        .map_err(|_| invalid("min_confirmations above u32"))?;
    let time_windows = f
        .list(6, "rules.time_windows")?
        .into_iter()
        .map(|w| {
            let mut g = Fields::new("rules.time_windows", w)?;
            let weekdays = small(g.uint(0, "weekdays")?, "weekdays")?;
            let start_minute =
                u16::try_from(g.uint(1, "start_minute")?).map_err(|_| invalid("start_minute"))?;
            let end_minute =
                u16::try_from(g.uint(2, "end_minute")?).map_err(|_| invalid("end_minute"))?;
            g.finish()?;
            Ok(TimeWindow {
                weekdays,
                start_minute,
                end_minute,
            })
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    let mut g = Fields::new("rules.replacement", f.req(7, "rules.replacement")?)?;
    let replacement = Replacement {
        allowed: g.boolean(0, "rules.replacement.allowed")?,
        max_fee: Sats(g.uint(1, "rules.replacement.max_fee")?),
        max_fee_rate: FeeRate(g.uint(2, "rules.replacement.max_fee_rate")?),
    };
    g.finish()?;
    let max_psbt_bytes = u32::try_from(f.uint(8, "rules.max_psbt_bytes")?)
        .map_err(|_| invalid("max_psbt_bytes above u32"))?;
    f.finish()?;
    Ok(BtcRules {
        per_tx_cap,
        velocity,
        allowlist,
        max_fee,
        max_fee_rate,
        min_confirmations,
        time_windows,
        replacement,
        max_psbt_bytes,
    })
}

/// A document with administrator signatures.
///
/// ```text
/// signed := CBOR map { 0: document bytes, 1: [ { 0: signer index, 1: sig 64 } ... ] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    /// Canonical document bytes (signatures cover exactly these).
    pub document: Vec<u8>,
    /// Signatures by the administrators of the policy in force.
    pub signatures: Vec<Signature>,
}

impl SignedPolicy {
    /// Wire form.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (0, bytes(&self.document)),
            (1, signatures_value(&self.signatures)),
        ]))
    }

    /// Parses the wire form (the document inside is decoded by
    /// [`SignedPolicy::verify`]).
    ///
    /// # Errors
    /// [`DocumentError`].
    pub fn decode(b: &[u8]) -> Result<Self, DocumentError> {
        if b.len() > MAX_DOCUMENT_LEN.saturating_add(65 * 256 + 16) {
            return Err(DocumentError::TooLarge(b.len()));
        }
        let mut f = Fields::new("signed policy", cbor::decode(b)?)?;
        let document = f.bytes(0, "document")?;
        let signatures = signatures_from(f.req(1, "signatures")?)?;
        f.finish()?;
        Ok(Self {
            document,
            signatures,
        })
    }

    /// Decodes the document and checks the signatures against `signers`
    /// (the administrator set of the policy in force).
    ///
    /// # Errors
    /// [`PolicySignError`].
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        signers: &AdminSet,
    ) -> Result<PolicyDocument, PolicySignError> {
        let doc = PolicyDocument::decode(&self.document)?;
        signers.verify(secp, POLICY_TAG, &self.document, &self.signatures)?;
        Ok(doc)
    }
}

/// Decoding or quorum failure of a signed document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicySignError {
    /// The document is not acceptable.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The signatures are not a quorum.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

impl PolicySignError {
    /// Stable reason code (the wrapped error's).
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Document(d) => d.code(),
            Self::Quorum(q) => q.code(),
        }
    }
}

/// CBOR array of `{0: signer, 1: sig}`.
#[must_use]
pub fn signatures_value(sigs: &[Signature]) -> Value {
    Value::Array(
        sigs.iter()
            .map(|s| Value::Map(vec![(0, uint(s.signer)), (1, bytes(&s.sig))]))
            .collect(),
    )
}

/// Inverse of [`signatures_value`].
///
/// # Errors
/// Shape errors; more than 255 signatures.
pub fn signatures_from(v: Value) -> Result<Vec<Signature>, CborError> {
    let list = as_list(v, "signatures")?;
    if list.len() > 255 {
        return Err(cbor::shape("signatures", "more than 255"));
    }
    list.into_iter()
        .map(|s| {
            let mut f = Fields::new("signature", s)?;
            let signer = u8::try_from(f.uint(0, "signer")?)
                .map_err(|_| cbor::shape("signer", "above 255"))?;
            let sig = f.array(1, "sig")?;
            f.finish()?;
            Ok(Signature { signer, sig })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authoring::diff::diff;
    use bitcoin::secp256k1::{Keypair, Message, SecretKey};
    use proptest::prelude::*;

    pub(crate) fn kp(i: u8) -> Keypair {
        Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[i; 32]).unwrap())
    }

    pub(crate) fn xonly(i: u8) -> String {
        kp(i).x_only_public_key().0.to_string()
    }

    pub(crate) fn sample_toml(version: u64) -> String {
        format!(
            r#"
version = {version}
network = "regtest"
activation_delay_s = 3600
veto_threshold = 1
checkpoint = "genesis"

[admins]
threshold = 2
keys = ["{a}", "{b}", "{c}"]

[approvers]
threshold = 1
keys = ["{d}"]

[clock]
max_forward_jump_s = 604800
max_behind_chain_s = 7200

[rules]
per_tx_cap_sat = 100000000
max_fee_sat = 100000
max_fee_rate_sat_vb = 100
min_confirmations = 3
max_psbt_bytes = 400000

[[rules.velocity]]
window_s = 3600
cap_sat = 150000000

[[rules.velocity]]
window_s = 86400
cap_sat = 500000000

[[rules.allow]]
label = "exchange"
address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"

[[rules.time_windows]]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "24:00"

[rules.replacement]
allowed = true
max_fee_sat = 200000
max_fee_rate_sat_vb = 200
"#,
            a = xonly(1),
            b = xonly(2),
            c = xonly(3),
            d = xonly(9),
        )
    }

    pub(crate) fn sample(version: u64) -> PolicyDocument {
        PolicyDocument::from_toml(&sample_toml(version)).unwrap()
    }

    pub(crate) fn sign_doc(doc: &[u8], signers: &[u8]) -> SignedPolicy {
        let secp = Secp256k1::new();
        let msg = Message::from_digest(tagged_hash(POLICY_TAG, doc));
        SignedPolicy {
            document: doc.to_vec(),
            signatures: signers
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: secp
                        .sign_schnorr_no_aux_rand(&msg, &kp(i.saturating_add(1)))
                        .serialize(),
                })
                .collect(),
        }
    }

    #[test]
    fn toml_compiles_and_round_trips() {
        let d = sample(2);
        let b = d.encode();
        assert_eq!(PolicyDocument::decode(&b).unwrap(), d);
        assert_eq!(d.rules.velocity.len(), 2);
        assert_eq!(d.rules.max_fee_rate, FeeRate(100_000));
        assert!(d.rules.time_windows[0].contains(0));
    }

    #[test]
    fn toml_unknown_key_refused() {
        let src = sample_toml(2).replace(
            "min_confirmations = 3",
            "min_confirmations = 3\nmin_conf = 1",
        );
        assert!(matches!(
            PolicyDocument::from_toml(&src),
            Err(DocumentError::Toml(_))
        ));
    }

    #[test]
    fn unknown_field_missing_field_and_trailing_bytes_refused() {
        let d = sample(2);
        let mut v = d.to_value();
        if let Value::Map(m) = &mut v {
            m.push((11, Value::Uint(1)));
        }
        let e = PolicyDocument::decode(&cbor::encode(&v)).unwrap_err();
        assert!(
            matches!(
                e,
                DocumentError::Encoding(CborError::UnknownKey { key: 11, .. })
            ),
            "{e}"
        );
        // Key 10 (Ethereum rules) must have its shape.
        let mut v = d.to_value();
        if let Value::Map(m) = &mut v {
            m.push((10, Value::Uint(1)));
        }
        assert!(PolicyDocument::decode(&cbor::encode(&v)).is_err());
        let mut v = d.to_value();
        if let Value::Map(m) = &mut v {
            m.remove(4);
        }
        assert!(PolicyDocument::decode(&cbor::encode(&v)).is_err());
        let mut b = d.encode();
        b.push(0);
        assert!(matches!(
            PolicyDocument::decode(&b),
            Err(DocumentError::Encoding(CborError::Trailing(1)))
        ));
    }

    #[test]
    fn non_canonical_encoding_refused() {
        let d = sample(2);
        let b = d.encode();
        // Re-encode the version (key 1, value 2) in a long form: a2 → 0x18 0x02.
        let pos = b.windows(2).position(|w| w == [0x01, 0x02]).unwrap();
        let mut nc = b[..pos + 1].to_vec();
        nc.extend_from_slice(&[0x18, 0x02]);
        nc.extend_from_slice(&b[pos + 2..]);
        assert!(matches!(
            PolicyDocument::decode(&nc),
            Err(DocumentError::Encoding(CborError::NonCanonical(_)))
        ));
    }

    #[test]
    fn inconsistent_documents_refused() {
        let mut d = sample(2);
        d.veto_threshold = 4;
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Invalid(_))
        ));
        let mut d = sample(2);
        d.rules.time_windows[0].start_minute = 1440;
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Invalid(_))
        ));
        let mut d = sample(2);
        d.checkpoint = Checkpoint::genesis(Network::Testnet4);
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Checkpoint(_))
        ));
        let mut d = sample(2);
        d.admins.keys.push(d.admins.keys[0]);
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Invalid(_))
        ));
    }

    #[test]
    fn signed_policy_verifies_and_detects_tampering() {
        let secp = Secp256k1::verification_only();
        let d = sample(2);
        let admins = d.admins.admin_set().unwrap();
        let s = sign_doc(&d.encode(), &[0, 2]);
        let s = SignedPolicy::decode(&s.encode()).unwrap();
        assert_eq!(s.verify(&secp, &admins).unwrap(), d);
        // Tampered field (per-tx cap) with the old signatures.
        let mut t = d.clone();
        t.rules.per_tx_cap = Sats(t.rules.per_tx_cap.0 + 1);
        let forged = SignedPolicy {
            document: t.encode(),
            signatures: s.signatures.clone(),
        };
        assert!(matches!(
            forged.verify(&secp, &admins),
            Err(PolicySignError::Quorum(QuorumError::BadSignature { .. }))
        ));
        // Wrong quorum: one signature of two.
        let one = sign_doc(&d.encode(), &[1]);
        assert!(matches!(
            one.verify(&secp, &admins),
            Err(PolicySignError::Quorum(QuorumError::NotMet { .. }))
        ));
    }

    #[test]
    fn diff_names_each_change() {
        let a = sample(2);
        let mut b = sample(3);
        b.rules.per_tx_cap = Sats(5);
        b.rules.velocity.remove(0);
        b.admins.keys[2] = kp(7).x_only_public_key().0;
        let d = diff(&a, &b);
        let text = d.join("\n");
        assert!(text.contains("~ version: 2 -> 3"), "{text}");
        assert!(
            text.contains("~ rules.per_tx_cap: 100000000 sat -> 5 sat"),
            "{text}"
        );
        assert!(
            text.contains("- rules.velocity: 150000000 sat per 3600 s"),
            "{text}"
        );
        assert!(
            text.contains(&format!("+ admins.keys: {}", xonly(7))),
            "{text}"
        );
        assert!(
            text.contains(&format!("- admins.keys: {}", xonly(3))),
            "{text}"
        );
        assert!(diff(&a, &a).is_empty());
    }

    pub(crate) const ETH_TOML: &str = r#"
[[eth.chains]]
chain_id = 11155111
per_tx_cap = "1 ether"
max_gas_limit = 500000
max_fee_per_gas = "100 gwei"
max_priority_fee_per_gas = "5 gwei"
[[eth.chains.velocity]]
window_s = 86400
cap = "5 ether"

[[eth.allow]]
label = "exchange"
chain_id = 11155111
address = "0xe1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"
selectors = ["0xd0e30db0", "withdraw(uint256)"]

[[eth.tokens]]
label = "USDC"
chain_id = 11155111
address = "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"
per_tx_cap = "10000000000"
[[eth.tokens.velocity]]
window_s = 86400
cap = 25000000000
[[eth.tokens.spenders]]
label = "permit2"
address = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
unlimited = true

[[eth.delegatecall]]
label = "MultiSendCallOnly 1.4.1"
chain_id = 11155111
address = "0x9641d764fc13c8B624c04430C7356C1C7C8102e2"
kind = "multisend-call-only"

[[eth.safe_refunds]]
label = "relayer"
chain_id = 11155111
gas_token = "0x0000000000000000000000000000000000000000"
refund_receiver = "0x7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e"
max_gas_price = "20 gwei"
"#;

    #[test]
    fn documents_without_eth_rules_keep_their_encoding() {
        // Ten top-level keys (0..=9), exactly the format-1 layout: existing
        // signed policies keep their bytes and hashes.
        let d = sample(2);
        assert!(d.eth.is_none());
        assert_eq!(d.encode()[0], 0xaa);
        let e = PolicyDocument::from_toml(&(sample_toml(2) + ETH_TOML)).unwrap();
        assert_eq!(e.encode()[0], 0xab);
        assert_eq!(PolicyDocument::decode(&e.encode()).unwrap(), e);
        // Same document otherwise: only key 10 differs.
        let mut no_eth = e.clone();
        no_eth.eth = None;
        assert_eq!(no_eth.encode(), d.encode());
    }

    #[test]
    fn eth_toml_compiles_round_trips_and_diffs() {
        use crate::eth::{DelegateKind, selector};
        let e = PolicyDocument::from_toml(&(sample_toml(2) + ETH_TOML)).unwrap();
        let r = e.eth.as_ref().unwrap();
        assert_eq!(r.chains[0].per_tx_cap.0, 10u128.pow(18));
        assert_eq!(r.chains[0].max_fee_per_gas.0, 100_000_000_000);
        assert_eq!(r.chains[0].velocity[0].window_ms, 86_400_000);
        assert_eq!(
            r.allowlist[0].selectors,
            vec![selector("deposit()"), selector("withdraw(uint256)")]
        );
        assert!(r.tokens[0].spenders[0].unlimited);
        assert_eq!(r.delegatecall[0].kind, DelegateKind::MultiSendCallOnly);
        assert_eq!(r.safe_refunds[0].max_gas_price, 20_000_000_000);
        let text = diff(&sample(2), &e).join("\n");
        assert!(text.contains("~ eth: absent -> present"), "{text}");
        assert!(
            text.contains("+ eth.chains: 11155111: cap 1000000000000000000 wei"),
            "{text}"
        );
        assert!(text.contains("+ eth.spenders: USDC -> permit2"), "{text}");
        let mut f = e.clone();
        f.eth.as_mut().unwrap().chains[0].max_gas_limit = 1;
        let text = diff(&e, &f).join("\n");
        assert!(text.contains("- eth.chains: 11155111: cap"), "{text}");
        assert!(text.contains("gas limit 1,"), "{text}");
    }

    #[test]
    fn inconsistent_eth_rules_refused() {
        let base = sample_toml(2) + ETH_TOML;
        // An entry for a chain that is not allowed.
        let bad = base.replacen(
            "chain_id = 11155111\naddress = \"0xe1",
            "chain_id = 1\naddress = \"0xe1",
            1,
        );
        assert!(
            matches!(
                PolicyDocument::from_toml(&bad),
                Err(DocumentError::Invalid(_))
            ),
            "{bad}"
        );
        // A refund in a token the policy does not cap.
        let bad = base.replace(
            "gas_token = \"0x0000000000000000000000000000000000000000\"",
            "gas_token = \"0x1111111111111111111111111111111111111111\"",
        );
        assert!(matches!(
            PolicyDocument::from_toml(&bad),
            Err(DocumentError::Invalid(_))
        ));
        // A checksum typo.
        let bad = base.replace(
            "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238",
            "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7239",
        );
        assert!(matches!(
            PolicyDocument::from_toml(&bad),
            Err(DocumentError::Toml(_))
        ));
        // Unknown keys are errors in [eth] too.
        let bad = base.replace("max_gas_limit = 500000", "max_gas_limit = 500000\ngas = 1");
        assert!(matches!(
            PolicyDocument::from_toml(&bad),
            Err(DocumentError::Toml(_))
        ));
        // Priority fee above the max fee, and a zero chain id, via the
        // canonical decoder.
        let e = PolicyDocument::from_toml(&base).unwrap();
        let mut d = e.clone();
        d.eth.as_mut().unwrap().chains[0].max_priority_fee_per_gas.0 = u128::MAX;
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Invalid(_))
        ));
        let mut d = e.clone();
        let rules = d.eth.as_mut().unwrap();
        rules.chains.push(rules.chains[0].clone());
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Invalid(_))
        ));
        let mut d = e;
        d.eth.as_mut().unwrap().delegatecall[0]
            .selectors
            .push([1, 2, 3, 4]);
        assert!(matches!(
            PolicyDocument::decode(&d.encode()),
            Err(DocumentError::Invalid(_))
        ));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PolicyDocument::decode(&b);
            let _ = SignedPolicy::decode(&b);
        }

        #[test]
        fn bit_flips_never_yield_a_different_valid_document(i in 0usize..2000, bit in 0u8..8) {
            let d = sample(2);
            let mut b = d.encode();
            let i = i % b.len();
            b[i] ^= 1 << bit;
            if let Ok(x) = PolicyDocument::decode(&b) {
                // A flip inside a value may give another valid document; it
                // must then re-encode to the flipped bytes (no ambiguity)
                // and have another hash.
                prop_assert_eq!(x.encode(), b);
                prop_assert_ne!(x.hash(), d.hash());
            }
        }
    }
}
