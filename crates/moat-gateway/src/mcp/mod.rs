//! The downstream MCP surface: Streamable HTTP at `/mcp` and
//! `/mcp/<server>` (both protocol eras, chosen per request), the legacy
//! HTTP+SSE transport at `/sse` + `/messages`, and the dispatch they share.
//! `README.md` beside this file records each spec decision.

pub mod dispatch;
pub mod http;
pub mod legacy_sse;
pub mod lists;
pub mod mrtr;
pub mod names;
pub mod notify;
pub mod params;
pub mod session;
pub mod wire;
