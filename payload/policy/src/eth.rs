//! The Ethereum section of the policy document (key 10): which chains, what
//! may leave per transaction and per window, which destinations, tokens,
//! spenders, DELEGATECALL targets and Safe refund parameters are allowed.
//!
//! Owns: [`EthRules`] and its parts, their canonical CBOR form
//! ([`EthRules::to_value`] / [`EthRules::from_value`]), their validation,
//! (TOML authoring of `[eth]` and its diff lines are in `crate::authoring`). The rules are enforced by
//! `spacenode-eth`; this module only states them.
//!
//! Encoding (all keys required, amounts are 16-byte big-endian byte strings,
//! addresses 20 bytes, selectors 4 bytes):
//!
//! ```text
//! eth       := { 0: [chain], 1: [allow], 2: [token], 3: [delegatecall], 4: [refund],
//!               5?: legacy_safes [chain_id] }
//! chain     := { 0: chain_id, 1: per_tx_cap wei, 2: [{0: window_ms, 1: cap wei}],
//!                3: max_gas_limit, 4: max_fee_per_gas wei, 5: max_priority_fee_per_gas wei }
//! allow     := { 0: label, 1: chain_id, 2: address, 3: [selector] }
//! token     := { 0: label, 1: chain_id, 2: address, 3: per_tx_cap units,
//!                4: [{0: window_ms, 1: cap units}], 5: [spender] }
//! spender   := { 0: label, 1: address, 2: max_allowance units, 3: unlimited bool }
//! delegatecall := { 0: label, 1: chain_id, 2: address, 3: kind (0 library, 1 MultiSend,
//!                   2 MultiSendCallOnly), 4: [selector] }
//! refund    := { 0: label, 1: chain_id, 2: gas_token (zero: native), 3: refund_receiver
//!                (zero: tx.origin), 4: max_gas_price }
//! ```
//!
//! Key 5 is optional (absent = empty, and the document encodes exactly as
//! before the key existed): the chains on which the node may sign SafeTx
//! hashes of Safes older than 1.3.0, whose EIP-712 domain names no chain
//! (a signature for one is valid on every chain where the Safe's address
//! has the same owners; see docs/ethereum.md). Empty: such SafeTx are
//! refused (`safe-legacy-domain`).
//!
//! Every entry names ONE chain: an address that is safe on one chain may be
//! someone else's contract on another (counterfactual Safe deployments), so
//! nothing is allowed "on every chain".
//!
//! Must never: accept an entry for a chain that is not in `chains`, a
//! duplicate entry, or a refund in a token the policy does not cap.

use std::collections::BTreeSet;

use alloy_primitives::{Address, keccak256};

use crate::cbor::{CborError, Fields, Value, as_array, bytes, uint};
use crate::section::{DocumentError, MAX_LIST, VelocityWindow};
use crate::units::{TokenAmount, Wei};

/// Most selectors per allowlist or DELEGATECALL entry.
pub const MAX_SELECTORS: usize = 64;
/// Most spenders per token.
pub const MAX_SPENDERS: usize = 64;

/// A 4-byte function selector.
pub type Selector = [u8; 4];

/// Caps of one allowed chain (its native coin and its gas market).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRule {
    /// EIP-155 chain id (never 0).
    pub chain_id: u64,
    /// Most native coin that may leave per request: call values, the
    /// transaction's maximum fee and Safe refunds in the native coin.
    pub per_tx_cap: Wei,
    /// Rolling-window caps on the same amount.
    pub velocity: Vec<VelocityWindow<Wei>>,
    /// Largest gas limit of a transaction the node signs.
    pub max_gas_limit: u64,
    /// Largest `max_fee_per_gas` (EIP-1559) or `gas_price` (legacy).
    pub max_fee_per_gas: Wei,
    /// Largest `max_priority_fee_per_gas` (EIP-1559).
    pub max_priority_fee_per_gas: Wei,
}

/// An allowed destination on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthAllowEntry {
    /// Human label.
    pub label: String,
    /// Chain.
    pub chain_id: u64,
    /// Address.
    pub address: Address,
    /// Calldata selectors allowed to this address (empty calldata, a plain
    /// transfer, is always allowed to an allowlisted address).
    pub selectors: Vec<Selector>,
}

/// A spender an ERC-20 approval may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpenderRule {
    /// Human label.
    pub label: String,
    /// Spender address.
    pub address: Address,
    /// Largest allowance that may be granted.
    pub max_allowance: TokenAmount,
    /// Any allowance (including `type(uint256).max`) may be granted.
    pub unlimited: bool,
}

/// A registered ERC-20 token on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRule {
    /// Human label (e.g. "USDC").
    pub label: String,
    /// Chain.
    pub chain_id: u64,
    /// Token contract.
    pub address: Address,
    /// Most that may be transferred per request (transfer + transferFrom,
    /// and refunds paid in this token).
    pub per_tx_cap: TokenAmount,
    /// Rolling-window caps on the same amount.
    pub velocity: Vec<VelocityWindow<TokenAmount>>,
    /// Who may be approved.
    pub spenders: Vec<SpenderRule>,
}

/// What a DELEGATECALL target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DelegateKind {
    /// A library whose allowed selectors are listed (runs with the Safe's
    /// storage: allowlisting it is a statement of full trust).
    Library,
    /// Safe's `MultiSend`: every inner call is decoded and checked; inner
    /// DELEGATECALLs are checked like outer ones.
    MultiSend,
    /// Safe's `MultiSendCallOnly`: every inner call is decoded and checked;
    /// inner DELEGATECALLs are refused.
    MultiSendCallOnly,
}

impl DelegateKind {
    fn id(self) -> u8 {
        match self {
            Self::Library => 0,
            Self::MultiSend => 1,
            Self::MultiSendCallOnly => 2,
        }
    }

    fn from_id(v: u64) -> Option<Self> {
        match v {
            0 => Some(Self::Library),
            1 => Some(Self::MultiSend),
            2 => Some(Self::MultiSendCallOnly),
            _ => None,
        }
    }

    /// TOML spelling.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Library => "library",
            Self::MultiSend => "multisend",
            Self::MultiSendCallOnly => "multisend-call-only",
        }
    }
}

/// An allowed DELEGATECALL target of a Safe transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateTarget {
    /// Human label.
    pub label: String,
    /// Chain.
    pub chain_id: u64,
    /// Target contract.
    pub address: Address,
    /// What it is.
    pub kind: DelegateKind,
    /// Selectors allowed for a [`DelegateKind::Library`] (ignored for the
    /// MultiSend kinds, which only accept `multiSend(bytes)`).
    pub selectors: Vec<Selector>,
}

/// Allowed Safe refund parameters (gasPrice, gasToken, refundReceiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRule {
    /// Human label.
    pub label: String,
    /// Chain.
    pub chain_id: u64,
    /// Gas token (zero address: the native coin; otherwise a registered
    /// token of the same chain).
    pub gas_token: Address,
    /// Refund receiver (zero address: `tx.origin`, whoever executes).
    pub refund_receiver: Address,
    /// Largest `gasPrice` of the Safe transaction (in wei or token units
    /// per gas).
    pub max_gas_price: u128,
}

/// The Ethereum rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EthRules {
    /// Allowed chains with their caps (the chain-id allowlist).
    pub chains: Vec<ChainRule>,
    /// Allowed destinations.
    pub allowlist: Vec<EthAllowEntry>,
    /// Registered ERC-20 tokens.
    pub tokens: Vec<TokenRule>,
    /// Allowed DELEGATECALL targets.
    pub delegatecall: Vec<DelegateTarget>,
    /// Allowed Safe refund parameters.
    pub safe_refunds: Vec<RefundRule>,
    /// Chains on which SafeTx hashes of pre-1.3.0 Safes (EIP-712 domain
    /// without a chain id) may be signed (key 5, optional; empty: never).
    pub legacy_safes: Vec<u64>,
}

impl EthRules {
    /// The rule of `chain_id`, if the chain is allowed.
    #[must_use]
    pub fn chain(&self, chain_id: u64) -> Option<&ChainRule> {
        self.chains.iter().find(|c| c.chain_id == chain_id)
    }

    /// The allowlist entry of `address` on `chain_id`.
    #[must_use]
    pub fn allowed(&self, chain_id: u64, address: &Address) -> Option<&EthAllowEntry> {
        self.allowlist
            .iter()
            .find(|e| e.chain_id == chain_id && e.address == *address)
    }

    /// The registered token at `address` on `chain_id`.
    #[must_use]
    pub fn token(&self, chain_id: u64, address: &Address) -> Option<&TokenRule> {
        self.tokens
            .iter()
            .find(|t| t.chain_id == chain_id && t.address == *address)
    }

    /// The DELEGATECALL target at `address` on `chain_id`.
    #[must_use]
    pub fn delegate(&self, chain_id: u64, address: &Address) -> Option<&DelegateTarget> {
        self.delegatecall
            .iter()
            .find(|t| t.chain_id == chain_id && t.address == *address)
    }

    /// Whether the policy explicitly allows SafeTx signatures for pre-1.3.0
    /// Safes registered on `chain_id`.
    #[must_use]
    pub fn allows_legacy_safes(&self, chain_id: u64) -> bool {
        self.legacy_safes.contains(&chain_id)
    }

    /// The refund rule for `(gas_token, refund_receiver)` on `chain_id`.
    #[must_use]
    pub fn refund(
        &self,
        chain_id: u64,
        gas_token: &Address,
        refund_receiver: &Address,
    ) -> Option<&RefundRule> {
        self.safe_refunds.iter().find(|r| {
            r.chain_id == chain_id
                && r.gas_token == *gas_token
                && r.refund_receiver == *refund_receiver
        })
    }

    /// The canonical CBOR value (module docs).
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut m = vec![
            (
                0,
                Value::Array(
                    self.chains
                        .iter()
                        .map(|c| {
                            Value::Map(vec![
                                (0, uint(c.chain_id)),
                                (1, amount(c.per_tx_cap.0)),
                                (2, windows_value(&c.velocity, |w| w.0)),
                                (3, uint(c.max_gas_limit)),
                                (4, amount(c.max_fee_per_gas.0)),
                                (5, amount(c.max_priority_fee_per_gas.0)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                1,
                Value::Array(
                    self.allowlist
                        .iter()
                        .map(|e| {
                            Value::Map(vec![
                                (0, Value::Text(e.label.clone())),
                                (1, uint(e.chain_id)),
                                (2, bytes(e.address.as_slice())),
                                (3, selectors_value(&e.selectors)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                2,
                Value::Array(
                    self.tokens
                        .iter()
                        .map(|t| {
                            Value::Map(vec![
                                (0, Value::Text(t.label.clone())),
                                (1, uint(t.chain_id)),
                                (2, bytes(t.address.as_slice())),
                                (3, amount(t.per_tx_cap.0)),
                                (4, windows_value(&t.velocity, |w| w.0)),
                                (
                                    5,
                                    Value::Array(
                                        t.spenders
                                            .iter()
                                            .map(|s| {
                                                Value::Map(vec![
                                                    (0, Value::Text(s.label.clone())),
                                                    (1, bytes(s.address.as_slice())),
                                                    (2, amount(s.max_allowance.0)),
                                                    (3, Value::Bool(s.unlimited)),
                                                ])
                                            })
                                            .collect(),
                                    ),
                                ),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                3,
                Value::Array(
                    self.delegatecall
                        .iter()
                        .map(|d| {
                            Value::Map(vec![
                                (0, Value::Text(d.label.clone())),
                                (1, uint(d.chain_id)),
                                (2, bytes(d.address.as_slice())),
                                (3, uint(d.kind.id())),
                                (4, selectors_value(&d.selectors)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                4,
                Value::Array(
                    self.safe_refunds
                        .iter()
                        .map(|r| {
                            Value::Map(vec![
                                (0, Value::Text(r.label.clone())),
                                (1, uint(r.chain_id)),
                                (2, bytes(r.gas_token.as_slice())),
                                (3, bytes(r.refund_receiver.as_slice())),
                                (4, amount(r.max_gas_price)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ];
        // Optional: absent when empty, so documents without it keep their
        // bytes and hashes.
        if !self.legacy_safes.is_empty() {
            m.push((
                5,
                Value::Array(self.legacy_safes.iter().map(|c| uint(*c)).collect()),
            ));
        }
        Value::Map(m)
    }

    /// Strict decoding of the value (shape only; see [`EthRules::validate`]).
    ///
    /// # Errors
    /// [`DocumentError`].
    pub fn from_value(v: Value) -> Result<Self, DocumentError> {
        let mut f = Fields::new("eth", v)?;
        let chains = list(f.list(0, "eth.chains")?, |c| {
            let mut g = Fields::new("eth.chains", c)?;
            let r = ChainRule {
                chain_id: g.uint(0, "eth.chains.chain_id")?,
                per_tx_cap: Wei(as_amount(g.req(1, "eth.chains.per_tx_cap")?, "per_tx_cap")?),
                velocity: windows_from(g.list(2, "eth.chains.velocity")?, Wei)?,
                max_gas_limit: g.uint(3, "eth.chains.max_gas_limit")?,
                max_fee_per_gas: Wei(as_amount(
                    g.req(4, "eth.chains.max_fee_per_gas")?,
                    "max_fee_per_gas",
                )?),
                max_priority_fee_per_gas: Wei(as_amount(
                    g.req(5, "eth.chains.max_priority_fee_per_gas")?,
                    "max_priority_fee_per_gas",
                )?),
            };
            g.finish()?;
            Ok(r)
        })?;
        let allowlist = list(f.list(1, "eth.allowlist")?, |e| {
            let mut g = Fields::new("eth.allowlist", e)?;
            let r = EthAllowEntry {
                label: g.text(0, "eth.allowlist.label")?,
                chain_id: g.uint(1, "eth.allowlist.chain_id")?,
                address: Address::from(g.array::<20>(2, "eth.allowlist.address")?),
                selectors: selectors_from(g.list(3, "eth.allowlist.selectors")?)?,
            };
            g.finish()?;
            Ok(r)
        })?;
        let tokens = list(f.list(2, "eth.tokens")?, |t| {
            let mut g = Fields::new("eth.tokens", t)?;
            let label = g.text(0, "eth.tokens.label")?;
            let chain_id = g.uint(1, "eth.tokens.chain_id")?;
            let address = Address::from(g.array::<20>(2, "eth.tokens.address")?);
            let per_tx_cap = TokenAmount(as_amount(g.req(3, "eth.tokens.per_tx_cap")?, "cap")?);
            let velocity = windows_from(g.list(4, "eth.tokens.velocity")?, TokenAmount)?;
            let spenders = list(g.list(5, "eth.tokens.spenders")?, |s| {
                let mut h = Fields::new("eth.tokens.spenders", s)?;
                let r = SpenderRule {
                    label: h.text(0, "spender.label")?,
                    address: Address::from(h.array::<20>(1, "spender.address")?),
                    max_allowance: TokenAmount(as_amount(
                        h.req(2, "spender.max_allowance")?,
                        "max_allowance",
                    )?),
                    unlimited: h.boolean(3, "spender.unlimited")?,
                };
                h.finish()?;
                Ok(r)
            })?;
            g.finish()?;
            Ok(TokenRule {
                label,
                chain_id,
                address,
                per_tx_cap,
                velocity,
                spenders,
            })
        })?;
        let delegatecall = list(f.list(3, "eth.delegatecall")?, |d| {
            let mut g = Fields::new("eth.delegatecall", d)?;
            let label = g.text(0, "eth.delegatecall.label")?;
            let chain_id = g.uint(1, "eth.delegatecall.chain_id")?;
            let address = Address::from(g.array::<20>(2, "eth.delegatecall.address")?);
            let k = g.uint(3, "eth.delegatecall.kind")?;
            let kind = DelegateKind::from_id(k)
                .ok_or_else(|| invalid(format!("eth.delegatecall: unknown kind {k}")))?;
            let selectors = selectors_from(g.list(4, "eth.delegatecall.selectors")?)?;
            g.finish()?;
            Ok(DelegateTarget {
                label,
                chain_id,
                address,
                kind,
                selectors,
            })
        })?;
        let safe_refunds = list(f.list(4, "eth.safe_refunds")?, |r| {
            let mut g = Fields::new("eth.safe_refunds", r)?;
            let out = RefundRule {
                label: g.text(0, "eth.safe_refunds.label")?,
                chain_id: g.uint(1, "eth.safe_refunds.chain_id")?,
                gas_token: Address::from(g.array::<20>(2, "eth.safe_refunds.gas_token")?),
                refund_receiver: Address::from(
                    g.array::<20>(3, "eth.safe_refunds.refund_receiver")?,
                ),
                max_gas_price: as_amount(g.req(4, "eth.safe_refunds.max_gas_price")?, "price")?,
            };
            g.finish()?;
            Ok(out)
        })?;
        let legacy_safes = match f.opt(5, "eth.legacy_safes")? {
            None => Vec::new(),
            Some(v) => {
                let l = crate::cbor::as_list(v, "eth.legacy_safes")?;
                if l.is_empty() {
                    // Canonical form of "none" is the absent key.
                    return Err(invalid("eth.legacy_safes: empty list (omit the key)"));
                }
                list(l, |c| Ok(crate::cbor::as_uint(c, "eth.legacy_safes")?))?
            }
        };
        f.finish()?;
        Ok(Self {
            chains,
            allowlist,
            tokens,
            delegatecall,
            safe_refunds,
            legacy_safes,
        })
    }

    /// Semantic checks (module docs).
    ///
    /// # Errors
    /// [`DocumentError::Invalid`].
    pub fn validate(&self) -> Result<(), DocumentError> {
        if self.chains.len() > MAX_LIST
            || self.allowlist.len() > MAX_LIST
            || self.tokens.len() > MAX_LIST
            || self.delegatecall.len() > MAX_LIST
            || self.safe_refunds.len() > MAX_LIST
        {
            return Err(invalid("eth: list too long"));
        }
        let mut seen = BTreeSet::new();
        for c in &self.chains {
            if c.chain_id == 0 || !seen.insert(c.chain_id) {
                return Err(invalid(format!(
                    "eth.chains: chain id {} is zero or listed twice",
                    c.chain_id
                )));
            }
            check_windows(&c.velocity, "eth.chains.velocity")?;
            if c.max_priority_fee_per_gas > c.max_fee_per_gas {
                return Err(invalid(format!(
                    "eth.chains {}: max_priority_fee_per_gas above max_fee_per_gas",
                    c.chain_id
                )));
            }
        }
        let known = |chain: u64, what: &str| -> Result<(), DocumentError> {
            if seen.contains(&chain) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{what}: chain {chain} is not in eth.chains"
                )))
            }
        };
        let mut pairs = BTreeSet::new();
        for e in &self.allowlist {
            known(e.chain_id, "eth.allow")?;
            label_ok(&e.label)?;
            nonzero(&e.address, "eth.allow")?;
            if !pairs.insert((e.chain_id, e.address)) {
                return Err(invalid(format!("eth.allow: {} listed twice", e.address)));
            }
            selectors_ok(&e.selectors)?;
        }
        let mut pairs = BTreeSet::new();
        for t in &self.tokens {
            known(t.chain_id, "eth.tokens")?;
            label_ok(&t.label)?;
            nonzero(&t.address, "eth.tokens")?;
            if !pairs.insert((t.chain_id, t.address)) {
                return Err(invalid(format!("eth.tokens: {} listed twice", t.address)));
            }
            check_windows(&t.velocity, "eth.tokens.velocity")?;
            if t.spenders.len() > MAX_SPENDERS {
                return Err(invalid("eth.tokens: too many spenders"));
            }
            let mut sp = BTreeSet::new();
            for s in &t.spenders {
                label_ok(&s.label)?;
                nonzero(&s.address, "eth.tokens.spenders")?;
                if !sp.insert(s.address) {
                    return Err(invalid(format!(
                        "eth.tokens {}: spender {} listed twice",
                        t.label, s.address
                    )));
                }
            }
        }
        let mut pairs = BTreeSet::new();
        for d in &self.delegatecall {
            known(d.chain_id, "eth.delegatecall")?;
            label_ok(&d.label)?;
            nonzero(&d.address, "eth.delegatecall")?;
            if !pairs.insert((d.chain_id, d.address)) {
                return Err(invalid(format!(
                    "eth.delegatecall: {} listed twice",
                    d.address
                )));
            }
            selectors_ok(&d.selectors)?;
            if d.kind != DelegateKind::Library && !d.selectors.is_empty() {
                return Err(invalid(
                    "eth.delegatecall: selectors only apply to a library target",
                ));
            }
        }
        let mut legacy = BTreeSet::new();
        for c in &self.legacy_safes {
            known(*c, "eth.legacy_safes")?;
            if !legacy.insert(*c) {
                return Err(invalid(format!("eth.legacy_safes: chain {c} listed twice")));
            }
        }
        let mut triples = BTreeSet::new();
        for r in &self.safe_refunds {
            known(r.chain_id, "eth.safe_refunds")?;
            label_ok(&r.label)?;
            if !r.gas_token.is_zero() && self.token(r.chain_id, &r.gas_token).is_none() {
                return Err(invalid(format!(
                    "eth.safe_refunds {}: gas token {} is not a registered token of chain {} (its refunds could not be capped)",
                    r.label, r.gas_token, r.chain_id
                )));
            }
            if !triples.insert((r.chain_id, r.gas_token, r.refund_receiver)) {
                return Err(invalid("eth.safe_refunds: entry listed twice"));
            }
        }
        Ok(())
    }
}

fn invalid(s: impl Into<String>) -> DocumentError {
    DocumentError::Invalid(s.into())
}

fn label_ok(l: &str) -> Result<(), DocumentError> {
    if l.len() > 64 {
        return Err(invalid("eth: label longer than 64 bytes"));
    }
    Ok(())
}

fn nonzero(a: &Address, what: &str) -> Result<(), DocumentError> {
    if a.is_zero() {
        return Err(invalid(format!("{what}: the zero address")));
    }
    Ok(())
}

fn selectors_ok(s: &[Selector]) -> Result<(), DocumentError> {
    if s.len() > MAX_SELECTORS {
        return Err(invalid("eth: too many selectors in one entry"));
    }
    let set: BTreeSet<_> = s.iter().collect();
    if set.len() != s.len() {
        return Err(invalid("eth: selector listed twice"));
    }
    Ok(())
}

fn check_windows<A: Ord>(w: &[VelocityWindow<A>], what: &str) -> Result<(), DocumentError> {
    if w.len() > MAX_LIST {
        return Err(invalid(format!("{what}: too many windows")));
    }
    let mut lens = BTreeSet::new();
    for x in w {
        if x.window_ms == 0 || !lens.insert(x.window_ms) {
            return Err(invalid(format!(
                "{what}: windows must be > 0 ms and of distinct lengths"
            )));
        }
    }
    Ok(())
}

/// Amount as a 16-byte big-endian byte string.
fn amount(v: u128) -> Value {
    bytes(&v.to_be_bytes())
}

fn as_amount(v: Value, field: &'static str) -> Result<u128, CborError> {
    Ok(u128::from_be_bytes(as_array::<16>(v, field)?))
}

fn windows_value<A: Copy>(w: &[VelocityWindow<A>], get: impl Fn(A) -> u128) -> Value {
    Value::Array(
        w.iter()
            .map(|x| Value::Map(vec![(0, uint(x.window_ms)), (1, amount(get(x.cap)))]))
            .collect(),
    )
}

fn windows_from<A>(
    items: Vec<Value>,
    make: impl Fn(u128) -> A,
) -> Result<Vec<VelocityWindow<A>>, DocumentError> {
    list(items, |w| {
        let mut g = Fields::new("velocity", w)?;
        let window_ms = g.uint(0, "velocity.window_ms")?;
        let cap = make(as_amount(g.req(1, "velocity.cap")?, "velocity.cap")?);
        g.finish()?;
        Ok(VelocityWindow { window_ms, cap })
    })
}

fn selectors_value(s: &[Selector]) -> Value {
    Value::Array(s.iter().map(|x| bytes(x)).collect())
}

fn selectors_from(items: Vec<Value>) -> Result<Vec<Selector>, DocumentError> {
    list(items, |v| Ok(as_array::<4>(v, "selector")?))
}

fn list<T>(
    items: Vec<Value>,
    f: impl Fn(Value) -> Result<T, DocumentError>,
) -> Result<Vec<T>, DocumentError> {
    if items.len() > MAX_LIST {
        return Err(invalid("eth: list too long"));
    }
    items.into_iter().map(f).collect()
}

/// The 4-byte selector of a Solidity function signature, e.g.
/// `transfer(address,uint256)` → `a9059cbb`.
#[must_use]
pub fn selector(signature: &str) -> Selector {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authoring::compile::{parse_address, parse_amount, parse_selector};

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_amount("1 ether"), Some(1_000_000_000_000_000_000));
        assert_eq!(parse_amount("1.5 ether"), Some(1_500_000_000_000_000_000));
        assert_eq!(parse_amount("30 gwei"), Some(30_000_000_000));
        assert_eq!(parse_amount("0.5 gwei"), Some(500_000_000));
        assert_eq!(parse_amount("12"), Some(12));
        assert_eq!(parse_amount("12 wei"), Some(12));
        assert_eq!(parse_amount("1.5"), None);
        assert_eq!(parse_amount("0.0000000001 gwei"), None);
        assert_eq!(parse_amount("1 btc"), None);
        assert_eq!(parse_amount("-1"), None);
        assert_eq!(parse_amount("1e18"), None);
        assert_eq!(parse_amount("999999999999999999999999 ether"), None);
    }

    #[test]
    fn addresses_need_a_valid_checksum_when_mixed_case() {
        let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert!(parse_address(good).is_ok());
        assert!(parse_address(&good.to_ascii_lowercase()).is_ok());
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert!(matches!(parse_address(bad), Err(DocumentError::Toml(_))));
        assert!(parse_address("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_err());
        assert!(parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea").is_err());
    }

    #[test]
    fn selectors_from_hex_or_signature() {
        assert_eq!(
            parse_selector("transfer(address,uint256)").unwrap(),
            [0xa9, 0x05, 0x9c, 0xbb]
        );
        assert_eq!(
            parse_selector("0x095EA7B3").unwrap(),
            [0x09, 0x5e, 0xa7, 0xb3]
        );
        assert!(parse_selector("0x095ea7").is_err());
    }
}
