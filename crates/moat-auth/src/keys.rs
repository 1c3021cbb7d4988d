//! API keys: `moat_<public id>_<secret><checksum>`.
//!
//! * `moat_` prefix, so secret scanners and people recognise the key.
//! * a 12-character base62 **public id**, random, unique, used to find the
//!   key's row without scanning hashes;
//! * a 43-character base62 **secret**: 43 × log2(62) ≈ 256.03 bits of
//!   randomness from aws-lc-rs' system RNG;
//! * a 6-character base62 **CRC-32 checksum** of everything before it, so
//!   a typo or a random string that merely looks like a key is refused
//!   without a database trip (and scanners can validate candidates offline).
//!
//! Only an Argon2id PHC hash of the whole key is stored; verification uses
//! the argon2 crate's constant-time comparison.
//!
//! ## The verification cache
//!
//! Argon2id is deliberately slow (~20 ms), so verifying it on every request
//! would cap throughput and hand an attacker a cheap CPU-exhaustion lever.
//! [`KeyCache`] remembers successful verifications:
//!
//! * **keyed by HMAC-SHA256(process-random key, presented key)**: the cache
//!   never holds the key itself, a memory dump yields nothing replayable, and
//!   the process-random HMAC key means entries cannot be precomputed. Only a
//!   byte-identical key hits; a different secret with the same public id
//!   misses and pays Argon2id.
//! * **bounded** (default 10 000 entries, LRU-ish eviction by moka) and
//!   **short-lived** (default 60 s time-to-live, and never past the key's
//!   own expiry);
//! * **dropped on revoke and regenerate**: the admin path calls
//!   [`KeyCache::invalidate_key`], which removes every entry of that key id
//!   before the API call returns, so the very next request re-reads storage.
//! * failures are never cached (a later issue rate-limits them).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

const PREFIX: &str = "moat_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 43;
const CHECK_LEN: usize = 6;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECK_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not a well-formed moat key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// Wrong prefix or length, or characters outside base62.
    #[error("not a moat API key")]
    Malformed,
    /// Well-formed but the checksum does not match (a typo, or a forgery).
    #[error("API key checksum mismatch")]
    Checksum,
}

/// Key generation or hashing failed (RNG or Argon2 failure; never expected).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Random,
    /// Argon2 refused its parameters or input.
    #[error("password hashing failure")]
    Hash,
}

/// A freshly generated key: the secret token (shown once), its public id
/// and the hash to store.
pub struct GeneratedKey {
    /// The full key, to show once and never store.
    pub token: SecretString,
    /// The public id embedded in the key (lookup column).
    pub public_id: String,
    /// Argon2id PHC string of the full key.
    pub secret_hash: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey").field("public_id", &self.public_id).finish_non_exhaustive()
    }
}

/// A presented key that passed the offline format and checksum checks.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    /// The public id to look the key up by.
    pub public_id: &'a str,
    token: &'a str,
}

impl ParsedKey<'_> {
    /// The full presented key (for hashing and verification).
    pub fn token(&self) -> &str {
        self.token
    }
}

pub(crate) fn random_base62(n: usize) -> Result<String, KeyError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| KeyError::Random)?;
        // Rejection sampling: 248 = 4 × 62 keeps the distribution uniform.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == n {
                break;
            }
            out.push(char::from(BASE62[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

fn checksum(body: &str) -> String {
    let mut v = u64::from(crc32fast::hash(body.as_bytes()));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[usize::try_from(v % 62).unwrap_or(0)];
        v /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn argon2() -> Argon2<'static> {
    // OWASP's recommended Argon2id parameters: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a token with Argon2id and a random salt.
pub fn hash_token(token: &str) -> Result<String, KeyError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeyError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| KeyError::Hash)?;
    argon2().hash_password(token.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| KeyError::Hash)
}

/// Verifies a token against a stored PHC hash (constant-time comparison).
/// An unparsable stored hash verifies nothing.
pub fn verify_token(token: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(token.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Generates a new key and its hash.
pub fn generate_key() -> Result<GeneratedKey, KeyError> {
    let public_id = random_base62(ID_LEN)?;
    let secret = random_base62(SECRET_LEN)?;
    let mut token = format!("{PREFIX}{public_id}_{secret}");
    let check = checksum(&token);
    token.push_str(&check);
    let secret_hash = hash_token(&token)?;
    Ok(GeneratedKey { token: SecretString::from(token), public_id, secret_hash })
}

/// Checks a presented string's shape and checksum, without I/O.
pub fn parse_key(token: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    if token.len() != KEY_LEN || !token.starts_with(PREFIX) {
        return Err(KeyFormatError::Malformed);
    }
    let rest = &token[PREFIX.len()..];
    let (public_id, tail) = rest.split_at(ID_LEN);
    let Some(tail) = tail.strip_prefix('_') else {
        return Err(KeyFormatError::Malformed);
    };
    if !public_id.bytes().chain(tail.bytes()).all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyFormatError::Malformed);
    }
    let (body, check) = token.split_at(token.len() - CHECK_LEN);
    let expected = checksum(body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), check.as_bytes())) {
        return Err(KeyFormatError::Checksum);
    }
    Ok(ParsedKey { public_id, token })
}

/// What the cache remembers about a verified key: enough to rebuild the
/// principal without touching storage.
#[derive(Clone, Debug)]
pub struct CachedKey<P: Clone> {
    /// The key's database id, for invalidation.
    pub key_id: String,
    /// The principal (or whatever the caller needs) the key maps to.
    pub principal: P,
    /// The key's own expiry, unix ms, if any.
    pub expires_at_ms: Option<i64>,
}

/// Bounded, short-lived cache of successful key verifications. See the
/// module docs for the design.
pub struct KeyCache<P: Clone + Send + Sync + 'static> {
    mac_key: hmac::Key,
    entries: moka::sync::Cache<[u8; 32], CachedKey<P>>,
}

impl<P: Clone + Send + Sync + 'static> KeyCache<P> {
    /// A cache of at most `capacity` entries, each living at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| KeyError::Random)?;
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        zeroize::Zeroize::zeroize(&mut secret);
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        Ok(Self { mac_key, entries })
    }

    fn slot(&self, token: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.mac_key, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The cached verification for this exact token, if still valid.
    pub fn get(&self, token: &str, now_ms: i64) -> Option<CachedKey<P>> {
        let slot = self.slot(token);
        let hit = self.entries.get(&slot)?;
        if hit.expires_at_ms.is_some_and(|exp| exp <= now_ms) {
            self.entries.invalidate(&slot);
            return None;
        }
        Some(hit)
    }

    /// Remembers a successful verification.
    pub fn insert(&self, token: &str, entry: CachedKey<P>) {
        self.entries.insert(self.slot(token), entry);
    }

    /// Drops every entry of a key id (revoke, regenerate, delete).
    pub fn invalidate_key(&self, key_id: &str) {
        let id = key_id.to_owned();
        // Only fails when invalidation closures are not enabled, which the
        // constructor always does; fall back to clearing everything.
        if self.entries.invalidate_entries_if(move |_, v| v.key_id == id).is_err() {
            self.entries.invalidate_all();
        }
        self.entries.run_pending_tasks();
    }

    /// Drops everything (for example when a tenant is deleted).
    pub fn clear(&self) {
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
    }
}

/// Fills `buf` from the system RNG (aws-lc-rs), for ids that must be
/// unguessable (session ids, state values).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| KeyError::Random)
}

/// Exposes the token of a generated key for one-time display.
pub fn reveal(key: &GeneratedKey) -> &str {
    key.token.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = generate_key().unwrap();
        let t = reveal(&k);
        assert_eq!(t.len(), KEY_LEN);
        assert!(t.starts_with("moat_"));
        let parsed = parse_key(t).unwrap();
        assert_eq!(parsed.public_id, k.public_id);
        assert!(verify_token(t, &k.secret_hash));
        assert!(k.secret_hash.starts_with("$argon2id$"));
        assert!(!format!("{k:?}").contains(&t[20..]));
    }

    #[test]
    fn keys_are_unique() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(reveal(&a), reveal(&b));
        assert_ne!(a.public_id, b.public_id);
    }

    #[test]
    fn typos_fail_the_checksum_offline() {
        let k = generate_key().unwrap();
        let t = reveal(&k).to_owned();
        let mut typo = t.clone().into_bytes();
        let i = 30;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(parse_key(&typo).err(), Some(KeyFormatError::Checksum));
        assert!(!verify_token(&typo, &k.secret_hash));
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for bad in ["", "moat_", "Bearer x", "mgw_abc", &"moat_".repeat(14)[..67]] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
        let k = generate_key().unwrap();
        let mut t = reveal(&k).to_owned();
        t.replace_range(17..18, "-");
        assert_eq!(parse_key(&t).err(), Some(KeyFormatError::Malformed));
    }

    #[test]
    fn a_garbage_hash_verifies_nothing() {
        assert!(!verify_token("moat_x", "not-a-phc-string"));
    }

    #[test]
    fn cache_hits_only_the_exact_token_and_drops_on_invalidate() {
        let cache: KeyCache<u32> = KeyCache::new(100, Duration::from_secs(60)).unwrap();
        let k = generate_key().unwrap();
        let t = reveal(&k);
        assert!(cache.get(t, 0).is_none());
        cache.insert(t, CachedKey { key_id: "k1".into(), principal: 7, expires_at_ms: None });
        assert_eq!(cache.get(t, 0).unwrap().principal, 7);
        assert!(cache.get(&t.replace('a', "b"), 0).is_none());
        cache.invalidate_key("k1");
        assert!(cache.get(t, 0).is_none());
    }

    #[test]
    fn cache_respects_key_expiry() {
        let cache: KeyCache<u32> = KeyCache::new(100, Duration::from_secs(60)).unwrap();
        cache.insert("t", CachedKey { key_id: "k".into(), principal: 1, expires_at_ms: Some(1000) });
        assert!(cache.get("t", 999).is_some());
        assert!(cache.get("t", 1000).is_none());
    }
}
