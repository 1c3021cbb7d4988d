//! The audit trail: append-only metadata events.
//!
//! Rows are never updated or deleted (triggers refuse it on both backends)
//! and outlive their tenant. Events carry metadata only: never a request or
//! response body, never a credential.

use crate::store::{json, parsed, text_enum, to_json};
use crate::{Backend, Store, StoreError};
use moat_core::{AuditId, TenantId, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::OnceLock;

/// Rows returned by [`Store::list_audit`] when the query names no limit.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// The most rows one [`Store::list_audit`] call returns.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    /// It was done.
    Ok,
    /// It was refused (authentication, authorisation, policy).
    Denied,
    /// It failed.
    Error,
}
text_enum!(AuditResult, "audit result", { Ok => "ok", Denied => "denied", Error => "error" });

/// One audit event, as appended and as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Its id (made by the emitter, so a retried batch cannot duplicate it).
    pub id: AuditId,
    /// The tenant, when known (`None` for e.g. a garbage API key).
    pub tenant_id: Option<TenantId>,
    /// When it happened, unix milliseconds.
    pub at: i64,
    /// What kind of actor acted (`human`, `agent`, `service`, `anonymous`, …).
    pub actor_kind: String,
    /// The actor's id (user, key or client), when known.
    pub actor_id: Option<String>,
    /// Dotted action name, e.g. `auth.success`, `key.revoke`, `mcp.tools/call`.
    pub action: String,
    /// What was acted on (server, tool, key id), when any.
    pub resource: Option<String>,
    /// How it ended.
    pub result: AuditResult,
    /// The client's address.
    pub source_addr: Option<String>,
    /// The request id that ties the event to logs.
    pub request_id: Option<String>,
    /// How long it took.
    pub latency_ms: Option<i64>,
    /// Further metadata (never bodies or credentials).
    pub metadata: serde_json::Value,
}

/// The input of [`Store::append_audit`]: the same shape as what is listed.
pub type NewAuditEvent = AuditEvent;

impl AuditEvent {
    /// An event happening now, with a fresh id and empty metadata.
    pub fn new(actor_kind: impl Into<String>, action: impl Into<String>, result: AuditResult) -> Self {
        Self {
            id: AuditId::generate(),
            tenant_id: None,
            at: now_ms(),
            actor_kind: actor_kind.into(),
            actor_id: None,
            action: action.into(),
            resource: None,
            result,
            source_addr: None,
            request_id: None,
            latency_ms: None,
            metadata: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// Which events [`Store::list_audit`] returns, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// One tenant's events; `None` lists every tenant's and the tenant-less
    /// ones. Only the operator may ask for `None`: the caller enforces that.
    pub tenant: Option<TenantId>,
    /// Only events at or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// Only actions starting with this text (case-sensitive).
    pub action_prefix: Option<String>,
    /// At most this many rows (default [`DEFAULT_AUDIT_LIMIT`], capped at
    /// [`MAX_AUDIT_LIMIT`]).
    pub limit: Option<u32>,
    /// Paging: only events strictly older than this `(at, id)`, i.e. the last
    /// row of the previous page.
    pub before: Option<(i64, AuditId)>,
}

const COLUMNS: &str = "id, tenant_id, at, actor_kind, actor_id, action, resource, result, \
                       source_addr, request_id, latency_ms, metadata";

fn from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: AuditId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: row.try_get::<Option<String>, _>("tenant_id")?.map(TenantId::from_string),
        at: row.try_get("at")?,
        actor_kind: row.try_get("actor_kind")?,
        actor_id: row.try_get("actor_id")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        result: parsed(row, "result")?,
        source_addr: row.try_get("source_addr")?,
        request_id: row.try_get("request_id")?,
        latency_ms: row.try_get("latency_ms")?,
        metadata: json(row, "metadata")?,
    })
}

/// Rows per multi-row `INSERT` of audit events: one statement per 64 events
/// (768 parameters, under every SQLite and PostgreSQL limit) instead of one
/// per event.
const INSERT_ROWS: usize = 64;

/// The `INSERT` of `rows` (1 to [`INSERT_ROWS`]) audit events, built once
/// per backend and size. On SQLite the parameters are anonymous (`?`):
/// SQLite finds a named parameter (`$n`) by a linear scan of the statement's
/// names, so binding 768 of them costs a quadratic ~300,000 steps per
/// statement (measured: the largest share of the SQLite workers' time under
/// load).
fn insert_sql(backend: Backend, rows: usize) -> &'static str {
    static BUILT: [[OnceLock<String>; INSERT_ROWS]; 2] = [const { [const { OnceLock::new() }; INSERT_ROWS] }; 2];
    let rows = rows.clamp(1, INSERT_ROWS);
    BUILT[usize::from(backend == Backend::Postgres)][rows - 1].get_or_init(|| {
        let row = |r: usize| match backend {
            Backend::Sqlite => format!("({})", ["?"; 12].join(", ")),
            Backend::Postgres => format!("({})", crate::store::placeholders(r * 12 + 1, 12)),
        };
        let values: Vec<String> = (0..rows).map(row).collect();
        format!("INSERT INTO audit_events ({COLUMNS}) VALUES {}", values.join(", "))
    })
}

/// A bound value of a query assembled at run time.
enum Arg {
    Text(String),
    Int(i64),
}

impl Store {
    /// Appends a batch of events in one transaction: all or none.
    ///
    /// Cross-tenant by design (the audit sink writes every tenant's events,
    /// and tenant-less ones), so on PostgreSQL it runs in the RLS bypass.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.system_write_tx().await?;
        for chunk in events.chunks(INSERT_ROWS) {
            let sql = insert_sql(self.backend, chunk.len());
            let mut q = sqlx::query(sql);
            for event in chunk {
                q = q
                    .bind(event.id.as_str())
                    .bind(event.tenant_id.as_ref().map(TenantId::as_str))
                    .bind(event.at)
                    .bind(event.actor_kind.as_str())
                    .bind(event.actor_id.as_deref())
                    .bind(event.action.as_str())
                    .bind(event.resource.as_deref())
                    .bind(event.result.as_str())
                    .bind(event.source_addr.as_deref())
                    .bind(event.request_id.as_deref())
                    .bind(event.latency_ms)
                    .bind(to_json(&event.metadata)?);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| StoreError::on_insert(e, || "an audit event with this id already exists".into(), ""))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lists events, newest first (`at`, then `id`, descending).
    ///
    /// With `query.tenant` set it runs in that tenant's scope; without, it
    /// crosses tenants (the operator's view) and includes tenant-less events.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        // Adds a bound value and returns its placeholder number.
        fn push(args: &mut Vec<Arg>, arg: Arg) -> usize {
            args.push(arg);
            args.len()
        }
        if let Some(tenant) = &query.tenant {
            let n = push(&mut args, Arg::Text(tenant.as_str().to_owned()));
            clauses.push(format!("tenant_id = ${n}"));
        }
        if let Some(since) = query.since_ms {
            let n = push(&mut args, Arg::Int(since));
            clauses.push(format!("at >= ${n}"));
        }
        if let Some(prefix) = query.action_prefix.as_deref().filter(|p| !p.is_empty()) {
            // substr/length rather than LIKE: exact and case-sensitive on both
            // backends, with no wildcard escaping.
            let n = push(&mut args, Arg::Text(prefix.to_owned()));
            clauses.push(format!("substr(action, 1, length(${n})) = ${n}"));
        }
        if let Some((at, id)) = &query.before {
            let a = push(&mut args, Arg::Int(*at));
            let i = push(&mut args, Arg::Text(id.as_str().to_owned()));
            clauses.push(format!("(at < ${a} OR (at = ${a} AND id < ${i}))"));
        }
        let limit = query.limit.unwrap_or(DEFAULT_AUDIT_LIMIT).clamp(1, MAX_AUDIT_LIMIT);
        let l = push(&mut args, Arg::Int(i64::from(limit)));
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let sql = format!("SELECT {COLUMNS} FROM audit_events {filter} ORDER BY at DESC, id DESC LIMIT ${l}");

        let mut tx = match &query.tenant {
            Some(tenant) => self.tenant_tx(tenant).await?,
            None => self.system_tx().await?,
        };
        let mut q = sqlx::query(&sql);
        for arg in args {
            q = match arg {
                Arg::Text(t) => q.bind(t),
                Arg::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }
}
