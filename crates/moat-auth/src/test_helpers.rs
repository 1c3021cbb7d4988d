//! Keys and token builders shared by the unit tests. RSA generation is slow
//! in debug builds, so each algorithm's key is generated once per run.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::jws;
use crate::signing::{GeneratedSigningKey, SigningAlg, TokenSigner, generate_signing_key};

pub(crate) fn key(alg: SigningAlg) -> &'static GeneratedSigningKey {
    static RSA: OnceLock<GeneratedSigningKey> = OnceLock::new();
    static EC: OnceLock<GeneratedSigningKey> = OnceLock::new();
    let cell = match alg {
        SigningAlg::Rs256 => &RSA,
        SigningAlg::Es256 => &EC,
    };
    cell.get_or_init(|| generate_signing_key(alg).unwrap())
}

/// A second RSA key, for "signed by someone else" cases.
pub(crate) fn other_rsa_key() -> &'static GeneratedSigningKey {
    static OTHER: OnceLock<GeneratedSigningKey> = OnceLock::new();
    OTHER.get_or_init(|| generate_signing_key(SigningAlg::Rs256).unwrap())
}

pub(crate) fn signer(k: &GeneratedSigningKey) -> TokenSigner {
    TokenSigner::new(k.alg, k.kid.clone(), &k.private_pkcs8).unwrap()
}

/// A compact JWS from arbitrary header and claims JSON and signature bytes.
pub(crate) fn forge(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        jws::b64(&serde_json::to_vec(header).unwrap()),
        jws::b64(&serde_json::to_vec(claims).unwrap()),
        jws::b64(sig)
    )
}

/// Re-signs `header.claims` with `k`'s private key (for tokens whose header
/// or claims a test wants to control exactly).
pub(crate) fn sign_raw(k: &GeneratedSigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        jws::b64(&serde_json::to_vec(header).unwrap()),
        jws::b64(&serde_json::to_vec(claims).unwrap())
    );
    let key = jws::PrivateKey::from_pkcs8(k.alg, &k.private_pkcs8).unwrap();
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", jws::b64(&sig))
}

/// Junk that every parser must refuse without panicking.
pub(crate) fn junk() -> Vec<String> {
    let b = |v: &Value| jws::b64(&serde_json::to_vec(v).unwrap());
    let hdr = b(&json!({"alg": "RS256", "typ": "at+jwt", "kid": "k"}));
    vec![
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b.c".into(),
        "a.b.c.d".into(),
        "a..c".into(),
        "é.é.é".into(),
        "\0.\0.\0".into(),
        "Bearer x.y.z".into(),
        format!("{hdr}.."),
        format!("{hdr}.{hdr}"),
        format!("{hdr}.e30.AA=="),
        format!("{hdr}.e30.AA"),
        format!("{hdr}.e30=.AA"),
        format!("{hdr} .e30.AA"),
        format!("{}.e30.AA", b(&json!(null))),
        format!("{}.e30.AA", b(&json!([]))),
        format!("{}.e30.AA", b(&json!({"alg": 5}))),
        format!("{}.e30.AA", b(&json!({"alg": "RS256", "kid": ["x"]}))),
        format!("{}.e30.AA", b(&json!({"alg": "RS256", "alg ": "none"}))),
        format!("{hdr}.{}.AA", b(&json!("str"))),
        format!("{hdr}.{}.AA", b(&json!({"tid": 5, "exp": "x"}))),
        format!("{hdr}.bnVsbA.AA"),
        format!("{}.e30.AA", jws::b64(br#"{"alg":"RS256","typ":"at+jwt","kid":"k","alg":"none"}"#)),
        "x".repeat(9000),
        format!("{hdr}.{}.AA", "A".repeat(9000)),
    ]
}
