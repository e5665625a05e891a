//! `[keys]`: key custody (TPM or the development soft store), the network
//! kind of exported keys and the PCRs the seed is sealed to. Must never open
//! a TPM or a seed file itself.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Profile};

/// Key custody backend (`keys.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyBackendKind {
    /// TPM 2.0 (flight).
    Tpm,
    /// A seed file (development only).
    Soft,
}

/// Network kind of exported keys (`keys.network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyNetwork {
    /// xpub/xprv versions of mainnet.
    Main,
    /// tpub versions (testnets, signet, regtest).
    #[default]
    Test,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    #[serde(default)]
    pub(super) backend: Option<KeyBackendKind>,
    #[serde(default)]
    pub(super) tcti: Option<String>,
    #[serde(default)]
    pub(super) seal_auth: Option<String>,
    #[serde(default)]
    pub(super) soft_seed_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) network: KeyNetwork,
    #[serde(default)]
    pub(super) software_pcr: Option<u8>,
    #[serde(default)]
    pub(super) seal_pcrs: Option<Vec<u8>>,
}

/// Key custody settings.
#[derive(Debug, Clone)]
pub enum KeysConfig {
    /// TPM 2.0.
    Tpm {
        /// TCTI (`device:/dev/tpmrm0` or `swtpm:host=..,port=..`).
        tcti: String,
        /// Auth value of sealed objects.
        seal_auth: Vec<u8>,
        /// PCR the daemon measures itself into (16 or 23).
        software_pcr: u8,
        /// PCRs (SHA-256 bank, ascending) the seed is sealed to and quotes
        /// cover: the measured-boot PCRs plus `software_pcr`.
        seal_pcrs: Vec<u8>,
    },
    /// Seed file (development only).
    Soft {
        /// The seed file.
        seed_file: PathBuf,
    },
}

pub(super) fn validate_keys(
    raw: &RawKeys,
    profile: Profile,
    state_dir: &Path,
) -> Result<KeysConfig, ConfigError> {
    let backend = match (raw.backend, profile) {
        (Some(b), _) => b,
        (None, Profile::Development) => KeyBackendKind::Soft,
        (None, Profile::Flight) => {
            return Err(ConfigError::invalid(
                "keys.backend",
                "required in the flight profile (tpm)",
            ));
        }
    };
    match backend {
        KeyBackendKind::Soft => {
            if profile == Profile::Flight {
                return Err(ConfigError::invalid(
                    "keys.backend",
                    "the soft key store is for development only; the flight profile needs tpm",
                ));
            }
            if raw.tcti.is_some()
                || raw.seal_auth.is_some()
                || raw.software_pcr.is_some()
                || raw.seal_pcrs.is_some()
            {
                return Err(ConfigError::invalid(
                    "keys",
                    "tcti, seal_auth, software_pcr and seal_pcrs apply to the tpm backend only",
                ));
            }
            let seed_file = raw
                .soft_seed_file
                .clone()
                .unwrap_or_else(|| state_dir.join("dev-seed"));
            if !seed_file.is_absolute() {
                return Err(ConfigError::invalid(
                    "keys.soft_seed_file",
                    "must be an absolute path",
                ));
            }
            Ok(KeysConfig::Soft { seed_file })
        }
        KeyBackendKind::Tpm => {
            if raw.soft_seed_file.is_some() {
                return Err(ConfigError::invalid(
                    "keys.soft_seed_file",
                    "applies to the soft backend only",
                ));
            }
            let tcti = raw
                .tcti
                .clone()
                .unwrap_or_else(|| "device:/dev/tpmrm0".to_string());
            spacenode_keys::tpm::parse_tcti(&tcti)
                .map_err(|e| ConfigError::invalid("keys.tcti", e.to_string()))?;
            if profile == Profile::Flight && !tcti.starts_with("device:") {
                return Err(ConfigError::invalid(
                    "keys.tcti",
                    "the flight profile needs a device: tcti",
                ));
            }
            let seal_auth = match &raw.seal_auth {
                Some(h) => hex::decode(h.trim())
                    .map_err(|e| ConfigError::invalid("keys.seal_auth", format!("not hex: {e}")))?,
                None if profile == Profile::Flight => {
                    return Err(ConfigError::invalid(
                        "keys.seal_auth",
                        "required in the flight profile",
                    ));
                }
                None => Vec::new(),
            };
            if seal_auth.len() > 32 {
                return Err(ConfigError::invalid("keys.seal_auth", "at most 32 bytes"));
            }
            // The sealed objects are not DA-protected (power cuts would lock
            // them away), so the TPM does not rate-limit guesses: the value
            // must be too long to guess.
            if profile == Profile::Flight && seal_auth.len() < 16 {
                return Err(ConfigError::invalid(
                    "keys.seal_auth",
                    "at least 16 random bytes in the flight profile (the TPM does not rate-limit it)",
                ));
            }
            let software_pcr = raw.software_pcr.unwrap_or(23);
            if software_pcr != 16 && software_pcr != 23 {
                return Err(ConfigError::invalid(
                    "keys.software_pcr",
                    "16 or 23 (resettable at locality 0)",
                ));
            }
            let seal_pcrs = seal_pcrs(raw.seal_pcrs.as_deref(), software_pcr, profile)?;
            Ok(KeysConfig::Tpm {
                tcti,
                seal_auth,
                software_pcr,
                seal_pcrs,
            })
        }
    }
}

/// Boot PCRs the flight profile seals the seed to unless `keys.seal_pcrs`
/// says otherwise (TCG PC Client profile, as U-Boot's EFI loader with
/// `CONFIG_EFI_TCG2_PROTOCOL` measures: 0 firmware and device tree, 2
/// further firmware code, 4 the kernel EFI image, 7 the secure-boot state);
/// see `payload/keys/README.md` "Measured boot hook".
pub const FLIGHT_BOOT_PCRS: [u8; 4] = [0, 2, 4, 7];

/// `keys.seal_pcrs`: ascending, no duplicates, the software PCR included,
/// every other entry a boot PCR (0..=15: reset only by a reboot; 16 and
/// 23 are resettable by any process at locality 0, 17..=22 belong to
/// dynamic launch). Default: the software PCR alone in development, the
/// flight boot PCRs plus it in flight.
fn seal_pcrs(
    raw: Option<&[u8]>,
    software_pcr: u8,
    profile: Profile,
) -> Result<Vec<u8>, ConfigError> {
    let pcrs = match raw {
        Some(p) => p.to_vec(),
        None if profile == Profile::Flight => {
            let mut p = FLIGHT_BOOT_PCRS.to_vec();
            p.push(software_pcr);
            p
        }
        None => vec![software_pcr],
    };
    let bad = |why: String| Err(ConfigError::invalid("keys.seal_pcrs", why));
    if !pcrs.windows(2).all(|w| w[0] < w[1]) {
        return bad("must be strictly ascending (no duplicates)".into());
    }
    if !pcrs.contains(&software_pcr) {
        return bad(format!("must contain the software pcr {software_pcr}"));
    }
    if let Some(p) = pcrs.iter().find(|p| **p != software_pcr && **p > 15) {
        return bad(format!(
            "pcr {p} is not a boot pcr (0..=15); only the software pcr may be resettable"
        ));
    }
    Ok(pcrs)
}
