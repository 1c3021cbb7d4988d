//! Tenant data keys: versions, racing inserts, rewrapping, deletion, the
//! cross-tenant listing, isolation, and bytes surviving both backends.

use crate::harness::{Ctx, raw_tx, seed};
use moat_core::TenantId;
use moat_store::StoreError;

pub async fn lifecycle(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    assert_eq!(s.active_tenant_key(&t.id).await.unwrap(), None);
    assert!(s.tenant_keys(&t.id).await.unwrap().is_empty());

    assert!(s.insert_tenant_key(&t.id, 1, &[0, 1, 2, 255], "local").await.unwrap());
    // A racing replica inserting the same version: no error, no change.
    assert!(!s.insert_tenant_key(&t.id, 1, &[9, 9], "local").await.unwrap());
    let v1 = s.active_tenant_key(&t.id).await.unwrap().unwrap();
    assert_eq!((v1.version, v1.wrapped.as_slice(), v1.provider.as_str()), (1, &[0u8, 1, 2, 255][..], "local"));
    assert_eq!(v1.tenant_id, t.id);

    assert!(s.insert_tenant_key(&t.id, 3, &[3], "local").await.unwrap());
    assert!(s.insert_tenant_key(&t.id, 2, &[2], "local").await.unwrap());
    assert_eq!(s.active_tenant_key(&t.id).await.unwrap().unwrap().version, 3);
    let versions: Vec<_> = s.tenant_keys(&t.id).await.unwrap().iter().map(|k| k.version).collect();
    assert_eq!(versions, [1, 2, 3]);

    assert!(matches!(s.insert_tenant_key(&t.id, 0, &[1], "local").await, Err(StoreError::Invalid(_))));
    match s.insert_tenant_key(&TenantId::generate(), 1, &[1], "local").await {
        Err(StoreError::Invalid(m)) => assert_eq!(m, "the tenant does not exist"),
        other => panic!("expected invalid, got {other:?}"),
    }

    // KEK rotation rewraps in place.
    assert!(s.update_tenant_key_wrapping(&t.id, 2, &[20, 21], "kms").await.unwrap());
    assert!(!s.update_tenant_key_wrapping(&t.id, 7, &[1], "kms").await.unwrap());
    let v2 = s.tenant_keys(&t.id).await.unwrap().into_iter().find(|k| k.version == 2).unwrap();
    assert_eq!((v2.wrapped, v2.provider.as_str()), (vec![20, 21], "kms"));

    assert!(s.delete_tenant_key(&t.id, 1).await.unwrap());
    assert!(!s.delete_tenant_key(&t.id, 1).await.unwrap());
    let versions: Vec<_> = s.tenant_keys(&t.id).await.unwrap().iter().map(|k| k.version).collect();
    assert_eq!(versions, [2, 3]);

    // Key material stays out of Debug.
    let debug = format!("{v1:?}");
    assert!(debug.contains("<redacted>") && !debug.contains("[0, 1, 2, 255]"), "{debug}");
}

pub async fn cross_tenant_listing_and_isolation(ctx: Ctx) {
    let s = &ctx.store;
    let (a, _) = seed(s, "tenant-a").await;
    let (b, _) = seed(s, "tenant-b").await;
    let (c, _) = seed(s, "tenant-c").await;
    assert!(s.tenants_with_keys_cross_tenant().await.unwrap().is_empty());
    s.insert_tenant_key(&a.id, 1, &[1], "local").await.unwrap();
    s.insert_tenant_key(&a.id, 2, &[2], "local").await.unwrap();
    s.insert_tenant_key(&c.id, 1, &[3], "local").await.unwrap();
    let mut expected = vec![a.id.clone(), c.id.clone()];
    expected.sort();
    assert_eq!(s.tenants_with_keys_cross_tenant().await.unwrap(), expected);

    // Tenant B sees and touches none of A's keys.
    assert_eq!(s.active_tenant_key(&b.id).await.unwrap(), None);
    assert!(s.tenant_keys(&b.id).await.unwrap().is_empty());
    assert!(!s.update_tenant_key_wrapping(&b.id, 1, &[0], "evil").await.unwrap());
    assert!(!s.delete_tenant_key(&b.id, 1).await.unwrap());
    // B's own version 1 is independent of A's.
    assert!(s.insert_tenant_key(&b.id, 1, &[7], "local").await.unwrap());
    assert_eq!(s.active_tenant_key(&a.id).await.unwrap().unwrap().wrapped, vec![2]);
    assert_eq!(s.tenant_keys(&a.id).await.unwrap()[0].wrapped, vec![1]);
    assert_eq!(s.active_tenant_key(&b.id).await.unwrap().unwrap().wrapped, vec![7]);

    // Deleting a tenant deletes its keys.
    assert!(s.delete_tenant(&c.id).await.unwrap());
    assert_eq!(s.tenants_with_keys_cross_tenant().await.unwrap().len(), 2);
}

/// `Vec<u8>` binds and reads back byte for byte through the Any driver, as
/// `BLOB` on SQLite and `BYTEA` on PostgreSQL, NUL and high bytes included.
pub async fn bytes_round_trip(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    let all: Vec<u8> = (0..=255).rev().chain(0..=255).collect();
    let samples: [(u32, Vec<u8>); 4] = [(1, vec![0, 1, 2, 255]), (2, all.clone()), (3, vec![]), (4, vec![0; 4096])];
    for (version, bytes) in &samples {
        assert!(s.insert_tenant_key(&t.id, *version, bytes, "local").await.unwrap());
    }
    let stored = s.tenant_keys(&t.id).await.unwrap();
    for ((version, bytes), key) in samples.iter().zip(&stored) {
        assert_eq!((key.version, &key.wrapped), (*version, bytes));
    }
    // And the column really holds bytes, not text.
    let mut tx = raw_tx(&ctx).await;
    let raw: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM tenant_keys WHERE tenant_id = $1 AND version = 2")
        .bind(t.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(raw, all);
}
