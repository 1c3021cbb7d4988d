//! Compact JWS (RFC 7515) over aws-lc-rs: the one place in this crate where
//! signatures are made and checked.
//!
//! Why not the `jsonwebtoken` crate (which does have an `aws_lc_rs`
//! feature)? Because on the paths moat needs it would only split the token
//! and call aws-lc-rs, while getting in the way everywhere else:
//!
//! * its `Validation` reads the wall clock; moat passes `now` explicitly
//!   (testable, one clock per request), so `exp`/`nbf`/`iat`, `iss`, `aud`,
//!   `typ`, `kid` and `nonce` checks would all be ours anyway;
//! * its aws-lc RSA signer wants PKCS#1 and re-parses (and re-checks) the
//!   private key on every signature; the vault stores PKCS#8 and we keep the
//!   parsed key pair;
//! * its crypto backend is a process-global `CryptoProvider` chosen by
//!   crate features: if anything else in the tree enabled its
//!   `rust_crypto` feature (which pulls the `rsa` crate), feature
//!   unification would silently leave no default provider and signing would
//!   panic at run time.
//!
//! What remains is small and kept strict: exactly three base64url parts
//! without padding (canonical encoding only), a size bound before any
//! decoding, an algorithm allow-list bound to the key (never `none`, never
//! HMAC, so no RSA-public-key-as-HMAC-secret confusion), any `crit` header
//! refused, embedded keys (`jwk`, `jku`, `x5u`, `x5c`) ignored, and the
//! payload only decoded after the signature verified.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::jwt::JwtError;
use crate::signing::SigningAlg;

/// Smallest and largest RSA modulus accepted, in bits.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// The JWS algorithms moat verifies. Anything else (`none`, `HS*`, ...)
/// never gets this far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwsAlg {
    Rs256,
    Ps256,
    Es256,
}

impl JwsAlg {
    pub(crate) fn parse(s: &str) -> Result<Self, JwtError> {
        match s {
            "RS256" => Ok(Self::Rs256),
            "PS256" => Ok(Self::Ps256),
            "ES256" => Ok(Self::Es256),
            _ => Err(JwtError::UnsupportedAlg),
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
        }
    }
}

impl From<SigningAlg> for JwsAlg {
    fn from(alg: SigningAlg) -> Self {
        match alg {
            SigningAlg::Rs256 => Self::Rs256,
            SigningAlg::Es256 => Self::Es256,
        }
    }
}

/// The JOSE header members moat looks at. Unknown members are ignored (in
/// particular `jwk`/`jku`/`x5u`/`x5c`: keys come from configuration, never
/// from the token); duplicates are refused by serde.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A compact JWS split into its parts; the payload is still encoded.
pub(crate) struct Parts<'a> {
    pub header: Header,
    pub signing_input: &'a [u8],
    pub payload_b64: &'a str,
    pub signature: Vec<u8>,
}

impl Parts<'_> {
    /// The header's algorithm, if it is one moat verifies.
    pub(crate) fn alg(&self) -> Result<JwsAlg, JwtError> {
        JwsAlg::parse(&self.header.alg)
    }

    /// Decodes the payload. Call only after the signature verified (or for
    /// an explicitly unverified peek).
    pub(crate) fn payload<T: DeserializeOwned>(&self) -> Result<T, JwtError> {
        from_json_object(&b64_decode(self.payload_b64)?)
    }
}

/// Splits and decodes the header and signature of a compact JWS of at most
/// `max_len` bytes. Refuses a `crit` header: moat understands no extension.
pub(crate) fn split(token: &str, max_len: usize) -> Result<Parts<'_>, JwtError> {
    if token.len() > max_len {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    // An empty signature is let through to be refused by the algorithm
    // check (`alg: none` tokens look like that), never by verification.
    if h.is_empty() || p.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header: Header = from_json_object(&b64_decode(h)?)?;
    if header.crit.is_some() {
        return Err(JwtError::Malformed);
    }
    let signature = b64_decode(s)?;
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(JwtError::Malformed)?.as_bytes();
    Ok(Parts { header, signing_input, payload_b64: p, signature })
}

/// Deserializes a JSON object. serde would also fill a struct from a JSON
/// array, positionally; the JOSE header and JWT claims must be objects
/// (RFC 7515 §4, RFC 7519 §7.2), so anything else is refused first.
fn from_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JwtError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| JwtError::Malformed)
}

/// base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url: no padding, no whitespace, canonical trailing bits (so
/// a token has exactly one encoding).
pub(crate) fn b64_decode(s: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)
}

/// A public key, parsed once, that verifies JWS signatures.
#[derive(Clone)]
pub(crate) enum PublicKey {
    Rsa {
        /// Modulus, big-endian without leading zeros (kept for PS256).
        n: Vec<u8>,
        /// Public exponent, big-endian without leading zeros.
        e: Vec<u8>,
        /// The key parsed for RSASSA-PKCS1-v1_5 with SHA-256.
        pkcs1: sig::ParsedPublicKey,
    },
    EcP256(sig::ParsedPublicKey),
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

impl PublicKey {
    /// An RSA key from its modulus and exponent (big-endian). Leading zero
    /// octets are tolerated (some libraries emit them); the modulus must be
    /// 2048–8192 bits and the exponent odd, ≥ 3 and at most 32 bits.
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<Self, JwtError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(JwtError::InvalidKey);
        }
        let e_ok = matches!(e.last(), Some(&low) if low & 1 == 1) && e.len() <= 4 && e != [1];
        if !e_ok {
            return Err(JwtError::InvalidKey);
        }
        let pkcs1 = sig::RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| JwtError::InvalidKey)?;
        Ok(Self::Rsa { n: n.to_vec(), e: e.to_vec(), pkcs1 })
    }

    /// A P-256 key from its affine coordinates (32 bytes each); aws-lc-rs
    /// checks the point is on the curve.
    pub(crate) fn ec_p256(x: &[u8], y: &[u8]) -> Result<Self, JwtError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(JwtError::InvalidKey);
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        sig::ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point)
            .map(Self::EcP256)
            .map_err(|_| JwtError::InvalidKey)
    }

    /// Whether this key's type can verify `alg` at all.
    pub(crate) fn supports(&self, alg: JwsAlg) -> bool {
        matches!((self, alg), (Self::Rsa { .. }, JwsAlg::Rs256 | JwsAlg::Ps256) | (Self::EcP256(_), JwsAlg::Es256))
    }

    /// The JWK `kty` of this key.
    pub(crate) fn kty(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA",
            Self::EcP256(_) => "EC",
        }
    }

    /// Verifies `signature` over `msg` with `alg`.
    pub(crate) fn verify(&self, alg: JwsAlg, msg: &[u8], signature: &[u8]) -> Result<(), JwtError> {
        let ok = match (self, alg) {
            (Self::Rsa { pkcs1, .. }, JwsAlg::Rs256) => pkcs1.verify_sig(msg, signature).is_ok(),
            (Self::Rsa { n, e, .. }, JwsAlg::Ps256) => sig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
                .verify(&sig::RSA_PSS_2048_8192_SHA256, msg, signature)
                .is_ok(),
            (Self::EcP256(key), JwsAlg::Es256) => key.verify_sig(msg, signature).is_ok(),
            _ => return Err(JwtError::UnsupportedAlg),
        };
        if ok { Ok(()) } else { Err(JwtError::BadSignature) }
    }
}

/// A private signing key, parsed once from PKCS#8.
pub(crate) enum PrivateKey {
    Rsa(sig::RsaKeyPair),
    EcP256(sig::EcdsaKeyPair),
}

/// The public half of a signing key, as JWK members (base64url).
pub(crate) enum PublicParts {
    Rsa { n: String, e: String },
    Ec { x: String, y: String },
}

impl PrivateKey {
    /// Generates a key (RSA 2048 or P-256) and returns it with its PKCS#8
    /// v1 DER encoding.
    pub(crate) fn generate(alg: SigningAlg) -> Result<(Self, Zeroizing<Vec<u8>>), JwtError> {
        match alg {
            SigningAlg::Rs256 => {
                let pair = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| JwtError::Crypto)?;
                let der = pair.as_der().map_err(|_| JwtError::Crypto)?;
                let pkcs8 = Zeroizing::new(der.as_ref().to_vec());
                Ok((Self::Rsa(pair), pkcs8))
            }
            SigningAlg::Es256 => {
                let pair =
                    sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| JwtError::Crypto)?;
                let doc = pair.to_pkcs8v1().map_err(|_| JwtError::Crypto)?;
                let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
                Ok((Self::EcP256(pair), pkcs8))
            }
        }
    }

    /// Parses a PKCS#8 private key of the given algorithm.
    pub(crate) fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, JwtError> {
        match alg {
            SigningAlg::Rs256 => {
                let pair = sig::RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| JwtError::InvalidKey)?;
                if pair.public_modulus_len() * 8 < RSA_MIN_BITS {
                    return Err(JwtError::InvalidKey);
                }
                Ok(Self::Rsa(pair))
            }
            SigningAlg::Es256 => sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map(Self::EcP256)
                .map_err(|_| JwtError::InvalidKey),
        }
    }

    /// The public key as base64url JWK members.
    pub(crate) fn public_parts(&self) -> Result<PublicParts, JwtError> {
        match self {
            Self::Rsa(pair) => {
                let public = pair.public_key();
                Ok(PublicParts::Rsa {
                    n: b64(public.modulus().big_endian_without_leading_zero()),
                    e: b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Self::EcP256(pair) => {
                // Uncompressed SEC1 point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                match (point.first(), point.get(1..33), point.get(33..65), point.len()) {
                    (Some(0x04), Some(x), Some(y), 65) => Ok(PublicParts::Ec { x: b64(x), y: b64(y) }),
                    _ => Err(JwtError::Crypto),
                }
            }
        }
    }

    /// Signs `msg` (RS256: RSASSA-PKCS1-v1_5 SHA-256; ES256: fixed-length
    /// r‖s as JWS requires, not DER).
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, JwtError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            Self::Rsa(pair) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(&sig::RSA_PKCS1_SHA256, &rng, msg, &mut out).map_err(|_| JwtError::Crypto)?;
                Ok(out)
            }
            Self::EcP256(pair) => pair.sign(&rng, msg).map(|s| s.as_ref().to_vec()).map_err(|_| JwtError::Crypto),
        }
    }
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}
