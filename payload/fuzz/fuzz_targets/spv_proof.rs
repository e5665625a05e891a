//! Uplinked SPV proofs: merkle branches and `gettxoutproof` (BIP37) bytes
//! with the transaction they prove, checked on their own and against a
//! regtest chain holding the demo's funding block. Never panics.
//!
//! Input layout: u16 BE length of the proof, the proof, then the
//! transaction bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacenode_chain::MerkleBranch;
use spacenode_chain::spv::{check_txoutproof, parse_transaction, verify_branch, verify_txoutproof};
use spacenode_testkit::btc::{Demo, DemoWallet};

thread_local! {
    static DEMO: Option<Demo> = Demo::new(DemoWallet::WshSortedMulti, 3, 50_000_000, 6).ok();
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_transaction(data);
    let _ = MerkleBranch::decode(data);
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (proof, tx) = rest.split_at(n);
    let _ = check_txoutproof(proof, tx);
    DEMO.with(|demo| {
        let Some(demo) = demo else { return };
        let state = demo.chain.state();
        let _ = verify_txoutproof(state, proof, tx);
        if let Ok(branch) = MerkleBranch::decode(proof) {
            let _ = verify_branch(state, &branch, tx);
        }
    });
});
