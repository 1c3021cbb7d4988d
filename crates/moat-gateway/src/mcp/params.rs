//! `Mcp-Param-*` headers (2026-07-28, SEP-2243): a tool may mark arguments
//! with `x-mcp-header` in its `inputSchema`; clients mirror them into
//! headers, and a server that reads the body must check that they match.
//! moat reads the body, so it validates them against the tool definition
//! from the (cached) tool list before anything reaches the upstream.

use super::dispatch::Scope;
use super::names;
use crate::state::App;
use crate::upstreams::ServerEntry;
use axum::http::HeaderMap;
use moat_core::{Principal, TenantId};
use moat_mcp::client::{CallContext, param_headers};
use moat_mcp::{Message, protocol};
use serde_json::Value;
use std::sync::Arc;

/// Finds a tool's definition in a server's cached modern tool list.
async fn tool_definition(app: &App, principal: &Principal, entry: &Arc<ServerEntry>, name: &str) -> Option<Value> {
    let entry = &super::dispatch::instance_for(app, principal, entry, None).await.ok()?;
    let mut cursor = None;
    // A bounded walk: a hostile upstream cannot make this loop forever.
    for _ in 0..100 {
        // The cached page itself, not a copy of it: only one tool is needed.
        let shared = app.pool.shared_page(entry, true, "tools/list", cursor, CallContext::default()).await.ok()?;
        let page = shared.value();
        if let Some(tool) = page
            .get("tools")
            .and_then(Value::as_array)
            .and_then(|tools| tools.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name)))
        {
            return Some(tool.clone());
        }
        cursor = Some(page.get("nextCursor")?.as_str()?.to_owned());
    }
    None
}

fn target(app: &App, tenant: &TenantId, scope: &Scope, full_name: &str) -> Option<(Arc<ServerEntry>, String)> {
    match scope {
        Scope::Server(entry) => Some((entry.clone(), full_name.to_owned())),
        Scope::Aggregate => {
            let (server, tool) = names::split_name(full_name)?;
            Some((app.pool.get(tenant, server)?, tool.to_owned()))
        }
    }
}

/// Checks the `Mcp-Param-*` headers of a modern `tools/call`. `Err` says
/// which header is missing, malformed or does not match the body.
pub async fn check(
    app: &App,
    principal: &Principal,
    scope: &Scope,
    headers: &HeaderMap,
    msg: &Message,
) -> Result<(), String> {
    let Some(full_name) = msg.param_str("name") else { return Ok(()) };
    let Some((entry, tool)) = target(app, &principal.tenant_id, scope, full_name) else { return Ok(()) };
    let Some(def) = tool_definition(app, principal, &entry, &tool).await else { return Ok(()) };
    let Some(schema) = def.get("inputSchema") else { return Ok(()) };
    // Invalid annotations make the tool invalid; the upstream client has
    // already dropped such tools from lists, so there is nothing to check.
    let Ok(annotations) = param_headers(schema) else { return Ok(()) };
    let arguments = msg.params.as_ref().and_then(|p| p.get("arguments"));
    for a in &annotations {
        let header_name = format!("{}{}", protocol::HEADER_PARAM_PREFIX, a.token.to_ascii_lowercase());
        let header = headers.get(header_name.as_str());
        match (a.rendered(arguments), header) {
            (None, _) => {}
            (Some(_), None) => return Err(format!("the Mcp-Param-{} header is missing", a.token)),
            (Some(body), Some(raw)) => {
                let Some(value) = protocol::decode_header_value(raw.as_bytes()) else {
                    return Err(format!("the Mcp-Param-{} header has invalid characters", a.token));
                };
                let numeric_equal = matches!(
                    (value.parse::<f64>(), body.parse::<f64>()),
                    (Ok(x), Ok(y)) if x == y
                );
                if value != body && !numeric_equal {
                    return Err(format!("the Mcp-Param-{} header does not match the body", a.token));
                }
            }
        }
    }
    Ok(())
}
