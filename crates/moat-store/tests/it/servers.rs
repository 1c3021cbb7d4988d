//! Upstream servers: API creation, config upsert, lookup, isolation.

use crate::harness::{Ctx, seed};
use moat_core::ServerId;
use moat_store::{NewServer, ServerSource, StoreError, Transport};

fn http(name: &str) -> NewServer {
    NewServer::http(name, Transport::StreamableHttp, "http://127.0.0.1:3001/mcp")
}

pub async fn create_find_delete(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    let mut new = NewServer::stdio("everything", vec!["npx".into(), "-y".into(), "@mcp/everything".into()]);
    new.env.insert("LOG_LEVEL".into(), "debug".into());
    new.allow_anonymous = true;
    let srv = s.create_server(&t.id, new).await.unwrap();
    assert_eq!(
        (srv.source, srv.transport, srv.enabled, srv.allow_anonymous),
        (ServerSource::Api, Transport::Stdio, true, true)
    );
    assert_eq!(srv.command.as_deref().unwrap()[2], "@mcp/everything");
    assert_eq!(srv.env.get("LOG_LEVEL").map(String::as_str), Some("debug"));
    assert!(srv.headers.is_empty() && srv.url.is_none());

    match s.create_server(&t.id, http("everything")).await {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "a server named `everything` already exists in this tenant"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut web = http("web");
    web.headers.insert("X-Team".into(), "core".into());
    web.enabled = false;
    let web = s.create_server(&t.id, web).await.unwrap();
    assert_eq!(web.url.as_deref(), Some("http://127.0.0.1:3001/mcp"));
    assert!(!web.enabled && web.command.is_none());

    assert_eq!(s.find_server(&t.id, "everything").await.unwrap(), Some(srv.clone()));
    assert_eq!(s.find_server(&t.id, srv.id.as_str()).await.unwrap(), Some(srv.clone()));
    assert_eq!(s.find_server(&t.id, "nope").await.unwrap(), None);
    let names: Vec<_> = s.list_servers(&t.id).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["everything", "web"]);

    assert!(s.delete_server(&t.id, &srv.id).await.unwrap());
    assert!(!s.delete_server(&t.id, &srv.id).await.unwrap());
    assert!(!s.delete_server(&t.id, &ServerId::generate()).await.unwrap());
    assert_eq!(s.list_servers(&t.id).await.unwrap(), vec![web]);
}

pub async fn config_upsert(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    let first = s.upsert_config_server(&t.id, NewServer::stdio("files", vec!["fs-server".into()])).await.unwrap();
    assert_eq!(first.source, ServerSource::Config);
    // Booting again with a changed entry updates the same row.
    let mut changed = http("files");
    changed.headers.insert("X-A".into(), "1".into());
    let second = s.upsert_config_server(&t.id, changed).await.unwrap();
    assert_eq!((second.id.clone(), second.created_at), (first.id.clone(), first.created_at));
    assert_eq!((second.transport, second.command.clone()), (Transport::StreamableHttp, None));
    assert!(second.updated_at >= first.updated_at);
    assert_eq!(s.list_servers(&t.id).await.unwrap(), vec![second]);
    // The config file takes over an API-registered server of the same name.
    let api = s.create_server(&t.id, http("shared")).await.unwrap();
    let taken = s.upsert_config_server(&t.id, http("shared")).await.unwrap();
    assert_eq!((taken.id, taken.source), (api.id, ServerSource::Config));
}

pub async fn validation(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = seed(s, "acme").await;
    for bad in [
        NewServer::stdio("a__b", vec!["x".into()]),
        NewServer::stdio("empty", vec![]),
        NewServer::http("nourl", Transport::Sse, ""),
    ] {
        assert!(matches!(s.create_server(&t.id, bad.clone()).await, Err(StoreError::Invalid(_))), "{bad:?}");
        assert!(matches!(s.upsert_config_server(&t.id, bad).await, Err(StoreError::Invalid(_))));
    }
    assert!(s.list_servers(&t.id).await.unwrap().is_empty());
}

pub async fn isolation_and_list_all(ctx: Ctx) {
    let s = &ctx.store;
    let (a, _) = seed(s, "tenant-a").await;
    let (b, _) = seed(s, "tenant-b").await;
    let a_srv = s.create_server(&a.id, http("web")).await.unwrap();
    let b_srv = s.upsert_config_server(&b.id, http("web")).await.unwrap();

    assert_eq!(s.find_server(&b.id, a_srv.id.as_str()).await.unwrap(), None);
    assert!(!s.delete_server(&b.id, &a_srv.id).await.unwrap());
    assert_eq!(s.find_server(&a.id, "web").await.unwrap(), Some(a_srv.clone()));
    assert_eq!(s.list_servers(&b.id).await.unwrap(), vec![b_srv.clone()]);

    let all = s.list_all_servers().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&a_srv) && all.contains(&b_srv));
}
