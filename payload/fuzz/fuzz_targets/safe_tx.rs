//! Uplinked Safe transactions (canonical CBOR SafeTx), MultiSend and
//! approveHash calldata, decoded on their own and, in a correctly approved
//! sign request of the demo's registered Safe, through every check of the
//! owner-signature path. Never panics.
//!
//! The decision runs only for SafeTx bytes that decode: for the others the
//! engine's answer is the decoder's refusal (it decodes first, with the
//! same `SafeTx::decode`), which its unit tests cover, and an approved
//! request costs a hundred times the decode. The node's derived keys are
//! built once.
#![no_main]

#[path = "common/cached_keys.rs"]
mod cached_keys;
#[path = "common/eth_demo.rs"]
mod eth_demo;

use eth_demo::EthCtx;
use libfuzzer_sys::fuzz_target;
use spacenode_eth::abi;
use spacenode_eth::engine::Authority;
use spacenode_eth::safe::SafeTx;
use spacenode_policy::request::EthKind;

thread_local! {
    static CTX: Option<EthCtx> = EthCtx::new();
}

fuzz_target!(|data: &[u8]| {
    let _ = abi::decode_multisend(data);
    let _ = abi::decode_approve_hash(data);
    let Ok(tx) = SafeTx::decode(data) else {
        return;
    };
    let _ = abi::decode_multisend(&tx.data);
    CTX.with(|ctx| {
        let Some(ctx) = ctx else { return };
        let request = ctx
            .demo
            .request([8; 32], EthKind::SafeSignature, 0, vec![], data.to_vec());
        let _ = ctx
            .demo
            .evaluate_with(&ctx.keys, &request, Authority::Ground);
    });
});
