//! Human-readable rendering of telemetry for operators: housekeeping
//! tables, event lines, reason codes. Pure string building; printing is the
//! binary's job.
//!
//! It must never hide a value it does not understand: unknown fields and
//! event data are shown raw.

use std::time::{Duration, UNIX_EPOCH};

use spacenode_chain::ChainStatus;
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{
    CHAIN_FLAG_DEEP_REORG, CHAIN_FLAG_UNAVAILABLE, Event, EventId, HkCore, ModeCode,
    NO_TEMPERATURE, Reader, Severity,
};

/// UTC time with milliseconds, RFC 3339.
#[must_use]
pub fn utc(unix_ms: i64) -> String {
    match u64::try_from(unix_ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => format!("{unix_ms} ms"),
    }
}

/// Bytes with a binary unit.
#[must_use]
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).unwrap_or(&"?"))
    }
}

/// Seconds as `1 d 02:03:04`.
#[must_use]
pub fn duration(secs: u64) -> String {
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if d > 0 {
        format!("{d} d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Reason codes of the header chain (0x0300..=0x03FF), as listed in
/// `payload/chain/README.md` (a test keeps the two equal): code, error name,
/// meaning.
#[rustfmt::skip] // one row per code, as in the README table
pub const CHAIN_CODES: &[(u16, &str, &str)] = &[
    (0x0301, "ValidationError::PrevHashMismatch", "header does not build on our block at height − 1"),
    (0x0302, "ValidationError::BadDifficultyBits", "nBits differs from the required value (expected, got)"),
    (0x0303, "ValidationError::TimeNotAfterMedian", "time ≤ median time past"),
    (0x0304, "ValidationError::Timewarp", "BIP94: period's first block too early"),
    (0x0305, "ValidationError::TimeTooFarInFuture", "time > node clock + 2 h"),
    (0x0306, "ValidationError::VersionTooOld", "version below the BIP34/66/65 floor"),
    (0x0307, "ValidationError::InvalidBits", "nBits negative, zero or overflowing"),
    (0x0308, "ValidationError::TargetAboveLimit", "target above powLimit"),
    (0x0309, "ValidationError::InsufficientProofOfWork", "hash above target"),
    (0x030A, "ValidationError::HeightOverflow", "height past u32"),
    (0x030B, "ValidationError::ChainWorkOverflow", "chain work past 2^256 − 1"),
    (0x0320, "ChainError::NetworkMismatch", "batch or checkpoint for another network"),
    (0x0321, "ChainError::Gap", "batch starts above tip + 1"),
    (0x0322, "ChainError::ParentMismatch", "batch parent is not our block: resend from the fork point"),
    (0x0323, "ChainError::BelowWindow", "batch ends below the lowest kept height"),
    (0x0324, "ChainError::LowWorkForkBelowWindow", "branch forks below the window, less work than the window"),
    (0x0325, "ChainError::DeepReorgRefused", "credible reorg deeper than the window: refused, flag set"),
    (0x0326, "ChainError::WindowTooSmall", "configured window < 2"),
    (0x0327, "ChainError::StoreCorrupt", "stored chain failed re-validation on load"),
    (0x0328, "ChainError::Store", "storage backend failed; nothing changed"),
    (0x0329, "ChainError::UpdateMismatch", "an update not planned by this state"),
    (0x0340, "BatchError::Truncated", "batch bytes end early"),
    (0x0341, "BatchError::UnsupportedFormat", "unknown batch format byte"),
    (0x0342, "BatchError::UnknownNetwork", "unknown network id"),
    (0x0343, "BatchError::ZeroStartHeight", "batch starts at genesis"),
    (0x0344, "BatchError::CountOutOfRange", "0 or more than 4032 headers"),
    (0x0345, "BatchError::InvalidFlags", "reserved or contradictory header flags"),
    (0x0346, "BatchError::FirstHeaderIncomplete", "first header lacks version, bits or absolute time"),
    (0x0347, "BatchError::TimeOutOfRange", "time delta leaves the u32 range"),
    (0x0348, "BatchError::TrailingBytes", "bytes after the last header"),
    (0x0349, "BatchError::HeightOverflow", "start + count past u32"),
    (0x034A, "BatchError::NotLinked", "compact layout cannot carry unlinked headers"),
    (0x0360, "CheckpointError::Truncated", "record bytes end early"),
    (0x0361, "CheckpointError::TrailingBytes", "bytes after the record"),
    (0x0362, "CheckpointError::UnsupportedFormat", "unknown record format"),
    (0x0363, "CheckpointError::UnknownNetwork", "unknown network id"),
    (0x0364, "CheckpointError::NetworkMismatch", "record for another network"),
    (0x0365, "CheckpointError::TimestampCount", "not min(11, height + 1) timestamps"),
    (0x0366, "CheckpointError::TimestampMismatch", "last timestamp is not the header's time"),
    (0x0367, "CheckpointError::AnchorMismatch", "anchor inconsistent with the height"),
    (0x0368, "CheckpointError::BadProofOfWork", "header or anchor fails its own PoW"),
    (0x0369, "CheckpointError::BitsInconsistent", "nBits impossible in the anchor's period"),
    (0x036A, "CheckpointError::ChainWorkTooLow", "chain work below the block's own work"),
    (0x036B, "CheckpointError::GenesisMismatch", "height-0 record or anchor is not genesis"),
    (0x0380, "SpvError::ProofTooLarge", "proof above 64 KiB"),
    (0x0381, "SpvError::MalformedProof", "proof bytes do not decode"),
    (0x0382, "SpvError::MalformedTransaction", "transaction bytes do not decode"),
    (0x0383, "SpvError::SixtyFourByteTransaction", "64-byte transaction (CVE-2017-12842)"),
    (0x0384, "SpvError::TxidMismatch", "proof's txid is not the transaction's"),
    (0x0385, "SpvError::TxNotInProof", "transaction not matched by the proof"),
    (0x0386, "SpvError::InvalidTxCount", "tx count 0 or impossible"),
    (0x0387, "SpvError::IndexOutOfRange", "index ≥ tx count"),
    (0x0388, "SpvError::WrongBranchLength", "branch length ≠ depth for the tx count"),
    (0x0389, "SpvError::DuplicateSibling", "duplicated sibling where Bitcoin never duplicates (CVE-2012-2459)"),
    (0x038A, "SpvError::BadPadding", "last node of an odd level not paired with itself"),
    (0x038B, "SpvError::PartialTree", "partial merkle tree malformed"),
    (0x038C, "SpvError::MerkleRootMismatch", "recomputed root ≠ header's"),
    (0x038D, "SpvError::BlockNotInWindow", "block unknown or below the window"),
    (0x038E, "SpvError::MalformedBranch", "branch encoding malformed"),
    (0x03A0, "StatusError::WrongLength", "status is not 107 bytes"),
    (0x03A1, "StatusError::UnsupportedFormat", "unknown status format"),
    (0x03A2, "StatusError::UnknownNetwork", "unknown network id"),
    (0x03A3, "StatusError::InvalidFlags", "unknown status flags"),
    (0x03A4, "StatusError::NonCanonical", "absent record not zeroed"),
    (0x03B0, "ClearReorgError::NeedsQuorum", "clearing the deep-reorg flag needs a quorum-signed CLEAR_DEEP_REORG command"),
    (0x03B1, "ClearReorgError::NotFlagged", "no refused deep reorg is flagged"),
    (0x03B2, "ClearReorgError::OtherBranch", "the command names another refused branch than the flagged one"),
];

/// Names and meanings of the policy (0x05xx), Bitcoin signing (0x06xx)
/// and upload (0x09xx) reason codes, as listed in `docs/policy.md` and
/// `docs/wire.md`.
const COSIGN_CODES: &[(u16, &str, &str)] = &[
    (
        0x0403,
        "KeyError::PcrMismatch",
        "the signing seed is not available",
    ),
    (
        0x0501,
        "QuorumError::NotMet",
        "fewer valid administrator signatures than the threshold",
    ),
    (
        0x0502,
        "QuorumError::UnknownSigner",
        "signer index outside the administrator set",
    ),
    (
        0x0503,
        "QuorumError::DuplicateSigner",
        "the same administrator signed twice",
    ),
    (
        0x0504,
        "QuorumError::BadSignature",
        "an administrator signature does not verify",
    ),
    (
        0x0505,
        "QuorumError::InvalidSet",
        "no or malformed administrator set",
    ),
    (
        0x0520,
        "CommandError::Malformed",
        "administrator command not canonical",
    ),
    (
        0x0521,
        "CommandError::WrongTarget",
        "command names another node",
    ),
    (
        0x0522,
        "CommandError::Replayed",
        "command sequence not above the last executed",
    ),
    (
        0x0523,
        "CommandError::Expired",
        "node time outside the command's window",
    ),
    (
        0x0524,
        "CommandError::WrongKind",
        "another command kind was expected",
    ),
    (
        0x05D0,
        "CommandError::SeqJump",
        "command sequence more than 1000 above the highest executed",
    ),
    (
        0x0540,
        "DocumentError::Encoding",
        "policy not canonical, unknown or missing field",
    ),
    (
        0x0541,
        "DocumentError::UnsupportedFormat",
        "unknown policy format",
    ),
    (
        0x0542,
        "DocumentError::Invalid",
        "inconsistent policy fields",
    ),
    (
        0x0543,
        "DocumentError::Checkpoint",
        "policy checkpoint invalid or for another network",
    ),
    (0x0545, "DocumentError::TooLarge", "policy above 64 KiB"),
    (
        0x0560,
        "ChangeError::VersionNotNewer",
        "policy version not above the highest accepted",
    ),
    (
        0x0561,
        "ChangeError::NetworkChange",
        "policy for another network",
    ),
    (0x0562, "ChangeError::NoPending", "no pending policy change"),
    (
        0x0563,
        "ChangeError::VetoMismatch",
        "veto for another policy hash",
    ),
    (
        0x0566,
        "ChangeError::NotRegistered",
        "no registered wallet or Safe with that id",
    ),
    (
        0x0580,
        "RequestError::Malformed",
        "sign request does not decode",
    ),
    (
        0x0581,
        "RequestError::UnsupportedFormat",
        "unknown request format",
    ),
    (0x0582, "RequestError::TooLarge", "request above 4 MiB"),
    (
        0x0583,
        "RequestError::ExpiredTime",
        "node time outside the request's window",
    ),
    (
        0x0584,
        "RequestError::ExpiredHeight",
        "tip height outside the request's window",
    ),
    (
        0x0585,
        "RequestError::WrongTarget",
        "request for another node",
    ),
    (
        0x0586,
        "RequestError::IdReuse",
        "request id known with another body",
    ),
    (
        0x0587,
        "RequestError::Approvals",
        "ground approvals missing or invalid",
    ),
    (
        0x05A0,
        "ClockError::Backwards",
        "node clock stepped backwards",
    ),
    (
        0x05A1,
        "ClockError::Jump",
        "node clock jumped beyond the policy's bound",
    ),
    (
        0x05A2,
        "ClockError::BehindChain",
        "node clock behind the chain's median time",
    ),
    (0x0601, "BtcError::PsbtMalformed", "PSBT does not parse"),
    (
        0x0602,
        "BtcError::PsbtV2",
        "PSBT v2 does not parse or convert",
    ),
    (0x0603, "BtcError::Oversize", "PSBT too large"),
    (
        0x0604,
        "BtcError::DuplicateInput",
        "an outpoint is spent twice",
    ),
    (
        0x0605,
        "BtcError::Sighash",
        "sighash other than ALL/DEFAULT",
    ),
    (
        0x0606,
        "BtcError::UnregisteredWallet",
        "input not from a registered wallet",
    ),
    (
        0x0607,
        "BtcError::MissingUtxo",
        "input without its previous output",
    ),
    (
        0x0608,
        "BtcError::MissingNonWitnessUtxo",
        "segwit v0 input without the previous transaction",
    ),
    (
        0x0609,
        "BtcError::NonWitnessUtxoMismatch",
        "previous transaction does not hash to the outpoint",
    ),
    (
        0x060A,
        "BtcError::WitnessUtxoMismatch",
        "witness_utxo differs from the proven output",
    ),
    (
        0x060B,
        "BtcError::SpvMissing",
        "no SPV proof for a funding transaction",
    ),
    (
        0x060C,
        "BtcError::SpvInvalid",
        "SPV proof refused by the node's chain",
    ),
    (
        0x060D,
        "BtcError::InsufficientConfirmations",
        "funding below the policy's confirmations",
    ),
    (
        0x060E,
        "BtcError::ForeignChange",
        "output claims our derivation but is not ours",
    ),
    (0x060F, "BtcError::BadAmounts", "outputs exceed inputs"),
    (0x0610, "BtcError::FeeAboveCap", "fee above the cap"),
    (
        0x0611,
        "BtcError::FeeRateAboveCap",
        "fee rate above the cap",
    ),
    (
        0x0612,
        "BtcError::PerTxCap",
        "amount above the per-transaction cap",
    ),
    (
        0x0613,
        "BtcError::NotAllowlisted",
        "destination not in the allowlist",
    ),
    (
        0x0614,
        "BtcError::Velocity",
        "a velocity window would exceed its cap",
    ),
    (
        0x0615,
        "BtcError::Equivocation",
        "outpoint already signed in another transaction",
    ),
    (
        0x0616,
        "BtcError::Replacement",
        "replacement is not a fee bump",
    ),
    (
        0x0617,
        "BtcError::TimeWindow",
        "outside the allowed signing windows",
    ),
    (
        0x0618,
        "BtcError::SighashMismatch",
        "the two sighash computations differ (fault)",
    ),
    (
        0x0619,
        "BtcError::SignatureSelfCheck",
        "a signature does not verify (fault)",
    ),
    (0x061A, "BtcError::Signer", "the key store failed"),
    (
        0x06A0,
        "BtcError::PartialReplacement",
        "replacement leaves outpoints of the replaced transaction unspent",
    ),
    (
        0x06A1,
        "BtcError::Dust",
        "output below the dust threshold of its script",
    ),
    (
        0x06A2,
        "BtcError::NonStandardScript",
        "output script not a standard template (or a second/oversized OP_RETURN)",
    ),
    (
        0x06A3,
        "BtcError::NonStandardSize",
        "weight above 400000 or non-witness size below 65 bytes",
    ),
    (
        0x06A4,
        "BtcError::BelowMinRelayFee",
        "fee rate below the minimum relay fee (1 sat/vB)",
    ),
    (
        0x06A5,
        "BtcError::NonStandardVersion",
        "transaction version not 1, 2 or 3 (or TRUC above 10000 vB)",
    ),
    (
        0x06A6,
        "BtcError::ReplacementIncrement",
        "replacement adds less than 1 sat/vB of its size (BIP125 rule 4)",
    ),
    (
        0x06A7,
        "BtcError::DeepReorg",
        "a refused deep reorg is flagged: signing stops until the quorum clears it",
    ),
    (
        0x0901,
        "FILE_TOO_LARGE",
        "upload of 0 bytes or above 64 KiB",
    ),
    (0x0902, "FILE_UNKNOWN", "no upload with this content id"),
    (
        0x0903,
        "FILE_BAD_CHUNK",
        "chunk not at a chunk boundary or of the wrong length",
    ),
    (
        0x0904,
        "FILE_HASH_MISMATCH",
        "content does not hash to its id",
    ),
    (0x0905, "FILE_INCOMPLETE", "upload still missing chunks"),
    (0x0906, "FILE_CONFLICT", "upload known with other content"),
];

/// Name and meaning of a reason code: the wire crate's own, the header
/// chain's, or the policy, signing and upload services'.
#[must_use]
pub fn describe(code: ReasonCode) -> Option<(&'static str, &'static str)> {
    code.describe().or_else(|| {
        CHAIN_CODES
            .iter()
            .chain(COSIGN_CODES)
            .find(|(c, _, _)| *c == code.0)
            .map(|(_, name, text)| (*name, *text))
    })
}

/// A reason code with its name and meaning where known.
#[must_use]
pub fn reason(code: ReasonCode) -> String {
    match describe(code) {
        Some((name, text)) => format!("0x{:04x} {name} ({text})", code.0),
        None if code.0 == 0 => "none".to_string(),
        None => format!("0x{:04x}", code.0),
    }
}

/// A block hash or other 32-byte hash in display order (as block explorers
/// and `bitcoin-cli` print it).
#[must_use]
pub fn block_hash(hash: &bitcoin::BlockHash) -> String {
    hash.to_string()
}

/// Cumulative chain work: hex without leading zeros, and its log2.
#[must_use]
pub fn chain_work(work: bitcoin::Work) -> String {
    let hex = hex::encode(work.to_be_bytes());
    let trimmed = hex.trim_start_matches('0');
    let digits = if trimmed.is_empty() { "0" } else { trimmed };
    format!("0x{digits} (2^{:.2})", work.log2())
}

/// Chain flags of housekeeping as words.
#[must_use]
pub fn chain_flags(flags: u8) -> String {
    let mut words = Vec::new();
    if flags & CHAIN_FLAG_DEEP_REORG != 0 {
        words.push("DEEP REORG REFUSED".to_string());
    }
    if flags & CHAIN_FLAG_UNAVAILABLE != 0 {
        words.push("CHAIN UNAVAILABLE".to_string());
    }
    let unknown = flags & !(CHAIN_FLAG_DEEP_REORG | CHAIN_FLAG_UNAVAILABLE);
    if unknown != 0 {
        words.push(format!("unknown bits 0x{unknown:02x}"));
    }
    if words.is_empty() {
        "none".to_string()
    } else {
        format!("0x{flags:02x} {}", words.join(", "))
    }
}

/// Network name as in the node's `chain.network` setting.
#[must_use]
pub fn network_name(network: bitcoin::Network) -> &'static str {
    match network {
        bitcoin::Network::Bitcoin => "mainnet",
        bitcoin::Network::Testnet => "testnet3",
        bitcoin::Network::Testnet4 => "testnet4",
        bitcoin::Network::Signet => "signet",
        bitcoin::Network::Regtest => "regtest",
    }
}

/// The `ground chain status` table.
#[must_use]
pub fn chain_status_table(st: &ChainStatus, tm_time_ms: i64) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("report time", utc(tm_time_ms)),
        ("network", network_name(st.network).to_string()),
        ("tip height", st.tip_height.to_string()),
        ("tip hash", block_hash(&st.tip_hash)),
        ("chain work", chain_work(st.tip_chain_work)),
        (
            "tip median time",
            utc(i64::from(st.tip_median_time_past).saturating_mul(1000)),
        ),
        ("window", format!("{} headers", st.window)),
        ("lowest kept height", st.lowest_height.to_string()),
        (
            "last reorg",
            st.last_reorg.map_or_else(
                || "none".to_string(),
                |r| {
                    format!(
                        "fork at {}, {} block(s) replaced, new tip {}",
                        r.fork_height, r.depth, r.new_tip_height
                    )
                },
            ),
        ),
        (
            "deep reorg refused",
            st.deep_reorg_refused.map_or_else(
                || "no".to_string(),
                |d| {
                    format!(
                        "YES: branch {}..={} forks below the lowest kept height {}; \
                         Bitcoin signing stopped (clear with a quorum-signed command: \
                         `ground admin command clear-deep-reorg --body-hex {:08x}`, \
                         then `ground chain clear-deep-reorg --command FILE`)",
                        d.branch_start, d.branch_end, d.lowest_kept, d.branch_start
                    )
                },
            ),
        ),
    ];
    table("spacenode chain status", rows)
}

fn table(title: &str, rows: Vec<(&str, String)>) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{title}\n");
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

/// The housekeeping table.
#[must_use]
pub fn hk_table(hk: &HkCore, tm_time_ms: i64) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("report time", utc(tm_time_ms)),
        ("uptime", duration(u64::from(hk.uptime_s))),
        ("boot count", hk.boot_count.to_string()),
        (
            "mode",
            ModeCode::from_u8(hk.mode).map_or_else(
                || format!("unknown ({})", hk.mode),
                |m| m.name().to_string(),
            ),
        ),
        ("mode reason", reason(ReasonCode(hk.mode_reason))),
        ("frames ok", hk.frames_ok.to_string()),
        ("crc errors", hk.crc_errors.to_string()),
        ("malformed frames", hk.malformed_frames.to_string()),
        ("oversize frames", hk.oversize_frames.to_string()),
        ("resyncs", hk.resyncs.to_string()),
        ("replays refused", hk.replays.to_string()),
        ("auth failures", hk.auth_failures.to_string()),
        ("unknown key/malformed", hk.unknown_keys.to_string()),
        ("tc accepted", hk.tc_accepted.to_string()),
        ("tc rejected", hk.tc_rejected.to_string()),
        ("tm sent", hk.tm_sent.to_string()),
        ("tm suppressed", hk.tm_suppressed.to_string()),
        ("downlink key id", hk.tx_key_id.to_string()),
        ("downlink next seq", hk.tx_next_seq.to_string()),
        ("uplink highest seq", hk.rx_highest_seq.to_string()),
        ("storage used", bytes(hk.storage_used_bytes)),
        ("storage free", bytes(hk.storage_free_bytes)),
        (
            "cpu temperature",
            if hk.cpu_temp_milli_c == NO_TEMPERATURE {
                "n/a (no sensor)".to_string()
            } else {
                format!("{:.1} °C", f64::from(hk.cpu_temp_milli_c) / 1000.0)
            },
        ),
        ("chain tip height", hk.chain_tip_height.to_string()),
        ("chain flags", chain_flags(hk.chain_flags)),
        ("sign approved", hk.sign_approved.to_string()),
        ("sign refused (policy)", hk.sign_refused.to_string()),
        ("sign refused (mode)", hk.sign_refused_mode.to_string()),
    ];
    table("spacenode housekeeping", rows)
}

fn event_details(ev: &Event) -> String {
    let mut r = Reader::new(&ev.aux);
    let text = match ev.id {
        EventId::BOOT => r.u32("boot").map(|b| format!("boot_count={b}")).ok(),
        EventId::AUTH_FAILURES | EventId::UNKNOWN_KEY => match (r.u32("count"), r.u16("key")) {
            (Ok(c), Ok(k)) => Some(format!("count={c} last_key={k}")),
            _ => None,
        },
        EventId::REPLAY => match (r.u16("key"), r.u64("seq"), r.u64("highest")) {
            (Ok(k), Ok(s), Ok(h)) => Some(format!("key={k} seq={s} window_top={h}")),
            _ => None,
        },
        EventId::REKEYED => r.u16("key").map(|k| format!("key={k}")).ok(),
        EventId::STORAGE_LOW => r.u64("free").map(|f| format!("free={}", bytes(f))).ok(),
        EventId::CHAIN_DEEP_REORG => match (r.u32("lowest"), r.u32("start"), r.u32("end")) {
            (Ok(l), Ok(s), Ok(e)) => Some(format!("lowest_kept={l} branch={s}..={e}")),
            _ => None,
        },
        EventId::CHAIN_REORG => match (r.u32("fork"), r.u32("depth"), r.u32("tip")) {
            (Ok(f), Ok(d), Ok(t)) => Some(format!("fork={f} depth={d} new_tip={t}")),
            _ => None,
        },
        EventId::SAFE_MODE
        | EventId::SAFE_LAPSED
        | EventId::SAFE_TRIGGER
        | EventId::ADMIN_REFUSED
        | EventId::SIGN_FAULT => r
            .u16("code")
            .map(|c| format!("code={}", reason(ReasonCode(c))))
            .ok(),
        EventId::CLOCK_REFUSED => {
            match (r.u16("code"), r.array::<8>("last"), r.array::<8>("now")) {
                (Ok(c), Ok(l), Ok(n)) => Some(format!(
                    "code={c:#06x} last_accepted={} node_time={}",
                    utc(i64::from_be_bytes(l)),
                    utc(i64::from_be_bytes(n))
                )),
                _ => None,
            }
        }
        EventId::POLICY_PENDING => match (r.u64("version"), r.array::<8>("at")) {
            (Ok(v), Ok(t)) => Some(format!(
                "version={v} activates={}",
                utc(i64::from_be_bytes(t))
            )),
            _ => None,
        },
        EventId::POLICY_ACTIVE | EventId::POLICY_VETOED => {
            r.u64("version").map(|v| format!("version={v}")).ok()
        }
        EventId::NORMAL_MODE => r.u64("seq").map(|s| format!("admin_seq={s}")).ok(),
        EventId::WALLET_REGISTERED => r
            .array::<32>("wallet")
            .map(|w| format!("wallet={}", hex::encode(w)))
            .ok(),
        EventId::RETIRED => match ev.aux.len() {
            32 => Some(format!("wallet={}", hex::encode(&ev.aux))),
            28 => r.u64("chain").ok().map(|chain| {
                format!(
                    "safe={chain}:0x{}",
                    hex::encode(ev.aux.get(8..).unwrap_or_default())
                )
            }),
            _ => None,
        },
        _ => None,
    };
    match text {
        Some(t) => t,
        None if ev.aux.is_empty() => String::new(),
        None => format!("aux={}", hex::encode(&ev.aux)),
    }
}

/// One line per event.
#[must_use]
pub fn event_line(ev: &Event, severity: Option<Severity>) -> String {
    let sev = severity.map_or("?", Severity::name);
    let name = ev.id.name().unwrap_or("UNKNOWN");
    let meaning = EventId::ALL
        .iter()
        .find(|e| e.0 == ev.id)
        .map_or("", |e| e.3);
    format!(
        "{}  #{:<6} {:<6} {:<14} {} {}",
        utc(ev.time_unix_ms),
        ev.seq,
        sev,
        name,
        meaning,
        event_details(ev)
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_readable() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(duration(3723), "01:02:03");
        assert_eq!(duration(90_000), "1 d 01:00:00");
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert!(reason(ReasonCode::SEC_REPLAY).contains("SEC_REPLAY"));
    }

    #[test]
    fn event_lines_decode_known_data() {
        let ev = Event {
            id: EventId::BOOT,
            seq: 3,
            time_unix_ms: 1000,
            aux: 7u32.to_be_bytes().to_vec(),
        };
        let line = event_line(&ev, Some(Severity::Info));
        assert!(
            line.contains("BOOT") && line.contains("boot_count=7"),
            "{line}"
        );
        let odd = Event {
            id: EventId(0x7777),
            seq: 1,
            time_unix_ms: 0,
            aux: vec![0xAB],
        };
        assert!(event_line(&odd, None).contains("aux=ab"));
    }

    #[test]
    fn chain_codes_match_the_chain_readme() {
        let readme = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../payload/chain/README.md"
        ))
        .expect("payload/chain/README.md");
        let documented: Vec<String> = readme
            .lines()
            .filter(|l| l.starts_with("| `0x03"))
            .map(str::to_string)
            .collect();
        assert_eq!(documented.len(), CHAIN_CODES.len(), "row count differs");
        for (code, name, text) in CHAIN_CODES {
            let row = format!("| `0x{code:04X}` | `{name}` | {text} |");
            assert!(
                documented.contains(&row),
                "{row} not in payload/chain/README.md"
            );
        }
        assert!(reason(ReasonCode(0x0309)).contains("InsufficientProofOfWork"));
        assert!(reason(ReasonCode::STORE_SQLITE).contains("STORE_SQLITE"));
    }

    #[test]
    fn chain_events_and_flags_read_well() {
        let mut aux = 2160u32.to_be_bytes().to_vec();
        aux.extend_from_slice(&6u32.to_be_bytes());
        aux.extend_from_slice(&45u32.to_be_bytes());
        let ev = Event {
            id: EventId::CHAIN_DEEP_REORG,
            seq: 9,
            time_unix_ms: 0,
            aux,
        };
        let line = event_line(&ev, Some(Severity::High));
        assert!(line.contains("lowest_kept=2160 branch=6..=45"), "{line}");
        assert_eq!(chain_flags(0), "none");
        assert!(chain_flags(1).contains("DEEP REORG REFUSED"));
        assert!(chain_flags(0x82).contains("UNAVAILABLE") && chain_flags(0x82).contains("0x80"));
        let t = hk_table(
            &HkCore {
                chain_tip_height: 5999,
                chain_flags: 1,
                ..Default::default()
            },
            0,
        );
        assert!(t.contains("chain tip height") && t.contains("5999"), "{t}");
    }

    #[test]
    fn chain_status_table_shows_every_field() {
        use bitcoin::hashes::Hash;
        let st = ChainStatus {
            network: bitcoin::Network::Bitcoin,
            tip_height: 5999,
            tip_hash: bitcoin::BlockHash::from_byte_array([0x11; 32]),
            tip_chain_work: bitcoin::Work::from_be_bytes({
                let mut w = [0u8; 32];
                w[29] = 1;
                w
            }),
            tip_median_time_past: 1_231_006_505,
            window: 2160,
            lowest_height: 3840,
            last_reorg: None,
            deep_reorg_refused: Some(spacenode_chain::store::DeepReorgInfo {
                lowest_kept: 3840,
                branch_start: 10,
                branch_end: 60,
            }),
        };
        let t = chain_status_table(&st, 0);
        for needle in [
            "mainnet",
            "5999",
            &"11".repeat(32),
            "0x10000 (2^16.00)",
            "2009-01-03",
            "2160 headers",
            "3840",
            "last reorg",
            "YES: branch 10..=60",
        ] {
            assert!(t.contains(needle), "{needle} missing in\n{t}");
        }
    }

    #[test]
    fn hk_table_shows_absent_sensor() {
        let hk = HkCore {
            cpu_temp_milli_c: NO_TEMPERATURE,
            mode: 1,
            ..Default::default()
        };
        let t = hk_table(&hk, 0);
        assert!(t.contains("n/a (no sensor)") && t.contains("normal"));
    }
}
