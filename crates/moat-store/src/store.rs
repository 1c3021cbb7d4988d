//! The connection pool, migrations, and the per-transaction tenant scope
//! shared by every repository module.

use crate::StoreError;
use moat_core::TenantId;
use serde::de::DeserializeOwned;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Run on every new SQLite connection of the pool. `busy_timeout` first, so
/// that the journal-mode switch waits for a lock instead of failing;
/// `journal_mode = WAL` is a no-op once the file is in WAL mode (and is
/// ignored by in-memory databases).
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA foreign_keys = ON; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL;";

/// A transaction scoped to one tenant (PostgreSQL) or a plain transaction
/// (SQLite).
pub(crate) type Tx = sqlx::Transaction<'static, Any>;

/// Which database the store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A single SQLite file (or `sqlite::memory:` for tests).
    Sqlite,
    /// PostgreSQL with row-level security.
    Postgres,
}

impl Backend {
    /// The backend a URL names, by its scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            // The URL itself is not echoed: it may carry a password.
            Err(StoreError::Invalid("unsupported database URL scheme; expected `sqlite:` or `postgres://`".into()))
        }
    }
}

/// How [`Store::connect_with`] opens the database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Run pending migrations after connecting. Turn off when the URL's user
    /// is the restricted application role on PostgreSQL, which may not
    /// create tables; run [`Store::migrate`] as the owner instead.
    pub migrate: bool,
    /// Upper bound of pooled connections (an in-memory SQLite database always
    /// uses exactly one).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { migrate: true, max_connections: 8 }
    }
}

/// The handle to the database: cheap to clone, shared by every task.
///
/// All reads and writes go through its repository methods (see the modules
/// `tenants`, `users`, `teams`, `keys`, `servers`, `tenant_keys`,
/// `credentials`, `audit`); the pool is not exposed,
/// so no caller can run a tenant query without a tenant.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
}

impl fmt::Debug for Store {
    // The pool's own Debug prints the connect options, URL and password included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `url` (`sqlite://path`, `sqlite::memory:`,
    /// `postgres://user@host/db`) and runs pending migrations.
    ///
    /// A SQLite file is created when missing; every pooled SQLite connection
    /// gets WAL, foreign keys and a 5 s busy timeout.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit options.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let memory = backend == Backend::Sqlite && url.contains(":memory:");
        let url = match backend {
            Backend::Sqlite if !memory && !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };

        let mut pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if memory {
            // Every connection to `:memory:` is a separate database: keep one alive.
            pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect(&url).await?;
        let store = Store { pool, backend };
        if options.migrate {
            store.migrate().await?;
        }
        tracing::debug!(backend = ?store.backend, "store connected");
        Ok(store)
    }

    /// Applies pending migrations; applying them again is a no-op. On
    /// PostgreSQL this must run as the schema owner, and concurrent replicas
    /// serialise on the migrator's advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every pooled connection, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that sees and writes only `tenant`'s rows.
    ///
    /// On PostgreSQL it sets `app.tenant_id` for this transaction only (the
    /// setting ends with it, so a pooled connection never carries it over),
    /// and the RLS policies compare every row against it. On SQLite it is a
    /// plain transaction and the queries' own `tenant_id = $1` filters do the
    /// work; the queries carry that filter on PostgreSQL too.
    pub(crate) async fn tenant_tx(&self, tenant: &TenantId) -> Result<Tx, StoreError> {
        self.scoped_tx(tenant, false).await
    }

    /// [`Self::tenant_tx`] for a transaction that writes. On SQLite it
    /// begins `IMMEDIATE`, taking the write lock up front: a deferred
    /// transaction that reads and then writes cannot wait for the lock
    /// (SQLite refuses the upgrade at once with "database is locked" when
    /// another writer, such as the audit sink, committed in between), whereas
    /// `BEGIN IMMEDIATE` waits for it under `busy_timeout`.
    pub(crate) async fn tenant_write_tx(&self, tenant: &TenantId) -> Result<Tx, StoreError> {
        self.scoped_tx(tenant, true).await
    }

    async fn scoped_tx(&self, tenant: &TenantId, write: bool) -> Result<Tx, StoreError> {
        let mut tx = self.begin(write).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(tenant.as_str()).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Begins a transaction that crosses tenants, for the few named
    /// operations that need it (authentication lookup, boot-time server
    /// listing, the audit sink and the operator's audit view, and listing the
    /// tenants that hold data keys for key rotation). On PostgreSQL
    /// it sets `app.bypass_rls` for this transaction only; nothing else ever
    /// sets it.
    pub(crate) async fn system_tx(&self) -> Result<Tx, StoreError> {
        self.cross_tenant_tx(false).await
    }

    /// [`Self::system_tx`] for a transaction that writes (see
    /// [`Self::tenant_write_tx`]).
    pub(crate) async fn system_write_tx(&self) -> Result<Tx, StoreError> {
        self.cross_tenant_tx(true).await
    }

    async fn cross_tenant_tx(&self, write: bool) -> Result<Tx, StoreError> {
        let mut tx = self.begin(write).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('app.bypass_rls', 'on', true)").execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    async fn begin(&self, write: bool) -> Result<Tx, StoreError> {
        Ok(if write && self.backend == Backend::Sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.pool.begin().await?
        })
    }
}

/// Reads a boolean: `BOOLEAN` on PostgreSQL, `INTEGER` 0/1 on SQLite (the
/// Any driver reports each as it is stored).
pub(crate) fn flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    match row.try_get::<bool, _>(column) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
}

/// Reads a text column into a type with a string form (enums, roles).
pub(crate) fn parsed<T: FromStr>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse().map_err(|_| StoreError::corrupt(column))
}

/// Reads a JSON text column.
pub(crate) fn json<T: DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|_| StoreError::corrupt(column))
}

/// Reads a key version (stored as a 64-bit integer, used as `u32`).
pub(crate) fn version(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(column)?;
    u32::try_from(v).map_err(|_| StoreError::corrupt(column))
}

/// `$first, $first+1, …` for `count` bound values of an `IN (…)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// Serialises a value for a JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("cannot encode JSON: {e}")))
}

/// Refuses a name that [`moat_core::validate_name`] refuses, saying which.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    moat_core::validate_name(name).map_err(|e| StoreError::Invalid(format!("{what} name {e}")))
}

/// A string that names no variant of a store enum.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {}", expected.join(", "))]
pub struct ParseError {
    pub(crate) what: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static [&'static str],
}

/// Gives a fieldless enum `as_str`, `Display` and `FromStr` over fixed texts.
macro_rules! text_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The storage and wire form.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = $crate::ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($crate::ParseError {
                        what: $what,
                        value: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::from_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::from_url("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::from_url("postgresql://u@h/db").unwrap(), Backend::Postgres);
        let err = Backend::from_url("mysql://root:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn every_pooled_sqlite_connection_gets_the_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        assert!(dir.path().join("nested.db").exists());
        // Hold several connections at once so that the pool must open new ones.
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut conn = store.pool.acquire().await.unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.unwrap();
            assert_eq!((fk, busy, mode.as_str()), (1, 5000, "wal"));
            held.push(conn);
        }
    }

    #[tokio::test]
    async fn in_memory_database_keeps_its_schema() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let t = store.create_tenant("mem").await.unwrap();
        assert_eq!(store.tenant(&t.id).await.unwrap().unwrap().name, "mem");
        store.ping().await.unwrap();
        assert!(!format!("{store:?}").contains("memory"));
    }
}
