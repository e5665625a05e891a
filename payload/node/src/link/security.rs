//! Link security with durable sequence numbers: wraps the pure envelope and
//! window logic of `spacenode_wire::security` and persists reservations in
//! the store before a sequence number is used or an accepted packet is acted
//! on. A crash at any instant can skip numbers; it can never reuse a downlink
//! nonce or re-accept an uplink packet.
//!
//! This module must never let a store failure pass silently: when a
//! reservation cannot be made durable, the packet is not sent or not
//! accepted.

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
#[derive(Debug)]
pub struct LinkSecurity {
    rx: Receiver,
    tx_cipher: Cipher,
    tx_counter: TxCounter,
    ciphers: Vec<Cipher>,
    seq_block: u64,
    superseded: Vec<u16>,
    counters: SecCounters,
}

impl LinkSecurity {
    /// Builds the keyring from the unsealed link keys (custody already
    /// dropped retired ones) and resumes every sequence state from the
    /// store.
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
        let tx_cipher = ciphers
            .iter()
            .find(|c| c.key_id() == tx_key_id)
            .cloned()
            .ok_or(LinkSecError::NoTxKey(tx_key_id))?;
        let mut rx = Receiver::new(Direction::Uplink);
        for c in &ciphers {
            let bound = store.seq_bound(c.key_id(), SeqDir::Rx)?;
            rx.insert(RxKey::new(
                c.clone(),
                RxReservation::resume(bound, cfg.seq_block),
            ));
        }
        let tx_counter = TxCounter::resume(store.seq_bound(tx_key_id, SeqDir::Tx)?, cfg.seq_block);
        Ok(Self {
            rx,
            tx_cipher,
            tx_counter,
            ciphers,
            seq_block: cfg.seq_block,
            superseded: Vec::new(),
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

    /// Seals a downlink packet under the current downlink key.
    ///
    /// # Errors
    /// [`LinkSecError`] if a reservation cannot be persisted or the key's
    /// numbers are exhausted; nothing is sent then.
    pub fn seal_downlink(
        &mut self,
        store: &mut Store,
        packet: &[u8],
    ) -> Result<Vec<u8>, LinkSecError> {
        let key_id = self.tx_cipher.key_id();
        let seq = loop {
            match self.tx_counter.next(key_id)? {
                TxNext::Use(seq) => break seq,
                TxNext::Reserve { reserved_until } => {
                    store.raise_seq_bound(key_id, SeqDir::Tx, reserved_until)?;
                    self.tx_counter.reserved(reserved_until);
                }
            }
        };
        Ok(self.tx_cipher.seal(Direction::Downlink, seq, packet)?)
    }

    /// Whether a key id is in the keyring now.
    #[must_use]
    pub fn has_key(&self, key_id: u16) -> bool {
        self.ciphers.iter().any(|c| c.key_id() == key_id)
    }

    /// Adds a key (already persisted by the caller) to the receive keyring.
    /// Call [`Self::switch_tx`] once the reply under the old key is sealed.
    pub fn add_key(&mut self, key_id: u16, key: &LinkKey) {
        let cipher = Cipher::new(key_id, key);
        self.rx.insert(RxKey::new(
            cipher.clone(),
            RxReservation::resume(1, self.seq_block),
        ));
        self.ciphers.retain(|c| c.key_id() != key_id);
        self.ciphers.push(cipher);
    }

    /// Makes `key_id` the downlink key. Every other key is retired as soon as
    /// the ground is heard under the new one.
    ///
    /// # Errors
    /// [`LinkSecError`] if the key is unknown or its state cannot be read.
    pub fn switch_tx(&mut self, store: &Store, key_id: u16) -> Result<(), LinkSecError> {
        let cipher = self
            .ciphers
            .iter()
            .find(|c| c.key_id() == key_id)
            .cloned()
            .ok_or(LinkSecError::NoTxKey(key_id))?;
        self.tx_counter = TxCounter::resume(store.seq_bound(key_id, SeqDir::Tx)?, self.seq_block);
        self.superseded = self
            .ciphers
            .iter()
            .map(Cipher::key_id)
            .filter(|id| *id != key_id)
            .collect();
        self.tx_cipher = cipher;
        Ok(())
    }

    /// Called after an uplink packet under `key_id` was accepted: retires
    /// superseded keys once the ground uses the new one. Returns the ids
    /// retired.
    ///
    /// # Errors
    /// [`LinkSecError::Store`] if retirement cannot be recorded (the keys
    /// then stay usable and retirement is retried on the next packet).
    pub fn heard_under(
        &mut self,
        store: &mut Store,
        key_id: u16,
    ) -> Result<Vec<u16>, LinkSecError> {
        if key_id != self.tx_cipher.key_id() || self.superseded.is_empty() {
            return Ok(Vec::new());
        }
        let retired = std::mem::take(&mut self.superseded);
        for id in &retired {
            store.retire_key(*id)?;
            self.rx.remove(*id);
            self.ciphers.retain(|c| c.key_id() != *id);
        }
        Ok(retired)
    }

    /// The downlink key id.
    #[must_use]
    pub fn tx_key_id(&self) -> u16 {
        self.tx_cipher.key_id()
    }

    /// The next downlink sequence number.
    #[must_use]
    pub fn tx_next_seq(&self) -> u64 {
        self.tx_counter.peek()
    }

    /// Highest uplink number accepted under the downlink key.
    #[must_use]
    pub fn rx_highest(&self) -> u64 {
        self.rx
            .windows()
            .into_iter()
            .find(|(id, _)| *id == self.tx_cipher.key_id())
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
                let env = sec.seal_downlink(&mut store, b"tm").unwrap();
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
}
