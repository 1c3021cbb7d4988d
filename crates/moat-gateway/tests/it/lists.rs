//! What the aggregated list keeps between requests: cached pages (and their
//! prefixed items) per credential binding, refreshed by `list_changed`, and
//! description scans remembered only when clean.

use crate::support::{Gw, modern_params, modern_request, rpc};
use moat_core::{CredentialKind, ScopeTier};
use moat_gateway::credentials::{NewValue, Subject};
use secrecy::SecretString;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The tools `/mcp` lists to the holder of `key`: name → description.
async fn tools(gw: &Gw, key: &str) -> Vec<(String, String)> {
    let body = rpc(1, "tools/list", modern_params(json!({})));
    let r = gw.send(modern_request("/mcp", key, &body, "application/json")).await;
    let result = r.result();
    assert!(result.get("nextCursor").is_none(), "one page: {result}");
    result["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| {
            let description = t["description"].as_str().unwrap_or_default().to_owned();
            (t["name"].as_str().expect("a name").to_owned(), description)
        })
        .collect()
}

async fn names(gw: &Gw, key: &str) -> BTreeSet<String> {
    tools(gw, key).await.into_iter().map(|(name, _)| name).collect()
}

/// A personal credential makes Bob's instance of `alpha` list one more
/// tool; whoever asks first, neither caller ever gets the other's list.
#[tokio::test]
async fn callers_with_different_credentials_never_share_a_list() {
    let gw = Gw::start().await;
    let alpha = gw.add_fake("alpha", &[]).await;
    gw.add_fake("beta", &[]).await;
    let bob_key = gw.new_key("bob").await;
    let bob = gw.store.list_users(&gw.tenant.id).await.unwrap().into_iter().find(|u| u.name == "bob").unwrap();
    let token = SecretString::from("bob-token-7f3a9c2e51d84b06");
    let personal = NewValue {
        tier: ScopeTier::Personal,
        subject: Subject::User(bob.id.clone()),
        kind: CredentialKind::Env,
        target: "FAKE_TOKEN",
        value: &token,
    };
    gw.state.vault.set(&gw.tenant.id, &alpha, personal, "test").await.unwrap();

    for _ in 0..2 {
        let theirs = names(&gw, &bob_key).await;
        assert!(theirs.contains("alpha__authed"), "Bob's binding lists `authed`: {theirs:?}");
        let mine = names(&gw, &gw.key).await;
        assert!(!mine.contains("alpha__authed"), "the owner has no credential: {mine:?}");
        assert!(mine.contains("alpha__echo") && mine.contains("beta__echo"), "{mine:?}");
        assert_eq!(theirs.len(), mine.len() + 1, "the same lists otherwise: {theirs:?} / {mine:?}");
    }
    gw.finish().await;
}

/// With a 5-minute list TTL only the upstream's `list_changed` can refresh
/// the cached page: the changed description then reaches the firewall,
/// which hides the tool as before (changed after approval) and audits it.
#[tokio::test]
async fn list_changed_refreshes_the_list_and_a_changed_description_is_still_caught() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &["--mutable"]).await;
    gw.add_fake("beta", &[]).await;
    let before = tools(&gw, &gw.key).await;
    assert!(before.contains(&("alpha__t1".to_owned(), "third".to_owned())), "{before:?}");

    let r = gw.call_tool("alpha__rug_pull", json!({})).await;
    assert_eq!(r.result()["content"][0]["text"], "changed", "{}", r.text());

    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = names(&gw, &gw.key).await;
        if !now.contains("alpha__t1") {
            break now;
        }
        assert!(Instant::now() < deadline, "the cached list was never refreshed: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(after.contains("alpha__echo") && after.contains("beta__t1"), "only the changed tool goes: {after:?}");
    let events = gw.audit("firewall.rug_pull", |evs| !evs.is_empty()).await;
    assert_eq!(events.first().and_then(|e| e.resource.as_deref()), Some("alpha/t1"), "{events:?}");
    gw.finish().await;
}

/// Clean descriptions are not scanned again while unchanged, but a finding
/// is never remembered: with no list cache, every fetch decides (here:
/// withholds or neutralises) the hostile description and audits it again.
#[tokio::test]
async fn findings_in_descriptions_are_handled_on_every_fetch() {
    let gw = Gw::with(|c| c.list_cache_ttl = Duration::ZERO).await;
    gw.add_fake("alpha", &["--hostile"]).await;
    for _ in 0..3 {
        let listed = tools(&gw, &gw.key).await;
        let names: BTreeSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.is_superset(&BTreeSet::from(["alpha__echo", "alpha__progress", "alpha__t1"])), "{names:?}");
        for (name, description) in &listed {
            assert!(!description.contains("ignore all previous instructions"), "{name}: {description}");
        }
    }
    let hostile =
        |evs: &[moat_store::AuditEvent]| evs.iter().filter(|e| e.resource.as_deref() == Some("alpha/weather")).count();
    let events = gw.audit("firewall.", |evs| hostile(evs) >= 3).await;
    assert_eq!(hostile(&events), 3, "one decision per fetch: {events:?}");
    gw.finish().await;
}
