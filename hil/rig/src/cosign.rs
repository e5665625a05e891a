//! Co-signing on a board, as a ground station does it: the ground side of
//! the `cosign_*` and `audit_verify` scenario steps. Everything is built
//! with the ground library (`spacenode_ground`): a 2-of-3 wallet of two
//! ground keys and the node's key, a regtest chain mined on the ground that
//! funds it, the policy signed by the board's administrator quorum, the
//! wallet registration, approved sign requests, and the checks of what
//! comes back (the node's signatures complete and verify a transaction, the
//! audit receipts and the hash chain verify with the node's receipt key).
//!
//! The ground keys and the approver key live in memory only, for one run.
//! This module must never print or log a secret key.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash as _;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Keypair, Secp256k1, XOnlyPublicKey};
use bitcoin::{Address, Network, NetworkKind, ScriptBuf};
use spacenode_btc::sign::decode_sigs;
use spacenode_btc::signer::SoftSigner;
use spacenode_policy::audit::Decision;
use spacenode_policy::command::kind;
use spacenode_policy::document::{PolicyDocument, SignedPolicy};
use spacenode_wire::ReasonCode;
use spacenode_wire::services::subtype;

use super::admins::Admins;
use spacenode_ground::chain::{self, HeaderFormat, SyncOptions};
use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::cosign::{self, Answer, SignOutcome};
use spacenode_ground::demo::{self, Funding};
use spacenode_ground::{admin, btc, policyfile};

/// The allowlisted destination of the scenario (regtest P2WPKH, the same
/// as the host co-signing tests).
pub const DEST: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/// The node's account in the wallet.
const NODE_ACCOUNT: &str = "m/48'/1'/0'/2'";

/// What the wallet and policy look like.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Funded outputs of the wallet.
    pub utxos: u32,
    /// Value of each, sat.
    pub value_sat: u64,
    /// The policy's per-transaction cap, sat.
    pub per_tx_cap_sat: u64,
    /// Confirmations of the funding block.
    pub confirmations: u32,
}

/// One sign request to send.
#[derive(Debug, Clone)]
pub struct Spend {
    /// Request id byte (the id is 32 times this byte).
    pub id: u8,
    /// Wallet outputs spent (indices into the funding).
    pub inputs: Vec<usize>,
    /// Paid to the allowlisted destination, sat.
    pub amount_sat: u64,
    /// Fee, sat.
    pub fee_sat: u64,
    /// Change address index.
    pub change_index: u32,
}

/// A request the node approved, kept for a retry.
#[derive(Debug, Clone)]
struct Signed {
    request: Vec<u8>,
    signatures: Vec<u8>,
    txid: [u8; 32],
}

/// The ground side of co-signing with one board (module docs).
pub struct Desk {
    approver: Keypair,
    ground_keys: Vec<SoftSigner>,
    funding: Funding,
    dest: ScriptBuf,
    node_id: [u8; 8],
    receipt_key: XOnlyPublicKey,
    signed: BTreeMap<String, Signed>,
}

impl core::fmt::Debug for Desk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Desk")
            .field("node_id", &hex::encode(self.node_id))
            .field("utxos", &self.funding.utxos.len())
            .field("signed", &self.signed.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a co-signing step failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeskError(pub String);

fn de(what: &str) -> impl Fn(&dyn std::fmt::Display) -> DeskError + '_ {
    move |e| DeskError(format!("{what}: {e}"))
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    seed
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The policy's TOML: the board's administrators (their quorum), one
/// approver, the allowlisted destination and the per-transaction cap.
fn policy_toml(admins: &Admins, approver: &XOnlyPublicKey, setup: &Setup) -> String {
    let keys: Vec<String> = admins
        .xonly_keys()
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect();
    format!(
        "version = 1\nnetwork = \"regtest\"\nactivation_delay_s = 3600\n\
         veto_threshold = 1\ncheckpoint = \"genesis\"\n\
         [admins]\nthreshold = {threshold}\nkeys = [{keys}]\n\
         [approvers]\nthreshold = 1\nkeys = [\"{approver}\"]\n\
         [clock]\nmax_forward_jump_s = 2592000\nmax_behind_chain_s = 86400\n\
         [rules]\nper_tx_cap_sat = {cap}\nmax_fee_sat = 100000\nmax_fee_rate_sat_vb = 100\n\
         min_confirmations = {conf}\nmax_psbt_bytes = 200000\n\
         [[rules.velocity]]\nwindow_s = 86400\ncap_sat = 1000000000\n\
         [[rules.allow]]\nlabel = \"exchange\"\naddress = \"{DEST}\"\n\
         [rules.replacement]\nallowed = false\nmax_fee_sat = 0\nmax_fee_rate_sat_vb = 0\n",
        threshold = admins.threshold(),
        keys = keys.join(", "),
        cap = setup.per_tx_cap_sat,
        conf = setup.confirmations,
    )
}

impl Desk {
    /// Sets co-signing up on the node behind `link`: the wallet (two fresh
    /// ground keys and the node's key at `m/48'/1'/0'/2'`), a regtest chain
    /// funding it whose headers are synced to the node, the policy signed
    /// by the administrators' quorum, and the wallet registered by an
    /// administrator command signed by the quorum. Returns the desk and a
    /// summary.
    ///
    /// # Errors
    /// [`DeskError`] naming the stage that failed.
    pub fn setup(
        link: &mut Link,
        policy: RetryPolicy,
        admins: &Admins,
        setup: &Setup,
    ) -> Result<(Self, String), DeskError> {
        let policy = cosign::evaluation_policy(policy);
        let secp = Secp256k1::new();
        let approver = Keypair::from_seckey_slice(&secp, &random_seed())
            .map_err(|e| de("approver key")(&e))?;
        let ground_keys = (0..2)
            .map(|_| {
                SoftSigner::from_seed(&random_seed(), NetworkKind::Test)
                    .map_err(|e| de("ground key")(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (fp, xpub) =
            cosign::fetch_xpub(link, policy, NODE_ACCOUNT).map_err(|e| de("node xpub")(&e))?;
        let mut exprs = ground_keys
            .iter()
            .map(|k| btc::key_expression(k, btc::DEFAULT_ACCOUNT).map_err(|e| de("key")(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        exprs.push(format!("[{fp}/48'/1'/0'/2']{xpub}/<0;1>/*"));
        let descriptor = format!("wsh(sortedmulti(2,{}))", exprs.join(","));
        let (funding, regtest) = demo::fund(
            &descriptor,
            setup.utxos,
            setup.value_sat,
            setup.confirmations,
        )
        .map_err(|e| de("funding chain")(&e))?;

        let file = chain::parse_headers(&demo::headers_raw(&regtest), HeaderFormat::Raw, "regtest")
            .map_err(|e| de("headers")(&e))?;
        chain::sync(
            link,
            policy,
            &file,
            SyncOptions {
                first_height: None,
                max_batch: None,
            },
            &mut |_| {},
        )
        .map_err(|e| de("header sync")(&e))?;

        let toml = policy_toml(admins, &approver.x_only_public_key().0, setup);
        let doc = PolicyDocument::from_toml(&toml).map_err(|e| de("policy document")(&e))?;
        let mut signed = SignedPolicy {
            document: doc.encode(),
            signatures: Vec::new(),
        };
        let quorum: Vec<u8> = (0..admins.threshold())
            .filter_map(|i| u8::try_from(i).ok())
            .collect();
        for &i in &quorum {
            let key = admins.key(i).map_err(|e| de("administrator")(&e))?;
            policyfile::sign(&mut signed, key, i);
        }
        match cosign::propose(link, policy, &signed.encode(), &mut |_| {})
            .map_err(|e| de("policy upload")(&e))?
        {
            Answer::Ok(_) => {}
            Answer::Refused(r) => return Err(DeskError(format!("the policy was refused: {r}"))),
        }
        let status = cosign::policy_status(link, policy).map_err(|e| de("policy status")(&e))?;
        if !status.active || status.active_version != 1 {
            return Err(DeskError(format!(
                "policy accepted but not active (active {}, version {})",
                status.active, status.active_version
            )));
        }

        let mode = cosign::mode_status(link, policy).map_err(|e| de("mode status")(&e))?;
        let canonical = spacenode_btc::wallet::canonical_descriptor(&descriptor)
            .map_err(|e| de("descriptor")(&e))?;
        let mut cmd = admin::build(
            kind::REGISTER_WALLET,
            mode.node_id,
            mode.admin_seq.saturating_add(1),
            0,
            i64::MAX,
            spacenode_btc::wallet::registration_body("treasury", &canonical),
        );
        for &i in &quorum {
            let key = admins.key(i).map_err(|e| de("administrator")(&e))?;
            admin::sign(&mut cmd, key, i).map_err(|e| de("wallet command")(&e))?;
        }
        match cosign::admin_command(
            link,
            policy,
            subtype::POLICY_REGISTER_WALLET,
            &cmd.encode(),
            &mut |_| {},
        )
        .map_err(|e| de("wallet registration")(&e))?
        {
            Answer::Ok(()) => {}
            Answer::Refused(r) => return Err(DeskError(format!("the wallet was refused: {r}"))),
        }
        let receipt_key =
            cosign::fetch_receipt_key(link, policy).map_err(|e| de("receipt key")(&e))?;
        let dest = DEST
            .parse::<Address<_>>()
            .map_err(|e| de("destination")(&e))?
            .require_network(Network::Regtest)
            .map_err(|e| de("destination")(&e))?
            .script_pubkey();
        let summary = format!(
            "node key {fp} in a 2-of-3 wallet, {} headers synced (tip {}), {} outputs of {} sat funded, policy v1 active (signed by {} of {} administrators, cap {} sat), wallet registered",
            file.headers.len(),
            funding.tip,
            setup.utxos,
            setup.value_sat,
            quorum.len(),
            admins.count(),
            setup.per_tx_cap_sat,
        );
        Ok((
            Self {
                approver,
                ground_keys,
                funding,
                dest,
                node_id: mode.node_id,
                receipt_key,
                signed: BTreeMap::new(),
            },
            summary,
        ))
    }

    /// The approved request envelope for `s` and its PSBT.
    fn request(&self, s: &Spend) -> Result<(Vec<u8>, Psbt), DeskError> {
        let psbt = self
            .funding
            .psbt(
                &s.inputs,
                self.dest.clone(),
                s.amount_sat,
                s.fee_sat,
                s.change_index,
            )
            .map_err(|e| de("psbt")(&e))?;
        let proofs = self
            .funding
            .proofs(&s.inputs)
            .map_err(|e| de("proofs")(&e))?;
        let body = btc::build_request(
            [s.id; 32],
            self.node_id,
            psbt.serialize(),
            proofs,
            btc::Validity {
                now_ms: now_ms(),
                skew_s: 3600,
                valid_for_s: 6 * 3600,
                tip: self.funding.tip,
                blocks: 100,
            },
        );
        Ok((btc::approve(&body, &[(self.approver, 0)]).encode(), psbt))
    }

    fn send(
        link: &mut Link,
        policy: RetryPolicy,
        request: &[u8],
    ) -> Result<SignOutcome, DeskError> {
        cosign::sign(
            link,
            cosign::evaluation_policy(policy),
            request,
            &mut |_| {},
        )
        .map_err(|e| de("sign request")(&e))
    }

    /// Sends `s`; the node must approve it. Its signatures must complete
    /// the transaction with one ground key (every input's script executed),
    /// for the txid it names, and its audit receipt must verify.
    ///
    /// # Errors
    /// [`DeskError`].
    pub fn sign_approved(
        &mut self,
        link: &mut Link,
        policy: RetryPolicy,
        s: &Spend,
        save_as: Option<&str>,
    ) -> Result<String, DeskError> {
        let (request, psbt) = self.request(s)?;
        let out = Self::send(link, policy, &request)?;
        let result = match (out.result, out.refused) {
            (Some(r), _) => r,
            (None, Some(r)) => {
                return Err(DeskError(format!(
                    "request {} refused: {r} (rule {:?})",
                    s.id, r.rule
                )));
            }
            (None, None) => return Err(DeskError("neither signatures nor a refusal".into())),
        };
        let audit = out
            .audit
            .ok_or_else(|| DeskError("approved without an audit record".into()))?;
        if audit.entry.decision != Decision::Approved {
            return Err(DeskError(format!(
                "audit decision {:?}, expected Approved",
                audit.entry.decision
            )));
        }
        cosign::verify_one(&audit, &self.receipt_key).map_err(|e| de("audit receipt")(&e))?;
        let sigs = decode_sigs(&result.signatures).map_err(|e| de("signatures")(&e))?;
        let cosigner = self
            .ground_keys
            .first()
            .ok_or_else(|| DeskError("no ground key".into()))?;
        let (tx, added) = btc::complete(psbt, &sigs, std::slice::from_ref(cosigner))
            .map_err(|e| de("the node's signatures do not complete the transaction")(&e))?;
        if tx.compute_txid().to_byte_array() != result.txid {
            return Err(DeskError(
                "the node signed another transaction than the one it names".into(),
            ));
        }
        if let Some(name) = save_as {
            self.signed.insert(
                name.to_string(),
                Signed {
                    request,
                    signatures: result.signatures.clone(),
                    txid: result.txid,
                },
            );
        }
        Ok(format!(
            "request {:#04x} approved in {} exchange(s): {} node signature(s), the transaction {} verifies with one ground key added ({added}), audit entry {} receipt verified",
            s.id,
            out.exchanges,
            sigs.len(),
            tx.compute_txid(),
            audit.entry.seq
        ))
    }

    /// Sends `s`; the node must refuse it with `code` and `rule`, with an
    /// audit record whose receipt verifies.
    ///
    /// # Errors
    /// [`DeskError`].
    pub fn sign_refused(
        &mut self,
        link: &mut Link,
        policy: RetryPolicy,
        s: &Spend,
        code: u16,
        rule: Option<&str>,
    ) -> Result<String, DeskError> {
        let (request, _) = self.request(s)?;
        let out = Self::send(link, policy, &request)?;
        let Some(r) = out.refused else {
            return Err(DeskError(format!(
                "request {:#04x} was signed; a refusal with {} was expected",
                s.id,
                ReasonCode(code)
            )));
        };
        if r.code.0 != code || (rule.is_some() && r.rule.as_deref() != rule) {
            return Err(DeskError(format!(
                "refused with {} rule {:?} ({}); expected {} rule {rule:?}",
                r.code,
                r.rule,
                r.detail,
                ReasonCode(code)
            )));
        }
        let audit = out
            .audit
            .ok_or_else(|| DeskError("a policy refusal without an audit record".into()))?;
        if audit.entry.decision != Decision::Refused || audit.entry.code != code {
            return Err(DeskError(format!(
                "audit entry {:?} code {:#06x}, expected Refused {code:#06x}",
                audit.entry.decision, audit.entry.code
            )));
        }
        cosign::verify_one(&audit, &self.receipt_key).map_err(|e| de("audit receipt")(&e))?;
        Ok(format!(
            "request {:#04x} refused: {} [rule {}], audit entry {} receipt verified",
            s.id,
            r.code,
            r.rule.unwrap_or_default(),
            audit.entry.seq
        ))
    }

    /// Sends the request saved as `from` again: the node must answer with
    /// the same signatures from its stored result (a replay, not a second
    /// signature).
    ///
    /// # Errors
    /// [`DeskError`].
    pub fn retry(
        &mut self,
        link: &mut Link,
        policy: RetryPolicy,
        from: &str,
    ) -> Result<String, DeskError> {
        let saved = self
            .signed
            .get(from)
            .cloned()
            .ok_or_else(|| DeskError(format!("no approved request saved as `{from}`")))?;
        let out = Self::send(link, policy, &saved.request)?;
        let result = out.result.ok_or_else(|| {
            DeskError(format!(
                "the retry was not answered with signatures: {:?}",
                out.refused
            ))
        })?;
        if result.signatures != saved.signatures || result.txid != saved.txid {
            return Err(DeskError(
                "the retry returned other signatures: the node signed twice".into(),
            ));
        }
        let decision = out.audit.as_ref().map(|a| a.entry.decision);
        if decision != Some(Decision::Replayed) {
            return Err(DeskError(format!(
                "the retry's audit decision is {decision:?}, expected Replayed"
            )));
        }
        Ok(format!(
            "retry of `{from}`: the same signatures, audit decision Replayed"
        ))
    }

    /// Downloads the whole audit log and verifies it: sequence from 0, hash
    /// links, every receipt, the last hash equal to the node's head; at
    /// least `min_approved` approvals. Returns a summary.
    ///
    /// # Errors
    /// [`DeskError`].
    pub fn audit_verify(
        &self,
        link: &mut Link,
        policy: RetryPolicy,
        min_approved: u32,
    ) -> Result<String, DeskError> {
        let status = cosign::policy_status(link, policy).map_err(|e| de("policy status")(&e))?;
        let log = cosign::audit_log(link, policy, 0, status.audit_next_seq, &mut |_| {})
            .map_err(|e| de("audit download")(&e))?;
        cosign::verify_audit_log(&log, &self.receipt_key, Some(status.audit_last_hash))
            .map_err(|e| de("audit chain")(&e))?;
        let entries = log.entries;
        let count = |d: Decision| entries.iter().filter(|a| a.entry.decision == d).count();
        let approved = count(Decision::Approved);
        if approved < usize::try_from(min_approved).unwrap_or(usize::MAX) {
            return Err(DeskError(format!(
                "{approved} approvals in the audit log, expected at least {min_approved}"
            )));
        }
        Ok(format!(
            "audit log VERIFIED: {} entries ({approved} approved, {} refused, {} replayed), head {}",
            entries.len(),
            count(Decision::Refused),
            count(Decision::Replayed),
            hex::encode(status.audit_last_hash)
        ))
    }
}
