//! A tenant's identity material: sealed small secrets (signing keys'
//! private halves, the identity provider's client secret), access-token
//! signing keys, per-tenant identity settings (registration switches, the
//! revocation watermark, the identity provider) and browser sessions.
//!
//! The store does no cryptography: secrets arrive sealed by the vault and
//! session ids arrive as digests.

use crate::store::{flag, json, parsed, text_enum, to_json, version};
use crate::{Store, StoreError};
use moat_core::{Role, TenantId, UserId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::fmt;

/// What a sealed tenant secret is for (also part of its AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretPurpose {
    /// The private half of an access-token signing key (PKCS#8 DER).
    SigningKey,
    /// The client secret moat presents to the tenant's identity provider.
    IdpClientSecret,
}

text_enum!(SecretPurpose, "secret purpose", {
    SigningKey => "signing_key", IdpClientSecret => "idp_client_secret",
});

/// A sealed secret with the wrapped data key it was sealed under.
#[derive(Clone)]
pub struct SealedSecret {
    /// Its id (part of the AAD).
    pub id: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// What it is.
    pub purpose: SecretPurpose,
    /// The data-key version it is sealed under.
    pub key_version: u32,
    /// The AEAD ciphertext.
    pub sealed: Vec<u8>,
    /// That data-key version, wrapped by the KEK.
    pub wrapped_dek: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("purpose", &self.purpose)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

fn secret_from_row(row: &AnyRow) -> Result<SealedSecret, StoreError> {
    Ok(SealedSecret {
        id: row.try_get("id")?,
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        purpose: parsed(row, "purpose")?,
        key_version: version(row, "key_version")?,
        sealed: row.try_get("sealed")?,
        wrapped_dek: row.try_get("wrapped")?,
    })
}

const SECRET_SELECT: &str = "SELECT s.id, s.tenant_id, s.purpose, s.key_version, s.sealed, k.wrapped \
     FROM tenant_secrets s JOIN tenant_keys k ON k.tenant_id = s.tenant_id AND k.version = s.key_version";

/// A public signing key of a tenant, as the JWKS and the verifier need it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SigningKeyRecord {
    /// The key id (RFC 7638 thumbprint).
    pub kid: String,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// `RS256` or `ES256`.
    pub alg: String,
    /// The public JWK.
    pub public_jwk: serde_json::Value,
    /// The sealed private half.
    #[serde(skip)]
    pub secret_id: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// When it stopped signing, if it did.
    pub retired_at: Option<i64>,
}

fn signing_key_from_row(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    let jwk: String = row.try_get("public_jwk")?;
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        alg: row.try_get("alg")?,
        public_jwk: serde_json::from_str(&jwk).map_err(|_| StoreError::corrupt("public_jwk"))?,
        secret_id: row.try_get("secret_id")?,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
    })
}

/// A tenant's identity provider for human login (OpenID Connect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IdpSettings {
    /// The provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// moat's client id at the provider.
    pub client_id: String,
    /// The sealed client secret's id, when the provider issued one.
    #[serde(skip)]
    pub secret_id: Option<String>,
    /// True when a client secret is stored.
    pub has_secret: bool,
    /// Scopes requested from the provider.
    pub scopes: String,
    /// The ID-token claim that lists the user's groups.
    pub groups_claim: String,
    /// Group name → role in moat (`admin` or `member`).
    pub role_map: std::collections::BTreeMap<String, Role>,
    /// Role of a user none of whose groups is mapped.
    pub default_role: Role,
}

/// A tenant's identity settings. A tenant without a row has the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantAuthSettings {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Users of this tenant may authorize dynamically registered clients (RFC 7591).
    pub allow_registration: bool,
    /// Users of this tenant may authorize clients identified by a metadata document URL.
    pub allow_metadata_clients: bool,
    /// Every token and session issued before this time (unix ms) is dead.
    pub revoked_before: i64,
    /// The identity provider, when one is configured.
    pub idp: Option<IdpSettings>,
}

impl TenantAuthSettings {
    /// The settings of a tenant that never changed them.
    pub fn defaults(tenant: &TenantId) -> Self {
        Self {
            tenant_id: tenant.clone(),
            allow_registration: true,
            allow_metadata_clients: true,
            revoked_before: 0,
            idp: None,
        }
    }
}

fn auth_from_row(row: &AnyRow) -> Result<TenantAuthSettings, StoreError> {
    let tenant_id = TenantId::from_string(row.try_get::<String, _>("tenant_id")?);
    let issuer: Option<String> = row.try_get("idp_issuer")?;
    let client_id: Option<String> = row.try_get("idp_client_id")?;
    let idp = match (issuer, client_id) {
        (Some(issuer), Some(client_id)) => {
            let secret_id: Option<String> = row.try_get("idp_secret_id")?;
            Some(IdpSettings {
                issuer,
                client_id,
                has_secret: secret_id.is_some(),
                secret_id,
                scopes: row.try_get("idp_scopes")?,
                groups_claim: row.try_get("idp_groups_claim")?,
                role_map: json(row, "idp_role_map")?,
                default_role: parsed(row, "idp_default_role")?,
            })
        }
        _ => None,
    };
    Ok(TenantAuthSettings {
        tenant_id,
        allow_registration: flag(row, "allow_registration")?,
        allow_metadata_clients: flag(row, "allow_metadata_clients")?,
        revoked_before: row.try_get("revoked_before")?,
        idp,
    })
}

const AUTH_COLUMNS: &str = "tenant_id, allow_registration, allow_metadata_clients, revoked_before, idp_issuer, \
     idp_client_id, idp_secret_id, idp_scopes, idp_groups_claim, idp_role_map, idp_default_role";

/// A live browser session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserSession {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The human it belongs to.
    pub user_id: UserId,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Expiry, unix milliseconds.
    pub expires_at: i64,
}

impl Store {
    /// Stores a sealed secret.
    pub async fn insert_tenant_secret(
        &self,
        tenant: &TenantId,
        id: &str,
        purpose: SecretPurpose,
        key_version: u32,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO tenant_secrets (id, tenant_id, purpose, key_version, sealed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id)
        .bind(tenant.as_str())
        .bind(purpose.as_str())
        .bind(i64::from(key_version))
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One sealed secret with its wrapped data key.
    pub async fn tenant_secret(&self, tenant: &TenantId, id: &str) -> Result<Option<SealedSecret>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("{SECRET_SELECT} WHERE s.tenant_id = $1 AND s.id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(secret_from_row).transpose()
    }

    /// Secrets sealed under a data-key version below `version` (rotation).
    pub async fn tenant_secrets_below_version(
        &self,
        tenant: &TenantId,
        version: u32,
        limit: i64,
    ) -> Result<Vec<SealedSecret>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!(
            "{SECRET_SELECT} WHERE s.tenant_id = $1 AND s.key_version < $2 ORDER BY s.id LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(i64::from(version))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Replaces a secret's ciphertext if it is still sealed under `old_version`.
    pub async fn reseal_tenant_secret(
        &self,
        tenant: &TenantId,
        id: &str,
        old_version: u32,
        new_version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE tenant_secrets SET key_version = $1, sealed = $2, updated_at = $3 \
             WHERE tenant_id = $4 AND id = $5 AND key_version = $6",
        )
        .bind(i64::from(new_version))
        .bind(sealed)
        .bind(now_ms())
        .bind(tenant.as_str())
        .bind(id)
        .bind(i64::from(old_version))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a sealed secret (and, by cascade, a signing key that used it).
    pub async fn delete_tenant_secret(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM tenant_secrets WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores a new signing key (its sealed private half must exist) and
    /// retires every other unretired key of the tenant at the same time.
    pub async fn insert_signing_key(&self, tenant: &TenantId, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE tenant_id = $2 AND retired_at IS NULL AND kid <> $3",
        )
        .bind(key.created_at)
        .bind(tenant.as_str())
        .bind(key.kid.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, tenant_id, alg, public_jwk, secret_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.kid.as_str())
        .bind(tenant.as_str())
        .bind(key.alg.as_str())
        .bind(to_json(&key.public_jwk)?)
        .bind(key.secret_id.as_str())
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every signing key of a tenant, newest first.
    pub async fn signing_keys(&self, tenant: &TenantId) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT kid, tenant_id, alg, public_jwk, secret_id, created_at, retired_at FROM signing_keys \
             WHERE tenant_id = $1 ORDER BY created_at DESC, kid",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    /// Deletes keys retired before `cutoff` (their grace period is over),
    /// with their sealed private halves; returns how many.
    pub async fn prune_signing_keys(&self, tenant: &TenantId, cutoff: i64) -> Result<u64, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "DELETE FROM tenant_secrets WHERE tenant_id = $1 AND id IN \
             (SELECT secret_id FROM signing_keys WHERE tenant_id = $1 AND retired_at IS NOT NULL AND retired_at < $2)",
        )
        .bind(tenant.as_str())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// A tenant's identity settings (the defaults when it has none stored).
    pub async fn tenant_auth(&self, tenant: &TenantId) -> Result<TenantAuthSettings, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("SELECT {AUTH_COLUMNS} FROM tenant_auth WHERE tenant_id = $1"))
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        match row {
            Some(r) => auth_from_row(&r),
            None => Ok(TenantAuthSettings::defaults(tenant)),
        }
    }

    /// Every tenant's identity settings that differ from the defaults
    /// (cross-tenant: registration policy and provider discovery).
    pub async fn all_tenant_auth(&self) -> Result<Vec<TenantAuthSettings>, StoreError> {
        let mut tx = self.system_tx().await?;
        let rows = sqlx::query(&format!("SELECT {AUTH_COLUMNS} FROM tenant_auth ORDER BY tenant_id"))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(auth_from_row).collect()
    }

    /// Stores a tenant's identity settings (all fields but `revoked_before`,
    /// which only [`Store::revoke_tenant_tokens`] moves).
    pub async fn set_tenant_auth(&self, settings: &TenantAuthSettings) -> Result<(), StoreError> {
        let tenant = &settings.tenant_id;
        let idp = settings.idp.as_ref();
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO tenant_auth (tenant_id, allow_registration, allow_metadata_clients, idp_issuer, idp_client_id, \
             idp_secret_id, idp_scopes, idp_groups_claim, idp_role_map, idp_default_role, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (tenant_id) DO UPDATE SET allow_registration = excluded.allow_registration, \
             allow_metadata_clients = excluded.allow_metadata_clients, idp_issuer = excluded.idp_issuer, \
             idp_client_id = excluded.idp_client_id, idp_secret_id = excluded.idp_secret_id, \
             idp_scopes = excluded.idp_scopes, idp_groups_claim = excluded.idp_groups_claim, \
             idp_role_map = excluded.idp_role_map, idp_default_role = excluded.idp_default_role, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(settings.allow_registration)
        .bind(settings.allow_metadata_clients)
        .bind(idp.map(|i| i.issuer.as_str()))
        .bind(idp.map(|i| i.client_id.as_str()))
        .bind(idp.and_then(|i| i.secret_id.as_deref()))
        .bind(idp.map_or("openid email profile", |i| i.scopes.as_str()))
        .bind(idp.map_or("groups", |i| i.groups_claim.as_str()))
        .bind(to_json(&idp.map(|i| i.role_map.clone()).unwrap_or_default())?)
        .bind(idp.map_or(Role::Member, |i| i.default_role).as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every token, grant and browser session of a tenant: moves the
    /// revocation watermark to `at` and marks grants and sessions revoked.
    pub async fn revoke_tenant_tokens(&self, tenant: &TenantId, at: i64) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO tenant_auth (tenant_id, revoked_before, updated_at) VALUES ($1, $2, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET revoked_before = excluded.revoked_before, updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = 'tenant revocation' \
             WHERE tenant_id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE browser_sessions SET revoked_at = $1 WHERE tenant_id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's revocation watermark (0 when never revoked).
    pub async fn tenant_revoked_before(&self, tenant: &TenantId) -> Result<i64, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let v: Option<i64> = sqlx::query_scalar("SELECT revoked_before FROM tenant_auth WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(v.unwrap_or(0))
    }

    /// The user an identity provider's subject is linked to.
    pub async fn user_by_idp_subject(&self, tenant: &TenantId, subject: &str) -> Result<Option<UserId>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE tenant_id = $1 AND idp_subject = $2")
            .bind(tenant.as_str())
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id.map(UserId::from_string))
    }

    /// Links a user to an identity provider's subject and sets the role
    /// and email the provider asserted.
    pub async fn link_idp_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        subject: &str,
        role: Role,
        email: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "UPDATE users SET idp_subject = $1, role = $2, email = COALESCE($3, email) WHERE tenant_id = $4 AND id = $5",
        )
        .bind(subject)
        .bind(role.as_str())
        .bind(email)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a browser session (`id_hash` is the digest of the cookie value).
    pub async fn insert_browser_session(
        &self,
        tenant: &TenantId,
        id_hash: &str,
        user: &UserId,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO browser_sessions (id_hash, tenant_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(now_ms())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A live (unrevoked, unexpired) browser session by its digest
    /// (cross-tenant: the cookie names no tenant).
    pub async fn browser_session(&self, id_hash: &str, now: i64) -> Result<Option<BrowserSession>, StoreError> {
        let mut tx = self.system_tx().await?;
        let row = sqlx::query(
            "SELECT tenant_id, user_id, created_at, expires_at FROM browser_sessions \
             WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(BrowserSession {
                tenant_id: TenantId::from_string(r.try_get::<String, _>("tenant_id")?),
                user_id: UserId::from_string(r.try_get::<String, _>("user_id")?),
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Ends a browser session.
    pub async fn revoke_browser_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let done = sqlx::query("UPDATE browser_sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every browser session of a user.
    pub async fn revoke_user_sessions(&self, tenant: &TenantId, user: &UserId) -> Result<u64, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE browser_sessions SET revoked_at = $1 WHERE tenant_id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
