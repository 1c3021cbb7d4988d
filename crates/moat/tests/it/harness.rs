//! Starts the real `moat` binary on a free loopback port with its own data
//! dir, and stops it (SIGTERM, then SIGKILL) when dropped, together with any
//! leftover upstream process that carries the instance's marker argument.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const MODERN: &str = "2026-07-28";
pub const LEGACY: &str = "2025-11-25";

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_moat")
}

/// A free port on 127.0.0.1 (released before returning: retried on a race).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// True when `s` is shaped like a moat API key:
/// `^moat_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}$`.
pub fn is_key(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("moat_") else { return false };
    let b = rest.as_bytes();
    b.len() == 12 + 1 + 49
        && b[12] == b'_'
        && b[..12].iter().all(u8::is_ascii_alphanumeric)
        && b[13..].iter().all(u8::is_ascii_alphanumeric)
}

/// CRC-32 (IEEE), to forge well-formed keys independently of the product.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The 6-character base62 checksum of a key body.
pub fn key_checksum(body: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut v = u64::from(crc32(body.as_bytes()));
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(v % 62) as usize];
        v /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

/// A well-formed key (correct checksum) that no database knows.
pub fn unknown_wellformed_key() -> String {
    let body = "moat_ZZZZunknown0_0123456789abcdefghijABCDEFGHIJ0123456789abc";
    assert_eq!(body.len(), 5 + 12 + 1 + 43);
    let key = format!("{body}{}", key_checksum(body));
    assert!(is_key(&key));
    key
}

/// A unique marker for this test process and instance.
pub fn unique_marker(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("moat-it-{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// pids of processes with an argument that starts with `marker` (other than us).
pub fn pids_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.iter().any(|a| a.starts_with(marker.as_bytes())) {
            out.push(pid);
        }
    }
    out
}

/// A base command for the binary with a clean environment: only `PATH` and
/// `HOME` from ours (no MOAT_*, no RUST_BACKTRACE, no proxies).
pub fn moat_cmd(cwd: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd).env_clear();
    for var in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Output of a finished command, as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "command failed: stdout={} stderr={}", self.stdout, self.stderr);
        self
    }
}

/// Runs `moat init --data-dir <data>` and returns the printed key.
pub fn init(cwd: &Path, data: &Path) -> Run {
    moat_cmd(cwd).args(["init", "--data-dir"]).arg(data).output().expect("run moat init").into()
}

/// A response read completely.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    /// The body as JSON, or the JSON-RPC response carried in an SSE stream.
    pub fn json(&self) -> Value {
        let ct = self.header("content-type").unwrap_or_default();
        if ct.starts_with("text/event-stream") {
            let mut last = Value::Null;
            for line in self.text.lines() {
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                    && (v.get("result").is_some() || v.get("error").is_some())
                {
                    last = v;
                }
            }
            return last;
        }
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}); status {}: {}", self.status, self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
    /// The JSON-RPC error code, if any.
    pub fn rpc_code(&self) -> Option<i64> {
        self.json().pointer("/error/code").and_then(Value::as_i64)
    }
    /// The JSON-RPC result; panics with the body otherwise.
    #[track_caller]
    pub fn result(&self) -> Value {
        let v = self.json();
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("no result; status {}: {}", self.status, self.text),
        }
    }
}

fn stdout_path(stderr_path: &Path) -> PathBuf {
    let mut p = stderr_path.as_os_str().to_owned();
    p.push(".stdout");
    PathBuf::from(p)
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stderr written to `stderr_path` and stdout to
    /// `stderr_path` + `.stdout`.
    pub fn spawn(mut cmd: Command, stderr_path: PathBuf) -> Proc {
        let log = std::fs::File::create(&stderr_path).unwrap();
        let out = std::fs::File::create(stdout_path(&stderr_path)).unwrap();
        let child = cmd.stdout(out).stderr(log).spawn().expect("spawn moat");
        Proc { child: Some(child), stderr_path }
    }

    /// What the process wrote on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(stdout_path(&self.stderr_path)).unwrap_or_default()
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until `GET http://127.0.0.1:<port>/healthz` answers 200, or
    /// the process exits (Err with its output).
    pub async fn wait_healthy(&mut self, port: u16) -> Result<(), String> {
        let http = http_client();
        let url = format!("http://127.0.0.1:{port}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                self.child = None;
                return Err(format!("moat exited with {status}; output:\n{}", self.output()));
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status() == StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("moat did not become healthy in 30 s; output:\n{}", self.output()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the exit (up to `within`) without signalling.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit (up to `within`); then SIGKILL
    /// and `None`.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let status = self.terminate(Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!(
                "---- moat output ({}, exit {status:?}) ----\n{}\n---- end ----",
                self.stderr_path.display(),
                self.output()
            );
        }
    }
}

/// Options of a gateway instance.
#[derive(Default)]
pub struct Opts {
    /// Extra moat.toml text.
    pub config: String,
    /// Extra environment variables for `moat serve`.
    pub env: Vec<(String, String)>,
    /// Skip `moat init`: the first start initialises (zero-config).
    pub zero_config: bool,
}

/// One running gateway.
pub struct Moat {
    proc: Option<Proc>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub key: String,
    pub http: reqwest::Client,
    /// Appears in upstream commands started for this instance.
    pub marker: String,
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Moat {
    /// A gateway initialised with `moat init`, with an empty config.
    pub async fn start() -> Moat {
        Self::with(Opts::default()).await
    }

    /// A gateway with these options.
    pub async fn with(opts: Opts) -> Moat {
        Self::with_marker(opts, unique_marker("gw")).await
    }

    /// A gateway whose upstreams carry `marker` (see [`pids_with_marker`]).
    pub async fn with_marker(opts: Opts, marker: String) -> Moat {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cwd")).unwrap();
        let data = dir.path().join("data");
        let key = if opts.zero_config {
            String::new()
        } else {
            let run = init(&dir.path().join("cwd"), &data).ok();
            run.stdout.trim().to_owned()
        };
        std::fs::write(dir.path().join("moat.toml"), &opts.config).unwrap();
        let mut moat = Moat { proc: None, port: 0, dir, key, http: http_client(), marker };
        for attempt in 0..5 {
            let port = free_port();
            let cmd = moat.serve_cmd(port, &opts.env);
            let mut proc = Proc::spawn(cmd, moat.stderr_path());
            match proc.wait_healthy(port).await {
                Ok(()) => {
                    moat.proc = Some(proc);
                    moat.port = port;
                    break;
                }
                Err(out) if attempt < 4 && out.contains("binding") => {}
                Err(out) => panic!("moat did not start:\n{out}"),
            }
        }
        if opts.zero_config {
            moat.key = moat
                .stderr()
                .lines()
                .map(str::trim)
                .find(|l| is_key(l))
                .unwrap_or_else(|| panic!("no owner key on stderr:\n{}", moat.stderr()))
                .to_owned();
        }
        moat
    }

    fn serve_cmd(&self, port: u16, env: &[(String, String)]) -> Command {
        let mut cmd = moat_cmd(&self.cwd());
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("moat.toml")
    }
    pub fn cwd(&self) -> PathBuf {
        self.dir.path().join("cwd")
    }
    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// What moat wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit (up to `within`), then SIGKILL.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc.as_mut()?.terminate(within)
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Runs an admin command against this gateway with `key`.
    pub fn cli_as(&self, key: &str, args: &[&str]) -> Run {
        moat_cmd(&self.cwd())
            .args(args)
            .env("MOAT_URL", self.base())
            .env("MOAT_API_KEY", key)
            .output()
            .expect("run moat")
            .into()
    }

    /// Runs an admin command with the owner's key.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_as(&self.key, args)
    }

    /// Runs an admin command with `key`, feeding `input` on stdin.
    pub fn cli_stdin(&self, key: &str, args: &[&str], input: &str) -> Run {
        use std::io::Write as _;
        let mut child = moat_cmd(&self.cwd())
            .args(args)
            .env("MOAT_URL", self.base())
            .env("MOAT_API_KEY", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run moat");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("wait moat").into()
    }

    /// Kills the gateway with SIGKILL (no draining), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take()
            && let Some(mut child) = p.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the gateway again on the same data dir and config (after
    /// [`Moat::kill`] or [`Moat::terminate`]), on a new port.
    pub async fn restart(&mut self, env: &[(String, String)]) {
        drop(self.proc.take());
        let port = free_port();
        let log = self.dir.path().join(format!("stderr-{port}.log"));
        let mut proc = Proc::spawn(self.serve_cmd(port, env), log);
        proc.wait_healthy(port).await.unwrap_or_else(|out| panic!("moat did not restart:\n{out}"));
        self.proc = Some(proc);
        self.port = port;
    }

    /// Everything moat wrote on stderr and stdout, over all its runs.
    pub fn all_output(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("stderr") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// Sends a request and reads the whole response (up to the first
    /// JSON-RPC response when it is an SSE stream).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let mut r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let sse = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = match tokio::time::timeout(left, r.chunk()).await {
                Ok(Ok(Some(c))) => c,
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) => panic!("response body did not complete in 30 s: {}", String::from_utf8_lossy(&body)),
            };
            body.extend_from_slice(&chunk);
            if sse {
                let text = String::from_utf8_lossy(&body);
                let done = text.lines().filter_map(|l| l.strip_prefix("data:")).any(|d| {
                    serde_json::from_str::<Value>(d.trim())
                        .is_ok_and(|v| v.get("result").is_some() || v.get("error").is_some())
                });
                if done {
                    break;
                }
            }
        }
        Resp { status, headers, text: String::from_utf8_lossy(&body).into_owned() }
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        let mut req = self.http.get(self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        self.send(req).await
    }

    /// POST a raw body to an MCP path with the usual headers.
    pub fn post_raw(&self, path: &str, key: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req
    }

    /// A well-formed 2026-07-28 request, with headers matching the body.
    pub fn modern_req(&self, path: &str, key: &str, method: &str, mut params: Value) -> reqwest::RequestBuilder {
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        if !params.is_object() {
            params = json!({});
        }
        params["_meta"] = meta;
        let name = params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str).map(str::to_owned);
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut req = self
            .post_raw(path, Some(key), body.to_string())
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method);
        if let Some(n) = name
            && matches!(method, "tools/call" | "prompts/get" | "resources/read")
        {
            req = req.header("mcp-name", n);
        }
        req
    }

    pub async fn modern(&self, path: &str, key: &str, method: &str, params: Value) -> Resp {
        self.send(self.modern_req(path, key, method, params)).await
    }

    /// Opens a 2025-11-25 session; returns its id.
    pub async fn initialize(&self, path: &str, key: &str, version: &str) -> (Resp, String) {
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "it", "version": "0" } }
        });
        let resp = self.send(self.post_raw(path, Some(key), body.to_string())).await;
        let sid = resp.header("mcp-session-id").unwrap_or_default();
        if !sid.is_empty() {
            let version =
                resp.json().pointer("/result/protocolVersion").and_then(Value::as_str).unwrap_or(version).to_owned();
            let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
            let r = self
                .send(
                    self.post_raw(path, Some(key), note.to_string())
                        .header("mcp-session-id", &sid)
                        .header("mcp-protocol-version", &version),
                )
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "notifications/initialized: {}", r.text);
        }
        (resp, sid)
    }

    /// A request inside a legacy session.
    pub async fn legacy(&self, path: &str, key: &str, sid: &str, id: i64, method: &str, params: Value) -> Resp {
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send(
            self.post_raw(path, Some(key), body.to_string())
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", LEGACY),
        )
        .await
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        // Dropping the process stops it (and prints its output on a panic).
        drop(self.proc.take());
        // Safety net: no upstream of this instance outlives the test.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = pids_with_marker(&self.marker);
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for pid in left {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
