//! Operator-uploaded policy documents (canonical CBOR): the signed wrapper,
//! the document decoder and the quorum check against the demo's
//! administrator set. Never panics; a document that decodes re-encodes to
//! the same bytes (the decoder accepts only canonical encodings).
#![no_main]

use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use libfuzzer_sys::fuzz_target;
use spacenode_policy::document::{PolicyDocument, SignedPolicy};
use spacenode_policy::quorum::AdminSet;
use spacenode_testkit::btc::{Demo, DemoWallet};

thread_local! {
    static CTX: Option<(Secp256k1<VerifyOnly>, AdminSet)> = {
        let demo = Demo::new(DemoWallet::WshSortedMulti, 1, 50_000_000, 1).ok();
        demo.and_then(|d| d.policy.active.document.admins.admin_set().ok())
            .map(|admins| (Secp256k1::verification_only(), admins))
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = PolicyDocument::decode(data) {
        assert_eq!(
            doc.encode(),
            data,
            "decoded document re-encodes differently"
        );
    }
    if let Ok(signed) = SignedPolicy::decode(data) {
        CTX.with(|ctx| {
            if let Some((secp, admins)) = ctx {
                let _ = signed.verify(secp, admins);
            }
        });
    }
});
