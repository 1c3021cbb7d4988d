//! Redirect URIs and resource indicators: what may be registered, what
//! matches, and which resource a request addresses.
//!
//! * Registration (RFC 8252, OAuth 2.1 §2.3.1): absolute, no fragment;
//!   `https`, `http` only on a loopback host, or a private-use scheme of a
//!   native app (`com.example.app:/cb`, `cursor://…`).
//! * Matching (OAuth 2.1 §4.1.1): exact string comparison, except that a
//!   loopback `http` redirect may use any port (RFC 8252 §7.3), because
//!   native apps bind an ephemeral one.
//! * Resources (RFC 8707): a URL on this gateway's own origin, without query
//!   or fragment; the token's audience.

use url::Url;

/// Why a redirect URI or resource is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    /// Not an absolute URL.
    #[error("`{0}` is not an absolute URL")]
    NotAbsolute(String),
    /// Carries a fragment.
    #[error("a redirect URI must not contain a fragment")]
    Fragment,
    /// Plain http to a non-loopback host.
    #[error("http redirect URIs are allowed only on a loopback host (127.0.0.1, [::1], localhost)")]
    InsecureHttp,
    /// A scheme that cannot be a native app's (javascript:, data:, file:, …).
    #[error("redirect URI scheme `{0}` is not allowed")]
    Scheme(String),
    /// A resource outside this gateway.
    #[error("the resource must be a URL of this gateway ({0})")]
    ForeignResource(String),
}

const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss"];

/// True for the loopback hosts of RFC 8252 §7.3 (and `localhost`, which
/// most MCP clients use).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks a redirect URI at registration.
pub fn validate_redirect_uri(raw: &str) -> Result<Url, UriError> {
    let url = Url::parse(raw).map_err(|_| UriError::NotAbsolute(truncate(raw)))?;
    if url.fragment().is_some() || raw.contains('#') {
        return Err(UriError::Fragment);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => Err(UriError::InsecureHttp),
        s if FORBIDDEN_SCHEMES.contains(&s) => Err(UriError::Scheme(s.to_owned())),
        // A private-use scheme names an app: it needs a dot or a path to be
        // anything but a bare word, and cannot target a host the app does not own.
        _ => Ok(url),
    }
}

/// True when `presented` matches one of `registered`.
pub fn redirect_matches(registered: &[String], presented: &str) -> bool {
    if registered.iter().any(|r| r == presented) {
        return true;
    }
    let Ok(p) = Url::parse(presented) else { return false };
    if p.scheme() != "http" || !is_loopback_host(&p) || p.fragment().is_some() {
        return false;
    }
    registered.iter().filter_map(|r| Url::parse(r).ok()).any(|r| {
        r.scheme() == "http"
            && is_loopback_host(&r)
            && r.host_str() == p.host_str()
            && r.path() == p.path()
            && r.query() == p.query()
            && r.username() == p.username()
            && r.password() == p.password()
    })
}

/// Validates a requested resource: on `base`'s origin, no query or
/// fragment. Returns its canonical form (no trailing slash).
pub fn canonical_resource(base: &str, raw: &str) -> Result<String, UriError> {
    let foreign = || UriError::ForeignResource(base.to_owned());
    let url = Url::parse(raw).map_err(|_| foreign())?;
    let base_url = Url::parse(base).map_err(|_| foreign())?;
    if url.origin() != base_url.origin() || url.query().is_some() || url.fragment().is_some() {
        return Err(foreign());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(foreign());
    }
    let path = url.path().trim_end_matches('/');
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(foreign());
    }
    Ok(format!("{}{}", base.trim_end_matches('/'), path))
}

/// The resource a request path addresses, for the audience check:
/// `/mcp/x` → `<base>/mcp/x`. The legacy `/messages` endpoint belongs to
/// the SSE stream it posts into, checked when that stream was opened, so it
/// addresses `<base>/sse`.
pub fn resource_of_path(base: &str, path: &str) -> String {
    let path = if path.starts_with("/messages") { "/sse" } else { path };
    format!("{}{}", base.trim_end_matches('/'), path.trim_end_matches('/'))
}

/// The origin (`scheme://host[:port]`) of a URL, as browsers send it in `Origin`.
pub fn origin_of(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    match url.origin() {
        o @ url::Origin::Tuple(..) => Some(o.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(validate_redirect_uri("https://app.example/cb").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:3000/callback").is_ok());
        assert!(validate_redirect_uri("http://localhost/callback").is_ok());
        assert!(validate_redirect_uri("http://[::1]:9/cb").is_ok());
        assert!(validate_redirect_uri("cursor://anysphere.cursor-retrieval/oauth/callback").is_ok());
        assert_eq!(validate_redirect_uri("http://app.example/cb"), Err(UriError::InsecureHttp));
        assert_eq!(validate_redirect_uri("https://app.example/cb#x"), Err(UriError::Fragment));
        assert!(matches!(validate_redirect_uri("javascript:alert(1)"), Err(UriError::Scheme(_))));
        assert!(matches!(validate_redirect_uri("/relative"), Err(UriError::NotAbsolute(_))));
    }

    #[test]
    fn matching_is_exact_but_loopback_ports_vary() {
        let reg = vec!["http://127.0.0.1:3000/callback".to_owned(), "https://app.example/cb".to_owned()];
        assert!(redirect_matches(&reg, "https://app.example/cb"));
        assert!(redirect_matches(&reg, "http://127.0.0.1:51234/callback"));
        assert!(redirect_matches(&reg, "http://127.0.0.1/callback"));
        assert!(!redirect_matches(&reg, "http://127.0.0.1:51234/other"));
        assert!(!redirect_matches(&reg, "http://localhost:3000/callback"));
        assert!(!redirect_matches(&reg, "https://app.example/cb/"));
        assert!(!redirect_matches(&reg, "https://app.example/cb?x=1"));
        assert!(!redirect_matches(&reg, "https://app.example:443/cb2"));
        assert!(!redirect_matches(&reg, "https://evil.example/cb"));
        assert!(!redirect_matches(&reg, "http://127.0.0.1:3000/callback#frag"));
    }

    #[test]
    fn resources_are_on_this_gateway() {
        let base = "http://127.0.0.1:8080";
        assert_eq!(canonical_resource(base, "http://127.0.0.1:8080/mcp/").unwrap(), "http://127.0.0.1:8080/mcp");
        assert_eq!(canonical_resource(base, "http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert!(canonical_resource(base, "http://127.0.0.1:9999/mcp").is_err());
        assert!(canonical_resource(base, "https://127.0.0.1:8080/mcp").is_err());
        assert!(canonical_resource(base, "http://127.0.0.1:8080/mcp?x=1").is_err());
        assert!(canonical_resource(base, "http://evil.example/mcp").is_err());
        assert!(canonical_resource(base, "not a url").is_err());
        assert_eq!(resource_of_path(base, "/mcp/github"), "http://127.0.0.1:8080/mcp/github");
        assert_eq!(resource_of_path(base, "/messages"), "http://127.0.0.1:8080/sse");
        assert_eq!(origin_of("https://App.example:443/x").as_deref(), Some("https://app.example"));
    }
}
