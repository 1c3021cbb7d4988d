//! The firewall's admin surface through the binary: policy overrides and
//! tenant patterns change decisions at once, approvals are held, decided and
//! visible to the tenant's admins only. (The hostile-upstream end-to-end
//! checks, with the Python SDK, are in `tests/interop/test_firewall.py`.)

use crate::harness::{Moat, Opts, Resp};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn fake() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../moat-gateway/tests/fixtures/fake_mcp.py").display().to_string()
}

async fn start(extra: &str) -> Moat {
    let config = format!("{extra}\n[[servers]]\nname = \"alpha\"\ncommand = [\"python3\", {:?}, \"alpha\"]\n", fake());
    Moat::with(Opts { config, ..Opts::default() }).await
}

/// `alpha__echo` with `arguments`: the fake echoes them back as text.
async fn echo(moat: &Moat, key: &str, arguments: Value) -> Resp {
    moat.modern("/mcp", key, "tools/call", json!({ "name": "alpha__echo", "arguments": arguments })).await
}

const EMAIL: &str = "jane.doe@acme-corp.io";

#[tokio::test]
async fn overrides_and_patterns_change_decisions_at_once() {
    let moat = start("").await;
    let k = moat.key.clone();

    // Defaults: personal data in a result is redacted.
    let r = echo(&moat, &k, json!({ "to": EMAIL })).await;
    assert!(!r.text.contains(EMAIL) && r.text.contains("[REDACTED:pii:email]"), "{}", r.text);

    // A server override: log only. It applies to the next call.
    moat.cli(&["firewall", "policy", "set", "--server", "alpha", "--rule", "pii@response=log"]).ok();
    let listed = moat.cli(&["firewall", "policy", "list", "--json"]).ok().json();
    assert_eq!(listed[0]["server"], "alpha", "{listed}");
    assert_eq!(listed[0]["rules"][0], json!({ "category": "pii", "direction": "response", "action": "log" }));
    let r = echo(&moat, &k, json!({ "to": EMAIL })).await;
    assert!(r.text.contains(EMAIL), "{}", r.text);

    // A tool override beats the server's.
    moat.cli(&["firewall", "policy", "set", "--server", "alpha", "--tool", "echo", "--rule", "pii=block"]).ok();
    let r = echo(&moat, &k, json!({ "to": EMAIL })).await;
    assert_eq!(r.rpc_code(), Some(-32003), "{}", r.text);
    assert!(!r.text.contains(EMAIL), "a refusal echoes the content: {}", r.text);
    moat.cli(&["firewall", "policy", "delete", "--server", "alpha", "--tool", "echo"]).ok();
    moat.cli(&["firewall", "policy", "delete", "--server", "alpha"]).ok();
    let r = echo(&moat, &k, json!({ "to": EMAIL })).await;
    assert!(r.text.contains("[REDACTED:pii:email]"), "{}", r.text);

    // Tenant-wide shadow mode: a destructive request passes (and is recorded).
    let r = echo(&moat, &k, json!({ "sql": "DROP TABLE users;" })).await;
    assert_eq!(r.rpc_code(), Some(-32003), "{}", r.text);
    moat.cli(&["firewall", "policy", "set", "--mode", "shadow"]).ok();
    let r = echo(&moat, &k, json!({ "sql": "DROP TABLE users;" })).await;
    assert!(r.text.contains("DROP TABLE users"), "{}", r.text);
    moat.cli(&["firewall", "policy", "delete"]).ok();

    // The tenant's own pattern.
    let id = moat.cli(&["firewall", "pattern", "add", "employee-id", "--pattern", "EMP-[0-9]{6}"]).ok();
    assert!(!id.stdout.trim().is_empty());
    let r = echo(&moat, &k, json!({ "who": "EMP-123456" })).await;
    assert!(!r.text.contains("EMP-123456") && r.text.contains("[REDACTED:pii:employee-id]"), "{}", r.text);
    let bad = moat.cli(&["firewall", "pattern", "add", "broken", "--pattern", "(unclosed"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    let dup = moat.cli(&["firewall", "pattern", "add", "employee-id", "--pattern", "x"]);
    assert_eq!(dup.code, Some(1), "{}", dup.stderr);
    moat.cli(&["firewall", "pattern", "delete", "employee-id"]).ok();
    let r = echo(&moat, &k, json!({ "who": "EMP-123456" })).await;
    assert!(r.text.contains("EMP-123456"), "{}", r.text);

    // A payload budget for one tool: larger arguments are an exfiltration
    // finding, here blocked.
    moat.cli(&[
        "firewall",
        "policy",
        "set",
        "--server",
        "alpha",
        "--tool",
        "echo",
        "--budget-bytes",
        "1000",
        "--rule",
        "exfiltration:oversized-payload=block",
    ])
    .ok();
    let r = echo(&moat, &k, json!({ "note": "short" })).await;
    assert!(r.text.contains("short"), "{}", r.text);
    let r = echo(&moat, &k, json!({ "note": "lorem ipsum ".repeat(100) })).await;
    assert_eq!(r.rpc_code(), Some(-32003), "{}", r.text);
    assert!(r.text.contains("oversized-payload"), "{}", r.text);
    moat.cli(&["firewall", "policy", "delete", "--server", "alpha", "--tool", "echo"]).ok();

    // Every change is audited.
    let audit = moat.cli(&["audit", "list", "--action", "firewall.", "--json"]).ok().json();
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["firewall.policy.set", "firewall.policy.delete", "firewall.pattern.add", "firewall.pattern.delete"] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
}

#[tokio::test]
async fn held_calls_wait_for_an_admin_of_their_tenant() {
    let moat = start("[firewall]\napproval_timeout_s = 20\n").await;
    moat.cli(&["tenant", "create", "acme"]).ok();
    let acme_admin =
        moat.cli(&["key", "create", "acme-admin", "--role", "admin", "--tenant", "acme"]).ok().stdout.trim().to_owned();
    let member = moat.cli(&["key", "create", "dev", "--role", "member"]).ok().stdout.trim().to_owned();

    // Tool abuse in a request: held for approval.
    let held = {
        let moat_url = moat.base();
        let key = moat.key.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let body = json!({
                "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": { "name": "alpha__echo", "arguments": { "cmd": "sudo systemctl stop firewalld" },
                    "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                               "io.modelcontextprotocol/clientCapabilities": {} } }
            });
            http.post(format!("{moat_url}/mcp"))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "alpha__echo")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let pending = loop {
        let list = moat.cli(&["approval", "list", "--json"]).ok().json();
        if let Some(a) = list.as_array().and_then(|l| l.first()).cloned() {
            break a;
        }
        assert!(Instant::now() < deadline, "no pending approval");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((pending["kind"].as_str(), pending["status"].as_str()), (Some("call"), Some("pending")));
    assert_eq!((pending["server_name"].as_str(), pending["target"].as_str()), (Some("alpha"), Some("echo")));
    assert!(!pending.to_string().contains("firewalld"), "an approval shows the arguments: {pending}");
    let id = pending["id"].as_str().unwrap().to_owned();

    // Another tenant's admin, and a member of this one, see nothing of it.
    let other = moat.cli_as(&acme_admin, &["approval", "list", "--json"]).ok().json();
    assert_eq!(other, json!([]));
    let show = moat.cli_as(&acme_admin, &["approval", "show", &id]);
    assert_eq!(show.code, Some(1));
    assert!(show.stderr.contains("not found"), "{}", show.stderr);
    let deny = moat.cli_as(&acme_admin, &["approval", "deny", &id]);
    assert_eq!(deny.code, Some(1), "another tenant's admin decided an approval");
    let m = moat.cli_as(&member, &["approval", "list"]);
    assert_eq!(m.code, Some(1));
    assert!(m.stderr.contains("admin"), "{}", m.stderr);

    // The tenant's admin approves: the call proceeds.
    let decided = moat.cli(&["approval", "approve", &id, "--json"]).ok().json();
    assert_eq!(decided["status"], "approved");
    let text = tokio::time::timeout(Duration::from_secs(15), held).await.unwrap().unwrap();
    assert!(text.contains("firewalld") && !text.contains("\"error\""), "{text}");
    let again = moat.cli(&["approval", "deny", &id]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("already"), "{}", again.stderr);
    let listed = moat.cli(&["approval", "list", "--status", "approved", "--json"]).ok().json();
    assert_eq!(listed[0]["id"], id);
}
