//! Liveness, readiness, metrics, graceful shutdown.

use crate::harness::Moat;
use reqwest::StatusCode;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn health_and_readiness() {
    let moat = Moat::start().await;
    let r = moat.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);

    let r = moat.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["checks"]["database"], "ok", "{v}");
    assert_eq!(v["checks"]["key_provider"], "ok", "{v}");

    // A KEK readable by others is a broken key provider: not ready.
    let kek = moat.data_dir().join("kek.key");
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = moat.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let v = r.json();
    assert_ne!(v["checks"]["key_provider"], "ok", "{v}");
    assert_eq!(v["checks"]["database"], "ok", "{v}");
    assert!(r.text.contains("key_provider"), "{}", r.text);
    assert!(r.text.contains("kek.key"), "the check names the key file: {}", r.text);
    // Liveness is unaffected.
    assert_eq!(moat.get("/healthz", None).await.status, StatusCode::OK);

    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = moat.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn metrics_count_http_and_mcp_requests() {
    let moat = Moat::start().await;
    let r = moat.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = moat.get("/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("moat_http_requests_total"), "{}", r.text);

    let r = moat.modern("/mcp", &moat.key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = moat.get("/metrics", None).await;
    assert!(r.text.contains("moat_mcp_requests_total"), "{}", r.text);
    assert!(
        r.text.lines().any(|l| l.starts_with("moat_mcp_requests_total") && l.contains("tools/list")),
        "no tools/list sample: {}",
        r.text
    );
    assert!(r.text.contains("moat_http_request_duration_seconds"), "latency histogram: {}", r.text);
}

#[tokio::test]
async fn sigterm_exits_zero_promptly() {
    let mut moat = Moat::start().await;
    // An open legacy GET stream must not hold up the shutdown.
    let (_, sid) = moat.initialize("/mcp", &moat.key.clone(), crate::harness::LEGACY).await;
    let stream = moat
        .http
        .get(moat.url("/mcp"))
        .bearer_auth(&moat.key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);

    let started = Instant::now();
    let status = moat.terminate(Duration::from_secs(8));
    drop(stream);
    let status = status.expect("moat did not exit within 8 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}; stderr:\n{}", moat.stderr());
    assert!(started.elapsed() < Duration::from_secs(8));
}
