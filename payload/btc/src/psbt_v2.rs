//! PSBT parsing: BIP174 (v0) through rust-bitcoin, BIP370 (v2) through a
//! strict hand-written converter to v0.
//!
//! Why hand-written: rust-bitcoin 0.32 refuses `PSBT_GLOBAL_VERSION != 0`
//! and has no v2 data model; wallets (bdk, embit, Core's `createpsbt
//! psbt_version=2`, hardware signers) do produce v2. A v2 PSBT carries the
//! same per-input/output data as v0 except that the unsigned transaction is
//! spread over per-field keys; we rebuild the unsigned transaction exactly as
//! BIP370 specifies (including the locktime choice), drop the v2-only keys,
//! and hand the rest to rust-bitcoin's v0 parser so both versions share one
//! validated data model. The signatures the node returns are per input and
//! key, so they apply to the ground's v2 PSBT unchanged (same sighash: the
//! rebuilt transaction is the one BIP370 says the v2 PSBT describes).
//!
//! Strictness: magic, minimal compact sizes, no duplicate keys, every v2
//! required field present with the right length, no v0-only field in a v2
//! PSBT (`PSBT_GLOBAL_UNSIGNED_TX`) and no v2-only field in a v0 PSBT,
//! counts matching the maps, no trailing bytes, bounded sizes.
//!
//! Must never: panic or allocate beyond the input on any bytes.

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use crate::error::BtcError;

const MAGIC: &[u8; 5] = b"psbt\xff";
/// Most inputs or outputs accepted in a PSBT.
pub const MAX_ITEMS: usize = 2_000;

/// Which BIP the PSBT followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsbtVersion {
    /// BIP174.
    V0,
    /// BIP370.
    V2,
}

mod key {
    pub const G_UNSIGNED_TX: u64 = 0x00;
    pub const G_TX_VERSION: u64 = 0x02;
    pub const G_FALLBACK_LOCKTIME: u64 = 0x03;
    pub const G_INPUT_COUNT: u64 = 0x04;
    pub const G_OUTPUT_COUNT: u64 = 0x05;
    pub const G_TX_MODIFIABLE: u64 = 0x06;
    pub const G_VERSION: u64 = 0xfb;
    pub const I_PREVIOUS_TXID: u64 = 0x0e;
    pub const I_OUTPUT_INDEX: u64 = 0x0f;
    pub const I_SEQUENCE: u64 = 0x10;
    pub const I_REQUIRED_TIME_LOCKTIME: u64 = 0x11;
    pub const I_REQUIRED_HEIGHT_LOCKTIME: u64 = 0x12;
    pub const O_AMOUNT: u64 = 0x03;
    pub const O_SCRIPT: u64 = 0x04;
}

fn v2err(s: impl Into<String>) -> BtcError {
    BtcError::PsbtV2(s.into())
}

/// One key-value pair, raw.
#[derive(Debug, Clone)]
struct Pair {
    key_type: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BtcError> {
        let (h, t) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| v2err("truncated"))?;
        self.0 = t;
        Ok(h)
    }

    fn compact(&mut self) -> Result<u64, BtcError> {
        let first = *self.take(1)?.first().ok_or_else(|| v2err("truncated"))?;
        let (v, min) = match first {
            0xfd => (u64::from(u16::from_le_bytes(arr(self.take(2)?)?)), 0xfd),
            0xfe => (u64::from(u32::from_le_bytes(arr(self.take(4)?)?)), 0x1_0000),
            0xff => (u64::from_le_bytes(arr(self.take(8)?)?), 0x1_0000_0000),
            b => return Ok(u64::from(b)),
        };
        if v < min {
            return Err(v2err("non-minimal compact size"));
        }
        Ok(v)
    }

    fn len(&mut self) -> Result<usize, BtcError> {
        let n = usize::try_from(self.compact()?).map_err(|_| v2err("length too large"))?;
        if n > self.0.len() {
            return Err(v2err("truncated"));
        }
        Ok(n)
    }

    /// A map up to its 0x00 separator.
    fn map(&mut self) -> Result<Vec<Pair>, BtcError> {
        let mut pairs: Vec<Pair> = Vec::new();
        loop {
            let klen = self.len()?;
            if klen == 0 {
                return Ok(pairs);
            }
            let key = self.take(klen)?.to_vec();
            let key_type = Reader(&key).compact()?;
            let vlen = self.len()?;
            let value = self.take(vlen)?.to_vec();
            if pairs.iter().any(|p| p.key == key) {
                return Err(v2err("duplicate key"));
            }
            pairs.push(Pair {
                key_type,
                key,
                value,
            });
        }
    }
}

fn arr<const N: usize>(s: &[u8]) -> Result<[u8; N], BtcError> {
    <[u8; N]>::try_from(s).map_err(|_| v2err("wrong field length"))
}

fn write_compact(out: &mut Vec<u8>, n: usize) {
    let n = n as u64;
    if n < 0xfd {
        out.push(n as u8);
    } else if let Ok(v) = u16::try_from(n) {
        out.push(0xfd);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(n) {
        out.push(0xfe);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.push(0xff);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn write_map<'a>(out: &mut Vec<u8>, pairs: impl Iterator<Item = &'a Pair>) {
    for p in pairs {
        write_compact(out, p.key.len());
        out.extend_from_slice(&p.key);
        write_compact(out, p.value.len());
        out.extend_from_slice(&p.value);
    }
    out.push(0);
}

/// A field of a v2 map: must have an empty key-data part and appear once.
fn field<'p>(pairs: &'p [Pair], t: u64, what: &str) -> Result<Option<&'p [u8]>, BtcError> {
    let mut it = pairs.iter().filter(|p| p.key_type == t);
    let found = it.next();
    if let Some(p) = found
        && p.key.len() != 1
    {
        return Err(v2err(format!("{what}: unexpected key data")));
    }
    Ok(found.map(|p| p.value.as_slice()))
}

fn u32_le(v: &[u8], what: &str) -> Result<u32, BtcError> {
    Ok(u32::from_le_bytes(
        <[u8; 4]>::try_from(v).map_err(|_| v2err(format!("{what}: not 4 bytes")))?,
    ))
}

fn global_version(pairs: &[Pair]) -> Result<u32, BtcError> {
    match field(pairs, key::G_VERSION, "version")? {
        None => Ok(0),
        Some(v) => u32_le(v, "version"),
    }
}

/// Parses a v0 or v2 PSBT into rust-bitcoin's (v0) data model.
///
/// # Errors
/// [`BtcError::PsbtMalformed`] / [`BtcError::PsbtV2`].
pub fn parse(bytes: &[u8]) -> Result<(Psbt, PsbtVersion), BtcError> {
    let mut r = Reader(bytes);
    if r.take(5).ok() != Some(&MAGIC[..]) {
        return Err(BtcError::PsbtMalformed("bad magic".into()));
    }
    let global = r
        .map()
        .map_err(|e| BtcError::PsbtMalformed(e.to_string()))?;
    let (psbt, version) = match global_version(&global)? {
        0 => (parse_v0(bytes)?, PsbtVersion::V0),
        2 => (convert_v2(global, r)?, PsbtVersion::V2),
        v => {
            return Err(BtcError::PsbtMalformed(format!(
                "psbt version {v} not supported"
            )));
        }
    };
    // A v0 transaction carries u64 amounts, v2 carries i64: refuse what no
    // valid transaction holds, so both versions accept the same amounts
    // and `to_v2` never writes a negative one (found by the psbt fuzzer).
    if psbt
        .unsigned_tx
        .output
        .iter()
        .any(|o| o.value > Amount::MAX_MONEY)
    {
        return Err(BtcError::PsbtMalformed(
            "output amount above 21 million BTC".into(),
        ));
    }
    // A v2 PSBT carries the transaction version as a positive int32, a v0
    // transaction as any 32 bits (rust-bitcoin reads them as i32): refuse a
    // negative one (never standard), so both versions accept the same
    // versions (found by the psbt fuzzer: the v2 form of an accepted v0
    // PSBT did not parse).
    if psbt.unsigned_tx.version.0 < 0 {
        return Err(BtcError::PsbtMalformed(
            "transaction version above int32".into(),
        ));
    }
    // A transaction without inputs signs nothing, and its legacy
    // serialisation is ambiguous (a zero input count reads as the segwit
    // marker): the v2 form of such a v0 PSBT did not parse (found by the
    // psbt fuzzer). Refused in both versions.
    if psbt.unsigned_tx.input.is_empty() {
        return Err(BtcError::PsbtMalformed("transaction without inputs".into()));
    }
    // rust-bitcoin normalises what it parsed (a key type written as a
    // non-minimal compact size, for one, becomes the minimal one), so two
    // keys that differ on the wire can become the same key: such a PSBT
    // means two things at once. Refuse it (found by the psbt fuzzer: the
    // v2 form of an accepted v0 PSBT did not parse).
    if let Err(e) = normalised_maps(&psbt) {
        return Err(BtcError::PsbtMalformed(format!(
            "ambiguous PSBT: its normalised form does not read back ({e})"
        )));
    }
    Ok((psbt, version))
}

fn parse_v0(bytes: &[u8]) -> Result<Psbt, BtcError> {
    let psbt = Psbt::deserialize(bytes).map_err(|e| BtcError::PsbtMalformed(e.to_string()))?;
    let v2_global = [
        key::G_TX_VERSION,
        key::G_FALLBACK_LOCKTIME,
        key::G_INPUT_COUNT,
        key::G_OUTPUT_COUNT,
        key::G_TX_MODIFIABLE,
    ];
    let bad_g = psbt
        .unknown
        .keys()
        .any(|k| v2_global.contains(&u64::from(k.type_value)));
    let bad_i = psbt.inputs.iter().any(|i| {
        i.unknown.keys().any(|k| {
            (key::I_PREVIOUS_TXID..=key::I_REQUIRED_HEIGHT_LOCKTIME)
                .contains(&u64::from(k.type_value))
        })
    });
    let bad_o = psbt.outputs.iter().any(|o| {
        o.unknown
            .keys()
            .any(|k| [key::O_AMOUNT, key::O_SCRIPT].contains(&u64::from(k.type_value)))
    });
    if bad_g || bad_i || bad_o {
        return Err(BtcError::PsbtMalformed("v2-only field in a v0 psbt".into()));
    }
    Ok(psbt)
}

fn convert_v2(global: Vec<Pair>, mut r: Reader<'_>) -> Result<Psbt, BtcError> {
    if field(&global, key::G_UNSIGNED_TX, "unsigned tx")?.is_some() {
        return Err(v2err("PSBT_GLOBAL_UNSIGNED_TX is not allowed in v2"));
    }
    let tx_version = u32_le(
        field(&global, key::G_TX_VERSION, "tx version")?
            .ok_or_else(|| v2err("missing PSBT_GLOBAL_TX_VERSION"))?,
        "tx version",
    )?;
    if tx_version < 2 {
        return Err(v2err("transaction version must be at least 2"));
    }
    let fallback = match field(&global, key::G_FALLBACK_LOCKTIME, "fallback locktime")? {
        Some(v) => u32_le(v, "fallback locktime")?,
        None => 0,
    };
    let count = |t: u64, what: &str| -> Result<usize, BtcError> {
        let v = field(&global, t, what)?.ok_or_else(|| v2err(format!("missing {what}")))?;
        let mut rr = Reader(v);
        let n = rr.compact()?;
        if !rr.0.is_empty() {
            return Err(v2err(format!("{what}: trailing bytes")));
        }
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_ITEMS)
            .ok_or_else(|| v2err(format!("{what} above {MAX_ITEMS}")))
    };
    let n_in = count(key::G_INPUT_COUNT, "input count")?;
    let n_out = count(key::G_OUTPUT_COUNT, "output count")?;
    if let Some(m) = field(&global, key::G_TX_MODIFIABLE, "tx modifiable")?
        && m.len() != 1
    {
        return Err(v2err("tx modifiable: not 1 byte"));
    }
    let mut inputs = Vec::with_capacity(n_in.min(r.0.len()));
    for _ in 0..n_in {
        inputs.push(r.map()?);
    }
    let mut outputs = Vec::with_capacity(n_out.min(r.0.len()));
    for _ in 0..n_out {
        outputs.push(r.map()?);
    }
    if !r.0.is_empty() {
        return Err(v2err("trailing bytes"));
    }

    let mut txins = Vec::with_capacity(inputs.len());
    // (height requirement, time requirement) per input.
    let mut reqs: Vec<(Option<u32>, Option<u32>)> = Vec::with_capacity(inputs.len());
    for m in &inputs {
        let (txin, req) = v2_input(m)?;
        reqs.push(req);
        txins.push(txin);
    }
    let txouts = outputs
        .iter()
        .map(|m| v2_output(m))
        .collect::<Result<Vec<_>, _>>()?;
    let lock_time = choose_locktime(&reqs, fallback)?;
    let tx = Transaction {
        version: Version(i32::try_from(tx_version).map_err(|_| v2err("tx version above i32"))?),
        lock_time,
        input: txins,
        output: txouts,
    };

    as_v0(&tx, &global, &inputs, &outputs)
}

/// One v2 input map: its transaction input and its (height, time) locktime
/// requirements.
type LocktimeReq = (Option<u32>, Option<u32>);

fn v2_input(m: &[Pair]) -> Result<(TxIn, LocktimeReq), BtcError> {
    let txid = field(m, key::I_PREVIOUS_TXID, "previous txid")?
        .ok_or_else(|| v2err("input without PSBT_IN_PREVIOUS_TXID"))?;
    let txid = Txid::from_byte_array(arr(txid)?);
    let vout = u32_le(
        field(m, key::I_OUTPUT_INDEX, "output index")?
            .ok_or_else(|| v2err("input without PSBT_IN_OUTPUT_INDEX"))?,
        "output index",
    )?;
    let sequence = match field(m, key::I_SEQUENCE, "sequence")? {
        Some(v) => Sequence(u32_le(v, "sequence")?),
        None => Sequence::MAX,
    };
    let time = field(m, key::I_REQUIRED_TIME_LOCKTIME, "required time locktime")?
        .map(|v| u32_le(v, "required time locktime"))
        .transpose()?;
    let height = field(
        m,
        key::I_REQUIRED_HEIGHT_LOCKTIME,
        "required height locktime",
    )?
    .map(|v| u32_le(v, "required height locktime"))
    .transpose()?;
    if time.is_some_and(|t| t < 500_000_000) {
        return Err(v2err("required time locktime below 500000000"));
    }
    if height.is_some_and(|h| h == 0 || h >= 500_000_000) {
        return Err(v2err("required height locktime out of range"));
    }
    let txin = TxIn {
        previous_output: OutPoint { txid, vout },
        script_sig: ScriptBuf::new(),
        sequence,
        witness: Witness::default(),
    };
    Ok((txin, (height, time)))
}

/// One v2 output map as a transaction output.
fn v2_output(m: &[Pair]) -> Result<TxOut, BtcError> {
    let amount = field(m, key::O_AMOUNT, "amount")?
        .ok_or_else(|| v2err("output without PSBT_OUT_AMOUNT"))?;
    let amount = i64::from_le_bytes(arr(amount)?);
    let amount = u64::try_from(amount).map_err(|_| v2err("negative output amount"))?;
    let script = field(m, key::O_SCRIPT, "script")?
        .ok_or_else(|| v2err("output without PSBT_OUT_SCRIPT"))?;
    Ok(TxOut {
        value: Amount::from_sat(amount),
        script_pubkey: ScriptBuf::from_bytes(script.to_vec()),
    })
}

/// The v0 serialisation of a converted v2 PSBT, parsed by rust-bitcoin.
fn as_v0(
    tx: &Transaction,
    global: &[Pair],
    inputs: &[Vec<Pair>],
    outputs: &[Vec<Pair>],
) -> Result<Psbt, BtcError> {
    // Re-serialise as v0 and let rust-bitcoin validate the rest.
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let unsigned = Pair {
        key_type: key::G_UNSIGNED_TX,
        key: vec![0x00],
        value: serialize(tx),
    };
    let v2_global = [
        key::G_TX_VERSION,
        key::G_FALLBACK_LOCKTIME,
        key::G_INPUT_COUNT,
        key::G_OUTPUT_COUNT,
        key::G_TX_MODIFIABLE,
        key::G_VERSION,
    ];
    write_map(
        &mut out,
        std::iter::once(&unsigned).chain(
            global
                .iter()
                .filter(|p| !(v2_global.contains(&p.key_type) && p.key.len() == 1)),
        ),
    );
    for m in inputs {
        write_map(
            &mut out,
            m.iter().filter(|p| {
                !((key::I_PREVIOUS_TXID..=key::I_REQUIRED_HEIGHT_LOCKTIME).contains(&p.key_type)
                    && p.key.len() == 1)
            }),
        );
    }
    for m in outputs {
        write_map(
            &mut out,
            m.iter().filter(|p| {
                !([key::O_AMOUNT, key::O_SCRIPT].contains(&p.key_type) && p.key.len() == 1)
            }),
        );
    }
    Psbt::deserialize(&out).map_err(|e| v2err(format!("after conversion: {e}")))
}

/// BIP370 locktime determination.
fn choose_locktime(
    reqs: &[(Option<u32>, Option<u32>)],
    fallback: u32,
) -> Result<LockTime, BtcError> {
    let constrained: Vec<_> = reqs
        .iter()
        .filter(|(h, t)| h.is_some() || t.is_some())
        .collect();
    if constrained.is_empty() {
        return Ok(LockTime::from_consensus(fallback));
    }
    if constrained.iter().all(|(h, _)| h.is_some()) {
        let max = constrained
            .iter()
            .filter_map(|(h, _)| *h)
            .max()
            .unwrap_or(0);
        return LockTime::from_height(max).map_err(|e| v2err(e.to_string()));
    }
    if constrained.iter().all(|(_, t)| t.is_some()) {
        let max = constrained
            .iter()
            .filter_map(|(_, t)| *t)
            .max()
            .unwrap_or(0);
        return LockTime::from_time(max).map_err(|e| v2err(e.to_string()));
    }
    Err(v2err("inputs require incompatible locktime types"))
}

/// Global, input and output maps of a PSBT.
type Maps = (Vec<Pair>, Vec<Vec<Pair>>, Vec<Vec<Pair>>);

/// The maps of `psbt`'s v0 serialisation as rust-bitcoin writes it.
fn normalised_maps(psbt: &Psbt) -> Result<Maps, BtcError> {
    let v0 = psbt.serialize();
    let mut r = Reader(&v0);
    r.take(5)?;
    let g = r.map()?;
    let mut ins = Vec::new();
    for _ in 0..psbt.inputs.len() {
        ins.push(r.map()?);
    }
    let mut outs = Vec::new();
    for _ in 0..psbt.outputs.len() {
        outs.push(r.map()?);
    }
    Ok((g, ins, outs))
}

/// Serialises `psbt` (v0) as BIP370 v2, for tests and ground tools that
/// want to exercise the v2 path. Keeps every non-transaction field.
#[must_use]
pub fn to_v2(psbt: &Psbt) -> Vec<u8> {
    // Start from the v0 serialisation and rewrite its maps. `parse` refuses
    // every PSBT whose serialisation does not read back, so this only
    // returns nothing for a PSBT built elsewhere.
    let Ok((g, ins, outs)) = normalised_maps(psbt) else {
        return Vec::new();
    };
    let tx = &psbt.unsigned_tx;
    let kv = |t: u64, v: Vec<u8>| Pair {
        key_type: t,
        key: vec![t as u8],
        value: v,
    };
    let compact = |n: usize| {
        let mut v = Vec::new();
        write_compact(&mut v, n);
        v
    };
    let mut out = MAGIC.to_vec();
    let mut globals = vec![
        kv(key::G_TX_VERSION, tx.version.0.to_le_bytes().to_vec()),
        kv(
            key::G_FALLBACK_LOCKTIME,
            tx.lock_time.to_consensus_u32().to_le_bytes().to_vec(),
        ),
        kv(key::G_INPUT_COUNT, compact(tx.input.len())),
        kv(key::G_OUTPUT_COUNT, compact(tx.output.len())),
    ];
    globals.extend(g.into_iter().filter(|p| p.key_type != key::G_UNSIGNED_TX));
    globals.push(kv(key::G_VERSION, 2u32.to_le_bytes().to_vec()));
    write_map(&mut out, globals.iter());
    for (m, txin) in ins.into_iter().zip(&tx.input) {
        let mut pairs = m;
        pairs.push(kv(
            key::I_PREVIOUS_TXID,
            txin.previous_output.txid.to_byte_array().to_vec(),
        ));
        pairs.push(kv(
            key::I_OUTPUT_INDEX,
            txin.previous_output.vout.to_le_bytes().to_vec(),
        ));
        pairs.push(kv(key::I_SEQUENCE, txin.sequence.0.to_le_bytes().to_vec()));
        write_map(&mut out, pairs.iter());
    }
    for (m, txout) in outs.into_iter().zip(&tx.output) {
        let mut pairs = m;
        pairs.push(kv(
            key::O_AMOUNT,
            txout.value.to_sat().to_le_bytes().to_vec(),
        ));
        pairs.push(kv(key::O_SCRIPT, txout.script_pubkey.to_bytes()));
        write_map(&mut out, pairs.iter());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Fuzzer find (payload/fuzz/seeds/psbt/crash-911adc18…): a v0 PSBT
    /// with an output above `i64::MAX` sat parsed, and its v2 form (an
    /// int64 amount) then did not. Amounts above 21 million BTC are
    /// refused in both versions.
    #[test]
    fn amounts_above_max_money_are_refused_in_v0_and_v2() {
        for sat in [u64::MAX, Amount::MAX_MONEY.to_sat() + 1] {
            let tx = Transaction {
                version: Version::TWO,
                lock_time: LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint {
                        txid: Txid::all_zeros(),
                        vout: 0,
                    },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::default(),
                }],
                output: vec![TxOut {
                    value: Amount::from_sat(sat),
                    script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
                }],
            };
            let psbt = Psbt::from_unsigned_tx(tx).unwrap();
            for bytes in [psbt.serialize(), to_v2(&psbt)] {
                // v0: above MAX_MONEY; v2: above MAX_MONEY or negative.
                assert!(parse(&bytes).is_err(), "{sat} sat parsed");
            }
        }
        let crash =
            include_bytes!("../../fuzz/seeds/psbt/crash-911adc18f6825c82551595d01ac824ef34cce837");
        assert!(parse(crash).is_err());
    }

    /// A fuzzer find: a v0 PSBT that parsed, but whose normalised form
    /// (what rust-bitcoin writes back) had two equal keys, so `to_v2` wrote
    /// nothing. Such a PSBT is refused, and whatever parses converts to a
    /// v2 PSBT that parses.
    #[test]
    fn an_ambiguous_psbt_is_refused_and_what_parses_converts() {
        let crash =
            include_bytes!("../../fuzz/seeds/psbt/crash-01d386588e8f210254f7208b0fb9ad0db88b4259");
        let err = parse(crash).unwrap_err();
        assert!(err.to_string().contains("ambiguous PSBT"), "{err}");
        let psbt = sample();
        let (back, _) = parse(&to_v2(&psbt)).unwrap();
        assert_eq!(back.unsigned_tx, psbt.unsigned_tx);
    }

    /// Fuzzer find (payload/fuzz/seeds/psbt/crash-2433271d…): a v0 PSBT
    /// whose transaction version has the top bit set parsed (a negative
    /// i32), and its v2 form (a positive int32) then did not. Refused in
    /// both versions.
    #[test]
    fn negative_transaction_versions_are_refused_in_v0_and_v2() {
        let crash =
            include_bytes!("../../fuzz/seeds/psbt/crash-2433271d8e8f8160ba3c8fed58fd5ea8fea221b0");
        let err = parse(crash).unwrap_err();
        assert!(err.to_string().contains("version above int32"), "{err}");
        let mut psbt = sample();
        psbt.unsigned_tx.version = Version(i32::MIN);
        for bytes in [psbt.serialize(), to_v2(&psbt)] {
            assert!(parse(&bytes).is_err());
        }
    }

    /// Fuzzer find (payload/fuzz/seeds/psbt/crash-2cc4c8db…): a v0 PSBT
    /// whose transaction has no inputs parsed, and its v2 form then did not
    /// (a zero input count reads as the segwit marker). Refused in both
    /// versions.
    #[test]
    fn transactions_without_inputs_are_refused_in_v0_and_v2() {
        let crash =
            include_bytes!("../../fuzz/seeds/psbt/crash-2cc4c8db0270171b3f94cebfd662c84e665e8e49");
        let err = parse(crash).unwrap_err();
        assert!(err.to_string().contains("without inputs"), "{err}");
        let mut psbt = sample();
        psbt.unsigned_tx.input.clear();
        psbt.inputs.clear();
        for bytes in [psbt.serialize(), to_v2(&psbt)] {
            assert!(parse(&bytes).is_err());
        }
    }

    fn sample() -> Psbt {
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::from_consensus(123),
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([7; 32]),
                    vout: 1,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::default(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(5000),
                script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
            }],
        };
        Psbt::from_unsigned_tx(tx).unwrap()
    }

    #[test]
    fn v0_and_v2_parse_to_the_same_transaction() {
        let p = sample();
        let (a, va) = parse(&p.serialize()).unwrap();
        assert_eq!(va, PsbtVersion::V0);
        let (b, vb) = parse(&to_v2(&p)).unwrap();
        assert_eq!(vb, PsbtVersion::V2);
        assert_eq!(a.unsigned_tx, b.unsigned_tx);
        assert_eq!(a, b);
    }

    #[test]
    fn v2_missing_fields_and_v0_fields_refused() {
        let p = sample();
        let v2 = to_v2(&p);
        // Truncations never panic and never pass.
        for n in 0..v2.len() {
            assert!(parse(&v2[..n]).is_err());
        }
        let mut trailing = v2.clone();
        trailing.push(0);
        assert!(parse(&trailing).is_err());
        // Unsigned tx inside a v2 psbt.
        let mut g = Vec::new();
        g.extend_from_slice(MAGIC);
        let mut pairs = vec![Pair {
            key_type: 0,
            key: vec![0],
            value: serialize(&p.unsigned_tx),
        }];
        pairs.push(Pair {
            key_type: key::G_VERSION,
            key: vec![0xfb],
            value: 2u32.to_le_bytes().to_vec(),
        });
        write_map(&mut g, pairs.iter());
        assert!(matches!(parse(&g), Err(BtcError::PsbtV2(_))));
    }

    #[test]
    fn bip370_locktime_choice() {
        assert_eq!(
            choose_locktime(&[(None, None)], 7).unwrap(),
            LockTime::from_consensus(7)
        );
        assert_eq!(
            choose_locktime(
                &[
                    (Some(10), None),
                    (Some(20), Some(600_000_000)),
                    (None, None)
                ],
                0
            )
            .unwrap(),
            LockTime::from_consensus(20)
        );
        assert_eq!(
            choose_locktime(
                &[(None, Some(600_000_001)), (Some(5), Some(600_000_000))],
                0
            )
            .unwrap(),
            LockTime::from_consensus(600_000_001)
        );
        assert!(choose_locktime(&[(Some(1), None), (None, Some(600_000_000))], 0).is_err());
    }

    #[test]
    fn unsupported_version_refused() {
        let mut g = MAGIC.to_vec();
        write_map(
            &mut g,
            [Pair {
                key_type: key::G_VERSION,
                key: vec![0xfb],
                value: 1u32.to_le_bytes().to_vec(),
            }]
            .iter(),
        );
        assert!(matches!(parse(&g), Err(BtcError::PsbtMalformed(_))));
    }

    proptest! {
        #[test]
        fn parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&b);
            let _ = parse(&v);
            let _ = parse(&b);
        }

        #[test]
        fn v2_mutations_never_panic(i in 0usize..400, x: u8) {
            let mut v = to_v2(&sample());
            let i = i % v.len();
            v[i] = x;
            let _ = parse(&v);
        }
    }
}
