//! Uplinked Safe transactions (canonical CBOR SafeTx), MultiSend and
//! approveHash calldata, decoded on their own and, in a correctly approved
//! sign request of the demo's registered Safe, through every check (owner
//! signature and approveHash paths). Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacenode_eth::abi;
use spacenode_testkit::eth::EthDemo;
use spacenode_eth::engine::Authority;
use spacenode_eth::safe::SafeTx;
use spacenode_policy::request::EthKind;

thread_local! {
    static DEMO: Option<EthDemo> = EthDemo::new().ok();
}

fuzz_target!(|data: &[u8]| {
    let _ = abi::decode_multisend(data);
    let _ = abi::decode_approve_hash(data);
    if let Ok(tx) = SafeTx::decode(data) {
        let _ = abi::decode_multisend(&tx.data);
    }
    DEMO.with(|demo| {
        let Some(demo) = demo else { return };
        let request = demo.request([8; 32], EthKind::SafeSignature, 0, vec![], data.to_vec());
        let _ = demo.evaluate(&request, Authority::Ground);
    });
});
