//! The Bitcoin plug-in of the sign pipeline
//! (`spacenode_policy::pipeline`), pure: request bytes, node state and time
//! in; an [`Outcome`] with everything to persist out. The pipeline runs the
//! chain-neutral steps; [`Bitcoin`] adds the envelope's height window and
//! the Bitcoin rules, each one function named for its tag
//! ([`Bitcoin::decide`] lists them), then signing.
//!
//! Order: envelope decodes (`request-malformed`) → clock guard
//! (`clock-step`, raises an event) → seen ids (`request-id-reuse`, or a
//! replay answered from the stored result) → target, validity window
//! (`request-expired`) and ground approvals (`btc-approvals`) → no refused
//! deep reorg flagged (`btc-deep-reorg`, not remembered) → allowed UTC
//! windows (`btc-time-window`) → PSBT checks (`check`) → signing with the
//! double sighash and self-verification (`sign`) → spend record, velocity
//! entry and audit entry with its node-signed receipt.
//!
//! What the node does with an [`Outcome`] (the persistence contract; one
//! SQLite transaction, `synchronous=FULL`, BEFORE any byte of a signature
//! leaves the node):
//!
//! | outcome | write |
//! |---|---|
//! | `Approved` | `seen_requests(request_id, request_hash, result = encoded signatures)`; `spends(txid, request_id, destinations, fee, amount, time)` and `spent_outpoints(outpoint, txid)` for every outpoint (a replacement spends all outpoints of the txid it replaces, so all of that txid's rows are re-pointed: `history`); `velocity(at_ms, sats, request_id)` if `velocity` is `Some`; `audit(seq, entry, receipt)` and the audit head; `clock.last_accepted` |
//! | `Refused` | `audit(...)`, audit head; `seen_requests(id, hash, result = refusal code)` if `remember_id`; `clock.last_accepted` if `clock` changed |
//! | `Replay` | `audit(...)`, audit head; then answer with the stored result |
//!
//! Then downlink: signatures (or the refusal) with the audit entry and
//! receipt. A crash before the commit leaves nothing (the ground retries
//! with the same id and gets a fresh evaluation); a crash after it answers
//! the retry from `seen_requests` (same signatures).
//!
//! Must never: release signatures from an `Outcome` that was not persisted;
//! evaluate a request whose id is known with other content.

use bitcoin::secp256k1::{Secp256k1, Signing, Verification};
use bitcoin::{OutPoint, Txid};
use spacenode_policy::audit::{AuditLog, Counters};
use spacenode_policy::change::ActivePolicy;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::pipeline::{self, AuditFacts, Common, Decided, SignChain, Stop};
use spacenode_policy::request::{CheckedRequest, RequestError, SignRequest, SignedRequest};
use spacenode_policy::units::{Sats, TimeMs};
use spacenode_policy::velocity::{VelocityEntry, VelocityLedger};

use crate::chain::ChainView;
use crate::check::{CheckContext, CheckedSpend, check_psbt};
use crate::error::{BtcError, Refusal};
use crate::history::{Conflict, PriorSpend, SpendHistory};
use crate::sign::{PartialSig, encode_sigs, sign_spend};
use crate::signer::{BtcSigner, SignerError};
use crate::wallet::{AllowMatcher, Wallet};

pub use spacenode_policy::pipeline::{AuditRecord, RefusalRecord, ReplayRecord};

/// The node state a decision reads.
pub struct NodeView<'a, V: ChainView + ?Sized, H: SpendHistory + ?Sized> {
    /// Node id (targets of requests and commands).
    pub node_id: [u8; 8],
    /// Active policy.
    pub policy: &'a ActivePolicy,
    /// Registered wallets.
    pub wallets: &'a [Wallet],
    /// Compiled allowlist of the active policy.
    pub allow: &'a AllowMatcher,
    /// Header chain.
    pub chain: &'a V,
    /// Signed outpoints.
    pub history: &'a H,
    /// Velocity records.
    pub velocity: &'a VelocityLedger,
    /// Clock guard state.
    pub clock: ClockGuard,
    /// Audit head.
    pub audit: AuditLog,
}

/// What the spend tables get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRecord {
    /// Outpoints now bound to `spend.txid`.
    pub outpoints: Vec<OutPoint>,
    /// The spend (txid, destinations, fee, amount).
    pub spend: PriorSpend,
    /// A transaction this one replaces (fee bump).
    pub replaces: Option<Txid>,
}

/// What an approved Bitcoin request signed and persists (the chain's part
/// of an [`Approval`]).
#[derive(Debug, Clone)]
pub struct BtcApproved {
    /// Txid signed.
    pub txid: Txid,
    /// The signatures.
    pub signatures: Vec<PartialSig>,
    /// Their downlink encoding (also the stored result).
    pub signatures_encoded: Vec<u8>,
    /// Spend tables.
    pub spend: SpendRecord,
    /// Velocity row (None when nothing new leaves the wallets).
    pub velocity: Option<VelocityEntry>,
    /// The checked spend (for telemetry and tests).
    pub checked: Box<CheckedSpend>,
}

/// An approved request: persist all of it, then release `signatures`.
pub type Approval = pipeline::Approval<BtcApproved>;

/// The decision.
pub type Outcome = pipeline::Outcome<BtcApproved>;

/// The Bitcoin chain plug-in over the node's view and key store.
pub struct Bitcoin<'a, C: Verification, V: ChainView + ?Sized, H: SpendHistory + ?Sized, S: ?Sized>
{
    /// secp256k1 context.
    pub secp: &'a Secp256k1<C>,
    /// Node state.
    pub view: &'a NodeView<'a, V, H>,
    /// Key store.
    pub signer: &'a S,
}

fn stop(e: impl Into<Refusal>, remember_id: bool) -> Stop {
    Stop {
        refusal: e.into(),
        remember_id,
    }
}

impl<C, V, H, S> Bitcoin<'_, C, V, H, S>
where
    C: Signing + Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
    S: BtcSigner + ?Sized,
{
    /// `btc-deep-reorg`: a refused deep reorg means the header chain
    /// disagrees with a heavier branch: SPV confirmations may be stale or
    /// forged, so nothing is signed until the quorum clears the flag. Not
    /// remembered: the same request may be retried once it is cleared.
    fn deep_reorg(&self) -> Result<(), Stop> {
        match self.view.chain.deep_reorg_refused() {
            Some(branch_start) => Err(stop(BtcError::DeepReorg { branch_start }, false)),
            None => Ok(()),
        }
    }

    /// `btc-time-window`: the allowed UTC windows of the policy.
    fn time_window(&self, now: TimeMs) -> Result<(), Stop> {
        let windows = &self.view.policy.document.rules.time_windows;
        if !windows.is_empty() && !windows.iter().any(|w| w.contains(now.0)) {
            return Err(stop(BtcError::TimeWindow, true));
        }
        Ok(())
    }

    /// Every PSBT rule (`check::check_psbt`, in its order).
    fn psbt_rules(&self, checked: &CheckedRequest, now: TimeMs) -> Result<CheckedSpend, Stop> {
        let ctx = CheckContext {
            rules: &self.view.policy.document.rules,
            wallets: self.view.wallets,
            allow: self.view.allow,
            chain: self.view.chain,
            history: self.view.history,
            velocity: self.view.velocity,
            now,
        };
        check_psbt(
            self.secp,
            &ctx,
            &checked.request.psbt,
            &checked.request.proofs,
        )
        .map_err(|e| stop(e, true))
    }

    /// `btc-self-check`: the double sighash and a verified signature per
    /// input (a fault is not remembered).
    fn sign(&self, spend: &CheckedSpend) -> Result<Vec<PartialSig>, Stop> {
        sign_spend(self.secp, spend, self.signer).map_err(|e| stop(e, false))
    }
}

impl<C, V, H, S> SignChain for Bitcoin<'_, C, V, H, S>
where
    C: Signing + Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
    S: BtcSigner + ?Sized,
{
    type Body = SignRequest;
    type Checked = CheckedRequest;
    type Approved = BtcApproved;

    fn decode_body(&self, body: &[u8]) -> Result<SignRequest, RequestError> {
        SignRequest::decode(body)
    }

    fn request_id(body: &SignRequest) -> [u8; 32] {
        body.request_id
    }

    fn clock_floor_s(&self) -> u32 {
        self.view.chain.median_time_past()
    }

    fn check_envelope(
        &self,
        signed: &SignedRequest,
        body: SignRequest,
        _hash: [u8; 32],
        now: TimeMs,
    ) -> Result<CheckedRequest, RequestError> {
        signed.check_decoded(
            self.secp,
            body,
            self.view.node_id,
            &self.view.policy.document.approvers,
            now,
            self.view.chain.tip_height(),
        )
    }

    fn decide(&self, checked: &CheckedRequest, now: TimeMs) -> Result<Decided<BtcApproved>, Stop> {
        self.deep_reorg()?;
        self.time_window(now)?;
        let spend = self.psbt_rules(checked, now)?;
        let signatures = self.sign(&spend)?;
        Ok(approved(self.view.velocity, spend, signatures, now))
    }
}

/// The rows and audit numbers of a signed spend.
fn approved(
    velocity: &VelocityLedger,
    spend: CheckedSpend,
    signatures: Vec<PartialSig>,
    now: TimeMs,
) -> Decided<BtcApproved> {
    let velocity = (spend.velocity_amount > Sats::ZERO).then(|| {
        let mut l = velocity.clone();
        l.record(now, spend.velocity_amount)
    });
    let spend_record = SpendRecord {
        outpoints: spend.outpoints(),
        spend: PriorSpend {
            txid: spend.txid,
            destinations: spend
                .destinations
                .iter()
                .map(|(_, o, _)| o.clone())
                .collect(),
            fee: spend.fee,
            amount: spend.amount,
            outpoints: spend.outpoints(),
        },
        replaces: match &spend.conflict {
            Conflict::Replaces(p) => Some(p.txid),
            _ => None,
        },
    };
    let facts = AuditFacts {
        counters: Counters {
            amount: spend.amount,
            fee: spend.fee,
            window_totals: spend.window_totals.clone(),
        },
        txid: Some(bitcoin::hashes::Hash::to_byte_array(spend.txid)),
        signatures: signatures.iter().map(PartialSig::sig_bytes).collect(),
        eth: None,
    };
    Decided {
        approved: BtcApproved {
            txid: spend.txid,
            signatures_encoded: encode_sigs(&signatures),
            signatures,
            spend: spend_record,
            velocity,
            checked: Box::new(spend),
        },
        facts,
    }
}

/// Evaluates one uplinked sign request (module docs). `seen` looks up the
/// stored request hash of a request id. `Err` only when the receipt key
/// cannot sign (a signer fault: raise an event, persist nothing).
///
/// # Errors
/// [`SignerError`] from the receipt signature.
pub fn evaluate<C, V, H, S>(
    secp: &Secp256k1<C>,
    view: &NodeView<'_, V, H>,
    signer: &S,
    request: &[u8],
    seen: &dyn Fn(&[u8; 32]) -> Option<[u8; 32]>,
    now: TimeMs,
) -> Result<Outcome, SignerError>
where
    C: Signing + Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
    S: BtcSigner + ?Sized,
{
    evaluate_signed(
        secp,
        view,
        signer,
        SignedRequest::decode(request),
        seen,
        now,
    )
}

/// [`evaluate`] for an envelope the caller decoded already (the node
/// decodes it once, to route it by its body format).
///
/// # Errors
/// [`SignerError`] from the receipt signature.
pub fn evaluate_signed<C, V, H, S>(
    secp: &Secp256k1<C>,
    view: &NodeView<'_, V, H>,
    signer: &S,
    signed: Result<SignedRequest, RequestError>,
    seen: &dyn Fn(&[u8; 32]) -> Option<[u8; 32]>,
    now: TimeMs,
) -> Result<Outcome, SignerError>
where
    C: Signing + Verification,
    V: ChainView + ?Sized,
    H: SpendHistory + ?Sized,
    S: BtcSigner + ?Sized,
{
    let common = Common {
        policy: view.policy,
        clock: view.clock,
        audit: view.audit,
    };
    let chain = Bitcoin { secp, view, signer };
    pipeline::evaluate(&chain, &common, signer, signed, seen, now)
}
