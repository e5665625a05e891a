//! Everything an uplinked frame payload meets before and after
//! authentication: the envelope parser and receiver (with a known key, and
//! the same bytes also sealed so they get past the tag), the PUS TC and TM
//! decoders and every application-data decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacenode_wire::cosign::{
    AdminSignRequest, AuditRecord, AuditRequest, EthSignResult, FileBegin, FileChunk, FileStatus,
    Fragment, Payload, PolicyStatus, SignResult,
};
use spacenode_wire::msg::{Event, EventDump, HkCore, HkRequest, ModeStatus, Rekey, Verification};
use spacenode_wire::pus::{Tc, Tm};
use spacenode_wire::security::{Cipher, Direction, LinkKey, Receiver, RxKey, RxReservation};

fuzz_target!(|data: &[u8]| {
    let cipher = Cipher::new(1, &LinkKey::new([7; 32]));
    let mut rx = Receiver::new(Direction::Uplink);
    rx.insert(RxKey::new(cipher.clone(), RxReservation::resume(1, 64)));
    // Raw bytes as an envelope.
    let _ = rx.accept(data);
    // The same bytes as the plaintext of an authentic envelope.
    let sealed = cipher.seal(Direction::Uplink, 5, data).expect("seal");
    let accepted = rx.accept(&sealed).expect("authentic envelope is accepted");
    assert_eq!(accepted.plaintext, data);
    if let Ok(tc) = Tc::decode(data) {
        assert_eq!(
            Tc::decode(&tc.encode().expect("re-encode")).expect("round trip"),
            tc
        );
    }
    let _ = Tm::decode(data);
    if let Some((&sub, rest)) = data.split_first() {
        let _ = Verification::decode(sub, rest);
    }
    let _ = HkCore::decode(data);
    let _ = HkRequest::decode(data);
    let _ = Event::decode(data);
    let _ = EventDump::decode(data);
    let _ = Rekey::decode(data);
    let _ = ModeStatus::decode(data);
    // Co-signing: uploads, fragments, policy, sign and audit messages. The
    // documents inside (policy, admin commands, sign requests, PSBTs,
    // Ethereum transactions) are decoded by spacenode-policy/-btc/-eth,
    // whose property tests feed them arbitrary bytes.
    let _ = Payload::decode(data);
    let _ = FileBegin::decode(data);
    let _ = FileChunk::decode(data);
    let _ = FileStatus::decode(data);
    let _ = Fragment::decode(data);
    let _ = PolicyStatus::decode(data);
    let _ = AuditRequest::decode(data);
    let _ = AuditRecord::decode(data);
    let _ = SignResult::decode(data);
    let _ = EthSignResult::decode(data);
    let _ = AdminSignRequest::decode(data);
});
