//! PUS 1 verification as typestate, and the reply context every room
//! writes into.
//!
//! A [`Token`] follows one telecommand: [`Token::received`] when it is
//! decoded, then either [`Token::reject`] (acceptance failure, the end) or
//! [`Token::accept`], which hands back the acceptance report and a
//! `Token<Accepted>`; only that token can [`Token::complete`]. A room never
//! sees a token, so no room can send a completion before the acceptance or
//! twice (sat-rs's `VerificationToken<TcStateAccepted>` is the model).
//!
//! [`Reply`] is what a room needs besides the node's state: the time, the
//! station its replies go to, the key the TC arrived under and the frames
//! to send. Must never: build a report out of order, or send anything
//! itself (the node seals and frames).

use std::marker::PhantomData;

use spacenode_wire::msg::{FailureNotice, Stage, Verification};
use spacenode_wire::pus::{RequestId, Tc};
use spacenode_wire::services::service;

use super::TmBody;
use crate::node::{Node, Now};

/// A telecommand decoded, not yet answered.
#[derive(Debug)]
pub struct Received;
/// Acceptance reported: execution may run, completion is owed.
#[derive(Debug)]
pub struct Accepted;

/// Where one telecommand is in its verification (`S` is [`Received`] or
/// [`Accepted`]). Not `Clone`: each report is made once.
#[derive(Debug)]
#[must_use = "a telecommand's verification must end in a rejection or a completion report"]
pub struct Token<S> {
    apid: u16,
    dest_id: u16,
    request_id: RequestId,
    state: PhantomData<S>,
}

impl<S> Token<S> {
    /// The id the reports name.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    fn report(&self, stage: Stage, failure: Option<FailureNotice>) -> TmBody {
        let report = Verification {
            stage,
            request_id: self.request_id,
            failure,
        };
        TmBody {
            apid: self.apid,
            service: service::VERIFICATION,
            subtype: report.subtype(),
            dest_id: self.dest_id,
            data: report.encode(),
        }
    }
}

impl Token<Received> {
    /// The start of a decoded TC's verification.
    pub fn received(tc: &Tc) -> Self {
        Self {
            apid: tc.apid,
            dest_id: tc.source_id,
            request_id: tc.request_id(),
            state: PhantomData,
        }
    }

    /// A packet too broken to be a TC but long enough to name a request
    /// id: its refusal goes to its APID and to every station.
    pub fn undecodable(request_id: RequestId) -> Self {
        Self {
            apid: request_id.apid(),
            dest_id: 0,
            request_id,
            state: PhantomData,
        }
    }

    /// Acceptance failure (TM[1,2]): the TC's verification ends here.
    pub fn reject(self, failure: FailureNotice) -> TmBody {
        self.report(Stage::Acceptance, Some(failure))
    }

    /// Acceptance success (TM[1,1]) and the token that owes the completion.
    pub fn accept(self) -> (TmBody, Token<Accepted>) {
        let body = self.report(Stage::Acceptance, None);
        let token = Token {
            apid: self.apid,
            dest_id: self.dest_id,
            request_id: self.request_id,
            state: PhantomData,
        };
        (body, token)
    }
}

impl Token<Accepted> {
    /// Completion (TM[1,7] or TM[1,8]): the last report of the TC.
    pub fn complete(self, result: Result<(), FailureNotice>) -> TmBody {
        self.report(Stage::Completion, result.err())
    }
}

/// Work that must wait until the completion report is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCompletion {
    /// A rekey installed `new_key` in place of `replaced`: the completion
    /// goes out under the old key (the ground can read it), what follows
    /// under the new one.
    SwitchKey {
        /// The key the TC arrived under.
        replaced: u16,
        /// The key just installed.
        new_key: u16,
    },
}

/// A room's reply context for one telecommand.
#[derive(Debug)]
pub struct Reply {
    /// The time the TC is handled at.
    pub now: Now,
    /// The station the replies go to (the TC's source id).
    pub dest_id: u16,
    /// The link key the TC arrived under.
    pub key_id: u16,
    /// Sealed frames to send, in order.
    pub out: Vec<Vec<u8>>,
    /// Set by a room that needs work after the completion report.
    pub after_completion: Option<AfterCompletion>,
}

impl Reply {
    /// The context for `tc`, received under `key_id`.
    pub fn new(tc: &Tc, key_id: u16, now: Now) -> Self {
        Self {
            now,
            dest_id: tc.source_id,
            key_id,
            out: Vec::new(),
            after_completion: None,
        }
    }

    /// Seals and queues one TM.
    pub fn send(&mut self, node: &mut Node, body: &TmBody) {
        self.out.extend(node.emit(body, self.now));
    }

    /// Seals and queues a reply to the requesting station.
    pub fn reply(&mut self, node: &mut Node, apid: u16, service: u8, subtype: u8, data: Vec<u8>) {
        let body = TmBody {
            apid,
            service,
            subtype,
            dest_id: self.dest_id,
            data,
        };
        self.send(node, &body);
    }
}

#[cfg(test)]
mod tests {
    use spacenode_wire::ReasonCode;
    use spacenode_wire::services::apid;

    use super::*;

    fn tc() -> Tc {
        let mut tc = Tc::new(apid::POLICY, 7, 131, 3, Vec::new());
        tc.source_id = 2;
        tc
    }

    fn decoded(body: &TmBody) -> Verification {
        Verification::decode(body.subtype, &body.data).unwrap()
    }

    /// The acceptance report and the completion report name the TC's
    /// request, go to its APID and station, and come in that order: the
    /// completion can only be made from the token the acceptance hands out.
    #[test]
    fn acceptance_hands_out_the_token_that_completes() {
        let tc = tc();
        let (accepted, token) = Token::received(&tc).accept();
        let done = token.complete(Ok(()));
        for (body, stage) in [(&accepted, Stage::Acceptance), (&done, Stage::Completion)] {
            assert_eq!(body.apid, apid::POLICY);
            assert_eq!(body.dest_id, 2);
            assert_eq!(body.service, service::VERIFICATION);
            let v = decoded(body);
            assert_eq!(v.stage, stage);
            assert_eq!(v.request_id, tc.request_id());
            assert_eq!(v.failure, None);
        }
    }

    #[test]
    fn refusals_and_failures_carry_their_notice() {
        let notice = FailureNotice {
            code: ReasonCode::BAD_APP_DATA,
            data: b"why".to_vec(),
        };
        let refused = decoded(&Token::received(&tc()).reject(notice.clone()));
        assert_eq!(refused.stage, Stage::Acceptance);
        assert_eq!(refused.failure.as_ref(), Some(&notice));
        let (_, token) = Token::received(&tc()).accept();
        let failed = decoded(&token.complete(Err(notice.clone())));
        assert_eq!(failed.stage, Stage::Completion);
        assert_eq!(failed.failure, Some(notice));
    }

    /// A packet that is not a TC is refused on the APID its request id
    /// names, to every station.
    #[test]
    fn an_undecodable_packet_is_refused_to_every_station() {
        let rid = tc().request_id();
        let body = Token::undecodable(rid).reject(FailureNotice {
            code: ReasonCode::BAD_PACKET,
            data: Vec::new(),
        });
        assert_eq!((body.apid, body.dest_id), (apid::POLICY, 0));
        assert_eq!(decoded(&body).request_id, rid);
    }
}
