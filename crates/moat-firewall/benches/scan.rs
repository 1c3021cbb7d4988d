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

/// Standard base64 with padding.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len() / 3 * 4 + 4);
    for c in data.chunks(3) {
        let v = c.iter().enumerate().fold(0u32, |v, (k, &b)| v | u32::from(b) << (16 - 8 * k));
        for k in 0..4 {
            s.push(if k <= c.len() { char::from(A[(v >> (18 - 6 * k)) as usize & 63]) } else { '=' });
        }
    }
    s
}

/// Text made of base64 runs (about 400 characters each) that decode to prose
/// sprinkled with near-miss keywords, so that every run is decoded and
/// scanned, up to `size` bytes.
fn base64_text(rng: &mut Rng, size: usize) -> String {
    let mut s = String::new();
    while s.len() < size {
        let mut plain = prose(rng, 40);
        plain.push_str(rng.pick(&[" token: abc ", " ignore the ", " password: x ", " rm -f ", " http://example.com "]));
        s.push_str(&b64(plain.as_bytes()));
        s.push(' ');
    }
    s.truncate(size);
    s
}

fn repeat_to(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len() + 1)[..size].to_string()
}

/// Hostile shapes: near-miss keywords, long base64 (random, and runs that
/// decode to text), separators, headers without end markers, deep nesting.
fn hostile(kind: &str, size: usize) -> Value {
    match kind {
        "near-miss-keywords" => json!({"text": repeat_to("key= token: secret=\"x\" password: api_key ", size)}),
        "base64-run" => {
            let mut rng = Rng(7);
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let s: String = (0..size).map(|_| char::from(alphabet[(rng.next() % 64) as usize])).collect();
            json!({"text": s})
        }
        // Many runs that decode to text: in one string (the per-string
        // decoding budget applies) and in many 2 KiB strings (it does not).
        "base64-text-runs" => json!({"text": base64_text(&mut Rng(11), size)}),
        "base64-text-strings" => {
            let mut rng = Rng(13);
            let strings: Vec<Value> = (0..size / 2048).map(|_| json!(base64_text(&mut rng, 2048))).collect();
            json!({"items": strings})
        }
        // The shortest runs that are decoded (24 characters, 18 bytes of text).
        "base64-short-runs" => {
            let mut rng = Rng(17);
            let mut s = String::new();
            while s.len() < size {
                let words = format!("{} {} {} token", rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS));
                s.push_str(&b64(format!("{words:<18.18}").as_bytes()));
                s.push(' ');
            }
            s.truncate(size);
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

const HOSTILE: &[&str] = &[
    "near-miss-keywords",
    "base64-run",
    "base64-text-runs",
    "base64-text-strings",
    "base64-short-runs",
    "separators",
    "pem-headers",
    "digits",
    "at-signs",
    "deep-nesting",
];

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
            // Up to three attempts: on a shared machine a burst of load can
            // slow one measurement down; a quadratic scan fails them all.
            let mut ratio = f64::INFINITY;
            for attempt in 1..=3 {
                let ts = best_of(engine, &small, direction, 5);
                let tl = best_of(engine, &large, direction, 3);
                ratio = tl.as_secs_f64() / ts.as_secs_f64().max(1e-9);
                println!(
                    "linearity {kind:>20} {direction:?}: 64 KiB {ts:?}, 512 KiB {tl:?}, ratio {ratio:.1}{}",
                    if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() }
                );
                if ratio < 24.0 {
                    break;
                }
            }
            assert!(ratio < 24.0, "{kind} {direction:?} looks superlinear: ratio {ratio:.1}");
        }
    }
}

/// p50 and p99 of one 4 KiB result, Response and Request; alongside, with
/// samples interleaved, the same engine without base64 decoding.
fn latency_4k(engine: &Engine, plain: &Engine) {
    let value = benign(4 * 1024);
    for direction in [Direction::Response, Direction::Request] {
        let mut on = Vec::with_capacity(20_000);
        let mut off = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            for (e, samples) in [(engine, &mut on), (plain, &mut off)] {
                let t = Instant::now();
                black_box(e.scan_json(black_box(&value), direction));
                samples.push(t.elapsed());
            }
        }
        for samples in [&mut on, &mut off] {
            samples.sort();
        }
        let at = |s: &[Duration], q: f64| s[((s.len() as f64 * q) as usize).min(s.len() - 1)];
        println!(
            "4 KiB {direction:?}: p50 {:?}, p99 {:?}, max {:?} (without base64 decoding: p50 {:?}, p99 {:?})",
            at(&on, 0.5),
            at(&on, 0.99),
            at(&on, 1.0),
            at(&off, 0.5),
            at(&off, 0.99)
        );
    }
}

/// The cost of base64 decoding on benign JSON and on the hostile inputs: the
/// same engine with and without it, interleaved (best of many runs each, so
/// that load on a shared machine affects both alike).
fn base64_overhead(engine: &Engine, plain: &Engine) {
    let mut inputs: Vec<(String, Value)> =
        [4, 64, 1024].iter().map(|&k| (format!("benign {k} KiB"), benign(k * 1024))).collect();
    inputs.extend(HOSTILE.iter().map(|kind| (format!("hostile {kind} 64 KiB"), hostile(kind, 64 * 1024))));
    for (name, value) in &inputs {
        let bytes = value.to_string().len() as f64;
        for direction in [Direction::Response, Direction::Request] {
            let (mut on, mut off) = (Duration::MAX, Duration::MAX);
            let runs = if name.starts_with("benign") && !name.contains("1024") { 25 } else { 3 };
            for _ in 0..20 {
                on = on.min(best_of(engine, value, direction, runs));
                off = off.min(best_of(plain, value, direction, runs));
            }
            let mib = |d: Duration| bytes / d.as_secs_f64() / (1024.0 * 1024.0);
            println!(
                "base64 decoding, {name} {direction:?}: on {on:?} ({:.0} MiB/s), off {off:?} ({:.0} MiB/s), {:+.1}%",
                mib(on),
                mib(off),
                100.0 * (on.as_secs_f64() / off.as_secs_f64() - 1.0)
            );
        }
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
    let plain = moat_firewall::standard_engine(&EngineConfig::default()).unwrap().with_base64_decoding(false);
    latency_4k(&engine, &plain);
    base64_overhead(&engine, &plain);

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
