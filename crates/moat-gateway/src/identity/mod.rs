//! Identity: moat's OAuth 2.1 authorization server, the tenants' signing
//! keys and JWKS, access-token verification, browser sessions and the login
//! through each tenant's OpenID Connect provider.
//!
//! ```text
//! /oauth/authorize ─▶ client + redirect + PKCE + resource checks ─▶ pending request (server side)
//!      ─▶ browser session? ─ no ─▶ tenant's IdP (code + PKCE + nonce) ─▶ /oauth/callback ─▶ session
//!      ─▶ consent (recorded) ─▶ single-use code ─▶ redirect (code, state, iss)
//! /oauth/token ─▶ client auth ─▶ code + verifier | refresh (rotated, reuse revokes the grant)
//!      | client credentials ─▶ JWT signed with the tenant's key (aud = resource) + opaque refresh
//! every request ─▶ peek tid ─▶ tenant's public keys ─▶ verify ─▶ audience ─▶ revocation ─▶ origin
//! ```
//!
//! Token formats and cryptography come from `moat-auth`; sealing of private
//! keys and the providers' client secrets from the vault; state from the
//! store. Module map: [`service`] (keys, issuing, verifying, revocation),
//! [`endpoints`] (the HTTP surface), [`login`] (the OpenID Connect relying
//! party), [`clients`] (registration, metadata documents), [`limits`]
//! (abuse limits), [`uris`] (redirect and resource rules), [`egress`] (the
//! SSRF guard), [`pages`] (the few HTML pages).

pub mod clients;
pub mod egress;
pub mod endpoints;
pub mod limits;
pub mod login;
pub mod pages;
pub mod service;
pub mod uris;

pub use service::{Identity, IssueRequest, IssuedToken, TokenFailure};
