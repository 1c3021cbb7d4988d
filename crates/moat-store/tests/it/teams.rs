//! Teams: CRUD, membership, cascades from users and teams, isolation.

use crate::harness::{Ctx, count_rows, seed};
use moat_core::{PrincipalKind, Role, TeamId, UserId};
use moat_store::{NewUser, Store, StoreError, UserRecord};

pub async fn add_user(store: &Store, tenant: &moat_core::TenantId, name: &str, kind: PrincipalKind) -> UserRecord {
    store.create_user(tenant, NewUser { name: name.into(), email: None, kind, role: Role::Member }).await.unwrap()
}

pub async fn crud_and_membership(ctx: Ctx) {
    let s = &ctx.store;
    let (t, owner) = seed(s, "acme").await;
    let alice = add_user(s, &t.id, "alice", PrincipalKind::Human).await;
    let bob = add_user(s, &t.id, "bob", PrincipalKind::Human).await;

    let core = s.create_team(&t.id, "core").await.unwrap();
    assert_eq!((core.name.as_str(), core.member_count, &core.tenant_id), ("core", 0, &t.id));
    match s.create_team(&t.id, "core").await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "a team named `core` already exists in this tenant"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(s.create_team(&t.id, "Not Valid").await, Err(StoreError::Invalid(_))));
    let web = s.create_team(&t.id, "web").await.unwrap();

    assert_eq!(s.find_team(&t.id, "core").await.unwrap(), Some(core.clone()));
    assert_eq!(s.find_team(&t.id, core.id.as_str()).await.unwrap(), Some(core.clone()));
    assert_eq!(s.find_team(&t.id, "nope").await.unwrap(), None);

    assert!(s.add_team_member(&t.id, &core.id, &bob.id).await.unwrap());
    assert!(s.add_team_member(&t.id, &core.id, &alice.id).await.unwrap());
    assert!(!s.add_team_member(&t.id, &core.id, &alice.id).await.unwrap(), "already a member");
    assert!(s.add_team_member(&t.id, &web.id, &alice.id).await.unwrap());
    match s.add_team_member(&t.id, &core.id, &UserId::generate()).await {
        Err(StoreError::Invalid(m)) => assert_eq!(m, "the team or user does not exist in this tenant"),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert!(matches!(s.add_team_member(&t.id, &TeamId::generate(), &bob.id).await, Err(StoreError::Invalid(_))));

    let members = s.team_members(&t.id, &core.id).await.unwrap();
    let names: Vec<_> = members.iter().map(|m| (m.user_id.clone(), m.user_name.as_str())).collect();
    assert_eq!(names, [(alice.id.clone(), "alice"), (bob.id.clone(), "bob")]);
    assert!(members.iter().all(|m| m.added_at > 0));
    let listed = s.list_teams(&t.id).await.unwrap();
    let counts: Vec<_> = listed.iter().map(|t| (t.name.as_str(), t.member_count)).collect();
    assert_eq!(counts, [("core", 2), ("web", 1)]);
    assert_eq!(s.find_team(&t.id, "core").await.unwrap().unwrap().member_count, 2);

    let mut alice_teams = vec![core.id.clone(), web.id.clone()];
    alice_teams.sort();
    assert_eq!(s.teams_of_user(&t.id, &alice.id).await.unwrap(), alice_teams);
    assert_eq!(s.teams_of_user(&t.id, &owner.id).await.unwrap(), Vec::<TeamId>::new());

    assert!(s.remove_team_member(&t.id, &core.id, &bob.id).await.unwrap());
    assert!(!s.remove_team_member(&t.id, &core.id, &bob.id).await.unwrap());
    assert!(s.teams_of_user(&t.id, &bob.id).await.unwrap().is_empty());

    // Deleting a user removes its memberships; deleting a team removes its own.
    assert!(s.delete_user(&t.id, &alice.id).await.unwrap());
    assert!(!s.delete_user(&t.id, &alice.id).await.unwrap());
    assert_eq!(s.find_user(&t.id, "alice").await.unwrap(), None);
    assert!(s.team_members(&t.id, &core.id).await.unwrap().is_empty());
    assert!(s.add_team_member(&t.id, &web.id, &bob.id).await.unwrap());
    assert!(s.delete_team(&t.id, &web.id).await.unwrap());
    assert!(!s.delete_team(&t.id, &web.id).await.unwrap());
    assert_eq!(count_rows(&ctx, "team_members", t.id.as_str()).await, 0);
    assert_eq!(s.list_teams(&t.id).await.unwrap(), vec![core]);
}

pub async fn isolation(ctx: Ctx) {
    let s = &ctx.store;
    let (a, a_owner) = seed(s, "tenant-a").await;
    let (b, b_owner) = seed(s, "tenant-b").await;
    let a_team = s.create_team(&a.id, "core").await.unwrap();
    assert!(s.add_team_member(&a.id, &a_team.id, &a_owner.id).await.unwrap());

    assert!(s.list_teams(&b.id).await.unwrap().is_empty());
    assert_eq!(s.find_team(&b.id, a_team.id.as_str()).await.unwrap(), None);
    assert_eq!(s.find_team(&b.id, "core").await.unwrap(), None);
    assert!(s.team_members(&b.id, &a_team.id).await.unwrap().is_empty());
    assert!(s.teams_of_user(&b.id, &a_owner.id).await.unwrap().is_empty());
    assert!(!s.remove_team_member(&b.id, &a_team.id, &a_owner.id).await.unwrap());
    assert!(!s.delete_team(&b.id, &a_team.id).await.unwrap());
    assert!(!s.delete_user(&b.id, &a_owner.id).await.unwrap());
    // Neither a team nor a user of another tenant can be joined.
    assert!(matches!(s.add_team_member(&b.id, &a_team.id, &b_owner.id).await, Err(StoreError::Invalid(_))));
    let b_team = s.create_team(&b.id, "core").await.unwrap();
    assert!(matches!(s.add_team_member(&b.id, &b_team.id, &a_owner.id).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.add_team_member(&a.id, &b_team.id, &a_owner.id).await, Err(StoreError::Invalid(_))));

    assert_eq!(s.team_members(&a.id, &a_team.id).await.unwrap().len(), 1);
    assert!(s.user(&a.id, &a_owner.id).await.unwrap().is_some());
    assert_eq!(s.list_teams(&b.id).await.unwrap(), vec![b_team]);
}
