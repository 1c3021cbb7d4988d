//! The Streamable HTTP transport, in both eras.
//!
//! - **Modern** (2026-07-28): every POST carries `MCP-Protocol-Version`,
//!   `Mcp-Method` and, where the spec names one, `Mcp-Name`; no session; a
//!   `subscriptions/listen` stream (when the server announces `listChanged`)
//!   feeds list changes to the event channel. Dropping a response stream is
//!   the cancellation.
//! - **Legacy** (2025-11-25 and earlier): `initialize` yields an
//!   `Mcp-Session-Id`, sent with the negotiated `MCP-Protocol-Version` on
//!   every later request; a GET stream (when offered; 405 is fine) carries
//!   server-initiated messages; a response stream that ends early is resumed
//!   with `Last-Event-ID`; a 404 on our session id means the session is gone
//!   (re-initialise and retry once); DELETE ends the session.
//!
//! Responses may be `application/json` or `text/event-stream`; every body and
//! event is bounded by `max_message_bytes`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::UpstreamError;
use super::meta::{self, Era, ServerHello};
use super::router::{Answer, Router};
use super::transport::{
    Fail, HttpShared, SseBody, SseEnd, content_type, is_message_event, parse_messages, read_body_limited,
};
use crate::jsonrpc::{Message, code};
use crate::protocol;

/// The most bytes read from an error response.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How often an interrupted legacy response stream is resumed.
const MAX_RESUMES: usize = 3;
/// Longest wait between reconnections of a background stream.
const MAX_STREAM_DELAY: Duration = Duration::from_secs(30);
/// Deadline for fire-and-forget POSTs (replies, cancellations) and DELETE.
const SIDE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct HttpState {
    era: Era,
    version: String,
    session: Option<http::HeaderValue>,
}

struct HttpInner {
    shared: Arc<HttpShared>,
    client_info: Value,
    router: Arc<Router>,
    state: RwLock<HttpState>,
}

/// A Streamable HTTP connection (really: a session, or none for modern).
pub(crate) struct HttpConn {
    inner: Arc<HttpInner>,
    stop: CancellationToken,
}

impl HttpConn {
    /// A connection that has not talked to the upstream yet.
    pub(crate) fn new(shared: Arc<HttpShared>, router: Arc<Router>, client_info: Value) -> Self {
        HttpConn {
            inner: Arc::new(HttpInner {
                shared,
                client_info,
                router,
                state: RwLock::new(HttpState {
                    era: Era::Legacy,
                    version: protocol::LEGACY_LATEST.to_owned(),
                    session: None,
                }),
            }),
            stop: CancellationToken::new(),
        }
    }

    /// Switches the era (used around the discovery probe and after it).
    pub(crate) fn set_era(&self, era: Era, version: &str) {
        if let Ok(mut st) = self.inner.state.write() {
            st.era = era;
            st.version = version.to_owned();
        }
    }

    /// Starts the background stream for server-initiated messages.
    pub(crate) fn start_background(&self, era: Era, hello: &ServerHello) {
        match era {
            Era::Legacy => {
                tokio::spawn(listen_legacy(Arc::clone(&self.inner), self.stop.clone()));
            }
            Era::Modern => {
                let filter = listen_filter(&hello.capabilities);
                if !filter.is_empty() {
                    tokio::spawn(listen_modern(Arc::clone(&self.inner), self.stop.clone(), filter));
                }
            }
        }
    }

    /// Sends request `msg` (id `id`) and reads its answer from the response
    /// body, routing everything else it carries.
    pub(crate) async fn call(
        &self,
        msg: &Message,
        extra_headers: &http::HeaderMap,
        id: u64,
        rx: &mut oneshot::Receiver<Answer>,
        progress: Option<&mpsc::Sender<Value>>,
    ) -> Result<Message, Fail> {
        let inner = &self.inner;
        let state = inner.state();
        let resp = inner.post(msg, &state, extra_headers).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(inner.rejection(resp, &state, id).await);
        }
        if msg.method_str() == "initialize"
            && let Some(sid) = resp.headers().get(protocol::HEADER_SESSION_ID)
        {
            let mut sid = sid.clone();
            sid.set_sensitive(true);
            if let Ok(mut st) = inner.state.write() {
                st.session = Some(sid);
            }
        }
        if status == reqwest::StatusCode::ACCEPTED {
            // No body: the answer will come on the GET stream.
            return match rx.await {
                Ok(answer) => answer,
                Err(_) => Err(Fail::Died(format!("upstream `{}` closed the connection", inner.shared.name))),
            };
        }
        match content_type(&resp).as_str() {
            "application/json" => {
                let body = read_body_limited(resp, inner.shared.max_message_bytes)
                    .await
                    .map_err(|e| inner.shared.send_error(&e))?
                    .ok_or_else(|| inner.shared.too_large())?;
                let (messages, bad) = parse_messages(&body);
                if bad > 0 {
                    tracing::warn!(upstream = %inner.shared.name, "ignored a response body that is not JSON-RPC");
                }
                for m in messages {
                    inner.route(m, progress, Some(id));
                }
                match rx.try_recv() {
                    Ok(answer) => answer,
                    Err(_) => Err(Fail::Error(UpstreamError::Protocol(format!(
                        "upstream `{}` answered without a JSON-RPC response",
                        inner.shared.name
                    )))),
                }
            }
            "text/event-stream" => inner.read_response_stream(resp, &state, rx, progress, id).await,
            _ => Err(Fail::Error(UpstreamError::Protocol(format!(
                "upstream `{}` answered with an unexpected content type",
                inner.shared.name
            )))),
        }
    }

    /// Sends a notification (or response); expects 202.
    pub(crate) async fn send_notification(&self, msg: &Message) -> Result<(), Fail> {
        let inner = &self.inner;
        let state = inner.state();
        let resp = inner.post(msg, &state, &http::HeaderMap::new()).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(inner.rejection(resp, &state, 0).await)
    }

    /// POSTs a message in the background (replies, cancellations).
    pub(crate) fn spawn_post(&self, msg: Message) {
        spawn_post(Arc::clone(&self.inner), msg);
    }

    /// Stops background streams and ends a legacy session with DELETE.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let inner = &self.inner;
        let state = inner.state();
        if state.era == Era::Legacy
            && let Some(sid) = state.session
        {
            let req = inner
                .shared
                .client
                .delete(inner.shared.url.clone())
                .headers(inner.shared.headers.clone())
                .headers(meta::legacy_headers(&state.version, Some(&sid)));
            let _ = tokio::time::timeout(Duration::from_secs(2), req.send()).await;
        }
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn spawn_post(inner: Arc<HttpInner>, msg: Message) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let state = inner.state();
        let sent = tokio::time::timeout(SIDE_TIMEOUT, async {
            if let Ok(resp) = inner.post(&msg, &state, &http::HeaderMap::new()).await {
                let _ = read_body_limited(resp, MAX_ERROR_BODY).await;
            }
        })
        .await;
        if sent.is_err() {
            tracing::debug!(upstream = %inner.shared.name, "a message to the upstream timed out");
        }
    });
}

impl HttpInner {
    fn state(&self) -> HttpState {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The era's headers for `msg`.
    fn headers_for(&self, msg: &Message, state: &HttpState) -> Result<http::HeaderMap, Fail> {
        match state.era {
            Era::Modern => meta::modern_headers(msg).map_err(|why| {
                Fail::Error(UpstreamError::Protocol(format!("cannot send to upstream `{}`: {why}", self.shared.name)))
            }),
            // `initialize` precedes the version and the session.
            Era::Legacy if msg.method_str() == "initialize" => Ok(http::HeaderMap::new()),
            Era::Legacy => Ok(meta::legacy_headers(&state.version, state.session.as_ref())),
        }
    }

    async fn post(
        &self,
        msg: &Message,
        state: &HttpState,
        extra_headers: &http::HeaderMap,
    ) -> Result<reqwest::Response, Fail> {
        let body = msg.to_bytes();
        if body.len() > self.shared.max_message_bytes {
            return Err(Fail::Error(UpstreamError::Protocol(format!(
                "the message for upstream `{}` exceeds {} bytes",
                self.shared.name, self.shared.max_message_bytes
            ))));
        }
        // One header map per request, later sources replacing earlier ones.
        let mut headers = self.shared.headers.clone();
        replace_headers(&mut headers, self.headers_for(msg, state)?);
        replace_headers(&mut headers, extra_headers.clone());
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json, text/event-stream"));
        self.shared
            .client
            .post(self.shared.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| self.shared.send_error(&e))
    }

    async fn get_stream(&self, state: &HttpState, last_event_id: Option<&str>) -> Result<reqwest::Response, Fail> {
        let mut req = self
            .shared
            .client
            .get(self.shared.url.clone())
            .headers(self.shared.headers.clone())
            .headers(meta::legacy_headers(&state.version, state.session.as_ref()))
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id.and_then(|id| http::HeaderValue::from_str(id).ok()) {
            req = req.header(protocol::HEADER_LAST_EVENT_ID, id);
        }
        req.send().await.map_err(|e| self.shared.send_error(&e))
    }

    /// Routes one message from a response stream (of call `call`, if it is
    /// one); replies to server requests.
    fn route(self: &Arc<Self>, msg: Message, progress: Option<&mpsc::Sender<Value>>, call: Option<u64>) {
        if msg.kind() == crate::jsonrpc::Kind::Request && self.state().era == Era::Modern {
            // The modern era has no server-to-client requests.
            tracing::debug!(upstream = %self.shared.name, "ignored a request from a modern upstream");
            return;
        }
        if let Some(reply) = self.router.dispatch(msg, progress, call) {
            let inner = Arc::clone(self);
            tokio::spawn(async move { spawn_post(inner, reply.await) });
        }
    }

    /// Reads a `text/event-stream` response until our answer arrives,
    /// resuming a legacy stream that ends early.
    async fn read_response_stream(
        self: &Arc<Self>,
        resp: reqwest::Response,
        state: &HttpState,
        rx: &mut oneshot::Receiver<Answer>,
        progress: Option<&mpsc::Sender<Value>>,
        call: u64,
    ) -> Result<Message, Fail> {
        let max = self.shared.max_message_bytes;
        let mut body = SseBody::new(resp, max);
        let mut resumes = 0;
        loop {
            match body.next().await {
                Ok(Some(ev)) => {
                    if !is_message_event(&ev) {
                        continue;
                    }
                    let (messages, bad) = parse_messages(ev.data.as_bytes());
                    if bad > 0 {
                        tracing::warn!(upstream = %self.shared.name, "ignored an event that is not JSON-RPC");
                    }
                    for m in messages {
                        self.route(m, progress, Some(call));
                    }
                    if let Ok(answer) = rx.try_recv() {
                        return answer;
                    }
                }
                Err(SseEnd::TooLarge) => return Err(self.shared.too_large()),
                Ok(None) | Err(SseEnd::Broken) => {
                    let last = body.last_event_id.clone();
                    let can_resume = state.era == Era::Legacy && last.is_some() && resumes < MAX_RESUMES;
                    if !can_resume {
                        return Err(Fail::Died(format!(
                            "upstream `{}` closed the response stream before answering",
                            self.shared.name
                        )));
                    }
                    resumes += 1;
                    let wait = Duration::from_millis(body.retry_ms.unwrap_or(1000).min(5000));
                    tokio::time::sleep(wait).await;
                    let resp = self.get_stream(state, last.as_deref()).await?;
                    if !resp.status().is_success() || content_type(&resp) != "text/event-stream" {
                        return Err(Fail::Died(format!(
                            "upstream `{}` could not resume the response stream",
                            self.shared.name
                        )));
                    }
                    body = SseBody::new(resp, max);
                    body.last_event_id = last;
                }
            }
        }
    }

    /// Interprets a non-2xx answer.
    async fn rejection(&self, resp: reqwest::Response, state: &HttpState, id: u64) -> Fail {
        let status = resp.status();
        let name = &self.shared.name;
        let body = read_body_limited(resp, MAX_ERROR_BODY).await.ok().flatten();
        let error =
            body.as_deref().map(parse_messages).and_then(|(msgs, _)| msgs.into_iter().find(|m| m.error.is_some()));
        let ours = error.as_ref().is_some_and(|m| m.id.as_ref().and_then(Value::as_u64) == Some(id));
        let err_obj = error.and_then(|m| m.error);
        if matches!(status.as_u16(), 401 | 403) || status.is_server_error() || status.is_redirection() {
            return self.shared.status_error(status);
        }
        match state.era {
            Era::Legacy => {
                if status == reqwest::StatusCode::NOT_FOUND && state.session.is_some() {
                    return Fail::SessionLost(format!("upstream `{name}` no longer knows moat's session"));
                }
                match err_obj {
                    Some(e) if e.code == code::UNSUPPORTED_PROTOCOL_VERSION => {
                        Fail::EraMismatch(format!("upstream `{name}` no longer accepts protocol {}", state.version))
                    }
                    Some(e) => Fail::Error(UpstreamError::Rpc(e)),
                    None => self.shared.status_error(status),
                }
            }
            Era::Modern => match err_obj {
                Some(e) if ours || meta::is_modern_error(e.code) => Fail::Error(UpstreamError::Rpc(e)),
                // Not a modern answer: the upstream may have changed era.
                _ => Fail::EraMismatch(format!(
                    "upstream `{name}` rejected a {} request with HTTP {}",
                    protocol::MODERN,
                    status.as_u16()
                )),
            },
        }
    }
}

/// The `subscriptions/listen` filter for what the server says can change.
fn listen_filter(capabilities: &Value) -> serde_json::Map<String, Value> {
    let mut filter = serde_json::Map::new();
    for (cap, key) in
        [("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged")]
    {
        if capabilities.get(cap).and_then(|c| c.get("listChanged")).and_then(Value::as_bool) == Some(true) {
            filter.insert(key.into(), Value::Bool(true));
        }
    }
    filter
}

/// Keeps the legacy GET stream open while the session lives.
async fn listen_legacy(inner: Arc<HttpInner>, stop: CancellationToken) {
    let mut delay = Duration::from_secs(1);
    let mut last_event_id: Option<String> = None;
    loop {
        let state = inner.state();
        let resp = tokio::select! {
            r = inner.get_stream(&state, last_event_id.as_deref()) => r,
            () = stop.cancelled() => return,
        };
        match resp {
            Ok(resp) if resp.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(upstream = %inner.shared.name, "upstream offers no GET stream");
                return;
            }
            Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND && state.session.is_some() => {
                let reason = format!("upstream `{}` no longer knows moat's session", inner.shared.name);
                inner.router.kill(reason.clone(), Fail::Died(reason), false, true);
                return;
            }
            Ok(resp) if resp.status().is_success() && content_type(&resp) == "text/event-stream" => {
                delay = Duration::from_secs(1);
                let mut body = SseBody::new(resp, inner.shared.max_message_bytes);
                body.last_event_id = last_event_id.take();
                loop {
                    let ev = tokio::select! {
                        e = body.next() => e,
                        () = stop.cancelled() => return,
                    };
                    match ev {
                        Ok(Some(ev)) if is_message_event(&ev) => {
                            for m in parse_messages(ev.data.as_bytes()).0 {
                                inner.route(m, None, None);
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                last_event_id = body.last_event_id.clone();
                if let Some(ms) = body.retry_ms {
                    delay = Duration::from_millis(ms).min(MAX_STREAM_DELAY);
                }
            }
            Ok(resp) => {
                tracing::debug!(upstream = %inner.shared.name, status = resp.status().as_u16(), "GET stream refused");
                delay = (delay * 2).min(MAX_STREAM_DELAY);
            }
            Err(_) => delay = (delay * 2).min(MAX_STREAM_DELAY),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Keeps a modern `subscriptions/listen` stream open.
async fn listen_modern(inner: Arc<HttpInner>, stop: CancellationToken, filter: serde_json::Map<String, Value>) {
    let mut delay = Duration::from_secs(1);
    let mut n: u64 = 0;
    loop {
        n += 1;
        let (params, _) =
            meta::prepare_params(Some(json!({"notifications": filter})), Era::Modern, None, &inner.client_info, None);
        let msg = Message::request(json!(format!("moat-listen-{n}")), "subscriptions/listen", params);
        let state = inner.state();
        let no_extra = http::HeaderMap::new();
        let resp = tokio::select! {
            r = inner.post(&msg, &state, &no_extra) => r,
            () = stop.cancelled() => return,
        };
        match resp {
            Ok(resp) if resp.status().is_success() && content_type(&resp) == "text/event-stream" => {
                delay = Duration::from_secs(1);
                let mut body = SseBody::new(resp, inner.shared.max_message_bytes);
                loop {
                    let ev = tokio::select! {
                        e = body.next() => e,
                        () = stop.cancelled() => return,
                    };
                    match ev {
                        Ok(Some(ev)) if is_message_event(&ev) => {
                            for m in parse_messages(ev.data.as_bytes()).0 {
                                if m.kind() == crate::jsonrpc::Kind::Response {
                                    // The server ended the subscription.
                                    if m.error.is_some() {
                                        tracing::debug!(upstream = %inner.shared.name, "subscriptions/listen refused");
                                        return;
                                    }
                                    continue;
                                }
                                inner.route(m, None, None);
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Ok(resp) => {
                // A JSON answer or an error status: listening is not offered.
                tracing::debug!(upstream = %inner.shared.name, status = resp.status().as_u16(), "no subscriptions/listen stream");
                return;
            }
            Err(_) => delay = (delay * 2).min(MAX_STREAM_DELAY),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Puts every header of `src` into `dst`, replacing the values `dst` had
/// under the same name (a name repeated in `src` keeps all its values).
fn replace_headers(dst: &mut http::HeaderMap, src: http::HeaderMap) {
    let mut last: Option<http::HeaderName> = None;
    for (name, value) in src {
        match name {
            Some(name) => {
                dst.insert(name.clone(), value);
                last = Some(name);
            }
            None => {
                if let Some(name) = &last {
                    dst.append(name.clone(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_only_for_announced_changes() {
        let f = listen_filter(&json!({"tools":{"listChanged":true},"prompts":{},"resources":{"listChanged":false}}));
        assert_eq!(Value::Object(f), json!({"toolsListChanged": true}));
        assert!(listen_filter(&json!({})).is_empty());
    }
}
