//! Integration tests that drive the real `moat` binary: each test starts its
//! own gateway on a free loopback port with a temporary data dir, and stops
//! it (and its upstreams) when done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod auth;
mod bad_input;
mod cli;
mod firewall;
mod harness;
mod mcp_legacy;
mod mcp_modern;
mod ops;
mod scan;
mod upstreams;
mod vault;
