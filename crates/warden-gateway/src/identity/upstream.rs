//! The upstream-credentials guard (P7.1–P7.4): Warden presents its own credential to each
//! upstream, never the client's (which the HTTP transport never copies: see
//! `upstream::http::FORWARDED`).
//!
//! Per upstream (`[upstream.auth]`): nothing; a static header read from a secret reference at
//! start; an OAuth client-credentials token (one for Warden); or an RFC 8693 token exchange of
//! the client's verified token for one whose audience is the upstream (one per user). Obtained
//! tokens are cached per upstream and principal until 30 s before they expire (never past the
//! client's own token for an exchange), fetched once however many requests wait for them, and
//! never logged. A credential that cannot be obtained refuses the message (502): nothing is
//! sent without it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};
use serde_json::Value;
use warden_config::{Config, SecretRef, UpstreamAuth};
use warden_guard::{Check, Ctx, Guard, Refusal, Secret, UpstreamRequest};
use warden_proto::error::code;

use super::fetch::AuthHttp;
use super::now_secs;

/// Refresh this long before a token expires.
const MARGIN_SECS: u64 = 30;
/// Most cached tokens per upstream.
const CAPACITY: usize = 10_000;

enum Cred {
    None,
    Static(HeaderName, HeaderValue),
    Oauth(Box<TokenSource>),
}

enum Grant {
    ClientCredentials {
        scope: Option<String>,
        resource: Option<String>,
    },
    Exchange {
        audience: String,
        resource: Option<String>,
        scope: Option<String>,
    },
}

/// One cached token: the header value and when to stop using it.
type Slot = Arc<tokio::sync::Mutex<Option<(HeaderValue, u64)>>>;

struct TokenSource {
    http: AuthHttp,
    endpoint: String,
    client_id: String,
    secret: Secret,
    grant: Grant,
    /// Keyed by principal id (`shared`: Warden itself, client credentials).
    slots: Mutex<HashMap<Arc<str>, Slot>>,
    /// The key of the one token client credentials obtain (made once: no copy per request).
    shared: Arc<str>,
}

/// The guard: one credential per upstream, in configuration order.
pub struct UpstreamCredentials {
    creds: Vec<Cred>,
}

impl UpstreamCredentials {
    /// The guard, or why a credential cannot be set up (a missing secret fails the start).
    /// `None`: no upstream has a credential.
    pub fn new(cfg: &Config) -> Result<Option<Self>, String> {
        if cfg
            .upstreams
            .iter()
            .all(|u| matches!(u.auth, UpstreamAuth::None))
        {
            return Ok(None);
        }
        let http = AuthHttp::new(cfg.auth.as_ref().and_then(|a| a.ca_file.as_deref()))?;
        let mut creds = Vec::new();
        for u in &cfg.upstreams {
            let at = |e: String| format!("upstream '{}' auth: {e}", u.name);
            creds.push(match &u.auth {
                UpstreamAuth::None => Cred::None,
                UpstreamAuth::Static {
                    header,
                    prefix,
                    value,
                } => {
                    let secret = super::secret::read(value).map_err(at)?;
                    let name =
                        HeaderName::from_bytes(header.as_bytes()).map_err(|e| at(e.to_string()))?;
                    let mut v = HeaderValue::from_str(&format!("{prefix}{}", secret.expose()))
                        .map_err(|_| at("the secret is not a valid header value".into()))?;
                    v.set_sensitive(true);
                    Cred::Static(name, v)
                }
                UpstreamAuth::ClientCredentials {
                    token_endpoint,
                    client_id,
                    client_secret,
                    scope,
                    resource,
                } => TokenSource::cred(
                    &http,
                    token_endpoint,
                    client_id,
                    client_secret,
                    Grant::ClientCredentials {
                        scope: scope.clone(),
                        resource: resource.clone(),
                    },
                )
                .map_err(at)?,
                UpstreamAuth::TokenExchange {
                    token_endpoint,
                    client_id,
                    client_secret,
                    audience,
                    resource,
                    scope,
                } => TokenSource::cred(
                    &http,
                    token_endpoint,
                    client_id,
                    client_secret,
                    Grant::Exchange {
                        audience: audience.clone(),
                        resource: resource.clone(),
                        scope: scope.clone(),
                    },
                )
                .map_err(at)?,
            });
        }
        Ok(Some(Self { creds }))
    }
}

fn refused(detail: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    Refusal::new(
        502,
        code::UPSTREAM_UNAVAILABLE,
        "upstream_credential_failed",
        "P7.2",
        "Bad Gateway: Warden's credential for the upstream could not be obtained",
        detail,
    )
}

impl TokenSource {
    /// An OAuth credential of `client_id` at `endpoint` for `grant`; its secret is read now.
    fn cred(
        http: &AuthHttp,
        endpoint: &str,
        client_id: &str,
        secret: &SecretRef,
        grant: Grant,
    ) -> Result<Cred, String> {
        Ok(Cred::Oauth(Box::new(TokenSource {
            http: http.clone(),
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
            secret: super::secret::read(secret)?,
            grant,
            slots: Mutex::new(HashMap::new()),
            shared: "".into(),
        })))
    }

    /// The header value for `ctx`'s principal, from the cache or the token endpoint.
    async fn header(&self, ctx: &Ctx) -> Result<HeaderValue, Refusal> {
        let (key, subject, subject_exp): (Arc<str>, Option<&Secret>, u64) = match &self.grant {
            Grant::ClientCredentials { .. } => (self.shared.clone(), None, u64::MAX),
            Grant::Exchange { .. } => {
                let p = ctx.principal.as_ref().ok_or_else(|| {
                    refused("token exchange needs an authenticated client; none is")
                })?;
                let token = p.token.as_ref().ok_or_else(|| {
                    refused("token exchange needs the client's token; none was presented")
                })?;
                let exp = p
                    .expires
                    .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                (p.id().clone(), Some(token), exp)
            }
        };
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.len() >= CAPACITY && !slots.contains_key(&key) {
                let now = now_secs();
                slots.retain(|_, s| {
                    s.try_lock()
                        .map_or(true, |v| v.as_ref().is_some_and(|(_, until)| *until > now))
                });
            }
            slots.entry(key).or_default().clone()
        };
        // One fetch per key: whoever holds the slot fetches, the others wait and reuse it.
        let mut cached = slot.lock().await;
        let now = now_secs();
        if let Some((v, until)) = cached.as_ref()
            && now < *until
        {
            return Ok(v.clone());
        }
        let (v, expires_in) = self.fetch(subject).await?;
        let until = now
            .saturating_add(expires_in.saturating_sub(MARGIN_SECS))
            .min(subject_exp.saturating_sub(MARGIN_SECS));
        *cached = Some((v.clone(), until));
        Ok(v)
    }

    async fn fetch(&self, subject: Option<&Secret>) -> Result<(HeaderValue, u64), Refusal> {
        let mut form: Vec<(&str, &str)> = Vec::new();
        match &self.grant {
            Grant::ClientCredentials { scope, resource } => {
                form.push(("grant_type", "client_credentials"));
                if let Some(s) = scope {
                    form.push(("scope", s));
                }
                if let Some(r) = resource {
                    form.push(("resource", r));
                }
            }
            Grant::Exchange {
                audience,
                resource,
                scope,
            } => {
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ));
                form.push(("subject_token", subject.map_or("", |s| s.expose())));
                form.push((
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ));
                form.push((
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ));
                form.push(("audience", audience));
                if let Some(r) = resource {
                    form.push(("resource", r));
                }
                if let Some(s) = scope {
                    form.push(("scope", s));
                }
            }
        }
        let resp = self
            .http
            .post_form(
                &self.endpoint,
                (&self.client_id, self.secret.expose()),
                &form,
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "upstream credential: token endpoint unreachable");
                refused("the token endpoint could not be reached")
            })?;
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if resp.status != 200 {
            // The OAuth error code only: the description could echo what was sent.
            let err = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .collect::<String>();
            tracing::warn!(status = resp.status, error = %err, "upstream credential refused");
            return Err(refused(format!(
                "the token endpoint refused: HTTP {} {err}",
                resp.status
            )));
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refused("the token endpoint answered without access_token"))?;
        // P7.2: a token obtained for an upstream must name that upstream, when it says whom it
        // is for (a JWT; an opaque token is the upstream's to check).
        let expected = match &self.grant {
            Grant::ClientCredentials { resource, .. } => resource.as_deref(),
            Grant::Exchange {
                audience, resource, ..
            } => Some(resource.as_deref().unwrap_or(audience)),
        };
        if let Some(want) = expected
            && let Some(aud) = jwt_audience(token)
            && !aud.iter().any(|a| a == want)
        {
            tracing::warn!(audience = ?aud, expected = want, "upstream credential for another audience");
            return Err(refused(
                "the token endpoint issued a token for another audience",
            ));
        }
        let expires_in = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| refused("the token endpoint answered an unusable token"))?;
        v.set_sensitive(true);
        Ok((v, expires_in))
    }
}

/// The `aud` of a JWT's payload (not verified: it came from the token endpoint over TLS), or
/// `None` for a token that is not a JWT or has no `aud`.
fn jwt_audience(token: &str) -> Option<Vec<String>> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(p), Some(_), None) => p,
        _ => return None,
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    match v.get("aud")? {
        Value::String(a) => Some(vec![a.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

impl Guard for UpstreamCredentials {
    fn name(&self) -> &'static str {
        "upstream_credentials"
    }

    fn upstream_request<'a>(
        &'a self,
        req: &'a mut UpstreamRequest,
        ctx: &'a Ctx,
    ) -> Check<'a, Result<(), Refusal>> {
        let Some(cred) = ctx.route.as_ref().and_then(|r| self.creds.get(r.index)) else {
            // Not routed to one upstream yet: each upstream's request is shaped when it is sent.
            return Check::Ready(Ok(()));
        };
        match cred {
            Cred::None => Check::Ready(Ok(())),
            Cred::Static(name, value) => {
                req.headers.insert(name.clone(), value.clone());
                Check::Ready(Ok(()))
            }
            Cred::Oauth(src) => Check::later(async move {
                let v = src.header(ctx).await?;
                req.headers.insert(http::header::AUTHORIZATION, v);
                Ok(())
            }),
        }
    }
}
