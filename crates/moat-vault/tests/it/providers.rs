//! The providers behind `Arc<dyn KeyProvider>`, with envelope encryption end to end.

use std::sync::Arc;

use moat_vault::{KeyContext, KeyProvider, LocalKek, LocalProvider, RecordContext, open, seal};
use secrecy::ExposeSecret;

#[tokio::test]
async fn local_provider_as_a_trait_object_through_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    LocalKek::load_or_create(dir.path()).unwrap();
    let provider: Arc<dyn KeyProvider> = Arc::new(LocalProvider::open(dir.path()).unwrap());
    assert_eq!(provider.name(), "local");
    provider.check().await.unwrap();

    let kc = KeyContext { tenant_id: "acme", version: 1 };
    let (dek, wrapped) = provider.generate_dek(&kc).await.unwrap();
    let dek = Arc::new(dek);
    let rc = RecordContext { tenant_id: "acme", tier: "personal", scope_id: "u1", credential_id: "gh", key_version: 1 };
    let sealed = seal(&dek, &rc, b"ghp_abc").unwrap();

    provider.begin_kek_rotation().await.unwrap();
    let rewrapped = provider.rewrap_dek(&kc, &wrapped).await.unwrap();
    provider.finish_kek_rotation().await.unwrap();

    // A restart after the rotation: the record still opens through the re-wrapped DEK.
    drop(provider);
    let provider: Arc<dyn KeyProvider> = Arc::new(LocalProvider::open(dir.path()).unwrap());
    let dek2 = provider.unwrap_dek(&kc, &rewrapped).await.unwrap();
    assert_eq!(open(&dek2, &rc, &sealed).unwrap().expose_secret(), "ghp_abc");
    assert!(provider.unwrap_dek(&kc, &wrapped).await.is_err(), "the retired KEK is gone");
}
