//! Strongly typed identifiers. Every id is a UUIDv7 rendered as text, so ids
//! sort by creation time and are portable across SQLite and PostgreSQL.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A fresh time-ordered identifier.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, unique id.
            pub fn generate() -> Self {
                Self(new_id())
            }
            /// Wraps an id read from storage or a request.
            pub fn from_string(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant: the unit of isolation. Every tenant-owned row carries one.
    TenantId
);
id_type!(
    /// A user (a human or an agent acting for one) inside a tenant.
    UserId
);
id_type!(
    /// An API key's database id (not the public id embedded in the key).
    ApiKeyId
);
id_type!(
    /// A registered upstream MCP server.
    ServerId
);
id_type!(
    /// An audit event.
    AuditId
);
id_type!(
    /// A team: a group of users inside a tenant.
    TeamId
);
id_type!(
    /// A stored upstream credential.
    CredentialId
);
