//! The aggregated endpoint over scripted upstreams: merged, prefixed and
//! paginated lists; calls routed by prefix; failures confined to one server.

use crate::support::{Gw, modern_params, modern_request, rpc};
use axum::http::StatusCode;
use base64::Engine as _;
use moat_mcp::jsonrpc::code;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn names(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|t| t[key].as_str().expect("a string").to_owned()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `alpha` paginates its tools (two pages), `beta` does not.
async fn two_servers() -> Gw {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &["--paginate"]).await;
    gw.add_fake("beta", &[]).await;
    gw
}

#[tokio::test]
async fn tools_list_merges_prefixes_and_passes_pagination_through() {
    let gw = two_servers().await;
    let first = gw.modern("/mcp", "tools/list", json!({})).await.result();
    assert!(first.get("nextCursor").is_some(), "alpha paginates, so the first page has a cursor: {first}");
    assert_eq!(names(first["tools"].as_array().unwrap(), "name"), ["alpha__echo", "alpha__progress"]);

    let (tools, pages) = gw.list_all("tools/list", "tools").await;
    let all = names(&tools, "name");
    assert!(pages >= 2, "{pages} pages");
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "every tool exactly once: {all:?}");
    assert_eq!(
        unique,
        set(&["alpha__echo", "alpha__progress", "alpha__t1", "beta__echo", "beta__progress", "beta__t1"])
    );
    // Other members of each tool are untouched.
    assert!(tools.iter().all(|t| t["inputSchema"]["type"] == "object"), "{tools:?}");

    // /mcp/<server> passes the upstream's own names and cursor through.
    let r = gw.modern("/mcp/alpha", "tools/list", json!({})).await.result();
    assert_eq!(names(r["tools"].as_array().unwrap(), "name"), ["echo", "progress"]);
    assert_eq!(r["nextCursor"], "page-2");
    let r = gw.modern("/mcp/alpha", "tools/list", json!({ "cursor": "page-2" })).await.result();
    assert_eq!(names(r["tools"].as_array().unwrap(), "name"), ["t1"]);
    gw.finish().await;
}

#[tokio::test]
async fn garbage_cursors_are_invalid_params() {
    let gw = two_servers().await;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"s":"nosuch","c":null}"#);
    for cursor in [json!("!!garbage!!"), json!(""), json!(forged), json!(42)] {
        let r = gw.modern("/mcp", "tools/list", json!({ "cursor": cursor })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.rpc_code(), Some(code::INVALID_PARAMS), "cursor {cursor}: {}", r.text());
    }
    gw.finish().await;
}

/// MCP pagination: "Invalid cursors SHOULD result in an error with code
/// -32602". A well-formed aggregated cursor whose inner cursor the upstream
/// refuses is skipped like a failing upstream instead: the client gets the
/// following servers' items as if the page were valid.
#[tokio::test]
async fn a_cursor_the_upstream_refuses_is_invalid_params() {
    let gw = two_servers().await;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"s":"alpha","c":"bogus"}"#);
    let r = gw.modern("/mcp", "tools/list", json!({ "cursor": forged })).await;
    assert_eq!(r.rpc_code(), Some(code::INVALID_PARAMS), "{}", r.text());
    gw.finish().await;
}

/// A list call that an upstream answers with a JSON-RPC error (e.g. -32601
/// from a server without prompts, or -32602 for a bad cursor) marks the
/// server unhealthy (`ServerEntry::mark(false)` in `UpstreamPool::list_page`),
/// and aggregated lists then skip it for 30 s: after one aggregated
/// `prompts/list`, a server without prompts vanishes from `tools/list`.
#[tokio::test]
async fn a_server_without_prompts_stays_in_tools_list() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &[]).await;
    gw.add_fake("beta", &["--no-prompts"]).await;
    let (prompts, _) = gw.list_all("prompts/list", "prompts").await;
    assert_eq!(names(&prompts, "name"), ["alpha__greet"]);
    let (tools, _) = gw.list_all("tools/list", "tools").await;
    let tools = names(&tools, "name");
    assert!(tools.contains(&"beta__echo".to_owned()), "{tools:?}");
    gw.finish().await;
}

#[tokio::test]
async fn tools_call_routes_by_prefix_and_strips_it() {
    let gw = two_servers().await;
    for server in ["alpha", "beta"] {
        let r = gw.call_tool(&format!("{server}__echo"), json!({ "n": 1, "s": "a__b" })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let result = r.result();
        assert_eq!(
            result["structuredContent"],
            json!({ "server": server, "name": "echo", "arguments": { "n": 1, "s": "a__b" } })
        );
        // Resource links in results are prefixed so they can be read back.
        assert_eq!(result["content"][1]["uri"], format!("{server}+mem://{server}/linked"), "{result}");
        assert_eq!(result["resultType"], "complete");
    }
    // Only the first `__` separates: the rest is the upstream's name.
    let r = gw.call_tool("beta__x__y", json!({})).await.result();
    assert_eq!(r["structuredContent"]["name"], "x__y");
    gw.finish().await;
}

#[tokio::test]
async fn resources_and_prompts_reach_the_right_server() {
    let gw = two_servers().await;
    let (resources, _) = gw.list_all("resources/list", "resources").await;
    let uris: BTreeSet<String> = names(&resources, "uri").into_iter().collect();
    assert_eq!(uris, set(&["alpha+mem://alpha/a", "alpha+mem://alpha/b", "beta+mem://beta/a", "beta+mem://beta/b"]));
    assert!(names(&resources, "name").contains(&"beta__a".to_owned()), "{resources:?}");

    for uri in ["beta+mem://beta/b", "alpha+mem://alpha/a"] {
        let r = gw.modern("/mcp", "resources/read", json!({ "uri": uri })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let contents = &r.result()["contents"];
        let (server, inner) = uri.split_once('+').unwrap();
        assert_eq!(contents[0]["uri"], uri, "the returned uri is prefixed again: {contents}");
        assert_eq!(contents[0]["text"], format!("{server} read {inner}"));
    }
    // A resource of alpha's addressed through beta reaches beta (which refuses it).
    let r = gw.modern("/mcp", "resources/read", json!({ "uri": "beta+mem://alpha/a" })).await;
    assert_eq!(r.rpc_code(), Some(-32002), "{}", r.text());

    let (prompts, _) = gw.list_all("prompts/list", "prompts").await;
    assert_eq!(names(&prompts, "name").into_iter().collect::<BTreeSet<_>>(), set(&["alpha__greet", "beta__greet"]));
    let r = gw.modern("/mcp", "prompts/get", json!({ "name": "beta__greet", "arguments": { "who": "ann" } })).await;
    assert_eq!(r.result()["messages"][0]["content"]["text"], "beta hello ann", "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn unknown_servers_and_unprefixed_names_are_invalid_params() {
    let gw = two_servers().await;
    let cases = [
        ("tools/call", json!({ "name": "nosuch__echo", "arguments": {} }), Some("nosuch")),
        ("prompts/get", json!({ "name": "nosuch__greet" }), Some("nosuch")),
        ("resources/read", json!({ "uri": "nosuch+mem://x/a" }), Some("nosuch")),
        ("tools/call", json!({ "name": "echo", "arguments": {} }), None),
        ("resources/read", json!({ "uri": "mem://alpha/a" }), None),
        ("tools/call", json!({ "name": "Alpha__echo", "arguments": {} }), None),
    ];
    for (method, params, names_server) in cases {
        let r = gw.modern("/mcp", method, params.clone()).await;
        assert_eq!(r.rpc_code(), Some(code::INVALID_PARAMS), "{method} {params}: {}", r.text());
        if let Some(server) = names_server {
            assert!(r.rpc_message().contains(&format!("`{server}`")), "{}", r.text());
        }
    }
    // Methods that cannot be routed on /mcp point at /mcp/<server>.
    let r = gw.modern("/mcp", "custom/thing", json!({})).await;
    assert_eq!(r.rpc_code(), Some(code::METHOD_NOT_FOUND), "{}", r.text());
    assert!(r.rpc_message().contains("/mcp/<server>"), "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn a_dead_upstream_fails_only_its_own_calls() {
    let gw = Gw::start().await;
    gw.add_fake("alpha", &[]).await;
    gw.add_server("dead", &["false"]).await;

    let r = gw.call_tool("dead__anything", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let err = &r.json()["error"];
    assert_eq!(err["code"], code::UPSTREAM_ERROR, "{err}");
    assert!(err["message"].as_str().unwrap().contains("`dead`"), "{err}");
    assert_eq!(err["data"]["server"], "dead", "{err}");

    let r = gw.call_tool("alpha__echo", json!({ "ok": true })).await;
    assert_eq!(r.result()["structuredContent"]["server"], "alpha", "{}", r.text());

    // Lists skip the dead server rather than fail.
    let (tools, _) = gw.list_all("tools/list", "tools").await;
    assert_eq!(
        names(&tools, "name").into_iter().collect::<BTreeSet<_>>(),
        set(&["alpha__echo", "alpha__progress", "alpha__t1"])
    );
    let r = gw.modern("/mcp", "resources/read", json!({ "uri": "dead+mem://x" })).await;
    assert_eq!(r.json()["error"]["data"]["server"], "dead", "{}", r.text());
    let r = gw.modern("/mcp/dead", "tools/list", json!({})).await;
    assert_eq!(r.rpc_code(), Some(code::UPSTREAM_ERROR), "{}", r.text());
    let r = gw.modern("/mcp/alpha", "tools/list", json!({})).await;
    assert!(r.result()["tools"].as_array().is_some_and(|t| t.len() == 3), "{}", r.text());
    gw.finish().await;
}

#[tokio::test]
async fn progress_is_relayed_on_a_stream_before_the_result() {
    let gw = two_servers().await;
    // A random-looking token, as SDKs make them: the firewall must not take
    // `progressToken: <high entropy>` for a leaked secret.
    const TOKEN: &str = "a3f9c2e17b5d4e8f9a0c6b2d1e7f3a5c";
    let params = json!({ "name": "beta__progress", "arguments": { "n": 3 }, "_meta": { "progressToken": TOKEN } });
    let body = rpc(4, "tools/call", modern_params(params));
    let r = gw.send(modern_request("/mcp", &gw.key, &body, "application/json, text/event-stream")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")), "{:?}", r.headers);
    let messages = r.sse_messages();
    let (last, notes) = messages.split_last().expect("messages");
    assert_eq!(last["id"], 4);
    assert_eq!(last["result"]["content"][0]["text"], "beta progressed 3", "{last}");
    assert_eq!(notes.len(), 3, "{messages:?}");
    for (i, n) in notes.iter().enumerate() {
        assert_eq!(n["method"], "notifications/progress");
        assert_eq!(n["params"]["progressToken"], TOKEN, "the client's own token: {n}");
        assert_eq!(n["params"]["progress"], i + 1);
    }
    gw.finish().await;
}
