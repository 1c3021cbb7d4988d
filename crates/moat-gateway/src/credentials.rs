//! Upstream credentials on the request path: storing them (sealed under the
//! tenant's DEK), resolving which ones a caller gets for a server
//! (personal ▸ team ▸ organisation for people and their agents; a machine
//! identity only its own), turning them into the headers or environment of
//! an upstream instance, and rotating the keys that protect them.
//!
//! The cryptography and the key providers live in `moat-vault`, the rows in
//! `moat-store`; this module joins them. Decrypted values exist only inside
//! [`Binding`]s (secret types), which live in a short-TTL cache and in the
//! upstream instances that use them.

use moat_core::{
    CredentialId, CredentialKind, Principal, PrincipalKind, ScopeTier, ServerId, TeamId, TenantId, UserId,
};
use moat_mcp::client::UpstreamSpec;
use moat_store::{
    CredentialRecord, NewCredential, SealedCredential, SecretPurpose, ServerRecord, Store, StoreError, Transport,
};
use moat_vault::{Dek, KeyContext, KeyProvider, RecordContext, Redactor, SecretCache, VaultError};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Longest credential value accepted.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Shortest credential value accepted: shorter ones could not be redacted
/// from upstream output without mangling it.
pub const MIN_VALUE_BYTES: usize = 4;
/// How long an unwrapped DEK is kept in memory.
const DEK_TTL: Duration = Duration::from_secs(300);
/// `last_used_at` is written at most this often per credential.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// How long a readiness verdict of the key provider is reused.
const CHECK_TTL: Duration = Duration::from_secs(5);

/// Environment variables a credential may never set: they control the
/// dynamic loader or an interpreter, so setting one would run code of the
/// caller's choosing inside moat's host.
const FORBIDDEN_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_EXTRA_CA_CERTS",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PYTHONUSERBASE",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "GCONV_PATH",
    "LOCPATH",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
const FORBIDDEN_ENV_PREFIXES: &[&str] = &["LD_", "DYLD_", "MALLOC_", "NPM_CONFIG_", "GIT_"];

/// Headers a credential may never set: they belong to the transport or to
/// the MCP protocol, and moat sets them itself.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "accept",
    "accept-encoding",
    "last-event-id",
    "origin",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];
const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["mcp-", "proxy-", "sec-"];

/// Why a credential operation failed. Messages never contain a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The key provider could not serve (fail closed).
    #[error("the key provider `{provider}` cannot serve: {source}")]
    Provider {
        /// Which provider.
        provider: &'static str,
        /// Why.
        source: VaultError,
    },
    /// A stored record failed authentication (tampered, moved, or a wrong key).
    #[error("a stored credential for server `{server}` failed its integrity check and was not used")]
    Integrity {
        /// The server it belongs to.
        server: String,
    },
    /// Two of the caller's teams hold a credential for the same slot.
    #[error(
        "the credential for `{target}` on server `{server}` is ambiguous: teams {teams} each hold one; \
         set a personal credential or remove all but one"
    )]
    Ambiguous {
        /// The server.
        server: String,
        /// The header or variable.
        target: String,
        /// The teams, quoted and comma-separated.
        teams: String,
    },
    /// The request is invalid (says why).
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The credentials one caller resolved to for one server, ready to inject.
/// The unit of sharing of upstream instances: callers with equal bindings
/// share a process or HTTP session, others never do.
pub struct Binding {
    /// Identity of the binding: empty for none, else the sorted
    /// `credential-id@revision` list.
    pub key: Arc<str>,
    env: Vec<(String, SecretString)>,
    headers: Vec<(http::HeaderName, SecretString)>,
    used: Vec<(CredentialId, ScopeTier)>,
    /// Replaces every injected value (and its encodings) in upstream output.
    pub redactor: Redactor,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding").field("key", &self.key).field("credentials", &self.used.len()).finish()
    }
}

impl Binding {
    /// No credential: the server's own configuration only.
    pub fn none() -> Self {
        Self {
            key: Arc::from(""),
            env: Vec::new(),
            headers: Vec::new(),
            used: Vec::new(),
            redactor: Redactor::new(std::iter::empty()),
        }
    }

    /// The one credential-less binding, shared (no allocation per call).
    pub fn shared_none() -> Arc<Binding> {
        static NONE: std::sync::OnceLock<Arc<Binding>> = std::sync::OnceLock::new();
        NONE.get_or_init(|| Arc::new(Binding::none())).clone()
    }

    /// True when no stored credential is injected.
    pub fn is_none(&self) -> bool {
        self.used.is_empty()
    }

    /// True when this binding injects credential `id`.
    pub fn uses(&self, id: &CredentialId) -> bool {
        self.used.iter().any(|(c, _)| c == id)
    }

    /// The credentials injected, with their tiers (metadata only).
    pub fn credentials(&self) -> &[(CredentialId, ScopeTier)] {
        &self.used
    }

    /// The server's spec with the credentials injected: environment
    /// variables for stdio (they override configured ones of the same name),
    /// headers for HTTP (likewise). Never the URL.
    pub fn apply(&self, base: &UpstreamSpec) -> UpstreamSpec {
        let mut spec = base.clone();
        match &mut spec {
            UpstreamSpec::Stdio { env, .. } => {
                for (k, v) in &self.env {
                    env.insert(k.clone(), v.clone());
                }
            }
            UpstreamSpec::StreamableHttp { headers, .. } | UpstreamSpec::Sse { headers, .. } => {
                for (name, value) in &self.headers {
                    // Validated when stored; a value that no longer parses is skipped.
                    let Ok(mut v) = http::HeaderValue::from_str(value.expose_secret()) else { continue };
                    v.set_sensitive(true);
                    headers.retain(|(n, _)| n != name);
                    headers.push((name.clone(), v));
                }
            }
        }
        spec
    }
}

/// What `set` stores.
pub struct NewValue<'a> {
    /// The scope tier.
    pub tier: ScopeTier,
    /// Whose credential it is.
    pub subject: Subject,
    /// How it is presented.
    pub kind: CredentialKind,
    /// The header or variable name (`Authorization` for bearer and basic).
    pub target: &'a str,
    /// The value.
    pub value: &'a SecretString,
}

/// Outcome of a DEK rotation.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RotationReport {
    /// The version credentials were moved off (0: the tenant had no key).
    pub from_version: u32,
    /// The tenant's DEK version now.
    pub to_version: u32,
    /// Credentials re-encrypted by this run.
    pub reencrypted: u64,
    /// True when this run finished a rotation an earlier run left unfinished.
    pub resumed: bool,
}

/// Outcome of a KEK rotation.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KekReport {
    /// The key provider.
    pub provider: String,
    /// Tenants whose DEKs were re-wrapped.
    pub tenants: u64,
    /// DEK versions re-wrapped.
    pub deks: u64,
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct BindingKey {
    tenant: TenantId,
    server: ServerId,
    user: UserId,
    machine: bool,
}

/// Tuning of the vault service.
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// TTL of resolved (decrypted) credentials; zero disables the cache.
    pub credential_cache_ttl: Duration,
    /// Bound of that cache.
    pub credential_cache_entries: u64,
    /// Credentials re-encrypted per transaction during a DEK rotation.
    pub rotation_batch: usize,
    /// Pause between rotation batches (spreads the database load).
    pub rotation_pause: Duration,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            credential_cache_ttl: Duration::from_millis(1000),
            credential_cache_entries: 10_000,
            rotation_batch: 100,
            rotation_pause: Duration::ZERO,
        }
    }
}

/// The credential vault service of a running gateway.
pub struct Vault {
    provider: Arc<dyn KeyProvider>,
    store: Store,
    options: VaultOptions,
    deks: SecretCache<(TenantId, u32), Arc<Dek>>,
    bindings: SecretCache<BindingKey, Arc<Binding>>,
    rotation: tokio::sync::Mutex<()>,
    checked: Mutex<Option<(Instant, Result<(), String>)>>,
    /// Credentials whose `last_used_at` was written in the last minute.
    touched: SecretCache<CredentialId, ()>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("provider", &self.provider.name()).finish_non_exhaustive()
    }
}

/// True for a principal that is a machine identity: it may use only the
/// service-tier credentials stored for itself.
pub fn is_machine(p: &Principal) -> bool {
    matches!(p.kind, PrincipalKind::Service | PrincipalKind::Workflow)
}

fn slot_of(kind: CredentialKind, target: &str) -> String {
    match kind {
        CredentialKind::Env => format!("env:{target}"),
        CredentialKind::Bearer | CredentialKind::Basic => "header:authorization".to_owned(),
        CredentialKind::Header => format!("header:{}", target.to_ascii_lowercase()),
    }
}

/// Checks a header or variable name for a kind and a server's transport.
pub fn validate_target(kind: CredentialKind, target: &str, transport: Transport) -> Result<String, CredentialError> {
    let invalid = |m: String| Err(CredentialError::Invalid(m));
    match (kind, transport) {
        (CredentialKind::Env, Transport::Stdio) => {}
        (CredentialKind::Env, _) => {
            return invalid(
                "an HTTP server takes credentials as headers (--header, --bearer or --basic), not --env".into(),
            );
        }
        (_, Transport::Stdio) => {
            return invalid("a stdio server takes credentials as environment variables (--env), not headers".into());
        }
        _ => {}
    }
    match kind {
        CredentialKind::Bearer | CredentialKind::Basic => Ok("Authorization".to_owned()),
        CredentialKind::Env => {
            let mut chars = target.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && target.len() <= 128;
            if !ok {
                return invalid(format!("`{target}` is not a valid environment variable name"));
            }
            let upper = target.to_ascii_uppercase();
            if FORBIDDEN_ENV.contains(&upper.as_str()) || FORBIDDEN_ENV_PREFIXES.iter().any(|p| upper.starts_with(p)) {
                return invalid(format!(
                    "`{target}` controls the process loader or interpreter and cannot be set by a credential"
                ));
            }
            Ok(target.to_owned())
        }
        CredentialKind::Header => {
            if http::HeaderName::from_bytes(target.as_bytes()).is_err() || target.len() > 128 {
                return invalid(format!("`{target}` is not a valid HTTP header name"));
            }
            let lower = target.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str())
                || FORBIDDEN_HEADER_PREFIXES.iter().any(|p| lower.starts_with(p))
            {
                return invalid(format!(
                    "the `{target}` header belongs to the transport and cannot carry a credential"
                ));
            }
            Ok(target.to_owned())
        }
    }
}

/// Checks a value for its kind. Messages never quote the value.
pub fn validate_value(kind: CredentialKind, value: &SecretString) -> Result<(), CredentialError> {
    let v = value.expose_secret();
    let invalid = |m: &str| Err(CredentialError::Invalid(m.to_owned()));
    if v.len() < MIN_VALUE_BYTES {
        return invalid("a credential value must be at least 4 bytes long");
    }
    if v.len() > MAX_VALUE_BYTES {
        return invalid("a credential value must be at most 16 KiB");
    }
    if v.contains('\0') {
        return invalid("a credential value cannot contain a NUL byte");
    }
    if kind.is_header() {
        if v.contains(['\r', '\n']) || http::HeaderValue::from_str(v).is_err() {
            return invalid("the value is not a valid HTTP header value (printable ASCII only, no line breaks)");
        }
        if kind == CredentialKind::Basic && !v.contains(':') {
            return invalid("a basic-auth credential is `user:password`");
        }
    }
    Ok(())
}

/// The AAD of a sealed tenant secret: its purpose stands in the tier slot
/// and its id in the scope and record slots, so that a ciphertext moved to
/// another row, purpose or tenant does not open.
fn secret_context<'a>(
    tenant: &'a TenantId,
    purpose: SecretPurpose,
    id: &'a str,
    key_version: u32,
) -> RecordContext<'a> {
    RecordContext { tenant_id: tenant.as_str(), tier: purpose.as_str(), scope_id: id, credential_id: id, key_version }
}

fn tier_rank(t: ScopeTier) -> u8 {
    match t {
        ScopeTier::Personal | ScopeTier::Service => 0,
        ScopeTier::Team => 1,
        ScopeTier::Org => 2,
    }
}

impl Vault {
    /// A vault over a key provider and a store.
    pub fn new(provider: Arc<dyn KeyProvider>, store: Store, options: VaultOptions) -> Self {
        Self {
            deks: SecretCache::new(DEK_TTL, 10_000),
            bindings: SecretCache::new(options.credential_cache_ttl, options.credential_cache_entries),
            provider,
            store,
            options,
            rotation: tokio::sync::Mutex::new(()),
            checked: Mutex::new(None),
            touched: SecretCache::new(TOUCH_INTERVAL, 100_000),
        }
    }

    /// The key provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    fn provider_err(&self, source: VaultError) -> CredentialError {
        CredentialError::Provider { provider: self.provider.name(), source }
    }

    /// Readiness of the key provider. A remote provider's verdict is reused
    /// for a few seconds, so that probes do not turn into a stream of KMS calls.
    pub async fn check(&self) -> Result<(), String> {
        let remote = self.provider.name() != "local";
        if let Some((at, verdict)) = self.checked.lock().ok().and_then(|g| g.clone())
            && remote
            && at.elapsed() < CHECK_TTL
        {
            return verdict;
        }
        let verdict = match tokio::time::timeout(Duration::from_secs(5), self.provider.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("key provider `{}`: {e}", self.provider.name())),
            Err(_) => Err(format!("key provider `{}` did not answer within 5 s", self.provider.name())),
        };
        if let Ok(mut g) = self.checked.lock() {
            *g = Some((Instant::now(), verdict.clone()));
        }
        verdict
    }

    /// Drops every resolved binding of a tenant (after a change).
    pub fn invalidate_tenant(&self, tenant: &TenantId) {
        let t = tenant.clone();
        self.bindings.invalidate_if(move |k, _| k.tenant == t);
    }

    /// Forgets everything held in memory for a tenant (tenant deleted).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.invalidate_tenant(tenant);
        let t = tenant.clone();
        self.deks.invalidate_if(move |k, _| k.0 == t);
    }

    async fn dek(&self, tenant: &TenantId, version: u32, wrapped: &[u8]) -> Result<Arc<Dek>, CredentialError> {
        let key = (tenant.clone(), version);
        if let Some(d) = self.deks.get(&key) {
            return Ok(d);
        }
        let ctx = KeyContext { tenant_id: tenant.as_str(), version };
        let dek = Arc::new(self.provider.unwrap_dek(&ctx, wrapped).await.map_err(|e| self.provider_err(e))?);
        self.deks.insert(key, dek.clone());
        Ok(dek)
    }

    /// The tenant's newest DEK, created (version 1) when it has none.
    async fn active_dek(&self, tenant: &TenantId) -> Result<(u32, Arc<Dek>), CredentialError> {
        for _ in 0..3 {
            if let Some(k) = self.store.active_tenant_key(tenant).await? {
                let dek = self.dek(tenant, k.version, &k.wrapped).await?;
                return Ok((k.version, dek));
            }
            self.create_dek(tenant, 1).await?;
        }
        Err(CredentialError::Invalid("could not create the tenant's data key".into()))
    }

    /// Creates DEK `version`; false when another writer created it first.
    async fn create_dek(&self, tenant: &TenantId, version: u32) -> Result<bool, CredentialError> {
        let ctx = KeyContext { tenant_id: tenant.as_str(), version };
        let (dek, wrapped) = self.provider.generate_dek(&ctx).await.map_err(|e| self.provider_err(e))?;
        let created = self.store.insert_tenant_key(tenant, version, &wrapped, self.provider.name()).await?;
        if created {
            self.deks.insert((tenant.clone(), version), Arc::new(dek));
        }
        Ok(created)
    }

    fn open_row(&self, row: &SealedCredential, dek: &Dek) -> Result<SecretString, CredentialError> {
        let m = &row.meta;
        let ctx = RecordContext {
            tenant_id: m.tenant_id.as_str(),
            tier: m.tier.as_str(),
            scope_id: &m.scope_id,
            credential_id: m.id.as_str(),
            key_version: m.key_version,
        };
        moat_vault::open(dek, &ctx, &row.sealed).map_err(|_| {
            tracing::error!(credential = %m.id, server = %m.server_name, "stored credential failed authentication");
            CredentialError::Integrity { server: m.server_name.clone() }
        })
    }

    /// Seals and stores a small tenant secret (a signing key's private half,
    /// an identity provider's client secret) under the tenant's active data
    /// key; the AAD binds tenant, purpose and id.
    pub async fn store_tenant_secret(
        &self,
        tenant: &TenantId,
        purpose: SecretPurpose,
        id: &str,
        plaintext: &[u8],
    ) -> Result<(), CredentialError> {
        let (version, dek) = self.active_dek(tenant).await?;
        let sealed = moat_vault::seal(&dek, &secret_context(tenant, purpose, id, version), plaintext)
            .map_err(|e| self.provider_err(e))?;
        self.store.insert_tenant_secret(tenant, id, purpose, version, &sealed).await?;
        Ok(())
    }

    /// Opens a sealed tenant secret.
    pub async fn open_tenant_secret(&self, tenant: &TenantId, id: &str) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
        let row = self.store.tenant_secret(tenant, id).await?.ok_or(CredentialError::NotFound("tenant secret"))?;
        let dek = self.dek(tenant, row.key_version, &row.wrapped_dek).await?;
        moat_vault::open_bytes(&dek, &secret_context(tenant, row.purpose, id, row.key_version), &row.sealed).map_err(|_| {
            tracing::error!(tenant = %tenant, purpose = row.purpose.as_str(), "sealed tenant secret failed authentication");
            CredentialError::Integrity { server: format!("({})", row.purpose.as_str()) }
        })
    }

    /// Signs `data` with a MAC key derived from the tenant's active data key
    /// for `purpose` (browser-session cookies). Rotating the data key
    /// invalidates every tag.
    pub async fn mac(&self, tenant: &TenantId, purpose: &str, data: &[u8]) -> Result<String, CredentialError> {
        let (_, dek) = self.active_dek(tenant).await?;
        moat_vault::mac_tag(&dek, tenant.as_str(), purpose, data).map_err(|e| self.provider_err(e))
    }

    /// Checks a [`Vault::mac`] tag in constant time (false when the key is unavailable).
    pub async fn mac_ok(&self, tenant: &TenantId, purpose: &str, data: &[u8], tag: &str) -> bool {
        let Ok(Some(k)) = self.store.active_tenant_key(tenant).await else { return false };
        let Ok(dek) = self.dek(tenant, k.version, &k.wrapped).await else { return false };
        moat_vault::mac_verify(&dek, tenant.as_str(), purpose, data, tag)
    }

    /// Re-seals the tenant secrets under data keys older than `target`.
    async fn reseal_tenant_secrets(
        &self,
        tenant: &TenantId,
        target: u32,
        target_dek: &Dek,
    ) -> Result<u64, CredentialError> {
        let mut done = 0;
        loop {
            let rows = self.store.tenant_secrets_below_version(tenant, target, 100).await?;
            if rows.is_empty() {
                return Ok(done);
            }
            for row in &rows {
                let old = self.dek(tenant, row.key_version, &row.wrapped_dek).await?;
                let plain = moat_vault::open_bytes(
                    &old,
                    &secret_context(tenant, row.purpose, &row.id, row.key_version),
                    &row.sealed,
                )
                .map_err(|_| CredentialError::Integrity { server: format!("({})", row.purpose.as_str()) })?;
                let sealed =
                    moat_vault::seal(target_dek, &secret_context(tenant, row.purpose, &row.id, target), &plain)
                        .map_err(|e| self.provider_err(e))?;
                if self.store.reseal_tenant_secret(tenant, &row.id, row.key_version, target, &sealed).await? {
                    done += 1;
                }
            }
        }
    }

    /// The credentials `principal` gets for `server`, decrypted (cached for
    /// the configured TTL).
    pub async fn resolve(&self, principal: &Principal, server: &ServerRecord) -> Result<Arc<Binding>, CredentialError> {
        if principal.method == moat_core::AuthMethod::Anonymous {
            return Ok(Binding::shared_none());
        }
        let key = BindingKey {
            tenant: principal.tenant_id.clone(),
            server: server.id.clone(),
            user: principal.user_id.clone(),
            machine: is_machine(principal),
        };
        if let Some(b) = self.bindings.get(&key) {
            return Ok(b);
        }
        let binding = Arc::new(self.resolve_uncached(&key, server).await?);
        self.bindings.insert(key, binding.clone());
        Ok(binding)
    }

    async fn resolve_uncached(&self, key: &BindingKey, server: &ServerRecord) -> Result<Binding, CredentialError> {
        let teams = if key.machine { Vec::new() } else { self.store.teams_of_user(&key.tenant, &key.user).await? };
        let rows = self
            .store
            .credentials_for_call(&key.tenant, &server.id, &key.user, &teams, !key.machine, key.machine)
            .await?;
        // Per slot, the best-ranked tier wins; two teams at the same rank is ambiguous.
        let mut best: BTreeMap<String, Vec<&SealedCredential>> = BTreeMap::new();
        for row in &rows {
            let compatible = row.meta.kind.is_header() != (server.transport == Transport::Stdio);
            if !compatible {
                continue;
            }
            let slot = slot_of(row.meta.kind, &row.meta.target);
            let entry = best.entry(slot).or_default();
            match entry.first().map(|r| tier_rank(r.meta.tier)) {
                Some(rank) if rank < tier_rank(row.meta.tier) => {}
                Some(rank) if rank == tier_rank(row.meta.tier) => entry.push(row),
                _ => *entry = vec![row],
            }
        }
        let mut env = Vec::new();
        let mut headers = Vec::new();
        let mut used = Vec::new();
        let mut secrets: Vec<SecretString> = Vec::new();
        let mut ids = Vec::new();
        for rows in best.values() {
            if let [first, _, ..] = rows.as_slice() {
                let mut names: Vec<String> = rows
                    .iter()
                    .map(|r| format!("`{}`", r.meta.team_name.clone().unwrap_or_else(|| r.meta.scope_id.clone())))
                    .collect();
                names.sort();
                return Err(CredentialError::Ambiguous {
                    server: server.name.clone(),
                    target: first.meta.target.clone(),
                    teams: names.join(", "),
                });
            }
            let Some(row) = rows.first() else { continue };
            let dek = self.dek(&key.tenant, row.meta.key_version, &row.wrapped_dek).await?;
            let value = self.open_row(row, &dek)?;
            let m = &row.meta;
            match m.kind {
                CredentialKind::Env => env.push((m.target.clone(), value.clone())),
                CredentialKind::Header | CredentialKind::Bearer | CredentialKind::Basic => {
                    let rendered = match m.kind {
                        CredentialKind::Bearer => format!("Bearer {}", value.expose_secret()),
                        CredentialKind::Basic => {
                            use base64::Engine as _;
                            let b64 = base64::engine::general_purpose::STANDARD.encode(value.expose_secret());
                            if let Some((_, password)) = value.expose_secret().split_once(':') {
                                secrets.push(SecretString::from(password));
                            }
                            format!("Basic {b64}")
                        }
                        _ => value.expose_secret().to_owned(),
                    };
                    let name = http::HeaderName::from_bytes(m.target.as_bytes())
                        .map_err(|_| CredentialError::Integrity { server: server.name.clone() })?;
                    headers.push((name, SecretString::from(rendered)));
                }
            }
            secrets.push(value);
            used.push((m.id.clone(), m.tier));
            ids.push(format!("{}@{}", m.id, m.revision));
        }
        ids.sort();
        let redactor = Redactor::new(secrets.iter().map(|s| s.expose_secret()));
        Ok(Binding { key: Arc::from(ids.join(",")), env, headers, used, redactor })
    }

    /// Stores (or replaces) a credential; returns its metadata and whether it
    /// was created.
    pub async fn set(
        &self,
        tenant: &TenantId,
        server: &ServerRecord,
        new: NewValue<'_>,
        actor: &str,
    ) -> Result<(CredentialRecord, bool), CredentialError> {
        let NewValue { tier, subject, kind, target, value } = new;
        let target = validate_target(kind, target, server.transport)?;
        validate_value(kind, value)?;
        let slot = slot_of(kind, &target);
        let (user_id, team_id, scope_id) = match subject {
            Subject::User(u) => (Some(u.clone()), None, u.to_string()),
            Subject::Team(t) => (None, Some(t.clone()), t.to_string()),
            Subject::Org => (None, None, tenant.to_string()),
        };
        for _ in 0..3 {
            let (version, dek) = self.active_dek(tenant).await?;
            let existing = self.store.find_credential_slot(tenant, tier, &scope_id, &server.id, &slot).await?;
            let id = existing.as_ref().map_or_else(CredentialId::generate, |e| e.id.clone());
            let ctx = RecordContext {
                tenant_id: tenant.as_str(),
                tier: tier.as_str(),
                scope_id: &scope_id,
                credential_id: id.as_str(),
                key_version: version,
            };
            let sealed =
                moat_vault::seal(&dek, &ctx, value.expose_secret().as_bytes()).map_err(|e| self.provider_err(e))?;
            let outcome = match existing {
                Some(e) => self
                    .store
                    .update_credential_value(tenant, &id, e.revision, kind, &target, version, &sealed, Some(actor))
                    .await?
                    .map(|r| (r, false)),
                None => {
                    let new = NewCredential {
                        id: &id,
                        tier,
                        user_id: user_id.as_ref(),
                        team_id: team_id.as_ref(),
                        scope_id: &scope_id,
                        server_id: &server.id,
                        kind,
                        target: &target,
                        slot: &slot,
                        key_version: version,
                        sealed: &sealed,
                        actor: Some(actor),
                    };
                    match self.store.insert_credential(tenant, &new).await {
                        Ok(r) => Some((r, true)),
                        Err(StoreError::Conflict(_)) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if let Some(done) = outcome {
                self.invalidate_tenant(tenant);
                return Ok(done);
            }
        }
        Err(CredentialError::Invalid("the credential was changed concurrently; try again".into()))
    }

    /// Deletes a credential; returns what was deleted.
    pub async fn delete(&self, tenant: &TenantId, id: &CredentialId) -> Result<CredentialRecord, CredentialError> {
        let gone = self.store.delete_credential(tenant, id).await?.ok_or(CredentialError::NotFound("credential"))?;
        self.invalidate_tenant(tenant);
        Ok(gone)
    }

    /// The credentials of `used` whose `last_used_at` is due for a write
    /// (at most once a minute each, so a busy caller costs no database write
    /// per call); they are marked as written.
    pub fn due_for_touch<'a>(&self, used: impl IntoIterator<Item = &'a CredentialId>) -> Vec<CredentialId> {
        let mut due = Vec::new();
        for id in used {
            if self.touched.get(id).is_none() {
                self.touched.insert(id.clone(), ());
                due.push(id.clone());
            }
        }
        due
    }

    /// Records that credentials were used now (also throttled in the store,
    /// across replicas).
    pub async fn touch(&self, tenant: &TenantId, ids: &[CredentialId]) {
        if let Err(e) = self.store.touch_credentials_used(tenant, ids, moat_core::now_ms()).await {
            tracing::warn!(error = %e, "could not record credential use");
        }
    }

    /// Rotates a tenant's DEK: a new version, then every credential
    /// re-encrypted under it in batches (each its own transaction,
    /// conditional on the row not having changed), then the old versions
    /// deleted. Resumable and idempotent: a rotation cut short (a crash, a
    /// kill) is finished by the next call or at the next start, and reads
    /// keep working throughout because each row names its own key version.
    pub async fn rotate_tenant(&self, tenant: &TenantId, force_new: bool) -> Result<RotationReport, CredentialError> {
        let _guard = self.rotation.lock().await;
        let keys = self.store.tenant_keys(tenant).await?;
        let Some(active) = keys.last().map(|k| k.version) else {
            self.create_dek(tenant, 1).await?;
            return Ok(RotationReport { from_version: 0, to_version: 1, reencrypted: 0, resumed: false });
        };
        let unfinished = keys.len() > 1;
        let (from, target) = if unfinished || !force_new {
            (keys.first().map_or(active, |k| k.version), active)
        } else {
            let next = active + 1;
            if !self.create_dek(tenant, next).await? {
                tracing::info!(tenant = %tenant, "another replica created the new data key first; resuming with it");
            }
            (active, next)
        };
        let target_key = self
            .store
            .tenant_keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.version == target)
            .ok_or(CredentialError::NotFound("tenant key"))?;
        let target_dek = self.dek(tenant, target, &target_key.wrapped).await?;
        let batch = i64::try_from(self.options.rotation_batch.max(1)).unwrap_or(100);
        let mut done = 0u64;
        loop {
            let rows = self.store.credentials_below_version(tenant, target, batch).await?;
            if rows.is_empty() {
                break;
            }
            let mut progressed = false;
            for row in &rows {
                let m = &row.meta;
                let old = self.dek(tenant, m.key_version, &row.wrapped_dek).await?;
                let value = self.open_row(row, &old)?;
                let ctx = RecordContext {
                    tenant_id: tenant.as_str(),
                    tier: m.tier.as_str(),
                    scope_id: &m.scope_id,
                    credential_id: m.id.as_str(),
                    key_version: target,
                };
                let sealed = moat_vault::seal(&target_dek, &ctx, value.expose_secret().as_bytes())
                    .map_err(|e| self.provider_err(e))?;
                if self.store.reseal_credential(tenant, &m.id, m.key_version, m.revision, target, &sealed).await? {
                    done += 1;
                    progressed = true;
                }
            }
            if !progressed {
                // Every row of the batch changed under us (concurrent
                // updates write the newest version): read again.
                tokio::task::yield_now().await;
            }
            if !self.options.rotation_pause.is_zero() {
                tokio::time::sleep(self.options.rotation_pause).await;
            }
        }
        done += self.reseal_tenant_secrets(tenant, target, &target_dek).await?;
        for k in self.store.tenant_keys(tenant).await? {
            if k.version < target {
                match self.store.delete_tenant_key(tenant, k.version).await {
                    Ok(_) => self.deks.invalidate(&(tenant.clone(), k.version)),
                    Err(e) => tracing::warn!(tenant = %tenant, version = k.version, error = %e, "old data key kept"),
                }
            }
        }
        // Values are unchanged, but nothing decrypted under an old key outlives the rotation.
        self.invalidate_tenant(tenant);
        Ok(RotationReport { from_version: from, to_version: target, reencrypted: done, resumed: unfinished })
    }

    /// Finishes every DEK rotation left unfinished (at start).
    pub async fn resume_rotations(&self) -> Result<u64, CredentialError> {
        let mut n = 0;
        for tenant in self.store.tenants_with_keys_cross_tenant().await? {
            if self.store.tenant_keys(&tenant).await?.len() > 1 {
                let r = self.rotate_tenant(&tenant, false).await?;
                tracing::info!(tenant = %tenant, version = r.to_version, reencrypted = r.reencrypted, "finished an interrupted key rotation");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Rotates the KEK: every tenant's DEKs re-wrapped under the provider's
    /// current (new) KEK. Resumable: re-wrapping an already re-wrapped DEK is
    /// harmless, and the old KEK is retired only after all succeeded.
    pub async fn rotate_kek(&self) -> Result<KekReport, CredentialError> {
        let _guard = self.rotation.lock().await;
        self.provider.begin_kek_rotation().await.map_err(|e| self.provider_err(e))?;
        let (mut tenants, mut deks) = (0u64, 0u64);
        for tenant in self.store.tenants_with_keys_cross_tenant().await? {
            let keys = self.store.tenant_keys(&tenant).await?;
            for k in &keys {
                let ctx = KeyContext { tenant_id: tenant.as_str(), version: k.version };
                let rewrapped = self.provider.rewrap_dek(&ctx, &k.wrapped).await.map_err(|e| self.provider_err(e))?;
                self.store.update_tenant_key_wrapping(&tenant, k.version, &rewrapped, self.provider.name()).await?;
                deks += 1;
            }
            tenants += u64::from(!keys.is_empty());
        }
        self.provider.finish_kek_rotation().await.map_err(|e| self.provider_err(e))?;
        self.bindings.clear();
        self.deks.clear();
        Ok(KekReport { provider: self.provider.name().to_owned(), tenants, deks })
    }
}

/// Whose credential: a user (personal, service), a team, or the tenant.
#[derive(Clone, Debug)]
pub enum Subject {
    /// A user or machine identity.
    User(UserId),
    /// A team.
    Team(TeamId),
    /// The organisation.
    Org,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_share_authorization_between_header_kinds() {
        assert_eq!(slot_of(CredentialKind::Bearer, "Authorization"), "header:authorization");
        assert_eq!(slot_of(CredentialKind::Basic, "Authorization"), "header:authorization");
        assert_eq!(slot_of(CredentialKind::Header, "X-API-Key"), "header:x-api-key");
        assert_eq!(slot_of(CredentialKind::Env, "GITHUB_TOKEN"), "env:GITHUB_TOKEN");
    }

    #[test]
    fn targets_are_checked_against_the_transport_and_deny_lists() {
        let ok = |k, t, tr| validate_target(k, t, tr).is_ok();
        assert!(ok(CredentialKind::Env, "GITHUB_TOKEN", Transport::Stdio));
        assert!(!ok(CredentialKind::Env, "GITHUB_TOKEN", Transport::StreamableHttp));
        assert!(!ok(CredentialKind::Header, "X-Api-Key", Transport::Stdio));
        assert!(ok(CredentialKind::Header, "X-Api-Key", Transport::Sse));
        for bad in ["LD_PRELOAD", "ld_library_path", "NODE_OPTIONS", "PATH", "1ABC", "A-B", "", "GIT_SSH_COMMAND"] {
            assert!(!ok(CredentialKind::Env, bad, Transport::Stdio), "{bad}");
        }
        for bad in ["Host", "content-length", "Mcp-Session-Id", "Proxy-Authorization", "bad header", ""] {
            assert!(!ok(CredentialKind::Header, bad, Transport::StreamableHttp), "{bad}");
        }
        assert_eq!(validate_target(CredentialKind::Bearer, "", Transport::Sse).unwrap(), "Authorization");
    }

    #[test]
    fn values_are_checked_without_being_echoed() {
        let v = |s: &str| SecretString::from(s);
        assert!(validate_value(CredentialKind::Header, &v("abc")).is_err());
        let e = validate_value(CredentialKind::Header, &v("line1\nline2-secret")).unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        assert!(validate_value(CredentialKind::Basic, &v("no-colon-here")).is_err());
        assert!(validate_value(CredentialKind::Basic, &v("user:pass")).is_ok());
        assert!(validate_value(CredentialKind::Env, &v("multi\nline ok")).is_ok());
        assert!(validate_value(CredentialKind::Env, &v("nul\0byte")).is_err());
        assert!(validate_value(CredentialKind::Env, &v(&"x".repeat(MAX_VALUE_BYTES + 1))).is_err());
    }

    #[test]
    fn bindings_inject_headers_and_env_over_configured_ones() {
        let mut b = Binding::none();
        b.env.push(("TOKEN".into(), SecretString::from("from-vault")));
        b.headers.push((http::header::AUTHORIZATION, SecretString::from("Bearer from-vault")));
        let base = UpstreamSpec::Stdio {
            command: "x".into(),
            args: vec![],
            env: BTreeMap::from([("TOKEN".into(), SecretString::from("configured"))]),
            cwd: None,
        };
        match b.apply(&base) {
            UpstreamSpec::Stdio { env, .. } => assert_eq!(env["TOKEN"].expose_secret(), "from-vault"),
            _ => unreachable!(),
        }
        let base = UpstreamSpec::StreamableHttp {
            url: "http://h/mcp".into(),
            headers: vec![(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer configured"))],
        };
        match b.apply(&base) {
            UpstreamSpec::StreamableHttp { headers, url } => {
                assert_eq!(url, "http://h/mcp");
                assert_eq!(headers.len(), 1);
                assert_eq!(headers[0].1, "Bearer from-vault");
                assert!(headers[0].1.is_sensitive());
            }
            _ => unreachable!(),
        }
    }
}
