//! Approvers: enrollment, login, the operations they may act on, decisions, live
//! events, break-glass freeze.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::{AppState, approvers, intake};

use super::{ApproverSession, JsonBody, Peer, bearer, body, respond};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollStart {
    code: String,
}

pub(crate) async fn enroll_start(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    b: JsonBody<EnrollStart>,
) -> Response {
    let r = async {
        let (ceremony, options) =
            approvers::enroll_start(&state, &body(b)?.code, peer.ip(), state.clock.now()).await?;
        Ok(axum::Json(json!({ "ceremony": ceremony, "options": options })).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollFinish {
    ceremony: String,
    #[serde(default)]
    label: String,
    credential: webauthn_rs::prelude::RegisterPublicKeyCredential,
}

pub(crate) async fn enroll_finish(State(state): State<AppState>, b: JsonBody<EnrollFinish>) -> Response {
    let r = async {
        let b = body(b)?;
        let (id, status, approver) =
            approvers::enroll_finish(&state, &b.ceremony, &b.label, &b.credential, state.clock.now()).await?;
        Ok(axum::Json(json!({ "credential_id": id, "status": status, "approver": approver })).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginStart {
    approver: countersign_core::id::ApproverId,
}

pub(crate) async fn login_start(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    b: JsonBody<LoginStart>,
) -> Response {
    let r = async {
        let (ceremony, options) =
            approvers::login_start(&state, &body(b)?.approver, peer.ip(), state.clock.now()).await?;
        Ok(axum::Json(json!({ "ceremony": ceremony, "options": options })).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssertionFinish {
    ceremony: String,
    credential: webauthn_rs::prelude::PublicKeyCredential,
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) async fn login_finish(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    b: JsonBody<AssertionFinish>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let (token, expires_at) =
            approvers::login_finish(&state, &b.ceremony, &b.credential, peer.ip(), state.clock.now()).await?;
        Ok(axum::Json(json!({ "token": token, "expires_at": expires_at })).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproverOperationsQuery {
    #[serde(default)]
    view: ApproverView,
}

/// What an approver lists: what waits (the default) or what was decided (history).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ApproverView {
    #[default]
    Pending,
    Decided,
}

pub(crate) async fn approver_operations(
    State(state): State<AppState>,
    ApproverSession(who): ApproverSession,
    query: std::result::Result<Query<ApproverOperationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(q) = query.map_err(|e| Error::bad_request("request.bad_query", e.body_text()))?;
        let records = match q.view {
            ApproverView::Pending => approvers::pending(&state, 200).await?,
            ApproverView::Decided => approvers::decided(&state, 200).await?,
        };
        // Each person sees what their role and groups can act on, nothing else, with
        // the decisions made so far and what each key signed (the client checks them).
        let visible: Vec<_> = records.iter().filter(|r| approvers::may_see(&who.approver, r)).collect();
        let ids: Vec<&str> = visible.iter().map(|r| r.operation.id.as_str()).collect();
        let mut decisions: std::collections::HashMap<String, Vec<_>> = std::collections::HashMap::new();
        for d in state.store.decisions_on(&ids).await? {
            decisions.entry(d.operation.clone()).or_default().push(d);
        }
        let items: Vec<_> = visible
            .into_iter()
            .map(|r| {
                let mut view = intake::operation_view(r);
                view["decisions"] = json!(decisions.remove(r.operation.id.as_str()).unwrap_or_default());
                view
            })
            .collect();
        Ok(axum::Json(json!({ "operations": items })).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChallengeRequest {
    decision: countersign_core::Decision,
}

pub(crate) async fn decision_challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApproverSession(who): ApproverSession,
    b: JsonBody<ChallengeRequest>,
) -> Response {
    let r = async {
        let decision = body(b)?.decision;
        let (ceremony, options, record) =
            approvers::decision_start(&state, &who, &id, decision, state.clock.now()).await?;
        Ok(axum::Json(
            json!({ "ceremony": ceremony, "options": options, "operation": intake::operation_view(&record) }),
        )
        .into_response())
    };
    respond(&state, r.await)
}

pub(crate) async fn decision_finish(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(id): Path<String>,
    ApproverSession(who): ApproverSession,
    b: JsonBody<AssertionFinish>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let now = state.clock.now();
        let outcome = approvers::decision_finish(
            &state,
            &who,
            &id,
            &b.ceremony,
            &b.credential,
            b.reason.as_deref(),
            now,
        )
        .await;
        if let Err(e) = &outcome {
            approvers::audit_refused_ceremony(&state, "decision", e, peer.ip(), now).await?;
        }
        Ok(axum::Json(json!(outcome?)).into_response())
    };
    respond(&state, r.await)
}

pub(crate) async fn events_stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let who = match bearer(&state, &headers).await {
        Ok(w) => w,
        Err(e) => return respond(&state, Err(e)),
    };
    let permit = match state.streams.acquire(who.approver.id.as_str()) {
        Ok(p) => p,
        Err(e) => return respond(&state, Err(e)),
    };
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    super::events::stream(state, who, last, permit).into_response()
}

pub(crate) async fn freeze_challenge(
    State(state): State<AppState>,
    ApproverSession(who): ApproverSession,
) -> Response {
    let r = async {
        let (ceremony, options) = approvers::freeze_start(&state, &who, state.clock.now()).await?;
        Ok(axum::Json(json!({ "ceremony": ceremony, "options": options })).into_response())
    };
    respond(&state, r.await)
}

pub(crate) async fn freeze(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    ApproverSession(who): ApproverSession,
    b: JsonBody<AssertionFinish>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let reason = b.reason.as_deref().unwrap_or("break glass");
        let now = state.clock.now();
        let changed = approvers::freeze_finish(&state, &who, &b.ceremony, &b.credential, reason, now).await;
        if let Err(e) = &changed {
            approvers::audit_refused_ceremony(&state, "freeze", e, peer.ip(), now).await?;
        }
        Ok(axum::Json(json!({ "frozen": true, "changed": changed? })).into_response())
    };
    respond(&state, r.await)
}
