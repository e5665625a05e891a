//! The ground side of the chain service (PUS 129): reading header files,
//! sizing header batches to one frame, planning a resumable sync against the
//! node's `chain.status`, and running it over a [`Link`].
//!
//! The node is the judge of every header: this module never validates
//! consensus rules itself, it only decides what to send next and explains
//! the node's refusals (reason code name and height). Reading files and
//! planning are pure functions; [`sync`] is the loop that talks to the node,
//! reporting progress through a callback so the CLI can draw a progress bar
//! and the benchmark can sample memory.
//!
//! Must never: send a batch larger than one frame, resend what the node
//! already confirmed (except to probe for a fork point), or report success
//! when the node's tip is not the file's header at that height.

use std::time::{Duration, Instant};

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network};
use spacenode_chain::batch::MAX_BATCH_HEADERS;
use spacenode_chain::checkpoint::header_from_bytes;
use spacenode_chain::{BatchError, ChainStatus, HeaderBatch};
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{Reader, Stage};
use spacenode_wire::pus::MAX_TC_APP_DATA;
use spacenode_wire::services::{apid, service, subtype};

use super::client::{GroundError, Link, RetryPolicy};
use super::display;

/// A batch is given up after this many times the policy's attempts: the
/// node commits every batch to flash and may be slow for a moment (a
/// database checkpoint, a busy CPU), and a sync is worth more patience than
/// an interactive request. Retried batches are no-ops on the node.
pub const SYNC_PATIENCE: u32 = 3;

/// Shortest wait for a batch's completion beyond its own wire time: the
/// node validates the batch and commits it to flash (fsync) before it
/// answers, which takes longer than the link round trip the client's
/// estimator learns from small requests (5..40 ms on the bench and in CI).
/// Waiting less only resends the batch for nothing.
pub const SYNC_MIN_TIMEOUT: Duration = Duration::from_millis(50);

/// Reason code of `ChainError::ParentMismatch` (the batch's parent is not
/// the node's block): the ground probes further back for the fork point.
pub const PARENT_MISMATCH: u16 = 0x0322;

/// How a header file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// Concatenated 80-byte headers (consensus serialization), as in
    /// `shared/data/bitcoin/headers/*.bin`.
    Raw,
    /// JSON: a list of 160-hex-character headers (`bitcoin-cli
    /// getblockheader <hash> false` output), or an object
    /// `{"first_height": H, "headers": [...]}`.
    Json,
}

/// Headers read from a file or stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFile {
    /// Headers in height order.
    pub headers: Vec<Header>,
    /// Height of the first header, if the file says (JSON object form).
    pub first_height: Option<u32>,
    /// Bytes of an incomplete last header that were left out (a file cut
    /// short while it was written or copied): the complete headers before
    /// it are synced and the caller warns about the tail. 0: none.
    pub truncated_tail: usize,
}

impl HeaderFile {
    /// The warning to print when the file's last header was truncated.
    #[must_use]
    pub fn tail_warning(&self, name: &str) -> Option<String> {
        (self.truncated_tail > 0).then(|| {
            format!(
                "warning: {name} ends with {} byte(s) of an incomplete header after {} complete \
                 header(s); the incomplete header is not sent",
                self.truncated_tail,
                self.headers.len()
            )
        })
    }
}

impl HeaderFormat {
    /// The layout a file name suggests: JSON for `*.json`, raw otherwise.
    #[must_use]
    pub fn for_path(path: &std::path::Path) -> Self {
        if path.extension().is_some_and(|e| e == "json") {
            Self::Json
        } else {
            Self::Raw
        }
    }
}

/// Errors of the chain commands.
#[derive(Debug, thiserror::Error)]
pub enum ChainCmdError {
    /// The header file cannot be read.
    #[error("cannot read header file {path}: {source}")]
    Read {
        /// Path given.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A raw file shorter than one header whose length is not a multiple
    /// of 80 (a longer one keeps its complete headers, see
    /// [`HeaderFile::truncated_tail`]).
    #[error(
        "{name} is {len} bytes, not a multiple of 80: not a raw header file \
         ({whole} whole headers and {extra} bytes; for JSON pass --format json)"
    )]
    NotMultipleOf80 {
        /// File name or `stdin`.
        name: String,
        /// Its length.
        len: usize,
        /// Whole headers.
        whole: usize,
        /// Bytes left over.
        extra: usize,
    },
    /// A JSON file that does not hold headers.
    #[error("{name}: {message}")]
    Json {
        /// File name or `stdin`.
        name: String,
        /// What is wrong, with the index of the bad entry.
        message: String,
    },
    /// No headers at all.
    #[error("{name} holds no headers")]
    Empty {
        /// File name or `stdin`.
        name: String,
    },
    /// The height of the first header cannot be told.
    #[error(
        "cannot tell the height of the file's first header {first}: it is not a genesis block \
         and neither is nor builds on the node's tip {tip_height} {tip}; pass --first-height"
    )]
    UnknownFirstHeight {
        /// Hash of the file's first header.
        first: BlockHash,
        /// Node's tip height.
        tip_height: u32,
        /// Node's tip hash.
        tip: BlockHash,
    },
    /// Height arithmetic left the u32 range.
    #[error("heights of the file overflow: first height {first} with {count} headers")]
    HeightOverflow {
        /// First height.
        first: u32,
        /// Header count.
        count: usize,
    },
    /// The file starts above the node's tip + 1.
    #[error(
        "the file starts at height {first} but the node's tip is {tip}: headers {}..={} are \
         missing; sync an earlier file first", tip.saturating_add(1), first.saturating_sub(1)
    )]
    Gap {
        /// First height of the file.
        first: u32,
        /// Node's tip.
        tip: u32,
    },
    /// The file's height-0 header is not the node's genesis.
    #[error(
        "the file's first header {got} is not the genesis block of {network} (the node's network: \
         {expected}); wrong file or wrong --first-height"
    )]
    WrongGenesis {
        /// Node's network.
        network: &'static str,
        /// Genesis hash of that network.
        expected: BlockHash,
        /// The file's header hash.
        got: BlockHash,
    },
    /// The node refused a batch.
    #[error(
        "node refused headers {start}..={end} at {stage}: height {height}: {} {name} ({meaning}): {message}",
        format_args!("0x{:04x}", code.0)
    )]
    Refused {
        /// First height of the batch.
        start: u32,
        /// Last height of the batch.
        end: u32,
        /// Height named by the node.
        height: u32,
        /// Reason code.
        code: ReasonCode,
        /// Code name (e.g. `ValidationError::InsufficientProofOfWork`).
        name: &'static str,
        /// Code meaning.
        meaning: &'static str,
        /// Node's message.
        message: String,
        /// `acceptance` or `execution`.
        stage: &'static str,
    },
    /// The node refused a header of a batch after keeping the valid ones
    /// before it: the sync stops at the first failing height.
    #[error(
        "{refused}; the node kept the file's headers before it (node tip {tip_height} {tip}); \
         sync stopped"
    )]
    StoppedAt {
        /// The node's refusal (code, name, failing height).
        refused: Box<ChainCmdError>,
        /// Node's tip height after the refusal.
        tip_height: u32,
        /// Node's tip hash after the refusal.
        tip: BlockHash,
    },
    /// The link failed (silent node, I/O, ground state).
    #[error(transparent)]
    Ground(#[from] GroundError),
    /// The status reply is missing or malformed.
    #[error("chain status from the node: {0}")]
    Status(String),
    /// The node applied a batch but its tip is not the file's.
    #[error(
        "the node accepted headers {start}..={end} but did not adopt them: its tip is \
         {tip_height} {tip} (a competing branch must carry more work than the node's \
         own within one batch)"
    )]
    NotAdopted {
        /// First height of the batch.
        start: u32,
        /// Last height of the batch.
        end: u32,
        /// Node's tip height after it.
        tip_height: u32,
        /// Node's tip hash after it.
        tip: BlockHash,
    },
    /// The node's chain and the file share no header the node keeps.
    #[error(
        "the node's chain and the file disagree at every kept height down to {height} \
         (node tip {tip_height} {tip}): a fork below the node's window or another chain"
    )]
    NoCommonAncestor {
        /// Lowest height probed.
        height: u32,
        /// Node's tip height.
        tip_height: u32,
        /// Node's tip hash.
        tip: BlockHash,
    },
    /// A batch could not be built.
    #[error("cannot build a header batch at height {height}: {source}")]
    Batch {
        /// First height of the batch.
        height: u32,
        /// Why.
        source: BatchError,
    },
}

/// Reads headers in `format` from `bytes` (`name` is used in errors).
///
/// # Errors
/// [`ChainCmdError::NotMultipleOf80`], [`ChainCmdError::Json`] or
/// [`ChainCmdError::Empty`].
pub fn parse_headers(
    bytes: &[u8],
    format: HeaderFormat,
    name: &str,
) -> Result<HeaderFile, ChainCmdError> {
    let file = match format {
        HeaderFormat::Raw => {
            let (whole, extra) = (bytes.len() / 80, bytes.len() % 80);
            // A tail after complete headers is a truncated last header: the
            // complete ones are still good. Without a single complete
            // header the file is not a raw header file at all.
            if extra != 0 && whole == 0 {
                return Err(ChainCmdError::NotMultipleOf80 {
                    name: name.to_string(),
                    len: bytes.len(),
                    whole,
                    extra,
                });
            }
            let headers = bytes
                .chunks_exact(80)
                .filter_map(|c| <&[u8; 80]>::try_from(c).ok())
                .map(header_from_bytes)
                .collect();
            HeaderFile {
                headers,
                first_height: None,
                truncated_tail: extra,
            }
        }
        HeaderFormat::Json => parse_json(bytes, name)?,
    };
    if file.headers.is_empty() {
        return Err(ChainCmdError::Empty {
            name: name.to_string(),
        });
    }
    Ok(file)
}

fn parse_json(bytes: &[u8], name: &str) -> Result<HeaderFile, ChainCmdError> {
    let bad = |message: String| ChainCmdError::Json {
        name: name.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let (list, first_height) = match &value {
        serde_json::Value::Array(list) => (list, None),
        serde_json::Value::Object(map) => {
            let list = map
                .get("headers")
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| bad("object without a \"headers\" list".to_string()))?;
            let first = match map.get("first_height") {
                None => None,
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|h| u32::try_from(h).ok())
                        .ok_or_else(|| bad(format!("first_height {v} is not a u32")))?,
                ),
            };
            (list, first)
        }
        _ => {
            return Err(bad(
                "expected a list of hex headers or {\"first_height\", \"headers\"}".to_string(),
            ));
        }
    };
    let mut headers = Vec::with_capacity(list.len());
    let mut truncated_tail = 0usize;
    for (i, v) in list.iter().enumerate() {
        let text = v
            .as_str()
            .ok_or_else(|| bad(format!("headers[{i}] is not a string")))?;
        let t = text.trim();
        // The last entry cut short (hex digits, fewer than 160): a
        // truncated tail, left out with a warning, as in the raw format.
        if i > 0 && i + 1 == list.len() && t.len() < 160 && t.bytes().all(|b| b.is_ascii_hexdigit())
        {
            truncated_tail = t.len().div_ceil(2);
            break;
        }
        let raw =
            hex::decode(text.trim()).map_err(|e| bad(format!("headers[{i}] is not hex: {e}")))?;
        let arr = <[u8; 80]>::try_from(raw.as_slice()).map_err(|_| {
            bad(format!(
                "headers[{i}] is {} bytes, a header is 80 (160 hex characters)",
                raw.len()
            ))
        })?;
        headers.push(header_from_bytes(&arr));
    }
    Ok(HeaderFile {
        headers,
        first_height,
        truncated_tail,
    })
}

/// The largest batch starting at `start` with the first headers of
/// `headers` (at most `cap`) whose encoding fits one TC
/// ([`MAX_TC_APP_DATA`]). Headers that do not link go in the raw layout, so
/// the node names the height where the link breaks.
///
/// # Errors
/// [`ChainCmdError::Batch`] if not even one header can be encoded.
pub fn fit_batch(
    network: Network,
    start: u32,
    headers: &[Header],
    cap: usize,
) -> Result<(Vec<u8>, usize), ChainCmdError> {
    let batch_err = |source| ChainCmdError::Batch {
        height: start,
        source,
    };
    let encode = |n: usize| -> Result<Vec<u8>, ChainCmdError> {
        let b = HeaderBatch::new(
            network,
            start,
            headers.get(..n).unwrap_or_default().to_vec(),
        )
        .map_err(batch_err)?;
        Ok(b.encode().unwrap_or_else(|_| b.encode_raw()))
    };
    // A compact header is at least 39 bytes after the first: no more than
    // this many can fit, whatever the data.
    let size_bound = MAX_TC_APP_DATA / 39 + 1;
    let mut hi = headers
        .len()
        .min(cap.max(1))
        .min(MAX_BATCH_HEADERS)
        .min(size_bound);
    let mut best = encode(1)?;
    if best.len() > MAX_TC_APP_DATA {
        return Err(batch_err(BatchError::CountOutOfRange { count: 1, max: 0 }));
    }
    let mut lo = 1usize;
    // Invariant: `lo` fits (its bytes are `best`), everything above `hi`
    // does not.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let bytes = encode(mid)?;
        if bytes.len() <= MAX_TC_APP_DATA {
            lo = mid;
            best = bytes;
        } else {
            hi = mid - 1;
        }
    }
    Ok((best, lo))
}

/// Height of the file's first header: given (`--first-height` or the JSON
/// object), 0 for a genesis block (all-zero parent), or derived from the
/// node's tip (the first header is the tip or builds on it).
///
/// # Errors
/// [`ChainCmdError::UnknownFirstHeight`].
pub fn first_height(
    given: Option<u32>,
    first: &Header,
    first_hash: BlockHash,
    status: &ChainStatus,
) -> Result<u32, ChainCmdError> {
    if let Some(h) = given {
        return Ok(h);
    }
    if first.prev_blockhash == BlockHash::all_zeros() {
        return Ok(0);
    }
    if first.prev_blockhash == status.tip_hash {
        return status
            .tip_height
            .checked_add(1)
            .ok_or(ChainCmdError::HeightOverflow {
                first: status.tip_height,
                count: 1,
            });
    }
    if first_hash == status.tip_hash {
        return Ok(status.tip_height);
    }
    Err(ChainCmdError::UnknownFirstHeight {
        first: first_hash,
        tip_height: status.tip_height,
        tip: status.tip_hash,
    })
}

/// Where a sync starts, given the file (heights `first..=first+len-1`, block
/// hashes `hashes`) and the node's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Send from this height; everything below it is on the node.
    From(u32),
    /// The node already has the whole file (its tip is the file's last
    /// header).
    UpToDate,
    /// The node's tip is above the file's end: nothing to send.
    NodeAhead,
    /// The node's tip at its height is not the file's header: the chains
    /// fork at or below it; probe back from there.
    Diverged(u32),
}

/// Decides where to start (pure).
///
/// # Errors
/// [`ChainCmdError::Gap`] when the file starts above the node's tip + 1.
pub fn plan_start(
    first: u32,
    hashes: &[BlockHash],
    status: &ChainStatus,
) -> Result<Start, ChainCmdError> {
    let tip = status.tip_height;
    let count = u32::try_from(hashes.len()).map_err(|_| ChainCmdError::HeightOverflow {
        first,
        count: hashes.len(),
    })?;
    let last = count
        .checked_sub(1)
        .and_then(|n| first.checked_add(n))
        .ok_or(ChainCmdError::HeightOverflow {
            first,
            count: hashes.len(),
        })?;
    if tip.checked_add(1).is_some_and(|next| next < first) {
        return Err(ChainCmdError::Gap { first, tip });
    }
    if tip > last {
        return Ok(Start::NodeAhead);
    }
    if tip < first {
        // tip == first - 1: the file builds on the tip (checked by the node).
        return Ok(Start::From(first));
    }
    let idx = usize::try_from(tip.saturating_sub(first)).unwrap_or(usize::MAX);
    match hashes.get(idx) {
        Some(h) if *h == status.tip_hash && tip == last => Ok(Start::UpToDate),
        Some(h) if *h == status.tip_hash => Ok(Start::From(tip.saturating_add(1))),
        _ => Ok(Start::Diverged(tip)),
    }
}

/// Progress of a sync, for progress bars and measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvent {
    /// The plan: `to_send` headers from `from` (after `skipped` the node has).
    Planned {
        /// First height to send.
        from: u32,
        /// Headers to send.
        to_send: u64,
        /// Headers of the file the node already has.
        skipped: u64,
    },
    /// A batch was applied.
    Batch {
        /// First height.
        start: u32,
        /// Headers in it.
        count: u32,
        /// Node's tip afterwards.
        tip_height: u32,
    },
}

/// Options of [`sync`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Height of the first header (else from the file or the node's tip).
    pub first_height: Option<u32>,
    /// At most this many headers per batch (else as many as fit a frame).
    pub max_batch: Option<usize>,
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// First height of the file.
    pub first_height: u32,
    /// Last height of the file.
    pub last_height: u32,
    /// Headers in the file.
    pub file_headers: u64,
    /// Headers of the file the node had before (not sent).
    pub skipped: u64,
    /// Headers sent (including any re-sent while probing for a fork).
    pub sent_headers: u64,
    /// Batches sent (exchanges, not attempts).
    pub batches: u64,
    /// Application-data bytes of all batches.
    pub payload_bytes: u64,
    /// Uplink frame bytes of all attempts.
    pub frame_bytes_up: u64,
    /// Downlink frame bytes received during the exchanges.
    pub frame_bytes_down: u64,
    /// Attempts beyond the first, summed over batches.
    pub retries: u64,
    /// Longest batch exchange (first send to completion).
    pub slowest_exchange: Duration,
    /// Whether the node reorganised onto the file's branch.
    pub reorganized: bool,
    /// Wall time of the sync.
    pub elapsed: Duration,
    /// Node's status at the end.
    pub status: ChainStatus,
    /// When the last status was reported (TM time).
    pub status_time_ms: i64,
}

/// A `chain.status` with the TM time it was reported at.
fn last_status(replies: &[spacenode_wire::pus::Tm]) -> Option<(ChainStatus, i64)> {
    replies
        .iter()
        .rev()
        .filter(|tm| tm.service == service::CHAIN && tm.subtype == subtype::CHAIN_STATUS)
        .find_map(|tm| {
            ChainStatus::decode(&tm.data)
                .ok()
                .map(|s| (s, tm.time_unix_ms))
        })
}

/// Asks the node for its chain status.
///
/// # Errors
/// [`ChainCmdError::Ground`] on link failure or refusal,
/// [`ChainCmdError::Status`] if the reply is missing or malformed.
pub fn status(link: &mut Link, policy: RetryPolicy) -> Result<(ChainStatus, i64), ChainCmdError> {
    let x = link
        .query(
            (apid::CHAIN, service::CHAIN, subtype::CHAIN_STATUS_REQUEST),
            &[],
            subtype::CHAIN_STATUS,
            policy,
        )
        .map_err(refusal(0, 0))?;
    if let Some(found) = last_status(&x.replies) {
        return Ok(found);
    }
    let why = x
        .replies
        .iter()
        .rev()
        .find(|tm| tm.service == service::CHAIN && tm.subtype == subtype::CHAIN_STATUS)
        .map_or_else(
            || "the request completed but the status report was lost; try again".to_string(),
            |tm| match ChainStatus::decode(&tm.data) {
                Ok(_) => "unreadable".to_string(),
                Err(e) => format!(
                    "malformed status ({}): {e}",
                    display::reason(ReasonCode(e.code()))
                ),
            },
        );
    Err(ChainCmdError::Status(why))
}

/// Clears the node's deep-reorg flag with a quorum-signed
/// `CLEAR_DEEP_REORG` command (its encoded bytes). `None` sends the former
/// plain TC, which the node refuses with 0x03B0 (kept to show the reason).
///
/// # Errors
/// [`ChainCmdError`] on link failure or refusal.
pub fn clear_deep_reorg(
    link: &mut Link,
    policy: RetryPolicy,
    command: Option<&[u8]>,
) -> Result<(), ChainCmdError> {
    let tc = link.new_tc(
        apid::CHAIN,
        service::CHAIN,
        subtype::CHAIN_CLEAR_DEEP_REORG,
        command.map(<[u8]>::to_vec).unwrap_or_default(),
    );
    link.request(&tc, policy).map_err(refusal(0, 0))?;
    Ok(())
}

/// Decodes chain failure data: `height u32 | message`.
#[must_use]
pub fn decode_failure(data: &[u8]) -> (Option<u32>, String) {
    let mut r = Reader::new(data);
    match r.u32("height") {
        Ok(h) => (Some(h), String::from_utf8_lossy(r.rest()).into_owned()),
        Err(_) => (None, String::from_utf8_lossy(data).into_owned()),
    }
}

/// Maps a node refusal of the batch `start..=end` to a readable error.
fn refusal(start: u32, end: u32) -> impl Fn(GroundError) -> ChainCmdError {
    move |e| match e {
        GroundError::Refused {
            code, data, stage, ..
        } if (0x0300..=0x03FF).contains(&code.0) => {
            let (height, message) = decode_failure(&data);
            let (name, meaning) = display::describe(code).unwrap_or(("unknown code", ""));
            ChainCmdError::Refused {
                start,
                end,
                height: height.unwrap_or(start),
                code,
                name,
                meaning,
                message,
                stage: match stage {
                    Stage::Acceptance => "acceptance",
                    Stage::Start | Stage::Completion => "execution",
                },
            }
        }
        other => ChainCmdError::Ground(other),
    }
}

/// Running totals of a sync.
struct Sender<'a> {
    link: &'a mut Link,
    policy: RetryPolicy,
    network: Network,
    cap: usize,
    report: SyncReport,
}

impl Sender<'_> {
    /// Sends one batch from `start` (index `idx` in the file); returns how
    /// many headers it carried and the node's status after it.
    fn send(
        &mut self,
        start: u32,
        headers: &[Header],
    ) -> Result<(u32, Option<(ChainStatus, i64)>), ChainCmdError> {
        let (bytes, n) = fit_batch(self.network, start, headers, self.cap)?;
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        let end = start.saturating_add(count.saturating_sub(1));
        let payload = bytes.len() as u64;
        let tc = self
            .link
            .new_tc(apid::CHAIN, service::CHAIN, subtype::CHAIN_HEADERS, bytes);
        let x = self
            .link
            .request(&tc, self.policy)
            .map_err(refusal(start, end))?;
        let r = &mut self.report;
        r.batches += 1;
        r.sent_headers += u64::from(count);
        r.payload_bytes += payload;
        r.frame_bytes_up += (x.bytes_up as u64) * u64::from(x.attempts);
        r.frame_bytes_down += x.bytes_down as u64;
        r.retries += u64::from(x.attempts.saturating_sub(1));
        r.slowest_exchange = r.slowest_exchange.max(x.elapsed);
        Ok((count, last_status(&x.replies)))
    }
}

/// Syncs the node with `headers`: asks its status, skips what it has, finds
/// the fork point if its tip is not on the file's chain, then sends batches
/// that fit one frame until the file's end. Re-running after an
/// interruption resumes; a batch re-sent after a lost reply is a no-op on
/// the node.
///
/// # Errors
/// [`ChainCmdError`]: refusals carry the node's code name and height.
pub fn sync(
    link: &mut Link,
    policy: RetryPolicy,
    file: &HeaderFile,
    opts: SyncOptions,
    on_event: &mut dyn FnMut(SyncEvent),
) -> Result<SyncReport, ChainCmdError> {
    let started = Instant::now();
    let headers = &file.headers;
    let Some(first_header) = headers.first() else {
        return Err(ChainCmdError::Empty {
            name: "header file".to_string(),
        });
    };
    let hashes: Vec<BlockHash> = headers.iter().map(Header::block_hash).collect();
    let (st, st_time) = status(link, policy)?;
    let first = first_height(
        opts.first_height.or(file.first_height),
        first_header,
        hashes.first().copied().unwrap_or_else(BlockHash::all_zeros),
        &st,
    )?;
    let network = st.network;
    if first == 0 {
        let genesis = bitcoin::constants::genesis_block(network).block_hash();
        if hashes.first() != Some(&genesis) {
            return Err(ChainCmdError::WrongGenesis {
                network: display::network_name(network),
                expected: genesis,
                got: hashes.first().copied().unwrap_or_else(BlockHash::all_zeros),
            });
        }
    }
    let count = headers.len();
    let last = u32::try_from(count.saturating_sub(1))
        .ok()
        .and_then(|n| first.checked_add(n))
        .ok_or(ChainCmdError::HeightOverflow { first, count })?;
    let mut s = Sender {
        link,
        policy: RetryPolicy {
            attempts: policy.attempts.saturating_mul(SYNC_PATIENCE),
            min_timeout: policy.min_timeout.max(SYNC_MIN_TIMEOUT),
            ..policy
        },
        network,
        cap: opts.max_batch.unwrap_or(MAX_BATCH_HEADERS).max(1),
        report: SyncReport {
            first_height: first,
            last_height: last,
            file_headers: count as u64,
            skipped: 0,
            sent_headers: 0,
            batches: 0,
            payload_bytes: 0,
            frame_bytes_up: 0,
            frame_bytes_down: 0,
            retries: 0,
            slowest_exchange: Duration::ZERO,
            reorganized: false,
            elapsed: Duration::ZERO,
            status: st,
            status_time_ms: st_time,
        },
    };
    let slice_from = |h: u32| {
        h.checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| headers.get(i..))
            .unwrap_or_default()
    };
    let hash_at = |h: u32| {
        h.checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| hashes.get(i))
            .copied()
    };
    let mut next = match plan_start(first, &hashes, &st)? {
        Start::From(h) => h.max(1),
        Start::UpToDate | Start::NodeAhead => last.saturating_add(1),
        Start::Diverged(tip) => {
            // Probe back for the fork point: 1, 2, 4, ... blocks below the
            // node's tip, never below the file, genesis+1 or the node's
            // lowest kept height (there the node decides on a deep fork).
            let floor = first.max(1).max(st.lowest_height);
            let mut back = 1u32;
            loop {
                let from = tip.saturating_add(1).saturating_sub(back).max(floor);
                match s.send(from, slice_from(from)) {
                    Ok((n, after)) => {
                        let end = from.saturating_add(n.saturating_sub(1));
                        let (after, t) = match after {
                            Some(a) => a,
                            None => status(s.link, policy)?,
                        };
                        s.report.status = after;
                        s.report.status_time_ms = t;
                        if hash_at(after.tip_height) != Some(after.tip_hash) {
                            return Err(ChainCmdError::NotAdopted {
                                start: from,
                                end,
                                tip_height: after.tip_height,
                                tip: after.tip_hash,
                            });
                        }
                        s.report.reorganized = true;
                        break after.tip_height.saturating_add(1);
                    }
                    Err(ChainCmdError::Refused { code, .. })
                        if code.0 == PARENT_MISMATCH && from > floor =>
                    {
                        back = back.saturating_mul(2);
                    }
                    Err(ChainCmdError::Refused { code, .. }) if code.0 == PARENT_MISMATCH => {
                        return Err(ChainCmdError::NoCommonAncestor {
                            height: from,
                            tip_height: st.tip_height,
                            tip: st.tip_hash,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let skipped = u64::from(next.min(last.saturating_add(1)).saturating_sub(first));
    s.report.skipped = skipped;
    on_event(SyncEvent::Planned {
        from: next,
        to_send: (count as u64).saturating_sub(skipped),
        skipped,
    });
    while next <= last {
        let (n, after) = match s.send(next, slice_from(next)) {
            Ok(x) => x,
            Err(refused @ ChainCmdError::Refused { .. }) => {
                // The node keeps the valid headers of a batch before the
                // first bad one: say how far it got, then stop (the file
                // is wrong from the failing height on; resending it would
                // fail there again).
                return Err(match status(s.link, policy) {
                    Ok((st, _))
                        if st.tip_height >= next && hash_at(st.tip_height) == Some(st.tip_hash) =>
                    {
                        ChainCmdError::StoppedAt {
                            refused: Box::new(refused),
                            tip_height: st.tip_height,
                            tip: st.tip_hash,
                        }
                    }
                    _ => refused,
                });
            }
            Err(e) => return Err(e),
        };
        let end = next.saturating_add(n.saturating_sub(1));
        let tip_height = match after {
            Some((after, t)) => {
                s.report.status = after;
                s.report.status_time_ms = t;
                // The node's tip must now be the file's header at its height
                // (at or above the batch end).
                if after.tip_height < end
                    || hash_at(after.tip_height).is_some_and(|h| h != after.tip_hash)
                {
                    return Err(ChainCmdError::NotAdopted {
                        start: next,
                        end,
                        tip_height: after.tip_height,
                        tip: after.tip_hash,
                    });
                }
                after.tip_height
            }
            // The status reply was lost but the batch completed.
            None => end,
        };
        on_event(SyncEvent::Batch {
            start: next,
            count: n,
            tip_height,
        });
        next = end.saturating_add(1);
    }
    let (fin, t) = status(s.link, policy)?;
    s.report.status = fin;
    s.report.status_time_ms = t;
    s.report.elapsed = started.elapsed();
    Ok(s.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacenode_chain::regtest::{genesis, mine_chain};

    fn status(tip_height: u32, tip: BlockHash, lowest: u32) -> ChainStatus {
        ChainStatus {
            network: Network::Regtest,
            tip_height,
            tip_hash: tip,
            tip_chain_work: bitcoin::Work::from_be_bytes([0; 32]),
            tip_median_time_past: 0,
            window: 10,
            lowest_height: lowest,
            last_reorg: None,
            deep_reorg_refused: None,
        }
    }

    fn chain(n: usize) -> Vec<Header> {
        let mut h = vec![genesis()];
        h.extend(mine_chain(&genesis(), n, 600).unwrap());
        h
    }

    #[test]
    fn raw_and_json_files_parse_with_clear_errors() {
        let headers = chain(3);
        let raw: Vec<u8> = headers
            .iter()
            .flat_map(bitcoin::consensus::serialize)
            .collect();
        let f = parse_headers(&raw, HeaderFormat::Raw, "x.bin").unwrap();
        assert_eq!(f.headers, headers);
        // A truncated last header: the complete ones are kept, the tail is
        // reported for a warning.
        let f = parse_headers(&raw[..170], HeaderFormat::Raw, "x.bin").unwrap();
        assert_eq!(
            (f.headers.as_slice(), f.truncated_tail),
            (&headers[..2], 10)
        );
        let w = f.tail_warning("x.bin").unwrap();
        assert!(
            w.contains("10 byte(s) of an incomplete header after 2"),
            "{w}"
        );
        assert_eq!(
            parse_headers(&raw, HeaderFormat::Raw, "x.bin")
                .unwrap()
                .tail_warning("x.bin"),
            None
        );
        // Less than one header is not a header file.
        let e = parse_headers(&raw[..70], HeaderFormat::Raw, "x.bin").unwrap_err();
        assert!(
            e.to_string()
                .contains("x.bin is 70 bytes, not a multiple of 80"),
            "{e}"
        );
        assert!(matches!(
            parse_headers(&[], HeaderFormat::Raw, "empty.bin"),
            Err(ChainCmdError::Empty { .. })
        ));
        let hexes: Vec<String> = raw.chunks(80).map(hex::encode).collect();
        let list = serde_json::to_vec(&hexes).unwrap();
        let f = parse_headers(&list, HeaderFormat::Json, "h.json").unwrap();
        assert_eq!((f.headers.clone(), f.first_height), (headers.clone(), None));
        let obj = serde_json::json!({"first_height": 7, "headers": hexes[1..]});
        let f = parse_headers(obj.to_string().as_bytes(), HeaderFormat::Json, "h.json").unwrap();
        assert_eq!(f.first_height, Some(7));
        assert_eq!(f.headers.len(), 3);
        let mut cut = hexes.clone();
        cut[3].truncate(101);
        let f = parse_headers(
            &serde_json::to_vec(&cut).unwrap(),
            HeaderFormat::Json,
            "h.json",
        )
        .unwrap();
        assert_eq!(
            (f.headers.as_slice(), f.truncated_tail),
            (&headers[..3], 51)
        );
        let e = parse_headers(br#"["00ff"]"#, HeaderFormat::Json, "h.json").unwrap_err();
        assert!(e.to_string().contains("headers[0] is 2 bytes"), "{e}");
        let e = parse_headers(b"[1]", HeaderFormat::Json, "h.json").unwrap_err();
        assert!(e.to_string().contains("headers[0] is not a string"), "{e}");
    }

    #[test]
    fn batches_fill_but_never_exceed_one_frame() {
        let headers = chain(400);
        let (bytes, n) = fit_batch(Network::Regtest, 1, &headers[1..], usize::MAX).unwrap();
        assert!(bytes.len() <= MAX_TC_APP_DATA);
        assert!(n >= 45, "only {n} headers fit");
        let (more, _) = fit_batch(Network::Regtest, 1, &headers[1..n + 2], usize::MAX).unwrap();
        assert!(more.len() <= MAX_TC_APP_DATA);
        let decoded = HeaderBatch::decode(&bytes).unwrap();
        assert_eq!(decoded.headers(), &headers[1..=n]);
        // A cap is honoured.
        assert_eq!(
            fit_batch(Network::Regtest, 1, &headers[1..], 10).unwrap().1,
            10
        );
        // Unlinked headers go raw, so the node sees and names the break.
        let mut broken = headers[1..60].to_vec();
        broken[5].nonce ^= 1;
        let (bytes, n) = fit_batch(Network::Regtest, 1, &broken, usize::MAX).unwrap();
        assert!(bytes.len() <= MAX_TC_APP_DATA);
        let decoded = HeaderBatch::decode(&bytes).unwrap();
        assert_eq!(decoded.headers(), &broken[..n]);
    }

    #[test]
    fn start_is_planned_from_the_node_status() {
        let headers = chain(20);
        let hashes: Vec<BlockHash> = headers.iter().map(Header::block_hash).collect();
        // Fresh node at genesis, file from genesis: send from 1.
        assert_eq!(
            plan_start(0, &hashes, &status(0, hashes[0], 0)).unwrap(),
            Start::From(1)
        );
        // Node at 12 on the file's chain: resume at 13.
        assert_eq!(
            plan_start(0, &hashes, &status(12, hashes[12], 3)).unwrap(),
            Start::From(13)
        );
        assert_eq!(
            plan_start(0, &hashes, &status(20, hashes[20], 11)).unwrap(),
            Start::UpToDate
        );
        assert_eq!(
            plan_start(0, &hashes[..5], &status(12, hashes[12], 3)).unwrap(),
            Start::NodeAhead
        );
        // Node on another branch at 12.
        assert_eq!(
            plan_start(0, &hashes, &status(12, hashes[3], 3)).unwrap(),
            Start::Diverged(12)
        );
        // File 10..=20 on a node at 9: builds on the tip; at 5: gap.
        assert_eq!(
            plan_start(10, &hashes[10..], &status(9, hashes[9], 0)).unwrap(),
            Start::From(10)
        );
        let e = plan_start(10, &hashes[10..], &status(5, hashes[5], 0)).unwrap_err();
        assert!(e.to_string().contains("headers 6..=9 are missing"), "{e}");
    }

    #[test]
    fn first_height_comes_from_the_user_genesis_or_the_tip() {
        let headers = chain(5);
        let h: Vec<BlockHash> = headers.iter().map(Header::block_hash).collect();
        let st = status(3, h[3], 0);
        assert_eq!(first_height(Some(9), &headers[2], h[2], &st).unwrap(), 9);
        assert_eq!(first_height(None, &headers[0], h[0], &st).unwrap(), 0);
        assert_eq!(first_height(None, &headers[4], h[4], &st).unwrap(), 4);
        assert_eq!(first_height(None, &headers[3], h[3], &st).unwrap(), 3);
        let e = first_height(None, &headers[2], h[2], &st).unwrap_err();
        assert!(e.to_string().contains("pass --first-height"), "{e}");
    }

    #[test]
    fn failure_data_decodes() {
        let mut data = 6001u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"header 6001: bad");
        assert_eq!(
            decode_failure(&data),
            (Some(6001), "header 6001: bad".to_string())
        );
        assert_eq!(decode_failure(b"ab"), (None, "ab".to_string()));
    }
}
