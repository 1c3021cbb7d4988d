//! The authorization server's rows: clients, single-use codes and refresh
//! tokens (reuse reported, never served twice), grants and revocation,
//! consents, browser sessions, signing keys, sealed tenant secrets and the
//! tenant's identity settings, with tenant isolation.

use crate::harness::{Ctx, seed};
use moat_core::{Role, TenantId, UserId, new_id, now_ms};
use moat_store::{
    AuthorizationCode, ClientKind, ClientSource, GrantRecord, IdpSettings, OAuthClientRecord, PendingAuthorization,
    Redeemed, SecretPurpose, SigningKeyRecord, Store, TenantAuthSettings,
};
use serde_json::json;

fn client(tenant: Option<&TenantId>, name: &str, kind: ClientKind, user: Option<&UserId>) -> OAuthClientRecord {
    let now = now_ms();
    OAuthClientRecord {
        id: new_id(),
        tenant_id: tenant.cloned(),
        name: name.into(),
        kind,
        source: if tenant.is_some() { ClientSource::Admin } else { ClientSource::Dynamic },
        user_id: user.cloned(),
        auth_method: "none".into(),
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        scopes: vec!["mcp:tools".into()],
        metadata: json!({"client_uri": "https://app.example"}),
        created_at: now,
        updated_at: now,
        revoked_at: None,
    }
}

fn grant(tenant: &TenantId, client: &str, user: &UserId) -> GrantRecord {
    GrantRecord {
        id: new_id(),
        tenant_id: tenant.clone(),
        client_id: client.into(),
        user_id: user.clone(),
        scope: "mcp:tools".into(),
        resource: "http://gw/mcp".into(),
        allowed_origins: vec!["https://app.example".into()],
        created_at: now_ms(),
        revoked_at: None,
        revoked_reason: None,
    }
}

async fn tenant_key(s: &Store, t: &TenantId) {
    assert!(s.insert_tenant_key(t, 1, &[9, 9], "local").await.unwrap());
}

pub async fn clients(ctx: Ctx) {
    let s = &ctx.store;
    let (a, a_user) = seed(s, "acme").await;
    let (b, _) = seed(s, "beta").await;
    let svc = client(Some(&a.id), "ci", ClientKind::Service, Some(&a_user.id));
    s.insert_oauth_client(&svc, Some("$argon2id$hash")).await.unwrap();
    let dynamic = client(None, "claude", ClientKind::Public, None);
    s.insert_oauth_client(&dynamic, None).await.unwrap();

    let found = s.oauth_client_for_auth(&svc.id).await.unwrap().unwrap();
    assert_eq!(found.client, svc);
    assert_eq!(found.secret_hash.as_deref(), Some("$argon2id$hash"));
    assert!(!format!("{found:?}").contains("argon2id"), "Debug hides the hash");
    assert_eq!(s.oauth_client_for_auth(&dynamic.id).await.unwrap().unwrap().client.tenant_id, None);
    // Listing is per tenant: the dynamic client and other tenants' clients stay out.
    assert_eq!(s.list_oauth_clients(&a.id).await.unwrap(), vec![svc.clone()]);
    assert!(s.list_oauth_clients(&b.id).await.unwrap().is_empty());
    assert_eq!(s.find_oauth_client(&a.id, "ci").await.unwrap().map(|c| c.id), Some(svc.id.clone()));
    assert!(s.find_oauth_client(&b.id, "ci").await.unwrap().is_none());
    assert!(s.find_oauth_client(&b.id, &svc.id).await.unwrap().is_none());
    // Names are unique among a tenant's live clients.
    let dup = client(Some(&a.id), "ci", ClientKind::Public, None);
    assert!(s.insert_oauth_client(&dup, None).await.is_err());
    // A service client needs its machine user; others must not have one.
    assert!(s.insert_oauth_client(&client(Some(&a.id), "x", ClientKind::Service, None), None).await.is_err());

    assert!(s.set_oauth_client_secret(&a.id, &svc.id, "$new").await.unwrap());
    assert!(!s.set_oauth_client_secret(&b.id, &svc.id, "$evil").await.unwrap(), "another tenant cannot");
    assert!(!s.revoke_oauth_client(&b.id, &svc.id).await.unwrap());
    assert!(s.revoke_oauth_client(&a.id, &svc.id).await.unwrap());
    assert!(s.list_oauth_clients(&a.id).await.unwrap().is_empty());
    let revoked = s.oauth_client_for_auth(&svc.id).await.unwrap().unwrap();
    assert!(revoked.client.revoked_at.is_some());
    // The name is free again.
    s.insert_oauth_client(&client(Some(&a.id), "ci", ClientKind::Public, None), None).await.unwrap();
}

pub async fn codes_and_refresh_tokens(ctx: Ctx) {
    let s = &ctx.store;
    let (a, user) = seed(s, "acme").await;
    let c = client(None, "app", ClientKind::Public, None);
    s.insert_oauth_client(&c, None).await.unwrap();
    let now = now_ms();
    let code = AuthorizationCode {
        code_hash: "code-digest".into(),
        tenant_id: a.id.clone(),
        client_id: c.id.clone(),
        user_id: user.id.clone(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "chal".into(),
        scope: "mcp:tools".into(),
        resource: "http://gw/mcp".into(),
        created_at: now,
        expires_at: now + 60_000,
    };
    s.insert_code(&code).await.unwrap();
    assert_eq!(s.redeem_code("code-digest", now).await.unwrap(), Redeemed::Fresh(code.clone()));
    let g = grant(&a.id, &c.id, &user.id);
    s.insert_grant(&g).await.unwrap();
    s.set_code_grant(&a.id, "code-digest", &g.id).await.unwrap();
    assert!(!s.code_reused(&a.id, "code-digest").await.unwrap());
    // Single use: the second redemption learns which grant to revoke, and
    // the first one can learn that there was a second.
    assert_eq!(
        s.redeem_code("code-digest", now).await.unwrap(),
        Redeemed::Reused { tenant_id: a.id.clone(), grant_id: Some(g.id.clone()) }
    );
    assert!(s.code_reused(&a.id, "code-digest").await.unwrap());
    assert_eq!(s.redeem_code("nope", now).await.unwrap(), Redeemed::Invalid);
    // An expired code is invalid (and spent).
    let old = AuthorizationCode { code_hash: "old".into(), expires_at: now - 1, ..code.clone() };
    s.insert_code(&old).await.unwrap();
    assert_eq!(s.redeem_code("old", now).await.unwrap(), Redeemed::Invalid);

    s.insert_refresh_token(&a.id, "rt1", &g.id, now + 60_000).await.unwrap();
    assert_eq!(s.refresh_token_grant("rt1").await.unwrap(), Some((a.id.clone(), g.id.clone())));
    match s.redeem_refresh_token("rt1", now).await.unwrap() {
        Redeemed::Fresh(got) => assert_eq!(got, g),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.redeem_refresh_token("rt1", now).await.unwrap(),
        Redeemed::Reused { tenant_id: a.id.clone(), grant_id: Some(g.id.clone()) }
    );
    s.insert_refresh_token(&a.id, "rt-expired", &g.id, now - 1).await.unwrap();
    assert_eq!(s.redeem_refresh_token("rt-expired", now).await.unwrap(), Redeemed::Invalid);
    // A revoked grant's refresh tokens no longer redeem.
    s.insert_refresh_token(&a.id, "rt2", &g.id, now + 60_000).await.unwrap();
    assert!(s.revoke_grant(&a.id, &g.id, "test").await.unwrap());
    assert!(!s.revoke_grant(&a.id, &g.id, "again").await.unwrap());
    assert_eq!(s.redeem_refresh_token("rt2", now).await.unwrap(), Redeemed::Invalid);
    assert_eq!(s.grant(&a.id, &g.id).await.unwrap().unwrap().revoked_reason.as_deref(), Some("test"));

    // Purging drops what expired and keeps the rest.
    assert!(s.purge_expired_oauth(now).await.unwrap() >= 2);
    assert_eq!(s.redeem_refresh_token("rt-expired", now).await.unwrap(), Redeemed::Invalid);
}

pub async fn token_status_and_revocation(ctx: Ctx) {
    let s = &ctx.store;
    let (a, user) = seed(s, "acme").await;
    let (b, _) = seed(s, "beta").await;
    let c = client(None, "app", ClientKind::Public, None);
    s.insert_oauth_client(&c, None).await.unwrap();
    let g = grant(&a.id, &c.id, &user.id);
    s.insert_grant(&g).await.unwrap();
    let fresh = s.token_status(&a.id, "jti-1", Some(&g.id), &c.id).await.unwrap();
    assert_eq!(
        (fresh.revoked_before, fresh.jti_revoked, fresh.grant_revoked, fresh.client_revoked),
        (0, false, false, false)
    );
    // A revoked tenant client kills its tokens, grant or not.
    let svc = client(Some(&a.id), "svc", ClientKind::Public, None);
    s.insert_oauth_client(&svc, None).await.unwrap();
    assert!(!s.token_status(&a.id, "jti-9", None, &svc.id).await.unwrap().client_revoked);
    s.revoke_oauth_client(&a.id, &svc.id).await.unwrap();
    assert!(s.token_status(&a.id, "jti-9", None, &svc.id).await.unwrap().client_revoked);
    assert!(!s.token_status(&b.id, "jti-9", None, &svc.id).await.unwrap().client_revoked);
    s.revoke_jti(&a.id, "jti-1", now_ms() + 60_000).await.unwrap();
    s.revoke_jti(&a.id, "jti-1", now_ms() + 60_000).await.unwrap();
    assert!(s.token_status(&a.id, "jti-1", None, "").await.unwrap().jti_revoked);
    assert!(!s.token_status(&b.id, "jti-1", None, "").await.unwrap().jti_revoked, "revocations are per tenant");

    s.insert_browser_session(&a.id, "sess", &user.id, now_ms() + 60_000).await.unwrap();
    assert_eq!(s.browser_session("sess", now_ms()).await.unwrap().map(|x| x.user_id), Some(user.id.clone()));
    let at = now_ms();
    s.revoke_tenant_tokens(&a.id, at).await.unwrap();
    let st = s.token_status(&a.id, "jti-2", Some(&g.id), &c.id).await.unwrap();
    assert_eq!(st.revoked_before, at);
    assert!(st.grant_revoked, "tenant revocation ends every grant");
    assert!(s.browser_session("sess", now_ms()).await.unwrap().is_none(), "and every session");
    assert_eq!(s.tenant_revoked_before(&a.id).await.unwrap(), at);
    assert_eq!(s.tenant_revoked_before(&b.id).await.unwrap(), 0);
}

pub async fn pending_and_consent(ctx: Ctx) {
    let s = &ctx.store;
    let (a, user) = seed(s, "acme").await;
    let c = client(None, "app", ClientKind::Public, None);
    s.insert_oauth_client(&c, None).await.unwrap();
    let now = now_ms();
    let mut p = PendingAuthorization {
        id_hash: "h".into(),
        tenant_id: None,
        client_id: c.id.clone(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        state: Some("xyz".into()),
        code_challenge: "chal".into(),
        scope: "mcp:tools".into(),
        resource: "http://gw/mcp".into(),
        user_id: None,
        idp_state_hash: None,
        idp_nonce: None,
        idp_verifier: None,
        created_at: now,
        expires_at: now + 60_000,
    };
    s.insert_pending(&p).await.unwrap();
    p.tenant_id = Some(a.id.clone());
    p.idp_state_hash = Some("idp-state".into());
    p.idp_nonce = Some("n".into());
    assert!(s.update_pending(&p).await.unwrap());
    assert_eq!(s.pending_by_idp_state("idp-state", now).await.unwrap(), Some(p.clone()));
    assert_eq!(s.pending("h", now).await.unwrap(), Some(p.clone()));
    assert!(s.pending("h", now + 120_000).await.unwrap().is_none(), "expired requests are gone");
    assert!(!format!("{p:?}").contains("xyz"), "Debug hides state and nonce");
    assert!(s.take_pending("h").await.unwrap());
    assert!(!s.take_pending("h").await.unwrap(), "consumed once");

    assert!(s.consent(&a.id, &user.id, &c.id).await.unwrap().is_none());
    s.record_consent(&a.id, &user.id, &c.id, "mcp:tools", "http://gw/mcp").await.unwrap();
    s.record_consent(&a.id, &user.id, &c.id, "mcp:tools mcp:prompts", "http://gw/mcp").await.unwrap();
    let got = s.consent(&a.id, &user.id, &c.id).await.unwrap().unwrap();
    assert_eq!(got.scope, "mcp:tools mcp:prompts");
}

pub async fn signing_keys_and_settings(ctx: Ctx) {
    let s = &ctx.store;
    let (a, user) = seed(s, "acme").await;
    let (b, _) = seed(s, "beta").await;
    tenant_key(s, &a.id).await;
    s.insert_tenant_secret(&a.id, "sec1", SecretPurpose::SigningKey, 1, &[1, 2, 3]).await.unwrap();
    let sealed = s.tenant_secret(&a.id, "sec1").await.unwrap().unwrap();
    assert_eq!((sealed.sealed.as_slice(), sealed.wrapped_dek.as_slice()), (&[1u8, 2, 3][..], &[9u8, 9][..]));
    assert!(s.tenant_secret(&b.id, "sec1").await.unwrap().is_none());
    assert!(!format!("{sealed:?}").contains("[1, 2, 3]"));

    let key = |kid: &str, secret: &str, at: i64| SigningKeyRecord {
        kid: kid.into(),
        tenant_id: a.id.clone(),
        alg: "ES256".into(),
        public_jwk: json!({"kty": "EC", "kid": kid}),
        secret_id: secret.into(),
        created_at: at,
        retired_at: None,
    };
    s.insert_signing_key(&a.id, &key("k1", "sec1", 1_000)).await.unwrap();
    s.insert_tenant_secret(&a.id, "sec2", SecretPurpose::SigningKey, 1, &[4]).await.unwrap();
    s.insert_signing_key(&a.id, &key("k2", "sec2", 2_000)).await.unwrap();
    let keys = s.signing_keys(&a.id).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect::<Vec<_>>(),
        vec![("k2", None), ("k1", Some(2_000))]
    );
    assert!(s.signing_keys(&b.id).await.unwrap().is_empty());
    // Past the grace period the retired key and its private half go.
    assert_eq!(s.prune_signing_keys(&a.id, 1_500).await.unwrap(), 0);
    assert_eq!(s.prune_signing_keys(&a.id, 3_000).await.unwrap(), 1);
    assert_eq!(s.signing_keys(&a.id).await.unwrap().len(), 1);
    assert!(s.tenant_secret(&a.id, "sec1").await.unwrap().is_none());
    // Re-sealing under a newer data key.
    assert!(s.insert_tenant_key(&a.id, 2, &[8], "local").await.unwrap());
    assert_eq!(s.tenant_secrets_below_version(&a.id, 2, 10).await.unwrap().len(), 1);
    assert!(s.reseal_tenant_secret(&a.id, "sec2", 1, 2, &[5]).await.unwrap());
    assert!(!s.reseal_tenant_secret(&a.id, "sec2", 1, 2, &[6]).await.unwrap(), "only from the version it is under");
    assert!(s.tenant_secrets_below_version(&a.id, 2, 10).await.unwrap().is_empty());

    // Identity settings: defaults, an identity provider, and users linked by subject.
    assert_eq!(s.tenant_auth(&a.id).await.unwrap(), TenantAuthSettings::defaults(&a.id));
    s.insert_tenant_secret(&a.id, "idp", SecretPurpose::IdpClientSecret, 2, &[7]).await.unwrap();
    let mut settings = TenantAuthSettings::defaults(&a.id);
    settings.allow_registration = false;
    settings.idp = Some(IdpSettings {
        issuer: "https://idp.example".into(),
        client_id: "moat".into(),
        secret_id: Some("idp".into()),
        has_secret: true,
        scopes: "openid email".into(),
        groups_claim: "groups".into(),
        role_map: [("admins".to_owned(), Role::Admin)].into(),
        default_role: Role::Member,
    });
    s.set_tenant_auth(&settings).await.unwrap();
    assert_eq!(s.tenant_auth(&a.id).await.unwrap(), settings);
    assert_eq!(s.tenant_auth(&b.id).await.unwrap(), TenantAuthSettings::defaults(&b.id));
    let all = s.all_tenant_auth().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(!all[0].allow_registration);

    s.link_idp_user(&a.id, &user.id, "https://idp.example|alice", Role::Admin, Some("a@x.example")).await.unwrap();
    assert_eq!(s.user_by_idp_subject(&a.id, "https://idp.example|alice").await.unwrap(), Some(user.id.clone()));
    assert!(s.user_by_idp_subject(&b.id, "https://idp.example|alice").await.unwrap().is_none());
    assert_eq!(s.user(&a.id, &user.id).await.unwrap().unwrap().role, Role::Admin);
}
