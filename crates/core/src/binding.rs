//! The approval binding: the `countersign` member of WebAuthn clientDataJSON.
//!
//! A WebAuthn assertion signs `authenticatorData || SHA-256(clientDataJSON)`. The
//! desktop app puts this member into clientDataJSON, next to the standard members,
//! so the hardware key's signature covers the exact operation and decision:
//!
//! ```json
//! {"type":"webauthn.get","challenge":"…","origin":"…","crossOrigin":false,
//!  "countersign":{"v":1,"op":"op_123","digest":"<base64url>","decision":"approve"}}
//! ```
//!
//! The client computes `digest` itself from the canonical operation it displays; the
//! gateway refuses a binding that does not match the stored operation and decision.
//!
//! Version 2 also signs what the person wrote with the decision (a rejection's
//! reason, an approval's comment), so nobody can change it after the touch:
//! `"countersign":{"v":2,"op":…,"digest":…,"decision":"reject","reason":"<base64url>"}`
//! where `reason` is [`reason_hash`] of the text (of `""` for none). Version 1 signs
//! no text: a decision sent with it carries no reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{Digest, parse_strict};
use crate::error::{Error, Result};
use crate::operation::Operation;

/// The name of the clientDataJSON member.
pub const MEMBER_NAME: &str = "countersign";

/// The binding format version without a signed reason.
pub const BINDING_VERSION: u64 = 1;

/// The binding format version that also signs the decision's reason.
pub const BINDING_VERSION_REASON: u64 = 2;

/// The domain of [`reason_hash`].
pub const REASON_DOMAIN: &str = "countersign:reason:v1";

/// `base64url(SHA-256("countersign:reason:v1" || 0x00 || UTF-8 text))`: what a
/// version 2 binding signs for the reason.
#[must_use]
pub fn reason_hash(reason: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(REASON_DOMAIN.as_bytes());
    h.update([0]);
    h.update(reason.as_bytes());
    data_encoding::BASE64URL_NOPAD.encode(&h.finalize())
}

pub use crate::decision::Decision;

/// The `countersign` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBinding {
    /// [`BINDING_VERSION`], or [`BINDING_VERSION_REASON`] with `reason`.
    pub v: u64,
    /// The operation id.
    pub op: String,
    /// The operation digest, base64url without padding.
    pub digest: String,
    pub decision: Decision,
    /// Version 2: [`reason_hash`] of the reason sent with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ApprovalBinding {
    /// The binding for deciding `op`; computes the digest from the operation itself.
    ///
    /// # Errors
    /// As [`crate::canonical::encode`].
    pub fn new(op: &Operation, decision: Decision) -> Result<Self> {
        Ok(ApprovalBinding {
            v: BINDING_VERSION,
            op: op.id.as_str().to_owned(),
            digest: Digest::of(op)?.to_base64url(),
            decision,
            reason: None,
        })
    }

    /// The version 2 binding: deciding `op` with `reason` (the text is signed by its
    /// hash; `None` signs that there is none).
    ///
    /// # Errors
    /// As [`crate::canonical::encode`].
    pub fn with_reason(op: &Operation, decision: Decision, reason: Option<&str>) -> Result<Self> {
        Ok(ApprovalBinding {
            v: BINDING_VERSION_REASON,
            reason: Some(reason_hash(reason.unwrap_or(""))),
            ..Self::new(op, decision)?
        })
    }

    /// Require the reason sent with the decision to be the one signed: for version
    /// 2, its hash; for version 1 (which signs none), no reason at all.
    ///
    /// # Errors
    /// [`Error::BindingReasonMismatch`].
    pub fn check_reason(&self, reason: Option<&str>) -> Result<()> {
        let signed = match (self.v, &self.reason) {
            (BINDING_VERSION_REASON, Some(hash)) => *hash == reason_hash(reason.unwrap_or("")),
            (_, None) => reason.is_none_or(str::is_empty),
            _ => false,
        };
        if signed { Ok(()) } else { Err(Error::BindingReasonMismatch) }
    }

    /// Extract the binding from raw clientDataJSON bytes (strictly parsed: duplicate
    /// members anywhere, or trailing bytes, are refused).
    ///
    /// # Errors
    /// [`Error::BindingMissing`] when the member is absent or malformed;
    /// [`Error::DuplicateKey`], [`Error::MalformedJson`], [`Error::TrailingData`]
    /// for the JSON itself.
    pub fn from_client_data_json(client_data_json: &[u8]) -> Result<Self> {
        let Value::Object(mut members) = parse_strict(client_data_json)? else {
            return Err(Error::BindingMissing("clientDataJSON is not an object".into()));
        };
        let member = members
            .remove(MEMBER_NAME)
            .ok_or_else(|| Error::BindingMissing("no \"countersign\" member".into()))?;
        serde_json::from_value(member).map_err(|e| Error::BindingMissing(e.to_string()))
    }

    /// Require this binding to be for exactly `op` and `decision`.
    ///
    /// The digest is recomputed from `op` here; a digest supplied by anyone else is
    /// never trusted.
    ///
    /// # Errors
    /// [`Error::BindingVersion`], [`Error::BindingOperationMismatch`],
    /// [`Error::BindingDigestMismatch`] or [`Error::BindingDecisionMismatch`],
    /// checked in that order.
    pub fn check(&self, op: &Operation, decision: Decision) -> Result<()> {
        self.check_version()?;
        self.check_document(op.id.as_str(), &Digest::of(op)?, decision)
    }

    /// The binding that signs a document other than an operation (the authority
    /// chain's genesis): `op` is the document's name, `digest` its hash, and the
    /// decision `approve`; version 2 with no reason.
    #[must_use]
    pub fn for_document(name: &str, digest: &Digest) -> Self {
        ApprovalBinding {
            v: BINDING_VERSION_REASON,
            op: name.to_owned(),
            digest: digest.to_base64url(),
            decision: Decision::Approve,
            reason: Some(reason_hash("")),
        }
    }

    fn check_version(&self) -> Result<()> {
        match (self.v, &self.reason) {
            (BINDING_VERSION, None) | (BINDING_VERSION_REASON, Some(_)) => Ok(()),
            _ => Err(Error::BindingVersion(self.v)),
        }
    }

    /// Require this binding to name `name`, sign `expected` and `decision` (the steps
    /// of [`ApprovalBinding::check`] after the version, for any document).
    ///
    /// # Errors
    /// As [`ApprovalBinding::check`].
    pub fn check_document(&self, name: &str, expected: &Digest, decision: Decision) -> Result<()> {
        self.check_version()?;
        if self.op != name {
            return Err(Error::BindingOperationMismatch {
                expected: name.to_owned(),
                found: self.op.clone(),
            });
        }
        // Compare decoded bytes so that only the one canonical base64url spelling passes.
        match Digest::from_base64url(&self.digest) {
            Ok(found) if found == *expected => {}
            _ => return Err(Error::BindingDigestMismatch),
        }
        if self.decision != decision {
            return Err(Error::BindingDecisionMismatch { expected: decision, found: self.decision });
        }
        Ok(())
    }
}

/// Build clientDataJSON for an approval assertion: the WebAuthn members in the order
/// browsers write them, then the binding.
///
/// `challenge` is the gateway's challenge, base64url without padding.
///
/// # Errors
/// [`Error::InvalidOperation`] only if serialisation fails, which it cannot for
/// these member types.
pub fn client_data_json(challenge: &str, origin: &str, binding: &ApprovalBinding) -> Result<Vec<u8>> {
    #[derive(Serialize)]
    struct ClientData<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        challenge: &'a str,
        origin: &'a str,
        #[serde(rename = "crossOrigin")]
        cross_origin: bool,
        countersign: &'a ApprovalBinding,
    }
    serde_json::to_vec(&ClientData {
        kind: "webauthn.get",
        challenge,
        origin,
        cross_origin: false,
        countersign: binding,
    })
    .map_err(|e| Error::InvalidOperation(e.to_string()))
}
