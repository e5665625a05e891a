//! Link security with durable sequence numbers: wraps the pure envelope and
//! window logic of `spacenode_wire::security` and persists reservations in
//! the store before a sequence number is used or an accepted packet is acted
//! on. A crash at any instant can skip numbers; it can never reuse a downlink
//! nonce or re-accept an uplink packet.
//!
//! This module must never let a store failure pass silently: when a
//! reservation cannot be made durable, the packet is not sent or not
//! accepted.

use std::collections::HashMap;

use spacenode_wire::security::{
    Accepted, Cipher, Direction, LinkKey, Receiver, RxKey, RxReservation, SecError, TxCounter,
    TxNext,
};

use crate::config::LinkConfig;
use crate::store::{SeqDir, Store, StoreError};

/// Errors of the secured link.
#[derive(Debug, thiserror::Error)]
pub enum LinkSecError {
    /// The envelope was refused.
    #[error(transparent)]
    Sec(#[from] SecError),
    /// A reservation could not be made durable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No cipher for the downlink key.
    #[error("downlink key {0} is not in the keyring")]
    NoTxKey(u16),
}

/// Counters of refused envelopes, for housekeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecCounters {
    /// Authentic but replayed/stale.
    pub replays: u64,
    /// Tag failures.
    pub auth_failures: u64,
    /// Unknown key ids, malformed envelopes, wrong direction.
    pub unknown_keys: u64,
}

/// The node's secured link state.
///
/// Several ground stations may hold their own keys side by side: a reply
/// is sealed under the key its TC arrived under (so each station reads its
/// own answers), unsolicited telemetry under the downlink key. Each key
/// has its own durable downlink counter. A rekey retires only the key it
/// replaces, once the ground is heard under the new one; the pending
/// retirements are in the store (written with the key switch), so a
/// restart in between cannot keep the old key alive.
#[derive(Debug)]
pub struct LinkSecurity {
    rx: Receiver,
    tx_key_id: u16,
    tx_counters: HashMap<u16, TxCounter>,
    ciphers: Vec<Cipher>,
    seq_block: u64,
    /// `(new key id, key id to retire)`, as in the store.
    pending: Vec<(u16, u16)>,
    counters: SecCounters,
}

impl LinkSecurity {
    /// Builds the keyring from the unsealed link keys (custody already
    /// dropped retired ones) and resumes every sequence state and pending
    /// retirement from the store.
    ///
    /// # Errors
    /// [`LinkSecError`] if the store cannot be read or the downlink key is
    /// missing.
    pub fn resume(
        cfg: &LinkConfig,
        keys: &[(u16, LinkKey)],
        store: &Store,
    ) -> Result<Self, LinkSecError> {
        let ciphers: Vec<Cipher> = keys.iter().map(|(id, k)| Cipher::new(*id, k)).collect();
        // The last rekey's key, else the configured one, else (a restored
        // database naming a key that was retired since) the newest key
        // available: the node must be able to speak.
        let available = |id: &u16| ciphers.iter().any(|c| c.key_id() == *id);
        let tx_key_id = store
            .tx_key_id()?
            .filter(available)
            .or(Some(cfg.tx_key_id).filter(available))
            .or_else(|| ciphers.iter().map(Cipher::key_id).max())
            .unwrap_or(cfg.tx_key_id);
        if !available(&tx_key_id) {
            return Err(LinkSecError::NoTxKey(tx_key_id));
        }
        let mut rx = Receiver::new(Direction::Uplink);
        for c in &ciphers {
            let bound = store.seq_bound(c.key_id(), SeqDir::Rx)?;
            rx.insert(RxKey::new(
                c.clone(),
                RxReservation::resume(bound, cfg.seq_block),
            ));
        }
        let mut tx_counters = HashMap::new();
        tx_counters.insert(
            tx_key_id,
            TxCounter::resume(store.seq_bound(tx_key_id, SeqDir::Tx)?, cfg.seq_block),
        );
        Ok(Self {
            rx,
            tx_key_id,
            tx_counters,
            ciphers,
            seq_block: cfg.seq_block,
            pending: store.pending_retirements()?,
            counters: SecCounters::default(),
        })
    }

    /// Checks an uplink envelope. On success the receive bound covering it
    /// is durable. Refusals are counted here.
    ///
    /// # Errors
    /// [`LinkSecError::Sec`] for refused envelopes, [`LinkSecError::Store`]
    /// when the bound could not be persisted (the packet must be dropped).
    pub fn open_uplink(
        &mut self,
        store: &mut Store,
        envelope: &[u8],
    ) -> Result<Accepted, LinkSecError> {
        let accepted = match self.rx.accept(envelope) {
            Ok(a) => a,
            Err(e) => {
                let c = &mut self.counters;
                let counter = match e {
                    SecError::Replay { .. } => &mut c.replays,
                    SecError::AuthFailed { .. } => &mut c.auth_failures,
                    _ => &mut c.unknown_keys,
                };
                *counter = counter.saturating_add(1);
                return Err(e.into());
            }
        };
        let key_id = accepted.header.key_id;
        if let Some(bound) = accepted.persist_rx_bound {
            store.raise_seq_bound(key_id, SeqDir::Rx, bound)?;
            if let Some(k) = self.rx.key_mut(key_id) {
                k.reserved(bound);
            }
        }
        Ok(accepted)
    }

    /// Seals a downlink packet under `key_id` if it is in the keyring (the
    /// key a TC arrived under, for its replies), else under the downlink
    /// key.
    ///
    /// # Errors
    /// [`LinkSecError`] if a reservation cannot be persisted or the key's
    /// numbers are exhausted; nothing is sent then.
    pub fn seal_downlink(
        &mut self,
        store: &mut Store,
        packet: &[u8],
        key_id: Option<u16>,
    ) -> Result<Vec<u8>, LinkSecError> {
        let key_id = key_id
            .filter(|id| self.has_key(*id))
            .unwrap_or(self.tx_key_id);
        let cipher = self
            .ciphers
            .iter()
            .find(|c| c.key_id() == key_id)
            .cloned()
            .ok_or(LinkSecError::NoTxKey(key_id))?;
        let counter = match self.tx_counters.entry(key_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(TxCounter::resume(
                store.seq_bound(key_id, SeqDir::Tx)?,
                self.seq_block,
            )),
        };
        let seq = loop {
            match counter.next(key_id)? {
                TxNext::Use(seq) => break seq,
                TxNext::Reserve { reserved_until } => {
                    store.raise_seq_bound(key_id, SeqDir::Tx, reserved_until)?;
                    counter.reserved(reserved_until);
                }
            }
        };
        Ok(cipher.seal(Direction::Downlink, seq, packet)?)
    }

    /// Whether a key id is in the keyring now.
    #[must_use]
    pub fn has_key(&self, key_id: u16) -> bool {
        self.ciphers.iter().any(|c| c.key_id() == key_id)
    }

    /// Adds a key installed by rekey (already persisted by the caller,
    /// with the retirement of `replaces` pending on it) to the keyring.
    /// Call [`Self::switch_tx`] once the reply under the old key is sealed.
    pub fn add_key(&mut self, key_id: u16, key: &LinkKey, replaces: u16) {
        let cipher = Cipher::new(key_id, key);
        self.rx.insert(RxKey::new(
            cipher.clone(),
            RxReservation::resume(1, self.seq_block),
        ));
        self.ciphers.retain(|c| c.key_id() != key_id);
        self.ciphers.push(cipher);
        if !self.pending.contains(&(key_id, replaces)) {
            self.pending.push((key_id, replaces));
        }
    }

    /// After a rekey from `replaced` to `key_id`: if `replaced` was the
    /// downlink key, `key_id` becomes it (the store recorded that with the
    /// key). Other stations' keys and the downlink key otherwise stay.
    pub fn switch_tx(&mut self, replaced: u16, key_id: u16) {
        if self.tx_key_id == replaced && self.has_key(key_id) {
            self.tx_key_id = key_id;
        }
    }

    /// Called after an uplink packet under `key_id` was accepted: retires
    /// the keys whose retirement waits on it (store first, in one
    /// transaction; then the keyring). Returns the ids retired.
    ///
    /// # Errors
    /// [`LinkSecError::Store`] if retirement cannot be recorded (the keys
    /// then stay usable, the pending list intact, and retirement is retried
    /// on the next packet).
    pub fn heard_under(
        &mut self,
        store: &mut Store,
        key_id: u16,
    ) -> Result<Vec<u16>, LinkSecError> {
        if !self.pending.iter().any(|(new, _)| *new == key_id) {
            return Ok(Vec::new());
        }
        let retired = store.retire_pending(key_id)?;
        self.pending
            .retain(|(new, old)| *new != key_id && !retired.contains(old));
        for id in &retired {
            self.rx.remove(*id);
            self.ciphers.retain(|c| c.key_id() != *id);
            self.tx_counters.remove(id);
            if self.tx_key_id == *id {
                self.tx_key_id = key_id;
            }
        }
        Ok(retired)
    }

    /// Retirements waiting for the ground under a new key.
    #[must_use]
    pub fn pending_retirements(&self) -> &[(u16, u16)] {
        &self.pending
    }

    /// The downlink key id.
    #[must_use]
    pub fn tx_key_id(&self) -> u16 {
        self.tx_key_id
    }

    /// The next downlink sequence number under the downlink key (1 if
    /// nothing was sent under it since the start; the durable bound is
    /// above everything sent before).
    #[must_use]
    pub fn tx_next_seq(&self) -> u64 {
        self.tx_counters
            .get(&self.tx_key_id)
            .map_or(0, TxCounter::peek)
    }

    /// Highest uplink number accepted under the downlink key.
    #[must_use]
    pub fn rx_highest(&self) -> u64 {
        self.rx
            .windows()
            .into_iter()
            .find(|(id, _)| *id == self.tx_key_id)
            .map_or(0, |(_, h)| h)
    }

    /// Refusal counters.
    #[must_use]
    pub fn counters(&self) -> SecCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;
    use spacenode_wire::security::SecHeader;

    fn cfg() -> LinkConfig {
        LinkConfig {
            device: "/dev/null".into(),
            baud: 115_200,
            tx_key_id: 1,
            seq_block: 8,
            keys: vec![KeyConfig {
                id: 1,
                key: Some(LinkKey::new([5; 32])),
            }],
        }
    }

    #[test]
    fn downlink_numbers_exceed_everything_sent_before_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut max_sent = 0;
        for _restart in 0..5 {
            let mut store = Store::open(dir.path()).unwrap();
            let mut sec =
                LinkSecurity::resume(&cfg(), &[(1, LinkKey::new([5; 32]))], &store).unwrap();
            for _ in 0..11 {
                let env = sec.seal_downlink(&mut store, b"tm", None).unwrap();
                let seq = SecHeader::parse(&env).unwrap().seq;
                assert!(seq > max_sent, "seq {seq} not above {max_sent}");
                max_sent = seq;
            }
            // Dropped without any shutdown step: as after kill -9.
        }
    }

    #[test]
    fn uplink_replays_after_restart_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ground = Cipher::new(1, &LinkKey::new([5; 32]));
        let sent: Vec<Vec<u8>> = (1..=20)
            .map(|s| ground.seal(Direction::Uplink, s, b"tc").unwrap())
            .collect();
        {
            let mut store = Store::open(dir.path()).unwrap();
            let mut sec =
                LinkSecurity::resume(&cfg(), &[(1, LinkKey::new([5; 32]))], &store).unwrap();
            for env in &sent {
                sec.open_uplink(&mut store, env).unwrap();
            }
        }
        let mut store = Store::open(dir.path()).unwrap();
        let mut sec = LinkSecurity::resume(&cfg(), &[(1, LinkKey::new([5; 32]))], &store).unwrap();
        for env in &sent {
            assert!(matches!(
                sec.open_uplink(&mut store, env),
                Err(LinkSecError::Sec(SecError::Replay { .. }))
            ));
        }
        assert_eq!(sec.counters().replays, 20);
        let fresh = ground
            .seal(Direction::Uplink, sec.rx_highest() + 1, b"tc")
            .unwrap();
        assert!(sec.open_uplink(&mut store, &fresh).is_ok());
    }

    fn installed(key_id: u16, replaces: u16, seq: u64) -> crate::store::InstalledKey {
        crate::store::InstalledKey {
            key_id,
            digest: [u8::try_from(key_id).unwrap(); 32],
            replaces,
            make_downlink: true,
            command_seq: seq,
            now_ms: 0,
        }
    }

    fn uplink(key_id: u16, key: [u8; 32], seq: u64) -> Vec<u8> {
        Cipher::new(key_id, &LinkKey::new(key))
            .seal(Direction::Uplink, seq, b"tc")
            .unwrap()
    }

    /// Issue 13 item 4: a restart between the rekey and the first uplink
    /// under the new key must not keep the old key alive.
    #[test]
    fn a_restart_before_the_first_uplink_under_the_new_key_still_retires_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [(1, LinkKey::new([5; 32])), (7, LinkKey::new([6; 32]))];
        {
            let mut store = Store::open(dir.path()).unwrap();
            let mut sec = LinkSecurity::resume(&cfg(), &keys[..1], &store).unwrap();
            store
                .record_installed_key(&installed(7, 1, 1), None)
                .unwrap();
            sec.add_key(7, &LinkKey::new([6; 32]), 1);
            sec.switch_tx(1, 7);
            // kill -9 here: nothing heard under key 7 yet.
        }
        let mut store = Store::open(dir.path()).unwrap();
        let mut sec = LinkSecurity::resume(&cfg(), &keys, &store).unwrap();
        assert_eq!(sec.tx_key_id(), 7);
        sec.open_uplink(&mut store, &uplink(1, [5; 32], 1)).unwrap();
        assert!(sec.heard_under(&mut store, 1).unwrap().is_empty());
        sec.open_uplink(&mut store, &uplink(7, [6; 32], 1)).unwrap();
        assert_eq!(sec.heard_under(&mut store, 7).unwrap(), vec![1]);
        assert!(matches!(
            sec.open_uplink(&mut store, &uplink(1, [5; 32], 2)),
            Err(LinkSecError::Sec(SecError::UnknownKey { key_id: 1 }))
        ));
        assert_eq!(store.retired_key_ids().unwrap(), vec![1]);
        assert!(store.pending_retirements().unwrap().is_empty());
    }

    /// A store error while retiring leaves the pending list intact; the
    /// next packet under the new key retires.
    #[test]
    fn a_store_error_keeps_pending_retirements() {
        let dir = tempfile::tempdir().unwrap();
        let keys = [(1, LinkKey::new([5; 32])), (7, LinkKey::new([6; 32]))];
        let mut store = Store::open(dir.path()).unwrap();
        store
            .record_installed_key(&installed(7, 1, 1), None)
            .unwrap();
        let mut sec = LinkSecurity::resume(&cfg(), &keys, &store).unwrap();
        // Another process holds the write lock (an operator's sqlite3).
        let other = rusqlite::Connection::open(dir.path().join("spacenode.db")).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(sec.heard_under(&mut store, 7).is_err());
        assert_eq!(sec.pending_retirements(), &[(7, 1)]);
        assert!(sec.has_key(1));
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(sec.heard_under(&mut store, 7).unwrap(), vec![1]);
        assert!(!sec.has_key(1));
    }

    /// Two stations: a rekey of one station's key leaves the other's alone,
    /// and replies go out under the key their TC arrived under.
    #[test]
    fn a_rekey_retires_only_the_key_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let keys = [(1, LinkKey::new([5; 32])), (2, LinkKey::new([8; 32]))];
        let mut sec = LinkSecurity::resume(&cfg(), &keys, &store).unwrap();
        store
            .record_installed_key(&installed(7, 1, 1), None)
            .unwrap();
        sec.add_key(7, &LinkKey::new([6; 32]), 1);
        sec.switch_tx(1, 7);
        sec.open_uplink(&mut store, &uplink(7, [6; 32], 1)).unwrap();
        assert_eq!(sec.heard_under(&mut store, 7).unwrap(), vec![1]);
        assert!(sec.has_key(2));
        sec.open_uplink(&mut store, &uplink(2, [8; 32], 1)).unwrap();
        let reply = sec.seal_downlink(&mut store, b"tm", Some(2)).unwrap();
        assert_eq!(SecHeader::parse(&reply).unwrap().key_id, 2);
        let unsolicited = sec.seal_downlink(&mut store, b"tm", None).unwrap();
        assert_eq!(SecHeader::parse(&unsolicited).unwrap().key_id, 7);
    }
}
