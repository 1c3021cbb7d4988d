//! `bench-proxy`: the floor under moat's CPU per call.
//!
//! A pass-through HTTP proxy made of the same parts as moat's request path —
//! an axum/hyper HTTP/1.1 server with `TCP_NODELAY`, and a `reqwest` client
//! built with moat's upstream settings — and nothing else: no
//! authentication, no JSON parsing, no firewall, no credential, no audit, no
//! log line. It relays `/mcp` (POST, GET and DELETE; the MCP headers both
//! ways; bodies streamed) to one upstream.
//!
//! What it costs per call is the price of relaying one HTTP/1.1 exchange on
//! this stack and machine: the part of moat's CPU per call that no work
//! inside moat can remove. What moat costs above it is moat's own work.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use std::sync::Arc;
use std::time::Duration;

/// Request headers relayed to the upstream.
const REQUEST_HEADERS: &[&str] =
    &["content-type", "accept", "mcp-session-id", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name"];
/// Response headers relayed to the client.
const RESPONSE_HEADERS: &[&str] = &["content-type", "mcp-session-id", "cache-control"];

struct Proxy {
    client: reqwest::Client,
    upstream: String,
}

/// The proxy's router: every method on `/mcp`, relayed to `upstream`.
pub fn router(upstream: String) -> anyhow::Result<Router> {
    // moat's upstream client settings (moat-mcp `client::transport`).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?;
    Ok(Router::new().route("/mcp", any(relay)).with_state(Arc::new(Proxy { client, upstream })))
}

async fn relay(State(proxy): State<Arc<Proxy>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let mut out = HeaderMap::new();
    copy(&headers, &mut out, REQUEST_HEADERS);
    let sent = proxy.client.request(method, &proxy.upstream).headers(out).body(body).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let mut back = HeaderMap::new();
    copy(resp.headers(), &mut back, RESPONSE_HEADERS);
    let mut answer = Response::new(Body::from_stream(resp.bytes_stream()));
    *answer.status_mut() = status;
    *answer.headers_mut() = back;
    answer
}

fn copy(from: &HeaderMap, to: &mut HeaderMap, names: &[&'static str]) {
    for name in names {
        if let Some(v) = from.get(*name) {
            to.insert(HeaderName::from_static(name), v.clone());
        }
    }
}
