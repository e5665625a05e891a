//! spacenode-keys: key custody for the spacenode co-signer.
//!
//! Owns: the BIP32 seed's whole life on the node — generation from the TPM
//! RNG mixed with the OS RNG, sealing under the TPM storage primary key with
//! a PCR + auth-value policy, unsealing into locked non-dumpable memory,
//! BIP32 derivation and secp256k1 signing behind the [`Signer`] seam — plus
//! the TPM services built around it: software measurement into a resettable
//! PCR, attestation quotes and their pure ground-side verifier, the NV
//! anti-rollback counter, and sealing of named 32-byte secrets (link keys).
//!
//! Must never: hand out the seed or a private key (the seam exposes xpubs,
//! fingerprints, public keys and signatures only); log secrets (secret types
//! redact in `Debug`); open the soft backend in the flight profile.
//!
//! Typical daemon start (TPM backend):
//!
//! ```no_run
//! # use spacenode_keys::*;
//! # fn f(blob_bytes: &[u8], db_epoch: u64, bin: [u8; 32], cfg: [u8; 32]) -> Result<(), KeyError> {
//! secret_mem::set_process_undumpable()?;
//! let config = TpmConfig::new("device:/dev/tpmrm0", AuthValue::new(b"from the rootfs")?);
//! let mut tpm = Tpm::connect(config, Profile::Flight)?;
//! tpm.measure_software(&bin, &cfg)?;
//! let blob = SealedBlob::decode(blob_bytes)?;
//! let mut store = TpmKeyStore::open(tpm, &blob, bitcoin::NetworkKind::Main)?;
//! match store.tpm().check_epoch(db_epoch)? {
//!     EpochStatus::InSync { .. } => {}
//!     EpochStatus::InterruptedBump { target } => {
//!         store.tpm().complete_epoch_bump(target)?;
//!     }
//! }
//! let _xpub = store.xpub(&"m/48'/0'/0'/2'".parse().map_err(|_| KeyError::Config { reason: "path".into() })?)?;
//! # Ok(()) }
//! ```

pub mod attest;
pub mod blob;
pub mod error;
pub mod keystore;
pub mod pcr;
pub mod rollback;
pub mod secret_mem;
pub mod signer;
pub mod soft;
#[cfg(feature = "test-harness")]
pub mod swtpm;
pub mod tpm;

pub use attest::{AkPublic, Attestation, Binding, Expectations, Verified, verify_attestation};
pub use blob::{BlobBackend, BlobKind, SealedBlob};
pub use error::{KeyError, VerifyError};
pub use keystore::{KeyStore, TpmKeyStore};
pub use rollback::EpochStatus;
pub use secret_mem::SecretBox;
pub use signer::{SchnorrTweak, Signer};
pub use soft::SoftKeyStore;
pub use tpm::{AuthValue, DaStatus, Secret32, Tpm, TpmConfig};

/// Which rules apply: the flight image or a development machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Flight: TPM backend only, device TCTI only.
    Flight,
    /// Development: soft backend and swtpm allowed (with a loud warning).
    Development,
}
