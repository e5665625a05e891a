//! Refusals of the Bitcoin signing path: one enum, stable codes
//! (0x0600..=0x06FF; issue-13 additions 0x06A0..=0x06BF) and a rule tag per variant.
//!
//! Owns: [`BtcError`] and [`Refusal`] (what reaches the ground and the audit
//! log: code, rule tag, message, whether to raise an event). Must never:
//! renumber a code or report a refusal without its rule.

use spacenode_policy::Rule;
/// A refusal as reported (the pipeline's, the same for both chains).
pub use spacenode_policy::pipeline::Refusal;

/// Everything that stops a signature. Codes are listed in docs/policy.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtcError {
    /// PSBT does not parse (BIP174).
    #[error("psbt: {0}")]
    PsbtMalformed(String),
    /// PSBT v2 does not parse or convert (BIP370).
    #[error("psbt v2: {0}")]
    PsbtV2(String),
    /// PSBT or transaction too large.
    #[error("psbt of {size} bytes (or {items} inputs/outputs) exceeds {max}")]
    Oversize {
        /// Size in bytes.
        size: usize,
        /// Inputs + outputs.
        items: usize,
        /// Limit in bytes.
        max: usize,
    },
    /// An outpoint appears twice.
    #[error("input {index} spends {outpoint} twice")]
    DuplicateInput {
        /// Second input.
        index: usize,
        /// Outpoint.
        outpoint: String,
    },
    /// Sighash type other than ALL/DEFAULT.
    #[error("input {index}: sighash type {sighash:#x} refused (ALL or DEFAULT only)")]
    Sighash {
        /// Input.
        index: usize,
        /// Type found.
        sighash: u32,
    },
    /// Input does not derive from a registered wallet.
    #[error("input {index}: not from a registered wallet ({detail})")]
    UnregisteredWallet {
        /// Input.
        index: usize,
        /// Why.
        detail: String,
    },
    /// Neither witness_utxo nor non_witness_utxo.
    #[error("input {index}: no previous output given")]
    MissingUtxo {
        /// Input.
        index: usize,
    },
    /// Segwit v0 input without the full previous transaction.
    #[error("input {index}: segwit v0 input needs non_witness_utxo (fee attack)")]
    MissingNonWitnessUtxo {
        /// Input.
        index: usize,
    },
    /// non_witness_utxo does not hash to the outpoint's txid.
    #[error("input {index}: previous transaction does not hash to the outpoint")]
    NonWitnessUtxoMismatch {
        /// Input.
        index: usize,
    },
    /// witness_utxo disagrees with the proven previous output.
    #[error("input {index}: witness_utxo differs from the proven previous output")]
    WitnessUtxoMismatch {
        /// Input.
        index: usize,
    },
    /// No SPV proof for an input's funding transaction.
    #[error("input {index}: no SPV proof for funding tx {txid}")]
    SpvMissing {
        /// Input.
        index: usize,
        /// Funding txid.
        txid: String,
    },
    /// SPV proof invalid against our chain.
    #[error("input {index}: SPV proof refused ({chain_code:#06x}: {detail})")]
    SpvInvalid {
        /// Input.
        index: usize,
        /// spacenode-chain code.
        chain_code: u16,
        /// Message.
        detail: String,
    },
    /// Funding transaction not deep enough.
    #[error("input {index}: {confirmations} confirmations, policy requires {required}")]
    InsufficientConfirmations {
        /// Input.
        index: usize,
        /// Found.
        confirmations: u32,
        /// Required.
        required: u32,
    },
    /// An output claims to be our change but does not derive as such.
    #[error("output {index}: claims wallet derivation but is not our change ({detail})")]
    ForeignChange {
        /// Output.
        index: usize,
        /// Why.
        detail: String,
    },
    /// Outputs exceed inputs, or an amount overflows.
    #[error("amounts: {0}")]
    BadAmounts(String),
    /// Fee above the absolute cap.
    #[error("fee {fee} sat above cap {cap} sat")]
    FeeAboveCap {
        /// Fee.
        fee: u64,
        /// Cap.
        cap: u64,
    },
    /// Fee rate above the cap.
    #[error("fee rate {rate} sat/kvB (vsize {vsize}) above cap {cap} sat/kvB")]
    FeeRateAboveCap {
        /// Rate.
        rate: u64,
        /// Estimated vsize.
        vsize: u64,
        /// Cap.
        cap: u64,
    },
    /// Amount above the per-transaction cap.
    #[error("spend of {amount} sat above per-transaction cap {cap} sat")]
    PerTxCap {
        /// Amount.
        amount: u64,
        /// Cap.
        cap: u64,
    },
    /// Destination not allowlisted.
    #[error("output {index}: destination {script} not in the allowlist")]
    NotAllowlisted {
        /// Output.
        index: usize,
        /// Script hex.
        script: String,
    },
    /// Velocity cap.
    #[error("{0}")]
    Velocity(String),
    /// An outpoint was signed before in another transaction.
    #[error("outpoint {outpoint} already signed in {previous}; replacement not allowed")]
    Equivocation {
        /// Outpoint.
        outpoint: String,
        /// Earlier txid.
        previous: String,
    },
    /// Replacement that is not a pure fee bump.
    #[error("replacement of {previous} refused: {detail}")]
    Replacement {
        /// Earlier txid.
        previous: String,
        /// Why.
        detail: String,
    },
    /// Outside the allowed UTC windows.
    #[error("node time outside the allowed signing windows")]
    TimeWindow,
    /// Two sighash computations differ (fault).
    #[error("input {index}: sighash computations differ (fault)")]
    SighashMismatch {
        /// Input.
        index: usize,
    },
    /// A fresh signature does not verify (fault).
    #[error("input {index}: signature does not verify (fault)")]
    SignatureSelfCheck {
        /// Input.
        index: usize,
    },
    /// The signer failed.
    #[error("signer: {0}")]
    Signer(String),
    /// Wallet registration refused.
    #[error("wallet registration: {0}")]
    Registration(#[from] crate::wallet::WalletError),
    /// A "replacement" that leaves outpoints of the replaced transaction
    /// unspent (both could confirm: issue 13 item 1).
    #[error(
        "replacement of {previous} refused: it spends {left_out} of its {spent} outpoints \
         no more (first missing {missing}); a replacement must spend every outpoint \
         of the transaction it replaces"
    )]
    PartialReplacement {
        /// Earlier txid.
        previous: String,
        /// First outpoint of the earlier transaction not spent here.
        missing: String,
        /// How many of its outpoints are not spent here.
        left_out: usize,
        /// How many outpoints it spends.
        spent: usize,
    },
    /// An output below Bitcoin Core's dust threshold for its script.
    #[error(
        "output {index}: {value} sat is dust for its script (threshold {threshold} sat at 3 sat/vB)"
    )]
    Dust {
        /// Output.
        index: usize,
        /// Its value.
        value: u64,
        /// Core's `GetDustThreshold` at the default dust relay fee.
        threshold: u64,
    },
    /// An output script outside the standard templates.
    #[error("output {index}: non-standard script ({detail})")]
    NonStandardScript {
        /// Output.
        index: usize,
        /// Why.
        detail: String,
    },
    /// Transaction size outside the standard bounds.
    #[error("non-standard size: {0}")]
    NonStandardSize(String),
    /// Fee rate below the minimum relay fee rate.
    #[error(
        "fee {fee} sat for an estimated {vsize} vB is below the minimum relay fee of {min_rate} sat/vB"
    )]
    BelowMinRelayFee {
        /// Fee.
        fee: u64,
        /// Estimated vsize.
        vsize: u64,
        /// Minimum rate, sat/vB.
        min_rate: u64,
    },
    /// Transaction version not standard (1, 2, or 3 within TRUC limits).
    #[error("non-standard transaction version: {0}")]
    NonStandardVersion(String),
    /// A replacement that does not pay for its own relay (BIP125 rule 4).
    #[error(
        "replacement of {previous} adds {added} sat of fee, below {required} sat \
         (incremental relay fee 1 sat/vB x {vsize} vB)"
    )]
    ReplacementIncrement {
        /// Earlier txid.
        previous: String,
        /// Fee added over the replaced transaction.
        added: u64,
        /// What relay requires.
        required: u64,
        /// Estimated vsize of the replacement.
        vsize: u64,
    },
    /// A deeper reorganisation than the window was refused; the chain view
    /// may be stale or attacked until the quorum clears the flag.
    #[error(
        "a deep reorg was refused (branch from height {branch_start}); Bitcoin signing \
         stops until a quorum-signed CLEAR_DEEP_REORG command clears the flag"
    )]
    DeepReorg {
        /// First height of the refused branch.
        branch_start: u32,
    },
}

impl BtcError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::PsbtMalformed(_) => 0x0601,
            Self::PsbtV2(_) => 0x0602,
            Self::Oversize { .. } => 0x0603,
            Self::DuplicateInput { .. } => 0x0604,
            Self::Sighash { .. } => 0x0605,
            Self::UnregisteredWallet { .. } => 0x0606,
            Self::MissingUtxo { .. } => 0x0607,
            Self::MissingNonWitnessUtxo { .. } => 0x0608,
            Self::NonWitnessUtxoMismatch { .. } => 0x0609,
            Self::WitnessUtxoMismatch { .. } => 0x060A,
            Self::SpvMissing { .. } => 0x060B,
            Self::SpvInvalid { .. } => 0x060C,
            Self::InsufficientConfirmations { .. } => 0x060D,
            Self::ForeignChange { .. } => 0x060E,
            Self::BadAmounts(_) => 0x060F,
            Self::FeeAboveCap { .. } => 0x0610,
            Self::FeeRateAboveCap { .. } => 0x0611,
            Self::PerTxCap { .. } => 0x0612,
            Self::NotAllowlisted { .. } => 0x0613,
            Self::Velocity(_) => 0x0614,
            Self::Equivocation { .. } => 0x0615,
            Self::Replacement { .. } => 0x0616,
            Self::TimeWindow => 0x0617,
            Self::SighashMismatch { .. } => 0x0618,
            Self::SignatureSelfCheck { .. } => 0x0619,
            Self::Signer(_) => 0x061A,
            Self::Registration(w) => w.code(),
            Self::PartialReplacement { .. } => 0x06A0,
            Self::Dust { .. } => 0x06A1,
            Self::NonStandardScript { .. } => 0x06A2,
            Self::NonStandardSize(_) => 0x06A3,
            Self::BelowMinRelayFee { .. } => 0x06A4,
            Self::NonStandardVersion(_) => 0x06A5,
            Self::ReplacementIncrement { .. } => 0x06A6,
            Self::DeepReorg { .. } => 0x06A7,
        }
    }

    /// The rule reported with the refusal.
    #[must_use]
    pub fn rule(&self) -> Rule {
        match self {
            Self::PsbtMalformed(_) | Self::PsbtV2(_) | Self::BadAmounts(_) => Rule::PsbtFormat,
            Self::Oversize { .. } => Rule::Oversize,
            Self::DuplicateInput { .. } => Rule::DuplicateInput,
            Self::Sighash { .. } => Rule::Sighash,
            Self::UnregisteredWallet { .. } => Rule::UnregisteredWallet,
            Self::MissingUtxo { .. }
            | Self::MissingNonWitnessUtxo { .. }
            | Self::NonWitnessUtxoMismatch { .. }
            | Self::WitnessUtxoMismatch { .. } => Rule::UnprovenAmount,
            Self::SpvMissing { .. }
            | Self::SpvInvalid { .. }
            | Self::InsufficientConfirmations { .. } => Rule::MinConf,
            Self::ForeignChange { .. } => Rule::ForeignChange,
            Self::FeeAboveCap { .. } | Self::FeeRateAboveCap { .. } => Rule::FeeCap,
            Self::PerTxCap { .. } => Rule::PerTxCap,
            Self::NotAllowlisted { .. } => Rule::Allowlist,
            Self::Velocity(_) => Rule::Velocity,
            Self::Equivocation { .. } => Rule::Equivocation,
            Self::Replacement { .. } => Rule::Replacement,
            Self::TimeWindow => Rule::TimeWindow,
            Self::SighashMismatch { .. } | Self::SignatureSelfCheck { .. } | Self::Signer(_) => {
                Rule::SelfCheck
            }
            Self::Registration(_) => Rule::WalletRegistration,
            Self::PartialReplacement { .. } => Rule::PartialReplacement,
            Self::Dust { .. } => Rule::Dust,
            Self::NonStandardScript { .. } => Rule::NonStandardScript,
            Self::NonStandardSize(_) => Rule::NonStandardSize,
            Self::BelowMinRelayFee { .. } => Rule::MinRelayFee,
            Self::NonStandardVersion(_) => Rule::NonStandardVersion,
            Self::ReplacementIncrement { .. } => Rule::ReplacementIncrement,
            Self::DeepReorg { .. } => Rule::DeepReorg,
        }
    }

    /// Faults the node reports as events (a bit flip or a failing signer).
    #[must_use]
    pub fn raise_event(&self) -> bool {
        matches!(
            self,
            Self::SighashMismatch { .. } | Self::SignatureSelfCheck { .. } | Self::Signer(_)
        )
    }
}

impl From<BtcError> for Refusal {
    fn from(e: BtcError) -> Self {
        Self {
            code: e.code(),
            rule: e.rule(),
            raise_event: e.raise_event(),
            detail: e.to_string(),
        }
    }
}
