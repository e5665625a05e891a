//! Uplinked administrator commands: `SignedCommand` and `Command` decoding
//! and authorisation (target, validity window, sequence, quorum) against
//! the demo's administrators. Never panics.
#![no_main]

use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use libfuzzer_sys::fuzz_target;
use spacenode_policy::command::{Command, Executed, SignedCommand};
use spacenode_policy::quorum::AdminSet;
use spacenode_testkit::btc::{Demo, DemoWallet, NODE_ID};

thread_local! {
    static CTX: Option<(Secp256k1<VerifyOnly>, AdminSet, i64)> = {
        let demo = Demo::new(DemoWallet::WshSortedMulti, 1, 50_000_000, 1).ok();
        demo.and_then(|d| {
            let now = d.now.0;
            d.policy.active.document.admins.admin_set().ok().map(|a| (a, now))
        })
        .map(|(admins, now)| (Secp256k1::verification_only(), admins, now))
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        assert_eq!(Command::decode(&cmd.encode()).ok(), Some(cmd));
    }
    if let Ok(signed) = SignedCommand::decode(data) {
        CTX.with(|ctx| {
            if let Some((secp, admins, now)) = ctx {
                let _ = signed.authorize(secp, admins, NODE_ID, Executed::default(), *now);
                // The rekey body decoder is uplinked too (REKEY_LINK).
                if let Ok(cmd) = Command::decode(&signed.command) {
                    let _ = spacenode_policy::command::RekeyBody::decode(&cmd.body);
                }
            }
        });
    }
});
