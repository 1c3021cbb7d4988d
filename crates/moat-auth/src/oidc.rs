//! OpenID Connect ID token validation (OIDC Core §3.1.3.7), for logins
//! through an external identity provider.
//!
//! Follows the spec's steps, stricter where it leaves room: RS256, PS256
//! and ES256 only (never `none`, never HMAC, even though §3.1.3.7 step 8
//! allows client-secret HMAC); the key comes from the provider's JWKS by
//! `kid`, or is the only key that fits the algorithm when the token has no
//! `kid`; `iss` exact; `aud` must contain the client id, and `azp`, when
//! present or when there are several audiences, must be the client id;
//! `exp` required, `iat` required and not in the future; `nonce` required
//! and compared in constant time. An explicitly typed JWT of another kind
//! (`typ` ending in `+jwt`, such as an `at+jwt` access token) is refused,
//! so tokens cannot be swapped between protocols.

use serde_json::{Map, Value};

use crate::jws::{self, JwsAlg};
use crate::jwt::{JwtError, VerifyKey, check_times};

/// Longest ID token accepted, in bytes (some providers embed group lists).
pub const MAX_ID_TOKEN_LEN: usize = 16 * 1024;

/// The claims moat reads from a verified ID token. Personal data but no
/// secrets, so `Debug` is derived.
#[derive(Clone, Debug, PartialEq)]
pub struct IdTokenClaims {
    /// Subject: the user's stable id at the provider.
    pub sub: String,
    /// `email`, if a string.
    pub email: Option<String>,
    /// `email_verified` (also accepts the strings `"true"`/`"false"`, which
    /// some providers send).
    pub email_verified: Option<bool>,
    /// `name`, if a string.
    pub name: Option<String>,
    /// `preferred_username`, if a string.
    pub preferred_username: Option<String>,
    /// `nonce` (already checked against the expected one).
    pub nonce: Option<String>,
    /// Every claim of the token, for configurable claims such as groups.
    pub extra: Map<String, Value>,
}

impl IdTokenClaims {
    /// A claim read as a list of strings: a JSON array (non-string items
    /// skipped) or a single string. Missing or other types give an empty
    /// list. For a configurable groups or roles claim.
    pub fn string_list(&self, claim: &str) -> Vec<String> {
        match self.extra.get(claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// A NumericDate (RFC 7519 §2): integer, or a finite float (truncated).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => n.as_f64().filter(|f| f.is_finite()).map(|f| Some(f as i64)).ok_or(JwtError::Malformed),
        },
        Some(_) => Err(JwtError::Malformed),
    }
}

fn is_foreign_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| t.to_ascii_lowercase().ends_with("+jwt"))
}

/// Picks the key: by `kid` when the token names one, else the only key
/// that may verify `alg` (several candidates and no `kid` is ambiguous and
/// refused).
fn select_key<'k>(keys: &'k [VerifyKey], kid: Option<&str>, alg: JwsAlg) -> Result<&'k VerifyKey, JwtError> {
    if let Some(kid) = kid {
        let key = keys.iter().find(|k| k.kid() == Some(kid)).ok_or(JwtError::UnknownKey)?;
        return if key.accepts(alg) { Ok(key) } else { Err(JwtError::UnsupportedAlg) };
    }
    let mut fitting = keys.iter().filter(|k| k.accepts(alg));
    match (fitting.next(), fitting.next()) {
        (Some(key), None) => Ok(key),
        _ => Err(JwtError::UnknownKey),
    }
}

/// Verifies an ID token from `issuer` for `client_id` (OIDC Core
/// §3.1.3.7; see the module docs for the exact rules) against the
/// provider's JWKS (`{"keys": [...]}`; unusable entries are skipped) and
/// the `nonce` sent in the authentication request, which must not be
/// empty. `now` is unix seconds; `leeway_s` tolerates clock skew.
pub fn verify_id_token(
    token: &str,
    jwks: &Value,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
    leeway_s: i64,
) -> Result<IdTokenClaims, JwtError> {
    let parts = jws::split(token, MAX_ID_TOKEN_LEN)?;
    let alg = parts.alg()?;
    if is_foreign_typ(parts.header.typ.as_deref()) {
        return Err(JwtError::WrongType);
    }
    let keys = VerifyKey::from_jwks(jwks)?;
    let key = select_key(&keys, parts.header.kid.as_deref(), alg)?;
    key.verify(alg, &parts)?;

    let claims: Map<String, Value> = parts.payload()?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(JwtError::WrongIssuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => {
            auds.iter().map(|a| a.as_str().ok_or(JwtError::Malformed)).collect::<Result<_, _>>()?
        }
        _ => return Err(JwtError::WrongAudience),
    };
    if !audiences.contains(&client_id) {
        return Err(JwtError::WrongAudience);
    }
    let azp = claims.get("azp");
    if (audiences.len() > 1 || azp.is_some()) && azp.and_then(Value::as_str) != Some(client_id) {
        return Err(JwtError::WrongAudience);
    }
    let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::Malformed)?;
    let iat = numeric_date(&claims, "iat")?.ok_or(JwtError::Malformed)?;
    let nbf = numeric_date(&claims, "nbf")?;
    check_times(now, leeway_s, exp, nbf, Some(iat))?;

    let token_nonce = string_claim(&claims, "nonce");
    let nonce_ok = !nonce.is_empty() && token_nonce.as_deref().is_some_and(|n| crate::opaque::ct_eq(n, nonce));
    if !nonce_ok {
        return Err(JwtError::WrongNonce);
    }
    let sub = string_claim(&claims, "sub").filter(|s| !s.is_empty()).ok_or(JwtError::Malformed)?;
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    };
    Ok(IdTokenClaims {
        sub,
        email: string_claim(&claims, "email"),
        email_verified,
        name: string_claim(&claims, "name"),
        preferred_username: string_claim(&claims, "preferred_username"),
        nonce: token_nonce,
        extra: claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningAlg;
    use crate::test_helpers::{forge, junk, key, other_rsa_key, sign_raw, signer};
    use aws_lc_rs::signature as sig;
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const CLIENT: &str = "moat-client";
    const NONCE: &str = "n-0S6_WzA2Mj";
    const NOW: i64 = 1_700_000_000;

    fn claims() -> Value {
        json!({
            "iss": ISS, "sub": "248289761001", "aud": CLIENT, "exp": NOW + 600, "iat": NOW,
            "nonce": NONCE, "email": "jane@example.com", "email_verified": true, "name": "Jane Doe",
            "preferred_username": "jane", "groups": ["eng", "ops", 3]
        })
    }

    fn jwks() -> Value {
        json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
            key(SigningAlg::Rs256).public_jwk,
            key(SigningAlg::Es256).public_jwk,
        ]})
    }

    fn id_token(alg: SigningAlg, claims: &Value) -> String {
        signer(key(alg)).sign_with_typ("JWT", claims).unwrap()
    }

    fn verify(token: &str) -> Result<IdTokenClaims, JwtError> {
        verify_id_token(token, &jwks(), ISS, CLIENT, NONCE, NOW, 60)
    }

    fn with(claim: &str, value: Value) -> Value {
        let mut c = claims();
        c[claim] = value;
        c
    }

    fn without(claim: &str) -> Value {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        c
    }

    #[test]
    fn valid_tokens_verify_with_both_algorithms() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let got = verify(&id_token(alg, &claims())).unwrap();
            assert_eq!(got.sub, "248289761001");
            assert_eq!(got.email.as_deref(), Some("jane@example.com"));
            assert_eq!(got.email_verified, Some(true));
            assert_eq!(got.name.as_deref(), Some("Jane Doe"));
            assert_eq!(got.preferred_username.as_deref(), Some("jane"));
            assert_eq!(got.nonce.as_deref(), Some(NONCE));
            assert_eq!(got.string_list("groups"), ["eng", "ops"]);
            assert_eq!(got.extra["iss"], ISS);
        }
    }

    #[test]
    fn ps256_is_accepted() {
        let k = key(SigningAlg::Rs256);
        let header = json!({"alg": "PS256", "kid": k.kid});
        let input = format!(
            "{}.{}",
            jws::b64(&serde_json::to_vec(&header).unwrap()),
            jws::b64(&serde_json::to_vec(&claims()).unwrap())
        );
        let pair = sig::RsaKeyPair::from_pkcs8(&k.private_pkcs8).unwrap();
        let mut out = vec![0; pair.public_modulus_len()];
        pair.sign(&sig::RSA_PSS_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut out).unwrap();
        let token = format!("{input}.{}", jws::b64(&out));
        // A provider key without `alg`, or with `alg: PS256`, accepts it.
        let mut bare = k.public_jwk.clone();
        bare.as_object_mut().unwrap().remove("alg");
        let mut ps = k.public_jwk.clone();
        ps["alg"] = json!("PS256");
        for jwk in [bare, ps] {
            let jwks = json!({"keys": [jwk]});
            let got = verify_id_token(&token, &jwks, ISS, CLIENT, NONCE, NOW, 60).unwrap();
            assert_eq!(got.sub, "248289761001");
        }
        // The key published as RS256-only refuses PS256.
        assert_eq!(verify(&token).err(), Some(JwtError::UnsupportedAlg));
    }

    #[test]
    fn key_selection() {
        // No kid: the only key that fits the algorithm is used.
        let ec = key(SigningAlg::Es256);
        let no_kid = sign_raw(ec, &json!({"alg": "ES256", "typ": "JWT"}), &claims());
        assert!(verify(&no_kid).is_ok());
        // No kid and two RSA keys: ambiguous, refused.
        let rsa = key(SigningAlg::Rs256);
        let jwks = json!({"keys": [rsa.public_jwk, other_rsa_key().public_jwk]});
        let no_kid = sign_raw(rsa, &json!({"alg": "RS256"}), &claims());
        assert_eq!(verify_id_token(&no_kid, &jwks, ISS, CLIENT, NONCE, NOW, 60).err(), Some(JwtError::UnknownKey));
        // With the kid both are fine.
        assert!(verify_id_token(&id_token(SigningAlg::Rs256, &claims()), &jwks, ISS, CLIENT, NONCE, NOW, 60).is_ok());
        // Unknown kid, and a key of the provider that did not sign it.
        let stranger = sign_raw(rsa, &json!({"alg": "RS256", "kid": "rotated-away"}), &claims());
        assert_eq!(verify(&stranger).err(), Some(JwtError::UnknownKey));
        let jwks = json!({"keys": [other_rsa_key().public_jwk]});
        let mut wrong = other_rsa_key().public_jwk.clone();
        wrong["kid"] = json!(rsa.kid);
        let jwks_wrong = json!({"keys": [wrong]});
        let t = id_token(SigningAlg::Rs256, &claims());
        assert_eq!(verify_id_token(&t, &jwks, ISS, CLIENT, NONCE, NOW, 60).err(), Some(JwtError::UnknownKey));
        assert_eq!(verify_id_token(&t, &jwks_wrong, ISS, CLIENT, NONCE, NOW, 60).err(), Some(JwtError::BadSignature));
        // A kid naming a key of the other type.
        let cross = sign_raw(ec, &json!({"alg": "ES256", "kid": rsa.kid}), &claims());
        assert_eq!(verify(&cross).err(), Some(JwtError::UnsupportedAlg));
        assert_eq!(verify_id_token(&t, &json!([]), ISS, CLIENT, NONCE, NOW, 60).err(), Some(JwtError::InvalidKey));
    }

    #[test]
    fn none_and_hmac_are_refused() {
        let c = claims();
        assert_eq!(verify(&forge(&json!({"alg": "none"}), &c, b"")).err(), Some(JwtError::UnsupportedAlg));
        assert_eq!(
            verify(&forge(&json!({"alg": "HS256", "kid": "hmac"}), &c, b"x")).err(),
            Some(JwtError::UnsupportedAlg)
        );
    }

    #[test]
    fn access_tokens_are_not_id_tokens() {
        let t = signer(key(SigningAlg::Es256)).sign(&claims()).unwrap();
        assert_eq!(verify(&t).err(), Some(JwtError::WrongType));
        let t = signer(key(SigningAlg::Es256)).sign_with_typ("logout+jwt", &claims()).unwrap();
        assert_eq!(verify(&t).err(), Some(JwtError::WrongType));
    }

    #[test]
    fn nonce_must_match() {
        let t = id_token(SigningAlg::Es256, &with("nonce", json!("other")));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongNonce));
        let t = id_token(SigningAlg::Es256, &without("nonce"));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongNonce));
        let t = id_token(SigningAlg::Es256, &with("nonce", json!("")));
        assert_eq!(verify_id_token(&t, &jwks(), ISS, CLIENT, "", NOW, 60).err(), Some(JwtError::WrongNonce));
        let t = id_token(SigningAlg::Es256, &with("nonce", json!(5)));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongNonce));
    }

    #[test]
    fn audience_rules() {
        let t = id_token(SigningAlg::Es256, &with("aud", json!("someone-else")));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongAudience));
        let t = id_token(SigningAlg::Es256, &without("aud"));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongAudience));
        let t = id_token(SigningAlg::Es256, &with("aud", json!([CLIENT])));
        assert!(verify(&t).is_ok());
        let t = id_token(SigningAlg::Es256, &with("aud", json!([CLIENT, "other"])));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongAudience), "several audiences need azp");
        let mut c = with("aud", json!([CLIENT, "other"]));
        c["azp"] = json!(CLIENT);
        assert!(verify(&id_token(SigningAlg::Es256, &c)).is_ok());
        c["azp"] = json!("other");
        assert_eq!(verify(&id_token(SigningAlg::Es256, &c)).err(), Some(JwtError::WrongAudience));
        let t = id_token(SigningAlg::Es256, &with("azp", json!("other")));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongAudience), "azp present must be us");
        let t = id_token(SigningAlg::Es256, &with("aud", json!(["other"])));
        assert_eq!(verify(&t).err(), Some(JwtError::WrongAudience));
    }

    #[test]
    fn issuer_must_match_exactly() {
        for iss in [json!("https://idp.example/"), json!("https://evil.example"), json!(null), json!(1)] {
            let t = id_token(SigningAlg::Rs256, &with("iss", iss));
            assert_eq!(verify(&t).err(), Some(JwtError::WrongIssuer));
        }
    }

    #[test]
    fn times_are_enforced() {
        let t = id_token(SigningAlg::Es256, &with("exp", json!(NOW - 61)));
        assert_eq!(verify(&t).err(), Some(JwtError::Expired));
        let t = id_token(SigningAlg::Es256, &with("exp", json!(NOW - 30)));
        assert!(verify(&t).is_ok(), "within leeway");
        let t = id_token(SigningAlg::Es256, &with("exp", json!((NOW + 60) as f64 + 0.5)));
        assert!(verify(&t).is_ok(), "float NumericDate");
        let t = id_token(SigningAlg::Es256, &with("iat", json!(NOW + 3600)));
        assert_eq!(verify(&t).err(), Some(JwtError::NotYetValid));
        let t = id_token(SigningAlg::Es256, &with("nbf", json!(NOW + 3600)));
        assert_eq!(verify(&t).err(), Some(JwtError::NotYetValid));
        for claim in ["exp", "iat"] {
            let t = id_token(SigningAlg::Es256, &without(claim));
            assert_eq!(verify(&t).err(), Some(JwtError::Malformed), "{claim} is required");
            let t = id_token(SigningAlg::Es256, &with(claim, json!("soon")));
            assert_eq!(verify(&t).err(), Some(JwtError::Malformed));
        }
    }

    #[test]
    fn sub_is_required_and_claims_are_lenient_where_providers_differ() {
        let t = id_token(SigningAlg::Es256, &without("sub"));
        assert_eq!(verify(&t).err(), Some(JwtError::Malformed));
        let t = id_token(SigningAlg::Es256, &with("sub", json!("")));
        assert_eq!(verify(&t).err(), Some(JwtError::Malformed));
        let t = id_token(SigningAlg::Es256, &with("email_verified", json!("true")));
        assert_eq!(verify(&t).unwrap().email_verified, Some(true));
        let t = id_token(SigningAlg::Es256, &with("email_verified", json!("no")));
        assert_eq!(verify(&t).unwrap().email_verified, None);
        let t = id_token(SigningAlg::Es256, &with("groups", json!("admins")));
        assert_eq!(verify(&t).unwrap().string_list("groups"), ["admins"]);
        assert!(verify(&t).unwrap().string_list("missing").is_empty());
    }

    #[test]
    fn size_and_junk() {
        let t = id_token(SigningAlg::Es256, &with("pad", json!("x".repeat(MAX_ID_TOKEN_LEN))));
        assert_eq!(verify(&t).err(), Some(JwtError::TooLarge));
        let t = id_token(SigningAlg::Es256, &with("pad", json!("x".repeat(8 * 1024))));
        assert!(verify(&t).is_ok(), "larger than an access token is fine");
        for j in junk() {
            assert!(verify(&j).is_err(), "{j:?}");
        }
    }
}
