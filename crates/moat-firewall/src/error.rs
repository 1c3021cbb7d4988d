//! Errors raised while building the firewall. Scanning itself never fails.

/// Why a rule set or engine could not be built.
///
/// Messages name the rule id and the reason but never echo a pattern: tenant
/// patterns may themselves contain sensitive literals.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FirewallError {
    /// A built-in rule did not compile (a bug in a rule table).
    #[error("built-in rule `{id}` does not compile: {reason}")]
    BuiltinRule {
        /// The rule id.
        id: &'static str,
        /// What went wrong.
        reason: &'static str,
    },
    /// A tenant pattern was refused.
    #[error("custom pattern {id:?} refused: {reason}")]
    CustomPattern {
        /// The pattern's id as given.
        id: String,
        /// What went wrong.
        reason: &'static str,
    },
    /// More tenant patterns than allowed.
    #[error("{count} custom patterns given, at most {limit} are allowed")]
    TooManyCustomPatterns {
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The combined automaton exceeded its size limit.
    #[error("the combined rule automaton is too large")]
    RuleSetTooLarge,
}
