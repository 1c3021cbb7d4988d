//! The credential vault through the binary: scope resolution, injection into
//! stdio and HTTP upstreams, one process per credential owner, redaction of
//! echoed values, rotation (killed half way), KEK rotation, tampering, a key
//! provider that does not answer, and a canary search of every output.

use crate::harness::{Moat, Opts, Resp, Run, free_port, pids_with_marker, unique_marker};
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cred_server.py")
}

fn sha256(v: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fixture as a Streamable HTTP server on a free port.
fn http_fixture() -> (Guard, u16) {
    let port = free_port();
    let mut child = Command::new("python3")
        .arg(fixture())
        .args(["http", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("ready line");
    assert_eq!(line.trim(), "ready");
    (Guard(child), port)
}

/// The fixture servers. The firewall runs in shadow mode: the fixture reports
/// fingerprints of what it received in fields named like secrets (`TOKEN`),
/// which the firewall would otherwise redact, and the leak checks below must
/// hold by the vault's own exact-value redaction, not by the firewall's.
fn servers_toml(marker: &str, http_port: Option<u16>) -> String {
    let mut t = format!(
        "[firewall]\nmode = \"shadow\"\n\n[[servers]]\nname = \"envsrv\"\ncommand = [\"python3\", {:?}, \"stdio\", \"{marker}-env\"]\n\n",
        fixture().display().to_string()
    );
    if let Some(p) = http_port {
        t.push_str(&format!("[[servers]]\nname = \"hdrsrv\"\nurl = \"http://127.0.0.1:{p}/mcp\"\n\n"));
    }
    t
}

/// Calls `<server>__<tool>` on the aggregated endpoint.
async fn call(moat: &Moat, key: &str, tool: &str, args: Value) -> Resp {
    moat.modern("/mcp", key, "tools/call", json!({ "name": tool, "arguments": args })).await
}

/// What the fixture reported: hashes of the credentials it received.
async fn whoami(moat: &Moat, key: &str, server: &str) -> Value {
    let r = call(moat, key, &format!("{server}__whoami"), json!({})).await;
    r.result()["structuredContent"].clone()
}

/// `moat user create` + `moat key create`; returns the key.
fn user_with_key(moat: &Moat, name: &str, kind: &str) -> String {
    moat.cli(&["user", "create", name, "--kind", kind]).ok();
    let run = moat.cli(&["key", "create", &format!("{name}-key"), "--user", name, "--kind", kind]).ok();
    run.stdout.trim().to_owned()
}

/// Collects every output a canary must never appear in.
#[derive(Default)]
struct Outputs(Vec<String>);

impl Outputs {
    fn run(&mut self, r: Run) -> Run {
        self.0.push(format!("{}\n{}", r.stdout, r.stderr));
        r
    }
    fn resp(&mut self, r: Resp) -> Resp {
        self.0.push(r.text.clone());
        r
    }
}

fn set(moat: &Moat, key: &str, args: &[&str], value: &str) -> Run {
    let mut all = vec!["credential", "set"];
    all.extend_from_slice(args);
    moat.cli_stdin(key, &all, &format!("{value}\n"))
}

fn assert_no_canary(haystack: &[u8], canaries: &[String], what: &str) {
    for c in canaries {
        let forms = [
            c.clone(),
            base64::engine::general_purpose::STANDARD.encode(c),
            c.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
        ];
        for f in forms {
            let found = haystack.windows(f.len()).any(|w| w == f.as_bytes());
            assert!(!found, "a credential value ({f}) appears in {what}");
        }
    }
}

#[tokio::test]
async fn credentials_resolve_by_scope_are_injected_and_never_leak() {
    let (_http, http_port) = http_fixture();
    let marker = unique_marker("vault");
    let opts = Opts { config: servers_toml(&marker, Some(http_port)), ..Opts::default() };
    let moat = Moat::with_marker(opts, marker.clone()).await;
    let owner = moat.key.clone();
    let mut out = Outputs::default();
    let canary = |tag: &str| format!("cnry{}{}", tag, unique_marker("v").replace('-', ""));
    let (org, team, alice_v, svc, http_org, alice_api, bob_pw) =
        (canary("org"), canary("team"), canary("alice"), canary("svc"), canary("horg"), canary("api"), canary("pw"));
    let alice_v2 = canary("alice2");
    let bad = canary("bad");

    let alice = user_with_key(&moat, "alice", "human");
    let bob = user_with_key(&moat, "bob", "human");
    let carol = user_with_key(&moat, "carol", "agent");
    let robot = user_with_key(&moat, "robot", "service");
    let robot2 = user_with_key(&moat, "robot2", "service");
    out.run(moat.cli(&["team", "create", "sre"]).ok());
    out.run(moat.cli(&["team", "add-member", "sre", "alice"]).ok());
    out.run(moat.cli(&["team", "add-member", "sre", "carol"]).ok());

    // Stored through the CLI, values on stdin.
    out.run(set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--env", "TOKEN"], &org).ok());
    out.run(
        set(&moat, &owner, &["--server", "envsrv", "--scope", "team", "--team", "sre", "--env", "TOKEN"], &team).ok(),
    );
    let personal =
        out.run(set(&moat, &alice, &["--server", "envsrv", "--scope", "personal", "--env", "TOKEN"], &alice_v).ok());
    let alice_cred = personal.stdout.trim().to_owned();
    out.run(
        set(&moat, &owner, &["--server", "envsrv", "--scope", "service", "--client", "robot", "--env", "TOKEN"], &svc)
            .ok(),
    );
    out.run(set(&moat, &owner, &["--server", "hdrsrv", "--scope", "org", "--bearer"], &http_org).ok());
    out.run(
        set(&moat, &alice, &["--server", "hdrsrv", "--scope", "personal", "--header", "X-API-Key"], &alice_api).ok(),
    );
    let bob_basic = format!("bob:{bob_pw}");
    out.run(set(&moat, &bob, &["--server", "hdrsrv", "--scope", "personal", "--basic"], &bob_basic).ok());

    // personal ▸ team ▸ org for people and agents; a machine only its own.
    let token = |v: &Value| v["env"]["TOKEN"].clone();
    let w_alice = whoami(&moat, &alice, "envsrv").await;
    assert_eq!(token(&w_alice), json!(sha256(&alice_v)), "alice: her personal credential");
    let w_carol = whoami(&moat, &carol, "envsrv").await;
    assert_eq!(token(&w_carol), json!(sha256(&team)), "carol (agent, in sre): the team's");
    let w_bob = whoami(&moat, &bob, "envsrv").await;
    assert_eq!(token(&w_bob), json!(sha256(&org)), "bob: the organisation's");
    let w_owner = whoami(&moat, &owner, "envsrv").await;
    assert_eq!(token(&w_owner), json!(sha256(&org)));
    let w_robot = whoami(&moat, &robot, "envsrv").await;
    assert_eq!(token(&w_robot), json!(sha256(&svc)), "a service client: its own");
    let w_robot2 = whoami(&moat, &robot2, "envsrv").await;
    assert_eq!(token(&w_robot2), Value::Null, "a service client never falls back to org credentials");

    // One process per credential owner: bob and the owner share the org's.
    assert_eq!(w_bob["pid"], w_owner["pid"]);
    let pids: std::collections::BTreeSet<i64> =
        [&w_alice, &w_carol, &w_bob, &w_robot, &w_robot2].iter().filter_map(|w| w["pid"].as_i64()).collect();
    assert_eq!(pids.len(), 5, "separate processes per binding: {pids:?}");
    assert!(pids_with_marker(&marker).len() >= 5);

    // HTTP upstreams: headers, per binding; basic auth and bearer share `Authorization`.
    let h = |v: &Value, n: &str| v["headers"][n].clone();
    let w = whoami(&moat, &alice, "hdrsrv").await;
    assert_eq!(h(&w, "authorization"), json!(sha256(&format!("Bearer {http_org}"))));
    assert_eq!(h(&w, "x-api-key"), json!(sha256(&alice_api)));
    let w = whoami(&moat, &bob, "hdrsrv").await;
    let basic = base64::engine::general_purpose::STANDARD.encode(&bob_basic);
    assert_eq!(h(&w, "authorization"), json!(sha256(&format!("Basic {basic}"))));
    assert_eq!(h(&w, "x-api-key"), Value::Null);

    // An upstream echoing what it got (raw, base64, URL-encoded, hex, in
    // results, errors, log notifications and stderr) leaks nothing.
    for (key, server) in [(&alice, "envsrv"), (&alice, "hdrsrv"), (&bob, "hdrsrv"), (&robot, "envsrv")] {
        let r = out.resp(call(&moat, key, &format!("{server}__leak"), json!({})).await);
        assert!(r.text.contains("[REDACTED]"), "{server}: {}", r.text);
        let r = out.resp(call(&moat, key, &format!("{server}__leak"), json!({ "fail": true })).await);
        assert!(r.text.contains("[REDACTED]"), "{server}: {}", r.text);
    }
    // A legacy session on one server: notifications arrive on the stream.
    let (init, sid) = moat.initialize("/mcp/envsrv", &alice, crate::harness::LEGACY).await;
    out.resp(init);
    let r = out.resp(moat.legacy("/mcp/envsrv", &alice, &sid, 1, "tools/call", json!({ "name": "leak" })).await);
    assert!(r.text.contains("[REDACTED]"), "{}", r.text);

    // Changes take effect on the next call, whatever the cache TTL.
    out.run(set(&moat, &alice, &["--server", "envsrv", "--scope", "personal", "--env", "TOKEN"], &alice_v2).ok());
    let w = whoami(&moat, &alice, "envsrv").await;
    assert_eq!(token(&w), json!(sha256(&alice_v2)));
    assert_ne!(w["pid"], w_alice["pid"], "the process holding the old value was replaced");
    out.run(moat.cli_as(&alice, &["credential", "delete", &alice_cred]).ok());
    assert_eq!(token(&whoami(&moat, &alice, "envsrv").await), json!(sha256(&team)), "back to the team's");

    // Two teams holding the same slot: ambiguous, refused rather than guessed.
    let team2 = canary("team2");
    out.run(moat.cli(&["team", "create", "dev"]).ok());
    out.run(moat.cli(&["team", "add-member", "dev", "carol"]).ok());
    out.run(
        set(&moat, &owner, &["--server", "envsrv", "--scope", "team", "--team", "dev", "--env", "TOKEN"], &team2).ok(),
    );
    let r = out.resp(call(&moat, &carol, "envsrv__whoami", json!({})).await);
    assert!(r.text.contains("ambiguous") && r.text.contains("`dev`") && r.text.contains("`sre`"), "{}", r.text);
    out.run(moat.cli(&["team", "remove-member", "dev", "carol"]).ok());
    assert_eq!(token(&whoami(&moat, &carol, "envsrv").await), json!(sha256(&team)));

    // Another tenant never sees or gets this tenant's credentials.
    out.run(moat.cli(&["tenant", "create", "acme"]).ok());
    let cmd = format!("python3 {} stdio {marker}-acme", fixture().display());
    let mut add = vec!["server", "add", "envsrv", "--tenant", "acme", "--command"];
    add.extend(cmd.split(' '));
    out.run(moat.cli(&add).ok());
    let acme = out
        .run(moat.cli(&["key", "create", "acme-key", "--tenant", "acme", "--role", "admin"]).ok())
        .stdout
        .trim()
        .to_owned();
    assert_eq!(token(&whoami(&moat, &acme, "envsrv").await), Value::Null, "no credential crosses tenants");
    let none = out.run(moat.cli_as(&acme, &["credential", "list", "--json"]).ok()).json();
    assert_eq!(none, json!([]));
    let r = out.run(moat.cli_as(&acme, &["credential", "show", &alice_cred]));
    assert_eq!(r.code, Some(1));

    // Members: only their own personal credentials.
    let r = out.run(set(&moat, &alice, &["--server", "envsrv", "--scope", "org", "--env", "API_KEY"], &bad));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("only their own personal"), "{}", r.stderr);
    let listed = out.run(moat.cli_as(&alice, &["credential", "list", "--json"]).ok()).json();
    let tiers: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|c| c["tier"].as_str()).collect();
    assert!(!tiers.contains(&"service"), "{listed}");
    let bobs: Vec<&Value> = listed.as_array().unwrap().iter().filter(|c| c["user_name"] == "bob").collect();
    assert!(bobs.is_empty(), "alice sees none of bob's: {listed}");

    // Refusals never echo the value.
    let r = out.run(set(
        &moat,
        &owner,
        &["--server", "hdrsrv", "--scope", "org", "--header", "X-Two"],
        &format!("a\n{bad}"),
    ));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("header value"), "{}", r.stderr);
    let r = out.run(set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--env", "LD_PRELOAD"], &bad));
    assert!(r.stderr.contains("LD_PRELOAD"), "{}", r.stderr);
    let r = out.run(set(&moat, &owner, &["--server", "nosuch", "--scope", "org", "--env", "TOKEN"], &bad));
    assert_eq!(r.code, Some(1));
    let r = out.run(set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--header", "X-Api"], &bad));
    assert!(r.stderr.contains("stdio server"), "{}", r.stderr);
    for body in [
        json!({ "server": "envsrv", "scope": "org", "kind": "env", "name": "TOKEN", "value": { "v": bad } }),
        json!({ "server": "envsrv", "scope": "org", "kind": "env", "name": "TOKEN", "value": [bad] }),
        json!({ "server": "envsrv", "scope": "nope", "kind": "env", "name": "TOKEN", "value": bad }),
        json!({ "server": "envsrv", "scope": "org", "kind": "env", "name": "TOKEN", "value": bad, "extra": bad }),
    ] {
        let req = moat.http.post(moat.url("/api/v1/credentials")).bearer_auth(&owner).json(&body);
        let r = out.resp(moat.send(req).await);
        assert!(r.status.is_client_error(), "{}: {}", r.status, r.text);
    }

    // Metadata, everywhere: lists, shows, the audit trail.
    let all = out.run(moat.cli(&["credential", "list", "--json"]).ok()).json();
    assert!(all.as_array().unwrap().len() >= 6, "{all}");
    for c in all.as_array().unwrap() {
        assert!(c.get("value").is_none() && c.get("sealed").is_none(), "{c}");
        out.run(moat.cli(&["credential", "show", c["id"].as_str().unwrap()]).ok());
    }
    out.run(moat.cli(&["credential", "list"]).ok());
    let audit = out.run(moat.cli(&["audit", "list", "--json", "--limit", "1000"]).ok()).json();
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["credential.store", "credential.update", "credential.use", "credential.delete"] {
        assert!(actions.contains(&a), "audit has {a}: {actions:?}");
    }
    let used = audit.as_array().unwrap().iter().find(|e| e["action"] == "credential.use").unwrap();
    assert!(used["metadata"]["credentials"][0]["tier"].is_string(), "{used}");
    let r = out.resp(moat.get("/api/v1/audit?limit=1000", Some(&owner)).await);
    assert!(r.status.is_success());

    // The canary search: every output, the logs, the database files.
    let canaries = vec![org, team, team2, alice_v, alice_v2, svc, http_org, alice_api, bob_pw, bad];
    for (i, o) in out.0.iter().enumerate() {
        assert_no_canary(o.as_bytes(), &canaries, &format!("output #{i}"));
    }
    assert_no_canary(moat.all_output().as_bytes(), &canaries, "moat's logs");
    for f in ["moat.db", "moat.db-wal", "moat.db-shm"] {
        if let Ok(bytes) = std::fs::read(moat.data_dir().join(f)) {
            assert_no_canary(&bytes, &canaries, f);
        }
    }
    assert!(moat.all_output().contains("[REDACTED]"), "the upstream's stderr was logged, scrubbed");
}

fn sqlite(db: &Path, sql: &str) -> String {
    let script =
        "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nr=c.execute(sys.argv[2]).fetchall()\nc.commit()\nprint(r)";
    let o = Command::new("python3").args(["-c", script]).arg(db).arg(sql).output().expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("rot{i}{}", unique_marker("r").replace('-', ""))).collect()
}

async fn assert_tokens(moat: &Moat, key: &str, values: &[String]) {
    let w = whoami(moat, key, "envsrv").await;
    for (i, v) in values.iter().enumerate() {
        assert_eq!(w["env"][format!("TOKEN_{i}")], json!(sha256(v)), "TOKEN_{i}: {w}");
    }
}

#[tokio::test]
async fn a_rotation_killed_half_way_loses_nothing_and_finishes_at_restart() {
    let marker = unique_marker("rot");
    let slow = vec![
        ("MOAT_VAULT_ROTATION_BATCH".to_owned(), "1".to_owned()),
        ("MOAT_VAULT_ROTATION_PAUSE_MS".to_owned(), "300".to_owned()),
        ("MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS".to_owned(), "0".to_owned()),
    ];
    let opts = Opts { config: servers_toml(&marker, None), env: slow.clone(), ..Opts::default() };
    let mut moat = Moat::with_marker(opts, marker).await;
    let owner = moat.key.clone();
    let values = tokens(10);
    for (i, v) in values.iter().enumerate() {
        set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--env", &format!("TOKEN_{i}")], v).ok();
    }
    assert_tokens(&moat, &owner, &values).await;
    let db = moat.data_dir().join("moat.db");
    assert_eq!(sqlite(&db, "SELECT DISTINCT key_version FROM credentials"), "[(1,)]");

    // The rotation runs (one credential per 300 ms); reads keep working.
    let mut rotate = Command::new(crate::harness::bin())
        .args(["tenant", "rotate-key"])
        .env("MOAT_URL", moat.base())
        .env("MOAT_API_KEY", &owner)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1300) {
        assert_tokens(&moat, &owner, &values).await;
    }
    moat.kill();
    let _ = rotate.wait();
    let versions = sqlite(&db, "SELECT key_version, count(*) FROM credentials GROUP BY key_version ORDER BY 1");
    assert!(versions.contains("(1,") && versions.contains("(2,"), "killed half way: {versions}");
    assert_eq!(sqlite(&db, "SELECT version FROM tenant_keys ORDER BY 1"), "[(1,), (2,)]");

    // At restart the rotation is finished; every value is intact.
    moat.restart(&[("MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS".to_owned(), "0".to_owned())]).await;
    assert_tokens(&moat, &owner, &values).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = sqlite(&db, "SELECT DISTINCT key_version FROM credentials");
        if v == "[(2,)]" && sqlite(&db, "SELECT version FROM tenant_keys") == "[(2,)]" {
            break;
        }
        assert!(Instant::now() < deadline, "rotation not finished: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_tokens(&moat, &owner, &values).await;

    // Another rotation, to the end this time.
    let report = moat.cli(&["tenant", "rotate-key", "--json"]).ok().json();
    assert_eq!(report["from_version"], 2, "{report}");
    assert_eq!(report["to_version"], 3, "{report}");
    assert_eq!(report["reencrypted"], 10, "{report}");
    assert_eq!(sqlite(&db, "SELECT DISTINCT key_version FROM credentials"), "[(3,)]");
    assert_tokens(&moat, &owner, &values).await;
    let audit = moat.cli(&["audit", "list", "--json", "--action", "credential.rotate"]).ok().json();
    assert!(!audit.as_array().unwrap().is_empty(), "{audit}");
}

#[tokio::test]
async fn kek_rotation_rewraps_and_tampered_records_fail_closed() {
    let marker = unique_marker("kek");
    let env = vec![("MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS".to_owned(), "0".to_owned())];
    let opts = Opts { config: servers_toml(&marker, None), env: env.clone(), ..Opts::default() };
    let mut moat = Moat::with_marker(opts, marker).await;
    let owner = moat.key.clone();
    let values = tokens(2);
    for (i, v) in values.iter().enumerate() {
        set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--env", &format!("TOKEN_{i}")], v).ok();
    }
    let kek = moat.data_dir().join("kek.key");
    let before = std::fs::read(&kek).unwrap();
    let report = moat.cli(&["kek", "rotate", "--json"]).ok().json();
    assert_eq!(report["deks"], 1, "{report}");
    assert_ne!(std::fs::read(&kek).unwrap(), before, "a new KEK file");
    assert!(!moat.data_dir().join("kek.next.key").exists());
    assert_tokens(&moat, &owner, &values).await;
    moat.terminate(Duration::from_secs(10));
    moat.restart(&env).await;
    assert_tokens(&moat, &owner, &values).await;

    // A member cannot rotate the KEK.
    let member = user_with_key(&moat, "mallory", "human");
    assert_eq!(moat.cli_as(&member, &["kek", "rotate"]).code, Some(1));

    // A flipped bit, or a ciphertext moved to another row: the call fails
    // closed with a clear error that carries no value.
    let db = moat.data_dir().join("moat.db");
    let flip = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
        (b,)=c.execute(\"SELECT sealed FROM credentials WHERE target='TOKEN_0'\").fetchone()\n\
        b=bytearray(b); b[20]^=1\n\
        c.execute(\"UPDATE credentials SET sealed=? WHERE target='TOKEN_0'\",(bytes(b),)); c.commit()";
    let o = Command::new("python3").args(["-c", flip]).arg(&db).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = call(&moat, &owner, "envsrv__whoami", json!({})).await;
    let msg = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("integrity"), "{}", r.text);
    assert!(!r.text.contains(&values[0]) && !r.text.contains(&values[1]));
    sqlite(
        &db,
        "UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE target = 'TOKEN_1') \
         WHERE target = 'TOKEN_0'",
    );
    let r = call(&moat, &owner, "envsrv__whoami", json!({})).await;
    assert!(r.text.contains("integrity"), "{}", r.text);
    assert!(moat.all_output().contains("failed authentication"));
}

/// An AWS KMS endpoint that does not answer: not ready, and calls that need
/// the provider fail closed with a clear error.
#[tokio::test]
async fn a_key_provider_that_does_not_answer_fails_closed() {
    let dead = free_port();
    let config = format!(
        "[vault]\nprovider = \"aws-kms\"\nkms_key_id = \"alias/moat\"\nkms_region = \"us-east-1\"\n\
         kms_endpoint = \"http://127.0.0.1:{dead}\"\n\n{}",
        servers_toml(&unique_marker("kms"), None)
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
    ];
    let moat = Moat::with(Opts { config, env, ..Opts::default() }).await;
    let r = moat.get("/readyz", None).await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text);
    assert!(r.json()["checks"]["key_provider"].as_str().unwrap().contains("aws-kms"), "{}", r.text);
    let r = set(&moat, &moat.key, &["--server", "envsrv", "--scope", "org", "--env", "TOKEN"], "never-stored-1");
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("aws-kms"), "{}", r.stderr);
    assert!(!r.stderr.contains("never-stored-1"));
}

/// With `moto` (MOAT_TEST_PYTHON): the aws-kms provider end to end.
#[tokio::test]
async fn aws_kms_provider_against_moto() {
    let Some(python) = std::env::var("MOAT_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        println!("skipped: MOAT_TEST_PYTHON not set (a Python with moto[server])");
        return;
    };
    let probe = Command::new(&python).args(["-c", "import moto, boto3"]).output().expect("python");
    if !probe.status.success() {
        println!("skipped: moto is not installed for {python}");
        return;
    }
    let port = free_port();
    let _moto = Guard(
        Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let create = "import boto3,sys,time\nfor _ in range(100):\n  try:\n    c=boto3.client('kms',endpoint_url=sys.argv[1],\
        region_name='us-east-1',aws_access_key_id='testing',aws_secret_access_key='testing')\n    \
        print(c.create_key()['KeyMetadata']['KeyId']); break\n  except Exception:\n    time.sleep(0.1)";
    let o = Command::new(&python).args(["-c", create, &endpoint]).output().unwrap();
    let key_id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(!key_id.is_empty(), "create_key: {}", String::from_utf8_lossy(&o.stderr));
    let marker = unique_marker("kms");
    let config = format!(
        "[vault]\nprovider = \"aws-kms\"\nkms_key_id = \"{key_id}\"\nkms_region = \"us-east-1\"\n\
         kms_endpoint = \"{endpoint}\"\n\n{}",
        servers_toml(&marker, None)
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
        ("MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS".to_owned(), "0".to_owned()),
    ];
    let mut moat = Moat::with_marker(Opts { config, env: env.clone(), ..Opts::default() }, marker).await;
    let r = moat.get("/readyz", None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let owner = moat.key.clone();
    let values = tokens(3);
    for (i, v) in values.iter().enumerate() {
        set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--env", &format!("TOKEN_{i}")], v).ok();
    }
    assert_tokens(&moat, &owner, &values).await;
    let report = moat.cli(&["tenant", "rotate-key", "--json"]).ok().json();
    assert_eq!(report["reencrypted"], 3, "{report}");
    let report = moat.cli(&["kek", "rotate", "--json"]).ok().json();
    assert_eq!(report["provider"], "aws-kms", "{report}");
    moat.terminate(Duration::from_secs(10));
    moat.restart(&env).await;
    assert_tokens(&moat, &owner, &values).await;
    assert!(
        !std::fs::read(moat.data_dir().join("moat.db"))
            .unwrap()
            .windows(values[0].len())
            .any(|w| w == values[0].as_bytes())
    );
}

/// With a real OpenBao dev server (MOAT_TEST_VAULT_BIN): the vault-transit
/// provider end to end, including a KEK rotation (a new transit key version).
#[tokio::test]
async fn vault_transit_provider_against_openbao() {
    let Some(bin) = std::env::var("MOAT_TEST_VAULT_BIN").ok().filter(|b| !b.is_empty()) else {
        println!("skipped: MOAT_TEST_VAULT_BIN not set (an OpenBao `bao` or Vault `vault` binary)");
        return;
    };
    let port = free_port();
    let home = tempfile::tempdir().unwrap();
    let root = "moat-it-root";
    let _bao = Guard(
        Command::new(&bin)
            .args(["server", "-dev", "-dev-no-store-token", &format!("-dev-root-token-id={root}")])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao"),
    );
    let addr = format!("http://127.0.0.1:{port}");
    let http = crate::harness::http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{addr}/v1/sys/health")).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(Instant::now() < deadline, "OpenBao did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (path, body) in
        [("sys/mounts/transit", json!({"type": "transit"})), ("transit/keys/moat", json!({"derived": true}))]
    {
        let r = http.post(format!("{addr}/v1/{path}")).header("X-Vault-Token", root).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let marker = unique_marker("bao");
    let config =
        format!("[vault]\nprovider = \"vault-transit\"\ntransit_addr = \"{addr}\"\n\n{}", servers_toml(&marker, None));
    let env = vec![
        ("VAULT_TOKEN".to_owned(), root.to_owned()),
        ("MOAT_VAULT_CREDENTIAL_CACHE_TTL_MS".to_owned(), "0".to_owned()),
    ];
    let mut moat = Moat::with_marker(Opts { config, env: env.clone(), ..Opts::default() }, marker).await;
    let r = moat.get("/readyz", None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let owner = moat.key.clone();
    let values = tokens(2);
    for (i, v) in values.iter().enumerate() {
        set(&moat, &owner, &["--server", "envsrv", "--scope", "org", "--env", &format!("TOKEN_{i}")], v).ok();
    }
    assert_tokens(&moat, &owner, &values).await;
    let report = moat.cli(&["kek", "rotate", "--json"]).ok().json();
    assert_eq!(report["provider"], "vault-transit", "{report}");
    assert_eq!(report["deks"], 1, "{report}");
    moat.terminate(Duration::from_secs(10));
    moat.restart(&env).await;
    assert_tokens(&moat, &owner, &values).await;
    assert!(!moat.all_output().contains(root), "the Vault token is never logged");
}
