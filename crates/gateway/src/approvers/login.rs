//! Login: an assertion with an active key opens a session (token shown once, stored
//! hashed); sessions end at expiry, revocation, or when their key stops counting.

use countersign_core::Timestamp;
use countersign_core::id::ApproverId;
use data_encoding::BASE64URL_NOPAD;
use webauthn_rs::prelude::*;

use crate::AppState;
use crate::error::{Error, Result};
use crate::keys::random_bytes;
use crate::store::AuditEvent;

use super::{
    Purpose, Scope, Session, admit, approver, assertion_finish, assertion_start, audit_refused_ceremony,
    credentials_of, err, hash_secret, save_ceremony, take_ceremony, webauthn_error,
};

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
    admit(state, source, Some(id.as_str()), now).await?;
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
            let cid = save_ceremony(state, id, &Scope::Login, &auth_state, now).await?;
            (options, cid)
        }
        None => {
            let len = state.store.some_active_credential_id().await?;
            let len = len.and_then(|c| BASE64URL_NOPAD.decode(c.as_bytes()).ok()).map(|b| b.len());
            let (options, decoy) = crate::decoy::start(state, id.as_str(), len)?;
            let cid = save_ceremony(state, id, &Scope::Login, &decoy, now).await?;
            (options, cid)
        }
    };
    Ok((cid, options))
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

pub(super) async fn login_finish_inner(
    state: &AppState,
    ceremony_id: &str,
    response: &PublicKeyCredential,
    now: Timestamp,
) -> Result<(String, Timestamp)> {
    let c = take_ceremony(state, ceremony_id, Purpose::Login, now).await?;
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

pub(super) async fn session_by_hash(state: &AppState, token_hash: &str, now: Timestamp) -> Result<Session> {
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
