//! The administrators the runner may act as: the node id their commands
//! name and their key files, in the order of the node's `[admin]` keys
//! (signer index = position). `tests/vm/build-image.sh` writes this file
//! (`admin.toml`) beside the virtual board's image, with keys made by
//! `ground admin keygen`; a bench gives its own with `hil-run --admins`.
//!
//! ```toml
//! node_id = "0102030405060708"
//! threshold = 2
//! keys = ["admin/admin-0.json", "admin/admin-1.json"]   # relative to this file
//! ```
//!
//! Commands are built and signed exactly as administrators do it with
//! `ground admin command` and `ground admin sign` ([`spacenode_ground::admin`]).
//! This module must never print or log a secret key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::secp256k1::{Keypair, XOnlyPublicKey};
use serde::Deserialize;
use spacenode_policy::command::{SignedCommand, kind};

use spacenode_ground::admin::{self, AdminError};

/// A command's validity starts this long before the ground's clock, as
/// `ground admin command` does: the node's clock may lag.
const VALID_FROM_BACK: Duration = Duration::from_secs(60);

/// Why the administrators could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum AdminsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A key file or a command failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A scenario named an administrator the file does not have.
    #[error("no administrator {signer}: {count} are known")]
    UnknownSigner {
        /// The index asked for.
        signer: u8,
        /// How many keys there are.
        count: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminsFile {
    node_id: String,
    threshold: usize,
    keys: Vec<PathBuf>,
}

/// The administrators' keys and the node they command.
#[derive(Clone)]
pub struct Admins {
    node_id: [u8; 8],
    threshold: usize,
    keys: Vec<Keypair>,
}

impl core::fmt::Debug for Admins {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Admins")
            .field("node_id", &hex::encode(self.node_id))
            .field("threshold", &self.threshold)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Admins {
    /// Loads `path` and the key files it names.
    ///
    /// # Errors
    /// [`AdminsError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, AdminsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AdminsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| AdminsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: AdminsFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let node_id = hex::decode(file.node_id.trim())
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| invalid("`node_id` must be 16 hex characters".into()))?;
        if file.keys.is_empty() || file.keys.len() > 255 {
            return Err(invalid("`keys` must list 1 to 255 key files".into()));
        }
        if file.threshold == 0 || file.threshold > file.keys.len() {
            return Err(invalid(format!(
                "`threshold` must be between 1 and {}",
                file.keys.len()
            )));
        }
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let keys = file
            .keys
            .iter()
            .map(|k| admin::load_key(&base.join(k)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            node_id,
            threshold: file.threshold,
            keys,
        })
    }

    /// The node id the commands name (`node.id` of the node).
    #[must_use]
    pub fn node_id(&self) -> [u8; 8] {
        self.node_id
    }

    /// How many administrators must sign.
    #[must_use]
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// How many administrators there are.
    #[must_use]
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// The administrators' x-only public keys, in signer order (as in the
    /// node's `[admin]` set).
    #[must_use]
    pub fn xonly_keys(&self) -> Vec<XOnlyPublicKey> {
        self.keys.iter().map(|k| k.x_only_public_key().0).collect()
    }

    /// The key of administrator `signer`, to sign a document or command
    /// with (never to print).
    ///
    /// # Errors
    /// [`AdminsError::UnknownSigner`].
    pub fn key(&self, signer: u8) -> Result<&Keypair, AdminsError> {
        self.keys
            .get(usize::from(signer))
            .ok_or(AdminsError::UnknownSigner {
                signer,
                count: self.keys.len(),
            })
    }

    /// An `exit-safe-mode` command with sequence number `seq`, valid from a
    /// minute before `now_ms` (UNIX ms) for `valid_for`, signed by
    /// `signers` (indices into the keys).
    ///
    /// # Errors
    /// [`AdminsError::UnknownSigner`], or a signing failure.
    pub fn exit_safe_mode(
        &self,
        seq: u64,
        signers: &[u8],
        now_ms: i64,
        valid_for: Duration,
    ) -> Result<SignedCommand, AdminsError> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut cmd = admin::build(
            kind::EXIT_SAFE_MODE,
            self.node_id,
            seq,
            now_ms.saturating_sub(ms(VALID_FROM_BACK)),
            now_ms.saturating_add(ms(valid_for)),
            Vec::new(),
        );
        for &signer in signers {
            let key = self
                .keys
                .get(usize::from(signer))
                .ok_or(AdminsError::UnknownSigner {
                    signer,
                    count: self.keys.len(),
                })?;
            admin::sign(&mut cmd, key, signer)?;
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::secp256k1::Secp256k1;
    use spacenode_policy::command::Executed;
    use spacenode_policy::quorum::AdminSet;

    use super::*;

    #[test]
    fn commands_are_signed_as_the_node_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("admin")).unwrap();
        let xonly: Vec<_> = (0..2)
            .map(|i| admin::keygen(&dir.path().join(format!("admin/a{i}.json"))).unwrap())
            .collect();
        let file = dir.path().join("admin.toml");
        std::fs::write(
            &file,
            "node_id = \"0102030405060708\"\nthreshold = 2\nkeys = [\"admin/a0.json\", \"admin/a1.json\"]\n",
        )
        .unwrap();
        let admins = Admins::load(&file).unwrap();
        assert_eq!((admins.count(), admins.threshold()), (2, 2));
        assert!(!format!("{admins:?}").contains("secret"));

        let set = AdminSet::new(xonly, 2).unwrap();
        let secp = Secp256k1::verification_only();
        let node = [1, 2, 3, 4, 5, 6, 7, 8];
        let now = 1_700_000_000_000;
        let both = admins
            .exit_safe_mode(1, &[0, 1], now, Duration::from_secs(600))
            .unwrap();
        let cmd = both
            .authorize(&secp, &set, node, Executed::default(), now)
            .unwrap();
        assert_eq!((cmd.kind, cmd.seq), (kind::EXIT_SAFE_MODE, 1));
        // One of two: quorum not met, the node's code 0x0501.
        let one = admins
            .exit_safe_mode(1, &[0], now, Duration::from_secs(600))
            .unwrap();
        let e = one
            .authorize(&secp, &set, node, Executed::default(), now)
            .unwrap_err();
        assert_eq!(e.code(), 0x0501, "{e}");
        // Replayed sequence number.
        let e = both
            .authorize(
                &secp,
                &set,
                node,
                Executed {
                    last_of_kind: 1,
                    highest: 1,
                },
                now,
            )
            .unwrap_err();
        assert_eq!(e.code(), 0x0522, "{e}");
        assert!(matches!(
            admins.exit_safe_mode(1, &[2], now, Duration::from_secs(1)),
            Err(AdminsError::UnknownSigner {
                signer: 2,
                count: 2
            })
        ));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.toml");
        for (text, needle) in [
            (
                "node_id = \"01\"\nthreshold = 1\nkeys = [\"a.json\"]\n",
                "`node_id`",
            ),
            (
                "node_id = \"0102030405060708\"\nthreshold = 2\nkeys = [\"a.json\"]\n",
                "`threshold`",
            ),
            (
                "node_id = \"0102030405060708\"\nthreshold = 1\nkeys = []\n",
                "`keys`",
            ),
            (
                "node_id = \"0102030405060708\"\nthreshold = 1\nkeys = [\"a.json\"]\nx = 1\n",
                "unknown field `x`",
            ),
            (
                "node_id = \"0102030405060708\"\nthreshold = 1\nkeys = [\"missing.json\"]\n",
                "missing.json",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = Admins::load(&file).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
