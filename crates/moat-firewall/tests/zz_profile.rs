#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
use moat_firewall::scanners::{injection::Injection, unicode::HiddenText, urls::Urls};
use moat_firewall::{Direction, Engine, EngineConfig, RuleSet, Scanner};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;
/// Small deterministic PRNG (xorshift) so inputs are identical across runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b"0123456789abcdef"[(self.next() % 16) as usize])).collect()
    }
    fn uuid(&mut self) -> String {
        format!("{}-{}-4{}-a{}-{}", self.hex(8), self.hex(4), self.hex(3), self.hex(3), self.hex(12))
    }
}

const WORDS: &[&str] = &[
    "the",
    "result",
    "of",
    "query",
    "returned",
    "rows",
    "for",
    "customer",
    "account",
    "service",
    "deployment",
    "and",
    "was",
    "updated",
    "after",
    "review",
    "with",
    "status",
    "pending",
    "approved",
    "latency",
    "request",
    "function",
    "return",
    "value",
    "error",
    "handler",
    "config",
    "cluster",
    "region",
    "node",
    "metric",
];

fn prose(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick(WORDS));
        if rng.next().is_multiple_of(12) {
            s.push_str(". ");
        }
    }
    s
}

/// One benign record: ID- and hash-heavy results, prose, logs or code.
fn record(rng: &mut Rng) -> Value {
    match rng.next() % 4 {
        0 => json!({
            "id": rng.uuid(),
            "sha": rng.hex(40),
            "digest": format!("sha256:{}", rng.hex(64)),
            "created_at": format!("2024-05-{:02}T12:{:02}:00Z", rng.next() % 28 + 1, rng.next() % 60),
            "count": rng.next() % 10_000,
            "tags": ["prod", "eu-west-1", rng.hex(8)],
            "etag": rng.hex(32),
        }),
        1 => json!({"type": "text", "text": prose(rng, 60)}),
        2 => json!({"type": "text", "text": (0..6).map(|_| format!(
            "2024-05-01T12:00:{:02}Z INFO request_id={} path=/api/v1/items/{} status=200 latency={}ms\n",
            rng.next() % 60, rng.uuid(), rng.next() % 100_000, rng.next() % 900)).collect::<String>()}),
        _ => json!({"type": "text", "text": format!(
            "fn handle(req: Request) -> Result<Response> {{\n    let id = req.param(\"id\")?;\n    let row = db.query(\"SELECT name FROM items WHERE id = $1\", &[&id]).await?;\n    // {}\n    Ok(Response::json(&row))\n}}\n",
            prose(rng, 12))}),
    }
}

fn benign(size: usize) -> Value {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut content = Vec::new();
    let mut len = 0;
    while len < size {
        let r = record(&mut rng);
        len += r.to_string().len() + 1;
        content.push(r);
    }
    json!({"content": content, "isError": false})
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k);
            strings(x, out)
        }),
        _ => {}
    }
}

fn time(name: &str, bytes: usize, mut f: impl FnMut()) {
    for _ in 0..50 {
        f();
    }
    let n = 2000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / n as f64);
    }
    println!("{name:>24}: {:8.2} us  {:8.1} MiB/s", best * 1e6, bytes as f64 / best / 1048576.0);
}

#[test]
#[ignore]
fn profile() {
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    println!("{} strings, {} bytes json", ss.len(), bytes);
    let rules = RuleSet::builtin().unwrap();
    let inj = Injection::new();
    let hid = HiddenText::new();
    let urls = Urls::new();
    let eng = moat_firewall::standard_engine(&EngineConfig::default()).unwrap();
    let plain = Engine::new(EngineConfig::default()).unwrap();
    let mut out = Vec::new();
    for d in [Direction::Response, Direction::Request] {
        println!("{d:?}");
        time("standard_engine", bytes, || {
            black_box(eng.scan_json(&v, d));
        });
        time("engine rules only", bytes, || {
            black_box(plain.scan_json(&v, d));
        });
        time("ruleset", bytes, || {
            for s in &ss {
                out.clear();
                rules.scan(s, d, &mut out);
            }
        });
        time("injection", bytes, || {
            for s in &ss {
                out.clear();
                inj.scan(s, d, &mut out);
            }
        });
        time("hidden", bytes, || {
            for s in &ss {
                out.clear();
                hid.scan(s, d, &mut out);
            }
        });
        time("urls", bytes, || {
            for s in &ss {
                out.clear();
                urls.scan(s, d, &mut out);
            }
        });
        time("normalize", bytes, || {
            for s in &ss {
                black_box(moat_firewall::normalize::normalize(s));
            }
        });
    }
}

#[test]
#[ignore]
fn profile_ac() {
    use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind};
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let inj = Injection::new();
    let urls = Urls::new();
    let mut out = Vec::new();
    let mut hit_i = 0;
    let mut hit_u = 0;
    for s in &ss {
        let p = moat_firewall::normalize::Prepared::new(s);
        out.clear();
        inj.scan_prepared(&p, None, Direction::Response, &mut out);
        // approximate: did it normalise?
        let _ = &p;
        if format!("{:?}", p).contains("normalized: OnceCell(Normalized") {
            hit_i += 1;
        }
        let p = moat_firewall::normalize::Prepared::new(s);
        out.clear();
        urls.scan_prepared(&p, None, Direction::Response, &mut out);
        if format!("{:?}", p).contains("normalized: OnceCell(Normalized") {
            hit_u += 1;
            println!("URL HIT {s:?}");
        }
    }
    println!("normalised by injection {hit_i}, by urls {hit_u} of {}", ss.len());
    let words = [
        "ignor",
        "disregard",
        "forget",
        "overrid",
        "bypass",
        "abandon",
        "discard",
        "aside",
        "attention",
        "mind",
        "instruction",
        "directive",
        "prompt",
        "now",
        "follow",
        "obey",
        "system",
        "developer",
        "admin",
    ];
    for kind in [AhoCorasickKind::DFA, AhoCorasickKind::ContiguousNFA] {
        for ci in [true, false] {
            for overlapping in [true, false] {
                let ac = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(ci)
                    .kind(Some(kind))
                    .match_kind(MatchKind::Standard)
                    .build(words)
                    .unwrap();
                time(&format!("{kind:?} ci={ci} ov={overlapping}"), bytes, || {
                    for s in &ss {
                        if overlapping {
                            black_box(ac.find_overlapping_iter(s.as_bytes()).count());
                        } else {
                            black_box(ac.find_iter(s.as_bytes()).count());
                        }
                    }
                });
            }
        }
    }
}

#[test]
#[ignore]
fn profile_rules() {
    use moat_firewall::rules::{RuleSetOptions, builtin_rules};
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let global: Vec<_> = builtin_rules().filter(|r| r.keywords.is_empty()).copied().collect();
    let gated: Vec<_> = builtin_rules().filter(|r| !r.keywords.is_empty()).copied().collect();
    println!("global {} gated {}", global.len(), gated.len());
    for r in &global {
        println!("  global {} {}", r.id, r.pattern);
    }
    let g = RuleSet::compile(global.iter(), &[], RuleSetOptions::default()).unwrap();
    let k = RuleSet::compile(gated.iter(), &[], RuleSetOptions::default()).unwrap();
    let mut out = Vec::new();
    for d in [Direction::Response, Direction::Request] {
        time(&format!("global {d:?}"), bytes, || {
            for s in &ss {
                out.clear();
                g.scan(s, d, &mut out);
            }
        });
        time(&format!("gated {d:?}"), bytes, || {
            for s in &ss {
                out.clear();
                k.scan(s, d, &mut out);
            }
        });
    }
    let kws: Vec<&str> = gated
        .iter()
        .flat_map(|r| r.keywords.iter().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    println!("{} keywords", kws.len());
    let ac = aho_corasick::AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&kws)
        .unwrap();
    time("keyword AC alone", bytes, || {
        for s in &ss {
            black_box(ac.find_overlapping_iter(s.as_bytes()).count());
        }
    });
    let mut hits = std::collections::BTreeMap::new();
    for s in &ss {
        for m in ac.find_overlapping_iter(s.as_bytes()) {
            *hits.entry(kws[m.pattern().as_usize()]).or_insert(0) += 1;
        }
    }
    println!("keyword hits {hits:?}");
}

#[test]
#[ignore]
fn profile_combined() {
    use moat_firewall::rules::builtin_rules;
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let mut kws: Vec<String> = builtin_rules()
        .flat_map(|r| r.keywords.iter().map(|s| s.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let base = kws.len();
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/scanners/injection.rs")).unwrap();
    let re = regex::Regex::new(r#""\^?([^"\s$]+)\$?""#).unwrap();
    for line in src.lines().filter(|l| {
        l.contains("keywords: &[") || l.trim_start().starts_with("&[\"") || l.trim_start().starts_with("\"^")
    }) {
        for c in re.captures_iter(line) {
            kws.push(c[1].to_string());
        }
    }
    for a in [
        ":/",
        ":\\",
        ":%2f",
        "%3a",
        "//",
        "[",
        "localhost:",
        "0.",
        "1.",
        "2.",
        "3.",
        "4.",
        "5.",
        "6.",
        "7.",
        "8.",
        "9.",
    ] {
        kws.push(a.into());
    }
    kws.sort();
    kws.dedup();
    println!("{} rule keywords, {} combined", base, kws.len());
    for (name, list) in [("rules only", &kws[..0]), ("combined", &kws[..])] {
        let list: Vec<&str> = if list.is_empty() {
            builtin_rules().flat_map(|r| r.keywords.iter().copied()).collect()
        } else {
            list.iter().map(|s| s.as_str()).collect()
        };
        for kind in [aho_corasick::AhoCorasickKind::DFA, aho_corasick::AhoCorasickKind::ContiguousNFA] {
            let ac = aho_corasick::AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(kind))
                .build(&list)
                .unwrap();
            println!("mem {}", ac.memory_usage());
            time(&format!("{name} {kind:?}"), bytes, || {
                for s in &ss {
                    black_box(ac.find_overlapping_iter(s.as_bytes()).count());
                }
            });
        }
    }
}

#[test]
#[ignore]
fn profile_overhead() {
    use moat_firewall::rules::{RuleSetOptions, builtin_rules};
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let joined = ss.join("\n");
    let global: Vec<_> = builtin_rules().filter(|r| r.keywords.is_empty()).copied().collect();
    let g = RuleSet::compile(global.iter(), &[], RuleSetOptions::default()).unwrap();
    let set = regex::bytes::RegexSetBuilder::new(global.iter().map(|r| r.pattern)).unicode(false).build().unwrap();
    let mut out = Vec::new();
    time("global per string", bytes, || {
        for s in &ss {
            out.clear();
            g.scan(s, Direction::Response, &mut out);
        }
    });
    time("global joined", bytes, || {
        out.clear();
        g.scan(&joined, Direction::Response, &mut out);
    });
    time("set is_match per string", bytes, || {
        for s in &ss {
            black_box(set.is_match(s.as_bytes()));
        }
    });
    time("set is_match joined", bytes, || {
        black_box(set.is_match(joined.as_bytes()));
    });
    let eng = moat_firewall::standard_engine(&EngineConfig::default()).unwrap();
    time("engine per string", bytes, || {
        for s in &ss {
            black_box(eng.scan_str(s, Direction::Response));
        }
    });
    time("engine joined", bytes, || {
        black_box(eng.scan_str(&joined, Direction::Response));
    });
    time("engine json", bytes, || {
        black_box(eng.scan_json(&v, Direction::Response));
    });
    let lens: Vec<usize> = ss.iter().map(|s| s.len()).collect();
    println!("{lens:?}");
}

#[test]
#[ignore]
fn profile_global_each() {
    use moat_firewall::rules::builtin_rules;
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let global: Vec<_> = builtin_rules().filter(|r| r.keywords.is_empty()).copied().collect();
    let all = regex::bytes::RegexSetBuilder::new(global.iter().map(|r| r.pattern)).unicode(false).build().unwrap();
    time("all", bytes, || {
        for s in &ss {
            black_box(all.is_match(s.as_bytes()));
        }
    });
    for i in 0..global.len() {
        let one = regex::bytes::RegexSetBuilder::new([global[i].pattern]).unicode(false).build().unwrap();
        let without = regex::bytes::RegexSetBuilder::new(
            global.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, r)| r.pattern),
        )
        .unicode(false)
        .build()
        .unwrap();
        time(&format!("only {} {i}", global[i].id), bytes, || {
            for s in &ss {
                black_box(one.is_match(s.as_bytes()));
            }
        });
        time(&format!("without {} {i}", global[i].id), bytes, || {
            for s in &ss {
                black_box(without.is_match(s.as_bytes()));
            }
        });
    }
}

#[test]
#[ignore]
fn profile_loop() {
    let v = benign(64 * 1024);
    let eng = moat_firewall::standard_engine(&EngineConfig::default()).unwrap();
    let t = Instant::now();
    while t.elapsed().as_secs() < 8 {
        for d in [Direction::Response, Direction::Request] {
            black_box(eng.scan_json(&v, d));
        }
    }
}

#[test]
#[ignore]
fn profile_ac_options() {
    use moat_firewall::rules::builtin_rules;
    let v = benign(4096);
    let bytes = v.to_string().len();
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let mut kws: Vec<String> = builtin_rules().flat_map(|r| r.keywords.iter().map(|s| s.to_string())).collect();
    kws.extend(Injection::new().literals().iter().map(|s| s.to_string()));
    kws.extend(Urls::new().literals().iter().map(|s| s.to_string()));
    kws.sort();
    kws.dedup();
    println!("{} literals", kws.len());
    for (bc, pf) in [(true, true), (false, true), (true, false), (false, false)] {
        let ac = aho_corasick::AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .byte_classes(bc)
            .prefilter(pf)
            .build(&kws)
            .unwrap();
        time(&format!("classes={bc} prefilter={pf} mem={}", ac.memory_usage()), bytes, || {
            for s in &ss {
                black_box(ac.find_overlapping_iter(s.as_bytes()).count());
            }
        });
    }
    // lowercase patterns + lowercase text copy (no case-insensitivity) for comparison
    let ac =
        aho_corasick::AhoCorasickBuilder::new().kind(Some(aho_corasick::AhoCorasickKind::DFA)).build(&kws).unwrap();
    time("case-sensitive", bytes, || {
        for s in &ss {
            black_box(ac.find_overlapping_iter(s.as_bytes()).count());
        }
    });
}
