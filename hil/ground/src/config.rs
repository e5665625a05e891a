//! Ground configuration (a TOML file the operator writes) and ground state
//! (a JSON file the tool maintains: sequence reservations, the next TC
//! sequence count, keys installed by rekey).
//!
//! Like the node, the ground never reuses an uplink sequence number and
//! never re-accepts a downlink one: it reserves numbers in blocks and makes
//! each reservation durable (write, fsync, rename) before using it.
//!
//! The state file is the only record of the numbers used: a missing one is
//! an error ([`ConfigError::StateMissing`]), never an empty state, because
//! restarting the uplink counter at 1 under the same key reuses AES-GCM
//! nonces. A state is created only by [`GroundState::provision`] (a key no
//! node has used yet) or by `ground --init`, which asks the node for its
//! receive bound first (`Link::init`).
//!
//! This module must never print or log key material.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spacenode_wire::security::LinkKey;

/// Errors loading or saving ground files.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Cannot read or write a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The ground state file does not exist. Starting without it would
    /// restart the uplink counter at 1 and reuse AES-GCM nonces.
    #[error(
        "ground state file {path} does not exist: without it the uplink sequence numbers would \
         restart at 1 and reuse AES-GCM nonces under the same key. If it was lost, run the \
         command once with --init: the ground then asks the node for its receive bound and \
         starts above it (restore a backup only if it is the latest state)"
    )]
    StateMissing {
        /// The state file named in (or implied by) the config.
        path: PathBuf,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_source")]
    source_id: u16,
    tx_key_id: u16,
    #[serde(default)]
    state_file: Option<PathBuf>,
    #[serde(default)]
    port: Option<String>,
    #[serde(default)]
    baud: Option<u32>,
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: u16,
    key: String,
}

fn default_source() -> u16 {
    1
}

/// The ground station's configuration.
#[derive(Debug, Clone)]
pub struct GroundConfig {
    /// PUS source id of this ground station.
    pub source_id: u16,
    /// Uplink key id unless a rekey chose another.
    pub tx_key_id: u16,
    /// Where the state lives.
    pub state_file: PathBuf,
    /// Default serial port.
    pub port: Option<String>,
    /// Default baud rate.
    pub baud: Option<u32>,
    /// Configured keys.
    pub keys: Vec<(u16, LinkKey)>,
}

fn parse_key(field: &str, hex_key: &str) -> Result<LinkKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| format!("`{field}`: not hex: {e}"))?;
    let arr = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "`{field}`: expected 32 bytes (64 hex characters), got {}",
            bytes.len()
        )
    })?;
    Ok(LinkKey::new(arr))
}

impl GroundConfig {
    /// Loads and validates a ground config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut keys = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            if keys.iter().any(|(id, _)| *id == k.id) {
                return Err(invalid(format!(
                    "`keys[{i}].id`: duplicate key id {}",
                    k.id
                )));
            }
            keys.push((
                k.id,
                parse_key(&format!("keys[{i}].key"), &k.key).map_err(invalid)?,
            ));
        }
        if !keys.iter().any(|(id, _)| *id == raw.tx_key_id) {
            return Err(invalid(format!(
                "`tx_key_id`: {} is not among keys",
                raw.tx_key_id
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let state_file = match raw.state_file {
            Some(p) if p.is_absolute() => p,
            Some(p) => base.join(p),
            None => path.with_extension("state.json"),
        };
        Ok(Self {
            source_id: raw.source_id,
            tx_key_id: raw.tx_key_id,
            state_file,
            port: raw.port,
            baud: raw.baud,
            keys,
        })
    }

    /// Renders a config file for the given keys (used by the demo and
    /// tests to write matching node and ground configs).
    #[must_use]
    pub fn render(
        source_id: u16,
        tx_key_id: u16,
        keys: &[(u16, [u8; 32])],
        state_file: &Path,
    ) -> String {
        let mut s = format!(
            "source_id = {source_id}\ntx_key_id = {tx_key_id}\nstate_file = \"{}\"\n",
            state_file.display()
        );
        for (id, key) in keys {
            s.push_str(&format!(
                "\n[[keys]]\nid = {id}\nkey = \"{}\"\n",
                hex::encode(key)
            ));
        }
        s
    }
}

/// Sequence state of one key.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeySeq {
    /// Uplink numbers below this may be used without another write.
    pub tx_reserved_until: u64,
    /// Every downlink number accepted so far is below this.
    pub rx_reserved_until: u64,
}

/// A key installed by rekey.
#[derive(Clone, Serialize, Deserialize)]
pub struct InstalledKey {
    /// Key id.
    pub id: u16,
    /// Hex key material.
    pub key: String,
}

impl core::fmt::Debug for InstalledKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InstalledKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The persisted ground state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundState {
    /// Next PUS TC sequence count.
    #[serde(default)]
    pub next_tc_seq: u16,
    /// Uplink key chosen by the last rekey.
    #[serde(default)]
    pub tx_key_id: Option<u16>,
    /// Keys installed by rekey.
    #[serde(default)]
    pub installed_keys: Vec<InstalledKey>,
    /// Keys no longer used.
    #[serde(default)]
    pub retired_keys: Vec<u16>,
    /// Sequence state per key id.
    #[serde(default)]
    pub seq: BTreeMap<u16, KeySeq>,
}

impl GroundState {
    /// Loads the state.
    ///
    /// # Errors
    /// [`ConfigError::StateMissing`] if the file does not exist (see the
    /// module docs), else [`ConfigError`] if it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::StateMissing {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Creates the empty state of a key that no node has used yet (the
    /// provisioning step that writes a node's and a ground's key together:
    /// tests, the demo image). Refuses to overwrite an existing file. For a
    /// key already in use, `ground --init` is the only way to a new state.
    ///
    /// # Errors
    /// [`ConfigError::Io`], also if the file exists.
    pub fn provision(path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(io)?;
            f.write_all(b"{}\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        Ok(())
    }

    /// Writes the state durably: temp file, fsync, rename, fsync directory.
    ///
    /// # Errors
    /// [`ConfigError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&json).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// Keys in use: configured ones plus installed ones, less retired ones.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if an installed key is malformed.
    pub fn keyring(
        &self,
        cfg: &GroundConfig,
        state_path: &Path,
    ) -> Result<Vec<(u16, LinkKey)>, ConfigError> {
        let mut keys: Vec<(u16, LinkKey)> = cfg
            .keys
            .iter()
            .filter(|(id, _)| !self.retired_keys.contains(id))
            .cloned()
            .collect();
        for (i, k) in self.installed_keys.iter().enumerate() {
            let key =
                parse_key(&format!("installed_keys[{i}].key"), &k.key).map_err(|message| {
                    ConfigError::Invalid {
                        path: state_path.to_path_buf(),
                        message,
                    }
                })?;
            keys.retain(|(id, _)| *id != k.id);
            if !self.retired_keys.contains(&k.id) {
                keys.push((k.id, key));
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ground.toml");
        std::fs::write(
            &path,
            GroundConfig::render(7, 2, &[(2, [9; 32])], Path::new("st.json")),
        )
        .unwrap();
        let cfg = GroundConfig::load(&path).unwrap();
        assert_eq!(cfg.source_id, 7);
        assert_eq!(cfg.state_file, dir.path().join("st.json"));
        assert_eq!(cfg.keys[0].1.expose(), &[9; 32]);
    }

    #[test]
    fn bad_key_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ground.toml");
        std::fs::write(&path, "tx_key_id = 1\n[[keys]]\nid = 1\nkey = \"abcd\"\n").unwrap();
        let err = GroundConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("keys[0].key"), "{err}");
    }

    #[test]
    fn state_saves_atomically_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = GroundState {
            next_tc_seq: 42,
            ..Default::default()
        };
        s.seq.insert(
            1,
            KeySeq {
                tx_reserved_until: 100,
                rx_reserved_until: 7,
            },
        );
        s.save(&path).unwrap();
        let back = GroundState::load(&path).unwrap();
        assert_eq!(back.next_tc_seq, 42);
        assert_eq!(back.seq[&1].tx_reserved_until, 100);
    }

    /// A missing state file is an error naming the file and `--init`,
    /// never an empty state (that would restart the uplink counter at 1).
    #[test]
    fn a_missing_state_file_is_refused_not_replaced_by_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let err = GroundState::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::StateMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("--init"),
            "{msg}"
        );
        GroundState::provision(&path).unwrap();
        assert_eq!(GroundState::load(&path).unwrap().next_tc_seq, 0);
        // Provisioning never overwrites a state in use.
        assert!(GroundState::provision(&path).is_err());
    }
}
