//! The one typed SQL codec of the store: how the daemon's values are
//! represented in SQLite columns, and back, with the domain checks a
//! corrupt or tampered database must fail (BDK's `rusqlite_impl.rs`
//! newtype approach: a newtype per representation carries `ToSql` and
//! `FromSql`, so a query binds and reads typed values).
//!
//! Owns: [`Bits64`] (a u64 such as a chain id or a nonce, stored as the
//! i64 with the same bits), [`Blob`] (a fixed-length byte string),
//! [`U128Be`] (a 128-bit amount, 16 big-endian bytes) and the checked
//! conversions the aggregates use. Must never: know a table or a chain.

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};

use super::{Store, StoreError};

/// A u64 (chain id, account nonce) as the i64 with the same bits: SQLite
/// integers are signed, chain ids and nonces may use all 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits64(pub u64);

impl ToSql for Bits64 {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(u64_bits(self.0)))
    }
}

impl FromSql for Bits64 {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(|v| Self(bits_u64(v)))
    }
}

/// A fixed-length byte string (hashes, addresses, outpoints, signatures);
/// another length in the database is a corrupt row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob<const N: usize>(pub [u8; N]);

impl<const N: usize> ToSql for Blob<N> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_slice()))
    }
}

impl<const N: usize> FromSql for Blob<N> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let b = value.as_blob()?;
        <[u8; N]>::try_from(b)
            .map(Self)
            .map_err(|_| FromSqlError::InvalidBlobSize {
                expected_size: N,
                blob_size: b.len(),
            })
    }
}

/// A 128-bit amount (wei, token base units) as 16 big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U128Be(pub u128);

impl ToSql for U128Be {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.to_be_bytes().to_vec()))
    }
}

impl FromSql for U128Be {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Blob::<16>::column_result(value).map(|b| Self(u128::from_be_bytes(b.0)))
    }
}

/// A u64 as the i64 with the same bits ([`Bits64`]).
#[must_use]
pub fn u64_bits(v: u64) -> i64 {
    i64::from_be_bytes(v.to_be_bytes())
}

/// The inverse of [`u64_bits`].
#[must_use]
pub fn bits_u64(v: i64) -> u64 {
    u64::from_be_bytes(v.to_be_bytes())
}

pub(super) fn i64_of(what: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange {
        what,
        value: i64::MAX,
    })
}

pub(super) fn u64_of(what: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::OutOfRange { what, value: v })
}

pub(super) fn array<const N: usize>(what: &'static str, v: &[u8]) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        detail: format!("{} bytes where {N} were expected", v.len()),
    })
}

impl Store {
    /// Runs `f` in one write transaction and commits it; SQLite's errors
    /// are reported with the database (nothing is written then).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub(super) fn write_tx<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let v = f(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_round_trip_through_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t(a INTEGER, b BLOB, c BLOB)")
            .unwrap();
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            rusqlite::params![Bits64(u64::MAX), Blob([7u8; 20]), U128Be(u128::MAX - 1)],
        )
        .unwrap();
        let (a, b, v): (Bits64, Blob<20>, U128Be) = c
            .query_row("SELECT a, b, c FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((a.0, b.0, v.0), (u64::MAX, [7; 20], u128::MAX - 1));
        // Another length is a corrupt row, not a truncated value.
        assert!(
            c.query_row("SELECT b FROM t", [], |r| r.get::<_, Blob<32>>(0))
                .is_err()
        );
        assert_eq!(bits_u64(u64_bits(u64::MAX - 3)), u64::MAX - 3);
    }
}
