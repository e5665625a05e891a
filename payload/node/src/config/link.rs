//! `[link]` and `[[link.keys]]`: the serial device, its rate, the durable
//! sequence block and the link keys to provision. Must never hand key bytes
//! to anything but [`LinkKey`].

use std::path::PathBuf;

use serde::Deserialize;
use spacenode_wire::security::LinkKey;

use super::{ConfigError, Profile};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub(super) device: PathBuf,
    #[serde(default = "default_baud")]
    pub(super) baud: u32,
    pub(super) tx_key_id: u16,
    #[serde(default = "default_seq_block")]
    pub(super) seq_block: u64,
    #[serde(default)]
    pub(super) keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    id: u16,
    #[serde(default)]
    key: Option<String>,
}

fn default_baud() -> u32 {
    115_200
}
fn default_seq_block() -> u64 {
    1024
}

/// Baud rates the PL011 UART and common USB bridges support.
pub const BAUD_RATES: &[u32] = &[
    9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
];

/// A link key from the configuration.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Key id.
    pub id: u16,
    /// Key material to provision: sealed into the key store at start, after
    /// which the config should carry the id alone. `None`: the key is
    /// already sealed.
    pub key: Option<LinkKey>,
}

/// Link settings.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Serial device (a tty or pty).
    pub device: PathBuf,
    /// Baud rate.
    pub baud: u32,
    /// Key id for downlink unless a rekey chose another.
    pub tx_key_id: u16,
    /// Sequence numbers covered by one durable write.
    pub seq_block: u64,
    /// Keys available at start.
    pub keys: Vec<KeyConfig>,
}

/// Validates `[link]` and its keys.
pub(super) fn validate(raw: RawLink, profile: Profile) -> Result<LinkConfig, ConfigError> {
    if !BAUD_RATES.contains(&raw.baud) {
        return Err(ConfigError::invalid(
            "link.baud",
            format!(
                "{} is not a supported rate; use one of {BAUD_RATES:?}",
                raw.baud
            ),
        ));
    }
    if raw.seq_block == 0 || raw.seq_block > 1 << 20 {
        return Err(ConfigError::invalid(
            "link.seq_block",
            "must be between 1 and 1048576",
        ));
    }
    let mut keys = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let key = validate_key(i, k, &keys, profile)?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ConfigError::invalid(
            "link.keys",
            "at least one key is required",
        ));
    }
    if !keys.iter().any(|k| k.id == raw.tx_key_id) {
        return Err(ConfigError::invalid(
            "link.tx_key_id",
            format!("{} is not among link.keys", raw.tx_key_id),
        ));
    }
    Ok(LinkConfig {
        device: raw.device,
        baud: raw.baud,
        tx_key_id: raw.tx_key_id,
        seq_block: raw.seq_block,
        keys,
    })
}

/// `link.keys[i]`, checked against the keys before it.
fn validate_key(
    i: usize,
    k: &RawKey,
    earlier: &[KeyConfig],
    profile: Profile,
) -> Result<KeyConfig, ConfigError> {
    let key = format!("link.keys[{i}]");
    if k.id == 0 {
        return Err(ConfigError::invalid(
            format!("{key}.id"),
            "0 is reserved; use 1..=65535",
        ));
    }
    if earlier.iter().any(|x| x.id == k.id) {
        return Err(ConfigError::invalid(
            format!("{key}.id"),
            format!("duplicate key id {}", k.id),
        ));
    }
    let Some(hex_key) = &k.key else {
        return Ok(KeyConfig {
            id: k.id,
            key: None,
        });
    };
    let bytes = hex::decode(hex_key.trim())
        .map_err(|e| ConfigError::invalid(format!("{key}.key"), format!("not hex: {e}")))?;
    let material = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        ConfigError::invalid(
            format!("{key}.key"),
            format!(
                "expected 32 bytes (64 hex characters), got {} bytes",
                bytes.len()
            ),
        )
    })?;
    if material.iter().all(|b| *b == material[0]) && profile == Profile::Flight {
        return Err(ConfigError::invalid(
            format!("{key}.key"),
            "a constant key is refused in the flight profile",
        ));
    }
    // The same bytes under two ids would repeat AES-GCM nonces
    // across the ids (each id counts its own numbers from 1).
    if let Some(other) = earlier
        .iter()
        .find(|x| x.key.as_ref().is_some_and(|m| m.expose() == &material))
    {
        return Err(ConfigError::invalid(
            format!("{key}.key"),
            format!(
                "key ids {} and {} have the same key bytes; each id needs its own key",
                other.id, k.id
            ),
        ));
    }
    Ok(KeyConfig {
        id: k.id,
        key: Some(LinkKey::new(material)),
    })
}
