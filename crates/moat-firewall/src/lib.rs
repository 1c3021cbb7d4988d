//! The MCP firewall: stateless scanners run over every string of a JSON
//! value (tool arguments, results, errors, descriptions), and the findings
//! they report. Pure: no I/O, no clock, no global state; the gateway turns
//! findings into actions (block, redact, require approval, log).
//!
//! Text smuggled in base64 is decoded and scanned too (one level deep,
//! bounded per string): see [`encoded`] and [`Engine::scan_str`].
#![forbid(unsafe_code)]

pub mod encoded;
pub mod engine;
pub mod error;
pub mod finding;
mod lazy;
pub mod normalize;
pub mod policy;
pub mod rules;
pub mod scanners;

pub use engine::{Engine, EngineConfig, JsonFinding};
pub use error::FirewallError;
pub use finding::{Category, Confidence, Direction, Finding, LiteralHit, Scanner};
pub use policy::{Action, Decision, Mode, Policy, PolicyRule};
pub use rules::{CustomPattern, Rule, RuleSet};

/// The engine with every scanner of this crate: the compiled rule set
/// (secrets, PII, destructive commands, exfiltration, tool abuse) plus the
/// code scanners for hidden text, prompt injection and URLs, each only when
/// its category is enabled. Compiled once per process (about 50–70 ms).
pub fn standard_engine(config: &EngineConfig) -> Result<Engine, FirewallError> {
    let engine = Engine::new(config.clone())?;
    let mut extra: Vec<Box<dyn Scanner>> = Vec::new();
    if engine.enabled(Category::Injection) {
        extra.push(Box::new(scanners::unicode::HiddenText::new()));
        extra.push(Box::new(scanners::injection::Injection::new()));
    }
    if engine.enabled(Category::Url) {
        extra.push(Box::new(scanners::urls::Urls::new()));
    }
    Ok(engine.with_scanners(extra))
}
