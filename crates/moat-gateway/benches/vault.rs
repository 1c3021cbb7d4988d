//! Per-call costs of the credential vault: resolving a caller's credentials
//! for a server (cache hit, cache miss with a warm DEK, cache miss with a cold
//! DEK), sealing and opening one value, and redacting a tool result.
//!
//! Run: `cargo bench -p moat-gateway --bench vault -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use moat_core::{AuthMethod, CredentialKind, Principal, PrincipalKind, Role, ScopeTier};
use moat_gateway::credentials::{NewValue, Subject, Vault, VaultOptions};
use moat_store::{NewServer, NewUser, ServerRecord, Store};
use moat_vault::{Dek, KeyProvider, LocalKek, LocalProvider, RecordContext, Redactor};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// A random 40-character value (hex).
fn random_value() -> String {
    let mut s = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    s.truncate(40);
    s
}

/// A tenant with one user (`alice`, in one team) and one stdio server holding
/// three credentials for her: an org one, a team one and a personal one.
struct Fixture {
    provider: Arc<dyn KeyProvider>,
    store: Store,
    principal: Principal,
    server: ServerRecord,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/moat.db", dir.path().display())).await.unwrap();
    LocalKek::create(dir.path()).unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(LocalProvider::open(dir.path()).unwrap());
    let tenant = store.create_tenant("bench").await.unwrap();
    let alice = store
        .create_user(
            &tenant.id,
            NewUser { name: "alice".into(), email: None, kind: PrincipalKind::Human, role: Role::Member },
        )
        .await
        .unwrap();
    let team = store.create_team(&tenant.id, "eng").await.unwrap();
    store.add_team_member(&tenant.id, &team.id, &alice.id).await.unwrap();
    let server = store.create_server(&tenant.id, NewServer::stdio("tools", vec!["tools-server".into()])).await.unwrap();

    let vault = Vault::new(provider.clone(), store.clone(), VaultOptions::default());
    for (tier, subject, target) in [
        (ScopeTier::Org, Subject::Org, "TOKEN_ORG"),
        (ScopeTier::Team, Subject::Team(team.id.clone()), "TOKEN_TEAM"),
        (ScopeTier::Personal, Subject::User(alice.id.clone()), "TOKEN"),
    ] {
        let secret = SecretString::from(random_value());
        let new = NewValue { tier, subject, kind: CredentialKind::Env, target, value: &secret };
        vault.set(&tenant.id, &server, new, "bench").await.unwrap();
    }

    let principal = Principal {
        tenant_id: tenant.id.clone(),
        tenant_name: tenant.name.clone(),
        user_id: alice.id.clone(),
        kind: PrincipalKind::Human,
        role: Role::Member,
        operator: false,
        credential_id: "bench".into(),
        method: AuthMethod::ApiKey,
        scopes: moat_core::Scopes::all(),
        allowed_origins: Vec::new(),
    };
    // Sanity: all three resolve.
    let binding = vault.resolve(&principal, &server).await.unwrap();
    assert_eq!(binding.credentials().len(), 3, "expected org, team and personal credentials");
    Fixture { provider, store, principal, server, _dir: dir }
}

fn uncached() -> VaultOptions {
    VaultOptions { credential_cache_ttl: Duration::ZERO, ..VaultOptions::default() }
}

fn bench_resolve(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fx = rt.block_on(fixture());
    let (p, server) = (&fx.principal, &fx.server);
    let mut g = c.benchmark_group("resolve");

    // Cache hit: the default 1 s TTL, warmed once. The TTL is longer than a
    // sample, but re-warm on each sample batch so an expiry never lands in one.
    let hit = Vault::new(fx.provider.clone(), fx.store.clone(), VaultOptions::default());
    g.bench_function("hit", |b| {
        rt.block_on(hit.resolve(p, server)).unwrap();
        b.to_async(&rt).iter(|| async { hit.resolve(black_box(p), black_box(server)).await.unwrap() });
    });

    // Cache miss, warm DEK: SQLite reads, ranking, three AES-GCM opens.
    let miss = Vault::new(fx.provider.clone(), fx.store.clone(), uncached());
    rt.block_on(miss.resolve(p, server)).unwrap();
    g.bench_function("miss", |b| {
        b.to_async(&rt).iter(|| async { miss.resolve(black_box(p), black_box(server)).await.unwrap() });
    });

    // Cache miss, cold DEK: a fresh vault each time, so the DEK is unwrapped
    // by the key provider too. The vault is built and dropped outside the timing.
    g.bench_function("miss_cold_dek", |b| {
        b.to_async(&rt).iter_batched(
            || Vault::new(fx.provider.clone(), fx.store.clone(), uncached()),
            |v| async move {
                let binding = v.resolve(black_box(p), black_box(server)).await.unwrap();
                (v, binding)
            },
            BatchSize::NumIterations(64),
        );
    });
    g.finish();
}

fn bench_crypto(c: &mut Criterion) {
    let dek = Dek::generate().unwrap();
    let ctx = RecordContext {
        tenant_id: "tnt_0000000000000000",
        tier: "personal",
        scope_id: "usr_0000000000000000",
        credential_id: "crd_0000000000000000",
        key_version: 1,
    };
    let value = random_value();
    let sealed = moat_vault::seal(&dek, &ctx, value.as_bytes()).unwrap();
    let mut g = c.benchmark_group("crypto");
    g.bench_function("seal_40B", |b| b.iter(|| moat_vault::seal(&dek, &ctx, black_box(value.as_bytes())).unwrap()));
    g.bench_function("open_40B", |b| b.iter(|| moat_vault::open(&dek, &ctx, black_box(&sealed)).unwrap()));
    g.finish();
}

/// A tool result of about 4 KiB: text content plus structured rows.
fn tool_result(secret: Option<&str>) -> Value {
    let rows: Vec<Value> = (0..24)
        .map(|i| {
            json!({
                "id": format!("issue-{i:04}"),
                "title": format!("Investigate flaky integration test number {i} in the payments pipeline"),
                "state": if i % 3 == 0 { "closed" } else { "open" },
                "labels": ["bug", "ci", "payments"],
                "comments": i * 7,
            })
        })
        .collect();
    let mut text = String::from("Found 24 issues matching the query. ");
    text.push_str(&"The pipeline reported intermittent failures during the nightly run. ".repeat(12));
    if let Some(s) = secret {
        text.push_str(&format!("Debug: upstream echoed its token {s} in an error message. "));
    }
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": { "issues": rows, "total": 24 },
        "isError": false,
    })
}

fn bench_redact(c: &mut Criterion) {
    let secrets: Vec<String> = (0..3).map(|_| random_value()).collect();
    let redactor = Redactor::new(secrets.iter().map(String::as_str));
    let clean = tool_result(None);
    let dirty = tool_result(Some(&secrets[1]));
    let size = |v: &Value| serde_json::to_vec(v).unwrap().len();
    assert!((3500..=5000).contains(&size(&clean)), "tool result is {} bytes", size(&clean));
    assert!(!redactor.redact_json(&mut clean.clone()));
    assert!(redactor.redact_json(&mut dirty.clone()));

    let mut g = c.benchmark_group("redact_json_4KiB");
    g.bench_function("no_secret", |b| {
        b.iter_batched_ref(|| clean.clone(), |v| redactor.redact_json(v), BatchSize::SmallInput);
    });
    g.bench_function("one_secret", |b| {
        b.iter_batched_ref(|| dirty.clone(), |v| redactor.redact_json(v), BatchSize::SmallInput);
    });
    g.finish();
}

criterion_group!(benches, bench_resolve, bench_crypto, bench_redact);
criterion_main!(benches);
