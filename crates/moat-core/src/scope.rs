//! Credential scope tiers and how a credential is presented upstream.

use crate::principal::ParseEnumError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who owns a stored upstream credential. Resolution at call time:
/// personal ▸ team ▸ organisation for humans and agents acting for a user;
/// a service client (machine identity) only its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopeTier {
    /// One user's own credential.
    Personal,
    /// Shared by the members of a team.
    Team,
    /// Shared by the whole tenant (organisation).
    Org,
    /// A machine identity's own credential.
    Service,
}

/// How a credential is presented to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A named HTTP header, value as stored.
    Header,
    /// `Authorization: Bearer <value>`.
    Bearer,
    /// `Authorization: Basic base64(<value>)`, the value being `user:password`.
    Basic,
    /// An environment variable of a stdio upstream, set at process start.
    Env,
}

text_enum!(ScopeTier, "scope tier", "personal, team, org, service", {
    Personal => "personal", Team => "team", Org => "org", Service => "service",
});
text_enum!(CredentialKind, "credential kind", "header, bearer, basic, env", {
    Header => "header", Bearer => "bearer", Basic => "basic", Env => "env",
});

impl CredentialKind {
    /// True when the credential travels in an HTTP header (HTTP upstreams).
    pub fn is_header(self) -> bool {
        !matches!(self, Self::Env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_kinds_round_trip() {
        for t in [ScopeTier::Personal, ScopeTier::Team, ScopeTier::Org, ScopeTier::Service] {
            assert_eq!(t.as_str().parse::<ScopeTier>().unwrap(), t);
        }
        for k in [CredentialKind::Header, CredentialKind::Bearer, CredentialKind::Basic, CredentialKind::Env] {
            assert_eq!(k.as_str().parse::<CredentialKind>().unwrap(), k);
        }
        assert!("organisation".parse::<ScopeTier>().is_err());
        assert!(!CredentialKind::Env.is_header() && CredentialKind::Basic.is_header());
    }
}
