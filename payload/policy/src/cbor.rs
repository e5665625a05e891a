//! Deterministic CBOR (RFC 8949 §4.2.1 "core deterministic encoding") for the
//! subset our signed documents use, with a decoder that accepts exactly one
//! encoding per value.
//!
//! Owns: the byte-level encoding of policy documents, sign requests, the
//! persisted policy state and audit entries. Supported: unsigned integers
//! (major 0), byte strings (2), text strings (3), arrays (4), maps with
//! unsigned-integer keys (5) and `false`/`true` (7). Everything else
//! (negative integers, tags, floats, null, indefinite lengths) is refused.
//!
//! Why hand-written (not `ciborium`): general CBOR libraries decode
//! non-canonical input without complaint (long-form heads, unsorted or
//! duplicate map keys), and what administrators sign must have exactly one
//! byte form; this subset is ~200 lines and any RFC 8949 tool (Python
//! `cbor2`, `cbor-diag`) still reads it.
//!
//! Must never: panic or allocate more than the input can justify on any
//! input, accept a non-shortest head, an unsorted or duplicate map key,
//! invalid UTF-8, nesting deeper than [`MAX_DEPTH`] or trailing bytes.

/// Deepest nesting accepted (arrays and maps).
pub const MAX_DEPTH: usize = 8;

/// A CBOR value of the supported subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Major type 0.
    Uint(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5 with unsigned keys, strictly ascending.
    Map(Vec<(u64, Value)>),
    /// Simple values 20/21.
    Bool(bool),
}

/// Why bytes are not a canonical value of the subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// Input ends inside a value.
    #[error("cbor: truncated")]
    Truncated,
    /// A head is not in its shortest form, or map keys are not strictly
    /// ascending.
    #[error("cbor: non-canonical encoding: {0}")]
    NonCanonical(&'static str),
    /// A major type, simple value or indefinite length outside the subset.
    #[error("cbor: unsupported item: {0}")]
    Unsupported(&'static str),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("cbor: nested too deep")]
    TooDeep,
    /// Bytes after the top-level value.
    #[error("cbor: {0} trailing bytes")]
    Trailing(usize),
    /// A text string is not UTF-8.
    #[error("cbor: text is not utf-8")]
    BadUtf8,
    /// The value has the wrong shape for the field it fills.
    #[error("field {field}: {detail}")]
    Shape {
        /// Field path.
        field: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// A map holds a key this format does not define.
    #[error("field {field}: unknown key {key}")]
    UnknownKey {
        /// Map the key is in.
        field: &'static str,
        /// The key.
        key: u64,
    },
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if let Ok(b) = u8::try_from(n) {
        out.push(m | 24);
        out.push(b);
    } else if let Ok(s) = u16::try_from(n) {
        out.push(m | 25);
        out.extend_from_slice(&s.to_be_bytes());
    } else if let Ok(w) = u32::try_from(n) {
        out.push(m | 26);
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Appends the deterministic encoding of `v`. Map entries are written in the
/// order given; build maps with ascending keys (the decoder refuses others).
pub fn encode_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Uint(n) => head(out, 0, *n),
        Value::Bytes(b) => {
            head(out, 2, len64(b.len()));
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(out, 3, len64(t.len()));
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, len64(items.len()));
            for i in items {
                encode_into(out, i);
            }
        }
        Value::Map(entries) => {
            head(out, 5, len64(entries.len()));
            for (k, val) in entries {
                head(out, 0, *k);
                encode_into(out, val);
            }
        }
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
    }
}

/// The deterministic encoding of `v`.
#[must_use]
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

/// Decodes exactly one canonical value filling all of `bytes`.
///
/// # Errors
/// [`CborError`] for anything outside the canonical subset.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut r = Reader { buf: bytes };
    let v = r.value(0)?;
    if !r.buf.is_empty() {
        return Err(CborError::Trailing(r.buf.len()));
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let (h, t) = self.buf.split_at_checked(n).ok_or(CborError::Truncated)?;
        self.buf = t;
        Ok(h)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        Ok(*self.take(1)?.first().ok_or(CborError::Truncated)?)
    }

    /// Major type and argument, refusing non-shortest forms.
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        let n = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.byte()?);
                if v < 24 {
                    return Err(CborError::NonCanonical("1-byte argument below 24"));
                }
                v
            }
            25 => {
                let v = u64::from(u16::from_be_bytes(arr(self.take(2)?)?));
                if v <= 0xff {
                    return Err(CborError::NonCanonical("2-byte argument fits in 1"));
                }
                v
            }
            26 => {
                let v = u64::from(u32::from_be_bytes(arr(self.take(4)?)?));
                if v <= 0xffff {
                    return Err(CborError::NonCanonical("4-byte argument fits in 2"));
                }
                v
            }
            27 => {
                let v = u64::from_be_bytes(arr(self.take(8)?)?);
                if v <= 0xffff_ffff {
                    return Err(CborError::NonCanonical("8-byte argument fits in 4"));
                }
                v
            }
            31 => return Err(CborError::Unsupported("indefinite length")),
            _ => return Err(CborError::Unsupported("reserved additional information")),
        };
        Ok((major, n))
    }

    fn len(&self, n: u64) -> Result<usize, CborError> {
        // Every element takes at least one byte: a count above what is left
        // is truncated input, never a reason to allocate.
        let n = usize::try_from(n).map_err(|_| CborError::Truncated)?;
        if n > self.buf.len() {
            return Err(CborError::Truncated);
        }
        Ok(n)
    }

    fn value(&mut self, depth: usize) -> Result<Value, CborError> {
        let (major, n) = self.head()?;
        match major {
            0 => Ok(Value::Uint(n)),
            2 => {
                let l = self.len(n)?;
                Ok(Value::Bytes(self.take(l)?.to_vec()))
            }
            3 => {
                let l = self.len(n)?;
                let s = std::str::from_utf8(self.take(l)?).map_err(|_| CborError::BadUtf8)?;
                Ok(Value::Text(s.to_owned()))
            }
            4 => {
                if depth >= MAX_DEPTH {
                    return Err(CborError::TooDeep);
                }
                let l = self.len(n)?;
                let mut items = Vec::with_capacity(l);
                for _ in 0..l {
                    items.push(self.value(depth.saturating_add(1))?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                if depth >= MAX_DEPTH {
                    return Err(CborError::TooDeep);
                }
                let l = self.len(n)?;
                let mut entries: Vec<(u64, Value)> = Vec::with_capacity(l);
                for _ in 0..l {
                    let (km, k) = self.head()?;
                    if km != 0 {
                        return Err(CborError::Unsupported("map key not an unsigned integer"));
                    }
                    if let Some((prev, _)) = entries.last()
                        && k <= *prev
                    {
                        return Err(CborError::NonCanonical("map keys not strictly ascending"));
                    }
                    let v = self.value(depth.saturating_add(1))?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            7 => match n {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                _ => Err(CborError::Unsupported("simple value or float")),
            },
            1 => Err(CborError::Unsupported("negative integer")),
            _ => Err(CborError::Unsupported("tag")),
        }
    }
}

fn arr<const N: usize>(s: &[u8]) -> Result<[u8; N], CborError> {
    <[u8; N]>::try_from(s).map_err(|_| CborError::Truncated)
}

/// Reads the fields of a decoded map: every key must be consumed in
/// ascending order; [`Fields::finish`] refuses any key left over.
#[derive(Debug)]
pub struct Fields {
    name: &'static str,
    entries: std::vec::IntoIter<(u64, Value)>,
    peeked: Option<(u64, Value)>,
}

impl Fields {
    /// Expects `v` to be a map.
    ///
    /// # Errors
    /// [`CborError::Shape`] if it is not.
    pub fn new(name: &'static str, v: Value) -> Result<Self, CborError> {
        match v {
            Value::Map(m) => Ok(Self {
                name,
                entries: m.into_iter(),
                peeked: None,
            }),
            _ => Err(CborError::Shape {
                field: name,
                detail: "expected a map",
            }),
        }
    }

    fn next_entry(&mut self) -> Option<(u64, Value)> {
        self.peeked.take().or_else(|| self.entries.next())
    }

    /// The value of required key `key` (keys must be requested in ascending
    /// order).
    ///
    /// # Errors
    /// [`CborError::Shape`] if absent, [`CborError::UnknownKey`] if a key
    /// below it was not requested.
    pub fn req(&mut self, key: u64, field: &'static str) -> Result<Value, CborError> {
        match self.next_entry() {
            Some((k, v)) if k == key => Ok(v),
            Some((k, _)) if k < key => Err(CborError::UnknownKey {
                field: self.name,
                key: k,
            }),
            other => {
                self.peeked = other;
                Err(CborError::Shape {
                    field,
                    detail: "missing",
                })
            }
        }
    }

    /// The value of optional key `key`, `None` if the map does not hold it
    /// (keys must be requested in ascending order). An absent optional key
    /// has exactly one encoding: the key is left out.
    ///
    /// # Errors
    /// [`CborError::UnknownKey`] if a key below it was not requested.
    pub fn opt(&mut self, key: u64, field: &'static str) -> Result<Option<Value>, CborError> {
        match self.req(key, field) {
            Ok(v) => Ok(Some(v)),
            Err(CborError::Shape {
                detail: "missing", ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Refuses keys not consumed.
    ///
    /// # Errors
    /// [`CborError::UnknownKey`].
    pub fn finish(mut self) -> Result<(), CborError> {
        match self.next_entry() {
            Some((k, _)) => Err(CborError::UnknownKey {
                field: self.name,
                key: k,
            }),
            None => Ok(()),
        }
    }

    /// Required unsigned integer.
    ///
    /// # Errors
    /// As [`Fields::req`], or a shape error.
    pub fn uint(&mut self, key: u64, field: &'static str) -> Result<u64, CborError> {
        as_uint(self.req(key, field)?, field)
    }

    /// Required byte string.
    ///
    /// # Errors
    /// As [`Fields::req`], or a shape error.
    pub fn bytes(&mut self, key: u64, field: &'static str) -> Result<Vec<u8>, CborError> {
        as_bytes(self.req(key, field)?, field)
    }

    /// Required fixed-size byte string.
    ///
    /// # Errors
    /// As [`Fields::req`], or a shape error.
    pub fn array<const N: usize>(
        &mut self,
        key: u64,
        field: &'static str,
    ) -> Result<[u8; N], CborError> {
        as_array(self.req(key, field)?, field)
    }

    /// Required text string.
    ///
    /// # Errors
    /// As [`Fields::req`], or a shape error.
    pub fn text(&mut self, key: u64, field: &'static str) -> Result<String, CborError> {
        match self.req(key, field)? {
            Value::Text(t) => Ok(t),
            _ => Err(shape(field, "expected text")),
        }
    }

    /// Required boolean.
    ///
    /// # Errors
    /// As [`Fields::req`], or a shape error.
    pub fn boolean(&mut self, key: u64, field: &'static str) -> Result<bool, CborError> {
        match self.req(key, field)? {
            Value::Bool(b) => Ok(b),
            _ => Err(shape(field, "expected a boolean")),
        }
    }

    /// Required array.
    ///
    /// # Errors
    /// As [`Fields::req`], or a shape error.
    pub fn list(&mut self, key: u64, field: &'static str) -> Result<Vec<Value>, CborError> {
        as_list(self.req(key, field)?, field)
    }
}

/// A shape error.
#[must_use]
pub fn shape(field: &'static str, detail: &'static str) -> CborError {
    CborError::Shape { field, detail }
}

/// `v` as an unsigned integer.
///
/// # Errors
/// Shape error.
pub fn as_uint(v: Value, field: &'static str) -> Result<u64, CborError> {
    match v {
        Value::Uint(n) => Ok(n),
        _ => Err(shape(field, "expected an unsigned integer")),
    }
}

/// `v` as a byte string.
///
/// # Errors
/// Shape error.
pub fn as_bytes(v: Value, field: &'static str) -> Result<Vec<u8>, CborError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(shape(field, "expected a byte string")),
    }
}

/// `v` as a fixed-size byte string.
///
/// # Errors
/// Shape error.
pub fn as_array<const N: usize>(v: Value, field: &'static str) -> Result<[u8; N], CborError> {
    <[u8; N]>::try_from(as_bytes(v, field)?).map_err(|_| shape(field, "wrong byte length"))
}

/// `v` as an array.
///
/// # Errors
/// Shape error.
pub fn as_list(v: Value, field: &'static str) -> Result<Vec<Value>, CborError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(shape(field, "expected an array")),
    }
}

/// Unsigned integer value from a `u64`-convertible.
#[must_use]
pub fn uint(n: impl Into<u64>) -> Value {
    Value::Uint(n.into())
}

/// Byte string value.
#[must_use]
pub fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc8949_examples() {
        // Appendix A.
        assert_eq!(encode(&Value::Uint(0)), [0x00]);
        assert_eq!(encode(&Value::Uint(23)), [0x17]);
        assert_eq!(encode(&Value::Uint(24)), [0x18, 0x18]);
        assert_eq!(encode(&Value::Uint(1000)), [0x19, 0x03, 0xe8]);
        assert_eq!(
            encode(&Value::Uint(1_000_000_000_000)),
            [0x1b, 0x00, 0x00, 0x00, 0xe8, 0xd4, 0xa5, 0x10, 0x00]
        );
        assert_eq!(encode(&Value::Bool(true)), [0xf5]);
        assert_eq!(encode(&Value::Text("IETF".into())), b"\x64IETF");
        assert_eq!(
            encode(&Value::Map(vec![(1, Value::Uint(2)), (3, Value::Uint(4))])),
            [0xa2, 0x01, 0x02, 0x03, 0x04]
        );
    }

    #[test]
    fn non_canonical_forms_are_refused() {
        for bad in [
            &[0x18, 0x17][..],   // 23 in a 1-byte argument
            &[0x19, 0x00, 0xff], // 255 in 2 bytes
            &[0x1a, 0x00, 0x00, 0xff, 0xff],
            &[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            &[0xa2, 0x03, 0x04, 0x01, 0x02], // unsorted keys
            &[0xa2, 0x01, 0x02, 0x01, 0x02], // duplicate key
            &[0x5f, 0xff],                   // indefinite bytes
            &[0x20],                         // negative
            &[0xc0, 0x00],                   // tag
            &[0xf6],                         // null
            &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0], // float
            &[0x00, 0x00],                   // trailing
            &[0x62, 0xff, 0xfe],             // bad utf-8
            &[0xa1, 0x61, 0x61, 0x00],       // text key
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?} accepted");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = Value::Uint(0);
        for _ in 0..MAX_DEPTH {
            v = Value::Array(vec![v]);
        }
        assert!(decode(&encode(&v)).is_ok());
        let v = Value::Array(vec![v]);
        assert_eq!(decode(&encode(&v)), Err(CborError::TooDeep));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(Value::Uint),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            "[a-z]{0,20}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<u64>(), inner, 0..6)
                    .prop_map(|m| Value::Map(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let b = encode(&v);
            prop_assert_eq!(decode(&b).unwrap(), v);
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = decode(&b) {
                // Anything accepted re-encodes to the same bytes: one
                // encoding per value.
                prop_assert_eq!(encode(&v), b);
            }
        }
    }
}
