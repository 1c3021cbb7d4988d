//! `tools/list` on the aggregated endpoint `/mcp` over 50 servers × 100
//! tools, through the whole request path: the gateway's axum router, an
//! authenticated modern (2026-07-28) request, dispatch, the firewall's list
//! filter, prefixing and the JSON answer read to its end.
//!
//! The upstreams are 50 real Streamable HTTP servers on 127.0.0.1 (one
//! listener each, in this process), each listing 100 tools with a
//! description of about 300 bytes and an input schema of three properties.
//! Two cases:
//! - `warm`: the default list TTL (5 minutes); every list is cached.
//! - `cold`: `list_cache_ttl = 0`; every request asks all 50 servers again.
//!
//! And, for scale, the two steps an answer built as a `serde_json::Value`
//! costs on every request, which the gateway no longer pays (the merged
//! list leaves dispatch as JSON text built from items serialised once per
//! cached page): copying the 5,000 merged tools and serialising them.
//!
//! Run: `cargo bench -p moat-gateway --bench tools_list -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt as _;
use moat_core::{PrincipalKind, Role};
use moat_gateway::audit::AuditSink;
use moat_gateway::authn::Authenticator;
use moat_gateway::guard::OriginGuard;
use moat_gateway::mcp::session::SessionStore;
use moat_gateway::upstreams::UpstreamPool;
use moat_gateway::{AppState, GatewayConfig};
use moat_mcp::protocol;
use moat_store::{NewApiKey, NewServer, NewUser, Store, Transport};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const SERVERS: usize = 50;
const TOOLS: usize = 100;
const HOST: &str = "127.0.0.1:8080";

const VERBS: &[&str] = &["search", "create", "update", "list", "get", "close", "archive", "export", "sync", "describe"];
const NOUNS: &[&str] = &[
    "issues",
    "pull_requests",
    "comments",
    "labels",
    "milestones",
    "releases",
    "branches",
    "files",
    "runs",
    "reviews",
];

/// One tool as a real server describes it: a name, a description of about
/// 300 bytes and an input schema with three properties.
fn tool(server: usize, i: usize) -> Value {
    let (verb, noun) = (VERBS[i % VERBS.len()], NOUNS[(i / VERBS.len()) % NOUNS.len()]);
    let description = format!(
        "{verb} {noun} of the project workspace number {server}. The call returns at most `limit` entries, each with \
         its identifier, title, state, owner and the date of its last change, sorted by that date with the newest \
         first. Use `query` to narrow the selection with free text; variant {i} of this operation keeps the order stable."
    );
    json!({
        "name": format!("{verb}_{noun}_{i}"),
        "title": format!("{verb} {noun} ({i})"),
        "description": description,
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "Free text matched against titles and bodies." },
                "limit": { "type": "integer", "minimum": 1, "maximum": 100, "description": "Most entries returned." },
                "state": { "type": "string", "enum": ["open", "closed", "all"], "description": "Which entries to include." }
            },
            "required": ["query"]
        },
        "annotations": { "readOnlyHint": verb == "search" || verb == "list" || verb == "get" }
    })
}

/// The `tools/list` result of one upstream, serialised once.
fn tools_result(server: usize) -> String {
    json!({ "tools": (0..TOOLS).map(|i| tool(server, i)).collect::<Vec<_>>() }).to_string()
}

/// A minimal modern MCP server: `server/discover` and `tools/list` only.
async fn upstream(State(list): State<Arc<String>>, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let Some(id) = req.get("id").cloned() else { return StatusCode::ACCEPTED.into_response() };
    let body = match req["method"].as_str() {
        Some("tools/list") => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{list}}}"#),
        Some("server/discover") => json!({ "jsonrpc": "2.0", "id": id, "result": {
            "supportedVersions": [protocol::MODERN],
            "capabilities": { "tools": { "listChanged": true } },
            "serverInfo": { "name": "bench", "version": "1" },
        }})
        .to_string(),
        _ => json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "Method not found" } })
            .to_string(),
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Starts the 50 upstreams on 127.0.0.1; returns their URLs.
async fn start_upstreams(stop: &CancellationToken) -> Vec<String> {
    let mut urls = Vec::new();
    for s in 0..SERVERS {
        let app = Router::new().route("/mcp", post(upstream)).with_state(Arc::new(tools_result(s)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}/mcp", listener.local_addr().unwrap()));
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await.unwrap();
        });
    }
    urls
}

/// A gateway built as `moat serve` builds it, with the 50 servers registered.
struct Gateway {
    router: Router,
    state: Arc<AppState>,
    key: String,
    _dir: tempfile::TempDir,
}

async fn gateway(urls: &[String], list_ttl: Duration) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/moat.db", dir.path().display())).await.unwrap();
    let tenant = store.create_tenant("bench").await.unwrap();
    let user = store
        .create_user(
            &tenant.id,
            NewUser { name: "agent".into(), email: None, kind: PrincipalKind::Agent, role: Role::Member },
        )
        .await
        .unwrap();
    let key = moat_auth::generate_key().unwrap();
    store
        .insert_api_key(
            &tenant.id,
            NewApiKey {
                user_id: user.id,
                name: "bench".into(),
                public_id: key.public_id.clone(),
                secret_hash: key.secret_hash.clone(),
                role: Role::Member,
                kind: PrincipalKind::Agent,
                operator: false,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let mut cfg = GatewayConfig::new(HOST.parse().unwrap());
    cfg.list_cache_ttl = list_ttl;
    let (audit, _writer) = AuditSink::start(store.clone());
    let identity = Arc::new(moat_gateway::identity::Identity::new(store.clone(), &cfg).unwrap());
    let auth = Authenticator::new(store.clone(), audit.clone(), cfg.key_cache_ttl, identity.clone()).unwrap();
    let pool = UpstreamPool::new(&cfg);
    let firewall =
        Arc::new(moat_gateway::firewall::Firewall::new(Default::default(), store.clone(), audit.clone()).unwrap());
    pool.set_filter(firewall.clone());
    moat_vault::LocalKek::create(dir.path()).unwrap();
    let vault = moat_gateway::credentials::Vault::new(
        Arc::new(moat_vault::LocalProvider::open(dir.path()).unwrap()),
        store.clone(),
        Default::default(),
    );
    let state = Arc::new(AppState {
        guard: OriginGuard::new(&cfg),
        sessions: SessionStore::new(cfg.session_idle_timeout, cfg.max_sessions),
        parking: Default::default(),
        cfg,
        store: store.clone(),
        auth,
        pool,
        audit,
        vault,
        firewall,
        identity,
        shutdown: CancellationToken::new(),
    });
    for (s, url) in urls.iter().enumerate() {
        let record = store
            .create_server(&tenant.id, NewServer::http(format!("srv-{s:02}"), Transport::StreamableHttp, url.clone()))
            .await
            .unwrap();
        state.pool.install(record).unwrap();
    }
    let router = moat_gateway::router(state.clone());
    Gateway { router, state, key: key.token.expose_secret().to_owned(), _dir: dir }
}

/// One modern `tools/list` on `/mcp`, read to its end.
async fn tools_list(gw: &Gateway) -> Bytes {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": { "_meta": {
            protocol::META_PROTOCOL_VERSION: protocol::MODERN,
            protocol::META_CLIENT_CAPABILITIES: {},
        }},
    });
    let mut req = Request::post("/mcp")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", gw.key))
        .header(protocol::HEADER_PROTOCOL_VERSION, protocol::MODERN)
        .header(protocol::HEADER_METHOD, "tools/list")
        .body(Body::from(body.to_string()))
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// Checks that one answer carries all 5,000 prefixed tools, no cursor.
fn check(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap();
    let tools = v["result"]["tools"].as_array().unwrap_or_else(|| panic!("no tools: {v}"));
    assert_eq!(tools.len(), SERVERS * TOOLS, "every tool of every server");
    assert_eq!(tools[0]["name"], "srv-00__search_issues_0");
    assert!(v["result"].get("nextCursor").is_none());
}

fn bench(c: &mut Criterion) {
    // As `moat serve` runs: a multi-threaded runtime, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stop = CancellationToken::new();
    let urls = rt.block_on(start_upstreams(&stop));
    let mut g = c.benchmark_group("tools_list_50x100");
    g.sample_size(20);
    for (case, ttl) in [("warm", Duration::from_secs(300)), ("cold", Duration::ZERO)] {
        let gw = rt.block_on(gateway(&urls, ttl));
        // First list: connects the 50 upstreams and pins the 5,000 descriptions.
        rt.block_on(async {
            check(&tools_list(&gw).await);
            check(&tools_list(&gw).await);
        });
        g.throughput(criterion::Throughput::Elements((SERVERS * TOOLS) as u64));
        g.bench_function(case, |b| b.to_async(&rt).iter(|| tools_list(&gw)));
        rt.block_on(gw.state.pool.shutdown_all());
    }
    g.finish();

    // What an answer built as a `serde_json::Value` costs per request (the
    // floor of the warm case before the merged list was written as JSON
    // text): one copy of the merged list out of the cache, one serialisation.
    let mut g = c.benchmark_group("tools_list_50x100_parts");
    g.sample_size(20);
    let gw = rt.block_on(gateway(&urls, Duration::from_secs(300)));
    let answer: Value = serde_json::from_slice(&rt.block_on(tools_list(&gw))).unwrap();
    rt.block_on(gw.state.pool.shutdown_all());
    let result = &answer["result"];
    g.bench_function("copy_value", |b| b.iter(|| std::hint::black_box(result.clone())));
    g.bench_function("serialise", |b| b.iter(|| serde_json::to_vec(std::hint::black_box(result)).unwrap()));
    g.finish();
    stop.cancel();
    rt.shutdown_timeout(Duration::from_secs(5));
}

criterion_group!(benches, bench);
criterion_main!(benches);
