//! The admin REST API at `/api/v1` (JSON), described by
//! `/api/v1/openapi.json`.
//!
//! Every route but `whoami` needs an admin or owner key. A caller acts in
//! its own tenant; the deployment operator may pick another with
//! `?tenant=<name|id>`. Objects are addressed by id or, within the tenant,
//! by unique name. Secrets (new API keys) appear once, in the creation or
//! rotation response, and nowhere else.

use crate::authn::RequestMeta;
use crate::mcp::wire;
use crate::state::App;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use moat_core::{Principal, PrincipalKind, Role, TenantId, now_ms};
use moat_store::{AuditEvent, AuditQuery, AuditResult, NewApiKey, NewServer, NewUser, StoreError, Transport};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The admin routes, to be nested under `/api/v1`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{tenant}", get(show_tenant).delete(delete_tenant))
        .route("/users", get(list_users).post(create_user))
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{key}", get(show_key).delete(revoke_key))
        .route("/keys/{key}/rotate", post(rotate_key))
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/{server}", get(show_server).delete(delete_server))
        .route("/audit", get(list_audit))
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            _ => "internal",
        };
        (self.0, Json(json!({ "error": { "code": code, "message": self.1 } }))).into_response()
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

/// Query parameters every route accepts.
#[derive(Deserialize, Default)]
pub struct TenantQuery {
    tenant: Option<String>,
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
    let principal = app.auth.authenticate(headers, &meta).await.map_err(|f| wire::auth_failure(app, "/api/v1", &f))?;
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

async fn openapi() -> Response {
    Json(crate::admin_openapi::document()).into_response()
}

async fn whoami(State(app): State<App>, ConnectInfo(addr): ConnectInfo<SocketAddr>, headers: HeaderMap) -> ApiResult {
    let a = match admin(&app, &headers, addr, None, false).await {
        Ok(a) => a,
        Err(resp) => return Ok(resp),
    };
    let p = &a.principal;
    Ok(Json(json!({
        "tenant_id": p.tenant_id, "tenant": p.tenant_name, "user_id": p.user_id, "kind": p.kind,
        "role": p.role, "operator": p.operator, "credential_id": p.credential_id,
    }))
    .into_response())
}

// ---- tenants ----------------------------------------------------------------

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

#[derive(Deserialize)]
struct CreateTenant {
    name: String,
}

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

async fn find_tenant(app: &App, a: &Admin, key: &str) -> Result<moat_store::TenantRecord, ApiError> {
    let t = match app.store.tenant_by_name(key).await? {
        Some(t) => Some(t),
        None => app.store.tenant(&TenantId::from_string(key)).await?,
    };
    t.filter(|t| a.principal.operator || t.id == a.principal.tenant_id).ok_or_else(|| ApiError::not_found("tenant"))
}

async fn show_tenant(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, TenantQuery::default());
    Ok(Json(find_tenant(&app, &a, &key).await?).into_response())
}

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
    app.auth.invalidate_all();
    audit(&app, &a, "tenant.delete", format!("tenant:{}", t.id), json!({ "name": t.name })).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- users ------------------------------------------------------------------

async fn list_users(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(app.store.list_users(&a.tenant).await?).into_response())
}

#[derive(Deserialize)]
struct CreateUser {
    name: String,
    email: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
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

async fn list_keys(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(app.store.list_api_keys(&a.tenant).await?).into_response())
}

#[derive(Deserialize)]
struct CreateKey {
    name: String,
    role: Option<String>,
    kind: Option<String>,
    /// The user the key acts as (id or name); default: the caller's user
    /// in its own tenant, or a new user named after the key otherwise.
    user: Option<String>,
    /// Lifetime in seconds.
    expires_in: Option<i64>,
}

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
    let expires_at = body.expires_in.filter(|s| *s > 0).map(|s| now_ms() + s * 1000);
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
    let mut out = serde_json::to_value(&record).unwrap_or_else(|_| json!({}));
    out["key"] = json!(generated.token.expose_secret());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn find_key(app: &App, a: &Admin, key: &str) -> Result<moat_store::ApiKeyRecord, ApiError> {
    app.store.find_api_key(&a.tenant, key).await?.ok_or_else(|| ApiError::not_found("API key"))
}

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
    let mut out = serde_json::to_value(&record).unwrap_or_else(|_| json!({}));
    out["key"] = json!(generated.token.expose_secret());
    Ok(Json(out).into_response())
}

// ---- servers ----------------------------------------------------------------

async fn list_servers(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin!(app, headers, addr, q);
    Ok(Json(app.store.list_servers(&a.tenant).await?).into_response())
}

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

async fn find_server(app: &App, a: &Admin, key: &str) -> Result<moat_store::ServerRecord, ApiError> {
    app.store.find_server(&a.tenant, key).await?.ok_or_else(|| ApiError::not_found("server"))
}

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

#[derive(Deserialize, Default)]
struct AuditParams {
    tenant: Option<String>,
    /// `all` (operator only) lists every tenant's events.
    scope: Option<String>,
    since_ms: Option<i64>,
    action: Option<String>,
    limit: Option<u32>,
}

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
