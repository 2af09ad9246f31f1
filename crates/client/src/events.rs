//! Live events from `GET /v1/events` (Server-Sent Events), resumed after a drop
//! with `Last-Event-ID` and exponential backoff, so nothing is missed.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{Client, Error, Session};

/// One event: its id (the audit sequence number), its name and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The audit sequence number; resume after it.
    pub id: String,
    /// `operation.pending`, `decision.counted`, `operation.released`, …
    pub event: String,
    /// The event's JSON payload.
    pub data: Value,
}

/// What the stream tells its reader besides events.
#[derive(Debug)]
pub enum Update {
    /// An event.
    Event(Event),
    /// The connection dropped; the next attempt is in `retry_in`.
    Reconnecting { error: String, retry_in: Duration },
    /// The gateway refused the stream (for example an expired session): final.
    Refused(Error),
}

/// Parses the `text/event-stream` format (WHATWG HTML §9.2) incrementally.
#[derive(Debug, Default)]
struct Parser {
    buffer: String,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl Parser {
    fn feed(&mut self, chunk: &str, out: &mut Vec<Event>) {
        self.buffer.push_str(chunk);
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let data = self.data.join("\n");
                    out.push(Event {
                        id: self.id.clone().unwrap_or_default(),
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                    });
                    self.data.clear();
                }
                self.event = None;
                continue;
            }
            if line.starts_with(':') {
                continue; // comment: heartbeat
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.id = Some(value.to_owned()),
                "event" => self.event = Some(value.to_owned()),
                "data" => self.data.push(value.to_owned()),
                _ => {}
            }
        }
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(15);

/// Follow the event stream from after `last_event_id` until the receiver is dropped
/// or the gateway refuses the session.
pub(crate) fn follow(
    client: Client,
    session: Session,
    last_event_id: Option<String>,
) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut last = last_event_id;
        let mut retry = FIRST_RETRY;
        loop {
            let mut request = client
                .transport
                .http
                .get(format!("{}/v1/events", client.transport.base))
                .bearer_auth(session.expose())
                .timeout(Duration::from_secs(24 * 3600));
            if let Some(id) = &last {
                request = request.header("Last-Event-ID", id);
            }
            let error = match request.send().await {
                Ok(resp) if resp.status().is_success() => {
                    retry = FIRST_RETRY;
                    let mut parser = Parser::default();
                    let mut body = resp.bytes_stream();
                    let mut failure = "the gateway closed the stream".to_owned();
                    while let Some(chunk) = body.next().await {
                        match chunk {
                            Ok(bytes) => {
                                let mut events = Vec::new();
                                parser.feed(&String::from_utf8_lossy(&bytes), &mut events);
                                for e in events {
                                    last = Some(e.id.clone());
                                    if tx.send(Update::Event(e)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                failure = e.to_string();
                                break;
                            }
                        }
                    }
                    failure
                }
                Ok(resp) => {
                    let refused = Error::from_response(resp).await;
                    let _ = tx.send(Update::Refused(refused)).await;
                    return;
                }
                Err(e) => client.transport.failure(&e).to_string(),
            };
            if tx.send(Update::Reconnecting { error, retry_in: retry }).await.is_err() {
                return;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    });
    rx
}

impl Client {
    /// Follow live events from after `last_event_id`, resuming after drops.
    #[must_use]
    pub fn events(
        &self,
        session: &Session,
        last_event_id: Option<String>,
    ) -> tokio::sync::mpsc::Receiver<crate::Update> {
        follow(self.clone(), session.clone(), last_event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_heartbeats() {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(": heartbeat\n\nid: 7\nevent: operation.pending\nda", &mut out);
        assert!(out.is_empty());
        p.feed("ta: {\"op\":\"op_1\"}\n\nid: 8\ndata: plain\r\n\r\n", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].id.as_str(), out[0].event.as_str()), ("7", "operation.pending"));
        assert_eq!(out[0].data["op"], "op_1");
        assert_eq!(
            (out[1].id.as_str(), out[1].event.as_str(), &out[1].data),
            ("8", "message", &Value::from("plain"))
        );
    }
}
