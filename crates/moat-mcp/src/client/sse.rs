//! The legacy HTTP+SSE transport (protocol 2024-11-05, deprecated but still
//! deployed): GET the SSE URL, wait for the `endpoint` event, POST every
//! message to that endpoint; answers arrive on the SSE stream and are
//! matched by id.
//!
//! The endpoint is resolved against the SSE URL and must be on the same
//! origin (scheme, host, port): an upstream cannot make moat send requests,
//! and the configured credentials, elsewhere. When the stream dies the
//! session is dead; the next call opens a new stream and initialises again.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::UpstreamError;
use super::meta;
use super::router::Router;
use super::transport::{
    Fail, HttpShared, SseBody, SseEnd, content_type, is_message_event, parse_messages, read_body_limited, same_origin,
};
use crate::jsonrpc::Message;

/// The most bytes read from the body of a POST answer (normally empty).
const MAX_POST_BODY: usize = 64 * 1024;
/// Deadline for fire-and-forget POSTs (replies, cancellations).
const SIDE_TIMEOUT: Duration = Duration::from_secs(10);

struct SseInner {
    shared: Arc<HttpShared>,
    router: Arc<Router>,
    endpoint: reqwest::Url,
    version: RwLock<Option<String>>,
}

/// An open SSE stream and its POST endpoint.
pub(crate) struct SseConn {
    inner: Arc<SseInner>,
    stop: CancellationToken,
}

impl SseConn {
    /// Opens the stream and waits for the `endpoint` event.
    pub(crate) async fn connect(shared: Arc<HttpShared>, router: Arc<Router>) -> Result<SseConn, UpstreamError> {
        let name = Arc::clone(&shared.name);
        let resp = shared
            .client
            .get(shared.url.clone())
            .headers(shared.headers.clone())
            .header(http::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| shared.send_error(&e).into_error())?;
        if !resp.status().is_success() {
            return Err(shared.status_error(resp.status()).into_error());
        }
        if content_type(&resp) != "text/event-stream" {
            return Err(UpstreamError::Protocol(format!("upstream `{name}` did not answer with an SSE stream")));
        }
        let mut body = SseBody::new(resp, shared.max_message_bytes);
        let endpoint = loop {
            match body.next().await {
                Ok(Some(ev)) if ev.event.as_deref() == Some("endpoint") => {
                    break resolve_endpoint(&shared.url, &ev.data)
                        .map_err(|why| UpstreamError::Protocol(format!("upstream `{name}` {why}")))?;
                }
                Ok(Some(_)) => {}
                Err(SseEnd::TooLarge) => return Err(shared.too_large().into_error()),
                Ok(None) | Err(SseEnd::Broken) => {
                    return Err(UpstreamError::Unavailable(format!(
                        "upstream `{name}` closed its SSE stream before naming an endpoint"
                    )));
                }
            }
        };
        let inner = Arc::new(SseInner { shared, router, endpoint, version: RwLock::new(None) });
        let stop = CancellationToken::new();
        tokio::spawn(read_stream(Arc::clone(&inner), body, stop.clone()));
        Ok(SseConn { inner, stop })
    }

    /// Records the negotiated version (sent as `MCP-Protocol-Version`).
    pub(crate) fn set_version(&self, version: &str) {
        if let Ok(mut v) = self.inner.version.write() {
            *v = Some(version.to_owned());
        }
    }

    /// POSTs a message to the endpoint; the answer, if any, comes on the
    /// stream.
    pub(crate) async fn post(&self, msg: &Message) -> Result<(), Fail> {
        self.inner.post(msg).await
    }

    /// POSTs in the background (replies, cancellations).
    pub(crate) fn spawn_post(&self, msg: Message) {
        spawn_post(Arc::clone(&self.inner), msg);
    }

    /// Closes the stream.
    pub(crate) fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Drop for SseConn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Resolves the `endpoint` event's URI reference against the SSE URL and
/// refuses another origin.
pub(crate) fn resolve_endpoint(sse_url: &reqwest::Url, data: &str) -> Result<reqwest::Url, &'static str> {
    let endpoint = sse_url.join(data.trim()).map_err(|_| "sent an endpoint that is not a valid URL")?;
    if !same_origin(sse_url, &endpoint) {
        return Err("sent an endpoint on another origin, which moat refuses");
    }
    Ok(endpoint)
}

fn spawn_post(inner: Arc<SseInner>, msg: Message) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        if tokio::time::timeout(SIDE_TIMEOUT, inner.post(&msg)).await.is_err() {
            tracing::debug!(upstream = %inner.shared.name, "a message to the upstream timed out");
        }
    });
}

impl SseInner {
    async fn post(&self, msg: &Message) -> Result<(), Fail> {
        let shared = &self.shared;
        let body = msg.to_bytes();
        if body.len() > shared.max_message_bytes {
            return Err(Fail::Error(UpstreamError::Protocol(format!(
                "the message for upstream `{}` exceeds {} bytes",
                shared.name, shared.max_message_bytes
            ))));
        }
        let version = self.version.read().ok().and_then(|v| v.clone());
        let mut req = shared
            .client
            .post(self.endpoint.clone())
            .headers(shared.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(v) = version {
            req = req.headers(meta::legacy_headers(&v, None));
        }
        let resp = req.send().await.map_err(|e| shared.send_error(&e))?;
        let status = resp.status();
        let _ = read_body_limited(resp, MAX_POST_BODY).await;
        if status.is_success() {
            Ok(())
        } else if status == reqwest::StatusCode::NOT_FOUND {
            Err(Fail::SessionLost(format!("upstream `{}` no longer knows moat's session", shared.name)))
        } else {
            Err(shared.status_error(status))
        }
    }
}

async fn read_stream(inner: Arc<SseInner>, mut body: SseBody, stop: CancellationToken) {
    let name = Arc::clone(&inner.shared.name);
    let why = loop {
        let ev = tokio::select! {
            e = body.next() => e,
            () = stop.cancelled() => return,
        };
        match ev {
            Ok(Some(ev)) if is_message_event(&ev) => {
                let (messages, bad) = parse_messages(ev.data.as_bytes());
                if bad > 0 {
                    tracing::warn!(upstream = %name, "ignored an event that is not JSON-RPC");
                }
                for m in messages {
                    if let Some(reply) = inner.router.dispatch(m, None, None) {
                        let inner = Arc::clone(&inner);
                        tokio::spawn(async move { spawn_post(inner, reply.await) });
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break "closed its SSE stream",
            Err(SseEnd::Broken) => break "broke its SSE stream",
            Err(SseEnd::TooLarge) => break "sent an SSE event over the size limit",
        }
    };
    let reason = format!("upstream `{name}` {why}");
    inner.router.kill(reason.clone(), Fail::Died(reason), true, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_relative_and_stay_on_origin() {
        let sse = reqwest::Url::parse("http://127.0.0.1:9/base/sse?k=1").unwrap();
        assert_eq!(
            resolve_endpoint(&sse, "/messages/?session_id=ab").unwrap().as_str(),
            "http://127.0.0.1:9/messages/?session_id=ab"
        );
        assert_eq!(resolve_endpoint(&sse, "messages?s=1").unwrap().as_str(), "http://127.0.0.1:9/base/messages?s=1");
        assert!(resolve_endpoint(&sse, "http://127.0.0.1:9/m").is_ok());
        assert!(resolve_endpoint(&sse, "http://evil.example/m").is_err());
        assert!(resolve_endpoint(&sse, "//evil.example/m").is_err());
        assert!(resolve_endpoint(&sse, "https://127.0.0.1:9/m").is_err());
    }
}
