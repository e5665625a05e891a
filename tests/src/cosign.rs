//! A co-signing world for system tests: the real daemon (soft key store or
//! swtpm) behind the link emulator, a regtest chain synced to it, a
//! quorum-signed policy bootstrapped, a 2-of-3 wallet (two ground keys and
//! the node's) registered, and helpers to build, approve and send sign
//! requests. Everything goes over the link through the ground library; the
//! database is only read by tests that check what was stored.

use std::path::PathBuf;
use std::time::Duration;

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Keypair, XOnlyPublicKey};
use bitcoin::{Address, Network, NetworkKind, ScriptBuf};
use spacenode_btc::signer::SoftSigner;
use spacenode_ground::chain::{self, HeaderFormat, SyncOptions};
use spacenode_ground::client::{Link, RetryPolicy};
use spacenode_ground::cosign::{self, Answer, SignOutcome};
use spacenode_ground::demo::{self, Funding};
use spacenode_ground::{admin, btc};
use spacenode_keys::swtpm::Swtpm;
use spacenode_linkemu::emulator::{Emulator, LinkParams};
use spacenode_policy::command::kind;
use spacenode_policy::document::{PolicyDocument, SignedPolicy};
use spacenode_wire::services::subtype;

use crate::{Fixture, Node, append_config};

/// The allowlisted destination of the tests (regtest P2WPKH).
pub const DEST: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/// How the world is set up.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// Keys in swtpm (else the soft store).
    pub tpm: bool,
    /// Link rate.
    pub baud: u32,
    /// Funded outputs.
    pub utxos: u32,
    /// Their value, sat.
    pub value_sat: u64,
    /// `[rules]` of the policy (TOML, without the table header).
    pub rules: String,
    /// Extra node config (e.g. a `[health]` table).
    pub node_extra: String,
    /// The first policy's activation delay (for the next change).
    pub activation_delay_s: u64,
    /// Extra keys of the node's `[chain]` table (e.g. `window = 3`).
    pub chain_extra: String,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            tpm: false,
            baud: 921_600,
            utxos: 4,
            value_sat: 100_000_000,
            rules: format!(
                "per_tx_cap_sat = 150000000\nmax_fee_sat = 100000\nmax_fee_rate_sat_vb = 100\n\
                 min_confirmations = 3\nmax_psbt_bytes = 200000\n\
                 [[rules.velocity]]\nwindow_s = 86400\ncap_sat = 1000000000\n\
                 [[rules.allow]]\nlabel = \"exchange\"\naddress = \"{DEST}\"\n\
                 [rules.replacement]\nallowed = false\nmax_fee_sat = 0\nmax_fee_rate_sat_vb = 0\n"
            ),
            node_extra: String::new(),
            activation_delay_s: 3600,
            chain_extra: String::new(),
        }
    }
}

/// The world (module docs).
pub struct World {
    /// swtpm, when the keys live there.
    pub sw: Option<Swtpm>,
    /// The link emulator.
    pub emu: Emulator,
    /// Configs and state.
    pub fx: Fixture,
    /// The daemon (None while stopped).
    pub node: Option<Node>,
    /// Administrator key files and keys (2 of 3).
    pub admins: Vec<(PathBuf, Keypair)>,
    /// The ground approver (file, key), index 0.
    pub approver: (PathBuf, Keypair),
    /// Ground co-signer key files and keys.
    pub ground_keys: Vec<(PathBuf, SoftSigner)>,
    /// The registered wallet.
    pub descriptor: String,
    /// Its funding.
    pub funding: Funding,
    /// The allowlisted destination script.
    pub dest: ScriptBuf,
    /// The node's id.
    pub node_id: [u8; 8],
    /// The node's receipt key.
    pub receipt_key: XOnlyPublicKey,
    /// The active policy document.
    pub policy_doc: PolicyDocument,
    /// Link rate.
    pub baud: u32,
}

impl World {
    /// Sets everything up (module docs).
    #[must_use]
    pub fn start(cfg: &WorldConfig) -> Self {
        let sw = cfg
            .tpm
            .then(|| Swtpm::start().expect("swtpm (install swtpm swtpm-tools)"));
        let emu = Emulator::start(LinkParams::clean(cfg.baud)).expect("emulator");
        let fx = Fixture::new(emu.node_path(), cfg.baud, Fixture::QUIET);
        let admins: Vec<(PathBuf, Keypair)> = (0..3u8)
            .map(|i| {
                let p = fx.dir.path().join(format!("admin{i}.json"));
                admin::keygen(&p).expect("admin key");
                let k = admin::load_key(&p).expect("load admin key");
                (p, k)
            })
            .collect();
        let approver_path = fx.dir.path().join("approver.json");
        admin::keygen(&approver_path).expect("approver key");
        let approver = (
            approver_path.clone(),
            admin::load_key(&approver_path).expect("approver"),
        );
        let admin_keys: Vec<String> = admins
            .iter()
            .map(|(_, k)| format!("\"{}\"", k.x_only_public_key().0))
            .collect();
        let mut node_cfg = format!(
            "[chain]\nnetwork = \"regtest\"\nstart = \"genesis\"\n{}\n\
             [admin]\nthreshold = 2\nkeys = [{}]\n\n",
            cfg.chain_extra,
            admin_keys.join(", ")
        );
        if let Some(sw) = &sw {
            node_cfg.push_str(&format!(
                "[keys]\nbackend = \"tpm\"\ntcti = \"{}\"\nseal_auth = \"0011223344\"\n\n",
                sw.tcti()
            ));
        }
        node_cfg.push_str(&cfg.node_extra);
        append_config(&fx, &node_cfg);
        let node = Node::start(&fx);
        let mut link = fx.link(emu.ground_path(), cfg.baud);
        let policy = patient_eval(cfg.baud);

        // The wallet: two ground keys and the node's.
        let ground_keys: Vec<(PathBuf, SoftSigner)> = (1..=2)
            .map(|i| {
                let p = fx.dir.path().join(format!("ground{i}.json"));
                let k = btc::keygen(&p, NetworkKind::Test).expect("ground key");
                (p, k)
            })
            .collect();
        let (fp, xpub) =
            cosign::fetch_xpub(&mut link, policy, "m/48'/1'/0'/2'").expect("node xpub");
        let node_expr = format!("[{fp}/48'/1'/0'/2']{xpub}/<0;1>/*");
        let exprs: Vec<String> = ground_keys
            .iter()
            .map(|(_, k)| btc::key_expression(k, btc::DEFAULT_ACCOUNT).expect("expr"))
            .collect();
        let descriptor = format!("wsh(sortedmulti(2,{},{},{node_expr}))", exprs[0], exprs[1]);
        let (funding, regtest) =
            demo::fund(&descriptor, cfg.utxos, cfg.value_sat, 3).expect("fund");
        let file = chain::parse_headers(&demo::headers_raw(&regtest), HeaderFormat::Raw, "regtest")
            .expect("headers");
        chain::sync(
            &mut link,
            policy,
            &file,
            SyncOptions {
                first_height: None,
                max_batch: None,
            },
            &mut |_| {},
        )
        .expect("header sync");

        // The policy, bootstrapped by the configured administrators.
        let toml = policy_toml(1, cfg.activation_delay_s, &admins, &approver.1, &cfg.rules);
        let policy_doc = PolicyDocument::from_toml(&toml).expect("policy toml");
        let signed = sign_policy(&policy_doc, &[(&admins[0].1, 0), (&admins[1].1, 1)]);
        match cosign::propose(&mut link, policy, &signed.encode(), &mut |_| {}).expect("propose") {
            Answer::Ok(_) => {}
            Answer::Refused(r) => panic!("bootstrap policy refused: {r}"),
        }
        let mode = cosign::mode_status(&mut link, policy).expect("mode");
        let canonical =
            spacenode_btc::wallet::canonical_descriptor(&descriptor).expect("canonical");
        let mut cmd = admin::build(
            kind::REGISTER_WALLET,
            mode.node_id,
            mode.admin_seq + 1,
            0,
            i64::MAX,
            spacenode_btc::wallet::registration_body("treasury", &canonical),
        );
        admin::sign(&mut cmd, &admins[0].1, 0).expect("sign");
        admin::sign(&mut cmd, &admins[2].1, 2).expect("sign");
        match cosign::admin_command(
            &mut link,
            policy,
            subtype::POLICY_REGISTER_WALLET,
            &cmd.encode(),
            &mut |_| {},
        )
        .expect("register")
        {
            Answer::Ok(()) => {}
            Answer::Refused(r) => panic!("wallet refused: {r}"),
        }
        let receipt_key = cosign::fetch_receipt_key(&mut link, policy).expect("receipt key");
        drop(link);
        let dest = Address::from_str_checked(DEST).script_pubkey();
        Self {
            sw,
            emu,
            fx,
            node: Some(node),
            admins,
            approver,
            ground_keys,
            descriptor: canonical,
            funding,
            dest,
            node_id: mode.node_id,
            receipt_key,
            policy_doc,
            baud: cfg.baud,
        }
    }

    /// An in-process ground link.
    #[must_use]
    pub fn link(&self) -> Link {
        self.fx.link(self.emu.ground_path(), self.baud)
    }

    /// A patient retry policy for evaluated requests.
    #[must_use]
    pub fn policy(&self) -> RetryPolicy {
        patient_eval(self.baud)
    }

    /// A signed request (approved by the ground approver) for a PSBT
    /// spending `inputs` and paying `amount` to the allowlisted destination.
    #[must_use]
    pub fn request(
        &self,
        id: [u8; 32],
        inputs: &[usize],
        amount: u64,
        fee: u64,
        change_index: u32,
    ) -> (Vec<u8>, Psbt) {
        self.request_at(id, inputs, amount, fee, change_index, 0)
    }

    /// [`World::request`] with its validity window shifted by `offset_ms`
    /// (for a node whose wall clock was stepped).
    #[must_use]
    pub fn request_at(
        &self,
        id: [u8; 32],
        inputs: &[usize],
        amount: u64,
        fee: u64,
        change_index: u32,
        offset_ms: i64,
    ) -> (Vec<u8>, Psbt) {
        let psbt = self
            .funding
            .psbt(inputs, self.dest.clone(), amount, fee, change_index)
            .expect("psbt");
        let proofs = self.funding.proofs(inputs).expect("proofs");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let now = now.saturating_add_signed(offset_ms);
        let body = btc::build_request(
            id,
            self.node_id,
            psbt.serialize(),
            proofs,
            btc::Validity {
                now_ms: now,
                skew_s: 3600,
                valid_for_s: 6 * 3600,
                tip: self.funding.tip,
                blocks: 100,
            },
        );
        (btc::approve(&body, &[(self.approver.1, 0)]).encode(), psbt)
    }

    /// Sends a signed request.
    ///
    /// # Errors
    /// The link's error.
    pub fn sign(
        &self,
        link: &mut Link,
        policy: RetryPolicy,
        request: &[u8],
    ) -> Result<SignOutcome, cosign::CosignError> {
        cosign::sign(link, policy, request, &mut |_| {})
    }

    /// kill -9, then start again (waiting for READY).
    pub fn restart(&mut self) {
        if let Some(mut n) = self.node.take() {
            n.kill9();
        }
        self.node = Some(Node::start(&self.fx));
    }

    /// Runs the `ground` binary against the world's link.
    #[must_use]
    pub fn ground(&self, args: &[&str]) -> (bool, String) {
        let baud = self.baud.to_string();
        let mut all = vec!["--baud", baud.as_str()];
        all.extend_from_slice(args);
        let out = self.fx.ground(self.emu.ground_path(), &all);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// The TOML of a policy with the world's administrators (2 of 3) and
/// approver (1 of 1).
#[must_use]
pub fn policy_toml(
    version: u64,
    activation_delay_s: u64,
    admins: &[(PathBuf, Keypair)],
    approver: &Keypair,
    rules: &str,
) -> String {
    let keys: Vec<String> = admins
        .iter()
        .map(|(_, k)| format!("\"{}\"", k.x_only_public_key().0))
        .collect();
    format!(
        "version = {version}\nnetwork = \"regtest\"\nactivation_delay_s = {activation_delay_s}\n\
         veto_threshold = 1\ncheckpoint = \"genesis\"\n[admins]\nthreshold = 2\nkeys = [{}]\n\
         [approvers]\nthreshold = 1\nkeys = [\"{}\"]\n\
         [clock]\nmax_forward_jump_s = 2592000\nmax_behind_chain_s = 86400\n[rules]\n{rules}",
        keys.join(", "),
        approver.x_only_public_key().0,
    )
}

/// `doc` signed by `signers` (key, index).
#[must_use]
pub fn sign_policy(doc: &PolicyDocument, signers: &[(&Keypair, u8)]) -> SignedPolicy {
    let mut signed = SignedPolicy {
        document: doc.encode(),
        signatures: Vec::new(),
    };
    for (k, i) in signers {
        spacenode_ground::policyfile::sign(&mut signed, k, *i);
    }
    signed
}

/// A policy that waits long enough for an evaluation (debug build under
/// CI load) before repeating a request.
#[must_use]
pub fn patient_eval(baud: u32) -> RetryPolicy {
    cosign::evaluation_policy(RetryPolicy {
        attempts: 20,
        ..RetryPolicy::for_link(baud, Duration::ZERO, 20)
    })
}

trait CheckedAddress {
    fn from_str_checked(s: &str) -> Address;
}

impl CheckedAddress for Address {
    fn from_str_checked(s: &str) -> Address {
        use std::str::FromStr;
        Address::from_str(s)
            .expect("address")
            .require_network(Network::Regtest)
            .expect("regtest address")
    }
}
