//! What the approver is shown and signs, rebuilt from the canonical bytes alone.
//!
//! The gateway sends an operation three ways: the canonical bytes, a JSON object of
//! the same operation, and its digest and fingerprint. The client decodes the
//! canonical bytes strictly, computes the digest and fingerprint itself, and refuses
//! the operation if anything the gateway claims differs. Everything shown and
//! everything signed comes from [`VerifiedOperation::operation`].

use countersign_core::canonical::{self, Digest, Fingerprint};
use countersign_core::{Decision, Operation};
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// An operation whose every claimed detail was checked against its canonical form.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedOperation {
    /// The operation, decoded from the canonical bytes.
    pub operation: Operation,
    /// Its digest (lowercase hex), computed here.
    pub digest: String,
    /// Its fingerprint, computed here, for comparison on a second channel.
    pub fingerprint: String,
    /// The gateway's state for it (`pending`, `released`, …).
    pub state: String,
    /// The policy's verdict (who must approve), as the gateway reports it.
    pub verdict: Value,
    /// Risk signals about the initiating API key, as the gateway reports them.
    pub risk: Value,
}

impl VerifiedOperation {
    /// Check an operation view from the gateway.
    ///
    /// # Errors
    /// [`Error::Tampered`] when the canonical form does not decode or any claim
    /// differs from it; [`Error::Protocol`] when fields are missing.
    pub fn from_view(view: &Value) -> Result<VerifiedOperation> {
        let field =
            |name: &str| view.get(name).ok_or_else(|| Error::Protocol(format!("operation without {name}")));
        let canonical_text = field("canonical")?
            .as_str()
            .ok_or_else(|| Error::Protocol("canonical is not a string".into()))?;
        let operation = canonical::decode(canonical_text.as_bytes())
            .map_err(|e| Error::Tampered(format!("the canonical operation does not decode: {e}")))?;
        let digest = Digest::of(&operation).map_err(|e| Error::Tampered(e.to_string()))?;
        let fingerprint: Fingerprint = digest.fingerprint();
        let (digest, fingerprint) = (digest.to_hex(), fingerprint.to_string());
        if field("digest")?.as_str() != Some(digest.as_str()) {
            return Err(Error::Tampered(format!(
                "the gateway's digest {} is not the digest of the operation ({digest})",
                field("digest")?
            )));
        }
        if field("fingerprint")?.as_str() != Some(fingerprint.as_str()) {
            return Err(Error::Tampered("the fingerprint shown is not the operation's".into()));
        }
        let claimed = field("operation")?;
        let actual = serde_json::to_value(&operation).map_err(|e| Error::Protocol(e.to_string()))?;
        if *claimed != actual {
            return Err(Error::Tampered(
                "the operation's details differ from its canonical form (amount, destination or another field)"
                    .into(),
            ));
        }
        Ok(VerifiedOperation {
            operation,
            digest,
            fingerprint,
            state: field("state")?.as_str().unwrap_or_default().to_owned(),
            verdict: view.get("verdict").cloned().unwrap_or(Value::Null),
            risk: view.get("risk").cloned().unwrap_or(Value::Null),
        })
    }

    /// The clientDataJSON the key signs for `decision` with `reason`: the standard
    /// members and the `countersign` member (version 2) binding this operation's
    /// digest, the decision and the reason's hash, so nobody can change the reason
    /// after the touch.
    ///
    /// # Errors
    /// Only if the binding cannot be built (an operation that does not encode).
    pub fn client_data_json(
        &self,
        challenge: &[u8],
        origin: &str,
        decision: Decision,
        reason: Option<&str>,
    ) -> Result<Vec<u8>> {
        let binding = countersign_core::ApprovalBinding::with_reason(&self.operation, decision, reason)
            .map_err(|e| Error::Tampered(e.to_string()))?;
        let challenge = data_encoding::BASE64URL_NOPAD.encode(challenge);
        countersign_core::binding::client_data_json(&challenge, origin, &binding)
            .map_err(|e| Error::Protocol(e.to_string()))
    }
}
