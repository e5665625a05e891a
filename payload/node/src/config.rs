//! The daemon's configuration: one TOML file, parsed into typed values and
//! validated once at load. Unknown keys are errors, and every error names the
//! key and the problem. The running daemon only ever sees [`Config`].
//!
//! This module must never read anything but the config file, and never hold
//! defaults that differ from what `docs/config.md` says.

use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    state_dir: PathBuf,
    profile: Profile,
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
    key: String,
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
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            hk_interval_s: default_hk_interval(),
            event_min_interval_ms: default_event_interval(),
            storage_warn_free_bytes: default_storage_warn(),
            thermal_zone: default_thermal(),
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
    /// Key material.
    pub key: LinkKey,
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
        Self::validate(raw)
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
            let bytes = hex::decode(k.key.trim())
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
            keys.push(KeyConfig {
                id: k.id,
                key: LinkKey::new(material),
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
            },
            chain: ChainSettings {
                network: raw.chain.network,
                window: raw.chain.window,
                start: raw.chain.start,
            },
            log_level: raw.logging.level,
        })
    }
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
        let flight = base()
            .replace("development", "flight")
            .replace(KEY, &"0123456789abcdef".repeat(4));
        assert!(Config::parse(&flight).is_ok());
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
