//! Legacy HTTP+SSE against the Python SDK's SSE transport.

use std::time::Duration;

use moat_mcp::client::{CallContext, Era, EraPreference, Upstream, UpstreamEvent, UpstreamSpec};
use serde_json::json;
use tokio::sync::mpsc;

use crate::support::{PyServer, call, first_text, opts, python};

#[tokio::test]
async fn sse_transport_against_the_python_sdk() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["sse"]).await;
    let up =
        Upstream::new("pysse", UpstreamSpec::Sse { url: srv.sse_url(), headers: vec![] }, opts(EraPreference::Auto));
    up.connect().await.unwrap();
    let hello = up.hello().unwrap();
    assert_eq!(hello.era, Era::Legacy);
    assert_eq!(hello.server_info["name"], "moat-fixture");

    let tools = call(&up, "tools/list", None).await;
    assert!(tools["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"));
    let r = call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"over sse"}}))).await;
    assert_eq!(first_text(&r), "over sse");

    let (tx, mut rx) = mpsc::channel(16);
    let ctx = CallContext { progress: Some(tx), ..CallContext::default() };
    let r = up
        .request("tools/call", Some(json!({"name":"slow","arguments":{"steps":2},"_meta":{"progressToken":5}})), ctx)
        .await
        .unwrap();
    assert_eq!(first_text(&r), "done 2");
    let mut steps = Vec::new();
    while let Ok(p) = rx.try_recv() {
        steps.push(p);
    }
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(steps.iter().all(|p| p["progressToken"] == 5));

    let read = call(&up, "resources/read", Some(json!({"uri":"test://hello"}))).await;
    assert_eq!(read["contents"][0]["text"], "hello resource");
    let prompt = call(&up, "prompts/get", Some(json!({"name":"greet","arguments":{"name":"sse"}}))).await;
    assert!(prompt["messages"][0]["content"]["text"].as_str().unwrap().contains("Hello, sse!"));

    let r = call(&up, "tools/call", Some(json!({"name":"ask_client","arguments":{}}))).await;
    let text = first_text(&r);
    assert!(text.contains("ping ok") && text.contains("roots failed"), "{text}");
    up.shutdown().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_dead_sse_stream_is_reopened_and_initialised_again() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["sse"]).await;
    let port = srv.port.to_string();
    let up =
        Upstream::new("pysse", UpstreamSpec::Sse { url: srv.sse_url(), headers: vec![] }, opts(EraPreference::Auto));
    call(&up, "tools/list", None).await;
    let mut events = up.events();
    srv.stop().await;
    let srv = PyServer::start(&py, &["sse", "--port", &port]).await;
    let r = call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"back"}}))).await;
    assert_eq!(first_text(&r), "back");
    let mut got = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        got.push(ev);
    }
    assert!(got.iter().any(|e| matches!(e, UpstreamEvent::Died(m) if m.contains("pysse"))), "{got:?}");
    assert!(got.contains(&UpstreamEvent::SessionReestablished), "{got:?}");
    up.shutdown().await;
    srv.stop().await;
}
