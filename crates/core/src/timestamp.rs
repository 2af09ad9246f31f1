//! Timestamps: whole seconds, UTC, written `YYYY-MM-DDTHH:MM:SSZ`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::error::{Error, Result};

const FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// A point in time with one-second resolution (Unix seconds).
///
/// The canonical text form is RFC 3339 in UTC with whole seconds and a literal `Z`,
/// years 0000–9999, so that one instant has exactly one encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Earliest representable instant (0000-01-01T00:00:00Z).
    pub const MIN: Timestamp = Timestamp(-62_167_219_200);
    /// Latest representable instant (9999-12-31T23:59:59Z).
    pub const MAX: Timestamp = Timestamp(253_402_300_799);

    /// From Unix seconds; `None` outside years 0000–9999.
    #[must_use]
    pub fn from_unix(secs: i64) -> Option<Self> {
        (Self::MIN.0..=Self::MAX.0).contains(&secs).then_some(Timestamp(secs))
    }

    /// Unix seconds.
    #[must_use]
    pub fn unix(self) -> i64 {
        self.0
    }

    /// `self + secs`, saturating at the representable range.
    #[must_use]
    pub fn plus_seconds(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs).clamp(Self::MIN.0, Self::MAX.0))
    }

    /// `self - secs`, saturating at the representable range.
    #[must_use]
    pub fn minus_seconds(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_sub(secs).clamp(Self::MIN.0, Self::MAX.0))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    #[must_use]
    pub fn seconds_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// Parse the canonical form.
    ///
    /// # Errors
    /// [`Error::InvalidTimestamp`] for any other form (offsets, fractions, lowercase `z`).
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidTimestamp(s.to_owned());
        if s.len() != 20 {
            return Err(invalid());
        }
        let dt = PrimitiveDateTime::parse(s, FORMAT).map_err(|_| invalid())?;
        Ok(Timestamp(dt.assume_utc().unix_timestamp()))
    }

    fn to_datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.0).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime().and_then(|dt| dt.format(FORMAT).ok()) {
            Some(s) => f.write_str(&s),
            None => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_canonical_form() {
        let t = Timestamp::parse("2026-11-28T19:42:54Z").unwrap();
        assert_eq!(t.unix(), 1_795_894_974);
        assert_eq!(t.to_string(), "2026-11-28T19:42:54Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(0).unwrap().to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn rejects_other_forms() {
        for s in [
            "2026-11-28T19:42:54z",
            "2026-11-28T19:42:54+00:00",
            "2026-11-28T19:42:54.000Z",
            "2026-11-28 19:42:54Z",
            "2026-02-30T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "+2026-11-28T19:42:54Z",
            "",
        ] {
            assert_eq!(Timestamp::parse(s), Err(Error::InvalidTimestamp(s.to_owned())), "{s}");
        }
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::MAX.plus_seconds(10), Timestamp::MAX);
        assert_eq!(Timestamp::MIN.minus_seconds(10), Timestamp::MIN);
        assert!(Timestamp::from_unix(Timestamp::MAX.unix() + 1).is_none());
        let t = Timestamp::from_unix(100).unwrap();
        assert_eq!(t.plus_seconds(5).seconds_since(t), 5);
    }
}
