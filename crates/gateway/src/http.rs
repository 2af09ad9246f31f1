//! Serving HTTP with bounds a hostile client cannot stretch: at most
//! `max_connections` connections (more wait in the kernel's backlog), request headers
//! complete within `header_read_timeout` (slowloris), request bodies complete within
//! `body_read_timeout` and `max_body_bytes`. Idle streams of events are not cut: a
//! stream's response is being written, not read.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

use crate::AppState;
use crate::error::Error;

/// How long a client has to send its request headers, and then its body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_read_timeout: Duration,
}

impl Limits {
    /// The limits the configuration sets.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Limits {
            max_connections: config.max_connections.max(1),
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds.max(1)),
            body_read_timeout: Duration::from_secs(config.body_read_timeout_seconds.max(1)),
        }
    }
}

/// Read the whole request body within the time and size limits before any handler
/// runs; a client that sends it too slowly gets `408 request.body_timeout`.
pub async fn read_body_in_time(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = Limits::from_config(&state.config);
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(
        limits.body_read_timeout,
        axum::body::to_bytes(body, state.config.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(_)) => Error::too_large().into_response(),
        Err(_) => Error::new(
            StatusCode::REQUEST_TIMEOUT,
            "request.body_timeout",
            format!("the request body did not arrive within {} s", limits.body_read_timeout.as_secs()),
        )
        .into_response(),
    }
}

/// Serve `app` on `listener` (plain TCP or [`crate::tls::TlsListener`]) until the
/// listener fails, within `limits`. Each request carries its [`Peer`] address as
/// `ConnectInfo`.
pub async fn serve_app<L>(mut listener: L, app: Router, limits: Limits)
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        // Wait for a free slot before accepting: excess connections queue in the
        // kernel, not in memory here.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (io, addr) = listener.accept().await;
        let app = app.clone().map_request(move |mut r: Request<hyper::body::Incoming>| {
            r.extensions_mut().insert(ConnectInfo(Peer(addr)));
            r
        });
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            let served = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app)).await;
            if let Err(e) = served {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// The address a request came from, for every listener the gateway serves on
/// (plain TCP, or TLS via [`crate::tls::TlsListener`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);
