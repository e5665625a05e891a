//! Uplinked Ethereum transactions (legacy, EIP-2930, EIP-1559; unsigned and
//! signed RLP) and their calldata (ERC-20), decoded on their own and, in a
//! correctly approved sign request, through every check of the demo
//! policy (`spacenode_eth::demo`). Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacenode_eth::abi;
use spacenode_testkit::eth::EthDemo;
use spacenode_eth::engine::Authority;
use spacenode_eth::tx::{UnsignedTx, decode_signed};
use spacenode_policy::request::EthKind;

thread_local! {
    static DEMO: Option<EthDemo> = EthDemo::new().ok();
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_signed(data);
    let _ = abi::decode_erc20(data);
    let _ = UnsignedTx::decode(data);
    // First byte: the account; the rest: the transaction.
    let Some((&account, tx)) = data.split_first() else {
        return;
    };
    DEMO.with(|demo| {
        let Some(demo) = demo else { return };
        let request = demo.request(
            [9; 32],
            EthKind::Transaction,
            u32::from(account % 4),
            tx.to_vec(),
            vec![],
        );
        let _ = demo.evaluate(&request, Authority::Ground);
    });
});
