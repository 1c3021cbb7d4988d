//! PostgreSQL only: the policies themselves, seen by the application role
//! through raw SQL (superusers and owners would bypass them).

use crate::harness::{Ctx, new_key, seed};
use moat_core::{CredentialId, CredentialKind, ScopeTier};
use moat_store::{AuditEvent, AuditResult, NewCredential, NewServer};

pub async fn policies(ctx: Ctx) {
    let s = &ctx.store;
    let (a, a_user) = seed(s, "tenant-a").await;
    let (b, b_user) = seed(s, "tenant-b").await;
    s.insert_api_key(&a.id, new_key(&a_user, "one", "puba1")).await.unwrap();
    s.insert_api_key(&a.id, new_key(&a_user, "two", "puba2")).await.unwrap();
    s.insert_api_key(&b.id, new_key(&b_user, "one", "pubb1")).await.unwrap();
    s.create_server(&b.id, NewServer::stdio("x", vec!["x".into()])).await.unwrap();
    let team = s.create_team(&a.id, "core").await.unwrap();
    s.add_team_member(&a.id, &team.id, &a_user.id).await.unwrap();
    s.insert_tenant_key(&a.id, 1, &[1, 2], "local").await.unwrap();
    s.insert_tenant_key(&b.id, 1, &[3, 4], "local").await.unwrap();
    let a_server = s.create_server(&a.id, NewServer::stdio("y", vec!["y".into()])).await.unwrap();
    let cred = CredentialId::generate();
    let new = NewCredential {
        id: &cred,
        tier: ScopeTier::Org,
        user_id: None,
        team_id: None,
        scope_id: a.id.as_str(),
        server_id: &a_server.id,
        kind: CredentialKind::Env,
        target: "TOKEN",
        slot: "env:TOKEN",
        key_version: 1,
        sealed: &[0, 255],
        actor: None,
    };
    s.insert_credential(&a.id, &new).await.unwrap();
    let mut e = AuditEvent::new("human", "key.create", AuditResult::Ok);
    e.tenant_id = Some(a.id.clone());
    s.append_audit(&[e]).await.unwrap();

    sqlx::any::install_default_drivers();
    let app = sqlx::AnyPool::connect(&ctx.app_url).await.unwrap();
    // The role really is neither superuser, nor RLS-exempt, nor owner.
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&app)
            .await
            .unwrap();
    let owns: bool =
        sqlx::query_scalar("SELECT tableowner::text = current_user::text FROM pg_tables WHERE tablename = 'api_keys'")
            .fetch_one(&app)
            .await
            .unwrap();
    assert!(!superuser && !bypass && !owns);

    // No tenant set: no rows in any tenant-owned table.
    for table in [
        "users",
        "api_keys",
        "servers",
        "audit_events",
        "teams",
        "team_members",
        "tenant_keys",
        "credentials",
        "approvals",
        "tool_pins",
        "firewall_policies",
        "firewall_patterns",
        "tenant_secrets",
        "signing_keys",
        "tenant_auth",
        "oauth_clients",
        "oauth_pending",
        "oauth_grants",
        "oauth_codes",
        "oauth_refresh_tokens",
        "oauth_revoked_tokens",
        "oauth_consents",
        "browser_sessions",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&app).await.unwrap();
        assert_eq!(n, 0, "{table} without app.tenant_id");
    }

    // Tenant A set: only A's rows, whatever the query asks for.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(a.id.as_str()).execute(&mut *tx).await.unwrap();
    let tenants: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM api_keys").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(tenants, [a.id.as_str().to_owned()]);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 2);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 1, "B's server stays hidden");
    for (table, expected) in [("teams", 1), ("team_members", 1), ("tenant_keys", 1), ("credentials", 1)] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *tx).await.unwrap();
        assert_eq!(n, expected, "{table} with tenant A set");
    }
    let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM tenant_keys").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(wrapped, [1, 2], "only A's data key");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(n, 1);
    // Writing into another tenant is refused by the policy's WITH CHECK.
    let forged = sqlx::query(
        "INSERT INTO servers (id, tenant_id, name, transport, command, source, created_at, updated_at) \
         VALUES ('forged', $1, 'forged', 'stdio', '[\"x\"]', 'api', 0, 0)",
    )
    .bind(b.id.as_str())
    .execute(&mut *tx)
    .await;
    assert!(forged.unwrap_err().to_string().contains("row-level security"));
    tx.rollback().await.unwrap();

    // Nor can a transaction scoped to A plant a data key in B.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(a.id.as_str()).execute(&mut *tx).await.unwrap();
    let forged = sqlx::query(
        "INSERT INTO tenant_keys (tenant_id, version, wrapped, provider, created_at) VALUES ($1, 9, $2, 'x', 0)",
    )
    .bind(b.id.as_str())
    .bind(vec![0u8])
    .execute(&mut *tx)
    .await;
    assert!(forged.unwrap_err().to_string().contains("row-level security"));
    tx.rollback().await.unwrap();

    // The setting was transaction-local: the pooled connection forgot it.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&app).await.unwrap();
    assert_eq!(n, 0);

    // The store's cross-tenant authentication lookup works as this role.
    let auth = s.api_key_for_auth("pubb1").await.unwrap().unwrap();
    assert_eq!((auth.tenant_id, auth.tenant_name.as_str()), (b.id.clone(), "tenant-b"));
    assert_eq!(s.list_all_servers().await.unwrap().len(), 2);
    let mut with_keys = vec![a.id.clone(), b.id.clone()];
    with_keys.sort();
    assert_eq!(s.tenants_with_keys_cross_tenant().await.unwrap(), with_keys);
    app.close().await;
}
