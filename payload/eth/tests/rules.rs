//! One accepting and one refusing test per Ethereum rule tag, through the
//! whole decision (`engine::evaluate` on signed request envelopes), each
//! refusal checked for its reason code and tag.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test code"
)]

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use spacenode_eth::abi::{
    self, Erc20Call, InnerCall, Operation, address_word_of, encode_approve_hash, encode_erc20,
    encode_multisend, encode_words,
};
use spacenode_eth::engine::{Approval, Authority, EthResult, Outcome};
use spacenode_eth::error::Refusal;
use spacenode_eth::safe::Safe;
use spacenode_eth::signer::{FaultyKeys, SoftEthKeys};
use spacenode_eth::tx::{decode_signed, recover_sender};
use spacenode_policy::Rule;
use spacenode_policy::eth::selector;
use spacenode_policy::request::EthKind;
use spacenode_testkit::eth::{ETHER, EthDemo, GWEI, MAINNET, SEPOLIA, addr};

const G: Authority<'static> = Authority::Ground;

#[track_caller]
fn refused(o: &Outcome, rule: Rule, code: u16) -> Refusal {
    match o {
        Outcome::Refused(r) => {
            assert_eq!(
                (r.refusal.rule, r.refusal.code),
                (rule, code),
                "{}",
                r.refusal
            );
            assert_eq!(r.audit.entry.rule, rule.tag());
            assert_eq!(r.audit.entry.code, code);
            r.refusal.clone()
        }
        Outcome::Approved(a) => panic!(
            "approved {:?} where {rule} {code:#06x} was expected",
            a.result
        ),
        Outcome::Replay(_) => panic!("replay"),
    }
}

#[track_caller]
fn approved(o: &Outcome) -> Approval {
    match o {
        Outcome::Approved(a) => (**a).clone(),
        Outcome::Refused(r) => panic!("refused: {}", r.refusal),
        Outcome::Replay(_) => panic!("replay"),
    }
}

fn demo() -> EthDemo {
    EthDemo::new().unwrap()
}

trait SignTx {
    /// Submits an EIP-1559 transaction from account 0 through the engine.
    fn sign_tx(&mut self, id: u8, tx: &TxEip1559) -> Outcome;
}

impl SignTx for EthDemo {
    fn sign_tx(&mut self, id: u8, tx: &TxEip1559) -> Outcome {
        let r = self.tx_request(id, 0, tx);
        self.submit(&r, G).unwrap()
    }
}

fn usdc(call: Erc20Call) -> Vec<u8> {
    encode_erc20(&call)
}

#[test]
fn eth_chain_id() {
    let mut d = demo();
    let ok = d.eip1559(addr::VENDOR, ETHER / 10, vec![], 0);
    approved(&d.sign_tx(1, &ok));
    let mut polygon = ok.clone();
    polygon.chain_id = 137;
    refused(&d.sign_tx(2, &polygon), Rule::EthChainId, 0x0710);
    // A pre-EIP-155 legacy transaction is valid on every chain.
    let mut l = d.legacy(addr::EXCHANGE, 1, 0);
    l.chain_id = None;
    let o = d.submit(&d.tx_request(3, 0, &l), G).unwrap();
    refused(&o, Rule::EthChainId, 0x0711);
    // With its chain id it is signed (mainnet is allowed).
    let l = d.legacy(addr::EXCHANGE, 1, 0);
    approved(&d.submit(&d.tx_request(4, 0, &l), G).unwrap());
    // A policy without Ethereum rules signs nothing.
    let mut none = EthDemo::with_rules(None).unwrap();
    refused(&none.sign_tx(5, &ok), Rule::EthChainId, 0x0713);
}

#[test]
fn eth_allowlist() {
    let mut d = demo();
    approved(&d.sign_tx(1, &d.eip1559(addr::VENDOR, 1, vec![], 0)));
    refused(
        &d.sign_tx(2, &d.eip1559(addr::STRANGER, 1, vec![], 1)),
        Rule::EthAllowlist,
        0x0715,
    );
    // The exchange is allowlisted on Sepolia and mainnet, the vendor only on
    // Sepolia.
    let mut l = d.legacy(addr::VENDOR, 1, 1);
    l.chain_id = Some(MAINNET);
    refused(
        &d.submit(&d.tx_request(3, 0, &l), G).unwrap(),
        Rule::EthAllowlist,
        0x0715,
    );
    let mut create = d.eip1559(addr::VENDOR, 0, vec![0x60, 0x00], 1);
    create.to = TxKind::Create;
    refused(&d.sign_tx(4, &create), Rule::EthAllowlist, 0x0714);
    // Token recipients are destinations too.
    let t = usdc(Erc20Call::Transfer {
        to: addr::STRANGER,
        amount: U256::from(1),
    });
    refused(
        &d.sign_tx(5, &d.eip1559(addr::USDC, 0, t, 1)),
        Rule::EthAllowlist,
        0x0715,
    );
}

#[test]
fn eth_value_cap() {
    let mut d = demo();
    // 0.5 ETH + the maximum fee (100k gas at 40 gwei) is under 1 ETH.
    let a = approved(&d.sign_tx(1, &d.eip1559(addr::VENDOR, ETHER / 2, vec![], 0)));
    assert_eq!(a.spend.fee, U256::from(100_000u128 * 40 * GWEI));
    assert_eq!(a.spend.native, U256::from(ETHER / 2 + 100_000 * 40 * GWEI));
    // Exactly 1 ETH plus the fee is above the cap: the fee counts.
    refused(
        &d.sign_tx(2, &d.eip1559(addr::VENDOR, ETHER, vec![], 1)),
        Rule::EthValueCap,
        0x0717,
    );
    // A value beyond 2^128 is above every cap, never truncated; one that
    // overflows 2^256 with the fee is refused as an overflow.
    let mut huge = d.eip1559(addr::VENDOR, 0, vec![], 1);
    huge.value = U256::from(u128::MAX) + U256::from(1);
    refused(&d.sign_tx(3, &huge), Rule::EthValueCap, 0x0717);
    huge.value = U256::MAX;
    refused(&d.sign_tx(4, &huge), Rule::EthValueCap, 0x0721);
}

#[test]
fn eth_velocity() {
    let mut d = demo();
    let v = ETHER * 9 / 10;
    approved(&d.sign_tx(1, &d.eip1559(addr::VENDOR, v, vec![], 0)));
    let a = approved(&d.sign_tx(2, &d.eip1559(addr::VENDOR, v, vec![], 1)));
    assert_eq!(a.velocity.len(), 1);
    let r = refused(
        &d.sign_tx(3, &d.eip1559(addr::VENDOR, v, vec![], 2)),
        Rule::EthVelocity,
        0x0718,
    );
    assert!(r.detail.contains("3600000 ms"), "{}", r.detail);
    // An hour later the hourly window has rolled.
    d.advance(3_600_001);
    approved(&d.sign_tx(4, &d.eip1559(addr::VENDOR, v, vec![], 2)));
    // A clock that steps back is refused by the clock guard (and would not
    // reopen a window).
    d.now = spacenode_policy::TimeMs(d.now.0 - 10_000);
    refused(
        &d.sign_tx(5, &d.eip1559(addr::VENDOR, 1, vec![], 3)),
        Rule::ClockStep,
        0x05A0,
    );
}

#[test]
fn eth_erc20_cap() {
    let mut d = demo();
    let t = |amount: u64| {
        usdc(Erc20Call::Transfer {
            to: addr::VENDOR,
            amount: U256::from(amount),
        })
    };
    let a = approved(&d.sign_tx(1, &d.eip1559(addr::USDC, 0, t(9_000_000_000), 0)));
    assert_eq!(a.spend.tokens[&addr::USDC], U256::from(9_000_000_000u64));
    assert_eq!(
        a.audit.entry.eth.as_ref().unwrap().tokens[0].amount.0,
        9_000_000_000
    );
    refused(
        &d.sign_tx(2, &d.eip1559(addr::USDC, 0, t(10_000_000_001), 1)),
        Rule::EthErc20Cap,
        0x0719,
    );
    approved(&d.sign_tx(3, &d.eip1559(addr::USDC, 0, t(9_000_000_000), 1)));
    // 27000 USDC in a day is above the 25000 window cap.
    refused(
        &d.sign_tx(4, &d.eip1559(addr::USDC, 0, t(9_000_000_000), 2)),
        Rule::EthErc20Cap,
        0x071A,
    );
    // transferFrom counts the same way.
    let tf = usdc(Erc20Call::TransferFrom {
        from: addr::STRANGER,
        to: addr::VENDOR,
        amount: U256::from(10_000_000_001u64),
    });
    refused(
        &d.sign_tx(5, &d.eip1559(addr::USDC, 0, tf, 2)),
        Rule::EthErc20Cap,
        0x0719,
    );
}

#[test]
fn eth_spender() {
    let mut d = demo();
    let ap = |spender: Address, amount: U256| usdc(Erc20Call::Approve { spender, amount });
    let a = approved(&d.sign_tx(
        1,
        &d.eip1559(
            addr::USDC,
            0,
            ap(addr::ROUTER, U256::from(5_000_000_000u64)),
            0,
        ),
    ));
    assert_eq!(a.spend.approvals.len(), 1);
    // Unlimited approval to the spender that may have one.
    approved(&d.sign_tx(
        2,
        &d.eip1559(addr::USDC, 0, ap(addr::PERMIT2, U256::MAX), 1),
    ));
    // Revoking an approval of anyone is always allowed.
    approved(&d.sign_tx(
        3,
        &d.eip1559(addr::USDC, 0, ap(addr::STRANGER, U256::ZERO), 2),
    ));
    refused(
        &d.sign_tx(
            4,
            &d.eip1559(addr::USDC, 0, ap(addr::STRANGER, U256::from(1)), 3),
        ),
        Rule::EthSpender,
        0x071B,
    );
    refused(
        &d.sign_tx(
            5,
            &d.eip1559(
                addr::USDC,
                0,
                ap(addr::ROUTER, U256::from(5_000_000_001u64)),
                3,
            ),
        ),
        Rule::EthSpender,
        0x071C,
    );
    refused(
        &d.sign_tx(6, &d.eip1559(addr::USDC, 0, ap(addr::ROUTER, U256::MAX), 3)),
        Rule::EthSpender,
        0x071C,
    );
}

#[test]
fn eth_gas_limit() {
    let mut d = demo();
    let mut t = d.eip1559(addr::VENDOR, 1, vec![], 0);
    t.gas_limit = 500_000;
    approved(&d.sign_tx(1, &t));
    t.gas_limit = 500_001;
    t.nonce = 1;
    refused(&d.sign_tx(2, &t), Rule::EthGasLimit, 0x071D);
}

#[test]
fn eth_max_fee() {
    let mut d = demo();
    let mut t = d.eip1559(addr::VENDOR, 1, vec![], 0);
    t.max_fee_per_gas = 100 * GWEI;
    t.max_priority_fee_per_gas = 5 * GWEI;
    approved(&d.sign_tx(1, &t));
    let mut f = t.clone();
    f.nonce = 1;
    f.max_fee_per_gas = 100 * GWEI + 1;
    refused(&d.sign_tx(2, &f), Rule::EthMaxFee, 0x071E);
    let mut p = t.clone();
    p.nonce = 1;
    p.max_priority_fee_per_gas = 5 * GWEI + 1;
    refused(&d.sign_tx(3, &p), Rule::EthMaxFee, 0x071F);
    // A priority fee above the max fee is invalid on chain.
    let mut q = t.clone();
    q.nonce = 1;
    q.max_fee_per_gas = GWEI;
    q.max_priority_fee_per_gas = 2 * GWEI;
    refused(&d.sign_tx(4, &q), Rule::EthMaxFee, 0x071F);
    // Legacy: the gas price is capped by mainnet's max fee.
    let mut l = d.legacy(addr::EXCHANGE, 1, 0);
    l.gas_price = 50 * GWEI + 1;
    refused(
        &d.submit(&d.tx_request(5, 0, &l), G).unwrap(),
        Rule::EthMaxFee,
        0x071E,
    );
}

#[test]
fn eth_unknown_calldata() {
    let mut d = demo();
    let deposit = selector("deposit()").to_vec();
    approved(&d.sign_tx(1, &d.eip1559(addr::EXCHANGE, ETHER / 10, deposit, 0)));
    let withdraw = encode_words("withdraw(uint256)", &[[0; 32]]);
    refused(
        &d.sign_tx(2, &d.eip1559(addr::EXCHANGE, 0, withdraw, 1)),
        Rule::EthUnknownCalldata,
        0x0716,
    );
    // Plain transfers only to the vendor.
    refused(
        &d.sign_tx(
            3,
            &d.eip1559(addr::VENDOR, 0, vec![0xde, 0xad, 0xbe, 0xef], 1),
        ),
        Rule::EthUnknownCalldata,
        0x0716,
    );
    refused(
        &d.sign_tx(4, &d.eip1559(addr::VENDOR, 0, vec![0xde], 1)),
        Rule::EthUnknownCalldata,
        0x0716,
    );
    // approveHash through the plain transaction path would approve a
    // SafeTx without the Safe checks.
    let hash = encode_approve_hash(&B256::repeat_byte(1));
    refused(
        &d.sign_tx(5, &d.eip1559(addr::SAFE, 0, hash.clone(), 1)),
        Rule::EthUnknownCalldata,
        0x0723,
    );
    refused(
        &d.sign_tx(6, &d.eip1559(addr::EXCHANGE, 0, hash, 1)),
        Rule::EthUnknownCalldata,
        0x0723,
    );
}

#[test]
fn eth_nonce_reuse_and_idempotent_retries() {
    let mut d = demo();
    let t = d.eip1559(addr::VENDOR, ETHER / 10, vec![], 5);
    let a = approved(&d.sign_tx(1, &t));
    assert!(!a.repeated);
    // The same request again: a replay of the stored result.
    let r = d.tx_request(1, 0, &t);
    match d.submit(&r, G).unwrap() {
        Outcome::Replay(p) => assert_eq!(d.results[&p.request_id], a.result_encoded),
        _ => panic!("expected a replay"),
    }
    // The same transaction under a new request id: the stored signature,
    // no new velocity.
    let b = approved(&d.sign_tx(2, &t));
    assert!(b.repeated);
    assert_eq!(b.result, a.result);
    assert!(b.velocity.is_empty() && b.nonces.is_empty());
    // Another transaction at nonce 5: refused.
    let other = d.eip1559(addr::VENDOR, ETHER / 10 + 1, vec![], 5);
    refused(&d.sign_tx(3, &other), Rule::EthNonceReuse, 0x0722);
    // Another account, same nonce: its own nonce space.
    approved(&d.submit(&d.tx_request(4, 1, &other), G).unwrap());
    // The id reused for other content.
    let r = d.tx_request(1, 0, &other);
    refused(&d.submit(&r, G).unwrap(), Rule::RequestIdReuse, 0x0586);
}

#[test]
fn eth_malformed() {
    let mut d = demo();
    let good = d.eip1559(addr::VENDOR, 1, vec![], 0).encoded_for_signing();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_type = good.clone();
    bad_type[0] = 0x01;
    for (i, (bytes, code)) in [
        (vec![0x02, 0xc1], 0x0701),
        (good[..good.len() - 2].to_vec(), 0x0701),
        (trailing, 0x0703),
        (bad_type, 0x0702),
    ]
    .into_iter()
    .enumerate()
    {
        let r = d.request(
            [10 + u8::try_from(i).unwrap(); 32],
            EthKind::Transaction,
            0,
            bytes,
            vec![],
        );
        refused(&d.submit(&r, G).unwrap(), Rule::EthMalformed, code);
    }
    // ERC-20 calldata with a dirty address word.
    let mut t = usdc(Erc20Call::Transfer {
        to: addr::VENDOR,
        amount: U256::from(1),
    });
    t[5] = 1;
    refused(
        &d.sign_tx(20, &d.eip1559(addr::USDC, 0, t, 0)),
        Rule::EthMalformed,
        0x0705,
    );
    // A MultiSend batch that ends inside a call.
    let mut batch = encode_multisend(&[InnerCall {
        operation: Operation::Call,
        to: addr::VENDOR,
        value: U256::from(1),
        data: Bytes::new(),
    }]);
    batch[4 + 63] -= 1;
    let s = d.safe_tx(
        0,
        addr::MULTISEND_CALL_ONLY,
        0,
        batch,
        Operation::DelegateCall,
        0,
    );
    refused(
        &d.submit(&d.safe_request(21, &s), G).unwrap(),
        Rule::EthMalformed,
        0x0706,
    );
    // A Safe transaction that is not canonical CBOR.
    let r = d.request([22; 32], EthKind::SafeSignature, 0, vec![], vec![0xa0]);
    refused(&d.submit(&r, G).unwrap(), Rule::EthMalformed, 0x0707);
    // A good one is accepted.
    approved(&d.sign_tx(23, &d.eip1559(addr::VENDOR, 1, vec![], 0)));
}

#[test]
fn eth_self_check_refuses_a_faulty_signer_with_an_event() {
    let d = demo();
    let t = d.eip1559(addr::VENDOR, 1, vec![], 0);
    let faulty = FaultyKeys {
        inner: SoftEthKeys::from_seed(&spacenode_testkit::eth::NODE_SEED).unwrap(),
    };
    let o = d
        .evaluate_with(&faulty, &d.tx_request(1, 0, &t), G)
        .unwrap();
    let r = refused(&o, Rule::EthSelfCheck, 0x0741);
    assert!(r.raise_event);
    let Outcome::Refused(rec) = &o else { panic!() };
    assert!(!rec.remember_id, "a fault must not block a retry");
    // The same for a Safe signature.
    let s = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 0);
    let o = d.evaluate_with(&faulty, &d.safe_request(2, &s), G).unwrap();
    refused(&o, Rule::EthSelfCheck, 0x0741);
    // The honest key store signs both.
    approved(&d.evaluate(&d.tx_request(1, 0, &t), G).unwrap());
    approved(&d.evaluate(&d.safe_request(2, &s), G).unwrap());
}

#[test]
fn eth_approvals() {
    let mut d = demo();
    let t = d.eip1559(addr::VENDOR, 1, vec![], 0);
    let mut r = spacenode_policy::request::SignedRequest::decode(&d.tx_request(1, 0, &t)).unwrap();
    r.approvals.clear();
    refused(
        &d.submit(&r.encode(), G).unwrap(),
        Rule::EthApprovals,
        0x0587,
    );
    approved(&d.sign_tx(2, &t));
}

#[test]
fn safe_signature_and_approve_hash_are_accepted() {
    let mut d = demo();
    let s = d.safe_tx(0, addr::VENDOR, ETHER / 10, vec![], Operation::Call, 0);
    let a = approved(&d.submit(&d.safe_request(1, &s), G).unwrap());
    let hash = a.result.safe_tx_hash.unwrap();
    assert_eq!(
        hash,
        spacenode_eth::safe::safe_tx_hash(&s, d.safes[0].version)
    );
    let sig = alloy_primitives::Signature::from_raw_array(&a.result.signature).unwrap();
    assert_eq!(a.result.signature[64], 27 + u8::from(sig.v()));
    assert_eq!(
        sig.recover_address_from_prehash(&hash).unwrap(),
        d.address(0).unwrap()
    );
    assert_eq!(EthResult::decode(&a.result_encoded).unwrap(), a.result);
    // The approveHash path for the next nonce.
    let s2 = d.safe_tx(0, addr::VENDOR, ETHER / 10, vec![], Operation::Call, 1);
    let h2 = spacenode_eth::safe::safe_tx_hash(&s2, d.safes[0].version);
    let outer = d.eip1559(addr::SAFE, 0, encode_approve_hash(&h2), 0);
    let b = approved(
        &d.submit(&d.approve_hash_request(2, &s2, &outer), G)
            .unwrap(),
    );
    assert_eq!(b.result.safe_tx_hash, Some(h2));
    let (tx, _) = decode_signed(&b.result.raw_tx).unwrap();
    assert_eq!(tx.input().as_ref(), encode_approve_hash(&h2).as_slice());
    assert_eq!(
        recover_sender(&b.result.raw_tx).unwrap(),
        d.address(0).unwrap()
    );
    assert_eq!(b.result.tx_hash, Some(keccak256(&b.result.raw_tx)));
    // Velocity: the Safe's value and the transaction's maximum fee.
    assert_eq!(b.spend.native, U256::from(ETHER / 10 + 100_000 * 40 * GWEI));
    // An owner signature for the SafeTx approved on chain: same content.
    let c = approved(&d.submit(&d.safe_request(3, &s2), G).unwrap());
    assert!(c.velocity.is_empty());
    assert_eq!(c.result.safe_tx_hash, Some(h2));
    // The approveHash transaction must carry exactly that hash, to the Safe.
    let s3 = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 2);
    let wrong = d.eip1559(addr::SAFE, 0, encode_approve_hash(&h2), 1);
    refused(
        &d.submit(&d.approve_hash_request(4, &s3, &wrong), G)
            .unwrap(),
        Rule::EthMalformed,
        0x0705,
    );
    let h3 = spacenode_eth::safe::safe_tx_hash(&s3, d.safes[0].version);
    let mut other_chain = d.eip1559(addr::SAFE, 0, encode_approve_hash(&h3), 1);
    other_chain.chain_id = MAINNET;
    refused(
        &d.submit(&d.approve_hash_request(5, &s3, &other_chain), G)
            .unwrap(),
        Rule::EthChainId,
        0x0712,
    );
}

#[test]
fn eth_delegatecall() {
    let mut d = demo();
    let batch = encode_multisend(&[
        InnerCall {
            operation: Operation::Call,
            to: addr::VENDOR,
            value: U256::from(ETHER / 10),
            data: Bytes::new(),
        },
        InnerCall {
            operation: Operation::Call,
            to: addr::USDC,
            value: U256::ZERO,
            data: usdc(Erc20Call::Transfer {
                to: addr::VENDOR,
                amount: U256::from(100_000_000u64),
            })
            .into(),
        },
        InnerCall {
            operation: Operation::Call,
            to: addr::EXCHANGE,
            value: U256::from(ETHER / 5),
            data: selector("deposit()").to_vec().into(),
        },
    ]);
    let s = d.safe_tx(
        0,
        addr::MULTISEND_CALL_ONLY,
        0,
        batch.clone(),
        Operation::DelegateCall,
        0,
    );
    let a = approved(&d.submit(&d.safe_request(1, &s), G).unwrap());
    assert_eq!(a.spend.calls, 4);
    assert_eq!(a.spend.native, U256::from(ETHER / 10 + ETHER / 5));
    assert_eq!(a.spend.tokens[&addr::USDC], U256::from(100_000_000u64));
    // A library target with an allowed selector.
    let lib = encode_words("signMessage(bytes)", &[]);
    let s = d.safe_tx(
        0,
        addr::SIGN_MESSAGE_LIB,
        0,
        lib,
        Operation::DelegateCall,
        1,
    );
    approved(&d.submit(&d.safe_request(2, &s), G).unwrap());
    // DELEGATECALL to anything else.
    let s = d.safe_tx(0, addr::VENDOR, 0, vec![], Operation::DelegateCall, 2);
    refused(
        &d.submit(&d.safe_request(3, &s), G).unwrap(),
        Rule::EthDelegatecall,
        0x0720,
    );
    // The same batch CALLed (not delegatecalled) is an unknown destination.
    let s = d.safe_tx(0, addr::MULTISEND_CALL_ONLY, 0, batch, Operation::Call, 2);
    refused(
        &d.submit(&d.safe_request(4, &s), G).unwrap(),
        Rule::EthAllowlist,
        0x0715,
    );
    // An inner DELEGATECALL in a MultiSendCallOnly batch.
    let inner = encode_multisend(&[InnerCall {
        operation: Operation::DelegateCall,
        to: addr::SIGN_MESSAGE_LIB,
        value: U256::ZERO,
        data: encode_words("signMessage(bytes)", &[]).into(),
    }]);
    let s = d.safe_tx(
        0,
        addr::MULTISEND_CALL_ONLY,
        0,
        inner.clone(),
        Operation::DelegateCall,
        2,
    );
    refused(
        &d.submit(&d.safe_request(5, &s), G).unwrap(),
        Rule::EthDelegatecall,
        0x0720,
    );
    // The full MultiSend may delegatecall an allowlisted target, not others.
    let s = d.safe_tx(0, addr::MULTISEND, 0, inner, Operation::DelegateCall, 2);
    approved(&d.submit(&d.safe_request(6, &s), G).unwrap());
    let bad = encode_multisend(&[InnerCall {
        operation: Operation::DelegateCall,
        to: addr::STRANGER,
        value: U256::ZERO,
        data: Bytes::new(),
    }]);
    let s = d.safe_tx(0, addr::MULTISEND, 0, bad, Operation::DelegateCall, 3);
    refused(
        &d.submit(&d.safe_request(7, &s), G).unwrap(),
        Rule::EthDelegatecall,
        0x0720,
    );
    // An account transaction cannot delegatecall at all (no operation
    // field), and an unlisted library selector is unknown calldata.
    let s = d.safe_tx(
        0,
        addr::SIGN_MESSAGE_LIB,
        0,
        encode_words("getMessageHash(bytes)", &[]),
        Operation::DelegateCall,
        3,
    );
    refused(
        &d.submit(&d.safe_request(8, &s), G).unwrap(),
        Rule::EthUnknownCalldata,
        0x0716,
    );
}

#[test]
fn safe_refund() {
    let mut d = demo();
    let mut s = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 0);
    s.safe_tx_gas = U256::from(60_000);
    s.base_gas = U256::from(40_000);
    s.gas_price = U256::from(10 * GWEI);
    s.refund_receiver = addr::RELAYER;
    let a = approved(&d.submit(&d.safe_request(1, &s), G).unwrap());
    // The most the refund can pay counts as native spend.
    let bound = (60_000 + 40_000 + 50_000) * 10 * GWEI;
    assert_eq!(a.spend.native, U256::from(1 + bound));
    let mut t = s.clone();
    t.nonce = U256::from(1);
    t.refund_receiver = addr::STRANGER;
    refused(
        &d.submit(&d.safe_request(2, &t), G).unwrap(),
        Rule::SafeRefund,
        0x0733,
    );
    let mut t = s.clone();
    t.nonce = U256::from(1);
    t.gas_price = U256::from(20 * GWEI + 1);
    refused(
        &d.submit(&d.safe_request(3, &t), G).unwrap(),
        Rule::SafeRefund,
        0x0733,
    );
    // A gas token (or receiver) without gasPrice still needs an entry.
    let mut t = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 1);
    t.gas_token = addr::USDC;
    refused(
        &d.submit(&d.safe_request(4, &t), G).unwrap(),
        Rule::SafeRefund,
        0x0733,
    );
    // The refund drain: a huge baseGas at the allowed price exceeds the cap.
    let mut t = s.clone();
    t.nonce = U256::from(1);
    t.base_gas = U256::from(1_000_000_000u64);
    refused(
        &d.submit(&d.safe_request(5, &t), G).unwrap(),
        Rule::EthValueCap,
        0x0717,
    );
}

fn add_owner() -> Vec<u8> {
    encode_words(
        "addOwnerWithThreshold(address,uint256)",
        &[
            address_word_of(&addr::STRANGER),
            U256::from(1).to_be_bytes::<32>(),
        ],
    )
}

#[test]
fn safe_self_call() {
    let mut d = demo();
    let data = add_owner();
    // Direct.
    let s = d.safe_tx(0, addr::SAFE, 0, data.clone(), Operation::Call, 0);
    let r = refused(
        &d.submit(&d.safe_request(1, &s), G).unwrap(),
        Rule::SafeSelfCall,
        0x0732,
    );
    assert!(r.detail.contains("addOwnerWithThreshold"), "{}", r.detail);
    // Inside a MultiSend batch, after an innocent call.
    let batch = encode_multisend(&[
        InnerCall {
            operation: Operation::Call,
            to: addr::VENDOR,
            value: U256::from(1),
            data: Bytes::new(),
        },
        InnerCall {
            operation: Operation::Call,
            to: addr::SAFE,
            value: U256::ZERO,
            data: encode_words(
                "changeThreshold(uint256)",
                &[U256::from(1).to_be_bytes::<32>()],
            )
            .into(),
        },
    ]);
    let s = d.safe_tx(
        0,
        addr::MULTISEND_CALL_ONLY,
        0,
        batch,
        Operation::DelegateCall,
        0,
    );
    refused(
        &d.submit(&d.safe_request(2, &s), G).unwrap(),
        Rule::SafeSelfCall,
        0x0732,
    );
    // The zero address inside a batch is the Safe (MultiSend 1.5.0).
    let batch = encode_multisend(&[InnerCall {
        operation: Operation::Call,
        to: Address::ZERO,
        value: U256::ZERO,
        data: encode_words("setGuard(address)", &[address_word_of(&addr::STRANGER)]).into(),
    }]);
    let s = d.safe_tx(0, addr::MULTISEND, 0, batch, Operation::DelegateCall, 0);
    refused(
        &d.submit(&d.safe_request(3, &s), G).unwrap(),
        Rule::SafeSelfCall,
        0x0732,
    );
    // Any other self-call too (here changeMasterCopy on a 1.1.1 Safe).
    let s = d.safe_tx(
        1,
        addr::SAFE_LEGACY,
        0,
        encode_words(
            "changeMasterCopy(address)",
            &[address_word_of(&addr::STRANGER)],
        ),
        Operation::Call,
        0,
    );
    refused(
        &d.submit(&d.safe_request(4, &s), G).unwrap(),
        Rule::SafeSelfCall,
        0x0732,
    );

    // The quorum path: the same request with a SAFE_ADMIN_TX command of two
    // administrators binding its hash.
    let s = d.safe_tx(0, addr::SAFE, 0, data, Operation::Call, 0);
    let req = d.safe_request(1, &s);
    let one = d.admin_command(&req, 1, &[0]).unwrap();
    refused(
        &d.submit(&req, Authority::AdminQuorum(&one)).unwrap(),
        Rule::SafeSelfCall,
        0x0737,
    );
    let other = d.admin_command(&d.safe_request(9, &s), 1, &[0, 2]).unwrap();
    refused(
        &d.submit(&req, Authority::AdminQuorum(&other)).unwrap(),
        Rule::SafeSelfCall,
        0x0737,
    );
    let cmd = d.admin_command(&req, 1, &[0, 2]).unwrap();
    let a = approved(&d.submit(&req, Authority::AdminQuorum(&cmd)).unwrap());
    assert_eq!(a.admin_command_seq, Some(1));
    assert_eq!(a.spend.self_calls, 1);
    assert_eq!(d.last_command_seq, 1);
    // The command cannot be used twice.
    let s2 = d.safe_tx(0, addr::SAFE, 0, add_owner(), Operation::Call, 1);
    let req2 = d.safe_request(2, &s2);
    let replayed = d.admin_command(&req2, 1, &[0, 2]).unwrap();
    refused(
        &d.submit(&req2, Authority::AdminQuorum(&replayed)).unwrap(),
        Rule::SafeSelfCall,
        0x0737,
    );
}

#[test]
fn safe_unregistered() {
    let mut d = demo();
    let mut s = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 0);
    approved(&d.submit(&d.safe_request(1, &s), G).unwrap());
    s.safe = addr::STRANGER;
    refused(
        &d.submit(&d.safe_request(2, &s), G).unwrap(),
        Rule::SafeUnregistered,
        0x0730,
    );
    // The registered Safe on another chain is another Safe.
    let mut m = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 0);
    m.chain_id = MAINNET;
    refused(
        &d.submit(&d.safe_request(3, &m), G).unwrap(),
        Rule::SafeUnregistered,
        0x0730,
    );
    // The node's owner key is account 0.
    let s = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 1);
    let r = d.request([4; 32], EthKind::SafeSignature, 1, vec![], s.encode());
    refused(&d.submit(&r, G).unwrap(), Rule::SafeUnregistered, 0x0731);
}

#[test]
fn safe_nonce_reuse() {
    let mut d = demo();
    let s = d.safe_tx(0, addr::VENDOR, ETHER / 10, vec![], Operation::Call, 3);
    let a = approved(&d.submit(&d.safe_request(1, &s), G).unwrap());
    let again = approved(&d.submit(&d.safe_request(2, &s), G).unwrap());
    assert!(again.repeated && again.velocity.is_empty());
    assert_eq!(again.result.signature, a.result.signature);
    let mut other = s.clone();
    other.value = U256::from(ETHER / 10 + 1);
    refused(
        &d.submit(&d.safe_request(3, &other), G).unwrap(),
        Rule::SafeNonceReuse,
        0x0734,
    );
    // Nor through approveHash.
    let h = spacenode_eth::safe::safe_tx_hash(&other, d.safes[0].version);
    let outer = d.eip1559(addr::SAFE, 0, encode_approve_hash(&h), 0);
    refused(
        &d.submit(&d.approve_hash_request(4, &other, &outer), G)
            .unwrap(),
        Rule::SafeNonceReuse,
        0x0734,
    );
    // A pre-1.3.0 Safe's nonces are keyed by address alone (its hash
    // commits to no chain).
    let l = d.safe_tx(1, addr::VENDOR, 1, vec![], Operation::Call, 3);
    approved(&d.submit(&d.safe_request(5, &l), G).unwrap());
    assert!(
        d.history
            .safes
            .contains_key(&(0, addr::SAFE_LEGACY, U256::from(3)))
    );
    assert!(
        d.history
            .safes
            .contains_key(&(SEPOLIA, addr::SAFE, U256::from(3)))
    );
}

#[test]
fn safe_version_and_registration() {
    let d = demo();
    for v in [
        "1.0.0", "1.1.1", "1.2.0", "1.3.0", "1.4.1", "1.5.0", "1.3.0+L2",
    ] {
        let r = d.registration(addr::SAFE, v, SEPOLIA).unwrap();
        assert!(Safe::from_registration(&r.encode(), &d.keys).is_ok(), "{v}");
    }
    for v in ["0.1.0", "1.6.0", "1.3"] {
        let r = d.registration(addr::SAFE, v, SEPOLIA).unwrap();
        let e = Safe::from_registration(&r.encode(), &d.keys).unwrap_err();
        assert_eq!((e.rule(), e.code()), (Rule::SafeVersion, 0x0735), "{v}");
    }
    let mut r = d.registration(addr::SAFE, "1.4.1", SEPOLIA).unwrap();
    r.owners.remove(1);
    r.threshold = 1;
    let e = Safe::from_registration(&r.encode(), &d.keys).unwrap_err();
    assert_eq!((e.rule(), e.code()), (Rule::SafeRegistration, 0x0736));
}

/// Issue 13 item 13: a pre-1.3.0 Safe's SafeTx hash names no chain, so its
/// signature replays on every chain. Refused unless the policy lists the
/// registration's (one) chain in `eth.legacy_safes`.
#[test]
fn safe_legacy_domain() {
    use spacenode_testkit::eth::demo_eth_rules;
    let mut rules = demo_eth_rules();
    rules.legacy_safes.clear();
    let mut d = EthDemo::with_rules(Some(rules.clone())).unwrap();
    let legacy = d.safe_tx(1, addr::VENDOR, 1, vec![], Operation::Call, 0);
    let r = refused(
        &d.submit(&d.safe_request(1, &legacy), G).unwrap(),
        Rule::SafeLegacyDomain,
        0x0750,
    );
    assert!(r.detail.contains("names no chain"), "{r}");
    // Nor through approveHash (the same SafeTx checks).
    let h = spacenode_eth::safe::safe_tx_hash(&legacy, d.safes[1].version);
    let outer = d.eip1559(addr::SAFE_LEGACY, 0, encode_approve_hash(&h), 0);
    refused(
        &d.submit(&d.approve_hash_request(2, &legacy, &outer), G)
            .unwrap(),
        Rule::SafeLegacyDomain,
        0x0750,
    );
    // A 1.3.0+ Safe is not affected.
    let modern = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 0);
    approved(&d.submit(&d.safe_request(3, &modern), G).unwrap());
    // Allowed on another chain only: still refused on Sepolia.
    rules.legacy_safes = vec![MAINNET];
    let mut d = EthDemo::with_rules(Some(rules.clone())).unwrap();
    refused(
        &d.submit(&d.safe_request(4, &legacy), G).unwrap(),
        Rule::SafeLegacyDomain,
        0x0750,
    );
    // Allowed on the registration's chain: signed.
    rules.legacy_safes = vec![SEPOLIA];
    let mut d = EthDemo::with_rules(Some(rules.clone())).unwrap();
    let a = approved(&d.submit(&d.safe_request(5, &legacy), G).unwrap());
    assert_eq!(
        a.result.safe_tx_hash,
        Some(spacenode_eth::safe::safe_tx_hash(
            &legacy,
            d.safes[1].version
        ))
    );
    // The registration names exactly one chain: the same legacy address on
    // a second chain is refused.
    let body = d
        .registration(addr::SAFE_LEGACY, "1.1.1", MAINNET)
        .unwrap()
        .encode();
    let mut safes = d.safes.clone();
    safes.push(Safe::from_registration(&body, &d.keys).unwrap());
    let e = spacenode_eth::safe::check_registrations(&safes).unwrap_err();
    assert_eq!((e.rule(), e.code()), (Rule::SafeRegistration, 0x0736));
    // The policy field: absent when empty (documents keep their bytes),
    // round-trips, and names only chains of eth.chains, once.
    use spacenode_policy::eth::EthRules;
    let mut none = rules.clone();
    none.legacy_safes.clear();
    let v = spacenode_policy::cbor::encode(&none.to_value());
    let back = EthRules::from_value(spacenode_policy::cbor::decode(&v).unwrap()).unwrap();
    assert_eq!(back, none);
    let with = EthRules::from_value(rules.to_value()).unwrap();
    assert_eq!(with.legacy_safes, vec![SEPOLIA]);
    assert!(v.len() < spacenode_policy::cbor::encode(&rules.to_value()).len());
    let mut bad = rules.clone();
    bad.legacy_safes = vec![SEPOLIA, SEPOLIA];
    assert!(bad.validate().is_err());
    bad.legacy_safes = vec![424_242];
    assert!(bad.validate().is_err());
}

#[test]
fn every_decision_is_in_one_verifiable_audit_chain() {
    use bitcoin::secp256k1::Secp256k1;
    use spacenode_btc::signer::{BtcSigner, SoftSigner};
    let mut d = demo();
    approved(&d.sign_tx(1, &d.eip1559(addr::VENDOR, 1, vec![], 0)));
    refused(
        &d.sign_tx(2, &d.eip1559(addr::STRANGER, 1, vec![], 1)),
        Rule::EthAllowlist,
        0x0715,
    );
    let s = d.safe_tx(0, addr::VENDOR, 1, vec![], Operation::Call, 0);
    approved(&d.submit(&d.safe_request(3, &s), G).unwrap());
    let _ = d.submit(&d.safe_request(3, &s), G).unwrap();
    assert_eq!(d.audit_log.len(), 4);
    // The Bitcoin signer's receipt key (same seed, same RECEIPT_PATH)
    // verifies the Ethereum receipts.
    assert_eq!(
        spacenode_btc::signer::RECEIPT_PATH,
        spacenode_policy::audit::RECEIPT_PATH
    );
    let btc = SoftSigner::from_seed(
        &spacenode_testkit::eth::NODE_SEED,
        bitcoin::NetworkKind::Test,
    )
    .unwrap();
    let key = btc
        .xpub(&spacenode_btc::signer::receipt_path())
        .unwrap()
        .public_key
        .x_only_public_key()
        .0;
    let secp = Secp256k1::verification_only();
    spacenode_policy::audit::verify_chain(&secp, &key, &d.audit_log, [0; 32]).unwrap();
    let first = &d.audit_log[0].0;
    let eth = first.eth.as_ref().unwrap();
    assert_eq!(eth.chain_id, SEPOLIA);
    assert_eq!(first.signatures[0].len(), 65);
    assert!(first.txid.is_some());
}

#[test]
fn abi_names_every_safe_management_function() {
    for f in [
        "addOwnerWithThreshold",
        "removeOwner",
        "swapOwner",
        "changeThreshold",
        "setGuard",
        "enableModule",
        "disableModule",
        "setFallbackHandler",
    ] {
        let sig = abi::SAFE_FUNCTIONS
            .iter()
            .find(|s| s.starts_with(&format!("{f}(")))
            .unwrap();
        assert_eq!(abi::safe_function(selector(sig)), Some(f));
    }
}
