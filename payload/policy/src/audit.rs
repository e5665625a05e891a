//! Audit log: hash-chained decision entries with node-signed receipts.
//!
//! ```text
//! entry := CBOR { 0: seq, 1: time_ms, 2: request_id bytes32, 3: request_hash bytes32,
//!                 4: decision (0 refused, 1 approved, 2 replayed), 5: rule tag text,
//!                 6: reason code (0 when approved), 7: policy version, 8: policy hash bytes32,
//!                 9: counters { 0: amount sat, 1: fee sat, 2: [window totals sat] },
//!                 10: txid bytes (32, or empty), 11: [signature bytes ...], 12: prev_hash bytes32,
//!                 13: eth counters (only in Ethereum entries, see below) }
//! eth    := { 0: chain id, 1: native amount wei (16-byte BE), 2: max fee wei (16),
//!             3: [window totals wei (16)], 4: [{0: token address 20, 1: amount (16),
//!             2: [window totals (16)]}] }
//! entry_hash := BIP340 tagged hash "spacenode/audit-entry/v1" of entry
//! receipt    := BIP340 signature by the node receipt key over
//!               tagged hash "spacenode/audit-receipt/v1" of entry_hash
//! ```
//!
//! The first entry's `prev_hash` is 32 zero bytes. The receipt key is a
//! dedicated BIP32 key of the node seed ([`RECEIPT_PATH`], equal to
//! `spacenode_btc::signer::RECEIPT_PATH`, `m/21326'/1'/0'`, untweaked
//! x-only), so a receipt can never be confused with a spending signature.
//!
//! Bitcoin and Ethereum decisions share one log. An Ethereum entry carries
//! key 13 (amounts in wei and token units do not fit the sat counters of
//! key 9, which it leaves at zero), the transaction hash or SafeTx hash in
//! key 10 and 65-byte `r || s || v` signatures in key 11. Entries without
//! key 13 encode exactly as before it existed.
//!
//! The node keeps a bounded number of entries (issue 13 item 9): older
//! ones are archived in segments and dropped from the database, and a
//! [`Checkpoint`] signed by the same receipt key vouches for the archived
//! part:
//!
//! ```text
//! checkpoint := end_seq u64 BE | chain_hash 32      (40 bytes)
//! signature  := BIP340 by the node receipt key over
//!               tagged hash "spacenode/audit-checkpoint/v1" of checkpoint
//! ```
//!
//! `chain_hash` is the entry hash of entry `end_seq`, i.e. the `prev_hash`
//! of entry `end_seq + 1`; [`verify_from_checkpoint`] verifies a pruned
//! log (the entries after `end_seq`) from it, so the chain still verifies
//! end to end without the archived rows.
//!
//! Owns: [`AuditEntry`], its encoding and hash, [`AuditLog`] (persisted
//! head: next seq + last hash), [`Checkpoint`], [`verify_receipt`],
//! [`verify_chain`], [`verify_from_checkpoint`]. Must never: produce two
//! entries with one seq, or an entry whose prev_hash is not the head.

use bitcoin::secp256k1::{Message, Secp256k1, Verification, XOnlyPublicKey, schnorr};

use crate::cbor::{self, CborError, Fields, Value, as_bytes, bytes, uint};
use crate::quorum::tagged_hash;
use crate::units::{Sats, TimeMs, TokenAmount, Wei};
use alloy_primitives::Address;

/// Tag of entry hashes.
pub const ENTRY_TAG: &str = "spacenode/audit-entry/v1";
/// Tag of receipt messages.
pub const RECEIPT_TAG: &str = "spacenode/audit-receipt/v1";
/// Tag of checkpoint messages.
pub const CHECKPOINT_TAG: &str = "spacenode/audit-checkpoint/v1";
/// Hardened BIP32 indexes of the node's receipt key, `m/21326'/1'/0'`
/// (purpose 0x534E "SN", 1' receipts, 0' key generation). Both signing
/// crates sign receipts with this key.
pub const RECEIPT_PATH: [u32; 3] = [21326, 1, 0];

/// Errors verifying audit data. Codes 0x05C0..=0x05CF and 0x05E1..=0x05E2
/// (ground side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Entry bytes do not decode.
    #[error("audit entry malformed: {0}")]
    Malformed(#[from] CborError),
    /// Receipt signature invalid.
    #[error("audit entry {seq}: receipt does not verify")]
    BadReceipt {
        /// Entry seq.
        seq: u64,
    },
    /// prev_hash does not link.
    #[error("audit entry {seq}: previous hash does not link")]
    BrokenChain {
        /// Entry seq.
        seq: u64,
    },
    /// Sequence numbers not consecutive.
    #[error("audit entry seq {got} where {expected} was expected")]
    SeqGap {
        /// Expected.
        expected: u64,
        /// Found.
        got: u64,
    },
    /// The checkpoint's signature does not verify (or it does not decode).
    #[error("audit checkpoint at seq {end_seq}: signature does not verify")]
    BadCheckpoint {
        /// The checkpoint's last archived seq.
        end_seq: u64,
    },
}

impl AuditError {
    /// Stable code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Malformed(_) => 0x05C0,
            Self::BadReceipt { .. } => 0x05C1,
            Self::BrokenChain { .. } => 0x05C2,
            Self::SeqGap { .. } => 0x05C3,
            Self::BadCheckpoint { .. } => 0x05E1,
        }
    }
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Refused (code and rule say why).
    Refused = 0,
    /// Signed.
    Approved = 1,
    /// A retry answered from the stored result.
    Replayed = 2,
}

/// Numbers the decision was based on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// Amount leaving the wallets.
    pub amount: Sats,
    /// Fee.
    pub fee: Sats,
    /// Velocity totals per window after this spend (policy order).
    pub window_totals: Vec<Sats>,
}

/// What an Ethereum decision moved, per token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenCounters {
    /// Token contract.
    pub token: Address,
    /// Amount transferred (and refunds paid in it).
    pub amount: TokenAmount,
    /// Velocity totals per window after this spend (policy order).
    pub window_totals: Vec<TokenAmount>,
}

/// Numbers an Ethereum decision was based on (key 13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EthCounters {
    /// Chain id.
    pub chain_id: u64,
    /// Native coin leaving the account or Safe: values, maximum fee and
    /// native refunds.
    pub native: Wei,
    /// Maximum fee of the signed transaction (`gas_limit * max_fee`).
    pub fee: Wei,
    /// Velocity totals per window after this spend (policy order).
    pub window_totals: Vec<Wei>,
    /// Tokens moved.
    pub tokens: Vec<TokenCounters>,
}

fn wei16(v: u128) -> Value {
    bytes(&v.to_be_bytes())
}

fn as_u128(v: Value, field: &'static str) -> Result<u128, CborError> {
    Ok(u128::from_be_bytes(cbor::as_array::<16>(v, field)?))
}

impl EthCounters {
    fn to_value(&self) -> Value {
        Value::Map(vec![
            (0, uint(self.chain_id)),
            (1, wei16(self.native.0)),
            (2, wei16(self.fee.0)),
            (
                3,
                Value::Array(self.window_totals.iter().map(|w| wei16(w.0)).collect()),
            ),
            (
                4,
                Value::Array(
                    self.tokens
                        .iter()
                        .map(|t| {
                            Value::Map(vec![
                                (0, bytes(t.token.as_slice())),
                                (1, wei16(t.amount.0)),
                                (
                                    2,
                                    Value::Array(
                                        t.window_totals.iter().map(|w| wei16(w.0)).collect(),
                                    ),
                                ),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    }

    fn from_value(v: Value) -> Result<Self, CborError> {
        let mut f = Fields::new("eth counters", v)?;
        let chain_id = f.uint(0, "eth.chain_id")?;
        let native = Wei(as_u128(f.req(1, "eth.native")?, "eth.native")?);
        let fee = Wei(as_u128(f.req(2, "eth.fee")?, "eth.fee")?);
        let window_totals = f
            .list(3, "eth.window_totals")?
            .into_iter()
            .map(|v| as_u128(v, "eth.window_totals").map(Wei))
            .collect::<Result<_, _>>()?;
        let tokens = f
            .list(4, "eth.tokens")?
            .into_iter()
            .map(|t| {
                let mut g = Fields::new("eth token", t)?;
                let token = Address::from(g.array::<20>(0, "eth.tokens.token")?);
                let amount = TokenAmount(as_u128(g.req(1, "eth.tokens.amount")?, "amount")?);
                let window_totals = g
                    .list(2, "eth.tokens.window_totals")?
                    .into_iter()
                    .map(|v| as_u128(v, "eth.tokens.window_totals").map(TokenAmount))
                    .collect::<Result<_, _>>()?;
                g.finish()?;
                Ok(TokenCounters {
                    token,
                    amount,
                    window_totals,
                })
            })
            .collect::<Result<_, CborError>>()?;
        f.finish()?;
        Ok(Self {
            chain_id,
            native,
            fee,
            window_totals,
            tokens,
        })
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Node time of the decision.
    pub time: TimeMs,
    /// Request id.
    pub request_id: [u8; 32],
    /// Request hash.
    pub request_hash: [u8; 32],
    /// Decision.
    pub decision: Decision,
    /// Rule tag (`approved` for approvals).
    pub rule: String,
    /// Reason code (0 when approved).
    pub code: u16,
    /// Policy version in force.
    pub policy_version: u64,
    /// Policy hash in force.
    pub policy_hash: [u8; 32],
    /// Counters.
    pub counters: Counters,
    /// Txid signed (approved/replayed), if any.
    pub txid: Option<[u8; 32]>,
    /// Signatures released (DER+sighash or 64/65-byte Schnorr).
    pub signatures: Vec<Vec<u8>>,
    /// Hash of the previous entry (zeros for the first).
    pub prev_hash: [u8; 32],
    /// Ethereum counters (key 13), `None` in Bitcoin entries.
    pub eth: Option<EthCounters>,
}

impl AuditEntry {
    /// Canonical bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut map = vec![
            (0, uint(self.seq)),
            (1, uint(u64::try_from(self.time.0).unwrap_or(0))),
            (2, bytes(&self.request_id)),
            (3, bytes(&self.request_hash)),
            (4, uint(self.decision as u8)),
            (5, Value::Text(self.rule.clone())),
            (6, uint(self.code)),
            (7, uint(self.policy_version)),
            (8, bytes(&self.policy_hash)),
            (
                9,
                Value::Map(vec![
                    (0, uint(self.counters.amount.0)),
                    (1, uint(self.counters.fee.0)),
                    (
                        2,
                        Value::Array(
                            self.counters
                                .window_totals
                                .iter()
                                .map(|s| uint(s.0))
                                .collect(),
                        ),
                    ),
                ]),
            ),
            (10, bytes(self.txid.as_ref().map_or(&[][..], |t| &t[..]))),
            (
                11,
                Value::Array(self.signatures.iter().map(|s| bytes(s)).collect()),
            ),
            (12, bytes(&self.prev_hash)),
        ];
        if let Some(eth) = &self.eth {
            map.push((13, eth.to_value()));
        }
        cbor::encode(&Value::Map(map))
    }

    /// Strict decoding.
    ///
    /// # Errors
    /// [`AuditError::Malformed`].
    pub fn decode(b: &[u8]) -> Result<Self, AuditError> {
        let mut f = Fields::new("audit entry", cbor::decode(b)?)?;
        let seq = f.uint(0, "seq")?;
        let time = TimeMs(
            i64::try_from(f.uint(1, "time")?).map_err(|_| cbor::shape("time", "above i64"))?,
        );
        let request_id = f.array(2, "request_id")?;
        let request_hash = f.array(3, "request_hash")?;
        let decision = match f.uint(4, "decision")? {
            0 => Decision::Refused,
            1 => Decision::Approved,
            2 => Decision::Replayed,
            _ => return Err(cbor::shape("decision", "unknown").into()),
        };
        let rule = f.text(5, "rule")?;
        let code =
            u16::try_from(f.uint(6, "code")?).map_err(|_| cbor::shape("code", "above u16"))?;
        let policy_version = f.uint(7, "policy_version")?;
        let policy_hash = f.array(8, "policy_hash")?;
        let mut c = Fields::new("counters", f.req(9, "counters")?)?;
        let counters = Counters {
            amount: Sats(c.uint(0, "amount")?),
            fee: Sats(c.uint(1, "fee")?),
            window_totals: c
                .list(2, "window_totals")?
                .into_iter()
                .map(|v| cbor::as_uint(v, "window_totals").map(Sats))
                .collect::<Result<_, _>>()?,
        };
        c.finish()?;
        let t = f.bytes(10, "txid")?;
        let txid = match t.len() {
            0 => None,
            32 => <[u8; 32]>::try_from(t.as_slice()).ok(),
            _ => return Err(cbor::shape("txid", "not 0 or 32 bytes").into()),
        };
        let signatures = f
            .list(11, "signatures")?
            .into_iter()
            .map(|v| as_bytes(v, "signatures"))
            .collect::<Result<_, _>>()?;
        let prev_hash = f.array(12, "prev_hash")?;
        let eth = f.opt(13, "eth")?.map(EthCounters::from_value).transpose()?;
        f.finish()?;
        let e = Self {
            seq,
            time,
            request_id,
            request_hash,
            decision,
            rule,
            code,
            policy_version,
            policy_hash,
            counters,
            txid,
            signatures,
            prev_hash,
            eth,
        };
        if e.encode() != b {
            return Err(CborError::NonCanonical("entry does not re-encode").into());
        }
        Ok(e)
    }

    /// The entry hash (links the next entry).
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash(ENTRY_TAG, &self.encode())
    }

    /// The 32-byte message the node's receipt key signs.
    #[must_use]
    pub fn receipt_message(&self) -> [u8; 32] {
        tagged_hash(RECEIPT_TAG, &self.hash())
    }
}

/// Persisted head of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditLog {
    /// Seq of the next entry.
    pub next_seq: u64,
    /// Hash of the last entry (zeros when empty).
    pub last_hash: [u8; 32],
}

impl AuditLog {
    /// Fills in `seq` and `prev_hash` of `entry` and advances the head. The
    /// node persists the entry, its receipt and the new head in the same
    /// transaction as the spend record.
    pub fn append(&mut self, mut entry: AuditEntry) -> AuditEntry {
        entry.seq = self.next_seq;
        entry.prev_hash = self.last_hash;
        self.next_seq = self.next_seq.saturating_add(1);
        self.last_hash = entry.hash();
        entry
    }
}

/// The node's signed statement about an archived prefix of the log:
/// entries `0..=end_seq` existed and entry `end_seq` hashes to
/// `chain_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Last archived (pruned) entry.
    pub end_seq: u64,
    /// Its entry hash (the next entry's `prev_hash`).
    pub chain_hash: [u8; 32],
}

impl Checkpoint {
    /// Encoded length.
    pub const LEN: usize = 40;

    /// `end_seq u64 BE | chain_hash 32`.
    #[must_use]
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&self.end_seq.to_be_bytes());
        b.copy_from_slice(&self.chain_hash);
        out
    }

    /// From [`Checkpoint::encode`]'s bytes.
    ///
    /// # Errors
    /// [`AuditError::Malformed`] if not 40 bytes.
    pub fn decode(b: &[u8]) -> Result<Self, AuditError> {
        let bad = || AuditError::Malformed(cbor::shape("checkpoint", "not 40 bytes"));
        let (seq, hash) = b.split_first_chunk::<8>().ok_or_else(bad)?;
        Ok(Self {
            end_seq: u64::from_be_bytes(*seq),
            chain_hash: <[u8; 32]>::try_from(hash).map_err(|_| bad())?,
        })
    }

    /// The 32-byte message the node's receipt key signs.
    #[must_use]
    pub fn message(&self) -> [u8; 32] {
        tagged_hash(CHECKPOINT_TAG, &self.encode())
    }
}

/// Checks a checkpoint's signature.
///
/// # Errors
/// [`AuditError::BadCheckpoint`].
pub fn verify_checkpoint<C: Verification>(
    secp: &Secp256k1<C>,
    node_receipt_key: &XOnlyPublicKey,
    checkpoint: &Checkpoint,
    signature: &[u8; 64],
) -> Result<(), AuditError> {
    let bad = AuditError::BadCheckpoint {
        end_seq: checkpoint.end_seq,
    };
    let sig = schnorr::Signature::from_slice(signature).map_err(|_| bad.clone())?;
    secp.verify_schnorr(
        &sig,
        &Message::from_digest(checkpoint.message()),
        node_receipt_key,
    )
    .map_err(|_| bad)
}

/// Verifies a pruned log: the checkpoint's signature, then the entries
/// after it (the first must be `end_seq + 1` and link to `chain_hash`).
/// Archived entries are not needed; a tampered one cannot matter. Returns
/// the last hash.
///
/// # Errors
/// The first [`AuditError`].
pub fn verify_from_checkpoint<C: Verification>(
    secp: &Secp256k1<C>,
    node_receipt_key: &XOnlyPublicKey,
    checkpoint: &Checkpoint,
    signature: &[u8; 64],
    entries: &[(AuditEntry, [u8; 64])],
) -> Result<[u8; 32], AuditError> {
    verify_checkpoint(secp, node_receipt_key, checkpoint, signature)?;
    let expected = checkpoint.end_seq.saturating_add(1);
    if let Some((first, _)) = entries.first()
        && first.seq != expected
    {
        return Err(AuditError::SeqGap {
            expected,
            got: first.seq,
        });
    }
    verify_chain(secp, node_receipt_key, entries, checkpoint.chain_hash)
}

/// Checks one receipt.
///
/// # Errors
/// [`AuditError::BadReceipt`].
pub fn verify_receipt<C: Verification>(
    secp: &Secp256k1<C>,
    node_receipt_key: &XOnlyPublicKey,
    entry: &AuditEntry,
    receipt: &[u8; 64],
) -> Result<(), AuditError> {
    let sig = schnorr::Signature::from_slice(receipt)
        .map_err(|_| AuditError::BadReceipt { seq: entry.seq })?;
    secp.verify_schnorr(
        &sig,
        &Message::from_digest(entry.receipt_message()),
        node_receipt_key,
    )
    .map_err(|_| AuditError::BadReceipt { seq: entry.seq })
}

/// Verifies a downlinked run of entries: consecutive seqs, each
/// `prev_hash` linking to the previous entry (the first to `start_prev`,
/// zeros for a log from its start), each receipt valid. Returns the hash of
/// the last entry (the ground keeps it to continue verification later).
///
/// # Errors
/// The first [`AuditError`].
pub fn verify_chain<C: Verification>(
    secp: &Secp256k1<C>,
    node_receipt_key: &XOnlyPublicKey,
    entries: &[(AuditEntry, [u8; 64])],
    start_prev: [u8; 32],
) -> Result<[u8; 32], AuditError> {
    let mut prev = start_prev;
    let mut expected: Option<u64> = None;
    for (e, r) in entries {
        if let Some(x) = expected
            && e.seq != x
        {
            return Err(AuditError::SeqGap {
                expected: x,
                got: e.seq,
            });
        }
        if e.prev_hash != prev {
            return Err(AuditError::BrokenChain { seq: e.seq });
        }
        verify_receipt(secp, node_receipt_key, e, r)?;
        prev = e.hash();
        expected = Some(e.seq.saturating_add(1));
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::tests::kp;
    use proptest::prelude::*;

    fn entry(i: u8) -> AuditEntry {
        AuditEntry {
            seq: 0,
            time: TimeMs(1_000 + i64::from(i)),
            request_id: [i; 32],
            request_hash: [i.wrapping_add(1); 32],
            decision: if i.is_multiple_of(2) {
                Decision::Approved
            } else {
                Decision::Refused
            },
            rule: if i.is_multiple_of(2) {
                "approved".into()
            } else {
                "btc-fee-cap".into()
            },
            code: if i.is_multiple_of(2) { 0 } else { 0x0611 },
            policy_version: 3,
            policy_hash: [9; 32],
            counters: Counters {
                amount: Sats(5),
                fee: Sats(1),
                window_totals: vec![Sats(5), Sats(10)],
            },
            txid: (i.is_multiple_of(2)).then_some([3; 32]),
            signatures: vec![vec![0x30, 1, 2]],
            prev_hash: [0; 32],
            eth: (i % 3 == 2).then(|| EthCounters {
                chain_id: 11_155_111,
                native: Wei(10u128.pow(20)),
                fee: Wei(21_000 * 30_000_000_000),
                window_totals: vec![Wei(u128::MAX)],
                tokens: vec![TokenCounters {
                    token: Address::repeat_byte(0xaa),
                    amount: TokenAmount(5),
                    window_totals: vec![TokenAmount(5), TokenAmount(7)],
                }],
            }),
        }
    }

    fn log(n: u8) -> Vec<(AuditEntry, [u8; 64])> {
        let secp = Secp256k1::new();
        let key = kp(42);
        let mut head = AuditLog::default();
        (0..n)
            .map(|i| {
                let e = head.append(entry(i));
                let m = Message::from_digest(e.receipt_message());
                (e, secp.sign_schnorr_no_aux_rand(&m, &key).serialize())
            })
            .collect()
    }

    #[test]
    fn bitcoin_entries_encode_as_before_and_eth_counters_round_trip() {
        // A Bitcoin entry has no key 13: its bytes end with key 12.
        let b = entry(0).encode();
        assert_eq!(b[0], 0xad, "map of 13 entries");
        let e = entry(2);
        let bytes = e.encode();
        assert_eq!(bytes[0], 0xae, "map of 14 entries");
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
        // Tampering with a wei counter changes the hash.
        let mut t = e.clone();
        t.eth.as_mut().unwrap().native = Wei(1);
        assert_ne!(t.hash(), e.hash());
    }

    #[test]
    fn chain_verifies_and_detects_tampering() {
        let secp = Secp256k1::verification_only();
        let key = kp(42).x_only_public_key().0;
        let l = log(5);
        for (e, _) in &l {
            assert_eq!(&AuditEntry::decode(&e.encode()).unwrap(), e);
        }
        let last = verify_chain(&secp, &key, &l, [0; 32]).unwrap();
        assert_eq!(last, l[4].0.hash());
        // Continue from the middle.
        assert!(verify_chain(&secp, &key, &l[2..], l[1].0.hash()).is_ok());
        let mut t = l.clone();
        t[2].0.code = 0x0612;
        assert_eq!(
            verify_chain(&secp, &key, &t, [0; 32]),
            Err(AuditError::BadReceipt { seq: 2 })
        );
        let mut t = l.clone();
        t.remove(2);
        assert!(matches!(
            verify_chain(&secp, &key, &t, [0; 32]),
            Err(AuditError::SeqGap { .. })
        ));
        let other = kp(43).x_only_public_key().0;
        assert!(verify_chain(&secp, &other, &l, [0; 32]).is_err());
    }

    /// Issue 13 item 9: a log pruned behind a signed checkpoint still
    /// verifies from it; archived rows no longer matter, the checkpoint
    /// does.
    #[test]
    fn pruned_log_verifies_from_a_signed_checkpoint() {
        let secp = Secp256k1::new();
        let key = kp(42);
        let xonly = key.x_only_public_key().0;
        let mut l = log(10);
        let cp = Checkpoint {
            end_seq: 5,
            chain_hash: l[5].0.hash(),
        };
        assert_eq!(Checkpoint::decode(&cp.encode()), Ok(cp));
        assert!(Checkpoint::decode(&[0; 39]).is_err());
        let sign = |c: &Checkpoint| {
            secp.sign_schnorr_no_aux_rand(&Message::from_digest(c.message()), &key)
                .serialize()
        };
        let sig = sign(&cp);
        let kept = l.split_off(6);
        let last = verify_from_checkpoint(&secp, &xonly, &cp, &sig, &kept).unwrap();
        assert_eq!(last, kept[3].0.hash());
        // Tampering with an archived (pre-checkpoint) row is irrelevant:
        // it is not part of what is verified.
        l[2].0.code = 0x0612;
        assert!(verify_from_checkpoint(&secp, &xonly, &cp, &sig, &kept).is_ok());
        // Tampering with the checkpoint is refused.
        for forged in [
            Checkpoint { end_seq: 4, ..cp },
            Checkpoint {
                chain_hash: [7; 32],
                ..cp
            },
        ] {
            let e = verify_from_checkpoint(&secp, &xonly, &forged, &sig, &kept).unwrap_err();
            assert_eq!(e.code(), 0x05E1, "{e}");
        }
        // A checkpoint signed by another key, or entries that do not
        // start right after it, are refused too.
        let other = kp(43).x_only_public_key().0;
        assert!(verify_from_checkpoint(&secp, &other, &cp, &sig, &kept).is_err());
        assert!(matches!(
            verify_from_checkpoint(&secp, &xonly, &cp, &sig, &kept[1..]),
            Err(AuditError::SeqGap {
                expected: 6,
                got: 7
            })
        ));
        // A correctly signed checkpoint with the wrong hash breaks the
        // chain at the first kept entry.
        let wrong = Checkpoint {
            chain_hash: [7; 32],
            ..cp
        };
        assert_eq!(
            verify_from_checkpoint(&secp, &xonly, &wrong, &sign(&wrong), &kept),
            Err(AuditError::BrokenChain { seq: 6 })
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AuditEntry::decode(&b);
        }
    }
}
