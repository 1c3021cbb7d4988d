//! Scan throughput on benign and hostile JSON, rule-set compile time, and a
//! linearity check (asserted before measuring: scanning 8× the input must
//! take well under 64× the time).
//!
//! `cargo bench -p moat-firewall --bench scan -- --warm-up-time 1 --measurement-time 3`
// A benchmark harness, not library code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput};
use moat_firewall::{Direction, Engine, EngineConfig, RuleSet};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};

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

fn repeat_to(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len() + 1)[..size].to_string()
}

/// Hostile shapes: near-miss keywords, long base64, separators, headers
/// without end markers, deep nesting.
fn hostile(kind: &str, size: usize) -> Value {
    match kind {
        "near-miss-keywords" => json!({"text": repeat_to("key= token: secret=\"x\" password: api_key ", size)}),
        "base64-run" => {
            let mut rng = Rng(7);
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let s: String = (0..size).map(|_| char::from(alphabet[(rng.next() % 64) as usize])).collect();
            json!({"text": s})
        }
        "separators" => json!({"text": repeat_to("a;b|c&&d `e` $(f) ../ 1234 5678 ' or ", size)}),
        "pem-headers" => {
            json!({"text": repeat_to("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC", size)})
        }
        "digits" => json!({"text": repeat_to("4111 1111 1111 1111 123-45-6789 +14155550123 ", size)}),
        "at-signs" => json!({"text": repeat_to("a@b.c@d.e@", size)}),
        "deep-nesting" => {
            let mut v = json!("leaf key=value");
            let depth = (size / 16).min(120);
            for _ in 0..depth {
                v = json!({"k": [v, "token: abc"]});
            }
            let n = size / v.to_string().len().max(1) + 1;
            Value::Array(vec![v; n])
        }
        _ => unreachable!(),
    }
}

const HOSTILE: &[&str] =
    &["near-miss-keywords", "base64-run", "separators", "pem-headers", "digits", "at-signs", "deep-nesting"];

fn best_of(engine: &Engine, value: &Value, direction: Direction, runs: usize) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(engine.scan_json(black_box(value), direction));
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Scanning 8× the bytes must cost less than 24× the time (linear: ~8×;
/// quadratic: ~64×).
fn assert_linear(engine: &Engine) {
    for kind in HOSTILE {
        for direction in [Direction::Request, Direction::Response] {
            let small = hostile(kind, 64 * 1024);
            let large = hostile(kind, 512 * 1024);
            let ts = best_of(engine, &small, direction, 5);
            let tl = best_of(engine, &large, direction, 3);
            let ratio = tl.as_secs_f64() / ts.as_secs_f64().max(1e-9);
            println!("linearity {kind:>20} {direction:?}: 64 KiB {ts:?}, 512 KiB {tl:?}, ratio {ratio:.1}");
            assert!(ratio < 24.0, "{kind} {direction:?} looks superlinear: ratio {ratio:.1}");
        }
    }
}

/// p50 and p99 of one 4 KiB result, Response and Request.
fn latency_4k(engine: &Engine) {
    let value = benign(4 * 1024);
    for direction in [Direction::Response, Direction::Request] {
        let mut samples: Vec<Duration> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                black_box(engine.scan_json(black_box(&value), direction));
                t.elapsed()
            })
            .collect();
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!("4 KiB {direction:?}: p50 {:?}, p99 {:?}, max {:?}", at(0.5), at(0.99), at(1.0));
    }
}

fn main() {
    let t = Instant::now();
    let rules = RuleSet::builtin().unwrap();
    println!("RuleSet::builtin: {} rules compiled in {:?}", rules.len(), t.elapsed());
    let t = Instant::now();
    let engine = moat_firewall::standard_engine(&EngineConfig::default()).unwrap();
    println!("standard_engine (all scanners): {:?}", t.elapsed());

    assert_linear(&engine);
    latency_4k(&engine);

    let mut c = Criterion::default().configure_from_args();

    c.bench_function("compile/builtin", |b| b.iter(|| black_box(RuleSet::builtin().unwrap())));

    let mut group = c.benchmark_group("benign");
    for (name, size) in [("4KiB", 4 * 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let value = benign(size);
        let bytes = value.to_string().len() as u64;
        group.throughput(Throughput::Bytes(bytes));
        for direction in [Direction::Response, Direction::Request] {
            group.bench_with_input(BenchmarkId::new(format!("{direction:?}"), name), &value, |b, v| {
                b.iter(|| black_box(engine.scan_json(black_box(v), direction)))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("hostile");
    for kind in HOSTILE {
        let value = hostile(kind, 256 * 1024);
        group.throughput(Throughput::Bytes(value.to_string().len() as u64));
        group.bench_with_input(BenchmarkId::new(*kind, "256KiB"), &value, |b, v| {
            b.iter(|| black_box(engine.scan_json(black_box(v), Direction::Request)))
        });
    }
    group.finish();

    c.final_summary();
}
