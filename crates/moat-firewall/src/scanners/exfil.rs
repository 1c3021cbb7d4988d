//! Bulk extraction: unbounded `SELECT *`, huge limits and page sizes,
//! pagination bypasses, dumps (`COPY … TO`, `pg_dump`, `INTO OUTFILE`), and
//! oversized payloads against a per-tool byte budget.
//!
//! The text rules apply to requests (what is being asked for). Arguments
//! are often numbers or booleans rather than strings, so [`structural`] looks
//! at JSON members (`"limit": 1000000`, `"all": true`) and the engine calls it
//! for every object member of a request. The rules keyed on common words
//! (`select`, `count`, `rows`, `all`) have no keyword: they run in the
//! request-only global set, cheaper than a window at every such word.

use crate::finding::Category::{self, Exfiltration};
use crate::finding::{Confidence, Finding};
use crate::rules::{Directions, Rule};
use std::borrow::Cow;

/// Page sizes at or above this are bulk extraction.
pub const HUGE_PAGE: u64 = 10_000;
/// SQL `LIMIT`s at or above this are bulk extraction.
pub const HUGE_LIMIT: u64 = 100_000;

fn number_at_least(m: &[u8], min: u64) -> bool {
    let digits: Vec<u8> =
        m.iter().copied().skip_while(|b| !b.is_ascii_digit()).take_while(u8::is_ascii_digit).collect();
    // More than 19 digits overflows u64 and is certainly huge.
    digits.len() > 19
        || digits.iter().fold(0u64, |a, &d| a.saturating_mul(10).saturating_add(u64::from(d - b'0'))) >= min
}

fn huge_page(m: &[u8]) -> bool {
    number_at_least(m, HUGE_PAGE)
}

fn huge_limit(m: &[u8]) -> bool {
    number_at_least(m, HUGE_LIMIT)
}

/// `SELECT * FROM …` up to the end of the statement with no row bound.
fn unbounded_select(m: &[u8]) -> bool {
    let lower = m.to_ascii_lowercase();
    const BOUNDS: &[&[u8]] = &[b"where", b"limit", b"top ", b"fetch first", b"fetch next", b"rownum", b"offset"];
    !BOUNDS.iter().any(|w| lower.windows(w.len()).any(|x| x == *w))
}

/// The exfiltration table.
pub static RULES: &[Rule] = &[
    Rule::new("select-star-unbounded", Exfiltration, r"(?i)\bselect\s+(?:distinct\s+)?\*\s+from\s+[^;]*?(?:;|$)")
        .validator(unbounded_select)
        .directions(Directions::REQUEST),
    Rule::new("huge-limit", Exfiltration, r"(?i)\blimit\s+[0-9]{6,}\b")
        .keywords(&["limit"])
        .validator(huge_limit)
        .directions(Directions::REQUEST),
    Rule::new(
        "huge-page-size",
        Exfiltration,
        r#"(?i)\b(?:page_?size|per_?page|limit|max_?results|max_?items|page\[size\]|\$top|top|first|rows|batch_?size|count)["']?\s*[:=]\s*["']?[0-9]{5,}\b"#,
    )
    .validator(huge_page)
    .directions(Directions::REQUEST),
    Rule::new(
        "pagination-bypass",
        Exfiltration,
        r#"(?i)\b(?:page_?size|per_?page|limit|max_?results|max_?items|pagesize)["']?\s*[:=]\s*["']?(?:-1|all|unlimited|none|max)\b"#,
    )
    .directions(Directions::REQUEST),
    Rule::new(
        "pagination-bypass",
        Exfiltration,
        r#"(?i)\b(?:all|fetch_?all|get_?all|unlimited|no_?limit|no_?pagination|paginate_?all|all_?pages)["']?\s*[:=]\s*["']?(?:true|1|yes)\b"#,
    )
    .directions(Directions::REQUEST),
    Rule::new(
        "sql-copy-to",
        Exfiltration,
        r#"(?i)\bcopy\s+(?:\(\s*select\b[^;]{0,2000}?\)|[\w."]+(?:\s*\([^)]{0,500}\))?)\s+to\s+(?:stdout|program\b|'[^']*'|"[^"]*")"#,
    )
    .keywords(&["copy"])
    .window(2048)
    .directions(Directions::REQUEST),
    Rule::new("sql-into-outfile", Exfiltration, r"(?i)\binto\s+(?:out|dump)file\b")
        .keywords(&["outfile", "dumpfile"])
        .high()
        .directions(Directions::REQUEST),
    Rule::new(
        "database-dump",
        Exfiltration,
        r"\b(?:mysqldump|mariadb-dump|pg_dump|pg_dumpall|mongodump|mongoexport|bcp\s+\S+\s+out|sqlite3\s+\S+\s+\.dump|redis-cli\b[^\n]{0,100}?\s--rdb)\b",
    )
    .keywords(&["mysqldump", "mariadb-dump", "pg_dump", "mongodump", "mongoexport", "bcp ", ".dump", "--rdb"])
    .directions(Directions::REQUEST),
];

/// A payload larger than the tool's byte budget. Category exfiltration,
/// rule `oversized-payload`, span `0..len` (the whole payload).
pub fn oversized(len: usize, budget: usize) -> Option<Finding> {
    (len > budget).then_some(Finding {
        category: Exfiltration,
        rule: Cow::Borrowed("oversized-payload"),
        confidence: Confidence::High,
        span: 0..len,
    })
}

/// Keys whose numeric value is a page size or limit.
const PAGE_KEYS: &[&str] = &[
    "limit",
    "page_size",
    "pagesize",
    "per_page",
    "perpage",
    "max_results",
    "maxresults",
    "max_items",
    "maxitems",
    "top",
    "$top",
    "first",
    "rows",
    "batch_size",
    "batchsize",
    "count",
    "size",
];
/// Keys whose `true` value asks for everything.
const ALL_KEYS: &[&str] =
    &["all", "fetch_all", "fetchall", "get_all", "getall", "unlimited", "no_limit", "nolimit", "all_pages"];

/// Bulk-extraction shapes in one JSON object member of a request:
/// `"limit": 100000`, `"per_page": -1`, `"all": true`. The finding's span is
/// empty (`0..0`): it concerns the member, not a string.
pub fn structural(key: &str, value: &serde_json::Value) -> Option<Finding> {
    // Only numbers and `true` can be findings; every request member comes
    // through here, so decide that first and normalise the key on the stack.
    let number = matches!(value, serde_json::Value::Number(_));
    if !number && value != &serde_json::Value::Bool(true) {
        return None;
    }
    let mut buf = [0u8; 32];
    let key = key.as_bytes();
    if key.len() > buf.len() {
        return None;
    }
    for (d, &b) in buf.iter_mut().zip(key) {
        *d = if b == b'-' { b'_' } else { b.to_ascii_lowercase() };
    }
    let normal = std::str::from_utf8(&buf[..key.len()]).ok()?;
    let mut squeezed = [0u8; 32];
    let mut n = 0;
    for &b in normal.as_bytes().iter().filter(|&&b| b != b'_') {
        squeezed[n] = b;
        n += 1;
    }
    let squeezed = std::str::from_utf8(&squeezed[..n]).ok()?;
    let rule = if PAGE_KEYS.contains(&normal) || PAGE_KEYS.contains(&squeezed) {
        match value {
            serde_json::Value::Number(n) if n.as_i64().is_some_and(|v| v < 0 && normal != "count") => {
                "pagination-bypass"
            }
            serde_json::Value::Number(n)
                if n.as_u64().is_none_or(|v| v >= HUGE_PAGE) && n.as_i64().is_none_or(|v| v >= 0) =>
            {
                "huge-page-size"
            }
            _ => return None,
        }
    } else if ALL_KEYS.contains(&normal) && value == &serde_json::Value::Bool(true) {
        "pagination-bypass"
    } else {
        return None;
    };
    Some(Finding {
        category: Category::Exfiltration,
        rule: Cow::Borrowed(rule),
        confidence: Confidence::Medium,
        span: 0..0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Direction;
    use crate::rules::{RuleSet, RuleSetOptions};
    use serde_json::json;
    use std::sync::OnceLock;

    fn scan(text: &str, direction: Direction) -> Vec<Finding> {
        static SET: OnceLock<RuleSet> = OnceLock::new();
        let set = SET.get_or_init(|| RuleSet::compile(RULES, &[], RuleSetOptions::default()).unwrap());
        let mut out = Vec::new();
        set.scan(text, direction, &mut out);
        out
    }

    #[track_caller]
    fn fires(text: &str, rule: &str) {
        let found = scan(text, Direction::Request);
        assert!(found.iter().any(|f| f.rule == rule), "{rule} on {text:?}: {found:?}");
    }

    #[track_caller]
    fn silent(text: &str) {
        let found = scan(text, Direction::Request);
        assert!(found.is_empty(), "{text:?}: {found:?}");
    }

    #[test]
    fn sql_bulk() {
        fires("SELECT * FROM customers", "select-star-unbounded");
        fires("select distinct * from orders;", "select-star-unbounded");
        fires("SELECT * FROM t ORDER BY id", "select-star-unbounded");
        silent("SELECT * FROM customers WHERE id = 3");
        silent("SELECT * FROM customers LIMIT 50;");
        silent("SELECT id, name FROM customers LIMIT 10");
        fires("SELECT id FROM t LIMIT 1000000", "huge-limit");
        silent("SELECT id FROM t LIMIT 100");
        fires("COPY users TO STDOUT", "sql-copy-to");
        fires("COPY (SELECT * FROM users) TO '/tmp/u.csv'", "sql-copy-to");
        fires("SELECT * FROM users WHERE 1 INTO OUTFILE '/tmp/x'", "sql-into-outfile");
        fires("pg_dump -h db prod > dump.sql", "database-dump");
        fires("mysqldump --all-databases", "database-dump");
    }

    #[test]
    fn pagination() {
        fires("https://api.example.org/items?per_page=50000", "huge-page-size");
        fires("{\"pageSize\": 100000}", "huge-page-size");
        fires("?offset=0&limit=-1", "pagination-bypass");
        fires("?all=true", "pagination-bypass");
        silent("?per_page=100&page=2");
        silent("we fetch all of them in pages of 100");
    }

    #[test]
    fn request_only() {
        assert!(scan("SELECT * FROM customers", Direction::Response).is_empty());
    }

    #[test]
    fn oversize() {
        assert!(oversized(10, 10).is_none());
        let f = oversized(11, 10).unwrap();
        assert_eq!((f.rule.as_ref(), f.span), ("oversized-payload", 0..11));
    }

    #[test]
    fn structural_members() {
        assert_eq!(structural("limit", &json!(1_000_000)).unwrap().rule, "huge-page-size");
        assert_eq!(structural("per_page", &json!(-1)).unwrap().rule, "pagination-bypass");
        assert_eq!(structural("pageSize", &json!(20_000)).unwrap().rule, "huge-page-size");
        assert_eq!(structural("max-results", &json!(1e9)).unwrap().rule, "huge-page-size");
        assert_eq!(structural("all", &json!(true)).unwrap().rule, "pagination-bypass");
        assert!(structural("limit", &json!(50)).is_none());
        assert!(structural("all", &json!(false)).is_none());
        assert!(structural("id", &json!(1_000_000)).is_none());
        assert!(structural("LIMIT", &json!(1_000_000)).is_some());
        assert!(structural("limit", &json!("1000000")).is_none());
        assert!(structural(&"x".repeat(40), &json!(1_000_000)).is_none());
    }
}
