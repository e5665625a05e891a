//! The Ethereum side of the signing service: sign requests of body format
//! 2 (PUS 132, `sign.request`, or `sign.admin-request` with a
//! `SAFE_ADMIN_TX` command) decided by `spacenode_eth::engine` over the
//! node's own state (active policy, registered Safes,
//! `eth_nonces`/`safe_nonces` through [`StoreEthHistory`], `eth_velocity`
//! with the node's global velocity high-water mark, the clock guard, the
//! audit head, the last administrator command, custody's signer), its
//! rows (`store::eth`: nonce rows, velocity rows, administrator sequence)
//! and its result (`sign.eth-result`); and Safe registration
//! (`policy.register-safe`, a quorum-signed `REGISTER_SAFE` command).
//! Committing and releasing is `node::sign`'s; a retry of the same request
//! id is answered from the stored result (`0x02 | EthResult`), so it
//! returns the same signature.
//!
//! Must never: know another chain, or decide on a failed store read.

use std::cell::Cell;

use alloy_primitives::{Address, B256, U256};
use spacenode_eth::engine::{Authority, EthApproved, NodeView, evaluate_signed};
use spacenode_eth::history::{EthHistory, NonceRecord, PriorSafe, PriorTx};
use spacenode_eth::safe::{Safe, check_registrations};
use spacenode_eth::velocity::{EthLedgers, EthVelocityRow};
use spacenode_keys::KeyStore;
use spacenode_policy::Rule;
use spacenode_policy::command::{SignedCommand, kind};
use spacenode_policy::pipeline::{Approval, Outcome};
use spacenode_policy::request::{RequestError, SignedRequest};
use spacenode_policy::units::TimeMs;
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{EthSignResult, Payload};
use spacenode_wire::msg::FailureNotice;
use spacenode_wire::services::subtype;

use super::sign::{
    Evaluated, NodeSigner, Release, SeenLookup, Start, VELOCITY_MIN_RETENTION_MS, eth_result,
    store_failure, velocity_high_water,
};
use super::{Node, Now};
use crate::store::Store;
use crate::store::eth::{EthNonceRow, EthRows, EthVelocityRowDb, SafeNonceRow};

/// The nonce history over the database. A failed read answers with a
/// conflicting entry (nothing can be approved on it) and is remembered, so
/// the caller discards the outcome.
struct StoreEthHistory<'a> {
    store: &'a Store,
    failed: Cell<bool>,
}

impl<'a> StoreEthHistory<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            failed: Cell::new(false),
        }
    }
}

impl EthHistory for StoreEthHistory<'_> {
    fn account_nonce(&self, chain_id: u64, account: Address, nonce: u64) -> Option<PriorTx> {
        match self.store.eth_nonce(chain_id, &account.0.0, nonce) {
            Ok(None) => None,
            Ok(Some((hash, raw))) => Some(PriorTx {
                signing_hash: B256::from(hash),
                raw,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the signed nonces");
                self.failed.set(true);
                Some(PriorTx {
                    signing_hash: B256::repeat_byte(0xFF),
                    raw: Vec::new(),
                })
            }
        }
    }

    fn safe_nonce(&self, domain_chain: u64, safe: Address, nonce: U256) -> Option<PriorSafe> {
        match self
            .store
            .safe_nonce(domain_chain, &safe.0.0, &nonce.to_be_bytes::<32>())
        {
            Ok(None) => None,
            Ok(Some((hash, signature))) => Some(PriorSafe {
                safe_tx_hash: B256::from(hash),
                signature,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the Safe nonces");
                self.failed.set(true);
                Some(PriorSafe {
                    safe_tx_hash: B256::repeat_byte(0xFF),
                    signature: None,
                })
            }
        }
    }
}

/// Registered Safes that re-check against the seed (`keys`: `None` when
/// the seed is unavailable; the node then signs nothing anyway).
pub(super) fn load_safes(store: &Store, keys: Option<&KeyStore>) -> Vec<Safe> {
    let Some(keys) = keys else {
        return Vec::new();
    };
    let rows = match store.safes() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the registered Safes");
            return Vec::new();
        }
    };
    let mut safes: Vec<Safe> = Vec::new();
    for (chain_id, address, body) in rows {
        match Safe::from_registration(&body, &NodeSigner(keys)) {
            Ok(s) => {
                let mut next = safes.clone();
                next.push(s.clone());
                match check_registrations(&next) {
                    Ok(()) => safes.push(s),
                    Err(e) => tracing::error!(
                        chain_id,
                        safe = %Address::from(address),
                        error = %e,
                        "registered Safe conflicts with another; ignored"
                    ),
                }
            }
            Err(e) => tracing::error!(
                chain_id,
                safe = %Address::from(address),
                error = %e,
                "registered Safe does not re-check against the seed; ignored"
            ),
        }
    }
    if !safes.is_empty() {
        tracing::info!(safes = safes.len(), "Safes loaded");
    }
    safes
}

fn to_row(v: &EthVelocityRow) -> EthVelocityRowDb {
    EthVelocityRowDb {
        chain_id: v.chain_id,
        asset: v.token.unwrap_or(Address::ZERO).0.0,
        at_ms: v.at.0,
        amount: v.amount,
    }
}

fn nonce_rows(records: &[NonceRecord]) -> (Vec<EthNonceRow>, Vec<SafeNonceRow>) {
    let (mut accounts, mut safes) = (Vec::new(), Vec::new());
    for r in records {
        match r {
            NonceRecord::Account {
                chain_id,
                account,
                nonce,
                signing_hash,
                raw,
            } => accounts.push(EthNonceRow {
                chain_id: *chain_id,
                account: account.0.0,
                nonce: *nonce,
                signing_hash: signing_hash.0,
                raw_tx: raw.clone(),
            }),
            NonceRecord::Safe {
                domain_chain,
                safe,
                nonce,
                safe_tx_hash,
                signature,
            } => safes.push(SafeNonceRow {
                domain_chain: *domain_chain,
                safe: safe.0.0,
                nonce: nonce.to_be_bytes::<32>(),
                safe_tx_hash: safe_tx_hash.0,
                signature: *signature,
            }),
        }
    }
    (accounts, safes)
}

/// The Ethereum rows of `outcome`: nonce rows, velocity rows and the
/// administrator sequence when approved; velocity pruning when approved or
/// refused (a replay writes none).
fn eth_rows(outcome: &Outcome<EthApproved>, prune: Vec<(u64, [u8; 20], i64)>) -> EthRows {
    match outcome {
        Outcome::Approved(a) => {
            let (nonces, safe_nonces) = nonce_rows(&a.nonces);
            EthRows {
                request_id: a.request_id,
                nonces,
                safe_nonces,
                velocity: a.velocity.iter().map(to_row).collect(),
                velocity_prune: prune,
                admin_seq: a.admin_command_seq,
            }
        }
        Outcome::Refused(_) => EthRows {
            velocity_prune: prune,
            ..EthRows::default()
        },
        Outcome::Replay(_) => EthRows::default(),
    }
}

/// Velocity rows that no longer count in any window of the active rules
/// (and are older than [`VELOCITY_MIN_RETENTION_MS`]).
fn prune_cutoffs(
    ledgers: &EthLedgers,
    rules: Option<&spacenode_policy::eth::EthRules>,
    now: TimeMs,
) -> Vec<(u64, [u8; 20], i64)> {
    let Some(rules) = rules else {
        return Vec::new();
    };
    let Some(floor) = now
        .max(ledgers.high_water)
        .checked_sub_ms(VELOCITY_MIN_RETENTION_MS)
    else {
        return Vec::new();
    };
    let mut l = ledgers.clone();
    l.prune(rules, now)
        .into_iter()
        .map(|(chain, token, cut)| (chain, token.unwrap_or(Address::ZERO).0.0, cut.min(floor).0))
        .collect()
}

impl Release for EthApproved {
    type Rows = EthRows;
    type Prune = Vec<(u64, [u8; 20], i64)>;
    const RECEIPT_FAULT: (u16, Rule) = (0x0742, Rule::EthSelfCheck);
    const WHAT: &'static str = "ethereum sign request";

    fn stored_result(a: &Approval<Self>) -> Vec<u8> {
        eth_result(&a.result_encoded)
    }

    fn approved(a: Approval<Self>, elapsed_us: u64) -> (u8, Vec<u8>) {
        tracing::info!(
            request_id = %hex::encode(a.request_id),
            kind = a.result.kind.id(),
            chain_id = a.result.chain_id,
            tx_hash = %a.result.tx_hash.map(|h| h.to_string()).unwrap_or_default(),
            safe_tx_hash = %a.result.safe_tx_hash.map(|h| h.to_string()).unwrap_or_default(),
            repeated = a.repeated,
            audit_seq = a.audit.entry.seq,
            elapsed_us,
            "ethereum sign request approved"
        );
        let reply = EthSignResult {
            request_id: a.request_id,
            result: a.chain.result_encoded,
        };
        (subtype::SIGN_ETH_RESULT, reply.encode())
    }

    fn rows(outcome: &Outcome<Self>, prune: Self::Prune) -> Result<EthRows, FailureNotice> {
        Ok(eth_rows(outcome, prune))
    }
}

/// The Ethereum velocity ledgers as stored, under the node's one
/// high-water mark.
fn ledgers(store: &Store) -> Result<EthLedgers, FailureNotice> {
    let mut ledgers = EthLedgers::new(velocity_high_water(store)?);
    for r in store.eth_velocity_rows().map_err(|e| store_failure(&e))? {
        ledgers.insert_row(EthVelocityRow {
            chain_id: r.chain_id,
            token: (r.asset != [0; 20]).then(|| Address::from(r.asset)),
            at: TimeMs(r.at_ms),
            amount: r.amount,
        });
    }
    Ok(ledgers)
}

impl Node {
    /// Evaluates, commits and answers one Ethereum request (module docs);
    /// the preconditions were checked by the caller.
    pub(super) fn eth_sign(
        &mut self,
        signed: Result<SignedRequest, RequestError>,
        command: Option<&[u8]>,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let authority = command.map_or(Authority::Ground, Authority::AdminQuorum);
        self.decide(
            |node, start| node.eth_evaluate(signed, authority, start),
            dest_id,
            now,
            out,
        )
    }

    /// Reads the Ethereum state and runs the pipeline; `Err` when a read
    /// failed (nothing was decided).
    fn eth_evaluate(
        &self,
        signed: Result<SignedRequest, RequestError>,
        authority: Authority<'_>,
        start: Start,
    ) -> Result<Evaluated<EthApproved>, FailureNotice> {
        let (Some(policy), Some(keys)) = (&self.policy, &self.keys) else {
            return Err(FailureNotice {
                code: ReasonCode::INTERNAL,
                data: Vec::new(),
            });
        };
        let chain_mtp_s = self.chain.state()?.median_time_past();
        let store = &self.store;
        let ledgers = ledgers(store)?;
        let admin_executed = store
            .admin_executed(kind::SAFE_ADMIN_TX)
            .map_err(|e| store_failure(&e))?;
        let history = StoreEthHistory::new(store);
        let seen = SeenLookup::new(store);
        let view = NodeView {
            node_id: self.cfg.node_id,
            policy: &policy.active,
            safes: &self.safes,
            history: &history,
            velocity: &ledgers,
            clock: start.clock,
            audit: start.audit,
            chain_mtp_s,
            admin_executed,
        };
        let outcome = evaluate_signed(
            &self.secp,
            &view,
            &NodeSigner(keys),
            signed,
            authority,
            &|id| seen.get(id),
            start.t,
        );
        seen.reads_ok(history.failed.get())?;
        Ok(Evaluated {
            outcome,
            prune: prune_cutoffs(&ledgers, policy.active.document.eth.as_ref(), start.t),
        })
    }

    /// TC[131,11]: registers a Safe (quorum-signed `REGISTER_SAFE`): the
    /// node's address at the registration's account must be an owner
    /// (re-derived from the seed), and the Safe must not conflict with a
    /// registered one; then the body and the command's sequence are
    /// persisted in one transaction.
    pub(crate) fn register_safe(
        &mut self,
        payload: Payload,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = self.resolve_payload(payload)?;
        let signed = match SignedCommand::decode(&bytes) {
            Ok(s) => s,
            Err(e) => return Err(self.command_refused(&e, now, out)),
        };
        let cmd = self.authorize_command(&signed, kind::REGISTER_SAFE, now, out)?;
        let keys = self.keys.as_ref().ok_or_else(|| FailureNotice {
            code: ReasonCode(0x0403),
            data: b"the signing seed is not available (see mode status)".to_vec(),
        })?;
        let safe = match Safe::from_registration(&cmd.body, &NodeSigner(keys)) {
            Ok(s) => s,
            Err(e) => {
                return Err(self.admin_refused(e.code(), e.rule(), &e.to_string(), now, out));
            }
        };
        let (chain_id, address) = (safe.chain_id(), safe.address());
        let mut next: Vec<Safe> = self
            .safes
            .iter()
            .filter(|s| !(s.chain_id() == chain_id && s.address() == address))
            .cloned()
            .collect();
        next.push(safe);
        if let Err(e) = check_registrations(&next) {
            return Err(self.admin_refused(e.code(), e.rule(), &e.to_string(), now, out));
        }
        self.store
            .register_safe(chain_id, &address.0.0, &cmd.body, now.unix_ms, cmd.seq)
            .map_err(|e| store_failure(&e))?;
        tracing::warn!(
            chain_id,
            safe = %address,
            seq = cmd.seq,
            "Safe registered"
        );
        self.safes = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_signs_with_bip44_keys_that_recover_to_their_address() {
        use spacenode_eth::signer::{
            EthKeyStore, KeyStoreSigner, account_path, address_of, to_alloy,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::Soft(
            spacenode_keys::SoftKeyStore::create(
                &dir.path().join("seed"),
                spacenode_keys::Profile::Development,
                bitcoin::NetworkKind::Test,
            )
            .unwrap(),
        );
        let node = NodeSigner(&store);
        let p = account_path(3);
        let address = address_of(&node.public_key(&p).unwrap());
        let d = [9u8; 32];
        let sig = to_alloy(&node.sign_ecdsa_recoverable(&p, &d).unwrap()).unwrap();
        assert_eq!(
            sig.recover_address_from_prehash(&B256::from(d)).unwrap(),
            address
        );
        // alloy's signer interface over the same store.
        let signer = KeyStoreSigner::new(&node, 3).unwrap();
        assert_eq!(signer.address(), address);
        let again = alloy_signer::SignerSync::sign_hash_sync(&signer, &B256::from(d)).unwrap();
        assert_eq!(again, sig, "RFC 6979: the same signature");
    }
}
