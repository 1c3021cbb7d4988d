//! Reproducible load for moat (issue 6).
//!
//! Two binaries:
//! - `bench-upstream` ([`upstream`]): a minimal, fast MCP server over
//!   Streamable HTTP, so that the gateway, not the upstream, is what a load
//!   test measures.
//! - `moat-bench`: `load` drives `tools/call` against one or more MCP
//!   endpoints in the same run ([`load`]), closed-loop or open-loop at a fixed
//!   rate, and reports throughput, latency percentiles (HdrHistogram), the
//!   overhead of each target over a baseline, and CPU per call of watched
//!   processes ([`report`]); `run` ([`orchestrate`]) starts `bench-upstream`
//!   and a throw-away `moat` itself, registers the upstream, and measures it
//!   directly and through moat (plain, firewall off, and everything on);
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
pub mod report;
pub mod sessions;
pub mod upstream;
