//! `[admin]`: the administrator set that authorises commands until a
//! quorum-signed policy names its own. Must never verify a signature.

use serde::Deserialize;

use super::{ConfigError, Profile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) threshold: usize,
    pub(super) keys: Vec<String>,
}

pub(super) fn validate_admin(
    raw: &RawAdmin,
) -> Result<spacenode_policy::quorum::AdminSet, ConfigError> {
    let mut keys = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let key = hex::decode(k.trim())
            .ok()
            .and_then(|b| bitcoin::secp256k1::XOnlyPublicKey::from_slice(&b).ok())
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("admin.keys[{i}]"),
                    "expected a 32-byte x-only public key in hex",
                )
            })?;
        keys.push(key);
    }
    spacenode_policy::quorum::AdminSet::new(keys, raw.threshold)
        .map_err(|e| ConfigError::invalid("admin", e.to_string()))
}

/// `[admin]`: required in the flight profile.
pub(super) fn validate(
    raw: Option<&RawAdmin>,
    profile: Profile,
) -> Result<Option<spacenode_policy::quorum::AdminSet>, ConfigError> {
    match raw {
        Some(a) => validate_admin(a).map(Some),
        None if profile == Profile::Flight => Err(ConfigError::invalid(
            "admin",
            "an administrator set is required in the flight profile",
        )),
        None => Ok(None),
    }
}
