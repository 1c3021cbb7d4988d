//! Tenant signing keys: generation, public JWKs and the access-token signer.
//!
//! Each tenant signs its access tokens with its own key (RS256 with RSA
//! 2048, or ES256 with P-256). The private key leaves this module only as
//! PKCS#8 DER in a [`Zeroizing`] buffer, for the vault to encrypt; the `kid`
//! is the key's RFC 7638 JWK thumbprint, so it is derived, stable and
//! collision-free across tenants.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::jws::{self, PrivateKey, PublicParts};
use crate::jwt::JwtError;

/// The JWS `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A tenant key's signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA 2048-bit keys.
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA with P-256 and SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

impl SigningAlg {
    /// The JOSE name: `"RS256"` or `"ES256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = JwtError;

    /// Parses the JOSE name (case-sensitive, as JOSE names are).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            _ => Err(JwtError::UnsupportedAlg),
        }
    }
}

/// A freshly generated tenant signing key.
pub struct GeneratedSigningKey {
    /// The key's algorithm.
    pub alg: SigningAlg,
    /// RFC 7638 thumbprint of the public key (SHA-256, base64url).
    pub kid: String,
    /// The private key, PKCS#8 v1 DER, zeroed on drop. Store encrypted only.
    pub private_pkcs8: Zeroizing<Vec<u8>>,
    /// The public key as a JWK, ready for the tenant's JWKS.
    pub public_jwk: Value,
}

impl fmt::Debug for GeneratedSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedSigningKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// Generates a tenant signing key: RSA 2048 for RS256, P-256 for ES256.
pub fn generate_signing_key(alg: SigningAlg) -> Result<GeneratedSigningKey, JwtError> {
    let (key, private_pkcs8) = PrivateKey::generate(alg)?;
    let (public_jwk, kid) = jwk_with_kid(alg, &key.public_parts()?)?;
    Ok(GeneratedSigningKey { alg, kid, private_pkcs8, public_jwk })
}

/// Recomputes the public JWK (with `alg`, `use` and `kid`) from a stored
/// PKCS#8 private key.
pub fn public_jwk(alg: SigningAlg, private_pkcs8: &[u8]) -> Result<Value, JwtError> {
    let key = PrivateKey::from_pkcs8(alg, private_pkcs8)?;
    jwk_with_kid(alg, &key.public_parts()?).map(|(jwk, _)| jwk)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of an RSA
/// or EC public JWK. Only the required members count, so `alg`, `use` and
/// `kid` do not change it.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, JwtError> {
    let member = |name: &str| -> Result<String, JwtError> {
        let v = jwk.get(name).and_then(Value::as_str).ok_or(JwtError::InvalidKey)?;
        serde_json::to_string(v).map_err(|_| JwtError::InvalidKey)
    };
    // Members in lexicographic order, no whitespace (RFC 7638 §3).
    let canonical = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, member("e")?, member("n")?),
        Some("EC") => {
            format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, member("crv")?, member("x")?, member("y")?)
        }
        _ => return Err(JwtError::InvalidKey),
    };
    Ok(jws::b64(&jws::sha256(canonical.as_bytes())))
}

fn jwk_of(alg: SigningAlg, parts: &PublicParts) -> Value {
    // serde_json's `preserve_order` keeps the members in this order.
    let mut jwk = match parts {
        PublicParts::Rsa { n, e } => serde_json::json!({ "kty": "RSA", "n": n, "e": e }),
        PublicParts::Ec { x, y } => serde_json::json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
    };
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("alg".into(), Value::from(alg.as_str()));
        obj.insert("use".into(), Value::from("sig"));
    }
    jwk
}

/// The public JWK with its thumbprint as `kid`, and that `kid`.
fn jwk_with_kid(alg: SigningAlg, parts: &PublicParts) -> Result<(Value, String), JwtError> {
    let mut jwk = jwk_of(alg, parts);
    let kid = jwk_thumbprint(&jwk)?;
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), Value::from(kid.clone()));
    }
    Ok((jwk, kid))
}

/// Signs access tokens (compact JWS) with one tenant key. Cheap to share
/// (`Send + Sync`); build it once per key, not per token.
pub struct TokenSigner {
    alg: SigningAlg,
    kid: String,
    key: PrivateKey,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SignHeader<'a> {
    alg: &'static str,
    typ: &'a str,
    kid: &'a str,
}

impl TokenSigner {
    /// A signer for a stored key. `kid` should be the key's thumbprint (as
    /// returned by [`generate_signing_key`]), since that is the `kid` its
    /// published JWK carries.
    pub fn new(alg: SigningAlg, kid: impl Into<String>, private_pkcs8: &[u8]) -> Result<Self, JwtError> {
        Ok(Self { alg, kid: kid.into(), key: PrivateKey::from_pkcs8(alg, private_pkcs8)? })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The `kid` put in every header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK of this key, with this signer's `kid`.
    pub fn public_jwk(&self) -> Result<Value, JwtError> {
        let mut jwk = jwk_of(self.alg, &self.key.public_parts()?);
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), Value::from(self.kid.clone()));
        }
        Ok(jwk)
    }

    /// Signs `claims` as an access token: header `{"alg","typ":"at+jwt","kid"}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, JwtError> {
        self.sign_with_typ(ACCESS_TOKEN_TYP, claims)
    }

    /// Signs `claims` with another `typ` (for example `"JWT"`).
    pub fn sign_with_typ<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JwtError> {
        let header = SignHeader { alg: self.alg.as_str(), typ, kid: &self.kid };
        let header = serde_json::to_vec(&header).map_err(|_| JwtError::Crypto)?;
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Crypto)?;
        let mut token = jws::b64(&header);
        token.push('.');
        token.push_str(&jws::b64(&payload));
        let signature = self.key.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&jws::b64(&signature));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_helpers::{key, signer};
    use serde_json::json;

    fn member_names(jwk: &Value) -> Vec<&str> {
        jwk.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn alg_names_round_trip() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            assert_eq!(alg.as_str().parse::<SigningAlg>().unwrap(), alg);
            assert_eq!(serde_json::to_value(alg).unwrap(), json!(alg.as_str()));
            assert_eq!(serde_json::from_value::<SigningAlg>(json!(alg.as_str())).unwrap(), alg);
            assert_eq!(alg.to_string(), alg.as_str());
        }
        for bad in ["rs256", "HS256", "none", "PS256", ""] {
            assert_eq!(bad.parse::<SigningAlg>(), Err(JwtError::UnsupportedAlg));
        }
    }

    #[test]
    fn rsa_jwk_has_the_rfc7517_members() {
        let k = key(SigningAlg::Rs256);
        assert_eq!(member_names(&k.public_jwk), ["kty", "n", "e", "alg", "use", "kid"]);
        assert_eq!(k.public_jwk["kty"], "RSA");
        assert_eq!(k.public_jwk["alg"], "RS256");
        assert_eq!(k.public_jwk["use"], "sig");
        assert_eq!(k.public_jwk["e"], "AQAB");
        let n = jws::b64_decode(k.public_jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus, no leading zero");
        assert!(n[0] >= 0x80);
        assert_eq!(k.public_jwk["kid"], k.kid.as_str());
    }

    #[test]
    fn ec_jwk_has_the_rfc7517_members() {
        let k = key(SigningAlg::Es256);
        assert_eq!(member_names(&k.public_jwk), ["kty", "crv", "x", "y", "alg", "use", "kid"]);
        assert_eq!(k.public_jwk["crv"], "P-256");
        for c in ["x", "y"] {
            assert_eq!(jws::b64_decode(k.public_jwk[c].as_str().unwrap()).unwrap().len(), 32);
        }
        assert_eq!(k.public_jwk["alg"], "ES256");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_and_stable() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let k = key(alg);
            assert_eq!(k.kid.len(), 43);
            let again = public_jwk(alg, &k.private_pkcs8).unwrap();
            assert_eq!(again, k.public_jwk);
            assert_eq!(jwk_thumbprint(&again).unwrap(), k.kid);
            assert_eq!(signer(k).public_jwk().unwrap(), k.public_jwk);
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(jwk_thumbprint(&json!({"kty": "oct", "k": "x"})), Err(JwtError::InvalidKey));
    }

    #[test]
    fn keys_are_unique_and_pkcs8() {
        let a = generate_signing_key(SigningAlg::Es256).unwrap();
        let b = generate_signing_key(SigningAlg::Es256).unwrap();
        assert_ne!(a.kid, b.kid);
        assert_ne!(*a.private_pkcs8, *b.private_pkcs8);
        // DER SEQUENCE, and the wrong algorithm refuses it.
        assert_eq!(a.private_pkcs8[0], 0x30);
        assert_eq!(public_jwk(SigningAlg::Rs256, &a.private_pkcs8).err(), Some(JwtError::InvalidKey));
        let rsa = key(SigningAlg::Rs256);
        assert_eq!(public_jwk(SigningAlg::Es256, &rsa.private_pkcs8).err(), Some(JwtError::InvalidKey));
        assert_eq!(public_jwk(SigningAlg::Es256, b"junk").err(), Some(JwtError::InvalidKey));
        assert!(TokenSigner::new(SigningAlg::Rs256, "k", b"").is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let k = key(alg);
            let shown = format!("{k:?} {:?}", signer(k));
            assert!(shown.contains(&k.kid));
            assert!(!shown.contains("private_pkcs8"));
            assert!(!shown.contains(&format!("{:?}", &k.private_pkcs8[..8])));
            assert!(!shown.contains(&jws::b64(&k.private_pkcs8[..24])));
        }
    }

    #[test]
    fn header_is_alg_typ_kid() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
            let k = key(alg);
            let t = signer(k).sign(&json!({"sub": "x"})).unwrap();
            let header = t.split('.').next().unwrap();
            let header: Value = serde_json::from_slice(&jws::b64_decode(header).unwrap()).unwrap();
            assert_eq!(header, json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": k.kid}));
            let sig = jws::b64_decode(t.rsplit('.').next().unwrap()).unwrap();
            assert_eq!(sig.len(), if alg == SigningAlg::Rs256 { 256 } else { 64 });
            let t2 = signer(k).sign_with_typ("JWT", &json!({})).unwrap();
            assert_eq!(crate::peek(&t2).unwrap().alg, alg.as_str());
        }
    }
}
