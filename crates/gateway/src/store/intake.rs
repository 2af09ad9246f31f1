//! What intake weighs a withdrawal against: the key's and account's recent
//! withdrawals, its pending count, whether a destination was used before.

use countersign_core::Timestamp;
use countersign_core::id::{AccountId, ApiKeyId};
use countersign_core::operation::Destination;
use countersign_core::policy::RecentTransfer;
use countersign_core::risk::{BASELINE_SAMPLES, PastWithdrawal};
use sqlx::{AnyConnection, Row};

use crate::error::Result;

use super::{Store, corrupt, ts};

use super::operations::amount_column;

impl Store {
    /// What intake weighs a withdrawal against, counting only withdrawals pending,
    /// approved or released:
    /// - for velocity, every withdrawal by this key or from this account since
    ///   `velocity_since` (the policy's longest velocity window);
    /// - for the risk baseline, this key's latest [`BASELINE_SAMPLES`] withdrawals
    ///   since `baseline_since` (30 days).
    ///
    /// Bounded so that intake does not slow down as a busy key's history grows: the
    /// scale benchmark measured intake reading every row of the 30 days before.
    ///
    /// # Errors
    /// Database errors.
    pub async fn recent_withdrawals(
        &self,
        conn: &mut AnyConnection,
        key_id: &str,
        account: &str,
        velocity_since: Timestamp,
        baseline_since: Timestamp,
    ) -> Result<(Vec<RecentTransfer>, Vec<PastWithdrawal>)> {
        let rows = sqlx::query(
            "SELECT created_at, api_key_id, account, reference_value FROM operations \
             WHERE kind = 'withdrawal' AND created_at > $1 AND (api_key_id = $2 OR account = $3) \
             AND state IN ('pending', 'approved', 'released')",
        )
        .bind(velocity_since.unix())
        .bind(key_id)
        .bind(account)
        .fetch_all(&mut *conn)
        .await?;
        let mut transfers = Vec::with_capacity(rows.len());
        for r in &rows {
            let api_key: Option<String> = r.try_get(1)?;
            let account: String = r.try_get(2)?;
            transfers.push(RecentTransfer {
                at: ts(r.try_get(0)?)?,
                api_key: api_key.map(ApiKeyId::new).transpose().map_err(|e| corrupt("api key id", e))?,
                account: AccountId::new(account).map_err(|e| corrupt("account", e))?,
                reference_value: amount_column(r, 3)?,
            });
        }
        let rows = sqlx::query(
            "SELECT created_at, reference_value, source_ip FROM operations \
             WHERE api_key_id = $1 AND created_at > $2 AND kind = 'withdrawal' \
             AND state IN ('pending', 'approved', 'released') ORDER BY created_at DESC LIMIT $3",
        )
        .bind(key_id)
        .bind(baseline_since.unix())
        .bind(i64::try_from(BASELINE_SAMPLES).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        let mut history = Vec::with_capacity(rows.len());
        for r in &rows {
            let ip: String = r.try_get(2)?;
            history.push(PastWithdrawal {
                at: ts(r.try_get(0)?)?,
                reference_value: amount_column(r, 1)?,
                source_ip: ip.parse().map_err(|e| corrupt("source ip", e))?,
            });
        }
        Ok((transfers, history))
    }

    /// How many operations an API key has pending.
    ///
    /// # Errors
    /// Database errors.
    pub async fn pending_for_key(&self, conn: &mut AnyConnection, key_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM operations WHERE api_key_id = $1 AND state = 'pending'")
            .bind(key_id)
            .fetch_one(&mut *conn)
            .await?)
    }

    /// Whether the account has a released withdrawal to this destination (address
    /// and memo / tag).
    ///
    /// # Errors
    /// Database errors.
    pub async fn destination_used(
        &self,
        conn: &mut AnyConnection,
        account: &str,
        network: &str,
        destination: &Destination,
    ) -> Result<bool> {
        let hit: Option<String> = sqlx::query_scalar(
            "SELECT id FROM operations WHERE account = $1 AND network = $2 AND destination = $3 \
             AND COALESCE(destination_memo, '') = $4 AND state = 'released' LIMIT 1",
        )
        .bind(account)
        .bind(network)
        .bind(&destination.address)
        .bind(destination.memo.as_deref().unwrap_or(""))
        .fetch_optional(&mut *conn)
        .await?;
        Ok(hit.is_some())
    }
}
