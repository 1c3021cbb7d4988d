//! The stdio transport: one long-lived child process per [`Upstream`],
//! newline-delimited JSON-RPC on its stdin and stdout.
//!
//! - The child gets only the configured environment (`env_clear`), plus
//!   moat's `PATH` when the configuration does not set one: the single
//!   exception, so that `node`/`npx` resolve.
//! - stdout is read line by line with a size limit; a longer line is dropped
//!   (failing the call it answered, when its id can be found), a line that
//!   is not JSON-RPC is logged and ignored.
//! - stderr goes to `tracing`, one event per line, prefixed with the
//!   server's name and carrying `upstream=<name>`; configured environment
//!   values (which may be credentials) are redacted from it.
//! - The child runs in its own process group, so that signals reach what
//!   `npx` and shell wrappers start.
//! - Shutdown: close stdin, wait 2 s, SIGTERM, wait 2 s, SIGKILL.
//!
//! [`Upstream`]: super::Upstream

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::lines::{Line, LineReader, find_id};
use super::router::Router;
use super::transport::{Fail, parse_messages};
use super::{Scrubber, UpstreamError};
use crate::jsonrpc::Message;
use secrecy::{ExposeSecret as _, SecretString};

/// How long each step of the shutdown ladder waits.
const GRACE: Duration = Duration::from_secs(2);
/// The longest stderr line logged (the rest is cut).
const MAX_STDERR_LINE: usize = 8 * 1024;
/// Messages queued for the child's stdin before senders wait.
const QUEUE: usize = 64;
/// Configured environment values at least this long are redacted from the
/// child's stderr (shorter ones, like `1` or `true`, would redact noise).
const MIN_REDACTED_LEN: usize = 6;

/// What is needed to start the child.
pub(crate) struct StdioSpec<'a> {
    pub(crate) name: Arc<str>,
    pub(crate) command: &'a str,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a BTreeMap<String, SecretString>,
    pub(crate) cwd: Option<&'a Path>,
    pub(crate) max_message_bytes: usize,
    pub(crate) scrubber: Option<Arc<dyn Scrubber>>,
}

/// A running child process.
pub(crate) struct StdioConn {
    name: Arc<str>,
    tx: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
    done: watch::Receiver<bool>,
    max_message_bytes: usize,
}

impl StdioConn {
    /// Starts the child and the tasks that serve it.
    pub(crate) fn spawn(spec: StdioSpec<'_>, router: Arc<Router>) -> Result<StdioConn, UpstreamError> {
        let name = spec.name;
        let mut cmd = Command::new(spec.command);
        cmd.args(spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v.expose_secret())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if !spec.env.contains_key("PATH")
            && let Some(path) = std::env::var_os("PATH")
        {
            cmd.env("PATH", path);
        }
        if let Some(dir) = spec.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| UpstreamError::Unavailable(format!("cannot start upstream `{name}`: {}", e.kind())))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(UpstreamError::Unavailable(format!("cannot start upstream `{name}`: no pipes")));
        };
        tracing::info!(upstream = %name, pid = child.id(), "started upstream process");
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done_tx, done) = watch::channel(false);

        tokio::spawn(write_stdin(stdin, rx, stop.clone()));
        let reader = tokio::spawn(read_stdout(
            Arc::clone(&name),
            stdout,
            spec.max_message_bytes,
            Arc::clone(&router),
            tx.clone(),
            stop.clone(),
        ));
        // Configured values may be credentials: never let the child's
        // stderr carry them into moat's log.
        let secrets: Vec<SecretString> =
            spec.env.values().filter(|v| v.expose_secret().len() >= MIN_REDACTED_LEN).cloned().collect();
        tokio::spawn(read_stderr(Arc::clone(&name), stderr, secrets, spec.scrubber, stop.clone()));
        tokio::spawn(supervise(Arc::clone(&name), child, router, stop.clone(), reader, done_tx));

        Ok(StdioConn { name, tx, stop, done, max_message_bytes: spec.max_message_bytes })
    }

    /// Queues a message for the child's stdin.
    pub(crate) async fn send(&self, msg: &Message) -> Result<(), Fail> {
        let bytes = msg.to_bytes();
        if bytes.len() > self.max_message_bytes {
            return Err(Fail::Error(UpstreamError::Protocol(format!(
                "the message for upstream `{}` exceeds {} bytes",
                self.name, self.max_message_bytes
            ))));
        }
        self.tx.send(bytes).await.map_err(|_| Fail::Died(format!("upstream `{}` is not running", self.name)))
    }

    /// Queues a message without waiting (dropped if the queue is full).
    pub(crate) fn try_send(&self, msg: &Message) {
        if self.tx.try_send(msg.to_bytes()).is_err() {
            tracing::debug!(upstream = %self.name, "could not queue a message for the upstream");
        }
    }

    /// Runs the shutdown ladder and waits for the child to be gone.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let mut done = self.done.clone();
        let _ = tokio::time::timeout(GRACE * 3, done.wait_for(|d| *d)).await;
    }
}

impl Drop for StdioConn {
    fn drop(&mut self) {
        // The supervisor task runs the shutdown ladder on its own.
        self.stop.cancel();
    }
}

async fn write_stdin(mut stdin: ChildStdin, mut rx: mpsc::Receiver<Vec<u8>>, stop: CancellationToken) {
    loop {
        let next = tokio::select! {
            m = rx.recv() => m,
            () = stop.cancelled() => None,
        };
        let Some(mut bytes) = next else { break };
        bytes.push(b'\n');
        let written = tokio::select! {
            r = async {
                stdin.write_all(&bytes).await?;
                stdin.flush().await
            } => r,
            () = stop.cancelled() => break,
        };
        if written.is_err() {
            break;
        }
    }
    // Dropping stdin closes it: the first step of a graceful shutdown.
    drop(stdin);
}

async fn read_stdout(
    name: Arc<str>,
    stdout: tokio::process::ChildStdout,
    max: usize,
    router: Arc<Router>,
    tx: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
) {
    let mut lines = LineReader::new(BufReader::new(stdout), max);
    let mut ignored: u64 = 0;
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            () = stop.cancelled() => return,
        };
        match line {
            Ok(Some(Line::Full(bytes))) => {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let (messages, bad) = parse_messages(&bytes);
                if bad > 0 {
                    ignored += 1;
                    // Log the first few, then sparsely: a garbage-spewing
                    // upstream must not flood the log.
                    if ignored <= 5 || ignored.is_power_of_two() {
                        tracing::warn!(upstream = %name, ignored, "ignored output that is not JSON-RPC");
                    }
                }
                for msg in messages {
                    if let Some(reply) = router.dispatch(msg, None, None) {
                        let (tx, name) = (tx.clone(), Arc::clone(&name));
                        tokio::spawn(async move {
                            if tx.send(reply.await.to_bytes()).await.is_err() {
                                tracing::debug!(upstream = %name, "could not queue a reply for the upstream");
                            }
                        });
                    }
                }
            }
            Ok(Some(Line::TooLong { len, head, tail })) => {
                tracing::warn!(upstream = %name, bytes = len, limit = max, "dropped an oversize message");
                if let Some(id) = find_id(&head, &tail) {
                    router.fail_call(
                        id,
                        Fail::Error(UpstreamError::Protocol(format!(
                            "upstream `{name}` sent a message larger than {max} bytes"
                        ))),
                    );
                }
            }
            Ok(None) | Err(_) => {
                // The child closed stdout: it is finished, whatever it does.
                stop.cancel();
                return;
            }
        }
    }
}

async fn read_stderr(
    name: Arc<str>,
    stderr: tokio::process::ChildStderr,
    secrets: Vec<SecretString>,
    scrubber: Option<Arc<dyn Scrubber>>,
    stop: CancellationToken,
) {
    let mut lines = LineReader::new(BufReader::new(stderr), MAX_STDERR_LINE);
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            () = stop.cancelled() => return,
        };
        let bytes = match line {
            Ok(Some(Line::Full(b))) => b,
            Ok(Some(Line::TooLong { head, .. })) => head,
            Ok(None) | Err(_) => return,
        };
        let mut text = redact(&sanitize(&String::from_utf8_lossy(&bytes)), &secrets);
        if let Some(s) = &scrubber {
            text = s.scrub_text(&text).into_owned();
        }
        if !text.trim().is_empty() {
            tracing::info!(target: "moat_mcp::upstream::stderr", upstream = %name, "[{name}] {text}");
        }
    }
}

/// Control characters (terminal escapes, fake newlines) replaced: the text
/// comes from an untrusted process and goes into moat's log.
fn sanitize(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\t' { '\u{fffd}' } else { c }).collect()
}

async fn supervise(
    name: Arc<str>,
    mut child: Child,
    router: Arc<Router>,
    stop: CancellationToken,
    reader: tokio::task::JoinHandle<()>,
    done: watch::Sender<bool>,
) {
    let status = tokio::select! {
        s = child.wait() => {
            // Let the reader take what the child wrote before exiting.
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
            s
        }
        () = stop.cancelled() => terminate(&name, &mut child).await,
    };
    stop.cancel();
    let what = match &status {
        Ok(s) => describe(s),
        Err(_) => "could not be waited for".to_owned(),
    };
    let reason = format!("upstream `{name}` exited ({what})");
    tracing::info!(upstream = %name, status = %what, "upstream process ended");
    router.kill(reason.clone(), Fail::Died(reason), true, true);
    let _ = done.send(true);
}

/// The shutdown ladder: stdin is already closing (the writer stopped).
async fn terminate(name: &str, child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    if let Ok(s) = tokio::time::timeout(GRACE, child.wait()).await {
        return s;
    }
    signal_group(child, nix::sys::signal::Signal::SIGTERM);
    if let Ok(s) = tokio::time::timeout(GRACE, child.wait()).await {
        return s;
    }
    tracing::warn!(upstream = %name, "upstream ignored SIGTERM; killing it");
    signal_group(child, nix::sys::signal::Signal::SIGKILL);
    let _ = child.start_kill();
    child.wait().await
}

/// Signals the child's process group, only while the child is unreaped (so
/// its pid, which is the group id, cannot have been reused).
fn signal_group(child: &mut Child, signal: nix::sys::signal::Signal) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Replaces every occurrence of a configured value.
fn redact(text: &str, secrets: &[SecretString]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        let s = s.expose_secret();
        if out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_configured_values() {
        let secrets = vec![SecretString::from("sk-live-123456")];
        assert_eq!(
            redact("auth failed for sk-live-123456 (sk-live-123456)", &secrets),
            "auth failed for [redacted] ([redacted])"
        );
        assert_eq!(redact("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn sanitizes_control_characters() {
        assert_eq!(sanitize("a\u{1b}[31mb\rc\td"), "a\u{fffd}[31mb\u{fffd}c\td");
    }
}
