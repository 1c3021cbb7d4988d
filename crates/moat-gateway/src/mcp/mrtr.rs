//! Multi round-trip requests across eras (2026-07-28 basic/patterns/mrtr).
//!
//! A modern client cannot receive server-to-client requests; a legacy
//! upstream can only send them. When a modern client's `tools/call`,
//! `prompts/get` or `resources/read` reaches a legacy upstream that asks for
//! sampling, elicitation or roots mid-call, moat answers the client with an
//! `input_required` result carrying the upstream's requests and a
//! `requestState`, and keeps the upstream call parked. The client's retry
//! (same method and target, `inputResponses` plus that `requestState`)
//! delivers the answers upstream and resumes the call, until the upstream
//! finishes or asks again.
//!
//! `requestState` is `moat1.` and 128 random bits: a handle to server-side
//! state, not the state itself, so there is nothing to tamper with. It is
//! bound to the principal that started the call, to its method and target,
//! used once, and expires after [`PARK_TTL`] (the parked upstream call is
//! then cancelled). This keeps a parked call on the replica that parked it;
//! a retry reaching another replica is told the state expired.

use moat_core::{Principal, TenantId};
use moat_mcp::client::{ServerRequest, UpstreamError};
use moat_mcp::jsonrpc::code;
use moat_mcp::{ErrorObject, Message};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a parked call waits for the client's retry.
pub const PARK_TTL: Duration = Duration::from_secs(300);
/// Prefix of moat's own `requestState` values.
pub const STATE_PREFIX: &str = "moat1.";

/// Methods that may answer `input_required` (MRTR "Supported Requests").
pub fn supports_input_required(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

type Reply = oneshot::Sender<Result<Value, ErrorObject>>;

/// Where the parked call's progress goes: the client request currently
/// attached to it, if any.
pub type Attachment = Arc<Mutex<Option<mpsc::Sender<Message>>>>;

/// An upstream call in flight, waiting for the client to answer.
pub struct Parked {
    credential: String,
    tenant: TenantId,
    method: String,
    target: String,
    task: JoinHandle<Result<Value, UpstreamError>>,
    requests: mpsc::Receiver<ServerRequest>,
    pending: Vec<(String, Value, Reply)>,
    attachment: Attachment,
    next_key: u32,
    expires: Instant,
}

impl Drop for Parked {
    fn drop(&mut self) {
        // Expired, replaced or abandoned: cancel the upstream call.
        self.task.abort();
    }
}

/// Parked calls of this process.
#[derive(Default)]
pub struct Parking {
    calls: Mutex<HashMap<String, Parked>>,
}

impl Parking {
    /// Drops expired parked calls (their upstream calls are cancelled).
    pub fn sweep(&self) {
        let now = Instant::now();
        if let Ok(mut calls) = self.calls.lock() {
            calls.retain(|_, p| p.expires > now);
        }
    }

    fn park(&self, parked: Parked) -> Result<String, ErrorObject> {
        let mut raw = [0u8; 16];
        moat_auth::random_bytes(&mut raw)
            .map_err(|_| ErrorObject::new(code::INTERNAL_ERROR, "randomness unavailable"))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let state = format!("{STATE_PREFIX}{token}");
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(state.clone(), parked);
        }
        Ok(state)
    }

    fn take(&self, state: &str) -> Option<Parked> {
        self.calls.lock().ok()?.remove(state)
    }
}

/// What the gateway needs to start or resume a bridged call.
pub struct Bridge<'a> {
    /// The parking lot.
    pub parking: &'a Parking,
    /// The caller.
    pub principal: &'a Principal,
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub method: &'a str,
    /// The tool or prompt name, or resource URI, as the upstream knows it.
    pub target: &'a str,
    /// The client's per-request capabilities.
    pub client_caps: Option<&'a Value>,
    /// The current client request's notification stream.
    pub notify: Option<mpsc::Sender<Message>>,
}

fn needed_capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// True when the client declared any capability the bridge can serve.
pub fn client_can_answer(caps: Option<&Value>) -> bool {
    caps.is_some_and(|c| ["sampling", "elicitation", "roots"].iter().any(|k| c.get(k).is_some()))
}

/// Outcome of driving a bridged call: the upstream's final answer, or an
/// `input_required` result for the client.
pub type Driven = Result<Result<Value, UpstreamError>, ErrorObject>;

impl Bridge<'_> {
    /// Starts a call: `start` receives the server-request sink and the
    /// progress sink, and returns the spawned upstream call.
    pub async fn start(
        &self,
        start: impl FnOnce(mpsc::Sender<ServerRequest>, mpsc::Sender<Value>) -> JoinHandle<Result<Value, UpstreamError>>,
    ) -> Driven {
        let (req_tx, requests) = mpsc::channel(8);
        let (progress_tx, mut progress_rx) = mpsc::channel::<Value>(64);
        let attachment: Attachment = Arc::new(Mutex::new(self.notify.clone()));
        let relay_to = attachment.clone();
        tokio::spawn(async move {
            while let Some(params) = progress_rx.recv().await {
                let method = if params.get("progressToken").is_some() {
                    "notifications/progress"
                } else {
                    "notifications/message"
                };
                let target = relay_to.lock().ok().and_then(|a| a.clone());
                if let Some(tx) = target {
                    let _ = tx.send(Message::notification(method, Some(params))).await;
                }
            }
        });
        let task = start(req_tx, progress_tx);
        let parked = Parked {
            credential: self.principal.credential_id.clone(),
            tenant: self.principal.tenant_id.clone(),
            method: self.method.to_owned(),
            target: self.target.to_owned(),
            task,
            requests,
            pending: Vec::new(),
            attachment,
            next_key: 0,
            expires: Instant::now() + PARK_TTL,
        };
        self.drive(parked).await
    }

    /// Resumes the parked call named by `state` with the client's
    /// `inputResponses`.
    pub async fn resume(&self, state: &str, responses: Option<&Value>) -> Driven {
        let expired = || {
            ErrorObject::new(code::INVALID_PARAMS, "invalid or expired requestState: send the request again without it")
        };
        let mut parked = self.parking.take(state).ok_or_else(expired)?;
        let same_caller =
            parked.credential == self.principal.credential_id && parked.tenant == self.principal.tenant_id;
        if !same_caller || parked.method != self.method || parked.target != self.target {
            // Not this caller's, or not this request's: refuse and keep
            // nothing (the parked call is cancelled when dropped).
            return Err(expired());
        }
        let mut missing = Vec::new();
        for (key, request, reply) in std::mem::take(&mut parked.pending) {
            match responses.and_then(|r| r.get(&key)) {
                Some(answer) => {
                    let _ = reply.send(Ok(answer.clone()));
                }
                None => missing.push((key, request, reply)),
            }
        }
        parked.pending = missing;
        if let Ok(mut a) = parked.attachment.lock() {
            *a = self.notify.clone();
        }
        parked.expires = Instant::now() + PARK_TTL;
        self.drive(parked).await
    }

    async fn drive(&self, mut parked: Parked) -> Driven {
        if parked.pending.is_empty() {
            loop {
                tokio::select! {
                    joined = &mut parked.task => {
                        let outcome = joined.unwrap_or(Err(UpstreamError::Closed));
                        return Ok(outcome);
                    }
                    request = parked.requests.recv() => {
                        let Some(request) = request else {
                            // The call finished; its answer is on the task.
                            let joined = (&mut parked.task).await;
                            return Ok(joined.unwrap_or(Err(UpstreamError::Closed)));
                        };
                        if !self.collect(&mut parked, request) {
                            continue;
                        }
                        // Requests sent together are asked together.
                        while let Ok(more) = parked.requests.try_recv() {
                            self.collect(&mut parked, more);
                        }
                        break;
                    }
                }
            }
        }
        let mut input_requests = Map::new();
        for (key, request, _) in &parked.pending {
            input_requests.insert(key.clone(), request.clone());
        }
        if let Ok(mut a) = parked.attachment.lock() {
            *a = None;
        }
        let state = self.parking.park(parked)?;
        Ok(Ok(json!({
            "resultType": "input_required",
            "inputRequests": input_requests,
            "requestState": state,
        })))
    }

    /// Adds a request for the client, or refuses it upstream when the client
    /// did not declare the capability it needs (MRTR: a server MUST NOT
    /// send such input requests). True when added.
    fn collect(&self, parked: &mut Parked, request: ServerRequest) -> bool {
        if let Some(cap) = needed_capability(&request.method)
            && self.client_caps.is_none_or(|c| c.get(cap).is_none())
        {
            let _ = request.reply.send(Err(ErrorObject::new(
                code::METHOD_NOT_FOUND,
                format!("the client did not declare the `{cap}` capability"),
            )));
            return false;
        }
        parked.next_key += 1;
        let key = format!("moat-{}", parked.next_key);
        let mut object = json!({ "method": request.method });
        if let Some(params) = request.params {
            object["params"] = params;
        }
        parked.pending.push((key, object, request.reply));
        true
    }
}
