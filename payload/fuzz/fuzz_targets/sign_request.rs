//! Uplinked sign requests: the wire's co-signing payloads, the signed
//! request envelope and the Bitcoin and Ethereum request bodies, with the
//! envelope checks (target, time, height, approvals) against the demo
//! policy. Never panics.
#![no_main]

use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use libfuzzer_sys::fuzz_target;
use spacenode_policy::TimeMs;
use spacenode_policy::document::KeySet;
use spacenode_policy::request::{EthSignRequest, SignRequest, SignedRequest};
use spacenode_testkit::btc::{Demo, DemoWallet, NODE_ID};
use spacenode_wire::cosign::Payload;

thread_local! {
    static CTX: Option<(Secp256k1<VerifyOnly>, KeySet, TimeMs, u32)> = {
        Demo::new(DemoWallet::WshSortedMulti, 1, 50_000_000, 1).ok().map(|d| {
            (
                Secp256k1::verification_only(),
                d.policy.active.document.approvers.clone(),
                d.now,
                d.chain.state().tip_height(),
            )
        })
    };
}

fuzz_target!(|data: &[u8]| {
    let _ = Payload::decode(data);
    let _ = SignRequest::decode(data);
    let _ = EthSignRequest::decode(data);
    if let Ok(signed) = SignedRequest::decode(data) {
        CTX.with(|ctx| {
            if let Some((secp, approvers, now, tip)) = ctx {
                let _ = signed.check_envelope(secp, NODE_ID, approvers, *now, *tip);
                let _ = signed.check_eth_envelope(secp, NODE_ID, approvers, *now);
            }
        });
    }
});
