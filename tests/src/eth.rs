//! An Ethereum co-signing world for system tests: the co-signing [`World`]
//! (real daemon behind the link emulator, quorum-signed policy) whose
//! policy also carries Ethereum rules, with two Safes registered through
//! the quorum-signed `policy.register-safe` path (1.4.1 and 1.1.1 on
//! Sepolia; owners: two ground keys and the node's account 0), and helpers
//! to build, approve and send Ethereum requests through the ground library.

use std::path::PathBuf;

use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use spacenode_eth::abi::Operation;
use spacenode_eth::safe::{SafeRegistration, SafeTx};
use spacenode_eth::signer::SoftEthKeys;
use spacenode_ground::admin;
use spacenode_ground::client::Link;
use spacenode_ground::cosign::Answer;
use spacenode_ground::eth::{self, EthOutcome};
use spacenode_policy::command::kind;
use spacenode_policy::request::{EthKind, SignedRequest};
use spacenode_testkit::eth::addr;

use crate::cosign::{World, WorldConfig};

/// Sepolia.
pub const SEPOLIA: u64 = 11_155_111;
/// Ethereum mainnet.
pub const MAINNET: u64 = 1;
/// One ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;
/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;

/// The Ethereum rules (TOML tables appended to the policy) with a daily
/// Sepolia velocity cap of `sepolia_daily` wei. The 1.1.1 Safe registered
/// on Sepolia needs `legacy_safes` (its SafeTx hash names no chain).
#[must_use]
pub fn eth_rules(sepolia_daily: u128) -> String {
    format!(
        "[eth]\nlegacy_safes = [{SEPOLIA}]\n\
         [[eth.chains]]\nchain_id = {SEPOLIA}\nper_tx_cap = \"1 ether\"\nmax_gas_limit = 500000\n\
         max_fee_per_gas = \"100 gwei\"\nmax_priority_fee_per_gas = \"5 gwei\"\n\
         [[eth.chains.velocity]]\nwindow_s = 86400\ncap = \"{sepolia_daily}\"\n\
         [[eth.chains]]\nchain_id = {MAINNET}\nper_tx_cap = \"0.5 ether\"\nmax_gas_limit = 300000\n\
         max_fee_per_gas = \"50 gwei\"\nmax_priority_fee_per_gas = \"3 gwei\"\n\
         [[eth.chains.velocity]]\nwindow_s = 86400\ncap = \"1 ether\"\n\
         [[eth.allow]]\nlabel = \"exchange\"\nchain_id = {SEPOLIA}\naddress = \"{ex}\"\nselectors = [\"deposit()\"]\n\
         [[eth.allow]]\nlabel = \"vendor\"\nchain_id = {SEPOLIA}\naddress = \"{vendor}\"\n\
         [[eth.allow]]\nlabel = \"exchange\"\nchain_id = {MAINNET}\naddress = \"{ex}\"\n\
         [[eth.tokens]]\nlabel = \"USDC\"\nchain_id = {SEPOLIA}\naddress = \"{usdc}\"\nper_tx_cap = \"10000000000\"\n\
         [[eth.tokens.velocity]]\nwindow_s = 86400\ncap = \"25000000000\"\n\
         [[eth.tokens.spenders]]\nlabel = \"router\"\naddress = \"{router}\"\nmax_allowance = \"5000000000\"\n\
         [[eth.delegatecall]]\nlabel = \"MultiSendCallOnly 1.4.1\"\nchain_id = {SEPOLIA}\naddress = \"{msco}\"\n\
         kind = \"multisend-call-only\"\n\
         [[eth.safe_refunds]]\nlabel = \"relayer\"\nchain_id = {SEPOLIA}\n\
         gas_token = \"0x0000000000000000000000000000000000000000\"\nrefund_receiver = \"{relayer}\"\n\
         max_gas_price = \"20 gwei\"\n",
        ex = addr::EXCHANGE,
        vendor = addr::VENDOR,
        usdc = addr::USDC,
        router = addr::ROUTER,
        msco = addr::MULTISEND_CALL_ONLY,
        relayer = addr::RELAYER,
    )
}

/// The Ethereum world (module docs).
pub struct EthWorld {
    /// The co-signing world (daemon, emulator, administrators, approver).
    pub w: World,
    /// The node's address of account 0 (derived on the ground from the
    /// node's xpub).
    pub node_address: Address,
    /// The Safes' two ground co-owners.
    pub ground: [SoftEthKeys; 2],
    /// Registered Safes: `[0]` 1.4.1, `[1]` 1.1.1, both on Sepolia.
    pub safes: Vec<SafeRegistration>,
}

impl EthWorld {
    /// Starts the world with Ethereum rules (daily Sepolia cap
    /// `sepolia_daily` wei) and registers the Safes.
    #[must_use]
    pub fn start(sepolia_daily: u128, node_extra: &str) -> Self {
        let base = WorldConfig::default();
        let w = World::start(&WorldConfig {
            utxos: 1,
            rules: format!("{}{}", base.rules, eth_rules(sepolia_daily)),
            node_extra: node_extra.to_owned(),
            ..base
        });
        let policy = w.policy();
        let mut link = w.link();
        let node_address = eth::node_address(&mut link, policy, 0).expect("node address");
        let ground = [
            SoftEthKeys::from_seed(&[2; 32]).expect("ground key"),
            SoftEthKeys::from_seed(&[3; 32]).expect("ground key"),
        ];
        let mut safes = Vec::new();
        for (address, version) in [(addr::SAFE, "1.4.1"), (addr::SAFE_LEGACY, "1.1.1")] {
            let reg = SafeRegistration {
                label: format!("treasury {version}"),
                chain_id: SEPOLIA,
                address,
                version: version.into(),
                owners: vec![
                    ground[0].address(0).expect("address"),
                    node_address,
                    ground[1].address(0).expect("address"),
                ],
                threshold: 2,
                node_account: 0,
            };
            let st = spacenode_ground::cosign::mode_status(&mut link, policy).expect("mode");
            let mut cmd = admin::build(
                kind::REGISTER_SAFE,
                st.node_id,
                st.admin_seq + 1,
                0,
                i64::MAX,
                reg.encode(),
            );
            admin::sign(&mut cmd, &w.admins[0].1, 0).expect("sign");
            admin::sign(&mut cmd, &w.admins[1].1, 1).expect("sign");
            match eth::register_safe(&mut link, policy, &cmd.encode(), &mut |_| {})
                .expect("register safe")
            {
                Answer::Ok(()) => {}
                Answer::Refused(r) => panic!("Safe {version} refused: {r}"),
            }
            safes.push(reg);
        }
        drop(link);
        Self {
            w,
            node_address,
            ground,
            safes,
        }
    }

    /// An in-process ground link.
    #[must_use]
    pub fn link(&self) -> Link {
        self.w.link()
    }

    /// A signed (approved) Ethereum request.
    #[must_use]
    pub fn request(
        &self,
        id: [u8; 32],
        kind: EthKind,
        account: u32,
        transaction: Vec<u8>,
        safe_tx: Vec<u8>,
    ) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let body = eth::build_request(
            id,
            self.w.node_id,
            kind,
            account,
            transaction,
            safe_tx,
            now,
            6 * 3600,
        );
        eth::approve(&body, &[(self.w.approver.1, 0)]).encode()
    }

    /// A request to sign a transaction (signing payload bytes).
    #[must_use]
    pub fn tx_request(&self, id: [u8; 32], account: u32, unsigned: Vec<u8>) -> Vec<u8> {
        self.request(id, EthKind::Transaction, account, unsigned, Vec::new())
    }

    /// A request for the node's owner signature on `tx`.
    #[must_use]
    pub fn safe_request(&self, id: [u8; 32], tx: &SafeTx) -> Vec<u8> {
        self.request(id, EthKind::SafeSignature, 0, Vec::new(), tx.encode())
    }

    /// Sends a request (with a `SAFE_ADMIN_TX` command if given).
    ///
    /// # Errors
    /// The link's error.
    pub fn sign(
        &self,
        link: &mut Link,
        request: &[u8],
        command: Option<&[u8]>,
    ) -> Result<EthOutcome, spacenode_ground::cosign::CosignError> {
        eth::sign(link, self.w.policy(), request, command, &mut |_| {})
    }

    /// A `SAFE_ADMIN_TX` command for `request`, sequence `seq`, signed by
    /// administrators 0 and 2.
    #[must_use]
    pub fn admin_command(&self, request: &[u8], seq: u64) -> Vec<u8> {
        let hash = SignedRequest::decode(request).expect("request").hash();
        let mut cmd = admin::build(
            kind::SAFE_ADMIN_TX,
            self.w.node_id,
            seq,
            0,
            i64::MAX,
            hash.to_vec(),
        );
        admin::sign(&mut cmd, &self.w.admins[0].1, 0).expect("sign");
        admin::sign(&mut cmd, &self.w.admins[2].1, 2).expect("sign");
        cmd.encode()
    }
}

/// An EIP-1559 transaction on Sepolia (gas 21000 plain / 100000 with data,
/// 40 gwei max fee, 2 gwei priority).
#[must_use]
pub fn eip1559(to: Address, value: u128, data: Vec<u8>, nonce: u64) -> TxEip1559 {
    TxEip1559 {
        chain_id: SEPOLIA,
        nonce,
        gas_limit: if data.is_empty() { 21_000 } else { 100_000 },
        max_fee_per_gas: 40 * GWEI,
        max_priority_fee_per_gas: 2 * GWEI,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input: Bytes::from(data),
    }
}

/// A legacy EIP-155 transaction on mainnet (20 gwei, 21000 gas).
#[must_use]
pub fn legacy(to: Address, value: u128, nonce: u64) -> TxLegacy {
    TxLegacy {
        chain_id: Some(MAINNET),
        nonce,
        gas_price: 20 * GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(to),
        value: U256::from(value),
        input: Bytes::new(),
    }
}

/// Signing payload of a transaction.
#[must_use]
pub fn unsigned<T: SignableTransaction<alloy_primitives::Signature>>(tx: &T) -> Vec<u8> {
    tx.encoded_for_signing()
}

/// A SafeTx of `safe` on Sepolia without refund.
#[must_use]
pub fn safe_tx(
    safe: Address,
    to: Address,
    value: u128,
    data: Vec<u8>,
    operation: Operation,
    nonce: u64,
) -> SafeTx {
    SafeTx {
        chain_id: SEPOLIA,
        safe,
        to,
        value: U256::from(value),
        data: Bytes::from(data),
        operation,
        safe_tx_gas: U256::ZERO,
        base_gas: U256::ZERO,
        gas_price: U256::ZERO,
        gas_token: Address::ZERO,
        refund_receiver: Address::ZERO,
        nonce: U256::from(nonce),
    }
}

/// Runs `tests/python/eth_daemon.py CMD` on a JSON file; returns its line.
#[must_use]
pub fn python_check(dir: &std::path::Path, cmd: &str, cases: &serde_json::Value) -> String {
    let file: PathBuf = dir.join(format!("{cmd}.json"));
    std::fs::write(&file, cases.to_string()).expect("write cases");
    let script = crate::repo_root().join("tests/python/eth_daemon.py");
    let out = std::process::Command::new(crate::python())
        .arg(script)
        .arg(cmd)
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "eth_daemon.py {cmd} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
