//! The "vault-transit" key provider: tenant DEKs are HashiCorp Vault (or OpenBao) Transit data keys.
//!
//! - generate: `POST /v1/{mount}/datakey/plaintext/{key}` → base64 `plaintext` + `vault:vN:…`;
//! - unwrap: `POST /v1/{mount}/decrypt/{key}`;
//! - rewrap: `POST /v1/{mount}/rewrap/{key}` (to the key's latest version, inside Vault);
//! - check: `GET /v1/{mount}/keys/{key}`;
//! - begin rotation: `POST /v1/{mount}/keys/{key}/rotate`; finish: nothing (older key versions are
//!   retired by the operator raising `min_decryption_version` once every DEK was re-wrapped).
//!
//! A wrapped DEK is stored as the UTF-8 bytes of Vault's `vault:vN:…` string. Every call sends
//! `context` = base64(lp("moat-dek-v1") ‖ lp(tenant) ‖ lp(version)); Vault binds it to the
//! ciphertext only for a transit key created with `derived=true` (recommended: a wrapped DEK then
//! does not unwrap for another tenant or version) and ignores it otherwise.
//!
//! The token goes in `X-Vault-Token` (a header marked sensitive), the namespace in
//! `X-Vault-Namespace`. Redirects are not followed (the token must not travel elsewhere). Error
//! messages carry Vault's `errors` text for refusals, never a success body (which holds key material).
//! Timeouts: connect 3 s, request 10 s, and the whole call including retries 10 s.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{KeyContext, KeyProvider, clip, dek_binding};
use crate::{Dek, VaultError};

const NAME: &str = "vault-transit";
/// Largest response body read (Vault's answers are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;
const ATTEMPTS: u32 = 3;
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Configuration of the Vault Transit provider.
#[derive(Debug, Clone)]
pub struct VaultTransitConfig {
    /// Vault's address, e.g. `https://vault.internal:8200`.
    pub addr: String,
    /// The Vault token (needs `update` on datakey/decrypt/rewrap/rotate and `read` on the key).
    pub token: SecretString,
    /// The transit key's name.
    pub key: String,
    /// Where the transit engine is mounted ([`VaultTransitConfig::DEFAULT_MOUNT`] by default).
    pub mount: String,
    /// A Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
}

impl VaultTransitConfig {
    /// The transit engine's default mount path.
    pub const DEFAULT_MOUNT: &'static str = "transit";

    /// A configuration with the default mount and no namespace.
    pub fn new(addr: impl Into<String>, token: SecretString, key: impl Into<String>) -> Self {
        Self { addr: addr.into(), token, key: key.into(), mount: Self::DEFAULT_MOUNT.to_owned(), namespace: None }
    }
}

/// The Vault Transit key provider.
pub struct VaultTransitProvider {
    http: reqwest::Client,
    /// `{addr}/v1/{mount}/`, always ending in a slash.
    base: Url,
    key: String,
    token: SecretString,
    namespace: Option<String>,
}

impl std::fmt::Debug for VaultTransitProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransitProvider")
            .field("base", &self.base.as_str())
            .field("key", &self.key)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Which call failed, for messages and error mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    DataKey,
    Decrypt,
    Rewrap,
    ReadKey,
    Rotate,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::DataKey => "datakey",
            Op::Decrypt => "decrypt",
            Op::Rewrap => "rewrap",
            Op::ReadKey => "read key",
            Op::Rotate => "rotate",
        }
    }

    /// Whether a retry after a server error or a timeout is harmless. A rotation is not retried
    /// then: it may have happened, and a second one would add a key version.
    fn retry_after_answer(self) -> bool {
        self != Op::Rotate
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct DataKeyData {
    plaintext: Zeroizing<String>,
    ciphertext: String,
}

#[derive(Deserialize)]
struct DecryptData {
    plaintext: Zeroizing<String>,
}

#[derive(Deserialize)]
struct RewrapData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// A name usable as a URL path segment (key names) or path (mounts, with `/`).
fn valid_name(s: &str, allow_slash: bool) -> bool {
    !s.is_empty()
        && s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || (allow_slash && c == '/'))
}

impl VaultTransitProvider {
    /// Builds the provider (no request is made: call [`KeyProvider::check`] for readiness).
    pub fn new(config: VaultTransitConfig) -> Result<Self, VaultError> {
        let cfg = |m: &str| VaultError::Config(format!("{NAME}: {m}"));
        let mut addr = Url::parse(config.addr.trim()).map_err(|e| cfg(&format!("addr is not a URL: {e}")))?;
        if !matches!(addr.scheme(), "http" | "https") || addr.host_str().is_none() {
            return Err(cfg("addr must be an http:// or https:// URL with a host"));
        }
        if !addr.username().is_empty() || addr.password().is_some() || addr.query().is_some() {
            return Err(cfg("addr must not carry credentials or a query"));
        }
        let mount = config.mount.trim_matches('/');
        if !valid_name(mount, true) {
            return Err(cfg("mount must be a path of letters, digits, '-', '_' and '.'"));
        }
        if !valid_name(&config.key, false) {
            return Err(cfg("key must be a name of letters, digits, '-', '_' and '.'"));
        }
        if config.token.expose_secret().is_empty() {
            return Err(cfg("token is empty"));
        }
        if HeaderValue::from_str(config.token.expose_secret()).is_err() {
            return Err(cfg("token contains characters not allowed in an HTTP header"));
        }
        if let Some(ns) = &config.namespace
            && HeaderValue::from_str(ns).is_err()
        {
            return Err(cfg("namespace contains characters not allowed in an HTTP header"));
        }
        let path = format!("{}/v1/{mount}/", addr.path().trim_end_matches('/'));
        addr.set_path(&path);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| cfg(&format!("could not build the HTTP client: {e}")))?;
        Ok(Self { http, base: addr, key: config.key, token: config.token, namespace: config.namespace })
    }

    fn url(&self, path: &str) -> Result<Url, VaultError> {
        self.base.join(path).map_err(|e| VaultError::Config(format!("{NAME}: bad request path: {e}")))
    }

    fn headers(&self) -> Result<HeaderMap, VaultError> {
        let mut headers = HeaderMap::new();
        let mut token = HeaderValue::from_str(self.token.expose_secret())
            .map_err(|_| VaultError::Config(format!("{NAME}: token is not a valid header value")))?;
        token.set_sensitive(true);
        headers.insert("X-Vault-Token", token);
        if let Some(ns) = &self.namespace {
            let ns = HeaderValue::from_str(ns)
                .map_err(|_| VaultError::Config(format!("{NAME}: namespace is not a valid header value")))?;
            headers.insert("X-Vault-Namespace", ns);
        }
        Ok(headers)
    }

    /// Makes one call, retrying connection failures (and, except for rotate, timeouts and 5xx),
    /// within [`CALL_DEADLINE`]. Returns the success body.
    async fn call(
        &self,
        op: Op,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let url = self.url(path)?;
        let attempt_loop = async {
            let mut last = None;
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 << (attempt - 1))).await;
                }
                match self.attempt(op, method.clone(), url.clone(), body.as_ref()).await {
                    Ok(body) => return Ok(body),
                    Err(Attempt::Final(e)) => return Err(e),
                    Err(Attempt::Retry(e)) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| VaultError::Unavailable(format!("{NAME} did not answer {}", op.as_str()))))
        };
        match tokio::time::timeout(CALL_DEADLINE, attempt_loop).await {
            Ok(result) => result,
            Err(_) => Err(VaultError::Unavailable(format!("{NAME} did not answer {} in time", op.as_str()))),
        }
    }

    async fn attempt(
        &self,
        op: Op,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Zeroizing<Vec<u8>>, Attempt> {
        let mut req = self.http.request(method, url).headers(self.headers().map_err(Attempt::Final)?);
        if let Some(body) = body {
            req = req.json(body);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = VaultError::Unavailable(format!("{NAME} did not answer {}: {}", op.as_str(), describe(&e)));
                // A refused connection never reached Vault: always safe to retry.
                return Err(if e.is_connect() || op.retry_after_answer() {
                    Attempt::Retry(err)
                } else {
                    Attempt::Final(err)
                });
            }
        };
        let status = resp.status();
        let limit = if status.is_success() { MAX_BODY } else { 64 * 1024 };
        let mut body = Zeroizing::new(Vec::new());
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(Attempt::Final(VaultError::Corrupt(format!(
                            "{NAME}: the {} answer is too large",
                            op.as_str()
                        ))));
                    }
                    // Grow by hand so that no reallocation leaves an unwiped copy behind.
                    if body.capacity() < body.len() + chunk.len() {
                        let mut bigger = Zeroizing::new(Vec::with_capacity((body.len() + chunk.len()).max(1024) * 2));
                        bigger.extend_from_slice(&body);
                        body = bigger;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let err = VaultError::Unavailable(format!(
                        "{NAME} broke off its {} answer: {}",
                        op.as_str(),
                        describe(&e)
                    ));
                    return Err(if op.retry_after_answer() { Attempt::Retry(err) } else { Attempt::Final(err) });
                }
            }
        }
        if status.is_success() {
            return Ok(body);
        }
        Err(self.status_error(op, status, &body))
    }

    fn status_error(&self, op: Op, status: StatusCode, body: &[u8]) -> Attempt {
        let errors = serde_json::from_slice::<ErrorBody>(body).map(|b| b.errors.join("; ")).unwrap_or_default();
        let detail = if errors.is_empty() { String::new() } else { format!(": {}", clip(&errors, 200)) };
        let op_s = op.as_str();
        let code = status.as_u16();
        match status {
            StatusCode::BAD_REQUEST if matches!(op, Op::Decrypt | Op::Rewrap) => Attempt::Final(VaultError::Decrypt),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Attempt::Final(VaultError::Denied(format!("{NAME} refused {op_s} ({code}){detail}")))
            }
            StatusCode::NOT_FOUND => Attempt::Final(VaultError::Denied(format!(
                "{NAME}: {op_s}: transit key {:?} or its mount not found ({code}){detail}",
                self.key
            ))),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                let err = VaultError::Unavailable(format!("{NAME} answered {code} to {op_s}{detail}"));
                if op.retry_after_answer() { Attempt::Retry(err) } else { Attempt::Final(err) }
            }
            _ => Attempt::Final(VaultError::Denied(format!("{NAME} refused {op_s} ({code}){detail}"))),
        }
    }

    fn context(ctx: &KeyContext<'_>) -> String {
        STANDARD.encode(dek_binding(ctx))
    }

    /// The stored form must be a `vault:vN:…` string; anything else cannot be ours.
    fn wrapped_str(wrapped: &[u8]) -> Result<&str, VaultError> {
        match std::str::from_utf8(wrapped) {
            Ok(s) if s.starts_with("vault:v") => Ok(s),
            _ => Err(VaultError::Decrypt),
        }
    }

    fn parse<'a, T: Deserialize<'a>>(op: Op, body: &'a [u8]) -> Result<T, VaultError> {
        serde_json::from_slice::<Envelope<T>>(body)
            .map(|e| e.data)
            // serde_json's message names the position and expected shape, never the input's text.
            .map_err(|_| VaultError::Corrupt(format!("{NAME}: unexpected {} answer", op.as_str())))
    }
}

/// How one attempt failed.
enum Attempt {
    Retry(VaultError),
    Final(VaultError),
}

/// A reqwest error and its sources on one line (e.g. "… tcp connect error: Connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    clip(&out, 300)
}

fn decode_key(op: Op, b64: &str) -> Result<Dek, VaultError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| VaultError::Corrupt(format!("{NAME}: the {} answer's key is not base64", op.as_str())))?,
    );
    Dek::from_bytes(&bytes)
}

#[async_trait::async_trait]
impl KeyProvider for VaultTransitProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn generate_dek(&self, ctx: &KeyContext<'_>) -> Result<(Dek, Vec<u8>), VaultError> {
        let body = serde_json::json!({ "context": Self::context(ctx), "bits": 256 });
        let resp = self.call(Op::DataKey, Method::POST, &format!("datakey/plaintext/{}", self.key), Some(body)).await?;
        let data: DataKeyData = Self::parse(Op::DataKey, &resp)?;
        let dek = decode_key(Op::DataKey, &data.plaintext)?;
        Self::wrapped_str(data.ciphertext.as_bytes())
            .map_err(|_| VaultError::Corrupt(format!("{NAME}: the datakey answer's ciphertext is not vault:v…")))?;
        Ok((dek, data.ciphertext.into_bytes()))
    }

    async fn unwrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Dek, VaultError> {
        let ciphertext = Self::wrapped_str(wrapped)?;
        let body = serde_json::json!({ "ciphertext": ciphertext, "context": Self::context(ctx) });
        let resp = self.call(Op::Decrypt, Method::POST, &format!("decrypt/{}", self.key), Some(body)).await?;
        let data: DecryptData = Self::parse(Op::Decrypt, &resp)?;
        decode_key(Op::Decrypt, &data.plaintext)
    }

    async fn rewrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        let ciphertext = Self::wrapped_str(wrapped)?;
        let body = serde_json::json!({ "ciphertext": ciphertext, "context": Self::context(ctx) });
        let resp = self.call(Op::Rewrap, Method::POST, &format!("rewrap/{}", self.key), Some(body)).await?;
        let data: RewrapData = Self::parse(Op::Rewrap, &resp)?;
        Self::wrapped_str(data.ciphertext.as_bytes())
            .map_err(|_| VaultError::Corrupt(format!("{NAME}: the rewrap answer's ciphertext is not vault:v…")))?;
        Ok(data.ciphertext.into_bytes())
    }

    async fn check(&self) -> Result<(), VaultError> {
        self.call(Op::ReadKey, Method::GET, &format!("keys/{}", self.key), None).await.map(drop)
    }

    async fn begin_kek_rotation(&self) -> Result<(), VaultError> {
        // Vault answers 200 with the key's description (newer) or 204 (older).
        self.call(Op::Rotate, Method::POST, &format!("keys/{}/rotate", self.key), None).await.map(drop)
    }

    async fn finish_kek_rotation(&self) -> Result<(), VaultError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str) -> VaultTransitConfig {
        VaultTransitConfig::new(addr, SecretString::from("s.token"), "moat")
    }

    #[test]
    fn validates_config() {
        assert!(VaultTransitProvider::new(cfg("http://127.0.0.1:8200")).is_ok());
        let p = VaultTransitProvider::new(cfg("https://vault.example:8200/prefix/")).unwrap();
        assert_eq!(
            p.url("decrypt/moat").unwrap().as_str(),
            "https://vault.example:8200/prefix/v1/transit/decrypt/moat"
        );
        let mut c = cfg("http://127.0.0.1:8200");
        c.mount = "/team/transit/".into();
        let p = VaultTransitProvider::new(c).unwrap();
        assert_eq!(p.url("keys/moat").unwrap().as_str(), "http://127.0.0.1:8200/v1/team/transit/keys/moat");
        for bad in ["vault:8200", "ftp://x", "http://u:p@x", "http://x/?a=b", ""] {
            assert!(matches!(VaultTransitProvider::new(cfg(bad)), Err(VaultError::Config(_))), "{bad}");
        }
        let mut c = cfg("http://x");
        c.key = "../sys".into();
        assert!(VaultTransitProvider::new(c).is_err());
        let mut c = cfg("http://x");
        c.mount = "a/../b".into();
        assert!(VaultTransitProvider::new(c).is_err());
        let mut c = cfg("http://x");
        c.token = SecretString::from("bad\ntoken");
        let err = VaultTransitProvider::new(c).unwrap_err().to_string();
        assert!(!err.contains("bad\ntoken"));
    }

    #[test]
    fn debug_hides_the_token() {
        let p = VaultTransitProvider::new(cfg("http://127.0.0.1:8200")).unwrap();
        assert!(!format!("{p:?}").contains("s.token"));
        assert!(!format!("{:?}", cfg("http://x")).contains("s.token"));
    }

    #[test]
    fn stored_form_must_be_a_vault_string() {
        assert!(VaultTransitProvider::wrapped_str(b"vault:v1:abc").is_ok());
        assert!(matches!(VaultTransitProvider::wrapped_str(b"\x01abc"), Err(VaultError::Decrypt)));
        assert!(matches!(VaultTransitProvider::wrapped_str(&[0xff]), Err(VaultError::Decrypt)));
    }
}
