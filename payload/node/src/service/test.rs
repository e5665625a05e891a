//! The test room (PUS 17 on APID `CORE`): TC[17,1] are-you-alive, answered
//! by TM[17,2]. Must never change state.

use spacenode_wire::msg::FailureNotice;
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

use super::verify::Reply;
use super::{no_data, unknown_service};
use crate::node::Node;

/// A test request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[17,1].
    Ping,
}

/// Acceptance of a TC on APID `CORE`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::TEST, subtype::PING) => no_data(tc).map(|()| Request::Ping),
        _ => Err(unknown_service()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Ping => {
            cx.reply(node, apid::CORE, service::TEST, subtype::PONG, Vec::new());
            Ok(())
        }
    }
}
