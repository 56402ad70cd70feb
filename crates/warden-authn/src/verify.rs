//! [`Verifier`]: a compact JWT access token → a [`Verified`] principal, or why not (M1, P2.3).
//!
//! Order of checks: size; header (`alg` on the allow-list — asymmetric only, so never `none` and
//! never HMAC; `typ` when required); the key by `kid` and algorithm; the signature, `iss`, `aud`
//! (Warden's canonical resource URI, RFC 8707) and `sub` through `jsonwebtoken`; then the times
//! against the caller's `now`: `exp`, `nbf`, `iat` with leeway and the maximum lifetime.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use warden_guard::Principal;

use crate::claims::ClaimMap;
use crate::error::AuthError;
use crate::keys::KeySet;

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 12 * 1024;

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The issuer (`iss`) exactly as the authorization server's metadata names it.
    pub issuer: String,
    /// Warden's canonical resource URI: `aud` must contain it.
    pub audience: String,
    /// Allowed signature algorithms; asymmetric only.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, seconds.
    pub leeway_secs: u64,
    /// Longest allowed `exp - iat`, seconds; `iat` becomes required when set.
    pub max_lifetime_secs: Option<u64>,
    /// Require header `typ: at+jwt` (RFC 9068).
    pub require_at_jwt: bool,
    /// Which claims make the principal.
    pub claims: ClaimMap,
}

/// A configuration mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No algorithm, or a symmetric one, was allowed.
    #[error("allowed algorithms must be asymmetric and at least one")]
    Algorithms,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who presented it.
    pub principal: Arc<Principal>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// The key id that verified it (shared: a cached token is cloned on every request).
    pub kid: Option<Arc<str>>,
    /// `cnf.jkt`: the thumbprint of the key a DPoP-bound token is bound to (RFC 9449 §6.1).
    pub jkt: Option<Arc<str>>,
}

/// Verifies tokens of one issuer for one resource.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifierConfig,
}

impl Verifier {
    /// A verifier, if the configuration is sound.
    pub fn new(config: VerifierConfig) -> Result<Self, ConfigError> {
        let symmetric =
            |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        if config.algorithms.is_empty() || config.algorithms.iter().any(symmetric) {
            return Err(ConfigError::Algorithms);
        }
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies `token` with `keys` at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, keys: &KeySet, now: u64) -> Result<Verified, AuthError> {
        let c = &self.config;
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(AuthError::MalformedToken);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        if !c.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        if c.require_at_jwt
            && !header.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            })
        {
            return Err(AuthError::WrongType);
        }
        let key = keys
            .select(header.kid.as_deref(), header.alg)
            .ok_or(AuthError::UnknownKey)?;

        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[&c.issuer]);
        v.set_audience(&[&c.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_exp = false; // checked below against the caller's clock
        v.validate_nbf = false;
        v.leeway = 0;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| map_error(e.kind()))?;
        let claims = data.claims;

        let time = |name: &'static str| -> Result<Option<u64>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or(AuthError::MissingClaim(name)),
            }
        };
        let exp = time("exp")?.ok_or(AuthError::MissingClaim("exp"))?;
        let leeway = c.leeway_secs;
        if now >= exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        let (nbf, iat) = (time("nbf")?, time("iat")?);
        if nbf
            .or(iat)
            .is_some_and(|_| nbf.max(iat).unwrap_or(0) > now.saturating_add(leeway))
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(max) = c.max_lifetime_secs {
            let iat = iat.ok_or(AuthError::MissingClaim("iat"))?;
            let lifetime = exp.saturating_sub(iat);
            if lifetime > max || exp.saturating_sub(now) > max.saturating_add(leeway) {
                return Err(AuthError::LifetimeTooLong(lifetime));
            }
        }
        let (sub, jkt) = subject_and_binding(&claims)?;
        let mut principal = c.claims.principal(&c.issuer, &sub, claims);
        principal.expires = Some(UNIX_EPOCH + Duration::from_secs(exp));
        Ok(Verified {
            principal: Arc::new(principal),
            expires_at: exp,
            kid: key.kid.clone(),
            jkt,
        })
    }
}

/// `sub` (required, non-empty) and `cnf.jkt` (the DPoP key a token is bound to, if any).
pub(crate) fn subject_and_binding(
    claims: &Map<String, Value>,
) -> Result<(String, Option<Arc<str>>), AuthError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::MissingClaim("sub"))?
        .to_owned();
    let jkt = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
        .map(Into::into);
    Ok((sub, jkt))
}

/// A header `jsonwebtoken` could not read: an algorithm it does not know (`none`, `HS1`…) is
/// named as such; anything else is a malformed token.
fn header_error(token: &str) -> AuthError {
    let first = token.split('.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(alg) => AuthError::AlgorithmNotAllowed(alg.chars().take(16).collect()),
        None => AuthError::MalformedToken,
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            _ => "claim",
        }),
        ErrorKind::InvalidClaimFormat(_) => AuthError::MissingClaim("claim"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::AlgorithmNotAllowed("mismatch".into())
        }
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::MalformedToken,
        // A bad signature and every key or provider failure: refuse (fail closed).
        _ => AuthError::BadSignature,
    }
}
