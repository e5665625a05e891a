//! Minimal 256-bit unsigned arithmetic for targets and chain work.
//!
//! Owns: the few checked operations that Bitcoin Core's `arith_uint256` is
//! used for in header validation (compact decoding, retarget multiply and
//! divide, cumulative chain-work addition, comparisons).
//!
//! Must never: wrap silently, panic, or be exposed in the public API (the
//! public API speaks `bitcoin::Target` / `bitcoin::Work`, converted through
//! big-endian bytes).
#![deny(clippy::arithmetic_side_effects)]

use core::cmp::Ordering;

/// A 256-bit unsigned integer, limbs most significant first, so the derived
/// lexicographic ordering is the numeric ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct U256([u64; 4]);

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl U256 {
    pub(crate) const ZERO: U256 = U256([0; 4]);
    pub(crate) const ONE: U256 = U256([0, 0, 0, 1]);

    pub(crate) fn from_u64(v: u64) -> U256 {
        U256([0, 0, 0, v])
    }

    pub(crate) fn from_be_bytes(b: [u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(b.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            *limb = u64::from_be_bytes(w);
        }
        U256(limbs)
    }

    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.0.iter()) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// `self + rhs`, `None` on overflow past 2^256 - 1.
    pub(crate) fn checked_add(self, rhs: U256) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut carry = false;
        for i in (0..4).rev() {
            let (a, b) = (self.0.get(i).copied()?, rhs.0.get(i).copied()?);
            let (s1, c1) = a.overflowing_add(b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *out.get_mut(i)? = s2;
            carry = c1 || c2;
        }
        if carry { None } else { Some(U256(out)) }
    }

    /// `self - rhs`, `None` if `rhs > self`.
    pub(crate) fn checked_sub(self, rhs: U256) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for i in (0..4).rev() {
            let (a, b) = (self.0.get(i).copied()?, rhs.0.get(i).copied()?);
            let (d1, b1) = a.overflowing_sub(b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *out.get_mut(i)? = d2;
            borrow = b1 || b2;
        }
        if borrow { None } else { Some(U256(out)) }
    }

    /// `self * rhs`, `None` on overflow.
    pub(crate) fn checked_mul_u64(self, rhs: u64) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut carry: u128 = 0;
        for i in (0..4).rev() {
            let a = u128::from(self.0.get(i).copied()?);
            // a * rhs <= (2^64-1)^2 and carry < 2^64, so the sum fits in u128.
            let n = a.checked_mul(u128::from(rhs))?.checked_add(carry)?;
            *out.get_mut(i)? = n as u64; // low 64 bits, intentional truncation
            carry = n >> 64;
        }
        if carry != 0 { None } else { Some(U256(out)) }
    }

    /// `self / rhs` (floor), `None` if `rhs == 0`.
    pub(crate) fn checked_div_u64(self, rhs: u64) -> Option<U256> {
        if rhs == 0 {
            return None;
        }
        let mut out = [0u64; 4];
        let mut rem: u128 = 0;
        for i in 0..4 {
            let cur = (rem << 64) | u128::from(self.0.get(i).copied()?);
            *out.get_mut(i)? = u64::try_from(cur.checked_div(u128::from(rhs))?).ok()?;
            rem = cur.checked_rem(u128::from(rhs))?;
        }
        Some(U256(out))
    }

    /// Number of significant bits (0 for zero).
    pub(crate) fn bits(&self) -> u32 {
        let mut acc: u32 = 256;
        for limb in self.0 {
            if limb != 0 {
                return acc.saturating_sub(limb.leading_zeros());
            }
            acc = acc.saturating_sub(64);
        }
        0
    }

    /// Bitwise complement.
    pub(crate) fn not(self) -> U256 {
        U256([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }

    /// `self >> (8 * bytes)`.
    pub(crate) fn shr_bytes(self, bytes: u32) -> U256 {
        let b = self.to_be_bytes();
        let shift = bytes as usize;
        let mut out = [0u8; 32];
        if shift < 32 {
            // out[shift..] = b[..32-shift]
            for (dst, src) in out.iter_mut().skip(shift).zip(b.iter()) {
                *dst = *src;
            }
        }
        U256::from_be_bytes(out)
    }

    /// `self << (8 * bytes)`, bits shifted past 2^256 are dropped.
    pub(crate) fn shl_bytes(self, bytes: u32) -> U256 {
        let b = self.to_be_bytes();
        let shift = bytes as usize;
        let mut out = [0u8; 32];
        if shift < 32 {
            // out[..32-shift] = b[shift..]
            for (dst, src) in out.iter_mut().zip(b.iter().skip(shift)) {
                *dst = *src;
            }
        }
        U256::from_be_bytes(out)
    }

    pub(crate) fn low_u64(&self) -> u64 {
        self.0[3]
    }

    /// `self / rhs` (floor) by shift-and-subtract, `None` if `rhs == 0`.
    ///
    /// Only used for the chain-work of a target (once per distinct nBits),
    /// so simplicity wins over speed.
    pub(crate) fn checked_div(self, rhs: U256) -> Option<U256> {
        if rhs.is_zero() {
            return None;
        }
        if rhs > self {
            return Some(U256::ZERO);
        }
        let mut quotient = U256::ZERO;
        let mut rem = U256::ZERO;
        let total = self.bits();
        for i in (0..total).rev() {
            rem = rem.shl1();
            if self.bit(i) {
                rem.0[3] |= 1;
            }
            if rem >= rhs {
                rem = rem.checked_sub(rhs)?;
                quotient.set_bit(i);
            }
        }
        Some(quotient)
    }

    fn shl1(self) -> U256 {
        let l = self.0;
        U256([
            (l[0] << 1) | (l[1] >> 63),
            (l[1] << 1) | (l[2] >> 63),
            (l[2] << 1) | (l[3] >> 63),
            l[3] << 1,
        ])
    }

    fn bit(&self, i: u32) -> bool {
        let limb = 3usize.saturating_sub((i / 64) as usize);
        self.0.get(limb).is_some_and(|l| (l >> (i % 64)) & 1 == 1)
    }

    fn set_bit(&mut self, i: u32) {
        let limb = 3usize.saturating_sub((i / 64) as usize);
        if let Some(l) = self.0.get_mut(limb) {
            *l |= 1u64 << (i % 64);
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "test arithmetic on small known values"
)]
mod tests {
    use super::*;

    #[test]
    fn add_sub_roundtrip_and_overflow() {
        let max = U256([u64::MAX; 4]);
        assert_eq!(max.checked_add(U256::ONE), None);
        assert_eq!(U256::ZERO.checked_sub(U256::ONE), None);
        let a = U256([0, 1, u64::MAX, u64::MAX]);
        let b = a.checked_add(U256::ONE).unwrap();
        assert_eq!(b, U256([0, 2, 0, 0]));
        assert_eq!(b.checked_sub(U256::ONE).unwrap(), a);
    }

    #[test]
    fn mul_div() {
        let a = U256([0, 0, 1, 5]);
        let m = a.checked_mul_u64(1_209_600).unwrap();
        assert_eq!(m.checked_div_u64(1_209_600).unwrap(), a);
        assert_eq!(
            U256([1, 0, 0, 0]).checked_mul_u64(1 << 63).unwrap().bits(),
            256
        );
        assert_eq!(U256([u64::MAX, 0, 0, 0]).checked_mul_u64(2), None);
        assert_eq!(a.checked_div_u64(0), None);
    }

    #[test]
    fn long_division_matches_u128() {
        let x = U256::from_be_bytes({
            let mut b = [0u8; 32];
            b[16..].copy_from_slice(&123_456_789_012_345_678_901_234_567u128.to_be_bytes());
            b
        });
        let y = U256::from_u64(987_654_321);
        let q = x.checked_div(y).unwrap();
        let expect = 123_456_789_012_345_678_901_234_567u128 / 987_654_321;
        let mut b = [0u8; 32];
        b[16..].copy_from_slice(&expect.to_be_bytes());
        assert_eq!(q, U256::from_be_bytes(b));
    }

    #[test]
    fn bytes_roundtrip_and_bits() {
        let mut b = [0u8; 32];
        b[4] = 0xff;
        b[31] = 1;
        let v = U256::from_be_bytes(b);
        assert_eq!(v.to_be_bytes(), b);
        assert_eq!(v.bits(), 224);
        assert_eq!(v.shr_bytes(27).low_u64(), 0xff);
        assert_eq!(v.shl_bytes(31).to_be_bytes()[0], 1);
    }
}
