//! The Ethereum demo (`spacenode_testkit::eth::EthDemo`) with the node's key
//! store replaced by [`CachedKeys`] of the same seed, for `eth_tx` and
//! `safe_tx`.
//!
//! Must never: sign differently from the demo's own store (checked once
//! when a target starts; a mismatch stops the target).

use spacenode_eth::signer::{EthKeyStore, account_path, receipt_path};
use spacenode_testkit::eth::{EthDemo, NODE_SEED};

use crate::cached_keys::CachedKeys;

/// The demo and its node's keys.
pub struct EthCtx {
    /// Policy, Safes and node state of the demo.
    pub demo: EthDemo,
    /// The node's key store, derived once per path.
    pub keys: CachedKeys,
}

fn same_as(keys: &CachedKeys, demo: &EthDemo) -> bool {
    let paths = [
        receipt_path(),
        account_path(0),
        account_path(1),
        account_path(2),
        account_path(3),
    ];
    paths.iter().all(|p| {
        keys.public_key(p).ok() == demo.keys.public_key(p).ok()
            && keys.sign_ecdsa_recoverable(p, &[5; 32]).ok()
                == demo.keys.sign_ecdsa_recoverable(p, &[5; 32]).ok()
            && keys.sign_schnorr(p, &[6; 32]).ok() == demo.keys.sign_schnorr(p, &[6; 32]).ok()
    })
}

impl EthCtx {
    /// The demo with its default rules; `None` if the demo does not build.
    pub fn new() -> Option<Self> {
        let demo = EthDemo::new().ok()?;
        let keys = CachedKeys::new(&NODE_SEED)?;
        assert!(
            same_as(&keys, &demo),
            "cached keys differ from the demo's node key store"
        );
        Some(Self { demo, keys })
    }
}
