//! Migrations run at start and are idempotent.

use crate::harness::{Ctx, pg_url, seed};
use moat_store::{Store, StoreOptions};

pub async fn idempotent(ctx: Ctx) {
    let (t, _) = seed(&ctx.store, "acme").await;
    // Start again (migrations run again), and migrate once more explicitly.
    let again = Store::connect(&ctx.owner_url).await.unwrap();
    again.migrate().await.unwrap();
    again.migrate().await.unwrap();
    again.ping().await.unwrap();
    assert_eq!(again.tenant_by_name("acme").await.unwrap().map(|r| r.id), Some(t.id));
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&ctx.raw).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
    assert_eq!(applied, i64::try_from(files).unwrap());
    assert_eq!(ctx.store.backend(), again.backend());
    again.close().await;
}

/// PostgreSQL only: a deployment created at schema v1, whose operator granted
/// the application role the v1 tables, keeps working after the upgrade:
/// migration 0002 grants that role the new tables (and nobody else).
pub async fn upgrade_grants_new_tables(ctx: Ctx) {
    let db: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&ctx.raw).await.unwrap();
    let app = sqlx::AnyPool::connect(&ctx.app_url).await.unwrap();
    let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&app).await.unwrap();
    app.close().await;
    let upgraded = format!("{db}_up");
    sqlx::raw_sql(&format!("CREATE DATABASE {upgraded}")).execute(&ctx.raw).await.unwrap();
    let owner_url = pg_url(&ctx.owner_url, &upgraded, None);
    let app_url = pg_url(&ctx.app_url, &upgraded, Some((&role, "app")));

    let outcome = tokio::spawn(async move {
        // Schema v1 only, as an older release left it, with the v1 grants.
        let v1 = tempfile::tempdir().unwrap();
        let first = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/0001_init.sql");
        std::fs::copy(first, v1.path().join("0001_init.sql")).unwrap();
        let owner = sqlx::AnyPool::connect(&owner_url).await.unwrap();
        sqlx::migrate::Migrator::new(v1.path()).await.unwrap().run(&owner).await.unwrap();
        sqlx::raw_sql(&format!(
            "GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users, api_keys, servers TO {role}; \
             GRANT SELECT, INSERT ON audit_events TO {role};"
        ))
        .execute(&owner)
        .await
        .unwrap();

        // The new release migrates as the owner…
        Store::connect(&owner_url).await.unwrap().close().await;
        for table in ["teams", "team_members", "tenant_keys", "credentials"] {
            let granted: bool =
                sqlx::query_scalar("SELECT has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE')")
                    .bind(role.as_str())
                    .bind(table)
                    .fetch_one(&owner)
                    .await
                    .unwrap();
            assert!(granted, "{table}");
            let public: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a \
                 WHERE c.oid = $1::regclass AND a.grantee = 0",
            )
            .bind(table)
            .fetch_one(&owner)
            .await
            .unwrap();
            assert_eq!(public, 0, "{table} is not granted to PUBLIC");
        }
        owner.close().await;

        // …and the application role uses the vault tables at once.
        let options = StoreOptions { migrate: false, ..StoreOptions::default() };
        let store = Store::connect_with(&app_url, options).await.unwrap();
        let (t, user) = seed(&store, "acme").await;
        assert!(store.insert_tenant_key(&t.id, 1, &[1], "local").await.unwrap());
        let team = store.create_team(&t.id, "core").await.unwrap();
        assert!(store.add_team_member(&t.id, &team.id, &user.id).await.unwrap());
        store.close().await;
    })
    .await;

    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {upgraded} WITH (FORCE)")).execute(&ctx.raw).await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
