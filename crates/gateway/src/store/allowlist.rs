//! Allowlisted destinations: account, network, address and memo together.

use countersign_core::Timestamp;
use countersign_core::id::{AccountId, NetworkId};
use countersign_core::operation::Destination;
use countersign_core::policy::DestinationStatus;
use sqlx::AnyConnection;

use crate::error::Result;

use super::{AuditEvent, Store, ts};

/// The audit event of an allowlist change, naming the full destination.
pub(super) fn allowlist_event(
    actor: &str,
    event: &'static str,
    account: &AccountId,
    network: &NetworkId,
    destination: &Destination,
) -> AuditEvent {
    AuditEvent::new(actor, event)
        .detail("account", account.as_str())
        .detail("network", network.as_str())
        .detail("address", destination.address.as_str())
        .detail("memo", destination.memo.clone().unwrap_or_default())
}

impl Store {
    /// Whether and since when a destination (address and memo / tag, both exact) is
    /// allowlisted for an account.
    ///
    /// # Errors
    /// Database errors.
    pub async fn allowlist_status(
        &self,
        conn: &mut AnyConnection,
        account: &AccountId,
        network: &NetworkId,
        destination: &Destination,
    ) -> Result<DestinationStatus> {
        let since: Option<i64> = sqlx::query_scalar(
            "SELECT added_at FROM allowlist WHERE account = $1 AND network = $2 AND address = $3 AND memo = $4",
        )
        .bind(account.as_str())
        .bind(network.as_str())
        .bind(&destination.address)
        .bind(destination.memo.as_deref().unwrap_or(""))
        .fetch_optional(&mut *conn)
        .await?;
        Ok(match since {
            Some(s) => DestinationStatus::Allowlisted { since: ts(s)? },
            None => DestinationStatus::NotAllowlisted,
        })
    }

    /// Whether a destination is on an account's allowlist (for refusing duplicate
    /// proposals).
    ///
    /// # Errors
    /// Database errors.
    pub async fn allowlisted(
        &self,
        account: &AccountId,
        network: &NetworkId,
        destination: &Destination,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let status = self.allowlist_status(&mut conn, account, network, destination).await?;
        Ok(matches!(status, DestinationStatus::Allowlisted { .. }))
    }

    /// Insert an allowlist entry in the caller's transaction; `false` when that exact
    /// destination is already listed.
    pub(super) async fn insert_allowlist(
        tx: &mut AnyConnection,
        account: &AccountId,
        network: &NetworkId,
        destination: &Destination,
        label: &str,
        now: Timestamp,
    ) -> Result<bool> {
        // ON CONFLICT, not a caught unique violation: on PostgreSQL a failed statement
        // would abort the caller's whole transaction (a release).
        let inserted = sqlx::query(
            "INSERT INTO allowlist (account, network, address, memo, label, added_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account, network, address, memo) DO NOTHING",
        )
        .bind(account.as_str())
        .bind(network.as_str())
        .bind(&destination.address)
        .bind(destination.memo.as_deref().unwrap_or(""))
        .bind(label)
        .bind(now.unix())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Add an allowlist entry directly. Only the gateway host's CLI calls this (the
    /// bootstrap path, audited as such); approved `AllowlistAdd` operations use the
    /// same insert.
    ///
    /// # Errors
    /// Database errors.
    pub async fn add_allowlist(
        &self,
        account: &AccountId,
        network: &NetworkId,
        destination: &Destination,
        label: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !Self::insert_allowlist(&mut tx, account, network, destination, label, now).await? {
            return Ok(false);
        }
        let event =
            allowlist_event(actor, "allowlist.added", account, network, destination).detail("label", label);
        self.append(&mut tx, &event, now).await?;
        self.commit(tx).await?;
        Ok(true)
    }
}

impl Store {
    /// Every allowlisted destination, in key order (for the genesis and the checker).
    ///
    /// # Errors
    /// Database errors; an entry that no longer decodes.
    pub async fn allowlist_entries(&self) -> Result<Vec<countersign_core::authority::AllowlistEntry>> {
        use sqlx::Row as _;
        let rows = sqlx::query(
            "SELECT account, network, address, memo, label, added_at FROM allowlist ORDER BY account, network, address, memo",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let memo: String = r.try_get(3)?;
                let parse = |i: usize| -> Result<String> { Ok(r.try_get::<String, _>(i)?) };
                Ok(countersign_core::authority::AllowlistEntry {
                    account: parse(0)?.parse().map_err(|e| super::corrupt("allowlist account", e))?,
                    network: parse(1)?.parse().map_err(|e| super::corrupt("allowlist network", e))?,
                    destination: Destination { address: parse(2)?, memo: (!memo.is_empty()).then_some(memo) },
                    label: parse(4)?,
                    added_at: super::ts(r.try_get(5)?)?,
                })
            })
            .collect()
    }
}
