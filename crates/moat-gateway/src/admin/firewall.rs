//! Admin API of the firewall: approvals (calls held for an admin, and tool
//! descriptions that changed after they were approved), the tenant's policy
//! overrides and its own detection patterns.
//!
//! Every route needs an admin or owner key of the tenant: an approval, its
//! findings summary and the tenant's rules are visible to that tenant's
//! admins only.

use super::{ApiError, ApiErrorBody, ApiResult, TenantQuery, admin, audit, find_server};
use crate::admin_openapi::RpcError;
use crate::state::App;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use moat_firewall::{Mode, PolicyRule};
use moat_store::{
    ApprovalKind, ApprovalRecord, ApprovalStatus, FirewallOverride, FirewallPatternRecord, FirewallPolicyRecord,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

macro_rules! admin_only {
    ($app:expr, $headers:expr, $addr:expr, $tenant:expr) => {
        match admin(&$app, &$headers, $addr, $tenant, true).await {
            Ok(a) => a,
            Err(resp) => return Ok(resp),
        }
    };
}

// ---- approvals ------------------------------------------------------------------

/// The query parameters of the approval listing.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApprovalParams {
    /// The tenant, by name or id. Default: the caller's own; any other needs
    /// the operator's key.
    tenant: Option<String>,
    /// `pending` (default), `approved`, `denied`, `expired` or `all`.
    status: Option<String>,
    /// At most this many (default 100; clamped to 1..=1000).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

/// List approvals
///
/// Newest first. Each one names the server, the tool (or the changed
/// description), who asked and what the firewall found (categories, rules,
/// actions), never the content itself.
#[utoipa::path(
    get,
    path = "/api/v1/approvals",
    tag = "approvals",
    params(ApprovalParams),
    responses(
        (status = 200, description = "the approvals, newest first", body = [ApprovalRecord]),
        (status = 400, description = "an unknown status, or a malformed query string", body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_approvals(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(p): Query<ApprovalParams>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, p.tenant.as_deref());
    let status = match p.status.as_deref().unwrap_or("pending") {
        "all" => None,
        s => Some(s.parse::<ApprovalStatus>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{s}` is not one of: pending, approved, denied, expired, all"),
            )
        })?),
    };
    let limit = i64::from(p.limit.unwrap_or(100).clamp(1, 1000));
    Ok(Json(app.store.list_approvals(&a.tenant, status, limit).await?).into_response())
}

/// Show an approval
#[utoipa::path(
    get,
    path = "/api/v1/approvals/{approval}",
    tag = "approvals",
    params(("approval" = String, Path, description = "the approval's id"), TenantQuery),
    responses(
        (status = 200, description = "the approval", body = ApprovalRecord),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such approval in this tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn show_approval(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let record = app.store.get_approval(&a.tenant, &id).await.map_err(or_not_found("approval"))?;
    Ok(Json(record).into_response())
}

/// A store error, with "not found" naming `what`.
fn or_not_found(what: &'static str) -> impl FnOnce(moat_store::StoreError) -> ApiError {
    move |e| match e {
        moat_store::StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

async fn decide(app: App, a: super::Admin, id: &str, approve: bool) -> ApiResult {
    let by = a.principal.user_id.to_string();
    let record = app.firewall.decide(&a.tenant, id, approve, Some(&by)).await.map_err(or_not_found("approval"))?;
    if record.kind == ApprovalKind::ToolChange && approve {
        // The re-approved item shows again: refetch and tell the clients.
        app.pool.clear_lists(&a.tenant, &record.server_name);
    }
    let action = if approve { "approval.approve" } else { "approval.deny" };
    let meta = json!({
        "kind": record.kind,
        "server": record.server_name,
        "target": record.target,
        "method": record.method,
        "requested_by": record.requested_by,
    });
    audit(&app, &a, action, format!("approval:{}", record.id), meta).await;
    Ok(Json(record).into_response())
}

/// Approve a held call or a changed description
///
/// A held call proceeds at once; a changed tool, prompt or resource is
/// shown again with its new description.
#[utoipa::path(
    post,
    path = "/api/v1/approvals/{approval}/approve",
    tag = "approvals",
    params(("approval" = String, Path, description = "the approval's id"), TenantQuery),
    responses(
        (status = 200, description = "the decided approval", body = ApprovalRecord),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such approval in this tenant", body = ApiErrorBody),
        (status = 409, description = "already approved, denied or expired", body = ApiErrorBody),
    )
)]
pub(crate) async fn approve(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    decide(app, a, &id, true).await
}

/// Deny a held call or a changed description
///
/// A held call gets an error result; a changed item stays hidden (when the
/// deployment hides changed tools) until it is approved.
#[utoipa::path(
    post,
    path = "/api/v1/approvals/{approval}/deny",
    tag = "approvals",
    params(("approval" = String, Path, description = "the approval's id"), TenantQuery),
    responses(
        (status = 200, description = "the decided approval", body = ApprovalRecord),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such approval in this tenant", body = ApiErrorBody),
        (status = 409, description = "already approved, denied or expired", body = ApiErrorBody),
    )
)]
pub(crate) async fn deny(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    decide(app, a, &id, false).await
}

// ---- policy overrides -------------------------------------------------------------

/// A policy override for the tenant, one of its servers, or one tool.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutPolicyBody {
    /// A server, by name or id; absent for the whole tenant.
    server: Option<String>,
    /// A tool, prompt or resource of that server (upstream name); absent for
    /// the whole server.
    tool: Option<String>,
    /// `enforce`, `shadow` or `disabled`; absent keeps the inherited mode.
    mode: Option<String>,
    /// Rules added after the inherited ones: `{category?, rule?, direction?,
    /// action}` with action `block`, `redact`, `approve` or `log` (`allow`
    /// turns a finding off). The most specific matching rule wins.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    rules: Vec<Value>,
    /// The largest call arguments or result, in bytes, before an
    /// `oversized-payload` exfiltration finding; absent keeps the inherited
    /// budget (1 MiB unless the deployment sets another).
    #[schema(minimum = 1)]
    budget_bytes: Option<i64>,
}

/// Which override to remove.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PolicyParams {
    /// The tenant, by name or id. Default: the caller's own.
    tenant: Option<String>,
    /// The server's override (name or id); absent for the tenant's.
    server: Option<String>,
    /// The tool's override within that server.
    tool: Option<String>,
}

/// List the tenant's firewall overrides
///
/// The deployment's policy (`[firewall]` in the config) applies first, then
/// the tenant's override, then a server's, then a tool's.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/policies",
    tag = "firewall",
    params(TenantQuery),
    responses(
        (status = 200, description = "the overrides", body = [FirewallPolicyRecord]),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_policies(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    Ok(Json(app.store.list_firewall_policies(&a.tenant).await?).into_response())
}

/// Set a firewall override
///
/// Creates or replaces the override of the tenant, a server or a tool. It
/// applies to new calls within seconds.
#[utoipa::path(
    put,
    path = "/api/v1/firewall/policies",
    tag = "firewall",
    params(TenantQuery),
    request_body = PutPolicyBody,
    responses(
        (status = 200, description = "the tenant's overrides after the change", body = [FirewallPolicyRecord]),
        (status = 400, description = "an unknown mode, category, direction or action, or a budget below 1",
            body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such server or tenant", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn put_policy(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<PutPolicyBody>,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    if let Some(m) = body.mode.as_deref() {
        m.parse::<Mode>().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    }
    let mut rules = Vec::with_capacity(body.rules.len());
    for (i, r) in body.rules.into_iter().enumerate() {
        let rule: PolicyRule = serde_json::from_value(r).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "rules[{i}]: {e} (expected {{category?, rule?, direction?, action}}: category one of secret, pii, \
                     injection, destructive, url, exfiltration, tool_abuse; direction request, response or \
                     description; action block, redact, approve, log or allow)"
                ),
            )
        })?;
        rules.push(rule);
    }
    let server = match body.server.as_deref() {
        Some(s) => find_server(&app, &a, s).await?.name,
        None => String::new(),
    };
    let tool = body.tool.unwrap_or_default();
    if server.is_empty() && !tool.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "a tool override needs its `server`"));
    }
    let rules_json = serde_json::to_value(&rules).unwrap_or(Value::Array(Vec::new()));
    let by = a.principal.user_id.to_string();
    let o = FirewallOverride {
        server: &server,
        tool: &tool,
        mode: body.mode.as_deref(),
        rules: &rules_json,
        budget_bytes: body.budget_bytes,
    };
    app.store.put_firewall_policy(&a.tenant, o, Some(&by)).await?;
    app.firewall.forget_tenant(&a.tenant);
    let meta = json!({
        "server": server, "tool": tool, "mode": body.mode, "rules": rules.len(), "budget_bytes": body.budget_bytes,
    });
    audit(&app, &a, "firewall.policy.set", scope_resource(&server, &tool), meta).await;
    Ok(Json(app.store.list_firewall_policies(&a.tenant).await?).into_response())
}

fn scope_resource(server: &str, tool: &str) -> String {
    match (server, tool) {
        ("", _) => "firewall:tenant".to_owned(),
        (s, "") => format!("firewall:{s}"),
        (s, t) => format!("firewall:{s}/{t}"),
    }
}

/// Remove a firewall override
#[utoipa::path(
    delete,
    path = "/api/v1/firewall/policies",
    tag = "firewall",
    params(PolicyParams),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such override, server or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn delete_policy(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(p): Query<PolicyParams>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, p.tenant.as_deref());
    let server = match p.server.as_deref() {
        // A server deleted since keeps its override row: match it by name too.
        Some(s) => find_server(&app, &a, s).await.map(|r| r.name).unwrap_or_else(|_| s.to_owned()),
        None => String::new(),
    };
    let tool = p.tool.unwrap_or_default();
    app.store.delete_firewall_policy(&a.tenant, &server, &tool).await.map_err(or_not_found("override"))?;
    app.firewall.forget_tenant(&a.tenant);
    audit(
        &app,
        &a,
        "firewall.policy.delete",
        scope_resource(&server, &tool),
        json!({ "server": server, "tool": tool }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- patterns -----------------------------------------------------------------

/// A detection pattern of the tenant's own.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddPatternBody {
    /// The rule id its findings carry (`employee-id`), unique in the tenant.
    name: String,
    /// The category it reports under (default `pii`).
    category: Option<String>,
    /// A regular expression (Rust `regex` syntax, ASCII classes, no
    /// look-around or back-references: matching stays linear).
    pattern: String,
}

/// List the tenant's detection patterns
#[utoipa::path(
    get,
    path = "/api/v1/firewall/patterns",
    tag = "firewall",
    params(TenantQuery),
    responses(
        (status = 200, description = "the patterns", body = [FirewallPatternRecord]),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_patterns(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    Ok(Json(app.store.list_firewall_patterns(&a.tenant).await?).into_response())
}

/// Add a detection pattern
///
/// Compiled before it is stored; a pattern that does not compile, or would
/// not stay linear, is refused. It applies to new calls within seconds.
#[utoipa::path(
    post,
    path = "/api/v1/firewall/patterns",
    tag = "firewall",
    params(TenantQuery),
    request_body = AddPatternBody,
    responses(
        (status = 201, description = "added", body = FirewallPatternRecord),
        (status = 400, description = "a bad name, category or regular expression", body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
        (status = 409, description = "a pattern of that name exists", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn add_pattern(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<AddPatternBody>,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let category = body.category.unwrap_or_else(|| "pii".to_owned());
    crate::firewall::validate_pattern(&body.name, &category, &body.pattern)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let by = a.principal.user_id.to_string();
    let record = app.store.add_firewall_pattern(&a.tenant, &body.name, &category, &body.pattern, Some(&by)).await?;
    app.firewall.forget_tenant(&a.tenant);
    let meta = json!({ "name": record.name, "category": record.category });
    audit(&app, &a, "firewall.pattern.add", format!("pattern:{}", record.id), meta).await;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Remove a detection pattern
#[utoipa::path(
    delete,
    path = "/api/v1/firewall/patterns/{pattern}",
    tag = "firewall",
    params(("pattern" = String, Path, description = "the pattern's id or name"), TenantQuery),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such pattern or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn delete_pattern(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    app.store.delete_firewall_pattern(&a.tenant, &key).await.map_err(or_not_found("pattern"))?;
    app.firewall.forget_tenant(&a.tenant);
    audit(&app, &a, "firewall.pattern.delete", format!("pattern:{key}"), json!({})).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
