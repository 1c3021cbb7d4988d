//! Authentication for moat.
//!
//! This part: API keys — generation, format checks, Argon2id
//! hashing, and the verification cache that keeps Argon2id off the hot path
//! (see [`keys`] for the design). The OAuth 2.1 authorization server and
//! identity-provider login arrive in a later issue.
//!
//! This crate owns credentials of callers; it does no I/O and knows nothing
//! of MCP or storage schemas.
#![forbid(unsafe_code)]

pub mod keys;

pub use keys::{
    CachedKey, GeneratedKey, KeyCache, KeyError, KeyFormatError, ParsedKey, generate_key, hash_token, parse_key,
    random_bytes, reveal, verify_token,
};
