//! Anti-equivocation: never two different transactions over one outpoint,
//! except a policy-allowed fee bump.
//!
//! Owns: the [`SpendHistory`] seam (the node implements it over its
//! `spent_outpoints(outpoint PRIMARY KEY, txid)` and `spends(txid PRIMARY
//! KEY, request_id, destinations, fee_sat, amount_sat, time_ms)` tables),
//! [`MemoryHistory`] for tests and the demo, and the pure [`classify`]
//! decision.
//!
//! Rules: outpoints never signed → new spend. All signed in this very
//! transaction (same txid) → the same transaction again (velocity counts 0).
//! Signed in ONE other transaction → refused unless the policy allows
//! replacement, and then only with identical destinations (same scripts and
//! amounts, as a multiset) and a strictly higher fee (the fee caps of the
//! replacement rule apply, checked by the caller). Outpoints of several
//! other transactions → refused (not a simple fee bump).
//!
//! Must never: let a replacement change where money goes.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use bitcoin::{OutPoint, TxOut, Txid};
use spacenode_policy::Sats;
use spacenode_policy::document::Replacement;

use crate::error::BtcError;

/// A transaction the node signed before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorSpend {
    /// Its txid.
    pub txid: Txid,
    /// Its non-change outputs.
    pub destinations: Vec<TxOut>,
    /// Its fee.
    pub fee: Sats,
    /// What it took from the wallets (destinations + fee).
    pub amount: Sats,
}

/// Lookup of persisted spends.
pub trait SpendHistory {
    /// The spend that signed `outpoint`, if any.
    fn spent_by(&self, outpoint: &OutPoint) -> Option<PriorSpend>;
}

/// In-memory history (tests, demo, HIL).
#[derive(Debug, Clone, Default)]
pub struct MemoryHistory {
    /// Outpoint → spend.
    pub spent: BTreeMap<OutPoint, PriorSpend>,
}

impl SpendHistory for MemoryHistory {
    fn spent_by(&self, outpoint: &OutPoint) -> Option<PriorSpend> {
        self.spent.get(outpoint).cloned()
    }
}

impl MemoryHistory {
    /// Records an approved spend (what the node writes to its tables).
    pub fn record(&mut self, outpoints: &[OutPoint], spend: &PriorSpend) {
        for o in outpoints {
            self.spent.insert(*o, spend.clone());
        }
    }
}

/// How a transaction relates to earlier signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// No outpoint signed before.
    Fresh,
    /// Exactly this transaction was signed before.
    SameTransaction,
    /// A fee bump of an earlier transaction.
    Replaces(PriorSpend),
}

fn sorted(v: &[TxOut]) -> Vec<(Vec<u8>, u64)> {
    let mut s: Vec<_> = v
        .iter()
        .map(|o| (o.script_pubkey.to_bytes(), o.value.to_sat()))
        .collect();
    s.sort();
    s
}

/// Classifies a checked transaction.
///
/// # Errors
/// [`BtcError::Equivocation`] or [`BtcError::Replacement`].
pub fn classify<H: SpendHistory + ?Sized>(
    history: &H,
    txid: Txid,
    outpoints: &[OutPoint],
    destinations: &[TxOut],
    fee: Sats,
    rule: &Replacement,
) -> Result<Conflict, BtcError> {
    let mut prior: Option<(OutPoint, PriorSpend)> = None;
    let mut same = false;
    for o in outpoints {
        let Some(p) = history.spent_by(o) else {
            continue;
        };
        if p.txid == txid {
            same = true;
            continue;
        }
        if !rule.allowed {
            return Err(BtcError::Equivocation {
                outpoint: o.to_string(),
                previous: p.txid.to_string(),
            });
        }
        match &prior {
            Some((_, q)) if q.txid != p.txid => {
                return Err(BtcError::Replacement {
                    previous: q.txid.to_string(),
                    detail: format!("also conflicts with {}", p.txid),
                });
            }
            Some(_) => {}
            None => prior = Some((*o, p)),
        }
    }
    match prior {
        None if same => Ok(Conflict::SameTransaction),
        None => Ok(Conflict::Fresh),
        Some((_, p)) => {
            if same {
                return Err(BtcError::Replacement {
                    previous: p.txid.to_string(),
                    detail: "mixes outpoints of this and another signed transaction".into(),
                });
            }
            if sorted(&p.destinations) != sorted(destinations) {
                return Err(BtcError::Replacement {
                    previous: p.txid.to_string(),
                    detail: "destinations differ (only a fee bump may replace)".into(),
                });
            }
            if fee <= p.fee {
                return Err(BtcError::Replacement {
                    previous: p.txid.to_string(),
                    detail: format!("fee {} not above the replaced fee {}", fee, p.fee),
                });
            }
            Ok(Conflict::Replaces(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, ScriptBuf};
    use spacenode_policy::FeeRate;

    fn out(v: u64, s: u8) -> TxOut {
        TxOut {
            value: Amount::from_sat(v),
            script_pubkey: ScriptBuf::from_bytes(vec![s]),
        }
    }

    fn op(i: u8) -> OutPoint {
        OutPoint {
            txid: Txid::from_byte_array([i; 32]),
            vout: 0,
        }
    }

    fn rule(allowed: bool) -> Replacement {
        Replacement {
            allowed,
            max_fee: Sats(1_000),
            max_fee_rate: FeeRate(1_000_000),
        }
    }

    #[test]
    fn classification() {
        let mut h = MemoryHistory::default();
        let t1 = Txid::from_byte_array([1; 32]);
        let t2 = Txid::from_byte_array([2; 32]);
        let t3 = Txid::from_byte_array([3; 32]);
        let d = vec![out(5, 1), out(6, 2)];
        let fresh = classify(&h, t1, &[op(1)], &d, Sats(10), &rule(false)).unwrap();
        assert_eq!(fresh, Conflict::Fresh);
        let p1 = PriorSpend {
            txid: t1,
            destinations: d.clone(),
            fee: Sats(10),
            amount: Sats(21),
        };
        h.record(&[op(1), op(2)], &p1);
        assert_eq!(
            classify(&h, t1, &[op(1), op(2)], &d, Sats(10), &rule(false)).unwrap(),
            Conflict::SameTransaction
        );
        let e = classify(&h, t2, &[op(1)], &d, Sats(20), &rule(false)).unwrap_err();
        assert_eq!(e.code(), 0x0615);
        // Same destinations in another order, higher fee: a fee bump.
        let swapped = vec![out(6, 2), out(5, 1)];
        assert_eq!(
            classify(&h, t2, &[op(1), op(3)], &swapped, Sats(20), &rule(true)).unwrap(),
            Conflict::Replaces(p1.clone())
        );
        assert!(classify(&h, t2, &[op(1)], &[out(5, 1)], Sats(20), &rule(true)).is_err());
        assert!(classify(&h, t2, &[op(1)], &d, Sats(10), &rule(true)).is_err());
        // Conflicts with two earlier transactions.
        h.record(
            &[op(4)],
            &PriorSpend {
                txid: t3,
                ..p1.clone()
            },
        );
        let e = classify(&h, t2, &[op(1), op(4)], &d, Sats(20), &rule(true)).unwrap_err();
        assert_eq!(e.code(), 0x0616);
    }
}
