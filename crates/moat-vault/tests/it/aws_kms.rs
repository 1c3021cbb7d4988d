//! The AWS KMS provider against a real moto server (`MOAT_TEST_PYTHON` = a Python with
//! `moto[server]`; skipped with a notice otherwise).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::config::Credentials;
use moat_vault::{AwsKmsConfig, AwsKmsProvider, Dek, KeyContext, KeyProvider, RecordContext, VaultError, open, seal};
use secrecy::ExposeSecret;

use crate::support::{ChildGuard, free_port, skip, wait_for_port};

const SKIP_WHY: &str = "set MOAT_TEST_PYTHON to a Python with moto[server]";

/// The Python to run moto with, if it has moto's server.
fn moto_python() -> Option<String> {
    let python = std::env::var("MOAT_TEST_PYTHON").ok().filter(|p| !p.is_empty())?;
    let importable = Command::new(&python)
        .args(["-c", "import moto.server, flask"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    importable.then_some(python)
}

fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).credentials_provider(Credentials::new(
        "testing",
        "testing",
        None,
        None,
        "moat-test",
    ))
}

async fn provider(endpoint: &str, key_id: &str) -> AwsKmsProvider {
    let config = AwsKmsConfig {
        key_id: key_id.to_owned(),
        region: Some("us-east-1".to_owned()),
        endpoint_url: Some(endpoint.to_owned()),
    };
    AwsKmsProvider::from_loader(config, loader()).await.unwrap()
}

/// Whether two DEKs are the same key: what one seals the other opens.
fn same_key(a: &Dek, b: &Dek) -> bool {
    let ctx = RecordContext { tenant_id: "t", tier: "org", scope_id: "o", credential_id: "c", key_version: 1 };
    let sealed = seal(a, &ctx, b"probe").unwrap();
    open(b, &ctx, &sealed).is_ok_and(|p| p.expose_secret() == "probe")
}

#[tokio::test]
async fn aws_kms_against_moto() {
    let Some(python) = moto_python() else {
        skip("aws_kms_against_moto", SKIP_WHY);
        return;
    };
    let port = free_port();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
    let mut moto = ChildGuard::spawn(cmd).unwrap();
    assert!(wait_for_port(port, &mut moto, Duration::from_secs(60)), "moto did not start on port {port}");
    let endpoint = format!("http://127.0.0.1:{port}");

    let sdk = loader().region(Region::new("us-east-1")).endpoint_url(&endpoint).load().await;
    let admin = aws_sdk_kms::Client::new(&sdk);
    let key1 = admin.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let key2 = admin.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    admin.create_alias().alias_name("alias/moat-test").target_key_id(&key1).send().await.unwrap();

    let p1 = provider(&endpoint, &key1).await;
    assert_eq!(p1.name(), "aws-kms");
    p1.check().await.unwrap();

    // Generate / unwrap round trip.
    let ctx = KeyContext { tenant_id: "tenant-a", version: 1 };
    let (dek, wrapped) = p1.generate_dek(&ctx).await.unwrap();
    let back = p1.unwrap_dek(&ctx, &wrapped).await.unwrap();
    assert!(same_key(&dek, &back));

    // The encryption context binds tenant and version.
    let other_tenant = KeyContext { tenant_id: "tenant-b", version: 1 };
    let err = p1.unwrap_dek(&other_tenant, &wrapped).await.unwrap_err();
    assert!(matches!(err, VaultError::Decrypt), "{err:?}");
    let other_version = KeyContext { tenant_id: "tenant-a", version: 2 };
    assert!(matches!(p1.unwrap_dek(&other_version, &wrapped).await, Err(VaultError::Decrypt)));
    assert!(matches!(
        p1.unwrap_dek(&ctx, b"not a kms ciphertext").await,
        Err(VaultError::Decrypt | VaultError::Denied(_))
    ));

    // An alias works as the key id.
    let by_alias = provider(&endpoint, "alias/moat-test").await;
    by_alias.check().await.unwrap();
    assert!(same_key(&dek, &by_alias.unwrap_dek(&ctx, &wrapped).await.unwrap()));

    // Rewrap under a second key (moving to a new configured key) and unwrap there.
    let p2 = provider(&endpoint, &key2).await;
    let rewrapped = p2.rewrap_dek(&ctx, &wrapped).await.unwrap();
    assert_ne!(rewrapped, wrapped);
    assert!(same_key(&dek, &p2.unwrap_dek(&ctx, &rewrapped).await.unwrap()));
    // Unwrap is pinned to the configured key: key 1's provider refuses key 2's ciphertext.
    assert!(p1.unwrap_dek(&ctx, &rewrapped).await.is_err());
    assert!(matches!(p2.rewrap_dek(&other_tenant, &wrapped).await, Err(VaultError::Decrypt)));
    p2.begin_kek_rotation().await.unwrap();
    p2.finish_kek_rotation().await.unwrap();

    // A disabled key fails readiness, as a refusal.
    admin.disable_key().key_id(&key2).send().await.unwrap();
    let err = p2.check().await.unwrap_err();
    assert!(matches!(err, VaultError::Denied(_)), "{err:?}");
    assert!(err.to_string().contains("not enabled"), "{err}");
    admin.enable_key().key_id(&key2).send().await.unwrap();
    p2.check().await.unwrap();

    // A dead endpoint fails fast and says so.
    moto.kill();
    let started = Instant::now();
    let err = p1.check().await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().starts_with("aws-kms did not answer DescribeKey"), "{err}");
    let err = p1.unwrap_dek(&ctx, &wrapped).await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    eprintln!("aws_kms_against_moto: dead endpoint -> {err} (after {:?})", started.elapsed());
}

#[tokio::test]
async fn aws_kms_config_is_validated() {
    let config = AwsKmsConfig { key_id: " ".into(), region: Some("us-east-1".into()), endpoint_url: None };
    assert!(matches!(AwsKmsProvider::from_loader(config, loader()).await, Err(VaultError::Config(_))));
}
