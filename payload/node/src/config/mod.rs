//! The daemon's configuration: one TOML file, parsed into typed values and
//! validated once at load. Unknown keys are errors, and every error names the
//! key and the problem. The running daemon only ever sees [`Config`].
//!
//! This module must never read anything but the config file, and never hold
//! defaults that differ from what `docs/config.md` says.

//!
//! One file per section (`[node]`, `[link]`, `[telemetry]`, `[keys]`,
//! `[health]`, `[chain]`, `[admin]`, `[logging]`): each owns its raw TOML
//! shape, its defaults, its validated type and its checks; this file owns
//! the whole document, the error type and the measured digest.

mod admin;
mod chain;
mod health;
mod keys;
mod link;
mod logging;
mod node;
mod telemetry;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use admin::RawAdmin;
use chain::RawChain;
pub use chain::{ChainNetwork, ChainSettings, ChainStart, MAX_CHAIN_WINDOW};
use health::RawHealth;
pub use health::{HealthConfig, WatchdogKind};
use keys::RawKeys;
pub use keys::{FLIGHT_BOOT_PCRS, KeyBackendKind, KeyNetwork, KeysConfig};
use link::RawLink;
pub use link::{BAUD_RATES, KeyConfig, LinkConfig};
use logging::RawLogging;
use node::RawNode;
use telemetry::RawTelemetry;
pub use telemetry::TelemetryConfig;

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
        // Sections are checked in this order so that a file with several
        // problems reports the same first one as before the split.
        node::check_state_dir(&raw.node)?;
        let profile = raw.node.profile;
        let link = link::validate(raw.link, profile)?;
        let chain = chain::validate(&raw.chain, profile)?;
        let node_id = node::node_id(&raw.node)?;
        let keys = keys::validate_keys(&raw.keys, profile, &raw.node.state_dir)?;
        let health = health::validate_health(&raw.health, profile)?;
        let admin = admin::validate(raw.admin.as_ref(), profile)?;
        let log_level = logging::validate(raw.logging)?;
        Ok(Self {
            state_dir: raw.node.state_dir,
            profile,
            link,
            telemetry: raw.telemetry.into(),
            chain,
            log_level,
            node_id,
            keys,
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

#[cfg(test)]
mod tests {
    use spacenode_chain::state::DEFAULT_WINDOW;

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
