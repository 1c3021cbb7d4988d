//! What a scanner reports. A finding names a category, a rule, a confidence
//! and a byte span inside the scanned string; it never carries the matched
//! text, so it can be logged, audited and returned without leaking it.

use crate::normalize::Prepared;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// The seven scanner categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Credentials: cloud keys, tokens, private keys, connection strings.
    Secret,
    /// Personal data: e-mail, phone, SSN, cards, IBAN, tenant patterns.
    Pii,
    /// Prompt injection, including hidden or confusable text.
    Injection,
    /// Destructive commands and SQL.
    Destructive,
    /// Suspicious URLs: exfiltration hosts, credentials in URLs, internal addresses.
    Url,
    /// Bulk extraction and oversized payloads.
    Exfiltration,
    /// Privilege escalation, path traversal, command chaining.
    ToolAbuse,
}

impl Category {
    /// Every category, in a stable order.
    pub const ALL: [Category; 7] = [
        Category::Secret,
        Category::Pii,
        Category::Injection,
        Category::Destructive,
        Category::Url,
        Category::Exfiltration,
        Category::ToolAbuse,
    ];

    /// The snake_case name used in config, audit and placeholders.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
            Category::Injection => "injection",
            Category::Destructive => "destructive",
            Category::Url => "url",
            Category::Exfiltration => "exfiltration",
            Category::ToolAbuse => "tool_abuse",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way the scanned content travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to upstream: tool arguments, resource URIs, prompt arguments.
    Request,
    /// Upstream to client: results, errors, notifications.
    Response,
    /// Tool, resource and prompt metadata from upstream lists.
    Description,
}

/// How sure a rule is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// A weak signal (worth logging).
    Low,
    /// Likely.
    Medium,
    /// Near certain (a checksum matched, a structured token format).
    High,
}

/// One match. `span` is a byte range in the string that was scanned; the
/// text itself is never stored here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The category.
    pub category: Category,
    /// The rule id, e.g. `aws-access-key` (stable: policies name it).
    pub rule: Cow<'static, str>,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// Byte offsets of the match in the scanned string.
    #[serde(skip)]
    pub span: Range<usize>,
}

/// A scanner: a pure function over one string.
pub trait Scanner: Send + Sync {
    /// The scanner's name (for errors and metrics).
    fn name(&self) -> &'static str;
    /// Appends the findings in `text` to `out`. Must be linear in `text`'s length.
    fn scan(&self, text: &str, direction: Direction, out: &mut Vec<Finding>);

    /// Literals this scanner's prefilter looks for (matched ASCII
    /// case-insensitively, overlapping). An [`Engine`](crate::Engine) finds
    /// them in the same pass as the rule keywords and hands the occurrences
    /// to [`Scanner::scan_prepared`]. Default: none.
    fn literals(&self) -> &[&'static str] {
        &[]
    }

    /// Like [`Scanner::scan`], over a string [prepared](Prepared) once for
    /// all the scanners of an engine, so that its normalised form is computed
    /// at most once and only for the scanners that need it. `hits`, when
    /// given, holds every occurrence in the original text of the scanner's
    /// [literals](Scanner::literals), in order of their end; without it the
    /// scanner finds them itself. The default calls [`Scanner::scan`] on the
    /// original text.
    fn scan_prepared(
        &self,
        input: &Prepared<'_>,
        hits: Option<&[LiteralHit]>,
        direction: Direction,
        out: &mut Vec<Finding>,
    ) {
        let _ = hits;
        self.scan(input.text(), direction, out);
    }
}

/// An occurrence of a scanner's [literal](Scanner::literals) in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteralHit {
    /// Index in [`Scanner::literals`].
    pub literal: usize,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset after the last byte.
    pub end: usize,
}
