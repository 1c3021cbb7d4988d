//! API keys: stored as an Argon2id hash with a public id for lookup.
//!
//! Two record types keep the hash where it belongs: [`ApiKeyRecord`] (lists,
//! admin views, serialisable) never carries it; [`AuthKeyRecord`] (the
//! authentication lookup) does, is not serialisable, and redacts it in Debug.

use crate::store::{check_name, flag, parsed};
use crate::{Store, StoreError};
use moat_core::{ApiKeyId, PrincipalKind, Role, TenantId, UserId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::fmt;

/// An API key as admins see it: everything but the secret hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyRecord {
    /// Its id.
    pub id: ApiKeyId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// The user it authenticates as.
    pub user_id: UserId,
    /// Unique among the tenant's live keys.
    pub name: String,
    /// The lookup id embedded in the key (not secret).
    pub public_id: String,
    /// Role the key grants.
    pub role: Role,
    /// Kind of principal the key stands for.
    pub kind: PrincipalKind,
    /// True for the deployment operator's key.
    pub operator: bool,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last successful use, when recorded.
    pub last_used_at: Option<i64>,
    /// Expiry, when set.
    pub expires_at: Option<i64>,
    /// Revocation time, when revoked.
    pub revoked_at: Option<i64>,
    /// True when revoked (`revoked_at` is set).
    pub revoked: bool,
}

/// What [`Store::insert_api_key`] stores. The caller generates the key and
/// hashes it; the store never sees the key itself.
#[derive(Clone)]
pub struct NewApiKey {
    /// The user of the same tenant that the key authenticates as.
    pub user_id: UserId,
    /// Unique among the tenant's live keys.
    pub name: String,
    /// The lookup id embedded in the key; unique across all tenants.
    pub public_id: String,
    /// Argon2id PHC string of the key's secret.
    pub secret_hash: String,
    /// Role the key grants.
    pub role: Role,
    /// Kind of principal the key stands for.
    pub kind: PrincipalKind,
    /// True for the deployment operator's key.
    pub operator: bool,
    /// Expiry, unix milliseconds, when wanted.
    pub expires_at: Option<i64>,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("public_id", &self.public_id)
            .field("secret_hash", &"<redacted>")
            .field("role", &self.role)
            .field("kind", &self.kind)
            .field("operator", &self.operator)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What authentication needs to verify a presented key and build a
/// principal. Deliberately not `Serialize`: it carries the hash.
#[derive(Clone)]
pub struct AuthKeyRecord {
    /// The key's id.
    pub id: ApiKeyId,
    /// The tenant the key belongs to.
    pub tenant_id: TenantId,
    /// That tenant's name.
    pub tenant_name: String,
    /// The user the key authenticates as.
    pub user_id: UserId,
    /// The key's name.
    pub name: String,
    /// The lookup id embedded in the key.
    pub public_id: String,
    /// Argon2id PHC string to verify the presented secret against.
    pub secret_hash: String,
    /// Role the key grants.
    pub role: Role,
    /// Kind of principal.
    pub kind: PrincipalKind,
    /// True for the deployment operator's key.
    pub operator: bool,
    /// Expiry, when set.
    pub expires_at: Option<i64>,
    /// Revocation time, when revoked.
    pub revoked_at: Option<i64>,
}

impl AuthKeyRecord {
    /// True when the key was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// True when the key has an expiry at or before `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }

    /// True when the key may authenticate at `now_ms`: neither revoked nor
    /// expired. (The secret still has to be verified.)
    pub fn is_usable(&self, now_ms: i64) -> bool {
        !self.is_revoked() && !self.is_expired(now_ms)
    }
}

impl fmt::Debug for AuthKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKeyRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("tenant_name", &self.tenant_name)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("public_id", &self.public_id)
            .field("secret_hash", &"<redacted>")
            .field("role", &self.role)
            .field("kind", &self.kind)
            .field("operator", &self.operator)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

const COLUMNS: &str = "id, tenant_id, user_id, name, public_id, role, kind, operator, \
                       created_at, last_used_at, expires_at, revoked_at";

fn from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        user_id: UserId::from_string(row.try_get::<String, _>("user_id")?),
        name: row.try_get("name")?,
        public_id: row.try_get("public_id")?,
        role: parsed(row, "role")?,
        kind: parsed(row, "kind")?,
        operator: flag(row, "operator")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at,
        revoked: revoked_at.is_some(),
    })
}

fn auth_from_row(row: &AnyRow) -> Result<AuthKeyRecord, StoreError> {
    Ok(AuthKeyRecord {
        id: ApiKeyId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        tenant_name: row.try_get("tenant_name")?,
        user_id: UserId::from_string(row.try_get::<String, _>("user_id")?),
        name: row.try_get("name")?,
        public_id: row.try_get("public_id")?,
        secret_hash: row.try_get("secret_hash")?,
        role: parsed(row, "role")?,
        kind: parsed(row, "kind")?,
        operator: flag(row, "operator")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// A unique violation on `api_keys`: the public id (a collision of random
/// ids, practically never) or the live name.
fn key_conflict(err: sqlx::Error, name: &str) -> StoreError {
    let public_id = match &err {
        sqlx::Error::Database(db) => db.constraint().unwrap_or(db.message()).contains("public_id"),
        _ => false,
    };
    StoreError::on_insert(
        err,
        || {
            if public_id {
                "an API key with this public id already exists".to_owned()
            } else {
                format!("an API key named `{name}` already exists in this tenant")
            }
        },
        "the user does not exist in this tenant",
    )
}

impl Store {
    /// Stores a new key for a user of `tenant`. A live key of the same name
    /// is a [`StoreError::Conflict`]; a user of another tenant is
    /// [`StoreError::Invalid`] (the foreign key spans tenant and user).
    pub async fn insert_api_key(&self, tenant: &TenantId, new: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        check_name("key", &new.name)?;
        let record = ApiKeyRecord {
            id: ApiKeyId::generate(),
            tenant_id: tenant.clone(),
            user_id: new.user_id,
            name: new.name,
            public_id: new.public_id,
            role: new.role,
            kind: new.kind,
            operator: new.operator,
            created_at: now_ms(),
            last_used_at: None,
            expires_at: new.expires_at,
            revoked_at: None,
            revoked: false,
        };
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, user_id, name, public_id, secret_hash, role, kind, \
             operator, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(record.id.as_str())
        .bind(tenant.as_str())
        .bind(record.user_id.as_str())
        .bind(record.name.as_str())
        .bind(record.public_id.as_str())
        .bind(new.secret_hash.as_str())
        .bind(record.role.as_str())
        .bind(record.kind.as_str())
        .bind(record.operator)
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| key_conflict(e, &record.name))?;
        tx.commit().await?;
        Ok(record)
    }

    /// Looks a key up by the public id embedded in it, across all tenants:
    /// authentication runs before the tenant is known. Returns revoked and
    /// expired keys too; the caller checks [`AuthKeyRecord::is_usable`].
    pub async fn api_key_for_auth(&self, public_id: &str) -> Result<Option<AuthKeyRecord>, StoreError> {
        let mut tx = self.system_tx().await?;
        let row = sqlx::query(
            "SELECT k.id, k.tenant_id, t.name AS tenant_name, k.user_id, k.name, k.public_id, \
             k.secret_hash, k.role, k.kind, k.operator, k.expires_at, k.revoked_at \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.public_id = $1",
        )
        .bind(public_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(auth_from_row).transpose()
    }

    /// The key of `tenant` with this id (revoked or not), or the live key
    /// with this name.
    pub async fn find_api_key(&self, tenant: &TenantId, id_or_name: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 \
             AND (id = $2 OR (name = $2 AND revoked_at IS NULL)) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(id_or_name)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every key of `tenant`, revoked ones included (flagged), by name then
    /// creation.
    pub async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY name, created_at, id"))
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Revokes a live key of `tenant`. False when there is no such live key
    /// (unknown, another tenant's, or already revoked).
    pub async fn revoke_api_key(&self, tenant: &TenantId, id: &ApiKeyId) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces a live key's secret (regeneration): same row, name, role and
    /// expiry; new public id and hash, so the old key stops working at once.
    /// False when there is no such live key; revoked keys are refused.
    pub async fn rotate_api_key_secret(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        new_public_id: &str,
        new_secret_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE api_keys SET public_id = $3, secret_hash = $4 \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(new_public_id)
        .bind(new_secret_hash)
        .execute(&mut *tx)
        .await
        .map_err(|e| key_conflict(e, ""))?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a successful use of a key (never moves `last_used_at` back).
    pub async fn touch_api_key(&self, tenant: &TenantId, id: &ApiKeyId, at_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
