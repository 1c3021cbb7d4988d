//! The firewall's rows: approvals (calls held for an admin, and tool
//! descriptions that changed after first sight), description fingerprints
//! ("pins"), a tenant's policy overrides and its own detection patterns.
//!
//! Nothing here holds scanned content: an approval's `summary` is metadata
//! (categories, rules, actions) and a pin is a hash.

use crate::store::{check_name, json, parsed, text_enum, to_json};
use crate::{Store, StoreError};
use moat_core::{ServerId, TenantId, new_id, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

/// What an approval is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// A held call (`tools/call`, `resources/read`, `prompts/get`).
    Call,
    /// A tool, prompt or resource whose description changed after it was first seen.
    ToolChange,
}
text_enum!(ApprovalKind, "approval kind", { Call => "call", ToolChange => "tool_change" });

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an admin.
    Pending,
    /// An admin approved it.
    Approved,
    /// An admin denied it.
    Denied,
    /// Nobody answered in time: denied.
    Expired,
}
text_enum!(ApprovalStatus, "approval status", {
    Pending => "pending", Approved => "approved", Denied => "denied", Expired => "expired"
});

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApprovalRecord {
    /// Its id.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Call or description change.
    pub kind: ApprovalKind,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// The server's id.
    pub server_id: ServerId,
    /// The server's name.
    pub server_name: String,
    /// The tool, prompt or resource (`tool:<name>` etc. for a description change).
    pub target: String,
    /// The MCP method held (`tools/call`…), or `tools/list` for a change.
    pub method: String,
    /// The user whose call is held.
    pub requested_by: Option<String>,
    /// What the firewall found: categories, rules and actions, never text.
    #[schema(value_type = Object)]
    pub summary: Value,
    /// For a description change: the fingerprint that would be approved.
    #[serde(skip)]
    pub hash: Option<String>,
    /// When it was created, unix milliseconds.
    pub created_at: i64,
    /// When an unanswered call approval is denied, unix milliseconds.
    pub expires_at: Option<i64>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When, unix milliseconds.
    pub decided_at: Option<i64>,
}

/// A new approval.
#[derive(Clone, Debug)]
pub struct NewApproval {
    /// Call or description change.
    pub kind: ApprovalKind,
    /// The server's id.
    pub server_id: ServerId,
    /// The server's name.
    pub server_name: String,
    /// The tool, prompt or resource.
    pub target: String,
    /// The MCP method.
    pub method: String,
    /// The user whose call is held.
    pub requested_by: Option<String>,
    /// Findings metadata.
    pub summary: Value,
    /// For a description change: the new fingerprint.
    pub hash: Option<String>,
    /// Deadline, unix milliseconds.
    pub expires_at: Option<i64>,
}

const APPROVAL_COLUMNS: &str = "id, tenant_id, kind, status, server_id, server_name, target, method, requested_by, \
     summary, hash, created_at, expires_at, decided_by, decided_at";

fn approval_from_row(row: &AnyRow) -> Result<ApprovalRecord, StoreError> {
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        kind: parsed(row, "kind")?,
        status: parsed(row, "status")?,
        server_id: ServerId::from_string(row.try_get::<String, _>("server_id")?),
        server_name: row.try_get("server_name")?,
        target: row.try_get("target")?,
        method: row.try_get("method")?,
        requested_by: row.try_get("requested_by")?,
        summary: json(row, "summary")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// A description fingerprint of one tool, prompt or resource of a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolPin {
    /// `tool`, `prompt`, `resource` or `resource_template`.
    pub kind: String,
    /// Its upstream name (or URI).
    pub name: String,
    /// The fingerprint admins accepted.
    pub approved_hash: String,
    /// The latest fingerprint the upstream sent.
    pub seen_hash: String,
}

/// A tenant's firewall override for the tenant, a server or one tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FirewallPolicyRecord {
    /// Its id.
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// A server name, or empty for every server.
    pub server: String,
    /// A tool (prompt, resource) name of that server, or empty for all.
    pub tool: String,
    /// `enforce`, `shadow` or `disabled`; none keeps the inherited mode.
    pub mode: Option<String>,
    /// Policy rules layered over the inherited ones (JSON array).
    #[schema(value_type = Vec<Object>)]
    pub rules: Value,
    /// The largest request or result, in bytes, before an `oversized-payload`
    /// exfiltration finding; none keeps the inherited budget.
    pub budget_bytes: Option<i64>,
    /// Who set it.
    pub updated_by: Option<String>,
    /// When, unix milliseconds.
    pub updated_at: i64,
}

/// What a firewall override sets (see [`FirewallPolicyRecord`]).
#[derive(Clone, Copy, Debug)]
pub struct FirewallOverride<'a> {
    /// A server name, or empty for every server.
    pub server: &'a str,
    /// A tool of that server, or empty for all.
    pub tool: &'a str,
    /// `enforce`, `shadow` or `disabled`; none keeps the inherited mode.
    pub mode: Option<&'a str>,
    /// Policy rules (JSON array).
    pub rules: &'a Value,
    /// Payload budget in bytes; none keeps the inherited one.
    pub budget_bytes: Option<i64>,
}

/// A tenant's own detection pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FirewallPatternRecord {
    /// Its id.
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The rule id findings carry (unique in the tenant).
    pub name: String,
    /// The category reported (`pii` usually).
    pub category: String,
    /// The regular expression.
    pub pattern: String,
    /// Who added it.
    pub created_by: Option<String>,
    /// When, unix milliseconds.
    pub created_at: i64,
}

impl Store {
    /// Records a new pending approval.
    pub async fn create_approval(&self, tenant: &TenantId, new: NewApproval) -> Result<ApprovalRecord, StoreError> {
        let record = ApprovalRecord {
            id: new_id(),
            tenant_id: tenant.clone(),
            kind: new.kind,
            status: ApprovalStatus::Pending,
            server_id: new.server_id,
            server_name: new.server_name,
            target: new.target,
            method: new.method,
            requested_by: new.requested_by,
            summary: new.summary,
            hash: new.hash,
            created_at: now_ms(),
            expires_at: new.expires_at,
            decided_by: None,
            decided_at: None,
        };
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO approvals (id, tenant_id, kind, status, server_id, server_name, target, method, \
             requested_by, summary, hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&record.id)
        .bind(tenant.as_str())
        .bind(record.kind.as_str())
        .bind(record.status.as_str())
        .bind(record.server_id.as_str())
        .bind(&record.server_name)
        .bind(&record.target)
        .bind(&record.method)
        .bind(record.requested_by.as_deref())
        .bind(to_json(&record.summary)?)
        .bind(record.hash.as_deref())
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One approval of `tenant`.
    pub async fn get_approval(&self, tenant: &TenantId, id: &str) -> Result<ApprovalRecord, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        approval_from_row(&row)
    }

    /// The approvals of `tenant`, newest first; only those with `status` when given.
    pub async fn list_approvals(
        &self,
        tenant: &TenantId,
        status: Option<ApprovalStatus>,
        limit: i64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 AND status = $2 \
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                ))
                .bind(tenant.as_str())
                .bind(s.as_str())
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(tenant.as_str())
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        rows.iter().map(approval_from_row).collect()
    }

    /// Decides a pending approval. Only a pending one can be decided: a
    /// decided or expired one is a [`StoreError::Conflict`] naming its status.
    pub async fn decide_approval(
        &self,
        tenant: &TenantId,
        id: &str,
        status: ApprovalStatus,
        by: Option<&str>,
    ) -> Result<ApprovalRecord, StoreError> {
        if status == ApprovalStatus::Pending {
            return Err(StoreError::Invalid("an approval cannot be set back to pending".into()));
        }
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3 \
             WHERE tenant_id = $4 AND id = $5 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(by)
        .bind(now_ms())
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        let record = approval_from_row(&row)?;
        if done == 0 {
            return Err(StoreError::Conflict(format!("approval `{id}` is already {}", record.status)));
        }
        Ok(record)
    }

    /// Marks every pending call approval past its deadline as expired, in
    /// every tenant (the sweeper). Returns how many.
    pub async fn expire_approvals_cross_tenant(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let n = sqlx::query(
            "UPDATE approvals SET status = 'expired', decided_at = $1 \
             WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// The pending description-change approval of one item, if any.
    pub async fn pending_tool_change(
        &self,
        tenant: &TenantId,
        server: &ServerId,
        target: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE tenant_id = $1 AND server_id = $2 AND target = $3 \
             AND kind = 'tool_change' AND status = 'pending' ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(server.as_str())
        .bind(target)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(approval_from_row).transpose()
    }

    /// Every pin of one server.
    pub async fn tool_pins(&self, tenant: &TenantId, server: &ServerId) -> Result<Vec<ToolPin>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT kind, name, approved_hash, seen_hash FROM tool_pins WHERE tenant_id = $1 AND server_id = $2",
        )
        .bind(tenant.as_str())
        .bind(server.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(ToolPin {
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    approved_hash: r.try_get("approved_hash")?,
                    seen_hash: r.try_get("seen_hash")?,
                })
            })
            .collect()
    }

    /// Records a fingerprint seen from the upstream: a first sighting pins
    /// it (approved); a later one only updates `seen_hash`. Returns the pin.
    pub async fn see_tool(
        &self,
        tenant: &TenantId,
        server: &ServerId,
        kind: &str,
        name: &str,
        hash: &str,
    ) -> Result<ToolPin, StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO tool_pins (tenant_id, server_id, kind, name, approved_hash, seen_hash, first_seen_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $5, $6, $6) \
             ON CONFLICT (tenant_id, server_id, kind, name) DO UPDATE SET seen_hash = $5, updated_at = $6",
        )
        .bind(tenant.as_str())
        .bind(server.as_str())
        .bind(kind)
        .bind(name)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT kind, name, approved_hash, seen_hash FROM tool_pins \
             WHERE tenant_id = $1 AND server_id = $2 AND kind = $3 AND name = $4",
        )
        .bind(tenant.as_str())
        .bind(server.as_str())
        .bind(kind)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ToolPin {
            kind: row.try_get("kind")?,
            name: row.try_get("name")?,
            approved_hash: row.try_get("approved_hash")?,
            seen_hash: row.try_get("seen_hash")?,
        })
    }

    /// Accepts `hash` as the approved fingerprint of one item.
    pub async fn approve_tool(
        &self,
        tenant: &TenantId,
        server: &ServerId,
        kind: &str,
        name: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let n = sqlx::query(
            "UPDATE tool_pins SET approved_hash = $1, updated_at = $2 \
             WHERE tenant_id = $3 AND server_id = $4 AND kind = $5 AND name = $6",
        )
        .bind(hash)
        .bind(now_ms())
        .bind(tenant.as_str())
        .bind(server.as_str())
        .bind(kind)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Every firewall override of `tenant`.
    pub async fn list_firewall_policies(&self, tenant: &TenantId) -> Result<Vec<FirewallPolicyRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, server, tool, mode, rules, budget_bytes, updated_by, updated_at FROM firewall_policies \
             WHERE tenant_id = $1 ORDER BY server, tool",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(FirewallPolicyRecord {
                    id: r.try_get("id")?,
                    tenant_id: TenantId::from_string(r.try_get::<String, _>("tenant_id")?),
                    server: r.try_get("server")?,
                    tool: r.try_get("tool")?,
                    mode: r.try_get("mode")?,
                    rules: json(r, "rules")?,
                    budget_bytes: r.try_get("budget_bytes")?,
                    updated_by: r.try_get("updated_by")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Sets (creates or replaces) the override for (server, tool) of `tenant`.
    pub async fn put_firewall_policy(
        &self,
        tenant: &TenantId,
        o: FirewallOverride<'_>,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        if o.server.is_empty() && !o.tool.is_empty() {
            return Err(StoreError::Invalid("a tool override needs its server".into()));
        }
        if o.budget_bytes.is_some_and(|b| b <= 0) {
            return Err(StoreError::Invalid("a payload budget must be positive".into()));
        }
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO firewall_policies (id, tenant_id, server, tool, mode, rules, budget_bytes, updated_by, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, server, tool) DO UPDATE SET mode = $5, rules = $6, budget_bytes = $7, \
             updated_by = $8, updated_at = $9",
        )
        .bind(new_id())
        .bind(tenant.as_str())
        .bind(o.server)
        .bind(o.tool)
        .bind(o.mode)
        .bind(to_json(o.rules)?)
        .bind(o.budget_bytes)
        .bind(by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the override for (server, tool) of `tenant`.
    pub async fn delete_firewall_policy(&self, tenant: &TenantId, server: &str, tool: &str) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let n = sqlx::query("DELETE FROM firewall_policies WHERE tenant_id = $1 AND server = $2 AND tool = $3")
            .bind(tenant.as_str())
            .bind(server)
            .bind(tool)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// The tenant's own detection patterns.
    pub async fn list_firewall_patterns(&self, tenant: &TenantId) -> Result<Vec<FirewallPatternRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, name, category, pattern, created_by, created_at FROM firewall_patterns \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(FirewallPatternRecord {
                    id: r.try_get("id")?,
                    tenant_id: TenantId::from_string(r.try_get::<String, _>("tenant_id")?),
                    name: r.try_get("name")?,
                    category: r.try_get("category")?,
                    pattern: r.try_get("pattern")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds a pattern (validated by the caller: the store does not compile it).
    pub async fn add_firewall_pattern(
        &self,
        tenant: &TenantId,
        name: &str,
        category: &str,
        pattern: &str,
        by: Option<&str>,
    ) -> Result<FirewallPatternRecord, StoreError> {
        check_name("pattern", name)?;
        let record = FirewallPatternRecord {
            id: new_id(),
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            category: category.to_owned(),
            pattern: pattern.to_owned(),
            created_by: by.map(str::to_owned),
            created_at: now_ms(),
        };
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO firewall_patterns (id, tenant_id, name, category, pattern, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(tenant.as_str())
        .bind(name)
        .bind(category)
        .bind(pattern)
        .bind(by)
        .bind(record.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::on_insert(
                e,
                || format!("a pattern named `{name}` already exists in this tenant"),
                "the tenant does not exist",
            )
        })?;
        tx.commit().await?;
        Ok(record)
    }

    /// Removes a pattern by id or name.
    pub async fn delete_firewall_pattern(&self, tenant: &TenantId, id_or_name: &str) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let n = sqlx::query("DELETE FROM firewall_patterns WHERE tenant_id = $1 AND (id = $2 OR name = $2)")
            .bind(tenant.as_str())
            .bind(id_or_name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }
}
