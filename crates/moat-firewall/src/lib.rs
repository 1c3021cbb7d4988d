//! The MCP firewall: stateless scanners run over every string of a JSON
//! value (tool arguments, results, errors, descriptions), and the findings
//! they report. Pure: no I/O, no clock, no global state; the gateway turns
//! findings into actions (block, redact, require approval, log).
#![forbid(unsafe_code)]

pub mod finding;
pub mod scanners;

pub use finding::{Category, Confidence, Direction, Finding, Scanner};
