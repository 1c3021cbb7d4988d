//! Shared vocabulary of moat: identifiers, the authenticated [`Principal`],
//! roles and principal kinds, OAuth scopes, credential scope tiers, and name validation.
//!
//! This crate owns types only; it performs no I/O. Every other crate depends
//! on it, and it depends on none of them.
#![forbid(unsafe_code)]

mod grants;
mod ids;
mod names;
#[macro_use]
mod principal;
mod scope;

pub use grants::{Scope, Scopes};
pub use ids::{ApiKeyId, AuditId, CredentialId, ServerId, TeamId, TenantId, UserId, new_id};
pub use names::{NameError, validate_name};
pub use principal::{AuthMethod, ParseEnumError, Principal, PrincipalKind, Role};
pub use scope::{CredentialKind, ScopeTier};

/// Milliseconds since the Unix epoch, the one clock representation stored.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
