//! `[node]`: where the state lives, which rules profile applies and the
//! node's id. Must never read anything but the parsed section.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Profile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) state_dir: PathBuf,
    pub(super) profile: Profile,
    #[serde(default)]
    pub(super) id: Option<String>,
}

/// `node.state_dir` must be absolute (checked first, before any other section).
pub(super) fn check_state_dir(raw: &RawNode) -> Result<(), ConfigError> {
    if !raw.state_dir.is_absolute() {
        return Err(ConfigError::invalid(
            "node.state_dir",
            "must be an absolute path",
        ));
    }
    Ok(())
}

/// `node.id`: 8 bytes in hex; required in the flight profile, all zeros in
/// development when absent.
pub(super) fn node_id(raw: &RawNode) -> Result<[u8; 8], ConfigError> {
    match (&raw.id, raw.profile) {
        (Some(id), _) => hex::decode(id.trim())
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| ConfigError::invalid("node.id", "expected 16 hex characters (8 bytes)")),
        (None, Profile::Development) => Ok([0; 8]),
        (None, Profile::Flight) => Err(ConfigError::invalid(
            "node.id",
            "required in the flight profile",
        )),
    }
}
