use serde_json::{Value, json};

use crate::start_upstream;

async fn post(http: &reqwest::Client, url: &str, body: Value, session: Option<&str>) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s).header("mcp-protocol-version", "2025-11-25");
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn legacy_handshake_list_and_call() {
    let addr = start_upstream(false).await;
    handshake_list_and_call(&format!("http://{addr}/mcp")).await;
}

/// The bare proxy relays the whole exchange, headers and statuses included.
#[tokio::test]
async fn the_bare_proxy_relays_everything() {
    let upstream = start_upstream(false).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = moat_bench::proxy::router(format!("http://{upstream}/mcp")).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    handshake_list_and_call(&format!("http://{addr}/mcp")).await;
}

async fn handshake_list_and_call(url: &str) {
    let url = url.to_owned();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let resp = post(&http, &url, init, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let sid = resp.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(body["result"]["capabilities"], json!({"tools": {}}));
    assert_eq!(body["result"]["serverInfo"]["name"], "bench-upstream");

    let resp = post(&http, &url, json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), Some(&sid)).await;
    assert_eq!(resp.status(), 202);

    let body: Value = post(&http, &url, json!({"jsonrpc": "2.0", "id": "l", "method": "tools/list"}), Some(&sid))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], "l");
    let names: Vec<&str> =
        body["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "add", "noop"]);

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hé \"quoted\"\n"}}});
    let body: Value = post(&http, &url, call, Some(&sid)).await.json().await.unwrap();
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 2,
        "result": {"content": [{"type": "text", "text": "hé \"quoted\"\n"}], "isError": false}})
    );

    let body: Value =
        post(&http, &url, json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}), Some(&sid)).await.json().await.unwrap();
    assert_eq!(body["result"], json!({}));

    let add = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}});
    let body: Value = post(&http, &url, add, Some(&sid)).await.json().await.unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "5");

    let bad = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope"}});
    let body: Value = post(&http, &url, bad, Some(&sid)).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602);

    assert_eq!(http.get(&url).send().await.unwrap().status(), 405);
    assert_eq!(http.delete(&url).header("mcp-session-id", &sid).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn discover_falls_back_unless_modern() {
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let legacy = start_upstream(false).await;
    let body: Value = post(&http, &format!("http://{legacy}/mcp"), discover.clone(), None).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32601);

    let modern = start_upstream(true).await;
    let body: Value = post(&http, &format!("http://{modern}/mcp"), discover, None).await.json().await.unwrap();
    assert_eq!(body["result"]["supportedVersions"][0], "2026-07-28");
}

#[tokio::test]
async fn modern_request_without_handshake() {
    let addr = start_upstream(false).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hi"},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let body: Value = post(&http, &format!("http://{addr}/mcp"), call, None).await.json().await.unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "hi");
    assert_eq!(body["result"]["resultType"], "complete");
}

#[tokio::test]
async fn stats_count_api_key_headers() {
    let addr = start_upstream(false).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/mcp");
    http.post(&url).header("x-api-key", "k").body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).send().await.unwrap();
    http.post(&url).body("not json").send().await.unwrap();
    let stats: moat_bench::upstream::StatsSnapshot =
        http.get(format!("http://{addr}/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.with_api_key, 1);
}
