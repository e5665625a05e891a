//! The readable policy diff administrators review before they sign: one
//! line per changed field or list entry, Bitcoin and Ethereum sections.
//!
//! Must never: be needed by the node (ground side; behind `authoring`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bitcoin::secp256k1::XOnlyPublicKey;

use super::{DAYS, network_name};
use crate::document::{AllowTarget, PolicyDocument, hex_encode};
use crate::eth::{EthRules, Selector};

fn weekdays_text(m: u8) -> String {
    DAYS.iter()
        .enumerate()
        .filter(|(i, _)| m & 1u8.checked_shl(u32::try_from(*i).unwrap_or(7)).unwrap_or(0) != 0)
        .map(|(_, d)| *d)
        .collect::<Vec<_>>()
        .join(",")
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Flattened `path -> values` view used by [`diff`]; list-valued fields have
/// several values.
fn flatten(d: &PolicyDocument) -> BTreeMap<&'static str, Vec<String>> {
    let r = &d.rules;
    let keys = |k: &[XOnlyPublicKey]| k.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut m: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    m.insert("version", vec![d.version.to_string()]);
    m.insert("network", vec![network_name(d.network).into()]);
    m.insert("admins.keys", keys(&d.admins.keys));
    m.insert("admins.threshold", vec![d.admins.threshold.to_string()]);
    m.insert(
        "activation_delay",
        vec![format!("{} s", d.activation_delay_ms / 1000)],
    );
    m.insert("veto_threshold", vec![d.veto_threshold.to_string()]);
    m.insert("approvers.keys", keys(&d.approvers.keys));
    m.insert(
        "approvers.threshold",
        vec![d.approvers.threshold.to_string()],
    );
    m.insert(
        "clock.max_forward_jump",
        vec![format!("{} s", d.clock.max_forward_jump_ms / 1000)],
    );
    m.insert(
        "clock.max_behind_chain",
        vec![format!("{} s", d.clock.max_behind_chain_ms / 1000)],
    );
    m.insert("rules.per_tx_cap", vec![r.per_tx_cap.to_string()]);
    m.insert(
        "rules.velocity",
        r.velocity
            .iter()
            .map(|w| format!("{} per {} s", w.cap, w.window_ms / 1000))
            .collect(),
    );
    m.insert(
        "rules.allow",
        r.allowlist
            .iter()
            .map(|e| match &e.target {
                AllowTarget::Script(s) => {
                    format!("{}: script {}", e.label, hex_encode(s.as_bytes()))
                }
                AllowTarget::Descriptor(x) => format!("{}: descriptor {x}", e.label),
            })
            .collect(),
    );
    m.insert("rules.max_fee", vec![r.max_fee.to_string()]);
    m.insert("rules.max_fee_rate", vec![r.max_fee_rate.to_string()]);
    m.insert(
        "rules.min_confirmations",
        vec![r.min_confirmations.to_string()],
    );
    m.insert(
        "rules.time_windows",
        r.time_windows
            .iter()
            .map(|w| {
                format!(
                    "{} {}-{} UTC",
                    weekdays_text(w.weekdays),
                    hhmm(w.start_minute),
                    hhmm(w.end_minute)
                )
            })
            .collect(),
    );
    m.insert(
        "rules.replacement",
        vec![format!(
            "{} (max fee {}, max rate {})",
            if r.replacement.allowed {
                "allowed"
            } else {
                "refused"
            },
            r.replacement.max_fee,
            r.replacement.max_fee_rate
        )],
    );
    m.insert("rules.max_psbt_bytes", vec![r.max_psbt_bytes.to_string()]);
    m.insert(
        "eth",
        vec![if d.eth.is_some() { "present" } else { "absent" }.into()],
    );
    flatten_eth(&d.eth.clone().unwrap_or_default(), &mut m);
    m.insert(
        "checkpoint",
        vec![format!(
            "height {} block {}",
            d.checkpoint.height,
            d.checkpoint.hash()
        )],
    );
    m
}

const LIST_FIELDS: [&str; 5] = [
    "admins.keys",
    "approvers.keys",
    "rules.velocity",
    "rules.allow",
    "rules.time_windows",
];

/// A readable diff from `old` to `new`, one line per change:
/// `~ field: old -> new` for single values, `+ field: item` / `- field:
/// item` for list entries. Empty when the documents are equal.
#[must_use]
pub fn diff(old: &PolicyDocument, new: &PolicyDocument) -> Vec<String> {
    let a = flatten(old);
    let b = flatten(new);
    let mut out = Vec::new();
    for (k, va) in &a {
        let vb = b.get(k).cloned().unwrap_or_default();
        if LIST_FIELDS.contains(k) || ETH_LIST_FIELDS.contains(k) {
            for x in va.iter().filter(|x| !vb.contains(x)) {
                out.push(format!("- {k}: {x}"));
            }
            for x in vb.iter().filter(|x| !va.contains(x)) {
                out.push(format!("+ {k}: {x}"));
            }
            if out.is_empty() && *va != vb && va.len() == vb.len() {
                out.push(format!("~ {k}: order changed"));
            }
        } else if *va != vb {
            out.push(format!("~ {k}: {} -> {}", va.join(", "), vb.join(", ")));
        }
    }
    out
}

/// Flattened `path -> values` lines of the Ethereum section.
fn flatten_eth(e: &EthRules, m: &mut BTreeMap<&'static str, Vec<String>>) {
    m.insert(
        "eth.chains",
        e.chains
            .iter()
            .map(|c| {
                format!(
                    "{}: cap {}, gas limit {}, max fee {}, max priority fee {}",
                    c.chain_id,
                    c.per_tx_cap,
                    c.max_gas_limit,
                    c.max_fee_per_gas,
                    c.max_priority_fee_per_gas
                )
            })
            .collect(),
    );
    m.insert(
        "eth.velocity",
        e.chains
            .iter()
            .flat_map(|c| {
                c.velocity
                    .iter()
                    .map(move |w| format!("{}: {} per {} s", c.chain_id, w.cap, w.window_ms / 1000))
            })
            .collect(),
    );
    m.insert(
        "eth.allow",
        e.allowlist
            .iter()
            .map(|e| {
                format!(
                    "{}: {} on {} selectors [{}]",
                    e.label,
                    e.address,
                    e.chain_id,
                    selectors_text(&e.selectors)
                )
            })
            .collect(),
    );
    m.insert(
        "eth.tokens",
        e.tokens
            .iter()
            .map(|t| {
                let mut s = format!(
                    "{}: {} on {} cap {}",
                    t.label, t.address, t.chain_id, t.per_tx_cap
                );
                for w in &t.velocity {
                    let _ = write!(s, ", {} per {} s", w.cap, w.window_ms / 1000);
                }
                s
            })
            .collect(),
    );
    m.insert(
        "eth.spenders",
        e.tokens
            .iter()
            .flat_map(|t| {
                t.spenders.iter().map(move |s| {
                    format!(
                        "{} -> {}: {} max {}{}",
                        t.label,
                        s.label,
                        s.address,
                        s.max_allowance,
                        if s.unlimited {
                            " (unlimited allowed)"
                        } else {
                            ""
                        }
                    )
                })
            })
            .collect(),
    );
    m.insert(
        "eth.delegatecall",
        e.delegatecall
            .iter()
            .map(|d| {
                format!(
                    "{}: {} on {} ({}) selectors [{}]",
                    d.label,
                    d.address,
                    d.chain_id,
                    d.kind.name(),
                    selectors_text(&d.selectors)
                )
            })
            .collect(),
    );
    m.insert(
        "eth.safe_refunds",
        e.safe_refunds
            .iter()
            .map(|r| {
                format!(
                    "{}: token {} receiver {} on {} max gas price {}",
                    r.label, r.gas_token, r.refund_receiver, r.chain_id, r.max_gas_price
                )
            })
            .collect(),
    );
    m.insert(
        "eth.legacy_safes",
        e.legacy_safes
            .iter()
            .map(|c| format!("pre-1.3.0 Safes on chain {c}"))
            .collect(),
    );
}

/// List fields of `flatten_eth` (diffed entry by entry).
const ETH_LIST_FIELDS: [&str; 8] = [
    "eth.chains",
    "eth.velocity",
    "eth.allow",
    "eth.tokens",
    "eth.spenders",
    "eth.delegatecall",
    "eth.safe_refunds",
    "eth.legacy_safes",
];

fn selectors_text(s: &[Selector]) -> String {
    s.iter()
        .map(|x| format!("0x{}", hex_encode(x)))
        .collect::<Vec<_>>()
        .join(", ")
}
