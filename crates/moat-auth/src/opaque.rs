//! High-entropy opaque secrets: authorization codes, refresh tokens,
//! session ids, client secrets.
//!
//! They carry ≥ 256 bits from aws-lc-rs' system RNG, so a plain SHA-256
//! digest is a safe storage key (no guessing attack to slow down); Argon2id
//! ([`crate::hash_token`]) is kept for low-entropy or long-lived secrets
//! such as API keys and client secrets chosen by people.

use secrecy::SecretString;

use crate::keys::{KeyError, random_base62};

/// Length of the random part: 43 × log2(62) ≈ 256.03 bits.
pub const OPAQUE_RANDOM_LEN: usize = 43;

/// `prefix` followed by 43 random base62 characters (≥ 256 bits). The
/// prefix (for example `"mrt_"` for refresh tokens) lets people and secret
/// scanners tell the kinds apart; it adds no secrecy.
pub fn opaque_token(prefix: &str) -> Result<SecretString, KeyError> {
    let mut token = String::with_capacity(prefix.len() + OPAQUE_RANDOM_LEN);
    token.push_str(prefix);
    token.push_str(&random_base62(OPAQUE_RANDOM_LEN)?);
    Ok(SecretString::from(token))
}

/// SHA-256 of `token`, base64url without padding: the lookup key to store
/// for a high-entropy token instead of the token itself.
pub fn token_digest(token: &str) -> String {
    crate::jws::b64(&crate::jws::sha256(token.as_bytes()))
}

/// Constant-time string equality (the length itself is not hidden).
pub fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn tokens_have_prefix_length_and_base62_body() {
        let t = opaque_token("mrt_").unwrap();
        let t = t.expose_secret();
        assert_eq!(t.len(), 4 + OPAQUE_RANDOM_LEN);
        assert!(t.starts_with("mrt_"));
        assert!(t[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let u = opaque_token("mrt_").unwrap();
        assert_ne!(t, u.expose_secret());
        assert!(!format!("{:?}", opaque_token("x_").unwrap()).contains("x_"));
    }

    #[test]
    fn digest_is_sha256_base64url() {
        // SHA-256("abc"), base64url.
        assert_eq!(token_digest("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(token_digest("abc").len(), 43);
        assert_ne!(token_digest("abc"), token_digest("abd"));
    }

    #[test]
    fn ct_eq_compares_exactly() {
        assert!(ct_eq("abc", "abc"));
        assert!(ct_eq("", ""));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
        assert!(!ct_eq("abc", ""));
    }
}
