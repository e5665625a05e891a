//! The node's key-custody services: attestation, xpub export, sealing link
//! keys installed by rekey, and the node identity signature on beacons.
//!
//! The seed never leaves [`spacenode_keys`]: this file only asks the key
//! store for public keys, quotes and signatures.

use bitcoin::bip32::DerivationPath;
use spacenode_keys::{SchnorrTweak, Signer};
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{BEACON_TAG, FailureNotice};
use spacenode_wire::services::{apid, service, subtype};

use super::{Node, Now};
use crate::custody;
use crate::services::TmBody;
use crate::store::InstalledKey;

/// Derivation path of the node's identity key (beacons; BIP340). Hardened
/// and outside BIP44/48/84/86 purposes so no wallet ever derives it.
pub const IDENTITY_PATH: &str = "m/21326'/0'";

fn unavailable() -> FailureNotice {
    FailureNotice {
        code: ReasonCode(0x0403),
        data: b"the signing seed is not available (see mode status)".to_vec(),
    }
}

impl Node {
    /// TPM quote binding the nonce, the identity xpub, the policy hash and
    /// the anti-rollback counter.
    pub(super) fn attest(
        &mut self,
        nonce: [u8; 32],
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        // The quote binds the active policy's hash (zeros before the first
        // policy), so the ground sees which policy the node enforces.
        let policy_hash = self.policy.as_ref().map_or([0; 32], |p| p.active.hash);
        let keys = self.keys.as_mut().ok_or_else(unavailable)?;
        let path: DerivationPath = IDENTITY_PATH.parse().map_err(|_| unavailable())?;
        let attestation = keys
            .attest(nonce, policy_hash, &[path])
            .map_err(|e| FailureNotice {
                code: ReasonCode(e.code()),
                data: e.to_string().into_bytes(),
            })?;
        let body = TmBody {
            apid: apid::KEYS,
            service: service::KEYS,
            subtype: subtype::KEYS_ATTESTATION,
            dest_id,
            data: attestation.encode(),
        };
        out.extend(self.emit(&body, now));
        Ok(())
    }

    /// Master fingerprint (4 bytes) and the base58 xpub at `path`.
    pub(super) fn xpub(
        &mut self,
        path: &DerivationPath,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let keys = self.keys.as_ref().ok_or_else(unavailable)?;
        let xpub = keys.xpub(path).map_err(|e| FailureNotice {
            code: ReasonCode(e.code()),
            data: e.to_string().into_bytes(),
        })?;
        let mut data = keys.master_fingerprint().to_bytes().to_vec();
        data.extend_from_slice(xpub.to_string().as_bytes());
        let body = TmBody {
            apid: apid::KEYS,
            service: service::KEYS,
            subtype: subtype::KEYS_XPUB,
            dest_id,
            data,
        };
        out.extend(self.emit(&body, now));
        Ok(())
    }

    /// Seals a rekeyed link key into a blob file and records it (id,
    /// digest, pending retirement of the replaced key, command sequence,
    /// with an epoch bump) before the key is used.
    pub(super) fn install_link_key(
        &mut self,
        installed: &InstalledKey,
        key: &[u8; 32],
    ) -> Result<(), FailureNotice> {
        let key_id = installed.key_id;
        let fail = |code: u16, detail: String| FailureNotice {
            code: ReasonCode(code),
            data: detail.into_bytes(),
        };
        let secret = custody::secret_from(key).map_err(|e| fail(e.code(), e.to_string()))?;
        let name = custody::link_key_name(key_id);
        let blob = {
            let mut sealer = if let Some(t) = self.tpm.as_mut() {
                custody::Sealer::Tpm(t)
            } else if let Some(k) = self.keys.as_mut() {
                custody::Sealer::Store(k)
            } else if let Some(s) = self.soft_sealer.as_ref() {
                custody::Sealer::Soft(s)
            } else {
                return Err(fail(0x0401, "no key store to seal the new key".into()));
            };
            sealer
                .seal_link(&name, &secret)
                .map_err(|e| fail(e.code(), e.to_string()))?
        };
        custody::write_blob(&self.cfg.state_dir, &name, &blob)
            .map_err(|e| fail(e.code(), e.to_string()))?;
        self.bump_epoch_with(|store, epoch| store.record_installed_key(installed, epoch))
            .map_err(|(code, detail)| fail(code, detail))
    }

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
