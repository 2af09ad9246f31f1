//! The canonical form of an operation, its digest and its human fingerprint.
//!
//! ```text
//! canonical = JCS({"v": 1, ...operation members...})          RFC 8785
//! digest    = SHA-256("countersign:op:v1" || 0x00 || canonical)
//! fingerprint = base32(digest[0..10]) in 4 groups of 4, e.g. "K3QF-7ZPA-M2XD-C4LB"
//! ```
//!
//! Decoding is strict: the bytes must be exactly the canonical encoding of a valid
//! operation, so that one operation has one byte string and one digest. Every way
//! to fail has its own [`Error`] variant; see `docs/protocol.md`.

use std::cell::Cell;
use std::fmt;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD, HEXLOWER};
use serde::Serialize;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::operation::Operation;

/// The canonical-form version this implementation writes and reads.
pub const CANONICAL_VERSION: u64 = 1;

/// Domain-separation prefix of the operation digest (followed by one 0x00 byte).
pub const DIGEST_DOMAIN: &[u8] = b"countersign:op:v1";

/// The wire envelope: the version member next to the operation's own members.
#[derive(Serialize)]
struct Versioned<'a> {
    v: u64,
    #[serde(flatten)]
    op: &'a Operation,
}

/// Encode an operation in its canonical form (RFC 8785 JSON, UTF-8).
///
/// # Errors
/// [`Error::InvalidOperation`] only if a value cannot be written (e.g. a timestamp
/// outside years 0000–9999), which the constructors already prevent.
pub fn encode(op: &Operation) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(&Versioned { v: CANONICAL_VERSION, op })
        .map_err(|e| Error::InvalidOperation(e.to_string()))
}

/// RFC 8785 bytes of any serialisable value (for documents other than operations:
/// audit entries, checkpoints, release documents).
///
/// # Errors
/// [`Error::InvalidOperation`] when the value cannot be written.
pub fn jcs<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| Error::InvalidOperation(e.to_string()))
}

/// Decode canonical bytes into an operation, refusing anything that is not exactly
/// the canonical encoding of a valid operation.
///
/// Checks run in this order, and the first failure is returned:
/// 1. JSON syntax ([`Error::MalformedJson`]) and duplicate member names anywhere
///    ([`Error::DuplicateKey`]);
/// 2. nothing after the value ([`Error::TrailingData`]);
/// 3. an integer `v` member ([`Error::MissingVersion`]) equal to 1 ([`Error::UnknownVersion`]);
/// 4. the bytes equal the RFC 8785 form of the parsed value ([`Error::NotCanonical`]);
/// 5. the members describe a valid operation ([`Error::InvalidOperation`]; an
///    embedded policy that is inconsistent gives [`Error::InvalidPolicy`]), and
///    re-encoding it gives the same bytes ([`Error::NotCanonical`], e.g. an unsorted set).
///
/// # Errors
/// As listed above.
pub fn decode(bytes: &[u8]) -> Result<Operation> {
    let value = parse_strict(bytes)?;
    let Value::Object(mut members) = value else {
        return Err(Error::MissingVersion);
    };
    match members.get("v").map(Value::as_u64) {
        Some(Some(CANONICAL_VERSION)) => {}
        Some(Some(other)) => return Err(Error::UnknownVersion(other)),
        _ => return Err(Error::MissingVersion),
    }
    let recanonical =
        serde_json_canonicalizer::to_vec(&members).map_err(|e| Error::MalformedJson(e.to_string()))?;
    if recanonical != bytes {
        return Err(Error::NotCanonical);
    }
    members.remove("v");
    let op: Operation =
        serde_json::from_value(Value::Object(members)).map_err(|e| Error::InvalidOperation(e.to_string()))?;
    op.validate()?;
    if encode(&op)? != bytes {
        return Err(Error::NotCanonical);
    }
    Ok(op)
}

/// Parse JSON, refusing duplicate member names and trailing bytes.
///
/// Used for the canonical form and for clientDataJSON: a signer and a verifier must
/// never disagree on which of two same-named members counts.
///
/// # Errors
/// [`Error::MalformedJson`], [`Error::DuplicateKey`] or [`Error::TrailingData`].
pub fn parse_strict(bytes: &[u8]) -> Result<Value> {
    let duplicate = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value =
        StrictValue { duplicate: &duplicate }.deserialize(&mut de).map_err(|e| match duplicate.take() {
            Some(key) => Error::DuplicateKey(key),
            None => Error::MalformedJson(e.to_string()),
        })?;
    de.end().map_err(|_| Error::TrailingData)?;
    Ok(value)
}

/// A `serde_json::Value` seed that records the first duplicate member name.
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                let message = format!("duplicate key {key:?}");
                self.duplicate.set(Some(key));
                return Err(serde::de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// SHA-256 digest of an operation's canonical form, with domain separation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of canonical bytes (already encoded).
    #[must_use]
    pub fn of_canonical(canonical: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(DIGEST_DOMAIN);
        h.update([0u8]);
        h.update(canonical);
        Digest(h.finalize().into())
    }

    /// Digest of an operation.
    ///
    /// # Errors
    /// As [`encode`].
    pub fn of(op: &Operation) -> Result<Self> {
        Ok(Self::of_canonical(&encode(op)?))
    }

    /// The raw 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// base64url without padding (43 characters): the form used in the approval binding.
    #[must_use]
    pub fn to_base64url(&self) -> String {
        BASE64URL_NOPAD.encode(&self.0)
    }

    /// Parse base64url without padding.
    ///
    /// # Errors
    /// [`Error::InvalidDigest`] unless exactly 32 bytes in canonical base64url.
    pub fn from_base64url(s: &str) -> Result<Self> {
        let bytes = BASE64URL_NOPAD.decode(s.as_bytes()).map_err(|_| Error::InvalidDigest)?;
        <[u8; 32]>::try_from(bytes).map(Digest).map_err(|_| Error::InvalidDigest)
    }

    /// Lowercase hex (64 characters).
    #[must_use]
    pub fn to_hex(&self) -> String {
        HEXLOWER.encode(&self.0)
    }

    /// The short form people compare on a second channel.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(BASE32_NOPAD.encode(&self.0[..10]))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The first 80 bits of a digest in RFC 4648 base32, shown as `XXXX-XXXX-XXXX-XXXX`.
///
/// Long enough that an attacker cannot find a different operation with the same
/// fingerprint (a 2^80 second-preimage search), short enough to read aloud.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The 16 characters without separators.
    #[must_use]
    pub fn compact(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // The alphabet is ASCII, so every chunk is valid UTF-8.
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parse_rejects_duplicates_at_any_depth() {
        assert_eq!(parse_strict(br#"{"a":1,"a":2}"#), Err(Error::DuplicateKey("a".into())));
        assert_eq!(parse_strict(br#"{"x":[{"b":{"c":1,"c":1}}]}"#), Err(Error::DuplicateKey("c".into())));
        assert!(parse_strict(br#"{"a":{"a":1}}"#).is_ok());
    }

    #[test]
    fn strict_parse_rejects_trailing_bytes_but_not_whitespace() {
        assert_eq!(parse_strict(br#"{"a":1}{}"#), Err(Error::TrailingData));
        assert_eq!(parse_strict(br#"{"a":1} x"#), Err(Error::TrailingData));
        assert!(parse_strict(b"{\"a\":1}\n").is_ok());
    }

    #[test]
    fn strict_parse_reports_syntax_errors() {
        for bad in [&b"{"[..], b"", b"{\"a\":}", b"\xff", b"[1,]", b"{\"a\":1e999}"] {
            assert!(matches!(parse_strict(bad), Err(Error::MalformedJson(_))), "{bad:?}");
        }
    }

    #[test]
    fn digest_encodings_round_trip_and_reject_bad_lengths() {
        let d = Digest::of_canonical(b"{}");
        assert_eq!(Digest::from_base64url(&d.to_base64url()).unwrap(), d);
        assert_eq!(d.to_hex().len(), 64);
        assert_eq!(Digest::from_base64url("AAAA"), Err(Error::InvalidDigest));
        assert_eq!(Digest::from_base64url(&(d.to_base64url() + "=")), Err(Error::InvalidDigest));
    }

    #[test]
    fn fingerprint_is_four_groups_of_four() {
        let fp = Digest::from_bytes([0u8; 32]).fingerprint();
        assert_eq!(fp.to_string(), "AAAA-AAAA-AAAA-AAAA");
        let fp = Digest::from_bytes([0xff; 32]).fingerprint();
        assert_eq!(fp.to_string(), "7777-7777-7777-7777");
        assert_eq!(fp.compact().len(), 16);
    }
}
