//! Tenants: creation, lookup, uniqueness, deletion.

use crate::harness::{Ctx, count_rows, new_key, seed};
use moat_store::{AuditEvent, AuditQuery, AuditResult, NewServer, StoreError};

pub async fn crud(ctx: Ctx) {
    let s = &ctx.store;
    let acme = s.create_tenant("acme").await.unwrap();
    assert_eq!(s.tenant(&acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(s.tenant_by_name("acme").await.unwrap(), Some(acme.clone()));
    assert_eq!(s.tenant_by_name("nope").await.unwrap(), None);

    match s.create_tenant("acme").await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "a tenant named `acme` already exists"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(s.create_tenant("Not_Valid").await, Err(StoreError::Invalid(_))));

    let beta = s.create_tenant("beta").await.unwrap();
    let names: Vec<_> = s.list_tenants().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["acme", "beta"]);

    assert!(s.delete_tenant(&beta.id).await.unwrap());
    assert!(!s.delete_tenant(&beta.id).await.unwrap());
    assert_eq!(s.tenant(&beta.id).await.unwrap(), None);
    assert_eq!(s.list_tenants().await.unwrap().len(), 1);
}

pub async fn delete_cascades_but_keeps_audit(ctx: Ctx) {
    let s = &ctx.store;
    let (gone, user) = seed(s, "gone").await;
    let (kept, kept_user) = seed(s, "kept").await;
    s.insert_api_key(&gone.id, new_key(&user, "laptop", "pubgone")).await.unwrap();
    s.insert_api_key(&kept.id, new_key(&kept_user, "laptop", "pubkept")).await.unwrap();
    s.create_server(&gone.id, NewServer::stdio("everything", vec!["npx".into()])).await.unwrap();
    let mut event = AuditEvent::new("human", "key.create", AuditResult::Ok);
    event.tenant_id = Some(gone.id.clone());
    s.append_audit(&[event.clone()]).await.unwrap();
    for table in ["users", "api_keys", "servers", "audit_events"] {
        assert_eq!(count_rows(&ctx, table, gone.id.as_str()).await, 1, "{table} before");
    }

    assert!(s.delete_tenant(&gone.id).await.unwrap());

    for table in ["users", "api_keys", "servers"] {
        assert_eq!(count_rows(&ctx, table, gone.id.as_str()).await, 0, "{table} after");
    }
    assert!(s.api_key_for_auth("pubgone").await.unwrap().is_none());
    assert!(s.list_users(&gone.id).await.unwrap().is_empty());
    assert!(s.list_servers(&gone.id).await.unwrap().is_empty());
    // The trail survives its tenant; the other tenant is untouched.
    let trail = s.list_audit(&AuditQuery { tenant: Some(gone.id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(trail, vec![event]);
    assert_eq!(count_rows(&ctx, "audit_events", gone.id.as_str()).await, 1);
    assert!(s.api_key_for_auth("pubkept").await.unwrap().is_some());
    assert_eq!(s.list_users(&kept.id).await.unwrap().len(), 1);
}
