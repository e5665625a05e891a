//! The Ethereum co-signing flow in process: a node (soft keys, in-memory
//! stand-ins for the SQLite tables) and a ground (administrators, an
//! approver, two Safe co-owners), for the tests, the HIL runner and demos.
//! The daemon replaces the node side with its persistent one and the
//! [`SoftEthKeys`] with the TPM-backed key store.
//!
//! Owns: [`EthDemo`] (policy with Ethereum rules signed by an administrator
//! quorum, two registered Safes, request builders, `evaluate` + `commit`
//! exactly as the daemon would persist) and the demo constants.
//!
//! Must never: be used with real funds (deterministic test seeds).
#![allow(
    clippy::arithmetic_side_effects,
    reason = "demo amounts are small constants"
)]

use std::collections::BTreeMap;
use std::str::FromStr;

use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use bitcoin::Network;
use bitcoin::secp256k1::{All, Keypair, Message, Secp256k1, SecretKey};
use spacenode_chain::Checkpoint;
use spacenode_policy::audit::{AuditEntry, AuditLog};
use spacenode_policy::change::PolicyState;
use spacenode_policy::clock::ClockGuard;
use spacenode_policy::command::{Command, SignedCommand, kind};
use spacenode_policy::document::{
    BtcRules, ClockRules, KeySet, POLICY_TAG, PolicyDocument, Replacement, SignedPolicy,
    VelocityWindow,
};
use spacenode_policy::eth::{
    ChainRule, DelegateKind, DelegateTarget, EthAllowEntry, EthRules, RefundRule, SpenderRule,
    TokenRule, selector,
};
use spacenode_policy::quorum::{Signature, tagged_hash};
use spacenode_policy::request::{EthKind, EthSignRequest, SignedRequest, request_hash};
use spacenode_policy::units::{FeeRate, Sats, TimeMs, TokenAmount, Wei};

use spacenode_eth::abi::Operation;
use spacenode_eth::engine::{Authority, NodeView, Outcome, evaluate};
use spacenode_eth::history::MemoryEthHistory;
use spacenode_eth::safe::{Safe, SafeRegistration, SafeTx};
use spacenode_eth::signer::{EthKeyStore, SoftEthKeys};
use spacenode_eth::velocity::EthLedgers;

/// Node id used by the demo.
pub const NODE_ID: [u8; 8] = *b"sat-0001";
/// Sepolia.
pub const SEPOLIA: u64 = 11_155_111;
/// Ethereum mainnet.
pub const MAINNET: u64 = 1;
/// One ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;
/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;
/// Demo node time (2023-11-14).
pub const T0_MS: i64 = 1_700_000_000_000;

/// Demo addresses (allowlist entries, token, spenders, Safes, libraries).
pub mod addr {
    use alloy_primitives::{Address, address};

    /// Allowlisted exchange deposit contract (`deposit()` allowed).
    pub const EXCHANGE: Address = address!("0xe1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1");
    /// Allowlisted vendor (plain transfers only).
    pub const VENDOR: Address = address!("0xe2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2");
    /// Not in the policy.
    pub const STRANGER: Address = address!("0xbadbadbadbadbadbadbadbadbadbadbadbadbad0");
    /// Sepolia USDC (registered token, 6 decimals).
    pub const USDC: Address = address!("0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238");
    /// A DEX router (spender up to 5000 USDC).
    pub const ROUTER: Address = address!("0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD");
    /// Permit2 (unlimited approvals allowed).
    pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
    /// MultiSendCallOnly 1.4.1.
    pub const MULTISEND_CALL_ONLY: Address = address!("0x9641d764fc13c8B624c04430C7356C1C7C8102e2");
    /// MultiSend 1.4.1.
    pub const MULTISEND: Address = address!("0x38869bf66a61cF6bDB996A6aE40D5853Fd43B526");
    /// SignMessageLib 1.4.1 (a library target).
    pub const SIGN_MESSAGE_LIB: Address = address!("0xd53cd0aB83D845Ac265BE939c57F53AD838012c9");
    /// The relayer allowed to receive Safe refunds.
    pub const RELAYER: Address = address!("0x7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e");
    /// The demo's Safe 1.4.1.
    pub const SAFE: Address = address!("0x5afe5afe5afe5afe5afe5afe5afe5afe5afe0141");
    /// The demo's Safe 1.1.1 (domain without chain id).
    pub const SAFE_LEGACY: Address = address!("0x5afe5afe5afe5afe5afe5afe5afe5afe5afe0111");
}

/// Demo failure (a broken invariant of the scenario, not a refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(pub String);

fn de(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

fn kp(secp: &Secp256k1<All>, i: u8) -> Result<Keypair, DemoError> {
    Ok(Keypair::from_secret_key(
        secp,
        &SecretKey::from_slice(&[i; 32]).map_err(de)?,
    ))
}

/// The demo's Ethereum rules.
#[must_use]
pub fn demo_eth_rules() -> EthRules {
    use addr::*;
    EthRules {
        chains: vec![
            ChainRule {
                chain_id: SEPOLIA,
                per_tx_cap: Wei(ETHER),
                velocity: vec![
                    VelocityWindow {
                        window_ms: 3_600_000,
                        cap: Wei(2 * ETHER),
                    },
                    VelocityWindow {
                        window_ms: 86_400_000,
                        cap: Wei(5 * ETHER),
                    },
                ],
                max_gas_limit: 500_000,
                max_fee_per_gas: Wei(100 * GWEI),
                max_priority_fee_per_gas: Wei(5 * GWEI),
            },
            ChainRule {
                chain_id: MAINNET,
                per_tx_cap: Wei(ETHER / 2),
                velocity: vec![VelocityWindow {
                    window_ms: 86_400_000,
                    cap: Wei(ETHER),
                }],
                max_gas_limit: 300_000,
                max_fee_per_gas: Wei(50 * GWEI),
                max_priority_fee_per_gas: Wei(3 * GWEI),
            },
        ],
        allowlist: vec![
            EthAllowEntry {
                label: "exchange".into(),
                chain_id: SEPOLIA,
                address: EXCHANGE,
                selectors: vec![selector("deposit()")],
            },
            EthAllowEntry {
                label: "vendor".into(),
                chain_id: SEPOLIA,
                address: VENDOR,
                selectors: vec![],
            },
            EthAllowEntry {
                label: "exchange".into(),
                chain_id: MAINNET,
                address: EXCHANGE,
                selectors: vec![],
            },
        ],
        tokens: vec![TokenRule {
            label: "USDC".into(),
            chain_id: SEPOLIA,
            address: USDC,
            per_tx_cap: TokenAmount(10_000_000_000),
            velocity: vec![VelocityWindow {
                window_ms: 86_400_000,
                cap: TokenAmount(25_000_000_000),
            }],
            spenders: vec![
                SpenderRule {
                    label: "router".into(),
                    address: ROUTER,
                    max_allowance: TokenAmount(5_000_000_000),
                    unlimited: false,
                },
                SpenderRule {
                    label: "permit2".into(),
                    address: PERMIT2,
                    max_allowance: TokenAmount(0),
                    unlimited: true,
                },
            ],
        }],
        delegatecall: vec![
            DelegateTarget {
                label: "MultiSendCallOnly 1.4.1".into(),
                chain_id: SEPOLIA,
                address: MULTISEND_CALL_ONLY,
                kind: DelegateKind::MultiSendCallOnly,
                selectors: vec![],
            },
            DelegateTarget {
                label: "MultiSend 1.4.1".into(),
                chain_id: SEPOLIA,
                address: MULTISEND,
                kind: DelegateKind::MultiSend,
                selectors: vec![],
            },
            DelegateTarget {
                label: "SignMessageLib 1.4.1".into(),
                chain_id: SEPOLIA,
                address: SIGN_MESSAGE_LIB,
                kind: DelegateKind::Library,
                selectors: vec![selector("signMessage(bytes)")],
            },
        ],
        safe_refunds: vec![RefundRule {
            label: "relayer".into(),
            chain_id: SEPOLIA,
            gas_token: Address::ZERO,
            refund_receiver: RELAYER,
            max_gas_price: 20 * GWEI,
        }],
        // The demo registers a 1.1.1 Safe on Sepolia: allowed explicitly
        // (its SafeTx hash names no chain; docs/ethereum.md).
        legacy_safes: vec![SEPOLIA],
    }
}

/// The demo policy (version `version`) with `eth` as its Ethereum rules.
///
/// # Errors
/// Validation failures.
pub fn demo_policy(
    admins: &[Keypair],
    approver: &Keypair,
    version: u64,
    eth: Option<EthRules>,
) -> Result<PolicyDocument, DemoError> {
    let doc = PolicyDocument {
        version,
        network: Network::Regtest,
        admins: KeySet {
            keys: admins.iter().map(|k| k.x_only_public_key().0).collect(),
            threshold: 2,
        },
        activation_delay_ms: 3_600_000,
        veto_threshold: 1,
        approvers: KeySet {
            keys: vec![approver.x_only_public_key().0],
            threshold: 1,
        },
        clock: ClockRules {
            max_forward_jump_ms: 30 * 86_400_000,
            max_behind_chain_ms: 86_400_000,
        },
        rules: BtcRules {
            per_tx_cap: Sats(0),
            velocity: vec![],
            allowlist: vec![],
            max_fee: Sats(0),
            max_fee_rate: FeeRate(0),
            min_confirmations: 1,
            time_windows: vec![],
            replacement: Replacement {
                allowed: false,
                max_fee: Sats(0),
                max_fee_rate: FeeRate(0),
            },
            max_psbt_bytes: 0,
        },
        checkpoint: Checkpoint::genesis(Network::Regtest),
        eth,
    };
    doc.validate().map_err(de)?;
    Ok(doc)
}

/// The whole scenario (module docs).
pub struct EthDemo {
    /// secp context.
    pub secp: Secp256k1<All>,
    /// The node's key store (the TPM in flight).
    pub keys: SoftEthKeys,
    /// The two ground co-owners of the Safes.
    pub ground: [SoftEthKeys; 2],
    /// Administrators (3, threshold 2).
    pub admins: Vec<Keypair>,
    /// Ground approver.
    pub approver: Keypair,
    /// Node policy state.
    pub policy: PolicyState,
    /// Registered Safes: `[0]` 1.4.1, `[1]` 1.1.1, both on Sepolia.
    pub safes: Vec<Safe>,
    /// Nonce history.
    pub history: MemoryEthHistory,
    /// Velocity.
    pub velocity: EthLedgers,
    /// Clock guard.
    pub clock: ClockGuard,
    /// Audit head.
    pub audit: AuditLog,
    /// Audit entries with receipts, in order.
    pub audit_log: Vec<(AuditEntry, [u8; 64])>,
    /// Seen request ids → hash.
    pub seen: BTreeMap<[u8; 32], [u8; 32]>,
    /// Stored results of decided requests.
    pub results: BTreeMap<[u8; 32], Vec<u8>>,
    /// Highest administrator command executed.
    pub last_command_seq: u64,
    /// Node time.
    pub now: TimeMs,
}

/// Seed of the demo node's key store.
pub const NODE_SEED: [u8; 32] = [1; 32];

impl EthDemo {
    /// The demo with its default Ethereum rules.
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn new() -> Result<Self, DemoError> {
        Self::with_rules(Some(demo_eth_rules()))
    }

    /// The demo with other Ethereum rules (or none).
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn with_rules(eth: Option<EthRules>) -> Result<Self, DemoError> {
        let secp = Secp256k1::new();
        let keys = SoftEthKeys::from_seed(&NODE_SEED).map_err(de)?;
        let ground = [
            SoftEthKeys::from_seed(&[2; 32]).map_err(de)?,
            SoftEthKeys::from_seed(&[3; 32]).map_err(de)?,
        ];
        let admins = (11..=13u8)
            .map(|i| kp(&secp, i))
            .collect::<Result<Vec<_>, _>>()?;
        let approver = kp(&secp, 21)?;
        let doc = demo_policy(&admins, &approver, 1, eth)?;
        let provisioned = doc.admins.admin_set().map_err(de)?;
        let bytes = doc.encode();
        let m = Message::from_digest(tagged_hash(POLICY_TAG, &bytes));
        let signed = SignedPolicy {
            document: bytes,
            signatures: [0u8, 1]
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: secp
                        .sign_schnorr_no_aux_rand(&m, &admins[usize::from(i)])
                        .serialize(),
                })
                .collect(),
        };
        let now = TimeMs(T0_MS);
        let policy = PolicyState::bootstrap(&secp, &provisioned, &signed, now).map_err(de)?;
        let mut d = Self {
            secp,
            keys,
            ground,
            admins,
            approver,
            policy,
            safes: Vec::new(),
            history: MemoryEthHistory::default(),
            velocity: EthLedgers::new(TimeMs(0)),
            clock: ClockGuard::default(),
            audit: AuditLog::default(),
            audit_log: Vec::new(),
            seen: BTreeMap::new(),
            results: BTreeMap::new(),
            last_command_seq: 0,
            now,
        };
        for (address, version) in [(addr::SAFE, "1.4.1"), (addr::SAFE_LEGACY, "1.1.1")] {
            let body = d.registration(address, version, SEPOLIA)?.encode();
            d.safes
                .push(Safe::from_registration(&body, &d.keys).map_err(de)?);
        }
        spacenode_eth::safe::check_registrations(&d.safes).map_err(de)?;
        Ok(d)
    }

    /// A registration of `address` with the node (account 0) and both
    /// ground keys as owners, threshold 2.
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn registration(
        &self,
        address: Address,
        version: &str,
        chain_id: u64,
    ) -> Result<SafeRegistration, DemoError> {
        Ok(SafeRegistration {
            label: format!("demo safe {version}"),
            chain_id,
            address,
            version: version.into(),
            owners: vec![
                self.ground[0].address(0).map_err(de)?,
                self.keys.address(0).map_err(de)?,
                self.ground[1].address(0).map_err(de)?,
            ],
            threshold: 2,
            node_account: 0,
        })
    }

    /// The node's address of account `i`.
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn address(&self, i: u32) -> Result<Address, DemoError> {
        self.keys.address(i).map_err(de)
    }

    /// An EIP-1559 transaction on Sepolia with demo gas settings.
    #[must_use]
    pub fn eip1559(&self, to: Address, value: u128, data: Vec<u8>, nonce: u64) -> TxEip1559 {
        TxEip1559 {
            chain_id: SEPOLIA,
            nonce,
            gas_limit: 100_000,
            max_fee_per_gas: 40 * GWEI,
            max_priority_fee_per_gas: 2 * GWEI,
            to: TxKind::Call(to),
            value: U256::from(value),
            access_list: AccessList::default(),
            input: Bytes::from(data),
        }
    }

    /// A legacy EIP-155 transaction on mainnet.
    #[must_use]
    pub fn legacy(&self, to: Address, value: u128, nonce: u64) -> TxLegacy {
        TxLegacy {
            chain_id: Some(MAINNET),
            nonce,
            gas_price: 20 * GWEI,
            gas_limit: 21_000,
            to: TxKind::Call(to),
            value: U256::from(value),
            input: Bytes::new(),
        }
    }

    /// A Safe transaction of registered Safe `safe` (index into `safes`)
    /// without refund.
    #[must_use]
    pub fn safe_tx(
        &self,
        safe: usize,
        to: Address,
        value: u128,
        data: Vec<u8>,
        operation: Operation,
        nonce: u64,
    ) -> SafeTx {
        SafeTx {
            chain_id: SEPOLIA,
            safe: self.safes.get(safe).map_or(Address::ZERO, Safe::address),
            to,
            value: U256::from(value),
            data: Bytes::from(data),
            operation,
            safe_tx_gas: U256::ZERO,
            base_gas: U256::ZERO,
            gas_price: U256::ZERO,
            gas_token: Address::ZERO,
            refund_receiver: Address::ZERO,
            nonce: U256::from(nonce),
        }
    }

    /// A signed request envelope.
    #[must_use]
    pub fn request(
        &self,
        id: [u8; 32],
        kind: EthKind,
        account: u32,
        transaction: Vec<u8>,
        safe_tx: Vec<u8>,
    ) -> Vec<u8> {
        let now = u64::try_from(self.now.0).unwrap_or(0);
        let body = EthSignRequest {
            request_id: id,
            target: NODE_ID,
            not_before_ms: now.saturating_sub(600_000),
            not_after_ms: now + 3_600_000,
            kind,
            account,
            transaction,
            safe_tx,
        }
        .encode();
        let m = Message::from_digest(request_hash(&body));
        SignedRequest {
            approvals: vec![Signature {
                signer: 0,
                sig: self
                    .secp
                    .sign_schnorr_no_aux_rand(&m, &self.approver)
                    .serialize(),
            }],
            body,
        }
        .encode()
    }

    /// A request to sign `tx` (EIP-1559 or legacy) from account `account`.
    #[must_use]
    pub fn tx_request<T: SignableTransaction<alloy_primitives::Signature>>(
        &self,
        id: u8,
        account: u32,
        tx: &T,
    ) -> Vec<u8> {
        self.request(
            [id; 32],
            EthKind::Transaction,
            account,
            tx.encoded_for_signing(),
            vec![],
        )
    }

    /// A request for the node's owner signature on `tx`.
    #[must_use]
    pub fn safe_request(&self, id: u8, tx: &SafeTx) -> Vec<u8> {
        self.request([id; 32], EthKind::SafeSignature, 0, vec![], tx.encode())
    }

    /// A request for the owner transaction calling `approveHash` for `tx`.
    #[must_use]
    pub fn approve_hash_request(&self, id: u8, tx: &SafeTx, outer: &TxEip1559) -> Vec<u8> {
        self.request(
            [id; 32],
            EthKind::SafeApproveHash,
            0,
            outer.encoded_for_signing(),
            tx.encode(),
        )
    }

    /// An administrator command (`SAFE_ADMIN_TX`, seq `seq`) authorising
    /// `request`, signed by administrators `signers`.
    ///
    /// # Errors
    /// [`DemoError`] if `request` does not decode.
    pub fn admin_command(
        &self,
        request: &[u8],
        seq: u64,
        signers: &[u8],
    ) -> Result<Vec<u8>, DemoError> {
        let hash = SignedRequest::decode(request).map_err(de)?.hash();
        let cmd = Command {
            kind: kind::SAFE_ADMIN_TX,
            target: NODE_ID,
            seq,
            not_before_ms: self.now.0 - 600_000,
            not_after_ms: self.now.0 + 3_600_000,
            body: hash.to_vec(),
        }
        .encode();
        let m = Message::from_digest(tagged_hash(spacenode_policy::command::TAG, &cmd));
        Ok(SignedCommand {
            signatures: signers
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: self
                        .secp
                        .sign_schnorr_no_aux_rand(&m, &self.admins[usize::from(i)])
                        .serialize(),
                })
                .collect(),
            command: cmd,
        }
        .encode())
    }

    /// The node's decision on `request` at the demo's current time.
    ///
    /// # Errors
    /// [`DemoError`] if the receipt key fails.
    pub fn evaluate(&self, request: &[u8], authority: Authority<'_>) -> Result<Outcome, DemoError> {
        self.evaluate_with(&self.keys, request, authority)
    }

    /// As [`EthDemo::evaluate`] with another node key store (fault
    /// injection).
    ///
    /// # Errors
    /// [`DemoError`] if the receipt key fails.
    pub fn evaluate_with<K: EthKeyStore>(
        &self,
        keys: &K,
        request: &[u8],
        authority: Authority<'_>,
    ) -> Result<Outcome, DemoError> {
        let view = NodeView {
            node_id: NODE_ID,
            policy: &self.policy.active,
            safes: &self.safes,
            history: &self.history,
            velocity: &self.velocity,
            clock: self.clock,
            audit: self.audit,
            chain_mtp_s: 1_600_000_000,
            admin_executed: spacenode_policy::command::Executed {
                last_of_kind: self.last_command_seq,
                highest: self.last_command_seq,
            },
        };
        let seen = |id: &[u8; 32]| self.seen.get(id).copied();
        evaluate(&self.secp, &view, keys, request, authority, &seen, self.now).map_err(de)
    }

    /// Applies an outcome to the in-memory node state, as the daemon's one
    /// SQLite transaction would.
    pub fn commit(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Approved(a) => {
                self.seen.insert(a.request_id, a.request_hash);
                self.results.insert(a.request_id, a.result_encoded.clone());
                self.history.apply(&a.nonces);
                for r in &a.velocity {
                    self.velocity.insert_row(*r);
                }
                self.audit = a.audit_head;
                self.audit_log
                    .push((a.audit.entry.clone(), a.audit.receipt));
                self.clock = a.clock;
                if let Some(s) = a.admin_command_seq {
                    self.last_command_seq = s;
                }
            }
            Outcome::Refused(r) => {
                if r.remember_id
                    && let (Some(id), Some(h)) = (r.request_id, r.request_hash)
                {
                    self.seen.insert(id, h);
                    self.results
                        .insert(id, r.refusal.code.to_be_bytes().to_vec());
                }
                self.audit = r.audit_head;
                self.audit_log
                    .push((r.audit.entry.clone(), r.audit.receipt));
                self.clock = r.clock;
            }
            Outcome::Replay(r) => {
                self.audit = r.audit_head;
                self.audit_log
                    .push((r.audit.entry.clone(), r.audit.receipt));
            }
        }
    }

    /// Evaluates and commits.
    ///
    /// # Errors
    /// [`DemoError`].
    pub fn submit(
        &mut self,
        request: &[u8],
        authority: Authority<'_>,
    ) -> Result<Outcome, DemoError> {
        let o = self.evaluate(request, authority)?;
        self.commit(&o);
        Ok(o)
    }

    /// Advances node time.
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.checked_add_ms(ms).unwrap_or(self.now);
    }
}

/// Parses a checksummed or lower-case address (demo and tests).
///
/// # Errors
/// [`DemoError`].
pub fn parse_address(s: &str) -> Result<Address, DemoError> {
    Address::from_str(s).map_err(de)
}
