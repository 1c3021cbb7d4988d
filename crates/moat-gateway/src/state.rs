//! Shared state of a running gateway.

use crate::audit::AuditSink;
use crate::authn::Authenticator;
use crate::config::GatewayConfig;
use crate::guard::OriginGuard;
use crate::mcp::session::SessionStore;
use crate::upstreams::UpstreamPool;
use moat_store::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything a request handler may need. Shared behind an `Arc`.
pub struct AppState {
    /// Validated configuration.
    pub cfg: GatewayConfig,
    /// Storage.
    pub store: Store,
    /// Authentication stage.
    pub auth: Authenticator,
    /// Upstream connections.
    pub pool: UpstreamPool,
    /// Legacy (2025-11-25 and HTTP+SSE) sessions.
    pub sessions: SessionStore,
    /// Upstream calls parked while a modern client answers input requests.
    pub parking: crate::mcp::mrtr::Parking,
    /// Audit sink.
    pub audit: AuditSink,
    /// Host/Origin allowlists.
    pub guard: OriginGuard,
    /// The credential vault (key provider, resolution, rotation).
    pub vault: crate::credentials::Vault,
    /// The firewall: scanning, policy, approvals, description pins.
    pub firewall: Arc<crate::firewall::Firewall>,
    /// The authorization server, signing keys and token verification.
    pub identity: Arc<crate::identity::Identity>,
    /// Cancelled on shutdown: long-lived streams end, new work is refused.
    pub shutdown: CancellationToken,
}

/// The handle handlers receive.
pub type App = Arc<AppState>;
