//! One MCP client session over Streamable HTTP, as the load generator uses it.
//!
//! Each [`Session`] owns its own `reqwest::Client` (so its own keep-alive
//! connection): a virtual user. In the 2025-11-25 era it performs the
//! `initialize` / `notifications/initialized` handshake once and sends the
//! `Mcp-Session-Id` and `MCP-Protocol-Version` headers on every call after
//! it; in the 2026-07-28 era every request carries the per-request `_meta`
//! and the mirrored headers instead, with no handshake.
//!
//! Answers may be `application/json` or `text/event-stream` (a gateway may
//! stream a `tools/call`); the stream is read to its end, so that the
//! connection can be reused, and the response with the request's id is
//! taken from it.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

/// The legacy revision the load generator negotiates.
pub const LEGACY_VERSION: &str = "2025-11-25";
/// The modern, stateless revision.
pub const MODERN_VERSION: &str = "2026-07-28";

/// The protocol era a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Era {
    /// 2025-11-25: `initialize`, then `Mcp-Session-Id` on every request.
    Legacy,
    /// 2026-07-28: stateless, `_meta` on every request.
    Modern,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// Connecting, sending or reading failed.
    #[error("transport: {0}")]
    Transport(String),
    /// A non-2xx HTTP status.
    #[error("HTTP {0}")]
    Status(u16),
    /// A JSON-RPC error answer.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        /// The error code.
        code: i64,
        /// The error message.
        message: String,
    },
    /// A tool result with `isError: true`.
    #[error("tool error: {0}")]
    Tool(String),
    /// An answer that is not what the request asked for.
    #[error("bad response: {0}")]
    BadResponse(String),
}

impl CallError {
    /// A short label to count errors by.
    pub fn kind(&self) -> String {
        match self {
            CallError::Timeout => "timeout".into(),
            CallError::Transport(_) => "transport".into(),
            CallError::Status(s) => format!("http-{s}"),
            CallError::Rpc { code, .. } => format!("rpc{code}"),
            CallError::Tool(_) => "tool-error".into(),
            CallError::BadResponse(_) => "bad-response".into(),
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() { CallError::Timeout } else { CallError::Transport(error_chain(&e)) }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Where a session connects.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The MCP endpoint URL (`http://127.0.0.1:PORT/mcp`, `.../mcp/<server>`).
    pub url: String,
    /// A bearer token for `Authorization`, if the endpoint needs one.
    pub bearer: Option<String>,
}

/// How sessions talk.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// The protocol era.
    pub era: Era,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Send `Accept: application/json, text/event-stream` (what the spec
    /// requires of clients); `false` sends `Accept: application/json` only,
    /// which lets a server that would stream a `tools/call` answer with
    /// plain JSON instead (a diagnostic).
    pub accept_sse: bool,
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    url: String,
    era: Era,
    /// Headers sent on every request after the handshake.
    headers: HeaderMap,
    next_id: u64,
}

impl Session {
    /// Opens a session: a fresh HTTP client, and in the legacy era the
    /// `initialize` handshake.
    pub async fn connect(endpoint: &Endpoint, opts: SessionOptions) -> Result<Self, CallError> {
        let http = http_client(opts.timeout, 1)?;
        Self::connect_via(http, endpoint, opts).await
    }

    /// Opens a session over `http`, an HTTP client shared with other
    /// sessions (its keep-alive connections carry the requests of many
    /// sessions: what a session costs the server is then its state, not a
    /// connection).
    pub async fn connect_via(
        http: reqwest::Client,
        endpoint: &Endpoint,
        opts: SessionOptions,
    ) -> Result<Self, CallError> {
        let era = opts.era;
        let mut headers = HeaderMap::new();
        let accept = if opts.accept_sse { "application/json, text/event-stream" } else { "application/json" };
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(token) = &endpoint.bearer {
            let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| CallError::Transport("the API key is not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let mut session = Session { http, url: endpoint.url.clone(), era, headers, next_id: 1 };
        match era {
            Era::Legacy => session.initialize().await?,
            Era::Modern => {
                session.headers.insert("mcp-protocol-version", HeaderValue::from_static(MODERN_VERSION));
                session.headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
                session.headers.insert("mcp-name", HeaderValue::from_static("echo"));
            }
        }
        Ok(session)
    }

    async fn initialize(&mut self) -> Result<(), CallError> {
        let id = self.take_id();
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "moat-bench", "version": env!("CARGO_PKG_VERSION")},
            }
        });
        let resp = self.post(body.to_string()).await?;
        let session_id = resp.headers().get("mcp-session-id").cloned();
        let answer = read_answer(resp, id).await?;
        let version = answer
            .get("result")
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str)
            .ok_or_else(|| CallError::BadResponse("initialize result without protocolVersion".into()))?;
        let version = HeaderValue::from_str(version)
            .map_err(|_| CallError::BadResponse("protocolVersion is not a header value".into()))?;
        if let Some(sid) = session_id {
            self.headers.insert("mcp-session-id", sid);
        }
        self.headers.insert("mcp-protocol-version", version);
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let resp = self.post(note.to_owned()).await?;
        // Read (and discard) the body so that the connection is reused.
        resp.bytes().await.map_err(CallError::from_reqwest)?;
        Ok(())
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn post(&self, body: String) -> Result<reqwest::Response, CallError> {
        let resp = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(CallError::from_reqwest)?;
        if !resp.status().is_success() {
            return Err(CallError::Status(resp.status().as_u16()));
        }
        Ok(resp)
    }

    /// Calls the `echo` tool with `text_json` (a JSON string literal of the
    /// text) and checks that the answer is a successful result echoing it.
    pub async fn call_echo(&mut self, text_json: &str, text: &str) -> Result<(), CallError> {
        let id = self.take_id();
        let body = match self.era {
            Era::Legacy => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":{text_json}}}}}}}"#
            ),
            Era::Modern => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":{text_json}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"{MODERN_VERSION}","io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"moat-bench","version":"{}"}}}}}}}}"#,
                env!("CARGO_PKG_VERSION")
            ),
        };
        let resp = self.post(body).await?;
        let answer = read_answer(resp, id).await?;
        check_echo(&answer, text)
    }

    /// Sends `ping` in the session and checks that the answer is a result
    /// (a session the server no longer holds answers 404).
    pub async fn ping(&mut self) -> Result<(), CallError> {
        let id = self.take_id();
        let resp = self.post(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)).await?;
        let answer = read_answer(resp, id).await?;
        if answer.get("result").is_none() {
            return Err(CallError::BadResponse("ping answered without a result".into()));
        }
        Ok(())
    }

    /// Ends a legacy session (DELETE with its id); errors are ignored.
    pub async fn close(self) {
        if self.era == Era::Legacy && self.headers.contains_key("mcp-session-id") {
            let _ = self.http.delete(&self.url).headers(self.headers.clone()).send().await;
        }
    }
}

/// An HTTP/1.1 client for sessions: no proxy, `TCP_NODELAY`, no redirects,
/// at most `connections` idle keep-alive connections per host.
pub fn http_client(timeout: Duration, connections: usize) -> Result<reqwest::Client, CallError> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CallError::Transport(error_chain(&e)))
}

/// Reads a JSON or SSE answer to its end and returns the JSON-RPC response
/// whose id is `id`; a JSON-RPC error becomes [`CallError::Rpc`].
async fn read_answer(resp: reqwest::Response, id: u64) -> Result<Value, CallError> {
    let sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let body = resp.bytes().await.map_err(CallError::from_reqwest)?;
    let msg = if sse {
        sse_find_response(&body, id)?
    } else {
        serde_json::from_slice::<Value>(&body).map_err(|e| CallError::BadResponse(format!("not JSON: {e}")))?
    };
    if msg.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(CallError::BadResponse("the answer's id is not the request's".into()));
    }
    if let Some(err) = msg.get("error") {
        return Err(CallError::Rpc {
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err.get("message").and_then(Value::as_str).unwrap_or("").chars().take(200).collect(),
        });
    }
    Ok(msg)
}

/// The JSON-RPC response with `id` among the events of an SSE body
/// (notifications and other messages before it are skipped).
pub fn sse_find_response(body: &[u8], id: u64) -> Result<Value, CallError> {
    let text = std::str::from_utf8(body).map_err(|_| CallError::BadResponse("SSE body is not UTF-8".into()))?;
    let mut data = String::new();
    // A trailing empty line makes sure the last event is dispatched.
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() {
                if let Ok(msg) = serde_json::from_str::<Value>(&data)
                    && msg.get("id").and_then(Value::as_u64) == Some(id)
                    && (msg.get("result").is_some() || msg.get("error").is_some())
                {
                    return Ok(msg);
                }
                data.clear();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    Err(CallError::BadResponse("the event stream ended without the response".into()))
}

/// Checks a `tools/call` answer: a result, not `isError`, echoing `text`.
pub fn check_echo(answer: &Value, text: &str) -> Result<(), CallError> {
    let result = answer.get("result").ok_or_else(|| CallError::BadResponse("no result".into()))?;
    let first = result.get("content").and_then(|c| c.get(0)).and_then(|c| c.get("text")).and_then(Value::as_str);
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(CallError::Tool(first.unwrap_or("").chars().take(200).collect()));
    }
    match first {
        Some(t) if t == text => Ok(()),
        Some(_) => Err(CallError::BadResponse("the echoed text differs from the argument".into())),
        None => Err(CallError::BadResponse("no text content".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_skips_notifications_and_finds_the_response() {
        let body = b"id: s-1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                     id: s-2\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{}}\n\n";
        let msg = sse_find_response(body, 7).unwrap();
        assert_eq!(msg["id"], 7);
    }

    #[test]
    fn sse_without_the_response_is_an_error() {
        let body = b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n";
        assert!(matches!(sse_find_response(body, 4), Err(CallError::BadResponse(_))));
    }

    #[test]
    fn sse_last_event_without_blank_line() {
        let body = b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}";
        assert!(sse_find_response(body, 3).is_ok());
    }

    #[test]
    fn echo_checks() {
        let ok = serde_json::json!({"result": {"content": [{"type": "text", "text": "hi"}], "isError": false}});
        assert!(check_echo(&ok, "hi").is_ok());
        assert!(matches!(check_echo(&ok, "ho"), Err(CallError::BadResponse(_))));
        let tool_err = serde_json::json!({"result": {"content": [{"type": "text", "text": "no"}], "isError": true}});
        assert!(matches!(check_echo(&tool_err, "hi"), Err(CallError::Tool(_))));
    }
}
