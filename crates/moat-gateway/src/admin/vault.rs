//! Admin API of the credential vault: upstream credentials (values go in,
//! never out), teams and their members, users by id or name, and the
//! rotation of a tenant's data key and of the key-encryption key.
//!
//! Who may do what: any user may store, list, show and delete its own
//! personal credentials; everything else needs an admin or owner key.

use super::{Admin, ApiError, ApiErrorBody, ApiResult, TenantQuery, admin, audit, find_server, find_tenant};
use crate::admin_openapi::RpcError;
use crate::credentials::{CredentialError, KekReport, NewValue, RotationReport, Subject};
use crate::state::App;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use moat_core::{CredentialId, CredentialKind, PrincipalKind, ScopeTier};
use moat_store::{CredentialFilter, CredentialRecord, TeamMember, TeamRecord, UserRecord};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

macro_rules! caller {
    ($app:expr, $headers:expr, $addr:expr, $q:expr) => {
        match admin(&$app, &$headers, $addr, $q.tenant.as_deref(), false).await {
            Ok(a) => a,
            Err(resp) => return Ok(resp),
        }
    };
}

macro_rules! admin_only {
    ($app:expr, $headers:expr, $addr:expr, $q:expr) => {
        match admin(&$app, &$headers, $addr, $q.tenant.as_deref(), true).await {
            Ok(a) => a,
            Err(resp) => return Ok(resp),
        }
    };
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            CredentialError::NotFound(what) => ApiError::not_found(what),
            CredentialError::Store(s) => s.into(),
            other @ (CredentialError::Provider { .. } | CredentialError::Integrity { .. }) => {
                tracing::error!(error = %other, "credential vault unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string())
            }
            other => ApiError::new(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

fn forbidden(msg: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, msg)
}

async fn find_user(app: &App, a: &Admin, key: &str) -> Result<UserRecord, ApiError> {
    app.store.find_user(&a.tenant, key).await?.ok_or_else(|| ApiError::not_found("user"))
}

async fn find_team(app: &App, a: &Admin, key: &str) -> Result<TeamRecord, ApiError> {
    app.store.find_team(&a.tenant, key).await?.ok_or_else(|| ApiError::not_found("team"))
}

// ---- credentials --------------------------------------------------------------

/// A credential value: a JSON string, never echoed in an error (serde's own
/// messages quote the offending value, so they are replaced).
fn secret_value<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(SecretString::from(s)),
        _ => Err(serde::de::Error::custom("`value` must be a string")),
    }
}

/// A credential to store. Setting the same server, scope and header or
/// variable again replaces the value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetCredentialBody {
    /// The upstream server, by id or name.
    server: String,
    /// Whose credential it is.
    scope: ScopeTier,
    /// `personal`: the user (default: the caller). Id or name.
    user: Option<String>,
    /// `team`: the team. Id or name.
    team: Option<String>,
    /// `service`: the machine identity (a user of kind `service`). Id or name.
    client: Option<String>,
    /// How it is presented: a named header, `Authorization: Bearer`, basic
    /// auth (`user:password`), or an environment variable (stdio servers).
    kind: CredentialKind,
    /// The header or variable name (not used by `bearer` and `basic`).
    name: Option<String>,
    /// The secret. Stored encrypted; never returned by any endpoint.
    #[serde(deserialize_with = "secret_value")]
    #[schema(value_type = String, write_only)]
    value: SecretString,
}

/// Store or replace a credential
///
/// The value is encrypted under the tenant's data key and bound to its row;
/// it is injected into upstream calls and never returned.
#[utoipa::path(
    post,
    path = "/api/v1/credentials",
    tag = "credentials",
    params(TenantQuery),
    request_body = SetCredentialBody,
    responses(
        (status = 200, description = "replaced: its metadata", body = CredentialRecord),
        (status = 201, description = "created: its metadata", body = CredentialRecord),
        (status = 400, description = "invalid scope, name, value or server transport",
            content((ApiErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "a member storing another user's or a shared credential", body = ApiErrorBody),
        (status = 404, description = "no such server, user, team or tenant", body = ApiErrorBody),
        (status = 415, description = "the body is not `application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "the body does not match the schema", body = String, content_type = "text/plain"),
        (status = 503, description = "the key provider cannot serve", body = ApiErrorBody),
    )
)]
pub(crate) async fn set_credential(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<SetCredentialBody>,
) -> ApiResult {
    let a = caller!(app, headers, addr, q);
    let server = find_server(&app, &a, &body.server).await?;
    let misplaced =
        |what: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("`{what}` does not apply to this scope"));
    let subject = match body.scope {
        ScopeTier::Personal => {
            if body.team.is_some() || body.client.is_some() {
                return Err(misplaced(if body.team.is_some() { "team" } else { "client" }));
            }
            let user = match &body.user {
                Some(u) => find_user(&app, &a, u).await?.id,
                None => a.principal.user_id.clone(),
            };
            Subject::User(user)
        }
        ScopeTier::Team => {
            if body.user.is_some() || body.client.is_some() {
                return Err(misplaced(if body.user.is_some() { "user" } else { "client" }));
            }
            let team = body
                .team
                .as_deref()
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "a team credential needs `team`"))?;
            Subject::Team(find_team(&app, &a, team).await?.id)
        }
        ScopeTier::Org => {
            if let Some(what) = [("user", &body.user), ("team", &body.team), ("client", &body.client)]
                .into_iter()
                .find_map(|(n, v)| v.is_some().then_some(n))
            {
                return Err(misplaced(what));
            }
            Subject::Org
        }
        ScopeTier::Service => {
            if body.user.is_some() || body.team.is_some() {
                return Err(misplaced(if body.user.is_some() { "user" } else { "team" }));
            }
            let client = body.client.as_deref().ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "a service credential needs `client` (a machine identity)")
            })?;
            let u = find_user(&app, &a, client).await?;
            if u.kind != PrincipalKind::Service {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("`{}` is not a service client (a user of kind `service`)", u.name),
                ));
            }
            Subject::User(u.id)
        }
    };
    let own_personal =
        matches!((&subject, body.scope), (Subject::User(u), ScopeTier::Personal) if *u == a.principal.user_id);
    if !own_personal && !a.principal.is_admin() {
        return Err(forbidden("members may store only their own personal credentials"));
    }
    let target = match body.kind {
        CredentialKind::Bearer | CredentialKind::Basic => {
            if body.name.as_deref().is_some_and(|n| !n.eq_ignore_ascii_case("authorization")) {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "bearer and basic credentials use `Authorization`"));
            }
            "Authorization".to_owned()
        }
        _ => body
            .name
            .clone()
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "`name` (the header or variable) is required"))?,
    };
    let actor = a.principal.user_id.to_string();
    let new = NewValue { tier: body.scope, subject, kind: body.kind, target: &target, value: &body.value };
    let (record, created) = app.vault.set(&a.tenant, &server, new, &actor).await?;
    app.pool.retire_credentials(&a.tenant, std::slice::from_ref(&record.id));
    let action = if created { "credential.store" } else { "credential.update" };
    audit(&app, &a, action, format!("credential:{}", record.id), describe(&record)).await;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(record)).into_response())
}

/// Audit metadata of a credential: never its value.
fn describe(r: &CredentialRecord) -> serde_json::Value {
    json!({
        "server": r.server_name,
        "tier": r.tier,
        "scope_id": r.scope_id,
        "kind": r.kind,
        "target": r.target,
        "key_version": r.key_version,
    })
}

/// Filters of the credential listing.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CredentialQuery {
    /// The tenant to act in, by name or id (operator only for another).
    tenant: Option<String>,
    /// Only this server's (id or name).
    server: Option<String>,
    /// Only this tier.
    scope: Option<ScopeTier>,
    /// Only this user's (id or name).
    user: Option<String>,
    /// Only this team's (id or name).
    team: Option<String>,
}

/// True when a member may see (or delete) a credential: its own personal
/// ones; for seeing, also those of its teams and the organisation.
async fn visible(app: &App, a: &Admin, r: &CredentialRecord, deleting: bool) -> Result<bool, ApiError> {
    if a.principal.is_admin() {
        return Ok(true);
    }
    let mine = r.user_id.as_ref() == Some(&a.principal.user_id) && r.tier == ScopeTier::Personal;
    if mine || deleting {
        return Ok(mine);
    }
    Ok(match r.tier {
        ScopeTier::Org => true,
        ScopeTier::Team => {
            let teams = app.store.teams_of_user(&a.tenant, &a.principal.user_id).await?;
            r.team_id.as_ref().is_some_and(|t| teams.contains(t))
        }
        _ => false,
    })
}

/// List credentials
///
/// Metadata only: who, scope, server, created, last used, key version.
/// Members see their own personal credentials and those shared with them.
#[utoipa::path(
    get,
    path = "/api/v1/credentials",
    tag = "credentials",
    params(CredentialQuery),
    responses(
        (status = 200, description = "credential metadata (never values)", body = [CredentialRecord]),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "another tenant without the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such server, user, team or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_credentials(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<CredentialQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = caller!(app, headers, addr, q);
    let mut filter = CredentialFilter { tier: q.scope, ..CredentialFilter::default() };
    if let Some(s) = &q.server {
        filter.server_id = Some(find_server(&app, &a, s).await?.id);
    }
    if let Some(u) = &q.user {
        filter.user_id = Some(find_user(&app, &a, u).await?.id);
    }
    if let Some(t) = &q.team {
        filter.team_id = Some(find_team(&app, &a, t).await?.id);
    }
    let mut out = Vec::new();
    for r in app.store.list_credentials(&a.tenant, &filter).await? {
        if visible(&app, &a, &r, false).await? {
            out.push(r);
        }
    }
    Ok(Json(out).into_response())
}

async fn find_credential(app: &App, a: &Admin, id: &str, deleting: bool) -> Result<CredentialRecord, ApiError> {
    let r = app
        .store
        .get_credential(&a.tenant, &CredentialId::from_string(id))
        .await?
        .ok_or_else(|| ApiError::not_found("credential"))?;
    if !visible(app, a, &r, deleting).await? {
        // Indistinguishable from a missing one: members learn nothing of others'.
        return Err(ApiError::not_found("credential"));
    }
    Ok(r)
}

/// Show a credential
#[utoipa::path(
    get,
    path = "/api/v1/credentials/{credential}",
    tag = "credentials",
    params(("credential" = String, Path, description = "Credential id."), TenantQuery),
    responses(
        (status = 200, description = "its metadata (never the value)", body = CredentialRecord),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "another tenant without the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such credential (or not visible to the caller) or tenant",
            body = ApiErrorBody),
    )
)]
pub(crate) async fn show_credential(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = caller!(app, headers, addr, q);
    Ok(Json(find_credential(&app, &a, &id, false).await?).into_response())
}

/// Delete a credential
///
/// Effective at once: cached copies are dropped and upstream processes or
/// sessions holding it are stopped.
#[utoipa::path(
    delete,
    path = "/api/v1/credentials/{credential}",
    tag = "credentials",
    params(("credential" = String, Path, description = "Credential id."), TenantQuery),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "another tenant without the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such credential (or not the caller's) or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn delete_credential(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = caller!(app, headers, addr, q);
    let r = find_credential(&app, &a, &id, true).await?;
    let gone = app.vault.delete(&a.tenant, &r.id).await?;
    app.pool.retire_credentials(&a.tenant, std::slice::from_ref(&gone.id));
    audit(&app, &a, "credential.delete", format!("credential:{}", gone.id), describe(&gone)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- key rotation -------------------------------------------------------------

/// Rotate a tenant's data key
///
/// Creates a new DEK version and re-encrypts every credential of the tenant
/// under it, then deletes the old version. Calls keep working throughout; a
/// rotation cut short is finished by the next call (or at the next start).
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/rotate-key",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id or name.")),
    responses(
        (status = 200, description = "rotated", body = RotationReport),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner of that tenant", body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
        (status = 503, description = "the key provider cannot serve", body = ApiErrorBody),
    )
)]
pub(crate) async fn rotate_tenant_key(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, TenantQuery { tenant: Some(key.clone()) });
    let t = find_tenant(&app, &a, &key).await?;
    // Detached: a client that disconnects does not cut the rotation short.
    let (worker, tenant) = (app.clone(), t.id.clone());
    let report = tokio::spawn(async move { worker.vault.rotate_tenant(&tenant, true).await })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the rotation task failed"))??;
    audit(&app, &a, "credential.rotate", format!("tenant:{}", t.id), json!(report)).await;
    Ok(Json(report).into_response())
}

/// Rotate the key-encryption key
///
/// Operator only. Every tenant's data keys are re-wrapped under the key
/// provider's new KEK (`local`: a new key file; `aws-kms`: the configured
/// key id; `vault-transit`: the transit key is rotated), then the old KEK is
/// retired. Resumable.
#[utoipa::path(
    post,
    path = "/api/v1/kek/rotate",
    tag = "tenants",
    responses(
        (status = 200, description = "rotated", body = KekReport),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not the operator's key", body = ApiErrorBody),
        (status = 503, description = "the key provider cannot serve", body = ApiErrorBody),
    )
)]
pub(crate) async fn rotate_kek(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, TenantQuery::default());
    if !a.principal.operator {
        return Err(forbidden("only the operator may rotate the key-encryption key"));
    }
    let worker = app.clone();
    let report: KekReport = tokio::spawn(async move { worker.vault.rotate_kek().await })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the rotation task failed"))??;
    audit(&app, &a, "kek.rotate", "kek".into(), json!(report)).await;
    Ok(Json(report).into_response())
}

/// The ids of the credentials matching `filter`: their upstream instances
/// are stopped after the change that affects them.
async fn held(app: &App, a: &Admin, filter: CredentialFilter) -> Result<Vec<CredentialId>, ApiError> {
    Ok(app.store.list_credentials(&a.tenant, &filter).await?.into_iter().map(|c| c.id).collect())
}

// ---- teams ----------------------------------------------------------------------

/// A new team.
#[derive(Deserialize, ToSchema)]
pub(crate) struct CreateTeam {
    /// Unique within the tenant: lowercase letters, digits and single inner hyphens.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: String,
}

/// A team and its members.
#[derive(Serialize, ToSchema)]
pub(crate) struct TeamDetail {
    #[serde(flatten)]
    team: TeamRecord,
    /// Its members.
    members: Vec<TeamMember>,
}

/// List teams
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "teams",
    params(TenantQuery),
    responses(
        (status = 200, description = "the tenant's teams", body = [TeamRecord]),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn list_teams(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    Ok(Json(app.store.list_teams(&a.tenant).await?).into_response())
}

/// Create a team
#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    params(TenantQuery),
    request_body = CreateTeam,
    responses(
        (status = 201, description = "the new team", body = TeamRecord),
        (status = 400, description = "an invalid name", content((ApiErrorBody = "application/json"), (String = "text/plain"))),
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
pub(crate) async fn create_team(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
    Json(body): Json<CreateTeam>,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    moat_core::validate_name(&body.name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let t = app.store.create_team(&a.tenant, &body.name).await?;
    audit(&app, &a, "team.create", format!("team:{}", t.id), json!({ "name": t.name })).await;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// Show a team and its members
#[utoipa::path(
    get,
    path = "/api/v1/teams/{team}",
    tag = "teams",
    params(("team" = String, Path, description = "Team id, or name within the tenant."), TenantQuery),
    responses(
        (status = 200, description = "the team", body = TeamDetail),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such team or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn show_team(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    let team = find_team(&app, &a, &key).await?;
    let members = app.store.team_members(&a.tenant, &team.id).await?;
    Ok(Json(TeamDetail { team, members }).into_response())
}

/// Delete a team
///
/// Its memberships and team credentials go with it.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}",
    tag = "teams",
    params(("team" = String, Path, description = "Team id, or name within the tenant."), TenantQuery),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such team or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn delete_team(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    let team = find_team(&app, &a, &key).await?;
    let held = held(&app, &a, CredentialFilter { team_id: Some(team.id.clone()), ..Default::default() }).await?;
    app.store.delete_team(&a.tenant, &team.id).await?;
    app.pool.retire_credentials(&a.tenant, &held);
    app.vault.invalidate_tenant(&a.tenant);
    audit(
        &app,
        &a,
        "team.delete",
        format!("team:{}", team.id),
        json!({ "name": team.name, "credentials": held.len() }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Add a member to a team
#[utoipa::path(
    put,
    path = "/api/v1/teams/{team}/members/{user}",
    tag = "teams",
    params(
        ("team" = String, Path, description = "Team id or name."),
        ("user" = String, Path, description = "User id or name."),
        TenantQuery
    ),
    responses(
        (status = 204, description = "the user is a member"),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such team, user or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn add_member(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((team, user)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    let team = find_team(&app, &a, &team).await?;
    let user = find_user(&app, &a, &user).await?;
    if app.store.add_team_member(&a.tenant, &team.id, &user.id).await? {
        app.vault.invalidate_tenant(&a.tenant);
        let meta = json!({ "team": team.name, "user": user.name });
        audit(&app, &a, "team.member.add", format!("team:{}", team.id), meta).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Remove a member from a team
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{team}/members/{user}",
    tag = "teams",
    params(
        ("team" = String, Path, description = "Team id or name."),
        ("user" = String, Path, description = "User id or name."),
        TenantQuery
    ),
    responses(
        (status = 204, description = "the user is not a member (any more)"),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such team, user or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn remove_member(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((team, user)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    let team = find_team(&app, &a, &team).await?;
    let user = find_user(&app, &a, &user).await?;
    if app.store.remove_team_member(&a.tenant, &team.id, &user.id).await? {
        app.vault.invalidate_tenant(&a.tenant);
        // The user's instances may hold the team's credentials: stop them.
        let held = held(&app, &a, CredentialFilter { team_id: Some(team.id.clone()), ..Default::default() }).await?;
        app.pool.retire_credentials(&a.tenant, &held);
        let meta = json!({ "team": team.name, "user": user.name });
        audit(&app, &a, "team.member.remove", format!("team:{}", team.id), meta).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- users by id or name --------------------------------------------------------

/// Show a user
#[utoipa::path(
    get,
    path = "/api/v1/users/{user}",
    tag = "users",
    params(("user" = String, Path, description = "User id, or name within the tenant."), TenantQuery),
    responses(
        (status = 200, description = "the user", body = UserRecord),
        (status = 400, description = "a malformed query string", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, or another tenant without the operator's key",
            body = ApiErrorBody),
        (status = 404, description = "no such user or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn show_user(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    Ok(Json(find_user(&app, &a, &key).await?).into_response())
}

/// Delete a user
///
/// Its API keys, team memberships and personal or service credentials go
/// with it, effective on the next request.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{user}",
    tag = "users",
    params(("user" = String, Path, description = "User id, or name within the tenant."), TenantQuery),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "the caller's own user, or a malformed query string",
            content((ApiErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "missing or invalid credentials", body = RpcError,
            headers(("WWW-Authenticate" = String, description = "a `Bearer` challenge with `resource_metadata`"))),
        (status = 403, description = "not an admin or owner key, a user above the caller's role, or another \
            tenant without the operator's key", body = ApiErrorBody),
        (status = 404, description = "no such user or tenant", body = ApiErrorBody),
    )
)]
pub(crate) async fn delete_user(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let a = admin_only!(app, headers, addr, q);
    let user = find_user(&app, &a, &key).await?;
    if user.id == a.principal.user_id {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "you cannot delete your own user"));
    }
    if user.role > a.principal.role {
        return Err(forbidden("cannot delete a user above your own role"));
    }
    let held = held(&app, &a, CredentialFilter { user_id: Some(user.id.clone()), ..Default::default() }).await?;
    app.store.delete_user(&a.tenant, &user.id).await?;
    app.auth.invalidate_all();
    app.sessions.end_user(&user.id);
    app.pool.retire_credentials(&a.tenant, &held);
    app.vault.invalidate_tenant(&a.tenant);
    audit(&app, &a, "user.delete", format!("user:{}", user.id), json!({ "name": user.name })).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
