//! Authentication (401 + challenge), protected-resource metadata and the
//! Host/Origin allowlist (DNS-rebinding protection).

use crate::harness::{Moat, key_checksum, unknown_wellformed_key};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{Read, Write};

fn discover_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover",
        "params": { "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        } }
    })
    .to_string()
}

async fn mcp_with(moat: &Moat, key: Option<&str>) -> crate::harness::Resp {
    moat.send(
        moat.post_raw("/mcp", key, discover_body())
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "server/discover"),
    )
    .await
}

/// A key whose checksum does not match (last character changed).
fn wrong_checksum(key: &str) -> String {
    let mut k = key.to_owned();
    let last = k.pop().unwrap();
    k.push(if last == 'A' { 'B' } else { 'A' });
    k
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401_with_a_challenge() {
    let moat = Moat::start().await;
    let metadata =
        format!("Bearer resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"", moat.port);

    // No key.
    let r = mcp_with(&moat, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let challenge = r.header("www-authenticate").expect("WWW-Authenticate on /mcp");
    assert!(challenge.contains(&metadata), "{challenge}");
    let r = moat.get("/api/v1/whoami", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let challenge = r.header("www-authenticate").expect("WWW-Authenticate on /api");
    assert!(challenge.starts_with("Bearer resource_metadata=\""), "{challenge}");

    // Keys that are not valid.
    let sanity = unknown_wellformed_key();
    let body = &sanity[..sanity.len() - 6];
    assert_eq!(&sanity[sanity.len() - 6..], key_checksum(body));
    let bad = [
        "garbage".to_owned(),
        "moat_".to_owned(),
        wrong_checksum(&moat.key),
        unknown_wellformed_key(),
        // The right public id with another (well-formed) secret.
        {
            let body = format!("{}{}", &moat.key[..18], "x".repeat(43));
            format!("{body}{}", key_checksum(&body))
        },
    ];
    for key in &bad {
        let r = mcp_with(&moat, Some(key)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "key {key}: {}", r.text);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains(&metadata), "key {key}: {challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "key {key}: {challenge}");
        assert!(!r.text.contains(key.as_str()) || key.len() < 8, "the 401 echoes the key: {}", r.text);

        let r = moat.get("/api/v1/whoami", Some(key)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "key {key}: {}", r.text);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "key {key}: {challenge}");
    }
    // Not a bearer token at all.
    let r = moat.send(moat.http.get(moat.url("/api/v1/whoami")).basic_auth("user", Some("pw"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // The real key works.
    let r = mcp_with(&moat, Some(&moat.key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = moat.get("/api/v1/whoami", Some(&moat.key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["role"], "owner");
}

#[tokio::test]
async fn protected_resource_metadata_names_the_mcp_endpoint() {
    let moat = Moat::start().await;
    let r = moat.get("/.well-known/oauth-protected-resource/mcp", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v: Value = r.json();
    assert_eq!(v["resource"], format!("http://127.0.0.1:{}/mcp", moat.port), "{v}");
}

/// Sends a raw HTTP/1.1 request (to control the Host header exactly).
fn raw_status(port: u16, host: &str, key: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET /api/v1/whoami HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status: {text}"))
}

#[tokio::test]
async fn host_and_origin_are_checked_against_the_allowlist() {
    let moat = Moat::start().await;
    let port = moat.port;
    let discover = |origin: &str| {
        moat.post_raw("/mcp", Some(&moat.key), discover_body())
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "server/discover")
            .header("origin", origin)
    };
    let r = moat.send(discover("http://evil.example")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = moat.send(discover(&format!("http://evil.example:{port}"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = moat.send(discover(&format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Host: a rebinding attacker's name resolving to 127.0.0.1.
    assert_eq!(raw_status(port, &format!("evil.example:{port}"), &moat.key), 403);
    assert_eq!(raw_status(port, &format!("127.0.0.1:{port}"), &moat.key), 200);
    assert_eq!(raw_status(port, &format!("localhost:{port}"), &moat.key), 200);
    // The guard runs before authentication: no key needed to be refused.
    let r = moat.send(moat.http.get(moat.url("/api/v1/whoami")).header("origin", "http://evil.example")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}
