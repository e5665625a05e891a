//! The mode room (PUS 133 on APID `MODE`): status (TC[133,1]), entering
//! safe mode (TC[133,3]), leaving it on a quorum-signed command (TC[133,4])
//! and the development test hook that hangs a task (TC[133,5]). The mode
//! machine and its triggers are [`crate::health`]; the node applies them
//! (`node/health.rs`). Must never leave safe mode without the quorum.

use bitcoin::secp256k1::Secp256k1;
use spacenode_policy::command::{CommandError, SignedCommand, kind};
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{EventId, FailureNotice, MsgError};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{service, subtype};

use super::verify::Reply;
use super::{bad_data, no_data, store_failure, unknown_service};
use crate::health::mode::{Input, SafeReason, transition};
use crate::node::{Action, Node};

/// A mode request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[133,1].
    Status,
    /// TC[133,3].
    EnterSafe,
    /// TC[133,4]: a signed administrator command (authorised at
    /// execution, against the node's state).
    Exit(SignedCommand),
    /// TC[133,5]: the task to hang (0: the node task).
    TestHang(u8),
}

/// Acceptance of a TC on APID `MODE`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::MODE, subtype::MODE_STATUS_REQUEST) => no_data(tc).map(|()| Request::Status),
        (service::MODE, subtype::MODE_ENTER_SAFE) => no_data(tc).map(|()| Request::EnterSafe),
        (service::MODE, subtype::MODE_EXIT) => SignedCommand::decode(&tc.app_data)
            .map(Request::Exit)
            .map_err(|e| FailureNotice {
                code: ReasonCode(e.code()),
                data: e.to_string().into_bytes(),
            }),
        (service::MODE, subtype::HEALTH_TEST_HANG) => match tc.app_data.as_slice() {
            [task] => Ok(Request::TestHang(*task)),
            _ => Err(bad_data(&MsgError::Invalid {
                field: "task",
                value: tc.app_data.len() as u64,
            })),
        },
        _ => Err(unknown_service()),
    }
}

/// Leaving safe mode spends the command's sequence.
pub(crate) fn one_shot(req: &Request) -> bool {
    matches!(req, Request::Exit(_))
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Status => {
            let body = node.mode_status_tm(subtype::MODE_STATUS, cx.dest_id);
            cx.send(node, &body);
            Ok(())
        }
        Request::EnterSafe => {
            cx.out
                .extend(node.enter_safe(SafeReason::GroundCommand, cx.now));
            Ok(())
        }
        Request::Exit(cmd) => exit_safe(node, cx, &cmd),
        Request::TestHang(task) => test_hang(node, task),
    }
}

/// Leaves safe mode on a quorum-signed administrator command.
fn exit_safe(node: &mut Node, cx: &mut Reply, signed: &SignedCommand) -> Result<(), FailureNotice> {
    let now = cx.now;
    let out = &mut cx.out;
    let refuse = |node: &mut Node, e: CommandError, out: &mut Vec<Vec<u8>>| {
        tracing::warn!(error = %e, "administrator command refused");
        let code = e.code();
        out.extend(node.raise(EventId::ADMIN_REFUSED, code.to_be_bytes().to_vec(), now));
        FailureNotice {
            code: ReasonCode(code),
            data: e.to_string().into_bytes(),
        }
    };
    // The active policy's administrators, or the config's set until
    // the first policy.
    let admins = match node.admin_set() {
        Ok(a) => a,
        Err(e) => return Err(refuse(node, e, out)),
    };
    let executed = node
        .store
        .admin_executed(kind::EXIT_SAFE_MODE)
        .map_err(|e| store_failure(&e))?;
    let secp = Secp256k1::verification_only();
    // Trusted time (`node::clock`) for the validity window.
    let at = node.trusted_now(now).0;
    let cmd = match signed.authorize(&secp, &admins, node.cfg.node_id, executed, at) {
        Ok(c) => c,
        Err(e) => return Err(refuse(node, e, out)),
    };
    if cmd.kind != kind::EXIT_SAFE_MODE {
        return Err(refuse(
            node,
            CommandError::WrongKind {
                expected: kind::EXIT_SAFE_MODE,
                got: cmd.kind,
            },
            out,
        ));
    }
    // Record the sequence first: a crash after it cannot replay the
    // command; the mode change rides on an epoch bump, so restoring an
    // older database cannot bring an old mode back unnoticed.
    node.store
        .set_admin_seq(kind::EXIT_SAFE_MODE, cmd.seq)
        .map_err(|e| store_failure(&e))?;
    let (next, _) = transition(node.mode, Input::QuorumExit);
    node.bump_epoch_with(|store, epoch| store.set_mode(0, now.unix_ms, epoch))
        .map_err(|(code, detail)| FailureNotice {
            code: ReasonCode(code),
            data: detail.into_bytes(),
        })?;
    node.mode = next;
    node.mode_since_ms = now.unix_ms;
    node.unsaved_safe = None;
    // A repeated mode exit must run again, not be answered as done.
    node.last_admin_done = None;
    tracing::warn!(seq = cmd.seq, "left safe mode on a quorum-signed command");
    out.extend(node.raise(EventId::NORMAL_MODE, cmd.seq.to_be_bytes().to_vec(), now));
    Ok(())
}

/// The test hook: hangs a task after the completion report is out.
fn test_hang(node: &mut Node, task: u8) -> Result<(), FailureNotice> {
    if !node.cfg.health.test_hooks {
        return Err(FailureNotice {
            code: ReasonCode::MODE_FORBIDS,
            data: b"test hooks are disabled (health.test_hooks)".to_vec(),
        });
    }
    node.pending_action = Some(match task {
        0 => Action::HangNode,
        1 => Action::HangLink,
        _ => {
            return Err(FailureNotice {
                code: ReasonCode::BAD_APP_DATA,
                data: b"task 0 (node) or 1 (link)".to_vec(),
            });
        }
    });
    tracing::warn!(task, "test hook: hanging a task; the watchdog must fire");
    Ok(())
}
