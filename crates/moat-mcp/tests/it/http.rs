//! Streamable HTTP against the Python SDK fixture, in both eras.

use std::time::Duration;

use moat_mcp::client::{CallContext, Era, EraPreference, Upstream, UpstreamError, UpstreamEvent, UpstreamSpec};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::support::{PyServer, call, eventually, first_text, opts, python};

fn http_upstream(url: String, era: EraPreference) -> Upstream {
    Upstream::new(
        "pyfix",
        UpstreamSpec::StreamableHttp {
            url,
            headers: vec![(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer test-credential"))],
        },
        opts(era),
    )
}

async fn list_changed(events: &mut broadcast::Receiver<UpstreamEvent>) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(end, events.recv()).await {
        if let UpstreamEvent::Notification(m) = ev
            && m.method_str() == "notifications/tools/list_changed"
        {
            return true;
        }
    }
    false
}

/// The same conversation in whichever era `era` selects.
async fn exercise(up: &Upstream, expect: Era) {
    up.connect().await.unwrap();
    let hello = up.hello().unwrap();
    assert_eq!(hello.era, expect);
    assert_eq!(hello.server_info["name"], "moat-fixture");
    assert_eq!(hello.instructions.as_deref(), Some("fixture for moat tests"));
    let mut events = up.events();

    let tools = call(up, "tools/list", None).await;
    assert!(tools["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"));
    let r = call(up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"héllo"}}))).await;
    assert_eq!(first_text(&r), "héllo");

    let (tx, mut rx) = mpsc::channel(32);
    let ctx = CallContext { progress: Some(tx), client_capabilities: Some(json!({})), ..CallContext::default() };
    let r = up
        .request(
            "tools/call",
            Some(json!({"name":"slow","arguments":{"steps":3},"_meta":{"progressToken":"tok-a"}})),
            ctx,
        )
        .await
        .unwrap();
    assert_eq!(first_text(&r), "done 3");
    let mut progress = Vec::new();
    while let Ok(p) = rx.try_recv() {
        progress.push(p);
    }
    let steps: Vec<_> = progress.iter().filter(|p| p.get("progressToken").is_some()).collect();
    assert_eq!(steps.len(), 3, "{progress:?}");
    assert!(steps.iter().all(|p| p["progressToken"] == "tok-a"), "{progress:?}");

    let read = call(up, "resources/read", Some(json!({"uri":"test://hello"}))).await;
    assert_eq!(read["contents"][0]["text"], "hello resource");
    let prompt = call(up, "prompts/get", Some(json!({"name":"greet","arguments":{"name":"moat"}}))).await;
    assert!(prompt["messages"][0]["content"]["text"].as_str().unwrap().contains("Hello, moat!"));

    let err =
        up.request("tools/call", Some(json!({"name":"no-such-tool","arguments":{}})), CallContext::default()).await;
    // An unknown tool is a JSON-RPC error or an error result, passed through.
    match err {
        Err(UpstreamError::Rpc(_)) => {}
        Ok(r) => assert_eq!(r["isError"], true, "{r}"),
        Err(e) => panic!("{e:?}"),
    }

    // List changes reach events(): the GET stream (legacy) or
    // subscriptions/listen (modern).
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(up, "tools/call", Some(json!({"name":"changes","arguments":{}}))).await;
    assert!(list_changed(&mut events).await, "no list_changed event");

    // A timed-out call is cancelled upstream.
    let ctx = CallContext { timeout: Some(Duration::from_millis(300)), ..CallContext::default() };
    let err =
        up.request("tools/call", Some(json!({"name":"sleep","arguments":{"seconds":20}})), ctx).await.unwrap_err();
    assert_eq!(err, UpstreamError::Timeout);
    let mut cancelled = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < end {
        let s = call(up, "tools/call", Some(json!({"name":"stats","arguments":{}}))).await;
        let stats: serde_json::Value = serde_json::from_str(&first_text(&s)).unwrap();
        cancelled = stats["cancelled"].as_i64().unwrap_or(0);
        if cancelled >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cancelled, 1, "the upstream saw the cancellation");
}

#[tokio::test]
async fn legacy_era_against_the_python_sdk() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["streamable-http"]).await;
    let up = http_upstream(srv.mcp_url(), EraPreference::Legacy);
    exercise(&up, Era::Legacy).await;
    assert_eq!(up.hello().unwrap().protocol_version, "2025-11-25");
    // Server-to-client requests: ping answered, the others refused.
    let r = call(&up, "tools/call", Some(json!({"name":"ask_client","arguments":{}}))).await;
    let text = first_text(&r);
    assert!(text.contains("ping ok") && text.contains("roots failed"), "{text}");
    up.shutdown().await;
    srv.stop().await;
}

#[tokio::test]
async fn modern_era_against_the_python_sdk() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["streamable-http"]).await;
    let up = http_upstream(srv.mcp_url(), EraPreference::Modern);
    exercise(&up, Era::Modern).await;
    assert_eq!(up.hello().unwrap().protocol_version, "2026-07-28");
    up.shutdown().await;
    srv.stop().await;
}

#[tokio::test]
async fn auto_detects_the_modern_era_and_json_responses_work() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["streamable-http", "--json"]).await;
    for era in [EraPreference::Auto, EraPreference::Legacy] {
        let up = http_upstream(srv.mcp_url(), era);
        up.connect().await.unwrap();
        let expect = if era == EraPreference::Auto { Era::Modern } else { Era::Legacy };
        assert_eq!(up.hello().unwrap().era, expect);
        let r = call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"json"}}))).await;
        assert_eq!(first_text(&r), "json");
        let r = call(&up, "tools/call", Some(json!({"name":"slow","arguments":{"steps":1}}))).await;
        assert_eq!(first_text(&r), "done 1");
        up.shutdown().await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn many_concurrent_calls_share_one_upstream() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["streamable-http"]).await;
    let up = http_upstream(srv.mcp_url(), EraPreference::Legacy);
    let calls = (0..20).map(|i| {
        let up = up.clone();
        async move {
            let r =
                call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message": format!("m{i}")}}))).await;
            assert_eq!(first_text(&r), format!("m{i}"));
        }
    });
    futures::future::join_all(calls).await;
    up.shutdown().await;
    eventually(1, "nothing", || true).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_restarted_server_gets_a_new_session_transparently() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["streamable-http"]).await;
    let port = srv.port.to_string();
    let up = http_upstream(srv.mcp_url(), EraPreference::Legacy);
    call(&up, "tools/list", None).await;
    let mut events = up.events();
    srv.stop().await;
    let srv = PyServer::start(&py, &["streamable-http", "--port", &port]).await;
    // The old session id means nothing to the new process: 404, then a new
    // `initialize` and one retry, invisible to the caller.
    let r = call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"again"}}))).await;
    assert_eq!(first_text(&r), "again");
    let mut got = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        got.push(ev);
    }
    assert!(got.contains(&UpstreamEvent::SessionReestablished), "{got:?}");
    up.shutdown().await;
    srv.stop().await;
}

#[tokio::test]
async fn x_mcp_header_arguments_are_mirrored_for_modern_upstreams() {
    let Some(py) = python() else { return };
    let srv = PyServer::start(&py, &["streamable-http"]).await;
    let args = json!({"name":"regional","arguments":{"region":"eu-west-1","query":"select 1"}});
    // Without a tools/list first, the server answers HeaderMismatch; the
    // client learns the annotations and retries once.
    let up = http_upstream(srv.mcp_url(), EraPreference::Modern);
    let r = call(&up, "tools/call", Some(args.clone())).await;
    assert_eq!(first_text(&r), "eu-west-1:select 1");
    // After a tools/list, the first attempt carries the header.
    let up2 = http_upstream(srv.mcp_url(), EraPreference::Modern);
    call(&up2, "tools/list", None).await;
    let r = call(&up2, "tools/call", Some(args)).await;
    assert_eq!(first_text(&r), "eu-west-1:select 1");
    up.shutdown().await;
    up2.shutdown().await;
    srv.stop().await;
}
