//! The authorization server's HTTP surface: RFC 8414 metadata, the
//! authorization endpoint (+ the identity-provider callback, organisation
//! choice and consent), the token endpoint, RFC 7591 registration, RFC 7009
//! revocation and the per-tenant JWKS. The 2025-03-26 MCP revision's
//! default endpoints (`/authorize`, `/token`, `/register` at the root) are
//! served too, for clients of that era.
//!
//! Error discipline (OAuth 2.1 §4.1.2.1): until the client and its redirect
//! URI are verified, errors are shown to the user and never redirected;
//! after that they go back to the client with `error`, `state` and `iss`.

use super::clients::{self, ClientError};
use super::login::{self, LoginError};
use super::pages;
use super::uris::{canonical_resource, redirect_matches};
use super::{IssueRequest, IssuedToken};
use crate::authn::RequestMeta;
use crate::state::App;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moat_core::{PrincipalKind, Role, Scope, Scopes, TenantId, UserId, new_id, now_ms};
use moat_store::{
    AuditEvent, AuditResult, AuthorizationCode, ClientAuthRecord, ClientKind, ClientSource, GrantRecord,
    OAuthClientRecord, PendingAuthorization, Redeemed,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;

const SESSION_COOKIE: &str = "moat_session";
const REQUEST_COOKIE: &str = "moat_authz";

// ---------------------------------------------------------------- helpers

/// Parses form or query parameters, refusing repeated ones (RFC 6749 §3.1).
fn single_params(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(format!("the `{k}` parameter is repeated"));
        }
    }
    Ok(out)
}

fn oauth_json(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    oauth_json(status, json!({ "error": error, "error_description": description }))
}

fn too_many(retry: super::limits::RetryAfter) -> Response {
    let mut resp = oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", "too many requests; retry later");
    if let Ok(v) = HeaderValue::from_str(&retry.0.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

fn set_cookie(resp: &mut Response, name: &str, value: &str, path: &str, max_age: u64) {
    let c = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_cookie(resp: &mut Response, name: &str, path: &str) {
    set_cookie(resp, name, "", path, 0);
}

fn found(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    pages::harden(&mut resp);
    resp
}

async fn audit(
    app: &App,
    meta: &RequestMeta,
    action: &str,
    result: AuditResult,
    tenant: Option<&TenantId>,
    f: impl FnOnce(&mut AuditEvent),
) {
    let mut ev = AuditEvent::new("client", action, result);
    ev.tenant_id = tenant.cloned();
    ev.source_addr = meta.source_addr.clone();
    ev.request_id = meta.request_id.clone();
    f(&mut ev);
    app.audit.record(ev).await;
}

fn meta_of(headers: &HeaderMap, addr: SocketAddr) -> RequestMeta {
    crate::mcp::wire::request_meta(headers, Some(addr))
}

fn addr_key(addr: &SocketAddr) -> String {
    format!("addr:{}", addr.ip())
}

/// The per-address request budget of the authorization server, spent once
/// per request to any of its endpoints (a layer over their routes).
pub async fn request_limit(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
        && let Err(r) = app.identity.limits.request(&addr_key(addr))
    {
        return too_many(r);
    }
    next.run(req).await
}

// ---------------------------------------------------------------- metadata

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(State(app): State<App>) -> Response {
    let id = &app.identity;
    let iss = id.issuer();
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let mut doc = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": id.cfg.client_metadata_documents,
        "service_documentation": format!("{iss}/api/v1/openapi.json"),
    });
    if id.cfg.dynamic_registration
        && let Some(o) = doc.as_object_mut()
    {
        o.insert("registration_endpoint".into(), Value::String(format!("{iss}/oauth/register")));
    }
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    resp
}

/// `GET /t/<tenant>/.well-known/jwks.json`.
pub async fn jwks(State(app): State<App>, Path(tenant): Path<String>) -> Response {
    let found = match app.store.tenant_by_name(&tenant).await {
        Ok(Some(t)) => Some(t),
        Ok(None) => app.store.tenant(&TenantId::from_string(&tenant)).await.ok().flatten(),
        Err(_) => {
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "storage unavailable");
        }
    };
    let Some(t) = found else {
        return oauth_error(StatusCode::NOT_FOUND, "not_found", "no such tenant");
    };
    match app.identity.jwks(&t.id).await {
        Ok(doc) => {
            let mut resp = Json(doc).into_response();
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            resp
        }
        Err(_) => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "storage unavailable"),
    }
}

// ---------------------------------------------------------------- authorize

/// A verified client and redirect URI: from here on errors go back to the client.
struct Verified {
    client: OAuthClientRecord,
    redirect_uri: String,
    state: Option<String>,
}

impl Verified {
    fn error(&self, app: &App, error: &str, description: &str) -> Response {
        redirect_error(app, &self.redirect_uri, self.state.as_deref(), error, description)
    }
}

fn redirect_error(app: &App, redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return pages::error(StatusCode::BAD_REQUEST, description);
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error).append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", app.identity.issuer());
    }
    let mut resp = found(url.as_str());
    clear_cookie(&mut resp, REQUEST_COOKIE, "/oauth");
    resp
}

/// `GET /oauth/authorize` (and `/authorize`).
pub async fn authorize(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let meta = meta_of(&headers, addr);
    let params = match single_params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return pages::error(StatusCode::BAD_REQUEST, &e),
    };
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return pages::error(StatusCode::BAD_REQUEST, "the request names no client (client_id is missing)");
    };
    let client = match clients::resolve(&app.identity, client_id).await {
        Ok(Some(c)) if c.client.revoked_at.is_none() => c.client,
        Ok(_) => return pages::error(StatusCode::BAD_REQUEST, "unknown client: it is not registered here"),
        Err(ClientError::Store(_)) => return pages::error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable"),
        Err(e) => return pages::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let redirect_uri = match get("redirect_uri") {
        Some(r) if redirect_matches(&client.redirect_uris, r) => r.to_owned(),
        Some(_) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "the redirect URI does not match any the client registered; nothing was sent back to it",
            );
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return pages::error(StatusCode::BAD_REQUEST, "redirect_uri is required for this client"),
    };
    let v = Verified { redirect_uri, state: get("state").map(str::to_owned), client };
    if get("response_type") != Some("code") {
        return v.error(&app, "unsupported_response_type", "only response_type=code is supported");
    }
    if v.client.kind == ClientKind::Service {
        return v.error(&app, "unauthorized_client", "a service client uses the client-credentials grant");
    }
    let Some(challenge) = get("code_challenge") else {
        return v.error(
            &app,
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        );
    };
    match get("code_challenge_method") {
        Some("S256") => {}
        Some(_) => return v.error(&app, "invalid_request", "only the S256 code challenge method is supported"),
        None => return v.error(&app, "invalid_request", "code_challenge_method=S256 is required"),
    }
    if !moat_auth::valid_challenge(challenge) {
        return v.error(&app, "invalid_request", "the code challenge is not a base64url SHA-256 digest");
    }
    let (requested, unknown) = Scopes::parse_list(get("scope").unwrap_or(""));
    if let Some(u) = unknown.first() {
        return v.error(&app, "invalid_scope", &format!("unknown scope `{}`", u.chars().take(40).collect::<String>()));
    }
    let ceiling = clients::client_ceiling(&v.client);
    let scopes = if requested.is_empty() { ceiling } else { requested.intersect(ceiling) };
    if scopes.is_empty() {
        return v.error(&app, "invalid_scope", "none of the requested scopes may be granted to this client");
    }
    let resource = match get("resource") {
        Some(r) => match canonical_resource(app.identity.issuer(), r) {
            Ok(r) => r,
            Err(e) => return v.error(&app, "invalid_target", &e.to_string()),
        },
        None => app.identity.issuer().to_owned(),
    };
    let Ok(handle) = moat_auth::opaque_token("") else {
        return v.error(&app, "server_error", "no randomness");
    };
    let now = now_ms();
    let mut pending = PendingAuthorization {
        id_hash: moat_auth::token_digest(handle.expose_secret()),
        tenant_id: v.client.tenant_id.clone(),
        client_id: v.client.id.clone(),
        redirect_uri: v.redirect_uri.clone(),
        state: v.state.clone(),
        code_challenge: challenge.to_owned(),
        scope: scopes.to_string(),
        resource,
        user_id: None,
        idp_state_hash: None,
        idp_nonce: None,
        idp_verifier: None,
        created_at: now,
        expires_at: now + ms(app.identity.cfg.pending_ttl),
    };
    if app.store.insert_pending(&pending).await.is_err() {
        return v.error(&app, "temporarily_unavailable", "storage is unavailable");
    }
    audit(&app, &meta, "oauth.authorize", AuditResult::Ok, pending.tenant_id.as_ref(), |ev| {
        ev.resource = Some(format!("client:{}", v.client.id));
    })
    .await;
    let hint = get("tenant").map(str::to_owned);
    let mut resp = proceed(&app, &headers, &mut pending, handle.expose_secret(), hint.as_deref()).await;
    set_cookie(&mut resp, REQUEST_COOKIE, handle.expose_secret(), "/oauth", app.identity.cfg.pending_ttl.as_secs());
    resp
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Moves a pending authorization on: to consent when the browser has a
/// session, else to the tenant's identity provider (choosing the tenant
/// first when nothing names it).
async fn proceed(
    app: &App,
    headers: &HeaderMap,
    pending: &mut PendingAuthorization,
    handle: &str,
    tenant_hint: Option<&str>,
) -> Response {
    if let Some(session) = session_of(app, headers).await
        && pending.tenant_id.as_ref().is_none_or(|t| *t == session.tenant_id)
    {
        pending.tenant_id = Some(session.tenant_id.clone());
        pending.user_id = Some(session.user_id.clone());
        if app.store.update_pending(pending).await.is_err() {
            return redirect_error(
                app,
                &pending.redirect_uri,
                pending.state.as_deref(),
                "temporarily_unavailable",
                "storage is unavailable",
            );
        }
        return consent_or_code(app, pending, handle).await;
    }
    if pending.tenant_id.is_none() {
        match choose_tenant(app, tenant_hint).await {
            Ok(Some(t)) => pending.tenant_id = Some(t),
            Ok(None) => return pages::choose_tenant(handle),
            Err(resp) => return resp,
        }
    }
    start_login(app, pending).await
}

/// The tenant named by a hint, or the only tenant with an identity provider.
async fn choose_tenant(app: &App, hint: Option<&str>) -> Result<Option<TenantId>, Response> {
    let unavailable = || pages::error(StatusCode::SERVICE_UNAVAILABLE, "storage is unavailable");
    if let Some(h) = hint {
        return match app.store.tenant_by_name(h).await {
            Ok(Some(t)) => Ok(Some(t.id)),
            Ok(None) => Err(pages::error(StatusCode::BAD_REQUEST, "no such organisation")),
            Err(_) => Err(unavailable()),
        };
    }
    let all = app.store.all_tenant_auth().await.map_err(|_| unavailable())?;
    let with_idp: Vec<_> = all.into_iter().filter(|s| s.idp.is_some()).collect();
    Ok(match with_idp.as_slice() {
        [only] => Some(only.tenant_id.clone()),
        _ => None,
    })
}

async fn start_login(app: &App, pending: &mut PendingAuthorization) -> Response {
    let (redirect_uri, state) = (pending.redirect_uri.clone(), pending.state.clone());
    let back = |error: &str, desc: &str| redirect_error(app, &redirect_uri, state.as_deref(), error, desc);
    let Some(tenant) = pending.tenant_id.clone() else {
        return back("server_error", "no organisation chosen");
    };
    if app.store.update_pending(pending).await.is_err() {
        return back("temporarily_unavailable", "storage is unavailable");
    }
    let settings = match app.store.tenant_auth(&tenant).await {
        Ok(s) => s,
        Err(_) => return back("temporarily_unavailable", "storage is unavailable"),
    };
    let Some(idp) = settings.idp else {
        return back("access_denied", &LoginError::NoProvider.to_string());
    };
    match login::begin(&app.identity, &idp, pending).await {
        Ok(url) => found(&url),
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "could not start the identity-provider login");
            back("temporarily_unavailable", &e.to_string())
        }
    }
}

/// `POST /oauth/login`: the organisation chooser's answer.
pub async fn choose(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = single_params(&body) else {
        return pages::error(StatusCode::BAD_REQUEST, "malformed form");
    };
    let Some(mut pending) = bound_pending(&app, &headers, form.get("request").map(String::as_str)).await else {
        return pages::error(StatusCode::BAD_REQUEST, &LoginError::Stale.to_string());
    };
    match choose_tenant(&app, form.get("tenant").map(String::as_str).filter(|t| !t.is_empty())).await {
        Ok(Some(t)) => pending.tenant_id = Some(t),
        Ok(None) => return pages::error(StatusCode::BAD_REQUEST, "name an organisation"),
        Err(resp) => return resp,
    }
    start_login(&app, &mut pending).await
}

/// The pending authorization a form names, if the browser's request cookie
/// is the same one (a form cannot be replayed from another browser).
async fn bound_pending(app: &App, headers: &HeaderMap, handle: Option<&str>) -> Option<PendingAuthorization> {
    let handle = handle?;
    let cookie = cookie(headers, REQUEST_COOKIE)?;
    if !moat_auth::ct_eq(handle, &cookie) {
        return None;
    }
    app.store.pending(&moat_auth::token_digest(handle), now_ms()).await.ok().flatten()
}

/// `GET /oauth/callback`: the identity provider's answer.
pub async fn callback(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let meta = meta_of(&headers, addr);
    let Ok(params) = single_params(query.unwrap_or_default().as_bytes()) else {
        return pages::error(StatusCode::BAD_REQUEST, "malformed callback");
    };
    let stale = || pages::error(StatusCode::BAD_REQUEST, &LoginError::Stale.to_string());
    let Some(state) = params.get("state") else { return stale() };
    let Ok(Some(mut pending)) = app.store.pending_by_idp_state(&moat_auth::token_digest(state), now_ms()).await else {
        return stale();
    };
    // The browser that started the request must be the one that returns
    // (login CSRF: an attacker's callback URL in a victim's browser fails).
    let handle = match cookie(&headers, REQUEST_COOKIE) {
        Some(h) if moat_auth::ct_eq(&moat_auth::token_digest(&h), &pending.id_hash) => h,
        _ => return stale(),
    };
    let back = |p: &PendingAuthorization, error: &str, desc: &str| {
        redirect_error(&app, &p.redirect_uri, p.state.as_deref(), error, desc)
    };
    if let Some(err) = params.get("error") {
        let _ = app.store.take_pending(&pending.id_hash).await;
        let err: String = err.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
        return back(&pending, "access_denied", &format!("the identity provider ended the login ({err})"));
    }
    let Some(code) = params.get("code") else {
        return back(&pending, "access_denied", "the identity provider sent no code");
    };
    let Some(tenant) = pending.tenant_id.clone() else { return stale() };
    let settings = match app.store.tenant_auth(&tenant).await {
        Ok(s) => s,
        Err(_) => return back(&pending, "temporarily_unavailable", "storage is unavailable"),
    };
    let Some(idp) = settings.idp else {
        return back(&pending, "access_denied", &LoginError::NoProvider.to_string());
    };
    // One use of the provider's state.
    pending.idp_state_hash = None;
    let _ = app.store.update_pending(&pending).await;
    let claims = match login::complete(&app.identity, &app.vault, &idp, &tenant, &pending, code).await {
        Ok(c) => c,
        Err(e) => {
            audit(&app, &meta, "auth.login", AuditResult::Denied, Some(&tenant), |ev| {
                ev.metadata = json!({ "reason": e.to_string() });
            })
            .await;
            return back(&pending, "access_denied", &e.to_string());
        }
    };
    let (user, role) = match login::user_for(&app.identity, &tenant, &idp, &claims).await {
        Ok(u) => u,
        Err(e) => return back(&pending, "temporarily_unavailable", &e.to_string()),
    };
    audit(&app, &meta, "auth.login", AuditResult::Ok, Some(&tenant), |ev| {
        ev.actor_kind = "human".into();
        ev.actor_id = Some(user.to_string());
        ev.metadata = json!({ "role": role.as_str(), "method": "oidc" });
    })
    .await;
    // A fresh session at every login (no fixation); the old one ends.
    if let Some(old) = cookie(&headers, SESSION_COOKIE)
        && let Some((_, raw)) = verified_session_cookie(&app, &old).await
    {
        let _ = app.store.revoke_browser_session(&moat_auth::token_digest(&raw)).await;
    }
    let Ok(session) = moat_auth::opaque_token("") else {
        return back(&pending, "server_error", "no randomness");
    };
    let ttl = app.identity.cfg.session_ttl;
    let digest = moat_auth::token_digest(session.expose_secret());
    if app.store.insert_browser_session(&tenant, &digest, &user, now_ms() + ms(ttl)).await.is_err() {
        return back(&pending, "temporarily_unavailable", "storage is unavailable");
    }
    pending.user_id = Some(user);
    if app.store.update_pending(&pending).await.is_err() {
        return back(&pending, "temporarily_unavailable", "storage is unavailable");
    }
    let Some(value) = session_cookie(&app, &tenant, session.expose_secret()).await else {
        return back(&pending, "temporarily_unavailable", "the key provider is unavailable");
    };
    let mut resp = consent_or_code(&app, &pending, &handle).await;
    set_cookie(&mut resp, SESSION_COOKIE, &value, "/", ttl.as_secs());
    resp
}

/// The session cookie's value: `<tenant id>.<random>.<tag>`, the tag an
/// HMAC under a key derived from the tenant's data key, so a forged or
/// altered cookie is refused before any lookup; the server keeps only the
/// digest of the random part, and revokes it there.
async fn session_cookie(app: &App, tenant: &TenantId, raw: &str) -> Option<String> {
    let tag = app.vault.mac(tenant, SESSION_COOKIE, format!("{tenant}.{raw}").as_bytes()).await.ok()?;
    Some(format!("{tenant}.{raw}.{tag}"))
}

/// The random part of a genuine session cookie, with its tenant.
async fn verified_session_cookie(app: &App, value: &str) -> Option<(TenantId, String)> {
    let mut parts = value.splitn(3, '.');
    let (tenant, raw, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if tenant.is_empty() || raw.len() < 40 || tenant.len() > 64 {
        return None;
    }
    let tenant = TenantId::from_string(tenant);
    app.vault
        .mac_ok(&tenant, SESSION_COOKIE, format!("{tenant}.{raw}").as_bytes(), tag)
        .await
        .then(|| (tenant, raw.to_owned()))
}

async fn session_of(app: &App, headers: &HeaderMap) -> Option<moat_store::BrowserSession> {
    let value = cookie(headers, SESSION_COOKIE)?;
    let (tenant, raw) = verified_session_cookie(app, &value).await?;
    let s = app.store.browser_session(&moat_auth::token_digest(&raw), now_ms()).await.ok().flatten()?;
    if s.tenant_id != tenant {
        return None;
    }
    // Sessions from before a tenant-wide revocation are dead too.
    let watermark = app.store.tenant_revoked_before(&s.tenant_id).await.ok()?;
    (s.created_at >= watermark).then_some(s)
}

/// Issues the code when the user already consented to this much, else
/// shows the consent page.
async fn consent_or_code(app: &App, pending: &PendingAuthorization, handle: &str) -> Response {
    let back =
        |error: &str, desc: &str| redirect_error(app, &pending.redirect_uri, pending.state.as_deref(), error, desc);
    let (Some(tenant), Some(user_id)) = (&pending.tenant_id, &pending.user_id) else {
        return back("server_error", "the login did not complete");
    };
    let client = match app.store.oauth_client_for_auth(&pending.client_id).await {
        Ok(Some(c)) if c.client.revoked_at.is_none() => c.client,
        _ => return back("unauthorized_client", "the client is no longer registered"),
    };
    let settings = match app.store.tenant_auth(tenant).await {
        Ok(s) => s,
        Err(_) => return back("temporarily_unavailable", "storage is unavailable"),
    };
    match client.source {
        ClientSource::Dynamic if !settings.allow_registration => {
            return back("access_denied", "this organisation does not accept dynamically registered clients");
        }
        ClientSource::Metadata if !settings.allow_metadata_clients => {
            return back(
                "access_denied",
                "this organisation does not accept clients identified by a metadata document",
            );
        }
        _ => {}
    }
    let Ok(Some(user)) = app.store.user(tenant, user_id).await else {
        return back("access_denied", "the user no longer exists");
    };
    let (mut scopes, _) = Scopes::parse_list(&pending.scope);
    if user.role < Role::Admin || user.kind != PrincipalKind::Human {
        scopes = scopes.without_admin();
    }
    if scopes.is_empty() {
        return back("invalid_scope", "the requested scopes need an admin role");
    }
    let consented = match app.store.consent(tenant, user_id, &client.id).await {
        Ok(Some(c)) => {
            Scopes::parse_list(&c.scope).0.is_subset(Scopes::all())
                && scopes.is_subset(Scopes::parse_list(&c.scope).0)
                && c.resource == pending.resource
        }
        Ok(None) => false,
        Err(_) => return back("temporarily_unavailable", "storage is unavailable"),
    };
    if consented {
        return issue_code(app, pending, tenant, user_id, scopes).await;
    }
    let tenant_name = app.store.tenant(tenant).await.ok().flatten().map(|t| t.name).unwrap_or_default();
    let origin = match client.source {
        ClientSource::Admin => "registered by your organisation".to_owned(),
        ClientSource::Dynamic => "registered itself with this gateway".to_owned(),
        ClientSource::Metadata => format!("identified by {}", client.id),
    };
    let host = url::Url::parse(&pending.redirect_uri)
        .ok()
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
        .unwrap_or_default();
    pages::consent(&pages::ConsentView {
        request: handle,
        client_name: &client.name,
        client_origin: &origin,
        redirect_host: &host,
        scopes,
        resource: &pending.resource,
        user: &user.name,
        tenant: &tenant_name,
    })
}

/// `POST /oauth/consent`.
pub async fn consent(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let meta = meta_of(&headers, addr);
    let Ok(form) = single_params(&body) else {
        return pages::error(StatusCode::BAD_REQUEST, "malformed form");
    };
    let Some(pending) = bound_pending(&app, &headers, form.get("request").map(String::as_str)).await else {
        return pages::error(StatusCode::BAD_REQUEST, &LoginError::Stale.to_string());
    };
    // The session must still be the user who logged in for this request.
    let session = session_of(&app, &headers).await;
    let (Some(tenant), Some(user)) = (pending.tenant_id.clone(), pending.user_id.clone()) else {
        return pages::error(StatusCode::BAD_REQUEST, &LoginError::Stale.to_string());
    };
    if session.is_none_or(|s| s.user_id != user || s.tenant_id != tenant) {
        return pages::error(StatusCode::FORBIDDEN, "your session ended; start again from your application");
    }
    if form.get("decision").map(String::as_str) != Some("allow") {
        let _ = app.store.take_pending(&pending.id_hash).await;
        audit(&app, &meta, "oauth.consent", AuditResult::Denied, Some(&tenant), |ev| {
            ev.actor_kind = "human".into();
            ev.actor_id = Some(user.to_string());
            ev.resource = Some(format!("client:{}", pending.client_id));
        })
        .await;
        return redirect_error(
            &app,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "access_denied",
            "the user denied access",
        );
    }
    let user_rec = app.store.user(&tenant, &user).await.ok().flatten();
    let (mut scopes, _) = Scopes::parse_list(&pending.scope);
    if user_rec.is_none_or(|u| u.role < Role::Admin || u.kind != PrincipalKind::Human) {
        scopes = scopes.without_admin();
    }
    if app
        .store
        .record_consent(&tenant, &user, &pending.client_id, &scopes.to_string(), &pending.resource)
        .await
        .is_err()
    {
        return redirect_error(
            &app,
            &pending.redirect_uri,
            pending.state.as_deref(),
            "temporarily_unavailable",
            "storage is unavailable",
        );
    }
    audit(&app, &meta, "oauth.consent", AuditResult::Ok, Some(&tenant), |ev| {
        ev.actor_kind = "human".into();
        ev.actor_id = Some(user.to_string());
        ev.resource = Some(format!("client:{}", pending.client_id));
        ev.metadata = json!({ "scope": scopes.to_string(), "resource": pending.resource });
    })
    .await;
    issue_code(&app, &pending, &tenant, &user, scopes).await
}

async fn issue_code(
    app: &App,
    pending: &PendingAuthorization,
    tenant: &TenantId,
    user: &UserId,
    scopes: Scopes,
) -> Response {
    let back =
        |error: &str, desc: &str| redirect_error(app, &pending.redirect_uri, pending.state.as_deref(), error, desc);
    // The request is consumed exactly once.
    match app.store.take_pending(&pending.id_hash).await {
        Ok(true) => {}
        Ok(false) => return pages::error(StatusCode::BAD_REQUEST, &LoginError::Stale.to_string()),
        Err(_) => return back("temporarily_unavailable", "storage is unavailable"),
    }
    let Ok(code) = moat_auth::opaque_token("moat_ac_") else {
        return back("server_error", "no randomness");
    };
    let now = now_ms();
    let record = AuthorizationCode {
        code_hash: moat_auth::token_digest(code.expose_secret()),
        tenant_id: tenant.clone(),
        client_id: pending.client_id.clone(),
        user_id: user.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        scope: scopes.to_string(),
        resource: pending.resource.clone(),
        created_at: now,
        expires_at: now + ms(app.identity.cfg.code_ttl),
    };
    if app.store.insert_code(&record).await.is_err() {
        return back("temporarily_unavailable", "storage is unavailable");
    }
    let Ok(mut url) = url::Url::parse(&pending.redirect_uri) else {
        return pages::error(StatusCode::BAD_REQUEST, "bad redirect URI");
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", code.expose_secret());
        if let Some(s) = &pending.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", app.identity.issuer());
    }
    let mut resp = found(url.as_str());
    clear_cookie(&mut resp, REQUEST_COOKIE, "/oauth");
    resp
}

// ---------------------------------------------------------------- token

/// The client authenticated at the token or revocation endpoint.
struct ClientAuth {
    client: OAuthClientRecord,
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, SecretString)>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ())?;
    let Some((scheme, b64)) = v.split_once(' ') else { return Err(()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| ())?;
    let text = zeroize::Zeroizing::new(String::from_utf8(raw).map_err(|_| ())?);
    let (id, secret) = text.split_once(':').ok_or(())?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    let id = decode(id).ok_or(())?;
    let secret = decode(secret).ok_or(())?;
    Ok(Some((id, SecretString::from(secret))))
}

fn invalid_client(used_basic: bool, description: &str) -> Response {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if used_basic {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"moat\""));
    }
    resp
}

/// Authenticates the client of a token or revocation request.
async fn client_auth(
    app: &App,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    addr: &SocketAddr,
) -> Result<ClientAuth, Response> {
    let basic = basic_credentials(headers).map_err(|()| invalid_client(true, "malformed Basic credentials"))?;
    let used_basic = basic.is_some();
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if form.contains_key("client_secret") {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "use one client authentication method",
                ));
            }
            if form.get("client_id").is_some_and(|c| *c != id) {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, Some(secret))
        }
        None => {
            let Some(id) = form.get("client_id").filter(|c| !c.is_empty()) else {
                return Err(invalid_client(false, "client authentication is required"));
            };
            (id.clone(), form.get("client_secret").map(|s| SecretString::from(s.clone())))
        }
    };
    let client_key = format!("client:{}", client_id.chars().take(200).collect::<String>());
    for key in [addr_key(addr), client_key.clone()] {
        app.identity.limits.check_blocked(&key).map_err(too_many)?;
    }
    let fail = |why: &'static str| {
        app.identity.limits.failure(&addr_key(addr));
        app.identity.limits.failure(&client_key);
        invalid_client(used_basic, why)
    };
    let record: ClientAuthRecord = match clients::resolve(&app.identity, &client_id).await {
        Ok(Some(c)) if c.client.revoked_at.is_none() => c,
        Ok(_) => return Err(fail("unknown client")),
        Err(ClientError::Store(_)) => {
            return Err(oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "storage unavailable"));
        }
        Err(_) => return Err(fail("the client's metadata document is unusable")),
    };
    match (&record.secret_hash, secret) {
        (Some(hash), Some(secret)) => {
            let hash = hash.clone();
            let ok = tokio::task::spawn_blocking(move || moat_auth::verify_token(secret.expose_secret(), &hash))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(fail("wrong client secret"));
            }
        }
        (Some(_), None) => return Err(fail("this client must authenticate with its secret")),
        (None, Some(_)) => return Err(fail("this public client has no secret")),
        (None, None) => {}
    }
    Ok(ClientAuth { client: record.client })
}

/// The common start of the token and revocation endpoints: the address's
/// request budget, the form (no repeated parameter), client authentication.
async fn client_request(
    app: &App,
    headers: &HeaderMap,
    addr: SocketAddr,
    body: &[u8],
) -> Result<(RequestMeta, HashMap<String, String>, ClientAuth), Response> {
    let form = single_params(body).map_err(|e| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e))?;
    let auth = client_auth(app, headers, &form, &addr).await?;
    Ok((meta_of(headers, addr), form, auth))
}

/// `POST /oauth/token` (and `/token`).
pub async fn token(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (meta, form, auth) = match client_request(&app, &headers, addr, &body).await {
        Ok(parts) => parts,
        Err(resp) => return resp,
    };
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let result = match get("grant_type") {
        Some("authorization_code") => code_grant(&app, &auth.client, &form).await,
        Some("refresh_token") => refresh_grant(&app, &auth.client, &form).await,
        Some("client_credentials") => client_credentials(&app, &auth.client, &form).await,
        Some(_) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: authorization_code, refresh_token, client_credentials",
        )),
        None => Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required")),
    };
    match result {
        Ok((resp, tenant, user, jti)) => {
            audit(&app, &meta, "oauth.token", AuditResult::Ok, Some(&tenant), |ev| {
                ev.actor_id = Some(user.to_string());
                ev.resource = Some(format!("client:{}", auth.client.id));
                ev.metadata = json!({ "grant_type": get("grant_type"), "jti": jti });
            })
            .await;
            resp
        }
        Err(resp) => {
            let status = resp.status().as_u16();
            audit(&app, &meta, "oauth.token", AuditResult::Denied, auth.client.tenant_id.as_ref(), |ev| {
                ev.resource = Some(format!("client:{}", auth.client.id));
                ev.metadata = json!({ "grant_type": get("grant_type"), "status": status });
            })
            .await;
            resp
        }
    }
}

type Granted = Result<(Response, TenantId, UserId, String), Response>;

/// The scopes a token request asks for: within `ceiling` (all of it when
/// the request names none), else `invalid_scope`.
fn narrowed(asked: Option<&str>, ceiling: Scopes) -> Result<Scopes, Response> {
    let Some(asked) = asked else { return Ok(ceiling) };
    let (set, unknown) = Scopes::parse_list(asked);
    if !unknown.is_empty() || set.is_empty() || !set.is_subset(ceiling) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the requested scopes exceed what may be granted",
        ));
    }
    Ok(set)
}

/// A token request's `resource`, when sent, must be the one already bound.
fn same_resource(app: &App, asked: Option<&str>, bound: &str) -> Result<(), Response> {
    match asked.map(|r| canonical_resource(app.identity.issuer(), r)) {
        None => Ok(()),
        Some(Ok(r)) if r == bound => Ok(()),
        Some(_) => {
            Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "the resource differs from the authorized one"))
        }
    }
}

fn invalid_grant(why: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

fn unavailable() -> Response {
    oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "storage unavailable")
}

async fn code_grant(app: &App, client: &OAuthClientRecord, form: &HashMap<String, String>) -> Granted {
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let code =
        get("code").ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code is required"))?;
    let verifier = get("code_verifier")
        .ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code_verifier is required (PKCE)"))?;
    let redirect = get("redirect_uri");
    let redeemed = app.store.redeem_code(&moat_auth::token_digest(code), now_ms()).await.map_err(|_| unavailable())?;
    let code = match redeemed {
        Redeemed::Fresh(c) => c,
        Redeemed::Reused { tenant_id, grant_id } => {
            if let Some(g) = grant_id {
                let _ = app.store.revoke_grant(&tenant_id, &g, "authorization code reused").await;
                app.identity.revocation_changed();
            }
            return Err(invalid_grant(
                "the authorization code was already used; the tokens issued from it are revoked",
            ));
        }
        Redeemed::Invalid => return Err(invalid_grant("unknown or expired authorization code")),
    };
    if code.client_id != client.id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if redirect != Some(code.redirect_uri.as_str()) {
        return Err(invalid_grant("redirect_uri does not match the authorization request"));
    }
    if !moat_auth::pkce_s256_matches(verifier, &code.code_challenge) {
        return Err(invalid_grant("the code verifier does not match the code challenge"));
    }
    same_resource(app, get("resource"), &code.resource)?;
    let grant = GrantRecord {
        id: new_id(),
        tenant_id: code.tenant_id.clone(),
        client_id: client.id.clone(),
        user_id: code.user_id.clone(),
        scope: code.scope.clone(),
        resource: code.resource.clone(),
        allowed_origins: clients::allowed_origins(client),
        created_at: now_ms(),
        revoked_at: None,
        revoked_reason: None,
    };
    app.store.insert_grant(&grant).await.map_err(|_| unavailable())?;
    app.store.set_code_grant(&code.tenant_id, &code.code_hash, &grant.id).await.map_err(|_| unavailable())?;
    let tokens = tokens_for_grant(app, &grant, Scopes::parse_list(&grant.scope).0).await?;
    // A second redemption racing this one either saw the grant (and revoked
    // it) or marked the code reused before this check: fail closed.
    if app.store.code_reused(&code.tenant_id, &code.code_hash).await.map_err(|_| unavailable())? {
        let _ = app.store.revoke_grant(&code.tenant_id, &grant.id, "authorization code reused").await;
        app.identity.revocation_changed();
        return Err(invalid_grant("the authorization code was already used; the tokens issued from it are revoked"));
    }
    Ok(tokens)
}

async fn refresh_grant(app: &App, client: &OAuthClientRecord, form: &HashMap<String, String>) -> Granted {
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let presented = get("refresh_token")
        .ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required"))?;
    let grant = match app
        .store
        .redeem_refresh_token(&moat_auth::token_digest(presented), now_ms())
        .await
        .map_err(|_| unavailable())?
    {
        Redeemed::Fresh(g) => g,
        Redeemed::Reused { tenant_id, grant_id } => {
            if let Some(g) = grant_id {
                let _ = app.store.revoke_grant(&tenant_id, &g, "refresh token reused").await;
                app.identity.revocation_changed();
                tracing::warn!(tenant = %tenant_id, grant = %g, "refresh token reuse: the whole grant is revoked");
            }
            return Err(invalid_grant("the refresh token was already used; every token of this grant is revoked"));
        }
        Redeemed::Invalid => return Err(invalid_grant("unknown, expired or revoked refresh token")),
    };
    if grant.client_id != client.id {
        let _ = app.store.revoke_grant(&grant.tenant_id, &grant.id, "refresh token presented by another client").await;
        app.identity.revocation_changed();
        return Err(invalid_grant("the refresh token was issued to another client"));
    }
    let scopes = narrowed(get("scope"), Scopes::parse_list(&grant.scope).0)?;
    same_resource(app, get("resource"), &grant.resource)?;
    tokens_for_grant(app, &grant, scopes).await
}

/// An access token and a fresh refresh token for a grant.
async fn tokens_for_grant(app: &App, grant: &GrantRecord, scopes: Scopes) -> Granted {
    let user = app.store.user(&grant.tenant_id, &grant.user_id).await.map_err(|_| unavailable())?;
    let Some(user) = user else { return Err(invalid_grant("the user no longer exists")) };
    let tenant = app.store.tenant(&grant.tenant_id).await.map_err(|_| unavailable())?;
    let Some(tenant) = tenant else { return Err(invalid_grant("the tenant no longer exists")) };
    let scopes =
        if user.role >= Role::Admin && user.kind == PrincipalKind::Human { scopes } else { scopes.without_admin() };
    let req = IssueRequest {
        tenant_id: grant.tenant_id.clone(),
        tenant_name: tenant.name,
        user_id: user.id.clone(),
        kind: user.kind,
        role: user.role,
        client_id: grant.client_id.clone(),
        scopes,
        resource: grant.resource.clone(),
        allowed_origins: grant.allowed_origins.clone(),
        grant_id: Some(grant.id.clone()),
    };
    let issued = issue(app, &req).await?;
    let refresh = moat_auth::opaque_token("moat_rt_")
        .map_err(|_| oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no randomness"))?;
    let expires = now_ms() + ms(app.identity.cfg.refresh_token_ttl);
    app.store
        .insert_refresh_token(&grant.tenant_id, &moat_auth::token_digest(refresh.expose_secret()), &grant.id, expires)
        .await
        .map_err(|_| unavailable())?;
    let body = json!({
        "access_token": issued.token.expose_secret(),
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": scopes.to_string(),
        "refresh_token": refresh.expose_secret(),
    });
    Ok((oauth_json(StatusCode::OK, body), grant.tenant_id.clone(), user.id, issued.jti))
}

async fn issue(app: &App, req: &IssueRequest) -> Result<IssuedToken, Response> {
    app.identity.issue(&app.vault, req).await.map_err(|e| {
        tracing::error!(tenant = %req.tenant_id, error = %e, "could not sign an access token");
        oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the signing key is unavailable")
    })
}

async fn client_credentials(app: &App, client: &OAuthClientRecord, form: &HashMap<String, String>) -> Granted {
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if client.kind != ClientKind::Service {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "only service clients may use client credentials",
        ));
    }
    let (Some(tenant_id), Some(user_id)) = (&client.tenant_id, &client.user_id) else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", "this client has no machine identity"));
    };
    let scopes = narrowed(get("scope"), clients::client_ceiling(client))?;
    let resource = match get("resource") {
        Some(r) => canonical_resource(app.identity.issuer(), r)
            .map_err(|e| oauth_error(StatusCode::BAD_REQUEST, "invalid_target", &e.to_string()))?,
        None => app.identity.issuer().to_owned(),
    };
    let tenant =
        app.store.tenant(tenant_id).await.map_err(|_| unavailable())?.ok_or_else(|| invalid_grant("no tenant"))?;
    let req = IssueRequest {
        tenant_id: tenant_id.clone(),
        tenant_name: tenant.name,
        user_id: user_id.clone(),
        kind: PrincipalKind::Service,
        role: Role::Member,
        client_id: client.id.clone(),
        scopes: scopes.without_admin(),
        resource,
        allowed_origins: clients::allowed_origins(client),
        grant_id: None,
    };
    let issued = issue(app, &req).await?;
    let body = json!({
        "access_token": issued.token.expose_secret(),
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": req.scopes.to_string(),
    });
    Ok((oauth_json(StatusCode::OK, body), tenant_id.clone(), user_id.clone(), issued.jti))
}

// ---------------------------------------------------------------- revoke

/// `POST /oauth/revoke` (RFC 7009).
pub async fn revoke(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (meta, form, auth) = match client_request(&app, &headers, addr, &body).await {
        Ok(parts) => parts,
        Err(resp) => return resp,
    };
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    let ok = || oauth_json(StatusCode::OK, json!({}));
    // A refresh token: revoke its whole grant.
    if let Ok(Some((tenant, grant_id))) = app.store.refresh_token_grant(&moat_auth::token_digest(token)).await {
        let Ok(Some(grant)) = app.store.grant(&tenant, &grant_id).await else { return ok() };
        if grant.client_id != auth.client.id {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the token was issued to another client",
            );
        }
        let _ = app.store.revoke_grant(&tenant, &grant_id, "revoked by the client").await;
        app.identity.revocation_changed();
        audit(&app, &meta, "oauth.revoke", AuditResult::Ok, Some(&tenant), |ev| {
            ev.resource = Some(format!("grant:{grant_id}"));
        })
        .await;
        return ok();
    }
    // An access token (any audience, unexpired): revoke its jti until it
    // expires, and its grant.
    if let Some(claims) = app.identity.verify_signature(token).await {
        if claims.client_id != auth.client.id {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the token was issued to another client",
            );
        }
        let tenant = TenantId::from_string(claims.tid.clone());
        let _ = app.store.revoke_jti(&tenant, &claims.jti, claims.exp.saturating_mul(1000)).await;
        if let Some(sid) = &claims.sid {
            let _ = app.store.revoke_grant(&tenant, sid, "revoked by the client").await;
        }
        app.identity.revocation_changed();
        audit(&app, &meta, "oauth.revoke", AuditResult::Ok, Some(&tenant), |ev| {
            ev.resource = Some(format!("token:{}", claims.jti));
        })
        .await;
    }
    ok()
}

// ---------------------------------------------------------------- register

/// `POST /oauth/register` (RFC 7591; and `/register`).
pub async fn register(
    State(app): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let meta = meta_of(&headers, addr);
    if !app.identity.cfg.dynamic_registration || !registration_open(&app).await {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic client registration is disabled on this gateway",
        );
    }
    if let Err(r) = app.identity.limits.registration(&addr_key(&addr)) {
        return too_many(r);
    }
    if body.len() > 16 * 1024 {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "the registration request is too large",
        );
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", "the body must be JSON");
    };
    let reg = match clients::parse_registration(&doc) {
        Ok(r) => r,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    };
    let hash = match &reg.secret {
        Some(s) => {
            let s = s.expose_secret().to_owned();
            match tokio::task::spawn_blocking(move || moat_auth::hash_token(&s)).await {
                Ok(Ok(h)) => Some(h),
                _ => {
                    return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "could not hash the secret");
                }
            }
        }
        None => None,
    };
    if app.store.insert_oauth_client(&reg.client, hash.as_deref()).await.is_err() {
        return unavailable();
    }
    audit(&app, &meta, "oauth.register", AuditResult::Ok, None, |ev| {
        ev.resource = Some(format!("client:{}", reg.client.id));
        ev.metadata = json!({ "name": reg.client.name, "kind": reg.client.kind.as_str() });
    })
    .await;
    oauth_json(StatusCode::CREATED, clients::registration_response(&reg.client, reg.secret.as_ref()))
}

/// True when some tenant would let its users authorize a dynamically
/// registered client.
async fn registration_open(app: &App) -> bool {
    let (Ok(tenants), Ok(settings)) = (app.store.list_tenants().await, app.store.all_tenant_auth().await) else {
        return false;
    };
    let closed = settings.iter().filter(|s| !s.allow_registration).count();
    tenants.len() > closed
}

/// `POST /oauth/logout`: ends the browser session.
pub async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(value) = cookie(&headers, SESSION_COOKIE)
        && let Some((_, raw)) = verified_session_cookie(&app, &value).await
    {
        let _ = app.store.revoke_browser_session(&moat_auth::token_digest(&raw)).await;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    clear_cookie(&mut resp, SESSION_COOKIE, "/");
    resp
}
