//! Key management for moat.
//!
//! This part: the `local` key provider's key-encryption key (KEK),
//! a 256-bit random key in a 0600 file in the data dir, created on first
//! start and refused when its permissions are wider. Envelope encryption,
//! the AWS KMS and Vault Transit providers, and rotation arrive with the
//! credential vault issue.
//!
//! This crate owns keys and cryptography; it knows nothing of the storage
//! schema.
#![forbid(unsafe_code)]

pub mod local;

pub use local::{KekError, LocalKek};
