//! A real upstream: `@modelcontextprotocol/server-everything` over stdio
//! (`MOAT_TEST_EVERYTHING` = path to its `dist/index.js`).

use crate::harness::{LEGACY, Moat, Opts, Resp, pids_with_marker, unique_marker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn everything() -> Option<String> {
    match std::env::var("MOAT_TEST_EVERYTHING") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            println!("skipped: MOAT_TEST_EVERYTHING not set");
            None
        }
    }
}

/// A `[[servers]]` table for server-everything over stdio; `marker` is an
/// extra argument (ignored by the server) that identifies the process.
fn server_toml(name: &str, path: &str, marker: &str) -> String {
    format!("[[servers]]\nname = \"{name}\"\ncommand = [\"node\", {path:?}, \"stdio\", {marker:?}]\n\n")
}

fn names(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` array: {list}"))
        .iter()
        .filter_map(|t| t[field].as_str().map(str::to_owned))
        .collect()
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| c.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

async fn echo(moat: &Moat, name: &str, message: &str) -> Resp {
    moat.modern("/mcp", &moat.key, "tools/call", json!({ "name": name, "arguments": { "message": message } })).await
}

#[tokio::test]
async fn everything_through_the_aggregated_and_per_server_endpoints() {
    let Some(path) = everything() else { return };
    let marker = unique_marker("ev");
    let opts = Opts {
        config: server_toml("everything", &path, &format!("{marker}-everything")),
        env: vec![("MOAT_TEST_SECRET_CANARY".into(), "canary-value".into())],
        ..Opts::default()
    };
    let mut moat = Moat::with_marker(opts, marker.clone()).await;
    let key = moat.key.clone();

    // Modern era on /mcp.
    let r = moat.modern("/mcp", &key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let agg_tools = names(&r.result(), "tools", "name");
    assert!(agg_tools.contains(&"everything__echo".to_owned()), "{agg_tools:?}");
    assert!(agg_tools.iter().all(|t| t.starts_with("everything__")), "{agg_tools:?}");
    let r = echo(&moat, "everything__echo", "hi").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(text_of(&r.result()), "Echo: hi", "{}", r.text);

    // Legacy era on /mcp.
    let (r, sid) = moat.initialize("/mcp", &key, LEGACY).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = moat.legacy("/mcp", &key, &sid, 1, "tools/list", json!({})).await;
    let tools = names(&r.result(), "tools", "name");
    assert!(tools.contains(&"everything__echo".to_owned()), "{tools:?}");
    let r = moat
        .legacy(
            "/mcp",
            &key,
            &sid,
            2,
            "tools/call",
            json!({ "name": "everything__echo", "arguments": { "message": "hi" } }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(text_of(&r.result()), "Echo: hi", "{}", r.text);

    // One server, names unchanged, both eras.
    let r = moat.modern("/mcp/everything", &key, "tools/list", json!({})).await;
    let tools = names(&r.result(), "tools", "name");
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(!tools.iter().any(|t| t.contains("__")), "{tools:?}");
    let r = moat
        .modern("/mcp/everything", &key, "tools/call", json!({ "name": "echo", "arguments": { "message": "one" } }))
        .await;
    assert_eq!(text_of(&r.result()), "Echo: one", "{}", r.text);
    let (r, sid1) = moat.initialize("/mcp/everything", &key, LEGACY).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = moat.legacy("/mcp/everything", &key, &sid1, 1, "tools/list", json!({})).await;
    assert!(names(&r.result(), "tools", "name").contains(&"echo".to_owned()), "{}", r.text);
    // A session of /mcp is not a session of /mcp/everything.
    let r = moat.legacy("/mcp/everything", &key, &sid, 3, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // Resources: namespaced URIs that can be read back.
    let r = moat.modern("/mcp", &key, "resources/list", json!({})).await;
    let uris = names(&r.result(), "resources", "uri");
    assert!(!uris.is_empty(), "{}", r.text);
    assert!(uris.iter().all(|u| u.starts_with("everything+")), "{uris:?}");
    let uri = uris[0].clone();
    let r = moat.modern("/mcp", &key, "resources/read", json!({ "uri": uri })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let contents = r.result()["contents"].clone();
    assert!(contents.as_array().is_some_and(|c| !c.is_empty()), "{}", r.text);
    assert_eq!(contents[0]["uri"], json!(uri), "contents carry the namespaced URI: {}", r.text);

    // Prompts.
    let r = moat.modern("/mcp", &key, "prompts/list", json!({})).await;
    let prompts = names(&r.result(), "prompts", "name");
    assert!(!prompts.is_empty() && prompts.iter().all(|p| p.starts_with("everything__")), "{prompts:?}");

    // An unknown server: -32602 naming it.
    let r = echo(&moat, "nosuch__echo", "x").await;
    assert_eq!(r.rpc_code(), Some(-32602), "{}", r.text);
    assert!(r.json()["error"]["message"].as_str().unwrap_or_default().contains("nosuch"), "{}", r.text);

    // Environment isolation: moat's own environment does not leak.
    let env_tool = ["everything__get-env", "everything__printEnv"]
        .into_iter()
        .find(|t| agg_tools.iter().any(|a| a == t))
        .expect("server-everything has an env-printing tool");
    let r = moat.modern("/mcp", &key, "tools/call", json!({ "name": env_tool, "arguments": {} })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let out = text_of(&r.result());
    assert!(out.contains("PATH"), "the env tool printed its environment: {out}");
    assert!(!out.contains("canary-value"), "moat's environment leaked into the upstream: {out}");
    assert!(!out.contains("MOAT_"), "MOAT_* variables leaked into the upstream: {out}");

    // Upstreams are stopped with moat.
    assert!(!pids_with_marker(&marker).is_empty(), "the upstream is running");
    let status = moat.terminate(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "moat exit: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids_with_marker(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pids_with_marker(&marker).is_empty(), "upstream processes outlived moat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_fails_alone_and_comes_back() {
    let Some(path) = everything() else { return };
    let marker = unique_marker("kill");
    let second = format!("{marker}-second");
    let config = format!(
        "{}{}",
        server_toml("everything", &path, &format!("{marker}-everything")),
        server_toml("second", &path, &second)
    );
    let moat = Moat::with_marker(Opts { config, ..Opts::default() }, marker.clone()).await;

    for name in ["everything__echo", "second__echo"] {
        let r = echo(&moat, name, "before").await;
        assert_eq!(text_of(&r.result()), "Echo: before", "{name}: {}", r.text);
    }
    let pids = pids_with_marker(&second);
    assert_eq!(pids.len(), 1, "one process per stdio server (not per call): {pids:?}");
    kill(Pid::from_raw(pids[0]), Signal::SIGKILL).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut recovered = false;
    let mut failures = 0;
    while Instant::now() < deadline {
        let r = echo(&moat, "second__echo", "after").await;
        let v = r.json();
        if v["result"].is_object() && text_of(&v["result"]) == "Echo: after" {
            recovered = true;
        } else {
            failures += 1;
            let message = v["error"]["message"].as_str().unwrap_or_default().to_owned();
            let tool_error = text_of(&v["result"]);
            assert!(
                message.contains("second") || tool_error.contains("second"),
                "a failure must name the server: {}",
                r.text
            );
        }
        // The healthy upstream keeps serving throughout.
        let r = echo(&moat, "everything__echo", "still").await;
        assert_eq!(text_of(&r.result()), "Echo: still", "{}", r.text);
        if recovered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "`second` was not restarted within 20 s of being killed");
    println!("`second` killed: {failures} failed call(s) before it answered again");
    let pids_after = pids_with_marker(&second);
    assert_eq!(pids_after.len(), 1, "{pids_after:?}");
    assert_ne!(pids_after[0], pids[0]);
    let r = moat.modern("/mcp", &moat.key, "tools/list", json!({})).await;
    let tools = names(&r.result(), "tools", "name");
    assert!(tools.contains(&"second__echo".to_owned()) && tools.contains(&"everything__echo".to_owned()), "{tools:?}");
}

/// Reads SSE events (`id`, `data`) from a streaming response until `stop`
/// says so or the stream ends.
async fn read_events(
    resp: &mut reqwest::Response,
    mut stop: impl FnMut(&Option<String>, &str) -> bool,
) -> Vec<(Option<String>, String)> {
    let mut decoder = moat_mcp::sse::Decoder::new(1 << 20);
    let mut events = Vec::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await.unwrap_or(Ok(None)) {
        for ev in decoder.feed(&chunk).unwrap() {
            let done = stop(&ev.id, &ev.data);
            events.push((ev.id, ev.data));
            if done {
                return events;
            }
        }
    }
    events
}

/// Resumes a legacy session's stream after `last_id` (GET with
/// `Last-Event-ID`) and reads it up to the response with JSON-RPC id `id`;
/// returns the events read and that response.
async fn resume_until(
    moat: &Moat,
    key: &str,
    sid: &str,
    last_id: &str,
    id: u64,
) -> (Vec<(Option<String>, String)>, Value) {
    let mut resumed = moat
        .http
        .get(moat.url("/mcp"))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", LEGACY)
        .header("last-event-id", last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let needle = format!("\"id\":{id}");
    let rest = read_events(&mut resumed, |_, data| data.contains(&needle)).await;
    let result = rest.iter().find(|(_, d)| d.contains(&needle)).map(|(_, d)| d.clone());
    let result = result.unwrap_or_else(|| panic!("no result after resuming: {rest:?}"));
    (rest, serde_json::from_str(&result).unwrap())
}

#[tokio::test]
async fn a_legacy_client_resumes_a_call_with_last_event_id() {
    let Some(path) = everything() else { return };
    let marker = unique_marker("resume");
    let opts = Opts { config: server_toml("everything", &path, &format!("{marker}-everything")), ..Opts::default() };
    let moat = Moat::with_marker(opts, marker).await;
    let key = moat.key.clone();
    let (_, sid) = moat.initialize("/mcp", &key, LEGACY).await;
    assert!(!sid.is_empty());

    // A 3-step, 3-second call on an SSE stream; the client drops the
    // connection after the first events.
    let call = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "everything__trigger-long-running-operation",
        "arguments": { "duration": 3, "steps": 3 },
        "_meta": { "progressToken": "p1" } } });
    let mut resp = moat
        .http
        .post(moat.url("/mcp"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", LEGACY)
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = read_events(&mut resp, |_, data| data.contains("notifications/progress")).await;
    let last_id = first.iter().rev().find_map(|(id, _)| id.clone()).expect("events carry ids");
    assert!(first.iter().any(|(_, d)| d.is_empty()), "a priming event opens the stream: {first:?}");
    assert!(!first.iter().any(|(_, d)| d.contains("\"result\"")), "the call is still running: {first:?}");
    drop(resp);

    // Resume: everything after the last event seen, up to the result.
    let (rest, result) = resume_until(&moat, &key, &sid, &last_id, 7).await;
    assert!(text_of(&result["result"]).contains("completed"), "{result}");
    assert!(rest.iter().any(|(_, d)| d.contains("notifications/progress")), "later progress is replayed: {rest:?}");
    // Nothing seen before is replayed.
    let seen: Vec<_> = first.iter().filter_map(|(id, _)| id.clone()).collect();
    assert!(rest.iter().all(|(id, _)| id.as_ref().is_none_or(|id| !seen.contains(id))), "{seen:?} vs {rest:?}");
}

/// A legacy client that accepts both answers gets plain JSON for a call
/// that answers at once (one write, no stream), and a primed, resumable
/// stream for one that outlasts the JSON window without a notification.
#[tokio::test]
async fn legacy_calls_answer_json_when_quick_and_stream_when_slow() {
    let Some(path) = everything() else { return };
    let marker = unique_marker("window");
    let opts = Opts { config: server_toml("everything", &path, &format!("{marker}-everything")), ..Opts::default() };
    let moat = Moat::with_marker(opts, marker).await;
    let key = moat.key.clone();
    let (_, sid) = moat.initialize("/mcp", &key, LEGACY).await;
    let post = |call: Value| {
        moat.http
            .post(moat.url("/mcp"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", LEGACY)
            .body(call.to_string())
            .send()
    };

    // The first call starts the upstream (slower than the window); a
    // loaded machine may delay one more: a few tries, each answered.
    let mut json_answers = 0;
    for id in 1..=5 {
        let quick = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": "everything__echo", "arguments": { "message": "hi" } } });
        let resp = post(quick).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["mcp-session-id"].to_str().unwrap(), sid);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let body = resp.text().await.unwrap();
        let answer = if ct.starts_with("application/json") {
            json_answers += 1;
            body
        } else {
            assert!(ct.starts_with("text/event-stream"), "{ct}");
            let data = body.lines().filter_map(|l| l.strip_prefix("data: ")).find(|d| d.contains("\"result\""));
            data.unwrap_or_else(|| panic!("no result on the stream: {body}")).to_owned()
        };
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!((v["id"].clone(), text_of(&v["result"])), (json!(id), "Echo: hi".to_owned()), "{v}");
    }
    assert!(json_answers >= 1, "a quick call is answered as plain JSON");

    // Two seconds, no progress token: no notification, so the window passes.
    let slow = json!({ "jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": {
        "name": "everything__trigger-long-running-operation", "arguments": { "duration": 2, "steps": 2 } } });
    let mut resp = post(slow).await.unwrap();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let first = read_events(&mut resp, |_, data| data.is_empty()).await;
    let (Some(prime_id), data) = first.last().cloned().expect("a priming event") else {
        panic!("the priming event carries an id: {first:?}")
    };
    assert!(data.is_empty(), "{first:?}");
    // The client goes away: the call is not cancelled, and its result is
    // fetched with Last-Event-ID.
    drop(resp);
    let (_, result) = resume_until(&moat, &key, &sid, &prime_id, 20).await;
    assert!(text_of(&result["result"]).contains("completed"), "{result}");
}
