//! The ground side of the policy (PUS 131) and signing (PUS 132) services:
//! documents go inline or through an upload ([`super::files`]), replies are
//! reassembled from fragments, refusals come back with their reason code,
//! rule tag and the node's audit record.
//!
//! Decisions are the node's; this module only carries documents and checks
//! what comes back (receipts against the pinned receipt key, signatures
//! against the PSBT when finalising). It must never treat a lost reply as
//! a refusal: a request is repeated (the node answers a repeated sign
//! request from its stored result).

use bitcoin::secp256k1::{Secp256k1, XOnlyPublicKey};
use spacenode_policy::audit::{
    AuditEntry, AuditError, Checkpoint, verify_chain, verify_from_checkpoint, verify_receipt,
};
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{
    AuditCheckpoint, AuditRecord, AuditRequest, Fragment, MAX_INLINE, Payload, PolicyStatus,
    SignResult, refusal_rule,
};
use spacenode_wire::msg::Stage;
use spacenode_wire::pus::Tm;
use spacenode_wire::services::{apid, service, subtype};

use super::client::{Exchange, GroundError, Link, RetryPolicy};
use super::files::{self, UploadError, UploadEvent};

/// Errors of the co-signing commands.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// Link failure or refusal.
    #[error(transparent)]
    Link(#[from] GroundError),
    /// Upload failure.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A reply was lost on every attempt, or does not decode.
    #[error("{0}")]
    Reply(String),
    /// The audit log does not verify.
    #[error("audit log REJECTED: {0}")]
    Audit(String),
    /// The chain status query failed.
    #[error(transparent)]
    Chain(#[from] Box<crate::chain::ChainCmdError>),
}

/// A refusal as the node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Stage (acceptance or completion).
    pub stage: Stage,
    /// Reason code.
    pub code: ReasonCode,
    /// The rule tag, when a policy rule refused.
    pub rule: Option<String>,
    /// The node's text.
    pub detail: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            super::display::reason(self.code),
            if self.detail.is_empty() {
                String::new()
            } else {
                format!("— {}", self.detail)
            }
        )
    }
}

pub(crate) fn refused(stage: Stage, f: &spacenode_wire::msg::FailureNotice) -> Refused {
    Refused {
        stage,
        code: f.code,
        rule: refusal_rule(&f.data).map(str::to_string),
        detail: String::from_utf8_lossy(&f.data).into_owned(),
    }
}

/// The retry policy for requests the node evaluates and commits before it
/// answers (a sign request, a policy, a wallet): waits at least 400 ms
/// before the first repeat, so a slow decision is not asked twice. The
/// functions of this module use the policy they are given; the CLI passes
/// this one.
#[must_use]
pub fn evaluation_policy(policy: RetryPolicy) -> RetryPolicy {
    use std::time::Duration;
    RetryPolicy {
        first_timeout: policy.first_timeout.max(Duration::from_millis(400)),
        min_timeout: policy.min_timeout.max(Duration::from_millis(400)),
        max_timeout: policy.max_timeout.max(Duration::from_millis(1600)),
        ..policy
    }
}

/// Sends `bytes` inline when they fit one TC, else uploads them.
///
/// # Errors
/// [`CosignError`].
pub fn send_payload(
    link: &mut Link,
    policy: RetryPolicy,
    bytes: &[u8],
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<Payload, CosignError> {
    if bytes.len() <= MAX_INLINE {
        return Ok(Payload::Inline(bytes.to_vec()));
    }
    Ok(Payload::Upload(files::upload(
        link, policy, bytes, on_event,
    )?))
}

pub(crate) fn fragments(replies: &[Tm], sub: u8) -> Vec<Fragment> {
    replies
        .iter()
        .filter(|t| t.subtype == sub)
        .filter_map(|t| Fragment::decode(&t.data).ok())
        .collect()
}

/// The node's policy status.
///
/// # Errors
/// [`CosignError`].
pub fn policy_status(link: &mut Link, policy: RetryPolicy) -> Result<PolicyStatus, CosignError> {
    let x = link.query(
        (
            apid::POLICY,
            service::POLICY,
            subtype::POLICY_STATUS_REQUEST,
        ),
        &[],
        subtype::POLICY_STATUS,
        policy,
    )?;
    let tm = last_reply(&x, subtype::POLICY_STATUS)?;
    PolicyStatus::decode(&tm.data).map_err(|e| CosignError::Reply(format!("policy status: {e}")))
}

/// The last reply of `sub` in an exchange from [`Link::query`] (which
/// guarantees one).
fn last_reply(x: &Exchange, sub: u8) -> Result<&Tm, CosignError> {
    x.replies
        .iter()
        .rev()
        .find(|t| t.subtype == sub)
        .ok_or_else(|| CosignError::Reply(format!("no reply of subtype {sub}")))
}

/// The node's active (`pending = false`) or pending policy document bytes,
/// `None` if there is none.
///
/// # Errors
/// [`CosignError`].
pub fn policy_document(
    link: &mut Link,
    policy: RetryPolicy,
    pending: bool,
) -> Result<Option<Vec<u8>>, CosignError> {
    for _ in 0..3 {
        let tc = link.new_tc(
            apid::POLICY,
            service::POLICY,
            subtype::POLICY_DOCUMENT_REQUEST,
            vec![u8::from(pending)],
        );
        let (x, failure) = link.request_keeping_replies(&tc, policy)?;
        if let Some((_, f)) = failure {
            if f.code == ReasonCode::NO_POLICY || f.code == ReasonCode(0x0562) {
                return Ok(None);
            }
            return Err(CosignError::Reply(format!(
                "policy document refused: {}",
                refused(Stage::Completion, &f)
            )));
        }
        if let Some((_, bytes)) =
            Fragment::reassemble(&fragments(&x.replies, subtype::POLICY_DOCUMENT)).pop()
        {
            return Ok(Some(bytes));
        }
    }
    Err(CosignError::Reply(
        "the policy document was lost three times".into(),
    ))
}

/// Result of a policy or wallet request.
#[derive(Debug, Clone)]
pub enum Answer<T> {
    /// Done.
    Ok(T),
    /// Refused by the node.
    Refused(Refused),
}

/// Proposes a signed policy (TC[131,1]); the node answers with its status.
///
/// # Errors
/// [`CosignError`].
pub fn propose(
    link: &mut Link,
    policy: RetryPolicy,
    signed: &[u8],
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<Answer<Option<PolicyStatus>>, CosignError> {
    let payload = send_payload(link, policy, signed, on_event)?;
    let tc = link.new_tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_PROPOSE,
        payload.encode(),
    );
    let (x, failure) = link.request_keeping_replies(&tc, policy)?;
    if let Some((stage, f)) = failure {
        return Ok(Answer::Refused(refused(stage, &f)));
    }
    Ok(Answer::Ok(
        x.replies
            .iter()
            .rev()
            .find(|t| t.subtype == subtype::POLICY_STATUS)
            .and_then(|t| PolicyStatus::decode(&t.data).ok()),
    ))
}

/// Sends an administrator command to the policy service (`sub`: veto,
/// register wallet, clock resync).
///
/// # Errors
/// [`CosignError`].
pub fn admin_command(
    link: &mut Link,
    policy: RetryPolicy,
    sub: u8,
    command: &[u8],
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<Answer<()>, CosignError> {
    let data = if sub == subtype::POLICY_REGISTER_WALLET {
        send_payload(link, policy, command, on_event)?.encode()
    } else {
        command.to_vec()
    };
    let tc = link.new_tc(apid::POLICY, service::POLICY, sub, data);
    let (_, failure) = link.request_keeping_replies(&tc, policy)?;
    Ok(match failure {
        Some((stage, f)) => Answer::Refused(refused(stage, &f)),
        None => Answer::Ok(()),
    })
}

/// An audit entry as downlinked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// The decoded entry.
    pub entry: AuditEntry,
    /// Its receipt.
    pub receipt: [u8; 64],
}

pub(crate) fn audited(bytes: &[u8]) -> Result<Audited, CosignError> {
    let r = AuditRecord::decode(bytes).map_err(|e| CosignError::Reply(e.to_string()))?;
    Ok(Audited {
        entry: AuditEntry::decode(&r.entry)
            .map_err(|e| CosignError::Reply(format!("audit entry: {e}")))?,
        receipt: r.receipt,
    })
}

/// What the node decided on a sign request.
#[derive(Debug, Clone)]
pub struct SignOutcome {
    /// The partial signatures (approved, or a replay of an approval).
    pub result: Option<SignResult>,
    /// The refusal.
    pub refused: Option<Refused>,
    /// The decision's audit entry and receipt (absent for refusals before
    /// evaluation: safe mode, no policy, a missing upload).
    pub audit: Option<Audited>,
    /// TCs it took (a lost reply is repeated; the node answers a repeat
    /// from its stored result).
    pub exchanges: u32,
    /// Whether the request travelled as an upload.
    pub uploaded: bool,
}

/// The request id of a signed request envelope (Bitcoin or Ethereum
/// body), if it decodes.
#[must_use]
pub fn request_id_of(request: &[u8]) -> Option<[u8; 32]> {
    use spacenode_policy::request::{EthSignRequest, SignRequest, SignedRequest};
    let signed = SignedRequest::decode(request).ok()?;
    SignRequest::decode(&signed.body)
        .map(|r| r.request_id)
        .or_else(|_| EthSignRequest::decode(&signed.body).map(|r| r.request_id))
        .ok()
}

/// The complete replies among `frags` in arrival order: a reply starts at
/// its fragment 0 and runs through `count - 1` (replies of one kind share
/// a key, so a late reply to an earlier request must not be merged with,
/// or taken for, this one's).
#[must_use]
pub fn replies_in_order(frags: &[Fragment]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // (key, count, bytes so far, next index)
    let mut run: Option<(u64, u8, Vec<u8>, u8)> = None;
    for f in frags {
        if f.index == 0 {
            run = Some((f.key, f.count, Vec::new(), 0));
        }
        let mut done = false;
        match run.as_mut() {
            // Duplicates and pieces of another reply are skipped.
            Some((key, count, bytes, next))
                if f.key == *key && f.count == *count && f.index == *next =>
            {
                bytes.extend_from_slice(&f.bytes);
                *next = next.saturating_add(1);
                done = *next == *count;
            }
            _ => {}
        }
        if done && let Some((_, _, bytes, _)) = run.take() {
            out.push(bytes);
        }
    }
    out
}

/// The audit record of the request `id` among the replies (the newest if
/// several), or any (the newest) when `id` is unknown.
///
/// # Errors
/// [`CosignError::Reply`] if the record does not decode.
pub(crate) fn audit_of(
    replies: &[Tm],
    id: Option<[u8; 32]>,
) -> Result<Option<Audited>, CosignError> {
    let mut records = Fragment::reassemble(&fragments(replies, subtype::SIGN_AUDIT_RECORD));
    records.sort_by_key(|(k, _)| *k);
    let mut found = None;
    for (_, b) in records {
        let a = audited(&b)?;
        if id.is_none_or(|id| a.entry.request_id == id) {
            found = Some(a);
        }
    }
    Ok(found)
}

/// Sends a signed sign request (TC[132,1]) and collects the answer. Replies
/// are matched to the request by its id (a late reply to an earlier
/// request that timed out is ignored).
///
/// # Errors
/// [`CosignError`].
pub fn sign(
    link: &mut Link,
    policy: RetryPolicy,
    request: &[u8],
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<SignOutcome, CosignError> {
    let id = request_id_of(request);
    let payload = send_payload(link, policy, request, on_event)?;
    let uploaded = matches!(payload, Payload::Upload(_));
    for exchange in 1..=5u32 {
        let tc = link.new_tc(
            apid::SIGN,
            service::SIGN,
            subtype::SIGN_REQUEST,
            payload.encode(),
        );
        let (x, failure) = link.request_keeping_replies(&tc, policy)?;
        // The audit record of THIS exchange (a repeat adds a replay entry).
        let audit = audit_of(&x.replies, id)?;
        if let Some((stage, f)) = failure {
            return Ok(SignOutcome {
                result: None,
                refused: Some(refused(stage, &f)),
                audit,
                exchanges: exchange,
                uploaded,
            });
        }
        let mut mine = None;
        for bytes in replies_in_order(&fragments(&x.replies, subtype::SIGN_RESULT)) {
            let result = SignResult::decode(&bytes)
                .map_err(|e| CosignError::Reply(format!("sign result: {e}")))?;
            if id.is_none_or(|id| result.request_id == id) {
                mine = Some(result);
            }
        }
        if let Some(result) = mine {
            return Ok(SignOutcome {
                result: Some(result),
                refused: None,
                audit,
                exchanges: exchange,
                uploaded,
            });
        }
    }
    Err(CosignError::Reply(
        "the node approved but its signatures were lost five times; run the same request again"
            .into(),
    ))
}

/// Audit entries asked per TC by [`audit_entries`] (the node sends at
/// most [`spacenode_wire::cosign::MAX_AUDIT_PER_REQUEST`]).
pub const AUDIT_BATCH: u16 = 16;

/// What [`audit_log`] fetched: the signed checkpoint of the node's archived
/// prefix (when the fetch started at or below it) and the entries.
#[derive(Debug, Clone, Default)]
pub struct AuditFetch {
    /// The checkpoint the kept entries continue from.
    pub checkpoint: Option<AuditCheckpoint>,
    /// The entries, in order.
    pub entries: Vec<Audited>,
}

/// Fetches audit entries `from..` up to the node's head.
///
/// # Errors
/// [`CosignError`].
pub fn audit_entries(
    link: &mut Link,
    policy: RetryPolicy,
    from: u64,
    until: u64,
    on_progress: &mut dyn FnMut(u64),
) -> Result<Vec<Audited>, CosignError> {
    audit_log(link, policy, from, until, on_progress).map(|f| f.entries)
}

/// Fetches the audit log `from..` up to the node's head; entries the node
/// archived are replaced by its signed checkpoint (TM[131,13]), and the
/// fetch continues after it.
///
/// # Errors
/// [`CosignError`].
pub fn audit_log(
    link: &mut Link,
    policy: RetryPolicy,
    from: u64,
    until: u64,
    on_progress: &mut dyn FnMut(u64),
) -> Result<AuditFetch, CosignError> {
    // A batch is many TMs before the completion report (16 entries of up
    // to ~600 bytes: about 0.1 s at 921600 Bd, 0.8 s at 115200): wait for
    // it as for an evaluated request, or every repeat asks for the same
    // batch again and the completion never gets through.
    let policy = evaluation_policy(policy);
    let mut out = AuditFetch::default();
    let mut next = from;
    let mut stalls = 0;
    while next < until {
        let max = u16::try_from((until - next).min(u64::from(AUDIT_BATCH))).unwrap_or(AUDIT_BATCH);
        let tc = link.new_tc(
            apid::POLICY,
            service::POLICY,
            subtype::POLICY_AUDIT_REQUEST,
            AuditRequest {
                from_seq: next,
                max,
            }
            .encode(),
        );
        let x = link.request(&tc, policy)?;
        let before = next;
        if let Some(cp) = x
            .replies
            .iter()
            .filter(|t| t.subtype == subtype::POLICY_AUDIT_CHECKPOINT)
            .find_map(|t| AuditCheckpoint::decode(&t.data).ok())
            && cp.end_seq >= next
        {
            next = cp.end_seq.saturating_add(1);
            out.checkpoint = Some(cp);
        }
        let mut got = Fragment::reassemble(&fragments(&x.replies, subtype::POLICY_AUDIT_ENTRY));
        got.sort_by_key(|(k, _)| *k);
        for (seq, bytes) in got {
            if seq != next {
                // A lost fragment: ask again from the gap.
                break;
            }
            out.entries.push(audited(&bytes)?);
            next = next.saturating_add(1);
        }
        on_progress(next);
        if next == before {
            stalls += 1;
            if stalls >= 5 {
                return Err(CosignError::Reply(format!(
                    "audit entry {next} lost five times"
                )));
            }
        } else {
            stalls = 0;
        }
    }
    Ok(out)
}

/// Verifies a run of entries from the log's start: sequence continuity,
/// hash links, every receipt against `receipt_key`; returns the last hash.
///
/// # Errors
/// [`CosignError::Audit`] with the first problem.
pub fn verify_audit(
    entries: &[Audited],
    receipt_key: &XOnlyPublicKey,
    expected_head: Option<[u8; 32]>,
) -> Result<[u8; 32], CosignError> {
    verify_audit_log(
        &AuditFetch {
            checkpoint: None,
            entries: entries.to_vec(),
        },
        receipt_key,
        expected_head,
    )
}

/// Verifies a fetched log: from its start, or (pruned) from the node's
/// signed checkpoint — its signature by `receipt_key`, then the entries
/// after it linking to its hash. Returns the last hash.
///
/// # Errors
/// [`CosignError::Audit`] with the first problem.
pub fn verify_audit_log(
    log: &AuditFetch,
    receipt_key: &XOnlyPublicKey,
    expected_head: Option<[u8; 32]>,
) -> Result<[u8; 32], CosignError> {
    let secp = Secp256k1::verification_only();
    let pairs: Vec<(AuditEntry, [u8; 64])> = log
        .entries
        .iter()
        .map(|a| (a.entry.clone(), a.receipt))
        .collect();
    let fail = |e: AuditError| CosignError::Audit(format!("{e} (code {:#06x})", e.code()));
    let last = match &log.checkpoint {
        Some(cp) => {
            let checkpoint = Checkpoint {
                end_seq: cp.end_seq,
                chain_hash: cp.chain_hash,
            };
            verify_from_checkpoint(&secp, receipt_key, &checkpoint, &cp.signature, &pairs)
                .map_err(fail)?
        }
        None => {
            if let Some(first) = log.entries.first()
                && first.entry.seq != 0
            {
                return Err(CosignError::Audit(format!(
                    "log starts at seq {}, not 0",
                    first.entry.seq
                )));
            }
            verify_chain(&secp, receipt_key, &pairs, [0; 32]).map_err(fail)?
        }
    };
    if let Some(head) = expected_head
        && head != last
    {
        return Err(CosignError::Audit(
            "the last entry's hash differs from the node's audit head".into(),
        ));
    }
    Ok(last)
}

/// Checks one decision's receipt.
///
/// # Errors
/// [`CosignError::Audit`].
pub fn verify_one(a: &Audited, receipt_key: &XOnlyPublicKey) -> Result<(), CosignError> {
    verify_receipt(
        &Secp256k1::verification_only(),
        receipt_key,
        &a.entry,
        &a.receipt,
    )
    .map_err(|e| CosignError::Audit(e.to_string()))
}

/// The node's receipt key (`m/21326'/1'/0'`, x-only) asked over the link:
/// trust on first use; pin it with `--receipt-key`.
///
/// # Errors
/// [`CosignError`].
pub fn fetch_receipt_key(
    link: &mut Link,
    policy: RetryPolicy,
) -> Result<XOnlyPublicKey, CosignError> {
    let xpub = fetch_xpub(link, policy, "m/21326'/1'/0'")?.1;
    Ok(XOnlyPublicKey::from(xpub.public_key))
}

/// Master fingerprint and xpub of the node at `path`.
///
/// # Errors
/// [`CosignError`].
pub fn fetch_xpub(
    link: &mut Link,
    policy: RetryPolicy,
    path: &str,
) -> Result<(bitcoin::bip32::Fingerprint, bitcoin::bip32::Xpub), CosignError> {
    let x = link.query(
        (apid::KEYS, service::KEYS, subtype::KEYS_XPUB_REQUEST),
        path.as_bytes(),
        subtype::KEYS_XPUB,
        policy,
    )?;
    let tm = last_reply(&x, subtype::KEYS_XPUB)?;
    let (fp, xpub) = tm
        .data
        .split_at_checked(4)
        .ok_or_else(|| CosignError::Reply("short xpub report".into()))?;
    let fp = <[u8; 4]>::try_from(fp)
        .map(bitcoin::bip32::Fingerprint::from)
        .map_err(|_| CosignError::Reply("fingerprint".into()))?;
    let xpub = std::str::from_utf8(xpub)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CosignError::Reply("the node's xpub does not parse".into()))?;
    Ok((fp, xpub))
}

/// The node's id and mode (for request targets and command builders).
///
/// # Errors
/// [`CosignError`].
pub fn mode_status(
    link: &mut Link,
    policy: RetryPolicy,
) -> Result<spacenode_wire::msg::ModeStatus, CosignError> {
    let x = link.query(
        (apid::MODE, service::MODE, subtype::MODE_STATUS_REQUEST),
        &[],
        subtype::MODE_STATUS,
        policy,
    )?;
    spacenode_wire::msg::ModeStatus::decode(&last_reply(&x, subtype::MODE_STATUS)?.data)
        .map(|(s, _)| s)
        .map_err(|e| CosignError::Reply(e.to_string()))
}

/// The validity of a sign request, around the ground's clock and the
/// node's tip.
#[derive(Debug, Clone, Copy)]
pub struct RequestWindow {
    /// Ground time now, ms since the Unix epoch.
    pub now_ms: u64,
    /// Seconds the request stays valid.
    pub valid_for_s: u64,
    /// Blocks around the node's tip it stays valid.
    pub blocks: u32,
}

/// Seconds before now a request is already valid: the node's clock may lag
/// the ground's.
pub const CLOCK_SKEW_S: u64 = 600;

/// Builds the approved Bitcoin sign request for `psbt`: asks the node for
/// its id (mode status) and tip (chain status), sets the validity window
/// around them and adds the approvers' signatures.
///
/// # Errors
/// [`CosignError`] when a query fails.
pub fn btc_request(
    link: &mut Link,
    policy: RetryPolicy,
    request_id: [u8; 32],
    psbt: Vec<u8>,
    proofs: Vec<spacenode_policy::request::SpvProof>,
    approvers: &[(bitcoin::secp256k1::Keypair, u8)],
    window: RequestWindow,
) -> Result<spacenode_policy::request::SignedRequest, CosignError> {
    let mode = mode_status(link, policy)?;
    let (chain, _) = crate::chain::status(link, policy).map_err(Box::new)?;
    let body = crate::btc::build_request(
        request_id,
        mode.node_id,
        psbt,
        proofs,
        crate::btc::Validity {
            now_ms: window.now_ms,
            skew_s: CLOCK_SKEW_S,
            valid_for_s: window.valid_for_s,
            tip: chain.tip_height,
            blocks: window.blocks,
        },
    );
    Ok(crate::btc::approve(&body, approvers))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn frags(key: u64, bytes: &[u8], piece: usize) -> Vec<Fragment> {
        let parts: Vec<&[u8]> = bytes.chunks(piece).collect();
        let count = u8::try_from(parts.len()).unwrap();
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| Fragment {
                key,
                index: u8::try_from(i).unwrap(),
                count,
                bytes: p.to_vec(),
            })
            .collect()
    }

    #[test]
    fn replies_sharing_a_key_are_kept_apart() {
        // A late single-piece reply, then this request's two-piece reply
        // with a repeated piece, then a torn reply (piece 1 lost).
        let mut all = frags(0, b"late", 4);
        let mine = frags(0, b"mine, in two", 6);
        all.push(mine[0].clone());
        all.push(mine[0].clone());
        all.push(mine[1].clone());
        all.push(frags(0, b"torn reply", 5)[0].clone());
        assert_eq!(
            replies_in_order(&all),
            vec![b"late".to_vec(), b"mine, in two".to_vec()]
        );
        assert!(replies_in_order(&[]).is_empty());
    }

    #[test]
    fn the_request_id_is_read_from_either_body_format() {
        let d = spacenode_testkit::eth::EthDemo::new().unwrap();
        let tx = d.eip1559(spacenode_testkit::eth::addr::VENDOR, 1, vec![], 0);
        assert_eq!(request_id_of(&d.tx_request(7, 0, &tx)), Some([7; 32]));
        assert_eq!(request_id_of(b"garbage"), None);
    }
}
