//! The "aws-kms" key provider: tenant DEKs are AWS KMS data keys (cargo feature `aws-kms`).
//!
//! - generate: `GenerateDataKey` (AES_256) under the configured key;
//! - unwrap: `Decrypt` with `KeyId` pinned to the configured key (AWS's recommended practice);
//! - rewrap: `ReEncrypt` to the configured key (the plaintext never leaves KMS), which also moves
//!   DEKs from a previously configured key to a new one. Because unwrap is pinned, after changing
//!   `key_id` run a KEK rotation (which re-wraps every DEK) before serving: DEKs still wrapped under
//!   the old key are refused until then;
//! - check: `DescribeKey`, the key must be `Enabled`.
//!
//! Every call carries the encryption context `{"moat:tenant": tenant, "moat:dek-version": version}`,
//! which KMS binds to the ciphertext (and records in CloudTrail). Rotation of the key material is
//! AWS's (automatic key rotation), so `begin_kek_rotation`/`finish_kek_rotation` are no-ops.
//!
//! Credentials come from the standard AWS chain (environment, profile, web identity, ECS, IMDS);
//! SSO profiles are not compiled in. The principal needs `kms:GenerateDataKey`, `kms:Decrypt`,
//! `kms:ReEncryptFrom`/`kms:ReEncryptTo` and `kms:DescribeKey` on the key. Timeouts are short
//! (connect 3 s, attempt 5 s, operation 10 s, 3 attempts) so that a dead endpoint fails within
//! seconds instead of stalling requests.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use zeroize::Zeroize;

use super::{KeyContext, KeyProvider, clip};
use crate::{Dek, VaultError};

const NAME: &str = "aws-kms";
const CTX_TENANT: &str = "moat:tenant";
const CTX_VERSION: &str = "moat:dek-version";

/// Configuration of the AWS KMS provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKmsConfig {
    /// The KMS key that wraps DEKs: key id, key ARN, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    /// The AWS region; `None` takes it from the standard chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// A custom endpoint (a VPC endpoint, LocalStack, moto); `None` uses the regional endpoint.
    pub endpoint_url: Option<String>,
}

/// The AWS KMS key provider.
#[derive(Debug, Clone)]
pub struct AwsKmsProvider {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl AwsKmsProvider {
    /// Builds the provider with credentials and settings from the standard AWS chain, overridden by
    /// `config`. No request is made: call [`KeyProvider::check`] for readiness.
    pub async fn new(config: AwsKmsConfig) -> Result<Self, VaultError> {
        Self::from_loader(config, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// Builds the provider from a prepared AWS config loader (for explicit credentials or a custom
    /// HTTP client); `config`, the timeouts and the retry policy are applied on top of it.
    pub async fn from_loader(config: AwsKmsConfig, loader: ConfigLoader) -> Result<Self, VaultError> {
        if config.key_id.trim().is_empty() {
            return Err(VaultError::Config("aws-kms: key_id is empty".to_owned()));
        }
        let mut loader = loader
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .read_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(1)),
            );
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(VaultError::Config(
                "aws-kms: no AWS region: set the provider's region or AWS_REGION".to_owned(),
            ));
        }
        Ok(Self { client: aws_sdk_kms::Client::new(&sdk), key_id: config.key_id })
    }

    /// The configured KMS key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Maps an SDK error to a [`VaultError`]; `op` names the KMS operation. KMS error messages name keys
/// and principals, never key material.
fn map_err<E>(op: &str, err: SdkError<E>) -> VaultError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => VaultError::Unavailable(format!("{NAME} did not answer {op} in time")),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            VaultError::Unavailable(format!("{NAME} did not answer {op}: {}", clip(&chain(&err), 300)))
        }
        SdkError::ConstructionFailure(_) => {
            VaultError::Config(format!("{NAME}: could not build the {op} request: {}", clip(&chain(&err), 300)))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let e = service.err();
            let code = e.code().unwrap_or("unknown error");
            let message = e.message().map(|m| format!(": {}", clip(m, 300))).unwrap_or_default();
            match code {
                "InvalidCiphertextException" | "IncorrectKeyException" => VaultError::Decrypt,
                "DependencyTimeoutException"
                | "KMSInternalException"
                | "KeyUnavailableException"
                | "ThrottlingException"
                | "LimitExceededException" => {
                    VaultError::Unavailable(format!("{NAME} could not serve {op} now ({code}){message}"))
                }
                _ if status >= 500 || status == 429 => {
                    VaultError::Unavailable(format!("{NAME} answered {status} to {op} ({code}){message}"))
                }
                _ => VaultError::Denied(format!("{NAME} refused {op} ({code}){message}")),
            }
        }
        _ => VaultError::Unavailable(format!("{NAME} failed {op}: {}", clip(&chain(&err), 300))),
    }
}

/// The error and its sources on one line (e.g. "dispatch failure: … Connection refused (os error 111)").
fn chain<E>(err: &SdkError<E>) -> String
where
    E: std::error::Error + 'static,
{
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Takes a plaintext data key out of a KMS answer into a [`Dek`], wiping the SDK's copy.
fn take_dek(blob: Option<Blob>, op: &str) -> Result<Dek, VaultError> {
    let mut bytes = blob
        .ok_or_else(|| VaultError::Corrupt(format!("{NAME}: the {op} answer carries no plaintext key")))?
        .into_inner();
    let dek = Dek::from_bytes(&bytes);
    bytes.zeroize();
    dek
}

#[async_trait::async_trait]
impl KeyProvider for AwsKmsProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn generate_dek(&self, ctx: &KeyContext<'_>) -> Result<(Dek, Vec<u8>), VaultError> {
        let mut out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CTX_TENANT, ctx.tenant_id)
            .encryption_context(CTX_VERSION, ctx.version.to_string())
            .send()
            .await
            .map_err(|e| map_err("GenerateDataKey", e))?;
        let dek = take_dek(out.plaintext.take(), "GenerateDataKey")?;
        let wrapped = out
            .ciphertext_blob
            .take()
            .ok_or_else(|| VaultError::Corrupt(format!("{NAME}: the GenerateDataKey answer carries no ciphertext")))?
            .into_inner();
        Ok((dek, wrapped))
    }

    async fn unwrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Dek, VaultError> {
        let mut out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(CTX_TENANT, ctx.tenant_id)
            .encryption_context(CTX_VERSION, ctx.version.to_string())
            .send()
            .await
            .map_err(|e| map_err("Decrypt", e))?;
        take_dek(out.plaintext.take(), "Decrypt")
    }

    async fn rewrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        let version = ctx.version.to_string();
        let mut out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped))
            .source_encryption_context(CTX_TENANT, ctx.tenant_id)
            .source_encryption_context(CTX_VERSION, version.clone())
            .destination_key_id(&self.key_id)
            .destination_encryption_context(CTX_TENANT, ctx.tenant_id)
            .destination_encryption_context(CTX_VERSION, version)
            .send()
            .await
            .map_err(|e| map_err("ReEncrypt", e))?;
        Ok(out
            .ciphertext_blob
            .take()
            .ok_or_else(|| VaultError::Corrupt(format!("{NAME}: the ReEncrypt answer carries no ciphertext")))?
            .into_inner())
    }

    async fn check(&self) -> Result<(), VaultError> {
        let out =
            self.client.describe_key().key_id(&self.key_id).send().await.map_err(|e| map_err("DescribeKey", e))?;
        let meta = out
            .key_metadata()
            .ok_or_else(|| VaultError::Corrupt(format!("{NAME}: the DescribeKey answer carries no key metadata")))?;
        match meta.key_state() {
            Some(KeyState::Enabled) => Ok(()),
            Some(state) => Err(VaultError::Denied(format!(
                "{NAME}: key {} is not enabled (state {})",
                self.key_id,
                state.as_str()
            ))),
            None if meta.enabled() => Ok(()),
            None => Err(VaultError::Denied(format!("{NAME}: key {} is not enabled", self.key_id))),
        }
    }

    async fn begin_kek_rotation(&self) -> Result<(), VaultError> {
        // Re-wrapping under the configured key is the rotation; AWS rotates the key material itself.
        Ok(())
    }

    async fn finish_kek_rotation(&self) -> Result<(), VaultError> {
        Ok(())
    }
}
