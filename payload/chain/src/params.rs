//! Consensus parameters for header validation, per network.
//!
//! Owns: the exact Bitcoin Core `chainparams.cpp` values that header-only
//! validation needs (proof-of-work limit, retarget interval and timespan,
//! minimum-difficulty and BIP94 switches, buried BIP34/66/65 heights) and the
//! one-byte network identifiers used in our canonical encodings.
//!
//! Must never: read configuration, files or the clock; it is constants only.
//!
//! Why not `bitcoin::params::Params` alone: in bitcoin 0.32 its regtest entry
//! carries the old BIP34/65/66 heights (100000000/1351/1251) and the old
//! two-week timespan, while Bitcoin Core (v28+) activates all three at height
//! 1 on regtest and uses a one-day regtest timespan; it also has no BIP94 flag.
//! [`ChainParams::bitcoin_params`] still hands out the matching
//! `bitcoin::params::Params` for code that wants it.

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Network, Target};

/// Maximum seconds a header's time may be ahead of the node clock
/// (Bitcoin Core `MAX_FUTURE_BLOCK_TIME`).
pub const MAX_FUTURE_BLOCK_TIME: u32 = 2 * 60 * 60;
/// Number of previous blocks whose median time a new header must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;
/// BIP94 `MAX_TIMEWARP`: the first block of a period may be at most this many
/// seconds earlier than its parent.
pub const MAX_TIMEWARP: u32 = 600;

/// Header-validation parameters of one network (Bitcoin Core chainparams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// The network these parameters belong to.
    pub network: Network,
    /// Exact `consensus.powLimit`, big-endian (not the compact-rounded value).
    pub pow_limit_be: [u8; 32],
    /// `GetCompact(powLimit)`: nBits of a minimum-difficulty block.
    pub pow_limit_bits: u32,
    /// `nPowTargetSpacing` in seconds.
    pub target_spacing: u32,
    /// `nPowTargetTimespan` in seconds.
    pub target_timespan: u32,
    /// `DifficultyAdjustmentInterval()` = timespan / spacing.
    pub interval: u32,
    /// `fPowAllowMinDifficultyBlocks` (testnets, regtest): 20-minute rule.
    pub allow_min_difficulty_blocks: bool,
    /// `fPowNoRetargeting` (regtest).
    pub no_retargeting: bool,
    /// `enforce_BIP94` (testnet4): timewarp fix and first-block bits in retarget.
    pub enforce_bip94: bool,
    /// Height from which block version must be >= 2 (BIP34).
    pub bip34_height: u32,
    /// Height from which block version must be >= 3 (BIP66).
    pub bip66_height: u32,
    /// Height from which block version must be >= 4 (BIP65).
    pub bip65_height: u32,
    /// Signet: blocks carry a signature in the coinbase that a header-only
    /// node cannot check. See the crate README ("signet").
    pub signet_blocks: bool,
}

/// 0x00000000ffff...ff (mainnet, testnet3, testnet4).
const LIMIT_MAIN: [u8; 32] = {
    let mut b = [0xffu8; 32];
    b[0] = 0;
    b[1] = 0;
    b[2] = 0;
    b[3] = 0;
    b
};
/// 0x00000377ae00...00 (signet).
const LIMIT_SIGNET: [u8; 32] = {
    let mut b = [0u8; 32];
    b[2] = 0x03;
    b[3] = 0x77;
    b[4] = 0xae;
    b
};
/// 0x7fff...ff (regtest).
const LIMIT_REGTEST: [u8; 32] = {
    let mut b = [0xffu8; 32];
    b[0] = 0x7f;
    b
};

impl ChainParams {
    /// Bitcoin mainnet.
    pub const MAINNET: ChainParams = ChainParams {
        network: Network::Bitcoin,
        pow_limit_be: LIMIT_MAIN,
        pow_limit_bits: 0x1d00_ffff,
        target_spacing: 600,
        target_timespan: 14 * 24 * 60 * 60,
        interval: 2016,
        allow_min_difficulty_blocks: false,
        no_retargeting: false,
        enforce_bip94: false,
        bip34_height: 227_931,
        bip66_height: 363_725,
        bip65_height: 388_381,
        signet_blocks: false,
    };

    /// testnet3 (legacy; supported because real headers of it are available
    /// for testing the minimum-difficulty rule; prefer testnet4).
    pub const TESTNET3: ChainParams = ChainParams {
        network: Network::Testnet,
        pow_limit_be: LIMIT_MAIN,
        pow_limit_bits: 0x1d00_ffff,
        target_spacing: 600,
        target_timespan: 14 * 24 * 60 * 60,
        interval: 2016,
        allow_min_difficulty_blocks: true,
        no_retargeting: false,
        enforce_bip94: false,
        bip34_height: 21_111,
        bip66_height: 330_776,
        bip65_height: 581_885,
        signet_blocks: false,
    };

    /// testnet4 (BIP94).
    pub const TESTNET4: ChainParams = ChainParams {
        network: Network::Testnet4,
        pow_limit_be: LIMIT_MAIN,
        pow_limit_bits: 0x1d00_ffff,
        target_spacing: 600,
        target_timespan: 14 * 24 * 60 * 60,
        interval: 2016,
        allow_min_difficulty_blocks: true,
        no_retargeting: false,
        enforce_bip94: true,
        bip34_height: 1,
        bip66_height: 1,
        bip65_height: 1,
        signet_blocks: false,
    };

    /// Default signet (header-only: the block signature is not checked).
    pub const SIGNET: ChainParams = ChainParams {
        network: Network::Signet,
        pow_limit_be: LIMIT_SIGNET,
        pow_limit_bits: 0x1e03_77ae,
        target_spacing: 600,
        target_timespan: 14 * 24 * 60 * 60,
        interval: 2016,
        allow_min_difficulty_blocks: false,
        no_retargeting: false,
        enforce_bip94: false,
        bip34_height: 1,
        bip66_height: 1,
        bip65_height: 1,
        signet_blocks: true,
    };

    /// Regtest as in Bitcoin Core v28+: no retargeting, one-day "timespan"
    /// (interval 144, which only matters for the minimum-difficulty walk),
    /// all buried deployments active from height 1, BIP94 off.
    pub const REGTEST: ChainParams = ChainParams {
        network: Network::Regtest,
        pow_limit_be: LIMIT_REGTEST,
        pow_limit_bits: 0x207f_ffff,
        target_spacing: 600,
        target_timespan: 24 * 60 * 60,
        interval: 144,
        allow_min_difficulty_blocks: true,
        no_retargeting: true,
        enforce_bip94: false,
        bip34_height: 1,
        bip66_height: 1,
        bip65_height: 1,
        signet_blocks: false,
    };

    /// Exact proof-of-work limit as a `Target`.
    #[must_use]
    pub fn pow_limit(&self) -> Target {
        Target::from_be_bytes(self.pow_limit_be)
    }

    /// nBits of a minimum-difficulty block, `GetCompact(powLimit)`.
    #[must_use]
    pub fn pow_limit_compact(&self) -> CompactTarget {
        CompactTarget::from_consensus(self.pow_limit_bits)
    }

    /// Parameters for `network`.
    #[must_use]
    pub const fn for_network(network: Network) -> ChainParams {
        match network {
            Network::Bitcoin => ChainParams::MAINNET,
            Network::Testnet => ChainParams::TESTNET3,
            Network::Testnet4 => ChainParams::TESTNET4,
            Network::Signet => ChainParams::SIGNET,
            Network::Regtest => ChainParams::REGTEST,
        }
    }

    /// The corresponding `bitcoin::params::Params` (see the module doc for
    /// where its values differ from ours; ours are the ones enforced).
    #[must_use]
    pub fn bitcoin_params(&self) -> &'static bitcoin::params::Params {
        match self.network {
            Network::Bitcoin => &bitcoin::params::MAINNET,
            Network::Testnet => &bitcoin::params::TESTNET3,
            Network::Testnet4 => &bitcoin::params::TESTNET4,
            Network::Signet => &bitcoin::params::SIGNET,
            Network::Regtest => &bitcoin::params::REGTEST,
        }
    }

    /// Minimum block version required at `height` (BIP34/66/65 buried
    /// deployments, `DeploymentActiveAfter` semantics: active for blocks at
    /// heights >= the activation height).
    #[must_use]
    pub fn min_version_at(&self, height: u32) -> i32 {
        if height >= self.bip65_height {
            4
        } else if height >= self.bip66_height {
            3
        } else if height >= self.bip34_height {
            2
        } else {
            1
        }
    }

    /// Hash of the genesis block of this network.
    #[must_use]
    pub fn genesis_hash(&self) -> BlockHash {
        bitcoin::constants::genesis_block(self.network).block_hash()
    }

    /// Stable one-byte identifier used in our encodings.
    #[must_use]
    pub fn network_id(&self) -> u8 {
        network_id(self.network)
    }
}

/// Stable one-byte network identifier used in the batch, checkpoint and
/// status encodings: 1 mainnet, 2 testnet3, 3 testnet4, 4 signet, 5 regtest.
#[must_use]
pub const fn network_id(network: Network) -> u8 {
    match network {
        Network::Bitcoin => 1,
        Network::Testnet => 2,
        Network::Testnet4 => 3,
        Network::Signet => 4,
        Network::Regtest => 5,
    }
}

/// Inverse of [`network_id`]; `None` for an unknown identifier.
#[must_use]
pub const fn network_from_id(id: u8) -> Option<Network> {
    match id {
        1 => Some(Network::Bitcoin),
        2 => Some(Network::Testnet),
        3 => Some(Network::Testnet4),
        4 => Some(Network::Signet),
        5 => Some(Network::Regtest),
        _ => None,
    }
}

/// All-zero hash (the genesis block's parent).
#[must_use]
pub fn zero_hash() -> BlockHash {
    BlockHash::all_zeros()
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "test arithmetic on small known values"
)]
mod tests {
    use super::*;

    #[test]
    fn limits_compact_to_core_values() {
        for p in [
            ChainParams::MAINNET,
            ChainParams::TESTNET3,
            ChainParams::TESTNET4,
            ChainParams::SIGNET,
            ChainParams::REGTEST,
        ] {
            assert_eq!(
                p.pow_limit().to_compact_lossy(),
                p.pow_limit_compact(),
                "{:?}",
                p.network
            );
            assert_eq!(p.target_timespan / p.target_spacing, p.interval);
            assert_eq!(network_from_id(p.network_id()), Some(p.network));
        }
    }

    #[test]
    fn genesis_hashes() {
        assert_eq!(
            ChainParams::MAINNET.genesis_hash().to_string(),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert_eq!(
            ChainParams::TESTNET4.genesis_hash().to_string(),
            "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043"
        );
        assert_eq!(
            ChainParams::SIGNET.genesis_hash().to_string(),
            "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6"
        );
        assert_eq!(
            ChainParams::REGTEST.genesis_hash().to_string(),
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        );
    }

    #[test]
    fn version_floors() {
        let m = ChainParams::MAINNET;
        assert_eq!(m.min_version_at(227_930), 1);
        assert_eq!(m.min_version_at(227_931), 2);
        assert_eq!(m.min_version_at(363_725), 3);
        assert_eq!(m.min_version_at(388_381), 4);
        assert_eq!(ChainParams::REGTEST.min_version_at(0), 1);
        assert_eq!(ChainParams::REGTEST.min_version_at(1), 4);
    }
}
