//! [`Principal`]: who is calling, as the identity guard established it.

use std::sync::Arc;
use std::time::SystemTime;

/// How strongly the principal authenticated (OIDC `amr` / `acr`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthStrength {
    /// Authentication methods (`amr`), e.g. `pwd`, `mfa`, `hwk`.
    pub amr: Vec<String>,
    /// Authentication context class (`acr`).
    pub acr: Option<String>,
}

impl AuthStrength {
    /// Did the principal use multi-factor authentication (`amr` contains `mfa`)?
    pub fn mfa(&self) -> bool {
        self.amr.iter().any(|m| m == "mfa")
    }
}

/// An authenticated caller. Its identity is `iss` + `sub`: two issuers' `alice` are two people.
/// Audit events, sessions, policy and limits all key on [`Principal::id`].
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `iss + " " + sub`, formatted once: the key sessions and limits use.
    id: Arc<str>,
    /// Token issuer (`iss`).
    pub issuer: String,
    /// Subject (`sub`).
    pub subject: String,
    /// Granted scopes (`scope` / `scp`).
    pub scopes: Vec<String>,
    /// Roles (e.g. Entra ID `roles`).
    pub roles: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Tenant (e.g. Entra ID `tid`).
    pub tenant: Option<String>,
    /// How strongly the principal authenticated.
    pub strength: AuthStrength,
    /// When the credential that established this principal expires.
    pub expires: Option<SystemTime>,
    /// Every claim of the credential, for policy (never logged whole).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The access token that established this principal: only for RFC 8693 token exchange
    /// (Warden's own upstream credential for this user), never forwarded or logged.
    pub token: Option<Secret>,
}

/// A secret value (an access token): its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wrap `value`.
    pub fn new(value: &str) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Principal {
    /// A principal with identity `issuer` + `subject` and nothing else.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        let (issuer, subject) = (issuer.into(), subject.into());
        Self {
            id: format!("{issuer} {subject}").into(),
            issuer,
            subject,
            scopes: Vec::new(),
            roles: Vec::new(),
            groups: Vec::new(),
            tenant: None,
            strength: AuthStrength::default(),
            expires: None,
            claims: Default::default(),
            token: None,
        }
    }

    /// The identity key: issuer and subject.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// Does the principal hold `scope`?
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}
