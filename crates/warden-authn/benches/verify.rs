//! Criterion benchmarks of token verification (issue #14): a cold ES256 and RS256 check (header,
//! key selection, signature, claims, principal) and a cached one (SHA-256 of the token and a
//! table lookup, what a session's later requests pay).
//! Run: `cargo bench -p warden-authn --bench verify`.

#![allow(clippy::unwrap_used)] // a failed unwrap in a benchmark set-up is a failed run

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;
use warden_authn::{ClaimMap, KeySet, TokenCache, Verifier, VerifierConfig};

const ISS: &str = "http://127.0.0.1:4000";
const AUD: &str = "http://127.0.0.1:8080/mcp";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verifier() -> Verifier {
    Verifier::new(VerifierConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway_secs: 30,
        max_lifetime_secs: Some(3600),
        require_at_jwt: true,
        claims: ClaimMap::default(),
    })
    .unwrap()
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey, t: u64) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    h.typ = Some("at+jwt".into());
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": t, "exp": t + 900,
        "scope": "mcp tools.read", "amr": ["pwd", "mfa"], "client_id": "bench"});
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

fn bench(c: &mut Criterion) {
    let t = now();
    let v = verifier();

    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = ec.public_key_raw();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e1", "alg": "ES256",
        "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..])}]});
    let ec_keys = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    let ec_token = token(
        Algorithm::ES256,
        "e1",
        &EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
        t,
    );

    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_keys = KeySet::single(
        Some("r1".into()),
        Algorithm::RS256,
        DecodingKey::from_rsa_der(rsa.public_key_raw()),
    )
    .unwrap();
    let rsa_token = token(
        Algorithm::RS256,
        "r1",
        &EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap(),
        t,
    );

    c.bench_function("verify ES256 (cold)", |b| {
        b.iter(|| v.verify(black_box(&ec_token), &ec_keys, t).unwrap())
    });
    c.bench_function("verify RS256 (cold)", |b| {
        b.iter(|| v.verify(black_box(&rsa_token), &rsa_keys, t).unwrap())
    });

    let mut cache = TokenCache::new(10_000);
    cache.insert(&ec_token, v.verify(&ec_token, &ec_keys, t).unwrap(), t);
    c.bench_function("verify cached", |b| {
        b.iter(|| {
            cache
                .get(black_box(&ec_token), &ec_keys, t, 30)
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
