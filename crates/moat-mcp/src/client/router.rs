//! Routing of what an upstream sends: answers to the call that awaits them
//! (by moat's own upstream id), progress to the caller that asked for it
//! (with the caller's token restored), other notifications to the event
//! channel, and server-to-client requests to a reply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::transport::Fail;
use super::{Scrubber, ServerRequest, UpstreamEvent};
use crate::jsonrpc::{ErrorObject, Kind, Message, code};

/// The answer slot of one call.
pub(crate) type Answer = Result<Message, Fail>;

struct PendingCall {
    tx: oneshot::Sender<Answer>,
    requests: Option<mpsc::Sender<ServerRequest>>,
}

/// The reply to a server-to-client request: ready now (`ping`, a refusal)
/// or once the downstream client answered.
pub(crate) type Reply = std::pin::Pin<Box<dyn std::future::Future<Output = Message> + Send>>;

fn ready(msg: Message) -> Reply {
    Box::pin(std::future::ready(msg))
}

struct TokenRoute {
    original: Value,
    progress: Option<mpsc::Sender<Value>>,
}

/// How and when a connection died.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Death {
    /// When it was noticed.
    pub(crate) at: Instant,
    /// Whether the restart should wait (a crash), or not (an expired session).
    pub(crate) backoff: bool,
}

#[derive(Default)]
struct State {
    calls: HashMap<u64, PendingCall>,
    tokens: HashMap<String, TokenRoute>,
    dead: Option<Death>,
}

/// Per-connection routing table.
pub(crate) struct Router {
    name: Arc<str>,
    events: broadcast::Sender<UpstreamEvent>,
    state: Mutex<State>,
    scrubber: Option<Arc<dyn Scrubber>>,
}

impl Router {
    /// An empty table for upstream `name`.
    pub(crate) fn new(name: Arc<str>, events: broadcast::Sender<UpstreamEvent>) -> Self {
        Router { name, events, state: Mutex::new(State::default()), scrubber: None }
    }

    /// Sets the scrubber every incoming message passes through first.
    pub(crate) fn with_scrubber(mut self, scrubber: Option<Arc<dyn Scrubber>>) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// The upstream's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain maps; the maps are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers call `id`; its answer arrives on the returned receiver.
    pub(crate) fn register(
        &self,
        id: u64,
        requests: Option<mpsc::Sender<ServerRequest>>,
    ) -> Result<oneshot::Receiver<Answer>, Fail> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.state();
        if st.dead.is_some() {
            return Err(Fail::Died(format!("upstream `{}` is not running", self.name)));
        }
        st.calls.insert(id, PendingCall { tx, requests });
        Ok(rx)
    }

    /// Routes progress sent with upstream token `token` back to `progress`,
    /// restoring `original`.
    pub(crate) fn map_token(&self, token: &str, original: Value, progress: Option<mpsc::Sender<Value>>) {
        self.state().tokens.insert(token.to_owned(), TokenRoute { original, progress });
    }

    /// Forgets call `id` and progress token `token`.
    pub(crate) fn forget(&self, id: u64, token: &str) {
        let mut st = self.state();
        st.calls.remove(&id);
        st.tokens.remove(token);
    }

    /// Forgets call `id`.
    pub(crate) fn forget_call(&self, id: u64) {
        self.state().calls.remove(&id);
    }

    /// Fails call `id` now, if it is waiting.
    pub(crate) fn fail_call(&self, id: u64, fail: Fail) -> bool {
        match self.state().calls.remove(&id) {
            Some(call) => {
                let _ = call.tx.send(Err(fail));
                true
            }
            None => false,
        }
    }

    /// True once the connection died.
    pub(crate) fn is_dead(&self) -> bool {
        self.state().dead.is_some()
    }

    /// How the connection died, if it did.
    pub(crate) fn death(&self) -> Option<Death> {
        self.state().dead
    }

    /// Marks the connection dead and fails every waiting call with `fail`.
    /// Broadcasts [`UpstreamEvent::Died`] when `announce` is set. Returns
    /// false when it was already dead.
    pub(crate) fn kill(&self, reason: String, fail: Fail, backoff: bool, announce: bool) -> bool {
        let calls = {
            let mut st = self.state();
            if st.dead.is_some() {
                return false;
            }
            st.dead = Some(Death { at: Instant::now(), backoff });
            st.tokens.clear();
            std::mem::take(&mut st.calls)
        };
        for (_, call) in calls {
            let _ = call.tx.send(Err(fail.clone()));
        }
        if announce {
            tracing::warn!(upstream = %self.name, reason = %reason, "upstream connection died");
            let _ = self.events.send(UpstreamEvent::Died(reason));
        }
        true
    }

    /// Routes one incoming message. `stream` is the progress channel of the
    /// call whose HTTP response stream carried it, and `call` that call's
    /// upstream id, if any: request-related `notifications/message` and
    /// server-to-client requests go to that call. Returns the reply to send
    /// for a server-to-client request.
    pub(crate) fn dispatch(
        &self,
        mut msg: Message,
        stream: Option<&mpsc::Sender<Value>>,
        call: Option<u64>,
    ) -> Option<Reply> {
        if let Some(s) = &self.scrubber {
            s.scrub_message(&mut msg);
        }
        match msg.kind() {
            Kind::Response => {
                self.answer(msg);
                None
            }
            Kind::Notification => {
                self.notification(msg, stream);
                None
            }
            Kind::Request => Some(self.server_request(msg, call)),
        }
    }

    fn answer(&self, msg: Message) {
        let id = msg.id.as_ref().and_then(Value::as_u64);
        let call = id.and_then(|id| self.state().calls.remove(&id));
        match call {
            Some(call) => {
                let _ = call.tx.send(Ok(msg));
            }
            None => tracing::debug!(upstream = %self.name, "dropped an answer to no waiting call"),
        }
    }

    fn notification(&self, mut msg: Message, stream: Option<&mpsc::Sender<Value>>) {
        match msg.method_str() {
            "notifications/progress" => {
                let token = msg.params.as_ref().and_then(|p| p.get("progressToken")).and_then(Value::as_str);
                let route =
                    token.and_then(|t| self.state().tokens.get(t).map(|r| (r.original.clone(), r.progress.clone())));
                let Some((original, progress)) = route else {
                    tracing::debug!(upstream = %self.name, "dropped progress for no waiting call");
                    return;
                };
                let Some(progress) = progress else { return };
                if let Some(Value::Object(params)) = msg.params.as_mut() {
                    params.insert("progressToken".into(), original);
                }
                if let Some(params) = msg.params
                    && progress.try_send(params).is_err()
                {
                    tracing::debug!(upstream = %self.name, "progress dropped: the caller is not reading");
                }
            }
            "notifications/message" if stream.is_some() => {
                if let (Some(tx), Some(params)) = (stream, msg.params)
                    && tx.try_send(params).is_err()
                {
                    tracing::debug!(upstream = %self.name, "log message dropped: the caller is not reading");
                }
            }
            // Acknowledgements of our own `subscriptions/listen` and answers
            // to cancellations concern this hop only.
            "notifications/subscriptions/acknowledged" | "notifications/cancelled" => {}
            _ => {
                let _ = self.events.send(UpstreamEvent::Notification(msg));
            }
        }
    }

    /// A server-to-client request (sampling, elicitation, roots, …) goes to
    /// the downstream client of the call it belongs to: the call whose
    /// response stream carried it, or, where the transport cannot tell
    /// (stdio, HTTP+SSE, a GET stream), the only call waiting with a
    /// handler. Never a guess between callers: a request meant for one
    /// user's client must not reach another's.
    fn server_request(&self, msg: Message, call: Option<u64>) -> Reply {
        let id = msg.id.clone().unwrap_or(Value::Null);
        if msg.method_str() == "ping" {
            return ready(Message::response(id, json!({})));
        }
        let sink = {
            let st = self.state();
            match call {
                Some(c) => st.calls.get(&c).and_then(|p| p.requests.clone()),
                None => {
                    let mut handlers = st.calls.values().filter_map(|p| p.requests.clone());
                    match (handlers.next(), handlers.next()) {
                        (Some(only), None) => Some(only),
                        _ => None,
                    }
                }
            }
        };
        let Some(sink) = sink else {
            tracing::info!(upstream = %self.name, method = msg.method_str(), "refused a server-to-client request");
            return ready(Message::error_response(
                Some(id),
                ErrorObject::new(code::METHOD_NOT_FOUND, "not supported through the gateway for this call"),
            ));
        };
        let (tx, rx) = oneshot::channel();
        let request = ServerRequest { method: msg.method_str().to_owned(), params: msg.params, reply: tx };
        if sink.try_send(request).is_err() {
            return ready(Message::error_response(
                Some(id),
                ErrorObject::new(code::INTERNAL_ERROR, "the client is not reading server requests"),
            ));
        }
        Box::pin(async move {
            match rx.await {
                Ok(Ok(result)) => Message::response(id, result),
                Ok(Err(e)) => Message::error_response(Some(id), e),
                Err(_) => Message::error_response(
                    Some(id),
                    ErrorObject::new(code::INTERNAL_ERROR, "the client did not answer the request"),
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> (Router, broadcast::Receiver<UpstreamEvent>) {
        let (tx, rx) = broadcast::channel(16);
        (Router::new(Arc::from("up"), tx), rx)
    }

    fn parse(v: Value) -> Message {
        Message::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn answers_reach_their_call_by_upstream_id() {
        let (r, _ev) = router();
        let rx7 = r.register(7, None).unwrap();
        let rx8 = r.register(8, None).unwrap();
        assert!(r.dispatch(parse(json!({"jsonrpc":"2.0","id":8,"result":{"b":1}})), None, None).is_none());
        assert!(
            r.dispatch(parse(json!({"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"m"}})), None, None).is_none()
        );
        assert_eq!(rx8.await.unwrap().unwrap().result, Some(json!({"b":1})));
        assert_eq!(rx7.await.unwrap().unwrap().error.unwrap().code, -1);
        // Unknown ids (and string ids we never issue) are dropped.
        r.dispatch(parse(json!({"jsonrpc":"2.0","id":"7","result":{}})), None, None);
        r.dispatch(parse(json!({"jsonrpc":"2.0","id":99,"result":{}})), None, None);
    }

    struct Upper;
    impl Scrubber for Upper {
        fn scrub_message(&self, msg: &mut Message) {
            let text = String::from_utf8(msg.to_bytes()).unwrap().replace("s3cret", "[x]");
            *msg = Message::parse(text.as_bytes()).unwrap();
        }
        fn scrub_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
            text.into()
        }
    }

    #[tokio::test]
    async fn every_incoming_message_passes_the_scrubber_first() {
        let (tx, mut ev) = broadcast::channel(16);
        let r = Router::new(Arc::from("up"), tx).with_scrubber(Some(Arc::new(Upper)));
        let rx = r.register(1, None).unwrap();
        r.dispatch(parse(json!({"jsonrpc":"2.0","id":1,"result":{"t":"s3cret"}})), None, None);
        assert_eq!(rx.await.unwrap().unwrap().result, Some(json!({"t":"[x]"})));
        r.dispatch(
            parse(json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"s3cret"}})),
            None,
            None,
        );
        match ev.recv().await.unwrap() {
            UpstreamEvent::Notification(m) => assert_eq!(m.param_str("uri"), Some("[x]")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn progress_is_routed_with_the_original_token() {
        let (r, mut ev) = router();
        let (tx, mut rx) = mpsc::channel(4);
        r.map_token("moat-5", json!(42), Some(tx));
        r.dispatch(
            parse(json!({"jsonrpc":"2.0","method":"notifications/progress",
                "params":{"progressToken":"moat-5","progress":1,"total":2}})),
            None,
            None,
        );
        assert_eq!(rx.recv().await.unwrap(), json!({"progressToken":42,"progress":1,"total":2}));
        // Unknown tokens never leak to other callers or to events.
        r.dispatch(
            parse(json!({"jsonrpc":"2.0","method":"notifications/progress",
                "params":{"progressToken":"moat-6","progress":1}})),
            None,
            None,
        );
        r.forget(5, "moat-5");
        r.dispatch(
            parse(json!({"jsonrpc":"2.0","method":"notifications/progress",
                "params":{"progressToken":"moat-5","progress":2}})),
            None,
            None,
        );
        assert!(rx.try_recv().is_err());
        assert!(ev.try_recv().is_err());
    }

    #[tokio::test]
    async fn other_notifications_become_events_unless_request_related() {
        let (r, mut ev) = router();
        r.dispatch(parse(json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})), None, None);
        match ev.try_recv().unwrap() {
            UpstreamEvent::Notification(m) => assert_eq!(m.method_str(), "notifications/tools/list_changed"),
            other => panic!("{other:?}"),
        }
        let (tx, mut rx) = mpsc::channel(4);
        r.dispatch(
            parse(json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}})),
            Some(&tx),
            None,
        );
        assert_eq!(rx.recv().await.unwrap(), json!({"level":"info","data":"x"}));
        assert!(ev.try_recv().is_err());
    }

    #[tokio::test]
    async fn server_requests_get_ping_answered_and_others_refused_without_a_handler() {
        let (r, _ev) = router();
        let reply = r.dispatch(parse(json!({"jsonrpc":"2.0","id":"s1","method":"ping"})), None, None).unwrap().await;
        assert_eq!(reply.id, Some(json!("s1")));
        assert_eq!(reply.result, Some(json!({})));
        let sampling = json!({"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}});
        let reply = r.dispatch(parse(sampling), None, None).unwrap().await;
        assert_eq!(reply.error.unwrap().code, code::METHOD_NOT_FOUND);
    }

    #[tokio::test]
    async fn server_requests_reach_the_handler_of_their_call_only() {
        let (r, _ev) = router();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let _c1 = r.register(1, Some(tx1)).unwrap();
        let _c2 = r.register(2, Some(tx2)).unwrap();
        let elicit =
            || parse(json!({"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"?"}}));
        // Two calls with handlers and no stream to tell them apart: refused.
        let reply = r.dispatch(elicit(), None, None).unwrap().await;
        assert_eq!(reply.error.unwrap().code, code::METHOD_NOT_FOUND);
        // Carried by call 2's stream: reaches call 2's handler only.
        let pending = r.dispatch(elicit(), None, Some(2)).unwrap();
        let req = rx2.recv().await.unwrap();
        assert_eq!(req.method, "elicitation/create");
        assert!(rx1.try_recv().is_err());
        req.reply.send(Ok(json!({"action":"accept","content":{}}))).unwrap();
        let reply = pending.await;
        assert_eq!(reply.id, Some(json!("e1")));
        assert_eq!(reply.result.unwrap()["action"], "accept");
        // The only handler left: routed to it even without a stream.
        r.forget_call(2);
        let pending = r.dispatch(elicit(), None, None).unwrap();
        let req = rx1.recv().await.unwrap();
        req.reply.send(Err(ErrorObject::new(-1, "declined"))).unwrap();
        assert_eq!(pending.await.error.unwrap().message, "declined");
    }

    #[tokio::test]
    async fn kill_fails_waiting_calls_once_and_refuses_new_ones() {
        let (r, mut ev) = router();
        let rx = r.register(1, None).unwrap();
        assert!(r.kill("upstream `up` exited".into(), Fail::Died("upstream `up` exited".into()), true, true));
        assert!(!r.kill("again".into(), Fail::Died("again".into()), true, true));
        assert_eq!(rx.await.unwrap().unwrap_err(), Fail::Died("upstream `up` exited".into()));
        assert!(r.register(2, None).is_err());
        assert!(matches!(ev.try_recv().unwrap(), UpstreamEvent::Died(_)));
        assert!(r.death().unwrap().backoff);
    }
}
