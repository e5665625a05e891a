//! Ground side: combine the node's and the ground's partial signatures,
//! finalise with miniscript, extract and verify the transaction.
//!
//! Owns: [`apply_signatures`], [`update_from_wallet`], [`finalize`] and
//! [`verify_transaction`]. Script verification uses miniscript's
//! interpreter (it re-executes each input's witness against the spent
//! scriptPubKey and verifies every signature against the BIP143/BIP341
//! sighash); rust-bitcoin's `bitcoinconsensus` feature is not used because it
//! builds libbitcoinconsensus from C++ sources, a second toolchain for the
//! flight build. Must never: report success for a transaction whose inputs
//! do not satisfy their scripts.

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::sighash::Prevouts;
use bitcoin::{Transaction, TxOut};
use miniscript::interpreter::Interpreter;
use miniscript::psbt::PsbtExt;

use crate::sign::PartialSig;
use crate::wallet::Wallet;

/// Ground-side errors. Codes 0x0680..=0x068F (never sent by the node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinalizeError {
    /// A signature names an input that does not exist.
    #[error("signature for input {0} which does not exist")]
    NoSuchInput(u32),
    /// Updating PSBT fields from the wallet failed.
    #[error("update from wallet: {0}")]
    Update(String),
    /// The finaliser could not satisfy an input.
    #[error("finalize: {0}")]
    Finalize(String),
    /// A script did not verify.
    #[error("input {input}: script verification failed: {detail}")]
    Verify {
        /// Input.
        input: usize,
        /// Why.
        detail: String,
    },
}

impl FinalizeError {
    /// Stable code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::NoSuchInput(_) => 0x0680,
            Self::Update(_) => 0x0681,
            Self::Finalize(_) => 0x0682,
            Self::Verify { .. } => 0x0683,
        }
    }
}

/// Inserts the node's signatures into `psbt` (`partial_sigs` /
/// `tap_script_sigs`).
///
/// # Errors
/// [`FinalizeError::NoSuchInput`].
pub fn apply_signatures(psbt: &mut Psbt, sigs: &[PartialSig]) -> Result<(), FinalizeError> {
    for s in sigs {
        match s {
            PartialSig::Ecdsa { input, pubkey, sig } => {
                psbt.inputs
                    .get_mut(usize::try_from(*input).unwrap_or(usize::MAX))
                    .ok_or(FinalizeError::NoSuchInput(*input))?
                    .partial_sigs
                    .insert(*pubkey, *sig);
            }
            PartialSig::Schnorr {
                input,
                xonly,
                leaf,
                sig,
            } => {
                psbt.inputs
                    .get_mut(usize::try_from(*input).unwrap_or(usize::MAX))
                    .ok_or(FinalizeError::NoSuchInput(*input))?
                    .tap_script_sigs
                    .insert((*xonly, *leaf), *sig);
            }
        }
    }
    Ok(())
}

/// Fills witness scripts, taproot leaves and key origins of every input
/// and output of `psbt` that derives from `wallet` at the index given by the
/// node-key hint (a PSBT from a foreign tool may lack some of them).
///
/// # Errors
/// [`FinalizeError::Update`].
pub fn update_from_wallet(psbt: &mut Psbt, wallet: &Wallet) -> Result<(), FinalizeError> {
    let locate = |hints: Vec<(bitcoin::bip32::Fingerprint, bitcoin::bip32::DerivationPath)>| {
        hints
            .into_iter()
            .find_map(|(fp, p)| wallet.match_path(fp, &p))
    };
    for i in 0..psbt.inputs.len() {
        let Some(inp) = psbt.inputs.get(i) else {
            continue;
        };
        let hints: Vec<_> = inp
            .bip32_derivation
            .values()
            .cloned()
            .chain(inp.tap_key_origins.values().map(|(_, o)| o.clone()))
            .collect();
        if let Some((b, idx)) = locate(hints) {
            let d = wallet
                .definite(b, idx)
                .map_err(|e| FinalizeError::Update(e.to_string()))?;
            psbt.update_input_with_descriptor(i, &d)
                .map_err(|e| FinalizeError::Update(format!("input {i}: {e}")))?;
        }
    }
    Ok(())
}

/// Finalises every input with miniscript's non-malleable satisfier and
/// extracts the transaction (miniscript runs its interpreter on each input
/// during extraction).
///
/// # Errors
/// [`FinalizeError::Finalize`].
pub fn finalize<C: Verification>(
    secp: &Secp256k1<C>,
    mut psbt: Psbt,
) -> Result<Transaction, FinalizeError> {
    psbt.finalize_mut(secp).map_err(|errs| {
        FinalizeError::Finalize(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    psbt.extract(secp)
        .map_err(|e| FinalizeError::Finalize(e.to_string()))
}

/// Executes every input's witness against its previous output with
/// miniscript's interpreter, verifying all signatures and timelocks.
///
/// # Errors
/// [`FinalizeError::Verify`].
pub fn verify_transaction<C: Verification>(
    secp: &Secp256k1<C>,
    tx: &Transaction,
    prevouts: &[TxOut],
) -> Result<(), FinalizeError> {
    if prevouts.len() != tx.input.len() {
        return Err(FinalizeError::Verify {
            input: 0,
            detail: "prevouts do not match the inputs".into(),
        });
    }
    let all = Prevouts::All(prevouts);
    for (i, (txin, prev)) in tx.input.iter().zip(prevouts).enumerate() {
        let interp = Interpreter::from_txdata(
            &prev.script_pubkey,
            &txin.script_sig,
            &txin.witness,
            txin.sequence,
            tx.lock_time,
        )
        .map_err(|e| FinalizeError::Verify {
            input: i,
            detail: e.to_string(),
        })?;
        let mut satisfied = false;
        for step in interp.iter(secp, tx, i, &all) {
            step.map_err(|e| FinalizeError::Verify {
                input: i,
                detail: e.to_string(),
            })?;
            satisfied = true;
        }
        if !satisfied {
            return Err(FinalizeError::Verify {
                input: i,
                detail: "no satisfied condition".into(),
            });
        }
    }
    Ok(())
}

/// Signs every input of `psbt` that carries a derivation hint for
/// `signer`'s fingerprint, as an ordinary BIP174 signer would (ECDSA for
/// inputs with a witness script, BIP340 for each listed taproot leaf). For
/// ground keys in tests and demos; amounts are taken from `witness_utxo`.
///
/// # Errors
/// [`FinalizeError::Update`] when a sighash or signature cannot be made.
pub fn sign_as_cosigner<C: Verification, S: crate::signer::BtcSigner + ?Sized>(
    _secp: &Secp256k1<C>,
    psbt: &mut Psbt,
    signer: &S,
) -> Result<usize, FinalizeError> {
    use bitcoin::sighash::{EcdsaSighashType, SighashCache, TapSighashType};
    let fp = signer.master_fingerprint();
    let prevouts: Vec<TxOut> = psbt
        .inputs
        .iter()
        .map(|i| {
            i.witness_utxo
                .clone()
                .ok_or_else(|| FinalizeError::Update("missing witness_utxo".into()))
        })
        .collect::<Result<_, _>>()?;
    let tx = psbt.unsigned_tx.clone();
    let mut cache = SighashCache::new(&tx);
    let up = |e: &dyn std::fmt::Display| FinalizeError::Update(e.to_string());
    let mut n = 0usize;
    for (i, inp) in psbt.inputs.iter_mut().enumerate() {
        let value = prevouts
            .get(i)
            .map(|p| p.value)
            .ok_or_else(|| up(&"input"))?;
        if let Some(ws) = inp.witness_script.clone() {
            for (pk, (f, path)) in inp.bip32_derivation.clone() {
                if f != fp {
                    continue;
                }
                let h = cache
                    .p2wsh_signature_hash(i, &ws, value, EcdsaSighashType::All)
                    .map_err(|e| up(&e))?;
                let sig = signer
                    .sign_ecdsa(&path, &bitcoin::hashes::Hash::to_byte_array(h))
                    .map_err(|e| up(&e))?;
                inp.partial_sigs.insert(
                    bitcoin::PublicKey::new(pk),
                    bitcoin::ecdsa::Signature {
                        signature: sig,
                        sighash_type: EcdsaSighashType::All,
                    },
                );
                n = n.saturating_add(1);
            }
        }
        for (xonly, (leaves, (f, path))) in inp.tap_key_origins.clone() {
            if f != fp {
                continue;
            }
            for leaf in leaves {
                let h = cache
                    .taproot_script_spend_signature_hash(
                        i,
                        &Prevouts::All(&prevouts),
                        leaf,
                        TapSighashType::Default,
                    )
                    .map_err(|e| up(&e))?;
                let sig = signer
                    .sign_schnorr(&path, &bitcoin::hashes::Hash::to_byte_array(h))
                    .map_err(|e| up(&e))?;
                inp.tap_script_sigs.insert(
                    (xonly, leaf),
                    bitcoin::taproot::Signature {
                        signature: sig,
                        sighash_type: TapSighashType::Default,
                    },
                );
                n = n.saturating_add(1);
            }
        }
    }
    Ok(n)
}
