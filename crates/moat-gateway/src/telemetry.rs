//! Prometheus metrics: requests and latency by route, method and server,
//! upstream errors by server.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Records one MCP call.
pub fn mcp_call(server: &str, method: &str, outcome: &'static str, seconds: f64) {
    let labels = [("server", server.to_owned()), ("method", method.to_owned()), ("outcome", outcome.to_owned())];
    metrics::counter!("moat_mcp_requests_total", &labels).increment(1);
    metrics::histogram!("moat_mcp_request_duration_seconds", &labels[..2]).record(seconds);
}

/// Records an upstream failure.
pub fn upstream_error(server: &str, method: &str, kind: &'static str) {
    metrics::counter!(
        "moat_upstream_errors_total",
        "server" => server.to_owned(),
        "method" => method.to_owned(),
        "kind" => kind
    )
    .increment(1);
}

/// Records one HTTP request.
pub fn http_request(route: &'static str, method: &str, status: u16, seconds: f64) {
    let labels = [("route", route.to_owned()), ("method", method.to_owned()), ("status", status.to_string())];
    metrics::counter!("moat_http_requests_total", &labels).increment(1);
    metrics::histogram!("moat_http_request_duration_seconds", &labels[..2]).record(seconds);
}

/// Records one firewall finding and the action decided for it.
pub fn firewall_finding(category: &'static str, action: &'static str, direction: &'static str, mode: &'static str) {
    metrics::counter!(
        "moat_firewall_findings_total",
        "category" => category,
        "action" => action,
        "direction" => direction,
        "mode" => mode
    )
    .increment(1);
}
