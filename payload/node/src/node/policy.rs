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
use spacenode_policy::change::{ChangeError, PolicyState, Transition};
use spacenode_policy::command::{Command, CommandError, SignedCommand};
use spacenode_policy::quorum::{AdminSet, QuorumError};
use spacenode_wire::ReasonCode;
use spacenode_wire::cosign::{Fragment, refusal_data};
use spacenode_wire::msg::{EventId, FailureNotice};

use super::sign::NodeSigner;
use super::{Node, Now, TmBody};
use crate::config::KeyNetwork;
use crate::store::{Store, StoreError};

/// How often the node checks whether a pending policy is due.
pub(super) const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn store_failure(e: &StoreError) -> FailureNotice {
    FailureNotice {
        code: e.code(),
        data: e.to_string().into_bytes(),
    }
}

pub(crate) fn no_policy() -> FailureNotice {
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
    pub(crate) fn admin_set(&self) -> Result<AdminSet, CommandError> {
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
    pub(crate) fn admin_refused(
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

    pub(crate) fn command_refused(
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

    pub(crate) fn change_refused(
        &mut self,
        e: &ChangeError,
        now: Now,
        out: &mut Vec<Vec<u8>>,
    ) -> FailureNotice {
        self.admin_refused(e.code(), e.rule(), &e.to_string(), now, out)
    }

    /// Makes `next` (whose active policy is new) the node's policy: an
    /// epoch bump (database, then TPM counter), then the chain anchor and
    /// the allowlist. On failure the node keeps what the database says.
    pub(crate) fn activate_policy(
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
    pub(crate) fn poll_policy(&mut self, now: Now, out: &mut Vec<Vec<u8>>) {
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

    /// Authorises an administrator command of `expected` kind against the
    /// active policy's administrators; its validity window is checked
    /// against the trusted time (`node::clock`).
    pub(crate) fn authorize_command(
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
    pub(crate) fn authorize_command_at(
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

    /// A wallet registration body checked against the node's seed (the
    /// registration names the node's own key): the wallet, or why it is
    /// refused; no seed is a failure of its own.
    pub(crate) fn wallet_from_registration(
        &self,
        body: &[u8],
    ) -> Result<Result<Wallet, spacenode_btc::wallet::WalletError>, FailureNotice> {
        let keys = self.keys.as_ref().ok_or_else(seed_unavailable)?;
        Ok(Wallet::from_registration(
            body,
            &NodeSigner(keys),
            network_kind(self.cfg.key_network),
        ))
    }

    /// Sends `bytes` as fragments keyed `key` (see `wire::cosign`).
    #[allow(clippy::too_many_arguments, reason = "a TM's address and content")]
    pub(crate) fn emit_fragments(
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
