//! Ethereum co-signing tables (migration 5): registered Safes, signed
//! account nonces, approved Safe nonces and Ethereum velocity rows.
//!
//! Plain SQL over typed values (`store::codec`): what to write is
//! decided by `spacenode_eth::engine` and mapped in `node::eth`. The rows
//! of a decision ([`EthRows`]) are written by `Store::commit_decision` in
//! the SAME transaction as the seen id, the audit entry and the clock, so a
//! signature never leaves without its nonce and velocity rows.
//!
//! Must never: overwrite a signed nonce (an insert of an existing
//! `(chain, account, nonce)` fails the whole decision), or replace a Safe
//! nonce's hash (only a NULL signature of the SAME hash is filled in).

use rusqlite::{OptionalExtension, Transaction, params};
use spacenode_policy::command::kind;

use super::admin::raise_admin_seq;
use super::codec::{Bits64, Blob, U128Be, array, i64_of};
pub use super::codec::{bits_u64, u64_bits};
use super::decision::{ChainRows, SqlErr, raise_velocity_high_water};
use super::{Store, StoreError};

/// `eth_nonces` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthNonceRow {
    /// Chain.
    pub chain_id: u64,
    /// Account address.
    pub account: [u8; 20],
    /// Nonce.
    pub nonce: u64,
    /// Signing hash of the transaction signed at it.
    pub signing_hash: [u8; 32],
    /// The signed raw transaction released.
    pub raw_tx: Vec<u8>,
}

/// `safe_nonces` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeNonceRow {
    /// Domain chain (0 before Safe 1.3.0).
    pub domain_chain: u64,
    /// Safe address.
    pub safe: [u8; 20],
    /// Safe nonce (uint256 big-endian).
    pub nonce: [u8; 32],
    /// SafeTx hash.
    pub safe_tx_hash: [u8; 32],
    /// Owner signature released, if any.
    pub signature: Option<[u8; 65]>,
}

/// `eth_velocity` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthVelocityRowDb {
    /// Chain.
    pub chain_id: u64,
    /// Token address, zero for the native coin.
    pub asset: [u8; 20],
    /// Accounting time, ms.
    pub at_ms: i64,
    /// Amount (wei or token base units).
    pub amount: u128,
}

/// The Ethereum rows of one decision (empty for Bitcoin decisions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EthRows {
    /// The request the rows belong to.
    pub request_id: [u8; 32],
    /// Account nonces signed (insert; must not exist).
    pub nonces: Vec<EthNonceRow>,
    /// Safe nonces approved (insert, or fill in a NULL signature).
    pub safe_nonces: Vec<SafeNonceRow>,
    /// Velocity rows.
    pub velocity: Vec<EthVelocityRowDb>,
    /// Velocity rows of `(chain, asset)` at or before the time no longer
    /// count (pruning).
    pub velocity_prune: Vec<(u64, [u8; 20], i64)>,
    /// Administrator command executed with the request (`SAFE_ADMIN_TX`).
    pub admin_seq: Option<u64>,
}

impl ChainRows for EthRows {
    fn write(&self, tx: &Transaction<'_>, time_ms: i64, err: SqlErr<'_>) -> Result<(), StoreError> {
        let rid = Blob(self.request_id);
        for n in &self.nonces {
            tx.execute(
                "INSERT INTO eth_nonces(chain_id, account, nonce, signing_hash, raw_tx, request_id, time_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    Bits64(n.chain_id),
                    Blob(n.account),
                    Bits64(n.nonce),
                    Blob(n.signing_hash),
                    n.raw_tx,
                    rid,
                    time_ms
                ],
            )
            .map_err(err)?;
        }
        for s in &self.safe_nonces {
            tx.execute(
                "INSERT INTO safe_nonces(domain_chain, safe, nonce, safe_tx_hash, signature, request_id, time_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT(domain_chain, safe, nonce) DO UPDATE SET signature = excluded.signature \
                 WHERE safe_nonces.safe_tx_hash = excluded.safe_tx_hash AND safe_nonces.signature IS NULL",
                params![
                    Bits64(s.domain_chain),
                    Blob(s.safe),
                    Blob(s.nonce),
                    Blob(s.safe_tx_hash),
                    s.signature.map(Blob),
                    rid,
                    time_ms
                ],
            )
            .map_err(err)?;
        }
        for v in &self.velocity {
            tx.execute(
                "INSERT INTO eth_velocity(chain_id, asset, at_ms, amount, request_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    Bits64(v.chain_id),
                    Blob(v.asset),
                    v.at_ms,
                    U128Be(v.amount),
                    rid
                ],
            )
            .map_err(err)?;
            raise_velocity_high_water(tx, v.at_ms).map_err(err)?;
        }
        for (chain, asset, cut) in &self.velocity_prune {
            tx.execute(
                "DELETE FROM eth_velocity WHERE chain_id = ?1 AND asset = ?2 AND at_ms <= ?3",
                params![Bits64(*chain), Blob(*asset), cut],
            )
            .map_err(err)?;
        }
        if let Some(seq) = self.admin_seq {
            raise_admin_seq(
                tx,
                kind::SAFE_ADMIN_TX,
                i64::try_from(seq).unwrap_or(i64::MAX),
            )
            .map_err(err)?;
        }
        Ok(())
    }
}

/// A registered Safe row: chain id, address, registration body.
pub type SafeRow = (u64, [u8; 20], Vec<u8>);

/// A signed account nonce: signing hash and the raw transaction released.
pub type SignedNonce = ([u8; 32], Vec<u8>);

/// An approved Safe nonce: SafeTx hash and the owner signature, if any.
pub type ApprovedSafeNonce = ([u8; 32], Option<[u8; 65]>);

impl Store {
    /// Registered Safes, in registration order.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn safes(&self) -> Result<Vec<SafeRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT chain_id, address, body FROM safes ORDER BY registered_at_ms, command_seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (chain, address, body) = row.map_err(|e| self.err(e))?;
            out.push((bits_u64(chain), array("safe address", &address)?, body));
        }
        Ok(out)
    }

    /// Registers a Safe and records the command's sequence, in one
    /// transaction. Registering the same Safe again replaces its body.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn register_safe(
        &mut self,
        chain_id: u64,
        address: &[u8; 20],
        body: &[u8],
        now_ms: i64,
        command_seq: u64,
    ) -> Result<(), StoreError> {
        let seq = i64_of("admin_seq", command_seq)?;
        self.write_tx(|tx| {
            tx.execute(
                "INSERT INTO safes(chain_id, address, body, registered_at_ms, command_seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(chain_id, address) DO UPDATE SET \
                 body = excluded.body, command_seq = excluded.command_seq",
                params![u64_bits(chain_id), address.as_slice(), body, now_ms, seq],
            )?;
            raise_admin_seq(tx, kind::REGISTER_SAFE, seq)?;
            Ok(())
        })
    }

    /// Retires a Safe and records the command's sequence, in one
    /// transaction (its signed history stays). Returns whether it was
    /// registered.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn retire_safe(
        &mut self,
        chain_id: u64,
        address: &[u8; 20],
        command_seq: u64,
    ) -> Result<bool, StoreError> {
        self.retire(
            "DELETE FROM safes WHERE chain_id = ?1 AND address = ?2",
            params![u64_bits(chain_id), address.as_slice()],
            kind::RETIRE_SAFE,
            command_seq,
        )
    }

    /// What was signed at `(chain, account, nonce)`: signing hash and raw
    /// transaction.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn eth_nonce(
        &self,
        chain_id: u64,
        account: &[u8; 20],
        nonce: u64,
    ) -> Result<Option<SignedNonce>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT signing_hash, raw_tx FROM eth_nonces \
                 WHERE chain_id = ?1 AND account = ?2 AND nonce = ?3",
                params![u64_bits(chain_id), account.as_slice(), u64_bits(nonce)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(h, raw)| Ok((array("signing hash", &h)?, raw)))
            .transpose()
    }

    /// What was approved at `(domain chain, Safe, nonce)`: SafeTx hash and
    /// the owner signature, if one was released.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn safe_nonce(
        &self,
        domain_chain: u64,
        safe: &[u8; 20],
        nonce: &[u8; 32],
    ) -> Result<Option<ApprovedSafeNonce>, StoreError> {
        let row: Option<(Vec<u8>, Option<Vec<u8>>)> = self
            .conn
            .query_row(
                "SELECT safe_tx_hash, signature FROM safe_nonces \
                 WHERE domain_chain = ?1 AND safe = ?2 AND nonce = ?3",
                params![u64_bits(domain_chain), safe.as_slice(), nonce.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(h, sig)| {
            Ok((
                array("safe tx hash", &h)?,
                sig.map(|s| array("safe signature", &s)).transpose()?,
            ))
        })
        .transpose()
    }

    /// Every Ethereum velocity row still stored, in insertion order.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn eth_velocity_rows(&self) -> Result<Vec<EthVelocityRowDb>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT chain_id, asset, at_ms, amount FROM eth_velocity ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (chain, asset, at_ms, amount) = row.map_err(|e| self.err(e))?;
            out.push(EthVelocityRowDb {
                chain_id: bits_u64(chain),
                asset: array("velocity asset", &asset)?,
                at_ms,
                amount: u128::from_be_bytes(array("velocity amount", &amount)?),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::decision::{AuditRow, DecisionRows, SeenRow};

    fn decision(seq: u64, eth: EthRows) -> DecisionRows<EthRows> {
        DecisionRows {
            time_ms: 1_000,
            seen: Some(SeenRow {
                request_id: eth.request_id,
                request_hash: [9; 32],
                result: vec![2],
            }),
            audit: AuditRow {
                seq,
                entry: vec![seq as u8],
                receipt: [5; 64],
            },
            head: (seq + 1, [seq as u8; 32]),
            clock_ms: None,
            chain: eth,
        }
    }

    #[test]
    fn eth_rows_commit_with_the_decision_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let rows = EthRows {
            request_id: [1; 32],
            nonces: vec![EthNonceRow {
                chain_id: u64::MAX,
                account: [7; 20],
                nonce: u64::MAX - 1,
                signing_hash: [3; 32],
                raw_tx: vec![0x02, 1],
            }],
            safe_nonces: vec![SafeNonceRow {
                domain_chain: 11_155_111,
                safe: [5; 20],
                nonce: [0; 32],
                safe_tx_hash: [4; 32],
                signature: None,
            }],
            velocity: vec![EthVelocityRowDb {
                chain_id: 1,
                asset: [0; 20],
                at_ms: 777,
                amount: u128::MAX,
            }],
            velocity_prune: vec![],
            admin_seq: Some(4),
        };
        s.commit_decision(&decision(0, rows.clone())).unwrap();
        assert_eq!(
            s.eth_nonce(u64::MAX, &[7; 20], u64::MAX - 1).unwrap(),
            Some(([3; 32], vec![0x02, 1]))
        );
        assert_eq!(s.eth_nonce(1, &[7; 20], 0).unwrap(), None);
        assert_eq!(
            s.safe_nonce(11_155_111, &[5; 20], &[0; 32]).unwrap(),
            Some(([4; 32], None))
        );
        assert_eq!(s.eth_velocity_rows().unwrap(), rows.velocity);
        assert_eq!(s.velocity_high_water().unwrap(), Some(777));
        assert_eq!(s.admin_seq().unwrap(), 4);
        // The same account nonce again: the whole decision fails.
        let mut again = rows.clone();
        again.request_id = [2; 32];
        again.nonces[0].signing_hash = [8; 32];
        assert!(s.commit_decision(&decision(1, again)).is_err());
        assert!(s.seen_request(&[2; 32]).unwrap().is_none());
        assert_eq!(s.eth_velocity_rows().unwrap().len(), 1);
        // A signature fills in the NULL of the same hash, once; another
        // hash never replaces it.
        let fill = |hash: [u8; 32], sig: u8, id: u8| EthRows {
            request_id: [id; 32],
            safe_nonces: vec![SafeNonceRow {
                domain_chain: 11_155_111,
                safe: [5; 20],
                nonce: [0; 32],
                safe_tx_hash: hash,
                signature: Some([sig; 65]),
            }],
            ..EthRows::default()
        };
        s.commit_decision(&decision(1, fill([6; 32], 1, 3)))
            .unwrap();
        s.commit_decision(&decision(2, fill([4; 32], 2, 4)))
            .unwrap();
        s.commit_decision(&decision(3, fill([4; 32], 3, 5)))
            .unwrap();
        assert_eq!(
            s.safe_nonce(11_155_111, &[5; 20], &[0; 32]).unwrap(),
            Some(([4; 32], Some([2; 65])))
        );
        // Pruning one asset's rows.
        let prune = EthRows {
            request_id: [9; 32],
            velocity_prune: vec![(1, [0; 20], 777)],
            ..EthRows::default()
        };
        s.commit_decision(&decision(4, prune)).unwrap();
        assert!(s.eth_velocity_rows().unwrap().is_empty());
        // Safes.
        s.register_safe(1, &[5; 20], b"body", 10, 7).unwrap();
        s.register_safe(1, &[5; 20], b"body2", 11, 8).unwrap();
        assert_eq!(s.safes().unwrap(), vec![(1, [5; 20], b"body2".to_vec())]);
        assert_eq!(s.admin_seq().unwrap(), 8);
    }
}
