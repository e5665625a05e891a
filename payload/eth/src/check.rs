//! Every Ethereum policy check before signing, pure.
//!
//! Owns: [`check_transaction`] (an account's own transaction),
//! [`check_safe_tx`] (a registered Safe's transaction, MultiSend batches
//! call by call), [`check_approve_hash_tx`] (the account transaction that
//! approves a SafeTx hash on chain), [`check_caps`], and [`Spend`]: what a
//! request moves, summed with checked `U256` arithmetic.
//!
//! Order for a transaction: chain id (`eth-chain-id`) → gas limit
//! (`eth-gas-limit`) → fees (`eth-max-fee`) → destination and calldata
//! (`eth-allowlist`, `eth-unknown-calldata`, `eth-spender`) → per-request
//! caps (`eth-value-cap`, `eth-erc20-cap`). For a Safe transaction: chain
//! id → legacy domain (`safe-legacy-domain`: a pre-1.3.0 Safe only where
//! the policy allows it) → refund parameters (`safe-refund`) → the call (`eth-delegatecall`,
//! `safe-self-call`, then as above, for every call of a MultiSend batch) →
//! caps. Velocity and nonces depend on persisted state and are checked by
//! the engine.
//!
//! What a call may do:
//! - DELEGATECALL only from a Safe, only to an allowlisted target of its
//!   chain: a MultiSend kind, whose `multiSend(bytes)` batch is decoded and
//!   every call checked (MultiSendCallOnly: no inner DELEGATECALL; nesting
//!   at most [`MAX_NESTING`] batches), or a library with listed selectors.
//! - A call from a Safe to itself with calldata (owners, threshold, guard,
//!   modules, fallback handler, but also `changeMasterCopy`, `signMessage`
//!   and anything else) only on the administrator quorum path. Inside a
//!   batch the zero address counts as the Safe (MultiSend 1.5.0 calls
//!   `address(this)` for it).
//! - `approveHash` and `execTransaction` calldata to any other address
//!   never (they would approve a Safe transaction without the Safe checks).
//! - ERC-20 `transfer`/`transferFrom`/`approve` to a registered token of the
//!   chain: the recipient must be allowlisted, amounts count against the
//!   token's caps, a spender must be listed and within its allowance
//!   (approving 0, a revocation, is always allowed).
//! - Anything else: the destination is allowlisted on the chain; calldata
//!   (if any) starts with a selector the entry lists.
//!
//! Must never: sum amounts with wrapping arithmetic, or let a call through
//! without checking it.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, TxKind, U256};
use spacenode_policy::eth::{DelegateKind, EthRules};

use crate::abi::{
    self, APPROVE_HASH, EXEC_TRANSACTION, Erc20Call, Operation, decode_erc20, decode_multisend,
    selector_of,
};
use crate::error::EthError;
use crate::safe::{Safe, SafeTx};
use crate::tx::UnsignedTx;

/// Deepest nesting of MultiSend batches (a batch inside a batch).
pub const MAX_NESTING: usize = 2;
/// Gas the Safe may charge beyond `safeTxGas + baseGas` when refunding
/// (`execTransaction` measures `gasUsed` around the inner call and its own
/// bookkeeping); a deliberately generous bound.
pub const REFUND_GAS_OVERHEAD: u64 = 50_000;

/// Who makes a call.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// One of the node's accounts.
    Account(Address),
    /// A registered Safe.
    Safe(&'a Safe),
}

/// Which path a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// Ground approvals only.
    Ground,
    /// Ground approvals and an administrator quorum command bound to this
    /// request (`SAFE_ADMIN_TX`): the Safe may call itself.
    AdminQuorum,
}

/// An ERC-20 approval in a request (for the audit and the ground display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    /// Token.
    pub token: Address,
    /// Spender.
    pub spender: Address,
    /// Allowance.
    pub amount: U256,
}

/// What a request moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spend {
    /// Chain.
    pub chain_id: u64,
    /// Native coin leaving: call values, the maximum fee of a signed
    /// transaction and native refunds.
    pub native: U256,
    /// The maximum fee (`gas_limit * max_fee_per_gas`) of a signed
    /// transaction.
    pub fee: U256,
    /// Token base units leaving per token (transfers, transferFroms and
    /// refunds in the token).
    pub tokens: BTreeMap<Address, U256>,
    /// Approvals granted.
    pub approvals: Vec<Approval>,
    /// Calls checked (MultiSend calls counted one by one).
    pub calls: usize,
    /// Calls from the Safe to itself (allowed only on the quorum path).
    pub self_calls: usize,
}

impl Spend {
    fn add_native(&mut self, v: U256) -> Result<(), EthError> {
        self.native = self.native.checked_add(v).ok_or(EthError::AmountOverflow)?;
        Ok(())
    }

    fn add_token(&mut self, token: Address, v: U256) -> Result<(), EthError> {
        let e = self.tokens.entry(token).or_insert(U256::ZERO);
        *e = e.checked_add(v).ok_or(EthError::AmountOverflow)?;
        Ok(())
    }

    /// Adds another spend of the same chain (approveHash: the Safe's spend
    /// and the transaction fee).
    ///
    /// # Errors
    /// [`EthError::AmountOverflow`].
    pub fn merge(&mut self, o: &Spend) -> Result<(), EthError> {
        self.add_native(o.native)?;
        self.fee = self
            .fee
            .checked_add(o.fee)
            .ok_or(EthError::AmountOverflow)?;
        for (t, v) in &o.tokens {
            self.add_token(*t, *v)?;
        }
        self.approvals.extend_from_slice(&o.approvals);
        self.calls = self.calls.saturating_add(o.calls);
        self.self_calls = self.self_calls.saturating_add(o.self_calls);
        Ok(())
    }
}

/// What the checks read.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// The policy's Ethereum rules.
    pub rules: &'a EthRules,
    /// The request's path.
    pub authority: Authority,
}

fn sel_hex(s: [u8; 4]) -> String {
    format!("0x{}", spacenode_policy::document::hex_encode(&s))
}

fn check_chain(ctx: &CheckContext<'_>, chain_id: u64) -> Result<(), EthError> {
    ctx.rules
        .chain(chain_id)
        .map(|_| ())
        .ok_or(EthError::ChainNotAllowed(chain_id))
}

/// One call to check.
#[derive(Debug, Clone, Copy)]
struct Call<'d> {
    operation: Operation,
    to: Address,
    value: U256,
    data: &'d [u8],
}

/// Checks one call (and, for a MultiSend batch, each call in it).
fn check_call(
    ctx: &CheckContext<'_>,
    chain_id: u64,
    caller: Caller<'_>,
    call: Call<'_>,
    depth: usize,
    spend: &mut Spend,
) -> Result<(), EthError> {
    spend.calls = spend.calls.saturating_add(1);
    spend.add_native(call.value)?;
    if call.operation == Operation::DelegateCall {
        return delegatecall(ctx, chain_id, caller, &call, depth, spend);
    }
    if safe_self_call(ctx, caller, &call, spend)? {
        return Ok(());
    }
    let sel = selector_of(call.data);
    safe_call_outside_safe_path(call.to, sel)?;
    if erc20(ctx.rules, chain_id, &call, spend)? {
        return Ok(());
    }
    destination(ctx.rules, chain_id, &call, sel)
}

/// `eth-delegatecall`: only a Safe delegatecalls, only to an allowlisted
/// library (its selectors) or MultiSend (each inner call checked again).
fn delegatecall(
    ctx: &CheckContext<'_>,
    chain_id: u64,
    caller: Caller<'_>,
    call: &Call<'_>,
    depth: usize,
    spend: &mut Spend,
) -> Result<(), EthError> {
    let to = call.to;
    let Caller::Safe(safe) = caller else {
        return Err(EthError::Delegatecall {
            to,
            detail: "only a Safe transaction can delegatecall",
        });
    };
    let Some(target) = ctx.rules.delegate(chain_id, &to) else {
        return Err(EthError::Delegatecall {
            to,
            detail: "target not allowlisted",
        });
    };
    match target.kind {
        DelegateKind::Library => {
            if call.data.is_empty() {
                return Ok(());
            }
            match selector_of(call.data) {
                Some(s) if target.selectors.contains(&s) => Ok(()),
                s => Err(EthError::UnknownCalldata {
                    to,
                    selector: s.map_or_else(|| "short calldata".into(), sel_hex),
                }),
            }
        }
        DelegateKind::MultiSend | DelegateKind::MultiSendCallOnly => {
            if depth >= MAX_NESTING {
                return Err(EthError::MultiSend("batches nested too deep"));
            }
            let inner_depth = depth.saturating_add(1);
            for c in decode_multisend(call.data)? {
                if c.operation == Operation::DelegateCall
                    && target.kind == DelegateKind::MultiSendCallOnly
                {
                    return Err(EthError::Delegatecall {
                        to: c.to,
                        detail: "MultiSendCallOnly batch with a delegatecall",
                    });
                }
                // MultiSend 1.5.0 substitutes the Safe for the zero
                // address: treat it as the Safe for every version.
                let inner_to = if c.to.is_zero() { safe.address() } else { c.to };
                check_call(
                    ctx,
                    chain_id,
                    caller,
                    Call {
                        operation: c.operation,
                        to: inner_to,
                        value: c.value,
                        data: &c.data,
                    },
                    inner_depth,
                    spend,
                )?;
            }
            Ok(())
        }
    }
}

/// `safe-self-call`: a Safe calling itself (owners, threshold, modules...)
/// only on the administrator quorum's path. Whether the call was one.
fn safe_self_call(
    ctx: &CheckContext<'_>,
    caller: Caller<'_>,
    call: &Call<'_>,
    spend: &mut Spend,
) -> Result<bool, EthError> {
    let to = call.to;
    if let Caller::Safe(safe) = caller
        && to == safe.address()
        && !call.data.is_empty()
    {
        let function = selector_of(call.data)
            .and_then(abi::safe_function)
            .unwrap_or("unknown function");
        if ctx.authority != Authority::AdminQuorum {
            return Err(EthError::SafeSelfCall { safe: to, function });
        }
        spend.self_calls = spend.self_calls.saturating_add(1);
        return Ok(true);
    }
    Ok(false)
}

/// `eth-unknown-calldata`: `approveHash` and `execTransaction` only
/// through the Safe request kinds.
fn safe_call_outside_safe_path(to: Address, sel: Option<[u8; 4]>) -> Result<(), EthError> {
    if let Some(s @ (APPROVE_HASH | EXEC_TRANSACTION)) = sel {
        return Err(EthError::SafeCallOutsideSafePath {
            function: if s == APPROVE_HASH {
                "approveHash"
            } else {
                "execTransaction"
            },
            to,
        });
    }
    Ok(())
}

/// `eth-allowlist` (token recipient) and `eth-spender` for a call to a
/// listed token with ERC-20 calldata. Whether the call was one.
fn erc20(
    rules: &EthRules,
    chain_id: u64,
    call: &Call<'_>,
    spend: &mut Spend,
) -> Result<bool, EthError> {
    let to = call.to;
    let Some(token) = rules.token(chain_id, &to) else {
        return Ok(false);
    };
    let Some(erc20) = decode_erc20(call.data)? else {
        return Ok(false);
    };
    match erc20 {
        Erc20Call::Transfer { to: r, amount } | Erc20Call::TransferFrom { to: r, amount, .. } => {
            if rules.allowed(chain_id, &r).is_none() {
                return Err(EthError::NotAllowlisted {
                    role: "token recipient",
                    address: r,
                    chain_id,
                });
            }
            spend.add_token(to, amount)?;
        }
        Erc20Call::Approve { spender, amount } => {
            if !amount.is_zero() {
                let Some(s) = token.spenders.iter().find(|s| s.address == spender) else {
                    return Err(EthError::UnknownSpender { token: to, spender });
                };
                if !s.unlimited && amount > U256::from(s.max_allowance.0) {
                    return Err(EthError::ApprovalAboveMax {
                        token: to,
                        spender,
                        amount: amount.to_string(),
                        max: s.max_allowance.0,
                    });
                }
            }
            spend.approvals.push(Approval {
                token: to,
                spender,
                amount,
            });
        }
    }
    Ok(true)
}

/// `eth-allowlist` (destination) and `eth-unknown-calldata`: an
/// allowlisted destination, with one of its selectors if there is
/// calldata.
fn destination(
    rules: &EthRules,
    chain_id: u64,
    call: &Call<'_>,
    sel: Option<[u8; 4]>,
) -> Result<(), EthError> {
    let to = call.to;
    let Some(entry) = rules.allowed(chain_id, &to) else {
        return Err(EthError::NotAllowlisted {
            role: "destination",
            address: to,
            chain_id,
        });
    };
    if call.data.is_empty() {
        return Ok(());
    }
    match sel {
        Some(s) if entry.selectors.contains(&s) => Ok(()),
        s => Err(EthError::UnknownCalldata {
            to,
            selector: s.map_or_else(|| "short calldata".into(), sel_hex),
        }),
    }
}

fn check_gas(ctx: &CheckContext<'_>, tx: &UnsignedTx) -> Result<U256, EthError> {
    let chain = ctx
        .rules
        .chain(tx.chain_id())
        .ok_or(EthError::ChainNotAllowed(tx.chain_id()))?;
    if tx.gas_limit() > chain.max_gas_limit {
        return Err(EthError::GasLimit {
            gas_limit: tx.gas_limit(),
            max: chain.max_gas_limit,
        });
    }
    let fee = tx.max_fee_per_gas();
    if fee > chain.max_fee_per_gas.0 {
        return Err(EthError::MaxFee {
            fee,
            max: chain.max_fee_per_gas.0,
        });
    }
    if let Some(p) = tx.max_priority_fee_per_gas() {
        if p > chain.max_priority_fee_per_gas.0 {
            return Err(EthError::PriorityFee {
                fee: p,
                max: chain.max_priority_fee_per_gas.0,
            });
        }
        // Invalid on chain; refused rather than left to the network.
        if p > fee {
            return Err(EthError::PriorityFee { fee: p, max: fee });
        }
    }
    U256::from(tx.gas_limit())
        .checked_mul(U256::from(fee))
        .ok_or(EthError::AmountOverflow)
}

/// Checks a transaction of one of the node's accounts (`from`).
///
/// # Errors
/// The first [`EthError`] in the module's order.
pub fn check_transaction(
    ctx: &CheckContext<'_>,
    tx: &UnsignedTx,
    from: Address,
) -> Result<Spend, EthError> {
    check_chain(ctx, tx.chain_id())?;
    let fee = check_gas(ctx, tx)?;
    let TxKind::Call(to) = tx.to() else {
        return Err(EthError::ContractCreation);
    };
    let mut spend = Spend {
        chain_id: tx.chain_id(),
        ..Spend::default()
    };
    check_call(
        ctx,
        tx.chain_id(),
        Caller::Account(from),
        Call {
            operation: Operation::Call,
            to,
            value: tx.value(),
            data: tx.input(),
        },
        0,
        &mut spend,
    )?;
    spend.fee = fee;
    spend.add_native(fee)?;
    check_caps(ctx.rules, &spend)?;
    Ok(spend)
}

/// Checks the refund parameters of a Safe transaction and adds the most
/// it can pay to `spend`.
fn check_refund(ctx: &CheckContext<'_>, tx: &SafeTx, spend: &mut Spend) -> Result<(), EthError> {
    if !tx.has_refund_parameters() {
        return Ok(());
    }
    let Some(rule) = ctx
        .rules
        .refund(tx.chain_id, &tx.gas_token, &tx.refund_receiver)
    else {
        return Err(EthError::SafeRefund(format!(
            "gasPrice {}, gasToken {}, refundReceiver {} not allowlisted",
            tx.gas_price, tx.gas_token, tx.refund_receiver
        )));
    };
    if tx.gas_price > U256::from(rule.max_gas_price) {
        return Err(EthError::SafeRefund(format!(
            "gasPrice {} above {} ({})",
            tx.gas_price, rule.max_gas_price, rule.label
        )));
    }
    let bound = tx
        .safe_tx_gas
        .checked_add(tx.base_gas)
        .and_then(|g| g.checked_add(U256::from(REFUND_GAS_OVERHEAD)))
        .and_then(|g| g.checked_mul(tx.gas_price))
        .ok_or_else(|| EthError::SafeRefund("refund bound overflows".into()))?;
    if tx.gas_token.is_zero() {
        spend.add_native(bound)
    } else if ctx.rules.token(tx.chain_id, &tx.gas_token).is_some() {
        spend.add_token(tx.gas_token, bound)
    } else {
        Err(EthError::SafeRefund(format!(
            "gas token {} is not a registered token",
            tx.gas_token
        )))
    }
}

/// Checks a registered Safe's transaction.
///
/// # Errors
/// The first [`EthError`] in the module's order.
pub fn check_safe_tx(ctx: &CheckContext<'_>, safe: &Safe, tx: &SafeTx) -> Result<Spend, EthError> {
    if tx.chain_id != safe.chain_id() || tx.safe != safe.address() {
        return Err(EthError::SafeUnregistered {
            chain_id: tx.chain_id,
            address: tx.safe,
        });
    }
    check_chain(ctx, tx.chain_id)?;
    // A pre-1.3.0 domain names no chain: the signature would approve the
    // same SafeTx on every chain where this address has these owners. Only
    // when the policy says so for the one chain the registration names
    // (registrations put such an address on no second chain).
    if !safe.version.domain_has_chain_id() && !ctx.rules.allows_legacy_safes(safe.chain_id()) {
        return Err(EthError::SafeLegacyDomain {
            safe: safe.address(),
            chain_id: safe.chain_id(),
            version: safe.registration.version.clone(),
        });
    }
    let mut spend = Spend {
        chain_id: tx.chain_id,
        ..Spend::default()
    };
    check_refund(ctx, tx, &mut spend)?;
    check_call(
        ctx,
        tx.chain_id,
        Caller::Safe(safe),
        Call {
            operation: tx.operation,
            to: tx.to,
            value: tx.value,
            data: &tx.data,
        },
        0,
        &mut spend,
    )?;
    check_caps(ctx.rules, &spend)?;
    Ok(spend)
}

/// Checks the transaction from the Safe's node owner that calls
/// `approveHash(safe_tx_hash)` on the Safe: same chain, to the Safe, no
/// value, exactly that calldata, gas and fee caps. Returns its fee as a
/// spend.
///
/// # Errors
/// [`EthError`].
pub fn check_approve_hash_tx(
    ctx: &CheckContext<'_>,
    tx: &UnsignedTx,
    safe: &Safe,
    safe_tx_hash: &B256,
) -> Result<Spend, EthError> {
    if tx.chain_id() != safe.chain_id() {
        return Err(EthError::ChainMismatch {
            tx: tx.chain_id(),
            safe: safe.chain_id(),
        });
    }
    check_chain(ctx, tx.chain_id())?;
    let fee = check_gas(ctx, tx)?;
    if tx.to() != TxKind::Call(safe.address()) {
        return Err(EthError::Abi {
            function: "approveHash",
            detail: "transaction is not to the Safe",
        });
    }
    if !tx.value().is_zero() {
        return Err(EthError::Abi {
            function: "approveHash",
            detail: "approveHash is not payable",
        });
    }
    if abi::decode_approve_hash(tx.input())? != *safe_tx_hash {
        return Err(EthError::Abi {
            function: "approveHash",
            detail: "hash is not the SafeTx hash of the request",
        });
    }
    let spend = Spend {
        chain_id: tx.chain_id(),
        native: fee,
        fee,
        calls: 1,
        ..Spend::default()
    };
    check_caps(ctx.rules, &spend)?;
    Ok(spend)
}

/// Per-request caps: native coin under the chain's cap, each token under
/// its cap.
///
/// # Errors
/// [`EthError::ValueCap`], [`EthError::TokenCap`],
/// [`EthError::ChainNotAllowed`].
pub fn check_caps(rules: &EthRules, spend: &Spend) -> Result<(), EthError> {
    let chain = rules
        .chain(spend.chain_id)
        .ok_or(EthError::ChainNotAllowed(spend.chain_id))?;
    if spend.native > U256::from(chain.per_tx_cap.0) {
        return Err(EthError::ValueCap {
            chain_id: spend.chain_id,
            amount: spend.native.to_string(),
            cap: chain.per_tx_cap.0,
        });
    }
    for (token, amount) in &spend.tokens {
        let cap = rules
            .token(spend.chain_id, token)
            .map_or(0, |t| t.per_tx_cap.0);
        if *amount > U256::from(cap) {
            return Err(EthError::TokenCap {
                token: *token,
                amount: amount.to_string(),
                cap,
            });
        }
    }
    Ok(())
}
