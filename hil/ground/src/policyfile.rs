//! Offline policy tooling: compile a TOML policy to its canonical document,
//! collect administrators' BIP340 signatures in a signed-policy file, verify
//! a file against an administrator set, describe a document and show what
//! changes between two.
//!
//! A signed-policy file is the hex of `SignedPolicy::encode()` plus a
//! newline, like an administrator command file. Administrators sign on
//! their own machines and pass the file along. This module must never
//! print or log a secret key.

use std::path::Path;

use bitcoin::secp256k1::{Keypair, Message, Secp256k1};
use spacenode_policy::authoring::diff::diff;
use spacenode_policy::document::{POLICY_TAG, PolicyDocument, SignedPolicy, hex_encode};
use spacenode_policy::quorum::{AdminSet, Signature, tagged_hash};

/// Errors of the policy files.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// The content is not a policy.
    #[error("{path}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> PolicyFileError {
    PolicyFileError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A policy read from a file: its document, and the signatures if the file
/// was a signed policy.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The document.
    pub document: PolicyDocument,
    /// Its canonical bytes.
    pub bytes: Vec<u8>,
    /// The signed form (`None` for TOML).
    pub signed: Option<SignedPolicy>,
}

/// What a policy file must be, in the one-line errors.
pub const EXPECTED: &str = "a policy (TOML) or a signed-policy file (one line of hex)";

/// Reads a TOML policy or a signed-policy file (hex).
///
/// A signed-policy file is one line of hex and a TOML policy has `key =
/// value` lines, so a damaged signed file is reported as a damaged signed
/// file (where its hex or its CBOR went wrong), never as a TOML syntax
/// error. Every error is one line naming the file.
///
/// # Errors
/// [`PolicyFileError`].
pub fn load(path: &Path) -> Result<Loaded, PolicyFileError> {
    let raw = std::fs::read(path).map_err(|source| PolicyFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8(raw).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        invalid(
            path,
            format!("expected {EXPECTED}: byte {at} is not text (a binary file?)"),
        )
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid(
            path,
            format!("expected {EXPECTED}: the file is empty"),
        ));
    }
    if !trimmed.contains('\n') && !trimmed.contains('=') {
        return load_signed(path, trimmed);
    }
    let document = PolicyDocument::from_toml(&text).map_err(|e| {
        invalid(
            path,
            format!("expected a policy (TOML): {e} (code {:#06x})", e.code()),
        )
    })?;
    spacenode_btc::wallet::check_allow_descriptors(&document.rules)
        .map_err(|e| invalid(path, format!("allowlist: {e}")))?;
    Ok(Loaded {
        bytes: document.encode(),
        document,
        signed: None,
    })
}

fn load_signed(path: &Path, hex_text: &str) -> Result<Loaded, PolicyFileError> {
    let expected = "a signed-policy file (hex of the canonical CBOR)";
    if let Some((i, c)) = hex_text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(invalid(
            path,
            format!("expected {expected}: character {i} is {c:?}, not a hex digit"),
        ));
    }
    let bytes =
        hex::decode(hex_text).map_err(|e| invalid(path, format!("expected {expected}: {e}")))?;
    let signed = SignedPolicy::decode(&bytes).map_err(|e| {
        invalid(
            path,
            format!("expected {expected}: the signed wrapper does not decode: {e}"),
        )
    })?;
    let document = PolicyDocument::decode(&signed.document).map_err(|e| {
        invalid(
            path,
            format!(
                "expected {expected}: its document does not decode: {e} (code {:#06x})",
                e.code()
            ),
        )
    })?;
    Ok(Loaded {
        bytes: signed.document.clone(),
        document,
        signed: Some(signed),
    })
}

/// Writes a signed-policy file.
///
/// # Errors
/// [`PolicyFileError::Io`].
pub fn write(path: &Path, signed: &SignedPolicy) -> Result<(), PolicyFileError> {
    std::fs::write(path, format!("{}\n", hex::encode(signed.encode()))).map_err(|source| {
        PolicyFileError::Io {
            path: path.display().to_string(),
            source,
        }
    })
}

/// Adds (or replaces) administrator `signer`'s signature over the document.
pub fn sign(signed: &mut SignedPolicy, key: &Keypair, signer: u8) {
    let secp = Secp256k1::new();
    let mut aux = [0u8; 32];
    rand::fill(&mut aux);
    let m = Message::from_digest(tagged_hash(POLICY_TAG, &signed.document));
    let sig = secp.sign_schnorr_with_aux_rand(&m, key, &aux);
    signed.signatures.retain(|s| s.signer != signer);
    signed.signatures.push(Signature {
        signer,
        sig: sig.serialize(),
    });
    signed.signatures.sort_by_key(|s| s.signer);
}

/// Checks the signatures against `admins` (the set of the policy in force:
/// the node's `[admin]` set for the first policy).
///
/// # Errors
/// The quorum error, as text with its code.
pub fn verify(signed: &SignedPolicy, admins: &AdminSet) -> Result<PolicyDocument, String> {
    signed
        .verify(&Secp256k1::verification_only(), admins)
        .map_err(|e| format!("{e} (code {:#06x})", e.code()))
}

/// The policy's hash in hex.
#[must_use]
pub fn hash_hex(doc: &PolicyDocument) -> String {
    hex_encode(&doc.hash())
}

/// A readable summary of a document.
#[must_use]
pub fn describe(doc: &PolicyDocument) -> String {
    let r = &doc.rules;
    let btc = |s: u64| format!("{}.{:08} BTC", s / 100_000_000, s % 100_000_000);
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line("version", doc.version.to_string());
    line("network", doc.network.to_string());
    line("hash", hash_hex(doc));
    line(
        "administrators",
        format!(
            "{} of {} (veto: {})",
            doc.admins.threshold,
            doc.admins.keys.len(),
            doc.veto_threshold
        ),
    );
    line(
        "activation delay",
        super::display::duration(doc.activation_delay_ms / 1000),
    );
    line(
        "ground approvals",
        format!(
            "{} of {}",
            doc.approvers.threshold,
            doc.approvers.keys.len()
        ),
    );
    line("per-transaction cap", btc(r.per_tx_cap.0));
    for w in &r.velocity {
        line(
            "velocity",
            format!(
                "{} per {}",
                btc(w.cap.0),
                super::display::duration(w.window_ms / 1000)
            ),
        );
    }
    line(
        "fee caps",
        format!(
            "{} sat, {} sat/vB",
            r.max_fee.0,
            r.max_fee_rate.0.saturating_div(1000)
        ),
    );
    line("min confirmations", r.min_confirmations.to_string());
    for a in &r.allowlist {
        line("allow", a.label.clone());
    }
    line(
        "time windows",
        if r.time_windows.is_empty() {
            "always".to_string()
        } else {
            format!("{} window(s)", r.time_windows.len())
        },
    );
    line(
        "replacement",
        if r.replacement.allowed {
            format!("fee bumps up to {} sat", r.replacement.max_fee.0)
        } else {
            "never".to_string()
        },
    );
    line(
        "checkpoint",
        format!(
            "height {} {}",
            doc.checkpoint.height,
            doc.checkpoint.header.block_hash()
        ),
    );
    out
}

/// What changes from `old` to `new`, one line each (`~`, `+`, `-`).
#[must_use]
pub fn changes(old: &PolicyDocument, new: &PolicyDocument) -> Vec<String> {
    diff(old, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let secp = Secp256k1::new();
        let keys: Vec<Keypair> = (1..=3u8)
            .map(|i| {
                Keypair::from_secret_key(
                    &secp,
                    &bitcoin::secp256k1::SecretKey::from_slice(&[i; 32]).unwrap(),
                )
            })
            .collect();
        let xonly: Vec<String> = keys
            .iter()
            .map(|k| format!("\"{}\"", k.x_only_public_key().0))
            .collect();
        let toml = format!(
            "version = 1\nnetwork = \"regtest\"\nactivation_delay_s = 60\nveto_threshold = 1\n\
             checkpoint = \"genesis\"\n[admins]\nthreshold = 2\nkeys = [{}]\n\
             [approvers]\nthreshold = 0\nkeys = []\n\
             [clock]\nmax_forward_jump_s = 86400\nmax_behind_chain_s = 86400\n\
             [rules]\nper_tx_cap_sat = 100000\nmax_fee_sat = 1000\nmax_fee_rate_sat_vb = 10\n\
             min_confirmations = 1\nmax_psbt_bytes = 100000\n\
             [rules.replacement]\nallowed = false\nmax_fee_sat = 0\nmax_fee_rate_sat_vb = 0\n",
            xonly.join(", ")
        );
        let src = dir.path().join("p.toml");
        std::fs::write(&src, toml).unwrap();
        let loaded = load(&src).unwrap();
        assert!(loaded.signed.is_none());
        let mut signed = SignedPolicy {
            document: loaded.bytes.clone(),
            signatures: vec![],
        };
        sign(&mut signed, &keys[0], 0);
        sign(&mut signed, &keys[2], 2);
        let out = dir.path().join("p.signed");
        write(&out, &signed).unwrap();
        let back = load(&out).unwrap();
        let admins = loaded.document.admins.admin_set().unwrap();
        assert_eq!(
            verify(back.signed.as_ref().unwrap(), &admins).unwrap(),
            loaded.document
        );
        let one = SignedPolicy {
            signatures: signed.signatures[..1].to_vec(),
            ..signed
        };
        assert!(verify(&one, &admins).unwrap_err().contains("0x0501"));
        assert!(describe(&loaded.document).contains("2 of 3"));
    }
}
