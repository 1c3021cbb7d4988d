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
