//! The ground side of Ethereum and Safe co-signing: builds and approves
//! Ethereum sign requests (body format 2), sends them (`sign.request`, or
//! `sign.admin-request` with a `SAFE_ADMIN_TX` command), collects the
//! node's `sign.eth-result`, registers Safes (`policy.register-safe`), and
//! renders what is being approved in words an operator can check before
//! anything is sent: destination, value in ETH, chain, nonce, gas and fees,
//! decoded ERC-20 `transfer`/`transferFrom`/`approve`, Safe functions,
//! MultiSend batches call by call, the Safe operation and refund
//! parameters.
//!
//! Decisions are the node's. The ground checks what comes back: the
//! signed transaction decodes to the transaction it asked for and recovers
//! to the node's address; a Safe owner signature recovers over the SafeTx
//! hash. It must never treat a lost reply as a refusal (the node answers a
//! repeat from its stored result).

use alloy_primitives::{Address, B256, Signature, TxKind, U256};
use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{Keypair, Message, Secp256k1};
use spacenode_eth::abi::{Erc20Call, Operation, decode_erc20, decode_multisend, safe_function};
use spacenode_eth::engine::EthResult;
use spacenode_eth::safe::{SafeTx, SafeVersion, safe_tx_hash};
use spacenode_eth::signer::address_of;
use spacenode_eth::tx::{UnsignedTx, decode_signed};
use spacenode_policy::quorum::Signature as Approval;
use spacenode_policy::request::{EthKind, EthSignRequest, SignedRequest, request_hash};
use spacenode_wire::cosign::{AdminSignRequest, EthSignResult, Payload};
use spacenode_wire::services::{apid, service, subtype};

use super::client::{Link, RetryPolicy};
use super::cosign::{
    Answer, Audited, CosignError, Refused, audit_of, fragments, refused, replies_in_order,
    send_payload,
};
use super::files::UploadEvent;

/// One ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;
/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;

/// Builds an Ethereum request body valid from `skew_s` before `now_ms`
/// for `valid_for_s`.
#[allow(clippy::too_many_arguments, reason = "the fields of a request")]
#[must_use]
pub fn build_request(
    request_id: [u8; 32],
    node_id: [u8; 8],
    kind: EthKind,
    account: u32,
    transaction: Vec<u8>,
    safe_tx: Vec<u8>,
    now_ms: u64,
    valid_for_s: u64,
) -> EthSignRequest {
    EthSignRequest {
        request_id,
        target: node_id,
        not_before_ms: now_ms.saturating_sub(600_000),
        not_after_ms: now_ms.saturating_add(valid_for_s.saturating_mul(1000)),
        kind,
        account,
        transaction,
        safe_tx,
    }
}

/// The envelope with the approvals of `approvers` (key, index in the
/// policy's approver set) over the request hash.
#[must_use]
pub fn approve(body: &EthSignRequest, approvers: &[(Keypair, u8)]) -> SignedRequest {
    let secp = Secp256k1::new();
    let bytes = body.encode();
    let m = Message::from_digest(request_hash(&bytes));
    let mut approvals: Vec<Approval> = approvers
        .iter()
        .map(|(k, i)| Approval {
            signer: *i,
            sig: secp.sign_schnorr_no_aux_rand(&m, k).serialize(),
        })
        .collect();
    approvals.sort_by_key(|s| s.signer);
    SignedRequest {
        body: bytes,
        approvals,
    }
}

/// What the node decided on an Ethereum request.
#[derive(Debug, Clone)]
pub struct EthOutcome {
    /// The signed transaction or Safe signature (approved, or a replay of
    /// an approval).
    pub result: Option<EthResult>,
    /// The refusal.
    pub refused: Option<Refused>,
    /// The decision's audit entry and receipt.
    pub audit: Option<Audited>,
    /// TCs it took.
    pub exchanges: u32,
    /// Whether the request travelled as an upload.
    pub uploaded: bool,
}

/// Sends a signed Ethereum request (with a signed `SAFE_ADMIN_TX`
/// command when `command` is given) and collects the answer.
///
/// # Errors
/// [`CosignError`].
pub fn sign(
    link: &mut Link,
    policy: RetryPolicy,
    request: &[u8],
    command: Option<&[u8]>,
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<EthOutcome, CosignError> {
    let (sub, content) = match command {
        None => (subtype::SIGN_REQUEST, request.to_vec()),
        Some(c) => (
            subtype::SIGN_ADMIN_REQUEST,
            AdminSignRequest {
                command: c.to_vec(),
                request: request.to_vec(),
            }
            .encode(),
        ),
    };
    let id = super::cosign::request_id_of(request);
    let payload = send_payload(link, policy, &content, on_event)?;
    let uploaded = matches!(payload, Payload::Upload(_));
    for exchange in 1..=5u32 {
        let tc = link.new_tc(apid::SIGN, service::SIGN, sub, payload.encode());
        let (x, failure) = link.request_keeping_replies(&tc, policy)?;
        let audit = audit_of(&x.replies, id)?;
        if let Some((stage, f)) = failure {
            return Ok(EthOutcome {
                result: None,
                refused: Some(refused(stage, &f)),
                audit,
                exchanges: exchange,
                uploaded,
            });
        }
        // Only this request's answer: a late reply to an earlier request
        // that timed out carries another request id.
        let mut mine = None;
        for bytes in replies_in_order(&fragments(&x.replies, subtype::SIGN_ETH_RESULT)) {
            let r = EthSignResult::decode(&bytes)
                .map_err(|e| CosignError::Reply(format!("eth result: {e}")))?;
            if id.is_none_or(|id| r.request_id == id) {
                mine = Some(
                    EthResult::decode(&r.result)
                        .map_err(|e| CosignError::Reply(format!("eth result: {e}")))?,
                );
            }
        }
        if let Some(result) = mine {
            return Ok(EthOutcome {
                result: Some(result),
                refused: None,
                audit,
                exchanges: exchange,
                uploaded,
            });
        }
    }
    Err(CosignError::Reply(
        "the node approved but its signature was lost five times; run the same request again"
            .into(),
    ))
}

/// Sends a signed `REGISTER_SAFE` command (`policy.register-safe`).
///
/// # Errors
/// [`CosignError`].
pub fn register_safe(
    link: &mut Link,
    policy: RetryPolicy,
    command: &[u8],
    on_event: &mut dyn FnMut(UploadEvent),
) -> Result<Answer<()>, CosignError> {
    let payload = send_payload(link, policy, command, on_event)?;
    let tc = link.new_tc(
        apid::POLICY,
        service::POLICY,
        subtype::POLICY_REGISTER_SAFE,
        payload.encode(),
    );
    let (_, failure) = link.request_keeping_replies(&tc, policy)?;
    Ok(match failure {
        Some((stage, f)) => Answer::Refused(refused(stage, &f)),
        None => Answer::Ok(()),
    })
}

/// The node's address of account `i` (`m/44'/60'/0'/0/i`), derived on the
/// ground from the node's xpub at `m/44'/60'/0'/0`.
///
/// # Errors
/// [`CosignError`].
pub fn node_address(
    link: &mut Link,
    policy: RetryPolicy,
    account: u32,
) -> Result<Address, CosignError> {
    let (_, xpub) = super::cosign::fetch_xpub(link, policy, "m/44'/60'/0'/0")?;
    address_from_xpub(&xpub, account)
}

/// Account `i` under an xpub at `m/44'/60'/0'/0`.
///
/// # Errors
/// [`CosignError::Reply`] for an index that cannot be derived.
pub fn address_from_xpub(xpub: &Xpub, account: u32) -> Result<Address, CosignError> {
    let child = ChildNumber::from_normal_idx(account)
        .map_err(|e| CosignError::Reply(format!("account {account}: {e}")))?;
    let k = xpub
        .ckd_pub(&Secp256k1::verification_only(), child)
        .map_err(|e| CosignError::Reply(format!("account {account}: {e}")))?;
    Ok(address_of(&k.public_key))
}

// ------------------------------------------------------------ rendering

/// `value` wei as exact decimal ether, e.g. `1.5 ETH`, `0.000000000000000001 ETH`.
#[must_use]
pub fn format_ether(value: U256) -> String {
    format_units(value, 18, "ETH")
}

/// `value` wei as gwei (fees).
#[must_use]
pub fn format_gwei(value: u128) -> String {
    format_units(U256::from(value), 9, "gwei")
}

/// `value` in base units with `decimals` as an exact decimal with `unit`.
#[must_use]
pub fn format_units(value: U256, decimals: u8, unit: &str) -> String {
    let base = U256::from(10u8).pow(U256::from(decimals));
    let (whole, frac) = value.div_rem(base);
    if frac.is_zero() {
        return format!("{whole} {unit}");
    }
    let mut f = format!("{frac:0>width$}", width = usize::from(decimals));
    while f.ends_with('0') {
        f.pop();
    }
    format!("{whole}.{f} {unit}")
}

fn chain_name(chain_id: u64) -> String {
    let name = match chain_id {
        1 => "Ethereum mainnet",
        10 => "OP mainnet",
        100 => "Gnosis",
        137 => "Polygon",
        8453 => "Base",
        42161 => "Arbitrum One",
        17_000 => "Holesky",
        560_048 => "Hoodi",
        11_155_111 => "Sepolia",
        _ => return chain_id.to_string(),
    };
    format!("{chain_id} ({name})")
}

/// Describes calldata sent to `to` (indent: the prefix of each line).
fn describe_calldata(to: Address, data: &[u8], indent: &str, out: &mut String) {
    if data.is_empty() {
        out.push_str(&format!("{indent}data           none (plain transfer)\n"));
        return;
    }
    match decode_erc20(data) {
        Ok(Some(Erc20Call::Transfer { to: r, amount })) => {
            out.push_str(&format!(
                "{indent}ERC-20         transfer of {amount} base units of token {to} to {r}\n"
            ));
            return;
        }
        Ok(Some(Erc20Call::TransferFrom {
            from,
            to: r,
            amount,
        })) => {
            out.push_str(&format!(
                "{indent}ERC-20         transferFrom {from} to {r}: {amount} base units of token {to}\n"
            ));
            return;
        }
        Ok(Some(Erc20Call::Approve { spender, amount })) => {
            let amount = if amount == U256::MAX {
                "UNLIMITED (type(uint256).max)".to_string()
            } else {
                format!("{amount} base units")
            };
            out.push_str(&format!(
                "{indent}ERC-20         approve spender {spender} for {amount} of token {to}\n"
            ));
            return;
        }
        Ok(None) => {}
        Err(e) => {
            out.push_str(&format!(
                "{indent}calldata       MALFORMED ERC-20 call: {e}\n"
            ));
            return;
        }
    }
    if let Ok(calls) = decode_multisend(data) {
        out.push_str(&format!(
            "{indent}MultiSend      batch of {} call(s):\n",
            calls.len()
        ));
        for (i, c) in calls.iter().enumerate() {
            let op = match c.operation {
                Operation::Call => "CALL",
                Operation::DelegateCall => "DELEGATECALL",
            };
            let dest = if c.to == Address::ZERO {
                "the Safe itself (zero address)".to_string()
            } else {
                c.to.to_string()
            };
            out.push_str(&format!(
                "{indent}  #{i} {op} to {dest}, value {}\n",
                format_ether(c.value)
            ));
            describe_calldata(c.to, &c.data, &format!("{indent}     "), out);
        }
        return;
    }
    let sel = spacenode_eth::abi::selector_of(data);
    let name = sel
        .and_then(safe_function)
        .map(|n| format!(" = Safe {n}()"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{indent}calldata       {} bytes, selector 0x{}{name}\n",
        data.len(),
        sel.map(hex::encode).unwrap_or_else(|| "(short)".into())
    ));
}

/// A readable account of an unsigned transaction (signing payload bytes).
///
/// # Errors
/// The decoder's refusal, as the node would give it.
pub fn describe_transaction(bytes: &[u8]) -> Result<String, spacenode_eth::EthError> {
    let tx = UnsignedTx::decode(bytes)?;
    let mut out = String::new();
    let kind = if tx.tx_type() == 2 {
        "EIP-1559 (type 2)"
    } else {
        "legacy (EIP-155)"
    };
    out.push_str(&format!("transaction    {kind}\n"));
    out.push_str(&format!("chain          {}\n", chain_name(tx.chain_id())));
    out.push_str(&format!("nonce          {}\n", tx.nonce()));
    let to = match tx.to() {
        TxKind::Call(a) => {
            out.push_str(&format!("to             {a}\n"));
            a
        }
        TxKind::Create => {
            out.push_str("to             CONTRACT CREATION (the policy refuses it)\n");
            Address::ZERO
        }
    };
    out.push_str(&format!("value          {}\n", format_ether(tx.value())));
    out.push_str(&format!("gas limit      {}\n", tx.gas_limit()));
    match tx.max_priority_fee_per_gas() {
        Some(p) => out.push_str(&format!(
            "max fee        {} per gas, priority {} per gas\n",
            format_gwei(tx.max_fee_per_gas()),
            format_gwei(p)
        )),
        None => out.push_str(&format!(
            "gas price      {}\n",
            format_gwei(tx.max_fee_per_gas())
        )),
    }
    let max_fee = U256::from(tx.max_fee_per_gas()).saturating_mul(U256::from(tx.gas_limit()));
    out.push_str(&format!(
        "at most        {} in fees, {} in all\n",
        format_ether(max_fee),
        format_ether(max_fee.saturating_add(tx.value()))
    ));
    describe_calldata(to, tx.input(), "", &mut out);
    Ok(out)
}

/// A readable account of a Safe transaction, with its SafeTx hash when
/// the Safe's version is known.
#[must_use]
pub fn describe_safe_tx(tx: &SafeTx, version: Option<SafeVersion>) -> String {
    let mut out = String::new();
    out.push_str(&format!("Safe           {}\n", tx.safe));
    out.push_str(&format!("chain          {}\n", chain_name(tx.chain_id)));
    out.push_str(&format!("Safe nonce     {}\n", tx.nonce));
    let op = match tx.operation {
        Operation::Call => "CALL".to_string(),
        Operation::DelegateCall => {
            "DELEGATECALL (runs the target's code with the Safe's storage)".to_string()
        }
    };
    out.push_str(&format!("operation      {op}\n"));
    let to = if tx.to == tx.safe {
        format!(
            "{} (the Safe itself: needs the administrator quorum)",
            tx.to
        )
    } else {
        tx.to.to_string()
    };
    out.push_str(&format!("to             {to}\n"));
    out.push_str(&format!("value          {}\n", format_ether(tx.value)));
    describe_calldata(tx.to, &tx.data, "", &mut out);
    out.push_str(&format!("safeTxGas      {}\n", tx.safe_tx_gas));
    if tx.has_refund_parameters() {
        out.push_str(&format!(
            "refund         baseGas {}, gasPrice {} wei, gasToken {}, refundReceiver {}\n",
            tx.base_gas, tx.gas_price, tx.gas_token, tx.refund_receiver
        ));
    } else {
        out.push_str("refund         none\n");
    }
    if let Some(v) = version {
        out.push_str(&format!(
            "SafeTx hash    {} (Safe {})\n",
            safe_tx_hash(tx, v),
            v.as_str()
        ));
    }
    out
}

/// A readable account of the node's answer, after checking it: a signed
/// transaction decodes to the requested one and recovers to `expected`
/// (when given); a Safe signature recovers over the SafeTx hash.
///
/// # Errors
/// A description of the mismatch.
pub fn check_result(
    result: &EthResult,
    requested_tx: Option<&[u8]>,
    expected_signer: Option<Address>,
) -> Result<String, String> {
    let mut out = String::new();
    let sig = Signature::from_raw_array(&result.signature).map_err(|e| e.to_string())?;
    if !result.raw_tx.is_empty() {
        let (tx, s) = decode_signed(&result.raw_tx).map_err(|e| e.to_string())?;
        if let Some(req) = requested_tx
            && tx.encoded_for_signing() != req
        {
            return Err("the signed transaction differs from the requested one".into());
        }
        let from = s
            .recover_address_from_prehash(&tx.signature_hash())
            .map_err(|e| format!("signature does not recover: {e}"))?;
        if let Some(e) = expected_signer
            && e != from
        {
            return Err(format!("signed by {from}, not by the node's {e}"));
        }
        out.push_str(&format!(
            "signed by      {from}\ntx hash        {}\n",
            result.tx_hash.map(|h| h.to_string()).unwrap_or_default()
        ));
    }
    if let Some(h) = result.safe_tx_hash {
        if result.raw_tx.is_empty() {
            let owner = sig
                .recover_address_from_prehash(&h)
                .map_err(|e| format!("owner signature does not recover: {e}"))?;
            if let Some(e) = expected_signer
                && e != owner
            {
                return Err(format!("Safe signature by {owner}, not by the node's {e}"));
            }
            out.push_str(&format!("owner          {owner}\n"));
        }
        out.push_str(&format!("SafeTx hash    {h}\n"));
    }
    Ok(out)
}

/// Parses `0x…` hex (or bare hex) into bytes.
///
/// # Errors
/// A message.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    hex::decode(t.strip_prefix("0x").unwrap_or(t)).map_err(|e| format!("not hex: {e}"))
}

/// The SafeTx hash as the node computes it (for tests and the display).
#[must_use]
pub fn safe_hash(tx: &SafeTx, version: SafeVersion) -> B256 {
    safe_tx_hash(tx, version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use spacenode_eth::abi::{InnerCall, encode_erc20, encode_multisend};
    use spacenode_testkit::eth::{EthDemo, addr};

    #[test]
    fn amounts_render_exactly() {
        assert_eq!(format_ether(U256::from(ETHER)), "1 ETH");
        assert_eq!(format_ether(U256::from(ETHER / 2 * 3)), "1.5 ETH");
        assert_eq!(format_ether(U256::from(1u8)), "0.000000000000000001 ETH");
        assert_eq!(format_gwei(30 * GWEI), "30 gwei");
        assert_eq!(format_gwei(1_500_000_000), "1.5 gwei");
    }

    #[test]
    fn transactions_and_safe_txs_are_described() {
        let d = EthDemo::new().unwrap();
        let data = encode_erc20(&Erc20Call::Approve {
            spender: addr::ROUTER,
            amount: U256::MAX,
        });
        let tx = d.eip1559(addr::USDC, 0, data, 7);
        let text = describe_transaction(
            &alloy_consensus::SignableTransaction::encoded_for_signing(&tx),
        )
        .unwrap();
        assert!(text.contains("EIP-1559"), "{text}");
        assert!(text.contains("11155111 (Sepolia)"), "{text}");
        assert!(text.contains("nonce          7"), "{text}");
        assert!(text.contains("approve spender"), "{text}");
        assert!(text.contains("UNLIMITED"), "{text}");
        assert!(text.contains("40 gwei per gas, priority 2 gwei"), "{text}");
        let legacy = d.legacy(addr::EXCHANGE, ETHER / 4, 1);
        let text = describe_transaction(
            &alloy_consensus::SignableTransaction::encoded_for_signing(&legacy),
        )
        .unwrap();
        assert!(text.contains("legacy"), "{text}");
        assert!(text.contains("0.25 ETH"), "{text}");
        assert!(describe_transaction(&[0xC0, 0x01]).is_err());
        let batch = encode_multisend(&[
            InnerCall {
                operation: Operation::Call,
                to: addr::VENDOR,
                value: U256::from(ETHER),
                data: Default::default(),
            },
            InnerCall {
                operation: Operation::Call,
                to: addr::USDC,
                value: U256::ZERO,
                data: encode_erc20(&Erc20Call::Transfer {
                    to: addr::VENDOR,
                    amount: U256::from(5u8),
                })
                .into(),
            },
        ]);
        let stx = d.safe_tx(
            0,
            addr::MULTISEND_CALL_ONLY,
            0,
            batch,
            Operation::DelegateCall,
            3,
        );
        let text = describe_safe_tx(&stx, Some(SafeVersion::parse("1.4.1").unwrap()));
        assert!(text.contains("DELEGATECALL"), "{text}");
        assert!(text.contains("batch of 2 call(s)"), "{text}");
        assert!(text.contains("#0 CALL to"), "{text}");
        assert!(text.contains("transfer of 5 base units"), "{text}");
        assert!(text.contains("SafeTx hash"), "{text}");
    }
}
