//! A regtest world for the co-signing demo, the system tests and the
//! benchmark, built by our own code (no bitcoind): a chain mined with
//! `spacenode_chain::regtest` whose block 2 pays a registered descriptor,
//! the header file to sync to the node, merkle-branch SPV proofs, and PSBTs
//! spending those outputs (with the full previous transactions, witness
//! scripts and key origins a hardware signer would add).
//!
//! Must never: be used with real funds (the funding transactions spend
//! fake coinbase outputs; only their inclusion in our own chain is real).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use miniscript::Descriptor;
use miniscript::descriptor::{DefiniteDescriptorKey, DescriptorPublicKey};
use miniscript::psbt::PsbtExt;
use serde::{Deserialize, Serialize};
use spacenode_chain::regtest::{RegtestChain, coinbase_tx};
use spacenode_policy::request::{ProofKind, SpvProof};

/// Time of block 0 of the demo chains (blocks every 600 s after it).
pub const T0: u32 = 1_700_000_000;
/// Height of the block holding the funding transactions.
pub const FUND_HEIGHT: u32 = 2;

/// Demo errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(pub String);

fn de(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// A funded output of the wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Utxo {
    /// Funding txid (display order).
    pub txid: String,
    /// Output index.
    pub vout: u32,
    /// Value, sat.
    pub value_sat: u64,
    /// Receive index of the wallet.
    pub index: u32,
    /// Block height.
    pub height: u32,
    /// The funding transaction, hex.
    pub tx: String,
    /// Merkle branch proof (`spacenode_chain::MerkleBranch`), hex.
    pub proof: String,
}

/// The funding of a demo wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Funding {
    /// The wallet's descriptor (canonical).
    pub descriptor: String,
    /// Tip height of the chain.
    pub tip: u32,
    /// Funded outputs.
    pub utxos: Vec<Utxo>,
}

fn branches(descriptor: &str) -> Result<Vec<Descriptor<DescriptorPublicKey>>, DemoError> {
    let d = Descriptor::<DescriptorPublicKey>::from_str(descriptor).map_err(de)?;
    let v = d.into_single_descriptors().map_err(de)?;
    if v.len() != 2 {
        return Err(DemoError(
            "the descriptor needs receive and change branches (/<0;1>/*)".into(),
        ));
    }
    Ok(v)
}

fn definite(
    descriptor: &str,
    branch: usize,
    index: u32,
) -> Result<Descriptor<DefiniteDescriptorKey>, DemoError> {
    branches(descriptor)?
        .get(branch)
        .ok_or_else(|| DemoError("branch".into()))?
        .at_derivation_index(index)
        .map_err(de)
}

/// The script of receive (`branch` 0) or change (1) address `index`.
///
/// # Errors
/// [`DemoError`].
pub fn script_pubkey(descriptor: &str, branch: usize, index: u32) -> Result<ScriptBuf, DemoError> {
    Ok(definite(descriptor, branch, index)?.script_pubkey())
}

/// Mines a regtest chain whose block [`FUND_HEIGHT`] holds `n` funding
/// transactions of `value_sat` each to receive addresses `0..n` of
/// `descriptor`, buried under `confirmations - 1` more blocks.
///
/// # Errors
/// [`DemoError`].
pub fn fund(
    descriptor: &str,
    n: u32,
    value_sat: u64,
    confirmations: u32,
) -> Result<(Funding, RegtestChain), DemoError> {
    let descriptor = spacenode_btc::wallet::canonical_descriptor(descriptor).map_err(de)?;
    let coinbase = coinbase_tx(1, b"spacenode regtest").compute_txid();
    let mut txs = Vec::new();
    for i in 0..n {
        txs.push(Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: coinbase,
                    vout: i,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0u8; 72], vec![2u8; 33]]),
            }],
            output: vec![
                TxOut {
                    value: Amount::from_sat(value_sat),
                    script_pubkey: script_pubkey(&descriptor, 0, i)?,
                },
                TxOut {
                    value: Amount::from_sat(1_000 + u64::from(i)),
                    script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                },
            ],
        });
    }
    let mut commitments = BTreeMap::new();
    commitments.insert(FUND_HEIGHT, txs.clone());
    let tip = FUND_HEIGHT + confirmations.max(1) - 1;
    let chain = RegtestChain::build(tip, T0, &commitments)
        .ok_or_else(|| DemoError("mining the regtest chain failed".into()))?;
    let utxos = txs
        .iter()
        .enumerate()
        .map(|(k, tx)| {
            let proof = chain
                .branch_proof(FUND_HEIGHT, k + 1)
                .ok_or_else(|| DemoError("merkle branch".into()))?;
            Ok(Utxo {
                txid: tx.compute_txid().to_string(),
                vout: 0,
                value_sat,
                index: u32::try_from(k).map_err(de)?,
                height: FUND_HEIGHT,
                tx: hex::encode(serialize(tx)),
                proof: hex::encode(proof.encode()),
            })
        })
        .collect::<Result<Vec<_>, DemoError>>()?;
    Ok((
        Funding {
            descriptor,
            tip,
            utxos,
        },
        chain,
    ))
}

/// Headers `0..=tip` (genesis first) in the raw 80-byte format `ground
/// chain sync` reads.
#[must_use]
pub fn headers_raw(chain: &RegtestChain) -> Vec<u8> {
    chain.headers().iter().flat_map(serialize).collect()
}

impl Funding {
    /// Writes the funding file (JSON).
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn save(&self, path: &Path) -> Result<(), DemoError> {
        std::fs::write(path, serde_json::to_string_pretty(self).map_err(de)? + "\n")
            .map_err(|e| DemoError(format!("{}: {e}", path.display())))
    }

    /// Reads a funding file.
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn load(path: &Path) -> Result<Self, DemoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DemoError(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| DemoError(format!("{}: {e}", path.display())))
    }

    fn utxo(&self, i: usize) -> Result<(&Utxo, Transaction), DemoError> {
        let u = self
            .utxos
            .get(i)
            .ok_or_else(|| DemoError(format!("no utxo {i} (the file has {})", self.utxos.len())))?;
        let tx: Transaction = deserialize(&hex::decode(&u.tx).map_err(de)?).map_err(de)?;
        Ok((u, tx))
    }

    /// A PSBT (v0) spending `inputs`, paying `amount` to `dest` with `fee`
    /// and the rest to change address `change_index` (no change output if
    /// nothing is left).
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn psbt(
        &self,
        inputs: &[usize],
        dest: ScriptBuf,
        amount: u64,
        fee: u64,
        change_index: u32,
    ) -> Result<Psbt, DemoError> {
        let chosen = inputs
            .iter()
            .map(|i| self.utxo(*i))
            .collect::<Result<Vec<_>, _>>()?;
        let total: u64 = chosen.iter().map(|(u, _)| u.value_sat).sum();
        let change = total
            .checked_sub(amount.saturating_add(fee))
            .ok_or_else(|| DemoError(format!("inputs hold {total} sat, less than amount + fee")))?;
        let mut output = vec![TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: dest,
        }];
        if change > 0 {
            output.push(TxOut {
                value: Amount::from_sat(change),
                script_pubkey: script_pubkey(&self.descriptor, 1, change_index)?,
            });
        }
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: chosen
                .iter()
                .map(|(u, _)| {
                    Ok(TxIn {
                        previous_output: OutPoint {
                            txid: Txid::from_str(&u.txid).map_err(de)?,
                            vout: u.vout,
                        },
                        script_sig: ScriptBuf::new(),
                        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                        witness: Witness::default(),
                    })
                })
                .collect::<Result<_, DemoError>>()?,
            output,
        };
        let mut psbt = Psbt::from_unsigned_tx(tx).map_err(de)?;
        for (k, (u, funding)) in chosen.iter().enumerate() {
            if let Some(i) = psbt.inputs.get_mut(k) {
                i.witness_utxo = funding
                    .output
                    .get(usize::try_from(u.vout).map_err(de)?)
                    .cloned();
                i.non_witness_utxo = Some(funding.clone());
            }
            let d = definite(&self.descriptor, 0, u.index)?;
            psbt.update_input_with_descriptor(k, &d).map_err(de)?;
        }
        if change > 0 {
            let d = definite(&self.descriptor, 1, change_index)?;
            psbt.update_output_with_descriptor(1, &d).map_err(de)?;
        }
        Ok(psbt)
    }

    /// SPV proofs for the funding transactions of `inputs` (the PSBT
    /// carries the transactions themselves).
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn proofs(&self, inputs: &[usize]) -> Result<Vec<SpvProof>, DemoError> {
        let mut out: Vec<SpvProof> = Vec::new();
        for i in inputs {
            let (u, _) = self.utxo(*i)?;
            let txid = Txid::from_str(&u.txid).map_err(de)?.to_byte_array();
            if out.iter().any(|p| p.txid == txid) {
                continue;
            }
            out.push(SpvProof {
                txid,
                kind: ProofKind::Branch,
                proof: hex::decode(&u.proof).map_err(de)?,
                tx: Vec::new(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacenode_btc::signer::SoftSigner;

    #[test]
    fn funding_round_trips_and_builds_a_psbt() {
        let keys: Vec<SoftSigner> = (1..=3u8)
            .map(|i| SoftSigner::from_seed(&[i; 32], bitcoin::NetworkKind::Test).unwrap())
            .collect();
        let exprs: Vec<String> = keys
            .iter()
            .map(|k| super::super::btc::key_expression(k, "m/48'/1'/0'/2'").unwrap())
            .collect();
        let d = format!("wsh(sortedmulti(2,{}))", exprs.join(","));
        let (f, chain) = fund(&d, 3, 100_000, 3).unwrap();
        assert_eq!((f.tip, chain.tip_height()), (4, 4));
        assert_eq!(headers_raw(&chain).len(), 5 * 80);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("funding.json");
        f.save(&p).unwrap();
        let back = Funding::load(&p).unwrap();
        assert_eq!(back, f);
        let dest = ScriptBuf::from_bytes(vec![0x00, 0x14].into_iter().chain([7; 20]).collect());
        let psbt = back.psbt(&[0, 2], dest, 150_000, 1_000, 0).unwrap();
        assert_eq!(psbt.unsigned_tx.output.len(), 2);
        assert!(psbt.inputs.iter().all(|i| i.witness_script.is_some()));
        assert_eq!(back.proofs(&[0, 2, 0]).unwrap().len(), 2);
        assert!(back.psbt(&[0], ScriptBuf::new(), 200_000, 0, 0).is_err());
    }
}
