//! People who decide, their hardware keys, and the single-use codes that enroll them.
//! Rows only: who may do what is decided in `crate::approvers`.

use std::collections::BTreeSet;

use countersign_core::Timestamp;
use countersign_core::id::{ApproverId, GroupName};
use countersign_core::operation::Role;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use webauthn_rs::prelude::Uuid;

use crate::error::{Error, Result};

use super::{Store, corrupt};

/// A person who may decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approver {
    pub id: ApproverId,
    pub display_name: String,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<GroupName>,
    /// The WebAuthn user handle (random, not the id).
    #[serde(skip)]
    pub user_handle: Uuid,
    pub revoked_at: Option<Timestamp>,
}

/// A new person.
#[derive(Debug, Clone)]
pub struct NewApprover<'a> {
    pub id: &'a ApproverId,
    pub display_name: &'a str,
    pub roles: &'a BTreeSet<Role>,
    pub groups: &'a BTreeSet<GroupName>,
    pub user_handle: Uuid,
}

/// A hardware key as stored: `passkey` is webauthn-rs's state (JSON), `public_key`
/// the SEC1 point (base64url).
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub id: String,
    pub public_key: String,
    pub passkey: String,
    pub status: String,
}

/// A key as admins see it.
#[derive(Debug, Clone)]
pub struct CredentialListing {
    pub id: String,
    pub label: String,
    pub aaguid: Option<String>,
    pub status: String,
}

/// A new key.
#[derive(Debug, Clone)]
pub struct NewCredential<'a> {
    pub id: &'a str,
    pub approver: &'a ApproverId,
    pub label: &'a str,
    pub aaguid: Option<&'a str>,
    pub public_key: &'a str,
    pub passkey: &'a str,
    pub counter: i64,
    pub status: &'a str,
}

/// An enrollment code as stored (the code itself is kept only hashed).
#[derive(Debug, Clone)]
pub struct EnrollmentCode {
    pub approver: ApproverId,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

const APPROVER_COLUMNS: &str = "id, display_name, roles, group_names, user_handle, revoked_at";

fn approver_from_row(r: &sqlx::any::AnyRow) -> Result<Approver> {
    let roles: String = r.try_get(2)?;
    let groups: String = r.try_get(3)?;
    let handle: String = r.try_get(4)?;
    let revoked: Option<i64> = r.try_get(5)?;
    Ok(Approver {
        id: ApproverId::new(r.try_get::<String, _>(0)?).map_err(|e| corrupt("approver", e))?,
        display_name: r.try_get(1)?,
        roles: serde_json::from_str(&roles).map_err(|e| corrupt("approver roles", e))?,
        groups: serde_json::from_str(&groups).map_err(|e| corrupt("approver groups", e))?,
        user_handle: Uuid::parse_str(&handle).map_err(|e| corrupt("user handle", e))?,
        revoked_at: revoked.and_then(Timestamp::from_unix),
    })
}

impl Store {
    /// One person, revoked or not.
    ///
    /// # Errors
    /// Database errors.
    pub async fn approver(&self, id: &ApproverId) -> Result<Option<Approver>> {
        let sql = format!("SELECT {APPROVER_COLUMNS} FROM approvers WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|r| approver_from_row(&r)).transpose()
    }

    /// Everyone, revoked or not, by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn approvers(&self) -> Result<Vec<Approver>> {
        let sql = format!("SELECT {APPROVER_COLUMNS} FROM approvers ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(approver_from_row).collect()
    }

    /// Everyone not revoked who has at least one active key, with those keys, by id:
    /// one query (settlement and the registry read it on every decision).
    ///
    /// # Errors
    /// Database errors.
    pub async fn people_with_active_keys(&self) -> Result<Vec<(Approver, Vec<CredentialRow>)>> {
        let rows = sqlx::query(
            "SELECT a.id, a.display_name, a.roles, a.group_names, a.user_handle, a.revoked_at, \
             c.id, c.public_key, c.passkey, c.status FROM approvers a JOIN credentials c ON c.approver_id = a.id \
             WHERE a.revoked_at IS NULL AND c.status = 'active' ORDER BY a.id, c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(Approver, Vec<CredentialRow>)> = Vec::new();
        for r in &rows {
            let key = CredentialRow {
                id: r.try_get(6)?,
                public_key: r.try_get(7)?,
                passkey: r.try_get(8)?,
                status: r.try_get(9)?,
            };
            let id: String = r.try_get(0)?;
            match out.last_mut() {
                Some((person, keys)) if person.id.as_str() == id => keys.push(key),
                _ => out.push((approver_from_row(r)?, vec![key])),
            }
        }
        Ok(out)
    }

    /// Add a person (with no key yet).
    ///
    /// # Errors
    /// Database errors (a person with this id exists).
    pub async fn insert_approver_in(
        &self,
        tx: &mut AnyConnection,
        a: &NewApprover<'_>,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO approvers (id, display_name, roles, group_names, user_handle, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a.id.as_str())
        .bind(a.display_name)
        .bind(serde_json::to_string(a.roles).map_err(Error::internal)?)
        .bind(serde_json::to_string(a.groups).map_err(Error::internal)?)
        .bind(a.user_handle.to_string())
        .bind(now.unix())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// A person's keys, by id; with `only_active`, those that count.
    ///
    /// # Errors
    /// Database errors.
    pub async fn credentials_of(&self, id: &ApproverId, only_active: bool) -> Result<Vec<CredentialRow>> {
        let rows = sqlx::query(
            "SELECT id, public_key, passkey, status FROM credentials WHERE approver_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let status: String = r.try_get(3)?;
            if only_active && status != "active" {
                continue;
            }
            out.push(CredentialRow {
                id: r.try_get(0)?,
                public_key: r.try_get(1)?,
                passkey: r.try_get(2)?,
                status,
            });
        }
        Ok(out)
    }

    /// A person's keys as admins see them, by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn credential_listing(&self, id: &ApproverId) -> Result<Vec<CredentialListing>> {
        let rows = sqlx::query(
            "SELECT id, label, aaguid, status FROM credentials WHERE approver_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|k| {
                Ok(CredentialListing {
                    id: k.try_get(0)?,
                    label: k.try_get(1)?,
                    aaguid: k.try_get(2)?,
                    status: k.try_get(3)?,
                })
            })
            .collect()
    }

    /// The id of some active key (its length shapes decoy challenges).
    ///
    /// # Errors
    /// Database errors.
    pub async fn some_active_credential_id(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM credentials WHERE status = 'active' ORDER BY id LIMIT 1")
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Store a key.
    ///
    /// # Errors
    /// Database errors (a key with this id exists).
    pub async fn insert_credential_in(
        &self,
        tx: &mut AnyConnection,
        c: &NewCredential<'_>,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO credentials (id, approver_id, label, aaguid, public_key, passkey, counter, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id)
        .bind(c.approver.as_str())
        .bind(c.label)
        .bind(c.aaguid)
        .bind(c.public_key)
        .bind(c.passkey)
        .bind(c.counter)
        .bind(c.status)
        .bind(now.unix())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Store the key's new signature counter if it advanced (or stays 0 for a key
    /// that always reports 0) and the key is active; false otherwise.
    ///
    /// # Errors
    /// Database errors.
    pub async fn advance_counter(&self, credential: &str, counter: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE credentials SET counter = $1 WHERE id = $2 AND status = 'active' AND (counter < $1 OR ($1 = 0 AND counter = 0))",
        )
        .bind(counter)
        .bind(credential)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Mark an active key as flagged (it stops counting).
    ///
    /// # Errors
    /// Database errors.
    pub async fn flag_credential(&self, credential: &str) -> Result<()> {
        sqlx::query("UPDATE credentials SET status = 'flagged' WHERE id = $1 AND status = 'active'")
            .bind(credential)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Bootstrap codes issued, unused and unexpired.
    ///
    /// # Errors
    /// Database errors.
    pub async fn outstanding_bootstrap_codes(&self, now: Timestamp) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrollment_codes WHERE bootstrap = 1 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now.unix())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Store an enrollment code by its hash.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_enrollment_code_in(
        &self,
        tx: &mut AnyConnection,
        code_hash: &str,
        approver: &ApproverId,
        bootstrap: bool,
        issued_by: &str,
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO enrollment_codes (code_hash, approver_id, bootstrap, issued_by, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(code_hash)
        .bind(approver.as_str())
        .bind(i64::from(bootstrap))
        .bind(issued_by)
        .bind(expires_at.unix())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// An enrollment code by its hash.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enrollment_code(&self, code_hash: &str) -> Result<Option<EnrollmentCode>> {
        let row =
            sqlx::query("SELECT approver_id, expires_at, used_at FROM enrollment_codes WHERE code_hash = $1")
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(EnrollmentCode {
                approver: ApproverId::new(r.try_get::<String, _>(0)?)
                    .map_err(|e| corrupt("code's approver", e))?,
                expires_at: r.try_get(1)?,
                used_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Whether the code is a bootstrap code (None: no such code).
    ///
    /// # Errors
    /// Database errors.
    pub async fn enrollment_code_is_bootstrap(&self, code_hash: &str) -> Result<Option<bool>> {
        let b: Option<i64> =
            sqlx::query_scalar("SELECT bootstrap FROM enrollment_codes WHERE code_hash = $1")
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(b.map(|b| b == 1))
    }

    /// Use a code once: `(bootstrap, issued_by)`, or None when it was used already.
    ///
    /// # Errors
    /// Database errors.
    pub async fn use_enrollment_code_in(
        &self,
        tx: &mut AnyConnection,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<Option<(bool, String)>> {
        let used = sqlx::query(
            "UPDATE enrollment_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING bootstrap, issued_by",
        )
        .bind(now.unix())
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        used.map(|r| Ok((r.try_get::<i64, _>(0)? == 1, r.try_get(1)?))).transpose()
    }
}
