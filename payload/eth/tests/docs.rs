//! docs/policy.md lists every rule tag and every Ethereum reason code.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use spacenode_eth::EthError;
use spacenode_policy::Rule;

#[test]
fn every_tag_and_code_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md"))
        .unwrap();
    for r in Rule::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", r.tag())),
            "tag {} missing from docs/policy.md",
            r.tag()
        );
    }
    let codes: Vec<u16> = (0x0700..=0x07FFu16)
        .filter(|c| doc.contains(&format!("| {c:#06X} |").replace("0X", "0x")))
        .collect();
    // Every variant's code is in the table (one sample value per variant).
    for e in samples() {
        assert!(
            codes.contains(&e.code()),
            "code {:#06x} ({e}) missing from docs/policy.md",
            e.code()
        );
    }
}

fn samples() -> Vec<EthError> {
    use alloy_primitives::Address;
    let a = Address::ZERO;
    vec![
        EthError::Rlp(String::new()),
        EthError::TxType(1),
        EthError::NonCanonical(""),
        EthError::Oversize { size: 0, max: 0 },
        EthError::Abi {
            function: "",
            detail: "",
        },
        EthError::MultiSend(""),
        EthError::SafeTx(String::new()),
        EthError::ChainNotAllowed(0),
        EthError::NoChainId,
        EthError::ChainMismatch { tx: 0, safe: 0 },
        EthError::NoEthRules,
        EthError::ContractCreation,
        EthError::NotAllowlisted {
            role: "",
            address: a,
            chain_id: 0,
        },
        EthError::UnknownCalldata {
            to: a,
            selector: String::new(),
        },
        EthError::ValueCap {
            chain_id: 0,
            amount: String::new(),
            cap: 0,
        },
        EthError::Velocity {
            chain_id: 0,
            detail: String::new(),
        },
        EthError::TokenCap {
            token: a,
            amount: String::new(),
            cap: 0,
        },
        EthError::TokenVelocity {
            token: a,
            detail: String::new(),
        },
        EthError::UnknownSpender {
            token: a,
            spender: a,
        },
        EthError::ApprovalAboveMax {
            token: a,
            spender: a,
            amount: String::new(),
            max: 0,
        },
        EthError::GasLimit {
            gas_limit: 0,
            max: 0,
        },
        EthError::MaxFee { fee: 0, max: 0 },
        EthError::PriorityFee { fee: 0, max: 0 },
        EthError::Delegatecall { to: a, detail: "" },
        EthError::AmountOverflow,
        EthError::NonceReuse {
            chain_id: 0,
            account: a,
            nonce: 0,
            previous: String::new(),
        },
        EthError::SafeCallOutsideSafePath {
            function: "",
            to: a,
        },
        EthError::SafeUnregistered {
            chain_id: 0,
            address: a,
        },
        EthError::SafeOwnerAccount {
            safe: a,
            account: 0,
            expected: 0,
        },
        EthError::SafeSelfCall {
            safe: a,
            function: "",
        },
        EthError::SafeRefund(String::new()),
        EthError::SafeNonceReuse {
            safe: a,
            nonce: String::new(),
            previous: String::new(),
        },
        EthError::SafeVersion(String::new()),
        EthError::SafeRegistration(String::new()),
        EthError::AdminAuthority {
            code: 0,
            detail: String::new(),
        },
        EthError::HashMismatch,
        EthError::SignatureSelfCheck { expected: a },
        EthError::Signer(String::new()),
    ]
}
