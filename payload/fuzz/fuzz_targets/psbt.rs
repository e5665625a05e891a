//! Uplinked PSBT bytes (v0 and v2): the BIP174/BIP370 parser and, wrapped in
//! a correctly approved sign request of the demo wallet (fixed keys, chain,
//! policy and state from `spacenode_testkit::btc`), every check the node runs
//! before signing. Never panics; a parsed PSBT of a version-2-or-above
//! transaction converts to v2 bytes that parse again.
//!
//! The decision runs only for bytes that parse: for the others the engine's
//! answer is the parser's refusal (`check_psbt` parses first, with the same
//! `psbt_v2::parse`), which the engine's unit tests cover, and building and
//! approving a request costs a hundred times the parse. The fixed parts
//! (demo, SPV proofs, the node's derived keys) are built once.
#![no_main]

#[path = "common/cached_keys.rs"]
mod cached_keys;

use bitcoin::bip32::DerivationPath;
use cached_keys::CachedKeys;
use libfuzzer_sys::fuzz_target;
use spacenode_btc::psbt_v2;
use spacenode_btc::signer::{BtcSigner, receipt_path};
use spacenode_policy::request::SpvProof;
use spacenode_testkit::btc::{Demo, DemoWallet};

struct Ctx {
    demo: Demo,
    proofs: Vec<SpvProof>,
    node: CachedKeys,
}

/// The cached store signs as the demo's node signer, or the target stops
/// at once (a harness that signs differently would test nothing).
fn same_as(node: &CachedKeys, demo: &Demo, paths: &[DerivationPath]) -> bool {
    node.master_fingerprint() == demo.node.master_fingerprint()
        && paths.iter().all(|p| {
            node.xpub(p).ok() == demo.node.xpub(p).ok()
                && node.sign_ecdsa(p, &[5; 32]).ok() == demo.node.sign_ecdsa(p, &[5; 32]).ok()
                && node.sign_schnorr(p, &[6; 32]).ok() == demo.node.sign_schnorr(p, &[6; 32]).ok()
        })
}

thread_local! {
    static CTX: Option<Ctx> = {
        let demo = Demo::new(DemoWallet::WshSortedMulti, 3, 50_000_000, 6).ok();
        demo.and_then(|demo| {
            let node = CachedKeys::new(&[1; 32])?;
            let paths = [receipt_path(), "m/48'/1'/0'/2'/0/0".parse().ok()?];
            assert!(
                same_as(&node, &demo, &paths),
                "cached keys differ from the demo's node signer"
            );
            let proofs = demo.proofs(&[0, 1, 2]);
            Some(Ctx { demo, proofs, node })
        })
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok((psbt, _version)) = psbt_v2::parse(data) else {
        return;
    };
    // What the converter writes, the parser reads, for every transaction a
    // v2 PSBT can carry (BIP370: version 2 or above; a v0 PSBT of a version
    // 0 or 1 transaction is valid and has no v2 form).
    if psbt.unsigned_tx.version.0 >= 2 {
        let v2 = psbt_v2::to_v2(&psbt);
        if let Err(e) = psbt_v2::parse(&v2) {
            panic!("to_v2 output does not parse: {e}");
        }
    }
    CTX.with(|ctx| {
        let Some(ctx) = ctx else { return };
        let request = ctx.demo.request([7; 32], data.to_vec(), ctx.proofs.clone());
        let _ = ctx.demo.evaluate_with(&ctx.node, &request);
    });
});
