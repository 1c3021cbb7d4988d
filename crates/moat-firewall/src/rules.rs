//! Declarative rule tables and the compiler that turns them into one
//! multi-pattern matcher.
//!
//! A [`Rule`] is data: an id, a category, an ASCII regular expression, an
//! optional list of lowercase keywords, a confidence, the capture group that
//! is the sensitive span, an optional validator (Luhn, mod-97, entropy…) and
//! the directions it applies to, plus an optional context check that looks at
//! the text around a match and the direction (a command quoted in prose, a
//! pagination token named like a credential). [`RuleSet::compile`] builds,
//! once:
//!
//! * the keyword table; an [`Engine`](crate::Engine) folds it into its one
//!   shared Aho-Corasick pass (ASCII case-insensitive) with the literals of
//!   its other scanners, and [`RuleSet::scan`] on its own builds an automaton
//!   over it on first use;
//! * one [`RegexSet`] per direction over the rules *without* keywords that
//!   apply in that direction, run over the whole text;
//! * a [`RegexSet`] over the keyword-gated rules, run only inside windows
//!   around keyword hits;
//! * one [`Regex`] per rule, used to extract spans for the rules that fired,
//!   compiled on first use (most rules never fire; see `lazy.rs`). The
//!   patterns of the built-in tables are parsed here, not compiled: a syntax
//!   error or a missing capture group still fails the compile.
//!
//! Every pattern is compiled in ASCII mode (`unicode(false)`): `\w`, `\s`, `\d`
//! and `(?i)` are ASCII-only, which keeps the automata small and fast.
//!
//! # Linearity
//!
//! Keyword windows are sorted and merged, so they are disjoint and their total
//! length is at most the text length; the set pass is therefore linear. Each
//! rule extracts at most [`RuleSetOptions::max_matches_per_rule`] matches per
//! scanned string, which bounds the one place (repeated leftmost-first
//! searches) where a regex iterator can go superlinear.

use crate::error::FirewallError;
use crate::finding::{Category, Confidence, Direction, Finding, Scanner};
use crate::lazy::LazyRegex;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

/// A validator sees the bytes of the reported span and says whether it is a
/// real match (checksum, entropy, placeholder exclusion…).
pub type Validator = fn(&[u8]) -> bool;

/// A context check sees the whole scanned text, the span of the whole match
/// (group 0), the rule's confidence and the direction, and returns the
/// confidence to report, or `None` to drop the match. It must only look a
/// bounded distance around the match (the scan stays linear).
pub type ContextCheck =
    fn(text: &[u8], matched: Range<usize>, confidence: Confidence, direction: Direction) -> Option<Confidence>;

/// The set of directions a rule applies to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Directions(u8);

impl Directions {
    /// Client to upstream only (tool arguments).
    pub const REQUEST: Directions = Directions(1);
    /// Upstream to client only (results, errors).
    pub const RESPONSE: Directions = Directions(2);
    /// Upstream metadata only (tool, prompt and resource descriptions).
    pub const DESCRIPTION: Directions = Directions(4);
    /// Every direction.
    pub const ALL: Directions = Directions(7);

    const fn bit(direction: Direction) -> u8 {
        match direction {
            Direction::Request => 1,
            Direction::Response => 2,
            Direction::Description => 4,
        }
    }

    /// Both sets together.
    pub const fn union(self, other: Directions) -> Directions {
        Directions(self.0 | other.0)
    }

    /// Whether `direction` is in the set.
    pub const fn contains(self, direction: Direction) -> bool {
        self.0 & Self::bit(direction) != 0
    }
}

impl fmt::Debug for Directions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_set();
        for d in [Direction::Request, Direction::Response, Direction::Description] {
            if self.contains(d) {
                list.entry(&d);
            }
        }
        list.finish()
    }
}

/// One declarative rule. Build with [`Rule::new`] and the `const` builder
/// methods so that tables are `static` data.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Stable kebab-case id (policies name it), e.g. `aws-access-token`.
    pub id: &'static str,
    /// The category reported.
    pub category: Category,
    /// Lowercase keywords; the rule only runs near one of them. Empty: the
    /// rule runs over the whole text.
    pub keywords: &'static [&'static str],
    /// The regular expression (ASCII mode: no Unicode classes).
    pub pattern: &'static str,
    /// How sure a match is.
    pub confidence: Confidence,
    /// The capture group whose span is reported (0: the whole match).
    pub secret_group: usize,
    /// An optional check of the reported bytes.
    pub validator: Option<Validator>,
    /// Where the rule applies.
    pub directions: Directions,
    /// Bytes after a keyword hit to search (0: the rule set's default window).
    pub window: usize,
    /// A catch-all rule: its finding is dropped when a non-generic rule of the
    /// same category reports an overlapping span.
    pub generic: bool,
    /// An optional check of the match in its surroundings.
    pub context: Option<ContextCheck>,
}

impl Rule {
    /// A rule with no keywords, medium confidence, the whole match as span,
    /// no validator, applying in every direction.
    pub const fn new(id: &'static str, category: Category, pattern: &'static str) -> Rule {
        Rule {
            id,
            category,
            keywords: &[],
            pattern,
            confidence: Confidence::Medium,
            secret_group: 0,
            validator: None,
            directions: Directions::ALL,
            window: 0,
            generic: false,
            context: None,
        }
    }

    /// Sets the keywords (lowercase).
    pub const fn keywords(mut self, keywords: &'static [&'static str]) -> Rule {
        self.keywords = keywords;
        self
    }

    /// Sets the confidence.
    pub const fn confidence(mut self, confidence: Confidence) -> Rule {
        self.confidence = confidence;
        self
    }

    /// Shorthand for high confidence.
    pub const fn high(self) -> Rule {
        self.confidence(Confidence::High)
    }

    /// Shorthand for low confidence.
    pub const fn low(self) -> Rule {
        self.confidence(Confidence::Low)
    }

    /// Sets the capture group reported as the span.
    pub const fn group(mut self, group: usize) -> Rule {
        self.secret_group = group;
        self
    }

    /// Sets the validator.
    pub const fn validator(mut self, validator: Validator) -> Rule {
        self.validator = Some(validator);
        self
    }

    /// Sets the directions.
    pub const fn directions(mut self, directions: Directions) -> Rule {
        self.directions = directions;
        self
    }

    /// Sets how far after a keyword hit the rule may match.
    pub const fn window(mut self, window: usize) -> Rule {
        self.window = window;
        self
    }

    /// Marks the rule as a catch-all (see [`Rule::generic`](Rule#structfield.generic)).
    pub const fn generic(mut self) -> Rule {
        self.generic = true;
        self
    }

    /// Sets the context check.
    pub const fn context(mut self, check: ContextCheck) -> Rule {
        self.context = Some(check);
        self
    }
}

/// A pattern added at run time, e.g. a tenant's employee-id format.
///
/// Custom patterns have no keywords (they run over the whole text), medium
/// confidence, apply in every direction, and are compiled in ASCII mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomPattern {
    /// Rule id: 1–64 characters of `[a-z0-9._-]`.
    pub id: String,
    /// The category reported (usually [`Category::Pii`]).
    pub category: Category,
    /// The regular expression.
    pub pattern: String,
}

/// Limits on tenant patterns.
pub mod limits {
    /// Most custom patterns per rule set.
    pub const MAX_CUSTOM_PATTERNS: usize = 256;
    /// Longest custom pattern source, in bytes.
    pub const MAX_CUSTOM_PATTERN_LEN: usize = 1024;
    /// Largest compiled program for one custom pattern, in bytes.
    pub const MAX_CUSTOM_COMPILED_SIZE: usize = 256 * 1024;
}

/// Tuning knobs of a [`RuleSet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSetOptions {
    /// Bytes searched on each side of a keyword hit.
    pub window: usize,
    /// Most matches extracted per rule per scanned string.
    pub max_matches_per_rule: usize,
}

impl Default for RuleSetOptions {
    fn default() -> Self {
        RuleSetOptions { window: 256, max_matches_per_rule: 256 }
    }
}

/// When a window triggers at most this many rules, their regexes run
/// directly; above it, the gated [`RegexSet`] filters them first.
const DIRECT_RULES: usize = 4;
const SIZE_LIMIT: usize = 64 << 20;
const DFA_SIZE_LIMIT: usize = 8 << 20;

struct CompiledRule {
    id: Cow<'static, str>,
    category: Category,
    confidence: Confidence,
    group: usize,
    validator: Option<Validator>,
    directions: Directions,
    generic: bool,
    context: Option<ContextCheck>,
    regex: LazyRegex,
}

struct Keyword {
    /// The keyword (lowercase; matched ASCII case-insensitively).
    name: &'static str,
    rules: Vec<u32>,
    after: usize,
    /// Union of the directions of its rules.
    directions: Directions,
}

/// An occurrence of keyword `keyword` (an index into the rule set's keyword
/// table, see [`RuleSet::keyword_literals`]) at `start..end` of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeywordHit {
    pub(crate) keyword: u32,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A compiled rule table. Cheap to share (`Send + Sync`); scanning allocates
/// only small per-call buffers.
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    keywords: Vec<Keyword>,
    /// The automaton over every keyword, for [`RuleSet::scan`] on its own;
    /// built on first use (an [`Engine`](crate::Engine) runs its own shared
    /// pass instead, and never builds this one).
    index: OnceLock<Option<AhoCorasick>>,
    /// Indexed by `dir_index`.
    global: [Option<(RegexSet, Vec<u32>)>; 3],
    gated: Option<(RegexSet, Vec<u32>)>,
    options: RuleSetOptions,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.rules.len()).field("options", &self.options).finish()
    }
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
        Direction::Description => 2,
    }
}

fn regex_builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    b.unicode(false).size_limit(SIZE_LIMIT).dfa_size_limit(DFA_SIZE_LIMIT);
    b
}

/// Compiles the regex of a built-in rule (on its first use).
fn build_rule_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex_builder(pattern).build()
}

/// Checks a built-in rule's pattern without compiling it: it must parse as
/// [`regex_builder`] parses it (ASCII mode, bytes) and have the capture
/// group the rule reports.
fn check_builtin(rule: &Rule) -> Result<(), FirewallError> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(rule.pattern)
        .map_err(|_| FirewallError::BuiltinRule { id: rule.id, reason: "syntax error" })?;
    // Group 0, the whole match, plus the explicit groups.
    let captures_len = hir.properties().explicit_captures_len() + 1;
    if rule.secret_group >= captures_len {
        return Err(FirewallError::BuiltinRule { id: rule.id, reason: "no such capture group" });
    }
    Ok(())
}

fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn compile_custom(c: &CustomPattern) -> Result<Regex, FirewallError> {
    let refuse = |reason: &'static str| FirewallError::CustomPattern { id: c.id.clone(), reason };
    if !valid_custom_id(&c.id) {
        return Err(refuse("the id must be 1 to 64 characters of [a-z0-9._-]"));
    }
    if c.pattern.len() > limits::MAX_CUSTOM_PATTERN_LEN {
        return Err(refuse("the pattern is longer than 1024 bytes"));
    }
    let regex = RegexBuilder::new(&c.pattern)
        .unicode(false)
        .size_limit(limits::MAX_CUSTOM_COMPILED_SIZE)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => refuse("the compiled pattern exceeds the size limit"),
            _ => refuse("the pattern is not a valid ASCII-mode regular expression"),
        })?;
    if regex.is_match(b"") {
        return Err(refuse("the pattern matches the empty string"));
    }
    Ok(regex)
}

struct Hit {
    rule: u32,
    start: usize,
    end: usize,
    confidence: Confidence,
}

impl RuleSet {
    /// Compiles `rules` plus tenant `custom` patterns.
    ///
    /// # Errors
    /// [`FirewallError::BuiltinRule`] if a table rule does not compile,
    /// [`FirewallError::CustomPattern`] / [`FirewallError::TooManyCustomPatterns`]
    /// for refused tenant patterns, [`FirewallError::RuleSetTooLarge`] if the
    /// combined automaton exceeds its size limit.
    pub fn compile<'a>(
        rules: impl IntoIterator<Item = &'a Rule>,
        custom: &[CustomPattern],
        options: RuleSetOptions,
    ) -> Result<RuleSet, FirewallError> {
        if custom.len() > limits::MAX_CUSTOM_PATTERNS {
            return Err(FirewallError::TooManyCustomPatterns {
                count: custom.len(),
                limit: limits::MAX_CUSTOM_PATTERNS,
            });
        }
        let mut compiled = Vec::new();
        let mut global_patterns: Vec<(Cow<'_, str>, Directions)> = Vec::new();
        let mut global_map = Vec::new();
        let mut gated_patterns: Vec<&str> = Vec::new();
        let mut gated_map = Vec::new();
        let mut keywords: Vec<Keyword> = Vec::new();

        for rule in rules {
            check_builtin(rule)?;
            let regex = LazyRegex::new(rule.pattern, build_rule_regex);
            let index = u32::try_from(compiled.len()).map_err(|_| FirewallError::RuleSetTooLarge)?;
            compiled.push(CompiledRule {
                id: Cow::Borrowed(rule.id),
                category: rule.category,
                confidence: rule.confidence,
                group: rule.secret_group,
                validator: rule.validator,
                directions: rule.directions,
                generic: rule.generic,
                context: rule.context,
                regex,
            });
            if rule.keywords.is_empty() {
                global_patterns.push((Cow::Borrowed(rule.pattern), rule.directions));
                global_map.push(index);
                continue;
            }
            gated_patterns.push(rule.pattern);
            gated_map.push(index);
            let after = if rule.window == 0 { options.window } else { rule.window };
            for kw in rule.keywords {
                let lower = kw.to_ascii_lowercase();
                let k = match keywords.iter().position(|n| n.name.eq_ignore_ascii_case(&lower)) {
                    Some(k) => k,
                    None => {
                        keywords.push(Keyword { name: kw, rules: Vec::new(), after: 0, directions: Directions(0) });
                        keywords.len() - 1
                    }
                };
                keywords[k].rules.push(index);
                keywords[k].after = keywords[k].after.max(after);
                keywords[k].directions = keywords[k].directions.union(rule.directions);
            }
        }
        for c in custom {
            let regex = compile_custom(c)?;
            let index = u32::try_from(compiled.len()).map_err(|_| FirewallError::RuleSetTooLarge)?;
            global_patterns.push((Cow::Owned(c.pattern.clone()), Directions::ALL));
            global_map.push(index);
            compiled.push(CompiledRule {
                id: Cow::Owned(c.id.clone()),
                category: c.category,
                confidence: Confidence::Medium,
                group: 0,
                validator: None,
                directions: Directions::ALL,
                generic: false,
                context: None,
                regex: LazyRegex::compiled(regex),
            });
        }

        let build_set = |patterns: &[&str]| {
            RegexSetBuilder::new(patterns)
                .unicode(false)
                .size_limit(SIZE_LIMIT)
                .dfa_size_limit(DFA_SIZE_LIMIT)
                .build()
                .map_err(|_| FirewallError::RuleSetTooLarge)
        };
        let mut global: [Option<(RegexSet, Vec<u32>)>; 3] = [None, None, None];
        for direction in [Direction::Request, Direction::Response, Direction::Description] {
            let (patterns, map): (Vec<&str>, Vec<u32>) = global_patterns
                .iter()
                .zip(&global_map)
                .filter(|((_, d), _)| d.contains(direction))
                .map(|((p, _), i)| (p.as_ref(), *i))
                .unzip();
            if !patterns.is_empty() {
                global[dir_index(direction)] = Some((build_set(&patterns)?, map));
            }
        }
        let gated = if gated_patterns.is_empty() { None } else { Some((build_set(&gated_patterns)?, gated_map)) };

        Ok(RuleSet { rules: compiled, keywords, index: OnceLock::new(), global, gated, options })
    }

    /// The built-in tables of every category, default options.
    ///
    /// # Errors
    /// Only if a built-in rule is broken (covered by tests).
    pub fn builtin() -> Result<RuleSet, FirewallError> {
        RuleSet::compile(builtin_rules(), &[], RuleSetOptions::default())
    }

    /// The built-in tables plus tenant patterns, default options.
    ///
    /// # Errors
    /// See [`RuleSet::compile`].
    pub fn with_custom(custom: &[CustomPattern]) -> Result<RuleSet, FirewallError> {
        RuleSet::compile(builtin_rules(), custom, RuleSetOptions::default())
    }

    /// Number of compiled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The keyword table: the literal of each keyword, by index. An
    /// [`Engine`](crate::Engine) folds these into its shared keyword pass
    /// and hands the occurrences to [`RuleSet::scan_with_keyword_hits`].
    pub(crate) fn keyword_literals(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keywords.iter().map(|k| k.name)
    }

    /// Whether keyword `k` triggers a rule in `direction`.
    pub(crate) fn keyword_applies(&self, k: u32, direction: Direction) -> bool {
        self.keywords.get(k as usize).is_some_and(|kw| kw.directions.contains(direction))
    }

    fn index(&self) -> Option<&AhoCorasick> {
        self.index
            .get_or_init(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::DFA))
                    .match_kind(MatchKind::Standard)
                    .build(self.keywords.iter().map(|k| k.name))
                    .ok()
            })
            .as_ref()
    }

    /// Appends the findings of every rule applying in `direction` to `out`.
    pub fn scan(&self, text: &str, direction: Direction, out: &mut Vec<Finding>) {
        let hay = text.as_bytes();
        if hay.is_empty() {
            return;
        }
        let mut hits: Vec<Hit> = Vec::new();
        self.scan_global(hay, direction, &mut hits);
        if !self.keywords.is_empty()
            && let Some(ac) = self.index()
        {
            let matches = ac
                .find_overlapping_iter(hay)
                .map(|m| KeywordHit { keyword: m.pattern().as_u32(), start: m.start(), end: m.end() })
                .filter(|h| self.keyword_applies(h.keyword, direction));
            self.scan_windows(hay, direction, matches, &mut hits);
        }
        self.finish(text, hits, out);
    }

    /// [`RuleSet::scan`] with the keyword occurrences already found: every
    /// (overlapping, ASCII case-insensitive) occurrence in `text` of the
    /// keywords applying in `direction`, in order of their end.
    pub(crate) fn scan_with_keyword_hits(
        &self,
        text: &str,
        direction: Direction,
        keyword_hits: &[KeywordHit],
        out: &mut Vec<Finding>,
    ) {
        let hay = text.as_bytes();
        if hay.is_empty() {
            return;
        }
        let mut hits: Vec<Hit> = Vec::new();
        self.scan_global(hay, direction, &mut hits);
        self.scan_windows(hay, direction, keyword_hits.iter().copied(), &mut hits);
        self.finish(text, hits, out);
    }

    /// The rules without keywords, over the whole text.
    fn scan_global(&self, hay: &[u8], direction: Direction, hits: &mut Vec<Hit>) {
        // `is_match` first: it allocates nothing and stops at the first
        // match, and most strings match no global rule.
        if let Some((set, map)) = &self.global[dir_index(direction)]
            && set.is_match(hay)
        {
            for si in set.matches(hay).iter() {
                self.extract(map[si] as usize, hay, 0, hay.len(), direction, hits);
            }
        }
    }

    fn scan_windows(
        &self,
        hay: &[u8],
        direction: Direction,
        matches: impl Iterator<Item = KeywordHit>,
        hits: &mut Vec<Hit>,
    ) {
        let before = self.options.window;
        let mut windows: Vec<(usize, usize, u32)> = matches
            .map(|m| {
                let k = m.keyword;
                let after = self.keywords.get(k as usize).map_or(0, |kw| kw.after);
                (m.start.saturating_sub(before), m.end.saturating_add(after).min(hay.len()), k)
            })
            .collect();
        if windows.is_empty() {
            return;
        }
        windows.sort_unstable_by_key(|w| w.0);

        let words = self.rules.len().div_ceil(64);
        let mut triggered = vec![0u64; words];
        let mut current: Option<(usize, usize)> = None;
        for (start, end, k) in windows {
            match current {
                Some((cs, ce)) if start <= ce => current = Some((cs, ce.max(end))),
                Some((cs, ce)) => {
                    self.run_window(hay, cs, ce, &mut triggered, direction, hits);
                    current = Some((start, end));
                }
                None => current = Some((start, end)),
            }
            for &ri in &self.keywords[k as usize].rules {
                triggered[ri as usize / 64] |= 1u64 << (ri % 64);
            }
        }
        if let Some((cs, ce)) = current {
            self.run_window(hay, cs, ce, &mut triggered, direction, hits);
        }
    }

    /// Runs the triggered rules over `hay[start..end]` and clears `triggered`.
    fn run_window(
        &self,
        hay: &[u8],
        start: usize,
        end: usize,
        triggered: &mut [u64],
        direction: Direction,
        hits: &mut Vec<Hit>,
    ) {
        let mut rules: Vec<usize> = Vec::new();
        for (w, word) in triggered.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let ri = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if self.rules[ri].directions.contains(direction) {
                    rules.push(ri);
                }
            }
        }
        if rules.len() <= DIRECT_RULES {
            for ri in rules {
                self.extract(ri, hay, start, end, direction, hits);
            }
            return;
        }
        let Some((set, map)) = &self.gated else { return };
        for si in set.matches_at(&hay[..end], start).iter() {
            let ri = map[si] as usize;
            if rules.binary_search(&ri).is_ok() {
                self.extract(ri, hay, start, end, direction, hits);
            }
        }
    }

    /// Extracts the matches of rule `ri` starting in `hay[start..end]`.
    fn extract(&self, ri: usize, text: &[u8], start: usize, end: usize, direction: Direction, hits: &mut Vec<Hit>) {
        let rule = &self.rules[ri];
        let hay = &text[..end];
        let rule_index = ri as u32;
        let Some(regex) = rule.regex.get() else {
            // Unreachable for a pattern that parsed and is part of a set
            // that compiled; should it happen, fail closed: the whole
            // searched range is the finding.
            if end > start {
                hits.push(Hit { rule: rule_index, start, end, confidence: rule.confidence });
            }
            return;
        };
        let mut locs = regex.capture_locations();
        let mut at = start;
        for _ in 0..self.options.max_matches_per_rule {
            if at > hay.len() {
                break;
            }
            let (ms, me) = if rule.group == 0 {
                match regex.find_at(hay, at) {
                    Some(m) => (m.start(), m.end()),
                    None => break,
                }
            } else {
                match regex.captures_read_at(&mut locs, hay, at) {
                    Some(m) => (m.start(), m.end()),
                    None => break,
                }
            };
            at = if me > ms { me } else { me + 1 };
            let (s, e) = if rule.group == 0 {
                (ms, me)
            } else {
                match locs.get(rule.group) {
                    Some(span) => span,
                    None => continue,
                }
            };
            if e <= s {
                continue;
            }
            if let Some(validate) = rule.validator
                && !validate(&hay[s..e])
            {
                continue;
            }
            let confidence = match rule.context {
                Some(check) => match check(text, ms..me, rule.confidence, direction) {
                    Some(c) => c,
                    None => continue,
                },
                None => rule.confidence,
            };
            hits.push(Hit { rule: rule_index, start: s, end: e, confidence });
        }
    }

    /// Drops generic hits covered by specific ones, fixes char boundaries and
    /// appends findings.
    fn finish(&self, text: &str, mut hits: Vec<Hit>, out: &mut Vec<Finding>) {
        if hits.is_empty() {
            return;
        }
        hits.sort_unstable_by_key(|h| (h.start, h.end, h.rule));
        hits.dedup_by(|a, b| a.start == b.start && a.end == b.end && a.rule == b.rule);
        let has_generic = hits.iter().any(|h| self.rules[h.rule as usize].generic);
        let mut keep = vec![true; hits.len()];
        if has_generic {
            // Sweep: for each generic hit, is there a specific hit of the same
            // category overlapping it? Hits are sorted by start.
            for (i, h) in hits.iter().enumerate() {
                let rule = &self.rules[h.rule as usize];
                if !rule.generic {
                    continue;
                }
                let overlaps = |o: &Hit| {
                    let r = &self.rules[o.rule as usize];
                    !r.generic && r.category == rule.category && o.start < h.end && h.start < o.end
                };
                // Earlier starts: walk back while they could still overlap is
                // not bounded, so look at specific hits near the generic one
                // only; spans are short (bounded by rule patterns) in practice,
                // and the scan is capped to 64 neighbours to stay linear.
                let lo = i.saturating_sub(64);
                let hi = (i + 64).min(hits.len());
                if hits[lo..hi].iter().any(overlaps) {
                    keep[i] = false;
                }
            }
        }
        for (h, keep) in hits.into_iter().zip(keep) {
            if !keep {
                continue;
            }
            let rule = &self.rules[h.rule as usize];
            out.push(Finding {
                category: rule.category,
                rule: rule.id.clone(),
                confidence: h.confidence,
                span: floor_char_boundary(text, h.start)..ceil_char_boundary(text, h.end),
            });
        }
    }
}

impl Scanner for RuleSet {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn scan(&self, text: &str, direction: Direction, out: &mut Vec<Finding>) {
        RuleSet::scan(self, text, direction, out);
    }
}

/// The largest char boundary `<= i`.
pub(crate) fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary `>= i`.
pub(crate) fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Every built-in rule, in category order.
pub fn builtin_rules() -> impl Iterator<Item = &'static Rule> {
    use crate::scanners::{abuse, destructive, exfil, pii, secrets};
    secrets::RULES.iter().chain(pii::RULES).chain(destructive::RULES).chain(exfil::RULES).chain(abuse::RULES)
}

/// Shannon entropy of `bytes`, in bits per byte.
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let len = bytes.len() as f64;
    counts.iter().filter(|&&c| c > 0).fold(0.0, |acc, &c| {
        let p = f64::from(c) / len;
        acc - p * p.log2()
    })
}

/// Whether `value` looks like a placeholder rather than a credential:
/// `xxxx`, `<token>`, `${VAR}`, `{{ var }}`, `changeme`, `your-api-key`, `****`…
pub fn is_placeholder(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    let v = v.strip_prefix(b"\"").unwrap_or(v);
    let v = v.strip_suffix(b"\"").unwrap_or(v);
    if v.is_empty() {
        return true;
    }
    let first = v[0];
    let last = v[v.len() - 1];
    if (first == b'<' && last == b'>')
        || (first == b'[' && last == b']')
        || v.starts_with(b"${")
        || v.starts_with(b"{{")
        || v.starts_with(b"$(")
        || v.starts_with(b"%(")
        || (first == b'%' && last == b'%')
        || (first == b'$' && v[1..].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
    {
        return true;
    }
    // One repeated character (xxxxxxxx, ********, 00000000) or mostly masks.
    let masks = v.iter().filter(|b| matches!(b, b'*' | b'x' | b'X' | b'#' | b'.')).count();
    if masks * 2 >= v.len() || v.iter().all(|&b| b == first) {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"changeme",
        b"change_me",
        b"change-me",
        b"example",
        b"placeholder",
        b"your_",
        b"your-",
        b"yourapi",
        b"insert",
        b"redacted",
        b"dummy",
        b"sample",
        b"notreal",
        b"not_real",
        b"fake",
        b"todo",
        b"replace",
        b"xxxx",
        b"abcdefgh",
        b"12345678",
        b"process.env",
        b"os.environ",
        b"getenv",
    ];
    const EXACT: &[&[u8]] =
        &[b"password", b"passwd", b"secret", b"token", b"null", b"none", b"undefined", b"true", b"false"];
    EXACT.contains(&lower.as_slice()) || WORDS.iter().any(|w| lower.windows(w.len()).any(|win| win == *w))
}

/// Entropy at least 3.0 bits per byte and not a placeholder.
pub fn entropy_3(value: &[u8]) -> bool {
    !is_placeholder(value) && shannon_entropy(value) >= 3.0
}

/// Entropy at least 3.5 bits per byte and not a placeholder.
pub fn entropy_3_5(value: &[u8]) -> bool {
    !is_placeholder(value) && shannon_entropy(value) >= 3.5
}

/// Entropy at least 4.0 bits per byte and not a placeholder.
pub fn entropy_4(value: &[u8]) -> bool {
    !is_placeholder(value) && shannon_entropy(value) >= 4.0
}

/// Not a placeholder (for formats whose structure is already specific).
pub fn not_placeholder(value: &[u8]) -> bool {
    !is_placeholder(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(set: &RuleSet, text: &str, direction: Direction) -> Vec<Finding> {
        let mut out = Vec::new();
        set.scan(text, direction, &mut out);
        out
    }

    const SAMPLE: &[Rule] = &[
        Rule::new("digits", Category::Pii, r"\b[0-9]{6}\b"),
        Rule::new("kw", Category::Secret, r"(?i)magic=([a-z]+)").keywords(&["magic="]).group(1),
        Rule::new("req", Category::ToolAbuse, r"zap").keywords(&["zap"]).directions(Directions::REQUEST),
        Rule::new("generic", Category::Secret, r"(?i)magic=([a-z]+)").keywords(&["magic"]).group(1).generic(),
        Rule::new("long", Category::Secret, r"BEGIN[a-z ]*END").keywords(&["begin"]).window(4096),
    ];

    fn sample() -> RuleSet {
        RuleSet::compile(SAMPLE, &[], RuleSetOptions::default()).unwrap()
    }

    #[test]
    fn builtin_compiles() {
        let set = RuleSet::builtin().unwrap();
        assert!(set.len() > 150, "{}", set.len());
    }

    #[test]
    fn every_builtin_rule_regex_compiles_with_its_group() {
        // RuleSet::compile only parses the built-in patterns; compile each.
        for rule in builtin_rules() {
            let regex = build_rule_regex(rule.pattern).unwrap_or_else(|e| panic!("{}: {e}", rule.id));
            assert!(rule.secret_group < regex.captures_len(), "{}", rule.id);
        }
    }

    #[test]
    fn rule_regexes_compile_on_first_use_only() {
        let set = RuleSet::builtin().unwrap();
        assert!(set.rules.iter().all(|r| !r.regex.is_compiled()));
        let f = scan(&set, "key AKIAQ3EGWZ4JXKTB7R5M", Direction::Request);
        assert!(f.iter().any(|f| f.rule == "aws-access-token"), "{f:?}");
        let compiled: Vec<&str> = set.rules.iter().filter(|r| r.regex.is_compiled()).map(|r| r.id.as_ref()).collect();
        assert!(compiled.contains(&"aws-access-token"), "{compiled:?}");
        assert!(compiled.len() < 10, "{compiled:?}");
        // The same scan again gives the same findings.
        assert_eq!(scan(&set, "key AKIAQ3EGWZ4JXKTB7R5M", Direction::Request), f);
    }

    #[test]
    fn a_builtin_syntax_error_or_missing_group_is_refused() {
        let broken = [Rule::new("broken", Category::Secret, r"(unclosed").keywords(&["x"])];
        assert!(matches!(
            RuleSet::compile(&broken, &[], RuleSetOptions::default()),
            Err(FirewallError::BuiltinRule { id: "broken", reason: "syntax error" })
        ));
        let no_group = [Rule::new("nogroup", Category::Secret, r"ab(c)").keywords(&["x"]).group(2)];
        assert!(matches!(
            RuleSet::compile(&no_group, &[], RuleSetOptions::default()),
            Err(FirewallError::BuiltinRule { id: "nogroup", reason: "no such capture group" })
        ));
    }

    #[test]
    fn builtin_keywords_are_lowercase_and_ids_kebab() {
        for rule in builtin_rules() {
            for kw in rule.keywords {
                assert_eq!(*kw, kw.to_ascii_lowercase(), "{}", rule.id);
                assert!(!kw.is_empty(), "{}", rule.id);
            }
            assert!(valid_custom_id(rule.id) && !rule.id.contains('_'), "{}", rule.id);
        }
    }

    #[test]
    fn global_and_keyword_rules() {
        let set = sample();
        let f = scan(&set, "id 123456 and MAGIC=abc", Direction::Response);
        let rules: Vec<_> = f.iter().map(|f| f.rule.as_ref()).collect();
        assert_eq!(rules, ["digits", "kw"]);
        assert_eq!(f[1].span, 20..23);
    }

    #[test]
    fn generic_dropped_when_specific_overlaps() {
        let set = sample();
        let f = scan(&set, "magic=abc", Direction::Request);
        assert!(f.iter().all(|f| f.rule != "generic"), "{f:?}");
    }

    #[test]
    fn direction_filter() {
        let set = sample();
        assert!(scan(&set, "zap", Direction::Response).is_empty());
        assert_eq!(scan(&set, "zap", Direction::Request).len(), 1);
    }

    #[test]
    fn windows_are_bounded_but_per_rule_windows_extend() {
        let set = sample();
        let far = format!("magic {} =abc", " ".repeat(1000));
        assert!(scan(&set, &far, Direction::Request).is_empty());
        let long = format!("BEGIN {} END", "a ".repeat(1000));
        assert_eq!(scan(&set, &long, Direction::Request).len(), 1);
    }

    #[test]
    fn many_keyword_hits_merge() {
        let set = sample();
        let text = "magic=x ".repeat(10_000);
        let f = scan(&set, &text, Direction::Request);
        assert_eq!(f.len(), RuleSetOptions::default().max_matches_per_rule);
    }

    #[test]
    fn custom_patterns() {
        let ok = CustomPattern { id: "emp-id".into(), category: Category::Pii, pattern: r"\bEMP-[0-9]{6}\b".into() };
        let set = RuleSet::compile(SAMPLE, std::slice::from_ref(&ok), RuleSetOptions::default()).unwrap();
        let f = scan(&set, "owner EMP-123456", Direction::Response);
        assert!(f.iter().any(|f| f.rule == "emp-id" && f.span == (6..16)));

        let bad = |pattern: &str, id: &str| {
            let c = CustomPattern { id: id.into(), category: Category::Pii, pattern: pattern.into() };
            RuleSet::compile(SAMPLE, &[c], RuleSetOptions::default()).unwrap_err()
        };
        let e = bad("(unclosed-secret-literal", "x");
        assert!(!e.to_string().contains("unclosed-secret-literal"), "{e}");
        assert!(matches!(bad("a*", "x"), FirewallError::CustomPattern { .. }));
        assert!(matches!(bad("a", "Bad Id"), FirewallError::CustomPattern { .. }));
        assert!(matches!(bad(r"\p{L}", "x"), FirewallError::CustomPattern { .. }));
        assert!(matches!(bad(r"(?:(?:[a-z0-9]{100}){100}){10}", "x"), FirewallError::CustomPattern { .. }));
        assert!(matches!(bad(&"a".repeat(2000), "x"), FirewallError::CustomPattern { .. }));
    }

    #[test]
    fn placeholders() {
        for p in
            ["xxxxxxxxxxxx", "<your-token>", "${API_TOKEN}", "{{ secrets.x }}", "changeme123", "********", "$TOKEN"]
        {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzKEY", "hunter2-Q9v!x"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn char_boundaries() {
        let s = "aé€😀";
        for i in 0..=s.len() {
            assert!(s.is_char_boundary(floor_char_boundary(s, i)));
            assert!(s.is_char_boundary(ceil_char_boundary(s, i)));
        }
    }
}
