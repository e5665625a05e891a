//! The node's policy service (PUS 131): the quorum-signed spending policy
//! and its changes, wallet registration, the clock resync, the status and
//! the downlink of policy documents and audit entries.
//!
//! Decisions are the pure `spacenode-policy` state machine's
//! ([`PolicyState`]) and `spacenode-btc`'s wallet checks; this file
//! persists them in the order `docs/policy.md` prescribes:
//!
//! - the first policy (bootstrap, signed by the config's `[admin]` set on a
//!   node that never anchored a policy; after a database loss, recovery
//!   signed by the anchored administrators, `spacenode_policy::anchor`) and
//!   every activation: an epoch bump — the state is written with
//!   `epoch = next` in one transaction, then the TPM counter is advanced
//!   (`Node::bump_epoch_with`), then the policy anchor is written (TPM NV,
//!   `node/anchor.rs`), and only then does the node use the policy
//!   (re-anchor the header chain at its checkpoint, compile its allowlist)
//!   and acknowledge;
//! - a proposal (pending) and a veto: the state (and the veto command's
//!   sequence) in one transaction, before the acknowledgement;
//! - a wallet registration: the body and the command's sequence in one
//!   transaction, after re-deriving the node's key from the seed;
//! - a retirement (wallet or Safe): the deletion and the command's sequence
//!   in one transaction, before it is dropped from memory.
//!
//! Must never: use a policy that is not persisted and bound to the counter,
//! accept a command authorised by anyone but the active administrators (the
//! config's set only until the first policy), or register a wallet without
//! the node's own key in it.

use bitcoin::NetworkKind;
use spacenode_btc::wallet::{AllowMatcher, Wallet};
use spacenode_keys::KeyStore;
use spacenode_policy::Rule;
use spacenode_policy::anchor::recover;
use spacenode_policy::change::{ChangeError, PolicyState, Transition};
use spacenode_policy::clock::{ClockAnchor, ClockGuard};
use spacenode_policy::command::{Command, CommandError, SignedCommand, kind};
use spacenode_policy::document::SignedPolicy;
use spacenode_policy::quorum::{AdminSet, QuorumError};
use spacenode_policy::units::TimeMs;
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{
    AuditCheckpoint, AuditRecord, AuditRequest, Fragment, MAX_AUDIT_PER_REQUEST, Payload,
    PolicyStatus, refusal_data,
};
use spacenode_wire::msg::{EventId, FailureNotice};
use spacenode_wire::services::{apid, service, subtype};

use super::sign::NodeSigner;
use super::{Node, Now};
use crate::config::KeyNetwork;
use crate::services::TmBody;
use crate::store::{Store, StoreError};

/// How often the node checks whether a pending policy is due.
pub(super) const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn store_failure(e: &StoreError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

fn no_policy() -> FailureNotice {
    FailureNotice {
        code: ReasonCode::NO_POLICY,
        data: b"no active policy: upload a quorum-signed policy first (ground policy upload)"
            .to_vec(),
    }
}

fn seed_unavailable() -> FailureNotice {
    FailureNotice {
        code: ReasonCode(0x0403),
        data: b"the signing seed is not available (see mode status)".to_vec(),
    }
}

/// The key network of the node's xpubs.
pub(super) fn network_kind(n: KeyNetwork) -> NetworkKind {
    match n {
        KeyNetwork::Main => NetworkKind::Main,
        KeyNetwork::Test => NetworkKind::Test,
    }
}

/// What the node loads at start.
pub(super) struct Loaded {
    /// The policy state, if one was ever bootstrapped.
    pub policy: Option<PolicyState>,
    /// Its compiled allowlist.
    pub allow: Option<AllowMatcher>,
    /// Registered wallets that re-check against the seed.
    pub wallets: Vec<Wallet>,
    /// Why the stored policy state cannot be used (safe mode), if so.
    pub fault: Option<String>,
}

/// Loads the policy state and re-checks every registered wallet against
/// the node's seed (`keys`: `None` when the seed is unavailable; the node
/// then signs nothing anyway).
pub(super) fn load(store: &Store, keys: Option<&KeyStore>, network: KeyNetwork) -> Loaded {
    let mut fault = None;
    let policy = match store.policy_state() {
        Ok(None) => None,
        Ok(Some(bytes)) => match PolicyState::decode(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                fault = Some(format!("stored policy state: {e}"));
                None
            }
        },
        Err(e) => {
            fault = Some(format!("cannot read the policy state: {e}"));
            None
        }
    };
    let allow = policy
        .as_ref()
        .and_then(|p| match AllowMatcher::new(&p.active.document.rules) {
            Ok(a) => Some(a),
            Err(e) => {
                fault = Some(format!("allowlist of the active policy: {e}"));
                None
            }
        });
    let mut wallets = Vec::new();
    if let Some(keys) = keys {
        match store.wallets() {
            Ok(rows) => {
                for (id, body) in rows {
                    match Wallet::from_registration(&body, &NodeSigner(keys), network_kind(network))
                    {
                        Ok(w) => wallets.push(w),
                        Err(e) => tracing::error!(
                            wallet = %hex::encode(id),
                            error = %e,
                            "registered wallet does not re-check against the seed; ignored"
                        ),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the registered wallets"),
        }
    }
    if let Some(p) = &policy {
        tracing::info!(
            version = p.active.document.version,
            hash = %hex::encode(p.active.hash),
            pending = p.pending.as_ref().map(|x| x.document.version),
            wallets = wallets.len(),
            "policy loaded"
        );
    }
    Loaded {
        policy,
        allow,
        wallets,
        fault,
    }
}

impl Node {
    /// The administrators who authorise commands now: the active policy's,
    /// or the config's `[admin]` set until the first policy.
    pub(super) fn admin_set(&self) -> Result<AdminSet, CommandError> {
        match &self.policy {
            Some(p) => p
                .admins()
                .map_err(|_| CommandError::Quorum(QuorumError::InvalidSet("active policy"))),
            None => self
                .cfg
                .admin
                .clone()
                .ok_or(CommandError::Quorum(QuorumError::InvalidSet(
                    "no administrator set configured",
                ))),
        }
    }

    /// Reports a refused administrator document or command (event
    /// `ADMIN_REFUSED`) and returns its failure notice.
    pub(super) fn admin_refused(
        &mut self,
        code: u16,
        rule: Rule,
        detail: &str,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> FailureNotice {
        tracing::warn!(code, rule = rule.tag(), %detail, "administrator request refused");
        out.extend(self.raise(EventId::ADMIN_REFUSED, code.to_be_bytes().to_vec(), now));
        FailureNotice {
            code: ReasonCode(code),
            data: refusal_data(rule.tag(), detail),
        }
    }

    pub(super) fn command_refused(
        &mut self,
        e: &CommandError,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> FailureNotice {
        let rule = match e {
            CommandError::Quorum(_) => Rule::PolicyQuorum,
            _ => Rule::PolicyEncoding,
        };
        self.admin_refused(e.code(), rule, &e.to_string(), now, out)
    }

    fn change_refused(
        &mut self,
        e: &ChangeError,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> FailureNotice {
        self.admin_refused(e.code(), e.rule(), &e.to_string(), now, out)
    }

    /// TC[131,1]: the first policy (bootstrap) or a proposed change.
    pub(super) fn policy_propose(
        &mut self,
        payload: Payload,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = self.resolve_payload(payload)?;
        // Trusted time (`node::clock`): a clock stepped back cannot
        // schedule the activation in the past.
        let t = self.trusted_now(now);
        let signed = match SignedPolicy::decode(&bytes) {
            Ok(s) => s,
            Err(e) => {
                return Err(self.admin_refused(
                    e.code(),
                    Rule::PolicyEncoding,
                    &e.to_string(),
                    now,
                    out,
                ));
            }
        };
        let next = match &self.policy {
            // A node that anchored a policy before (its database was lost)
            // recovers only through the anchored administrators; the
            // config's set bootstraps only a node that never had a policy.
            // An unreadable anchor refuses (fail closed).
            None => match self.read_anchor() {
                Err((code, detail)) => {
                    let detail = format!("policy anchor unreadable, bootstrap refused: {detail}");
                    return Err(self.admin_refused(code, Rule::PolicyQuorum, &detail, now, out));
                }
                Ok(Some(anchor)) => match recover(&self.secp, &anchor, &signed, t) {
                    Ok(s) => {
                        tracing::warn!(
                            anchored = anchor.version,
                            version = s.active.document.version,
                            "recovery: first policy after a database loss, signed by the anchored administrators"
                        );
                        s
                    }
                    Err(e) => {
                        return Err(self.admin_refused(
                            e.code(),
                            e.rule(),
                            &e.to_string(),
                            now,
                            out,
                        ));
                    }
                },
                Ok(None) => {
                    let admins = match self.admin_set() {
                        Ok(a) => a,
                        Err(e) => return Err(self.command_refused(&e, now, out)),
                    };
                    match PolicyState::bootstrap(&self.secp, &admins, &signed, t) {
                        Ok(s) => s,
                        Err(e) => return Err(self.change_refused(&e, now, out)),
                    }
                }
            },
            Some(current) => {
                let mut next = current.clone();
                match next.propose(&self.secp, &signed, t) {
                    Ok(_) => next,
                    Err(e) => return Err(self.change_refused(&e, now, out)),
                }
            }
        };
        let doc = next
            .pending
            .as_ref()
            .map_or(&next.active.document, |p| &p.document);
        if doc.network != self.cfg.chain.network.network() {
            let e = ChangeError::NetworkChange;
            let detail = format!(
                "policy for {} but the node follows {}",
                doc.network,
                self.cfg.chain.network.network()
            );
            return Err(self.admin_refused(e.code(), e.rule(), &detail, now, out));
        }
        if let Err(e) = AllowMatcher::new(&doc.rules) {
            return Err(self.admin_refused(
                e.code(),
                Rule::PolicyEncoding,
                &format!("allowlist: {e}"),
                now,
                out,
            ));
        }
        if self.policy.is_none() {
            tracing::warn!(
                version = next.active.document.version,
                "bootstrap: first policy signed by the configured administrators"
            );
            self.activate_policy(next, now, out)?;
        } else {
            let (version, activates_at) = next
                .pending
                .as_ref()
                .map_or((0, 0), |p| (p.document.version, p.activates_at.0));
            self.store
                .set_policy_state(&next.encode(), now.unix_ms, None, None)
                .map_err(|e| store_failure(&e))?;
            self.policy = Some(next);
            tracing::warn!(version, activates_at, "policy change pending");
            let mut aux = version.to_be_bytes().to_vec();
            aux.extend_from_slice(&activates_at.to_be_bytes());
            out.extend(self.raise(EventId::POLICY_PENDING, aux, now));
            self.poll_policy(now, out);
        }
        self.policy_status(dest_id, now, out)
    }

    /// Makes `next` (whose active policy is new) the node's policy: an
    /// epoch bump (database, then TPM counter), then the chain anchor and
    /// the allowlist. On failure the node keeps what the database says.
    fn activate_policy(
        &mut self,
        next: PolicyState,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = next.encode();
        if let Err((code, detail)) = self.bump_epoch_with(|store, epoch| {
            store.set_policy_state(&bytes, now.unix_ms, epoch, None)
        }) {
            tracing::error!(code, %detail, "policy activation could not be bound to the counter");
            // The database may hold the new state (counter step failed):
            // follow the database, as a restart would.
            let loaded = load(&self.store, None, self.cfg.key_network);
            self.policy = loaded.policy;
            self.allow = loaded.allow;
            return Err(FailureNotice {
                code: ReasonCode(code),
                data: detail.into_bytes(),
            });
        }
        let allow = AllowMatcher::new(&next.active.document.rules).ok();
        let version = next.active.document.version;
        let checkpoint = next.active.document.checkpoint.clone();
        tracing::warn!(
            version,
            hash = %hex::encode(next.active.hash),
            "policy active (bound to the anti-rollback counter)"
        );
        self.policy = Some(next);
        self.allow = allow;
        // Third step: the TPM anchor (docs/policy.md "Anchor and recovery").
        self.anchor_active_policy();
        match self.chain.adopt_checkpoint(&checkpoint) {
            Ok(true) => tracing::warn!("header chain reset to the policy checkpoint"),
            Ok(false) => {}
            Err(e) => tracing::error!(code = %e.code, "cannot apply the policy checkpoint"),
        }
        out.extend(self.raise(EventId::POLICY_ACTIVE, version.to_be_bytes().to_vec(), now));
        Ok(())
    }

    /// Activates the pending change when its time has come (called on the
    /// tick and before every decision that depends on the policy).
    pub(super) fn poll_policy(&mut self, now: Now, out: &mut Vec<Vec<u8>>) {
        // Trusted time (`node::clock`): a clock walked forward cannot make
        // the pending change due before its veto delay really passed.
        let t = self.trusted_now(now);
        let Some(current) = &self.policy else {
            return;
        };
        if current.pending.as_ref().is_none_or(|p| t < p.activates_at) {
            return;
        }
        let mut next = current.clone();
        if let Some(Transition::Activated { .. }) = next.poll(t)
            && let Err(e) = self.activate_policy(next, now, out)
        {
            tracing::error!(code = %e.code, "pending policy not activated; retrying");
        }
    }

    /// TC[131,2]: vetoes the pending change.
    pub(super) fn policy_veto(
        &mut self,
        cmd: &SignedCommand,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let Some(current) = &self.policy else {
            return Err(no_policy());
        };
        let executed = self
            .store
            .admin_executed(kind::VETO_POLICY)
            .map_err(|e| store_failure(&e))?;
        let mut next = current.clone();
        // The raw wall clock, not the trusted time: a veto only cancels the
        // pending change it names (safety-increasing), and after a reboot
        // gap the trusted time lags real time, which must not make the
        // quorum's veto "not yet valid" (`docs/policy.md`, "The clock").
        let t = match next.veto(
            &self.secp,
            cmd,
            self.cfg.node_id,
            executed,
            TimeMs(now.unix_ms),
        ) {
            Ok(t) => t,
            Err(e) => return Err(self.change_refused(&e, now, out)),
        };
        let seq = Command::decode(&cmd.command).map_or(executed.last_of_kind, |c| c.seq);
        self.store
            .set_policy_state(&next.encode(), now.unix_ms, None, Some(seq))
            .map_err(|e| store_failure(&e))?;
        self.policy = Some(next);
        if let Transition::Vetoed { version, .. } = t {
            tracing::warn!(version, seq, "pending policy change vetoed");
            out.extend(self.raise(EventId::POLICY_VETOED, version.to_be_bytes().to_vec(), now));
        }
        self.policy_status(dest_id, now, out)
    }

    /// Authorises an administrator command of `expected` kind against the
    /// active policy's administrators; its validity window is checked
    /// against the trusted time (`node::clock`).
    pub(super) fn authorize_command(
        &mut self,
        cmd: &SignedCommand,
        expected: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Command, FailureNotice> {
        let at = self.trusted_now(now).0;
        self.authorize_command_at(cmd, expected, at, now, out)
    }

    /// [`Self::authorize_command`] with the validity window checked at
    /// `at_ms`.
    fn authorize_command_at(
        &mut self,
        cmd: &SignedCommand,
        expected: u16,
        at_ms: i64,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Command, FailureNotice> {
        if self.policy.is_none() {
            return Err(no_policy());
        }
        let executed = self
            .store
            .admin_executed(expected)
            .map_err(|e| store_failure(&e))?;
        let admins = match self.admin_set() {
            Ok(a) => a,
            Err(e) => return Err(self.command_refused(&e, now, out)),
        };
        let c = match cmd.authorize(&self.secp, &admins, self.cfg.node_id, executed, at_ms) {
            Ok(c) => c,
            Err(e) => return Err(self.command_refused(&e, now, out)),
        };
        if c.kind != expected {
            let e = CommandError::WrongKind {
                expected,
                got: c.kind,
            };
            return Err(self.command_refused(&e, now, out));
        }
        Ok(c)
    }

    /// TC[131,5]: registers a wallet.
    pub(super) fn register_wallet(
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
        let cmd = self.authorize_command(&signed, kind::REGISTER_WALLET, now, out)?;
        let keys = self.keys.as_ref().ok_or_else(seed_unavailable)?;
        let wallet = match Wallet::from_registration(
            &cmd.body,
            &NodeSigner(keys),
            network_kind(self.cfg.key_network),
        ) {
            Ok(w) => w,
            Err(e) => {
                return Err(self.admin_refused(
                    e.code(),
                    Rule::WalletRegistration,
                    &e.to_string(),
                    now,
                    out,
                ));
            }
        };
        self.store
            .register_wallet(&wallet.id, &cmd.body, now.unix_ms, cmd.seq)
            .map_err(|e| store_failure(&e))?;
        tracing::warn!(
            wallet = %hex::encode(wallet.id),
            name = %wallet.name,
            seq = cmd.seq,
            "wallet registered"
        );
        let id = wallet.id;
        self.wallets.retain(|w| w.id != id);
        self.wallets.push(wallet);
        out.extend(self.raise(EventId::WALLET_REGISTERED, id.to_vec(), now));
        Ok(())
    }

    /// TC[131,10]: accepts a node time the clock guard refused as a jump
    /// and re-anchors the monotonic bound there: authenticated ground time
    /// is the only thing that can count a reboot gap (`docs/policy.md`,
    /// "The clock"). Its validity window is checked against the raw wall
    /// clock, because it is the command that repairs a clock the trusted
    /// time no longer follows; it can only move time forward, to the
    /// time the quorum signed.
    pub(super) fn clock_resync(
        &mut self,
        signed: &SignedCommand,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let cmd = self.authorize_command_at(signed, kind::CLOCK_RESYNC, now.unix_ms, now, out)?;
        let Ok(body) = <[u8; 8]>::try_from(cmd.body.as_slice()) else {
            let e = CommandError::Malformed("clock resync body is a time i64");
            return Err(self.command_refused(&e, now, out));
        };
        let last = self
            .store
            .clock_last_accepted()
            .map_err(|e| store_failure(&e))?;
        let mut guard = ClockGuard {
            last_accepted: last.map(TimeMs),
            ceiling: None,
        };
        guard.resync(TimeMs(i64::from_be_bytes(body)));
        let accepted = guard.last_accepted.unwrap_or(TimeMs(0));
        let anchor = ClockAnchor::fresh(now.boot, accepted);
        self.store
            .resync_clock(accepted.0, &anchor.encode(), cmd.seq)
            .map_err(|e| store_failure(&e))?;
        self.clock_anchor = anchor;
        tracing::warn!(
            accepted = accepted.0,
            seq = cmd.seq,
            "clock guard resynced and re-anchored"
        );
        Ok(())
    }

    /// TC[129,4] with a `CLEAR_DEEP_REORG` command: clears the flag of a
    /// refused deep reorg, which stops Bitcoin signing. The command's
    /// sequence is persisted BEFORE the flag is cleared (separate
    /// connections): a crash between the two leaves the flag set and the
    /// command spent (the quorum signs another), never a cleared flag whose
    /// command could clear a later one again.
    pub(super) fn clear_deep_reorg(
        &mut self,
        signed: &SignedCommand,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let cmd = self.authorize_command(signed, kind::CLEAR_DEEP_REORG, now, out)?;
        let Ok(body) = <[u8; 4]>::try_from(cmd.body.as_slice()) else {
            let e = CommandError::Malformed(
                "a deep-reorg clear's body is the refused branch's first height, u32",
            );
            return Err(self.command_refused(&e, now, out));
        };
        let branch_start = u32::from_be_bytes(body);
        self.chain.check_clear(branch_start)?;
        self.store
            .set_admin_seq(kind::CLEAR_DEEP_REORG, cmd.seq)
            .map_err(|e| store_failure(&e))?;
        self.chain.clear_deep_reorg()?;
        tracing::warn!(
            branch_start,
            seq = cmd.seq,
            "deep-reorg flag cleared by the administrator quorum: Bitcoin signing resumes"
        );
        Ok(())
    }

    /// TC[131,12]: retires a registered wallet (`RETIRE_WALLET`, body: the
    /// wallet id) or Safe (`RETIRE_SAFE`, body: chain id u64 BE | address
    /// 20): nothing is signed for it any more; its spends, signed nonces
    /// and audit entries stay. Registering it again takes a new command.
    pub(super) fn retire(
        &mut self,
        signed: &SignedCommand,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let claimed = Command::decode(&signed.command).map_or(kind::RETIRE_WALLET, |c| c.kind);
        let expected = if claimed == kind::RETIRE_SAFE {
            kind::RETIRE_SAFE
        } else {
            kind::RETIRE_WALLET
        };
        let cmd = self.authorize_command(signed, expected, now, out)?;
        if cmd.kind == kind::RETIRE_WALLET {
            let Ok(id) = <[u8; 32]>::try_from(cmd.body.as_slice()) else {
                let e = CommandError::Malformed("a wallet retirement's body is the wallet id");
                return Err(self.command_refused(&e, now, out));
            };
            if !self.wallets.iter().any(|w| w.id == id) {
                let e = ChangeError::NotRegistered {
                    what: "wallet",
                    id: hex::encode(id),
                };
                return Err(self.change_refused(&e, now, out));
            }
            self.store
                .retire_wallet(&id, cmd.seq)
                .map_err(|e| store_failure(&e))?;
            self.wallets.retain(|w| w.id != id);
            tracing::warn!(wallet = %hex::encode(id), seq = cmd.seq, "wallet retired");
        } else {
            let target = cmd
                .body
                .split_first_chunk::<8>()
                .and_then(|(chain, address)| {
                    Some((
                        u64::from_be_bytes(*chain),
                        <[u8; 20]>::try_from(address).ok()?,
                    ))
                });
            let Some((chain_id, address)) = target else {
                let e = CommandError::Malformed(
                    "a Safe retirement's body is chain id u64 | Safe address 20",
                );
                return Err(self.command_refused(&e, now, out));
            };
            let is_it = |s: &spacenode_eth::safe::Safe| {
                s.chain_id() == chain_id && s.address().0.0 == address
            };
            if !self.safes.iter().any(is_it) {
                let e = ChangeError::NotRegistered {
                    what: "Safe",
                    id: format!("{chain_id}:0x{}", hex::encode(address)),
                };
                return Err(self.change_refused(&e, now, out));
            }
            self.store
                .retire_safe(chain_id, &address, cmd.seq)
                .map_err(|e| store_failure(&e))?;
            self.safes.retain(|s| !is_it(s));
            tracing::warn!(chain_id, safe = %hex::encode(address), seq = cmd.seq, "Safe retired");
        }
        out.extend(self.raise(EventId::RETIRED, cmd.body.clone(), now));
        Ok(())
    }

    /// TC[131,3] (and the reply to proposals and vetoes).
    pub(super) fn policy_status(
        &mut self,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        self.poll_policy(now, out);
        let (next_seq, last_hash) = self.store.audit_head().map_err(|e| store_failure(&e))?;
        let mut st = PolicyStatus {
            wallets: u16::try_from(self.wallets.len()).unwrap_or(u16::MAX),
            safes: u16::try_from(self.safes.len()).unwrap_or(u16::MAX),
            audit_next_seq: next_seq,
            audit_last_hash: last_hash,
            admin_seq: self.store.admin_seq().map_err(|e| store_failure(&e))?,
            clock_last_accepted_ms: self
                .store
                .clock_last_accepted()
                .map_err(|e| store_failure(&e))?
                .unwrap_or(0),
            ..PolicyStatus::default()
        };
        if let Some(p) = &self.policy {
            st.active = true;
            st.active_version = p.active.document.version;
            st.active_hash = p.active.hash;
            st.activated_at_ms = p.active.activated_at.0;
            st.highest_version = p.highest_version;
            if let Some(q) = &p.pending {
                st.pending = true;
                st.pending_version = q.document.version;
                st.pending_hash = q.hash;
                st.activates_at_ms = q.activates_at.0;
            }
        }
        let body = TmBody {
            apid: apid::POLICY,
            service: service::POLICY,
            subtype: subtype::POLICY_STATUS,
            dest_id,
            data: st.encode(),
        };
        out.extend(self.emit(&body, now));
        Ok(())
    }

    /// TC[131,8]: the active (0) or pending (1) document, in fragments.
    pub(super) fn policy_document(
        &mut self,
        which: u8,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let bytes = match (&self.policy, which) {
            (None, _) => return Err(no_policy()),
            (Some(p), 0) => p.active.bytes.clone(),
            (Some(p), _) => match &p.pending {
                Some(q) => q.bytes.clone(),
                None => {
                    let e = ChangeError::NoPending;
                    return Err(FailureNotice {
                        code: ReasonCode(e.code()),
                        data: e.to_string().into_bytes(),
                    });
                }
            },
        };
        self.emit_fragments(
            apid::POLICY,
            service::POLICY,
            subtype::POLICY_DOCUMENT,
            0,
            &bytes,
            dest_id,
            now,
            out,
        )
    }

    /// TC[131,6]: audit entries with their receipts.
    pub(super) fn audit_fetch(
        &mut self,
        req: AuditRequest,
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        // Entries archived behind the checkpoint are gone: send the signed
        // checkpoint first, then the kept entries after it.
        let mut from = req.from_seq;
        if let Some((end_seq, chain_hash, signature)) = self
            .store
            .audit_checkpoint()
            .map_err(|e| store_failure(&e))?
            && from <= end_seq
        {
            let body = TmBody {
                apid: apid::POLICY,
                service: service::POLICY,
                subtype: subtype::POLICY_AUDIT_CHECKPOINT,
                dest_id,
                data: AuditCheckpoint {
                    end_seq,
                    chain_hash,
                    signature,
                }
                .encode(),
            };
            out.extend(self.emit(&body, now));
            from = end_seq.saturating_add(1);
        }
        let rows = self
            .store
            .audit_entries(from, req.max.min(MAX_AUDIT_PER_REQUEST))
            .map_err(|e| store_failure(&e))?;
        for row in rows {
            let record = AuditRecord {
                receipt: row.receipt,
                entry: row.entry,
            };
            self.emit_fragments(
                apid::POLICY,
                service::POLICY,
                subtype::POLICY_AUDIT_ENTRY,
                row.seq,
                &record.encode(),
                dest_id,
                now,
                out,
            )?;
        }
        Ok(())
    }

    /// Sends `bytes` as fragments keyed `key` (see `wire::cosign`).
    #[allow(clippy::too_many_arguments, reason = "a TM's address and content")]
    pub(super) fn emit_fragments(
        &mut self,
        apid: u16,
        service: u8,
        subtype: u8,
        key: u64,
        bytes: &[u8],
        dest_id: u16,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FailureNotice> {
        let parts = Fragment::split(key, bytes).ok_or_else(|| FailureNotice {
            code: ReasonCode::INTERNAL,
            data: format!("reply of {} bytes too large to fragment", bytes.len()).into_bytes(),
        })?;
        for data in parts {
            let body = TmBody {
                apid,
                service,
                subtype,
                dest_id,
                data,
            };
            out.extend(self.emit(&body, now));
        }
        Ok(())
    }
}
