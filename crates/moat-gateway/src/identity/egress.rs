//! The egress guard: outbound HTTP to URLs that clients or tenants supply
//! (client metadata documents, identity providers) must not reach private,
//! loopback, link-local or cloud-metadata addresses, unless the deployment
//! allows it (labs and tests).
//!
//! The check runs inside the HTTP client's DNS resolver, on the addresses
//! actually connected to, so a name that resolves to a public address at
//! check time and a private one at connect time (DNS rebinding) gains
//! nothing. IP-literal hosts never reach a resolver and are checked before
//! the request. Redirects are not followed; bodies are size- and
//! time-limited by the caller ([`fetch_limited`]).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Why an outbound fetch was refused or failed. Messages name the host at
/// most, never a body.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The URL is malformed or not http(s).
    #[error("not an http(s) URL")]
    BadUrl,
    /// The host is, or resolves to, an address the guard refuses.
    #[error("{0} resolves to a private, loopback or link-local address, which moat does not fetch")]
    Private(String),
    /// Network failure, timeout or non-success status.
    #[error("fetching from {host} failed: {why}")]
    Failed {
        /// The host.
        host: String,
        /// What went wrong (no body content).
        why: String,
    },
    /// The response is larger than allowed.
    #[error("the response from {0} is too large")]
    TooLarge(String),
}

/// True for an address outside the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let seg = v6.segments();
            // NAT64 (64:ff9b::/96) embeds an IPv4 address.
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                let [a, b] = seg[6].to_be_bytes();
                let [c, d] = seg[7].to_be_bytes();
                return private_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) // AWS IMDS over IPv6
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // 169.254/16: cloud metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
}

/// A resolver that drops refused addresses (and fails when none is left).
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| allow_private || !is_private(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(EgressError::Private(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client behind the guard.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    allow_private: bool,
}

impl Egress {
    /// A guarded client; `allow_private` lifts the address check.
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, EgressError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EgressError::Failed { host: String::new(), why: e.to_string() })?;
        Ok(Self { client, allow_private })
    }

    /// Checks a URL before any request: http(s), and an IP-literal host
    /// must pass the address check (names are checked at resolution).
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::BadUrl);
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(EgressError::BadUrl),
        };
        if let Some(ip) = ip
            && !self.allow_private
            && is_private(ip)
        {
            return Err(EgressError::Private(ip.to_string()));
        }
        Ok(())
    }

    /// The underlying client (for form posts to a checked URL).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// GETs `url` as JSON through the guard: success status, at most
/// `max_bytes` of body, within the client's timeout.
pub async fn fetch_limited(
    egress: &Egress,
    url: &url::Url,
    max_bytes: usize,
) -> Result<serde_json::Value, EgressError> {
    egress.check_url(url)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let failed = |why: String| EgressError::Failed { host: host.clone(), why };
    let resp = egress
        .client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| classify(&host, &e))?;
    if !resp.status().is_success() {
        return Err(failed(format!("status {}", resp.status().as_u16())));
    }
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(EgressError::TooLarge(host));
    }
    let body = read_capped(resp, max_bytes).await.map_err(|e| match e {
        Capped::TooLarge => EgressError::TooLarge(host.clone()),
        Capped::Io(why) => failed(why),
    })?;
    serde_json::from_slice(&body).map_err(|_| failed("the response is not JSON".into()))
}

enum Capped {
    TooLarge,
    Io(String),
}

async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, Capped> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Capped::Io(e.to_string()))? {
        if body.len() + chunk.len() > max {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns a reqwest error into a guard error, recognising the resolver's refusal.
pub fn classify(host: &str, err: &reqwest::Error) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(EgressError::Private(h)) = e.downcast_ref::<EgressError>() {
            return EgressError::Private(h.clone());
        }
        source = e.source();
    }
    let why = if err.is_timeout() { "timed out".to_owned() } else { "connection failed".to_owned() };
    EgressError::Failed { host: host.to_owned(), why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_private_hosts_are_refused() {
        let g = Egress::new(false, Duration::from_secs(2)).unwrap();
        let url = url::Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(matches!(fetch_limited(&g, &url, 1024).await, Err(EgressError::Private(_))));
        let url = url::Url::parse("http://localhost:9/x").unwrap();
        assert!(matches!(fetch_limited(&g, &url, 1024).await, Err(EgressError::Private(_))));
        let url = url::Url::parse("file:///etc/passwd").unwrap();
        assert!(matches!(fetch_limited(&g, &url, 1024).await, Err(EgressError::BadUrl)));
    }
}
