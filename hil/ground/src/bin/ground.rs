//! `ground`: the operator's tool. Talks to a node over a serial port (a
//! radio modem, a USB serial bridge to a bench board, or the link emulator)
//! with the same secured packets the flight link uses.

#[path = "ground/cosign.rs"]
mod cosign;
#[path = "ground/eth.rs"]
mod eth;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use spacenode_ground::chain::{self, HeaderFormat, SyncEvent, SyncOptions};
use spacenode_ground::client::{GroundError, Link, RetryPolicy};
use spacenode_ground::config::GroundConfig;
use spacenode_ground::display;
use spacenode_ground::inputs::{self, Input};
use spacenode_wire::msg::{Event, EventDump, HK_CORE, HkCore, HkRequest, Rekey, Severity};
use spacenode_wire::services::{apid, service, subtype};

/// Operate a spacenode co-signer over its serial link.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Ground configuration (keys, source id, state file).
    #[arg(
        long,
        short,
        env = "GROUND_CONFIG",
        default_value = "ground.toml",
        global = true
    )]
    config: PathBuf,
    /// Serial port of the link (overrides the config).
    #[arg(long, env = "GROUND_PORT", global = true)]
    port: Option<String>,
    /// Baud rate (overrides the config; default 115200).
    #[arg(long, env = "GROUND_BAUD", global = true)]
    baud: Option<u32>,
    /// Attempts per request before giving up.
    #[arg(long, default_value_t = 10, global = true)]
    retries: u32,
    /// Expected one-way link latency in ms (scales the reply timeout).
    #[arg(long, default_value_t = 0, global = true)]
    latency_ms: u64,
    /// Create a lost ground state file: first ask the node for its receive
    /// bound of the uplink key (a window probe) and continue above it.
    /// Without this flag the ground refuses to run without its state file,
    /// because restarting the uplink counter would reuse AES-GCM nonces.
    #[arg(long, global = true)]
    init: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Are-you-alive test (PUS 17): measures round trips.
    Ping {
        /// Number of pings.
        #[arg(long, short = 'n', default_value_t = 1)]
        count: u32,
        /// Pause between pings in ms.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Print only the summary.
        #[arg(long, short)]
        quiet: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Request a housekeeping report (PUS 3) and print it as a table.
    Hk {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show events (PUS 5): the most recent stored ones, then optionally
    /// follow live ones.
    Events {
        /// How many stored events to fetch first.
        #[arg(long, default_value_t = 20)]
        last: u16,
        /// Keep listening and print events as they arrive.
        #[arg(long, short)]
        follow: bool,
    },
    /// Link management.
    Link {
        #[command(subcommand)]
        command: LinkCommand,
    },
    /// The node's Bitcoin header chain (PUS 129): sync headers, show the
    /// status. See docs/chain.md.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// The node's operating mode (PUS 133): show it, enter safe mode, or
    /// leave it with a quorum-signed command. See docs/health.md.
    Mode {
        #[command(subcommand)]
        command: Option<ModeCommand>,
    },
    /// Key custody (PUS 130): attestation and public keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Administrator tools (offline): keys, commands, signatures.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The spending policy (PUS 131): sign, verify, diff, upload, status,
    /// veto. See docs/signing.md.
    Policy {
        #[command(subcommand)]
        command: cosign::PolicyCommand,
    },
    /// Multisig wallets the node co-signs for (registered by a quorum).
    Wallet {
        #[command(subcommand)]
        command: cosign::WalletCommand,
    },
    /// Bitcoin co-signing (PUS 132): ground keys, sign requests.
    Btc {
        #[command(subcommand)]
        command: cosign::BtcCommand,
    },
    /// Ethereum co-signing (PUS 132): the node's addresses, EIP-1559 and
    /// legacy transactions under the policy. See docs/ethereum.md.
    Eth {
        #[command(subcommand)]
        command: eth::EthCommand,
    },
    /// Safe multisig co-signing: register a Safe (administrator quorum),
    /// sign a SafeTx as an owner or approve its hash on chain.
    Safe {
        #[command(subcommand)]
        command: eth::SafeCommand,
    },
    /// The node's hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: cosign::AuditCommand,
    },
    /// Resumable uploads (PUS 134).
    Files {
        #[command(subcommand)]
        command: cosign::FilesCommand,
    },
    /// Offline regtest helpers for the demo and tests: a funded chain,
    /// PSBTs and SPV proofs, made by our own code (no bitcoind).
    Demo {
        #[command(subcommand)]
        command: cosign::DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModeCommand {
    /// Show mode, reason, boot count and whether the seed is available.
    Status,
    /// Put the node in safe mode (it then signs nothing).
    Safe,
    /// Leave safe mode with a command signed by a quorum of administrators
    /// (`ground admin command` and `ground admin sign` make it).
    Exit {
        /// The signed command file.
        #[arg(long)]
        command: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Ask for a TPM quote over a fresh nonce and verify it: the pinned
    /// attestation key, the nonce, the PCR digest of the expected software,
    /// and the bound identity xpub.
    Attest {
        /// File holding the pinned attestation key (hex TPMT_PUBLIC).
        #[arg(long)]
        ak: PathBuf,
        /// Trust on first use: write the node's attestation key to --ak
        /// (which must not exist) instead of checking it.
        #[arg(long)]
        enroll: bool,
        /// The software PCR value the node should report, as printed by
        /// `spacenoded --print-measurement --config FILE` on the build
        /// machine. Without it only the signature and nonce are checked.
        #[arg(long, value_name = "HEX")]
        expect_pcr: Option<String>,
        /// The software PCR index.
        #[arg(long, default_value_t = 23)]
        pcr: u8,
    },
    /// The master fingerprint and the xpub at a BIP32 path.
    Xpub {
        /// Derivation path, e.g. m/48'/1'/0'/2'.
        path: String,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Generate an administrator key file (mode 0600) and print its x-only
    /// public key for the node's [admin] keys.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Build an unsigned administrator command.
    Command {
        /// The command: exit-safe-mode, veto-policy, clock-resync,
        /// register-wallet, retire-wallet, register-safe, retire-safe,
        /// safe-admin-tx, clear-deep-reorg, rekey-link.
        kind: String,
        /// The node's id (16 hex characters, `node.id` in its config).
        #[arg(long)]
        node_id: String,
        /// Sequence number: above every one the node executed before.
        #[arg(long)]
        seq: u64,
        /// Seconds the command stays valid from now.
        #[arg(long, default_value_t = 86_400)]
        valid_for: u64,
        /// The command's body in hex (veto-policy: the pending policy's
        /// hash; clock-resync: the time, i64 ms big-endian; retire-wallet:
        /// the wallet id; retire-safe: chain id u64 big-endian and the
        /// Safe's address; clear-deep-reorg: the refused branch's first
        /// height, u32 big-endian).
        #[arg(long, value_name = "HEX")]
        body_hex: Option<String>,
        /// rekey-link: id of the new link key. This station (--config)
        /// generates the key and stores it in its state file; the command
        /// commits to its SHA-256 (printed), never carries it.
        #[arg(long)]
        new_key_id: Option<u16>,
        /// rekey-link: the key id replaced (default: this station's uplink
        /// key). The rekey must arrive under it; only it is retired.
        #[arg(long)]
        replaces: Option<u16>,
        /// Where to write the command.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add this administrator's signature to a command file (in place).
    Sign {
        /// The administrator's key file.
        #[arg(long)]
        key: PathBuf,
        /// This administrator's index in the node's [admin] keys.
        #[arg(long)]
        signer: u8,
        /// The command file.
        #[arg(long)]
        command: PathBuf,
    },
    /// Print what a command file says and who signed it.
    Show {
        /// The command file.
        command: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// Send block headers to the node, resuming where it stands: asks the
    /// node's status first, skips what it has, then sends batches that fit
    /// one frame. Each batch gets 3 x --retries attempts. Re-run it after an
    /// interruption.
    Sync {
        /// Header file: raw 80-byte headers, or JSON with --format json.
        #[arg(long, value_name = "FILE", required_unless_present = "from_stdin")]
        headers: Option<PathBuf>,
        /// Read the headers from standard input instead of a file.
        #[arg(long, conflicts_with = "headers")]
        from_stdin: bool,
        /// Layout of the headers [default: json for *.json files, else raw].
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Height of the first header (needed for files that neither start
        /// at genesis nor build on the node's tip, unless a JSON object
        /// gives `first_height`).
        #[arg(long, value_name = "H")]
        first_height: Option<u32>,
        /// At most N headers per batch [default: as many as fit one frame,
        /// about 50].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        batch: Option<u16>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the node's chain status: tip, chain work, window, reorgs.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clear the flag of a refused deep reorg, which stops Bitcoin signing:
    /// needs a quorum-signed command (`ground admin command clear-deep-reorg
    /// --body-hex <branch start, u32 BE>`, then `ground admin sign` by the
    /// quorum). Without --command the node refuses (0x03B0). The event log
    /// keeps the record.
    #[command(alias = "clear-reorg")]
    ClearDeepReorg {
        /// The signed CLEAR_DEEP_REORG command file.
        #[arg(long)]
        command: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// Concatenated 80-byte headers.
    Raw,
    /// A JSON list of hex headers, or {"first_height": H, "headers": [...]}.
    Json,
}

#[derive(Debug, Subcommand)]
enum LinkCommand {
    /// Replace this station's link key on the node with the key prepared by
    /// `ground admin command rekey-link --new-key-id N` and switch both
    /// ends to it. Needs that command signed by a quorum of administrators.
    /// Other stations' keys are not touched.
    Rekey {
        /// Id of the new key (as prepared); never reuse an id.
        #[arg(long)]
        key_id: u16,
        /// The quorum-signed rekey-link command file.
        #[arg(long)]
        command: PathBuf,
    },
}

impl Command {
    /// The local files and arguments the command reads: all are checked
    /// before anything else happens, above all before a port is opened.
    fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Ping { .. } | Self::Hk { .. } | Self::Events { .. } | Self::Audit { .. } => {
                Vec::new()
            }
            Self::Link {
                command: LinkCommand::Rekey { command, .. },
            }
            | Self::Mode {
                command: Some(ModeCommand::Exit { command }),
            } => vec![Input::Command(command.clone())],
            Self::Mode { .. } => Vec::new(),
            Self::Chain { command } => match command {
                ChainCommand::Sync {
                    headers: Some(path),
                    format,
                    ..
                } => vec![Input::Headers(path.clone(), format.map(HeaderFormat::from))],
                ChainCommand::ClearDeepReorg {
                    command: Some(command),
                } => vec![Input::Command(command.clone())],
                _ => Vec::new(),
            },
            Self::Keys {
                command:
                    KeysCommand::Attest {
                        ak, enroll: false, ..
                    },
            } => vec![Input::Ak(ak.clone())],
            Self::Keys { .. } => Vec::new(),
            Self::Admin { command } => match command {
                AdminCommand::Sign { key, command, .. } => {
                    vec![
                        Input::AdminKey(key.clone()),
                        Input::Command(command.clone()),
                    ]
                }
                AdminCommand::Show { command } => vec![Input::Command(command.clone())],
                AdminCommand::Keygen { .. } | AdminCommand::Command { .. } => Vec::new(),
            },
            Self::Policy { command } => command.inputs(),
            Self::Wallet { command } => command.inputs(),
            Self::Btc { command } => command.inputs(),
            Self::Eth { command } => command.inputs(),
            Self::Safe { command } => command.inputs(),
            Self::Files { command } => command.inputs(),
            Self::Demo { command } => command.inputs(),
        }
    }
}

impl From<FormatArg> for HeaderFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Raw => Self::Raw,
            FormatArg::Json => Self::Json,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    inputs::check_all(&cli.command.inputs())?;
    if let Command::Admin { command } = &cli.command {
        return admin(command, &cli.config);
    }
    match &cli.command {
        Command::Policy { command } => {
            if let Some(code) = cosign::policy_offline(command)? {
                return Ok(code);
            }
        }
        Command::Btc { command } => {
            if let Some(code) = cosign::btc_offline(command)? {
                return Ok(code);
            }
        }
        Command::Safe { command } => {
            if let Some(code) = eth::safe_offline(command)? {
                return Ok(code);
            }
        }
        Command::Wallet {
            command: cosign::WalletCommand::Register { out: Some(_), .. },
        } => {
            let policy = RetryPolicy::for_link(115_200, Duration::ZERO, cli.retries);
            let Command::Wallet { command } = cli.command else {
                return Ok(ExitCode::SUCCESS);
            };
            return cosign::wallet(None, policy, command);
        }
        Command::Demo { .. } => {
            let Command::Demo { command } = cli.command else {
                return Ok(ExitCode::SUCCESS);
            };
            return cosign::demo_cmd(command);
        }
        _ => {}
    }
    let cfg = GroundConfig::load(&cli.config).with_context(|| {
        format!(
            "loading ground config {} (set --config or GROUND_CONFIG)",
            cli.config.display()
        )
    })?;
    let port = cli
        .port
        .clone()
        .or_else(|| cfg.port.clone())
        .context("no serial port: pass --port or set `port` in the ground config")?;
    let baud = cli.baud.or(cfg.baud).unwrap_or(115_200);
    let policy = RetryPolicy::for_link(baud, Duration::from_millis(cli.latency_ms), cli.retries);
    let mut link = if cli.init {
        let state_file = cfg.state_file.clone();
        let (link, report) = Link::init(cfg, &port, baud, policy)?;
        eprintln!(
            "init: the node's receive bound for key {} is {}; the uplink continues at {}; \
             state saved to {}",
            report.key_id,
            report.node_bound,
            report.first_seq,
            state_file.display()
        );
        link
    } else {
        Link::open(cfg, &port, baud)?
    };
    match cli.command {
        Command::Ping {
            count,
            interval_ms,
            quiet,
            json,
        } => ping(
            &mut link,
            &port,
            baud,
            policy,
            count,
            interval_ms,
            quiet,
            json,
        ),
        Command::Hk { json } => hk(&mut link, policy, json),
        Command::Events { last, follow } => events(&mut link, policy, last, follow),
        Command::Link {
            command: LinkCommand::Rekey { key_id, command },
        } => rekey(&mut link, policy, key_id, &command),
        Command::Chain { command } => chain_command(&mut link, policy, command),
        Command::Mode { command } => {
            mode(&mut link, policy, command.unwrap_or(ModeCommand::Status))
        }
        Command::Keys { command } => keys(&mut link, policy, command),
        Command::Policy { command } => cosign::policy_online(
            &mut link,
            spacenode_ground::cosign::evaluation_policy(policy),
            command,
        ),
        Command::Wallet { command } => cosign::wallet(
            Some(&mut link),
            spacenode_ground::cosign::evaluation_policy(policy),
            command,
        ),
        Command::Btc { command } => cosign::btc_sign(
            &mut link,
            spacenode_ground::cosign::evaluation_policy(policy),
            command,
        ),
        Command::Eth { command } => eth::eth_cmd(
            &mut link,
            spacenode_ground::cosign::evaluation_policy(policy),
            command,
        ),
        Command::Safe { command } => eth::safe_cmd(
            &mut link,
            spacenode_ground::cosign::evaluation_policy(policy),
            command,
        ),
        Command::Audit { command } => cosign::audit(&mut link, policy, command),
        Command::Files { command } => cosign::files_cmd(&mut link, policy, command),
        Command::Admin { .. } | Command::Demo { .. } => Ok(ExitCode::SUCCESS),
    }
}

fn admin(command: &AdminCommand, config: &std::path::Path) -> anyhow::Result<ExitCode> {
    use spacenode_ground::admin as a;
    match command {
        AdminCommand::Keygen { out } => {
            let xonly = a::keygen(out)?;
            println!("administrator key written to {}", out.display());
            println!("x-only public key (for the node's [admin] keys): {xonly}");
        }
        AdminCommand::Command {
            kind,
            node_id,
            seq,
            valid_for,
            body_hex,
            new_key_id,
            replaces,
            out,
        } => {
            let k = a::kind_by_name(kind).with_context(|| {
                let known: Vec<&str> = a::KINDS.iter().map(|(n, _, _)| *n).collect();
                format!("unknown command {kind:?} (known: {})", known.join(", "))
            })?;
            let body = if k == spacenode_policy::command::kind::REKEY_LINK {
                let id = (*new_key_id).context("rekey-link needs --new-key-id")?;
                let cfg = GroundConfig::load(config).with_context(|| {
                    format!(
                        "rekey-link prepares the key in this station's state: loading {}",
                        config.display()
                    )
                })?;
                let body = a::prepare_rekey(&cfg, id, *replaces)?;
                println!(
                    "new link key {id} generated and stored in {}; its SHA-256: {}",
                    cfg.state_file.display(),
                    hex::encode(body.key_sha256)
                );
                body.encode()
            } else {
                match body_hex {
                    Some(h) => hex::decode(h.trim()).context("--body-hex is not hex")?,
                    None => Vec::new(),
                }
            };
            let target = hex::decode(node_id.trim())
                .ok()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .context("--node-id must be 16 hex characters")?;
            let now_ms = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(i64::MAX);
            let until = now_ms
                .saturating_add(i64::try_from(valid_for.saturating_mul(1000)).unwrap_or(i64::MAX));
            // Valid from a minute ago: the node's clock may lag the ground's.
            let cmd = a::build(k, target, *seq, now_ms.saturating_sub(60_000), until, body);
            a::write(out, &cmd)?;
            print!("{}", a::describe(&cmd)?);
            println!(
                "written to {}; now each administrator runs `ground admin sign`",
                out.display()
            );
        }
        AdminCommand::Sign {
            key,
            signer,
            command,
        } => {
            let mut cmd = a::read(command)?;
            print!("{}", a::describe(&cmd)?);
            a::sign(&mut cmd, &a::load_key(key)?, *signer)?;
            a::write(command, &cmd)?;
            println!("signed as administrator {signer}");
        }
        AdminCommand::Show { command } => print!("{}", a::describe(&a::read(command)?)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn mode(link: &mut Link, policy: RetryPolicy, command: ModeCommand) -> anyhow::Result<ExitCode> {
    use spacenode_wire::msg::ModeCode;
    match command {
        ModeCommand::Status => {
            let st = spacenode_ground::cosign::mode_status(link, policy)?;
            let mode = ModeCode::from_u8(st.mode).map_or("unknown", ModeCode::name);
            println!("mode            {mode}");
            println!(
                "reason          {}",
                display::reason(spacenode_wire::ReasonCode(st.reason))
            );
            println!("since           {}", display::utc(st.since_ms));
            println!("boot count      {}", st.boot_count);
            println!(
                "uptime          {}",
                display::duration(u64::from(st.uptime_s))
            );
            println!("node id         {}", hex::encode(st.node_id));
            println!(
                "admin sequence  {} (next command needs a higher one)",
                st.admin_seq
            );
            println!(
                "signing seed    {}",
                if st.seed_available {
                    "available"
                } else {
                    "UNAVAILABLE"
                }
            );
        }
        ModeCommand::Safe => {
            let tc = link.new_tc(
                apid::MODE,
                service::MODE,
                subtype::MODE_ENTER_SAFE,
                Vec::new(),
            );
            link.request(&tc, policy)?;
            println!("the node is in safe mode; it signs nothing until a quorum-signed exit");
        }
        ModeCommand::Exit { command } => {
            let cmd = spacenode_ground::admin::read(&command)?;
            let tc = link.new_tc(apid::MODE, service::MODE, subtype::MODE_EXIT, cmd.encode());
            link.request(&tc, policy)?;
            println!("the node left safe mode");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn keys(link: &mut Link, policy: RetryPolicy, command: KeysCommand) -> anyhow::Result<ExitCode> {
    use spacenode_keys::attest::{AkPublic, Attestation, Expectations, verify_attestation};
    match command {
        KeysCommand::Xpub { path } => {
            let x = link.query(
                (apid::KEYS, service::KEYS, subtype::KEYS_XPUB_REQUEST),
                path.as_bytes(),
                subtype::KEYS_XPUB,
                policy,
            )?;
            let tm = x
                .replies
                .iter()
                .rev()
                .find(|t| t.subtype == subtype::KEYS_XPUB)
                .context("the xpub report was lost; try again")?;
            let (fp, xpub) = tm.data.split_at_checked(4).context("short xpub report")?;
            println!(
                "[{}/{}]{}",
                hex::encode(fp),
                path.trim_start_matches("m/"),
                String::from_utf8_lossy(xpub)
            );
        }
        KeysCommand::Attest {
            ak,
            enroll,
            expect_pcr,
            pcr,
        } => {
            let mut nonce = [0u8; 32];
            rand::fill(&mut nonce);
            let x = link.query(
                (apid::KEYS, service::KEYS, subtype::KEYS_ATTEST),
                &nonce,
                subtype::KEYS_ATTESTATION,
                policy,
            )?;
            let tm = x
                .replies
                .iter()
                .rev()
                .find(|t| t.subtype == subtype::KEYS_ATTESTATION)
                .context("the attestation report was lost; try again")?;
            let att = Attestation::decode(&tm.data).context("decoding the attestation")?;
            if enroll {
                anyhow::ensure!(
                    !ak.exists(),
                    "{} exists; enrollment never overwrites a pinned key",
                    ak.display()
                );
                std::fs::write(&ak, hex::encode(&att.ak_public))?;
                println!(
                    "attestation key pinned in {} (trust on first use: check it out of band)",
                    ak.display()
                );
            }
            let pinned =
                hex::decode(std::fs::read_to_string(&ak)?.trim()).context("--ak is not hex")?;
            let trusted =
                AkPublic::from_tpmt_public(&pinned).context("--ak is not a TPMT_PUBLIC")?;
            let pcrs = match &expect_pcr {
                Some(h) => {
                    let v = hex::decode(h.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                        .context("--expect-pcr must be 64 hex characters")?;
                    // The software PCR as expected; boot PCRs the quote
                    // also covers (`keys.seal_pcrs`) as reported: the
                    // signature still binds them, they are not pinned here.
                    let mut p: Vec<(u8, [u8; 32])> = att
                        .reported_pcrs
                        .iter()
                        .copied()
                        .filter(|(i, _)| *i != pcr)
                        .collect();
                    p.push((pcr, v));
                    p.sort_unstable_by_key(|(i, _)| *i);
                    p
                }
                // Without an expectation, check the signature and nonce
                // against the PCR values the quote reports.
                None => att.reported_pcrs.clone(),
            };
            let exp = Expectations {
                trusted_ak: &trusted,
                nonce,
                pcrs: &pcrs,
                policy_hash: None,
                xpubs: None,
                min_nv_counter: None,
            };
            let v = verify_attestation(&att, &exp)
                .map_err(|e| anyhow::anyhow!("attestation REJECTED: {e}"))?;
            println!(
                "attestation verified: pinned AK, fresh nonce, software PCR {pcr} {}",
                if expect_pcr.is_some() {
                    "matches the expected software"
                } else {
                    "as reported (no expectation given)"
                }
            );
            for xpub in &v.binding.xpubs {
                println!("  bound xpub   {xpub}");
            }
            println!("  nv counter   {}", v.binding.nv_counter);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn chain_command(
    link: &mut Link,
    policy: RetryPolicy,
    command: ChainCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ChainCommand::Status { json } => {
            let (st, time_ms) = chain::status(link, policy)?;
            if json {
                println!("{}", status_json(&st));
            } else {
                print!("{}", display::chain_status_table(&st, time_ms));
            }
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::ClearDeepReorg { command } => {
            let bytes = command
                .as_deref()
                .map(spacenode_ground::admin::read)
                .transpose()?
                .map(|c| c.encode());
            chain::clear_deep_reorg(link, policy, bytes.as_deref())?;
            println!("deep-reorg flag cleared");
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::Sync {
            headers,
            from_stdin,
            format,
            first_height,
            batch,
            json,
        } => {
            let (bytes, name, format) = match (headers, from_stdin) {
                (Some(path), _) => {
                    let bytes =
                        std::fs::read(&path).map_err(|source| chain::ChainCmdError::Read {
                            path: path.display().to_string(),
                            source,
                        })?;
                    let format = format.map_or_else(|| HeaderFormat::for_path(&path), Into::into);
                    (bytes, path.display().to_string(), format)
                }
                (None, _) => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .context("reading headers from stdin")?;
                    let format = format.map_or(HeaderFormat::Raw, Into::into);
                    (bytes, "stdin".to_string(), format)
                }
            };
            let file = chain::parse_headers(&bytes, format, &name)?;
            drop(bytes);
            if let Some(warning) = file.tail_warning(&name) {
                eprintln!("{warning}");
            }
            sync(link, policy, &file, first_height, batch, json)
        }
    }
}

fn status_json(st: &spacenode_chain::ChainStatus) -> serde_json::Value {
    serde_json::json!({
        "network": display::network_name(st.network),
        "tip_height": st.tip_height,
        "tip_hash": st.tip_hash.to_string(),
        "chain_work": hex::encode(st.tip_chain_work.to_be_bytes()),
        "tip_median_time_past": st.tip_median_time_past,
        "window": st.window,
        "lowest_height": st.lowest_height,
        "last_reorg": st.last_reorg.map(|r| serde_json::json!({
            "fork_height": r.fork_height, "depth": r.depth, "new_tip_height": r.new_tip_height,
        })),
        "deep_reorg_refused": st.deep_reorg_refused.map(|d| serde_json::json!({
            "lowest_kept": d.lowest_kept, "branch_start": d.branch_start, "branch_end": d.branch_end,
        })),
    })
}

fn sync(
    link: &mut Link,
    policy: RetryPolicy,
    file: &chain::HeaderFile,
    first_height: Option<u32>,
    batch: Option<u16>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::hidden();
    let mut on_event = |ev: SyncEvent| match ev {
        SyncEvent::Planned {
            from,
            to_send,
            skipped,
        } => {
            if to_send > 0 {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(to_send);
                bar.set_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} headers  {msg}  ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_message(format!("from height {from}"));
            }
            if skipped > 0 && !json {
                say(
                    &bar,
                    format!("the node already has {skipped} header(s) of the file"),
                );
            }
        }
        SyncEvent::Batch {
            count, tip_height, ..
        } => {
            bar.inc(u64::from(count));
            bar.set_message(format!(
                "{:.0} headers/s  node tip {tip_height}",
                bar.per_sec()
            ));
        }
    };
    let opts = SyncOptions {
        first_height,
        max_batch: batch.map(usize::from),
    };
    let result = chain::sync(link, policy, file, opts, &mut on_event);
    bar.finish_and_clear();
    let r = result?;
    let per_header = |bytes: u64| {
        if r.sent_headers == 0 {
            0.0
        } else {
            bytes as f64 / r.sent_headers as f64
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "first_height": r.first_height,
                "last_height": r.last_height,
                "file_headers": r.file_headers,
                "skipped": r.skipped,
                "sent": r.sent_headers,
                "batches": r.batches,
                "payload_bytes": r.payload_bytes,
                "payload_bytes_per_header": per_header(r.payload_bytes),
                "frame_bytes_up": r.frame_bytes_up,
                "frame_bytes_down": r.frame_bytes_down,
                "retries": r.retries,
                "slowest_exchange_ms": r.slowest_exchange.as_secs_f64() * 1e3,
                "reorganized": r.reorganized,
                "truncated_tail_bytes": file.truncated_tail,
                "elapsed_s": r.elapsed.as_secs_f64(),
                "status": status_json(&r.status),
            })
        );
    } else {
        println!(
            "file: {} headers, heights {}..={}",
            r.file_headers, r.first_height, r.last_height
        );
        println!(
            "skipped {} header(s) already on the node; sent {} header(s) in {} batch(es), \
             {:.1} payload bytes/header, {} retries, {:.1} s{}",
            r.skipped,
            r.sent_headers,
            r.batches,
            per_header(r.payload_bytes),
            r.retries,
            r.elapsed.as_secs_f64(),
            if r.reorganized {
                "; the node reorganised onto the file's branch"
            } else {
                ""
            }
        );
        println!(
            "node tip: {} {}",
            r.status.tip_height,
            display::block_hash(&r.status.tip_hash)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn ping(
    link: &mut Link,
    port: &str,
    baud: u32,
    policy: RetryPolicy,
    count: u32,
    interval_ms: u64,
    quiet: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !json {
        println!("PING node via {port} at {baud} Bd");
    }
    let bar = if count > 1 {
        ProgressBar::new(u64::from(count))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} pings  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut answered, mut lost, mut attempts_total) = (0u32, 0u32, 0u64);
    let mut rtts = Vec::new();
    let started = Instant::now();
    for i in 1..=count {
        let tc = link.new_tc(apid::CORE, service::TEST, subtype::PING, Vec::new());
        match link.request(&tc, policy) {
            Ok(x) => {
                answered += 1;
                attempts_total += u64::from(x.attempts);
                rtts.push(x.last_rtt);
                if !quiet && !json {
                    say(
                        &bar,
                        format!(
                            "reply {i}: request {} time={:.1} ms attempts={}",
                            x.request_id,
                            x.last_rtt.as_secs_f64() * 1e3,
                            x.attempts
                        ),
                    );
                }
            }
            Err(e @ GroundError::Silent { .. }) => {
                lost += 1;
                attempts_total += u64::from(policy.attempts);
                say(&bar, format!("ping {i}: {e}"));
            }
            Err(e) => return Err(e.into()),
        }
        bar.inc(1);
        bar.set_message(format!("{lost} lost, {} retries", link.stats.retries));
        if interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
    }
    bar.finish_and_clear();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (min, max) = (
        rtts.iter().min().copied().unwrap_or_default(),
        rtts.iter().max().copied().unwrap_or_default(),
    );
    let avg = if rtts.is_empty() {
        Duration::ZERO
    } else {
        rtts.iter().sum::<Duration>() / rtts.len() as u32
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "sent": count, "answered": answered, "lost": lost,
                "attempts": attempts_total, "retries": link.stats.retries, "resyncs": link.stats.resyncs,
                "rtt_min_ms": ms(min), "rtt_avg_ms": ms(avg), "rtt_max_ms": ms(max),
                "elapsed_s": started.elapsed().as_secs_f64(),
                "downlink_frames_ok": link.frame_stats().frames_ok,
                "downlink_crc_errors": link.frame_stats().crc_errors,
                "downlink_malformed": link.frame_stats().malformed,
                "downlink_refused": link.stats.refused,
            })
        );
    } else {
        println!(
            "--- {count} pings: {answered} answered, {lost} lost, {} retries, {} resyncs; \
             rtt min/avg/max = {:.1}/{:.1}/{:.1} ms",
            link.stats.retries,
            link.stats.resyncs,
            ms(min),
            ms(avg),
            ms(max)
        );
    }
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Prints above the progress bar, or plainly when there is none (not a
/// terminal, or a single ping).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn hk(link: &mut Link, policy: RetryPolicy, json: bool) -> anyhow::Result<ExitCode> {
    let req = HkRequest {
        structures: vec![HK_CORE],
    };
    let x = link.query(
        (apid::HK, service::HK, subtype::HK_ONE_SHOT),
        &req.encode(),
        subtype::HK_REPORT,
        policy,
    )?;
    let report = x
        .replies
        .iter()
        .rev()
        .find(|tm| tm.service == service::HK && tm.subtype == subtype::HK_REPORT)
        .context(
            "the node completed the request but its housekeeping report was lost; try again",
        )?;
    let hk = HkCore::decode(&report.data).context("decoding the housekeeping report")?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> = hk
            .rows()
            .into_iter()
            .map(|(k, v, _)| {
                (
                    k.to_string(),
                    v.parse::<i64>()
                        .map_or(serde_json::Value::String(v), Into::into),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        print!("{}", display::hk_table(&hk, report.time_unix_ms));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(tm: &spacenode_wire::pus::Tm) {
    if tm.service != service::EVENT {
        return;
    }
    match Event::decode(&tm.data) {
        Ok(ev) => println!(
            "{}",
            display::event_line(&ev, Severity::from_subtype(tm.subtype))
        ),
        Err(e) => println!("{}  undecodable event: {e}", display::utc(tm.time_unix_ms)),
    }
}

fn events(
    link: &mut Link,
    policy: RetryPolicy,
    last: u16,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    if last > 0 {
        let tc = link.new_tc(
            apid::EVENTS,
            service::EVENT,
            subtype::EVENT_DUMP,
            EventDump { max: last }.encode(),
        );
        let x = link.request(&tc, policy)?;
        let _ = x;
        // Dumped events are broadcast, so they arrive as unsolicited TM.
        for tm in link.take_unsolicited() {
            print_event(&tm);
        }
    }
    if follow {
        println!("-- following live events (Ctrl-C to stop) --");
        loop {
            if let Some(tm) = link.recv(Instant::now() + Duration::from_millis(500))? {
                print_event(&tm);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rekey(
    link: &mut Link,
    policy: RetryPolicy,
    key_id: u16,
    command: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use spacenode_policy::command::{Command as AdminCmd, RekeyBody, kind};
    let signed = spacenode_ground::admin::read(command)?;
    let cmd = AdminCmd::decode(&signed.command)?;
    anyhow::ensure!(
        cmd.kind == kind::REKEY_LINK,
        "{} is not a rekey-link command",
        command.display()
    );
    let body = RekeyBody::decode(&cmd.body)?;
    let old = link.tx_key_id();
    anyhow::ensure!(
        body.new_key_id == key_id,
        "the command installs key {}, not {key_id}",
        body.new_key_id
    );
    anyhow::ensure!(
        body.replaces_key_id == old,
        "the command replaces key {}, but this station uplinks under key {old}",
        body.replaces_key_id
    );
    let key = link.prepared_key(key_id).with_context(|| {
        format!(
            "key {key_id} is not prepared in this station's state (ground admin command rekey-link)"
        )
    })?;
    {
        use bitcoin::hashes::{Hash, sha256};
        anyhow::ensure!(
            sha256::Hash::hash(&key).to_byte_array() == body.key_sha256,
            "the command commits to another key than the one prepared as {key_id}"
        );
    }
    let req = Rekey {
        key_id,
        key,
        command: signed.encode(),
    };
    let tc = link.new_tc(apid::LINK, service::LINK, subtype::LINK_REKEY, req.encode());
    link.expect_key(key_id, &key)?;
    link.request(&tc, policy)?;
    link.adopt_key(key_id, &key)?;
    println!(
        "link key {old} replaced by key {key_id}; the node retires key {old} on this station's next packet"
    );
    Ok(ExitCode::SUCCESS)
}
