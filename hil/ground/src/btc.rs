//! Ground-side Bitcoin tooling: ground co-signer key files, PSBT and SPV
//! proof files, building and approving sign-request envelopes, applying the
//! node's partial signatures, co-signing and finalising.
//!
//! The node decides; this module only prepares what it needs and checks
//! what comes back: the final transaction is executed input by input with
//! miniscript's interpreter before it is printed. It must never print or
//! log a secret key.

use std::path::Path;
use std::str::FromStr;

use bitcoin::bip32::DerivationPath;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Keypair, Message, Secp256k1};
use bitcoin::{NetworkKind, Transaction, TxOut};
use serde::{Deserialize, Serialize};
use spacenode_btc::finalize::{apply_signatures, finalize, sign_as_cosigner, verify_transaction};
use spacenode_btc::sign::{PartialSig, decode_sigs};
use spacenode_btc::signer::{BtcSigner, SoftSigner};
use spacenode_policy::quorum::Signature;
use spacenode_policy::request::{ProofKind, SignRequest, SignedRequest, SpvProof, request_hash};

/// Errors of the Bitcoin ground tools.
#[derive(Debug, thiserror::Error)]
pub enum BtcToolError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// A file's content is invalid.
    #[error("{path}: {message}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Finalisation failed.
    #[error("{0}")]
    Finalize(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BtcToolError + '_ {
    move |source| BtcToolError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> BtcToolError {
    BtcToolError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The BIP48 P2WSH account path of ground keys on test networks.
pub const DEFAULT_ACCOUNT: &str = "m/48'/1'/0'/2'";

#[derive(Serialize, Deserialize)]
struct SeedFile {
    /// Hex BIP32 seed (32 bytes).
    seed: String,
    /// `main` or `test` key versions.
    network: String,
}

/// Writes a new ground co-signer key (a BIP32 seed, mode 0600, never
/// overwriting) and returns its signer.
///
/// # Errors
/// [`BtcToolError`].
pub fn keygen(path: &Path, network: NetworkKind) -> Result<SoftSigner, BtcToolError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let file = SeedFile {
        seed: hex::encode(seed),
        network: match network {
            NetworkKind::Main => "main",
            NetworkKind::Test => "test",
        }
        .into(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(
        serde_json::to_string_pretty(&file)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(io(path))?;
    SoftSigner::from_seed(&seed, network).map_err(|e| invalid(path, e.to_string()))
}

/// Loads a ground co-signer key file.
///
/// # Errors
/// [`BtcToolError`].
pub fn load_key(path: &Path) -> Result<SoftSigner, BtcToolError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let f: SeedFile = serde_json::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
    let seed = hex::decode(f.seed.trim()).map_err(|e| invalid(path, format!("seed: {e}")))?;
    let network = match f.network.as_str() {
        "main" => NetworkKind::Main,
        "test" => NetworkKind::Test,
        other => return Err(invalid(path, format!("network {other:?}: main or test"))),
    };
    SoftSigner::from_seed(&seed, network).map_err(|e| invalid(path, e.to_string()))
}

/// `[fingerprint/path]xpub/<0;1>/*` of `signer` at `account` (a BIP380
/// key expression for a multisig descriptor).
///
/// # Errors
/// [`BtcToolError::Finalize`] if the path does not derive.
pub fn key_expression<S: BtcSigner>(signer: &S, account: &str) -> Result<String, BtcToolError> {
    let path = DerivationPath::from_str(account)
        .map_err(|e| BtcToolError::Finalize(format!("path {account}: {e}")))?;
    let xpub = signer
        .xpub(&path)
        .map_err(|e| BtcToolError::Finalize(e.to_string()))?;
    Ok(format!(
        "[{}/{}]{}/<0;1>/*",
        signer.master_fingerprint(),
        path.to_string().trim_start_matches("m/"),
        xpub
    ))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (PSBTs are exchanged this way).
#[must_use]
pub fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | (u32::from(*v) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(B64.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (whitespace ignored); `None` if it is not.
#[must_use]
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !clean.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for quad in clean.chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for (i, c) in quad.iter().enumerate() {
            let v = if *c == b'=' {
                pad += 1;
                0
            } else {
                if pad > 0 {
                    return None;
                }
                u32::try_from(B64.iter().position(|x| x == c)?).ok()?
            };
            n |= v << (18 - 6 * i);
        }
        if pad > 2 {
            return None;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(bytes.get(..3 - pad)?);
    }
    Some(out)
}

/// Reads a PSBT file: binary (`psbt\xff`), base64 or hex. Returns the raw
/// bytes (what the node checks, v0 or v2) and the parsed v0 form.
///
/// # Errors
/// [`BtcToolError`].
pub fn read_psbt(path: &Path) -> Result<(Vec<u8>, Psbt), BtcToolError> {
    let raw = std::fs::read(path).map_err(io(path))?;
    let bytes = if raw.starts_with(b"psbt\xff") {
        raw
    } else {
        let text = String::from_utf8_lossy(&raw);
        let t = text.trim();
        if t.starts_with("70736274ff") {
            hex::decode(t).map_err(|e| invalid(path, format!("hex: {e}")))?
        } else {
            base64_decode(t)
                .ok_or_else(|| invalid(path, "not a PSBT (binary, base64 or hex expected)"))?
        }
    };
    let (psbt, _) = spacenode_btc::psbt_v2::parse(&bytes)
        .map_err(|e| invalid(path, format!("{e} (code {:#06x})", e.code())))?;
    Ok((bytes, psbt))
}

/// One SPV proof in a proofs file (JSON list).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofJson {
    /// Funding txid (display order, as explorers show it).
    pub txid: String,
    /// `branch` (spacenode merkle branch) or `txoutproof` (`bitcoin-cli
    /// gettxoutproof`).
    pub kind: String,
    /// Proof bytes, hex.
    pub proof: String,
    /// The funding transaction, hex (empty: the PSBT's non_witness_utxo).
    #[serde(default)]
    pub tx: String,
}

impl ProofJson {
    /// To the request's form.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn to_proof(&self) -> Result<SpvProof, String> {
        let txid = bitcoin::Txid::from_str(&self.txid).map_err(|e| format!("txid: {e}"))?;
        Ok(SpvProof {
            txid: bitcoin::hashes::Hash::to_byte_array(txid),
            kind: match self.kind.as_str() {
                "branch" => ProofKind::Branch,
                "txoutproof" => ProofKind::TxOutProof,
                k => return Err(format!("kind {k:?}: branch or txoutproof")),
            },
            proof: hex::decode(&self.proof).map_err(|e| format!("proof: {e}"))?,
            tx: hex::decode(&self.tx).map_err(|e| format!("tx: {e}"))?,
        })
    }

    /// From the request's form.
    #[must_use]
    pub fn from_proof(p: &SpvProof) -> Self {
        Self {
            txid: bitcoin::Txid::from_byte_array(p.txid).to_string(),
            kind: match p.kind {
                ProofKind::Branch => "branch",
                ProofKind::TxOutProof => "txoutproof",
            }
            .into(),
            proof: hex::encode(&p.proof),
            tx: hex::encode(&p.tx),
        }
    }
}

use bitcoin::hashes::Hash as _;

/// Reads a proofs file.
///
/// # Errors
/// [`BtcToolError`].
pub fn read_proofs(path: &Path) -> Result<Vec<SpvProof>, BtcToolError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let list: Vec<ProofJson> =
        serde_json::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            p.to_proof()
                .map_err(|e| invalid(path, format!("proof {i}: {e}")))
        })
        .collect()
}

/// Writes a proofs file.
///
/// # Errors
/// [`BtcToolError::Io`].
pub fn write_proofs(path: &Path, proofs: &[SpvProof]) -> Result<(), BtcToolError> {
    let list: Vec<ProofJson> = proofs.iter().map(ProofJson::from_proof).collect();
    std::fs::write(
        path,
        serde_json::to_string_pretty(&list).unwrap_or_default() + "\n",
    )
    .map_err(io(path))
}

/// Validity of a request.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Ground time now, ms.
    pub now_ms: u64,
    /// Seconds before now the request is already valid (clock skew).
    pub skew_s: u64,
    /// Seconds after now it expires.
    pub valid_for_s: u64,
    /// The node's tip height.
    pub tip: u32,
    /// Blocks around the tip it stays valid.
    pub blocks: u32,
}

/// The request body for `psbt` (v0 or v2 bytes) with its proofs.
#[must_use]
pub fn build_request(
    request_id: [u8; 32],
    node_id: [u8; 8],
    psbt: Vec<u8>,
    proofs: Vec<SpvProof>,
    v: Validity,
) -> SignRequest {
    SignRequest {
        request_id,
        target: node_id,
        not_before_ms: v.now_ms.saturating_sub(v.skew_s.saturating_mul(1000)),
        not_after_ms: v.now_ms.saturating_add(v.valid_for_s.saturating_mul(1000)),
        not_before_height: v.tip.saturating_sub(v.blocks),
        not_after_height: v.tip.saturating_add(v.blocks),
        psbt,
        proofs,
    }
}

/// The envelope with the approvals of `approvers` (key, index in the
/// policy's approver set) over the request hash.
#[must_use]
pub fn approve(body: &SignRequest, approvers: &[(Keypair, u8)]) -> SignedRequest {
    let secp = Secp256k1::new();
    let bytes = body.encode();
    let m = Message::from_digest(request_hash(&bytes));
    let mut approvals: Vec<Signature> = approvers
        .iter()
        .map(|(k, i)| {
            let mut aux = [0u8; 32];
            rand::fill(&mut aux);
            Signature {
                signer: *i,
                sig: secp.sign_schnorr_with_aux_rand(&m, k, &aux).serialize(),
            }
        })
        .collect();
    approvals.sort_by_key(|s| s.signer);
    SignedRequest {
        body: bytes,
        approvals,
    }
}

/// Applies the node's partial signatures, co-signs with `cosigners`,
/// finalises and executes every input's script. Returns the transaction
/// and how many signatures the ground keys added.
///
/// # Errors
/// [`BtcToolError::Finalize`].
pub fn complete(
    mut psbt: Psbt,
    node_sigs: &[PartialSig],
    cosigners: &[SoftSigner],
) -> Result<(Transaction, usize), BtcToolError> {
    let secp = Secp256k1::new();
    apply_signatures(&mut psbt, node_sigs).map_err(|e| BtcToolError::Finalize(e.to_string()))?;
    let mut added = 0usize;
    for c in cosigners {
        added = added.saturating_add(
            sign_as_cosigner(&secp, &mut psbt, c)
                .map_err(|e| BtcToolError::Finalize(e.to_string()))?,
        );
    }
    let prevouts: Vec<TxOut> = psbt
        .inputs
        .iter()
        .map(|i| {
            i.witness_utxo
                .clone()
                .ok_or_else(|| BtcToolError::Finalize("an input lacks its witness_utxo".into()))
        })
        .collect::<Result<_, _>>()?;
    let tx = finalize(&secp, psbt).map_err(|e| BtcToolError::Finalize(e.to_string()))?;
    verify_transaction(&secp, &tx, &prevouts).map_err(|e| BtcToolError::Finalize(e.to_string()))?;
    Ok((tx, added))
}

/// Adds the node's signatures to `psbt` (for a PSBT that still needs other
/// signers).
///
/// # Errors
/// [`BtcToolError::Finalize`].
pub fn add_node_signatures(psbt: &mut Psbt, sigs: &[u8]) -> Result<Vec<PartialSig>, BtcToolError> {
    let sigs = decode_sigs(sigs).map_err(|e| BtcToolError::Finalize(e.to_string()))?;
    apply_signatures(psbt, &sigs).map_err(|e| BtcToolError::Finalize(e.to_string()))?;
    Ok(sigs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..40usize {
            let b: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&b)).unwrap(), b);
        }
        assert_eq!(base64_encode(b"psbt\xff"), "cHNidP8=");
        assert!(base64_decode("cHN").is_none());
        assert!(base64_decode("c=Nb").is_none());
    }

    #[test]
    fn key_files_and_expressions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.json");
        let k = keygen(&p, NetworkKind::Test).unwrap();
        assert!(keygen(&p, NetworkKind::Test).is_err(), "never overwrites");
        let back = load_key(&p).unwrap();
        assert_eq!(k.master_fingerprint(), back.master_fingerprint());
        let e = key_expression(&back, DEFAULT_ACCOUNT).unwrap();
        assert!(
            e.contains("/48'/1'/0'/2']tpub") && e.ends_with("/<0;1>/*"),
            "{e}"
        );
    }
}
