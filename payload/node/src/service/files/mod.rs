//! The files room (PUS 134 on APID `FILES`): resumable uploads. Begin
//! (TC[134,1]), chunk (TC[134,2]) and status (TC[134,3]), each answered by
//! TM[134,4]. The pure rules are [`rules`]; the resolution of payload
//! references for other rooms is the node's (`node/files.rs`).
//!
//! Every chunk is committed before its completion report, so an upload
//! resumes across passes, restarts and kill -9 from what the node reports
//! missing. Must never accept content whose hash is not its id.

pub mod rules;

use spacenode_wire::cosign::{FileBegin, FileChunk, chunk_count};
use spacenode_wire::msg::{FailureNotice, MsgError};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

use super::verify::Reply;
use super::{bad_data, store_failure, unknown_service};
use crate::node::Node;
use crate::store::cosign::ChunkWrite;
use rules::{FileError, KEEP_COMPLETE, KEEP_INCOMPLETE};

/// A files request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[134,1].
    Begin(FileBegin),
    /// TC[134,2].
    Chunk(FileChunk),
    /// TC[134,3]: content id.
    Status([u8; 32]),
}

/// Acceptance of a TC on APID `FILES`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::FILES, subtype::FILES_BEGIN) => FileBegin::decode(&tc.app_data)
            .map(Request::Begin)
            .map_err(|e| bad_data(&e)),
        (service::FILES, subtype::FILES_CHUNK) => FileChunk::decode(&tc.app_data)
            .map(Request::Chunk)
            .map_err(|e| bad_data(&e)),
        (service::FILES, subtype::FILES_STATUS_REQUEST) => {
            <[u8; 32]>::try_from(tc.app_data.as_slice())
                .map(Request::Status)
                .map_err(|_| {
                    bad_data(&MsgError::Invalid {
                        field: "content id length",
                        value: tc.app_data.len() as u64,
                    })
                })
        }
        _ => Err(unknown_service()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Begin(b) => begin(node, cx, &b),
        Request::Chunk(c) => chunk(node, cx, &c),
        Request::Status(id) => send_status(node, cx, id),
    }
}

fn send_status(node: &mut Node, cx: &mut Reply, id: [u8; 32]) -> Result<(), FailureNotice> {
    let info = node.store.upload(&id).map_err(|e| store_failure(&e))?;
    let data = rules::status(id, info.as_ref()).encode();
    cx.reply(
        node,
        apid::FILES,
        service::FILES,
        subtype::FILES_STATUS,
        data,
    );
    Ok(())
}

/// TC[134,1]: begins an upload, or resumes one the node already has.
fn begin(node: &mut Node, cx: &mut Reply, req: &FileBegin) -> Result<(), FailureNotice> {
    match node
        .store
        .upload(&req.content_id)
        .map_err(|e| store_failure(&e))?
    {
        Some(info) if info.total_len != req.total_len => {
            return Err(FileError::Conflict("upload known with another length").notice());
        }
        Some(_) => {}
        None => {
            node.store
                .upload_begin(
                    &req.content_id,
                    req.total_len,
                    cx.now.unix_ms,
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
    send_status(node, cx, req.content_id)
}

/// TC[134,2]: stores one chunk (committed before the completion report);
/// the last one completes the upload if the content hashes to its id.
fn chunk(node: &mut Node, cx: &mut Reply, req: &FileChunk) -> Result<(), FailureNotice> {
    let id = req.content_id;
    let info = node
        .store
        .upload(&id)
        .map_err(|e| store_failure(&e))?
        .ok_or_else(|| FileError::Unknown.notice())?;
    let index =
        rules::chunk_index(info.total_len, req.offset, req.data.len()).map_err(|e| e.notice())?;
    if info.complete {
        // A retry after the upload completed.
        return send_status(node, cx, id);
    }
    match node
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
    let content: Vec<u8> = node
        .store
        .upload_chunks(&id)
        .map_err(|e| store_failure(&e))?
        .concat();
    if rules::content_id(&content) != id
        || u32::try_from(content.len()).ok() != Some(info.total_len)
    {
        tracing::warn!(content_id = %hex::encode(id), "upload does not hash to its id; discarded");
        node.store
            .upload_discard_chunks(&id)
            .map_err(|e| store_failure(&e))?;
        return Err(FileError::HashMismatch.notice());
    }
    node.store
        .upload_finish(&id, &content)
        .map_err(|e| store_failure(&e))?;
    tracing::info!(content_id = %hex::encode(id), bytes = content.len(), "upload complete");
    send_status(node, cx, id)
}
