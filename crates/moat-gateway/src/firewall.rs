//! The firewall on the request path: the scan engine of `moat-firewall`
//! applied to what crosses moat, the policy in force for each call (the
//! deployment's, then the tenant's, server's and tool's overrides), the
//! actions (block, redact in place, hold for approval, log), approvals, the
//! sanitising of upstream descriptions and "rug pull" detection, and the
//! audit of every decision. Audit records name categories, rules and
//! actions, never matched text.

use crate::audit::AuditSink;
use crate::telemetry;
use moat_core::{Principal, ServerId, TenantId, now_ms};
use moat_firewall::{Action, Category, Direction, Engine, EngineConfig, JsonFinding, Mode, Policy, PolicyRule};
use moat_store::{
    ApprovalKind, ApprovalRecord, ApprovalStatus, AuditEvent, AuditResult, NewApproval, ServerRecord, Store, StoreError,
};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a tenant's overrides and patterns are trusted before they are
/// read again (writes through this process drop them at once).
const TENANT_TTL: Duration = Duration::from_secs(10);
/// Most findings listed in one audit event (the total is always recorded).
const MAX_AUDITED_FINDINGS: usize = 50;

/// What the firewall does with a tool whose description changed after it
/// was approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangedTools {
    /// Hidden from lists and refused on call until an admin re-approves it.
    Hide,
    /// Flagged (audit, pending approval) but still served.
    Flag,
}

/// Deployment-wide firewall settings.
#[derive(Clone, Debug)]
pub struct FirewallOptions {
    /// The deployment's policy (mode and rules).
    pub policy: Policy,
    /// How long a held call waits for an admin.
    pub approval_timeout: Duration,
    /// Longest description or title passed on, in bytes.
    pub max_description_bytes: usize,
    /// Rug-pull handling.
    pub changed_tools: ChangedTools,
    /// The largest call arguments or result, in bytes, before an
    /// `oversized-payload` exfiltration finding (tenants may set one per
    /// server or tool).
    pub payload_budget: usize,
}

impl Default for FirewallOptions {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            approval_timeout: Duration::from_secs(300),
            max_description_bytes: 4096,
            changed_tools: ChangedTools::Hide,
            payload_budget: DEFAULT_PAYLOAD_BUDGET,
        }
    }
}

/// Resolved (server, tool) policies kept per tenant.
const MAX_CACHED_SCOPES: usize = 4096;

/// Listed items remembered as scanned clean (see [`Firewall::clean_key`]).
const MAX_CLEAN_ITEMS: u64 = 100_000;

/// The default payload budget: 1 MiB.
pub const DEFAULT_PAYLOAD_BUDGET: usize = 1 << 20;

/// One override of a tenant, parsed.
struct Override {
    server: String,
    tool: String,
    mode: Option<Mode>,
    rules: Vec<PolicyRule>,
    budget: Option<usize>,
}

/// A tenant's overrides and, when it has patterns of its own, its engine.
struct TenantRules {
    overrides: Vec<Override>,
    patterns: Vec<(String, String, String)>,
    engine: Option<Arc<Engine>>,
    /// Names the engine in force: `standard`, or the SHA-256 of the
    /// patterns it was compiled with.
    engine_key: String,
    loaded: Instant,
    /// Resolved policies per (server, tool), built on first use: the
    /// request path reads them instead of layering the overrides (and
    /// cloning the rules) on every call. Dropped with these rules.
    scopes: Mutex<Scopes>,
}

/// Resolved scopes by (server, tool).
type Scopes = HashMap<(String, Option<String>), Arc<Scope>>;

/// The policy and payload budget in force for one tool of one server.
struct Scope {
    policy: Policy,
    budget: usize,
}

/// Who and what a scan is about.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// The caller, when there is one (none for descriptions and notifications).
    pub principal: Option<&'a Principal>,
    /// The server's name.
    pub server: &'a str,
    /// The tool, prompt or resource addressed.
    pub tool: Option<&'a str>,
    /// The MCP method.
    pub method: &'a str,
    /// The request id and address, for the audit trail.
    pub request_id: Option<&'a str>,
    /// The caller's address.
    pub source_addr: Option<&'a str>,
}

/// One finding as audited and summarised: no span, no text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FindingMeta {
    /// Its category.
    pub category: Category,
    /// Its rule id.
    pub rule: String,
    /// low, medium or high.
    pub confidence: moat_firewall::Confidence,
    /// What the policy decided for it.
    pub action: Action,
}

/// What a scan decided.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The strongest action decided.
    pub decided: Action,
    /// The mode in force.
    pub mode: Mode,
    /// The findings that matter (action above allow).
    pub findings: Vec<FindingMeta>,
}

impl Verdict {
    fn clean(mode: Mode) -> Self {
        Verdict { decided: Action::Allow, mode, findings: Vec::new() }
    }

    /// The action to apply now: the decision in enforce mode, nothing otherwise.
    pub fn enforced(&self) -> Action {
        if self.mode == Mode::Enforce { self.decided } else { Action::Allow }
    }

    /// The findings that led to `action`, in words: `secret (aws-access-key), …`.
    pub fn reasons(&self, action: Action) -> String {
        let mut seen = HashSet::new();
        let parts: Vec<String> = self
            .findings
            .iter()
            .filter(|f| f.action == action)
            .filter(|f| seen.insert((f.category, f.rule.clone())))
            .take(5)
            .map(|f| format!("{} ({})", category_words(f.category), f.rule))
            .collect();
        parts.join(", ")
    }

    /// The findings as JSON for error data and approvals.
    pub fn summary(&self) -> Value {
        json!({ "findings": self.findings, "action": self.decided, "mode": self.mode })
    }
}

fn category_words(c: Category) -> &'static str {
    match c {
        Category::Secret => "secret",
        Category::Pii => "personal data",
        Category::Injection => "prompt injection",
        Category::Destructive => "destructive command",
        Category::Url => "suspicious URL",
        Category::Exfiltration => "data exfiltration",
        Category::ToolAbuse => "tool abuse",
    }
}

/// Names (`kind/name`) of one server's items hidden pending re-approval.
type HiddenSet = Arc<HashSet<String>>;

/// The gateway's firewall. See the [module docs](self).
pub struct Firewall {
    opts: FirewallOptions,
    engine: Arc<Engine>,
    store: Store,
    audit: AuditSink,
    tenants: RwLock<HashMap<TenantId, Arc<TenantRules>>>,
    waiters: Mutex<Waiters>,
    hidden: RwLock<HashMap<(TenantId, ServerId), HiddenSet>>,
    /// Listed items (as sanitised) that the engine found nothing in, by
    /// [`Firewall::clean_key`]: an unchanged description is not scanned again
    /// each time its list is fetched. Only clean results are kept, so every
    /// finding is still decided, redacted and audited on every fetch.
    clean: moka::sync::Cache<String, ()>,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall").field("mode", &self.opts.policy.mode).finish_non_exhaustive()
    }
}

/// The calls held in this process: approval id → (tenant, wake-up handle).
type Waiters = HashMap<String, (TenantId, Arc<Notify>)>;

/// Calls one tenant may have held at once in one process; more are denied
/// at once, so that a looping agent cannot pile up waiting calls.
const MAX_HELD_PER_TENANT: usize = 64;

/// Removes a held call's wake-up handle when its wait ends.
struct Waiting<'a> {
    waiters: &'a Mutex<Waiters>,
    id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(self.id);
        }
    }
}

/// Why a firewall could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile the firewall rules: {0}")]
pub struct FirewallBuildError(String);

impl Firewall {
    /// Compiles the standard engine (tens of milliseconds) and wires the store and audit.
    pub fn new(opts: FirewallOptions, store: Store, audit: AuditSink) -> Result<Self, FirewallBuildError> {
        let engine =
            moat_firewall::standard_engine(&EngineConfig::default()).map_err(|e| FirewallBuildError(e.to_string()))?;
        Ok(Self {
            opts,
            engine: Arc::new(engine),
            store,
            audit,
            tenants: RwLock::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            hidden: RwLock::new(HashMap::new()),
            clean: moka::sync::Cache::builder().max_capacity(MAX_CLEAN_ITEMS).build(),
        })
    }

    /// The deployment's settings.
    pub fn options(&self) -> &FirewallOptions {
        &self.opts
    }

    /// Drops what is cached about a tenant (after its overrides or patterns change).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.tenants.write() {
            m.remove(tenant);
        }
        if let Ok(mut h) = self.hidden.write() {
            h.retain(|(t, _), _| t != tenant);
        }
    }

    /// Drops the hidden-item cache of one server (after an approval).
    pub fn forget_server(&self, tenant: &TenantId, server: &ServerId) {
        if let Ok(mut h) = self.hidden.write() {
            h.remove(&(tenant.clone(), server.clone()));
        }
    }

    async fn tenant(&self, tenant: &TenantId) -> Arc<TenantRules> {
        let cached = self.tenants.read().ok().and_then(|m| m.get(tenant).cloned());
        if let Some(t) = &cached
            && t.loaded.elapsed() < TENANT_TTL
        {
            return t.clone();
        }
        let loaded = match self.load_tenant(tenant, cached.as_deref()).await {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "cannot read the tenant's firewall overrides; using the last known");
                match cached {
                    Some(t) => return t,
                    None => Arc::new(TenantRules {
                        overrides: Vec::new(),
                        patterns: Vec::new(),
                        engine: None,
                        engine_key: STANDARD_ENGINE.to_owned(),
                        loaded: Instant::now() - TENANT_TTL,
                        scopes: Mutex::default(),
                    }),
                }
            }
        };
        if let Ok(mut m) = self.tenants.write() {
            m.insert(tenant.clone(), loaded.clone());
        }
        loaded
    }

    async fn load_tenant(&self, tenant: &TenantId, previous: Option<&TenantRules>) -> Result<TenantRules, StoreError> {
        let mut overrides = Vec::new();
        for p in self.store.list_firewall_policies(tenant).await? {
            let rules: Vec<PolicyRule> = serde_json::from_value(p.rules.clone()).unwrap_or_else(|e| {
                tracing::warn!(tenant = %tenant, error = %e, "ignoring unreadable firewall override rules");
                Vec::new()
            });
            let mode = p.mode.as_deref().and_then(|m| m.parse::<Mode>().ok());
            let budget = p.budget_bytes.and_then(|b| usize::try_from(b).ok());
            overrides.push(Override { server: p.server, tool: p.tool, mode, rules, budget });
        }
        // Tenant first, then servers, then tools: later ones win.
        overrides.sort_by_key(|o| (!o.server.is_empty(), !o.tool.is_empty()));
        let patterns: Vec<(String, String, String)> = self
            .store
            .list_firewall_patterns(tenant)
            .await?
            .into_iter()
            .map(|p| (p.name, p.category, p.pattern))
            .collect();
        let engine = match previous {
            Some(prev) if prev.patterns == patterns => prev.engine.clone(),
            _ if patterns.is_empty() => None,
            _ => match compile_with_patterns(&patterns) {
                Ok(e) => Some(Arc::new(e)),
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "the tenant's patterns do not compile; using the built-in rules");
                    None
                }
            },
        };
        let engine_key = match &engine {
            Some(_) => moat_vault::fingerprint(serde_json::to_string(&patterns).unwrap_or_default().as_bytes()),
            None => STANDARD_ENGINE.to_owned(),
        };
        Ok(TenantRules { overrides, patterns, engine, engine_key, loaded: Instant::now(), scopes: Mutex::default() })
    }

    /// The policy and the payload budget for one tool of one server: the
    /// deployment's, then the tenant's, the server's and the tool's
    /// overrides. Resolved once per (server, tool) while `rules` lives.
    fn scope_for(&self, rules: &TenantRules, server: &str, tool: Option<&str>) -> Arc<Scope> {
        let key = (server.to_owned(), tool.map(str::to_owned));
        if let Some(hit) = rules.scopes.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        let mut policy = self.opts.policy.clone();
        let mut budget = self.opts.payload_budget;
        for o in &rules.overrides {
            let applies =
                (o.server.is_empty() || o.server == server) && (o.tool.is_empty() || tool.is_some_and(|t| t == o.tool));
            if applies {
                if let Some(m) = o.mode {
                    policy.mode = m;
                }
                if let Some(b) = o.budget {
                    budget = b;
                }
                policy.push_layer(o.rules.iter().cloned());
            }
        }
        let scope = Arc::new(Scope { policy, budget });
        if let Ok(mut m) = rules.scopes.lock() {
            // Bounded by the tenant's servers and tools; an upstream that
            // invents tool names cannot grow it past this.
            if m.len() < MAX_CACHED_SCOPES {
                m.insert(key, scope.clone());
            }
        }
        scope
    }

    /// Scans the params of an upstream notification or request (sampling,
    /// elicitation) in the response direction, leaving their protocol
    /// members ([`PROTOCOL_KEYS`]) alone.
    pub async fn inspect_notification(&self, subject: &Subject<'_>, params: &mut Value) -> Verdict {
        let Some(obj) = params.as_object_mut() else {
            return self.inspect(subject, params, Direction::Response).await;
        };
        let kept: Vec<(String, Value)> =
            PROTOCOL_KEYS.iter().filter_map(|k| obj.shift_remove(*k).map(|v| ((*k).to_owned(), v))).collect();
        let verdict = self.inspect(subject, params, Direction::Response).await;
        if let Some(obj) = params.as_object_mut() {
            obj.extend(kept);
        }
        verdict
    }

    /// Scans `value` in `direction` and, in enforce mode, redacts in place
    /// what the policy says to redact. Records the decision when anything
    /// was found. The caller applies block and approve.
    pub async fn inspect(&self, subject: &Subject<'_>, value: &mut Value, direction: Direction) -> Verdict {
        let rules = self.tenant(subject.tenant).await;
        let scope = self.scope_for(&rules, subject.server, subject.tool);
        let (policy, budget) = (&scope.policy, scope.budget);
        if policy.mode == Mode::Disabled {
            return Verdict::clean(Mode::Disabled);
        }
        let engine = rules.engine.as_deref().unwrap_or(&self.engine);
        let started = Instant::now();
        let mut found = engine.scan_json(value, direction);
        if matches!(subject.method, "tools/call" | "resources/read" | "prompts/get")
            && let Some(f) = moat_firewall::scanners::exfil::oversized(payload_size(value), budget)
        {
            found.push(JsonFinding { pointer: String::new(), in_key: false, finding: f });
        }
        if found.is_empty() {
            return Verdict::clean(policy.mode);
        }
        let findings: Vec<_> = found.iter().map(|j| j.finding.clone()).collect();
        let decision = policy.decide(&findings, direction);
        let mut metas = Vec::new();
        let mut to_redact: Vec<JsonFinding> = Vec::new();
        for (j, action) in found.into_iter().zip(decision.actions.iter().copied()) {
            if action == Action::Allow {
                continue;
            }
            metas.push(FindingMeta {
                category: j.finding.category,
                rule: j.finding.rule.to_string(),
                confidence: j.finding.confidence,
                action,
            });
            // A size cannot be redacted: an oversized payload is logged,
            // held or blocked.
            if action == Action::Redact && j.finding.rule != "oversized-payload" {
                to_redact.push(j);
            }
        }
        let verdict = Verdict { decided: decision.action, mode: policy.mode, findings: metas };
        if verdict.mode == Mode::Enforce && verdict.decided != Action::Block && !to_redact.is_empty() {
            engine.redact_json(value, &to_redact, moat_firewall::engine::default_placeholder);
        }
        let elapsed = started.elapsed();
        if !verdict.findings.is_empty() {
            self.record(subject, direction, &verdict, elapsed).await;
        }
        verdict
    }

    async fn record(&self, s: &Subject<'_>, direction: Direction, v: &Verdict, elapsed: Duration) {
        for f in &v.findings {
            telemetry::firewall_finding(
                f.category.as_str(),
                f.action.as_str(),
                direction_str(direction),
                v.mode.as_str(),
            );
        }
        let blocked = v.mode == Mode::Enforce && v.decided == Action::Block;
        let mut ev = AuditEvent::new(
            s.principal.map_or("system", |p| p.kind.as_str()),
            format!("firewall.{}", v.decided.as_str()),
            if blocked { AuditResult::Denied } else { AuditResult::Ok },
        );
        ev.tenant_id = Some(s.tenant.clone());
        ev.actor_id = s.principal.map(|p| p.user_id.to_string());
        ev.resource = Some(match s.tool {
            Some(t) => format!("{}/{t}", s.server),
            None => s.server.to_owned(),
        });
        ev.source_addr = s.source_addr.map(str::to_owned);
        ev.request_id = s.request_id.map(str::to_owned);
        ev.latency_ms = i64::try_from(elapsed.as_millis()).ok();
        let listed: Vec<&FindingMeta> = v.findings.iter().take(MAX_AUDITED_FINDINGS).collect();
        ev.metadata = json!({
            "direction": direction_str(direction),
            "method": s.method,
            "server": s.server,
            "tool": s.tool,
            "principal": s.principal.map(|p| p.user_id.to_string()),
            "mode": v.mode,
            "enforced": v.mode == Mode::Enforce,
            "action": v.decided,
            "scan_us": u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "finding_count": v.findings.len(),
            "findings": listed,
        });
        self.audit.record(ev).await;
    }

    /// Holds a call until an admin decides, or the timeout denies it.
    /// `announce` is told the approval's id once it exists. Returns the
    /// approval id when approved, or the client-facing reason otherwise.
    pub async fn hold(
        &self,
        subject: &Subject<'_>,
        server_id: &ServerId,
        verdict: &Verdict,
        announce: impl FnOnce(&str),
    ) -> Result<String, String> {
        let timeout = self.opts.approval_timeout;
        let what = subject_words(subject);
        let held = self.waiters.lock().map(|w| w.values().filter(|(t, _)| t == subject.tenant).count()).unwrap_or(0);
        if held >= MAX_HELD_PER_TENANT {
            tracing::warn!(tenant = %subject.tenant, held, "too many calls held for approval; denying another");
            return Err(format!(
                "moat firewall: {what} needs an admin's approval, but {held} calls of this tenant are already \
                 waiting for one; the call was denied"
            ));
        }
        let expires_at = now_ms() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let approval = self
            .store
            .create_approval(
                subject.tenant,
                NewApproval {
                    kind: ApprovalKind::Call,
                    server_id: server_id.clone(),
                    server_name: subject.server.to_owned(),
                    target: subject.tool.unwrap_or_default().to_owned(),
                    method: subject.method.to_owned(),
                    requested_by: subject.principal.map(|p| p.user_id.to_string()),
                    summary: verdict.summary(),
                    hash: None,
                    expires_at: Some(expires_at),
                },
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot record an approval request; the call is denied");
                format!(
                    "moat firewall: {what} needs an admin's approval, which could not be requested; the call was denied"
                )
            })?;
        let id = approval.id.clone();
        tracing::warn!(approval = %id, server = subject.server, tool = subject.tool, "call held for approval");
        announce(&id);
        let notify = Arc::new(Notify::new());
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id.clone(), (subject.tenant.clone(), notify.clone()));
        }
        // Unregistered however the wait ends, also when the client goes away
        // and this future is dropped (the sweeper then expires the approval).
        let waiting = Waiting { waiters: &self.waiters, id: &id };
        let deadline = tokio::time::Instant::now() + timeout;
        let status = loop {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            let current = match self.store.get_approval(subject.tenant, &id).await {
                Ok(a) => a.status,
                Err(e) => {
                    tracing::warn!(approval = %id, error = %e, "cannot read an approval");
                    ApprovalStatus::Pending
                }
            };
            if current != ApprovalStatus::Pending {
                break current;
            }
            if tokio::time::Instant::now() >= deadline {
                break match self.store.decide_approval(subject.tenant, &id, ApprovalStatus::Expired, None).await {
                    Ok(_) => {
                        let mut ev = AuditEvent::new("system", "approval.expire", AuditResult::Denied);
                        ev.tenant_id = Some(subject.tenant.clone());
                        ev.resource = Some(id.clone());
                        ev.metadata =
                            json!({ "server": subject.server, "tool": subject.tool, "method": subject.method });
                        self.audit.record(ev).await;
                        ApprovalStatus::Expired
                    }
                    // Decided in the very last moment: that decision stands.
                    Err(_) => self
                        .store
                        .get_approval(subject.tenant, &id)
                        .await
                        .map(|a| a.status)
                        .unwrap_or(ApprovalStatus::Expired),
                };
            }
        };
        drop(waiting);
        match status {
            ApprovalStatus::Approved => Ok(id),
            ApprovalStatus::Denied => {
                Err(format!("moat firewall: {what} was held for approval ({id}) and an admin denied it"))
            }
            _ => Err(format!(
                "moat firewall: {what} was held for approval ({id}) and no admin answered within {} s, so it was denied",
                timeout.as_secs()
            )),
        }
    }

    /// Decides an approval and wakes the call waiting on it. Approving a
    /// description change accepts the new fingerprint.
    pub async fn decide(
        &self,
        tenant: &TenantId,
        id: &str,
        approve: bool,
        by: Option<&str>,
    ) -> Result<ApprovalRecord, StoreError> {
        let status = if approve { ApprovalStatus::Approved } else { ApprovalStatus::Denied };
        let record = self.store.decide_approval(tenant, id, status, by).await?;
        if record.kind == ApprovalKind::ToolChange
            && approve
            && let (Some(hash), Some((kind, name))) = (record.hash.as_deref(), record.target.split_once(':'))
        {
            self.store.approve_tool(tenant, &record.server_id, kind, name, hash).await?;
            self.forget_server(tenant, &record.server_id);
        }
        if let Some((_, n)) = self.waiters.lock().ok().and_then(|w| w.get(id).cloned()) {
            n.notify_one();
        }
        Ok(record)
    }

    /// True when the item is hidden because its description changed since
    /// it was approved (and the deployment hides such items).
    pub async fn is_hidden(&self, tenant: &TenantId, server: &ServerId, kind: &str, name: &str) -> bool {
        if self.opts.changed_tools != ChangedTools::Hide {
            return false;
        }
        let key = (tenant.clone(), server.clone());
        let cached = self.hidden.read().ok().and_then(|h| h.get(&key).cloned());
        let set = match cached {
            Some(s) => s,
            None => {
                let set: HashSet<String> = match self.store.tool_pins(tenant, server).await {
                    Ok(pins) => pins
                        .into_iter()
                        .filter(|p| p.approved_hash != p.seen_hash)
                        .map(|p| format!("{}:{}", p.kind, p.name))
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read description pins");
                        return false;
                    }
                };
                let set = Arc::new(set);
                if let Ok(mut h) = self.hidden.write() {
                    h.insert(key, set.clone());
                }
                set
            }
        };
        set.contains(&format!("{kind}:{name}"))
    }

    fn set_hidden(&self, tenant: &TenantId, server: &ServerId, item: &str, hidden: bool) {
        // Nearly always already so (every listed item on every fetch): a
        // shared lock is enough to see it.
        let key = (tenant.clone(), server.clone());
        let unchanged =
            self.hidden.read().ok().is_some_and(|h| h.get(&key).is_some_and(|set| set.contains(item) == hidden));
        if unchanged {
            return;
        }
        if let Ok(mut h) = self.hidden.write() {
            let entry = h.entry(key).or_default();
            let present = entry.contains(item);
            if present != hidden {
                let mut set = (**entry).clone();
                if hidden {
                    set.insert(item.to_owned());
                } else {
                    set.remove(item);
                }
                *entry = Arc::new(set);
            }
        }
    }

    /// Sanitises one page of an upstream list before it is cached: control
    /// and invisible characters stripped from every text, descriptions and
    /// titles capped, findings redacted (in names: the item is dropped), and
    /// each item's fingerprint checked against the one first seen.
    pub async fn filter_list(&self, server: &ServerRecord, method: &str, page: &mut Value) {
        let Some((key, kind)) = list_kind(method) else { return };
        let Some(items) = page.get_mut(key).and_then(Value::as_array_mut) else { return };
        let rules = self.tenant(&server.tenant_id).await;
        let pins: HashMap<(String, String), (String, String)> = match self
            .store
            .tool_pins(&server.tenant_id, &server.id)
            .await
        {
            Ok(p) => p.into_iter().map(|p| ((p.kind, p.name), (p.approved_hash, p.seen_hash))).collect(),
            Err(e) => {
                tracing::warn!(server = %server.name, error = %e, "cannot read description pins; not checking for changes");
                HashMap::new()
            }
        };
        let mut keep = Vec::with_capacity(items.len());
        for mut item in std::mem::take(items) {
            let Some(name) = item_name(&item, kind).map(str::to_owned) else { continue };
            let hash = fingerprint(&item);
            let mut visible =
                self.check_pin(server, kind, &name, &hash, pins.get(&(kind.to_owned(), name.clone()))).await;
            if has_invisible(&name) {
                tracing::warn!(server = %server.name, kind, "dropping an item whose name holds invisible or control characters");
                visible = false;
            }
            if visible {
                sanitise_texts(&mut item, self.opts.max_description_bytes);
                let scope = self.scope_for(&rules, &server.name, Some(&name));
                if scope.policy.mode != Mode::Disabled {
                    visible = self.scan_description(server, method, &name, &scope.policy, &rules, &mut item).await;
                }
            }
            if visible {
                keep.push(item);
            }
        }
        *items = keep;
    }

    async fn scan_description(
        &self,
        server: &ServerRecord,
        method: &str,
        name: &str,
        policy: &Policy,
        rules: &TenantRules,
        item: &mut Value,
    ) -> bool {
        let engine = rules.engine.as_deref().unwrap_or(&self.engine);
        let started = Instant::now();
        let clean_key = Self::clean_key(&server.tenant_id, rules, item);
        if clean_key.as_ref().is_some_and(|k| self.clean.contains_key(k)) {
            return true;
        }
        let found = engine.scan_json(item, Direction::Description);
        if found.is_empty() {
            if let Some(k) = clean_key {
                self.clean.insert(k, ());
            }
            return true;
        }
        let findings: Vec<_> = found.iter().map(|j| j.finding.clone()).collect();
        let decision = policy.decide(&findings, Direction::Description);
        let mut metas = Vec::new();
        let mut to_redact = Vec::new();
        let mut in_name = false;
        for (j, action) in found.into_iter().zip(decision.actions.iter().copied()) {
            if action == Action::Allow {
                continue;
            }
            metas.push(FindingMeta {
                category: j.finding.category,
                rule: j.finding.rule.to_string(),
                confidence: j.finding.confidence,
                action,
            });
            if action >= Action::Redact {
                in_name |= j.pointer == "/name" || j.pointer == "/uri" || j.pointer == "/uriTemplate";
                to_redact.push(j);
            }
        }
        let mut verdict = Verdict { decided: decision.action, mode: policy.mode, findings: metas };
        // In a description, "approve" and "block" mean the item is not offered.
        let drop = policy.mode == Mode::Enforce && (decision.action >= Action::Approve || in_name);
        if drop {
            verdict.decided = Action::Block;
        } else if policy.mode == Mode::Enforce && !to_redact.is_empty() {
            engine.redact_json(item, &to_redact, moat_firewall::engine::default_placeholder);
        }
        if !verdict.findings.is_empty() {
            let subject = Subject {
                tenant: &server.tenant_id,
                principal: None,
                server: &server.name,
                tool: Some(name),
                method,
                request_id: None,
                source_addr: None,
            };
            self.record(&subject, Direction::Description, &verdict, started.elapsed()).await;
        }
        !drop
    }

    /// What identifies one description scan: the tenant, the engine in force
    /// and the item exactly as scanned (sanitised), hashed with SHA-256. The
    /// scan is a pure function of the engine and the item, so an item with
    /// this key that was clean is clean again; any change to any member of
    /// the item (or to the tenant's patterns) is a new key, scanned afresh.
    fn clean_key(tenant: &TenantId, rules: &TenantRules, item: &Value) -> Option<String> {
        let mut bytes = Vec::with_capacity(1024);
        bytes.extend_from_slice(tenant.as_str().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(rules.engine_key.as_bytes());
        bytes.push(0);
        serde_json::to_writer(&mut bytes, item).ok()?;
        Some(moat_vault::fingerprint(&bytes))
    }

    /// Compares an item's fingerprint with its pin; records what is new or
    /// changed. Returns whether the item may be offered.
    async fn check_pin(
        &self,
        server: &ServerRecord,
        kind: &str,
        name: &str,
        hash: &str,
        pin: Option<&(String, String)>,
    ) -> bool {
        let (tenant, item) = (&server.tenant_id, format!("{kind}:{name}"));
        let approved = match pin {
            Some((approved, seen)) => {
                if seen != hash
                    && let Err(e) = self.store.see_tool(tenant, &server.id, kind, name, hash).await
                {
                    tracing::warn!(error = %e, "cannot record a description fingerprint");
                }
                approved == hash
            }
            None => {
                if let Err(e) = self.store.see_tool(tenant, &server.id, kind, name, hash).await {
                    tracing::warn!(error = %e, "cannot record a description fingerprint");
                }
                true
            }
        };
        if approved {
            self.set_hidden(tenant, &server.id, &item, false);
            return true;
        }
        let pending = self.store.pending_tool_change(tenant, &server.id, &item).await.ok().flatten();
        if pending.as_ref().and_then(|p| p.hash.as_deref()) != Some(hash) {
            let created = self
                .store
                .create_approval(
                    tenant,
                    NewApproval {
                        kind: ApprovalKind::ToolChange,
                        server_id: server.id.clone(),
                        server_name: server.name.clone(),
                        target: item.clone(),
                        method: format!("{kind}s/list"),
                        requested_by: None,
                        summary: json!({ "reason": "description changed after approval", "kind": kind, "name": name }),
                        hash: Some(hash.to_owned()),
                        expires_at: None,
                    },
                )
                .await;
            let id = created.as_ref().map(|a| a.id.clone()).ok();
            let mut ev = AuditEvent::new("system", "firewall.rug_pull", AuditResult::Denied);
            ev.tenant_id = Some(tenant.clone());
            ev.resource = Some(format!("{}/{name}", server.name));
            ev.metadata = json!({
                "server": server.name, "kind": kind, "name": name, "approval": id,
                "hidden": self.opts.changed_tools == ChangedTools::Hide,
            });
            self.audit.record(ev).await;
            tracing::warn!(server = %server.name, kind, name, approval = ?id, "description changed after approval");
        }
        let hide = self.opts.changed_tools == ChangedTools::Hide;
        self.set_hidden(tenant, &server.id, &item, hide);
        !hide
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Request => "request",
        Direction::Response => "response",
        Direction::Description => "description",
    }
}

fn subject_words(s: &Subject<'_>) -> String {
    match (s.method, s.tool) {
        ("resources/read", Some(t)) => format!("reading resource `{t}` of server `{}`", s.server),
        ("prompts/get", Some(t)) => format!("prompt `{t}` of server `{}`", s.server),
        (_, Some(t)) => format!("the call to tool `{t}` of server `{}`", s.server),
        (m, None) => format!("`{m}` on server `{}`", s.server),
    }
}

/// The words for a firewall refusal of a request.
pub fn blocked_request(subject: &Subject<'_>, verdict: &Verdict) -> String {
    format!("moat firewall blocked {}: the request contains {}", subject_words(subject), verdict.reasons(Action::Block))
}

/// The words for a firewall refusal of a response.
pub fn blocked_response(subject: &Subject<'_>, verdict: &Verdict) -> String {
    format!(
        "moat firewall withheld the result of {}: it contains {}",
        subject_words(subject),
        verdict.reasons(Action::Block)
    )
}

fn compile_with_patterns(patterns: &[(String, String, String)]) -> Result<Engine, String> {
    let mut custom = Vec::new();
    for (name, category, pattern) in patterns {
        let category: Category = serde_json::from_value(Value::String(category.clone()))
            .map_err(|_| format!("unknown category `{category}`"))?;
        custom.push(moat_firewall::CustomPattern { id: name.clone(), category, pattern: pattern.clone() });
    }
    let config = EngineConfig { custom_patterns: custom, ..EngineConfig::default() };
    moat_firewall::standard_engine(&config).map_err(|e| e.to_string())
}

/// Checks a tenant pattern before it is stored: a valid id, a known
/// category, and a regular expression within the engine's limits.
pub fn validate_pattern(name: &str, category: &str, pattern: &str) -> Result<(), String> {
    let category: Category = serde_json::from_value(Value::String(category.to_owned())).map_err(|_| {
        format!("`{category}` is not one of: secret, pii, injection, destructive, url, exfiltration, tool_abuse")
    })?;
    let custom = [moat_firewall::CustomPattern { id: name.to_owned(), category, pattern: pattern.to_owned() }];
    moat_firewall::RuleSet::compile(std::iter::empty(), &custom, Default::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// [`TenantRules::engine_key`] of the deployment's standard engine.
const STANDARD_ENGINE: &str = "standard";

/// The fields of a listed item that say what it is and does: what a model
/// reads and what an admin approves. Transport details that differ between
/// protocol eras (`_meta`, `execution`, `icons`) stay out, so the same item
/// has one fingerprint however it was listed.
const PINNED_FIELDS: &[&str] = &[
    "name",
    "uri",
    "uriTemplate",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "arguments",
    "mimeType",
];

/// The SHA-256 fingerprint of an item's pinned fields, as canonical JSON
/// (object keys sorted at every depth: upstreams and eras order them freely).
fn fingerprint(item: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&map[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let pinned: serde_json::Map<String, Value> =
        PINNED_FIELDS.iter().filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    let mut text = String::new();
    canonical(&Value::Object(pinned), &mut text);
    moat_vault::fingerprint(text.as_bytes())
}

/// The member of a list result and the pin kind of its items.
fn list_kind(method: &str) -> Option<(&'static str, &'static str)> {
    match method {
        "tools/list" => Some(("tools", "tool")),
        "prompts/list" => Some(("prompts", "prompt")),
        "resources/list" => Some(("resources", "resource")),
        "resources/templates/list" => Some(("resourceTemplates", "resource_template")),
        _ => None,
    }
}

fn item_name<'a>(item: &'a Value, kind: &str) -> Option<&'a str> {
    let key = match kind {
        "resource" => "uri",
        "resource_template" => "uriTemplate",
        _ => "name",
    };
    item.get(key).and_then(Value::as_str)
}

/// Characters never passed on in descriptions: C0 and C1 controls (not tab
/// and newline), zero-width and joiner characters, bidi controls, the soft
/// hyphen, variation selectors and Unicode tag characters.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}'
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

fn has_invisible(s: &str) -> bool {
    s.chars().any(is_invisible)
}

/// Strips invisible characters from every string of `v` (not object keys:
/// schema property names are the tool's interface) and caps the strings of
/// `description` and `title` members at `max` bytes.
fn sanitise_texts(v: &mut Value, max: usize) {
    fn walk(v: &mut Value, max: usize, capped: bool, depth: usize) {
        if depth > 64 {
            return;
        }
        match v {
            Value::String(s) => {
                if has_invisible(s) {
                    s.retain(|c| !is_invisible(c));
                }
                if capped && s.len() > max {
                    let mut end = max.saturating_sub(3);
                    while end > 0 && !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                    s.push('…');
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, max, false, depth + 1)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    walk(x, max, k == "description" || k == "title", depth + 1);
                }
            }
            _ => {}
        }
    }
    walk(v, max, false, 0);
}

/// Formats the "held for approval" notice for a client.
pub fn held_notice(subject: &Subject<'_>, id: &str) -> String {
    format!(
        "moat firewall: {} is held until an admin approves it: `moat approval approve {id}` (or deny it)",
        subject_words(subject)
    )
}

/// A JSON object naming what a refusal was about, for `error.data`.
pub fn refusal_data(subject: &Subject<'_>, verdict: &Verdict, direction: Direction) -> Value {
    let mut m = Map::new();
    m.insert("server".into(), json!(subject.server));
    if let Some(t) = subject.tool {
        m.insert("tool".into(), json!(t));
    }
    m.insert("direction".into(), json!(direction_str(direction)));
    m.insert("firewall".into(), verdict.summary());
    Value::Object(m)
}

impl crate::upstreams::UpstreamFilter for Firewall {
    fn list<'a>(
        &'a self,
        server: &'a ServerRecord,
        method: &'static str,
        page: &'a mut Value,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(self.filter_list(server, method, page))
    }

    fn notification<'a>(
        &'a self,
        server: &'a ServerRecord,
        msg: &'a mut moat_mcp::Message,
    ) -> futures::future::BoxFuture<'a, bool> {
        Box::pin(async move {
            let method = msg.method_str().to_owned();
            let Some(params) = msg.params.as_mut() else { return true };
            let subject = Subject {
                tenant: &server.tenant_id,
                principal: None,
                server: &server.name,
                tool: None,
                method: &method,
                request_id: None,
                source_addr: None,
            };
            self.inspect_notification(&subject, params).await.enforced() < Action::Approve
        })
    }
}

/// About how many bytes `v` takes as JSON: string and key lengths plus
/// punctuation, without serialising it (linear, no allocation).
fn payload_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| payload_size(x) + 1).sum::<usize>(),
        Value::Object(o) => 2 + o.iter().map(|(k, x)| k.len() + 4 + payload_size(x)).sum::<usize>(),
    }
}

/// Members of a notification's params that carry protocol state, not
/// content: never scanned, so never redacted (a `progressToken` would match
/// a "token" assignment rule, and the client could no longer correlate it).
const PROTOCOL_KEYS: &[&str] = &["progressToken", "requestId", "progress", "total", "_meta"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_stripped_and_descriptions_capped() {
        let mut v = json!({
            "name": "search",
            "description": "Find\u{200b} files\u{e0041}\u{e0042}\u{202e} fast",
            "inputSchema": {"properties": {"q\u{200b}": {"type": "string", "description": "x".repeat(100)}}},
        });
        sanitise_texts(&mut v, 16);
        assert_eq!(v["description"], "Find files fast");
        let q = &v["inputSchema"]["properties"]["q\u{200b}"];
        assert!(q["description"].as_str().unwrap().len() <= 16, "{q}");
        assert!(q["description"].as_str().unwrap().ends_with('…'));
        assert!(has_invisible("a\u{7}b") && !has_invisible("naïve café 日本 👩‍👩‍👧"[..5].trim()));
    }

    #[test]
    fn reasons_name_categories_and_rules_once() {
        let f = |c, r: &str, a| FindingMeta {
            category: c,
            rule: r.into(),
            confidence: moat_firewall::Confidence::High,
            action: a,
        };
        let v = Verdict {
            decided: Action::Block,
            mode: Mode::Enforce,
            findings: vec![
                f(Category::Destructive, "rm-rf", Action::Block),
                f(Category::Destructive, "rm-rf", Action::Block),
                f(Category::Pii, "email", Action::Log),
            ],
        };
        assert_eq!(v.reasons(Action::Block), "destructive command (rm-rf)");
        assert_eq!(v.enforced(), Action::Block);
        let shadow = Verdict { mode: Mode::Shadow, ..v };
        assert_eq!(shadow.enforced(), Action::Allow);
    }

    #[test]
    fn fingerprints_ignore_key_order_and_era_details() {
        let a = json!({ "name": "t", "description": "d", "inputSchema": { "type": "object", "properties": {} } });
        let b = json!({ "inputSchema": { "properties": {}, "type": "object" }, "_meta": { "x": 1 }, "description": "d", "name": "t" });
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = json!({ "name": "t", "description": "d!", "inputSchema": { "type": "object", "properties": {} } });
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    /// Unlike the pin fingerprint, the key of a remembered clean scan covers
    /// every member (`_meta` too: the scan reads it), the tenant and the
    /// engine.
    #[test]
    fn clean_scan_keys_cover_the_whole_item_the_tenant_and_the_engine() {
        let rules = |engine_key: &str| TenantRules {
            overrides: Vec::new(),
            patterns: Vec::new(),
            engine: None,
            engine_key: engine_key.to_owned(),
            loaded: Instant::now(),
            scopes: Mutex::default(),
        };
        let (t1, t2) = (TenantId::from_string("t1"), TenantId::from_string("t2"));
        let standard = rules(STANDARD_ENGINE);
        let item = json!({ "name": "t", "description": "d", "_meta": { "x": 1 } });
        let key = |t: &TenantId, r: &TenantRules, v: &Value| Firewall::clean_key(t, r, v).unwrap();
        assert_eq!(key(&t1, &standard, &item), key(&t1, &standard, &item.clone()));
        for changed in [
            json!({ "name": "t", "description": "d ", "_meta": { "x": 1 } }),
            json!({ "name": "t", "description": "d", "_meta": { "x": 2 } }),
            json!({ "name": "t", "description": "d" }),
        ] {
            assert_ne!(key(&t1, &standard, &item), key(&t1, &standard, &changed), "{changed}");
        }
        assert_ne!(key(&t1, &standard, &item), key(&t2, &standard, &item));
        assert_ne!(key(&t1, &standard, &item), key(&t1, &rules("0123abcd"), &item));
    }

    #[test]
    fn patterns_are_validated() {
        assert!(validate_pattern("employee-id", "pii", r"\bEMP-[0-9]{6}\b").is_ok());
        assert!(validate_pattern("bad", "pii", "(unclosed").is_err());
        assert!(validate_pattern("x", "spam", "a").unwrap_err().contains("not one of"));
    }
}
