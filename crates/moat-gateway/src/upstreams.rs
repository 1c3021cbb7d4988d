//! The upstream pool: one long-lived [`Upstream`] per registered server,
//! built from its stored record, with per-upstream caches of list results
//! that `list_changed` notifications (and restarts) invalidate.
//!
//! Until credentials arrive (the vault issue), the credential owner of every
//! upstream is its tenant, so the pool key is (tenant, server name).

use crate::config::GatewayConfig;
use moat_core::TenantId;
use moat_mcp::Message;
use moat_mcp::client::{
    CallContext, Era, EraPreference, Upstream, UpstreamError, UpstreamEvent, UpstreamOptions, UpstreamSpec,
};
use moat_store::{ServerRecord, Transport};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// A server notification fanned out to downstream sessions and listeners.
#[derive(Clone, Debug)]
pub struct ServerNotification {
    /// The tenant owning the server.
    pub tenant: TenantId,
    /// The server's name.
    pub server: Arc<str>,
    /// The notification, as the upstream sent it (names unprefixed).
    pub message: Message,
}

type ListKey = (bool, &'static str, Option<String>);

/// One registered server and its live connection.
///
/// Era matching: `upstream` speaks the newest era the server supports
/// (probed). A legacy (2025-11-25) downstream session must reach the server
/// in the legacy era too — its methods (`logging/setLevel`,
/// `resources/subscribe`) and server-to-client requests exist only there —
/// so when the server turned out modern, legacy callers get a second,
/// legacy-only connection, opened on first use.
pub struct ServerEntry {
    /// The stored registration.
    pub record: ServerRecord,
    /// The connection (or process), newest era.
    pub upstream: Upstream,
    legacy: Mutex<Option<Upstream>>,
    spec: UpstreamSpec,
    options: UpstreamOptions,
    notify: broadcast::Sender<ServerNotification>,
    lists: Mutex<HashMap<ListKey, (Value, Instant)>>,
    unhealthy_until: Mutex<Option<Instant>>,
}

impl ServerEntry {
    /// The connection to use for a caller of the given era.
    pub async fn upstream_for(self: &Arc<Self>, modern: bool) -> Result<Upstream, UpstreamError> {
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
        let u = Upstream::new(&self.record.name, self.spec.clone(), options);
        spawn_listener(Arc::downgrade(self), u.events(), self.notify.clone());
        *slot = Some(u.clone());
        Ok(u)
    }

    fn connections(&self) -> Vec<Upstream> {
        let mut all = vec![self.upstream.clone()];
        if let Some(u) = self.legacy.lock().ok().and_then(|l| l.clone()) {
            all.push(u);
        }
        all
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Shuts every connection of this server down.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.connections().iter().map(Upstream::shutdown)).await;
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
            UpstreamSpec::Stdio { command, args: parts.collect(), env: record.env.clone(), cwd: None }
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
        Self { entries: RwLock::new(HashMap::new()), options, list_ttl: cfg.list_cache_ttl, notify }
    }

    /// Notifications from every upstream.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerNotification> {
        self.notify.subscribe()
    }

    /// Adds (or replaces) the upstream for a record. A replaced upstream is
    /// shut down.
    pub fn install(&self, record: ServerRecord) -> Result<Arc<ServerEntry>, SpecError> {
        let spec = spec_of(&record)?;
        let upstream = Upstream::new(&record.name, spec.clone(), self.options.clone());
        let entry = Arc::new(ServerEntry {
            record,
            upstream,
            legacy: Mutex::new(None),
            spec,
            options: self.options.clone(),
            notify: self.notify.clone(),
            lists: Mutex::new(HashMap::new()),
            unhealthy_until: Mutex::new(None),
        });
        spawn_listener(Arc::downgrade(&entry), entry.upstream.events(), self.notify.clone());
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

    /// One page of a list method, from the cache when fresh. Cached per
    /// era: cursors are opaque to each connection.
    pub async fn list_page(
        &self,
        entry: &Arc<ServerEntry>,
        modern: bool,
        method: &'static str,
        cursor: Option<String>,
        ctx: CallContext,
    ) -> Result<Value, UpstreamError> {
        let key = (modern, method, cursor.clone());
        if let Some((value, at)) = entry.lists.lock().ok().and_then(|l| l.get(&key).cloned())
            && at.elapsed() < self.list_ttl
        {
            return Ok(value);
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
        let value = result?;
        if let Ok(mut lists) = entry.lists.lock() {
            lists.insert(key, (value.clone(), Instant::now()));
        }
        Ok(value)
    }

    /// Shuts every upstream down (SIGTERM path).
    pub async fn shutdown_all(&self) {
        let all = self.all();
        futures::future::join_all(all.iter().map(|e| e.shutdown())).await;
    }
}

fn spawn_listener(
    entry: Weak<ServerEntry>,
    mut events: broadcast::Receiver<UpstreamEvent>,
    notify: broadcast::Sender<ServerNotification>,
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
            let send = |message: Message| {
                let _ = notify.send(ServerNotification {
                    tenant: e.record.tenant_id.clone(),
                    server: Arc::from(e.record.name.as_str()),
                    message,
                });
            };
            match event {
                UpstreamEvent::Notification(msg) => {
                    e.clear_lists(invalidated_by(msg.method_str()));
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
                    tracing::warn!(upstream = %e.record.name, %reason, "upstream died");
                    e.clear_all_lists();
                }
                _ => {}
            }
        }
    });
}
