//! Attack tests of the token decisions (M1, M2, P2.3, P2.4): each forged, misdirected or stale
//! token gets its exact [`AuthError`]; only the valid ones yield a principal.

#![allow(clippy::unwrap_used)] // a failed unwrap in a test is a test failure with its message

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use warden_authn::{
    AuthError, ClaimMap, KeySet, Requirement, TokenCache, Verifier, VerifierConfig,
};

const ISS: &str = "http://127.0.0.1:4000";
const AUD: &str = "http://127.0.0.1:8080/mcp";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

struct Issuer {
    kid: String,
    pem: String,
    public_raw: Vec<u8>,
}

impl Issuer {
    fn ec(kid: &str) -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self {
            kid: kid.into(),
            pem: kp.serialize_pem(),
            public_raw: kp.public_key_raw().to_vec(),
        }
    }

    fn jwk(&self) -> Value {
        let (x, y) = self.public_raw[1..].split_at(32);
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": B64.encode(x), "y": B64.encode(y)})
    }

    fn mint(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        h.typ = Some("at+jwt".into());
        self.mint_with(h, claims)
    }

    fn mint_with(&self, h: Header, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }
}

fn jwks(issuers: &[&Issuer]) -> KeySet {
    let keys: Vec<Value> = issuers.iter().map(|i| i.jwk()).collect();
    KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn config() -> VerifierConfig {
    VerifierConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway_secs: 30,
        max_lifetime_secs: Some(3600),
        require_at_jwt: true,
        claims: ClaimMap::default(),
    }
}

fn verifier() -> Verifier {
    Verifier::new(config()).unwrap()
}

fn good(t: u64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": t, "exp": t + 600, "scope": "mcp tools.read"})
}

fn with(t: u64, k: &str, v: Value) -> Value {
    let mut c = good(t);
    match v {
        Value::Null => c.as_object_mut().unwrap().remove(k),
        v => c.as_object_mut().unwrap().insert(k.into(), v),
    };
    c
}

#[test]
fn a_valid_token_yields_its_principal() {
    let (iss, t) = (Issuer::ec("k1"), now());
    let v = verifier()
        .verify(&iss.mint(&good(t)), &jwks(&[&iss]), t)
        .unwrap();
    assert_eq!(v.principal.id().as_ref(), format!("{ISS} alice"));
    assert_eq!(v.principal.scopes, ["mcp", "tools.read"]);
    assert_eq!((v.expires_at, v.kid.as_deref()), (t + 600, Some("k1")));
    // Audience as an array containing Warden's URI among others is fine (RFC 7519 §4.1.3).
    let multi = with(t, "aud", json!(["other", AUD]));
    assert!(
        verifier()
            .verify(&iss.mint(&multi), &jwks(&[&iss]), t)
            .is_ok()
    );
}

#[test]
fn misdirected_and_stale_tokens_are_refused_each_with_its_reason() {
    let (iss, t) = (Issuer::ec("k1"), now());
    let keys = jwks(&[&iss]);
    let cases: Vec<(&str, Value, AuthError)> = vec![
        (
            "wrong audience",
            with(t, "aud", json!("http://127.0.0.1:9999/mcp")),
            AuthError::WrongAudience,
        ),
        (
            "no audience",
            with(t, "aud", Value::Null),
            AuthError::MissingClaim("aud"),
        ),
        (
            "another issuer",
            with(t, "iss", json!("http://127.0.0.1:4001")),
            AuthError::WrongIssuer,
        ),
        (
            "no issuer",
            with(t, "iss", Value::Null),
            AuthError::MissingClaim("iss"),
        ),
        (
            "no subject",
            with(t, "sub", Value::Null),
            AuthError::MissingClaim("sub"),
        ),
        (
            "expired",
            json!({"iss": ISS, "aud": AUD, "sub": "a", "iat": t - 700, "exp": t - 31}),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            with(t, "nbf", json!(t + 31)),
            AuthError::NotYetValid,
        ),
        (
            "issued in the future",
            json!({"iss": ISS, "aud": AUD, "sub": "a", "iat": t + 300, "exp": t + 600}),
            AuthError::NotYetValid,
        ),
        (
            "too long-lived",
            with(t, "exp", json!(t + 3601)),
            AuthError::LifetimeTooLong(3601),
        ),
        (
            "no iat with a maximum lifetime",
            with(t, "iat", Value::Null),
            AuthError::MissingClaim("iat"),
        ),
        (
            "exp as a string",
            with(t, "exp", json!("soon")),
            AuthError::MissingClaim("exp"),
        ),
    ];
    for (what, claims, want) in cases {
        let got = verifier().verify(&iss.mint(&claims), &keys, t);
        assert_eq!(
            got.map(|v| v.principal.id().to_string()),
            Err(want),
            "{what}"
        );
    }
    // Within the leeway is still valid: 29 s past exp.
    let grace = json!({"iss": ISS, "aud": AUD, "sub": "a", "iat": t - 600, "exp": t - 29});
    assert!(verifier().verify(&iss.mint(&grace), &keys, t).is_ok());
}

#[test]
fn forged_tokens_are_refused() {
    let (iss, t) = (Issuer::ec("k1"), now());
    let keys = jwks(&[&iss]);
    let payload = B64.encode(good(t).to_string());

    // alg: none, no signature.
    let none = format!(
        "{}.{payload}.",
        B64.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#)
    );
    assert_eq!(
        verifier().verify(&none, &keys, t).unwrap_err(),
        AuthError::AlgorithmNotAllowed("none".into())
    );

    // HS256 signed with the issuer's public key, as PEM-ish bytes and as the raw point.
    for secret in [iss.public_raw.clone(), iss.jwk().to_string().into_bytes()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        h.typ = Some("at+jwt".into());
        let forged =
            jsonwebtoken::encode(&h, &good(t), &EncodingKey::from_secret(&secret)).unwrap();
        assert!(matches!(
            verifier().verify(&forged, &keys, t),
            Err(AuthError::AlgorithmNotAllowed(_))
        ));
    }

    // A tampered payload under a genuine signature.
    let genuine = iss.mint(&good(t));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let evil = B64.encode(with(t, "sub", json!("admin")).to_string());
    parts[1] = &evil;
    assert_eq!(
        verifier().verify(&parts.join("."), &keys, t).unwrap_err(),
        AuthError::BadSignature
    );

    // Signed by a key the issuer never published, under the issuer's kid.
    let stranger = Issuer {
        kid: "k1".into(),
        ..Issuer::ec("x")
    };
    assert_eq!(
        verifier()
            .verify(&stranger.mint(&good(t)), &keys, t)
            .unwrap_err(),
        AuthError::BadSignature
    );

    // RS256 claimed for the EC key's kid: no RSA key with that id.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k1".into());
    h.typ = Some("at+jwt".into());
    let head = B64.encode(serde_json::to_vec(&h).unwrap());
    let rs = format!("{head}.{payload}.{}", B64.encode([0u8; 256]));
    assert_eq!(
        verifier().verify(&rs, &keys, t).unwrap_err(),
        AuthError::UnknownKey
    );

    // Not at+jwt where required.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    assert_eq!(
        verifier()
            .verify(&iss.mint_with(h, &good(t)), &keys, t)
            .unwrap_err(),
        AuthError::WrongType
    );

    // Garbage.
    for junk in [
        "",
        "a.b",
        "a.b.c.d",
        "...",
        "eyJ.eyJ.x",
        &"a".repeat(20_000),
    ] {
        assert!(verifier().verify(junk, &keys, t).is_err(), "{junk:.20}");
    }
}

#[test]
fn symmetric_algorithms_cannot_be_configured() {
    let mut c = config();
    c.algorithms.push(Algorithm::HS256);
    assert!(Verifier::new(c).is_err());
    let mut c = config();
    c.algorithms.clear();
    assert!(Verifier::new(c).is_err());
}

#[test]
fn key_rotation_picks_up_the_new_kid_and_drops_the_retired_one_even_from_the_cache() {
    let (old, new, t) = (Issuer::ec("k1"), Issuer::ec("k2"), now());
    let (old_token, new_token) = (old.mint(&good(t)), new.mint(&good(t)));
    let mut cache = TokenCache::new(16);
    let before = jwks(&[&old]);
    let v = verifier().verify(&old_token, &before, t).unwrap();
    cache.insert(&old_token, v, t);
    assert_eq!(
        verifier().verify(&new_token, &before, t).unwrap_err(),
        AuthError::UnknownKey
    );
    assert!(
        cache
            .get(&old_token, &before, t, 30)
            .is_some_and(|r| r.is_ok())
    );

    let after = jwks(&[&new]);
    assert!(verifier().verify(&new_token, &after, t).is_ok());
    assert!(
        cache.get(&old_token, &after, t, 30).is_none(),
        "a retired key's token leaves the cache"
    );
    assert_eq!(
        verifier().verify(&old_token, &after, t).unwrap_err(),
        AuthError::UnknownKey
    );
}

#[test]
fn a_cached_token_expires_mid_session() {
    let (iss, t) = (Issuer::ec("k1"), now());
    let token = iss.mint(&good(t));
    let keys = jwks(&[&iss]);
    let mut cache = TokenCache::new(16);
    cache.insert(&token, verifier().verify(&token, &keys, t).unwrap(), t);
    assert!(
        cache
            .get(&token, &keys, t + 629, 30)
            .is_some_and(|r| r.is_ok())
    );
    // RFC 7519 §4.1.4: not accepted *on or after* `exp` (here plus 30 s of leeway).
    assert_eq!(
        cache.get(&token, &keys, t + 630, 30).map(|r| r.map(|_| ())),
        Some(Err(AuthError::Expired))
    );
    assert!(cache.is_empty());
    // A different token with the same claims is another entry: the key is the token's digest.
    assert!(cache.get(&iss.mint(&good(t)), &keys, t, 30).is_none());
}

#[test]
fn the_cache_is_bounded() {
    let (iss, t) = (Issuer::ec("k1"), now());
    let keys = jwks(&[&iss]);
    let mut cache = TokenCache::new(2);
    for sub in ["a", "b", "c"] {
        let tok = iss.mint(&with(t, "sub", json!(sub)));
        cache.insert(&tok, verifier().verify(&tok, &keys, t).unwrap(), t);
    }
    assert_eq!(cache.len(), 2);
}

#[test]
fn scopes_and_step_up_are_demanded_in_full() {
    let (iss, t) = (Issuer::ec("k1"), now());
    let keys = jwks(&[&iss]);
    let claims = with(t, "amr", json!(["pwd"]));
    let p = verifier()
        .verify(&iss.mint(&with_acr(claims, "urn:low")), &keys, t)
        .unwrap()
        .principal;
    let levels = vec!["urn:low".to_owned(), "urn:high".to_owned()];

    let method = Requirement {
        scopes: vec!["mcp".into()],
        ..Default::default()
    };
    assert!(method.check(&p, &levels).is_ok());
    let tool = Requirement {
        scopes: vec!["tools.admin".into(), "mcp".into()],
        ..Default::default()
    };
    assert_eq!(
        method.and(&tool).check(&p, &levels),
        Err(AuthError::InsufficientScope {
            needed: vec!["mcp".into(), "tools.admin".into()]
        })
    );
    let mfa = Requirement {
        mfa: true,
        ..method.clone()
    };
    assert!(matches!(
        mfa.check(&p, &levels),
        Err(AuthError::StepUp { mfa: true, .. })
    ));
    let high = Requirement {
        min_acr: Some("urn:high".into()),
        ..method.clone()
    };
    assert!(matches!(
        high.check(&p, &levels),
        Err(AuthError::StepUp { .. })
    ));
    let unknown = Requirement {
        min_acr: Some("urn:unlisted".into()),
        ..method.clone()
    };
    assert!(
        unknown.check(&p, &levels).is_err(),
        "an unlisted level is never met"
    );

    let strong = with_acr(with(t, "amr", json!(["pwd", "mfa"])), "urn:high");
    let p = verifier()
        .verify(&iss.mint(&strong), &keys, t)
        .unwrap()
        .principal;
    assert!(mfa.check(&p, &levels).is_ok() && high.check(&p, &levels).is_ok());
}

fn with_acr(mut c: Value, acr: &str) -> Value {
    c.as_object_mut().unwrap().insert("acr".into(), json!(acr));
    c
}

#[test]
fn rs256_keys_from_der_verify() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let keys = KeySet::single(
        Some("r1".into()),
        Algorithm::RS256,
        DecodingKey::from_rsa_der(kp.public_key_raw()),
    )
    .unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("r1".into());
    h.typ = Some("at+jwt".into());
    let t = now();
    let token = jsonwebtoken::encode(
        &h,
        &good(t),
        &EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(verifier().verify(&token, &keys, t).is_ok());
    assert!(KeySet::single(None, Algorithm::HS256, DecodingKey::from_secret(b"k")).is_none());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any change to a genuine token's bytes is refused, and nothing panics.
    #[test]
    fn a_changed_byte_never_verifies(pos in 0usize..4096, byte in proptest::prelude::any::<u8>()) {
        use std::sync::OnceLock;
        static FIX: OnceLock<(String, KeySet, u64)> = OnceLock::new();
        let (token, keys, t) = FIX.get_or_init(|| {
            let (iss, t) = (Issuer::ec("k1"), now());
            (iss.mint(&good(t)), jwks(&[&iss]), t)
        });
        let mut bytes = token.clone().into_bytes();
        let pos = pos % bytes.len();
        proptest::prop_assume!(bytes[pos] != byte);
        bytes[pos] = byte;
        let changed = String::from_utf8_lossy(&bytes);
        // Base64url's last character may carry unused bits: only a decoded change counts.
        let same = changed.split('.').map(|p| B64.decode(p).ok()).collect::<Vec<_>>()
            == token.split('.').map(|p| B64.decode(p).ok()).collect::<Vec<_>>();
        proptest::prop_assert!(same || verifier().verify(&changed, keys, *t).is_err());
    }

    #[test]
    fn arbitrary_input_never_panics(s in ".{0,300}") {
        let iss = Issuer::ec("k1");
        let _ = verifier().verify(&s, &jwks(&[&iss]), now());
        let _ = warden_authn::bearer::parse([s.as_bytes()]);
        let _ = KeySet::from_jwks(s.as_bytes());
    }
}
