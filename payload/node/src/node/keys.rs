//! The node's identity key: its derivation path and the identity signature
//! on beacons. Attestation and xpub export are the keys room
//! ([`crate::service::keys`]); sealing link keys is the link room's.
//!
//! The seed never leaves [`spacenode_keys`]: this file only asks the key
//! store for signatures.

use bitcoin::bip32::DerivationPath;
use spacenode_keys::{SchnorrTweak, Signer};
use spacenode_wire::msg::BEACON_TAG;

use super::Node;

/// Derivation path of the node's identity key (beacons; BIP340). Hardened
/// and outside BIP44/48/84/86 purposes so no wallet ever derives it.
pub const IDENTITY_PATH: &str = "m/21326'/0'";

impl Node {
    /// BIP340 signature of the node identity key over a beacon body.
    pub(super) fn sign_beacon(&self, body: &[u8]) -> Option<[u8; 64]> {
        let keys = self.keys.as_ref()?;
        let path: DerivationPath = IDENTITY_PATH.parse().ok()?;
        let digest = spacenode_policy::quorum::tagged_hash(BEACON_TAG, body);
        match keys.sign_schnorr(&path, &digest, SchnorrTweak::None) {
            Ok(sig) => Some(sig.serialize()),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign the beacon");
                None
            }
        }
    }
}
