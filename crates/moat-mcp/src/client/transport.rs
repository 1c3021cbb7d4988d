//! What the three transports have in common: the connection enum the core
//! drives, the internal failure type, and HTTP helpers (one client per
//! upstream, bounded body reads, SSE bodies, origin checks).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::meta::{Era, ServerHello};
use super::router::Router;
use super::sse::SseConn;
use super::stdio::StdioConn;
use super::streamable_http::HttpConn;
use super::{UpstreamError, UpstreamOptions};
use crate::jsonrpc::Message;
use crate::sse::{Decoder, Event};

/// Why one attempt at a call failed, as the retry logic needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Fail {
    /// Final: report this error.
    Error(UpstreamError),
    /// The upstream no longer knows our session (HTTP 404 on our session id):
    /// it did not process the request, so re-initialising and retrying is safe.
    SessionLost(String),
    /// The process or stream died while the call was in flight: it may or may
    /// not have been processed.
    Died(String),
    /// The upstream rejected the era we assumed: probe again, then retry.
    EraMismatch(String),
}

impl Fail {
    /// The error to report when no retry happens.
    pub(crate) fn into_error(self) -> UpstreamError {
        match self {
            Fail::Error(e) => e,
            Fail::SessionLost(m) | Fail::Died(m) | Fail::EraMismatch(m) => UpstreamError::Unavailable(m),
        }
    }
}

/// A live transport.
pub(crate) enum Conn {
    /// A child process.
    Stdio(StdioConn),
    /// Streamable HTTP, either era.
    Http(HttpConn),
    /// Legacy HTTP+SSE.
    Sse(SseConn),
}

impl Conn {
    /// Tells the transport which era (and protocol version) to speak.
    pub(crate) fn set_era(&self, era: Era, version: &str) {
        match self {
            Conn::Stdio(_) => {}
            Conn::Http(c) => c.set_era(era, version),
            Conn::Sse(c) => c.set_version(version),
        }
    }

    /// Starts whatever listens for server-initiated messages after the
    /// handshake (the legacy GET stream, the modern `subscriptions/listen`).
    pub(crate) fn start_background(&self, era: &Era, hello: &ServerHello) {
        if let Conn::Http(c) = self {
            c.start_background(*era, hello);
        }
    }

    /// Sends a notification.
    pub(crate) async fn send_notification(&self, msg: &Message) -> Result<(), Fail> {
        match self {
            Conn::Stdio(c) => c.send(msg).await,
            Conn::Http(c) => c.send_notification(msg).await,
            Conn::Sse(c) => c.post(msg).await,
        }
    }

    /// Tells the upstream to stop working on call `id` (best effort, never
    /// blocks: called from a destructor).
    pub(crate) fn cancel(&self, era: Era, id: u64, reason: &str) {
        let msg = Message::notification("notifications/cancelled", Some(json!({"requestId": id, "reason": reason})));
        match self {
            Conn::Stdio(c) => c.try_send(&msg),
            // Modern HTTP: dropping the response stream is the cancellation.
            Conn::Http(c) if era == Era::Legacy => c.spawn_post(msg),
            Conn::Http(_) => {}
            Conn::Sse(c) => c.spawn_post(msg),
        }
    }

    /// Ends the connection (stdio: the close/TERM/KILL ladder).
    pub(crate) async fn shutdown(&self) {
        match self {
            Conn::Stdio(c) => c.shutdown().await,
            Conn::Http(c) => c.shutdown().await,
            Conn::Sse(c) => c.shutdown(),
        }
    }
}

/// Sends request `msg` (whose id is `id`) and waits for its answer, routed
/// through `router`. `extra_headers` go with it on HTTP. The route is
/// removed whatever happens.
pub(crate) async fn raw_call(
    conn: &Conn,
    router: &Arc<Router>,
    id: u64,
    msg: Message,
    progress: Option<mpsc::Sender<Value>>,
    requests: Option<mpsc::Sender<super::ServerRequest>>,
    extra_headers: &http::HeaderMap,
) -> Result<Message, Fail> {
    struct Forget<'a>(&'a Router, u64);
    impl Drop for Forget<'_> {
        fn drop(&mut self) {
            self.0.forget_call(self.1);
        }
    }
    let mut rx = router.register(id, requests)?;
    let _forget = Forget(router, id);
    match conn {
        Conn::Stdio(c) => c.send(&msg).await?,
        Conn::Sse(c) => c.post(&msg).await?,
        Conn::Http(c) => return c.call(&msg, extra_headers, id, &mut rx, progress.as_ref()).await,
    }
    match rx.await {
        Ok(outcome) => outcome,
        Err(_) => Err(Fail::Died(format!("upstream `{}` closed the connection", router.name()))),
    }
}

/// Builds the one HTTP client an upstream uses: no redirects (a redirect
/// could carry credentials to another origin), bounded connect time.
pub(crate) fn build_http_client(opts: &UpstreamOptions) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(opts.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())
}

/// What every HTTP request to one upstream shares.
pub(crate) struct HttpShared {
    /// The upstream's configured name.
    pub(crate) name: Arc<str>,
    /// The upstream's one client (connection pool).
    pub(crate) client: reqwest::Client,
    /// The MCP endpoint (Streamable HTTP) or SSE URL (HTTP+SSE).
    pub(crate) url: reqwest::Url,
    /// Configured headers, marked sensitive.
    pub(crate) headers: http::HeaderMap,
    /// Size limit for any one message or body.
    pub(crate) max_message_bytes: usize,
}

impl HttpShared {
    /// Validates the URL and marks every configured header value sensitive.
    pub(crate) fn new(
        name: &Arc<str>,
        client: reqwest::Client,
        url: &str,
        headers: &[(http::HeaderName, http::HeaderValue)],
        max_message_bytes: usize,
    ) -> Result<Arc<HttpShared>, UpstreamError> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| UpstreamError::Unavailable(format!("upstream `{name}` has an invalid URL")))?;
        let mut map = http::HeaderMap::new();
        for (n, v) in headers {
            let mut v = v.clone();
            v.set_sensitive(true);
            map.append(n.clone(), v);
        }
        Ok(Arc::new(HttpShared { name: Arc::clone(name), client, url, headers: map, max_message_bytes }))
    }

    /// An error naming the upstream for a failed HTTP exchange. Never
    /// includes the URL (it may carry a token) or any header.
    pub(crate) fn send_error(&self, e: &reqwest::Error) -> Fail {
        let what = if e.is_connect() {
            "cannot connect to"
        } else if e.is_timeout() {
            "timed out talking to"
        } else {
            "lost the connection to"
        };
        Fail::Error(UpstreamError::Unavailable(format!("moat {what} upstream `{}`", self.name)))
    }

    /// The error for an HTTP status that is not otherwise understood.
    pub(crate) fn status_error(&self, status: reqwest::StatusCode) -> Fail {
        let hint = match status.as_u16() {
            401 | 403 => " (the upstream refused the credentials)",
            300..=399 => " (redirects are not followed)",
            _ => "",
        };
        Fail::Error(UpstreamError::Unavailable(format!(
            "upstream `{}` answered HTTP {}{hint}",
            self.name,
            status.as_u16()
        )))
    }

    /// The error for a body or event over the limit.
    pub(crate) fn too_large(&self) -> Fail {
        Fail::Error(UpstreamError::Protocol(format!(
            "upstream `{}` sent a message larger than {} bytes",
            self.name, self.max_message_bytes
        )))
    }
}

/// Reads a whole body, failing once it passes `max` bytes.
pub(crate) async fn read_body_limited(resp: reqwest::Response, max: usize) -> Result<Option<Bytes>, reqwest::Error> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Ok(None);
    }
    let mut stream = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(out)))
}

/// The media type of a response, lower-cased, without parameters.
pub(crate) fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Parses a body holding one JSON-RPC message or a batch of them. Entries
/// that are not valid messages are dropped (and counted).
pub(crate) fn parse_messages(bytes: &[u8]) -> (Vec<Message>, usize) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return (Vec::new(), 1);
    };
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut bad = 0;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match Message::from_value(item) {
            Ok(m) => out.push(m),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

/// An SSE response body read event by event, each bounded in size.
pub(crate) struct SseBody {
    stream: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    decoder: Decoder,
    queue: VecDeque<Event>,
    /// The last `id:` seen (for `Last-Event-ID`).
    pub(crate) last_event_id: Option<String>,
    /// The last `retry:` seen, in milliseconds.
    pub(crate) retry_ms: Option<u64>,
}

/// Why an SSE body stopped yielding events.
#[derive(Debug)]
pub(crate) enum SseEnd {
    /// An event exceeded the size limit.
    TooLarge,
    /// The connection broke.
    Broken,
}

impl SseBody {
    /// Wraps a response whose content type is `text/event-stream`.
    pub(crate) fn new(resp: reqwest::Response, max: usize) -> Self {
        SseBody {
            stream: resp.bytes_stream().boxed(),
            decoder: Decoder::new(max),
            queue: VecDeque::new(),
            last_event_id: None,
            retry_ms: None,
        }
    }

    /// The next event; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Event>, SseEnd> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                if let Some(id) = &ev.id {
                    self.last_event_id = Some(id.clone());
                }
                if let Some(r) = ev.retry {
                    self.retry_ms = Some(r);
                }
                return Ok(Some(ev));
            }
            match self.stream.next().await {
                None => return Ok(None),
                Some(Err(_)) => return Err(SseEnd::Broken),
                Some(Ok(chunk)) => {
                    let events = self.decoder.feed(&chunk).map_err(|_| SseEnd::TooLarge)?;
                    self.queue.extend(events);
                }
            }
        }
    }
}

/// True when an event carries a JSON-RPC message (type `message` or none).
pub(crate) fn is_message_event(ev: &Event) -> bool {
    matches!(ev.event.as_deref(), None | Some("message")) && !ev.data.trim().is_empty()
}

/// True when `a` and `b` share scheme, host and port.
pub(crate) fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(same_origin(&u("http://a:80/sse"), &u("http://a/messages?x=1")));
        assert!(!same_origin(&u("http://a/sse"), &u("https://a/messages")));
        assert!(!same_origin(&u("http://a/sse"), &u("http://b/messages")));
        assert!(!same_origin(&u("http://a:1/sse"), &u("http://a:2/messages")));
    }

    #[test]
    fn parses_single_and_batched_bodies() {
        let (m, bad) = parse_messages(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!((m.len(), bad), (1, 0));
        let (m, bad) = parse_messages(br#"[{"jsonrpc":"2.0","method":"x"},{"nope":1}]"#);
        assert_eq!((m.len(), bad), (1, 1));
        let (m, bad) = parse_messages(b"garbage");
        assert_eq!((m.len(), bad), (0, 1));
    }

    #[test]
    fn failures_become_errors_that_name_the_reason() {
        assert_eq!(
            Fail::Died("upstream `x` exited".into()).into_error(),
            UpstreamError::Unavailable("upstream `x` exited".into())
        );
        assert_eq!(Fail::Error(UpstreamError::Timeout).into_error(), UpstreamError::Timeout);
    }
}
