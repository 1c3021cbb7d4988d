//! Users of a tenant: the people and agents that API keys, team memberships
//! and personal or service credentials belong to.

use crate::store::{check_name, parsed};
use crate::{Store, StoreError};
use moat_core::{PrincipalKind, Role, TenantId, UserId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A user of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserRecord {
    /// Its id.
    pub id: UserId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Unique within the tenant.
    pub name: String,
    /// Contact address, when known.
    pub email: Option<String>,
    /// Human, agent, service or workflow.
    pub kind: PrincipalKind,
    /// Role inside the tenant.
    pub role: Role,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

/// What [`Store::create_user`] needs.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Unique within the tenant; must pass [`moat_core::validate_name`].
    pub name: String,
    /// Contact address, optional.
    pub email: Option<String>,
    /// Human, agent, service or workflow.
    pub kind: PrincipalKind,
    /// Role inside the tenant.
    pub role: Role,
}

const COLUMNS: &str = "id, tenant_id, name, email, kind, role, created_at";

fn from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        kind: parsed(row, "kind")?,
        role: parsed(row, "role")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a user in `tenant`. A taken name is a [`StoreError::Conflict`].
    pub async fn create_user(&self, tenant: &TenantId, new: NewUser) -> Result<UserRecord, StoreError> {
        check_name("user", &new.name)?;
        let record = UserRecord {
            id: UserId::generate(),
            tenant_id: tenant.clone(),
            name: new.name,
            email: new.email,
            kind: new.kind,
            role: new.role,
            created_at: now_ms(),
        };
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO users (id, tenant_id, name, email, kind, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.id.as_str())
        .bind(tenant.as_str())
        .bind(record.name.as_str())
        .bind(record.email.as_deref())
        .bind(record.kind.as_str())
        .bind(record.role.as_str())
        .bind(record.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::on_insert(
                e,
                || format!("a user named `{}` already exists in this tenant", record.name),
                "the tenant does not exist",
            )
        })?;
        tx.commit().await?;
        Ok(record)
    }

    /// The user with this id in `tenant`.
    pub async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The user of `tenant` whose id or name is `id_or_name` (an id wins).
    pub async fn find_user(&self, tenant: &TenantId, id_or_name: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND (id = $2 OR name = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(id_or_name)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every user of `tenant`, by name.
    pub async fn list_users(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY name"))
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes a user of `tenant` with, by cascade, its API keys, its team
    /// memberships and its personal and service credentials. False when
    /// `tenant` has no such user.
    pub async fn delete_user(&self, tenant: &TenantId, id: &UserId) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
