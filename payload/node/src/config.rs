//! The daemon's configuration: one TOML file, parsed into typed values and
//! validated once at load. Unknown keys are errors, and every error names the
//! key and the problem. The running daemon only ever sees [`Config`].
//!
//! This module must never read anything but the config file, and never hold
//! defaults that differ from what `docs/config.md` says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spacenode_chain::state::{DEFAULT_WINDOW, MIN_WINDOW};
use spacenode_chain::{ChainConfig, Checkpoint};
use spacenode_wire::security::LinkKey;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// The parser's message, naming the key and position.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// Dotted key path, e.g. `link.keys[1].key`.
        key: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Which rules apply: `flight` refuses development conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// On the spacecraft.
    Flight,
    /// On a bench or laptop.
    Development,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    link: RawLink,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    chain: RawChain,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    state_dir: PathBuf,
    profile: Profile,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    device: PathBuf,
    #[serde(default = "default_baud")]
    baud: u32,
    tx_key_id: u16,
    #[serde(default = "default_seq_block")]
    seq_block: u64,
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: u16,
    #[serde(default)]
    key: Option<String>,
}

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
struct RawKeys {
    #[serde(default)]
    backend: Option<KeyBackendKind>,
    #[serde(default)]
    tcti: Option<String>,
    #[serde(default)]
    seal_auth: Option<String>,
    #[serde(default)]
    soft_seed_file: Option<PathBuf>,
    #[serde(default)]
    network: KeyNetwork,
    #[serde(default)]
    software_pcr: Option<u8>,
    #[serde(default)]
    seal_pcrs: Option<Vec<u8>>,
}

/// Which watchdog the supervisor pets (`health.watchdog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogKind {
    /// systemd's if `WATCHDOG_USEC` is set, else none.
    #[default]
    Auto,
    /// systemd's service watchdog (sd_notify).
    Systemd,
    /// `/dev/watchdog` directly.
    Device,
    /// None (development).
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default)]
    watchdog: WatchdogKind,
    #[serde(default = "default_wdt_device")]
    watchdog_device: PathBuf,
    #[serde(default = "default_wdt_timeout")]
    watchdog_timeout_s: u32,
    #[serde(default = "default_task_deadline")]
    task_deadline_s: u32,
    #[serde(default = "default_boot_loop_starts")]
    boot_loop_starts: u32,
    #[serde(default = "default_boot_loop_window")]
    boot_loop_window_s: u32,
    #[serde(default = "default_auth_burst")]
    auth_failure_burst: u32,
    #[serde(default = "default_burst_window")]
    burst_window_s: u32,
    #[serde(default = "default_refusal_burst")]
    refusal_burst: u32,
    #[serde(default = "default_forged_safe_lapse")]
    forged_safe_lapse_s: u32,
    #[serde(default)]
    contact_timeout_s: u64,
    #[serde(default = "default_safe_free")]
    safe_free_bytes: u64,
    #[serde(default = "default_beacon")]
    beacon_interval_s: u32,
    #[serde(default)]
    test_hooks: bool,
}

impl Default for RawHealth {
    fn default() -> Self {
        Self {
            watchdog: WatchdogKind::default(),
            watchdog_device: default_wdt_device(),
            watchdog_timeout_s: default_wdt_timeout(),
            task_deadline_s: default_task_deadline(),
            boot_loop_starts: default_boot_loop_starts(),
            boot_loop_window_s: default_boot_loop_window(),
            auth_failure_burst: default_auth_burst(),
            burst_window_s: default_burst_window(),
            refusal_burst: default_refusal_burst(),
            forged_safe_lapse_s: default_forged_safe_lapse(),
            contact_timeout_s: 0,
            safe_free_bytes: default_safe_free(),
            beacon_interval_s: default_beacon(),
            test_hooks: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    threshold: usize,
    keys: Vec<String>,
}

fn default_wdt_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}
fn default_wdt_timeout() -> u32 {
    15
}
fn default_task_deadline() -> u32 {
    5
}
fn default_boot_loop_starts() -> u32 {
    5
}
fn default_boot_loop_window() -> u32 {
    600
}
fn default_auth_burst() -> u32 {
    100
}
fn default_burst_window() -> u32 {
    300
}
fn default_refusal_burst() -> u32 {
    20
}
fn default_forged_safe_lapse() -> u32 {
    900
}
fn default_safe_free() -> u64 {
    4 * 1024 * 1024
}
fn default_beacon() -> u32 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    #[serde(default = "default_hk_interval")]
    hk_interval_s: u32,
    #[serde(default = "default_event_interval")]
    event_min_interval_ms: u32,
    #[serde(default = "default_storage_warn")]
    storage_warn_free_bytes: u64,
    #[serde(default = "default_thermal")]
    thermal_zone: PathBuf,
    #[serde(default = "default_audit_keep")]
    audit_keep_entries: u32,
    #[serde(default = "default_audit_segment")]
    audit_segment_entries: u16,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            hk_interval_s: default_hk_interval(),
            event_min_interval_ms: default_event_interval(),
            storage_warn_free_bytes: default_storage_warn(),
            thermal_zone: default_thermal(),
            audit_keep_entries: default_audit_keep(),
            audit_segment_entries: default_audit_segment(),
        }
    }
}

/// Bitcoin network the header chain follows (`chain.network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChainNetwork {
    /// Bitcoin mainnet.
    #[default]
    Mainnet,
    /// Testnet4 (BIP94).
    Testnet4,
    /// Signet (validated header-only: see `payload/chain/README.md`).
    Signet,
    /// Regtest (development only).
    Regtest,
}

impl ChainNetwork {
    /// The `bitcoin` crate's network.
    #[must_use]
    pub fn network(self) -> bitcoin::Network {
        match self {
            Self::Mainnet => bitcoin::Network::Bitcoin,
            Self::Testnet4 => bitcoin::Network::Testnet4,
            Self::Signet => bitcoin::Network::Signet,
            Self::Regtest => bitcoin::Network::Regtest,
        }
    }
}

/// Trust anchor of a fresh header chain (`chain.start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChainStart {
    /// The compiled-in checkpoint of the network (mainnet block 830592,
    /// genesis elsewhere).
    #[default]
    Checkpoint,
    /// The genesis block: always a safe anchor, costs more uplink.
    Genesis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    #[serde(default)]
    network: ChainNetwork,
    #[serde(default = "default_window")]
    window: u32,
    #[serde(default)]
    start: ChainStart,
}

impl Default for RawChain {
    fn default() -> Self {
        Self {
            network: ChainNetwork::default(),
            window: default_window(),
            start: ChainStart::default(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default)]
    level: Option<String>,
}

fn default_baud() -> u32 {
    115_200
}
fn default_seq_block() -> u64 {
    1024
}
fn default_hk_interval() -> u32 {
    30
}
fn default_event_interval() -> u32 {
    1000
}
fn default_audit_keep() -> u32 {
    50_000
}
fn default_audit_segment() -> u16 {
    10_000
}
fn default_storage_warn() -> u64 {
    16 * 1024 * 1024
}
fn default_window() -> u32 {
    DEFAULT_WINDOW
}
fn default_thermal() -> PathBuf {
    PathBuf::from("/sys/class/thermal/thermal_zone0/temp")
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

/// Health settings (see `docs/health.md`).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Watchdog backend.
    pub watchdog: WatchdogKind,
    /// Device for [`WatchdogKind::Device`].
    pub watchdog_device: PathBuf,
    /// Timeout set on the device.
    pub watchdog_timeout: Duration,
    /// A task silent for longer is stuck.
    pub task_deadline: Duration,
    /// Starts allowed within `boot_loop_window` before safe mode.
    pub boot_loop_starts: u32,
    /// Window of the boot-loop rule.
    pub boot_loop_window: Duration,
    /// Authentication failures within `burst_window` that mean probing
    /// (0: off).
    pub auth_failure_burst: u32,
    /// Window of the burst rules.
    pub burst_window: Duration,
    /// Policy refusals of sign requests within `burst_window` that mean
    /// probing (0: off).
    pub refusal_burst: u32,
    /// A forged-packet safe mode (0x0807) lapses after this long without
    /// a new authentication failure (`docs/health.md`).
    pub forged_safe_lapse: Duration,
    /// Loss of contact after this long without an authenticated command
    /// (zero: off).
    pub contact_timeout: Duration,
    /// Safe mode below this many free bytes.
    pub safe_free_bytes: u64,
    /// Beacon interval in safe mode.
    pub beacon_interval: Duration,
    /// Test hooks (`health.test-hang`), development profile only.
    pub test_hooks: bool,
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

/// Telemetry settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Seconds between periodic housekeeping reports (0: on request only).
    pub hk_interval_s: u32,
    /// Minimum interval between two anomaly events of the same kind.
    pub event_min_interval_ms: u32,
    /// Free bytes below which storage is reported low.
    pub storage_warn_free_bytes: u64,
    /// File with the CPU temperature in milli-degrees, if present.
    pub thermal_zone: PathBuf,
    /// Audit entries kept in the database; beyond this plus one segment,
    /// the oldest segment is archived behind a signed checkpoint.
    pub audit_keep_entries: u32,
    /// Entries per archived audit segment (at least 1).
    pub audit_segment_entries: u16,
}

/// Largest accepted `chain.window`: four difficulty periods. Memory and
/// disk of the chain grow with the window (about 150 bytes a header in each),
/// never with the height.
pub const MAX_CHAIN_WINDOW: u32 = 4 * 2016;

/// Header-chain settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSettings {
    /// Network followed.
    pub network: ChainNetwork,
    /// Headers kept (reorgs up to `window - 1` deep are followed).
    pub window: u32,
    /// Anchor of a fresh chain; ignored once a chain is stored.
    pub start: ChainStart,
}

impl ChainSettings {
    /// The chain crate's configuration.
    #[must_use]
    pub fn chain_config(&self) -> ChainConfig {
        ChainConfig {
            network: self.network.network(),
            window: self.window,
        }
    }

    /// The trust anchor a fresh chain starts from.
    #[must_use]
    pub fn anchor(&self) -> Checkpoint {
        let network = self.network.network();
        match self.start {
            ChainStart::Checkpoint => Checkpoint::default_for(network),
            ChainStart::Genesis => Checkpoint::genesis(network),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the database.
    pub state_dir: PathBuf,
    /// Rules profile.
    pub profile: Profile,
    /// Link.
    pub link: LinkConfig,
    /// Telemetry.
    pub telemetry: TelemetryConfig,
    /// Bitcoin header chain.
    pub chain: ChainSettings,
    /// Log filter (tracing `EnvFilter` syntax), if set.
    pub log_level: Option<String>,
    /// This node's id, named by administrator commands.
    pub node_id: [u8; 8],
    /// Key custody.
    pub keys: KeysConfig,
    /// Network kind of exported keys.
    pub key_network: KeyNetwork,
    /// Health.
    pub health: HealthConfig,
    /// Administrators (until a quorum-signed policy names them).
    pub admin: Option<spacenode_policy::quorum::AdminSet>,
    /// The digest of this configuration the TPM measurement binds (see
    /// [`measured_digest`]).
    pub source_sha256: [u8; 32],
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and the problem.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let mut cfg = Self::validate(raw)?;
        cfg.source_sha256 = measured_digest(text)?;
        Ok(cfg)
    }

    fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        if !raw.node.state_dir.is_absolute() {
            return Err(ConfigError::invalid(
                "node.state_dir",
                "must be an absolute path",
            ));
        }
        if !BAUD_RATES.contains(&raw.link.baud) {
            return Err(ConfigError::invalid(
                "link.baud",
                format!(
                    "{} is not a supported rate; use one of {BAUD_RATES:?}",
                    raw.link.baud
                ),
            ));
        }
        if raw.link.seq_block == 0 || raw.link.seq_block > 1 << 20 {
            return Err(ConfigError::invalid(
                "link.seq_block",
                "must be between 1 and 1048576",
            ));
        }
        let mut keys = Vec::new();
        for (i, k) in raw.link.keys.iter().enumerate() {
            let key = format!("link.keys[{i}]");
            if k.id == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    "0 is reserved; use 1..=65535",
                ));
            }
            if keys.iter().any(|x: &KeyConfig| x.id == k.id) {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    format!("duplicate key id {}", k.id),
                ));
            }
            let Some(hex_key) = &k.key else {
                keys.push(KeyConfig {
                    id: k.id,
                    key: None,
                });
                continue;
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
            if material.iter().all(|b| *b == material[0]) && raw.node.profile == Profile::Flight {
                return Err(ConfigError::invalid(
                    format!("{key}.key"),
                    "a constant key is refused in the flight profile",
                ));
            }
            // The same bytes under two ids would repeat AES-GCM nonces
            // across the ids (each id counts its own numbers from 1).
            if let Some(other) = keys
                .iter()
                .find(|x: &&KeyConfig| x.key.as_ref().is_some_and(|m| m.expose() == &material))
            {
                return Err(ConfigError::invalid(
                    format!("{key}.key"),
                    format!(
                        "key ids {} and {} have the same key bytes; each id needs its own key",
                        other.id, k.id
                    ),
                ));
            }
            keys.push(KeyConfig {
                id: k.id,
                key: Some(LinkKey::new(material)),
            });
        }
        if keys.is_empty() {
            return Err(ConfigError::invalid(
                "link.keys",
                "at least one key is required",
            ));
        }
        if !keys.iter().any(|k| k.id == raw.link.tx_key_id) {
            return Err(ConfigError::invalid(
                "link.tx_key_id",
                format!("{} is not among link.keys", raw.link.tx_key_id),
            ));
        }
        if !(MIN_WINDOW..=MAX_CHAIN_WINDOW).contains(&raw.chain.window) {
            return Err(ConfigError::invalid(
                "chain.window",
                format!(
                    "{} is outside {MIN_WINDOW}..={MAX_CHAIN_WINDOW} (default {DEFAULT_WINDOW}: \
                     one difficulty period plus one day)",
                    raw.chain.window
                ),
            ));
        }
        if raw.chain.network == ChainNetwork::Regtest && raw.node.profile == Profile::Flight {
            return Err(ConfigError::invalid(
                "chain.network",
                "regtest is refused in the flight profile (anyone can mine it)",
            ));
        }
        let node_id = match (&raw.node.id, raw.node.profile) {
            (Some(id), _) => hex::decode(id.trim())
                .ok()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    ConfigError::invalid("node.id", "expected 16 hex characters (8 bytes)")
                })?,
            (None, Profile::Development) => [0; 8],
            (None, Profile::Flight) => {
                return Err(ConfigError::invalid(
                    "node.id",
                    "required in the flight profile",
                ));
            }
        };
        let keys_cfg = validate_keys(&raw.keys, raw.node.profile, &raw.node.state_dir)?;
        let health = validate_health(&raw.health, raw.node.profile)?;
        let admin = match &raw.admin {
            Some(a) => Some(validate_admin(a)?),
            None if raw.node.profile == Profile::Flight => {
                return Err(ConfigError::invalid(
                    "admin",
                    "an administrator set is required in the flight profile",
                ));
            }
            None => None,
        };
        if let Some(level) = &raw.logging.level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| ConfigError::invalid("logging.level", e.to_string()))?;
        }
        Ok(Self {
            state_dir: raw.node.state_dir,
            profile: raw.node.profile,
            link: LinkConfig {
                device: raw.link.device,
                baud: raw.link.baud,
                tx_key_id: raw.link.tx_key_id,
                seq_block: raw.link.seq_block,
                keys,
            },
            telemetry: TelemetryConfig {
                hk_interval_s: raw.telemetry.hk_interval_s,
                event_min_interval_ms: raw.telemetry.event_min_interval_ms,
                storage_warn_free_bytes: raw.telemetry.storage_warn_free_bytes,
                thermal_zone: raw.telemetry.thermal_zone,
                audit_keep_entries: raw.telemetry.audit_keep_entries,
                audit_segment_entries: raw.telemetry.audit_segment_entries.max(1),
            },
            chain: ChainSettings {
                network: raw.chain.network,
                window: raw.chain.window,
                start: raw.chain.start,
            },
            log_level: raw.logging.level,
            node_id,
            keys: keys_cfg,
            key_network: raw.keys.network,
            health,
            admin,
            source_sha256: [0; 32],
        })
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use bitcoin::hashes::{Hash, sha256};
    sha256::Hash::hash(bytes).to_byte_array()
}

/// The digest of a configuration that the TPM measurement binds: SHA-256
/// of the parsed document re-serialised canonically (sorted keys), without
/// the link keys' provisioning material. Comments and formatting do not
/// count, every setting does; and sealing a link key, then deleting its
/// `key` from the file, leaves the measurement (and so the sealed seed)
/// unchanged.
///
/// # Errors
/// [`ConfigError::Parse`] if the text is not TOML.
pub fn measured_digest(text: &str) -> Result<[u8; 32], ConfigError> {
    let parse = |e: &dyn std::fmt::Display| ConfigError::Parse {
        path: PathBuf::new(),
        message: e.to_string(),
    };
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| parse(&e))?;
    if let Some(toml::Value::Table(link)) = doc.get_mut("link")
        && let Some(toml::Value::Array(keys)) = link.get_mut("keys")
    {
        for k in keys.iter_mut() {
            if let toml::Value::Table(t) = k {
                t.remove("key");
            }
        }
    }
    let canonical = toml::to_string(&doc).map_err(|e| parse(&e))?;
    Ok(sha256(canonical.as_bytes()))
}

fn validate_keys(
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

fn validate_health(raw: &RawHealth, profile: Profile) -> Result<HealthConfig, ConfigError> {
    if raw.test_hooks && profile == Profile::Flight {
        return Err(ConfigError::invalid(
            "health.test_hooks",
            "refused in the flight profile",
        ));
    }
    if raw.watchdog == WatchdogKind::None && profile == Profile::Flight {
        return Err(ConfigError::invalid(
            "health.watchdog",
            "the flight profile needs a watchdog",
        ));
    }
    if raw.task_deadline_s == 0 || raw.watchdog_timeout_s == 0 {
        return Err(ConfigError::invalid(
            "health",
            "task_deadline_s and watchdog_timeout_s must be positive",
        ));
    }
    if raw.boot_loop_starts == 0 {
        return Err(ConfigError::invalid(
            "health.boot_loop_starts",
            "must be at least 1",
        ));
    }
    if raw.forged_safe_lapse_s == 0 {
        return Err(ConfigError::invalid(
            "health.forged_safe_lapse_s",
            "must be positive: forged packets alone must not need the quorum",
        ));
    }
    if raw.beacon_interval_s == 0 {
        return Err(ConfigError::invalid(
            "health.beacon_interval_s",
            "must be positive",
        ));
    }
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    Ok(HealthConfig {
        watchdog: raw.watchdog,
        watchdog_device: raw.watchdog_device.clone(),
        watchdog_timeout: secs(raw.watchdog_timeout_s),
        task_deadline: secs(raw.task_deadline_s),
        boot_loop_starts: raw.boot_loop_starts,
        boot_loop_window: secs(raw.boot_loop_window_s),
        auth_failure_burst: raw.auth_failure_burst,
        burst_window: secs(raw.burst_window_s),
        refusal_burst: raw.refusal_burst,
        forged_safe_lapse: secs(raw.forged_safe_lapse_s),
        contact_timeout: Duration::from_secs(raw.contact_timeout_s),
        safe_free_bytes: raw.safe_free_bytes,
        beacon_interval: secs(raw.beacon_interval_s),
        test_hooks: raw.test_hooks,
    })
}

fn validate_admin(raw: &RawAdmin) -> Result<spacenode_policy::quorum::AdminSet, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn base() -> String {
        format!(
            "[node]\nstate_dir = \"/var/lib/spacenode\"\nprofile = \"development\"\n\
             [link]\ndevice = \"/dev/ttyAMA0\"\ntx_key_id = 1\n[[link.keys]]\nid = 1\nkey = \"{KEY}\"\n"
        )
    }

    const XONLY: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    fn flight() -> String {
        format!(
            "[node]\nstate_dir = \"/var/lib/spacenode\"\nprofile = \"flight\"\nid = \"0102030405060708\"\n\
             [link]\ndevice = \"/dev/ttyAMA0\"\ntx_key_id = 1\n[[link.keys]]\nid = 1\n\
             [keys]\nbackend = \"tpm\"\ntcti = \"device:/dev/tpmrm0\"\nseal_auth = \"a1b2c3d4e5f60718293a4b5c6d7e8f90\"\n\
             [admin]\nthreshold = 1\nkeys = [\"{XONLY}\"]\n"
        )
    }

    #[test]
    fn flight_profile_requires_custody_identity_administrators_and_a_watchdog() {
        let ok = Config::parse(&flight()).unwrap();
        assert_eq!(ok.node_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(
            ok.keys,
            KeysConfig::Tpm {
                software_pcr: 23,
                ..
            }
        ));
        assert!(
            ok.link.keys[0].key.is_none(),
            "a sealed key is named by id only"
        );
        assert_eq!(ok.admin.as_ref().map(|a| a.threshold()), Some(1));
        for (broken, expect) in [
            (flight().replace("id = \"0102030405060708\"\n", ""), "`node.id`: required"),
            (flight().replace("0102030405060708", "01"), "`node.id`: expected 16 hex"),
            (flight().replace("backend = \"tpm\"", "backend = \"soft\""), "development only"),
            (flight().replace("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321"), "device: tcti"),
            (flight().replace("seal_auth = \"a1b2c3d4e5f60718293a4b5c6d7e8f90\"\n", ""), "`keys.seal_auth`: required"),
            (flight().replace("a1b2c3d4e5f60718293a4b5c6d7e8f90", "a1b2c3"), "at least 16 random bytes"),
            (flight().replace("threshold = 1", "threshold = 2"), "`admin`"),
            (flight().replace(XONLY, "zz"), "`admin.keys[0]`"),
            (format!("{}[health]\nwatchdog = \"none\"\n", flight()), "`health.watchdog`"),
            (format!("{}[health]\ntest_hooks = true\n", flight()), "`health.test_hooks`"),
            (flight().replace("[admin]\nthreshold = 1\nkeys = [\"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\"]\n", ""), "`admin`: an administrator set is required"),
        ] {
            let e = err(&broken);
            assert!(e.contains(expect), "wanted {expect:?} in {e}");
        }
    }

    /// Issue 13 item 11: the sealing PCR set is configurable, boot PCRs
    /// included; flight defaults to the measured-boot set.
    #[test]
    fn seal_pcrs_are_configurable_and_validated() {
        let pcrs = |c: &Config| match &c.keys {
            KeysConfig::Tpm { seal_pcrs, .. } => seal_pcrs.clone(),
            KeysConfig::Soft { .. } => panic!("soft"),
        };
        assert_eq!(
            pcrs(&Config::parse(&flight()).unwrap()),
            vec![0, 2, 4, 7, 23]
        );
        let dev = format!(
            "{}[keys]\nbackend = \"tpm\"\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\n",
            base()
        );
        assert_eq!(pcrs(&Config::parse(&dev).unwrap()), vec![23]);
        let with = |v: &str| format!("{dev}seal_pcrs = {v}\n");
        assert_eq!(
            pcrs(&Config::parse(&with("[0, 7, 23]")).unwrap()),
            vec![0, 7, 23]
        );
        let flight16 = flight().replace(
            "seal_auth =",
            "software_pcr = 16\nseal_pcrs = [0, 2, 4, 7, 16]\nseal_auth =",
        );
        assert_eq!(
            pcrs(&Config::parse(&flight16).unwrap()),
            vec![0, 2, 4, 7, 16]
        );
        for (bad, why) in [
            ("[7, 0, 23]", "strictly ascending"),
            ("[0, 7, 7, 23]", "strictly ascending"),
            ("[0, 7]", "must contain the software pcr 23"),
            ("[16, 23]", "pcr 16 is not a boot pcr"),
            ("[0, 20, 23]", "pcr 20 is not a boot pcr"),
        ] {
            let e = err(&with(bad));
            assert!(
                e.contains("`keys.seal_pcrs`") && e.contains(why),
                "{bad}: {e}"
            );
        }
        assert!(err(&format!("{}[keys]\nseal_pcrs = [23]\n", base())).contains("tpm backend only"));
        // The set is part of the measured configuration.
        assert_ne!(
            Config::parse(&with("[0, 7, 23]")).unwrap().source_sha256,
            Config::parse(&dev).unwrap().source_sha256
        );
    }

    #[test]
    fn development_defaults_to_the_soft_key_store_in_the_state_dir() {
        let c = Config::parse(&base()).unwrap();
        assert!(
            matches!(&c.keys, KeysConfig::Soft { seed_file } if seed_file.ends_with("dev-seed"))
        );
        assert_eq!(c.node_id, [0; 8]);
        assert!(c.admin.is_none());
        assert_eq!(c.health.boot_loop_starts, 5);
        assert!(c.health.contact_timeout.is_zero());
        let tpm = format!(
            "{}[keys]\nbackend = \"tpm\"\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\n",
            base()
        );
        assert!(matches!(
            Config::parse(&tpm).unwrap().keys,
            KeysConfig::Tpm { .. }
        ));
        assert!(
            err(&format!(
                "{}[keys]\nbackend = \"tpm\"\ntcti = \"usb:x\"\n",
                base()
            ))
            .contains("`keys.tcti`")
        );
        assert!(err(&format!("{}[keys]\nsoftware_pcr = 7\n", base())).contains("tpm backend only"));
        assert_ne!(Config::parse(&base()).unwrap().source_sha256, [0; 32]);
    }

    #[test]
    fn measurement_ignores_comments_and_key_material_but_not_settings() {
        let d = |t: &str| measured_digest(t).unwrap();
        let with_key = base();
        let without_key = base().replace(&format!("key = \"{KEY}\"\n"), "");
        assert_eq!(d(&with_key), d(&without_key));
        assert_eq!(d(&with_key), d(&format!("# a comment\n{with_key}")));
        assert_ne!(
            d(&with_key),
            d(&with_key.replace("tx_key_id = 1", "tx_key_id = 1\nbaud = 9600"))
        );
    }

    #[test]
    fn minimal_config_takes_documented_defaults() {
        let c = Config::parse(&base()).unwrap();
        assert_eq!(c.link.baud, 115_200);
        assert_eq!(c.link.seq_block, 1024);
        assert_eq!(c.telemetry.hk_interval_s, 30);
        assert_eq!(c.profile, Profile::Development);
        assert_eq!(c.chain.network, ChainNetwork::Mainnet);
        assert_eq!(c.chain.window, DEFAULT_WINDOW);
        assert_eq!(c.chain.start, ChainStart::Checkpoint);
        assert_eq!(c.chain.anchor().height, 830_592);
    }

    #[test]
    fn chain_table_is_parsed_and_validated() {
        let c = Config::parse(&format!(
            "{}[chain]\nnetwork = \"regtest\"\nwindow = 10\nstart = \"genesis\"\n",
            base()
        ))
        .unwrap();
        assert_eq!(c.chain.network, ChainNetwork::Regtest);
        assert_eq!(c.chain.chain_config().network, bitcoin::Network::Regtest);
        assert_eq!(c.chain.window, 10);
        assert_eq!(c.chain.anchor().height, 0);
        let mainnet_genesis =
            Config::parse(&format!("{}[chain]\nstart = \"genesis\"\n", base())).unwrap();
        assert_eq!(mainnet_genesis.chain.anchor().height, 0);
        assert_eq!(
            mainnet_genesis.chain.anchor().network,
            bitcoin::Network::Bitcoin
        );

        assert!(err(&format!("{}[chain]\nwindow = 1\n", base())).contains("`chain.window`"));
        assert!(err(&format!("{}[chain]\nwindow = 100000\n", base())).contains("`chain.window`"));
        let net = err(&format!("{}[chain]\nnetwork = \"testnet3\"\n", base()));
        assert!(net.contains("network") && net.contains("testnet4"), "{net}");
        let start = err(&format!("{}[chain]\nstart = \"tip\"\n", base()));
        assert!(
            start.contains("start") && start.contains("checkpoint"),
            "{start}"
        );
        let unknown = err(&format!("{}[chain]\ndepth = 3\n", base()));
        assert!(unknown.contains("unknown field `depth`"), "{unknown}");
        let flight = flight();
        assert!(
            Config::parse(&flight).is_ok(),
            "{:?}",
            Config::parse(&flight).err()
        );
        assert!(
            err(&format!("{flight}[chain]\nnetwork = \"regtest\"\n"))
                .contains("`chain.network`: regtest is refused")
        );
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_and_problem() {
        assert!(err(&base().replace("tx_key_id = 1", "tx_key_id = 2")).contains("link.tx_key_id"));
        assert!(
            err(&base().replace(KEY, "abcd")).contains("`link.keys[0].key`: expected 32 bytes")
        );
        assert!(err(&base().replace(KEY, "zz")).contains("`link.keys[0].key`: not hex"));
        assert!(
            err(&base().replace("tx_key_id = 1", "tx_key_id = 1\nbaud = 12345"))
                .contains("link.baud")
        );
        let unknown = err(&base().replace("[link]", "[link]\nspeed = 9600"));
        assert!(unknown.contains("unknown field `speed`"), "{unknown}");
        assert!(err(&base().replace("/var/lib/spacenode", "relative")).contains("node.state_dir"));
        assert!(err(&base().replace("development", "laptop")).contains("profile"));
    }

    #[test]
    fn flight_profile_refuses_constant_keys() {
        let text = base()
            .replace("development", "flight")
            .replace(KEY, &"11".repeat(32));
        assert!(err(&text).contains("flight profile"));
    }
}
