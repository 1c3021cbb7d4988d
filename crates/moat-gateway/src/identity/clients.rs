//! OAuth clients: admin-created service and public clients, RFC 7591
//! dynamic registration, Client ID Metadata Documents (the client id is an
//! https URL whose JSON document describes the client), and client
//! authentication at the token endpoint.

use super::Identity;
use super::egress::{EgressError, fetch_limited};
use super::uris::{origin_of, validate_redirect_uri};
use moat_core::{Scope, Scopes, TenantId, UserId, new_id, now_ms};
use moat_store::{ClientKind, ClientSource, OAuthClientRecord};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Largest client metadata document fetched.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// How long a fetched metadata document is trusted before it is fetched again.
pub const METADATA_TTL_MS: i64 = 5 * 60 * 1000;
const MAX_REDIRECT_URIS: usize = 10;
const MAX_NAME: usize = 120;

/// A refused registration or client: RFC 7591 §3.2.2 error codes.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A redirect URI is unacceptable.
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// Other metadata is unacceptable.
    #[error("{0}")]
    InvalidMetadata(String),
    /// The client metadata document could not be fetched or is invalid.
    #[error("client metadata document: {0}")]
    Document(String),
    /// Storage failed.
    #[error("storage failed")]
    Store(#[from] moat_store::StoreError),
}

impl ClientError {
    /// The RFC 7591 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            ClientError::InvalidMetadata(_) | ClientError::Document(_) => "invalid_client_metadata",
            ClientError::Store(_) => "server_error",
        }
    }
}

/// Cleans a display name: no control or invisible characters, bounded.
pub fn clean_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(*c as u32, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF)
        })
        .take(MAX_NAME)
        .collect();
    cleaned.trim().to_owned()
}

fn string_list(v: Option<&Value>, field: &str) -> Result<Vec<String>, ClientError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ClientError::InvalidMetadata(format!("`{field}` must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(ClientError::InvalidMetadata(format!("`{field}` must be a list of strings"))),
    }
}

/// Checks and canonicalises redirect URIs.
pub fn check_redirect_uris(uris: &[String]) -> Result<(), ClientError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(ClientError::InvalidRedirectUri(format!("at most {MAX_REDIRECT_URIS} redirect URIs")));
    }
    for u in uris {
        validate_redirect_uri(u).map_err(|e| ClientError::InvalidRedirectUri(e.to_string()))?;
    }
    Ok(())
}

/// Scopes a client asks for, known ones only, as wire strings.
pub fn known_scopes(requested: &str) -> Vec<String> {
    Scopes::parse_list(requested).0.iter().map(|s| s.as_str().to_owned()).collect()
}

/// The origins a client's tokens are bound to: the admin's list, or the
/// origins of its non-loopback https redirect URIs (browser-based apps).
/// Native apps on loopback or private-use schemes send no `Origin`, and get
/// no binding.
pub fn allowed_origins(client: &OAuthClientRecord) -> Vec<String> {
    if let Some(list) = client.metadata.get("allowed_origins").and_then(Value::as_array) {
        return list.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    }
    let mut out: Vec<String> =
        client.redirect_uris.iter().filter(|u| u.starts_with("https://")).filter_map(|u| origin_of(u)).collect();
    out.sort();
    out.dedup();
    out
}

/// A validated RFC 7591 registration request.
pub struct Registration {
    /// The record to store.
    pub client: OAuthClientRecord,
    /// The secret, for confidential clients (shown once).
    pub secret: Option<SecretString>,
}

/// Validates an RFC 7591 request body into a client (not yet stored).
pub fn parse_registration(body: &Value) -> Result<Registration, ClientError> {
    let obj = body.as_object().ok_or_else(|| ClientError::InvalidMetadata("the body must be a JSON object".into()))?;
    let redirect_uris = string_list(obj.get("redirect_uris"), "redirect_uris")?;
    if redirect_uris.is_empty() {
        return Err(ClientError::InvalidRedirectUri("`redirect_uris` is required".into()));
    }
    check_redirect_uris(&redirect_uris)?;
    let grant_types = string_list(obj.get("grant_types"), "grant_types")?;
    if let Some(g) = grant_types.iter().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token")) {
        return Err(ClientError::InvalidMetadata(format!(
            "grant type `{g}` cannot be registered; only authorization_code and refresh_token"
        )));
    }
    let response_types = string_list(obj.get("response_types"), "response_types")?;
    if response_types.iter().any(|r| r != "code") {
        return Err(ClientError::InvalidMetadata("only the `code` response type is supported".into()));
    }
    let method = obj.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or("client_secret_basic");
    let kind = match method {
        "none" => ClientKind::Public,
        "client_secret_basic" | "client_secret_post" => ClientKind::Confidential,
        other => {
            return Err(ClientError::InvalidMetadata(format!(
                "token_endpoint_auth_method `{other}` is not supported (none, client_secret_basic, client_secret_post)"
            )));
        }
    };
    let name = clean_name(obj.get("client_name").and_then(Value::as_str).unwrap_or("unnamed client"));
    let scopes = known_scopes(obj.get("scope").and_then(Value::as_str).unwrap_or(""));
    let mut metadata = serde_json::Map::new();
    for key in ["client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id", "software_version"] {
        if let Some(v) = obj.get(key).and_then(Value::as_str) {
            metadata.insert(key.to_owned(), Value::String(v.chars().take(512).collect()));
        }
    }
    let now = now_ms();
    let secret = match kind {
        ClientKind::Confidential => Some(
            moat_auth::opaque_token("moat_cs_").map_err(|_| ClientError::InvalidMetadata("no randomness".into()))?,
        ),
        _ => None,
    };
    Ok(Registration {
        client: OAuthClientRecord {
            id: new_id(),
            tenant_id: None,
            name: if name.is_empty() { "unnamed client".into() } else { name },
            kind,
            source: ClientSource::Dynamic,
            user_id: None,
            auth_method: method.to_owned(),
            redirect_uris,
            scopes,
            metadata: Value::Object(metadata),
            created_at: now,
            updated_at: now,
            revoked_at: None,
        },
        secret,
    })
}

/// The RFC 7591 §3.2.1 response for a stored client.
pub fn registration_response(client: &OAuthClientRecord, secret: Option<&SecretString>) -> Value {
    let grant_types: &[&str] = &["authorization_code", "refresh_token"];
    let mut out = json!({
        "client_id": client.id,
        "client_id_issued_at": client.created_at / 1000,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": client.auth_method,
    });
    if !client.scopes.is_empty()
        && let Some(o) = out.as_object_mut()
    {
        o.insert("scope".into(), Value::String(client.scopes.join(" ")));
    }
    if let (Some(s), Some(o)) = (secret, out.as_object_mut()) {
        o.insert("client_secret".into(), Value::String(s.expose_secret().to_owned()));
        o.insert("client_secret_expires_at".into(), json!(0));
    }
    if let (Some(meta), Some(o)) = (client.metadata.as_object(), out.as_object_mut()) {
        for (k, v) in meta {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// True when a client id is a Client ID Metadata Document URL: https (or
/// http on a lab deployment that allows private URLs) with a path.
pub fn is_metadata_url(client_id: &str, allow_http: bool) -> bool {
    let Ok(url) = url::Url::parse(client_id) else { return false };
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    scheme_ok && url.path() != "/" && !url.path().is_empty() && url.fragment().is_none() && url.username().is_empty()
}

/// Finds a client: stored, or fetched from its metadata document URL
/// (cached for [`METADATA_TTL_MS`]).
pub async fn resolve(
    identity: &Identity,
    client_id: &str,
) -> Result<Option<moat_store::ClientAuthRecord>, ClientError> {
    let stored = identity.store().oauth_client_for_auth(client_id).await?;
    let allow_http = identity.cfg.allow_private_urls;
    if !identity.cfg.client_metadata_documents || !is_metadata_url(client_id, allow_http) {
        return Ok(stored.filter(|c| c.client.source != ClientSource::Metadata));
    }
    if let Some(c) = &stored
        && c.client.source == ClientSource::Metadata
        && now_ms() - c.client.updated_at < METADATA_TTL_MS
    {
        return Ok(stored);
    }
    let client = fetch_metadata_document(identity, client_id).await?;
    identity.store().upsert_metadata_client(&client).await?;
    Ok(Some(moat_store::ClientAuthRecord { client, secret_hash: None }))
}

async fn fetch_metadata_document(identity: &Identity, client_id: &str) -> Result<OAuthClientRecord, ClientError> {
    let url = url::Url::parse(client_id).map_err(|_| ClientError::Document("the client id is not a URL".into()))?;
    let doc = fetch_limited(&identity.egress, &url, MAX_METADATA_BYTES).await.map_err(|e| match e {
        EgressError::Private(_) => ClientError::Document("its host is a private or loopback address".into()),
        other => ClientError::Document(other.to_string()),
    })?;
    let obj = doc.as_object().ok_or_else(|| ClientError::Document("not a JSON object".into()))?;
    if obj.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(ClientError::Document("its `client_id` does not equal the URL it was fetched from".into()));
    }
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(ClientError::Document("a metadata document must not carry a client secret".into()));
    }
    let method = obj.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or("none");
    if method != "none" {
        return Err(ClientError::Document(format!("token_endpoint_auth_method `{method}` is not supported here")));
    }
    let redirect_uris = string_list(obj.get("redirect_uris"), "redirect_uris")?;
    if redirect_uris.is_empty() {
        return Err(ClientError::Document("`redirect_uris` is required".into()));
    }
    check_redirect_uris(&redirect_uris)?;
    let mut metadata = serde_json::Map::new();
    for key in ["client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id", "software_version"] {
        if let Some(v) = obj.get(key).and_then(Value::as_str) {
            metadata.insert(key.to_owned(), Value::String(v.chars().take(512).collect()));
        }
    }
    let now = now_ms();
    Ok(OAuthClientRecord {
        id: client_id.to_owned(),
        tenant_id: None,
        name: clean_name(obj.get("client_name").and_then(Value::as_str).unwrap_or(url.host_str().unwrap_or("client"))),
        kind: ClientKind::Public,
        source: ClientSource::Metadata,
        user_id: None,
        auth_method: "none".into(),
        redirect_uris,
        scopes: Vec::new(),
        metadata: Value::Object(metadata),
        created_at: now,
        updated_at: now,
        revoked_at: None,
    })
}

/// What an admin asks for with `moat client create`.
pub struct AdminClientSpec {
    /// The tenant.
    pub tenant: TenantId,
    /// Unique name in the tenant.
    pub name: String,
    /// Service (client credentials) or public (code + PKCE).
    pub kind: ClientKind,
    /// Redirect URIs (public clients).
    pub redirect_uris: Vec<String>,
    /// Scopes the client may hold.
    pub scopes: Vec<String>,
    /// Browser origins its tokens are bound to.
    pub allowed_origins: Vec<String>,
    /// The machine user of a service client.
    pub user_id: Option<UserId>,
}

/// Validates an admin's client into a record and, for a service client, a
/// fresh secret. A service client may hold MCP scopes only: admin rights
/// belong to humans.
pub fn admin_client(spec: AdminClientSpec) -> Result<(OAuthClientRecord, Option<SecretString>), ClientError> {
    let (scopes, unknown) = Scopes::parse_list(&spec.scopes.join(" "));
    if let Some(u) = unknown.first() {
        return Err(ClientError::InvalidMetadata(format!(
            "unknown scope `{u}`; expected: {}",
            Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    match spec.kind {
        ClientKind::Service => {
            if scopes.iter().any(Scope::is_admin) {
                return Err(ClientError::InvalidMetadata(
                    "a service client cannot hold admin scopes: admin rights belong to human users".into(),
                ));
            }
            if !spec.redirect_uris.is_empty() {
                return Err(ClientError::InvalidMetadata(
                    "a service client uses client credentials and has no redirect URIs".into(),
                ));
            }
        }
        _ => {
            if spec.redirect_uris.is_empty() {
                return Err(ClientError::InvalidRedirectUri(
                    "a public client needs at least one --redirect-uri".into(),
                ));
            }
            check_redirect_uris(&spec.redirect_uris)?;
        }
    }
    for o in &spec.allowed_origins {
        if origin_of(o).as_deref() != Some(o.trim_end_matches('/')) {
            return Err(ClientError::InvalidMetadata(format!("`{o}` is not an origin (scheme://host[:port])")));
        }
    }
    let secret = match spec.kind {
        ClientKind::Service => Some(
            moat_auth::opaque_token("moat_cs_").map_err(|_| ClientError::InvalidMetadata("no randomness".into()))?,
        ),
        _ => None,
    };
    let now = now_ms();
    let mut metadata = serde_json::Map::new();
    if !spec.allowed_origins.is_empty() {
        let list: Vec<Value> =
            spec.allowed_origins.iter().map(|o| Value::String(o.trim_end_matches('/').to_owned())).collect();
        metadata.insert("allowed_origins".into(), Value::Array(list));
    }
    Ok((
        OAuthClientRecord {
            id: new_id(),
            tenant_id: Some(spec.tenant),
            name: spec.name,
            kind: spec.kind,
            source: ClientSource::Admin,
            user_id: spec.user_id,
            auth_method: if spec.kind == ClientKind::Service { "client_secret_basic".into() } else { "none".into() },
            redirect_uris: spec.redirect_uris,
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            metadata: Value::Object(metadata),
            created_at: now,
            updated_at: now,
            revoked_at: None,
        },
        secret,
    ))
}

/// The scopes a client may be granted at most.
pub fn client_ceiling(client: &OAuthClientRecord) -> Scopes {
    let (set, _) = Scopes::parse_list(&client.scopes.join(" "));
    let base = if set.is_empty() { Scopes::mcp() } else { set };
    if client.kind == ClientKind::Service { base.without_admin() } else { base }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_validation() {
        let ok = parse_registration(&json!({
            "redirect_uris": ["http://127.0.0.1:3000/callback"],
            "token_endpoint_auth_method": "none",
            "client_name": "Claude\u{202e}evil",
            "scope": "mcp:tools bogus",
        }))
        .unwrap();
        assert_eq!(ok.client.kind, ClientKind::Public);
        assert!(ok.secret.is_none());
        assert_eq!(ok.client.name, "Claudeevil");
        assert_eq!(ok.client.scopes, vec!["mcp:tools".to_owned()]);
        let conf = parse_registration(&json!({"redirect_uris": ["https://app.example/cb"]})).unwrap();
        assert!(conf.secret.is_some() && conf.client.kind == ClientKind::Confidential);
        let resp = registration_response(&conf.client, conf.secret.as_ref());
        assert!(resp["client_secret"].as_str().unwrap().starts_with("moat_cs_"));
        for bad in [
            json!({}),
            json!({"redirect_uris": []}),
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}),
            json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            json!([1, 2]),
        ] {
            assert!(parse_registration(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_clients_never_hold_admin_scopes() {
        let spec = |scopes: &[&str], kind| AdminClientSpec {
            tenant: TenantId::from_string("t"),
            name: "ci".into(),
            kind,
            redirect_uris: vec![],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            allowed_origins: vec![],
            user_id: Some(UserId::from_string("u")),
        };
        assert!(admin_client(spec(&["admin:write"], ClientKind::Service)).is_err());
        assert!(admin_client(spec(&["nope"], ClientKind::Service)).is_err());
        let (c, secret) = admin_client(spec(&["mcp:tools"], ClientKind::Service)).unwrap();
        assert!(secret.is_some());
        assert_eq!(client_ceiling(&c), [Scope::McpTools].into_iter().collect());
        assert!(admin_client(spec(&[], ClientKind::Public)).is_err(), "public clients need a redirect URI");
    }

    #[test]
    fn metadata_urls() {
        assert!(is_metadata_url("https://app.example/oauth/client.json", false));
        assert!(!is_metadata_url("https://app.example/", false));
        assert!(!is_metadata_url("http://app.example/c.json", false));
        assert!(is_metadata_url("http://127.0.0.1:9/c.json", true));
        assert!(!is_metadata_url("0199aa-uuid", false));
    }
}
