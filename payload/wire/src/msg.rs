//! Typed application data of each service, with byte encodings that never
//! panic on any input. All integers are big-endian (CCSDS convention).
//!
//! This module owns the payload layouts only; it must never decide anything
//! about what a message means for the node.

use crate::codes::ReasonCode;
use crate::pus::RequestId;

/// Errors decoding application data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The data ended before the field.
    #[error("truncated: {field} needs {need} more bytes")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes missing.
        need: usize,
    },
    /// A field holds a value outside its domain.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// Bytes were left after the last field.
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
}

impl MsgError {
    /// Reason code for a TC whose data did not decode.
    #[must_use]
    pub fn code(&self) -> ReasonCode {
        ReasonCode::BAD_APP_DATA
    }
}

/// A cursor over untrusted bytes; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Takes `n` bytes.
    ///
    /// # Errors
    /// [`MsgError::Truncated`] if fewer remain.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MsgError> {
        match self.bytes.split_at_checked(n) {
            Some((head, tail)) => {
                self.bytes = tail;
                Ok(head)
            }
            None => Err(MsgError::Truncated {
                field,
                need: n - self.bytes.len(),
            }),
        }
    }

    /// Takes a fixed-size array.
    ///
    /// # Errors
    /// [`MsgError::Truncated`] if fewer bytes remain.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MsgError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| MsgError::Truncated { field, need: N })
    }

    /// Reads a u8.
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn u8(&mut self, field: &'static str) -> Result<u8, MsgError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian u16.
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn u16(&mut self, field: &'static str) -> Result<u16, MsgError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u32.
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn u32(&mut self, field: &'static str) -> Result<u32, MsgError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian u64.
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn u64(&mut self, field: &'static str) -> Result<u64, MsgError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian i32.
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn i32(&mut self, field: &'static str) -> Result<i32, MsgError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    /// The bytes not read yet.
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Succeeds only if everything was read.
    ///
    /// # Errors
    /// [`MsgError::Trailing`].
    pub fn finish(self) -> Result<(), MsgError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(MsgError::Trailing(self.bytes.len()))
        }
    }
}

// ---------------------------------------------------------------- ST[01]

/// The stage a verification report speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// TM[1,1]/[1,2].
    Acceptance,
    /// TM[1,3]/[1,4].
    Start,
    /// TM[1,7]/[1,8].
    Completion,
}

/// Why a request failed: the ECSS failure notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNotice {
    /// Stable reason code.
    pub code: ReasonCode,
    /// Code-specific data (for example the offending value).
    pub data: Vec<u8>,
}

/// A PUS 1 verification report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Stage verified.
    pub stage: Stage,
    /// The TC it refers to.
    pub request_id: RequestId,
    /// `None` for success.
    pub failure: Option<FailureNotice>,
}

impl Verification {
    /// The TM subtype of this report.
    #[must_use]
    pub fn subtype(&self) -> u8 {
        use crate::services::subtype::*;
        match (self.stage, self.failure.is_some()) {
            (Stage::Acceptance, false) => ACCEPT_OK,
            (Stage::Acceptance, true) => ACCEPT_FAIL,
            (Stage::Start, false) => START_OK,
            (Stage::Start, true) => START_FAIL,
            (Stage::Completion, false) => COMPLETE_OK,
            (Stage::Completion, true) => COMPLETE_FAIL,
        }
    }

    /// Source data: request id, then code and data for failures.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.request_id.0.to_be_bytes().to_vec();
        if let Some(f) = &self.failure {
            out.extend_from_slice(&f.code.0.to_be_bytes());
            out.extend_from_slice(&f.data);
        }
        out
    }

    /// Decodes the source data of TM[1,`subtype`].
    ///
    /// # Errors
    /// [`MsgError`] for truncated data or an unknown subtype.
    pub fn decode(subtype: u8, data: &[u8]) -> Result<Self, MsgError> {
        use crate::services::subtype::*;
        let (stage, failed) = match subtype {
            ACCEPT_OK => (Stage::Acceptance, false),
            ACCEPT_FAIL => (Stage::Acceptance, true),
            START_OK => (Stage::Start, false),
            START_FAIL => (Stage::Start, true),
            COMPLETE_OK => (Stage::Completion, false),
            COMPLETE_FAIL => (Stage::Completion, true),
            other => {
                return Err(MsgError::Invalid {
                    field: "subtype",
                    value: other.into(),
                });
            }
        };
        let mut r = Reader::new(data);
        let request_id = RequestId(r.u32("request id")?);
        let failure = if failed {
            let code = ReasonCode(r.u16("failure code")?);
            Some(FailureNotice {
                code,
                data: r.rest().to_vec(),
            })
        } else {
            r.finish()?;
            None
        };
        Ok(Self {
            stage,
            request_id,
            failure,
        })
    }
}

// ---------------------------------------------------------------- ST[03]

/// Fields every core report carries (the first release's set); fields
/// appended later may be absent in reports from older nodes.
pub const HK_CORE_V1_FIELDS: usize = 22;

/// Structure id of the core housekeeping report.
pub const HK_CORE: u8 = 1;

/// Operating mode as reported in housekeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeCode {
    /// Starting up.
    Boot = 0,
    /// Normal operations: signing allowed by policy.
    Normal = 1,
    /// Safe mode: signs nothing.
    Safe = 2,
}

impl ModeCode {
    /// From the wire value.
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Boot),
            1 => Some(Self::Normal),
            2 => Some(Self::Safe),
            _ => None,
        }
    }

    /// Lower-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Normal => "normal",
            Self::Safe => "safe",
        }
    }
}

/// Value used for an absent CPU temperature.
pub const NO_TEMPERATURE: i32 = i32::MIN;

macro_rules! hk_report {
    ($( $(#[$doc:meta])* $field:ident : $ty:ident, $unit:expr; )*) => {
        /// The core housekeeping report (structure id [`HK_CORE`]), in the
        /// order of its wire layout. New fields are only ever appended; a
        /// decoder accepts reports longer than it knows.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct HkCore {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl HkCore {
            /// Source data of TM[3,25]: structure id, then the fields.
            #[must_use]
            pub fn encode(&self) -> Vec<u8> {
                let mut out = vec![HK_CORE];
                $( out.extend_from_slice(&self.$field.to_be_bytes()); )*
                out
            }

            /// Decodes TM[3,25] source data of structure [`HK_CORE`].
            ///
            /// # Errors
            /// [`MsgError`] if truncated or another structure.
            pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
                let mut r = Reader::new(data);
                let sid = r.u8("structure id")?;
                if sid != HK_CORE {
                    return Err(MsgError::Invalid { field: "structure id", value: sid.into() });
                }
                // Reports from an older node end after fewer fields: the
                // first HK_CORE_V1_FIELDS are required, later ones read as
                // zero when the report ends cleanly before them.
                let mut index = 0usize;
                $(
                    let $field = if r.rest().is_empty() && index >= HK_CORE_V1_FIELDS {
                        Default::default()
                    } else {
                        r.$ty(stringify!($field))?
                    };
                    index += 1;
                )*
                let _ = index;
                Ok(Self { $( $field, )* })
            }

            /// (name, value, unit) for display.
            #[must_use]
            pub fn rows(&self) -> Vec<(&'static str, String, &'static str)> {
                vec![ $( (stringify!($field), self.$field.to_string(), $unit), )* ]
            }
        }
    };
}

hk_report! {
    /// Seconds since the daemon started.
    uptime_s: u32, "s";
    /// Daemon starts recorded in storage.
    boot_count: u32, "";
    /// [`ModeCode`] as u8.
    mode: u8, "";
    /// Why the node is in its mode (a reason code, 0 if none).
    mode_reason: u16, "";
    /// Frames received with a good CRC.
    frames_ok: u32, "";
    /// Frames failing CRC-32C.
    crc_errors: u32, "";
    /// Runs that were not valid COBS or were truncated.
    malformed_frames: u32, "";
    /// Runs over the frame size bound.
    oversize_frames: u32, "";
    /// Times the decoder resynchronised.
    resyncs: u32, "";
    /// Authentic packets refused as replays.
    replays: u32, "";
    /// Packets failing authentication (forged, corrupted, wrong key).
    auth_failures: u32, "";
    /// Packets under an unknown key id or malformed envelopes.
    unknown_keys: u32, "";
    /// TCs accepted.
    tc_accepted: u32, "";
    /// TCs refused at acceptance.
    tc_rejected: u32, "";
    /// TM packets sent.
    tm_sent: u32, "";
    /// Reports dropped by rate limiting.
    tm_suppressed: u32, "";
    /// Key id used for downlink.
    tx_key_id: u16, "";
    /// Next downlink sequence number.
    tx_next_seq: u64, "";
    /// Highest uplink sequence number accepted under the active key.
    rx_highest_seq: u64, "";
    /// Bytes used by the database and its write-ahead log.
    storage_used_bytes: u64, "B";
    /// Bytes free on the state filesystem.
    storage_free_bytes: u64, "B";
    /// CPU temperature, milli-degrees Celsius ([`NO_TEMPERATURE`] if absent).
    cpu_temp_milli_c: i32, "m°C";
    /// Height of the node's validated Bitcoin chain tip (0 if the chain is
    /// unavailable).
    chain_tip_height: u32, "";
    /// Chain flags: [`CHAIN_FLAG_DEEP_REORG`], [`CHAIN_FLAG_UNAVAILABLE`].
    chain_flags: u8, "";
    /// Sign requests approved since start (replays included).
    sign_approved: u32, "";
    /// Sign requests refused by the policy since start.
    sign_refused: u32, "";
    /// Sign requests refused because of the mode (safe mode), or because no
    /// policy or seed is available, since start.
    sign_refused_mode: u32, "";
}

/// `chain_flags` bit: a reorg deeper than the kept window was refused (set
/// until acknowledged with `chain.clear-deep-reorg`).
pub const CHAIN_FLAG_DEEP_REORG: u8 = 0x01;
/// `chain_flags` bit: the stored chain could not be opened; chain requests
/// fail (see the node log and the failure reports).
pub const CHAIN_FLAG_UNAVAILABLE: u8 = 0x02;

/// TC[3,27] data: the structure ids wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HkRequest {
    /// Structure ids.
    pub structures: Vec<u8>,
}

impl HkRequest {
    /// `N` then the ids.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::try_from(self.structures.len()).unwrap_or(u8::MAX)];
        out.extend(self.structures.iter().take(usize::from(u8::MAX)));
        out
    }

    /// Decodes TC[3,27] data.
    ///
    /// # Errors
    /// [`MsgError`] if the count does not match.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let n = r.u8("structure count")?;
        let structures = r.take(usize::from(n), "structure ids")?.to_vec();
        r.finish()?;
        Ok(Self { structures })
    }
}

// ---------------------------------------------------------------- ST[05]

/// Event severity, which is also the TM[5,x] subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Informative.
    Info = 1,
    /// Low-severity anomaly.
    Low = 2,
    /// Medium-severity anomaly.
    Medium = 3,
    /// High-severity anomaly.
    High = 4,
}

impl Severity {
    /// From the TM subtype.
    #[must_use]
    pub fn from_subtype(subtype: u8) -> Option<Self> {
        match subtype {
            1 => Some(Self::Info),
            2 => Some(Self::Low),
            3 => Some(Self::Medium),
            4 => Some(Self::High),
            _ => None,
        }
    }

    /// Lower-case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Stable event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(pub u16);

macro_rules! events {
    ($( $(#[$doc:meta])* $name:ident = $value:expr, $sev:ident, $text:expr; )*) => {
        impl EventId {
            $( $(#[$doc])* pub const $name: EventId = EventId($value); )*

            /// Every event with its default severity, name and meaning.
            pub const ALL: &'static [(EventId, Severity, &'static str, &'static str)] = &[
                $( (EventId($value), Severity::$sev, stringify!($name), $text), )*
            ];

            /// Default severity of this event.
            #[must_use]
            pub fn severity(self) -> Severity {
                Self::ALL.iter().find(|e| e.0 == self).map_or(Severity::Medium, |e| e.1)
            }

            /// Name of this event, if known.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                Self::ALL.iter().find(|e| e.0 == self).map(|e| e.2)
            }
        }
    };
}

events! {
    /// The daemon started. Aux: boot count u32.
    BOOT = 0x0001, Info, "daemon started";
    /// The link device is open. Aux: none.
    LINK_UP = 0x0002, Info, "link device open";
    /// The link device failed and is being reopened. Aux: none.
    LINK_DOWN = 0x0003, Medium, "link device failed, reopening";
    /// Authentication failures since the last report. Aux: count u32,
    /// last key id u16.
    AUTH_FAILURES = 0x0010, Medium, "packets failed authentication";
    /// An authentic packet was refused as a replay or below the window.
    /// Aux: key id u16, seq u64, highest accepted u64. The ground uses it to
    /// move its sequence numbers above the node's window after a reboot.
    REPLAY = 0x0011, Low, "replayed or stale sequence number";
    /// Packets under unknown key ids or malformed envelopes since the last
    /// report. Aux: count u32, last key id u16.
    UNKNOWN_KEY = 0x0012, Low, "packets under an unknown key or malformed";
    /// A new link key was installed. Aux: key id u16.
    REKEYED = 0x0020, Info, "link key replaced";
    /// Storage is above its warning threshold. Aux: free bytes u64.
    STORAGE_LOW = 0x0030, High, "storage nearly full";
    /// A credible branch forking below the kept header window was refused
    /// and the deep-reorg flag set. Aux: lowest kept height u32, branch
    /// start u32, branch end u32.
    CHAIN_DEEP_REORG = 0x0040, High, "reorg deeper than the window refused";
    /// The node followed a reorganisation inside its window. Aux: fork
    /// height u32, depth u32, new tip height u32.
    CHAIN_REORG = 0x0041, Info, "header chain reorganised";
    /// The node entered safe mode. Aux: reason code u16.
    SAFE_MODE = 0x0050, High, "safe mode entered";
    /// The node left safe mode on a quorum-signed command. Aux: command
    /// sequence u64.
    NORMAL_MODE = 0x0051, Info, "safe mode left";
    /// A further safe-mode trigger fired while already in safe mode. Aux:
    /// reason code u16.
    SAFE_TRIGGER = 0x0052, Medium, "another safe-mode trigger fired";
    /// An administrator command was refused. Aux: reason code u16.
    ADMIN_REFUSED = 0x0053, Medium, "administrator command refused";
    /// A safe mode that unauthenticated traffic alone caused (the
    /// forged-packet burst) lapsed after `health.forged_safe_lapse_s`
    /// without a new forgery. Aux: the lapsed reason code u16.
    SAFE_LAPSED = 0x0054, Medium, "forged-packet safe mode lapsed after a quiet period";
    /// The clock guard refused the node's time (a backwards step, a jump
    /// beyond the policy's bound, or behind the chain); signing is denied
    /// until the clock is sane or an administrator resyncs it. Aux: reason
    /// code u16, last accepted time i64 ms, node time i64 ms.
    CLOCK_REFUSED = 0x0060, High, "node clock refused by the clock guard";
    /// A signature failed its self-check or the key store failed: nothing
    /// was released (a fault, e.g. a bit flip). Aux: reason code u16.
    SIGN_FAULT = 0x0061, High, "signing fault: signature withheld";
    /// A quorum-signed policy change is pending. Aux: version u64,
    /// activation time i64 ms.
    POLICY_PENDING = 0x0062, Info, "policy change pending";
    /// A policy became active (bound to the TPM counter). Aux: version u64.
    POLICY_ACTIVE = 0x0063, Info, "policy activated";
    /// The pending policy change was vetoed. Aux: version u64.
    POLICY_VETOED = 0x0064, Info, "pending policy change vetoed";
    /// A wallet was registered. Aux: wallet id 32.
    WALLET_REGISTERED = 0x0065, Info, "wallet registered";
    /// A wallet or Safe was retired: nothing is signed for it any more.
    /// Aux: wallet id 32, or chain id u64 | Safe address 20.
    RETIRED = 0x0066, Info, "wallet or Safe retired";
    /// A decided request was replayed again after its first replay was
    /// audited: counted on its row instead of a new audit entry. Aux:
    /// request id 32, replays counted u64.
    SIGN_REPLAYS = 0x0067, Low, "replays of a decided request counted";
}

/// A PUS 5 event report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event id.
    pub id: EventId,
    /// Node-wide event sequence number (survives reboots).
    pub seq: u32,
    /// When it happened, UNIX milliseconds (the TM time is when it was sent).
    pub time_unix_ms: i64,
    /// Event-specific data.
    pub aux: Vec<u8>,
}

impl Event {
    /// Source data of TM[5,x].
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.aux.len());
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_unix_ms.to_be_bytes());
        out.extend_from_slice(&self.aux);
        out
    }

    /// Decodes TM[5,x] source data.
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let id = EventId(r.u16("event id")?);
        let seq = r.u32("event seq")?;
        let time_unix_ms = i64::from_be_bytes(r.array("event time")?);
        Ok(Self {
            id,
            seq,
            time_unix_ms,
            aux: r.rest().to_vec(),
        })
    }
}

/// TC[5,128] data: how many of the most recent stored events to re-send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDump {
    /// Maximum number of events.
    pub max: u16,
}

impl EventDump {
    /// Encodes the request.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        self.max.to_be_bytes().to_vec()
    }

    /// Decodes the request.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let max = r.u16("max")?;
        r.finish()?;
        Ok(Self { max })
    }
}

// ---------------------------------------------------------------- ST[133]

/// TM[133,2] mode status, and the body of the TM[133,6] beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeStatus {
    /// [`ModeCode`] as u8.
    pub mode: u8,
    /// Safe-mode reason code (0 in normal mode).
    pub reason: u16,
    /// Since when, UNIX ms.
    pub since_ms: i64,
    /// Highest administrator command sequence executed.
    pub admin_seq: u64,
    /// Boot count.
    pub boot_count: u32,
    /// The node id administrator commands must name.
    pub node_id: [u8; 8],
    /// Whether the signing seed is available.
    pub seed_available: bool,
    /// Uptime in seconds.
    pub uptime_s: u32,
}

impl ModeStatus {
    /// Wire form (36 bytes).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        out.push(self.mode);
        out.extend_from_slice(&self.reason.to_be_bytes());
        out.extend_from_slice(&self.since_ms.to_be_bytes());
        out.extend_from_slice(&self.admin_seq.to_be_bytes());
        out.extend_from_slice(&self.boot_count.to_be_bytes());
        out.extend_from_slice(&self.node_id);
        out.push(u8::from(self.seed_available));
        out.extend_from_slice(&self.uptime_s.to_be_bytes());
        out
    }

    /// Decodes the first 36 bytes; returns the rest (a beacon's signature).
    ///
    /// # Errors
    /// [`MsgError::Truncated`].
    pub fn decode(data: &[u8]) -> Result<(Self, &[u8]), MsgError> {
        let mut r = Reader::new(data);
        let status = Self {
            mode: r.u8("mode")?,
            reason: r.u16("reason")?,
            since_ms: i64::from_be_bytes(r.array("since")?),
            admin_seq: r.u64("admin seq")?,
            boot_count: r.u32("boot count")?,
            node_id: r.array("node id")?,
            seed_available: r.u8("seed available")? != 0,
            uptime_s: r.u32("uptime")?,
        };
        Ok((status, r.rest()))
    }
}

/// Domain tag of the beacon signature (BIP340 tagged hash of the status).
pub const BEACON_TAG: &str = "spacenode/beacon/v1";

// ---------------------------------------------------------------- ST[128]

/// Version of the rekey TC's application data. Version 1 (`key_id u16 |
/// key [32]`, 34 bytes, no quorum) is refused.
pub const REKEY_VERSION: u8 = 2;

/// Length of the refused version 1 rekey data.
pub const REKEY_V1_LEN: usize = 34;

/// TC[128,1] data (docs/wire.md "Rekey"):
///
/// ```text
/// rekey v2 := version u8 (2) | key_id u16 | key [32] | signed command (rest)
/// ```
///
/// The signed command is an administrator command of kind `REKEY_LINK`
/// (`spacenode_policy::command`) whose body commits to `key_id`, the
/// SHA-256 of `key` and the key id the TC arrives under; the key itself is
/// only ever inside the encrypted envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Rekey {
    /// New key id (must differ from every key in use).
    pub key_id: u16,
    /// New key material.
    pub key: [u8; 32],
    /// The quorum-signed `REKEY_LINK` command (wire form).
    pub command: Vec<u8>,
}

impl core::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rekey")
            .field("key_id", &self.key_id)
            .field("command_len", &self.command.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Rekey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl Rekey {
    /// Encodes the request.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(35 + self.command.len());
        out.push(REKEY_VERSION);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.command);
        out
    }

    /// Whether `data` has the shape of the refused version 1 (34 bytes; a
    /// version 2 request is always longer).
    #[must_use]
    pub fn is_v1(data: &[u8]) -> bool {
        data.len() == REKEY_V1_LEN
    }

    /// Decodes the request.
    ///
    /// # Errors
    /// [`MsgError`]; version 1 data is [`MsgError::Invalid`] on the
    /// version.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        if Self::is_v1(data) {
            return Err(MsgError::Invalid {
                field: "rekey version (version 1 has no quorum command and is refused)",
                value: 1,
            });
        }
        let mut r = Reader::new(data);
        let version = r.u8("rekey version")?;
        if version != REKEY_VERSION {
            return Err(MsgError::Invalid {
                field: "rekey version",
                value: u64::from(version),
            });
        }
        let key_id = r.u16("key id")?;
        let key = r.array::<32>("key")?;
        let command = r.rest().to_vec();
        if command.is_empty() {
            return Err(MsgError::Truncated {
                field: "rekey command",
                need: 1,
            });
        }
        Ok(Self {
            key_id,
            key,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verification_round_trip() {
        for v in [
            Verification {
                stage: Stage::Acceptance,
                request_id: RequestId(0x1810_C001),
                failure: None,
            },
            Verification {
                stage: Stage::Completion,
                request_id: RequestId(7),
                failure: Some(FailureNotice {
                    code: ReasonCode::BAD_APP_DATA,
                    data: vec![1, 2],
                }),
            },
        ] {
            assert_eq!(Verification::decode(v.subtype(), &v.encode()).unwrap(), v);
        }
    }

    #[test]
    fn hk_round_trip_and_forward_compatible() {
        let hk = HkCore {
            uptime_s: 5,
            boot_count: 2,
            cpu_temp_milli_c: -1200,
            tx_next_seq: u64::MAX,
            ..Default::default()
        };
        let mut bytes = hk.encode();
        assert_eq!(HkCore::decode(&bytes).unwrap(), hk);
        bytes.extend_from_slice(&[1, 2, 3]); // a newer node appends fields
        assert_eq!(HkCore::decode(&bytes).unwrap(), hk);
        assert!(HkCore::decode(&bytes[..10]).is_err());
        // An older node's report (only the first-release fields) decodes,
        // the later fields reading as zero; a report cut inside the
        // first-release fields does not.
        let v1_len = 1 + 4 + 4 + 1 + 2 + 12 * 4 + 2 + 8 + 8 + 8 + 8 + 4;
        let old = HkCore::decode(&hk.encode()[..v1_len]).unwrap();
        assert_eq!(old.cpu_temp_milli_c, hk.cpu_temp_milli_c);
        assert_eq!(old.chain_tip_height, 0);
        assert!(HkCore::decode(&hk.encode()[..v1_len - 1]).is_err());
    }

    #[test]
    fn mode_status_round_trips_with_trailing_signature() {
        let st = ModeStatus {
            mode: 2,
            reason: 0x0802,
            since_ms: -5,
            admin_seq: 9,
            boot_count: 6,
            node_id: *b"node-001",
            seed_available: true,
            uptime_s: 77,
        };
        let mut bytes = st.encode();
        assert_eq!(bytes.len(), 36);
        bytes.extend_from_slice(&[0xAA; 64]);
        let (back, sig) = ModeStatus::decode(&bytes).unwrap();
        assert_eq!(back, st);
        assert_eq!(sig, &[0xAA; 64]);
    }

    #[test]
    fn rekey_debug_redacts_key() {
        let r = Rekey {
            key_id: 3,
            key: [0xAB; 32],
            command: vec![1, 2, 3],
        };
        assert!(!format!("{r:?}").contains("171"));
        assert_eq!(Rekey::decode(&r.encode()).unwrap(), r);
        // Version 1 (key id and key only) is refused, whatever its bytes.
        let mut v1 = 3u16.to_be_bytes().to_vec();
        v1.extend_from_slice(&[0xAB; 32]);
        assert!(Rekey::decode(&v1).is_err());
        let mut v3 = r.encode();
        v3[0] = 3;
        assert!(Rekey::decode(&v3).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(sub: u8, data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Verification::decode(sub, &data);
            let _ = HkCore::decode(&data);
            let _ = HkRequest::decode(&data);
            let _ = Event::decode(&data);
            let _ = EventDump::decode(&data);
            let _ = Rekey::decode(&data);
            let _ = ModeStatus::decode(&data);
        }
    }
}
