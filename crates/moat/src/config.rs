//! Configuration: `moat.toml`, then `MOAT_*` environment variables, then
//! command-line flags, in increasing precedence. Parsed into `Raw*` structs
//! that refuse unknown keys, then validated once into [`Config`]. Every
//! error names the key and where it came from (the file or the variable).
//!
//! | key | environment | flag |
//! |---|---|---|
//! | `listen` | `MOAT_LISTEN` | `--listen` |
//! | `data_dir` | `MOAT_DATA_DIR` | `--data-dir` |
//! | `database_url` | `MOAT_DATABASE_URL` | |
//! | `redis_url` | `MOAT_REDIS_URL` | |
//! | `public_url` | `MOAT_PUBLIC_URL` | |
//! | `allowed_origins` | `MOAT_ALLOWED_ORIGINS` (comma-separated) | |
//! | `allowed_hosts` | `MOAT_ALLOWED_HOSTS` (comma-separated) | |
//! | `max_body_bytes` | `MOAT_MAX_BODY_BYTES` | |
//! | `log_format` | `MOAT_LOG_FORMAT` | `--log-format` |
//! | `vault.provider` | `MOAT_VAULT_PROVIDER` | |
//! | `vault.credential_cache_ttl_ms` | `MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS` | |
//! | `vault.rotation_batch` | `MOAT_VAULT_ROTATION_BATCH` | |
//! | `vault.rotation_pause_ms` | `MOAT_VAULT_ROTATION_PAUSE_MS` | |
//! | `vault.kms_key_id` | `MOAT_VAULT_KMS_KEY_ID` | |
//! | `vault.kms_region` | `MOAT_VAULT_KMS_REGION` (else `AWS_REGION`) | |
//! | `vault.kms_endpoint` | `MOAT_VAULT_KMS_ENDPOINT` | |
//! | `vault.transit_addr` | `MOAT_VAULT_TRANSIT_ADDR` (else `VAULT_ADDR`) | |
//! | `vault.transit_key` | `MOAT_VAULT_TRANSIT_KEY` | |
//! | `vault.transit_mount` | `MOAT_VAULT_TRANSIT_MOUNT` | |
//! | `vault.transit_namespace` | `MOAT_VAULT_TRANSIT_NAMESPACE` (else `VAULT_NAMESPACE`) | |
//! | (token, never in the file) | `MOAT_VAULT_TRANSIT_TOKEN` (else `VAULT_TOKEN`) | |
//! | `upstream.instance_idle_timeout_s` | `MOAT_UPSTREAM_INSTANCE_IDLE_TIMEOUT_S` | |
//! | `firewall.mode` | `MOAT_FIREWALL_MODE` | |
//! | `firewall.approval_timeout_s` | `MOAT_FIREWALL_APPROVAL_TIMEOUT_S` | |
//! | `firewall.max_description_bytes` | `MOAT_FIREWALL_MAX_DESCRIPTION_BYTES` | |
//! | `firewall.rug_pull` (`hide` or `flag`) | `MOAT_FIREWALL_RUG_PULL` | |
//! | `firewall.payload_budget_bytes` | `MOAT_FIREWALL_PAYLOAD_BUDGET_BYTES` | |
//! | `[[firewall.rules]]` (category, rule, direction, action) | | |
//! | `upstream.call_timeout_ms` | `MOAT_UPSTREAM_CALL_TIMEOUT_MS` | |
//! | `upstream.max_concurrency` | `MOAT_UPSTREAM_MAX_CONCURRENCY` | |
//! | `upstream.list_cache_ttl_s` | `MOAT_UPSTREAM_LIST_CACHE_TTL_S` | |
//! | `session.idle_timeout_s` | `MOAT_SESSION_IDLE_TIMEOUT_S` | |
//! | `auth.key_cache_ttl_s` | `MOAT_AUTH_KEY_CACHE_TTL_S` | |
//! | `oauth.access_token_ttl_s` (default 900) | `MOAT_OAUTH_ACCESS_TOKEN_TTL_S` | |
//! | `oauth.refresh_token_ttl_s` (default 30 days) | `MOAT_OAUTH_REFRESH_TOKEN_TTL_S` | |
//! | `oauth.code_ttl_s` (default 60) | `MOAT_OAUTH_CODE_TTL_S` | |
//! | `oauth.session_ttl_s` (default 8 h) | `MOAT_OAUTH_SESSION_TTL_S` | |
//! | `oauth.signing_alg` (`RS256` or `ES256`) | `MOAT_OAUTH_SIGNING_ALG` | |
//! | `oauth.key_grace_s` (default 3600) | `MOAT_OAUTH_KEY_GRACE_S` | |
//! | `oauth.dynamic_registration` (default true) | `MOAT_OAUTH_DYNAMIC_REGISTRATION` | |
//! | `oauth.client_metadata_documents` (default true) | `MOAT_OAUTH_CLIENT_METADATA_DOCUMENTS` | |
//! | `oauth.allow_private_urls` (default false) | `MOAT_OAUTH_ALLOW_PRIVATE_URLS` | |
//! | `oauth.requests_per_minute` (default 300) | `MOAT_OAUTH_REQUESTS_PER_MINUTE` | |
//! | `oauth.failures_per_minute` (default 20) | `MOAT_OAUTH_FAILURES_PER_MINUTE` | |
//! | `oauth.registrations_per_hour` (default 30) | `MOAT_OAUTH_REGISTRATIONS_PER_HOUR` | |

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: which key, from where, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: `{key}`: {message}")]
pub struct ConfigError {
    source_name: String,
    key: String,
    message: String,
}

impl ConfigError {
    fn new(source_name: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source_name: source_name.into(), key: key.into(), message: message.into() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    redis_url: Option<String>,
    public_url: Option<String>,
    allowed_origins: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    max_body_bytes: Option<u64>,
    log_format: Option<String>,
    #[serde(default)]
    vault: RawVault,
    #[serde(default)]
    firewall: RawFirewall,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    oauth: RawOAuth,
    #[serde(default)]
    servers: Vec<RawServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    access_token_ttl_s: Option<u64>,
    refresh_token_ttl_s: Option<u64>,
    code_ttl_s: Option<u64>,
    session_ttl_s: Option<u64>,
    signing_alg: Option<String>,
    key_grace_s: Option<u64>,
    dynamic_registration: Option<bool>,
    client_metadata_documents: Option<bool>,
    allow_private_urls: Option<bool>,
    requests_per_minute: Option<u64>,
    failures_per_minute: Option<u64>,
    registrations_per_hour: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    provider: Option<String>,
    credential_cache_ttl_ms: Option<u64>,
    rotation_batch: Option<u64>,
    rotation_pause_ms: Option<u64>,
    kms_key_id: Option<String>,
    kms_region: Option<String>,
    kms_endpoint: Option<String>,
    transit_addr: Option<String>,
    transit_key: Option<String>,
    transit_mount: Option<String>,
    transit_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    mode: Option<String>,
    approval_timeout_s: Option<u64>,
    max_description_bytes: Option<u64>,
    rug_pull: Option<String>,
    payload_budget_bytes: Option<u64>,
    #[serde(default)]
    rules: Vec<RawFirewallRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewallRule {
    category: Option<String>,
    rule: Option<String>,
    direction: Option<String>,
    action: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    call_timeout_ms: Option<u64>,
    max_concurrency: Option<u64>,
    instance_idle_timeout_s: Option<u64>,
    list_cache_ttl_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    idle_timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    key_cache_ttl_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: Option<String>,
    tenant: Option<String>,
    transport: Option<String>,
    command: Option<Vec<String>>,
    url: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    allow_anonymous: bool,
    enabled: Option<bool>,
    start: Option<String>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A static upstream from `[[servers]]`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Tenant name.
    pub tenant: String,
    /// What to store.
    pub server: moat_store::NewServer,
    /// Start at boot instead of on first use.
    pub start_at_boot: bool,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the config came from, if a file.
    pub file: Option<PathBuf>,
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database_url: String,
    /// Redis URL (optional; used by later issues).
    pub redis_url: Option<String>,
    /// Public base URL.
    pub public_url: Option<String>,
    /// Extra allowed origins.
    pub allowed_origins: Vec<String>,
    /// Extra allowed hosts.
    pub allowed_hosts: Vec<String>,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Key provider name.
    pub vault_provider: String,
    /// The key provider and its settings.
    pub key_provider: KeyProviderConfig,
    /// Decrypted-credential cache TTL.
    pub credential_cache_ttl: Duration,
    /// Credentials re-encrypted per transaction during a DEK rotation.
    pub rotation_batch: usize,
    /// Pause between rotation batches.
    pub rotation_pause: Duration,
    /// How long an upstream instance holding credentials may sit idle.
    pub instance_idle_timeout: Duration,
    /// Firewall mode (`enforce`, `shadow`, `disabled`).
    pub firewall_mode: String,
    /// The deployment's firewall policy: the defaults, then `[[firewall.rules]]`.
    pub firewall_policy: moat_firewall::Policy,
    /// How long a call held for approval waits before it is denied.
    pub approval_timeout: Duration,
    /// Longest tool, resource or prompt description passed on.
    pub max_description_bytes: usize,
    /// Largest call arguments or result before an `oversized-payload` finding.
    pub payload_budget: usize,
    /// A tool whose description changed after approval: hidden until
    /// re-approved (`true`, the default) or only flagged.
    pub hide_changed_tools: bool,
    /// Per-call upstream deadline.
    pub call_timeout: Duration,
    /// Calls in flight per upstream.
    pub upstream_max_concurrency: usize,
    /// How long upstream lists are cached (and so how soon a changed tool
    /// description is seen without `list_changed`).
    pub list_cache_ttl: Duration,
    /// Legacy session idle timeout.
    pub session_idle_timeout: Duration,
    /// API key verification cache TTL.
    pub key_cache_ttl: Duration,
    /// The authorization server's settings.
    pub oauth: moat_gateway::config::OAuthConfig,
    /// Static upstreams.
    pub servers: Vec<ServerConfig>,
}

/// Which key provider holds the KEK, with its settings.
#[derive(Clone)]
pub enum KeyProviderConfig {
    /// A 0600 key file in the data dir.
    Local,
    /// AWS KMS (or a compatible endpoint such as moto).
    AwsKms {
        /// Key id, ARN or alias.
        key_id: String,
        /// Region (else the AWS default chain's).
        region: Option<String>,
        /// Endpoint override.
        endpoint: Option<String>,
    },
    /// HashiCorp Vault Transit.
    VaultTransit {
        /// Vault's address.
        addr: String,
        /// The transit key's name.
        key: String,
        /// The engine's mount path.
        mount: String,
        /// Enterprise namespace.
        namespace: Option<String>,
        /// The token (from the environment only).
        token: secrecy::SecretString,
    },
}

impl std::fmt::Debug for KeyProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Local"),
            Self::AwsKms { key_id, region, endpoint } => f
                .debug_struct("AwsKms")
                .field("key_id", key_id)
                .field("region", region)
                .field("endpoint", endpoint)
                .finish(),
            Self::VaultTransit { addr, key, mount, .. } => f
                .debug_struct("VaultTransit")
                .field("addr", addr)
                .field("key", key)
                .field("mount", mount)
                .finish_non_exhaustive(),
        }
    }
}

/// Flags that override file and environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
}

/// Where the environment comes from (injectable for tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Loads, merges and validates the configuration.
pub fn load(flags: &Overrides, env: Env<'_>) -> Result<Config, ConfigError> {
    let explicit = flags.config.clone().or_else(|| env("MOAT_CONFIG").map(PathBuf::from));
    let path = match explicit {
        Some(p) => Some(p),
        None => Path::new("moat.toml").exists().then(|| PathBuf::from("moat.toml")),
    };
    let (raw, file_name) = match &path {
        Some(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError::new(&name, "(file)", format!("cannot read: {e}")))?;
            (parse_toml(&text, &name)?, name)
        }
        None => (RawConfig::default(), "defaults".to_owned()),
    };
    validate(raw, &file_name, path, flags, env)
}

fn parse_toml(text: &str, name: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_owned();
        let key = e
            .span()
            .map(|s| {
                let line = text.get(..s.start).unwrap_or(text).lines().count().max(1);
                format!("line {line}")
            })
            .unwrap_or_else(|| "(file)".into());
        ConfigError::new(name, key, message)
    })
}

fn validate(
    raw: RawConfig,
    file: &str,
    path: Option<PathBuf>,
    flags: &Overrides,
    env: Env<'_>,
) -> Result<Config, ConfigError> {
    // Each value: (value, source name) with flags > env > file.
    let pick =
        |file_val: Option<String>, var: &str, flag: Option<String>, flag_name: &str| -> Option<(String, String)> {
            if let Some(v) = flag {
                return Some((v, format!("flag {flag_name}")));
            }
            if let Some(v) = env(var) {
                return Some((v, format!("environment {var}")));
            }
            file_val.map(|v| (v, file.to_owned()))
        };
    // A broken file is refused even where env or a flag overrides the value.
    if let Some(v) = &raw.listen
        && v.parse::<SocketAddr>().is_err()
    {
        return Err(ConfigError::new(file, "listen", format!("`{v}` is not an address like 127.0.0.1:8080")));
    }
    let listen = match pick(raw.listen, "MOAT_LISTEN", flags.listen.clone(), "--listen") {
        Some((v, src)) => v
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::new(src, "listen", format!("`{v}` is not an address like 127.0.0.1:8080")))?,
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let data_dir = match pick(
        raw.data_dir.map(|p| p.display().to_string()),
        "MOAT_DATA_DIR",
        flags.data_dir.as_ref().map(|p| p.display().to_string()),
        "--data-dir",
    ) {
        Some((v, src)) if v.trim().is_empty() => return Err(ConfigError::new(src, "data_dir", "must not be empty")),
        Some((v, _)) => PathBuf::from(v),
        None => PathBuf::from("./moat-data"),
    };
    let database_url = match pick(raw.database_url, "MOAT_DATABASE_URL", None, "") {
        Some((v, src)) => {
            if !(v.starts_with("sqlite:") || v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                return Err(ConfigError::new(src, "database_url", "must start with sqlite: or postgres://"));
            }
            v
        }
        None => format!("sqlite://{}", data_dir.join("moat.db").display()),
    };
    let redis_url = pick(raw.redis_url, "MOAT_REDIS_URL", None, "").map(|(v, _)| v).filter(|v| !v.is_empty());
    let public_url = match pick(raw.public_url, "MOAT_PUBLIC_URL", None, "") {
        Some((v, src)) if !(v.starts_with("http://") || v.starts_with("https://")) => {
            return Err(ConfigError::new(src, "public_url", "must be an http:// or https:// URL"));
        }
        other => other.map(|(v, _)| v),
    };
    let list = |file_val: Option<Vec<String>>, var: &str| -> Vec<String> {
        match env(var) {
            Some(v) => v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            None => file_val.unwrap_or_default(),
        }
    };
    let allowed_origins = list(raw.allowed_origins, "MOAT_ALLOWED_ORIGINS");
    let allowed_hosts = list(raw.allowed_hosts, "MOAT_ALLOWED_HOSTS");
    let number = |file_val: Option<u64>, var: &str, key: &str, min: u64| -> Result<Option<u64>, ConfigError> {
        let (v, src) = match env(var) {
            Some(v) => (
                v.trim().parse::<u64>().map_err(|_| {
                    ConfigError::new(format!("environment {var}"), key, format!("`{v}` is not a whole number"))
                })?,
                format!("environment {var}"),
            ),
            None => match file_val {
                Some(v) => (v, file.to_owned()),
                None => return Ok(None),
            },
        };
        if v < min {
            return Err(ConfigError::new(src, key, format!("must be at least {min}")));
        }
        Ok(Some(v))
    };
    let max_body_bytes =
        number(raw.max_body_bytes, "MOAT_MAX_BODY_BYTES", "max_body_bytes", 1024)?.unwrap_or(4 * 1024 * 1024);
    let log_format = match pick(raw.log_format, "MOAT_LOG_FORMAT", flags.log_format.clone(), "--log-format") {
        None => LogFormat::Text,
        Some((v, src)) => match v.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(ConfigError::new(src, "log_format", format!("`{v}` is not one of: text, json"))),
        },
    };
    let (vault_provider, provider_src) = match pick(raw.vault.provider.clone(), "MOAT_VAULT_PROVIDER", None, "") {
        None => ("local".to_owned(), file.to_owned()),
        Some((v, src)) => match v.as_str() {
            "local" | "aws-kms" | "vault-transit" => (v, src),
            _ => {
                return Err(ConfigError::new(
                    src,
                    "vault.provider",
                    format!("`{v}` is not one of: local, aws-kms, vault-transit"),
                ));
            }
        },
    };
    let v = raw.vault;
    let credential_cache_ttl = Duration::from_millis(
        number(v.credential_cache_ttl_ms, "MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS", "vault.credential_cache_ttl_ms", 0)?
            .unwrap_or(1000),
    );
    let text = |file_val: Option<String>, var: &str, fallback: Option<&str>| -> Option<String> {
        pick(file_val, var, None, "")
            .map(|(v, _)| v)
            .or_else(|| fallback.and_then(env))
            .filter(|v| !v.trim().is_empty())
    };
    let key_provider = match vault_provider.as_str() {
        "aws-kms" => KeyProviderConfig::AwsKms {
            key_id: text(v.kms_key_id, "MOAT_VAULT_KMS_KEY_ID", None).ok_or_else(|| {
                ConfigError::new(&provider_src, "vault.kms_key_id", "the aws-kms provider needs a KMS key id")
            })?,
            region: text(v.kms_region, "MOAT_VAULT_KMS_REGION", Some("AWS_REGION")),
            endpoint: text(v.kms_endpoint, "MOAT_VAULT_KMS_ENDPOINT", None),
        },
        "vault-transit" => KeyProviderConfig::VaultTransit {
            addr: text(v.transit_addr, "MOAT_VAULT_TRANSIT_ADDR", Some("VAULT_ADDR")).ok_or_else(|| {
                ConfigError::new(
                    &provider_src,
                    "vault.transit_addr",
                    "the vault-transit provider needs Vault's address",
                )
            })?,
            key: text(v.transit_key, "MOAT_VAULT_TRANSIT_KEY", None).unwrap_or_else(|| "moat".into()),
            mount: text(v.transit_mount, "MOAT_VAULT_TRANSIT_MOUNT", None).unwrap_or_else(|| "transit".into()),
            namespace: text(v.transit_namespace, "MOAT_VAULT_TRANSIT_NAMESPACE", Some("VAULT_NAMESPACE")),
            token: env("MOAT_VAULT_TRANSIT_TOKEN")
                .or_else(|| env("VAULT_TOKEN"))
                .filter(|t| !t.is_empty())
                .map(secrecy::SecretString::from)
                .ok_or_else(|| {
                    ConfigError::new(
                        "environment MOAT_VAULT_TRANSIT_TOKEN",
                        "vault.transit_token",
                        "the vault-transit provider needs a token in MOAT_VAULT_TRANSIT_TOKEN or VAULT_TOKEN",
                    )
                })?,
        },
        _ => KeyProviderConfig::Local,
    };
    let rotation_batch = usize::try_from(
        number(v.rotation_batch, "MOAT_VAULT_ROTATION_BATCH", "vault.rotation_batch", 1)?.unwrap_or(100),
    )
    .unwrap_or(100);
    let rotation_pause = Duration::from_millis(
        number(v.rotation_pause_ms, "MOAT_VAULT_ROTATION_PAUSE_MS", "vault.rotation_pause_ms", 0)?.unwrap_or(0),
    );
    let instance_idle_timeout = Duration::from_secs(
        number(
            raw.upstream.instance_idle_timeout_s,
            "MOAT_UPSTREAM_INSTANCE_IDLE_TIMEOUT_S",
            "upstream.instance_idle_timeout_s",
            1,
        )?
        .unwrap_or(900),
    );
    let firewall_mode = match pick(raw.firewall.mode, "MOAT_FIREWALL_MODE", None, "") {
        None => "enforce".to_owned(),
        Some((v, src)) => match v.as_str() {
            "enforce" | "shadow" | "disabled" => v,
            _ => {
                return Err(ConfigError::new(
                    src,
                    "firewall.mode",
                    format!("`{v}` is not one of: enforce, shadow, disabled"),
                ));
            }
        },
    };
    let mode: moat_firewall::Mode =
        firewall_mode.parse().map_err(|e: String| ConfigError::new(file, "firewall.mode", e))?;
    let mut extra = Vec::new();
    for (i, r) in raw.firewall.rules.into_iter().enumerate() {
        let key = |k: &str| format!("firewall.rules[{i}].{k}");
        let category = match r.category {
            None => None,
            Some(c) => Some(
                serde_json::from_value::<moat_firewall::Category>(serde_json::Value::String(c.clone())).map_err(
                    |_| {
                        ConfigError::new(
                            file,
                            key("category"),
                            format!(
                                "`{c}` is not one of: secret, pii, injection, destructive, url, exfiltration, tool_abuse"
                            ),
                        )
                    },
                )?,
            ),
        };
        let direction = match r.direction {
            None => None,
            Some(d) => {
                Some(serde_json::from_value::<moat_firewall::Direction>(serde_json::Value::String(d.clone())).map_err(
                    |_| {
                        ConfigError::new(
                            file,
                            key("direction"),
                            format!("`{d}` is not one of: request, response, description"),
                        )
                    },
                )?)
            }
        };
        let action = r
            .action
            .ok_or_else(|| ConfigError::new(file, key("action"), "is required"))?
            .parse::<moat_firewall::Action>()
            .map_err(|e| ConfigError::new(file, key("action"), e))?;
        if category.is_none() && r.rule.is_none() && direction.is_none() {
            return Err(ConfigError::new(file, key("category"), "name a category, a rule or a direction"));
        }
        extra.push(moat_firewall::PolicyRule { category, rule: r.rule, direction, action });
    }
    let firewall_policy = moat_firewall::Policy::defaults(mode).with_rules(extra);
    let approval_timeout = Duration::from_secs(
        number(raw.firewall.approval_timeout_s, "MOAT_FIREWALL_APPROVAL_TIMEOUT_S", "firewall.approval_timeout_s", 1)?
            .unwrap_or(300),
    );
    let max_description_bytes = usize::try_from(
        number(
            raw.firewall.max_description_bytes,
            "MOAT_FIREWALL_MAX_DESCRIPTION_BYTES",
            "firewall.max_description_bytes",
            64,
        )?
        .unwrap_or(4096),
    )
    .unwrap_or(4096);
    let payload_budget = usize::try_from(
        number(
            raw.firewall.payload_budget_bytes,
            "MOAT_FIREWALL_PAYLOAD_BUDGET_BYTES",
            "firewall.payload_budget_bytes",
            1,
        )?
        .unwrap_or(1 << 20),
    )
    .unwrap_or(usize::MAX);
    let hide_changed_tools = match pick(raw.firewall.rug_pull, "MOAT_FIREWALL_RUG_PULL", None, "") {
        None => true,
        Some((v, src)) => match v.as_str() {
            "hide" => true,
            "flag" => false,
            _ => return Err(ConfigError::new(src, "firewall.rug_pull", format!("`{v}` is not one of: hide, flag"))),
        },
    };
    let call_timeout = Duration::from_millis(
        number(raw.upstream.call_timeout_ms, "MOAT_UPSTREAM_CALL_TIMEOUT_MS", "upstream.call_timeout_ms", 100)?
            .unwrap_or(60_000),
    );
    let upstream_max_concurrency = usize::try_from(
        number(raw.upstream.max_concurrency, "MOAT_UPSTREAM_MAX_CONCURRENCY", "upstream.max_concurrency", 1)?
            .unwrap_or(32),
    )
    .unwrap_or(32);
    let list_cache_ttl = Duration::from_secs(
        number(raw.upstream.list_cache_ttl_s, "MOAT_UPSTREAM_LIST_CACHE_TTL_S", "upstream.list_cache_ttl_s", 0)?
            .unwrap_or(300),
    );
    let session_idle_timeout = Duration::from_secs(
        number(raw.session.idle_timeout_s, "MOAT_SESSION_IDLE_TIMEOUT_S", "session.idle_timeout_s", 1)?.unwrap_or(1800),
    );
    let key_cache_ttl = Duration::from_secs(
        number(raw.auth.key_cache_ttl_s, "MOAT_AUTH_KEY_CACHE_TTL_S", "auth.key_cache_ttl_s", 0)?.unwrap_or(60),
    );
    let o = &raw.oauth;
    let secs = |v: Option<u64>, var: &str, key: &str, min: u64, default: u64| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(number(v, var, key, min)?.unwrap_or(default)))
    };
    let boolean = |v: Option<bool>, var: &str, key: &str, default: bool| -> Result<bool, ConfigError> {
        match env(var) {
            Some(t) => match t.trim() {
                "true" | "1" | "on" | "yes" => Ok(true),
                "false" | "0" | "off" | "no" => Ok(false),
                other => {
                    Err(ConfigError::new(format!("environment {var}"), key, format!("`{other}` is not true or false")))
                }
            },
            None => Ok(v.unwrap_or(default)),
        }
    };
    let count = |v: Option<u64>, var: &str, key: &str, default: u32| -> Result<u32, ConfigError> {
        Ok(u32::try_from(number(v, var, key, 1)?.unwrap_or(u64::from(default))).unwrap_or(u32::MAX))
    };
    let signing_alg = match pick(o.signing_alg.clone(), "MOAT_OAUTH_SIGNING_ALG", None, "") {
        None => moat_auth::SigningAlg::Rs256,
        Some((v, src)) => v
            .parse()
            .map_err(|_| ConfigError::new(src, "oauth.signing_alg", format!("`{v}` is not one of: RS256, ES256")))?,
    };
    let access_token_ttl =
        secs(o.access_token_ttl_s, "MOAT_OAUTH_ACCESS_TOKEN_TTL_S", "oauth.access_token_ttl_s", 10, 900)?;
    let oauth = moat_gateway::config::OAuthConfig {
        access_token_ttl,
        refresh_token_ttl: secs(
            o.refresh_token_ttl_s,
            "MOAT_OAUTH_REFRESH_TOKEN_TTL_S",
            "oauth.refresh_token_ttl_s",
            60,
            30 * 86400,
        )?,
        code_ttl: secs(o.code_ttl_s, "MOAT_OAUTH_CODE_TTL_S", "oauth.code_ttl_s", 1, 60)?,
        pending_ttl: Duration::from_secs(600),
        session_ttl: secs(o.session_ttl_s, "MOAT_OAUTH_SESSION_TTL_S", "oauth.session_ttl_s", 60, 8 * 3600)?,
        signing_alg,
        key_grace: secs(o.key_grace_s, "MOAT_OAUTH_KEY_GRACE_S", "oauth.key_grace_s", 0, 3600)?,
        dynamic_registration: boolean(
            o.dynamic_registration,
            "MOAT_OAUTH_DYNAMIC_REGISTRATION",
            "oauth.dynamic_registration",
            true,
        )?,
        client_metadata_documents: boolean(
            o.client_metadata_documents,
            "MOAT_OAUTH_CLIENT_METADATA_DOCUMENTS",
            "oauth.client_metadata_documents",
            true,
        )?,
        allow_private_urls: boolean(
            o.allow_private_urls,
            "MOAT_OAUTH_ALLOW_PRIVATE_URLS",
            "oauth.allow_private_urls",
            false,
        )?,
        requests_per_minute: count(
            o.requests_per_minute,
            "MOAT_OAUTH_REQUESTS_PER_MINUTE",
            "oauth.requests_per_minute",
            300,
        )?,
        failures_per_minute: count(
            o.failures_per_minute,
            "MOAT_OAUTH_FAILURES_PER_MINUTE",
            "oauth.failures_per_minute",
            20,
        )?,
        registrations_per_hour: count(
            o.registrations_per_hour,
            "MOAT_OAUTH_REGISTRATIONS_PER_HOUR",
            "oauth.registrations_per_hour",
            30,
        )?,
    };
    let mut servers = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in raw.servers.into_iter().enumerate() {
        let key = |k: &str| format!("servers[{i}].{k}");
        let name = s.name.ok_or_else(|| ConfigError::new(file, key("name"), "is required"))?;
        moat_core::validate_name(&name).map_err(|e| ConfigError::new(file, key("name"), format!("`{name}` {e}")))?;
        let tenant = s.tenant.unwrap_or_else(|| "default".to_owned());
        if !seen.insert((tenant.clone(), name.clone())) {
            return Err(ConfigError::new(
                file,
                key("name"),
                format!("`{name}` is defined twice for tenant `{tenant}`"),
            ));
        }
        let transport = match (&s.transport, &s.command, &s.url) {
            (Some(t), _, _) => t.parse::<moat_store::Transport>().map_err(|_| {
                ConfigError::new(file, key("transport"), format!("`{t}` is not one of: stdio, streamable-http, sse"))
            })?,
            (None, Some(_), None) => moat_store::Transport::Stdio,
            (None, None, Some(_)) => moat_store::Transport::StreamableHttp,
            (None, None, None) => {
                return Err(ConfigError::new(file, key("command"), "give `command` (stdio) or `url` (HTTP)"));
            }
            _ => {
                return Err(ConfigError::new(
                    file,
                    key("transport"),
                    "give either `command` (stdio) or `url` (HTTP), not both",
                ));
            }
        };
        match transport {
            moat_store::Transport::Stdio => {
                if s.command.as_ref().is_none_or(|c| c.is_empty() || c[0].is_empty()) {
                    return Err(ConfigError::new(file, key("command"), "a stdio server needs a non-empty command"));
                }
                if s.url.is_some() {
                    return Err(ConfigError::new(file, key("url"), "a stdio server takes no url"));
                }
            }
            _ => {
                let Some(url) = &s.url else {
                    return Err(ConfigError::new(file, key("url"), "an HTTP server needs a url"));
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(file, key("url"), "must be an http:// or https:// URL"));
                }
                if s.command.is_some() {
                    return Err(ConfigError::new(file, key("command"), "an HTTP server takes no command"));
                }
            }
        }
        let start_at_boot = match s.start.as_deref() {
            None | Some("lazy") => false,
            Some("boot") => true,
            Some(other) => {
                return Err(ConfigError::new(file, key("start"), format!("`{other}` is not one of: lazy, boot")));
            }
        };
        servers.push(ServerConfig {
            tenant,
            server: moat_store::NewServer {
                name,
                transport,
                url: s.url,
                command: s.command,
                env: s.env,
                headers: s.headers,
                allow_anonymous: s.allow_anonymous,
                enabled: s.enabled.unwrap_or(true),
            },
            start_at_boot,
        });
    }
    Ok(Config {
        file: path,
        listen,
        data_dir,
        database_url,
        redis_url,
        public_url,
        allowed_origins,
        allowed_hosts,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        log_format,
        vault_provider,
        key_provider,
        credential_cache_ttl,
        rotation_batch,
        rotation_pause,
        instance_idle_timeout,
        firewall_mode,
        firewall_policy,
        approval_timeout,
        max_description_bytes,
        payload_budget,
        hide_changed_tools,
        call_timeout,
        upstream_max_concurrency,
        list_cache_ttl,
        session_idle_timeout,
        key_cache_ttl,
        oauth,
        servers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(toml: &str, vars: &[(&str, &str)], flags: Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moat.toml");
        std::fs::write(&path, toml).unwrap();
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = move |k: &str| vars.get(k).cloned();
        load(&Overrides { config: Some(path), ..flags }, &env)
    }

    #[test]
    fn firewall_rules_are_parsed_and_validated() {
        let c = load_with(
            "[firewall]\nmode = \"shadow\"\napproval_timeout_s = 30\n\n[[firewall.rules]]\ncategory = \"pii\"\n\
             direction = \"response\"\naction = \"redact\"\n",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.firewall_policy.mode, moat_firewall::Mode::Shadow);
        assert_eq!(c.approval_timeout, Duration::from_secs(30));
        let last = c.firewall_policy.rules.last().unwrap();
        assert_eq!(last.action, moat_firewall::Action::Redact);
        assert_eq!(last.category, Some(moat_firewall::Category::Pii));
        let e = load_with("[[firewall.rules]]\ncategory = \"spam\"\naction = \"block\"\n", &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("firewall.rules[0].category"), "{e}");
        let e = load_with("[[firewall.rules]]\ncategory = \"pii\"\naction = \"nuke\"\n", &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("firewall.rules[0].action"), "{e}");
        let e =
            load_with("[[firewall.rules]]\naction = \"block\"\n", &[], Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("name a category"), "{e}");
    }

    #[test]
    fn defaults_are_zero_config() {
        let c = load_with("", &[], Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./moat-data"));
        assert_eq!(c.database_url, "sqlite://./moat-data/moat.db");
        assert_eq!(c.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(c.vault_provider, "local");
        assert_eq!(c.credential_cache_ttl, Duration::from_millis(1000));
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let toml = "listen = \"127.0.0.1:1000\"\nlog_format = \"json\"\n";
        let c = load_with(toml, &[], Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 1000);
        let c = load_with(toml, &[("MOAT_LISTEN", "127.0.0.1:2000")], Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 2000);
        let flags = Overrides { listen: Some("127.0.0.1:3000".into()), ..Overrides::default() };
        let c = load_with(toml, &[("MOAT_LISTEN", "127.0.0.1:2000")], flags).unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn errors_name_the_key_and_the_source() {
        let e = load_with("listen = \"nope\"\n", &[], Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("moat.toml") && e.contains("`listen`"), "{e}");
        let e = load_with("", &[("MOAT_LISTEN", "x")], Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("environment MOAT_LISTEN") && e.contains("`listen`"), "{e}");
        let e = load_with("lisen = 1\n", &[], Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("moat.toml") && e.contains("lisen"), "{e}");
        let e = load_with("[vault]\nprovider = \"gcp\"\n", &[], Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("vault.provider"), "{e}");
        let e = load_with("[[servers]]\nname = \"Bad_Name\"\ncommand = [\"x\"]\n", &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("servers[0].name"), "{e}");
        let e = load_with("[[servers]]\nname = \"a\"\ntransport = \"stdio\"\n", &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("servers[0].command"), "{e}");
        let e = load_with("", &[("MOAT_MAX_BODY_BYTES", "lots")], Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("MOAT_MAX_BODY_BYTES") && e.contains("max_body_bytes"), "{e}");
    }

    #[test]
    fn servers_are_parsed() {
        let toml = r#"
[[servers]]
name = "everything"
transport = "stdio"
command = ["npx", "-y", "@modelcontextprotocol/server-everything"]

[[servers]]
name = "remote"
tenant = "acme"
url = "http://127.0.0.1:3001/mcp"
allow_anonymous = true
start = "boot"
"#;
        let c = load_with(toml, &[], Overrides::default()).unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[0].tenant, "default");
        assert_eq!(c.servers[0].server.transport, moat_store::Transport::Stdio);
        assert_eq!(c.servers[1].server.transport, moat_store::Transport::StreamableHttp);
        assert!(c.servers[1].server.allow_anonymous && c.servers[1].start_at_boot);
        let dup = "[[servers]]\nname=\"a\"\ncommand=[\"x\"]\n[[servers]]\nname=\"a\"\ncommand=[\"y\"]\n";
        assert!(load_with(dup, &[], Overrides::default()).unwrap_err().to_string().contains("twice"));
    }
}
