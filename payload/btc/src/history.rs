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
//! replacement, and then only if it spends EVERY outpoint of the transaction
//! it replaces (a superset, `btc-replacement-partial` otherwise), with
//! identical destinations (same scripts and amounts, as a multiset) and a
//! strictly higher fee (the fee caps of the replacement rule apply, checked
//! by the caller). Outpoints of several other transactions → refused (not a
//! simple fee bump).
//!
//! Why the superset: velocity charges a replacement only what it adds over
//! the transaction it replaces, on the grounds that at most one of the two
//! can confirm. That holds only if they conflict on every input of the
//! replaced one; a "replacement" spending a subset leaves the other inputs
//! free for more "replacements", all of which can confirm together (issue
//! 13 item 1: A = {u0..u3}, then B = {u0}, C = {u1}, ... each paying A's
//! destinations).
//!
//! What history must hold for this: every outpoint of a live spend points
//! at it. Recording a replacement re-points ALL outpoints of the replaced
//! transaction (they are a subset of the replacement's), so a replaced
//! transaction has no outpoint left and is never found again; a second
//! replacement of A therefore meets A's replacement B on A's outpoints and
//! must be a superset of B: replacements form one chain A ⊆ B ⊆ C ..., any
//! two of which conflict. [`PriorSpend::outpoints`] is the replaced
//! transaction's outpoint set read from that mapping.
//!
//! Must never: let a replacement change where money goes, or let two
//! transactions that can both confirm be charged as one.
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
    /// Every outpoint it spends (a replacement must spend all of them).
    pub outpoints: Vec<OutPoint>,
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
    /// Records an approved spend (what the node writes to its tables):
    /// every outpoint now points at `spend`, including those of a
    /// transaction it replaces (module docs).
    pub fn record(&mut self, outpoints: &[OutPoint], spend: &PriorSpend) {
        let spend = PriorSpend {
            outpoints: outpoints.to_vec(),
            ..spend.clone()
        };
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
/// [`BtcError::Equivocation`], [`BtcError::PartialReplacement`] or
/// [`BtcError::Replacement`].
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
            if let Some(missing) = p.outpoints.iter().find(|o| !outpoints.contains(*o)) {
                let left_out = p
                    .outpoints
                    .iter()
                    .filter(|o| !outpoints.contains(*o))
                    .count();
                return Err(BtcError::PartialReplacement {
                    previous: p.txid.to_string(),
                    missing: missing.to_string(),
                    left_out,
                    spent: p.outpoints.len(),
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
#[allow(clippy::arithmetic_side_effects, reason = "test code")]
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
            outpoints: vec![op(1), op(2)],
        };
        h.record(&[op(1), op(2)], &p1);
        assert_eq!(
            classify(&h, t1, &[op(1), op(2)], &d, Sats(10), &rule(false)).unwrap(),
            Conflict::SameTransaction
        );
        let e = classify(&h, t2, &[op(1)], &d, Sats(20), &rule(false)).unwrap_err();
        assert_eq!(e.code(), 0x0615);
        // Same destinations in another order, higher fee, every outpoint of
        // t1 and one more: a fee bump. (This test used to accept [op(1),
        // op(3)], a "replacement" that drops op(2) of t1: issue 13 item 1,
        // wrong, see `partial_replacement_refused`.)
        let swapped = vec![out(6, 2), out(5, 1)];
        assert_eq!(
            classify(
                &h,
                t2,
                &[op(1), op(2), op(3)],
                &swapped,
                Sats(20),
                &rule(true)
            )
            .unwrap(),
            Conflict::Replaces(p1.clone())
        );
        let e = classify(&h, t2, &[op(1), op(3)], &swapped, Sats(20), &rule(true)).unwrap_err();
        assert_eq!(e.code(), 0x06A0);
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
        let e = classify(&h, t2, &[op(1), op(2), op(4)], &d, Sats(20), &rule(true)).unwrap_err();
        assert_eq!(e.code(), 0x0616);
    }

    fn spend(txid: Txid, fee: u64, d: &[TxOut]) -> PriorSpend {
        PriorSpend {
            txid,
            destinations: d.to_vec(),
            fee: Sats(fee),
            amount: Sats(fee.saturating_add(11)),
            outpoints: Vec::new(),
        }
    }

    /// Issue 13 item 1: A = {u0..u3}; B = {u0}, C = {u1}, ... with A's
    /// destinations and a higher fee would each pass as "fee bumps" of A.
    #[test]
    fn partial_replacement_refused() {
        let mut h = MemoryHistory::default();
        let d = vec![out(5, 1)];
        let a = Txid::from_byte_array([0xA; 32]);
        h.record(&[op(0), op(1), op(2), op(3)], &spend(a, 10, &d));
        for (k, u) in (0..4u8).enumerate() {
            let t = Txid::from_byte_array([0xB0 | u; 32]);
            let fee = 11 + u64::try_from(k).unwrap();
            let e = classify(&h, t, &[op(u)], &d, Sats(fee), &rule(true)).unwrap_err();
            assert!(
                matches!(
                    &e,
                    BtcError::PartialReplacement {
                        left_out: 3,
                        spent: 4,
                        ..
                    }
                ),
                "{e}"
            );
            assert_eq!(e.rule(), spacenode_policy::Rule::PartialReplacement);
        }
    }

    /// A replacement of A must conflict with every earlier replacement of A:
    /// B = A + u9 replaced A; C = A (again a superset of A, higher fee than
    /// B) would not conflict with B on u9 — it meets B on A's outpoints and
    /// must then be a superset of B.
    #[test]
    fn replacements_of_one_transaction_form_a_chain() {
        let mut h = MemoryHistory::default();
        let d = vec![out(5, 1)];
        let a = Txid::from_byte_array([0xA; 32]);
        let b = Txid::from_byte_array([0xB; 32]);
        let c = Txid::from_byte_array([0xC; 32]);
        h.record(&[op(0), op(1)], &spend(a, 10, &d));
        let bump = classify(&h, b, &[op(0), op(1), op(9)], &d, Sats(20), &rule(true)).unwrap();
        assert!(matches!(bump, Conflict::Replaces(ref p) if p.txid == a));
        h.record(&[op(0), op(1), op(9)], &spend(b, 20, &d));
        // A's outpoints now all belong to B: A is never found again.
        assert!(h.spent.values().all(|p| p.txid == b));
        let e = classify(&h, c, &[op(0), op(1)], &d, Sats(30), &rule(true)).unwrap_err();
        assert!(
            matches!(&e, BtcError::PartialReplacement { previous, .. } if *previous == b.to_string()),
            "{e}"
        );
        // A superset of B is the next link of the chain.
        let next = classify(
            &h,
            c,
            &[op(0), op(1), op(9), op(7)],
            &d,
            Sats(30),
            &rule(true),
        );
        assert!(matches!(next, Ok(Conflict::Replaces(ref p)) if p.txid == b));
        // A itself again: meets B, not a superset of it (and a lower fee).
        assert!(classify(&h, a, &[op(0), op(1)], &d, Sats(10), &rule(true)).is_err());
    }
}
