//! Keys and cryptography for moat's credential vault.
//!
//! What this crate owns:
//!
//! - **Envelope encryption** ([`seal`], [`open`]): credential records are AES-256-GCM encrypted under
//!   a per-scope key derived with HKDF from the tenant's data-encryption key ([`Dek`]), with an AAD
//!   binding each ciphertext to its row ([`RecordContext`]: tenant, scope tier, scope id, credential
//!   id, key version).
//! - **Key providers** ([`KeyProvider`], used as `Arc<dyn KeyProvider>`): the key-encryption key
//!   (KEK) that wraps DEKs lives in a local file ([`LocalProvider`], with [`LocalKek`] for the file
//!   itself), in AWS KMS (`AwsKmsProvider`, cargo feature `aws-kms`, on by default) or in Vault /
//!   OpenBao Transit ([`VaultTransitProvider`]).
//! - **KEK rotation support**: resumable `begin_kek_rotation` → `rewrap_dek` for each DEK →
//!   `finish_kek_rotation`, crash-safe for the local provider.
//! - **Redaction of exact values** ([`Redactor`]): known secrets and their encodings scrubbed out of
//!   text and JSON.
//! - **The decrypted-credential cache** ([`SecretCache`]): short TTL, bounded, invalidated on change.
//!
//! What it does not own: the storage schema (which rows hold wrapped DEKs and sealed records, and
//! the rotation job that walks them) belongs to `moat-store` and the gateway.
//!
//! `aws-lc-rs` is the one cryptographic backend (also for TLS to the providers). Secrets are held in
//! `secrecy`/`zeroize` types, never `Debug`-printed, never in error messages ([`VaultError`]).
//!
//! ```
//! use moat_vault::{Dek, RecordContext, open, seal};
//! use secrecy::ExposeSecret;
//!
//! let dek = Dek::generate()?;
//! let ctx = RecordContext { tenant_id: "t1", tier: "team", scope_id: "s1", credential_id: "c1", key_version: 1 };
//! let sealed = seal(&dek, &ctx, b"ghp_example")?;
//! assert_eq!(open(&dek, &ctx, &sealed)?.expose_secret(), "ghp_example");
//! let other_row = RecordContext { credential_id: "c2", ..ctx };
//! assert!(open(&dek, &other_row, &sealed).is_err());
//! # Ok::<(), moat_vault::VaultError>(())
//! ```
#![forbid(unsafe_code)]

pub mod cache;
pub mod crypto;
mod error;
pub mod local;
pub mod provider;
pub mod redact;

pub use cache::SecretCache;
pub use crypto::{Dek, RecordContext, fingerprint, mac_tag, mac_verify, open, open_bytes, seal};
pub use error::VaultError;
pub use local::{KEK_FILE, KekError, LocalKek};
#[cfg(feature = "aws-kms")]
pub use provider::{AwsKmsConfig, AwsKmsProvider};
pub use provider::{KeyContext, KeyProvider, LocalProvider, VaultTransitConfig, VaultTransitProvider};
pub use redact::Redactor;
