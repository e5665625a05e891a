//! Bitcoin Core's standard relay policy, as far as a co-signer can check it
//! before signing.
//!
//! Why: a transaction the network will not relay is worse than useless to
//! sign. Anti-equivocation binds the node's key for each spent outpoint to
//! the signed transaction, so a later legitimate payment from the same
//! outpoints is refused as a conflicting spend (issue 13 item 14: a 0-sat
//! destination was co-signed).
//!
//! Owns: the pure checks below, each with its own rule tag, on the unsigned
//! transaction plus the fee and the honest upper-bound weight estimate of
//! the finalised transaction (`check`):
//!
//! - `btc-nonstandard-version`: version 1, 2 or 3; a version-3 (TRUC,
//!   BIP431) transaction at most [`TRUC_MAX_VSIZE`] vB;
//! - `btc-nonstandard-script`: every output is P2PKH, P2SH, P2WPKH, P2WSH,
//!   P2TR or a push-only OP_RETURN of at most [`MAX_OP_RETURN_BYTES`]
//!   bytes, and at most one OP_RETURN. Stricter than Core on purpose: bare
//!   multisig, P2PK, pay-to-anchor and future witness versions are refused
//!   (a co-signer has no business paying them);
//! - `btc-dust`: every output other than the OP_RETURN at least Core's
//!   `GetDustThreshold` at the default dust relay fee of 3 sat/vB, computed
//!   from the script like Core does (546 P2PKH, 540 P2SH, 294 P2WPKH, 330
//!   P2WSH and P2TR);
//! - `btc-nonstandard-size`: weight at most [`MAX_STANDARD_TX_WEIGHT`] and
//!   non-witness size at least [`MIN_STANDARD_TX_NONWITNESS_SIZE`];
//! - `btc-min-relay-fee`: fee at least [`MIN_RELAY_FEE_SAT_PER_VB`] times
//!   the estimated vsize;
//! - `btc-replacement-increment` (BIP125 rule 4): a replacement adds at
//!   least the incremental relay fee for its own vsize.
//!
//! The weight is the upper-bound estimate of the finalised transaction
//! (`check`'s vsize), a few bytes per signature above the real one: the
//! size bound and the fee floors are therefore conservative (a transaction
//! exactly at a limit may be refused, never one beyond it accepted).
//!
//! Not checked (documented in docs/policy.md): the sigop limit (inputs are
//! the registered wallets' own multisig scripts, far below it), witness
//! stack limits of our own inputs (the wallet registration bounds the
//! scripts), TRUC's package and unconfirmed-ancestor rules (the node cannot
//! see the mempool; `min_confirmations` >= 1 excludes unconfirmed parents).
//!
//! Must never: do arithmetic unchecked on amounts or sizes taken from the
//! transaction.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::opcodes::all::OP_PUSHNUM_16;
use bitcoin::script::Instruction;
use bitcoin::{Script, Transaction, TxOut};

use crate::error::BtcError;

/// Core's `DUST_RELAY_TX_FEE`: 3000 sat/kvB.
pub const DUST_RELAY_FEE_SAT_PER_KVB: u64 = 3_000;
/// Consensus `MAX_SCRIPT_SIZE`: a longer script is unspendable.
const MAX_SCRIPT_SIZE: usize = 10_000;
/// Core's `MAX_STANDARD_TX_WEIGHT`.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Core's `MIN_STANDARD_TX_NONWITNESS_SIZE` (no 64-byte transactions).
pub const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
/// Core's `MAX_OP_RETURN_RELAY` (whole scriptPubKey, OP_RETURN included).
pub const MAX_OP_RETURN_BYTES: usize = 83;
/// Core's `TRUC_MAX_VSIZE` for version-3 transactions.
pub const TRUC_MAX_VSIZE: u64 = 10_000;
/// Minimum relay fee rate (Core's `DEFAULT_MIN_RELAY_TX_FEE` before 29.1;
/// 29.1 and later default to 0.1 sat/vB, so 1 sat/vB is relayed by both).
pub const MIN_RELAY_FEE_SAT_PER_VB: u64 = 1;
/// Incremental relay fee rate of BIP125 rule 4 (same reasoning).
pub const INCREMENTAL_RELAY_FEE_SAT_PER_VB: u64 = 1;

/// Core's `GetDustThreshold(txout, 3 sat/vB)`: the cost of spending the
/// output later (an input of 148 bytes, or 67 vbytes for a witness program)
/// plus the output itself; 0 for an unspendable (OP_RETURN) output.
#[must_use]
pub fn dust_threshold(out: &TxOut) -> u64 {
    let spk = &out.script_pubkey;
    if spk.is_op_return() || spk.len() > MAX_SCRIPT_SIZE {
        return 0;
    }
    // value 8 | compact size | script
    let own = u64::try_from(bitcoin::consensus::encode::serialize(out).len()).unwrap_or(u64::MAX);
    // outpoint 32 | vout 4 | script length 1 | scriptSig (107, or 107/4 as
    // witness) | sequence 4, as Core counts it
    let spend: u64 = if spk.is_witness_program() {
        32 + 4 + 1 + 107 / 4 + 4
    } else {
        32 + 4 + 1 + 107 + 4
    };
    own.saturating_add(spend)
        .saturating_mul(DUST_RELAY_FEE_SAT_PER_KVB)
        / 1_000
}

/// Core's `CScript::IsPushOnly` on the bytes after OP_RETURN.
fn push_only(script: &Script) -> bool {
    script.instructions().all(|i| match i {
        Ok(Instruction::PushBytes(_)) => true,
        Ok(Instruction::Op(op)) => op.to_u8() <= OP_PUSHNUM_16.to_u8(),
        Err(_) => false,
    })
}

/// Version, output templates and dust (the checks that need only the
/// unsigned transaction).
///
/// # Errors
/// [`BtcError::NonStandardVersion`], [`BtcError::NonStandardScript`] or
/// [`BtcError::Dust`].
pub fn check_outputs(tx: &Transaction) -> Result<(), BtcError> {
    let version = tx.version.0;
    if !(1..=3).contains(&version) {
        return Err(BtcError::NonStandardVersion(format!(
            "{version} (1, 2 or 3 only)"
        )));
    }
    let mut op_returns = 0usize;
    for (index, out) in tx.output.iter().enumerate() {
        let spk = &out.script_pubkey;
        if spk.is_op_return() {
            op_returns = op_returns.saturating_add(1);
            let data = Script::from_bytes(spk.as_bytes().get(1..).unwrap_or_default());
            let detail = if spk.len() > MAX_OP_RETURN_BYTES {
                Some(format!(
                    "OP_RETURN script of {} bytes, at most {MAX_OP_RETURN_BYTES}",
                    spk.len()
                ))
            } else if !push_only(data) {
                Some("OP_RETURN followed by other than pushes".to_owned())
            } else if op_returns > 1 {
                Some("more than one OP_RETURN output".to_owned())
            } else {
                None
            };
            if let Some(detail) = detail {
                return Err(BtcError::NonStandardScript { index, detail });
            }
            continue;
        }
        let standard =
            spk.is_p2pkh() || spk.is_p2sh() || spk.is_p2wpkh() || spk.is_p2wsh() || spk.is_p2tr();
        if !standard {
            return Err(BtcError::NonStandardScript {
                index,
                detail: format!(
                    "{} is not P2PKH, P2SH, P2WPKH, P2WSH, P2TR or OP_RETURN",
                    spk.to_hex_string()
                ),
            });
        }
        let threshold = dust_threshold(out);
        let value = out.value.to_sat();
        if value < threshold {
            return Err(BtcError::Dust {
                index,
                value,
                threshold,
            });
        }
    }
    Ok(())
}

/// Size bounds and the minimum relay fee over the estimated finalised
/// weight (module docs).
///
/// # Errors
/// [`BtcError::NonStandardSize`], [`BtcError::NonStandardVersion`] (TRUC
/// size) or [`BtcError::BelowMinRelayFee`].
pub fn check_size_and_fee(tx: &Transaction, weight: u64, fee: u64) -> Result<(), BtcError> {
    if weight > MAX_STANDARD_TX_WEIGHT {
        return Err(BtcError::NonStandardSize(format!(
            "estimated weight {weight} WU above {MAX_STANDARD_TX_WEIGHT}"
        )));
    }
    let base = tx.base_size();
    if base < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(BtcError::NonStandardSize(format!(
            "non-witness size {base} bytes below {MIN_STANDARD_TX_NONWITNESS_SIZE}"
        )));
    }
    let vsize = weight.div_ceil(4);
    if tx.version.0 == 3 && vsize > TRUC_MAX_VSIZE {
        return Err(BtcError::NonStandardVersion(format!(
            "version 3 (TRUC) of an estimated {vsize} vB, at most {TRUC_MAX_VSIZE}"
        )));
    }
    if fee < vsize.saturating_mul(MIN_RELAY_FEE_SAT_PER_VB) {
        return Err(BtcError::BelowMinRelayFee {
            fee,
            vsize,
            min_rate: MIN_RELAY_FEE_SAT_PER_VB,
        });
    }
    Ok(())
}

/// BIP125 rule 4: a replacement pays for its own relay on top of the fee of
/// the transaction it replaces.
///
/// # Errors
/// [`BtcError::ReplacementIncrement`].
pub fn check_increment(
    previous: &bitcoin::Txid,
    previous_fee: u64,
    fee: u64,
    vsize: u64,
) -> Result<(), BtcError> {
    let added = fee.saturating_sub(previous_fee);
    let required = vsize.saturating_mul(INCREMENTAL_RELAY_FEE_SAT_PER_VB);
    if added < required {
        return Err(BtcError::ReplacementIncrement {
            previous: previous.to_string(),
            added,
            required,
            vsize,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "test code")]
mod tests {
    use super::*;

    /// OP_RETURN followed by one push of `n` bytes (n <= 255).
    fn op_return(n: usize) -> ScriptBuf {
        let mut v = vec![0x6a];
        if n > 75 {
            v.push(0x4c);
        }
        v.push(u8::try_from(n).unwrap());
        v.extend(std::iter::repeat_n(7u8, n));
        ScriptBuf::from_bytes(v)
    }
    use bitcoin::hashes::Hash;
    use bitcoin::{
        Amount, PubkeyHash, ScriptBuf, ScriptHash, WPubkeyHash, WScriptHash, XOnlyPublicKey,
    };

    fn out(spk: ScriptBuf, v: u64) -> TxOut {
        TxOut {
            value: Amount::from_sat(v),
            script_pubkey: spk,
        }
    }

    fn templates() -> Vec<(&'static str, ScriptBuf, u64)> {
        let xonly = XOnlyPublicKey::from_slice(&[
            0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87,
            0x0b, 0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b,
            0x16, 0xf8, 0x17, 0x98,
        ])
        .unwrap();
        vec![
            (
                "p2pkh",
                ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array([1; 20])),
                546,
            ),
            (
                "p2sh",
                ScriptBuf::new_p2sh(&ScriptHash::from_byte_array([1; 20])),
                540,
            ),
            (
                "p2wpkh",
                ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([1; 20])),
                294,
            ),
            (
                "p2wsh",
                ScriptBuf::new_p2wsh(&WScriptHash::from_byte_array([1; 32])),
                330,
            ),
            (
                "p2tr",
                ScriptBuf::new_p2tr_tweaked(
                    bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(xonly),
                ),
                330,
            ),
        ]
    }

    /// Core's documented thresholds at 3 sat/vB, computed from the script.
    #[test]
    fn dust_thresholds_match_core() {
        for (name, spk, want) in templates() {
            assert_eq!(dust_threshold(&out(spk, 0)), want, "{name}");
        }
        assert_eq!(dust_threshold(&out(op_return(10), 0)), 0);
    }

    fn tx(outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn::default()],
            output: outputs,
        }
    }

    #[test]
    fn dust_accepted_at_and_refused_below_the_threshold() {
        for (name, spk, t) in templates() {
            assert!(
                check_outputs(&tx(vec![out(spk.clone(), t)])).is_ok(),
                "{name}"
            );
            let e = check_outputs(&tx(vec![out(spk, t - 1)])).unwrap_err();
            assert_eq!((e.code(), e.rule().tag()), (0x06A1, "btc-dust"), "{name}");
        }
        // The 0-sat destination.
        let (_, wsh, _) = templates().remove(3);
        let e = check_outputs(&tx(vec![out(wsh, 0)])).unwrap_err();
        assert!(
            matches!(
                e,
                BtcError::Dust {
                    value: 0,
                    threshold: 330,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn scripts_and_op_return() {
        let (_, p2wpkh, _) = templates().remove(2);
        let ok = |o: Vec<TxOut>| check_outputs(&tx(o));
        // One OP_RETURN of 83 bytes (80 data bytes: 6a 4c 50 <80>) is fine.
        let data80 = op_return(80);
        assert_eq!(data80.len(), 83);
        assert!(ok(vec![out(p2wpkh.clone(), 1_000), out(data80.clone(), 0)]).is_ok());
        let refused = |o: Vec<TxOut>| {
            let e = ok(o).unwrap_err();
            assert_eq!(
                (e.code(), e.rule().tag()),
                (0x06A2, "btc-nonstandard-script"),
                "{e}"
            );
        };
        refused(vec![out(op_return(81), 0)]);
        refused(vec![out(data80.clone(), 0), out(data80, 0)]);
        // OP_RETURN OP_CHECKSIG: not push-only.
        refused(vec![out(ScriptBuf::from_bytes(vec![0x6a, 0xac]), 0)]);
        // OP_TRUE, bare multisig-like, P2PK, witness v2, pay-to-anchor.
        refused(vec![out(ScriptBuf::from_bytes(vec![0x51]), 1_000)]);
        let mut p2pk = vec![0x21, 0x02];
        p2pk.extend([1u8; 32]);
        p2pk.push(0xac);
        refused(vec![out(ScriptBuf::from_bytes(p2pk), 1_000)]);
        let mut v2 = vec![0x52, 0x20];
        v2.extend([1u8; 32]);
        refused(vec![out(ScriptBuf::from_bytes(v2), 1_000)]);
        refused(vec![out(
            ScriptBuf::from_bytes(vec![0x51, 0x02, 0x4e, 0x73]),
            240,
        )]);
    }

    #[test]
    fn versions() {
        let (_, p2wpkh, _) = templates().remove(2);
        for v in [1, 2, 3] {
            let mut t = tx(vec![out(p2wpkh.clone(), 1_000)]);
            t.version = bitcoin::transaction::Version(v);
            assert!(check_outputs(&t).is_ok(), "{v}");
        }
        for v in [0, 4, -1, i32::MAX] {
            let mut t = tx(vec![out(p2wpkh.clone(), 1_000)]);
            t.version = bitcoin::transaction::Version(v);
            let e = check_outputs(&t).unwrap_err();
            assert_eq!(
                (e.code(), e.rule().tag()),
                (0x06A5, "btc-nonstandard-version")
            );
        }
        // TRUC size limit.
        let mut t = tx(vec![out(p2wpkh, 1_000)]);
        t.version = bitcoin::transaction::Version(3);
        assert!(check_size_and_fee(&t, 40_000, 10_000).is_ok());
        let e = check_size_and_fee(&t, 40_004, 20_000).unwrap_err();
        assert_eq!(e.code(), 0x06A5);
    }

    #[test]
    fn size_and_min_relay_fee() {
        let (_, p2wpkh, _) = templates().remove(2);
        let t = tx(vec![out(p2wpkh, 1_000)]);
        assert!(t.base_size() >= MIN_STANDARD_TX_NONWITNESS_SIZE);
        assert!(check_size_and_fee(&t, 400_000, 100_000).is_ok());
        let e = check_size_and_fee(&t, 400_001, 200_000).unwrap_err();
        assert_eq!((e.code(), e.rule().tag()), (0x06A3, "btc-nonstandard-size"));
        // 1 sat/vB exactly passes, one sat less does not.
        assert!(check_size_and_fee(&t, 800, 200).is_ok());
        let e = check_size_and_fee(&t, 800, 199).unwrap_err();
        assert_eq!((e.code(), e.rule().tag()), (0x06A4, "btc-min-relay-fee"));
        // A 64-byte (non-witness) transaction.
        let small = tx(vec![out(op_return(2), 0)]);
        assert!(small.base_size() < MIN_STANDARD_TX_NONWITNESS_SIZE);
        let e = check_size_and_fee(&small, 1_000, 1_000).unwrap_err();
        assert_eq!(e.code(), 0x06A3);
    }

    #[test]
    fn replacement_increment() {
        let t = bitcoin::Txid::all_zeros();
        assert!(check_increment(&t, 1_000, 1_200, 200).is_ok());
        let e = check_increment(&t, 1_000, 1_199, 200).unwrap_err();
        assert_eq!(
            (e.code(), e.rule().tag()),
            (0x06A6, "btc-replacement-increment")
        );
    }
}
