//! A JWKS document (RFC 7517 §5) → a [`KeySet`] of public verification keys.
//!
//! Only asymmetric signature keys are kept: RSA, EC P-256/P-384 and Ed25519. Symmetric (`oct`)
//! keys, encryption keys (`use: enc`) and keys of unknown type are skipped, so a token can never
//! be checked with HMAC against bytes an attacker also knows (M1). The document is bounded in
//! size and key count; a key set with no usable key is an error, not an empty set.

use std::sync::Arc;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one document.
pub const MAX_KEYS: usize = 64;

/// Why a JWKS document was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("JWKS document larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JWKS JSON document.
    #[error("not a JWKS document: {0}")]
    Parse(String),
    /// More than [`MAX_KEYS`] keys.
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// No asymmetric signature key in the document.
    #[error("no usable signature key")]
    NoUsableKey,
}

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<Arc<str>>,
    /// The algorithms this key may verify.
    pub(crate) algs: &'static [Algorithm],
    pub(crate) key: DecodingKey,
}

/// The issuer's current public keys.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    /// Parses a JWKS document.
    pub fn from_jwks(bytes: &[u8]) -> Result<Self, KeySetError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(KeySetError::TooLarge);
        }
        let set: JwkSet =
            serde_json::from_slice(bytes).map_err(|e| KeySetError::Parse(e.to_string()))?;
        if set.keys.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        let mut out = KeySet::default();
        for jwk in &set.keys {
            match usable(jwk) {
                Some(key) => out.keys.push(key),
                None => out.skipped += 1,
            }
        }
        if out.keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(out)
    }

    /// A set of one key, for keys configured as PEM or tests. `alg` must be asymmetric.
    pub fn single(kid: Option<String>, alg: Algorithm, key: DecodingKey) -> Option<Self> {
        let algs = family_algs(alg)?
            .iter()
            .find(|a| **a == alg)
            .map(std::slice::from_ref)?;
        (key.family() == alg.family()).then(|| KeySet {
            keys: vec![Key {
                kid: kid.map(Into::into),
                algs,
                key,
            }],
            skipped: 0,
        })
    }

    /// Key ids in the set (keys without one are not listed).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// Does the set hold a key with this id?
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys in the document that were not kept (symmetric, encryption, unknown type).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The key for a token with header `kid` and `alg`: by `kid` when the token names one; a
    /// token without `kid` is accepted only when exactly one key can verify `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        let mut fits = self.keys.iter().filter(|k| k.algs.contains(&alg));
        match kid {
            Some(kid) => fits.find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let first = fits.next()?;
                fits.next().is_none().then_some(first)
            }
        }
    }
}

const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const P256: &[Algorithm] = &[Algorithm::ES256];
const P384: &[Algorithm] = &[Algorithm::ES384];
const ED: &[Algorithm] = &[Algorithm::EdDSA];

fn family_algs(alg: Algorithm) -> Option<&'static [Algorithm]> {
    Some(match alg {
        Algorithm::ES256 => P256,
        Algorithm::ES384 => P384,
        Algorithm::EdDSA => ED,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
        _ => RSA,
    })
}

/// The JWK as a verification key, or `None` when it must not or cannot be used.
fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => P256,
            EllipticCurve::P384 => P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => ED,
            _ => return None,
        },
        _ => return None,
    };
    // A JWK that names its algorithm verifies that one only (RFC 7517 §4.4).
    let algs = match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let alg = to_alg(named)?;
            by_type
                .iter()
                .find(|a| **a == alg)
                .map(std::slice::from_ref)?
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.as_deref().map(Into::into),
        algs,
        key,
    })
}

fn to_alg(k: KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"e1","use":"sig",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn symmetric_and_encryption_keys_are_never_kept() {
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#;
        assert_eq!(
            KeySet::from_jwks(oct.as_bytes()).unwrap_err(),
            KeySetError::NoUsableKey
        );
        let enc = format!(
            r#"{{"keys":[{}]}}"#,
            EC.replace(r#""use":"sig""#, r#""use":"enc""#)
        );
        assert_eq!(
            KeySet::from_jwks(enc.as_bytes()).unwrap_err(),
            KeySetError::NoUsableKey
        );
        let mixed = format!(r#"{{"keys":[{EC},{{"kty":"oct","k":"c2VjcmV0","kid":"h"}}]}}"#);
        let set = KeySet::from_jwks(mixed.as_bytes()).unwrap();
        assert_eq!(
            (set.kids().collect::<Vec<_>>(), set.skipped()),
            (vec!["e1"], 1)
        );
        assert!(set.select(Some("h"), Algorithm::HS256).is_none());
    }

    #[test]
    fn a_named_algorithm_limits_the_key() {
        let named = format!(
            r#"{{"keys":[{}]}}"#,
            EC.replace(r#""use""#, r#""alg":"ES256","use""#)
        );
        let set = KeySet::from_jwks(named.as_bytes()).unwrap();
        assert!(set.select(Some("e1"), Algorithm::ES256).is_some());
        assert!(set.select(Some("e1"), Algorithm::ES384).is_none());
        let wrong = format!(
            r#"{{"keys":[{}]}}"#,
            EC.replace(r#""use""#, r#""alg":"RS256","use""#)
        );
        assert_eq!(
            KeySet::from_jwks(wrong.as_bytes()).unwrap_err(),
            KeySetError::NoUsableKey
        );
    }

    #[test]
    fn limits_hold() {
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(KeySet::from_jwks(&big).unwrap_err(), KeySetError::TooLarge);
        let many = format!(r#"{{"keys":[{}]}}"#, vec![EC; MAX_KEYS + 1].join(","));
        assert_eq!(
            KeySet::from_jwks(many.as_bytes()).unwrap_err(),
            KeySetError::TooManyKeys
        );
        assert!(matches!(
            KeySet::from_jwks(b"[").unwrap_err(),
            KeySetError::Parse(_)
        ));
    }

    #[test]
    fn a_token_without_kid_needs_exactly_one_candidate() {
        let one = format!(r#"{{"keys":[{EC}]}}"#);
        assert!(
            KeySet::from_jwks(one.as_bytes())
                .unwrap()
                .select(None, Algorithm::ES256)
                .is_some()
        );
        let two = format!(r#"{{"keys":[{EC},{}]}}"#, EC.replace("e1", "e2"));
        assert!(
            KeySet::from_jwks(two.as_bytes())
                .unwrap()
                .select(None, Algorithm::ES256)
                .is_none()
        );
    }
}
