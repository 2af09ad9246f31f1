//! Every table as stored, undecoded: what the invariant checker
//! (`countersign-gateway check`) reads to find rows that were written around the
//! gateway's rules. Nothing here is used to serve requests.

use sqlx::Row;

use crate::error::Result;

use super::Store;

/// An operation row.
#[derive(Debug, Clone)]
pub struct RawOperation {
    pub id: String,
    pub state: String,
    pub canonical: String,
    pub digest: String,
    pub verdict: String,
}

/// A credential row.
#[derive(Debug, Clone)]
pub struct RawCredential {
    pub id: String,
    pub approver: String,
    pub public_key: String,
    pub counter: i64,
    pub status: String,
}

/// A person row (roles and groups as stored JSON).
#[derive(Debug, Clone)]
pub struct RawApprover {
    pub id: String,
    pub roles: String,
    pub groups: String,
}

/// A decision row.
#[derive(Debug, Clone)]
pub struct RawDecision {
    pub operation: String,
    pub approver: String,
    pub credential_id: String,
    pub decision: String,
    pub authenticator_data: String,
    pub client_data_json: String,
    pub signature: String,
    pub decided_at: i64,
}

/// A settlement-ledger row.
#[derive(Debug, Clone)]
pub struct RawLedgerRow {
    pub operation: String,
    pub certificate: String,
    pub delivered_at: Option<i64>,
}

impl Store {
    /// # Errors
    /// Database errors.
    pub async fn raw_operations(&self) -> Result<Vec<RawOperation>> {
        let rows = sqlx::query("SELECT id, state, canonical, digest, verdict FROM operations")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RawOperation {
                    id: r.try_get(0)?,
                    state: r.try_get(1)?,
                    canonical: r.try_get(2)?,
                    digest: r.try_get(3)?,
                    verdict: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Every policy version: `(version, document)`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn raw_policies(&self) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT version, document FROM policies").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// # Errors
    /// Database errors.
    pub async fn raw_credentials(&self) -> Result<Vec<RawCredential>> {
        let rows = sqlx::query("SELECT id, approver_id, public_key, counter, status FROM credentials")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RawCredential {
                    id: r.try_get(0)?,
                    approver: r.try_get(1)?,
                    public_key: r.try_get(2)?,
                    counter: r.try_get(3)?,
                    status: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// # Errors
    /// Database errors.
    pub async fn raw_approvers(&self) -> Result<Vec<RawApprover>> {
        let rows = sqlx::query("SELECT id, roles, group_names FROM approvers ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(RawApprover { id: r.try_get(0)?, roles: r.try_get(1)?, groups: r.try_get(2)? }))
            .collect()
    }

    /// # Errors
    /// Database errors.
    pub async fn raw_decisions(&self) -> Result<Vec<RawDecision>> {
        let rows = sqlx::query(
            "SELECT operation_id, approver_id, credential_id, decision, authenticator_data, client_data_json, \
             signature, decided_at FROM decisions",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RawDecision {
                    operation: r.try_get(0)?,
                    approver: r.try_get(1)?,
                    credential_id: r.try_get(2)?,
                    decision: r.try_get(3)?,
                    authenticator_data: r.try_get(4)?,
                    client_data_json: r.try_get(5)?,
                    signature: r.try_get(6)?,
                    decided_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// # Errors
    /// Database errors.
    pub async fn raw_ledger(&self) -> Result<Vec<RawLedgerRow>> {
        let rows = sqlx::query("SELECT operation_id, certificate, delivered_at FROM settlement_ledger")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RawLedgerRow {
                    operation: r.try_get(0)?,
                    certificate: r.try_get(1)?,
                    delivered_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// The stored audit head: `(seq, hash)`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn raw_audit_head(&self) -> Result<(i64, String)> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        Ok((head.try_get(0)?, head.try_get(1)?))
    }
}
