//! Malformed input gets a JSON-RPC error with the right status, and the
//! server keeps serving.

use crate::harness::{Moat, Opts};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn malformed_requests_get_jsonrpc_errors_and_the_server_keeps_serving() {
    let moat = Moat::with(Opts { config: "max_body_bytes = 2048\n".into(), ..Opts::default() }).await;
    let key = moat.key.clone();

    // Not JSON: -32700 with a null id.
    let r = moat.send(moat.post_raw("/mcp", Some(&key), "{not json")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32700, "{v}");
    assert!(v.get("id").is_some_and(Value::is_null), "`id` must be present and null: {v}");
    assert_eq!(v["jsonrpc"], "2.0");

    // A batch (JSON array): -32600.
    let batch = json!([{ "jsonrpc": "2.0", "id": 1, "method": "ping" }]).to_string();
    let r = moat.send(moat.post_raw("/mcp", Some(&key), batch)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32600), "{}", r.text);

    // Wrong JSON-RPC version: -32600.
    let old = json!({ "jsonrpc": "1.0", "id": 1, "method": "ping" }).to_string();
    let r = moat.send(moat.post_raw("/mcp", Some(&key), old)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32600), "{}", r.text);

    // Not an object with a method: -32600.
    let r = moat.send(moat.post_raw("/mcp", Some(&key), "42")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32600), "{}", r.text);

    // Over max_body_bytes: 413.
    let big = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "params": { "pad": "x".repeat(4096) } }).to_string();
    let r = moat.send(moat.post_raw("/mcp", Some(&key), big.clone())).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    // Also without a key (the limit protects the unauthenticated path).
    let r = moat.send(moat.post_raw("/mcp", None, big)).await;
    assert!(
        r.status == StatusCode::PAYLOAD_TOO_LARGE || r.status == StatusCode::UNAUTHORIZED,
        "{} {}",
        r.status,
        r.text
    );
    // Just under the limit is not refused for its size.
    let fits =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "params": { "pad": "x".repeat(1500) } }).to_string();
    let r = moat.send(moat.post_raw("/mcp", Some(&key), fits)).await;
    assert_ne!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);

    // Wrong content type: 415.
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string();
    let r = moat
        .send(
            moat.http
                .post(moat.url("/mcp"))
                .bearer_auth(&key)
                .header("content-type", "text/plain")
                .header("accept", "application/json, text/event-stream")
                .body(ping),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);

    // Still alive and serving.
    let r = moat.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = moat.modern("/mcp", &key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.result()["tools"], json!([]), "{}", r.text);
}
