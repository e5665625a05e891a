//! The Ethereum and Safe commands of `ground`: `eth address`, `eth sign`,
//! `safe register`, `safe sign`. Argument parsing and printing only; the
//! work is in `spacenode_ground::eth`. Every request is decoded and
//! shown before it is sent; the node's answer is checked and shown after.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use anyhow::{Context, bail};
use bitcoin::secp256k1::{Keypair, XOnlyPublicKey};
use clap::{Args, Subcommand};
use spacenode_eth::abi::Operation;
use spacenode_eth::safe::{SafeRegistration, SafeTx, SafeVersion};
use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::cosign::{self, Answer};
use spacenode_ground::eth::{self, EthOutcome};
use spacenode_ground::inputs::Input;
use spacenode_ground::{admin, display};
use spacenode_policy::authoring::compile::parse_amount;
use spacenode_policy::command::kind;
use spacenode_policy::request::{EthKind, SignedRequest};

use super::cosign::{keys_with_index as read_keys, now_ms as unix_now_ms};

fn print_audit_line(a: &spacenode_ground::cosign::Audited) {
    use spacenode_policy::audit::Decision;
    let e = &a.entry;
    let decision = match e.decision {
        Decision::Approved => "APPROVED",
        Decision::Refused => "REFUSED",
        Decision::Replayed => "replayed",
    };
    let mut line = format!(
        "audit #{} {}  {decision} rule {}",
        e.seq,
        display::utc(e.time.0),
        e.rule
    );
    if e.code != 0 {
        line.push_str(&format!(" code {:#06x}", e.code));
    }
    if let Some(c) = &e.eth {
        line.push_str(&format!(
            " chain {} native out {} (max fee {})",
            c.chain_id,
            eth::format_ether(U256::from(c.native.0)),
            eth::format_ether(U256::from(c.fee.0))
        ));
    }
    if let Some(t) = e.txid {
        line.push_str(&format!(" hash 0x{}", hex::encode(t)));
    }
    println!("{line}");
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing clap arguments buys nothing"
)]
pub enum EthCommand {
    /// The node's Ethereum address of an account (m/44'/60'/0'/0/i),
    /// derived on the ground from the node's xpub.
    Address {
        /// Account index i.
        #[arg(long, default_value_t = 0)]
        account: u32,
    },
    /// Have the node sign an Ethereum transaction (EIP-1559, or legacy
    /// EIP-155 with --legacy) from one of its accounts: shows what is
    /// being approved (chain, nonce, to, value in ETH, gas and fees,
    /// decoded ERC-20 transfer/approve), sends the approved request,
    /// prints the node's decision and its verified receipt, checks that
    /// the signed transaction is the requested one and recovers to the
    /// node's address, and prints the signed raw transaction (for
    /// eth_sendRawTransaction).
    Sign(EthSignArgs),
}

#[derive(Debug, Args)]
pub struct EthTxArgs {
    /// Chain id (1 mainnet, 11155111 Sepolia, ...).
    #[arg(long)]
    chain_id: Option<u64>,
    /// Account nonce.
    #[arg(long)]
    nonce: Option<u64>,
    /// Destination address.
    #[arg(long)]
    to: Option<String>,
    /// Value: wei, or with a unit ("0.5 ether", "30 gwei").
    #[arg(long, default_value = "0")]
    value: String,
    /// Calldata, hex.
    #[arg(long, default_value = "")]
    data: String,
    /// Gas limit.
    #[arg(long, default_value_t = 21_000)]
    gas_limit: u64,
    /// EIP-1559 max fee per gas (or the legacy gas price).
    #[arg(long, default_value = "30 gwei")]
    max_fee: String,
    /// EIP-1559 max priority fee per gas.
    #[arg(long, default_value = "1 gwei")]
    priority_fee: String,
    /// A legacy EIP-155 transaction (gas price = --max-fee).
    #[arg(long)]
    legacy: bool,
    /// The unsigned transaction as its signing payload in hex (0x02 ||
    /// rlp(...) or an EIP-155 rlp list) instead of the fields above.
    #[arg(long, conflicts_with_all = ["chain_id", "nonce", "to", "legacy"])]
    unsigned: Option<String>,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Ground approver key and index in the policy's approvers,
    /// FILE:INDEX (administrator key file format; repeat as needed).
    #[arg(long)]
    approver: Vec<String>,
    /// Request id, 64 hex [default: random]. Re-using one with the same
    /// request returns the node's stored answer.
    #[arg(long)]
    request_id: Option<String>,
    /// Seconds the request stays valid.
    #[arg(long, default_value_t = 3600)]
    valid_for: u64,
    /// Show the decoded request and stop (nothing is sent).
    #[arg(long)]
    dry_run: bool,
    /// The node's receipt key (x-only hex) to check the decision's receipt
    /// [default: asked from the node].
    #[arg(long)]
    receipt_key: Option<String>,
    /// Write the signed request envelope (binary) here (tests).
    #[arg(long, hide = true)]
    save_request: Option<PathBuf>,
    /// Send this signed request envelope instead of building one (tests).
    #[arg(long, hide = true)]
    request_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EthSignArgs {
    #[command(flatten)]
    tx: EthTxArgs,
    /// The node's account index i (m/44'/60'/0'/0/i).
    #[arg(long, default_value_t = 0)]
    account: u32,
    #[command(flatten)]
    request: RequestArgs,
    /// Write the signed raw transaction (hex) here.
    #[arg(long)]
    out_tx: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing clap arguments buys nothing"
)]
pub enum SafeCommand {
    /// Register a Safe the node co-owns: builds the REGISTER_SAFE command
    /// (address, chain, version, owners, threshold, the node's account),
    /// signs it with the administrator keys given and sends it (the node
    /// checks that its own address is an owner). With --out the command is
    /// written instead, for `ground admin sign` by each administrator.
    Register {
        /// Label (at most 64 bytes).
        #[arg(long, default_value = "safe")]
        label: String,
        /// Chain id.
        #[arg(long)]
        chain_id: u64,
        /// The Safe's address.
        #[arg(long)]
        safe: String,
        /// Contract version as VERSION() returns it (1.0.0 .. 1.5.0).
        #[arg(long)]
        safe_version: String,
        /// Owners as getOwners() returns them (repeat, or comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        owner: Vec<String>,
        /// Threshold.
        #[arg(long)]
        threshold: u64,
        /// The node's account i whose address is an owner.
        #[arg(long, default_value_t = 0)]
        account: u32,
        /// Administrator key and index, FILE:INDEX (repeat for a quorum).
        #[arg(long)]
        key: Vec<String>,
        /// Command sequence [default: the node's last + 1].
        #[arg(long)]
        seq: Option<u64>,
        /// Seconds the command stays valid.
        #[arg(long, default_value_t = 3600)]
        valid_for: u64,
        /// Write the command here instead of sending it (needs --node-id
        /// and --seq).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Node id, 16 hex [default: asked from the node].
        #[arg(long)]
        node_id: Option<String>,
        /// A prepared, signed command file to send.
        #[arg(long, conflicts_with_all = ["key", "out"])]
        command: Option<PathBuf>,
    },
    /// Have the node sign a Safe transaction as an owner (EIP-712 SafeTx
    /// hash), or with --approve-hash sign the owner transaction calling
    /// approveHash(safeTxHash) instead: shows the Safe, operation, to,
    /// value in ETH, decoded calldata (ERC-20, MultiSend call by call, Safe
    /// functions), refund parameters and the SafeTx hash, sends it, checks
    /// the answer and prints the signature (r||s||v) or the signed raw
    /// transaction. A call from the Safe to itself needs --admin-key
    /// (a quorum signing SAFE_ADMIN_TX over this request) or
    /// --admin-command.
    Sign(SafeSignArgs),
    /// Retire a registered Safe: the node signs nothing more for it (what
    /// it signed stays recorded, so its nonces are never signed twice).
    /// Builds the RETIRE_SAFE command, signs it with the administrator keys
    /// given and sends it.
    Retire {
        /// Chain id of the Safe.
        #[arg(long, required_unless_present = "command")]
        chain_id: Option<u64>,
        /// The Safe's address.
        #[arg(long, required_unless_present = "command")]
        safe: Option<String>,
        #[command(flatten)]
        by: super::cosign::RetireArgs,
    },
}

#[derive(Debug, Args)]
pub struct SafeSignArgs {
    /// Chain id of the Safe.
    #[arg(long)]
    chain_id: u64,
    /// The Safe's address.
    #[arg(long)]
    safe: String,
    /// Its contract version (to show and check the SafeTx hash here; needed
    /// with --approve-hash).
    #[arg(long)]
    safe_version: Option<String>,
    /// Destination.
    #[arg(long)]
    to: String,
    /// Value: wei, or with a unit ("0.5 ether").
    #[arg(long, default_value = "0")]
    value: String,
    /// Calldata, hex.
    #[arg(long, default_value = "")]
    data: String,
    /// call or delegatecall.
    #[arg(long, default_value = "call")]
    operation: String,
    /// Safe nonce.
    #[arg(long)]
    nonce: u64,
    /// safeTxGas.
    #[arg(long, default_value_t = 0)]
    safe_tx_gas: u64,
    /// baseGas (refunds).
    #[arg(long, default_value_t = 0)]
    base_gas: u64,
    /// Refund gasPrice, wei or with a unit.
    #[arg(long, default_value = "0")]
    gas_price: String,
    /// Refund token (zero: the native coin).
    #[arg(long)]
    gas_token: Option<String>,
    /// Refund receiver (zero: tx.origin).
    #[arg(long)]
    refund_receiver: Option<String>,
    /// The node's registered owner account i.
    #[arg(long, default_value_t = 0)]
    account: u32,
    /// Approve on chain: sign the owner transaction to the Safe calling
    /// approveHash(safeTxHash), with this account nonce.
    #[arg(long, value_name = "ACCOUNT_NONCE")]
    approve_hash: Option<u64>,
    /// Gas limit of the approveHash transaction.
    #[arg(long, default_value_t = 60_000)]
    gas_limit: u64,
    /// Max fee per gas of the approveHash transaction.
    #[arg(long, default_value = "30 gwei")]
    max_fee: String,
    /// Priority fee of the approveHash transaction.
    #[arg(long, default_value = "1 gwei")]
    priority_fee: String,
    /// Administrator key and index, FILE:INDEX (repeat for a quorum): sign
    /// a SAFE_ADMIN_TX command over this request (Safe self-calls).
    #[arg(long)]
    admin_key: Vec<String>,
    /// A signed SAFE_ADMIN_TX command file to send with the request
    /// (use with --request-file, the request it authorises).
    #[arg(long, conflicts_with = "admin_key")]
    admin_command: Option<PathBuf>,
    #[command(flatten)]
    request: RequestArgs,
}

/// The local files each command reads, checked before the link is opened
/// (`spacenode_ground::inputs`).
impl RequestArgs {
    fn inputs(&self) -> Vec<Input> {
        self.approver
            .iter()
            .map(|k| Input::KeySpec(k.clone()))
            .collect()
    }
}

impl EthCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Sign(a) => a.request.inputs(),
            _ => Vec::new(),
        }
    }
}

impl SafeCommand {
    /// The local files and arguments this command reads.
    pub fn inputs(&self) -> Vec<Input> {
        match self {
            Self::Register { key, command, .. } => command
                .iter()
                .map(|c| Input::Command(c.clone()))
                .chain(key.iter().map(|k| Input::KeySpec(k.clone())))
                .collect(),
            Self::Sign(a) => a
                .admin_command
                .iter()
                .map(|c| Input::Command(c.clone()))
                .chain(a.admin_key.iter().map(|k| Input::KeySpec(k.clone())))
                .chain(a.request.inputs())
                .collect(),
            Self::Retire { by, .. } => by.inputs(),
        }
    }
}

fn amount(s: &str, what: &str) -> anyhow::Result<u128> {
    parse_amount(s).with_context(|| format!("--{what} {s:?}: wei, or a number with ether/gwei/wei"))
}

fn address(s: &str, what: &str) -> anyhow::Result<Address> {
    spacenode_policy::authoring::compile::parse_address(s.trim())
        .map_err(|e| anyhow::anyhow!("--{what} {s:?}: {e}"))
}

fn calldata(s: &str) -> anyhow::Result<Bytes> {
    if s.trim().is_empty() {
        return Ok(Bytes::new());
    }
    eth::parse_hex(s)
        .map(Bytes::from)
        .map_err(|e| anyhow::anyhow!("--data: {e}"))
}

fn unsigned_tx(a: &EthTxArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(u) = &a.unsigned {
        return eth::parse_hex(u).map_err(|e| anyhow::anyhow!("--unsigned: {e}"));
    }
    let chain_id = a.chain_id.context("--chain-id (or --unsigned)")?;
    let nonce = a.nonce.context("--nonce (or --unsigned)")?;
    let to = address(a.to.as_deref().context("--to (or --unsigned)")?, "to")?;
    let value = U256::from(amount(&a.value, "value")?);
    let input = calldata(&a.data)?;
    let max_fee = amount(&a.max_fee, "max-fee")?;
    Ok(if a.legacy {
        TxLegacy {
            chain_id: Some(chain_id),
            nonce,
            gas_price: max_fee,
            gas_limit: a.gas_limit,
            to: TxKind::Call(to),
            value,
            input,
        }
        .encoded_for_signing()
    } else {
        TxEip1559 {
            chain_id,
            nonce,
            gas_limit: a.gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: amount(&a.priority_fee, "priority-fee")?,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input,
        }
        .encoded_for_signing()
    })
}

fn request_id(r: &RequestArgs) -> anyhow::Result<[u8; 32]> {
    match &r.request_id {
        Some(h) => hex::decode(h.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .context("--request-id must be 64 hex characters"),
        None => Ok(rand::random()),
    }
}

fn envelope(
    link: &mut Link,
    policy: RetryPolicy,
    r: &RequestArgs,
    kind: EthKind,
    account: u32,
    transaction: Vec<u8>,
    safe_tx: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    if let Some(p) = &r.request_file {
        return std::fs::read(p).with_context(|| p.display().to_string());
    }
    let mode = cosign::mode_status(link, policy)?;
    let id = request_id(r)?;
    let body = eth::build_request(
        id,
        mode.node_id,
        kind,
        account,
        transaction,
        safe_tx,
        u64::try_from(unix_now_ms()).unwrap_or(0),
        r.valid_for,
    );
    let approvals: Vec<(Keypair, u8)> = read_keys(&r.approver)?;
    let signed = eth::approve(&body, &approvals);
    println!(
        "sign request {}: {} approval(s), {} bytes",
        hex::encode(id),
        signed.approvals.len(),
        signed.encode().len()
    );
    let bytes = signed.encode();
    if let Some(p) = &r.save_request {
        std::fs::write(p, &bytes).with_context(|| p.display().to_string())?;
    }
    Ok(bytes)
}

/// Sends, prints the decision and receipt; returns the outcome or the exit
/// code of a refusal.
fn send(
    link: &mut Link,
    policy: RetryPolicy,
    r: &RequestArgs,
    request: &[u8],
    command: Option<&[u8]>,
) -> anyhow::Result<Result<EthOutcome, ExitCode>> {
    let receipt_key = match &r.receipt_key {
        Some(k) => XOnlyPublicKey::from_str(k.trim()).context("--receipt-key: x-only hex")?,
        None => cosign::fetch_receipt_key(link, policy)?,
    };
    let outcome = eth::sign(link, policy, request, command, &mut |_| {})?;
    if outcome.uploaded {
        println!("request uploaded in chunks (larger than one frame)");
    }
    if let Some(a) = &outcome.audit {
        print_audit_line(a);
        match cosign::verify_one(a, &receipt_key) {
            Ok(()) => println!("receipt verified against the node's receipt key {receipt_key}"),
            Err(e) => bail!("the decision's receipt does NOT verify: {e}"),
        }
    }
    if let Some(rf) = &outcome.refused {
        println!(
            "REFUSED by the node: {}{}",
            display::reason(rf.code),
            rf.rule
                .as_ref()
                .map(|t| format!(" [rule {t}]"))
                .unwrap_or_default()
        );
        println!("  {}", rf.detail);
        return Ok(Err(ExitCode::from(3)));
    }
    Ok(Ok(outcome))
}

/// `ground eth ...`.
pub fn eth_cmd(
    link: &mut Link,
    policy: RetryPolicy,
    command: EthCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        EthCommand::Address { account } => {
            let a = eth::node_address(link, policy, account)?;
            println!("{a}");
            Ok(ExitCode::SUCCESS)
        }
        EthCommand::Sign(args) => {
            let unsigned = unsigned_tx(&args.tx)?;
            if args.request.request_file.is_none() {
                match eth::describe_transaction(&unsigned) {
                    Ok(text) => print!("{text}"),
                    Err(e) => {
                        println!("the transaction does not decode (the node will refuse it): {e}")
                    }
                }
                println!("from           node account {}", args.account);
            }
            if args.request.dry_run {
                return Ok(ExitCode::SUCCESS);
            }
            let request = envelope(
                link,
                policy,
                &args.request,
                EthKind::Transaction,
                args.account,
                unsigned.clone(),
                Vec::new(),
            )?;
            let outcome = match send(link, policy, &args.request, &request, None)? {
                Ok(o) => o,
                Err(code) => return Ok(code),
            };
            let result = outcome.result.context("no result")?;
            let expected = eth::node_address(link, policy, args.account)?;
            let requested = args
                .request
                .request_file
                .is_none()
                .then_some(unsigned.as_slice());
            let checked = eth::check_result(&result, requested, Some(expected))
                .map_err(|e| anyhow::anyhow!("the node's answer does NOT check: {e}"))?;
            println!("APPROVED: the node signed the transaction");
            print!("{checked}");
            let raw = format!("0x{}", hex::encode(&result.raw_tx));
            println!("signed raw transaction ({} bytes):", result.raw_tx.len());
            println!("{raw}");
            if let Some(p) = args.out_tx {
                std::fs::write(&p, format!("{raw}\n"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_node_id(s: &str) -> anyhow::Result<[u8; 8]> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .context("--node-id must be 16 hex characters")
}

/// Offline `ground safe register --out` (no link needed).
pub fn safe_offline(command: &SafeCommand) -> anyhow::Result<Option<ExitCode>> {
    let SafeCommand::Register {
        out: Some(out),
        node_id,
        seq,
        ..
    } = command
    else {
        return Ok(None);
    };
    let (Some(n), Some(s)) = (node_id, seq) else {
        bail!("offline (--out) the command needs --node-id and --seq");
    };
    let cmd = registration_command(command, parse_node_id(n)?, *s)?;
    admin::write(out, &cmd)?;
    print!("{}", admin::describe(&cmd)?);
    println!(
        "written to {}; administrators add signatures with `ground admin sign`",
        out.display()
    );
    Ok(Some(ExitCode::SUCCESS))
}

fn registration_command(
    command: &SafeCommand,
    node_id: [u8; 8],
    seq: u64,
) -> anyhow::Result<spacenode_policy::command::SignedCommand> {
    let SafeCommand::Register {
        label,
        chain_id,
        safe,
        safe_version: version,
        owner,
        threshold,
        account,
        key,
        valid_for,
        ..
    } = command
    else {
        bail!("not a registration");
    };
    SafeVersion::parse(version).map_err(|e| anyhow::anyhow!("--safe-version: {e}"))?;
    let reg = SafeRegistration {
        label: label.clone(),
        chain_id: *chain_id,
        address: address(safe, "safe")?,
        version: version.clone(),
        owners: owner
            .iter()
            .map(|o| address(o, "owner"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        threshold: *threshold,
        node_account: *account,
    };
    println!("Safe           {} ({})", reg.address, reg.label);
    println!("chain          {}", reg.chain_id);
    println!("version        {}", reg.version);
    println!(
        "owners         {} of {}: {}",
        reg.threshold,
        reg.owners.len(),
        reg.owners
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("node account   m/44'/60'/0'/0/{}", reg.node_account);
    let now = unix_now_ms();
    let mut cmd = admin::build(
        kind::REGISTER_SAFE,
        node_id,
        seq,
        now.saturating_sub(60_000),
        now.saturating_add(i64::try_from(valid_for.saturating_mul(1000)).unwrap_or(i64::MAX)),
        reg.encode(),
    );
    for (k, i) in read_keys(key)? {
        admin::sign(&mut cmd, &k, i)?;
    }
    Ok(cmd)
}

fn safe_tx(a: &SafeSignArgs) -> anyhow::Result<SafeTx> {
    let operation = match a.operation.to_ascii_lowercase().as_str() {
        "call" | "0" => Operation::Call,
        "delegatecall" | "1" => Operation::DelegateCall,
        other => bail!("--operation {other:?}: call or delegatecall"),
    };
    let opt = |s: &Option<String>, what: &str| -> anyhow::Result<Address> {
        s.as_deref().map_or(Ok(Address::ZERO), |x| address(x, what))
    };
    Ok(SafeTx {
        chain_id: a.chain_id,
        safe: address(&a.safe, "safe")?,
        to: address(&a.to, "to")?,
        value: U256::from(amount(&a.value, "value")?),
        data: calldata(&a.data)?,
        operation,
        safe_tx_gas: U256::from(a.safe_tx_gas),
        base_gas: U256::from(a.base_gas),
        gas_price: U256::from(amount(&a.gas_price, "gas-price")?),
        gas_token: opt(&a.gas_token, "gas-token")?,
        refund_receiver: opt(&a.refund_receiver, "refund-receiver")?,
        nonce: U256::from(a.nonce),
    })
}

/// `ground safe ...` (online).
pub fn safe_cmd(
    link: &mut Link,
    policy: RetryPolicy,
    command: SafeCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        SafeCommand::Register {
            command: Some(path),
            ..
        } => send_registration(link, policy, &admin::read(&path)?),
        c @ SafeCommand::Register { .. } => {
            let SafeCommand::Register { node_id, seq, .. } = &c else {
                bail!("not a registration");
            };
            let st = cosign::mode_status(link, policy)?;
            let node = match node_id {
                Some(n) => parse_node_id(n)?,
                None => st.node_id,
            };
            let cmd =
                registration_command(&c, node, seq.unwrap_or(st.admin_seq.saturating_add(1)))?;
            send_registration(link, policy, &cmd)
        }
        SafeCommand::Sign(a) => safe_sign(link, policy, a),
        SafeCommand::Retire { chain_id, safe, by } => {
            let body = match (chain_id, safe) {
                (Some(chain), Some(s)) => {
                    let address = Address::from_str(s.trim())
                        .with_context(|| format!("--safe {s:?} is not an address"))?;
                    let mut b = chain.to_be_bytes().to_vec();
                    b.extend_from_slice(address.as_slice());
                    Some(b)
                }
                _ => None,
            };
            super::cosign::retire(link, policy, kind::RETIRE_SAFE, body, by)
        }
    }
}

fn send_registration(
    link: &mut Link,
    policy: RetryPolicy,
    cmd: &spacenode_policy::command::SignedCommand,
) -> anyhow::Result<ExitCode> {
    let c = spacenode_policy::command::Command::decode(&cmd.command)?;
    let signers = admin::signer_list(&cmd.signatures);
    println!(
        "REGISTER_SAFE command seq {} signed by administrators [{}]",
        c.seq, signers
    );
    match eth::register_safe(link, policy, &cmd.encode(), &mut |_| {})? {
        Answer::Refused(r) => bail!("the node refused the Safe: {r}"),
        Answer::Ok(()) => {
            println!("Safe registered on the node");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn safe_sign(link: &mut Link, policy: RetryPolicy, a: SafeSignArgs) -> anyhow::Result<ExitCode> {
    let stx = safe_tx(&a)?;
    let version = a
        .safe_version
        .as_deref()
        .map(SafeVersion::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--safe-version: {e}"))?;
    let outer = match a.approve_hash {
        None => None,
        Some(nonce) => {
            let v = version.context("--approve-hash needs --safe-version (the SafeTx hash)")?;
            let hash = eth::safe_hash(&stx, v);
            Some(
                TxEip1559 {
                    chain_id: a.chain_id,
                    nonce,
                    gas_limit: a.gas_limit,
                    max_fee_per_gas: amount(&a.max_fee, "max-fee")?,
                    max_priority_fee_per_gas: amount(&a.priority_fee, "priority-fee")?,
                    to: TxKind::Call(stx.safe),
                    value: U256::ZERO,
                    access_list: Default::default(),
                    input: spacenode_eth::abi::encode_approve_hash(&hash).into(),
                }
                .encoded_for_signing(),
            )
        }
    };
    if a.request.request_file.is_none() {
        print!("{}", eth::describe_safe_tx(&stx, version));
        if let Some(o) = &outer {
            println!("-- the node approves it on chain with this owner transaction:");
            match eth::describe_transaction(o) {
                Ok(t) => print!("{t}"),
                Err(e) => println!("does not decode: {e}"),
            }
        }
        println!("owner          node account {}", a.account);
    }
    if a.request.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let (kind, tx_bytes) = match &outer {
        Some(o) => (EthKind::SafeApproveHash, o.clone()),
        None => (EthKind::SafeSignature, Vec::new()),
    };
    let request = envelope(
        link,
        policy,
        &a.request,
        kind,
        a.account,
        tx_bytes,
        stx.encode(),
    )?;
    let command = match (&a.admin_command, a.admin_key.is_empty()) {
        (Some(p), _) => Some(admin::read(p)?.encode()),
        (None, false) => {
            let hash = SignedRequest::decode(&request)
                .map_err(|e| anyhow::anyhow!("request: {e}"))?
                .hash();
            let st = cosign::mode_status(link, policy)?;
            let now = unix_now_ms();
            let mut cmd = admin::build(
                kind::SAFE_ADMIN_TX,
                st.node_id,
                st.admin_seq.saturating_add(1),
                now.saturating_sub(60_000),
                now.saturating_add(3_600_000),
                hash.to_vec(),
            );
            for (k, i) in read_keys(&a.admin_key)? {
                admin::sign(&mut cmd, &k, i)?;
            }
            println!(
                "SAFE_ADMIN_TX command seq {} over request hash {}",
                st.admin_seq.saturating_add(1),
                hex::encode(hash)
            );
            Some(cmd.encode())
        }
        (None, true) => None,
    };
    let outcome = match send(link, policy, &a.request, &request, command.as_deref())? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let result = outcome.result.context("no result")?;
    let expected = eth::node_address(link, policy, a.account)?;
    let checked = eth::check_result(&result, outer.as_deref(), Some(expected))
        .map_err(|e| anyhow::anyhow!("the node's answer does NOT check: {e}"))?;
    if let (Some(v), Some(h)) = (version, result.safe_tx_hash)
        && eth::safe_hash(&stx, v) != h
    {
        bail!("the node signed SafeTx hash {h}, not the one computed here");
    }
    print!("{checked}");
    if result.raw_tx.is_empty() {
        println!("APPROVED: the node signed the SafeTx as an owner");
        println!("owner signature (r||s||v, for execTransaction's signatures):");
        println!("0x{}", hex::encode(result.signature));
    } else {
        println!("APPROVED: the node signed the approveHash transaction");
        println!("signed raw transaction ({} bytes):", result.raw_tx.len());
        println!("0x{}", hex::encode(&result.raw_tx));
    }
    Ok(ExitCode::SUCCESS)
}
