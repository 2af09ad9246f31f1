//! Live events for approvers: `GET /v1/events`, Server-Sent Events.
//!
//! The audit chain is the event log: each event's id is its audit sequence number,
//! so a client resumes with `Last-Event-ID` after a disconnect and misses nothing,
//! and events from every gateway instance sharing the database are seen.
//!
//! One reader per instance, the [`Tail`], reads new entries after each local commit
//! (and at least every second, for commits made by other instances), works out
//! once who may see each, and hands them to every open stream. A stream reads the
//! log itself only to catch up: from `Last-Event-ID`, or after falling more than
//! [`TAIL_BUFFER`] entries behind. So the database's work per event does not grow
//! with the number of approvers watching. Each stream re-checks its session after
//! a quiet second, every [`SESSION_CHECK_EVERY`] events, and right after a
//! revocation or a flagged key. Heartbeats keep proxies from closing idle streams.
//!
//! This module is the tail, the limits and who sees what; one stream's driver is the
//! HTTP handler's, in `routes/events.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::sse::Event;
use countersign_core::audit::AuditEntry;
use countersign_core::certificate::deciding_role;
use serde_json::json;

use crate::error::{Error, Result};
use crate::store::{Approver, Store};

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

/// Who may see an operation's events: the role that decides it and the groups its
/// quorum names (never changes for an operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Audience {
    role: countersign_core::operation::Role,
    groups: Vec<String>,
}

/// Audiences already worked out, by operation, so each operation is read once.
pub(crate) type Audiences = HashMap<String, Option<Audience>>;
const AUDIENCE_CACHE: usize = 4096;

/// The audience of an entry's operation (`None`: not shown to anyone, or unreadable).
/// Only for the operation events approvers are shown: nothing is read for others.
pub(crate) async fn audience(store: &Store, entry: &AuditEntry, known: &mut Audiences) -> Option<Audience> {
    if !VISIBLE.contains(&entry.event.as_str()) || entry.event == "freeze.on" {
        return None;
    }
    let id = entry.operation.as_deref()?;
    if let Some(a) = known.get(id) {
        return a.clone();
    }
    let found = match store.operation(id).await {
        Ok(Some(record)) => Some(Audience {
            role: deciding_role(&record.operation),
            groups: record.verdict["quorum"]["groups"]
                .as_array()
                .map(|gs| gs.iter().filter_map(|g| g["group"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "event visibility: operation not readable; not shown");
            return None; // not remembered: the next entry tries again
        }
    };
    if known.len() >= AUDIENCE_CACHE {
        known.clear();
    }
    known.insert(id.to_owned(), found.clone());
    found
}

/// Whether a person may see an entry: the freeze goes to everyone; an operation's
/// events go to the people who may act on it — members of a group its quorum names
/// (withdrawals: approvers; administrative operations: admins, as
/// `core::certificate::deciding_role` says).
pub(crate) fn shown_to(entry: &AuditEntry, audience: Option<&Audience>, who: &Approver) -> bool {
    if !VISIBLE.contains(&entry.event.as_str()) {
        return false;
    }
    if entry.event == "freeze.on" {
        return true;
    }
    audience.is_some_and(|a| {
        who.roles.contains(&a.role)
            && a.groups.iter().any(|g| who.groups.iter().any(|mine| mine.as_str() == g))
    })
}

/// An entry as the tail hands it to every stream, with its audience worked out.
#[derive(Debug)]
pub struct Published {
    pub(crate) entry: AuditEntry,
    pub(crate) audience: Option<Audience>,
}

/// Entries the tail keeps for streams that are slow to take them; a stream further
/// behind catches up from the database.
pub const TAIL_BUFFER: usize = 1024;
/// A busy stream re-checks its session after this many events (an idle one, every
/// second, and every stream right after an entry that can end sessions).
pub const SESSION_CHECK_EVERY: u32 = 50;
/// Entries after which every stream re-checks its session before sending more:
/// revocation and a flagged (cloned) key end streams at once.
pub(crate) const ENDS_SESSIONS: &[&str] = &["approver.revoked", "credential.counter_anomaly"];

/// The instance's one reader of the audit log for live streams. It runs while at
/// least one stream is open and stops when the last one closes.
#[derive(Debug, Default)]
pub struct Tail {
    sender: Mutex<Option<tokio::sync::broadcast::Sender<Arc<Published>>>>,
}

impl Tail {
    /// A receiver of every entry from now on, starting the reader if none runs.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        store: &Store,
    ) -> tokio::sync::broadcast::Receiver<Arc<Published>> {
        let mut slot = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = slot.as_ref() {
            return sender.subscribe();
        }
        let (sender, receiver) = tokio::sync::broadcast::channel(TAIL_BUFFER);
        *slot = Some(sender.clone());
        tokio::spawn(self.clone().run(store.clone(), sender));
        receiver
    }

    async fn run(self: Arc<Self>, store: Store, sender: tokio::sync::broadcast::Sender<Arc<Published>>) {
        let mut commits = store.commits();
        // Where the log ends when the reader starts; streams catch up to it themselves.
        let mut last: Option<i64> = None;
        let mut known = Audiences::new();
        loop {
            commits.borrow_and_update(); // before reading: a commit during the read wakes the wait
            let read = match last {
                None => store.audit_head().await.map(|head| {
                    last = Some(head);
                    Vec::new()
                }),
                Some(after) => store.audit_after(after, 200).await,
            };
            match read {
                Ok(batch) => {
                    let full = batch.len() == 200;
                    for entry in batch {
                        last = i64::try_from(entry.seq).ok().or(last);
                        let audience = audience(&store, &entry, &mut known).await;
                        // No receivers is not an error here: the check below decides.
                        let _ = sender.send(Arc::new(Published { entry, audience }));
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event tail: read failed; retrying"),
            }
            {
                // Stop with the last stream; under the lock, so that a stream
                // subscribing now either keeps this reader alive or starts a new one.
                let mut slot = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
                if sender.receiver_count() == 0 {
                    *slot = None;
                    return;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), commits.changed()).await;
        }
    }
}

pub(crate) fn to_event(entry: &AuditEntry) -> Event {
    let data = json!({
        "seq": entry.seq,
        "time": entry.time,
        "event": entry.event,
        "operation": entry.operation,
        "digest": entry.digest,
    });
    Event::default().id(entry.seq.to_string()).event(entry.event.clone()).data(data.to_string())
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
