//! The binary's own surface: version, init, config errors, precedence,
//! usage errors, zero-config first start.

use crate::harness::{Moat, Opts, Proc, free_port, http_client, init, is_key, moat_cmd};
use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

#[test]
fn version_prints_name_and_version() {
    let run: crate::harness::Run = moat_cmd(Path::new("/")).arg("--version").output().unwrap().into();
    let run = run.ok();
    let line = run.stdout.trim();
    assert!(line.starts_with("moat "), "{line}");
    assert_eq!(line, format!("moat {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn init_prints_one_key_and_refuses_a_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = init(dir.path(), &data).ok();
    let lines = run.stdout_lines();
    assert_eq!(lines.len(), 1, "init must print exactly one stdout line: {:?}", run.stdout);
    assert!(is_key(lines[0]), "not a key: {}", lines[0]);
    assert!(!run.stderr.contains(lines[0]), "the key must only be on stdout");

    let kek = data.join("kek.key");
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "kek.key mode is {mode:o}");

    let again = init(dir.path(), &data);
    assert_eq!(again.code, Some(1), "second init: {} {}", again.stdout, again.stderr);
    assert!(again.stdout.is_empty(), "second init printed on stdout: {}", again.stdout);
    assert_eq!(again.stderr.trim_end().lines().count(), 1, "one-line message: {:?}", again.stderr);
    assert!(!again.stderr.trim().is_empty());
    assert!(again.stderr.contains("initialised"), "{}", again.stderr);
}

/// `serve --config <bad>` exits 1 and names the key and the file.
fn bad_config(toml: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad-moat.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut cmd = moat_cmd(dir.path());
    cmd.arg("serve").arg("--config").arg(&cfg).arg("--data-dir").arg(dir.path().join("data"));
    let mut proc = Proc::spawn(cmd, dir.path().join("serve.log"));
    let status = proc.wait_exit(Duration::from_secs(20));
    let stderr = proc.output();
    assert!(status.is_some(), "config {toml:?}: moat did not exit; output:\n{stderr}");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "config {toml:?}: output:\n{stderr}");
    assert!(stderr.contains(key), "config {toml:?}: stderr does not name `{key}`: {stderr}");
    assert!(stderr.contains(&cfg.display().to_string()), "config {toml:?}: stderr does not name the file: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one-line error: {stderr:?}");
    assert!(proc.stdout().is_empty(), "{}", proc.stdout());
}

#[test]
fn bad_listen_is_refused_naming_key_and_file() {
    bad_config("listen = \"nope\"\n", "listen");
}

#[test]
fn unknown_key_is_refused_naming_key_and_file() {
    bad_config("listne_typo = 3\n", "listne_typo");
}

#[test]
fn stdio_server_without_command_is_refused_naming_key_and_file() {
    bad_config("[[servers]]\nname = \"a\"\ntransport = \"stdio\"\n", "servers[0].command");
    // Without a transport either, the error still names the table and
    // what is missing.
    bad_config("[[servers]]\nname = \"a\"\n", "servers[0]");
    bad_config("[[servers]]\nname = \"a\"\n", "command");
}

/// Starts `moat serve` in `cwd` (which holds a `moat.toml`) with `env` and
/// `args`, and checks that it serves on `expect` and not on `not`.
async fn serves_on(cwd: &Path, env: &[(&str, String)], args: &[String], expect: u16, not: &[u16]) {
    let mut cmd = moat_cmd(cwd);
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(cmd, cwd.join(format!("serve-{expect}.log")));
    proc.wait_healthy(expect).await.unwrap();
    let http = http_client();
    for port in not {
        let r = http.get(format!("http://127.0.0.1:{port}/healthz")).send().await;
        assert!(r.is_err(), "something answers on {port}");
    }
    let status = proc.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "exit after SIGTERM: {status:?}");
}

#[tokio::test]
async fn listen_precedence_file_then_env_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    init(cwd, &data).ok();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    // moat.toml in the working directory is read without --config.
    std::fs::write(cwd.join("moat.toml"), format!("listen = \"127.0.0.1:{p1}\"\ndata_dir = \"data\"\n")).unwrap();
    serves_on(cwd, &[], &[], p1, &[p2, p3]).await;
    let env = [("MOAT_LISTEN", format!("127.0.0.1:{p2}"))];
    serves_on(cwd, &env, &[], p2, &[p1, p3]).await;
    serves_on(cwd, &env, &["--listen".into(), format!("127.0.0.1:{p3}")], p3, &[p1, p2]).await;
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["frobnicate"][..], &["serve", "--no-such-flag"], &["key", "create"], &[]] {
        let run: crate::harness::Run = moat_cmd(Path::new("/")).args(args).output().unwrap().into();
        assert_eq!(run.code, Some(2), "moat {args:?}: stdout={} stderr={}", run.stdout, run.stderr);
    }
}

#[tokio::test]
async fn zero_config_first_start_prints_a_working_owner_key_on_stderr() {
    // No config file, no --data-dir: the default ./moat-data in the working
    // directory is created and initialised.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = moat_cmd(dir.path());
    cmd.arg("serve").env("MOAT_LISTEN", format!("127.0.0.1:{port}"));
    let mut proc = Proc::spawn(cmd, dir.path().join("serve.log"));
    proc.wait_healthy(port).await.unwrap();
    let stderr = proc.output();
    let keys: Vec<&str> = stderr.lines().map(str::trim).filter(|l| is_key(l)).collect();
    assert_eq!(keys.len(), 1, "exactly one key line on stderr:\n{stderr}");
    assert!(!proc.stdout().contains(keys[0]), "the key must go to stderr, not stdout");
    let kek = dir.path().join("moat-data").join("kek.key");
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let http = http_client();
    let r = http.get(format!("http://127.0.0.1:{port}/api/v1/whoami")).bearer_auth(keys[0]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let who: serde_json::Value = r.json().await.unwrap();
    assert_eq!(who["role"], "owner", "{who}");
    assert_eq!(who["operator"], true, "{who}");
    let key = keys[0].to_owned();
    assert!(proc.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));

    // A second start does not initialise again, print a key, or invalidate
    // the first one.
    let port = free_port();
    let mut cmd = moat_cmd(dir.path());
    cmd.arg("serve").env("MOAT_LISTEN", format!("127.0.0.1:{port}"));
    let mut proc = Proc::spawn(cmd, dir.path().join("serve2.log"));
    proc.wait_healthy(port).await.unwrap();
    assert!(!proc.output().lines().any(|l| is_key(l.trim())), "second start printed a key");
    let r = http.get(format!("http://127.0.0.1:{port}/api/v1/whoami")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn zero_config_harness_instance_works() {
    // The same with an explicit empty data dir and config (the harness path).
    let moat = Moat::with(Opts { zero_config: true, ..Opts::default() }).await;
    let r = moat.get("/api/v1/whoami", Some(&moat.key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
