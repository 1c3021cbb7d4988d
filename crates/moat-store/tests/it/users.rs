//! Users: uniqueness per tenant, lookup by id or name, isolation.

use crate::harness::{Ctx, seed};
use moat_core::{PrincipalKind, Role, UserId};
use moat_store::{NewUser, StoreError};

fn member(name: &str) -> NewUser {
    NewUser {
        name: name.into(),
        email: Some(format!("{name}@example.com")),
        kind: PrincipalKind::Human,
        role: Role::Member,
    }
}

pub async fn crud_and_isolation(ctx: Ctx) {
    let s = &ctx.store;
    let (a, a_owner) = seed(s, "tenant-a").await;
    let (b, _) = seed(s, "tenant-b").await;

    let alice = s.create_user(&a.id, member("alice")).await.unwrap();
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert_eq!(s.user(&a.id, &alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(s.find_user(&a.id, "alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(s.find_user(&a.id, alice.id.as_str()).await.unwrap(), Some(alice.clone()));
    assert_eq!(s.user(&a.id, &UserId::generate()).await.unwrap(), None);

    match s.create_user(&a.id, member("alice")).await {
        Err(StoreError::Conflict(m)) => {
            assert_eq!(m, "a user named `alice` already exists in this tenant")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(s.create_user(&a.id, member("Alice Smith")).await, Err(StoreError::Invalid(_))));
    // The same name in another tenant is fine.
    let b_alice = s.create_user(&b.id, member("alice")).await.unwrap();

    // Tenant B sees none of A's users, even by id.
    assert_eq!(s.user(&b.id, &alice.id).await.unwrap(), None);
    assert_eq!(s.find_user(&b.id, alice.id.as_str()).await.unwrap(), None);
    assert_eq!(s.find_user(&b.id, "alice").await.unwrap(), Some(b_alice));
    let names: Vec<_> = s.list_users(&a.id).await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "owner"]);
    assert!(s.list_users(&b.id).await.unwrap().iter().all(|u| u.tenant_id == b.id));
    assert_eq!(a_owner.role, Role::Owner);
}
