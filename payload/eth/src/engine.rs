//! The Ethereum plug-in of the sign pipeline (`spacenode_policy::pipeline`),
//! pure: request bytes, node state and time in; an [`Outcome`] with
//! everything to persist out. The pipeline runs the chain-neutral steps;
//! [`Ethereum`] adds the Ethereum envelope tags, the administrator
//! authority and one decision per request kind.
//!
//! Order: envelope decodes (`request-malformed`) → clock guard
//! (`clock-step`, raises an event) → seen ids (`request-id-reuse`, or a
//! replay answered from the stored result) → target, validity window
//! (`request-expired`) and ground approvals (`eth-approvals`) → the policy
//! has Ethereum rules (`eth-chain-id`) → administrator authority, if the
//! request came with one (`safe-self-call`) → per kind:
//!
//! - transaction: decode (`eth-malformed`) → `check::check_transaction` →
//!   nonce history (`eth-nonce-reuse`) → velocity (`eth-velocity`,
//!   `eth-erc20-cap`) → sign (`eth-self-check`);
//! - Safe signature: decode → registered Safe and owner account
//!   (`safe-unregistered`) → `check::check_safe_tx` → SafeTx hash twice →
//!   Safe-nonce history (`safe-nonce-reuse`) → velocity → sign;
//! - Safe approveHash: both of the above for the SafeTx, then
//!   `check::check_approve_hash_tx` for the owner's transaction, the
//!   account's nonce history, velocity over what is new, sign.
//!
//! Then the nonce rows, velocity rows and the audit entry with its
//! node-signed receipt (same log, same receipt key as Bitcoin).
//!
//! What the node does with an [`Outcome`] (one SQLite transaction,
//! `synchronous=FULL`, BEFORE any byte of a signature leaves the node):
//!
//! | outcome | write |
//! |---|---|
//! | `Approved` | `seen_requests(request_id, request_hash, result = result_encoded)`; every [`NonceRecord`] (`eth_nonces` insert; `safe_nonces` insert, or fill in the signature); every [`EthVelocityRow`] (`eth_velocity`); `audit(seq, entry, receipt)` and the audit head; `clock.last_accepted`; `admin_commands.last_seq = admin_command_seq` if `Some` |
//! | `Refused` | `audit(...)`, audit head; `seen_requests(id, hash, result = refusal code)` if `remember_id`; `clock.last_accepted` if `clock` changed |
//! | `Replay` | `audit(...)`, audit head; then answer with the stored result |
//!
//! A crash before the commit leaves nothing (the ground retries with the
//! same id and gets a fresh evaluation, which signs the same bytes: RFC
//! 6979); after it, a retry with the same id is a `Replay`, and the same
//! transaction under a new id is approved again with the STORED signature
//! and no new velocity.
//!
//! Must never: release a signature from an `Outcome` that was not
//! persisted; evaluate a request whose id is known with other content.

use alloy_primitives::{Address, B256};
use bitcoin::secp256k1::{Secp256k1, Verification};
use spacenode_policy::audit::AuditLog;
use spacenode_policy::cbor::{self, Fields, Value, bytes, uint};
use spacenode_policy::change::ActivePolicy;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::command::{Executed, SignedCommand, kind};
use spacenode_policy::eth::EthRules;
use spacenode_policy::pipeline::{self, AuditFacts, Common, Decided, SignChain, Stop};
use spacenode_policy::request::{
    CheckedEthRequest, EthKind, EthSignRequest, RequestError, SignedRequest,
};
use spacenode_policy::units::TimeMs;

use crate::check::{
    Authority as CheckAuthority, CheckContext, Spend, check_approve_hash_tx, check_caps,
    check_safe_tx, check_transaction,
};
use crate::error::{EthError, Refusal, envelope_refusal};
use crate::history::{EthHistory, NonceRecord, NonceState, classify_safe, classify_tx};
use crate::safe::{Safe, SafeTx};
use crate::sign::{safe_hashes, sign_safe_tx, sign_transaction, verify_recovers};
use crate::signer::{EthKeyStore, SignerError, account_path, address_of};
use crate::tx::{UnsignedTx, decode_signed};
use crate::velocity::{EthLedgers, EthVelocityRow, VelocityTotals, counters};

pub use spacenode_policy::pipeline::{AuditRecord, RefusalRecord, ReplayRecord};

/// The node state a decision reads.
pub struct NodeView<'a, H: EthHistory + ?Sized> {
    /// Node id (targets of requests and commands).
    pub node_id: [u8; 8],
    /// Active policy.
    pub policy: &'a ActivePolicy,
    /// Registered Safes (checked with `Safe::from_registration`).
    pub safes: &'a [Safe],
    /// Signed nonces.
    pub history: &'a H,
    /// Velocity rows.
    pub velocity: &'a EthLedgers,
    /// Clock guard state.
    pub clock: ClockGuard,
    /// Audit head.
    pub audit: AuditLog,
    /// Median time past of the node's Bitcoin header chain, seconds (the
    /// clock guard's floor).
    pub chain_mtp_s: u32,
    /// Administrator command sequences executed: the last `SAFE_ADMIN_TX`
    /// one and the highest of any kind.
    pub admin_executed: Executed,
}

/// The path a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority<'a> {
    /// A ground request (approvals only).
    Ground,
    /// A ground request with a signed administrator command (wire form of
    /// `SignedCommand`) of kind `SAFE_ADMIN_TX` whose body is the request
    /// hash: the Safe may call itself (owners, threshold, guard, modules,
    /// fallback handler). The engine verifies the command itself (quorum of
    /// the active administrators, target, window, sequence number).
    AdminQuorum(&'a [u8]),
}

/// What the node downlinks for an approved Ethereum request (and stores as
/// the `seen_requests` result).
///
/// ```text
/// result := CBOR { 0: kind, 1: chain id, 2: signed raw transaction (EIP-2718; empty for a
///                  Safe signature), 3: transaction hash (32, or empty), 4: signature r||s||v
///                  (65, v = 27 + y parity: the transaction's, or the Safe owner signature),
///                  5: SafeTx hash (32, or empty) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthResult {
    /// Request kind.
    pub kind: EthKind,
    /// Chain.
    pub chain_id: u64,
    /// Signed transaction (kinds 0 and 2).
    pub raw_tx: Vec<u8>,
    /// Its hash.
    pub tx_hash: Option<B256>,
    /// `r || s || v`.
    pub signature: [u8; 65],
    /// SafeTx hash (kinds 1 and 2).
    pub safe_tx_hash: Option<B256>,
}

fn opt32(h: &Option<B256>) -> Value {
    bytes(h.as_ref().map_or(&[][..], |x| x.as_slice()))
}

impl EthResult {
    /// Canonical bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (0, uint(self.kind.id())),
            (1, uint(self.chain_id)),
            (2, bytes(&self.raw_tx)),
            (3, opt32(&self.tx_hash)),
            (4, bytes(&self.signature)),
            (5, opt32(&self.safe_tx_hash)),
        ]))
    }

    /// Strict decoding (ground side).
    ///
    /// # Errors
    /// [`EthError::SafeTx`] (malformed result).
    pub fn decode(b: &[u8]) -> Result<Self, EthError> {
        let bad = |e: cbor::CborError| EthError::SafeTx(format!("result: {e}"));
        let mut f = Fields::new("eth result", cbor::decode(b).map_err(bad)?).map_err(bad)?;
        let kind = EthKind::from_id(f.uint(0, "kind").map_err(bad)?)
            .ok_or_else(|| EthError::SafeTx("result: kind".into()))?;
        let chain_id = f.uint(1, "chain_id").map_err(bad)?;
        let raw_tx = f.bytes(2, "raw_tx").map_err(bad)?;
        let h = |v: Vec<u8>| -> Result<Option<B256>, EthError> {
            match v.len() {
                0 => Ok(None),
                32 => Ok(Some(B256::from_slice(&v))),
                _ => Err(EthError::SafeTx("result: hash length".into())),
            }
        };
        let tx_hash = h(f.bytes(3, "tx_hash").map_err(bad)?)?;
        let signature = f.array::<65>(4, "signature").map_err(bad)?;
        let safe_tx_hash = h(f.bytes(5, "safe_tx_hash").map_err(bad)?)?;
        f.finish().map_err(bad)?;
        let r = Self {
            kind,
            chain_id,
            raw_tx,
            tx_hash,
            signature,
            safe_tx_hash,
        };
        if r.encode() != b {
            return Err(EthError::SafeTx("result: not canonical".into()));
        }
        Ok(r)
    }
}

/// What an approved Ethereum request signed and persists (the chain's part
/// of an [`Approval`]).
#[derive(Debug, Clone)]
pub struct EthApproved {
    /// The signature and what it signs.
    pub result: EthResult,
    /// Its downlink encoding (also the stored result).
    pub result_encoded: Vec<u8>,
    /// Nonce rows.
    pub nonces: Vec<NonceRecord>,
    /// Velocity rows (empty when nothing new leaves).
    pub velocity: Vec<EthVelocityRow>,
    /// Administrator command executed (persist as the last executed seq).
    pub admin_command_seq: Option<u64>,
    /// What the request moves (for telemetry, the ground display, tests).
    pub spend: Spend,
    /// The same content was signed before: the stored signature is
    /// returned and no velocity is counted.
    pub repeated: bool,
}

/// An approved request: persist all of it, then release `result`.
pub type Approval = pipeline::Approval<EthApproved>;

/// The decision.
pub type Outcome = pipeline::Outcome<EthApproved>;

impl From<EthError> for Stop {
    fn from(e: EthError) -> Self {
        // Faults are not the request's doing, and a Safe self-call may be
        // retried with the same id together with an administrator command:
        // neither is remembered, a retry is evaluated afresh.
        let remember_id = !e.raise_event() && !matches!(e, EthError::SafeSelfCall { .. });
        Stop {
            refusal: e.into(),
            remember_id,
        }
    }
}

/// What one request kind decided.
struct KindDecision {
    result: EthResult,
    nonces: Vec<NonceRecord>,
    velocity: Vec<EthVelocityRow>,
    spend: Spend,
    totals: VelocityTotals,
    repeated: bool,
}

fn verify_admin<C: Verification>(
    secp: &Secp256k1<C>,
    policy: &ActivePolicy,
    node_id: [u8; 8],
    executed: Executed,
    now: TimeMs,
    command: &[u8],
    request_hash: [u8; 32],
) -> Result<u64, EthError> {
    let err = |code: u16, detail: String| EthError::AdminAuthority { code, detail };
    let sc = SignedCommand::decode(command).map_err(|e| err(e.code(), e.to_string()))?;
    let admins = policy
        .document
        .admins
        .admin_set()
        .map_err(|e| err(e.code(), e.to_string()))?;
    let cmd = sc
        .authorize(secp, &admins, node_id, executed, now.0)
        .map_err(|e| err(e.code(), e.to_string()))?;
    if cmd.kind != kind::SAFE_ADMIN_TX {
        return Err(err(
            0x0524,
            format!("command kind {:#06x} is not SAFE_ADMIN_TX", cmd.kind),
        ));
    }
    if cmd.body != request_hash {
        return Err(err(0, "the command authorises another request".into()));
    }
    Ok(cmd.seq)
}

fn find_safe<'a>(safes: &'a [Safe], tx: &SafeTx, account: u32) -> Result<&'a Safe, EthError> {
    let safe = safes
        .iter()
        .find(|s| s.chain_id() == tx.chain_id && s.address() == tx.safe)
        .ok_or(EthError::SafeUnregistered {
            chain_id: tx.chain_id,
            address: tx.safe,
        })?;
    if account != safe.registration.node_account {
        return Err(EthError::SafeOwnerAccount {
            safe: safe.address(),
            account,
            expected: safe.registration.node_account,
        });
    }
    Ok(safe)
}

/// A stored signed transaction, checked again before it is returned.
fn stored_tx<C: Verification>(
    secp: &Secp256k1<C>,
    raw: &[u8],
    tx: &UnsignedTx,
    expected: Address,
) -> Result<(B256, [u8; 65]), EthError> {
    let (back, sig) = decode_signed(raw).map_err(|_| EthError::HashMismatch)?;
    if back != *tx {
        return Err(EthError::HashMismatch);
    }
    verify_recovers(secp, &sig, &tx.signature_hash(), expected)?;
    Ok((alloy_primitives::keccak256(raw), sig.as_bytes()))
}

/// The Ethereum chain plug-in over the node's view and key store.
pub struct Ethereum<'a, C: Verification, H: EthHistory + ?Sized, K: ?Sized> {
    /// secp256k1 context.
    pub secp: &'a Secp256k1<C>,
    /// Node state.
    pub view: &'a NodeView<'a, H>,
    /// Key store.
    pub keys: &'a K,
    /// The path the request arrived on.
    pub authority: Authority<'a>,
}

impl<C, H, K> Ethereum<'_, C, H, K>
where
    C: Verification,
    H: EthHistory + ?Sized,
    K: EthKeyStore + ?Sized,
{
    /// `eth-chain-id`: the policy has Ethereum rules.
    fn eth_rules(&self) -> Result<&EthRules, Stop> {
        Ok(self
            .view
            .policy
            .document
            .eth
            .as_ref()
            .ok_or(EthError::NoEthRules)?)
    }

    /// `safe-self-call`: the administrator command, if the request came
    /// with one (never remembered: a retry may bring another).
    fn admin_authority(
        &self,
        checked: &CheckedEthRequest,
        now: TimeMs,
    ) -> Result<Option<u64>, Stop> {
        match self.authority {
            Authority::Ground => Ok(None),
            Authority::AdminQuorum(cmd) => verify_admin(
                self.secp,
                self.view.policy,
                self.view.node_id,
                self.view.admin_executed,
                now,
                cmd,
                checked.hash,
            )
            .map(Some)
            .map_err(|e| Stop {
                refusal: e.into(),
                remember_id: false,
            }),
        }
    }

    fn signer_fault(e: &SignerError) -> Stop {
        Stop {
            refusal: EthError::Signer(e.to_string()).into(),
            remember_id: false,
        }
    }

    /// A transaction: `check_transaction`, then the account's nonce
    /// history (`eth-nonce-reuse`), velocity, sign.
    fn transaction(
        &self,
        ctx: &CheckContext<'_>,
        req: &EthSignRequest,
        now: TimeMs,
    ) -> Result<KindDecision, Stop> {
        let (secp, keys, view) = (self.secp, self.keys, self.view);
        let tx = UnsignedTx::decode(&req.transaction)?;
        let from = address_of(
            &keys
                .public_key(&account_path(req.account))
                .map_err(|e| Self::signer_fault(&e))?,
        );
        let spend = check_transaction(ctx, &tx, from)?;
        let state = classify_tx(
            view.history,
            tx.chain_id(),
            from,
            tx.nonce(),
            tx.signature_hash(),
        )?;
        match state {
            NonceState::Same(prior) => {
                let (tx_hash, signature) = stored_tx(secp, &prior.raw, &tx, from)?;
                Ok(KindDecision {
                    result: EthResult {
                        kind: req.kind,
                        chain_id: tx.chain_id(),
                        raw_tx: prior.raw,
                        tx_hash: Some(tx_hash),
                        signature,
                        safe_tx_hash: None,
                    },
                    nonces: vec![],
                    velocity: vec![],
                    spend,
                    totals: VelocityTotals::default(),
                    repeated: true,
                })
            }
            NonceState::Fresh => {
                let totals = view.velocity.check(ctx.rules, &spend, now)?;
                let rows = view.velocity.rows(&spend, now)?;
                let s = sign_transaction(secp, keys, req.account, &tx, &req.transaction, from)?;
                Ok(KindDecision {
                    result: EthResult {
                        kind: req.kind,
                        chain_id: tx.chain_id(),
                        raw_tx: s.raw.clone(),
                        tx_hash: Some(s.tx_hash),
                        signature: s.signature.as_bytes(),
                        safe_tx_hash: None,
                    },
                    nonces: vec![NonceRecord::Account {
                        chain_id: tx.chain_id(),
                        account: from,
                        nonce: tx.nonce(),
                        signing_hash: s.signing_hash,
                        raw: s.raw,
                    }],
                    velocity: rows,
                    spend,
                    totals,
                    repeated: false,
                })
            }
        }
    }

    /// A Safe signature: registered Safe and owner account
    /// (`safe-unregistered`), `check_safe_tx`, the SafeTx hash twice, the
    /// Safe-nonce history (`safe-nonce-reuse`), velocity, sign.
    fn safe_signature(
        &self,
        ctx: &CheckContext<'_>,
        req: &EthSignRequest,
        now: TimeMs,
    ) -> Result<KindDecision, Stop> {
        let (secp, keys, view) = (self.secp, self.keys, self.view);
        let stx = SafeTx::decode(&req.safe_tx)?;
        let safe = find_safe(view.safes, &stx, req.account)?;
        let spend = check_safe_tx(ctx, safe, &stx)?;
        let (hash, _) = safe_hashes(safe, &stx)?;
        let state = classify_safe(view.history, safe, stx.nonce, hash)?;
        let mut record = true;
        let (signature, totals, rows, repeated) = match state {
            NonceState::Same(prior) => match prior.signature {
                Some(sig) => {
                    let s = alloy_primitives::Signature::from_raw_array(&sig)
                        .map_err(|_| EthError::HashMismatch)?;
                    verify_recovers(secp, &s, &hash, safe.node_address)?;
                    record = false;
                    (sig, VelocityTotals::default(), vec![], true)
                }
                // Approved on chain before (approveHash): counted then.
                None => {
                    let (h, sig) = sign_safe_tx(secp, keys, safe, &stx)?;
                    if h != hash {
                        return Err(EthError::HashMismatch.into());
                    }
                    (sig, VelocityTotals::default(), vec![], true)
                }
            },
            NonceState::Fresh => {
                let totals = view.velocity.check(ctx.rules, &spend, now)?;
                let rows = view.velocity.rows(&spend, now)?;
                let (h, sig) = sign_safe_tx(secp, keys, safe, &stx)?;
                if h != hash {
                    return Err(EthError::HashMismatch.into());
                }
                (sig, totals, rows, false)
            }
        };
        Ok(KindDecision {
            result: EthResult {
                kind: req.kind,
                chain_id: stx.chain_id,
                raw_tx: vec![],
                tx_hash: None,
                signature,
                safe_tx_hash: Some(hash),
            },
            nonces: if record {
                vec![NonceRecord::Safe {
                    domain_chain: safe.domain_chain(),
                    safe: safe.address(),
                    nonce: stx.nonce,
                    safe_tx_hash: hash,
                    signature: Some(signature),
                }]
            } else {
                vec![]
            },
            velocity: rows,
            spend,
            totals,
            repeated,
        })
    }

    /// A Safe approveHash: the SafeTx's checks, then
    /// `check_approve_hash_tx` for the owner's transaction, the caps over
    /// both, the account's nonce history, velocity over what is new, sign.
    fn safe_approve_hash(
        &self,
        ctx: &CheckContext<'_>,
        req: &EthSignRequest,
        now: TimeMs,
    ) -> Result<KindDecision, Stop> {
        let (secp, keys, view) = (self.secp, self.keys, self.view);
        let stx = SafeTx::decode(&req.safe_tx)?;
        let safe = find_safe(view.safes, &stx, req.account)?;
        let tx = UnsignedTx::decode(&req.transaction)?;
        let safe_spend = check_safe_tx(ctx, safe, &stx)?;
        let (hash, _) = safe_hashes(safe, &stx)?;
        let fee_spend = check_approve_hash_tx(ctx, &tx, safe, &hash)?;
        let mut spend = safe_spend.clone();
        spend.merge(&fee_spend)?;
        check_caps(ctx.rules, &spend)?;
        let safe_state = classify_safe(view.history, safe, stx.nonce, hash)?;
        let owner = safe.node_address;
        let tx_state = classify_tx(
            view.history,
            tx.chain_id(),
            owner,
            tx.nonce(),
            tx.signature_hash(),
        )?;
        let mut nonces = Vec::new();
        if matches!(safe_state, NonceState::Fresh) {
            nonces.push(NonceRecord::Safe {
                domain_chain: safe.domain_chain(),
                safe: safe.address(),
                nonce: stx.nonce,
                safe_tx_hash: hash,
                signature: None,
            });
        }
        let (raw, tx_hash, signature, totals, rows, repeated) = match tx_state {
            NonceState::Same(prior) => {
                let (h, sig) = stored_tx(secp, &prior.raw, &tx, owner)?;
                (prior.raw, h, sig, VelocityTotals::default(), vec![], true)
            }
            NonceState::Fresh => {
                // What is new: the fee, and the Safe's spend unless the
                // same SafeTx was approved before.
                let mut counted = fee_spend.clone();
                if matches!(safe_state, NonceState::Fresh) {
                    counted.merge(&safe_spend)?;
                }
                let totals = view.velocity.check(ctx.rules, &counted, now)?;
                let rows = view.velocity.rows(&counted, now)?;
                let s = sign_transaction(secp, keys, req.account, &tx, &req.transaction, owner)?;
                nonces.push(NonceRecord::Account {
                    chain_id: tx.chain_id(),
                    account: owner,
                    nonce: tx.nonce(),
                    signing_hash: s.signing_hash,
                    raw: s.raw.clone(),
                });
                (
                    s.raw,
                    s.tx_hash,
                    s.signature.as_bytes(),
                    totals,
                    rows,
                    false,
                )
            }
        };
        Ok(KindDecision {
            result: EthResult {
                kind: req.kind,
                chain_id: tx.chain_id(),
                raw_tx: raw,
                tx_hash: Some(tx_hash),
                signature,
                safe_tx_hash: Some(hash),
            },
            nonces,
            velocity: rows,
            spend,
            totals,
            repeated,
        })
    }
}

impl<C, H, K> SignChain for Ethereum<'_, C, H, K>
where
    C: Verification,
    H: EthHistory + ?Sized,
    K: EthKeyStore + ?Sized,
{
    type Body = EthSignRequest;
    type Checked = CheckedEthRequest;
    type Approved = EthApproved;

    fn decode_body(&self, body: &[u8]) -> Result<EthSignRequest, RequestError> {
        EthSignRequest::decode(body)
    }

    fn request_id(body: &EthSignRequest) -> [u8; 32] {
        body.request_id
    }

    fn clock_floor_s(&self) -> u32 {
        self.view.chain_mtp_s
    }

    fn envelope_refusal(&self, e: RequestError) -> Refusal {
        envelope_refusal(e)
    }

    fn check_envelope(
        &self,
        signed: &SignedRequest,
        body: EthSignRequest,
        _hash: [u8; 32],
        now: TimeMs,
    ) -> Result<CheckedEthRequest, RequestError> {
        signed.check_eth_decoded(
            self.secp,
            body,
            self.view.node_id,
            &self.view.policy.document.approvers,
            now,
        )
    }

    fn decide(
        &self,
        checked: &CheckedEthRequest,
        now: TimeMs,
    ) -> Result<Decided<EthApproved>, Stop> {
        let rules = self.eth_rules()?;
        let admin_command_seq = self.admin_authority(checked, now)?;
        let ctx = CheckContext {
            rules,
            authority: if admin_command_seq.is_some() {
                CheckAuthority::AdminQuorum
            } else {
                CheckAuthority::Ground
            },
        };
        let req = &checked.request;
        let d = match req.kind {
            EthKind::Transaction => self.transaction(&ctx, req, now)?,
            EthKind::SafeSignature => self.safe_signature(&ctx, req, now)?,
            EthKind::SafeApproveHash => self.safe_approve_hash(&ctx, req, now)?,
        };
        let eth = counters(&d.spend, &d.totals).map_err(|e| Stop {
            refusal: e.into(),
            remember_id: true,
        })?;
        let facts = AuditFacts {
            txid: d.result.tx_hash.or(d.result.safe_tx_hash).map(|x| x.0),
            signatures: vec![d.result.signature.to_vec()],
            eth: Some(eth),
            ..AuditFacts::default()
        };
        Ok(Decided {
            approved: EthApproved {
                result_encoded: d.result.encode(),
                result: d.result,
                nonces: d.nonces,
                velocity: d.velocity,
                admin_command_seq,
                spend: d.spend,
                repeated: d.repeated,
            },
            facts,
        })
    }
}

/// Evaluates one uplinked Ethereum sign request (module docs). `seen`
/// looks up the stored request hash of a request id. `Err` only when the
/// receipt key cannot sign (a signer fault: raise an event, persist
/// nothing).
///
/// # Errors
/// [`SignerError`] from the receipt signature.
pub fn evaluate<C, H, K>(
    secp: &Secp256k1<C>,
    view: &NodeView<'_, H>,
    keys: &K,
    request: &[u8],
    authority: Authority<'_>,
    seen: &dyn Fn(&[u8; 32]) -> Option<[u8; 32]>,
    now: TimeMs,
) -> Result<Outcome, SignerError>
where
    C: Verification,
    H: EthHistory + ?Sized,
    K: EthKeyStore + ?Sized,
{
    let signed = SignedRequest::decode(request);
    evaluate_signed(secp, view, keys, signed, authority, seen, now)
}

/// [`evaluate`] for an envelope the caller decoded already (the node
/// decodes it once, to route it by its body format).
///
/// # Errors
/// [`SignerError`] from the receipt signature.
pub fn evaluate_signed<C, H, K>(
    secp: &Secp256k1<C>,
    view: &NodeView<'_, H>,
    keys: &K,
    signed: Result<SignedRequest, RequestError>,
    authority: Authority<'_>,
    seen: &dyn Fn(&[u8; 32]) -> Option<[u8; 32]>,
    now: TimeMs,
) -> Result<Outcome, SignerError>
where
    C: Verification,
    H: EthHistory + ?Sized,
    K: EthKeyStore + ?Sized,
{
    let common = Common {
        policy: view.policy,
        clock: view.clock,
        audit: view.audit,
    };
    let chain = Ethereum {
        secp,
        view,
        keys,
        authority,
    };
    pipeline::evaluate(&chain, &common, keys, signed, seen, now)
}
