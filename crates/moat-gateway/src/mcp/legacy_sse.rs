//! The legacy HTTP+SSE transport (2024-11-05): `GET /sse` opens a session
//! stream whose first event names the POST endpoint
//! (`/messages?sessionId=…`); every response travels down the stream.

use super::dispatch::{CallCtx, initialize_result};
use super::http::{client_notification, legacy_ctx, legacy_work, parse_body, resolve_caller};
use super::session::SessionTransport;
use super::wire::{self, accepted, rpc_error, sse_response};
use crate::state::App;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use moat_mcp::jsonrpc::code;
use moat_mcp::{Kind, Message, protocol};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::sync::mpsc;

/// `GET /sse`.
pub async fn open_aggregate(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    open(app, addr, headers, None).await
}

/// `GET /sse/<server>`.
pub async fn open_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    open(app, addr, headers, Some(server)).await
}

async fn open(app: App, addr: SocketAddr, headers: HeaderMap, server: Option<String>) -> Response {
    let path = server.as_deref().map_or_else(|| "/sse".to_owned(), |s| format!("/sse/{s}"));
    let caller = match resolve_caller(&app, &headers, Some(addr), server.as_deref(), &path).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (tx, rx) = mpsc::channel::<Message>(256);
    let session =
        app.sessions.create(caller.principal, caller.scope, "2024-11-05", json!({}), SessionTransport::Sse(tx));
    let endpoint = moat_mcp::sse::Event {
        id: None,
        event: Some("endpoint".into()),
        data: format!("/messages?sessionId={}", session.id),
        retry: None,
    };
    // When the client goes away the stream is dropped, and the guard ends
    // the session.
    struct EndOnDrop(App, String);
    impl Drop for EndOnDrop {
        fn drop(&mut self) {
            self.0.sessions.remove(&self.1);
        }
    }
    let guard = EndOnDrop(app.clone(), session.id.clone());
    let closed = session.closed.clone();
    let messages = tokio_stream::wrappers::ReceiverStream::new(rx)
        .take_until(async move { closed.cancelled().await })
        .map(move |m| {
            let _ = &guard;
            moat_mcp::sse::Event {
                id: None,
                event: Some("message".into()),
                data: String::from_utf8_lossy(&m.to_bytes()).into_owned(),
                retry: None,
            }
        });
    sse_response(futures::stream::once(async move { endpoint }).chain(messages), &[])
}

/// Query of `POST /messages`.
#[derive(Deserialize)]
pub struct MessagesQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// `POST /messages?sessionId=…`.
pub async fn post_message(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<MessagesQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let meta = wire::request_meta(&headers, Some(addr));
    let principal = match app.auth.authenticate(&headers, &meta, "/messages").await {
        Ok(p) => p,
        Err(f) => {
            // An anonymous server's SSE session is reached without a key.
            match app.sessions.all().into_iter().find(|s| s.id == q.session_id) {
                Some(s)
                    if s.principal.method == moat_core::AuthMethod::Anonymous
                        && headers.get(axum::http::header::AUTHORIZATION).is_none() =>
                {
                    s.principal.clone()
                }
                _ => return wire::auth_failure(&app, "/sse", &f),
            }
        }
    };
    let Ok(session) = app.sessions.get(&q.session_id, &principal) else {
        return rpc_error(StatusCode::NOT_FOUND, None, code::UPSTREAM_ERROR, "Session not found");
    };
    let SessionTransport::Sse(tx) = &session.transport else {
        return rpc_error(StatusCode::NOT_FOUND, None, code::UPSTREAM_ERROR, "Session not found");
    };
    let tx = tx.clone();
    let msg = match parse_body(&body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    match msg.kind() {
        Kind::Response => {
            session.complete_client_request(&msg);
            return accepted();
        }
        Kind::Notification => {
            client_notification(&session, &msg);
            return accepted();
        }
        Kind::Request => {}
    }
    let id = msg.id.clone().unwrap_or(Value::Null);
    if msg.method_str() == "initialize" {
        let params = msg.params.clone().unwrap_or(Value::Null);
        let version = protocol::negotiate_legacy(params.get("protocolVersion").and_then(Value::as_str));
        if let Ok(mut v) = session.version.lock() {
            *v = version.to_owned();
        }
        if let Ok(mut c) = session.client_caps.lock() {
            *c = params.get("capabilities").cloned().unwrap_or_else(|| json!({}));
        }
        let ctx: CallCtx = legacy_ctx(&app, &session, meta);
        let resp = match initialize_result(&ctx, version).await {
            Ok(r) => Message::response(id, r),
            Err(e) => Message::error_response(Some(id), e),
        };
        let _ = tx.send(resp).await;
        return accepted();
    }
    let (ntx, mut nrx) = mpsc::channel::<Message>(64);
    let ctx = CallCtx { notify: Some(ntx), ..legacy_ctx(&app, &session, meta) };
    let work = legacy_work(&session, ctx, msg);
    tokio::spawn(async move {
        let relay = tx.clone();
        // Notifications reach the stream before the response they belong
        // to: the pump ends only when the call has dropped its sender.
        let pump = async move {
            while let Some(n) = nrx.recv().await {
                if relay.send(n).await.is_err() {
                    break;
                }
            }
        };
        let (resp, ()) = tokio::join!(work, pump);
        // A cancelled request gets no response.
        if let Some(resp) = resp {
            let _ = tx.send(resp).await;
        }
    });
    accepted()
}
