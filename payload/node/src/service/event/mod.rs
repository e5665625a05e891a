//! The event room (PUS 5 on APID `EVENTS`): TC[5,128] dumps the stored
//! events. Raising events is the node task's (`Node::raise`), rate
//! limited by the pure [`limiter`]. Must never delete an event.

pub mod limiter;

use spacenode_wire::msg::{Event, EventDump, EventId, FailureNotice};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

use super::verify::Reply;
use super::{TmBody, bad_data, unknown_service};
use crate::node::Node;

/// An event request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[5,128]: the latest `max` events.
    Dump(EventDump),
}

/// Acceptance of a TC on APID `EVENTS`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::EVENT, subtype::EVENT_DUMP) => EventDump::decode(&tc.app_data)
            .map(Request::Dump)
            .map_err(|e| bad_data(&e)),
        _ => Err(unknown_service()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    let Request::Dump(req) = req;
    let events = node
        .store
        .recent_events(req.max)
        .map_err(|e| FailureNotice {
            code: e.code(),
            data: Vec::new(),
        })?;
    for e in events {
        let ev = Event {
            id: EventId(e.event_id),
            seq: e.seq,
            time_unix_ms: e.time_unix_ms,
            aux: e.aux,
        };
        // Dumped events go to every station, like live ones.
        let body = TmBody {
            apid: apid::EVENTS,
            service: service::EVENT,
            subtype: e.severity,
            dest_id: 0,
            data: ev.encode(),
        };
        cx.send(node, &body);
    }
    Ok(())
}
