//! Approvers and hardware-key ceremonies: enrollment, login, and decisions bound to
//! one operation (see "Approvals with hardware keys" in docs/design.md).
//!
//! Every ceremony is a `start` / `finish` pair whose server state is stored single
//! use (deleted when consumed) and scoped to its purpose, person, operation and
//! decision. `webauthn-rs` verifies the WebAuthn parts (challenge, origin, rpIdHash,
//! type, UP, UV, signature, counter against its snapshot); this module then checks
//! the `countersign` member of clientDataJSON against the stored operation and
//! decision, stores the counter atomically (two decisions racing with one key: one
//! counts, the other is refused and the key is flagged), and tallies.
//!
//! A file per ceremony: `enroll`, `login` (and sessions), `decision` (start, finish,
//! settle), `freeze`, `proposals` (administrative changes, revocation), `sweep`
//! (expired ceremonies, unsettled decisions); `registry` is who may decide now. This
//! file holds what they share: the ceremony [`Scope`], storing and taking a
//! ceremony, the assertion checks, and the error codes of WebAuthn refusals.

mod decision;
mod enroll;
mod freeze;
mod login;
mod proposals;
mod registry;
mod sweep;

pub use decision::{DecisionOutcome, decided, decision_finish, decision_start, may_see, pending};
pub use enroll::{enroll_finish, enroll_start, issue_enrollment_code};
pub use freeze::{freeze_finish, freeze_start};
pub use login::{login_finish, login_start, session, session_still_valid};
pub use proposals::{propose, propose_admin, propose_unfreeze, revoke};
pub use registry::{people, registry, registry_cached};
pub use sweep::sweep;

use countersign_core::Timestamp;
use countersign_core::binding::Decision;
use countersign_core::id::ApproverId;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::*;

use crate::AppState;
use crate::error::{Error, Result};
use crate::keys::random_bytes;
use crate::store::AuditEvent;
use decision::settle;
use registry::roster;

fn hash_secret(secret: &str) -> String {
    HEXLOWER.encode(&Sha256::digest(secret.as_bytes()))
}

fn err(status: u16, code: &'static str, message: impl Into<String>) -> Error {
    Error::new(
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
        code,
        message,
    )
}

/// One specific code per WebAuthn relying-party check that failed (WebAuthn L3
/// §7.2); `code` for anything else.
fn webauthn_error(code: &'static str, e: &WebauthnError) -> Error {
    let (status, code, message) = match e {
        WebauthnError::CredentialPossibleCompromise => (
            403,
            "decision.counter_regressed",
            "the key's signature counter went backwards: possible cloned key",
        ),
        WebauthnError::InvalidClientDataType => {
            (401, "assertion.wrong_type", "clientDataJSON.type is not webauthn.get")
        }
        WebauthnError::MismatchedChallenge => {
            (401, "assertion.wrong_challenge", "the signed challenge is not this ceremony's")
        }
        WebauthnError::InvalidRPOrigin | WebauthnError::CredentialCrossOrigin => {
            (401, "assertion.wrong_origin", "the signed origin is not this gateway's")
        }
        WebauthnError::InvalidRPIDHash => {
            (401, "assertion.wrong_rp", "the key signed for another relying party (rpIdHash)")
        }
        WebauthnError::UserNotPresent => {
            (401, "assertion.no_user_presence", "the key did not confirm a touch (UP flag clear)")
        }
        WebauthnError::UserNotVerified => {
            (401, "assertion.no_user_verification", "the key did not verify the user (UV flag clear: no PIN)")
        }
        WebauthnError::SignatureInvalid | WebauthnError::AuthenticationFailure => {
            (401, "assertion.bad_signature", "the signature does not verify with the enrolled key")
        }
        WebauthnError::CredentialNotFound => {
            (401, "assertion.unknown_credential", "this key is not one the ceremony allowed")
        }
        other => return err(401, code, format!("the hardware-key response does not verify: {other:?}")),
    };
    err(status, code, message)
}

/// One code per reason an enrollment's key or attestation is refused.
fn attestation_error(e: &WebauthnError) -> Error {
    match e {
        WebauthnError::AttestationUntrustedAaguid => err(
            401,
            "enroll.untrusted_aaguid",
            "this key model (AAGUID) is not on the gateway's list of accepted keys",
        ),
        WebauthnError::AttestationChainNotTrusted(_)
        | WebauthnError::AttestationTrustFailure
        | WebauthnError::AttestationCertificateTrustStoreEmpty
        | WebauthnError::AttestationNotVerifiable => err(
            401,
            "enroll.untrusted_attestation",
            "the key's attestation does not chain to a CA the gateway trusts: not a key model this exchange accepts",
        ),
        other => {
            err(401, "enroll.attestation", format!("the key or its attestation is not accepted: {other:?}"))
        }
    }
}

pub use crate::store::Approver;

/// A logged-in approver (from a session token).
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub approver: Approver,
    /// With which key they logged in.
    pub credential_id: String,
    /// The stored hash of the session token (the token itself is never kept).
    pub token_hash: String,
    /// When the session ends.
    pub expires_at: Timestamp,
}

struct StoredCredential {
    id: String,
    passkey: AttestedPasskey,
    status: String,
}

async fn approver(state: &AppState, id: &ApproverId) -> Result<Option<Approver>> {
    state.store.approver(id).await
}

async fn credentials_of(
    state: &AppState,
    id: &ApproverId,
    only_active: bool,
) -> Result<Vec<StoredCredential>> {
    let rows = state.store.credentials_of(id, only_active).await?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredCredential {
                id: r.id,
                passkey: serde_json::from_str(&r.passkey).map_err(Error::internal)?,
                status: r.status,
            })
        })
        .collect()
}

/// What a ceremony is for. Its [`Scope`] carries the data only that kind has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Enroll,
    Login,
    Decision,
    Freeze,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Enroll => "enroll",
            Purpose::Login => "login",
            Purpose::Decision => "decision",
            Purpose::Freeze => "freeze",
        }
    }
}

/// What a ceremony was issued for, with exactly its own data: a challenge for one
/// purpose can never be read as another's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// Enrolling a key with a single-use code (kept as its hash).
    Enroll {
        code_hash: String,
    },
    Login,
    /// Deciding one operation, as it was (its digest) when the challenge was issued.
    Decision {
        operation: String,
        digest: String,
        decision: Decision,
    },
    Freeze,
}

impl Scope {
    fn purpose(&self) -> Purpose {
        match self {
            Scope::Enroll { .. } => Purpose::Enroll,
            Scope::Login => Purpose::Login,
            Scope::Decision { .. } => Purpose::Decision,
            Scope::Freeze => Purpose::Freeze,
        }
    }
}

/// A ceremony taken from the store: who it was issued to, its scope, and
/// webauthn-rs's state.
struct Ceremony {
    approver: ApproverId,
    scope: Scope,
    state: String,
}

/// Store ceremony state; returns its id.
async fn save_ceremony(
    state: &AppState,
    approver: &ApproverId,
    scope: &Scope,
    ceremony_state: &impl Serialize,
    now: Timestamp,
) -> Result<String> {
    let id = BASE64URL_NOPAD.encode(&random_bytes::<18>().map_err(Error::internal)?);
    let ttl = i64::try_from(state.config.webauthn.challenge_ttl_seconds).unwrap_or(120);
    let stored = serde_json::to_string(ceremony_state).map_err(Error::internal)?;
    let mut row = crate::store::NewCeremony {
        id: &id,
        purpose: scope.purpose().as_str(),
        approver,
        operation: None,
        digest: None,
        decision: None,
        code_hash: None,
        state: &stored,
        expires_at: now.plus_seconds(ttl),
    };
    match scope {
        Scope::Enroll { code_hash } => row.code_hash = Some(code_hash),
        Scope::Decision { operation, digest, decision } => {
            row.operation = Some(operation);
            row.digest = Some(digest);
            row.decision = Some(decision.to_string());
        }
        Scope::Login | Scope::Freeze => {}
    }
    state.store.insert_ceremony(&row).await?;
    Ok(id)
}

/// Take (read and delete) a ceremony for `purpose`. Single use: a second take of the
/// same id finds nothing.
async fn take_ceremony(state: &AppState, id: &str, purpose: Purpose, now: Timestamp) -> Result<Ceremony> {
    let unknown = || err(401, "ceremony.unknown", "no such challenge (already used, or never issued)");
    let c = state.store.take_ceremony(id).await?.ok_or_else(unknown)?;
    if c.purpose != purpose.as_str() {
        return Err(err(
            401,
            "ceremony.wrong_purpose",
            format!("this challenge was issued for {}, not {}", c.purpose, purpose.as_str()),
        ));
    }
    if now.unix() >= c.expires_at {
        return Err(err(401, "ceremony.expired", "the challenge expired; ask for a new one"));
    }
    let broken = || Error::internal(format!("a stored {} ceremony without its scope", c.purpose));
    let scope = match purpose {
        Purpose::Enroll => Scope::Enroll { code_hash: c.code_hash.clone().ok_or_else(broken)? },
        Purpose::Login => Scope::Login,
        Purpose::Freeze => Scope::Freeze,
        Purpose::Decision => Scope::Decision {
            operation: c.operation.clone().ok_or_else(broken)?,
            digest: c.digest.clone().ok_or_else(broken)?,
            decision: match c.decision.as_deref() {
                Some("approve") => Decision::Approve,
                Some("reject") => Decision::Reject,
                _ => return Err(broken()),
            },
        },
    };
    Ok(Ceremony { approver: c.approver, scope, state: c.state })
}

/// Whether a credential comes from the software authenticator (tests and demo only):
/// every client shows a permanent warning for it.
#[must_use]
pub fn software_authenticator(aaguid: Option<&str>) -> bool {
    aaguid == Some(countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID)
}

/// Begin a login (or any assertion) for a person with their active keys.
async fn assertion_start(
    state: &AppState,
    person: &Approver,
) -> Result<(RequestChallengeResponse, AttestedPasskeyAuthentication)> {
    if person.revoked_at.is_some() {
        return Err(err(403, "approver.revoked", format!("{} has been revoked", person.id)));
    }
    let creds: Vec<AttestedPasskey> =
        credentials_of(state, &person.id, true).await?.into_iter().map(|c| c.passkey).collect();
    if creds.is_empty() {
        return Err(err(403, "approver.no_active_key", format!("{} has no active hardware key", person.id)));
    }
    state
        .webauthn
        .start_attested_passkey_authentication(&creds)
        .map_err(|e| Error::internal(format!("start authentication: {e:?}")))
}

/// Verify an assertion for a stored ceremony and store the new counter atomically.
async fn assertion_finish(
    state: &AppState,
    c: &Ceremony,
    response: &PublicKeyCredential,
    now: Timestamp,
) -> Result<(StoredCredential, AuthenticationResult)> {
    let auth_state: AttestedPasskeyAuthentication =
        serde_json::from_str(&c.state).map_err(Error::internal)?;
    let result = match state.webauthn.finish_attested_passkey_authentication(response, &auth_state) {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, WebauthnError::CredentialPossibleCompromise) {
                flag_credential(state, &BASE64URL_NOPAD.encode(response.raw_id.as_ref()), &c.approver, now)
                    .await?;
            }
            return Err(webauthn_error("assertion.invalid", &e));
        }
    };
    if !result.user_verified() {
        return Err(err(401, "assertion.no_user_verification", "the key did not verify the user (PIN)"));
    }
    let cred_id = BASE64URL_NOPAD.encode(result.cred_id().as_ref());
    let cred =
        credentials_of(state, &c.approver, false).await?.into_iter().find(|k| k.id == cred_id).ok_or_else(
            || err(401, "assertion.unknown_credential", "this key is not enrolled for this approver"),
        )?;
    if cred.status != "active" {
        return Err(err(403, "assertion.credential_not_active", format!("this key is {}", cred.status)));
    }
    // Atomic counter: a counter that does not increase (other than an authenticator
    // that always reports 0) means a cloned key or a replay racing us.
    let counter = i64::from(result.counter());
    let advanced = state.store.advance_counter(&cred_id, counter).await?;
    if !advanced {
        flag_credential(state, &cred_id, &c.approver, now).await?;
        return Err(err(
            403,
            "decision.counter_regressed",
            "the key's signature counter did not advance: possible cloned key",
        ));
    }
    Ok((cred, result))
}

async fn flag_credential(state: &AppState, cred_id: &str, who: &ApproverId, now: Timestamp) -> Result<()> {
    state.store.flag_credential(cred_id).await?;
    let event = AuditEvent::new(format!("approver:{who}"), "credential.counter_anomaly")
        .detail("credential", cred_id);
    state.store.audit(&event, now).await
}

/// A refused ceremony in the audit chain, at most once a minute per source and
/// code (every refusal is still answered and counted in `/metrics`).
pub(crate) async fn audit_refused_ceremony(
    state: &AppState,
    purpose: &str,
    e: &Error,
    source: std::net::IpAddr,
    now: Timestamp,
) -> Result<()> {
    // The refusals of the hardware-key ceremony itself; not rate limits, state
    // conflicts (decision.*) or bindings (audited as decision.binding_refused).
    let probing = ["ceremony.", "assertion.", "enroll."].iter().any(|p| e.code.starts_with(p));
    if e.status.is_server_error() || e.code == "ceremony.rate_limited" || !probing {
        return Ok(());
    }
    let actor = format!("source:{source}");
    if state.refusals.admit(&actor, e.code, now) {
        let event = AuditEvent::new(actor, "ceremony.refused")
            .detail("purpose", purpose)
            .detail("code", e.code)
            .detail("source_ip", source.to_string());
        state.store.audit(&event, now).await?;
    }
    Ok(())
}

/// Admission for a ceremony anyone may start (login, enrollment): the rate limits
/// per source and per person, then the cap on ceremonies stored at once.
///
/// # Errors
/// `429 ceremony.rate_limited`, `503 ceremony.busy`; store errors.
async fn admit(
    state: &AppState,
    source: std::net::IpAddr,
    person: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    let c = &state.config;
    state.ceremony_limits.admit(
        source,
        person,
        c.ceremonies_per_minute_per_source,
        c.ceremonies_per_minute_per_person,
        now,
    )?;
    if state.store.outstanding_ceremonies(now).await? >= c.max_outstanding_ceremonies {
        return Err(Error::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "ceremony.busy",
            "too many logins and enrollments are waiting to be answered; retry shortly",
        ));
    }
    Ok(())
}
