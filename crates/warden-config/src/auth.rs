//! `[auth]`: how `warden serve` authenticates its clients (OAuth 2.1 resource server, M1, M2,
//! P2.1–P2.4), and the secret references credentials are read through. Upstream credentials are
//! in [`crate::UpstreamAuth`]; the admin listener's token in [`crate::AdminConfig`].

use std::path::PathBuf;

use serde::Deserialize;

/// `[auth]`. `warden serve` needs this section: an issuer (OAuth) or an explicit local mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `oauth` (the default): every request needs an access token of `issuer` for `resource`.
    /// `local`: no token at all — allowed only on a loopback `server.listen`, said at start.
    #[serde(default)]
    pub mode: AuthMode,
    /// The authorization server's issuer identifier, exactly as its metadata names it. Its keys
    /// come from OIDC discovery (`/.well-known/openid-configuration`, then RFC 8414
    /// `/.well-known/oauth-authorization-server`) unless `jwks_file` or `jwks_uri` is set.
    /// `https://`, or `http://` on a loopback address only.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Warden's canonical resource URI (RFC 8707, RFC 9728 `resource`): tokens must carry it in
    /// `aud`. E.g. `https://mcp.example.com/mcp`.
    #[serde(default)]
    pub resource: Option<String>,
    /// The `aud` value tokens must carry, when it is not `resource` itself (Entra ID v2 access
    /// tokens carry the API's application id). One exact value either way.
    #[serde(default)]
    pub audience: Option<String>,
    /// A local JWKS file instead of discovery (air-gapped sites); read at start.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The JWKS URL, instead of the one discovery names.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted signature algorithms (asymmetric only: `none` and `HS*` are refused here).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Longest accepted token lifetime (`exp - iat`), seconds (P2.3). `0`: no limit.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    /// Require the JWT header `typ: at+jwt` (RFC 9068).
    #[serde(default)]
    pub require_at_jwt: bool,
    /// `scopes_supported` of the protected-resource metadata (RFC 9728).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Scopes every MCP request needs (named in the 401 challenge).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// `authorization_servers` of the metadata. Default: `[issuer]`.
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
    /// `acr` values, weakest first, for `min_acr` requirements.
    #[serde(default)]
    pub acr_levels: Vec<String>,
    /// Which claims make the principal.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Least interval between two JWKS fetches caused by an unknown `kid` (a flood of forged
    /// kids must not become a flood of fetches), seconds.
    #[serde(default = "default_refresh_min")]
    pub jwks_refresh_min_secs: u64,
    /// Freshness of fetched keys when the response has no `Cache-Control: max-age`, seconds.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// How long keys past their freshness keep verifying while the issuer cannot be reached,
    /// seconds. After that, requests are refused (503 `auth_keys_unavailable`).
    #[serde(default = "default_jwks_stale")]
    pub jwks_stale_secs: u64,
    /// Verified tokens remembered (by SHA-256) until they expire.
    #[serde(default = "default_token_cache")]
    pub token_cache_size: usize,
    /// Opaque tokens: RFC 7662 introspection.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// Stronger requirements per method or tool (`[[auth.require]]`).
    #[serde(default, rename = "require")]
    pub requirements: Vec<RequireRule>,
    /// PEM CA file trusted for the issuer's `https://` endpoints instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[auth] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// OAuth 2.1 resource server.
    #[default]
    Oauth,
    /// No authentication: loopback only, for one local user.
    Local,
}

/// `[auth.claims]`: claim names for the principal's parts (defaults fit OAuth and Entra ID v2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// Scope claims (space-separated string or array); all are merged.
    pub scopes: Vec<String>,
    /// Role claims.
    pub roles: Vec<String>,
    /// Group claims.
    pub groups: Vec<String>,
    /// Tenant claim; empty string for none.
    pub tenant: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            scopes: vec!["scope".into(), "scp".into()],
            roles: vec!["roles".into()],
            groups: vec!["groups".into()],
            tenant: "tid".into(),
        }
    }
}

/// `[auth.introspection]` (RFC 7662) for tokens that are not JWTs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint; default: `introspection_endpoint` from discovery.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Warden's client id at the authorization server.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretRef,
    /// How long an `active` answer is trusted (never past the token's `exp`), seconds.
    #[serde(default = "default_introspection_cache")]
    pub cache_secs: u64,
}

/// `[[auth.require]]`: what a method or tool asks beyond `required_scopes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireRule {
    /// A JSON-RPC method (`tools/call`, `resources/read`…); default: any.
    #[serde(default)]
    pub method: Option<String>,
    /// A tool, prompt or resource name as the client sees it; a trailing `*` matches a prefix.
    #[serde(default)]
    pub tool: Option<String>,
    /// Scopes needed, every one.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `amr` must contain `mfa`.
    #[serde(default)]
    pub mfa: bool,
    /// Minimum `acr` (one of `acr_levels`).
    #[serde(default)]
    pub min_acr: Option<String>,
    /// Only a DPoP-bound token presented with its proof (RFC 9449) may make the call.
    #[serde(default)]
    pub dpop: bool,
}

/// Where a secret is read from. Never written in the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// An environment variable of Warden's.
    #[serde(default)]
    pub env: Option<String>,
    /// A file (its content, trailing newline removed).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn default_leeway() -> u64 {
    30
}
fn default_max_lifetime() -> u64 {
    24 * 3600
}
fn default_refresh_min() -> u64 {
    30
}
fn default_jwks_max_age() -> u64 {
    3600
}
fn default_jwks_stale() -> u64 {
    24 * 3600
}
fn default_token_cache() -> usize {
    10_000
}
fn default_introspection_cache() -> u64 {
    60
}

/// Is `url` `https://`, or `http://` to a loopback host?
pub fn secure_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
