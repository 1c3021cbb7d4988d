use super::*;
use proptest::prelude::*;

fn ctx<'a>(t: &'a str, tier: &'a str, s: &'a str, c: &'a str, v: u32) -> RecordContext<'a> {
    RecordContext { tenant_id: t, tier, scope_id: s, credential_id: c, key_version: v }
}

#[derive(Debug, Clone)]
struct Ctx {
    tenant: String,
    tier: String,
    scope: String,
    cred: String,
    version: u32,
}

impl Ctx {
    fn get(&self) -> RecordContext<'_> {
        ctx(&self.tenant, &self.tier, &self.scope, &self.cred, self.version)
    }
}

fn any_ctx() -> impl Strategy<Value = Ctx> {
    (".{0,12}", "(personal|team|org|service|.{0,6})", ".{0,12}", ".{0,12}", any::<u32>())
        .prop_map(|(tenant, tier, scope, cred, version)| Ctx { tenant, tier, scope, cred, version })
}

#[test]
fn round_trip_and_format() {
    let dek = Dek::generate().unwrap();
    let c = ctx("t1", "team", "s1", "cred-1", 3);
    let sealed = seal(&dek, &c, b"hunter2").unwrap();
    assert_eq!(sealed.len(), 1 + 12 + 7 + 16);
    assert_eq!(sealed[0], RECORD_VERSION);
    assert_eq!(open(&dek, &c, &sealed).unwrap().expose_secret(), "hunter2");
    assert_eq!(open_bytes(&dek, &c, &sealed).unwrap().as_slice(), b"hunter2");
    let again = seal(&dek, &c, b"hunter2").unwrap();
    assert_ne!(sealed, again, "random nonce per record");
}

#[test]
fn empty_plaintext_round_trips() {
    let dek = Dek::generate().unwrap();
    let c = ctx("t", "org", "o", "c", 1);
    let sealed = seal(&dek, &c, b"").unwrap();
    assert_eq!(open(&dek, &c, &sealed).unwrap().expose_secret(), "");
}

#[test]
fn wrong_version_byte_truncation_and_garbage_fail() {
    let dek = Dek::generate().unwrap();
    let c = ctx("t", "org", "o", "c", 1);
    let mut sealed = seal(&dek, &c, b"value").unwrap();
    for n in 0..sealed.len() {
        assert!(matches!(open(&dek, &c, &sealed[..n]), Err(VaultError::Decrypt)), "prefix {n}");
    }
    sealed[0] = 0x02;
    assert!(matches!(open(&dek, &c, &sealed), Err(VaultError::Decrypt)));
    assert!(matches!(open(&dek, &c, &[]), Err(VaultError::Decrypt)));
}

#[test]
fn non_utf8_plaintext_is_refused_by_open_but_not_open_bytes() {
    let dek = Dek::generate().unwrap();
    let c = ctx("t", "org", "o", "c", 1);
    let sealed = seal(&dek, &c, &[0xff, 0xfe]).unwrap();
    assert!(matches!(open(&dek, &c, &sealed), Err(VaultError::Corrupt(_))));
    assert_eq!(open_bytes(&dek, &c, &sealed).unwrap().as_slice(), &[0xff, 0xfe]);
}

#[test]
fn dek_from_bytes_and_debug() {
    assert!(matches!(Dek::from_bytes(&[1u8; 31]), Err(VaultError::Corrupt(_))));
    assert!(matches!(Dek::from_bytes(&[1u8; 33]), Err(VaultError::Corrupt(_))));
    let dek = Dek::from_bytes(&[7u8; 32]).unwrap();
    assert_eq!(dek.expose(), &[7u8; 32]);
    let dbg = format!("{dek:?}");
    assert_eq!(dbg, "Dek([REDACTED])");
    assert_ne!(Dek::generate().unwrap().expose(), Dek::generate().unwrap().expose());
}

#[test]
fn decrypt_error_says_nothing_about_the_record() {
    let dek = Dek::generate().unwrap();
    let c = ctx("t", "org", "o", "c", 1);
    let sealed = seal(&dek, &c, b"super-secret-value").unwrap();
    let err = open(&dek, &ctx("t", "org", "o", "other", 1), &sealed).unwrap_err();
    assert_eq!(err.to_string(), "the record could not be decrypted");
}

#[test]
fn field_boundaries_are_unambiguous() {
    let dek = Dek::generate().unwrap();
    let a = scope_key_bytes(&dek, &ctx("t", "ab", "c", "x", 1)).unwrap();
    let b = scope_key_bytes(&dek, &ctx("t", "a", "bc", "x", 1)).unwrap();
    assert_ne!(*a, *b);
    let a = seal(&dek, &ctx("t", "team", "s", "ab", 1), b"v").unwrap();
    assert!(open(&dek, &ctx("t", "team", "sa", "b", 1), &a).is_err());
    // The scope key does not depend on the credential id or version (those are in the AAD).
    let k1 = scope_key_bytes(&dek, &ctx("t", "team", "s", "c1", 1)).unwrap();
    let k2 = scope_key_bytes(&dek, &ctx("t", "team", "s", "c2", 9)).unwrap();
    assert_eq!(*k1, *k2);
}

proptest! {
    #[test]
    fn prop_round_trip(c in any_ctx(), plain in ".{0,200}") {
        let dek = Dek::generate().unwrap();
        let sealed = seal(&dek, &c.get(), plain.as_bytes()).unwrap();
        prop_assert_eq!(sealed.len(), 1 + 12 + plain.len() + 16);
        let opened = open(&dek, &c.get(), &sealed).unwrap();
        prop_assert_eq!(opened.expose_secret(), plain.as_str());
    }

    #[test]
    fn prop_any_changed_field_fails(c in any_ctx(), field in 0usize..5, extra in "[a-z0-9]{1,4}", plain in ".{0,64}") {
        let dek = Dek::generate().unwrap();
        let sealed = seal(&dek, &c.get(), plain.as_bytes()).unwrap();
        let mut other = c.clone();
        match field {
            0 => other.tenant.push_str(&extra),
            1 => other.tier.push_str(&extra),
            2 => other.scope.push_str(&extra),
            3 => other.cred.push_str(&extra),
            _ => other.version = other.version.wrapping_add(1),
        }
        prop_assert!(matches!(open(&dek, &other.get(), &sealed), Err(VaultError::Decrypt)));
    }

    #[test]
    fn prop_any_flipped_bit_fails(c in any_ctx(), plain in ".{0,64}", bit in any::<prop::sample::Index>()) {
        let dek = Dek::generate().unwrap();
        let mut sealed = seal(&dek, &c.get(), plain.as_bytes()).unwrap();
        let i = bit.index(sealed.len() * 8);
        sealed[i / 8] ^= 1 << (i % 8);
        prop_assert!(matches!(open(&dek, &c.get(), &sealed), Err(VaultError::Decrypt)));
    }

    #[test]
    fn prop_other_tenant_never_opens(a in any_ctx(), b_tenant in ".{0,12}", plain in ".{0,64}") {
        prop_assume!(a.tenant != b_tenant);
        let dek_a = Dek::generate().unwrap();
        let dek_b = Dek::generate().unwrap();
        let sealed = seal(&dek_a, &a.get(), plain.as_bytes()).unwrap();
        let mut b = a.clone();
        b.tenant = b_tenant;
        // Neither B's own DEK nor A's DEK opens A's record under B's context.
        prop_assert!(open(&dek_b, &b.get(), &sealed).is_err());
        prop_assert!(open(&dek_a, &b.get(), &sealed).is_err());
        prop_assert!(open(&dek_b, &a.get(), &sealed).is_err());
    }

    #[test]
    fn prop_scopes_get_different_keys(a in any_ctx(), b in any_ctx()) {
        let triple = |c: &Ctx| (c.tenant.clone(), c.tier.clone(), c.scope.clone());
        prop_assume!(triple(&a) != triple(&b));
        let dek = Dek::generate().unwrap();
        let ka = scope_key_bytes(&dek, &a.get()).unwrap();
        let kb = scope_key_bytes(&dek, &b.get()).unwrap();
        prop_assert_ne!(*ka, *kb);
    }
}

#[test]
fn mac_tags_bind_key_tenant_and_purpose() {
    let dek = Dek::generate().unwrap();
    let tag = crate::mac_tag(&dek, "t1", "browser-session", b"abc").unwrap();
    assert!(crate::mac_verify(&dek, "t1", "browser-session", b"abc", &tag));
    assert!(!crate::mac_verify(&dek, "t2", "browser-session", b"abc", &tag));
    assert!(!crate::mac_verify(&dek, "t1", "other", b"abc", &tag));
    assert!(!crate::mac_verify(&dek, "t1", "browser-session", b"abd", &tag));
    assert!(!crate::mac_verify(&Dek::generate().unwrap(), "t1", "browser-session", b"abc", &tag));
    assert!(!crate::mac_verify(&dek, "t1", "browser-session", b"abc", "!!not base64"));
}
