//! Key providers: where the key-encryption key (KEK) lives and how tenant DEKs are wrapped.
//!
//! One trait, [`KeyProvider`], used as `Arc<dyn KeyProvider>` (as rustls uses its `CryptoProvider`):
//!
//! - [`LocalProvider`] ("local"): a 32-byte KEK file in the data dir, AES-256-GCM wrapping;
//! - `AwsKmsProvider` ("aws-kms", cargo feature `aws-kms`): AWS KMS data keys;
//! - [`VaultTransitProvider`] ("vault-transit"): HashiCorp Vault / OpenBao Transit data keys.
//!
//! Every wrapped DEK is bound to its [`KeyContext`] (tenant and DEK version): a wrapped DEK copied to
//! another tenant or version does not unwrap (for Vault Transit, only when the transit key was
//! created with `derived=true`; see [`VaultTransitProvider`]).
//!
//! KEK rotation is provider-driven and resumable: [`KeyProvider::begin_kek_rotation`], then
//! [`KeyProvider::rewrap_dek`] for every stored DEK, then [`KeyProvider::finish_kek_rotation`].

#[cfg(feature = "aws-kms")]
mod aws_kms;
mod local;
mod vault_transit;

#[cfg(feature = "aws-kms")]
pub use aws_kms::{AwsKmsConfig, AwsKmsProvider};
pub use local::{KEK_NEXT_FILE, LocalProvider};
pub use vault_transit::{VaultTransitConfig, VaultTransitProvider};

use crate::{Dek, VaultError};

/// What a wrapped DEK is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyContext<'a> {
    /// The tenant owning the DEK.
    pub tenant_id: &'a str,
    /// The DEK's version within the tenant.
    pub version: u32,
}

/// A key provider: holds the KEK and wraps, unwraps and re-wraps tenant DEKs under it.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// The provider's name: "local" | "aws-kms" | "vault-transit".
    fn name(&self) -> &'static str;

    /// A fresh DEK and its wrapped form (wrapped under the current KEK, bound to `ctx`).
    async fn generate_dek(&self, ctx: &KeyContext<'_>) -> Result<(Dek, Vec<u8>), VaultError>;

    /// Unwraps a stored DEK (whichever KEK version wrapped it).
    async fn unwrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Dek, VaultError>;

    /// Re-wraps a stored DEK under the current KEK (KEK rotation).
    async fn rewrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Vec<u8>, VaultError>;

    /// Readiness: `Ok` when the provider can serve now; `Err` says why.
    async fn check(&self) -> Result<(), VaultError>;

    /// Starts a KEK rotation: after this, new wraps and rewraps use the new KEK. Idempotent and
    /// resumable (calling it while a rotation is pending keeps the pending key).
    async fn begin_kek_rotation(&self) -> Result<(), VaultError>;

    /// Ends a KEK rotation once every stored DEK has been re-wrapped: old KEK material is retired.
    async fn finish_kek_rotation(&self) -> Result<(), VaultError>;
}

/// The AAD / context bytes a wrapped DEK is bound to: lp("moat-dek-v1") ‖ lp(tenant) ‖ lp(version BE).
pub(crate) fn dek_binding(ctx: &KeyContext<'_>) -> Vec<u8> {
    crate::crypto::encode_fields(&[b"moat-dek-v1", ctx.tenant_id.as_bytes(), &ctx.version.to_be_bytes()])
}

/// A provider error's text, cut to a readable length on a char boundary.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
