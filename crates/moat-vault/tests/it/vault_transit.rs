//! The Vault Transit provider against a recorded exchange: a server on 127.0.0.1 that replays
//! answers shaped exactly like a real Vault / OpenBao's (captured from OpenBao 2.7.2), checking each
//! request's method, path, token, namespace and body.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use moat_vault::{Dek, KeyContext, KeyProvider, RecordContext, VaultError, VaultTransitConfig, VaultTransitProvider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const TOKEN: &str = "s.moat-test-token";
const DEK_B64: &str = "AE/SplTHFTkQHDDVkpfD8VJKPM/CWFbg/RE5I2Sarq0=";
const CT_V1: &str = "vault:v1:8izZBFvJwn7zZ0ufK0AOIluDAkBEC8NvPFCKK0YM4aZb0I9Z1mWxgda9MeP+zvih4mTa6g2dAVcYkScA";
const CT_V2: &str = "vault:v2:1uG4xlLtEKR7sJ1UJbbgT1V42QwIYCxV4Fg0o4B+YH0x8euR2iUpXXddiMmXS8r3r5yodHuFD/99cwY+";

/// One expected request and the answer to it.
#[derive(Clone)]
struct Exchange {
    method: Method,
    path: &'static str,
    /// Fields the JSON body must have (a subset check).
    body: Option<Value>,
    status: StatusCode,
    answer: String,
    /// How many times in a row this exchange is expected (retries).
    times: usize,
}

fn ex(method: Method, path: &'static str, body: Option<Value>, status: u16, answer: Value) -> Exchange {
    Exchange { method, path, body, status: StatusCode::from_u16(status).unwrap(), answer: answer.to_string(), times: 1 }
}

/// Vault's success envelope, as OpenBao 2.7.2 sends it.
fn envelope(data: Value) -> Value {
    json!({
        "request_id": "c0ae045c-fb17-5b14-50bb-36eb8cedb43b",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null
    })
}

fn key_info(latest: u32) -> Value {
    let keys: serde_json::Map<String, Value> = (1..=latest).map(|v| (v.to_string(), json!(1795433572))).collect();
    envelope(json!({
        "allow_plaintext_backup": false, "auto_rotate_period": 0, "convergent_encryption": false,
        "deletion_allowed": false, "derived": true, "exportable": false, "imported_key": false,
        "kdf": "hkdf_sha256", "keys": keys, "latest_version": latest, "min_available_version": 0,
        "min_decryption_version": 1, "min_encryption_version": 0, "name": "moat", "soft_deleted": false,
        "supports_decryption": true, "supports_derivation": true, "supports_encryption": true,
        "supports_signing": false, "type": "aes256-gcm96"
    }))
}

/// lp("moat-dek-v1") ‖ lp(tenant) ‖ lp(version BE), base64: the context the provider must send.
fn context(tenant: &str, version: u32) -> String {
    let mut out = Vec::new();
    for field in [b"moat-dek-v1".as_slice(), tenant.as_bytes(), &version.to_be_bytes()] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    STANDARD.encode(out)
}

struct Script {
    expected: Vec<Exchange>,
    next: usize,
    repeats: usize,
    namespace: Option<&'static str>,
    failures: Vec<String>,
    served: usize,
}

struct Recorded {
    script: Arc<Mutex<Script>>,
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorded {
    async fn start(expected: Vec<Exchange>, namespace: Option<&'static str>) -> Self {
        let script =
            Arc::new(Mutex::new(Script { expected, next: 0, repeats: 0, namespace, failures: vec![], served: 0 }));
        let app = Router::new().fallback(replay).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { script, addr, task }
    }

    fn provider(&self, namespace: Option<&str>) -> VaultTransitProvider {
        let mut config = VaultTransitConfig::new(self.addr.clone(), SecretString::from(TOKEN), "moat");
        config.namespace = namespace.map(str::to_owned);
        VaultTransitProvider::new(config).unwrap()
    }

    /// Asserts every exchange was served as expected.
    fn finish(&self) {
        let s = self.script.lock().unwrap();
        assert!(s.failures.is_empty(), "unexpected requests: {:#?}", s.failures);
        assert_eq!(s.next, s.expected.len(), "not every recorded exchange was requested");
    }

    fn served(&self) -> usize {
        self.script.lock().unwrap().served
    }
}

fn subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|av| subset(v, av))),
        _ => expected == actual,
    }
}

async fn replay(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = script.lock().unwrap();
    s.served += 1;
    let what = format!("{method} {uri}");
    let Some(exchange) = s.expected.get(s.next).cloned() else {
        s.failures.push(format!("{what}: no more exchanges recorded"));
        return StatusCode::IM_A_TEAPOT.into_response();
    };
    let mut problems = vec![];
    if method != exchange.method || uri.path() != exchange.path {
        problems.push(format!("expected {} {}", exchange.method, exchange.path));
    }
    let token = headers.get("x-vault-token").and_then(|v| v.to_str().ok());
    if token != Some(TOKEN) {
        problems.push(format!("X-Vault-Token was {token:?}"));
    }
    let ns = headers.get("x-vault-namespace").and_then(|v| v.to_str().ok());
    if ns != s.namespace {
        problems.push(format!("X-Vault-Namespace was {ns:?}"));
    }
    if let Some(expected) = &exchange.body {
        match serde_json::from_slice::<Value>(&body) {
            Ok(actual) if subset(expected, &actual) => {}
            Ok(actual) => problems.push(format!("body {actual} lacks {expected}")),
            Err(_) => problems.push("body is not JSON".to_owned()),
        }
    }
    if !problems.is_empty() {
        s.failures.push(format!("{what}: {}", problems.join("; ")));
        return StatusCode::IM_A_TEAPOT.into_response();
    }
    s.repeats += 1;
    if s.repeats >= exchange.times {
        s.repeats = 0;
        s.next += 1;
    }
    let mut resp = (exchange.status, exchange.answer).into_response();
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut().insert("cache-control", "no-store".parse().unwrap());
    resp
}

fn same_key(a: &Dek, b: &Dek) -> bool {
    let ctx = RecordContext { tenant_id: "t", tier: "org", scope_id: "o", credential_id: "c", key_version: 1 };
    let sealed = moat_vault::seal(a, &ctx, b"probe").unwrap();
    moat_vault::open(b, &ctx, &sealed).is_ok_and(|p| p.expose_secret() == "probe")
}

#[tokio::test]
async fn generate_decrypt_rotate_rewrap() {
    let t1 = context("tenant-a", 1);
    let server = Recorded::start(
        vec![
            ex(Method::GET, "/v1/transit/keys/moat", None, 200, key_info(1)),
            ex(
                Method::POST,
                "/v1/transit/datakey/plaintext/moat",
                Some(json!({"context": t1, "bits": 256})),
                200,
                envelope(json!({"ciphertext": CT_V1, "key_version": 1, "plaintext": DEK_B64})),
            ),
            ex(
                Method::POST,
                "/v1/transit/decrypt/moat",
                Some(json!({"ciphertext": CT_V1, "context": t1})),
                200,
                envelope(json!({"plaintext": DEK_B64})),
            ),
            ex(
                Method::POST,
                "/v1/transit/decrypt/moat",
                Some(json!({"ciphertext": CT_V1, "context": context("tenant-b", 1)})),
                400,
                json!({"errors": ["cipher: message authentication failed"]}),
            ),
            ex(Method::POST, "/v1/transit/keys/moat/rotate", None, 200, key_info(2)),
            ex(
                Method::POST,
                "/v1/transit/rewrap/moat",
                Some(json!({"ciphertext": CT_V1, "context": t1})),
                200,
                envelope(json!({"ciphertext": CT_V2, "key_version": 2})),
            ),
            ex(
                Method::POST,
                "/v1/transit/decrypt/moat",
                Some(json!({"ciphertext": CT_V2, "context": t1})),
                200,
                envelope(json!({"plaintext": DEK_B64})),
            ),
        ],
        None,
    )
    .await;
    let p = server.provider(None);
    assert_eq!(p.name(), "vault-transit");
    p.check().await.unwrap();

    let ctx = KeyContext { tenant_id: "tenant-a", version: 1 };
    let (dek, wrapped) = p.generate_dek(&ctx).await.unwrap();
    assert_eq!(wrapped, CT_V1.as_bytes());
    let expected = Dek::from_bytes(&STANDARD.decode(DEK_B64).unwrap()).unwrap();
    assert!(same_key(&dek, &expected));
    assert!(same_key(&p.unwrap_dek(&ctx, &wrapped).await.unwrap(), &expected));

    let other = KeyContext { tenant_id: "tenant-b", version: 1 };
    let err = p.unwrap_dek(&other, &wrapped).await.unwrap_err();
    assert!(matches!(err, VaultError::Decrypt), "{err:?}");

    p.begin_kek_rotation().await.unwrap();
    let rewrapped = p.rewrap_dek(&ctx, &wrapped).await.unwrap();
    assert_eq!(rewrapped, CT_V2.as_bytes());
    p.finish_kek_rotation().await.unwrap();
    assert!(same_key(&p.unwrap_dek(&ctx, &rewrapped).await.unwrap(), &expected));

    // Not a Vault ciphertext: refused without asking Vault.
    assert!(matches!(p.unwrap_dek(&ctx, b"\x01\x02").await, Err(VaultError::Decrypt)));
    server.finish();
}

#[tokio::test]
async fn namespace_header_and_custom_mount() {
    let server =
        Recorded::start(vec![ex(Method::GET, "/v1/team/transit/keys/moat", None, 200, key_info(1))], Some("ns1/"))
            .await;
    let mut config = VaultTransitConfig::new(server.addr.clone(), SecretString::from(TOKEN), "moat");
    config.mount = "team/transit".into();
    config.namespace = Some("ns1/".into());
    VaultTransitProvider::new(config).unwrap().check().await.unwrap();
    server.finish();
}

#[tokio::test]
async fn forbidden_is_denied() {
    let server = Recorded::start(
        vec![ex(Method::GET, "/v1/transit/keys/moat", None, 403, json!({"errors": ["permission denied"]}))],
        None,
    )
    .await;
    let err = server.provider(None).check().await.unwrap_err();
    assert!(matches!(err, VaultError::Denied(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("vault-transit refused read key (403): permission denied"), "{text}");
    assert!(!text.contains(TOKEN));
    server.finish();
}

#[tokio::test]
async fn server_errors_are_retried_then_unavailable() {
    let mut e500 = ex(Method::GET, "/v1/transit/keys/moat", None, 500, json!({"errors": ["internal error"]}));
    e500.times = 3;
    let server = Recorded::start(vec![e500], None).await;
    let err = server.provider(None).check().await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("answered 500"), "{err}");
    assert_eq!(server.served(), 3, "two retries");
    server.finish();

    // A 5xx on decrypt never echoes a body, and a sealed Vault is unavailable.
    let mut sealed = ex(Method::POST, "/v1/transit/decrypt/moat", None, 503, json!({"errors": ["Vault is sealed"]}));
    sealed.times = 3;
    let server = Recorded::start(vec![sealed], None).await;
    let ctx = KeyContext { tenant_id: "t", version: 1 };
    let err = server.provider(None).unwrap_dek(&ctx, CT_V1.as_bytes()).await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("Vault is sealed"), "{err}");
    server.finish();

    // A rotation is not retried after an answer (a second one would add a key version).
    let server = Recorded::start(
        vec![ex(Method::POST, "/v1/transit/keys/moat/rotate", None, 500, json!({"errors": ["boom"]}))],
        None,
    )
    .await;
    assert!(matches!(server.provider(None).begin_kek_rotation().await, Err(VaultError::Unavailable(_))));
    assert_eq!(server.served(), 1);
    server.finish();
}

#[tokio::test]
async fn a_malformed_answer_is_corrupt_and_never_echoed() {
    let server = Recorded::start(
        vec![ex(
            Method::POST,
            "/v1/transit/decrypt/moat",
            None,
            200,
            envelope(json!({"plaintext": "c2VjcmV0LXBsYWludGV4dA=="})),
        )],
        None,
    )
    .await;
    let ctx = KeyContext { tenant_id: "t", version: 1 };
    let err = server.provider(None).unwrap_dek(&ctx, CT_V1.as_bytes()).await.unwrap_err();
    // 16 bytes is not a DEK: refused, and the message carries none of the answer.
    assert!(matches!(err, VaultError::Corrupt(_)), "{err:?}");
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    server.finish();
}

#[tokio::test]
async fn connection_refused_is_unavailable_within_seconds() {
    let port = crate::support::free_port();
    let config = VaultTransitConfig::new(format!("http://127.0.0.1:{port}"), SecretString::from(TOKEN), "moat");
    let p = VaultTransitProvider::new(config).unwrap();
    let started = Instant::now();
    let err = p.check().await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("vault-transit did not answer read key"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    let ctx = KeyContext { tenant_id: "t", version: 1 };
    assert!(matches!(p.unwrap_dek(&ctx, CT_V1.as_bytes()).await, Err(VaultError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
