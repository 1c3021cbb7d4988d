//! Exact-value redaction: scrubs known secret values, and their common encodings, out of text and
//! JSON before it leaves the gateway (upstream answers, logs, audit records).
//!
//! For each value of at least [`MIN_SECRET_LEN`] bytes (shorter ones are ignored: they would match
//! ordinary text everywhere), a [`Redactor`] searches for:
//!
//! - the value itself;
//! - its base64 forms (standard and URL-safe alphabets, padded or not), and the part of it that any
//!   larger base64 blob carries when the value sits inside it at any byte offset: for offsets 0, 1
//!   and 2 modulo 3, the characters whose 6 bits all come from the value (windows shorter than 4
//!   characters are skipped);
//! - its percent-encoded forms (upper- and lower-case hex, spaces as `%20` or `+`, unreserved
//!   characters `A-Z a-z 0-9 - . _ ~` literal);
//! - its JSON-string-escaped forms (as serde_json escapes it, with `/` escaped as `\/`, and with
//!   non-ASCII escaped as `\uXXXX` as Python's `json.dumps` does);
//! - its lower- and upper-case hex encodings.
//!
//! Matches are replaced by `[REDACTED]`, leftmost-longest (of overlapping candidates the longest
//! wins). The patterns, being secrets, live only inside the matcher.

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Values shorter than this many bytes are not redacted.
pub const MIN_SECRET_LEN: usize = 4;
/// What a match is replaced with.
pub const REDACTED: &str = "[REDACTED]";

enum Matcher {
    Automaton(AhoCorasick),
    /// Only if the automaton cannot be built (absurd pattern counts): slow, but never fails open.
    Naive(Vec<Zeroizing<String>>),
}

/// Redacts exact secret values and their encodings. Cheap to clone (shares its matcher). The default
/// redactor redacts nothing.
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<Arc<Matcher>>,
    patterns: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("patterns", &self.patterns).finish()
    }
}

/// Pushes the forms of one value (see the module docs).
fn push_forms(value: &str, out: &mut Vec<Zeroizing<String>>) {
    let bytes = value.as_bytes();
    out.push(Zeroizing::new(value.to_owned()));

    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(Zeroizing::new(engine.encode(bytes)));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for offset in 0..3usize {
            let mut shifted = Zeroizing::new(vec![0u8; offset]);
            shifted.extend_from_slice(bytes);
            let encoded = Zeroizing::new(engine.encode(shifted.as_slice()));
            // Character i carries bits [6i, 6i + 6); the value occupies bits [8·offset, 8·(offset + n)).
            let start = (8 * offset).div_ceil(6);
            let end = 8 * (offset + bytes.len()) / 6;
            if end >= start + 4 {
                out.push(Zeroizing::new(encoded[start..end].to_owned()));
            }
        }
    }

    for upper in [true, false] {
        for plus in [true, false] {
            out.push(percent_encode(bytes, upper, plus));
        }
    }

    if let Ok(json) = serde_json::to_string(value).map(Zeroizing::new) {
        let inner = &json[1..json.len() - 1];
        out.push(Zeroizing::new(inner.to_owned()));
        out.push(Zeroizing::new(inner.replace('/', "\\/")));
        out.push(ascii_json(inner));
    }

    out.push(Zeroizing::new(hex(bytes, b"0123456789abcdef")));
    out.push(Zeroizing::new(hex(bytes, b"0123456789ABCDEF")));
}

fn hex(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(digits[usize::from(b >> 4)]));
        s.push(char::from(digits[usize::from(b & 0xf)]));
    }
    s
}

fn percent_encode(bytes: &[u8], upper: bool, plus_for_space: bool) -> Zeroizing<String> {
    let digits = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 3));
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(char::from(b));
        } else if b == b' ' && plus_for_space {
            s.push('+');
        } else {
            s.push('%');
            s.push(char::from(digits[usize::from(b >> 4)]));
            s.push(char::from(digits[usize::from(b & 0xf)]));
        }
    }
    s
}

/// serde_json's escaping with every non-ASCII char as `\uXXXX` (UTF-16, lower-case hex).
fn ascii_json(escaped: &str) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(escaped.len() * 2));
    let mut units = [0u16; 2];
    for c in escaped.chars() {
        if c.is_ascii() {
            s.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                s.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    s
}

impl Redactor {
    /// A redactor for `values`; values shorter than [`MIN_SECRET_LEN`] bytes are ignored.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut patterns: Vec<Zeroizing<String>> = Vec::new();
        for value in values {
            if value.len() >= MIN_SECRET_LEN {
                push_forms(value, &mut patterns);
            }
        }
        patterns.retain(|p| p.len() >= MIN_SECRET_LEN);
        patterns.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        patterns.dedup_by(|a, b| a.as_str() == b.as_str());
        if patterns.is_empty() {
            return Redactor::default();
        }
        let count = patterns.len();
        let matcher = match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_bytes()))
        {
            Ok(ac) => Matcher::Automaton(ac),
            Err(_) => Matcher::Naive(patterns),
        };
        Redactor { matcher: Some(Arc::new(matcher)), patterns: count }
    }

    /// Whether this redactor has nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `s` with every match replaced by `[REDACTED]`; borrowed when nothing matched.
    pub fn redact_str<'s>(&self, s: &'s str) -> Cow<'s, str> {
        let Some(matcher) = self.matcher.as_deref() else {
            return Cow::Borrowed(s);
        };
        match matcher {
            Matcher::Automaton(ac) => {
                if !ac.is_match(s) {
                    return Cow::Borrowed(s);
                }
                let mut out = String::with_capacity(s.len());
                ac.replace_all_with(s, &mut out, |_, _, dst| {
                    dst.push_str(REDACTED);
                    true
                });
                Cow::Owned(out)
            }
            Matcher::Naive(patterns) => naive_redact(patterns, s),
        }
    }

    /// Redacts every string value and every object key of `v`, recursively. Returns whether anything
    /// changed. Two keys of one object that redact to the same text keep the later value.
    pub fn redact_json(&self, v: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        if self.is_empty() {
            return false;
        }
        match v {
            Value::String(s) => match self.redact_str(s) {
                Cow::Owned(r) => {
                    *s = r;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            Value::Array(items) => items.iter_mut().fold(false, |changed, item| self.redact_json(item) | changed),
            Value::Object(map) => {
                let mut changed = map.values_mut().fold(false, |changed, item| self.redact_json(item) | changed);
                if map.keys().any(|k| matches!(self.redact_str(k), Cow::Owned(_))) {
                    let old = std::mem::take(map);
                    for (k, item) in old {
                        let k = self.redact_str(&k).into_owned();
                        map.insert(k, item);
                    }
                    changed = true;
                }
                changed
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
}

fn naive_redact<'s>(patterns: &[Zeroizing<String>], s: &'s str) -> Cow<'s, str> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let longest = patterns.iter().filter(|p| bytes[i..].starts_with(p.as_bytes())).map(|p| p.len()).max();
        match longest {
            Some(len) => {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[copied..i]);
                o.push_str(REDACTED);
                i += len;
                copied = i;
            }
            None => i += 1,
        }
    }
    match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests;
