//! stdio upstreams: the real server-everything, a scripted fake, and
//! processes that misbehave.

use std::time::Duration;

use moat_mcp::client::{CallContext, Era, EraPreference, Upstream, UpstreamError, UpstreamEvent, UpstreamOptions};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{call, children_with_env, eventually, everything, first_text, fixture, opts, python, stdio_spec};

#[tokio::test]
async fn everything_lists_calls_reads_and_prompts() {
    let Some(path) = everything() else { return };
    let up = Upstream::new("everything", stdio_spec("node", &[&path, "stdio"], &[]), opts(EraPreference::Auto));
    up.connect().await.unwrap();
    let hello = up.hello().unwrap();
    assert_eq!(hello.era, Era::Legacy, "server-everything speaks 2025-11-25 only");
    assert_eq!(hello.protocol_version, "2025-11-25");
    assert!(hello.capabilities.get("tools").is_some());

    let tools = call(&up, "tools/list", None).await;
    let names: Vec<&str> = tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo"), "{names:?}");
    let long = *names.iter().find(|n| n.contains("long-running")).expect("a long-running tool");

    let echoed = call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"hi moat"}}))).await;
    assert!(first_text(&echoed).contains("hi moat"), "{echoed}");

    // Progress comes back with the caller's own token.
    let (tx, mut rx) = mpsc::channel(16);
    let ctx = CallContext { progress: Some(tx), ..CallContext::default() };
    let done = up
        .request(
            "tools/call",
            Some(json!({"name": long, "arguments": {"duration": 1, "steps": 3},
                "_meta": {"progressToken": "client-token-7"}})),
            ctx,
        )
        .await
        .unwrap();
    assert!(first_text(&done).contains("completed"), "{done}");
    let mut seen = Vec::new();
    while let Ok(p) = rx.try_recv() {
        seen.push(p);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|p| p["progressToken"] == "client-token-7"), "{seen:?}");

    let resources = call(&up, "resources/list", None).await;
    let uri = resources["resources"][0]["uri"].as_str().expect("a resource").to_owned();
    let read = call(&up, "resources/read", Some(json!({"uri": uri}))).await;
    assert_eq!(read["contents"][0]["uri"], json!(uri));

    let prompts = call(&up, "prompts/list", None).await;
    let simple = prompts["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["arguments"].as_array().is_none_or(|a| a.iter().all(|a| a["required"] != true)))
        .expect("a prompt without required arguments");
    let got = call(&up, "prompts/get", Some(json!({"name": simple["name"]}))).await;
    assert!(got["messages"].as_array().is_some_and(|m| !m.is_empty()), "{got}");

    // A downstream client's hop keys never reach a legacy upstream, and an
    // unknown method's error passes through.
    let err = up
        .request(
            "no/such",
            Some(json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "x"}})),
            CallContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Rpc(ref e) if e.code == -32601), "{err:?}");
    up.shutdown().await;
    assert_eq!(up.request("tools/list", None, CallContext::default()).await, Err(UpstreamError::Closed));
}

#[tokio::test]
async fn everything_killed_externally_restarts_on_next_idempotent_call() {
    let Some(path) = everything() else { return };
    let marker = "MOAT_TEST_MARK=restart";
    let up = Upstream::new(
        "everything",
        stdio_spec("node", &[&path, "stdio"], &[("MOAT_TEST_MARK", "restart")]),
        opts(EraPreference::Legacy),
    );
    up.connect().await.unwrap();
    let mut events = up.events();
    let pids = children_with_env(marker);
    assert_eq!(pids.len(), 1, "one long-lived process: {pids:?}");
    // The same process serves every call.
    for _ in 0..3 {
        call(&up, "tools/list", None).await;
    }
    assert_eq!(children_with_env(marker), pids);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), nix::sys::signal::Signal::SIGKILL).unwrap();
    let tools = call(&up, "tools/list", None).await;
    assert!(tools["tools"].as_array().is_some_and(|t| !t.is_empty()));
    let now = children_with_env(marker);
    assert_eq!(now.len(), 1);
    assert_ne!(now, pids, "a new process");

    let mut got = Vec::new();
    while let Ok(ev) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        let Ok(ev) = ev else { break };
        got.push(ev);
    }
    assert!(got.iter().any(|e| matches!(e, UpstreamEvent::Died(m) if m.contains("everything"))), "{got:?}");
    assert!(got.contains(&UpstreamEvent::Restarted), "{got:?}");
    up.shutdown().await;
    eventually(5, "the child to be gone", || children_with_env(marker).is_empty()).await;
}

#[tokio::test]
async fn child_environment_holds_only_what_is_configured() {
    let Some(path) = everything() else { return };
    let up = Upstream::new(
        "everything",
        stdio_spec("node", &[&path, "stdio"], &[("CONFIGURED_VAR", "configured-value")]),
        opts(EraPreference::Legacy),
    );
    let out = call(&up, "tools/call", Some(json!({"name": "get-env", "arguments": {}}))).await;
    let text = first_text(&out);
    let env: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
    let keys: Vec<&str> = env.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert!(text.contains("configured-value"), "{text}");
    // Cargo sets these for the test process: the child must not see them.
    assert!(!text.contains("CARGO_MANIFEST_DIR"), "{keys:?}");
    assert!(!text.contains("MOAT_TEST_EVERYTHING"), "{keys:?}");
    up.shutdown().await;
}

#[tokio::test]
async fn a_legacy_only_server_refuses_forced_modern() {
    let Some(path) = everything() else { return };
    let up = Upstream::new("everything", stdio_spec("node", &[&path, "stdio"], &[]), opts(EraPreference::Modern));
    let err = up.connect().await.unwrap_err();
    assert!(
        matches!(&err, UpstreamError::Unavailable(m) if m.contains("everything") && m.contains("2026-07-28")),
        "{err:?}"
    );
    up.shutdown().await;
}

fn fake(log: &std::path::Path, python: &str, era: EraPreference, tweak: impl FnOnce(&mut UpstreamOptions)) -> Upstream {
    let mut o = opts(era);
    o.restart_backoff_min = Duration::from_millis(50);
    tweak(&mut o);
    let script = fixture("fake_stdio.py");
    let log = log.to_string_lossy().into_owned();
    Upstream::new("fake", stdio_spec(python, &[&script, &log], &[]), o)
}

fn log_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn ids_are_remapped_and_answers_may_overtake() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let up = fake(&log, &py, EraPreference::Auto, |_| {});
    up.connect().await.unwrap();
    assert_eq!(up.hello().unwrap().era, Era::Legacy, "-32601 on server/discover means legacy");
    // Two calls in flight; the second answers first.
    let (slow, fast) = tokio::join!(
        up.request("sleep", Some(json!({"ms": 400})), CallContext::default()),
        up.request("sleep", Some(json!({"ms": 10})), CallContext::default()),
    );
    assert_eq!(slow.unwrap(), json!({"slept": 400}));
    assert_eq!(fast.unwrap(), json!({"slept": 10}));
    // Progress tokens are rewritten upstream and restored downstream.
    let (tx, mut rx) = mpsc::channel(8);
    let ctx = CallContext { progress: Some(tx), ..CallContext::default() };
    let r = up.request("progress", Some(json!({"n": 2, "_meta": {"progressToken": 99}})), ctx).await.unwrap();
    assert!(r["token_seen"].as_str().is_some_and(|t| t.starts_with("moat-")), "{r}");
    assert_eq!(rx.recv().await.unwrap(), json!({"progressToken": 99, "progress": 1}));
    assert_eq!(rx.recv().await.unwrap(), json!({"progressToken": 99, "progress": 2}));
    // Garbage lines are ignored, the call still answered.
    assert_eq!(call(&up, "garbage", None).await, json!({"ok": true}));
    up.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_dropped_calls_cancel_upstream() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let up = fake(&log, &py, EraPreference::Legacy, |_| {});
    let ctx = CallContext { timeout: Some(Duration::from_millis(200)), ..CallContext::default() };
    let err = up.request("sleep", Some(json!({"ms": 5000})), ctx).await.unwrap_err();
    assert_eq!(err, UpstreamError::Timeout);
    eventually(5, "a cancellation for the timed-out call", || {
        log_lines(&log).iter().any(|l| l.starts_with("cancelled "))
    })
    .await;
    // Dropping the future (a downstream cancel) cancels too.
    let fut = up.request("sleep", Some(json!({"ms": 5000})), CallContext::default());
    assert!(tokio::time::timeout(Duration::from_millis(300), fut).await.is_err());
    eventually(5, "a cancellation for the dropped call", || {
        log_lines(&log).iter().filter(|l| l.starts_with("cancelled ")).count() == 2
    })
    .await;
    // The process survived both.
    assert_eq!(log_lines(&log).iter().filter(|l| *l == "start").count(), 1);
    up.shutdown().await;
}

#[tokio::test]
async fn concurrency_is_bounded_per_upstream() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let up = fake(&log, &py, EraPreference::Legacy, |o| o.max_concurrency = 1);
    up.connect().await.unwrap();
    let busy = up.clone();
    let first =
        tokio::spawn(async move { busy.request("sleep", Some(json!({"ms": 1000})), CallContext::default()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ctx = CallContext { timeout: Some(Duration::from_millis(200)), ..CallContext::default() };
    assert_eq!(up.request("ping", None, ctx).await, Err(UpstreamError::Busy));
    assert!(first.await.unwrap().is_ok());
    call(&up, "ping", None).await;
    up.shutdown().await;
}

#[tokio::test]
async fn oversize_answers_fail_only_their_call() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let up = fake(&log, &py, EraPreference::Legacy, |o| o.max_message_bytes = 64 * 1024);
    let started = std::time::Instant::now();
    let err = up.request("big", Some(json!({"bytes": 200_000})), CallContext::default()).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Protocol(m) if m.contains("fake")), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast, not by timeout");
    assert_eq!(call(&up, "big", Some(json!({"bytes": 10}))).await["blob"], "xxxxxxxxxx");
    up.shutdown().await;
}

#[tokio::test]
async fn a_crash_mid_tool_call_is_not_retried_but_reads_restart() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let up = fake(&log, &py, EraPreference::Legacy, |_| {});
    up.connect().await.unwrap();
    let mut events = up.events();
    let err = up.request("tools/call", Some(json!({"name": "t"})), CallContext::default()).await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Unavailable(m) if m.contains("fake")), "{err:?}");
    let starts = || log_lines(&log).iter().filter(|l| *l == "start").count();
    assert_eq!(starts(), 1, "tools/call is never retried");
    // An idempotent call restarts the process (after backoff).
    assert!(call(&up, "tools/list", None).await["tools"].is_array());
    assert_eq!(starts(), 2);
    // A crash during an idempotent call is retried once, transparently.
    let err = up.request("die", None, CallContext::default()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unavailable(_)), "`die` is not idempotent: {err:?}");
    assert_eq!(starts(), 2);
    let mut got = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        got.push(ev);
    }
    assert!(got.contains(&UpstreamEvent::Restarted), "{got:?}");
    assert!(got.iter().filter(|e| matches!(e, UpstreamEvent::Died(_))).count() >= 2, "{got:?}");
    up.shutdown().await;
}

#[tokio::test]
async fn garbage_then_silence_fails_the_start_without_panic() {
    let mut o = opts(EraPreference::Legacy);
    o.connect_timeout = Duration::from_millis(500);
    let up = Upstream::new(
        "garbage",
        stdio_spec("sh", &["-c", "echo garbage; echo '{\"jsonrpc\":1}'; exec sleep 30"], &[]),
        o,
    );
    let err = up.connect().await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Unavailable(m) if m.contains("garbage")), "{err:?}");
    let started = std::time::Instant::now();
    up.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn a_program_that_cannot_start_is_unavailable_and_names_the_server() {
    let up = Upstream::new(
        "missing",
        stdio_spec("/nonexistent/moat-test-binary", &[], &[("SECRET_TOKEN", "s3cr3t")]),
        opts(EraPreference::Auto),
    );
    let err = up.request("tools/list", None, CallContext::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("missing") && !text.contains("s3cr3t"), "{text}");
    // Still failing, paced by backoff, never panicking.
    assert!(up.request("tools/list", None, CallContext::default()).await.is_err());
    up.shutdown().await;
}

#[tokio::test]
async fn early_eof_fails_the_start() {
    let up = Upstream::new("eof", stdio_spec("true", &[], &[]), opts(EraPreference::Legacy));
    let err = up.connect().await.unwrap_err();
    assert!(matches!(&err, UpstreamError::Unavailable(m) if m.contains("eof")), "{err:?}");
    up.shutdown().await;
}

#[tokio::test]
async fn auto_detects_a_modern_stdio_server() {
    let Some(py) = python() else { return };
    let script = fixture("py_server.py");
    let up = Upstream::new("pystdio", stdio_spec(&py, &[&script, "stdio"], &[]), opts(EraPreference::Auto));
    up.connect().await.unwrap();
    let hello = up.hello().unwrap();
    assert_eq!((hello.era, hello.protocol_version.as_str()), (Era::Modern, "2026-07-28"));
    let r = call(&up, "tools/call", Some(json!({"name":"echo","arguments":{"message":"stdio modern"}}))).await;
    assert_eq!(first_text(&r), "stdio modern");
    let (tx, mut rx) = mpsc::channel(16);
    let ctx = CallContext { progress: Some(tx), ..CallContext::default() };
    let r = up
        .request("tools/call", Some(json!({"name":"slow","arguments":{"steps":2},"_meta":{"progressToken":"m"}})), ctx)
        .await
        .unwrap();
    assert_eq!(first_text(&r), "done 2");
    let mut steps = Vec::new();
    while let Ok(p) = rx.try_recv() {
        steps.push(p);
    }
    assert_eq!(steps.len(), 2, "{steps:?}");
    up.shutdown().await;
}
