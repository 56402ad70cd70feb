//! The identity guard: Warden as an OAuth 2.1 resource server (M1, M2, P2.1–P2.4, P7.3, P8.1).
//!
//! Every HTTP request to the MCP endpoint — a session's too — must carry an access token in its
//! `Authorization` header, issued by the configured issuer for Warden's resource URI; the
//! decisions are `warden_authn`'s, this module fetches keys ([`keys`]), asks the introspection
//! endpoint for opaque tokens ([`introspect`]) and turns every failure into a 401/403 with its
//! `WWW-Authenticate` challenge. It sets `ctx.principal`, which sessions are bound to, audit
//! events name and policy reads. It serves the RFC 9728 protected-resource metadata. Per-method
//! and per-tool requirements (scopes, `mfa`, `acr`) are checked when the message is known.
//! Warden's own upstream credentials are the [`upstream`] guard's.

pub mod fetch;
pub mod introspect;
pub mod keys;
pub mod secret;
pub mod upstream;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use warden_authn::verify::Verified;
use warden_authn::{
    AuthError, ClaimMap, Requirement, Scheme, TokenCache, Verifier, VerifierConfig,
};
use warden_config::{AuthConfig, AuthMode, Config};
use warden_guard::{Check, Ctx, Front, Guard, HttpFacts, LocalResponse, Refusal, Secret, Verdict};
use warden_proto::Message;
use warden_proto::error::code;

use self::fetch::AuthHttp;
use self::introspect::Introspector;
use self::keys::KeySource;

/// A `[[auth.require]]` rule, compiled.
struct Rule {
    method: Option<String>,
    tool: Option<(String, bool)>,
    need: Requirement,
    /// Only a DPoP-bound token, with its proof, may make this call (P7.4).
    dpop: bool,
}

impl Rule {
    fn applies(&self, method: Option<&str>, tool: Option<&str>) -> bool {
        self.method.as_deref().is_none_or(|m| Some(m) == method)
            && self.tool.as_ref().is_none_or(|(t, prefix)| {
                tool.is_some_and(|n| {
                    if *prefix {
                        n.starts_with(t.as_str())
                    } else {
                        n == t
                    }
                })
            })
    }
}

/// The identity guard.
pub struct Identity {
    verifier: Verifier,
    keys: Arc<KeySource>,
    cache: Mutex<TokenCache>,
    introspect: Option<Introspector>,
    mcp_path: String,
    /// `resource_metadata` of every challenge.
    metadata_url: String,
    metadata_paths: Vec<String>,
    metadata: bytes::Bytes,
    /// Warden's resource URI (`htu` of DPoP proofs).
    resource: String,
    /// DPoP proof ids seen (replay protection).
    replay: Mutex<warden_authn::dpop::ReplayCache>,
    /// `required_scopes`: every request.
    base: Requirement,
    rules: Vec<Rule>,
    acr_levels: Vec<String>,
    /// Upstreams (by position) only DPoP-bound requests may reach.
    dpop_upstreams: Vec<bool>,
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Identity {
    /// The guard `[auth]` describes, or why it cannot be built. `None`: no `[auth]`, or local mode.
    pub fn new(cfg: &Config) -> Result<Option<Self>, String> {
        let Some(a) = cfg.auth.as_ref().filter(|a| a.mode == AuthMode::Oauth) else {
            return Ok(None);
        };
        let http = AuthHttp::new(a.ca_file.as_deref())?;
        let verifier = Verifier::new(verifier_config(a)?).map_err(|e| e.to_string())?;
        let keys = KeySource::new(a, http.clone())?;
        let resource = a.resource.clone().unwrap_or_default();
        let metadata_paths = warden_authn::challenge::metadata_paths(&resource);
        let origin = resource
            .find("://")
            .and_then(|i| resource[i + 3..].find('/').map(|j| &resource[..i + 3 + j]))
            .unwrap_or(&resource);
        let metadata_url = format!("{origin}{}", metadata_paths[0]);
        let servers = a
            .authorization_servers
            .clone()
            .unwrap_or_else(|| a.issuer.iter().cloned().collect());
        let metadata =
            warden_authn::challenge::metadata(&resource, &servers, &a.scopes_supported).to_string();
        let rules = a
            .requirements
            .iter()
            .map(|r| Rule {
                method: r.method.clone(),
                tool: r.tool.as_ref().map(|t| match t.strip_suffix('*') {
                    Some(p) => (p.to_owned(), true),
                    None => (t.clone(), false),
                }),
                need: Requirement {
                    scopes: r.scopes.clone(),
                    mfa: r.mfa,
                    min_acr: r.min_acr.clone(),
                },
                dpop: r.dpop,
            })
            .collect();
        let introspect = a
            .introspection
            .as_ref()
            .map(|i| Introspector::new(i, http.clone(), verifier.config().clone()))
            .transpose()?;
        Ok(Some(Self {
            verifier,
            keys,
            cache: Mutex::new(TokenCache::new(a.token_cache_size)),
            introspect,
            mcp_path: cfg.server.path.clone(),
            metadata_url,
            metadata_paths,
            metadata: metadata.into(),
            resource: resource.clone(),
            replay: Mutex::new(warden_authn::dpop::ReplayCache::new(100_000)),
            base: Requirement {
                scopes: a.required_scopes.clone(),
                ..Requirement::default()
            },
            rules,
            acr_levels: a.acr_levels.clone(),
            dpop_upstreams: cfg.upstreams.iter().map(|u| u.require_dpop).collect(),
        }))
    }

    /// A refusal for `e`, with its challenge.
    fn refuse(&self, e: &AuthError) -> Refusal {
        let challenge = warden_authn::challenge::www_authenticate(
            Some(e),
            &self.metadata_url,
            &self.base.scopes,
        );
        let mut r = Refusal::new(
            e.status(),
            code::GATEWAY_DENIED,
            e.reason(),
            e.control(),
            match e {
                AuthError::Missing => "Unauthorized: an access token is required".to_string(),
                e if e.status() == 403 => format!("Forbidden: {e}"),
                e => format!("Unauthorized: {e}"),
            },
            e.hint(),
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r = r.with_header(HeaderName::from_static("www-authenticate"), v);
        }
        if matches!(e, AuthError::PopRequired | AuthError::InvalidDpopProof(_)) {
            let algs: Vec<String> = self
                .verifier
                .config()
                .algorithms
                .iter()
                .map(|a| format!("{a:?}"))
                .collect();
            let dpop = match e {
                AuthError::InvalidDpopProof(_) => format!(
                    "DPoP algs=\"{}\", error=\"invalid_dpop_proof\"",
                    algs.join(" ")
                ),
                _ => format!("DPoP algs=\"{}\"", algs.join(" ")),
            };
            if let Ok(v) = HeaderValue::from_str(&dpop) {
                r = r.with_header(HeaderName::from_static("www-authenticate"), v);
            }
        }
        if let AuthError::InsufficientScope { needed } | AuthError::StepUp { needed, .. } = e {
            r = r.with_data("required_scopes", needed.clone().into());
        }
        r
    }

    /// Verify the request's credential: a principal, or the refusal.
    async fn authenticate(&self, facts: &HttpFacts<'_>) -> Result<Verified, Fail> {
        let cred = warden_authn::bearer::parse(
            facts
                .headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
        )?;
        let now = now_secs();
        let leeway = self.verifier.config().leeway_secs;
        let token = cred.token;
        let jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        let v = if jwt {
            let mut keys = self.keys.keys().await.map_err(|_| {
                Fail::Unavailable(
                    "auth_keys_unavailable",
                    "Service Unavailable: the issuer's keys cannot be obtained",
                )
            })?;
            let hit = self.lock().get(token, &keys, now, leeway);
            match hit {
                Some(r) => r?,
                None => {
                    let mut r = self.verifier.verify(token, &keys, now);
                    if r.as_ref().err() == Some(&AuthError::UnknownKey)
                        && let Some(fresh) = self.keys.refresh_for_unknown_kid().await
                    {
                        keys = fresh;
                        r = self.verifier.verify(token, &keys, now);
                    }
                    let v = with_token(r?, token);
                    self.lock().insert(token, v.clone(), now);
                    v
                }
            }
        } else if let Some(i) = &self.introspect {
            i.check(token, now, &self.keys).await?
        } else {
            return Err(AuthError::MalformedToken.into());
        };
        match (cred.scheme, v.jkt.as_deref()) {
            // RFC 9449 §7.1: a DPoP-bound token presented as a plain bearer token.
            (Scheme::Bearer, Some(_)) => return Err(AuthError::PopRequired.into()),
            (Scheme::Bearer, None) => {}
            (Scheme::Dpop, None) => {
                return Err(AuthError::InvalidDpopProof("the token is not DPoP-bound").into());
            }
            (Scheme::Dpop, Some(jkt)) => {
                let mut proofs = facts.headers.get_all("dpop").iter();
                let proof = match (proofs.next().map(|p| p.to_str()), proofs.next()) {
                    (Some(Ok(p)), None) => p,
                    _ => {
                        return Err(AuthError::InvalidDpopProof(
                            "exactly one DPoP header is needed",
                        )
                        .into());
                    }
                };
                let expected = warden_authn::dpop::Expected {
                    htm: facts.method.as_str(),
                    htu: &self.resource,
                    token,
                    jkt,
                    algorithms: &self.verifier.config().algorithms,
                    window_secs: 60 + leeway,
                };
                let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
                warden_authn::dpop::verify(proof, &expected, &mut replay, now)?;
            }
        }
        self.base.check(&v.principal, &self.acr_levels)?;
        Ok(v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The verified token carries the token itself for token exchange (never logged: [`Secret`]).
fn with_token(mut v: Verified, token: &str) -> Verified {
    let mut p = (*v.principal).clone();
    p.token = Some(Secret::new(token));
    v.principal = Arc::new(p);
    v
}

fn verifier_config(a: &AuthConfig) -> Result<VerifierConfig, String> {
    let algorithms = a
        .algorithms
        .iter()
        .map(|s| {
            s.parse::<warden_authn::Algorithm>()
                .map_err(|_| format!("algorithm {s} is not known"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifierConfig {
        issuer: a.issuer.clone().unwrap_or_default(),
        audience: a
            .audience
            .clone()
            .or_else(|| a.resource.clone())
            .unwrap_or_default(),
        algorithms,
        leeway_secs: a.leeway_secs,
        max_lifetime_secs: (a.max_lifetime_secs > 0).then_some(a.max_lifetime_secs),
        require_at_jwt: a.require_at_jwt,
        claims: ClaimMap {
            scopes: a.claims.scopes.clone(),
            roles: a.claims.roles.clone(),
            groups: a.claims.groups.clone(),
            tenant: (!a.claims.tenant.is_empty()).then(|| a.claims.tenant.clone()),
        },
    })
}

impl Guard for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn local_paths(&self) -> Vec<String> {
        self.metadata_paths.clone()
    }

    fn serve_local<'a>(
        &'a self,
        req: &'a HttpFacts<'a>,
        _ctx: &'a mut Ctx,
    ) -> Check<'a, Option<LocalResponse>> {
        if !self.metadata_paths.iter().any(|p| p == req.path) {
            return Check::Ready(None);
        }
        Check::Ready(Some(LocalResponse {
            status: 200,
            content_type: "application/json",
            body: self.metadata.clone(),
            headers: vec![(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            )],
        }))
    }

    fn http_request<'a>(&'a self, facts: &'a HttpFacts<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        if facts.path != self.mcp_path {
            // The metadata paths are public (RFC 9728); other paths are 404 anyway.
            return Check::Ready(Verdict::Continue);
        }
        Check::later(async move {
            match self.authenticate(facts).await {
                Ok(v) => {
                    if v.jkt.is_some() {
                        // Only a proven DPoP request gets here with a bound token.
                        ctx.facts.insert("auth_scheme", "dpop".into());
                    }
                    ctx.principal = Some(v.principal);
                    Verdict::Continue
                }
                Err(Fail::Unavailable(reason, message)) => Verdict::Deny(
                    Refusal::new(
                        503,
                        code::GATEWAY_DENIED,
                        reason,
                        "M1",
                        message,
                        "retry shortly; operators: check that the issuer is reachable",
                    )
                    .retry_after(5),
                ),
                Err(Fail::Auth(e)) => Verdict::Deny(self.refuse(&e)),
            }
        })
    }

    fn client_message<'a>(&'a self, _msg: &'a Message<'a>, ctx: &'a mut Ctx) -> Check<'a> {
        let upstream_dpop = match &ctx.route {
            Some(r) => self.dpop_upstreams.get(r.index).copied().unwrap_or(false),
            // Not routed to one upstream (a fan-out): it reaches them all.
            None => self.dpop_upstreams.iter().any(|d| *d),
        };
        if ctx.front != Front::Http || (self.rules.is_empty() && !upstream_dpop) {
            return Check::Ready(Verdict::Continue);
        }
        let Some(p) = ctx.principal.clone() else {
            // Every HTTP request met `http_request`: no principal here is a bug: fail closed.
            return Check::Ready(Verdict::Deny(self.refuse(&AuthError::Missing)));
        };
        let (method, tool) = (ctx.method.as_deref(), ctx.tool.as_deref());
        let applying = || self.rules.iter().filter(|r| r.applies(method, tool));
        if (upstream_dpop || applying().any(|r| r.dpop)) && !ctx.facts.contains_key("auth_scheme") {
            let e = AuthError::InvalidDpopProof("this call needs a DPoP-bound token and its proof");
            return Check::Ready(Verdict::Deny(self.refuse(&e)));
        }
        // `required_scopes` were checked with the token; only a rule that applies adds to them
        // (and then the challenge names every scope the call needs).
        if applying().next().is_none() {
            return Check::Ready(Verdict::Continue);
        }
        let need = applying().fold(self.base.clone(), |acc, r| acc.and(&r.need));
        match need.check(&p, &self.acr_levels) {
            Ok(()) => Check::Ready(Verdict::Continue),
            Err(e) => Check::Ready(Verdict::Deny(self.refuse(&e))),
        }
    }
}

/// Why a request was not authenticated.
pub enum Fail {
    /// The credential is refused.
    Auth(AuthError),
    /// The issuer's keys or introspection cannot be had (unreachable past the stale window):
    /// 503 with this reason and message.
    Unavailable(&'static str, &'static str),
}

impl From<AuthError> for Fail {
    fn from(e: AuthError) -> Self {
        Fail::Auth(e)
    }
}
