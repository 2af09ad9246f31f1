//! The release document: what settlement receives with a released operation, and
//! the check settlement runs before moving anything.
//!
//! ```text
//! signature = Ed25519(gateway key, "countersign:release:v1" || 0x00 || JCS(document without "signature"))
//! ```
//!
//! [`verify_release`] is what an exchange's settlement system (or the webhook
//! receiver) calls: it refuses a document that is not signed by the gateway key it
//! trusts, whose operation is not in canonical form, or whose digest does not match;
//! and — not trusting the gateway's judgement — it refuses an operation "allowed by
//! policy" that the policy settlement trusts would have held, and a quorum release
//! whose approvals do not verify against the approver registry
//! ([`crate::certificate::verify_quorum`]).

use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::authority::{Authority, AuthorityError, Head};
use crate::canonical::{self, Digest, parse_strict};
use crate::certificate::{CertificateError, CertifiedApproval, Registry, policy_floor, verify_quorum};
use crate::operation::Operation;
use crate::policy::{Policy, Quorum};
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
    /// The quorum the operation needed (absent when allowed by policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<Quorum>,
    /// The approvals that formed the quorum (empty when allowed by policy).
    pub approvals: Vec<CertifiedApproval>,
    /// When it was released.
    pub released_at: Timestamp,
    /// The head of the authority chain it was decided under (absent before genesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Head>,
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
    /// "Allowed by policy", but the trusted policy requires approval for it.
    #[error("the trusted policy requires approval for this operation")]
    QuorumRequired,
    /// Quorum evidence that does not verify.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The authority chain does not support it.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
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
            Self::QuorumRequired => "release.quorum_required",
            Self::Certificate(e) => e.code(),
            Self::Authority(e) => e.code(),
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
    quorum: Option<Quorum>,
    approvals: Vec<CertifiedApproval>,
    released_at: Timestamp,
    authority: Option<Head>,
    key: &SigningKey,
) -> Result<ReleaseDocument, ReleaseError> {
    let bytes = canonical::encode(op).map_err(ReleaseError::BadOperation)?;
    let mut doc = ReleaseDocument {
        version: 1,
        operation: String::from_utf8(bytes).map_err(|e| ReleaseError::Malformed(e.to_string()))?,
        digest: Digest::of(op).map_err(ReleaseError::BadOperation)?.to_hex(),
        basis,
        quorum,
        approvals,
        released_at,
        authority,
        gateway_key: BASE64URL_NOPAD.encode(key.verifying_key().as_bytes()),
        signature: String::new(),
    };
    doc.signature = BASE64URL_NOPAD.encode(&key.sign(&message(&doc)?).to_bytes());
    Ok(doc)
}

/// What settlement trusts: the gateway's key, the policy (of the version that judged
/// the operation) and the approver registry (already checked with
/// [`crate::certificate::SignedRegistry::verify`]).
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// The gateway's Ed25519 public key.
    pub gateway: &'a VerifyingKey,
    pub policy: &'a Policy,
    /// The approver registry.
    pub registry: &'a Registry,
}

/// Parse a release document and check what the gateway's key vouches for: the
/// format, the signature, the canonical operation and its digest.
fn open(json: &[u8], trusted: &VerifyingKey) -> Result<(ReleaseDocument, Operation), ReleaseError> {
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
    Ok((doc, op))
}

/// The basis, quorum and approvals agree, and the approvals complete the quorum
/// under `policy` and `registry`.
fn check_evidence(
    doc: &ReleaseDocument,
    op: &Operation,
    policy: &Policy,
    registry: &Registry,
) -> Result<(), ReleaseError> {
    if op.policy_version != policy.version {
        return Err(
            CertificateError::PolicyVersion { operation: op.policy_version, policy: policy.version }.into()
        );
    }
    match (doc.basis, &doc.quorum) {
        (ReleaseBasis::AllowedByPolicy, None) if doc.approvals.is_empty() => {
            if policy_floor(policy, op).people_needed() > 0 {
                return Err(ReleaseError::QuorumRequired);
            }
            Ok(())
        }
        (ReleaseBasis::Quorum, Some(quorum)) if !doc.approvals.is_empty() => {
            verify_quorum(op, quorum, &doc.approvals, registry, policy, doc.released_at)?;
            Ok(())
        }
        _ => Err(ReleaseError::BasisMismatch),
    }
}

/// Check a release document as settlement receives it (raw JSON bytes) against a
/// registry and policy it was given (before the deployment has a genesis: this
/// trusts whoever signed the registry); returns the operation to execute.
///
/// # Errors
/// The first failed check, as a [`ReleaseError`].
pub fn verify_release(json: &[u8], trust: &Trust<'_>) -> Result<Operation, ReleaseError> {
    let (doc, op) = open(json, trust.gateway)?;
    check_evidence(&doc, &op, trust.policy, trust.registry)?;
    Ok(op)
}

/// Check a release document against the authority chain a verifier holds from its
/// pinned genesis; returns the operation to execute. The gateway's signature only
/// says the gateway released it: who may approve and the policy come from the
/// chain at the head the release names ([`Authority::policy_and_registry`]), and
/// what happened since that head is checked by [`Authority::check_since`]. Extend
/// the authority with the gateway's newer links first when it names a head this
/// verifier does not hold yet.
///
/// # Errors
/// `authority.missing` when the release names no head, then as [`verify_release`]
/// and [`Authority::check_since`].
pub fn verify_release_from_genesis(
    json: &[u8],
    gateway: &VerifyingKey,
    authority: &Authority,
) -> Result<Operation, ReleaseError> {
    let (doc, op) = open(json, gateway)?;
    let head = doc.authority.as_ref().ok_or(AuthorityError::Missing)?;
    let (policy, registry) = authority.policy_and_registry(head, &op)?;
    check_evidence(&doc, &op, policy, &registry)?;
    authority.check_since(head, &op, doc.quorum.as_ref(), &doc.approvals, doc.released_at)?;
    Ok(op)
}
