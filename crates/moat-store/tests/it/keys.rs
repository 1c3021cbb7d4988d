//! API keys: lifecycle, the partial unique index on names, rotation,
//! isolation, and the secret hash staying out of admin views.

use crate::harness::{Ctx, new_key, seed};
use moat_core::{ApiKeyId, Role};
use moat_store::StoreError;

pub async fn lifecycle(ctx: Ctx) {
    let s = &ctx.store;
    let (t, user) = seed(s, "acme").await;
    let mut new = new_key(&user, "laptop", "pub1");
    new.role = Role::Owner;
    new.operator = true;
    new.expires_at = Some(4_000_000_000_000);
    let key = s.insert_api_key(&t.id, new).await.unwrap();
    assert!(key.operator && !key.revoked && key.last_used_at.is_none());

    assert_eq!(s.find_api_key(&t.id, "laptop").await.unwrap(), Some(key.clone()));
    assert_eq!(s.find_api_key(&t.id, key.id.as_str()).await.unwrap(), Some(key.clone()));
    assert_eq!(s.list_api_keys(&t.id).await.unwrap(), vec![key.clone()]);

    let auth = s.api_key_for_auth("pub1").await.unwrap().unwrap();
    assert_eq!(
        (auth.id.clone(), auth.tenant_id.clone(), auth.tenant_name.as_str()),
        (key.id.clone(), t.id.clone(), "acme")
    );
    assert_eq!(auth.secret_hash, "$argon2id$v=19$m=19456,t=2,p=1$SALTpub1$HASHpub1");
    assert_eq!((auth.role, auth.operator, auth.user_id.clone()), (Role::Owner, true, user.id.clone()));
    assert!(auth.is_usable(0) && !auth.is_usable(4_000_000_000_000));
    assert!(s.api_key_for_auth("nope").await.unwrap().is_none());

    s.touch_api_key(&t.id, &key.id, 1_000).await.unwrap();
    s.touch_api_key(&t.id, &key.id, 500).await.unwrap(); // never moves back
    assert_eq!(s.find_api_key(&t.id, "laptop").await.unwrap().unwrap().last_used_at, Some(1_000));

    match s.insert_api_key(&t.id, new_key(&user, "laptop", "pub2")).await {
        Err(StoreError::Conflict(m)) => {
            assert_eq!(m, "an API key named `laptop` already exists in this tenant")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(s.insert_api_key(&t.id, new_key(&user, "other", "pub1")).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.insert_api_key(&t.id, new_key(&user, "Bad Name", "pub3")).await, Err(StoreError::Invalid(_))));

    assert!(s.revoke_api_key(&t.id, &key.id).await.unwrap());
    assert!(!s.revoke_api_key(&t.id, &key.id).await.unwrap(), "already revoked");
    assert!(!s.revoke_api_key(&t.id, &ApiKeyId::generate()).await.unwrap());
    // Revoked: gone by name, still there by id and in the list, flagged.
    assert_eq!(s.find_api_key(&t.id, "laptop").await.unwrap(), None);
    let revoked = s.find_api_key(&t.id, key.id.as_str()).await.unwrap().unwrap();
    assert!(revoked.revoked && revoked.revoked_at.is_some());
    assert_eq!(s.list_api_keys(&t.id).await.unwrap(), vec![revoked]);
    assert!(s.api_key_for_auth("pub1").await.unwrap().unwrap().is_revoked());
}

pub async fn revoked_name_is_reusable(ctx: Ctx) {
    let s = &ctx.store;
    let (t, user) = seed(s, "acme").await;
    let first = s.insert_api_key(&t.id, new_key(&user, "ci", "pub1")).await.unwrap();
    assert!(s.revoke_api_key(&t.id, &first.id).await.unwrap());
    let second = s.insert_api_key(&t.id, new_key(&user, "ci", "pub2")).await.unwrap();
    assert_eq!(s.find_api_key(&t.id, "ci").await.unwrap().unwrap().id, second.id);
    let listed = s.list_api_keys(&t.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed.iter().filter(|k| k.revoked).count(), 1);
    // Only one live key per name: a third is refused while the second lives.
    assert!(matches!(s.insert_api_key(&t.id, new_key(&user, "ci", "pub3")).await, Err(StoreError::Conflict(_))));
}

pub async fn rotate(ctx: Ctx) {
    let s = &ctx.store;
    let (t, user) = seed(s, "acme").await;
    let key = s.insert_api_key(&t.id, new_key(&user, "laptop", "old")).await.unwrap();
    assert!(s.rotate_api_key_secret(&t.id, &key.id, "new", "$argon2id$new").await.unwrap());
    assert!(s.api_key_for_auth("old").await.unwrap().is_none(), "the old key stops at once");
    let auth = s.api_key_for_auth("new").await.unwrap().unwrap();
    assert_eq!((auth.id, auth.secret_hash.as_str(), auth.name.as_str()), (key.id.clone(), "$argon2id$new", "laptop"));
    let after = s.find_api_key(&t.id, "laptop").await.unwrap().unwrap();
    assert_eq!((after.public_id.as_str(), after.created_at), ("new", key.created_at));

    let other = s.insert_api_key(&t.id, new_key(&user, "other", "taken")).await.unwrap();
    assert!(matches!(s.rotate_api_key_secret(&t.id, &key.id, "taken", "h").await, Err(StoreError::Conflict(_))));
    assert!(s.revoke_api_key(&t.id, &other.id).await.unwrap());
    assert!(!s.rotate_api_key_secret(&t.id, &other.id, "again", "h").await.unwrap(), "revoked keys are refused");
    assert!(s.api_key_for_auth("again").await.unwrap().is_none());
}

pub async fn isolation(ctx: Ctx) {
    let s = &ctx.store;
    let (a, a_user) = seed(s, "tenant-a").await;
    let (b, b_user) = seed(s, "tenant-b").await;
    let a_key = s.insert_api_key(&a.id, new_key(&a_user, "laptop", "puba")).await.unwrap();

    assert_eq!(s.find_api_key(&b.id, a_key.id.as_str()).await.unwrap(), None);
    assert_eq!(s.find_api_key(&b.id, "laptop").await.unwrap(), None);
    assert!(s.list_api_keys(&b.id).await.unwrap().is_empty());
    assert!(!s.revoke_api_key(&b.id, &a_key.id).await.unwrap());
    assert!(!s.rotate_api_key_secret(&b.id, &a_key.id, "stolen", "h").await.unwrap());
    s.touch_api_key(&b.id, &a_key.id, 42).await.unwrap();
    let still = s.find_api_key(&a.id, "laptop").await.unwrap().unwrap();
    assert_eq!((still.revoked, still.public_id.as_str(), still.last_used_at), (false, "puba", None));

    // A key of tenant B cannot point at a user of tenant A.
    match s.insert_api_key(&b.id, new_key(&a_user, "sneaky", "pubx")).await {
        Err(StoreError::Invalid(m)) => assert_eq!(m, "the user does not exist in this tenant"),
        other => panic!("expected invalid, got {other:?}"),
    }
    // The same name in both tenants is fine.
    s.insert_api_key(&b.id, new_key(&b_user, "laptop", "pubb")).await.unwrap();
    assert_eq!(s.api_key_for_auth("pubb").await.unwrap().unwrap().tenant_name, "tenant-b");
}

pub async fn secret_hash_stays_out_of_views(ctx: Ctx) {
    let s = &ctx.store;
    let (t, user) = seed(s, "acme").await;
    let new = new_key(&user, "laptop", "pub1");
    assert!(!format!("{new:?}").contains("HASHpub1"));
    let key = s.insert_api_key(&t.id, new).await.unwrap();
    let json = serde_json::to_string(&s.list_api_keys(&t.id).await.unwrap()).unwrap();
    assert!(!json.contains("HASH") && !json.contains("secret_hash"), "{json}");
    assert!(!format!("{key:?}").contains("HASH"));
    let auth = s.api_key_for_auth("pub1").await.unwrap().unwrap();
    let debug = format!("{auth:?}");
    assert!(!debug.contains("HASHpub1") && debug.contains("<redacted>"), "{debug}");
}
