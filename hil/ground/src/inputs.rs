//! The operator's local inputs, checked before the ground touches the link:
//! PSBTs, SPV proofs, header files, policies, administrator commands, key
//! files (administrator, approver `FILE:INDEX`, co-signer), the pinned
//! attestation key, descriptors, funding files and uploads.
//!
//! A damaged or wrong input is ONE line ([`InputError`]) naming the file,
//! what was expected and where it went wrong, and it is found before a
//! serial port is opened: an operator fixes a file without first fixing a
//! link that was never the problem. The loaders are the ones the commands
//! use afterwards, so a file that passes here is read the same way later.
//!
//! Must never: open a port, talk to the node, write a file, or print a
//! secret (key files are named, never quoted).

use std::path::{Path, PathBuf};

use bitcoin::psbt::Psbt;

use crate::chain::{self, ChainCmdError, HeaderFile, HeaderFormat};
use crate::{admin, btc, demo, policyfile};

/// What a PSBT file must be.
pub const EXPECTED_PSBT: &str =
    "a PSBT (BIP 174/370: binary, base64 starting \"cHNidP8\", or hex starting \"70736274ff\")";

/// A local input that is missing, damaged or of the wrong kind.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file (or argument) that is not what the command needs.
    #[error("{file}: expected {expected}: {problem}")]
    Bad {
        /// The file, or the argument (`--descriptor`).
        file: String,
        /// What it must be.
        expected: &'static str,
        /// Where it went wrong, on one line.
        problem: String,
    },
    /// A header file (its own errors name the file and the layout).
    #[error(transparent)]
    Headers(#[from] ChainCmdError),
    /// A file whose loader already names it and what it must be.
    #[error("{0}")]
    Named(String),
}

/// One local input of a command.
#[derive(Debug, Clone)]
pub enum Input {
    /// A PSBT file.
    Psbt(PathBuf),
    /// An SPV proofs file (JSON list).
    Proofs(PathBuf),
    /// A header file and its layout (`None`: by extension).
    Headers(PathBuf, Option<HeaderFormat>),
    /// A policy: TOML or a signed-policy file.
    Policy(PathBuf),
    /// A signed administrator command file.
    Command(PathBuf),
    /// An administrator key file.
    AdminKey(PathBuf),
    /// An administrator or approver key as `FILE:INDEX`.
    KeySpec(String),
    /// A ground co-signer key file (`ground btc keygen`).
    CosignerKey(PathBuf),
    /// The pinned attestation key (hex TPMT_PUBLIC).
    Ak(PathBuf),
    /// An output descriptor given on the command line.
    Descriptor(String),
    /// A funding file of `ground demo fund`.
    Funding(PathBuf),
    /// A file to upload (1..=64 KiB).
    Upload(PathBuf),
}

/// Checks every input, in order; the first bad one is the error.
///
/// # Errors
/// [`InputError`] for the first input that is missing, damaged or wrong.
pub fn check_all(inputs: &[Input]) -> Result<(), InputError> {
    inputs.iter().try_for_each(check)
}

/// Checks one input by loading it as its command will.
///
/// # Errors
/// [`InputError`].
pub fn check(input: &Input) -> Result<(), InputError> {
    match input {
        Input::Psbt(p) => psbt(p).map(drop),
        Input::Proofs(p) => btc::read_proofs(p)
            .map(drop)
            .map_err(|e| named(p, "SPV proofs (a JSON list from `ground demo psbt`)", &e)),
        Input::Headers(p, format) => headers(p, *format).map(drop),
        Input::Policy(p) => policyfile::load(p).map(drop).map_err(|e| match e {
            policyfile::PolicyFileError::Io { path, source } => InputError::Bad {
                file: path,
                expected: policyfile::EXPECTED,
                problem: source.to_string(),
            },
            e => InputError::Named(one_line(&e.to_string())),
        }),
        Input::Command(p) => admin::read(p).map(drop).map_err(|e| match e {
            admin::AdminError::Io { path, source } => InputError::Bad {
                file: path,
                expected: "an administrator command file (one line of hex)",
                problem: source.to_string(),
            },
            e => InputError::Named(one_line(&e.to_string())),
        }),
        Input::AdminKey(p) => admin::load_key(p).map(drop).map_err(|e| {
            named(
                p,
                "an administrator key file (JSON from `ground admin keygen`)",
                &e,
            )
        }),
        Input::KeySpec(spec) => key_spec(spec),
        Input::CosignerKey(p) => btc::load_key(p).map(drop).map_err(|e| {
            named(
                p,
                "a ground co-signer key file (JSON from `ground btc keygen`)",
                &e,
            )
        }),
        Input::Ak(p) => ak(p),
        Input::Descriptor(d) => spacenode_btc::wallet::canonical_descriptor(d)
            .map(drop)
            .map_err(|e| InputError::Bad {
                file: "--descriptor".into(),
                expected: "an output descriptor, e.g. wsh(sortedmulti(2,K1,K2,K3))",
                problem: one_line(&e.to_string()),
            }),
        Input::Funding(p) => demo::Funding::load(p)
            .map(drop)
            .map_err(|e| named(p, "a funding file (JSON from `ground demo fund`)", &e)),
        Input::Upload(p) => upload(p),
    }
}

/// Reads a PSBT file: binary, base64 or hex, v0 or v2. Returns the raw
/// bytes (what the node checks) and the parsed v0 form.
///
/// # Errors
/// [`InputError::Bad`] naming the file and where it went wrong.
pub fn psbt(path: &Path) -> Result<(Vec<u8>, Psbt), InputError> {
    let bad = |problem: String| InputError::Bad {
        file: path.display().to_string(),
        expected: EXPECTED_PSBT,
        problem,
    };
    let raw = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let bytes = if raw.starts_with(b"psbt\xff") {
        raw
    } else {
        let text = std::str::from_utf8(&raw).map_err(|e| {
            let at = e.valid_up_to();
            bad(format!(
                "starts with {}: neither the binary magic \"psbt\\xff\" nor text (byte {at} is not UTF-8)",
                preview(&raw)
            ))
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        if t.starts_with("70736274ff") {
            hex::decode(t).map_err(|e| bad(format!("hex: {e}")))?
        } else if t.starts_with("cHNidP8") {
            base64(t).map_err(bad)?
        } else {
            return Err(bad(format!(
                "starts with {}, not the PSBT magic",
                preview(t.as_bytes())
            )));
        }
    };
    let (psbt, _) = spacenode_btc::psbt_v2::parse(&bytes).map_err(|e| {
        bad(format!(
            "{} (code {:#06x})",
            one_line(&e.to_string()),
            e.code()
        ))
    })?;
    Ok((bytes, psbt))
}

/// Reads a header file (`format` `None`: JSON for `*.json`, else raw).
///
/// # Errors
/// [`InputError::Headers`]: the file, its length or the bad entry.
pub fn headers(path: &Path, format: Option<HeaderFormat>) -> Result<HeaderFile, InputError> {
    let format = format.unwrap_or_else(|| HeaderFormat::for_path(path));
    let bytes = std::fs::read(path).map_err(|source| ChainCmdError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(chain::parse_headers(
        &bytes,
        format,
        &path.display().to_string(),
    )?)
}

fn key_spec(spec: &str) -> Result<(), InputError> {
    let bad = |problem: String| InputError::Bad {
        file: spec.to_string(),
        expected: "FILE:INDEX (an administrator key file and the signer's index, 0..=255)",
        problem,
    };
    let (file, index) = spec
        .rsplit_once(':')
        .ok_or_else(|| bad("no \":INDEX\" after the file".into()))?;
    index
        .parse::<u8>()
        .map_err(|_| bad(format!("index {index:?} is not 0..=255")))?;
    check(&Input::AdminKey(PathBuf::from(file)))
}

fn ak(path: &Path) -> Result<(), InputError> {
    let bad = |problem: String| InputError::Bad {
        file: path.display().to_string(),
        expected: "the pinned attestation key (hex TPMT_PUBLIC from `ground keys attest --enroll`)",
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let bytes = hex::decode(text.trim()).map_err(|e| bad(format!("hex: {e}")))?;
    spacenode_keys::attest::AkPublic::from_tpmt_public(&bytes)
        .map(drop)
        .map_err(|e| bad(one_line(&e.to_string())))
}

fn upload(path: &Path) -> Result<(), InputError> {
    let max = spacenode_wire::cosign::MAX_FILE_LEN;
    let bad = |problem: String| InputError::Bad {
        file: path.display().to_string(),
        expected: "a file to upload (1 to 65536 bytes)",
        problem,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len == 0 || len > u64::from(max) {
        return Err(bad(format!("it is {len} bytes")));
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| bad(e.to_string()))
}

/// Base64 with the position of the first character that is not base64.
fn base64(t: &str) -> Result<Vec<u8>, String> {
    let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=';
    if let Some((i, c)) = t
        .char_indices()
        .find(|(_, c)| !alphabet(*c) && !c.is_ascii_whitespace())
    {
        return Err(format!("base64: character {i} is {c:?}"));
    }
    btc::base64_decode(t)
        .ok_or_else(|| "base64: wrong length or padding (truncated or cut file?)".to_string())
}

fn named(path: &Path, expected: &'static str, e: &dyn std::fmt::Display) -> InputError {
    // The loaders' messages start with the path; keep the rest.
    let full = one_line(&e.to_string());
    let shown = path.display().to_string();
    let problem = full
        .strip_prefix(&shown)
        .map(|r| r.trim_start_matches(':').trim().to_string())
        .unwrap_or(full);
    InputError::Bad {
        file: shown,
        expected,
        problem,
    }
}

/// The first bytes of a file, readable.
fn preview(b: &[u8]) -> String {
    let head = b.get(..8).unwrap_or(b);
    if head.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        format!("0x{}", hex::encode(head))
    }
}

/// A message on one line (multi-line parser output folded, bounded).
#[must_use]
pub fn one_line(s: &str) -> String {
    let folded = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() > 300 {
        let cut: String = folded.chars().take(300).collect();
        format!("{cut}...")
    } else {
        folded
    }
}
