//! RFC 7662 introspection answers → a [`Verified`] principal, for opaque tokens (M1).
//!
//! An answer counts only when `active` is `true` and it binds the token to this resource the
//! way a JWT would: `aud` names Warden's resource URI (RFC 8707 — an answer with no audience is
//! refused), `iss` (when present) is the configured issuer, `sub` and `exp` are present and
//! `exp`/`nbf` hold at `now`. The gateway caches an answer briefly, never past `exp`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::AuthError;
use crate::verify::{Verified, VerifierConfig};

/// Largest introspection answer read.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Decide on an introspection answer's body at `now` (seconds since the epoch).
pub fn decide(body: &[u8], c: &VerifierConfig, now: u64) -> Result<Verified, AuthError> {
    if body.len() > MAX_ANSWER {
        return Err(AuthError::MalformedToken);
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| AuthError::MalformedToken)?;
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(AuthError::Inactive);
    }
    match claims.get("iss") {
        None => {}
        Some(Value::String(i)) if *i == c.issuer => {}
        Some(_) => return Err(AuthError::WrongIssuer),
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == c.audience,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(c.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(AuthError::WrongAudience);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(AuthError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(c.leeway_secs) {
        return Err(AuthError::Expired);
    }
    if claims
        .get("nbf")
        .and_then(Value::as_u64)
        .is_some_and(|nbf| nbf > now.saturating_add(c.leeway_secs))
    {
        return Err(AuthError::NotYetValid);
    }
    if let (Some(max), Some(iat)) = (
        c.max_lifetime_secs,
        claims.get("iat").and_then(Value::as_u64),
    ) && exp.saturating_sub(iat) > max
    {
        return Err(AuthError::LifetimeTooLong(exp.saturating_sub(iat)));
    }
    let (sub, jkt) = crate::verify::subject_and_binding(&claims)?;
    let mut p = c.claims.principal(&c.issuer, &sub, claims);
    p.expires = Some(UNIX_EPOCH + Duration::from_secs(exp));
    Ok(Verified {
        principal: Arc::new(p),
        expires_at: exp,
        kid: None,
        jkt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClaimMap;

    fn cfg() -> VerifierConfig {
        VerifierConfig {
            issuer: "https://as.example".into(),
            audience: "https://w.example/mcp".into(),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            leeway_secs: 5,
            max_lifetime_secs: Some(3600),
            require_at_jwt: false,
            claims: ClaimMap::default(),
        }
    }

    #[test]
    fn only_active_answers_for_this_resource_count() {
        let c = cfg();
        let ok = br#"{"active":true,"sub":"alice","aud":["x","https://w.example/mcp"],"exp":1100,"iat":1000,"scope":"mcp tools.read"}"#;
        let v = decide(ok, &c, 1050).unwrap();
        assert_eq!(&**v.principal.id(), "https://as.example alice");
        assert!(v.principal.has_scope("tools.read"));
        assert_eq!(decide(ok, &c, 1200).unwrap_err(), AuthError::Expired);
        let cases: [(&[u8], AuthError); 6] = [
            (br#"{"active":false,"sub":"a"}"#, AuthError::Inactive),
            (br#"{"sub":"a"}"#, AuthError::Inactive),
            (
                br#"{"active":true,"sub":"a","exp":1100}"#,
                AuthError::WrongAudience,
            ),
            (
                br#"{"active":true,"sub":"a","aud":"https://other/mcp","exp":1100}"#,
                AuthError::WrongAudience,
            ),
            (
                br#"{"active":true,"iss":"https://evil","sub":"a","aud":"https://w.example/mcp","exp":1100}"#,
                AuthError::WrongIssuer,
            ),
            (b"not json", AuthError::MalformedToken),
        ];
        for (body, want) in cases {
            assert_eq!(decide(body, &c, 1050).unwrap_err(), want);
        }
    }
}
