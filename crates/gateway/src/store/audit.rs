//! The audit chain: appends (serialised on `audit_head`), checkpoints, export.

use countersign_core::Timestamp;
use countersign_core::audit::{AuditEntry, Checkpoint, HashedEntry, SignedCheckpoint};
use countersign_core::id::OperationId;
use ed25519_dalek::SigningKey;
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use crate::error::{Error, Result};

use super::{Backend, Store, corrupt, is_unique_violation};

/// An event for the audit chain.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who caused it.
    pub actor: String,
    /// What happened.
    pub event: &'static str,
    /// The operation concerned and its digest (hex).
    pub operation: Option<(OperationId, String)>,
    /// Details: strings, integers, booleans.
    pub details: Map<String, Value>,
}

impl AuditEvent {
    /// An event without an operation.
    pub fn new(actor: impl Into<String>, event: &'static str) -> Self {
        AuditEvent { actor: actor.into(), event, operation: None, details: Map::new() }
    }

    /// Attach the operation.
    #[must_use]
    pub fn operation(mut self, id: &OperationId, digest: &str) -> Self {
        self.operation = Some((id.clone(), digest.to_owned()));
        self
    }

    /// Add a detail.
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

impl Store {
    /// Audit entries after `seq`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_after(&self, seq: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT entry FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let e: String = r.try_get(0)?;
                serde_json::from_str(&e).map_err(|e| corrupt("audit entry", e))
            })
            .collect()
    }

    /// The last audit sequence number.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_head(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
    }

    /// Append an audit event inside a caller's transaction (last, as everywhere).
    ///
    /// # Errors
    /// Database errors.
    pub async fn append_in(&self, tx: &mut AnyConnection, event: &AuditEvent, now: Timestamp) -> Result<()> {
        self.append(tx, event, now).await.map(|_| ())
    }

    /// Append one event on its own (security events without a state change, such as
    /// a refused signature).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(&self, event: &AuditEvent, now: Timestamp) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        self.append(&mut tx, event, now).await?;
        self.commit(tx).await?;
        Ok(())
    }

    pub(super) async fn append(
        &self,
        tx: &mut AnyConnection,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<HashedEntry> {
        let head_sql = match self.backend {
            Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
        };
        let head = sqlx::query(head_sql).fetch_one(&mut *tx).await?;
        let seq: i64 = head.try_get(0)?;
        let prev: String = head.try_get(1)?;
        let entry = AuditEntry {
            seq: u64::try_from(seq + 1).map_err(Error::internal)?,
            time: now,
            actor: event.actor.clone(),
            event: event.event.to_owned(),
            operation: event.operation.as_ref().map(|(id, _)| id.as_str().to_owned()),
            digest: event.operation.as_ref().map(|(_, d)| d.clone()),
            details: event.details.clone(),
            prev,
        };
        let hash = entry.hash().map_err(Error::internal)?;
        let json = serde_json::to_string(&entry).map_err(Error::internal)?;
        sqlx::query("INSERT INTO audit_log (seq, entry, hash) VALUES ($1, $2, $3)")
            .bind(seq + 1)
            .bind(&json)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq + 1)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        Ok(HashedEntry { entry, hash })
    }

    /// Sign a checkpoint of the current head when `every` entries have passed since
    /// the last one (or `every == 0`: always, if there is anything new).
    ///
    /// # Errors
    /// Database errors.
    pub async fn checkpoint_if_due(
        &self,
        key: &SigningKey,
        every: u64,
        now: Timestamp,
    ) -> Result<Option<u64>> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        let seq: i64 = head.try_get(0)?;
        let hash: String = head.try_get(1)?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints").fetch_one(&self.pool).await?;
        let last = last.unwrap_or(0);
        let due = seq > last && u64::try_from(seq - last).unwrap_or(0) >= every.max(1);
        if !due {
            return Ok(None);
        }
        let seq_u = u64::try_from(seq).map_err(Error::internal)?;
        let signed = SignedCheckpoint::sign(Checkpoint { seq: seq_u, hash, time: now }, key)
            .map_err(Error::internal)?;
        let doc = serde_json::to_string(&signed).map_err(Error::internal)?;
        let r = sqlx::query("INSERT INTO audit_checkpoints (seq, document) VALUES ($1, $2)")
            .bind(seq)
            .bind(&doc)
            .execute(&self.pool)
            .await;
        match r {
            Err(e) if is_unique_violation(&e) => Ok(None),
            r => {
                r?;
                Ok(Some(seq_u))
            }
        }
    }

    /// The whole chain as JSON lines, each checkpoint right after the entry it covers.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_export(&self) -> Result<String> {
        let entries =
            sqlx::query("SELECT seq, entry, hash FROM audit_log ORDER BY seq").fetch_all(&self.pool).await?;
        let checkpoints = sqlx::query("SELECT seq, document FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut cps = checkpoints.iter().peekable();
        let mut out = String::new();
        for r in &entries {
            let seq: i64 = r.try_get(0)?;
            let entry: String = r.try_get(1)?;
            let hash: String = r.try_get(2)?;
            let entry: AuditEntry = serde_json::from_str(&entry).map_err(|e| corrupt("audit entry", e))?;
            let line = serde_json::to_string(&HashedEntry { entry, hash }).map_err(Error::internal)?;
            out.push_str(&line);
            out.push('\n');
            while let Some(cp) = cps.peek() {
                if cp.try_get::<i64, _>(0)? != seq {
                    break;
                }
                let doc: String = cp.try_get(1)?;
                out.push_str(&doc);
                out.push('\n');
                cps.next();
            }
        }
        Ok(out)
    }

    /// Every audit entry, oldest first (for tests and the invariant checker).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_events(&self) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT entry FROM audit_log ORDER BY seq").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let e: String = r.try_get(0)?;
                serde_json::from_str(&e).map_err(|e| corrupt("audit entry", e))
            })
            .collect()
    }
}
