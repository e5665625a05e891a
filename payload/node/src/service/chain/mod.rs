//! The chain room (PUS 129 on APID `CHAIN`): header batches (TC[129,1]),
//! status (TC[129,2]) and the quorum's clearing of a refused deep reorg
//! (TC[129,4]). The chain itself and the mapping of its decisions to
//! reports is [`state::ChainService`]. Must never change the chain but
//! through it.

pub mod state;

use spacenode_chain::{ChainStatus, ClearReorgError, HeaderBatch};
use spacenode_policy::command::{CommandError, SignedCommand, kind};
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::FailureNotice;
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

use super::verify::Reply;
use super::{no_data, signed_command, store_failure, unknown_service};
use crate::node::Node;

/// A chain request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[129,1]: a decoded header batch (validated at execution).
    Headers(HeaderBatch),
    /// TC[129,2].
    Status,
    /// TC[129,4]: a `CLEAR_DEEP_REORG` command (authorised at execution);
    /// `None` for the former plain TC without one, refused at execution
    /// with `ClearReorgError::NeedsQuorum`.
    ClearDeepReorg(Option<SignedCommand>),
}

/// Acceptance of a TC on APID `CHAIN`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        // A batch that does not decode is malformed application data,
        // refused at acceptance with the batch's own (more precise) code.
        (service::CHAIN, subtype::CHAIN_HEADERS) => HeaderBatch::decode(&tc.app_data)
            .map(Request::Headers)
            .map_err(|e| FailureNotice {
                code: ReasonCode(e.code()),
                data: state::failure_data(0, &e.to_string()),
            }),
        (service::CHAIN, subtype::CHAIN_STATUS_REQUEST) => no_data(tc).map(|()| Request::Status),
        (service::CHAIN, subtype::CHAIN_CLEAR_DEEP_REORG) if tc.app_data.is_empty() => {
            Ok(Request::ClearDeepReorg(None))
        }
        (service::CHAIN, subtype::CHAIN_CLEAR_DEEP_REORG) => {
            signed_command(&tc.app_data).map(|c| Request::ClearDeepReorg(Some(c)))
        }
        _ => Err(unknown_service()),
    }
}

/// A clearing command spends its sequence.
pub(crate) fn one_shot(req: &Request) -> bool {
    matches!(req, Request::ClearDeepReorg(Some(_)))
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Headers(batch) => {
            let reply = node.chain.apply_headers(&batch, cx.now.unix_s());
            for (id, aux) in reply.events {
                if let Some(aux) = node.limiter.latest(id, aux, cx.now.mono) {
                    cx.out.extend(node.raise(id, aux, cx.now));
                }
            }
            reply.result.map(|status| send_status(node, cx, &status))
        }
        Request::Status => node
            .chain
            .status()
            .map(|status| send_status(node, cx, &status)),
        Request::ClearDeepReorg(None) => Err(state::clear_refused(&ClearReorgError::NeedsQuorum)),
        Request::ClearDeepReorg(Some(cmd)) => clear_deep_reorg(node, cx, &cmd),
    }
}

/// The `chain.status` reply (sent before the completion report, so the
/// ground reads it as part of the exchange).
fn send_status(node: &mut Node, cx: &mut Reply, status: &ChainStatus) {
    cx.reply(
        node,
        apid::CHAIN,
        service::CHAIN,
        subtype::CHAIN_STATUS,
        status.encode().to_vec(),
    );
}

/// TC[129,4] with a `CLEAR_DEEP_REORG` command: clears the flag of a
/// refused deep reorg, which stops Bitcoin signing. The command's
/// sequence is persisted BEFORE the flag is cleared (separate
/// connections): a crash between the two leaves the flag set and the
/// command spent (the quorum signs another), never a cleared flag whose
/// command could clear a later one again.
fn clear_deep_reorg(
    node: &mut Node,
    cx: &mut Reply,
    signed: &SignedCommand,
) -> Result<(), FailureNotice> {
    let cmd = node.authorize_command(signed, kind::CLEAR_DEEP_REORG, cx.now, &mut cx.out)?;
    let Ok(body) = <[u8; 4]>::try_from(cmd.body.as_slice()) else {
        let e = CommandError::Malformed(
            "a deep-reorg clear's body is the refused branch's first height, u32",
        );
        return Err(node.command_refused(&e, cx.now, &mut cx.out));
    };
    let branch_start = u32::from_be_bytes(body);
    node.chain.check_clear(branch_start)?;
    node.store
        .set_admin_seq(kind::CLEAR_DEEP_REORG, cmd.seq)
        .map_err(|e| store_failure(&e))?;
    node.chain.clear_deep_reorg()?;
    tracing::warn!(
        branch_start,
        seq = cmd.seq,
        "deep-reorg flag cleared by the administrator quorum: Bitcoin signing resumes"
    );
    Ok(())
}
