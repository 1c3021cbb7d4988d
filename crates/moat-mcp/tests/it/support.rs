//! Test helpers: finding the real peers, starting the Python fixture, a
//! minimal in-test HTTP server for fakes, and process lookups.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use moat_mcp::client::{CallContext, EraPreference, Upstream, UpstreamOptions, UpstreamSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// The path of server-everything's `dist/index.js`, or `None` (and a
/// "skipped" line) when the environment does not name it.
pub fn everything() -> Option<String> {
    peer("MOAT_TEST_EVERYTHING")
}

/// A Python with `mcp` installed, or `None` (and a "skipped" line).
pub fn python() -> Option<String> {
    peer("MOAT_TEST_PYTHON")
}

fn peer(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            println!("skipped: {var} not set");
            None
        }
    }
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).to_string_lossy().into_owned()
}

/// Options with short deadlines for tests.
pub fn opts(era: EraPreference) -> UpstreamOptions {
    UpstreamOptions {
        call_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(20),
        era,
        ..UpstreamOptions::default()
    }
}

/// A request with the default context.
pub async fn call(up: &Upstream, method: &str, params: Option<Value>) -> Value {
    match up.request(method, params, CallContext::default()).await {
        Ok(v) => v,
        Err(e) => panic!("{method} failed: {e:?}"),
    }
}

/// The text of a tool result's first content item.
pub fn first_text(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// The Python SDK fixture server (`tests/fixtures/py_server.py`).
pub struct PyServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PyServer {
    /// Starts the fixture with `args` (`streamable-http`, `sse`, `json`).
    pub async fn start(python: &str, args: &[&str]) -> PyServer {
        let mut child = Command::new(python)
            .arg(fixture("py_server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python fixture");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(60), BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the fixture prints its port")
            .expect("read the port");
        let port: u16 = line.trim().parse().expect("a port number");
        PyServer { child, port }
    }

    /// The streamable HTTP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The legacy SSE endpoint.
    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// One request received by a fake HTTP server.
#[derive(Clone, Debug)]
pub struct FakeReq {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
}

impl FakeReq {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The response a fake sends.
#[derive(Clone, Debug)]
pub struct FakeResp {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl FakeResp {
    /// A status with no body.
    pub fn status(status: u16) -> Self {
        FakeResp { status, headers: Vec::new(), body: Vec::new() }
    }

    /// A JSON body.
    pub fn json(status: u16, v: &Value) -> Self {
        FakeResp {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(v).unwrap(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A one-response-per-connection HTTP/1.1 server on 127.0.0.1.
pub async fn fake_http<F>(handler: F) -> SocketAddr
where
    F: Fn(FakeReq) -> FakeResp + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let _ = serve_one(sock, &*handler).await;
            });
        }
    });
    addr
}

async fn serve_one<F>(mut sock: TcpStream, handler: &F) -> std::io::Result<()>
where
    F: Fn(FakeReq) -> FakeResp,
{
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let resp = handler(FakeReq { method, path, headers, body });
    let mut out = format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", resp.status, resp.body.len());
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    sock.write_all(out.as_bytes()).await?;
    sock.write_all(&resp.body).await?;
    sock.shutdown().await
}

/// A TCP server that accepts and then does `behaviour` with each socket.
pub async fn fake_tcp(garbage: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            match garbage {
                Some(bytes) => {
                    let _ = sock.write_all(bytes).await;
                    let _ = sock.shutdown().await;
                }
                // Hang: hold the socket open, never answer.
                None => held.push(sock),
            }
        }
    });
    addr
}

/// Child processes of this test process whose environment contains
/// `marker` (`NAME=value`).
pub fn children_with_env(marker: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // ppid is the second field after the parenthesised command name.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid != Some(me.as_str()) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// A stdio upstream spec.
pub fn stdio_spec(command: &str, args: &[&str], env: &[(&str, &str)]) -> UpstreamSpec {
    UpstreamSpec::Stdio {
        command: command.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), secrecy::SecretString::from(*v))).collect(),
        cwd: None,
    }
}

/// Waits until `f` holds, or panics after `secs`.
pub async fn eventually<F: FnMut() -> bool>(secs: u64, what: &str, mut f: F) {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(tokio::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
