//! The approvals part of the background sweep: expired ceremonies, unsettled
//! decisions.

use countersign_core::Timestamp;

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::OpState;

use super::settle;

/// Background duties: tally again every pending operation that has decisions (so a
/// crash between counting a decision and releasing cannot strand a completed
/// quorum), and forget ceremonies whose time is up.
///
/// # Errors
/// Store errors (the next sweep retries).
pub async fn sweep(
    state: &AppState,
    now: Timestamp,
    failed: &(dyn Fn(&str, &Error) + Sync),
) -> Result<usize> {
    if let Err(e) = state.store.delete_expired_ceremonies(now).await {
        failed("ceremonies", &e);
    }
    let ids = state.store.pending_with_decisions(500).await?;
    let mut settled = 0;
    for id in ids {
        // One operation that cannot be settled (its effect fails) is retried next
        // time; it never keeps the others waiting.
        let outcome = match state.store.operation(&id).await {
            Ok(Some(record)) if record.state == OpState::Pending => settle(state, &record, now).await,
            Ok(_) => continue,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(o) if o.state != OpState::Pending => settled += 1,
            Ok(_) => {}
            // The chain waits for more: a consent, or approvals for a stricter admin
            // quorum. Not a failure; it stays pending (and expires in time).
            Err(e) if e.code == "authority.link_refused" => {}
            Err(e) => failed("settle", &e),
        }
    }
    Ok(settled)
}
