//! Migrations run at start and are idempotent.

use crate::harness::{Ctx, seed};
use moat_store::Store;

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
