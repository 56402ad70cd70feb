//! What a client is told: the `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1) and the
//! OAuth protected-resource metadata document with its well-known paths (RFC 9728 §2, §3.1).

use serde_json::{Map, Value, json};

use crate::error::AuthError;

/// `Bearer resource_metadata="…", scope="…"[, error="…", error_description="…"]` for a refusal
/// (`None`: a request that simply had no token). `scope` lists every scope the call needs.
pub fn www_authenticate(
    err: Option<&AuthError>,
    resource_metadata: &str,
    scope: &[String],
) -> String {
    let mut s = format!("Bearer resource_metadata=\"{}\"", quote(resource_metadata));
    let needed = match err {
        Some(AuthError::InsufficientScope { needed } | AuthError::StepUp { needed, .. }) => {
            needed.as_slice()
        }
        _ => scope,
    };
    if !needed.is_empty() {
        s.push_str(&format!(", scope=\"{}\"", quote(&needed.join(" "))));
    }
    if let Some(e) = err.filter(|e| !matches!(e, AuthError::Missing)) {
        if let Some(code) = e.oauth_error() {
            s.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                quote(&e.to_string())
            ));
        }
        if let AuthError::StepUp { mfa, acr, .. } = e {
            if *mfa {
                s.push_str(", amr_values=\"mfa\"");
            }
            if let Some(acr) = acr {
                s.push_str(&format!(", acr_values=\"{}\"", quote(acr)));
            }
        }
    }
    s
}

/// A quoted-string's content: `"` and `\` escaped, control characters dropped.
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars().filter(|c| !c.is_control()) {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The protected-resource metadata document (RFC 9728 §2).
pub fn metadata(resource: &str, authorization_servers: &[String], scopes: &[String]) -> Value {
    let mut m = Map::new();
    m.insert("resource".into(), json!(resource));
    m.insert("authorization_servers".into(), json!(authorization_servers));
    if !scopes.is_empty() {
        m.insert("scopes_supported".into(), json!(scopes));
    }
    m.insert("bearer_methods_supported".into(), json!(["header"]));
    Value::Object(m)
}

/// The paths the document is served at: `/.well-known/oauth-protected-resource` followed by the
/// resource URI's path (RFC 9728 §3.1), and the bare form for clients that try it first.
pub fn metadata_paths(resource: &str) -> Vec<String> {
    const WK: &str = "/.well-known/oauth-protected-resource";
    let after_scheme = resource.split_once("://").map_or(resource, |(_, r)| r);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    let mut out = vec![format!("{WK}{path}")];
    if !path.is_empty() {
        out.push(WK.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_metadata_scope_and_error() {
        let md = "https://w.example/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            www_authenticate(None, md, &["mcp".into()]),
            format!("Bearer resource_metadata=\"{md}\", scope=\"mcp\"")
        );
        let e = AuthError::InsufficientScope {
            needed: vec!["mcp".into(), "tools.admin".into()],
        };
        let h = www_authenticate(Some(&e), md, &["mcp".into()]);
        assert!(
            h.contains("scope=\"mcp tools.admin\"") && h.contains("error=\"insufficient_scope\""),
            "{h}"
        );
        let h = www_authenticate(Some(&AuthError::Expired), md, &[]);
        assert!(
            h.ends_with("error=\"invalid_token\", error_description=\"token expired\""),
            "{h}"
        );
        assert!(!www_authenticate(None, "a\"b\r\n", &[]).contains("\r"));
    }

    #[test]
    fn well_known_paths_follow_rfc_9728() {
        assert_eq!(
            metadata_paths("https://w.example/mcp"),
            [
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            metadata_paths("https://w.example"),
            ["/.well-known/oauth-protected-resource"]
        );
    }
}
