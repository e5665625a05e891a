//! Registered multisig wallets: output descriptors (BIP380-386, BIP389
//! multipath) parsed and derived with the `miniscript` crate.
//!
//! Owns: [`Wallet`] (a registered descriptor, its id, its receive/change
//! branches and where the node's key sits in it), the registration body
//! carried by an administrator command of kind `REGISTER_WALLET`, and
//! [`AllowMatcher`] (the policy's descriptor allowlist entries).
//!
//! Accepted: `wsh(...)` (e.g. `sortedmulti`, `multi`, or a miniscript with a
//! timelocked recovery branch like `or_d(multi(2,A,B,N),and_v(v:pk(R),older(N)))`)
//! and `tr(K,{...})` with `multi_a` / `sortedmulti_a` leaves (K typically the
//! BIP341 NUMS point). Every extended key ends in `/<0;1>/*` (receive;
//! change); the node's key appears exactly once, with its fingerprint and
//! origin path, and its xpub equals what the node's signer derives at that
//! path; in `tr` it must not be the internal key (a key-path spend would
//! bypass the multisig).
//!
//! Wallet id: BIP340 tagged hash `"spacenode/wallet/v1"` of the canonical
//! descriptor string (miniscript's rendering with checksum; a registration
//! in any other spelling is refused, so one wallet has one id).
//!
//! Must never: accept a descriptor without the node's key, trust a
//! derivation path from a PSBT without re-deriving the script.

use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpub};
use bitcoin::secp256k1::{Secp256k1, Verification};
use bitcoin::{NetworkKind, PublicKey, ScriptBuf};
use miniscript::descriptor::{DefiniteDescriptorKey, DescriptorPublicKey, Wildcard};
use miniscript::{Descriptor, ForEachKey};
use spacenode_policy::cbor::{self, Fields, Value};
use spacenode_policy::document::{AllowTarget, BtcRules};
use spacenode_policy::quorum::tagged_hash;

use crate::signer::BtcSigner;

/// Tag of wallet ids.
pub const WALLET_TAG: &str = "spacenode/wallet/v1";
/// Highest address index the node derives for inputs and change (a gap
/// far beyond any wallet's scan range would hide change from recovery
/// tools).
pub const MAX_INDEX: u32 = 1_000_000;
/// Longest descriptor accepted.
pub const MAX_DESCRIPTOR_LEN: usize = 3_500;

/// Registration errors. Codes 0x0640..=0x065F.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// Registration body does not decode.
    #[error("registration body malformed: {0}")]
    Malformed(String),
    /// Descriptor does not parse.
    #[error("descriptor does not parse: {0}")]
    Parse(String),
    /// Descriptor not in canonical form.
    #[error("descriptor not canonical; register {canonical}")]
    NonCanonical {
        /// The canonical spelling.
        canonical: String,
    },
    /// Not wsh or tr, or insane.
    #[error("unsupported descriptor: {0}")]
    Unsupported(String),
    /// Keys not all `/<0;1>/*`.
    #[error("every extended key must end in /<0;1>/*: {0}")]
    NotMultipath(String),
    /// The node's key is not in the descriptor.
    #[error("the node's key (fingerprint {0}) is not in the descriptor")]
    NodeKeyMissing(String),
    /// The xpub under the node's fingerprint is not the node's.
    #[error("the xpub at {path} is not the node's")]
    NodeKeyMismatch {
        /// Origin path.
        path: String,
    },
    /// The node's key appears more than once, or as the taproot internal key.
    #[error("node key misplaced: {0}")]
    NodeKeyMisplaced(String),
    /// Extended keys for another network.
    #[error("extended keys are for another network")]
    WrongNetwork,
    /// Derivation failed.
    #[error("derivation failed: {0}")]
    Derivation(String),
}

impl WalletError {
    /// Stable code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Self::Malformed(_) => 0x0640,
            Self::Parse(_) => 0x0641,
            Self::NonCanonical { .. } => 0x0642,
            Self::Unsupported(_) => 0x0643,
            Self::NotMultipath(_) => 0x0644,
            Self::NodeKeyMissing(_) => 0x0645,
            Self::NodeKeyMismatch { .. } => 0x0646,
            Self::NodeKeyMisplaced(_) => 0x0647,
            Self::WrongNetwork => 0x0648,
            Self::Derivation(_) => 0x0649,
        }
    }
}

/// Script type of a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletKind {
    /// P2WSH (segwit v0): ECDSA, amounts proven by the previous transaction.
    Wsh,
    /// P2TR (segwit v1): BIP340 script-path signatures.
    Tr,
}

/// A registered wallet.
#[derive(Debug, Clone)]
pub struct Wallet {
    /// Stable id.
    pub id: [u8; 32],
    /// Operator label.
    pub name: String,
    /// Canonical descriptor (with checksum).
    pub descriptor: String,
    /// Script type.
    pub kind: WalletKind,
    /// Node master fingerprint.
    pub node_fingerprint: Fingerprint,
    /// Path from the node's master key to its xpub in the descriptor.
    pub node_origin: DerivationPath,
    /// The node's xpub at `node_origin` (checked equal to the signer's).
    pub node_xpub: Xpub,
    /// Receive (0) and change (1) branches.
    branches: [Descriptor<DescriptorPublicKey>; 2],
}

/// The canonical spelling of a descriptor (what must be registered).
///
/// # Errors
/// [`WalletError::Parse`].
pub fn canonical_descriptor(s: &str) -> Result<String, WalletError> {
    let d = Descriptor::<DescriptorPublicKey>::from_str(s)
        .map_err(|e| WalletError::Parse(e.to_string()))?;
    Ok(d.to_string())
}

/// The registration body administrators sign in a `REGISTER_WALLET`
/// command: `CBOR { 0: format (1), 1: name text, 2: canonical descriptor text }`.
#[must_use]
pub fn registration_body(name: &str, descriptor: &str) -> Vec<u8> {
    cbor::encode(&Value::Map(vec![
        (0, Value::Uint(1)),
        (1, Value::Text(name.into())),
        (2, Value::Text(descriptor.into())),
    ]))
}

/// Wallet id of a canonical descriptor.
#[must_use]
pub fn wallet_id(canonical: &str) -> [u8; 32] {
    tagged_hash(WALLET_TAG, canonical.as_bytes())
}

impl Wallet {
    /// Node side: checks a registration body (see module docs) against the
    /// node's signer. The node persists the body bytes (table
    /// `wallets(id PRIMARY KEY, body, registered_at_ms, command_seq)`) and
    /// re-runs this on every start.
    ///
    /// # Errors
    /// [`WalletError`].
    pub fn from_registration<S: BtcSigner>(
        body: &[u8],
        signer: &S,
        network: NetworkKind,
    ) -> Result<Self, WalletError> {
        let m = |e: cbor::CborError| WalletError::Malformed(e.to_string());
        let mut f = Fields::new("registration", cbor::decode(body).map_err(m)?).map_err(m)?;
        if f.uint(0, "format").map_err(m)? != 1 {
            return Err(WalletError::Malformed("unknown format".into()));
        }
        let name = f.text(1, "name").map_err(m)?;
        let descriptor = f.text(2, "descriptor").map_err(m)?;
        f.finish().map_err(m)?;
        if name.len() > 64 {
            return Err(WalletError::Malformed("name longer than 64 bytes".into()));
        }
        Self::new(&name, &descriptor, signer, network)
    }

    /// Node side: checks a descriptor (see module docs), including that the
    /// xpub under the node's fingerprint is the signer's.
    ///
    /// # Errors
    /// [`WalletError`].
    pub fn new<S: BtcSigner>(
        name: &str,
        descriptor: &str,
        signer: &S,
        network: NetworkKind,
    ) -> Result<Self, WalletError> {
        let w = Self::parse(name, descriptor, signer.master_fingerprint(), network)?;
        let ours = signer
            .xpub(&w.node_origin)
            .map_err(|e| WalletError::Derivation(e.to_string()))?;
        if ours.public_key != w.node_xpub.public_key || ours.chain_code != w.node_xpub.chain_code {
            return Err(WalletError::NodeKeyMismatch {
                path: w.node_origin.to_string(),
            });
        }
        Ok(w)
    }

    /// Ground side (no node signer at hand): every check of [`Wallet::new`]
    /// except comparing the node's xpub with the node's signer; the node's
    /// key is found by its master fingerprint `node_fp`.
    ///
    /// # Errors
    /// [`WalletError`].
    pub fn parse(
        name: &str,
        descriptor: &str,
        node_fp: Fingerprint,
        network: NetworkKind,
    ) -> Result<Self, WalletError> {
        if descriptor.len() > MAX_DESCRIPTOR_LEN {
            return Err(WalletError::Unsupported("descriptor too long".into()));
        }
        let d = Descriptor::<DescriptorPublicKey>::from_str(descriptor)
            .map_err(|e| WalletError::Parse(e.to_string()))?;
        let canonical = d.to_string();
        if canonical != descriptor {
            return Err(WalletError::NonCanonical { canonical });
        }
        let kind = match &d {
            Descriptor::Wsh(_) => WalletKind::Wsh,
            Descriptor::Tr(_) => WalletKind::Tr,
            _ => {
                return Err(WalletError::Unsupported(
                    "only wsh(...) and tr(...) wallets".into(),
                ));
            }
        };
        d.sanity_check()
            .map_err(|e| WalletError::Unsupported(e.to_string()))?;
        let mut node_keys = Vec::new();
        let mut problem: Option<WalletError> = None;
        d.for_each_key(|k| {
            match k {
                DescriptorPublicKey::MultiXPub(x) => {
                    let paths = x.derivation_paths.paths();
                    let ok = paths.len() == 2
                        && paths.first().map(|p| p.as_ref())
                            == Some(&[ChildNumber::Normal { index: 0 }][..])
                        && paths.get(1).map(|p| p.as_ref())
                            == Some(&[ChildNumber::Normal { index: 1 }][..])
                        && x.wildcard == Wildcard::Unhardened;
                    if !ok {
                        problem = Some(WalletError::NotMultipath(k.to_string()));
                    }
                    if x.xkey.network != network {
                        problem = Some(WalletError::WrongNetwork);
                    }
                    if let Some((fp, path)) = &x.origin
                        && *fp == node_fp
                    {
                        node_keys.push((path.clone(), x.xkey));
                    }
                }
                DescriptorPublicKey::XPub(_) => {
                    problem = Some(WalletError::NotMultipath(k.to_string()));
                }
                DescriptorPublicKey::Single(_) => {}
            }
            true
        });
        if let Some(p) = problem {
            return Err(p);
        }
        let (node_origin, node_xpub) = match node_keys.as_slice() {
            [] => return Err(WalletError::NodeKeyMissing(node_fp.to_string())),
            [one] => one.clone(),
            _ => {
                return Err(WalletError::NodeKeyMisplaced(
                    "the node's key appears more than once".into(),
                ));
            }
        };
        if let Descriptor::Tr(tr) = &d
            && let DescriptorPublicKey::MultiXPub(x) = tr.internal_key()
            && x.origin.as_ref().is_some_and(|(fp, _)| *fp == node_fp)
        {
            return Err(WalletError::NodeKeyMisplaced(
                "the node's key is the taproot internal key".into(),
            ));
        }
        let singles = d
            .clone()
            .into_single_descriptors()
            .map_err(|e| WalletError::NotMultipath(e.to_string()))?;
        let branches: [Descriptor<DescriptorPublicKey>; 2] = singles
            .try_into()
            .map_err(|_| WalletError::NotMultipath("exactly two branches required".into()))?;
        Ok(Self {
            id: wallet_id(&canonical),
            name: name.into(),
            descriptor: canonical,
            kind,
            node_fingerprint: node_fp,
            node_origin,
            node_xpub,
            branches,
        })
    }

    /// The definite (index-fixed, still origin-annotated) descriptor at
    /// `branch/index`, for PSBT updaters.
    ///
    /// # Errors
    /// [`WalletError::Derivation`].
    pub fn definite(
        &self,
        branch: u32,
        index: u32,
    ) -> Result<Descriptor<DefiniteDescriptorKey>, WalletError> {
        if index > MAX_INDEX {
            return Err(WalletError::Derivation(format!(
                "index {index} above {MAX_INDEX}"
            )));
        }
        self.branches
            .get(usize::try_from(branch).unwrap_or(usize::MAX))
            .ok_or_else(|| WalletError::Derivation(format!("branch {branch}")))?
            .at_derivation_index(index)
            .map_err(|e| WalletError::Derivation(e.to_string()))
    }

    /// If `(fingerprint, path)` names the node's key of this wallet at
    /// `branch/index`, returns `(branch, index)`.
    #[must_use]
    pub fn match_path(
        &self,
        fingerprint: Fingerprint,
        path: &DerivationPath,
    ) -> Option<(u32, u32)> {
        if fingerprint != self.node_fingerprint {
            return None;
        }
        let o = self.node_origin.as_ref();
        let p = path.as_ref();
        if p.len() != o.len().checked_add(2)? || !p.starts_with(o) {
            return None;
        }
        match (p.get(o.len())?, p.get(o.len().checked_add(1)?)?) {
            (ChildNumber::Normal { index: b }, ChildNumber::Normal { index: i })
                if *b <= 1 && *i <= MAX_INDEX =>
            {
                Some((*b, *i))
            }
            _ => None,
        }
    }

    /// The node's full derivation path at `branch/index`.
    #[must_use]
    pub fn node_path(&self, branch: u32, index: u32) -> DerivationPath {
        self.node_origin.extend([
            ChildNumber::Normal { index: branch },
            ChildNumber::Normal { index },
        ])
    }

    /// The node's public key at `branch/index`, derived publicly from the
    /// registered xpub (independent of the signer it checks).
    ///
    /// # Errors
    /// [`WalletError::Derivation`].
    pub fn node_pubkey<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        branch: u32,
        index: u32,
    ) -> Result<PublicKey, WalletError> {
        let x = self
            .node_xpub
            .derive_pub(
                secp,
                &[
                    ChildNumber::Normal { index: branch },
                    ChildNumber::Normal { index },
                ],
            )
            .map_err(|e| WalletError::Derivation(e.to_string()))?;
        Ok(PublicKey::new(x.public_key))
    }

    /// The concrete descriptor at `branch/index`.
    ///
    /// # Errors
    /// [`WalletError::Derivation`].
    pub fn derive<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        branch: u32,
        index: u32,
    ) -> Result<Descriptor<PublicKey>, WalletError> {
        if index > MAX_INDEX {
            return Err(WalletError::Derivation(format!(
                "index {index} above {MAX_INDEX}"
            )));
        }
        let b = self
            .branches
            .get(usize::try_from(branch).unwrap_or(usize::MAX))
            .ok_or_else(|| WalletError::Derivation(format!("branch {branch}")))?;
        Ok(b.at_derivation_index(index)
            .map_err(|e| WalletError::Derivation(e.to_string()))?
            .derived_descriptor(secp))
    }

    /// Address script at `branch/index`.
    ///
    /// # Errors
    /// [`WalletError::Derivation`].
    pub fn script_pubkey<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        branch: u32,
        index: u32,
    ) -> Result<ScriptBuf, WalletError> {
        Ok(self.derive(secp, branch, index)?.script_pubkey())
    }

    /// The receive/change branch descriptors (for ground tools and python
    /// interop).
    #[must_use]
    pub fn branches(&self) -> &[Descriptor<DescriptorPublicKey>; 2] {
        &self.branches
    }
}

/// Compiled destination allowlist.
#[derive(Debug, Clone, Default)]
pub struct AllowMatcher {
    entries: Vec<(String, Matcher)>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Script(ScriptBuf),
    Descriptors(Vec<Descriptor<DescriptorPublicKey>>),
}

impl AllowMatcher {
    /// Compiles the policy's allowlist.
    ///
    /// # Errors
    /// [`WalletError::Parse`] for a descriptor that does not parse.
    pub fn new(rules: &BtcRules) -> Result<Self, WalletError> {
        let entries = rules
            .allowlist
            .iter()
            .map(|e| {
                let m = match &e.target {
                    AllowTarget::Script(s) => Matcher::Script(s.clone()),
                    AllowTarget::Descriptor(d) => Matcher::Descriptors(
                        Descriptor::<DescriptorPublicKey>::from_str(d)
                            .and_then(Descriptor::into_single_descriptors)
                            .map_err(|x| {
                                WalletError::Parse(format!("allowlist {:?}: {x}", e.label))
                            })?,
                    ),
                };
                Ok((e.label.clone(), m))
            })
            .collect::<Result<_, WalletError>>()?;
        Ok(Self { entries })
    }

    /// The label of the entry allowing `spk`, using the output's derivation
    /// hints `(fingerprint, path)` to find the index of ranged descriptors
    /// (the derived script is compared, the hint is never trusted).
    #[must_use]
    pub fn matches<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        spk: &ScriptBuf,
        hints: &[(Fingerprint, DerivationPath)],
    ) -> Option<&str> {
        self.entries.iter().find_map(|(label, m)| {
            let hit = match m {
                Matcher::Script(s) => s == spk,
                Matcher::Descriptors(ds) => {
                    ds.iter().any(|d| descriptor_matches(secp, d, spk, hints))
                }
            };
            hit.then_some(label.as_str())
        })
    }
}

fn descriptor_matches<C: Verification>(
    secp: &Secp256k1<C>,
    d: &Descriptor<DescriptorPublicKey>,
    spk: &ScriptBuf,
    hints: &[(Fingerprint, DerivationPath)],
) -> bool {
    if !d.has_wildcard() {
        return d
            .at_derivation_index(0)
            .is_ok_and(|x| x.derived_descriptor(secp).script_pubkey() == *spk);
    }
    let mut candidates: Vec<u32> = Vec::new();
    d.for_each_key(|k| {
        if let Some(prefix) = k.full_derivation_path() {
            let fp = k.master_fingerprint();
            for (hfp, hpath) in hints {
                let h = hpath.as_ref();
                if *hfp == fp
                    && h.len() == prefix.len().saturating_add(1)
                    && h.starts_with(prefix.as_ref())
                    && let Some(ChildNumber::Normal { index }) = h.last()
                    && *index <= MAX_INDEX
                    && !candidates.contains(index)
                {
                    candidates.push(*index);
                }
            }
        }
        true
    });
    candidates.into_iter().any(|i| {
        d.at_derivation_index(i)
            .is_ok_and(|x| x.derived_descriptor(secp).script_pubkey() == *spk)
    })
}

/// Checks that every descriptor in the policy's allowlist parses (the
/// ground runs it before signing a policy, the node before accepting one).
///
/// # Errors
/// [`WalletError::Parse`].
pub fn check_allow_descriptors(rules: &BtcRules) -> Result<(), WalletError> {
    AllowMatcher::new(rules).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::SoftSigner;
    use proptest::prelude::*;

    fn node() -> SoftSigner {
        SoftSigner::from_seed(&[1; 32], NetworkKind::Test).unwrap()
    }

    fn wallet() -> Wallet {
        let n = node();
        let g1 = SoftSigner::from_seed(&[2; 32], NetworkKind::Test).unwrap();
        let g2 = SoftSigner::from_seed(&[3; 32], NetworkKind::Test).unwrap();
        let d =
            crate::demo::descriptor(crate::demo::DemoWallet::WshSortedMulti, &n, &g1, &g2).unwrap();
        Wallet::new("w", &d, &n, NetworkKind::Test).unwrap()
    }

    #[test]
    fn paths_match_only_under_the_node_origin() {
        let w = wallet();
        let fp = w.node_fingerprint;
        let p = |s: &str| DerivationPath::from_str(s).unwrap();
        assert_eq!(w.match_path(fp, &p("m/48'/1'/0'/2'/1/7")), Some((1, 7)));
        assert_eq!(w.match_path(fp, &p("m/48'/1'/0'/2'/2/7")), None);
        assert_eq!(w.match_path(fp, &p("m/48'/1'/0'/2'/0/7'")), None);
        assert_eq!(w.match_path(fp, &p("m/48'/1'/0'/2'/0")), None);
        assert_eq!(w.match_path(fp, &p("m/48'/1'/1'/2'/0/7")), None);
        assert_eq!(
            w.match_path(Fingerprint::default(), &p("m/48'/1'/0'/2'/0/7")),
            None
        );
        assert!(w.derive(&Secp256k1::new(), 0, MAX_INDEX + 1).is_err());
        assert_eq!(
            w.node_pubkey(&Secp256k1::new(), 0, 3).unwrap().inner,
            node().xpub(&w.node_path(0, 3)).unwrap().public_key
        );
    }

    #[test]
    fn tr_with_the_node_as_internal_key_is_refused() {
        let n = node();
        let g1 = SoftSigner::from_seed(&[2; 32], NetworkKind::Test).unwrap();
        let k = |s: &SoftSigner| crate::demo::key_expr(s, 3).unwrap();
        let d = canonical_descriptor(&format!("tr({},multi_a(1,{}))", k(&n), k(&g1))).unwrap();
        assert!(matches!(
            Wallet::new("w", &d, &n, NetworkKind::Test),
            Err(WalletError::NodeKeyMisplaced(_))
        ));
        let d = canonical_descriptor(&format!("wpkh({})", k(&n))).unwrap();
        assert!(matches!(
            Wallet::new("w", &d, &n, NetworkKind::Test),
            Err(WalletError::Unsupported(_))
        ));
    }

    proptest! {
        #[test]
        fn registration_decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Wallet::from_registration(&b, &node(), NetworkKind::Test);
        }
    }
}
