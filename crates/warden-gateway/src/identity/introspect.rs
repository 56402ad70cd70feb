//! RFC 7662 introspection of opaque tokens: one POST per token not yet known, its answer
//! decided by `warden_authn::introspect` and remembered briefly (`cache_secs`, never past
//! `exp`). The endpoint is configured or found by discovery; an unreachable endpoint refuses
//! the request (503), never lets it through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use warden_authn::verify::Verified;
use warden_authn::{TokenCache, VerifierConfig};
use warden_config::IntrospectionConfig;
use warden_guard::Secret;

use super::Fail;
use super::fetch::AuthHttp;
use super::keys::KeySource;

/// Most answers remembered.
const CAPACITY: usize = 10_000;

pub struct Introspector {
    http: AuthHttp,
    endpoint: Option<String>,
    client_id: String,
    secret: Secret,
    cache_secs: u64,
    verifier: VerifierConfig,
    cache: Mutex<HashMap<[u8; 32], (Verified, u64)>>,
}

impl Introspector {
    pub fn new(
        cfg: &IntrospectionConfig,
        http: AuthHttp,
        verifier: VerifierConfig,
    ) -> Result<Self, String> {
        Ok(Self {
            http,
            endpoint: cfg.endpoint.clone(),
            client_id: cfg.client_id.clone(),
            secret: super::secret::read(&cfg.client_secret)
                .map_err(|e| format!("auth.introspection.client_secret: {e}"))?,
            cache_secs: cfg.cache_secs,
            verifier,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The principal `token` stands for, at `now`.
    pub async fn check(
        &self,
        token: &str,
        now: u64,
        keys: &Arc<KeySource>,
    ) -> Result<Verified, Fail> {
        let key = TokenCache::key(token);
        if let Some((v, until)) = self.lock().get(&key)
            && now <= *until
        {
            return Ok(v.clone());
        }
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => {
                // Discovery runs with the first key fetch; make sure it has.
                let _ = keys.keys().await;
                keys.endpoints().introspection.ok_or(Fail::Unavailable(
                    "introspection_unavailable",
                    "the issuer's metadata names no introspection_endpoint",
                ))?
            }
        };
        let resp = self
            .http
            .post_form(
                &endpoint,
                (&self.client_id, self.secret.expose()),
                &[("token", token), ("token_type_hint", "access_token")],
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "introspection failed");
                Fail::Unavailable(
                    "introspection_unavailable",
                    "the introspection endpoint cannot be reached",
                )
            })?;
        if resp.status != 200 {
            tracing::warn!(
                status = resp.status,
                "introspection refused Warden's request"
            );
            return Err(Fail::Unavailable(
                "introspection_unavailable",
                "the introspection endpoint refused Warden's request",
            ));
        }
        let v = warden_authn::introspect::decide(&resp.body, &self.verifier, now)?;
        let v = super::with_token(v, token);
        let until = v.expires_at.min(now.saturating_add(self.cache_secs));
        let mut cache = self.lock();
        if cache.len() >= CAPACITY {
            cache.retain(|_, (_, u)| *u >= now);
        }
        if cache.len() < CAPACITY {
            cache.insert(key, (v.clone(), until));
        }
        Ok(v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Verified, u64)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
