//! Envelope encryption of credential records.
//!
//! A tenant's data-encryption key ([`Dek`]) never encrypts a record directly. Each record is sealed
//! under a *scope key* derived from the DEK with HKDF-SHA256 (salt [`SCOPE_KEY_SALT`], info = the
//! length-prefixed tenant id, scope tier and scope id), with AES-256-GCM, a random 96-bit nonce and
//! an AAD that binds the ciphertext to its row: tenant, tier, scope, credential id and key version.
//! A ciphertext copied to another row, tenant, scope or key version does not open.
//!
//! Sealed format: `0x01` ‖ 12-byte nonce ‖ ciphertext ‖ 16-byte tag.
//!
//! Every length-prefixed encoding here writes each field as its byte length (u64, big-endian)
//! followed by its bytes, so that no two different field lists encode to the same bytes.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::Zeroizing;

use crate::VaultError;

/// Length of a DEK in bytes (AES-256).
pub const DEK_LEN: usize = 32;
/// The version byte that starts every sealed record.
pub const RECORD_VERSION: u8 = 0x01;
/// HKDF salt of the scope-key derivation (a fixed domain-separation string).
pub const SCOPE_KEY_SALT: &[u8] = b"moat/v1/scope-key";
/// Domain string that opens every record's AAD.
const RECORD_AAD_DOMAIN: &str = "moat-credential-v1";
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// A tenant data-encryption key: 32 random bytes in a zeroizing box.
///
/// Not `Clone`: share it with an `Arc`. Its `Debug` is redacted.
pub struct Dek {
    key: SecretBox<[u8; DEK_LEN]>,
}

impl std::fmt::Debug for Dek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dek([REDACTED])")
    }
}

impl Dek {
    /// A fresh random DEK from the system RNG.
    pub fn generate() -> Result<Dek, VaultError> {
        let mut key = Box::new([0u8; DEK_LEN]);
        aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| VaultError::Random)?;
        Ok(Dek { key: SecretBox::new(key) })
    }

    /// A DEK from exactly 32 bytes (an unwrapped key from a provider). The caller keeps ownership of
    /// `bytes` and should zeroize them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Dek, VaultError> {
        if bytes.len() != DEK_LEN {
            return Err(VaultError::Corrupt(format!(
                "a data-encryption key must be {DEK_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Box::new([0u8; DEK_LEN]);
        key.copy_from_slice(bytes);
        Ok(Dek { key: SecretBox::new(key) })
    }

    /// The key bytes, for the providers and the record cipher of this crate.
    pub(crate) fn expose(&self) -> &[u8; DEK_LEN] {
        self.key.expose_secret()
    }
}

/// Where a record lives: everything its ciphertext is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordContext<'a> {
    /// The owning tenant.
    pub tenant_id: &'a str,
    /// The scope tier ("personal", "team", "org", "service").
    pub tier: &'a str,
    /// The scope's id within its tier.
    pub scope_id: &'a str,
    /// The credential's id (the row).
    pub credential_id: &'a str,
    /// The version of the tenant DEK that sealed the record.
    pub key_version: u32,
}

/// Appends `field` to `out` as its length (u64 BE) followed by its bytes.
pub(crate) fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// The unambiguous encoding of a list of fields.
pub(crate) fn encode_fields(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
    for field in fields {
        push_field(&mut out, field);
    }
    out
}

/// Output length for an HKDF expansion into raw bytes.
struct KeyLen(usize);

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// Derives the scope key's bytes: HKDF-SHA256(salt = [`SCOPE_KEY_SALT`], ikm = DEK, info = lp(tenant)
/// ‖ lp(tier) ‖ lp(scope)).
pub(crate) fn scope_key_bytes(dek: &Dek, ctx: &RecordContext<'_>) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let info = encode_fields(&[ctx.tenant_id.as_bytes(), ctx.tier.as_bytes(), ctx.scope_id.as_bytes()]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SCOPE_KEY_SALT).extract(dek.expose());
    let info_parts = [info.as_slice()];
    let okm = prk
        .expand(&info_parts, KeyLen(32))
        .map_err(|_| VaultError::Corrupt("scope key derivation failed".to_owned()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    okm.fill(out.as_mut()).map_err(|_| VaultError::Corrupt("scope key derivation failed".to_owned()))?;
    Ok(out)
}

fn scope_key(dek: &Dek, ctx: &RecordContext<'_>) -> Result<LessSafeKey, VaultError> {
    let bytes = scope_key_bytes(dek, ctx)?;
    let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref())
        .map_err(|_| VaultError::Corrupt("scope key rejected by the cipher".to_owned()))?;
    Ok(LessSafeKey::new(unbound))
}

/// The AAD of a record: lp("moat-credential-v1") ‖ lp(tenant) ‖ lp(tier) ‖ lp(scope) ‖ lp(credential)
/// ‖ lp(key_version as u32 BE).
fn record_aad(ctx: &RecordContext<'_>) -> Vec<u8> {
    encode_fields(&[
        RECORD_AAD_DOMAIN.as_bytes(),
        ctx.tenant_id.as_bytes(),
        ctx.tier.as_bytes(),
        ctx.scope_id.as_bytes(),
        ctx.credential_id.as_bytes(),
        &ctx.key_version.to_be_bytes(),
    ])
}

/// Encrypts a credential record for the row described by `ctx`.
///
/// Output: `0x01` ‖ 12-byte random nonce ‖ ciphertext ‖ 16-byte tag.
pub fn seal(dek: &Dek, ctx: &RecordContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let key = scope_key(dek, ctx)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| VaultError::Random)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let aad = record_aad(ctx);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| {
            // The buffer still holds plaintext when sealing fails: wipe it before it is freed.
            zeroize::Zeroize::zeroize(&mut out[HEADER_LEN..]);
            VaultError::Corrupt("record encryption failed".to_owned())
        })?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Decrypts a record sealed by [`seal`] for the same `ctx`, returning the plaintext bytes.
///
/// Any mismatch (another context, a flipped bit, a truncated record, an unknown version byte) is
/// [`VaultError::Decrypt`].
pub fn open_bytes(dek: &Dek, ctx: &RecordContext<'_>, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != RECORD_VERSION {
        return Err(VaultError::Decrypt);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[1..HEADER_LEN]);
    let key = scope_key(dek, ctx)?;
    let aad = record_aad(ctx);
    let mut buf = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_slice()), buf.as_mut_slice())
        .map_err(|_| VaultError::Decrypt)?
        .len();
    // Copy into an exactly-sized buffer so that no spare capacity holds plaintext or is reallocated.
    let mut plain = Zeroizing::new(Vec::with_capacity(len));
    plain.extend_from_slice(&buf[..len]);
    Ok(plain)
}

/// Decrypts a record sealed by [`seal`] for the same `ctx`. Credential values are text: a plaintext
/// that is not UTF-8 is [`VaultError::Corrupt`].
///
/// Any mismatch (another context, a flipped bit, a truncated record, an unknown version byte) is
/// [`VaultError::Decrypt`].
pub fn open(dek: &Dek, ctx: &RecordContext<'_>, sealed: &[u8]) -> Result<SecretString, VaultError> {
    let mut plain = open_bytes(dek, ctx, sealed)?;
    // `plain` has capacity == len, so the boxed str reuses the allocation (no stray copy).
    match String::from_utf8(std::mem::take(&mut *plain)) {
        Ok(s) => Ok(SecretString::from(s)),
        Err(e) => {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            Err(VaultError::Corrupt("a decrypted credential is not valid UTF-8".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests;

/// HKDF salt of the MAC keys derived from a DEK (domain-separated from scope keys).
const MAC_KEY_SALT: &[u8] = b"moat/v1/mac-key";

fn mac_key(dek: &Dek, tenant_id: &str, purpose: &str) -> Result<aws_lc_rs::hmac::Key, VaultError> {
    let info = encode_fields(&[tenant_id.as_bytes(), purpose.as_bytes()]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, MAC_KEY_SALT).extract(dek.expose());
    let info_parts = [info.as_slice()];
    let okm = prk
        .expand(&info_parts, aws_lc_rs::hmac::HMAC_SHA256)
        .map_err(|_| VaultError::Corrupt("MAC key derivation failed".to_owned()))?;
    Ok(aws_lc_rs::hmac::Key::from(okm))
}

/// An HMAC-SHA256 tag (base64url, no padding) over `data`, keyed by HKDF
/// of the tenant's DEK for `purpose` (e.g. signed browser-session cookies).
pub fn mac_tag(dek: &Dek, tenant_id: &str, purpose: &str, data: &[u8]) -> Result<String, VaultError> {
    use base64::Engine as _;
    let tag = aws_lc_rs::hmac::sign(&mac_key(dek, tenant_id, purpose)?, data);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks a [`mac_tag`] in constant time.
pub fn mac_verify(dek: &Dek, tenant_id: &str, purpose: &str, data: &[u8], tag: &str) -> bool {
    use base64::Engine as _;
    let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag) else { return false };
    mac_key(dek, tenant_id, purpose).is_ok_and(|k| aws_lc_rs::hmac::verify(&k, data, &raw).is_ok())
}

/// SHA-256 of `bytes` as lowercase hex: a fingerprint for change detection
/// (tool descriptions), not a secret-dependent value.
pub fn fingerprint(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
