//! Resolution of payload references (inline, or a completed upload of the
//! files room, [`crate::service::files`]) for the rooms that carry
//! documents (policy, wallets, Safes, sign requests). Must never hand out
//! an incomplete upload.

use spacenode_wire::cosign::Payload;
use spacenode_wire::msg::FailureNotice;

use super::Node;
use crate::service::files::rules::FileError;
use crate::store::StoreError;

fn store_failure(e: &StoreError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

impl Node {
    /// The document a payload reference names.
    pub(crate) fn resolve_payload(&self, p: Payload) -> Result<Vec<u8>, FailureNotice> {
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
