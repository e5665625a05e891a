//! Refusals of the Ethereum signing path: one enum, stable codes
//! (0x0700..=0x07FF) and a rule tag per variant.
//!
//! Owns: [`EthError`] and [`Refusal`] (what reaches the ground and the audit
//! log: code, rule tag, message, whether to raise an event). Must never:
//! renumber a code or report a refusal without its rule.

use alloy_primitives::Address;
use spacenode_policy::Rule;
/// A refusal as reported (the pipeline's, the same for both chains).
pub use spacenode_policy::pipeline::Refusal;
use spacenode_policy::request::RequestError;

/// Everything that stops an Ethereum signature. Codes are listed in
/// docs/policy.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// The unsigned transaction is not valid RLP of a known layout.
    #[error("transaction rlp: {0}")]
    Rlp(String),
    /// Wrong or unsupported EIP-2718 type byte.
    #[error("transaction type {0:#04x} not supported (EIP-1559 type 2 or EIP-155 legacy only)")]
    TxType(u8),
    /// Decodes, but not in its one canonical form (trailing bytes, a list
    /// that does not re-encode to the same bytes).
    #[error("transaction not canonical: {0}")]
    NonCanonical(&'static str),
    /// Transaction above the size limit.
    #[error("transaction of {size} bytes above {max}")]
    Oversize {
        /// Size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Calldata of a decoded function is malformed.
    #[error("calldata of {function}: {detail}")]
    Abi {
        /// Function.
        function: &'static str,
        /// Why.
        detail: &'static str,
    },
    /// A MultiSend batch is malformed.
    #[error("multisend batch: {0}")]
    MultiSend(&'static str),
    /// The Safe transaction does not decode.
    #[error("safe transaction: {0}")]
    SafeTx(String),
    /// Chain not in the policy.
    #[error("chain id {0} not allowed by the policy")]
    ChainNotAllowed(u64),
    /// Legacy transaction without EIP-155 chain id.
    #[error("legacy transaction without chain id (pre-EIP-155: valid on every chain)")]
    NoChainId,
    /// The approveHash transaction is for another chain than the Safe.
    #[error("transaction on chain {tx} for a Safe on chain {safe}")]
    ChainMismatch {
        /// Transaction chain.
        tx: u64,
        /// Safe chain.
        safe: u64,
    },
    /// The active policy has no Ethereum section.
    #[error("the active policy has no Ethereum rules")]
    NoEthRules,
    /// Contract creation.
    #[error("contract creation refused")]
    ContractCreation,
    /// Destination or token recipient not allowlisted.
    #[error("{role} {address} not allowlisted on chain {chain_id}")]
    NotAllowlisted {
        /// What the address is (destination, token recipient).
        role: &'static str,
        /// Address.
        address: Address,
        /// Chain.
        chain_id: u64,
    },
    /// Calldata with a selector the policy does not allow for the
    /// destination.
    #[error("call to {to}: calldata selector {selector} not allowed for it")]
    UnknownCalldata {
        /// Destination.
        to: Address,
        /// Selector (hex) or a description of the calldata.
        selector: String,
    },
    /// Native coin above the per-request cap.
    #[error("{amount} wei leaving on chain {chain_id} above the per-request cap {cap} wei")]
    ValueCap {
        /// Chain.
        chain_id: u64,
        /// Amount (decimal; may exceed u128).
        amount: String,
        /// Cap.
        cap: u128,
    },
    /// Native velocity.
    #[error("chain {chain_id}: {detail}")]
    Velocity {
        /// Chain.
        chain_id: u64,
        /// Which window, spent, cap.
        detail: String,
    },
    /// Token transfers above the per-request cap.
    #[error("token {token}: {amount} units above the per-request cap {cap}")]
    TokenCap {
        /// Token.
        token: Address,
        /// Amount (decimal; may exceed u128).
        amount: String,
        /// Cap.
        cap: u128,
    },
    /// Token velocity.
    #[error("token {token}: {detail}")]
    TokenVelocity {
        /// Token.
        token: Address,
        /// Which window, spent, cap.
        detail: String,
    },
    /// Approval to a spender the policy does not know.
    #[error("token {token}: approval to unknown spender {spender}")]
    UnknownSpender {
        /// Token.
        token: Address,
        /// Spender.
        spender: Address,
    },
    /// Approval above the spender's allowance (unlimited approvals included).
    #[error("token {token}: approval of {amount} to {spender} above its allowance {max}")]
    ApprovalAboveMax {
        /// Token.
        token: Address,
        /// Spender.
        spender: Address,
        /// Amount (decimal).
        amount: String,
        /// Largest allowed.
        max: u128,
    },
    /// Gas limit above the cap.
    #[error("gas limit {gas_limit} above the cap {max}")]
    GasLimit {
        /// Gas limit.
        gas_limit: u64,
        /// Cap.
        max: u64,
    },
    /// Fee per gas (or legacy gas price) above the cap.
    #[error("max fee per gas {fee} wei above the cap {max} wei")]
    MaxFee {
        /// Fee per gas.
        fee: u128,
        /// Cap.
        max: u128,
    },
    /// Priority fee above its cap (or above the max fee).
    #[error("priority fee per gas {fee} wei above the cap {max} wei")]
    PriorityFee {
        /// Priority fee.
        fee: u128,
        /// Cap (or the transaction's max fee).
        max: u128,
    },
    /// DELEGATECALL to a target the policy does not allow.
    #[error("delegatecall to {to} refused: {detail}")]
    Delegatecall {
        /// Target.
        to: Address,
        /// Why.
        detail: &'static str,
    },
    /// Amount arithmetic overflowed.
    #[error("amounts overflow")]
    AmountOverflow,
    /// (chain, account, nonce) signed before for another transaction.
    #[error(
        "nonce {nonce} of {account} on chain {chain_id} already signed for another transaction (signing hash {previous})"
    )]
    NonceReuse {
        /// Chain.
        chain_id: u64,
        /// Account.
        account: Address,
        /// Nonce.
        nonce: u64,
        /// Signing hash signed before (hex).
        previous: String,
    },
    /// A Safe approval (approveHash, execTransaction) outside the Safe path.
    #[error("{function} on {to} is only signed through the Safe request kinds")]
    SafeCallOutsideSafePath {
        /// Function.
        function: &'static str,
        /// Destination.
        to: Address,
    },
    /// The Safe is not registered.
    #[error("safe {address} on chain {chain_id} is not registered")]
    SafeUnregistered {
        /// Chain.
        chain_id: u64,
        /// Address.
        address: Address,
    },
    /// The request's account is not the node's owner key of the Safe.
    #[error("account {account} is not the node's owner key of safe {safe} (account {expected})")]
    SafeOwnerAccount {
        /// Safe.
        safe: Address,
        /// Requested account index.
        account: u32,
        /// Registered account index.
        expected: u32,
    },
    /// The Safe calls itself outside the quorum path.
    #[error("safe {safe} calls itself ({function}) outside the administrator quorum path")]
    SafeSelfCall {
        /// Safe.
        safe: Address,
        /// Decoded function (or "unknown function").
        function: &'static str,
    },
    /// Refund parameters not allowlisted or above their cap.
    #[error("safe refund: {0}")]
    SafeRefund(String),
    /// (Safe, nonce) signed before for another SafeTx.
    #[error(
        "safe {safe} nonce {nonce} already signed for another transaction (safeTxHash {previous})"
    )]
    SafeNonceReuse {
        /// Safe.
        safe: Address,
        /// Safe nonce (decimal).
        nonce: String,
        /// SafeTx hash signed before (hex).
        previous: String,
    },
    /// Unsupported Safe contract version.
    #[error("safe version {0:?} not supported (1.0.0 to 1.5.0)")]
    SafeVersion(String),
    /// A SafeTx of a Safe older than 1.3.0, whose EIP-712 domain names no
    /// chain, on a chain the policy does not allow legacy Safes on.
    #[error(
        "Safe {safe} is version {version}: its SafeTx hash names no chain, so a signature would be valid on every chain; the policy does not allow pre-1.3.0 Safes on chain {chain_id} (eth.legacy_safes)"
    )]
    SafeLegacyDomain {
        /// The Safe.
        safe: Address,
        /// Its registered chain.
        chain_id: u64,
        /// Its contract version.
        version: String,
    },
    /// Safe registration refused.
    #[error("safe registration: {0}")]
    SafeRegistration(String),
    /// The administrator command for the quorum path does not authorise
    /// this request.
    #[error("administrator authority ({code:#06x}): {detail}")]
    AdminAuthority {
        /// The command error's own code (0x052x, 0x050x), or 0 if the
        /// command is valid but for something else.
        code: u16,
        /// Why.
        detail: String,
    },
    /// The two signing-hash computations differ (fault).
    #[error("signing hash computations differ (fault)")]
    HashMismatch,
    /// A fresh signature does not recover to the expected address (fault).
    #[error("signature does not recover to {expected} (fault)")]
    SignatureSelfCheck {
        /// Expected signer.
        expected: Address,
    },
    /// The key store failed.
    #[error("signer: {0}")]
    Signer(String),
}

impl EthError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Rlp(_) => 0x0701,
            Self::TxType(_) => 0x0702,
            Self::NonCanonical(_) => 0x0703,
            Self::Oversize { .. } => 0x0704,
            Self::Abi { .. } => 0x0705,
            Self::MultiSend(_) => 0x0706,
            Self::SafeTx(_) => 0x0707,
            Self::ChainNotAllowed(_) => 0x0710,
            Self::NoChainId => 0x0711,
            Self::ChainMismatch { .. } => 0x0712,
            Self::NoEthRules => 0x0713,
            Self::ContractCreation => 0x0714,
            Self::NotAllowlisted { .. } => 0x0715,
            Self::UnknownCalldata { .. } => 0x0716,
            Self::ValueCap { .. } => 0x0717,
            Self::Velocity { .. } => 0x0718,
            Self::TokenCap { .. } => 0x0719,
            Self::TokenVelocity { .. } => 0x071A,
            Self::UnknownSpender { .. } => 0x071B,
            Self::ApprovalAboveMax { .. } => 0x071C,
            Self::GasLimit { .. } => 0x071D,
            Self::MaxFee { .. } => 0x071E,
            Self::PriorityFee { .. } => 0x071F,
            Self::Delegatecall { .. } => 0x0720,
            Self::AmountOverflow => 0x0721,
            Self::NonceReuse { .. } => 0x0722,
            Self::SafeCallOutsideSafePath { .. } => 0x0723,
            Self::SafeUnregistered { .. } => 0x0730,
            Self::SafeOwnerAccount { .. } => 0x0731,
            Self::SafeSelfCall { .. } => 0x0732,
            Self::SafeRefund(_) => 0x0733,
            Self::SafeNonceReuse { .. } => 0x0734,
            Self::SafeVersion(_) => 0x0735,
            Self::SafeLegacyDomain { .. } => 0x0750,
            Self::SafeRegistration(_) => 0x0736,
            Self::AdminAuthority { .. } => 0x0737,
            Self::HashMismatch => 0x0740,
            Self::SignatureSelfCheck { .. } => 0x0741,
            Self::Signer(_) => 0x0742,
        }
    }

    /// The rule reported with the refusal.
    #[must_use]
    pub fn rule(&self) -> Rule {
        match self {
            Self::Rlp(_)
            | Self::TxType(_)
            | Self::NonCanonical(_)
            | Self::Oversize { .. }
            | Self::Abi { .. }
            | Self::MultiSend(_)
            | Self::SafeTx(_) => Rule::EthMalformed,
            Self::ChainNotAllowed(_)
            | Self::NoChainId
            | Self::ChainMismatch { .. }
            | Self::NoEthRules => Rule::EthChainId,
            Self::ContractCreation | Self::NotAllowlisted { .. } => Rule::EthAllowlist,
            Self::UnknownCalldata { .. } | Self::SafeCallOutsideSafePath { .. } => {
                Rule::EthUnknownCalldata
            }
            Self::ValueCap { .. } | Self::AmountOverflow => Rule::EthValueCap,
            Self::Velocity { .. } => Rule::EthVelocity,
            Self::TokenCap { .. } | Self::TokenVelocity { .. } => Rule::EthErc20Cap,
            Self::UnknownSpender { .. } | Self::ApprovalAboveMax { .. } => Rule::EthSpender,
            Self::GasLimit { .. } => Rule::EthGasLimit,
            Self::MaxFee { .. } | Self::PriorityFee { .. } => Rule::EthMaxFee,
            Self::Delegatecall { .. } => Rule::EthDelegatecall,
            Self::NonceReuse { .. } => Rule::EthNonceReuse,
            Self::SafeUnregistered { .. } | Self::SafeOwnerAccount { .. } => Rule::SafeUnregistered,
            Self::SafeSelfCall { .. } | Self::AdminAuthority { .. } => Rule::SafeSelfCall,
            Self::SafeRefund(_) => Rule::SafeRefund,
            Self::SafeNonceReuse { .. } => Rule::SafeNonceReuse,
            Self::SafeVersion(_) => Rule::SafeVersion,
            Self::SafeLegacyDomain { .. } => Rule::SafeLegacyDomain,
            Self::SafeRegistration(_) => Rule::SafeRegistration,
            Self::HashMismatch | Self::SignatureSelfCheck { .. } | Self::Signer(_) => {
                Rule::EthSelfCheck
            }
        }
    }

    /// Faults the node reports as events (a bit flip or a failing signer).
    #[must_use]
    pub fn raise_event(&self) -> bool {
        matches!(
            self,
            Self::HashMismatch | Self::SignatureSelfCheck { .. } | Self::Signer(_)
        )
    }
}

impl From<EthError> for Refusal {
    fn from(e: EthError) -> Self {
        Self {
            code: e.code(),
            rule: e.rule(),
            raise_event: e.raise_event(),
            detail: e.to_string(),
        }
    }
}

/// An envelope refusal as reported on the Ethereum path: policy codes, but
/// approvals and size under the Ethereum tags.
#[must_use]
pub fn envelope_refusal(e: RequestError) -> Refusal {
    let rule = match &e {
        RequestError::Approvals(_) => Rule::EthApprovals,
        RequestError::TooLarge(_) => Rule::EthMalformed,
        other => other.rule(),
    };
    Refusal {
        code: e.code(),
        rule,
        raise_event: false,
        detail: e.to_string(),
    }
}
