//! DNS-rebinding and cross-origin protection: `Host` and `Origin` must be on
//! the allowlist (the listen address's own names plus configured ones), or
//! the request is refused with 403 before anything else runs.

use crate::config::GatewayConfig;
use axum::http::HeaderMap;

/// The allowlists, computed once at start.
#[derive(Clone, Debug)]
pub struct OriginGuard {
    hosts: Vec<String>,
    origins: Vec<String>,
    any_host: bool,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum GuardRefusal {
    /// The Host header is not allowed.
    Host,
    /// The Origin header is not allowed.
    Origin,
}

impl OriginGuard {
    /// Builds the allowlists for a configuration.
    pub fn new(cfg: &GatewayConfig) -> Self {
        let port = cfg.listen.port();
        let mut hosts: Vec<String> = vec![
            cfg.listen.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        if port == 80 {
            hosts.extend(["localhost".into(), "127.0.0.1".into(), "[::1]".into()]);
        }
        let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
        if let Some(url) = &cfg.public_url
            && let Some(origin) = origin_of(url)
        {
            if let Some(host) = origin.split_once("://").map(|(_, h)| h.to_owned()) {
                hosts.push(host);
            }
            origins.push(origin);
        }
        hosts.extend(cfg.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        origins.extend(cfg.allowed_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()));
        let any_host = cfg.allowed_hosts.iter().any(|h| h == "*");
        Self { hosts, origins, any_host }
    }

    /// Checks a request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), GuardRefusal> {
        if !self.any_host
            && let Some(host) = headers.get(http::header::HOST)
        {
            let host = host.to_str().map_err(|_| GuardRefusal::Host)?.to_ascii_lowercase();
            if !self.hosts.contains(&host) {
                return Err(GuardRefusal::Host);
            }
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| GuardRefusal::Origin)?.to_ascii_lowercase();
            if !self.origins.contains(&origin) {
                return Err(GuardRefusal::Origin);
            }
        }
        Ok(())
    }
}

/// `scheme://host[:port]` of a URL, lowercased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> OriginGuard {
        let mut cfg = GatewayConfig::new("127.0.0.1:8080".parse().unwrap());
        cfg.allowed_origins = vec!["https://app.example.com/".into()];
        OriginGuard::new(&cfg)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn allows_own_names_and_configured_origins() {
        let g = guard();
        assert_eq!(g.check(&headers(&[("host", "127.0.0.1:8080")])), Ok(()));
        assert_eq!(g.check(&headers(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")])), Ok(()));
        assert_eq!(g.check(&headers(&[("origin", "https://app.example.com")])), Ok(()));
        assert_eq!(g.check(&headers(&[])), Ok(()));
    }

    #[test]
    fn refuses_rebinding_and_foreign_origins() {
        let g = guard();
        assert_eq!(g.check(&headers(&[("host", "evil.example:8080")])), Err(GuardRefusal::Host));
        assert_eq!(g.check(&headers(&[("origin", "http://evil.example")])), Err(GuardRefusal::Origin));
        assert_eq!(g.check(&headers(&[("origin", "null")])), Err(GuardRefusal::Origin));
        assert_eq!(g.check(&headers(&[("origin", "http://localhost:9999")])), Err(GuardRefusal::Origin));
    }
}
