//! Bounded audit storage (issue 13 item 9): when the database holds more
//! than `telemetry.audit_keep_entries` plus one segment of audit entries,
//! the oldest `telemetry.audit_segment_entries` are written to an archive
//! file (`state_dir/audit-archive/<first>-<last>.bin`, records as
//! `len u32 BE | receipt 64 | entry`), the node's receipt key signs a
//! checkpoint `{last archived seq, its entry hash}`
//! (`spacenode_policy::audit::Checkpoint`), and the rows are dropped with
//! the checkpoint stored in the same transaction. The ground verifies the
//! kept log from the checkpoint (`ground audit verify`).
//!
//! Must never: drop a row before its archive file is on disk and the
//! checkpoint that vouches for it is signed, or archive without the seed
//! (no signature: the rows stay).

use std::io::Write;

use spacenode_keys::{SchnorrTweak, Signer};
use spacenode_policy::audit::{Checkpoint, ENTRY_TAG};
use spacenode_policy::quorum::tagged_hash;

use super::Node;
use crate::store::cosign::AuditRow;

/// Directory of the archived audit segments, under `state_dir`.
pub const ARCHIVE_DIR: &str = "audit-archive";

impl Node {
    /// Archives the oldest audit segment if the log outgrew its bound (see
    /// the module docs). Called after every committed decision; cheap when
    /// there is nothing to do (two indexed lookups).
    pub(super) fn archive_audit_if_due(&mut self) {
        let keep = u64::from(self.cfg.telemetry.audit_keep_entries);
        let segment = self.cfg.telemetry.audit_segment_entries;
        let (rows, first) = match self.store.audit_span() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit span");
                return;
            }
        };
        let Some(first) = first else { return };
        if rows <= keep.saturating_add(u64::from(segment)) {
            return;
        }
        if let Err(e) = self.archive_segment(first, segment) {
            tracing::error!(error = %e, "audit segment not archived; rows kept");
        }
    }

    fn archive_segment(&mut self, first: u64, segment: u16) -> Result<(), String> {
        let keys = self.keys.as_ref().ok_or("the seed is not available")?;
        let rows = self
            .store
            .audit_entries(first, segment)
            .map_err(|e| e.to_string())?;
        let last = rows.last().ok_or("no rows")?;
        let checkpoint = Checkpoint {
            end_seq: last.seq,
            chain_hash: tagged_hash(ENTRY_TAG, &last.entry),
        };
        let sig = Signer::sign_schnorr(
            keys,
            &spacenode_btc::signer::receipt_path(),
            &checkpoint.message(),
            SchnorrTweak::None,
        )
        .map_err(|e| e.to_string())?
        .serialize();
        write_archive(&self.cfg.state_dir, first, &rows).map_err(|e| e.to_string())?;
        self.store
            .prune_audit(checkpoint.end_seq, &checkpoint.chain_hash, &sig)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            first,
            last = checkpoint.end_seq,
            "audit segment archived behind a signed checkpoint"
        );
        Ok(())
    }
}

/// Writes one segment's records and syncs them to disk.
fn write_archive(
    state_dir: &std::path::Path,
    first: u64,
    rows: &[AuditRow],
) -> std::io::Result<()> {
    let dir = state_dir.join(ARCHIVE_DIR);
    std::fs::create_dir_all(&dir)?;
    let last = rows.last().map_or(first, |r| r.seq);
    let mut f = std::fs::File::create(dir.join(format!("{first:020}-{last:020}.bin")))?;
    for r in rows {
        let len = u32::try_from(64usize.saturating_add(r.entry.len())).unwrap_or(u32::MAX);
        f.write_all(&len.to_be_bytes())?;
        f.write_all(&r.receipt)?;
        f.write_all(&r.entry)?;
    }
    f.sync_all()
}
