//! The audit trail: append-only, newest first, filters, paging, limits.

use crate::harness::{Ctx, raw_tx, seed};
use moat_core::TenantId;
use moat_store::{AuditEvent, AuditQuery, AuditResult, MAX_AUDIT_LIMIT};

fn event(tenant: Option<&TenantId>, at: i64, action: &str) -> AuditEvent {
    let mut e = AuditEvent::new("agent", action, AuditResult::Ok);
    e.tenant_id = tenant.cloned();
    e.at = at;
    e
}

pub async fn append_only(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    let mut e = event(Some(&t.id), 1_000, "auth.success");
    e.actor_id = Some("key-1".into());
    e.resource = Some("everything".into());
    e.result = AuditResult::Denied;
    e.source_addr = Some("127.0.0.1:5000".into());
    e.request_id = Some("req-1".into());
    e.latency_ms = Some(12);
    e.metadata = serde_json::json!({ "tool": "echo", "n": 1 });
    s.append_audit(&[e.clone()]).await.unwrap();

    for sql in ["UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"] {
        let mut tx = raw_tx(&ctx).await;
        let err = sqlx::query(sql).execute(&mut *tx).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let all = s.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all, vec![e]);
}

pub async fn ordering_and_paging(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    // Out of order, with ties on `at` (broken by id).
    let events: Vec<_> = [5, 1, 3, 3, 3, 2, 4].iter().map(|&at| event(Some(&t.id), at, "mcp.tools/call")).collect();
    s.append_audit(&events).await.unwrap();

    let q = AuditQuery { tenant: Some(t.id.clone()), ..Default::default() };
    let all = s.list_audit(&q).await.unwrap();
    assert_eq!(all.len(), 7);
    let keys: Vec<_> = all.iter().map(|e| (e.at, e.id.clone())).collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(keys, sorted, "newest first, then by id descending");

    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s.list_audit(&AuditQuery { limit: Some(2), before: before.clone(), ..q.clone() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before = page.last().map(|e| (e.at, e.id.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

pub async fn filters_and_tenant_scope(ctx: Ctx) {
    let s = &ctx.store;
    let (a, _) = seed(s, "tenant-a").await;
    let (b, _) = seed(s, "tenant-b").await;
    s.append_audit(&[
        event(Some(&a.id), 10, "auth.success"),
        event(Some(&a.id), 20, "auth.failure"),
        event(Some(&a.id), 30, "key.create"),
        event(Some(&b.id), 40, "auth.success"),
        event(None, 50, "auth.failure"),
    ])
    .await
    .unwrap();

    let list = |q: AuditQuery| async move {
        s.list_audit(&q).await.unwrap().into_iter().map(|e| (e.at, e.action)).collect::<Vec<_>>()
    };
    let of_a = AuditQuery { tenant: Some(a.id.clone()), ..Default::default() };
    assert_eq!(list(of_a.clone()).await.len(), 3);
    assert_eq!(
        list(AuditQuery { action_prefix: Some("auth.".into()), ..of_a.clone() }).await,
        [(20, "auth.failure".to_owned()), (10, "auth.success".to_owned())]
    );
    assert!(list(AuditQuery { action_prefix: Some("AUTH.".into()), ..of_a.clone() }).await.is_empty());
    assert!(list(AuditQuery { action_prefix: Some("auth%".into()), ..of_a.clone() }).await.is_empty());
    assert_eq!(list(AuditQuery { since_ms: Some(20), ..of_a.clone() }).await.len(), 2);

    // Tenant B sees only its own; no tenant (the operator's view) sees all,
    // the tenant-less event included.
    assert_eq!(
        list(AuditQuery { tenant: Some(b.id.clone()), ..Default::default() }).await,
        [(40, "auth.success".to_owned())]
    );
    let everything = list(AuditQuery::default()).await;
    assert_eq!(everything.iter().map(|e| e.0).collect::<Vec<_>>(), [50, 40, 30, 20, 10]);
    let failures =
        s.list_audit(&AuditQuery { action_prefix: Some("auth.f".into()), ..Default::default() }).await.unwrap();
    assert_eq!(failures.iter().map(|e| e.tenant_id.clone()).collect::<Vec<_>>(), [None, Some(a.id.clone())]);
}

pub async fn limits_and_batches(ctx: Ctx) {
    let s = &ctx.store;
    s.append_audit(&[]).await.unwrap();
    let batch: Vec<_> = (0..1005).map(|i| event(None, i, "load")).collect();
    s.append_audit(&batch).await.unwrap();
    assert_eq!(s.list_audit(&AuditQuery::default()).await.unwrap().len(), 100);
    let capped = s.list_audit(&AuditQuery { limit: Some(5000), ..Default::default() }).await.unwrap();
    assert_eq!(capped.len(), MAX_AUDIT_LIMIT as usize);
    assert_eq!(capped[0].at, 1004);
    assert_eq!(s.list_audit(&AuditQuery { limit: Some(0), ..Default::default() }).await.unwrap().len(), 1);

    // A batch is all or nothing: a duplicate id rolls the whole batch back.
    let fresh = event(None, 9_999, "fresh");
    let dup = batch[0].clone();
    assert!(s.append_audit(&[fresh, dup]).await.is_err());
    let newest = s.list_audit(&AuditQuery { limit: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!(newest[0].at, 1004);
}
