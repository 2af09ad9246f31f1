//! Exact decimal amounts.
//!
//! Amounts travel as decimal *strings* in canonical form: no sign, no exponent, no
//! leading zeros, no trailing fractional zeros, no lone decimal point
//! (`"0"`, `"12.5"`, `"0.000000000000000001"`). Floats never appear.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A non-negative exact decimal quantity (asset units or reference currency).
///
/// Up to 28 fractional digits and a magnitude below 2^96; arithmetic is exact and
/// checked. Parsing accepts only the canonical string form, so one amount has one
/// encoding and one digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(Decimal);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Parse the canonical decimal-string form.
    ///
    /// # Errors
    /// [`Error::InvalidAmount`] for anything else: signs, exponents, leading zeros,
    /// trailing fractional zeros, empty parts, more than 28 fractional digits.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidAmount(s.to_owned());
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return Err(invalid());
        }
        if let Some(f) = frac
            && (!digits(f) || f.ends_with('0') || f.len() > 28)
        {
            return Err(invalid());
        }
        Decimal::from_str_exact(s).map(Amount).map_err(|_| invalid())
    }

    /// Accept a decimal in any ordinary notation ("1.50", "01") and normalise it;
    /// for human input at the edges, never for canonical decoding.
    ///
    /// # Errors
    /// [`Error::InvalidAmount`] for negative, exponent or unparsable input.
    pub fn parse_lenient(s: &str) -> Result<Self> {
        let d = Decimal::from_str_exact(s.trim()).map_err(|_| Error::InvalidAmount(s.to_owned()))?;
        Self::from_decimal(d).ok_or_else(|| Error::InvalidAmount(s.to_owned()))
    }

    /// Wrap a decimal; `None` when negative.
    #[must_use]
    pub fn from_decimal(d: Decimal) -> Option<Self> {
        (!d.is_sign_negative() || d.is_zero()).then(|| Amount(d.normalize()))
    }

    /// The underlying decimal.
    #[must_use]
    pub fn as_decimal(&self) -> Decimal {
        self.0
    }

    /// True for zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Number of fractional digits in the canonical form.
    #[must_use]
    pub fn scale(&self) -> u32 {
        self.0.normalize().scale()
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).and_then(Self::from_decimal)
    }

    /// `self × other`, or `None` on overflow or when the exact product needs more
    /// than 28 fractional digits (it is then rounded half-even, which is what a
    /// reference-currency value needs).
    #[must_use]
    pub fn checked_mul(self, other: Amount) -> Option<Amount> {
        self.0.checked_mul(other.0).and_then(Self::from_decimal)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `normalize` strips trailing zeros; Display of a Decimal never uses exponents.
        write!(f, "{}", self.0.normalize())
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

impl FromStr for Amount {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Amount::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings_round_trip() {
        for s in ["0", "1", "12.5", "0.000000000000000001", "79228162514264337593543950335"] {
            assert_eq!(Amount::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn non_canonical_strings_are_rejected() {
        for s in [
            "",
            "-1",
            "+1",
            "01",
            "1.",
            ".5",
            "1.50",
            "1e3",
            "1E3",
            " 1",
            "1 ",
            "0.0",
            "1,5",
            "NaN",
            "١",
            "0.00000000000000000000000000001",
        ] {
            assert_eq!(Amount::parse(s), Err(Error::InvalidAmount(s.to_owned())), "{s:?}");
        }
    }

    #[test]
    fn lenient_parsing_normalises_but_refuses_negatives() {
        assert_eq!(Amount::parse_lenient("1.500").unwrap().to_string(), "1.5");
        assert_eq!(Amount::parse_lenient(" 007 ").unwrap().to_string(), "7");
        assert!(Amount::parse_lenient("-0.1").is_err());
        assert!(Amount::parse_lenient("abc").is_err());
    }

    #[test]
    fn arithmetic_is_exact() {
        let a = Amount::parse("0.1").unwrap();
        let b = Amount::parse("0.2").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "0.3");
        let price = Amount::parse("3012.47").unwrap();
        assert_eq!(Amount::parse("2.5").unwrap().checked_mul(price).unwrap().to_string(), "7531.175");
        assert_eq!(Amount::parse("1.25").unwrap().scale(), 2);
    }
}
