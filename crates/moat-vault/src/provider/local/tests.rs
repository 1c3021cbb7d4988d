use super::*;
use crate::LocalKek;
use std::os::unix::fs::PermissionsExt;

fn kc(t: &str, v: u32) -> KeyContext<'_> {
    KeyContext { tenant_id: t, version: v }
}

fn setup() -> (tempfile::TempDir, LocalProvider) {
    let dir = tempfile::tempdir().unwrap();
    LocalKek::create(dir.path()).unwrap();
    let p = LocalProvider::open(dir.path()).unwrap();
    (dir, p)
}

#[tokio::test]
async fn generate_unwrap_round_trip_and_binding() {
    let (_dir, p) = setup();
    assert_eq!(p.name(), "local");
    p.check().await.unwrap();
    let (dek, wrapped) = p.generate_dek(&kc("t1", 1)).await.unwrap();
    assert_eq!(wrapped.len(), WRAPPED_LEN);
    assert_eq!(wrapped[0], WRAP_VERSION);
    let back = p.unwrap_dek(&kc("t1", 1), &wrapped).await.unwrap();
    assert_eq!(dek.expose(), back.expose());
    assert!(matches!(p.unwrap_dek(&kc("t2", 1), &wrapped).await, Err(VaultError::Decrypt)));
    assert!(matches!(p.unwrap_dek(&kc("t1", 2), &wrapped).await, Err(VaultError::Decrypt)));
    for i in 0..wrapped.len() * 8 {
        let mut w = wrapped.clone();
        w[i / 8] ^= 1 << (i % 8);
        assert!(matches!(p.unwrap_dek(&kc("t1", 1), &w).await, Err(VaultError::Decrypt)), "bit {i}");
    }
    assert!(matches!(p.unwrap_dek(&kc("t1", 1), &wrapped[..40]).await, Err(VaultError::Decrypt)));
    let rewrapped = p.rewrap_dek(&kc("t1", 1), &wrapped).await.unwrap();
    assert_ne!(rewrapped, wrapped);
    assert_eq!(p.unwrap_dek(&kc("t1", 1), &rewrapped).await.unwrap().expose(), dek.expose());
}

#[tokio::test]
async fn other_data_dirs_key_does_not_unwrap() {
    let (_a, pa) = setup();
    let (_b, pb) = setup();
    let (_, wrapped) = pa.generate_dek(&kc("t", 1)).await.unwrap();
    assert!(matches!(pb.unwrap_dek(&kc("t", 1), &wrapped).await, Err(VaultError::Decrypt)));
}

#[tokio::test]
async fn open_refuses_missing_or_wide_key_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(LocalProvider::open(dir.path()), Err(VaultError::Kek(KekError::Missing(_)))));
    let kek = LocalKek::create(dir.path()).unwrap();
    std::fs::set_permissions(kek.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(LocalProvider::open(dir.path()), Err(VaultError::Kek(KekError::Permissions { .. }))));
    std::fs::set_permissions(kek.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = LocalProvider::open(dir.path()).unwrap();
    p.begin_kek_rotation().await.unwrap();
    let next = dir.path().join(KEK_NEXT_FILE);
    assert_eq!(std::fs::metadata(&next).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert!(p.check().await.is_err());
    assert!(matches!(LocalProvider::open(dir.path()), Err(VaultError::Kek(KekError::Permissions { .. }))));
}

#[tokio::test]
async fn check_fails_when_the_key_file_goes_away_or_widens() {
    let (dir, p) = setup();
    let path = dir.path().join(KEK_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(p.check().await, Err(VaultError::Kek(KekError::Permissions { .. }))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(p.check().await, Err(VaultError::Kek(KekError::Missing(_)))));
}

#[tokio::test]
async fn rotation_is_resumable_and_crash_safe() {
    let (dir, p) = setup();
    let (d1, w1) = p.generate_dek(&kc("t", 1)).await.unwrap();
    let old_id = p.read().current.id;
    // Finishing with nothing pending is a no-op.
    p.finish_kek_rotation().await.unwrap();
    assert!(!p.rotation_pending());

    p.begin_kek_rotation().await.unwrap();
    assert!(p.rotation_pending());
    let next_id = p.read().next.as_ref().unwrap().id;
    assert_ne!(next_id, old_id);
    // Idempotent: a second begin keeps the pending key.
    p.begin_kek_rotation().await.unwrap();
    assert_eq!(p.read().next.as_ref().unwrap().id, next_id);

    // New wraps use the new KEK; old DEKs still unwrap.
    let (d2, w2) = p.generate_dek(&kc("t", 2)).await.unwrap();
    assert_eq!(&w2[1..9], next_id.as_slice());
    assert_eq!(p.unwrap_dek(&kc("t", 1), &w1).await.unwrap().expose(), d1.expose());

    // "Crash" mid-rotation: a fresh process sees the pending key, both DEKs unwrap, and begin resumes.
    drop(p);
    let p = LocalProvider::open(dir.path()).unwrap();
    assert!(p.rotation_pending());
    p.begin_kek_rotation().await.unwrap();
    assert_eq!(p.read().next.as_ref().unwrap().id, next_id);
    assert_eq!(p.unwrap_dek(&kc("t", 1), &w1).await.unwrap().expose(), d1.expose());
    assert_eq!(p.unwrap_dek(&kc("t", 2), &w2).await.unwrap().expose(), d2.expose());

    let w1b = p.rewrap_dek(&kc("t", 1), &w1).await.unwrap();
    assert_eq!(&w1b[1..9], next_id.as_slice());
    p.finish_kek_rotation().await.unwrap();
    assert!(!p.rotation_pending());
    assert!(!dir.path().join(KEK_NEXT_FILE).exists());
    assert_eq!(p.read().current.id, next_id);
    // The old KEK is retired: a DEK still wrapped under it no longer unwraps.
    assert!(matches!(p.unwrap_dek(&kc("t", 1), &w1).await, Err(VaultError::Decrypt)));
    assert_eq!(p.unwrap_dek(&kc("t", 1), &w1b).await.unwrap().expose(), d1.expose());
    p.finish_kek_rotation().await.unwrap();

    let p = LocalProvider::open(dir.path()).unwrap();
    assert!(!p.rotation_pending());
    assert_eq!(p.unwrap_dek(&kc("t", 2), &w2).await.unwrap().expose(), d2.expose());
    assert_eq!(std::fs::metadata(dir.path().join(KEK_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    p.check().await.unwrap();
    // LocalKek sees the rotated key too.
    LocalKek::load(dir.path()).unwrap().check().unwrap();
}

#[tokio::test]
async fn begin_discards_a_stale_temp_file_and_adopts_an_existing_next_key() {
    let (dir, p) = setup();
    let tmp = dir.path().join(KEK_NEXT_TMP);
    std::fs::write(&tmp, b"partial").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.begin_kek_rotation().await.unwrap();
    assert!(!tmp.exists());
    let next_id = p.read().next.as_ref().unwrap().id;

    // A second provider on the same dir that opened before the rotation adopts the pending key.
    let (dir2, _) = setup();
    std::fs::copy(dir.path().join(KEK_FILE), dir2.path().join(KEK_FILE)).unwrap();
    let q = LocalProvider::open(dir2.path()).unwrap();
    std::fs::copy(dir.path().join(KEK_NEXT_FILE), dir2.path().join(KEK_NEXT_FILE)).unwrap();
    q.begin_kek_rotation().await.unwrap();
    assert_eq!(q.read().next.as_ref().unwrap().id, next_id);
}

#[test]
fn debug_shows_no_key() {
    let (_dir, p) = setup();
    let s = format!("{p:?}");
    assert!(s.contains("LocalProvider") && s.contains("rotating: false"), "{s}");
}
