//! Break glass: one person freezes every API key with a fresh touch.

use countersign_core::Timestamp;
use webauthn_rs::prelude::*;

use crate::AppState;
use crate::error::Result;

use super::{Purpose, Scope, Session, assertion_finish, assertion_start, err, save_ceremony, take_ceremony};

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
    let id = save_ceremony(state, &who.approver.id, &Scope::Freeze, &auth_state, now).await?;
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
    let c = take_ceremony(state, ceremony_id, Purpose::Freeze, now).await?;
    if c.approver != who.approver.id {
        return Err(err(401, "ceremony.wrong_scope", "this challenge was issued to someone else"));
    }
    let (cred, _) = assertion_finish(state, &c, response, now).await?;
    let actor = format!("approver:{}", who.approver.id);
    let reason = format!("{reason} (signed with key {})", cred.id);
    state.store.freeze(&actor, &reason, now).await
}
