//! MCP plumbing for moat: JSON-RPC messages, the protocol revisions moat
//! speaks, Server-Sent Events framing, and the upstream clients
//! (Streamable HTTP in both eras, legacy HTTP+SSE, stdio).
//!
//! This crate owns wire formats and transports. It makes no policy decision:
//! who may call what is decided in `moat-gateway`.
#![forbid(unsafe_code)]

pub mod client;
pub mod jsonrpc;
pub mod protocol;
pub mod sse;

pub use jsonrpc::{ErrorObject, Id, Kind, Message};
