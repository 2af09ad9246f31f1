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

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{Digest, parse_strict};
use crate::error::{Error, Result};
use crate::operation::Operation;

/// The name of the clientDataJSON member.
pub const MEMBER_NAME: &str = "countersign";

/// The binding format version.
pub const BINDING_VERSION: u64 = 1;

/// What an approver decides about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Count me towards the quorum.
    Approve,
    /// Refuse it (one rejection vetoes by default).
    Reject,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        })
    }
}

/// The `countersign` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBinding {
    /// Always [`BINDING_VERSION`].
    pub v: u64,
    /// The operation id.
    pub op: String,
    /// The operation digest, base64url without padding.
    pub digest: String,
    /// The decision.
    pub decision: Decision,
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
        })
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
        if self.v != BINDING_VERSION {
            return Err(Error::BindingVersion(self.v));
        }
        if self.op != op.id.as_str() {
            return Err(Error::BindingOperationMismatch { expected: op.id.clone(), found: self.op.clone() });
        }
        let expected = Digest::of(op)?;
        // Compare decoded bytes so that only the one canonical base64url spelling passes.
        match Digest::from_base64url(&self.digest) {
            Ok(found) if found == expected => {}
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
