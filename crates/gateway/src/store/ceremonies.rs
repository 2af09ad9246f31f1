//! Hardware-key ceremonies in progress (single use, scoped) and the sessions logins
//! open. Tokens and codes are kept only as hashes.

use countersign_core::Timestamp;
use countersign_core::id::ApproverId;
use sqlx::Row;

use crate::error::Result;

use super::{Store, corrupt};

/// A ceremony as stored: who it was issued to, for what, and webauthn-rs's state.
#[derive(Debug, Clone)]
pub struct CeremonyRow {
    pub purpose: String,
    pub approver: ApproverId,
    pub operation: Option<String>,
    pub digest: Option<String>,
    pub decision: Option<String>,
    pub code_hash: Option<String>,
    pub state: String,
    pub expires_at: i64,
}

/// A new ceremony.
#[derive(Debug, Clone)]
pub struct NewCeremony<'a> {
    pub id: &'a str,
    pub purpose: &'a str,
    pub approver: &'a ApproverId,
    pub operation: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub decision: Option<String>,
    pub code_hash: Option<&'a str>,
    pub state: &'a str,
    pub expires_at: Timestamp,
}

/// A session as stored.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub approver: ApproverId,
    pub credential_id: String,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Store a ceremony.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_ceremony(&self, c: &NewCeremony<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO ceremonies (id, purpose, approver_id, operation_id, digest, decision, code_hash, state, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id)
        .bind(c.purpose)
        .bind(c.approver.as_str())
        .bind(c.operation)
        .bind(c.digest)
        .bind(c.decision.clone())
        .bind(c.code_hash)
        .bind(c.state)
        .bind(c.expires_at.unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Read and delete a ceremony: None when there is none, or another request took
    /// it at the same moment (single use).
    ///
    /// # Errors
    /// Database errors.
    pub async fn take_ceremony(&self, id: &str) -> Result<Option<CeremonyRow>> {
        let row = sqlx::query(
            "SELECT approver_id, operation_id, digest, decision, code_hash, state, expires_at, purpose FROM ceremonies WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let taken = sqlx::query("DELETE FROM ceremonies WHERE id = $1").bind(id).execute(&self.pool).await?;
        if taken.rows_affected() != 1 {
            return Ok(None);
        }
        Ok(Some(CeremonyRow {
            approver: ApproverId::new(row.try_get::<String, _>(0)?).map_err(|e| corrupt("ceremony", e))?,
            operation: row.try_get(1)?,
            digest: row.try_get(2)?,
            decision: row.try_get(3)?,
            code_hash: row.try_get(4)?,
            state: row.try_get(5)?,
            expires_at: row.try_get(6)?,
            purpose: row.try_get(7)?,
        }))
    }

    /// Forget expired ceremonies.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_expired_ceremonies(&self, now: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM ceremonies WHERE expires_at < $1")
            .bind(now.unix())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

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

    /// Open a session (its token stored hashed).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        approver: &ApproverId,
        credential: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, approver_id, credential_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(approver.as_str())
        .bind(credential)
        .bind(now.unix())
        .bind(expires_at.unix())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session by its token's hash.
    ///
    /// # Errors
    /// Database errors.
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT approver_id, credential_id, expires_at, revoked_at FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                approver: ApproverId::new(r.try_get::<String, _>(0)?).map_err(|e| corrupt("session", e))?,
                credential_id: r.try_get(1)?,
                expires_at: r.try_get(2)?,
                revoked_at: r.try_get(3)?,
            })
        })
        .transpose()
    }
}
