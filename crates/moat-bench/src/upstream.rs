//! `bench-upstream`: a minimal, fast MCP server over Streamable HTTP.
//!
//! It exists so that a load test measures the gateway, not the upstream: no
//! per-request logging, no session table, JSON answers only, and the
//! `tools/list` answer serialised once at start.
//!
//! What it speaks (POST `/mcp`, always `application/json`):
//! - 2025-11-25: `initialize` (answers the client's version when it is a
//!   known legacy one, else 2025-11-25, and sets `Mcp-Session-Id`),
//!   `notifications/*` → 202, `ping` → `{}`, `tools/list`, `tools/call`.
//!   Session ids are handed out but not checked: any id (or none) is served.
//! - 2026-07-28: a request carrying `_meta["io.modelcontextprotocol/protocolVersion"]`
//!   is served statelessly, without `initialize`. `server/discover` answers a
//!   `DiscoverResult` only with `--modern`; otherwise -32601, so that a
//!   gateway probing the era falls back to the `initialize` handshake.
//! - GET `/mcp` → 405 (no server-to-client stream), DELETE `/mcp` → 200.
//! - GET `/stats`: request counters, including how many requests carried an
//!   `X-Api-Key` header (to check that a gateway injected a credential). The
//!   header's value is never read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The legacy protocol versions an `initialize` may negotiate, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The modern, stateless revision.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The `_meta` key that marks a modern request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// How the upstream behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Answer `server/discover` (2026-07-28) instead of -32601.
    pub modern: bool,
}

/// Request counters, exposed at GET `/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    tool_calls: AtomicU64,
    with_api_key: AtomicU64,
    sessions: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// POSTs to `/mcp`.
    pub requests: u64,
    /// `tools/call` requests.
    pub tool_calls: u64,
    /// POSTs that carried an `X-Api-Key` header.
    pub with_api_key: u64,
    /// Sessions opened by `initialize`.
    pub sessions: u64,
}

impl Stats {
    fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            tool_calls: self.tool_calls.load(Ordering::Relaxed),
            with_api_key: self.with_api_key.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    opts: Options,
    stats: Stats,
    /// The `tools/list` result, serialised once.
    tools_list: String,
    /// Per-process prefix of session ids.
    session_prefix: u64,
}

/// The server's router: POST/GET/DELETE `/mcp`, GET `/stats`.
pub fn router(opts: Options) -> Router {
    let tools_list = tools_list().to_string();
    let session_prefix = session_prefix();
    let shared = Arc::new(Shared { opts, stats: Stats::default(), tools_list, session_prefix });
    Router::new()
        .route("/mcp", post(mcp_post).get(mcp_get).delete(mcp_delete))
        .route("/stats", get(stats))
        .with_state(shared)
}

fn session_prefix() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // Not a secret: session ids here only need to differ between runs.
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}

/// The tools this server lists.
pub fn tools_list() -> Value {
    json!({
        "tools": [
            {
                "name": "echo",
                "description": "Returns its text argument unchanged.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"text": {"type": "string", "description": "The text to return."}},
                    "required": ["text"]
                }
            },
            {
                "name": "add",
                "description": "Adds two numbers.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"]
                }
            },
            {
                "name": "noop",
                "description": "Does nothing and says ok.",
                "inputSchema": {"type": "object", "properties": {}}
            }
        ]
    })
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize, Default)]
struct Params {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    #[serde(default, rename = "protocolVersion")]
    protocol_version: Option<String>,
    #[serde(default, rename = "_meta")]
    meta: Option<Map<String, Value>>,
}

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: T,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: Option<&'a RawValue>,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i64,
    message: &'a str,
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct CallResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn success<T: Serialize>(id: &RawValue, result: T) -> Response {
    match serde_json::to_vec(&Success { jsonrpc: "2.0", id, result }) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A success whose result is already serialised.
fn success_raw(id: &RawValue, result: &str) -> Response {
    let mut body = Vec::with_capacity(40 + id.get().len() + result.len());
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    body.extend_from_slice(id.get().as_bytes());
    body.extend_from_slice(br#","result":"#);
    body.extend_from_slice(result.as_bytes());
    body.push(b'}');
    json_response(StatusCode::OK, body)
}

fn failure(status: StatusCode, id: Option<&RawValue>, code: i64, message: &str) -> Response {
    match serde_json::to_vec(&Failure { jsonrpc: "2.0", id, error: ErrorBody { code, message } }) {
        Ok(body) => json_response(status, body),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn mcp_post(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    if headers.contains_key("x-api-key") {
        shared.stats.with_api_key.fetch_add(1, Ordering::Relaxed);
    }
    let req: Request<'_> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return failure(StatusCode::BAD_REQUEST, None, -32700, "Parse error"),
    };
    let Some(method) = req.method.as_deref() else {
        // A response to a request we never send: accept and ignore.
        return StatusCode::ACCEPTED.into_response();
    };
    let Some(id) = req.id else {
        // Notifications (`notifications/initialized`, `notifications/cancelled`, ...).
        return StatusCode::ACCEPTED.into_response();
    };
    let params = req.params.unwrap_or_default();
    let modern = params.meta.as_ref().and_then(|m| m.get(META_PROTOCOL_VERSION)).and_then(Value::as_str).is_some();
    match method {
        "tools/call" => {
            shared.stats.tool_calls.fetch_add(1, Ordering::Relaxed);
            call_tool(id, &params, modern)
        }
        "tools/list" => success_raw(id, &shared.tools_list),
        "ping" => success(id, json!({})),
        "initialize" => initialize(&shared, id, &params),
        "server/discover" if shared.opts.modern => success(
            id,
            json!({
                "supportedVersions": [MODERN_VERSION, LEGACY_VERSIONS[0]],
                "capabilities": {"tools": {}},
                "serverInfo": server_info(),
            }),
        ),
        _ => failure(StatusCode::OK, Some(id), -32601, "Method not found"),
    }
}

fn server_info() -> Value {
    json!({"name": "bench-upstream", "version": env!("CARGO_PKG_VERSION")})
}

fn initialize(shared: &Shared, id: &RawValue, params: &Params) -> Response {
    let version = params
        .protocol_version
        .as_deref()
        .and_then(|v| LEGACY_VERSIONS.iter().find(|known| **known == v).copied())
        .unwrap_or(LEGACY_VERSIONS[0]);
    let n = shared.stats.sessions.fetch_add(1, Ordering::Relaxed);
    let mut resp = success(
        id,
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": server_info(),
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{:016x}{n:016x}", shared.session_prefix)) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

fn call_tool(id: &RawValue, params: &Params, modern: bool) -> Response {
    let result_type = modern.then_some("complete");
    let arg = |key: &str| params.arguments.as_ref().and_then(|a| a.get(key));
    match params.name.as_deref() {
        Some("echo") => match arg("text").and_then(Value::as_str) {
            Some(text) => {
                success(id, CallResult { content: [TextContent { kind: "text", text }], is_error: false, result_type })
            }
            None => success(
                id,
                CallResult {
                    content: [TextContent { kind: "text", text: "echo needs a string argument `text`" }],
                    is_error: true,
                    result_type,
                },
            ),
        },
        Some("add") => match (arg("a").and_then(Value::as_f64), arg("b").and_then(Value::as_f64)) {
            (Some(a), Some(b)) => {
                let text = (a + b).to_string();
                success(
                    id,
                    CallResult { content: [TextContent { kind: "text", text: &text }], is_error: false, result_type },
                )
            }
            _ => success(
                id,
                CallResult {
                    content: [TextContent { kind: "text", text: "add needs numbers `a` and `b`" }],
                    is_error: true,
                    result_type,
                },
            ),
        },
        Some("noop") => success(
            id,
            CallResult { content: [TextContent { kind: "text", text: "ok" }], is_error: false, result_type },
        ),
        _ => failure(StatusCode::OK, Some(id), -32602, "Unknown tool"),
    }
}

async fn mcp_get() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn mcp_delete() -> StatusCode {
    StatusCode::OK
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    match serde_json::to_vec(&shared.stats.snapshot()) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
