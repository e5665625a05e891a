//! Administrator tooling for the ground: key files, building the canonical
//! command bytes, adding an administrator's BIP340 signature, and printing
//! what a command says before anyone signs it. Runs offline: administrators
//! sign on their own machines and pass the file along.
//!
//! This module must never print or log a secret key.

use std::path::Path;

use bitcoin::secp256k1::{Keypair, Message, Secp256k1, SecretKey, XOnlyPublicKey};
use serde::{Deserialize, Serialize};
use spacenode_policy::command::{Command, RekeyBody, SignedCommand, TAG, kind};
use spacenode_policy::quorum::{Signature, tagged_hash};

use crate::config::{GroundConfig, GroundState, InstalledKey};

/// Errors of the administrator tooling.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file's content is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The command is malformed.
    #[error(transparent)]
    Command(#[from] spacenode_policy::command::CommandError),
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Hex secret key.
    secret: String,
    /// Hex x-only public key (informational).
    xonly: String,
}

/// Generates an administrator key into `path` (mode 0600, refusing to
/// overwrite) and returns its x-only public key.
///
/// # Errors
/// [`AdminError::Io`].
pub fn keygen(path: &Path) -> Result<XOnlyPublicKey, AdminError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secp = Secp256k1::new();
    let mut bytes = [0u8; 32];
    let sk = loop {
        rand::fill(&mut bytes);
        if let Ok(sk) = SecretKey::from_slice(&bytes) {
            break sk;
        }
    };
    let kp = Keypair::from_secret_key(&secp, &sk);
    let xonly = kp.x_only_public_key().0;
    let file = KeyFile {
        secret: hex::encode(sk.secret_bytes()),
        xonly: xonly.to_string(),
    };
    let io = |source| AdminError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(
        serde_json::to_string_pretty(&file)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(io)?;
    Ok(xonly)
}

/// Loads an administrator key.
///
/// # Errors
/// [`AdminError`].
pub fn load_key(path: &Path) -> Result<Keypair, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let invalid = |message: String| AdminError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let sk = hex::decode(file.secret.trim())
        .ok()
        .and_then(|b| SecretKey::from_slice(&b).ok())
        .ok_or_else(|| invalid("`secret` is not a secp256k1 secret key in hex".into()))?;
    Ok(Keypair::from_secret_key(&Secp256k1::new(), &sk))
}

/// The kinds the tool can build: name, kind, what the body is.
pub const KINDS: &[(&str, u16, &str)] = &[
    ("exit-safe-mode", kind::EXIT_SAFE_MODE, "empty"),
    (
        "veto-policy",
        kind::VETO_POLICY,
        "the pending policy's hash (ground policy status)",
    ),
    (
        "clock-resync",
        kind::CLOCK_RESYNC,
        "the node time to accept, i64 ms big-endian",
    ),
    (
        "register-wallet",
        kind::REGISTER_WALLET,
        "a wallet registration (ground wallet register builds it)",
    ),
    ("retire-wallet", kind::RETIRE_WALLET, "a wallet id"),
    (
        "retire-safe",
        kind::RETIRE_SAFE,
        "chain id u64 big-endian, then the Safe's 20-byte address",
    ),
    (
        "register-safe",
        kind::REGISTER_SAFE,
        "a Safe registration (ground safe register builds it)",
    ),
    (
        "safe-admin-tx",
        kind::SAFE_ADMIN_TX,
        "the request hash of one Ethereum request whose Safe calls itself",
    ),
    (
        "clear-deep-reorg",
        kind::CLEAR_DEEP_REORG,
        "the refused branch's first height, u32 big-endian (ground chain status)",
    ),
    (
        "rekey-link",
        kind::REKEY_LINK,
        "new key id u16, the new key's SHA-256, the replaced key id u16 \
         (built from --new-key-id: the station generates and stores the key)",
    ),
];

/// Prepares a rekey of this station's link key, offline: generates the new
/// key (or reuses the one prepared before under the same id, so a command
/// can be rebuilt with another sequence), stores it in the station's state
/// file before anything is signed (from then on the station also accepts
/// downlink under it, as `Link::expect_key`), and returns the body of the
/// `REKEY_LINK` command: new id, the key's SHA-256, and the key it replaces
/// (`replaces`, default: the station's uplink key). The key itself never
/// leaves the state file except inside the encrypted rekey TC.
///
/// # Errors
/// [`AdminError::Invalid`] if the id is the station's uplink key or already
/// retired, or the state file cannot be read or written.
pub fn prepare_rekey(
    cfg: &GroundConfig,
    new_key_id: u16,
    replaces: Option<u16>,
) -> Result<RekeyBody, AdminError> {
    use bitcoin::hashes::{Hash, sha256};
    let path = cfg.state_file.display().to_string();
    let invalid = |message: String| AdminError::Invalid {
        path: path.clone(),
        message,
    };
    let mut state = GroundState::load(&cfg.state_file).map_err(|e| invalid(e.to_string()))?;
    let uplink = state.tx_key_id.unwrap_or(cfg.tx_key_id);
    if new_key_id == 0 || new_key_id == uplink || state.retired_keys.contains(&new_key_id) {
        return Err(invalid(format!(
            "key id {new_key_id} is in use or retired here; pick a new id"
        )));
    }
    if cfg.keys.iter().any(|(id, _)| *id == new_key_id) {
        return Err(invalid(format!(
            "key id {new_key_id} is a configured key; pick a new id"
        )));
    }
    let existing = state
        .installed_keys
        .iter()
        .find(|k| k.id == new_key_id)
        .and_then(|k| hex::decode(&k.key).ok())
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
    let key = match existing {
        Some(k) => k,
        None => {
            let mut k = [0u8; 32];
            rand::fill(&mut k);
            state.installed_keys.push(InstalledKey {
                id: new_key_id,
                key: hex::encode(k),
            });
            state
                .save(&cfg.state_file)
                .map_err(|e| invalid(e.to_string()))?;
            k
        }
    };
    Ok(RekeyBody {
        new_key_id,
        key_sha256: sha256::Hash::hash(&key).to_byte_array(),
        replaces_key_id: replaces.unwrap_or(uplink),
    })
}

/// The kinds the tool can build, by name.
#[must_use]
pub fn kind_by_name(name: &str) -> Option<u16> {
    KINDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, _)| *k)
}

/// The name of a kind.
#[must_use]
pub fn kind_name(k: u16) -> Option<&'static str> {
    KINDS.iter().find(|(_, x, _)| *x == k).map(|(n, _, _)| *n)
}

/// A new unsigned command.
#[must_use]
pub fn build(
    kind: u16,
    target: [u8; 8],
    seq: u64,
    not_before_ms: i64,
    not_after_ms: i64,
    body: Vec<u8>,
) -> SignedCommand {
    let cmd = Command {
        kind,
        target,
        seq,
        not_before_ms,
        not_after_ms,
        body,
    };
    SignedCommand {
        command: cmd.encode(),
        signatures: Vec::new(),
    }
}

/// Adds (or replaces) the signature of administrator `signer`.
///
/// # Errors
/// [`AdminError::Command`] if the command bytes are malformed.
pub fn sign(cmd: &mut SignedCommand, key: &Keypair, signer: u8) -> Result<(), AdminError> {
    Command::decode(&cmd.command)?;
    let secp = Secp256k1::new();
    let mut aux = [0u8; 32];
    rand::fill(&mut aux);
    let digest = Message::from_digest(tagged_hash(TAG, &cmd.command));
    let sig = secp.sign_schnorr_with_aux_rand(&digest, key, &aux);
    cmd.signatures.retain(|s| s.signer != signer);
    cmd.signatures.push(Signature {
        signer,
        sig: sig.serialize(),
    });
    cmd.signatures.sort_by_key(|s| s.signer);
    Ok(())
}

/// Reads a command file (hex of the signed-command wire form).
///
/// # Errors
/// [`AdminError`].
pub fn read(path: &Path) -> Result<SignedCommand, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|e| AdminError::Invalid {
        path: path.display().to_string(),
        message: format!("expected an administrator command file (one line of hex): {e}"),
    })?;
    SignedCommand::decode(&bytes).map_err(|e| AdminError::Invalid {
        path: path.display().to_string(),
        message: format!(
            "expected an administrator command file: it does not decode: {e} (code {:#06x})",
            e.code()
        ),
    })
}

/// Writes a command file.
///
/// # Errors
/// [`AdminError::Io`].
pub fn write(path: &Path, cmd: &SignedCommand) -> Result<(), AdminError> {
    std::fs::write(path, format!("{}\n", hex::encode(cmd.encode()))).map_err(|source| {
        AdminError::Io {
            path: path.display().to_string(),
            source,
        }
    })
}

/// The administrator indexes that signed a command or a policy, e.g.
/// `0, 2`.
#[must_use]
pub fn signer_list(signatures: &[Signature]) -> String {
    signatures
        .iter()
        .map(|s| s.signer.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a command says, for the administrator who is about to sign it.
///
/// # Errors
/// [`AdminError::Command`] if malformed.
pub fn describe(cmd: &SignedCommand) -> Result<String, AdminError> {
    let c = Command::decode(&cmd.command)?;
    let kind = kind_name(c.kind).map_or_else(
        || format!("unknown kind {:#06x}", c.kind),
        ToString::to_string,
    );
    let rekey = (c.kind == kind::REKEY_LINK)
        .then(|| RekeyBody::decode(&c.body).ok())
        .flatten();
    let body = if let Some(r) = rekey {
        format!(
            "new link key {} (SHA-256 {}) replacing key {}",
            r.new_key_id,
            hex::encode(r.key_sha256),
            r.replaces_key_id
        )
    } else if c.body.is_empty() {
        "empty".to_string()
    } else if c.body.len() <= 32 {
        format!("{} bytes: {}", c.body.len(), hex::encode(&c.body))
    } else {
        format!("{} bytes", c.body.len())
    };
    Ok(format!(
        "command   {kind}\nnode      {}\nsequence  {}\nvalid     {} .. {}\nbody      {body}\nsigned by administrators [{}]\n",
        hex::encode(c.target),
        c.seq,
        crate::display::utc(c.not_before_ms),
        crate::display::utc(c.not_after_ms),
        signer_list(&cmd.signatures)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacenode_policy::quorum::AdminSet;

    #[test]
    fn keygen_sign_and_verify_with_the_node_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let xa = keygen(&a).unwrap();
        let xb = keygen(&b).unwrap();
        assert!(keygen(&a).is_err(), "never overwrites a key");
        let mut cmd = build(kind::EXIT_SAFE_MODE, *b"node-001", 3, 0, 10_000, vec![]);
        sign(&mut cmd, &load_key(&a).unwrap(), 0).unwrap();
        sign(&mut cmd, &load_key(&b).unwrap(), 1).unwrap();
        let path = dir.path().join("cmd.hex");
        write(&path, &cmd).unwrap();
        let back = read(&path).unwrap();
        let admins = AdminSet::new(vec![xa, xb], 2).unwrap();
        let ok = back
            .authorize(
                &Secp256k1::verification_only(),
                &admins,
                *b"node-001",
                spacenode_policy::command::Executed {
                    last_of_kind: 2,
                    highest: 2,
                },
                5_000,
            )
            .unwrap();
        assert_eq!(ok.seq, 3);
        assert!(describe(&back).unwrap().contains("exit-safe-mode"));
    }
}
