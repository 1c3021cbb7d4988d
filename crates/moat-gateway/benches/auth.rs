//! Per-request cost of API key authentication: a verification-cache hit (the
//! common case: a key is verified with Argon2id once per TTL), a miss (parse,
//! checksum, one indexed read, Argon2id verification), and a malformed key
//! refused offline by its checksum (no database, no Argon2id).
//!
//! Run: `cargo bench -p moat-gateway --bench auth -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{HeaderMap, HeaderValue, header};
use criterion::{Criterion, criterion_group, criterion_main};
use moat_core::{PrincipalKind, Role};
use moat_gateway::audit::AuditSink;
use moat_gateway::authn::{Authenticator, RequestMeta};
use moat_store::{NewApiKey, NewUser, Store};
use secrecy::ExposeSecret;
use std::hint::black_box;
use std::time::Duration;

struct Fixture {
    store: Store,
    audit: AuditSink,
    headers: HeaderMap,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
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
    let (audit, _writer) = AuditSink::start(store.clone());
    let mut headers = HeaderMap::new();
    let bearer = format!("Bearer {}", key.token.expose_secret());
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap());
    Fixture { store, audit, headers, _dir: dir }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(fixture());
    let meta = RequestMeta { source_addr: Some("127.0.0.1".into()), request_id: None };
    let mut g = c.benchmark_group("api_key");

    let cached = Authenticator::new(f.store.clone(), f.audit.clone(), Duration::from_secs(60)).unwrap();
    rt.block_on(cached.authenticate(&f.headers, &meta)).unwrap();
    g.bench_function("hit", |b| b.iter(|| rt.block_on(cached.authenticate(black_box(&f.headers), &meta)).unwrap()));

    let uncached = Authenticator::new(f.store.clone(), f.audit.clone(), Duration::ZERO).unwrap();
    g.sample_size(20);
    g.bench_function("miss", |b| b.iter(|| rt.block_on(uncached.authenticate(black_box(&f.headers), &meta)).unwrap()));

    let mut forged = f.headers.clone();
    let mut token = f.headers[header::AUTHORIZATION].to_str().unwrap().to_owned();
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    forged.insert(header::AUTHORIZATION, HeaderValue::from_str(&token).unwrap());
    g.sample_size(100);
    g.bench_function("bad_checksum", |b| {
        b.iter(|| assert!(rt.block_on(uncached.authenticate(black_box(&forged), &meta)).is_err()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
