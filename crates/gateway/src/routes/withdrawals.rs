//! API-key operations: submit a withdrawal, read one, list them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use countersign_core::operation::Scope;
use data_encoding::BASE64URL_NOPAD;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::store::{ApiKeyRecord, OpState, OperationFilter};
use crate::{AppState, intake, store};

use super::{Peer, api_key, body_bytes, respond};

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String> {
    let value = headers.get("idempotency-key").ok_or_else(|| {
        Error::bad_request("request.missing_idempotency_key", "the Idempotency-Key header is required")
    })?;
    value
        .to_str()
        .ok()
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::bad_request(
                "request.bad_idempotency_key",
                "Idempotency-Key: 1 to 64 of A-Z a-z 0-9 - _ . :",
            )
        })
}

pub(crate) async fn post_withdrawal(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        // Admission first: under overload, refuse at once instead of queueing.
        let _slot = state.intake_slots.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "intake.busy",
                format!(
                    "the gateway is taking in {} withdrawals at once; nothing stored; retry shortly with the same Idempotency-Key",
                    state.config.max_intake_in_flight
                ),
            )
        })?;
        let body = body_bytes(body)?;
        let key = api_key(&state, &method, &uri, &headers, &body, peer, Scope::Withdraw).await?;
        let idem = idempotency_key(&headers)?;
        let outcome = intake::submit(&state, &key, &idem, &body, peer.ip(), state.clock.now()).await?;
        Ok(withdrawal_response(&outcome))
    }
    .await;
    respond(&state, result)
}

pub(crate) fn withdrawal_response(outcome: &intake::IntakeOutcome) -> Response {
    let mut view = intake::initiator_view(&outcome.record);
    let status = match outcome.record.state {
        OpState::Released => StatusCode::CREATED,
        OpState::Pending => StatusCode::ACCEPTED,
        _ => {
            view["error"] = json!({
                "code": "policy.denied",
                "message": "the policy refuses this withdrawal; see verdict.reason",
            });
            StatusCode::FORBIDDEN
        }
    };
    let mut response = (status, axum::Json(view)).into_response();
    if !outcome.created {
        response.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    response
}

pub(crate) async fn get_operation(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = api_key(&state, &method, &uri, &headers, b"", peer, Scope::Read).await?;
        let record = state
            .store
            .operation(&id)
            .await?
            .filter(|r| initiated_by(r, &key))
            .ok_or_else(|| Error::not_found("operation"))?;
        Ok(axum::Json(intake::initiator_view(&record)).into_response())
    }
    .await;
    respond(&state, result)
}

pub(crate) fn initiated_by(record: &store::OperationRecord, key: &ApiKeyRecord) -> bool {
    matches!(&record.operation.initiator, countersign_core::Initiator::ApiKey { key_id, .. } if *key_id == key.id)
}

/// Query of `GET /v1/operations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub(crate) fn encode_cursor(created_at: i64, id: &str) -> String {
    BASE64URL_NOPAD.encode(format!("{created_at}:{id}").as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || Error::bad_request("request.bad_cursor", "cursor is not one this gateway issued");
    let text = BASE64URL_NOPAD
        .decode(cursor.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_owned()))
}

pub(crate) async fn list_operations(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = api_key(&state, &method, &uri, &headers, b"", peer, Scope::Read).await?;
        let Query(q) = query.map_err(|e| Error::bad_request("request.bad_query", e.body_text()))?;
        let limit = q.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(Error::bad_request("request.bad_query", "limit must be 1..=200"));
        }
        let filter = OperationFilter {
            state: q.state.as_deref().map(str::parse).transpose()?,
            api_key: Some(key.id.as_str().to_owned()),
            before: q.cursor.as_deref().map(decode_cursor).transpose()?,
            decided: false,
        };
        let page = state.store.operations(&filter, limit).await?;
        let next = (page.len() == usize::try_from(limit).unwrap_or(0))
            .then(|| {
                page.last().map(|r| encode_cursor(r.operation.created_at.unix(), r.operation.id.as_str()))
            })
            .flatten();
        let items: Vec<_> = page.iter().map(intake::initiator_view).collect();
        Ok(axum::Json(json!({ "operations": items, "next_cursor": next })).into_response())
    }
    .await;
    respond(&state, result)
}
