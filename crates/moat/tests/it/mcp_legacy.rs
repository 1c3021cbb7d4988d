//! The 2025-11-25 era: sessions opened by `initialize`, bound to their key,
//! ended by DELETE.

use crate::harness::{LEGACY, Moat, is_key};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn initialize_negotiates_the_version() {
    let moat = Moat::start().await;
    let key = &moat.key;

    let (r, sid) = moat.initialize("/mcp", key, LEGACY).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!sid.is_empty(), "no Mcp-Session-Id header");
    assert!(sid.len() >= 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()), "session id {sid}");
    let result = r.result();
    assert_eq!(result["protocolVersion"], LEGACY, "{result}");
    assert!(result["capabilities"].is_object() && result["serverInfo"].is_object(), "{result}");

    let (r, sid2) = moat.initialize("/mcp", key, "2025-06-18").await;
    assert_eq!(r.result()["protocolVersion"], "2025-06-18", "{}", r.text);
    assert_ne!(sid, sid2, "each initialize opens a new session");

    let (r, _) = moat.initialize("/mcp", key, "2099-01-01").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.result()["protocolVersion"], LEGACY, "{}", r.text);
}

#[tokio::test]
async fn sessions_are_bound_to_their_key_and_end_with_delete() {
    let moat = Moat::start().await;
    let key = moat.key.clone();
    let (_, sid) = moat.initialize("/mcp", &key, LEGACY).await;

    let r = moat.legacy("/mcp", &key, &sid, 2, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.result(), json!({}), "{}", r.text);
    assert_eq!(r.header("mcp-session-id").as_deref(), Some(sid.as_str()));

    let r = moat.legacy("/mcp", &key, &sid, 3, "tools/list", json!({})).await;
    assert_eq!(r.result()["tools"], json!([]), "{}", r.text);

    // Neither a session nor modern _meta.
    let ping = json!({ "jsonrpc": "2.0", "id": 4, "method": "ping" }).to_string();
    let r = moat.send(moat.post_raw("/mcp", Some(&key), ping.clone())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // An unknown session id.
    let r = moat.legacy("/mcp", &key, "0123456789abcdef0123456789abcdef", 5, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // The session presented with another valid key of the same tenant.
    let other = moat.cli(&["key", "create", "other", "--role", "admin"]).ok();
    let other = other.stdout.trim().to_owned();
    assert!(is_key(&other), "{other}");
    let r = moat.get("/api/v1/whoami", Some(&other)).await;
    assert_eq!(r.status, StatusCode::OK, "the second key works: {}", r.text);
    let r = moat.legacy("/mcp", &other, &sid, 6, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another key must not use the session: {}", r.text);
    let r = moat
        .send(
            moat.http
                .get(moat.url("/mcp"))
                .bearer_auth(&other)
                .header("accept", "text/event-stream")
                .header("mcp-session-id", &sid),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "GET with another key: {}", r.text);
    let r = moat.send(moat.http.delete(moat.url("/mcp")).bearer_auth(&other).header("mcp-session-id", &sid)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "DELETE with another key: {}", r.text);
    // ... and the owner's session survived those attempts.
    let r = moat.legacy("/mcp", &key, &sid, 7, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The GET stream of the session.
    let resp = moat
        .http
        .get(moat.url("/mcp"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    drop(resp);

    // DELETE ends it; afterwards 404.
    let r = moat.send(moat.http.delete(moat.url("/mcp")).bearer_auth(&key).header("mcp-session-id", &sid)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = moat.legacy("/mcp", &key, &sid, 8, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = moat.send(moat.http.delete(moat.url("/mcp")).bearer_auth(&key).header("mcp-session-id", &sid)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

#[tokio::test]
async fn an_open_get_stream_ends_when_the_session_is_deleted() {
    let moat = Moat::start().await;
    let key = moat.key.clone();
    let (_, sid) = moat.initialize("/mcp", &key, LEGACY).await;
    let mut stream = moat
        .http
        .get(moat.url("/mcp"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let r = moat.send(moat.http.delete(moat.url("/mcp")).bearer_auth(&key).header("mcp-session-id", &sid)).await;
    assert_eq!(r.status, StatusCode::OK);
    // The stream closes (keep-alive comments aside) soon after.
    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the session's GET stream stayed open after DELETE");
}
