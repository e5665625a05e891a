//! Payload layouts of the co-signing services: resumable uploads (PUS 134),
//! the spending policy and audit log (PUS 131) and sign requests (PUS 132),
//! plus the fragments that carry replies larger than one TM. All integers
//! big-endian; every decoder is total (never panics, bounded allocations).
//!
//! The documents themselves (signed policies, administrator commands, sign
//! requests, audit entries, partial signatures) are canonical encodings of
//! `spacenode-policy` and `spacenode-btc`; this module only frames them for
//! the link. It must never interpret them.

use crate::msg::{MsgError, Reader};
use crate::pus::{MAX_TC_APP_DATA, MAX_TM_DATA};

// ---------------------------------------------------------------- payloads

/// How a TC names a document too large for one frame: carried inline, or
/// by the content id (SHA-256) of a completed upload (PUS 134).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The bytes themselves (tag 0).
    Inline(Vec<u8>),
    /// A completed, hash-verified upload (tag 1).
    Upload([u8; 32]),
}

/// Largest document that travels inline in one TC (the tag byte is the
/// rest of [`MAX_TC_APP_DATA`]).
pub const MAX_INLINE: usize = MAX_TC_APP_DATA - 1;

impl Payload {
    /// Wire form: `tag u8 | bytes` or `tag u8 | content id 32`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Inline(b) => {
                let mut out = Vec::with_capacity(1 + b.len());
                out.push(0);
                out.extend_from_slice(b);
                out
            }
            Self::Upload(id) => {
                let mut out = vec![1];
                out.extend_from_slice(id);
                out
            }
        }
    }

    /// Decodes the wire form.
    ///
    /// # Errors
    /// [`MsgError`] for an unknown tag, an empty inline document or a bad
    /// content id length.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        match r.u8("payload tag")? {
            0 if r.rest().is_empty() => Err(MsgError::Truncated {
                field: "inline payload",
                need: 1,
            }),
            0 => Ok(Self::Inline(r.rest().to_vec())),
            1 => {
                let id = r.array::<32>("content id")?;
                r.finish()?;
                Ok(Self::Upload(id))
            }
            t => Err(MsgError::Invalid {
                field: "payload tag",
                value: t.into(),
            }),
        }
    }
}

// ---------------------------------------------------------------- ST[134]

/// Largest upload (a sign request with its PSBT and SPV proofs, a policy
/// document, a long administrator command).
pub const MAX_FILE_LEN: u32 = 64 * 1024;

/// Bytes of content per chunk: a chunk TC is `content id 32 | offset u32 |
/// data` and fills one frame. Every chunk but the last has exactly this
/// length and starts at a multiple of it, so a chunk is identified by its
/// index and re-sending one is idempotent.
pub const CHUNK_LEN: usize = MAX_TC_APP_DATA - 36;

/// Number of chunks of a file of `total` bytes.
#[must_use]
pub fn chunk_count(total: u32) -> u32 {
    let len = u32::try_from(CHUNK_LEN).unwrap_or(u32::MAX);
    total.div_ceil(len)
}

/// Offset and length of chunk `index` of a file of `total` bytes, if the
/// chunk exists.
#[must_use]
pub fn chunk_span(total: u32, index: u32) -> Option<(u32, u32)> {
    let len = u32::try_from(CHUNK_LEN).ok()?;
    let start = index.checked_mul(len)?;
    (start < total).then(|| (start, len.min(total - start)))
}

/// The byte ranges `(offset, length)` of the chunks for which `present`
/// is false, adjacent chunks merged.
#[must_use]
pub fn missing_ranges(total: u32, present: impl Fn(u32) -> bool) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for index in 0..chunk_count(total) {
        if present(index) {
            continue;
        }
        let Some((start, len)) = chunk_span(total, index) else {
            continue;
        };
        match out.last_mut() {
            Some((s, l)) if s.saturating_add(*l) == start => *l = l.saturating_add(len),
            _ => out.push((start, len)),
        }
    }
    out
}

/// TC[134,1]: begin or resume an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBegin {
    /// SHA-256 of the whole content: the upload's id.
    pub content_id: [u8; 32],
    /// Total length in bytes (1..=[`MAX_FILE_LEN`]).
    pub total_len: u32,
}

impl FileBegin {
    /// `content id 32 | total length u32`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.content_id.to_vec();
        out.extend_from_slice(&self.total_len.to_be_bytes());
        out
    }

    /// Decodes TC[134,1] data.
    ///
    /// # Errors
    /// [`MsgError`], including a length of 0 or above [`MAX_FILE_LEN`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let content_id = r.array("content id")?;
        let total_len = r.u32("total length")?;
        r.finish()?;
        if total_len == 0 || total_len > MAX_FILE_LEN {
            return Err(MsgError::Invalid {
                field: "total length",
                value: total_len.into(),
            });
        }
        Ok(Self {
            content_id,
            total_len,
        })
    }
}

/// TC[134,2]: one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    /// The upload.
    pub content_id: [u8; 32],
    /// Byte offset (a multiple of [`CHUNK_LEN`]).
    pub offset: u32,
    /// Content (1..=[`CHUNK_LEN`] bytes).
    pub data: Vec<u8>,
}

impl FileChunk {
    /// `content id 32 | offset u32 | data`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + self.data.len());
        out.extend_from_slice(&self.content_id);
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Decodes TC[134,2] data.
    ///
    /// # Errors
    /// [`MsgError`] for empty or oversized data.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let content_id = r.array("content id")?;
        let offset = r.u32("offset")?;
        let data = r.rest().to_vec();
        if data.is_empty() || data.len() > CHUNK_LEN {
            return Err(MsgError::Invalid {
                field: "chunk length",
                value: data.len() as u64,
            });
        }
        Ok(Self {
            content_id,
            offset,
            data,
        })
    }
}

/// State of an upload as the node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// The node knows no upload with this id (never begun, or pruned).
    Unknown = 0,
    /// Chunks are missing.
    Receiving = 1,
    /// Every chunk arrived and the content hashes to its id.
    Complete = 2,
}

/// Most missing ranges listed in one status report (a 64 KiB file has at
/// most 17 disjoint ranges, so this never truncates in practice).
pub const MAX_STATUS_RANGES: usize = 64;

/// TM[134,4]: upload status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// The upload.
    pub content_id: [u8; 32],
    /// State.
    pub state: FileState,
    /// Total length (0 when unknown).
    pub total_len: u32,
    /// Bytes received and stored.
    pub received: u32,
    /// Missing `(offset, length)` ranges, at most [`MAX_STATUS_RANGES`].
    pub missing: Vec<(u32, u32)>,
}

impl FileStatus {
    /// `content id 32 | state u8 | total u32 | received u32 | n u16 | n x
    /// (offset u32 | length u32)`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let ranges = self
            .missing
            .get(..self.missing.len().min(MAX_STATUS_RANGES));
        let ranges = ranges.unwrap_or_default();
        let mut out = Vec::with_capacity(43 + 8 * ranges.len());
        out.extend_from_slice(&self.content_id);
        out.push(self.state as u8);
        out.extend_from_slice(&self.total_len.to_be_bytes());
        out.extend_from_slice(&self.received.to_be_bytes());
        out.extend_from_slice(&u16::try_from(ranges.len()).unwrap_or(0).to_be_bytes());
        for (o, l) in ranges {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&l.to_be_bytes());
        }
        out
    }

    /// Decodes TM[134,4] data.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let content_id = r.array("content id")?;
        let state = match r.u8("state")? {
            0 => FileState::Unknown,
            1 => FileState::Receiving,
            2 => FileState::Complete,
            s => {
                return Err(MsgError::Invalid {
                    field: "state",
                    value: s.into(),
                });
            }
        };
        let total_len = r.u32("total length")?;
        let received = r.u32("received")?;
        let n = usize::from(r.u16("range count")?);
        if n > MAX_STATUS_RANGES {
            return Err(MsgError::Invalid {
                field: "range count",
                value: n as u64,
            });
        }
        let mut missing = Vec::with_capacity(n);
        for _ in 0..n {
            missing.push((r.u32("range offset")?, r.u32("range length")?));
        }
        r.finish()?;
        Ok(Self {
            content_id,
            state,
            total_len,
            received,
            missing,
        })
    }
}

// ---------------------------------------------------------------- fragments

/// Header of a fragment: `key u64 | index u8 | count u8`.
pub const FRAGMENT_HEADER: usize = 10;
/// Content bytes per fragment.
pub const FRAGMENT_LEN: usize = MAX_TM_DATA - FRAGMENT_HEADER;
/// Largest reply that can be fragmented (255 fragments, about 500 KB).
pub const MAX_FRAGMENTED: usize = FRAGMENT_LEN * 255;

/// One piece of a reply larger than a TM: the audit entry of a decision, a
/// long list of partial signatures, a policy document. `key` groups the
/// pieces of one reply (the audit sequence number for audit entries, 0
/// otherwise); the ground reassembles pieces `0..count` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Which reply.
    pub key: u64,
    /// Position, from 0.
    pub index: u8,
    /// Number of pieces (at least 1).
    pub count: u8,
    /// Content.
    pub bytes: Vec<u8>,
}

impl Fragment {
    /// Splits `bytes` into encoded fragments that each fit one TM (an
    /// empty input gives one empty fragment). `None` above
    /// [`MAX_FRAGMENTED`].
    #[must_use]
    pub fn split(key: u64, bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
        if bytes.len() > MAX_FRAGMENTED {
            return None;
        }
        let pieces: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(FRAGMENT_LEN).collect()
        };
        let count = u8::try_from(pieces.len()).ok()?;
        Some(
            pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Fragment {
                        key,
                        index: u8::try_from(i).unwrap_or(u8::MAX),
                        count,
                        bytes: p.to_vec(),
                    }
                    .encode()
                })
                .collect(),
        )
    }

    /// Wire form.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAGMENT_HEADER + self.bytes.len());
        out.extend_from_slice(&self.key.to_be_bytes());
        out.push(self.index);
        out.push(self.count);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Decodes a fragment.
    ///
    /// # Errors
    /// [`MsgError`] for a count of 0 or an index outside it.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let key = r.u64("fragment key")?;
        let index = r.u8("fragment index")?;
        let count = r.u8("fragment count")?;
        if count == 0 || index >= count {
            return Err(MsgError::Invalid {
                field: "fragment index",
                value: index.into(),
            });
        }
        Ok(Self {
            key,
            index,
            count,
            bytes: r.rest().to_vec(),
        })
    }

    /// Reassembles the replies in `fragments` (any order, duplicates
    /// allowed): `(key, bytes)` for every key whose pieces are all present,
    /// in key order. Incomplete keys are left out.
    #[must_use]
    pub fn reassemble(fragments: &[Fragment]) -> Vec<(u64, Vec<u8>)> {
        let mut keys: Vec<u64> = fragments.iter().map(|f| f.key).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::new();
        for key in keys {
            let mine: Vec<&Fragment> = fragments.iter().filter(|f| f.key == key).collect();
            let Some(count) = mine.first().map(|f| f.count) else {
                continue;
            };
            let mut whole = Vec::new();
            let mut complete = true;
            for i in 0..count {
                match mine.iter().find(|f| f.index == i && f.count == count) {
                    Some(f) => whole.extend_from_slice(&f.bytes),
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                out.push((key, whole));
            }
        }
        out
    }
}

// ---------------------------------------------------------------- ST[131]

/// TM[131,4]: the policy status (165 bytes, fixed layout; absent
/// parts are zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStatus {
    /// Whether a policy is active (signing needs one).
    pub active: bool,
    /// Active version.
    pub active_version: u64,
    /// Active policy hash.
    pub active_hash: [u8; 32],
    /// When it became active, node time ms.
    pub activated_at_ms: i64,
    /// Whether a change is pending.
    pub pending: bool,
    /// Pending version.
    pub pending_version: u64,
    /// Pending hash (what a veto names).
    pub pending_hash: [u8; 32],
    /// When the pending change activates, node time ms.
    pub activates_at_ms: i64,
    /// Highest version ever accepted (a new proposal must be above it).
    pub highest_version: u64,
    /// Registered wallets.
    pub wallets: u16,
    /// Next audit sequence number (= number of entries).
    pub audit_next_seq: u64,
    /// Hash of the last audit entry (zeros when empty).
    pub audit_last_hash: [u8; 32],
    /// Highest administrator command sequence executed.
    pub admin_seq: u64,
    /// The clock guard's last accepted node time, ms (0: none yet).
    pub clock_last_accepted_ms: i64,
    /// Registered Safes.
    pub safes: u16,
}

/// Length of [`PolicyStatus`] on the wire.
pub const POLICY_STATUS_LEN: usize =
    1 + 1 + 8 + 32 + 8 + 1 + 8 + 32 + 8 + 8 + 2 + 8 + 32 + 8 + 8 + 2;

impl PolicyStatus {
    /// `format u8 (1) | active u8 | version u64 | hash 32 | activated i64 |
    /// pending u8 | version u64 | hash 32 | activates i64 | highest u64 |
    /// wallets u16 | audit next u64 | audit last hash 32 | admin seq u64 |
    /// clock last accepted i64 | safes u16`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(POLICY_STATUS_LEN);
        out.push(1);
        out.push(u8::from(self.active));
        out.extend_from_slice(&self.active_version.to_be_bytes());
        out.extend_from_slice(&self.active_hash);
        out.extend_from_slice(&self.activated_at_ms.to_be_bytes());
        out.push(u8::from(self.pending));
        out.extend_from_slice(&self.pending_version.to_be_bytes());
        out.extend_from_slice(&self.pending_hash);
        out.extend_from_slice(&self.activates_at_ms.to_be_bytes());
        out.extend_from_slice(&self.highest_version.to_be_bytes());
        out.extend_from_slice(&self.wallets.to_be_bytes());
        out.extend_from_slice(&self.audit_next_seq.to_be_bytes());
        out.extend_from_slice(&self.audit_last_hash);
        out.extend_from_slice(&self.admin_seq.to_be_bytes());
        out.extend_from_slice(&self.clock_last_accepted_ms.to_be_bytes());
        out.extend_from_slice(&self.safes.to_be_bytes());
        out
    }

    /// Decodes TM[131,4] data.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let format = r.u8("format")?;
        if format != 1 {
            return Err(MsgError::Invalid {
                field: "policy status format",
                value: format.into(),
            });
        }
        let st = Self {
            active: r.u8("active")? != 0,
            active_version: r.u64("active version")?,
            active_hash: r.array("active hash")?,
            activated_at_ms: i64::from_be_bytes(r.array("activated at")?),
            pending: r.u8("pending")? != 0,
            pending_version: r.u64("pending version")?,
            pending_hash: r.array("pending hash")?,
            activates_at_ms: i64::from_be_bytes(r.array("activates at")?),
            highest_version: r.u64("highest version")?,
            wallets: r.u16("wallets")?,
            audit_next_seq: r.u64("audit next seq")?,
            audit_last_hash: r.array("audit last hash")?,
            admin_seq: r.u64("admin seq")?,
            clock_last_accepted_ms: i64::from_be_bytes(r.array("clock")?),
            safes: r.u16("safes")?,
        };
        r.finish()?;
        Ok(st)
    }
}

/// Most audit entries one TC[131,6] returns.
pub const MAX_AUDIT_PER_REQUEST: u16 = 64;

/// TC[131,6]: audit entries `from_seq ..` (at most `max`, capped at
/// [`MAX_AUDIT_PER_REQUEST`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRequest {
    /// First sequence number wanted.
    pub from_seq: u64,
    /// How many.
    pub max: u16,
}

impl AuditRequest {
    /// `from seq u64 | max u16`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.from_seq.to_be_bytes().to_vec();
        out.extend_from_slice(&self.max.to_be_bytes());
        out
    }

    /// Decodes TC[131,6] data.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let from_seq = r.u64("from seq")?;
        let max = r.u16("max")?;
        r.finish()?;
        Ok(Self { from_seq, max })
    }
}

/// An audit entry with its receipt (TM[131,7] and TM[132,3] content, in
/// fragments keyed by the entry's sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// BIP340 receipt by the node's receipt key.
    pub receipt: [u8; 64],
    /// The entry's canonical bytes (`spacenode_policy::audit`).
    pub entry: Vec<u8>,
}

impl AuditRecord {
    /// `receipt 64 | entry`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.receipt.to_vec();
        out.extend_from_slice(&self.entry);
        out
    }

    /// Decodes the reassembled content.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let receipt = r.array("receipt")?;
        Ok(Self {
            receipt,
            entry: r.rest().to_vec(),
        })
    }
}

/// The signed checkpoint of the node's archived audit prefix (TM[131,13]):
/// `end_seq u64 | chain_hash 32 | signature 64`. The signature is the
/// node receipt key's over `spacenode_policy::audit::Checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCheckpoint {
    /// Last archived entry.
    pub end_seq: u64,
    /// Its entry hash.
    pub chain_hash: [u8; 32],
    /// BIP340 signature by the receipt key.
    pub signature: [u8; 64],
}

impl AuditCheckpoint {
    /// Encoded length.
    pub const LEN: usize = 104;

    /// Wire form.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.end_seq.to_be_bytes());
        out.extend_from_slice(&self.chain_hash);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes the wire form.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let end_seq = r.u64("end seq")?;
        let chain_hash = r.array("chain hash")?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(Self {
            end_seq,
            chain_hash,
            signature,
        })
    }
}

// ---------------------------------------------------------------- ST[132]

/// The node's answer to an approved sign request (TM[132,2] content, in
/// fragments with key 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignResult {
    /// The request's id (from the signed envelope).
    pub request_id: [u8; 32],
    /// Txid signed (internal byte order).
    pub txid: [u8; 32],
    /// Partial signatures (`spacenode_btc::sign::encode_sigs`).
    pub signatures: Vec<u8>,
}

impl SignResult {
    /// `request id 32 | txid 32 | signatures`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.signatures.len());
        out.extend_from_slice(&self.request_id);
        out.extend_from_slice(&self.txid);
        out.extend_from_slice(&self.signatures);
        out
    }

    /// Decodes the reassembled content.
    ///
    /// # Errors
    /// [`MsgError`].
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        Ok(Self {
            request_id: r.array("request id")?,
            txid: r.array("txid")?,
            signatures: r.rest().to_vec(),
        })
    }
}

/// The node's answer to an approved Ethereum sign request (TM[132,4]
/// content, in fragments with key 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthSignResult {
    /// The request's id (from the signed envelope).
    pub request_id: [u8; 32],
    /// `spacenode_eth::engine::EthResult` canonical CBOR (kind, chain id,
    /// signed raw transaction, transaction hash, signature, SafeTx hash).
    pub result: Vec<u8>,
}

impl EthSignResult {
    /// `request id 32 | result`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.result.len());
        out.extend_from_slice(&self.request_id);
        out.extend_from_slice(&self.result);
        out
    }

    /// Decodes the reassembled content.
    ///
    /// # Errors
    /// [`MsgError`] if shorter than a request id.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        Ok(Self {
            request_id: r.array("request id")?,
            result: r.rest().to_vec(),
        })
    }
}

/// Longest administrator command carried with a sign request.
pub const MAX_ADMIN_COMMAND: usize = 8192;

/// TC[132,5] content (through a payload reference): an Ethereum sign
/// request with the signed administrator command (`SAFE_ADMIN_TX`, body =
/// the request hash) that authorises its Safe self-calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSignRequest {
    /// `SignedCommand` wire form.
    pub command: Vec<u8>,
    /// `SignedRequest` wire form.
    pub request: Vec<u8>,
}

impl AdminSignRequest {
    /// `command length u16 | command | request`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let len = u16::try_from(self.command.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(2 + self.command.len() + self.request.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.command);
        out.extend_from_slice(&self.request);
        out
    }

    /// Decodes the content.
    ///
    /// # Errors
    /// [`MsgError`] for a command above [`MAX_ADMIN_COMMAND`], a truncated
    /// command or an empty request.
    pub fn decode(data: &[u8]) -> Result<Self, MsgError> {
        let mut r = Reader::new(data);
        let len = usize::from(r.u16("command length")?);
        if len == 0 || len > MAX_ADMIN_COMMAND {
            return Err(MsgError::Invalid {
                field: "command length",
                value: len as u64,
            });
        }
        let rest = r.rest();
        let (command, request) = rest.split_at_checked(len).ok_or(MsgError::Truncated {
            field: "command",
            need: len,
        })?;
        if request.is_empty() {
            return Err(MsgError::Truncated {
                field: "request",
                need: 1,
            });
        }
        Ok(Self {
            command: command.to_vec(),
            request: request.to_vec(),
        })
    }
}

/// Longest refusal message in a failure report after the rule tag.
pub const MAX_REFUSAL_TEXT: usize = 240;

/// Failure data of a policy refusal: `rule tag: detail` (UTF-8, the detail
/// cut at a character boundary to [`MAX_REFUSAL_TEXT`] bytes).
#[must_use]
pub fn refusal_data(rule_tag: &str, detail: &str) -> Vec<u8> {
    let mut end = detail.len().min(MAX_REFUSAL_TEXT);
    while !detail.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    format!("{rule_tag}: {}", detail.get(..end).unwrap_or_default()).into_bytes()
}

/// The rule tag of a refusal's failure data (the text before `": "`), if
/// it has that form.
#[must_use]
pub fn refusal_rule(data: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(data).ok()?;
    let (tag, _) = text.split_once(": ")?;
    (!tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    .then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payload_round_trip_and_refusals() {
        for p in [Payload::Inline(vec![1, 2, 3]), Payload::Upload([7; 32])] {
            assert_eq!(Payload::decode(&p.encode()).unwrap(), p);
        }
        assert!(Payload::decode(&[0]).is_err());
        assert!(Payload::decode(&[1, 2]).is_err());
        assert!(Payload::decode(&[2, 0]).is_err());
        assert_eq!(MAX_INLINE, 2007);
    }

    #[test]
    fn chunks_tile_the_file_and_missing_ranges_merge() {
        assert_eq!(CHUNK_LEN, 1972);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(1972), 1);
        assert_eq!(chunk_count(1973), 2);
        assert_eq!(chunk_count(MAX_FILE_LEN), 34);
        assert_eq!(chunk_span(1973, 1), Some((1972, 1)));
        assert_eq!(chunk_span(1973, 2), None);
        let total = 5 * 1972 + 10;
        let missing = missing_ranges(total, |i| i == 0 || i == 3);
        assert_eq!(missing, vec![(1972, 2 * 1972), (4 * 1972, 1972 + 10)]);
        assert!(missing_ranges(total, |_| true).is_empty());
        let chunk = FileChunk {
            content_id: [3; 32],
            offset: 1972,
            data: vec![9; CHUNK_LEN],
        };
        assert_eq!(chunk.encode().len(), MAX_TC_APP_DATA);
        assert_eq!(FileChunk::decode(&chunk.encode()).unwrap(), chunk);
        assert!(FileChunk::decode(&[0; 36]).is_err());
        let b = FileBegin {
            content_id: [1; 32],
            total_len: 100,
        };
        assert_eq!(FileBegin::decode(&b.encode()).unwrap(), b);
        let too_big = FileBegin {
            total_len: MAX_FILE_LEN + 1,
            ..b
        };
        assert!(FileBegin::decode(&too_big.encode()).is_err());
        let st = FileStatus {
            content_id: [2; 32],
            state: FileState::Receiving,
            total_len: total,
            received: 2 * 1972,
            missing,
        };
        assert_eq!(FileStatus::decode(&st.encode()).unwrap(), st);
    }

    #[test]
    fn fragments_fit_a_tm_and_reassemble() {
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let parts = Fragment::split(9, &big).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= MAX_TM_DATA));
        let mut frags: Vec<Fragment> = parts.iter().map(|p| Fragment::decode(p).unwrap()).collect();
        frags.reverse();
        frags.push(frags[0].clone());
        // Another reply, one piece missing: left out.
        let other = Fragment::split(10, &big).unwrap();
        frags.push(Fragment::decode(&other[0]).unwrap());
        assert_eq!(Fragment::reassemble(&frags), vec![(9, big)]);
        let empty = Fragment::split(0, &[]).unwrap();
        assert_eq!(
            Fragment::reassemble(&[Fragment::decode(&empty[0]).unwrap()]),
            vec![(0, vec![])]
        );
        assert!(Fragment::split(0, &vec![0; MAX_FRAGMENTED + 1]).is_none());
        assert!(Fragment::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]).is_err());
    }

    #[test]
    fn status_records_and_refusals_round_trip() {
        let st = PolicyStatus {
            active: true,
            active_version: 3,
            active_hash: [4; 32],
            activated_at_ms: -1,
            pending: true,
            pending_version: 4,
            pending_hash: [5; 32],
            activates_at_ms: 99,
            highest_version: 4,
            wallets: 2,
            audit_next_seq: 10,
            audit_last_hash: [6; 32],
            admin_seq: 7,
            clock_last_accepted_ms: 1_700_000_000_000,
            safes: 3,
        };
        assert_eq!(st.encode().len(), POLICY_STATUS_LEN);
        assert_eq!(PolicyStatus::decode(&st.encode()).unwrap(), st);
        let a = AuditRecord {
            receipt: [8; 64],
            entry: vec![1, 2],
        };
        assert_eq!(AuditRecord::decode(&a.encode()).unwrap(), a);
        let s = SignResult {
            request_id: [1; 32],
            txid: [2; 32],
            signatures: vec![0x80],
        };
        assert_eq!(SignResult::decode(&s.encode()).unwrap(), s);
        let e = EthSignResult {
            request_id: [3; 32],
            result: vec![0xA6, 0],
        };
        assert_eq!(EthSignResult::decode(&e.encode()).unwrap(), e);
        assert!(EthSignResult::decode(&[0; 31]).is_err());
        let a = AdminSignRequest {
            command: vec![1, 2, 3],
            request: vec![4, 5],
        };
        assert_eq!(AdminSignRequest::decode(&a.encode()).unwrap(), a);
        assert!(
            AdminSignRequest::decode(&[0, 3, 1, 2, 3]).is_err(),
            "no request"
        );
        assert!(
            AdminSignRequest::decode(&[0, 9, 1, 2, 3]).is_err(),
            "truncated"
        );
        assert!(
            AdminSignRequest::decode(&[0, 0, 1]).is_err(),
            "empty command"
        );
        let r = AuditRequest {
            from_seq: 5,
            max: 64,
        };
        assert_eq!(AuditRequest::decode(&r.encode()).unwrap(), r);
        let d = refusal_data("btc-per-tx-cap", &"é".repeat(300));
        assert!(d.len() <= 16 + MAX_REFUSAL_TEXT);
        assert_eq!(refusal_rule(&d), Some("btc-per-tx-cap"));
        assert_eq!(refusal_rule(b"no tag here"), None);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Payload::decode(&data);
            let _ = FileBegin::decode(&data);
            let _ = FileChunk::decode(&data);
            let _ = FileStatus::decode(&data);
            let _ = Fragment::decode(&data);
            let _ = PolicyStatus::decode(&data);
            let _ = AuditRequest::decode(&data);
            let _ = AuditRecord::decode(&data);
            let _ = SignResult::decode(&data);
            let _ = EthSignResult::decode(&data);
            let _ = AdminSignRequest::decode(&data);
            let _ = refusal_rule(&data);
        }
    }
}
