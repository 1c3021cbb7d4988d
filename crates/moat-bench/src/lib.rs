//! Reproducible load for moat (issue 6).
//!
//! Two binaries:
//! - `bench-upstream` ([`upstream`]): a minimal, fast MCP server over
//!   Streamable HTTP, so that the gateway, not the upstream, is what a load
//!   test measures.
//! - `bench-proxy` ([`proxy`]): a bare pass-through HTTP proxy made of
//!   moat's parts, the floor under moat's CPU per call.
//! - `moat-bench`: `load` drives `tools/call` against one or more MCP
//!   endpoints in the same run ([`load`]), closed-loop or open-loop at a fixed
//!   rate, and reports throughput, latency percentiles (HdrHistogram), the
//!   overhead of each target over a baseline, and CPU per call of watched
//!   processes ([`report`]); `run` ([`orchestrate`]) starts `bench-upstream`
//!   and a throw-away `moat` itself, registers the upstream, and measures it
//!   directly, through the bare proxy, and through moat (plain, firewall
//!   off, and everything on);
//!   `sessions` ([`sessions`]) measures moat's memory at rest and holding
//!   many idle legacy sessions.
//!
//! This crate treats moat as a black box: it depends on no other moat crate
//! and talks to the gateway only over HTTP and its CLI, as a user would.
#![forbid(unsafe_code)]

pub mod client;
pub mod load;
pub mod orchestrate;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod sessions;
pub mod upstream;

/// Resolves on SIGTERM or Ctrl-C: the graceful shutdown of the helper
/// servers (`bench-upstream`, `bench-proxy`), and `moat-bench` giving up.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
