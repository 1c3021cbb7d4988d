//! OAuth scopes: what an access token lets its holder do, on top of what the
//! holder's role allows. Least privilege: the MCP scopes split tools,
//! resources and prompts; the admin scopes are kept apart and only a human
//! admin can hold them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One scope moat issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// List and call tools.
    McpTools,
    /// List, read and subscribe to resources.
    McpResources,
    /// List and get prompts.
    McpPrompts,
    /// Read the admin API.
    AdminRead,
    /// Change things through the admin API.
    AdminWrite,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 5] =
        [Scope::McpTools, Scope::McpResources, Scope::McpPrompts, Scope::AdminRead, Scope::AdminWrite];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::McpTools => "mcp:tools",
            Scope::McpResources => "mcp:resources",
            Scope::McpPrompts => "mcp:prompts",
            Scope::AdminRead => "admin:read",
            Scope::AdminWrite => "admin:write",
        }
    }

    /// The scope a wire string names.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }

    /// True for the admin scopes, which only human admins may hold.
    pub fn is_admin(self) -> bool {
        matches!(self, Scope::AdminRead | Scope::AdminWrite)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes (a bit set: copying it costs nothing on the hot path).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const NONE: Scopes = Scopes(0);

    /// Every scope: what an API key carries (its role still limits it).
    pub fn all() -> Scopes {
        Scope::ALL.into_iter().collect()
    }

    /// The MCP scopes only: what a service client may hold at most.
    pub fn mcp() -> Scopes {
        [Scope::McpTools, Scope::McpResources, Scope::McpPrompts].into_iter().collect()
    }

    /// True when `scope` is in the set.
    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// True when the set holds any MCP scope.
    pub fn any_mcp(self) -> bool {
        !self.intersect(Scopes::mcp()).is_empty()
    }

    /// The scopes in both sets.
    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    /// True when every scope of `self` is in `other`.
    pub fn is_subset(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set without the admin scopes.
    pub fn without_admin(self) -> Scopes {
        self.intersect(Scopes::mcp())
    }

    /// Iterates in display order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.has(*s))
    }

    /// Parses a space-separated scope string (RFC 6749 §3.3). Unknown
    /// scopes are returned separately so that the caller can refuse them.
    pub fn parse_list(s: &str) -> (Scopes, Vec<String>) {
        let mut set = Scopes::NONE;
        let mut unknown = Vec::new();
        for word in s.split(' ').filter(|w| !w.is_empty()) {
            match Scope::parse(word) {
                Some(sc) => set.0 |= sc.bit(),
                None => unknown.push(word.to_owned()),
            }
        }
        (set, unknown)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Display for Scopes {
    /// The space-separated wire form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (set, unknown) = Scopes::parse_list(&text);
        if let Some(u) = unknown.first() {
            return Err(serde::de::Error::custom(format!("unknown scope `{u}`")));
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_round_trip() {
        let (s, unknown) = Scopes::parse_list("mcp:tools  admin:read bogus");
        assert_eq!(unknown, vec!["bogus".to_owned()]);
        assert!(s.has(Scope::McpTools) && s.has(Scope::AdminRead) && !s.has(Scope::AdminWrite));
        assert_eq!(s.to_string(), "mcp:tools admin:read");
        assert_eq!(Scopes::parse_list(&Scopes::all().to_string()).0, Scopes::all());
        assert!(Scopes::mcp().is_subset(Scopes::all()) && !Scopes::all().is_subset(Scopes::mcp()));
        assert!(Scopes::all().without_admin() == Scopes::mcp());
        assert!(Scopes::NONE.is_empty() && !Scopes::NONE.any_mcp());
    }
}
