//! The authority chain's rows: the genesis (draft, then sealed) and the links. A
//! cache of signed documents; `crate::authority` verifies what it reads here.

use countersign_core::Timestamp;
use countersign_core::authority::{Link, SignedGenesis};
use sqlx::{AnyConnection, Row as _};

use crate::error::{Error, Result};

use super::{Backend, Store, corrupt};

/// The stored genesis.
#[derive(Debug, Clone)]
pub struct GenesisRow {
    /// The document with the signatures gathered so far.
    pub signed: SignedGenesis,
    /// Its hash, hex, as computed when the draft was made.
    pub hash: String,
    /// When the last signature sealed it; `None` while it is a draft.
    pub sealed_at: Option<Timestamp>,
}

impl Store {
    /// The genesis, draft or sealed.
    ///
    /// # Errors
    /// Database errors; a row that does not decode.
    pub async fn genesis(&self) -> Result<Option<GenesisRow>> {
        let row =
            sqlx::query("SELECT document, hash, signatures, sealed_at FROM authority_genesis WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            let genesis =
                serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(|e| corrupt("genesis", e))?;
            let signatures = serde_json::from_str(&r.try_get::<String, _>(2)?)
                .map_err(|e| corrupt("genesis signatures", e))?;
            Ok(GenesisRow {
                signed: SignedGenesis { genesis, signatures },
                hash: r.try_get(1)?,
                sealed_at: super::opt_ts(r.try_get(3)?)?,
            })
        })
        .transpose()
    }

    /// Store a genesis draft; `false` when one exists already.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_genesis_draft(
        &self,
        signed: &SignedGenesis,
        hash: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO authority_genesis (id, document, hash, signatures, created_at) VALUES (1, $1, $2, '[]', $3)",
        )
        .bind(serde_json::to_string(&signed.genesis).map_err(Error::internal)?)
        .bind(hash)
        .bind(now.unix())
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if super::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Discard the draft; `false` when there is none or it is sealed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_genesis_draft(&self) -> Result<bool> {
        let n = sqlx::query("DELETE FROM authority_genesis WHERE id = 1 AND sealed_at IS NULL")
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Record the draft's signatures (and seal it with `sealed_at`), only while it
    /// is still the draft with `hash` and the signatures `before` (compare and set);
    /// `false` otherwise.
    ///
    /// # Errors
    /// Database errors.
    pub async fn save_genesis_signatures(
        &self,
        hash: &str,
        signed: &SignedGenesis,
        sealed_at: Option<Timestamp>,
        before: &SignedGenesis,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE authority_genesis SET signatures = $1, sealed_at = $2 \
             WHERE id = 1 AND hash = $3 AND sealed_at IS NULL AND signatures = $4",
        )
        .bind(serde_json::to_string(&signed.signatures).map_err(Error::internal)?)
        .bind(sealed_at.map(Timestamp::unix))
        .bind(hash)
        .bind(serde_json::to_string(&before.signatures).map_err(Error::internal)?)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Links after `index`, in order.
    ///
    /// # Errors
    /// Database errors; a link that does not decode.
    pub async fn links_after(&self, index: u64) -> Result<Vec<Link>> {
        let mut conn = self.pool.acquire().await?;
        self.links_after_in(&mut conn, index).await
    }

    /// [`Store::links_after`] in the caller's transaction.
    ///
    /// # Errors
    /// As [`Store::links_after`].
    pub async fn links_after_in(&self, tx: &mut AnyConnection, index: u64) -> Result<Vec<Link>> {
        let rows = sqlx::query("SELECT link FROM authority_links WHERE idx > $1 ORDER BY idx")
            .bind(i64::try_from(index).map_err(Error::internal)?)
            .fetch_all(&mut *tx)
            .await?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(|e| corrupt("authority link", e))
            })
            .collect()
    }

    /// Serialise appending links for the rest of the caller's transaction
    /// (PostgreSQL: the genesis row's lock, on every instance; SQLite: its one
    /// connection); returns the newest link index (0: none yet).
    ///
    /// # Errors
    /// Database errors.
    pub async fn lock_authority_in(&self, tx: &mut AnyConnection) -> Result<u64> {
        let sql = match self.backend {
            Backend::Postgres => "SELECT id FROM authority_genesis WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT id FROM authority_genesis WHERE id = 1",
        };
        sqlx::query(sql).fetch_optional(&mut *tx).await?;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(idx) FROM authority_links").fetch_one(&mut *tx).await?;
        Ok(u64::try_from(newest.unwrap_or(0)).unwrap_or(0))
    }

    /// Append a link in the caller's transaction (after [`Store::lock_authority_in`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_link_in(
        &self,
        tx: &mut AnyConnection,
        link: &Link,
        hash: &str,
        operation_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO authority_links (idx, hash, operation_id, link, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(i64::try_from(link.index).map_err(Error::internal)?)
            .bind(hash)
            .bind(operation_id)
            .bind(serde_json::to_string(link).map_err(Error::internal)?)
            .bind(now.unix())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// The stored public key (SEC1, base64url) of a credential, in the caller's transaction.
    ///
    /// # Errors
    /// Database errors.
    pub async fn credential_public_key_in(&self, tx: &mut AnyConnection, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT public_key FROM credentials WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?)
    }
}
