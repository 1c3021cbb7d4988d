//! List methods on the aggregated endpoint (`/mcp`): the lists of every
//! server of the caller's tenant merged into one, names prefixed
//! `<server>__<name>` (see [`super::names`]).
//!
//! Cost model: each upstream page is fetched, filtered by the firewall and
//! cached once per credential binding ([`UpstreamPool::shared_page`]); its
//! prefixed items are built and serialised once per cached page and kept
//! beside it. A request then only asks the servers whose page is not
//! cached — concurrently, at most [`FETCH_CONCURRENCY`] at a time — and
//! writes the serialised items into its answer, which leaves dispatch as
//! JSON text ([`RawResult`]): a warm list of thousands of tools is a copy
//! of bytes, not a tree of values rebuilt and serialised per request.
//! Nothing is shared between callers that the per-binding page cache does
//! not already share: the prefixed items live and die with their page.
//!
//! [`UpstreamPool::shared_page`]: crate::upstreams::UpstreamPool::shared_page

use super::dispatch::{CallCtx, call_context, modern_defaults, upstream_error};
use super::names;
use crate::upstreams::{ListPage, ServerEntry, list_method};
use base64::Engine as _;
use futures::StreamExt as _;
use moat_mcp::ErrorObject;
use moat_mcp::client::{CallContext, UpstreamError};
use moat_mcp::jsonrpc::{RawResult, code};
use serde::ser::{SerializeMap as _, SerializeSeq as _};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Most upstreams one aggregated list asks at once: enough to overlap the
/// round trips of a tenant's servers, few enough that one list cannot open
/// a connection to every server of a large tenant at the same instant.
pub const FETCH_CONCURRENCY: usize = 16;

/// Longest wait for one server's page: a slow server is skipped rather than
/// holding the whole list.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The aggregated cursor: which server to continue at, and its own cursor.
fn encode_cursor(server: &str, inner: Option<&str>) -> String {
    let raw = json!({ "s": server, "c": inner }).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Option<(String, Option<String>)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let server = v.get("s")?.as_str()?.to_owned();
    let inner = match v.get("c")? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        _ => return None,
    };
    Some((server, inner))
}

/// Merges one list method over the caller's servers. Pages of upstreams
/// that do not paginate are merged into one response; when an upstream
/// returns a `nextCursor`, the response stops there and the aggregated
/// cursor continues inside that upstream, so pagination passes through.
/// A failing upstream is skipped (and logged), never failing the list —
/// except the one a cursor continues in: its refusal is the client's answer.
/// The result is complete, modern members included (see [`Merged`]).
pub async fn aggregate(ctx: &CallCtx, method: &str, params: Option<&Value>) -> Result<RawResult, ErrorObject> {
    let method = list_method(method).unwrap_or("tools/list");
    let key = names::list_key(method).unwrap_or("tools");
    let entries = ctx.app.pool.for_tenant(&ctx.principal.tenant_id);
    let (start, cursor) = match params.and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => (0, None),
        Some(Value::String(c)) => {
            let invalid = || ErrorObject::new(code::INVALID_PARAMS, "invalid or expired cursor");
            let (server, inner) = decode_cursor(c).ok_or_else(invalid)?;
            let idx = entries.iter().position(|e| e.name() == server).ok_or_else(invalid)?;
            (idx, inner)
        }
        Some(_) => return Err(ErrorObject::new(code::INVALID_PARAMS, "`cursor` must be a string")),
    };
    // The first server asked continues the client's cursor; the others
    // start from their first page.
    let mut first_cursor = cursor;
    // Futures are lazy: collecting them starts nothing (and, unlike a
    // mapping closure, keeps the request's future `Send`).
    let asks: Vec<_> = entries.iter().skip(start).map(|entry| page(ctx, method, entry, first_cursor.take())).collect();
    // `buffered` yields in the servers' order: the merged list and its
    // cursor are those of asking them one after another.
    let mut pages = futures::stream::iter(asks).buffered(FETCH_CONCURRENCY);
    let mut merged = Vec::new();
    let mut next = None;
    while let Some(fetched) = pages.next().await {
        let Some((entry, page)) = fetched? else { continue };
        let inner =
            page.value().get("nextCursor").and_then(Value::as_str).map(|c| encode_cursor(entry.name(), Some(c)));
        merged.push((entry, page));
        if inner.is_some() {
            // The servers after this one come on the next pages; what is
            // still being fetched for them is dropped with `pages`.
            next = inner;
            break;
        }
    }
    drop(pages);
    let parts: Vec<Part> = merged
        .into_iter()
        .map(|(entry, page)| match Arc::try_unwrap(page) {
            // Not cached (a list TTL of zero): the items are taken, not copied.
            Ok(owned) => Part::Owned(serialised(into_prefixed(method, key, entry.name(), owned.into_value()).iter())),
            Err(shared) => Part::Shared(shared, entry.name()),
        })
        .collect();
    let merged = Merged { key, method, parts: &parts, next: next.as_deref(), modern: ctx.modern };
    to_raw_value(&merged)
        .map(RawResult::new)
        .map_err(|_| ErrorObject::new(code::INTERNAL_ERROR, "the merged list could not be written"))
}

/// One server's contribution to a merged list.
enum Part<'a> {
    /// A cached page: its serialised prefixed items are built on first use
    /// and kept with it.
    Shared(Arc<ListPage>, &'a str),
    /// A page fetched for this request only.
    Owned(Vec<Box<RawValue>>),
}

/// A merged list result as it is written: `{ <key>: [items…],
/// "nextCursor"?, and for the modern era the members every other cacheable
/// modern result gets ([`modern_defaults`]) }`.
struct Merged<'a> {
    key: &'static str,
    method: &'static str,
    parts: &'a [Part<'a>],
    next: Option<&'a str>,
    modern: bool,
}

impl Merged<'_> {
    fn items(&self) -> impl Iterator<Item = &RawValue> {
        let (method, key) = (self.method, self.key);
        self.parts
            .iter()
            .flat_map(move |part| match part {
                Part::Shared(page, server) => {
                    page.aggregated(|v| serialised(prefixed_items(method, key, server, v).iter())).iter()
                }
                Part::Owned(items) => items.iter(),
            })
            .map(AsRef::as_ref)
    }
}

impl serde::Serialize for Merged<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(self.key, &Items(self))?;
        if let Some(next) = self.next {
            map.serialize_entry("nextCursor", next)?;
        }
        if self.modern {
            for (key, value) in modern_defaults(true) {
                map.serialize_entry(*key, &value())?;
            }
        }
        map.end()
    }
}

struct Items<'a>(&'a Merged<'a>);

impl serde::Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for item in self.0.items() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

/// Items serialised one by one. A `Value` always serialises; were one not
/// to, it would be left out (and logged) rather than fail the whole list.
fn serialised<'v>(items: impl Iterator<Item = &'v Value>) -> Vec<Box<RawValue>> {
    items
        .filter_map(|item| {
            to_raw_value(item)
                .inspect_err(|e| tracing::error!(error = %e, "a listed item could not be serialised"))
                .ok()
        })
        .collect()
}

/// One server's page for the caller, or `None` when it is skipped.
async fn page<'a>(
    ctx: &CallCtx,
    method: &'static str,
    entry: &'a Arc<ServerEntry>,
    cursor: Option<String>,
) -> Result<Option<(&'a Arc<ServerEntry>, Arc<ListPage>)>, ErrorObject> {
    let resuming = cursor.is_some();
    let inst = match ctx.instance(entry).await {
        Ok(i) => i,
        Err(e) if resuming => return Err(e),
        Err(e) => {
            tracing::warn!(upstream = entry.name(), method, error = %e.message, "skipping upstream in aggregated list");
            return Ok(None);
        }
    };
    if inst.is_unhealthy() && !resuming {
        return Ok(None);
    }
    let timeout = ctx.app.cfg.call_timeout.min(PAGE_TIMEOUT);
    let cx = CallContext { timeout: Some(timeout), ..call_context(ctx, None) };
    match ctx.app.pool.shared_page(&inst, ctx.modern, method, cursor, cx).await {
        Ok(page) => Ok(Some((entry, page))),
        // The client asked to continue inside this server: its refusal
        // (an expired or bad cursor) is the client's answer.
        Err(e) if resuming => Err(upstream_error(entry.name(), method, e, timeout)),
        Err(UpstreamError::Rpc(e)) if e.code == code::METHOD_NOT_FOUND => Ok(None),
        Err(e) => {
            let e = upstream_error(entry.name(), method, e, timeout);
            tracing::warn!(upstream = entry.name(), method, error = %e.message, "skipping upstream in aggregated list");
            Ok(None)
        }
    }
}

/// A page's items with their names (and URIs) prefixed by the server's name.
fn prefixed_items(method: &str, key: &str, server: &str, page: &Value) -> Vec<Value> {
    let Some(list) = page.get(key).and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .map(|item| {
            let mut item = item.clone();
            names::prefix_item(method, server, &mut item);
            item
        })
        .collect()
}

/// [`prefixed_items`] of a page owned by the caller, without copying.
fn into_prefixed(method: &str, key: &str, server: &str, mut page: Value) -> Vec<Value> {
    let Some(Value::Array(mut list)) = page.get_mut(key).map(Value::take) else { return Vec::new() };
    for item in &mut list {
        names::prefix_item(method, server, item);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("srv", Some("abc"));
        assert_eq!(decode_cursor(&c), Some(("srv".into(), Some("abc".into()))));
        let c = encode_cursor("srv", None);
        assert_eq!(decode_cursor(&c), Some(("srv".into(), None)));
        assert_eq!(decode_cursor("!!"), None);
        assert_eq!(decode_cursor("e30"), None);
    }

    #[test]
    fn items_are_prefixed_and_the_page_untouched() {
        let page = json!({ "tools": [{ "name": "echo", "inputSchema": { "type": "object" } }], "nextCursor": "2" });
        let items = prefixed_items("tools/list", "tools", "srv", &page);
        assert_eq!(items, vec![json!({ "name": "srv__echo", "inputSchema": { "type": "object" } })]);
        assert_eq!(page["tools"][0]["name"], "echo");
        assert!(prefixed_items("tools/list", "tools", "srv", &json!({})).is_empty());
        assert_eq!(into_prefixed("tools/list", "tools", "srv", page), items);
        assert!(into_prefixed("tools/list", "tools", "srv", json!({ "tools": 1 })).is_empty());
    }

    #[test]
    fn merged_lists_are_one_array_with_the_cursor_and_the_modern_members() {
        let a = json!({ "tools": [{ "name": "x", "n": 1.50 }, { "name": "y" }] });
        let b = json!({ "tools": [{ "name": "z" }] });
        let parts = vec![
            Part::Owned(serialised(into_prefixed("tools/list", "tools", "a", a).iter())),
            Part::Owned(Vec::new()),
            Part::Owned(serialised(into_prefixed("tools/list", "tools", "b", b).iter())),
        ];
        let merged = |next, modern| Merged { key: "tools", method: "tools/list", parts: &parts, next, modern };
        let legacy: Value = serde_json::from_str(to_raw_value(&merged(None, false)).unwrap().get()).unwrap();
        assert_eq!(legacy, json!({ "tools": [{ "name": "a__x", "n": 1.5 }, { "name": "a__y" }, { "name": "b__z" }] }));
        let modern = to_raw_value(&merged(Some("c"), true)).unwrap();
        assert_eq!(
            modern.get(),
            r#"{"tools":[{"name":"a__x","n":1.5},{"name":"a__y"},{"name":"b__z"}],"nextCursor":"c","resultType":"complete","ttlMs":0,"cacheScope":"private"}"#
        );
        let none = Merged { key: "prompts", method: "prompts/list", parts: &[], next: None, modern: false };
        assert_eq!(to_raw_value(&none).unwrap().get(), r#"{"prompts":[]}"#);
    }
}
