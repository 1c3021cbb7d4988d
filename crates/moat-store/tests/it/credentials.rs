//! Credentials: CRUD, the unique slot per scope, the shape checks, cascades,
//! the candidate rows of a call, rotation support, last-use stamps and
//! tenant isolation.

use crate::harness::{Ctx, count_rows, raw_tx, seed};
use crate::teams::add_user;
use moat_core::{CredentialId, CredentialKind, PrincipalKind, ScopeTier, ServerId, TeamId, TenantId, UserId};
use moat_store::{
    CredentialFilter, CredentialRecord, NewCredential, NewServer, SealedCredential, Store, StoreError, TeamRecord,
    TenantRecord, Transport, UserRecord, credential_slot,
};
use std::collections::BTreeSet;

const SEALED: &[u8] = &[0, 1, 2, 255];
const DEK1: &[u8] = &[1, 1, 0, 255];

/// Whose credential.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    User(&'a UserId),
    Team(&'a TeamId),
    Org,
}

/// A credential to store; [`spec`] fills the usual values.
pub struct Spec<'a> {
    pub tier: ScopeTier,
    pub owner: Owner<'a>,
    pub server: &'a ServerId,
    pub kind: CredentialKind,
    pub target: &'a str,
    pub version: u32,
    pub sealed: &'a [u8],
}

/// A header credential named `target`, sealed under version 1.
pub fn spec<'a>(tier: ScopeTier, owner: Owner<'a>, server: &'a ServerId, target: &'a str) -> Spec<'a> {
    Spec { tier, owner, server, kind: CredentialKind::Header, target, version: 1, sealed: SEALED }
}

/// Stores `spec` in `tenant` with a fresh id, deriving scope and slot.
pub async fn put(store: &Store, tenant: &TenantId, spec: Spec<'_>) -> Result<CredentialRecord, StoreError> {
    let id = CredentialId::generate();
    let slot = credential_slot(spec.kind, spec.target);
    let (user_id, team_id, scope_id) = match spec.owner {
        Owner::User(u) => (Some(u), None, u.as_str().to_owned()),
        Owner::Team(t) => (None, Some(t), t.as_str().to_owned()),
        Owner::Org => (None, None, tenant.as_str().to_owned()),
    };
    let new = NewCredential {
        id: &id,
        tier: spec.tier,
        user_id,
        team_id,
        scope_id: &scope_id,
        server_id: spec.server,
        kind: spec.kind,
        target: spec.target,
        slot: &slot,
        key_version: spec.version,
        sealed: spec.sealed,
        actor: Some("tester"),
    };
    store.insert_credential(tenant, &new).await
}

/// A tenant with users (alice in team `a`, bob in team `b`, carol in none,
/// a service user), data key version 1 and two servers.
pub struct World {
    pub tenant: TenantRecord,
    pub alice: UserRecord,
    pub bob: UserRecord,
    pub carol: UserRecord,
    pub svc: UserRecord,
    pub team_a: TeamRecord,
    pub team_b: TeamRecord,
    pub web: ServerId,
    pub files: ServerId,
}

pub async fn world(store: &Store, name: &str) -> World {
    let (tenant, alice) = seed(store, name).await;
    let t = &tenant.id;
    let bob = add_user(store, t, "bob", PrincipalKind::Human).await;
    let carol = add_user(store, t, "carol", PrincipalKind::Agent).await;
    let svc = add_user(store, t, "ci", PrincipalKind::Service).await;
    let team_a = store.create_team(t, "team-a").await.unwrap();
    let team_b = store.create_team(t, "team-b").await.unwrap();
    store.add_team_member(t, &team_a.id, &alice.id).await.unwrap();
    store.add_team_member(t, &team_b.id, &bob.id).await.unwrap();
    assert!(store.insert_tenant_key(t, 1, DEK1, "local").await.unwrap());
    let web = store
        .create_server(t, NewServer::http("web", Transport::StreamableHttp, "http://127.0.0.1:1/mcp"))
        .await
        .unwrap()
        .id;
    let files = store.create_server(t, NewServer::stdio("files", vec!["files".into()])).await.unwrap().id;
    World { tenant, alice, bob, carol, svc, team_a, team_b, web, files }
}

pub async fn crud(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let rec = put(s, t, spec(ScopeTier::Personal, Owner::User(&w.alice.id), &w.web, "X-Api-Key")).await.unwrap();
    assert_eq!(
        (rec.tier, rec.user_id.as_ref(), rec.user_name.as_deref(), rec.team_id.as_ref(), rec.team_name.as_deref()),
        (ScopeTier::Personal, Some(&w.alice.id), Some("owner"), None, None)
    );
    assert_eq!((rec.scope_id.as_str(), &rec.server_id, rec.server_name.as_str()), (w.alice.id.as_str(), &w.web, "web"));
    assert_eq!(
        (rec.kind, rec.target.as_str(), rec.slot.as_str(), rec.key_version, rec.revision),
        (CredentialKind::Header, "X-Api-Key", "header:x-api-key", 1, 1)
    );
    assert_eq!((rec.created_by.as_deref(), rec.updated_by.as_deref()), (Some("tester"), Some("tester")));
    assert_eq!((rec.updated_at, rec.last_used_at, &rec.tenant_id), (rec.created_at, None, t));

    assert_eq!(s.get_credential(t, &rec.id).await.unwrap(), Some(rec.clone()));
    let found = s.find_credential_slot(t, ScopeTier::Personal, w.alice.id.as_str(), &w.web, "header:x-api-key");
    assert_eq!(found.await.unwrap(), Some(rec.clone()));
    let other_tier = s.find_credential_slot(t, ScopeTier::Service, w.alice.id.as_str(), &w.web, "header:x-api-key");
    assert_eq!(other_tier.await.unwrap(), None);
    assert_eq!(
        s.find_credential_slot(t, ScopeTier::Personal, w.alice.id.as_str(), &w.files, &rec.slot).await.unwrap(),
        None
    );

    let sealed = s.get_sealed_credential(t, &rec.id).await.unwrap().unwrap();
    assert_eq!((&sealed.meta, sealed.sealed.as_slice(), sealed.wrapped_dek.as_slice()), (&rec, SEALED, DEK1));
    let debug = format!("{sealed:?}");
    assert!(debug.contains("<redacted>") && !debug.contains("[0, 1, 2, 255]"), "{debug}");

    // A new value: revision bumps, the slot stays (header names are case-insensitive).
    let updated = s
        .update_credential_value(t, &rec.id, 1, CredentialKind::Header, "x-api-key", 1, &[5, 6], Some("editor"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.revision, updated.target.as_str(), updated.slot.as_str()),
        (2, "x-api-key", "header:x-api-key")
    );
    assert_eq!((updated.created_by.as_deref(), updated.updated_by.as_deref()), (Some("tester"), Some("editor")));
    assert!(updated.updated_at >= rec.updated_at && updated.created_at == rec.created_at);
    assert_eq!(s.get_sealed_credential(t, &rec.id).await.unwrap().unwrap().sealed, vec![5, 6]);
    // A stale revision, an unknown id: nothing changes.
    let stale = s.update_credential_value(t, &rec.id, 1, CredentialKind::Header, "X-Api-Key", 1, &[7], None);
    assert_eq!(stale.await.unwrap(), None);
    let unknown_id = CredentialId::generate();
    let unknown = s.update_credential_value(t, &unknown_id, 1, CredentialKind::Header, "X-Api-Key", 1, &[7], None);
    assert_eq!(unknown.await.unwrap(), None);
    // Moving to another slot, or to a key version that does not exist, is refused.
    let moved = s.update_credential_value(t, &rec.id, 2, CredentialKind::Bearer, "Authorization", 1, &[7], None);
    assert!(matches!(moved.await, Err(StoreError::Invalid(_))));
    let no_key = s.update_credential_value(t, &rec.id, 2, CredentialKind::Header, "X-Api-Key", 9, &[7], None);
    assert!(matches!(no_key.await, Err(StoreError::Invalid(_))));
    assert_eq!(s.get_credential(t, &rec.id).await.unwrap(), Some(updated.clone()));

    let listed = s.list_credentials(t, &CredentialFilter::default()).await.unwrap();
    assert_eq!(listed, vec![updated.clone()]);
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains("sealed") && !json.contains("wrapped"), "{json}");
    assert!(json.contains("\"tier\":\"personal\"") && json.contains("\"kind\":\"header\""), "{json}");

    assert_eq!(s.delete_credential(t, &rec.id).await.unwrap(), Some(updated));
    assert_eq!(s.delete_credential(t, &rec.id).await.unwrap(), None);
    assert_eq!(s.get_credential(t, &rec.id).await.unwrap(), None);
    assert!(s.list_credentials(t, &CredentialFilter::default()).await.unwrap().is_empty());
}

fn conflict(result: Result<CredentialRecord, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn unique_slot_per_scope(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let alice = Owner::User(&w.alice.id);
    let bearer = |tier, owner, target| Spec { kind: CredentialKind::Bearer, ..spec(tier, owner, &w.web, target) };

    put(s, t, bearer(ScopeTier::Personal, alice, "Authorization")).await.unwrap();
    // Bearer, basic and an `Authorization` header share one slot.
    let m = conflict(put(s, t, spec(ScopeTier::Personal, alice, &w.web, "AUTHORIZATION")).await);
    assert_eq!(m, "the personal scope already has a credential for `header:authorization` on this server");
    let basic = Spec { kind: CredentialKind::Basic, ..spec(ScopeTier::Personal, alice, &w.web, "Authorization") };
    conflict(put(s, t, basic).await);
    // The same slot at another tier, for another owner or on another server is fine.
    put(s, t, bearer(ScopeTier::Org, Owner::Org, "Authorization")).await.unwrap();
    put(s, t, bearer(ScopeTier::Team, Owner::Team(&w.team_a.id), "Authorization")).await.unwrap();
    put(s, t, bearer(ScopeTier::Team, Owner::Team(&w.team_b.id), "Authorization")).await.unwrap();
    put(s, t, bearer(ScopeTier::Personal, Owner::User(&w.bob.id), "Authorization")).await.unwrap();
    put(s, t, bearer(ScopeTier::Service, Owner::User(&w.svc.id), "Authorization")).await.unwrap();
    put(s, t, bearer(ScopeTier::Service, alice, "Authorization")).await.unwrap();
    conflict(put(s, t, bearer(ScopeTier::Org, Owner::Org, "Authorization")).await);
    // Header names compare case-insensitively, environment names do not.
    put(s, t, spec(ScopeTier::Personal, alice, &w.web, "X-Key")).await.unwrap();
    conflict(put(s, t, spec(ScopeTier::Personal, alice, &w.web, "x-key")).await);
    let env = |target| Spec { kind: CredentialKind::Env, ..spec(ScopeTier::Personal, alice, &w.files, target) };
    let api_key = put(s, t, env("API_KEY")).await.unwrap();
    assert_eq!(api_key.slot, "env:API_KEY");
    conflict(put(s, t, env("API_KEY")).await);
    put(s, t, env("api_key")).await.unwrap();

    // Listing: by server name, tier, owner name, target; filters combine.
    let all = s.list_credentials(t, &CredentialFilter::default()).await.unwrap();
    let order: Vec<_> = all
        .iter()
        .map(|c| {
            let owner = c.user_name.clone().or(c.team_name.clone()).unwrap_or_default();
            format!("{}/{}/{}/{}", c.server_name, c.tier, owner, c.target)
        })
        .collect();
    assert_eq!(
        order,
        [
            "files/personal/owner/API_KEY",
            "files/personal/owner/api_key",
            "web/personal/bob/Authorization",
            "web/personal/owner/Authorization",
            "web/personal/owner/X-Key",
            "web/team/team-a/Authorization",
            "web/team/team-b/Authorization",
            "web/org//Authorization",
            "web/service/ci/Authorization",
            "web/service/owner/Authorization",
        ]
    );
    let only = |filter: CredentialFilter| async move { s.list_credentials(t, &filter).await.unwrap().len() };
    assert_eq!(only(CredentialFilter { server_id: Some(w.files.clone()), ..Default::default() }).await, 2);
    assert_eq!(only(CredentialFilter { tier: Some(ScopeTier::Team), ..Default::default() }).await, 2);
    assert_eq!(only(CredentialFilter { user_id: Some(w.alice.id.clone()), ..Default::default() }).await, 5);
    let alice_web_personal = CredentialFilter {
        server_id: Some(w.web.clone()),
        tier: Some(ScopeTier::Personal),
        user_id: Some(w.alice.id.clone()),
        team_id: None,
    };
    assert_eq!(only(alice_web_personal).await, 2);
    assert_eq!(only(CredentialFilter { team_id: Some(w.team_b.id.clone()), ..Default::default() }).await, 1);
}

/// Tier, user id, team id, scope id.
type RawScope<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str);
/// Kind, target, slot.
type RawPresentation<'a> = (&'a str, &'a str, &'a str);

/// Inserts a row as the owner, bypassing the store's own validation.
async fn raw_insert(
    ctx: &Ctx,
    w: &World,
    (tier, user, team, scope): RawScope<'_>,
    (kind, target, slot): RawPresentation<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = raw_tx(ctx).await;
    sqlx::query(
        "INSERT INTO credentials (id, tenant_id, tier, user_id, team_id, scope_id, server_id, kind, target, slot, \
         key_version, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, 0, 0)",
    )
    .bind(CredentialId::generate().as_str().to_owned())
    .bind(w.tenant.id.as_str())
    .bind(tier)
    .bind(user)
    .bind(team)
    .bind(scope)
    .bind(w.web.as_str())
    .bind(kind)
    .bind(target)
    .bind(slot)
    .bind(SEALED)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn invalid(s: &Store, t: &TenantId, new: NewCredential<'_>) -> String {
    match s.insert_credential(t, &new).await {
        Err(StoreError::Invalid(m)) => m,
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn is_check_violation(result: Result<(), sqlx::Error>) -> bool {
    matches!(result, Err(sqlx::Error::Database(db)) if db.is_check_violation())
}

pub async fn shape_checks(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let (alice, tenant, team) = (w.alice.id.as_str(), t.as_str(), w.team_a.id.as_str());
    let header = ("header", "X-Key", "header:x-key");

    // The database refuses inconsistent rows whoever writes them.
    raw_insert(&ctx, &w, ("personal", Some(alice), None, alice), header).await.unwrap();
    raw_insert(&ctx, &w, ("org", None, None, tenant), header).await.unwrap();
    raw_insert(&ctx, &w, ("team", None, Some(team), team), header).await.unwrap();
    let refused: [(RawScope, RawPresentation); 8] = [
        (("org", Some(alice), None, tenant), ("header", "X-Other", "header:x-other")),
        (("personal", Some(alice), None, tenant), ("header", "X-Other", "header:x-other")),
        (("service", None, None, alice), ("header", "X-Other", "header:x-other")),
        (("team", Some(alice), Some(team), team), ("header", "X-Other", "header:x-other")),
        (("team", None, Some(team), alice), ("header", "X-Other", "header:x-other")),
        (("personal", Some(alice), None, alice), ("header", "X-Other", "header:X-Other")),
        (("personal", Some(alice), None, alice), ("bearer", "Authorization", "header:x-other")),
        (("personal", Some(alice), None, alice), ("env", "TOKEN", "header:token")),
    ];
    for (scope, presentation) in refused {
        let result = raw_insert(&ctx, &w, scope, presentation).await;
        assert!(is_check_violation(result), "{scope:?} {presentation:?}");
    }
    assert_eq!(count_rows(&ctx, "credentials", tenant).await, 3);

    // The store refuses them before the database does, saying why.
    let id = CredentialId::generate();
    let base = NewCredential {
        id: &id,
        tier: ScopeTier::Org,
        user_id: None,
        team_id: None,
        scope_id: tenant,
        server_id: &w.web,
        kind: CredentialKind::Env,
        target: "TOKEN",
        slot: "env:TOKEN",
        key_version: 1,
        sealed: SEALED,
        actor: None,
    };
    let m = invalid(s, t, NewCredential { user_id: Some(&w.alice.id), ..base }).await;
    assert_eq!(m, "org credentials take neither user nor team, with the tenant's id as scope");
    let m = invalid(s, t, NewCredential { tier: ScopeTier::Personal, user_id: Some(&w.alice.id), ..base }).await;
    assert_eq!(m, "personal credentials take a user and no team, with the user's id as scope");
    invalid(s, t, NewCredential { tier: ScopeTier::Team, team_id: Some(&w.team_a.id), scope_id: alice, ..base }).await;
    invalid(s, t, NewCredential { tier: ScopeTier::Service, scope_id: alice, ..base }).await;
    let m = invalid(s, t, NewCredential { slot: "env:token", ..base }).await;
    assert_eq!(m, "slot `env:token` does not match the env credential target `TOKEN`");
    invalid(s, t, NewCredential { target: "", slot: "env:", ..base }).await;
    invalid(s, t, NewCredential { target: "MY TOKEN", slot: "env:MY TOKEN", ..base }).await;
    invalid(s, t, NewCredential { key_version: 0, ..base }).await;
    let m = invalid(s, t, NewCredential { key_version: 2, ..base }).await;
    assert_eq!(m, "the server, user, team or key version does not exist in this tenant");
    invalid(s, t, NewCredential { server_id: &ServerId::generate(), ..base }).await;
    let ghost = UserId::generate();
    invalid(s, t, NewCredential { tier: ScopeTier::Personal, user_id: Some(&ghost), scope_id: ghost.as_str(), ..base })
        .await;
    let stored = s.insert_credential(t, &base).await.unwrap();
    assert_eq!((stored.id, stored.created_by), (id.clone(), None));
    // A duplicate id is a conflict too (ids are random: practically never).
    let dup = NewCredential { target: "OTHER", slot: "env:OTHER", ..base };
    assert!(matches!(s.insert_credential(t, &dup).await, Err(StoreError::Conflict(_))));
    assert_eq!(count_rows(&ctx, "credentials", tenant).await, 4);
}

fn ids(creds: &[CredentialRecord]) -> BTreeSet<CredentialId> {
    creds.iter().map(|c| c.id.clone()).collect()
}

pub async fn cascades(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let alice = put(s, t, spec(ScopeTier::Personal, Owner::User(&w.alice.id), &w.web, "X-A")).await.unwrap();
    let bob = put(s, t, spec(ScopeTier::Personal, Owner::User(&w.bob.id), &w.web, "X-B")).await.unwrap();
    let svc = put(s, t, spec(ScopeTier::Service, Owner::User(&w.svc.id), &w.web, "X-S")).await.unwrap();
    let team = put(s, t, spec(ScopeTier::Team, Owner::Team(&w.team_a.id), &w.web, "X-T")).await.unwrap();
    let org = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.web, "X-O")).await.unwrap();
    let org_files = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.files, "X-O")).await.unwrap();
    let remaining = || async move { ids(&s.list_credentials(t, &CredentialFilter::default()).await.unwrap()) };

    assert!(s.delete_user(t, &w.bob.id).await.unwrap());
    assert!(s.delete_user(t, &w.svc.id).await.unwrap());
    assert!(s.delete_team(t, &w.team_a.id).await.unwrap());
    assert!(s.delete_server(t, &w.files).await.unwrap());
    assert_eq!(remaining().await, ids(&[alice.clone(), org.clone()]));
    for gone in [&bob, &svc, &team, &org_files] {
        assert_eq!(s.get_credential(t, &gone.id).await.unwrap(), None);
    }

    // A data key still in use cannot be deleted.
    match s.delete_tenant_key(t, 1).await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "tenant key version 1 is still used by credentials"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.tenant_keys(t).await.unwrap().len(), 1);

    // Deleting the server deletes its credentials; then the key can go.
    assert!(s.delete_user(t, &w.alice.id).await.unwrap());
    assert_eq!(remaining().await, ids(&[org]));
    assert!(s.delete_server(t, &w.web).await.unwrap());
    assert!(remaining().await.is_empty());
    assert!(s.delete_tenant_key(t, 1).await.unwrap());

    // Deleting a tenant deletes its credentials and keys together.
    let w2 = world(s, "other").await;
    let t2 = &w2.tenant.id;
    put(s, t2, spec(ScopeTier::Personal, Owner::User(&w2.alice.id), &w2.web, "X-A")).await.unwrap();
    put(s, t2, spec(ScopeTier::Team, Owner::Team(&w2.team_a.id), &w2.files, "X-T")).await.unwrap();
    put(s, t2, spec(ScopeTier::Org, Owner::Org, &w2.web, "X-O")).await.unwrap();
    assert!(s.delete_tenant(t2).await.unwrap());
    for table in ["credentials", "tenant_keys", "teams", "team_members", "servers", "users"] {
        assert_eq!(count_rows(&ctx, table, t2.as_str()).await, 0, "{table}");
    }
}

fn sealed_ids(creds: &[SealedCredential]) -> BTreeSet<CredentialId> {
    creds.iter().map(|c| c.meta.id.clone()).collect()
}

pub async fn candidates_for_call(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let web = &w.web;
    let alice_p = put(s, t, spec(ScopeTier::Personal, Owner::User(&w.alice.id), web, "X-A")).await.unwrap();
    let bob_p = put(s, t, spec(ScopeTier::Personal, Owner::User(&w.bob.id), web, "X-B")).await.unwrap();
    let team_a = put(s, t, spec(ScopeTier::Team, Owner::Team(&w.team_a.id), web, "X-T")).await.unwrap();
    let team_b = put(s, t, spec(ScopeTier::Team, Owner::Team(&w.team_b.id), web, "X-T")).await.unwrap();
    let org = put(s, t, spec(ScopeTier::Org, Owner::Org, web, "X-T")).await.unwrap();
    let svc = put(s, t, spec(ScopeTier::Service, Owner::User(&w.svc.id), web, "X-T")).await.unwrap();
    let alice_files = put(s, t, spec(ScopeTier::Personal, Owner::User(&w.alice.id), &w.files, "X-A")).await.unwrap();
    let org_files = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.files, "X-O")).await.unwrap();

    let call = |server: &ServerId, user: &UserId, teams: Vec<TeamId>, org: bool, service: bool| {
        let (server, user) = (server.clone(), user.clone());
        async move {
            let found = s.credentials_for_call(t, &server, &user, &teams, org, service).await.unwrap();
            for c in &found {
                assert_eq!((c.sealed.as_slice(), c.wrapped_dek.as_slice(), c.meta.key_version), (SEALED, DEK1, 1));
            }
            sealed_ids(&found)
        }
    };
    let a = vec![w.team_a.id.clone()];
    let b = vec![w.team_b.id.clone()];
    assert_eq!(
        call(web, &w.alice.id, a.clone(), true, false).await,
        ids(&[alice_p.clone(), team_a.clone(), org.clone()])
    );
    assert_eq!(call(web, &w.alice.id, a.clone(), false, false).await, ids(&[alice_p.clone(), team_a.clone()]));
    assert_eq!(call(web, &w.alice.id, vec![], true, false).await, ids(&[alice_p.clone(), org.clone()]));
    assert_eq!(call(web, &w.bob.id, b.clone(), true, false).await, ids(&[bob_p, team_b.clone(), org.clone()]));
    let both = vec![w.team_a.id.clone(), w.team_b.id.clone()];
    assert_eq!(call(web, &w.carol.id, both, false, false).await, ids(&[team_a, team_b]));
    assert_eq!(call(web, &w.carol.id, vec![], true, false).await, ids(std::slice::from_ref(&org)));
    // A service identity gets its own service rows and nothing else.
    assert_eq!(call(web, &w.svc.id, vec![], true, true).await, ids(&[svc]));
    assert_eq!(call(web, &w.svc.id, b.clone(), true, false).await.len(), 2, "not its service row as a user");
    assert!(call(web, &w.alice.id, a.clone(), true, true).await.is_empty());
    // Another server's rows never leak in.
    assert_eq!(call(&w.files, &w.alice.id, a, true, false).await, ids(&[alice_files, org_files]));
    assert!(call(&ServerId::generate(), &w.alice.id, b, true, false).await.is_empty());
}

pub async fn rotation(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let c1 = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.web, "X-1")).await.unwrap();
    let c2 = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.web, "X-2")).await.unwrap();
    let c3 = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.web, "X-3")).await.unwrap();
    assert!(s.insert_tenant_key(t, 2, &[2, 2], "local").await.unwrap());

    assert_eq!(s.count_credentials_below_version(t, 2).await.unwrap(), 3);
    assert_eq!(s.count_credentials_below_version(t, 1).await.unwrap(), 0);
    let batch = s.credentials_below_version(t, 2, 2).await.unwrap();
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|c| c.meta.key_version == 1 && c.wrapped_dek == DEK1 && c.sealed == SEALED));
    assert_eq!(s.credentials_below_version(t, 2, 10).await.unwrap().len(), 3);
    assert!(s.credentials_below_version(t, 1, 10).await.unwrap().is_empty());
    assert!(s.credentials_below_version(t, 2, 0).await.unwrap().is_empty());

    // Conditional: the expected version and revision must both still hold.
    assert!(!s.reseal_credential(t, &c1.id, 1, 2, 2, &[9]).await.unwrap(), "wrong revision");
    assert!(!s.reseal_credential(t, &c1.id, 2, 1, 2, &[9]).await.unwrap(), "wrong version");
    assert!(!s.reseal_credential(t, &CredentialId::generate(), 1, 1, 2, &[9]).await.unwrap());
    assert!(matches!(s.reseal_credential(t, &c1.id, 1, 1, 3, &[9]).await, Err(StoreError::Invalid(_))));
    assert!(s.reseal_credential(t, &c1.id, 1, 1, 2, &[9]).await.unwrap());
    assert!(!s.reseal_credential(t, &c1.id, 1, 1, 2, &[9]).await.unwrap(), "already moved");
    let after = s.get_sealed_credential(t, &c1.id).await.unwrap().unwrap();
    assert_eq!(
        (after.sealed.as_slice(), after.wrapped_dek.as_slice(), after.meta.key_version),
        (&[9u8][..], &[2u8, 2][..], 2)
    );
    assert_eq!((after.meta.revision, after.meta.updated_at, after.meta.updated_by), (1, c1.updated_at, c1.updated_by));

    // A value changed meanwhile is left alone by a reseal of the old revision.
    let changed = s.update_credential_value(t, &c2.id, 1, CredentialKind::Header, "X-2", 1, &[4], None);
    assert_eq!(changed.await.unwrap().unwrap().revision, 2);
    assert!(!s.reseal_credential(t, &c2.id, 1, 1, 2, &[8]).await.unwrap());
    assert_eq!(s.get_sealed_credential(t, &c2.id).await.unwrap().unwrap().sealed, vec![4]);
    assert!(s.reseal_credential(t, &c2.id, 1, 2, 2, &[8]).await.unwrap());

    assert_eq!(s.count_credentials_below_version(t, 2).await.unwrap(), 1);
    assert!(matches!(s.delete_tenant_key(t, 1).await, Err(StoreError::Conflict(_))));
    assert!(s.reseal_credential(t, &c3.id, 1, 1, 2, &[7]).await.unwrap());
    assert_eq!(s.count_credentials_below_version(t, 2).await.unwrap(), 0);
    assert!(s.delete_tenant_key(t, 1).await.unwrap());
    // Every row now reads with the version 2 key.
    let all = s.credentials_for_call(t, &w.web, &w.alice.id, &[], true, false).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|c| c.meta.key_version == 2 && c.wrapped_dek == [2, 2]));
}

pub async fn last_used(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let t = &w.tenant.id;
    let c1 = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.web, "X-1")).await.unwrap();
    let c2 = put(s, t, spec(ScopeTier::Org, Owner::Org, &w.web, "X-2")).await.unwrap();
    let used = |id: CredentialId| async move { s.get_credential(t, &id).await.unwrap().unwrap().last_used_at };

    s.touch_credentials_used(t, &[], 1).await.unwrap();
    s.touch_credentials_used(t, std::slice::from_ref(&c1.id), 100_000).await.unwrap();
    assert_eq!((used(c1.id.clone()).await, used(c2.id.clone()).await), (Some(100_000), None));
    s.touch_credentials_used(t, std::slice::from_ref(&c1.id), 130_000).await.unwrap();
    assert_eq!(used(c1.id.clone()).await, Some(100_000), "within a minute: no write");
    s.touch_credentials_used(t, std::slice::from_ref(&c1.id), 50_000).await.unwrap();
    assert_eq!(used(c1.id.clone()).await, Some(100_000), "never moves back");
    s.touch_credentials_used(t, std::slice::from_ref(&c1.id), 160_001).await.unwrap();
    assert_eq!(used(c1.id.clone()).await, Some(160_001));
    s.touch_credentials_used(t, &[c1.id.clone(), c2.id.clone(), CredentialId::generate()], 300_000).await.unwrap();
    assert_eq!((used(c1.id.clone()).await, used(c2.id.clone()).await), (Some(300_000), Some(300_000)));
}

pub async fn isolation(ctx: Ctx) {
    let s = &ctx.store;
    let a = world(s, "tenant-a").await;
    let b = world(s, "tenant-b").await;
    let (ta, tb) = (&a.tenant.id, &b.tenant.id);
    let personal = put(s, ta, spec(ScopeTier::Personal, Owner::User(&a.alice.id), &a.web, "X-A")).await.unwrap();
    let team = put(s, ta, spec(ScopeTier::Team, Owner::Team(&a.team_a.id), &a.web, "X-T")).await.unwrap();
    let org = put(s, ta, spec(ScopeTier::Org, Owner::Org, &a.web, "X-O")).await.unwrap();
    let every = [personal.clone(), team.clone(), org.clone()];
    assert!(s.insert_tenant_key(ta, 2, &[2], "local").await.unwrap());

    // Tenant B's id sees and changes none of A's rows, whatever it names.
    for c in &every {
        assert_eq!(s.get_credential(tb, &c.id).await.unwrap(), None);
        assert_eq!(s.get_sealed_credential(tb, &c.id).await.unwrap(), None);
        let found = s.find_credential_slot(tb, c.tier, &c.scope_id, &c.server_id, &c.slot).await.unwrap();
        assert_eq!(found, None);
        let update = s.update_credential_value(tb, &c.id, 1, c.kind, &c.target, 1, &[6], Some("evil"));
        assert_eq!(update.await.unwrap(), None);
        assert!(!s.reseal_credential(tb, &c.id, 1, 1, 1, &[6]).await.unwrap());
        assert_eq!(s.delete_credential(tb, &c.id).await.unwrap(), None);
    }
    assert!(s.list_credentials(tb, &CredentialFilter::default()).await.unwrap().is_empty());
    let a_filter = CredentialFilter { server_id: Some(a.web.clone()), ..Default::default() };
    assert!(s.list_credentials(tb, &a_filter).await.unwrap().is_empty());
    let found = s.credentials_for_call(tb, &a.web, &a.alice.id, std::slice::from_ref(&a.team_a.id), true, false);
    assert!(found.await.unwrap().is_empty());
    assert!(s.credentials_below_version(tb, 99, 100).await.unwrap().is_empty());
    assert_eq!(s.count_credentials_below_version(tb, 99).await.unwrap(), 0);
    s.touch_credentials_used(tb, &[personal.id.clone(), org.id.clone()], 1_000_000).await.unwrap();

    // Nor can B's rows point at A's server, user, team or key version.
    let refused = [
        spec(ScopeTier::Org, Owner::Org, &a.web, "X-O"),
        spec(ScopeTier::Personal, Owner::User(&a.alice.id), &b.web, "X-A"),
        spec(ScopeTier::Team, Owner::Team(&a.team_a.id), &b.web, "X-T"),
        Spec { version: 2, ..spec(ScopeTier::Org, Owner::Org, &b.web, "X-O") },
    ];
    for spec in refused {
        assert!(matches!(put(s, tb, spec).await, Err(StoreError::Invalid(_))));
    }
    assert_eq!(count_rows(&ctx, "credentials", tb.as_str()).await, 0);

    // A's rows are untouched.
    let listed = s.list_credentials(ta, &CredentialFilter::default()).await.unwrap();
    assert_eq!(ids(&listed), ids(&every));
    assert!(
        listed.iter().all(|c| c.revision == 1 && c.last_used_at.is_none() && c.updated_by.as_deref() == Some("tester"))
    );
    let sealed =
        s.credentials_for_call(ta, &a.web, &a.alice.id, std::slice::from_ref(&a.team_a.id), true, false).await.unwrap();
    assert!(sealed.iter().all(|c| c.sealed == SEALED && c.wrapped_dek == DEK1));
    assert_eq!(sealed.len(), 3);
}

/// Deletes read the row and then delete it in one transaction, while the
/// audit sink commits batches from another connection. On SQLite a deferred
/// transaction could not upgrade its read lock after such a commit and failed
/// at once with "database is locked"; write transactions now take the lock up
/// front and wait for it.
pub async fn writes_race_the_audit_sink(ctx: Ctx) {
    let s = &ctx.store;
    let w = world(s, "acme").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let target = format!("X-Key-{i}");
        ids.push(put(s, &w.tenant.id, spec(ScopeTier::Org, Owner::Org, &w.web, &target)).await.unwrap().id);
    }
    let audit = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let events: Vec<_> = (0..8)
                    .map(|_| moat_store::AuditEvent::new("user", "tool.call", moat_store::AuditResult::Ok))
                    .collect();
                s.append_audit(&events).await.unwrap();
            }
        })
    };
    let deletes: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (s, t) = (s.clone(), w.tenant.id.clone());
            tokio::spawn(async move { s.delete_credential(&t, &id).await })
        })
        .collect();
    for d in deletes {
        assert!(d.await.unwrap().unwrap().is_some(), "every delete succeeds while the audit sink writes");
    }
    audit.await.unwrap();
    assert_eq!(count_rows(&ctx, "credentials", w.tenant.id.as_str()).await, 0);
}
