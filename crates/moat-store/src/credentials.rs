//! Upstream credentials (the vault's rows): sealed values, one per scope,
//! server and injection slot, with the metadata to list, resolve and rotate
//! them.
//!
//! The store does no cryptography: a value arrives sealed under a version of
//! the tenant's data key (see [`crate::tenant_keys`]), and is read back
//! together with that version's wrapped key in one query
//! ([`SealedCredential`]), so that a concurrent key rotation can never hand a
//! reader a row whose key is already gone.
//!
//! A credential belongs to one scope tier: `personal` and `service` rows to a
//! user (`scope_id` = the user id), `team` rows to a team (`scope_id` = the
//! team id), `org` rows to the whole tenant (`scope_id` = the tenant id). The
//! database enforces these shapes with `CHECK` constraints, and the foreign
//! keys (which all include `tenant_id`) make deleting a user, team or server
//! delete its credentials.

use crate::store::{parsed, placeholders, version};
use crate::{Store, StoreError};
use moat_core::{CredentialId, CredentialKind, ScopeTier, ServerId, TeamId, TenantId, UserId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::fmt;

/// The injection slot of a credential: `header:<lowercased header name>` for
/// [`CredentialKind::Header`], `header:authorization` for bearer and basic,
/// `env:<NAME>` for env. Two credentials of the same scope and server may not
/// share a slot.
pub fn credential_slot(kind: CredentialKind, target: &str) -> String {
    match kind {
        CredentialKind::Header => format!("header:{}", target.to_ascii_lowercase()),
        CredentialKind::Bearer | CredentialKind::Basic => "header:authorization".to_owned(),
        CredentialKind::Env => format!("env:{target}"),
    }
}

/// A stored credential's metadata: never its value, sealed or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CredentialRecord {
    /// Its id (bound into the sealed value's associated data).
    pub id: CredentialId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Personal, team, org or service.
    pub tier: ScopeTier,
    /// The owning user, for personal and service credentials.
    pub user_id: Option<UserId>,
    /// That user's name.
    pub user_name: Option<String>,
    /// The owning team, for team credentials.
    pub team_id: Option<TeamId>,
    /// That team's name.
    pub team_name: Option<String>,
    /// The owner's id: the user, the team, or the tenant for org credentials.
    pub scope_id: String,
    /// The upstream it is injected into.
    pub server_id: ServerId,
    /// That server's name.
    pub server_name: String,
    /// How it is presented upstream.
    pub kind: CredentialKind,
    /// The header or environment variable name, as given.
    pub target: String,
    /// The injection slot (see [`credential_slot`]).
    pub slot: String,
    /// The version of the tenant's data key that sealed the value.
    pub key_version: u32,
    /// Bumps on every change of the value (not on re-encryption).
    pub revision: i64,
    /// Who created it.
    pub created_by: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Who last changed the value.
    pub updated_by: Option<String>,
    /// Last change of the value, unix milliseconds.
    pub updated_at: i64,
    /// Last injection into a call, unix milliseconds (updated at most about
    /// once a minute).
    pub last_used_at: Option<i64>,
}

/// A credential with its sealed value and the wrapped data key of the
/// version that sealed it, read in one query. Not `Serialize`; `Debug`
/// omits the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedCredential {
    /// The metadata.
    pub meta: CredentialRecord,
    /// The sealed value (opaque to the store).
    pub sealed: Vec<u8>,
    /// The data key of version `meta.key_version`, wrapped by the KEK.
    pub wrapped_dek: Vec<u8>,
}

impl fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredential")
            .field("meta", &self.meta)
            .field("sealed", &"<redacted>")
            .field("wrapped_dek", &"<redacted>")
            .finish()
    }
}

/// What [`Store::insert_credential`] stores. The caller picks the id first
/// (it is bound into the ciphertext) and seals the value.
#[derive(Clone, Copy)]
pub struct NewCredential<'a> {
    /// The new credential's id.
    pub id: &'a CredentialId,
    /// Its scope tier.
    pub tier: ScopeTier,
    /// The owning user: required for personal and service, refused otherwise.
    pub user_id: Option<&'a UserId>,
    /// The owning team: required for team, refused otherwise.
    pub team_id: Option<&'a TeamId>,
    /// The user id, team id or (org) tenant id, matching the tier.
    pub scope_id: &'a str,
    /// The upstream, a server of the same tenant.
    pub server_id: &'a ServerId,
    /// How it is presented upstream.
    pub kind: CredentialKind,
    /// The header or environment variable name: non-empty, printable ASCII.
    pub target: &'a str,
    /// Must equal [`credential_slot`]`(kind, target)`.
    pub slot: &'a str,
    /// The data key version that sealed `sealed`; must exist.
    pub key_version: u32,
    /// The sealed value.
    pub sealed: &'a [u8],
    /// Who is storing it (recorded as `created_by` and `updated_by`).
    pub actor: Option<&'a str>,
}

impl fmt::Debug for NewCredential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCredential")
            .field("id", &self.id)
            .field("tier", &self.tier)
            .field("user_id", &self.user_id)
            .field("team_id", &self.team_id)
            .field("scope_id", &self.scope_id)
            .field("server_id", &self.server_id)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("slot", &self.slot)
            .field("key_version", &self.key_version)
            .field("sealed", &"<redacted>")
            .field("actor", &self.actor)
            .finish()
    }
}

/// Which credentials [`Store::list_credentials`] returns; `None` fields do
/// not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialFilter {
    /// Only this server's.
    pub server_id: Option<ServerId>,
    /// Only this tier.
    pub tier: Option<ScopeTier>,
    /// Only this user's (personal and service).
    pub user_id: Option<UserId>,
    /// Only this team's.
    pub team_id: Option<TeamId>,
}

/// Metadata columns, with the names of server, user and team.
const META: &str = "c.id, c.tenant_id, c.tier, c.user_id, u.name AS user_name, c.team_id, tm.name AS team_name, \
     c.scope_id, c.server_id, s.name AS server_name, c.kind, c.target, c.slot, c.key_version, c.revision, \
     c.created_by, c.created_at, c.updated_by, c.updated_at, c.last_used_at";

/// The joins behind [`META`].
const FROM: &str = "FROM credentials c \
     JOIN servers s ON s.tenant_id = c.tenant_id AND s.id = c.server_id \
     LEFT JOIN users u ON u.tenant_id = c.tenant_id AND u.id = c.user_id \
     LEFT JOIN teams tm ON tm.tenant_id = c.tenant_id AND tm.id = c.team_id";

fn select_meta() -> String {
    format!("SELECT {META} {FROM}")
}

/// Metadata, sealed value and the wrapped key of the row's own version.
fn select_sealed() -> String {
    format!(
        "SELECT {META}, c.sealed, k.wrapped AS wrapped_dek {FROM} \
         JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.key_version"
    )
}

fn from_row(row: &AnyRow) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        id: CredentialId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        tier: parsed(row, "tier")?,
        user_id: row.try_get::<Option<String>, _>("user_id")?.map(UserId::from_string),
        user_name: row.try_get("user_name")?,
        team_id: row.try_get::<Option<String>, _>("team_id")?.map(TeamId::from_string),
        team_name: row.try_get("team_name")?,
        scope_id: row.try_get("scope_id")?,
        server_id: ServerId::from_string(row.try_get::<String, _>("server_id")?),
        server_name: row.try_get("server_name")?,
        kind: parsed(row, "kind")?,
        target: row.try_get("target")?,
        slot: row.try_get("slot")?,
        key_version: version(row, "key_version")?,
        revision: row.try_get("revision")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn sealed_from_row(row: &AnyRow) -> Result<SealedCredential, StoreError> {
    Ok(SealedCredential {
        meta: from_row(row)?,
        sealed: row.try_get("sealed")?,
        wrapped_dek: row.try_get("wrapped_dek")?,
    })
}

/// Refuses a target that is empty or not printable ASCII (header and
/// environment variable names are both).
fn check_target(target: &str) -> Result<(), StoreError> {
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::Invalid("a credential target must be a non-empty, printable ASCII name".into()));
    }
    Ok(())
}

impl NewCredential<'_> {
    fn validate(&self, tenant: &TenantId) -> Result<(), StoreError> {
        check_target(self.target)?;
        if self.slot != credential_slot(self.kind, self.target) {
            return Err(StoreError::Invalid(format!(
                "slot `{}` does not match the {} credential target `{}`",
                self.slot, self.kind, self.target
            )));
        }
        if self.key_version == 0 {
            return Err(StoreError::Invalid("tenant key versions start at 1".into()));
        }
        let shape_ok = match self.tier {
            ScopeTier::Personal | ScopeTier::Service => {
                self.team_id.is_none() && self.user_id.is_some_and(|u| u.as_str() == self.scope_id)
            }
            ScopeTier::Team => self.user_id.is_none() && self.team_id.is_some_and(|t| t.as_str() == self.scope_id),
            ScopeTier::Org => self.user_id.is_none() && self.team_id.is_none() && self.scope_id == tenant.as_str(),
        };
        if !shape_ok {
            let expected = match self.tier {
                ScopeTier::Personal | ScopeTier::Service => "a user and no team, with the user's id as scope",
                ScopeTier::Team => "a team and no user, with the team's id as scope",
                ScopeTier::Org => "neither user nor team, with the tenant's id as scope",
            };
            return Err(StoreError::Invalid(format!("{} credentials take {expected}", self.tier)));
        }
        Ok(())
    }
}

/// Maps a write error: a unique violation is `Conflict(conflict)`, a foreign
/// key violation a missing reference, a check violation inconsistent fields.
fn write_error(err: sqlx::Error, conflict: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_check_violation() => {
            StoreError::Invalid("the credential's fields are inconsistent".into())
        }
        _ => {
            StoreError::on_insert(err, conflict, "the server, user, team or key version does not exist in this tenant")
        }
    }
}

impl Store {
    /// The credential of `tenant` in this slot of this scope and server, if
    /// any: the vault learns an existing credential's id (bound into the
    /// ciphertext) before sealing a new value for it.
    pub async fn find_credential_slot(
        &self,
        tenant: &TenantId,
        tier: ScopeTier,
        scope_id: &str,
        server: &ServerId,
        slot: &str,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "{} WHERE c.tenant_id = $1 AND c.tier = $2 AND c.scope_id = $3 AND c.server_id = $4 AND c.slot = $5",
            select_meta()
        ))
        .bind(tenant.as_str())
        .bind(tier.as_str())
        .bind(scope_id)
        .bind(server.as_str())
        .bind(slot)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Stores a new sealed credential in `tenant`, revision 1. Another
    /// credential in the same (tier, scope, server, slot) is a
    /// [`StoreError::Conflict`]; inconsistent fields, or a server, user, team
    /// or key version that `tenant` does not have, are [`StoreError::Invalid`].
    pub async fn insert_credential(
        &self,
        tenant: &TenantId,
        new: &NewCredential<'_>,
    ) -> Result<CredentialRecord, StoreError> {
        new.validate(tenant)?;
        let now = now_ms();
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO credentials (id, tenant_id, tier, user_id, team_id, scope_id, server_id, kind, target, \
             slot, key_version, sealed, revision, created_by, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14, $13, $14)",
        )
        .bind(new.id.as_str())
        .bind(tenant.as_str())
        .bind(new.tier.as_str())
        .bind(new.user_id.map(UserId::as_str))
        .bind(new.team_id.map(TeamId::as_str))
        .bind(new.scope_id)
        .bind(new.server_id.as_str())
        .bind(new.kind.as_str())
        .bind(new.target)
        .bind(new.slot)
        .bind(i64::from(new.key_version))
        .bind(new.sealed)
        .bind(new.actor)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(e, || {
                format!("the {} scope already has a credential for `{}` on this server", new.tier, new.slot)
            })
        })?;
        let row = sqlx::query(&format!("{} WHERE c.tenant_id = $1 AND c.id = $2", select_meta()))
            .bind(tenant.as_str())
            .bind(new.id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let record = from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    /// Replaces a credential's value (and its kind and target, which must
    /// keep the same slot), bumping its revision and recording who and when.
    /// Optimistic concurrency: `None` when `tenant` has no such credential or
    /// its revision is no longer `expected_revision`. Moving the credential
    /// to another slot is [`StoreError::Invalid`].
    #[allow(clippy::too_many_arguments)]
    pub async fn update_credential_value(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
        expected_revision: i64,
        kind: CredentialKind,
        target: &str,
        key_version: u32,
        sealed: &[u8],
        actor: Option<&str>,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        check_target(target)?;
        let slot = credential_slot(kind, target);
        let mut tx = self.tenant_write_tx(tenant).await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT slot FROM credentials WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        match current {
            None => return Ok(None),
            Some(current) if current != slot => {
                return Err(StoreError::Invalid(format!(
                    "{kind} credential target `{target}` would move the credential from slot `{current}` to `{slot}`"
                )));
            }
            Some(_) => {}
        }
        let done = sqlx::query(
            "UPDATE credentials SET kind = $4, target = $5, key_version = $6, sealed = $7, \
             revision = revision + 1, updated_by = $8, updated_at = $9 \
             WHERE tenant_id = $1 AND id = $2 AND revision = $3",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(expected_revision)
        .bind(kind.as_str())
        .bind(target)
        .bind(i64::from(key_version))
        .bind(sealed)
        .bind(actor)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|e| write_error(e, String::new))?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query(&format!("{} WHERE c.tenant_id = $1 AND c.id = $2", select_meta()))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let record = from_row(&row)?;
        tx.commit().await?;
        Ok(Some(record))
    }

    /// The metadata of a credential of `tenant`.
    pub async fn get_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("{} WHERE c.tenant_id = $1 AND c.id = $2", select_meta()))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The metadata of `tenant`'s credentials that pass `filter`, by server
    /// name, tier (personal, team, org, service), owner name and target.
    pub async fn list_credentials(
        &self,
        tenant: &TenantId,
        filter: &CredentialFilter,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let mut sql = format!("{} WHERE c.tenant_id = $1", select_meta());
        let mut binds: Vec<&str> = Vec::new();
        let conditions = [
            ("c.server_id", filter.server_id.as_ref().map(ServerId::as_str)),
            ("c.tier", filter.tier.map(ScopeTier::as_str)),
            ("c.user_id", filter.user_id.as_ref().map(UserId::as_str)),
            ("c.team_id", filter.team_id.as_ref().map(TeamId::as_str)),
        ];
        for (column, value) in conditions {
            if let Some(value) = value {
                binds.push(value);
                sql.push_str(&format!(" AND {column} = ${}", binds.len() + 1));
            }
        }
        sql.push_str(
            " ORDER BY s.name, CASE c.tier WHEN 'personal' THEN 0 WHEN 'team' THEN 1 WHEN 'org' THEN 2 ELSE 3 END, \
             COALESCE(u.name, tm.name, ''), c.target, c.id",
        );
        let mut query = sqlx::query(&sql).bind(tenant.as_str());
        for value in binds {
            query = query.bind(value);
        }
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes a credential of `tenant`, returning what was deleted (`None`
    /// when there was no such credential).
    pub async fn delete_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let row = sqlx::query(&format!("{} WHERE c.tenant_id = $1 AND c.id = $2", select_meta()))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let record = from_row(&row)?;
        let done = sqlx::query("DELETE FROM credentials WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((done.rows_affected() > 0).then_some(record))
    }

    /// The candidate credentials of `tenant` for one call to `server` by
    /// `user`, sealed, each with its wrapped data key; the caller ranks them.
    ///
    /// With `service`, only the user's own `service` rows. Otherwise the
    /// user's `personal` rows, the `team` rows of `team_ids` (the caller
    /// passes the user's teams), and, when `include_org`, the tenant's `org`
    /// rows. Never another user's personal or service rows.
    pub async fn credentials_for_call(
        &self,
        tenant: &TenantId,
        server: &ServerId,
        user: &UserId,
        team_ids: &[TeamId],
        include_org: bool,
        service: bool,
    ) -> Result<Vec<SealedCredential>, StoreError> {
        let scope = if service {
            "c.tier = 'service' AND c.user_id = $3".to_owned()
        } else {
            let mut parts = vec!["(c.tier = 'personal' AND c.user_id = $3)".to_owned()];
            if !team_ids.is_empty() {
                parts.push(format!("(c.tier = 'team' AND c.team_id IN ({}))", placeholders(4, team_ids.len())));
            }
            if include_org {
                parts.push("c.tier = 'org'".to_owned());
            }
            parts.join(" OR ")
        };
        let sql = format!("{} WHERE c.tenant_id = $1 AND c.server_id = $2 AND ({scope})", select_sealed());
        let mut query = sqlx::query(&sql).bind(tenant.as_str()).bind(server.as_str()).bind(user.as_str());
        if !service {
            for team in team_ids {
                query = query.bind(team.as_str());
            }
        }
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(sealed_from_row).collect()
    }

    /// One credential of `tenant`, sealed, with its wrapped data key.
    pub async fn get_sealed_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<Option<SealedCredential>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!("{} WHERE c.tenant_id = $1 AND c.id = $2", select_sealed()))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(sealed_from_row).transpose()
    }

    /// Up to `limit` credentials of `tenant` sealed under a key version below
    /// `version`, oldest version first, each with its wrapped data key: the
    /// next batch of a DEK rotation.
    pub async fn credentials_below_version(
        &self,
        tenant: &TenantId,
        version: u32,
        limit: i64,
    ) -> Result<Vec<SealedCredential>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!(
            "{} WHERE c.tenant_id = $1 AND c.key_version < $2 ORDER BY c.key_version, c.id LIMIT $3",
            select_sealed()
        ))
        .bind(tenant.as_str())
        .bind(i64::from(version))
        .bind(limit.max(0))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(sealed_from_row).collect()
    }

    /// Replaces a credential's sealed value by the same value sealed under
    /// key version `to_version` (DEK rotation), only if it is still sealed
    /// under `from_version` at `revision`: a value changed meanwhile is left
    /// alone. Does not bump the revision nor touch `updated_*`. True when the
    /// row changed. A `to_version` that does not exist is
    /// [`StoreError::Invalid`].
    pub async fn reseal_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
        from_version: u32,
        revision: i64,
        to_version: u32,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE credentials SET key_version = $5, sealed = $6 \
             WHERE tenant_id = $1 AND id = $2 AND key_version = $3 AND revision = $4",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(i64::from(from_version))
        .bind(revision)
        .bind(i64::from(to_version))
        .bind(sealed)
        .execute(&mut *tx)
        .await
        .map_err(|e| write_error(e, String::new))?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many credentials of `tenant` are sealed under a key version below
    /// `version` (zero once a rotation to `version` is complete).
    pub async fn count_credentials_below_version(&self, tenant: &TenantId, version: u32) -> Result<i64, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE tenant_id = $1 AND key_version < $2")
            .bind(tenant.as_str())
            .bind(i64::from(version))
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Records that credentials of `tenant` were injected at `at_ms`. To
    /// spare writes, a row changes only when its `last_used_at` is unset or
    /// more than a minute older than `at_ms` (and it never moves back).
    pub async fn touch_credentials_used(
        &self,
        tenant: &TenantId,
        ids: &[CredentialId],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE credentials SET last_used_at = $2 WHERE tenant_id = $1 AND id IN ({}) \
             AND (last_used_at IS NULL OR last_used_at < $3)",
            placeholders(4, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(tenant.as_str()).bind(at_ms).bind(at_ms.saturating_sub(60_000));
        for id in ids {
            query = query.bind(id.as_str());
        }
        let mut tx = self.tenant_write_tx(tenant).await?;
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
