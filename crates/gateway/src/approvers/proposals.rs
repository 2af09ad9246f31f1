//! Administrative proposals (allowlist, policy, API keys, unfreeze) and revocation.

use countersign_core::id::ApproverId;
use countersign_core::operation::{Action, Initiator, Role};
use countersign_core::verdict::{Context, Disposition, Verdict, evaluate};
use countersign_core::{Digest, Timestamp};

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::{AuditEvent, Inserted, NewOperation, OpState, OperationRecord};

use super::{Session, approver, err};

/// Revoke a person from the host: their keys stop counting at once, also for
/// pending operations. Refused once a genesis exists.
///
/// # Errors
/// Store errors.
pub async fn revoke(state: &AppState, id: &ApproverId, actor: &str, now: Timestamp) -> Result<bool> {
    // After genesis a revocation is a link signed by an admin (an ApproverRevoke).
    crate::authority::host_may_grant(state, "a revocation").await?;
    let mut tx = state.store.begin().await?;
    let done = state.store.revoke_in(&mut tx, id.as_str(), None, now).await?;
    if done {
        let event = AuditEvent::new(actor, "approver.revoked").detail("approver", id.as_str());
        state.store.append_in(&mut tx, &event, now).await?;
    }
    state.store.commit(tx).await?;
    Ok(done)
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
            return propose_unfreeze(state, &who.approver.id, &u.reason, now).await;
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
    propose(state, &who.approver.id, action, now).await
}

/// Propose an administrative operation (unfreeze, and in time allowlist, policy,
/// approver and API-key changes) on behalf of a person. Policy decides the quorum;
/// nothing takes effect until it is approved.
///
/// # Errors
/// `policy.denied` (403) when a deny rule matches; store errors.
pub async fn propose(
    state: &AppState,
    proposer: &countersign_core::id::ApproverId,
    action: Action,
    now: Timestamp,
) -> Result<OperationRecord> {
    let policy = state.store.current_policy().await?.ok_or_else(|| Error::internal("no policy stored"))?;
    let initiator = Initiator::Approver { approver: proposer.clone() };
    let ctx = Context {
        destination: countersign_core::policy::DestinationStatus::NotAllowlisted,
        recent: &[],
        risk_score: 0,
        key_limit: None,
    };
    let verdict = evaluate(&policy, &initiator, &action, &ctx, now);
    let expires_at = match (verdict.disposition(), &verdict) {
        (Disposition::Hold { expires_at }, _) => expires_at,
        (Disposition::Deny, Verdict::Deny { reason }) => {
            return Err(Error::forbidden(
                "policy.denied",
                format!("the policy refuses this operation: {reason:?}"),
            ));
        }
        // Administrative operations always need approval; refuse to apply one unseen.
        _ => {
            return Err(Error::internal("policy allowed an administrative operation without approval"));
        }
    };
    let operation = crate::intake::new_operation(now, expires_at, policy.version, initiator, action)?;
    let digest = Digest::of(&operation)?.to_hex();
    let actor = format!("approver:{proposer}");
    let events = [
        AuditEvent::new(actor.clone(), "operation.received").operation(&operation.id, &digest),
        AuditEvent::new(actor, "operation.pending").operation(&operation.id, &digest),
    ];
    let new = NewOperation {
        operation,
        state: OpState::Pending,
        verdict: serde_json::to_value(&verdict).map_err(Error::internal)?,
        risk: None,
        idempotency_key: None,
        request_hash: None,
    };
    match state.store.insert_operation(new, &events, None, now).await? {
        Inserted::New(record) | Inserted::Existing(record) => Ok(record),
    }
}

/// Propose lifting the current freeze (an `Unfreeze` operation for the admin quorum).
///
/// # Errors
/// `unfreeze.not_frozen` (409) when nothing is frozen; as [`propose`].
pub async fn propose_unfreeze(
    state: &AppState,
    proposer: &countersign_core::id::ApproverId,
    reason: &str,
    now: Timestamp,
) -> Result<OperationRecord> {
    let freeze = state.store.freeze_state().await?;
    if !freeze.frozen {
        return Err(Error::conflict("unfreeze.not_frozen", "API keys are not frozen"));
    }
    let action = Action::Unfreeze(countersign_core::operation::Unfreeze {
        freeze_started: freeze.changed_at,
        reason: reason.to_owned(),
    });
    propose(state, proposer, action, now).await
}
