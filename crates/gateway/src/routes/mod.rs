//! The HTTP API: the route table, and what every handler shares (error responses,
//! body limits, the API-key signature check, the approver's session).

mod admin;
mod approver;
mod authority;
mod events;
mod public;
mod withdrawals;

pub use crate::http::Peer;
pub use public::OPENAPI;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use countersign_core::operation::Scope;

use crate::auth::RequestParts;
use crate::error::{Error, Result};
use crate::store::ApiKeyRecord;
use crate::{AppState, approvers, auth, http, release, sweep};

/// The HTTP API.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/withdrawals", post(withdrawals::post_withdrawal))
        .route("/v1/operations", get(withdrawals::list_operations))
        .route("/v1/operations/{id}", get(withdrawals::get_operation))
        .route("/v1/enroll/start", post(approver::enroll_start))
        .route("/v1/enroll/finish", post(approver::enroll_finish))
        .route("/v1/login/start", post(approver::login_start))
        .route("/v1/login/finish", post(approver::login_finish))
        .route("/v1/approver/operations", get(approver::approver_operations))
        .route("/v1/operations/{id}/challenge", post(approver::decision_challenge))
        .route("/v1/operations/{id}/decisions", post(approver::decision_finish))
        .route("/v1/registry", get(public::registry))
        .route("/v1/authority", get(authority::chain))
        .route("/v1/authority/links", get(authority::links))
        .route("/v1/authority/genesis", get(authority::genesis))
        .route("/v1/authority/genesis/signatures", post(authority::sign_genesis))
        .route("/v1/events", get(approver::events_stream))
        .route("/v1/freeze/challenge", post(approver::freeze_challenge))
        .route("/v1/freeze", post(approver::freeze))
        .route("/v1/admin/operations", post(admin::admin_propose))
        .route("/v1/admin/enrollment-codes", post(admin::admin_invite))
        .route("/v1/admin/approvers", get(admin::admin_approvers))
        .route("/v1/admin/api-keys", get(admin::admin_api_keys))
        .route("/v1/policy", get(admin::current_policy))
        .route("/v1/admin/api-keys/{id}/revoke", post(admin::admin_revoke_api_key))
        .route("/v1/admin/audit", get(admin::admin_audit))
        .route("/v1/info", get(public::info))
        .route("/healthz", get(public::healthz))
        .route("/metrics", get(public::metrics))
        .route("/openapi.json", get(public::openapi))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::read_body_in_time))
        .with_state(state)
}

/// Serve on `listener` (plain TCP or [`tls::TlsListener`]) until the process is
/// stopped; the expiry sweep and settlement delivery run beside it.
///
/// # Errors
/// When the listener fails.
pub async fn serve<L>(state: AppState, listener: L) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    if let Err(e) = crate::authority::refresh(&state).await {
        // Serving goes on (reads, freeze); releases are refused until the chain verifies.
        tracing::error!(error = %e, "the authority chain does not verify");
    }
    tokio::spawn(sweep::sweep_forever(state.clone()));
    if let Some(url) = state.config.settlement.webhook_url.clone() {
        let timeout = std::time::Duration::from_secs(state.config.settlement.timeout_seconds.max(1));
        tokio::spawn(release::deliver_forever(state.clone(), url, timeout));
    }
    let limits = http::Limits::from_config(&state.config);
    http::serve_app(listener, router(state), limits).await;
    Ok(())
}

pub(crate) fn body_bytes(body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::too_large()
        } else {
            Error::bad_request("request.unreadable_body", r.body_text())
        }
    })
}

/// Authenticate an API-key request for a scope.
pub(crate) async fn api_key(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    peer: SocketAddr,
    scope: Scope,
) -> Result<ApiKeyRecord> {
    let parts = RequestParts { method, uri, headers, body, peer: peer.ip() };
    auth::authenticate(
        &state.store,
        &state.keys,
        &state.refusals,
        &parts,
        scope,
        state.config.signature_window_seconds,
        state.clock.now(),
    )
    .await
}

pub(crate) fn respond(state: &AppState, result: Result<Response>) -> Response {
    result.unwrap_or_else(|e| {
        state.metrics.refusal(e.code);
        e.into_response()
    })
}

// ---- approvers --------------------------------------------------------------------------

pub(crate) type JsonBody<T> = std::result::Result<axum::Json<T>, axum::extract::rejection::JsonRejection>;

pub(crate) fn body<T>(b: JsonBody<T>) -> Result<T> {
    b.map(|axum::Json(v)| v).map_err(|e| Error::bad_request("request.invalid_body", e.body_text()))
}

pub(crate) async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<approvers::Session> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Error::unauthenticated(
                "session.missing",
                "log in with your hardware key first (Authorization: Bearer)",
            )
        })?;
    approvers::session(state, token, state.clock.now()).await
}

/// The approver's session (`Authorization: Bearer`), as an extractor: a handler that
/// takes one cannot run without a valid session, and the refusal is answered (and
/// counted) before the body is read.
#[derive(Debug)]
pub(crate) struct ApproverSession(pub approvers::Session);

impl FromRequestParts<AppState> for ApproverSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> std::result::Result<Self, Response> {
        bearer(state, &parts.headers).await.map(ApproverSession).map_err(|e| respond(state, Err(e)))
    }
}

/// The session of an active admin, as an extractor (`admin.not_an_admin` otherwise).
#[derive(Debug)]
pub(crate) struct AdminSession(pub approvers::Session);

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> std::result::Result<Self, Response> {
        let ApproverSession(who) = ApproverSession::from_request_parts(parts, state).await?;
        if !who.approver.roles.contains(&countersign_core::operation::Role::Admin) {
            let e = Error::new(StatusCode::FORBIDDEN, "admin.not_an_admin", "only admins may do this");
            return Err(respond(state, Err(e)));
        }
        Ok(AdminSession(who))
    }
}
