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

use std::collections::BTreeSet;

use countersign_core::Timestamp;
use countersign_core::binding::{ApprovalBinding, Decision};
use countersign_core::certificate::{Registry, RegistryApprover, RegistryCredential, SignedRegistry};
use countersign_core::id::{ApproverId, GroupName};
use countersign_core::operation::Role;
use countersign_core::policy::{Quorum, Verdict};
use countersign_core::quorum::{CountedDecision, Roster, Tally, tally};
use countersign_core::release::{ReleaseBasis, sign_release};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD, HEXLOWER};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::*;
use webauthn_rs_proto::{CredentialProtectionPolicy, ExtnState};

use crate::AppState;
use crate::error::{Error, Result};
use crate::keys::random_bytes;
use crate::store::{AuditEvent, OpState, OperationRecord, Release};

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

/// The host may seed people only until there are enough admins to approve an
/// enrollment proposed by one of them (the admin quorum plus the proposer). When a
/// code is issued, codes still outstanding count as admins too, so a burst of codes
/// cannot overshoot; when a code is used, the check runs again.
async fn ensure_bootstrap_open(state: &AppState, now: Timestamp, count_outstanding: bool) -> Result<()> {
    let policy = state.store.current_policy().await?.ok_or_else(|| Error::internal("no policy stored"))?;
    let (_, registry) = roster(state).await?;
    let mut admins = registry.iter().filter(|p| p.roles.contains(&Role::Admin)).count() as u64;
    if count_outstanding {
        let outstanding = state.store.outstanding_bootstrap_codes(now).await?;
        admins += u64::try_from(outstanding).unwrap_or(0);
    }
    if admins > policy.admin_quorum.people_needed() {
        return Err(err(
            409,
            "approver.bootstrap_closed",
            format!(
                "{admins} admins are enrolled or invited; further people are enrolled through an ApproverEnroll operation"
            ),
        ));
    }
    Ok(())
}

/// Create a person (or reuse them) and a single-use enrollment code. `bootstrap`
/// codes make the enrolled key active at once; only the gateway host's CLI issues
/// them (the first admins). Returns the code, shown once.
///
/// # Errors
/// Store errors; `approver.revoked` for a revoked person.
pub async fn issue_enrollment_code(
    state: &AppState,
    id: &ApproverId,
    display_name: &str,
    roles: &BTreeSet<Role>,
    groups: &BTreeSet<GroupName>,
    issued_by: Option<&ApproverId>,
    now: Timestamp,
) -> Result<String> {
    // Every input is checked before anything is written: a name that the
    // ApproverEnroll operation would refuse later must not strand a code.
    countersign_core::operation::check_text("display_name", display_name)
        .map_err(|e| err(400, "approver.bad_name", e.to_string()))?;
    let existing = approver(state, id).await?;
    if existing.as_ref().is_some_and(|a| a.revoked_at.is_some()) {
        return Err(err(409, "approver.revoked", format!("{id} has been revoked")));
    }
    let bootstrap = issued_by.is_none();
    if bootstrap {
        ensure_bootstrap_open(state, now, true).await?;
    }
    if let Some(by) = issued_by {
        // The proposer must be a real, active admin: they are the one excluded from
        // approving the enrollment.
        let proposer = approver(state, by).await?;
        let active =
            proposer.as_ref().is_some_and(|p| p.revoked_at.is_none() && p.roles.contains(&Role::Admin));
        if !active || credentials_of(state, by, true).await?.is_empty() {
            return Err(err(403, "approver.not_an_admin", format!("{by} is not an active admin")));
        }
    }
    let code = BASE32_NOPAD.encode(&random_bytes::<15>().map_err(Error::internal)?);
    let mut tx = state.store.begin().await?;
    if existing.is_none() {
        let handle = Uuid::from_bytes(random_bytes::<16>().map_err(Error::internal)?);
        state.store.insert_approver_in(&mut tx, id, display_name, roles, groups, handle, now).await?;
    }
    let ttl = i64::try_from(state.config.webauthn.enrollment_code_ttl_seconds).unwrap_or(900);
    let issuer = issued_by.map_or("host", ApproverId::as_str);
    let expires = now.plus_seconds(ttl);
    state
        .store
        .insert_enrollment_code_in(&mut tx, &hash_secret(&code), id, bootstrap, issuer, expires)
        .await?;
    let actor = issued_by.map_or_else(|| "host".to_owned(), |a| format!("approver:{a}"));
    let event = AuditEvent::new(
        actor,
        if bootstrap { "approver.bootstrap_code" } else { "approver.enrollment_code" },
    )
    .detail("approver", id.as_str())
    .detail("roles", serde_json::to_string(roles).map_err(Error::internal)?)
    .detail("groups", serde_json::to_string(groups).map_err(Error::internal)?);
    state.store.append_in(&mut tx, &event, now).await?;
    state.store.commit(tx).await?;
    Ok(code)
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

/// Store ceremony state; returns its id.
async fn save_ceremony(
    state: &AppState,
    purpose: &str,
    approver: &ApproverId,
    scope: (Option<&str>, Option<&str>, Option<Decision>, Option<&str>),
    ceremony_state: &impl Serialize,
    now: Timestamp,
) -> Result<String> {
    let id = BASE64URL_NOPAD.encode(&random_bytes::<18>().map_err(Error::internal)?);
    let ttl = i64::try_from(state.config.webauthn.challenge_ttl_seconds).unwrap_or(120);
    let (operation, digest, decision, code_hash) = scope;
    let stored = serde_json::to_string(ceremony_state).map_err(Error::internal)?;
    state
        .store
        .insert_ceremony(&crate::store::NewCeremony {
            id: &id,
            purpose,
            approver,
            operation,
            digest,
            decision: decision.map(|d| d.to_string()),
            code_hash,
            state: &stored,
            expires_at: now.plus_seconds(ttl),
        })
        .await?;
    Ok(id)
}

type Ceremony = crate::store::CeremonyRow;

/// Take (read and delete) a ceremony for `purpose`. Single use: a second take of the
/// same id finds nothing.
async fn take_ceremony(state: &AppState, id: &str, purpose: &str, now: Timestamp) -> Result<Ceremony> {
    let unknown = || err(401, "ceremony.unknown", "no such challenge (already used, or never issued)");
    let c = state.store.take_ceremony(id).await?.ok_or_else(unknown)?;
    if c.purpose != purpose {
        return Err(err(
            401,
            "ceremony.wrong_purpose",
            format!("this challenge was issued for {}, not {purpose}", c.purpose),
        ));
    }
    if now.unix() >= c.expires_at {
        return Err(err(401, "ceremony.expired", "the challenge expired; ask for a new one"));
    }
    Ok(c)
}

/// Begin enrollment with a code.
///
/// # Errors
/// `enroll.unknown_code`, `enroll.expired_code`, `enroll.used_code`; store errors.
pub async fn enroll_start(
    state: &AppState,
    code: &str,
    source: std::net::IpAddr,
    now: Timestamp,
) -> Result<(String, CreationChallengeResponse)> {
    let result = enroll_start_inner(state, code, source, now).await;
    if let Err(e) = &result {
        audit_refused_ceremony(state, "enroll", e, source, now).await?;
    }
    result
}

async fn enroll_start_inner(
    state: &AppState,
    code: &str,
    source: std::net::IpAddr,
    now: Timestamp,
) -> Result<(String, CreationChallengeResponse)> {
    crate::rate::admit(state, source, None, now).await?;
    let code_hash = hash_secret(code.trim());
    let code = state
        .store
        .enrollment_code(&code_hash)
        .await?
        .ok_or_else(|| err(401, "enroll.unknown_code", "this enrollment code is not valid"))?;
    let approver_id = code.approver;
    if code.used_at.is_some() {
        return Err(err(401, "enroll.used_code", "this enrollment code was already used"));
    }
    if now.unix() >= code.expires_at {
        return Err(err(
            401,
            "enroll.expired_code",
            "this enrollment code has expired; ask an admin for a new one",
        ));
    }
    if state.attestation.is_empty() {
        return Err(err(
            503,
            "enroll.not_configured",
            "no attestation CA is trusted ([webauthn] attestation_presets / attestation_cas): enrollment is refused",
        ));
    }
    let person =
        approver(state, &approver_id).await?.ok_or_else(|| Error::internal("code without approver"))?;
    let exclude: Vec<CredentialID> = credentials_of(state, &approver_id, false)
        .await?
        .iter()
        .map(|c| c.passkey.cred_id().clone())
        .collect();
    let (options, reg_state) = state
        .webauthn
        .start_attested_passkey_registration(
            person.user_handle,
            person.id.as_str(),
            &person.display_name,
            Some(exclude),
            state.attestation.clone(),
            None,
        )
        .map_err(|e| Error::internal(format!("start registration: {e:?}")))?;
    let id =
        save_ceremony(state, "enroll", &approver_id, (None, None, None, Some(&code_hash)), &reg_state, now)
            .await?;
    Ok((id, options))
}

/// Finish enrollment: verify the attested registration and store the key.
///
/// # Errors
/// `ceremony.*`; `enroll.attestation` when the key or its attestation is refused;
/// `enroll.used_code` when the code was used meanwhile.
pub async fn enroll_finish(
    state: &AppState,
    ceremony_id: &str,
    label: &str,
    credential: &RegisterPublicKeyCredential,
    now: Timestamp,
) -> Result<(String, &'static str, ApproverId)> {
    // The label first: a label the ApproverEnroll operation would refuse must not
    // use up the code (nothing is written, the ceremony is still there).
    countersign_core::operation::check_text("label", label)
        .map_err(|e| err(400, "enroll.bad_label", e.to_string()))?;
    let c = take_ceremony(state, ceremony_id, "enroll", now).await?;
    let reg_state: AttestedPasskeyRegistration = serde_json::from_str(&c.state).map_err(Error::internal)?;
    let passkey = state
        .webauthn
        .finish_attested_passkey_registration(credential, &reg_state)
        .map_err(|e| attestation_error(&e))?;
    let internals: Credential = passkey.clone().into();
    if !internals.user_verified {
        return Err(err(
            401,
            "enroll.no_user_verification",
            "the key did not verify the user (PIN) at registration",
        ));
    }
    // credProtect = userVerificationRequired: without the PIN the key will not even
    // use (or admit to) this credential.
    if !matches!(
        internals.extensions.cred_protect,
        ExtnState::Set(CredentialProtectionPolicy::UserVerificationRequired)
    ) {
        return Err(err(
            401,
            "enroll.no_cred_protect",
            "the key did not apply credProtect (user verification required): use a FIDO 2.1 key such as a YubiKey 5 with firmware 5.2 or later",
        ));
    }
    let public_key = match &internals.cred.key {
        COSEKeyType::EC_EC2(ec) if internals.cred.type_ == COSEAlgorithm::ES256 => {
            let mut sec1 = vec![0x04];
            sec1.extend_from_slice(&ec.x);
            sec1.extend_from_slice(&ec.y);
            BASE64URL_NOPAD.encode(&sec1)
        }
        _ => return Err(err(401, "enroll.unsupported_key", "only ES256 (P-256) keys are supported")),
    };
    let aaguid = match &passkey.attestation().metadata {
        AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => {
            Some(aaguid.to_string())
        }
        _ => None,
    };
    let code_hash = c.code_hash.ok_or_else(|| Error::internal("enroll ceremony without code"))?;
    if state.store.enrollment_code_is_bootstrap(&code_hash).await? == Some(true) {
        ensure_bootstrap_open(state, now, false).await?;
    }
    let cred_id = BASE64URL_NOPAD.encode(passkey.cred_id().as_ref());
    let mut tx = state.store.begin().await?;
    let Some((bootstrap, issued_by)) = state.store.use_enrollment_code_in(&mut tx, &code_hash, now).await?
    else {
        return Err(err(401, "enroll.used_code", "this enrollment code was already used"));
    };
    // After the bootstrap, a key counts only once an ApproverEnroll operation is approved.
    let status = if bootstrap { "active" } else { "pending_approval" };
    let stored = serde_json::to_string(&passkey).map_err(Error::internal)?;
    let new = crate::store::NewCredential {
        id: &cred_id,
        approver: &c.approver,
        label,
        aaguid: aaguid.as_deref(),
        public_key: &public_key,
        passkey: &stored,
        counter: i64::from(internals.counter),
        status,
    };
    state.store.insert_credential_in(&mut tx, &new, now).await?;
    let event = AuditEvent::new(format!("approver:{}", c.approver), "credential.enrolled")
        .detail("credential", cred_id.as_str())
        .detail("aaguid", aaguid.clone().unwrap_or_default())
        .detail("software", software_authenticator(aaguid.as_deref()).to_string())
        .detail("status", status);
    state.store.append_in(&mut tx, &event, now).await?;
    state.store.commit(tx).await?;
    if !bootstrap {
        // The key counts only once admins approve an ApproverEnroll operation that
        // shows exactly this person, their roles and groups, and this key.
        let person =
            approver(state, &c.approver).await?.ok_or_else(|| Error::internal("enrolled person vanished"))?;
        let proposer = ApproverId::new(issued_by).map_err(Error::internal)?;
        let key_bytes = BASE64URL_NOPAD.decode(public_key.as_bytes()).map_err(Error::internal)?;
        let action = countersign_core::Action::ApproverEnroll(countersign_core::operation::ApproverEnroll {
            approver: person.id.clone(),
            display_name: person.display_name.clone(),
            roles: person.roles.clone(),
            groups: person.groups.clone(),
            credential: countersign_core::operation::CredentialSummary {
                credential_id: cred_id.clone(),
                key_kind: countersign_core::operation::KeyKind::Fido2,
                aaguid,
                public_key_sha256: HEXLOWER.encode(&Sha256::digest(&key_bytes)),
                label: label.to_owned(),
            },
        });
        crate::intake::propose(state, &proposer, action, now).await?;
    }
    Ok((cred_id, status, c.approver))
}

/// Every approver with their roles, groups and keys, for admins.
///
/// # Errors
/// Store errors.
pub async fn people(state: &AppState) -> Result<Vec<serde_json::Value>> {
    let everyone = state.store.approvers().await?;
    let mut out = Vec::with_capacity(everyone.len());
    for person in everyone {
        let keys = state.store.credential_listing(&person.id).await?;
        let credentials: Vec<_> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "id": k.id,
                    "label": k.label,
                    "aaguid": k.aaguid,
                    "software": software_authenticator(k.aaguid.as_deref()),
                    "status": k.status,
                })
            })
            .collect();
        out.push(serde_json::json!({
            "id": person.id,
            "display_name": person.display_name,
            "roles": person.roles,
            "groups": person.groups,
            "revoked": person.revoked_at.is_some(),
            "credentials": credentials,
        }));
    }
    Ok(out)
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

/// Begin a login. Who exists is not revealed: a person who is unknown, revoked or
/// without an active key gets a decoy challenge ([`crate::decoy`]), answered by a
/// refusal at `login/finish` like any wrong key.
///
/// # Errors
/// `ceremony.rate_limited`, `ceremony.busy`; store errors.
pub async fn login_start(
    state: &AppState,
    id: &ApproverId,
    source: std::net::IpAddr,
    now: Timestamp,
) -> Result<(String, RequestChallengeResponse)> {
    crate::rate::admit(state, source, Some(id.as_str()), now).await?;
    let person = approver(state, id).await?;
    let real = match &person {
        Some(p) => match assertion_start(state, p).await {
            Ok(started) => Some(started),
            Err(e) if matches!(e.code, "approver.revoked" | "approver.no_active_key") => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let (options, cid) = match real {
        Some((options, auth_state)) => {
            let cid = save_ceremony(state, "login", id, (None, None, None, None), &auth_state, now).await?;
            (options, cid)
        }
        None => {
            let len = state.store.some_active_credential_id().await?;
            let len = len.and_then(|c| BASE64URL_NOPAD.decode(c.as_bytes()).ok()).map(|b| b.len());
            let (options, decoy) = crate::decoy::start(state, id.as_str(), len)?;
            let cid = save_ceremony(state, "login", id, (None, None, None, None), &decoy, now).await?;
            (options, cid)
        }
    };
    Ok((cid, options))
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

/// Finish a login: a session token (shown once; stored hashed).
///
/// # Errors
/// `ceremony.*`, `assertion.*`.
pub async fn login_finish(
    state: &AppState,
    ceremony_id: &str,
    response: &PublicKeyCredential,
    source: std::net::IpAddr,
    now: Timestamp,
) -> Result<(String, Timestamp)> {
    let result = login_finish_inner(state, ceremony_id, response, now).await;
    if let Err(e) = &result {
        audit_refused_ceremony(state, "login", e, source, now).await?;
    }
    result
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

async fn login_finish_inner(
    state: &AppState,
    ceremony_id: &str,
    response: &PublicKeyCredential,
    now: Timestamp,
) -> Result<(String, Timestamp)> {
    let c = take_ceremony(state, ceremony_id, "login", now).await?;
    if let Ok(decoy) = serde_json::from_str::<crate::decoy::Decoy>(&c.state) {
        return Err(webauthn_error("assertion.invalid", &crate::decoy::finish(state, &decoy, response)));
    }
    let (cred, _) = assertion_finish(state, &c, response, now).await?;
    let token = BASE64URL_NOPAD.encode(&random_bytes::<32>().map_err(Error::internal)?);
    let ttl = i64::try_from(state.config.webauthn.session_ttl_seconds).unwrap_or(900);
    let expires = now.plus_seconds(ttl);
    state.store.insert_session(&hash_secret(&token), &c.approver, &cred.id, now, expires).await?;
    let event = AuditEvent::new(format!("approver:{}", c.approver), "approver.login")
        .detail("credential", cred.id.as_str());
    state.store.audit(&event, now).await?;
    Ok((token, expires))
}

/// Resolve a bearer token.
///
/// # Errors
/// `session.invalid` (unknown, expired or revoked), `approver.revoked`.
pub async fn session(state: &AppState, token: &str, now: Timestamp) -> Result<Session> {
    session_by_hash(state, &hash_secret(token), now).await
}

async fn session_by_hash(state: &AppState, token_hash: &str, now: Timestamp) -> Result<Session> {
    let invalid =
        || err(401, "session.invalid", "the session is unknown or has expired; log in with your key");
    let row = state.store.session(token_hash).await?.ok_or_else(invalid)?;
    let expires_at = row.expires_at;
    if row.revoked_at.is_some() || now.unix() >= expires_at {
        return Err(invalid());
    }
    let id = row.approver;
    let person = approver(state, &id).await?.ok_or_else(invalid)?;
    if person.revoked_at.is_some() {
        return Err(err(403, "approver.revoked", "this approver has been revoked"));
    }
    // A session is bound to the key that opened it: a flagged or revoked key ends it.
    let credential_id = row.credential_id;
    if !credentials_of(state, &id, true).await?.iter().any(|c| c.id == credential_id) {
        return Err(invalid());
    }
    let expires_at = Timestamp::from_unix(expires_at).ok_or_else(|| Error::internal("session expiry"))?;
    Ok(Session { approver: person, credential_id, token_hash: token_hash.to_owned(), expires_at })
}

/// Whether a session may still see things (for long-lived streams): not expired,
/// not revoked, its person and key still active.
pub async fn session_still_valid(state: &AppState, who: &Session) -> bool {
    let now = state.clock.now();
    now < who.expires_at && session_by_hash(state, &who.token_hash, now).await.is_ok()
}

/// Whether a person may see and act on an operation: they hold the role that
/// decides it and belong to a group its quorum names (an operation that needed no
/// quorum, released or denied at once, is shown to everyone with that role).
#[must_use]
pub fn may_see(who: &Approver, record: &OperationRecord) -> bool {
    let role = countersign_core::certificate::deciding_role(&record.operation);
    if !who.roles.contains(&role) {
        return false;
    }
    let groups: Vec<&str> = record.verdict["quorum"]["groups"]
        .as_array()
        .map(|gs| gs.iter().filter_map(|g| g["group"].as_str()).collect())
        .unwrap_or_default();
    groups.is_empty() || groups.iter().any(|g| who.groups.iter().any(|mine| mine.as_str() == *g))
}

/// Begin a decision on an operation: a challenge scoped to (operation, decision,
/// approver), valid once and briefly.
///
/// # Errors
/// `decision.*` when the operation cannot be decided by this person now.
pub async fn decision_start(
    state: &AppState,
    who: &Session,
    op_id: &str,
    decision: Decision,
    now: Timestamp,
) -> Result<(String, RequestChallengeResponse, OperationRecord)> {
    let record = decidable(state, who, op_id, now).await?;
    let (options, auth_state) = assertion_start(state, &who.approver).await?;
    let scope = (Some(op_id), Some(record.digest.as_str()), Some(decision), None);
    let cid = save_ceremony(state, "decision", &who.approver.id, scope, &auth_state, now).await?;
    let event = AuditEvent::new(format!("approver:{}", who.approver.id), "decision.challenge")
        .operation(&record.operation.id, &record.digest)
        .detail("decision", decision.to_string());
    state.store.audit(&event, now).await?;
    Ok((cid, options, record))
}

/// The operation, if this person may decide it now.
async fn decidable(state: &AppState, who: &Session, op_id: &str, now: Timestamp) -> Result<OperationRecord> {
    let record = state.store.operation(op_id).await?.ok_or_else(|| Error::not_found("operation"))?;
    let role = countersign_core::certificate::deciding_role(&record.operation);
    if !who.approver.roles.contains(&role) {
        return Err(err(
            403,
            "decision.wrong_role",
            format!("only people with the {role:?} role decide on this operation"),
        ));
    }
    if record.state != OpState::Pending {
        return Err(err(409, "decision.not_pending", format!("the operation is {}", record.state.as_str())));
    }
    if now >= record.operation.expires_at {
        return Err(err(409, "decision.expired", "the operation has expired"));
    }
    if record.operation.initiator.responsible_person() == &who.approver.id {
        return Err(err(
            403,
            "decision.initiator",
            "you are responsible for this operation and cannot decide on it",
        ));
    }
    if countersign_core::certificate::subject(&record.operation) == Some(&who.approver.id) {
        return Err(err(403, "decision.subject", "this operation is about you: others decide on it"));
    }
    Ok(record)
}

/// What a counted decision led to.
#[derive(Debug, Serialize)]
pub struct DecisionOutcome {
    /// The operation's state afterwards.
    pub state: OpState,
    /// The tally.
    pub tally: Tally,
}

/// Finish a decision: verify the assertion, its `countersign` member, count it,
/// tally, and release or reject.
///
/// # Errors
/// `ceremony.*`, `assertion.*`, `binding.*`, `decision.*`.
pub async fn decision_finish(
    state: &AppState,
    who: &Session,
    op_id: &str,
    ceremony_id: &str,
    response: &PublicKeyCredential,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<DecisionOutcome> {
    if let Some(r) = reason {
        countersign_core::operation::check_text("reason", r)
            .map_err(|e| err(400, "decision.bad_reason", e.to_string()))?;
    }
    let c = take_ceremony(state, ceremony_id, "decision", now).await?;
    if c.approver != who.approver.id || c.operation.as_deref() != Some(op_id) {
        return Err(err(
            401,
            "ceremony.wrong_scope",
            "this challenge was issued for another operation or person",
        ));
    }
    let decision = match c.decision.as_deref() {
        Some("approve") => Decision::Approve,
        Some("reject") => Decision::Reject,
        _ => return Err(Error::internal("decision ceremony without a decision")),
    };
    let record = decidable(state, who, op_id, now).await?;
    if Some(record.digest.as_str()) != c.digest.as_deref() {
        return Err(err(
            409,
            "decision.operation_changed",
            "the operation changed since the challenge was issued",
        ));
    }
    // The signature first: only a real signature by this person's key can put a
    // refusal in the audit chain (a stolen session alone cannot write evidence).
    let cdj: &[u8] = response.response.client_data_json.as_ref();
    let (cred, _) = assertion_finish(state, &c, response, now).await?;
    // The signed clientDataJSON must carry exactly this operation and decision.
    // ... and, from binding version 2, the reason sent with it.
    let bound = ApprovalBinding::from_client_data_json(cdj).and_then(|b| {
        b.check(&record.operation, decision)?;
        b.check_reason(reason)?;
        Ok(b)
    });
    let binding = match bound {
        Ok(b) => b,
        Err(e) => {
            // This person's key signed something else than what the gateway holds: the
            // sign of a substituted operation on their screen. Audited, at most once a
            // minute per person and code (each refusal is still answered and counted).
            let actor = format!("approver:{}", who.approver.id);
            if state.refusals.admit(&actor, e.code(), now) {
                let event = AuditEvent::new(actor, "decision.binding_refused")
                    .operation(&record.operation.id, &record.digest)
                    .detail("code", e.code())
                    .detail("credential", cred.id.as_str());
                state.store.audit(&event, now).await?;
            }
            return Err(e.into());
        }
    };

    let mut tx = state.store.begin().await?;
    // The operation's lock first: a decision is counted either before a settlement
    // reads the decisions (and is seen by it) or after it moved the operation (and
    // is refused here). A veto can never be counted on a released operation.
    if state.store.lock_operation(&mut tx, op_id).await? != Some(OpState::Pending) {
        return Err(err(409, "decision.not_pending", "the operation was decided meanwhile"));
    }
    let new = crate::store::NewDecision {
        operation: op_id,
        approver: &who.approver.id,
        credential_id: &cred.id,
        decision,
        reason,
        authenticator_data: BASE64URL_NOPAD.encode(response.response.authenticator_data.as_ref()),
        client_data_json: BASE64URL_NOPAD.encode(cdj),
        signature: BASE64URL_NOPAD.encode(response.response.signature.as_ref()),
    };
    if !state.store.insert_decision_in(&mut tx, &new, now).await? {
        return Err(err(
            409,
            "decision.already_decided",
            "you already decided on this operation (a person counts once)",
        ));
    }
    let event = AuditEvent::new(format!("approver:{}", who.approver.id), "decision.counted")
        .operation(&record.operation.id, &record.digest)
        .detail("decision", decision.to_string())
        .detail("credential", cred.id.as_str())
        // What the person wrote, and whether their key signed it (binding v2).
        .detail("reason", reason.unwrap_or_default())
        .detail("reason_signed", binding.reason.is_some());
    state.store.append_in(&mut tx, &event, now).await?;
    state.store.commit(tx).await?;
    settle(state, &record, now).await
}

/// Tally an operation's stored decisions and release or reject it (exactly once).
/// The decisions are read and the operation moved in one transaction holding the
/// operation's lock, so no decision can land between the tally and the move.
async fn settle(state: &AppState, record: &OperationRecord, now: Timestamp) -> Result<DecisionOutcome> {
    let quorum: Quorum =
        match serde_json::from_value::<Verdict>(record.verdict.clone()).map_err(Error::internal)? {
            Verdict::RequireApproval { quorum, .. } => quorum,
            _ => return Err(Error::internal("a pending operation without a quorum")),
        };
    let role = countersign_core::certificate::deciding_role(&record.operation);
    let (_, people) = roster(state).await?;
    let mut roster = Roster::new();
    for p in people.iter().filter(|p| p.roles.contains(&role)) {
        roster.add(p.id.clone(), p.groups.iter().cloned());
    }
    let op = &record.operation;
    let mut tx = state.store.begin().await?;
    let current = state.store.lock_operation(&mut tx, op.id.as_str()).await?;
    let mut decisions = Vec::new();
    let mut approvals = Vec::new();
    for d in state.store.decisions_with_keys_in(&mut tx, op.id.as_str()).await? {
        // An approval counts only while the key that signed it is active: a key
        // flagged as cloned or revoked later loses every approval it gave. A
        // rejection always counts (stopping is safe).
        let key_active = d.key_status.as_deref() == Some("active");
        if d.decision == Decision::Approve && !key_active {
            continue;
        }
        decisions.push(CountedDecision { approver: d.approver, decision: d.decision });
        if d.decision == Decision::Approve {
            approvals.push(d.signed);
        }
    }
    state.race_windows.pause(crate::race::Window::Settle).await;
    let t = tally(&quorum, op.initiator.responsible_person(), &roster, &decisions, op.expires_at, now);
    if current != Some(OpState::Pending) {
        // Moved meanwhile (another decision's settlement, the sweep, another instance).
        let state_now = current.ok_or_else(|| Error::not_found("operation"))?;
        return Ok(DecisionOutcome { state: state_now, tally: t });
    }
    let (to, doc) = match &t {
        Tally::Approved { approvers } => {
            approvals.retain(|a| approvers.contains(&a.approver));
            let doc = sign_release(
                op,
                ReleaseBasis::Quorum,
                Some(quorum.clone()),
                approvals,
                now,
                state.keys.signing_key(),
            )
            .map_err(Error::internal)?;
            (OpState::Released, Some(serde_json::to_value(doc).map_err(Error::internal)?))
        }
        Tally::Rejected { .. } => (OpState::Rejected, None),
        Tally::Expired => (OpState::Expired, None),
        Tally::Pending { .. } => return Ok(DecisionOutcome { state: OpState::Pending, tally: t }),
    };
    let event = AuditEvent::new("gateway", to.audit_event())
        .operation(&op.id, &record.digest)
        .detail("basis", "quorum");
    let release = doc.as_ref().map(|document| Release { document, action: Some(&op.action) });
    if !state
        .store
        .transition_in(&mut tx, &op.id, OpState::Pending, to, release.as_ref(), &event, now)
        .await?
    {
        return Err(Error::internal("an operation locked as pending could not be moved"));
    }
    state.store.commit(tx).await?;
    Ok(DecisionOutcome { state: to, tally: t })
}

/// The current roster (active approvers with at least one active key) and registry.
async fn roster(state: &AppState) -> Result<(Roster, Vec<RegistryApprover>)> {
    let mut roster = Roster::new();
    let mut registry = Vec::new();
    for (person, creds) in state.store.people_with_active_keys().await? {
        if person.roles.contains(&Role::Approver) {
            roster.add(person.id.clone(), person.groups.iter().cloned());
        }
        registry.push(RegistryApprover {
            id: person.id.clone(),
            roles: person.roles.clone(),
            groups: person.groups.clone(),
            credentials: creds
                .into_iter()
                .map(|c| RegistryCredential {
                    credential_id: c.id,
                    algorithm: "es256".into(),
                    public_key: c.public_key,
                })
                .collect(),
        });
    }
    Ok((roster, registry))
}

/// The approver registry, signed by the gateway key, for settlement.
///
/// # Errors
/// Store errors.
pub async fn registry(state: &AppState, now: Timestamp) -> Result<SignedRegistry> {
    let (_, approvers) = roster(state).await?;
    let registry = Registry {
        version: 1,
        rp_id: state.config.webauthn.rp_id.clone(),
        origins: vec![state.config.webauthn.origin.clone()],
        issued_at: now,
        approvers,
    };
    SignedRegistry::sign(registry, state.keys.signing_key()).map_err(Error::internal)
}

/// [`registry`], built again only when the audit chain moved since the last one
/// was built: every change to people and keys is audited, so the same head means
/// the same registry. Unauthenticated callers cannot make the gateway query and
/// sign per call.
///
/// # Errors
/// Store errors.
pub async fn registry_cached(state: &AppState, now: Timestamp) -> Result<SignedRegistry> {
    let mut cache = state.registry_cache.lock().await;
    let head = state.store.audit_head().await?;
    if let Some((at, registry)) = cache.as_ref()
        && *at == head
    {
        return Ok(registry.clone());
    }
    let fresh = registry(state, now).await?;
    *cache = Some((head, fresh.clone()));
    Ok(fresh)
}

/// Pending operations, newest first, for approvers.
///
/// # Errors
/// Store errors.
pub async fn pending(state: &AppState, limit: i64) -> Result<Vec<OperationRecord>> {
    let filter = crate::store::OperationFilter { state: Some(OpState::Pending), ..Default::default() };
    state.store.operations(&filter, limit).await
}

/// The most recent operations that are no longer pending (released, rejected,
/// expired, denied), newest first: the approvers' history.
///
/// # Errors
/// Store errors.
pub async fn decided(state: &AppState, limit: i64) -> Result<Vec<OperationRecord>> {
    let filter = crate::store::OperationFilter { decided: true, ..Default::default() };
    state.store.operations(&filter, limit).await
}

/// Revoke a person: their keys stop counting at once, also for pending operations.
///
/// # Errors
/// Store errors.
pub async fn revoke(state: &AppState, id: &ApproverId, actor: &str, now: Timestamp) -> Result<bool> {
    let mut tx = state.store.begin().await?;
    let done = state.store.revoke_in(&mut tx, id.as_str(), None, now).await?;
    if done {
        let event = AuditEvent::new(actor, "approver.revoked").detail("approver", id.as_str());
        state.store.append_in(&mut tx, &event, now).await?;
    }
    state.store.commit(tx).await?;
    Ok(done)
}

/// Begin a break-glass freeze: any approver or admin, with a fresh hardware-key
/// assertion (PIN and touch) in a challenge scoped to the freeze.
///
/// # Errors
/// `approver.*` when the person has no active key.
pub async fn freeze_start(
    state: &AppState,
    who: &Session,
    now: Timestamp,
) -> Result<(String, RequestChallengeResponse)> {
    let (options, auth_state) = assertion_start(state, &who.approver).await?;
    let id =
        save_ceremony(state, "freeze", &who.approver.id, (None, None, None, None), &auth_state, now).await?;
    Ok((id, options))
}

/// Finish a freeze: verify the assertion, then freeze every API key at once.
/// Freezing is always safe, so one person suffices; lifting it needs the admin
/// quorum (an `Unfreeze` operation).
///
/// # Errors
/// `ceremony.*`, `assertion.*`.
pub async fn freeze_finish(
    state: &AppState,
    who: &Session,
    ceremony_id: &str,
    response: &PublicKeyCredential,
    reason: &str,
    now: Timestamp,
) -> Result<bool> {
    let c = take_ceremony(state, ceremony_id, "freeze", now).await?;
    if c.approver != who.approver.id {
        return Err(err(401, "ceremony.wrong_scope", "this challenge was issued to someone else"));
    }
    let (cred, _) = assertion_finish(state, &c, response, now).await?;
    let actor = format!("approver:{}", who.approver.id);
    let reason = format!("{reason} (signed with key {})", cred.id);
    state.store.freeze(&actor, &reason, now).await
}

/// Background duties: tally again every pending operation that has decisions (so a
/// crash between counting a decision and releasing cannot strand a completed
/// quorum), and forget ceremonies whose time is up.
///
/// # Errors
/// Store errors (the next sweep retries).
pub async fn sweep(
    state: &AppState,
    now: Timestamp,
    failed: &(dyn Fn(&str, &Error) + Sync),
) -> Result<usize> {
    if let Err(e) = state.store.delete_expired_ceremonies(now).await {
        failed("ceremonies", &e);
    }
    let ids = state.store.pending_with_decisions(500).await?;
    let mut settled = 0;
    for id in ids {
        // One operation that cannot be settled (its effect fails) is retried next
        // time; it never keeps the others waiting.
        let outcome = match state.store.operation(&id).await {
            Ok(Some(record)) if record.state == OpState::Pending => settle(state, &record, now).await,
            Ok(_) => continue,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(o) if o.state != OpState::Pending => settled += 1,
            Ok(_) => {}
            Err(e) => failed("settle", &e),
        }
    }
    Ok(settled)
}

/// An admin proposes an administrative change (allowlist entry, revocation, policy
/// version, unfreeze). It waits for the admin quorum; its effect is applied when
/// released. Enrollments go through codes; API-key creation through the host CLI.
///
/// # Errors
/// `admin.not_an_admin` (403), `admin.unsupported_operation` (400),
/// `policy.wrong_version` (409), `unfreeze.not_frozen` (409), policy and store errors.
pub async fn propose_admin(
    state: &AppState,
    who: &Session,
    action: countersign_core::Action,
    now: Timestamp,
) -> Result<OperationRecord> {
    use countersign_core::Action;
    if !who.approver.roles.contains(&Role::Admin) {
        return Err(err(403, "admin.not_an_admin", "only admins propose administrative changes"));
    }
    match &action {
        Action::AllowlistAdd(a) => {
            // Validate before anything is stored; a duplicate could only go stale.
            let listed = state.config.asset_on(&a.network).ok_or_else(|| {
                err(400, "request.unknown_asset", format!("no listed asset is on {}", a.network))
            })?;
            crate::intake::check_destination(listed, &a.network, &a.destination)?;
            if state.store.allowlisted(&a.account, &a.network, &a.destination).await? {
                return Err(err(
                    409,
                    "allowlist.exists",
                    "this destination (address and memo) is already allowlisted for this account",
                ));
            }
        }
        Action::ApproverRevoke(_) => {}
        Action::PolicyUpdate(p) => {
            let current = state.store.current_policy().await?.map_or(0, |c| c.version);
            if p.policy.version != current + 1 {
                return Err(err(
                    409,
                    "policy.wrong_version",
                    format!("the next policy version is {}", current + 1),
                ));
            }
        }
        Action::Unfreeze(u) => {
            return crate::intake::propose_unfreeze(state, &who.approver.id, &u.reason, now).await;
        }
        Action::ApiKeyCreate(k) => {
            if state.store.api_key(k.key_id.as_str()).await?.is_some() {
                return Err(err(
                    409,
                    "api_key.exists",
                    format!("an API key with id {} already exists", k.key_id),
                ));
            }
            match approver(state, &k.owner).await? {
                Some(a) if a.revoked_at.is_none() => {}
                _ => {
                    return Err(err(
                        400,
                        "api_key.unknown_owner",
                        format!("{} is not an active approver; a key's owner must be a person here", k.owner),
                    ));
                }
            }
            if k.expires_at.is_some_and(|t| t <= now) {
                return Err(err(400, "api_key.expired", "the key would expire before it is approved"));
            }
        }
        other => {
            return Err(err(
                400,
                "admin.unsupported_operation",
                format!("{} operations are not proposed here", other.kind()),
            ));
        }
    }
    crate::intake::propose(state, &who.approver.id, action, now).await
}
