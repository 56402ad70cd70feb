//! The control-plane HTTP client of the identity guards: discovery documents, JWKS,
//! introspection and token endpoints. Bounded in time and size, no redirects, no proxies from
//! the environment, TLS verified (the system store or a configured CA file). Secrets it sends are
//! never logged; errors name the URL and the status, never a body that could echo a secret.

use std::path::Path;
use std::time::Duration;

use http::HeaderMap;

/// Largest control-plane response read.
pub const MAX_RESPONSE: usize = 512 * 1024;

/// A response: status, headers, body.
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why a fetch failed (for logs and audit; carries no secret).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: {1}")]
    Transport(String, String),
    #[error("{0}: response over {MAX_RESPONSE} bytes")]
    TooLarge(String),
}

/// The client.
#[derive(Clone)]
pub struct AuthHttp {
    client: reqwest::Client,
}

impl AuthHttp {
    /// A client trusting the system store, or only the certificates of `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(f) = ca_file {
            let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            b = b.tls_certs_only(certs);
        }
        Ok(Self {
            client: b.build().map_err(|e| e.to_string())?,
        })
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        self.send(
            url,
            self.client.get(url).header("accept", "application/json"),
        )
        .await
    }

    /// POST an `application/x-www-form-urlencoded` body with HTTP Basic client authentication
    /// (RFC 6749 §2.3.1: id and secret form-encoded first).
    pub async fn post_form(
        &self,
        url: &str,
        client: (&str, &str),
        form: &[(&str, &str)],
    ) -> Result<Fetched, FetchError> {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let req = self
            .client
            .post(url)
            .basic_auth(enc(client.0), Some(enc(client.1)))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        self.send(url, req).await
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
        let mut resp = req
            .send()
            .await
            .map_err(|e| FetchError::Transport(url.into(), without_url(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE as u64)
        {
            return Err(FetchError::TooLarge(url.into()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Transport(url.into(), without_url(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(FetchError::TooLarge(url.into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `Cache-Control: max-age` of a response, seconds (`no-store`/`no-cache` → 0).
pub fn max_age(headers: &HeaderMap) -> Option<u64> {
    let cc = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for d in cc.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse().ok();
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            m
        };
        assert_eq!(max_age(&h("public, max-age=600")), Some(600));
        assert_eq!(max_age(&h("no-store")), Some(0));
        assert_eq!(max_age(&HeaderMap::new()), None);
        assert_eq!(max_age(&h("max-age=x")), None);
    }
}
