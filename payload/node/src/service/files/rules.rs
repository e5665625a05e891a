//! The upload service (PUS 134 on APID `FILES`): the pure rules of a
//! resumable upload. Chunks are identified by their index (every chunk but
//! the last is [`CHUNK_LEN`] bytes at a multiple of it), stored as they
//! arrive, and the content is accepted only when it hashes to its id
//! (SHA-256). Execution and storage are the files room's (`super`).
//!
//! Must never: accept a chunk at a position that is not a chunk boundary,
//! accept content whose hash is not its id, or let an upload exceed
//! [`MAX_FILE_LEN`].

use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{
    CHUNK_LEN, FileState, FileStatus, MAX_FILE_LEN, chunk_span, missing_ranges,
};
use spacenode_wire::msg::FailureNotice;

use crate::store::cosign::UploadInfo;

/// Incomplete uploads kept at once (the oldest is dropped for a new one).
pub const KEEP_INCOMPLETE: usize = 8;
/// Complete uploads kept (so a retried request still finds its payload).
pub const KEEP_COMPLETE: usize = 32;

/// Upload refusals. Codes 0x0901..=0x09FF (`docs/wire.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Length 0 or above the limit.
    #[error("upload of {0} bytes refused (1..={MAX_FILE_LEN})")]
    TooLarge(u64),
    /// No upload with this id.
    #[error("no upload with this content id (never begun, or pruned): begin it again")]
    Unknown,
    /// Offset or length do not match a chunk.
    #[error(
        "chunk at offset {offset} with {len} bytes is not a chunk of this upload ({total} bytes, chunks of {CHUNK_LEN})"
    )]
    BadChunk {
        /// Offset sent.
        offset: u32,
        /// Length sent.
        len: usize,
        /// Upload length.
        total: u32,
    },
    /// The content does not hash to its id.
    #[error("content does not hash to its id; chunks discarded, upload again")]
    HashMismatch,
    /// The upload is not complete yet.
    #[error("upload incomplete: {received} of {total} bytes")]
    Incomplete {
        /// Bytes stored.
        received: u32,
        /// Length.
        total: u32,
    },
    /// Same id with other data.
    #[error("conflict: {0}")]
    Conflict(&'static str),
}

impl FileError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> ReasonCode {
        ReasonCode(match self {
            Self::TooLarge(_) => 0x0901,
            Self::Unknown => 0x0902,
            Self::BadChunk { .. } => 0x0903,
            Self::HashMismatch => 0x0904,
            Self::Incomplete { .. } => 0x0905,
            Self::Conflict(_) => 0x0906,
        })
    }

    /// The failure notice for the ground.
    #[must_use]
    pub fn notice(&self) -> FailureNotice {
        FailureNotice {
            code: self.code(),
            data: self.to_string().into_bytes(),
        }
    }
}

/// The chunk index of `(offset, len)` in an upload of `total` bytes.
///
/// # Errors
/// [`FileError::BadChunk`].
pub fn chunk_index(total: u32, offset: u32, len: usize) -> Result<u32, FileError> {
    let bad = FileError::BadChunk { offset, len, total };
    let chunk = u32::try_from(CHUNK_LEN).map_err(|_| bad.clone())?;
    if !offset.is_multiple_of(chunk) {
        return Err(bad);
    }
    let index = offset / chunk;
    match chunk_span(total, index) {
        Some((_, expected)) if usize::try_from(expected).ok() == Some(len) => Ok(index),
        _ => Err(bad),
    }
}

/// The status report of an upload (`None`: unknown).
#[must_use]
pub fn status(content_id: [u8; 32], info: Option<&UploadInfo>) -> FileStatus {
    match info {
        None => FileStatus {
            content_id,
            state: FileState::Unknown,
            total_len: 0,
            received: 0,
            missing: Vec::new(),
        },
        Some(i) if i.complete => FileStatus {
            content_id,
            state: FileState::Complete,
            total_len: i.total_len,
            received: i.total_len,
            missing: Vec::new(),
        },
        Some(i) => FileStatus {
            content_id,
            state: FileState::Receiving,
            total_len: i.total_len,
            received: i.received,
            missing: missing_ranges(i.total_len, |idx| i.chunks.binary_search(&idx).is_ok()),
        },
    }
}

/// SHA-256 of `content` (an upload's id).
#[must_use]
pub fn content_id(content: &[u8]) -> [u8; 32] {
    use bitcoin::hashes::{Hash, sha256};
    sha256::Hash::hash(content).to_byte_array()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_positions_are_fixed() {
        let total = 2 * 1972 + 5;
        assert_eq!(chunk_index(total, 0, 1972), Ok(0));
        assert_eq!(chunk_index(total, 1972, 1972), Ok(1));
        assert_eq!(chunk_index(total, 2 * 1972, 5), Ok(2));
        assert!(chunk_index(total, 2 * 1972, 4).is_err());
        assert!(chunk_index(total, 1, 1972).is_err());
        assert!(chunk_index(total, 3 * 1972, 1).is_err());
        assert!(chunk_index(total, 0, 1000).is_err());
    }

    #[test]
    fn status_lists_what_is_missing() {
        let info = UploadInfo {
            total_len: 3 * 1972,
            chunks: vec![1],
            received: 1972,
            complete: false,
        };
        let st = status([1; 32], Some(&info));
        assert_eq!(st.state, FileState::Receiving);
        assert_eq!(st.missing, vec![(0, 1972), (2 * 1972, 1972)]);
        assert_eq!(status([1; 32], None).state, FileState::Unknown);
        let codes: Vec<u16> = [
            FileError::TooLarge(0),
            FileError::Unknown,
            FileError::BadChunk {
                offset: 0,
                len: 0,
                total: 0,
            },
            FileError::HashMismatch,
            FileError::Incomplete {
                received: 0,
                total: 1,
            },
            FileError::Conflict("x"),
        ]
        .iter()
        .map(|e| e.code().0)
        .collect();
        assert_eq!(codes, (0x0901..=0x0906).collect::<Vec<u16>>());
    }
}
