//! `moat scan`: the firewall's engine and the configured policy over stdin,
//! for CI pipelines and for tuning policy. JSON input is walked string by
//! string (findings name their JSON pointer); anything else is scanned as
//! text. Matched text is never printed: only where, what and which action.

use crate::cli::FoundSomething;
use crate::config::{self, Overrides};
use anyhow::{Context, bail};
use moat_firewall::{Direction, Policy};
use serde_json::{Value, json};
use std::io::Read as _;

/// Largest input read from stdin.
const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Runs the scan; `Err(FoundSomething)` (exit 3) when anything was found.
pub fn scan_command(flags: Overrides, direction: &str, format: &str) -> anyhow::Result<()> {
    let direction: Direction = serde_json::from_value(Value::String(direction.to_owned()))
        .with_context(|| format!("`{direction}` is not a direction (request, response, description)"))?;
    // A config is optional for scanning; its firewall policy is used when present.
    let policy = match config::load(&flags, &|k| std::env::var(k).ok()) {
        Ok(c) => c.firewall_policy,
        Err(e) if flags.config.is_some() => return Err(e.into()),
        Err(e) => {
            eprintln!("moat scan: using the default policy ({e})");
            Policy::default()
        }
    };
    let mut input = Vec::new();
    std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut input).context("reading stdin")?;
    if input.len() as u64 > MAX_INPUT {
        bail!("stdin is larger than {MAX_INPUT} bytes");
    }
    let engine = moat_firewall::standard_engine(&moat_firewall::EngineConfig::default())
        .context("compiling the firewall rules")?;
    let rows: Vec<(Option<String>, moat_firewall::Finding)> = match serde_json::from_slice::<Value>(&input) {
        Ok(value) => engine.scan_json(&value, direction).into_iter().map(|j| (Some(j.pointer), j.finding)).collect(),
        Err(_) => {
            let text = String::from_utf8_lossy(&input);
            engine.scan_str(&text, direction).into_iter().map(|f| (None, f)).collect()
        }
    };
    let findings: Vec<_> = rows.iter().map(|(_, f)| f.clone()).collect();
    let decision = policy.decide(&findings, direction);
    let action_of = |i: usize| decision.actions.get(i).copied().unwrap_or(moat_firewall::Action::Allow);
    if format == "json" {
        let list: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, (pointer, f))| {
                json!({
                    "category": f.category, "rule": f.rule, "confidence": f.confidence,
                    "pointer": pointer, "start": f.span.start, "end": f.span.end, "action": action_of(i),
                })
            })
            .collect();
        let out = json!({
            "direction": direction, "mode": policy.mode, "action": decision.action, "findings": list,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for (i, (pointer, f)) in rows.iter().enumerate() {
            let at = match pointer {
                Some(p) if p.is_empty() => format!("(root) {}..{}", f.span.start, f.span.end),
                Some(p) => format!("{p} {}..{}", f.span.start, f.span.end),
                None => format!("{}..{}", f.span.start, f.span.end),
            };
            println!(
                "{:<12} {:<32} {:<7} {:<8} {at}",
                f.category.as_str(),
                f.rule,
                format!("{:?}", f.confidence).to_lowercase(),
                action_of(i).as_str()
            );
        }
        let summary = if rows.is_empty() { "clean".to_owned() } else { format!("{} finding(s)", rows.len()) };
        eprintln!("moat scan: {summary}; decision: {} ({} mode)", decision.action, policy.mode.as_str());
    }
    if rows.is_empty() { Ok(()) } else { Err(FoundSomething.into()) }
}
