//! The policy anchor on the node (issue 13 item 5): reading and writing the
//! [`PolicyAnchor`] in the TPM NV index (or, with the development-only soft
//! key store, in the file `state_dir/policy.anchor`), and the start-up check
//! that closes the gap a crash can leave between the database and the
//! anchor.
//!
//! Order (the epoch rule's): an activation writes the database with the
//! next epoch, then advances the TPM counter, then writes the anchor. A
//! crash before the anchor write leaves the anchor one activation behind a
//! database that the epoch check accepts; the start-up check then writes
//! the anchor from the database. An anchor ahead of the database (or at its
//! version with another hash) is a rollback: safe mode.
//!
//! Must never: bootstrap from the config's `[admin]` set when an anchor
//! exists or cannot be read (fail closed), or move the anchor backwards.

use spacenode_keys::{KeyStore, Tpm};
use spacenode_policy::anchor::PolicyAnchor;
use spacenode_policy::change::PolicyState;

use super::Node;
use crate::config::{Config, KeysConfig};
use crate::health::mode::SafeReason;

/// Name of the soft store's anchor file in the state directory.
pub(super) const ANCHOR_FILE: &str = "policy.anchor";

/// Reason code when the store holding the anchor cannot be reached
/// (`KeyError::NvAnchor`'s).
const ANCHOR_UNAVAILABLE: u16 = 0x04A0;

/// The anchor, `None` if no policy was ever anchored on this node. `tpm`:
/// the node's TPM connection (TPM backend).
///
/// # Errors
/// `(reason code, detail)` when the anchor cannot be read or does not
/// decode; callers fail closed.
pub(super) fn read(
    cfg: &Config,
    tpm: Option<&mut Tpm>,
) -> Result<Option<PolicyAnchor>, (u16, String)> {
    let bytes = match &cfg.keys {
        KeysConfig::Soft { .. } => {
            let path = cfg.state_dir.join(ANCHOR_FILE);
            match std::fs::read(&path) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err((
                        ANCHOR_UNAVAILABLE,
                        format!("policy anchor {}: {e}", path.display()),
                    ));
                }
            }
        }
        KeysConfig::Tpm { .. } => match tpm {
            Some(tpm) => tpm.read_anchor().map_err(|e| (e.code(), e.to_string()))?,
            None => {
                return Err((
                    ANCHOR_UNAVAILABLE,
                    "the tpm holding the policy anchor is not reachable".into(),
                ));
            }
        },
    };
    bytes
        .map(|b| PolicyAnchor::decode(&b).map_err(|e| (e.code(), e.to_string())))
        .transpose()
}

/// Writes the anchor (TPM NV, or the soft store's file, atomically).
///
/// # Errors
/// `(reason code, detail)`.
pub(super) fn write(
    cfg: &Config,
    tpm: Option<&mut Tpm>,
    anchor: &PolicyAnchor,
) -> Result<(), (u16, String)> {
    let record = anchor.encode();
    let r = match &cfg.keys {
        KeysConfig::Soft { .. } => write_file_atomically(&cfg.state_dir, ANCHOR_FILE, &record)
            .map_err(|e| (ANCHOR_UNAVAILABLE, format!("policy anchor file: {e}"))),
        KeysConfig::Tpm { .. } => match tpm {
            Some(tpm) => tpm
                .write_anchor(&record)
                .map_err(|e| (e.code(), e.to_string())),
            None => Err((
                ANCHOR_UNAVAILABLE,
                "the tpm holding the policy anchor is not reachable".into(),
            )),
        },
    };
    match &r {
        Ok(()) => tracing::info!(
            version = anchor.version,
            hash = %hex::encode(anchor.hash),
            "policy anchored"
        ),
        Err((code, detail)) => tracing::error!(
            code,
            %detail,
            "the active policy could not be anchored; retried at the next start"
        ),
    }
    r
}

/// At start: with a database the epoch check accepted (`db_trusted`),
/// brings an anchor that is behind the database's active policy up to it
/// (the crash gap); an anchor ahead of it (or at its version with another
/// document) is a rollback. Without a policy in the database there is
/// nothing to compare: the anchor (if any) governs the next bootstrap.
pub(super) fn check_at_start(
    cfg: &Config,
    mut tpm: Option<&mut Tpm>,
    policy: Option<&PolicyState>,
    db_trusted: bool,
) -> Option<(SafeReason, String)> {
    let active = policy.map(PolicyAnchor::of)?;
    let anchored = match read(cfg, tpm.as_deref_mut()) {
        Ok(a) => a,
        Err((code, detail)) => {
            tracing::error!(code, %detail, "policy anchor unreadable at start");
            return None;
        }
    };
    match anchored {
        Some(a) if a.version > active.version => Some((
            SafeReason::RollbackDetected,
            format!(
                "the database's policy version {} is behind the anchored version {}",
                active.version, a.version
            ),
        )),
        Some(a) if a.version == active.version && a != active => Some((
            SafeReason::RollbackDetected,
            format!(
                "the database's policy version {} is not the anchored document",
                active.version
            ),
        )),
        Some(a) if a == active => None,
        _ if !db_trusted => None,
        previous => {
            tracing::warn!(
                anchored = previous.map(|a| a.version),
                version = active.version,
                "policy anchor behind the database (interrupted activation): catching up"
            );
            // A failure is logged by `write`; the next start retries.
            let _ = write(cfg, tpm, &active);
            None
        }
    }
}

impl Node {
    /// The anchor (see [`read`]).
    pub(crate) fn read_anchor(&mut self) -> Result<Option<PolicyAnchor>, (u16, String)> {
        let tpm = match self.tpm.as_mut() {
            Some(t) => Some(t),
            None => self.keys.as_mut().and_then(KeyStore::tpm),
        };
        read(&self.cfg, tpm)
    }

    /// Anchors the active policy after an activation (third step after the
    /// database and the counter). A failure is logged: the policy is in
    /// force (database and counter agree) and the start-up check writes
    /// the anchor the next time the node starts.
    pub(super) fn anchor_active_policy(&mut self) {
        let Some(anchor) = self.policy.as_ref().map(PolicyAnchor::of) else {
            return;
        };
        // Field by field (not `tpm_mut`): `cfg` is borrowed alongside.
        let tpm = match self.tpm.as_mut() {
            Some(t) => Some(t),
            None => self.keys.as_mut().and_then(KeyStore::tpm),
        };
        let _ = write(&self.cfg, tpm, &anchor);
    }
}

/// Temp file, fsync, rename, fsync the directory.
fn write_file_atomically(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soft_config(dir: &std::path::Path) -> Config {
        Config::parse(&format!(
            "[node]\nstate_dir = \"{}\"\nprofile = \"development\"\n\
             [link]\ndevice = \"/dev/ttyAMA0\"\ntx_key_id = 1\n[[link.keys]]\nid = 1\n\
             key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n",
            dir.display()
        ))
        .unwrap()
    }

    /// The soft store keeps the same anchor in `state_dir/policy.anchor`:
    /// absent until written, survives (it is not in the database), and a
    /// record that does not decode fails closed.
    #[test]
    fn soft_store_anchor_file_behaves_like_the_tpm_index() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = soft_config(dir.path());
        assert_eq!(read(&cfg, None).unwrap(), None);
        let a = PolicyAnchor {
            version: 4,
            hash: [3; 32],
            admins_digest: [5; 32],
        };
        write(&cfg, None, &a).unwrap();
        assert_eq!(read(&cfg, None).unwrap(), Some(a));
        std::fs::remove_file(dir.path().join("spacenode.db")).ok();
        assert_eq!(read(&cfg, None).unwrap(), Some(a));
        std::fs::write(dir.path().join(ANCHOR_FILE), b"garbage").unwrap();
        assert_eq!(read(&cfg, None).unwrap_err().0, 0x05F3);
    }
}
