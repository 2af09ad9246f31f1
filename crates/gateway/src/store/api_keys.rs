//! API keys (public halves and HMAC salts, never secrets) and their request nonces.

use std::collections::BTreeSet;
use std::net::IpAddr;

use countersign_core::id::{ApiKeyId, ApproverId};
use countersign_core::operation::{Scope, SigningAlgorithm};
use countersign_core::{Amount, Timestamp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::{Error, Result};

use super::{AuditEvent, Store, corrupt, is_unique_violation, opt_ts, ts};

/// An API key as stored. Holds no secret: Ed25519 keys are public, HMAC secrets are
/// derived from the gateway's master key and the salt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    /// Responsible person.
    pub owner: ApproverId,
    /// What it is for.
    pub label: String,
    /// How it signs.
    pub algorithm: SigningAlgorithm,
    /// Ed25519 public key, base64url.
    pub public_key: Option<String>,
    /// HMAC salt, hex.
    #[serde(skip)]
    pub hmac_salt: Option<String>,
    pub scopes: BTreeSet<Scope>,
    /// Allowed source CIDR blocks; empty allows none.
    pub ip_allowlist: Vec<String>,
    /// Largest reference value one request may move (deny above).
    pub max_reference_value: Option<Amount>,
    /// Created.
    pub created_at: Timestamp,
    /// Stops working at.
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Last authenticated use.
    pub last_used_at: Option<Timestamp>,
    /// Address of the last authenticated use.
    pub last_used_ip: Option<String>,
}

pub(super) fn algorithm_str(a: SigningAlgorithm) -> &'static str {
    match a {
        SigningAlgorithm::Ed25519 => "ed25519",
        SigningAlgorithm::HmacSha256 => "hmac_sha256",
    }
}

macro_rules! api_key_columns {
    () => {
        "id, owner, label, algorithm, public_key, hmac_salt, scopes, ip_allowlist, \
         max_reference_value, created_at, expires_at, revoked_at, last_used_at, last_used_ip"
    };
}

pub(super) fn api_key_from_row(r: &AnyRow) -> Result<ApiKeyRecord> {
    let algorithm = match r.try_get::<String, _>(3)?.as_str() {
        "ed25519" => SigningAlgorithm::Ed25519,
        "hmac_sha256" => SigningAlgorithm::HmacSha256,
        other => return Err(corrupt("algorithm", other)),
    };
    let scopes: String = r.try_get(6)?;
    let allow: String = r.try_get(7)?;
    let max: Option<String> = r.try_get(8)?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::new(r.try_get::<String, _>(0)?).map_err(|e| corrupt("key id", e))?,
        owner: ApproverId::new(r.try_get::<String, _>(1)?).map_err(|e| corrupt("owner", e))?,
        label: r.try_get(2)?,
        algorithm,
        public_key: r.try_get(4)?,
        hmac_salt: r.try_get(5)?,
        scopes: serde_json::from_str(&scopes).map_err(|e| corrupt("scopes", e))?,
        ip_allowlist: serde_json::from_str(&allow).map_err(|e| corrupt("ip allowlist", e))?,
        max_reference_value: max
            .map(|m| Amount::parse(&m))
            .transpose()
            .map_err(|e| corrupt("max value", e))?,
        created_at: ts(r.try_get(9)?)?,
        expires_at: opt_ts(r.try_get(10)?)?,
        revoked_at: opt_ts(r.try_get(11)?)?,
        last_used_at: opt_ts(r.try_get(12)?)?,
        last_used_ip: r.try_get(13)?,
    })
}

impl Store {
    /// Store a new API key.
    ///
    /// # Errors
    /// `api_key.exists` (409) when the id is taken; database errors.
    pub async fn insert_api_key(&self, k: &ApiKeyRecord, now: Timestamp) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !self.insert_api_key_in(&mut tx, k, "host", now).await? {
            return Err(Error::conflict(
                "api_key.exists",
                format!("an API key with id {} already exists", k.id),
            ));
        }
        self.commit(tx).await
    }

    /// Store a new API key in a transaction and audit it as `actor`'s doing;
    /// `false` (nothing written) when the id is taken.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_api_key_in(
        &self,
        tx: &mut AnyConnection,
        k: &ApiKeyRecord,
        actor: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let scopes = serde_json::to_string(&k.scopes).map_err(Error::internal)?;
        let allow = serde_json::to_string(&k.ip_allowlist).map_err(Error::internal)?;
        let taken: Option<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE id = $1")
            .bind(k.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(false);
        }
        let r = sqlx::query(
            "INSERT INTO api_keys (id, owner, label, algorithm, public_key, hmac_salt, scopes, ip_allowlist, \
             max_reference_value, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(k.id.as_str())
        .bind(k.owner.as_str())
        .bind(&k.label)
        .bind(algorithm_str(k.algorithm))
        .bind(k.public_key.as_deref())
        .bind(k.hmac_salt.as_deref())
        .bind(&scopes)
        .bind(&allow)
        .bind(k.max_reference_value.map(|a| a.to_string()))
        .bind(k.created_at.unix())
        .bind(k.expires_at.map(Timestamp::unix))
        .execute(&mut *tx)
        .await;
        match r {
            // Two writers raced past the check above: the loser writes nothing (on
            // PostgreSQL its transaction is aborted, so the caller's next statement
            // fails and everything rolls back).
            Err(e) if is_unique_violation(&e) => return Ok(false),
            r => r?,
        };
        let event = AuditEvent::new(actor, "api_key.created")
            .detail("key_id", k.id.as_str())
            .detail("owner", k.owner.as_str())
            .detail("algorithm", algorithm_str(k.algorithm))
            .detail("scopes", scopes)
            .detail("ip_allowlist", allow);
        self.append(tx, &event, now).await?;
        Ok(true)
    }

    /// One API key.
    ///
    /// # Errors
    /// Database errors.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| api_key_from_row(&r)).transpose()
    }

    /// Every API key, by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(concat!("SELECT ", api_key_columns!(), " FROM api_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    /// Revoke a key; `false` when it does not exist or was already revoked.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_api_key(&self, id: &str, actor: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now.unix())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if done {
            self.append(&mut tx, &AuditEvent::new(actor, "api_key.revoked").detail("key_id", id), now)
                .await?;
            self.commit(tx).await?;
        }
        Ok(done)
    }

    /// Record an authenticated use; audits a source address the key has not used before.
    ///
    /// # Errors
    /// Database errors.
    pub async fn touch_api_key(&self, key: &ApiKeyRecord, ip: IpAddr, now: Timestamp) -> Result<()> {
        let ip = ip.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE api_keys SET last_used_at = $1, last_used_ip = $2 WHERE id = $3")
            .bind(now.unix())
            .bind(&ip)
            .bind(key.id.as_str())
            .execute(&mut *tx)
            .await?;
        if key.last_used_ip.as_deref() != Some(ip.as_str()) {
            let seen: Option<String> = sqlx::query_scalar(
                "SELECT id FROM operations WHERE api_key_id = $1 AND source_ip = $2 LIMIT 1",
            )
            .bind(key.id.as_str())
            .bind(&ip)
            .fetch_optional(&mut *tx)
            .await?;
            if seen.is_none() {
                let event = AuditEvent::new(format!("api_key:{}", key.id), "api_key.new_source_ip")
                    .detail("key_id", key.id.as_str())
                    .detail("source_ip", ip);
                self.append(&mut tx, &event, now).await?;
            }
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Remember a nonce until `expires_at`; `false` when it was already used.
    ///
    /// # Errors
    /// Database errors.
    pub async fn use_nonce(&self, key_id: &str, nonce: &str, expires_at: Timestamp) -> Result<bool> {
        let r = sqlx::query("INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3)")
            .bind(key_id)
            .bind(nonce)
            .bind(expires_at.unix())
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Forget nonces whose window has passed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn sweep_nonces(&self, now: Timestamp) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(now.unix())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
