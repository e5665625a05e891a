//! Property tests on the whole decision: no uplinked byte string, as an
//! unsigned transaction, a Safe transaction or MultiSend calldata, makes
//! the engine panic, and whatever it approves is exactly what it decoded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test code"
)]

use std::sync::OnceLock;

use alloy_consensus::SignableTransaction;
use alloy_primitives::{Bytes, U256};
use proptest::prelude::*;
use spacenode_eth::abi::{InnerCall, Operation, encode_multisend};
use spacenode_eth::engine::{Authority, Outcome};
use spacenode_eth::tx::{UnsignedTx, decode_signed};
use spacenode_policy::request::EthKind;
use spacenode_testkit::eth::{EthDemo, addr};

fn demo() -> &'static EthDemo {
    static D: OnceLock<EthDemo> = OnceLock::new();
    D.get_or_init(|| EthDemo::new().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_transaction_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let d = demo();
        let r = d.request([1; 32], EthKind::Transaction, 0, b.clone(), vec![]);
        match d.evaluate(&r, Authority::Ground).unwrap() {
            Outcome::Approved(a) => {
                let (t, _) = decode_signed(&a.result.raw_tx).unwrap();
                prop_assert_eq!(t.encoded_for_signing(), b);
            }
            Outcome::Refused(_) => {}
            Outcome::Replay(_) => prop_assert!(false, "replay"),
        }
    }

    #[test]
    fn mutated_transactions_sign_only_what_was_decoded(i in 0usize..512, x in 1u8..=255) {
        let d = demo();
        let mut b = d.eip1559(addr::VENDOR, 1_000, vec![], 0).encoded_for_signing();
        let i = i % b.len();
        b[i] ^= x;
        let r = d.request([2; 32], EthKind::Transaction, 0, b.clone(), vec![]);
        if let Outcome::Approved(a) = d.evaluate(&r, Authority::Ground).unwrap() {
            let (t, _) = decode_signed(&a.result.raw_tx).unwrap();
            prop_assert_eq!(&t, &UnsignedTx::decode(&b).unwrap());
            prop_assert_eq!(t.encoded_for_signing(), b);
        }
    }

    #[test]
    fn any_safe_tx_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let d = demo();
        let r = d.request([3; 32], EthKind::SafeSignature, 0, vec![], b);
        let _ = d.evaluate(&r, Authority::Ground).unwrap();
    }

    #[test]
    fn any_multisend_calldata(b in proptest::collection::vec(any::<u8>(), 0..600), keep in 0usize..200) {
        let d = demo();
        // Random bytes, and a valid batch with a random tail spliced in.
        let mut valid = encode_multisend(&[InnerCall {
            operation: Operation::Call,
            to: addr::VENDOR,
            value: U256::from(1),
            data: Bytes::new(),
        }]);
        valid.truncate(keep.min(valid.len()));
        valid.extend_from_slice(&b);
        for data in [b, valid] {
            let s = d.safe_tx(0, addr::MULTISEND, 0, data, Operation::DelegateCall, 0);
            let _ = d.evaluate(&d.safe_request(4, &s), Authority::Ground).unwrap();
        }
    }
}
