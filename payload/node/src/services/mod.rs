//! Telecommand acceptance: routes a decoded TC by APID, service and subtype
//! to a typed [`Request`], or refuses it with a reason code (PUS 1
//! acceptance failure). Execution lives with the state it needs
//! ([`crate::node`]); this module is pure.
//!
//! It must never execute anything or touch storage.

pub mod chain;
pub mod events;
pub mod files;
pub mod hk;

use spacenode_chain::HeaderBatch;
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{AuditRequest, FileBegin, FileChunk, Payload};
use spacenode_wire::msg::{EventDump, FailureNotice, HkRequest, MsgError, Rekey};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

/// A telecommand that passed acceptance.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[17,1].
    Ping,
    /// TC[3,27].
    Housekeeping(HkRequest),
    /// TC[5,128].
    EventDump(EventDump),
    /// TC[128,1].
    Rekey(Rekey),
    /// TC[129,1]: a decoded header batch (validated at execution).
    ChainHeaders(HeaderBatch),
    /// TC[129,2].
    ChainStatus,
    /// TC[129,4]: a `CLEAR_DEEP_REORG` command (authorised at execution);
    /// `None` for the former plain TC without one, refused at execution
    /// with `ClearReorgError::NeedsQuorum`.
    ChainClearDeepReorg(Option<spacenode_policy::command::SignedCommand>),
    /// TC[130,1] with its nonce.
    KeysAttest([u8; 32]),
    /// TC[130,3] with a BIP32 path.
    KeysXpub(bitcoin::bip32::DerivationPath),
    /// TC[133,1].
    ModeStatus,
    /// TC[133,3].
    ModeEnterSafe,
    /// TC[133,4]: a signed administrator command (authorised at execution,
    /// against the node's state).
    ModeExit(spacenode_policy::command::SignedCommand),
    /// TC[133,5]: the task to hang (0: the node task).
    TestHang(u8),
    /// TC[131,1]: a signed policy (authorised at execution).
    PolicyPropose(Payload),
    /// TC[131,2]: a veto command.
    PolicyVeto(spacenode_policy::command::SignedCommand),
    /// TC[131,3].
    PolicyStatus,
    /// TC[131,5]: a wallet registration command.
    PolicyRegisterWallet(Payload),
    /// TC[131,6].
    PolicyAudit(AuditRequest),
    /// TC[131,8]: 0 active, 1 pending.
    PolicyDocument(u8),
    /// TC[131,10]: a clock resync command.
    PolicyClockResync(spacenode_policy::command::SignedCommand),
    /// TC[131,12]: a `RETIRE_WALLET` or `RETIRE_SAFE` command.
    PolicyRetire(spacenode_policy::command::SignedCommand),
    /// TC[132,1]: a sign request (evaluated at execution).
    SignRequest(Payload),
    /// TC[132,5]: an Ethereum sign request with its `SAFE_ADMIN_TX`
    /// command (payload reference to `cosign::AdminSignRequest`).
    SignAdminRequest(Payload),
    /// TC[131,11]: register a Safe (payload reference to a signed
    /// `REGISTER_SAFE` command).
    PolicyRegisterSafe(Payload),
    /// TC[134,1].
    FilesBegin(FileBegin),
    /// TC[134,2].
    FilesChunk(FileChunk),
    /// TC[134,3]: content id.
    FilesStatus([u8; 32]),
}

/// A TM to send, before sequence counts and time are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmBody {
    /// Source APID.
    pub apid: u16,
    /// Service type.
    pub service: u8,
    /// Subtype.
    pub subtype: u8,
    /// Destination (ground station) id, 0 for broadcast.
    pub dest_id: u16,
    /// Source data.
    pub data: Vec<u8>,
}

fn refuse(code: ReasonCode) -> FailureNotice {
    FailureNotice {
        code,
        data: Vec::new(),
    }
}

fn bad_data(e: &MsgError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

/// Acceptance: is this TC one the node serves, with well-formed data?
///
/// # Errors
/// The failure notice for TM[1,2].
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    let known_apids = [
        apid::CORE,
        apid::HK,
        apid::EVENTS,
        apid::LINK,
        apid::CHAIN,
        apid::KEYS,
        apid::MODE,
        apid::POLICY,
        apid::SIGN,
        apid::FILES,
    ];
    if !known_apids.contains(&tc.apid) {
        return Err(refuse(ReasonCode::UNKNOWN_APID));
    }
    match (tc.apid, tc.service, tc.subtype) {
        (apid::CORE, service::TEST, subtype::PING) if tc.app_data.is_empty() => Ok(Request::Ping),
        (apid::CORE, service::TEST, subtype::PING) => {
            Err(bad_data(&MsgError::Trailing(tc.app_data.len())))
        }
        (apid::HK, service::HK, subtype::HK_ONE_SHOT) => HkRequest::decode(&tc.app_data)
            .map(Request::Housekeeping)
            .map_err(|e| bad_data(&e)),
        (apid::EVENTS, service::EVENT, subtype::EVENT_DUMP) => EventDump::decode(&tc.app_data)
            .map(Request::EventDump)
            .map_err(|e| bad_data(&e)),
        (apid::LINK, service::LINK, subtype::LINK_REKEY) => Rekey::decode(&tc.app_data)
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
        // A batch that does not decode is malformed application data, refused
        // at acceptance with the batch's own (more precise) reason code.
        (apid::CHAIN, service::CHAIN, subtype::CHAIN_HEADERS) => HeaderBatch::decode(&tc.app_data)
            .map(Request::ChainHeaders)
            .map_err(|e| FailureNotice {
                code: ReasonCode(e.code()),
                data: chain::failure_data(0, &e.to_string()),
            }),
        (apid::CHAIN, service::CHAIN, subtype::CHAIN_STATUS_REQUEST) if !tc.app_data.is_empty() => {
            Err(bad_data(&MsgError::Trailing(tc.app_data.len())))
        }
        (apid::CHAIN, service::CHAIN, subtype::CHAIN_STATUS_REQUEST) => Ok(Request::ChainStatus),
        (apid::CHAIN, service::CHAIN, subtype::CHAIN_CLEAR_DEEP_REORG)
            if tc.app_data.is_empty() =>
        {
            Ok(Request::ChainClearDeepReorg(None))
        }
        (apid::CHAIN, service::CHAIN, subtype::CHAIN_CLEAR_DEEP_REORG) => {
            signed_command(&tc.app_data).map(|c| Request::ChainClearDeepReorg(Some(c)))
        }
        (apid::KEYS, service::KEYS, subtype::KEYS_ATTEST) => {
            <[u8; 32]>::try_from(tc.app_data.as_slice())
                .map(Request::KeysAttest)
                .map_err(|_| {
                    bad_data(&MsgError::Invalid {
                        field: "nonce length",
                        value: tc.app_data.len() as u64,
                    })
                })
        }
        (apid::KEYS, service::KEYS, subtype::KEYS_XPUB_REQUEST) => {
            std::str::from_utf8(&tc.app_data)
                .ok()
                .filter(|p| p.len() <= 128)
                .and_then(|p| p.parse::<bitcoin::bip32::DerivationPath>().ok())
                .map(Request::KeysXpub)
                .ok_or_else(|| FailureNotice {
                    code: ReasonCode::BAD_APP_DATA,
                    data: b"expected a bip32 path like m/48'/0'/0'/2'".to_vec(),
                })
        }
        (apid::MODE, service::MODE, subtype::MODE_STATUS_REQUEST | subtype::MODE_ENTER_SAFE)
            if !tc.app_data.is_empty() =>
        {
            Err(bad_data(&MsgError::Trailing(tc.app_data.len())))
        }
        (apid::MODE, service::MODE, subtype::MODE_STATUS_REQUEST) => Ok(Request::ModeStatus),
        (apid::MODE, service::MODE, subtype::MODE_ENTER_SAFE) => Ok(Request::ModeEnterSafe),
        (apid::MODE, service::MODE, subtype::MODE_EXIT) => {
            spacenode_policy::command::SignedCommand::decode(&tc.app_data)
                .map(Request::ModeExit)
                .map_err(|e| FailureNotice {
                    code: ReasonCode(e.code()),
                    data: e.to_string().into_bytes(),
                })
        }
        (apid::MODE, service::MODE, subtype::HEALTH_TEST_HANG) => match tc.app_data.as_slice() {
            [task] => Ok(Request::TestHang(*task)),
            _ => Err(bad_data(&MsgError::Invalid {
                field: "task",
                value: tc.app_data.len() as u64,
            })),
        },
        (apid::POLICY, service::POLICY, subtype::POLICY_PROPOSE) => Payload::decode(&tc.app_data)
            .map(Request::PolicyPropose)
            .map_err(|e| bad_data(&e)),
        (apid::POLICY, service::POLICY, subtype::POLICY_VETO) => {
            signed_command(&tc.app_data).map(Request::PolicyVeto)
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_CLOCK_RESYNC) => {
            signed_command(&tc.app_data).map(Request::PolicyClockResync)
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_RETIRE) => {
            signed_command(&tc.app_data).map(Request::PolicyRetire)
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_STATUS_REQUEST)
            if !tc.app_data.is_empty() =>
        {
            Err(bad_data(&MsgError::Trailing(tc.app_data.len())))
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_STATUS_REQUEST) => {
            Ok(Request::PolicyStatus)
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_REGISTER_WALLET) => {
            Payload::decode(&tc.app_data)
                .map(Request::PolicyRegisterWallet)
                .map_err(|e| bad_data(&e))
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_AUDIT_REQUEST) => {
            AuditRequest::decode(&tc.app_data)
                .map(Request::PolicyAudit)
                .map_err(|e| bad_data(&e))
        }
        (apid::POLICY, service::POLICY, subtype::POLICY_DOCUMENT_REQUEST) => {
            match tc.app_data.as_slice() {
                [which @ (0 | 1)] => Ok(Request::PolicyDocument(*which)),
                _ => Err(bad_data(&MsgError::Invalid {
                    field: "document (0 active, 1 pending)",
                    value: tc.app_data.first().copied().unwrap_or(0xFF).into(),
                })),
            }
        }
        (apid::SIGN, service::SIGN, subtype::SIGN_REQUEST) => Payload::decode(&tc.app_data)
            .map(Request::SignRequest)
            .map_err(|e| bad_data(&e)),
        (apid::SIGN, service::SIGN, subtype::SIGN_ADMIN_REQUEST) => Payload::decode(&tc.app_data)
            .map(Request::SignAdminRequest)
            .map_err(|e| bad_data(&e)),
        (apid::POLICY, service::POLICY, subtype::POLICY_REGISTER_SAFE) => {
            Payload::decode(&tc.app_data)
                .map(Request::PolicyRegisterSafe)
                .map_err(|e| bad_data(&e))
        }
        (apid::FILES, service::FILES, subtype::FILES_BEGIN) => FileBegin::decode(&tc.app_data)
            .map(Request::FilesBegin)
            .map_err(|e| bad_data(&e)),
        (apid::FILES, service::FILES, subtype::FILES_CHUNK) => FileChunk::decode(&tc.app_data)
            .map(Request::FilesChunk)
            .map_err(|e| bad_data(&e)),
        (apid::FILES, service::FILES, subtype::FILES_STATUS_REQUEST) => {
            <[u8; 32]>::try_from(tc.app_data.as_slice())
                .map(Request::FilesStatus)
                .map_err(|_| {
                    bad_data(&MsgError::Invalid {
                        field: "content id length",
                        value: tc.app_data.len() as u64,
                    })
                })
        }
        _ => Err(refuse(ReasonCode::UNKNOWN_SERVICE)),
    }
}

fn signed_command(data: &[u8]) -> Result<spacenode_policy::command::SignedCommand, FailureNotice> {
    spacenode_policy::command::SignedCommand::decode(data).map_err(|e| FailureNotice {
        code: ReasonCode(e.code()),
        data: e.to_string().into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_known_requests() {
        assert_eq!(
            accept(&Tc::new(apid::CORE, 1, 17, 1, vec![])),
            Ok(Request::Ping)
        );
        assert!(matches!(
            accept(&Tc::new(apid::HK, 1, 3, 27, vec![1, 1])),
            Ok(Request::Housekeeping(HkRequest { structures })) if structures == vec![1]
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
            Ok(Request::SignRequest(Payload::Inline(vec![1, 2, 3])))
        );
        assert_eq!(
            accept(&Tc::new(apid::POLICY, 1, 131, 1, inline)),
            Ok(Request::PolicyPropose(Payload::Inline(vec![1, 2, 3])))
        );
        assert_eq!(
            accept(&Tc::new(apid::SIGN, 1, 132, 1, vec![9]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
        assert_eq!(
            accept(&Tc::new(apid::POLICY, 1, 131, 3, vec![])),
            Ok(Request::PolicyStatus)
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
            Ok(Request::FilesBegin(begin))
        );
        assert_eq!(
            accept(&Tc::new(apid::FILES, 1, 134, 3, vec![5; 32])),
            Ok(Request::FilesStatus([5; 32]))
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
        assert_eq!(accept(&tc), Ok(Request::ChainHeaders(batch)));
        // Truncated batch: the batch's own code, height 0 in the data.
        let f = accept(&Tc::new(apid::CHAIN, 1, 129, 1, vec![1, 5, 1])).unwrap_err();
        assert_eq!(f.code, ReasonCode(0x0340));
        assert_eq!(&f.data[..4], &[0, 0, 0, 0]);
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 2, vec![])),
            Ok(Request::ChainStatus)
        );
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 2, vec![0]))
                .unwrap_err()
                .code,
            ReasonCode::BAD_APP_DATA
        );
        assert_eq!(
            accept(&Tc::new(apid::CHAIN, 1, 129, 4, vec![])),
            Ok(Request::ChainClearDeepReorg(None))
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
