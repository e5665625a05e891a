//! The sign room (PUS 132 on APID `SIGN`): Bitcoin and Ethereum sign
//! requests (TC[132,1]) and Ethereum requests with a `SAFE_ADMIN_TX`
//! command (TC[132,5]). Acceptance decodes the payload reference; the
//! sign pipeline (`node/sign.rs`, `node/eth.rs`) executes, unchanged, until
//! it moves in here. Must never decide anything the pipeline decides.

use spacenode_wire::cosign::Payload;
use spacenode_wire::msg::FailureNotice;
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{service, subtype};

use super::verify::Reply;
use super::{payload, unknown_service};
use crate::node::Node;

/// A sign request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[132,1]: a sign request (evaluated at execution).
    Sign(Payload),
    /// TC[132,5]: an Ethereum sign request with its `SAFE_ADMIN_TX`
    /// command (payload reference to `cosign::AdminSignRequest`).
    SignAdmin(Payload),
}

/// Acceptance of a TC on APID `SIGN`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::SIGN, subtype::SIGN_REQUEST) => payload(&tc.app_data).map(Request::Sign),
        (service::SIGN, subtype::SIGN_ADMIN_REQUEST) => {
            payload(&tc.app_data).map(Request::SignAdmin)
        }
        _ => Err(unknown_service()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Sign(p) => node.sign_request(p, cx.dest_id, cx.now, &mut cx.out),
        Request::SignAdmin(p) => node.sign_admin_request(p, cx.dest_id, cx.now, &mut cx.out),
    }
}
