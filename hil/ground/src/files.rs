//! The ground side of the upload service (PUS 134): sends a document
//! larger than one frame in chunks, resuming from what the node reports
//! missing, so an upload interrupted by a lost pass, a ground crash or a
//! node reboot continues where it stopped.
//!
//! Must never: send a chunk that does not fill its position exactly, or
//! report success before the node says the content hashes to its id.

use bitcoin::hashes::{Hash, sha256};
use spacenode_wire::cosign::{
    CHUNK_LEN, FileBegin, FileChunk, FileState, FileStatus, MAX_FILE_LEN, chunk_count, chunk_span,
};
use spacenode_wire::services::{apid, service, subtype};

use super::client::{GroundError, Link, RetryPolicy};

/// Rounds of status → missing chunks before giving up.
const MAX_ROUNDS: u32 = 6;

/// Upload errors.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Empty or above the node's limit.
    #[error("document of {0} bytes cannot be uploaded (1..={MAX_FILE_LEN} bytes)")]
    Size(usize),
    /// The link failed or the node refused.
    #[error(transparent)]
    Link(#[from] GroundError),
    /// The node's status report was lost or malformed.
    #[error("no usable upload status from the node: {0}")]
    Status(String),
    /// The node still misses chunks after every round.
    #[error("upload incomplete after {rounds} rounds: {missing} bytes still missing")]
    Incomplete {
        /// Rounds made.
        rounds: u32,
        /// Bytes missing.
        missing: u64,
    },
}

/// Progress of an upload, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadEvent {
    /// The node's status: `missing` of `total` bytes still to send.
    Status {
        /// Bytes the node lacks.
        missing: u64,
        /// Document length.
        total: u64,
    },
    /// A chunk was stored by the node.
    Chunk {
        /// Its length.
        len: u64,
    },
}

/// SHA-256 of `content`: the upload's content id.
#[must_use]
pub fn content_id(content: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(content).to_byte_array()
}

fn status_of(x: &super::client::Exchange) -> Result<FileStatus, UploadError> {
    let tm = x
        .replies
        .iter()
        .rev()
        .find(|t| t.service == service::FILES && t.subtype == subtype::FILES_STATUS)
        .ok_or_else(|| UploadError::Status("status report lost".into()))?;
    FileStatus::decode(&tm.data).map_err(|e| UploadError::Status(e.to_string()))
}

/// The node's status of upload `id`.
///
/// # Errors
/// [`UploadError`].
pub fn status(
    link: &mut Link,
    policy: RetryPolicy,
    id: [u8; 32],
) -> Result<FileStatus, UploadError> {
    let x = link.query(
        (apid::FILES, service::FILES, subtype::FILES_STATUS_REQUEST),
        &id,
        subtype::FILES_STATUS,
        policy,
    )?;
    status_of(&x)
}

/// Begins (or re-begins: the node answers a known upload with its
/// status, so asking again after a lost reply is harmless) upload `id`.
fn begin(
    link: &mut Link,
    policy: RetryPolicy,
    id: [u8; 32],
    total: u32,
) -> Result<FileStatus, UploadError> {
    let x = link.query(
        (apid::FILES, service::FILES, subtype::FILES_BEGIN),
        &FileBegin {
            content_id: id,
            total_len: total,
        }
        .encode(),
        subtype::FILES_STATUS,
        policy,
    )?;
    status_of(&x)
}

fn missing_chunks(total: u32, st: &FileStatus) -> Vec<u32> {
    (0..chunk_count(total))
        .filter(|i| {
            chunk_span(total, *i).is_some_and(|(start, len)| {
                st.missing
                    .iter()
                    .any(|(o, l)| start < o.saturating_add(*l) && o < &start.saturating_add(len))
            })
        })
        .collect()
}

/// Uploads `content` (or resumes its upload) and returns its content id
/// once the node reports it complete. `stop_after` (tests) sends at most
/// that many chunks, then returns the node's status as an error-free
/// partial upload: `Ok(None)`.
///
/// # Errors
/// [`UploadError`].
pub fn upload_partial(
    link: &mut Link,
    policy: RetryPolicy,
    content: &[u8],
    stop_after: Option<usize>,
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<Option<[u8; 32]>, UploadError> {
    let total = u32::try_from(content.len())
        .ok()
        .filter(|t| *t > 0 && *t <= MAX_FILE_LEN)
        .ok_or(UploadError::Size(content.len()))?;
    let id = content_id(content);
    let chunk_policy = RetryPolicy {
        attempts: policy.attempts.saturating_mul(3),
        ..policy
    };
    let mut st = begin(link, policy, id, total)?;
    let mut sent = 0usize;
    for _ in 0..MAX_ROUNDS {
        if st.state == FileState::Complete {
            on_event(UploadEvent::Status {
                missing: 0,
                total: u64::from(total),
            });
            return Ok(Some(id));
        }
        let missing: u64 = st.missing.iter().map(|(_, l)| u64::from(*l)).sum();
        on_event(UploadEvent::Status {
            missing,
            total: u64::from(total),
        });
        for index in missing_chunks(total, &st) {
            if stop_after.is_some_and(|n| sent >= n) {
                return Ok(None);
            }
            let Some((offset, len)) = chunk_span(total, index) else {
                continue;
            };
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(len).unwrap_or(0));
            let data = content.get(start..end).unwrap_or_default().to_vec();
            debug_assert!(data.len() <= CHUNK_LEN);
            let tc = link.new_tc(
                apid::FILES,
                service::FILES,
                subtype::FILES_CHUNK,
                FileChunk {
                    content_id: id,
                    offset,
                    data,
                }
                .encode(),
            );
            link.request(&tc, chunk_policy)?;
            sent = sent.saturating_add(1);
            on_event(UploadEvent::Chunk {
                len: u64::from(len),
            });
        }
        st = status(link, policy, id)?;
        if st.state == FileState::Unknown {
            // Pruned meanwhile (many uploads from elsewhere): begin again.
            st = begin(link, policy, id, total)?;
        }
    }
    if st.state == FileState::Complete {
        return Ok(Some(id));
    }
    Err(UploadError::Incomplete {
        rounds: MAX_ROUNDS,
        missing: st.missing.iter().map(|(_, l)| u64::from(*l)).sum(),
    })
}

/// Uploads `content` (module docs) and returns its content id.
///
/// # Errors
/// [`UploadError`].
pub fn upload(
    link: &mut Link,
    policy: RetryPolicy,
    content: &[u8],
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<[u8; 32], UploadError> {
    upload_partial(link, policy, content, None, on_event)?.ok_or(UploadError::Incomplete {
        rounds: 0,
        missing: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ranges_map_back_to_chunks() {
        let total = 3 * 1972 + 1;
        let st = FileStatus {
            content_id: [0; 32],
            state: FileState::Receiving,
            total_len: total,
            received: 0,
            missing: vec![(1972, 1972), (3 * 1972, 1)],
        };
        assert_eq!(missing_chunks(total, &st), vec![1, 3]);
    }
}
