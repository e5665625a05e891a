//! Ethereum velocity: one ledger per chain for its native coin and one per
//! registered token, all of the policy crate's [`VelocityLedger`] design.
//!
//! Owns: [`EthLedgers`] (the pure view of the persisted rows), the check of
//! a [`Spend`] against every window ([`EthLedgers::check`]) and the rows an
//! approval adds ([`EthVelocityRow`]).
//!
//! Table: `eth_velocity(chain_id, asset BLOB20 (zero: native), at_ms,
//! amount BLOB16 (u128 BE), request_id)`, written in the approval's
//! transaction. Load each ledger with [`EthLedgers::insert_row`] and give
//! every ledger the node's global velocity high-water mark (the highest
//! `at_ms` of any row, Bitcoin's included), so a clock step backwards never
//! reopens a window of any asset. Prune with [`EthLedgers::prune`].
//!
//! Amounts are converted from `U256` only after the per-request caps
//! (`check::check_caps`) bounded them by `u128` caps; a sum that does not
//! fit is refused, never truncated.
//!
//! Must never: approve an amount that takes a window above its cap, or
//! overflow.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use alloy_primitives::{Address, U256};
use spacenode_policy::audit::{EthCounters, TokenCounters};
use spacenode_policy::eth::EthRules;
use spacenode_policy::units::{TimeMs, TokenAmount, Wei};
use spacenode_policy::velocity::{VelocityEntry, VelocityLedger};

use crate::check::Spend;
use crate::error::EthError;

/// One persisted velocity row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthVelocityRow {
    /// Chain.
    pub chain_id: u64,
    /// Token, or `None` for the native coin (stored as the zero address).
    pub token: Option<Address>,
    /// Accounting time.
    pub at: TimeMs,
    /// Amount (wei or token units).
    pub amount: u128,
}

/// The velocity ledgers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EthLedgers {
    /// Native coin per chain.
    pub native: BTreeMap<u64, VelocityLedger<Wei>>,
    /// Tokens per (chain, token).
    pub tokens: BTreeMap<(u64, Address), VelocityLedger<TokenAmount>>,
    /// Global high-water mark (module docs).
    pub high_water: TimeMs,
}

/// The window totals of a checked spend (for the audit entry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VelocityTotals {
    /// Native totals per window of the chain (policy order).
    pub native: Vec<Wei>,
    /// Token totals per window, per token.
    pub tokens: BTreeMap<Address, Vec<TokenAmount>>,
}

fn to_u128(v: U256) -> Result<u128, EthError> {
    u128::try_from(v).map_err(|_| EthError::AmountOverflow)
}

impl EthLedgers {
    /// Empty ledgers with the node's global high-water mark.
    #[must_use]
    pub fn new(high_water: TimeMs) -> Self {
        Self {
            high_water,
            ..Self::default()
        }
    }

    /// Adds a persisted row.
    pub fn insert_row(&mut self, row: EthVelocityRow) {
        self.high_water = self.high_water.max(row.at);
        match row.token {
            None => {
                let l = self.native.entry(row.chain_id).or_default();
                l.entries.push(VelocityEntry {
                    at: row.at,
                    amount: Wei(row.amount),
                });
            }
            Some(t) => {
                let l = self.tokens.entry((row.chain_id, t)).or_default();
                l.entries.push(VelocityEntry {
                    at: row.at,
                    amount: TokenAmount(row.amount),
                });
            }
        }
    }

    fn native_ledger(&self, chain_id: u64) -> VelocityLedger<Wei> {
        let l = self.native.get(&chain_id).cloned().unwrap_or_default();
        VelocityLedger::from_entries(l.entries, self.high_water.max(l.high_water))
    }

    fn token_ledger(&self, chain_id: u64, token: Address) -> VelocityLedger<TokenAmount> {
        let l = self
            .tokens
            .get(&(chain_id, token))
            .cloned()
            .unwrap_or_default();
        VelocityLedger::from_entries(l.entries, self.high_water.max(l.high_water))
    }

    /// Checks `spend` against the chain's and each token's windows.
    ///
    /// # Errors
    /// [`EthError::Velocity`], [`EthError::TokenVelocity`],
    /// [`EthError::AmountOverflow`], [`EthError::ChainNotAllowed`].
    pub fn check(
        &self,
        rules: &EthRules,
        spend: &Spend,
        now: TimeMs,
    ) -> Result<VelocityTotals, EthError> {
        let chain = rules
            .chain(spend.chain_id)
            .ok_or(EthError::ChainNotAllowed(spend.chain_id))?;
        let native = self
            .native_ledger(spend.chain_id)
            .check(&chain.velocity, now, Wei(to_u128(spend.native)?))
            .map_err(|e| EthError::Velocity {
                chain_id: spend.chain_id,
                detail: e.to_string(),
            })?;
        let mut tokens = BTreeMap::new();
        for (token, amount) in &spend.tokens {
            let windows = rules
                .token(spend.chain_id, token)
                .map(|t| t.velocity.as_slice())
                .unwrap_or_default();
            let totals = self
                .token_ledger(spend.chain_id, *token)
                .check(windows, now, TokenAmount(to_u128(*amount)?))
                .map_err(|e| EthError::TokenVelocity {
                    token: *token,
                    detail: e.to_string(),
                })?;
            tokens.insert(*token, totals);
        }
        Ok(VelocityTotals { native, tokens })
    }

    /// The rows an approved `spend` adds (zero amounts are not recorded),
    /// at the accounting time of `now`.
    ///
    /// # Errors
    /// [`EthError::AmountOverflow`].
    pub fn rows(&self, spend: &Spend, now: TimeMs) -> Result<Vec<EthVelocityRow>, EthError> {
        let at = now.max(self.high_water);
        let mut out = Vec::new();
        if !spend.native.is_zero() {
            out.push(EthVelocityRow {
                chain_id: spend.chain_id,
                token: None,
                at: at.max(self.native_ledger(spend.chain_id).high_water),
                amount: to_u128(spend.native)?,
            });
        }
        for (token, amount) in &spend.tokens {
            if !amount.is_zero() {
                out.push(EthVelocityRow {
                    chain_id: spend.chain_id,
                    token: Some(*token),
                    at: at.max(self.token_ledger(spend.chain_id, *token).high_water),
                    amount: to_u128(*amount)?,
                });
            }
        }
        Ok(out)
    }

    /// Drops rows older than each ledger's longest window; returns the
    /// per-asset cut-offs (the node deletes rows with `at_ms <= cutoff`).
    pub fn prune(&mut self, rules: &EthRules, now: TimeMs) -> Vec<(u64, Option<Address>, TimeMs)> {
        let mut cut = Vec::new();
        for (chain, l) in &mut self.native {
            if let Some(c) = rules.chain(*chain) {
                l.high_water = l.high_water.max(self.high_water);
                if let Some(t) = l.prune(&c.velocity, now) {
                    cut.push((*chain, None, t));
                }
            }
        }
        for ((chain, token), l) in &mut self.tokens {
            if let Some(r) = rules.token(*chain, token) {
                l.high_water = l.high_water.max(self.high_water);
                if let Some(t) = l.prune(&r.velocity, now) {
                    cut.push((*chain, Some(*token), t));
                }
            }
        }
        cut
    }
}

/// The audit counters of a checked spend.
///
/// # Errors
/// [`EthError::AmountOverflow`].
pub fn counters(spend: &Spend, totals: &VelocityTotals) -> Result<EthCounters, EthError> {
    Ok(EthCounters {
        chain_id: spend.chain_id,
        native: Wei(to_u128(spend.native)?),
        fee: Wei(to_u128(spend.fee)?),
        window_totals: totals.native.clone(),
        tokens: spend
            .tokens
            .iter()
            .map(|(t, a)| {
                Ok(TokenCounters {
                    token: *t,
                    amount: TokenAmount(to_u128(*a)?),
                    window_totals: totals.tokens.get(t).cloned().unwrap_or_default(),
                })
            })
            .collect::<Result<_, EthError>>()?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use spacenode_policy::document::VelocityWindow;
    use spacenode_policy::eth::{ChainRule, TokenRule};

    fn rules() -> EthRules {
        EthRules {
            chains: vec![ChainRule {
                chain_id: 1,
                per_tx_cap: Wei(100),
                velocity: vec![VelocityWindow {
                    window_ms: 1_000,
                    cap: Wei(150),
                }],
                max_gas_limit: 1,
                max_fee_per_gas: Wei(1),
                max_priority_fee_per_gas: Wei(1),
            }],
            tokens: vec![TokenRule {
                label: "T".into(),
                chain_id: 1,
                address: Address::repeat_byte(9),
                per_tx_cap: TokenAmount(10),
                velocity: vec![VelocityWindow {
                    window_ms: 1_000,
                    cap: TokenAmount(15),
                }],
                spenders: vec![],
            }],
            ..EthRules::default()
        }
    }

    fn spend(native: u64, token: u64) -> Spend {
        let mut s = Spend {
            chain_id: 1,
            native: U256::from(native),
            ..Spend::default()
        };
        s.tokens.insert(Address::repeat_byte(9), U256::from(token));
        s
    }

    #[test]
    fn native_and_token_windows() {
        let r = rules();
        let mut l = EthLedgers::new(TimeMs(0));
        let s = spend(100, 10);
        let t = l.check(&r, &s, TimeMs(10)).unwrap();
        assert_eq!(t.native, vec![Wei(100)]);
        for row in l.rows(&s, TimeMs(10)).unwrap() {
            l.insert_row(row);
        }
        let e = l.check(&r, &spend(51, 0), TimeMs(20)).unwrap_err();
        assert_eq!(e.code(), 0x0718);
        let e = l.check(&r, &spend(0, 6), TimeMs(20)).unwrap_err();
        assert_eq!(e.code(), 0x071A);
        assert!(l.check(&r, &spend(50, 5), TimeMs(20)).is_ok());
        // A clock step backwards does not reopen the window.
        assert!(l.check(&r, &spend(51, 0), TimeMs(-5_000)).is_err());
        // The window rolls.
        assert!(l.check(&r, &spend(100, 10), TimeMs(1_010)).is_ok());
        let cut = l.prune(&r, TimeMs(5_000));
        assert_eq!(cut.len(), 2);
        assert!(l.native[&1].entries.is_empty());
        // A spend beyond u128 is refused, not truncated.
        let mut huge = spend(0, 0);
        huge.native = U256::MAX;
        assert_eq!(
            l.check(&r, &huge, TimeMs(6_000)).unwrap_err(),
            EthError::AmountOverflow
        );
    }
}
