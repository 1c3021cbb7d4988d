//! PKCE with the `S256` method (RFC 7636). `plain` is not offered: OAuth
//! 2.1 requires S256 whenever the client can do it, and every MCP client
//! can.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Whether `verifier` has the RFC 7636 §4.1 shape: 43–128 characters of
/// `[A-Za-z0-9-._~]`.
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `challenge` is a well-formed S256 code challenge: 43 characters
/// of canonical base64url without padding, i.e. exactly a SHA-256 digest.
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|d| d.len() == 32)
}

/// Whether `BASE64URL(SHA256(verifier))` equals `challenge` (RFC 7636
/// §4.6), compared in constant time. A verifier of the wrong shape never
/// matches.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    if !valid_verifier(verifier) {
        return false;
    }
    let computed = crate::opaque::token_digest(verifier);
    crate::opaque::ct_eq(&computed, challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 Appendix B (checked against an independent SHA-256).
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert!(valid_verifier(VERIFIER));
        assert!(valid_challenge(CHALLENGE));
        assert!(pkce_s256_matches(VERIFIER, CHALLENGE));
    }

    #[test]
    fn a_different_verifier_or_challenge_does_not_match() {
        let other = VERIFIER.replace('d', "e");
        assert!(!pkce_s256_matches(&other, CHALLENGE));
        assert!(!pkce_s256_matches(VERIFIER, &CHALLENGE.replace('E', "F")));
        assert!(!pkce_s256_matches(VERIFIER, ""));
        // A well-formed but different challenge (a mistyped copy of the vector).
        assert!(!pkce_s256_matches(VERIFIER, "E9Melhoa2OwvFrEMTJguCqc6Ssm5Ep2Ga-7ct7RUyWM"));
        assert!(!pkce_s256_matches(VERIFIER, &format!("{CHALLENGE}=")));
        // `plain` is not supported: the verifier as its own challenge fails.
        assert!(!pkce_s256_matches(VERIFIER, VERIFIER));
    }

    #[test]
    fn verifier_shape_is_enforced() {
        let short = "a".repeat(42);
        let long = "a".repeat(129);
        assert!(!valid_verifier(&short));
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"a".repeat(128)));
        assert!(!valid_verifier(&long));
        for bad in ["+", "/", "=", " ", "%", "é", "\0"] {
            let v = format!("{}{bad}", "a".repeat(43));
            assert!(!valid_verifier(&v), "{bad:?}");
        }
        // A bad-charset verifier never matches, even against its own digest.
        let bad = format!("{}+", "a".repeat(43));
        assert!(!pkce_s256_matches(&bad, &crate::opaque::token_digest(&bad)));
        assert!(valid_verifier(&format!("{}-._~", "a".repeat(40))));
    }

    #[test]
    fn challenge_shape_is_enforced() {
        assert!(!valid_challenge(""));
        assert!(!valid_challenge(&CHALLENGE[..42]));
        assert!(!valid_challenge(&format!("{CHALLENGE}A")));
        assert!(!valid_challenge(&CHALLENGE.replace('-', "+")));
        // 43 chars but non-canonical trailing bits.
        assert!(!valid_challenge(&format!("{}N", &CHALLENGE[..42])));
    }
}
