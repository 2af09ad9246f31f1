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

mod allowlist;
mod api_keys;
mod audit;
mod authority;
mod ceremonies;
mod decisions;
mod deliveries;
mod intake;
mod operations;
mod people;
mod policy;
mod raw;

pub use api_keys::ApiKeyRecord;
pub use audit::AuditEvent;
pub use authority::GenesisRow;
pub use ceremonies::{CeremonyRow, NewCeremony, SessionRow};
pub use decisions::{DecisionWithKey, NewDecision, RecordedDecision};
pub use deliveries::{Delivery, LedgerEntry};
pub use operations::{Inserted, NewOperation, OpState, OperationFilter, OperationRecord, Release};
pub use people::{Approver, CredentialListing, CredentialRow, EnrollmentCode, NewApprover, NewCredential};
pub use policy::FreezeState;
pub use raw::{RawApprover, RawCredential, RawDecision, RawLedgerRow, RawOperation};

use std::time::Duration;

use countersign_core::Timestamp;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};

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
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (2, "approvers", include_str!("../../migrations/0002_approvers.sql")),
    (3, "destination_memo", include_str!("../../migrations/0003_destination_memo.sql")),
    (4, "authority", include_str!("../../migrations/0004_authority.sql")),
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

    /// The raw pool: for tests that tamper with the database as an attacker would.
    /// The gateway's own modules go through `Store` methods (a test checks that no
    /// SQL is written outside `store/`).
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begin a transaction, for a change that spans several `*_in` methods (and an
    /// audit append) and commits with [`Store::commit`].
    ///
    /// # Errors
    /// Database errors.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin().await?)
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
}
