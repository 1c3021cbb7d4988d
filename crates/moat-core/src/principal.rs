//! Who is calling: the result of authentication, carried through the request
//! path and into every audit event.

use crate::grants::Scopes;
use crate::{TenantId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A role inside a tenant. Ordered: `Owner > Admin > Member`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May read and use what is granted.
    Member,
    /// Manages keys, servers, users and policy of the tenant.
    Admin,
    /// Everything an admin may, plus tenant-level settings.
    Owner,
}

/// What kind of actor holds a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person.
    Human,
    /// An AI agent acting for a user.
    Agent,
    /// A machine identity (service client).
    Service,
    /// An automated workflow.
    Workflow,
}

/// How the principal proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A `moat_…` API key.
    ApiKey,
    /// An access token issued by moat's authorization server.
    AccessToken,
    /// No credential: a server explicitly opened with `allow_anonymous`.
    Anonymous,
    /// A browser session cookie from an identity-provider login.
    Session,
}

/// An authenticated caller. Built only by the authentication stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The tenant the caller belongs to; every lookup is scoped by it.
    pub tenant_id: TenantId,
    /// The tenant's name, for logs and audit.
    pub tenant_name: String,
    /// The user the credential belongs to.
    pub user_id: UserId,
    /// Human, agent, service or workflow.
    pub kind: PrincipalKind,
    /// Role inside the tenant.
    pub role: Role,
    /// True for the deployment operator (the key `moat init` prints), who may
    /// manage other tenants.
    pub operator: bool,
    /// The credential that authenticated this request (API key id or token id).
    pub credential_id: String,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// What the credential allows on top of the role: every scope for an
    /// API key, the granted ones for an access token.
    pub scopes: Scopes,
    /// Browser origins the credential may be used from (an access token's
    /// `allowed_origins` claim); empty: no restriction beyond the gateway's
    /// own Origin allowlist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

impl Principal {
    /// True when the caller may administer its tenant.
    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }

    /// True when the credential carries `scope`.
    pub fn has_scope(&self, scope: crate::Scope) -> bool {
        self.scopes.has(scope)
    }
}

/// A string that did not name a known variant.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct ParseEnumError {
    pub(crate) what: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static str,
}

/// Implements `as_str`, `Display` and `FromStr` over lowercase text forms.
macro_rules! text_enum {
    ($ty:ident, $what:literal, $expected:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The lowercase wire and storage form.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(ParseEnumError { what: $what, value: s.to_owned(), expected: $expected }),
                }
            }
        }
    };
}

text_enum!(Role, "role", "owner, admin, member", {
    Owner => "owner", Admin => "admin", Member => "member",
});
text_enum!(PrincipalKind, "principal kind", "human, agent, service, workflow", {
    Human => "human", Agent => "agent", Service => "service", Workflow => "workflow",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Member);
        for r in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in [PrincipalKind::Human, PrincipalKind::Agent, PrincipalKind::Service, PrincipalKind::Workflow] {
            assert_eq!(k.as_str().parse::<PrincipalKind>().unwrap(), k);
        }
    }
}
