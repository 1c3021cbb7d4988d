use super::*;
use proptest::prelude::*;
use serde_json::json;

const SECRET: &str = "sk-live/Ab+c d=ef";

fn r() -> Redactor {
    Redactor::new([SECRET])
}

#[test]
fn short_values_are_ignored_and_empty_redactor_borrows() {
    let red = Redactor::new(["abc", "", "xy"]);
    assert!(red.is_empty());
    assert!(matches!(red.redact_str("abc xy"), Cow::Borrowed("abc xy")));
    let mut v = json!({"abc": "abc"});
    assert!(!red.redact_json(&mut v));
    assert!(!Redactor::new(["abcd"]).is_empty());
}

#[test]
fn raw_value() {
    assert_eq!(r().redact_str(&format!("token={SECRET};")), "token=[REDACTED];");
    assert!(matches!(r().redact_str("nothing here"), Cow::Borrowed(_)));
}

#[test]
fn base64_forms() {
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        let enc = engine.encode(SECRET);
        assert_eq!(r().redact_str(&format!("Basic {enc}")), "Basic [REDACTED]", "{enc}");
    }
    // Inside a larger blob, at every alignment.
    for pre in 0..6 {
        let mut blob = vec![0xa5u8; pre];
        blob.extend_from_slice(SECRET.as_bytes());
        blob.extend_from_slice(b"user:trailer");
        let enc = STANDARD.encode(&blob);
        let out = r().redact_str(&enc).into_owned();
        assert!(out.contains(REDACTED), "offset {pre}: {out}");
        let start = (8 * pre).div_ceil(6);
        let end = 8 * (pre + SECRET.len()) / 6;
        assert!(!out.contains(&enc[start..end]), "offset {pre}");
    }
}

#[test]
fn percent_json_and_hex_forms() {
    let forms = [
        "sk-live%2FAb%2Bc%20d%3Def",
        "sk-live%2fAb%2bc%20d%3def",
        "sk-live%2FAb%2Bc+d%3Def",
        "sk-live%2fAb%2bc+d%3def",
        "sk-live\\/Ab+c d=ef",
    ];
    for f in forms {
        assert_eq!(r().redact_str(&format!("q={f}&x=1")), "q=[REDACTED]&x=1", "{f}");
    }
    let hex_lower: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r().redact_str(&hex_lower), REDACTED);
    assert_eq!(r().redact_str(&hex_lower.to_uppercase()), REDACTED);

    let tricky = "pa\"ss\\wörd\n/日本";
    let red = Redactor::new([tricky]);
    let json_text = serde_json::to_string(&json!({ "v": tricky })).unwrap();
    assert_eq!(red.redact_str(&json_text), r#"{"v":"[REDACTED]"}"#);
    let ascii = r#"pa\"ss\\w\u00f6rd\n/\u65e5\u672c"#;
    assert_eq!(red.redact_str(ascii), REDACTED);
}

#[test]
fn leftmost_longest_and_overlaps() {
    let red = Redactor::new(["secret", "secretvalue", "value"]);
    assert_eq!(red.redact_str("a secretvalue b secret c value"), "a [REDACTED] b [REDACTED] c [REDACTED]");
}

#[test]
fn json_values_and_keys_recursively() {
    let mut v = json!({
        "ok": 1,
        SECRET: {"nested": [SECRET, "fine", {"deep": format!("Bearer {SECRET}")}]},
        "b64": STANDARD.encode(SECRET),
    });
    assert!(r().redact_json(&mut v));
    let text = v.to_string();
    assert!(!text.contains("sk-live"), "{text}");
    assert_eq!(v["[REDACTED]"]["nested"][0], "[REDACTED]");
    assert_eq!(v["[REDACTED]"]["nested"][2]["deep"], "Bearer [REDACTED]");
    assert_eq!(v["b64"], "[REDACTED]");
    // Key order is kept.
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ok", "[REDACTED]", "b64"]);
    let mut clean = json!({"a": ["b", {"c": "d"}], "n": null});
    assert!(!r().redact_json(&mut clean));
}

#[test]
fn debug_and_clone() {
    let red = r();
    let copy = red.clone();
    let dbg = format!("{copy:?}");
    assert!(dbg.starts_with("Redactor { patterns: "), "{dbg}");
    assert!(!dbg.contains("sk-live"));
    assert_eq!(copy.redact_str(SECRET), REDACTED);
}

#[test]
fn naive_fallback_matches_the_automaton() {
    let patterns: Vec<_> = ["secret", "secretvalue", "value", "日本語"].map(|s| Zeroizing::new(s.to_owned())).into();
    assert_eq!(naive_redact(&patterns, "é secretvalue 日本語 secret x"), "é [REDACTED] [REDACTED] [REDACTED] x");
    assert!(matches!(naive_redact(&patterns, "none"), Cow::Borrowed(_)));
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{4,32}", "\\PC{2,12}"].prop_filter("at least 4 bytes", |s| s.len() >= MIN_SECRET_LEN)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn prop_raw_never_survives(s in secret(), pre in "\\PC{0,40}", post in "\\PC{0,40}") {
        let red = Redactor::new([s.as_str()]);
        let out = red.redact_str(&format!("{pre}{s}{post}")).into_owned();
        prop_assert!(!out.contains(&s));
    }

    #[test]
    fn prop_base64_in_a_larger_blob_never_survives(
        s in secret(),
        pre in prop::collection::vec(any::<u8>(), 0..9),
        post in prop::collection::vec(any::<u8>(), 0..9),
        which in 0usize..4,
    ) {
        let engine = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD][which];
        let mut blob = pre.clone();
        blob.extend_from_slice(s.as_bytes());
        blob.extend_from_slice(&post);
        let enc = engine.encode(&blob);
        let red = Redactor::new([s.as_str()]);
        let out = red.redact_str(&format!("data: {enc} end")).into_owned();
        let start = (8 * pre.len()).div_ceil(6);
        let end = 8 * (pre.len() + s.len()) / 6;
        prop_assert!(end >= start + 4);
        prop_assert!(!out.contains(&enc[start..end]), "{} in {}", &enc[start..end], out);
    }

    #[test]
    fn prop_url_encoded_never_survives(s in secret(), pre in "[a-z=&]{0,20}", post in "[a-z=&]{0,20}") {
        let red = Redactor::new([s.as_str()]);
        let enc = url_encode(&s);
        let out = red.redact_str(&format!("{pre}{enc}{post}")).into_owned();
        prop_assert!(!out.contains(&enc));
    }

    #[test]
    fn prop_json_escaped_never_survives(s in secret(), pre in "\\PC{0,20}", post in "\\PC{0,20}") {
        let red = Redactor::new([s.as_str()]);
        let text = serde_json::to_string(&format!("{pre}{s}{post}")).unwrap();
        let out = red.redact_str(&text).into_owned();
        let escaped = serde_json::to_string(&s).unwrap();
        prop_assert!(!out.contains(&escaped[1..escaped.len() - 1]));
        if let Ok(decoded) = serde_json::from_str::<String>(&out) {
            prop_assert!(!decoded.contains(&s));
        }
        // And as a JSON value, walked.
        let mut v = json!({ "k": format!("{pre}{s}{post}") });
        red.redact_json(&mut v);
        prop_assert!(!v["k"].as_str().unwrap_or_default().contains(&s));
    }

    #[test]
    fn prop_text_without_the_secret_is_unchanged(s in "[A-Z][A-Za-z0-9]{7,31}", text in "[a-z .,\n]{0,200}") {
        let red = Redactor::new([s.as_str()]);
        prop_assert!(matches!(red.redact_str(&text), Cow::Borrowed(t) if t == text));
        let mut v = json!({ "t": text.clone(), "list": [text.clone()] });
        prop_assert!(!red.redact_json(&mut v));
    }
}
