//! Integration tests of moat-vault: the key providers against real or recorded peers.
//!
//! - `aws_kms`: the AWS KMS provider against a real moto server (`MOAT_TEST_PYTHON`);
//! - `vault_transit`: the Vault Transit provider against a recorded exchange;
//! - `openbao`: the Vault Transit provider against a real OpenBao dev server (`MOAT_TEST_VAULT_BIN`);
//! - `providers`: the providers behind `Arc<dyn KeyProvider>` with envelope encryption.

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "aws-kms")]
mod aws_kms;
mod openbao;
mod providers;
mod support;
mod vault_transit;
