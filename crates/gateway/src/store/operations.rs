//! Operations: intake, state transitions, the effects of administrative operations,
//! and the reads intake weighs a withdrawal against.

use std::str::FromStr;

use countersign_core::canonical;
use countersign_core::id::OperationId;
use countersign_core::operation::Operation;
use countersign_core::{Amount, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::{Error, Result};

use super::{ApiKeyRecord, AuditEvent, Backend, Store, corrupt, is_unique_violation, ts};

use super::allowlist::allowlist_event;

/// Lifecycle state of a stored operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Refused by policy; never released.
    Denied,
    /// Waiting for decisions.
    Pending,
    /// Quorum reached, about to be released.
    Approved,
    /// Handed to settlement (exactly once).
    Released,
    /// Vetoed.
    Rejected,
    /// Ran out of time.
    Expired,
    /// Withdrawn by its initiator.
    Cancelled,
}

impl OpState {
    /// The wire and database name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Denied => "denied",
            OpState::Pending => "pending",
            OpState::Approved => "approved",
            OpState::Released => "released",
            OpState::Rejected => "rejected",
            OpState::Expired => "expired",
            OpState::Cancelled => "cancelled",
        }
    }
}

impl OpState {
    /// The audit event that records an operation entering this state.
    #[must_use]
    pub fn audit_event(self) -> &'static str {
        match self {
            OpState::Denied => "operation.denied",
            OpState::Pending => "operation.pending",
            OpState::Approved => "operation.approved",
            OpState::Released => "operation.released",
            OpState::Rejected => "operation.rejected",
            OpState::Expired => "operation.expired",
            OpState::Cancelled => "operation.cancelled",
        }
    }
}

impl FromStr for OpState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "denied" => OpState::Denied,
            "pending" => OpState::Pending,
            "approved" => OpState::Approved,
            "released" => OpState::Released,
            "rejected" => OpState::Rejected,
            "expired" => OpState::Expired,
            "cancelled" => OpState::Cancelled,
            other => {
                return Err(Error::bad_request(
                    "request.bad_state",
                    format!("unknown operation state {other:?}"),
                ));
            }
        })
    }
}

/// An operation as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationRecord {
    /// The operation (decoded strictly from the stored canonical bytes).
    pub operation: Operation,
    pub state: OpState,
    /// Canonical digest, hex.
    pub digest: String,
    /// The policy verdict, JSON.
    pub verdict: Value,
    /// Risk assessment, JSON.
    pub risk: Option<Value>,
    /// Last change.
    pub updated_at: Timestamp,
    /// Client idempotency key.
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request body, hex (for idempotency conflicts).
    #[serde(skip)]
    pub request_hash: Option<String>,
}

/// What an operation row needs besides the operation itself.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub operation: Operation,
    /// Initial state: denied, pending or released.
    pub state: OpState,
    /// Policy verdict, JSON.
    pub verdict: Value,
    /// Risk assessment, JSON.
    pub risk: Option<Value>,
    /// Client idempotency key.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request body, hex.
    pub request_hash: Option<String>,
}

/// Result of inserting an operation.
#[derive(Debug)]
pub enum Inserted {
    /// Stored now.
    New(OperationRecord),
    /// The same API key already used this idempotency key.
    Existing(OperationRecord),
}

/// Which operations to list.
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    /// Only this state.
    pub state: Option<OpState>,
    /// Only operations that are no longer pending (history).
    pub decided: bool,
    /// Only those initiated with this API key.
    pub api_key: Option<String>,
    /// Strictly before this `(created_at, id)` (the page cursor).
    pub before: Option<(i64, String)>,
}

/// What releasing an operation writes: the release document for settlement and, for
/// an administrative operation, its effect on the gateway, both in the release's
/// transaction.
#[derive(Debug, Clone)]
pub struct Release<'a> {
    /// The signed release document.
    pub document: &'a Value,
    /// The released action; administrative ones change the gateway (see
    /// [`Store::apply_effect`]).
    pub action: Option<&'a countersign_core::Action>,
}

macro_rules! op_columns {
    () => {
        "canonical, state, digest, verdict, risk, updated_at, idempotency_key, request_hash"
    };
}

pub(super) fn amount_column(r: &AnyRow, i: usize) -> Result<Amount> {
    let value: String = r.try_get(i)?;
    Amount::parse(&value).map_err(|e| corrupt("reference value", e))
}

pub(super) fn op_from_row(r: &AnyRow) -> Result<OperationRecord> {
    let canonical_text: String = r.try_get(0)?;
    let operation = canonical::decode(canonical_text.as_bytes()).map_err(|e| corrupt("operation", e))?;
    let state: String = r.try_get(1)?;
    let verdict: String = r.try_get(3)?;
    let risk: Option<String> = r.try_get(4)?;
    Ok(OperationRecord {
        operation,
        state: state.parse().map_err(|e: Error| corrupt("state", e))?,
        digest: r.try_get(2)?,
        verdict: serde_json::from_str(&verdict).map_err(|e| corrupt("verdict", e))?,
        risk: risk.map(|r| serde_json::from_str(&r)).transpose().map_err(|e| corrupt("risk", e))?,
        updated_at: ts(r.try_get(5)?)?,
        idempotency_key: r.try_get(6)?,
        request_hash: r.try_get(7)?,
    })
}

impl Store {
    /// Store an operation with its audit events; a released one also goes to the
    /// settlement ledger in the same transaction. An idempotency key the same API key
    /// used before returns the existing operation instead.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_operation(
        &self,
        new: NewOperation,
        events: &[AuditEvent],
        certificate: Option<&Value>,
        now: Timestamp,
    ) -> Result<Inserted> {
        let tx = self.pool.begin().await?;
        self.insert_operation_in(tx, new, events, certificate, now).await
    }

    /// Open the intake transaction for one API key and account: on PostgreSQL it
    /// takes transaction-scoped advisory locks on both, so concurrent requests of
    /// the same key or account (on any instance) read velocity and pending counts
    /// one after another; on SQLite the single connection serialises them anyway.
    /// Reads inside it must use the transaction's connection.
    ///
    /// # Errors
    /// Database errors.
    pub async fn begin_intake(
        &self,
        key_id: &str,
        account: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            let mut names = [format!("countersign:key:{key_id}"), format!("countersign:account:{account}")];
            names.sort(); // one lock order everywhere: no deadlocks
            for name in names {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(tx)
    }

    /// [`Store::insert_operation`] inside a transaction the caller opened (and this
    /// commits).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_operation_in(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        new: NewOperation,
        events: &[AuditEvent],
        certificate: Option<&Value>,
        now: Timestamp,
    ) -> Result<Inserted> {
        let op = &new.operation;
        let Some(digest) = Self::insert_operation_row(&mut tx, &new, now).await? else {
            drop(tx);
            let key_id = match &op.initiator {
                countersign_core::Initiator::ApiKey { key_id, .. } => Some(key_id.as_str()),
                countersign_core::Initiator::Approver { .. } => None,
            };
            if let (Some(k), Some(i)) = (key_id, new.idempotency_key.as_deref())
                && let Some(existing) = self.operation_by_idempotency(k, i).await?
            {
                return Ok(Inserted::Existing(existing));
            }
            return Err(Error::internal(format!("operation id {} collided", op.id)));
        };
        if let Some(cert) = certificate {
            self.insert_ledger(&mut tx, op.id.as_str(), cert, now).await?;
        }
        for event in events {
            self.append(&mut tx, event, now).await?;
        }
        self.commit(tx).await?;
        Ok(Inserted::New(OperationRecord {
            operation: new.operation,
            state: new.state,
            digest,
            verdict: new.verdict,
            risk: new.risk,
            updated_at: now,
            idempotency_key: new.idempotency_key,
            request_hash: new.request_hash,
        }))
    }

    /// The operations row of `new` (canonical bytes, digest, indexed columns), inside
    /// the caller's transaction: its digest (hex), or `None` when the id or the key's
    /// idempotency key is already stored. Also used to copy operations in bulk for
    /// the demo's backlog and the scale benchmark (`demo::copy_operation`).
    ///
    /// # Errors
    /// Database errors; the operation cannot be encoded (a bug).
    pub async fn insert_operation_row(
        conn: &mut AnyConnection,
        new: &NewOperation,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let op = &new.operation;
        let canonical_bytes = canonical::encode(op)?;
        let canonical_text = String::from_utf8(canonical_bytes).map_err(Error::internal)?;
        let digest = countersign_core::Digest::of(op)?.to_hex();
        let (key_id, source_ip) = match &op.initiator {
            countersign_core::Initiator::ApiKey { key_id, source_ip, .. } => {
                (Some(key_id.as_str().to_owned()), Some(source_ip.to_string()))
            }
            countersign_core::Initiator::Approver { .. } => (None, None),
        };
        let w = op.withdrawal();
        let verdict = serde_json::to_string(&new.verdict).map_err(Error::internal)?;
        let risk = new.risk.as_ref().map(serde_json::to_string).transpose().map_err(Error::internal)?;
        let r = sqlx::query(
            "INSERT INTO operations (id, state, kind, canonical, digest, api_key_id, account, network, destination, \
             destination_memo, reference_value, source_ip, idempotency_key, request_hash, verdict, risk, created_at, \
             expires_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(op.id.as_str())
        .bind(new.state.as_str())
        .bind(op.kind().as_str())
        .bind(&canonical_text)
        .bind(&digest)
        .bind(key_id.as_deref())
        .bind(w.map(|w| w.account.as_str().to_owned()))
        .bind(w.map(|w| w.network.as_str().to_owned()))
        .bind(w.map(|w| w.destination.address.clone()))
        .bind(w.and_then(|w| w.destination.memo.clone()))
        .bind(w.map(|w| w.reference_value.amount.to_string()))
        .bind(source_ip.as_deref())
        .bind(new.idempotency_key.as_deref())
        .bind(new.request_hash.as_deref())
        .bind(&verdict)
        .bind(risk.as_deref())
        .bind(op.created_at.unix())
        .bind(op.expires_at.unix())
        .bind(now.unix())
        .execute(&mut *conn)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Ok(None),
            r => r.map(|_| Some(digest)).map_err(Error::from),
        }
    }

    /// Move an operation from `from` to `to` exactly once; `false` when it was not in
    /// `from` (someone else moved it first). Releasing also writes the ledger row.
    ///
    /// # Errors
    /// Database errors.
    pub async fn transition(
        &self,
        id: &OperationId,
        from: OpState,
        to: OpState,
        release: Option<&Release<'_>>,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !self.transition_in(&mut tx, id, from, to, release, event, now).await? {
            return Ok(false);
        }
        self.commit(tx).await?;
        Ok(true)
    }

    /// [`Store::transition`] inside the caller's transaction (which commits).
    ///
    /// # Errors
    /// Database errors.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_in(
        &self,
        tx: &mut AnyConnection,
        id: &OperationId,
        from: OpState,
        to: OpState,
        release: Option<&Release<'_>>,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<bool> {
        let moved =
            sqlx::query("UPDATE operations SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
                .bind(to.as_str())
                .bind(now.unix())
                .bind(id.as_str())
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !moved {
            return Ok(false);
        }
        if to == OpState::Released {
            let release = release.ok_or_else(|| Error::internal("release without a certificate refused"))?;
            self.insert_ledger(tx, id.as_str(), release.document, now).await?;
            if let Some(action) = release.action {
                self.apply_effect(tx, action, now).await?;
            }
        }
        self.append(tx, event, now).await?;
        Ok(true)
    }

    /// Lock one operation for the rest of the caller's transaction and read its
    /// state: decisions on it and its transition are serialised (PostgreSQL: the row
    /// lock, on every instance; SQLite: its one connection is held by the
    /// transaction). `None` when there is no such operation.
    ///
    /// # Errors
    /// Database errors.
    pub async fn lock_operation(&self, tx: &mut AnyConnection, id: &str) -> Result<Option<OpState>> {
        let sql = match self.backend {
            Backend::Postgres => "SELECT state FROM operations WHERE id = $1 FOR UPDATE",
            Backend::Sqlite => "SELECT state FROM operations WHERE id = $1",
        };
        let state: Option<String> = sqlx::query_scalar(sql).bind(id).fetch_optional(&mut *tx).await?;
        state.map(|s| s.parse()).transpose()
    }

    /// Apply a released administrative action. Withdrawals change nothing here
    /// (settlement moves the funds). Each effect is audited.
    pub(super) async fn apply_effect(
        &self,
        tx: &mut AnyConnection,
        action: &countersign_core::Action,
        now: Timestamp,
    ) -> Result<()> {
        use countersign_core::Action;
        let event = match action {
            Action::Withdrawal(_) => return Ok(()),
            Action::Unfreeze(u) => {
                let lifted = sqlx::query(
                    "UPDATE key_freeze SET frozen = 0, changed_at = $1, changed_by = 'quorum' \
                     WHERE id = 1 AND frozen = 1 AND changed_at = $2",
                )
                .bind(now.unix())
                .bind(u.freeze_started.unix())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                AuditEvent::new("quorum", if lifted { "freeze.off" } else { "unfreeze.stale" })
                    .detail("freeze_started", u.freeze_started.unix())
            }
            Action::ApproverEnroll(e) => {
                let n = sqlx::query(
                    "UPDATE credentials SET status = 'active' WHERE approver_id = $1 AND id = $2 AND status = 'pending_approval'",
                )
                .bind(e.approver.as_str())
                .bind(&e.credential.credential_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                AuditEvent::new(
                    "quorum",
                    if n == 1 { "credential.activated" } else { "credential.activation_stale" },
                )
                .detail("approver", e.approver.as_str())
                .detail("credential", e.credential.credential_id.as_str())
            }
            Action::ApproverRevoke(r) => {
                self.revoke_in(tx, r.approver.as_str(), r.credential_id.as_deref(), now).await?;
                AuditEvent::new("quorum", "approver.revoked").detail("approver", r.approver.as_str())
            }
            Action::AllowlistAdd(a) => {
                let added =
                    Self::insert_allowlist(tx, &a.account, &a.network, &a.destination, &a.label, now).await?;
                // Listed meanwhile (proposals refuse duplicates; two approved at once):
                // the entry exists, so nothing is lost; recorded, never an error that
                // would roll the release back.
                let event = if added { "allowlist.added" } else { "allowlist.stale" };
                allowlist_event("quorum", event, &a.account, &a.network, &a.destination)
            }
            Action::PolicyUpdate(p) => {
                let current: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM policies").fetch_one(&mut *tx).await?;
                if current.unwrap_or(0) + 1 != i64::from(p.policy.version) {
                    AuditEvent::new("quorum", "policy.stale").detail("version", p.policy.version)
                } else {
                    sqlx::query("INSERT INTO policies (version, document, activated_at) VALUES ($1, $2, $3)")
                        .bind(i64::from(p.policy.version))
                        .bind(serde_json::to_string(&p.policy).map_err(Error::internal)?)
                        .bind(now.unix())
                        .execute(&mut *tx)
                        .await?;
                    AuditEvent::new("quorum", "policy.activated").detail("version", p.policy.version)
                }
            }
            Action::ApiKeyCreate(k) => {
                let record = ApiKeyRecord {
                    id: k.key_id.clone(),
                    owner: k.owner.clone(),
                    label: k.label.clone(),
                    algorithm: k.algorithm,
                    public_key: Some(k.public_key.clone()),
                    hmac_salt: None,
                    scopes: k.scopes.clone(),
                    ip_allowlist: k.ip_allowlist.iter().cloned().collect(),
                    max_reference_value: k.max_reference_value,
                    created_at: now,
                    expires_at: k.expires_at,
                    revoked_at: None,
                    last_used_at: None,
                    last_used_ip: None,
                };
                if self.insert_api_key_in(tx, &record, "quorum", now).await? {
                    return Ok(());
                }
                // The id was taken after the proposal: the approved key is not created
                // under another key's name.
                AuditEvent::new("quorum", "api_key.create_stale").detail("key_id", k.key_id.as_str())
            }
        };
        self.append(tx, &event, now).await.map(|_| ())
    }

    /// Pending operations whose time is up (`expires_at <= now`), oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due_for_expiry(&self, now: Timestamp, limit: i64) -> Result<Vec<(OperationId, String)>> {
        let rows = sqlx::query(
            "SELECT id, digest FROM operations WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now.unix())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok((OperationId::new(id).map_err(|e| corrupt("operation id", e))?, r.try_get(1)?))
            })
            .collect()
    }

    /// One operation.
    ///
    /// # Errors
    /// Database errors; a stored operation that fails strict decoding (tampering).
    pub async fn operation(&self, id: &str) -> Result<Option<OperationRecord>> {
        let row = sqlx::query(concat!("SELECT ", op_columns!(), " FROM operations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| op_from_row(&r)).transpose()
    }

    /// The operation an API key created with an idempotency key.
    ///
    /// # Errors
    /// Database errors.
    pub async fn operation_by_idempotency(
        &self,
        key_id: &str,
        idem: &str,
    ) -> Result<Option<OperationRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            op_columns!(),
            " FROM operations WHERE api_key_id = $1 AND idempotency_key = $2"
        ))
        .bind(key_id)
        .bind(idem)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| op_from_row(&r)).transpose()
    }

    /// A page of operations, newest first, matching the filter.
    ///
    /// # Errors
    /// Database errors.
    pub async fn operations(&self, filter: &OperationFilter, limit: i64) -> Result<Vec<OperationRecord>> {
        let (before_t, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
        let mut sql = String::from(concat!(
            "SELECT ",
            op_columns!(),
            " FROM operations WHERE (created_at, id) < ($1, $2)"
        ));
        let mut next = 3;
        if filter.state.is_some() {
            sql.push_str(&format!(" AND state = ${next}"));
            next += 1;
        }
        if filter.decided {
            sql.push_str(" AND state <> 'pending'");
        }
        if filter.api_key.is_some() {
            sql.push_str(&format!(" AND api_key_id = ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${next}"));
        // Built only from the fixed fragments above; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before_t).bind(before_id);
        if let Some(s) = filter.state {
            q = q.bind(s.as_str());
        }
        if let Some(k) = &filter.api_key {
            q = q.bind(k.clone());
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(op_from_row).collect()
    }
}
