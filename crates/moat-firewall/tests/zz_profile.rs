#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
use moat_firewall::Direction;
use moat_firewall::rules::builtin_rules;
use serde_json::{Value, json};
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
        Value::Object(m) => m.iter().for_each(|(k, x)| { out.push(k); strings(x, out) }),
        _ => {}
    }
}

#[test]
#[ignore]
fn keyword_hits() {
    let v = benign(64 * 1024);
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    for d in [Direction::Response, Direction::Request] {
        let mut kws: Vec<(&str, &str)> = Vec::new();
        for r in builtin_rules().filter(|r| r.directions.contains(d)) { for k in r.keywords { kws.push((k, r.id)); } }
        let ac = aho_corasick::AhoCorasickBuilder::new().ascii_case_insensitive(true).build(kws.iter().map(|k| k.0)).unwrap();
        let mut hits = std::collections::BTreeMap::new();
        for s in &ss { for m in ac.find_overlapping_iter(s.as_bytes()) { *hits.entry(kws[m.pattern().as_usize()]).or_insert(0) += 1; } }
        println!("{d:?}: {hits:?}");
    }
}

#[test]
#[ignore]
fn global_matches() {
    let v = benign(64 * 1024);
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    for d in [Direction::Response, Direction::Request] {
        let global: Vec<_> = builtin_rules().filter(|r| r.keywords.is_empty() && r.directions.contains(d)).copied().collect();
        let set = regex::bytes::RegexSetBuilder::new(global.iter().map(|r| r.pattern)).unicode(false).build().unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for s in &ss { for i in set.matches(s.as_bytes()).iter() { *counts.entry(global[i].id).or_insert(0) += 1; } }
        println!("{d:?}: {counts:?}");
    }
    let eng = moat_firewall::standard_engine(&moat_firewall::EngineConfig::default()).unwrap();
    for d in [Direction::Response, Direction::Request] {
        let f = eng.scan_json(&v, d);
        println!("{d:?} findings: {}", f.len());
        for x in f.iter().take(5) { println!("  {x:?}"); }
    }
}

#[test]
#[ignore]
fn directions() {
    use std::time::Instant;
    let eng = moat_firewall::standard_engine(&moat_firewall::EngineConfig::default()).unwrap();
    for size in [4096, 65536] {
        let v = benign(size);
        let bytes = v.to_string().len();
        for d in [Direction::Response, Direction::Request] {
            let n = (400_000 / size).max(20);
            let mut best = f64::MAX;
            for _ in 0..9 {
                let t = Instant::now();
                for _ in 0..n { std::hint::black_box(eng.scan_json(&v, d)); }
                best = best.min(t.elapsed().as_secs_f64() / n as f64);
            }
            println!("{size} {d:?}: {:.2} us {:.1} MiB/s", best * 1e6, bytes as f64 / best / 1048576.0);
        }
    }
}

#[test]
#[ignore]
fn loop_dir() {
    let d = if std::env::var("DIR").as_deref() == Ok("req") { Direction::Request } else { Direction::Response };
    let v = benign(64 * 1024);
    let eng = moat_firewall::standard_engine(&moat_firewall::EngineConfig::default()).unwrap();
    let t = std::time::Instant::now();
    while t.elapsed().as_secs() < 6 { std::hint::black_box(eng.scan_json(&v, d)); }
}

#[test]
#[ignore]
fn ab() {
    use std::time::Instant;
    let v = benign(4096);
    let mut ss = Vec::new();
    strings(&v, &mut ss);
    let bytes: usize = ss.iter().map(|s| s.len()).sum();
    let rules = moat_firewall::RuleSet::builtin().unwrap();
    let eng = moat_firewall::Engine::new(moat_firewall::EngineConfig::default()).unwrap();
    let std_eng = moat_firewall::standard_engine(&moat_firewall::EngineConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut best = [[f64::MAX; 2]; 3];
    for _round in 0..15 {
        for (di, d) in [Direction::Response, Direction::Request].into_iter().enumerate() {
            let t = Instant::now();
            for _ in 0..500 { for s in &ss { out.clear(); rules.scan(s, d, &mut out); } }
            best[0][di] = best[0][di].min(t.elapsed().as_secs_f64() / 500.0);
            let t = Instant::now();
            for _ in 0..500 { std::hint::black_box(eng.scan_json(&v, d)); }
            best[1][di] = best[1][di].min(t.elapsed().as_secs_f64() / 500.0);
            let t = Instant::now();
            for _ in 0..500 { std::hint::black_box(std_eng.scan_json(&v, d)); }
            best[2][di] = best[2][di].min(t.elapsed().as_secs_f64() / 500.0);
        }
    }
    for (i, name) in ["ruleset.scan", "engine rules-only", "standard engine"].iter().enumerate() {
        println!("{name:>20}: response {:.2} us, request {:.2} us ({} string bytes)", best[i][0] * 1e6, best[i][1] * 1e6, bytes);
    }
}
