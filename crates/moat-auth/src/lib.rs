//! Authentication for moat: the credentials callers present and the tokens
//! the gateway issues, as pure functions and types.
//!
//! * [`keys`] — API keys: generation, offline format and checksum checks,
//!   Argon2id hashing and the verification cache that keeps Argon2id off
//!   the hot path.
//! * [`signing`] — per-tenant signing keys (RS256 / RSA 2048, ES256 /
//!   P-256): generation as PKCS#8 for the vault, public JWKs with RFC 7638
//!   thumbprint `kid`s for the tenant's JWKS, and [`TokenSigner`] for
//!   RFC 9068 `at+jwt` access tokens.
//! * [`jwt`] — [`AccessClaims`], the unverified [`peek`] that routes a token
//!   to its tenant, [`VerifyKey`] and [`verify_access`], and
//!   [`audience_covers`] for RFC 8707 resource matching.
//! * [`oidc`] — [`verify_id_token`]: OpenID Connect ID tokens from external
//!   identity providers, checked against their JWKS (OIDC Core §3.1.3.7).
//! * [`pkce`] — PKCE S256 (RFC 7636).
//! * [`opaque`] — high-entropy opaque secrets (authorization codes, refresh
//!   tokens, session ids), their SHA-256 lookup digest, constant-time
//!   comparison.
//!
//! All cryptography goes through aws-lc-rs; JWS signing and verification
//! live in one private module (`jws`) that explains why it is not the
//! `jsonwebtoken` crate. Secrets are `SecretString` or `Zeroizing` buffers,
//! never printed by `Debug` nor put in errors.
//!
//! ```
//! use moat_auth::{AccessClaims, SigningAlg, TokenSigner, VerifyKey, generate_signing_key, verify_access};
//!
//! # fn main() -> Result<(), moat_auth::JwtError> {
//! let key = generate_signing_key(SigningAlg::Es256)?; // private_pkcs8 goes to the vault
//! let signer = TokenSigner::new(key.alg, key.kid.clone(), &key.private_pkcs8)?;
//! let claims = AccessClaims {
//!     iss: "https://gw.example/t/acme".into(),
//!     sub: "u_1".into(),
//!     aud: "https://gw.example/mcp".into(),
//!     exp: 1_700_000_300,
//!     iat: 1_700_000_000,
//!     nbf: 1_700_000_000,
//!     jti: "j_1".into(),
//!     client_id: "c_1".into(),
//!     scope: "mcp:tools".into(),
//!     tid: "t_1".into(),
//!     tenant: "acme".into(),
//!     kind: "human".into(),
//!     allowed_origins: vec![],
//!     sid: None,
//!     epoch: 0,
//!     role: None,
//! };
//! let token = signer.sign(&claims)?;
//!
//! let keys = [VerifyKey::from_jwk(&key.public_jwk)?]; // from the tenant's JWKS
//! let verified = verify_access(&token, &keys, "https://gw.example/t/acme", 1_700_000_010, 60)?;
//! assert!(moat_auth::audience_covers(&verified.aud, "https://gw.example/mcp/github"));
//! # Ok(())
//! # }
//! ```
//!
//! This crate owns credentials of callers and the token formats; it does no
//! I/O (no HTTP, no storage, no clock: callers pass `now`) and knows nothing
//! of MCP or storage schemas.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod jws;
pub mod jwt;
pub mod keys;
pub mod oidc;
pub mod opaque;
pub mod pkce;
pub mod signing;
#[cfg(test)]
mod test_helpers;

pub use jwt::{AccessClaims, JwtError, MAX_ACCESS_TOKEN_LEN, Peeked, VerifyKey, audience_covers, peek, verify_access};
pub use keys::{
    CachedKey, GeneratedKey, KeyCache, KeyError, KeyFormatError, ParsedKey, generate_key, hash_token, parse_key,
    random_bytes, reveal, verify_token,
};
pub use oidc::{IdTokenClaims, MAX_ID_TOKEN_LEN, verify_id_token};
pub use opaque::{ct_eq, opaque_token, token_digest};
pub use pkce::{pkce_s256_matches, valid_challenge, valid_verifier};
pub use signing::{
    ACCESS_TOKEN_TYP, GeneratedSigningKey, SigningAlg, TokenSigner, generate_signing_key, jwk_thumbprint, public_jwk,
};
