//! The one error type of `countersign-core`.
//!
//! Every variant has a stable, machine-readable [`Error::code`]; the gateway maps
//! these codes into HTTP answers and the CLI into exit messages, so renaming a
//! code is a protocol change.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the pure protocol logic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- decoding a canonical operation -------------------------------------------------
    /// The bytes are not JSON at all (syntax error, bad UTF-8, truncated input).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// An object carries the same member name twice.
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// A complete JSON value is followed by more bytes.
    #[error("trailing data after the JSON value")]
    TrailingData,
    /// The top level is not an object, or it lacks the integer `v` member.
    #[error("missing or non-integer version member \"v\"")]
    MissingVersion,
    /// The `v` member names a version this implementation does not know.
    #[error("unknown canonical-form version {0}")]
    UnknownVersion(u64),
    /// The JSON is valid but is not the RFC 8785 canonical serialisation of itself
    /// (member order, whitespace, escaping or number form differ).
    #[error("input is valid JSON but not its RFC 8785 canonical form")]
    NotCanonical,
    /// The JSON is canonical but does not describe a valid operation
    /// (unknown or missing field, wrong type, invalid amount or timestamp).
    #[error("invalid operation: {0}")]
    InvalidOperation(String),

    // ---- values ---------------------------------------------------------------------------
    /// A decimal amount is not in the canonical decimal-string form.
    #[error("invalid amount {0:?}: expected a plain decimal string such as \"12.5\"")]
    InvalidAmount(String),
    /// A timestamp is not `YYYY-MM-DDTHH:MM:SSZ`.
    #[error(
        "invalid timestamp {0:?}: expected RFC 3339 UTC with whole seconds, e.g. \"2026-11-28T19:42:54Z\""
    )]
    InvalidTimestamp(String),
    /// An identifier has characters outside `[A-Za-z0-9._:-]` or is empty or longer than 128.
    #[error("invalid identifier {0:?}")]
    InvalidId(String),
    /// A digest is not 32 bytes of canonical base64url (no padding).
    #[error("invalid digest encoding")]
    InvalidDigest,

    // ---- the approval binding (the `countersign` member of clientDataJSON) --------------
    /// clientDataJSON has no `countersign` member, or it is not an object of the right shape.
    #[error("clientDataJSON lacks a well-formed \"countersign\" member: {0}")]
    BindingMissing(String),
    /// The binding's `v` is not 1 or 2 (or its members do not fit its version).
    #[error("unsupported approval binding version {0}")]
    BindingVersion(u64),
    /// The binding names another operation than the one being decided.
    #[error("approval binding is for operation {found}, expected {expected}")]
    BindingOperationMismatch {
        /// The operation the decision is for.
        expected: String,
        /// What the signed binding says.
        found: String,
    },
    /// The binding's digest is not the digest of the operation being decided.
    #[error("approval binding digest does not match the operation's canonical digest")]
    BindingDigestMismatch,
    /// The binding's decision is not the decision being recorded.
    #[error("approval binding decision is {found}, expected {expected}")]
    BindingDecisionMismatch {
        /// The decision being recorded.
        expected: crate::decision::Decision,
        /// What the signed binding says.
        found: crate::decision::Decision,
    },

    /// The reason (or comment) sent with a decision is not the one the key signed
    /// (binding v2), or a reason came with a binding that signs none (v1).
    #[error("the decision's reason is not the one the key signed")]
    BindingReasonMismatch,

    // ---- policy ---------------------------------------------------------------------------
    /// A policy document is inconsistent (e.g. a quorum that needs zero people).
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
}

impl Error {
    /// A stable machine-readable code, e.g. `"canonical.duplicate_key"`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "canonical.malformed_json",
            Self::DuplicateKey(_) => "canonical.duplicate_key",
            Self::TrailingData => "canonical.trailing_data",
            Self::MissingVersion => "canonical.missing_version",
            Self::UnknownVersion(_) => "canonical.unknown_version",
            Self::NotCanonical => "canonical.not_canonical",
            Self::InvalidOperation(_) => "canonical.invalid_operation",
            Self::InvalidAmount(_) => "value.invalid_amount",
            Self::InvalidTimestamp(_) => "value.invalid_timestamp",
            Self::InvalidId(_) => "value.invalid_id",
            Self::InvalidDigest => "value.invalid_digest",
            Self::BindingMissing(_) => "binding.missing",
            Self::BindingVersion(_) => "binding.unsupported_version",
            Self::BindingOperationMismatch { .. } => "binding.operation_mismatch",
            Self::BindingDigestMismatch => "binding.digest_mismatch",
            Self::BindingDecisionMismatch { .. } => "binding.decision_mismatch",
            Self::BindingReasonMismatch => "binding.reason_mismatch",
            Self::InvalidPolicy(_) => "policy.invalid",
        }
    }
}
