//! Stablecoin amounts in integer base units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// An amount of a 6-decimal stablecoin, held as integer base units
/// (1 USDC = 1 000 000 units). No floating point is ever involved.
///
/// Two text forms that never read the same string two ways:
/// - for people (`FromStr`, `Display`, config files, the CLI): whole tokens, written
///   with the unit or a decimal point, `"12 USDC"`, `"12.50"`, `"0.000001 usdc"`;
/// - on the wire and in journals (serde): a decimal string of base units,
///   `"12500000"`, as x402 and EIP-3009 write amounts, so that JSON readers in any
///   language keep every digit.
///
/// A bare integer such as `"12"` is therefore refused by `FromStr` (it would mean 12
/// tokens to a person and 12 base units on the wire) and a decimal or a unit is
/// refused by serde, each with an error that shows the form it expects.
///
/// ```
/// use wallets::Amount;
/// let price: Amount = "12.5 USDC".parse()?;
/// assert_eq!(price.base_units(), 12_500_000);
/// assert_eq!(price.to_string(), "12.50 USDC");
/// assert_eq!(price.checked_add(Amount::from_base_units(1))?.to_string(), "12.500001 USDC");
/// assert!("12".parse::<Amount>().is_err());
/// assert_eq!(serde_json::to_string(&price).unwrap(), r#""12500000""#);
/// # Ok::<(), wallets::Error>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

impl Amount {
    /// Decimal places of the stablecoin.
    pub const DECIMALS: u32 = 6;
    /// Base units in one whole token.
    pub const ONE: Self = Self(1_000_000);
    /// Nothing.
    pub const ZERO: Self = Self(0);
    /// The unit symbol used when displaying and accepted when parsing.
    pub const SYMBOL: &'static str = "USDC";

    /// An amount of `units` base units.
    pub const fn from_base_units(units: u128) -> Self {
        Self(units)
    }

    /// The amount in base units.
    pub const fn base_units(self) -> u128 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`Error::AmountOverflow`] if the sum does not fit.
    pub fn checked_add(self, other: Self) -> Result<Self> {
        self.0
            .checked_add(other.0)
            .map(Self)
            .ok_or(Error::AmountOverflow("overflowed on addition"))
    }

    /// `self - other`.
    ///
    /// # Errors
    /// [`Error::AmountOverflow`] if `other > self`.
    pub fn checked_sub(self, other: Self) -> Result<Self> {
        self.0
            .checked_sub(other.0)
            .map(Self)
            .ok_or(Error::AmountOverflow("went below zero on subtraction"))
    }

    /// `self * factor`.
    ///
    /// # Errors
    /// [`Error::AmountOverflow`] if the product does not fit.
    pub fn checked_mul(self, factor: u128) -> Result<Self> {
        self.0
            .checked_mul(factor)
            .map(Self)
            .ok_or(Error::AmountOverflow("overflowed on multiplication"))
    }

    /// The decimal form without the unit: `"12.50"`, `"0.000001"`.
    pub fn to_decimal_string(self) -> String {
        let scale = 10u128.pow(Self::DECIMALS);
        let whole = self.0 / scale;
        let frac = format!("{:06}", self.0 % scale);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.len() < 2 {
            format!("{frac:0<2}")
        } else {
            frac.to_owned()
        };
        format!("{whole}.{frac}")
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), Self::SYMBOL)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Amount {
    type Err = Error;

    /// Parses whole tokens: `"12 USDC"`, `"12.5"`, `"12.50 USDC"`, `"0.000001 usdc"`.
    /// Rejects a bare integer (ambiguous with the base units of the wire form), signs,
    /// exponents, separators, more than six decimals and any other unit.
    fn from_str(input: &str) -> Result<Self> {
        let err = |reason| Error::AmountParse {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let (number, has_unit) = match trimmed.split_once(char::is_whitespace) {
            Some((number, unit)) => {
                if !unit.trim().eq_ignore_ascii_case(Self::SYMBOL) {
                    return Err(err("unknown unit; expected USDC"));
                }
                (number, true)
            }
            None => (trimmed, false),
        };
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err("no digits"));
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("only digits and one decimal point are allowed"));
        }
        if number.contains('.') && (whole.is_empty() || frac.is_empty()) {
            return Err(err("a decimal point needs digits on both sides"));
        }
        if frac.len() > Self::DECIMALS as usize {
            return Err(err("more than 6 decimal places"));
        }
        if !has_unit && !number.contains('.') {
            return Err(err(
                "a bare integer is ambiguous: write whole tokens with the unit or a decimal point (\"12 USDC\", \"12.0\"); base units appear only in JSON",
            ));
        }
        let overflow = || err("too large");
        let whole: u128 = whole.parse().map_err(|_| overflow())?;
        let frac_units: u128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| overflow())?
        };
        whole
            .checked_mul(10u128.pow(Self::DECIMALS))
            .and_then(|w| w.checked_add(frac_units))
            .map(Self)
            .ok_or_else(overflow)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::primitives::deserialize_str(d, |s| {
            // `u128::from_str` also takes a leading `+`; the wire form is digits only.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "amount {s:?} must be a decimal string of base units (\"12500000\" for 12.50 USDC)"
                ));
            }
            s.parse::<u128>()
                .map(Self)
                .map_err(|_| format!("amount {s:?} is too large"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_forms() {
        for (text, units) in [
            ("12 USDC", 12_000_000),
            ("12.0", 12_000_000),
            ("12.5", 12_500_000),
            ("12.50 USDC", 12_500_000),
            ("  0.000001 usdc ", 1),
            ("0 USDC", 0),
            ("1000000.123456", 1_000_000_123_456),
        ] {
            assert_eq!(
                text.parse::<Amount>().unwrap().base_units(),
                units,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_forms_with_reasons() {
        for (text, reason) in [
            ("", "no digits"),
            ("12", "ambiguous"),
            ("12500000", "ambiguous"),
            ("-1", "only digits"),
            ("1e6", "only digits"),
            ("1,000", "only digits"),
            ("1.2.3", "only digits"),
            (".5", "both sides"),
            ("5.", "both sides"),
            ("0.0000001", "more than 6"),
            ("12 EUR", "unknown unit"),
            ("999999999999999999999999999999999999999 USDC", "too large"),
        ] {
            let err = text.parse::<Amount>().unwrap_err().to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn displays_at_least_two_decimals() {
        assert_eq!(Amount::from_base_units(0).to_string(), "0.00 USDC");
        assert_eq!(Amount::from_base_units(1).to_string(), "0.000001 USDC");
        assert_eq!(
            Amount::from_base_units(12_500_000).to_string(),
            "12.50 USDC"
        );
        assert_eq!(
            Amount::from_base_units(12_345_000).to_string(),
            "12.345 USDC"
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Amount::from_base_units(u128::MAX);
        assert!(max.checked_add(Amount::from_base_units(1)).is_err());
        assert!(Amount::ZERO
            .checked_sub(Amount::from_base_units(1))
            .is_err());
        assert!(max.checked_mul(2).is_err());
        assert_eq!(Amount::ONE.checked_mul(3).unwrap().base_units(), 3_000_000);
    }

    #[test]
    fn serde_uses_base_unit_strings() {
        let a = Amount::from_base_units(12_500_000);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"12500000\"");
        assert_eq!(serde_json::from_str::<Amount>("\"12500000\"").unwrap(), a);
        assert!(serde_json::from_str::<Amount>("12.5").is_err());
    }

    /// Regression: `FromStr` read "12" as 12 USDC while serde read it as 12 base
    /// units, so an amount copied from a journal into a config (or the reverse) was
    /// off by a factor of a million without an error.
    #[test]
    fn no_string_reads_as_two_amounts() {
        for text in ["12", "12500000", "0", "1"] {
            let wire = serde_json::from_str::<Amount>(&format!("{text:?}")).unwrap();
            let err = text.parse::<Amount>().unwrap_err().to_string();
            assert!(
                err.contains("ambiguous"),
                "{text}: read as {wire} and as {err}"
            );
        }
        for text in ["12.5", "12 USDC", "+12", "1e3", " 12"] {
            assert!(
                serde_json::from_str::<Amount>(&format!("{text:?}")).is_err(),
                "{text} is no base-unit string"
            );
        }
        // Journals written before keep their meaning: digits are base units.
        let old: Amount = serde_json::from_str("\"950000\"").unwrap();
        assert_eq!(old, "0.95 USDC".parse().unwrap());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(units in any::<u64>()) {
            let a = Amount::from_base_units(u128::from(units));
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }
    }
}
