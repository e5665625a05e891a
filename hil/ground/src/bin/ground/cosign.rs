//! The co-signing commands of `ground`: `policy`, `wallet`, `btc`, `audit`,
//! `files` and the offline regtest helpers `demo`. Argument parsing and
//! printing only; the work is in `spacenode_ground::{cosign, files,
//! policyfile, btc, demo}`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use bitcoin::secp256k1::{Keypair, XOnlyPublicKey};
use bitcoin::{Address, Network, NetworkKind};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::cosign::{self, Answer, Audited};
use spacenode_ground::files::UploadEvent;
use spacenode_ground::inputs::{self, Input};
use spacenode_ground::{admin, btc, demo, display, files, policyfile};
use spacenode_policy::audit::Decision;
use spacenode_policy::command::{Command, kind};
use spacenode_policy::document::{PolicyDocument, SignedPolicy};
use spacenode_policy::quorum::AdminSet;
use spacenode_wire::cosign::PolicyStatus;
use spacenode_wire::services::subtype;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Add an administrator's signature to a policy: FILE is the TOML
    /// source (compiled to the canonical document, written to --out) or a
    /// signed-policy file (signed in place).
    Sign {
        /// policy.toml, or a signed-policy file.
        file: PathBuf,
        /// The administrator's key file (`ground admin keygen`).
        #[arg(long)]
        key: PathBuf,
        /// This administrator's index in the set that must sign (the node's
        /// [admin] keys for the first policy, else the active policy's).
        #[arg(long)]
        signer: u8,
        /// Where to write the signed policy [default: FILE with the
        /// extension .signed].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a policy (TOML or signed) and check its signatures: against
    /// --against (the policy in force), --admins/--threshold (the node's
    /// [admin] set), or by default the set the document itself names.
    Verify {
        /// The policy file.
        file: PathBuf,
        /// The signed policy in force whose administrators must sign.
        #[arg(long, conflicts_with = "admins")]
        against: Option<PathBuf>,
        /// Administrators' x-only keys, comma-separated (the node's [admin]).
        #[arg(long, value_delimiter = ',')]
        admins: Vec<String>,
        /// How many of --admins must sign.
        #[arg(long, requires = "admins")]
        threshold: Option<usize>,
    },
    /// Show what changes from OLD to NEW (files: TOML or signed). With one
    /// file, compare the node's active policy with it.
    Diff {
        /// The old policy (or the new one, compared with the node's).
        old: PathBuf,
        /// The new policy.
        new: Option<PathBuf>,
    },
    /// Upload a signed policy to the node: shows what changes against the
    /// node's active policy, then proposes it (the first one activates at
    /// once; later ones after the active policy's activation delay).
    Upload {
        /// The signed policy file.
        file: PathBuf,
    },
    /// The node's policy status: active and pending version, hash,
    /// activation time, wallets, audit head.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Veto the pending policy change, with a signed command file or with
    /// administrator keys given here.
    Veto {
        /// A signed veto-policy command (`ground admin command veto-policy`).
        #[arg(long, conflicts_with = "key")]
        command: Option<PathBuf>,
        /// Administrator key and index, FILE:INDEX (repeat for a quorum).
        #[arg(long)]
        key: Vec<String>,
        /// Command sequence [default: the node's last + 1].
        #[arg(long)]
        seq: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Register a multisig wallet: builds the REGISTER_WALLET command from
    /// the descriptor (canonicalised; the node's key must be in it), signs
    /// it with the administrator keys given and sends it. With --out the
    /// command is written (unsigned or partially signed) instead; with
    /// --command a prepared file is sent.
    Register {
        /// Wallet label (at most 64 bytes).
        #[arg(long, default_value = "treasury")]
        name: String,
        /// Output descriptor, e.g. wsh(sortedmulti(2,K1,K2,N)).
        #[arg(long, required_unless_present = "command")]
        descriptor: Option<String>,
        /// A prepared, signed command file to send.
        #[arg(long, conflicts_with_all = ["descriptor", "key", "out"])]
        command: Option<PathBuf>,
        /// Administrator key and index, FILE:INDEX (repeat for a quorum).
        #[arg(long)]
        key: Vec<String>,
        /// Command sequence [default: the node's last + 1].
        #[arg(long)]
        seq: Option<u64>,
        /// Node id, 16 hex [default: asked from the node].
        #[arg(long)]
        node_id: Option<String>,
        /// Seconds the command stays valid.
        #[arg(long, default_value_t = 3600)]
        valid_for: u64,
        /// Write the command here instead of sending it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Retire a registered wallet: the node signs nothing more for it (its
    /// spends and audit entries stay; registering it again takes a new
    /// command). Builds the RETIRE_WALLET command, signs it with the
    /// administrator keys given and sends it.
    Retire {
        /// Wallet id (64 hex, as `ground wallet register` prints it).
        #[arg(long, conflicts_with = "descriptor")]
        id: Option<String>,
        /// Or the wallet's descriptor (its id is derived).
        #[arg(long)]
        descriptor: Option<String>,
        #[command(flatten)]
        by: RetireArgs,
    },
}

/// How a retirement is authorised (`ground wallet retire`, `ground safe
/// retire`).
#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    /// A prepared, signed command file to send instead (`ground admin
    /// command retire-wallet|retire-safe`, then `ground admin sign` by each
    /// administrator).
    #[arg(long, conflicts_with = "key")]
    pub command: Option<PathBuf>,
    /// Administrator key and index, FILE:INDEX (repeat for a quorum).
    #[arg(long)]
    pub key: Vec<String>,
    /// Command sequence [default: the node's last + 1].
    #[arg(long)]
    pub seq: Option<u64>,
    /// Node id, 16 hex [default: asked from the node].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Seconds the command stays valid.
    #[arg(long, default_value_t = 3600)]
    pub valid_for: u64,
}

/// Builds (or reads) a `RETIRE_WALLET` / `RETIRE_SAFE` command and sends it.
/// `body` is what to retire; `None` only with `--command`.
pub fn retire(
    link: &mut Link,
    policy: RetryPolicy,
    retire_kind: u16,
    body: Option<Vec<u8>>,
    by: RetireArgs,
) -> anyhow::Result<ExitCode> {
    let cmd = match &by.command {
        Some(path) => admin::read(path)?,
        None => {
            let body = body.context("name what to retire, or give --command")?;
            let node_id = by.node_id.as_deref().map(parse_node_id).transpose()?;
            build_command(
                link,
                policy,
                retire_kind,
                body,
                &keys_with_index(&by.key)?,
                by.seq,
                node_id,
                by.valid_for,
            )?
        }
    };
    let c = Command::decode(&cmd.command)?;
    anyhow::ensure!(
        c.kind == retire_kind,
        "the command file holds a {} command, not {}",
        admin::kind_name(c.kind).unwrap_or("unknown"),
        admin::kind_name(retire_kind).unwrap_or("a retirement")
    );
    let signers = admin::signer_list(&cmd.signatures);
    println!(
        "{} command seq {} for {} signed by administrators [{}]",
        admin::kind_name(c.kind).unwrap_or("retire"),
        c.seq,
        hex::encode(&c.body),
        signers
    );
    match cosign::admin_command(
        link,
        policy,
        subtype::POLICY_RETIRE,
        &cmd.encode(),
        &mut |_| {},
    )? {
        Answer::Refused(r) => bail!("the node refused the retirement: {r}"),
        Answer::Ok(()) => {
            let st = cosign::policy_status(link, policy)?;
            println!(
                "RETIRED on the node: it signs nothing more for it ({} wallet(s), {} Safe(s) registered)",
                st.wallets, st.safes
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing clap arguments buys nothing"
)]
pub enum BtcCommand {
    /// Create a ground co-signer key (a BIP32 seed file, mode 0600) and
    /// print its key expression for a descriptor.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Account path.
        #[arg(long, default_value = btc::DEFAULT_ACCOUNT)]
        account: String,
        /// Mainnet key versions (xpub) instead of tpub.
        #[arg(long)]
        mainnet: bool,
    },
    /// Print the key expression of a ground co-signer key.
    Xpub {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
        /// Account path.
        #[arg(long, default_value = btc::DEFAULT_ACCOUNT)]
        account: String,
    },
    /// Have the node co-sign a PSBT: builds the sign request (SPV proofs,
    /// validity window, ground approvals), uploads it if it is larger than
    /// one frame, prints the node's decision, verifies its receipt, adds the
    /// node's signatures, co-signs with --cosign keys, finalises and prints
    /// the fully signed transaction.
    Sign {
        /// The PSBT (binary, base64 or hex; v0 or v2).
        #[arg(long)]
        psbt: PathBuf,
        /// SPV proofs of the funding transactions (JSON list).
        #[arg(long)]
        proofs: Option<PathBuf>,
        /// Ground approver key and index in the policy's approvers,
        /// FILE:INDEX (administrator key file format; repeat as needed).
        #[arg(long)]
        approver: Vec<String>,
        /// Ground co-signer key files to add signatures with.
        #[arg(long)]
        cosign: Vec<PathBuf>,
        /// Request id, 64 hex [default: random]. Re-using one with the same
        /// request returns the node's stored answer.
        #[arg(long)]
        request_id: Option<String>,
        /// Seconds the request stays valid.
        #[arg(long, default_value_t = 3600)]
        valid_for: u64,
        /// Blocks around the node's tip the request stays valid.
        #[arg(long, default_value_t = 144)]
        blocks: u32,
        /// Write the PSBT with the node's (and ground) signatures here.
        #[arg(long)]
        out_psbt: Option<PathBuf>,
        /// Write the signed transaction (hex) here.
        #[arg(long)]
        out_tx: Option<PathBuf>,
        /// Write the signed request envelope (binary) here (tests).
        #[arg(long, hide = true)]
        save_request: Option<PathBuf>,
        /// Send this signed request envelope instead of building one (tests).
        #[arg(long, hide = true)]
        request_file: Option<PathBuf>,
        /// The node's receipt key (x-only hex) to check the decision's
        /// receipt [default: asked from the node].
        #[arg(long)]
        receipt_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Fetch the node's whole audit log and verify it: consecutive
    /// sequence numbers, every hash link, every receipt against the node's
    /// receipt key (m/21326'/1'/0'), and the last hash against the node's
    /// audit head.
    Verify {
        /// The receipt key, x-only hex.
        #[arg(long, conflicts_with = "receipt_xpub")]
        receipt_key: Option<String>,
        /// The receipt key as `ground keys xpub "m/21326'/1'/0'"` prints it.
        #[arg(long)]
        receipt_xpub: Option<String>,
        /// List every entry.
        #[arg(long, short)]
        verbose: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Upload a file (resumes a previous upload of the same content).
    Upload {
        /// The file (at most 64 KiB).
        file: PathBuf,
    },
    /// The node's status of an upload.
    Status {
        /// Content id (SHA-256, 64 hex) or the file itself.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Mine a regtest chain (our own code, no bitcoind) whose block 2 funds
    /// the descriptor's first receive addresses; write DIR/headers.bin (for
    /// `ground chain sync`) and DIR/funding.json.
    Fund {
        /// The wallet's descriptor.
        #[arg(long)]
        descriptor: String,
        /// Funding outputs.
        #[arg(long, default_value_t = 3)]
        utxos: u32,
        /// Value of each, sat.
        #[arg(long, default_value_t = 100_000_000)]
        value_sat: u64,
        /// Confirmations of the funding block.
        #[arg(long, default_value_t = 3)]
        confirmations: u32,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a PSBT spending funded outputs, and the SPV proofs for it.
    Psbt {
        /// DIR/funding.json from `ground demo fund`.
        #[arg(long)]
        funding: PathBuf,
        /// Outputs to spend (indexes into the funding file).
        #[arg(long, value_delimiter = ',', default_value = "0")]
        inputs: Vec<usize>,
        /// Destination address.
        #[arg(long)]
        to: String,
        /// Amount, sat.
        #[arg(long)]
        amount_sat: u64,
        /// Fee, sat.
        #[arg(long, default_value_t = 2_000)]
        fee_sat: u64,
        /// Change address index of the wallet.
        #[arg(long, default_value_t = 0)]
        change_index: u32,
        /// Network of --to.
        #[arg(long, default_value = "regtest")]
        network: String,
        /// Write the PSBT (base64) here.
        #[arg(long)]
        out: PathBuf,
        /// Write the proofs (JSON) here.
        #[arg(long)]
        proofs_out: PathBuf,
    },
}

/// The local files and arguments each command reads, checked before the
/// link is opened (`spacenode_ground::inputs`).
impl PolicyCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Sign { file, key, .. } => {
                vec![Input::Policy(file.clone()), Input::AdminKey(key.clone())]
            }
            Self::Verify { file, against, .. } => std::iter::once(file)
                .chain(against)
                .map(|p| Input::Policy(p.clone()))
                .collect(),
            Self::Diff { old, new } => std::iter::once(old)
                .chain(new)
                .map(|p| Input::Policy(p.clone()))
                .collect(),
            Self::Upload { file } => vec![Input::Policy(file.clone())],
            Self::Status { .. } => Vec::new(),
            Self::Veto { command, key, .. } => command
                .iter()
                .map(|c| Input::Command(c.clone()))
                .chain(key.iter().map(|k| Input::KeySpec(k.clone())))
                .collect(),
        }
    }
}

impl RetireArgs {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        self.command
            .iter()
            .map(|c| Input::Command(c.clone()))
            .chain(self.key.iter().map(|k| Input::KeySpec(k.clone())))
            .collect()
    }
}

impl WalletCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Register {
                descriptor,
                command,
                key,
                ..
            } => descriptor
                .iter()
                .map(|d| Input::Descriptor(d.clone()))
                .chain(command.iter().map(|c| Input::Command(c.clone())))
                .chain(key.iter().map(|k| Input::KeySpec(k.clone())))
                .collect(),
            Self::Retire { descriptor, by, .. } => descriptor
                .iter()
                .map(|d| Input::Descriptor(d.clone()))
                .chain(by.inputs())
                .collect(),
        }
    }
}

impl BtcCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Keygen { .. } => Vec::new(),
            Self::Xpub { key, .. } => vec![Input::CosignerKey(key.clone())],
            Self::Sign {
                psbt,
                proofs,
                approver,
                cosign,
                ..
            } => std::iter::once(Input::Psbt(psbt.clone()))
                .chain(proofs.iter().map(|p| Input::Proofs(p.clone())))
                .chain(approver.iter().map(|k| Input::KeySpec(k.clone())))
                .chain(cosign.iter().map(|k| Input::CosignerKey(k.clone())))
                .collect(),
        }
    }
}

impl FilesCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Upload { file } => vec![Input::Upload(file.clone())],
            Self::Status { .. } => Vec::new(),
        }
    }
}

impl DemoCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            // demo::fund reads its descriptor itself (offline, no link).
            Self::Fund { .. } => Vec::new(),
            Self::Psbt { funding, .. } => vec![Input::Funding(funding.clone())],
        }
    }
}

/// Reads FILE:INDEX administrator key specs.
pub(crate) fn keys_with_index(specs: &[String]) -> anyhow::Result<Vec<(Keypair, u8)>> {
    specs
        .iter()
        .map(|s| {
            let (file, idx) = s
                .rsplit_once(':')
                .with_context(|| format!("{s:?}: expected FILE:INDEX"))?;
            let idx: u8 = idx
                .parse()
                .with_context(|| format!("{s:?}: index must be 0..=255"))?;
            Ok((admin::load_key(Path::new(file))?, idx))
        })
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

fn upload_bar() -> (ProgressBar, impl FnMut(UploadEvent)) {
    let bar = ProgressBar::hidden();
    let b = bar.clone();
    let on = move |ev: UploadEvent| match ev {
        UploadEvent::Status { missing, total } => {
            if b.is_hidden() && missing > 0 {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            b.set_style(
                ProgressStyle::with_template(
                    "upload {bar:40} {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_length(total);
            b.set_position(total.saturating_sub(missing));
        }
        UploadEvent::Chunk { len } => b.inc(len),
    };
    (bar, on)
}

fn print_status(st: &PolicyStatus) {
    if st.active {
        println!(
            "active policy   version {}  hash {}",
            st.active_version,
            hex::encode(st.active_hash)
        );
        println!("  active since  {}", display::utc(st.activated_at_ms));
    } else {
        println!(
            "active policy   NONE (the node signs nothing until a quorum-signed policy is uploaded)"
        );
    }
    if st.pending {
        println!(
            "pending policy  version {}  hash {}",
            st.pending_version,
            hex::encode(st.pending_hash)
        );
        println!(
            "  activates at  {} (vetoable until then)",
            display::utc(st.activates_at_ms)
        );
    } else {
        println!("pending policy  none");
    }
    println!("highest version {}", st.highest_version);
    println!("wallets         {}", st.wallets);
    println!(
        "audit log       {} entries, head {}",
        st.audit_next_seq,
        hex::encode(st.audit_last_hash)
    );
    println!(
        "admin sequence  {} (next command needs a higher one)",
        st.admin_seq
    );
    if st.clock_last_accepted_ms != 0 {
        println!(
            "clock guard     last accepted {}",
            display::utc(st.clock_last_accepted_ms)
        );
    }
}

fn status_json(st: &PolicyStatus) -> serde_json::Value {
    serde_json::json!({
        "active": st.active,
        "active_version": st.active_version,
        "active_hash": hex::encode(st.active_hash),
        "activated_at_ms": st.activated_at_ms,
        "pending": st.pending,
        "pending_version": st.pending_version,
        "pending_hash": hex::encode(st.pending_hash),
        "activates_at_ms": st.activates_at_ms,
        "highest_version": st.highest_version,
        "wallets": st.wallets,
        "audit_next_seq": st.audit_next_seq,
        "audit_last_hash": hex::encode(st.audit_last_hash),
        "admin_seq": st.admin_seq,
        "clock_last_accepted_ms": st.clock_last_accepted_ms,
    })
}

fn print_diff(old: Option<&PolicyDocument>, new: &PolicyDocument) {
    match old {
        None => {
            println!(
                "no policy active on the node: this one bootstraps it (signed by the node's [admin] set)"
            );
            print!("{}", policyfile::describe(new));
        }
        Some(o) if o == new => println!("no change: the node's active policy is this document"),
        Some(o) => {
            println!(
                "changes from version {} ({}) to version {} ({}):",
                o.version,
                policyfile::hash_hex(o),
                new.version,
                policyfile::hash_hex(new)
            );
            for line in policyfile::changes(o, new) {
                println!("  {line}");
            }
        }
    }
}

/// Offline policy commands (no link).
pub fn policy_offline(command: &PolicyCommand) -> anyhow::Result<Option<ExitCode>> {
    match command {
        PolicyCommand::Sign {
            file,
            key,
            signer,
            out,
        } => {
            let loaded = policyfile::load(file)?;
            let mut signed = loaded.signed.clone().unwrap_or(SignedPolicy {
                document: loaded.bytes.clone(),
                signatures: Vec::new(),
            });
            let target = match (&loaded.signed, out) {
                (_, Some(o)) => o.clone(),
                (Some(_), None) => file.clone(),
                (None, None) => file.with_extension("signed"),
            };
            print!("{}", policyfile::describe(&loaded.document));
            policyfile::sign(&mut signed, &admin::load_key(key)?, *signer);
            policyfile::write(&target, &signed)?;
            let who = admin::signer_list(&signed.signatures);
            println!(
                "signed as administrator {signer}; {} now signed by [{}]",
                target.display(),
                who
            );
            Ok(Some(ExitCode::SUCCESS))
        }
        PolicyCommand::Verify {
            file,
            against,
            admins,
            threshold,
        } => {
            let loaded = policyfile::load(file)?;
            print!("{}", policyfile::describe(&loaded.document));
            let Some(signed) = &loaded.signed else {
                println!("(TOML source: not signed yet; `ground policy sign` it)");
                return Ok(Some(ExitCode::SUCCESS));
            };
            let (set, whose) = if let Some(a) = against {
                let prev = policyfile::load(a)?;
                (
                    prev.document.admins.admin_set()?,
                    format!("the administrators of version {}", prev.document.version),
                )
            } else if !admins.is_empty() {
                let keys = admins
                    .iter()
                    .map(|k| XOnlyPublicKey::from_str(k.trim()))
                    .collect::<Result<Vec<_>, _>>()
                    .context("--admins: x-only keys in hex")?;
                let t = threshold.unwrap_or(keys.len());
                (AdminSet::new(keys, t)?, format!("the given {t}-of-n set"))
            } else {
                (
                    loaded.document.admins.admin_set()?,
                    "the administrators it names".to_string(),
                )
            };
            let who = admin::signer_list(&signed.signatures);
            println!("signatures      [{}]", who);
            match policyfile::verify(signed, &set) {
                Ok(_) => {
                    println!("VERIFIED: a quorum of {whose} signed this document");
                    Ok(Some(ExitCode::SUCCESS))
                }
                Err(e) => {
                    println!("NOT VERIFIED against {whose}: {e}");
                    Ok(Some(ExitCode::from(1)))
                }
            }
        }
        PolicyCommand::Diff {
            old,
            new: Some(new),
        } => {
            let o = policyfile::load(old)?;
            let n = policyfile::load(new)?;
            print_diff(Some(&o.document), &n.document);
            Ok(Some(ExitCode::SUCCESS))
        }
        _ => Ok(None),
    }
}

/// Online policy commands.
pub fn policy_online(
    link: &mut Link,
    policy: RetryPolicy,
    command: PolicyCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Status { json } => {
            let st = cosign::policy_status(link, policy)?;
            if json {
                println!("{}", status_json(&st));
            } else {
                print_status(&st);
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Diff { old, new: None } => {
            let n = policyfile::load(&old)?;
            let active = cosign::policy_document(link, policy, false)?
                .map(|b| PolicyDocument::decode(&b))
                .transpose()
                .context("the node's active policy does not decode")?;
            print_diff(active.as_ref(), &n.document);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Upload { file } => {
            let loaded = policyfile::load(&file)?;
            let signed = loaded.signed.with_context(|| {
                format!(
                    "{} is not signed: `ground policy sign` it first",
                    file.display()
                )
            })?;
            let active = cosign::policy_document(link, policy, false)?
                .map(|b| PolicyDocument::decode(&b))
                .transpose()
                .context("the node's active policy does not decode")?;
            print_diff(active.as_ref(), &loaded.document);
            let bytes = signed.encode();
            let (bar, mut on) = upload_bar();
            let answer = cosign::propose(link, policy, &bytes, &mut on);
            bar.finish_and_clear();
            match answer? {
                Answer::Refused(r) => bail!("the node refused the policy: {r}"),
                Answer::Ok(st) => {
                    let st = match st {
                        Some(s) => s,
                        None => cosign::policy_status(link, policy)?,
                    };
                    if st.active && st.active_hash == loaded.document.hash() {
                        println!(
                            "policy version {} ACTIVE on the node (bound to its anti-rollback counter)",
                            st.active_version
                        );
                    } else if st.pending && st.pending_hash == loaded.document.hash() {
                        println!(
                            "policy version {} PENDING: activates at {} unless vetoed",
                            st.pending_version,
                            display::utc(st.activates_at_ms)
                        );
                    }
                    print_status(&st);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        PolicyCommand::Veto { command, key, seq } => {
            let cmd = match command {
                Some(path) => admin::read(&path)?,
                None => {
                    let st = cosign::policy_status(link, policy)?;
                    if !st.pending {
                        bail!("no pending policy change to veto");
                    }
                    let keys = keys_with_index(&key)?;
                    if keys.is_empty() {
                        bail!("give --command FILE or administrator keys with --key FILE:INDEX");
                    }
                    build_command(
                        link,
                        policy,
                        kind::VETO_POLICY,
                        st.pending_hash.to_vec(),
                        &keys,
                        seq,
                        None,
                        3600,
                    )?
                }
            };
            match cosign::admin_command(
                link,
                policy,
                subtype::POLICY_VETO,
                &cmd.encode(),
                &mut |_| {},
            )? {
                Answer::Refused(r) => bail!("the node refused the veto: {r}"),
                Answer::Ok(()) => {
                    println!("pending policy change vetoed");
                    print_status(&cosign::policy_status(link, policy)?);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        PolicyCommand::Sign { .. } | PolicyCommand::Verify { .. } | PolicyCommand::Diff { .. } => {
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Builds and signs an administrator command for this node.
#[allow(clippy::too_many_arguments, reason = "a command's fields")]
fn build_command(
    link: &mut Link,
    policy: RetryPolicy,
    k: u16,
    body: Vec<u8>,
    keys: &[(Keypair, u8)],
    seq: Option<u64>,
    node_id: Option<[u8; 8]>,
    valid_for: u64,
) -> anyhow::Result<spacenode_policy::command::SignedCommand> {
    let (node, seq) = match (node_id, seq) {
        (Some(n), Some(s)) => (n, s),
        _ => {
            let st = cosign::mode_status(link, policy)?;
            (
                node_id.unwrap_or(st.node_id),
                seq.unwrap_or(st.admin_seq.saturating_add(1)),
            )
        }
    };
    let now = now_ms();
    let mut cmd = admin::build(
        k,
        node,
        seq,
        now.saturating_sub(60_000),
        now.saturating_add(i64::try_from(valid_for.saturating_mul(1000)).unwrap_or(i64::MAX)),
        body,
    );
    for (key, idx) in keys {
        admin::sign(&mut cmd, key, *idx)?;
    }
    Ok(cmd)
}

fn parse_node_id(s: &str) -> anyhow::Result<[u8; 8]> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .context("--node-id must be 16 hex characters")
}

/// `ground wallet ...` (online unless --out).
pub fn wallet(
    link: Option<&mut Link>,
    policy: RetryPolicy,
    command: WalletCommand,
) -> anyhow::Result<ExitCode> {
    let (name, descriptor, command, key, seq, node_id, valid_for, out) = match command {
        WalletCommand::Register {
            name,
            descriptor,
            command,
            key,
            seq,
            node_id,
            valid_for,
            out,
        } => (name, descriptor, command, key, seq, node_id, valid_for, out),
        WalletCommand::Retire { id, descriptor, by } => {
            let Some(link) = link else {
                bail!("retiring a wallet needs the serial port")
            };
            let body = match (id, descriptor) {
                (Some(h), _) => Some(
                    hex::decode(h.trim())
                        .ok()
                        .filter(|b| b.len() == 32)
                        .context("--id must be 64 hex characters")?,
                ),
                (None, Some(d)) => {
                    let canonical = spacenode_btc::wallet::canonical_descriptor(&d)
                        .map_err(|e| anyhow::anyhow!("descriptor: {e}"))?;
                    Some(spacenode_btc::wallet::wallet_id(&canonical).to_vec())
                }
                (None, None) => None,
            };
            return retire(link, policy, kind::RETIRE_WALLET, body, by);
        }
    };
    let node_id = node_id.as_deref().map(parse_node_id).transpose()?;
    let cmd = if let Some(path) = command {
        admin::read(&path)?
    } else {
        let d = descriptor.context("--descriptor or --command")?;
        let canonical = spacenode_btc::wallet::canonical_descriptor(&d)
            .map_err(|e| anyhow::anyhow!("descriptor: {e}"))?;
        let id = spacenode_btc::wallet::wallet_id(&canonical);
        println!("wallet          {name}");
        println!("descriptor      {canonical}");
        println!("wallet id       {}", hex::encode(id));
        let body = spacenode_btc::wallet::registration_body(&name, &canonical);
        let keys = keys_with_index(&key)?;
        match (&out, link.is_some()) {
            (Some(_), _) | (None, false) => {
                let (Some(n), Some(s)) = (node_id, seq) else {
                    bail!("offline (--out) the command needs --node-id and --seq");
                };
                let now = now_ms();
                let mut c = admin::build(
                    kind::REGISTER_WALLET,
                    n,
                    s,
                    now.saturating_sub(60_000),
                    now.saturating_add(
                        i64::try_from(valid_for.saturating_mul(1000)).unwrap_or(i64::MAX),
                    ),
                    body,
                );
                for (k, i) in &keys {
                    admin::sign(&mut c, k, *i)?;
                }
                c
            }
            (None, true) => {
                let Some(l) = link else { bail!("no link") };
                let c = build_command(
                    l,
                    policy,
                    kind::REGISTER_WALLET,
                    body,
                    &keys,
                    seq,
                    node_id,
                    valid_for,
                )?;
                return send_registration(l, policy, &c);
            }
        }
    };
    if let Some(path) = out {
        admin::write(&path, &cmd)?;
        print!("{}", admin::describe(&cmd)?);
        println!(
            "written to {}; administrators add signatures with `ground admin sign`",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(l) = link else {
        bail!("no serial port to send the registration")
    };
    send_registration(l, policy, &cmd)
}

fn send_registration(
    link: &mut Link,
    policy: RetryPolicy,
    cmd: &spacenode_policy::command::SignedCommand,
) -> anyhow::Result<ExitCode> {
    let c = Command::decode(&cmd.command)?;
    let signers = admin::signer_list(&cmd.signatures);
    println!(
        "REGISTER_WALLET command seq {} signed by administrators [{}]",
        c.seq, signers
    );
    let (bar, mut on) = upload_bar();
    let answer = cosign::admin_command(
        link,
        policy,
        subtype::POLICY_REGISTER_WALLET,
        &cmd.encode(),
        &mut on,
    );
    bar.finish_and_clear();
    match answer? {
        Answer::Refused(r) => bail!("the node refused the wallet: {r}"),
        Answer::Ok(()) => {
            let st = cosign::policy_status(link, policy)?;
            println!(
                "wallet registered on the node ({} wallet(s) registered)",
                st.wallets
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Offline `ground btc` commands.
pub fn btc_offline(command: &BtcCommand) -> anyhow::Result<Option<ExitCode>> {
    match command {
        BtcCommand::Keygen {
            out,
            account,
            mainnet,
        } => {
            let net = if *mainnet {
                NetworkKind::Main
            } else {
                NetworkKind::Test
            };
            let k = btc::keygen(out, net)?;
            println!("ground co-signer key written to {}", out.display());
            println!("key expression: {}", btc::key_expression(&k, account)?);
            Ok(Some(ExitCode::SUCCESS))
        }
        BtcCommand::Xpub { key, account } => {
            let k = btc::load_key(key)?;
            println!("{}", btc::key_expression(&k, account)?);
            Ok(Some(ExitCode::SUCCESS))
        }
        BtcCommand::Sign { .. } => Ok(None),
    }
}

fn print_audit(a: &Audited) {
    let e = &a.entry;
    let decision = match e.decision {
        Decision::Approved => "APPROVED",
        Decision::Refused => "REFUSED",
        Decision::Replayed => "replayed",
    };
    let mut line = format!(
        "#{:<5} {}  {:<8} rule {:<24}",
        e.seq,
        display::utc(e.time.0),
        decision,
        e.rule
    );
    if e.code != 0 {
        line.push_str(&format!(" code {:#06x}", e.code));
    }
    if e.counters.amount.0 > 0 {
        line.push_str(&format!(
            " amount {} sat fee {} sat",
            e.counters.amount.0, e.counters.fee.0
        ));
    }
    if let Some(t) = e.txid {
        line.push_str(&format!(" txid {}", bitcoin::Txid::from_byte_array(t)));
    }
    println!("{line}");
}

use bitcoin::hashes::Hash as _;

/// `ground btc sign`.
pub fn btc_sign(
    link: &mut Link,
    policy: RetryPolicy,
    command: BtcCommand,
) -> anyhow::Result<ExitCode> {
    let BtcCommand::Sign {
        psbt,
        proofs,
        approver,
        cosign: cosigners,
        request_id,
        valid_for,
        blocks,
        out_psbt,
        out_tx,
        save_request,
        request_file,
        receipt_key,
    } = command
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let (psbt_bytes, parsed) = inputs::psbt(&psbt)?;
    let cosigners = cosigners
        .iter()
        .map(|p| btc::load_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let request = if let Some(path) = request_file {
        std::fs::read(&path).with_context(|| path.display().to_string())?
    } else {
        let proofs = match &proofs {
            Some(p) => btc::read_proofs(p)?,
            None => Vec::new(),
        };
        let id = match request_id {
            Some(h) => hex::decode(h.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .context("--request-id must be 64 hex characters")?,
            None => rand::random(),
        };
        let approvals = keys_with_index(&approver)?;
        let window = cosign::RequestWindow {
            now_ms: u64::try_from(now_ms()).unwrap_or(0),
            valid_for_s: valid_for,
            blocks,
        };
        let n_proofs = proofs.len();
        let signed = cosign::btc_request(link, policy, id, psbt_bytes, proofs, &approvals, window)?;
        println!(
            "sign request {}: {} input(s), {} output(s), {} proof(s), {} approval(s), {} bytes",
            hex::encode(id),
            parsed.unsigned_tx.input.len(),
            parsed.unsigned_tx.output.len(),
            n_proofs,
            signed.approvals.len(),
            signed.encode().len()
        );
        signed.encode()
    };
    if let Some(p) = &save_request {
        std::fs::write(p, &request).with_context(|| p.display().to_string())?;
    }
    let receipt_key = match receipt_key {
        Some(k) => XOnlyPublicKey::from_str(k.trim()).context("--receipt-key: x-only hex")?,
        None => cosign::fetch_receipt_key(link, policy)?,
    };
    let (bar, mut on) = upload_bar();
    let outcome = cosign::sign(link, policy, &request, &mut on);
    bar.finish_and_clear();
    let outcome = outcome?;
    if outcome.uploaded {
        println!("request uploaded in chunks (larger than one frame)");
    }
    if let Some(a) = &outcome.audit {
        print!("audit ");
        print_audit(a);
        match cosign::verify_one(a, &receipt_key) {
            Ok(()) => println!("receipt verified against the node's receipt key {receipt_key}"),
            Err(e) => bail!("the decision's receipt does NOT verify: {e}"),
        }
    }
    if let Some(r) = outcome.refused {
        println!(
            "REFUSED by the node: {}{}",
            display::reason(r.code),
            r.rule
                .as_ref()
                .map(|t| format!(" [rule {t}]"))
                .unwrap_or_default()
        );
        println!("  {}", r.detail);
        return Ok(ExitCode::from(3));
    }
    let result = outcome.result.context("no signatures")?;
    let mut psbt_out = parsed.clone();
    let sigs = btc::add_node_signatures(&mut psbt_out, &result.signatures)?;
    println!(
        "APPROVED: the node signed {} input(s) of txid {}",
        sigs.len(),
        bitcoin::Txid::from_byte_array(result.txid)
    );
    if cosigners.is_empty() {
        if let Some(p) = &out_psbt {
            std::fs::write(p, btc::base64_encode(&psbt_out.serialize()) + "\n")?;
            println!("PSBT with the node's signatures written to {}", p.display());
        } else {
            println!("{}", btc::base64_encode(&psbt_out.serialize()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (tx, added) = btc::complete(parsed, &sigs, &cosigners)?;
    println!(
        "co-signed with {} ground key(s) ({added} signature(s)), finalised, every input's script verified",
        cosigners.len()
    );
    let hex_tx = hex::encode(bitcoin::consensus::encode::serialize(&tx));
    println!("txid {}", tx.compute_txid());
    println!(
        "fully signed transaction ({} bytes, {} vbytes):",
        hex_tx.len() / 2,
        tx.vsize()
    );
    println!("{hex_tx}");
    if let Some(p) = out_tx {
        std::fs::write(&p, format!("{hex_tx}\n"))?;
    }
    if let Some(p) = out_psbt {
        std::fs::write(&p, btc::base64_encode(&psbt_out.serialize()) + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ground audit verify`.
pub fn audit(
    link: &mut Link,
    policy: RetryPolicy,
    command: AuditCommand,
) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify {
        receipt_key,
        receipt_xpub,
        verbose,
        json,
    } = command;
    let (key, source) = if let Some(k) = receipt_key {
        (
            XOnlyPublicKey::from_str(k.trim()).context("--receipt-key: x-only hex")?,
            "pinned",
        )
    } else if let Some(x) = receipt_xpub {
        let t = x.trim();
        let t = t.rsplit_once(']').map_or(t, |(_, x)| x);
        let xpub = bitcoin::bip32::Xpub::from_str(t).context("--receipt-xpub: an xpub/tpub")?;
        (XOnlyPublicKey::from(xpub.public_key), "pinned")
    } else {
        (
            cosign::fetch_receipt_key(link, policy)?,
            "asked from the node (trust on first use; pin it with --receipt-key)",
        )
    };
    let st = cosign::policy_status(link, policy)?;
    let bar = if st.audit_next_seq > 64 {
        ProgressBar::new(st.audit_next_seq)
    } else {
        ProgressBar::hidden()
    };
    let log = cosign::audit_log(link, policy, 0, st.audit_next_seq, &mut |n| {
        bar.set_position(n)
    });
    bar.finish_and_clear();
    let log = log?;
    let head = (!log.entries.is_empty() || log.checkpoint.is_some()).then_some(st.audit_last_hash);
    // A pruned log verifies from the node's signed checkpoint.
    let verdict = cosign::verify_audit_log(&log, &key, head);
    let checkpoint = log.checkpoint;
    let entries = log.entries;
    let (mut approved, mut refused, mut replayed) = (0u64, 0u64, 0u64);
    for a in &entries {
        match a.entry.decision {
            Decision::Approved => approved += 1,
            Decision::Refused => refused += 1,
            Decision::Replayed => replayed += 1,
        }
        if verbose && !json {
            print_audit(a);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "entries": entries.len(),
                "checkpoint_seq": checkpoint.map(|c| c.end_seq),
                "approved": approved,
                "refused": refused,
                "replayed": replayed,
                "head": hex::encode(st.audit_last_hash),
                "receipt_key": key.to_string(),
                "verified": verdict.is_ok(),
                "error": verdict.as_ref().err().map(ToString::to_string),
            })
        );
    }
    match verdict {
        Ok(_) => {
            if !json {
                let from = checkpoint.map_or(String::new(), |c| {
                    format!(
                        " from the node's signed checkpoint at seq {} (entries up to it archived)",
                        c.end_seq
                    )
                });
                println!(
                    "audit log VERIFIED{from}: {} entries ({approved} approved, {refused} refused, {replayed} replayed), \
                     hash chain intact, every receipt signed by {key} ({source}), head {}",
                    entries.len(),
                    hex::encode(st.audit_last_hash)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if !json {
                println!("{e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `ground files ...`.
pub fn files_cmd(
    link: &mut Link,
    policy: RetryPolicy,
    command: FilesCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        FilesCommand::Upload { file } => {
            let bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
            let (bar, mut on) = upload_bar();
            let id = files::upload(link, policy, &bytes, &mut on);
            bar.finish_and_clear();
            let id = id?;
            println!(
                "uploaded {} ({} bytes), verified by the node: content id {}",
                file.display(),
                bytes.len(),
                hex::encode(id)
            );
        }
        FilesCommand::Status { id } => {
            let id = match hex::decode(id.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            {
                Some(i) => i,
                None => files::content_id(
                    &std::fs::read(&id)
                        .with_context(|| format!("{id} is neither 64 hex nor a file"))?,
                ),
            };
            let st = files::status(link, policy, id)?;
            println!("content id  {}", hex::encode(id));
            println!("state       {:?}", st.state);
            println!("received    {} of {} bytes", st.received, st.total_len);
            for (o, l) in &st.missing {
                println!("missing     bytes {o}..{}", o.saturating_add(*l));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ground demo ...` (offline).
pub fn demo_cmd(command: DemoCommand) -> anyhow::Result<ExitCode> {
    match command {
        DemoCommand::Fund {
            descriptor,
            utxos,
            value_sat,
            confirmations,
            out,
        } => {
            std::fs::create_dir_all(&out)?;
            let (f, chain) = demo::fund(&descriptor, utxos, value_sat, confirmations)?;
            std::fs::write(out.join("headers.bin"), demo::headers_raw(&chain))?;
            f.save(&out.join("funding.json"))?;
            println!(
                "regtest chain of {} blocks mined (tip {}); block {} funds {} output(s) of {} sat",
                chain.tip_height() + 1,
                chain
                    .hash(chain.tip_height())
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                demo::FUND_HEIGHT,
                f.utxos.len(),
                value_sat
            );
            for u in &f.utxos {
                println!("  utxo {}:{} receive index {}", u.txid, u.vout, u.index);
            }
            println!(
                "wrote {} and {}",
                out.join("headers.bin").display(),
                out.join("funding.json").display()
            );
        }
        DemoCommand::Psbt {
            funding,
            inputs,
            to,
            amount_sat,
            fee_sat,
            change_index,
            network,
            out,
            proofs_out,
        } => {
            let f = demo::Funding::load(&funding)?;
            let network = Network::from_str(&network).context("--network")?;
            let dest = Address::from_str(&to)
                .context("--to is not an address")?
                .require_network(network)
                .context("--to is for another network")?;
            let psbt = f.psbt(
                &inputs,
                dest.script_pubkey(),
                amount_sat,
                fee_sat,
                change_index,
            )?;
            std::fs::write(&out, btc::base64_encode(&psbt.serialize()) + "\n")?;
            btc::write_proofs(&proofs_out, &f.proofs(&inputs)?)?;
            println!(
                "PSBT spending {} input(s): {} sat to {to}, fee {fee_sat} sat -> {} (proofs: {})",
                inputs.len(),
                amount_sat,
                out.display(),
                proofs_out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
