//! Integration tests of moat-mcp's upstream clients against real peers
//! (server-everything over stdio, the Python SDK over Streamable HTTP and
//! SSE) and in-test fakes for the failure paths. Peers are found through
//! `MOAT_TEST_EVERYTHING` and `MOAT_TEST_PYTHON`; a test whose peer is not
//! configured prints "skipped: …" and passes.

// Test helpers outside `#[test]` functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;
mod http;
mod sse;
mod stdio;
mod support;
