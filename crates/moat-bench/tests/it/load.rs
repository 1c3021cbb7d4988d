use std::time::Duration;

use moat_bench::client::{Endpoint, Era};
use moat_bench::load::{LoadConfig, Target, Watched, run};
use moat_bench::report::{Machine, Report};

use crate::start_upstream;

fn config(rate: Option<f64>, era: Era) -> LoadConfig {
    LoadConfig {
        clients: 4,
        rate,
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(100),
        rounds: 2,
        text: "hello \"bench\"".into(),
        era,
        timeout: Duration::from_secs(5),
        accept_sse: true,
    }
}

fn targets(a: std::net::SocketAddr, b: std::net::SocketAddr) -> Vec<Target> {
    vec![
        Target { name: "direct".into(), endpoint: Endpoint { url: format!("http://{a}/mcp"), bearer: None } },
        Target {
            name: "other".into(),
            endpoint: Endpoint { url: format!("http://{b}/mcp"), bearer: Some("k".into()) },
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_against_two_targets() {
    let (a, b) = (start_upstream(false).await, start_upstream(false).await);
    let cfg = config(None, Era::Legacy);
    let me = Watched { name: "self".into(), pid: std::process::id() };
    let results = run(&cfg, &targets(a, b), &[me]).await.unwrap();
    assert_eq!(results.len(), 2);
    for r in &results {
        assert!(r.calls > 50, "{}: {} calls", r.name, r.calls);
        assert_eq!(r.errors, 0, "{}: {:?}", r.name, r.first_error);
        assert_eq!(r.histogram.len(), r.calls);
        assert!(r.elapsed >= Duration::from_millis(600), "{:?}", r.elapsed);
        assert!(r.cpu_micros.contains_key("loadgen"));
    }
    let report = Report::new(&cfg, Machine::now(), &results, None);
    assert_eq!(report.overhead.len(), 1);
    assert_eq!(report.overhead[0].baseline, "direct");
    let table = report.to_table();
    assert!(table.contains("direct") && table.contains("other"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["targets"][0]["latency_us"]["p99.9"].as_f64().unwrap() > 0.0);
    assert_eq!(json["config"]["mode"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_the_rate() {
    let (a, b) = (start_upstream(false).await, start_upstream(false).await);
    let cfg = config(Some(200.0), Era::Legacy);
    let results = run(&cfg, &targets(a, b), &[]).await.unwrap();
    for r in &results {
        // 200 calls/s over 0.6 s measured: 120 calls.
        assert!((110..=130).contains(&r.calls), "{}: {} calls", r.name, r.calls);
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        let t = r.throughput();
        assert!((120.0..=215.0).contains(&t), "{}: {t} calls/s", r.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_era_without_handshake() {
    let (a, b) = (start_upstream(false).await, start_upstream(true).await);
    let results = run(&config(Some(100.0), Era::Modern), &targets(a, b), &[]).await.unwrap();
    for r in &results {
        assert!(r.calls > 0);
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
    }
}

#[tokio::test]
async fn a_dead_target_fails_the_handshake() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Target {
        name: "gone".into(),
        endpoint: Endpoint { url: format!("http://127.0.0.1:{port}/mcp"), bearer: None },
    };
    let err = run(&config(None, Era::Legacy), &[t], &[]).await.unwrap_err();
    assert!(err.to_string().starts_with("gone: session handshake failed"), "{err}");
}
