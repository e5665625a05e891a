//! The co-signing flow end to end, in process: the reusable scenario behind
//! the regtest test, the benchmark and the lead's demo.
//!
//! Owns: [`Demo`], which builds a regtest chain (our own mining, no
//! bitcoind), a 2-of-3 wallet (node key + two ground keys; `wsh(sortedmulti)`,
//! `wsh` with a timelocked recovery branch, or `tr` with `multi_a` under the
//! NUMS point), a policy signed by an administrator quorum, funding
//! transactions proven by SPV, PSBTs, signed requests, and the node side
//! (in-memory stand-ins for the SQLite tables: spend history, velocity,
//! audit head, seen ids). The daemon replaces the node side with its
//! persistent one and the [`spacenode_btc::signer::SoftSigner`] node key with the TPM.
//!
//! Must never: be used with real funds (deterministic test seeds).
#![allow(
    clippy::arithmetic_side_effects,
    reason = "demo amounts are small constants"
)]

use std::collections::BTreeMap;
use std::str::FromStr;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::DerivationPath;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{All, Keypair, Message, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, Network, NetworkKind, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Witness,
};
use miniscript::psbt::PsbtExt;
use spacenode_chain::regtest::RegtestChain;
use spacenode_chain::{Chain, ChainConfig, Checkpoint, MemoryStore};
use spacenode_policy::audit::AuditLog;
use spacenode_policy::change::PolicyState;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::document::{
    AllowEntry, AllowTarget, BtcRules, ClockRules, KeySet, POLICY_TAG, PolicyDocument, Replacement,
    SignedPolicy, VelocityWindow,
};
use spacenode_policy::quorum::{Signature, tagged_hash};
use spacenode_policy::request::{ProofKind, SignRequest, SignedRequest, SpvProof, request_hash};
use spacenode_policy::velocity::VelocityLedger;
use spacenode_policy::{FeeRate, Sats, TimeMs};

use spacenode_btc::engine::{NodeView, Outcome, evaluate};
use spacenode_btc::finalize::{apply_signatures, finalize, sign_as_cosigner, verify_transaction};
use spacenode_btc::history::MemoryHistory;
use spacenode_btc::sign::PartialSig;
use spacenode_btc::signer::{BtcSigner, SoftSigner};
use spacenode_btc::wallet::{AllowMatcher, Wallet};

/// BIP341's provably unspendable internal key ("H", no known discrete log).
pub const NUMS: &str = "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0";
/// Node id used by the demo.
pub const NODE_ID: [u8; 8] = *b"sat-0001";
/// Regtest time of block 0 used by the demo chain.
pub const T0: u32 = 1_700_000_000;
/// The allowlisted destination of the demo (regtest P2WPKH).
pub const DESTINATION: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/// Which wallet the demo registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoWallet {
    /// `wsh(sortedmulti(2,G1,G2,N))`.
    WshSortedMulti,
    /// `wsh(or_d(multi(2,G1,G2,N),and_v(v:pk(R),older(144))))`.
    WshRecovery,
    /// `tr(NUMS,multi_a(2,G1,G2,N))`.
    TrMultiA,
}

/// Demo failure (a broken invariant of the scenario, not a policy refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(pub String);

fn de(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// A funded output of the demo wallet.
#[derive(Debug, Clone)]
pub struct Utxo {
    /// Outpoint.
    pub outpoint: OutPoint,
    /// Output.
    pub txout: TxOut,
    /// Receive index.
    pub index: u32,
    /// The funding transaction.
    pub funding: Transaction,
    /// Its block height.
    pub height: u32,
    /// Its position in the block.
    pub tx_index: usize,
}

/// The whole scenario (see module docs).
pub struct Demo {
    /// secp context.
    pub secp: Secp256k1<All>,
    /// The node's key (the TPM in flight).
    pub node: SoftSigner,
    /// The two ground keys.
    pub ground: [SoftSigner; 2],
    /// Administrators (3, threshold 2).
    pub admins: Vec<Keypair>,
    /// Ground approver.
    pub approver: Keypair,
    /// Registered wallet.
    pub wallet: Wallet,
    /// The miner's view of the regtest chain.
    pub regtest: RegtestChain,
    /// The node's validated header chain.
    pub chain: Chain<MemoryStore>,
    /// Wallet outputs.
    pub utxos: Vec<Utxo>,
    /// Node policy state.
    pub policy: PolicyState,
    /// Compiled allowlist.
    pub allow: AllowMatcher,
    /// Spent outpoints.
    pub history: MemoryHistory,
    /// Velocity records.
    pub velocity: VelocityLedger,
    /// Clock guard.
    pub clock: ClockGuard,
    /// Audit head.
    pub audit: AuditLog,
    /// Seen request ids → hash.
    pub seen: BTreeMap<[u8; 32], [u8; 32]>,
    /// Stored results of decided requests (encoded signatures).
    pub results: BTreeMap<[u8; 32], Vec<u8>>,
    /// Node time.
    pub now: TimeMs,
}

fn kp(secp: &Secp256k1<All>, i: u8) -> Result<Keypair, DemoError> {
    Ok(Keypair::from_secret_key(
        secp,
        &SecretKey::from_slice(&[i; 32]).map_err(de)?,
    ))
}

/// `[fp/48'/1'/0'/2']tpub…/<0;1>/*` for `signer` (BIP48 testnet P2WSH path;
/// `/3'` for taproot).
///
/// # Errors
/// Signer failures.
pub fn key_expr<S: BtcSigner>(signer: &S, script_type: u32) -> Result<String, DemoError> {
    let path = DerivationPath::from_str(&format!("m/48'/1'/0'/{script_type}'")).map_err(de)?;
    let xpub = signer.xpub(&path).map_err(de)?;
    let p = path.to_string();
    Ok(format!(
        "[{}/{}]{}/<0;1>/*",
        signer.master_fingerprint(),
        p.trim_start_matches("m/"),
        xpub
    ))
}

/// The canonical descriptor of a demo wallet.
///
/// # Errors
/// Signer or parse failures.
pub fn descriptor<S: BtcSigner>(
    kind: DemoWallet,
    node: &S,
    g1: &S,
    g2: &S,
) -> Result<String, DemoError> {
    let d = match kind {
        DemoWallet::WshSortedMulti => format!(
            "wsh(sortedmulti(2,{},{},{}))",
            key_expr(g1, 2)?,
            key_expr(g2, 2)?,
            key_expr(node, 2)?
        ),
        DemoWallet::WshRecovery => format!(
            "wsh(or_d(multi(2,{},{},{}),and_v(v:pk({}),older(144))))",
            key_expr(g1, 2)?,
            key_expr(g2, 2)?,
            key_expr(node, 2)?,
            key_expr(g2, 5)?
        ),
        DemoWallet::TrMultiA => format!(
            "tr({NUMS},multi_a(2,{},{},{}))",
            key_expr(g1, 3)?,
            key_expr(g2, 3)?,
            key_expr(node, 3)?
        ),
    };
    spacenode_btc::wallet::canonical_descriptor(&d).map_err(de)
}

/// The demo policy (version `version`).
///
/// # Errors
/// Never for the built-in values.
pub fn demo_policy(
    admins: &[Keypair],
    approver: &Keypair,
    version: u64,
) -> Result<PolicyDocument, DemoError> {
    let dest = Address::from_str(DESTINATION)
        .map_err(de)?
        .require_network(Network::Regtest)
        .map_err(de)?;
    let doc = PolicyDocument {
        version,
        network: Network::Regtest,
        admins: KeySet {
            keys: admins.iter().map(|k| k.x_only_public_key().0).collect(),
            threshold: 2,
        },
        activation_delay_ms: 3_600_000,
        veto_threshold: 1,
        approvers: KeySet {
            keys: vec![approver.x_only_public_key().0],
            threshold: 1,
        },
        clock: ClockRules {
            max_forward_jump_ms: 30 * 86_400_000,
            max_behind_chain_ms: 86_400_000,
        },
        rules: BtcRules {
            per_tx_cap: Sats(200_000_000),
            velocity: vec![
                VelocityWindow {
                    window_ms: 3_600_000,
                    cap: Sats(300_000_000),
                },
                VelocityWindow {
                    window_ms: 86_400_000,
                    cap: Sats(500_000_000),
                },
            ],
            allowlist: vec![AllowEntry {
                label: "exchange".into(),
                target: AllowTarget::Script(dest.script_pubkey()),
            }],
            max_fee: Sats(100_000),
            max_fee_rate: FeeRate::from_sat_per_vb(100).unwrap_or_default(),
            min_confirmations: 3,
            time_windows: vec![],
            replacement: Replacement {
                allowed: true,
                max_fee: Sats(200_000),
                max_fee_rate: FeeRate::from_sat_per_vb(200).unwrap_or_default(),
            },
            max_psbt_bytes: 1_000_000,
        },
        checkpoint: Checkpoint::genesis(Network::Regtest),
        eth: None,
    };
    doc.validate().map_err(de)?;
    Ok(doc)
}

/// Signs a policy document with administrators `signers` (indexes).
#[must_use]
pub fn sign_policy(
    secp: &Secp256k1<All>,
    admins: &[Keypair],
    doc: &[u8],
    signers: &[u8],
) -> SignedPolicy {
    let m = Message::from_digest(tagged_hash(POLICY_TAG, doc));
    SignedPolicy {
        document: doc.to_vec(),
        signatures: signers
            .iter()
            .filter_map(|&i| {
                admins.get(usize::from(i)).map(|k| Signature {
                    signer: i,
                    sig: secp.sign_schnorr_no_aux_rand(&m, k).serialize(),
                })
            })
            .collect(),
    }
}

impl Demo {
    /// Builds the scenario: keys, wallet, policy, a chain whose block 2
    /// holds `n_utxos` funding transactions of `value` sat each, buried
    /// under `confirmations - 1` more blocks.
    ///
    /// # Errors
    /// [`DemoError`] if any step fails.
    pub fn new(
        kind: DemoWallet,
        n_utxos: u32,
        value: u64,
        confirmations: u32,
    ) -> Result<Self, DemoError> {
        let secp = Secp256k1::new();
        let node = SoftSigner::from_seed(&[1; 32], NetworkKind::Test).map_err(de)?;
        let ground = [
            SoftSigner::from_seed(&[2; 32], NetworkKind::Test).map_err(de)?,
            SoftSigner::from_seed(&[3; 32], NetworkKind::Test).map_err(de)?,
        ];
        let admins = (10..13)
            .map(|i| kp(&secp, i))
            .collect::<Result<Vec<_>, _>>()?;
        let approver = kp(&secp, 20)?;
        let desc = descriptor(kind, &node, &ground[0], &ground[1])?;
        let wallet = Wallet::new("treasury", &desc, &node, NetworkKind::Test).map_err(de)?;

        // Funding transactions in block 2.
        let fund_height = 2u32;
        let mut funding = Vec::new();
        for i in 0..n_utxos {
            let spk = wallet.script_pubkey(&secp, 0, i).map_err(de)?;
            funding.push(Transaction {
                version: Version::TWO,
                lock_time: LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint {
                        txid: spacenode_chain::regtest::coinbase_tx(1, b"spacenode regtest")
                            .compute_txid(),
                        vout: i,
                    },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::from_slice(&[vec![0u8; 72], vec![2u8; 33]]),
                }],
                output: vec![
                    TxOut {
                        value: Amount::from_sat(value),
                        script_pubkey: spk,
                    },
                    TxOut {
                        value: Amount::from_sat(1_000 + u64::from(i)),
                        script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                    },
                ],
            });
        }
        let mut commitments = BTreeMap::new();
        commitments.insert(fund_height, funding.clone());
        let tip = fund_height + confirmations.saturating_sub(1);
        let regtest = RegtestChain::build(tip.max(fund_height), T0, &commitments)
            .ok_or_else(|| de("mining"))?;
        let mut chain = Chain::open(
            ChainConfig::new(Network::Regtest),
            MemoryStore::new(),
            Checkpoint::genesis(Network::Regtest),
        )
        .map_err(de)?;
        let now_s = u64::from(T0) + 600 * u64::from(regtest.tip_height()) + 3_600;
        let batch = regtest.batch(1, regtest.tip_height()).map_err(de)?;
        chain
            .apply_batch_bytes(&batch.encode().map_err(de)?, now_s)
            .map_err(de)?;
        let utxos = funding
            .iter()
            .enumerate()
            .map(|(k, tx)| Utxo {
                outpoint: OutPoint {
                    txid: tx.compute_txid(),
                    vout: 0,
                },
                txout: tx.output[0].clone(),
                index: u32::try_from(k).unwrap_or(0),
                funding: tx.clone(),
                height: fund_height,
                tx_index: k + 1,
            })
            .collect();

        let doc = demo_policy(&admins, &approver, 1)?;
        let provisioned = doc.admins.admin_set().map_err(de)?;
        let signed = sign_policy(&secp, &admins, &doc.encode(), &[0, 1]);
        let now = TimeMs(i64::try_from(now_s * 1000).map_err(de)?);
        let policy = PolicyState::bootstrap(&secp, &provisioned, &signed, now).map_err(de)?;
        let allow = AllowMatcher::new(&policy.active.document.rules).map_err(de)?;
        Ok(Self {
            secp,
            node,
            ground,
            admins,
            approver,
            wallet,
            regtest,
            chain,
            utxos,
            policy,
            allow,
            history: MemoryHistory::default(),
            velocity: VelocityLedger::default(),
            clock: ClockGuard::default(),
            audit: AuditLog::default(),
            seen: BTreeMap::new(),
            results: BTreeMap::new(),
            now,
        })
    }

    /// The allowlisted destination script.
    ///
    /// # Errors
    /// Never for the constant.
    pub fn destination(&self) -> Result<ScriptBuf, DemoError> {
        Ok(Address::from_str(DESTINATION)
            .map_err(de)?
            .require_network(Network::Regtest)
            .map_err(de)?
            .script_pubkey())
    }

    /// A PSBT (v0) spending `inputs` (indexes into `utxos`), paying
    /// `amount` to `dest`, `fee`, and the rest to change index
    /// `change_index` of the wallet (no change output if nothing is left).
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
        let chosen: Vec<&Utxo> = inputs
            .iter()
            .map(|i| self.utxos.get(*i).ok_or_else(|| de("no such utxo")))
            .collect::<Result<_, _>>()?;
        let total: u64 = chosen.iter().map(|u| u.txout.value.to_sat()).sum();
        let change = total
            .checked_sub(amount + fee)
            .ok_or_else(|| de("inputs do not cover amount + fee"))?;
        let mut output = vec![TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: dest,
        }];
        if change > 0 {
            output.push(TxOut {
                value: Amount::from_sat(change),
                script_pubkey: self
                    .wallet
                    .script_pubkey(&self.secp, 1, change_index)
                    .map_err(de)?,
            });
        }
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: chosen
                .iter()
                .map(|u| TxIn {
                    previous_output: u.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::default(),
                })
                .collect(),
            output,
        };
        let mut psbt = Psbt::from_unsigned_tx(tx).map_err(de)?;
        for (k, u) in chosen.iter().enumerate() {
            if let Some(i) = psbt.inputs.get_mut(k) {
                i.witness_utxo = Some(u.txout.clone());
                i.non_witness_utxo = Some(u.funding.clone());
            }
            let d = self.wallet.definite(0, u.index).map_err(de)?;
            psbt.update_input_with_descriptor(k, &d).map_err(de)?;
        }
        if change > 0 {
            let d = self.wallet.definite(1, change_index).map_err(de)?;
            psbt.update_output_with_descriptor(1, &d).map_err(de)?;
        }
        Ok(psbt)
    }

    /// SPV proofs (merkle branches) for the funding transactions of
    /// `inputs`, without the transaction bytes (the PSBT carries them).
    #[must_use]
    pub fn proofs(&self, inputs: &[usize]) -> Vec<SpvProof> {
        let mut out: Vec<SpvProof> = Vec::new();
        for u in inputs.iter().filter_map(|i| self.utxos.get(*i)) {
            let txid = u.outpoint.txid.to_byte_array();
            if out.iter().any(|p| p.txid == txid) {
                continue;
            }
            if let Some(b) = self.regtest.branch_proof(u.height, u.tx_index) {
                out.push(SpvProof {
                    txid,
                    kind: ProofKind::Branch,
                    proof: b.encode(),
                    tx: Vec::new(),
                });
            }
        }
        out
    }

    /// A signed request envelope around `psbt` bytes.
    #[must_use]
    pub fn request(&self, id: [u8; 32], psbt: Vec<u8>, proofs: Vec<SpvProof>) -> Vec<u8> {
        let tip = self.chain.state().tip_height();
        let now = u64::try_from(self.now.0).unwrap_or(0);
        let body = SignRequest {
            request_id: id,
            target: NODE_ID,
            not_before_ms: now.saturating_sub(600_000),
            not_after_ms: now + 3_600_000,
            not_before_height: tip.saturating_sub(10),
            not_after_height: tip + 10,
            psbt,
            proofs,
        }
        .encode();
        let m = Message::from_digest(request_hash(&body));
        SignedRequest {
            approvals: vec![Signature {
                signer: 0,
                sig: self
                    .secp
                    .sign_schnorr_no_aux_rand(&m, &self.approver)
                    .serialize(),
            }],
            body,
        }
        .encode()
    }

    /// The node's decision on `request` at the demo's current time.
    ///
    /// # Errors
    /// [`DemoError`] if the receipt key fails.
    pub fn evaluate(&self, request: &[u8]) -> Result<Outcome, DemoError> {
        self.evaluate_with(&self.node, request)
    }

    /// As [`Demo::evaluate`] with another node signer (fault injection).
    ///
    /// # Errors
    /// [`DemoError`] if the receipt key fails.
    pub fn evaluate_with<S: BtcSigner>(
        &self,
        signer: &S,
        request: &[u8],
    ) -> Result<Outcome, DemoError> {
        let wallets = [self.wallet.clone()];
        let view = NodeView {
            node_id: NODE_ID,
            policy: &self.policy.active,
            wallets: &wallets,
            allow: &self.allow,
            chain: self.chain.state(),
            history: &self.history,
            velocity: &self.velocity,
            clock: self.clock,
            audit: self.audit,
        };
        let seen = |id: &[u8; 32]| self.seen.get(id).copied();
        evaluate(&self.secp, &view, signer, request, &seen, self.now).map_err(de)
    }

    /// Applies an outcome to the in-memory node state, as the daemon's one
    /// SQLite transaction would.
    pub fn commit(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Approved(a) => {
                self.seen.insert(a.request_id, a.request_hash);
                self.results
                    .insert(a.request_id, a.signatures_encoded.clone());
                self.history.record(&a.spend.outpoints, &a.spend.spend);
                if let Some(v) = a.velocity {
                    self.velocity.entries.push(v);
                    self.velocity.high_water = self.velocity.high_water.max(v.at);
                }
                self.audit = a.audit_head;
                self.clock = a.clock;
            }
            Outcome::Refused(r) => {
                if r.remember_id
                    && let (Some(id), Some(h)) = (r.request_id, r.request_hash)
                {
                    self.seen.insert(id, h);
                    self.results
                        .insert(id, r.refusal.code.to_be_bytes().to_vec());
                }
                self.audit = r.audit_head;
                self.clock = r.clock;
            }
            Outcome::Replay(r) => self.audit = r.audit_head,
        }
    }

    /// Ground side: adds the node's signatures, co-signs with ground key
    /// `g`, finalises, extracts and verifies every input's script.
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn cosign_and_finalize(
        &self,
        mut psbt: Psbt,
        node_sigs: &[PartialSig],
        g: usize,
    ) -> Result<Transaction, DemoError> {
        apply_signatures(&mut psbt, node_sigs).map_err(de)?;
        let ground = self.ground.get(g).ok_or_else(|| de("no such ground key"))?;
        sign_as_cosigner(&self.secp, &mut psbt, ground).map_err(de)?;
        let prevouts: Vec<TxOut> = psbt
            .inputs
            .iter()
            .filter_map(|i| i.witness_utxo.clone())
            .collect();
        let tx = finalize(&self.secp, psbt).map_err(de)?;
        verify_transaction(&self.secp, &tx, &prevouts).map_err(de)?;
        Ok(tx)
    }

    /// Advances node time.
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.checked_add_ms(ms).unwrap_or(self.now);
    }

    /// Serialised bytes of a transaction (for printing).
    #[must_use]
    pub fn tx_hex(tx: &Transaction) -> String {
        hex::encode(serialize(tx))
    }
}
