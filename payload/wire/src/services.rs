//! APIDs and PUS service/subtype numbers: the addressing table of every
//! message the node and ground exchange. `docs/wire.md` prints this table;
//! a test keeps the two in step.
//!
//! Standard services keep their ECSS numbers; mission services use the
//! private range (128 and up). Each service has its own APID so the ground can
//! route and filter by application. This module must never carry behaviour.

/// Application process ids.
pub mod apid {
    /// Core: PUS 17 test (ping). Verification reports come from the APID of
    /// the TC they verify.
    pub const CORE: u16 = 0x010;
    /// PUS 3 housekeeping.
    pub const HK: u16 = 0x011;
    /// PUS 5 events.
    pub const EVENTS: u16 = 0x012;
    /// Link management (rekey).
    pub const LINK: u16 = 0x020;
    /// Bitcoin header chain and SPV.
    pub const CHAIN: u16 = 0x030;
    /// Key custody and attestation.
    pub const KEYS: u16 = 0x040;
    /// Spending policy and audit.
    pub const POLICY: u16 = 0x050;
    /// Signing requests.
    pub const SIGN: u16 = 0x060;
    /// Modes and safe mode.
    pub const MODE: u16 = 0x070;
    /// File transfer and updates.
    pub const FILES: u16 = 0x080;
}

/// PUS service type numbers.
pub mod service {
    /// ST[01] request verification.
    pub const VERIFICATION: u8 = 1;
    /// ST[03] housekeeping.
    pub const HK: u8 = 3;
    /// ST[05] event reporting.
    pub const EVENT: u8 = 5;
    /// ST[17] test.
    pub const TEST: u8 = 17;
    /// Mission: link management.
    pub const LINK: u8 = 128;
    /// Mission: Bitcoin header chain (and, later, SPV proofs).
    pub const CHAIN: u8 = 129;
    /// Mission: key custody and attestation.
    pub const KEYS: u8 = 130;
    /// Mission: spending policy, wallets and the audit log.
    pub const POLICY: u8 = 131;
    /// Mission: signing requests.
    pub const SIGN: u8 = 132;
    /// Mission: modes and health.
    pub const MODE: u8 = 133;
    /// Mission: resumable uploads of payloads larger than one frame.
    pub const FILES: u8 = 134;
}

/// Message subtypes, per service.
pub mod subtype {
    /// TM[1,1] acceptance success.
    pub const ACCEPT_OK: u8 = 1;
    /// TM[1,2] acceptance failure.
    pub const ACCEPT_FAIL: u8 = 2;
    /// TM[1,3] start of execution success.
    pub const START_OK: u8 = 3;
    /// TM[1,4] start of execution failure.
    pub const START_FAIL: u8 = 4;
    /// TM[1,7] completion success.
    pub const COMPLETE_OK: u8 = 7;
    /// TM[1,8] completion failure.
    pub const COMPLETE_FAIL: u8 = 8;

    /// TC[3,27] generate a one-shot report of housekeeping structures.
    pub const HK_ONE_SHOT: u8 = 27;
    /// TM[3,25] housekeeping parameter report.
    pub const HK_REPORT: u8 = 25;

    /// TM[5,1] informative event.
    pub const EVENT_INFO: u8 = 1;
    /// TM[5,2] low-severity anomaly.
    pub const EVENT_LOW: u8 = 2;
    /// TM[5,3] medium-severity anomaly.
    pub const EVENT_MEDIUM: u8 = 3;
    /// TM[5,4] high-severity anomaly.
    pub const EVENT_HIGH: u8 = 4;
    /// TC[5,128] re-send the most recent stored events (mission subtype).
    pub const EVENT_DUMP: u8 = 128;

    /// TC[17,1] are-you-alive test.
    pub const PING: u8 = 1;
    /// TM[17,2] are-you-alive report.
    pub const PONG: u8 = 2;

    /// TC[128,1] install a new link key and switch to it.
    pub const LINK_REKEY: u8 = 1;

    /// TC[129,1] validate and apply one batch of block headers.
    pub const CHAIN_HEADERS: u8 = 1;
    /// TC[129,2] request the chain status.
    pub const CHAIN_STATUS_REQUEST: u8 = 2;
    /// TM[129,3] chain status report.
    pub const CHAIN_STATUS: u8 = 3;
    /// TC[129,4] acknowledge (clear) the deep-reorg flag.
    pub const CHAIN_CLEAR_DEEP_REORG: u8 = 4;

    /// TC[130,1] attest: a TPM quote binding the nonce, xpubs, policy hash
    /// and anti-rollback counter.
    pub const KEYS_ATTEST: u8 = 1;
    /// TM[130,2] the attestation.
    pub const KEYS_ATTESTATION: u8 = 2;
    /// TC[130,3] export the xpub at a derivation path.
    pub const KEYS_XPUB_REQUEST: u8 = 3;
    /// TM[130,4] fingerprint and xpub.
    pub const KEYS_XPUB: u8 = 4;

    /// TC[131,1] propose a quorum-signed policy document (payload
    /// reference: inline or a completed upload).
    pub const POLICY_PROPOSE: u8 = 1;
    /// TC[131,2] veto the pending policy change: an administrator command
    /// of kind `VETO_POLICY`.
    pub const POLICY_VETO: u8 = 2;
    /// TC[131,3] request the policy status.
    pub const POLICY_STATUS_REQUEST: u8 = 3;
    /// TM[131,4] policy status: active and pending version, hash and times,
    /// wallets, audit head.
    pub const POLICY_STATUS: u8 = 4;
    /// TC[131,5] register a wallet: an administrator command of kind
    /// `REGISTER_WALLET` (payload reference).
    pub const POLICY_REGISTER_WALLET: u8 = 5;
    /// TC[131,6] request audit entries from a sequence number.
    pub const POLICY_AUDIT_REQUEST: u8 = 6;
    /// TM[131,7] one audit entry with its receipt (fragmented if large).
    pub const POLICY_AUDIT_ENTRY: u8 = 7;
    /// TC[131,8] request the active (0) or pending (1) policy document.
    pub const POLICY_DOCUMENT_REQUEST: u8 = 8;
    /// TM[131,9] a policy document's canonical bytes (fragmented).
    pub const POLICY_DOCUMENT: u8 = 9;
    /// TC[131,10] accept a node time the clock guard refused: an
    /// administrator command of kind `CLOCK_RESYNC`.
    pub const POLICY_CLOCK_RESYNC: u8 = 10;
    /// TC[131,11] register a Safe: an administrator command of kind
    /// `REGISTER_SAFE` (payload reference).
    pub const POLICY_REGISTER_SAFE: u8 = 11;
    /// TC[131,12] retire a registered wallet or Safe: an administrator
    /// command of kind `RETIRE_WALLET` (body: wallet id) or `RETIRE_SAFE`
    /// (body: chain id u64 BE | Safe address 20).
    pub const POLICY_RETIRE: u8 = 12;
    /// TM[131,13] the signed checkpoint of the archived audit prefix
    /// (`AuditCheckpoint`), sent before the entries when an audit request
    /// starts at or below it.
    pub const POLICY_AUDIT_CHECKPOINT: u8 = 13;

    /// TC[132,1] a sign request (payload reference: inline or a completed
    /// upload).
    pub const SIGN_REQUEST: u8 = 1;
    /// TM[132,2] the node's partial signatures (fragmented if large).
    pub const SIGN_RESULT: u8 = 2;
    /// TM[132,3] the audit entry of the decision with its receipt
    /// (fragmented if large).
    pub const SIGN_AUDIT_RECORD: u8 = 3;
    /// TM[132,4] the node's answer to an approved Ethereum request: the
    /// signed transaction or Safe owner signature (fragmented if large).
    pub const SIGN_ETH_RESULT: u8 = 4;
    /// TC[132,5] an Ethereum sign request with the administrator command
    /// (`SAFE_ADMIN_TX`) that authorises its Safe self-calls (payload
    /// reference to `wire::cosign::AdminSignRequest`).
    pub const SIGN_ADMIN_REQUEST: u8 = 5;

    /// TC[133,1] request the mode status.
    pub const MODE_STATUS_REQUEST: u8 = 1;
    /// TM[133,2] mode status.
    pub const MODE_STATUS: u8 = 2;
    /// TC[133,3] enter safe mode (link-authenticated; no quorum needed).
    pub const MODE_ENTER_SAFE: u8 = 3;
    /// TC[133,4] leave safe mode: a quorum-signed administrator command.
    pub const MODE_EXIT: u8 = 4;
    /// TC[133,5] test hook: hang a task (development profile with
    /// `health.test_hooks` only).
    pub const HEALTH_TEST_HANG: u8 = 5;
    /// TM[133,6] safe-mode beacon, signed by the node's receipt key.
    pub const MODE_BEACON: u8 = 6;

    /// TC[134,1] begin (or resume) an upload: content id and length.
    pub const FILES_BEGIN: u8 = 1;
    /// TC[134,2] one chunk of an upload.
    pub const FILES_CHUNK: u8 = 2;
    /// TC[134,3] request the status of an upload.
    pub const FILES_STATUS_REQUEST: u8 = 3;
    /// TM[134,4] upload status with the missing ranges.
    pub const FILES_STATUS: u8 = 4;
}

/// Direction of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ground to node.
    Tc,
    /// Node to ground.
    Tm,
}

/// One row of the addressing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageDef {
    /// TC or TM.
    pub kind: Kind,
    /// APID it travels on (`None`: the APID of the TC it answers).
    pub apid: Option<u16>,
    /// Service type.
    pub service: u8,
    /// Subtype.
    pub subtype: u8,
    /// Short name used in logs and by the ground tool.
    pub name: &'static str,
}

const fn tc(apid: u16, service: u8, subtype: u8, name: &'static str) -> MessageDef {
    MessageDef {
        kind: Kind::Tc,
        apid: Some(apid),
        service,
        subtype,
        name,
    }
}

const fn tm(apid: Option<u16>, service: u8, subtype: u8, name: &'static str) -> MessageDef {
    MessageDef {
        kind: Kind::Tm,
        apid,
        service,
        subtype,
        name,
    }
}

/// Every message of the protocol.
pub const MESSAGES: &[MessageDef] = &[
    tm(
        None,
        service::VERIFICATION,
        subtype::ACCEPT_OK,
        "verify.accept-ok",
    ),
    tm(
        None,
        service::VERIFICATION,
        subtype::ACCEPT_FAIL,
        "verify.accept-fail",
    ),
    tm(
        None,
        service::VERIFICATION,
        subtype::START_OK,
        "verify.start-ok",
    ),
    tm(
        None,
        service::VERIFICATION,
        subtype::START_FAIL,
        "verify.start-fail",
    ),
    tm(
        None,
        service::VERIFICATION,
        subtype::COMPLETE_OK,
        "verify.complete-ok",
    ),
    tm(
        None,
        service::VERIFICATION,
        subtype::COMPLETE_FAIL,
        "verify.complete-fail",
    ),
    tc(apid::HK, service::HK, subtype::HK_ONE_SHOT, "hk.request"),
    tm(Some(apid::HK), service::HK, subtype::HK_REPORT, "hk.report"),
    tm(
        Some(apid::EVENTS),
        service::EVENT,
        subtype::EVENT_INFO,
        "event.info",
    ),
    tm(
        Some(apid::EVENTS),
        service::EVENT,
        subtype::EVENT_LOW,
        "event.low",
    ),
    tm(
        Some(apid::EVENTS),
        service::EVENT,
        subtype::EVENT_MEDIUM,
        "event.medium",
    ),
    tm(
        Some(apid::EVENTS),
        service::EVENT,
        subtype::EVENT_HIGH,
        "event.high",
    ),
    tc(
        apid::EVENTS,
        service::EVENT,
        subtype::EVENT_DUMP,
        "event.dump",
    ),
    tc(apid::CORE, service::TEST, subtype::PING, "test.ping"),
    tm(Some(apid::CORE), service::TEST, subtype::PONG, "test.pong"),
    tc(apid::LINK, service::LINK, subtype::LINK_REKEY, "link.rekey"),
    tc(
        apid::CHAIN,
        service::CHAIN,
        subtype::CHAIN_HEADERS,
        "chain.headers",
    ),
    tc(
        apid::CHAIN,
        service::CHAIN,
        subtype::CHAIN_STATUS_REQUEST,
        "chain.status-request",
    ),
    tm(
        Some(apid::CHAIN),
        service::CHAIN,
        subtype::CHAIN_STATUS,
        "chain.status",
    ),
    tc(
        apid::CHAIN,
        service::CHAIN,
        subtype::CHAIN_CLEAR_DEEP_REORG,
        "chain.clear-deep-reorg",
    ),
    tc(
        apid::KEYS,
        service::KEYS,
        subtype::KEYS_ATTEST,
        "keys.attest",
    ),
    tm(
        Some(apid::KEYS),
        service::KEYS,
        subtype::KEYS_ATTESTATION,
        "keys.attestation",
    ),
    tc(
        apid::KEYS,
        service::KEYS,
        subtype::KEYS_XPUB_REQUEST,
        "keys.xpub-request",
    ),
    tm(
        Some(apid::KEYS),
        service::KEYS,
        subtype::KEYS_XPUB,
        "keys.xpub",
    ),
    tc(
        apid::MODE,
        service::MODE,
        subtype::MODE_STATUS_REQUEST,
        "mode.status-request",
    ),
    tm(
        Some(apid::MODE),
        service::MODE,
        subtype::MODE_STATUS,
        "mode.status",
    ),
    tc(
        apid::MODE,
        service::MODE,
        subtype::MODE_ENTER_SAFE,
        "mode.enter-safe",
    ),
    tc(apid::MODE, service::MODE, subtype::MODE_EXIT, "mode.exit"),
    tc(
        apid::MODE,
        service::MODE,
        subtype::HEALTH_TEST_HANG,
        "health.test-hang",
    ),
    tm(
        Some(apid::MODE),
        service::MODE,
        subtype::MODE_BEACON,
        "mode.beacon",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_PROPOSE,
        "policy.propose",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_VETO,
        "policy.veto",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_STATUS_REQUEST,
        "policy.status-request",
    ),
    tm(
        Some(apid::POLICY),
        service::POLICY,
        subtype::POLICY_STATUS,
        "policy.status",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_REGISTER_WALLET,
        "policy.register-wallet",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_AUDIT_REQUEST,
        "policy.audit-request",
    ),
    tm(
        Some(apid::POLICY),
        service::POLICY,
        subtype::POLICY_AUDIT_ENTRY,
        "policy.audit-entry",
    ),
    tm(
        Some(apid::POLICY),
        service::POLICY,
        subtype::POLICY_AUDIT_CHECKPOINT,
        "policy.audit-checkpoint",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_DOCUMENT_REQUEST,
        "policy.document-request",
    ),
    tm(
        Some(apid::POLICY),
        service::POLICY,
        subtype::POLICY_DOCUMENT,
        "policy.document",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_CLOCK_RESYNC,
        "policy.clock-resync",
    ),
    tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_REGISTER_SAFE,
        "policy.register-safe",
    ),
    tc(
        apid::SIGN,
        service::SIGN,
        subtype::SIGN_REQUEST,
        "sign.request",
    ),
    tm(
        Some(apid::SIGN),
        service::SIGN,
        subtype::SIGN_RESULT,
        "sign.result",
    ),
    tm(
        Some(apid::SIGN),
        service::SIGN,
        subtype::SIGN_AUDIT_RECORD,
        "sign.audit-record",
    ),
    tm(
        Some(apid::SIGN),
        service::SIGN,
        subtype::SIGN_ETH_RESULT,
        "sign.eth-result",
    ),
    tc(
        apid::SIGN,
        service::SIGN,
        subtype::SIGN_ADMIN_REQUEST,
        "sign.admin-request",
    ),
    tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_BEGIN,
        "files.begin",
    ),
    tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_CHUNK,
        "files.chunk",
    ),
    tc(
        apid::FILES,
        service::FILES,
        subtype::FILES_STATUS_REQUEST,
        "files.status-request",
    ),
    tm(
        Some(apid::FILES),
        service::FILES,
        subtype::FILES_STATUS,
        "files.status",
    ),
];

/// The table row for a message, if the protocol defines it.
#[must_use]
pub fn lookup(kind: Kind, apid: u16, service: u8, subtype: u8) -> Option<&'static MessageDef> {
    MESSAGES.iter().find(|m| {
        m.kind == kind
            && m.service == service
            && m.subtype == subtype
            && m.apid.is_none_or(|a| a == apid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_unique() {
        for (i, a) in MESSAGES.iter().enumerate() {
            for b in &MESSAGES[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(
                    !(a.kind == b.kind
                        && a.service == b.service
                        && a.subtype == b.subtype
                        && a.apid == b.apid),
                    "{} and {} share an address",
                    a.name,
                    b.name
                );
            }
        }
    }

    #[test]
    fn docs_list_every_message() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/wire.md"))
                .expect("docs/wire.md exists");
        for m in MESSAGES {
            assert!(
                doc.contains(&format!("`{}`", m.name)),
                "docs/wire.md lacks `{}`",
                m.name
            );
        }
    }
}
