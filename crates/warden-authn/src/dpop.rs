//! DPoP proofs (RFC 9449) for sender-constrained access tokens (P7.4).
//!
//! A request with `Authorization: DPoP <token>` must carry exactly one `DPoP` header: a JWS of
//! `typ: dpop+jwt`, signed by an allow-listed asymmetric algorithm with the public key in its
//! `jwk` header (never a private one), whose claims bind it to this request — `htm` the HTTP
//! method, `htu` the resource URI (no query or fragment), `iat` within the window, a `jti` not
//! seen before, `ath` the SHA-256 of the access token — and whose key's RFC 7638 thumbprint is
//! the token's `cnf.jkt`. [`ReplayCache`] remembers `jti`s until their window closes.

use std::collections::HashMap;

use base64::Engine as _;
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::error::AuthError;

/// Longest proof accepted.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// What a proof is checked against.
pub struct Expected<'a> {
    /// HTTP method of the request.
    pub htm: &'a str,
    /// The URI the client reached (Warden's resource URI).
    pub htu: &'a str,
    /// The access token presented with it.
    pub token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
    /// Accepted signature algorithms.
    pub algorithms: &'a [Algorithm],
    /// Seconds a proof's `iat` may be from `now` (either way).
    pub window_secs: u64,
}

/// `jti`s seen, until their proofs' window closes. Bounded: when full of live entries, new
/// proofs are refused (fail closed) rather than their replay protection dropped.
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<String, u64>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache of at most `capacity` live `jti`s.
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            capacity,
        }
    }

    /// Record `jti` until `until`; false if it was seen (a replay) or the cache is full.
    fn record(&mut self, jti: &str, until: u64, now: u64) -> bool {
        if self.seen.get(jti).is_some_and(|u| *u >= now) {
            return false;
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, u| *u >= now);
            if self.seen.len() >= self.capacity {
                return false;
            }
        }
        self.seen.insert(jti.to_owned(), until);
        true
    }
}

fn invalid(why: &'static str) -> AuthError {
    AuthError::InvalidDpopProof(why)
}

/// Check `proof` for the request `e` describes at `now`.
pub fn verify(
    proof: &str,
    e: &Expected<'_>,
    replay: &mut ReplayCache,
    now: u64,
) -> Result<(), AuthError> {
    if proof.len() > MAX_PROOF_LEN || proof.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(invalid("malformed proof"));
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw_header: Map<String, Value> = proof
        .split('.')
        .next()
        .and_then(|h| b64.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(invalid("malformed proof header"))?;
    if raw_header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid("typ is not dpop+jwt"));
    }
    let jwk_raw = raw_header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(invalid("no jwk in the proof header"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| jwk_raw.contains_key(*m))
    {
        return Err(invalid("the proof's jwk holds a private or symmetric key"));
    }
    let header =
        jsonwebtoken::decode_header(proof).map_err(|_| invalid("malformed proof header"))?;
    if !e.algorithms.contains(&header.alg) {
        return Err(invalid("proof algorithm not allowed"));
    }
    let jwk = header
        .jwk
        .as_ref()
        .ok_or(invalid("no jwk in the proof header"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("unusable proof key"))?;
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.set_required_spec_claims::<&str>(&[]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &v)
        .map_err(|_| invalid("proof signature does not verify"))?
        .claims;
    let thumb = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| invalid("unusable proof key"))?;
    if thumb != e.jkt {
        return Err(invalid(
            "the proof key is not the key the token is bound to",
        ));
    }
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("htm").is_none_or(|m| !m.eq_ignore_ascii_case(e.htm)) {
        return Err(invalid("htm is not this request's method"));
    }
    let strip = |u: &str| {
        u.split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    };
    if s("htu").is_none_or(|u| strip(u) != strip(e.htu)) {
        return Err(invalid("htu is not this resource"));
    }
    let ath = b64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        e.token.as_bytes(),
    ));
    if s("ath") != Some(ath.as_str()) {
        return Err(invalid("ath is not the hash of this access token"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(invalid("no iat"))?;
    if iat.abs_diff(now) > e.window_secs {
        return Err(invalid("iat is outside the accepted window"));
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(invalid("no jti"))?;
    if !replay.record(jti, iat.saturating_add(e.window_secs), now) {
        return Err(invalid("the proof was used before"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    struct Key {
        pair: EcdsaKeyPair,
        jwk: Value,
    }

    fn key() -> Key {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pt = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty":"EC","crv":"P-256","x":B64.encode(&pt[1..33]),"y":B64.encode(&pt[33..65])});
        Key { pair, jwk }
    }

    fn sign(k: &Key, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = k.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn thumb(k: &Key) -> String {
        let j = &k.jwk;
        let canon = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canon.as_bytes(),
        ))
    }

    #[test]
    fn only_a_fresh_proof_by_the_bound_key_for_this_request_passes() {
        let (k, other) = (key(), key());
        let token = "access.token.value";
        let ath = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            token.as_bytes(),
        ));
        let jkt = thumb(&k);
        let e = Expected {
            htm: "POST",
            htu: "https://w.example/mcp",
            token,
            jkt: &jkt,
            algorithms: &[Algorithm::ES256],
            window_secs: 60,
        };
        let header = |k: &Key| json!({"typ":"dpop+jwt","alg":"ES256","jwk":k.jwk});
        let claims = |jti: &str| json!({"htm":"POST","htu":"https://w.example/mcp?x=1","iat":1000,"jti":jti,"ath":ath});
        let mut replay = ReplayCache::new(16);
        let good = sign(&k, header(&k), claims("a"));
        assert_eq!(verify(&good, &e, &mut replay, 1010), Ok(()));
        assert_eq!(
            verify(&good, &e, &mut replay, 1011),
            Err(invalid("the proof was used before"))
        );
        let cases: Vec<(String, &str)> = vec![
            (
                sign(&other, header(&other), claims("b")),
                "the proof key is not the key the token is bound to",
            ),
            (
                sign(
                    &k,
                    json!({"typ":"jwt","alg":"ES256","jwk":k.jwk}),
                    claims("c"),
                ),
                "typ is not dpop+jwt",
            ),
            (
                sign(
                    &k,
                    header(&k),
                    json!({"htm":"GET","htu":"https://w.example/mcp","iat":1000,"jti":"d","ath":ath}),
                ),
                "htm is not this request's method",
            ),
            (
                sign(
                    &k,
                    header(&k),
                    json!({"htm":"POST","htu":"https://evil/mcp","iat":1000,"jti":"e","ath":ath}),
                ),
                "htu is not this resource",
            ),
            (
                sign(
                    &k,
                    header(&k),
                    json!({"htm":"POST","htu":"https://w.example/mcp","iat":1000,"jti":"f","ath":"x"}),
                ),
                "ath is not the hash of this access token",
            ),
            (
                sign(
                    &k,
                    header(&k),
                    json!({"htm":"POST","htu":"https://w.example/mcp","iat":500,"jti":"g","ath":ath}),
                ),
                "iat is outside the accepted window",
            ),
            (
                sign(
                    &k,
                    json!({"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":k.jwk["x"],"y":k.jwk["y"],"d":"AAAA"}}),
                    claims("h"),
                ),
                "the proof's jwk holds a private or symmetric key",
            ),
        ];
        for (proof, why) in cases {
            assert_eq!(
                verify(&proof, &e, &mut replay, 1010),
                Err(invalid(why)),
                "{why}"
            );
        }
        let mut tampered = good.clone();
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(verify(&tampered, &e, &mut ReplayCache::new(4), 1010).is_err());
    }
}
