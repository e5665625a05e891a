//! The node's upload service (PUS 134): begin, chunk, status, and the
//! resolution of payload references (inline or a completed upload) for the
//! services that carry documents.
//!
//! Every chunk is committed before its completion report, so an upload
//! resumes across passes, restarts and kill -9 from what the node reports
//! missing. Rules are in [`crate::services::files`]; this file applies them
//! to the store and never accepts content whose hash is not its id.

use spacenode_wire::cosign::{FileBegin, FileChunk, Payload, chunk_count};
use spacenode_wire::msg::FailureNotice;
use spacenode_wire::services::{apid, service, subtype};

use super::{Node, Now};
use crate::services::TmBody;
use crate::services::files::{self, FileError, KEEP_COMPLETE, KEEP_INCOMPLETE};
use crate::store::StoreError;
use crate::store::cosign::ChunkWrite;

fn store_failure(e: &StoreError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

impl Node {
    fn files_status_tm(
        &mut self,
        id: [u8; 32],
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let info = self.store.upload(&id).map_err(|e| store_failure(&e))?;
        let body = TmBody {
            apid: apid::FILES,
            service: service::FILES,
            subtype: subtype::FILES_STATUS,
            dest_id,
            data: files::status(id, info.as_ref()).encode(),
        };
        out.extend(self.emit(&body, now));
        Ok(())
    }

    /// TC[134,1]: begins an upload, or resumes one the node already has.
    pub(super) fn files_begin(
        &mut self,
        req: FileBegin,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        match self
            .store
            .upload(&req.content_id)
            .map_err(|e| store_failure(&e))?
        {
            Some(info) if info.total_len != req.total_len => {
                return Err(FileError::Conflict("upload known with another length").notice());
            }
            Some(_) => {}
            None => {
                self.store
                    .upload_begin(
                        &req.content_id,
                        req.total_len,
                        now.unix_ms,
                        KEEP_INCOMPLETE,
                        KEEP_COMPLETE,
                    )
                    .map_err(|e| store_failure(&e))?;
                tracing::info!(
                    content_id = %hex::encode(req.content_id),
                    total_len = req.total_len,
                    chunks = chunk_count(req.total_len),
                    "upload begun"
                );
            }
        }
        self.files_status_tm(req.content_id, dest_id, now, out)
    }

    /// TC[134,2]: stores one chunk (committed before the completion
    /// report); the last one completes the upload if the content hashes to
    /// its id.
    pub(super) fn files_chunk(
        &mut self,
        req: FileChunk,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let id = req.content_id;
        let info = self
            .store
            .upload(&id)
            .map_err(|e| store_failure(&e))?
            .ok_or_else(|| FileError::Unknown.notice())?;
        let index = files::chunk_index(info.total_len, req.offset, req.data.len())
            .map_err(|e| e.notice())?;
        if info.complete {
            // A retry after the upload completed.
            return self.files_status_tm(id, dest_id, now, out);
        }
        match self
            .store
            .upload_put_chunk(&id, index, &req.data)
            .map_err(|e| store_failure(&e))?
        {
            ChunkWrite::Conflict => {
                return Err(FileError::Conflict("chunk differs from the one stored").notice());
            }
            ChunkWrite::AlreadyHad => return Ok(()),
            ChunkWrite::Stored => {}
        }
        let have = info.chunks.len().saturating_add(1);
        if u32::try_from(have).ok() != Some(chunk_count(info.total_len)) {
            return Ok(());
        }
        let content: Vec<u8> = self
            .store
            .upload_chunks(&id)
            .map_err(|e| store_failure(&e))?
            .concat();
        if files::content_id(&content) != id
            || u32::try_from(content.len()).ok() != Some(info.total_len)
        {
            tracing::warn!(content_id = %hex::encode(id), "upload does not hash to its id; discarded");
            self.store
                .upload_discard_chunks(&id)
                .map_err(|e| store_failure(&e))?;
            return Err(FileError::HashMismatch.notice());
        }
        self.store
            .upload_finish(&id, &content)
            .map_err(|e| store_failure(&e))?;
        tracing::info!(content_id = %hex::encode(id), bytes = content.len(), "upload complete");
        self.files_status_tm(id, dest_id, now, out)
    }

    /// TC[134,3].
    pub(super) fn files_status(
        &mut self,
        id: [u8; 32],
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        self.files_status_tm(id, dest_id, now, out)
    }

    /// The document a payload reference names.
    pub(super) fn resolve_payload(&self, p: Payload) -> Result<Vec<u8>, FailureNotice> {
        match p {
            Payload::Inline(b) => Ok(b),
            Payload::Upload(id) => {
                match self
                    .store
                    .upload_content(&id)
                    .map_err(|e| store_failure(&e))?
                {
                    Some(Some(content)) => Ok(content),
                    Some(None) => {
                        let info = self.store.upload(&id).ok().flatten();
                        Err(FileError::Incomplete {
                            received: info.as_ref().map_or(0, |i| i.received),
                            total: info.as_ref().map_or(0, |i| i.total_len),
                        }
                        .notice())
                    }
                    None => Err(FileError::Unknown.notice()),
                }
            }
        }
    }
}
