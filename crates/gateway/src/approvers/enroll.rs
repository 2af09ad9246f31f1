//! Enrollment: single-use codes (bootstrap from the host, or invited by an admin)
//! and the attested registration of a hardware key.

use std::collections::BTreeSet;

use countersign_core::Timestamp;
use countersign_core::id::{ApproverId, GroupName};
use countersign_core::operation::Role;
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::*;
use webauthn_rs_proto::{CredentialProtectionPolicy, ExtnState};

use crate::AppState;
use crate::error::{Error, Result};
use crate::keys::random_bytes;
use crate::store::AuditEvent;

use super::{
    Purpose, Scope, admit, approver, attestation_error, audit_refused_ceremony, credentials_of, err,
    hash_secret, roster, save_ceremony, software_authenticator, take_ceremony,
};

/// The host may seed people only until there are enough admins to approve an
/// enrollment proposed by one of them (the admin quorum plus the proposer). When a
/// code is issued, codes still outstanding count as admins too, so a burst of codes
/// cannot overshoot; when a code is used, the check runs again.
pub(super) async fn ensure_bootstrap_open(
    state: &AppState,
    now: Timestamp,
    count_outstanding: bool,
) -> Result<()> {
    if state.store.genesis().await?.is_some() {
        return Err(err(
            409,
            "approver.bootstrap_closed",
            "a genesis exists: further people are enrolled through an ApproverEnroll operation the admins approve",
        ));
    }
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
        let person = crate::store::NewApprover { id, display_name, roles, groups, user_handle: handle };
        state.store.insert_approver_in(&mut tx, &person, now).await?;
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

pub(super) async fn enroll_start_inner(
    state: &AppState,
    code: &str,
    source: std::net::IpAddr,
    now: Timestamp,
) -> Result<(String, CreationChallengeResponse)> {
    admit(state, source, None, now).await?;
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
    let id = save_ceremony(state, &approver_id, &Scope::Enroll { code_hash }, &reg_state, now).await?;
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
    let c = take_ceremony(state, ceremony_id, Purpose::Enroll, now).await?;
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
    let Scope::Enroll { code_hash } = &c.scope else {
        return Err(Error::internal("an enroll ceremony with another scope"));
    };
    if state.store.enrollment_code_is_bootstrap(code_hash).await? == Some(true) {
        ensure_bootstrap_open(state, now, false).await?;
    }
    let cred_id = BASE64URL_NOPAD.encode(passkey.cred_id().as_ref());
    let mut tx = state.store.begin().await?;
    let Some((bootstrap, issued_by)) = state.store.use_enrollment_code_in(&mut tx, code_hash, now).await?
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
        super::proposals::propose(state, &proposer, action, now).await?;
    }
    Ok((cred_id, status, c.approver))
}
