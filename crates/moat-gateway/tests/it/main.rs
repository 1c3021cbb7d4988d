//! Handler tests of the gateway without a socket: the router built as
//! `moat serve` builds it, driven with `tower::ServiceExt::oneshot`, and
//! upstreams played by a scripted stdio server (`tests/fixtures/fake_mcp.py`,
//! Python stdlib only, run with `python3`).

// Test helpers outside `#[test]` functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregate;
mod audit;
mod legacy;
mod lists;
mod modern;
mod oauth;
mod support;
mod surface;
