//! TOML authoring: compiles what administrators write (format in
//! docs/policy.md, `[eth]` included) into a [`PolicyDocument`], with
//! operator-friendly amounts (`"1.5 ether"`) and EIP-55 addresses.
//!
//! Must never: be needed by the node (ground side; behind `authoring`);
//! produce a document that its own validation refuses.

use std::str::FromStr;

use alloy_primitives::Address;
use bitcoin::secp256k1::XOnlyPublicKey;
use bitcoin::{Address as BtcAddress, Network};
use serde::Deserialize;
use spacenode_chain::Checkpoint;

use super::DAYS;
use crate::document::{
    AllowEntry, AllowTarget, BtcRules, ClockRules, DocumentError, KeySet, PolicyDocument,
    Replacement, TimeWindow, VelocityWindow, hex_decode,
};
use crate::eth::{
    ChainRule, DelegateKind, DelegateTarget, EthAllowEntry, EthRules, RefundRule, Selector,
    SpenderRule, TokenRule, selector,
};
use crate::units::{FeeRate, Sats, TokenAmount, Wei};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlPolicy {
    version: u64,
    network: String,
    activation_delay_s: u64,
    veto_threshold: u8,
    /// "genesis", "default" or hex of the chain crate's checkpoint encoding.
    checkpoint: String,
    admins: TomlKeySet,
    approvers: TomlKeySet,
    clock: TomlClock,
    rules: TomlRules,
    /// Optional `[eth]` table (`policy::eth`).
    #[serde(default)]
    eth: Option<TomlEth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlKeySet {
    threshold: u8,
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlClock {
    max_forward_jump_s: u64,
    max_behind_chain_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlRules {
    per_tx_cap_sat: u64,
    max_fee_sat: u64,
    max_fee_rate_sat_vb: u64,
    min_confirmations: u32,
    max_psbt_bytes: u32,
    #[serde(default)]
    velocity: Vec<TomlVelocity>,
    #[serde(default)]
    allow: Vec<TomlAllow>,
    #[serde(default)]
    time_windows: Vec<TomlWindow>,
    replacement: TomlReplacement,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlVelocity {
    window_s: u64,
    cap_sat: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlAllow {
    label: String,
    address: Option<String>,
    descriptor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlWindow {
    days: Vec<String>,
    start: String,
    end: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlReplacement {
    allowed: bool,
    max_fee_sat: u64,
    max_fee_rate_sat_vb: u64,
}

fn parse_network(s: &str) -> Result<Network, DocumentError> {
    match s {
        "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
        "testnet" | "testnet3" => Ok(Network::Testnet),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        _ => Err(DocumentError::Toml(format!("unknown network {s:?}"))),
    }
}

fn parse_minute(s: &str) -> Result<u16, DocumentError> {
    let bad = || DocumentError::Toml(format!("time {s:?} is not HH:MM"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    h.checked_mul(60)
        .and_then(|x| x.checked_add(m))
        .ok_or_else(bad)
}

fn ms(seconds: u64, field: &str) -> Result<u64, DocumentError> {
    seconds
        .checked_mul(1000)
        .ok_or_else(|| DocumentError::Toml(format!("{field} too large")))
}

fn fee_rate(v: u64, field: &str) -> Result<FeeRate, DocumentError> {
    FeeRate::from_sat_per_vb(v).ok_or_else(|| DocumentError::Toml(format!("{field} too large")))
}

fn parse_keys(keys: &[String], field: &str) -> Result<Vec<XOnlyPublicKey>, DocumentError> {
    keys.iter()
        .map(|k| {
            XOnlyPublicKey::from_str(k).map_err(|_| {
                DocumentError::Toml(format!("{field}: {k:?} is not an x-only key (64 hex)"))
            })
        })
        .collect()
}

impl PolicyDocument {
    /// Compiles administrator-authored TOML (format in docs/policy.md).
    /// Unknown keys are errors. Descriptor allowlist entries are checked by
    /// `spacenode_btc::wallet::check_allow_descriptors` on the ground and on
    /// the node.
    ///
    /// # Errors
    /// [`DocumentError::Toml`], or the document's own validation errors.
    pub fn from_toml(src: &str) -> Result<Self, DocumentError> {
        let t: TomlPolicy =
            toml::from_str(src).map_err(|e| DocumentError::Toml(one_line(src, &e)))?;
        let network = parse_network(&t.network)?;
        let checkpoint = match t.checkpoint.as_str() {
            "genesis" => Checkpoint::genesis(network),
            "default" => Checkpoint::default_for(network),
            hex_str => {
                let b = hex_decode(hex_str)
                    .ok_or_else(|| DocumentError::Toml("checkpoint: not hex".into()))?;
                Checkpoint::decode(&b).map_err(|e| DocumentError::Checkpoint(e.to_string()))?
            }
        };
        let allowlist = t
            .rules
            .allow
            .iter()
            .map(|a| {
                let target = match (&a.address, &a.descriptor) {
                    (Some(addr), None) => {
                        let parsed = BtcAddress::from_str(addr)
                            .map_err(|e| DocumentError::Toml(format!("allow {:?}: {e}", a.label)))?
                            .require_network(network)
                            .map_err(|e| {
                                DocumentError::Toml(format!("allow {:?}: {e}", a.label))
                            })?;
                        AllowTarget::Script(parsed.script_pubkey())
                    }
                    (None, Some(d)) => AllowTarget::Descriptor(d.clone()),
                    _ => {
                        return Err(DocumentError::Toml(format!(
                            "allow {:?}: exactly one of address or descriptor",
                            a.label
                        )));
                    }
                };
                Ok(AllowEntry {
                    label: a.label.clone(),
                    target,
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        let time_windows = t
            .rules
            .time_windows
            .iter()
            .map(|w| {
                let mut weekdays = 0u8;
                for d in &w.days {
                    let i = DAYS
                        .iter()
                        .position(|x| x == d)
                        .ok_or_else(|| DocumentError::Toml(format!("unknown day {d:?}")))?;
                    weekdays |= 1u8.checked_shl(u32::try_from(i).unwrap_or(7)).unwrap_or(0);
                }
                Ok(TimeWindow {
                    weekdays,
                    start_minute: parse_minute(&w.start)?,
                    end_minute: parse_minute(&w.end)?,
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        let doc = PolicyDocument {
            version: t.version,
            network,
            admins: KeySet {
                keys: parse_keys(&t.admins.keys, "admins")?,
                threshold: t.admins.threshold,
            },
            activation_delay_ms: ms(t.activation_delay_s, "activation_delay_s")?,
            veto_threshold: t.veto_threshold,
            approvers: KeySet {
                keys: parse_keys(&t.approvers.keys, "approvers")?,
                threshold: t.approvers.threshold,
            },
            clock: ClockRules {
                max_forward_jump_ms: ms(t.clock.max_forward_jump_s, "max_forward_jump_s")?,
                max_behind_chain_ms: ms(t.clock.max_behind_chain_s, "max_behind_chain_s")?,
            },
            rules: BtcRules {
                per_tx_cap: Sats(t.rules.per_tx_cap_sat),
                velocity: t
                    .rules
                    .velocity
                    .iter()
                    .map(|v| {
                        Ok(VelocityWindow {
                            window_ms: ms(v.window_s, "window_s")?,
                            cap: Sats(v.cap_sat),
                        })
                    })
                    .collect::<Result<Vec<_>, DocumentError>>()?,
                allowlist,
                max_fee: Sats(t.rules.max_fee_sat),
                max_fee_rate: fee_rate(t.rules.max_fee_rate_sat_vb, "max_fee_rate_sat_vb")?,
                min_confirmations: t.rules.min_confirmations,
                time_windows,
                replacement: Replacement {
                    allowed: t.rules.replacement.allowed,
                    max_fee: Sats(t.rules.replacement.max_fee_sat),
                    max_fee_rate: fee_rate(
                        t.rules.replacement.max_fee_rate_sat_vb,
                        "replacement.max_fee_rate_sat_vb",
                    )?,
                },
                max_psbt_bytes: t.rules.max_psbt_bytes,
            },
            checkpoint,
            eth: t.eth.as_ref().map(TomlEth::compile).transpose()?,
        };
        doc.validate()?;
        Ok(doc)
    }
}

/// `[eth]` of the TOML source.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TomlEth {
    #[serde(default)]
    chains: Vec<TomlChain>,
    #[serde(default)]
    allow: Vec<TomlEthAllow>,
    #[serde(default)]
    tokens: Vec<TomlToken>,
    #[serde(default)]
    delegatecall: Vec<TomlDelegate>,
    #[serde(default)]
    safe_refunds: Vec<TomlRefund>,
    #[serde(default)]
    legacy_safes: Vec<u64>,
}

/// An amount: a TOML integer, or a string with an optional unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum TomlAmount {
    Int(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlChain {
    chain_id: u64,
    per_tx_cap: TomlAmount,
    max_gas_limit: u64,
    max_fee_per_gas: TomlAmount,
    max_priority_fee_per_gas: TomlAmount,
    #[serde(default)]
    velocity: Vec<TomlEthWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEthWindow {
    window_s: u64,
    cap: TomlAmount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEthAllow {
    label: String,
    chain_id: u64,
    address: String,
    #[serde(default)]
    selectors: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlToken {
    label: String,
    chain_id: u64,
    address: String,
    per_tx_cap: TomlAmount,
    #[serde(default)]
    velocity: Vec<TomlEthWindow>,
    #[serde(default)]
    spenders: Vec<TomlSpender>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlSpender {
    label: String,
    address: String,
    #[serde(default)]
    max_allowance: Option<TomlAmount>,
    #[serde(default)]
    unlimited: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlDelegate {
    label: String,
    chain_id: u64,
    address: String,
    kind: String,
    #[serde(default)]
    selectors: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlRefund {
    label: String,
    chain_id: u64,
    gas_token: String,
    refund_receiver: String,
    max_gas_price: TomlAmount,
}

fn toml_err(s: impl Into<String>) -> DocumentError {
    DocumentError::Toml(s.into())
}

/// Parses a decimal amount with an optional unit: `"1.5 ether"`, `"30
/// gwei"`, `"12 wei"`, `"12"` (base units). Exact: a fraction finer than
/// the unit allows is an error, never rounded.
#[must_use]
pub fn parse_amount(s: &str) -> Option<u128> {
    let s = s.trim();
    let (num, exp) = match s.rsplit_once(' ') {
        Some((n, "ether" | "eth")) => (n.trim(), 18u32),
        Some((n, "gwei")) => (n.trim(), 9),
        Some((n, "wei")) => (n.trim(), 0),
        Some(_) => return None,
        None => (s, 0),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > exp as usize {
        return None;
    }
    let scale = 10u128.checked_pow(exp)?;
    let int: u128 = int.parse().ok()?;
    let frac_scale = 10u128.checked_pow(exp.checked_sub(u32::try_from(frac.len()).ok()?)?)?;
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u128>().ok()?.checked_mul(frac_scale)?
    };
    int.checked_mul(scale)?.checked_add(frac)
}

fn toml_amount(a: &TomlAmount, what: &str) -> Result<u128, DocumentError> {
    match a {
        TomlAmount::Int(v) => Ok(u128::from(*v)),
        TomlAmount::Text(s) => {
            parse_amount(s).ok_or_else(|| toml_err(format!("{what}: {s:?} is not an amount")))
        }
    }
}

/// Parses `0x`-prefixed hex; a mixed-case address must carry a valid
/// EIP-55 checksum (a typo guard for administrators).
///
/// # Errors
/// [`DocumentError::Toml`].
pub fn parse_address(s: &str) -> Result<Address, DocumentError> {
    let bad = || toml_err(format!("{s:?} is not a 0x-prefixed 20-byte address"));
    let hex = s.strip_prefix("0x").ok_or_else(bad)?;
    if hex.len() != 40 {
        return Err(bad());
    }
    let raw = crate::document::hex_decode(&hex.to_ascii_lowercase()).ok_or_else(bad)?;
    let a = Address::from_slice(&raw);
    let lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if lower && upper && a.to_checksum(None) != s {
        return Err(toml_err(format!(
            "{s}: EIP-55 checksum mismatch (expected {})",
            a.to_checksum(None)
        )));
    }
    Ok(a)
}

pub(crate) fn parse_selector(s: &str) -> Result<Selector, DocumentError> {
    if s.contains('(') {
        return Ok(selector(s));
    }
    s.strip_prefix("0x")
        .and_then(|h| crate::document::hex_decode(&h.to_ascii_lowercase()))
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| toml_err(format!("selector {s:?}: 0x + 8 hex digits or a signature")))
}

fn toml_windows<A>(
    w: &[TomlEthWindow],
    make: impl Fn(u128) -> A,
) -> Result<Vec<VelocityWindow<A>>, DocumentError> {
    w.iter()
        .map(|x| {
            Ok(VelocityWindow {
                window_ms: x
                    .window_s
                    .checked_mul(1000)
                    .ok_or_else(|| toml_err("window_s too large"))?,
                cap: make(toml_amount(&x.cap, "velocity cap")?),
            })
        })
        .collect()
}

impl TomlEth {
    /// Compiles the `[eth]` table.
    pub(crate) fn compile(&self) -> Result<EthRules, DocumentError> {
        let chains = self
            .chains
            .iter()
            .map(|c| {
                Ok(ChainRule {
                    chain_id: c.chain_id,
                    per_tx_cap: Wei(toml_amount(&c.per_tx_cap, "per_tx_cap")?),
                    velocity: toml_windows(&c.velocity, Wei)?,
                    max_gas_limit: c.max_gas_limit,
                    max_fee_per_gas: Wei(toml_amount(&c.max_fee_per_gas, "max_fee_per_gas")?),
                    max_priority_fee_per_gas: Wei(toml_amount(
                        &c.max_priority_fee_per_gas,
                        "max_priority_fee_per_gas",
                    )?),
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        let allowlist = self
            .allow
            .iter()
            .map(|a| {
                Ok(EthAllowEntry {
                    label: a.label.clone(),
                    chain_id: a.chain_id,
                    address: parse_address(&a.address)?,
                    selectors: a
                        .selectors
                        .iter()
                        .map(|s| parse_selector(s))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        let tokens = self
            .tokens
            .iter()
            .map(|t| {
                Ok(TokenRule {
                    label: t.label.clone(),
                    chain_id: t.chain_id,
                    address: parse_address(&t.address)?,
                    per_tx_cap: TokenAmount(toml_amount(&t.per_tx_cap, "per_tx_cap")?),
                    velocity: toml_windows(&t.velocity, TokenAmount)?,
                    spenders: t
                        .spenders
                        .iter()
                        .map(|s| {
                            Ok(SpenderRule {
                                label: s.label.clone(),
                                address: parse_address(&s.address)?,
                                max_allowance: TokenAmount(match &s.max_allowance {
                                    Some(a) => toml_amount(a, "max_allowance")?,
                                    None => 0,
                                }),
                                unlimited: s.unlimited,
                            })
                        })
                        .collect::<Result<_, DocumentError>>()?,
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        let delegatecall = self
            .delegatecall
            .iter()
            .map(|d| {
                let kind = match d.kind.as_str() {
                    "library" => DelegateKind::Library,
                    "multisend" => DelegateKind::MultiSend,
                    "multisend-call-only" => DelegateKind::MultiSendCallOnly,
                    k => {
                        return Err(toml_err(format!(
                            "delegatecall {:?}: kind {k:?} (library, multisend, multisend-call-only)",
                            d.label
                        )));
                    }
                };
                Ok(DelegateTarget {
                    label: d.label.clone(),
                    chain_id: d.chain_id,
                    address: parse_address(&d.address)?,
                    kind,
                    selectors: d
                        .selectors
                        .iter()
                        .map(|s| parse_selector(s))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        let safe_refunds = self
            .safe_refunds
            .iter()
            .map(|r| {
                Ok(RefundRule {
                    label: r.label.clone(),
                    chain_id: r.chain_id,
                    gas_token: parse_address(&r.gas_token)?,
                    refund_receiver: parse_address(&r.refund_receiver)?,
                    max_gas_price: toml_amount(&r.max_gas_price, "max_gas_price")?,
                })
            })
            .collect::<Result<Vec<_>, DocumentError>>()?;
        Ok(EthRules {
            chains,
            allowlist,
            tokens,
            delegatecall,
            safe_refunds,
            legacy_safes: self.legacy_safes.clone(),
        })
    }
}

/// The parser's message on one line with where it went wrong (`line L,
/// column C`), instead of its multi-line rendering with a caret under a
/// copy of the line (which, for a one-line file, is the whole file).
fn one_line(src: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(at) = e.span().map(|s| s.start.min(src.len())) else {
        return message;
    };
    let before = src.get(..at).unwrap_or_default();
    let line = before.matches('\n').count().saturating_add(1);
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |l| l.chars().count())
        .saturating_add(1);
    format!("line {line}, column {column}: {message}")
}
