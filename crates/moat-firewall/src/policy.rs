//! From findings to an action. A policy is a stack of layers of rules
//! matched on (category, rule id, direction): the defaults, then the
//! deployment's rules, then a tenant's, a server's and a tool's overrides.
//! The latest layer with a matching rule decides, and within a layer the
//! most specific matching rule wins (later ones winning ties). So an
//! operator's `pii = block` beats the default `pii in responses = redact`,
//! and a tool's override beats both. The decision for a message is its
//! strongest action: block ▸ approve ▸ redact ▸ log.

use crate::finding::{Category, Confidence, Direction, Finding};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What happens to a message with a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing (the finding is not even recorded).
    Allow,
    /// Recorded in the audit trail; the message passes unchanged.
    Log,
    /// The match is replaced in place with a typed placeholder.
    Redact,
    /// The call is held until an admin approves it.
    Approve,
    /// The upstream is never called, or its result never delivered.
    Block,
}

impl Action {
    /// The config and audit name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Redact => "redact",
            Action::Approve => "approve",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "allow" => Action::Allow,
            "log" => Action::Log,
            "redact" => Action::Redact,
            "approve" | "require_approval" | "require-approval" => Action::Approve,
            "block" => Action::Block,
            _ => return Err(format!("`{s}` is not one of: block, redact, approve, log, allow")),
        })
    }
}

/// Whether decisions are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decide and apply.
    #[default]
    Enforce,
    /// Decide and record, change nothing.
    Shadow,
    /// Do not scan.
    Disabled,
}

impl Mode {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
            Mode::Disabled => "disabled",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "enforce" => Mode::Enforce,
            "shadow" => Mode::Shadow,
            "disabled" => Mode::Disabled,
            _ => return Err(format!("`{s}` is not one of: enforce, shadow, disabled")),
        })
    }
}

/// One policy rule: which findings it matches (unset = any) and the action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Only findings of this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// Only this rule id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Only this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// What to do.
    pub action: Action,
}

impl PolicyRule {
    fn matches(&self, f: &Finding, direction: Direction) -> bool {
        self.category.is_none_or(|c| c == f.category)
            && self.rule.as_deref().is_none_or(|r| r == f.rule)
            && self.direction.is_none_or(|d| d == direction)
    }

    /// How specific the rule is: a rule id beats a category, and a
    /// direction adds to either.
    fn specificity(&self) -> u8 {
        (if self.rule.is_some() { 4 } else { 0 })
            + (if self.category.is_some() { 2 } else { 0 })
            + u8::from(self.direction.is_some())
    }
}

/// A mode and its rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Enforce, shadow or disabled.
    pub mode: Mode,
    /// The rules, defaults first, layer after layer.
    pub rules: Vec<PolicyRule>,
    /// Where each layer after the first starts in `rules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<usize>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::defaults(Mode::Enforce)
    }
}

fn rule(category: Category, direction: Option<Direction>, action: Action) -> PolicyRule {
    PolicyRule { category: Some(category), rule: None, direction, action }
}

impl Policy {
    /// The defaults: every finding is logged; secrets, personal data and
    /// injections in responses, and secrets and injections in descriptions,
    /// are redacted; destructive commands and
    /// secrets in requests are blocked; internal and metadata addresses in
    /// requests are blocked (SSRF); tool abuse in requests needs approval.
    pub fn defaults(mode: Mode) -> Self {
        use Action::*;
        use Category::*;
        use Direction::*;
        let rules = vec![
            PolicyRule { category: None, rule: None, direction: None, action: Log },
            rule(Secret, Some(Response), Redact),
            rule(Secret, Some(Description), Redact),
            rule(Secret, Some(Request), Block),
            rule(Pii, Some(Response), Redact),
            rule(Injection, Some(Response), Redact),
            rule(Injection, Some(Description), Redact),
            rule(Destructive, Some(Request), Block),
            rule(ToolAbuse, Some(Request), Approve),
            PolicyRule {
                category: Some(Url),
                rule: Some("metadata-address".into()),
                direction: Some(Request),
                action: Block,
            },
            PolicyRule {
                category: Some(Url),
                rule: Some("internal-address".into()),
                direction: Some(Request),
                action: Block,
            },
        ];
        Self { mode, rules, layers: Vec::new() }
    }

    /// This policy with a new layer of rules on top: where one of them
    /// matches a finding, the layers below are not consulted.
    pub fn with_rules(mut self, more: impl IntoIterator<Item = PolicyRule>) -> Self {
        self.push_layer(more);
        self
    }

    /// Adds a layer of rules on top (nothing when `more` is empty).
    pub fn push_layer(&mut self, more: impl IntoIterator<Item = PolicyRule>) {
        let start = self.rules.len();
        self.rules.extend(more);
        if self.rules.len() > start {
            self.layers.push(start);
        }
    }

    /// The action for one finding. A low-confidence finding (a weak
    /// signal: a quoted example, `../` in a path) is at most logged unless
    /// a rule names its rule id.
    pub fn action_for(&self, f: &Finding, direction: Direction) -> Action {
        let mut best: Option<(u8, &PolicyRule)> = None;
        let mut end = self.rules.len();
        for start in self.layers.iter().rev().copied().chain([0]) {
            for r in self.rules.get(start..end).unwrap_or_default() {
                if r.matches(f, direction) {
                    let s = r.specificity();
                    if best.is_none_or(|(b, _)| s >= b) {
                        best = Some((s, r));
                    }
                }
            }
            if best.is_some() {
                break;
            }
            end = start;
        }
        match best {
            None => Action::Allow,
            Some((_, r)) if f.confidence == Confidence::Low && r.rule.is_none() => r.action.min(Action::Log),
            Some((_, r)) => r.action,
        }
    }

    /// The decision for a message: each finding's action and the strongest.
    pub fn decide(&self, findings: &[Finding], direction: Direction) -> Decision {
        if self.mode == Mode::Disabled {
            return Decision { action: Action::Allow, actions: Vec::new(), enforced: false };
        }
        let actions: Vec<Action> = findings.iter().map(|f| self.action_for(f, direction)).collect();
        let action = actions.iter().copied().max().unwrap_or(Action::Allow);
        Decision { action, actions, enforced: self.mode == Mode::Enforce }
    }
}

/// What the policy decided for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The strongest action.
    pub action: Action,
    /// Per finding, in order.
    pub actions: Vec<Action>,
    /// False in shadow mode: the decision is recorded, not applied.
    pub enforced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(category: Category, rule: &'static str) -> Finding {
        Finding { category, rule: rule.into(), confidence: Confidence::High, span: 0..1 }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let p = Policy::default();
        assert_eq!(p.action_for(&f(Category::Secret, "github-pat"), Direction::Response), Action::Redact);
        assert_eq!(p.action_for(&f(Category::Injection, "instruction-override"), Direction::Response), Action::Redact);
        assert_eq!(p.action_for(&f(Category::Destructive, "rm-rf"), Direction::Request), Action::Block);
        assert_eq!(p.action_for(&f(Category::Pii, "email"), Direction::Response), Action::Redact);
        assert_eq!(p.action_for(&f(Category::Pii, "email"), Direction::Request), Action::Log);
        assert_eq!(p.action_for(&f(Category::Url, "metadata-address"), Direction::Request), Action::Block);
        assert_eq!(p.action_for(&f(Category::Url, "exfil-host"), Direction::Response), Action::Log);
    }

    #[test]
    fn specific_and_later_rules_win() {
        let p = Policy::default().with_rules([
            PolicyRule { category: Some(Category::Pii), rule: None, direction: None, action: Action::Redact },
            PolicyRule { category: None, rule: Some("email".into()), direction: None, action: Action::Allow },
        ]);
        assert_eq!(p.action_for(&f(Category::Pii, "email"), Direction::Response), Action::Allow);
        assert_eq!(p.action_for(&f(Category::Pii, "iban"), Direction::Response), Action::Redact);
        let d = p.decide(&[f(Category::Pii, "iban"), f(Category::Destructive, "rm-rf")], Direction::Request);
        assert_eq!(d.action, Action::Block);
        assert!(d.enforced);
    }

    #[test]
    fn a_later_layer_beats_a_more_specific_default() {
        let rule = |category, action| PolicyRule { category: Some(category), rule: None, direction: None, action };
        let p = Policy::default().with_rules([rule(Category::Pii, Action::Block)]);
        assert_eq!(p.action_for(&f(Category::Pii, "email"), Direction::Response), Action::Block);
        // Unmatched by the new layer: the defaults still apply.
        assert_eq!(p.action_for(&f(Category::Secret, "github-pat"), Direction::Response), Action::Redact);
        let p = p.with_rules([rule(Category::Pii, Action::Log)]);
        assert_eq!(p.action_for(&f(Category::Pii, "email"), Direction::Response), Action::Log);
    }

    #[test]
    fn shadow_decides_without_enforcing_and_disabled_does_nothing() {
        let findings = [f(Category::Destructive, "rm-rf")];
        let d = Policy::defaults(Mode::Shadow).decide(&findings, Direction::Request);
        assert_eq!((d.action, d.enforced), (Action::Block, false));
        let d = Policy::defaults(Mode::Disabled).decide(&findings, Direction::Request);
        assert_eq!(d.action, Action::Allow);
        assert!(d.actions.is_empty());
    }

    #[test]
    fn low_confidence_findings_are_only_logged_unless_named() {
        let weak = Finding { confidence: Confidence::Low, ..f(Category::ToolAbuse, "path-traversal") };
        assert_eq!(Policy::default().action_for(&weak, Direction::Request), Action::Log);
        let named = Policy::default().with_rules([PolicyRule {
            category: None,
            rule: Some("path-traversal".into()),
            direction: None,
            action: Action::Block,
        }]);
        assert_eq!(named.action_for(&weak, Direction::Request), Action::Block);
    }

    #[test]
    fn names_parse() {
        assert_eq!("require_approval".parse::<Action>().unwrap(), Action::Approve);
        assert!("drop".parse::<Action>().is_err());
        assert_eq!("shadow".parse::<Mode>().unwrap(), Mode::Shadow);
    }
}
