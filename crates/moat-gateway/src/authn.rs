//! Stage 1 of the request path: who is calling?
//!
//! `Authorization: Bearer moat_…` is checked offline (prefix, length,
//! checksum), then against the verification cache, and only on a miss
//! against storage and Argon2id (on the blocking pool, so a burst of bad
//! keys cannot stall the async workers). See `moat_auth::keys` for the cache
//! design. Access tokens from the OAuth server arrive with that issue.
//!
//! Argon2id is deliberately expensive (about 19 MiB and 10–20 ms of a core
//! per verification), so misses are bounded twice: one verification at a
//! time per key id (callers of the same key wait for it and then find it
//! cached: when a busy key's cache entry expires, 64 sessions cost one
//! verification, not 64), and at most one verification per core overall (a
//! flood of well-formed wrong keys queues instead of exhausting memory).

use crate::audit::AuditSink;
use crate::identity::uris::resource_of_path;
use crate::identity::{Identity, TokenFailure};
use axum::http::HeaderMap;
use moat_auth::{CachedKey, KeyCache};
use moat_core::{AuthMethod, Principal, TenantId, now_ms};
use moat_store::{AuditEvent, AuditResult, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Why a request is not authenticated. Every variant but `Unavailable`
/// becomes 401; clients are told only "missing" or "invalid".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    #[error("authentication required")]
    Missing,
    /// A header that is not `Bearer <token>`, a token of the wrong shape or
    /// checksum, an unknown, revoked or expired key, or a wrong secret.
    #[error("invalid credentials")]
    Invalid(&'static str),
    /// Storage could not be asked (503: fail closed, never open).
    #[error("authentication is temporarily unavailable")]
    Unavailable,
    /// Too many failed authentications from this address (429).
    #[error("too many failed authentications; retry in {0} s")]
    Throttled(u64),
    /// A valid token used from a browser origin it is not bound to (403).
    #[error("this token may not be used from this origin")]
    Origin,
}

/// Where a request came from, for audit.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    /// Client address.
    pub source_addr: Option<String>,
    /// The request id (also in logs and the `x-request-id` header).
    pub request_id: Option<String>,
}

/// The authentication stage.
pub struct Authenticator {
    store: Store,
    identity: Arc<Identity>,
    cache: KeyCache<Principal>,
    audit: AuditSink,
    /// Key ids being verified, each with the lock its callers queue on.
    verifying: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Argon2id verifications allowed at once.
    argon: Semaphore,
}

/// Leaves the per-key queue; the last one out removes it.
struct KeyTurn<'a> {
    map: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    id: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for KeyTurn<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            // Ours and the map's: nobody else waits on it.
            if Arc::strong_count(&self.lock) <= 2 {
                m.remove(self.id);
            }
        }
    }
}

/// The token of a `Bearer` authorization header.
fn bearer(raw: &[u8]) -> Result<&str, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "malformed header")?;
    let (scheme, token) = text.split_once(' ').ok_or("malformed header")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("unsupported scheme");
    }
    let token = token.trim();
    if token.is_empty() { Err("malformed header") } else { Ok(token) }
}

impl Authenticator {
    /// A stage over `store` whose verification cache keeps entries for `ttl`.
    pub fn new(
        store: Store,
        audit: AuditSink,
        ttl: Duration,
        identity: Arc<Identity>,
    ) -> Result<Self, moat_auth::KeyError> {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Ok(Self {
            store,
            identity,
            cache: KeyCache::new(10_000, ttl)?,
            audit,
            verifying: Mutex::new(HashMap::new()),
            argon: Semaphore::new(cores.max(1)),
        })
    }

    /// Drops cached verifications of a key (revoke, regenerate).
    pub fn invalidate_key(&self, key_id: &str) {
        self.cache.invalidate_key(key_id);
    }

    /// Drops every cached verification (tenant deletion).
    pub fn invalidate_all(&self) {
        self.cache.clear();
    }

    /// Authenticates the request's bearer token: an API key, or an access
    /// token whose audience covers `path` on this gateway. An address that
    /// spent its failure budget is refused before anything is checked.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        meta: &RequestMeta,
        path: &str,
    ) -> Result<Principal, AuthFailure> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(AuthFailure::Missing);
        };
        let addr_key = meta.source_addr.as_deref().map(|a| format!("addr:{a}"));
        if let Some(k) = &addr_key {
            self.identity.limits.check_blocked(k).map_err(|r| AuthFailure::Throttled(r.0))?;
        }
        let result = match bearer(value.as_bytes()) {
            Ok(token) if token.starts_with("moat_") => self.verify_key(token).await,
            Ok(token) => {
                let resource = resource_of_path(self.identity.issuer(), path);
                match self.identity.authenticate(token, &resource).await {
                    Ok(principal) => Ok((principal, false)),
                    Err(TokenFailure::Unavailable) => Err((AuthFailure::Unavailable, None)),
                    Err(TokenFailure::Audience) => Err((AuthFailure::Invalid("token for another resource"), None)),
                    Err(TokenFailure::Revoked) => Err((AuthFailure::Invalid("revoked token"), None)),
                    Err(TokenFailure::Invalid(why)) => Err((AuthFailure::Invalid(why), None)),
                }
            }
            Err(why) => Err((AuthFailure::Invalid(why), None)),
        };
        match &result {
            Err((failure, tenant)) => {
                if let AuthFailure::Invalid(reason) = failure {
                    if let Some(k) = &addr_key {
                        self.identity.limits.failure(k);
                    }
                    let mut ev = AuditEvent::new("unknown", "auth.failure", AuditResult::Denied);
                    ev.tenant_id = tenant.clone();
                    ev.metadata = serde_json::json!({ "reason": reason });
                    self.emit(ev, meta).await;
                }
            }
            Ok((principal, fresh)) => {
                if *fresh {
                    let mut ev = AuditEvent::new(principal.kind.as_str(), "auth.success", AuditResult::Ok);
                    ev.tenant_id = Some(principal.tenant_id.clone());
                    ev.actor_id = Some(principal.user_id.to_string());
                    ev.resource = Some(format!("api_key:{}", principal.credential_id));
                    self.emit(ev, meta).await;
                }
            }
        }
        let principal = result.map(|(p, _)| p).map_err(|(f, _)| f)?;
        // Origin binding: a browser request from an origin the token is not
        // bound to is refused (requests without Origin are not from a page).
        if !principal.allowed_origins.is_empty()
            && let Some(origin) = headers.get(http::header::ORIGIN)
        {
            let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
            if !principal.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                let mut ev = AuditEvent::new(principal.kind.as_str(), "auth.failure", AuditResult::Denied);
                ev.tenant_id = Some(principal.tenant_id.clone());
                ev.actor_id = Some(principal.user_id.to_string());
                ev.metadata = serde_json::json!({ "reason": "origin not allowed for this token" });
                self.emit(ev, meta).await;
                return Err(AuthFailure::Origin);
            }
        }
        Ok(principal)
    }

    async fn emit(&self, mut ev: AuditEvent, meta: &RequestMeta) {
        ev.source_addr = meta.source_addr.clone();
        ev.request_id = meta.request_id.clone();
        self.audit.record(ev).await;
    }

    /// Returns the principal and whether it was freshly verified (a cache
    /// miss); a failure carries the key's tenant when the key was found, so
    /// that the tenant sees failed uses of its own keys in its audit trail.
    async fn verify_key(&self, token: &str) -> Result<(Principal, bool), (AuthFailure, Option<TenantId>)> {
        let invalid = |why| (AuthFailure::Invalid(why), None);
        let parsed = moat_auth::parse_key(token).map_err(|e| match e {
            moat_auth::KeyFormatError::Checksum => invalid("checksum mismatch"),
            _ => invalid("not a moat key"),
        })?;
        let now = now_ms();
        if let Some(hit) = self.cache.get(token, now) {
            return Ok((hit.principal, false));
        }
        // One verification per key id at a time; whoever waited may find
        // the key cached by the one before.
        let lock = match self.verifying.lock() {
            Ok(mut m) => m.entry(parsed.public_id.to_owned()).or_default().clone(),
            Err(_) => return Err((AuthFailure::Unavailable, None)),
        };
        let turn = KeyTurn { map: &self.verifying, id: parsed.public_id, lock };
        let _queued = turn.lock.lock().await;
        if let Some(hit) = self.cache.get(token, now_ms()) {
            return Ok((hit.principal, false));
        }
        let record = self
            .store
            .api_key_for_auth(parsed.public_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "key lookup failed");
                (AuthFailure::Unavailable, None)
            })?
            .ok_or(invalid("unknown key"))?;
        let known = |why| (AuthFailure::Invalid(why), Some(record.tenant_id.clone()));
        // Verify before looking at revocation or expiry, so that timing does
        // not tell an attacker which public ids exist in which state.
        let hash = record.secret_hash.clone();
        let presented = token.to_owned();
        let ok = {
            let _permit = self.argon.acquire().await.map_err(|_| (AuthFailure::Unavailable, None))?;
            tokio::task::spawn_blocking(move || moat_auth::verify_token(&presented, &hash)).await.unwrap_or(false)
        };
        if !ok {
            return Err(known("wrong secret"));
        }
        if record.is_revoked() {
            return Err(known("revoked key"));
        }
        if record.is_expired(now) {
            return Err(known("expired key"));
        }
        let principal = Principal {
            tenant_id: record.tenant_id.clone(),
            tenant_name: record.tenant_name.clone(),
            user_id: record.user_id.clone(),
            kind: record.kind,
            role: record.role,
            operator: record.operator,
            credential_id: record.id.to_string(),
            method: AuthMethod::ApiKey,
            scopes: moat_core::Scopes::all(),
            allowed_origins: Vec::new(),
        };
        self.cache.insert(
            token,
            CachedKey { key_id: record.id.to_string(), principal: principal.clone(), expires_at_ms: record.expires_at },
        );
        let store = self.store.clone();
        let (tenant, id) = (record.tenant_id.clone(), record.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&tenant, &id, now).await {
                tracing::warn!(error = %e, "could not record key use");
            }
        });
        Ok((principal, true))
    }
}
