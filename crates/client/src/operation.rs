//! What the approver is shown and signs, rebuilt from the canonical bytes alone.
//!
//! The gateway sends an operation three ways: the canonical bytes, a JSON object of
//! the same operation, and its digest and fingerprint. The client decodes the
//! canonical bytes strictly, computes the digest and fingerprint itself, and refuses
//! the operation if anything the gateway claims differs. Everything shown and
//! everything signed comes from [`VerifiedOperation::operation`].

use countersign_core::canonical::{self, Digest, Fingerprint};
use countersign_core::certificate::{CertifiedApproval, DecisionCheck, Registry, check_decision};
use countersign_core::id::ApproverId;
use countersign_core::{Decision, Operation, Timestamp};
use serde::{Deserialize, Serialize};
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
    /// The decisions recorded so far, each checked here against its signature.
    pub decisions: Vec<CheckedDecision>,
}

/// One recorded decision and what its signature says about it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedDecision {
    pub approver: ApproverId,
    pub decision: Decision,
    /// What the gateway says the person wrote.
    pub reason: Option<String>,
    pub decided_at: Timestamp,
    /// Checked in this client against the registry: [`DecisionCheck`].
    pub check: DecisionCheck,
}

/// A decision as the gateway's view carries it.
#[derive(Debug, Deserialize)]
struct RecordedDecision {
    approver: ApproverId,
    credential_id: String,
    decision: Decision,
    reason: Option<String>,
    authenticator_data: String,
    client_data_json: String,
    signature: String,
    decided_at: Timestamp,
}

/// The decisions in an operation view, each checked against `registry`: the
/// signature, that it binds this operation and decision, and that the reason shown
/// is the one signed. Without a registry, every decision is [`DecisionCheck::KeyNotInRegistry`].
///
/// # Errors
/// [`Error::Protocol`] for a malformed decisions list.
pub fn check_decisions(
    op: &Operation,
    view: &Value,
    registry: Option<&Registry>,
) -> Result<Vec<CheckedDecision>> {
    let Some(list) = view.get("decisions") else { return Ok(Vec::new()) };
    let recorded: Vec<RecordedDecision> = serde_json::from_value(list.clone())
        .map_err(|e| Error::Protocol(format!("malformed decisions: {e}")))?;
    Ok(recorded
        .into_iter()
        .map(|d| {
            let signed = CertifiedApproval {
                approver: d.approver.clone(),
                credential_id: d.credential_id,
                authenticator_data: d.authenticator_data,
                client_data_json: d.client_data_json,
                signature: d.signature,
            };
            let check = match registry {
                Some(r) => check_decision(op, d.decision, d.reason.as_deref(), &signed, r),
                None => DecisionCheck::KeyNotInRegistry,
            };
            CheckedDecision {
                approver: d.approver,
                decision: d.decision,
                reason: d.reason,
                decided_at: d.decided_at,
                check,
            }
        })
        .collect())
}

impl VerifiedOperation {
    /// Check an operation view from the gateway.
    ///
    /// # Errors
    /// [`Error::Tampered`] when the canonical form does not decode or any claim
    /// differs from it; [`Error::Protocol`] when fields are missing.
    pub fn from_view(view: &Value) -> Result<VerifiedOperation> {
        Self::from_view_checked(view, None)
    }

    /// [`VerifiedOperation::from_view`], with the decisions on it checked against
    /// `registry` ([`check_decisions`]).
    ///
    /// # Errors
    /// As [`VerifiedOperation::from_view`], and for a malformed decisions list.
    pub fn from_view_checked(view: &Value, registry: Option<&Registry>) -> Result<VerifiedOperation> {
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
            digest,
            fingerprint,
            state: field("state")?.as_str().unwrap_or_default().to_owned(),
            verdict: view.get("verdict").cloned().unwrap_or(Value::Null),
            risk: view.get("risk").cloned().unwrap_or(Value::Null),
            decisions: check_decisions(&operation, view, registry)?,
            operation,
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
