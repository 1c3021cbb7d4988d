//! Streamable HTTP at `/mcp` and `/mcp/<server>`, both protocol eras.
//!
//! Era per request (spec 2026-07-28 "Versioning: dual-era server"):
//! * a body whose `params._meta` names a protocol version is **modern**:
//!   stateless, headers validated against the body, no session;
//! * a request with `Mcp-Session-Id` belongs to a **legacy** session;
//! * an `initialize` without either opens a legacy session;
//! * anything else is refused with 400.

use super::dispatch::{CallCtx, Scope, dispatch, initialize_result};
use super::session::{EventLog, Session, SessionTransport};
use super::wire::{self, accepted, json_message, rpc_error, sse_response};
use crate::authn::RequestMeta;
use crate::state::App;
use crate::upstreams::ServerEntry;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use moat_core::{AuthMethod, Principal, PrincipalKind, Role, UserId};
use moat_mcp::jsonrpc::code;
use moat_mcp::{ErrorObject, Kind, Message, protocol};
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Who is calling and what they addressed, or the response that refuses.
pub struct Caller {
    /// The principal.
    pub principal: Principal,
    /// The addressed scope.
    pub scope: Scope,
    /// Address and request id.
    pub meta: RequestMeta,
}

fn anonymous_principal(entry: &ServerEntry) -> Principal {
    Principal {
        tenant_id: entry.record.tenant_id.clone(),
        tenant_name: String::new(),
        user_id: UserId::from_string("anonymous"),
        kind: PrincipalKind::Service,
        role: Role::Member,
        operator: false,
        credential_id: format!("anonymous:{}", entry.record.id),
        method: AuthMethod::Anonymous,
        scopes: moat_core::Scopes::mcp(),
        allowed_origins: Vec::new(),
    }
}

/// Authenticates the request and resolves the addressed scope.
pub async fn resolve_caller(
    app: &App,
    headers: &HeaderMap,
    addr: Option<SocketAddr>,
    server: Option<&str>,
    path: &str,
) -> Result<Caller, Response> {
    let meta = wire::request_meta(headers, addr);
    if headers.get(header::AUTHORIZATION).is_none()
        && let Some(name) = server
    {
        let open = app.pool.anonymous(name);
        if let [entry] = open.as_slice() {
            return Ok(Caller { principal: anonymous_principal(entry), scope: Scope::Server(entry.clone()), meta });
        }
    }
    let principal = match app.auth.authenticate(headers, &meta, path).await {
        Ok(p) => p,
        Err(f) => return Err(wire::auth_failure(app, path, &f)),
    };
    if !principal.scopes.any_mcp() {
        return Err(wire::insufficient_scope("mcp:tools mcp:resources mcp:prompts"));
    }
    let scope = match server {
        None => Scope::Aggregate,
        Some(name) => match app.pool.get(&principal.tenant_id, name) {
            Some(entry) => Scope::Server(entry),
            None => {
                return Err(rpc_error(
                    StatusCode::NOT_FOUND,
                    None,
                    code::INVALID_PARAMS,
                    format!("no server named `{name}` in tenant `{}`", principal.tenant_name),
                ));
            }
        },
    };
    Ok(Caller { principal, scope, meta })
}

fn same_scope(a: &Scope, b: &Scope) -> bool {
    match (a, b) {
        (Scope::Aggregate, Scope::Aggregate) => true,
        (Scope::Server(x), Scope::Server(y)) => x.record.id == y.record.id,
        _ => false,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn path_of(server: Option<&str>) -> String {
    server.map_or_else(|| "/mcp".to_owned(), |s| format!("/mcp/{s}"))
}

/// `POST /mcp`.
pub async fn post_aggregate(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    post(app, addr, headers, body, None).await
}

/// `POST /mcp/<server>`.
pub async fn post_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    post(app, addr, headers, body, Some(server)).await
}

/// Parses a body into one JSON-RPC message, or the 400 that refuses it.
pub fn parse_body(body: &[u8]) -> Result<Message, Response> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        rpc_error(StatusCode::BAD_REQUEST, None, code::PARSE_ERROR, "Parse error: the body is not valid JSON")
    })?;
    if value.is_array() {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            code::INVALID_REQUEST,
            "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)",
        ));
    }
    let id = value.get("id").filter(|i| i.is_string() || i.is_number()).cloned();
    Message::from_value(value)
        .map_err(|e| rpc_error(StatusCode::BAD_REQUEST, id, e.code(), format!("Invalid Request: {e}")))
}

async fn post(app: App, addr: SocketAddr, headers: HeaderMap, body: Bytes, server: Option<String>) -> Response {
    let path = path_of(server.as_deref());
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            code::INVALID_REQUEST,
            "Content-Type must be application/json",
        );
    }
    if !wire::accepts(&headers, "application/json") && !wire::accepts(&headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            code::INVALID_REQUEST,
            "Accept must allow application/json or text/event-stream",
        );
    }
    let caller = match resolve_caller(&app, &headers, Some(addr), server.as_deref(), &path).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let msg = match parse_body(&body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let meta_version = msg
        .meta()
        .and_then(|m| m.get(protocol::META_PROTOCOL_VERSION))
        .map(|v| v.as_str().map(str::to_owned).unwrap_or_default());
    if let Some(version) = meta_version {
        return modern(app, caller, &headers, msg, version).await;
    }
    if let Some(sid) = header_str(&headers, protocol::HEADER_SESSION_ID) {
        let sid = sid.to_owned();
        return legacy(app, caller, &headers, msg, &sid).await;
    }
    if msg.kind() == Kind::Request && msg.method_str() == "initialize" {
        return initialize(app, caller, msg).await;
    }
    if header_str(&headers, protocol::HEADER_PROTOCOL_VERSION).is_some_and(protocol::is_modern) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            msg.id.clone(),
            code::INVALID_PARAMS,
            format!(
                "Invalid params: a {} request must carry `params._meta[\"{}\"]`",
                protocol::MODERN,
                protocol::META_PROTOCOL_VERSION
            ),
        );
    }
    rpc_error(
        StatusCode::BAD_REQUEST,
        msg.id.clone(),
        code::SESSION_ERROR,
        "Bad Request: no Mcp-Session-Id header; send `initialize` first (2025-11-25) or per-request `_meta` (2026-07-28)",
    )
}

/// Validates the modern request headers against the body.
fn check_modern_headers(headers: &HeaderMap, msg: &Message, version: &str) -> Result<(), String> {
    match header_str(headers, protocol::HEADER_PROTOCOL_VERSION) {
        None => return Err("the MCP-Protocol-Version header is missing".into()),
        Some(h) if h != version => {
            return Err(format!("MCP-Protocol-Version header `{h}` does not match _meta protocol version `{version}`"));
        }
        Some(_) => {}
    }
    let method = msg.method_str();
    match header_str(headers, protocol::HEADER_METHOD) {
        None => return Err("the Mcp-Method header is missing".into()),
        Some(h) if h != method => {
            return Err(format!("Mcp-Method header `{h}` does not match body method `{method}`"));
        }
        Some(_) => {}
    }
    if let Some(field) = protocol::name_field(method) {
        let body_value = msg.param_str(field).unwrap_or_default();
        let Some(raw) = headers.get(protocol::HEADER_NAME) else {
            return Err("the Mcp-Name header is missing".into());
        };
        match protocol::decode_header_value(raw.as_bytes()) {
            None => return Err("the Mcp-Name header is malformed".into()),
            Some(h) if h != body_value => {
                return Err(format!("Mcp-Name header does not match body `params.{field}`"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Methods the legacy revisions had and 2026-07-28 removed: a modern
/// request for them is "method not found", never passed through.
const REMOVED_IN_MODERN: &[&str] =
    &["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

async fn modern(app: App, caller: Caller, headers: &HeaderMap, msg: Message, version: String) -> Response {
    let id = msg.id.clone();
    // Header/body agreement first: a version mismatch is a HeaderMismatch
    // even when the body's version is one moat does not know.
    if let Err(why) = check_modern_headers(headers, &msg, &version) {
        return rpc_error(StatusCode::BAD_REQUEST, id, code::HEADER_MISMATCH, format!("Header mismatch: {why}"));
    }
    if !protocol::is_modern(&version) {
        let resp = Message::error_response(
            id,
            ErrorObject::new(code::UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
                .with_data(json!({ "supported": protocol::SUPPORTED_VERSIONS, "requested": version })),
        );
        return json_message(StatusCode::BAD_REQUEST, &resp);
    }
    match msg.kind() {
        Kind::Notification | Kind::Response => return accepted(),
        Kind::Request => {}
    }
    let method = msg.method_str().to_owned();
    if REMOVED_IN_MODERN.contains(&method.as_str()) {
        return rpc_error(
            StatusCode::NOT_FOUND,
            id,
            code::METHOD_NOT_FOUND,
            format!("Method not found: `{method}` is not part of protocol {version}"),
        );
    }
    let caps = msg.meta().and_then(|m| m.get(protocol::META_CLIENT_CAPABILITIES)).cloned();
    if !caps.as_ref().is_some_and(Value::is_object) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            code::INVALID_PARAMS,
            format!("params._meta must carry `{}` (an object)", protocol::META_CLIENT_CAPABILITIES),
        );
    }
    if method == "tools/call"
        && let Err(why) = super::params::check(&app, &caller.principal, &caller.scope, headers, &msg).await
    {
        return rpc_error(StatusCode::BAD_REQUEST, id, code::HEADER_MISMATCH, format!("Header mismatch: {why}"));
    }
    let ctx = CallCtx {
        app: app.clone(),
        principal: caller.principal,
        scope: caller.scope,
        modern: true,
        version,
        client_caps: caps,
        meta: caller.meta,
        notify: None,
        session: None,
    };
    if method == "subscriptions/listen" {
        return super::notify::listen(ctx, msg).await;
    }
    let json_reply = |resp: Message| {
        let status = resp.error.as_ref().map_or(StatusCode::OK, |e| wire::modern_status(e.code));
        json_message(status, &resp)
    };
    if !(wire::accepts(headers, "text/event-stream") && streams_progress(&msg)) {
        return json_reply(dispatch(&ctx, msg).await);
    }
    // The answer is plain JSON (with its proper HTTP status) unless a
    // notification arrives first; then the response becomes an SSE stream
    // scoped to this request. Closing that stream cancels the request
    // (2026-07-28 "Cancellation"): dropping the stream aborts the work, and
    // with it the upstream call.
    let (ntx, mut nrx) = mpsc::channel::<Message>(64);
    let ctx = CallCtx { notify: Some(ntx), ..ctx };
    let mut work = Box::pin(async move {
        let r = dispatch(&ctx, msg).await;
        drop(ctx);
        r
    });
    let first = tokio::select! {
        resp = &mut work => {
            // Notifications sent just before the answer still deserve a stream.
            match nrx.try_recv() {
                Ok(n) => {
                    let mut all = vec![n];
                    while let Ok(n) = nrx.try_recv() {
                        all.push(n);
                    }
                    all.push(resp);
                    let events = futures::stream::iter(all).map(|m| encode_event(&m));
                    return sse_response(events, &[]);
                }
                Err(_) => return json_reply(resp),
            }
        }
        n = nrx.recv() => n,
    };
    let (out_tx, out_rx) = mpsc::channel::<Message>(64);
    if let Some(n) = first {
        let _ = out_tx.try_send(n);
    }
    let task = tokio::spawn(async move {
        let relay_tx = out_tx.clone();
        let relay = async move {
            while let Some(n) = nrx.recv().await {
                if relay_tx.send(n).await.is_err() {
                    break;
                }
            }
        };
        // The relay ends when the work drops its sender, so every
        // notification precedes the response on the stream.
        let (resp, ()) = tokio::join!(work, relay);
        let _ = out_tx.send(resp).await;
    });
    let guard = AbortOnDrop(task);
    let events = tokio_stream::wrappers::ReceiverStream::new(out_rx).map(move |m| {
        let _ = &guard;
        encode_event(&m)
    });
    sse_response(events, &[])
}

/// Aborts a task when the response stream that owns it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn encode_event(m: &Message) -> moat_mcp::sse::Event {
    moat_mcp::sse::Event::message(String::from_utf8_lossy(&m.to_bytes()).into_owned())
}

/// Requests answered on an SSE stream when the client accepts one: those
/// that may produce progress or log notifications worth relaying.
fn streams_progress(msg: &Message) -> bool {
    msg.method_str() == "tools/call" || msg.meta().is_some_and(|m| m.contains_key("progressToken"))
}

async fn initialize(app: App, caller: Caller, msg: Message) -> Response {
    let id = msg.id.clone();
    let params = msg.params.clone().unwrap_or(Value::Null);
    let version = protocol::negotiate_legacy(params.get("protocolVersion").and_then(Value::as_str));
    let caps = params.get("capabilities").cloned().unwrap_or_else(|| json!({}));
    let ctx = CallCtx {
        app: app.clone(),
        principal: caller.principal.clone(),
        scope: caller.scope.clone(),
        modern: false,
        version: version.to_owned(),
        client_caps: Some(caps.clone()),
        meta: caller.meta.clone(),
        notify: None,
        session: None,
    };
    let started = std::time::Instant::now();
    let result = initialize_result(&ctx, version).await;
    let mut ev = moat_store::AuditEvent::new(
        ctx.principal.kind.as_str(),
        "mcp.initialize",
        if result.is_ok() { moat_store::AuditResult::Ok } else { moat_store::AuditResult::Error },
    );
    ev.tenant_id = Some(ctx.principal.tenant_id.clone());
    ev.actor_id = Some(ctx.principal.user_id.to_string());
    ev.resource = Some(ctx.scope.label().to_owned());
    ev.source_addr = ctx.meta.source_addr.clone();
    ev.request_id = ctx.meta.request_id.clone();
    ev.latency_ms = i64::try_from(started.elapsed().as_millis()).ok();
    ev.metadata = json!({ "era": "legacy", "protocol_version": version, "credential": ctx.principal.credential_id });
    app.audit.record(ev).await;
    match result {
        Err(e) => json_message(StatusCode::OK, &Message::error_response(id, e)),
        Ok(result) => {
            let session =
                app.sessions.create(caller.principal, caller.scope, version, caps, SessionTransport::StreamableHttp);
            let mut resp = json_message(StatusCode::OK, &Message::response(id.unwrap_or(Value::Null), result));
            if let Ok(v) = session.id.parse() {
                resp.headers_mut().insert(protocol::HEADER_SESSION_ID, v);
            }
            resp
        }
    }
}

fn session_not_found(id: Option<Value>) -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        id,
        code::UPSTREAM_ERROR,
        "Session not found: it ended or expired; send `initialize` again",
    )
}

/// Looks up the caller's session for this endpoint.
fn find_session(app: &App, caller: &Caller, sid: &str) -> Option<Arc<Session>> {
    let session = app.sessions.get(sid, &caller.principal).ok()?;
    let http = matches!(session.transport, SessionTransport::StreamableHttp);
    (http && same_scope(&session.scope, &caller.scope)).then_some(session)
}

async fn legacy(app: App, caller: Caller, headers: &HeaderMap, msg: Message, sid: &str) -> Response {
    let Some(session) = find_session(&app, &caller, sid) else {
        return session_not_found(msg.id.clone());
    };
    if let Some(v) = header_str(headers, protocol::HEADER_PROTOCOL_VERSION)
        && !protocol::LEGACY_VERSIONS.contains(&v)
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            msg.id.clone(),
            code::INVALID_REQUEST,
            format!("Bad Request: unsupported MCP-Protocol-Version `{v}` for this session"),
        );
    }
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
    if msg.method_str() == "initialize" {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            msg.id.clone(),
            code::INVALID_REQUEST,
            "Invalid Request: this session is already initialized",
        );
    }
    let ctx = legacy_ctx(&app, &session, caller.meta);
    if wire::accepts(headers, "text/event-stream") && streams_progress(&msg) {
        return legacy_streamed(session, ctx, msg).await;
    }
    let id = msg.id.clone().unwrap_or(Value::Null);
    let resp = legacy_work(&session, ctx, msg).await;
    legacy_json(&session, id, resp)
}

/// A legacy request's work: dispatched until done or cancelled by
/// `notifications/cancelled` (or the session ending), then forgotten by the
/// session, its resource subscription recorded. [`Detached`], so that a
/// client disconnect does not cancel it (2025-11-25). `None` when cancelled:
/// such a request gets no response.
pub fn legacy_work(session: &Arc<Session>, ctx: CallCtx, msg: Message) -> Detached<Option<Message>> {
    let id = msg.id.clone().unwrap_or(Value::Null);
    let cancelled = session.begin(&id);
    let subscription = SubscriptionChange::of(&msg);
    let session = session.clone();
    Detached::new(async move {
        let resp = tokio::select! {
            r = dispatch(&ctx, msg) => Some(r),
            () = cancelled.cancelled() => None,
        };
        drop(ctx);
        session.finish(&id);
        if let (Some(resp), Some(change)) = (&resp, subscription) {
            change.apply(&session, resp);
        }
        resp
    })
}

/// A legacy call's answer as one JSON body, with the session header; a
/// cancelled call is answered "Request cancelled".
fn legacy_json(session: &Session, id: Value, resp: Option<Message>) -> Response {
    let resp = resp.unwrap_or_else(|| Message::error_response(Some(id), ErrorObject::new(-32800, "Request cancelled")));
    let mut out = json_message(StatusCode::OK, &resp);
    if let Ok(v) = session.id.parse() {
        out.headers_mut().insert(protocol::HEADER_SESSION_ID, v);
    }
    out
}

/// A dispatch context for a request inside a legacy session.
pub fn legacy_ctx(app: &App, session: &Arc<Session>, meta: RequestMeta) -> CallCtx {
    CallCtx {
        app: app.clone(),
        principal: session.principal.clone(),
        scope: session.scope.clone(),
        modern: false,
        version: session.version(),
        client_caps: Some(session.caps()),
        meta,
        notify: None,
        session: Some(session.clone()),
    }
}

/// Handles a client notification inside a legacy session.
pub fn client_notification(session: &Session, msg: &Message) {
    if msg.method_str() == "notifications/cancelled"
        && let Some(request_id) = msg.params.as_ref().and_then(|p| p.get("requestId"))
    {
        session.cancel(request_id);
    }
}

/// A call's work that outlives the HTTP exchange: dropped before it is done
/// (the client went away), it is spawned to run to completion instead.
pub struct Detached<T: Send + 'static>(Option<Pin<Box<dyn Future<Output = T> + Send>>>);

impl<T: Send + 'static> Detached<T> {
    fn new(work: impl Future<Output = T> + Send + 'static) -> Self {
        Self(Some(Box::pin(work)))
    }

    /// The unfinished work, to be driven elsewhere (once it has completed
    /// there is none: what is returned then never completes).
    fn take(&mut self) -> Pin<Box<dyn Future<Output = T> + Send>> {
        self.0.take().unwrap_or_else(|| Box::pin(std::future::pending()))
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let Some(work) = self.0.as_mut() else { return std::task::Poll::Pending };
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.0 = None;
        std::task::Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let (Some(work), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(work);
        }
    }
}

/// A resource subscription a legacy request makes or ends, applied to the
/// session once the upstream accepted it.
pub struct SubscriptionChange {
    subscribe: bool,
    uri: String,
}

impl SubscriptionChange {
    /// The change `req` asks for, if any.
    pub fn of(req: &Message) -> Option<Self> {
        let subscribe = match req.method_str() {
            "resources/subscribe" => true,
            "resources/unsubscribe" => false,
            _ => return None,
        };
        Some(Self { subscribe, uri: req.param_str("uri")?.to_owned() })
    }

    /// Records the change on the session when the upstream accepted it.
    pub fn apply(self, session: &Session, resp: &Message) {
        if resp.error.is_some() {
            return;
        }
        if let Ok(mut subs) = session.subscriptions.lock() {
            if self.subscribe {
                subs.insert(self.uri);
            } else {
                subs.remove(&self.uri);
            }
        }
    }
}

/// How long a legacy call that may stream may run before its answer becomes
/// an SSE stream. A call answered sooner, with no notification before its
/// answer, gets plain JSON (2025-11-25 lets the server choose either): no
/// stream, no event log, one write. A slower call gets a primed, resumable
/// stream, so a client that loses its connection can still fetch the
/// result with `Last-Event-ID`.
const JSON_WINDOW: Duration = Duration::from_millis(50);

/// A legacy call whose client accepts an SSE answer. The work runs in this
/// task until it answers, sends a notification, or outlasts
/// [`JSON_WINDOW`]; then it moves to a task of its own that writes into the
/// call's [`EventLog`]. A client that disconnects first does not cancel it
/// (2025-11-25: only `notifications/cancelled` does): [`Detached`] lets it
/// run to completion.
async fn legacy_streamed(session: Arc<Session>, ctx: CallCtx, msg: Message) -> Response {
    let id = msg.id.clone().unwrap_or(Value::Null);
    let (ntx, mut nrx) = mpsc::channel::<Message>(64);
    let mut work = legacy_work(&session, CallCtx { notify: Some(ntx), ..ctx }, msg);
    let session_header = [(protocol::HEADER_SESSION_ID, session.id.clone())];
    let first = tokio::select! {
        biased;
        resp = &mut work => match nrx.try_recv() {
            // Notifications sent just before the answer still deserve a stream.
            Ok(n) => Err((Some(n), resp)),
            Err(_) => return legacy_json(&session, id, resp),
        },
        n = nrx.recv() => Ok(n),
        () = tokio::time::sleep(JSON_WINDOW) => Ok(None),
    };
    let log = session.open_stream();
    struct Finish(Arc<EventLog>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.finish();
        }
    }
    match first {
        // Answered, with notifications just before it: all at once.
        Err((n, resp)) => {
            let _finish = Finish(log.clone());
            for n in n.into_iter().chain(std::iter::from_fn(|| nrx.try_recv().ok())) {
                log.push(&n);
            }
            if let Some(resp) = resp {
                log.push(&resp);
            }
        }
        // Still running: the rest of the work, and its notifications, go
        // to the stream from a task of its own.
        Ok(n) => {
            if let Some(n) = n {
                log.push(&n);
            }
            let work = work.take();
            let log = log.clone();
            tokio::spawn(async move {
                let _finish = Finish(log.clone());
                let pump_log = log.clone();
                let pump = async move {
                    while let Some(n) = nrx.recv().await {
                        pump_log.push(&n);
                    }
                };
                let (resp, ()) = tokio::join!(work, pump);
                if let Some(resp) = resp {
                    log.push(&resp);
                }
            });
        }
    }
    let reader = log.reader(0, session.closed.clone());
    sse_response(reader, &session_header)
}

/// `GET /mcp[/<server>]`: a legacy session's server-to-client stream, or a
/// resumption with `Last-Event-ID`.
pub async fn get(app: App, addr: SocketAddr, headers: HeaderMap, server: Option<String>) -> Response {
    let path = path_of(server.as_deref());
    let caller = match resolve_caller(&app, &headers, Some(addr), server.as_deref(), &path).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some(sid) = header_str(&headers, protocol::HEADER_SESSION_ID) else {
        return method_not_allowed();
    };
    let Some(session) = find_session(&app, &caller, sid) else {
        return session_not_found(None);
    };
    if !wire::accepts(&headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            code::INVALID_REQUEST,
            "Accept must allow text/event-stream",
        );
    }
    let session_header = [(protocol::HEADER_SESSION_ID, session.id.clone())];
    let stop = session.closed.clone();
    if let Some(last) = header_str(&headers, protocol::HEADER_LAST_EVENT_ID)
        && let Some((log, seq)) = session.stream_for(last)
    {
        return sse_response(log.reader(seq, stop), &session_header);
    }
    let general = session.general_stream();
    let from = general.reader_position();
    sse_response(general.reader(from, stop), &session_header)
}

/// `DELETE /mcp[/<server>]`: ends a legacy session.
pub async fn delete(app: App, addr: SocketAddr, headers: HeaderMap, server: Option<String>) -> Response {
    let path = path_of(server.as_deref());
    let caller = match resolve_caller(&app, &headers, Some(addr), server.as_deref(), &path).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some(sid) = header_str(&headers, protocol::HEADER_SESSION_ID) else {
        return method_not_allowed();
    };
    let Some(session) = find_session(&app, &caller, sid) else {
        return session_not_found(None);
    };
    app.sessions.remove(&session.id);
    let mut ev =
        moat_store::AuditEvent::new(caller.principal.kind.as_str(), "mcp.session.end", moat_store::AuditResult::Ok);
    ev.tenant_id = Some(caller.principal.tenant_id.clone());
    ev.actor_id = Some(caller.principal.user_id.to_string());
    ev.resource = Some(caller.scope.label().to_owned());
    ev.source_addr = caller.meta.source_addr.clone();
    ev.request_id = caller.meta.request_id.clone();
    app.audit.record(ev).await;
    StatusCode::OK.into_response()
}

fn method_not_allowed() -> Response {
    let mut resp = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        code::INVALID_REQUEST,
        "Method Not Allowed: GET and DELETE need an Mcp-Session-Id (2025-11-25); 2026-07-28 is POST only",
    );
    resp.headers_mut().insert(header::ALLOW, axum::http::HeaderValue::from_static("POST, GET, DELETE"));
    resp
}

/// `GET /mcp`.
pub async fn get_aggregate(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    get(app, addr, headers, None).await
}

/// `GET /mcp/<server>`.
pub async fn get_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    get(app, addr, headers, Some(server)).await
}

/// `DELETE /mcp`.
pub async fn delete_aggregate(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    delete(app, addr, headers, None).await
}

/// `DELETE /mcp/<server>`.
pub async fn delete_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    delete(app, addr, headers, Some(server)).await
}
