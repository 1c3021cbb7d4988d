//! Audit events and metrics of MCP calls: metadata only.

use crate::support::Gw;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use moat_store::AuditResult;
use serde_json::json;

const SECRET: &str = "sk-live-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e";
const VALUE: &str = "quartz-lantern-meadow-argument";

#[tokio::test]
async fn mcp_calls_are_audited_without_argument_values() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &[]).await;
    let r = gw.call_tool("alpha__echo", json!({ "note": VALUE, "nested": { "ref": VALUE } })).await;
    // The upstream did get the value (it echoes it back).
    assert!(r.text().contains(VALUE), "{}", r.text());
    let r = gw.modern("/mcp", "prompts/get", json!({ "name": "alpha__greet", "arguments": { "who": VALUE } })).await;
    assert!(r.text().contains(VALUE), "{}", r.text());
    let r = gw.modern("/mcp", "tools/call", json!({ "name": "nosuch__echo", "arguments": { "k": VALUE } })).await;
    assert!(r.json().get("error").is_some());
    // A secret in the arguments: the firewall blocks the call (secrets in
    // requests: block), and says so without echoing it.
    let r = gw.call_tool("alpha__echo", json!({ "api_key": SECRET })).await;
    assert_eq!(r.rpc_code(), Some(-32003), "{}", r.text());
    assert!(!r.text().contains(SECRET) && r.rpc_message().contains("secret"), "{}", r.text());

    let events = gw
        .audit("mcp.", |evs| {
            evs.iter().filter(|e| e.action == "mcp.tools/call").count() >= 2
                && evs.iter().any(|e| e.action == "mcp.prompts/get")
        })
        .await;
    let call = events
        .iter()
        .find(|e| e.action == "mcp.tools/call" && e.result == AuditResult::Ok)
        .unwrap_or_else(|| panic!("no mcp.tools/call event: {events:?}"));
    assert_eq!(call.resource.as_deref(), Some("alpha/echo"));
    assert_eq!(call.tenant_id.as_ref(), Some(&gw.tenant.id));
    assert_eq!(call.source_addr.as_deref(), Some("127.0.0.1"));
    assert!(call.request_id.is_some() && call.actor_id.is_some() && call.latency_ms.is_some(), "{call:?}");
    assert_eq!(call.metadata["era"], "modern");
    let failed = events
        .iter()
        .find(|e| e.action == "mcp.tools/call" && e.result == AuditResult::Error)
        .unwrap_or_else(|| panic!("no failed mcp.tools/call event: {events:?}"));
    assert_eq!(failed.metadata["error_code"], -32602);

    let blocked = gw.audit("firewall.", |evs| evs.iter().any(|e| e.action == "firewall.block")).await;
    let block = blocked.iter().find(|e| e.action == "firewall.block").expect("a firewall.block event");
    assert_eq!(block.metadata["direction"], "request", "{block:?}");
    assert_eq!(block.metadata["findings"][0]["category"], "secret", "{block:?}");

    // No event at all (auth ones included) carries an argument value.
    let all = gw.audit("", |_| true).await;
    assert!(all.len() >= events.len());
    for ev in &all {
        let text = serde_json::to_string(ev).unwrap();
        assert!(!text.contains(SECRET) && !text.contains(VALUE), "an audit event carries an argument value: {text}");
        assert!(!text.contains(&gw.key), "an audit event carries the API key: {text}");
    }
    gw.finish().await;
}

#[tokio::test]
async fn metrics_count_mcp_calls_by_server() {
    let gw = Gw::start().await;
    gw.add_fake("metricsrv", &[]).await;
    let r = gw.call_tool("metricsrv__echo", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let req = Request::get("/metrics").header(header::HOST, crate::support::HOST).body(Body::empty()).unwrap();
    let r = gw.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("moat_mcp_requests_total{") && l.contains("server=\"metricsrv\""))
        .unwrap_or_else(|| panic!("no moat_mcp_requests_total for metricsrv:\n{text}"));
    assert!(line.contains("method=\"tools/call\"") && line.contains("outcome=\"ok\""), "{line}");
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{line}");
    assert!(!text.contains("echo\""), "tool names are not labels: {text}");
    gw.finish().await;
}

#[tokio::test]
async fn concurrent_first_uses_of_a_key_verify_it_once() {
    let gw = Gw::start().await;
    let key = gw.new_key("burst").await;
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    let meta = moat_gateway::authn::RequestMeta::default();
    let all = futures::future::join_all((0..16).map(|_| gw.state.auth.authenticate(&headers, &meta, "/mcp"))).await;
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    // A fresh verification is audited as `auth.success`; the 15 callers that
    // waited found the key cached instead of running Argon2id again.
    let events = gw.audit("auth.success", |evs| !evs.is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = gw.audit("auth.success", |evs| evs.len() >= events.len()).await;
    assert_eq!(events.len(), 1, "one Argon2id verification for 16 concurrent first uses: {events:?}");
    gw.finish().await;
}
