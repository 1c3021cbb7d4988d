//! Upstream MCP servers registered for a tenant, from the config file
//! (`source = config`, upserted at boot) or the admin API (`source = api`).
//!
//! `env` and `headers` hold plain settings. Upstream credentials are not
//! stored here but in the vault, encrypted, and injected per call; still,
//! `Debug` prints only their keys.

use crate::store::{check_name, flag, json, parsed, text_enum, to_json};
use crate::{Store, StoreError};
use moat_core::{ServerId, TenantId, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use std::fmt;

/// How moat reaches an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A child process speaking JSON-RPC over stdin/stdout.
    Stdio,
    /// MCP Streamable HTTP.
    StreamableHttp,
    /// The legacy HTTP+SSE transport.
    Sse,
}
text_enum!(Transport, "transport", { Stdio => "stdio", StreamableHttp => "streamable-http", Sse => "sse" });

/// Where a server registration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerSource {
    /// A `[[servers]]` entry of the config file, applied at boot.
    Config,
    /// Registered through the admin API or CLI.
    Api,
}
text_enum!(ServerSource, "server source", { Config => "config", Api => "api" });

/// A registered upstream.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServerRecord {
    /// Its id.
    pub id: ServerId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Unique within the tenant; the tool prefix.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Endpoint, for HTTP transports.
    pub url: Option<String>,
    /// Program and arguments, for stdio.
    pub command: Option<Vec<String>>,
    /// Environment given to a stdio process (nothing else is inherited).
    /// Serialised with values redacted: they may be credentials.
    #[serde(serialize_with = "redacted_values")]
    pub env: BTreeMap<String, String>,
    /// Extra request headers for HTTP transports (values redacted when
    /// serialised).
    #[serde(serialize_with = "redacted_values")]
    pub headers: BTreeMap<String, String>,
    /// Whether callers without credentials may use it.
    pub allow_anonymous: bool,
    /// Config file or API.
    pub source: ServerSource,
    /// Disabled servers are kept but not routed to.
    pub enabled: bool,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last change, unix milliseconds.
    pub updated_at: i64,
}

impl fmt::Debug for ServerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("allow_anonymous", &self.allow_anonymous)
            .field("source", &self.source)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What [`Store::create_server`] and [`Store::upsert_config_server`] store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewServer {
    /// Unique within the tenant; must pass [`moat_core::validate_name`].
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Required for HTTP transports, refused for stdio.
    pub url: Option<String>,
    /// Required (non-empty) for stdio, refused for HTTP transports.
    pub command: Option<Vec<String>>,
    /// Environment for a stdio process.
    pub env: BTreeMap<String, String>,
    /// Extra headers for HTTP transports.
    pub headers: BTreeMap<String, String>,
    /// Whether callers without credentials may use it.
    pub allow_anonymous: bool,
    /// Whether it is routed to.
    pub enabled: bool,
}

impl NewServer {
    /// A stdio server running `command`, enabled, with no environment.
    pub fn stdio(name: impl Into<String>, command: Vec<String>) -> Self {
        Self::base(name.into(), Transport::Stdio, None, Some(command))
    }

    /// An HTTP server (`StreamableHttp` or `Sse`) at `url`, enabled.
    pub fn http(name: impl Into<String>, transport: Transport, url: impl Into<String>) -> Self {
        Self::base(name.into(), transport, Some(url.into()), None)
    }

    fn base(name: String, transport: Transport, url: Option<String>, command: Option<Vec<String>>) -> Self {
        Self {
            name,
            transport,
            url,
            command,
            env: BTreeMap::new(),
            headers: BTreeMap::new(),
            allow_anonymous: false,
            enabled: true,
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        check_name("server", &self.name)?;
        match self.transport {
            Transport::Stdio => {
                if self.url.is_some() {
                    return Err(StoreError::Invalid("a stdio server takes a command, not a url".into()));
                }
                if self.command.as_ref().is_none_or(|c| c.first().is_none_or(String::is_empty)) {
                    return Err(StoreError::Invalid("a stdio server needs a non-empty command".into()));
                }
            }
            Transport::StreamableHttp | Transport::Sse => {
                if self.command.is_some() {
                    return Err(StoreError::Invalid("an HTTP server takes a url, not a command".into()));
                }
                if self.url.as_deref().is_none_or(str::is_empty) {
                    return Err(StoreError::Invalid("an HTTP server needs a url".into()));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NewServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewServer")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("allow_anonymous", &self.allow_anonymous)
            .field("enabled", &self.enabled)
            .finish()
    }
}

const COLUMNS: &str = "id, tenant_id, name, transport, url, command, env, headers, allow_anonymous, \
                       source, enabled, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<ServerRecord, StoreError> {
    let command: Option<String> = row.try_get("command")?;
    let command =
        command.map(|text| serde_json::from_str(&text).map_err(|_| StoreError::corrupt("command"))).transpose()?;
    Ok(ServerRecord {
        id: ServerId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        name: row.try_get("name")?,
        transport: parsed(row, "transport")?,
        url: row.try_get("url")?,
        command,
        env: json(row, "env")?,
        headers: json(row, "headers")?,
        allow_anonymous: flag(row, "allow_anonymous")?,
        source: parsed(row, "source")?,
        enabled: flag(row, "enabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `INSERT … VALUES` shared by create and upsert; `$10` is the source.
const INSERT: &str = "INSERT INTO servers (id, tenant_id, name, transport, url, command, env, headers, \
     allow_anonymous, source, enabled, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)";

impl Store {
    /// Registers a server through the API (`source = api`). A taken name is
    /// a [`StoreError::Conflict`].
    pub async fn create_server(&self, tenant: &TenantId, new: NewServer) -> Result<ServerRecord, StoreError> {
        self.write_server(tenant, new, ServerSource::Api).await
    }

    /// Applies a `[[servers]]` entry of the config file at boot: inserts it,
    /// or updates the tenant's server of that name in place (keeping its id),
    /// and marks it `source = config`. The file is the operator's word, so it
    /// also takes over a same-named server that was registered by the API.
    pub async fn upsert_config_server(&self, tenant: &TenantId, new: NewServer) -> Result<ServerRecord, StoreError> {
        self.write_server(tenant, new, ServerSource::Config).await
    }

    async fn write_server(
        &self,
        tenant: &TenantId,
        new: NewServer,
        source: ServerSource,
    ) -> Result<ServerRecord, StoreError> {
        new.validate()?;
        let command = new.command.as_ref().map(to_json).transpose()?;
        let sql = match source {
            ServerSource::Api => INSERT.to_owned(),
            ServerSource::Config => format!(
                "{INSERT} ON CONFLICT (tenant_id, name) DO UPDATE SET transport = excluded.transport, \
                 url = excluded.url, command = excluded.command, env = excluded.env, \
                 headers = excluded.headers, allow_anonymous = excluded.allow_anonymous, \
                 source = excluded.source, enabled = excluded.enabled, updated_at = excluded.updated_at"
            ),
        };
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(&sql)
            .bind(ServerId::generate().as_str().to_owned())
            .bind(tenant.as_str())
            .bind(new.name.as_str())
            .bind(new.transport.as_str())
            .bind(new.url.as_deref())
            .bind(command)
            .bind(to_json(&new.env)?)
            .bind(to_json(&new.headers)?)
            .bind(new.allow_anonymous)
            .bind(source.as_str())
            .bind(new.enabled)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::on_insert(
                    e,
                    || format!("a server named `{}` already exists in this tenant", new.name),
                    "the tenant does not exist",
                )
            })?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM servers WHERE tenant_id = $1 AND name = $2"))
            .bind(tenant.as_str())
            .bind(new.name.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let record = from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every server of `tenant`, by name.
    pub async fn list_servers(&self, tenant: &TenantId) -> Result<Vec<ServerRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM servers WHERE tenant_id = $1 ORDER BY name"))
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// The server of `tenant` whose id or name is `id_or_name` (an id wins).
    pub async fn find_server(&self, tenant: &TenantId, id_or_name: &str) -> Result<Option<ServerRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM servers WHERE tenant_id = $1 AND (id = $2 OR name = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(id_or_name)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Deletes a server of `tenant`. False when `tenant` has no such server.
    pub async fn delete_server(&self, tenant: &TenantId, id: &ServerId) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM servers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every server of every tenant, by tenant then name. Cross-tenant: for
    /// building the upstream registry at boot.
    pub async fn list_all_servers(&self) -> Result<Vec<ServerRecord>, StoreError> {
        let mut tx = self.system_tx().await?;
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM servers ORDER BY tenant_id, name")).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_round_trips_in_text_and_json() {
        for t in [Transport::Stdio, Transport::StreamableHttp, Transport::Sse] {
            assert_eq!(t.as_str().parse::<Transport>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        }
        let err = "websocket".parse::<Transport>().unwrap_err().to_string();
        assert!(err.contains("streamable-http"), "{err}");
    }

    #[test]
    fn validation_matches_transport() {
        assert!(NewServer::stdio("a", vec!["npx".into()]).validate().is_ok());
        assert!(NewServer::stdio("a", vec![]).validate().is_err());
        assert!(NewServer::http("a", Transport::Sse, "").validate().is_err());
        assert!(NewServer::http("a", Transport::StreamableHttp, "http://x/mcp").validate().is_ok());
        let mut mixed = NewServer::http("a", Transport::Sse, "http://x/sse");
        mixed.command = Some(vec!["x".into()]);
        assert!(mixed.validate().is_err());
        assert!(NewServer::stdio("Bad_Name", vec!["x".into()]).validate().is_err());
    }

    #[test]
    fn debug_hides_env_and_header_values() {
        let mut s = NewServer::stdio("a", vec!["x".into()]);
        s.env.insert("TOKEN".into(), "hunter2".into());
        let text = format!("{s:?}");
        assert!(text.contains("TOKEN") && !text.contains("hunter2"), "{text}");
    }
}

/// Serialises a map's keys with every value replaced by `[redacted]`: env
/// and header values may carry credentials, which never leave moat through
/// an API response.
fn redacted_values<S: serde::Serializer>(map: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = s.serialize_map(Some(map.len()))?;
    for k in map.keys() {
        out.serialize_entry(k, "[redacted]")?;
    }
    out.end()
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn serialised_records_never_carry_env_or_header_values() {
        let mut new = NewServer::http("s", Transport::StreamableHttp, "http://127.0.0.1:1/mcp");
        new.headers.insert("Authorization".into(), "Bearer super-secret-token".into());
        new.env.insert("API_KEY".into(), "sk-live-123".into());
        let record = ServerRecord {
            id: moat_core::ServerId::generate(),
            tenant_id: moat_core::TenantId::generate(),
            name: new.name,
            transport: new.transport,
            url: new.url,
            command: None,
            env: new.env,
            headers: new.headers,
            allow_anonymous: false,
            source: ServerSource::Api,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("super-secret-token") && !json.contains("sk-live-123"), "{json}");
        assert!(json.contains("Authorization") && json.contains("[redacted]"), "{json}");
    }
}
