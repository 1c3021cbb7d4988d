//! Legacy (2025-11-25 and HTTP+SSE) sessions.
//!
//! A session is bound to the credential that created it: presenting its id
//! with another credential gets the same 404 as an unknown id. Every SSE
//! stream of a session is an [`EventLog`]: events are appended with ids
//! `<stream>-<seq>`, kept (bounded) after the connection drops, and replayed
//! to a `GET` carrying `Last-Event-ID` — so a client that loses its
//! connection mid-call still receives the result.

use super::dispatch::Scope;
use moat_core::{Principal, now_ms};
use moat_mcp::Message;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Most events kept per stream for replay.
const MAX_EVENTS_PER_STREAM: usize = 1000;
/// The reconnection delay suggested to clients on primed streams.
const PRIMING_RETRY_MS: u64 = 1000;
/// The first revision whose clients expect priming events.
const PRIMING_SINCE: &str = "2025-11-25";

/// Most streams kept per session for replay.
const MAX_STREAMS_PER_SESSION: usize = 64;

/// An append-only, replayable SSE stream.
pub struct EventLog {
    id: u64,
    /// Start each reader with a priming event (an id and empty data, with a
    /// `retry` hint) so the client can resume even before the first message
    /// (2025-11-25, SEP-1699).
    priming: bool,
    events: Mutex<VecDeque<(u64, Arc<str>)>>,
    len: watch::Sender<u64>,
    done: AtomicBool,
}

impl EventLog {
    fn new(id: u64, priming: bool) -> Arc<Self> {
        let (len, _) = watch::channel(0);
        Arc::new(Self { id, priming, events: Mutex::new(VecDeque::new()), len, done: AtomicBool::new(false) })
    }

    /// The stream's id (the part of event ids before `-`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Appends a message; returns its sequence number.
    pub fn push(&self, msg: &Message) -> u64 {
        let data: Arc<str> = Arc::from(String::from_utf8_lossy(&msg.to_bytes()).as_ref());
        let mut seq = 0;
        if let Ok(mut events) = self.events.lock() {
            seq = events.back().map_or(1, |(s, _)| s + 1);
            events.push_back((seq, data));
            while events.len() > MAX_EVENTS_PER_STREAM {
                events.pop_front();
            }
        }
        self.len.send_replace(seq);
        seq
    }

    /// Marks the stream complete: readers end after the last event.
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.len.send_modify(|_| {});
    }

    /// The sequence number of the newest event (readers starting here see
    /// only what comes next).
    pub fn reader_position(&self) -> u64 {
        *self.len.borrow()
    }

    /// True once finished.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Events after `after`, as SSE frames, live until finished or `stop`.
    pub fn reader(
        self: Arc<Self>,
        after: u64,
        stop: CancellationToken,
    ) -> impl futures::Stream<Item = moat_mcp::sse::Event> + Send + 'static {
        let mut rx = self.len.subscribe();
        async_stream(move |tx| async move {
            let mut pos = after;
            if self.priming && after == 0 {
                let prime = moat_mcp::sse::Event {
                    id: Some(format!("{}-0", self.id)),
                    event: None,
                    data: String::new(),
                    retry: Some(PRIMING_RETRY_MS),
                };
                if tx.send(prime).await.is_err() {
                    return;
                }
            }
            loop {
                let batch: Vec<(u64, Arc<str>)> = self
                    .events
                    .lock()
                    .map(|e| e.iter().filter(|(s, _)| *s > pos).cloned().collect())
                    .unwrap_or_default();
                for (seq, data) in batch {
                    pos = seq;
                    let ev = moat_mcp::sse::Event {
                        id: Some(format!("{}-{}", self.id, seq)),
                        event: None,
                        data: data.to_string(),
                        retry: None,
                    };
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                if self.is_done() {
                    return;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = stop.cancelled() => return,
                }
            }
        })
    }
}

/// A tiny generator: runs `f` with a sender and yields what it sends.
fn async_stream<T, F, Fut>(f: F) -> impl futures::Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// How the session's messages reach the client.
pub enum SessionTransport {
    /// Streamable HTTP: per-request streams plus an optional GET stream.
    StreamableHttp,
    /// Legacy HTTP+SSE: every message goes down the one `/sse` stream.
    Sse(mpsc::Sender<Message>),
}

/// One legacy session.
pub struct Session {
    /// The session id (128 random bits, hex).
    pub id: String,
    /// The caller that created it; only it may use it.
    pub principal: Principal,
    /// What it addresses.
    pub scope: Scope,
    /// Negotiated protocol version.
    pub version: Mutex<String>,
    /// The client's declared capabilities.
    pub client_caps: Mutex<Value>,
    /// How messages reach the client.
    pub transport: SessionTransport,
    /// Resource URIs subscribed to (as the client names them).
    pub subscriptions: Mutex<std::collections::HashSet<String>>,
    /// The upstream instances (server, credential binding) this session has
    /// used: only their notifications reach it.
    pub bindings: Mutex<std::collections::HashMap<moat_core::ServerId, Arc<str>>>,
    /// Cancelled when the session ends.
    pub closed: CancellationToken,
    last_seen: AtomicI64,
    next_stream: AtomicU64,
    streams: Mutex<VecDeque<Arc<EventLog>>>,
    general: Mutex<Option<Arc<EventLog>>>,
    inflight: Mutex<HashMap<String, CancellationToken>>,
    client_requests: Mutex<HashMap<String, tokio::sync::oneshot::Sender<Result<Value, moat_mcp::ErrorObject>>>>,
    next_client_request: AtomicU64,
}

impl Session {
    /// Records activity.
    pub fn touch(&self) {
        self.last_seen.store(now_ms(), Ordering::Relaxed);
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> String {
        self.version.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The client's capabilities.
    pub fn caps(&self) -> Value {
        self.client_caps.lock().map(|v| v.clone()).unwrap_or(Value::Null)
    }

    /// True when the negotiated revision expects priming events.
    fn primes(&self) -> bool {
        self.version().as_str() >= PRIMING_SINCE
    }

    /// A new per-request stream.
    pub fn open_stream(&self) -> Arc<EventLog> {
        let log = EventLog::new(self.next_stream.fetch_add(1, Ordering::Relaxed) + 1, self.primes());
        if let Ok(mut streams) = self.streams.lock() {
            streams.push_back(log.clone());
            while streams.len() > MAX_STREAMS_PER_SESSION {
                streams.pop_front();
            }
        }
        log
    }

    /// The GET (general) stream, created on first use.
    pub fn general_stream(&self) -> Arc<EventLog> {
        let mut guard = match self.general.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard
            .get_or_insert_with(|| {
                let log = EventLog::new(0, self.primes());
                if let Ok(mut streams) = self.streams.lock() {
                    streams.push_front(log.clone());
                }
                log
            })
            .clone()
    }

    /// Sends a server-initiated notification to the client: down the `/sse`
    /// stream, or onto the GET stream.
    pub async fn notify(&self, msg: Message) {
        match &self.transport {
            SessionTransport::Sse(tx) => {
                let _ = tx.send(msg).await;
            }
            SessionTransport::StreamableHttp => {
                self.general_stream().push(&msg);
            }
        }
    }

    /// Finds a stream for `Last-Event-ID: <stream>-<seq>`.
    pub fn stream_for(&self, last_event_id: &str) -> Option<(Arc<EventLog>, u64)> {
        let (sid, seq) = last_event_id.split_once('-')?;
        let (sid, seq): (u64, u64) = (sid.parse().ok()?, seq.parse().ok()?);
        let streams = self.streams.lock().ok()?;
        let log = streams.iter().find(|s| s.id == sid)?.clone();
        Some((log, seq))
    }

    /// Registers an in-flight request before its work starts, so that
    /// `notifications/cancelled` (or the session ending) can stop it; the
    /// work selects on the returned token.
    pub fn begin(&self, request_id: &Value) -> CancellationToken {
        let token = self.closed.child_token();
        if let Ok(mut m) = self.inflight.lock() {
            m.insert(request_id.to_string(), token.clone());
        }
        token
    }

    /// Forgets a finished request.
    pub fn finish(&self, request_id: &Value) {
        if let Ok(mut m) = self.inflight.lock() {
            m.remove(&request_id.to_string());
        }
    }

    /// Cancels an in-flight request (its upstream call is cancelled too).
    pub fn cancel(&self, request_id: &Value) -> bool {
        let token = self.inflight.lock().ok().and_then(|mut m| m.remove(&request_id.to_string()));
        token.map(|t| t.cancel()).is_some()
    }

    /// Sends a server-to-client request (relayed from an upstream) down
    /// `out` — the stream of the call it belongs to — and waits for the
    /// client's response, at most `timeout`.
    pub async fn request_client(
        &self,
        out: &mpsc::Sender<Message>,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, moat_mcp::ErrorObject> {
        use moat_mcp::ErrorObject;
        use moat_mcp::jsonrpc::code;
        let id = format!("moat-{}", self.next_client_request.fetch_add(1, Ordering::Relaxed) + 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut m) = self.client_requests.lock() {
            m.insert(id.clone(), tx);
        }
        let forget = |id: &str| {
            if let Ok(mut m) = self.client_requests.lock() {
                m.remove(id);
            }
        };
        if out.send(Message::request(Value::String(id.clone()), method, params)).await.is_err() {
            forget(&id);
            return Err(ErrorObject::new(code::INTERNAL_ERROR, "the client's stream is closed"));
        }
        let outcome = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err(ErrorObject::new(code::INTERNAL_ERROR, "the session ended"))),
            () = tokio::time::sleep(timeout) => Err(ErrorObject::new(code::INTERNAL_ERROR, "the client did not answer in time")),
            () = self.closed.cancelled() => Err(ErrorObject::new(code::INTERNAL_ERROR, "the session ended")),
        };
        forget(&id);
        outcome
    }

    /// Delivers a client's response to a relayed request. False when no
    /// such request is waiting.
    pub fn complete_client_request(&self, msg: &Message) -> bool {
        let Some(id) = msg.id.as_ref().and_then(Value::as_str) else { return false };
        let Some(tx) = self.client_requests.lock().ok().and_then(|mut m| m.remove(id)) else { return false };
        let outcome = match (&msg.result, &msg.error) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(moat_mcp::ErrorObject::new(moat_mcp::jsonrpc::code::INTERNAL_ERROR, "empty response")),
        };
        tx.send(outcome).is_ok()
    }

    fn end(&self) {
        self.closed.cancel();
        if let Ok(mut m) = self.inflight.lock() {
            m.clear();
        }
        if let Ok(streams) = self.streams.lock() {
            for s in streams.iter() {
                s.finish();
            }
        }
    }
}

/// All live sessions.
pub struct SessionStore {
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    idle: Duration,
    max: usize,
}

/// Why a session id was not accepted. Both read as 404 to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionLookup {
    /// No such session (never existed, ended or expired) — or one that
    /// belongs to another credential.
    NotFound,
}

impl SessionStore {
    /// An empty store whose sessions expire after `idle` without use.
    pub fn new(idle: Duration, max: usize) -> Self {
        Self { sessions: RwLock::new(HashMap::new()), idle, max }
    }

    /// Creates a session.
    pub fn create(
        &self,
        principal: Principal,
        scope: Scope,
        version: &str,
        caps: Value,
        transport: SessionTransport,
    ) -> Arc<Session> {
        let mut raw = [0u8; 16];
        if aws_lc_rs_fill(&mut raw).is_err() {
            // Fall back to a UUIDv4 (also 122 random bits from the OS RNG).
            raw = *uuid::Uuid::new_v4().as_bytes();
        }
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let session = Arc::new(Session {
            id: id.clone(),
            principal,
            scope,
            version: Mutex::new(version.to_owned()),
            client_caps: Mutex::new(caps),
            transport,
            subscriptions: Mutex::new(Default::default()),
            bindings: Mutex::new(Default::default()),
            closed: CancellationToken::new(),
            last_seen: AtomicI64::new(now_ms()),
            next_stream: AtomicU64::new(0),
            streams: Mutex::new(VecDeque::new()),
            general: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            client_requests: Mutex::new(HashMap::new()),
            next_client_request: AtomicU64::new(0),
        });
        if let Ok(mut m) = self.sessions.write() {
            if m.len() >= self.max {
                // Evict the least recently used session.
                if let Some(oldest) =
                    m.values().min_by_key(|s| s.last_seen.load(Ordering::Relaxed)).map(|s| s.id.clone())
                    && let Some(s) = m.remove(&oldest)
                {
                    s.end();
                }
            }
            m.insert(id, session.clone());
        }
        session
    }

    /// Finds a live session of this caller.
    pub fn get(&self, id: &str, principal: &Principal) -> Result<Arc<Session>, SessionLookup> {
        let session = self.sessions.read().ok().and_then(|m| m.get(id).cloned()).ok_or(SessionLookup::NotFound)?;
        let same_caller = session.principal.credential_id == principal.credential_id
            && session.principal.tenant_id == principal.tenant_id;
        if !same_caller {
            return Err(SessionLookup::NotFound);
        }
        let idle_ms = i64::try_from(self.idle.as_millis()).unwrap_or(i64::MAX);
        if now_ms() - session.last_seen.load(Ordering::Relaxed) > idle_ms {
            self.remove(id);
            return Err(SessionLookup::NotFound);
        }
        session.touch();
        Ok(session)
    }

    /// Ends and forgets a session.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self.sessions.write().ok().and_then(|mut m| m.remove(id));
        removed.map(|s| s.end()).is_some()
    }

    /// Ends every session of a credential (key revoked or regenerated).
    pub fn remove_for_credential(&self, credential_id: &str) {
        let ids: Vec<String> = self
            .sessions
            .read()
            .map(|m| m.values().filter(|s| s.principal.credential_id == credential_id).map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Ends every session of a user (user deleted).
    pub fn end_user(&self, user: &moat_core::UserId) {
        let ids: Vec<String> = self
            .sessions
            .read()
            .map(|m| m.values().filter(|s| s.principal.user_id == *user).map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Ends every session of a tenant opened with an access token or a
    /// browser session (tenant-wide revocation; API-key sessions stay).
    pub fn close_tenant(&self, tenant: &moat_core::TenantId) {
        let ids: Vec<String> = self
            .sessions
            .read()
            .map(|m| {
                m.values()
                    .filter(|s| {
                        s.principal.tenant_id == *tenant
                            && matches!(
                                s.principal.method,
                                moat_core::AuthMethod::AccessToken | moat_core::AuthMethod::Session
                            )
                    })
                    .map(|s| s.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Every live session (for notification fan-out).
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Drops sessions idle for longer than the idle timeout.
    pub fn sweep(&self) {
        let idle_ms = i64::try_from(self.idle.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let expired: Vec<String> = self
            .sessions
            .read()
            .map(|m| {
                m.values()
                    .filter(|s| now - s.last_seen.load(Ordering::Relaxed) > idle_ms)
                    .map(|s| s.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in expired {
            self.remove(&id);
        }
    }

    /// Ends every session (shutdown).
    pub fn close_all(&self) {
        let all: Vec<Arc<Session>> =
            self.sessions.write().map(|mut m| m.drain().map(|(_, s)| s).collect()).unwrap_or_default();
        for s in all {
            s.end();
        }
    }
}

fn aws_lc_rs_fill(buf: &mut [u8]) -> Result<(), ()> {
    moat_auth::random_bytes(buf).map_err(|_| ())
}
