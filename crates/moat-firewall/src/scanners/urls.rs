//! Suspicious URLs: known exfiltration hosts, credentials in URLs, internal
//! and cloud-metadata addresses in all their encodings.
//!
//! The scanner runs over [`normalize`](crate::normalize::normalize)d text (so fullwidth, `\u002f`-escaped,
//! HTML-entity and zero-width-split URLs are seen as plain ASCII) and parses
//! hosts itself, following WHATWG URL host parsing where it matters:
//! percent-decoding, trailing dots, userinfo (`http://good.com@169.254.169.254/`
//! targets the metadata address), IPv4 in decimal/octal/hex/short forms
//! (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`), IPv6 including
//! IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms, and DNS-rebinding
//! helper domains (`169.254.169.254.nip.io`, `localtest.me`). Percent-encoded
//! URLs nested in query strings (`?next=http%3a%2f%2f10.0.0.1`) are found too.
//!
//! URL candidates: `http(s)`, `ftp(s)`, `sftp`, `tftp`, `ws(s)`, `file`,
//! `gopher`, `dict`, `ldap(s)`, `smb`, `netdoc` schemes, scheme-less
//! `//host`, and bare IPv4/IPv6 literals, `localhost:port` and metadata host
//! names outside URLs.
//!
//! Rules (category [`Category::Url`]):
//!
//! | rule | confidence |
//! |---|---|
//! | `metadata-address` | High (bare, outside a URL: High in requests, else Medium) |
//! | `internal-address` | High (bare: Medium in requests, else Low) |
//! | `exfil-host` | High |
//! | `credentials-in-url` | High for `user:password@`, Medium for a long token-like user name or a secret query parameter |
//!
//! A local `file:` URL (`file:///etc/passwd`, no host) is an
//! `internal-address`: High when it names a system or credential path
//! (`/etc/`, `/proc/`, `~/.ssh/`, `C:/Windows`, …), Low for any other file in
//! a request, and nothing in results and descriptions (MCP resources are
//! commonly `file:///…` URIs).
//!
//! A literal prefilter (the scheme separator, `//host`, `[`, dotted quads,
//! the bare host names) decides first; on plain ASCII text it runs on the raw
//! bytes, usually in the engine's shared pass, so most strings are never
//! normalised.
//!
//! Spans cover the whole URL for host rules and the userinfo or parameter
//! value for `credentials-in-url` (the whole URL when it was percent-encoded).

use crate::finding::{Category, Confidence, Direction, Finding, LiteralHit, Scanner};
use crate::normalize::{Normalized, Prepared};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::ops::Range;

/// Known exfiltration, paste, tunnel, webhook-capture and OAST hosts (each
/// matches itself and its subdomains).
const EXFIL_HOSTS: &[&str] = &[
    "webhook.site",
    "requestbin.net",
    "requestbin.com",
    "pipedream.net",
    "ngrok.io",
    "ngrok.app",
    "ngrok-free.app",
    "ngrok.dev",
    "ngrok-free.dev",
    "loca.lt",
    "localtunnel.me",
    "serveo.net",
    "serveousercontent.com",
    "trycloudflare.com",
    "localhost.run",
    "lhr.life",
    "bore.pub",
    "pinggy.link",
    "pinggy.io",
    "tunnelmole.net",
    "interact.sh",
    "interactsh.com",
    "oast.fun",
    "oast.pro",
    "oast.live",
    "oast.site",
    "oast.online",
    "oast.me",
    "burpcollaborator.net",
    "oastify.com",
    "canarytokens.com",
    "dnslog.cn",
    "ceye.io",
    "requestcatcher.com",
    "beeceptor.com",
    "mockbin.org",
    "mockbin.io",
    "hookbin.com",
    "postb.in",
    "pastebin.com",
    "paste.ee",
    "hastebin.com",
    "ghostbin.co",
    "rentry.co",
    "termbin.com",
    "ix.io",
    "sprunge.us",
    "dpaste.com",
    "transfer.sh",
    "file.io",
    "0x0.st",
    "gofile.io",
    "tmpfiles.org",
    "temp.sh",
    "hooks.slack.com",
];

/// Hosts that are exfiltration endpoints only under a path prefix.
const EXFIL_PATHS: &[(&str, &str)] = &[
    ("discord.com", "/api/webhooks"),
    ("discordapp.com", "/api/webhooks"),
    ("api.telegram.org", "/bot"),
    ("toptal.com", "/developers/hastebin"),
];

/// Cloud metadata host names.
const METADATA_HOSTS: &[&str] =
    &["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"];

/// Suffixes of internal names (matching the name itself or a subdomain).
const INTERNAL_SUFFIXES: &[&str] = &[
    "localhost",
    "internal",
    "local",
    "localdomain",
    "home.arpa",
    "lan",
    "intranet",
    "ip6-localhost",
    "ip6-loopback",
    // Public names that resolve to 127.0.0.1.
    "localtest.me",
    "lvh.me",
    "vcap.me",
    "localh.st",
];

/// Wildcard DNS services that resolve `<ip>.service` to `<ip>`.
const REBIND_SUFFIXES: &[&str] = &["nip.io", "sslip.io", "xip.io", "traefik.me", "nip.direct"];

/// Query parameter names that carry credentials.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "pass",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-security-token",
    "x-goog-signature",
    "private_token",
    "auth",
];

const URL_CAP: usize = 2048;
const AUTHORITY_CAP: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostClass {
    Metadata,
    Internal,
    Exfil,
}

/// The URL scanner.
pub struct Urls {
    scheme: Option<Regex>,
    schemeless: Option<Regex>,
    bare: Option<Regex>,
    /// Literals one of which every candidate contains (see [`ANCHORS`]).
    prefilter: Option<AhoCorasick>,
    /// The literals of [`ANCHORS`].
    literals: Vec<&'static str>,
}

/// What a prefilter hit needs around it to be a possible candidate.
#[derive(Clone, Copy)]
enum Check {
    /// Nothing more.
    None,
    /// `//` must be followed by a host-ish byte (as in [`SCHEMELESS_RE`]).
    Schemeless,
    /// `[` must open a bracketed IPv6-ish literal.
    Bracket,
    /// `<digit>.` must sit in a dotted run with at least three dots.
    Dotted,
}

/// The prefilter: every URL candidate and every bare address the scanner
/// looks at contains one of these (ASCII case-insensitive), with the check
/// passing. The scheme separator (`:` or `%3a`, then `/`, `\` or their
/// escapes), scheme-less `//`, bracketed IPv6, dotted IPv4, and the bare host
/// names of [`BARE_RE`].
const ANCHORS: &[(&str, Check)] = &[
    (":/", Check::None),
    (":\\", Check::None),
    (":%2f", Check::None),
    (":%5c", Check::None),
    ("%3a", Check::None),
    ("//", Check::Schemeless),
    ("[", Check::Bracket),
    ("localhost:", Check::None),
    ("metadata.goog", Check::None),
    ("instance-data", Check::None),
    ("0.", Check::Dotted),
    ("1.", Check::Dotted),
    ("2.", Check::Dotted),
    ("3.", Check::Dotted),
    ("4.", Check::Dotted),
    ("5.", Check::Dotted),
    ("6.", Check::Dotted),
    ("7.", Check::Dotted),
    ("8.", Check::Dotted),
    ("9.", Check::Dotted),
];

impl Default for Urls {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Urls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Urls").finish_non_exhaustive()
    }
}

const SCHEME_RE: &str =
    r"\b(?:https?|ftps?|sftp|tftp|wss?|file|gopher|dict|ldaps?|smb|netdoc)(?::|%3a)(?:\\?/|\\|%2f|%5c){1,3}";
const SCHEMELESS_RE: &str = r#"(?:^|[\s"'(=,\[<>])//"#;
const BARE_RE: &str = r"(?:^|[^0-9a-z.:@/\-_%\[])(?:(\d{1,3}(?:\.\d{1,3}){3})(?::\d{1,5})?|\[([0-9a-f:.%]{2,64})\](?::\d{1,5})?|localhost:\d{1,5}\b|(metadata\.google\.internal|metadata\.goog|instance-data\.ec2\.internal)\b)";

fn build(p: &str) -> Option<Regex> {
    RegexBuilder::new(p).unicode(false).build().ok()
}

impl Urls {
    /// Compiles the URL patterns. Infallible: the patterns are constants
    /// checked by the unit tests.
    pub fn new() -> Self {
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .build(ANCHORS.iter().map(|(a, _)| a))
            .ok();
        let literals = ANCHORS.iter().map(|(a, _)| *a).collect();
        Urls { scheme: build(SCHEME_RE), schemeless: build(SCHEMELESS_RE), bare: build(BARE_RE), prefilter, literals }
    }

    /// Whether `text` (normalised, or raw plain text) may hold a URL
    /// candidate or a bare address.
    fn may_match(&self, text: &[u8]) -> bool {
        let Some(ac) = &self.prefilter else { return true };
        let mut hits = ac.find_overlapping_iter(text).map(|m| LiteralHit {
            literal: m.pattern().as_usize(),
            start: m.start(),
            end: m.end(),
        });
        hits.any(|m| anchor_passes(text, m))
    }
}

/// Whether the prefilter hit `m` in `text` passes its [`Check`]. Bounded
/// work per hit, so the prefilter is linear.
fn anchor_passes(text: &[u8], m: LiteralHit) -> bool {
    let check = ANCHORS.get(m.literal).map_or(Check::None, |a| a.1);
    match check {
        Check::None => true,
        Check::Schemeless => text.get(m.end).is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'[' | b'%')),
        Check::Bracket => {
            let inner = text.get(m.end..).unwrap_or(&[]);
            let n =
                inner.iter().take(65).take_while(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'%')).count();
            (2..=64).contains(&n) && inner.get(n) == Some(&b']')
        }
        Check::Dotted => {
            let dot = m.end - 1;
            let in_run = |b: &&u8| b.is_ascii_digit() || **b == b'.';
            let before = text.get(dot.saturating_sub(16)..dot).unwrap_or(&[]);
            let left = before.iter().rev().take_while(in_run).filter(|b| **b == b'.').count();
            let after = text.get(dot..(dot + 17).min(text.len())).unwrap_or(&[]);
            let right = after.iter().take_while(in_run).filter(|b| **b == b'.').count();
            left + right >= 3
        }
    }
}

fn push(out: &mut Vec<Finding>, rule: &'static str, confidence: Confidence, span: Range<usize>) {
    out.push(Finding { category: Category::Url, rule: Cow::Borrowed(rule), confidence, span });
}

fn is_terminator(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b')' | b'{' | b'}' | b'|' | b'^')
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes bytes (invalid escapes are kept as is).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (s.get(i + 1).and_then(|&x| hex_val(x)), s.get(i + 2).and_then(|&x| hex_val(x)))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Parses one IPv4 part the WHATWG way: `0x` hex, leading-zero octal, decimal.
fn ipv4_part(p: &[u8]) -> Option<u64> {
    let (digits, radix) = match p {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
        [b'0', rest @ ..] if !rest.is_empty() => (rest, 8),
        _ => (p, 10),
    };
    if digits.len() > 32 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        v = v.checked_mul(radix)?.checked_add(u64::from(char::from(b).to_digit(radix as u32)?))?;
    }
    Some(v)
}

/// WHATWG IPv4 host parsing (1–4 numeric parts, the last filling the rest).
fn parse_ipv4(host: &[u8]) -> Option<u32> {
    let mut parts: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
    if parts.last().is_some_and(|p| p.is_empty()) && parts.len() > 1 {
        parts.pop();
    }
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let nums: Vec<u64> = parts.iter().map(|p| ipv4_part(p)).collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    let mut v: u64 = 0;
    for (i, &n) in init.iter().enumerate() {
        if n > 255 {
            return None;
        }
        v |= n << (8 * (3 - i));
    }
    let room = 8 * (4 - init.len() as u32);
    if room < 64 && *last >= (1u64 << room) {
        return None;
    }
    u32::try_from(v | last).ok()
}

fn classify_v4(a: u32) -> Option<HostClass> {
    let o = a.to_be_bytes();
    if matches!(a, 0xA9FE_A9FE | 0xA9FE_AA02 | 0xA9FE_AA17 | 0x6464_64C8) {
        return Some(HostClass::Metadata);
    }
    let internal = o[0] == 0
        || o[0] == 10
        || o[0] == 127
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (16..32).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 100 && (64..128).contains(&o[1]));
    internal.then_some(HostClass::Internal)
}

fn classify_v6(a: Ipv6Addr) -> Option<HostClass> {
    let s = a.segments();
    if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] || s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23] {
        return Some(HostClass::Metadata);
    }
    if a.is_loopback() || a.is_unspecified() {
        return Some(HostClass::Internal);
    }
    let v4 = |hi: u16, lo: u16| (u32::from(hi) << 16) | u32::from(lo);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return classify_v4(v4(hi, lo));
        }
        [0x2002, hi, lo, ..] => return classify_v4(v4(hi, lo)),
        _ => {}
    }
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 {
        return Some(HostClass::Internal);
    }
    None
}

fn has_suffix(host: &str, suffix: &str) -> bool {
    host == suffix || host.strip_suffix(suffix).is_some_and(|h| h.ends_with('.'))
}

/// The IP embedded in a wildcard-DNS name such as `10.0.0.1.nip.io`,
/// `app-10-0-0-1.sslip.io` or `0a000001.nip.io`.
fn rebind_ip(host: &str) -> Option<u32> {
    let suffix = REBIND_SUFFIXES.iter().find(|s| has_suffix(host, s))?;
    let head = host.strip_suffix(suffix)?.strip_suffix('.')?;
    let labels: Vec<&str> = head.split('.').collect();
    if labels.len() >= 4 {
        let tail = labels.get(labels.len() - 4..)?.join(".");
        if let Some(ip) = parse_strict_v4(&tail) {
            return Some(ip);
        }
    }
    let last = labels.last()?;
    let dashed: Vec<&str> = last.split('-').collect();
    if dashed.len() >= 4
        && let Some(ip) = parse_strict_v4(&dashed.get(dashed.len() - 4..)?.join("."))
    {
        return Some(ip);
    }
    if last.len() == 8 {
        return u32::from_str_radix(last, 16).ok();
    }
    None
}

fn parse_strict_v4(s: &str) -> Option<u32> {
    s.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

/// Classifies a host (already percent-decoded, lowercase, without port).
fn classify_host(host: &[u8], path: &[u8]) -> Option<HostClass> {
    let mut host = host;
    while let [rest @ .., b'.'] = host {
        host = rest;
    }
    if host.is_empty() {
        return None;
    }
    if let [b'[', inner @ .., b']'] = host {
        let inner = inner.split(|&b| b == b'%').next().unwrap_or(inner);
        let a: Ipv6Addr = std::str::from_utf8(inner).ok()?.parse().ok()?;
        return classify_v6(a);
    }
    if let Some(a) = parse_ipv4(host) {
        return classify_v4(a);
    }
    let host = std::str::from_utf8(host).ok()?;
    if METADATA_HOSTS.contains(&host) {
        return Some(HostClass::Metadata);
    }
    if let Some(ip) = rebind_ip(host) {
        return classify_v4(ip);
    }
    if INTERNAL_SUFFIXES.iter().any(|s| has_suffix(host, s)) {
        return Some(HostClass::Internal);
    }
    if EXFIL_HOSTS.iter().any(|s| has_suffix(host, s)) {
        return Some(HostClass::Exfil);
    }
    let in_path = |prefix: &str| path.starts_with(prefix.as_bytes()) || is_api_versioned(path, prefix);
    if EXFIL_PATHS.iter().any(|(h, p)| has_suffix(host, h) && in_path(p)) {
        return Some(HostClass::Exfil);
    }
    None
}

/// `/api/v10/webhooks` for the prefix `/api/webhooks`.
fn is_api_versioned(path: &[u8], prefix: &str) -> bool {
    let Some(rest) = prefix.strip_prefix("/api/") else { return false };
    let Some(p) = path.strip_prefix(b"/api/v") else { return false };
    let digits = p.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && p.get(digits) == Some(&b'/') && p.get(digits + 1..).is_some_and(|r| r.starts_with(rest.as_bytes()))
}

/// Whether a credential value is a documentation placeholder.
fn is_placeholder(v: &[u8]) -> bool {
    const WORDS: &[&[u8]] =
        &[b"your", b"example", b"xxx", b"redacted", b"placeholder", b"<", b"...", b"***", b"${", b"{{", b"%s"];
    const EXACT: &[&[u8]] = &[
        b"password",
        b"pass",
        b"secret",
        b"token",
        b"apikey",
        b"api_key",
        b"key",
        b"pwd",
        b"passwd",
        b"value",
        b"test",
        b"dummy",
        b"foo",
        b"bar",
        b"changeit",
        b"user",
        b"username",
    ];
    if v.first().is_some_and(|b| matches!(b, b'{' | b'<' | b'$' | b'[' | b'*' | b':')) {
        return true;
    }
    if EXACT.contains(&v) || WORDS.iter().any(|w| v.windows(w.len()).any(|x| x == *w)) {
        return true;
    }
    v.first().is_some_and(|f| v.iter().all(|b| b == f))
}

/// A parsed URL, offsets relative to the start of its authority.
struct Parsed {
    userinfo: Option<Range<usize>>,
    host: Range<usize>,
    path: Range<usize>,
    query: Option<Range<usize>>,
    end: usize,
}

/// Parses `s` (the text after `scheme://`) up to `end` (the URL's end).
fn parse_after_scheme(s: &[u8], end: usize) -> Parsed {
    let s = s.get(..end).unwrap_or(s);
    let mut auth_end = 0;
    let mut in_brackets = false;
    while let Some(&b) = s.get(auth_end) {
        if auth_end >= AUTHORITY_CAP {
            break;
        }
        match b {
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            b'/' | b'\\' | b'?' | b'#' => break,
            b',' | b';' if !in_brackets => break,
            _ => {}
        }
        auth_end += 1;
    }
    let authority = s.get(..auth_end).unwrap_or(&[]);
    let (userinfo, hostport_start) = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => (Some(0..at), at + 1),
        None => (None, 0),
    };
    let hostport = authority.get(hostport_start..).unwrap_or(&[]);
    let host_len = if hostport.first() == Some(&b'[') {
        hostport.iter().position(|&b| b == b']').map_or(hostport.len(), |p| p + 1)
    } else {
        match hostport.iter().rposition(|&b| b == b':') {
            Some(c) if hostport.get(c + 1..).is_some_and(|p| p.iter().all(u8::is_ascii_digit)) => c,
            _ => hostport.len(),
        }
    };
    let host = hostport_start..hostport_start + host_len;
    let q = s.get(auth_end..).and_then(|r| r.iter().position(|&b| b == b'?')).map(|p| auth_end + p);
    let path_end =
        q.or_else(|| s.get(auth_end..).and_then(|r| r.iter().position(|&b| b == b'#')).map(|p| auth_end + p));
    let path = auth_end..path_end.unwrap_or(s.len());
    let query = q.map(|q| {
        let qe = s.get(q..).and_then(|r| r.iter().position(|&b| b == b'#')).map_or(s.len(), |p| q + p);
        q + 1..qe.min(q + 1 + URL_CAP)
    });
    Parsed { userinfo, host, path, query, end: s.len() }
}

struct Ctx<'a> {
    n: &'a Normalized,
    text: &'a [u8],
    out: &'a mut Vec<Finding>,
}

impl Ctx<'_> {
    fn emit(&mut self, rule: &'static str, confidence: Confidence, span: Range<usize>) {
        let span = self.n.original_span(span);
        if span.start < span.end {
            push(self.out, rule, confidence, span);
        }
    }

    /// Reports one URL. `base` is the offset of `s` in the normalised text;
    /// `whole` is the URL's span; `exact` is false when `s` was decoded
    /// (then every span is `whole`).
    fn report(&mut self, s: &[u8], base: usize, whole: Range<usize>, exact: bool) {
        let p = parse_after_scheme(s, s.len());
        let host = percent_decode(s.get(p.host.clone()).unwrap_or(&[]));
        let path = s.get(p.path.clone()).unwrap_or(&[]);
        match classify_host(&host, path) {
            Some(HostClass::Metadata) => self.emit("metadata-address", Confidence::High, whole.clone()),
            Some(HostClass::Internal) => self.emit("internal-address", Confidence::High, whole.clone()),
            Some(HostClass::Exfil) => self.emit("exfil-host", Confidence::High, whole.clone()),
            None => {}
        }
        let local = |r: Range<usize>| if exact { base + r.start..base + r.end } else { whole.clone() };
        if let Some(ui) = p.userinfo.clone() {
            let info = percent_decode(s.get(ui.clone()).unwrap_or(&[]));
            match info.iter().position(|&b| b == b':') {
                Some(c) => {
                    let pass = info.get(c + 1..).unwrap_or(&[]);
                    if !pass.is_empty() && !is_placeholder(pass) {
                        self.emit("credentials-in-url", Confidence::High, local(ui));
                    }
                }
                None => {
                    let token_like = info.len() >= 20
                        && info.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                    if token_like && !is_placeholder(&info) {
                        self.emit("credentials-in-url", Confidence::Medium, local(ui));
                    }
                }
            }
        }
        if let Some(q) = p.query.clone() {
            let query = s.get(q.clone()).unwrap_or(&[]);
            let mut off = 0;
            for param in query.split(|&b| b == b'&' || b == b';') {
                let start = q.start + off;
                off += param.len() + 1;
                let Some(eq) = param.iter().position(|&b| b == b'=') else { continue };
                let key = percent_decode(param.get(..eq).unwrap_or(&[]));
                let raw = param.get(eq + 1..).unwrap_or(&[]);
                let value = percent_decode(raw);
                if is_secret_param(&key) && value.len() >= 6 && !is_placeholder(&value) {
                    self.emit("credentials-in-url", Confidence::Medium, local(start + eq + 1..start + param.len()));
                }
            }
        }
        let _ = p.end;
    }
}

fn is_secret_param(key: &[u8]) -> bool {
    let Ok(k) = std::str::from_utf8(key) else { return false };
    SECRET_PARAMS.contains(&k)
        || ["_token", "-token", "_secret", "-secret", "_key", "-key", "apikey", "password"]
            .iter()
            .any(|s| k.ends_with(s))
}

impl Scanner for Urls {
    fn name(&self) -> &'static str {
        "urls"
    }

    fn scan(&self, text: &str, direction: Direction, out: &mut Vec<Finding>) {
        self.scan_prepared(&Prepared::new(text), None, direction, out);
    }

    fn literals(&self) -> &[&'static str] {
        &self.literals
    }

    fn scan_prepared(
        &self,
        input: &Prepared<'_>,
        hits: Option<&[LiteralHit]>,
        direction: Direction,
        out: &mut Vec<Finding>,
    ) {
        // Plain text normalises to itself modulo case and whitespace runs, so
        // the prefilter runs on the raw bytes (usually in the engine's shared
        // pass) and most strings are never normalised; other text is
        // prefiltered after normalisation.
        if input.is_plain() {
            let raw = input.text().as_bytes();
            let may = match hits {
                Some(hits) => hits.iter().any(|&m| anchor_passes(raw, m)),
                None => self.may_match(raw),
            };
            if !may {
                return;
            }
        }
        let n = input.normalized();
        let t = n.text.as_bytes();
        if !input.is_plain() && !self.may_match(t) {
            return;
        }
        // URL candidates: (start of URL, start of authority, encoded).
        let mut cands: Vec<(usize, usize, bool)> = Vec::new();
        if let Some(re) = &self.scheme {
            for m in re.find_iter(t) {
                let encoded = t.get(m.range()).is_some_and(|x| x.contains(&b'%'));
                cands.push((m.start(), m.end(), encoded));
            }
        }
        if let Some(re) = &self.schemeless {
            for m in re.find_iter(t) {
                let start = m.end() - 2;
                if t.get(m.end()).is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'[' | b'%')) {
                    cands.push((start, m.end(), false));
                }
            }
        }
        cands.sort_unstable();
        let mut ctx = Ctx { n, text: t, out };
        let mut url_spans: Vec<Range<usize>> = Vec::new();
        // Each candidate's window ends at the next candidate, so windows are
        // disjoint and the scan is linear (a URL nested in another's path or
        // query is reported on its own; the outer one is cut short there).
        let starts: Vec<usize> = cands.iter().map(|c| c.0).collect();
        for (k, &(start, auth, encoded)) in cands.iter().enumerate() {
            let next = starts.get(k + 1..).and_then(|r| r.iter().find(|&&s| s > auth)).copied();
            let limit = (auth + URL_CAP).min(next.unwrap_or(usize::MAX)).min(ctx.text.len());
            let stop = |b: u8| is_terminator(b) || (encoded && matches!(b, b'&' | b'#'));
            let tail = ctx.text.get(auth..limit).unwrap_or(&[]);
            let end = tail.iter().position(|&b| stop(b)).map_or(limit, |p| auth + p);
            let raw = ctx.text.get(auth..end).unwrap_or(&[]);
            if raw.is_empty() {
                continue;
            }
            if is_local_file(ctx.text.get(start..auth).unwrap_or(&[])) {
                // MCP resources are often `file:///…` URIs: only system and
                // credential paths count (any file in a request is worth
                // logging).
                if is_sensitive_path(raw) {
                    ctx.emit("internal-address", Confidence::High, start..end);
                } else if direction == Direction::Request {
                    ctx.emit("internal-address", Confidence::Low, start..end);
                }
                url_spans.push(start..end);
                continue;
            }
            if encoded {
                let decoded = percent_decode(raw);
                // Skip the decoded slashes that followed the encoded scheme.
                let body = decoded.iter().position(|&b| b != b'/' && b != b'\\').and_then(|p| decoded.get(p..));
                ctx.report(body.unwrap_or(&[]), auth, start..end, false);
            } else {
                ctx.report(raw, auth, start..end, true);
            }
            url_spans.push(start..end);
        }
        if let Some(re) = &self.bare {
            scan_bare(re, &mut ctx, &url_spans, direction);
        }
    }
}

/// Whether a scheme and its separator (`file:///`, `file:/`, `file%3a%2f%2f%2f`)
/// start a URL to a file on the local machine: the `file` scheme without an
/// authority (one or three slashes; `file://host/…` names a remote host and
/// is classified like any other).
fn is_local_file(scheme_and_separator: &[u8]) -> bool {
    let Some(sep) = scheme_and_separator.strip_prefix(b"file") else { return false };
    let sep = sep.strip_prefix(b":").or_else(|| sep.strip_prefix(b"%3a")).unwrap_or(sep);
    let slashes = sep.iter().filter(|&&b| b == b'/' || b == b'\\').count()
        + sep.windows(3).filter(|w| *w == b"%2f" || *w == b"%5c").count();
    slashes != 2
}

/// System and credential locations (lowercase, without the leading `/`, as
/// the text after a local `file:` separator): `etc/passwd`, `proc/self/environ`,
/// `home/u/.ssh/id_rsa`, `c:/windows/win.ini`.
fn is_sensitive_path(path: &[u8]) -> bool {
    const ROOTS: &[&[u8]] = &[
        b"etc/",
        b"proc/",
        b"sys/",
        b"root/",
        b"boot/",
        b"dev/",
        b"var/run/",
        b"run/secrets",
        b"private/etc/",
        b"c:/windows",
        b"c:\\windows",
        b"c|/windows",
    ];
    const ANYWHERE: &[&[u8]] = &[
        b"/.ssh/",
        b"/.aws/",
        b"/.kube/",
        b"/.docker/",
        b"/.gnupg/",
        b"/.config/gcloud",
        b"/.git-credentials",
        b"/.netrc",
        b"/.env",
        b"/.npmrc",
        b"/.pypirc",
    ];
    let path = path.strip_prefix(b"/").unwrap_or(path);
    ROOTS.iter().any(|r| path.starts_with(r)) || ANYWHERE.iter().any(|a| path.windows(a.len()).any(|w| w == *a))
}

fn scan_bare(re: &Regex, ctx: &mut Ctx<'_>, url_spans: &[Range<usize>], direction: Direction) {
    let request = direction == Direction::Request;
    let mut covered = url_spans.iter().peekable();
    for caps in re.captures_iter(ctx.text) {
        let Some(m) = caps.get(0) else { continue };
        // The pattern consumes one delimiter before the address.
        let start = if m.as_bytes().first().is_some_and(|b| !b.is_ascii_alphanumeric() && *b != b'[') {
            m.start() + 1
        } else {
            m.start()
        };
        let next = ctx.text.get(m.end()).copied();
        let after_next = ctx.text.get(m.end() + 1).copied();
        if next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || (next == Some(b'.') && after_next.is_some_and(|b| b.is_ascii_alphanumeric()))
        {
            continue;
        }
        while covered.peek().is_some_and(|r| r.end <= start) {
            covered.next();
        }
        if covered.peek().is_some_and(|r| r.start <= start && start < r.end) {
            continue;
        }
        let class = if let Some(ip) = caps.get(1) {
            parse_strict_v4(std::str::from_utf8(ip.as_bytes()).unwrap_or("")).and_then(classify_v4)
        } else if let Some(v6) = caps.get(2) {
            let inner = v6.as_bytes().split(|&b| b == b'%').next().unwrap_or(&[]);
            std::str::from_utf8(inner).ok().and_then(|s| s.parse::<Ipv6Addr>().ok()).and_then(classify_v6)
        } else if caps.get(3).is_some() {
            Some(HostClass::Metadata)
        } else {
            Some(HostClass::Internal)
        };
        match class {
            Some(HostClass::Metadata) => {
                let c = if request { Confidence::High } else { Confidence::Medium };
                ctx.emit("metadata-address", c, start..m.end());
            }
            Some(HostClass::Internal) => {
                let c = if request { Confidence::Medium } else { Confidence::Low };
                ctx.emit("internal-address", c, start..m.end());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scanner() -> &'static Urls {
        static S: std::sync::OnceLock<Urls> = std::sync::OnceLock::new();
        S.get_or_init(Urls::new)
    }

    fn scan_dir(text: &str, dir: Direction) -> Vec<Finding> {
        let mut out = Vec::new();
        scanner().scan(text, dir, &mut out);
        out
    }

    fn rules(text: &str) -> Vec<String> {
        scan_dir(text, Direction::Request).into_iter().map(|f| f.rule.into_owned()).collect()
    }

    #[test]
    fn patterns_compile() {
        for p in [SCHEME_RE, SCHEMELESS_RE, BARE_RE] {
            assert!(build(p).is_some(), "{p}");
        }
    }

    #[test]
    fn ipv4_encodings() {
        let v = |s: &str| parse_ipv4(s.as_bytes());
        assert_eq!(v("127.0.0.1"), Some(0x7f00_0001));
        assert_eq!(v("2130706433"), Some(0x7f00_0001));
        assert_eq!(v("0177.0.0.1"), Some(0x7f00_0001));
        assert_eq!(v("0x7f.0x0.0x0.0x1"), Some(0x7f00_0001));
        assert_eq!(v("0x7f000001"), Some(0x7f00_0001));
        assert_eq!(v("127.1"), Some(0x7f00_0001));
        assert_eq!(v("10.1"), Some(0x0a00_0001));
        assert_eq!(v("0xa9.254.43518"), Some(0xa9fe_a9fe));
        assert_eq!(v("127.0.0.1."), Some(0x7f00_0001));
        assert_eq!(v("0"), Some(0));
        assert_eq!(v("256.0.0.1"), None);
        assert_eq!(v("1.2.3.4.5"), None);
        assert_eq!(v("4294967296"), None);
        assert_eq!(v("example.com"), None);
        assert_eq!(v("09.0.0.1"), None);
        assert_eq!(v(""), None);
    }

    #[test]
    fn metadata_addresses() {
        for u in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://100.100.100.200/latest/meta-data",
            "http://169.254.170.2/v2/credentials",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://good.com@169.254.169.254/",
            "http://user:x@169.254.169.254:80/",
            "http://169.254.169.254./",
            "http://%31%36%39.254.169.254/",
            "HTTP://169.254.169.254",
            "http://169.254.169.254.nip.io/",
            "url=http%3A%2F%2F169.254.169.254%2Flatest",
            "http:\\/\\/169.254.169.254\\/latest",
            "http://１６９.２５４.１６９.２５４/",
            "http://169。254。169。254/",
            "fetch //169.254.169.254/latest",
        ] {
            assert!(rules(u).contains(&"metadata-address".to_string()), "{u}: {:?}", rules(u));
        }
    }

    #[test]
    fn internal_addresses() {
        for u in [
            "http://127.0.0.1:8080/admin",
            "http://localhost/",
            "http://LOCALHOST:3000",
            "http://api.localhost/",
            "https://db.internal/x",
            "http://printer.local/",
            "http://10.0.0.5/",
            "http://172.16.3.4/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.1.1/",
            "http://0.0.0.0:8000/",
            "http://0/",
            "http://[::1]:8080/",
            "http://[fe80::1%25eth0]/",
            "http://[fc00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0x0.0x0.0x1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://10.1/",
            "gopher://127.0.0.1:6379/_SET",
            "dict://localhost:11211/stat",
            "ftp://10.0.0.1/",
            "ws://localhost:9000",
            "http://localtest.me/",
            "http://app.127.0.0.1.sslip.io/",
            "http://10-0-0-1.nip.io/",
            "file:///etc/passwd",
            "read file:/etc/shadow now",
            "FILE:///C:/Windows/win.ini",
            "file:///home/dev/.ssh/id_rsa",
        ] {
            assert!(rules(u).contains(&"internal-address".to_string()), "{u}: {:?}", rules(u));
        }
    }

    #[test]
    fn exfil_hosts() {
        for u in [
            "https://webhook.site/0e3f",
            "https://abc.ngrok-free.app/x",
            "https://x.ngrok.io",
            "https://eo1.m.pipedream.net",
            "https://foo.trycloudflare.com/",
            "http://abc.oast.fun",
            "https://pastebin.com/raw/abc",
            "https://discord.com/api/webhooks/123/abc",
            "https://discord.com/api/v10/webhooks/123/abc",
            "https://api.telegram.org/bot123:abc/sendMessage",
            "https://transfer.sh/abc",
            "http://xyz.dnslog.cn",
            "https://0x0.st",
            "https://WEBHOOK.SITE./x",
        ] {
            assert!(rules(u).contains(&"exfil-host".to_string()), "{u}: {:?}", rules(u));
        }
    }

    #[test]
    fn credentials() {
        let t = "clone https://alice:s3cr3tPass@git.example.com/repo.git now";
        let f = scan_dir(t, Direction::Request);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "credentials-in-url");
        assert_eq!(f[0].confidence, Confidence::High);
        assert_eq!(&t[f[0].span.clone()], "alice:s3cr3tPass");
        let t = "GET https://api.example.com/v1?q=x&api_key=AbCdEf123456&x=1";
        let f = scan_dir(t, Direction::Request);
        assert_eq!(f.len(), 1);
        assert_eq!(&t[f[0].span.clone()], "AbCdEf123456");
        assert!(
            rules("https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/x").contains(&"credentials-in-url".into())
        );
        assert!(
            rules("https://s3.amazonaws.com/b/k?X-Amz-Signature=abcdef0123456789")
                .contains(&"credentials-in-url".into())
        );
        // Placeholders and plain user names are not credentials.
        for u in [
            "postgres://user:password@db.example.com/app",
            "https://user:<password>@example.com",
            "https://u:${PASS}@example.com",
            "https://api.example.com/?api_key=YOUR_API_KEY",
            "https://api.example.com/?key={key}",
            "ssh://git@github.com/x.git",
            "https://example.com/?page=2&sort=asc",
            "https://example.com/?token=",
        ] {
            assert!(!rules(u).contains(&"credentials-in-url".into()), "{u}: {:?}", rules(u));
        }
    }

    #[test]
    fn local_files() {
        // A resource URI in a result is not a finding; in a request, Low.
        assert!(scan_dir("file:///srv/data/report.txt", Direction::Response).is_empty());
        let f = scan_dir("file:///srv/data/report.txt", Direction::Request);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].confidence, Confidence::Low);
        let f = scan_dir("see file:///etc/passwd", Direction::Description);
        assert_eq!(f[0].confidence, Confidence::High);
        // `file://host/…` names a host.
        assert!(scan_dir("file://fileserver.example.com/share/x", Direction::Request).is_empty());
    }

    #[test]
    fn benign_urls() {
        for u in [
            "See https://docs.rs/regex and https://github.com/rust-lang/rust/issues/1",
            "http://example.com/path?x=1#frag",
            "https://192.0.2.1/ and 8.8.8.8:53",
            "version 1.2.3.4 released",
            "https://discord.com/channels/1/2",
            "https://notpastebin.com/",
            "// just a comment here",
            "https://telegram.org/bot",
            "https://metadata.example.com/",
            "https://10.0.0.1.example.com/",
        ] {
            assert!(rules(u).is_empty(), "{u}: {:?}", rules(u));
        }
    }

    #[test]
    fn bare_addresses() {
        let f = scan_dir("connect to 169.254.169.254:80 please", Direction::Request);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "metadata-address");
        assert_eq!(f[0].confidence, Confidence::High);
        assert_eq!(f[0].span, 11..29);
        let f = scan_dir("server at 10.0.0.5.", Direction::Response);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].confidence, Confidence::Low);
        let f = scan_dir("host=[::1]:8080 and localhost:5432", Direction::Request);
        assert_eq!(f.len(), 2);
        assert_eq!(scan_dir("metadata.google.internal", Direction::Request).len(), 1);
        // Inside a URL, only the URL finding is reported.
        assert_eq!(scan_dir("http://10.0.0.1:8080/x", Direction::Request).len(), 1);
    }

    #[test]
    fn nested_and_spans() {
        let t = "go https://example.com/redirect?next=http%3A%2F%2F127.0.0.1%2Fadmin&x=1 ok";
        let f = scan_dir(t, Direction::Request);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(&t[f[0].span.clone()], "http%3A%2F%2F127.0.0.1%2Fadmin");
        let t = "x http://ex.com/http://169.254.169.254/ y";
        let f = scan_dir(t, Direction::Request);
        assert_eq!(f.len(), 1);
        assert_eq!(&t[f[0].span.clone()], "http://169.254.169.254/");
    }

    #[test]
    fn linear_on_adversarial_input() {
        let big = "http://a/".repeat(50_000) + &"http%3a%2f%2f".repeat(20_000) + &"1.1.1.1 ".repeat(20_000);
        let t = std::time::Instant::now();
        let _ = scan_dir(&big, Direction::Request);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    proptest! {
        #[test]
        fn never_panics_spans_valid(s in "\\PC{0,32}", u in "(http://|//|%3a%2f%2f|@|:|\\[|\\]|::1|127\\.0\\.0\\.1|0x7f|\\.|/|\\?|token=|abcdefgh|&| |\u{FF0E}|\u{200B})*", t in "\\PC{0,32}") {
            let text = format!("{s}{u}{t}");
            let f = scan_dir(&text, Direction::Request);
            prop_assert!(f.len() <= text.len());
            for x in f {
                prop_assert!(x.span.start < x.span.end && x.span.end <= text.len());
                prop_assert!(text.is_char_boundary(x.span.start) && text.is_char_boundary(x.span.end));
            }
        }
    }
}
