//! Small HTTP helpers shared by the MCP transports: JSON-RPC responses,
//! SSE responses, the 401 challenge and request metadata.

use crate::authn::{AuthFailure, RequestMeta};
use crate::state::App;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use moat_mcp::jsonrpc::code;
use moat_mcp::{ErrorObject, Id, Message};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

/// A JSON body with a status.
pub fn json_message(status: StatusCode, msg: &Message) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], msg.to_bytes()).into_response()
}

/// A JSON-RPC error with a status.
pub fn rpc_error(status: StatusCode, id: Option<Id>, code: i64, message: impl Into<String>) -> Response {
    json_message(status, &Message::error_response(id, ErrorObject::new(code, message)))
}

/// The HTTP status that goes with a JSON-RPC error on a modern request.
pub fn modern_status(error_code: i64) -> StatusCode {
    match error_code {
        code::HEADER_MISMATCH | code::MISSING_CLIENT_CAPABILITY | code::UNSUPPORTED_PROTOCOL_VERSION => {
            StatusCode::BAD_REQUEST
        }
        code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// The `resource_metadata` URL of an MCP endpoint path (RFC 9728 §3.1:
/// the well-known suffix is inserted before the resource's path).
pub fn resource_metadata_url(app: &App, path: &str) -> String {
    format!("{}/.well-known/oauth-protected-resource{}", app.cfg.base_url(), path)
}

/// 401 with the `WWW-Authenticate` challenge, or 503 when authentication
/// could not be performed (fail closed).
pub fn auth_failure(app: &App, path: &str, failure: &AuthFailure) -> Response {
    match failure {
        AuthFailure::Unavailable => {
            return rpc_error(StatusCode::SERVICE_UNAVAILABLE, None, code::INTERNAL_ERROR, failure.to_string());
        }
        AuthFailure::Throttled(secs) => {
            let mut resp = rpc_error(StatusCode::TOO_MANY_REQUESTS, None, code::UPSTREAM_ERROR, failure.to_string());
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        AuthFailure::Origin => return rpc_error(StatusCode::FORBIDDEN, None, code::FORBIDDEN, failure.to_string()),
        AuthFailure::Missing | AuthFailure::Invalid(_) => {}
    }
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", resource_metadata_url(app, path));
    if path.starts_with("/mcp") || path.starts_with("/sse") {
        challenge.push_str(", scope=\"mcp:tools mcp:resources mcp:prompts\"");
    }
    if matches!(failure, AuthFailure::Invalid(_)) {
        challenge.push_str(
            ", error=\"invalid_token\", error_description=\"the access token is invalid, revoked or expired\"",
        );
    }
    let mut resp = rpc_error(StatusCode::UNAUTHORIZED, None, code::UPSTREAM_ERROR, failure.to_string());
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// 403 for a token without the scope a request needs (RFC 6750 §3.1),
/// naming the scopes to ask for.
pub fn insufficient_scope(scopes: &str) -> Response {
    let mut resp =
        rpc_error(StatusCode::FORBIDDEN, None, code::FORBIDDEN, format!("Forbidden: this needs the scopes `{scopes}`"));
    let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scopes}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// Address and request id of a request (honours a sane `x-request-id`).
pub fn request_meta(headers: &HeaderMap, addr: Option<SocketAddr>) -> RequestMeta {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    RequestMeta { source_addr: addr.map(|a| a.ip().to_string()), request_id: Some(request_id) }
}

/// True when the `Accept` header admits `mime` (or is absent / wildcard).
pub fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let (kind, _) = mime.split_once('/').unwrap_or((mime, ""));
    accept.split(',').any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m == mime || m == "*/*" || m == format!("{kind}/*")
    })
}

/// An SSE response from a stream of events, with keep-alive comments
/// every 15 s. Framed by [`moat_mcp::sse::Event::encode`] rather than
/// axum's builder, which drops an empty `data:` line — and an event without
/// one is never dispatched, so a priming event would be lost.
pub fn sse_response<S>(stream: S, extra: &[(&'static str, String)]) -> Response
where
    S: Stream<Item = moat_mcp::sse::Event> + Send + 'static,
{
    enum Item {
        Frame(Bytes),
        Tick,
        End,
    }
    let frames = stream.map(|ev| Item::Frame(Bytes::from(ev.encode()))).chain(futures::stream::iter([Item::End]));
    let period = Duration::from_secs(15);
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + period,
        period,
    ))
    .map(|_| Item::Tick);
    let body = futures::stream::select(frames, ticks)
        .take_while(|item| std::future::ready(!matches!(item, Item::End)))
        .map(|item| {
            Ok::<_, Infallible>(match item {
                Item::Frame(b) => b,
                Item::Tick | Item::End => Bytes::from_static(b":\n\n"),
            })
        });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    resp
}

/// 202 Accepted with no body.
pub fn accepted() -> Response {
    (StatusCode::ACCEPTED, Body::empty()).into_response()
}
