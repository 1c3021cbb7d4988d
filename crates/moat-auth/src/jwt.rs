//! Access tokens: claims, the unverified peek, verification keys and
//! verification (RFC 9068 JWT access tokens).
//!
//! Verification order, so that nothing from an unauthenticated token is
//! trusted before it must be: size bound → header (algorithm allow-list,
//! `typ` = `at+jwt`, no `crit`) → key by `kid` (required) → the token's
//! `alg` must equal the key's → signature → only then the payload →
//! `iss`, `exp`, `nbf`, `iat` against the caller's clock. The audience is
//! the caller's to check with [`audience_covers`], since only it knows which
//! resource was requested.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jws::{self, JwsAlg, PublicKey};

/// Longest access token accepted, in bytes. Checked before any decoding.
pub const MAX_ACCESS_TOKEN_LEN: usize = 8 * 1024;

/// Why a token could not be issued or was refused. Messages are short and
/// never contain the token or key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a well-formed compact JWS, or claims missing or of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// Longer than the accepted maximum.
    #[error("token too large")]
    TooLarge,
    /// No `kid`, or no configured key matches it.
    #[error("unknown signing key")]
    UnknownKey,
    /// A key (JWK, JWKS or PKCS#8) is malformed, too weak or of an
    /// unsupported type.
    #[error("unusable key")]
    InvalidKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` (or `azp`) does not name this party.
    #[error("wrong audience")]
    WrongAudience,
    /// The header `typ` is not the one this kind of token must carry.
    #[error("wrong token type")]
    WrongType,
    /// The ID token's `nonce` is missing or differs from the expected one.
    #[error("nonce mismatch")]
    WrongNonce,
    /// An algorithm outside the allow-list (`none`, `HS*`, ...) or not the
    /// one the key is for.
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    /// Key generation or signing failed inside the crypto library.
    #[error("signing failure")]
    Crypto,
}

/// The claims of a moat access token. Not secret (anyone holding the token
/// can read them), so `Debug` is derived. New claims should be added with
/// `#[serde(default)]` so tokens issued before the change still verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the gateway's issuer URL for the tenant.
    pub iss: String,
    /// Subject: the principal's id.
    pub sub: String,
    /// Audience: the resource (RFC 8707) the token is for.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Not before, unix seconds.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Tenant id.
    pub tid: String,
    /// Tenant name.
    pub tenant: String,
    /// Principal kind: `human`, `agent`, `service` or `workflow`.
    pub kind: String,
    /// Browser origins the token may be used from, if restricted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Session / refresh-token family id, for revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Issue time in unix milliseconds (moat's tokens carry it so that a
    /// tenant-wide revocation can be compared to the millisecond; `iat` has
    /// whole seconds only).
    #[serde(default)]
    pub epoch: i64,
    /// The principal's role in the tenant when the token was issued
    /// (`owner`, `admin`, `member`); absent means `member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// What [`peek`] reveals of an unverified token: enough to choose which
/// tenant's keys to verify it with, nothing to trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peeked {
    /// Header `kid`, if any.
    pub kid: Option<String>,
    /// Header `alg`, as written (not checked against the allow-list).
    pub alg: String,
    /// Payload `tid` claim, if it is a string.
    pub tid: Option<String>,
}

/// Decodes header and payload WITHOUT verifying anything, to route the
/// token to its tenant's keys. Refuses tokens over
/// [`MAX_ACCESS_TOKEN_LEN`]; never panics on garbage.
pub fn peek(token: &str) -> Result<Peeked, JwtError> {
    let parts = jws::split(token, MAX_ACCESS_TOKEN_LEN)?;
    let payload: serde_json::Map<String, Value> = parts.payload()?;
    let tid = payload.get("tid").and_then(Value::as_str).map(str::to_owned);
    Ok(Peeked { kid: parts.header.kid, alg: parts.header.alg, tid })
}

/// A public key that verifies tokens, parsed once from a JWK (RFC 7517):
/// RSA (`n`, `e`; 2048–8192 bits) or EC P-256 (`x`, `y`).
#[derive(Clone)]
pub struct VerifyKey {
    kid: Option<String>,
    alg: Option<JwsAlg>,
    key: PublicKey,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kty", &self.key.kty())
            .field("kid", &self.kid)
            .field("alg", &self.alg.map(JwsAlg::as_str))
            .finish()
    }
}

fn jwk_bytes(jwk: &Value, name: &str) -> Result<Vec<u8>, JwtError> {
    let s = jwk.get(name).and_then(Value::as_str).ok_or(JwtError::InvalidKey)?;
    // RFC 7518 forbids padding, but a stray `=` in a published key is
    // harmless to tolerate.
    jws::b64_decode(s.trim_end_matches('=')).map_err(|_| JwtError::InvalidKey)
}

impl VerifyKey {
    /// Parses a public JWK. Refuses keys marked for another use (`use`
    /// other than `sig`, `key_ops` without `verify`), an `alg` outside
    /// RS256/PS256/ES256 or not matching `kty`, curves other than P-256, and
    /// RSA moduli outside 2048–8192 bits.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwtError> {
        let obj = jwk.as_object().ok_or(JwtError::InvalidKey)?;
        if obj.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(JwtError::InvalidKey);
        }
        if let Some(ops) = obj.get("key_ops") {
            let verifies = ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
            if !verifies {
                return Err(JwtError::InvalidKey);
            }
        }
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwtError::InvalidKey),
        };
        let alg = match obj.get("alg") {
            None => None,
            Some(Value::String(alg)) => Some(JwsAlg::parse(alg)?),
            Some(_) => return Err(JwtError::InvalidKey),
        };
        let key = match obj.get("kty").and_then(Value::as_str) {
            Some("RSA") => PublicKey::rsa(&jwk_bytes(jwk, "n")?, &jwk_bytes(jwk, "e")?)?,
            Some("EC") if obj.get("crv").and_then(Value::as_str) == Some("P-256") => {
                PublicKey::ec_p256(&jwk_bytes(jwk, "x")?, &jwk_bytes(jwk, "y")?)?
            }
            _ => return Err(JwtError::InvalidKey),
        };
        if alg.is_some_and(|alg| !key.supports(alg)) {
            return Err(JwtError::InvalidKey);
        }
        Ok(Self { kid, alg, key })
    }

    /// Parses every usable key of a JWKS (`{"keys": [...]}`), silently
    /// skipping keys of unsupported types, curves or sizes (providers
    /// publish encryption and legacy keys next to the ones they sign with).
    pub fn from_jwks(jwks: &Value) -> Result<Vec<Self>, JwtError> {
        let keys = jwks.get("keys").and_then(Value::as_array).ok_or(JwtError::InvalidKey)?;
        Ok(keys.iter().filter_map(|k| Self::from_jwk(k).ok()).collect())
    }

    /// The JWK `kid`, if it had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The JWK `alg`, if it had one.
    pub fn alg(&self) -> Option<&'static str> {
        self.alg.map(JwsAlg::as_str)
    }

    /// Whether this key may verify a token whose header says `alg`: the
    /// key's own `alg` when the JWK names one, else any algorithm of its
    /// type.
    pub(crate) fn accepts(&self, alg: JwsAlg) -> bool {
        match self.alg {
            Some(own) => own == alg,
            None => self.key.supports(alg),
        }
    }

    /// Verifies a split token's signature with `alg`.
    pub(crate) fn verify(&self, alg: JwsAlg, parts: &jws::Parts<'_>) -> Result<(), JwtError> {
        self.key.verify(alg, parts.signing_input, &parts.signature)
    }
}

/// Whether a header `typ` says "access token" (RFC 9068 §4; media types
/// compare case-insensitively and may carry the `application/` prefix).
fn is_access_typ(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.strip_prefix("application/").unwrap_or(t);
        t.eq_ignore_ascii_case("at+jwt")
    })
}

/// The time checks shared by access and ID tokens. `exp` is exclusive
/// (RFC 7519 §4.1.4); a negative leeway counts as zero; saturating
/// arithmetic so extreme values cannot overflow.
pub(crate) fn check_times(
    now: i64,
    leeway_s: i64,
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
) -> Result<(), JwtError> {
    let leeway = leeway_s.max(0);
    if now.saturating_sub(leeway) >= exp {
        return Err(JwtError::Expired);
    }
    let latest = now.saturating_add(leeway);
    if nbf.is_some_and(|nbf| nbf > latest) || iat.is_some_and(|iat| iat > latest) {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

/// Verifies a moat access token against a tenant's keys and returns its
/// claims. The token must carry a `kid` naming one of `keys`, an `alg`
/// equal to that key's (RS256 or ES256 only) and `typ` `at+jwt`; `iss` must
/// equal `expected_iss`; `exp`, `nbf` and `iat` are checked against `now`
/// (unix seconds) with `leeway_s` seconds of tolerance. The caller checks
/// `aud` (see [`audience_covers`]) and revocation (`sid`, `epoch`).
pub fn verify_access(
    token: &str,
    keys: &[VerifyKey],
    expected_iss: &str,
    now: i64,
    leeway_s: i64,
) -> Result<AccessClaims, JwtError> {
    let parts = jws::split(token, MAX_ACCESS_TOKEN_LEN)?;
    let alg = parts.alg()?;
    if alg == JwsAlg::Ps256 {
        // moat issues RS256 and ES256 only; anything else is not ours.
        return Err(JwtError::UnsupportedAlg);
    }
    if !is_access_typ(parts.header.typ.as_deref()) {
        return Err(JwtError::WrongType);
    }
    let kid = parts.header.kid.as_deref().ok_or(JwtError::UnknownKey)?;
    let key = keys.iter().find(|k| k.kid() == Some(kid)).ok_or(JwtError::UnknownKey)?;
    // The key decides the algorithm, never the token: a JWK without `alg`
    // still gets exactly one (RS256 for RSA, ES256 for EC).
    let key_alg = key.alg.unwrap_or(match key.key {
        PublicKey::Rsa { .. } => JwsAlg::Rs256,
        PublicKey::EcP256(_) => JwsAlg::Es256,
    });
    if alg != key_alg {
        return Err(JwtError::UnsupportedAlg);
    }
    key.verify(alg, &parts)?;
    let claims: AccessClaims = parts.payload()?;
    if claims.iss != expected_iss {
        return Err(JwtError::WrongIssuer);
    }
    check_times(now, leeway_s, claims.exp, Some(claims.nbf), Some(claims.iat))?;
    Ok(claims)
}

/// An absolute http(s) URL cut into what audience matching compares.
struct UrlParts<'a> {
    scheme: String,
    host: String,
    port: u16,
    path: &'a str,
}

fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    if url.contains(['?', '#', '\\']) {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // `[v6]:port`, `host:port` or `host`.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    if host.is_empty() {
        return None;
    }
    Some(UrlParts { scheme, host: host.to_ascii_lowercase(), port, path })
}

/// A path segment that could climb out of a prefix (`.`, `..`, their
/// percent-encoded forms) or hide a separator (`%2F`, `%5C`).
fn suspicious_segment(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".");
    decoded == "." || decoded == ".." || lower.contains("%2f") || lower.contains("%5c")
}

/// Whether an access token for audience `aud` may be used at `resource`:
/// equal (ignoring trailing slashes), or `aud` is an http(s) URL with the
/// same scheme, host and port whose path is a whole-segment prefix of
/// `resource`'s. So `http://h:1/mcp` covers `http://h:1/mcp/github` but not
/// `http://h:1/mcpx`, `http://h:2/mcp` nor `http://h:1/mcp/../admin`, and
/// `http://h:1` covers its whole origin. URLs with a query, fragment or
/// userinfo only ever match exactly.
pub fn audience_covers(aud: &str, resource: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    let resource = resource.trim_end_matches('/');
    if aud.is_empty() || resource.is_empty() {
        return false;
    }
    if aud == resource {
        return true;
    }
    let (Some(a), Some(r)) = (url_parts(aud), url_parts(resource)) else {
        return false;
    };
    if a.scheme != r.scheme || a.host != r.host || a.port != r.port {
        return false;
    }
    let mut a_segs = a.path.split('/').skip(1);
    let mut r_segs = r.path.split('/').skip(1);
    loop {
        match (a_segs.next(), r_segs.next()) {
            (None, None) => return true,
            (None, Some(rest)) => {
                return !std::iter::once(rest).chain(r_segs).any(suspicious_segment);
            }
            (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if x != y || suspicious_segment(y) {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{SigningAlg, TokenSigner};
    use crate::test_helpers::{forge, junk, key, other_rsa_key, sign_raw, signer};
    use proptest::prelude::*;
    use serde_json::json;

    const ISS: &str = "https://gw.example/t/acme";
    const NOW: i64 = 1_700_000_000;
    const ALGS: [SigningAlg; 2] = [SigningAlg::Rs256, SigningAlg::Es256];

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: "u_1".into(),
            aud: "https://gw.example/mcp".into(),
            exp: NOW + 300,
            iat: NOW,
            nbf: NOW,
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: "mcp:tools mcp:read".into(),
            tid: "t_1".into(),
            tenant: "acme".into(),
            kind: "human".into(),
            allowed_origins: vec![],
            sid: Some("s1".into()),
            epoch: 3,
            role: None,
        }
    }

    fn vkey(alg: SigningAlg) -> VerifyKey {
        VerifyKey::from_jwk(&key(alg).public_jwk).unwrap()
    }

    fn all_keys() -> Vec<VerifyKey> {
        ALGS.iter().map(|&a| vkey(a)).collect()
    }

    fn header(alg: &str, kid: &str) -> Value {
        json!({"alg": alg, "typ": "at+jwt", "kid": kid})
    }

    fn verify(token: &str) -> Result<AccessClaims, JwtError> {
        verify_access(token, &all_keys(), ISS, NOW, 0)
    }

    #[test]
    fn round_trip_both_algorithms() {
        for alg in ALGS {
            let token = signer(key(alg)).sign(&claims()).unwrap();
            assert_eq!(verify(&token).unwrap(), claims());
            assert_eq!(verify_access(&token, &[vkey(alg)], ISS, NOW, 0).unwrap(), claims());
        }
    }

    #[test]
    fn optional_claims_are_omitted_and_default() {
        let mut c = claims();
        c.sid = None;
        let v = serde_json::to_value(&c).unwrap();
        assert!(v.get("sid").is_none() && v.get("allowed_origins").is_none());
        let mut v = v;
        v.as_object_mut().unwrap().remove("epoch");
        v["future_claim"] = json!(1);
        let token = sign_raw(key(SigningAlg::Es256), &header("ES256", &key(SigningAlg::Es256).kid), &v);
        let got = verify(&token).unwrap();
        assert_eq!((got.epoch, got.sid, got.allowed_origins.len()), (0, None, 0));
        c.allowed_origins = vec!["https://app.example".into()];
        let token = signer(key(SigningAlg::Es256)).sign(&c).unwrap();
        assert_eq!(verify(&token).unwrap().allowed_origins, c.allowed_origins);
    }

    #[test]
    fn missing_claims_are_malformed() {
        let k = key(SigningAlg::Es256);
        let mut v = serde_json::to_value(claims()).unwrap();
        v.as_object_mut().unwrap().remove("tid");
        assert_eq!(verify(&sign_raw(k, &header("ES256", &k.kid), &v)), Err(JwtError::Malformed));
        let v = json!({"iss": ISS, "exp": "soon"});
        assert_eq!(verify(&sign_raw(k, &header("ES256", &k.kid), &v)), Err(JwtError::Malformed));
    }

    #[test]
    fn a_token_signed_by_another_key_fails() {
        let rsa = key(SigningAlg::Rs256);
        let impostor = TokenSigner::new(SigningAlg::Rs256, rsa.kid.clone(), &other_rsa_key().private_pkcs8).unwrap();
        assert_eq!(verify(&impostor.sign(&claims()).unwrap()), Err(JwtError::BadSignature));
        let ec = key(SigningAlg::Es256);
        let other_ec = crate::signing::generate_signing_key(SigningAlg::Es256).unwrap();
        let impostor = TokenSigner::new(SigningAlg::Es256, ec.kid.clone(), &other_ec.private_pkcs8).unwrap();
        assert_eq!(verify(&impostor.sign(&claims()).unwrap()), Err(JwtError::BadSignature));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        for alg in ALGS {
            let token = signer(key(alg)).sign(&claims()).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            let mut evil = claims();
            evil.scope = "admin".into();
            let evil = jws::b64(&serde_json::to_vec(&evil).unwrap());
            assert_eq!(verify(&format!("{}.{evil}.{}", parts[0], parts[2])), Err(JwtError::BadSignature));
            let mut sig = jws::b64_decode(parts[2]).unwrap();
            sig[10] ^= 1;
            let bad = format!("{}.{}.{}", parts[0], parts[1], jws::b64(&sig));
            assert_eq!(verify(&bad), Err(JwtError::BadSignature));
            let short = format!("{}.{}.{}", parts[0], parts[1], jws::b64(&sig[..sig.len() - 1]));
            assert_eq!(verify(&short), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let rsa = key(SigningAlg::Rs256);
        let ec = key(SigningAlg::Es256);
        let c = serde_json::to_value(claims()).unwrap();
        // HS256 keyed with the RSA public key (the classic confusion attack).
        let input = format!(
            "{}.{}",
            jws::b64(&serde_json::to_vec(&header("HS256", &rsa.kid)).unwrap()),
            jws::b64(&serde_json::to_vec(&c).unwrap())
        );
        let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, rsa.public_jwk.to_string().as_bytes());
        let mac = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
        assert_eq!(verify(&format!("{input}.{}", jws::b64(mac.as_ref()))), Err(JwtError::UnsupportedAlg));
        // alg none, with an empty or a junk signature.
        assert_eq!(verify(&forge(&header("none", &rsa.kid), &c, b"")), Err(JwtError::UnsupportedAlg));
        assert_eq!(verify(&forge(&header("none", &rsa.kid), &c, b"x")), Err(JwtError::UnsupportedAlg));
        assert_eq!(verify(&forge(&header("None", &rsa.kid), &c, b"")), Err(JwtError::UnsupportedAlg));
        // A real ES256 signature presented under the RSA key's kid, and vice versa.
        assert_eq!(verify(&sign_raw(ec, &header("ES256", &rsa.kid), &c)), Err(JwtError::UnsupportedAlg));
        assert_eq!(verify(&sign_raw(rsa, &header("RS256", &ec.kid), &c)), Err(JwtError::UnsupportedAlg));
        // PS256 is an ID-token algorithm, not one moat issues.
        assert_eq!(verify(&forge(&header("PS256", &rsa.kid), &c, b"x")), Err(JwtError::UnsupportedAlg));
        // A JWK without `alg` still binds RSA keys to RS256 only.
        let mut bare = rsa.public_jwk.clone();
        bare.as_object_mut().unwrap().remove("alg");
        let bare = VerifyKey::from_jwk(&bare).unwrap();
        let t = sign_raw(ec, &header("ES256", &rsa.kid), &c);
        assert_eq!(verify_access(&t, std::slice::from_ref(&bare), ISS, NOW, 0), Err(JwtError::UnsupportedAlg));
        let t = signer(rsa).sign(&claims()).unwrap();
        assert!(verify_access(&t, &[bare], ISS, NOW, 0).is_ok());
    }

    #[test]
    fn kid_is_required_and_must_be_known() {
        let k = key(SigningAlg::Rs256);
        let c = serde_json::to_value(claims()).unwrap();
        let no_kid = sign_raw(k, &json!({"alg": "RS256", "typ": "at+jwt"}), &c);
        assert_eq!(verify(&no_kid), Err(JwtError::UnknownKey));
        let unknown = sign_raw(k, &header("RS256", "someone-else"), &c);
        assert_eq!(verify(&unknown), Err(JwtError::UnknownKey));
        let token = signer(k).sign(&claims()).unwrap();
        assert_eq!(verify_access(&token, &[], ISS, NOW, 0), Err(JwtError::UnknownKey));
        assert_eq!(verify_access(&token, &[vkey(SigningAlg::Es256)], ISS, NOW, 0), Err(JwtError::UnknownKey));
    }

    #[test]
    fn typ_must_be_at_jwt() {
        let k = key(SigningAlg::Es256);
        let c = serde_json::to_value(claims()).unwrap();
        let no_typ = sign_raw(k, &json!({"alg": "ES256", "kid": k.kid}), &c);
        assert_eq!(verify(&no_typ), Err(JwtError::WrongType));
        let jwt = signer(k).sign_with_typ("JWT", &claims()).unwrap();
        assert_eq!(verify(&jwt), Err(JwtError::WrongType));
        let long_form = signer(k).sign_with_typ("application/AT+JWT", &claims()).unwrap();
        assert!(verify(&long_form).is_ok());
    }

    #[test]
    fn header_and_claims_must_be_json_objects() {
        let k = key(SigningAlg::Es256);
        let c = serde_json::to_value(claims()).unwrap();
        let array_header = sign_raw(k, &json!(["ES256", "at+jwt", k.kid]), &c);
        assert_eq!(verify(&array_header), Err(JwtError::Malformed));
        let c = &claims();
        let positional = json!([
            c.iss,
            c.sub,
            c.aud,
            c.exp,
            c.iat,
            c.nbf,
            c.jti,
            c.client_id,
            c.scope,
            c.tid,
            c.tenant,
            c.kind,
            c.allowed_origins,
            c.sid,
            c.epoch
        ]);
        assert_eq!(verify(&sign_raw(k, &header("ES256", &k.kid), &positional)), Err(JwtError::Malformed));
    }

    #[test]
    fn send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<VerifyKey>();
        check::<TokenSigner>();
    }

    #[test]
    fn crit_headers_are_refused() {
        let k = key(SigningAlg::Es256);
        let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": k.kid, "crit": ["exp"], "exp": 1});
        assert_eq!(verify(&sign_raw(k, &h, &serde_json::to_value(claims()).unwrap())), Err(JwtError::Malformed));
    }

    #[test]
    fn issuer_must_match_exactly() {
        let token = signer(key(SigningAlg::Es256)).sign(&claims()).unwrap();
        for iss in ["https://gw.example/t/acme/", "https://gw.example/t/other", "", "HTTPS://gw.example/t/acme"] {
            assert_eq!(verify_access(&token, &all_keys(), iss, NOW, 0), Err(JwtError::WrongIssuer));
        }
    }

    #[test]
    fn times_are_enforced_with_leeway() {
        let s = signer(key(SigningAlg::Es256));
        let keys = all_keys();
        let token = s.sign(&claims()).unwrap();
        assert_eq!(verify_access(&token, &keys, ISS, NOW + 300, 0), Err(JwtError::Expired));
        assert_eq!(verify_access(&token, &keys, ISS, NOW + 301, 0), Err(JwtError::Expired));
        assert!(verify_access(&token, &keys, ISS, NOW + 299, 0).is_ok());
        assert!(verify_access(&token, &keys, ISS, NOW + 330, 60).is_ok());
        assert_eq!(verify_access(&token, &keys, ISS, NOW + 360, 60), Err(JwtError::Expired));
        // Negative leeway counts as none.
        assert_eq!(verify_access(&token, &keys, ISS, NOW + 300, -100), Err(JwtError::Expired));
        assert!(verify_access(&token, &keys, ISS, NOW, -100).is_ok());

        let mut early = claims();
        early.nbf = NOW + 120;
        let token = s.sign(&early).unwrap();
        assert_eq!(verify_access(&token, &keys, ISS, NOW, 60), Err(JwtError::NotYetValid));
        assert!(verify_access(&token, &keys, ISS, NOW + 60, 60).is_ok());

        let mut future = claims();
        future.iat = NOW + 120;
        let token = s.sign(&future).unwrap();
        assert_eq!(verify_access(&token, &keys, ISS, NOW, 60), Err(JwtError::NotYetValid));

        let mut extreme = claims();
        extreme.exp = i64::MIN;
        let token = s.sign(&extreme).unwrap();
        assert_eq!(verify_access(&token, &keys, ISS, i64::MAX, i64::MAX), Err(JwtError::Expired));
        extreme.exp = i64::MAX;
        extreme.nbf = i64::MAX;
        let token = s.sign(&extreme).unwrap();
        assert_eq!(verify_access(&token, &keys, ISS, i64::MIN, i64::MAX), Err(JwtError::NotYetValid));
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let mut c = claims();
        c.scope = "s ".repeat(MAX_ACCESS_TOKEN_LEN / 2);
        let token = signer(key(SigningAlg::Es256)).sign(&c).unwrap();
        assert_eq!(verify(&token), Err(JwtError::TooLarge));
        assert_eq!(peek(&token), Err(JwtError::TooLarge));
        assert_eq!(verify(&"a".repeat(MAX_ACCESS_TOKEN_LEN + 1)), Err(JwtError::TooLarge));
    }

    #[test]
    fn peek_reads_routing_fields_without_verifying() {
        let k = key(SigningAlg::Rs256);
        let token = signer(k).sign(&claims()).unwrap();
        assert_eq!(
            peek(&token).unwrap(),
            Peeked { kid: Some(k.kid.clone()), alg: "RS256".into(), tid: Some("t_1".into()) }
        );
        let forged = forge(&json!({"alg": "none"}), &json!({"tid": 7}), b"");
        assert_eq!(peek(&forged).unwrap(), Peeked { kid: None, alg: "none".into(), tid: None });
    }

    #[test]
    fn junk_is_refused_without_panicking() {
        let keys = all_keys();
        for j in junk() {
            assert!(verify_access(&j, &keys, ISS, NOW, 60).is_err(), "{j:?}");
            let _ = peek(&j);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
            prop_assert!(verify_access(&s, &all_keys(), ISS, NOW, 60).is_err());
            let _ = peek(&s);
        }

        #[test]
        fn arbitrary_three_part_tokens_never_panic(
            h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,80}", s in "[A-Za-z0-9_=-]{0,90}"
        ) {
            let t = format!("{h}.{p}.{s}");
            prop_assert!(verify_access(&t, &all_keys(), ISS, NOW, 60).is_err());
            let _ = peek(&t);
        }

        #[test]
        fn arbitrary_json_headers_never_panic(alg in "\\PC{0,10}", kid in "\\PC{0,10}", typ in "\\PC{0,10}") {
            let t = forge(&json!({"alg": alg, "kid": kid, "typ": typ}), &serde_json::to_value(claims()).unwrap(), b"sig");
            prop_assert!(verify_access(&t, &all_keys(), ISS, NOW, 60).is_err());
        }
    }

    #[test]
    fn third_party_rsa_jwks_are_accepted() {
        let k = key(SigningAlg::Rs256);
        let n = jws::b64_decode(k.public_jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len() * 8, 2048);
        // Bare RFC 7517 members only, and a modulus with an extra leading zero.
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        for n in [jws::b64(&n), jws::b64(&padded)] {
            let jwk = json!({"kty": "RSA", "e": "AQAB", "n": n, "kid": k.kid});
            let vk = VerifyKey::from_jwk(&jwk).unwrap();
            assert_eq!((vk.kid(), vk.alg()), (Some(k.kid.as_str()), None));
            let token = signer(k).sign(&claims()).unwrap();
            assert_eq!(verify_access(&token, &[vk], ISS, NOW, 0).unwrap(), claims());
        }
    }

    #[test]
    fn unusable_jwks_are_refused() {
        let rsa = &key(SigningAlg::Rs256).public_jwk;
        let ec = &key(SigningAlg::Es256).public_jwk;
        let with = |base: &Value, k: &str, v: Value| {
            let mut j = base.clone();
            j[k] = v;
            j
        };
        let bad = [
            json!(null),
            json!([]),
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            with(rsa, "use", json!("enc")),
            with(rsa, "key_ops", json!(["encrypt"])),
            with(rsa, "alg", json!("HS256")),
            with(rsa, "alg", json!("ES256")),
            with(rsa, "alg", json!("none")),
            with(rsa, "e", json!("AQ")),
            with(rsa, "e", json!("Ag")),
            with(rsa, "e", json!("")),
            with(rsa, "n", json!(jws::b64(&[0xC1; 128]))),
            with(rsa, "n", json!("not base64!")),
            with(rsa, "kid", json!(5)),
            with(ec, "crv", json!("P-384")),
            with(ec, "alg", json!("RS256")),
            with(ec, "x", json!(jws::b64(&[1; 32]))),
            with(ec, "y", json!(jws::b64(&[1; 31]))),
        ];
        for jwk in bad {
            assert!(VerifyKey::from_jwk(&jwk).is_err(), "{jwk}");
        }
        assert!(VerifyKey::from_jwk(&with(rsa, "key_ops", json!(["verify"]))).is_ok());
        let jwks = json!({"keys": [json!({"kty": "oct", "k": "eA"}), rsa, with(ec, "crv", json!("P-521")), ec]});
        let keys = VerifyKey::from_jwks(&jwks).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(VerifyKey::from_jwks(&json!({"nokeys": []})).is_err());
        assert!(format!("{:?}", keys[0]).contains("RSA"));
    }

    #[test]
    fn audience_coverage_table() {
        let table = [
            ("http://h:1/mcp", "http://h:1/mcp", true),
            ("http://h:1/mcp", "http://h:1/mcp/", true),
            ("http://h:1/mcp/", "http://h:1/mcp", true),
            ("http://h:1/mcp", "http://h:1/mcp/github", true),
            ("http://h:1/mcp", "http://h:1/mcp/github/x", true),
            ("http://h:1/mcp/", "http://h:1/mcp/github", true),
            ("http://h:1/mcp", "http://h:1/mcpx", false),
            ("http://h:1/mcp", "http://h:2/mcp", false),
            ("http://h:1/mcp", "https://h:1/mcp", false),
            ("http://h:1/mcp", "http://g:1/mcp", false),
            ("http://h:1/mcp/github", "http://h:1/mcp", false),
            ("http://h:1/mcp/github", "http://h:1/mcp/gitlab", false),
            ("http://h:1", "http://h:1/anything/at/all", true),
            ("http://h:1/", "http://h:1/mcp", true),
            ("http://h:1", "http://h:1", true),
            ("http://h", "http://h:80/mcp", true),
            ("https://H.example/mcp", "https://h.example:443/mcp/x", true),
            ("http://h:1/mcp", "http://h:1/mcp/../admin", false),
            ("http://h:1/mcp", "http://h:1/mcp/%2e%2E/admin", false),
            ("http://h:1/mcp", "http://h:1/mcp/a%2Fb", false),
            ("http://h:1/mcp", "http://h:1/mcp/./x", false),
            ("http://h:1/mcp", "http://h:1/mcp/x?y=1", false),
            ("http://h:1/mcp", "http://user@h:1/mcp/x", false),
            ("http://h:1/mcp", "http://h:1@evil/mcp/x", false),
            ("http://h:1/mcp", "http://h:1/mcp\\..\\x", false),
            ("http://[::1]:1/mcp", "http://[::1]:1/mcp/x", true),
            ("http://[::1]:1/mcp", "http://[::1]:2/mcp/x", false),
            ("ftp://h/mcp", "ftp://h/mcp/x", false),
            ("urn:x", "urn:x", true),
            ("urn:x", "urn:x:y", false),
            ("", "", false),
            ("/", "http://h/", false),
            ("http://h:x/mcp", "http://h:x/mcp/y", false),
        ];
        for (aud, resource, want) in table {
            assert_eq!(audience_covers(aud, resource), want, "{aud} covers {resource}");
        }
    }
}
