//! Admin API of identity: OAuth clients (service clients for the
//! client-credentials grant, public clients for code + PKCE), the tenant's
//! identity settings (its OpenID Connect provider, whether its users may
//! authorize dynamically registered or metadata-document clients), its
//! signing keys, and the tenant-wide revocation of every token and session.
//!
//! Every route needs an admin or owner of the tenant. A client secret and
//! the provider's client secret are accepted and (for client secrets) shown
//! once, never returned again.

use super::{ApiError, ApiErrorBody, ApiResult, TenantQuery, admin, audit};
use crate::admin_openapi::RpcError;
use crate::identity::clients::{self, AdminClientSpec};
use crate::state::App;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use moat_core::{PrincipalKind, Role};
use moat_store::{
    ClientKind, IdpSettings, NewUser, OAuthClientRecord, SecretPurpose, SigningKeyRecord, TenantAuthSettings,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use utoipa::ToSchema;

macro_rules! admin_only {
    ($app:expr, $headers:expr, $addr:expr, $tenant:expr) => {
        match admin(&$app, &$headers, $addr, $tenant, true).await {
            Ok(a) => a,
            Err(resp) => return Ok(resp),
        }
    };
}

// ---- clients ----------------------------------------------------------------------

/// A client to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewClientBody {
    /// Unique name in the tenant (lowercase letters, digits, hyphens).
    name: String,
    /// `service` (default): a machine identity for the client-credentials
    /// grant; `public`: an app using authorization code + PKCE.
    #[serde(default)]
    kind: Option<String>,
    /// Redirect URIs of a public client (exact match; loopback may vary the port).
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// Scopes it may hold (default: `mcp:tools mcp:resources mcp:prompts`).
    /// A service client may hold MCP scopes only.
    #[serde(default)]
    scopes: Vec<String>,
    /// Browser origins its tokens are bound to.
    #[serde(default)]
    allowed_origins: Vec<String>,
}

/// List clients
#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "identity",
    params(TenantQuery),
    responses(
        (status = 200, description = "the tenant's live clients", body = [OAuthClientRecord]),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_clients(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    Ok(Json(app.store.list_oauth_clients(&a.tenant).await?).into_response())
}

/// Create a client
///
/// A service client's secret is in the answer, once; only its Argon2id hash is kept.
#[utoipa::path(
    post,
    path = "/api/v1/clients",
    tag = "identity",
    params(TenantQuery),
    request_body = NewClientBody,
    responses(
        (status = 201, description = "the client, and a service client's secret (shown once)", body = Object),
        (status = 400, description = "invalid name, kind, redirect URI, scope or origin", body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
        (status = 409, description = "a client or user with that name exists", body = ApiErrorBody),
    )
)]
pub(crate) async fn create_client(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<NewClientBody>,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    moat_core::validate_name(&body.name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("client name {e}")))?;
    let kind = match body.kind.as_deref().unwrap_or("service") {
        "service" => ClientKind::Service,
        "public" => ClientKind::Public,
        other => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("kind `{other}`: expected service or public")));
        }
    };
    if app.store.find_oauth_client(&a.tenant, &body.name).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("a client named `{}` already exists", body.name)));
    }
    let spec = AdminClientSpec {
        tenant: a.tenant.clone(),
        name: body.name.clone(),
        kind,
        redirect_uris: body.redirect_uris,
        scopes: body.scopes,
        allowed_origins: body.allowed_origins,
        user_id: None,
    };
    // Validate everything before creating the machine user.
    let (mut client, secret) =
        clients::admin_client(spec).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    if kind == ClientKind::Service {
        let user = app
            .store
            .create_user(
                &a.tenant,
                NewUser {
                    name: format!("client-{}", body.name),
                    email: None,
                    kind: PrincipalKind::Service,
                    role: Role::Member,
                },
            )
            .await?;
        client.user_id = Some(user.id);
    }
    let hash = match &secret {
        Some(s) => Some(hash(s.expose_secret().to_owned()).await?),
        None => None,
    };
    if let Err(e) = app.store.insert_oauth_client(&client, hash.as_deref()).await {
        if let Some(u) = &client.user_id {
            let _ = app.store.delete_user(&a.tenant, u).await;
        }
        return Err(e.into());
    }
    audit(
        &app,
        &a,
        "client.create",
        format!("client:{}", client.id),
        json!({ "name": client.name, "kind": kind.as_str() }),
    )
    .await;
    let mut out = json!({ "client": client, "client_id": client.id });
    if let (Some(s), Some(o)) = (&secret, out.as_object_mut()) {
        o.insert("client_secret".into(), Value::String(s.expose_secret().to_owned()));
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn hash(secret: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || moat_auth::hash_token(&secret))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "could not hash the secret"))
}

async fn find_client(app: &App, tenant: &moat_core::TenantId, id: &str) -> Result<OAuthClientRecord, ApiError> {
    app.store.find_oauth_client(tenant, id).await?.ok_or_else(|| ApiError::not_found("client"))
}

/// Show a client
#[utoipa::path(
    get,
    path = "/api/v1/clients/{client}",
    tag = "identity",
    params(("client" = String, Path, description = "the client's id or name"), TenantQuery),
    responses(
        (status = 200, description = "the client (never its secret)", body = OAuthClientRecord),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such client in this tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn show_client(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    Ok(Json(find_client(&app, &a.tenant, &id).await?).into_response())
}

/// Revoke a client
///
/// Its grants end with it: refresh tokens stop working and its access
/// tokens are refused from the next request.
#[utoipa::path(
    delete,
    path = "/api/v1/clients/{client}",
    tag = "identity",
    params(("client" = String, Path, description = "the client's id or name"), TenantQuery),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such client in this tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn delete_client(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let client = find_client(&app, &a.tenant, &id).await?;
    app.store.revoke_oauth_client(&a.tenant, &client.id).await?;
    app.identity.revocation_changed();
    audit(&app, &a, "client.revoke", format!("client:{}", client.id), json!({ "name": client.name })).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Regenerate a service client's secret
///
/// The old secret stops working at once; the new one is in the answer, once.
#[utoipa::path(
    post,
    path = "/api/v1/clients/{client}/rotate",
    tag = "identity",
    params(("client" = String, Path, description = "the client's id or name"), TenantQuery),
    responses(
        (status = 200, description = "the new secret (shown once)", body = Object),
        (status = 400, description = "a public client has no secret", body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such client in this tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn rotate_client(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let client = find_client(&app, &a.tenant, &id).await?;
    if client.kind != ClientKind::Service {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "only a service client has a secret"));
    }
    let secret = moat_auth::opaque_token("moat_cs_")
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness"))?;
    let h = hash(secret.expose_secret().to_owned()).await?;
    app.store.set_oauth_client_secret(&a.tenant, &client.id, &h).await?;
    audit(&app, &a, "client.rotate", format!("client:{}", client.id), json!({ "name": client.name })).await;
    Ok(Json(json!({ "client_id": client.id, "client_secret": secret.expose_secret() })).into_response())
}

// ---- identity settings ------------------------------------------------------------

/// The identity provider to use for human login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdpBody {
    /// The provider's issuer URL.
    issuer: String,
    /// moat's client id at the provider.
    client_id: String,
    /// moat's client secret at the provider (stored sealed; never shown again).
    #[serde(default)]
    client_secret: Option<String>,
    /// Scopes to request (default `openid email profile`).
    #[serde(default)]
    scopes: Option<String>,
    /// The ID-token claim listing groups (default `groups`).
    #[serde(default)]
    groups_claim: Option<String>,
    /// Group → role (`admin` or `member`).
    #[serde(default)]
    role_map: BTreeMap<String, String>,
    /// Role when no group maps (default `member`).
    #[serde(default)]
    default_role: Option<String>,
}

/// A change to the tenant's identity settings (absent fields stay).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityBody {
    /// Users may authorize dynamically registered clients.
    #[serde(default)]
    allow_registration: Option<bool>,
    /// Users may authorize clients identified by a metadata-document URL.
    #[serde(default)]
    allow_metadata_clients: Option<bool>,
    /// The identity provider; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<IdpBody>)]
    idp: Option<Option<IdpBody>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Show the identity settings
#[utoipa::path(
    get,
    path = "/api/v1/identity",
    tag = "identity",
    params(TenantQuery),
    responses(
        (status = 200, description = "the settings (never a secret)", body = TenantAuthSettings),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn show_identity(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    Ok(Json(app.store.tenant_auth(&a.tenant).await?).into_response())
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    match s {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        other => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("role `{other}`: expected admin or member"))),
    }
}

/// Change the identity settings
#[utoipa::path(
    put,
    path = "/api/v1/identity",
    tag = "identity",
    params(TenantQuery),
    request_body = IdentityBody,
    responses(
        (status = 200, description = "the new settings", body = TenantAuthSettings),
        (status = 400, description = "an invalid issuer, role or field", body = ApiErrorBody),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn put_identity(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<IdentityBody>,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let mut settings: TenantAuthSettings = app.store.tenant_auth(&a.tenant).await?;
    if let Some(v) = body.allow_registration {
        settings.allow_registration = v;
    }
    if let Some(v) = body.allow_metadata_clients {
        settings.allow_metadata_clients = v;
    }
    let mut old_secret = None;
    match body.idp {
        None => {}
        Some(None) => {
            old_secret = settings.idp.take().and_then(|i| i.secret_id);
        }
        Some(Some(idp)) => {
            let issuer = url::Url::parse(&idp.issuer)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.query().is_none() && u.fragment().is_none())
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "the issuer must be an http(s) URL"))?;
            if issuer.scheme() == "http" && !app.identity.cfg.allow_private_urls {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "the issuer must be https"));
            }
            let mut role_map = BTreeMap::new();
            for (group, role) in &idp.role_map {
                role_map.insert(group.clone(), role_of(role)?);
            }
            let default_role = role_of(idp.default_role.as_deref().unwrap_or("member"))?;
            let previous = settings.idp.take();
            let secret_id = match idp.client_secret.filter(|s| !s.is_empty()) {
                Some(secret) => {
                    old_secret = previous.as_ref().and_then(|p| p.secret_id.clone());
                    let id = moat_core::new_id();
                    app.vault
                        .store_tenant_secret(&a.tenant, SecretPurpose::IdpClientSecret, &id, secret.as_bytes())
                        .await
                        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
                    Some(id)
                }
                None => previous.and_then(|p| p.secret_id),
            };
            let scopes = idp.scopes.unwrap_or_else(|| "openid email profile".into());
            if !scopes.split(' ').any(|s| s == "openid") {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "the scopes must include `openid`"));
            }
            settings.idp = Some(IdpSettings {
                issuer: idp.issuer.trim_end_matches('/').to_owned(),
                client_id: idp.client_id,
                has_secret: secret_id.is_some(),
                secret_id,
                scopes,
                groups_claim: idp.groups_claim.unwrap_or_else(|| "groups".into()),
                role_map,
                default_role,
            });
        }
    }
    app.store.set_tenant_auth(&settings).await?;
    if let Some(old) = old_secret {
        let _ = app.store.delete_tenant_secret(&a.tenant, &old).await;
    }
    audit(
        &app,
        &a,
        "identity.update",
        format!("tenant:{}", a.tenant),
        json!({
            "allow_registration": settings.allow_registration,
            "allow_metadata_clients": settings.allow_metadata_clients,
            "idp_issuer": settings.idp.as_ref().map(|i| i.issuer.clone()),
        }),
    )
    .await;
    Ok(Json(app.store.tenant_auth(&a.tenant).await?).into_response())
}

/// Revoke every token and session of the tenant
///
/// Every access token, refresh token and browser session issued so far
/// stops working on its next use. API keys are not affected.
#[utoipa::path(
    post,
    path = "/api/v1/identity/revoke",
    tag = "identity",
    params(TenantQuery),
    responses(
        (status = 200, description = "the revocation time (unix ms)", body = Object),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn revoke_all(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let at = app.identity.revoke_tenant(&a.tenant).await?;
    app.sessions.close_tenant(&a.tenant);
    audit(&app, &a, "identity.revoke_all", format!("tenant:{}", a.tenant), json!({ "revoked_before": at })).await;
    Ok(Json(json!({ "revoked_before": at })).into_response())
}

/// List the signing keys
#[utoipa::path(
    get,
    path = "/api/v1/identity/keys",
    tag = "identity",
    params(TenantQuery),
    responses(
        (status = 200, description = "public halves, newest first", body = Object),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_signing_keys(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let keys: Vec<SigningKeyRecord> = app.store.signing_keys(&a.tenant).await?;
    Ok(Json(keys).into_response())
}

/// Rotate the signing key
///
/// A new key signs from now on; the previous one stays in the JWKS, and its
/// tokens keep verifying, for the grace period (`oauth.key_grace_s`).
#[utoipa::path(
    post,
    path = "/api/v1/identity/keys/rotate",
    tag = "identity",
    params(TenantQuery),
    responses(
        (status = 200, description = "the new key's public half", body = Object),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
        (status = 503, description = "the key provider is unavailable", body = ApiErrorBody),
    )
)]
pub(crate) async fn rotate_signing_key(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q.tenant.as_deref());
    let key = app
        .identity
        .rotate_signing_key(&app.vault, &a.tenant)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    audit(&app, &a, "identity.rotate_key", format!("signing_key:{}", key.kid), json!({ "alg": key.alg })).await;
    Ok(Json(key).into_response())
}
