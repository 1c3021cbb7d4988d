//! Regexes compiled on first use.
//!
//! Most rules of the built-in tables never fire on a given deployment's
//! traffic: a rule's own [`Regex`] is only needed to extract the spans of a
//! rule that its keyword or its [`RegexSet`](regex::bytes::RegexSet) already
//! selected. Compiled eagerly, the ~250 rule regexes plus the injection
//! scanner's held about 10 MiB of heap in some 700,000 allocations for the
//! life of the process (BENCHMARKS.md, "Memory"); compiled on first use, only
//! the ones the traffic selects are ever built. A rule compiles at most once
//! per process (concurrent first uses wait for one compilation) and matches
//! exactly as an eagerly compiled one: same pattern, same builder.

use regex::bytes::Regex;
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

/// How a [`LazyRegex`] compiles its pattern.
pub(crate) type Build = fn(&str) -> Result<Regex, regex::Error>;

/// A pattern and the regex compiled from it on first use.
pub(crate) struct LazyRegex {
    pattern: Cow<'static, str>,
    build: Build,
    regex: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// A pattern to compile with `build` when first needed. The caller has
    /// checked that it is valid (a pattern that does not compile after all
    /// is reported by [`LazyRegex::get`] as `None`).
    pub(crate) fn new(pattern: impl Into<Cow<'static, str>>, build: Build) -> Self {
        LazyRegex { pattern: pattern.into(), build, regex: OnceLock::new() }
    }

    /// An already compiled regex (tenant patterns, validated by compiling).
    pub(crate) fn compiled(regex: Regex) -> Self {
        LazyRegex {
            pattern: Cow::Owned(regex.as_str().to_owned()),
            build: Regex::new,
            regex: OnceLock::from(Some(regex)),
        }
    }

    /// The regex, compiled now if this is its first use; `None` only if the
    /// pattern does not compile.
    pub(crate) fn get(&self) -> Option<&Regex> {
        self.regex.get_or_init(|| (self.build)(&self.pattern).ok()).as_ref()
    }

    /// Whether it has been compiled (tests).
    #[cfg(test)]
    pub(crate) fn is_compiled(&self) -> bool {
        self.regex.get().is_some()
    }
}

impl fmt::Debug for LazyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyRegex")
            .field("pattern", &self.pattern)
            .field("compiled", &self.regex.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_once_on_first_use() {
        let lazy = LazyRegex::new(r"ab+c", Regex::new);
        assert!(!lazy.is_compiled());
        let first = lazy.get().map(|r| r as *const Regex);
        assert!(lazy.is_compiled());
        assert!(lazy.get().is_some_and(|r| r.is_match(b"xabbbc")));
        assert_eq!(lazy.get().map(|r| r as *const Regex), first);
    }

    #[test]
    fn a_broken_pattern_is_none() {
        let lazy = LazyRegex::new(r"(unclosed", Regex::new);
        assert!(lazy.get().is_none());
    }

    #[test]
    fn an_already_compiled_regex_is_kept() {
        let lazy = LazyRegex::compiled(Regex::new("x+").unwrap());
        assert!(lazy.is_compiled());
        assert!(lazy.get().is_some_and(|r| r.is_match(b"xx")));
    }
}
