//! Checks of `[auth]`, `[admin]` and `[upstream.auth]`: the settings a resource server cannot be
//! safe without, each with its place in the file.

use crate::Config;
use crate::auth::{AuthConfig, AuthMode, SecretRef, secure_url};
use crate::credentials::UpstreamAuth;
use crate::diagnostics::{Diagnostic, at, span_of};

/// Signature algorithms Warden verifies (asymmetric only).
pub const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub(crate) fn validate(cfg: &Config, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(a) = &cfg.auth {
        auth(cfg, a, text, &mut out);
    }
    if let Some(admin) = &cfg.admin {
        let here = |f: &str| span_of(text, "admin", None, Some(f));
        if admin.listen.is_none() && admin.socket.is_none() {
            out.push(at(
                text,
                here("listen"),
                "[admin] needs listen or socket",
                "set listen = \"127.0.0.1:9090\", or socket = \"/run/warden/admin.sock\"",
            ));
        }
        if let Some(t) = &admin.token {
            secret(text, here("token"), "admin.token", t, &mut out);
        }
    }
    for (i, u) in cfg.upstreams.iter().enumerate() {
        let here = || span_of(text, "upstream", Some(i), Some("auth"));
        if u.command.is_some() && !matches!(u.auth, UpstreamAuth::None) {
            out.push(at(
                text,
                here(),
                format!(
                    "upstream '{}': a stdio server has no request headers to carry a credential",
                    u.name
                ),
                "pass what it needs through [upstream] env, or remove [upstream.auth]",
            ));
        }
        let (endpoint, secret_ref) = match &u.auth {
            UpstreamAuth::None => continue,
            UpstreamAuth::Static { header, value, .. } => {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err()
                    || ["cookie", "host", "content-length", "transfer-encoding"]
                        .contains(&header.to_ascii_lowercase().as_str())
                {
                    out.push(at(
                        text,
                        here(),
                        format!(
                            "upstream '{}': '{header}' cannot carry a credential",
                            u.name
                        ),
                        "use authorization, or an API-key header such as x-api-key",
                    ));
                }
                (None, value)
            }
            UpstreamAuth::ClientCredentials {
                token_endpoint,
                client_secret,
                ..
            }
            | UpstreamAuth::TokenExchange {
                token_endpoint,
                client_secret,
                ..
            } => (Some(token_endpoint), client_secret),
        };
        if let Some(e) = endpoint
            && !secure_url(e)
        {
            out.push(at(
                text,
                here(),
                format!(
                    "upstream '{}': token_endpoint '{e}' is not https:// (or http:// on loopback)",
                    u.name
                ),
                "credentials travel to it; use https",
            ));
        }
        if matches!(u.auth, UpstreamAuth::TokenExchange { .. })
            && cfg.auth.as_ref().is_none_or(|a| a.mode == AuthMode::Local)
        {
            out.push(at(
                text,
                here(),
                format!(
                    "upstream '{}': token_exchange needs [auth] with an issuer",
                    u.name
                ),
                "token exchange trades the client's verified token; configure [auth] issuer",
            ));
        }
        secret(
            text,
            here(),
            &format!("upstream '{}' auth", u.name),
            secret_ref,
            &mut out,
        );
    }
    out
}

fn auth(cfg: &Config, a: &AuthConfig, text: &str, out: &mut Vec<Diagnostic>) {
    let here = |f: &str| span_of(text, "auth", None, Some(f));
    if a.mode == AuthMode::Local {
        if !cfg.server.listen.ip().is_loopback() {
            out.push(at(
                text,
                here("mode"),
                format!(
                    "auth mode \"local\" (no authentication) on the non-loopback address {}",
                    cfg.server.listen
                ),
                "bind 127.0.0.1, or configure an issuer (mode = \"oauth\")",
            ));
        }
        if a.issuer.is_some() || a.jwks_file.is_some() || a.jwks_uri.is_some() {
            out.push(at(
                text,
                here("mode"),
                "auth mode \"local\" with an issuer or keys: which one is meant?",
                "remove mode = \"local\" to authenticate, or the issuer settings to run unauthenticated",
            ));
        }
        return;
    }
    match &a.issuer {
        None => out.push(at(
            text,
            here("issuer"),
            "[auth] needs issuer (or mode = \"local\" on loopback)",
            "set issuer to the authorization server's issuer identifier",
        )),
        Some(i) if !secure_url(i) => out.push(at(
            text,
            here("issuer"),
            format!("issuer '{i}' is not https:// (or http:// on loopback)"),
            "keys are fetched from it; use https",
        )),
        _ => {}
    }
    match &a.resource {
        None => out.push(at(
            text,
            here("resource"),
            "[auth] needs resource: Warden's canonical URI, which tokens must name in aud",
            "e.g. resource = \"https://mcp.example.com/mcp\"",
        )),
        Some(r) if !(r.starts_with("https://") || r.starts_with("http://")) || r.contains('#') => {
            out.push(at(
                text,
                here("resource"),
                format!("resource '{r}' is not an absolute http(s) URI without fragment"),
                "write the URI clients use to reach Warden, e.g. https://mcp.example.com/mcp",
            ))
        }
        _ => {}
    }
    if a.jwks_file.is_some() && a.jwks_uri.is_some() {
        out.push(at(
            text,
            here("jwks_file"),
            "jwks_file and jwks_uri are both set",
            "keep one: the file for air-gapped sites, the URI otherwise",
        ));
    }
    if let Some(u) = &a.jwks_uri
        && !secure_url(u)
    {
        out.push(at(
            text,
            here("jwks_uri"),
            format!("jwks_uri '{u}' is not https:// (or http:// on loopback)"),
            "use https",
        ));
    }
    if a.algorithms.is_empty() {
        out.push(at(
            text,
            here("algorithms"),
            "algorithms is empty: no token could verify",
            "e.g. [\"RS256\", \"ES256\"]",
        ));
    }
    for alg in &a.algorithms {
        if !ALGORITHMS.contains(&alg.as_str()) {
            let why = if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") {
                "is never accepted (unsigned or symmetric: a public key would forge it)"
            } else {
                "is not a signature algorithm Warden verifies"
            };
            out.push(at(
                text,
                here("algorithms"),
                format!("algorithm '{alg}' {why}"),
                format!("use some of {}", ALGORITHMS.join(", ")),
            ));
        }
    }
    if a.leeway_secs > 300 {
        out.push(at(
            text,
            here("leeway_secs"),
            "leeway_secs over 300 keeps expired tokens working",
            "a few seconds to a minute covers clock skew",
        ));
    }
    if a.token_cache_size == 0 || a.jwks_max_age_secs == 0 {
        out.push(at(
            text,
            here("token_cache_size"),
            "token_cache_size and jwks_max_age_secs must be greater than zero",
            "leave them out for the defaults",
        ));
    }
    for (i, r) in a.requirements.iter().enumerate() {
        let at_rule = span_of(text, "auth", None, Some("require"));
        if r.scopes.is_empty() && !r.mfa && r.min_acr.is_none() && !r.dpop {
            out.push(at(
                text,
                at_rule.clone(),
                format!("[[auth.require]] #{} asks for nothing", i + 1),
                "give scopes, mfa = true, min_acr or dpop = true",
            ));
        }
        if let Some(acr) = &r.min_acr
            && !a.acr_levels.contains(acr)
        {
            out.push(at(
                text,
                at_rule,
                format!("min_acr '{acr}' is not one of auth.acr_levels"),
                "list the acr values weakest first in acr_levels",
            ));
        }
    }
    if let Some(i) = &a.introspection {
        if let Some(e) = &i.endpoint
            && !secure_url(e)
        {
            out.push(at(
                text,
                here("introspection"),
                format!("introspection endpoint '{e}' is not https:// (or http:// on loopback)"),
                "tokens travel to it; use https",
            ));
        }
        secret(
            text,
            here("introspection"),
            "auth.introspection.client_secret",
            &i.client_secret,
            out,
        );
    }
}

fn secret(
    text: &str,
    span: Option<std::ops::Range<usize>>,
    what: &str,
    s: &SecretRef,
    out: &mut Vec<Diagnostic>,
) {
    if s.env.is_some() == s.file.is_some() {
        out.push(at(
            text,
            span,
            format!("{what}: a secret reference needs exactly one of env or file"),
            "write { env = \"VAR\" } or { file = \"/run/secrets/name\" }; never the secret itself",
        ));
    }
}

/// What `warden serve` needs beyond a valid file: an `[auth]` section, so that running without
/// authentication is always a decision written down.
pub fn serve_diagnostics(cfg: &Config, text: &str) -> Vec<Diagnostic> {
    if cfg.auth.is_some() {
        return Vec::new();
    }
    vec![at(
        text,
        span_of(text, "server", None, Some("listen")),
        "warden serve needs an [auth] section",
        "set [auth] issuer and resource (OAuth 2.1), or mode = \"local\" to run without authentication on loopback",
    )]
}

#[cfg(test)]
mod tests {
    use crate::load_str;

    const UP: &str = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n";

    #[test]
    fn oauth_needs_issuer_resource_and_safe_algorithms() {
        let t = format!("[auth]\nalgorithms = [\"none\", \"HS256\", \"RS256\"]\n\n{UP}");
        let r = load_str(&t).unwrap_err().render("w.toml");
        assert!(r.contains("needs issuer"), "{r}");
        assert!(r.contains("needs resource"), "{r}");
        assert!(r.contains("'none' is never accepted"), "{r}");
        assert!(r.contains("'HS256' is never accepted"), "{r}");
        let t = format!(
            "[auth]\nissuer = \"http://idp.example.com\"\nresource = \"https://w.example/mcp\"\n\n{UP}"
        );
        let r = load_str(&t).unwrap_err().render("w.toml");
        assert!(r.contains("w.toml:2:") && r.contains("not https"), "{r}");
        let ok = format!(
            "[auth]\nissuer = \"http://127.0.0.1:9\"\nresource = \"http://127.0.0.1:8080/mcp\"\n\n{UP}"
        );
        let cfg = load_str(&ok).unwrap();
        assert_eq!(cfg.auth.unwrap().max_lifetime_secs, 86_400);
    }

    #[test]
    fn local_mode_only_on_loopback_and_only_when_written() {
        let t = format!(
            "[server]\nlisten = \"0.0.0.0:80\"\nallowed_hosts = [\"w\"]\n\n[auth]\nmode = \"local\"\n\n{UP}"
        );
        let r = load_str(&t).unwrap_err().render("w.toml");
        assert!(r.contains("w.toml:6:") && r.contains("non-loopback"), "{r}");
        let cfg = load_str(UP).unwrap();
        let d = crate::serve_diagnostics(&cfg, UP);
        assert!(d[0].message.contains("needs an [auth] section"), "{d:?}");
        let t = format!("[auth]\nmode = \"local\"\n\n{UP}");
        let cfg = load_str(&t).unwrap();
        assert!(crate::serve_diagnostics(&cfg, &t).is_empty());
    }

    #[test]
    fn the_example_configurations_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let cfg = load_str(&text)
                    .unwrap_or_else(|d| panic!("{}", d.render(&path.display().to_string())));
                assert!(
                    crate::serve_diagnostics(&cfg, &text).is_empty(),
                    "{}",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 4, "examples found: {n}");
    }

    #[test]
    fn upstream_credentials_are_references_to_secrets() {
        let t = "[auth]\nmode = \"local\"\n\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n[upstream.auth]\nkind = \"static\"\nvalue = { env = \"K\", file = \"f\" }\n\n[[upstream]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/mcp\"\n[upstream.auth]\nkind = \"token_exchange\"\ntoken_endpoint = \"http://idp.example/token\"\nclient_id = \"w\"\nclient_secret = { env = \"S\" }\naudience = \"urn:b\"\n";
        let r = load_str(t).unwrap_err().render("w.toml");
        assert!(r.contains("exactly one of env or file"), "{r}");
        assert!(r.contains("not https"), "{r}");
        assert!(r.contains("token_exchange needs [auth]"), "{r}");
        let bad = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n[upstream.auth]\nkind = \"static\"\nvalue = { env = \"K\" }\nsecret = \"inline\"\n";
        let r = load_str(bad).unwrap_err().render("w.toml");
        assert!(r.contains("unknown field"), "{r}");
        let ok = "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n[upstream.auth]\nkind = \"static\"\nvalue = { env = \"K\" }\n";
        let cfg = load_str(ok).unwrap();
        assert_eq!(cfg.upstreams[0].auth.kind(), "static");
    }
}
