//! The link room (PUS 128 on APID `LINK`): TC[128,1] rekey. Installs a new
//! link key in place of the key the TC arrived under, authorised by a
//! quorum-signed `REKEY_LINK` command that commits to the new id, the
//! SHA-256 of the new key and the replaced id. Only the replaced key is
//! retired (when the ground is first heard under the new one); every other
//! station's key stays.
//!
//! Must never: reuse a key id or key bytes, use a key before it is sealed
//! and recorded, or send the completion under the new key.

use bitcoin::hashes::{Hash, sha256};
use spacenode_policy::command::{Command, CommandError, RekeyBody, kind};
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{EventId, FailureNotice, Rekey};
use spacenode_wire::pus::Tc;
use spacenode_wire::security::LinkKey;
use spacenode_wire::services::{service, subtype};

use super::verify::{AfterCompletion, Reply};
use super::{bad_data, unknown_service};
use crate::custody;
use crate::node::Node;
use crate::store::InstalledKey;

/// A link request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[128,1].
    Rekey(Rekey),
}

/// Acceptance of a TC on APID `LINK`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::LINK, subtype::LINK_REKEY) => Rekey::decode(&tc.app_data)
            .map(Request::Rekey)
            .map_err(|e| {
                if Rekey::is_v1(&tc.app_data) {
                    FailureNotice {
                        code: ReasonCode::SEC_REKEY_OLD_FORMAT,
                        data: e.to_string().into_bytes(),
                    }
                } else {
                    bad_data(&e)
                }
            }),
        _ => Err(unknown_service()),
    }
}

/// A rekey spends its command sequence and key id.
pub(crate) fn one_shot(req: &Request) -> bool {
    matches!(req, Request::Rekey(_))
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    let Request::Rekey(req) = req;
    rekey(node, cx, &req)?;
    cx.after_completion = Some(AfterCompletion::SwitchKey {
        replaced: cx.key_id,
        new_key: req.key_id,
    });
    Ok(())
}

/// After the completion report (sent under the old key, so the ground can
/// read it): this station's traffic uses the new key (and unsolicited
/// telemetry too if the old key was the downlink key).
pub(crate) fn switch_key(node: &mut Node, cx: &mut Reply, replaced: u16, new_key: u16) {
    node.sec.switch_tx(replaced, new_key);
    node.reply_key = Some(new_key);
    tracing::info!(new_key, replaced, "rekeyed");
    cx.out
        .extend(node.raise(EventId::REKEYED, new_key.to_be_bytes().to_vec(), cx.now));
}

fn refused(code: ReasonCode, why: impl Into<String>) -> FailureNotice {
    FailureNotice {
        code,
        data: why.into().into_bytes(),
    }
}

fn rekey(node: &mut Node, cx: &mut Reply, req: &Rekey) -> Result<(), FailureNotice> {
    let received_under = cx.key_id;
    let cmd = authorize(node, cx, req)?;
    let body = match RekeyBody::decode(&cmd.body) {
        Ok(b) => b,
        Err(e) => return Err(node.command_refused(&e, cx.now, &mut cx.out)),
    };
    let digest = check_binding(req, &body, received_under)?;
    check_fresh(node, req, &digest)?;
    let installed = InstalledKey {
        key_id: req.key_id,
        digest,
        replaces: received_under,
        make_downlink: node.sec.tx_key_id() == received_under,
        command_seq: cmd.seq,
        now_ms: cx.now.unix_ms,
    };
    install_link_key(node, &installed, &req.key)?;
    node.sec
        .add_key(req.key_id, &LinkKey::new(req.key), received_under);
    Ok(())
}

/// The `REKEY_LINK` command, authorised by the active policy's
/// administrators, or the config's set until the first policy (as for
/// leaving safe mode): a node must be rekeyable before its first policy.
fn authorize(node: &mut Node, cx: &mut Reply, req: &Rekey) -> Result<Command, FailureNotice> {
    let signed = match spacenode_policy::command::SignedCommand::decode(&req.command) {
        Ok(s) => s,
        Err(e) => return Err(node.command_refused(&e, cx.now, &mut cx.out)),
    };
    let admins = match node.admin_set() {
        Ok(a) => a,
        Err(e) => return Err(node.command_refused(&e, cx.now, &mut cx.out)),
    };
    let executed = node
        .store
        .admin_executed(kind::REKEY_LINK)
        .map_err(|e| refused(e.code(), e.to_string()))?;
    let cmd = match signed.authorize(
        &node.secp,
        &admins,
        node.cfg.node_id,
        executed,
        cx.now.unix_ms,
    ) {
        Ok(c) => c,
        Err(e) => return Err(node.command_refused(&e, cx.now, &mut cx.out)),
    };
    if cmd.kind != kind::REKEY_LINK {
        let e = CommandError::WrongKind {
            expected: kind::REKEY_LINK,
            got: cmd.kind,
        };
        return Err(node.command_refused(&e, cx.now, &mut cx.out));
    }
    Ok(cmd)
}

/// The TC carries the key the command commits to, and arrived under the
/// key the command replaces. Returns the key's SHA-256.
fn check_binding(
    req: &Rekey,
    body: &RekeyBody,
    received_under: u16,
) -> Result<[u8; 32], FailureNotice> {
    if body.new_key_id != req.key_id {
        return Err(refused(
            ReasonCode::SEC_REKEY_ID_MISMATCH,
            format!(
                "the TC installs key {}, the command key {}",
                req.key_id, body.new_key_id
            ),
        ));
    }
    if body.replaces_key_id != received_under {
        return Err(refused(
            ReasonCode::SEC_REKEY_WRONG_KEY,
            format!(
                "the command replaces key {}, this TC arrived under key {received_under}",
                body.replaces_key_id
            ),
        ));
    }
    let digest = sha256::Hash::hash(&req.key).to_byte_array();
    if digest != body.key_sha256 {
        return Err(refused(
            ReasonCode::SEC_REKEY_HASH_MISMATCH,
            "the key's SHA-256 differs from the command's",
        ));
    }
    Ok(digest)
}

/// Ids are never reused; neither are key bytes (the same bytes under
/// another id, in use, retired or tombstoned, would repeat AES-GCM nonces
/// across ids).
fn check_fresh(node: &Node, req: &Rekey, digest: &[u8; 32]) -> Result<(), FailureNotice> {
    let key_id = req.key_id;
    if key_id == 0 {
        return Err(refused(
            ReasonCode::SEC_REKEY_REFUSED,
            "key id 0 is reserved",
        ));
    }
    let configured = node.cfg.link.keys.iter().any(|k| k.id == key_id);
    let used = node.store.key_id_used(key_id).map_err(|e| FailureNotice {
        code: e.code(),
        data: Vec::new(),
    })?;
    if configured || used || node.sec.has_key(key_id) {
        return Err(refused(
            ReasonCode::SEC_REKEY_REFUSED,
            "key id already used; ids are never reused",
        ));
    }
    if req.key.iter().all(|b| *b == req.key[0]) {
        return Err(refused(
            ReasonCode::SEC_REKEY_REFUSED,
            "constant key refused",
        ));
    }
    let holder = node
        .store
        .key_digest_holder(digest)
        .map_err(|e| FailureNotice {
            code: e.code(),
            data: Vec::new(),
        })?;
    if let Some(other) = holder {
        return Err(refused(
            ReasonCode::SEC_KEY_BYTES_REUSED,
            format!("the same key bytes were key {other}"),
        ));
    }
    Ok(())
}

/// Seals a rekeyed link key into a blob file and records it (id, digest,
/// pending retirement of the replaced key, command sequence, with an epoch
/// bump) before the key is used.
fn install_link_key(
    node: &mut Node,
    installed: &InstalledKey,
    key: &[u8; 32],
) -> Result<(), FailureNotice> {
    let key_id = installed.key_id;
    let fail = |code: u16, detail: String| FailureNotice {
        code: ReasonCode(code),
        data: detail.into_bytes(),
    };
    let secret = custody::secret_from(key).map_err(|e| fail(e.code(), e.to_string()))?;
    let name = custody::link_key_name(key_id);
    let blob = {
        let mut sealer = if let Some(t) = node.tpm.as_mut() {
            custody::Sealer::Tpm(t)
        } else if let Some(k) = node.keys.as_mut() {
            custody::Sealer::Store(k)
        } else if let Some(s) = node.soft_sealer.as_ref() {
            custody::Sealer::Soft(s)
        } else {
            return Err(fail(0x0401, "no key store to seal the new key".into()));
        };
        sealer
            .seal_link(&name, &secret)
            .map_err(|e| fail(e.code(), e.to_string()))?
    };
    custody::write_blob(&node.cfg.state_dir, &name, &blob)
        .map_err(|e| fail(e.code(), e.to_string()))?;
    node.bump_epoch_with(|store, epoch| store.record_installed_key(installed, epoch))
        .map_err(|(code, detail)| fail(code, detail))
}
