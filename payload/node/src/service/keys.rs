//! The keys room (PUS 130 on APID `KEYS`): attestation (TC[130,1]) and
//! xpub export (TC[130,3]). The seed never leaves [`spacenode_keys`]: this
//! room only asks the key store for public keys and quotes.

use bitcoin::bip32::DerivationPath;
use spacenode_keys::Signer;
use spacenode_wire::ReasonCode;
use spacenode_wire::msg::{FailureNotice, MsgError};
use spacenode_wire::pus::Tc;
use spacenode_wire::services::{apid, service, subtype};

use super::verify::Reply;
use super::{bad_data, unknown_service};
use crate::node::Node;
use crate::node::keys::IDENTITY_PATH;

/// A keys request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// TC[130,1] with its nonce.
    Attest([u8; 32]),
    /// TC[130,3] with a BIP32 path.
    Xpub(DerivationPath),
}

/// Acceptance of a TC on APID `KEYS`.
///
/// # Errors
/// The acceptance failure notice.
pub fn accept(tc: &Tc) -> Result<Request, FailureNotice> {
    match (tc.service, tc.subtype) {
        (service::KEYS, subtype::KEYS_ATTEST) => <[u8; 32]>::try_from(tc.app_data.as_slice())
            .map(Request::Attest)
            .map_err(|_| {
                bad_data(&MsgError::Invalid {
                    field: "nonce length",
                    value: tc.app_data.len() as u64,
                })
            }),
        (service::KEYS, subtype::KEYS_XPUB_REQUEST) => std::str::from_utf8(&tc.app_data)
            .ok()
            .filter(|p| p.len() <= 128)
            .and_then(|p| p.parse::<DerivationPath>().ok())
            .map(Request::Xpub)
            .ok_or_else(|| FailureNotice {
                code: ReasonCode::BAD_APP_DATA,
                data: b"expected a bip32 path like m/48'/0'/0'/2'".to_vec(),
            }),
        _ => Err(unknown_service()),
    }
}

pub(crate) fn execute(node: &mut Node, cx: &mut Reply, req: Request) -> Result<(), FailureNotice> {
    match req {
        Request::Attest(nonce) => attest(node, cx, nonce),
        Request::Xpub(path) => xpub(node, cx, &path),
    }
}

fn unavailable() -> FailureNotice {
    FailureNotice {
        code: ReasonCode(0x0403),
        data: b"the signing seed is not available (see mode status)".to_vec(),
    }
}

fn key_error(e: &spacenode_keys::KeyError) -> FailureNotice {
    FailureNotice {
        code: ReasonCode(e.code()),
        data: e.to_string().into_bytes(),
    }
}

/// TPM quote binding the nonce, the identity xpub, the policy hash and
/// the anti-rollback counter.
fn attest(node: &mut Node, cx: &mut Reply, nonce: [u8; 32]) -> Result<(), FailureNotice> {
    // The quote binds the active policy's hash (zeros before the first
    // policy), so the ground sees which policy the node enforces.
    let policy_hash = node.policy.as_ref().map_or([0; 32], |p| p.active.hash);
    let keys = node.keys.as_mut().ok_or_else(unavailable)?;
    let path: DerivationPath = IDENTITY_PATH.parse().map_err(|_| unavailable())?;
    let attestation = keys
        .attest(nonce, policy_hash, &[path])
        .map_err(|e| key_error(&e))?;
    cx.reply(
        node,
        apid::KEYS,
        service::KEYS,
        subtype::KEYS_ATTESTATION,
        attestation.encode(),
    );
    Ok(())
}

/// Master fingerprint (4 bytes) and the base58 xpub at `path`.
fn xpub(node: &mut Node, cx: &mut Reply, path: &DerivationPath) -> Result<(), FailureNotice> {
    let keys = node.keys.as_ref().ok_or_else(unavailable)?;
    let xpub = keys.xpub(path).map_err(|e| key_error(&e))?;
    let mut data = keys.master_fingerprint().to_bytes().to_vec();
    data.extend_from_slice(xpub.to_string().as_bytes());
    cx.reply(node, apid::KEYS, service::KEYS, subtype::KEYS_XPUB, data);
    Ok(())
}
