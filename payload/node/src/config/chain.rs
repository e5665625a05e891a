//! `[chain]`: the Bitcoin network the header chain follows, its window and
//! its trust anchor. Must never open the chain store.

use serde::Deserialize;
use spacenode_chain::state::{DEFAULT_WINDOW, MIN_WINDOW};
use spacenode_chain::{ChainConfig, Checkpoint};

use super::{ConfigError, Profile};

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
pub(super) struct RawChain {
    #[serde(default)]
    pub(super) network: ChainNetwork,
    #[serde(default = "default_window")]
    pub(super) window: u32,
    #[serde(default)]
    pub(super) start: ChainStart,
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

fn default_window() -> u32 {
    DEFAULT_WINDOW
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

/// Validates `[chain]`.
pub(super) fn validate(raw: &RawChain, profile: Profile) -> Result<ChainSettings, ConfigError> {
    if !(MIN_WINDOW..=MAX_CHAIN_WINDOW).contains(&raw.window) {
        return Err(ConfigError::invalid(
            "chain.window",
            format!(
                "{} is outside {MIN_WINDOW}..={MAX_CHAIN_WINDOW} (default {DEFAULT_WINDOW}: \
                 one difficulty period plus one day)",
                raw.window
            ),
        ));
    }
    if raw.network == ChainNetwork::Regtest && profile == Profile::Flight {
        return Err(ConfigError::invalid(
            "chain.network",
            "regtest is refused in the flight profile (anyone can mine it)",
        ));
    }
    Ok(ChainSettings {
        network: raw.network,
        window: raw.window,
        start: raw.start,
    })
}
