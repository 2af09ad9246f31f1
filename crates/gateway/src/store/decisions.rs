//! Decisions on operations (each with the assertion that signed it), and
//! revocation of people and keys.

use countersign_core::Timestamp;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use countersign_core::binding::Decision;
use countersign_core::certificate::CertifiedApproval;
use countersign_core::id::ApproverId;

use crate::error::Result;

use super::{Store, corrupt, is_unique_violation, ts};

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

/// A decision to record: the assertion parts exactly as signed (base64url).
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub operation: &'a str,
    pub approver: &'a ApproverId,
    pub credential_id: &'a str,
    pub decision: Decision,
    pub reason: Option<&'a str>,
    pub authenticator_data: String,
    pub client_data_json: String,
    pub signature: String,
}

/// A decision as settlement reads it, with the status of the key that signed it now.
#[derive(Debug, Clone)]
pub struct DecisionWithKey {
    pub approver: ApproverId,
    pub decision: Decision,
    pub signed: CertifiedApproval,
    /// The key's status today (None: the key row is gone).
    pub key_status: Option<String>,
}

impl Store {
    /// Record a decision in the caller's transaction; false when this person already
    /// decided on this operation (a person counts once).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_decision_in(
        &self,
        tx: &mut AnyConnection,
        d: &NewDecision<'_>,
        now: Timestamp,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO decisions (operation_id, approver_id, credential_id, decision, reason, authenticator_data, \
             client_data_json, signature, counter, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(d.operation)
        .bind(d.approver.as_str())
        .bind(d.credential_id)
        .bind(d.decision.to_string())
        .bind(d.reason)
        .bind(&d.authenticator_data)
        .bind(&d.client_data_json)
        .bind(&d.signature)
        .bind(0_i64)
        .bind(now.unix())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The decisions on one operation, by approver, with each key's status now, in
    /// the caller's transaction (which holds the operation's lock).
    ///
    /// # Errors
    /// Database errors.
    pub async fn decisions_with_keys_in(
        &self,
        tx: &mut AnyConnection,
        operation: &str,
    ) -> Result<Vec<DecisionWithKey>> {
        let rows = sqlx::query(
            "SELECT d.approver_id, d.credential_id, d.decision, d.authenticator_data, d.client_data_json, d.signature, \
             c.status FROM decisions d LEFT JOIN credentials c ON c.id = d.credential_id AND c.approver_id = d.approver_id \
             WHERE d.operation_id = $1 ORDER BY d.approver_id",
        )
        .bind(operation)
        .fetch_all(&mut *tx)
        .await?;
        rows.iter()
            .map(|r| {
                let approver =
                    ApproverId::new(r.try_get::<String, _>(0)?).map_err(|e| corrupt("decision", e))?;
                let decision = if r.try_get::<String, _>(2)? == "approve" {
                    Decision::Approve
                } else {
                    Decision::Reject
                };
                Ok(DecisionWithKey {
                    signed: CertifiedApproval {
                        approver: approver.clone(),
                        credential_id: r.try_get(1)?,
                        authenticator_data: r.try_get(3)?,
                        client_data_json: r.try_get(4)?,
                        signature: r.try_get(5)?,
                    },
                    approver,
                    decision,
                    key_status: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Pending operations with at least one decision (the sweep settles them).
    ///
    /// # Errors
    /// Database errors.
    pub async fn pending_with_decisions(&self, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT d.operation_id FROM decisions d JOIN operations o ON o.id = d.operation_id \
             WHERE o.state = 'pending' ORDER BY d.operation_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
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
