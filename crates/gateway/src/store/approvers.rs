//! Approvers' decisions and ceremonies, and revocation of people and keys.

use countersign_core::Timestamp;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::error::Result;

use super::{Store, ts};

/// One recorded decision as the approvers' views carry it: who, with which key,
/// what they said, and the signed assertion (base64url) to check it by.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedDecision {
    #[serde(skip)]
    pub operation: String,
    pub approver: String,
    pub credential_id: String,
    pub decision: String,
    pub reason: Option<String>,
    pub authenticator_data: String,
    pub client_data_json: String,
    pub signature: String,
    pub decided_at: Timestamp,
}

impl Store {
    /// Ceremonies stored and not yet expired (the cap on unauthenticated starts).
    ///
    /// # Errors
    /// Database errors.
    pub async fn outstanding_ceremonies(&self, now: Timestamp) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM ceremonies WHERE expires_at > $1")
            .bind(now.unix())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Revoke a person (all their keys and sessions) or one of their keys (and the
    /// sessions it opened), inside the caller's transaction. Returns whether anything
    /// was still active.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_in(
        &self,
        tx: &mut AnyConnection,
        approver: &str,
        credential: Option<&str>,
        now: Timestamp,
    ) -> Result<bool> {
        let changed = match credential {
            Some(cred) => sqlx::query(
                "UPDATE credentials SET status = 'revoked' WHERE approver_id = $1 AND id = $2 AND status <> 'revoked'",
            )
            .bind(approver)
            .bind(cred)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            None => {
                let n = sqlx::query("UPDATE approvers SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now.unix())
                    .bind(approver)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE credentials SET status = 'revoked' WHERE approver_id = $1")
                    .bind(approver)
                    .execute(&mut *tx)
                    .await?;
                n
            }
        };
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE approver_id = $2 AND revoked_at IS NULL \
             AND ($3 = '' OR credential_id = $3)",
        )
        .bind(now.unix())
        .bind(approver)
        .bind(credential.unwrap_or(""))
        .execute(&mut *tx)
        .await?;
        Ok(changed > 0)
    }

    /// The decisions recorded on these operations, each with what its key signed, in
    /// the order they were made: for people reading them later to check.
    ///
    /// # Errors
    /// Database errors.
    pub async fn decisions_on(&self, operations: &[&str]) -> Result<Vec<RecordedDecision>> {
        if operations.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=operations.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT operation_id, approver_id, credential_id, decision, reason, authenticator_data, \
             client_data_json, signature, decided_at FROM decisions WHERE operation_id IN ({}) \
             ORDER BY decided_at, approver_id",
            placeholders.join(", ")
        );
        // Built only from numbered placeholders; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in operations {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RecordedDecision {
                    operation: r.try_get(0)?,
                    approver: r.try_get(1)?,
                    credential_id: r.try_get(2)?,
                    decision: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    authenticator_data: r.try_get(5)?,
                    client_data_json: r.try_get(6)?,
                    signature: r.try_get(7)?,
                    decided_at: ts(r.try_get(8)?)?,
                })
            })
            .collect()
    }
}
