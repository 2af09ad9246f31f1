//! Settlement deliveries (the webhook outbox) and the built-in ledger.

use countersign_core::Timestamp;
use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use crate::error::{Error, Result};

use super::{AuditEvent, Store, corrupt, is_unique_violation, ts};

/// A ledger row waiting for webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The operation.
    pub operation_id: String,
    /// The release document.
    pub certificate: Value,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (Unix seconds), as read.
    pub next_attempt_at: i64,
}

/// A row from the settlement ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    /// The operation.
    pub operation_id: String,
    /// When it was released.
    pub released_at: Timestamp,
    /// What settlement receives: the canonical operation and its evidence.
    pub certificate: Value,
}

impl Store {
    pub(super) async fn insert_ledger(
        &self,
        tx: &mut AnyConnection,
        op_id: &str,
        certificate: &Value,
        now: Timestamp,
    ) -> Result<()> {
        let cert = serde_json::to_string(certificate).map_err(Error::internal)?;
        sqlx::query(
            "INSERT INTO settlement_ledger (operation_id, released_at, certificate) VALUES ($1, $2, $3)",
        )
        .bind(op_id)
        .bind(now.unix())
        .bind(&cert)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::internal(format!("operation {op_id} was about to be released twice; refused"))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// Ledger rows not yet delivered whose next attempt is due.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due_deliveries(&self, now: Timestamp, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT operation_id, certificate, attempts, next_attempt_at FROM settlement_ledger \
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY released_at, operation_id LIMIT $2",
        )
        .bind(now.unix())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cert: String = r.try_get(1)?;
                Ok(Delivery {
                    operation_id: r.try_get(0)?,
                    certificate: serde_json::from_str(&cert).map_err(|e| corrupt("certificate", e))?,
                    attempts: r.try_get(2)?,
                    next_attempt_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Take a delivery for this instance until `lease`; `false` when another instance
    /// took it first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim_delivery(
        &self,
        op_id: &str,
        seen_next_attempt: i64,
        lease: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE settlement_ledger SET next_attempt_at = $1 \
             WHERE operation_id = $2 AND next_attempt_at = $3 AND delivered_at IS NULL",
        )
        .bind(lease.unix())
        .bind(op_id)
        .bind(seen_next_attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Record a delivery settlement acknowledged.
    ///
    /// # Errors
    /// Database errors.
    pub async fn mark_delivered(
        &self,
        op_id: &str,
        attempts: i64,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE settlement_ledger SET delivered_at = $1, attempts = $2, last_error = NULL WHERE operation_id = $3",
        )
        .bind(now.unix())
        .bind(attempts)
        .bind(op_id)
        .execute(&mut *tx)
        .await?;
        self.append(&mut tx, event, now).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Record a failed attempt and when to try again.
    ///
    /// # Errors
    /// Database errors.
    pub async fn mark_delivery_failed(
        &self,
        op_id: &str,
        attempts: i64,
        next: Timestamp,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE settlement_ledger SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE operation_id = $4",
        )
        .bind(attempts)
        .bind(next.unix())
        .bind(error)
        .bind(op_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The settlement ledger, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn ledger(&self) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query("SELECT operation_id, released_at, certificate FROM settlement_ledger ORDER BY released_at, operation_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let cert: String = r.try_get(2)?;
                Ok(LedgerEntry {
                    operation_id: r.try_get(0)?,
                    released_at: ts(r.try_get(1)?)?,
                    certificate: serde_json::from_str(&cert).map_err(|e| corrupt("certificate", e))?,
                })
            })
            .collect()
    }
}
