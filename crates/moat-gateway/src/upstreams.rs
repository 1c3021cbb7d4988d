//! The upstream pool: for every registered server, one long-lived
//! [`Upstream`] per *credential binding* — the set of stored credentials a
//! caller resolves to for that server (none, the organisation's, a team's, a
//! user's own). Callers that resolve to the same binding share a connection
//! (a stdio process, an HTTP session); callers with different credentials
//! never do, so one user's process never holds another's token and one
//! tenant never shares a process with another. Each binding's instance has
//! its own list caches, which `list_changed` notifications (and restarts)
//! invalidate, and its own scrubber, which removes the injected credential
//! values from everything the upstream sends. A cached page is shared, not
//! copied: callers of the same binding read one [`ListPage`].

use crate::config::GatewayConfig;
use crate::credentials::Binding;
use futures::future::BoxFuture;
use moat_core::{CredentialId, ServerId, TenantId};
use moat_mcp::Message;
use moat_mcp::client::{
    CallContext, Era, EraPreference, Scrubber, ScrubberRef, Upstream, UpstreamError, UpstreamEvent, UpstreamOptions,
    UpstreamSpec,
};
use moat_store::{ServerRecord, Transport};
use secrecy::SecretString;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// A server notification fanned out to downstream sessions and listeners.
#[derive(Clone, Debug)]
pub struct ServerNotification {
    /// The tenant owning the server.
    pub tenant: TenantId,
    /// The server's id.
    pub server_id: ServerId,
    /// The server's name.
    pub server: Arc<str>,
    /// The credential binding of the instance that sent it: only callers
    /// bound to the same credentials may see it.
    pub binding: Arc<str>,
    /// The notification, as the upstream sent it (names unprefixed).
    pub message: Message,
}

type ListKey = (bool, &'static str, Option<String>);

/// One page of a list method as the firewall let it through, cached per
/// instance (credential binding), era, method and cursor, and shared by the
/// callers of that instance.
#[derive(Debug)]
pub struct ListPage {
    value: Value,
    aggregated: OnceLock<Vec<Box<RawValue>>>,
}

impl ListPage {
    fn new(value: Value) -> Self {
        Self { value, aggregated: OnceLock::new() }
    }

    /// The page as the filter left it (names as the upstream gave them).
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The page, owned.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The page's items as the aggregated endpoint lists them, serialised,
    /// built by `build` from [`value`](Self::value) on first use and kept
    /// as long as the page is cached. Sound because a page belongs to one
    /// server and one method: whoever calls this builds the same items.
    pub fn aggregated(&self, build: impl FnOnce(&Value) -> Vec<Box<RawValue>>) -> &[Box<RawValue>] {
        self.aggregated.get_or_init(|| build(&self.value))
    }
}

/// Inspects what upstreams send before it is cached or fanned out: the
/// firewall, installed once at start ([`UpstreamPool::set_filter`]).
pub trait UpstreamFilter: Send + Sync {
    /// Sanitises one page of a list method before it is cached.
    fn list<'a>(&'a self, server: &'a ServerRecord, method: &'static str, page: &'a mut Value) -> BoxFuture<'a, ()>;
    /// Inspects a server notification; `false` drops it.
    fn notification<'a>(&'a self, server: &'a ServerRecord, msg: &'a mut Message) -> BoxFuture<'a, bool>;
}

type FilterSlot = Arc<OnceLock<Arc<dyn UpstreamFilter>>>;

/// One registered server: its record and its live instances, one per
/// credential binding in use.
pub struct ServerEntry {
    /// The stored registration.
    pub record: ServerRecord,
    spec: UpstreamSpec,
    options: UpstreamOptions,
    notify: broadcast::Sender<ServerNotification>,
    filter: FilterSlot,
    instances: Mutex<HashMap<Arc<str>, Arc<Instance>>>,
}

/// One connection (or process) of a server, for one credential binding.
///
/// Era matching: `upstream` speaks the newest era the server supports
/// (probed). A legacy (2025-11-25) downstream session must reach the server
/// in the legacy era too — its methods (`logging/setLevel`,
/// `resources/subscribe`) and server-to-client requests exist only there —
/// so when the server turned out modern, legacy callers get a second,
/// legacy-only connection, opened on first use.
pub struct Instance {
    binding: Arc<Binding>,
    server: Weak<ServerEntry>,
    name: String,
    upstream: Upstream,
    legacy: Mutex<Option<Upstream>>,
    spec: UpstreamSpec,
    options: UpstreamOptions,
    lists: Mutex<HashMap<ListKey, (Arc<ListPage>, Instant)>>,
    unhealthy_until: Mutex<Option<Instant>>,
    last_used: Mutex<Instant>,
}

/// Removes a binding's injected values from what its upstream sends.
struct BindingScrubber(Arc<Binding>);

impl Scrubber for BindingScrubber {
    fn scrub_message(&self, msg: &mut Message) {
        let r = &self.0.redactor;
        for v in [msg.params.as_mut(), msg.result.as_mut()].into_iter().flatten() {
            r.redact_json(v);
        }
        if let Some(e) = msg.error.as_mut() {
            if let Cow::Owned(m) = r.redact_str(&e.message) {
                e.message = m;
            }
            if let Some(d) = e.data.as_mut() {
                r.redact_json(d);
            }
        }
    }

    fn scrub_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.0.redactor.redact_str(text)
    }
}

impl Instance {
    /// The connection to use for a caller of the given era.
    pub async fn upstream_for(self: &Arc<Self>, modern: bool) -> Result<Upstream, UpstreamError> {
        self.touch();
        if modern {
            return Ok(self.upstream.clone());
        }
        if self.upstream.hello().is_none() {
            self.upstream.connect().await?;
        }
        if self.upstream.hello().is_none_or(|h| h.era == Era::Legacy) {
            return Ok(self.upstream.clone());
        }
        let mut slot = self.legacy.lock().map_err(|_| UpstreamError::Closed)?;
        if let Some(u) = slot.as_ref() {
            return Ok(u.clone());
        }
        let options = UpstreamOptions { era: EraPreference::Legacy, ..self.options.clone() };
        let u = Upstream::new(&self.name, self.spec.clone(), options);
        if let Some(server) = self.server.upgrade() {
            spawn_listener(Arc::downgrade(self), u.events(), server.notify.clone(), server.filter.clone());
        }
        *slot = Some(u.clone());
        Ok(u)
    }

    /// The newest-era connection, without starting anything.
    pub fn primary(&self) -> &Upstream {
        &self.upstream
    }

    /// The credential binding this instance serves.
    pub fn binding(&self) -> &Arc<Binding> {
        &self.binding
    }

    fn connections(&self) -> Vec<Upstream> {
        let mut all = vec![self.upstream.clone()];
        if let Some(u) = self.legacy.lock().ok().and_then(|l| l.clone()) {
            all.push(u);
        }
        all
    }

    async fn shutdown(&self) {
        futures::future::join_all(self.connections().iter().map(Upstream::shutdown)).await;
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().map(|t| t.elapsed()).unwrap_or_default()
    }

    fn clear_lists(&self, methods: &[&str]) {
        if let Ok(mut lists) = self.lists.lock() {
            lists.retain(|(_, m, _), _| !methods.contains(m));
        }
    }

    fn clear_all_lists(&self) {
        if let Ok(mut lists) = self.lists.lock() {
            lists.clear();
        }
    }

    /// True while the server recently failed a list call: aggregated lists
    /// skip it for a while rather than wait for it on every request.
    pub fn is_unhealthy(&self) -> bool {
        self.unhealthy_until.lock().ok().and_then(|g| *g).is_some_and(|until| Instant::now() < until)
    }

    fn mark(&self, healthy: bool) {
        if let Ok(mut g) = self.unhealthy_until.lock() {
            *g = (!healthy).then(|| Instant::now() + Duration::from_secs(30));
        }
    }
}

impl ServerEntry {
    /// The server's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The instance for a credential binding, created on first use.
    pub fn instance(self: &Arc<Self>, binding: Arc<Binding>) -> Arc<Instance> {
        let Ok(mut map) = self.instances.lock() else {
            return self.new_instance(binding);
        };
        if let Some(i) = map.get(&binding.key) {
            i.touch();
            return i.clone();
        }
        let inst = self.new_instance(binding);
        map.insert(inst.binding.key.clone(), inst.clone());
        inst
    }

    /// The instance of callers with no stored credential for this server.
    pub fn base(self: &Arc<Self>) -> Arc<Instance> {
        self.instance(Binding::shared_none())
    }

    fn new_instance(self: &Arc<Self>, binding: Arc<Binding>) -> Arc<Instance> {
        let spec = binding.apply(&self.spec);
        let mut options = self.options.clone();
        if !binding.redactor.is_empty() {
            options.scrubber = Some(ScrubberRef(Arc::new(BindingScrubber(binding.clone()))));
        }
        let upstream = Upstream::new(&self.record.name, spec.clone(), options.clone());
        let inst = Arc::new(Instance {
            binding,
            server: Arc::downgrade(self),
            name: self.record.name.clone(),
            upstream,
            legacy: Mutex::new(None),
            spec,
            options,
            lists: Mutex::new(HashMap::new()),
            unhealthy_until: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
        });
        spawn_listener(Arc::downgrade(&inst), inst.upstream.events(), self.notify.clone(), self.filter.clone());
        inst
    }

    /// Shuts every connection of this server down.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.instances.lock().map(|mut m| m.drain().map(|(_, i)| i).collect()).unwrap_or_default();
        futures::future::join_all(all.iter().map(|i| i.shutdown())).await;
    }

    /// Removes the instances whose binding satisfies `pred` and shuts them
    /// down in the background.
    fn retire(&self, pred: impl Fn(&Instance) -> bool) -> usize {
        let gone: Vec<Arc<Instance>> = match self.instances.lock() {
            Ok(mut m) => {
                let keys: Vec<Arc<str>> = m.iter().filter(|(_, i)| pred(i)).map(|(k, _)| k.clone()).collect();
                keys.iter().filter_map(|k| m.remove(k)).collect()
            }
            Err(_) => Vec::new(),
        };
        let n = gone.len();
        if n > 0 {
            tokio::spawn(async move {
                futures::future::join_all(gone.iter().map(|i| i.shutdown())).await;
            });
        }
        n
    }
}

/// Which cached lists a notification invalidates.
fn invalidated_by(method: &str) -> &'static [&'static str] {
    match method {
        "notifications/tools/list_changed" => &["tools/list"],
        "notifications/prompts/list_changed" => &["prompts/list"],
        "notifications/resources/list_changed" => &["resources/list", "resources/templates/list"],
        _ => &[],
    }
}

/// The list methods whose results are cached.
pub fn list_method(method: &str) -> Option<&'static str> {
    ["tools/list", "prompts/list", "resources/list", "resources/templates/list"].into_iter().find(|m| *m == method)
}

/// Every upstream of every tenant.
pub struct UpstreamPool {
    entries: RwLock<HashMap<(TenantId, String), Arc<ServerEntry>>>,
    options: UpstreamOptions,
    list_ttl: Duration,
    notify: broadcast::Sender<ServerNotification>,
    filter: FilterSlot,
}

/// Why a server record cannot become an upstream.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A stdio server without a command, or an HTTP one without a URL.
    #[error("server `{0}` has no {1}")]
    Missing(String, &'static str),
    /// A configured header name or value is not valid HTTP.
    #[error("server `{0}` has an invalid header `{1}`")]
    Header(String, String),
}

fn spec_of(record: &ServerRecord) -> Result<UpstreamSpec, SpecError> {
    let env = record.env.iter().map(|(k, v)| (k.clone(), SecretString::from(v.as_str()))).collect();
    let headers = || {
        record
            .headers
            .iter()
            .map(|(k, v)| {
                let name = http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| SpecError::Header(record.name.clone(), k.clone()))?;
                let mut value =
                    http::HeaderValue::from_str(v).map_err(|_| SpecError::Header(record.name.clone(), k.clone()))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, SpecError>>()
    };
    let url = || record.url.clone().ok_or_else(|| SpecError::Missing(record.name.clone(), "url"));
    Ok(match record.transport {
        Transport::Stdio => {
            let mut parts = record.command.clone().unwrap_or_default().into_iter();
            let command = parts.next().ok_or_else(|| SpecError::Missing(record.name.clone(), "command"))?;
            UpstreamSpec::Stdio { command, args: parts.collect(), env, cwd: None }
        }
        Transport::StreamableHttp => UpstreamSpec::StreamableHttp { url: url()?, headers: headers()? },
        Transport::Sse => UpstreamSpec::Sse { url: url()?, headers: headers()? },
    })
}

impl UpstreamPool {
    /// An empty pool.
    pub fn new(cfg: &GatewayConfig) -> Self {
        let options = UpstreamOptions {
            call_timeout: cfg.call_timeout,
            max_concurrency: cfg.upstream_max_concurrency,
            // moat relays these mid-call requests to the caller's client
            // (legacy sessions directly, modern clients through MRTR).
            // Not `roots`: its requests mostly come outside any call.
            client_capabilities: serde_json::json!({ "sampling": {}, "elicitation": { "form": {} } }),
            ..UpstreamOptions::default()
        };
        let (notify, _) = broadcast::channel(1024);
        Self {
            entries: RwLock::new(HashMap::new()),
            options,
            list_ttl: cfg.list_cache_ttl,
            notify,
            filter: Arc::new(OnceLock::new()),
        }
    }

    /// Installs the filter every list page and notification passes through
    /// (once; later calls are ignored).
    pub fn set_filter(&self, filter: Arc<dyn UpstreamFilter>) {
        let _ = self.filter.set(filter);
    }

    /// Drops the cached lists of one server's instances (after a change of
    /// what the filter lets through) and tells their clients that the lists
    /// changed.
    pub fn clear_lists(&self, tenant: &TenantId, server: &str) {
        let Some(e) = self.entries.read().ok().and_then(|m| m.get(&(tenant.clone(), server.to_owned())).cloned())
        else {
            return;
        };
        let bindings: Vec<Arc<str>> = match e.instances.lock() {
            Ok(map) => map
                .values()
                .map(|i| {
                    i.clear_all_lists();
                    i.binding.key.clone()
                })
                .collect(),
            Err(_) => return,
        };
        for binding in bindings {
            for m in [
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            ] {
                let _ = self.notify.send(ServerNotification {
                    tenant: e.record.tenant_id.clone(),
                    server_id: e.record.id.clone(),
                    server: Arc::from(e.record.name.as_str()),
                    binding: binding.clone(),
                    message: Message::notification(m, None),
                });
            }
        }
    }

    /// Notifications from every upstream.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerNotification> {
        self.notify.subscribe()
    }

    /// Adds (or replaces) the upstream for a record. A replaced upstream is
    /// shut down.
    pub fn install(&self, record: ServerRecord) -> Result<Arc<ServerEntry>, SpecError> {
        let spec = spec_of(&record)?;
        let entry = Arc::new(ServerEntry {
            record,
            spec,
            options: self.options.clone(),
            notify: self.notify.clone(),
            filter: self.filter.clone(),
            instances: Mutex::new(HashMap::new()),
        });
        let key = (entry.record.tenant_id.clone(), entry.record.name.clone());
        let old = self.entries.write().map(|mut m| m.insert(key, entry.clone())).unwrap_or(None);
        if let Some(old) = old {
            tokio::spawn(async move { old.shutdown().await });
        }
        Ok(entry)
    }

    /// Removes a server and shuts its upstream down.
    pub async fn remove(&self, tenant: &TenantId, name: &str) {
        let old = self.entries.write().ok().and_then(|mut m| m.remove(&(tenant.clone(), name.to_owned())));
        if let Some(old) = old {
            old.shutdown().await;
        }
    }

    /// Removes every server of a tenant.
    pub async fn remove_tenant(&self, tenant: &TenantId) {
        let names: Vec<String> = self.for_tenant(tenant).iter().map(|e| e.record.name.clone()).collect();
        for name in names {
            self.remove(tenant, &name).await;
        }
    }

    /// One server of a tenant, if registered and enabled.
    pub fn get(&self, tenant: &TenantId, name: &str) -> Option<Arc<ServerEntry>> {
        self.entries.read().ok()?.get(&(tenant.clone(), name.to_owned())).filter(|e| e.record.enabled).cloned()
    }

    /// Every enabled server of a tenant, sorted by name.
    pub fn for_tenant(&self, tenant: &TenantId) -> Vec<Arc<ServerEntry>> {
        let mut out: Vec<_> = self
            .entries
            .read()
            .map(|m| m.iter().filter(|((t, _), e)| t == tenant && e.record.enabled).map(|(_, e)| e.clone()).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        out
    }

    /// Enabled servers named `name` that allow anonymous callers, across tenants.
    pub fn anonymous(&self, name: &str) -> Vec<Arc<ServerEntry>> {
        self.entries
            .read()
            .map(|m| {
                m.values()
                    .filter(|e| e.record.name == name && e.record.enabled && e.record.allow_anonymous)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every entry (for boot connect and shutdown).
    pub fn all(&self) -> Vec<Arc<ServerEntry>> {
        self.entries.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Shuts down the instances holding any of these credentials (changed
    /// or deleted): the next call resolves again and starts a fresh one.
    pub fn retire_credentials(&self, tenant: &TenantId, credentials: &[CredentialId]) -> usize {
        if credentials.is_empty() {
            return 0;
        }
        self.all()
            .iter()
            .filter(|e| e.record.tenant_id == *tenant)
            .map(|e| e.retire(|i| credentials.iter().any(|c| i.binding.uses(c))))
            .sum()
    }

    /// Shuts down credential-holding instances idle for longer than `idle`
    /// (the credential-less instance of each server stays).
    pub fn evict_idle(&self, idle: Duration) -> usize {
        self.all().iter().map(|e| e.retire(|i| !i.binding.is_none() && i.idle_for() > idle)).sum()
    }

    /// One page of a list method, from the cache when fresh. Cached per
    /// era: cursors are opaque to each connection.
    pub async fn list_page(
        &self,
        entry: &Arc<Instance>,
        modern: bool,
        method: &'static str,
        cursor: Option<String>,
        ctx: CallContext,
    ) -> Result<Value, UpstreamError> {
        let page = self.shared_page(entry, modern, method, cursor, ctx).await?;
        Ok(Arc::try_unwrap(page).map_or_else(|shared| shared.value.clone(), ListPage::into_value))
    }

    /// [`list_page`](Self::list_page) without the copy: the cached page
    /// itself. With a list TTL of zero nothing is cached, so the caller
    /// holds the only reference and may take the page.
    pub async fn shared_page(
        &self,
        entry: &Arc<Instance>,
        modern: bool,
        method: &'static str,
        cursor: Option<String>,
        ctx: CallContext,
    ) -> Result<Arc<ListPage>, UpstreamError> {
        let key = (modern, method, cursor.clone());
        if let Some((page, at)) = entry.lists.lock().ok().and_then(|l| l.get(&key).cloned())
            && at.elapsed() < self.list_ttl
        {
            return Ok(page);
        }
        let params = cursor.map(|c| serde_json::json!({ "cursor": c }));
        let result = match entry.upstream_for(modern).await {
            Ok(upstream) => upstream.request(method, params, ctx).await,
            Err(e) => Err(e),
        };
        // Only a transport failure makes a server unhealthy: a JSON-RPC error
        // (say -32601 for prompts a server does not have) is an answer.
        entry.mark(!matches!(
            result,
            Err(UpstreamError::Timeout
                | UpstreamError::Unavailable(_)
                | UpstreamError::Protocol(_)
                | UpstreamError::Closed)
        ));
        let mut value = result?;
        if let (Some(filter), Some(server)) = (self.filter.get(), entry.server.upgrade()) {
            filter.list(&server.record, method, &mut value).await;
        }
        let page = Arc::new(ListPage::new(value));
        if !self.list_ttl.is_zero()
            && let Ok(mut lists) = entry.lists.lock()
        {
            lists.insert(key, (page.clone(), Instant::now()));
        }
        Ok(page)
    }

    /// Shuts every upstream down (SIGTERM path).
    pub async fn shutdown_all(&self) {
        let all = self.all();
        futures::future::join_all(all.iter().map(|e| e.shutdown())).await;
    }
}

fn spawn_listener(
    entry: Weak<Instance>,
    mut events: broadcast::Receiver<UpstreamEvent>,
    notify: broadcast::Sender<ServerNotification>,
    filter: FilterSlot,
) {
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(e) = entry.upgrade() {
                        e.clear_all_lists();
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Some(e) = entry.upgrade() else { return };
            let Some(server) = e.server.upgrade() else { return };
            let send = |message: Message| {
                let _ = notify.send(ServerNotification {
                    tenant: server.record.tenant_id.clone(),
                    server_id: server.record.id.clone(),
                    server: Arc::from(server.record.name.as_str()),
                    binding: e.binding.key.clone(),
                    message,
                });
            };
            match event {
                UpstreamEvent::Notification(mut msg) => {
                    e.clear_lists(invalidated_by(msg.method_str()));
                    if let Some(f) = filter.get()
                        && !f.notification(&server.record, &mut msg).await
                    {
                        continue;
                    }
                    send(msg);
                }
                UpstreamEvent::Restarted | UpstreamEvent::SessionReestablished => {
                    // A new process or session may serve different lists.
                    e.clear_all_lists();
                    e.mark(true);
                    for m in [
                        "notifications/tools/list_changed",
                        "notifications/prompts/list_changed",
                        "notifications/resources/list_changed",
                    ] {
                        send(Message::notification(m, None));
                    }
                }
                UpstreamEvent::Died(reason) => {
                    tracing::warn!(upstream = %e.name, %reason, "upstream died");
                    e.clear_all_lists();
                }
                _ => {}
            }
        }
    });
}
