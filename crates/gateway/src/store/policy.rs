//! The policy in force and the freeze of every API key.

use countersign_core::Timestamp;
use countersign_core::id::OperationId;
use countersign_core::policy::Policy;
use serde::Serialize;
use sqlx::Row;

use crate::error::{Error, Result};

use super::{AuditEvent, OpState, Store, corrupt, is_unique_violation, ts};

/// The freeze switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreezeState {
    /// Whether every API key is frozen.
    pub frozen: bool,
    /// When it last changed.
    pub changed_at: Timestamp,
    /// Who changed it.
    pub changed_by: String,
    /// Why.
    pub reason: String,
}

impl Store {
    /// Store `initial` as version 1 unless a policy exists; return the current policy.
    ///
    /// # Errors
    /// Database errors.
    pub async fn ensure_policy(&self, initial: &Policy, now: Timestamp) -> Result<Policy> {
        if let Some(p) = self.current_policy().await? {
            return Ok(p);
        }
        let document = serde_json::to_string(initial).map_err(Error::internal)?;
        let mut tx = self.pool.begin().await?;
        let inserted =
            sqlx::query("INSERT INTO policies (version, document, activated_at) VALUES ($1, $2, $3)")
                .bind(i64::from(initial.version))
                .bind(&document)
                .bind(now.unix())
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => {
                let event = AuditEvent::new("host", "policy.initialised").detail("version", initial.version);
                self.append(&mut tx, &event, now).await?;
                self.commit(tx).await?;
            }
            // Another instance stored it first: theirs is as good.
            Err(e) if is_unique_violation(&e) => drop(tx),
            Err(e) => return Err(e.into()),
        }
        self.current_policy().await?.ok_or_else(|| Error::internal("policy vanished after insert"))
    }

    /// The highest policy version.
    ///
    /// # Errors
    /// Database errors, or a stored policy that does not decode.
    pub async fn current_policy(&self) -> Result<Option<Policy>> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT document FROM policies ORDER BY version DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        doc.map(|d| serde_json::from_str(&d).map_err(|e| corrupt("policy", e))).transpose()
    }

    /// The freeze switch.
    ///
    /// # Errors
    /// Database errors.
    pub async fn freeze_state(&self) -> Result<FreezeState> {
        let row = sqlx::query("SELECT frozen, changed_at, changed_by, reason FROM key_freeze WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(FreezeState {
            frozen: row.try_get::<i64, _>(0)? != 0,
            changed_at: ts(row.try_get(1)?)?,
            changed_by: row.try_get(2)?,
            reason: row.try_get(3)?,
        })
    }

    /// Freeze every API key; `false` when already frozen. Unfreezing is an
    /// `Unfreeze` operation that needs quorum, see [`Store::unfreeze_released`].
    /// Freezing again while frozen is audited (`freeze.repeated`, with its reason)
    /// and cancels every unfreeze still waiting for approval: someone just said it
    /// is not safe yet.
    ///
    /// # Errors
    /// Database errors.
    pub async fn freeze(&self, actor: &str, reason: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE key_freeze SET frozen = 1, changed_at = $1, changed_by = $2, reason = $3 WHERE id = 1 AND frozen = 0",
        )
        .bind(now.unix())
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let event = if changed { "freeze.on" } else { "freeze.repeated" };
        // A new freeze leaves older unfreeze proposals to go stale (they name the
        // freeze they lift); freezing again while frozen cancels the one in flight.
        let unfreezes = if changed {
            Vec::new()
        } else {
            sqlx::query(
                "SELECT id, digest FROM operations WHERE state = 'pending' AND kind = 'unfreeze' ORDER BY id",
            )
            .fetch_all(&mut *tx)
            .await?
        };
        self.append(&mut tx, &AuditEvent::new(actor, event).detail("reason", reason), now).await?;
        for row in &unfreezes {
            let id =
                OperationId::new(row.try_get::<String, _>(0)?).map_err(|e| corrupt("operation id", e))?;
            let digest: String = row.try_get(1)?;
            let cancelled = AuditEvent::new(actor, OpState::Cancelled.audit_event())
                .operation(&id, &digest)
                .detail("reason", "API keys were frozen again while this unfreeze waited");
            self.transition_in(&mut tx, &id, OpState::Pending, OpState::Cancelled, None, &cancelled, now)
                .await?;
        }
        self.commit(tx).await?;
        Ok(changed)
    }
}
