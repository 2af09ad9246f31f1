//! Quorum certificates: the evidence that enough distinct people approved exactly
//! one operation with their hardware keys, checkable offline by settlement.
//!
//! A certificate is the canonical operation, the quorum it needed, and each counted
//! approval's raw WebAuthn assertion (authenticatorData, clientDataJSON, signature)
//! with the credential id. [`verify_quorum`] checks it against an approver
//! [`Registry`] the gateway exported and signed, and against the policy settlement
//! trusts. No step trusts the gateway's word that a signature was valid.
//!
//! Per approval, in order (each failure names the approval's index):
//! 1. the approver and credential are in the registry, the person has the role that
//!    decides this kind of operation ([`deciding_role`]);
//! 2. authenticatorData: at least 37 bytes, rpIdHash = SHA-256(registry rp_id),
//!    user present (UP) and user verified (UV) flags set;
//! 3. clientDataJSON: strict JSON, `type` = `webauthn.get`, `origin` one of the
//!    registry's origins, and its `countersign` member binds this operation, its
//!    digest and the decision `approve` ([`crate::binding`]);
//! 4. ES256 signature over `authenticatorData || SHA-256(clientDataJSON)` verifies
//!    with the registered public key.
//!
//! Then across approvals: one approval per person, the responsible person not among
//! them, the carried quorum at least as strict as the policy's floor for this
//! operation, and the tally at release time is `Approved`.

use std::collections::{BTreeMap, BTreeSet};

use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use p256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::binding::{ApprovalBinding, Decision};
use crate::canonical::{self, parse_strict};
use crate::id::{ApproverId, GroupName};
use crate::operation::{Action, Operation, Role};
use crate::policy::{Policy, Quorum};
use crate::quorum::{CountedDecision, Roster, Tally, tally};
use crate::timestamp::Timestamp;

/// Domain prefix of registry signatures.
pub const REGISTRY_DOMAIN: &[u8] = b"countersign:registry:v1";

/// Authenticator data flag: user present.
pub const FLAG_UP: u8 = 0x01;
/// Authenticator data flag: user verified (PIN or biometric).
pub const FLAG_UV: u8 = 0x04;

/// One registered hardware key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    /// Credential id, base64url.
    pub credential_id: String,
    /// Signature algorithm; `es256` (ECDSA P-256 with SHA-256) is the one supported.
    pub algorithm: String,
    /// The public key: base64url of the 65-byte uncompressed SEC1 point.
    pub public_key: String,
}

/// One person in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryApprover {
    /// The person.
    pub id: ApproverId,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<GroupName>,
    /// Their active keys (revoked and not-yet-approved keys are left out).
    pub credentials: Vec<RegistryCredential>,
}

/// The approver registry as the gateway exports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Format version, 1.
    pub version: u32,
    /// The WebAuthn relying-party id every assertion must be scoped to.
    pub rp_id: String,
    /// Origins accepted in clientDataJSON.
    pub origins: Vec<String>,
    /// When the export was made.
    pub issued_at: Timestamp,
    /// Everyone who may approve.
    pub approvers: Vec<RegistryApprover>,
}

/// A registry signed by the gateway's Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRegistry {
    pub registry: Registry,
    /// Gateway public key, base64url.
    pub key: String,
    /// `Ed25519(key, "countersign:registry:v1" || 0x00 || JCS(registry))`, base64url.
    pub signature: String,
}

/// One counted approval as the certificate carries it (all base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedApproval {
    /// Who approved.
    pub approver: ApproverId,
    /// With which key.
    pub credential_id: String,
    /// Raw authenticatorData.
    pub authenticator_data: String,
    /// Raw clientDataJSON, exactly as signed.
    pub client_data_json: String,
    /// DER-encoded ECDSA signature.
    pub signature: String,
}

/// Why a certificate or registry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The registry signature is missing, by another key, or wrong.
    #[error("the approver registry is not signed by the trusted gateway key")]
    RegistrySignature,
    /// An approval names someone or a key the registry does not list.
    #[error("approval {index}: {approver} with credential {credential} is not in the registry")]
    UnknownCredential {
        /// Position in the certificate.
        index: usize,
        /// Named approver.
        approver: String,
        /// Named credential.
        credential: String,
    },
    /// The person lacks the role that decides this kind of operation.
    #[error("approval {index}: {approver} does not have the role that decides this operation")]
    NotAnApprover {
        /// Position.
        index: usize,
        /// Who.
        approver: String,
    },
    /// A field is not valid base64url, or the authenticator data is too short.
    #[error("approval {index}: malformed {field}")]
    Malformed {
        /// Position.
        index: usize,
        /// Which field.
        field: &'static str,
    },
    /// rpIdHash is not SHA-256 of the registry's rp_id.
    #[error("approval {index}: assertion is for another relying party")]
    WrongRelyingParty {
        /// Position.
        index: usize,
    },
    /// UP or UV flag clear.
    #[error("approval {index}: the key did not verify the user (flags {flags:#04x})")]
    UserNotVerified {
        /// Position.
        index: usize,
        /// The flags byte.
        flags: u8,
    },
    /// clientDataJSON's type or origin is wrong.
    #[error("approval {index}: clientDataJSON {problem}")]
    ClientData {
        /// Position.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The countersign member does not bind this operation and `approve`.
    #[error("approval {index}: {source}")]
    Binding {
        /// Position.
        index: usize,
        /// The binding error.
        source: crate::Error,
    },
    /// The signature does not verify with the registered key.
    #[error("approval {index}: signature does not verify with the registered key")]
    BadSignature {
        /// Position.
        index: usize,
    },
    /// The registered key is not a P-256 point, or uses an unsupported algorithm.
    #[error("approval {index}: unsupported or malformed registered key")]
    UnsupportedKey {
        /// Position.
        index: usize,
    },
    /// The same person appears twice.
    #[error("{0} approved twice; a person counts once")]
    DuplicateApprover(String),
    /// The responsible person (or the person it is about) approved it.
    #[error("{0} is responsible for the operation, or it is about them, and cannot approve it")]
    InitiatorApproved(String),
    /// The carried quorum is weaker than the policy requires.
    #[error("the certificate's quorum is weaker than policy version {0} requires")]
    QuorumTooWeak(u32),
    /// The operation was judged by another policy version.
    #[error("the operation was judged by policy version {operation}, not {policy}")]
    PolicyVersion {
        /// In the operation.
        operation: u32,
        /// Supplied.
        policy: u32,
    },
    /// The approvals do not add up to the quorum (or the release came too late).
    #[error("the approvals do not complete the quorum: {0}")]
    QuorumNotMet(String),
}

impl CertificateError {
    /// A stable code, e.g. `certificate.bad_signature`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::RegistrySignature => "certificate.registry_signature",
            Self::UnknownCredential { .. } => "certificate.unknown_credential",
            Self::NotAnApprover { .. } => "certificate.not_an_approver",
            Self::Malformed { .. } => "certificate.malformed",
            Self::WrongRelyingParty { .. } => "certificate.wrong_rp",
            Self::UserNotVerified { .. } => "certificate.user_not_verified",
            Self::ClientData { .. } => "certificate.client_data",
            Self::Binding { .. } => "certificate.binding",
            Self::BadSignature { .. } => "certificate.bad_signature",
            Self::UnsupportedKey { .. } => "certificate.unsupported_key",
            Self::DuplicateApprover(_) => "certificate.duplicate_approver",
            Self::InitiatorApproved(_) => "certificate.initiator_approved",
            Self::QuorumTooWeak(_) => "certificate.quorum_too_weak",
            Self::PolicyVersion { .. } => "certificate.policy_version",
            Self::QuorumNotMet(_) => "certificate.quorum_not_met",
        }
    }
}

fn registry_message(r: &Registry) -> Result<Vec<u8>, CertificateError> {
    let jcs = canonical::jcs(r).map_err(|_| CertificateError::RegistrySignature)?;
    let mut msg = REGISTRY_DOMAIN.to_vec();
    msg.push(0);
    msg.extend(jcs);
    Ok(msg)
}

impl SignedRegistry {
    /// Sign a registry with the gateway key.
    ///
    /// # Errors
    /// Only if the registry cannot be encoded.
    pub fn sign(registry: Registry, key: &SigningKey) -> Result<Self, CertificateError> {
        let sig = key.sign(&registry_message(&registry)?);
        Ok(SignedRegistry {
            key: BASE64URL_NOPAD.encode(key.verifying_key().as_bytes()),
            signature: BASE64URL_NOPAD.encode(&sig.to_bytes()),
            registry,
        })
    }

    /// The registry, if signed by `trusted`.
    ///
    /// # Errors
    /// [`CertificateError::RegistrySignature`].
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<&Registry, CertificateError> {
        if self.key != BASE64URL_NOPAD.encode(trusted.as_bytes()) {
            return Err(CertificateError::RegistrySignature);
        }
        let sig = BASE64URL_NOPAD
            .decode(self.signature.as_bytes())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or(CertificateError::RegistrySignature)?;
        trusted
            .verify_strict(&registry_message(&self.registry)?, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| CertificateError::RegistrySignature)?;
        Ok(&self.registry)
    }
}

pub use crate::rules::{deciding_role, subject};

/// The least quorum the policy demands for this operation from its amount and kind
/// alone (context-dependent extras such as velocity or risk can only add to it, so
/// settlement, which lacks that context, checks this floor).
#[must_use]
pub fn policy_floor(policy: &Policy, op: &Operation) -> Quorum {
    match &op.action {
        Action::Withdrawal(w) => {
            let reference = w.reference_value.amount;
            policy
                .withdrawal_tiers
                .iter()
                .filter(|t| {
                    t.min_reference_value.is_some_and(|m| reference >= m)
                        || t.min_asset_amount.get(&w.asset).is_some_and(|m| w.amount >= *m)
                })
                .fold(Quorum::NOBODY, |q, t| q.merge(&t.quorum))
        }
        _ => Quorum::NOBODY.merge(&policy.admin_quorum),
    }
}

/// Whether `carried` demands at least what `floor` does in every group, and vetoes
/// no later.
#[must_use]
pub fn at_least_as_strict(carried: &Quorum, floor: &Quorum) -> bool {
    let mins: BTreeMap<&GroupName, u32> = carried.groups.iter().map(|g| (&g.group, g.min)).collect();
    floor.groups.iter().all(|g| mins.get(&g.group).is_some_and(|m| *m >= g.min))
        && carried.rejections_to_veto <= floor.rejections_to_veto
}

fn b64(index: usize, field: &'static str, s: &str) -> Result<Vec<u8>, CertificateError> {
    BASE64URL_NOPAD.decode(s.as_bytes()).map_err(|_| CertificateError::Malformed { index, field })
}

/// Check one assertion against the registered key (steps 2–4 of the module docs);
/// returns the `countersign` member it signed.
///
/// # Errors
/// The first failed check.
pub fn verify_assertion(
    index: usize,
    approval: &CertifiedApproval,
    credential: &RegistryCredential,
    registry: &Registry,
    op: &Operation,
    decision: Decision,
) -> Result<ApprovalBinding, CertificateError> {
    verify_bound_assertion(index, approval, credential, (&registry.rp_id, &registry.origins), |b| {
        b.check(op, decision)
    })
}

/// [`verify_assertion`] for any signed document: `relying_party` is the rp id and
/// the accepted origins, and `bound` checks the `countersign` member.
///
/// # Errors
/// The first failed check.
pub fn verify_bound_assertion(
    index: usize,
    approval: &CertifiedApproval,
    credential: &RegistryCredential,
    relying_party: (&str, &[String]),
    bound: impl FnOnce(&ApprovalBinding) -> crate::Result<()>,
) -> Result<ApprovalBinding, CertificateError> {
    let (rp_id, origins) = relying_party;
    let auth_data = b64(index, "authenticator_data", &approval.authenticator_data)?;
    let client_data = b64(index, "client_data_json", &approval.client_data_json)?;
    let signature = b64(index, "signature", &approval.signature)?;
    if auth_data.len() < 37 {
        return Err(CertificateError::Malformed { index, field: "authenticator_data" });
    }
    if auth_data[..32] != Sha256::digest(rp_id.as_bytes())[..] {
        return Err(CertificateError::WrongRelyingParty { index });
    }
    let flags = auth_data[32];
    if flags & FLAG_UP == 0 || flags & FLAG_UV == 0 {
        return Err(CertificateError::UserNotVerified { index, flags });
    }
    let client = |problem: String| CertificateError::ClientData { index, problem };
    let Value::Object(members) = parse_strict(&client_data).map_err(|e| client(e.to_string()))? else {
        return Err(client("is not an object".into()));
    };
    if members.get("type").and_then(Value::as_str) != Some("webauthn.get") {
        return Err(client("type is not webauthn.get".into()));
    }
    let origin = members.get("origin").and_then(Value::as_str).unwrap_or_default();
    if !origins.iter().any(|o| o == origin) {
        return Err(client(format!("origin {origin:?} is not one of the registry's")));
    }
    let binding = ApprovalBinding::from_client_data_json(&client_data)
        .map_err(|source| CertificateError::Binding { index, source })?;
    bound(&binding).map_err(|source| CertificateError::Binding { index, source })?;

    let key = public_key(credential).ok_or(CertificateError::UnsupportedKey { index })?;
    let sig =
        p256::ecdsa::Signature::from_der(&signature).map_err(|_| CertificateError::BadSignature { index })?;
    let mut signed = auth_data;
    signed.extend_from_slice(&Sha256::digest(&client_data));
    key.verify(&signed, &sig).map_err(|_| CertificateError::BadSignature { index })?;
    Ok(binding)
}

/// The registered key as a P-256 point, if it is one (`es256`, canonical base64url
/// of an uncompressed or compressed SEC1 point).
#[must_use]
pub fn public_key(credential: &RegistryCredential) -> Option<p256::ecdsa::VerifyingKey> {
    if credential.algorithm != "es256" {
        return None;
    }
    let bytes = BASE64URL_NOPAD.decode(credential.public_key.as_bytes()).ok()?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes).ok()
}

/// What a recorded decision's signature says about it, for people reading it later
/// (the desktop's history, the CLI): checked here, not taken from the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum DecisionCheck {
    /// The person's key signed this decision on this operation, with the reason shown
    /// (or with none, when none is shown).
    Signed,
    /// The key signed the decision, but not the reason shown: it was changed after
    /// the touch (by the gateway or its database).
    ReasonAltered,
    /// A version 1 binding, which signs no reason: the reason shown is only the
    /// gateway's word.
    ReasonUnsigned,
    /// The key is not in the registry (revoked since, or never known), so the
    /// signature cannot be checked.
    KeyNotInRegistry,
    /// The signature or what it binds does not verify.
    Invalid {
        /// Why, in words.
        problem: String,
    },
}

/// Check one recorded decision (`decision` with `reason` by `signed.approver`'s key)
/// on `op` against `registry`: the assertion as [`verify_assertion`] checks it, then
/// whether the reason shown is the one signed.
#[must_use]
pub fn check_decision(
    op: &Operation,
    decision: Decision,
    reason: Option<&str>,
    signed: &CertifiedApproval,
    registry: &Registry,
) -> DecisionCheck {
    let credential = registry
        .approvers
        .iter()
        .filter(|p| p.id == signed.approver)
        .flat_map(|p| &p.credentials)
        .find(|c| c.credential_id == signed.credential_id);
    let Some(credential) = credential else {
        return DecisionCheck::KeyNotInRegistry;
    };
    let binding = match verify_assertion(0, signed, credential, registry, op, decision) {
        Ok(binding) => binding,
        Err(e) => return DecisionCheck::Invalid { problem: e.to_string() },
    };
    let reason = reason.filter(|r| !r.is_empty());
    match (binding.check_reason(reason), binding.reason.is_some()) {
        (Ok(()), _) => DecisionCheck::Signed,
        (Err(_), true) => DecisionCheck::ReasonAltered,
        (Err(_), false) => DecisionCheck::ReasonUnsigned,
    }
}

/// Check each approval of `op` (steps 1–4 of the module docs, `role` deciding) and
/// across them: one per person, and never by the person it is about nor — unless one
/// admin suffices for it ([`crate::rules::one_admin_suffices`]) — its proposer.
/// Shared by settlement ([`verify_quorum`]) and the authority chain's links.
///
/// # Errors
/// The first failed check, naming the approval's index.
pub fn count_approvals(
    op: &Operation,
    approvals: &[CertifiedApproval],
    registry: &Registry,
    role: Role,
) -> Result<Vec<CountedDecision>, CertificateError> {
    let responsible = op.initiator.responsible_person();
    let proposer_may = crate::rules::one_admin_suffices(op);
    let mut seen = BTreeSet::new();
    let mut decisions = Vec::with_capacity(approvals.len());
    for (index, a) in approvals.iter().enumerate() {
        let unknown = || CertificateError::UnknownCredential {
            index,
            approver: a.approver.to_string(),
            credential: a.credential_id.clone(),
        };
        let person = registry.approvers.iter().find(|p| p.id == a.approver).ok_or_else(unknown)?;
        let credential =
            person.credentials.iter().find(|c| c.credential_id == a.credential_id).ok_or_else(unknown)?;
        if !person.roles.contains(&role) {
            return Err(CertificateError::NotAnApprover { index, approver: a.approver.to_string() });
        }
        verify_assertion(index, a, credential, registry, op, Decision::Approve)?;
        if (&a.approver == responsible && !proposer_may) || subject(op) == Some(&a.approver) {
            return Err(CertificateError::InitiatorApproved(a.approver.to_string()));
        }
        if !seen.insert(&a.approver) {
            return Err(CertificateError::DuplicateApprover(a.approver.to_string()));
        }
        decisions.push(CountedDecision { approver: a.approver.clone(), decision: Decision::Approve });
    }
    Ok(decisions)
}

/// Verify that `approvals` complete `quorum` for `op` under `policy`, against a
/// registry already checked with [`SignedRegistry::verify`]. `released_at` is when
/// the gateway released it (it must be before the operation expired). Returns the
/// people who approved.
///
/// # Errors
/// The first failed check, as a [`CertificateError`].
pub fn verify_quorum(
    op: &Operation,
    quorum: &Quorum,
    approvals: &[CertifiedApproval],
    registry: &Registry,
    policy: &Policy,
    released_at: Timestamp,
) -> Result<Vec<ApproverId>, CertificateError> {
    if op.policy_version != policy.version {
        return Err(CertificateError::PolicyVersion { operation: op.policy_version, policy: policy.version });
    }
    if !at_least_as_strict(quorum, &policy_floor(policy, op)) {
        return Err(CertificateError::QuorumTooWeak(policy.version));
    }
    let decisions = count_approvals(op, approvals, registry, deciding_role(op))?;
    let responsible = op.initiator.responsible_person();
    if crate::rules::one_admin_suffices(op) {
        // Checked above: at least one, each by an admin.
        if decisions.is_empty() {
            return Err(CertificateError::QuorumNotMet("a revocation needs one admin".into()));
        }
        return Ok(decisions.into_iter().map(|d| d.approver).collect());
    }
    let mut roster = Roster::new();
    for p in registry.approvers.iter().filter(|p| p.roles.contains(&deciding_role(op))) {
        roster.add(p.id.clone(), p.groups.iter().cloned());
    }
    match tally(quorum, responsible, &roster, &decisions, op.expires_at, released_at) {
        Tally::Approved { approvers } => Ok(approvers),
        other => Err(CertificateError::QuorumNotMet(format!("{other:?}"))),
    }
}
