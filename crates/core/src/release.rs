//! The release document: what settlement receives with a released operation, and
//! the check settlement runs before moving anything.
//!
//! ```text
//! signature = Ed25519(gateway key, "countersign:release:v1" || 0x00 || JCS(document without "signature"))
//! ```
//!
//! [`verify_release`] is what an exchange's settlement system (or the webhook
//! receiver) calls: it refuses a document that is not signed by the gateway key it
//! trusts, whose operation is not in canonical form, or whose digest does not match.

use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, Digest, parse_strict};
use crate::operation::Operation;
use crate::timestamp::Timestamp;

/// Domain prefix of release signatures.
pub const RELEASE_DOMAIN: &[u8] = b"countersign:release:v1";

/// Why the operation was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseBasis {
    /// Below every threshold: policy allowed it without approval.
    AllowedByPolicy,
    /// The quorum approved it (the approvals are in the document).
    Quorum,
}

/// The signed release document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDocument {
    /// Format version, 1.
    pub version: u32,
    /// The operation's canonical form (RFC 8785 text).
    pub operation: String,
    /// Its digest, hex.
    pub digest: String,
    /// Why it was released.
    pub basis: ReleaseBasis,
    /// The approvals that formed the quorum (empty when allowed by policy).
    pub approvals: Vec<Value>,
    /// When it was released.
    pub released_at: Timestamp,
    /// The gateway's Ed25519 public key, base64url.
    pub gateway_key: String,
    /// Ed25519 signature, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

/// Why a release document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// Not a release document (syntax, duplicate keys, unknown or missing members).
    #[error("not a release document: {0}")]
    Malformed(String),
    /// An unknown format version.
    #[error("unsupported release document version {0}")]
    Version(u32),
    /// Signed by a key other than the trusted gateway key.
    #[error("signed by another key than the trusted gateway key")]
    WrongKey,
    /// The signature does not verify.
    #[error("the gateway signature does not verify")]
    BadSignature,
    /// The operation is not a strictly canonical operation.
    #[error("the operation does not decode: {0}")]
    BadOperation(crate::Error),
    /// The digest does not match the operation.
    #[error("the digest does not match the operation")]
    DigestMismatch,
    /// Released on a quorum but without approvals, or on policy with some.
    #[error("the release basis and the approvals disagree")]
    BasisMismatch,
}

impl ReleaseError {
    /// A stable code, e.g. `release.bad_signature`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "release.malformed",
            Self::Version(_) => "release.unsupported_version",
            Self::WrongKey => "release.wrong_key",
            Self::BadSignature => "release.bad_signature",
            Self::BadOperation(_) => "release.bad_operation",
            Self::DigestMismatch => "release.digest_mismatch",
            Self::BasisMismatch => "release.basis_mismatch",
        }
    }
}

fn message(doc: &ReleaseDocument) -> Result<Vec<u8>, ReleaseError> {
    let unsigned = ReleaseDocument { signature: String::new(), ..doc.clone() };
    let jcs = canonical::jcs(&unsigned).map_err(|e| ReleaseError::Malformed(e.to_string()))?;
    let mut msg = RELEASE_DOMAIN.to_vec();
    msg.push(0);
    msg.extend(jcs);
    Ok(msg)
}

/// Build and sign the release document for `op`.
///
/// # Errors
/// [`ReleaseError::Malformed`] only if the operation cannot be encoded.
pub fn sign_release(
    op: &Operation,
    basis: ReleaseBasis,
    approvals: Vec<Value>,
    released_at: Timestamp,
    key: &SigningKey,
) -> Result<ReleaseDocument, ReleaseError> {
    let bytes = canonical::encode(op).map_err(ReleaseError::BadOperation)?;
    let mut doc = ReleaseDocument {
        version: 1,
        operation: String::from_utf8(bytes).map_err(|e| ReleaseError::Malformed(e.to_string()))?,
        digest: Digest::of(op).map_err(ReleaseError::BadOperation)?.to_hex(),
        basis,
        approvals,
        released_at,
        gateway_key: BASE64URL_NOPAD.encode(key.verifying_key().as_bytes()),
        signature: String::new(),
    };
    doc.signature = BASE64URL_NOPAD.encode(&key.sign(&message(&doc)?).to_bytes());
    Ok(doc)
}

/// Check a release document as settlement receives it (raw JSON bytes) against the
/// gateway key settlement trusts; returns the operation to execute.
///
/// Quorum approvals are carried but not yet verified here; that check arrives with
/// the approval ceremony, and until then a `quorum` basis is refused outright.
///
/// # Errors
/// The first failed check, as a [`ReleaseError`].
pub fn verify_release(json: &[u8], trusted: &VerifyingKey) -> Result<Operation, ReleaseError> {
    let value = parse_strict(json).map_err(|e| ReleaseError::Malformed(e.to_string()))?;
    let doc: ReleaseDocument =
        serde_json::from_value(value).map_err(|e| ReleaseError::Malformed(e.to_string()))?;
    if doc.version != 1 {
        return Err(ReleaseError::Version(doc.version));
    }
    if doc.gateway_key != BASE64URL_NOPAD.encode(trusted.as_bytes()) {
        return Err(ReleaseError::WrongKey);
    }
    let sig = BASE64URL_NOPAD
        .decode(doc.signature.as_bytes())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or(ReleaseError::BadSignature)?;
    trusted
        .verify_strict(&message(&doc)?, &Signature::from_bytes(&sig))
        .map_err(|_| ReleaseError::BadSignature)?;
    let op = canonical::decode(doc.operation.as_bytes()).map_err(ReleaseError::BadOperation)?;
    if Digest::of(&op).map_err(ReleaseError::BadOperation)?.to_hex() != doc.digest {
        return Err(ReleaseError::DigestMismatch);
    }
    match (doc.basis, doc.approvals.is_empty()) {
        (ReleaseBasis::AllowedByPolicy, true) => Ok(op),
        // Fail closed until quorum certificates are verified here.
        _ => Err(ReleaseError::BasisMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{Action, Unfreeze};

    fn op() -> Operation {
        Operation {
            id: "op_1".parse().unwrap(),
            created_at: Timestamp::from_unix(1_795_867_200).unwrap(),
            expires_at: Timestamp::from_unix(1_795_870_800).unwrap(),
            policy_version: 1,
            initiator: crate::Initiator::Approver { approver: "alice".parse().unwrap() },
            action: Action::Unfreeze(Unfreeze { reason: "x".into() }),
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn signed() -> ReleaseDocument {
        sign_release(
            &op(),
            ReleaseBasis::AllowedByPolicy,
            vec![],
            Timestamp::from_unix(1_795_867_201).unwrap(),
            &key(),
        )
        .unwrap()
    }

    fn check(doc: &ReleaseDocument) -> Result<Operation, ReleaseError> {
        verify_release(&serde_json::to_vec(doc).unwrap(), &key().verifying_key())
    }

    #[test]
    fn a_signed_release_verifies_and_yields_the_operation() {
        assert_eq!(check(&signed()).unwrap(), op());
    }

    #[test]
    fn every_change_is_refused_with_its_code() {
        let other = SigningKey::from_bytes(&[6; 32]);
        let cases: Vec<(&str, ReleaseDocument)> = vec![
            ("release.unsupported_version", ReleaseDocument { version: 2, ..signed() }),
            (
                "release.wrong_key",
                ReleaseDocument {
                    gateway_key: BASE64URL_NOPAD.encode(other.verifying_key().as_bytes()),
                    ..signed()
                },
            ),
            (
                "release.bad_signature",
                ReleaseDocument { released_at: Timestamp::from_unix(1).unwrap(), ..signed() },
            ),
            ("release.bad_signature", ReleaseDocument { signature: "AAAA".into(), ..signed() }),
            ("release.bad_signature", ReleaseDocument { approvals: vec![Value::Null], ..signed() }),
        ];
        for (code, doc) in cases {
            assert_eq!(check(&doc).unwrap_err().code(), code);
        }
        // Re-signed by the trusted key but internally inconsistent:
        let resign = |mut d: ReleaseDocument| {
            d.signature = BASE64URL_NOPAD.encode(&key().sign(&message(&d).unwrap()).to_bytes());
            d
        };
        let mut d = signed();
        d.digest = "00".repeat(32);
        assert_eq!(check(&resign(d)).unwrap_err().code(), "release.digest_mismatch");
        let mut d = signed();
        d.operation.push(' ');
        assert_eq!(check(&resign(d)).unwrap_err().code(), "release.bad_operation");
        let mut d = signed();
        d.basis = ReleaseBasis::Quorum;
        assert_eq!(check(&resign(d)).unwrap_err().code(), "release.basis_mismatch");
        // Not a document at all, or with a duplicated member.
        let e = verify_release(b"{\"version\":1,\"version\":1}", &key().verifying_key()).unwrap_err();
        assert_eq!(e.code(), "release.malformed");
        let mut v = serde_json::to_value(signed()).unwrap();
        v["extra"] = Value::Bool(true);
        let e = verify_release(&serde_json::to_vec(&v).unwrap(), &key().verifying_key()).unwrap_err();
        assert_eq!(e.code(), "release.malformed");
    }
}
