//! Uplinked Ethereum transactions (legacy, EIP-2930, EIP-1559; unsigned and
//! signed RLP) and their calldata (ERC-20), decoded on their own and, in a
//! correctly approved sign request, through every check of the demo
//! policy (`spacenode_testkit::eth`). Never panics.
//!
//! The decision runs only for transactions that decode: for the others
//! the engine's answer is the decoder's refusal (it decodes first, with the
//! same `UnsignedTx::decode`), which its unit tests cover, and an approved
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
use spacenode_eth::tx::{UnsignedTx, decode_signed};
use spacenode_policy::request::EthKind;

thread_local! {
    static CTX: Option<EthCtx> = EthCtx::new();
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_signed(data);
    let _ = abi::decode_erc20(data);
    let _ = UnsignedTx::decode(data);
    // First byte: the account; the rest: the transaction.
    let Some((&account, tx)) = data.split_first() else {
        return;
    };
    if UnsignedTx::decode(tx).is_err() {
        return;
    }
    CTX.with(|ctx| {
        let Some(ctx) = ctx else { return };
        let request = ctx.demo.request(
            [9; 32],
            EthKind::Transaction,
            u32::from(account % 4),
            tx.to_vec(),
            vec![],
        );
        let _ = ctx
            .demo
            .evaluate_with(&ctx.keys, &request, Authority::Ground);
    });
});
