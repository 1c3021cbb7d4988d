//! The identity service: tenant signing keys (created on first use,
//! rotated with a grace period), issuing access and refresh tokens,
//! verifying access tokens on every request, and revocation.
//!
//! Verification needs no secret: it reads the tenant's public keys (cached
//! for a minute, dropped at once on rotation by this replica). Revocation
//! state (tenant watermark, revoked `jti`, revoked grant) is read in one
//! query per token and cached for a second, and dropped at once on any
//! revocation made through this replica: "the next request" is immediate
//! here and within a second on the others.

use super::egress::Egress;
use super::limits::Limits;
use crate::config::{GatewayConfig, OAuthConfig};
use crate::credentials::{CredentialError, Vault};
use moat_auth::{AccessClaims, JwtError, SigningAlg, TokenSigner, VerifyKey};
use moat_core::{AuthMethod, Principal, PrincipalKind, Role, Scopes, TenantId, UserId, new_id, now_ms};
use moat_store::{SecretPurpose, SigningKeyRecord, Store, StoreError, TokenStatus};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// Clock skew tolerated on `exp`/`nbf`/`iat`, seconds.
pub const LEEWAY_S: i64 = 30;

/// Why a presented access token is refused (never says more to the client
/// than "invalid"; the reason goes to the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    /// Not one of ours, malformed, bad signature, expired, wrong issuer.
    Invalid(&'static str),
    /// Valid, but for another resource.
    Audience,
    /// Valid, but revoked (token, grant or tenant-wide).
    Revoked,
    /// Storage could not be asked.
    Unavailable,
}

/// Why the identity service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The outbound HTTP client could not be built.
    #[error("outbound HTTP client: {0}")]
    Egress(super::egress::EgressError),
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Random,
}

/// The public keys of a tenant that verify its tokens.
struct VerifySet {
    keys: Vec<VerifyKey>,
}

/// What an access token is issued for.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its name (a claim, for logs and audit).
    pub tenant_name: String,
    /// The user, or the service client's machine user.
    pub user_id: UserId,
    /// Human, agent, service or workflow.
    pub kind: PrincipalKind,
    /// Role in the tenant (a service client is always a member).
    pub role: Role,
    /// The client.
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Scopes,
    /// The audience (RFC 8707 resource).
    pub resource: String,
    /// Browser origins the token may be used from.
    pub allowed_origins: Vec<String>,
    /// The grant (refresh family) it belongs to.
    pub grant_id: Option<String>,
}

/// A signed access token.
pub struct IssuedToken {
    /// The compact JWS.
    pub token: SecretString,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Its `jti`.
    pub jti: String,
}

/// The identity service of one gateway.
pub struct Identity {
    store: Store,
    /// Deployment settings.
    pub cfg: OAuthConfig,
    issuer: String,
    verify: moka::sync::Cache<TenantId, Arc<VerifySet>>,
    signers: moka::sync::Cache<TenantId, Arc<TokenSigner>>,
    status: moka::sync::Cache<String, TokenStatus>,
    /// Tokens whose signature was checked, keyed by a keyed hash of the
    /// token (the token itself is never held), until they expire or for a
    /// minute: the signature costs 20–60 µs, a hit about one.
    verified: moat_auth::KeyCache<Arc<(Principal, AccessClaims)>>,
    /// Abuse limits.
    pub limits: Limits,
    /// The guarded outbound HTTP client.
    pub egress: Egress,
    /// Identity providers' discovery documents and keys.
    pub providers: super::login::Providers,
    /// Serialises signing-key creation within this replica.
    creating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

fn store_err(e: StoreError) -> CredentialError {
    CredentialError::Store(e)
}

fn jwt_err(e: JwtError) -> CredentialError {
    CredentialError::Invalid(format!("signing key: {e}"))
}

impl Identity {
    /// The service for a gateway configuration.
    pub fn new(store: Store, cfg: &GatewayConfig) -> Result<Self, StartError> {
        let o = cfg.oauth.clone();
        Ok(Self {
            store,
            issuer: cfg.base_url(),
            verify: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(60)).build(),
            signers: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(Duration::from_secs(300)).build(),
            status: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(1)).build(),
            verified: moat_auth::KeyCache::new(100_000, Duration::from_secs(60)).map_err(|_| StartError::Random)?,
            limits: Limits::new(o.requests_per_minute, o.failures_per_minute, o.registrations_per_hour),
            egress: Egress::new(o.allow_private_urls, Duration::from_secs(5)).map_err(StartError::Egress)?,
            providers: super::login::Providers::default(),
            creating: tokio::sync::Mutex::new(()),
            cfg: o,
        })
    }

    /// The issuer identifier (RFC 8414): the gateway's base URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn grace_ms(&self) -> i64 {
        let grace = self.cfg.key_grace.max(self.cfg.access_token_ttl + Duration::from_secs(60));
        i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Keys that still verify: the active one and those retired within the grace period.
    fn live_keys(&self, keys: Vec<SigningKeyRecord>, now: i64) -> Vec<SigningKeyRecord> {
        let grace = self.grace_ms();
        keys.into_iter().filter(|k| k.retired_at.is_none_or(|r| r.saturating_add(grace) > now)).collect()
    }

    /// The tenant's JWKS document.
    pub async fn jwks(&self, tenant: &TenantId) -> Result<serde_json::Value, StoreError> {
        let keys = self.live_keys(self.store.signing_keys(tenant).await?, now_ms());
        Ok(serde_json::json!({ "keys": keys.into_iter().map(|k| k.public_jwk).collect::<Vec<_>>() }))
    }

    async fn verify_set(&self, tenant: &TenantId) -> Result<Arc<VerifySet>, StoreError> {
        if let Some(v) = self.verify.get(tenant) {
            return Ok(v);
        }
        let keys = self.live_keys(self.store.signing_keys(tenant).await?, now_ms());
        let set =
            Arc::new(VerifySet { keys: keys.iter().filter_map(|k| VerifyKey::from_jwk(&k.public_jwk).ok()).collect() });
        self.verify.insert(tenant.clone(), set.clone());
        Ok(set)
    }

    /// The tenant's active signer, creating the tenant's first key when it has none.
    async fn signer(&self, vault: &Vault, tenant: &TenantId) -> Result<Arc<TokenSigner>, CredentialError> {
        if let Some(s) = self.signers.get(tenant) {
            return Ok(s);
        }
        let _one = self.creating.lock().await;
        let keys = self.store.signing_keys(tenant).await.map_err(store_err)?;
        let active = match keys.into_iter().find(|k| k.retired_at.is_none()) {
            Some(k) => k,
            None => self.create_key(vault, tenant).await?,
        };
        let alg: SigningAlg = active.alg.parse().map_err(jwt_err)?;
        let pkcs8 = vault.open_tenant_secret(tenant, &active.secret_id).await?;
        let signer = Arc::new(TokenSigner::new(alg, active.kid.clone(), &pkcs8).map_err(jwt_err)?);
        self.signers.insert(tenant.clone(), signer.clone());
        Ok(signer)
    }

    async fn create_key(&self, vault: &Vault, tenant: &TenantId) -> Result<SigningKeyRecord, CredentialError> {
        let generated = moat_auth::generate_signing_key(self.cfg.signing_alg).map_err(jwt_err)?;
        let secret_id = new_id();
        vault.store_tenant_secret(tenant, SecretPurpose::SigningKey, &secret_id, &generated.private_pkcs8).await?;
        let record = SigningKeyRecord {
            kid: generated.kid.clone(),
            tenant_id: tenant.clone(),
            alg: generated.alg.as_str().to_owned(),
            public_jwk: generated.public_jwk.clone(),
            secret_id,
            created_at: now_ms(),
            retired_at: None,
        };
        self.store.insert_signing_key(tenant, &record).await.map_err(store_err)?;
        self.verify.invalidate(tenant);
        tracing::info!(tenant = %tenant, kid = %record.kid, alg = %record.alg, "created a signing key");
        Ok(record)
    }

    /// Rotates the tenant's signing key: a new key signs from now on; the
    /// old one keeps verifying for the grace period, then is deleted.
    pub async fn rotate_signing_key(
        &self,
        vault: &Vault,
        tenant: &TenantId,
    ) -> Result<SigningKeyRecord, CredentialError> {
        let _one = self.creating.lock().await;
        let record = self.create_key(vault, tenant).await?;
        self.signers.invalidate(tenant);
        let cutoff = now_ms() - self.grace_ms();
        self.store.prune_signing_keys(tenant, cutoff).await.map_err(store_err)?;
        Ok(record)
    }

    /// Issues an access token.
    pub async fn issue(&self, vault: &Vault, req: &IssueRequest) -> Result<IssuedToken, CredentialError> {
        let signer = self.signer(vault, &req.tenant_id).await?;
        let issued_ms = now_ms();
        let now = issued_ms / 1000;
        let ttl = self.cfg.access_token_ttl.as_secs();
        let jti = new_id();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: req.user_id.to_string(),
            aud: req.resource.clone(),
            exp: now + i64::try_from(ttl).unwrap_or(900),
            iat: now,
            nbf: now,
            jti: jti.clone(),
            client_id: req.client_id.clone(),
            scope: req.scopes.to_string(),
            tid: req.tenant_id.to_string(),
            tenant: req.tenant_name.clone(),
            kind: req.kind.as_str().to_owned(),
            allowed_origins: req.allowed_origins.clone(),
            sid: req.grant_id.clone(),
            epoch: issued_ms,
            role: Some(req.role.as_str().to_owned()),
        };
        let token = signer.sign(&claims).map_err(jwt_err)?;
        Ok(IssuedToken { token: SecretString::from(token), expires_in: ttl, jti })
    }

    /// Verifies a presented access token for `resource` (the URL the
    /// request addresses) and returns the principal it stands for.
    pub async fn authenticate(&self, token: &str, resource: &str) -> Result<Principal, TokenFailure> {
        let now = now_ms();
        let verified = match self.verified.get(token, now) {
            Some(hit) => hit.principal,
            None => {
                let v = Arc::new(self.verify_token(token, now).await?);
                let expires_at_ms = Some(v.1.exp.saturating_mul(1000));
                self.verified.insert(
                    token,
                    moat_auth::CachedKey { key_id: v.0.tenant_id.to_string(), principal: v.clone(), expires_at_ms },
                );
                v
            }
        };
        let (principal, claims) = &*verified;
        if !moat_auth::audience_covers(&claims.aud, resource) {
            return Err(TokenFailure::Audience);
        }
        let status = self.status(&principal.tenant_id, claims).await?;
        if status.jti_revoked
            || status.grant_revoked
            || status.client_revoked
            || issued_ms(claims) < status.revoked_before
        {
            return Err(TokenFailure::Revoked);
        }
        Ok(principal.clone())
    }

    /// The signature, issuer, lifetime and claims of a token (no audience,
    /// no revocation).
    async fn verify_token(&self, token: &str, now: i64) -> Result<(Principal, AccessClaims), TokenFailure> {
        let peeked = moat_auth::peek(token).map_err(|_| TokenFailure::Invalid("malformed token"))?;
        let tid = peeked.tid.ok_or(TokenFailure::Invalid("token names no tenant"))?;
        let tenant = TenantId::from_string(tid);
        let set = self.verify_set(&tenant).await.map_err(|_| TokenFailure::Unavailable)?;
        let claims = match moat_auth::verify_access(token, &set.keys, &self.issuer, now / 1000, LEEWAY_S) {
            Ok(c) => c,
            Err(JwtError::UnknownKey) => {
                // A key created by another replica since our cache was filled.
                self.verify.invalidate(&tenant);
                let set = self.verify_set(&tenant).await.map_err(|_| TokenFailure::Unavailable)?;
                moat_auth::verify_access(token, &set.keys, &self.issuer, now / 1000, LEEWAY_S).map_err(token_reason)?
            }
            Err(e) => return Err(token_reason(e)),
        };
        if claims.tid != tenant.as_str() {
            return Err(TokenFailure::Invalid("tenant mismatch"));
        }
        let (scopes, _) = Scopes::parse_list(&claims.scope);
        let kind: PrincipalKind = claims.kind.parse().map_err(|_| TokenFailure::Invalid("bad kind claim"))?;
        let role: Role =
            claims.role.as_deref().unwrap_or("member").parse().map_err(|_| TokenFailure::Invalid("bad role claim"))?;
        // Machine identities never hold admin rights, whatever a token says.
        let (role, scopes) =
            if kind == PrincipalKind::Human { (role, scopes) } else { (Role::Member, scopes.without_admin()) };
        let principal = Principal {
            tenant_id: tenant,
            tenant_name: claims.tenant.clone(),
            user_id: UserId::from_string(claims.sub.clone()),
            kind,
            role: role.min(Role::Admin),
            operator: false,
            // The grant, not the token: an MCP session outlives a refresh.
            credential_id: claims.sid.clone().unwrap_or_else(|| claims.jti.clone()),
            method: AuthMethod::AccessToken,
            scopes,
            allowed_origins: claims.allowed_origins.clone(),
        };
        Ok((principal, claims))
    }

    async fn status(&self, tenant: &TenantId, claims: &AccessClaims) -> Result<TokenStatus, TokenFailure> {
        if let Some(s) = self.status.get(&claims.jti) {
            return Ok(s);
        }
        let s = self
            .store
            .token_status(tenant, &claims.jti, claims.sid.as_deref(), &claims.client_id)
            .await
            .map_err(|_| TokenFailure::Unavailable)?;
        self.status.insert(claims.jti.clone(), s);
        Ok(s)
    }

    /// Checks a token's signature, issuer and expiry only (revocation of a
    /// token presented by its client, whatever its audience).
    pub async fn verify_signature(&self, token: &str) -> Option<AccessClaims> {
        let tenant = TenantId::from_string(moat_auth::peek(token).ok()?.tid?);
        let set = self.verify_set(&tenant).await.ok()?;
        let claims = moat_auth::verify_access(token, &set.keys, &self.issuer, now_ms() / 1000, LEEWAY_S).ok()?;
        (claims.tid == tenant.as_str()).then_some(claims)
    }

    /// Forgets cached revocation state (after any revocation here).
    pub fn revocation_changed(&self) {
        self.status.invalidate_all();
    }

    /// Ends every token, grant and browser session of a tenant, from the
    /// next request on.
    pub async fn revoke_tenant(&self, tenant: &TenantId) -> Result<i64, StoreError> {
        let at = now_ms();
        self.store.revoke_tenant_tokens(tenant, at).await?;
        self.revocation_changed();
        Ok(at)
    }
}

/// When a token was issued, in milliseconds: its `epoch` claim (moat's
/// tokens carry it), else `iat` rounded up to the end of its second, so that
/// a token issued in the second of a revocation is never thought older.
fn issued_ms(claims: &AccessClaims) -> i64 {
    if claims.epoch > 0 { claims.epoch } else { claims.iat.saturating_mul(1000).saturating_add(999) }
}

fn token_reason(e: JwtError) -> TokenFailure {
    TokenFailure::Invalid(match e {
        JwtError::Expired => "expired token",
        JwtError::NotYetValid => "token not yet valid",
        JwtError::WrongIssuer => "wrong issuer",
        JwtError::UnknownKey => "unknown signing key",
        JwtError::BadSignature => "bad signature",
        JwtError::WrongType => "not an access token",
        JwtError::UnsupportedAlg => "unsupported algorithm",
        _ => "malformed token",
    })
}
