//! Unauthenticated reads: info, health, metrics, the OpenAPI document, the registry.

use crate::{AppState, approvers, tls};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::respond;

/// The OpenAPI document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub(crate) async fn info(State(state): State<AppState>) -> Response {
    axum::Json(json!({
        "rp_id": state.config.webauthn.rp_id,
        "origin": state.config.webauthn.origin,
        "version": env!("CARGO_PKG_VERSION"),
        "tls_pin": state.tls.as_ref().map(tls::Tls::pin),
    }))
    .into_response()
}

pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub(crate) async fn registry(State(state): State<AppState>) -> Response {
    let r = async {
        Ok(axum::Json(approvers::registry_cached(&state, state.clock.now()).await?).into_response())
    };
    respond(&state, r.await)
}
