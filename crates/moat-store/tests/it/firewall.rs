//! The firewall's rows: approvals and their one-way decisions, expiry,
//! description pins, overrides, patterns and tenant isolation.

use crate::harness::{Ctx, seed};
use moat_core::TenantId;
use moat_store::{
    ApprovalKind, ApprovalStatus, FirewallOverride, NewApproval, NewServer, ServerRecord, Store, StoreError,
};
use serde_json::{Value, json};

fn ov<'a>(server: &'a str, tool: &'a str, mode: Option<&'a str>, rules: &'a Value) -> FirewallOverride<'a> {
    FirewallOverride { server, tool, mode, rules, budget_bytes: None }
}

async fn server(s: &Store, tenant: &TenantId) -> ServerRecord {
    s.create_server(tenant, NewServer::stdio("files", vec!["fs".into()])).await.unwrap()
}

fn call(srv: &ServerRecord, expires_at: Option<i64>) -> NewApproval {
    NewApproval {
        kind: ApprovalKind::Call,
        server_id: srv.id.clone(),
        server_name: srv.name.clone(),
        target: "delete_all".into(),
        method: "tools/call".into(),
        requested_by: None,
        summary: json!({"findings": [{"category": "tool_abuse", "rule": "sudo", "action": "approve"}]}),
        hash: None,
        expires_at,
    }
}

pub async fn approvals(ctx: Ctx) {
    let s = &ctx.store;
    let (t, u) = seed(s, "acme").await;
    let srv = server(s, &t.id).await;
    let mut new = call(&srv, Some(moat_core::now_ms() + 60_000));
    new.requested_by = Some(u.id.to_string());
    let a = s.create_approval(&t.id, new).await.unwrap();
    assert_eq!(a.status, ApprovalStatus::Pending);
    assert_eq!(s.get_approval(&t.id, &a.id).await.unwrap(), a);
    let pending = s.list_approvals(&t.id, Some(ApprovalStatus::Pending), 50).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].summary["findings"][0]["rule"], "sudo");

    let decided = s.decide_approval(&t.id, &a.id, ApprovalStatus::Approved, Some("admin")).await.unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("admin"));
    // A decision is final.
    match s.decide_approval(&t.id, &a.id, ApprovalStatus::Denied, Some("admin")).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("already approved"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.decide_approval(&t.id, &a.id, ApprovalStatus::Pending, None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(s.decide_approval(&t.id, "nope", ApprovalStatus::Denied, None).await, Err(StoreError::NotFound)));

    // Expiry touches only pending call approvals past their deadline.
    let late = s.create_approval(&t.id, call(&srv, Some(1))).await.unwrap();
    let later = s.create_approval(&t.id, call(&srv, Some(moat_core::now_ms() + 600_000))).await.unwrap();
    assert_eq!(s.expire_approvals_cross_tenant(moat_core::now_ms()).await.unwrap(), 1);
    assert_eq!(s.get_approval(&t.id, &late.id).await.unwrap().status, ApprovalStatus::Expired);
    assert_eq!(s.get_approval(&t.id, &later.id).await.unwrap().status, ApprovalStatus::Pending);
    assert_eq!(s.list_approvals(&t.id, None, 50).await.unwrap().len(), 3);

    // Description changes: one pending per item is found.
    let mut change = call(&srv, None);
    change.kind = ApprovalKind::ToolChange;
    change.target = "tool:search".into();
    change.hash = Some("h2".into());
    let c = s.create_approval(&t.id, change).await.unwrap();
    let found = s.pending_tool_change(&t.id, &srv.id, "tool:search").await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), found.hash.as_deref()), (c.id.as_str(), Some("h2")));
    assert!(s.pending_tool_change(&t.id, &srv.id, "tool:other").await.unwrap().is_none());
}

pub async fn pins(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    let srv = server(s, &t.id).await;
    let first = s.see_tool(&t.id, &srv.id, "tool", "search", "h1").await.unwrap();
    assert_eq!((first.approved_hash.as_str(), first.seen_hash.as_str()), ("h1", "h1"));
    let changed = s.see_tool(&t.id, &srv.id, "tool", "search", "h2").await.unwrap();
    assert_eq!((changed.approved_hash.as_str(), changed.seen_hash.as_str()), ("h1", "h2"));
    s.approve_tool(&t.id, &srv.id, "tool", "search", "h2").await.unwrap();
    let pins = s.tool_pins(&t.id, &srv.id).await.unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].approved_hash, "h2");
    assert!(matches!(s.approve_tool(&t.id, &srv.id, "tool", "ghost", "h").await, Err(StoreError::NotFound)));
    // Deleting the server deletes its pins.
    assert!(s.delete_server(&t.id, &srv.id).await.unwrap());
    let srv2 = server(s, &t.id).await;
    assert!(s.tool_pins(&t.id, &srv2.id).await.unwrap().is_empty());
}

pub async fn policies_and_patterns(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    let rules = json!([{"category": "pii", "action": "redact"}]);
    s.put_firewall_policy(&t.id, ov("", "", Some("shadow"), &json!([])), Some("admin")).await.unwrap();
    s.put_firewall_policy(&t.id, ov("files", "write", None, &rules), None).await.unwrap();
    s.put_firewall_policy(
        &t.id,
        FirewallOverride { budget_bytes: Some(4096), ..ov("files", "write", Some("enforce"), &rules) },
        None,
    )
    .await
    .unwrap();
    assert!(matches!(
        s.put_firewall_policy(&t.id, ov("", "write", None, &rules), None).await,
        Err(StoreError::Invalid(_))
    ));
    let all = s.list_firewall_policies(&t.id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].server.as_str(), all[0].mode.as_deref()), ("", Some("shadow")));
    assert_eq!((all[1].tool.as_str(), all[1].mode.as_deref()), ("write", Some("enforce")));
    assert_eq!(all[1].rules, rules);
    assert_eq!((all[0].budget_bytes, all[1].budget_bytes), (None, Some(4096)));
    let zero = FirewallOverride { budget_bytes: Some(0), ..ov("files", "", None, &rules) };
    assert!(matches!(s.put_firewall_policy(&t.id, zero, None).await, Err(StoreError::Invalid(_))));
    s.delete_firewall_policy(&t.id, "files", "write").await.unwrap();
    assert!(matches!(s.delete_firewall_policy(&t.id, "files", "write").await, Err(StoreError::NotFound)));

    let p = s.add_firewall_pattern(&t.id, "employee-id", "pii", r"\bEMP-[0-9]{6}\b", None).await.unwrap();
    assert!(matches!(
        s.add_firewall_pattern(&t.id, "employee-id", "pii", "x", None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.list_firewall_patterns(&t.id).await.unwrap(), vec![p.clone()]);
    s.delete_firewall_pattern(&t.id, "employee-id").await.unwrap();
    assert!(s.list_firewall_patterns(&t.id).await.unwrap().is_empty());
}

pub async fn isolation(ctx: Ctx) {
    let s = &ctx.store;
    let (a, _) = seed(s, "acme").await;
    let (b, _) = seed(s, "globex").await;
    let srv = server(s, &a.id).await;
    let approval = s.create_approval(&a.id, call(&srv, None)).await.unwrap();
    s.put_firewall_policy(&a.id, ov("", "", Some("shadow"), &json!([])), None).await.unwrap();
    s.add_firewall_pattern(&a.id, "emp", "pii", "EMP", None).await.unwrap();
    s.see_tool(&a.id, &srv.id, "tool", "search", "h1").await.unwrap();

    assert!(matches!(s.get_approval(&b.id, &approval.id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        s.decide_approval(&b.id, &approval.id, ApprovalStatus::Approved, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.list_approvals(&b.id, None, 50).await.unwrap().is_empty());
    assert!(s.list_firewall_policies(&b.id).await.unwrap().is_empty());
    assert!(s.list_firewall_patterns(&b.id).await.unwrap().is_empty());
    assert!(s.tool_pins(&b.id, &srv.id).await.unwrap().is_empty());
    // An approval cannot point at another tenant's server.
    assert!(s.create_approval(&b.id, call(&srv, None)).await.is_err());
    assert_eq!(s.get_approval(&a.id, &approval.id).await.unwrap().status, ApprovalStatus::Pending);
}
