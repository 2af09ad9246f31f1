//! # countersign-gateway
//!
//! The exchange-side service that stops a stolen API key from moving large sums:
//! it authenticates API-key requests, judges each withdrawal by policy, holds what
//! needs people, keeps the audit chain and releases exactly once to settlement.
//!
//! | module | what it holds |
//! |---|---|
//! | [`auth`] | API-key request signatures (Ed25519, HMAC-SHA256), nonces, allowlists |
//! | [`intake`] | `POST /v1/withdrawals`: validation, risk, policy, storage; expiry sweep |
//! | [`release`] | the signed document settlement receives |
//! | [`store`] | SQLite / PostgreSQL, the audit chain, exactly-once transitions |
//! | [`invariants`] | the independent check of every promise (`countersign-gateway check`) |
//! | [`decoy`] | decoy login challenges: `login/start` does not tell who exists |
//! | [`rate`] | rate limits for logins and enrollments started without a session |
//! | [`race`] | test hooks that widen the intake and settlement windows (zero otherwise) |
//! | [`assets`] | listed assets and address checks per network |
//! | [`http`] | connection, header and body limits (slowloris, floods) |
//! | [`config`], [`keys`], [`clock`], [`metrics`], [`error`] | the edges |
//!
//! HTTP handlers below are adapters: they read the request, call one function,
//! and map its result to a response.

pub mod approvers;
pub mod assets;
pub mod auth;
pub mod clock;
pub mod config;
pub mod decoy;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod events;
pub mod http;
pub mod intake;
pub mod invariants;
pub mod keys;
pub mod metrics;
pub mod race;
pub mod rate;
pub mod release;
pub mod store;
pub mod sweep;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use countersign_core::operation::Scope;
use data_encoding::BASE64URL_NOPAD;
use serde::Deserialize;
use serde_json::json;

use crate::auth::RequestParts;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::GatewayKeys;
use crate::metrics::Metrics;
use crate::store::{ApiKeyRecord, OpState, OperationFilter, Store};

/// The OpenAPI document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The gateway's secrets.
    pub keys: Arc<GatewayKeys>,
    /// Configuration.
    pub config: Arc<Config>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Metrics,
    /// The WebAuthn relying party.
    pub webauthn: Arc<webauthn_rs::Webauthn>,
    /// Attestation CAs (and AAGUIDs) whose keys may enroll.
    pub attestation: webauthn_rs::prelude::AttestationCaList,
    /// Limits audit entries for repeated refusals.
    pub refusals: Arc<auth::RefusalThrottle>,
    /// HTTPS certificate and pin, when `[tls]` is configured.
    pub tls: Option<tls::Tls>,
    /// Bounds on open live event streams.
    pub streams: Arc<events::StreamLimits>,
    /// The one reader of the audit log for live event streams.
    pub events: Arc<events::Tail>,
    /// Admission control for intake: one permit per withdrawal being taken in.
    pub intake_slots: Arc<tokio::sync::Semaphore>,
    /// Pauses tests put inside critical sections (zero otherwise).
    pub race_windows: Arc<race::RaceWindows>,
    /// Rate limits for logins and enrollments started without a session.
    pub ceremony_limits: Arc<rate::CeremonyLimits>,
    /// The signed registry, by the audit head it was built at.
    pub registry_cache: Arc<tokio::sync::Mutex<Option<(i64, countersign_core::certificate::SignedRegistry)>>>,
}

impl AppState {
    /// Connect to the database, load (or create) the keys, store the initial policy.
    ///
    /// # Errors
    /// Unreachable database, unreadable key file.
    pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Self> {
        let store = Store::connect(&config.database_url()).await?;
        let keys = GatewayKeys::load_or_create(&config.keys_path())
            .map_err(|e| Error::internal(format!("key file {}: {e}", config.keys_path().display())))?;
        store.ensure_policy(&config.policy, clock.now()).await?;
        let (webauthn, attestation) = relying_party(&config)?;
        let tls = config.tls.as_ref().map(|t| tls::Tls::load(t, &config.data_dir)).transpose()?;
        let config_streams = config.max_event_streams;
        let config_intake = config.max_intake_in_flight;
        Ok(AppState {
            store,
            keys: Arc::new(keys),
            config: Arc::new(config),
            clock,
            metrics: Metrics::default(),
            webauthn: Arc::new(webauthn),
            attestation,
            refusals: Arc::default(),
            streams: events::StreamLimits::new(config_streams),
            events: Arc::default(),
            intake_slots: Arc::new(tokio::sync::Semaphore::new(config_intake)),
            race_windows: Arc::default(),
            ceremony_limits: Arc::default(),
            registry_cache: Arc::default(),
            tls,
        })
    }
}

impl AppState {
    /// The URL clients use to reach this gateway.
    #[must_use]
    pub fn public_url(&self) -> String {
        match &self.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.config.listen),
        }
    }

    /// The enrollment link an approver's client opens: the gateway's URL, the
    /// single-use code and, with TLS, the pin of the gateway's key.
    #[must_use]
    pub fn enrollment_link(&self, code: &str) -> String {
        let mut link = format!("countersign://enroll?gateway={}&code={code}", percent(&self.public_url()));
        if let Some(tls) = &self.tls {
            link.push_str(&format!("&pin={}", percent(tls.pin())));
        }
        link
    }
}

/// Percent-encode everything but unreserved characters (RFC 3986).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn relying_party(
    config: &Config,
) -> Result<(webauthn_rs::Webauthn, webauthn_rs::prelude::AttestationCaList)> {
    use webauthn_rs::prelude::{AttestationCaListBuilder, Url, Uuid};
    let bad = |m: String| Error::internal(format!("[webauthn] {m}"));
    let origin = Url::parse(&config.webauthn.origin).map_err(|e| bad(format!("origin: {e}")))?;
    let timeout = std::time::Duration::from_millis(u64::from(authenticator_timeout_ms(config)));
    let webauthn = webauthn_rs::WebauthnBuilder::new(&config.webauthn.rp_id, &origin)
        .and_then(|b| b.rp_name("Countersign").timeout(timeout).build())
        .map_err(|e| bad(format!("rp_id/origin: {e:?}")))?;
    let mut cas = AttestationCaListBuilder::new();
    let mut presets = webauthn_rs::prelude::AttestationCaList::default();
    for preset in &config.webauthn.attestation_presets {
        let roots: &[&[u8]] = match preset {
            config::AttestationPreset::Yubikey => YUBICO_ROOTS,
            config::AttestationPreset::Permissive => PERMISSIVE_ROOTS,
            config::AttestationPreset::Development => {
                tracing::warn!(
                    "[webauthn] attestation preset `development`: SOFTWARE authenticators can enroll. \
                     Never use this where real money moves."
                );
                let aaguid = Uuid::parse_str(countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID)
                    .map_err(|e| bad(format!("softkey aaguid: {e}")))?;
                cas.insert_device_pem(
                    SOFTKEY_DEV_CA_PEM,
                    aaguid,
                    "countersign-softkey (SOFTWARE authenticator, development only)".into(),
                    Default::default(),
                )
                .map_err(|e| bad(format!("{preset:?}: {e:?}")))?;
                continue;
            }
        };
        for pem in roots {
            let list = webauthn_rs::prelude::AttestationCaList::try_from(*pem)
                .map_err(|e| bad(format!("{preset:?}: {e:?}")))?;
            presets.union(&list);
        }
    }
    for ca in &config.webauthn.attestation_cas {
        let pem = std::fs::read(&ca.pem_file).map_err(|e| bad(format!("{}: {e}", ca.pem_file.display())))?;
        for aaguid in &ca.aaguids {
            let aaguid = Uuid::parse_str(aaguid).map_err(|e| bad(format!("aaguid {aaguid}: {e}")))?;
            cas.insert_device_pem(&pem, aaguid, ca.description.clone(), Default::default())
                .map_err(|e| bad(format!("{}: {e:?}", ca.pem_file.display())))?;
        }
    }
    let mut list = cas.build();
    list.union(&presets);
    Ok((webauthn, list))
}

/// How long the key is given for a touch, as the WebAuthn options say: the
/// challenge's lifetime (real and decoy ceremonies alike).
#[must_use]
pub fn authenticator_timeout_ms(config: &Config) -> u32 {
    u32::try_from(config.webauthn.challenge_ttl_seconds.saturating_mul(1000)).unwrap_or(u32::MAX)
}

/// Yubico's attestation roots (public certificates; see `attestation/README.md`).
const YUBICO_ROOTS: &[&[u8]] = &[
    include_bytes!("../attestation/yubico-u2f-root-ca-serial-457200631.pem"),
    include_bytes!("../attestation/yubico-fido-root-450203556.pem"),
    include_bytes!("../attestation/yubico-attestation-root-1.pem"),
];

/// Every vendor root in `attestation/` except the development CA.
const PERMISSIVE_ROOTS: &[&[u8]] = &[
    include_bytes!("../attestation/yubico-u2f-root-ca-serial-457200631.pem"),
    include_bytes!("../attestation/yubico-fido-root-450203556.pem"),
    include_bytes!("../attestation/yubico-attestation-root-1.pem"),
    include_bytes!("../attestation/google-titan-security-key-root.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-us-2018.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-cn-2018.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-us-2022.pem"),
    include_bytes!("../attestation/feitian-fido-root-ca-cn-2022.pem"),
    include_bytes!("../attestation/feitian-fido-ea-root.pem"),
    include_bytes!("../attestation/feitian-ft-fido-0200.pem"),
    include_bytes!("../attestation/solokeys-root.pem"),
    include_bytes!("../attestation/nitrokey-fido2-root.pem"),
    include_bytes!("../attestation/token2-root.pem"),
];

/// The development CA of `countersign-softkey` (public; see that crate's docs). Kept
/// equal to what the softkey derives by a test in `countersign-softkey`.
const SOFTKEY_DEV_CA_PEM: &[u8] = include_bytes!("../attestation/countersign-softkey-dev-ca.pem");

/// The HTTP API.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/withdrawals", post(post_withdrawal))
        .route("/v1/operations", get(list_operations))
        .route("/v1/operations/{id}", get(get_operation))
        .route("/v1/enroll/start", post(enroll_start))
        .route("/v1/enroll/finish", post(enroll_finish))
        .route("/v1/login/start", post(login_start))
        .route("/v1/login/finish", post(login_finish))
        .route("/v1/approver/operations", get(approver_operations))
        .route("/v1/operations/{id}/challenge", post(decision_challenge))
        .route("/v1/operations/{id}/decisions", post(decision_finish))
        .route("/v1/registry", get(registry))
        .route("/v1/events", get(events_stream))
        .route("/v1/freeze/challenge", post(freeze_challenge))
        .route("/v1/freeze", post(freeze))
        .route("/v1/admin/operations", post(admin_propose))
        .route("/v1/admin/enrollment-codes", post(admin_invite))
        .route("/v1/admin/approvers", get(admin_approvers))
        .route("/v1/admin/api-keys", get(admin_api_keys))
        .route("/v1/policy", get(current_policy))
        .route("/v1/admin/api-keys/{id}/revoke", post(admin_revoke_api_key))
        .route("/v1/admin/audit", get(admin_audit))
        .route("/v1/info", get(info))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), http::read_body_in_time))
        .with_state(state)
}

/// The address a request came from, for every listener the gateway serves on
/// (plain TCP, or TLS via [`tls::TlsListener`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serve on `listener` (plain TCP or [`tls::TlsListener`]) until the process is
/// stopped; the expiry sweep and settlement delivery run beside it.
///
/// # Errors
/// When the listener fails.
pub async fn serve<L>(state: AppState, listener: L) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    tokio::spawn(sweep::sweep_forever(state.clone()));
    if let Some(url) = state.config.settlement.webhook_url.clone() {
        let timeout = std::time::Duration::from_secs(state.config.settlement.timeout_seconds.max(1));
        tokio::spawn(release::deliver_forever(state.clone(), url, timeout));
    }
    let limits = http::Limits::from_config(&state.config);
    http::serve_app(listener, router(state), limits).await;
    Ok(())
}

fn body_bytes(body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::too_large()
        } else {
            Error::bad_request("request.unreadable_body", r.body_text())
        }
    })
}

/// Authenticate an API-key request for a scope.
async fn api_key(
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

fn respond(state: &AppState, result: Result<Response>) -> Response {
    result.unwrap_or_else(|e| {
        state.metrics.refusal(e.code);
        e.into_response()
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<String> {
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

async fn post_withdrawal(
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

fn withdrawal_response(outcome: &intake::IntakeOutcome) -> Response {
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

async fn get_operation(
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

fn initiated_by(record: &store::OperationRecord, key: &ApiKeyRecord) -> bool {
    matches!(&record.operation.initiator, countersign_core::Initiator::ApiKey { key_id, .. } if *key_id == key.id)
}

/// Query of `GET /v1/operations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn encode_cursor(created_at: i64, id: &str) -> String {
    BASE64URL_NOPAD.encode(format!("{created_at}:{id}").as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || Error::bad_request("request.bad_cursor", "cursor is not one this gateway issued");
    let text = BASE64URL_NOPAD
        .decode(cursor.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (t, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_owned()))
}

async fn list_operations(
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

async fn info(State(state): State<AppState>) -> Response {
    axum::Json(json!({
        "rp_id": state.config.webauthn.rp_id,
        "origin": state.config.webauthn.origin,
        "version": env!("CARGO_PKG_VERSION"),
        "tls_pin": state.tls.as_ref().map(tls::Tls::pin),
    }))
    .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---- approvers --------------------------------------------------------------------------

type JsonBody<T> = std::result::Result<axum::Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T> {
    b.map(|axum::Json(v)| v).map_err(|e| Error::bad_request("request.invalid_body", e.body_text()))
}

async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<approvers::Session> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollStart {
    code: String,
}

async fn enroll_start(
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
struct EnrollFinish {
    ceremony: String,
    #[serde(default)]
    label: String,
    credential: webauthn_rs::prelude::RegisterPublicKeyCredential,
}

async fn enroll_finish(State(state): State<AppState>, b: JsonBody<EnrollFinish>) -> Response {
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
struct LoginStart {
    approver: countersign_core::id::ApproverId,
}

async fn login_start(
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
struct AssertionFinish {
    ceremony: String,
    credential: webauthn_rs::prelude::PublicKeyCredential,
    #[serde(default)]
    reason: Option<String>,
}

async fn login_finish(
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
struct ApproverOperationsQuery {
    #[serde(default)]
    view: ApproverView,
}

/// What an approver lists: what waits (the default) or what was decided (history).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ApproverView {
    #[default]
    Pending,
    Decided,
}

async fn approver_operations(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: std::result::Result<Query<ApproverOperationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let who = bearer(&state, &headers).await?;
        let Query(q) = query.map_err(|e| Error::bad_request("request.bad_query", e.body_text()))?;
        let records = match q.view {
            ApproverView::Pending => approvers::pending(&state, 200).await?,
            ApproverView::Decided => approvers::decided(&state, 200).await?,
        };
        // Each person sees what their role and groups can act on, nothing else, with
        // the decisions made so far and what each key signed (the client checks them).
        let visible: Vec<_> = records.iter().filter(|r| approvers::may_see(&who.approver, r)).collect();
        let ids: Vec<&str> = visible.iter().map(|r| r.operation.id.as_str()).collect();
        let decisions = state.store.decisions_on(&ids).await?;
        let items: Vec<_> = visible
            .into_iter()
            .map(|r| {
                let mut view = intake::operation_view(r);
                let on: Vec<_> =
                    decisions.iter().filter(|d| d.operation == r.operation.id.as_str()).collect();
                view["decisions"] = json!(on);
                view
            })
            .collect();
        Ok(axum::Json(json!({ "operations": items })).into_response())
    };
    respond(&state, r.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeRequest {
    decision: countersign_core::Decision,
}

async fn decision_challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: JsonBody<ChallengeRequest>,
) -> Response {
    let r = async {
        let who = bearer(&state, &headers).await?;
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

async fn decision_finish(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: JsonBody<AssertionFinish>,
) -> Response {
    let r = async {
        let who = bearer(&state, &headers).await?;
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

async fn registry(State(state): State<AppState>) -> Response {
    let r = async {
        Ok(axum::Json(approvers::registry_cached(&state, state.clock.now()).await?).into_response())
    };
    respond(&state, r.await)
}

async fn events_stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let who = match bearer(&state, &headers).await {
        Ok(w) => w,
        Err(e) => return respond(&state, Err(e)),
    };
    let permit = match state.streams.acquire(who.approver.id.as_str()) {
        Ok(p) => p,
        Err(e) => return respond(&state, Err(e)),
    };
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    events::stream(state, who, last, permit).into_response()
}

async fn freeze_challenge(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let who = bearer(&state, &headers).await?;
        let (ceremony, options) = approvers::freeze_start(&state, &who, state.clock.now()).await?;
        Ok(axum::Json(json!({ "ceremony": ceremony, "options": options })).into_response())
    };
    respond(&state, r.await)
}

async fn freeze(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    b: JsonBody<AssertionFinish>,
) -> Response {
    let r = async {
        let who = bearer(&state, &headers).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttestationPreset;

    fn config() -> Config {
        let path =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../countersign.example.toml"));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Config::from_toml(&text, path).unwrap()
    }

    #[test]
    fn attestation_trust_comes_from_presets_and_files() {
        let mut c = config();
        assert_eq!(
            c.webauthn.attestation_presets,
            vec![AttestationPreset::Yubikey],
            "the example trusts YubiKeys"
        );
        let (_, yubico) = relying_party(&c).unwrap();
        assert_eq!(yubico.len(), 3, "Yubico's three roots, 5.7+ firmware included");
        c.webauthn.attestation_presets = vec![AttestationPreset::Permissive];
        let (_, permissive) = relying_party(&c).unwrap();
        assert_eq!(permissive.len(), 13, "every bundled vendor root parses");
        c.webauthn.attestation_presets = vec![AttestationPreset::Development];
        let (_, dev) = relying_party(&c).unwrap();
        assert_eq!(dev.len(), 1, "the development preset trusts only the softkey CA");
        c.webauthn.attestation_presets.clear();
        let (_, none) = relying_party(&c).unwrap();
        assert!(none.is_empty(), "nothing trusted unless configured");
        c.webauthn.origin = "https://evil.example".into();
        assert!(relying_party(&c).is_err(), "the origin must be within the RP id");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeRequest {
    action: countersign_core::Action,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    approver: countersign_core::id::ApproverId,
    name: String,
    roles: std::collections::BTreeSet<countersign_core::operation::Role>,
    #[serde(default)]
    groups: std::collections::BTreeSet<countersign_core::id::GroupName>,
}

/// An admin invites a person (or a new key of theirs): an enrollment link whose key
/// counts only after the admin quorum approves the resulting `ApproverEnroll`.
async fn admin_invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: JsonBody<InviteRequest>,
) -> Response {
    let r = async {
        let who = admin(&state, &headers).await?;
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
async fn current_policy(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        bearer(&state, &headers).await?;
        let policy = state.store.current_policy().await?;
        Ok(axum::Json(json!({ "policy": policy })).into_response())
    };
    respond(&state, r.await)
}

async fn admin_approvers(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        admin(&state, &headers).await?;
        Ok(axum::Json(json!({ "approvers": approvers::people(&state).await? })).into_response())
    };
    respond(&state, r.await)
}

/// Every API key (public fields only: the HMAC salt never leaves the database).
async fn admin_api_keys(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        admin(&state, &headers).await?;
        Ok(axum::Json(json!({ "api_keys": state.store.api_keys().await? })).into_response())
    };
    respond(&state, r.await)
}

/// Revoke an API key at once. One admin suffices: revoking only removes power, and
/// in an incident it must not wait for a quorum (creating a key needs one).
async fn admin_revoke_api_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let who = admin(&state, &headers).await?;
        if state.store.revoke_api_key(&id, who.approver.id.as_str(), state.clock.now()).await? {
            Ok(axum::Json(json!({ "revoked": id })).into_response())
        } else {
            Err(Error::new(StatusCode::NOT_FOUND, "api_key.unknown", format!("no active API key {id}")))
        }
    };
    respond(&state, r.await)
}

/// The audit chain as JSON lines, for `audit verify` offline.
async fn admin_audit(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        admin(&state, &headers).await?;
        let export = state.store.audit_export().await?;
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], export).into_response())
    };
    respond(&state, r.await)
}

/// A session of an active admin.
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<approvers::Session> {
    let who = bearer(state, headers).await?;
    if !who.approver.roles.contains(&countersign_core::operation::Role::Admin) {
        return Err(Error::new(StatusCode::FORBIDDEN, "admin.not_an_admin", "only admins may do this"));
    }
    Ok(who)
}

async fn admin_propose(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: JsonBody<ProposeRequest>,
) -> Response {
    let r = async {
        let who = bearer(&state, &headers).await?;
        let record = approvers::propose_admin(&state, &who, body(b)?.action, state.clock.now()).await?;
        Ok((StatusCode::ACCEPTED, axum::Json(intake::operation_view(&record))).into_response())
    };
    respond(&state, r.await)
}
