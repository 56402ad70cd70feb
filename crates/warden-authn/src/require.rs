//! [`Requirement`]: what a method or tool asks of a valid token — scopes, `mfa`, a minimum `acr`
//! (P2.2, P2.4). Too few scopes → 403 `insufficient_scope` naming every scope needed, so the
//! client can step up in one round; too weak an authentication → the step-up error, not the call.

use warden_guard::Principal;

use crate::error::AuthError;

/// Requirements of one method or tool; [`Requirement::and`] combines them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// Scopes the token must hold, every one.
    pub scopes: Vec<String>,
    /// `amr` must contain `mfa`.
    pub mfa: bool,
    /// Minimum `acr`, by its position in the configured ordered list of levels.
    pub min_acr: Option<String>,
}

impl Requirement {
    /// Both requirements at once.
    pub fn and(&self, other: &Requirement) -> Requirement {
        let mut scopes = self.scopes.clone();
        for s in &other.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let min_acr = match (&self.min_acr, &other.min_acr) {
            (Some(a), Some(b)) if a != b => Some(format!("{a} {b}")),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Requirement {
            scopes,
            mfa: self.mfa || other.mfa,
            min_acr,
        }
    }

    /// Does `p` meet it? `acr_levels` orders `acr` values weakest first; an `acr` not in the
    /// list, or a required level not in it, does not meet a minimum (fail closed).
    pub fn check(&self, p: &Principal, acr_levels: &[String]) -> Result<(), AuthError> {
        let scopes_ok = self.scopes.iter().all(|s| p.has_scope(s));
        let level = |v: &str| acr_levels.iter().position(|l| l == v);
        let acr_ok = self.min_acr.as_deref().is_none_or(|mins| {
            let have = p.strength.acr.as_deref().and_then(level);
            mins.split(' ')
                .all(|m| matches!((have, level(m)), (Some(h), Some(m)) if h >= m))
        });
        let mfa_ok = !self.mfa || p.strength.mfa();
        if !mfa_ok || !acr_ok {
            return Err(AuthError::StepUp {
                needed: self.scopes.clone(),
                mfa: self.mfa,
                acr: self.min_acr.clone(),
            });
        }
        if !scopes_ok {
            return Err(AuthError::InsufficientScope {
                needed: self.scopes.clone(),
            });
        }
        Ok(())
    }
}
