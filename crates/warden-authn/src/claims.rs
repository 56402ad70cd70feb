//! Which token claims become the [`Principal`]'s scopes, roles, groups and tenant (P7.3).
//!
//! Each is read from a configured list of claim names, a space-separated string or an array of
//! strings. The defaults read both OAuth's `scope` and Entra ID v2's `scp`, `roles`, `groups`
//! and `tid`, so Entra tokens need no custom code.

use serde_json::{Map, Value};
use warden_guard::{AuthStrength, Principal};

/// Most values kept from one claim (a token listing thousands of groups is cut, not trusted more).
pub const MAX_VALUES: usize = 256;

/// Claim names for each part of the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMap {
    /// Scope claims, in order; all are merged. Default `scope`, `scp`.
    pub scopes: Vec<String>,
    /// Role claims. Default `roles`.
    pub roles: Vec<String>,
    /// Group claims. Default `groups`.
    pub groups: Vec<String>,
    /// Tenant claim. Default `tid`.
    pub tenant: Option<String>,
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self {
            scopes: vec!["scope".into(), "scp".into()],
            roles: vec!["roles".into()],
            groups: vec!["groups".into()],
            tenant: Some("tid".into()),
        }
    }
}

impl ClaimMap {
    /// The principal for verified `claims` of `issuer` and `subject`.
    pub fn principal(&self, issuer: &str, subject: &str, claims: Map<String, Value>) -> Principal {
        let mut p = Principal::new(issuer, subject);
        p.scopes = collect(&claims, &self.scopes);
        p.roles = collect(&claims, &self.roles);
        p.groups = collect(&claims, &self.groups);
        p.tenant = self
            .tenant
            .as_deref()
            .and_then(|t| claims.get(t))
            .and_then(Value::as_str)
            .map(str::to_owned);
        p.strength = AuthStrength {
            amr: collect(&claims, &["amr"]),
            acr: claims.get("acr").and_then(Value::as_str).map(str::to_owned),
        };
        p.claims = claims;
        p
    }
}

/// Values of every named claim: a string is split on spaces, an array keeps its strings.
fn collect<S: AsRef<str>>(claims: &Map<String, Value>, names: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let mut push = |s: &str| {
            if out.len() < MAX_VALUES && !s.is_empty() && !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        };
        match claims.get(name.as_ref()) {
            Some(Value::String(s)) => s.split(' ').for_each(&mut push),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).for_each(&mut push),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entra_v2_claims_need_no_custom_code() {
        let claims = json!({"scp": "Files.Read tools.call", "roles": ["Admin"], "tid": "t-1",
            "oid": "o-1", "amr": ["pwd", "mfa"], "acr": "1"});
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let p = ClaimMap::default().principal(
            "https://login.microsoftonline.com/t-1/v2.0",
            "s",
            claims,
        );
        assert_eq!(p.scopes, ["Files.Read", "tools.call"]);
        assert_eq!(
            (p.roles.as_slice(), p.tenant.as_deref()),
            (&["Admin".to_owned()][..], Some("t-1"))
        );
        assert!(p.strength.mfa());
        assert_eq!(
            p.id().as_ref(),
            "https://login.microsoftonline.com/t-1/v2.0 s"
        );
    }

    #[test]
    fn odd_values_are_ignored_and_bounded() {
        let many: Vec<Value> = (0..1000).map(|i| json!(format!("g{i}"))).collect();
        let claims = json!({"scope": 7, "groups": many, "tid": ["x"]});
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        let p = ClaimMap::default().principal("i", "s", claims);
        assert!(p.scopes.is_empty() && p.tenant.is_none());
        assert_eq!(p.groups.len(), MAX_VALUES);
    }
}
