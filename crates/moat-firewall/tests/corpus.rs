//! Detection quality of `standard_engine` on the labelled corpus in
//! `corpus/corpus.jsonl` (built by `corpus/build.py`; provenance and licences
//! in `corpus/README.md`).
//!
//! Every sample is an MCP message scanned with [`Engine::scan_json`] in its
//! direction. A finding counts when its confidence is at least Medium: Low
//! findings are "worth logging" by design (quoted examples in prose, `../`
//! in a path argument), so they count neither as detections nor as false
//! positives; the Low-inclusive false-positive counts are printed alongside.
//!
//! A positive sample is detected when a counted finding of its class appears
//! anywhere in the message. A benign sample is a false positive for a class
//! when a counted finding of that class appears. Precision is
//! TP / (TP + FP) over the positives of the class and all benign samples; it
//! depends on the corpus mix, so the false-positive rate over benign samples
//! is reported too. Intervals are 95% Wilson score intervals.
//!
//! Base64-encoded positives (mutations `base64`, `base64-wrapped`,
//! `base64url`), which the engine decodes, are left out of the per-class
//! rows and reported in their own table, with the benign base64 sets
//! (`base64`: random blobs; `base64-text`: base64 of benign text).
//!
//! Run with `cargo test -p moat-firewall --test corpus -- --nocapture` to see
//! the tables; the test fails when a figure drops below its floor.

#![allow(clippy::expect_used)]

use moat_firewall::{Category, Confidence, Direction, Engine, EngineConfig, JsonFinding, standard_engine};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Rules of the hidden-text scanner (category injection).
const HIDDEN_RULES: &[&str] =
    &["unicode-tag-smuggling", "bidi-control", "zero-width-run", "variation-selector-run", "confusable-mixed-script"];

/// Injection sets built from attack templates (the "templated attacks").
const TEMPLATED_SETS: &[&str] =
    &["templated-own", "garak-promptinject", "garak-latentinjection", "garak-sysprompt", "spikee"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Secret,
    Pii,
    PiiChecksummed,
    Injection,
    HiddenUnicode,
    Destructive,
    Url,
    Exfiltration,
    ToolAbuse,
}

impl Class {
    const ALL: [Class; 9] = [
        Class::Secret,
        Class::Pii,
        Class::PiiChecksummed,
        Class::Injection,
        Class::HiddenUnicode,
        Class::Destructive,
        Class::Url,
        Class::Exfiltration,
        Class::ToolAbuse,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Secret => "secret",
            Class::Pii => "pii",
            Class::PiiChecksummed => "pii (card, iban)",
            Class::Injection => "injection",
            Class::HiddenUnicode => "hidden unicode",
            Class::Destructive => "destructive",
            Class::Url => "url",
            Class::Exfiltration => "exfiltration",
            Class::ToolAbuse => "tool_abuse",
        }
    }

    /// Whether `f` is a finding of this class (at any confidence).
    fn matches(self, f: &JsonFinding) -> bool {
        let rule = f.finding.rule.as_ref();
        match self {
            Class::Secret => f.finding.category == Category::Secret,
            Class::Pii => f.finding.category == Category::Pii,
            Class::PiiChecksummed => f.finding.category == Category::Pii && (rule == "credit-card" || rule == "iban"),
            Class::Injection => f.finding.category == Category::Injection,
            Class::HiddenUnicode => f.finding.category == Category::Injection && HIDDEN_RULES.contains(&rule),
            Class::Destructive => f.finding.category == Category::Destructive,
            Class::Url => f.finding.category == Category::Url,
            Class::Exfiltration => f.finding.category == Category::Exfiltration,
            Class::ToolAbuse => f.finding.category == Category::ToolAbuse,
        }
    }

    /// The classes a positive sample belongs to.
    fn of(sample: &Sample) -> Vec<Class> {
        match sample.label.as_str() {
            "secret" => vec![Class::Secret],
            "pii" if sample.set == "checksummed" => vec![Class::Pii, Class::PiiChecksummed],
            "pii" => vec![Class::Pii],
            "injection" => vec![Class::Injection],
            "hidden_unicode" => vec![Class::HiddenUnicode],
            "destructive" => vec![Class::Destructive],
            "url" => vec![Class::Url],
            "exfiltration" => vec![Class::Exfiltration],
            "tool_abuse" => vec![Class::ToolAbuse],
            _ => vec![],
        }
    }
}

struct Sample {
    id: String,
    label: String,
    rules: Vec<String>,
    set: String,
    mutation: String,
    direction: Direction,
    payload: Value,
}

impl Sample {
    /// Whether the payload is base64-encoded (mutations `base64`,
    /// `base64-wrapped`, `base64url`).
    fn is_base64(&self) -> bool {
        self.mutation.starts_with("base64")
    }
}

fn load() -> Vec<Sample> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/corpus.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("corpus line is JSON");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let direction = match v["direction"].as_str() {
                Some("request") => Direction::Request,
                Some("response") => Direction::Response,
                Some("description") => Direction::Description,
                other => panic!("{}: bad direction {other:?}", s("id")),
            };
            Sample {
                id: s("id"),
                label: s("label"),
                rules: v["rules"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
                set: s("set"),
                mutation: s("mutation"),
                direction,
                payload: v["payload"].clone(),
            }
        })
        .collect()
}

/// 95% Wilson score interval for `k` successes out of `n`.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n, z) = (k as f64, n as f64, 1.959_964);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn pct(k: usize, n: usize) -> String {
    if n == 0 {
        return "—".into();
    }
    let (lo, hi) = wilson(k, n);
    format!("{:.1}% [{:.1}–{:.1}]", 100.0 * k as f64 / n as f64, 100.0 * lo, 100.0 * hi)
}

fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 { 1.0 } else { k as f64 / n as f64 }
}

struct Scanned {
    sample: Sample,
    findings: Vec<JsonFinding>,
}

impl Scanned {
    fn hit(&self, class: Class) -> bool {
        self.findings.iter().any(|f| f.finding.confidence >= Confidence::Medium && class.matches(f))
    }

    fn hit_any(&self, class: Class) -> bool {
        self.findings.iter().any(|f| class.matches(f))
    }

    /// The injection scanner's own rules (not the hidden-text rules) fired.
    fn semantic_injection(&self) -> bool {
        self.findings.iter().any(|f| {
            f.finding.confidence >= Confidence::Medium
                && f.finding.category == Category::Injection
                && !HIDDEN_RULES.contains(&f.finding.rule.as_ref())
        })
    }

    fn describe(&self, class: Class) -> String {
        let hits: Vec<String> = self
            .findings
            .iter()
            .filter(|f| class.matches(f))
            .map(|f| format!("{}:{:?}@{}", f.finding.rule, f.finding.confidence, f.pointer))
            .collect();
        format!("{} [{}]", self.sample.id, hits.join(", "))
    }
}

#[derive(Default)]
struct Tally {
    pos: usize,
    tp: usize,
}

impl Tally {
    fn add(&mut self, hit: bool) {
        self.pos += 1;
        self.tp += usize::from(hit);
    }
}

struct Row {
    class: Class,
    recall: Tally,
    benign: usize,
    fp: usize,
    fp_low: usize,
}

impl Row {
    fn precision(&self) -> f64 {
        ratio(self.recall.tp, self.recall.tp + self.fp)
    }
}

/// The quality floors. Targets from the issue: secrets and checksummed PII
/// recall ≥ 98% at precision ≥ 99%; injection recall ≥ 95% on templated
/// attacks at ≤ 0.5% false positives on benign tool output; hidden Unicode
/// 100% with zero false positives on emoji. The other floors sit just below
/// the figures measured on 2026-11-23. Base64-smuggled injections and
/// secrets (the `base64` mutation, decoded by the engine) have their own
/// recall floor, and benign base64 (random blobs and base64 of benign text)
/// its own false-positive ceiling.
struct Floors;

impl Floors {
    const SECRET_RECALL: f64 = 0.98;
    const SECRET_PRECISION: f64 = 0.99;
    const PII_CHECKSUMMED_RECALL: f64 = 0.98;
    const PII_CHECKSUMMED_PRECISION: f64 = 0.99;
    const PII_RECALL: f64 = 0.95;
    const INJECTION_TEMPLATED_RECALL: f64 = 0.95;
    const INJECTION_FP_TOOL_OUTPUT: f64 = 0.005;
    const HIDDEN_RECALL: f64 = 1.0;
    const DESTRUCTIVE_RECALL: f64 = 0.95;
    const URL_RECALL: f64 = 0.95;
    const EXFIL_RECALL: f64 = 0.95;
    const ABUSE_RECALL: f64 = 0.95;
    /// False-positive rate over all benign samples, for every class.
    const FP_RATE: f64 = 0.01;
    /// Recall on base64-wrapped injections and secrets, each.
    /// Per base64 mutation (`base64`, `base64-wrapped`, `base64url`) and
    /// over all of them.
    const BASE64_RECALL: f64 = 0.95;
    /// Rate of benign base64 samples (sets `base64`, `base64-text`) with a
    /// counted finding of any class.
    const BASE64_FP_RATE: f64 = 0.01;
}

/// Benign sets made of base64: random blobs, and base64 of benign text.
const BENIGN_BASE64_SETS: &[&str] = &["base64", "base64-text"];

/// Writes every sample's findings as JSON lines (`MOAT_CORPUS_DUMP=path`), to
/// study misses and false positives without a debugger.
fn dump(scanned: &[Scanned], path: &Path) {
    let mut out = String::new();
    for s in scanned {
        let findings: Vec<Value> = s
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "rule": f.finding.rule,
                    "category": f.finding.category,
                    "confidence": f.finding.confidence,
                    "pointer": f.pointer,
                })
            })
            .collect();
        let line = serde_json::json!({"id": s.sample.id, "label": s.sample.label, "findings": findings});
        let _ = writeln!(out, "{line}");
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn engine() -> Engine {
    standard_engine(&EngineConfig::default()).expect("standard engine compiles")
}

#[test]
fn corpus_detection_quality() {
    let engine = engine();
    let scanned: Vec<Scanned> = load()
        .into_iter()
        .map(|sample| {
            let findings = engine.scan_json(&sample.payload, sample.direction);
            Scanned { sample, findings }
        })
        .collect();
    if let Ok(path) = std::env::var("MOAT_CORPUS_DUMP") {
        dump(&scanned, Path::new(&path));
    }
    let benign: Vec<&Scanned> = scanned.iter().filter(|s| s.sample.label == "benign").collect();
    let benign_tool_output: Vec<&Scanned> =
        benign.iter().copied().filter(|s| s.sample.direction == Direction::Response).collect();
    let emoji: Vec<&Scanned> = benign.iter().copied().filter(|s| s.sample.set == "emoji").collect();
    let mut report = String::new();
    let mut failures: Vec<String> = Vec::new();

    // --- Per class (base64-encoded payloads are reported separately) -------
    let mut rows: Vec<Row> = Vec::new();
    let mut missed: BTreeMap<Class, Vec<String>> = BTreeMap::new();
    let mut false_pos: BTreeMap<Class, Vec<String>> = BTreeMap::new();
    for class in Class::ALL {
        let mut row = Row { class, recall: Tally::default(), benign: benign.len(), fp: 0, fp_low: 0 };
        for s in scanned.iter().filter(|s| !s.sample.is_base64() && Class::of(&s.sample).contains(&class)) {
            let hit = s.hit(class);
            row.recall.add(hit);
            if !hit {
                missed.entry(class).or_default().push(s.describe(class));
            }
        }
        for s in &benign {
            if s.hit(class) {
                row.fp += 1;
                false_pos.entry(class).or_default().push(s.describe(class));
            }
            row.fp_low += usize::from(s.hit_any(class));
        }
        rows.push(row);
    }
    let _ = writeln!(report, "\n## Per class ({} samples, {} benign)\n", scanned.len(), benign.len());
    let _ = writeln!(report, "| class | positives | recall | FP / benign | FP rate | FP incl. Low | precision |");
    let _ = writeln!(report, "| --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} / {} | {} | {} | {} |",
            r.class.name(),
            r.recall.pos,
            pct(r.recall.tp, r.recall.pos),
            r.fp,
            r.benign,
            pct(r.fp, r.benign),
            r.fp_low,
            pct(r.recall.tp, r.recall.tp + r.fp),
        );
    }

    // --- Injection by source ---------------------------------------------------
    let injection: Vec<&Scanned> = scanned.iter().filter(|s| s.sample.label == "injection").collect();
    let mut by_set: BTreeMap<&str, (Tally, Tally)> = BTreeMap::new();
    for s in &injection {
        let e = by_set.entry(s.sample.set.as_str()).or_default();
        e.0.add(s.hit(Class::Injection));
        e.1.add(s.semantic_injection());
    }
    let mut templated = Tally::default();
    for s in injection.iter().filter(|s| TEMPLATED_SETS.contains(&s.sample.set.as_str())) {
        templated.add(s.hit(Class::Injection));
    }
    let fp_tool_output = benign_tool_output.iter().filter(|s| s.hit(Class::Injection)).count();
    let _ = writeln!(report, "\n## Injection by source\n");
    let _ = writeln!(report, "| set | samples | recall (any injection rule) | recall (injection-scanner rules) |");
    let _ = writeln!(report, "| --- | --- | --- | --- |");
    for (set, (any, semantic)) in &by_set {
        let _ =
            writeln!(report, "| {set} | {} | {} | {} |", any.pos, pct(any.tp, any.pos), pct(semantic.tp, semantic.pos));
    }
    let _ = writeln!(
        report,
        "| **templated** ({}) | {} | {} | |",
        TEMPLATED_SETS.join(", "),
        templated.pos,
        pct(templated.tp, templated.pos)
    );
    let _ = writeln!(
        report,
        "\nInjection false positives on benign tool output (response direction): {} / {} = {}",
        fp_tool_output,
        benign_tool_output.len(),
        pct(fp_tool_output, benign_tool_output.len())
    );

    // --- Per mutation ------------------------------------------------------------
    let mut by_mutation: BTreeMap<(String, String), (Tally, Tally)> = BTreeMap::new();
    for s in scanned.iter().filter(|s| s.sample.label != "benign") {
        let classes = Class::of(&s.sample);
        let Some(&class) = classes.first() else { continue };
        let e = by_mutation.entry((s.sample.label.clone(), s.sample.mutation.clone())).or_default();
        e.0.add(s.hit(class));
        e.1.add(class == Class::Injection && s.semantic_injection());
    }
    let _ = writeln!(report, "\n## Per mutation\n");
    let _ = writeln!(report, "| label | mutation | samples | recall | injection-scanner rules |");
    let _ = writeln!(report, "| --- | --- | --- | --- | --- |");
    for ((label, mutation), (any, semantic)) in &by_mutation {
        let sem = if label == "injection" { pct(semantic.tp, semantic.pos) } else { String::new() };
        let _ = writeln!(report, "| {label} | {mutation} | {} | {} | {sem} |", any.pos, pct(any.tp, any.pos));
    }

    // --- Base64-smuggled payloads ------------------------------------------------
    // Per class and mutation, and per class over every base64 mutation.
    let mut base64_recall: BTreeMap<(Class, &str), Tally> = BTreeMap::new();
    let mut base64_rules: BTreeMap<(Class, &str), Tally> = BTreeMap::new();
    for s in scanned.iter().filter(|s| s.sample.is_base64()) {
        if let Some(&class) = Class::of(&s.sample).first() {
            for key in [(class, s.sample.mutation.as_str()), (class, "all")] {
                base64_recall.entry(key).or_default().add(s.hit(class));
                for rule in &s.sample.rules {
                    let fired = s
                        .findings
                        .iter()
                        .any(|f| f.finding.confidence >= Confidence::Medium && f.finding.rule == *rule);
                    base64_rules.entry(key).or_default().add(fired);
                }
            }
        }
    }
    let benign_base64: Vec<&Scanned> =
        benign.iter().copied().filter(|s| BENIGN_BASE64_SETS.contains(&s.sample.set.as_str())).collect();
    let base64_fp: Vec<String> = benign_base64
        .iter()
        .filter(|s| Class::ALL.iter().any(|&c| s.hit(c)))
        .map(|s| s.describe(Class::Injection))
        .collect();
    let base64_fp_low = benign_base64.iter().filter(|s| !s.findings.is_empty()).count();
    let _ = writeln!(report, "\n## Base64-smuggled payloads\n");
    let _ = writeln!(report, "| class | mutation | samples | recall | expected rule fired |");
    let _ = writeln!(report, "| --- | --- | --- | --- | --- |");
    for ((class, mutation), t) in &base64_recall {
        let r = base64_rules.get(&(*class, *mutation)).map_or((0, 0), |r| (r.tp, r.pos));
        let _ = writeln!(
            report,
            "| {} | {mutation} | {} | {} | {} / {} |",
            class.name(),
            t.pos,
            pct(t.tp, t.pos),
            r.0,
            r.1
        );
    }
    for set in BENIGN_BASE64_SETS {
        let in_set: Vec<&&Scanned> = benign_base64.iter().filter(|s| s.sample.set == *set).collect();
        let fp = in_set.iter().filter(|s| Class::ALL.iter().any(|&c| s.hit(c))).count();
        let low = in_set.iter().filter(|s| !s.findings.is_empty()).count();
        let _ = writeln!(
            report,
            "\nBenign `{set}` samples with a finding (any class): {fp} / {} = {} (incl. Low: {low})",
            in_set.len(),
            pct(fp, in_set.len())
        );
    }

    // --- Hidden unicode on emoji -----------------------------------------------
    let emoji_fp: Vec<String> =
        emoji.iter().filter(|s| s.hit_any(Class::HiddenUnicode)).map(|s| s.describe(Class::HiddenUnicode)).collect();
    let _ = writeln!(
        report,
        "\nHidden-text findings (any confidence) on {} emoji samples: {}",
        emoji.len(),
        emoji_fp.len()
    );

    // --- Expected rules ----------------------------------------------------------
    let mut by_rule: BTreeMap<&str, Tally> = BTreeMap::new();
    for s in scanned.iter().filter(|s| !s.sample.is_base64()) {
        for rule in &s.sample.rules {
            let fired =
                s.findings.iter().any(|f| f.finding.confidence >= Confidence::Medium && f.finding.rule == *rule);
            by_rule.entry(rule.as_str()).or_default().add(fired);
        }
    }
    let exact: (usize, usize) = by_rule.values().fold((0, 0), |a, t| (a.0 + t.tp, a.1 + t.pos));
    let _ = writeln!(
        report,
        "\nExpected rule fired: {} / {} = {} over {} rules; rules below 100%:",
        exact.0,
        exact.1,
        pct(exact.0, exact.1),
        by_rule.len()
    );
    for (rule, t) in by_rule.iter().filter(|(_, t)| t.tp < t.pos) {
        let _ = writeln!(report, "- {rule}: {} / {}", t.tp, t.pos);
    }

    // --- Misses and false positives ------------------------------------------------
    for (class, list) in &missed {
        let _ = writeln!(
            report,
            "\nmissed {} ({}): {}",
            class.name(),
            list.len(),
            list.iter().take(12).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    for (class, list) in &false_pos {
        let _ = writeln!(
            report,
            "\nfalse positives {} ({}): {}",
            class.name(),
            list.len(),
            list.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    println!("{report}");

    // --- Floors -------------------------------------------------------------------------
    let row = |c: Class| rows.iter().find(|r| r.class == c).expect("row");
    let mut floor = |what: &str, got: f64, min: f64| {
        if got + 1e-12 < min {
            failures.push(format!("{what}: {:.4} < floor {min}", got));
        }
    };
    floor("secret recall", ratio(row(Class::Secret).recall.tp, row(Class::Secret).recall.pos), Floors::SECRET_RECALL);
    floor("secret precision", row(Class::Secret).precision(), Floors::SECRET_PRECISION);
    let pc = row(Class::PiiChecksummed);
    floor("checksummed PII recall", ratio(pc.recall.tp, pc.recall.pos), Floors::PII_CHECKSUMMED_RECALL);
    floor("checksummed PII precision", pc.precision(), Floors::PII_CHECKSUMMED_PRECISION);
    floor("pii recall", ratio(row(Class::Pii).recall.tp, row(Class::Pii).recall.pos), Floors::PII_RECALL);
    floor(
        "injection recall on templated attacks",
        ratio(templated.tp, templated.pos),
        Floors::INJECTION_TEMPLATED_RECALL,
    );
    floor(
        "1 - injection FP rate on benign tool output",
        1.0 - ratio(fp_tool_output, benign_tool_output.len()),
        1.0 - Floors::INJECTION_FP_TOOL_OUTPUT,
    );
    let h = row(Class::HiddenUnicode);
    floor("hidden unicode recall", ratio(h.recall.tp, h.recall.pos), Floors::HIDDEN_RECALL);
    floor("hidden unicode: no finding on emoji", if emoji_fp.is_empty() { 1.0 } else { 0.0 }, 1.0);
    floor(
        "destructive recall",
        ratio(row(Class::Destructive).recall.tp, row(Class::Destructive).recall.pos),
        Floors::DESTRUCTIVE_RECALL,
    );
    floor("url recall", ratio(row(Class::Url).recall.tp, row(Class::Url).recall.pos), Floors::URL_RECALL);
    floor(
        "exfiltration recall",
        ratio(row(Class::Exfiltration).recall.tp, row(Class::Exfiltration).recall.pos),
        Floors::EXFIL_RECALL,
    );
    floor(
        "tool_abuse recall",
        ratio(row(Class::ToolAbuse).recall.tp, row(Class::ToolAbuse).recall.pos),
        Floors::ABUSE_RECALL,
    );
    for r in &rows {
        floor(&format!("1 - {} FP rate", r.class.name()), 1.0 - ratio(r.fp, r.benign), 1.0 - Floors::FP_RATE);
    }
    for (&(class, mutation), t) in &base64_recall {
        floor(&format!("{mutation} {} recall", class.name()), ratio(t.tp, t.pos), Floors::BASE64_RECALL);
    }
    for class in [Class::Injection, Class::Secret] {
        floor(
            &format!("{} has base64 samples", class.name()),
            if base64_recall.contains_key(&(class, "all")) { 1.0 } else { 0.0 },
            1.0,
        );
    }
    floor(
        "1 - FP rate on benign base64",
        1.0 - ratio(base64_fp.len(), benign_base64.len()),
        1.0 - Floors::BASE64_FP_RATE,
    );
    if !base64_fp.is_empty() {
        println!(
            "false positives on benign base64 ({}, incl. Low {base64_fp_low}): {}",
            base64_fp.len(),
            base64_fp.join("; ")
        );
    }
    assert!(failures.is_empty(), "below the floors:\n{}", failures.join("\n"));
}
