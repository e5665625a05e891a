//! Stable rule tags: the names under which every decision is reported (in
//! refusals, the audit log, docs/policy.md and the tests).
//!
//! Owns: the [`Rule`] list. A tag is never renamed or reused; new rules are
//! appended.
//!
//! Must never: report a refusal without a rule tag.

use std::fmt;

/// A policy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A policy document must be signed by the current administrator quorum.
    PolicyQuorum,
    /// Policy versions only increase.
    PolicyVersion,
    /// Policy documents are canonical, complete and consistent.
    PolicyEncoding,
    /// A policy change activates only after the current policy's delay.
    PolicyActivationDelay,
    /// A quorum of vetoes cancels a pending change.
    PolicyVeto,
    /// Requests are refused outside their validity window.
    RequestExpired,
    /// A request id is never reused for different content.
    RequestIdReuse,
    /// A sign request envelope must decode.
    RequestMalformed,
    /// Node time may not step backwards or jump beyond the bound.
    ClockStep,
    /// Enough ground approvals over the request.
    Approvals,
    /// Signing only inside the allowed UTC windows.
    TimeWindow,
    /// Amount leaving the wallets per transaction.
    PerTxCap,
    /// Amount leaving the wallets per rolling window.
    Velocity,
    /// Absolute fee and fee-rate caps.
    FeeCap,
    /// Destinations must be allowlisted.
    Allowlist,
    /// Inputs confirmed to the policy's depth by SPV proofs.
    MinConf,
    /// Sighash ALL or DEFAULT only.
    Sighash,
    /// Input amounts must be proven by the previous transaction.
    UnprovenAmount,
    /// Change must derive from the spending wallet's change branch.
    ForeignChange,
    /// Every input belongs to a registered wallet.
    UnregisteredWallet,
    /// No outpoint twice in one transaction.
    DuplicateInput,
    /// Never two different transactions over one outpoint.
    Equivocation,
    /// A replacement must be a fee bump within the replacement cap.
    Replacement,
    /// Size limits on PSBTs and requests.
    Oversize,
    /// The PSBT must parse as BIP174 v0 or BIP370 v2.
    PsbtFormat,
    /// Every sighash computed twice and every signature verified.
    SelfCheck,
    /// A wallet registration must be a supported descriptor with our key.
    WalletRegistration,
    /// Allowed and approved.
    Approved,
    /// Enough ground approvals over an Ethereum request.
    EthApprovals,
    /// The chain id is allowlisted (and present: no pre-EIP-155 transaction).
    EthChainId,
    /// Every call destination and token recipient is allowlisted on its chain; no contract creation.
    EthAllowlist,
    /// Native coin leaving per request stays under the chain's cap.
    EthValueCap,
    /// Native coin leaving per rolling window stays under each cap.
    EthVelocity,
    /// ERC-20 transfers stay under the token's per-request and window caps.
    EthErc20Cap,
    /// ERC-20 approvals name an allowlisted spender within its allowance.
    EthSpender,
    /// The gas limit stays under the chain's cap.
    EthGasLimit,
    /// Fee per gas and priority fee stay under the chain's caps.
    EthMaxFee,
    /// DELEGATECALL only to an allowlisted target.
    EthDelegatecall,
    /// Calldata only with a selector the policy allows for that destination.
    EthUnknownCalldata,
    /// Never two different transactions for one (chain, account, nonce).
    EthNonceReuse,
    /// The transaction, calldata, MultiSend batch or Safe transaction decodes strictly.
    EthMalformed,
    /// Both signing-hash computations agree and every signature recovers to the node's address.
    EthSelfCheck,
    /// Safe refund parameters (gasPrice, gasToken, refundReceiver) only when allowlisted.
    SafeRefund,
    /// No Safe call to itself (owners, threshold, guard, modules, fallback handler) outside the quorum path.
    SafeSelfCall,
    /// Safe requests only for a registered Safe, signed with its registered owner key.
    SafeUnregistered,
    /// Never two different SafeTx hashes for one (Safe, Safe nonce).
    SafeNonceReuse,
    /// Only Safe contract versions whose EIP-712 domain the node knows.
    SafeVersion,
    /// A Safe registration is consistent and names the node as an owner.
    SafeRegistration,
    /// A replacement spends every outpoint of the transaction it replaces.
    PartialReplacement,
    /// No output below Bitcoin Core's dust threshold for its script.
    Dust,
    /// Outputs only to standard templates and at most one OP_RETURN of 83 bytes.
    NonStandardScript,
    /// Transaction weight within the standard maximum (and non-witness size at least 65 bytes).
    NonStandardSize,
    /// Fee rate at least the minimum relay fee rate.
    MinRelayFee,
    /// Transaction version 1, 2 or 3 (TRUC within its size limit).
    NonStandardVersion,
    /// A replacement pays the incremental relay fee for its own size (BIP125 rule 4).
    ReplacementIncrement,
    /// No Bitcoin signing while a refused deep reorg is flagged.
    DeepReorg,
    /// SafeTx of a pre-1.3.0 Safe (EIP-712 domain without a chain id) only
    /// on a chain the policy explicitly allows them on.
    SafeLegacyDomain,
}

impl Rule {
    /// Every rule, in table order.
    pub const ALL: [Rule; 57] = [
        Rule::PolicyQuorum,
        Rule::PolicyVersion,
        Rule::PolicyEncoding,
        Rule::PolicyActivationDelay,
        Rule::PolicyVeto,
        Rule::RequestExpired,
        Rule::RequestIdReuse,
        Rule::RequestMalformed,
        Rule::ClockStep,
        Rule::Approvals,
        Rule::TimeWindow,
        Rule::PerTxCap,
        Rule::Velocity,
        Rule::FeeCap,
        Rule::Allowlist,
        Rule::MinConf,
        Rule::Sighash,
        Rule::UnprovenAmount,
        Rule::ForeignChange,
        Rule::UnregisteredWallet,
        Rule::DuplicateInput,
        Rule::Equivocation,
        Rule::Replacement,
        Rule::Oversize,
        Rule::PsbtFormat,
        Rule::SelfCheck,
        Rule::WalletRegistration,
        Rule::Approved,
        Rule::EthApprovals,
        Rule::EthChainId,
        Rule::EthAllowlist,
        Rule::EthValueCap,
        Rule::EthVelocity,
        Rule::EthErc20Cap,
        Rule::EthSpender,
        Rule::EthGasLimit,
        Rule::EthMaxFee,
        Rule::EthDelegatecall,
        Rule::EthUnknownCalldata,
        Rule::EthNonceReuse,
        Rule::EthMalformed,
        Rule::EthSelfCheck,
        Rule::SafeRefund,
        Rule::SafeSelfCall,
        Rule::SafeUnregistered,
        Rule::SafeNonceReuse,
        Rule::SafeVersion,
        Rule::SafeRegistration,
        Rule::PartialReplacement,
        Rule::Dust,
        Rule::NonStandardScript,
        Rule::NonStandardSize,
        Rule::MinRelayFee,
        Rule::NonStandardVersion,
        Rule::ReplacementIncrement,
        Rule::DeepReorg,
        Rule::SafeLegacyDomain,
    ];

    /// The stable tag.
    #[must_use]
    pub const fn tag(self) -> &'static str {
        match self {
            Rule::PolicyQuorum => "policy-quorum",
            Rule::PolicyVersion => "policy-version",
            Rule::PolicyEncoding => "policy-encoding",
            Rule::PolicyActivationDelay => "policy-activation-delay",
            Rule::PolicyVeto => "policy-veto",
            Rule::RequestExpired => "request-expired",
            Rule::RequestIdReuse => "request-id-reuse",
            Rule::RequestMalformed => "request-malformed",
            Rule::ClockStep => "clock-step",
            Rule::Approvals => "btc-approvals",
            Rule::TimeWindow => "btc-time-window",
            Rule::PerTxCap => "btc-per-tx-cap",
            Rule::Velocity => "btc-velocity",
            Rule::FeeCap => "btc-fee-cap",
            Rule::Allowlist => "btc-allowlist",
            Rule::MinConf => "btc-min-conf",
            Rule::Sighash => "btc-sighash",
            Rule::UnprovenAmount => "btc-unproven-amount",
            Rule::ForeignChange => "btc-foreign-change",
            Rule::UnregisteredWallet => "btc-unregistered-wallet",
            Rule::DuplicateInput => "btc-duplicate-input",
            Rule::Equivocation => "btc-equivocation",
            Rule::Replacement => "btc-replacement",
            Rule::Oversize => "btc-oversize",
            Rule::PsbtFormat => "btc-psbt-format",
            Rule::SelfCheck => "btc-self-check",
            Rule::WalletRegistration => "wallet-registration",
            Rule::Approved => "approved",
            Rule::EthApprovals => "eth-approvals",
            Rule::EthChainId => "eth-chain-id",
            Rule::EthAllowlist => "eth-allowlist",
            Rule::EthValueCap => "eth-value-cap",
            Rule::EthVelocity => "eth-velocity",
            Rule::EthErc20Cap => "eth-erc20-cap",
            Rule::EthSpender => "eth-spender",
            Rule::EthGasLimit => "eth-gas-limit",
            Rule::EthMaxFee => "eth-max-fee",
            Rule::EthDelegatecall => "eth-delegatecall",
            Rule::EthUnknownCalldata => "eth-unknown-calldata",
            Rule::EthNonceReuse => "eth-nonce-reuse",
            Rule::EthMalformed => "eth-malformed",
            Rule::EthSelfCheck => "eth-self-check",
            Rule::SafeRefund => "safe-refund",
            Rule::SafeSelfCall => "safe-self-call",
            Rule::SafeUnregistered => "safe-unregistered",
            Rule::SafeNonceReuse => "safe-nonce-reuse",
            Rule::SafeVersion => "safe-version",
            Rule::SafeRegistration => "safe-registration",
            Rule::PartialReplacement => "btc-replacement-partial",
            Rule::Dust => "btc-dust",
            Rule::NonStandardScript => "btc-nonstandard-script",
            Rule::NonStandardSize => "btc-nonstandard-size",
            Rule::MinRelayFee => "btc-min-relay-fee",
            Rule::NonStandardVersion => "btc-nonstandard-version",
            Rule::ReplacementIncrement => "btc-replacement-increment",
            Rule::DeepReorg => "btc-deep-reorg",
            Rule::SafeLegacyDomain => "safe-legacy-domain",
        }
    }

    /// The rule for a tag.
    #[must_use]
    pub fn from_tag(tag: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.tag() == tag)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_and_round_trip() {
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert_eq!(Rule::from_tag(r.tag()), Some(*r));
            assert!(Rule::ALL.iter().skip(i + 1).all(|o| o.tag() != r.tag()));
        }
    }
}
