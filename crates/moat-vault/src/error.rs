//! The crate's error type.
//!
//! Messages name the provider and the operation and say what went wrong in words; they never carry
//! key material, plaintext, tokens or a provider's response body.

use crate::local::KekError;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key provider did not answer (network, timeout, 5xx, sealed). Retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The key provider answered and refused (authentication, permission, missing or disabled key).
    #[error("{0}")]
    Denied(String),
    /// A record or wrapped DEK failed authentication: wrong key, wrong context, or tampered bytes.
    #[error("the record could not be decrypted")]
    Decrypt,
    /// Stored or returned data is malformed (wrong length, not UTF-8, unexpected provider answer).
    #[error("{0}")]
    Corrupt(String),
    /// The provider's configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Random,
    /// The local key-encryption key file could not be created, loaded or checked.
    #[error(transparent)]
    Kek(#[from] KekError),
}
