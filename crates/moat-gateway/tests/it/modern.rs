//! 2026-07-28 requests: header validation, versions, removed methods.

use crate::support::{Gw, HOST, MODERN, modern_params, modern_request, rpc};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use moat_mcp::jsonrpc::code;
use moat_mcp::protocol;
use serde_json::{Value, json};

/// A modern request whose headers are given explicitly.
fn with_headers(key: &str, body: &Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post("/mcp")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn headers_that_disagree_with_the_body_are_32020() {
    let gw = Gw::start().await;
    let list = rpc(1, "tools/list", modern_params(json!({})));
    let call = rpc(2, "tools/call", modern_params(json!({ "name": "a__echo", "arguments": {} })));
    let v = protocol::HEADER_PROTOCOL_VERSION;
    let m = protocol::HEADER_METHOD;
    let n = protocol::HEADER_NAME;
    let cases: Vec<(&Value, Vec<(&str, &str)>)> = vec![
        (&list, vec![(m, "tools/list")]),                              // version header missing
        (&list, vec![(v, "2025-11-25"), (m, "tools/list")]),           // version differs
        (&list, vec![(v, MODERN)]),                                    // method header missing
        (&list, vec![(v, MODERN), (m, "prompts/list")]),               // method differs
        (&call, vec![(v, MODERN), (m, "tools/call")]),                 // name header missing
        (&call, vec![(v, MODERN), (m, "tools/call"), (n, "b__echo")]), // name differs
        (&call, vec![(v, MODERN), (m, "tools/call"), (n, "=?base64?***?=")]), // malformed
    ];
    for (body, headers) in cases {
        let r = gw.send(with_headers(&gw.key, body, &headers)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}: {}", r.text());
        assert_eq!(r.rpc_code(), Some(code::HEADER_MISMATCH), "{headers:?}: {}", r.text());
        assert_eq!(r.json()["id"], body["id"]);
    }
    // The same requests with matching headers are served.
    let r = gw.send(with_headers(&gw.key, &list, &[(v, MODERN), (m, "tools/list")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // A base64-sentinel Mcp-Name matching the body is accepted (the call
    // then fails for want of a server, not of headers).
    let enc = protocol::encode_header_value("=?base64?x?=");
    let odd = rpc(3, "tools/call", modern_params(json!({ "name": "=?base64?x?=", "arguments": {} })));
    let r = gw.send(with_headers(&gw.key, &odd, &[(v, MODERN), (m, "tools/call"), (n, &enc)])).await;
    assert_ne!(r.rpc_code(), Some(code::HEADER_MISMATCH), "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn unsupported_versions_are_32022_with_data() {
    let gw = Gw::start().await;
    let mut params = modern_params(json!({}));
    params["_meta"][protocol::META_PROTOCOL_VERSION] = json!("2099-01-01");
    let body = rpc(5, "tools/list", params);
    let v = protocol::HEADER_PROTOCOL_VERSION;
    let r = gw.send(with_headers(&gw.key, &body, &[(v, "2099-01-01"), (protocol::HEADER_METHOD, "tools/list")])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.rpc_code(), Some(code::UNSUPPORTED_PROTOCOL_VERSION), "{}", r.text());
    let data = &r.json()["error"]["data"];
    assert_eq!(data["requested"], "2099-01-01", "{data}");
    let supported: Vec<&str> = data["supported"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(supported.contains(&MODERN), "{supported:?}");
    assert_eq!(r.json()["id"], 5);
    // A header/body disagreement wins over the unknown version.
    let r = gw.send(with_headers(&gw.key, &body, &[(v, MODERN), (protocol::HEADER_METHOD, "tools/list")])).await;
    assert_eq!(r.rpc_code(), Some(code::HEADER_MISMATCH), "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn methods_removed_in_modern_are_404_never_passed_through() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &[]).await;
    for method in ["ping", "initialize", "logging/setLevel", "resources/subscribe"] {
        for path in ["/mcp", "/mcp/alpha"] {
            let mut params = json!({});
            if method == "resources/subscribe" {
                params["uri"] = json!("alpha+mem://alpha/a");
            }
            let body = rpc(9, method, modern_params(params));
            let r = gw.send(modern_request(path, &gw.key, &body, "application/json")).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} on {path}: {}", r.text());
            assert_eq!(r.rpc_code(), Some(code::METHOD_NOT_FOUND), "{method}: {}", r.text());
            assert_eq!(r.json()["id"], 9);
        }
    }
    gw.finish().await;
}

#[tokio::test]
async fn missing_client_capabilities_are_invalid_params() {
    let gw = Gw::start().await;
    let mut params = modern_params(json!({}));
    params["_meta"].as_object_mut().unwrap().remove(protocol::META_CLIENT_CAPABILITIES);
    let body = rpc(1, "tools/list", params);
    let r = gw.send(modern_request("/mcp", &gw.key, &body, "application/json")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.rpc_code(), Some(code::INVALID_PARAMS), "{}", r.text());
    gw.finish().await;
}
