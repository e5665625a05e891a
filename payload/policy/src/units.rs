//! Checked newtypes for money and time.
//!
//! Owns: [`Sats`] (amounts), [`Wei`] (Ethereum native amounts),
//! [`TokenAmount`] (ERC-20 base units), the [`Amount`] trait the velocity
//! ledger is generic over, [`FeeRate`] (sat per 1000 vbytes) and [`TimeMs`]
//! (node time, UNIX milliseconds). Arithmetic on them is checked: an
//! overflow is `None`, never a wrap.
//!
//! Why `u128` for Ethereum amounts (not `U256`): every cap the policy can
//! state fits (2^128 wei is 3.4e20 ETH, the supply is ~1.2e8 ETH; 2^128 base
//! units covers any real token's supply), and a transaction value that does
//! not fit is above every cap, so the Ethereum crate converts checked `U256`
//! sums into these types only after comparing them with the cap. This keeps
//! the policy crate free of a big-integer library.
//!
//! Must never: wrap, saturate silently where a limit depends on the result,
//! or convert a negative into an amount.
#![deny(clippy::arithmetic_side_effects)]

use std::fmt;

/// An amount in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sats(pub u64);

impl Sats {
    /// Zero.
    pub const ZERO: Sats = Sats(0);

    /// `self + o`, `None` on overflow.
    #[must_use]
    pub fn checked_add(self, o: Sats) -> Option<Sats> {
        self.0.checked_add(o.0).map(Sats)
    }

    /// `self - o`, `None` if negative.
    #[must_use]
    pub fn checked_sub(self, o: Sats) -> Option<Sats> {
        self.0.checked_sub(o.0).map(Sats)
    }

    /// Sum of amounts, `None` on overflow.
    pub fn sum(it: impl IntoIterator<Item = Sats>) -> Option<Sats> {
        it.into_iter().try_fold(Sats::ZERO, Sats::checked_add)
    }
}

/// An amount the velocity ledger can add up: zero, a maximum and checked
/// addition. Implemented by [`Sats`], [`Wei`] and [`TokenAmount`], so one
/// ledger design serves Bitcoin, ETH per chain and every token.
pub trait Amount: Copy + Ord + Default + fmt::Debug + fmt::Display {
    /// Zero.
    const ZERO: Self;
    /// Largest representable amount (what an overflowing sum reports).
    const MAX: Self;
    /// `self + o`, `None` on overflow.
    #[must_use]
    fn add_checked(self, o: Self) -> Option<Self>;
}

impl Amount for Sats {
    const ZERO: Self = Sats(0);
    const MAX: Self = Sats(u64::MAX);
    fn add_checked(self, o: Self) -> Option<Self> {
        self.checked_add(o)
    }
}

macro_rules! u128_amount {
    ($(#[$m:meta])* $name:ident, $unit:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u128);

        impl $name {
            /// Zero.
            pub const ZERO: $name = $name(0);

            /// `self + o`, `None` on overflow.
            #[must_use]
            pub fn checked_add(self, o: $name) -> Option<$name> {
                self.0.checked_add(o.0).map($name)
            }

            /// `self - o`, `None` if negative.
            #[must_use]
            pub fn checked_sub(self, o: $name) -> Option<$name> {
                self.0.checked_sub(o.0).map($name)
            }

            /// Sum of amounts, `None` on overflow.
            pub fn sum(it: impl IntoIterator<Item = $name>) -> Option<$name> {
                it.into_iter().try_fold($name::ZERO, $name::checked_add)
            }

            /// Big-endian bytes (the canonical CBOR form is a 16-byte string).
            #[must_use]
            pub fn to_be_bytes(self) -> [u8; 16] {
                self.0.to_be_bytes()
            }
        }

        impl Amount for $name {
            const ZERO: Self = $name(0);
            const MAX: Self = $name(u128::MAX);
            fn add_checked(self, o: Self) -> Option<Self> {
                self.checked_add(o)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

u128_amount!(
    /// An amount of a chain's native coin in wei (10^-18 ETH on Ethereum).
    Wei,
    "wei"
);

u128_amount!(
    /// An amount of an ERC-20 token in its base units (no decimals applied).
    TokenAmount,
    "units"
);

impl fmt::Display for Sats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat", self.0)
    }
}

/// A fee rate in satoshis per 1000 virtual bytes (sat/kvB), so that
/// fractional sat/vB rates are exact integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FeeRate(pub u64);

impl FeeRate {
    /// From whole sat/vB.
    #[must_use]
    pub fn from_sat_per_vb(v: u64) -> Option<FeeRate> {
        v.checked_mul(1000).map(FeeRate)
    }

    /// Is `fee` over `vsize` vbytes above this rate? Exact integer
    /// comparison `fee * 1000 > rate * vsize` in u128 (never overflows).
    #[must_use]
    pub fn exceeded_by(self, fee: Sats, vsize: u64) -> bool {
        let lhs = u128::from(fee.0).checked_mul(1000);
        let rhs = u128::from(self.0).checked_mul(u128::from(vsize));
        match (lhs, rhs) {
            (Some(l), Some(r)) => l > r,
            // Unreachable for u64 inputs; refuse if it ever happens.
            _ => true,
        }
    }

    /// The rate of `fee` over `vsize`, rounded up (for reports).
    #[must_use]
    pub fn of(fee: Sats, vsize: u64) -> FeeRate {
        if vsize == 0 {
            return FeeRate(u64::MAX);
        }
        let num = u128::from(fee.0).saturating_mul(1000);
        let v = u128::from(vsize);
        let q = num.checked_div(v).unwrap_or(u128::MAX);
        let r = num.checked_rem(v).unwrap_or(0);
        let q = if r > 0 { q.saturating_add(1) } else { q };
        FeeRate(u64::try_from(q).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for FeeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0.checked_div(1000).unwrap_or(0);
        let frac = self.0.checked_rem(1000).unwrap_or(0);
        write!(f, "{whole}.{frac:03} sat/vB")
    }
}

/// Node time: UNIX milliseconds from the node's persisted monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimeMs(pub i64);

impl TimeMs {
    /// `self + d` (d in ms), `None` on overflow.
    #[must_use]
    pub fn checked_add_ms(self, d: u64) -> Option<TimeMs> {
        i64::try_from(d)
            .ok()
            .and_then(|d| self.0.checked_add(d))
            .map(TimeMs)
    }

    /// `self - d` (d in ms), `None` on overflow.
    #[must_use]
    pub fn checked_sub_ms(self, d: u64) -> Option<TimeMs> {
        i64::try_from(d)
            .ok()
            .and_then(|d| self.0.checked_sub(d))
            .map(TimeMs)
    }

    /// `self - earlier` in ms if `self >= earlier`.
    #[must_use]
    pub fn since(self, earlier: TimeMs) -> Option<u64> {
        self.0
            .checked_sub(earlier.0)
            .and_then(|d| u64::try_from(d).ok())
    }
}

impl fmt::Display for TimeMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sats_arithmetic_is_checked() {
        assert_eq!(Sats(u64::MAX).checked_add(Sats(1)), None);
        assert_eq!(Sats(1).checked_sub(Sats(2)), None);
        assert_eq!(Sats::sum([Sats(1), Sats(2)]), Some(Sats(3)));
        assert_eq!(Sats::sum([Sats(u64::MAX), Sats(1)]), None);
    }

    #[test]
    fn u128_amounts_are_checked() {
        assert_eq!(Wei(u128::MAX).checked_add(Wei(1)), None);
        assert_eq!(TokenAmount(1).checked_sub(TokenAmount(2)), None);
        assert_eq!(Wei::sum([Wei(1), Wei(2)]), Some(Wei(3)));
        assert_eq!(Wei(5).to_string(), "5 wei");
        assert_eq!(<Wei as Amount>::MAX.add_checked(Wei(1)), None);
        assert_eq!(<Sats as Amount>::ZERO.add_checked(Sats(2)), Some(Sats(2)));
    }

    #[test]
    fn fee_rate_comparison_is_exact() {
        let r = FeeRate::from_sat_per_vb(10).unwrap();
        assert!(!r.exceeded_by(Sats(1000), 100));
        assert!(r.exceeded_by(Sats(1001), 100));
        assert!(!FeeRate(u64::MAX).exceeded_by(Sats(u64::MAX), u64::MAX));
        assert_eq!(FeeRate::of(Sats(1001), 100), FeeRate(10_010));
        assert_eq!(FeeRate::of(Sats(1), 3), FeeRate(334));
        assert_eq!(FeeRate(2500).to_string(), "2.500 sat/vB");
    }

    #[test]
    fn time_arithmetic_is_checked() {
        assert_eq!(TimeMs(i64::MAX).checked_add_ms(1), None);
        assert_eq!(TimeMs(0).checked_add_ms(u64::MAX), None);
        assert_eq!(TimeMs(5).since(TimeMs(7)), None);
        assert_eq!(TimeMs(7).since(TimeMs(5)), Some(2));
    }
}
