//! Safe (Gnosis Safe) multisig wallets: registrations, the SafeTx the
//! ground uplinks, its EIP-712 hash and the owner signature.
//!
//! Owns: [`SafeVersion`] (which EIP-712 domain a contract version uses),
//! [`SafeTx`] and its canonical CBOR form, the SafeTx hash computed two
//! independent ways ([`safe_tx_hash`] through alloy-sol-types' EIP-712
//! implementation, [`safe_tx_hash_manual`] from the type-hash constants of
//! the Safe contracts), [`SafeRegistration`] (the body of the
//! `REGISTER_SAFE` administrator command) and [`Safe`], a registration
//! checked against the node's keys.
//!
//! EIP-712 domain history (safe-smart-account `DOMAIN_SEPARATOR_TYPEHASH`):
//! 1.0.0 to 1.2.0 use `EIP712Domain(address verifyingContract)`
//! (0x035aff83…), 1.3.0 and later `EIP712Domain(uint256 chainId,address
//! verifyingContract)` (0x47e79534…). `SAFE_TX_TYPEHASH` (0xbb8310d4…,
//! with `baseGas`) is the same from 1.0.0 to 1.5.0; 0.1.0 named the field
//! `dataGas` and is not supported. A pre-1.3.0 SafeTx hash does not commit
//! to a chain: the same signature is valid wherever the Safe's address holds
//! the same owners, so the node keys its Safe-nonce history of such Safes by
//! address alone (chain 0) and refuses to register one address on two
//! chains.
//!
//! ```text
//! safe tx      := CBOR { 0: chain id, 1: safe 20, 2: to 20, 3: value u256 (32 BE), 4: data,
//!                        5: operation (0 CALL, 1 DELEGATECALL), 6: safeTxGas (32),
//!                        7: baseGas (32), 8: gasPrice (32), 9: gasToken 20,
//!                        10: refundReceiver 20, 11: nonce (32) }
//! registration := CBOR { 0: format (1), 1: label, 2: chain id, 3: safe 20, 4: version text,
//!                        5: [owner 20], 6: threshold, 7: node account index }
//! ```
//!
//! Must never: compute a SafeTx hash with a domain other than the
//! registered version's, or accept a registration in which the node's
//! address is not an owner.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use spacenode_policy::cbor::{self, Fields, Value, bytes, uint};

use crate::abi::Operation;
use crate::error::EthError;
use crate::signer::{EthKeyStore, account_path, address_of};

/// `keccak256("EIP712Domain(address verifyingContract)")`, Safe 1.0.0 to
/// 1.2.0.
pub const DOMAIN_TYPEHASH_LEGACY: B256 = B256::new([
    0x03, 0x5a, 0xff, 0x83, 0xd8, 0x69, 0x37, 0xd3, 0x5b, 0x32, 0xe0, 0x4f, 0x0d, 0xdc, 0x6f, 0xf4,
    0x69, 0x29, 0x0e, 0xef, 0x2f, 0x1b, 0x69, 0x2d, 0x8a, 0x81, 0x5c, 0x89, 0x40, 0x4d, 0x47, 0x49,
]);
/// `keccak256("EIP712Domain(uint256 chainId,address verifyingContract)")`,
/// Safe 1.3.0 and later.
pub const DOMAIN_TYPEHASH: B256 = B256::new([
    0x47, 0xe7, 0x95, 0x34, 0xa2, 0x45, 0x95, 0x2e, 0x8b, 0x16, 0x89, 0x3a, 0x33, 0x6b, 0x85, 0xa3,
    0xd9, 0xea, 0x9f, 0xa8, 0xc5, 0x73, 0xf3, 0xd8, 0x03, 0xaf, 0xb9, 0x2a, 0x79, 0x46, 0x92, 0x18,
]);
/// `keccak256("SafeTx(address to,uint256 value,bytes data,uint8
/// operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address
/// gasToken,address refundReceiver,uint256 nonce)")`.
pub const SAFE_TX_TYPEHASH: B256 = B256::new([
    0xbb, 0x83, 0x10, 0xd4, 0x86, 0x36, 0x8d, 0xb6, 0xbd, 0x6f, 0x84, 0x94, 0x02, 0xfd, 0xd7, 0x3a,
    0xd5, 0x3d, 0x31, 0x6b, 0x5a, 0x4b, 0x26, 0x44, 0xad, 0x6e, 0xfe, 0x0f, 0x94, 0x12, 0x86, 0xd8,
]);

/// Most owners of a registered Safe.
pub const MAX_OWNERS: usize = 64;
/// Safe's owner-list sentinel (`address(0x1)`), never an owner.
pub const SENTINEL: Address =
    Address::new([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/// Safe contract versions the node knows the EIP-712 domain of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SafeVersion {
    /// 1.0.0.
    V1_0_0,
    /// 1.1.0.
    V1_1_0,
    /// 1.1.1.
    V1_1_1,
    /// 1.2.0.
    V1_2_0,
    /// 1.3.0.
    V1_3_0,
    /// 1.4.0.
    V1_4_0,
    /// 1.4.1.
    V1_4_1,
    /// 1.5.0.
    V1_5_0,
}

impl SafeVersion {
    const ALL: [(SafeVersion, &'static str); 8] = [
        (SafeVersion::V1_0_0, "1.0.0"),
        (SafeVersion::V1_1_0, "1.1.0"),
        (SafeVersion::V1_1_1, "1.1.1"),
        (SafeVersion::V1_2_0, "1.2.0"),
        (SafeVersion::V1_3_0, "1.3.0"),
        (SafeVersion::V1_4_0, "1.4.0"),
        (SafeVersion::V1_4_1, "1.4.1"),
        (SafeVersion::V1_5_0, "1.5.0"),
    ];

    /// Parses `"1.3.0"` etc. (the contract's `VERSION()`, optionally with a
    /// `+L2` suffix: the L2 singletons share the domain).
    ///
    /// # Errors
    /// [`EthError::SafeVersion`].
    pub fn parse(s: &str) -> Result<Self, EthError> {
        let base = s.strip_suffix("+L2").unwrap_or(s);
        Self::ALL
            .iter()
            .find(|(_, n)| *n == base)
            .map(|(v, _)| *v)
            .ok_or_else(|| EthError::SafeVersion(s.to_owned()))
    }

    /// The canonical spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("?", |(_, n)| n)
    }

    /// Does the EIP-712 domain include the chain id (1.3.0 and later)?
    #[must_use]
    pub fn domain_has_chain_id(self) -> bool {
        self >= SafeVersion::V1_3_0
    }
}

/// A Safe transaction (the arguments of `execTransaction` without the
/// signatures, plus the Safe nonce and where it executes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeTx {
    /// Chain of the Safe.
    pub chain_id: u64,
    /// The Safe.
    pub safe: Address,
    /// Destination.
    pub to: Address,
    /// Value (wei).
    pub value: U256,
    /// Calldata.
    pub data: Bytes,
    /// CALL or DELEGATECALL.
    pub operation: Operation,
    /// Gas for the inner call.
    pub safe_tx_gas: U256,
    /// Gas charged on top (refunds).
    pub base_gas: U256,
    /// Refund price per gas (0: no refund).
    pub gas_price: U256,
    /// Refund token (zero: native coin).
    pub gas_token: Address,
    /// Refund receiver (zero: `tx.origin`).
    pub refund_receiver: Address,
    /// Safe nonce.
    pub nonce: U256,
}

fn u256v(v: &U256) -> Value {
    bytes(&v.to_be_bytes::<32>())
}

fn safe_err(e: impl std::fmt::Display) -> EthError {
    EthError::SafeTx(e.to_string())
}

impl SafeTx {
    /// Canonical bytes (module docs).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (0, uint(self.chain_id)),
            (1, bytes(self.safe.as_slice())),
            (2, bytes(self.to.as_slice())),
            (3, u256v(&self.value)),
            (4, bytes(&self.data)),
            (5, uint(self.operation.as_u8())),
            (6, u256v(&self.safe_tx_gas)),
            (7, u256v(&self.base_gas)),
            (8, u256v(&self.gas_price)),
            (9, bytes(self.gas_token.as_slice())),
            (10, bytes(self.refund_receiver.as_slice())),
            (11, u256v(&self.nonce)),
        ]))
    }

    /// Strict decoding (canonical CBOR, every field, nothing else).
    ///
    /// # Errors
    /// [`EthError::SafeTx`].
    pub fn decode(b: &[u8]) -> Result<Self, EthError> {
        if b.len() > spacenode_policy::request::MAX_ETH_PAYLOAD {
            return Err(EthError::SafeTx("too large".into()));
        }
        let mut f = Fields::new("safe tx", cbor::decode(b).map_err(safe_err)?).map_err(safe_err)?;
        let u = |f: &mut Fields, k: u64, n: &'static str| -> Result<U256, EthError> {
            Ok(U256::from_be_bytes(f.array::<32>(k, n).map_err(safe_err)?))
        };
        let a = |f: &mut Fields, k: u64, n: &'static str| -> Result<Address, EthError> {
            Ok(Address::from(f.array::<20>(k, n).map_err(safe_err)?))
        };
        let chain_id = f.uint(0, "chain_id").map_err(safe_err)?;
        let safe = a(&mut f, 1, "safe")?;
        let to = a(&mut f, 2, "to")?;
        let value = u(&mut f, 3, "value")?;
        let data = Bytes::from(f.bytes(4, "data").map_err(safe_err)?);
        let op = f.uint(5, "operation").map_err(safe_err)?;
        let operation = u8::try_from(op)
            .ok()
            .and_then(Operation::from_u8)
            .ok_or_else(|| EthError::SafeTx(format!("operation {op} is neither 0 nor 1")))?;
        let safe_tx_gas = u(&mut f, 6, "safe_tx_gas")?;
        let base_gas = u(&mut f, 7, "base_gas")?;
        let gas_price = u(&mut f, 8, "gas_price")?;
        let gas_token = a(&mut f, 9, "gas_token")?;
        let refund_receiver = a(&mut f, 10, "refund_receiver")?;
        let nonce = u(&mut f, 11, "nonce")?;
        f.finish().map_err(safe_err)?;
        let tx = Self {
            chain_id,
            safe,
            to,
            value,
            data,
            operation,
            safe_tx_gas,
            base_gas,
            gas_price,
            gas_token,
            refund_receiver,
            nonce,
        };
        if tx.encode() != b {
            return Err(EthError::SafeTx("does not re-encode to its bytes".into()));
        }
        Ok(tx)
    }

    /// Does the transaction ask for a refund (any of gasPrice, gasToken,
    /// refundReceiver non-zero)?
    #[must_use]
    pub fn has_refund_parameters(&self) -> bool {
        !self.gas_price.is_zero() || !self.gas_token.is_zero() || !self.refund_receiver.is_zero()
    }
}

mod eip712 {
    alloy_sol_types::sol! {
        /// The Safe's EIP-712 struct (Safe.sol, `SAFE_TX_TYPEHASH`).
        struct SafeTx {
            address to;
            uint256 value;
            bytes data;
            uint8 operation;
            uint256 safeTxGas;
            uint256 baseGas;
            uint256 gasPrice;
            address gasToken;
            address refundReceiver;
            uint256 nonce;
        }
    }
}

/// The EIP-712 domain of a Safe of `version`.
#[must_use]
pub fn domain(version: SafeVersion, chain_id: u64, safe: Address) -> Eip712Domain {
    Eip712Domain::new(
        None,
        None,
        version.domain_has_chain_id().then(|| U256::from(chain_id)),
        Some(safe),
        None,
    )
}

/// The SafeTx hash (what owners sign), computed with alloy-sol-types'
/// EIP-712 encoder over the `sol!` struct and [`domain`].
#[must_use]
pub fn safe_tx_hash(tx: &SafeTx, version: SafeVersion) -> B256 {
    let s = eip712::SafeTx {
        to: tx.to,
        value: tx.value,
        data: tx.data.clone(),
        operation: tx.operation.as_u8(),
        safeTxGas: tx.safe_tx_gas,
        baseGas: tx.base_gas,
        gasPrice: tx.gas_price,
        gasToken: tx.gas_token,
        refundReceiver: tx.refund_receiver,
        nonce: tx.nonce,
    };
    s.eip712_signing_hash(&domain(version, tx.chain_id, tx.safe))
}

fn addr_word(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a.as_slice());
    w
}

/// The SafeTx hash computed a second, independent way: the Safe
/// contract's own `encodeTransactionData` (`abi.encode` of the type-hash
/// constants and fields, then `0x19 0x01 || domainSeparator ||
/// safeTxStructHash`), written out byte by byte.
#[must_use]
pub fn safe_tx_hash_manual(tx: &SafeTx, version: SafeVersion) -> B256 {
    let mut d = Vec::with_capacity(96);
    if version.domain_has_chain_id() {
        d.extend_from_slice(DOMAIN_TYPEHASH.as_slice());
        d.extend_from_slice(&U256::from(tx.chain_id).to_be_bytes::<32>());
    } else {
        d.extend_from_slice(DOMAIN_TYPEHASH_LEGACY.as_slice());
    }
    d.extend_from_slice(&addr_word(&tx.safe));
    let separator = keccak256(&d);
    let mut s = Vec::with_capacity(352);
    s.extend_from_slice(SAFE_TX_TYPEHASH.as_slice());
    s.extend_from_slice(&addr_word(&tx.to));
    s.extend_from_slice(&tx.value.to_be_bytes::<32>());
    s.extend_from_slice(keccak256(&tx.data).as_slice());
    s.extend_from_slice(&U256::from(tx.operation.as_u8()).to_be_bytes::<32>());
    s.extend_from_slice(&tx.safe_tx_gas.to_be_bytes::<32>());
    s.extend_from_slice(&tx.base_gas.to_be_bytes::<32>());
    s.extend_from_slice(&tx.gas_price.to_be_bytes::<32>());
    s.extend_from_slice(&addr_word(&tx.gas_token));
    s.extend_from_slice(&addr_word(&tx.refund_receiver));
    s.extend_from_slice(&tx.nonce.to_be_bytes::<32>());
    let struct_hash = keccak256(&s);
    let mut m = Vec::with_capacity(66);
    m.extend_from_slice(&[0x19, 0x01]);
    m.extend_from_slice(separator.as_slice());
    m.extend_from_slice(struct_hash.as_slice());
    keccak256(&m)
}

/// A Safe registration as administrators sign it (`REGISTER_SAFE` body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeRegistration {
    /// Human label.
    pub label: String,
    /// Chain.
    pub chain_id: u64,
    /// Safe address.
    pub address: Address,
    /// Contract version (as `VERSION()` returns it).
    pub version: String,
    /// Owners (as `getOwners()` returns them).
    pub owners: Vec<Address>,
    /// Threshold.
    pub threshold: u64,
    /// The node's owner key: account index of `m/44'/60'/0'/0/i`.
    pub node_account: u32,
}

/// Registration format number.
pub const REGISTRATION_FORMAT: u64 = 1;

fn reg_err(e: impl std::fmt::Display) -> EthError {
    EthError::SafeRegistration(e.to_string())
}

impl SafeRegistration {
    /// Canonical bytes (module docs).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (0, uint(REGISTRATION_FORMAT)),
            (1, Value::Text(self.label.clone())),
            (2, uint(self.chain_id)),
            (3, bytes(self.address.as_slice())),
            (4, Value::Text(self.version.clone())),
            (
                5,
                Value::Array(self.owners.iter().map(|o| bytes(o.as_slice())).collect()),
            ),
            (6, uint(self.threshold)),
            (7, uint(self.node_account)),
        ]))
    }

    /// Strict decoding.
    ///
    /// # Errors
    /// [`EthError::SafeRegistration`].
    pub fn decode(b: &[u8]) -> Result<Self, EthError> {
        let mut f =
            Fields::new("safe registration", cbor::decode(b).map_err(reg_err)?).map_err(reg_err)?;
        if f.uint(0, "format").map_err(reg_err)? != REGISTRATION_FORMAT {
            return Err(reg_err("unknown format"));
        }
        let label = f.text(1, "label").map_err(reg_err)?;
        let chain_id = f.uint(2, "chain_id").map_err(reg_err)?;
        let address = Address::from(f.array::<20>(3, "address").map_err(reg_err)?);
        let version = f.text(4, "version").map_err(reg_err)?;
        let list = f.list(5, "owners").map_err(reg_err)?;
        if list.len() > MAX_OWNERS {
            return Err(reg_err("too many owners"));
        }
        let owners = list
            .into_iter()
            .map(|v| cbor::as_array::<20>(v, "owner").map(Address::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(reg_err)?;
        let threshold = f.uint(6, "threshold").map_err(reg_err)?;
        let node_account = u32::try_from(f.uint(7, "node_account").map_err(reg_err)?)
            .ok()
            .filter(|a| *a < 0x8000_0000)
            .ok_or_else(|| reg_err("node_account not below 2^31"))?;
        f.finish().map_err(reg_err)?;
        let r = Self {
            label,
            chain_id,
            address,
            version,
            owners,
            threshold,
            node_account,
        };
        if r.encode() != b {
            return Err(reg_err("does not re-encode to its bytes"));
        }
        Ok(r)
    }
}

/// A registered Safe, checked against the node's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Safe {
    /// The registration.
    pub registration: SafeRegistration,
    /// Its contract version.
    pub version: SafeVersion,
    /// The node's owner address (derived from the node's key at
    /// registration and compared with the owner list).
    pub node_address: Address,
}

impl Safe {
    /// Checks a registration body: known version, distinct non-zero owners
    /// (never the sentinel), `1 <= threshold <= owners`, the node's address
    /// at `node_account` among the owners. The node persists the body and
    /// re-runs this at every start.
    ///
    /// # Errors
    /// [`EthError::SafeVersion`], [`EthError::SafeRegistration`].
    pub fn from_registration<K: EthKeyStore + ?Sized>(
        body: &[u8],
        keys: &K,
    ) -> Result<Self, EthError> {
        let registration = SafeRegistration::decode(body)?;
        let version = SafeVersion::parse(&registration.version)?;
        if registration.chain_id == 0 {
            return Err(reg_err("chain id 0"));
        }
        if registration.address.is_zero() || registration.address == SENTINEL {
            return Err(reg_err("invalid Safe address"));
        }
        if registration.label.len() > 64 {
            return Err(reg_err("label longer than 64 bytes"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for o in &registration.owners {
            if o.is_zero() || *o == SENTINEL || *o == registration.address || !seen.insert(*o) {
                return Err(reg_err(format!("invalid or duplicate owner {o}")));
            }
        }
        let n = u64::try_from(registration.owners.len()).unwrap_or(u64::MAX);
        if registration.threshold == 0 || registration.threshold > n {
            return Err(reg_err(format!(
                "threshold {} of {n} owners",
                registration.threshold
            )));
        }
        let node_address = address_of(
            &keys
                .public_key(&account_path(registration.node_account))
                .map_err(|e| reg_err(format!("node key: {e}")))?,
        );
        if !seen.contains(&node_address) {
            return Err(reg_err(format!(
                "the node's address {node_address} (account {}) is not an owner",
                registration.node_account
            )));
        }
        Ok(Self {
            registration,
            version,
            node_address,
        })
    }

    /// Chain id.
    #[must_use]
    pub fn chain_id(&self) -> u64 {
        self.registration.chain_id
    }

    /// Address.
    #[must_use]
    pub fn address(&self) -> Address {
        self.registration.address
    }

    /// The chain its SafeTx hashes commit to: its chain id from 1.3.0, 0
    /// ("every chain") before (module docs). Keys the Safe-nonce history.
    #[must_use]
    pub fn domain_chain(&self) -> u64 {
        if self.version.domain_has_chain_id() {
            self.registration.chain_id
        } else {
            0
        }
    }
}

/// Checks a set of registrations together: no Safe twice on one chain, and
/// a pre-1.3.0 Safe's address on no other chain (its signatures would be
/// valid there too). Run when adding a registration.
///
/// # Errors
/// [`EthError::SafeRegistration`].
pub fn check_registrations(safes: &[Safe]) -> Result<(), EthError> {
    for (i, a) in safes.iter().enumerate() {
        for b in safes.iter().skip(i.saturating_add(1)) {
            if a.address() != b.address() {
                continue;
            }
            if a.chain_id() == b.chain_id() {
                return Err(reg_err(format!(
                    "safe {} registered twice on chain {}",
                    a.address(),
                    a.chain_id()
                )));
            }
            if !a.version.domain_has_chain_id() || !b.version.domain_has_chain_id() {
                return Err(reg_err(format!(
                    "safe {} (before 1.3.0: its signatures are valid on every chain) registered on chains {} and {}",
                    a.address(),
                    a.chain_id(),
                    b.chain_id()
                )));
            }
        }
    }
    Ok(())
}

/// The 65-byte owner signature Safe's `checkSignatures` accepts for an
/// ECDSA signature over the SafeTx hash: `r || s || v` with `v = 27 +
/// y_parity`.
#[must_use]
pub fn owner_signature(sig: &alloy_primitives::Signature) -> [u8; 65] {
    sig.as_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use crate::signer::SoftEthKeys;
    use proptest::prelude::*;

    pub(crate) fn sample(chain_id: u64) -> SafeTx {
        SafeTx {
            chain_id,
            safe: Address::repeat_byte(0x5a),
            to: Address::repeat_byte(0x11),
            value: U256::from(12345u64),
            data: Bytes::from(vec![0xde, 0xad, 0xbe, 0xef]),
            operation: Operation::Call,
            safe_tx_gas: U256::from(50_000u64),
            base_gas: U256::from(21_000u64),
            gas_price: U256::from(1_000_000_000u64),
            gas_token: Address::ZERO,
            refund_receiver: Address::repeat_byte(0x77),
            nonce: U256::from(3u64),
        }
    }

    #[test]
    fn type_hashes_are_the_keccak_of_their_types() {
        assert_eq!(
            keccak256("EIP712Domain(address verifyingContract)"),
            DOMAIN_TYPEHASH_LEGACY
        );
        assert_eq!(
            keccak256("EIP712Domain(uint256 chainId,address verifyingContract)"),
            DOMAIN_TYPEHASH
        );
        assert_eq!(
            keccak256(
                "SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)"
            ),
            SAFE_TX_TYPEHASH
        );
    }

    #[test]
    fn both_hash_computations_agree_for_every_version() {
        for (v, _) in SafeVersion::ALL {
            let t = sample(5);
            assert_eq!(safe_tx_hash(&t, v), safe_tx_hash_manual(&t, v), "{v:?}");
        }
        // The legacy domain does not commit to the chain; the new one does.
        let (a, b) = (sample(1), sample(10));
        assert_eq!(
            safe_tx_hash(&a, SafeVersion::V1_2_0),
            safe_tx_hash(&b, SafeVersion::V1_2_0)
        );
        assert_ne!(
            safe_tx_hash(&a, SafeVersion::V1_3_0),
            safe_tx_hash(&b, SafeVersion::V1_3_0)
        );
    }

    #[test]
    fn versions() {
        assert_eq!(SafeVersion::parse("1.3.0+L2").unwrap(), SafeVersion::V1_3_0);
        assert!(SafeVersion::parse("0.1.0").is_err());
        assert!(SafeVersion::parse("1.6.0").is_err());
        assert!(!SafeVersion::V1_2_0.domain_has_chain_id());
        assert!(SafeVersion::V1_3_0.domain_has_chain_id());
        assert_eq!(SafeVersion::V1_4_1.as_str(), "1.4.1");
    }

    #[test]
    fn safe_tx_round_trip_and_strictness() {
        let t = sample(1);
        let b = t.encode();
        assert_eq!(SafeTx::decode(&b).unwrap(), t);
        let mut x = b.clone();
        x.push(0);
        assert!(SafeTx::decode(&x).is_err());
        let mut v = t.encode();
        // operation is the only small uint after data: set it to 2.
        let pos = v.windows(2).position(|w| w == [0x05, 0x00]).unwrap();
        v[pos + 1] = 0x02;
        assert!(SafeTx::decode(&v).is_err());
    }

    fn reg(keys: &SoftEthKeys, version: &str, chain_id: u64) -> SafeRegistration {
        SafeRegistration {
            label: "treasury".into(),
            chain_id,
            address: Address::repeat_byte(0x5a),
            version: version.into(),
            owners: vec![
                Address::repeat_byte(0x01 + 1),
                keys.address(2).unwrap(),
                Address::repeat_byte(0x03),
            ],
            threshold: 2,
            node_account: 2,
        }
    }

    #[test]
    fn registrations_are_checked() {
        let keys = SoftEthKeys::from_seed(&[1; 32]).unwrap();
        let r = reg(&keys, "1.4.1", 1);
        let s = Safe::from_registration(&r.encode(), &keys).unwrap();
        assert_eq!(s.node_address, keys.address(2).unwrap());
        assert_eq!(s.domain_chain(), 1);
        let mut bad = r.clone();
        bad.node_account = 3;
        assert_eq!(
            Safe::from_registration(&bad.encode(), &keys)
                .unwrap_err()
                .rule(),
            spacenode_policy::Rule::SafeRegistration
        );
        let mut bad = r.clone();
        bad.threshold = 4;
        assert!(Safe::from_registration(&bad.encode(), &keys).is_err());
        let mut bad = r.clone();
        bad.owners.push(bad.owners[0]);
        assert!(Safe::from_registration(&bad.encode(), &keys).is_err());
        let mut bad = r.clone();
        bad.owners.push(SENTINEL);
        assert!(Safe::from_registration(&bad.encode(), &keys).is_err());
        let bad = reg(&keys, "0.1.0", 1);
        assert_eq!(
            Safe::from_registration(&bad.encode(), &keys)
                .unwrap_err()
                .rule(),
            spacenode_policy::Rule::SafeVersion
        );
        // One address on two chains: fine from 1.3.0, refused before.
        let a = Safe::from_registration(&reg(&keys, "1.3.0", 1).encode(), &keys).unwrap();
        let b = Safe::from_registration(&reg(&keys, "1.3.0", 10).encode(), &keys).unwrap();
        assert!(check_registrations(&[a.clone(), b]).is_ok());
        assert!(check_registrations(&[a.clone(), a.clone()]).is_err());
        let old = Safe::from_registration(&reg(&keys, "1.2.0", 10).encode(), &keys).unwrap();
        assert_eq!(old.domain_chain(), 0);
        assert!(check_registrations(&[a, old]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SafeTx::decode(&b);
            let _ = SafeRegistration::decode(&b);
        }
    }
}
