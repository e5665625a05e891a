//! Uplinked PSBT bytes (v0 and v2): the BIP174/BIP370 parser and, wrapped in
//! a correctly approved sign request of the demo wallet (fixed keys, chain,
//! policy and state from `spacenode_btc::demo`), every check the node runs
//! before signing. Never panics; a parsed v2 PSBT converts back to v2 bytes
//! that parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacenode_testkit::btc::{Demo, DemoWallet};
use spacenode_btc::psbt_v2;

thread_local! {
    static DEMO: Option<Demo> = Demo::new(DemoWallet::WshSortedMulti, 3, 50_000_000, 6).ok();
}

fuzz_target!(|data: &[u8]| {
    if let Ok((psbt, _version)) = psbt_v2::parse(data) {
        let v2 = psbt_v2::to_v2(&psbt);
        // What the converter writes, the parser reads.
        if let Err(e) = psbt_v2::parse(&v2) {
            panic!("to_v2 output does not parse: {e}");
        }
    }
    DEMO.with(|demo| {
        let Some(demo) = demo else { return };
        let request = demo.request([7; 32], data.to_vec(), demo.proofs(&[0, 1, 2]));
        let _ = demo.evaluate(&request);
    });
});
