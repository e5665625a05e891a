//! PSBT checks before signing.
//!
//! Owns: [`check_psbt`], which turns PSBT bytes, SPV proofs and the node's
//! state into a [`CheckedSpend`] (everything the signer and the persistence
//! step need) or the first [`BtcError`]. Order (each a rule tag):
//!
//! 1. `btc-oversize`: PSBT bytes above the policy's `max_psbt_bytes`, or
//!    too many inputs/outputs;
//! 2. `btc-psbt-format`: BIP174 v0 or BIP370 v2 (see `psbt_v2`);
//! 3. `btc-duplicate-input`;
//! 4. `btc-sighash`: ALL or DEFAULT (taproot) / ALL (ECDSA) only;
//! 5. `btc-unregistered-wallet`: each input's script is RE-DERIVED from a
//!    registered descriptor at the branch/index named by the node-key
//!    derivation hint in the PSBT; the hint selects, the derivation decides;
//! 6. `btc-unproven-amount`: a segwit v0 input needs `non_witness_utxo`
//!    hashing to the outpoint (the segwit fee attack: ECDSA signatures commit
//!    only to their own input's amount), and `witness_utxo` must agree with
//!    it. A taproot input may rely on `witness_utxo` alone when ALL inputs
//!    are taproot: BIP341 sighashes commit to every input's amount and
//!    script, so a lie makes our signature invalid. In a mixed transaction
//!    a taproot input's amount must be proven too (by `non_witness_utxo` or
//!    the SPV proof's transaction);
//! 7. `btc-min-conf`: each funding transaction proven in our header chain
//!    with at least `min_confirmations` (the proof's transaction, or the
//!    PSBT's `non_witness_utxo`, must contain the spent output);
//! 8. `btc-foreign-change`: an output carrying a node-key derivation hint of
//!    a registered wallet must derive to its script; change is recognised
//!    only on branch 1 of a wallet the transaction spends from;
//! 9. standard relay policy (`standard`): `btc-nonstandard-version`,
//!    `btc-nonstandard-script`, `btc-dust`, `btc-nonstandard-size`,
//!    `btc-min-relay-fee`;
//! 10. equivocation / replacement (`btc-equivocation`,
//!     `btc-replacement-partial`, `btc-replacement`, then
//!     `btc-replacement-increment`: BIP125 rule 4);
//! 11. `btc-fee-cap`: absolute and per-vbyte over an honest vsize estimate
//!     (unsigned weight + miniscript's maximum satisfaction weight of each
//!     input's derived descriptor; an upper bound that exceeds the final
//!     size by at most a byte or two per signature);
//! 12. `btc-per-tx-cap` on destinations + fee;
//! 13. `btc-allowlist` on every non-change output;
//! 14. `btc-velocity` (a replacement counts only what it adds; the same
//!     transaction again counts nothing).
//!
//! Must never: trust a PSBT-provided script, path or amount that it has not
//! re-derived or proven; do arithmetic on amounts unchecked.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::psbt::{Input, Output, Psbt};
use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::sighash::{EcdsaSighashType, TapSighashType};
use bitcoin::taproot::TapLeafHash;
use bitcoin::{OutPoint, PublicKey, ScriptBuf, Transaction, TxOut, Txid};
use miniscript::{Descriptor, ToPublicKey};
use spacenode_policy::document::BtcRules;
use spacenode_policy::request::SpvProof;
use spacenode_policy::velocity::VelocityLedger;
use spacenode_policy::{Sats, TimeMs};

use crate::chain::{ChainView, proof_for};
use crate::error::BtcError;
use crate::history::{Conflict, SpendHistory, classify};
use crate::psbt_v2::{self, MAX_ITEMS, PsbtVersion};
use crate::standard;
use crate::wallet::{AllowMatcher, Wallet, WalletKind};

/// How the node signs one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// P2WSH: ECDSA over the BIP143 sighash of this witness script.
    Wsh {
        /// Re-derived witness script.
        witness_script: ScriptBuf,
        /// Sighash type (ALL).
        sighash: EcdsaSighashType,
    },
    /// P2TR script path: BIP340 over the BIP341 sighash of each leaf that
    /// contains the node's key.
    Tr {
        /// Leaves with our key.
        leaves: Vec<TapLeafHash>,
        /// DEFAULT or ALL.
        sighash: TapSighashType,
    },
}

/// One input, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPlan {
    /// Input index.
    pub index: usize,
    /// Wallet id.
    pub wallet: [u8; 32],
    /// 0 receive, 1 change.
    pub branch: u32,
    /// Address index.
    pub addr_index: u32,
    /// Node key path.
    pub node_path: DerivationPath,
    /// Node public key at that path (derived from the registered xpub).
    pub node_pubkey: PublicKey,
    /// Signing details.
    pub kind: InputKind,
    /// Confirmations of the funding transaction (0 if the policy needs none
    /// and no proof was given).
    pub confirmations: u32,
}

/// Everything known about a transaction the policy approved.
#[derive(Debug, Clone)]
pub struct CheckedSpend {
    /// Normalised (v0) PSBT.
    pub psbt: Psbt,
    /// Format it arrived in.
    pub version: PsbtVersion,
    /// Txid of the unsigned transaction.
    pub txid: Txid,
    /// Per input.
    pub inputs: Vec<InputPlan>,
    /// Proven previous outputs, by input index.
    pub prevouts: Vec<TxOut>,
    /// Non-change outputs: (index, output, allowlist label).
    pub destinations: Vec<(usize, TxOut, String)>,
    /// Change output indexes.
    pub change: Vec<usize>,
    /// Fee.
    pub fee: Sats,
    /// Estimated vsize of the finalised transaction.
    pub vsize: u64,
    /// Destinations + fee.
    pub amount: Sats,
    /// What velocity is charged with.
    pub velocity_amount: Sats,
    /// Velocity totals after this spend, per policy window.
    pub window_totals: Vec<Sats>,
    /// Relation to earlier signatures.
    pub conflict: Conflict,
}

impl CheckedSpend {
    /// Outpoints spent.
    #[must_use]
    pub fn outpoints(&self) -> Vec<OutPoint> {
        self.psbt
            .unsigned_tx
            .input
            .iter()
            .map(|i| i.previous_output)
            .collect()
    }
}

/// Node state the checks read.
pub struct CheckContext<'a, V: ChainView + ?Sized, H: SpendHistory + ?Sized> {
    /// Active rules.
    pub rules: &'a BtcRules,
    /// Registered wallets.
    pub wallets: &'a [Wallet],
    /// Compiled allowlist.
    pub allow: &'a AllowMatcher,
    /// Header chain.
    pub chain: &'a V,
    /// Signed outpoints.
    pub history: &'a H,
    /// Velocity records.
    pub velocity: &'a VelocityLedger,
    /// Node time (already accepted by the clock guard).
    pub now: TimeMs,
}

fn hints_in(i: &Input) -> Vec<(Fingerprint, DerivationPath)> {
    i.bip32_derivation
        .values()
        .cloned()
        .chain(i.tap_key_origins.values().map(|(_, o)| o.clone()))
        .collect()
}

fn hints_out(o: &Output) -> Vec<(Fingerprint, DerivationPath)> {
    o.bip32_derivation
        .values()
        .cloned()
        .chain(o.tap_key_origins.values().map(|(_, o)| o.clone()))
        .collect()
}

fn sats(v: bitcoin::Amount) -> Sats {
    Sats(v.to_sat())
}

/// An input matched to a registered wallet (rules 4-5).
struct Found<'w> {
    wallet: &'w Wallet,
    branch: u32,
    addr_index: u32,
    desc: Descriptor<PublicKey>,
    claimed: TxOut,
}

/// The transaction's outputs split by rule 8.
struct Outputs {
    change: Vec<usize>,
    dests: Vec<(usize, TxOut)>,
}

/// Runs every check (module docs), one function per rule tag in the
/// module's order, and classifies the transaction.
///
/// # Errors
/// The first [`BtcError`].
pub fn check_psbt<C, V, H>(
    secp: &Secp256k1<C>,
    ctx: &CheckContext<'_, V, H>,
    psbt_bytes: &[u8],
    proofs: &[SpvProof],
) -> Result<CheckedSpend, BtcError>
where
    C: Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let rules = ctx.rules;
    let max = oversize_bytes(rules, psbt_bytes)?;
    let (psbt, version) = psbt_format(psbt_bytes, max)?;
    let tx = &psbt.unsigned_tx;
    let txid = tx.compute_txid();
    duplicate_input(tx)?;
    let found = registered_inputs(secp, ctx, &psbt)?;
    let (prevouts, mut proven) = unproven_amount(&found, &psbt)?;
    let confirmations = min_conf(ctx, &psbt, proofs, &prevouts, &mut proven)?;
    all_amounts_proven(&found, &proven)?;
    let outputs = foreign_change(secp, ctx, &psbt, &found)?;
    let (fee, amount) = amounts(tx, &prevouts, &outputs.change)?;
    let (weight, vsize) = vsize_estimate(tx, &found)?;
    standard::check_outputs(tx)?;
    standard::check_size_and_fee(tx, weight, fee.0)?;
    let conflict = equivocation(ctx, txid, tx, &outputs.dests, fee, vsize)?;
    fee_cap(rules, &conflict, fee, vsize)?;
    per_tx_cap(rules, amount)?;
    let destinations = allowlist(secp, ctx, &psbt, outputs.dests)?;
    let (velocity_amount, window_totals) = velocity(ctx, &conflict, amount)?;
    let inputs = signing_plans(secp, &psbt, &found, confirmations)?;
    Ok(CheckedSpend {
        psbt,
        version,
        txid,
        inputs,
        prevouts,
        destinations,
        change: outputs.change,
        fee,
        vsize,
        amount,
        velocity_amount,
        window_totals,
        conflict,
    })
}

/// Rule 1: `btc-oversize` (bytes): returns the policy's limit.
fn oversize_bytes(rules: &BtcRules, psbt_bytes: &[u8]) -> Result<usize, BtcError> {
    let max = usize::try_from(rules.max_psbt_bytes).unwrap_or(usize::MAX);
    if psbt_bytes.len() > max {
        return Err(BtcError::Oversize {
            size: psbt_bytes.len(),
            items: 0,
            max,
        });
    }
    Ok(max)
}

/// Rule 2: `btc-psbt-format`: BIP174 v0 or BIP370 v2, with inputs and outputs
/// (and `btc-oversize` on their number).
fn psbt_format(psbt_bytes: &[u8], max: usize) -> Result<(Psbt, PsbtVersion), BtcError> {
    let (psbt, version) = psbt_v2::parse(psbt_bytes)?;
    let tx = &psbt.unsigned_tx;
    let items = tx.input.len().saturating_add(tx.output.len());
    if items > MAX_ITEMS {
        return Err(BtcError::Oversize {
            size: psbt_bytes.len(),
            items,
            max,
        });
    }
    if tx.input.is_empty() || tx.output.is_empty() {
        return Err(BtcError::PsbtMalformed("no inputs or no outputs".into()));
    }
    Ok((psbt, version))
}

/// Rule 3: `btc-duplicate-input`.
fn duplicate_input(tx: &Transaction) -> Result<(), BtcError> {
    let mut seen = std::collections::BTreeSet::new();
    for (index, i) in tx.input.iter().enumerate() {
        if !seen.insert(i.previous_output) {
            return Err(BtcError::DuplicateInput {
                index,
                outpoint: i.previous_output.to_string(),
            });
        }
    }
    Ok(())
}

/// Rule 4-5: `btc-unregistered-wallet` and `btc-sighash`, input by input.
fn registered_inputs<'w, C, V, H>(
    secp: &Secp256k1<C>,
    ctx: &CheckContext<'w, V, H>,
    psbt: &Psbt,
) -> Result<Vec<Found<'w>>, BtcError>
where
    C: Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let tx = &psbt.unsigned_tx;
    let mut found: Vec<Found<'w>> = Vec::with_capacity(tx.input.len());
    for (index, (txin, inp)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let claimed = match (&inp.witness_utxo, &inp.non_witness_utxo) {
            (Some(w), _) => w.clone(),
            (None, Some(prev)) => prev
                .output
                .get(usize::try_from(txin.previous_output.vout).unwrap_or(usize::MAX))
                .cloned()
                .ok_or(BtcError::NonWitnessUtxoMismatch { index })?,
            (None, None) => return Err(BtcError::MissingUtxo { index }),
        };
        let f = unregistered_wallet(secp, ctx.wallets, index, inp, claimed)?;
        sighash(index, inp, f.wallet.kind)?;
        found.push(f);
    }
    Ok(found)
}

/// Rule 5: `btc-unregistered-wallet`: the input's script RE-DERIVED from a
/// registered descriptor at the node-key hint's branch and index.
fn unregistered_wallet<'w, C: Verification>(
    secp: &Secp256k1<C>,
    wallets: &'w [Wallet],
    index: usize,
    inp: &Input,
    claimed: TxOut,
) -> Result<Found<'w>, BtcError> {
    for (fp, path) in hints_in(inp) {
        for w in wallets {
            if let Some((branch, addr_index)) = w.match_path(fp, &path) {
                let desc = w.derive(secp, branch, addr_index).map_err(|e| {
                    BtcError::UnregisteredWallet {
                        index,
                        detail: e.to_string(),
                    }
                })?;
                if desc.script_pubkey() == claimed.script_pubkey {
                    return Ok(Found {
                        wallet: w,
                        branch,
                        addr_index,
                        desc,
                        claimed,
                    });
                }
            }
        }
    }
    Err(BtcError::UnregisteredWallet {
        index,
        detail: "no node-key derivation of a registered wallet gives this script".into(),
    })
}

/// Rule 4: `btc-sighash`: ALL or DEFAULT (taproot) / ALL (ECDSA) only.
fn sighash(index: usize, inp: &Input, kind: WalletKind) -> Result<(), BtcError> {
    let raw = inp.sighash_type.map(|t| t.to_u32());
    let ok = match (kind, raw) {
        (_, None) => true,
        (WalletKind::Wsh, Some(t)) => t == EcdsaSighashType::All.to_u32(),
        (WalletKind::Tr, Some(t)) => {
            t == TapSighashType::Default as u32 || t == TapSighashType::All as u32
        }
    };
    if !ok {
        return Err(BtcError::Sighash {
            index,
            sighash: raw.unwrap_or(0),
        });
    }
    Ok(())
}

/// Rule 6: `btc-unproven-amount`: the previous outputs, and which are proven by
/// their `non_witness_utxo`.
fn unproven_amount(found: &[Found<'_>], psbt: &Psbt) -> Result<(Vec<TxOut>, Vec<bool>), BtcError> {
    let tx = &psbt.unsigned_tx;
    let mut prevouts: Vec<TxOut> = Vec::with_capacity(found.len());
    let mut proven: Vec<bool> = Vec::with_capacity(found.len());
    for (index, (f, (txin, inp))) in found
        .iter()
        .zip(tx.input.iter().zip(&psbt.inputs))
        .enumerate()
    {
        let vout = usize::try_from(txin.previous_output.vout).unwrap_or(usize::MAX);
        match &inp.non_witness_utxo {
            Some(prev) => {
                if prev.compute_txid() != txin.previous_output.txid {
                    return Err(BtcError::NonWitnessUtxoMismatch { index });
                }
                let out = prev
                    .output
                    .get(vout)
                    .ok_or(BtcError::NonWitnessUtxoMismatch { index })?;
                if *out != f.claimed {
                    return Err(BtcError::WitnessUtxoMismatch { index });
                }
                proven.push(true);
            }
            None if f.wallet.kind == WalletKind::Wsh => {
                return Err(BtcError::MissingNonWitnessUtxo { index });
            }
            None => proven.push(false),
        }
        prevouts.push(f.claimed.clone());
    }
    Ok((prevouts, proven))
}

/// Rule 6 (end): `btc-unproven-amount`: in a transaction that is not all
/// taproot, every amount is proven.
fn all_amounts_proven(found: &[Found<'_>], proven: &[bool]) -> Result<(), BtcError> {
    let all_taproot = found.iter().all(|f| f.wallet.kind == WalletKind::Tr);
    if !all_taproot && let Some(index) = proven.iter().position(|p| !p) {
        return Err(BtcError::MissingNonWitnessUtxo { index });
    }
    Ok(())
}

/// Rule 7: `btc-min-conf`: each funding transaction proven in the header chain
/// (a proof's transaction also proves the amount: `proven`).
fn min_conf<V, H>(
    ctx: &CheckContext<'_, V, H>,
    psbt: &Psbt,
    proofs: &[SpvProof],
    prevouts: &[TxOut],
    proven: &mut [bool],
) -> Result<Vec<u32>, BtcError>
where
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let min = ctx.rules.min_confirmations;
    let tx = &psbt.unsigned_tx;
    let mut confs: BTreeMap<Txid, u32> = BTreeMap::new();
    let mut confirmations = Vec::with_capacity(tx.input.len());
    for (index, (txin, inp)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let ftxid = txin.previous_output.txid;
        let proof = proof_for(proofs, &ftxid.to_byte_array());
        let c = match (proof, confs.get(&ftxid)) {
            (_, Some(c)) => *c,
            (None, None) if min == 0 => 0,
            (None, None) => {
                return Err(BtcError::SpvMissing {
                    index,
                    txid: ftxid.to_string(),
                });
            }
            (Some(p), None) => {
                let c = spv_confirmations(ctx.chain, index, p, inp, ftxid)?;
                confs.insert(ftxid, c);
                c
            }
        };
        if let (Some(p), Some(slot)) = (proof, proven.get_mut(index))
            && !p.tx.is_empty()
        {
            // The SPV-proven transaction also proves the amount.
            let ptx: Transaction = deserialize(&p.tx).map_err(|e| BtcError::SpvInvalid {
                index,
                chain_code: 0x0382,
                detail: e.to_string(),
            })?;
            let vout = usize::try_from(txin.previous_output.vout).unwrap_or(usize::MAX);
            if ptx.output.get(vout) != prevouts.get(index) {
                return Err(BtcError::WitnessUtxoMismatch { index });
            }
            *slot = true;
        }
        if c < min {
            return Err(BtcError::InsufficientConfirmations {
                index,
                confirmations: c,
                required: min,
            });
        }
        confirmations.push(c);
    }
    Ok(confirmations)
}

/// The confirmations an SPV proof gives input `index`'s funding
/// transaction (the proof's transaction, or the PSBT's `non_witness_utxo`).
fn spv_confirmations<V: ChainView + ?Sized>(
    chain: &V,
    index: usize,
    p: &SpvProof,
    inp: &Input,
    ftxid: Txid,
) -> Result<u32, BtcError> {
    let tx_bytes = if p.tx.is_empty() {
        inp.non_witness_utxo
            .as_ref()
            .map(serialize)
            .ok_or_else(|| BtcError::SpvMissing {
                index,
                txid: format!("{ftxid} (proof without its transaction)"),
            })?
    } else {
        p.tx.clone()
    };
    let conf = chain
        .verify(p.kind, &p.proof, &tx_bytes)
        .map_err(|e| BtcError::SpvInvalid {
            index,
            chain_code: e.code(),
            detail: e.to_string(),
        })?;
    if conf.txid != ftxid {
        return Err(BtcError::SpvInvalid {
            index,
            chain_code: 0x0384,
            detail: "proof is for another transaction".into(),
        });
    }
    Ok(conf.confirmations)
}

/// Rule 8: `btc-foreign-change`: an output with a node-key hint derives to its
/// script; change only on branch 1 of a wallet the transaction spends.
fn foreign_change<C, V, H>(
    secp: &Secp256k1<C>,
    ctx: &CheckContext<'_, V, H>,
    psbt: &Psbt,
    found: &[Found<'_>],
) -> Result<Outputs, BtcError>
where
    C: Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let input_wallets: Vec<[u8; 32]> = found.iter().map(|f| f.wallet.id).collect();
    let mut change = Vec::new();
    let mut dests: Vec<(usize, TxOut)> = Vec::new();
    for (index, (out, meta)) in psbt
        .unsigned_tx
        .output
        .iter()
        .zip(&psbt.outputs)
        .enumerate()
    {
        let mut is_change = false;
        for (fp, path) in hints_out(meta) {
            for w in ctx.wallets {
                let Some((branch, addr_index)) = w.match_path(fp, &path) else {
                    continue;
                };
                let spk = w.script_pubkey(secp, branch, addr_index).map_err(|e| {
                    BtcError::ForeignChange {
                        index,
                        detail: e.to_string(),
                    }
                })?;
                if spk != out.script_pubkey {
                    return Err(BtcError::ForeignChange {
                        index,
                        detail: format!(
                            "derivation {path} of wallet {:?} gives another script",
                            w.name
                        ),
                    });
                }
                if branch == 1 && input_wallets.contains(&w.id) {
                    is_change = true;
                }
            }
        }
        if is_change {
            change.push(index);
        } else {
            dests.push((index, out.clone()));
        }
    }
    Ok(Outputs { change, dests })
}

/// `btc-psbt-format` on amounts: fee, and what leaves the wallets
/// (destinations + fee).
fn amounts(
    tx: &Transaction,
    prevouts: &[TxOut],
    change: &[usize],
) -> Result<(Sats, Sats), BtcError> {
    let total_in = Sats::sum(prevouts.iter().map(|o| sats(o.value)))
        .ok_or_else(|| BtcError::BadAmounts("inputs overflow".into()))?;
    let total_out = Sats::sum(tx.output.iter().map(|o| sats(o.value)))
        .ok_or_else(|| BtcError::BadAmounts("outputs overflow".into()))?;
    let fee = total_in.checked_sub(total_out).ok_or_else(|| {
        BtcError::BadAmounts(format!("outputs {total_out} exceed inputs {total_in}"))
    })?;
    let change_total = Sats::sum(
        change
            .iter()
            .filter_map(|i| tx.output.get(*i))
            .map(|o| sats(o.value)),
    )
    .ok_or_else(|| BtcError::BadAmounts("change overflows".into()))?;
    let amount = total_in
        .checked_sub(change_total)
        .ok_or_else(|| BtcError::BadAmounts("change exceeds inputs".into()))?;
    Ok((fee, amount))
}

/// Weight and vsize estimate of the finalised transaction (unsigned
/// weight + each input's maximum satisfaction weight).
fn vsize_estimate(tx: &Transaction, found: &[Found<'_>]) -> Result<(u64, u64), BtcError> {
    let mut weight: u64 = u64::try_from(tx.base_size())
        .unwrap_or(u64::MAX)
        .saturating_mul(4)
        .saturating_add(2)
        .saturating_add(u64::try_from(tx.input.len()).unwrap_or(u64::MAX));
    for f in found {
        let w = f
            .desc
            .max_weight_to_satisfy()
            .map_err(|e| BtcError::BadAmounts(format!("cannot estimate satisfaction: {e}")))?;
        weight = weight.saturating_add(w.to_wu());
    }
    Ok((weight, weight.div_ceil(4)))
}

/// Rule 10: `btc-equivocation`, `btc-replacement-partial`, `btc-replacement`,
/// then `btc-replacement-increment` (BIP125 rule 4).
fn equivocation<V, H>(
    ctx: &CheckContext<'_, V, H>,
    txid: Txid,
    tx: &Transaction,
    dests: &[(usize, TxOut)],
    fee: Sats,
    vsize: u64,
) -> Result<Conflict, BtcError>
where
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let dest_outs: Vec<TxOut> = dests.iter().map(|(_, o)| o.clone()).collect();
    let outpoints: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
    let conflict = classify(
        ctx.history,
        txid,
        &outpoints,
        &dest_outs,
        fee,
        &ctx.rules.replacement,
    )?;
    if let Conflict::Replaces(p) = &conflict {
        standard::check_increment(&p.txid, p.fee.0, fee.0, vsize)?;
    }
    Ok(conflict)
}

/// Rule 11: `btc-fee-cap`: absolute and per vbyte (a replacement's own caps).
fn fee_cap(rules: &BtcRules, conflict: &Conflict, fee: Sats, vsize: u64) -> Result<(), BtcError> {
    let (max_fee, max_rate) = match conflict {
        Conflict::Replaces(_) => (rules.replacement.max_fee, rules.replacement.max_fee_rate),
        _ => (rules.max_fee, rules.max_fee_rate),
    };
    if fee > max_fee {
        return Err(BtcError::FeeAboveCap {
            fee: fee.0,
            cap: max_fee.0,
        });
    }
    if max_rate.exceeded_by(fee, vsize) {
        return Err(BtcError::FeeRateAboveCap {
            rate: spacenode_policy::FeeRate::of(fee, vsize).0,
            vsize,
            cap: max_rate.0,
        });
    }
    Ok(())
}

/// Rule 12: `btc-per-tx-cap` on destinations + fee.
fn per_tx_cap(rules: &BtcRules, amount: Sats) -> Result<(), BtcError> {
    if amount > rules.per_tx_cap {
        return Err(BtcError::PerTxCap {
            amount: amount.0,
            cap: rules.per_tx_cap.0,
        });
    }
    Ok(())
}

/// Rule 13: `btc-allowlist` on every non-change output: its label.
fn allowlist<C, V, H>(
    secp: &Secp256k1<C>,
    ctx: &CheckContext<'_, V, H>,
    psbt: &Psbt,
    dests: Vec<(usize, TxOut)>,
) -> Result<Vec<(usize, TxOut, String)>, BtcError>
where
    C: Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let mut destinations = Vec::with_capacity(dests.len());
    for (index, out) in dests {
        let hints = psbt.outputs.get(index).map(hints_out).unwrap_or_default();
        let label = ctx
            .allow
            .matches(secp, &out.script_pubkey, &hints)
            .ok_or_else(|| BtcError::NotAllowlisted {
                index,
                script: out.script_pubkey.to_hex_string(),
            })?
            .to_owned();
        destinations.push((index, out, label));
    }
    Ok(destinations)
}

/// Rule 14: `btc-velocity`: a replacement counts only what it adds, the same
/// transaction again nothing. The amount charged and the window totals.
fn velocity<V, H>(
    ctx: &CheckContext<'_, V, H>,
    conflict: &Conflict,
    amount: Sats,
) -> Result<(Sats, Vec<Sats>), BtcError>
where
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
{
    let velocity_amount = match conflict {
        Conflict::Fresh => amount,
        Conflict::SameTransaction => Sats::ZERO,
        Conflict::Replaces(p) => amount.checked_sub(p.amount).unwrap_or(Sats::ZERO),
    };
    let window_totals = ctx
        .velocity
        .check(&ctx.rules.velocity, ctx.now, velocity_amount)
        .map_err(|e| BtcError::Velocity(e.to_string()))?;
    Ok((velocity_amount, window_totals))
}

/// How the node signs each input (re-derived keys and scripts).
fn signing_plans<C: Verification>(
    secp: &Secp256k1<C>,
    psbt: &Psbt,
    found: &[Found<'_>],
    confirmations: Vec<u32>,
) -> Result<Vec<InputPlan>, BtcError> {
    let mut inputs = Vec::with_capacity(found.len());
    for (index, (f, c)) in found.iter().zip(confirmations).enumerate() {
        let node_pubkey = f
            .wallet
            .node_pubkey(secp, f.branch, f.addr_index)
            .map_err(|e| BtcError::UnregisteredWallet {
                index,
                detail: e.to_string(),
            })?;
        let raw = psbt
            .inputs
            .get(index)
            .and_then(|i| i.sighash_type)
            .map(|t| t.to_u32());
        inputs.push(InputPlan {
            index,
            wallet: f.wallet.id,
            branch: f.branch,
            addr_index: f.addr_index,
            node_path: f.wallet.node_path(f.branch, f.addr_index),
            node_pubkey,
            kind: input_kind(index, &f.desc, &node_pubkey, raw)?,
            confirmations: c,
        });
    }
    Ok(inputs)
}

/// The signing details of one input: its witness script (P2WSH) or the
/// script leaves holding the node's key (P2TR).
fn input_kind(
    index: usize,
    desc: &Descriptor<PublicKey>,
    node_pubkey: &PublicKey,
    raw: Option<u32>,
) -> Result<InputKind, BtcError> {
    match desc {
        Descriptor::Wsh(_) => Ok(InputKind::Wsh {
            witness_script: desc
                .explicit_script()
                .map_err(|e| BtcError::UnregisteredWallet {
                    index,
                    detail: e.to_string(),
                })?,
            sighash: EcdsaSighashType::All,
        }),
        Descriptor::Tr(tr) => {
            let ours = node_pubkey.to_x_only_pubkey();
            let leaves = tr
                .leaves()
                .filter(|l| {
                    l.miniscript()
                        .iter_pk()
                        .any(|k| k.to_x_only_pubkey() == ours)
                })
                .map(|l| l.compute_tap_leaf_hash())
                .collect::<Vec<_>>();
            if leaves.is_empty() {
                return Err(BtcError::UnregisteredWallet {
                    index,
                    detail: "no script leaf holds the node's key".into(),
                });
            }
            Ok(InputKind::Tr {
                leaves,
                sighash: if raw == Some(TapSighashType::All as u32) {
                    TapSighashType::All
                } else {
                    TapSighashType::Default
                },
            })
        }
        _ => Err(BtcError::UnregisteredWallet {
            index,
            detail: "unsupported script type".into(),
        }),
    }
}
