//! Test databases: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database plus a restricted application role.

use moat_core::{PrincipalKind, Role};
use moat_store::{Backend, NewApiKey, NewUser, Store, StoreOptions, TenantRecord, UserRecord};
use sqlx::AnyPool;
use std::future::Future;

/// What a test gets.
pub struct Ctx {
    /// The store as the application uses it (on PostgreSQL: connected as a
    /// role that is neither superuser nor owner).
    pub store: Store,
    /// Raw access as the schema owner, for checks the API cannot express.
    pub raw: AnyPool,
    /// The owner's URL (runs migrations).
    pub owner_url: String,
    /// The application role's URL.
    pub app_url: String,
    pub backend: Backend,
    // Keeps the SQLite directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

async fn raw_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(2).connect(url).await.unwrap()
}

/// Runs `test` against a new SQLite database.
pub async fn sqlite<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/moat.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    let raw = raw_pool(&url).await;
    test(Ctx { store, raw, owner_url: url.clone(), app_url: url, backend: Backend::Sqlite, _dir: Some(dir) }).await;
}

/// Runs `test` against a fresh PostgreSQL database, or prints why not.
pub async fn postgres<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(admin_url) = std::env::var("MOAT_TEST_DATABASE_URL") else {
        println!("skipped: MOAT_TEST_DATABASE_URL not set");
        return;
    };
    let suffix = moat_core::new_id().replace('-', "");
    let db = format!("moat_test_{suffix}");
    let role = format!("moat_app_{suffix}");
    let admin = raw_pool(&admin_url).await;
    sqlx::raw_sql(&format!("CREATE DATABASE {db}")).execute(&admin).await.unwrap();
    sqlx::raw_sql(&format!("CREATE ROLE {role} LOGIN PASSWORD 'app' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"))
        .execute(&admin)
        .await
        .unwrap();

    // Spawned so that a panicking test still reaches the clean-up below.
    let outcome = {
        let owner_url = pg_url(&admin_url, &db, None);
        let app_url = pg_url(&admin_url, &db, Some((&role, "app")));
        let role = role.clone();
        tokio::spawn(async move {
            let owner = Store::connect(&owner_url).await.unwrap();
            owner.close().await;
            let raw = raw_pool(&owner_url).await;
            sqlx::raw_sql(&format!(
                "GRANT USAGE ON SCHEMA public TO {role}; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users, api_keys, servers, \
                 teams, team_members, tenant_keys, credentials, approvals, tool_pins, \
                 firewall_policies, firewall_patterns, tenant_secrets, signing_keys, tenant_auth, \
                 oauth_clients, oauth_pending, oauth_grants, oauth_codes, oauth_refresh_tokens, \
                 oauth_revoked_tokens, oauth_consents, browser_sessions TO {role}; \
                 GRANT SELECT, INSERT ON audit_events TO {role};"
            ))
            .execute(&raw)
            .await
            .unwrap();
            let options = StoreOptions { migrate: false, ..StoreOptions::default() };
            let store = Store::connect_with(&app_url, options).await.unwrap();
            let ctx = Ctx {
                store: store.clone(),
                raw: raw.clone(),
                owner_url,
                app_url,
                backend: Backend::Postgres,
                _dir: None,
            };
            test(ctx).await;
            store.close().await;
            raw.close().await;
        })
        .await
    };

    let cleanup = async {
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&admin).await?;
        sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {role}")).execute(&admin).await
    };
    if let Err(e) = cleanup.await {
        eprintln!("warning: could not drop test database {db} / role {role}: {e}");
    }
    admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `url` with another database and, optionally, another user and password.
pub fn pg_url(url: &str, db: &str, user: Option<(&str, &str)>) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = base.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let authority = match user {
        Some((name, password)) => {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{name}:{password}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}/{db}{query}")
}

/// A tenant with one owner user.
pub async fn seed(store: &Store, tenant: &str) -> (TenantRecord, UserRecord) {
    let t = store.create_tenant(tenant).await.unwrap();
    let u = store
        .create_user(
            &t.id,
            NewUser { name: "owner".into(), email: None, kind: PrincipalKind::Human, role: Role::Owner },
        )
        .await
        .unwrap();
    (t, u)
}

/// A key for `user` with a recognisable fake hash.
pub fn new_key(user: &UserRecord, name: &str, public_id: &str) -> NewApiKey {
    NewApiKey {
        user_id: user.id.clone(),
        name: name.into(),
        public_id: public_id.into(),
        secret_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$SALT{public_id}$HASH{public_id}"),
        role: Role::Admin,
        kind: PrincipalKind::Agent,
        operator: false,
        expires_at: None,
    }
}

/// A raw owner transaction that sees every tenant's rows (the owner is
/// subject to the forced policies unless it is a superuser).
pub async fn raw_tx(ctx: &Ctx) -> sqlx::Transaction<'static, sqlx::Any> {
    let mut tx = ctx.raw.begin().await.unwrap();
    if ctx.backend == Backend::Postgres {
        sqlx::query("SELECT set_config('app.bypass_rls', 'on', true)").execute(&mut *tx).await.unwrap();
    }
    tx
}

/// Rows of `table` belonging to `tenant`, counted as the owner.
pub async fn count_rows(ctx: &Ctx, table: &str, tenant: &str) -> i64 {
    let mut tx = raw_tx(ctx).await;
    let n = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1"))
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    n
}

#[test]
fn pg_url_rewrites_database_and_user() {
    assert_eq!(pg_url("postgres://postgres@127.0.0.1:5432/test", "x", None), "postgres://postgres@127.0.0.1:5432/x");
    assert_eq!(
        pg_url("postgres://a:b@h/test?sslmode=disable", "x", Some(("u", "p"))),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(pg_url("postgres://h", "x", Some(("u", "p"))), "postgres://u:p@h/x");
}
