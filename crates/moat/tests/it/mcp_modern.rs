//! The 2026-07-28 era on `/mcp`: stateless requests, `_meta`, validated
//! headers, status codes. No upstream needed.

use crate::harness::{MODERN, Moat};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn body(method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params }).to_string()
}

fn meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

#[tokio::test]
async fn server_discover_answers_with_both_eras() {
    let moat = Moat::start().await;
    let r = moat.modern("/mcp", &moat.key, "server/discover", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["id"], 1, "{v}");
    let result = r.result();
    let versions: Vec<&str> =
        result["supportedVersions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(versions.contains(&"2026-07-28"), "{result}");
    assert!(versions.contains(&"2025-11-25"), "{result}");
    assert_eq!(result["resultType"], "complete", "{result}");
    assert!(result["capabilities"].is_object(), "{result}");
}

#[tokio::test]
async fn modern_headers_are_validated_against_the_body() {
    let moat = Moat::start().await;
    let key = &moat.key;
    let params = json!({ "_meta": meta(MODERN) });

    // Mcp-Method differs from the body's method.
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), body("server/discover", params.clone()))
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "tools/list"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32020), "{}", r.text);

    // Mcp-Method missing.
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), body("server/discover", params.clone()))
                .header("mcp-protocol-version", MODERN),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32020), "{}", r.text);

    // MCP-Protocol-Version missing.
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), body("server/discover", params.clone()))
                .header("mcp-method", "server/discover"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32020), "{}", r.text);

    // MCP-Protocol-Version differs from _meta.
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), body("server/discover", params.clone()))
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-method", "server/discover"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32020), "{}", r.text);

    // A modern header without the _meta version: invalid params (see the
    // gateway's mcp/README.md).
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), body("tools/list", json!({})))
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "tools/list"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32602), "{}", r.text);

    // Missing clientCapabilities: -32602.
    let no_caps = json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": MODERN } });
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), body("server/discover", no_caps))
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "server/discover"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32602), "{}", r.text);
}

#[tokio::test]
async fn unsupported_meta_version_gets_32022_with_supported_and_requested() {
    let moat = Moat::start().await;
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(&moat.key), body("server/discover", json!({ "_meta": meta("1900-01-01") })))
                .header("mcp-protocol-version", "1900-01-01")
                .header("mcp-method", "server/discover"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32022, "{v}");
    let supported = v["error"]["data"]["supported"].as_array().expect("data.supported");
    assert!(supported.contains(&json!(MODERN)), "{v}");
    assert_eq!(v["error"]["data"]["requested"], "1900-01-01", "{v}");
    assert_eq!(v["id"], 7, "{v}");
}

#[tokio::test]
async fn mcp_name_must_match_the_tool_name() {
    let moat = Moat::start().await;
    let key = &moat.key;
    let call = |name_header: &str| {
        moat.post_raw(
            "/mcp",
            Some(key),
            body("tools/call", json!({ "name": "nosrv__echo", "arguments": {}, "_meta": meta(MODERN) })),
        )
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", name_header.to_owned())
    };
    let r = moat.send(call("nosrv__other")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32020), "{}", r.text);
    // base64("nosrv__other"): still a mismatch.
    let r = moat.send(call("=?base64?bm9zcnZfX290aGVy?=")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32020), "{}", r.text);
    // base64("nosrv__echo"): matches, so the call is routed (and fails
    // only because there is no such server).
    let r = moat.send(call("=?base64?bm9zcnZfX2VjaG8=?=")).await;
    assert_ne!(r.rpc_code(), Some(-32020), "{}", r.text);
    assert_ne!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32602), "{}", r.text);
    assert!(r.text.contains("nosrv"), "the error names the server: {}", r.text);
    // The plain form matches too.
    let r = moat.send(call("nosrv__echo")).await;
    assert_eq!(r.rpc_code(), Some(-32602), "{}", r.text);
}

#[tokio::test]
async fn unknown_method_list_notification_and_verbs() {
    let moat = Moat::start().await;
    let key = &moat.key;

    let r = moat.modern("/mcp", key, "foo/bar", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.rpc_code(), Some(-32601), "{}", r.text);

    let r = moat.modern("/mcp", key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let result = r.result();
    assert_eq!(result["tools"], json!([]), "{result}");
    assert_eq!(result["resultType"], "complete", "{result}");

    // Methods 2026-07-28 removed are not found in that era.
    for removed in ["ping", "initialize"] {
        let r = moat.modern("/mcp", key, removed, json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{removed}: {}", r.text);
        assert_eq!(r.rpc_code(), Some(-32601), "{removed}: {}", r.text);
    }

    let note = json!({
        "jsonrpc": "2.0", "method": "notifications/progress",
        "params": { "progressToken": "t", "progress": 1, "_meta": meta(MODERN) }
    });
    let r = moat
        .send(
            moat.post_raw("/mcp", Some(key), note.to_string())
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "notifications/progress"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(r.text.is_empty(), "202 has no body: {}", r.text);

    let r = moat.send(moat.http.get(moat.url("/mcp")).bearer_auth(key).header("accept", "text/event-stream")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    let r = moat.send(moat.http.delete(moat.url("/mcp")).bearer_auth(key)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
}
