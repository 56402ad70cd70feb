//! Where the issuer's verification keys come from (M1): a local JWKS file read at start, or the
//! issuer's JWKS found by discovery (OIDC, then RFC 8414) and fetched over [`AuthHttp`].
//!
//! Fetched keys are fresh for their `Cache-Control: max-age` (else `jwks_max_age_secs`). A
//! request that finds them past freshness still verifies with them while one background refresh
//! runs; if the issuer cannot be reached they keep serving for `jwks_stale_secs` more, then
//! requests are refused (fail closed). A token with an unknown `kid` causes at most one refresh
//! per `jwks_refresh_min_secs` (a flood of forged kids is not a flood of fetches), so a rotated
//! key is picked up on its first use and a retired one stops verifying with the next key set.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::Value;
use warden_authn::KeySet;
use warden_config::{AuthConfig, secure_url};

use super::fetch::{AuthHttp, max_age};

/// Keys as last obtained.
struct Snapshot {
    keys: Option<Arc<KeySet>>,
    fresh_until: Instant,
    stale_until: Instant,
}

/// The issuer's endpoints discovery found.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub jwks_uri: Option<String>,
    pub introspection: Option<String>,
}

/// The key source of one issuer.
pub struct KeySource {
    snap: ArcSwap<Snapshot>,
    remote: Option<Remote>,
}

struct Remote {
    http: AuthHttp,
    issuer: String,
    configured_jwks: Option<String>,
    endpoints: Mutex<Endpoints>,
    /// Held while a fetch runs: one at a time.
    flight: tokio::sync::Mutex<()>,
    /// When the last fetch began (rate limit of unknown-kid refreshes).
    last: Mutex<Option<Instant>>,
    refresh_min: Duration,
    max_age: Duration,
    stale: Duration,
}

/// Why no keys can be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeysUnavailable(pub String);

impl KeySource {
    /// The key source `cfg` describes. A local file must hold usable keys (start fails
    /// otherwise); remote keys are fetched by [`KeySource::start`].
    pub fn new(cfg: &AuthConfig, http: AuthHttp) -> Result<Arc<Self>, String> {
        let now = Instant::now();
        if let Some(f) = &cfg.jwks_file {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let keys = KeySet::from_jwks(&bytes).map_err(|e| format!("{}: {e}", f.display()))?;
            let forever = now + Duration::from_secs(100 * 365 * 86_400);
            return Ok(Arc::new(Self {
                snap: ArcSwap::from_pointee(Snapshot {
                    keys: Some(Arc::new(keys)),
                    fresh_until: forever,
                    stale_until: forever,
                }),
                remote: None,
            }));
        }
        let issuer = cfg.issuer.clone().unwrap_or_default();
        Ok(Arc::new(Self {
            snap: ArcSwap::from_pointee(Snapshot {
                keys: None,
                fresh_until: now,
                stale_until: now,
            }),
            remote: Some(Remote {
                http,
                issuer,
                configured_jwks: cfg.jwks_uri.clone(),
                endpoints: Mutex::new(Endpoints::default()),
                flight: tokio::sync::Mutex::new(()),
                last: Mutex::new(None),
                refresh_min: Duration::from_secs(cfg.jwks_refresh_min_secs),
                max_age: Duration::from_secs(cfg.jwks_max_age_secs),
                stale: Duration::from_secs(cfg.jwks_stale_secs),
            }),
        }))
    }

    /// First fetch (at start); an unreachable issuer is logged, not fatal: requests are refused
    /// with 503 until keys arrive.
    pub async fn start(self: &Arc<Self>) {
        if self.remote.is_some()
            && let Err(e) = self.fetch().await
        {
            tracing::warn!(error = %e, "issuer keys not available yet; requests get 503 until they are");
        }
    }

    /// Endpoints discovery found (introspection).
    pub fn endpoints(&self) -> Endpoints {
        self.remote
            .as_ref()
            .map(|r| {
                r.endpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Keys to verify with now.
    pub async fn keys(self: &Arc<Self>) -> Result<Arc<KeySet>, KeysUnavailable> {
        let now = Instant::now();
        let snap = self.snap.load();
        match &snap.keys {
            Some(k) if now < snap.fresh_until => return Ok(k.clone()),
            Some(k) if now < snap.stale_until => {
                // Past freshness: serve these while one refresh runs in the background.
                let me = self.clone();
                tokio::spawn(async move {
                    if me.may_fetch()
                        && let Err(e) = me.fetch().await
                    {
                        tracing::warn!(error = %e, "issuer keys refresh failed; serving cached keys");
                    }
                });
                return Ok(k.clone());
            }
            _ => {}
        }
        drop(snap);
        // No usable keys: fetch now (rate-limited, so an unreachable issuer is not hammered),
        // or wait for the fetch another request began.
        if self.may_fetch() {
            self.fetch().await?;
        } else if let Some(r) = &self.remote {
            drop(r.flight.lock().await);
        }
        let snap = self.snap.load();
        match &snap.keys {
            Some(k) if Instant::now() < snap.stale_until => Ok(k.clone()),
            _ => Err(KeysUnavailable(
                "the issuer's keys could not be obtained".into(),
            )),
        }
    }

    /// A token named a `kid` the keys do not have: refresh, at most once per
    /// `jwks_refresh_min_secs` (within it, the keys the last fetch left, once it is done).
    /// `None`: a local file, or the fetch failed.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let r = self.remote.as_ref()?;
        if !self.may_fetch() {
            // Within the interval: no new fetch, but one in flight (or just made) may have
            // brought the key: wait for it and answer with what it left.
            drop(r.flight.lock().await);
            return self.snap.load().keys.clone();
        }
        if let Err(e) = self.fetch().await {
            tracing::warn!(error = %e, "issuer keys refresh (unknown kid) failed");
            return None;
        }
        self.snap.load().keys.clone()
    }

    fn may_fetch(&self) -> bool {
        let Some(r) = &self.remote else { return false };
        let last = r.last.lock().unwrap_or_else(|p| p.into_inner());
        last.is_none_or(|t| t.elapsed() >= r.refresh_min.max(Duration::from_secs(1)))
    }

    /// Discovery (once) and the JWKS, one fetch at a time.
    async fn fetch(&self) -> Result<(), KeysUnavailable> {
        let Some(r) = &self.remote else {
            return Ok(());
        };
        let _one = r.flight.lock().await;
        *r.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let jwks_uri = match r.configured_jwks.clone().or_else(|| {
            r.endpoints
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .jwks_uri
                .clone()
        }) {
            Some(u) => u,
            None => {
                let found = discover(&r.http, &r.issuer).await?;
                let u = found.jwks_uri.clone().ok_or_else(|| {
                    KeysUnavailable("the issuer's metadata names no jwks_uri".into())
                })?;
                *r.endpoints.lock().unwrap_or_else(|p| p.into_inner()) = found;
                u
            }
        };
        let resp = r
            .http
            .get(&jwks_uri)
            .await
            .map_err(|e| KeysUnavailable(e.to_string()))?;
        if resp.status != 200 {
            return Err(KeysUnavailable(format!("{jwks_uri}: HTTP {}", resp.status)));
        }
        let keys = KeySet::from_jwks(&resp.body)
            .map_err(|e| KeysUnavailable(format!("{jwks_uri}: {e}")))?;
        let fresh = max_age(&resp.headers)
            .map(Duration::from_secs)
            .unwrap_or(r.max_age)
            .min(r.max_age.max(Duration::from_secs(60)));
        let now = Instant::now();
        tracing::info!(kids = ?keys.kids().collect::<Vec<_>>(), "issuer keys loaded");
        self.snap.store(Arc::new(Snapshot {
            keys: Some(Arc::new(keys)),
            fresh_until: now + fresh,
            stale_until: now + fresh + r.stale,
        }));
        Ok(())
    }
}

/// The issuer's metadata: OIDC discovery, then RFC 8414. Its `issuer` must be the configured one
/// exactly (RFC 8414 §3.3), and its endpoints https (or loopback http).
pub async fn discover(http: &AuthHttp, issuer: &str) -> Result<Endpoints, KeysUnavailable> {
    let base = issuer.trim_end_matches('/');
    let (origin, path) = match base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
    {
        Some(p) => (&base[..p], &base[p..]),
        None => (base, ""),
    };
    let urls = [
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ];
    let mut last = String::new();
    for url in &urls {
        let resp = match http.get(url).await {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                last = format!("{url}: HTTP {}", r.status);
                continue;
            }
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let doc: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| KeysUnavailable(format!("{url}: {e}")))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(KeysUnavailable(format!(
                "{url}: metadata names another issuer than {issuer}"
            )));
        }
        let endpoint = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .filter(|u| secure_url(u))
                .map(str::to_owned)
        };
        return Ok(Endpoints {
            jwks_uri: endpoint("jwks_uri"),
            introspection: endpoint("introspection_endpoint"),
        });
    }
    Err(KeysUnavailable(format!("discovery failed: {last}")))
}
