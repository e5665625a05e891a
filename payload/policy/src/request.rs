//! Sign requests: the envelope the ground uplinks, its hash, its validity
//! window, ground approvals and request-id bookkeeping.
//!
//! ```text
//! body   := CBOR { 0: format (1), 1: request_id bytes32, 2: target node id bytes8,
//!                  3: not_before_ms, 4: not_after_ms,            (node time, UNIX ms)
//!                  5: not_before_height, 6: not_after_height,    (header-chain tip)
//!                  7: psbt bytes (BIP174 v0 or BIP370 v2),
//!                  8: [ proof ... ] }
//! proof  := CBOR { 0: txid bytes32 (internal order), 1: kind (0 merkle branch, 1 gettxoutproof),
//!                  2: proof bytes (spacenode-chain encodings), 3: funding tx bytes (empty: the
//!                  PSBT's non_witness_utxo of an input spending that txid) }
//! signed := CBOR { 0: body bytes, 1: [ { 0: approver index, 1: BIP340 sig } ... ] }
//! request_hash := BIP340 tagged hash "spacenode/sign-request/v1" of body
//! ```
//!
//! Ethereum requests use the same signed envelope and hash with another
//! body format (the format number is the first key, so a Bitcoin decoder
//! refuses an Ethereum body and vice versa, and [`body_format`] tells the
//! node which signer a request is for):
//!
//! ```text
//! eth body := CBOR { 0: format (2), 1: request_id bytes32, 2: target node id bytes8,
//!                    3: not_before_ms, 4: not_after_ms,
//!                    5: kind (0 transaction, 1 Safe owner signature, 2 Safe approveHash),
//!                    6: account index i of m/44'/60'/0'/0/i (< 2^31),
//!                    7: unsigned transaction (EIP-2718 type-2 or EIP-155 legacy signing
//!                       payload; empty for kind 1),
//!                    8: Safe transaction (`spacenode_eth::safe::SafeTx` encoding; empty
//!                       for kind 0) }
//! ```
//!
//! Approvals sign `request_hash` (the body), so a retry with more or other
//! approvals is the same request: the seen-ids table stores
//! `(request_id, request_hash)` and a retry returns the stored result.
//!
//! Owns: encoding, [`SignedRequest::check_envelope`] (target, window,
//! approvals) and [`seen_decision`]. Must never: accept a request outside
//! its window, treat two different bodies under one id as the same request,
//! or count an approval that does not verify.
#![deny(clippy::arithmetic_side_effects)]

use bitcoin::secp256k1::{Secp256k1, Verification};

use crate::cbor::{self, CborError, Fields, Value, bytes, uint};
use crate::document::{KeySet, signatures_from, signatures_value};
use crate::quorum::{AdminSet, QuorumError, Signature, tagged_hash};
use crate::rules::Rule;
use crate::units::TimeMs;

/// BIP340 tag of request hashes and approvals.
pub const REQUEST_TAG: &str = "spacenode/sign-request/v1";
/// Format number of Bitcoin request bodies.
pub const FORMAT: u64 = 1;
/// Format number of Ethereum request bodies.
pub const ETH_FORMAT: u64 = 2;
/// Largest unsigned transaction or Safe transaction in an Ethereum request
/// (geth's transaction pool refuses transactions above 128 KiB).
pub const MAX_ETH_PAYLOAD: usize = 128 * 1024;
/// Largest encoded request (PSBT + proofs) the decoder accepts; the policy's
/// `max_psbt_bytes` is usually lower.
pub const MAX_REQUEST_LEN: usize = 4 * 1024 * 1024;
/// Most SPV proofs in one request.
pub const MAX_PROOFS: usize = 1024;

/// Errors of requests. Codes 0x0580..=0x059F.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Envelope does not decode.
    #[error("malformed request: {0}")]
    Malformed(#[from] CborError),
    /// Unknown format.
    #[error("request format {0} not supported")]
    UnsupportedFormat(u64),
    /// Larger than [`MAX_REQUEST_LEN`].
    #[error("request of {0} bytes too large")]
    TooLarge(usize),
    /// Node time outside `[not_before_ms, not_after_ms]`.
    #[error("request valid from {not_before_ms} to {not_after_ms} ms, node time {now_ms} ms")]
    ExpiredTime {
        /// Window start.
        not_before_ms: u64,
        /// Window end.
        not_after_ms: u64,
        /// Node time.
        now_ms: i64,
    },
    /// Tip height outside `[not_before_height, not_after_height]`.
    #[error("request valid from height {not_before} to {not_after}, tip {tip}")]
    ExpiredHeight {
        /// Window start.
        not_before: u32,
        /// Window end.
        not_after: u32,
        /// Our tip.
        tip: u32,
    },
    /// Request for another node.
    #[error("request for another node")]
    WrongTarget,
    /// The id was used before for a different body.
    #[error("request id reused with different content")]
    IdReuse,
    /// Not enough valid approvals.
    #[error("approvals: {0}")]
    Approvals(QuorumError),
}

impl RequestError {
    /// Stable reason code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Malformed(_) => 0x0580,
            Self::UnsupportedFormat(_) => 0x0581,
            Self::TooLarge(_) => 0x0582,
            Self::ExpiredTime { .. } => 0x0583,
            Self::ExpiredHeight { .. } => 0x0584,
            Self::WrongTarget => 0x0585,
            Self::IdReuse => 0x0586,
            Self::Approvals(_) => 0x0587,
        }
    }

    /// The rule the refusal is reported under.
    #[must_use]
    pub fn rule(&self) -> Rule {
        match self {
            Self::Malformed(_) | Self::UnsupportedFormat(_) | Self::WrongTarget => {
                Rule::RequestMalformed
            }
            Self::TooLarge(_) => Rule::Oversize,
            Self::ExpiredTime { .. } | Self::ExpiredHeight { .. } => Rule::RequestExpired,
            Self::IdReuse => Rule::RequestIdReuse,
            Self::Approvals(_) => Rule::Approvals,
        }
    }
}

/// Kind of an SPV proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    /// `spacenode_chain::MerkleBranch` encoding.
    Branch,
    /// Bitcoin Core `gettxoutproof` (BIP37 merkle block) bytes.
    TxOutProof,
}

/// Proof that a funding transaction is in a block of our chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpvProof {
    /// Txid of the funding transaction (internal byte order).
    pub txid: [u8; 32],
    /// Proof format.
    pub kind: ProofKind,
    /// Proof bytes.
    pub proof: Vec<u8>,
    /// Full funding transaction, or empty to use the PSBT's
    /// `non_witness_utxo` for that txid.
    pub tx: Vec<u8>,
}

/// The signed part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// Ground-chosen id (random 32 bytes).
    pub request_id: [u8; 32],
    /// Node id (as in administrator commands).
    pub target: [u8; 8],
    /// Earliest node time, UNIX ms.
    pub not_before_ms: u64,
    /// Latest node time, UNIX ms.
    pub not_after_ms: u64,
    /// Lowest tip height.
    pub not_before_height: u32,
    /// Highest tip height.
    pub not_after_height: u32,
    /// PSBT bytes (v0 or v2).
    pub psbt: Vec<u8>,
    /// SPV proofs, one per funding transaction.
    pub proofs: Vec<SpvProof>,
}

impl SignRequest {
    /// Canonical body bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let proofs = self
            .proofs
            .iter()
            .map(|p| {
                Value::Map(vec![
                    (0, bytes(&p.txid)),
                    (
                        1,
                        uint(match p.kind {
                            ProofKind::Branch => 0u8,
                            ProofKind::TxOutProof => 1,
                        }),
                    ),
                    (2, bytes(&p.proof)),
                    (3, bytes(&p.tx)),
                ])
            })
            .collect();
        cbor::encode(&Value::Map(vec![
            (0, uint(FORMAT)),
            (1, bytes(&self.request_id)),
            (2, bytes(&self.target)),
            (3, uint(self.not_before_ms)),
            (4, uint(self.not_after_ms)),
            (5, uint(self.not_before_height)),
            (6, uint(self.not_after_height)),
            (7, bytes(&self.psbt)),
            (8, Value::Array(proofs)),
        ]))
    }

    /// Strict decoding of body bytes.
    ///
    /// # Errors
    /// [`RequestError`].
    pub fn decode(b: &[u8]) -> Result<Self, RequestError> {
        if b.len() > MAX_REQUEST_LEN {
            return Err(RequestError::TooLarge(b.len()));
        }
        let mut f = Fields::new("request", cbor::decode(b)?)?;
        let format = f.uint(0, "format")?;
        if format != FORMAT {
            return Err(RequestError::UnsupportedFormat(format));
        }
        let request_id = f.array(1, "request_id")?;
        let target = f.array(2, "target")?;
        let not_before_ms = f.uint(3, "not_before_ms")?;
        let not_after_ms = f.uint(4, "not_after_ms")?;
        let h = |v: u64, n: &'static str| {
            u32::try_from(v).map_err(|_| RequestError::Malformed(cbor::shape(n, "above u32")))
        };
        let not_before_height = h(f.uint(5, "not_before_height")?, "not_before_height")?;
        let not_after_height = h(f.uint(6, "not_after_height")?, "not_after_height")?;
        let psbt = f.bytes(7, "psbt")?;
        let list = f.list(8, "proofs")?;
        f.finish()?;
        if list.len() > MAX_PROOFS {
            return Err(RequestError::Malformed(cbor::shape("proofs", "too many")));
        }
        let proofs = list
            .into_iter()
            .map(|p| {
                let mut g = Fields::new("proof", p)?;
                let txid = g.array(0, "proof.txid")?;
                let kind = match g.uint(1, "proof.kind")? {
                    0 => ProofKind::Branch,
                    1 => ProofKind::TxOutProof,
                    _ => {
                        return Err(RequestError::Malformed(cbor::shape(
                            "proof.kind",
                            "unknown",
                        )));
                    }
                };
                let proof = g.bytes(2, "proof.proof")?;
                let tx = g.bytes(3, "proof.tx")?;
                g.finish()?;
                Ok(SpvProof {
                    txid,
                    kind,
                    proof,
                    tx,
                })
            })
            .collect::<Result<Vec<_>, RequestError>>()?;
        Ok(Self {
            request_id,
            target,
            not_before_ms,
            not_after_ms,
            not_before_height,
            not_after_height,
            psbt,
            proofs,
        })
    }
}

/// The hash approvals sign and the seen-ids table stores.
#[must_use]
pub fn request_hash(body: &[u8]) -> [u8; 32] {
    tagged_hash(REQUEST_TAG, body)
}

/// A request with ground approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Canonical body bytes.
    pub body: Vec<u8>,
    /// Approvals by the policy's approver keys.
    pub approvals: Vec<Signature>,
}

/// A request that passed the envelope checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The decoded body.
    pub request: SignRequest,
    /// Its hash.
    pub hash: [u8; 32],
    /// Approver indexes that signed.
    pub approvers: Vec<u8>,
}

impl SignedRequest {
    /// Wire form.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (0, bytes(&self.body)),
            (1, signatures_value(&self.approvals)),
        ]))
    }

    /// Parses the wire form (the body is decoded by `check_envelope`).
    ///
    /// # Errors
    /// [`RequestError`].
    pub fn decode(b: &[u8]) -> Result<Self, RequestError> {
        if b.len() > MAX_REQUEST_LEN {
            return Err(RequestError::TooLarge(b.len()));
        }
        let mut f = Fields::new("signed request", cbor::decode(b)?)?;
        let body = f.bytes(0, "body")?;
        let approvals = signatures_from(f.req(1, "approvals")?)?;
        f.finish()?;
        Ok(Self { body, approvals })
    }

    /// The request hash of the body.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        request_hash(&self.body)
    }

    /// Decodes the body and checks, in order: target node, node-time
    /// window, height window, approvals (`approvers.threshold` valid
    /// distinct signatures over the request hash; threshold 0 needs none).
    /// Seen-ids ([`seen_decision`]) and the clock guard are separate.
    ///
    /// # Errors
    /// The first [`RequestError`].
    pub fn check_envelope<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        node: [u8; 8],
        approvers: &KeySet,
        now: TimeMs,
        tip_height: u32,
    ) -> Result<CheckedRequest, RequestError> {
        let request = SignRequest::decode(&self.body)?;
        self.check_decoded(secp, request, node, approvers, now, tip_height)
    }

    /// [`SignedRequest::check_envelope`] for a body already decoded (the
    /// sign pipeline decodes it once, for its id).
    ///
    /// # Errors
    /// As [`SignedRequest::check_envelope`].
    pub fn check_decoded<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        request: SignRequest,
        node: [u8; 8],
        approvers: &KeySet,
        now: TimeMs,
        tip_height: u32,
    ) -> Result<CheckedRequest, RequestError> {
        check_target_and_time(
            node,
            request.target,
            request.not_before_ms,
            request.not_after_ms,
            now,
        )?;
        if tip_height < request.not_before_height || tip_height > request.not_after_height {
            return Err(RequestError::ExpiredHeight {
                not_before: request.not_before_height,
                not_after: request.not_after_height,
                tip: tip_height,
            });
        }
        let approvers_ok = self.check_approvals(secp, approvers)?;
        Ok(CheckedRequest {
            request,
            hash: self.hash(),
            approvers: approvers_ok,
        })
    }

    /// The Ethereum counterpart of [`SignedRequest::check_envelope`]:
    /// decodes an [`EthSignRequest`] body and checks target node, node-time
    /// window and approvals (Ethereum requests carry no height window).
    ///
    /// # Errors
    /// The first [`RequestError`].
    pub fn check_eth_envelope<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        node: [u8; 8],
        approvers: &KeySet,
        now: TimeMs,
    ) -> Result<CheckedEthRequest, RequestError> {
        let request = EthSignRequest::decode(&self.body)?;
        self.check_eth_decoded(secp, request, node, approvers, now)
    }

    /// [`SignedRequest::check_eth_envelope`] for a body already decoded.
    ///
    /// # Errors
    /// As [`SignedRequest::check_eth_envelope`].
    pub fn check_eth_decoded<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        request: EthSignRequest,
        node: [u8; 8],
        approvers: &KeySet,
        now: TimeMs,
    ) -> Result<CheckedEthRequest, RequestError> {
        check_target_and_time(
            node,
            request.target,
            request.not_before_ms,
            request.not_after_ms,
            now,
        )?;
        let approvers_ok = self.check_approvals(secp, approvers)?;
        Ok(CheckedEthRequest {
            request,
            hash: self.hash(),
            approvers: approvers_ok,
        })
    }

    fn check_approvals<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        approvers: &KeySet,
    ) -> Result<Vec<u8>, RequestError> {
        if approvers.threshold == 0 {
            return Ok(Vec::new());
        }
        let set = AdminSet::new(approvers.keys.clone(), usize::from(approvers.threshold))
            .map_err(RequestError::Approvals)?;
        set.verify(secp, REQUEST_TAG, &self.body, &self.approvals)
            .map_err(RequestError::Approvals)
    }
}

fn check_target_and_time(
    node: [u8; 8],
    target: [u8; 8],
    not_before_ms: u64,
    not_after_ms: u64,
    now: TimeMs,
) -> Result<(), RequestError> {
    if target != node {
        return Err(RequestError::WrongTarget);
    }
    let now_ok = u64::try_from(now.0).is_ok_and(|n| n >= not_before_ms && n <= not_after_ms);
    if !now_ok {
        return Err(RequestError::ExpiredTime {
            not_before_ms,
            not_after_ms,
            now_ms: now.0,
        });
    }
    Ok(())
}

/// The format number of a request body (key 0): [`FORMAT`] for Bitcoin,
/// [`ETH_FORMAT`] for Ethereum. Tells the node which signer to hand a
/// request to; each signer's decoder then checks the whole body.
///
/// # Errors
/// [`RequestError::Malformed`] if the body is not a canonical CBOR map
/// starting with key 0, [`RequestError::TooLarge`].
pub fn body_format(body: &[u8]) -> Result<u64, RequestError> {
    if body.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLarge(body.len()));
    }
    let mut f = Fields::new("request", cbor::decode(body)?)?;
    Ok(f.uint(0, "format")?)
}

/// What an Ethereum request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EthKind {
    /// Sign an Ethereum transaction from the node's account.
    Transaction,
    /// Sign a registered Safe's SafeTx hash (EIP-712) as an owner.
    SafeSignature,
    /// Sign a transaction from the node's owner account calling the Safe's
    /// `approveHash(safeTxHash)`.
    SafeApproveHash,
}

impl EthKind {
    /// Wire number.
    #[must_use]
    pub fn id(self) -> u8 {
        match self {
            Self::Transaction => 0,
            Self::SafeSignature => 1,
            Self::SafeApproveHash => 2,
        }
    }

    /// From the wire number.
    #[must_use]
    pub fn from_id(v: u64) -> Option<Self> {
        match v {
            0 => Some(Self::Transaction),
            1 => Some(Self::SafeSignature),
            2 => Some(Self::SafeApproveHash),
            _ => None,
        }
    }
}

/// The signed part of an Ethereum request (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthSignRequest {
    /// Ground-chosen id (random 32 bytes).
    pub request_id: [u8; 32],
    /// Node id.
    pub target: [u8; 8],
    /// Earliest node time, UNIX ms.
    pub not_before_ms: u64,
    /// Latest node time, UNIX ms.
    pub not_after_ms: u64,
    /// What to sign.
    pub kind: EthKind,
    /// Account index `i` of `m/44'/60'/0'/0/i`.
    pub account: u32,
    /// Unsigned transaction (kinds 0 and 2).
    pub transaction: Vec<u8>,
    /// Safe transaction (kinds 1 and 2).
    pub safe_tx: Vec<u8>,
}

impl EthSignRequest {
    /// Canonical body bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&Value::Map(vec![
            (0, uint(ETH_FORMAT)),
            (1, bytes(&self.request_id)),
            (2, bytes(&self.target)),
            (3, uint(self.not_before_ms)),
            (4, uint(self.not_after_ms)),
            (5, uint(self.kind.id())),
            (6, uint(self.account)),
            (7, bytes(&self.transaction)),
            (8, bytes(&self.safe_tx)),
        ]))
    }

    /// Strict decoding of body bytes; the payloads present must match the
    /// kind (the payloads themselves are decoded by `spacenode-eth`).
    ///
    /// # Errors
    /// [`RequestError`].
    pub fn decode(b: &[u8]) -> Result<Self, RequestError> {
        if b.len() > MAX_REQUEST_LEN {
            return Err(RequestError::TooLarge(b.len()));
        }
        let mut f = Fields::new("eth request", cbor::decode(b)?)?;
        let format = f.uint(0, "format")?;
        if format != ETH_FORMAT {
            return Err(RequestError::UnsupportedFormat(format));
        }
        let request_id = f.array(1, "request_id")?;
        let target = f.array(2, "target")?;
        let not_before_ms = f.uint(3, "not_before_ms")?;
        let not_after_ms = f.uint(4, "not_after_ms")?;
        let kind = EthKind::from_id(f.uint(5, "kind")?)
            .ok_or_else(|| RequestError::Malformed(cbor::shape("kind", "unknown")))?;
        let account = u32::try_from(f.uint(6, "account")?)
            .ok()
            .filter(|a| *a < 0x8000_0000)
            .ok_or_else(|| RequestError::Malformed(cbor::shape("account", "not below 2^31")))?;
        let transaction = f.bytes(7, "transaction")?;
        let safe_tx = f.bytes(8, "safe_tx")?;
        f.finish()?;
        if transaction.len() > MAX_ETH_PAYLOAD || safe_tx.len() > MAX_ETH_PAYLOAD {
            return Err(RequestError::TooLarge(b.len()));
        }
        let (want_tx, want_safe) = match kind {
            EthKind::Transaction => (true, false),
            EthKind::SafeSignature => (false, true),
            EthKind::SafeApproveHash => (true, true),
        };
        if want_tx == transaction.is_empty() || want_safe == safe_tx.is_empty() {
            return Err(RequestError::Malformed(cbor::shape(
                "payload",
                "transaction / safe_tx presence does not match the kind",
            )));
        }
        Ok(Self {
            request_id,
            target,
            not_before_ms,
            not_after_ms,
            kind,
            account,
            transaction,
            safe_tx,
        })
    }
}

/// An Ethereum request that passed the envelope checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEthRequest {
    /// The decoded body.
    pub request: EthSignRequest,
    /// Its hash.
    pub hash: [u8; 32],
    /// Approver indexes that signed.
    pub approvers: Vec<u8>,
}

/// What to do with a request id given the seen-ids table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen: evaluate it.
    New,
    /// Same id, same body: return the stored result (signature or refusal),
    /// evaluate nothing again.
    Replay,
}

/// Decides on a request id. `stored` is the request hash the node persisted
/// for this id (table `seen_requests(request_id PRIMARY KEY, request_hash,
/// result)`), if any.
///
/// # Errors
/// [`RequestError::IdReuse`] when the id is known with another hash.
pub fn seen_decision(stored: Option<[u8; 32]>, hash: [u8; 32]) -> Result<Seen, RequestError> {
    match stored {
        None => Ok(Seen::New),
        Some(h) if h == hash => Ok(Seen::Replay),
        Some(_) => Err(RequestError::IdReuse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::tests::kp;
    use bitcoin::secp256k1::Message;
    use proptest::prelude::*;

    const NODE: [u8; 8] = *b"node-001";

    fn req() -> SignRequest {
        SignRequest {
            request_id: [7; 32],
            target: NODE,
            not_before_ms: 1_000,
            not_after_ms: 2_000,
            not_before_height: 10,
            not_after_height: 20,
            psbt: b"psbt\xff".to_vec(),
            proofs: vec![SpvProof {
                txid: [1; 32],
                kind: ProofKind::Branch,
                proof: vec![1, 2, 3],
                tx: vec![],
            }],
        }
    }

    fn approvers() -> KeySet {
        KeySet {
            keys: vec![kp(9).x_only_public_key().0, kp(8).x_only_public_key().0],
            threshold: 1,
        }
    }

    fn signed(r: &SignRequest, by: &[u8]) -> SignedRequest {
        let secp = Secp256k1::new();
        let body = r.encode();
        let m = Message::from_digest(request_hash(&body));
        SignedRequest {
            approvals: by
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: secp
                        .sign_schnorr_no_aux_rand(&m, &kp(if i == 0 { 9 } else { 8 }))
                        .serialize(),
                })
                .collect(),
            body,
        }
    }

    #[test]
    fn envelope_round_trip_and_accept() {
        let secp = Secp256k1::verification_only();
        let s = SignedRequest::decode(&signed(&req(), &[0]).encode()).unwrap();
        let c = s
            .check_envelope(&secp, NODE, &approvers(), TimeMs(1_500), 15)
            .unwrap();
        assert_eq!(c.request, req());
        assert_eq!(c.approvers, vec![0]);
    }

    #[test]
    fn expired_in_time_or_height_refused() {
        let secp = Secp256k1::verification_only();
        let s = signed(&req(), &[0]);
        for (now, tip) in [(999, 15), (2_001, 15), (1_500, 9), (1_500, 21), (-5, 15)] {
            let e = s
                .check_envelope(&secp, NODE, &approvers(), TimeMs(now), tip)
                .unwrap_err();
            assert_eq!(e.rule(), Rule::RequestExpired, "{now} {tip}");
        }
    }

    #[test]
    fn approvals_are_required_and_checked() {
        let secp = Secp256k1::verification_only();
        let none = signed(&req(), &[]);
        let e = none
            .check_envelope(&secp, NODE, &approvers(), TimeMs(1_500), 15)
            .unwrap_err();
        assert_eq!(e.rule(), Rule::Approvals);
        let mut forged = signed(&req(), &[1]);
        forged.approvals[0].signer = 0;
        let e = forged
            .check_envelope(&secp, NODE, &approvers(), TimeMs(1_500), 15)
            .unwrap_err();
        assert_eq!(e.rule(), Rule::Approvals);
        let zero = KeySet {
            keys: vec![],
            threshold: 0,
        };
        assert!(
            none.check_envelope(&secp, NODE, &zero, TimeMs(1_500), 15)
                .is_ok()
        );
        let e = signed(&req(), &[0]).check_envelope(
            &secp,
            *b"node-002",
            &approvers(),
            TimeMs(1_500),
            15,
        );
        assert_eq!(e.unwrap_err(), RequestError::WrongTarget);
    }

    #[test]
    fn seen_ids() {
        let a = signed(&req(), &[0]);
        let mut other = req();
        other.psbt.push(0);
        let b = signed(&other, &[0]);
        assert_eq!(seen_decision(None, a.hash()), Ok(Seen::New));
        assert_eq!(seen_decision(Some(a.hash()), a.hash()), Ok(Seen::Replay));
        // More approvals: same request.
        assert_eq!(
            seen_decision(Some(a.hash()), signed(&req(), &[0, 1]).hash()),
            Ok(Seen::Replay)
        );
        let e = seen_decision(Some(a.hash()), b.hash()).unwrap_err();
        assert_eq!(e.rule(), Rule::RequestIdReuse);
    }

    fn eth_req(kind: EthKind) -> EthSignRequest {
        EthSignRequest {
            request_id: [3; 32],
            target: NODE,
            not_before_ms: 1_000,
            not_after_ms: 2_000,
            kind,
            account: 7,
            transaction: if kind == EthKind::SafeSignature {
                vec![]
            } else {
                vec![0x02, 0xc0]
            },
            safe_tx: if kind == EthKind::Transaction {
                vec![]
            } else {
                vec![0xa0]
            },
        }
    }

    fn signed_eth(r: &EthSignRequest, by: &[u8]) -> SignedRequest {
        let secp = Secp256k1::new();
        let body = r.encode();
        let m = Message::from_digest(request_hash(&body));
        SignedRequest {
            approvals: by
                .iter()
                .map(|&i| Signature {
                    signer: i,
                    sig: secp
                        .sign_schnorr_no_aux_rand(&m, &kp(if i == 0 { 9 } else { 8 }))
                        .serialize(),
                })
                .collect(),
            body,
        }
    }

    #[test]
    fn eth_envelope_round_trip_accept_and_refuse() {
        let secp = Secp256k1::verification_only();
        for kind in [
            EthKind::Transaction,
            EthKind::SafeSignature,
            EthKind::SafeApproveHash,
        ] {
            let r = eth_req(kind);
            assert_eq!(EthSignRequest::decode(&r.encode()).unwrap(), r);
            let s = SignedRequest::decode(&signed_eth(&r, &[1]).encode()).unwrap();
            assert_eq!(body_format(&s.body), Ok(ETH_FORMAT));
            let c = s
                .check_eth_envelope(&secp, NODE, &approvers(), TimeMs(1_500))
                .unwrap();
            assert_eq!(c.request, r);
            assert_eq!(c.approvers, vec![1]);
            for now in [999, 2_001, -1] {
                let e = s
                    .check_eth_envelope(&secp, NODE, &approvers(), TimeMs(now))
                    .unwrap_err();
                assert_eq!(e.rule(), Rule::RequestExpired);
            }
            let e = signed_eth(&r, &[])
                .check_eth_envelope(&secp, NODE, &approvers(), TimeMs(1_500))
                .unwrap_err();
            assert_eq!(e.rule(), Rule::Approvals);
            // A Bitcoin decoder refuses the Ethereum body and vice versa.
            assert_eq!(
                SignRequest::decode(&r.encode()),
                Err(RequestError::UnsupportedFormat(ETH_FORMAT))
            );
        }
        assert_eq!(body_format(&req().encode()), Ok(FORMAT));
        assert_eq!(
            EthSignRequest::decode(&req().encode()),
            Err(RequestError::UnsupportedFormat(FORMAT))
        );
        // Payloads must match the kind.
        let mut r = eth_req(EthKind::Transaction);
        r.safe_tx = vec![1];
        assert_eq!(
            EthSignRequest::decode(&r.encode()).unwrap_err().rule(),
            Rule::RequestMalformed
        );
        let mut r = eth_req(EthKind::SafeApproveHash);
        r.transaction.clear();
        assert!(EthSignRequest::decode(&r.encode()).is_err());
        let mut r = eth_req(EthKind::Transaction);
        r.account = 0x8000_0000;
        assert!(EthSignRequest::decode(&r.encode()).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedRequest::decode(&b);
            let _ = SignRequest::decode(&b);
            let _ = EthSignRequest::decode(&b);
            let _ = body_format(&b);
        }
    }
}
