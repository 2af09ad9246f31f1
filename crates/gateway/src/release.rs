//! Release to settlement: the signed release document (see
//! [`countersign_core::release`]) goes into the ledger in the same transaction as the
//! state change, so an operation is released exactly once. With a webhook
//! configured, a background task then delivers each ledger row to settlement,
//! retrying with exponential backoff until settlement answers 2xx.
//!
//! Delivery is at least once (a crash between settlement's answer and our commit
//! redelivers); settlement must treat the operation id as an idempotency key — it
//! verifies the document with `verify_release` before moving anything anyway.

use std::time::Duration;

use countersign_core::release::{ReleaseBasis, sign_release};
use countersign_core::{Operation, Timestamp};
use serde_json::Value;

use crate::AppState;
use crate::error::{Error, Result};
use crate::keys::GatewayKeys;
use crate::store::AuditEvent;

/// Longest wait between two delivery attempts.
pub const MAX_BACKOFF_SECONDS: i64 = 300;

/// The release document for an operation that policy allowed, as JSON, naming the
/// authority head it was judged under (none before genesis).
///
/// # Errors
/// Encoding failures (not expected for a valid operation).
pub fn release_document(
    op: &Operation,
    keys: &GatewayKeys,
    authority: Option<countersign_core::authority::Head>,
    now: Timestamp,
) -> Result<Value> {
    let doc =
        sign_release(op, ReleaseBasis::AllowedByPolicy, None, vec![], now, authority, keys.signing_key())
            .map_err(Error::internal)?;
    serde_json::to_value(doc).map_err(Error::internal)
}

/// Seconds to wait after `attempts` failed attempts: 2, 4, 8, … capped at 5 minutes.
#[must_use]
pub fn backoff_seconds(attempts: i64) -> i64 {
    1_i64
        .checked_shl(u32::try_from(attempts.clamp(1, 16)).unwrap_or(16))
        .unwrap_or(MAX_BACKOFF_SECONDS)
        .min(MAX_BACKOFF_SECONDS)
}

/// Deliver due ledger rows to the webhook once; returns how many were delivered.
///
/// # Errors
/// Store errors (the next round retries).
pub async fn deliver_once(
    state: &AppState,
    client: &reqwest::Client,
    url: &str,
    now: Timestamp,
) -> Result<usize> {
    let mut delivered = 0;
    for row in state.store.due_deliveries(now, 50).await? {
        // Claim the row for one attempt (the webhook timeout and a margin), so another
        // instance does not send it meanwhile; if this instance dies, another takes
        // it over when the lease ends.
        let lease_seconds =
            i64::try_from(state.config.settlement.timeout_seconds).unwrap_or(60).saturating_add(10);
        let lease = state.clock.now().max(now).plus_seconds(lease_seconds);
        if !state.store.claim_delivery(&row.operation_id, row.next_attempt_at, lease).await? {
            continue;
        }
        let body = serde_json::to_vec(&row.certificate).map_err(Error::internal)?;
        let outcome = client
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", &row.operation_id)
            .body(body)
            .send()
            .await;
        let attempts = row.attempts + 1;
        match outcome {
            Ok(r) if r.status().is_success() => {
                let event = AuditEvent::new("gateway", "settlement.delivered")
                    .detail("operation", row.operation_id.as_str())
                    .detail("attempts", attempts);
                state.store.mark_delivered(&row.operation_id, attempts, &event, now).await?;
                delivered += 1;
            }
            other => {
                let error = match other {
                    Ok(r) => format!("settlement answered {}", r.status()),
                    Err(e) => format!("settlement unreachable: {e}"),
                };
                tracing::warn!(operation = %row.operation_id, attempts, %error, "delivery failed; will retry");
                state.metrics.refusal("settlement.delivery_failed");
                let next = now.plus_seconds(backoff_seconds(attempts));
                state.store.mark_delivery_failed(&row.operation_id, attempts, next, &error).await?;
            }
        }
    }
    Ok(delivered)
}

/// An HTTPS-capable client (rustls on ring) with a timeout.
///
/// # Errors
/// When the TLS configuration cannot be built.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    // Installing twice is harmless (the second call reports the first provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).build().map_err(Error::internal)
}

/// Deliver forever (when a webhook is configured).
pub async fn deliver_forever(state: AppState, url: String, timeout: Duration) {
    let client = match http_client(timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the settlement HTTP client; releases stay in the ledger");
            return;
        }
    };
    loop {
        if let Err(e) = deliver_once(&state, &client, &url, state.clock.now()).await {
            tracing::warn!(error = %e, "delivery round failed; will retry");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<i64> = (1..=10).map(backoff_seconds).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_seconds(i64::MAX), 300);
    }
}
