//! The telecommand router: one room per PUS service.
//!
//! A decoded TC goes to the room of its APID ([`accept`]); the room's
//! `accept` checks service, subtype and application data and returns its
//! typed request, or the failure notice of the acceptance report. The
//! router then reports acceptance, runs the room's `execute` with the
//! node's state and a [`Reply`] context, and reports completion; the
//! order of the reports is fixed by [`verify::Token`], not by hand.
//!
//! | APID     | service | room         |
//! |----------|---------|--------------|
//! | `CORE`   | 17      | [`test`]     |
//! | `HK`     | 3       | [`hk`]       |
//! | `EVENTS` | 5       | [`event`]    |
//! | `LINK`   | 128     | [`link`]     |
//! | `CHAIN`  | 129     | [`chain`]    |
//! | `KEYS`   | 130     | [`keys`]     |
//! | `POLICY` | 131     | [`policy`]   |
//! | `SIGN`   | 132     | [`sign`]     |
//! | `MODE`   | 133     | [`mode`]     |
//! | `FILES`  | 134     | [`files`]    |
//!
//! A new service is a new room: a file with `accept` and `execute`, a
//! variant of [`Request`] and a line in [`accept`] and `Request::execute`.
//! Each room owns its acceptance, its execution and its state types
//! (`chain::state`, `event::limiter`, `hk::snapshot`, `files::rules` are the
//! parts the node task itself uses; they never reach back into a room).
//!
//! The router must never execute a request whose acceptance it did not
//! report, nor report a completion twice.

pub mod chain;
pub mod event;
pub mod files;
pub mod hk;
pub mod keys;
pub mod link;
pub mod mode;
pub mod policy;
pub mod sign;
pub mod test;
pub mod verify;

use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{FailureNotice, MsgError};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::apid;

pub use crate::node::TmBody;
use crate::node::{Node, Now, Opened};
use verify::{AfterCompletion, Reply, Token};

/// A telecommand that passed acceptance, by room.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// PUS 17, APID `CORE`.
    Test(test::Request),
    /// PUS 3, APID `HK`.
    Hk(hk::Request),
    /// PUS 5, APID `EVENTS`.
    Event(event::Request),
    /// PUS 128, APID `LINK`.
    Link(link::Request),
    /// PUS 129, APID `CHAIN`.
    Chain(chain::Request),
    /// PUS 130, APID `KEYS`.
    Keys(keys::Request),
    /// PUS 133, APID `MODE`.
    Mode(mode::Request),
    /// PUS 131, APID `POLICY`.
    Policy(policy::Request),
    /// PUS 132, APID `SIGN`.
    Sign(sign::Request),
    /// PUS 134, APID `FILES`.
    Files(files::Request),
}

/// Acceptance: is this TC one the node serves, with well-formed data?
/// Pure: never executes anything or touches storage.
///
/// # Errors
/// The failure notice for TM[1,2].
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match tc.apid {
        apid::CORE => test::accept(tc).map(Request::Test),
        apid::HK => hk::accept(tc).map(Request::Hk),
        apid::EVENTS => event::accept(tc).map(Request::Event),
        apid::LINK => link::accept(tc).map(Request::Link),
        apid::CHAIN => chain::accept(tc).map(Request::Chain),
        apid::KEYS => keys::accept(tc).map(Request::Keys),
        apid::MODE => mode::accept(tc).map(Request::Mode),
        apid::POLICY => policy::accept(tc).map(Request::Policy),
        apid::SIGN => sign::accept(tc).map(Request::Sign),
        apid::FILES => files::accept(tc).map(Request::Files),
        _ => Err(refuse(ReasonCode::UNKNOWN_APID)),
    }
}

impl Request {
    /// Runs the request in its room.
    fn execute(self, node: &mut Node, cx: &mut Reply) -> Result<(), FailureNotice> {
        match self {
            Self::Test(r) => test::execute(node, cx, r),
            Self::Hk(r) => hk::execute(node, cx, r),
            Self::Event(r) => event::execute(node, cx, r),
            Self::Link(r) => link::execute(node, cx, r),
            Self::Chain(r) => chain::execute(node, cx, r),
            Self::Keys(r) => keys::execute(node, cx, r),
            Self::Mode(r) => mode::execute(node, cx, r),
            Self::Policy(r) => policy::execute(node, cx, r),
            Self::Sign(r) => sign::execute(node, cx, r),
            Self::Files(r) => files::execute(node, cx, r),
        }
    }

    /// Requests that change state once and cannot simply run again: their
    /// command sequence, policy version or link key id is spent by the
    /// first execution. (Sign requests have their own durable retry path;
    /// chain batches, uploads and mode entry are idempotent by
    /// construction.) A repeated rekey is answered under the new key, which
    /// the ground already accepts (`Link::expect_key`).
    fn one_shot(&self) -> bool {
        match self {
            Self::Link(r) => link::one_shot(r),
            Self::Chain(r) => chain::one_shot(r),
            Self::Mode(r) => mode::one_shot(r),
            Self::Policy(r) => policy::one_shot(r),
            Self::Test(_)
            | Self::Hk(_)
            | Self::Event(_)
            | Self::Keys(_)
            | Self::Sign(_)
            | Self::Files(_) => false,
        }
    }

    /// The answer to a one-shot request that already succeeded (its first
    /// completion report was lost): the replies it owes, not the action.
    fn answer_again(&self, node: &mut Node, cx: &mut Reply) -> Result<(), FailureNotice> {
        match self {
            Self::Policy(r) => policy::answer_again(node, cx, r),
            _ => Ok(()),
        }
    }
}

impl Node {
    /// Handles one frame payload from the transport; returns frames to send.
    pub fn on_frame(&mut self, payload: &[u8], now: Now) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self.open_frame(payload, now, &mut out) {
            Some(Opened::Tc(tc, key_id)) => {
                let mut cx = Reply::new(&tc, key_id, now);
                handle(self, &tc, &mut cx);
                out.append(&mut cx.out);
            }
            Some(Opened::Undecodable(rid, fail)) => {
                let report = Token::undecodable(rid).reject(fail);
                out.extend(self.emit(&report, now));
            }
            None => {}
        }
        self.end_tc();
        out
    }
}

/// One authentic TC: acceptance, execution in its room, completion, and
/// what must follow the completion.
fn handle(node: &mut Node, tc: &Tc, cx: &mut Reply) {
    let token = Token::received(tc);
    let rid = token.request_id();
    let request = match accept(tc) {
        Ok(r) => r,
        Err(fail) => {
            node.count_tc(false);
            tracing::info!(request = %rid, service = tc.service, subtype = tc.subtype, code = %fail.code, "tc refused");
            cx.send(node, &token.reject(fail));
            return;
        }
    };
    node.count_tc(true);
    let (report, token) = token.accept();
    cx.send(node, &report);
    let admin_digest = request.one_shot().then(|| admin_request_digest(tc));
    if admin_digest.is_some() && admin_digest == node.last_admin_done {
        // The completion report of the first attempt was lost and the
        // ground sent it again: executing it again would refuse it as a
        // replay (its sequence or version is spent) although it is done.
        tracing::info!(request = %rid, "administrator request already executed: answered again");
        let result = request.answer_again(node, cx);
        cx.send(node, &token.complete(result));
        return;
    }
    let result = request.execute(node, cx);
    if let Err(f) = &result {
        tracing::info!(request = %rid, code = %f.code, "tc failed");
    } else if admin_digest.is_some() {
        node.last_admin_done = admin_digest;
    }
    cx.send(node, &token.complete(result));
    match cx.after_completion.take() {
        Some(AfterCompletion::SwitchKey { replaced, new_key }) => {
            link::switch_key(node, cx, replaced, new_key);
        }
        None => {}
    }
}

/// What makes two administrator requests the same: APID, service, subtype and
/// application data (not the packet's sequence count, which a ground tool
/// restarted between attempts does not keep).
fn admin_request_digest(tc: &Tc) -> [u8; 32] {
    use bitcoin::hashes::{Hash, HashEngine, sha256};
    let mut engine = sha256::Hash::engine();
    engine.input(&[tc.service, tc.subtype]);
    engine.input(&tc.apid.to_be_bytes());
    engine.input(&tc.app_data);
    sha256::Hash::from_engine(engine).to_byte_array()
}

fn refuse(code: ReasonCode) -> FailureNotice {
    FailureNotice {
        code,
        data: Vec::new(),
    }
}

/// A (service, subtype) the room does not serve.
fn unknown_service() -> FailureNotice {
    refuse(ReasonCode::UNKNOWN_SERVICE)
}

fn bad_data(e: &MsgError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

/// Refuses application data on a request that takes none.
fn no_data(tc: &Tc) -> Result<(), FailureNotice> {
    if tc.app_data.is_empty() {
        Ok(())
    } else {
        Err(bad_data(&MsgError::Trailing(tc.app_data.len())))
    }
}

fn signed_command(data: &[u8]) -> Result<spacenode_policy::command::SignedCommand, FailureNotice> {
    spacenode_policy::command::SignedCommand::decode(data).map_err(|e| FailureNotice {
        code: ReasonCode(e.code()),
        data: e.to_string().into_bytes(),
    })
}

/// A storage failure as a completion failure: its code and text.
fn store_failure(e: &crate::store::StoreError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

fn payload(data: &[u8]) -> Result<spacenode_wire::cosign::Payload, FailureNotice> {
    spacenode_wire::cosign::Payload::decode(data).map_err(|e| bad_data(&e))
}

#[cfg(test)]
mod tests {
    use spacenode_chain::HeaderBatch;
    use spacenode_wire::cosign::{FileBegin, Payload};
    use spacenode_wire::msg::HkRequest;

    use super::*;

    fn node(dir: &std::path::Path) -> Node {
        let cfg = crate::config::Config::parse(&format!(
            "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n\
             [link]\ndevice = \"/dev/null\"\ntx_key_id = 1\n[[link.keys]]\nid = 1\n\
             key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n\
             [keys]\nbackend = \"soft\"\n",
            dir.join("state").display(),
        ))
        .unwrap();
        Node::start(cfg, Now::read()).unwrap()
    }

    /// Every TC gets its acceptance report, an accepted one its room's
    /// replies and then its completion report, a refused one nothing else.
    #[test]
    fn the_router_reports_acceptance_replies_and_completion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let mut node = node(dir.path());
        let frames = |node: &mut Node, tc: Tc| {
            let mut cx = Reply::new(&tc, 1, Now::read());
            handle(node, &tc, &mut cx);
            cx.out.len()
        };
        let ping = Tc::new(apid::CORE, 1, 17, 1, vec![]);
        assert_eq!(frames(&mut node, ping), 3, "acceptance, pong, completion");
        let unknown = Tc::new(apid::CORE, 2, 17, 9, vec![]);
        assert_eq!(frames(&mut node, unknown), 1, "acceptance failure only");
        let clear = Tc::new(apid::CHAIN, 3, 129, 4, vec![]);
        assert_eq!(
            frames(&mut node, clear),
            2,
            "acceptance, completion failure"
        );
        assert_eq!(
            (node.counters.tc_accepted, node.counters.tc_rejected),
            (2, 1)
        );
    }

    #[test]
    fn routes_known_requests() {
        assert_eq!(
            accept(&Tc::new(apid::CORE, 1, 17, 1, vec![])),
            Ok(Request::Test(test::Request::Ping))
        );
        assert!(matches!(
            accept(&Tc::new(apid::HK, 1, 3, 27, vec![1, 1])),
            Ok(Request::Hk(hk::Request::OneShot(HkRequest { structures }))) if structures == vec![1]
        ));
    }

    #[test]
    fn refuses_with_reason_codes() {
        assert_eq!(
            accept(&Tc::new(0x555, 1, 17, 1, vec![])).unwrap_err().code,
            ReasonCode::UNKNOWN_APID
        );
        assert_eq!(
            accept(&Tc::new(apid::CORE, 1, 17, 9, vec![]))
                .unwrap_err()
                .code,
            ReasonCode::UNKNOWN_SERVICE
        );
        assert_eq!(
            accept(&Tc::new(apid::HK, 1, 17, 1, vec![]))
                .unwrap_err()
                .code,
            ReasonCode::UNKNOWN_SERVICE
        );
        assert_eq!(
            accept(&Tc::new(apid::CORE, 1, 17, 1, vec![0]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
        assert_eq!(
            accept(&Tc::new(apid::LINK, 1, 128, 1, vec![0; 5]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
    }

    #[test]
    fn cosign_requests_decode_at_acceptance() {
        let inline = Payload::Inline(vec![1, 2, 3]).encode();
        assert_eq!(
            accept(&Tc::new(apid::SIGN, 1, 132, 1, inline.clone())),
            Ok(Request::Sign(sign::Request::Sign(Payload::Inline(vec![
                1, 2, 3
            ]))))
        );
        assert_eq!(
            accept(&Tc::new(apid::POLICY, 1, 131, 1, inline)),
            Ok(Request::Policy(policy::Request::Propose(Payload::Inline(
                vec![1, 2, 3]
            ))))
        );
        assert_eq!(
            accept(&Tc::new(apid::SIGN, 1, 132, 1, vec![9]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
        assert_eq!(
            accept(&Tc::new(apid::POLICY, 1, 131, 3, vec![])),
            Ok(Request::Policy(policy::Request::Status))
        );
        assert_eq!(
            accept(&Tc::new(apid::POLICY, 1, 131, 8, vec![2]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
        assert_eq!(
            accept(&Tc::new(apid::POLICY, 1, 131, 2, vec![0, 1]))
                .unwrap_err()
                .code,
            ReasonCode(0x0520)
        );
        let begin = FileBegin {
            content_id: [5; 32],
            total_len: 3000,
        };
        assert_eq!(
            accept(&Tc::new(apid::FILES, 1, 134, 1, begin.encode())),
            Ok(Request::Files(files::Request::Begin(begin)))
        );
        assert_eq!(
            accept(&Tc::new(apid::FILES, 1, 134, 3, vec![5; 32])),
            Ok(Request::Files(files::Request::Status([5; 32])))
        );
        assert_eq!(
            accept(&Tc::new(apid::FILES, 1, 134, 4, vec![]))
                .unwrap_err()
                .code,
            ReasonCode::UNKNOWN_SERVICE
        );
    }

    #[test]
    fn chain_requests_decode_at_acceptance() {
        use spacenode_chain::regtest::{genesis, mine_chain};
        let headers = mine_chain(&genesis(), 3, 600).unwrap();
        let batch = HeaderBatch::new(bitcoin::Network::Regtest, 1, headers).unwrap();
        let tc = Tc::new(apid::CHAIN, 1, 129, 1, batch.encode().unwrap());
        assert_eq!(
            accept(&tc),
            Ok(Request::Chain(chain::Request::Headers(batch)))
        );
        // Truncated batch: the batch's own code, height 0 in the data.
        let f = accept(&Tc::new(apid::CHAIN, 1, 129, 1, vec![1, 5, 1])).unwrap_err();
        assert_eq!(f.code, ReasonCode(0x0340));
        assert_eq!(&f.data[..4], &[0, 0, 0, 0]);
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 2, vec![])),
            Ok(Request::Chain(chain::Request::Status))
        );
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 2, vec![0]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 4, vec![])),
            Ok(Request::Chain(chain::Request::ClearDeepReorg(None)))
        );
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 4, vec![0]))
                .unwrap_err()
                .code,
            ReasonCode(0x0520)
        );
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 3, vec![]))
                .unwrap_err()
                .code,
            ReasonCode::UNKNOWN_SERVICE
        );
    }
}
