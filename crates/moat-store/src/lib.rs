//! Storage for moat: the schema, its versioned migrations, and tenant-scoped
//! repositories over SQLite (the zero-config default) and PostgreSQL.
//!
//! This crate owns rows, not rules: it does no cryptography (API key hashes
//! arrive already hashed, credentials already sealed and data keys already
//! wrapped), no authorisation (who may list every tenant's audit is the
//! caller's decision) and no protocol work.
//!
//! # Shape
//!
//! [`Store`] wraps one `sqlx` `AnyPool`; every table group is a module that
//! adds methods to it: [`tenants`], [`users`], [`teams`] (groups of users),
//! [`keys`] (API keys), [`servers`] (upstream registrations),
//! [`tenant_keys`] (each tenant's versioned data keys, wrapped),
//! [`credentials`] (the vault's sealed upstream credentials), [`firewall`]
//! (approvals, description pins, a tenant's overrides and patterns) and
//! [`audit`].
//! Queries are written once in portable SQL (`$n` placeholders, `TEXT` ids,
//! `BIGINT` unix milliseconds, JSON as `TEXT`, bytes as `BLOB`/`BYTEA` read
//! as `Vec<u8>`); only the migrations differ per backend
//! (`migrations/sqlite`, `migrations/postgres`, embedded at compile time and
//! applied by [`Store::connect`]; applying them twice is a no-op).
//!
//! Booleans are `BOOLEAN` on PostgreSQL and `INTEGER` 0/1 (with a `CHECK`)
//! on SQLite: the Any driver refuses SQLite's `BOOLEAN` declared type, binds a
//! Rust `bool` as the right thing on each backend, and one helper reads both.
//!
//! # Tenant isolation
//!
//! Every method that touches a tenant's rows takes a [`moat_core::TenantId`]
//! and filters on `tenant_id` in its SQL, on both backends. On PostgreSQL each
//! such method also runs in a transaction that first does
//! `SELECT set_config('app.tenant_id', $1, true)`, and every tenant-owned
//! table has `FORCE ROW LEVEL SECURITY` with the policy
//! `tenant_id = current_setting('app.tenant_id', true)`: a query that forgot
//! its filter still sees only its tenant, and a connection with no tenant set
//! sees no rows at all. The `tenants` table is the directory (ids and names)
//! and has no policy: a tenant must be resolved before a scope exists.
//!
//! A few operations must cross tenants and say so in their names and docs:
//! [`Store::api_key_for_auth`] (authentication, before the tenant is known),
//! [`Store::list_all_servers`] (boot), [`Store::append_audit`] (the audit
//! sink), [`Store::list_audit`] with no tenant (the operator's view) and
//! [`Store::tenants_with_keys_cross_tenant`] (KEK rotation, and resuming DEK
//! rotations at boot: it returns tenant ids only, and each tenant's keys are
//! then read in that tenant's scope). On
//! PostgreSQL they run in a transaction that sets `app.bypass_rls = 'on'`,
//! which the policies also accept. We chose this over `SECURITY DEFINER`
//! functions because `FORCE` makes even the owner subject to the policies, so
//! definer functions would need a bypass of their own anyway, and because the
//! setting carries the same trust as `app.tenant_id`: both are
//! transaction-local (`set_config(…, true)`), so a pooled connection never
//! carries either into the next transaction, and nothing but those methods
//! sets the bypass. RLS here defends against a forgotten filter; SQL
//! injection is excluded by binding every value.
//!
//! # Roles on PostgreSQL
//!
//! Superusers and roles with `BYPASSRLS` skip every policy. Run the
//! migrations as the schema owner ([`Store::connect`], or [`Store::migrate`]),
//! and serve as a separate application role that is neither superuser nor
//! owner, opened with [`Store::connect_with`] and `StoreOptions { migrate:
//! false, .. }`. That role needs `USAGE` on the schema and `SELECT, INSERT,
//! UPDATE, DELETE` on `tenants`, `users`, `api_keys`, `servers`, `teams`,
//! `team_members`, `tenant_keys`, `credentials`, `approvals`, `tool_pins`,
//! `firewall_policies`, `firewall_patterns`, and the identity tables
//! `tenant_secrets`, `signing_keys`, `tenant_auth`, `oauth_clients`,
//! `oauth_pending`, `oauth_grants`, `oauth_codes`, `oauth_refresh_tokens`,
//! `oauth_revoked_tokens`, `oauth_consents` and `browser_sessions`, and
//! `SELECT, INSERT` on `audit_events`. (With `FORCE`, even a deployment that serves as the owner
//! keeps the policies; only a superuser loses them.) Migration `0002`, which
//! adds the last four tables, grants them to every role that already may
//! `DELETE` from `servers`, so an upgraded deployment's application role
//! keeps working (`0003` does the same for the firewall's four tables, and
//! `0004` for the identity tables); a
//! fresh deployment grants after migrating.
//!
//! # Credentials
//!
//! Credential rows hold only sealed values, and a tenant's data keys only
//! their wrapping by the deployment's key-encryption key. Every reference
//! between the new tables is a composite foreign key that includes
//! `tenant_id`, so a credential, membership or team can only point at rows
//! of its own tenant; deleting a user, team or server deletes its
//! credentials, and a data key version cannot be deleted while a credential
//! is sealed under it. Readers get a credential and the wrapped key of its
//! own version from one query ([`SealedCredential`]).
//!
//! # Audit
//!
//! `audit_events` is append-only: triggers abort every `UPDATE` and `DELETE`
//! (and `TRUNCATE` on PostgreSQL). It has no foreign key to `tenants`, so a
//! deleted tenant's trail stays, and events with no known tenant have a null
//! `tenant_id`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod credentials;
mod error;
pub mod firewall;
pub mod identity;
pub mod keys;
pub mod oauth;
pub mod servers;
mod store;
pub mod teams;
pub mod tenant_keys;
pub mod tenants;
pub mod users;

pub use audit::{AuditEvent, AuditQuery, AuditResult, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, NewAuditEvent};
pub use credentials::{CredentialFilter, CredentialRecord, NewCredential, SealedCredential, credential_slot};
pub use error::StoreError;
pub use firewall::{
    ApprovalKind, ApprovalRecord, ApprovalStatus, FirewallOverride, FirewallPatternRecord, FirewallPolicyRecord,
    NewApproval, ToolPin,
};
pub use identity::{BrowserSession, IdpSettings, SealedSecret, SecretPurpose, SigningKeyRecord, TenantAuthSettings};
pub use keys::{ApiKeyRecord, AuthKeyRecord, NewApiKey};
pub use oauth::{
    AuthorizationCode, ClientAuthRecord, ClientKind, ClientSource, ConsentRecord, GrantRecord, OAuthClientRecord,
    PendingAuthorization, Redeemed, TokenStatus,
};
pub use servers::{NewServer, ServerRecord, ServerSource, Transport};
pub use store::{Backend, ParseError, Store, StoreOptions};
pub use teams::{TeamMember, TeamRecord};
pub use tenant_keys::TenantKey;
pub use tenants::TenantRecord;
pub use users::{NewUser, UserRecord};
