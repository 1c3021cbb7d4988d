//! The admin REST API at `/api/v1` (JSON), described by
//! `/api/v1/openapi.json`.
//!
//! Every route but `whoami` needs an admin or owner key. A caller acts in
//! its own tenant; the deployment operator may pick another with
//! `?tenant=<name|id>`. Objects are addressed by id or, within the tenant,
//! by unique name. Secrets (new API keys) appear once, in the creation or
//! rotation response, and nowhere else.

use crate::admin_openapi::{RpcError, null_only};
use crate::authn::RequestMeta;
use crate::mcp::wire;
use crate::state::App;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use moat_core::{Principal, PrincipalKind, Role, TenantId, UserId, now_ms};
use moat_store::{
    ApiKeyRecord, AuditEvent, AuditQuery, AuditResult, NewApiKey, NewServer, NewUser, ServerRecord, StoreError,
    TenantRecord, Transport, UserRecord,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

pub(crate) mod firewall;
pub(crate) mod identity;
pub(crate) mod vault;

// The `#[utoipa::path]` annotations below are the API's contract: they are
// gathered into the document served at `/api/v1/openapi.json` (see
// `admin_openapi`). Keep each one next to its handler and in step with it.
//
// Two kinds of error body appear. Refusals decided here are [`ApiError`]
// (`{"error": {"code", "message"}}`); a missing or invalid credential is
// refused by the shared authentication stage with the JSON-RPC error
// envelope of the MCP endpoints (`RpcError`) and a `WWW-Authenticate`
// challenge. Bodies axum's extractors reject (malformed JSON, wrong field
// types, bad query strings) get axum's plain-text 400/415/422.

/// The admin routes, to be nested under `/api/v1`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{tenant}", get(show_tenant).delete(delete_tenant))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{user}", get(vault::show_user).delete(vault::delete_user))
        .route("/teams", get(vault::list_teams).post(vault::create_team))
        .route("/teams/{team}", get(vault::show_team).delete(vault::delete_team))
        .route("/teams/{team}/members/{user}", put(vault::add_member).delete(vault::remove_member))
        .route("/credentials", get(vault::list_credentials).post(vault::set_credential))
        .route("/credentials/{credential}", get(vault::show_credential).delete(vault::delete_credential))
        .route("/tenants/{tenant}/rotate-key", post(vault::rotate_tenant_key))
        .route("/kek/rotate", post(vault::rotate_kek))
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{key}", get(show_key).delete(revoke_key))
        .route("/keys/{key}/rotate", post(rotate_key))
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/{server}", get(show_server).delete(delete_server))
        .route("/audit", get(list_audit))
        .route("/approvals", get(firewall::list_approvals))
        .route("/approvals/{approval}", get(firewall::show_approval))
        .route("/approvals/{approval}/approve", post(firewall::approve))
        .route("/approvals/{approval}/deny", post(firewall::deny))
        .route(
            "/firewall/policies",
            get(firewall::list_policies).put(firewall::put_policy).delete(firewall::delete_policy),
        )
        .route("/firewall/patterns", get(firewall::list_patterns).post(firewall::add_pattern))
        .route("/clients", get(identity::list_clients).post(identity::create_client))
        .route("/clients/{client}", get(identity::show_client).delete(identity::delete_client))
        .route("/clients/{client}/rotate", post(identity::rotate_client))
        .route("/identity", get(identity::show_identity).put(identity::put_identity))
        .route("/identity/revoke", post(identity::revoke_all))
        .route("/identity/keys", get(identity::list_signing_keys))
        .route("/identity/keys/rotate", post(identity::rotate_signing_key))
        .route("/firewall/patterns/{pattern}", axum::routing::delete(firewall::delete_pattern))
        .layer(axum::middleware::from_fn(method_scope))
}

tokio::task_local! {
    /// True while an admin request that changes something (any method but
    /// GET and HEAD) is being handled: it needs `admin:write`, a read
    /// `admin:read`. Set by the router, so no request can claim otherwise.
    static WRITES: bool;
}

async fn method_scope(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let writes = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    WRITES.scope(writes, next.run(req)).await
}

/// An admin API error, rendered as `{"error": {"code", "message"}}`.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into())
    }
    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
}

/// The body of every error the admin API decides itself.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiError)]
struct ApiErrorBody {
    /// What went wrong.
    error: ApiErrorDetail,
}

/// An admin API error: a stable code and a message for people.
#[derive(Serialize, ToSchema)]
struct ApiErrorDetail {
    /// Machine-readable error class.
    code: ApiErrorCode,
    /// What happened, in words; never a credential.
    message: String,
}

/// The error classes of the admin API.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ApiErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::BAD_REQUEST => ApiErrorCode::BadRequest,
            StatusCode::UNAUTHORIZED => ApiErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ApiErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ApiErrorCode::NotFound,
            StatusCode::CONFLICT => ApiErrorCode::Conflict,
            _ => ApiErrorCode::Internal,
        };
        (self.0, Json(ApiErrorBody { error: ApiErrorDetail { code, message: self.1 } })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::new(StatusCode::NOT_FOUND, "not found"),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            StoreError::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, m),
            other => {
                tracing::error!(error = %other, "storage error in admin API");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage error")
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// The query parameter of every tenant-scoped route.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The tenant to act in, by name or id. Default: the caller's own; any
    /// other needs the operator's key.
    pub(crate) tenant: Option<String>,
}

/// An authenticated admin request: the caller and the tenant it acts in.
struct Admin {
    principal: Principal,
    tenant: TenantId,
    meta: RequestMeta,
}

async fn admin(
    app: &App,
    headers: &HeaderMap,
    addr: SocketAddr,
    tenant: Option<&str>,
    need_admin: bool,
) -> Result<Admin, Response> {
    let meta = wire::request_meta(headers, Some(addr));
    let principal =
        app.auth.authenticate(headers, &meta, "/api/v1").await.map_err(|f| wire::auth_failure(app, "/api/v1", &f))?;
    let (scope, name) = if WRITES.try_with(|w| *w).unwrap_or(true) {
        (moat_core::Scope::AdminWrite, "admin:write")
    } else {
        (moat_core::Scope::AdminRead, "admin:read")
    };
    if !principal.has_scope(scope) {
        return Err(wire::insufficient_scope(name));
    }
    if need_admin && !principal.is_admin() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this needs an admin or owner key").into_response());
    }
    let tenant = match tenant {
        None => principal.tenant_id.clone(),
        Some(t) if t == principal.tenant_id.as_str() || t == principal.tenant_name => principal.tenant_id.clone(),
        Some(t) => {
            if !principal.operator {
                return Err(
                    ApiError::new(StatusCode::FORBIDDEN, "only the operator may act in another tenant").into_response()
                );
            }
            let found = match app.store.tenant_by_name(t).await {
                Ok(Some(r)) => Some(r),
                Ok(None) => app.store.tenant(&TenantId::from_string(t)).await.ok().flatten(),
                Err(e) => return Err(ApiError::from(e).into_response()),
            };
            found.ok_or_else(|| ApiError::not_found("tenant").into_response())?.id
        }
    };
    Ok(Admin { principal, tenant, meta })
}

macro_rules! admin {
    ($app:expr, $headers:expr, $addr:expr, $q:expr) => {
        match admin(&$app, &$headers, $addr, $q.tenant.as_deref(), true).await {
            Ok(a) => a,
            Err(resp) => return Ok(resp),
        }
    };
}

async fn audit(app: &App, a: &Admin, action: &str, resource: String, metadata: Value) {
    let mut ev = AuditEvent::new(a.principal.kind.as_str(), action, AuditResult::Ok);
    ev.tenant_id = Some(a.tenant.clone());
    ev.actor_id = Some(a.principal.user_id.to_string());
    ev.resource = Some(resource);
    ev.source_addr = a.meta.source_addr.clone();
    ev.request_id = a.meta.request_id.clone();
    ev.metadata = metadata;
    app.audit.record(ev).await;
}

/// The OpenAPI 3.1 document of this API
///
/// Served without authentication: it describes the API, it holds no data.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "the OpenAPI document", body = Object))
)]
async fn openapi() -> Response {
    // Built once: the document is a pure function of the code.
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(crate::admin_openapi::document);
    Json(&*DOC).into_response()
}

/// Who the caller is
///
/// Any valid key may ask, whatever its role.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "meta",
    responses(
        (status = 200, description = "the authenticated caller", body = Whoami),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
    )
)]
async fn whoami(State(app): State<App>, ConnectInfo(addr): ConnectInfo<SocketAddr>, headers: HeaderMap) -> ApiResult {
    let a = match admin(&app, &headers, addr, None, false).await {
        Ok(a) => a,
        Err(resp) => return Ok(resp),
    };
    let p = &a.principal;
    Ok(Json(Whoami {
        tenant_id: p.tenant_id.clone(),
        tenant: p.tenant_name.clone(),
        user_id: p.user_id.clone(),
        kind: p.kind,
        role: p.role,
        operator: p.operator,
        credential_id: p.credential_id.clone(),
    })
    .into_response())
}

/// The authenticated caller, as `whoami` reports it.
#[derive(Serialize, ToSchema)]
struct Whoami {
    /// The caller's tenant.
    tenant_id: TenantId,
    /// The caller's tenant, by name.
    tenant: String,
    /// The user the credential belongs to.
    user_id: UserId,
    /// Human, agent, service or workflow.
    kind: PrincipalKind,
    /// Role inside the tenant.
    role: Role,
    /// True for the deployment operator, who may manage other tenants.
    operator: bool,
    /// The credential that authenticated the request (API key id or token id).
    credential_id: String,
}

// ---- tenants ----------------------------------------------------------------

/// List tenants
///
/// The operator sees every tenant; any other admin sees its own.
#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    tag = "tenants",
    responses(
        (status = 200, description = "the tenants", body = [TenantRecord]),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key", body = ApiErrorBody),
    )
)]
async fn list_tenants(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, TenantQuery::default());
    let all = app.store.list_tenants().await?;
    let visible: Vec<_> = all.into_iter().filter(|t| a.principal.operator || t.id == a.principal.tenant_id).collect();
    Ok(Json(visible).into_response())
}

/// A new tenant.
#[derive(Deserialize, ToSchema)]
struct CreateTenant {
    /// Unique name: lowercase letters, digits and single inner hyphens.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: String,
}

/// Create a tenant (operator only)
#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "the new tenant", body = TenantRecord, links(
            ("ShowTenant" = (operation_id = "show_tenant", parameters(("tenant" = "$response.body#/id")))),
            ("DeleteTenant" = (operation_id = "delete_tenant", parameters(("tenant" = "$response.body#/id")))),
        )),
        (status = 400, description = "invalid name, or a body that is not JSON", content(
            (ApiErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not the operator's key", body = ApiErrorBody),
        (status = 409, description = "the name is taken", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
    )
)]
async fn create_tenant(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<CreateTenant>,
) -> ApiResult {
    let a = admin!(app, headers, addr, TenantQuery::default());
    if !a.principal.operator {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only the operator may create tenants"));
    }
    let t = app.store.create_tenant(&body.name).await?;
    audit(&app, &a, "tenant.create", format!("tenant:{}", t.id), json!({ "name": t.name })).await;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

async fn find_tenant(app: &App, a: &Admin, key: &str) -> Result<TenantRecord, ApiError> {
    let t = match app.store.tenant_by_name(key).await? {
        Some(t) => Some(t),
        None => app.store.tenant(&TenantId::from_string(key)).await?,
    };
    t.filter(|t| a.principal.operator || t.id == a.principal.tenant_id).ok_or_else(|| ApiError::not_found("tenant"))
}

/// Show a tenant
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name or id.")),
    responses(
        (status = 200, description = "the tenant", body = TenantRecord),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key", body = ApiErrorBody),
        (status = 404, description = "no such tenant (or not visible to the caller)", body = ApiErrorBody),
    )
)]
async fn show_tenant(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, TenantQuery::default());
    Ok(Json(find_tenant(&app, &a, &key).await?).into_response())
}

/// Delete a tenant (operator only)
///
/// Removes the tenant with its users, keys and servers; its audit events
/// stay. The operator's own tenant cannot be deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name or id.")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "the operator's own tenant", body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
async fn delete_tenant(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, TenantQuery::default());
    if !a.principal.operator {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only the operator may delete tenants"));
    }
    let t = find_tenant(&app, &a, &key).await?;
    if t.id == a.principal.tenant_id {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the operator's own tenant cannot be deleted"));
    }
    app.pool.remove_tenant(&t.id).await;
    app.store.delete_tenant(&t.id).await?;
    app.vault.forget_tenant(&t.id);
    app.auth.invalidate_all();
    audit(&app, &a, "tenant.delete", format!("tenant:{}", t.id), json!({ "name": t.name })).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- users ------------------------------------------------------------------

/// List users
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    params(TenantQuery),
    responses(
        (status = 200, description = "the tenant's users", body = [UserRecord]),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
async fn list_users(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(app.store.list_users(&a.tenant).await?).into_response())
}

/// A new user.
#[derive(Deserialize, ToSchema)]
struct CreateUser {
    /// Unique within the tenant: lowercase letters, digits and single inner hyphens.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: String,
    /// Contact address, when any.
    email: Option<String>,
    /// Default `human`.
    #[serde(default)]
    #[schema(value_type = Option<PrincipalKind>)]
    kind: Option<String>,
    /// Default `member`; at most the caller's own role.
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
}

fn parse_role(s: Option<&str>) -> Result<Role, ApiError> {
    s.unwrap_or("member")
        .parse()
        .map_err(|e: moat_core::ParseEnumError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn parse_kind(s: Option<&str>, default: &str) -> Result<PrincipalKind, ApiError> {
    s.unwrap_or(default)
        .parse()
        .map_err(|e: moat_core::ParseEnumError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn check_grantable(a: &Admin, role: Role) -> Result<(), ApiError> {
    if role > a.principal.role {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cannot grant a role above your own"));
    }
    Ok(())
}

/// Create a user
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    params(TenantQuery),
    request_body = CreateUser,
    responses(
        (status = 201, description = "the new user", body = UserRecord),
        (status = 400, description = "invalid name, role or kind, a body that is not JSON, or a malformed query \
            string", content((ApiErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, a role above the caller's, or another tenant \
            without the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
        (status = 409, description = "the name is taken", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
    )
)]
async fn create_user(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<CreateUser>,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    let role = parse_role(body.role.as_deref())?;
    check_grantable(&a, role)?;
    let kind = parse_kind(body.kind.as_deref(), "human")?;
    let u = app.store.create_user(&a.tenant, NewUser { name: body.name, email: body.email, kind, role }).await?;
    audit(&app, &a, "user.create", format!("user:{}", u.id), json!({ "name": u.name, "role": role })).await;
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

// ---- keys -------------------------------------------------------------------

/// List API keys
///
/// Never their secrets, nor their hashes.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    params(TenantQuery),
    responses(
        (status = 200, description = "the tenant's API keys, revoked ones included", body = [ApiKeyRecord]),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
async fn list_keys(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(app.store.list_api_keys(&a.tenant).await?).into_response())
}

/// A new API key.
#[derive(Deserialize, ToSchema)]
struct CreateKey {
    /// Unique among the tenant's live keys: lowercase letters, digits and
    /// single inner hyphens.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: String,
    /// Default `member`; at most the caller's own role.
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// Default `agent`.
    #[schema(value_type = Option<PrincipalKind>)]
    kind: Option<String>,
    /// The user the key acts as (id or name); default: the caller's user
    /// in its own tenant, or a new user named after the key otherwise.
    user: Option<String>,
    /// Lifetime in seconds; absent, zero or negative: no expiry.
    expires_in: Option<i64>,
}

/// An API key with its secret, shown once: on creation and on rotation.
#[derive(Serialize, ToSchema)]
struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyRecord,
    /// The full key (`moat_…`), to use as a bearer token. Not retrievable
    /// later.
    key: String,
}

/// Create an API key
///
/// The response's `key` is the secret, shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    params(TenantQuery),
    request_body = CreateKey,
    responses(
        (status = 201, description = "the key record and its secret", body = CreatedKey, links(
            ("ShowKey" = (operation_id = "show_key",
                parameters(("key" = "$response.body#/id"), ("tenant" = "$response.body#/tenant_id")))),
            ("RotateKey" = (operation_id = "rotate_key",
                parameters(("key" = "$response.body#/id"), ("tenant" = "$response.body#/tenant_id")))),
            ("RevokeKey" = (operation_id = "revoke_key",
                parameters(("key" = "$response.body#/id"), ("tenant" = "$response.body#/tenant_id")))),
        )),
        (status = 400, description = "invalid name, role or kind, a body that is not JSON, or a malformed query \
            string", content((ApiErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, a role above the caller's, or another tenant \
            without the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such tenant or user", body = ApiErrorBody),
        (status = 409, description = "a live key has that name", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
    )
)]
async fn create_key(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<CreateKey>,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    let role = parse_role(body.role.as_deref())?;
    check_grantable(&a, role)?;
    let kind = parse_kind(body.kind.as_deref(), "agent")?;
    moat_core::validate_name(&body.name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("key name: {e}")))?;
    let user = match &body.user {
        Some(u) => app.store.find_user(&a.tenant, u).await?.ok_or_else(|| ApiError::not_found("user"))?.id,
        None if a.tenant == a.principal.tenant_id => a.principal.user_id.clone(),
        None => {
            let name = format!("key-{}", body.name);
            match app.store.find_user(&a.tenant, &name).await? {
                Some(u) => u.id,
                None => app.store.create_user(&a.tenant, NewUser { name, email: None, kind, role }).await?.id,
            }
        }
    };
    let generated = tokio::task::spawn_blocking(moat_auth::generate_key)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed"))?
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed"))?;
    // Saturating: a lifetime past the end of time is no expiry, not an
    // overflow (a panic in debug builds, a wrapped date in release).
    let expires_at = body.expires_in.filter(|s| *s > 0).map(|s| now_ms().saturating_add(s.saturating_mul(1000)));
    let record = app
        .store
        .insert_api_key(
            &a.tenant,
            NewApiKey {
                user_id: user,
                name: body.name,
                public_id: generated.public_id.clone(),
                secret_hash: generated.secret_hash.clone(),
                role,
                kind,
                operator: false,
                expires_at,
            },
        )
        .await?;
    audit(
        &app,
        &a,
        "key.create",
        format!("api_key:{}", record.id),
        json!({ "name": record.name, "role": role, "kind": kind }),
    )
    .await;
    let out = CreatedKey { record, key: generated.token.expose_secret().to_owned() };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn find_key(app: &App, a: &Admin, key: &str) -> Result<ApiKeyRecord, ApiError> {
    app.store.find_api_key(&a.tenant, key).await?.ok_or_else(|| ApiError::not_found("API key"))
}

/// Show an API key
#[utoipa::path(
    get,
    path = "/api/v1/keys/{key}",
    tag = "keys",
    params(("key" = String, Path, description = "Key id, or name within the tenant."), TenantQuery),
    responses(
        (status = 200, description = "the key (never its secret)", body = ApiKeyRecord),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such key or tenant", body = ApiErrorBody),
    )
)]
async fn show_key(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(find_key(&app, &a, &key).await?).into_response())
}

/// Revoke an API key
///
/// Effective on the next request; sessions opened with the key end. The key
/// stays listed, with `revoked: true`, and cannot be rotated.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{key}",
    tag = "keys",
    params(("key" = String, Path, description = "Key id, or name within the tenant."), TenantQuery),
    responses(
        (status = 204, description = "revoked (the record remains, with `revoked: true`)"),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such live key, or no such tenant", body = ApiErrorBody),
    )
)]
async fn revoke_key(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    let k = find_key(&app, &a, &key).await?;
    if !app.store.revoke_api_key(&a.tenant, &k.id).await? {
        return Err(ApiError::not_found("API key"));
    }
    app.auth.invalidate_key(k.id.as_str());
    app.sessions.remove_for_credential(k.id.as_str());
    audit(&app, &a, "key.revoke", format!("api_key:{}", k.id), json!({ "name": k.name })).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Regenerate an API key's secret
///
/// The old secret stops working at once; the response's `key` is the new
/// one, shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{key}/rotate",
    tag = "keys",
    params(("key" = String, Path, description = "Key id, or name within the tenant."), TenantQuery),
    responses(
        (status = 200, description = "the key record and its new secret", body = CreatedKey),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such key or tenant", body = ApiErrorBody),
        (status = 409, description = "the key is revoked", body = ApiErrorBody),
    )
)]
async fn rotate_key(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    let k = find_key(&app, &a, &key).await?;
    let generated = tokio::task::spawn_blocking(moat_auth::generate_key)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed"))?
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed"))?;
    if !app.store.rotate_api_key_secret(&a.tenant, &k.id, &generated.public_id, &generated.secret_hash).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "a revoked key cannot be regenerated"));
    }
    app.auth.invalidate_key(k.id.as_str());
    app.sessions.remove_for_credential(k.id.as_str());
    audit(&app, &a, "key.rotate", format!("api_key:{}", k.id), json!({ "name": k.name })).await;
    let record = find_key(&app, &a, k.id.as_str()).await?;
    let out = CreatedKey { record, key: generated.token.expose_secret().to_owned() };
    Ok(Json(out).into_response())
}

// ---- servers ----------------------------------------------------------------

/// List upstream servers
#[utoipa::path(
    get,
    path = "/api/v1/servers",
    tag = "servers",
    params(TenantQuery),
    responses(
        (status = 200, description = "the tenant's upstream servers", body = [ServerRecord]),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
async fn list_servers(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(app.store.list_servers(&a.tenant).await?).into_response())
}

/// A new upstream server: `url` for an HTTP transport or `command` for
/// stdio, exactly one. Documented as [`CreateHttpServer`] or
/// [`CreateStdioServer`]: JSON Schema says "exactly one" with `oneOf`.
#[derive(Deserialize)]
struct CreateServer {
    name: String,
    transport: Option<String>,
    url: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl utoipa::PartialSchema for CreateServer {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::OneOfBuilder;
        OneOfBuilder::new()
            .item(Ref::from_schema_name(CreateHttpServer::name()))
            .item(Ref::from_schema_name(CreateStdioServer::name()))
            .description(Some("A new upstream server: `url` for an HTTP transport or `command` for stdio."))
            .into()
    }
}

impl ToSchema for CreateServer {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        use utoipa::PartialSchema as _;
        schemas.push((CreateHttpServer::name().into_owned(), CreateHttpServer::schema()));
        schemas.push((CreateStdioServer::name().into_owned(), CreateStdioServer::schema()));
        CreateHttpServer::schemas(schemas);
        CreateStdioServer::schemas(schemas);
    }
}

/// Registers an HTTP upstream: `streamable-http` (the default) or `sse`.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the body that `CreateServer` reads
struct CreateHttpServer {
    /// Unique within the tenant and the tool prefix: lowercase letters,
    /// digits and single inner hyphens.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: String,
    #[schema(schema_with = http_transport)]
    transport: Option<String>,
    /// The endpoint.
    #[schema(min_length = 1)]
    url: String,
    #[schema(schema_with = null_only)] // only for stdio
    command: Option<String>,
    #[schema(required = false, schema_with = http_headers)]
    headers: BTreeMap<String, String>,
    /// Only used by stdio servers; stored as given.
    #[schema(required = false)]
    env: BTreeMap<String, String>,
}

/// Registers a stdio upstream: a child process moat starts on first use.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the body that `CreateServer` reads
struct CreateStdioServer {
    /// Unique within the tenant and the tool prefix: lowercase letters,
    /// digits and single inner hyphens.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: String,
    #[schema(schema_with = stdio_transport)]
    transport: Option<String>,
    #[schema(schema_with = stdio_command)]
    command: Vec<String>,
    #[schema(schema_with = null_only)] // only for HTTP transports
    url: Option<String>,
    /// Environment given to the process (nothing else is inherited).
    #[schema(required = false)]
    env: BTreeMap<String, String>,
    #[schema(required = false, schema_with = http_headers)]
    headers: BTreeMap<String, String>,
}

fn nullable_enum(values: &[&str]) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let values = values.iter().map(|v| Value::from(*v)).chain([Value::Null]);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(values))
        .build()
}

fn http_transport() -> utoipa::openapi::schema::Object {
    nullable_enum(&[Transport::StreamableHttp.as_str(), Transport::Sse.as_str()])
}

fn stdio_transport() -> utoipa::openapi::schema::Object {
    nullable_enum(&[Transport::Stdio.as_str()])
}

/// Header names are RFC 9110 tokens; values have no control character but tab.
fn http_headers() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let value = ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[^\u0000-\u0008\u000a-\u001f\u007f]*$"));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")),
        ))
        .additional_properties(Some(AdditionalProperties::from(value)))
        .description(Some("Extra request headers (HTTP transports only)."))
        .build()
}

fn stdio_command() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String))
        .prefix_items([ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).build()])
        .min_items(Some(1))
        .description(Some("Program and arguments; the program is not empty."))
        .build()
}

/// Register an upstream server
#[utoipa::path(
    post,
    path = "/api/v1/servers",
    tag = "servers",
    params(TenantQuery),
    request_body = CreateServer,
    responses(
        (status = 201, description = "the new server", body = ServerRecord, links(
            ("ShowServer" = (operation_id = "show_server",
                parameters(("server" = "$response.body#/id"), ("tenant" = "$response.body#/tenant_id")))),
            ("DeleteServer" = (operation_id = "delete_server",
                parameters(("server" = "$response.body#/id"), ("tenant" = "$response.body#/tenant_id")))),
        )),
        (status = 400, description = "invalid name, transport, url or command, a body that is not JSON, or a \
            malformed query string", content((ApiErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
        (status = 409, description = "the name is taken", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
    )
)]
async fn create_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<CreateServer>,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    let transport = match (&body.transport, &body.url, &body.command) {
        (Some(t), _, _) => t.parse::<Transport>().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        (None, Some(_), None) => Transport::StreamableHttp,
        (None, None, Some(_)) => Transport::Stdio,
        _ => return Err(ApiError::new(StatusCode::BAD_REQUEST, "give exactly one of `url` or `command`")),
    };
    // `upstreams::spec_of` refuses these when installing the server: refuse
    // them here rather than store a server that can never start. The value
    // may be a credential and is not echoed.
    let bad_header = body.headers.iter().find(|(name, value)| {
        http::HeaderName::from_bytes(name.as_bytes()).is_err() || http::HeaderValue::from_str(value).is_err()
    });
    if let Some((name, _)) = bad_header {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("header `{name}`: not a valid HTTP header")));
    }
    let new = NewServer {
        name: body.name,
        transport,
        url: body.url,
        command: body.command,
        env: body.env,
        headers: body.headers,
        allow_anonymous: false,
        enabled: true,
    };
    let record = app.store.create_server(&a.tenant, new).await?;
    if let Err(e) = app.pool.install(record.clone()) {
        tracing::warn!(error = %e, "registered server cannot be started");
    }
    audit(
        &app,
        &a,
        "server.create",
        format!("server:{}", record.id),
        json!({ "name": record.name, "transport": record.transport }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

async fn find_server(app: &App, a: &Admin, key: &str) -> Result<ServerRecord, ApiError> {
    app.store.find_server(&a.tenant, key).await?.ok_or_else(|| ApiError::not_found("server"))
}

/// Show an upstream server
#[utoipa::path(
    get,
    path = "/api/v1/servers/{server}",
    tag = "servers",
    params(("server" = String, Path, description = "Server id, or name within the tenant."), TenantQuery),
    responses(
        (status = 200, description = "the server", body = ServerRecord),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such server or tenant", body = ApiErrorBody),
    )
)]
async fn show_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(find_server(&app, &a, &key).await?).into_response())
}

/// Remove an upstream server
#[utoipa::path(
    delete,
    path = "/api/v1/servers/{server}",
    tag = "servers",
    params(("server" = String, Path, description = "Server id, or name within the tenant."), TenantQuery),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such server or tenant", body = ApiErrorBody),
    )
)]
async fn delete_server(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    let s = find_server(&app, &a, &key).await?;
    app.store.delete_server(&a.tenant, &s.id).await?;
    app.pool.remove(&a.tenant, &s.name).await;
    audit(&app, &a, "server.delete", format!("server:{}", s.id), json!({ "name": s.name })).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- audit ------------------------------------------------------------------

/// The query parameters of the audit listing.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// The tenant whose events to list, by name or id. Default: the
    /// caller's own; any other needs the operator's key.
    tenant: Option<String>,
    /// `all` (operator only) lists every tenant's events; anything else
    /// lists one tenant's.
    scope: Option<String>,
    /// Only events at or after this time, unix milliseconds.
    since_ms: Option<i64>,
    /// Only actions starting with this prefix (e.g. `key.`).
    action: Option<String>,
    /// At most this many events (default 100; clamped to 1..=1000).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

/// List audit events
///
/// Newest first; metadata only, never bodies or credentials.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "the events, newest first", body = [AuditEvent]),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant (or `scope=all`) without the \
            operator's key", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
async fn list_audit(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(p): Query<AuditParams>,
    headers: HeaderMap,
) -> ApiResult {
    let a = match admin(&app, &headers, addr, p.tenant.as_deref(), true).await {
        Ok(a) => a,
        Err(resp) => return Ok(resp),
    };
    // Read your writes: whatever was recorded before this request is listed.
    app.audit.flush().await;
    let all = p.scope.as_deref() == Some("all");
    if all && !a.principal.operator {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only the operator may list every tenant's events"));
    }
    let query = AuditQuery {
        tenant: (!all).then(|| a.tenant.clone()),
        since_ms: p.since_ms,
        action_prefix: p.action,
        limit: p.limit,
        before: None,
    };
    Ok(Json(app.store.list_audit(&query).await?).into_response())
}
