//! Tenants: the directory of isolation units. The table holds only ids and
//! names and has no row-level policy, because a tenant must be resolved by
//! name before any tenant scope exists (the operator's `--tenant`, the
//! config file's `[[servers]] tenant = …`).

use crate::store::check_name;
use crate::{Store, StoreError};
use moat_core::{TenantId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantRecord {
    /// Its id.
    pub id: TenantId,
    /// Its unique name.
    pub name: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

fn from_row(row: &AnyRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: TenantId::from_string(row.try_get::<String, _>("id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a tenant. A taken name is a [`StoreError::Conflict`].
    pub async fn create_tenant(&self, name: &str) -> Result<TenantRecord, StoreError> {
        check_name("tenant", name)?;
        let record = TenantRecord { id: TenantId::generate(), name: name.to_owned(), created_at: now_ms() };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(record.id.as_str())
            .bind(name)
            .bind(record.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::on_insert(e, || format!("a tenant named `{name}` already exists"), ""))?;
        Ok(record)
    }

    /// The tenant with this id.
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The tenant with this name.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every tenant, by name. Cross-tenant: for the operator and for boot.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes a tenant with its users, API keys, servers, teams, data keys
    /// and credentials (by cascade). Its audit events stay. False when no such tenant exists.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id.as_str()).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}
