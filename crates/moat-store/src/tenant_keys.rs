//! A tenant's data-encryption keys (DEKs), versioned, stored only wrapped by
//! the deployment's key-encryption key (KEK). The store never sees a DEK in
//! the clear: wrapping, unwrapping and sealing are the vault's work.
//!
//! The active version is the highest one; older versions stay until no
//! credential is sealed under them (the credentials' foreign key refuses to
//! delete a version in use).

use crate::store::version;
use crate::{Store, StoreError};
use moat_core::{TenantId, now_ms};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::fmt;

/// One version of a tenant's data key, wrapped. Deliberately neither
/// `Serialize` nor printed whole by `Debug`: it is key material, even
/// wrapped.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantKey {
    /// The tenant the key belongs to.
    pub tenant_id: TenantId,
    /// Its version, from 1; the highest is the active one.
    pub version: u32,
    /// The DEK wrapped by the KEK (opaque bytes to the store).
    pub wrapped: Vec<u8>,
    /// Which KEK provider wrapped it (and can unwrap it).
    pub provider: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey")
            .field("tenant_id", &self.tenant_id)
            .field("version", &self.version)
            .field("wrapped", &"<redacted>")
            .field("provider", &self.provider)
            .field("created_at", &self.created_at)
            .finish()
    }
}

const COLUMNS: &str = "tenant_id, version, wrapped, provider, created_at";

fn from_row(row: &AnyRow) -> Result<TenantKey, StoreError> {
    Ok(TenantKey {
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        version: version(row, "version")?,
        wrapped: row.try_get("wrapped")?,
        provider: row.try_get("provider")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// The active (highest) version of `tenant`'s data key, if it has one.
    pub async fn active_tenant_key(&self, tenant: &TenantId) -> Result<Option<TenantKey>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tenant_keys WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1"
        ))
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every version of `tenant`'s data key, ascending.
    pub async fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<TenantKey>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tenant_keys WHERE tenant_id = $1 ORDER BY version"))
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Stores a new version of `tenant`'s data key, wrapped. False when that
    /// version already exists (two replicas racing to create it: the caller
    /// re-reads the active key instead of erroring). Version 0 is
    /// [`StoreError::Invalid`], and so is an unknown tenant.
    pub async fn insert_tenant_key(
        &self,
        tenant: &TenantId,
        version: u32,
        wrapped: &[u8],
        provider: &str,
    ) -> Result<bool, StoreError> {
        if version == 0 {
            return Err(StoreError::Invalid("tenant key versions start at 1".into()));
        }
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, version, wrapped, provider, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, version) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(i64::from(version))
        .bind(wrapped)
        .bind(provider)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::on_insert(e, String::new, "the tenant does not exist"))?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces the wrapping of one version of `tenant`'s data key (KEK
    /// rotation: the DEK itself, and so every credential sealed under it,
    /// stays the same). False when there is no such version.
    pub async fn update_tenant_key_wrapping(
        &self,
        tenant: &TenantId,
        version: u32,
        new_wrapped: &[u8],
        provider: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done =
            sqlx::query("UPDATE tenant_keys SET wrapped = $3, provider = $4 WHERE tenant_id = $1 AND version = $2")
                .bind(tenant.as_str())
                .bind(i64::from(version))
                .bind(new_wrapped)
                .bind(provider)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes one version of `tenant`'s data key, once a rotation has
    /// resealed every credential that used it. False when there is no such
    /// version; a [`StoreError::Conflict`] while credentials are still sealed
    /// under it (the foreign key refuses, so a racing write cannot strand a
    /// credential without its key).
    pub async fn delete_tenant_key(&self, tenant: &TenantId, version: u32) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM tenant_keys WHERE tenant_id = $1 AND version = $2")
            .bind(tenant.as_str())
            .bind(i64::from(version))
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::Conflict(format!("tenant key version {version} is still used by credentials"))
                }
                _ => StoreError::from(e),
            })?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The ids of every tenant that has at least one data key, sorted.
    /// Cross-tenant (bypasses row-level security on PostgreSQL): for KEK
    /// rotation, which rewraps every tenant's keys, and for resuming
    /// interrupted DEK rotations at boot.
    pub async fn tenants_with_keys_cross_tenant(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut tx = self.system_tx().await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM tenant_keys ORDER BY tenant_id")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids.into_iter().map(TenantId::from_string).collect())
    }
}
