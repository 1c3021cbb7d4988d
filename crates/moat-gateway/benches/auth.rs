//! Per-request cost of API key authentication: a verification-cache hit (the
//! common case: a key is verified with Argon2id once per TTL), a miss (parse,
//! checksum, one indexed read, Argon2id verification), and a malformed key
//! refused offline by its checksum (no database, no Argon2id); and JWT
//! access tokens, verified (RS256, ES256) and issued.
//!
//! Run: `cargo bench -p moat-gateway --bench auth -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{HeaderMap, HeaderValue, header};
use criterion::{Criterion, criterion_group, criterion_main};
use moat_core::{PrincipalKind, Role};
use moat_gateway::GatewayConfig;
use moat_gateway::audit::AuditSink;
use moat_gateway::authn::{Authenticator, RequestMeta};
use moat_gateway::identity::Identity;
use moat_store::{NewApiKey, NewUser, Store};
use secrecy::ExposeSecret;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    store: Store,
    tenant: moat_store::TenantRecord,
    user: moat_core::UserId,
    audit: AuditSink,
    headers: HeaderMap,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/moat.db", dir.path().display())).await.unwrap();
    let tenant = store.create_tenant("bench").await.unwrap();
    let agent = store
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
                user_id: agent.id.clone(),
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
    let (audit, _writer) = AuditSink::start(store.clone());
    let mut headers = HeaderMap::new();
    let bearer = format!("Bearer {}", key.token.expose_secret());
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap());
    Fixture { store, tenant, user: agent.id, audit, headers, _dir: dir }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fixture());
    let meta = RequestMeta { source_addr: Some("127.0.0.1".into()), request_id: None };
    let mut g = c.benchmark_group("api_key");

    let cfg = GatewayConfig::new("127.0.0.1:8080".parse().unwrap());
    let identity = Arc::new(Identity::new(f.store.clone(), &cfg).unwrap());
    let cached =
        Authenticator::new(f.store.clone(), f.audit.clone(), Duration::from_secs(60), identity.clone()).unwrap();
    rt.block_on(cached.authenticate(&f.headers, &meta, "/mcp")).unwrap();
    g.bench_function("hit", |b| {
        b.iter(|| rt.block_on(cached.authenticate(black_box(&f.headers), &meta, "/mcp")).unwrap())
    });

    let uncached = Authenticator::new(f.store.clone(), f.audit.clone(), Duration::ZERO, identity).unwrap();
    g.sample_size(20);
    g.bench_function("miss", |b| {
        b.iter(|| rt.block_on(uncached.authenticate(black_box(&f.headers), &meta, "/mcp")).unwrap())
    });
    // No source address: the per-address failure budget would otherwise
    // turn this into a measurement of the 429 path.
    let meta = RequestMeta { source_addr: None, request_id: None };

    let mut forged = f.headers.clone();
    let mut token = f.headers[header::AUTHORIZATION].to_str().unwrap().to_owned();
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    forged.insert(header::AUTHORIZATION, HeaderValue::from_str(&token).unwrap());
    g.sample_size(100);
    g.bench_function("bad_checksum", |b| {
        b.iter(|| assert!(rt.block_on(uncached.authenticate(black_box(&forged), &meta, "/mcp")).is_err()))
    });
    g.finish();

    // JWT access tokens: the signature check with the tenant's public key
    // (cached), the audience check and the revocation state (cached for a
    // second): the steady state of a busy client.
    let mut g = c.benchmark_group("access_token");
    let vault = {
        moat_vault::LocalKek::create(f._dir.path()).unwrap();
        moat_gateway::credentials::Vault::new(
            Arc::new(moat_vault::LocalProvider::open(f._dir.path()).unwrap()),
            f.store.clone(),
            Default::default(),
        )
    };
    for alg in [moat_auth::SigningAlg::Rs256, moat_auth::SigningAlg::Es256] {
        let mut cfg = GatewayConfig::new("127.0.0.1:8080".parse().unwrap());
        cfg.oauth.signing_alg = alg;
        let id = Identity::new(f.store.clone(), &cfg).unwrap();
        rt.block_on(id.rotate_signing_key(&vault, &f.tenant.id)).unwrap();
        let req = moat_gateway::identity::IssueRequest {
            tenant_id: f.tenant.id.clone(),
            tenant_name: f.tenant.name.clone(),
            user_id: f.user.clone(),
            kind: PrincipalKind::Agent,
            role: Role::Member,
            client_id: "bench".into(),
            scopes: moat_core::Scopes::mcp(),
            resource: "http://127.0.0.1:8080/mcp".into(),
            allowed_origins: vec![],
            grant_id: None,
        };
        let issued = rt.block_on(id.issue(&vault, &req)).unwrap();
        let token = issued.token.expose_secret().to_owned();
        let resource = "http://127.0.0.1:8080/mcp/github";
        rt.block_on(id.authenticate(&token, resource)).unwrap();
        g.bench_function(format!("verify_{}", alg.as_str().to_lowercase()), |b| {
            b.iter(|| rt.block_on(id.authenticate(black_box(&token), resource)).unwrap())
        });
        g.bench_function(format!("issue_{}", alg.as_str().to_lowercase()), |b| {
            b.iter(|| rt.block_on(id.issue(&vault, black_box(&req))).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
