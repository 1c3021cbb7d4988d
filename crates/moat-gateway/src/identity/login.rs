//! Human login through the tenant's OpenID Connect provider: moat is the
//! relying party. Authorization code + PKCE (S256) towards the provider,
//! `state` and `nonce` kept server-side with the pending authorization, the
//! ID token verified (signature by the provider's JWKS, issuer, audience,
//! nonce, expiry), users matched by `sub` or provisioned, roles from the
//! groups claim. moat never sees a password.

use super::Identity;
use super::egress::{EgressError, fetch_limited};
use crate::credentials::Vault;
use moat_auth::IdTokenClaims;
use moat_core::{PrincipalKind, Role, TenantId, UserId, now_ms};
use moat_store::{IdpSettings, NewUser, PendingAuthorization};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const MAX_DOC_BYTES: usize = 256 * 1024;

/// Why a login failed (shown to the user in words, never with a secret).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The tenant has no identity provider.
    #[error("this organisation has no identity provider configured; an admin can set one with `moat idp set`")]
    NoProvider,
    /// The provider's metadata or keys could not be fetched.
    #[error("the identity provider could not be reached: {0}")]
    Provider(String),
    /// The provider refused the code or sent an invalid ID token.
    #[error("the identity provider's answer was refused: {0}")]
    Rejected(String),
    /// The login request is unknown, expired or from another browser.
    #[error("this login request is unknown or expired; start again from your application")]
    Stale,
    /// Storage or the vault failed.
    #[error("login is temporarily unavailable")]
    Unavailable,
}

/// The parts of a provider's discovery document moat uses.
#[derive(Clone, Debug)]
pub struct ProviderMeta {
    /// Its issuer (must equal the configured one).
    pub issuer: String,
    /// Where the browser goes.
    pub authorization_endpoint: String,
    /// Where moat redeems the code.
    pub token_endpoint: String,
    /// The provider's signing keys.
    pub jwks_uri: String,
}

/// Discovery documents and key sets, cached for five minutes per issuer.
pub struct Providers {
    meta: moka::sync::Cache<String, Arc<ProviderMeta>>,
    jwks: moka::sync::Cache<String, Arc<Value>>,
}

impl Default for Providers {
    fn default() -> Self {
        let ttl = Duration::from_secs(300);
        Self {
            meta: moka::sync::Cache::builder().max_capacity(1000).time_to_live(ttl).build(),
            jwks: moka::sync::Cache::builder().max_capacity(1000).time_to_live(ttl).build(),
        }
    }
}

fn parse_url(raw: &str) -> Result<url::Url, LoginError> {
    url::Url::parse(raw).map_err(|_| LoginError::Provider("a provider URL is malformed".into()))
}

fn egress(e: EgressError) -> LoginError {
    LoginError::Provider(e.to_string())
}

impl Providers {
    /// The provider's discovery document (OpenID Connect Discovery §4).
    pub async fn meta(&self, identity: &Identity, issuer: &str) -> Result<Arc<ProviderMeta>, LoginError> {
        if let Some(m) = self.meta.get(issuer) {
            return Ok(m);
        }
        let url = parse_url(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')))?;
        let doc = fetch_limited(&identity.egress, &url, MAX_DOC_BYTES).await.map_err(egress)?;
        let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        let meta = ProviderMeta {
            issuer: field("issuer").ok_or_else(|| LoginError::Provider("discovery has no issuer".into()))?,
            authorization_endpoint: field("authorization_endpoint")
                .ok_or_else(|| LoginError::Provider("discovery has no authorization_endpoint".into()))?,
            token_endpoint: field("token_endpoint")
                .ok_or_else(|| LoginError::Provider("discovery has no token_endpoint".into()))?,
            jwks_uri: field("jwks_uri").ok_or_else(|| LoginError::Provider("discovery has no jwks_uri".into()))?,
        };
        // OpenID Connect Discovery §4.3: the issuer must be the one configured.
        if meta.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(LoginError::Provider("the discovery document names another issuer".into()));
        }
        let meta = Arc::new(meta);
        self.meta.insert(issuer.to_owned(), meta.clone());
        Ok(meta)
    }

    async fn jwks(&self, identity: &Identity, meta: &ProviderMeta, fresh: bool) -> Result<Arc<Value>, LoginError> {
        if !fresh && let Some(j) = self.jwks.get(&meta.jwks_uri) {
            return Ok(j);
        }
        let doc = Arc::new(
            fetch_limited(&identity.egress, &parse_url(&meta.jwks_uri)?, MAX_DOC_BYTES).await.map_err(egress)?,
        );
        self.jwks.insert(meta.jwks_uri.clone(), doc.clone());
        Ok(doc)
    }
}

/// moat's redirect URI at every provider.
pub fn callback_url(identity: &Identity) -> String {
    format!("{}/oauth/callback", identity.issuer())
}

/// Starts the provider leg: fresh `state`, `nonce` and PKCE verifier kept
/// with the pending authorization; returns the URL to send the browser to.
pub async fn begin(
    identity: &Identity,
    idp: &IdpSettings,
    pending: &mut PendingAuthorization,
) -> Result<String, LoginError> {
    let meta = identity.providers.meta(identity, &idp.issuer).await?;
    let rand = || moat_auth::opaque_token("").map_err(|_| LoginError::Unavailable);
    let state = rand()?;
    let nonce = rand()?;
    let verifier = rand()?;
    pending.idp_state_hash = Some(moat_auth::token_digest(state.expose_secret()));
    pending.idp_nonce = Some(nonce.expose_secret().to_owned());
    pending.idp_verifier = Some(verifier.expose_secret().to_owned());
    if !identity.store().update_pending(pending).await.map_err(|_| LoginError::Unavailable)? {
        return Err(LoginError::Stale);
    }
    let mut url = parse_url(&meta.authorization_endpoint)?;
    identity.egress.check_url(&url).map_err(egress)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &idp.client_id)
        .append_pair("redirect_uri", &callback_url(identity))
        .append_pair("scope", &idp.scopes)
        .append_pair("state", state.expose_secret())
        .append_pair("nonce", nonce.expose_secret())
        .append_pair("code_challenge", &moat_auth::token_digest(verifier.expose_secret()))
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

/// Finishes the provider leg: redeems the provider's code and verifies the
/// ID token against the pending authorization's nonce.
pub async fn complete(
    identity: &Identity,
    vault: &Vault,
    idp: &IdpSettings,
    tenant: &TenantId,
    pending: &PendingAuthorization,
    code: &str,
) -> Result<IdTokenClaims, LoginError> {
    let (Some(nonce), Some(verifier)) = (&pending.idp_nonce, &pending.idp_verifier) else {
        return Err(LoginError::Stale);
    };
    let meta = identity.providers.meta(identity, &idp.issuer).await?;
    let token_url = parse_url(&meta.token_endpoint)?;
    identity.egress.check_url(&token_url).map_err(egress)?;
    let callback = callback_url(identity);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", idp.client_id.as_str()),
    ];
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut req = identity
        .egress
        .client()
        .post(token_url)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(http::header::ACCEPT, "application/json")
        .body(body);
    if let Some(secret_id) = &idp.secret_id {
        let secret = vault.open_tenant_secret(tenant, secret_id).await.map_err(|_| LoginError::Unavailable)?;
        let secret = String::from_utf8_lossy(&secret).into_owned();
        req = req.basic_auth(form_encode(&idp.client_id), Some(form_encode(&secret)));
    }
    let host = meta.token_endpoint.clone();
    let resp = req.send().await.map_err(|e| egress(super::egress::classify(&host, &e)))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|_| LoginError::Rejected("the token response is not JSON".into()))?;
    if !status.is_success() {
        let err = body.get("error").and_then(Value::as_str).unwrap_or("error");
        return Err(LoginError::Rejected(format!("the provider refused the code ({})", short(err))));
    }
    let id_token = body
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or_else(|| LoginError::Rejected("the provider sent no ID token".into()))?;
    let now = now_ms() / 1000;
    let verify = |jwks: &Value| moat_auth::verify_id_token(id_token, jwks, &idp.issuer, &idp.client_id, nonce, now, 60);
    let jwks = identity.providers.jwks(identity, &meta, false).await?;
    match verify(&jwks) {
        Ok(c) => Ok(c),
        Err(moat_auth::JwtError::UnknownKey | moat_auth::JwtError::BadSignature) => {
            // The provider may have rotated its keys since they were cached.
            let jwks = identity.providers.jwks(identity, &meta, true).await?;
            verify(&jwks).map_err(|e| LoginError::Rejected(format!("ID token: {e}")))
        }
        Err(e) => Err(LoginError::Rejected(format!("ID token: {e}"))),
    }
}

fn short(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect()
}

/// `application/x-www-form-urlencoded` encoding of a client credential
/// (RFC 6749 §2.3.1) before it goes into HTTP Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The role the provider's groups map to (the highest mapped one; never owner).
pub fn role_for(idp: &IdpSettings, claims: &IdTokenClaims) -> Role {
    claims
        .string_list(&idp.groups_claim)
        .iter()
        .filter_map(|g| idp.role_map.get(g))
        .copied()
        .max()
        .unwrap_or(idp.default_role)
        .min(Role::Admin)
}

/// The user a verified ID token stands for: linked by `sub`, or
/// provisioned on first login. Role and email follow the provider's word
/// at every login.
pub async fn user_for(
    identity: &Identity,
    tenant: &TenantId,
    idp: &IdpSettings,
    claims: &IdTokenClaims,
) -> Result<(UserId, Role), LoginError> {
    let store = identity.store();
    let role = role_for(idp, claims);
    let subject = format!("{}|{}", idp.issuer.trim_end_matches('/'), claims.sub);
    let unavailable = |_| LoginError::Unavailable;
    let email = claims.email.as_deref().filter(|_| claims.email_verified != Some(false));
    let user = match store.user_by_idp_subject(tenant, &subject).await.map_err(unavailable)? {
        Some(u) => u,
        None => {
            let base = claims
                .preferred_username
                .as_deref()
                .or(email)
                .unwrap_or(&claims.sub)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
                .take(48)
                .collect::<String>();
            let mut created = None;
            for attempt in 0..5 {
                let name = if attempt == 0 { base.clone() } else { format!("{base}-{}", &moat_core::new_id()[..8]) };
                let new = NewUser { name, email: email.map(str::to_owned), kind: PrincipalKind::Human, role };
                match store.create_user(tenant, new).await {
                    Ok(u) => {
                        created = Some(u.id);
                        break;
                    }
                    Err(moat_store::StoreError::Conflict(_) | moat_store::StoreError::Invalid(_)) => continue,
                    Err(_) => return Err(LoginError::Unavailable),
                }
            }
            created.ok_or(LoginError::Unavailable)?
        }
    };
    store.link_idp_user(tenant, &user, &subject, role, email).await.map_err(unavailable)?;
    Ok((user, role))
}
