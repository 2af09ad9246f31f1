//! Live events for approvers: `GET /v1/events`, Server-Sent Events.
//!
//! The audit chain is the event log: each event's id is its audit sequence number,
//! so a client resumes with `Last-Event-ID` after a disconnect and misses nothing,
//! and events from every gateway instance sharing the database are seen. A stream
//! reads new entries after each local commit, and at least every second for commits
//! made by other instances. Heartbeats keep proxies from closing idle streams.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use countersign_core::audit::AuditEntry;
use countersign_core::certificate::deciding_role;
use futures_util::{Stream, StreamExt};
use serde_json::json;

use crate::AppState;
use crate::approvers::Session;
use crate::error::{Error, Result};

/// Most live event streams one person may hold open at once (a desktop and a CLI
/// or two, with room for reconnects).
pub const STREAMS_PER_PERSON: usize = 8;

/// Bounds on open event streams: in all, and per person. A stream holds a
/// [`StreamPermit`] for as long as it is open.
#[derive(Debug)]
pub struct StreamLimits {
    total: Arc<tokio::sync::Semaphore>,
    max_total: usize,
    per_person: Mutex<HashMap<String, usize>>,
}

/// One open stream's share of the limits; released when the stream is dropped.
#[derive(Debug)]
pub struct StreamPermit {
    _total: tokio::sync::OwnedSemaphorePermit,
    person: String,
    limits: Arc<StreamLimits>,
}

impl StreamLimits {
    /// At most `max_total` streams in all.
    #[must_use]
    pub fn new(max_total: usize) -> Arc<Self> {
        Arc::new(StreamLimits {
            total: Arc::new(tokio::sync::Semaphore::new(max_total)),
            max_total,
            per_person: Mutex::default(),
        })
    }

    /// Take a permit for one more stream of `person`.
    ///
    /// # Errors
    /// `429 events.too_many_streams_for_person`, `503 events.too_many_streams`.
    pub fn acquire(self: &Arc<Self>, person: &str) -> Result<StreamPermit> {
        let mut counts = self.per_person.lock().unwrap_or_else(PoisonError::into_inner);
        let open = counts.get(person).copied().unwrap_or(0);
        if open >= STREAMS_PER_PERSON {
            return Err(Error::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "events.too_many_streams_for_person",
                format!("you already have {open} live event streams open; close one first"),
            ));
        }
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "events.too_many_streams",
                format!("the gateway has its {} live event streams open; retry shortly", self.max_total),
            )
        })?;
        counts.insert(person.to_owned(), open + 1);
        Ok(StreamPermit { _total: total, person: person.to_owned(), limits: self.clone() })
    }

    /// Streams open now, in all.
    #[must_use]
    pub fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.limits.per_person.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.person) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.person);
            }
        }
    }
}

/// Events approvers are shown.
const VISIBLE: &[&str] = &[
    "operation.pending",
    "decision.counted",
    "operation.released",
    "operation.rejected",
    "operation.expired",
    "freeze.on",
];

/// Operations whose audience a stream has already worked out (it never changes for
/// an operation), so each is read once per stream rather than once per event.
type Audience = HashMap<String, bool>;
const AUDIENCE_CACHE: usize = 4096;

/// Whether a person may see an entry: the freeze goes to everyone; an operation's
/// events go to the people who may act on it — members of a group its quorum names
/// (withdrawals: approvers; administrative operations: admins, as
/// `core::certificate::deciding_role` says).
async fn visible(state: &AppState, entry: &AuditEntry, who: &Session, seen: &mut Audience) -> bool {
    if !VISIBLE.contains(&entry.event.as_str()) {
        return false;
    }
    if entry.event == "freeze.on" {
        return true;
    }
    let Some(id) = entry.operation.as_deref() else { return false };
    if let Some(known) = seen.get(id) {
        return *known;
    }
    let record = match state.store.operation(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "event visibility: operation not readable; not shown");
            return false;
        }
    };
    let groups = record.verdict["quorum"]["groups"].as_array().cloned().unwrap_or_default();
    let mine = who.approver.roles.contains(&deciding_role(&record.operation))
        && groups
            .iter()
            .filter_map(|g| g["group"].as_str())
            .any(|g| who.approver.groups.iter().any(|mine| mine.as_str() == g));
    if seen.len() >= AUDIENCE_CACHE {
        seen.clear();
    }
    seen.insert(id.to_owned(), mine);
    mine
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

/// The stream for one approver, from after `last_seen` (or from now). It holds
/// `permit` until the client goes away.
pub fn stream(
    state: AppState,
    who: Session,
    last_seen: Option<i64>,
    permit: StreamPermit,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let start = async move {
        let head = match last_seen {
            Some(seq) => seq,
            None => state.store.audit_head().await.unwrap_or(0),
        };
        let commits = state.store.commits();
        (state, (who, permit), head, Vec::<AuditEntry>::new(), Audience::new(), commits)
    };
    let events = futures_util::stream::once(start).flat_map(|init| {
        futures_util::stream::unfold(
            init,
            |(state, who, mut seen, mut queue, mut audience, mut commits)| async move {
                loop {
                    if let Some(entry) = (!queue.is_empty()).then(|| queue.remove(0)) {
                        return Some((Ok(to_event(&entry)), (state, who, seen, queue, audience, commits)));
                    }
                    // Mark the commits seen *before* reading: one that lands during the
                    // reads below wakes the wait at the end at once.
                    commits.borrow_and_update();
                    match state.store.audit_after(seen, 200).await {
                        Ok(batch) if !batch.is_empty() => {
                            seen = batch.last().map_or(seen, |e| i64::try_from(e.seq).unwrap_or(seen));
                            queue.clear();
                            for entry in batch {
                                if visible(&state, &entry, &who.0, &mut audience).await {
                                    queue.push(entry);
                                }
                            }
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "event stream read failed; retrying"),
                    }
                    // End the stream when the session ends (revocation, flagged key).
                    if !crate::approvers::session_still_valid(&state, &who.0).await {
                        return None;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), commits.changed()).await;
                }
            },
        )
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("heartbeat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_in_all_and_per_person_and_released_on_drop() {
        let limits = StreamLimits::new(10);
        let alice: Vec<StreamPermit> =
            (0..STREAMS_PER_PERSON).map(|_| limits.acquire("alice").unwrap()).collect();
        let e = limits.acquire("alice").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (429, "events.too_many_streams_for_person"));
        let bob: Vec<StreamPermit> = (0..2).map(|_| limits.acquire("bob").unwrap()).collect();
        assert_eq!(limits.open(), 10);
        let e = limits.acquire("carol").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "events.too_many_streams"));
        drop(bob);
        assert_eq!(limits.open(), STREAMS_PER_PERSON);
        assert!(limits.acquire("carol").is_ok(), "a closed stream frees its place");
        drop(alice);
        assert_eq!(limits.open(), 0);
        let again: Vec<StreamPermit> =
            (0..STREAMS_PER_PERSON).map(|_| limits.acquire("alice").unwrap()).collect();
        assert_eq!(again.len(), STREAMS_PER_PERSON, "alice's count went back to zero");
    }
}
