//! Personal data: e-mail addresses, phone numbers, US social security
//! numbers, payment cards (Luhn-checked) and IBANs (mod-97-checked).
//! Tenant-specific formats are added as [`CustomPattern`](crate::rules::CustomPattern)s.
//!
//! Digit-shaped rules are format-gated (separators, a leading `+`, a label
//! such as `phone:`) and checksum-validated where a checksum exists, so that
//! ID- and hash-heavy tool results do not light up.

use crate::finding::Category::Pii;
use crate::finding::{Confidence, Direction};
use crate::rules::Rule;
use std::ops::Range;

/// The PII table.
pub static RULES: &[Rule] = &[
    Rule::new(
        "email",
        Pii,
        r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}\b",
    )
    .keywords(&["@"])
    .validator(email)
    .context(not_scp_remote),
    // E.164, compact or with separators: +14155550123, +44 20 7946 0958, +1 (415) 555-0123.
    Rule::new(
        "phone-number",
        Pii,
        r"(?:^|[^0-9A-Za-z+])(\+[1-9][0-9]{7,14}|\+[1-9][0-9]{0,2}[ .-]?\(?[0-9]{1,4}\)?(?:[ .-][0-9]{2,8}){1,4})(?:[^0-9A-Za-z]|$)",
    )
    .group(1)
    .validator(phone_digits),
    // NANP with separators: (415) 555-0123, 415-555-0123, 415.555.0123.
    Rule::new(
        "phone-number",
        Pii,
        r"(?:^|[^0-9A-Za-z.-])(\([2-9][0-9]{2}\) ?[2-9][0-9]{2}-[0-9]{4}|[2-9][0-9]{2}([.-])[2-9][0-9]{2}[.-][0-9]{4})(?:[^0-9A-Za-z.-]|\.(?:[^0-9]|$)|$)",
    )
    .group(1)
    .validator(nanp),
    // Labelled numbers in any common format: "phone: 030 901820", "tel=0612345678".
    Rule::new(
        "phone-number",
        Pii,
        r#"(?i:phone|tel(?:ephone)?|mobile|cell|fax|whatsapp)[\w.-]{0,20}[\s'"]{0,3}[:=]?[\s'"]{0,5}(\+?[0-9][0-9 ()./-]{5,20}[0-9])"#,
    )
    .keywords(&["phone", "tel", "mobile", "cell", "fax", "whatsapp"])
    .group(1)
    .validator(phone_digits),
    Rule::new("us-ssn", Pii, r"(?:^|[^0-9A-Za-z-])([0-9]{3}-[0-9]{2}-[0-9]{4})(?:[^0-9A-Za-z-]|$)")
        .group(1)
        .validator(ssn),
    Rule::new(
        "us-ssn",
        Pii,
        r#"(?i:ssn|social[ _-]?security(?:[ _-]?(?:number|no))?)[\w.-]{0,10}[\s'"]{0,3}[:=#]?[\s'"]{0,5}([0-9]{3}[ -]?[0-9]{2}[ -]?[0-9]{4})\b"#,
    )
    .keywords(&["ssn", "social security", "social_security", "social-security", "socialsecurity"])
    .group(1)
    .validator(ssn)
    .high(),
    // Grouped card numbers: 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4.
    Rule::new(
        "credit-card",
        Pii,
        r"(?:^|[^0-9A-Za-z_.-])((?:4[0-9]{3}|5[1-5][0-9]{2}|2[2-7][0-9]{2}|6(?:011|5[0-9]{2}|4[4-9][0-9])|35[2-8][0-9])[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}(?:[ -][0-9]{3})?|3[47][0-9]{2}[ -][0-9]{6}[ -][0-9]{5}|3(?:0[0-5]|[68][0-9])[0-9][ -][0-9]{6}[ -][0-9]{4})(?:[^0-9A-Za-z_-]|$)",
    )
    .group(1)
    .validator(card)
    .high(),
    // Contiguous card numbers with the brand's exact length. Medium: a
    // random 16-digit ID with a card prefix passes Luhn one time in ten.
    Rule::new(
        "credit-card",
        Pii,
        r"(?:^|[^0-9A-Za-z_.-])(4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9]{2}|7[01][0-9]|720)[0-9]{12}|3[47][0-9]{13}|6(?:011|5[0-9]{2}|4[4-9][0-9])[0-9]{12}|35(?:2[89]|[3-8][0-9])[0-9]{12}|3(?:0[0-5]|[68][0-9])[0-9]{11})(?:[^0-9A-Za-z_-]|$)",
    )
    .group(1)
    .validator(card),
    Rule::new("iban", Pii, r"\b([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b")
        .group(1)
        .validator(iban)
        .high(),
];

fn digits(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    bytes.iter().filter(|b| b.is_ascii_digit()).map(|b| b - b'0')
}

/// Luhn checksum over the digits of `bytes` (separators ignored).
pub fn luhn(bytes: &[u8]) -> bool {
    let d: Vec<u8> = digits(bytes).collect();
    if d.len() < 2 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card numbers: 13–19 digits, one kind of separator, not one repeated
/// digit, Luhn-valid.
fn card(bytes: &[u8]) -> bool {
    let n = digits(bytes).count();
    let mut seps = bytes.iter().filter(|b| !b.is_ascii_digit());
    let consistent = match seps.next() {
        None => true,
        Some(first) => seps.all(|s| s == first),
    };
    let first = bytes.first().copied();
    (13..=19).contains(&n)
        && consistent
        && !bytes.iter().filter(|b| b.is_ascii_digit()).all(|&b| Some(b) == first)
        && luhn(bytes)
}

/// US SSN: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn(bytes: &[u8]) -> bool {
    let d: Vec<u8> = digits(bytes).collect();
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && !d.iter().all(|&x| x == d[0])
}

/// Phone numbers have 7 to 15 digits (E.164 maximum) and not one repeated digit.
fn phone_digits(bytes: &[u8]) -> bool {
    let d: Vec<u8> = digits(bytes).collect();
    (7..=15).contains(&d.len()) && !d.iter().all(|&x| x == d[0])
}

/// NANP numbers: the pattern already fixes the shape; reject repeated digits.
fn nanp(bytes: &[u8]) -> bool {
    phone_digits(bytes)
}

/// Domains reserved for documentation (RFC 2606) and file-name look-alikes
/// (`logo@2x.png`) are not personal data.
/// `git@github.com:org/repo.git` is an SSH remote (scp syntax: user, host,
/// `:`, path), not a mailbox.
fn not_scp_remote(text: &[u8], m: Range<usize>, confidence: Confidence, _: Direction) -> Option<Confidence> {
    let path = text.get(m.end + 1).is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'~' | b'/' | b'.' | b'_'));
    (text.get(m.end) != Some(&b':') || !path).then_some(confidence)
}

fn email(bytes: &[u8]) -> bool {
    let Some(at) = bytes.iter().rposition(|&b| b == b'@') else { return false };
    let domain = bytes[at + 1..].to_ascii_lowercase();
    let tld = domain.rsplit(|&b| b == b'.').next().unwrap_or_default();
    const FILES: &[&[u8]] = &[b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"js", b"css", b"ts", b"map"];
    const RESERVED: &[&[u8]] = &[b"example.com", b"example.org", b"example.net"];
    const RESERVED_TLD: &[&[u8]] = &[b"example", b"test", b"invalid", b"localhost", b"local"];
    !FILES.contains(&tld)
        && !RESERVED_TLD.contains(&tld)
        && !RESERVED.iter().any(|r| domain == *r || domain.ends_with(&[b".", *r].concat()))
}

/// IBAN length per country (ISO 13616 registry, the commonly used ones).
fn iban_length(country: &[u8]) -> Option<usize> {
    Some(match country {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    })
}

/// IBAN: known country, the country's length, ISO 7064 mod 97 equal to 1.
pub fn iban(bytes: &[u8]) -> bool {
    let compact: Vec<u8> = bytes.iter().copied().filter(|&b| b != b' ').collect();
    if compact.len() < 5 || iban_length(&compact[..2]) != Some(compact.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        match b {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Direction, Finding};
    use crate::rules::{RuleSet, RuleSetOptions};
    use std::sync::OnceLock;

    fn set() -> &'static RuleSet {
        static SET: OnceLock<RuleSet> = OnceLock::new();
        SET.get_or_init(|| RuleSet::compile(RULES, &[], RuleSetOptions::default()).unwrap())
    }

    fn scan(text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        set().scan(text, Direction::Response, &mut out);
        out
    }

    #[track_caller]
    fn fires(text: &str, rule: &str, span: &str) {
        let found = scan(text);
        assert!(found.iter().any(|f| f.rule == rule && &text[f.span.clone()] == span), "{rule} on {text:?}: {found:?}");
    }

    #[track_caller]
    fn silent(text: &str) {
        let found = scan(text);
        assert!(found.is_empty(), "{text:?}: {found:?}");
    }

    #[test]
    fn checksums() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(iban(b"GB82 WEST 1234 5698 7654 32"));
        assert!(!iban(b"DE89370400440532013001"));
        assert!(!iban(b"DE8937040044053201300"));
        assert!(!iban(b"ZZ89370400440532013000"));
    }

    #[test]
    fn emails() {
        fires("contact jane.doe+x@acme-corp.io today", "email", "jane.doe+x@acme-corp.io");
        silent("see logo@2x.png and user@example.com");
        silent("decorator @property and npm @types/node");
        silent("git clone git@github.com:acme/widgets.git");
        fires("mail bob@acme-corp.io: thanks", "email", "bob@acme-corp.io");
    }

    #[test]
    fn phones() {
        fires("call +14155550123 now", "phone-number", "+14155550123");
        fires("call +44 20 7946 0958 now", "phone-number", "+44 20 7946 0958");
        fires("call +49 30 919102 now", "phone-number", "+49 30 919102");
        fires("office (415) 555-0123", "phone-number", "(415) 555-0123");
        fires("office 415-555-0123.", "phone-number", "415-555-0123");
        fires("{\"phone\": \"030 901820\"}", "phone-number", "030 901820");
        silent("build 2024-05-01 12:00:00, version 1.2.3, port 8080, id 123456789012");
        silent("timezone +0100 and +05:30");
    }

    #[test]
    fn ssns() {
        fires("ssn 123-45-6789", "us-ssn", "123-45-6789");
        fires("SSN: 123456789", "us-ssn", "123456789");
        silent("000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000");
    }

    #[test]
    fn cards() {
        fires("card 4111 1111 1111 1111 exp", "credit-card", "4111 1111 1111 1111");
        fires("card 4111-1111-1111-1111", "credit-card", "4111-1111-1111-1111");
        fires("amex 3782 822463 10005", "credit-card", "3782 822463 10005");
        fires("{\"pan\":\"5555555555554444\"}", "credit-card", "5555555555554444");
        silent("card 4111 1111 1111 1112");
        silent("order 4111111111111112 and 4111-1111 1111-1111");
        silent("ts 1714564800123456 ms");
    }

    #[test]
    fn ibans() {
        fires("pay to DE89 3704 0044 0532 0130 00 please", "iban", "DE89 3704 0044 0532 0130 00");
        fires("iban=GB82WEST12345698765432;", "iban", "GB82WEST12345698765432");
        silent("ref DE89 3704 0044 0532 0130 01");
        silent("SKU AB12CD34EF56GH78");
    }

    #[test]
    fn hashes_and_ids_are_quiet() {
        silent("sha1 3f786850e387550fdab836ed7e6dc881de23001b uuid 550e8400-e29b-41d4-a716-446655440000");
        silent("{\"id\": 1234567890123456789, \"ts\": \"2024-05-01T12:00:00.123Z\"}");
    }
}
