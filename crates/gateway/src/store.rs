//! Storage: SQLite (embedded, one node) and PostgreSQL (several gateway instances).
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the few dialect
//! differences are in [`Backend`]. Rules every method keeps:
//! - A change to an operation and its audit entries commit in one transaction, before
//!   the HTTP answer: nothing is acknowledged that is not durable.
//! - State changes are conditional (`UPDATE … WHERE state = 'pending'`), so a
//!   transition happens exactly once even when instances race.
//! - Audit appends come last in a transaction and lock `audit_head`, so appends are
//!   serialised and lock order is always operation rows first, then the head.
//! - Placeholders are `$1, $2, …` in ascending order of first use (SQLite numbers
//!   `$N` parameters by first appearance).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use countersign_core::audit::{AuditEntry, Checkpoint, HashedEntry, SignedCheckpoint};
use countersign_core::canonical;
use countersign_core::id::{AccountId, ApiKeyId, ApproverId, NetworkId, OperationId};
use countersign_core::operation::{Destination, Operation, Scope, SigningAlgorithm};
use countersign_core::policy::{DestinationStatus, Policy, RecentTransfer};
use countersign_core::risk::{BASELINE_SAMPLES, PastWithdrawal};
use countersign_core::{Amount, Timestamp};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::config::DatabaseUrl;
use crate::error::{Error, Result};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, WAL journal, one writer connection.
    Sqlite,
    /// A shared server; appends lock `audit_head` with `FOR UPDATE`.
    Postgres,
}

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

/// An API key as stored. Holds no secret: Ed25519 keys are public, HMAC secrets are
/// derived from the gateway's master key and the salt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// Id.
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
    /// Scopes.
    pub scopes: BTreeSet<Scope>,
    /// Allowed source CIDR blocks; empty allows none.
    pub ip_allowlist: Vec<String>,
    /// Largest reference value one request may move (deny above).
    pub max_reference_value: Option<Amount>,
    /// Created.
    pub created_at: Timestamp,
    /// Stops working at.
    pub expires_at: Option<Timestamp>,
    /// Revoked at.
    pub revoked_at: Option<Timestamp>,
    /// Last authenticated use.
    pub last_used_at: Option<Timestamp>,
    /// Address of the last authenticated use.
    pub last_used_ip: Option<String>,
}

/// An operation as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationRecord {
    /// The operation (decoded strictly from the stored canonical bytes).
    pub operation: Operation,
    /// Its state.
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
    /// The operation.
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

/// An event for the audit chain.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who caused it.
    pub actor: String,
    /// What happened.
    pub event: &'static str,
    /// The operation concerned and its digest (hex).
    pub operation: Option<(OperationId, String)>,
    /// Details: strings, integers, booleans.
    pub details: Map<String, Value>,
}

impl AuditEvent {
    /// An event without an operation.
    pub fn new(actor: impl Into<String>, event: &'static str) -> Self {
        AuditEvent { actor: actor.into(), event, operation: None, details: Map::new() }
    }

    /// Attach the operation.
    #[must_use]
    pub fn operation(mut self, id: &OperationId, digest: &str) -> Self {
        self.operation = Some((id.clone(), digest.to_owned()));
        self
    }

    /// Add a detail.
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
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

/// A ledger row waiting for webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The operation.
    pub operation_id: String,
    /// The release document.
    pub certificate: Value,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (Unix seconds), as read.
    pub next_attempt_at: i64,
}

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

/// A row from the settlement ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    /// The operation.
    pub operation_id: String,
    /// When it was released.
    pub released_at: Timestamp,
    /// What settlement receives: the canonical operation and its evidence.
    pub certificate: Value,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Counts commits, so live event streams wake after each. A watch channel, not a
    /// `Notify`: a commit that lands while a stream is still reading is not lost (the
    /// stream sees the changed value when it next waits).
    commits: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

fn ts(secs: i64) -> Result<Timestamp> {
    Timestamp::from_unix(secs).ok_or_else(|| Error::internal(format!("stored time {secs} out of range")))
}

fn opt_ts(secs: Option<i64>) -> Result<Option<Timestamp>> {
    secs.map(ts).transpose()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored {what} does not decode: {e}"))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "approvers", include_str!("../migrations/0002_approvers.sql")),
    (3, "destination_memo", include_str!("../migrations/0003_destination_memo.sql")),
];

impl Store {
    /// Connect (creating a SQLite file if needed) and bring the schema up to date.
    ///
    /// # Errors
    /// [`Error::unavailable`] when the database cannot be reached.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.is_postgres() { Backend::Postgres } else { Backend::Sqlite };
        let options = match backend {
            // One connection: SQLite has one writer anyway, and a single connection
            // makes read-then-write transactions (the audit head) serial without
            // SQLITE_BUSY upgrades. WAL keeps the file consistent across crashes;
            // synchronous=FULL makes every commit durable before we answer.
            Backend::Sqlite => AnyPoolOptions::new().max_connections(1).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        }
        .acquire_timeout(Duration::from_secs(5));
        if backend == Backend::Sqlite
            && let Some(path) =
                url.expose().strip_prefix("sqlite://").map(|p| p.split('?').next().unwrap_or(p))
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::unavailable(format!("create {}: {e}", dir.display())))?;
        }
        let pool =
            options.connect(url.expose()).await.map_err(|e| Error::unavailable(format!("connect: {e}")))?;
        let store = Store { pool, backend, commits: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)) };
        store.migrate().await?;
        Ok(store)
    }

    /// Which backend this is.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Commit a transaction and wake the live event streams.
    ///
    /// # Errors
    /// Database errors.
    pub async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
        tx.commit().await?;
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// A receiver that changes after every commit: a live event stream marks it seen
    /// before reading and waits on it after an empty read.
    #[must_use]
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Audit entries after `seq`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_after(&self, seq: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT entry FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let e: String = r.try_get(0)?;
                serde_json::from_str(&e).map_err(|e| corrupt("audit entry", e))
            })
            .collect()
    }

    /// The last audit sequence number.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_head(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?)
    }

    /// The connection pool, for the gateway's other storage modules.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Append an audit event inside a caller's transaction (last, as everywhere).
    ///
    /// # Errors
    /// Database errors.
    pub async fn append_in(&self, tx: &mut AnyConnection, event: &AuditEvent, now: Timestamp) -> Result<()> {
        self.append(tx, event, now).await.map(|_| ())
    }

    /// Apply missing migrations, each in its own transaction. On PostgreSQL an
    /// advisory lock keeps two instances from migrating at once.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7242001)").execute(&mut *conn).await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7242001)").execute(&mut *conn).await?;
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut AnyConnection) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        for (version, description, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            // Comments are stripped first (they may contain ';'); the migration files
            // use no '--' inside string literals.
            let without_comments: String =
                sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            for statement in without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                // Compiled-in migration text, not user input.
                sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)")
                .bind(*version)
                .bind(*description)
                .execute(&mut *tx)
                .await?;
            self.commit(tx).await?;
        }
        Ok(())
    }

    /// A cheap round trip, for `/healthz`.
    ///
    /// # Errors
    /// [`Error::unavailable`] when the database does not answer.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- policy -------------------------------------------------------------------------

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

    // ---- API keys -----------------------------------------------------------------------

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

    // ---- nonces -------------------------------------------------------------------------

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

    // ---- freeze -------------------------------------------------------------------------

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

    // ---- allowlist ----------------------------------------------------------------------

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
    async fn insert_allowlist(
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

    // ---- operations ---------------------------------------------------------------------

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

    async fn insert_ledger(
        &self,
        tx: &mut AnyConnection,
        op_id: &str,
        certificate: &Value,
        now: Timestamp,
    ) -> Result<()> {
        let cert = serde_json::to_string(certificate).map_err(Error::internal)?;
        sqlx::query(
            "INSERT INTO settlement_ledger (operation_id, released_at, certificate) VALUES ($1, $2, $3)",
        )
        .bind(op_id)
        .bind(now.unix())
        .bind(&cert)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::internal(format!("operation {op_id} was about to be released twice; refused"))
            } else {
                e.into()
            }
        })?;
        Ok(())
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

    /// Apply a released administrative action. Withdrawals change nothing here
    /// (settlement moves the funds). Each effect is audited.
    async fn apply_effect(
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

    /// Ledger rows not yet delivered whose next attempt is due.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due_deliveries(&self, now: Timestamp, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT operation_id, certificate, attempts, next_attempt_at FROM settlement_ledger \
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY released_at, operation_id LIMIT $2",
        )
        .bind(now.unix())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cert: String = r.try_get(1)?;
                Ok(Delivery {
                    operation_id: r.try_get(0)?,
                    certificate: serde_json::from_str(&cert).map_err(|e| corrupt("certificate", e))?,
                    attempts: r.try_get(2)?,
                    next_attempt_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Take a delivery for this instance until `lease`; `false` when another instance
    /// took it first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim_delivery(
        &self,
        op_id: &str,
        seen_next_attempt: i64,
        lease: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE settlement_ledger SET next_attempt_at = $1 \
             WHERE operation_id = $2 AND next_attempt_at = $3 AND delivered_at IS NULL",
        )
        .bind(lease.unix())
        .bind(op_id)
        .bind(seen_next_attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Record a delivery settlement acknowledged.
    ///
    /// # Errors
    /// Database errors.
    pub async fn mark_delivered(
        &self,
        op_id: &str,
        attempts: i64,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE settlement_ledger SET delivered_at = $1, attempts = $2, last_error = NULL WHERE operation_id = $3",
        )
        .bind(now.unix())
        .bind(attempts)
        .bind(op_id)
        .execute(&mut *tx)
        .await?;
        self.append(&mut tx, event, now).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Record a failed attempt and when to try again.
    ///
    /// # Errors
    /// Database errors.
    pub async fn mark_delivery_failed(
        &self,
        op_id: &str,
        attempts: i64,
        next: Timestamp,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE settlement_ledger SET attempts = $1, next_attempt_at = $2, last_error = $3 WHERE operation_id = $4",
        )
        .bind(attempts)
        .bind(next.unix())
        .bind(error)
        .bind(op_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The settlement ledger, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn ledger(&self) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query("SELECT operation_id, released_at, certificate FROM settlement_ledger ORDER BY released_at, operation_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let cert: String = r.try_get(2)?;
                Ok(LedgerEntry {
                    operation_id: r.try_get(0)?,
                    released_at: ts(r.try_get(1)?)?,
                    certificate: serde_json::from_str(&cert).map_err(|e| corrupt("certificate", e))?,
                })
            })
            .collect()
    }

    // ---- audit chain --------------------------------------------------------------------

    /// Append one event on its own (security events without a state change, such as
    /// a refused signature).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(&self, event: &AuditEvent, now: Timestamp) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        self.append(&mut tx, event, now).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn append(
        &self,
        tx: &mut AnyConnection,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<HashedEntry> {
        let head_sql = match self.backend {
            Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
        };
        let head = sqlx::query(head_sql).fetch_one(&mut *tx).await?;
        let seq: i64 = head.try_get(0)?;
        let prev: String = head.try_get(1)?;
        let entry = AuditEntry {
            seq: u64::try_from(seq + 1).map_err(Error::internal)?,
            time: now,
            actor: event.actor.clone(),
            event: event.event.to_owned(),
            operation: event.operation.as_ref().map(|(id, _)| id.as_str().to_owned()),
            digest: event.operation.as_ref().map(|(_, d)| d.clone()),
            details: event.details.clone(),
            prev,
        };
        let hash = entry.hash().map_err(Error::internal)?;
        let json = serde_json::to_string(&entry).map_err(Error::internal)?;
        sqlx::query("INSERT INTO audit_log (seq, entry, hash) VALUES ($1, $2, $3)")
            .bind(seq + 1)
            .bind(&json)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq + 1)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        Ok(HashedEntry { entry, hash })
    }

    /// Sign a checkpoint of the current head when `every` entries have passed since
    /// the last one (or `every == 0`: always, if there is anything new).
    ///
    /// # Errors
    /// Database errors.
    pub async fn checkpoint_if_due(
        &self,
        key: &SigningKey,
        every: u64,
        now: Timestamp,
    ) -> Result<Option<u64>> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        let seq: i64 = head.try_get(0)?;
        let hash: String = head.try_get(1)?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints").fetch_one(&self.pool).await?;
        let last = last.unwrap_or(0);
        let due = seq > last && u64::try_from(seq - last).unwrap_or(0) >= every.max(1);
        if !due {
            return Ok(None);
        }
        let seq_u = u64::try_from(seq).map_err(Error::internal)?;
        let signed = SignedCheckpoint::sign(Checkpoint { seq: seq_u, hash, time: now }, key)
            .map_err(Error::internal)?;
        let doc = serde_json::to_string(&signed).map_err(Error::internal)?;
        let r = sqlx::query("INSERT INTO audit_checkpoints (seq, document) VALUES ($1, $2)")
            .bind(seq)
            .bind(&doc)
            .execute(&self.pool)
            .await;
        match r {
            Err(e) if is_unique_violation(&e) => Ok(None),
            r => {
                r?;
                Ok(Some(seq_u))
            }
        }
    }

    /// The whole chain as JSON lines, each checkpoint right after the entry it covers.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_export(&self) -> Result<String> {
        let entries =
            sqlx::query("SELECT seq, entry, hash FROM audit_log ORDER BY seq").fetch_all(&self.pool).await?;
        let checkpoints = sqlx::query("SELECT seq, document FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut cps = checkpoints.iter().peekable();
        let mut out = String::new();
        for r in &entries {
            let seq: i64 = r.try_get(0)?;
            let entry: String = r.try_get(1)?;
            let hash: String = r.try_get(2)?;
            let entry: AuditEntry = serde_json::from_str(&entry).map_err(|e| corrupt("audit entry", e))?;
            let line = serde_json::to_string(&HashedEntry { entry, hash }).map_err(Error::internal)?;
            out.push_str(&line);
            out.push('\n');
            while let Some(cp) = cps.peek() {
                if cp.try_get::<i64, _>(0)? != seq {
                    break;
                }
                let doc: String = cp.try_get(1)?;
                out.push_str(&doc);
                out.push('\n');
                cps.next();
            }
        }
        Ok(out)
    }

    /// Every audit entry, oldest first (for tests and the invariant checker).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_events(&self) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT entry FROM audit_log ORDER BY seq").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let e: String = r.try_get(0)?;
                serde_json::from_str(&e).map_err(|e| corrupt("audit entry", e))
            })
            .collect()
    }
}

/// The audit event of an allowlist change, naming the full destination.
fn allowlist_event(
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

fn algorithm_str(a: SigningAlgorithm) -> &'static str {
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
use api_key_columns;

fn api_key_from_row(r: &AnyRow) -> Result<ApiKeyRecord> {
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

macro_rules! op_columns {
    () => {
        "canonical, state, digest, verdict, risk, updated_at, idempotency_key, request_hash"
    };
}
use op_columns;

fn amount_column(r: &AnyRow, i: usize) -> Result<Amount> {
    let value: String = r.try_get(i)?;
    Amount::parse(&value).map_err(|e| corrupt("reference value", e))
}

fn op_from_row(r: &AnyRow) -> Result<OperationRecord> {
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
