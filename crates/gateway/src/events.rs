//! Live events for approvers: `GET /v1/events`, Server-Sent Events.
//!
//! The audit chain is the event log: each event's id is its audit sequence number,
//! so a client resumes with `Last-Event-ID` after a disconnect and misses nothing,
//! and events from every gateway instance sharing the database are seen. A stream
//! reads new entries after each local commit, and at least every second for commits
//! made by other instances. Heartbeats keep proxies from closing idle streams.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use countersign_core::audit::AuditEntry;
use countersign_core::operation::Role;
use futures_util::{Stream, StreamExt};
use serde_json::json;

use crate::AppState;
use crate::approvers::Session;

/// Events approvers are shown.
const VISIBLE: &[&str] = &[
    "operation.pending",
    "decision.counted",
    "operation.released",
    "operation.rejected",
    "operation.expired",
    "freeze.on",
];

/// Whether a person may see an entry: withdrawal events go to approvers, the rest
/// of the operation events to admins too; the freeze to everyone.
fn visible(entry: &AuditEntry, who: &Session) -> bool {
    VISIBLE.contains(&entry.event.as_str())
        && (who.approver.roles.contains(&Role::Approver) || who.approver.roles.contains(&Role::Admin))
}

fn to_event(entry: &AuditEntry) -> Event {
    let data = json!({
        "seq": entry.seq,
        "time": entry.time,
        "event": entry.event,
        "operation": entry.operation,
        "digest": entry.digest,
    });
    Event::default().id(entry.seq.to_string()).event(entry.event.clone()).data(data.to_string())
}

/// The stream for one approver, from after `last_seen` (or from now).
pub fn stream(
    state: AppState,
    who: Session,
    last_seen: Option<i64>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let start = async move {
        let head = match last_seen {
            Some(seq) => seq,
            None => state.store.audit_head().await.unwrap_or(0),
        };
        (state, who, head, Vec::<AuditEntry>::new())
    };
    let events = futures_util::stream::once(start).flat_map(|init| {
        futures_util::stream::unfold(init, |(state, who, mut seen, mut queue)| async move {
            loop {
                if let Some(entry) = (!queue.is_empty()).then(|| queue.remove(0)) {
                    return Some((Ok(to_event(&entry)), (state, who, seen, queue)));
                }
                match state.store.audit_after(seen, 200).await {
                    Ok(batch) if !batch.is_empty() => {
                        seen = batch.last().map_or(seen, |e| i64::try_from(e.seq).unwrap_or(seen));
                        queue = batch.into_iter().filter(|e| visible(e, &who)).collect();
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "event stream read failed; retrying"),
                }
                // End the stream when the session ends (revocation, flagged key).
                if !crate::approvers::session_still_valid(&state, &who).await {
                    return None;
                }
                let wake = state.store.appended();
                let _ = tokio::time::timeout(Duration::from_secs(1), wake).await;
            }
        })
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("heartbeat"))
}
