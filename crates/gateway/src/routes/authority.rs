//! The authority chain: what settlement and clients verify from the pinned genesis
//! (public), and the founding people's signatures on the genesis (a session).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use countersign_core::certificate::CertifiedApproval;
use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::{AppState, authority};

use super::{ApproverSession, JsonBody, body, respond};

fn no_genesis() -> Error {
    Error::conflict("authority.no_genesis", "this gateway has no sealed genesis yet")
}

/// `GET /v1/authority`: the signed genesis and every link.
pub(crate) async fn chain(State(state): State<AppState>) -> Response {
    let r = async {
        let doc = authority::document(&state).await?.ok_or_else(no_genesis)?;
        Ok(axum::Json(doc).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct After {
    #[serde(default)]
    after: u64,
}

/// `GET /v1/authority/links?after=N`: the links after a head the caller holds.
pub(crate) async fn links(
    State(state): State<AppState>,
    query: std::result::Result<Query<After>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(q) = query.map_err(|e| Error::bad_request("request.bad_query", e.body_text()))?;
        if i64::try_from(q.after).is_err() {
            return Err(Error::bad_request("request.bad_query", "after: a link index (0 to 2^63 - 1)"));
        }
        if state.store.genesis().await?.and_then(|g| g.sealed_at).is_none() {
            return Err(no_genesis());
        }
        Ok(axum::Json(json!({ "links": state.store.links_after(q.after).await? })).into_response())
    };
    respond(&state, r.await)
}

/// `GET /v1/authority/genesis`: the genesis (draft or sealed) and who has yet to sign.
pub(crate) async fn genesis(State(state): State<AppState>) -> Response {
    let r = async {
        let row = state.store.genesis().await?.ok_or_else(no_genesis)?;
        let missing: Vec<_> = row
            .signed
            .genesis
            .people
            .iter()
            .flat_map(|p| p.keys.iter().map(move |k| (p.id.clone(), k.credential_id.clone())))
            .filter(|(_, k)| !row.signed.signatures.iter().any(|s| &s.credential_id == k))
            .map(|(approver, credential)| json!({ "approver": approver, "credential_id": credential }))
            .collect();
        Ok(axum::Json(json!({
            "genesis": row.signed.genesis,
            "hash": row.hash,
            "sealed": row.sealed_at.is_some(),
            "missing": missing,
        }))
        .into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenesisSignature {
    credential_id: String,
    authenticator_data: String,
    client_data_json: String,
    signature: String,
}

/// `POST /v1/authority/genesis/signatures`: a founding person's key signs the draft.
pub(crate) async fn sign_genesis(
    State(state): State<AppState>,
    ApproverSession(who): ApproverSession,
    b: JsonBody<GenesisSignature>,
) -> Response {
    let r = async {
        let b = body(b)?;
        let signature = CertifiedApproval {
            approver: who.approver.id.clone(),
            credential_id: b.credential_id,
            authenticator_data: b.authenticator_data,
            client_data_json: b.client_data_json,
            signature: b.signature,
        };
        let status = authority::sign(&state, &who.approver.id, signature, state.clock.now()).await?;
        Ok(axum::Json(json!({
            "hash": status.hash,
            "sealed": status.sealed,
            "missing": status.missing.iter().map(|(a, c)| json!({"approver": a, "credential_id": c})).collect::<Vec<_>>(),
        }))
        .into_response())
    };
    respond(&state, r.await)
}
