//! Teams of a tenant: named groups of users that share team-tier
//! credentials.

use crate::store::check_name;
use crate::{Store, StoreError};
use moat_core::{TeamId, TenantId, UserId, now_ms};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A team of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TeamRecord {
    /// Its id.
    pub id: TeamId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Unique within the tenant.
    pub name: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// How many users belong to it.
    pub member_count: i64,
}

/// A member of a team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TeamMember {
    /// The user.
    pub user_id: UserId,
    /// That user's name.
    pub user_name: String,
    /// When the user joined the team, unix milliseconds.
    pub added_at: i64,
}

const SELECT: &str = "SELECT t.id, t.tenant_id, t.name, t.created_at, \
     (SELECT COUNT(*) FROM team_members m WHERE m.tenant_id = t.tenant_id AND m.team_id = t.id) AS member_count \
     FROM teams t";

fn from_row(row: &AnyRow) -> Result<TeamRecord, StoreError> {
    Ok(TeamRecord {
        id: TeamId::from_string(row.try_get::<String, _>("id")?),
        tenant_id: TenantId::from_string(row.try_get::<String, _>("tenant_id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        member_count: row.try_get("member_count")?,
    })
}

impl Store {
    /// Creates a team in `tenant`. A taken name is a [`StoreError::Conflict`].
    pub async fn create_team(&self, tenant: &TenantId, name: &str) -> Result<TeamRecord, StoreError> {
        check_name("team", name)?;
        let record = TeamRecord {
            id: TeamId::generate(),
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            created_at: now_ms(),
            member_count: 0,
        };
        let mut tx = self.tenant_write_tx(tenant).await?;
        sqlx::query("INSERT INTO teams (id, tenant_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(record.id.as_str())
            .bind(tenant.as_str())
            .bind(name)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::on_insert(
                    e,
                    || format!("a team named `{name}` already exists in this tenant"),
                    "the tenant does not exist",
                )
            })?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every team of `tenant`, by name.
    pub async fn list_teams(&self, tenant: &TenantId) -> Result<Vec<TeamRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(&format!("{SELECT} WHERE t.tenant_id = $1 ORDER BY t.name"))
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// The team of `tenant` whose id or name is `id_or_name` (an id wins).
    pub async fn find_team(&self, tenant: &TenantId, id_or_name: &str) -> Result<Option<TeamRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(&format!(
            "{SELECT} WHERE t.tenant_id = $1 AND (t.id = $2 OR t.name = $2) \
             ORDER BY CASE WHEN t.id = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(tenant.as_str())
        .bind(id_or_name)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Deletes a team of `tenant` with, by cascade, its memberships and its
    /// team credentials. False when `tenant` has no such team.
    pub async fn delete_team(&self, tenant: &TenantId, id: &TeamId) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM teams WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds a user of `tenant` to a team of `tenant`. False when the user
    /// already belongs to it; a team or user that `tenant` does not have is
    /// [`StoreError::Invalid`] (the foreign keys span tenant and id).
    pub async fn add_team_member(&self, tenant: &TenantId, team: &TeamId, user: &UserId) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query(
            "INSERT INTO team_members (tenant_id, team_id, user_id, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (team_id, user_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(team.as_str())
        .bind(user.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::on_insert(e, String::new, "the team or user does not exist in this tenant"))?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes a user from a team of `tenant`. False when it was not a member.
    pub async fn remove_team_member(
        &self,
        tenant: &TenantId,
        team: &TeamId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_write_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM team_members WHERE tenant_id = $1 AND team_id = $2 AND user_id = $3")
            .bind(tenant.as_str())
            .bind(team.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The members of a team of `tenant`, by user name (empty for an unknown
    /// team).
    pub async fn team_members(&self, tenant: &TenantId, team: &TeamId) -> Result<Vec<TeamMember>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT m.user_id, u.name AS user_name, m.added_at FROM team_members m \
             JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
             WHERE m.tenant_id = $1 AND m.team_id = $2 ORDER BY u.name",
        )
        .bind(tenant.as_str())
        .bind(team.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(TeamMember {
                    user_id: UserId::from_string(row.try_get::<String, _>("user_id")?),
                    user_name: row.try_get("user_name")?,
                    added_at: row.try_get("added_at")?,
                })
            })
            .collect()
    }

    /// The teams of `tenant` that a user belongs to, by id.
    pub async fn teams_of_user(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<TeamId>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2 ORDER BY team_id",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids.into_iter().map(TeamId::from_string).collect())
    }
}
