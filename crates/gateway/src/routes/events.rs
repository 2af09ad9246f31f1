//! `GET /v1/events`: one approver's live stream, fed by the instance's [`Tail`]
//! and re-reading the audit log only to catch up (see [`crate::events`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::approvers::{self, Session};
use crate::events::{
    Audiences, ENDS_SESSIONS, Published, SESSION_CHECK_EVERY, StreamPermit, audience, shown_to, to_event,
};

/// One stream's position and what it has yet to send.
struct Follow {
    state: AppState,
    who: Session,
    _permit: StreamPermit,
    tail: tokio::sync::broadcast::Receiver<Arc<Published>>,
    /// The last sequence number taken (sent or not shown).
    seen: i64,
    /// Read the log itself before taking from the tail.
    behind: bool,
    /// Events ready to send.
    queue: std::collections::VecDeque<Event>,
    known: Audiences,
    since_check: u32,
}

impl Follow {
    /// The next event to send; `None` ends the stream (session no longer valid).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.since_check >= SESSION_CHECK_EVERY {
                if !approvers::session_still_valid(&self.state, &self.who).await {
                    return None;
                }
                self.since_check = 0;
            }
            if self.behind {
                match self.state.store.audit_after(self.seen, 200).await {
                    Ok(batch) => {
                        self.behind = batch.len() == 200;
                        for entry in batch {
                            self.seen = i64::try_from(entry.seq).unwrap_or(self.seen);
                            if ENDS_SESSIONS.contains(&entry.event.as_str()) {
                                // Check the session before anything after this.
                                self.since_check = SESSION_CHECK_EVERY;
                                self.behind = true;
                                break;
                            }
                            let audience = audience(&self.state.store, &entry, &mut self.known).await;
                            if shown_to(&entry, audience.as_ref(), &self.who.approver) {
                                self.queue.push_back(to_event(&entry));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream read failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(1), self.tail.recv()).await {
                Ok(Ok(published)) => {
                    let seq = i64::try_from(published.entry.seq).unwrap_or(i64::MAX);
                    if seq <= self.seen {
                        continue; // already read while catching up
                    }
                    if seq > self.seen + 1 {
                        self.behind = true; // entries between: read them first
                        continue;
                    }
                    self.seen = seq;
                    self.since_check += 1;
                    if ENDS_SESSIONS.contains(&published.entry.event.as_str()) {
                        self.since_check = SESSION_CHECK_EVERY;
                    }
                    if shown_to(&published.entry, published.audience.as_ref(), &self.who.approver) {
                        self.queue.push_back(to_event(&published.entry));
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => self.behind = true,
                Ok(Err(RecvError::Closed)) => {
                    self.tail = self.state.events.subscribe(&self.state.store);
                    self.behind = true;
                }
                // A quiet second: end the stream if the session ended (revocation,
                // flagged key).
                Err(_) => self.since_check = SESSION_CHECK_EVERY,
            }
        }
    }
}

/// The stream for one approver, from after `last_seen` (or from now). It holds
/// `permit` until the client goes away.
pub(crate) fn stream(
    state: AppState,
    who: Session,
    last_seen: Option<i64>,
    permit: StreamPermit,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let start = async move {
        // Subscribe first, then find the position: nothing falls in between.
        let tail = state.events.subscribe(&state.store);
        let seen = match last_seen {
            Some(seq) => seq,
            None => state.store.audit_head().await.unwrap_or(0),
        };
        Follow {
            state,
            who,
            _permit: permit,
            tail,
            seen,
            behind: true,
            queue: std::collections::VecDeque::new(),
            known: Audiences::new(),
            since_check: 0,
        }
    };
    let events = futures_util::stream::once(start).flat_map(|follow| {
        futures_util::stream::unfold(follow, |mut follow| async move {
            let event = follow.next().await?;
            Some((Ok(event), follow))
        })
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("heartbeat"))
}
