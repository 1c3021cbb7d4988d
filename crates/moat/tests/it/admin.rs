//! The admin API through the `moat` CLI: keys, servers, tenants, audit.

use crate::harness::{LEGACY, Moat, is_key};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {list}"))
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

async fn whoami(moat: &Moat, key: &str) -> StatusCode {
    moat.get("/api/v1/whoami", Some(key)).await.status
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let moat = Moat::start().await;
    let r = moat.get("/api/v1/openapi.json", Some(&moat.key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert!(v["openapi"].is_string(), "{v}");
    assert!(v["paths"].get("/api/v1/keys").is_some(), "paths: {}", v["paths"]);
}

#[tokio::test]
async fn keys_create_list_revoke_rotate() {
    let moat = Moat::start().await;

    // create: one stdout line, a key that authenticates.
    let run = moat.cli(&["key", "create", "laptop", "--role", "member"]).ok();
    assert_eq!(run.stdout_lines().len(), 1, "{:?}", run.stdout);
    let laptop = run.stdout.trim().to_owned();
    assert!(is_key(&laptop), "{laptop}");
    assert_eq!(whoami(&moat, &laptop).await, StatusCode::OK);
    let who = moat.get("/api/v1/whoami", Some(&laptop)).await.json();
    assert_eq!(who["role"], "member", "{who}");

    // list: JSON, no secrets, no hashes.
    let run = moat.cli(&["key", "list", "--json"]).ok();
    let list = run.json();
    assert!(names(&list).contains(&"laptop".to_owned()), "{list}");
    assert!(!run.stdout.contains("secret_hash"), "{}", run.stdout);
    assert!(!run.stdout.contains("$argon2"), "{}", run.stdout);
    assert!(!run.stdout.contains(&laptop), "the list shows a secret");
    assert!(!run.stdout.contains(&moat.key), "the list shows a secret");
    assert!(!run.stdout.contains(&laptop[18..]), "the list shows a secret part");
    let run = moat.cli(&["key", "show", "laptop", "--json"]).ok();
    assert!(!run.stdout.contains("secret_hash") && !run.stdout.contains(&laptop[18..]), "{}", run.stdout);

    // A member key may not administer keys.
    let r = moat.get("/api/v1/keys", Some(&laptop)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r =
        moat.send(moat.http.post(moat.url("/api/v1/keys")).bearer_auth(&laptop).json(&json!({ "name": "x" }))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let run = moat.cli_as(&laptop, &["key", "list"]);
    assert_eq!(run.code, Some(1), "{} {}", run.stdout, run.stderr);

    // revoke: the very next request with that key is refused.
    moat.cli(&["key", "revoke", "laptop"]).ok();
    assert_eq!(whoami(&moat, &laptop).await, StatusCode::UNAUTHORIZED);
    let list = moat.cli(&["key", "list", "--json"]).ok().json();
    let entry = list.as_array().unwrap().iter().find(|k| k["name"] == "laptop").cloned().unwrap_or_default();
    assert!(entry["revoked"] == json!(true) || entry["revoked_at"].is_number(), "{entry}");

    // rotate: the old secret stops on the very next request, the new works.
    let k2 = moat.cli(&["key", "create", "k2"]).ok().stdout.trim().to_owned();
    assert!(is_key(&k2));
    assert_eq!(whoami(&moat, &k2).await, StatusCode::OK); // now cached
    let run = moat.cli(&["key", "rotate", "k2"]).ok();
    assert_eq!(run.stdout_lines().len(), 1, "{:?}", run.stdout);
    let k2new = run.stdout.trim().to_owned();
    assert!(is_key(&k2new) && k2new != k2, "{k2new}");
    assert_eq!(whoami(&moat, &k2).await, StatusCode::UNAUTHORIZED, "old secret after rotate");
    assert_eq!(whoami(&moat, &k2new).await, StatusCode::OK, "new secret after rotate");
    assert_eq!(whoami(&moat, &k2).await, StatusCode::UNAUTHORIZED, "old secret, twice");

    // Revoking a cached key also takes effect at once on /mcp.
    let k3 = moat.cli(&["key", "create", "k3"]).ok().stdout.trim().to_owned();
    let r = moat.modern("/mcp", &k3, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    moat.cli(&["key", "revoke", "k3"]).ok();
    let r = moat.modern("/mcp", &k3, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn revoking_a_key_ends_its_sessions() {
    let moat = Moat::start().await;
    let k = moat.cli(&["key", "create", "sess", "--role", "member"]).ok().stdout.trim().to_owned();
    let (_, sid) = moat.initialize("/mcp", &k, LEGACY).await;
    let r = moat.legacy("/mcp", &k, &sid, 1, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    moat.cli(&["key", "revoke", "sess"]).ok();
    let r = moat.legacy("/mcp", &k, &sid, 2, "ping", json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn server_add_with_url_registers_that_upstream() {
    // `moat server add NAME --url URL` (INTERFACE.md): the URL is the
    // upstream's, not the gateway's (which comes from MOAT_URL here).
    let moat = Moat::start().await;
    let run = moat.cli(&["server", "add", "srv", "--url", "http://127.0.0.1:1/mcp"]);
    assert_eq!(run.code, Some(0), "server add --url: stdout={} stderr={}", run.stdout, run.stderr);
    assert_eq!(run.stdout_lines().len(), 1, "{}", run.stdout);
    let list = moat.cli(&["server", "list", "--json"]).ok().json();
    let srv = list.as_array().unwrap().iter().find(|s| s["name"] == "srv").cloned();
    let srv = srv.unwrap_or_else(|| panic!("srv not listed: {list}"));
    assert_eq!(srv["url"], "http://127.0.0.1:1/mcp", "{srv}");
    assert_eq!(srv["transport"], "streamable-http", "{srv}");
}

#[tokio::test]
async fn server_add_with_command_registers_a_stdio_upstream() {
    let moat = Moat::start().await;
    let run = moat.cli(&["server", "add", "cmdsrv", "--command", "node", "/nonexistent/server.js", "stdio"]);
    assert_eq!(run.code, Some(0), "server add --command: stdout={} stderr={}", run.stdout, run.stderr);
    assert_eq!(run.stdout_lines().len(), 1, "{}", run.stdout);
    let list = moat.cli(&["server", "list", "--json"]).ok().json();
    let srv = list.as_array().unwrap().iter().find(|s| s["name"] == "cmdsrv").cloned();
    let srv = srv.unwrap_or_else(|| panic!("cmdsrv not listed: {list}"));
    assert_eq!(srv["command"], json!(["node", "/nonexistent/server.js", "stdio"]), "{srv}");
    assert_eq!(srv["transport"], "stdio", "{srv}");
}

/// Registers an upstream through the admin API (the CLI path is covered by
/// the two `server_add_with_*` tests).
async fn add_server(moat: &Moat, body: Value, tenant: Option<&str>) {
    let mut req = moat.http.post(moat.url("/api/v1/servers")).bearer_auth(&moat.key).json(&body);
    if let Some(t) = tenant {
        req = req.query(&[("tenant", t)]);
    }
    let r = moat.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn servers_add_list_delete() {
    let moat = Moat::start().await;
    // A stdio server (started lazily: never, here).
    add_server(&moat, json!({ "name": "cmdsrv", "command": ["node", "/nonexistent/server.js", "stdio"] }), None).await;
    add_server(&moat, json!({ "name": "srv", "url": "http://127.0.0.1:1/mcp" }), None).await;
    let list = moat.cli(&["server", "list", "--json"]).ok().json();
    let listed = names(&list);
    assert!(listed.contains(&"srv".to_owned()) && listed.contains(&"cmdsrv".to_owned()), "{list}");
    let cmdsrv = list.as_array().unwrap().iter().find(|s| s["name"] == "cmdsrv").unwrap();
    assert_eq!(cmdsrv["command"], json!(["node", "/nonexistent/server.js", "stdio"]), "{cmdsrv}");
    let run = moat.cli(&["server", "show", "srv", "--json"]).ok();
    assert_eq!(run.json()["url"], "http://127.0.0.1:1/mcp", "{}", run.stdout);

    // Unreachable upstreams fail only the calls routed to them, naming them.
    let r = moat.modern("/mcp", &moat.key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.result()["tools"], json!([]), "{}", r.text);
    for name in ["srv", "cmdsrv"] {
        let r = moat
            .modern("/mcp", &moat.key, "tools/call", json!({ "name": format!("{name}__x"), "arguments": {} }))
            .await;
        let v = r.json();
        assert!(v["error"].is_object() || v["result"]["isError"] == true, "{v}");
        assert!(r.text.contains(&format!("`{name}`")), "the error names the server: {}", r.text);
    }
    assert_eq!(moat.get("/healthz", None).await.status, StatusCode::OK);

    // A duplicate name is refused.
    let r = moat
        .send(
            moat.http
                .post(moat.url("/api/v1/servers"))
                .bearer_auth(&moat.key)
                .json(&json!({ "name": "srv", "command": ["true"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    moat.cli(&["server", "delete", "srv"]).ok();
    moat.cli(&["server", "delete", "cmdsrv"]).ok();
    let list = moat.cli(&["server", "list", "--json"]).ok().json();
    assert_eq!(list, json!([]), "{list}");
    let r = moat.modern("/mcp/srv", &moat.key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let run = moat.cli(&["server", "delete", "srv"]);
    assert_eq!(run.code, Some(1), "deleting twice: {} {}", run.stdout, run.stderr);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let moat = Moat::start().await;
    let run = moat.cli(&["tenant", "create", "acme"]).ok();
    assert_eq!(run.stdout_lines().len(), 1, "{}", run.stdout);
    let tenants = moat.cli(&["tenant", "list", "--json"]).ok().json();
    assert!(names(&tenants).contains(&"acme".to_owned()), "{tenants}");

    add_server(&moat, json!({ "name": "defsrv", "command": ["node", "/nonexistent/def.js"] }), None).await;
    add_server(&moat, json!({ "name": "acmesrv", "command": ["node", "/nonexistent/acme.js"] }), Some("acme")).await;
    add_server(&moat, json!({ "name": "acmeurl", "url": "http://127.0.0.1:1/mcp" }), Some("acme")).await;
    let acme_key = moat.cli(&["key", "create", "acme-admin", "--role", "admin", "--tenant", "acme"]).ok();
    let acme_key = acme_key.stdout.trim().to_owned();
    assert!(is_key(&acme_key), "{acme_key}");
    let who = moat.get("/api/v1/whoami", Some(&acme_key)).await.json();
    assert_eq!(who["tenant"], "acme", "{who}");
    assert_eq!(who["operator"], false, "{who}");

    // The operator's view of each tenant.
    let acme = names(&moat.cli(&["server", "list", "--tenant", "acme", "--json"]).ok().json());
    let default = names(&moat.cli(&["server", "list", "--json"]).ok().json());
    let mut acme = acme;
    acme.sort();
    assert_eq!(acme, vec!["acmesrv".to_owned(), "acmeurl".to_owned()]);
    assert_eq!(default, vec!["defsrv".to_owned()]);

    // The acme key sees only acme.
    let mut mine = names(&moat.cli_as(&acme_key, &["server", "list", "--json"]).ok().json());
    mine.sort();
    assert_eq!(mine, acme);
    let run = moat.cli_as(&acme_key, &["server", "list", "--tenant", "default", "--json"]);
    assert_eq!(run.code, Some(1), "acme key listing default: {} {}", run.stdout, run.stderr);
    let run = moat.cli_as(&acme_key, &["key", "list", "--json"]).ok();
    assert!(!run.stdout.contains("\"owner\""), "acme sees the default tenant's keys: {}", run.stdout);
    let tenants = names(&moat.cli_as(&acme_key, &["tenant", "list", "--json"]).ok().json());
    assert!(!tenants.contains(&"default".to_owned()), "{tenants:?}");

    // ... and cannot reach the default tenant's server over MCP.
    let r = moat.modern("/mcp/defsrv", &acme_key, "tools/list", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let (r, _) = moat.initialize("/mcp/defsrv", &acme_key, LEGACY).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = moat.modern("/mcp", &acme_key, "tools/call", json!({ "name": "defsrv__x", "arguments": {} })).await;
    assert_eq!(r.rpc_code(), Some(-32602), "{}", r.text);

    // ... nor create or delete tenants.
    let r = moat
        .send(moat.http.post(moat.url("/api/v1/tenants")).bearer_auth(&acme_key).json(&json!({ "name": "evil" })))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let run = moat.cli_as(&acme_key, &["tenant", "create", "evil2"]);
    assert_eq!(run.code, Some(1), "{} {}", run.stdout, run.stderr);
    let r = moat.send(moat.http.delete(moat.url("/api/v1/tenants/default")).bearer_auth(&acme_key)).await;
    assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND, "{} {}", r.status, r.text);
    let tenants = names(&moat.cli(&["tenant", "list", "--json"]).ok().json());
    assert!(!tenants.contains(&"evil".to_owned()) && tenants.contains(&"default".to_owned()), "{tenants:?}");
}

#[tokio::test]
async fn audit_records_metadata_and_never_secrets() {
    let moat = Moat::start().await;
    // auth.failure
    let r = moat.get("/api/v1/whoami", Some("moat_garbage")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // key.create, key.revoke
    let secret = moat.cli(&["key", "create", "audited", "--role", "member"]).ok().stdout.trim().to_owned();
    let rotated_from = moat.cli(&["key", "create", "rot"]).ok().stdout.trim().to_owned();
    let rotated = moat.cli(&["key", "rotate", "rot"]).ok().stdout.trim().to_owned();
    // A failed attempt with a well-formed key of a known id.
    assert_eq!(whoami(&moat, &rotated_from).await, StatusCode::UNAUTHORIZED);
    // mcp.initialize and an MCP call.
    let (r, _) = moat.initialize("/mcp", &secret, LEGACY).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = moat.modern("/mcp", &secret, "server/discover", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    moat.cli(&["key", "revoke", "audited"]).ok();

    let secrets = [moat.key.clone(), secret.clone(), rotated_from.clone(), rotated.clone()];

    // The audit sink writes off the hot path: poll briefly.
    let wanted = ["auth.failure", "key.create", "key.revoke", "key.rotate", "mcp.initialize", "mcp.server/discover"];
    let mut events = Value::Null;
    let mut text = String::new();
    for _ in 0..50 {
        let run = moat.cli(&["audit", "list", "--json", "--all", "--limit", "1000"]).ok();
        events = run.json();
        text = run.stdout;
        let actions: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        if wanted.iter().all(|w| actions.contains(w)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let list = events.as_array().unwrap();
    for w in wanted {
        let ev = list.iter().find(|e| e["action"] == w).unwrap_or_else(|| panic!("no `{w}` event in {events:#}"));
        for field in ["tenant_id", "action", "result", "at"] {
            assert!(ev.get(field).is_some(), "`{w}` event without `{field}`: {ev}");
        }
        assert!(ev["at"].is_number() || ev["at"].is_string(), "{ev}");
        assert!(ev["result"].is_string(), "{ev}");
        if w != "auth.failure" {
            assert!(ev["tenant_id"].is_string(), "`{w}` event without a tenant: {ev}");
        }
    }
    let failure = list.iter().find(|e| e["action"] == "auth.failure").unwrap();
    assert_ne!(failure["result"], "ok", "{failure}");

    // The tenant's own view (without --all) has its own events too.
    let own = moat.cli(&["audit", "list", "--json", "--limit", "1000"]).ok().json();
    let own_actions: Vec<&str> = own.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for w in ["key.create", "key.revoke", "mcp.initialize", "mcp.server/discover"] {
        assert!(own_actions.contains(&w), "no `{w}` in the tenant's audit list: {own_actions:?}");
    }

    // Metadata only: no secret, whole or in part, anywhere in the trail ...
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "the audit trail contains a key secret");
        assert!(!text.contains(&s[18..]), "the audit trail contains a key's secret part");
    }
    // ... nor in the server's log (the init key was never on stderr here).
    let log = moat.stderr();
    for s in &secrets {
        assert!(!log.contains(&s[18..]), "the server log contains a key secret");
    }
}

#[tokio::test]
async fn admin_command_with_a_wrong_key_fails_with_one_line() {
    let moat = Moat::start().await;
    for key in ["moat_wrong", "", &crate::harness::unknown_wellformed_key()] {
        let run = moat.cli_as(key, &["key", "list"]);
        assert_eq!(run.code, Some(1), "key {key:?}: {} {}", run.stdout, run.stderr);
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "key {key:?}: one-line error: {:?}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
    // Nothing listening: also one line, exit 1.
    let run = moat_down(&moat);
    assert_eq!(run.code, Some(1), "{} {}", run.stdout, run.stderr);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{:?}", run.stderr);
}

fn moat_down(moat: &Moat) -> crate::harness::Run {
    let port = crate::harness::free_port();
    crate::harness::moat_cmd(&moat.cwd())
        .args(["key", "list"])
        .env("MOAT_URL", format!("http://127.0.0.1:{port}"))
        .env("MOAT_API_KEY", &moat.key)
        .output()
        .unwrap()
        .into()
}

#[tokio::test]
async fn failed_uses_of_a_tenants_key_are_in_that_tenants_audit_list() {
    // `moat audit list --json` (the tenant's own view) must show
    // `auth.failure` events, with their tenant, when the presented key
    // belongs to the tenant (a revoked key still in use, a wrong secret).
    let moat = Moat::start().await;
    let k = moat.cli(&["key", "create", "leaked", "--role", "member"]).ok().stdout.trim().to_owned();
    moat.cli(&["key", "revoke", "leaked"]).ok();
    assert_eq!(whoami(&moat, &k).await, StatusCode::UNAUTHORIZED);
    let tenant_id = moat.get("/api/v1/whoami", Some(&moat.key)).await.json()["tenant_id"].clone();
    let mut found = None;
    for _ in 0..30 {
        let list = moat.cli(&["audit", "list", "--json", "--action", "auth."]).ok().json();
        found = list.as_array().unwrap().iter().find(|e| e["action"] == "auth.failure").cloned();
        if found.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ev = found.expect("no auth.failure in the tenant's `moat audit list --json` after a revoked key was used");
    assert_eq!(ev["tenant_id"], tenant_id, "{ev}");
    assert_ne!(ev["result"], "ok", "{ev}");
}
