//! Administrator commands: the canonical byte form that administrators sign
//! and the checks the node runs before acting on one (quorum, target node,
//! validity window, replay).
//!
//! ```text
//! command := "SNAC" | version u8 (1) | kind u16 | target node id [8]
//!            | seq u64 | not_before_ms i64 | not_after_ms i64
//!            | body_len u16 | body
//! signed  := command_len u16 | command | n u8 | n x (signer u8 | sig [64])
//! digest  := BIP340 tagged hash "spacenode/admin-command/v1" of `command`
//! ```
//!
//! All integers big-endian. Each node accepts a command only if it names the
//! node, the node's clock is inside the window, its sequence number is above
//! the last one the node executed OF THE SAME KIND (the node persists the
//! highest per kind, so a burst of one kind cannot consume the numbers of
//! another: a veto can never be pre-empted), it is at most [`MAX_SEQ_STEP`]
//! above the highest one executed of any kind (so a single command, even
//! signed by a rogue quorum, cannot exhaust the number space, e.g. with
//! `u64::MAX`), and a quorum of administrators signed exactly these bytes.
//!
//! The step is measured from the highest of any kind, not of the command's
//! kind, because the ground picks one counter for every kind (the status's
//! `admin_seq` + 1): a kind unused for a while stays reachable, and raising
//! the highest only ever loosens the bound, so it cannot block a veto.
//!
//! This module must never act on a command: it only says whether one is
//! authorised.

use bitcoin::secp256k1::{Secp256k1, Verification};

use crate::quorum::{AdminSet, QuorumError, Signature};

/// Domain tag of administrator command signatures.
pub const TAG: &str = "spacenode/admin-command/v1";
const MAGIC: &[u8; 4] = b"SNAC";
const VERSION: u8 = 1;
/// How far above the highest executed sequence (any kind) a command's
/// sequence may be. Reaching `u64::MAX` then takes more than 10^16 quorum
/// commands.
pub const MAX_SEQ_STEP: u64 = 1000;
/// Largest command body. A wallet registration (descriptor with origins for
/// a few keys) fits easily; larger bodies arrive through the file-upload
/// service, a single TC carries at most 2008 bytes of application data.
pub const MAX_BODY: usize = 4096;

/// Kinds of administrator command.
pub mod kind {
    /// Leave safe mode (body: empty).
    pub const EXIT_SAFE_MODE: u16 = 0x0001;
    /// Cancel the pending policy change (body: its 32-byte policy hash).
    /// Authorised with the active policy's `veto_threshold`, not its
    /// administrator threshold (`change::PolicyState::veto`).
    pub const VETO_POLICY: u16 = 0x0002;
    /// Accept a node time that the clock guard refused (body: new node
    /// time, i64 big-endian ms) after the operators checked the clock.
    pub const CLOCK_RESYNC: u16 = 0x0003;
    /// Register a multisig wallet (body: `spacenode_btc::wallet`
    /// registration encoding).
    pub const REGISTER_WALLET: u16 = 0x0010;
    /// Retire a registered wallet (body: 32-byte wallet id).
    pub const RETIRE_WALLET: u16 = 0x0011;
    /// Register a Safe (body: `spacenode_eth::safe::SafeRegistration`
    /// encoding).
    pub const REGISTER_SAFE: u16 = 0x0012;
    /// Retire a registered Safe (body: chain id u64 BE | Safe address 20).
    pub const RETIRE_SAFE: u16 = 0x0013;
    /// Authorise one Ethereum sign request whose Safe transaction calls the
    /// Safe itself (owners, threshold, guard, modules, fallback handler):
    /// body = the request hash (32). Checked by `spacenode_eth::engine`.
    pub const SAFE_ADMIN_TX: u16 = 0x0014;
    /// Clear the flag of a refused deep reorg, which stops Bitcoin signing
    /// (body: the refused branch's first height, u32 big-endian, as `ground
    /// chain status` shows it; the node refuses a command for another
    /// branch). Sent in TC[129,4] (`chain.clear-deep-reorg`).
    pub const CLEAR_DEEP_REORG: u16 = 0x0020;
    /// Install a new link key in place of the key the TC arrives under
    /// (body: [`super::RekeyBody`]; the key itself travels beside the
    /// command inside the encrypted envelope, see docs/wire.md).
    pub const REKEY_LINK: u16 = 0x0021;
}

/// What the node executed before, for the replay and step checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Executed {
    /// Highest sequence executed of the command's own kind.
    pub last_of_kind: u64,
    /// Highest sequence executed of any kind.
    pub highest: u64,
}

/// Body of a [`kind::REKEY_LINK`] command: commits to the new key without
/// carrying it.
///
/// ```text
/// body := new_key_id u16 | key_sha256 [32] | replaces_key_id u16
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyBody {
    /// Id of the new key.
    pub new_key_id: u16,
    /// SHA-256 of the new key's 32 bytes.
    pub key_sha256: [u8; 32],
    /// The key it replaces: the TC must arrive under it, and only it is
    /// retired.
    pub replaces_key_id: u16,
}

impl RekeyBody {
    /// Encoded length.
    pub const LEN: usize = 36;

    /// The body bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.new_key_id.to_be_bytes());
        out.extend_from_slice(&self.key_sha256);
        out.extend_from_slice(&self.replaces_key_id.to_be_bytes());
        out
    }

    /// Parses the body bytes.
    ///
    /// # Errors
    /// [`CommandError::Malformed`].
    pub fn decode(body: &[u8]) -> Result<Self, CommandError> {
        let mut r = Cursor(body);
        let new_key_id = u16::from_be_bytes(r.array()?);
        let key_sha256 = r.array()?;
        let replaces_key_id = u16::from_be_bytes(r.array()?);
        if !r.0.is_empty() {
            return Err(CommandError::Malformed("trailing bytes in a rekey body"));
        }
        Ok(Self {
            new_key_id,
            key_sha256,
            replaces_key_id,
        })
    }
}

/// Errors authorising a command. Codes 0x0520..=0x053F.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The bytes are not a well-formed signed command.
    #[error("malformed command: {0}")]
    Malformed(&'static str),
    /// The command is for another node.
    #[error("command targets node {target}, this is {node}")]
    WrongTarget {
        /// Target in the command (hex).
        target: String,
        /// This node (hex).
        node: String,
    },
    /// The sequence number is not above the last executed one.
    #[error("command seq {seq} replayed (last executed {last})")]
    Replayed {
        /// Sequence in the command.
        seq: u64,
        /// Highest executed.
        last: u64,
    },
    /// The node's clock is outside the command's validity window.
    #[error("command valid from {not_before_ms} to {not_after_ms} ms, node time {now_ms} ms")]
    Expired {
        /// Window start.
        not_before_ms: i64,
        /// Window end.
        not_after_ms: i64,
        /// Node time.
        now_ms: i64,
    },
    /// A different command kind was expected here.
    #[error("command kind {got:#06x} where {expected:#06x} was expected")]
    WrongKind {
        /// Expected kind.
        expected: u16,
        /// Kind in the command.
        got: u16,
    },
    /// The sequence number jumps too far above everything executed.
    #[error("command seq {seq} jumps more than {step} above the highest executed ({highest})")]
    SeqJump {
        /// Sequence in the command.
        seq: u64,
        /// Highest executed of any kind.
        highest: u64,
        /// The allowed step ([`MAX_SEQ_STEP`]).
        step: u64,
    },
    /// The quorum check failed.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

impl CommandError {
    /// Stable reason code for failure reports.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Malformed(_) => 0x0520,
            Self::WrongTarget { .. } => 0x0521,
            Self::Replayed { .. } => 0x0522,
            Self::Expired { .. } => 0x0523,
            Self::WrongKind { .. } => 0x0524,
            Self::SeqJump { .. } => 0x05D0,
            Self::Quorum(q) => q.code(),
        }
    }
}

/// An administrator command before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What to do ([`kind`]).
    pub kind: u16,
    /// The node it is for.
    pub target: [u8; 8],
    /// Strictly increasing per node and kind, at most [`MAX_SEQ_STEP`]
    /// above the highest executed.
    pub seq: u64,
    /// Earliest node time it may run, UNIX ms.
    pub not_before_ms: i64,
    /// Latest node time it may run, UNIX ms.
    pub not_after_ms: i64,
    /// Kind-specific data.
    pub body: Vec<u8>,
}

impl Command {
    /// The canonical bytes administrators sign.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41 + self.body.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(&self.target);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.not_before_ms.to_be_bytes());
        out.extend_from_slice(&self.not_after_ms.to_be_bytes());
        let len = u16::try_from(self.body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses canonical bytes; anything else is refused, including trailing
    /// bytes, so there is exactly one encoding per command.
    ///
    /// # Errors
    /// [`CommandError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let mut r = Cursor(bytes);
        if r.take(4)? != MAGIC {
            return Err(CommandError::Malformed("bad magic"));
        }
        if r.u8()? != VERSION {
            return Err(CommandError::Malformed("unknown version"));
        }
        let kind = u16::from_be_bytes(r.array()?);
        let target = r.array()?;
        let seq = u64::from_be_bytes(r.array()?);
        let not_before_ms = i64::from_be_bytes(r.array()?);
        let not_after_ms = i64::from_be_bytes(r.array()?);
        let len = usize::from(u16::from_be_bytes(r.array()?));
        if len > MAX_BODY {
            return Err(CommandError::Malformed("body too large"));
        }
        let body = r.take(len)?.to_vec();
        if !r.0.is_empty() {
            return Err(CommandError::Malformed("trailing bytes"));
        }
        Ok(Self {
            kind,
            target,
            seq,
            not_before_ms,
            not_after_ms,
            body,
        })
    }
}

/// A command with its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCommand {
    /// The canonical command bytes (signatures cover exactly these).
    pub command: Vec<u8>,
    /// Administrator signatures.
    pub signatures: Vec<Signature>,
}

impl SignedCommand {
    /// Wire form.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.command.len() + 65 * self.signatures.len());
        out.extend_from_slice(
            &u16::try_from(self.command.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.command);
        out.push(u8::try_from(self.signatures.len()).unwrap_or(u8::MAX));
        for s in self.signatures.iter().take(255) {
            out.push(s.signer);
            out.extend_from_slice(&s.sig);
        }
        out
    }

    /// Parses the wire form.
    ///
    /// # Errors
    /// [`CommandError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let mut r = Cursor(bytes);
        let len = usize::from(u16::from_be_bytes(r.array()?));
        let command = r.take(len)?.to_vec();
        let n = r.u8()?;
        let mut signatures = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let signer = r.u8()?;
            let sig = r.array()?;
            signatures.push(Signature { signer, sig });
        }
        if !r.0.is_empty() {
            return Err(CommandError::Malformed("trailing bytes"));
        }
        Ok(Self {
            command,
            signatures,
        })
    }

    /// Everything the node checks before acting: canonical form, target,
    /// window, replay (against `executed.last_of_kind`, read for the kind
    /// the caller expects; the caller refuses any other kind), step
    /// (against `executed.highest`), quorum. Returns the command to
    /// execute.
    ///
    /// # Errors
    /// [`CommandError`] for the first check that fails.
    pub fn authorize<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        admins: &AdminSet,
        node: [u8; 8],
        executed: Executed,
        now_ms: i64,
    ) -> Result<Command, CommandError> {
        let cmd = Command::decode(&self.command)?;
        if cmd.target != node {
            return Err(CommandError::WrongTarget {
                target: hex8(cmd.target),
                node: hex8(node),
            });
        }
        if now_ms < cmd.not_before_ms || now_ms > cmd.not_after_ms {
            return Err(CommandError::Expired {
                not_before_ms: cmd.not_before_ms,
                not_after_ms: cmd.not_after_ms,
                now_ms,
            });
        }
        if cmd.seq <= executed.last_of_kind {
            return Err(CommandError::Replayed {
                seq: cmd.seq,
                last: executed.last_of_kind,
            });
        }
        let highest = executed.highest.max(executed.last_of_kind);
        if cmd.seq > highest.saturating_add(MAX_SEQ_STEP) {
            return Err(CommandError::SeqJump {
                seq: cmd.seq,
                highest,
                step: MAX_SEQ_STEP,
            });
        }
        admins.verify(secp, TAG, &self.command, &self.signatures)?;
        Ok(cmd)
    }
}

fn hex8(b: [u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CommandError> {
        let (head, tail) = self
            .0
            .split_at_checked(n)
            .ok_or(CommandError::Malformed("truncated"))?;
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CommandError> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| CommandError::Malformed("truncated"))
    }

    fn u8(&mut self) -> Result<u8, CommandError> {
        Ok(self.array::<1>()?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::tagged_hash;
    use bitcoin::secp256k1::{Keypair, Message, SecretKey};
    use proptest::prelude::*;

    const NODE: [u8; 8] = *b"node-001";

    fn admins() -> (Vec<Keypair>, AdminSet) {
        let secp = Secp256k1::new();
        let kps: Vec<Keypair> = (1..=3u8)
            .map(|i| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[i; 32]).unwrap()))
            .collect();
        let set = AdminSet::new(kps.iter().map(|k| k.x_only_public_key().0).collect(), 2).unwrap();
        (kps, set)
    }

    fn signed(kps: &[Keypair], signers: &[u8], cmd: &Command) -> SignedCommand {
        let secp = Secp256k1::new();
        let bytes = cmd.encode();
        let digest = Message::from_digest(tagged_hash(TAG, &bytes));
        let signatures = signers
            .iter()
            .map(|&i| Signature {
                signer: i,
                sig: secp
                    .sign_schnorr_no_aux_rand(&digest, &kps[usize::from(i)])
                    .serialize(),
            })
            .collect();
        SignedCommand {
            command: bytes,
            signatures,
        }
    }

    fn exit_cmd(seq: u64) -> Command {
        Command {
            kind: kind::EXIT_SAFE_MODE,
            target: NODE,
            seq,
            not_before_ms: 1000,
            not_after_ms: 5000,
            body: vec![],
        }
    }

    #[test]
    fn authorised_command_passes_every_check() {
        let (kps, set) = admins();
        let secp = Secp256k1::verification_only();
        let sc = SignedCommand::decode(&signed(&kps, &[0, 1], &exit_cmd(7)).encode()).unwrap();
        assert_eq!(
            sc.authorize(&secp, &set, NODE, at(6), 2000),
            Ok(exit_cmd(7))
        );
    }

    fn at(last: u64) -> Executed {
        Executed {
            last_of_kind: last,
            highest: last,
        }
    }

    /// Issue 13 item 3: one quorum command with a huge sequence must not
    /// spend the whole number space.
    #[test]
    fn a_sequence_jump_beyond_the_step_is_refused() {
        let (kps, set) = admins();
        let secp = Secp256k1::verification_only();
        for seq in [u64::MAX, i64::MAX as u64, 6 + MAX_SEQ_STEP + 1] {
            let sc = signed(&kps, &[0, 1], &exit_cmd(seq));
            let e = sc.authorize(&secp, &set, NODE, at(6), 2000).unwrap_err();
            assert!(matches!(e, CommandError::SeqJump { .. }), "{seq}: {e:?}");
            assert_eq!(e.code(), 0x05D0);
        }
        let edge = signed(&kps, &[0, 1], &exit_cmd(6 + MAX_SEQ_STEP));
        assert!(edge.authorize(&secp, &set, NODE, at(6), 2000).is_ok());
    }

    /// A kind whose own last sequence is far behind the highest (other
    /// kinds were busy) is still reachable, and only its own last bounds
    /// its replay check: a burst of other kinds cannot pre-empt a veto.
    #[test]
    fn other_kinds_do_not_consume_a_kinds_sequence() {
        let (kps, set) = admins();
        let secp = Secp256k1::verification_only();
        let veto = |seq| Command {
            kind: kind::VETO_POLICY,
            body: vec![7; 32],
            ..exit_cmd(seq)
        };
        let executed = Executed {
            last_of_kind: 0,
            highest: 1_000_000,
        };
        let sc = signed(&kps, &[0, 1], &veto(1));
        assert_eq!(sc.authorize(&secp, &set, NODE, executed, 2000), Ok(veto(1)));
        let sc = signed(&kps, &[0, 1], &veto(1_000_500));
        assert!(sc.authorize(&secp, &set, NODE, executed, 2000).is_ok());
    }

    #[test]
    fn rekey_body_round_trips_and_refuses_other_lengths() {
        let b = RekeyBody {
            new_key_id: 7,
            key_sha256: [3; 32],
            replaces_key_id: 1,
        };
        assert_eq!(b.encode().len(), RekeyBody::LEN);
        assert_eq!(RekeyBody::decode(&b.encode()), Ok(b));
        assert!(RekeyBody::decode(&b.encode()[..35]).is_err());
        let mut long = b.encode();
        long.push(0);
        assert!(RekeyBody::decode(&long).is_err());
    }

    #[test]
    fn each_check_refuses() {
        let (kps, set) = admins();
        let secp = Secp256k1::verification_only();
        let sc = signed(&kps, &[0, 2], &exit_cmd(7));
        assert!(matches!(
            sc.authorize(&secp, &set, *b"node-002", at(0), 2000),
            Err(CommandError::WrongTarget { .. })
        ));
        assert!(matches!(
            sc.authorize(&secp, &set, NODE, at(7), 2000),
            Err(CommandError::Replayed { seq: 7, last: 7 })
        ));
        assert!(matches!(
            sc.authorize(&secp, &set, NODE, at(0), 999),
            Err(CommandError::Expired { .. })
        ));
        assert!(matches!(
            sc.authorize(&secp, &set, NODE, at(0), 5001),
            Err(CommandError::Expired { .. })
        ));
        let one = signed(&kps, &[1], &exit_cmd(7));
        assert!(matches!(
            one.authorize(&secp, &set, NODE, at(0), 2000),
            Err(CommandError::Quorum(QuorumError::NotMet { .. }))
        ));
        let mut tampered = sc.clone();
        let last = tampered.command.len() - 3;
        tampered.command[last] ^= 1;
        assert!(tampered.authorize(&secp, &set, NODE, at(0), 2000).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedCommand::decode(&bytes);
            let _ = Command::decode(&bytes);
        }

        #[test]
        fn command_round_trips(kind: u16, target: [u8; 8], seq: u64, nb: i64, na: i64, body in proptest::collection::vec(any::<u8>(), 0..MAX_BODY)) {
            let c = Command { kind, target, seq, not_before_ms: nb, not_after_ms: na, body };
            prop_assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        }
    }
}
