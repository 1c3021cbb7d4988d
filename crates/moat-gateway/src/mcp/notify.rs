//! Server-initiated notifications: fan-out to legacy sessions (their GET or
//! `/sse` stream) and modern `subscriptions/listen` streams.

use super::dispatch::{CallCtx, Scope};
use super::names;
use super::session::Session;
use super::wire::sse_response;
use crate::state::App;
use crate::upstreams::ServerNotification;
use axum::response::Response;
use moat_core::ServerId;
use moat_mcp::{Message, protocol};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// The notification as the addressed scope should see it, or `None` when
/// it is not for this scope.
fn for_scope(scope: &Scope, n: &ServerNotification) -> Option<Message> {
    let mut msg = n.message.clone();
    match scope {
        Scope::Server(e) => (e.record.tenant_id == n.tenant && e.name() == &*n.server).then_some(msg),
        Scope::Aggregate => {
            if msg.method_str() == "notifications/resources/updated"
                && let Some(Value::String(uri)) = msg.params.as_mut().and_then(|p| p.get_mut("uri"))
            {
                *uri = names::prefix_uri(&n.server, uri);
            }
            Some(msg)
        }
    }
}

/// True when `n` comes from the instance a caller is bound to for that
/// server: notifications of another user's credentials never cross over.
/// `bindings` is what the caller resolved so far; a server it has not used
/// yet counts as bound to no credential.
fn same_binding(bindings: &HashMap<ServerId, Arc<str>>, n: &ServerNotification) -> bool {
    bindings.get(&n.server_id).map_or(n.binding.is_empty(), |k| *k == n.binding)
}

fn is_list_changed(method: &str) -> bool {
    matches!(
        method,
        "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
    )
}

/// Forwards upstream notifications to the legacy sessions that may see them.
pub fn spawn_fanout(app: App) {
    let mut rx = app.pool.subscribe();
    tokio::spawn(async move {
        loop {
            let n = match rx.recv().await {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for session in app.sessions.all() {
                if session.principal.tenant_id != n.tenant {
                    continue;
                }
                let bound = session.bindings.lock().map(|b| same_binding(&b, &n)).unwrap_or(false);
                if !bound {
                    continue;
                }
                if let Some(msg) = for_scope(&session.scope, &n)
                    && wanted_by_session(&session, &msg)
                {
                    session.notify(msg).await;
                }
            }
        }
    });
}

fn wanted_by_session(session: &Session, msg: &Message) -> bool {
    let method = msg.method_str();
    if is_list_changed(method) {
        return true;
    }
    if method == "notifications/resources/updated" {
        let uri = msg.param_str("uri").unwrap_or_default();
        return session.subscriptions.lock().map(|s| s.contains(uri)).unwrap_or(false);
    }
    // Log messages not tied to a request: only on a one-server session.
    method == "notifications/message" && matches!(session.scope, Scope::Server(_))
}

/// `subscriptions/listen` (2026-07-28): a long-lived SSE response carrying
/// the notification types the client opted in to.
pub async fn listen(ctx: CallCtx, req: Message) -> Response {
    let id = req.id.clone().unwrap_or(Value::Null);
    let filter = req.params.as_ref().and_then(|p| p.get("notifications")).cloned().unwrap_or_else(|| json!({}));
    let flag = |k: &str| filter.get(k).and_then(Value::as_bool).unwrap_or(false);
    let (tools, prompts, resources) =
        (flag("toolsListChanged"), flag("promptsListChanged"), flag("resourcesListChanged"));
    let uris: Vec<String> = filter
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let mut honoured = serde_json::Map::new();
    for (k, on) in [("toolsListChanged", tools), ("promptsListChanged", prompts), ("resourcesListChanged", resources)] {
        if on {
            honoured.insert(k.into(), json!(true));
        }
    }
    if !uris.is_empty() {
        honoured.insert("resourceSubscriptions".into(), json!(uris));
    }
    subscribe_upstream(&ctx, &uris).await;
    let bindings = bindings_of(&ctx).await;
    let meta = json!({ protocol::META_SUBSCRIPTION_ID: id });
    let ack = Message::notification(
        "notifications/subscriptions/acknowledged",
        Some(json!({ "notifications": honoured, "_meta": meta })),
    );
    let mut rx = ctx.app.pool.subscribe();
    let stop = ctx.app.shutdown.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<moat_mcp::sse::Event>(64);
    let encode = |m: &Message| moat_mcp::sse::Event::message(String::from_utf8_lossy(&m.to_bytes()).into_owned());
    let _ = tx.send(encode(&ack)).await;
    let tenant = ctx.principal.tenant_id.clone();
    let scope = ctx.scope.clone();
    tokio::spawn(async move {
        loop {
            let n = tokio::select! {
                n = rx.recv() => n,
                () = stop.cancelled() => {
                    let done = Message::response(id.clone(), json!({ "_meta": meta, "resultType": "complete" }));
                    let _ = tx.send(encode(&done)).await;
                    return;
                }
                () = tx.closed() => return,
            };
            let n = match n {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if n.tenant != tenant || !same_binding(&bindings, &n) {
                continue;
            }
            let Some(mut msg) = for_scope(&scope, &n) else { continue };
            let wanted = match msg.method_str() {
                "notifications/tools/list_changed" => tools,
                "notifications/prompts/list_changed" => prompts,
                "notifications/resources/list_changed" => resources,
                "notifications/resources/updated" => uris.iter().any(|u| Some(u.as_str()) == msg.param_str("uri")),
                _ => false,
            };
            if !wanted {
                continue;
            }
            let params = msg.params.get_or_insert_with(|| json!({}));
            if let Some(obj) = params.as_object_mut() {
                let m = obj.entry("_meta").or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(protocol::META_SUBSCRIPTION_ID.into(), id.clone());
                }
            }
            if tx.send(encode(&msg)).await.is_err() {
                return;
            }
        }
    });
    sse_response(tokio_stream::wrappers::ReceiverStream::new(out), &[])
}

/// The binding the caller resolves to for each server in its scope.
async fn bindings_of(ctx: &CallCtx) -> HashMap<ServerId, Arc<str>> {
    let entries = match &ctx.scope {
        Scope::Server(e) => vec![e.clone()],
        Scope::Aggregate => ctx.app.pool.for_tenant(&ctx.principal.tenant_id),
    };
    let mut out = HashMap::new();
    for e in entries {
        // A server whose credentials cannot be resolved now gets no
        // notifications on this stream rather than another binding's.
        let key = match ctx.app.vault.resolve(&ctx.principal, &e.record).await {
            Ok(b) => b.key.clone(),
            Err(_) => Arc::from("\u{0}unresolved"),
        };
        out.insert(e.record.id.clone(), key);
    }
    out
}

/// Forwards resource subscriptions to the upstreams that own the URIs.
async fn subscribe_upstream(ctx: &CallCtx, uris: &[String]) {
    for uri in uris {
        let (entry, inner) = match &ctx.scope {
            Scope::Server(e) => (Some(e.clone()), uri.clone()),
            Scope::Aggregate => match names::split_uri(uri) {
                Some((server, inner)) => (ctx.app.pool.get(&ctx.principal.tenant_id, server), inner.to_owned()),
                None => (None, uri.clone()),
            },
        };
        // `resources/subscribe` exists only in the legacy era; a modern
        // upstream's own listen stream already feeds resource updates.
        let Some(entry) = entry else { continue };
        let Ok(inst) = ctx.instance(&entry).await else { continue };
        if let Ok(upstream) = inst.upstream_for(false).await {
            let _ = upstream.request("resources/subscribe", Some(json!({ "uri": inner })), Default::default()).await;
        }
    }
}
