//! The policy room (PUS 131 on APID `POLICY`): proposing, vetoing and
//! inspecting the quorum-signed policy, registering and retiring wallets
//! and Safes, fetching the audit log and resyncing the clock guard. Every
//! change is authorised by the administrator quorum at execution, against
//! the node's state; what the node itself does with a policy (loading it,
//! activating a due change, the administrator set, refusal events) is
//! `node/policy.rs`. Must never change the policy, a wallet or the clock
//! guard without the quorum.

use spacenode_btc::wallet::AllowMatcher;
use spacenode_policy::Rule;
use spacenode_policy::anchor::recover;
use spacenode_policy::change::{ChangeError, PolicyState, Transition};
use spacenode_policy::clock::{ClockAnchor, ClockGuard};
use spacenode_policy::command::{Command, CommandError, SignedCommand, kind};
use spacenode_policy::document::SignedPolicy;
use spacenode_policy::units::TimeMs;
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{
    AuditCheckpoint, AuditRecord, AuditRequest, MAX_AUDIT_PER_REQUEST, Payload, PolicyStatus,
};
use spacenode_wire::msg::{EventId, FailureNotice, MsgError};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

use super::verify::Reply;
use super::{TmBody, bad_data, no_data, payload, signed_command, store_failure, unknown_service};
use crate::node::Node;
use crate::node::policy::no_policy;

/// A policy request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[131,1]: a signed policy (authorised at execution).
    Propose(Payload),
    /// TC[131,2]: a veto command.
    Veto(SignedCommand),
    /// TC[131,3].
    Status,
    /// TC[131,5]: a wallet registration command.
    RegisterWallet(Payload),
    /// TC[131,6].
    Audit(AuditRequest),
    /// TC[131,8]: 0 active, 1 pending.
    Document(u8),
    /// TC[131,10]: a clock resync command.
    ClockResync(SignedCommand),
    /// TC[131,11]: register a Safe (payload reference to a signed
    /// `REGISTER_SAFE` command).
    RegisterSafe(Payload),
    /// TC[131,12]: a `RETIRE_WALLET` or `RETIRE_SAFE` command.
    Retire(SignedCommand),
}

/// Acceptance of a TC on APID `POLICY`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    let data = tc.app_data.as_slice();
    match (tc.service, tc.subtype) {
        (service::POLICY, subtype::POLICY_PROPOSE) => payload(data).map(Request::Propose),
        (service::POLICY, subtype::POLICY_VETO) => signed_command(data).map(Request::Veto),
        (service::POLICY, subtype::POLICY_CLOCK_RESYNC) => {
            signed_command(data).map(Request::ClockResync)
        }
        (service::POLICY, subtype::POLICY_RETIRE) => signed_command(data).map(Request::Retire),
        (service::POLICY, subtype::POLICY_STATUS_REQUEST) => no_data(tc).map(|()| Request::Status),
        (service::POLICY, subtype::POLICY_REGISTER_WALLET) => {
            payload(data).map(Request::RegisterWallet)
        }
        (service::POLICY, subtype::POLICY_AUDIT_REQUEST) => AuditRequest::decode(data)
            .map(Request::Audit)
            .map_err(|e| bad_data(&e)),
        (service::POLICY, subtype::POLICY_DOCUMENT_REQUEST) => match data {
            [which @ (0 | 1)] => Ok(Request::Document(*which)),
            _ => Err(bad_data(&MsgError::Invalid {
                field: "document (0 active, 1 pending)",
                value: data.first().copied().unwrap_or(0xFF).into(),
            })),
        },
        (service::POLICY, subtype::POLICY_REGISTER_SAFE) => {
            payload(data).map(Request::RegisterSafe)
        }
        _ => Err(unknown_service()),
    }
}

/// Changes that spend a command sequence or a policy version.
pub(crate) fn one_shot(req: &Request) -> bool {
    matches!(
        req,
        Request::Propose(_)
            | Request::Veto(_)
            | Request::RegisterWallet(_)
            | Request::ClockResync(_)
            | Request::Retire(_)
            | Request::RegisterSafe(_)
    )
}

/// A proposal or veto answered again reports the policy status it owes.
pub(crate) fn answer_again(
    node: &mut Node,
    cx: &mut Reply,
    req: &Request,
) -> Result<(), FailureNotice> {
    match req {
        Request::Propose(_) | Request::Veto(_) => policy_status(node, cx),
        _ => Ok(()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Propose(p) => policy_propose(node, cx, p),
        Request::Veto(cmd) => policy_veto(node, cx, &cmd),
        Request::Status => policy_status(node, cx),
        Request::RegisterWallet(p) => register_wallet(node, cx, p),
        Request::Audit(req) => audit_fetch(node, cx, req),
        Request::Document(which) => policy_document(node, cx, which),
        Request::ClockResync(cmd) => clock_resync(node, cx, &cmd),
        // The Ethereum part of the sign pipeline registers Safes.
        Request::RegisterSafe(p) => node.register_safe(p, cx.now, &mut cx.out),
        Request::Retire(cmd) => retire(node, cx, &cmd),
    }
}

/// TC[131,1]: the first policy (bootstrap) or a proposed change.
fn policy_propose(node: &mut Node, cx: &mut Reply, payload: Payload) -> Result<(), FailureNotice> {
    let now = cx.now;
    let out = &mut cx.out;
    let bytes = node.resolve_payload(payload)?;
    // Trusted time (`node::clock`): a clock stepped back cannot
    // schedule the activation in the past.
    let t = node.trusted_now(now);
    let signed = match SignedPolicy::decode(&bytes) {
        Ok(s) => s,
        Err(e) => {
            return Err(node.admin_refused(
                e.code(),
                Rule::PolicyEncoding,
                &e.to_string(),
                now,
                out,
            ));
        }
    };
    let next = match &node.policy {
        // A node that anchored a policy before (its database was lost)
        // recovers only through the anchored administrators; the
        // config's set bootstraps only a node that never had a policy.
        // An unreadable anchor refuses (fail closed).
        None => match node.read_anchor() {
            Err((code, detail)) => {
                let detail = format!("policy anchor unreadable, bootstrap refused: {detail}");
                return Err(node.admin_refused(code, Rule::PolicyQuorum, &detail, now, out));
            }
            Ok(Some(anchor)) => match recover(&node.secp, &anchor, &signed, t) {
                Ok(s) => {
                    tracing::warn!(
                        anchored = anchor.version,
                        version = s.active.document.version,
                        "recovery: first policy after a database loss, signed by the anchored administrators"
                    );
                    s
                }
                Err(e) => {
                    return Err(node.admin_refused(e.code(), e.rule(), &e.to_string(), now, out));
                }
            },
            Ok(None) => {
                let admins = match node.admin_set() {
                    Ok(a) => a,
                    Err(e) => return Err(node.command_refused(&e, now, out)),
                };
                match PolicyState::bootstrap(&node.secp, &admins, &signed, t) {
                    Ok(s) => s,
                    Err(e) => return Err(node.change_refused(&e, now, out)),
                }
            }
        },
        Some(current) => {
            let mut next = current.clone();
            match next.propose(&node.secp, &signed, t) {
                Ok(_) => next,
                Err(e) => return Err(node.change_refused(&e, now, out)),
            }
        }
    };
    let doc = next
        .pending
        .as_ref()
        .map_or(&next.active.document, |p| &p.document);
    if doc.network != node.cfg.chain.network.network() {
        let e = ChangeError::NetworkChange;
        let detail = format!(
            "policy for {} but the node follows {}",
            doc.network,
            node.cfg.chain.network.network()
        );
        return Err(node.admin_refused(e.code(), e.rule(), &detail, now, out));
    }
    if let Err(e) = AllowMatcher::new(&doc.rules) {
        return Err(node.admin_refused(
            e.code(),
            Rule::PolicyEncoding,
            &format!("allowlist: {e}"),
            now,
            out,
        ));
    }
    if node.policy.is_none() {
        tracing::warn!(
            version = next.active.document.version,
            "bootstrap: first policy signed by the configured administrators"
        );
        node.activate_policy(next, now, out)?;
    } else {
        let (version, activates_at) = next
            .pending
            .as_ref()
            .map_or((0, 0), |p| (p.document.version, p.activates_at.0));
        node.store
            .set_policy_state(&next.encode(), now.unix_ms, None, None)
            .map_err(|e| store_failure(&e))?;
        node.policy = Some(next);
        tracing::warn!(version, activates_at, "policy change pending");
        let mut aux = version.to_be_bytes().to_vec();
        aux.extend_from_slice(&activates_at.to_be_bytes());
        out.extend(node.raise(EventId::POLICY_PENDING, aux, now));
        node.poll_policy(now, out);
    }
    policy_status(node, cx)
}

/// TC[131,2]: vetoes the pending change.
fn policy_veto(node: &mut Node, cx: &mut Reply, cmd: &SignedCommand) -> Result<(), FailureNotice> {
    let now = cx.now;
    let out = &mut cx.out;
    let Some(current) = &node.policy else {
        return Err(no_policy());
    };
    let executed = node
        .store
        .admin_executed(kind::VETO_POLICY)
        .map_err(|e| store_failure(&e))?;
    let mut next = current.clone();
    // The raw wall clock, not the trusted time: a veto only cancels the
    // pending change it names (safety-increasing), and after a reboot
    // gap the trusted time lags real time, which must not make the
    // quorum's veto "not yet valid" (`docs/policy.md`, "The clock").
    let t = match next.veto(
        &node.secp,
        cmd,
        node.cfg.node_id,
        executed,
        TimeMs(now.unix_ms),
    ) {
        Ok(t) => t,
        Err(e) => return Err(node.change_refused(&e, now, out)),
    };
    let seq = Command::decode(&cmd.command).map_or(executed.last_of_kind, |c| c.seq);
    node.store
        .set_policy_state(&next.encode(), now.unix_ms, None, Some(seq))
        .map_err(|e| store_failure(&e))?;
    node.policy = Some(next);
    if let Transition::Vetoed { version, .. } = t {
        tracing::warn!(version, seq, "pending policy change vetoed");
        out.extend(node.raise(EventId::POLICY_VETOED, version.to_be_bytes().to_vec(), now));
    }
    policy_status(node, cx)
}

/// TC[131,5]: registers a wallet.
fn register_wallet(node: &mut Node, cx: &mut Reply, payload: Payload) -> Result<(), FailureNotice> {
    let now = cx.now;
    let out = &mut cx.out;
    let bytes = node.resolve_payload(payload)?;
    let signed = match SignedCommand::decode(&bytes) {
        Ok(s) => s,
        Err(e) => return Err(node.command_refused(&e, now, out)),
    };
    let cmd = node.authorize_command(&signed, kind::REGISTER_WALLET, now, out)?;
    let wallet = match node.wallet_from_registration(&cmd.body)? {
        Ok(w) => w,
        Err(e) => {
            return Err(node.admin_refused(
                e.code(),
                Rule::WalletRegistration,
                &e.to_string(),
                now,
                out,
            ));
        }
    };
    node.store
        .register_wallet(&wallet.id, &cmd.body, now.unix_ms, cmd.seq)
        .map_err(|e| store_failure(&e))?;
    tracing::warn!(
        wallet = %hex::encode(wallet.id),
        name = %wallet.name,
        seq = cmd.seq,
        "wallet registered"
    );
    let id = wallet.id;
    node.wallets.retain(|w| w.id != id);
    node.wallets.push(wallet);
    out.extend(node.raise(EventId::WALLET_REGISTERED, id.to_vec(), now));
    Ok(())
}

/// TC[131,10]: accepts a node time the clock guard refused as a jump
/// and re-anchors the monotonic bound there: authenticated ground time
/// is the only thing that can count a reboot gap (`docs/policy.md`,
/// "The clock"). Its validity window is checked against the raw wall
/// clock, because it is the command that repairs a clock the trusted
/// time no longer follows; it can only move time forward, to the
/// time the quorum signed.
fn clock_resync(
    node: &mut Node,
    cx: &mut Reply,
    signed: &SignedCommand,
) -> Result<(), FailureNotice> {
    let now = cx.now;
    let out = &mut cx.out;
    let cmd = node.authorize_command_at(signed, kind::CLOCK_RESYNC, now.unix_ms, now, out)?;
    let Ok(body) = <[u8; 8]>::try_from(cmd.body.as_slice()) else {
        let e = CommandError::Malformed("clock resync body is a time i64");
        return Err(node.command_refused(&e, now, out));
    };
    let last = node
        .store
        .clock_last_accepted()
        .map_err(|e| store_failure(&e))?;
    let mut guard = ClockGuard {
        last_accepted: last.map(TimeMs),
        ceiling: None,
    };
    guard.resync(TimeMs(i64::from_be_bytes(body)));
    let accepted = guard.last_accepted.unwrap_or(TimeMs(0));
    let anchor = ClockAnchor::fresh(now.boot, accepted);
    node.store
        .resync_clock(accepted.0, &anchor.encode(), cmd.seq)
        .map_err(|e| store_failure(&e))?;
    node.clock_anchor = anchor;
    tracing::warn!(
        accepted = accepted.0,
        seq = cmd.seq,
        "clock guard resynced and re-anchored"
    );
    Ok(())
}

/// TC[131,12]: retires a registered wallet (`RETIRE_WALLET`, body: the
/// wallet id) or Safe (`RETIRE_SAFE`, body: chain id u64 BE | address
/// 20): nothing is signed for it any more; its spends, signed nonces
/// and audit entries stay. Registering it again takes a new command.
fn retire(node: &mut Node, cx: &mut Reply, signed: &SignedCommand) -> Result<(), FailureNotice> {
    let now = cx.now;
    let out = &mut cx.out;
    let claimed = Command::decode(&signed.command).map_or(kind::RETIRE_WALLET, |c| c.kind);
    let expected = if claimed == kind::RETIRE_SAFE {
        kind::RETIRE_SAFE
    } else {
        kind::RETIRE_WALLET
    };
    let cmd = node.authorize_command(signed, expected, now, out)?;
    if cmd.kind == kind::RETIRE_WALLET {
        let Ok(id) = <[u8; 32]>::try_from(cmd.body.as_slice()) else {
            let e = CommandError::Malformed("a wallet retirement's body is the wallet id");
            return Err(node.command_refused(&e, now, out));
        };
        if !node.wallets.iter().any(|w| w.id == id) {
            let e = ChangeError::NotRegistered {
                what: "wallet",
                id: hex::encode(id),
            };
            return Err(node.change_refused(&e, now, out));
        }
        node.store
            .retire_wallet(&id, cmd.seq)
            .map_err(|e| store_failure(&e))?;
        node.wallets.retain(|w| w.id != id);
        tracing::warn!(wallet = %hex::encode(id), seq = cmd.seq, "wallet retired");
    } else {
        let target = cmd
            .body
            .split_first_chunk::<8>()
            .and_then(|(chain, address)| {
                Some((
                    u64::from_be_bytes(*chain),
                    <[u8; 20]>::try_from(address).ok()?,
                ))
            });
        let Some((chain_id, address)) = target else {
            let e = CommandError::Malformed(
                "a Safe retirement's body is chain id u64 | Safe address 20",
            );
            return Err(node.command_refused(&e, now, out));
        };
        let is_it =
            |s: &spacenode_eth::safe::Safe| s.chain_id() == chain_id && s.address().0.0 == address;
        if !node.safes.iter().any(is_it) {
            let e = ChangeError::NotRegistered {
                what: "Safe",
                id: format!("{chain_id}:0x{}", hex::encode(address)),
            };
            return Err(node.change_refused(&e, now, out));
        }
        node.store
            .retire_safe(chain_id, &address, cmd.seq)
            .map_err(|e| store_failure(&e))?;
        node.safes.retain(|s| !is_it(s));
        tracing::warn!(chain_id, safe = %hex::encode(address), seq = cmd.seq, "Safe retired");
    }
    out.extend(node.raise(EventId::RETIRED, cmd.body.clone(), now));
    Ok(())
}

/// TC[131,3] (and the reply to proposals and vetoes).
fn policy_status(node: &mut Node, cx: &mut Reply) -> Result<(), FailureNotice> {
    let now = cx.now;
    let dest_id = cx.dest_id;
    let out = &mut cx.out;
    node.poll_policy(now, out);
    let (next_seq, last_hash) = node.store.audit_head().map_err(|e| store_failure(&e))?;
    let mut st = PolicyStatus {
        wallets: u16::try_from(node.wallets.len()).unwrap_or(u16::MAX),
        safes: u16::try_from(node.safes.len()).unwrap_or(u16::MAX),
        audit_next_seq: next_seq,
        audit_last_hash: last_hash,
        admin_seq: node.store.admin_seq().map_err(|e| store_failure(&e))?,
        clock_last_accepted_ms: node
            .store
            .clock_last_accepted()
            .map_err(|e| store_failure(&e))?
            .unwrap_or(0),
        ..PolicyStatus::default()
    };
    if let Some(p) = &node.policy {
        st.active = true;
        st.active_version = p.active.document.version;
        st.active_hash = p.active.hash;
        st.activated_at_ms = p.active.activated_at.0;
        st.highest_version = p.highest_version;
        if let Some(q) = &p.pending {
            st.pending = true;
            st.pending_version = q.document.version;
            st.pending_hash = q.hash;
            st.activates_at_ms = q.activates_at.0;
        }
    }
    let body = TmBody {
        apid: apid::POLICY,
        service: service::POLICY,
        subtype: subtype::POLICY_STATUS,
        dest_id,
        data: st.encode(),
    };
    out.extend(node.emit(&body, now));
    Ok(())
}

/// TC[131,8]: the active (0) or pending (1) document, in fragments.
fn policy_document(node: &mut Node, cx: &mut Reply, which: u8) -> Result<(), FailureNotice> {
    let now = cx.now;
    let dest_id = cx.dest_id;
    let out = &mut cx.out;
    let bytes = match (&node.policy, which) {
        (None, _) => return Err(no_policy()),
        (Some(p), 0) => p.active.bytes.clone(),
        (Some(p), _) => match &p.pending {
            Some(q) => q.bytes.clone(),
            None => {
                let e = ChangeError::NoPending;
                return Err(FailureNotice {
                    code: ReasonCode(e.code()),
                    data: e.to_string().into_bytes(),
                });
            }
        },
    };
    node.emit_fragments(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_DOCUMENT,
        0,
        &bytes,
        dest_id,
        now,
        out,
    )
}

/// TC[131,6]: audit entries with their receipts.
fn audit_fetch(node: &mut Node, cx: &mut Reply, req: AuditRequest) -> Result<(), FailureNotice> {
    let now = cx.now;
    let dest_id = cx.dest_id;
    let out = &mut cx.out;
    // Entries archived behind the checkpoint are gone: send the signed
    // checkpoint first, then the kept entries after it.
    let mut from = req.from_seq;
    if let Some((end_seq, chain_hash, signature)) = node
        .store
        .audit_checkpoint()
        .map_err(|e| store_failure(&e))?
        && from <= end_seq
    {
        let body = TmBody {
            apid: apid::POLICY,
            service: service::POLICY,
            subtype: subtype::POLICY_AUDIT_CHECKPOINT,
            dest_id,
            data: AuditCheckpoint {
                end_seq,
                chain_hash,
                signature,
            }
            .encode(),
        };
        out.extend(node.emit(&body, now));
        from = end_seq.saturating_add(1);
    }
    let rows = node
        .store
        .audit_entries(from, req.max.min(MAX_AUDIT_PER_REQUEST))
        .map_err(|e| store_failure(&e))?;
    for row in rows {
        let record = AuditRecord {
            receipt: row.receipt,
            entry: row.entry,
        };
        node.emit_fragments(
            apid::POLICY,
            service::POLICY,
            subtype::POLICY_AUDIT_ENTRY,
            row.seq,
            &record.encode(),
            dest_id,
            now,
            out,
        )?;
    }
    Ok(())
}
