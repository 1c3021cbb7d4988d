//! The gateway's typed, validated configuration. Parsing (file, env, flags)
//! lives in the `moat` binary; this is what it produces.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the request path needs to know about its deployment.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Externally visible base URL (for `resource_metadata`), e.g.
    /// `https://moat.example.com`. Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Origins allowed on browser requests, besides the listen address's own.
    pub allowed_origins: Vec<String>,
    /// Host header values allowed, besides the listen address's own.
    pub allowed_hosts: Vec<String>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Default deadline of one upstream call.
    pub call_timeout: Duration,
    /// Calls in flight per upstream.
    pub upstream_max_concurrency: usize,
    /// How long an idle legacy session lives.
    pub session_idle_timeout: Duration,
    /// Most legacy sessions kept at once (oldest idle evicted first).
    pub max_sessions: usize,
    /// How long a verified API key stays in the verification cache.
    pub key_cache_ttl: Duration,
    /// How long an upstream's list results are cached (refreshed earlier on
    /// `list_changed`).
    pub list_cache_ttl: Duration,
    /// The authorization server and identity settings.
    pub oauth: OAuthConfig,
}

/// The authorization server's deployment-wide settings (`[oauth]`).
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// Access-token lifetime (default 15 minutes).
    pub access_token_ttl: Duration,
    /// Refresh-token lifetime (each rotation starts a new one).
    pub refresh_token_ttl: Duration,
    /// Authorization-code lifetime.
    pub code_ttl: Duration,
    /// How long a user has to finish logging in and consenting.
    pub pending_ttl: Duration,
    /// Browser-session lifetime.
    pub session_ttl: Duration,
    /// Algorithm of newly created tenant signing keys.
    pub signing_alg: moat_auth::SigningAlg,
    /// How long a rotated-out signing key stays in the JWKS (tokens it
    /// signed keep verifying); never shorter than the access-token lifetime.
    pub key_grace: Duration,
    /// RFC 7591 dynamic registration is open (each tenant can still refuse
    /// to authorize such clients).
    pub dynamic_registration: bool,
    /// Client ID Metadata Documents are fetched and accepted.
    pub client_metadata_documents: bool,
    /// Metadata documents and identity providers may live on private or
    /// loopback addresses (tests, labs); off in production.
    pub allow_private_urls: bool,
    /// Requests per minute per source address on `/oauth/*`.
    pub requests_per_minute: u32,
    /// Failed authentications per minute per client and per source address
    /// before further attempts get 429.
    pub failures_per_minute: u32,
    /// Dynamic registrations per hour per source address.
    pub registrations_per_hour: u32,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            code_ttl: Duration::from_secs(60),
            pending_ttl: Duration::from_secs(10 * 60),
            session_ttl: Duration::from_secs(8 * 3600),
            signing_alg: moat_auth::SigningAlg::Rs256,
            key_grace: Duration::from_secs(3600),
            dynamic_registration: true,
            client_metadata_documents: true,
            allow_private_urls: false,
            requests_per_minute: 300,
            failures_per_minute: 20,
            registrations_per_hour: 30,
        }
    }
}

impl GatewayConfig {
    /// Defaults for a gateway listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_url: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            call_timeout: Duration::from_secs(60),
            upstream_max_concurrency: 32,
            session_idle_timeout: Duration::from_secs(30 * 60),
            max_sessions: 10_000,
            key_cache_ttl: Duration::from_secs(60),
            list_cache_ttl: Duration::from_secs(300),
            oauth: OAuthConfig::default(),
        }
    }

    /// The base URL clients reach moat at.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}
