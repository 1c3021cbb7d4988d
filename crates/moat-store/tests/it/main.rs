//! Integration tests of `moat-store`: one repository suite, run against
//! SQLite always and against PostgreSQL when `MOAT_TEST_DATABASE_URL` names a
//! server (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Each
//! PostgreSQL test gets a fresh database, migrated by the owner and used
//! through a restricted application role, so every repository method is also
//! checked against the row-level security policies.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod credentials;
mod firewall;
mod harness;
mod keys;
mod migrations;
mod oauth;
mod rls;
mod servers;
mod teams;
mod tenant_keys;
mod tenants;
mod users;

/// Generates `sqlite::<module>::<test>` and `postgres::<module>::<test>`.
macro_rules! on_both_backends {
    ($($module:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        mod sqlite {
            $(mod $module {
                $(#[tokio::test]
                async fn $test() {
                    crate::harness::sqlite(crate::$module::$test).await;
                })*
            })*
        }
        mod postgres {
            $(mod $module {
                $(#[tokio::test]
                async fn $test() {
                    crate::harness::postgres(crate::$module::$test).await;
                })*
            })*
        }
    };
}

on_both_backends! {
    tenants: [crud, delete_cascades_but_keeps_audit],
    users: [crud_and_isolation],
    keys: [lifecycle, revoked_name_is_reusable, rotate, isolation, secret_hash_stays_out_of_views],
    servers: [create_find_delete, config_upsert, validation, isolation_and_list_all],
    audit: [append_only, ordering_and_paging, filters_and_tenant_scope, limits_and_batches],
    migrations: [idempotent],
    teams: [crud_and_membership, isolation],
    tenant_keys: [lifecycle, cross_tenant_listing_and_isolation, bytes_round_trip],
    firewall: [approvals, pins, policies_and_patterns, isolation],
    oauth: [clients, codes_and_refresh_tokens, token_status_and_revocation, pending_and_consent, signing_keys_and_settings],
    credentials: [
        crud,
        unique_slot_per_scope,
        shape_checks,
        cascades,
        candidates_for_call,
        rotation,
        last_used,
        isolation,
        writes_race_the_audit_sink,
    ],
}

#[tokio::test]
async fn postgres_rls_policies() {
    harness::postgres(rls::policies).await;
}

#[tokio::test]
async fn postgres_upgrade_grants_new_tables() {
    harness::postgres(migrations::upgrade_grants_new_tables).await;
}
