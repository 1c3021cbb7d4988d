//! What every request meets before dispatch: Host/Origin, authentication,
//! the body limit and JSON-RPC parsing.

use crate::support::{Gw, HOST, post, rpc};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use moat_mcp::jsonrpc::code;
use serde_json::{Value, json};

#[tokio::test]
async fn mcp_without_a_valid_key_is_401_with_a_challenge() {
    let gw = Gw::start().await;
    let body = rpc(1, "tools/list", json!({})).to_string();
    for (path, key) in [("/mcp", None), ("/mcp", Some("moat_not_a_key")), ("/mcp/anything", None)] {
        let r = gw.send(post(path, key).body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} {key:?}: {}", r.text());
        let challenge = r.header("www-authenticate").unwrap_or_else(|| panic!("{path}: no WWW-Authenticate"));
        let expected = format!("Bearer resource_metadata=\"http://{HOST}/.well-known/oauth-protected-resource{path}\"");
        assert!(challenge.starts_with(&expected), "{challenge}");
        if key.is_some() {
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        } else {
            assert!(!challenge.contains("error="), "{challenge}");
        }
        assert!(r.json().get("error").is_some(), "{}", r.text());
    }
    // The valid key passes.
    let r = gw.post_json("/mcp", &rpc(1, "initialize", json!({"protocolVersion": "2025-11-25"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn foreign_host_or_origin_is_403_before_authentication() {
    let gw = Gw::start().await;
    let body = || Body::from(rpc(1, "tools/list", json!({})).to_string());
    let cases: [(&str, &str); 4] = [
        ("host", "evil.example:8080"),
        ("host", "127.0.0.1:9999"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
    ];
    for (name, value) in cases {
        let req = Request::post("/mcp")
            .header(header::HOST, if name == "host" { value } else { HOST })
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", gw.key));
        let req = if name == "origin" { req.header(header::ORIGIN, value) } else { req };
        let r = gw.send(req.body(body()).unwrap()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {value}: {}", r.text());
        assert_eq!(r.rpc_code(), Some(code::FORBIDDEN), "{}", r.text());
        // Without a key too: the guard runs first.
        let req = Request::post("/mcp")
            .header(header::HOST, if name == "host" { value } else { HOST })
            .header(header::CONTENT_TYPE, "application/json");
        let req = if name == "origin" { req.header(header::ORIGIN, value) } else { req };
        assert_eq!(gw.send(req.body(body()).unwrap()).await.status, StatusCode::FORBIDDEN);
    }
    // The listen address's own origin is allowed (then authentication decides).
    let req = post("/mcp", None).header(header::ORIGIN, "http://localhost:8080").body(body()).unwrap();
    assert_eq!(gw.send(req).await.status, StatusCode::UNAUTHORIZED);
    gw.finish().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let gw = Gw::with(|c| c.max_body_bytes = 1024).await;
    let big = rpc(1, "tools/list", json!({ "pad": "x".repeat(2048) })).to_string();
    let r = gw.send(post("/mcp", Some(&gw.key)).body(Body::from(big)).unwrap()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.rpc_code(), Some(code::INVALID_REQUEST), "{}", r.text());
    assert!(r.rpc_message().contains("1024"), "{}", r.text());
    // Just under the limit is served.
    let init = rpc(1, "initialize", json!({ "protocolVersion": "2025-11-25", "pad": "" }));
    let pad = 1024 - init.to_string().len();
    let fits = rpc(1, "initialize", json!({ "protocolVersion": "2025-11-25", "pad": "x".repeat(pad) }));
    assert_eq!(fits.to_string().len(), 1024);
    let r = gw.post_json("/mcp", &fits).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn parse_errors_and_batches_are_refused() {
    let gw = Gw::start().await;
    let send = |body: &'static str| gw.send(post("/mcp", Some(&gw.key)).body(Body::from(body)).unwrap());
    let r = send("{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.rpc_code(), Some(code::PARSE_ERROR), "{}", r.text());
    assert_eq!(r.json()["id"], Value::Null);

    let r = send(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.rpc_code(), Some(code::INVALID_REQUEST), "{}", r.text());
    assert!(r.rpc_message().contains("batch"), "{}", r.text());

    // Not a message: -32600, with the id when it could be read.
    let r = send(r#"{"jsonrpc":"1.0","id":7,"method":"tools/list"}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.rpc_code(), Some(code::INVALID_REQUEST), "{}", r.text());
    assert_eq!(r.json()["id"], 7);
    gw.finish().await;
}
