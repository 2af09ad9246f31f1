//! Admins: people and keys, enrollment links, API keys, audit export, proposals.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::{AppState, approvers, intake};

use super::{AdminSession, ApproverSession, JsonBody, body, respond};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposeRequest {
    action: countersign_core::Action,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteRequest {
    approver: countersign_core::id::ApproverId,
    name: String,
    roles: std::collections::BTreeSet<countersign_core::operation::Role>,
    #[serde(default)]
    groups: std::collections::BTreeSet<countersign_core::id::GroupName>,
}

/// An admin invites a person (or a new key of theirs): an enrollment link whose key
/// counts only after the admin quorum approves the resulting `ApproverEnroll`.
pub(crate) async fn admin_invite(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    b: JsonBody<InviteRequest>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let now = state.clock.now();
        let code = approvers::issue_enrollment_code(
            &state,
            &b.approver,
            &b.name,
            &b.roles,
            &b.groups,
            Some(&who.approver.id),
            now,
        )
        .await?;
        Ok(axum::Json(json!({
            "link": state.enrollment_link(&code),
            "expires_in_seconds": state.config.webauthn.enrollment_code_ttl_seconds,
        }))
        .into_response())
    };
    respond(&state, r.await)
}

/// The policy in force, for any logged-in approver: who must approve what is not a
/// secret from the people who approve.
pub(crate) async fn current_policy(State(state): State<AppState>, _: ApproverSession) -> Response {
    let r = async {
        let policy = state.store.current_policy().await?;
        Ok(axum::Json(json!({ "policy": policy })).into_response())
    };
    respond(&state, r.await)
}

pub(crate) async fn admin_approvers(State(state): State<AppState>, _: AdminSession) -> Response {
    let r =
        async { Ok(axum::Json(json!({ "approvers": approvers::people(&state).await? })).into_response()) };
    respond(&state, r.await)
}

/// Every API key (public fields only: the HMAC salt never leaves the database).
pub(crate) async fn admin_api_keys(State(state): State<AppState>, _: AdminSession) -> Response {
    let r = async { Ok(axum::Json(json!({ "api_keys": state.store.api_keys().await? })).into_response()) };
    respond(&state, r.await)
}

/// Revoke an API key at once. One admin suffices: revoking only removes power, and
/// in an incident it must not wait for a quorum (creating a key needs one).
pub(crate) async fn admin_revoke_api_key(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        if state.store.revoke_api_key(&id, who.approver.id.as_str(), state.clock.now()).await? {
            Ok(axum::Json(json!({ "revoked": id })).into_response())
        } else {
            Err(Error::new(StatusCode::NOT_FOUND, "api_key.unknown", format!("no active API key {id}")))
        }
    };
    respond(&state, r.await)
}

/// The audit chain as JSON lines, for `audit verify` offline.
pub(crate) async fn admin_audit(State(state): State<AppState>, _: AdminSession) -> Response {
    let r = async {
        let export = state.store.audit_export().await?;
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], export).into_response())
    };
    respond(&state, r.await)
}

pub(crate) async fn admin_propose(
    State(state): State<AppState>,
    ApproverSession(who): ApproverSession,
    b: JsonBody<ProposeRequest>,
) -> Response {
    let r = async {
        let record = approvers::propose_admin(&state, &who, body(b)?.action, state.clock.now()).await?;
        Ok((StatusCode::ACCEPTED, axum::Json(intake::operation_view(&record))).into_response())
    };
    respond(&state, r.await)
}
