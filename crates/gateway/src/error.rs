//! Errors: one enum for the gateway, mapped once to HTTP answers with stable codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Result alias for the gateway.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure with a stable code, an HTTP status and a message for people.
///
/// Messages never contain secrets: signatures, HMAC secrets and database URLs are
/// not formatted into them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `auth.bad_signature`.
    pub code: &'static str,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl Error {
    /// Build an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Error { status, code, message: message.into() }
    }

    /// 400 with a `request.*` code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with an `auth.*` code: the request is not proven to come from the key.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403 with an `auth.*` code: proven, but not allowed.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 409: the request conflicts with what is stored.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413: a body over `max_body_bytes`.
    pub fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", "request body is too large")
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 503: the database cannot be reached; nothing was changed, retry later.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store.unavailable",
            "the gateway's database is unavailable; nothing was changed, retry with the same idempotency key",
        )
    }

    /// 500: a bug or a broken invariant. Fails closed.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; nothing was released")
    }
}

impl From<countersign_core::Error> for Error {
    fn from(e: countersign_core::Error) -> Self {
        Self::bad_request(e.code(), e.to_string())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::unavailable(e),
            sqlx::Error::Database(db) if is_connection_loss(db.code().as_deref()) => Self::unavailable(db),
            other => Self::internal(other),
        }
    }
}

/// PostgreSQL error classes that mean "the server went away or is restarting"
/// (class 08: connection exception; 57P01..57P03: admin shutdown, crash shutdown,
/// cannot connect now). SQLite has no such class.
fn is_connection_loss(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}
