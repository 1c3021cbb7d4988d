//! The OAuth 2.1 authorization server's state: clients, authorization
//! requests in flight, codes, grants (refresh-token families), refresh
//! tokens, revoked access tokens and consents.
//!
//! Codes, refresh tokens and request handles arrive as digests; client
//! secrets as Argon2id hashes. Single use is enforced here, atomically: a
//! code or refresh token is marked used by one `UPDATE … WHERE used_at IS
//! NULL`, so two concurrent redemptions cannot both succeed.

use crate::store::{json, parsed, text_enum, to_json};
use crate::{Store, StoreError};
use moat_core::{TenantId, UserId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::fmt;

/// What kind of OAuth client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// A confidential machine identity: client-credentials grant only.
    Service,
    /// A public client (no secret): authorization code + PKCE.
    Public,
    /// A confidential client using the authorization code + PKCE with a secret.
    Confidential,
}

text_enum!(ClientKind, "client kind", {
    Service => "service", Public => "public", Confidential => "confidential",
});

/// Where a client came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientSource {
    /// Created by a tenant admin.
    Admin,
    /// Registered through RFC 7591 dynamic registration.
    Dynamic,
    /// A Client ID Metadata Document (the client id is its https URL).
    Metadata,
}

text_enum!(ClientSource, "client source", {
    Admin => "admin", Dynamic => "dynamic", Metadata => "metadata",
});

/// An OAuth client as admins and the authorization server see it (no secret hash).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OAuthClientRecord {
    /// The `client_id`.
    pub id: String,
    /// The owning tenant (admin-created clients only).
    pub tenant_id: Option<TenantId>,
    /// Display name; unique among a tenant's live clients.
    pub name: String,
    /// Service, public or confidential.
    pub kind: ClientKind,
    /// Admin, dynamic registration or metadata document.
    pub source: ClientSource,
    /// The machine user a service client acts as.
    pub user_id: Option<UserId>,
    /// Token-endpoint authentication method.
    pub auth_method: String,
    /// Registered redirect URIs (exact match; loopback may vary the port).
    pub redirect_uris: Vec<String>,
    /// Scopes the client may be granted (empty: the default MCP scopes).
    pub scopes: Vec<String>,
    /// Other registered metadata (client_uri, logo_uri, software_id, …).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last change (for metadata documents: when it was fetched).
    pub updated_at: i64,
    /// Revocation time, when revoked.
    pub revoked_at: Option<i64>,
}

/// A client with its secret hash, for the token endpoint. Not serialisable.
#[derive(Clone)]
pub struct ClientAuthRecord {
    /// The client.
    pub client: OAuthClientRecord,
    /// Argon2id PHC string of its secret, for confidential clients.
    pub secret_hash: Option<String>,
}

impl fmt::Debug for ClientAuthRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuthRecord").field("client", &self.client).finish_non_exhaustive()
    }
}

const CLIENT_COLUMNS: &str = "id, tenant_id, name, kind, source, user_id, secret_hash, auth_method, redirect_uris, \
     scopes, metadata, created_at, updated_at, revoked_at";

fn client_from_row(row: &AnyRow) -> Result<ClientAuthRecord, StoreError> {
    let metadata: String = row.try_get("metadata")?;
    Ok(ClientAuthRecord {
        client: OAuthClientRecord {
            id: row.try_get("id")?,
            tenant_id: row.try_get::<Option<String>, _>("tenant_id")?.map(TenantId::from_string),
            name: row.try_get("name")?,
            kind: parsed(row, "kind")?,
            source: parsed(row, "source")?,
            user_id: row.try_get::<Option<String>, _>("user_id")?.map(UserId::from_string),
            auth_method: row.try_get("auth_method")?,
            redirect_uris: json(row, "redirect_uris")?,
            scopes: json(row, "scopes")?,
            metadata: serde_json::from_str(&metadata).map_err(|_| StoreError::corrupt("metadata"))?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            revoked_at: row.try_get("revoked_at")?,
        },
        secret_hash: row.try_get("secret_hash")?,
    })
}

/// An authorization request in flight, keyed by the digest of the handle
/// the browser carries.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// Digest of the browser's handle.
    pub id_hash: String,
    /// The tenant, once known (the client's, the session's or the chosen one).
    pub tenant_id: Option<TenantId>,
    /// The requesting client.
    pub client_id: String,
    /// The validated redirect URI.
    pub redirect_uri: String,
    /// The client's `state`, returned as is.
    pub state: Option<String>,
    /// The client's S256 PKCE challenge.
    pub code_challenge: String,
    /// Scopes requested (validated, space-separated).
    pub scope: String,
    /// The resource (RFC 8707) the token will be bound to.
    pub resource: String,
    /// The user, once logged in.
    pub user_id: Option<UserId>,
    /// Digest of the `state` sent to the identity provider.
    pub idp_state_hash: Option<String>,
    /// The nonce sent to the identity provider.
    pub idp_nonce: Option<String>,
    /// moat's PKCE verifier towards the identity provider.
    pub idp_verifier: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Expiry, unix milliseconds.
    pub expires_at: i64,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

const PENDING_COLUMNS: &str = "id_hash, tenant_id, client_id, redirect_uri, state, code_challenge, scope, resource, \
     user_id, idp_state_hash, idp_nonce, idp_verifier, created_at, expires_at";

fn pending_from_row(row: &AnyRow) -> Result<PendingAuthorization, StoreError> {
    Ok(PendingAuthorization {
        id_hash: row.try_get("id_hash")?,
        tenant_id: row.try_get::<Option<String>, _>("tenant_id")?.map(TenantId::from_string),
        client_id: row.try_get("client_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        state: row.try_get("state")?,
        code_challenge: row.try_get("code_challenge")?,
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        user_id: row.try_get::<Option<String>, _>("user_id")?.map(UserId::from_string),
        idp_state_hash: row.try_get("idp_state_hash")?,
        idp_nonce: row.try_get("idp_nonce")?,
        idp_verifier: row.try_get("idp_verifier")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// An authorization code's binding, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationCode {
    /// Digest of the code.
    pub code_hash: String,
    /// The tenant the user belongs to.
    pub tenant_id: TenantId,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: UserId,
    /// The redirect URI of the authorization request (must match at the token endpoint).
    pub redirect_uri: String,
    /// The S256 challenge the verifier must match.
    pub code_challenge: String,
    /// Granted scopes.
    pub scope: String,
    /// The resource the token is bound to.
    pub resource: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Expiry, unix milliseconds.
    pub expires_at: i64,
}

/// What redeeming a single-use secret (code or refresh token) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed<T> {
    /// First use: here is what it stands for.
    Fresh(T),
    /// Used before: the grant it led to (to be revoked), if any.
    Reused {
        /// The tenant.
        tenant_id: TenantId,
        /// The grant issued from the first use.
        grant_id: Option<String>,
    },
    /// Unknown or expired.
    Invalid,
}

/// A grant: a client acting for a user, and the family of its refresh tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GrantRecord {
    /// Its id (the access tokens' `sid`).
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The client.
    pub client_id: String,
    /// The user (or the service client's machine user).
    pub user_id: UserId,
    /// Granted scopes.
    pub scope: String,
    /// The resource tokens are bound to.
    pub resource: String,
    /// Browser origins its tokens may be used from (empty: any allowed by the gateway).
    pub allowed_origins: Vec<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Revocation time, when revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

const GRANT_COLUMNS: &str =
    "id, tenant_id, client_id, user_id, scope, resource, allowed_origins, created_at, revoked_at, revoked_reason";

fn grant_from_row(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    Ok(GrantRecord {
        id: row.try_get("id")?,
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        client_id: row.try_get("client_id")?,
        user_id: UserId::from_string(row.try_get::<String, _>("user_id")?),
        scope: row.try_get("scope")?,
        resource: row.try_get("resource")?,
        allowed_origins: json(row, "allowed_origins")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

/// Whether an access token is still good, beyond its signature and expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TokenStatus {
    /// The tenant's revocation watermark.
    pub revoked_before: i64,
    /// The token's `jti` was revoked.
    pub jti_revoked: bool,
    /// The token's grant was revoked.
    pub grant_revoked: bool,
    /// The token's client (a tenant's own client) was revoked.
    pub client_revoked: bool,
}

/// A user's consent to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Consented scopes.
    pub scope: String,
    /// The resource consented to.
    pub resource: String,
    /// When.
    pub granted_at: i64,
}

impl Store {
    /// Stores a client. Admin clients go into their tenant; dynamically
    /// registered and metadata clients belong to no tenant.
    pub async fn insert_oauth_client(
        &self,
        client: &OAuthClientRecord,
        secret_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = match &client.tenant_id {
            Some(t) => self.tenant_write_tx(t).await?,
            None => self.system_write_tx().await?,
        };
        sqlx::query(&format!(
            "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(client.id.as_str())
        .bind(client.tenant_id.as_ref().map(TenantId::as_str))
        .bind(client.name.as_str())
        .bind(client.kind.as_str())
        .bind(client.source.as_str())
        .bind(client.user_id.as_ref().map(UserId::as_str))
        .bind(secret_hash)
        .bind(client.auth_method.as_str())
        .bind(to_json(&client.redirect_uris)?)
        .bind(to_json(&client.scopes)?)
        .bind(to_json(&client.metadata)?)
        .bind(client.created_at)
        .bind(client.updated_at)
        .bind(client.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::on_insert(e, || format!("a client named `{}` already exists", client.name), "unknown tenant or user")
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a metadata-document client's cached metadata (upsert).
    pub async fn upsert_metadata_client(&self, client: &OAuthClientRecord) -> Result<(), StoreError> {
        let mut tx = self.system_write_tx().await?;
        sqlx::query(&format!(
            "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES ($1, NULL, $2, 'public', 'metadata', NULL, NULL, 'none', \
             $3, '[]', $4, $5, $5, NULL) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             redirect_uris = excluded.redirect_uris, metadata = excluded.metadata, updated_at = excluded.updated_at \
             WHERE oauth_clients.source = 'metadata'"
        ))
        .bind(client.id.as_str())
        .bind(client.name.as_str())
        .bind(to_json(&client.redirect_uris)?)
        .bind(to_json(&client.metadata)?)
        .bind(client.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A client by its `client_id`, with its secret hash (cross-tenant:
    /// the token and authorization endpoints know no tenant yet).
    pub async fn oauth_client_for_auth(&self, client_id: &str) -> Result<Option<ClientAuthRecord>, StoreError> {
        let mut tx = self.system_tx().await?;
        let row = sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"))
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// A tenant's live clients.
    pub async fn list_oauth_clients(&self, tenant: &TenantId) -> Result<Vec<OAuthClientRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY name"
        ))
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(|r| client_from_row(r).map(|c| c.client)).collect()
    }

    /// A tenant's live client by id or name.
    pub async fn find_oauth_client(
        &self,
        tenant: &TenantId,
        id_or_name: &str,
    ) -> Result<Option<OAuthClientRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE tenant_id = $1 AND revoked_at IS NULL \
             AND (id = $2 OR name = $2) ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(id_or_name)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(|r| client_from_row(r).map(|c| c.client)).transpose()
    }

    /// Revokes a tenant's client and every grant it holds.
    pub async fn revoke_oauth_client(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE oauth_clients SET revoked_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = 'client revoked' \
             WHERE tenant_id = $2 AND client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces a tenant client's secret hash (secret regeneration).
    pub async fn set_oauth_client_secret(&self, tenant: &TenantId, id: &str, hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE oauth_clients SET secret_hash = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL",
        )
        .bind(hash)
        .bind(now_ms())
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores an authorization request in flight.
    pub async fn insert_pending(&self, p: &PendingAuthorization) -> Result<(), StoreError> {
        let mut tx = self.system_write_tx().await?;
        sqlx::query(&format!(
            "INSERT INTO oauth_pending ({PENDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(p.id_hash.as_str())
        .bind(p.tenant_id.as_ref().map(TenantId::as_str))
        .bind(p.client_id.as_str())
        .bind(p.redirect_uri.as_str())
        .bind(p.state.as_deref())
        .bind(p.code_challenge.as_str())
        .bind(p.scope.as_str())
        .bind(p.resource.as_str())
        .bind(p.user_id.as_ref().map(UserId::as_str))
        .bind(p.idp_state_hash.as_deref())
        .bind(p.idp_nonce.as_deref())
        .bind(p.idp_verifier.as_deref())
        .bind(p.created_at)
        .bind(p.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An unexpired authorization request by the digest of its handle.
    pub async fn pending(&self, id_hash: &str, now: i64) -> Result<Option<PendingAuthorization>, StoreError> {
        self.pending_where("id_hash", id_hash, now).await
    }

    /// An unexpired authorization request by the digest of the `state` sent
    /// to the identity provider.
    pub async fn pending_by_idp_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.pending_where("idp_state_hash", state_hash, now).await
    }

    async fn pending_where(
        &self,
        column: &'static str,
        value: &str,
        now: i64,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let mut tx = self.system_tx().await?;
        let row = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM oauth_pending WHERE {column} = $1 AND expires_at > $2"
        ))
        .bind(value)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(pending_from_row).transpose()
    }

    /// Updates the mutable parts of an authorization request (tenant, user,
    /// the identity-provider leg).
    pub async fn update_pending(&self, p: &PendingAuthorization) -> Result<bool, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_pending SET tenant_id = $1, user_id = $2, idp_state_hash = $3, idp_nonce = $4, \
             idp_verifier = $5 WHERE id_hash = $6",
        )
        .bind(p.tenant_id.as_ref().map(TenantId::as_str))
        .bind(p.user_id.as_ref().map(UserId::as_str))
        .bind(p.idp_state_hash.as_deref())
        .bind(p.idp_nonce.as_deref())
        .bind(p.idp_verifier.as_deref())
        .bind(p.id_hash.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Consumes an authorization request: deletes it, true when this call did.
    pub async fn take_pending(&self, id_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let done = sqlx::query("DELETE FROM oauth_pending WHERE id_hash = $1").bind(id_hash).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes expired authorization requests, codes, refresh tokens and
    /// revoked-token entries; returns how many rows went.
    pub async fn purge_expired_oauth(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let mut n = 0;
        for sql in [
            "DELETE FROM oauth_pending WHERE expires_at <= $1",
            "DELETE FROM oauth_codes WHERE expires_at <= $1",
            "DELETE FROM oauth_refresh_tokens WHERE expires_at <= $1",
            "DELETE FROM oauth_revoked_tokens WHERE expires_at <= $1",
            "DELETE FROM browser_sessions WHERE expires_at <= $1",
        ] {
            n += sqlx::query(sql).bind(now).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Stores an authorization code.
    pub async fn insert_code(&self, c: &AuthorizationCode) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(&c.tenant_id).await?;
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, tenant_id, client_id, user_id, redirect_uri, code_challenge, scope, \
             resource, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.code_hash.as_str())
        .bind(c.tenant_id.as_str())
        .bind(c.client_id.as_str())
        .bind(c.user_id.as_str())
        .bind(c.redirect_uri.as_str())
        .bind(c.code_challenge.as_str())
        .bind(c.scope.as_str())
        .bind(c.resource.as_str())
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a code used, atomically. The first call gets the code; any
    /// later one learns it was reused (and which grant to revoke).
    ///
    /// A reuse is also recorded on the code (`reused_at`), so that a first
    /// redemption still in flight learns of it after recording its grant
    /// ([`Store::code_reused`]): whichever of the two looks last sees the
    /// other, and the grant is revoked either way.
    pub async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Redeemed<AuthorizationCode>, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let claimed = sqlx::query("UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
            .bind(now)
            .bind(code_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            sqlx::query("UPDATE oauth_codes SET reused_at = $1 WHERE code_hash = $2")
                .bind(now)
                .bind(code_hash)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "SELECT code_hash, tenant_id, client_id, user_id, redirect_uri, code_challenge, scope, resource, \
             created_at, expires_at, grant_id FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(Redeemed::Invalid) };
        let tenant_id = TenantId::from_string(row.try_get::<String, _>("tenant_id")?);
        if claimed == 0 {
            return Ok(Redeemed::Reused { tenant_id, grant_id: row.try_get("grant_id")? });
        }
        let code = AuthorizationCode {
            code_hash: row.try_get("code_hash")?,
            tenant_id,
            client_id: row.try_get("client_id")?,
            user_id: UserId::from_string(row.try_get::<String, _>("user_id")?),
            redirect_uri: row.try_get("redirect_uri")?,
            code_challenge: row.try_get("code_challenge")?,
            scope: row.try_get("scope")?,
            resource: row.try_get("resource")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        };
        if code.expires_at <= now {
            return Ok(Redeemed::Invalid);
        }
        Ok(Redeemed::Fresh(code))
    }

    /// Records the grant a redeemed code led to.
    pub async fn set_code_grant(&self, tenant: &TenantId, code_hash: &str, grant: &str) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query("UPDATE oauth_codes SET grant_id = $1 WHERE tenant_id = $2 AND code_hash = $3")
            .bind(grant)
            .bind(tenant.as_str())
            .bind(code_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// True when a redeemed code was presented again (see [`Store::redeem_code`]).
    pub async fn code_reused(&self, tenant: &TenantId, code_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT reused_at FROM oauth_codes WHERE tenant_id = $1 AND code_hash = $2")
                .bind(tenant.as_str())
                .bind(code_hash)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(at.flatten().is_some())
    }

    /// Stores a grant.
    pub async fn insert_grant(&self, g: &GrantRecord) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(&g.tenant_id).await?;
        sqlx::query(&format!(
            "INSERT INTO oauth_grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(g.id.as_str())
        .bind(g.tenant_id.as_str())
        .bind(g.client_id.as_str())
        .bind(g.user_id.as_str())
        .bind(g.scope.as_str())
        .bind(g.resource.as_str())
        .bind(to_json(&g.allowed_origins)?)
        .bind(g.created_at)
        .bind(g.revoked_at)
        .bind(g.revoked_reason.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One grant of a tenant.
    pub async fn grant(&self, tenant: &TenantId, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE tenant_id = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Revokes a grant (its refresh tokens die with it; access tokens
    /// carrying its id as `sid` are refused from the next request).
    pub async fn revoke_grant(&self, tenant: &TenantId, id: &str, reason: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2 WHERE tenant_id = $3 AND id = $4 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores a refresh token of a grant.
    pub async fn insert_refresh_token(
        &self,
        tenant: &TenantId,
        token_hash: &str,
        grant: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO oauth_refresh_tokens (token_hash, tenant_id, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(tenant.as_str())
        .bind(grant)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a refresh token used, atomically; returns its live grant on
    /// first use, the grant to revoke on reuse.
    pub async fn redeem_refresh_token(&self, token_hash: &str, now: i64) -> Result<Redeemed<GrantRecord>, StoreError> {
        let mut tx = self.system_write_tx().await?;
        let claimed = sqlx::query(
            "UPDATE oauth_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query(&format!(
            "SELECT g.{}, r.used_at AS r_used_at, r.expires_at AS r_expires_at FROM oauth_refresh_tokens r \
             JOIN oauth_grants g ON g.tenant_id = r.tenant_id AND g.id = r.grant_id WHERE r.token_hash = $1",
            GRANT_COLUMNS.replace(", ", ", g.")
        ))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(Redeemed::Invalid) };
        let grant = grant_from_row(&row)?;
        if claimed == 0 {
            let expires_at: i64 = row.try_get("r_expires_at")?;
            let used_at: Option<i64> = row.try_get("r_used_at")?;
            if used_at.is_none() && expires_at <= now {
                return Ok(Redeemed::Invalid);
            }
            return Ok(Redeemed::Reused { tenant_id: grant.tenant_id, grant_id: Some(grant.id) });
        }
        if grant.revoked_at.is_some() {
            return Ok(Redeemed::Invalid);
        }
        Ok(Redeemed::Fresh(grant))
    }

    /// The grant a refresh token belongs to, without using it (revocation).
    pub async fn refresh_token_grant(&self, token_hash: &str) -> Result<Option<(TenantId, String)>, StoreError> {
        let mut tx = self.system_tx().await?;
        let row = sqlx::query("SELECT tenant_id, grant_id FROM oauth_refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| Ok((TenantId::from_string(r.try_get::<String, _>("tenant_id")?), r.try_get("grant_id")?)))
            .transpose()
    }

    /// Revokes one access token by `jti` until it would have expired.
    pub async fn revoke_jti(&self, tenant: &TenantId, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO oauth_revoked_tokens (jti, tenant_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(tenant.as_str())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Everything that can kill a validly signed, unexpired access token, in
    /// one round trip.
    pub async fn token_status(
        &self,
        tenant: &TenantId,
        jti: &str,
        grant: Option<&str>,
        client: &str,
    ) -> Result<TokenStatus, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(
            "SELECT \
               COALESCE((SELECT revoked_before FROM tenant_auth WHERE tenant_id = $1), 0) AS revoked_before, \
               (SELECT COUNT(*) FROM oauth_revoked_tokens WHERE tenant_id = $1 AND jti = $2) AS jti_revoked, \
               (SELECT COUNT(*) FROM oauth_grants WHERE tenant_id = $1 AND id = $3 AND revoked_at IS NOT NULL) AS grant_revoked, \
               (SELECT COUNT(*) FROM oauth_clients WHERE tenant_id = $1 AND id = $4 AND revoked_at IS NOT NULL) AS client_revoked",
        )
        .bind(tenant.as_str())
        .bind(jti)
        .bind(grant.unwrap_or(""))
        .bind(client)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TokenStatus {
            revoked_before: row.try_get("revoked_before")?,
            jti_revoked: row.try_get::<i64, _>("jti_revoked")? > 0,
            grant_revoked: row.try_get::<i64, _>("grant_revoked")? > 0,
            client_revoked: row.try_get::<i64, _>("client_revoked")? > 0,
        })
    }

    /// A user's consent to a client, if given.
    pub async fn consent(
        &self,
        tenant: &TenantId,
        user: &UserId,
        client_id: &str,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(
            "SELECT scope, resource, granted_at FROM oauth_consents WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(ConsentRecord {
                scope: r.try_get("scope")?,
                resource: r.try_get("resource")?,
                granted_at: r.try_get("granted_at")?,
            })
        })
        .transpose()
    }

    /// Records (or widens) a user's consent to a client.
    pub async fn record_consent(
        &self,
        tenant: &TenantId,
        user: &UserId,
        client_id: &str,
        scope: &str,
        resource: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO oauth_consents (tenant_id, user_id, client_id, scope, resource, granted_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, user_id, client_id) DO UPDATE SET \
             scope = excluded.scope, resource = excluded.resource, granted_at = excluded.granted_at",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(client_id)
        .bind(scope)
        .bind(resource)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
