//! The calldata the node reads: ERC-20 `transfer`/`transferFrom`/`approve`,
//! Safe's own functions, `approveHash`, and `multiSend(bytes)` batches
//! (MultiSend and MultiSendCallOnly packed encoding).
//!
//! Owns: the selector constants (each pinned against the keccak of its
//! signature in the tests), strict decoders ([`decode_erc20`],
//! [`decode_multisend`], [`decode_approve_hash`]) and the matching encoders
//! the ground and the tests use.
//!
//! Strict means: exact lengths (no trailing bytes a contract would ignore),
//! address words with zero upper 12 bytes (old compilers mask dirty bits,
//! new ones revert: either way the node must not read an address the
//! contract would read differently), a `multiSend` argument at offset 0x20
//! with zero padding, and a packed batch that ends exactly at its length
//! (the MultiSend contract reads past a truncated last entry).
//!
//! Must never: panic or allocate beyond the input on any calldata.

use alloy_primitives::{Address, B256, Bytes, U256};

use crate::error::EthError;

/// `transfer(address,uint256)`.
pub const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// `transferFrom(address,address,uint256)`.
pub const TRANSFER_FROM: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
/// `approve(address,uint256)`.
pub const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];
/// Safe `approveHash(bytes32)`.
pub const APPROVE_HASH: [u8; 4] = [0xd4, 0xd9, 0xbd, 0xcd];
/// Safe `execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)`.
pub const EXEC_TRANSACTION: [u8; 4] = [0x6a, 0x76, 0x12, 0x02];
/// `multiSend(bytes)` (MultiSend and MultiSendCallOnly).
pub const MULTI_SEND: [u8; 4] = [0x8d, 0x80, 0xff, 0x0a];

/// Largest number of calls in one MultiSend batch.
pub const MAX_BATCH: usize = 256;

/// Safe functions a Safe transaction could call on the Safe itself, by
/// signature (for readable refusals; every self-call with calldata is
/// refused outside the quorum path, named or not).
pub const SAFE_FUNCTIONS: [&str; 16] = [
    "addOwnerWithThreshold(address,uint256)",
    "removeOwner(address,address,uint256)",
    "swapOwner(address,address,address)",
    "changeThreshold(uint256)",
    "setGuard(address)",
    "setModuleGuard(address)",
    "enableModule(address)",
    "disableModule(address,address)",
    "setFallbackHandler(address)",
    "changeMasterCopy(address)",
    "setup(address[],uint256,address,bytes,address,address,uint256,address)",
    "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
    "execTransactionFromModule(address,uint256,bytes,uint8)",
    "approveHash(bytes32)",
    "signMessage(bytes)",
    "simulateAndRevert(address,bytes)",
];

/// The name of a Safe function by selector.
#[must_use]
pub fn safe_function(sel: [u8; 4]) -> Option<&'static str> {
    SAFE_FUNCTIONS
        .iter()
        .find(|s| spacenode_policy::eth::selector(s) == sel)
        .map(|s| s.split('(').next().unwrap_or(s))
}

/// The first four bytes of calldata, if there are four.
#[must_use]
pub fn selector_of(data: &[u8]) -> Option<[u8; 4]> {
    data.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok())
}

/// Safe operation of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CALL`.
    Call,
    /// `DELEGATECALL` (runs the target's code with the Safe's storage).
    DelegateCall,
}

impl Operation {
    /// From the Safe's `uint8 operation`.
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Call),
            1 => Some(Self::DelegateCall),
            _ => None,
        }
    }

    /// The Safe's `uint8 operation`.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Call => 0,
            Self::DelegateCall => 1,
        }
    }
}

/// A decoded ERC-20 call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erc20Call {
    /// `transfer(to, amount)`.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount in base units.
        amount: U256,
    },
    /// `transferFrom(from, to, amount)`.
    TransferFrom {
        /// Owner of the tokens.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount.
        amount: U256,
    },
    /// `approve(spender, amount)`.
    Approve {
        /// Spender.
        spender: Address,
        /// Allowance.
        amount: U256,
    },
}

fn word(data: &[u8], i: usize) -> Option<&[u8]> {
    let start = i.checked_mul(32)?.checked_add(4)?;
    data.get(start..start.checked_add(32)?)
}

fn address_word(w: &[u8], function: &'static str) -> Result<Address, EthError> {
    let (hi, lo) = w.split_at_checked(12).ok_or(EthError::Abi {
        function,
        detail: "short word",
    })?;
    if hi.iter().any(|&b| b != 0) {
        return Err(EthError::Abi {
            function,
            detail: "address word with non-zero upper bytes",
        });
    }
    Ok(Address::from_slice(lo))
}

fn words<'a>(data: &'a [u8], n: usize, function: &'static str) -> Result<Vec<&'a [u8]>, EthError> {
    let want = n.checked_mul(32).and_then(|x| x.checked_add(4));
    if want != Some(data.len()) {
        return Err(EthError::Abi {
            function,
            detail: "wrong calldata length",
        });
    }
    (0..n)
        .map(|i| {
            word(data, i).ok_or(EthError::Abi {
                function,
                detail: "short calldata",
            })
        })
        .collect()
}

/// Decodes ERC-20 calldata. `Ok(None)` when the selector is not one of
/// `transfer`, `transferFrom`, `approve`.
///
/// # Errors
/// [`EthError::Abi`] when the selector matches but the arguments are not
/// exactly their canonical encoding.
pub fn decode_erc20(data: &[u8]) -> Result<Option<Erc20Call>, EthError> {
    let Some(sel) = selector_of(data) else {
        return Ok(None);
    };
    Ok(Some(match sel {
        TRANSFER => {
            let w = words(data, 2, "transfer")?;
            Erc20Call::Transfer {
                to: address_word(w.first().copied().unwrap_or_default(), "transfer")?,
                amount: U256::from_be_slice(w.get(1).copied().unwrap_or_default()),
            }
        }
        TRANSFER_FROM => {
            let w = words(data, 3, "transferFrom")?;
            Erc20Call::TransferFrom {
                from: address_word(w.first().copied().unwrap_or_default(), "transferFrom")?,
                to: address_word(w.get(1).copied().unwrap_or_default(), "transferFrom")?,
                amount: U256::from_be_slice(w.get(2).copied().unwrap_or_default()),
            }
        }
        APPROVE => {
            let w = words(data, 2, "approve")?;
            Erc20Call::Approve {
                spender: address_word(w.first().copied().unwrap_or_default(), "approve")?,
                amount: U256::from_be_slice(w.get(1).copied().unwrap_or_default()),
            }
        }
        _ => return Ok(None),
    }))
}

/// Decodes `approveHash(bytes32)` calldata.
///
/// # Errors
/// [`EthError::Abi`] for another selector or length.
pub fn decode_approve_hash(data: &[u8]) -> Result<B256, EthError> {
    if selector_of(data) != Some(APPROVE_HASH) {
        return Err(EthError::Abi {
            function: "approveHash",
            detail: "not approveHash(bytes32)",
        });
    }
    let w = words(data, 1, "approveHash")?;
    Ok(B256::from_slice(w.first().copied().unwrap_or(&[0u8; 32])))
}

/// One call of a MultiSend batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerCall {
    /// CALL or DELEGATECALL.
    pub operation: Operation,
    /// Destination (the zero address means the Safe itself for MultiSend
    /// 1.5.0 and later, which substitutes `address(this)`).
    pub to: Address,
    /// Value.
    pub value: U256,
    /// Calldata.
    pub data: Bytes,
}

fn ms(detail: &'static str) -> EthError {
    EthError::MultiSend(detail)
}

fn usize_of(w: &[u8]) -> Option<usize> {
    let v = U256::from_be_slice(w);
    usize::try_from(v).ok()
}

/// Decodes `multiSend(bytes transactions)` calldata into its calls
/// (`operation u8 | to 20 | value 32 | data length 32 | data`, packed).
///
/// # Errors
/// [`EthError::MultiSend`] for anything but the one canonical encoding of
/// a non-empty batch of at most [`MAX_BATCH`] calls.
pub fn decode_multisend(data: &[u8]) -> Result<Vec<InnerCall>, EthError> {
    if selector_of(data) != Some(MULTI_SEND) {
        return Err(ms("not multiSend(bytes)"));
    }
    let offset = word(data, 0).and_then(usize_of).ok_or(ms("short"))?;
    if offset != 0x20 {
        return Err(ms("argument offset is not 0x20"));
    }
    let len = word(data, 1).and_then(usize_of).ok_or(ms("short"))?;
    let body_start = 4usize.checked_add(64).ok_or(ms("length"))?;
    let padded = len
        .checked_add(31)
        .map(|x| x / 32 * 32)
        .ok_or(ms("length"))?;
    if body_start.checked_add(padded) != Some(data.len()) {
        return Err(ms("calldata length does not match the batch length"));
    }
    let body = data
        .get(body_start..body_start.checked_add(len).ok_or(ms("length"))?)
        .ok_or(ms("short"))?;
    let padding = data
        .get(body_start.checked_add(len).ok_or(ms("length"))?..)
        .unwrap_or_default();
    if padding.iter().any(|&b| b != 0) {
        return Err(ms("non-zero padding"));
    }
    let mut rest = body;
    let mut calls = Vec::new();
    while !rest.is_empty() {
        if calls.len() >= MAX_BATCH {
            return Err(ms("too many calls"));
        }
        let (head, tail) = rest.split_at_checked(85).ok_or(ms("truncated call"))?;
        let op = Operation::from_u8(*head.first().ok_or(ms("truncated call"))?)
            .ok_or(ms("operation is neither 0 nor 1"))?;
        let to = Address::from_slice(head.get(1..21).ok_or(ms("truncated call"))?);
        let value = U256::from_be_slice(head.get(21..53).ok_or(ms("truncated call"))?);
        let dlen = head
            .get(53..85)
            .and_then(usize_of)
            .ok_or(ms("data length"))?;
        let (d, tail) = tail
            .split_at_checked(dlen)
            .ok_or(ms("call data longer than the batch"))?;
        calls.push(InnerCall {
            operation: op,
            to,
            value,
            data: Bytes::copy_from_slice(d),
        });
        rest = tail;
    }
    if calls.is_empty() {
        return Err(ms("empty batch"));
    }
    Ok(calls)
}

/// Encodes a MultiSend batch as `multiSend(bytes)` calldata (ground side,
/// tests).
#[must_use]
pub fn encode_multisend(calls: &[InnerCall]) -> Vec<u8> {
    let mut packed = Vec::new();
    for c in calls {
        packed.push(c.operation.as_u8());
        packed.extend_from_slice(c.to.as_slice());
        packed.extend_from_slice(&c.value.to_be_bytes::<32>());
        packed.extend_from_slice(&U256::from(c.data.len()).to_be_bytes::<32>());
        packed.extend_from_slice(&c.data);
    }
    let mut out = MULTI_SEND.to_vec();
    out.extend_from_slice(&U256::from(0x20u64).to_be_bytes::<32>());
    out.extend_from_slice(&U256::from(packed.len()).to_be_bytes::<32>());
    let pad = (32 - packed.len() % 32) % 32;
    out.extend_from_slice(&packed);
    out.resize(out.len() + pad, 0);
    out
}

fn address_arg(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a.as_slice());
    w
}

/// Encodes ERC-20 calldata (ground side, tests).
#[must_use]
pub fn encode_erc20(call: &Erc20Call) -> Vec<u8> {
    let mut out = Vec::with_capacity(100);
    match call {
        Erc20Call::Transfer { to, amount } => {
            out.extend_from_slice(&TRANSFER);
            out.extend_from_slice(&address_arg(to));
            out.extend_from_slice(&amount.to_be_bytes::<32>());
        }
        Erc20Call::TransferFrom { from, to, amount } => {
            out.extend_from_slice(&TRANSFER_FROM);
            out.extend_from_slice(&address_arg(from));
            out.extend_from_slice(&address_arg(to));
            out.extend_from_slice(&amount.to_be_bytes::<32>());
        }
        Erc20Call::Approve { spender, amount } => {
            out.extend_from_slice(&APPROVE);
            out.extend_from_slice(&address_arg(spender));
            out.extend_from_slice(&amount.to_be_bytes::<32>());
        }
    }
    out
}

/// Encodes `approveHash(hash)` calldata.
#[must_use]
pub fn encode_approve_hash(hash: &B256) -> Vec<u8> {
    let mut out = APPROVE_HASH.to_vec();
    out.extend_from_slice(hash.as_slice());
    out
}

/// Encodes a call to a Safe management function taking address / uint256
/// arguments (tests: `addOwnerWithThreshold`, `changeThreshold`, ...).
#[must_use]
pub fn encode_words(signature: &str, args: &[[u8; 32]]) -> Vec<u8> {
    let mut out = spacenode_policy::eth::selector(signature).to_vec();
    for a in args {
        out.extend_from_slice(a);
    }
    out
}

/// An address as an ABI word.
#[must_use]
pub fn address_word_of(a: &Address) -> [u8; 32] {
    address_arg(a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use proptest::prelude::*;
    use spacenode_policy::eth::selector;

    #[test]
    fn selectors_are_the_keccak_of_their_signatures() {
        assert_eq!(selector("transfer(address,uint256)"), TRANSFER);
        assert_eq!(
            selector("transferFrom(address,address,uint256)"),
            TRANSFER_FROM
        );
        assert_eq!(selector("approve(address,uint256)"), APPROVE);
        assert_eq!(selector("approveHash(bytes32)"), APPROVE_HASH);
        assert_eq!(selector(SAFE_FUNCTIONS[11]), EXEC_TRANSACTION);
        assert_eq!(selector("multiSend(bytes)"), MULTI_SEND);
        assert_eq!(
            safe_function(selector("addOwnerWithThreshold(address,uint256)")),
            Some("addOwnerWithThreshold")
        );
        assert_eq!(safe_function([0, 0, 0, 0]), None);
    }

    #[test]
    fn erc20_round_trip_and_strictness() {
        let a = Address::repeat_byte(0x33);
        for c in [
            Erc20Call::Transfer {
                to: a,
                amount: U256::from(5),
            },
            Erc20Call::TransferFrom {
                from: a,
                to: Address::repeat_byte(1),
                amount: U256::MAX,
            },
            Erc20Call::Approve {
                spender: a,
                amount: U256::ZERO,
            },
        ] {
            let d = encode_erc20(&c);
            assert_eq!(decode_erc20(&d).unwrap(), Some(c));
            let mut long = d.clone();
            long.push(0);
            assert!(decode_erc20(&long).is_err());
            assert!(decode_erc20(&d[..d.len() - 1]).is_err());
            let mut dirty = d.clone();
            dirty[4] = 1;
            assert!(decode_erc20(&dirty).is_err());
        }
        assert_eq!(decode_erc20(&[1, 2, 3, 4]).unwrap(), None);
        assert_eq!(decode_erc20(&[1, 2]).unwrap(), None);
    }

    #[test]
    fn multisend_round_trip_and_strictness() {
        let calls = vec![
            InnerCall {
                operation: Operation::Call,
                to: Address::repeat_byte(1),
                value: U256::from(7),
                data: Bytes::new(),
            },
            InnerCall {
                operation: Operation::DelegateCall,
                to: Address::repeat_byte(2),
                value: U256::ZERO,
                data: Bytes::from(vec![1, 2, 3]),
            },
        ];
        let d = encode_multisend(&calls);
        assert_eq!(decode_multisend(&d).unwrap(), calls);
        // Truncated last call, declared as a shorter batch.
        let mut t = d.clone();
        let len = 85 * 2 + 3 - 1;
        t[4 + 32..4 + 64].copy_from_slice(&U256::from(len).to_be_bytes::<32>());
        assert!(decode_multisend(&t).is_err());
        // Non-zero padding.
        let mut p = d.clone();
        let last = p.len() - 1;
        p[last] = 1;
        assert!(decode_multisend(&p).is_err());
        // Other offset.
        let mut o = d.clone();
        o[4 + 31] = 0x40;
        assert!(decode_multisend(&o).is_err());
        // Operation 2.
        let mut op = d.clone();
        op[4 + 64] = 2;
        assert!(decode_multisend(&op).is_err());
        assert!(decode_multisend(&encode_multisend(&[])).is_err());
        assert!(decode_multisend(&MULTI_SEND).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_erc20(&b);
            let _ = decode_approve_hash(&b);
            let _ = decode_multisend(&b);
            let mut m = MULTI_SEND.to_vec();
            m.extend_from_slice(&b);
            let _ = decode_multisend(&m);
        }
    }
}
