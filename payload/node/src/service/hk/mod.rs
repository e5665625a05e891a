//! The housekeeping room (PUS 3 on APID `HK`): TC[3,27] one-shot reports.
//! The report itself is built from the node's state by
//! `Node::hk_report` over the pure [`snapshot`]; periodic reports are the
//! node task's tick. Must never block on a sensor.

pub mod snapshot;

use spacenode_wire::msg::{FailureNotice, HK_CORE, HkRequest};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{service, subtype};

use super::verify::Reply;
use super::{bad_data, unknown_service};
use crate::node::Node;

/// A housekeeping request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[3,27]: the structures asked for.
    OneShot(HkRequest),
}

/// Acceptance of a TC on APID `HK`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::HK, subtype::HK_ONE_SHOT) => HkRequest::decode(&tc.app_data)
            .map(Request::OneShot)
            .map_err(|e| bad_data(&e)),
        _ => Err(unknown_service()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    let Request::OneShot(req) = req;
    // Unknown structure ids are skipped: the node has one structure.
    for sid in req.structures {
        if sid != HK_CORE {
            continue;
        }
        let body = node.hk_report(cx.dest_id);
        cx.send(node, &body);
    }
    Ok(())
}
