//! Method dispatch, shared by every downstream transport: answers what the
//! gateway answers itself (`ping`, `server/discover`, `initialize` results),
//! merges lists over the caller's upstreams, routes calls by their
//! namespaced name or URI, and passes everything else through untouched.

use super::mrtr;
use super::names;
use crate::authn::RequestMeta;
use crate::firewall::{self, Subject};
use crate::state::App;
use crate::telemetry;
use crate::upstreams::{Instance, ServerEntry, list_method};
use moat_core::Principal;
use moat_firewall::{Action, Direction};
use moat_mcp::client::{CallContext, ServerRequest, UpstreamError};
use moat_mcp::jsonrpc::{RawResult, code};
use moat_mcp::{ErrorObject, Message, protocol};
use moat_store::{AuditEvent, AuditResult};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the caller addressed: every upstream it may use, or one.
#[derive(Clone)]
pub enum Scope {
    /// `/mcp`: names are namespaced.
    Aggregate,
    /// `/mcp/<server>`: names are the upstream's own.
    Server(Arc<ServerEntry>),
}

impl Scope {
    /// The server name for logs and metrics (`*` when aggregated).
    pub fn label(&self) -> &str {
        match self {
            Scope::Aggregate => "*",
            Scope::Server(e) => e.name(),
        }
    }
}

/// Everything dispatch knows about one request.
pub struct CallCtx {
    /// Shared state.
    pub app: App,
    /// The authenticated caller.
    pub principal: Principal,
    /// What it addressed.
    pub scope: Scope,
    /// True for a 2026-07-28 (stateless) request.
    pub modern: bool,
    /// The protocol version in force.
    pub version: String,
    /// The client's capabilities (per request when modern, per session when legacy).
    pub client_caps: Option<Value>,
    /// Address and request id, for audit.
    pub meta: RequestMeta,
    /// Where request-related notifications (progress, log messages) go.
    pub notify: Option<mpsc::Sender<Message>>,
    /// The legacy session, whose client can answer relayed server-to-client
    /// requests (sampling, elicitation, roots) on `notify`'s stream.
    pub session: Option<Arc<super::session::Session>>,
}

fn err(code: i64, message: impl Into<String>) -> ErrorObject {
    ErrorObject::new(code, message)
}

impl CallCtx {
    /// The upstream instance this caller uses for `entry`: the caller's
    /// stored credentials for the server resolved and injected. A failure
    /// to resolve (a key provider that does not answer, a record that fails
    /// its integrity check) ends the call: never a silent call without them.
    pub async fn instance(&self, entry: &Arc<ServerEntry>) -> Result<Arc<Instance>, ErrorObject> {
        instance_for(&self.app, &self.principal, entry, self.session.as_deref()).await
    }
}

/// See [`CallCtx::instance`]; also records the binding on a legacy session,
/// so that the session receives that instance's notifications.
pub async fn instance_for(
    app: &App,
    principal: &Principal,
    entry: &Arc<ServerEntry>,
    session: Option<&super::session::Session>,
) -> Result<Arc<Instance>, ErrorObject> {
    let binding = app.vault.resolve(principal, &entry.record).await.map_err(|e| {
        tracing::warn!(server = entry.name(), error = %e, "credential resolution failed");
        err(code::UPSTREAM_ERROR, format!("cannot call server `{}`: {e}", entry.name()))
            .with_data(json!({ "server": entry.name() }))
    })?;
    if let Some(s) = session
        && let Ok(mut b) = s.bindings.lock()
    {
        b.insert(entry.record.id.clone(), binding.key.clone());
    }
    Ok(entry.instance(binding))
}

/// Records the use of the credentials injected into one upstream call:
/// an audit event (ids and tiers, never values) and `last_used_at`.
async fn record_use(ctx: &CallCtx, inst: &Instance, method: &str, resource: Option<&str>) {
    let used = inst.binding().credentials();
    if used.is_empty() {
        return;
    }
    let mut ev = AuditEvent::new(ctx.principal.kind.as_str(), "credential.use", AuditResult::Ok);
    ev.tenant_id = Some(ctx.principal.tenant_id.clone());
    ev.actor_id = Some(ctx.principal.user_id.to_string());
    ev.resource = resource.map(str::to_owned);
    ev.source_addr = ctx.meta.source_addr.clone();
    ev.request_id = ctx.meta.request_id.clone();
    let creds: Vec<Value> = used.iter().map(|(id, tier)| json!({ "id": id, "tier": tier })).collect();
    ev.metadata = json!({ "method": method, "credentials": creds });
    ctx.app.audit.record(ev).await;
    let ids = ctx.app.vault.due_for_touch(used.iter().map(|(id, _)| id));
    if !ids.is_empty() {
        let (app, tenant) = (ctx.app.clone(), ctx.principal.tenant_id.clone());
        tokio::spawn(async move { app.vault.touch(&tenant, &ids).await });
    }
}

/// Turns an upstream failure into a JSON-RPC error that names the server.
pub fn upstream_error(server: &str, method: &str, e: UpstreamError, timeout: Duration) -> ErrorObject {
    let (kind, message) = match e {
        UpstreamError::Rpc(obj) => {
            telemetry::upstream_error(server, method, "rpc");
            return obj;
        }
        UpstreamError::Timeout => {
            ("timeout", format!("upstream `{server}` did not answer within {} s", timeout.as_secs()))
        }
        UpstreamError::Unavailable(m) => ("unavailable", format!("upstream `{server}` is unavailable: {m}")),
        UpstreamError::Protocol(m) => ("protocol", format!("upstream `{server}` sent an invalid response: {m}")),
        UpstreamError::Busy => ("busy", format!("upstream `{server}` is busy: too many calls in flight")),
        UpstreamError::Closed => ("closed", format!("upstream `{server}` is shutting down")),
        other => ("other", format!("upstream `{server}` failed: {other}")),
    };
    telemetry::upstream_error(server, method, kind);
    err(code::UPSTREAM_ERROR, message).with_data(json!({ "server": server }))
}

/// Capabilities the aggregated endpoint advertises.
fn aggregate_capabilities() -> Value {
    json!({
        "tools": { "listChanged": true },
        "prompts": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "completions": {},
        "logging": {},
    })
}

fn server_info() -> Value {
    json!({ "name": "moat", "title": "moat MCP gateway", "version": env!("CARGO_PKG_VERSION") })
}

/// Capabilities, server info and instructions for a scope. For one server,
/// this connects to it (lazily started upstreams start here).
async fn describe(ctx: &CallCtx) -> Result<(Value, Value, Option<String>), ErrorObject> {
    match &ctx.scope {
        Scope::Aggregate => Ok((
            aggregate_capabilities(),
            server_info(),
            Some(
                "moat aggregates several MCP servers. Tools and prompts are named `<server>__<name>`; \
                 resource URIs are prefixed `<server>+`."
                    .into(),
            ),
        )),
        Scope::Server(entry) => {
            let fail = |e| upstream_error(entry.name(), "initialize", e, ctx.app.cfg.call_timeout);
            let upstream = ctx.instance(entry).await?.upstream_for(ctx.modern).await.map_err(fail)?;
            upstream.connect().await.map_err(fail)?;
            let hello = upstream.hello();
            let caps =
                hello.as_ref().map(|h| h.capabilities.clone()).filter(Value::is_object).unwrap_or_else(|| json!({}));
            let info =
                hello.as_ref().map(|h| h.server_info.clone()).filter(Value::is_object).unwrap_or_else(server_info);
            Ok((caps, info, hello.and_then(|h| h.instructions)))
        }
    }
}

/// The result of a legacy `initialize` for `version`.
pub async fn initialize_result(ctx: &CallCtx, version: &str) -> Result<Value, ErrorObject> {
    let (caps, info, instructions) = describe(ctx).await?;
    let mut result = json!({ "protocolVersion": version, "capabilities": caps, "serverInfo": info });
    if let Some(i) = instructions {
        result["instructions"] = Value::String(i);
    }
    Ok(result)
}

async fn discover(ctx: &CallCtx) -> Result<Value, ErrorObject> {
    let (caps, info, instructions) = describe(ctx).await?;
    let mut result = json!({
        "supportedVersions": protocol::SUPPORTED_VERSIONS,
        "capabilities": caps,
        "_meta": { protocol::META_SERVER_INFO: info },
    });
    if let Some(i) = instructions {
        result["instructions"] = Value::String(i);
    }
    Ok(result)
}

/// Handles one request and returns its response.
pub async fn dispatch(ctx: &CallCtx, req: Message) -> Message {
    let id = req.id.clone().unwrap_or(Value::Null);
    let method = req.method_str().to_owned();
    let started = Instant::now();
    let (outcome, resource) = match route(ctx, &method, req.params).await {
        Ok((mut reply, resource)) => {
            if ctx.modern
                && let Reply::Json(result) = &mut reply
            {
                normalise_modern(&method, result);
            }
            (Ok(reply), resource)
        }
        Err((e, resource)) => (Err(e), resource),
    };
    let elapsed = started.elapsed();
    let server = resource.as_deref().and_then(|r| r.split('/').next()).unwrap_or(ctx.scope.label()).to_owned();
    let status = match &outcome {
        Ok(_) => "ok",
        Err(e) if e.code == code::FORBIDDEN => "denied",
        Err(_) => "error",
    };
    telemetry::mcp_call(&server, &method, status, elapsed.as_secs_f64());
    audit_call(ctx, &method, resource, &outcome, elapsed).await;
    match outcome {
        Ok(Reply::Json(result)) => Message::response(id, result),
        Ok(Reply::Raw(result)) => Message::raw_response(id, result),
        Err(e) => Message::error_response(Some(id), e),
    }
}

/// A successful result: a value, or JSON text written as it is (the
/// aggregated lists, complete with their modern members).
enum Reply {
    Json(Value),
    Raw(RawResult),
}

fn json_reply((result, resource): (Value, Option<String>)) -> (Reply, Option<String>) {
    (Reply::Json(result), resource)
}

async fn audit_call<T>(
    ctx: &CallCtx,
    method: &str,
    resource: Option<String>,
    outcome: &Result<T, ErrorObject>,
    elapsed: Duration,
) {
    let result = match outcome {
        Ok(_) => AuditResult::Ok,
        Err(e) if e.code == code::FORBIDDEN => AuditResult::Denied,
        Err(_) => AuditResult::Error,
    };
    let mut ev = AuditEvent::new(ctx.principal.kind.as_str(), format!("mcp.{method}"), result);
    ev.tenant_id = Some(ctx.principal.tenant_id.clone());
    ev.actor_id = Some(ctx.principal.user_id.to_string());
    ev.resource = resource;
    ev.source_addr = ctx.meta.source_addr.clone();
    ev.request_id = ctx.meta.request_id.clone();
    ev.latency_ms = i64::try_from(elapsed.as_millis()).ok();
    let mut meta = Map::new();
    meta.insert("era".into(), json!(if ctx.modern { "modern" } else { "legacy" }));
    meta.insert("protocol_version".into(), json!(ctx.version));
    meta.insert("endpoint".into(), json!(ctx.scope.label()));
    meta.insert("credential".into(), json!(ctx.principal.credential_id));
    if let Err(e) = outcome {
        meta.insert("error_code".into(), json!(e.code));
    }
    ev.metadata = Value::Object(meta);
    ctx.app.audit.record(ev).await;
}

/// A member a modern result carries when its producer did not set it, and
/// how to build its value (only where it is missing).
pub(super) type ModernDefault = (&'static str, fn() -> Value);

const MODERN_DEFAULTS: [ModernDefault; 3] =
    [("resultType", || json!("complete")), ("ttlMs", || json!(0)), ("cacheScope", || json!("private"))];

/// The defaults of a modern result: every result a `resultType`, and a
/// cacheable one a TTL and a cache scope. The aggregated lists write the
/// same (`lists::Merged`).
pub(super) fn modern_defaults(cacheable: bool) -> &'static [ModernDefault] {
    if cacheable { &MODERN_DEFAULTS } else { &MODERN_DEFAULTS[..1] }
}

/// Modern results carry `resultType`; cacheable ones a TTL and a scope.
fn normalise_modern(method: &str, result: &mut Value) {
    let Some(obj) = result.as_object_mut() else { return };
    let cacheable = list_method(method).is_some() || matches!(method, "resources/read" | "server/discover");
    for (key, value) in modern_defaults(cacheable) {
        obj.entry(*key).or_insert_with(value);
    }
}

type Routed<T = Value> = Result<(T, Option<String>), (ErrorObject, Option<String>)>;

/// The OAuth scope an MCP method needs (beyond authentication).
fn needed_scope(method: &str) -> Option<moat_core::Scope> {
    use moat_core::Scope;
    match method.split_once('/').map_or(method, |(family, _)| family) {
        "tools" => Some(Scope::McpTools),
        "resources" => Some(Scope::McpResources),
        "prompts" => Some(Scope::McpPrompts),
        _ => None,
    }
}

async fn route(ctx: &CallCtx, method: &str, params: Option<Value>) -> Routed<Reply> {
    let local = |r: Result<Value, ErrorObject>| r.map(|v| (Reply::Json(v), None)).map_err(|e| (e, None));
    if let Some(scope) = needed_scope(method)
        && !ctx.principal.has_scope(scope)
    {
        return local(Err(err(
            code::FORBIDDEN,
            format!("Forbidden: `{method}` needs the `{}` scope, which this token does not carry", scope.as_str()),
        )));
    }
    match method {
        "ping" => Ok((Reply::Json(json!({})), None)),
        "server/discover" => local(discover(ctx).await),
        "initialize" => {
            local(Err(err(code::INVALID_REQUEST, "`initialize` is only valid as the first request of a session")))
        }
        m if list_method(m).is_some() => match &ctx.scope {
            Scope::Aggregate => super::lists::aggregate(ctx, m, params.as_ref())
                .await
                .map(|raw| (Reply::Raw(raw), None))
                .map_err(|e| (e, None)),
            Scope::Server(entry) => {
                let cursor = params.as_ref().and_then(|p| p.get("cursor")).and_then(Value::as_str).map(str::to_owned);
                let res = Some(entry.name().to_owned());
                let inst = ctx.instance(entry).await.map_err(|e| (e, res.clone()))?;
                let r = ctx
                    .app
                    .pool
                    .list_page(
                        &inst,
                        ctx.modern,
                        list_method(m).unwrap_or("tools/list"),
                        cursor,
                        call_context(ctx, None),
                    )
                    .await
                    .map_err(|e| upstream_error(entry.name(), m, e, ctx.app.cfg.call_timeout));
                r.map(|v| (Reply::Json(v), res.clone())).map_err(|e| (e, res))
            }
        },
        "logging/setLevel" => match &ctx.scope {
            Scope::Aggregate => {
                let entries = ctx.app.pool.for_tenant(&ctx.principal.tenant_id);
                let calls = entries.iter().map(|e| async {
                    let Ok(inst) = ctx.instance(e).await else { return Err(UpstreamError::Closed) };
                    let upstream = inst.upstream_for(false).await?;
                    upstream.request(method, params.clone(), call_context(ctx, None)).await
                });
                let _ = futures::future::join_all(calls).await;
                Ok((Reply::Json(json!({})), None))
            }
            Scope::Server(entry) => forward(ctx, entry.clone(), method, params, None).await.map(json_reply),
        },
        _ => route_call(ctx, method, params).await.map(json_reply),
    }
}

pub(super) fn call_context(ctx: &CallCtx, progress: Option<mpsc::Sender<Value>>) -> CallContext {
    CallContext { timeout: None, progress, client_capabilities: ctx.client_caps.clone(), server_requests: None }
}

/// The client capability a server-to-client request needs.
fn needed_capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Which namespaced member addresses the server, per method.
enum Target {
    Name,
    Uri,
    Ref,
}

fn target_of(method: &str) -> Option<Target> {
    match method {
        "tools/call" | "prompts/get" => Some(Target::Name),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some(Target::Uri),
        "completion/complete" => Some(Target::Ref),
        _ => None,
    }
}

async fn route_call(ctx: &CallCtx, method: &str, params: Option<Value>) -> Routed {
    if let Scope::Server(entry) = &ctx.scope {
        let resource = describe_resource(entry.name(), method, params.as_ref());
        return forward(ctx, entry.clone(), method, params, resource).await;
    }
    let Some(target) = target_of(method) else {
        return Err((
            err(
                code::METHOD_NOT_FOUND,
                format!("method `{method}` is not available on the aggregated endpoint; use /mcp/<server>"),
            ),
            None,
        ));
    };
    let mut params = params.unwrap_or_else(|| json!({}));
    let (server, inner) = match unprefix(&target, &mut params) {
        Ok(pair) => pair,
        Err(e) => return Err((e, None)),
    };
    let Some(entry) = ctx.app.pool.get(&ctx.principal.tenant_id, &server) else {
        let what = match target {
            Target::Uri => "resource",
            _ if method == "prompts/get" => "prompt",
            _ => "tool",
        };
        return Err((
            err(code::INVALID_PARAMS, format!("unknown {what} `{}`: no server named `{server}`", inner)),
            None,
        ));
    };
    let resource = Some(format!("{server}/{inner}"));
    let (mut result, resource) = forward(ctx, entry, method, Some(params), resource).await?;
    match method {
        "tools/call" | "prompts/get" => names::prefix_content_uris(&server, &mut result),
        "resources/read" => names::prefix_read_result(&server, &mut result),
        _ => {}
    }
    Ok((result, resource))
}

fn describe_resource(server: &str, method: &str, params: Option<&Value>) -> Option<String> {
    let p = params?;
    let inner = match target_of(method)? {
        Target::Name => p.get("name")?.as_str()?.to_owned(),
        Target::Uri => p.get("uri")?.as_str()?.to_owned(),
        Target::Ref => p.get("ref")?.get("name").or_else(|| p.get("ref")?.get("uri"))?.as_str()?.to_owned(),
    };
    Some(format!("{server}/{inner}"))
}

/// Splits a namespaced name or URI into (server, inner).
type Splitter = fn(&str) -> Option<(&str, &str)>;

/// Strips the namespace from the addressed member; returns (server, inner name).
fn unprefix(target: &Target, params: &mut Value) -> Result<(String, String), ErrorObject> {
    let invalid = |what: &str| err(code::INVALID_PARAMS, format!("missing or malformed `{what}`"));
    let (slot, split): (&mut Value, Splitter) = match target {
        Target::Name => (params.get_mut("name").ok_or_else(|| invalid("name"))?, names::split_name),
        Target::Uri => (params.get_mut("uri").ok_or_else(|| invalid("uri"))?, names::split_uri),
        Target::Ref => {
            let r = params.get_mut("ref").ok_or_else(|| invalid("ref"))?;
            let key = if r.get("uri").is_some() { "uri" } else { "name" };
            let split: Splitter = if key == "uri" { names::split_uri } else { names::split_name };
            (r.get_mut(key).ok_or_else(|| invalid("ref"))?, split)
        }
    };
    let full = slot.as_str().ok_or_else(|| invalid("name"))?.to_owned();
    let Some((server, inner)) = split(&full) else {
        return Err(err(
            code::INVALID_PARAMS,
            format!("`{full}` is not namespaced: expected `<server>__<name>` (or `<server>+<uri>` for resources)"),
        ));
    };
    let (server, inner) = (server.to_owned(), inner.to_owned());
    *slot = Value::String(inner.clone());
    Ok((server, inner))
}

/// The tool, prompt or resource a call addresses (unprefixed).
fn addressed(method: &str, params: Option<&Value>) -> Option<String> {
    let p = params?;
    let v = match method {
        "tools/call" | "prompts/get" => p.get("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => p.get("uri"),
        "completion/complete" => p.get("ref").and_then(|r| r.get("name").or_else(|| r.get("uri"))),
        _ => None,
    };
    v.and_then(Value::as_str).map(str::to_owned)
}

/// The pin kind of the item a call addresses (for hidden-item checks).
fn pin_kind(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" => Some("tool"),
        "prompts/get" => Some("prompt"),
        "resources/read" => Some("resource"),
        _ => None,
    }
}

/// The part of a request the firewall scans: what the caller supplies to
/// the tool, prompt or resource (not the name that routes it, nor `_meta`).
fn scanned_request_part<'a>(method: &str, params: &'a mut Value) -> Option<&'a mut Value> {
    match method {
        "tools/call" | "prompts/get" => params.get_mut("arguments"),
        "resources/read" => params.get_mut("uri"),
        "completion/complete" => params.get_mut("argument"),
        _ => None,
    }
}

fn subject<'a>(ctx: &'a CallCtx, server: &'a str, method: &'a str, tool: Option<&'a str>) -> Subject<'a> {
    Subject {
        tenant: &ctx.principal.tenant_id,
        principal: Some(&ctx.principal),
        server,
        tool,
        method,
        request_id: ctx.meta.request_id.as_deref(),
        source_addr: ctx.meta.source_addr.as_deref(),
    }
}

/// Sends "held for approval" to the client as progress, when it asked for progress.
async fn announce_hold(ctx: &CallCtx, token: Option<&Value>, notice: String) {
    if let (Some(out), Some(token)) = (&ctx.notify, token) {
        let n = json!({ "progressToken": token, "progress": 0, "message": notice });
        let _ = out.send(Message::notification("notifications/progress", Some(n))).await;
    }
}

/// Applies a verdict's block or approval; `Ok` lets the message go on.
async fn enforce_verdict(
    ctx: &CallCtx,
    entry: &ServerEntry,
    s: &Subject<'_>,
    verdict: &firewall::Verdict,
    direction: Direction,
    progress_token: Option<&Value>,
) -> Result<(), ErrorObject> {
    let refusal =
        |message: String| err(code::FORBIDDEN, message).with_data(firewall::refusal_data(s, verdict, direction));
    match verdict.enforced() {
        Action::Block => Err(refusal(match direction {
            Direction::Request => firewall::blocked_request(s, verdict),
            _ => firewall::blocked_response(s, verdict),
        })),
        Action::Approve => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let held = ctx.app.firewall.hold(s, &entry.record.id, verdict, |id| {
                let _ = tx.send(firewall::held_notice(s, id));
            });
            let announce = async {
                if let Ok(notice) = rx.await {
                    announce_hold(ctx, progress_token, notice).await;
                }
            };
            let (outcome, ()) = tokio::join!(held, announce);
            outcome.map(|_| ()).map_err(refusal)
        }
        _ => Ok(()),
    }
}

async fn forward(
    ctx: &CallCtx,
    entry: Arc<ServerEntry>,
    method: &str,
    mut params: Option<Value>,
    resource: Option<String>,
) -> Routed {
    let tool = addressed(method, params.as_ref());
    let s = subject(ctx, entry.name(), method, tool.as_deref());
    let fw = &ctx.app.firewall;
    if let (Some(kind), Some(name)) = (pin_kind(method), tool.as_deref())
        && fw.is_hidden(&ctx.principal.tenant_id, &entry.record.id, kind, name).await
    {
        let message = format!(
            "moat firewall: {kind} `{name}` of server `{}` changed its description after it was approved and is \
             hidden until an admin re-approves it (`moat approval list`)",
            entry.name()
        );
        return Err((err(code::FORBIDDEN, message).with_data(json!({ "server": entry.name(), kind: name })), resource));
    }
    let token = params.as_ref().and_then(|p| p.get("_meta")).and_then(|m| m.get("progressToken")).cloned();
    if let Some(part) = params.as_mut().and_then(|p| scanned_request_part(method, p)) {
        let verdict = fw.inspect(&s, part, Direction::Request).await;
        if let Err(e) = enforce_verdict(ctx, &entry, &s, &verdict, Direction::Request, token.as_ref()).await {
            return Err((e, resource));
        }
    }
    match call_upstream(ctx, &entry, &s, method, params, resource.as_deref()).await {
        Ok(mut v) => {
            let verdict = fw.inspect(&s, &mut v, Direction::Response).await;
            match enforce_verdict(ctx, &entry, &s, &verdict, Direction::Response, token.as_ref()).await {
                Ok(()) => Ok((v, resource)),
                Err(e) => Err((e, resource)),
            }
        }
        Err(mut e) => {
            // An upstream's error travels to the client too: scanned alike.
            let mut text = Value::String(std::mem::take(&mut e.message));
            let verdict = fw.inspect(&s, &mut text, Direction::Response).await;
            e.message = match text {
                Value::String(m) => m,
                _ => String::new(),
            };
            if let Some(data) = e.data.as_mut() {
                let v2 = fw.inspect(&s, data, Direction::Response).await;
                if v2.enforced() >= Action::Approve {
                    e.data = None;
                }
            }
            if verdict.enforced() >= Action::Approve {
                e.message = firewall::blocked_response(&s, &verdict);
            }
            Err((e, resource))
        }
    }
}

/// Calls the upstream (directly or through the MRTR bridge), relaying the
/// call's progress and log notifications through the firewall.
async fn call_upstream(
    ctx: &CallCtx,
    entry: &Arc<ServerEntry>,
    s: &Subject<'_>,
    method: &str,
    params: Option<Value>,
    resource: Option<&str>,
) -> Result<Value, ErrorObject> {
    let inst = ctx.instance(entry).await?;
    record_use(ctx, &inst, method, resource).await;
    let fail = |e| upstream_error(entry.name(), method, e, ctx.app.cfg.call_timeout);
    if ctx.modern && mrtr::supports_input_required(method) {
        match bridged(ctx, &inst, method, params.as_ref()).await {
            Some(Ok(r)) => return r.map_err(fail),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    // The call's progress and log notifications, and (on a legacy session)
    // its server-to-client requests, are relayed from this task while the
    // call runs: no task of their own for the common call that sends none.
    let mut call = call_context(ctx, None);
    let mut relayed = None;
    if let Some(downstream) = ctx.notify.clone() {
        let (progress_tx, progress_rx) = mpsc::channel::<Value>(64);
        call.progress = Some(progress_tx);
        let mut server_rx = None;
        if ctx.session.is_some() {
            let (tx, rx) = mpsc::channel::<ServerRequest>(8);
            call.server_requests = Some(tx);
            server_rx = Some(rx);
        }
        relayed = Some((downstream, progress_rx, server_rx));
    }
    let request = async {
        match inst.upstream_for(ctx.modern).await {
            Ok(upstream) => upstream.request(method, params, call).await,
            Err(e) => Err(e),
        }
    };
    let Some((downstream, mut progress_rx, mut server_rx)) = relayed else {
        return request.await.map_err(fail);
    };
    let mut request = std::pin::pin!(request);
    let relay = NotificationRelay { ctx, server: entry.name(), tool: s.tool, downstream: &downstream };
    let result = loop {
        tokio::select! {
            // Notifications first: each precedes the answer it belongs to.
            biased;
            Some(params) = progress_rx.recv() => relay.progress(params).await,
            Some(req) = async { server_rx.as_mut()?.recv().await } => relay.server_request(req).await,
            r = &mut request => break r,
        }
    };
    // The call is over and has dropped its senders; what the upstream
    // client is still delivering (a notification routed just before the
    // answer) arrives before the channel closes, and precedes the answer.
    while let Some(params) = progress_rx.recv().await {
        relay.progress(params).await;
    }
    result.map_err(fail)
}

/// Relays one upstream call's notifications and server-to-client requests
/// to the downstream client, through the firewall.
struct NotificationRelay<'a> {
    ctx: &'a CallCtx,
    server: &'a str,
    tool: Option<&'a str>,
    downstream: &'a mpsc::Sender<Message>,
}

impl NotificationRelay<'_> {
    fn subject<'s>(&'s self, method: &'s str) -> Subject<'s> {
        Subject {
            tenant: &self.ctx.principal.tenant_id,
            principal: Some(&self.ctx.principal),
            server: self.server,
            tool: self.tool,
            method,
            request_id: None,
            source_addr: None,
        }
    }

    /// A progress or log notification (by its params).
    async fn progress(&self, mut params: Value) {
        let method =
            if params.get("progressToken").is_some() { "notifications/progress" } else { "notifications/message" };
        let s = self.subject(method);
        if self.ctx.app.firewall.inspect_notification(&s, &mut params).await.enforced() >= Action::Approve {
            return;
        }
        let _ = self.downstream.send(Message::notification(method, Some(params))).await;
    }

    /// A server-to-client request (sampling, elicitation, roots): scanned
    /// like any upstream content, checked against the client's declared
    /// capabilities, then asked of the client on the call's own stream.
    async fn server_request(&self, mut req: ServerRequest) {
        let Some(session) = self.ctx.session.clone() else {
            let _ = req.reply.send(Err(err(code::METHOD_NOT_FOUND, "no client session to ask")));
            return;
        };
        if let Some(p) = req.params.as_mut() {
            let s = self.subject(&req.method);
            let verdict = self.ctx.app.firewall.inspect_notification(&s, p).await;
            if verdict.enforced() >= Action::Approve {
                let message = firewall::blocked_response(&s, &verdict);
                let _ = req.reply.send(Err(err(code::FORBIDDEN, message)));
                return;
            }
        }
        if let Some(cap) = needed_capability(&req.method)
            && self.ctx.client_caps.as_ref().and_then(|c| c.get(cap)).is_none()
        {
            let _ = req
                .reply
                .send(Err(err(code::METHOD_NOT_FOUND, format!("the client did not declare the `{cap}` capability"))));
            return;
        }
        // The client's answer may take a while (a human may be asked): it
        // is awaited in a task of its own, so the call goes on meanwhile.
        let (out, timeout) = (self.downstream.clone(), self.ctx.app.cfg.call_timeout);
        tokio::spawn(async move {
            let result = session.request_client(&out, &req.method, req.params, timeout).await;
            let _ = req.reply.send(result);
        });
    }
}

/// Serves a modern call through the MRTR bridge when it resumes a parked
/// call, or when it may need one: a legacy upstream and a client that can
/// answer input requests. `None`: not bridged, forward normally.
async fn bridged(ctx: &CallCtx, entry: &Arc<Instance>, method: &str, params: Option<&Value>) -> Option<mrtr::Driven> {
    let target =
        params.and_then(|p| p.get(if method == "resources/read" { "uri" } else { "name" })).and_then(Value::as_str)?;
    let bridge = mrtr::Bridge {
        parking: &ctx.app.parking,
        principal: &ctx.principal,
        method,
        target,
        client_caps: ctx.client_caps.as_ref(),
        notify: ctx.notify.clone(),
    };
    if let Some(state) = params.and_then(|p| p.get("requestState")).and_then(Value::as_str)
        && state.starts_with(mrtr::STATE_PREFIX)
    {
        return Some(bridge.resume(state, params.and_then(|p| p.get("inputResponses"))).await);
    }
    if !mrtr::client_can_answer(ctx.client_caps.as_ref()) {
        return None;
    }
    let upstream = entry.upstream_for(true).await.ok()?;
    upstream.connect().await.ok()?;
    if upstream.hello().is_none_or(|h| h.era != moat_mcp::client::Era::Legacy) {
        return None;
    }
    let (method_owned, params_owned, caps) = (method.to_owned(), params.cloned(), ctx.client_caps.clone());
    Some(
        bridge
            .start(move |server_requests, progress| {
                tokio::spawn(async move {
                    let cx = CallContext {
                        timeout: Some(mrtr::PARK_TTL),
                        progress: Some(progress),
                        client_capabilities: caps,
                        server_requests: Some(server_requests),
                    };
                    upstream.request(&method_owned, params_owned, cx).await
                })
            })
            .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprefix_rewrites_the_addressed_member() {
        let mut p = json!({"name":"ev__echo","arguments":{"x":1}});
        assert_eq!(unprefix(&Target::Name, &mut p).unwrap(), ("ev".into(), "echo".into()));
        assert_eq!(p["name"], "echo");
        let mut p = json!({"uri":"ev+test://a"});
        assert_eq!(unprefix(&Target::Uri, &mut p).unwrap().0, "ev");
        assert_eq!(p["uri"], "test://a");
        let mut p = json!({"ref":{"type":"ref/prompt","name":"ev__p"}});
        unprefix(&Target::Ref, &mut p).unwrap();
        assert_eq!(p["ref"]["name"], "p");
        let mut p = json!({"name":"plain"});
        assert_eq!(unprefix(&Target::Name, &mut p).unwrap_err().code, code::INVALID_PARAMS);
    }

    #[test]
    fn modern_results_are_normalised() {
        let mut v = json!({"tools":[]});
        normalise_modern("tools/list", &mut v);
        assert_eq!(v["resultType"], "complete");
        assert_eq!(v["cacheScope"], "private");
        let mut v = json!({"content":[], "resultType":"input_required"});
        normalise_modern("tools/call", &mut v);
        assert_eq!(v["resultType"], "input_required");
        assert!(v.get("ttlMs").is_none());
    }
}
