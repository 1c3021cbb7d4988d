//! Upstream MCP clients: how moat talks to the servers behind it.
//!
//! One [`Upstream`] value is one logical connection to one configured server
//! (for stdio: one long-lived process). The gateway keeps one per (server,
//! credential owner) and calls [`Upstream::request`] with raw JSON-RPC
//! parameters; this module stays transparent to the protocol:
//!
//! - it assigns its own JSON-RPC ids upstream and maps answers back, so two
//!   downstream clients that both use id `1` never collide;
//! - it replaces `_meta.progressToken` with a token of its own and routes
//!   `notifications/progress` back to the caller with the original restored;
//! - it detects the upstream's protocol era once ([`EraPreference::Auto`]:
//!   `server/discover` first, then the legacy `initialize` handshake) and
//!   rewrites the per-hop `_meta` keys accordingly;
//! - it bounds every call (timeout, concurrency, message size), cancels
//!   upstream work when the caller goes away, restarts dead processes with
//!   backoff and re-establishes lost sessions, retrying a call once when that
//!   is safe.
//!
//! Transports live in [`stdio`], [`streamable_http`] and [`sse`]; the
//! routing of incoming messages in `router`; the `_meta` and header rules in
//! `meta`. See `README.md` next to this file for the spec decisions.

mod lines;
mod meta;
mod router;
mod sse;
mod stdio;
mod streamable_http;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::time::Instant;

use crate::jsonrpc::{ErrorObject, Message};
use crate::protocol;

pub use meta::{Era, ParamHeader, ServerHello, param_headers};
use router::Router;
use transport::{Conn, Fail};

/// How to reach an upstream server.
#[derive(Clone)]
pub enum UpstreamSpec {
    /// A local process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        /// Program to run (looked up on `PATH`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// The child's entire environment (values may be credentials, so they
        /// are kept as secrets). moat's own environment is never inherited;
        /// the one exception is `PATH`, copied from moat when this map does
        /// not set it, so that `node` or `npx` can be found.
        env: BTreeMap<String, SecretString>,
        /// Working directory, if not moat's.
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint (either protocol era).
    StreamableHttp {
        /// The MCP endpoint URL.
        url: String,
        /// Headers added to every request (values may be credentials: they
        /// are marked sensitive and never logged).
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
    /// A legacy HTTP+SSE endpoint (protocol 2024-11-05): the SSE URL.
    Sse {
        /// The SSE stream URL.
        url: String,
        /// Headers added to every request (sensitive, never logged).
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
}

impl std::fmt::Debug for UpstreamSpec {
    // Env and header values may be credentials; URLs may carry tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdio { command, args, env, .. } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", &args.len())
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish_non_exhaustive(),
            Self::StreamableHttp { headers, .. } => f
                .debug_struct("StreamableHttp")
                .field("headers", &headers.iter().map(|(n, _)| n).collect::<Vec<_>>())
                .finish_non_exhaustive(),
            Self::Sse { headers, .. } => f
                .debug_struct("Sse")
                .field("headers", &headers.iter().map(|(n, _)| n).collect::<Vec<_>>())
                .finish_non_exhaustive(),
        }
    }
}

/// Which protocol era to speak with an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EraPreference {
    /// Probe with `server/discover`; fall back to `initialize` (the default).
    #[default]
    Auto,
    /// Always `initialize` (2025-11-25 and earlier).
    Legacy,
    /// Always per-request `_meta` (2026-07-28).
    Modern,
}

/// Cleans everything an upstream sends before moat acts on it: the gateway
/// uses it to replace the credential values it injected into this upstream
/// (and their encodings) wherever the upstream echoes them.
pub trait Scrubber: Send + Sync {
    /// Scrubs one incoming message (response, error, notification or
    /// server-to-client request), in place.
    fn scrub_message(&self, msg: &mut Message);
    /// Scrubs a line of text from the upstream (stdio stderr) before it is logged.
    fn scrub_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str>;
}

/// Limits and identity for one upstream.
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// Default per-call deadline (60 s).
    pub call_timeout: Duration,
    /// Deadline for starting a process or opening a connection, including
    /// the handshake (10 s).
    pub connect_timeout: Duration,
    /// Calls in flight at once (32).
    pub max_concurrency: usize,
    /// Largest message accepted from or sent to the upstream (16 MiB).
    pub max_message_bytes: usize,
    /// First restart delay after a process or stream dies (250 ms).
    pub restart_backoff_min: Duration,
    /// Largest restart delay (30 s).
    pub restart_backoff_max: Duration,
    /// Which era to speak.
    pub era: EraPreference,
    /// `clientInfo` moat presents upstream.
    pub client_info: Value,
    /// The capabilities moat declares in a legacy `initialize` (default
    /// `{}`): those whose requests the caller can relay to its clients
    /// through [`CallContext::server_requests`].
    pub client_capabilities: Value,
    /// Applied to every message and stderr line the upstream produces,
    /// before anything else sees them.
    pub scrubber: Option<ScrubberRef>,
}

/// A shared [`Scrubber`] (its `Debug` says only that one is set).
#[derive(Clone)]
pub struct ScrubberRef(pub Arc<dyn Scrubber>);

impl std::fmt::Debug for ScrubberRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber")
    }
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_concurrency: 32,
            max_message_bytes: 16 * 1024 * 1024,
            restart_backoff_min: Duration::from_millis(250),
            restart_backoff_max: Duration::from_secs(30),
            era: EraPreference::Auto,
            client_info: json!({"name": "moat", "version": env!("CARGO_PKG_VERSION")}),
            client_capabilities: json!({}),
            scrubber: None,
        }
    }
}

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// Deadline for this call (default: [`UpstreamOptions::call_timeout`]).
    /// Waiting for a concurrency permit and for a (re)start counts against it.
    pub timeout: Option<Duration>,
    /// Receives, for this call, the `params` of each `notifications/progress`
    /// (with the caller's original `progressToken` restored; recognise them
    /// by that member) and of each request-related `notifications/message`
    /// (on Streamable HTTP response streams). Sent with `try_send`: a full
    /// channel drops the notification rather than stall the upstream.
    pub progress: Option<mpsc::Sender<Value>>,
    /// The downstream client's capabilities, sent to modern upstreams in
    /// `_meta` (default `{}`).
    pub client_capabilities: Option<Value>,
    /// Receives the server-to-client requests (sampling, elicitation,
    /// roots) a legacy upstream makes while serving this call; the gateway
    /// relays them to the downstream client and answers through
    /// [`ServerRequest::reply`]. Without it they are refused with -32601.
    pub server_requests: Option<mpsc::Sender<ServerRequest>>,
}

/// A request the upstream sent to the client while serving a call.
#[derive(Debug)]
pub struct ServerRequest {
    /// Its method, e.g. `elicitation/create`.
    pub method: String,
    /// Its params, untouched.
    pub params: Option<Value>,
    /// Where the client's result (or error) goes.
    pub reply: tokio::sync::oneshot::Sender<Result<Value, ErrorObject>>,
}

/// Something the upstream did that is not the answer to a call.
// Boxing the message would save memory on rare events at the price of the
// agreed interface.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum UpstreamEvent {
    /// A server notification not tied to a request (`list_changed`,
    /// `resources/updated`, `notifications/message`, …), passed through.
    Notification(Message),
    /// The process was started again after it died.
    Restarted,
    /// A lost or broken session (HTTP, SSE) was established again.
    SessionReestablished,
    /// The process exited or the connection broke; calls in flight failed.
    Died(String),
}

/// Why a call failed. Messages name the upstream where they can and never
/// contain header values, environment values or URLs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The call's deadline passed.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The upstream cannot be started or reached, or died.
    #[error("{0}")]
    Unavailable(String),
    /// The upstream answered with a JSON-RPC error (passed through).
    #[error("the upstream answered with error {}: {}", .0.code, .0.message)]
    Rpc(ErrorObject),
    /// The upstream sent something that is not valid MCP, or too much of it.
    #[error("{0}")]
    Protocol(String),
    /// Every concurrency permit stayed taken until the call's deadline.
    #[error("the upstream is busy: too many calls in flight")]
    Busy,
    /// [`Upstream::shutdown`] was called.
    #[error("the upstream connection is closed")]
    Closed,
}

/// Methods that may be sent again after the upstream died mid-call: reading
/// twice is harmless, calling a tool twice may not be.
const IDEMPOTENT_METHODS: &[&str] = &[
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "resources/read",
    "prompts/get",
    "completion/complete",
    "ping",
    "server/discover",
];

/// True for a method that is safe to retry after an upstream died mid-call.
pub fn is_idempotent(method: &str) -> bool {
    IDEMPOTENT_METHODS.contains(&method)
}

/// A handle to one upstream server. Cheap to clone; clones share the
/// connection (or process).
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

struct Inner {
    name: Arc<str>,
    spec: UpstreamSpec,
    opts: UpstreamOptions,
    /// One HTTP client per upstream: connection reuse. Built in `new` so that
    /// a TLS set-up failure surfaces on first use instead of panicking.
    http: Option<Result<reqwest::Client, String>>,
    permits: Semaphore,
    events: broadcast::Sender<UpstreamEvent>,
    next_id: AtomicU64,
    current: Mutex<Option<Arc<Session>>>,
    connecting: tokio::sync::Mutex<()>,
    hello: RwLock<Option<ServerHello>>,
    cached_era: Mutex<Option<Era>>,
    /// `x-mcp-header` annotations by tool name, learnt from `tools/list`.
    tool_headers: Mutex<HashMap<String, Vec<meta::ParamHeader>>>,
    backoff: Mutex<Backoff>,
    /// Set after the first successful start: later starts are restarts.
    started_once: AtomicBool,
    closed: AtomicBool,
}

/// One live connection (or process) with its negotiated era.
pub(crate) struct Session {
    era: Era,
    conn: Conn,
    router: Arc<Router>,
}

impl Session {
    /// True when tool arguments are mirrored into `Mcp-Param-*` headers.
    fn mirrors_params(&self) -> bool {
        self.era == Era::Modern && matches!(self.conn, Conn::Http(_))
    }
}

/// The most `tools/list` pages read to refresh `x-mcp-header` annotations.
const MAX_TOOL_PAGES: usize = 20;

impl Upstream {
    /// A handle that connects lazily, on the first call or [`connect`].
    ///
    /// [`connect`]: Upstream::connect
    pub fn new(name: &str, spec: UpstreamSpec, opts: UpstreamOptions) -> Upstream {
        let http = match &spec {
            UpstreamSpec::Stdio { .. } => None,
            _ => Some(transport::build_http_client(&opts)),
        };
        let (events, _) = broadcast::channel(256);
        Upstream {
            inner: Arc::new(Inner {
                name: Arc::from(name),
                permits: Semaphore::new(opts.max_concurrency.max(1)),
                spec,
                opts,
                http,
                events,
                next_id: AtomicU64::new(1),
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                hello: RwLock::new(None),
                cached_era: Mutex::new(None),
                tool_headers: Mutex::new(HashMap::new()),
                backoff: Mutex::new(Backoff::default()),
                started_once: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Starts the process or opens the connection now (at boot) instead of
    /// on first use. Idempotent: does nothing when already connected.
    pub async fn connect(&self) -> Result<(), UpstreamError> {
        let deadline = Instant::now() + self.inner.opts.connect_timeout;
        match self.inner.session(deadline).await {
            Ok(_) => Ok(()),
            Err(UpstreamError::Timeout) => Err(UpstreamError::Unavailable(format!(
                "upstream `{}` did not complete its start within the connect timeout",
                self.inner.name
            ))),
            Err(e) => Err(e),
        }
    }

    /// Sends a request and returns the `result` member of the answer.
    ///
    /// Dropping the returned future before it completes cancels the call
    /// upstream (`notifications/cancelled`, or closing the response stream on
    /// a modern HTTP upstream).
    pub async fn request(&self, method: &str, params: Option<Value>, ctx: CallContext) -> Result<Value, UpstreamError> {
        let inner = &self.inner;
        let deadline = Instant::now() + ctx.timeout.unwrap_or(inner.opts.call_timeout);
        if inner.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        let _permit = match tokio::time::timeout_at(deadline, inner.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(UpstreamError::Closed),
            Err(_) => return Err(UpstreamError::Busy),
        };
        let mut retried = false;
        loop {
            let session = inner.session(deadline).await?;
            let outcome = inner.call_once(&session, method, params.clone(), &ctx, deadline).await;
            let outcome = outcome.and_then(|msg| response_result(msg).map_err(Fail::Error));
            let fail = match outcome {
                Ok(mut result) => {
                    if session.mirrors_params() && method == "tools/list" {
                        inner.learn_tools(&mut result);
                    }
                    return Ok(result);
                }
                // A tool's `x-mcp-header` annotations changed: learn them
                // again, then retry once (spec: Streamable HTTP, Client
                // Behavior).
                Err(Fail::Error(UpstreamError::Rpc(e)))
                    if e.code == crate::jsonrpc::code::HEADER_MISMATCH
                        && method == "tools/call"
                        && session.mirrors_params()
                        && !retried =>
                {
                    inner.refresh_tools(&session, deadline).await;
                    retried = true;
                    continue;
                }
                Err(f) => f,
            };
            match fail {
                Fail::Error(e) => return Err(e),
                Fail::SessionLost(reason) => {
                    // The upstream did not process the request: safe to retry.
                    inner.invalidate(&session, &reason, false);
                    if retried {
                        return Err(UpstreamError::Unavailable(reason));
                    }
                }
                Fail::EraMismatch(reason) => {
                    tracing::info!(upstream = %inner.name, "upstream rejected the cached protocol era; probing again");
                    inner.forget_era();
                    inner.invalidate(&session, &reason, false);
                    if retried {
                        return Err(UpstreamError::Unavailable(reason));
                    }
                }
                Fail::Died(reason) => {
                    if retried || !is_idempotent(method) {
                        return Err(UpstreamError::Unavailable(reason));
                    }
                }
            }
            retried = true;
        }
    }

    /// Sends a notification (no answer expected).
    ///
    /// `notifications/cancelled` is not forwarded: the ids upstream are
    /// moat's own, so a downstream id means nothing there. To cancel a call,
    /// drop the future [`Upstream::request`] returned.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        if method == "notifications/cancelled" {
            tracing::debug!(upstream = %inner.name, "not forwarding a downstream cancellation by id");
            return Ok(());
        }
        let deadline = Instant::now() + inner.opts.call_timeout;
        let session = inner.session(deadline).await?;
        let (params, _) = meta::prepare_params(params, session.era, None, &inner.opts.client_info, None);
        let msg = Message::notification(method, params);
        match tokio::time::timeout_at(deadline, session.conn.send_notification(&msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => Err(f.into_error()),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// Server notifications not tied to a call, and lifecycle events.
    pub fn events(&self) -> broadcast::Receiver<UpstreamEvent> {
        self.inner.events.subscribe()
    }

    /// What the upstream said about itself, once connected.
    pub fn hello(&self) -> Option<ServerHello> {
        self.inner.hello.read().ok().and_then(|h| h.clone())
    }

    /// Ends the connection: for stdio, closes stdin, then SIGTERM after 2 s,
    /// then SIGKILL after 2 more; for a legacy HTTP session, DELETE. Calls in
    /// flight fail with [`UpstreamError::Closed`]; later calls too.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.permits.close();
        let _guard = inner.connecting.lock().await;
        let session = inner.current.lock().ok().and_then(|mut c| c.take());
        if let Some(session) = session {
            session.router.kill(
                format!("upstream `{}` was shut down", inner.name),
                Fail::Error(UpstreamError::Closed),
                false,
                false,
            );
            session.conn.shutdown().await;
        }
    }
}

/// Turns a response message into the call's outcome.
fn response_result(msg: Message) -> Result<Value, UpstreamError> {
    if let Some(err) = msg.error {
        return Err(UpstreamError::Rpc(err));
    }
    Ok(msg.result.unwrap_or(Value::Null))
}

impl Inner {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    fn forget_era(&self) {
        if let Ok(mut e) = self.cached_era.lock() {
            *e = None;
        }
    }

    /// Marks `session` unusable so that the next call connects again (and
    /// replaces it, which counts as re-establishing it).
    fn invalidate(&self, session: &Arc<Session>, reason: &str, backoff: bool) {
        session.router.kill(reason.to_owned(), Fail::Died(reason.to_owned()), backoff, false);
    }

    /// The live session, connecting (and restarting with backoff) if needed.
    async fn session(&self, deadline: Instant) -> Result<Arc<Session>, UpstreamError> {
        if let Some(s) = self.current()
            && !s.router.is_dead()
        {
            return Ok(s);
        }
        let _guard =
            tokio::time::timeout_at(deadline, self.connecting.lock()).await.map_err(|_| UpstreamError::Timeout)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        let previous = self.current();
        if let Some(s) = &previous
            && !s.router.is_dead()
        {
            return Ok(s.clone());
        }
        let restarting = self.started_once.load(Ordering::Acquire);
        if let Some(prev) = &previous {
            if let Some(death) = prev.router.death() {
                let mut b = self.backoff.lock().map_err(|_| poisoned(&self.name))?;
                if death.backoff {
                    b.on_death(death.at, &self.opts);
                }
            }
            if let Ok(mut cur) = self.current.lock() {
                *cur = None;
            }
            let prev = Arc::clone(prev);
            tokio::spawn(async move { prev.conn.shutdown().await });
        }
        let not_before = self.backoff.lock().map_err(|_| poisoned(&self.name))?.not_before;
        if let Some(nb) = not_before
            && nb > Instant::now()
        {
            if nb > deadline {
                return Err(UpstreamError::Unavailable(format!(
                    "upstream `{}` is restarting after a failure; try again shortly",
                    self.name
                )));
            }
            tokio::time::sleep_until(nb).await;
        }
        let connect_limit = Instant::now() + self.opts.connect_timeout;
        let connect_deadline = deadline.min(connect_limit);
        let started = tokio::time::timeout_at(connect_deadline, self.start_session(connect_deadline)).await;
        let result = match started {
            Ok(r) => r,
            // The call's own deadline came first.
            Err(_) if deadline < connect_limit => Err(UpstreamError::Timeout),
            Err(_) => Err(UpstreamError::Unavailable(format!(
                "upstream `{}` did not complete its start within the connect timeout",
                self.name
            ))),
        };
        let mut backoff = self.backoff.lock().map_err(|_| poisoned(&self.name))?;
        match result {
            Ok((session, hello)) => {
                backoff.on_started(Instant::now());
                drop(backoff);
                self.started_once.store(true, Ordering::Release);
                if let Ok(mut h) = self.hello.write() {
                    *h = Some(hello);
                }
                if let Ok(mut e) = self.cached_era.lock() {
                    *e = Some(session.era);
                }
                let session = Arc::new(session);
                if let Ok(mut cur) = self.current.lock() {
                    *cur = Some(Arc::clone(&session));
                }
                if restarting {
                    let ev = match self.spec {
                        UpstreamSpec::Stdio { .. } => UpstreamEvent::Restarted,
                        _ => UpstreamEvent::SessionReestablished,
                    };
                    tracing::info!(upstream = %self.name, "upstream connection re-established");
                    let _ = self.events.send(ev);
                }
                Ok(session)
            }
            Err(e) => {
                backoff.on_death(Instant::now(), &self.opts);
                tracing::warn!(upstream = %self.name, error = %e, "cannot start upstream");
                Err(e)
            }
        }
    }

    /// Opens a transport and performs the era detection and handshake.
    async fn start_session(&self, deadline: Instant) -> Result<(Session, ServerHello), UpstreamError> {
        let scrubber = self.opts.scrubber.as_ref().map(|s| Arc::clone(&s.0));
        let router = Arc::new(Router::new(Arc::clone(&self.name), self.events.clone()).with_scrubber(scrubber.clone()));
        let conn = match &self.spec {
            UpstreamSpec::Stdio { command, args, env, cwd } => Conn::Stdio(stdio::StdioConn::spawn(
                stdio::StdioSpec {
                    name: Arc::clone(&self.name),
                    command,
                    args,
                    env,
                    cwd: cwd.as_deref(),
                    max_message_bytes: self.opts.max_message_bytes,
                    scrubber,
                },
                Arc::clone(&router),
            )?),
            UpstreamSpec::StreamableHttp { url, headers } => {
                let shared = transport::HttpShared::new(
                    &self.name,
                    self.http_client()?,
                    url,
                    headers,
                    self.opts.max_message_bytes,
                )?;
                Conn::Http(streamable_http::HttpConn::new(shared, Arc::clone(&router), self.opts.client_info.clone()))
            }
            UpstreamSpec::Sse { url, headers } => {
                let shared = transport::HttpShared::new(
                    &self.name,
                    self.http_client()?,
                    url,
                    headers,
                    self.opts.max_message_bytes,
                )?;
                Conn::Sse(sse::SseConn::connect(shared, Arc::clone(&router)).await?)
            }
        };
        let mut session = Session { era: Era::Legacy, conn, router };
        let hello = match self.handshake(&mut session, deadline).await {
            Ok(h) => h,
            Err(e) => {
                session.conn.shutdown().await;
                return Err(e);
            }
        };
        Ok((session, hello))
    }

    fn http_client(&self) -> Result<reqwest::Client, UpstreamError> {
        match &self.http {
            Some(Ok(c)) => Ok(c.clone()),
            Some(Err(e)) => Err(UpstreamError::Unavailable(format!(
                "cannot create an HTTP client for upstream `{}`: {e}",
                self.name
            ))),
            None => Err(UpstreamError::Unavailable(format!("upstream `{}` is not an HTTP upstream", self.name))),
        }
    }

    /// Decides the era and performs `server/discover` or `initialize`.
    async fn handshake(&self, session: &mut Session, deadline: Instant) -> Result<ServerHello, UpstreamError> {
        if matches!(session.conn, Conn::Sse(_)) {
            // HTTP+SSE predates the modern era.
            return self.initialize(session, deadline).await;
        }
        let cached = self.cached_era.lock().ok().and_then(|e| *e);
        let try_modern = match self.opts.era {
            EraPreference::Legacy => false,
            EraPreference::Modern => true,
            EraPreference::Auto => cached != Some(Era::Legacy),
        };
        if try_modern {
            match self.discover(session, deadline).await? {
                meta::Probe::Modern(hello) => {
                    session.era = Era::Modern;
                    session.conn.set_era(Era::Modern, protocol::MODERN);
                    session.conn.start_background(&session.era, &hello);
                    return Ok(hello);
                }
                meta::Probe::Incompatible(reason) => {
                    return Err(UpstreamError::Unavailable(format!("upstream `{}` {reason}", self.name)));
                }
                meta::Probe::Legacy(why) => {
                    if self.opts.era == EraPreference::Modern {
                        return Err(UpstreamError::Unavailable(format!(
                            "upstream `{}` does not speak protocol {} ({why})",
                            self.name,
                            protocol::MODERN
                        )));
                    }
                    tracing::debug!(upstream = %self.name, why, "upstream is legacy; using initialize");
                }
            }
        }
        match self.initialize(session, deadline).await {
            Err(UpstreamError::Rpc(e))
                if e.code == crate::jsonrpc::code::UNSUPPORTED_PROTOCOL_VERSION
                    && self.opts.era == EraPreference::Auto
                    && meta::supported_versions(e.data.as_ref())
                        .is_some_and(|v| v.iter().any(|v| protocol::is_modern(v))) =>
            {
                // A modern server (perhaps locked modern by a probe that we
                // gave up on): probe once more.
                match self.discover(session, deadline).await? {
                    meta::Probe::Modern(hello) => {
                        session.era = Era::Modern;
                        session.conn.set_era(Era::Modern, protocol::MODERN);
                        session.conn.start_background(&session.era, &hello);
                        Ok(hello)
                    }
                    _ => Err(UpstreamError::Rpc(e)),
                }
            }
            other => other,
        }
    }

    /// Sends `server/discover` and classifies the answer.
    async fn discover(&self, session: &Session, deadline: Instant) -> Result<meta::Probe, UpstreamError> {
        let id = self.next_id();
        let params = meta::discover_params(&self.opts.client_info);
        let msg = Message::request(json!(id), "server/discover", Some(params));
        session.conn.set_era(Era::Modern, protocol::MODERN);
        // A legacy stdio server may stay silent: give it ~5 s, then fall back.
        let probe_deadline = match session.conn {
            Conn::Stdio(_) => deadline.min(Instant::now() + Duration::from_secs(5)),
            _ => deadline,
        };
        let outcome = tokio::time::timeout_at(
            probe_deadline,
            transport::raw_call(&session.conn, &session.router, id, msg, None, None, &http::HeaderMap::new()),
        )
        .await;
        session.conn.set_era(Era::Legacy, protocol::LEGACY_LATEST);
        match outcome {
            Err(_) if probe_deadline < deadline => Ok(meta::Probe::Legacy("no answer to server/discover".into())),
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(meta::classify_discover(&resp)),
            Ok(Err(Fail::EraMismatch(why))) => Ok(meta::Probe::Legacy(why)),
            Ok(Err(Fail::Error(UpstreamError::Rpc(e)))) => {
                Ok(meta::classify_discover(&Message::error_response(None, e)))
            }
            Ok(Err(f)) => Err(f.into_error()),
        }
    }

    /// The legacy handshake: `initialize`, then `notifications/initialized`.
    async fn initialize(&self, session: &mut Session, deadline: Instant) -> Result<ServerHello, UpstreamError> {
        let id = self.next_id();
        let msg = Message::request(
            json!(id),
            "initialize",
            Some(json!({
                "protocolVersion": protocol::LEGACY_LATEST,
                "capabilities": self.opts.client_capabilities.clone(),
                "clientInfo": self.opts.client_info,
            })),
        );
        let resp = tokio::time::timeout_at(
            deadline,
            transport::raw_call(&session.conn, &session.router, id, msg, None, None, &http::HeaderMap::new()),
        )
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(Fail::into_error)?;
        let result = response_result(resp)?;
        let hello = meta::hello_from_initialize(&result)
            .map_err(|why| UpstreamError::Protocol(format!("upstream `{}` {why}", self.name)))?;
        session.era = Era::Legacy;
        session.conn.set_era(Era::Legacy, &hello.protocol_version);
        let initialized = Message::notification("notifications/initialized", None);
        tokio::time::timeout_at(deadline, session.conn.send_notification(&initialized))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(Fail::into_error)?;
        session.conn.start_background(&session.era, &hello);
        Ok(hello)
    }

    /// Remembers the `x-mcp-header` annotations of a `tools/list` result
    /// and removes the tools whose annotations are invalid (the spec makes
    /// a Streamable HTTP client exclude them).
    fn learn_tools(&self, list: &mut Value) {
        let Some(tools) = list.get_mut("tools").and_then(Value::as_array_mut) else {
            return;
        };
        let Ok(mut known) = self.tool_headers.lock() else {
            return;
        };
        tools.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return true;
            };
            let found = tool
                .get("inputSchema")
                .map_or_else(|| Ok(Vec::new()), meta::param_headers);
            match found {
                Ok(h) if h.is_empty() => {
                    known.remove(name);
                    true
                }
                Ok(h) => {
                    known.insert(name.to_owned(), h);
                    true
                }
                Err(reason) => {
                    tracing::warn!(upstream = %self.name, tool = name, %reason, "excluded a tool with an invalid x-mcp-header annotation");
                    known.remove(name);
                    false
                }
            }
        });
    }

    /// Lists the tools again (every page) to learn their annotations.
    async fn refresh_tools(&self, session: &Arc<Session>, deadline: Instant) {
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_TOOL_PAGES {
            let params = cursor.take().map(|c| json!({"cursor": c}));
            let Ok(msg) = self.call_once(session, "tools/list", params, &CallContext::default(), deadline).await else {
                return;
            };
            let Ok(mut list) = response_result(msg) else { return };
            self.learn_tools(&mut list);
            match list.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => return,
            }
        }
    }

    /// The `Mcp-Param-*` headers for a `tools/call` with `params`.
    fn param_headers(&self, params: Option<&Value>) -> http::HeaderMap {
        let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
        let known = self.tool_headers.lock().ok();
        match (name, known) {
            (Some(name), Some(known)) => match known.get(name) {
                Some(annotations) => meta::param_header_values(annotations, params.and_then(|p| p.get("arguments"))),
                None => http::HeaderMap::new(),
            },
            _ => http::HeaderMap::new(),
        }
    }

    /// One attempt at a call on one session.
    async fn call_once(
        &self,
        session: &Arc<Session>,
        method: &str,
        params: Option<Value>,
        ctx: &CallContext,
        deadline: Instant,
    ) -> Result<Message, Fail> {
        let id = self.next_id();
        let token = meta::upstream_progress_token(id);
        let (params, original_token) = meta::prepare_params(
            params,
            session.era,
            ctx.client_capabilities.as_ref(),
            &self.opts.client_info,
            Some(&token),
        );
        if let Some(original) = original_token {
            session.router.map_token(&token, original, ctx.progress.clone());
        }
        let extra = if method == "tools/call" && session.mirrors_params() {
            self.param_headers(params.as_ref())
        } else {
            http::HeaderMap::new()
        };
        let msg = Message::request(json!(id), method, params);
        let mut guard = CancelGuard {
            session: Arc::clone(session),
            id,
            token,
            reason: "the request was cancelled by the client",
            armed: true,
        };
        let call = transport::raw_call(
            &session.conn,
            &session.router,
            id,
            msg,
            ctx.progress.clone(),
            ctx.server_requests.clone(),
            &extra,
        );
        match tokio::time::timeout_at(deadline, call).await {
            Ok(outcome) => {
                guard.armed = false;
                outcome
            }
            Err(_) => {
                guard.reason = "the request timed out";
                Err(Fail::Error(UpstreamError::Timeout))
            }
        }
    }
}

fn poisoned(name: &str) -> UpstreamError {
    UpstreamError::Unavailable(format!("upstream `{name}` is in an inconsistent state"))
}

/// Cancels a call upstream when its future is dropped (or times out) before
/// the answer arrived, and always forgets its routes.
struct CancelGuard {
    session: Arc<Session>,
    id: u64,
    token: String,
    reason: &'static str,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.session.router.forget(self.id, &self.token);
        if self.armed && !self.session.router.is_dead() {
            self.session.conn.cancel(self.session.era, self.id, self.reason);
        }
    }
}

/// Restart pacing: 250 ms doubling to 30 s, reset after 60 s of stable running.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    last_start: Option<Instant>,
    not_before: Option<Instant>,
}

/// How long a process must run before its failures are forgotten.
const STABLE_RUN: Duration = Duration::from_secs(60);

impl Backoff {
    fn on_started(&mut self, now: Instant) {
        self.last_start = Some(now);
    }

    fn on_death(&mut self, at: Instant, opts: &UpstreamOptions) {
        if self.last_start.is_some_and(|s| at.saturating_duration_since(s) >= STABLE_RUN) {
            self.failures = 0;
        }
        self.last_start = None;
        let delay = backoff_delay(self.failures, opts.restart_backoff_min, opts.restart_backoff_max);
        self.failures = self.failures.saturating_add(1);
        self.not_before = Some(at + delay);
    }
}

/// The delay before restart number `failures + 1`.
fn backoff_delay(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_stable_run() {
        let min = Duration::from_millis(250);
        let max = Duration::from_secs(30);
        assert_eq!(backoff_delay(0, min, max), min);
        assert_eq!(backoff_delay(1, min, max), Duration::from_millis(500));
        assert_eq!(backoff_delay(6, min, max), Duration::from_secs(16));
        assert_eq!(backoff_delay(7, min, max), max);
        assert_eq!(backoff_delay(40, min, max), max);

        let opts = UpstreamOptions::default();
        let t0 = Instant::now();
        let mut b = Backoff::default();
        b.on_started(t0);
        b.on_death(t0 + Duration::from_secs(1), &opts);
        assert_eq!(b.not_before, Some(t0 + Duration::from_millis(1250)));
        b.on_started(t0 + Duration::from_secs(2));
        b.on_death(t0 + Duration::from_secs(3), &opts);
        assert_eq!(b.not_before, Some(t0 + Duration::from_millis(3500)));
        b.on_started(t0 + Duration::from_secs(4));
        b.on_death(t0 + Duration::from_secs(70), &opts);
        assert_eq!(b.not_before, Some(t0 + Duration::from_millis(70_250)));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let spec = UpstreamSpec::Stdio {
            command: "node".into(),
            args: vec!["--token=s3cret-arg".into()],
            env: BTreeMap::from([("API_KEY".into(), SecretString::from("s3cret-env"))]),
            cwd: None,
        };
        let text = format!("{spec:?}");
        assert!(text.contains("API_KEY") && !text.contains("s3cret"), "{text}");
        let spec = UpstreamSpec::StreamableHttp {
            url: "https://h/mcp?token=s3cret-url".into(),
            headers: vec![(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer s3cret-hdr"))],
        };
        let text = format!("{spec:?}");
        assert!(text.contains("authorization") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn idempotent_methods_exclude_tool_calls() {
        assert!(is_idempotent("tools/list"));
        assert!(is_idempotent("resources/read"));
        assert!(!is_idempotent("tools/call"));
        assert!(!is_idempotent("future/unknown"));
    }
}
