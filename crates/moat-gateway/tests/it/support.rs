//! A gateway built the way `moat serve` builds it (SQLite in a tempdir, a
//! bootstrapped tenant with an owner key), driven through
//! `tower::ServiceExt::oneshot` without a socket.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use moat_core::{PrincipalKind, Role};
use moat_gateway::audit::AuditSink;
use moat_gateway::authn::Authenticator;
use moat_gateway::guard::OriginGuard;
use moat_gateway::mcp::session::SessionStore;
use moat_gateway::upstreams::UpstreamPool;
use moat_gateway::{AppState, GatewayConfig};
use moat_mcp::protocol;
use moat_store::{AuditEvent, AuditQuery, NewApiKey, NewServer, NewUser, ServerRecord, Store, TenantRecord};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

pub const MODERN: &str = protocol::MODERN;
pub const LEGACY: &str = protocol::LEGACY_LATEST;
/// What the guard accepts as `Host` (the listen address).
pub const HOST: &str = "127.0.0.1:8080";
/// The scripted stdio server.
pub const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake_mcp.py");

/// One gateway with its own database and upstream processes.
pub struct Gw {
    pub app: Router,
    pub state: Arc<AppState>,
    pub store: Store,
    pub tenant: TenantRecord,
    /// The owner's API key.
    pub key: String,
    _dir: tempfile::TempDir,
}

/// A response read completely.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Every JSON message of an SSE body, in order.
    pub fn sse_messages(&self) -> Vec<Value> {
        let mut d = moat_mcp::sse::Decoder::new(1 << 24);
        d.feed(&self.body)
            .expect("SSE body within limits")
            .into_iter()
            .filter_map(|ev| serde_json::from_str(&ev.data).ok())
            .collect()
    }

    /// The body as JSON, or the response carried on an SSE stream.
    #[track_caller]
    pub fn json(&self) -> Value {
        if self.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")) {
            return self
                .sse_messages()
                .into_iter()
                .rfind(|m| m.get("result").is_some() || m.get("error").is_some())
                .unwrap_or_else(|| panic!("no response on the stream: {}", self.text()));
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}); status {}: {}", self.status, self.text()))
    }

    /// The JSON-RPC error code, if any.
    pub fn rpc_code(&self) -> Option<i64> {
        self.json().pointer("/error/code").and_then(Value::as_i64)
    }

    /// The JSON-RPC error message ("" when none).
    pub fn rpc_message(&self) -> String {
        self.json().pointer("/error/message").and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    /// The JSON-RPC result; panics with the body otherwise.
    #[track_caller]
    pub fn result(&self) -> Value {
        let v = self.json();
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("no result; status {}: {}", self.status, self.text()),
        }
    }
}

/// A JSON-RPC request body.
pub fn rpc(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// `params` with the modern per-request `_meta` added.
pub fn modern_params(mut params: Value) -> Value {
    let meta = params.as_object_mut().expect("params object").entry("_meta").or_insert_with(|| json!({}));
    meta[protocol::META_PROTOCOL_VERSION] = json!(MODERN);
    meta[protocol::META_CLIENT_CAPABILITIES] = json!({});
    params
}

/// A POST to `path` with JSON content and the usual headers.
pub fn post(path: &str, key: Option<&str>) -> axum::http::request::Builder {
    let mut b = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    b
}

/// The headers a modern request needs for `body`.
pub fn modern_request(path: &str, key: &str, body: &Value, accept: &str) -> Request<Body> {
    let method = body["method"].as_str().unwrap_or_default();
    let mut b = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(protocol::HEADER_PROTOCOL_VERSION, MODERN)
        .header(protocol::HEADER_METHOD, method);
    if let Some(field) = protocol::name_field(method) {
        let value = body["params"][field].as_str().unwrap_or_default();
        b = b.header(protocol::HEADER_NAME, protocol::encode_header_value(value));
    }
    b.body(Body::from(body.to_string())).expect("request")
}

/// Fetches `query`'s audit events until `done` holds or 10 s pass.
pub async fn poll_audit(store: &Store, query: AuditQuery, done: impl Fn(&[AuditEvent]) -> bool) -> Vec<AuditEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = store.list_audit(&query).await.expect("list audit");
        if done(&events) || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Gw {
    /// A gateway with default settings (call timeout 10 s).
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// A gateway whose configuration `tweak` adjusts.
    pub async fn with(tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}/moat.db", dir.path().display())).await.expect("store");
        let (tenant, key) = bootstrap(&store).await;
        let mut gw = GatewayConfig::new(HOST.parse().expect("listen address"));
        gw.call_timeout = Duration::from_secs(10);
        tweak(&mut gw);
        let (audit, _writer) = AuditSink::start(store.clone());
        let identity = Arc::new(moat_gateway::identity::Identity::new(store.clone(), &gw).expect("identity"));
        let auth = Authenticator::new(store.clone(), audit.clone(), gw.key_cache_ttl, identity.clone())
            .expect("authenticator");
        let pool = UpstreamPool::new(&gw);
        let firewall = Arc::new(
            moat_gateway::firewall::Firewall::new(Default::default(), store.clone(), audit.clone()).expect("firewall"),
        );
        pool.set_filter(firewall.clone());
        let _ = moat_gateway::telemetry::metrics_handle();
        let state = Arc::new(AppState {
            guard: OriginGuard::new(&gw),
            sessions: SessionStore::new(gw.session_idle_timeout, gw.max_sessions),
            parking: Default::default(),
            cfg: gw.clone(),
            store: store.clone(),
            auth,
            pool,
            audit,
            vault: moat_gateway::credentials::Vault::new(
                Arc::new({
                    moat_vault::LocalKek::create(dir.path()).expect("kek");
                    moat_vault::LocalProvider::open(dir.path()).expect("local key provider")
                }),
                store.clone(),
                Default::default(),
            ),
            firewall,
            identity,
            shutdown: CancellationToken::new(),
        });
        let app = moat_gateway::router(state.clone());
        Self { app, state, store, tenant, key, _dir: dir }
    }

    /// Registers a stdio server and installs it into the pool.
    pub async fn add_server(&self, name: &str, command: &[&str]) -> ServerRecord {
        let record = self
            .store
            .create_server(&self.tenant.id, NewServer::stdio(name, command.iter().map(|s| (*s).to_owned()).collect()))
            .await
            .expect("create server");
        self.state.pool.install(record.clone()).expect("install server");
        record
    }

    /// Registers the scripted fake under `name`, with extra flags.
    pub async fn add_fake(&self, name: &str, flags: &[&str]) -> ServerRecord {
        let mut cmd = vec!["python3", FAKE, name];
        cmd.extend_from_slice(flags);
        self.add_server(name, &cmd).await
    }

    /// A second key of the same tenant, for another user.
    pub async fn new_key(&self, user: &str) -> String {
        let u = self
            .store
            .create_user(
                &self.tenant.id,
                NewUser { name: user.into(), email: None, kind: PrincipalKind::Agent, role: Role::Member },
            )
            .await
            .expect("create user");
        insert_key(&self.store, &self.tenant, u.id, user, Role::Member, PrincipalKind::Agent, false).await
    }

    /// Sends a request from 127.0.0.1 (what `into_make_service_with_connect_info` provides).
    pub async fn send(&self, mut req: Request<Body>) -> Resp {
        let addr: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .expect("body within 30 s")
            .expect("body")
            .to_bytes();
        Resp { status: parts.status, headers: parts.headers, body }
    }

    /// POSTs a JSON value to `path` with the owner key.
    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(post(path, Some(&self.key)).body(Body::from(body.to_string())).expect("request")).await
    }

    /// A modern (2026-07-28) request with matching headers, JSON answers only.
    pub async fn modern(&self, path: &str, method: &str, params: Value) -> Resp {
        let body = rpc(1, method, modern_params(params));
        self.send(modern_request(path, &self.key, &body, "application/json")).await
    }

    /// A modern `tools/call` on `/mcp`.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Resp {
        self.modern("/mcp", "tools/call", json!({ "name": name, "arguments": arguments })).await
    }

    /// Every page of an aggregated list, following `nextCursor`.
    pub async fn list_all(&self, method: &str, key: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for pages in 1..=20 {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let r = self.modern("/mcp", method, params).await;
            let result = r.result();
            items.extend(result[key].as_array().cloned().unwrap_or_default());
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => return (items, pages),
            }
        }
        panic!("{method} did not end within 20 pages");
    }

    /// The tenant's audit events whose action starts with `prefix`, once
    /// `done` holds (or after 10 s).
    pub async fn audit(&self, prefix: &str, done: impl Fn(&[AuditEvent]) -> bool) -> Vec<AuditEvent> {
        let q = AuditQuery {
            tenant: Some(self.tenant.id.clone()),
            action_prefix: Some(prefix.to_owned()),
            limit: Some(1000),
            ..AuditQuery::default()
        };
        poll_audit(&self.store, q, done).await
    }

    /// Stops the upstream processes.
    pub async fn finish(self) {
        self.state.pool.shutdown_all().await;
    }
}

async fn insert_key(
    store: &Store,
    tenant: &TenantRecord,
    user_id: moat_core::UserId,
    name: &str,
    role: Role,
    kind: PrincipalKind,
    operator: bool,
) -> String {
    let key = tokio::task::spawn_blocking(moat_auth::generate_key).await.expect("join").expect("generate key");
    store
        .insert_api_key(
            &tenant.id,
            NewApiKey {
                user_id,
                name: name.into(),
                public_id: key.public_id.clone(),
                secret_hash: key.secret_hash.clone(),
                role,
                kind,
                operator,
                expires_at: None,
            },
        )
        .await
        .expect("insert key");
    key.token.expose_secret().to_owned()
}

/// The tenant, owner and operator key that `moat serve` creates on first start.
async fn bootstrap(store: &Store) -> (TenantRecord, String) {
    let tenant = store.create_tenant("default").await.expect("create tenant");
    let user = store
        .create_user(
            &tenant.id,
            NewUser { name: "owner".into(), email: None, kind: PrincipalKind::Human, role: Role::Owner },
        )
        .await
        .expect("create owner");
    let key = insert_key(store, &tenant, user.id, "owner", Role::Owner, PrincipalKind::Human, true).await;
    (tenant, key)
}
