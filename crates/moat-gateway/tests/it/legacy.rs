//! 2025-11-25 sessions: creation, binding to the key, ending.

use crate::support::{Gw, LEGACY, post, rpc};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use moat_mcp::protocol;
use serde_json::{Value, json};

fn in_session(key: &str, sid: &str, body: &Value) -> Request<Body> {
    post("/mcp", Some(key))
        .header(protocol::HEADER_SESSION_ID, sid)
        .header(protocol::HEADER_PROTOCOL_VERSION, LEGACY)
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn delete(key: &str, sid: &str) -> Request<Body> {
    Request::delete("/mcp")
        .header(header::HOST, crate::support::HOST)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(protocol::HEADER_SESSION_ID, sid)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn sessions_are_bound_to_their_key_and_end_on_delete() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &[]).await;
    let other = gw.new_key("agent").await;

    let init = rpc(
        1,
        "initialize",
        json!({ "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": { "name": "it", "version": "0" } }),
    );
    let r = gw.post_json("/mcp", &init).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.result()["protocolVersion"], LEGACY);
    let sid = r.header(protocol::HEADER_SESSION_ID).expect("a session id");
    assert!(sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()), "128 random bits, hex: {sid}");

    let r = gw.send(in_session(&gw.key, &sid, &json!({"jsonrpc":"2.0","method":"notifications/initialized"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let list = rpc(2, "tools/list", json!({}));
    let r = gw.send(in_session(&gw.key, &sid, &list)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.result()["tools"].as_array().unwrap().iter().any(|t| t["name"] == "alpha__echo"), "{}", r.text());

    // Another key of the same tenant cannot use or end the session.
    let r = gw.send(in_session(&other, &sid, &list)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(gw.send(delete(&other, &sid)).await.status, StatusCode::NOT_FOUND);
    let r = gw.send(in_session(&gw.key, &sid, &list)).await;
    assert_eq!(r.status, StatusCode::OK, "the other key's DELETE must not end it: {}", r.text());

    // The owner ends it; afterwards it is gone for everyone.
    assert_eq!(gw.send(delete(&gw.key, &sid)).await.status, StatusCode::OK);
    let r = gw.send(in_session(&gw.key, &sid, &list)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(gw.send(delete(&gw.key, &sid)).await.status, StatusCode::NOT_FOUND);

    // Unknown ids are 404 too; a request with no session and no modern _meta is 400.
    let r = gw.send(in_session(&gw.key, "00112233445566778899aabbccddeeff", &list)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = gw.post_json("/mcp", &list).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn a_legacy_tools_call_is_routed_inside_the_session() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &[]).await;
    let init = rpc(1, "initialize", json!({ "protocolVersion": "2025-06-18", "capabilities": {} }));
    let r = gw.post_json("/mcp", &init).await;
    assert_eq!(r.result()["protocolVersion"], "2025-06-18", "negotiated down: {}", r.text());
    let sid = r.header(protocol::HEADER_SESSION_ID).expect("session id");
    let call = rpc(2, "tools/call", json!({ "name": "alpha__echo", "arguments": { "x": 1 } }));
    let req = post("/mcp", Some(&gw.key))
        .header(protocol::HEADER_SESSION_ID, &sid)
        .header(header::ACCEPT, "application/json")
        .body(Body::from(call.to_string()))
        .unwrap();
    let r = gw.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header(protocol::HEADER_SESSION_ID).as_deref(), Some(sid.as_str()));
    assert_eq!(r.result()["structuredContent"], json!({ "server": "alpha", "name": "echo", "arguments": { "x": 1 } }));
    gw.finish().await;
}
