//! The background sweep: every few seconds, expire operations whose time is up,
//! settle what has decisions, forget old nonces and ceremonies, sign an audit
//! checkpoint when due.

use std::time::Duration;

use countersign_core::Timestamp;

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::{AuditEvent, OpState};

/// Expire pending operations whose time is up; runs in the background.
pub async fn sweep_forever(state: AppState) {
    let every = Duration::from_secs(state.config.sweep_interval_seconds.max(1));
    loop {
        let now = state.clock.now();
        if let Err(e) = sweep_once(&state, now).await {
            tracing::warn!(error = %e, "sweep failed; will retry");
        }
        // Links appended by another instance reach this one's intake head.
        if let Err(e) = crate::authority::refresh(&state).await {
            tracing::warn!(error = %e, "the authority chain could not be refreshed");
        }
        tokio::time::sleep(every).await;
    }
}

/// One sweep: expire due operations, settle what has decisions, forget old nonces,
/// sign a checkpoint if due. Every step and every item runs whatever the others do:
/// one operation that cannot be expired or settled never stops the rest (it is
/// logged, counted in `countersign_sweep_failures_total`, and retried next time).
///
/// # Errors
/// None today; the result is kept for callers that wait on a sweep.
pub async fn sweep_once(state: &AppState, now: Timestamp) -> Result<usize> {
    let mut expired = 0;
    let failed = |step: &str, e: &Error| {
        state.metrics.sweep_failure();
        tracing::warn!(step, error = %e, "sweep step failed; the rest of the sweep goes on");
    };
    match state.store.due_for_expiry(now, 500).await {
        Ok(due) => {
            for (id, digest) in due {
                let event =
                    AuditEvent::new("gateway", OpState::Expired.audit_event()).operation(&id, &digest);
                match state.store.transition(&id, OpState::Pending, OpState::Expired, None, &event, now).await
                {
                    Ok(true) => {
                        expired += 1;
                        state.metrics.expired();
                    }
                    Ok(false) => {}
                    Err(e) => failed("expire", &e),
                }
            }
        }
        Err(e) => failed("expire", &e),
    }
    if let Err(e) = crate::approvers::sweep(state, now, &failed).await {
        failed("settle", &e);
    }
    if let Err(e) = state.store.sweep_nonces(now).await {
        failed("nonces", &e);
    }
    if let Err(e) =
        state.store.checkpoint_if_due(state.keys.signing_key(), state.config.checkpoint_every, now).await
    {
        failed("checkpoint", &e);
    }
    Ok(expired)
}
