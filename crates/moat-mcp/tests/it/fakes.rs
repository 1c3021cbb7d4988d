//! In-test fake upstreams for what real servers rarely do on demand: lose
//! sessions, change era, redirect, hang, or speak garbage.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_mcp::client::{CallContext, Era, EraPreference, Upstream, UpstreamError, UpstreamEvent, UpstreamSpec};
use serde_json::{Value, json};

use crate::support::{FakeReq, FakeResp, fake_http, fake_tcp, opts};

fn http_up(url: String, era: EraPreference) -> Upstream {
    let mut o = opts(era);
    o.connect_timeout = Duration::from_secs(2);
    o.call_timeout = Duration::from_secs(5);
    Upstream::new(
        "fake",
        UpstreamSpec::StreamableHttp {
            url,
            headers: vec![(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer fake-secret-value"))],
        },
        o,
    )
}

fn result(req: &FakeReq, result: Value) -> FakeResp {
    FakeResp::json(200, &json!({"jsonrpc":"2.0","id":req.json()["id"],"result":result}))
}

/// A legacy-only Streamable HTTP server whose sessions "expire" on demand.
#[derive(Default)]
struct Legacy {
    log: Vec<String>,
    sessions: u32,
    expire_every_call: bool,
    expired_once: bool,
}

fn legacy_handler(state: Arc<Mutex<Legacy>>) -> impl Fn(FakeReq) -> FakeResp + Send + Sync + 'static {
    move |req: FakeReq| {
        assert_eq!(req.path, "/mcp");
        let mut st = state.lock().unwrap();
        let body = req.json();
        let method = body["method"].as_str().unwrap_or("").to_owned();
        let sid = req.header("mcp-session-id").map(str::to_owned);
        st.log.push(format!("{} {} {}", req.method, method, sid.clone().unwrap_or_default()));
        if req.method == "GET" {
            return FakeResp::status(405);
        }
        if req.method == "DELETE" {
            return FakeResp::status(200);
        }
        match method.as_str() {
            "initialize" => {
                st.sessions += 1;
                let sid = format!("s{}", st.sessions);
                result(&req, json!({"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"fake"}}))
                    .with("mcp-session-id", &sid)
            }
            // Legacy servers reject requests without a session: 400, no JSON-RPC body.
            _ if sid.is_none() => FakeResp::status(400),
            "notifications/initialized" => FakeResp::status(202),
            "tools/list" => {
                assert_eq!(req.header("mcp-protocol-version"), Some("2025-06-18"));
                assert_eq!(req.header("authorization"), Some("Bearer fake-secret-value"));
                let current = format!("s{}", st.sessions);
                if st.expire_every_call || (!st.expired_once && sid.as_deref() == Some("s1")) {
                    st.expired_once = true;
                    return FakeResp::status(404);
                }
                assert_eq!(sid.as_deref(), Some(current.as_str()));
                assert!(body["params"].get("_meta").is_none(), "hop keys stripped: {body}");
                result(&req, json!({"tools":[]}))
            }
            _ => {
                FakeResp::json(200, &json!({"jsonrpc":"2.0","id":body["id"],"error":{"code":-32601,"message":"nope"}}))
            }
        }
    }
}

#[tokio::test]
async fn a_lost_session_is_reinitialised_and_the_call_retried_once() {
    let state = Arc::new(Mutex::new(Legacy::default()));
    let addr = fake_http(legacy_handler(Arc::clone(&state))).await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Auto);
    up.connect().await.unwrap();
    assert_eq!(up.hello().unwrap().era, Era::Legacy, "400 on server/discover means legacy");
    assert_eq!(up.hello().unwrap().protocol_version, "2025-06-18");
    let mut events = up.events();
    let params = json!({"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}});
    let tools = up.request("tools/list", Some(params), CallContext::default()).await.unwrap();
    assert_eq!(tools, json!({"tools":[]}));
    assert_eq!(state.lock().unwrap().sessions, 2);
    let mut got = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        got.push(ev);
    }
    assert!(got.contains(&UpstreamEvent::SessionReestablished), "{got:?}");
    let log = state.lock().unwrap().log.clone();
    assert_eq!(log.iter().filter(|l| l.starts_with("POST tools/list")).count(), 2, "{log:?}");
    up.shutdown().await;
    // DELETE ends the session.
    let log = state.lock().unwrap().log.clone();
    assert!(log.iter().any(|l| l == "DELETE  s2"), "{log:?}");
}

#[tokio::test]
async fn a_session_that_keeps_vanishing_fails_after_one_retry() {
    let state = Arc::new(Mutex::new(Legacy { expire_every_call: true, ..Legacy::default() }));
    let addr = fake_http(legacy_handler(Arc::clone(&state))).await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Legacy);
    let err = up.request("tools/list", None, CallContext::default()).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Unavailable(m) if m.contains("fake")), "{err:?}");
    let log = state.lock().unwrap().log.clone();
    assert_eq!(log.iter().filter(|l| l.starts_with("POST tools/list")).count(), 2, "{log:?}");
    assert!(!format!("{err:?}").contains("fake-secret-value"));
    up.shutdown().await;
}

#[tokio::test]
async fn modern_requests_carry_headers_and_meta_and_a_changed_era_is_reprobed() {
    let seen: Arc<Mutex<Vec<FakeReq>>> = Arc::default();
    let legacy_now = Arc::new(Mutex::new(false));
    let (s, l) = (Arc::clone(&seen), Arc::clone(&legacy_now));
    let addr = fake_http(move |req: FakeReq| {
        s.lock().unwrap().push(req.clone());
        let body = req.json();
        let method = body["method"].as_str().unwrap_or("").to_owned();
        if *l.lock().unwrap() {
            // Now a legacy-only server.
            return match method.as_str() {
                "initialize" => {
                    result(&req, json!({"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"old"}}))
                }
                "notifications/initialized" => FakeResp::status(202),
                "tools/call" if req.header("mcp-protocol-version") == Some("2025-11-25") => {
                    result(&req, json!({"content":[{"type":"text","text":"legacy"}]}))
                }
                _ => FakeResp::status(400),
            };
        }
        if req.method != "POST" {
            return FakeResp::status(405);
        }
        match method.as_str() {
            "server/discover" => result(
                &req,
                json!({"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},
                "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"new"}}}),
            ),
            "tools/call" => result(&req, json!({"content":[{"type":"text","text":"modern"}]})),
            "unknown/method" => FakeResp::json(
                404,
                &json!({"jsonrpc":"2.0","id":body["id"],"error":{"code":-32601,"message":"Method not found"}}),
            ),
            _ => FakeResp::status(400),
        }
    })
    .await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Auto);
    let ctx = CallContext { client_capabilities: Some(json!({"elicitation":{}})), ..CallContext::default() };
    let r = up
        .request(
            "tools/call",
            Some(json!({"name":"wëather","arguments":{},"_meta":{"progressToken":"p","io.modelcontextprotocol/clientInfo":{"name":"spoof"}}})),
            ctx,
        )
        .await
        .unwrap();
    assert_eq!(r["content"][0]["text"], "modern");
    assert_eq!(up.hello().unwrap().server_info["name"], "new");
    {
        let seen = seen.lock().unwrap();
        let discover = &seen[0];
        assert_eq!(discover.header("mcp-method"), Some("server/discover"));
        assert_eq!(discover.header("mcp-protocol-version"), Some("2026-07-28"));
        let call = seen.iter().find(|r| r.json()["method"] == "tools/call").unwrap();
        assert_eq!(call.header("mcp-method"), Some("tools/call"));
        assert_eq!(call.header("mcp-name"), Some("=?base64?d8OrYXRoZXI=?="));
        assert_eq!(call.header("authorization"), Some("Bearer fake-secret-value"));
        let meta = &call.json()["params"]["_meta"];
        assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
        assert_eq!(meta["io.modelcontextprotocol/clientCapabilities"], json!({"elicitation":{}}));
        assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "moat");
        assert!(meta["progressToken"].as_str().unwrap().starts_with("moat-"));
    }
    // A modern 404 with a JSON-RPC error passes through as that error.
    let err = up.request("unknown/method", None, CallContext::default()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Rpc(ref e) if e.code == -32601), "{err:?}");
    // The server is replaced by a legacy one: the era is probed again.
    *legacy_now.lock().unwrap() = true;
    let r = up.request("tools/call", Some(json!({"name":"x","arguments":{}})), CallContext::default()).await.unwrap();
    assert_eq!(r["content"][0]["text"], "legacy");
    assert_eq!(up.hello().unwrap().era, Era::Legacy);
    up.shutdown().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let addr = fake_http(|_req: FakeReq| FakeResp::status(307).with("location", "http://127.0.0.1:1/elsewhere")).await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Modern);
    let err = up.connect().await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Unavailable(m) if m.contains("redirect")), "{err:?}");
    up.shutdown().await;
}

#[tokio::test]
async fn garbage_hangs_and_oversize_bodies_fail_cleanly() {
    // Not HTTP at all.
    let addr = fake_tcp(Some(b"garbage garbage\r\n\r\n")).await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Auto);
    let err = up.connect().await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Unavailable(m) if m.contains("fake")), "{err:?}");
    up.shutdown().await;

    // Accepts and never answers: the deadline holds.
    let addr = fake_tcp(None).await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Auto);
    let started = std::time::Instant::now();
    let err = up.connect().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unavailable(_) | UpstreamError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let ctx = CallContext { timeout: Some(Duration::from_millis(300)), ..CallContext::default() };
    assert!(up.request("tools/list", None, ctx).await.is_err());
    up.shutdown().await;

    // 200 with a body that is not JSON-RPC, then one over the limit.
    let big = Arc::new(Mutex::new(false));
    let b = Arc::clone(&big);
    let addr = fake_http(move |req: FakeReq| {
        let method = req.json()["method"].as_str().unwrap_or("").to_owned();
        match method.as_str() {
            "server/discover" => result(&req, json!({"supportedVersions":["2026-07-28"],"capabilities":{}})),
            _ if *b.lock().unwrap() => {
                let mut r = FakeResp::json(
                    200,
                    &json!({"jsonrpc":"2.0","id":req.json()["id"],"result":{"x":"y".repeat(100_000)}}),
                );
                r.body.extend_from_slice(b" ");
                r
            }
            _ => FakeResp {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{not json".to_vec(),
            },
        }
    })
    .await;
    let mut o = opts(EraPreference::Auto);
    o.max_message_bytes = 50_000;
    let up =
        Upstream::new("fake", UpstreamSpec::StreamableHttp { url: format!("http://{addr}/mcp"), headers: vec![] }, o);
    let err = up.request("tools/list", None, CallContext::default()).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Protocol(m) if m.contains("fake")), "{err:?}");
    *big.lock().unwrap() = true;
    let err = up.request("tools/list", None, CallContext::default()).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Protocol(m) if m.contains("50000")), "{err:?}");
    up.shutdown().await;
}

#[tokio::test]
async fn an_sse_endpoint_on_another_origin_is_refused() {
    let addr = fake_http(|_req: FakeReq| FakeResp {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: b"event: endpoint\ndata: http://203.0.113.9/messages?s=1\n\n".to_vec(),
    })
    .await;
    let up = Upstream::new(
        "fakesse",
        UpstreamSpec::Sse { url: format!("http://{addr}/sse"), headers: vec![] },
        opts(EraPreference::Auto),
    );
    let err = up.connect().await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Protocol(m) if m.contains("another origin")), "{err:?}");
    up.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstreams_fail_fast_and_name_the_server() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let up = http_up(format!("http://{addr}/mcp?token=url-secret"), EraPreference::Auto);
    let err = up.request("tools/list", None, CallContext::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("fake") && !text.contains("url-secret"), "{text}");
    up.shutdown().await;
}

#[tokio::test]
async fn modern_tools_with_invalid_header_annotations_are_excluded() {
    let seen: Arc<Mutex<Vec<FakeReq>>> = Arc::default();
    let s = Arc::clone(&seen);
    let addr = fake_http(move |req: FakeReq| {
        s.lock().unwrap().push(req.clone());
        match req.json()["method"].as_str().unwrap_or("") {
            "server/discover" => result(&req, json!({"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}})),
            "tools/list" => result(&req, json!({"tools":[
                {"name":"good","inputSchema":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}}},
                {"name":"bad","inputSchema":{"type":"object","properties":{"f":{"type":"number","x-mcp-header":"F"}}}},
                {"name":"plain","inputSchema":{"type":"object"}}]})),
            "tools/call" => result(&req, json!({"content":[]})),
            _ => FakeResp::status(400),
        }
    })
    .await;
    let up = http_up(format!("http://{addr}/mcp"), EraPreference::Modern);
    let list = up.request("tools/list", None, CallContext::default()).await.unwrap();
    let names: Vec<&str> = list["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["good", "plain"]);
    up.request("tools/call", Some(json!({"name":"good","arguments":{"n":42}})), CallContext::default()).await.unwrap();
    let call = seen.lock().unwrap().iter().find(|r| r.json()["method"] == "tools/call").cloned().unwrap();
    assert_eq!(call.header("mcp-param-n"), Some("42"));
    up.shutdown().await;
}
